//! The convention's tree exported over gRPC and HTTP: one trace per request, the tables'
//! names and numbers as attributes, the records naming their traces, GenAI attributes.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use omni_metrics::OmniMetricsLayer;
use omni_metrics::otlp::OtlpProtocol;
use omni_metrics::testing::CaptureSink;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tracing_subscriber::prelude::*;

use crate::http_receiver;
use crate::receiver::GrpcReceiver;
use crate::support::{
    attr_f64, hex, is_request, one_trace_per_request, pipeline_requests, pipeline_to, run_against,
    run_with,
};

fn duration_ms(s: &Span) -> f64 {
    s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) as f64 / 1e6
}

#[test]
fn grpc_export_gives_one_trace_per_request_with_the_convention_tree() {
    let receiver = GrpcReceiver::start();
    let (capture, mut guard) =
        run_against(format!("http://{}", receiver.addr), Duration::from_secs(10));
    guard.shutdown().expect("every span exported");
    let spans = receiver.spans();
    assert_eq!(
        spans.len(),
        3 * (1 + 3 * 3 + 2 * 3),
        "request + stages(+queue+post) + transfers(+tx+rx)"
    );

    let by_id: HashMap<&[u8], &Span> = spans.iter().map(|s| (s.span_id.as_slice(), s)).collect();
    let requests = one_trace_per_request(&spans, 3, "one trace per request");
    for r in &requests {
        assert_eq!(r.kind, SpanKind::Server as i32, "{}", r.name);
        assert!(r.parent_span_id.is_empty(), "a request is a root");
    }
    for s in &spans {
        let request = requests
            .iter()
            .find(|r| r.trace_id == s.trace_id)
            .expect("in a request's trace");
        if s.name.starts_with("stage ") || s.name.starts_with("transfer ") {
            assert_eq!(s.kind, SpanKind::Internal as i32, "{}", s.name);
            assert_eq!(
                s.parent_span_id, request.span_id,
                "{} is a child of its request",
                s.name
            );
        }
        // Timing children sit under the span they time.
        let expected_parent = match s.name.as_str() {
            "omni.queue" | "omni.postprocess" => Some("stage "),
            "omni.transfer.tx" | "omni.transfer.rx_decode" => Some("transfer "),
            _ => None,
        };
        if let Some(prefix) = expected_parent {
            let parent = by_id
                .get(s.parent_span_id.as_slice())
                .expect("parent exported");
            assert!(
                parent.name.starts_with(prefix),
                "{} under {}",
                s.name,
                parent.name
            );
        }
    }
    let names: HashSet<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for name in [
        "request",
        "stage 0 thinker",
        "stage 2 code2wav",
        "transfer 0->1",
        "transfer 1->2",
    ] {
        assert!(names.contains(name), "missing span {name:?} in {names:?}");
    }
    // The convention's fields are attributes.
    let stage0 = spans
        .iter()
        .find(|s| s.name == "stage 0 thinker")
        .expect("stage span");
    let keys: HashSet<&str> = stage0.attributes.iter().map(|a| a.key.as_str()).collect();
    for key in ["stage_id", "stage_name", "num_tokens_in", "num_tokens_out"] {
        assert!(
            keys.contains(key),
            "stage span lacks attribute {key}: {keys:?}"
        );
    }
    // Each exported stage span lasts what the table says (first start to last end), and
    // the table's numbers are on the request and stage spans.
    for r in capture.requests() {
        let request_span = requests
            .iter()
            .find(|s| is_request(s, &r.request_id))
            .expect("request exported");
        let trace = request_span.trace_id.clone();
        assert_eq!(r.trace_id, Some(hex(&trace)), "the record names its trace");
        assert_eq!(
            attr_f64(request_span, "e2e_total_tokens"),
            Some(r.e2e_total_tokens as f64)
        );
        // GenAI usage, by the semantic conventions' current names (issue 25, item 8):
        // stage 0's tokens in, every stage's tokens out.
        let tokens_in = r.stage(0).map_or(0, |s| s.num_tokens_in);
        let tokens_out: u64 = r.stages.iter().map(|s| s.num_tokens_out).sum();
        assert_eq!(
            attr_f64(request_span, "gen_ai.usage.input_tokens"),
            Some(tokens_in as f64)
        );
        assert_eq!(
            attr_f64(request_span, "gen_ai.usage.output_tokens"),
            Some(tokens_out as f64)
        );
        assert!(tokens_in > 0 && tokens_out > 0);
        for deprecated in [
            "gen_ai.usage.prompt_tokens",
            "gen_ai.usage.completion_tokens",
        ] {
            assert!(
                request_span.attributes.iter().all(|a| a.key != deprecated),
                "{deprecated}"
            );
        }
        assert_eq!(
            attr_f64(request_span, "transfers_total_kbytes"),
            Some(r.transfers_total_kbytes)
        );
        assert_eq!(attr_f64(request_span, "e2e_total_ms"), Some(r.e2e_total_ms));
        assert_eq!(
            attr_f64(request_span, "stage_1_gen_time_ms"),
            r.stage(1).map(|s| s.stage_gen_time_ms)
        );
        for st in &r.stages {
            let exported = spans
                .iter()
                .find(|s| {
                    s.trace_id == trace && s.name.starts_with(&format!("stage {} ", st.stage_id))
                })
                .expect("stage exported");
            assert_eq!(
                attr_f64(exported, "stage_gen_time_ms"),
                Some(st.stage_gen_time_ms)
            );
            assert_eq!(
                attr_f64(exported, "postprocess_time_ms"),
                Some(st.postprocess_time_ms)
            );
            let diff = (duration_ms(exported) - st.wall_time_ms).abs();
            assert!(
                diff < 1.0,
                "stage {} of {}: exported {} ms, table {} ms",
                st.stage_id,
                r.request_id,
                duration_ms(exported),
                st.wall_time_ms
            );
        }
    }
}

/// Without annotations, a metrics layer added before the OpenTelemetry layer still reads
/// each request's trace id (its record's `trace_id`, the metrics' exemplars).
#[test]
fn a_request_record_names_its_trace_without_annotations() {
    let receiver = GrpcReceiver::start();
    let pipeline = pipeline_to(&receiver);
    let capture = CaptureSink::new();
    let metrics = OmniMetricsLayer::builder()
        .with_console(false)
        .with_sink(capture.clone())
        .build()
        .expect("no file");
    let subscriber = tracing_subscriber::registry()
        .with(metrics)
        .with(pipeline.layer());
    tracing::subscriber::with_default(subscriber, pipeline_requests);
    pipeline
        .into_guard()
        .shutdown()
        .expect("every span exported");
    let spans = receiver.spans();
    let requests = capture.requests();
    assert_eq!(requests.len(), 3);
    for r in requests {
        let id = r.trace_id.as_deref().expect("a trace id");
        assert_eq!(id.len(), 32);
        let exported = spans
            .iter()
            .find(|s| s.parent_span_id.is_empty() && hex(&s.trace_id) == id)
            .unwrap_or_else(|| panic!("no exported root span in trace {id}"));
        assert_eq!(exported.kind, SpanKind::Server as i32, "{}", exported.name);
    }
}

#[test]
fn http_protobuf_export_reaches_a_real_http_receiver() {
    let receiver = http_receiver::HttpReceiver::start();
    let (capture, mut guard) = run_with(
        format!("http://{}/v1/traces", receiver.addr),
        OtlpProtocol::HttpProtobuf,
        Duration::from_secs(10),
    );
    guard.shutdown().expect("every span exported over HTTP");
    let spans = receiver.spans();
    assert_eq!(spans.len(), 48);
    assert!(
        receiver.paths().iter().all(|p| p == "/v1/traces"),
        "{:?}",
        receiver.paths()
    );
    let requests = one_trace_per_request(&spans, capture.requests().len(), "one trace per request");
    assert!(
        requests
            .iter()
            .all(|r| attr_f64(r, "e2e_total_tokens") == Some(25.0))
    );
}

/// GenAI attributes given by the engine pass through to the trace.
#[test]
fn gen_ai_attributes_pass_through() {
    let receiver = GrpcReceiver::start();
    let pipeline = pipeline_to(&receiver);
    let subscriber = tracing_subscriber::registry()
        .with(
            OmniMetricsLayer::builder()
                .with_console(false)
                .build()
                .expect("layer"),
        )
        .with(pipeline.layer());
    tracing::subscriber::with_default(subscriber, || {
        let req = tracing::info_span!(
            "omni.request",
            request_id = "g",
            otel.name = "chat qwen3-omni",
            otel.kind = "server",
            gen_ai.operation.name = "chat",
            gen_ai.request.model = "qwen3-omni"
        );
        let _stage = tracing::info_span!(parent: &req, "omni.stage", stage_id = 0,
            num_tokens_in = 12, gen_ai.usage.input_tokens = 12);
    });
    pipeline.into_guard().shutdown().expect("exported");
    let spans = receiver.spans();
    let req = spans
        .iter()
        .find(|s| s.name == "chat qwen3-omni")
        .expect("GenAI-form name");
    let keys: Vec<&str> = req.attributes.iter().map(|a| a.key.as_str()).collect();
    assert!(
        keys.contains(&"gen_ai.request.model") && keys.contains(&"gen_ai.operation.name"),
        "{keys:?}"
    );
    let stage = spans
        .iter()
        .find(|s| s.name == "omni.stage")
        .expect("stage");
    assert!(
        stage
            .attributes
            .iter()
            .any(|a| a.key == "gen_ai.usage.input_tokens")
    );
}
