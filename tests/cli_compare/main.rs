//! `omni-metrics compare` on the real binary: records and trace files in, the outputs,
//! `--fail-on`'s exits. The comparison's own tests (verdicts over many seeds, the
//! false-positive rate, warnings, outputs, the page in Chromium) are unit tests of the
//! crate's `compare` module.
#![cfg(feature = "cli")]

mod cli;
#[path = "../support/runs.rs"]
mod runs;
