//! `omni-metrics report --help` is what `tests/cli_help/report-help.txt` says, and
//! `omni-metrics compare --help` what `compare-help.txt` says: a change to a command's
//! options shows up in review as a change to its file.
//!
//! After changing the options, update the snapshot and review its diff:
//!
//! ```text
//! OMNI_UPDATE_SNAPSHOTS=1 cargo test --features cli --test cli_help
//! ```

use std::path::Path;
use std::process::Command;

/// Set to `1` to write the current output over the snapshot instead of comparing.
const UPDATE_ENV: &str = "OMNI_UPDATE_SNAPSHOTS";

/// Runs the built binary with `args` and returns its standard output, checking it exits 0.
#[track_caller]
fn run(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_omni-metrics"))
        .args(args)
        // Help text wraps to the terminal's width when clap can read one; pin it.
        .env("COLUMNS", "100")
        .env_remove("CLICOLOR_FORCE")
        .output()
        .expect("the omni-metrics binary runs");
    assert!(
        output.status.success(),
        "omni-metrics {args:?} exited with {}:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("help is UTF-8")
}

/// Each line without its trailing spaces (clap pads blank lines inside a help entry), and
/// `\n` line ends: what an editor keeps of the snapshot.
fn normalized(text: &str) -> String {
    text.lines()
        .map(|l| format!("{}\n", l.trim_end()))
        .collect()
}

/// Compares `actual` with the snapshot at `path` (relative to this directory), or writes it
/// when `OMNI_UPDATE_SNAPSHOTS=1`.
#[track_caller]
fn assert_snapshot(path: &str, actual: &str) {
    let actual = &normalized(actual);
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cli_help")
        .join(path);
    if std::env::var_os(UPDATE_ENV).is_some_and(|v| v == "1") {
        std::fs::write(&path, actual.as_bytes()).expect("the snapshot is written");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; write it with {UPDATE_ENV}=1 cargo test --features cli --test cli_help",
            path.display()
        )
    });
    let expected = normalized(&expected);
    if expected != *actual {
        panic!(
            "the command's --help differs from {}:\n\
             --- snapshot\n{expected}\n--- actual\n{actual}\n\
             If the change is intended: {UPDATE_ENV}=1 cargo test --features cli --test cli_help",
            path.display()
        );
    }
}

#[test]
fn report_help_is_the_snapshot() {
    assert_snapshot("report-help.txt", &run(&["report", "--help"]));
}

/// `omni-metrics compare --help`, with the `--fail-on` syntax and the exit status (issue 26).
#[test]
fn compare_help_is_the_snapshot() {
    assert_snapshot("compare-help.txt", &run(&["compare", "--help"]));
}
