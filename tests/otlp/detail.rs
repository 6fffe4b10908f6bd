//! Trace volume levels (issue 10, item 3): `TraceDetail` thins the export, never the tables.

use std::time::Duration;

use omni_metrics::OmniMetricsLayer;
use omni_metrics::instrument::Request;
use omni_metrics::otlp::{OtlpPipeline, TraceDetail};
use omni_metrics::testing::CaptureSink;
use tracing_subscriber::prelude::*;

use crate::receiver::GrpcReceiver;

/// One request with every kind of span and two output chunks, exported at `detail`.
fn export_at(
    detail: TraceDetail,
) -> (
    Vec<opentelemetry_proto::tonic::trace::v1::Span>,
    CaptureSink,
) {
    let receiver = GrpcReceiver::start();
    let pipeline = OtlpPipeline::builder()
        .with_endpoint(format!("http://{}", receiver.addr))
        .with_trace_detail(detail)
        .with_shutdown_timeout(Duration::from_secs(10))
        .build()
        .expect("pipeline");
    let capture = CaptureSink::new();
    let metrics = OmniMetricsLayer::builder()
        .with_console(false)
        .with_sink(capture.clone())
        .build()
        .expect("no file");
    let subscriber = tracing_subscriber::registry()
        .with(metrics)
        .with(pipeline.layer());
    tracing::subscriber::with_default(subscriber, || {
        let request = Request::start("r-detail");
        let stage = request.stage(0);
        drop(stage.queue());
        stage.output(1).output(1);
        drop(stage.postprocess());
        drop(stage);
        let transfer = request.transfer(0, 1);
        drop(transfer.tx());
        drop(transfer.rx_decode());
        drop(transfer);
        request.finish();
    });
    pipeline.into_guard().shutdown().expect("exported");
    (receiver.spans(), capture)
}

fn names(spans: &[opentelemetry_proto::tonic::trace::v1::Span]) -> Vec<&str> {
    let mut names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    names
}

#[test]
fn full_detail_exports_timing_spans_and_output_events() {
    let (spans, _) = export_at(TraceDetail::Full);
    assert_eq!(spans.len(), 7, "{:?}", names(&spans));
    let stage = spans
        .iter()
        .find(|s| s.name == "omni.stage")
        .expect("stage");
    assert_eq!(
        stage
            .events
            .iter()
            .filter(|e| e.name == "omni.output")
            .count(),
        2
    );
}

#[test]
fn stage_detail_keeps_requests_stages_and_transfers_only() {
    let (spans, capture) = export_at(TraceDetail::Stages);
    assert_eq!(names(&spans), ["omni.stage", "request", "transfer 0->1"]);
    let stage = spans
        .iter()
        .find(|s| s.name == "omni.stage")
        .expect("stage");
    assert!(
        stage.events.iter().all(|e| e.name != "omni.output"),
        "no chunk events"
    );
    // The tables saw everything.
    let r = &capture.requests()[0];
    assert_eq!(r.stage(0).map(|s| s.output_chunks), Some(2));
    assert_eq!(r.edge(0, 1).map(|e| e.transfers), Some(1));
}

#[test]
fn request_detail_exports_one_span_per_request() {
    let (spans, capture) = export_at(TraceDetail::Requests);
    assert_eq!(names(&spans), ["request"]);
    assert_eq!(capture.requests()[0].stages.len(), 1);
}
