//! Raw `omni.*` spans and runs: raw requests are SERVER spans, and requests in a run, raw or
//! typed, are each the root of their own trace, linked to the run.

use std::collections::HashSet;

use omni_metrics::instrument::Request;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tracing_subscriber::prelude::*;

use crate::receiver::GrpcReceiver;
use crate::support::{annotating_metrics, attr, attr_str, is_request, is_run, pipeline_to};

/// Issue 7: a raw `omni.request` span is a SERVER span, and a typed request opened inside an
/// entered run is the root of its own trace.
#[test]
fn issue7_raw_requests_are_servers_and_requests_in_an_entered_run_own_their_trace() {
    let receiver = GrpcReceiver::start();
    let pipeline = pipeline_to(&receiver);
    let (metrics, _) = annotating_metrics();
    let subscriber = tracing_subscriber::registry()
        .with(metrics)
        .with(pipeline.layer());
    tracing::subscriber::with_default(subscriber, || {
        let raw = tracing::info_span!("omni.request", request_id = "raw");
        drop(raw);
        // Raw requests under a raw run: each its own trace, linked to the exported run.
        let raw_run = tracing::info_span!("omni.run", run_id = "raw-run");
        for i in 0..2 {
            let r = tracing::info_span!(parent: &raw_run, "omni.request", request_id = i);
            let _s = tracing::info_span!(parent: &r, "omni.stage", stage_id = 0, num_tokens_in = 3);
        }
        drop(raw_run);
        // The run inside one of the engine's own (exported) spans.
        let job = tracing::info_span!("batch_job");
        let _job = job.enter();
        let run = omni_metrics::instrument::Run::with_id("entered");
        run.span().in_scope(|| {
            for i in 0..2 {
                let r = Request::start(&format!("in-run-{i}"));
                r.stage(0).tokens_in(1);
                r.finish();
            }
        });
    });
    pipeline.into_guard().shutdown().expect("exported");
    let spans = receiver.spans();
    let raw = spans
        .iter()
        .find(|s| is_request(s, "raw"))
        .expect("raw request");
    assert_eq!(raw.kind, SpanKind::Server as i32);
    let in_run: Vec<&Span> = spans
        .iter()
        .filter(|s| {
            s.name == "request"
                && attr_str(s, "request_id").is_some_and(|id| id.starts_with("in-run-"))
        })
        .collect();
    assert_eq!(in_run.len(), 2);
    let traces: HashSet<&[u8]> = in_run.iter().map(|s| s.trace_id.as_slice()).collect();
    assert_eq!(traces.len(), 2, "one trace per request");
    assert!(
        in_run
            .iter()
            .all(|s| s.parent_span_id.is_empty() && s.links.len() == 1)
    );

    let run = spans
        .iter()
        .find(|s| is_run(s, "raw-run"))
        .expect("the raw run, named");
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    assert!(matches!(
        attr(run, "e2e_requests"),
        Some(Value::IntValue(2))
    ));
    let raw_in_run: Vec<&Span> = spans
        .iter()
        .filter(|s| {
            s.name == "request" && matches!(attr(s, "request_id"), Some(Value::IntValue(0 | 1)))
        })
        .collect();
    assert_eq!(raw_in_run.len(), 2);
    for r in &raw_in_run {
        assert!(
            r.parent_span_id.is_empty(),
            "a raw request is its trace's root"
        );
        assert_ne!(r.trace_id, run.trace_id);
        assert_eq!(r.links.len(), 1);
        assert_eq!(r.links[0].span_id, run.span_id, "linked to its run");
        assert_eq!(r.kind, SpanKind::Server as i32);
    }
    let traces: HashSet<&[u8]> = raw_in_run.iter().map(|s| s.trace_id.as_slice()).collect();
    assert_eq!(traces.len(), 2);
    // The stages stay in their request's trace, under it.
    let stages: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "stage 0" && traces.contains(s.trace_id.as_slice()))
        .collect();
    assert_eq!(stages.len(), 2);
    assert!(stages.iter().all(|s| {
        raw_in_run
            .iter()
            .any(|r| r.trace_id == s.trace_id && s.parent_span_id == r.span_id)
    }));
}
