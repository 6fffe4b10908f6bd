//! Reading the layer's results from code: cumulative totals and the latest summary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::diagnostics::Diagnostics;
use crate::stats::{OverallSummary, RequestE2EStats, RequestStatus};

/// State shared by a layer and its handles.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) diagnostics: Diagnostics,
    requests_ok: AtomicU64,
    requests_error: AtomicU64,
    requests_aborted: AtomicU64,
    total_tokens: AtomicU64,
    transfer_bytes: AtomicU64,
    runs: AtomicU64,
    /// The latest run's summary. Online requests don't touch it: a lock per request would
    /// serialize the engine's threads.
    last_summary: Mutex<Option<OverallSummary>>,
}

impl Shared {
    pub(crate) fn record_request(&self, r: &RequestE2EStats) {
        let counter = match r.status {
            RequestStatus::Ok => &self.requests_ok,
            RequestStatus::Error => &self.requests_error,
            RequestStatus::Aborted => &self.requests_aborted,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if r.status == RequestStatus::Ok {
            self.total_tokens
                .fetch_add(r.e2e_total_tokens, Ordering::Relaxed);
            let bytes: u64 = r.transfers.iter().map(|e| e.size_bytes).sum();
            self.transfer_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    pub(crate) fn record_run_summary(&self, summary: OverallSummary) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        // A sink that panicked cannot poison the totals: take the value anyway.
        *self
            .last_summary
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(summary);
    }
}

/// Reads an [`OmniMetricsLayer`](crate::OmniMetricsLayer)'s results; cheap to clone, usable
/// from any thread.
///
/// ```
/// let layer = omni_metrics::OmniMetricsLayer::builder().with_console(false).build()?;
/// let handle = layer.handle();
/// assert_eq!(handle.totals().requests_ok, 0);
/// assert!(handle.last_summary().is_none());
/// # Ok::<(), omni_metrics::BuildError>(())
/// ```
#[derive(Clone, Debug)]
pub struct MetricsHandle {
    shared: Arc<Shared>,
}

/// Cumulative totals since the layer was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Totals {
    /// Requests finished with `status = ok`.
    pub requests_ok: u64,
    /// Requests finished with `status = error`.
    pub requests_error: u64,
    /// Requests dropped unfinished (`status = aborted`).
    pub requests_aborted: u64,
    /// `e2e_total_tokens` summed over `ok` requests.
    pub total_tokens: u64,
    /// Bytes moved between stages by `ok` requests.
    pub transfer_bytes: u64,
    /// Runs (`omni.run`) summarized.
    pub runs: u64,
    /// Spans that broke the convention (each reported once as a warning).
    pub invalid_spans: u64,
}

impl MetricsHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// A snapshot of the cumulative totals.
    pub fn totals(&self) -> Totals {
        let s = &self.shared;
        Totals {
            requests_ok: s.requests_ok.load(Ordering::Relaxed),
            requests_error: s.requests_error.load(Ordering::Relaxed),
            requests_aborted: s.requests_aborted.load(Ordering::Relaxed),
            total_tokens: s.total_tokens.load(Ordering::Relaxed),
            transfer_bytes: s.transfer_bytes.load(Ordering::Relaxed),
            runs: s.runs.load(Ordering::Relaxed),
            invalid_spans: s.diagnostics.invalid_spans(),
        }
    }

    /// Spans that broke the convention so far.
    pub fn invalid_spans(&self) -> u64 {
        self.shared.diagnostics.invalid_spans()
    }

    /// The latest finished run's (`omni.run`) summary; online requests are in
    /// [`MetricsHandle::totals`] and reach the sinks with a summary each.
    pub fn last_summary(&self) -> Option<OverallSummary> {
        self.shared
            .last_summary
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
