//! Reading the layer's results from code: cumulative totals and the latest summary.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::diagnostics::Diagnostics;
use crate::stats::{OverallSummary, RequestE2EStats, RequestStatus};

/// Per-request counters, one stripe per thread (modulo [`STRIPES`]) on its own cache line:
/// a single shared line written by every request would serialize the engine's threads.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe {
    requests_ok: AtomicU64,
    requests_error: AtomicU64,
    requests_aborted: AtomicU64,
    total_tokens: AtomicU64,
    transfer_bytes: AtomicU64,
}

const STRIPES: usize = 16;

/// This thread's stripe index, assigned round-robin on first use.
fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    INDEX.try_with(|i| *i).unwrap_or(0)
}

/// State shared by a layer and its handles.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) diagnostics: Diagnostics,
    stripes: [Stripe; STRIPES],
    runs: AtomicU64,
    /// The latest run's summary. Online requests don't touch it: a lock per request would
    /// serialize the engine's threads.
    last_summary: Mutex<Option<OverallSummary>>,
    /// The built-in sinks' writer thread, when the layer has console or JSON lines.
    pub(crate) sink_writer: std::sync::OnceLock<Arc<crate::report::writer::WriterState>>,
}

impl Shared {
    pub(crate) fn record_request(&self, r: &RequestE2EStats) {
        let stripe = &self.stripes[stripe_index()];
        let counter = match r.status {
            RequestStatus::Ok => &stripe.requests_ok,
            RequestStatus::Error => &stripe.requests_error,
            RequestStatus::Aborted => &stripe.requests_aborted,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if r.status == RequestStatus::Ok {
            stripe
                .total_tokens
                .fetch_add(r.e2e_total_tokens, Ordering::Relaxed);
            let bytes: u64 = r.transfers.iter().map(|e| e.size_bytes).sum();
            stripe.transfer_bytes.fetch_add(bytes, Ordering::Relaxed);
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
        let sum = |field: fn(&Stripe) -> &AtomicU64| -> u64 {
            s.stripes
                .iter()
                .map(|stripe| field(stripe).load(Ordering::Relaxed))
                .fold(0, u64::wrapping_add)
        };
        Totals {
            requests_ok: sum(|s| &s.requests_ok),
            requests_error: sum(|s| &s.requests_error),
            requests_aborted: sum(|s| &s.requests_aborted),
            total_tokens: sum(|s| &s.total_tokens),
            transfer_bytes: sum(|s| &s.transfer_bytes),
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

    /// Waits until the console tables and JSON-lines records queued so far are written, at
    /// most `timeout`; safe to call any time, from any thread (not from a [`Sink`] of yours).
    ///
    /// Call it before reading a records file the layer writes. Dropping the
    /// [`OmniGuard`](crate::OmniGuard) does it with
    /// [`DEFAULT_FLUSH_TIMEOUT`](crate::report::DEFAULT_FLUSH_TIMEOUT).
    ///
    /// [`Sink`]: crate::report::Sink
    ///
    /// # Errors
    ///
    /// [`FlushError`](crate::report::FlushError) if records were still queued at the time
    /// limit (a blocked console or disk).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let layer = omni_metrics::OmniMetricsLayer::builder().with_jsonl_writer(std::io::sink()).build()?;
    /// layer.handle().flush(Duration::from_secs(2))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn flush(&self, timeout: std::time::Duration) -> Result<(), crate::report::FlushError> {
        match self.shared.sink_writer.get() {
            Some(writer) => writer.flush(timeout),
            None => Ok(()),
        }
    }

    /// Records the built-in console and JSON-lines sinks lost so far (queue full, failed
    /// writes); see [`SinkLosses`](crate::report::SinkLosses).
    pub fn sink_losses(&self) -> crate::report::SinkLosses {
        self.shared
            .sink_writer
            .get()
            .map(|writer| writer.losses())
            .unwrap_or_default()
    }

    /// Flushes within `timeout`, then reports once what the built-in sinks lost.
    pub(crate) fn shutdown_sinks(
        &self,
        timeout: std::time::Duration,
    ) -> Result<(), crate::report::FlushError> {
        match self.shared.sink_writer.get() {
            Some(writer) => writer.shutdown(timeout),
            None => Ok(()),
        }
    }
}
