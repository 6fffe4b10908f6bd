//! Shared helpers: the crate's testing harness (the real layer on a scoped subscriber, a
//! manual clock, a capture, the diagnostics) with the clock set in milliseconds, table rows,
//! tolerances.

use omni_metrics::OmniMetricsLayer;
pub(crate) use omni_metrics::testing::Harness;
use omni_metrics::testing::{CaptureSink, ManualClock};

/// The harness's clock in milliseconds, and its diagnostics asserted.
pub(crate) trait HarnessExt {
    /// Sets the clock to `ms` milliseconds (rounded to the nanosecond).
    fn at(&self, ms: f64);

    /// The layer's diagnostics so far.
    fn messages(&self) -> Vec<String>;

    /// Asserts that a diagnostic contains `needle`.
    #[track_caller]
    fn warned(&self, needle: &str);
}

impl HarnessExt for Harness {
    fn at(&self, ms: f64) {
        self.clock().set_ns(ns(ms));
    }

    fn messages(&self) -> Vec<String> {
        self.diagnostics()
    }

    #[track_caller]
    fn warned(&self, needle: &str) {
        let msgs = self.messages();
        assert!(
            msgs.iter().any(|m| m.contains(needle)),
            "no warning containing {needle:?}: {msgs:?}"
        );
    }
}

#[path = "../support/shared_buf.rs"]
mod shared_buf;
pub(crate) use shared_buf::SharedBuf;

pub(crate) fn ns(ms: f64) -> u64 {
    (ms * 1_000_000.0).round() as u64
}

#[path = "../support/table_rows.rs"]
mod table_rows;
pub(crate) use table_rows::{rows, table_under};

/// Asserts that `table` has exactly `expected` rows (header included), cell by cell.
#[track_caller]
pub(crate) fn assert_rows(table: &str, expected: &[&[&str]]) {
    let got = rows(table);
    let want: Vec<Vec<String>> = expected
        .iter()
        .map(|r| r.iter().map(|c| (*c).to_owned()).collect())
        .collect();
    assert_eq!(got, want, "rendered table:\n{table}");
}

/// Asserts `a` and `b` agree to within 1e-9 (relative to their size).
#[track_caller]
pub(crate) fn assert_close(a: f64, b: f64, what: &str) {
    let tol = 1e-9 * a.abs().max(b.abs()).max(1.0);
    assert!((a - b).abs() <= tol, "{what}: {a} != {b}");
}

pub(crate) fn layer(clock: &ManualClock, capture: &CaptureSink) -> OmniMetricsLayer {
    OmniMetricsLayer::builder()
        .with_console(false)
        .with_clock(clock.clone())
        .with_sink(capture.clone())
        .build()
        .expect("no file")
}

/// The harness, whose diagnostics the test reads.
pub(crate) fn diagnosed() -> Harness {
    Harness::new()
}
