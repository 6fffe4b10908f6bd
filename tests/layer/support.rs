//! Shared helpers: a scoped subscriber with the real layer, a manual clock and a capture.

use omni_metrics::clock::ManualClock;
use omni_metrics::report::CaptureSink;
use omni_metrics::{Builder, MetricsHandle, OmniMetricsLayer};

use crate::warnings::Warnings;
use tracing::Dispatch;
use tracing_subscriber::prelude::*;

/// The real layer on a Registry, driven by a manual clock, captured in memory.
pub(crate) struct Harness {
    pub(crate) clock: ManualClock,
    pub(crate) capture: CaptureSink,
    pub(crate) handle: MetricsHandle,
    pub(crate) dispatch: Dispatch,
}

impl Harness {
    pub(crate) fn new() -> Self {
        Self::with(|builder| builder)
    }

    /// [`Harness::new`], with more configuration (the console is off unless `configure`
    /// turns it on).
    pub(crate) fn with(configure: impl FnOnce(Builder) -> Builder) -> Self {
        let clock = ManualClock::new();
        let capture = CaptureSink::new();
        let builder = OmniMetricsLayer::builder()
            .with_console(false)
            .with_clock(clock.clone())
            .with_sink(capture.clone());
        let layer = configure(builder)
            .build()
            .expect("no JSON-lines file is configured");
        let handle = layer.handle();
        let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
        Self {
            clock,
            capture,
            handle,
            dispatch,
        }
    }

    /// Runs `f` with this harness's subscriber as the thread's default.
    pub(crate) fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        tracing::dispatcher::with_default(&self.dispatch, f)
    }

    /// Sets the clock to `ms` milliseconds (rounded to the nanosecond).
    pub(crate) fn at(&self, ms: f64) {
        self.clock.set_ns(ns(ms));
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
pub(crate) use table_rows::rows;

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

/// The real layer with a manual clock, a capture and the diagnostics collected.
pub(crate) struct Diagnosed {
    pub(crate) clock: ManualClock,
    pub(crate) capture: CaptureSink,
    pub(crate) handle: MetricsHandle,
    pub(crate) warnings: Warnings,
    pub(crate) dispatch: tracing::Dispatch,
}

pub(crate) fn layer(clock: &ManualClock, capture: &CaptureSink) -> OmniMetricsLayer {
    OmniMetricsLayer::builder()
        .with_console(false)
        .with_clock(clock.clone())
        .with_sink(capture.clone())
        .build()
        .expect("no file")
}

pub(crate) fn diagnosed() -> Diagnosed {
    let clock = ManualClock::new();
    let capture = CaptureSink::new();
    let layer = layer(&clock, &capture);
    let handle = layer.handle();
    let warnings = Warnings::default();
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(layer)
            .with(warnings.clone()),
    );
    Diagnosed {
        clock,
        capture,
        handle,
        warnings,
        dispatch,
    }
}

impl Diagnosed {
    pub(crate) fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        tracing::dispatcher::with_default(&self.dispatch, f)
    }

    pub(crate) fn at(&self, ms: f64) {
        self.clock.set_ns(ns(ms));
    }

    pub(crate) fn messages(&self) -> Vec<String> {
        self.warnings.messages()
    }

    #[track_caller]
    pub(crate) fn warned(&self, needle: &str) {
        let msgs = self.messages();
        assert!(
            msgs.iter().any(|m| m.contains(needle)),
            "no warning containing {needle:?}: {msgs:?}"
        );
    }
}
