//! `OMNI_METRICS_PROMETHEUS_ADDR` in a process of its own: `init()` serves the endpoint, a
//! bad value fails `init()` with what to do, and code beats the variable. Each test re-runs
//! this binary as a child (`OMNI_TEST_CHILD` names the scenario).

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};

const PROMETHEUS_ADDR_ENV: &str = "OMNI_METRICS_PROMETHEUS_ADDR";

use crate::support::get;

const CHILD: &str = "OMNI_TEST_CHILD";

/// Whether this process is the child running `scenario`.
fn is_child(scenario: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|s| s == scenario)
}

/// Runs the test `name` of this binary as a child, with `addr` in the variable.
fn run_child(name: &str, addr: &str) -> Output {
    let exe = std::env::current_exe().expect("test binary path");
    Command::new(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .env(PROMETHEUS_ADDR_ENV, addr)
        .env_remove("RUST_LOG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_TRACES_EXPORTER")
        .env_remove("OMNI_METRICS_JSONL")
        .output()
        .expect("the child runs")
}

#[track_caller]
fn succeeded(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_variable_turns_the_endpoint_on_for_init() {
    const NAME: &str = "env::the_variable_turns_the_endpoint_on_for_init";
    if is_child(NAME) {
        let addr: SocketAddr = std::env::var(PROMETHEUS_ADDR_ENV).unwrap().parse().unwrap();
        let _guard = omni_metrics::init().expect("init serves the endpoint");
        omni_metrics::instrument::Request::start("r-1").finish();
        let scrape = get(addr, "GET /metrics HTTP/1.1");
        println!("{}\n{}", scrape.status, scrape.body);
        return;
    }
    // A free port, released for the child (which binds it again at once).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let stdout = succeeded(&run_child(NAME, &format!("127.0.0.1:{port}")));
    assert!(stdout.contains("HTTP/1.1 200 OK"), "{stdout}");
    assert!(
        stdout.contains(
            "vllm_omni:requests_success_total{model_name=\"unknown\",finished_reason=\"stop\"} 1"
        ),
        "{stdout}"
    );
}

#[test]
fn a_bad_value_fails_init_with_what_to_do() {
    const NAME: &str = "env::a_bad_value_fails_init_with_what_to_do";
    if is_child(NAME) {
        match omni_metrics::init() {
            Ok(_) => println!("init succeeded"),
            Err(e) => println!("init failed: {e}"),
        }
        return;
    }
    let stdout = succeeded(&run_child(NAME, "localhost:not-a-port"));
    assert!(stdout.contains("init failed: "), "{stdout}");
    assert!(stdout.contains("`localhost:not-a-port`"), "{stdout}");
    assert!(stdout.contains(PROMETHEUS_ADDR_ENV), "{stdout}");
    assert!(stdout.contains("unset"), "{stdout}");
}

#[test]
fn code_beats_the_variable() {
    const NAME: &str = "env::code_beats_the_variable";
    if is_child(NAME) {
        let sink = omni_metrics::PrometheusSink::bind("127.0.0.1:0").expect("a free port");
        let builder = omni_metrics::OmniMetricsLayer::builder().with_sink(sink);
        match omni_metrics::Install::new().with_metrics(builder).init() {
            Ok(_guard) => println!("init succeeded"),
            Err(e) => println!("init failed: {e}"),
        }
        return;
    }
    let stdout = succeeded(&run_child(NAME, "localhost:not-a-port"));
    assert!(stdout.contains("init succeeded"), "{stdout}");
}
