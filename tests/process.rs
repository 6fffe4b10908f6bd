//! Issue 6 regressions that need a process of their own: a global subscriber, the stderr
//! a user sees, an async runtime around `init()`. Each test re-runs this binary as a child
//! (`OMNI_TEST_CHILD` names the scenario) and checks what the child printed and how it ended.

#![cfg(feature = "otlp")]

#[path = "support/example.rs"]
mod example;

use std::process::{Command, Output};
use std::time::Duration;

use omni_metrics::instrument::Request;
use tracing_subscriber::prelude::*;

const CHILD: &str = "OMNI_TEST_CHILD";

/// Whether this process is the child running `scenario`.
fn is_child(scenario: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|s| s == scenario)
}

/// Runs the test `name` of this binary as a child process in scenario mode.
fn run_child(name: &str, env: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .env_remove("RUST_LOG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        .env_remove("OTEL_METRICS_EXPORTER")
        .env_remove("OMNI_METRICS_JSONL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the child runs")
}

#[track_caller]
fn stderr_of(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "child failed ({}):\n{stderr}",
        out.status
    );
    stderr
}

/// Item 1: every error path of `init()` and the pipeline inside `#[tokio::main]` returns its
/// error; dropping an `OtlpPipeline` in async code is safe.
#[test]
fn issue6_otlp_error_paths_inside_async_do_not_panic() {
    const NAME: &str = "issue6_otlp_error_paths_inside_async_do_not_panic";
    if !is_child(NAME) {
        let stderr = stderr_of(&run_child(NAME, &[]));
        assert!(stderr.contains("child scenario done"), "{stderr}");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use omni_metrics::otlp::OtlpPipeline;
        // Bad endpoints, from the environment as a user sets them.
        for endpoint in ["not a url", "collector:4317"] {
            // SAFETY: the child runs this one test, on this thread, before any other.
            unsafe { std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint) };
            match omni_metrics::init() {
                Err(e) => eprintln!("{endpoint:?}: {e}"),
                Ok(guard) => panic!("{endpoint:?} was accepted: {guard:?}"),
            }
        }
        unsafe { std::env::remove_var("OTEL_EXPORTER_OTLP_ENDPOINT") };
        // A pipeline dropped unused inside the runtime.
        let pipeline = OtlpPipeline::builder()
            .with_endpoint("http://127.0.0.1:9")
            .build()
            .expect("builds");
        drop(pipeline);
        // The same over HTTP/protobuf (blocking clients, which must not be dropped here),
        // and a guard with recorded metrics dropped inside the runtime.
        let pipeline = OtlpPipeline::builder()
            .with_endpoint("http://127.0.0.1:9/v1/traces")
            .with_protocol(omni_metrics::otlp::OtlpProtocol::HttpProtobuf)
            .with_shutdown_timeout(Duration::from_millis(200))
            .build()
            .expect("builds");
        assert!(pipeline.exports_metrics());
        let sink = pipeline.metrics_sink();
        let guard = pipeline.into_guard();
        omni_metrics::report::Sink::on_request(&sink, &Default::default());
        drop(guard);
        // The README's own-subscriber path when the metrics builder fails after the pipeline.
        let composed = || -> Result<(), Box<dyn std::error::Error>> {
            let _otlp = OtlpPipeline::builder()
                .with_endpoint("http://127.0.0.1:9")
                .build()?;
            let _metrics = omni_metrics::OmniMetricsLayer::builder()
                .with_jsonl("/nonexistent-dir/records.jsonl")
                .build()?;
            Ok(())
        };
        assert!(composed().is_err());
        // A second init() while OTLP is configured.
        let install = || {
            omni_metrics::Install::new()
                .with_metrics(omni_metrics::OmniMetricsLayer::builder().with_console(false))
                .with_otlp(
                    OtlpPipeline::builder()
                        .with_endpoint("http://127.0.0.1:9")
                        .with_shutdown_timeout(Duration::from_millis(200)),
                )
                .init()
        };
        let first = install().expect("first init");
        let second = install().expect_err("second init");
        assert!(matches!(
            second,
            omni_metrics::InitError::AlreadyInstalled(_)
        ));
        drop(first);
    });
    eprintln!("child scenario done");
}

/// Item 7: the most common composed subscriber, with `RUST_LOG` unset, says why its tables
/// are empty.
#[test]
fn issue6_a_filter_that_hides_the_spans_is_said_once() {
    const NAME: &str = "issue6_a_filter_that_hides_the_spans_is_said_once";
    if !is_child(NAME) {
        let stderr = stderr_of(&run_child(NAME, &[]));
        assert_eq!(
            stderr.matches("disables the INFO `omni.*` spans").count(),
            1,
            "{stderr}"
        );
        assert!(stderr.contains("with_filter"), "{stderr}");
        return;
    }
    let metrics = omni_metrics::OmniMetricsLayer::builder()
        .build()
        .expect("no file");
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::from_default_env())
        .with(tracing_subscriber::fmt::layer())
        .with(metrics)
        .init();
    for i in 0..3 {
        let request = tracing::info_span!("omni.request", request_id = i);
        drop(request);
    }
    // An engine runs on; the check is made once the subscriber is installed.
    std::thread::sleep(Duration::from_millis(600));
}

/// Item 7 (review): the composition the README recommends, a log layer filtered on its own,
/// is not reported as hiding the spans.
#[test]
fn issue6_a_log_layer_filtered_on_its_own_is_not_reported() {
    const NAME: &str = "issue6_a_log_layer_filtered_on_its_own_is_not_reported";
    if !is_child(NAME) {
        let stderr = stderr_of(&run_child(NAME, &[]));
        assert!(!stderr.contains("disables the INFO"), "{stderr}");
        assert!(stderr.contains("requests_ok=3"), "{stderr}");
        return;
    }
    let metrics = omni_metrics::OmniMetricsLayer::builder()
        .with_console(false)
        .build()
        .expect("no file");
    let handle = metrics.handle();
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_filter(omni_metrics::log_filter()))
        .with(metrics)
        .init();
    for i in 0..3 {
        Request::start(&format!("r-{i}")).finish();
    }
    std::thread::sleep(Duration::from_millis(600));
    eprintln!("requests_ok={}", handle.totals().requests_ok);
}

/// Item 7: the typed API knows when nothing enabled its span.
#[test]
fn issue6_typed_spans_that_no_subscriber_enables_are_said_once() {
    const NAME: &str = "issue6_typed_spans_that_no_subscriber_enables_are_said_once";
    if !is_child(NAME) {
        let stderr = stderr_of(&run_child(NAME, &[]));
        assert_eq!(
            stderr.matches("no subscriber enabled it").count(),
            1,
            "{stderr}"
        );
        return;
    }
    for i in 0..3 {
        Request::start(&format!("r-{i}")).finish();
    }
}

/// Item 9 (the guard reports what never closed) and item 16 (`log` records are bridged).
#[test]
fn issue6_init_bridges_log_and_the_guard_reports_open_spans() {
    const NAME: &str = "issue6_init_bridges_log_and_the_guard_reports_open_spans";
    if !is_child(NAME) {
        let stderr = stderr_of(&run_child(NAME, &[]));
        assert!(stderr.contains("from the log crate"), "{stderr}");
        assert!(
            stderr.contains("still open at shutdown: 1 run (batch) and 1 request (r-stuck)"),
            "{stderr}"
        );
        return;
    }
    let guard = omni_metrics::init().expect("first init");
    log::warn!("from the log crate");
    let run = omni_metrics::instrument::Run::with_id("batch");
    let stuck = run.request("r-stuck");
    std::mem::forget(stuck);
    drop(run);
    drop(guard);
}

/// With tracing-subscriber's `tracing-log` feature on (an application's default), `init()`
/// bridges `log` once and warns of no logger it installed itself.
#[test]
fn init_says_nothing_false_about_a_log_logger() {
    const NAME: &str = "init_says_nothing_false_about_a_log_logger";
    if !is_child(NAME) {
        let stderr = stderr_of(&run_child(NAME, &[]));
        assert!(stderr.contains("bridged from log"), "{stderr}");
        assert!(!stderr.contains("already installed"), "{stderr}");
        assert!(!stderr.contains("WARN omni_metrics"), "{stderr}");
        return;
    }
    let guard = omni_metrics::init().expect("first init");
    log::warn!("bridged from log");
    drop(guard);
}

/// The multiprocess example without OTLP carries no trace context (there is none): its
/// workers start fresh traces without a warning, as nothing was lost.
#[test]
fn stages_in_other_processes_without_traces_warn_of_nothing() {
    let out = Command::new(example::multiprocess())
        .args(["-n", "2"])
        .env_remove("RUST_LOG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .output()
        .expect("the example runs");
    let stderr = stderr_of(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("e2e_requests"), "{all}");
    assert!(!all.contains("propagated context"), "{all}");
}

/// Item 16: the example says what went wrong with the crate's Display message, not Debug.
#[test]
fn issue6_the_example_prints_errors_readably() {
    let example = example::omni_pipeline();
    let out = Command::new(&example)
        .args(["-n", "1"])
        .env("OMNI_METRICS_JSONL", "/nonexistent-dir/records.jsonl")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .expect("the example runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.starts_with("error: cannot open the JSON-lines file `/nonexistent-dir/records.jsonl` (from OMNI_METRICS_JSONL)"),
        "{stderr}"
    );
    assert!(!stderr.contains("BuildError"), "{stderr}");
}

/// Issue 7, item 8: a pipeline built by hand with no endpoint configured exports nothing, as
/// `init()` does (it used to export to localhost:4317 and wait on it at shutdown).
#[test]
fn issue7_an_own_pipeline_without_endpoint_agrees_with_init() {
    const NAME: &str = "issue7_an_own_pipeline_without_endpoint_agrees_with_init";
    if !is_child(NAME) {
        let stderr = stderr_of(&run_child(NAME, &[]));
        assert!(stderr.contains("child scenario done"), "{stderr}");
        return;
    }
    let pipeline = omni_metrics::otlp::OtlpPipeline::builder()
        .build()
        .expect("builds");
    let exports = pipeline.exports_traces() || pipeline.exports_metrics();
    assert!(!exports, "no endpoint: nothing is exported");
    let metrics = omni_metrics::OmniMetricsLayer::builder()
        .with_console(false)
        .with_trace_annotations(pipeline.exports_traces())
        .build()
        .expect("no file");
    tracing_subscriber::registry()
        .with(metrics)
        .with(pipeline.layer())
        .with(tracing_subscriber::fmt::layer().with_filter(omni_metrics::log_filter()))
        .init();
    Request::start("r").finish();
    let started = std::time::Instant::now();
    pipeline
        .into_guard()
        .shutdown()
        .expect("nothing to export, nothing lost");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    eprintln!("child scenario done");
}

/// `RUST_LOG=warn,omni=info` under a global `EnvFilter`: raw spans with the convention's
/// target (`omni`) come through, as the typed ones do; raw spans of another target are
/// hidden by the filter, and the layer says so once, naming the target and what to change.
#[test]
fn raw_spans_hidden_by_a_global_filter_are_said_and_the_omni_target_passes() {
    const NAME: &str = "raw_spans_hidden_by_a_global_filter_are_said_and_the_omni_target_passes";
    if !is_child(NAME) {
        let stderr = stderr_of(&run_child(NAME, &[("RUST_LOG", "warn,omni=info")]));
        let said = "disables `omni.request` spans of target `process`";
        assert_eq!(stderr.matches(said).count(), 1, "{stderr}");
        assert!(
            stderr.contains("#[instrument(target = \"omni\""),
            "{stderr}"
        );
        assert!(stderr.contains("requests_ok=3"), "{stderr}");
        return;
    }
    #[tracing::instrument(target = "omni", name = "omni.request", skip_all,
        fields(request_id = %id, status = tracing::field::Empty))]
    fn handle(id: &str) {
        let guard = omni_metrics::instrument::RequestGuard::current();
        drop(tracing::info_span!(target: "omni", "omni.stage", stage_id = 0, num_tokens_out = 2));
        guard.finish();
    }
    let metrics = omni_metrics::OmniMetricsLayer::builder()
        .with_console(false)
        .build()
        .expect("no file");
    let handle_ = metrics.handle();
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::from_default_env())
        .with(tracing_subscriber::fmt::layer())
        .with(metrics)
        .init();
    // The convention's target: through.
    handle("instrumented");
    drop(tracing::info_span!(target: "omni", "omni.request", request_id = "raw-omni"));
    omni_metrics::instrument::Request::start("typed").finish();
    // The module's own target: hidden by `warn`, and said.
    for i in 0..3 {
        drop(tracing::info_span!("omni.request", request_id = i));
    }
    std::thread::sleep(Duration::from_millis(600));
    eprintln!("requests_ok={}", handle_.totals().requests_ok);
}
