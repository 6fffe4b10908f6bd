//! One request across processes (issue 10, item 1): the sender injects the request's trace
//! context and id into a carrier, the receiver opens its stage and the receiving half of the
//! transfer from it. Two subscribers in one test stand for the two processes (the
//! multi-process example runs real ones).

use std::collections::HashMap;
use std::time::Duration;

use omni_metrics::OmniMetricsLayer;
use omni_metrics::instrument::{Request, Transfer};
use omni_metrics::propagation::{self, EDGE_KEY, REQUEST_ID_KEY};
use omni_metrics::testing::CaptureSink;
use tracing::Dispatch;
use tracing_subscriber::prelude::*;

/// A metrics layer capturing its records, console off.
fn metrics() -> (OmniMetricsLayer, CaptureSink, omni_metrics::MetricsHandle) {
    let capture = CaptureSink::new();
    let layer = OmniMetricsLayer::builder()
        .with_console(false)
        .with_sink(capture.clone())
        .build()
        .expect("no file");
    let handle = layer.handle();
    (layer, capture, handle)
}

/// The worker's side: stage 1 of `r-1` runs here, from what arrived in `carrier`; it
/// reports its measured compute time back (returned).
fn worker(carrier: &HashMap<String, String>) -> f64 {
    let remote = propagation::extract(carrier);
    assert_eq!(remote.request_id(), Some("r-1"));
    let edge = remote.edge().expect("an edge");
    assert_eq!((edge.from, edge.to), (0, 1));
    {
        let rx = remote.rx_decode();
        if let Some(t) = rx.transfer() {
            t.size_bytes(4096);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let stage = remote.stage(1);
    stage.name("talker").tokens_in(5).tokens_out(20);
    std::thread::sleep(Duration::from_millis(3));
    drop(stage);
    3.0
}

/// The orchestrator's side: request `r-1` runs stage 0 and sends its output over edge
/// `0->1`, its context injected into the carrier that goes with it.
fn send_to_worker() -> (Request, Transfer, HashMap<String, String>) {
    let request = Request::start("r-1");
    drop(request.stage(0));
    let transfer = request.transfer(0, 1);
    let mut carrier = HashMap::new();
    propagation::inject_transfer(transfer.span(), "r-1", 0, 1, &mut carrier);
    drop(transfer.tx());
    (request, transfer, carrier)
}

#[test]
fn a_remote_stage_is_counted_apart_not_as_a_mistake() {
    let (orchestrator, records, _) = metrics();
    let (worker_layer, worker_records, worker_handle) = metrics();
    let orchestrator = Dispatch::new(tracing_subscriber::registry().with(orchestrator));
    let worker_dispatch = Dispatch::new(tracing_subscriber::registry().with(worker_layer));

    let carrier = tracing::dispatcher::with_default(&orchestrator, send_to_worker);
    let (request, transfer, carrier) = carrier;
    assert_eq!(carrier[REQUEST_ID_KEY], "r-1");
    assert_eq!(carrier[EDGE_KEY], "0->1");

    let gen_ms = tracing::dispatcher::with_default(&worker_dispatch, || worker(&carrier));

    tracing::dispatcher::with_default(&orchestrator, || {
        // The worker's times come back as explicit fields: the orchestrator's tables are whole.
        transfer.times_ms(Some(0.5), Some(2.0), Some(0.1));
        drop(transfer);
        let stage = request.stage(1);
        stage
            .name("talker")
            .tokens_in(5)
            .tokens_out(20)
            .gen_time_ms(gen_ms);
        drop(stage);
        request.finish();
    });

    let r = &records.requests()[0];
    assert_eq!(r.stages.len(), 2);
    assert_eq!(r.stage(1).map(|s| s.stage_gen_time_ms), Some(3.0));
    assert_eq!(r.edge(0, 1).map(|e| e.rx_decode_time_ms), Some(2.0));
    // The worker: two remote spans (the transfer's receiving half and the stage), no
    // request, nothing invalid.
    let totals = worker_handle.totals();
    assert_eq!(totals.remote_spans, 2);
    assert_eq!(totals.invalid_spans, 0);
    assert_eq!(totals.requests_ok, 0);
    assert!(worker_records.requests().is_empty());
}

#[test]
fn a_stage_context_carries_the_stage_id() {
    let mut carrier = HashMap::new();
    propagation::inject_stage(&tracing::Span::none(), "r-s", 2, &mut carrier);
    assert_eq!(carrier[propagation::STAGE_KEY], "2");
    let remote = propagation::extract(&carrier);
    assert_eq!(
        (remote.request_id(), remote.stage_id()),
        (Some("r-s"), Some(2))
    );
    assert_eq!(remote.edge(), None);
}

#[test]
fn header_maps_carry_the_request_id() {
    let mut headers = http::HeaderMap::new();
    propagation::inject(&tracing::Span::none(), "r-h", &mut headers);
    assert_eq!(headers[REQUEST_ID_KEY], "r-h");
    let remote = propagation::extract(&headers);
    assert_eq!(remote.request_id(), Some("r-h"));
    // No subscriber exported the sender's span: no trace to continue, and no panic.
    assert!(!remote.continues_trace());
    drop(remote.stage(3));
}

#[cfg(feature = "otlp")]
#[path = "../support/grpc_receiver.rs"]
mod receiver;

#[cfg(feature = "otlp")]
mod otlp {
    use super::*;
    use crate::receiver::GrpcReceiver;
    use omni_metrics::otlp::OtlpPipeline;

    fn pipeline(receiver: &GrpcReceiver, service: &str) -> OtlpPipeline {
        OtlpPipeline::builder()
            .with_endpoint(format!("http://{}", receiver.addr))
            .with_service_name(service)
            .with_shutdown_timeout(Duration::from_secs(10))
            .build()
            .expect("pipeline")
    }

    /// Two "processes", each exporting its own spans: the worker's stage and transfer half
    /// land in the orchestrator's request trace, under the sender's transfer span.
    #[test]
    fn the_worker_spans_join_the_request_trace() {
        let receiver = GrpcReceiver::start();
        let (orchestrator_pipeline, worker_pipeline) = (
            pipeline(&receiver, "orchestrator"),
            pipeline(&receiver, "worker"),
        );
        let (orchestrator, records, _) = metrics();
        let (worker_layer, _, worker_handle) = metrics();
        let orchestrator = Dispatch::new(
            tracing_subscriber::registry()
                .with(orchestrator)
                .with(orchestrator_pipeline.layer()),
        );
        let worker_dispatch = Dispatch::new(
            tracing_subscriber::registry()
                .with(worker_layer)
                .with(worker_pipeline.layer()),
        );
        let (request, transfer, mut carrier) =
            tracing::dispatcher::with_default(&orchestrator, send_to_worker);
        assert!(carrier.contains_key("traceparent"), "{carrier:?}");
        // The sender runs as replica 3 of its stage: the receiving half says so.
        propagation::set_replica(3, &mut carrier);
        let gen_ms = tracing::dispatcher::with_default(&worker_dispatch, || {
            assert!(propagation::extract(&carrier).continues_trace());
            worker(&carrier)
        });
        tracing::dispatcher::with_default(&orchestrator, || {
            drop(transfer);
            let stage = request.stage(1);
            stage.gen_time_ms(gen_ms);
            drop(stage);
            request.finish();
        });
        worker_pipeline
            .into_guard()
            .shutdown()
            .expect("worker spans exported");
        orchestrator_pipeline
            .into_guard()
            .shutdown()
            .expect("orchestrator spans exported");
        assert_eq!(worker_handle.totals().remote_spans, 2);

        let spans = receiver.spans();
        let trace = records.requests()[0].trace_id.clone().expect("a trace id");
        let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
        for s in &spans {
            assert_eq!(
                hex(&s.trace_id),
                trace,
                "{} is in the request's trace",
                s.name
            );
        }
        let sender = spans
            .iter()
            .find(|s| s.name == "transfer 0->1")
            .expect("the sender's transfer");
        let rx = spans
            .iter()
            .find(|s| s.name == "transfer 0->1 rx")
            .expect("the worker's transfer half");
        assert_eq!(
            rx.parent_span_id, sender.span_id,
            "rx under the sender's transfer"
        );
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        let from_replica = rx
            .attributes
            .iter()
            .find(|a| a.key == "from_replica")
            .and_then(|a| a.value.as_ref()?.value.as_ref());
        assert_eq!(
            from_replica,
            Some(&Value::IntValue(3)),
            "the sender's replica carried"
        );
        let remote_stage = spans
            .iter()
            .find(|s| s.name == "stage 1" && s.parent_span_id == sender.span_id)
            .expect("the worker's stage, under the transfer that brought its input");
        assert!(remote_stage.end_time_unix_nano > remote_stage.start_time_unix_nano);
    }

    #[test]
    fn a_missing_or_malformed_context_starts_a_fresh_trace_and_is_counted() {
        let receiver = GrpcReceiver::start();
        let worker_pipeline = pipeline(&receiver, "worker");
        let (worker_layer, _, handle) = metrics();
        let dispatch = Dispatch::new(
            tracing_subscriber::registry()
                .with(worker_layer)
                .with(worker_pipeline.layer()),
        );
        let before = propagation::fresh_traces();
        tracing::dispatcher::with_default(&dispatch, || {
            let mut carrier = HashMap::new();
            carrier.insert(REQUEST_ID_KEY.to_owned(), "r-9".to_owned());
            carrier.insert("traceparent".to_owned(), "00-not-a-trace-01".to_owned());
            let remote = propagation::extract(&carrier);
            assert!(!remote.continues_trace());
            drop(remote.stage(2));
            drop(propagation::extract(&HashMap::new()).stage(2));
        });
        assert!(propagation::fresh_traces() >= before + 2);
        worker_pipeline.into_guard().shutdown().expect("exported");
        assert_eq!(handle.totals().invalid_spans, 0);
        let spans = receiver.spans();
        assert_eq!(spans.len(), 2);
        assert!(
            spans.iter().all(|s| s.parent_span_id.is_empty()),
            "fresh roots"
        );
    }
}

/// In a trace rebuilt from several processes the remote stage sits under its request (and
/// under the owner's stage): it is still remote work, not a second stage.
#[test]
fn a_remote_stage_under_its_request_is_not_counted_twice() {
    let (layer, records, handle) = metrics();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let request = Request::start("r-1");
        let stage = request.stage(1);
        stage.gen_time_ms(3.0);
        let mut carrier = HashMap::new();
        propagation::inject(stage.span(), "r-1", &mut carrier);
        let remote = stage
            .span()
            .in_scope(|| propagation::extract(&carrier).stage(1));
        remote.tokens_out(20);
        drop(remote);
        drop(stage);
        request.finish();
    });
    let r = &records.requests()[0];
    assert_eq!(r.stages.len(), 1);
    assert_eq!(
        r.stage(1).map(|s| (s.stage_gen_time_ms, s.num_tokens_out)),
        Some((3.0, 0))
    );
    assert_eq!(handle.totals().remote_spans, 1);
    assert_eq!(handle.totals().invalid_spans, 0);
}
