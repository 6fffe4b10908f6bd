//! `omni-metrics compare`'s comparison as a library inside the crate: two runs with known
//! differences, compared; the verdicts against what was changed, over many seeds; the
//! false-positive rate of noise against the stated confidence; the mismatch warnings; the
//! outputs (table, JSON lines, Markdown); the HTML page in headless Chromium
//! (`OMNI_METRICS_SKIP_BROWSER=1` skips it explicitly). The command itself, on the real
//! binary, is tested in `tests/cli_compare`.

#[allow(dead_code)]
#[path = "../../../tests/support/chromium.rs"]
mod chromium;
mod finding;
mod html;
mod outputs;
#[allow(dead_code)]
#[path = "../../../tests/support/runs.rs"]
mod runs;

/// A fresh directory for one test's files.
fn temp_dir(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "omni-metrics-compare-{}-{test}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}
