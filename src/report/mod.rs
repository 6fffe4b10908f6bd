//! Reports and sinks: where finished requests and scopes go.
//!
//! The layer calls every [`Sink`] of yours once per finished request and once per finished
//! scope, from the thread that closed the span, with no span lock held. Its own outputs are
//! the console tables ([`Builder::with_console`](crate::Builder::with_console); a record's
//! `Display` renders them), JSON lines
//! ([`Builder::with_jsonl`](crate::Builder::with_jsonl), one [`Record`] per line) and an
//! HTML report of each run ([`html`]); the `testing` feature adds an in-memory
//! `CaptureSink` for tests.
//!
//! The layer's built-in console, JSON lines and HTML report run on writer threads of their
//! own, fed by bounded queues: the engine's thread only queues the finished record, and a
//! record that does not fit is dropped and counted ([`SinkLosses`]), never waited for.
//! [`MetricsHandle::flush`](crate::MetricsHandle::flush) waits for what is queued, and
//! dropping the [`OmniGuard`](crate::OmniGuard) flushes within
//! [`OmniMetricsLayer::FLUSH_TIMEOUT`](crate::OmniMetricsLayer::FLUSH_TIMEOUT).
#![doc = include_str!("../../docs/reference/report.md")]

mod console;
pub mod html;
mod jsonl;
mod server_timing;
pub(crate) mod table;
pub(crate) mod writer;

pub(crate) use console::ConsoleSink;
pub use jsonl::Record;
#[cfg(feature = "otlp")]
pub(crate) use jsonl::append_json;
pub(crate) use jsonl::{JsonLinesSink, open_append};
pub use server_timing::server_timing;
pub use writer::{FlushError, SinkLosses};

use crate::MetricsHandle;
use crate::stats::{OverallSummary, RequestE2EStats};

/// Receives finished requests and scopes from an [`OmniMetricsLayer`](crate::OmniMetricsLayer).
///
/// Called on the engine's threads: keep it quick, never block on I/O (hand the work to a
/// thread of yours, as the built-in console and JSON lines do), and never panic (a panic is
/// caught, reported once, and the record skipped).
///
/// ```
/// use omni_metrics::report::Sink;
/// use omni_metrics::stats::RequestE2EStats;
///
/// struct SlowRequests;
/// impl Sink for SlowRequests {
///     fn on_request(&self, r: &RequestE2EStats) {
///         if r.e2e_total_ms > 10_000.0 {
///             tracing::warn!(request_id = %r.request_id, "slow request");
///         }
///     }
/// }
/// let layer = omni_metrics::OmniMetricsLayer::builder().with_sink(SlowRequests).build()?;
/// # drop(layer);
/// # Ok::<(), omni_metrics::BuildError>(())
/// ```
pub trait Sink: Send + Sync + 'static {
    /// A request finished (any status).
    fn on_request(&self, request: &RequestE2EStats) {
        let _ = request;
    }

    /// A scope finished: a run closed, or an online request (sent before its request).
    fn on_summary(&self, summary: &OverallSummary) {
        let _ = summary;
    }

    /// A layer was built with this sink ([`Builder::build`](crate::Builder::build)): `handle`
    /// reads it, from any thread, for as long as the sink wants (its totals, its
    /// [`live`](MetricsHandle::live) gauges). Called once per layer built, before any
    /// request (a clone of the layer is the same layer). The metrics exports keep it to
    /// read the live gauges when they are collected; the default does nothing.
    ///
    /// A handle does not hold the layer's sinks (keeping it makes no cycle); once the layer
    /// is dropped its live gauges read 0.
    fn on_layer_built(&self, handle: &MetricsHandle) {
        let _ = handle;
    }
}
