//! The trace file: the pipeline's spans written by the crate itself, one line of OTLP JSON
//! per exported batch, as the Collector's file exporter writes them (`format: json`), so
//! that `omni-metrics report` runs on a laptop with no collector
//! ([`OtlpBuilder::with_trace_file`](super::OtlpBuilder::with_trace_file),
//! `OMNI_METRICS_TRACE_FILE`).
//!
//! - Each batch is converted by opentelemetry-proto's own transform (the one the OTLP
//!   exporter sends: spans grouped by resource and scope) into a `TracesData` and
//!   serialized by its serde support, which follows the OTLP/JSON mapping the Collector
//!   writes and reads: camelCase keys, hex trace and span ids, 64-bit integers as strings,
//!   enums as integers. Spans are first put in their exported form, as for a collector
//!   (`export::shape`), so the file holds what a collector would have written. One
//!   difference: a float attribute that is not finite (`NaN`, an infinity) is written `null`
//!   (serde_json's only choice), where the Collector writes `"NaN"`; the convention's times
//!   are always finite, and the report says such a value of the engine's own and ignores it.
//! - The SDK's batch processor (its own thread and queue) serializes; the line goes to the
//!   file through the built-in sinks' non-blocking writer ([`LineWriter`]): its bounded
//!   queue, no partial line after a failed write, a file created again after rotation, a
//!   link of another user not followed. Nothing is waited for: a batch that finds the
//!   queue full is dropped, and every span lost is counted ([`ExportStats`]), said once as
//!   it happens and again at shutdown.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::TracesData;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use super::export::shape;
use super::{ExportStats, OtlpError};
use crate::report::writer::{Delivery, LineWriter};

/// Spans in one exported batch at most (the SDK's default `max_export_batch_size`): the
/// writer's queue holds as many spans as the batch queue, in lines of this many.
const BATCH_SPANS: usize = 512;

/// An open trace file: its writer thread and what became of its spans.
#[derive(Debug)]
pub(super) struct TraceFile {
    writer: LineWriter,
    stats: Arc<ExportStats>,
    path: PathBuf,
    /// How long a shutdown waits for the queued lines.
    timeout: Duration,
}

impl TraceFile {
    /// Opens (creates, or appends to) the file at `path` and starts its writer, whose queue
    /// holds as many spans as a batch queue of `max_queue_size`; `from_env` says where the
    /// path came from, for the error.
    pub(super) fn open(
        path: PathBuf,
        from_env: bool,
        max_queue_size: usize,
        timeout: Duration,
    ) -> Result<Arc<Self>, OtlpError> {
        let stats = Arc::new(ExportStats::new(max_queue_size));
        let lines = max_queue_size.div_ceil(BATCH_SPANS).max(2);
        let writer = LineWriter::start(&path, lines, stats.clone(), "omni-trace-file")
            .map_err(|e| OtlpError::trace_file(&path, from_env, e))?;
        Ok(Arc::new(Self {
            writer,
            stats,
            path,
            timeout,
        }))
    }

    /// The exporter writing to this file.
    pub(super) fn exporter(self: &Arc<Self>) -> TraceFileExporter {
        TraceFileExporter {
            file: self.clone(),
            resource: ResourceAttributesWithSchema::default(),
        }
    }

    /// The file's path, as given.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// What became of the spans handed to the file.
    pub(super) fn stats(&self) -> &Arc<ExportStats> {
        &self.stats
    }

    /// The subscriber where the writer's losses are said.
    pub(super) fn register(&self, dispatch: &tracing::Dispatch) {
        self.writer.register(dispatch);
    }

    /// Waits at most `timeout` for the lines queued so far to be written.
    pub(super) fn flush(&self, timeout: Duration) -> Result<(), String> {
        self.writer
            .flush(timeout)
            .map_err(|e| self.not_written(e.pending(), timeout))
    }

    /// Stops the writer once the lines queued are written, waiting at most the shutdown
    /// timeout; safe to call twice.
    pub(super) fn close(&self) -> Result<(), String> {
        self.writer
            .close(self.timeout)
            .map_err(|e| self.not_written(e.pending(), self.timeout))
    }

    fn not_written(&self, pending: u64, timeout: Duration) -> String {
        format!(
            "{pending} batches of spans were still queued for the trace file `{}` after \
             {timeout:?} (a stalled disk?)",
            self.path.display()
        )
    }
}

/// The span exporter writing OTLP JSON lines to a [`TraceFile`] (see the module docs).
#[derive(Debug)]
pub(super) struct TraceFileExporter {
    file: Arc<TraceFile>,
    resource: ResourceAttributesWithSchema,
}

impl TraceFileExporter {
    /// `batch`, in its exported form, as one line of OTLP JSON with its newline.
    fn line(&self, mut batch: Vec<SpanData>) -> serde_json::Result<Vec<u8>> {
        batch.iter_mut().for_each(shape);
        let data = TracesData {
            resource_spans: group_spans_by_resource_and_scope(batch, &self.resource),
        };
        let mut line = Vec::with_capacity(4096);
        crate::report::append_json(&mut line, &data)?;
        line.push(b'\n');
        Ok(line)
    }
}

impl SpanExporter for TraceFileExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        if spans == 0 {
            return Ok(());
        }
        match self.line(batch) {
            Ok(line) => {
                if self.file.writer.send(line, spans) {
                    Ok(())
                } else {
                    // Dropped, never waited for: among the spans not written (the writer
                    // says it once).
                    Err(OTelSdkError::InternalFailure(
                        "the trace file's queue is full".into(),
                    ))
                }
            }
            Err(error) => {
                Delivery::delivered(&**self.file.stats(), spans, false);
                Err(OTelSdkError::InternalFailure(format!(
                    "cannot serialize spans for the trace file: {error}"
                )))
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.file
            .flush(self.file.timeout)
            .map_err(OTelSdkError::InternalFailure)
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        // The batch processor passes the SDK's own 5 s; the pipeline's timeout is the user's.
        self.file.close().map_err(OTelSdkError::InternalFailure)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.resource = resource.into();
    }
}

/// Tells the trace file which subscriber it serves, so that its losses are said there: the
/// last layer of [`OtlpPipeline::layer`](super::OtlpPipeline::layer).
pub(super) struct FileRegistrar(pub(super) Option<Arc<TraceFile>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for FileRegistrar {
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        if let Some(file) = &self.0 {
            file.register(subscriber);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use std::borrow::Cow;
    use std::time::{Duration, SystemTime};

    fn span(name: &'static str, attributes: Vec<KeyValue>) -> SpanData {
        let at = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10),
                SpanId::from(0x1112_1314_1516_1718),
                TraceFlags::SAMPLED,
                false,
                Default::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Borrowed(name),
            start_time: at,
            end_time: at + Duration::from_nanos(2_500_001),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    /// One line per batch, in the OTLP/JSON mapping: hex ids, int64 and times as strings,
    /// camelCase keys, the resource; the spans shaped as for a collector.
    #[test]
    fn a_batch_is_one_otlp_json_line() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("trace.jsonl");
        let file = TraceFile::open(path.clone(), false, 1024, Duration::from_secs(10))
            .expect("the file opens");
        let mut exporter = file.exporter();
        exporter.set_resource(
            &opentelemetry_sdk::Resource::builder()
                .with_service_name("engine")
                .build(),
        );
        let batch = vec![
            span(
                "omni.request",
                vec![
                    KeyValue::new("request_id", "r-1"),
                    KeyValue::new("num_tokens_in", "4860"),
                ],
            ),
            span("stage 0 thinker", vec![KeyValue::new("stage_id", 0_i64)]),
        ];
        let exported = futures_executor_block_on(exporter.export(batch));
        assert!(exported.is_ok(), "{exported:?}");
        assert!(
            exporter
                .shutdown_with_timeout(Duration::from_secs(5))
                .is_ok()
        );
        let text = std::fs::read_to_string(&path).expect("the file");
        assert_eq!(text.lines().count(), 1, "{text}");
        let line: serde_json::Value = serde_json::from_str(text.trim_end()).expect("JSON");
        let resource = &line["resourceSpans"][0];
        assert_eq!(
            resource["resource"]["attributes"]
                .as_array()
                .and_then(|a| a.iter().find(|kv| kv["key"] == "service.name"))
                .map(|kv| kv["value"]["stringValue"].clone()),
            Some(serde_json::json!("engine"))
        );
        let spans = &resource["scopeSpans"][0]["spans"];
        let request = &spans[0];
        assert_eq!(request["traceId"], "0102030405060708090a0b0c0d0e0f10");
        assert_eq!(request["spanId"], "1112131415161718");
        assert_eq!(request["startTimeUnixNano"], "1700000000123456789");
        assert_eq!(request["endTimeUnixNano"], "1700000000125956790");
        assert_eq!(
            request["kind"], 2,
            "a request is a SERVER span, as exported"
        );
        let attribute = |span: &serde_json::Value, key: &str| {
            span["attributes"]
                .as_array()
                .and_then(|a| a.iter().find(|kv| kv["key"] == key))
                .map(|kv| kv["value"].clone())
        };
        assert_eq!(
            attribute(request, "num_tokens_in"),
            Some(serde_json::json!({"intValue": "4860"})),
            "a count is an int64, as a string"
        );
        assert_eq!(
            attribute(&spans[1], "stage_id"),
            Some(serde_json::json!({"intValue": "0"}))
        );
        let stats = file.stats();
        assert_eq!((stats.exported(), stats.failed()), (2, 0));
    }

    /// The SDK's exporters are futures that never wait here: poll it once.
    fn futures_executor_block_on<F: std::future::Future>(future: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut future = std::pin::pin!(future);
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => panic!("the trace file's export never waits"),
        }
    }
}
