//! The crate's own trace file (`OMNI_METRICS_TRACE_FILE`, `OtlpBuilder::with_trace_file`):
//! the report of it equals what the live layer printed, with no collector running, and
//! what it cannot write is counted and said.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use omni_metrics::otlp::OtlpPipeline;
use tracing_subscriber::prelude::*;

use super::collector::FileCollector;
use super::*;

/// The laptop path as the README shows it, run as written (the example program, then
/// `omni-metrics report ... --html ...` in the same directory).
const README_ENGINE: &str = "OMNI_METRICS_TRACE_FILE=trace.jsonl cargo run --example omni_pipeline";
const README_REPORT: &str =
    "cargo run --features cli --bin omni-metrics -- report trace.jsonl --html report.html";

/// Issue 24: `omni-metrics report` is reachable from an engine on a laptop with nothing
/// else running. The example writes its own trace file (the variable, read by `init()`);
/// the report of that file, as the README runs it, gives the records and summary the
/// engine printed live, and the HTML page of the run.
#[test]
fn issue_24_the_laptop_path_of_the_readme() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    for command in [README_ENGINE, README_REPORT] {
        assert!(
            readme.contains(command),
            "the README shows `{command}`, which this test runs"
        );
    }
    let dir = test_dir("laptop");
    let engine = Command::new(example::omni_pipeline())
        .current_dir(&dir)
        .env("OMNI_METRICS_TRACE_FILE", "trace.jsonl")
        // The live records, to compare with.
        .env("OMNI_METRICS_JSONL", "live.jsonl")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        .env_remove("OTEL_TRACES_EXPORTER")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("OTEL_TRACES_SAMPLER")
        .env_remove("OMNI_METRICS_TRACE_DETAIL")
        .env_remove("RUST_LOG")
        .output()
        .expect("the example runs");
    let engine_err = String::from_utf8_lossy(&engine.stderr);
    assert!(engine.status.success(), "example failed:\n{engine_err}");
    assert!(
        !engine_err.contains(" WARN "),
        "nothing lost, nothing to fix:\n{engine_err}"
    );
    let trace = dir.join("trace.jsonl");
    assert!(
        trace.is_file(),
        "the engine wrote its trace file {}",
        trace.display()
    );

    // As the README runs it: the tables, and the page.
    let out = Command::new(env!("CARGO_BIN_EXE_omni-metrics"))
        .current_dir(&dir)
        .args(["report", "trace.jsonl", "--html", "report.html"])
        .env_remove("OMNI_METRICS_JSONL")
        .output()
        .expect("omni-metrics runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "report failed:\n{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("| e2e_requests") && l.contains(" 8 |")),
        "the run's summary:\n{stdout}"
    );
    let html = std::fs::read_to_string(dir.join("report.html")).expect("the page was written");

    // The records and the summary equal the live ones.
    let live = records_in(&dir.join("live.jsonl"));
    let (stdout, stderr) = report_ok(["--format", "jsonl", &trace.display().to_string()]);
    assert!(
        !stderr.contains("could not be read"),
        "every line of the file is OTLP JSON:\n{stderr}"
    );
    let report = records(&stdout);
    assert_eq!(
        (requests(&live).len(), summaries(&live).len()),
        (8, 1),
        "the example's run: 8 requests, one summary"
    );
    assert_eq!(report.len(), live.len(), "{stdout}\n{stderr}");
    // Every figure within 1 ms of live, stage wall times too: the exported spans end at
    // their close, as live (the example enters each stage once, for its "stage computed"
    // event, then goes on computing before it drops the stage).
    let max_ms = assert_same_records(&live, &report);
    eprintln!("largest time difference, report of the trace file vs live: {max_ms:.4} ms");

    // The page holds the run's requests, and renders.
    let reqs = requests(&report);
    for id in reqs.keys() {
        assert!(html.contains(id.as_str()), "{id} is on the page");
    }
    let bars: usize = reqs
        .values()
        .map(|r| {
            r["stages"].as_array().map_or(0, Vec::len)
                + r["transfers"].as_array().map_or(0, Vec::len)
        })
        .sum();
    let Some(browser) = chromium::browser("issue_24_the_laptop_path_of_the_readme") else {
        return;
    };
    let run = chromium::run(
        &browser,
        &chromium::file_url(&dir.join("report.html"), ""),
        &["--dump-dom"],
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(run.console.is_empty(), "{:?}", run.console);
    let attr = |name| chromium::body_attr(&run.stdout, name);
    assert_eq!(attr("data-rendered").as_deref(), Some("1"));
    assert_eq!(attr("data-bars"), Some(bars.to_string()));
}

/// The builder's option, beside a collector: the file holds what the collector received
/// (the report of each is the same, to the byte), and its report equals the live records:
/// failed and aborted requests, a run, online requests, streamed stages and transfers.
#[test]
fn trace_file_beside_a_collector_reports_as_live() {
    let dir = test_dir("trace-file");
    let collector = FileCollector::start(&dir, "traces");
    let trace = dir.join("trace.jsonl");
    let (dir_text, trace_text) = (dir.display().to_string(), trace.display().to_string());
    finish_child(spawn_child(
        "live",
        &[
            ("OMNI_REPORT_DIR", dir_text.as_str()),
            ("OMNI_REPORT_ENDPOINT", collector.endpoint.as_str()),
            ("OMNI_REPORT_TRACE_FILE", trace_text.as_str()),
        ],
    ));
    drop(collector);
    let live = records_in(&dir.join("live.jsonl"));
    let (from_file, _) = report_ok(["--format", "jsonl", &trace_text]);
    let (from_collector, _) = report_ok([
        "--format",
        "jsonl",
        &dir.join("traces.json").display().to_string(),
    ]);
    assert_eq!(
        from_file, from_collector,
        "the trace file reports as the collector's file"
    );
    let report = records(&from_file);
    assert_eq!(report.len(), live.len(), "{from_file}");
    assert_same_records(&live, &report);
    let r = requests(&report);
    assert_eq!(r["r-1"]["status"], "error");
    assert_eq!(r["o-2"]["status"], "aborted");
    assert_eq!(r["r-0"]["stages"][1]["spans"], 2);
    // The tables too, line for line but the times' last digit.
    let (tables, _) = report_ok([&trace_text]);
    let live_tables = std::fs::read_to_string(dir.join("live.txt")).expect("live tables");
    assert_eq!(
        tables.lines().count(),
        live_tables.lines().count(),
        "{tables}"
    );
}

/// A trace file that cannot be written (a full disk): the engine goes on, every span lost
/// is counted, the first failure is said at once in the engine's subscriber, and the
/// shutdown says how many of how many.
#[cfg(target_os = "linux")]
#[test]
fn a_trace_file_that_cannot_be_written_is_counted_and_said() {
    let warnings = warnings::Warnings::default();
    let pipeline = OtlpPipeline::builder()
        .with_trace_file("/dev/full")
        .build()
        .expect("/dev/full opens");
    assert!(pipeline.exports_traces());
    let metrics = omni_metrics::OmniMetricsLayer::builder()
        .with_console(false)
        .with_trace_annotations(true)
        .build()
        .expect("layer");
    let subscriber = tracing_subscriber::registry()
        .with(metrics)
        .with(pipeline.layer())
        .with(warnings.clone());
    let mut guard = pipeline.into_guard();
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..3 {
            let request = omni_metrics::instrument::Request::start(&format!("r-{i}"));
            drop(request.stage(0));
            request.finish();
        }
        let flushed = guard.force_flush();
        assert!(
            flushed.is_ok(),
            "the flush waits for the writes: {flushed:?}"
        );
    });
    let stats = guard.trace_file_stats().expect("a trace file is written");
    assert_eq!(stats.ended(), 6, "3 requests of one stage each");
    assert_eq!(
        (stats.exported(), stats.failed()),
        (0, 6),
        "every span's write failed"
    );
    let said = warnings.wait_for(1);
    assert!(
        said.iter()
            .any(|w| w.contains("cannot write the trace file `/dev/full`")),
        "{said:?}"
    );
    let error = guard
        .shutdown()
        .expect_err("the losses are said at shutdown");
    let error = error.to_string();
    assert!(
        error.contains("trace file `/dev/full`: 6 of 6 spans could not be written")
            && error.contains("6 in writes that failed"),
        "{error}"
    );
}
