//! Between the SDK and the collector: what is exported is counted by outcome, losses are
//! said when they happen, and exported spans are put in the form a trace backend queries.
//!
//! - Counts arrive as OTLP ints: `tracing-opentelemetry` has no `record_u64`, so a `u64`
//!   field (`num_tokens_in = n`) would arrive as the string `"4860"`.
//! - An `omni.request` span is of kind SERVER, however it was opened.
//! - `code.*` attributes that point into this crate (the typed API's spans) say nothing to
//!   the user and are dropped; the engine's own spans keep theirs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry::Value;
use opentelemetry::trace::SpanKind;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter, SpanProcessor};

use crate::convention::{FieldKind, field, span_field};

/// How often a loss summary is logged at most, after the first loss was said.
pub(crate) const LOSS_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// Counts of spans by what became of them, to report what was lost and why: of the
/// spans exported to the collector ([`OtlpGuard::stats`](super::OtlpGuard::stats)), or of
/// those written to the trace file
/// ([`OtlpGuard::trace_file_stats`](super::OtlpGuard::trace_file_stats)), each counted
/// apart.
///
/// For the trace file, [`exported`](Self::exported) counts the spans written to it,
/// [`failed`](Self::failed) those whose write failed, and [`timed_out`](Self::timed_out)
/// is always 0; spans dropped because a queue was full are among the
/// [`unaccounted`](Self::unaccounted).
#[derive(Debug)]
pub struct ExportStats {
    ended: AtomicU64,
    exported: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    failed_batches: AtomicU64,
    max_queue: u64,
    reports: LossReports<(u64, u64, u64)>,
}

/// When losses were last logged, and what they were: the first is said at once, a change
/// at most every [`LOSS_REPORT_INTERVAL`] after.
#[derive(Debug, Default)]
pub(crate) struct LossReports<T>(Mutex<(Option<Instant>, T)>);

impl<T: PartialEq + Copy> LossReports<T> {
    /// Whether the losses `now` are to be said now (they are then noted as said).
    pub(crate) fn due(&self, now: T) -> bool {
        let mut reports = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, said) = &mut *reports;
        if now == *said || last.is_some_and(|at| at.elapsed() < LOSS_REPORT_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        *said = now;
        true
    }
}

impl ExportStats {
    pub(super) fn new(max_queue: usize) -> Self {
        Self {
            ended: AtomicU64::new(0),
            exported: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            failed_batches: AtomicU64::new(0),
            max_queue: max_queue as u64,
            reports: LossReports::default(),
        }
    }

    /// Sampled spans that ended and were handed to the batch processor.
    pub fn ended(&self) -> u64 {
        self.ended.load(Ordering::Relaxed)
    }

    /// Spans the collector accepted (or written to the trace file).
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }

    /// Spans in exports that failed (collector down, refused; a trace file's write that
    /// failed).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Spans in exports that timed out (`OTEL_EXPORTER_OTLP_TIMEOUT`). The collector may
    /// still have received them: a timeout only means no answer came in time.
    pub fn timed_out(&self) -> u64 {
        self.timed_out.load(Ordering::Relaxed)
    }

    /// Spans not accounted for by an export: waiting in the queue or in an export now, or
    /// dropped because the queue was full. Once the pipeline is shut down, all of them were
    /// dropped (or still queued when shutdown gave up).
    pub fn unaccounted(&self) -> u64 {
        self.ended()
            .saturating_sub(self.exported())
            .saturating_sub(self.failed())
            .saturating_sub(self.timed_out())
    }

    /// Spans that did not reach the collector (as far as it answered): failed, timed out,
    /// dropped from a full queue or left queued.
    pub fn not_exported(&self) -> u64 {
        self.ended().saturating_sub(self.exported())
    }

    /// Export calls that failed or timed out.
    pub fn failed_batches(&self) -> u64 {
        self.failed_batches.load(Ordering::Relaxed)
    }

    /// Spans certainly dropped by a full queue while running: more are unaccounted for than
    /// the queue holds. (The batch processor keeps no count of its own drops that we can
    /// read; at shutdown every unaccounted span is a drop.)
    fn surely_dropped(&self) -> u64 {
        // One batch may be in flight beside a full queue.
        self.unaccounted()
            .saturating_sub(self.max_queue.saturating_add(BATCH_SLACK))
    }

    /// Logs the first loss at once, then a summary at most every [`LOSS_REPORT_INTERVAL`].
    fn report_losses(&self) {
        let now = (self.surely_dropped(), self.failed(), self.timed_out());
        if !self.reports.due(now) {
            return;
        }
        tracing::warn!(
            target: "omni_metrics::otlp",
            queue_full = now.0,
            failed = now.1,
            timed_out = now.2,
            "OTLP export is losing spans: {} dropped because the queue was full (raise \
             OTEL_BSP_MAX_QUEUE_SIZE), {} in exports that failed (is the collector up and \
             reachable?), {} in exports that timed out (raise OTEL_EXPORTER_OTLP_TIMEOUT; the \
             collector may have received them). The tables and records are complete. Said at \
             most every {}s.",
            now.0,
            now.1,
            now.2,
            LOSS_REPORT_INTERVAL.as_secs()
        );
    }
}

/// The trace file's writer tells what became of each line's spans.
impl crate::report::writer::Delivery for ExportStats {
    fn delivered(&self, items: u64, written: bool) {
        if written {
            self.exported.fetch_add(items, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(items, Ordering::Relaxed);
            self.failed_batches.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether an export failed for want of an answer in time. opentelemetry-otlp reports a
/// gRPC `DeadlineExceeded` or an HTTP timeout as an `InternalFailure` with the cause in its
/// text, so the text is read too.
pub(super) fn is_timeout(error: &OTelSdkError) -> bool {
    match error {
        OTelSdkError::Timeout(_) => true,
        other => {
            let text = other.to_string().to_ascii_lowercase();
            ["timeout", "timed out", "deadline"]
                .iter()
                .any(|needle| text.contains(needle))
        }
    }
}

/// Spans of a batch in flight beside a full queue (the SDK's default batch size).
const BATCH_SLACK: u64 = 512;

/// Puts each span in its exported form and counts what the inner exporter delivered, by
/// outcome.
#[derive(Debug)]
pub(super) struct CountingExporter<E> {
    pub(super) inner: E,
    pub(super) stats: Arc<ExportStats>,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        // Here, on the export thread, not in `on_end` on the engine's.
        batch.iter_mut().for_each(shape);
        let n = batch.len() as u64;
        let result = self.inner.export(batch).await;
        let counter = match &result {
            Ok(()) => &self.stats.exported,
            Err(e) if is_timeout(e) => &self.stats.timed_out,
            Err(_) => &self.stats.failed,
        };
        counter.fetch_add(n, Ordering::Relaxed);
        if result.is_err() {
            self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.report_losses();
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// Counts the spans handed to the batch processor.
#[derive(Debug)]
pub(super) struct CountingProcessor<P> {
    pub(super) inner: P,
    pub(super) stats: Arc<ExportStats>,
}

impl<P: SpanProcessor> SpanProcessor for CountingProcessor<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.stats.ended.fetch_add(1, Ordering::Relaxed);
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// Puts one ended span in its exported form (see the module docs): for a collector, and
/// for the trace file.
pub(super) fn shape(span: &mut SpanData) {
    let mut is_request = span.name == crate::convention::REQUEST;
    let mut ours = false;
    for kv in &mut span.attributes {
        let key = kv.key.as_str();
        if key == field::REQUEST_ID {
            is_request |= span.name == crate::convention::exported::REQUEST;
        }
        if key == "code.module.name" {
            ours = matches!(&kv.value, Value::String(m) if m.as_str().starts_with("omni_metrics"));
        }
        let Value::String(text) = &kv.value else {
            continue;
        };
        let text = text.as_str().trim();
        // The convention's counts are exported as ints, its times as doubles.
        match span_field(key).map(|f| f.kind) {
            Some(FieldKind::Count) => {
                // Counts beyond i64 (OTLP's int) are clamped, never wrapped.
                if let Ok(v) = text.parse::<u64>() {
                    kv.value = Value::I64(i64::try_from(v).unwrap_or(i64::MAX));
                }
            }
            Some(FieldKind::Ms) => {
                if let Ok(v) = text.parse::<f64>() {
                    kv.value = Value::F64(crate::stats::finite(v));
                }
            }
            Some(FieldKind::Text) | None => {}
        }
    }
    if ours {
        span.attributes
            .retain(|kv| !kv.key.as_str().starts_with("code."));
    }
    if is_request && span.span_kind == SpanKind::Internal {
        span.span_kind = SpanKind::Server;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{SpanContext, Status};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use std::borrow::Cow;
    use std::time::SystemTime;

    fn span(name: &'static str, attributes: Vec<KeyValue>) -> SpanData {
        SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: opentelemetry::trace::SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Borrowed(name),
            start_time: SystemTime::UNIX_EPOCH,
            end_time: SystemTime::UNIX_EPOCH,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    #[test]
    fn counts_become_ints_and_requests_servers() {
        let mut s = span(
            "omni.request",
            vec![
                KeyValue::new("request_id", "r-1"),
                KeyValue::new("size_bytes", "111900005"),
                KeyValue::new("num_tokens_in", u64::MAX.to_string()),
                KeyValue::new("tx_time_ms", "78.7"),
                KeyValue::new("my_field", "12"),
                KeyValue::new("code.module.name", "omni_metrics::instrument"),
                KeyValue::new("code.file.path", "src/instrument.rs"),
            ],
        );
        shape(&mut s);
        let get = |k: &str| {
            s.attributes
                .iter()
                .find(|kv| kv.key.as_str() == k)
                .map(|kv| kv.value.clone())
        };
        assert_eq!(get("size_bytes"), Some(Value::I64(111_900_005)));
        assert_eq!(get("num_tokens_in"), Some(Value::I64(i64::MAX)));
        assert_eq!(get("tx_time_ms"), Some(Value::F64(78.7)));
        assert_eq!(
            get("my_field"),
            Some(Value::from("12")),
            "not the convention's"
        );
        assert_eq!(get("code.file.path"), None);
        assert_eq!(s.span_kind, SpanKind::Server);
    }
}
