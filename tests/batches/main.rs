//! Batches are visible (issue 10, item 2): an `omni.batch` span linked to each request's
//! stage, both ways; the tables take its batch id and size where the stage gives none.

use omni_metrics::OmniMetricsLayer;
use omni_metrics::instrument::{Batch, Request};
use omni_metrics::testing::CaptureSink;
use tracing_subscriber::prelude::*;

fn with_layer(f: impl FnOnce()) -> (CaptureSink, omni_metrics::MetricsHandle) {
    let capture = CaptureSink::new();
    let layer = OmniMetricsLayer::builder()
        .with_console(false)
        .with_sink(capture.clone())
        .build()
        .expect("no file");
    let handle = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
    (capture, handle)
}

#[test]
fn stages_linked_to_a_batch_take_its_id_and_size() {
    let (capture, handle) = with_layer(|| {
        let (a, b) = (Request::start("r-a"), Request::start("r-b"));
        let (stage_a, stage_b) = (a.stage(0), b.stage(0));
        let batch = Batch::start(0, 38, 2);
        batch.add(&stage_a).add(&stage_b);
        drop(batch);
        drop((stage_a, stage_b));
        a.finish();
        b.finish();
    });
    for r in capture.requests() {
        let s = r.stage(0).expect("stage 0");
        assert_eq!(
            (s.batch_id, s.batch_size, s.batch_recorded),
            (38, 2, true),
            "{}",
            r.request_id
        );
    }
    assert_eq!(handle.totals().invalid_spans, 0, "a batch is no mistake");
}

#[test]
fn a_stage_keeps_its_own_batch_fields() {
    let (capture, _) = with_layer(|| {
        let request = Request::start("r-own");
        let stage = request.stage(1);
        stage.batch(7, 4);
        Batch::start(1, 99, 8).add(&stage);
        drop(stage);
        request.finish();
    });
    let s = capture.requests()[0].stage(1).cloned().expect("stage 1");
    assert_eq!((s.batch_id, s.batch_size), (7, 4));
}

#[test]
fn a_raw_one_way_link_is_enough() {
    let (capture, _) = with_layer(|| {
        let request = tracing::info_span!("omni.request", request_id = "r-raw");
        let stage = tracing::info_span!(parent: &request, "omni.stage", stage_id = 2);
        let batch = tracing::info_span!(parent: None, "omni.batch", stage_id = 2, batch_id = 0, batch_size = 3);
        stage.follows_from(&batch);
        drop(batch);
        drop(stage);
        drop(request);
    });
    let s = capture.requests()[0].stage(2).cloned().expect("stage 2");
    assert_eq!((s.batch_id, s.batch_size, s.batch_recorded), (0, 3, true));
}

#[cfg(feature = "otlp")]
#[path = "../support/grpc_receiver.rs"]
mod receiver;

/// Exported, the batch is a root span linked to both stages, and each stage links back.
#[cfg(feature = "otlp")]
#[test]
fn exported_batches_link_their_requests_both_ways() {
    use omni_metrics::otlp::OtlpPipeline;
    use std::time::Duration;
    let receiver = receiver::GrpcReceiver::start();
    let pipeline = OtlpPipeline::builder()
        .with_endpoint(format!("http://{}", receiver.addr))
        .with_shutdown_timeout(Duration::from_secs(10))
        .build()
        .expect("pipeline");
    let layer = OmniMetricsLayer::builder()
        .with_console(false)
        .build()
        .expect("no file");
    let subscriber = tracing_subscriber::registry()
        .with(layer)
        .with(pipeline.layer());
    tracing::subscriber::with_default(subscriber, || {
        let (a, b) = (Request::start("r-a"), Request::start("r-b"));
        let (stage_a, stage_b) = (a.stage(0), b.stage(0));
        Batch::start(0, 5, 2).add(&stage_a).add(&stage_b);
        drop((stage_a, stage_b));
        a.finish();
        b.finish();
    });
    pipeline.into_guard().shutdown().expect("exported");
    let spans = receiver.spans();
    let batch = spans
        .iter()
        .find(|s| s.name == "batch of stage 0")
        .expect("the batch span (its id an attribute, not in its name)");
    assert!(
        batch.attributes.iter().any(|a| a.key == "batch_id"),
        "{:?}",
        batch.attributes
    );
    assert!(batch.parent_span_id.is_empty(), "a root");
    let stages: Vec<_> = spans.iter().filter(|s| s.name == "omni.stage").collect();
    assert_eq!(stages.len(), 2);
    assert_eq!(batch.links.len(), 2);
    for stage in stages {
        assert!(
            batch.links.iter().any(|l| l.span_id == stage.span_id),
            "batch -> {}",
            stage.name
        );
        assert!(
            stage
                .links
                .iter()
                .any(|l| l.span_id == batch.span_id && l.trace_id == batch.trace_id),
            "stage -> batch"
        );
        assert_ne!(
            stage.trace_id, batch.trace_id,
            "the batch is in no request's trace"
        );
    }
}
