use std::sync::{Arc, Mutex, PoisonError};

use super::{Record, Sink};
use crate::stats::{OverallSummary, RequestE2EStats};

/// Keeps every record in memory, in arrival order: for tests of your own pipeline.
///
/// Clones share the same records. It runs synchronously, on the thread that closed the span
/// (unlike the built-in console and JSON lines, which are written by the layer's writer
/// thread), so a test reads a request's record as soon as its span has closed.
///
/// # Scoped subscribers: close spans where the subscriber is the default
///
/// A scoped subscriber (`tracing::subscriber::with_default`, `set_default`) is the default
/// of the calling thread only. Dropping a span's last handle on another thread, where that
/// subscriber is not the default, does close the span, but the Registry then releases the
/// span's *parent* through that thread's default dispatcher: the parent never closes, so
/// its request is never recorded (it is listed by
/// [`MetricsHandle::open_spans`](crate::MetricsHandle::open_spans) instead). A stage or
/// transfer handed to a worker thread or task must be dropped there under the same
/// dispatcher: give the thread the dispatcher (`tracing::dispatcher::with_default(&dispatch,
/// ..)` around its work) or the task (`.with_subscriber(dispatch)` from
/// `tracing::instrument::WithSubscriber`). Under a global subscriber
/// (`omni_metrics::init()`), any thread may drop any span.
///
/// ```
/// use omni_metrics::report::CaptureSink;
/// use tracing_subscriber::prelude::*;
///
/// let capture = CaptureSink::new();
/// let layer = omni_metrics::OmniMetricsLayer::builder()
///     .with_console(false)
///     .with_sink(capture.clone())
///     .build()?;
/// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
///     let _request = tracing::info_span!("omni.request", request_id = "r-1");
/// });
/// assert_eq!(capture.requests()[0].request_id, "r-1");
/// assert_eq!(capture.summaries()[0].e2e_requests, 1);
/// # Ok::<(), omni_metrics::BuildError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct CaptureSink {
    records: Arc<Mutex<Vec<Record>>>,
}

impl CaptureSink {
    /// An empty capture.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every record so far.
    pub fn records(&self) -> Vec<Record> {
        self.lock().clone()
    }

    /// The finished requests so far.
    pub fn requests(&self) -> Vec<RequestE2EStats> {
        self.lock()
            .iter()
            .filter_map(|r| match r {
                Record::Request(r) => Some(r.clone()),
                Record::Summary(_) => None,
            })
            .collect()
    }

    /// The finished scopes so far.
    pub fn summaries(&self) -> Vec<OverallSummary> {
        self.lock()
            .iter()
            .filter_map(|r| match r {
                Record::Summary(s) => Some(s.clone()),
                Record::Request(_) => None,
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Record>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Sink for CaptureSink {
    fn on_request(&self, request: &RequestE2EStats) {
        self.lock().push(Record::Request(request.clone()));
    }

    fn on_summary(&self, summary: &OverallSummary) {
        self.lock().push(Record::Summary(summary.clone()));
    }
}
