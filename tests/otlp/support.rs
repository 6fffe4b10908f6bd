//! Shared helpers: the convention's requests on the typed API, pipelines to a receiver on
//! loopback, the metrics layer with annotations, and reading the exported spans.

use std::collections::HashSet;
use std::time::Duration;

use omni_metrics::OmniMetricsLayer;
use omni_metrics::instrument::Request;
use omni_metrics::otlp::{OtlpPipeline, OtlpProtocol};
use omni_metrics::testing::CaptureSink;
use opentelemetry_proto::tonic::trace::v1::Span;
use tracing_subscriber::prelude::*;

use crate::receiver::GrpcReceiver;

/// Three requests through thinker -> talker -> code2wav, with the typed API; each stage
/// computes for `work`.
pub(crate) fn pipeline_requests() {
    requests_with_work(Duration::from_millis(3));
}

pub(crate) fn requests_with_work(work: Duration) {
    for i in 0..3 {
        let request = Request::start(&format!("r-{i}"));
        for stage_id in 0..3_u64 {
            let stage = request.stage(stage_id);
            stage
                .name(["thinker", "talker", "code2wav"][stage_id as usize])
                .tokens_in(10)
                .tokens_out(5);
            drop(stage.queue());
            if !work.is_zero() {
                std::thread::sleep(work);
            }
            drop(stage.postprocess());
            drop(stage);
            if stage_id < 2 {
                let t = request.transfer(stage_id, stage_id + 1);
                t.size_bytes(4096);
                drop(t.tx());
                drop(t.rx_decode());
            }
        }
        request.finish();
    }
}

/// A gRPC pipeline to `receiver`, waiting up to 10 s at shutdown.
pub(crate) fn pipeline_to(receiver: &GrpcReceiver) -> OtlpPipeline {
    OtlpPipeline::builder()
        .with_endpoint(format!("http://{}", receiver.addr))
        .with_shutdown_timeout(Duration::from_secs(10))
        .build()
        .expect("pipeline")
}

/// The metrics layer with trace annotations on, its records captured.
pub(crate) fn annotating_metrics() -> (OmniMetricsLayer, CaptureSink) {
    let capture = CaptureSink::new();
    let metrics = OmniMetricsLayer::builder()
        .with_console(false)
        .with_sink(capture.clone())
        .with_trace_annotations(true)
        .build()
        .expect("no file");
    (metrics, capture)
}

pub(crate) fn run_against(
    endpoint: String,
    timeout: Duration,
) -> (CaptureSink, omni_metrics::otlp::OtlpGuard) {
    run_with(endpoint, OtlpProtocol::Grpc, timeout)
}

pub(crate) fn run_with(
    endpoint: String,
    protocol: OtlpProtocol,
    timeout: Duration,
) -> (CaptureSink, omni_metrics::otlp::OtlpGuard) {
    let pipeline = OtlpPipeline::builder()
        .with_endpoint(endpoint)
        .with_protocol(protocol)
        .with_shutdown_timeout(timeout)
        .build()
        .expect("pipeline builds without a collector");
    let (metrics, capture) = annotating_metrics();
    let subscriber = tracing_subscriber::registry()
        .with(metrics)
        .with(pipeline.layer());
    tracing::subscriber::with_default(subscriber, pipeline_requests);
    (capture, pipeline.into_guard())
}

/// The exported request spans: `expected` of them, each in a trace of its own.
#[track_caller]
pub(crate) fn one_trace_per_request<'a>(
    spans: &'a [Span],
    expected: usize,
    why: &str,
) -> Vec<&'a Span> {
    let requests: Vec<&Span> = spans.iter().filter(|s| s.name == "request").collect();
    assert_eq!(requests.len(), expected, "request spans exported");
    let traces: HashSet<&[u8]> = requests.iter().map(|s| s.trace_id.as_slice()).collect();
    assert_eq!(traces.len(), expected, "{why}");
    requests
}

pub(crate) fn attr_str<'a>(s: &'a Span, key: &str) -> Option<&'a str> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match attr(s, key)? {
        Value::StringValue(v) => Some(v),
        _ => None,
    }
}

/// The exported span of request `id`: named `request`, the id an attribute.
pub(crate) fn is_request(s: &Span, id: &str) -> bool {
    s.name == "request" && attr_str(s, "request_id") == Some(id)
}

/// The exported span of run `id`: named `run`, the id an attribute.
pub(crate) fn is_run(s: &Span, id: &str) -> bool {
    s.name == "run" && attr_str(s, "run_id") == Some(id)
}

pub(crate) fn attr_f64(s: &Span, key: &str) -> Option<f64> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    s.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            Value::DoubleValue(v) => Some(*v),
            Value::IntValue(v) => Some(*v as f64),
            _ => None,
        }
    })
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn attr<'a>(
    s: &'a Span,
    key: &str,
) -> Option<&'a opentelemetry_proto::tonic::common::v1::any_value::Value> {
    s.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
}
