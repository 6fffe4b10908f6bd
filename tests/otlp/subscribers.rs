//! The OpenTelemetry layer beside the metrics layer: either order, a layer cloned into two
//! subscribers, a span closed under another current subscriber, a layer inside `reload`.

use std::time::Duration;

use omni_metrics::instrument::Request;
use omni_metrics::otlp::OtlpPipeline;
use tracing_subscriber::prelude::*;

use crate::receiver::GrpcReceiver;
use crate::support::{
    annotating_metrics, attr, attr_f64, hex, is_request, one_trace_per_request, pipeline_requests,
    pipeline_to,
};
use crate::warnings;

/// Issue 6, item 3: the OTel layer added before the metrics layer still gets the names and
/// the table's numbers.
#[test]
fn issue6_otel_layer_before_metrics_keeps_names_and_numbers() {
    let receiver = GrpcReceiver::start();
    let pipeline = pipeline_to(&receiver);
    let (metrics, _) = annotating_metrics();
    let subscriber = tracing_subscriber::registry()
        .with(pipeline.layer())
        .with(metrics);
    tracing::subscriber::with_default(subscriber, pipeline_requests);
    pipeline
        .into_guard()
        .shutdown()
        .expect("every span exported");
    let spans = receiver.spans();
    let requests = one_trace_per_request(&spans, 3, "one trace per request");
    assert!(
        attr_f64(requests[0], "e2e_total_ms").is_some(),
        "{:?}",
        requests[0]
    );
    assert!(
        spans
            .iter()
            .any(|s| s.name == "stage 1 talker" && attr_f64(s, "stage_gen_time_ms").is_some())
    );
    assert!(
        spans
            .iter()
            .any(|s| s.name == "transfer 0->1" && attr_f64(s, "size_kbytes") == Some(4.0))
    );
}

/// Issue 6, item 3: a layer cloned into two subscribers annotates each subscriber's own
/// spans (it annotated the first subscriber's, and could panic inside the bridge).
#[test]
fn issue6_cloned_layer_annotates_its_own_subscriber() {
    let (first, second) = (GrpcReceiver::start(), GrpcReceiver::start());
    let pipeline = |r: &GrpcReceiver| {
        OtlpPipeline::builder()
            .with_endpoint(format!("http://{}", r.addr))
            .with_shutdown_timeout(Duration::from_secs(10))
            .build()
            .expect("pipeline")
    };
    let (p1, p2) = (pipeline(&first), pipeline(&second));
    let (metrics, _) = annotating_metrics();
    let d1 = tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(metrics.clone())
            .with(p1.layer()),
    );
    let d2 = tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(metrics)
            .with(p2.layer()),
    );
    // Spans open in the first subscriber while the second one works: their ids collide.
    tracing::dispatcher::with_default(&d1, || {
        let _held = Request::start("held");
        tracing::dispatcher::with_default(&d2, pipeline_requests);
    });
    drop((d1, d2));
    p1.into_guard().shutdown().expect("first exported");
    p2.into_guard().shutdown().expect("second exported");
    let spans = second.spans();
    let requests = one_trace_per_request(&spans, 3, "the second subscriber's requests");
    assert!(
        requests
            .iter()
            .all(|r| attr_f64(r, "e2e_total_ms").is_some())
    );
    let names: Vec<String> = first.spans().into_iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        ["request"],
        "nothing of the second subscriber's work"
    );
}

/// A request closed while another subscriber is the thread's current one is annotated and
/// named through its own subscriber: the layers use the current dispatcher (to avoid a
/// shared reference count per request) only when it holds the very layer closing the span.
#[test]
fn a_request_closed_under_another_current_subscriber_keeps_its_own_trace() {
    let (first, second) = (GrpcReceiver::start(), GrpcReceiver::start());
    let (p1, p2) = (pipeline_to(&first), pipeline_to(&second));
    let ((m1, c1), (m2, c2)) = (annotating_metrics(), annotating_metrics());
    let d1 = tracing::Dispatch::new(tracing_subscriber::registry().with(m1).with(p1.layer()));
    let d2 = tracing::Dispatch::new(tracing_subscriber::registry().with(m2).with(p2.layer()));
    let held = tracing::dispatcher::with_default(&d1, || Request::start("held"));
    tracing::dispatcher::with_default(&d2, || {
        pipeline_requests();
        // Closes the first subscriber's span while the second is current.
        held.finish();
    });
    drop((d1, d2));
    p1.into_guard().shutdown().expect("first exported");
    p2.into_guard().shutdown().expect("second exported");

    let first_spans = first.spans();
    let names: Vec<&str> = first_spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["request"], "the first subscriber's one span");
    assert!(is_request(&first_spans[0], "held"));
    let exported = &first_spans[0];
    assert!(attr_f64(exported, "e2e_total_ms").is_some(), "annotated");
    let held_records = c1.requests();
    assert_eq!(held_records.len(), 1);
    assert_eq!(
        held_records[0].trace_id.as_deref(),
        Some(hex(&exported.trace_id).as_str()),
        "the record names the trace its own subscriber exported"
    );

    let second_spans = second.spans();
    let requests = one_trace_per_request(&second_spans, 3, "the second subscriber's requests");
    let second_records = c2.requests();
    assert_eq!(second_records.len(), 3);
    for r in &second_records {
        let id = r.trace_id.as_deref().expect("a trace id");
        assert!(requests.iter().any(|s| hex(&s.trace_id) == id), "{id}");
    }
}

/// An OpenTelemetry layer inside `reload` cannot be reached for its spans' context (the
/// reload layer refuses downcasts), so its spans go out without the tables' names and
/// numbers: that is said once, with what to do, and the tables and records are whole.
#[test]
fn an_otel_layer_inside_reload_is_said_once_and_the_records_are_whole() {
    let receiver = GrpcReceiver::start();
    let pipeline = pipeline_to(&receiver);
    let (metrics, capture) = annotating_metrics();
    let warnings = warnings::Warnings::default();
    let (hidden, _reload) = tracing_subscriber::reload::Layer::new(pipeline.layer());
    let subscriber = tracing_subscriber::registry()
        .with(metrics)
        .with(hidden)
        .with(warnings.clone());
    tracing::subscriber::with_default(subscriber, || {
        pipeline_requests();
        pipeline_requests();
    });
    pipeline
        .into_guard()
        .shutdown()
        .expect("every span exported");
    let said = warnings.wait_for(1);
    assert_eq!(said.len(), 1, "said once: {said:?}");
    assert!(
        said[0].contains("tracing_subscriber::reload") && said[0].contains("outside `reload`"),
        "{}",
        said[0]
    );
    assert_eq!(capture.requests().len(), 6, "every request recorded");
    assert!(!receiver.spans().is_empty(), "the spans are still exported");
}

/// Issue 6, item 3 (review): with the OTel layer first, requests of a run are still one
/// scope (the annotation layer behind the export filter does not see runs).
#[test]
fn issue6_otel_layer_first_keeps_a_run_one_scope() {
    let receiver = GrpcReceiver::start();
    let pipeline = pipeline_to(&receiver);
    let (metrics, capture) = annotating_metrics();
    let subscriber = tracing_subscriber::registry()
        .with(pipeline.layer())
        .with(metrics);
    tracing::subscriber::with_default(subscriber, || {
        let run = omni_metrics::instrument::Run::with_id("batch");
        for i in 0..3 {
            let r = run.request(&format!("b-{i}"));
            r.stage(0).tokens_in(2);
            r.finish();
        }
        // An aborted request exports status ERROR with error.type "aborted".
        drop(run.request("dropped"));
    });
    pipeline.into_guard().shutdown().expect("exported");
    let requests = capture.requests();
    assert_eq!(requests.len(), 4);
    assert!(requests.iter().all(|r| r.scope == "batch"), "{requests:?}");
    let summaries = capture.summaries();
    assert_eq!(summaries.len(), 1, "one summary, the run's: {summaries:?}");
    assert_eq!(summaries[0].e2e_requests, 3);
    assert_eq!(summaries[0].e2e_requests_aborted, 1);
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
    let spans = receiver.spans();
    let dropped = spans
        .iter()
        .find(|s| is_request(s, "dropped"))
        .expect("the aborted request");
    assert_eq!(
        dropped
            .status
            .as_ref()
            .map(|s| (s.code, s.message.as_str())),
        Some((StatusCode::Error as i32, "aborted"))
    );
    assert!(matches!(attr(dropped, "error.type"), Some(Value::StringValue(t)) if t == "aborted"));
}
