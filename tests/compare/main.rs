//! `omni-metrics compare` (issue 26): two runs with known differences, compared; the
//! verdicts against what was changed, over many seeds; the false-positive rate of noise
//! against the stated confidence; the mismatch warnings; the outputs (table, JSON lines,
//! Markdown); `--fail-on` on the real binary, both exits; the HTML page in headless
//! Chromium (`OMNI_METRICS_SKIP_BROWSER=1` skips it explicitly).
#![cfg(feature = "cli")]

#[path = "../support/chromium.rs"]
mod chromium;
mod cli;
mod finding;
mod html;
mod outputs;
mod runs;
