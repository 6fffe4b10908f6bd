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
    // Stage wall times apart: tracing-opentelemetry ends an exported span at its last exit,
    // not at its close, and the example enters each stage span once (its "stage computed"
    // event) before summing its input and closing it: a millisecond or more later, in a
    // debug build, for the talker's large input. Those windows are that much shorter in any
    // trace of this engine, a collector's as well; they are compared below on their own.
    let (live_rest, live_walls) = without_stage_walls(&live);
    let (report_rest, report_walls) = without_stage_walls(&report);
    let max_ms = assert_same_records(&live_rest, &report_rest);
    eprintln!("largest time difference, report of the trace file vs live: {max_ms:.4} ms");
    assert_eq!(
        live_walls.keys().collect::<Vec<_>>(),
        report_walls.keys().collect::<Vec<_>>()
    );
    // How much shorter depends on the machine's load (a debug build's loop over the input):
    // never longer than live, never empty.
    let mut max_wall_ms: f64 = 0.0;
    for (key, live_ms) in &live_walls {
        let report_ms = report_walls[key];
        max_wall_ms = max_wall_ms.max(live_ms - report_ms);
        assert!(
            report_ms > 0.0 && report_ms <= live_ms + 1.0,
            "{key}: live {live_ms} ms, report {report_ms} ms"
        );
    }
    eprintln!("stage wall times: the report's shorter by {max_wall_ms:.4} ms at most");

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

/// `records` without the stages' wall times (`stages[i].wall_time_ms`, a summary's
/// `e2e_stage_<i>_wall_time_ms`), and those apart, by record and key.
fn without_stage_walls(records: &[Value]) -> (Vec<Value>, std::collections::BTreeMap<String, f64>) {
    let mut walls = std::collections::BTreeMap::new();
    let rest = records
        .iter()
        .map(|record| {
            let mut record = record.clone();
            let name = format!(
                "{} {}",
                record["type"].as_str().unwrap_or_default(),
                record["request_id"]
                    .as_str()
                    .or(record["scope"].as_str())
                    .unwrap_or_default()
            );
            if let Some(stages) = record["stages"].as_array_mut() {
                for (i, stage) in stages.iter_mut().enumerate() {
                    if let Some(ms) = stage.as_object_mut().and_then(|s| s.remove("wall_time_ms")) {
                        walls.insert(
                            format!("{name} stage[{i}]"),
                            ms.as_f64().unwrap_or(f64::NAN),
                        );
                    }
                }
            }
            if let Some(fields) = record.as_object_mut() {
                let keys: Vec<String> = fields
                    .keys()
                    .filter(|k| k.starts_with("e2e_stage_") && k.ends_with("_wall_time_ms"))
                    .cloned()
                    .collect();
                for key in keys {
                    if let Some(ms) = fields.remove(&key) {
                        walls.insert(format!("{name} {key}"), ms.as_f64().unwrap_or(f64::NAN));
                    }
                }
            }
            record
        })
        .collect();
    (rest, walls)
}
