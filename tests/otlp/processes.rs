//! The example program run as a real process, exporting to a receiver with the standard
//! `OTEL_*` variables: what an operator gets, the switches, bad values.

use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

use crate::example;
use crate::receiver::GrpcReceiver;
use crate::support::{attr, attr_f64, is_run, one_trace_per_request};

/// The example program, run as a real process, exports to a real receiver.
#[test]
fn the_example_process_exports_one_trace_per_request() {
    let example = example::omni_pipeline();
    let receiver = GrpcReceiver::start();
    let out = std::process::Command::new(&example)
        .args(["-n", "3", "--summary-only", "--otlp"])
        .arg(format!("http://{}", receiver.addr))
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .output()
        .expect("the example runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("needs the `otlp` feature"),
        "{} was built without the `otlp` feature: run the full `cargo test`, which rebuilds \
         the examples with the default features",
        example.display()
    );
    assert!(out.status.success(), "example failed:\n{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("| e2e_requests") && l.contains(" 3 |")),
        "{stderr}"
    );
    assert!(!stderr.contains("could not be exported"), "{stderr}");
    let spans = receiver.spans();
    let requests = one_trace_per_request(
        &spans,
        3,
        "one trace per request, though they share an omni.run",
    );
    for r in &requests {
        assert!(
            r.parent_span_id.is_empty(),
            "{} is its trace's root",
            r.name
        );
        assert_eq!(r.links.len(), 1, "{} links to its run", r.name);
        let in_trace: Vec<&str> = spans
            .iter()
            .filter(|s| s.trace_id == r.trace_id)
            .map(|s| s.name.as_str())
            .collect();
        for name in [
            "stage 0 thinker",
            "stage 1 talker",
            "stage 2 code2wav",
            "transfer 0->1",
            "transfer 1->2",
        ] {
            assert!(
                in_trace.contains(&name),
                "{} lacks {name}: {in_trace:?}",
                r.name
            );
        }
        assert!(attr_f64(r, "e2e_total_tokens").is_some_and(|t| t > 0.0));
    }
}

/// Runs the example as a real process with the standard variables, exporting to `receiver`.
fn run_example(
    receiver: &GrpcReceiver,
    env: &[(&str, &str)],
    args: &[&str],
) -> std::process::Output {
    let mut cmd = std::process::Command::new(example::omni_pipeline());
    cmd.args(args)
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", receiver.addr),
        )
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("OTEL_TRACES_EXPORTER")
        .env_remove("OMNI_METRICS_OTEL_FILTER")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the example runs")
}

/// Issue 7: what an operator reads in production, from the example run as a real process
/// with the standard variables only.
#[test]
fn issue7_the_example_exports_only_what_was_asked_typed_and_with_status() {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
    let receiver = GrpcReceiver::start();
    let out = run_example(
        &receiver,
        // Export every 100 ms: the idle second after the work is ten export cycles.
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
        &[
            "-n",
            "4",
            "--summary-only",
            "--fail-every",
            "4",
            "--linger-ms",
            "1000",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let spans = receiver.spans();
    // Only the convention's spans: nothing of h2/hyper/tonic/tower, also while idle.
    for s in &spans {
        assert!(
            ["request", "run"].contains(&s.name.as_str())
                || ["stage ", "transfer ", "batch of stage ", "omni."]
                    .iter()
                    .any(|p| s.name.starts_with(p)),
            "unexpected span exported: {:?}",
            s.name
        );
    }
    // No debug! event (the prompt) left the process; the engine's INFO events did.
    let text = format!("{spans:?}");
    assert!(
        !text.contains("secret prompt"),
        "a debug event was exported"
    );
    assert!(
        spans
            .iter()
            .any(|s| s.events.iter().any(|e| e.name == "stage computed")),
        "INFO events are exported"
    );
    // Counts are ints, times doubles.
    let stage = spans
        .iter()
        .find(|s| s.name.starts_with("stage 0"))
        .expect("a stage 0 span");
    for key in [
        "stage_id",
        "num_tokens_in",
        "num_tokens_out",
        "batch_id",
        "batch_size",
    ] {
        assert!(
            matches!(attr(stage, key), Some(Value::IntValue(_))),
            "{key}: {:?}",
            attr(stage, key)
        );
    }
    assert!(matches!(
        attr(stage, "stage_gen_time_ms"),
        Some(Value::DoubleValue(_))
    ));
    let transfer = spans
        .iter()
        .find(|s| s.name.starts_with("transfer "))
        .expect("a transfer");
    assert!(matches!(attr(transfer, "size_bytes"), Some(Value::IntValue(v)) if *v > 0));
    assert!(attr(stage, "busy_ns").is_none() && attr(stage, "code.file.path").is_none());
    // Every request its own trace, a SERVER span; the failed one has status ERROR.
    let requests = one_trace_per_request(&spans, 4, "one trace per request");
    assert!(requests.iter().all(|r| r.kind == SpanKind::Server as i32));
    let failed: Vec<&&Span> = requests
        .iter()
        .filter(|r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.code == StatusCode::Error as i32)
        })
        .collect();
    assert_eq!(failed.len(), 1, "request 4 of 4 fails");
    assert_eq!(
        failed[0].status.as_ref().map(|s| s.message.as_str()),
        Some("simulated failure (--fail-every)")
    );
    assert!(matches!(attr(failed[0], "error.type"), Some(Value::StringValue(t)) if t == "error"));
    assert!(
        spans.iter().any(|s| is_run(s, "omni-pipeline")),
        "the run has a readable name"
    );
    assert!(
        receiver.services().iter().all(|s| s == "omni_pipeline"),
        "{:?}",
        receiver.services()
    );
}

/// Issue 7: the standard switches are honoured, and bad values are said.
#[test]
fn issue7_standard_switches_and_bad_values() {
    let receiver = GrpcReceiver::start();
    for (var, value) in [
        ("OTEL_SDK_DISABLED", "true"),
        ("OTEL_TRACES_EXPORTER", "none"),
    ] {
        let out = run_example(&receiver, &[(var, value)], &["-n", "2", "--summary-only"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("| e2e_requests") && l.contains(" 2 |")),
            "{stderr}"
        );
    }
    assert!(
        receiver.spans().is_empty(),
        "nothing exported when disabled"
    );

    let out = run_example(
        &receiver,
        &[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "NaN"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "abc"),
        ],
        &["-n", "2", "--summary-only"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr
            .contains("OTEL_TRACES_SAMPLER_ARG=\"NaN\" is not a ratio between 0 and 1: using 1.0"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "OTEL_BSP_MAX_QUEUE_SIZE=\"abc\" is not a positive number of spans: using 65536"
        ),
        "{stderr}"
    );
    one_trace_per_request(&receiver.spans(), 2, "sampled at 1.0, as said");

    for endpoint in ["ftp://127.0.0.1:4317", "http://127.0.0.1:99999"] {
        let mut cmd = std::process::Command::new(example::omni_pipeline());
        let out = cmd
            .args(["-n", "1"])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{endpoint} must not start: {stderr}");
        assert!(stderr.starts_with("error: the OTLP endpoint"), "{stderr}");
    }
}
