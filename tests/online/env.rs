//! The environment variables and the guard's shutdown, each in a child process of its own
//! (the environment and the global subscriber are per process): this binary re-runs
//! itself with `OMNI_TEST_CHILD` naming the test.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use omni_metrics::OmniMetricsLayer;
use tracing_subscriber::prelude::*;

use crate::support::{Harness, SharedBuf, Status};
use crate::warnings::Warnings;

const CHILD: &str = "OMNI_TEST_CHILD";

fn is_child(name: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|s| s == name)
}

/// Runs the test `name` of this binary in a child process, with `env` set (and the crate's
/// variables cleared otherwise); returns its stderr, after checking it succeeded.
#[track_caller]
fn run_child(name: &str, env: &[(&str, &str)]) -> String {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .env_remove("RUST_LOG")
        .env_remove("OMNI_METRICS_JSONL")
        .env_remove("OMNI_METRICS_LOG_INTERVAL")
        .env_remove("OMNI_METRICS_ONLINE_TABLES")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_TRACES_EXPORTER");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out: Output = cmd.output().expect("the child runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "child failed ({}):\n{stderr}",
        out.status
    );
    assert!(stderr.contains("child scenario done"), "{stderr}");
    stderr
}

#[test]
fn bad_values_of_the_variables_are_warnings_not_panics() {
    const NAME: &str = "env::bad_values_of_the_variables_are_warnings_not_panics";
    if !is_child(NAME) {
        let stderr = run_child(
            NAME,
            &[
                ("OMNI_METRICS_LOG_INTERVAL", "ten seconds"),
                ("OMNI_METRICS_ONLINE_TABLES", "maybe"),
            ],
        );
        assert!(
            stderr.contains(r#"OMNI_METRICS_LOG_INTERVAL="ten seconds" is not an interval: no periodic line is printed"#),
            "{stderr}"
        );
        assert!(
            stderr.contains(r#"OMNI_METRICS_ONLINE_TABLES="maybe" is neither on nor off"#),
            "{stderr}"
        );
        return;
    }
    let console = SharedBuf::default();
    let layer = OmniMetricsLayer::builder()
        .with_console(omni_metrics::Destination::writer(console.clone()))
        .build()
        .expect("a bad variable is no error");
    let handle = layer.handle();
    let warnings = Warnings::default();
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(layer)
            .with(warnings.clone()),
    );
    let seen = warnings.wait_for(2);
    for warning in &seen {
        eprintln!("warning: {warning}");
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    tracing::dispatcher::with_default(&dispatch, || {
        omni_metrics::instrument::Request::start("r-1").finish();
    });
    // The defaults apply: online tables, and no periodic line.
    std::thread::sleep(Duration::from_millis(100));
    handle.flush(Duration::from_secs(10)).expect("flushed");
    let text = console.text();
    assert!(text.contains("Overall Summary (scope r-1)"), "{text}");
    assert!(!text.contains("omni-metrics: last"), "{text}");
    eprintln!("child scenario done");
}

#[test]
fn the_interval_variable_turns_the_line_on_and_code_wins() {
    const NAME: &str = "env::the_interval_variable_turns_the_line_on_and_code_wins";
    if !is_child(NAME) {
        run_child(NAME, &[("OMNI_METRICS_LOG_INTERVAL", "20ms")]);
        return;
    }
    let play = |h: &Harness| h.run(|| h.play(None, "r-1", 10.0, 1, Status::Ok));
    // From the variable: the line, and no online tables.
    let h = Harness::with_console(|b, console| {
        b.with_console(omni_metrics::Destination::writer(console))
    });
    play(&h);
    let text = h.wait_for("omni-metrics: last");
    assert!(
        text.starts_with("omni-metrics: last 0.0 s: e2e latency mean 10.000 ms"),
        "{text}"
    );
    assert!(!text.contains("Overall Summary"), "{text}");
    // Code wins: no line, and online tables by default again.
    let h = Harness::with_console(|b, console| {
        b.with_console(omni_metrics::Destination::writer(console))
            .with_periodic_log(Duration::ZERO)
    });
    play(&h);
    std::thread::sleep(Duration::from_millis(100));
    let text = h.console();
    assert!(text.contains("Overall Summary (scope r-1)"), "{text}");
    assert!(!text.contains("omni-metrics: last"), "{text}");
    eprintln!("child scenario done");
}

#[test]
fn the_online_tables_variable_turns_them_off_and_code_wins() {
    const NAME: &str = "env::the_online_tables_variable_turns_them_off_and_code_wins";
    if !is_child(NAME) {
        run_child(NAME, &[("OMNI_METRICS_ONLINE_TABLES", "0")]);
        return;
    }
    let play = |h: &Harness| {
        h.run(|| h.play(None, "r-1", 10.0, 1, Status::Ok));
        h.console()
    };
    let h = Harness::with_console(|b, console| {
        b.with_console(omni_metrics::Destination::writer(console))
    });
    assert_eq!(play(&h), "");
    let h = Harness::with_console(|b, console| {
        b.with_console(omni_metrics::Destination::writer(console))
            .with_online_tables(true)
    });
    assert!(play(&h).contains("Overall Summary (scope r-1)"));
    eprintln!("child scenario done");
}

/// The guard's shutdown stops the periodic line (the layer itself lives on, installed).
#[test]
fn the_guards_shutdown_stops_the_periodic_line() {
    const NAME: &str = "env::the_guards_shutdown_stops_the_periodic_line";
    if !is_child(NAME) {
        run_child(NAME, &[]);
        return;
    }
    let console = SharedBuf::default();
    let install = omni_metrics::Install::new().with_metrics(
        OmniMetricsLayer::builder()
            .with_console(omni_metrics::Destination::writer(console.clone()))
            .with_periodic_log(Duration::from_millis(10)),
    );
    #[cfg(feature = "otlp")]
    let install = install.without_otlp();
    let mut guard = install.init().expect("installed");
    omni_metrics::instrument::Request::start("r-1").finish();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !console.text().contains("omni-metrics: last") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(console.text().contains("1 ok"), "{}", console.text());
    guard.shutdown().expect("shut down");
    // A line being written when the shutdown began may still land; none after that.
    std::thread::sleep(Duration::from_millis(50));
    let after = console.text().len();
    std::thread::sleep(Duration::from_millis(200)); // some 20 intervals
    assert_eq!(console.text().len(), after, "{}", console.text());
    drop(guard);
    eprintln!("child scenario done");
}
