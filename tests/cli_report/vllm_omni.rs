//! vLLM-Omni's own traces: made by the real OpenTelemetry Python SDK, driven as vLLM-Omni's
//! orchestrator drives it (`vllm_omni_traces.py`), exported over OTLP/gRPC to a collector
//! that writes the Collector's file format, then given to `omni-metrics report`: every
//! request found, every number the generator's (times within 1 ms), what such a trace cannot
//! hold absent.
//!
//! The SDK is installed in a venv under the target directory (`target/tmp/otel-venv`, pins
//! in `vllm_omni_requirements.txt`), by `.ci/run` or by the test itself. Without Python or
//! the package registry the test says so loudly and passes, unless `CI` is set: then it
//! fails.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::collector::FileCollector;
use super::*;

/// The generator, and the SDK's pins.
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/cli_report/vllm_omni_traces.py"
);
const REQUIREMENTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/cli_report/vllm_omni_requirements.txt"
);

/// What a record of vLLM-Omni's traces cannot know, left out of its request, stage and
/// summary records.
const ABSENT_REQUEST: [&str; 4] = [
    "e2e_total_tokens",
    "transfers_total_time_ms",
    "transfers_total_kbytes",
    "transfers",
];
const ABSENT_STAGE: [&str; 9] = [
    "batch_id",
    "batch_size",
    "num_tokens_in",
    "num_tokens_out",
    "postprocess_time_ms",
    "audio_generated_frames",
    "queue_time_ms",
    "output_chunks",
    "output_units",
];
const ABSENT_SUMMARY: [&str; 2] = ["e2e_total_tokens", "e2e_avg_tokens_per_s"];

/// Whether this is CI (`CI` set and not empty or `false`), where nothing may be skipped.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Runs `cmd`; what went wrong, if it did not succeed.
fn run(cmd: &mut Command) -> Result<(), String> {
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => Err(format!("{cmd:?} could not run: {e}")),
    }
}

/// The venv's Python with the pinned SDK, installed if missing (a venv under the target
/// directory, `pip install -r` of the pins; a copy of the pins in the venv tells an
/// up-to-date one). `None` when it cannot be had outside CI (said loudly); a panic in CI.
fn python_with_the_sdk() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("otel-venv");
    let python = venv.join("bin").join("python");
    let pins = std::fs::read_to_string(REQUIREMENTS).expect("the requirements file");
    let stamp = venv.join("omni-metrics-requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(pins.as_str()) {
        return Some(python);
    }
    let installed = run(Command::new("python3").args(["-m", "venv"]).arg(&venv))
        .and_then(|()| {
            run(Command::new(&python).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                REQUIREMENTS,
            ]))
        })
        .and_then(|()| {
            std::fs::write(&stamp, &pins).map_err(|e| format!("{}: {e}", stamp.display()))
        });
    match installed {
        Ok(()) => Some(python),
        Err(why) if in_ci() => panic!(
            "CI is set, and the OpenTelemetry Python SDK could not be installed (python3 with \
             venv, e.g. Debian's python3-venv, and PyPI are needed): {why}"
        ),
        Err(why) => {
            eprintln!(
                "\n!!!!! SKIPPED vllm_omni: the OpenTelemetry Python SDK could not be installed \
                 in {} (python3 with venv, e.g. Debian's python3-venv, and PyPI are needed); \
                 with CI set this is a failure:\n{why}\n",
                venv.display()
            );
            None
        }
    }
}

/// The truth the generator wrote, and the collector's files.
struct Generated {
    truth: Value,
    json: PathBuf,
    proto: PathBuf,
}

/// Runs the generator against a collector writing the Collector's file format.
fn generate(dir: &Path, python: &Path) -> Generated {
    let collector = FileCollector::start(dir, "vllm-omni");
    let truth_path = dir.join("truth.json");
    run(Command::new(python)
        .arg(SCRIPT)
        .args(["--endpoint", &collector.endpoint])
        .arg("--truth")
        .arg(&truth_path)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_SDK_DISABLED"))
    .unwrap_or_else(|e| panic!("the generator: {e}"));
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(&truth_path).expect("the truth"))
            .expect("the truth is JSON");
    let (json, proto) = (collector.json.clone(), collector.proto.clone());
    drop(collector);
    Generated { truth, json, proto }
}

/// The status a request's outcome reads as.
fn status_of(outcome: &str) -> &str {
    match outcome {
        "success" => "ok",
        "aborted" => "aborted",
        _ => "error",
    }
}

fn ms(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// `pN` by nearest rank of `values`.
fn nearest_rank(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank - 1]
}

/// Checks a distribution of the summary against the truth's values: count exact, mean,
/// p50, p90, p99 and max within 1 ms.
fn check_distribution(
    name: &str,
    d: &Value,
    values: &[f64],
    diffs: &mut Vec<String>,
    max_diff: &Cell<f64>,
) {
    let got = &d[name];
    if got.is_null() {
        diffs.push(format!("distributions: no {name}"));
        return;
    }
    if got["count"].as_u64() != Some(values.len() as u64) {
        diffs.push(format!(
            "distributions.{name}.count: {} (truth {})",
            got["count"],
            values.len()
        ));
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let truth = [
        ("mean_ms", mean),
        ("p50_ms", nearest_rank(values, 50.0)),
        ("p90_ms", nearest_rank(values, 90.0)),
        ("p99_ms", nearest_rank(values, 99.0)),
        ("max_ms", nearest_rank(values, 100.0)),
    ];
    for (key, want) in truth {
        let d = (ms(&got[key]) - want).abs();
        max_diff.set(max_diff.get().max(d));
        if d.is_nan() || d > 1.0 {
            diffs.push(format!(
                "distributions.{name}.{key}: {} (truth {want})",
                got[key]
            ));
        }
    }
}

/// Every request of the truth is in `records` with its status, error type, e2e, time to
/// first output and stages (id, type, replica, wall time, gen time, time to first output),
/// times within 1 ms, and nothing the trace cannot hold; the summary (scope `all`) counts
/// them, its wall times and distributions the truth's. Returns the differences and the
/// largest time difference.
fn check(truth: &Value, records: &[Value]) -> (Vec<String>, f64) {
    let mut diffs = Vec::new();
    let max_diff = Cell::new(0.0_f64);
    let time = |what: String, got: &Value, want: &Value, diffs: &mut Vec<String>| match (
        got.as_f64(),
        want.as_f64(),
    ) {
        (None, None) if got.is_null() && want.is_null() => {}
        (Some(g), Some(w)) => {
            let d = (g - w).abs();
            max_diff.set(max_diff.get().max(d));
            if d > 1.0 {
                diffs.push(format!("{what}: {g} ms (truth {w} ms)"));
            }
        }
        _ => diffs.push(format!("{what}: {got} (truth {want})")),
    };
    let found = requests(records);
    let empty = Vec::new();
    let want = truth["requests"].as_array().unwrap_or(&empty);
    let ids: Vec<&str> = want
        .iter()
        .filter_map(|r| r["request_id"].as_str())
        .collect();
    let mut sorted_ids = ids.clone();
    sorted_ids.sort_unstable();
    if found.keys().map(String::as_str).collect::<Vec<_>>() != sorted_ids {
        diffs.push(format!(
            "requests: {:?} (truth {sorted_ids:?})",
            found.keys().collect::<Vec<_>>()
        ));
    }
    for t in want {
        let id = t["request_id"].as_str().unwrap_or_default();
        let Some(r) = found.get(id) else { continue };
        let status = status_of(t["outcome"].as_str().unwrap_or_default());
        if r["status"] != status {
            diffs.push(format!("{id}: status {} (truth {status})", r["status"]));
        }
        if r["status_message"] != t["error_type"] {
            diffs.push(format!(
                "{id}: status_message {} (truth {})",
                r["status_message"], t["error_type"]
            ));
        }
        if r["source"] != "vllm-omni" || !r["trace_id"].is_string() || r["invalid_spans"] != 0 {
            diffs.push(format!(
                "{id}: source {}, trace_id {}, invalid_spans {}",
                r["source"], r["trace_id"], r["invalid_spans"]
            ));
        }
        time(
            format!("{id}: e2e_total_ms"),
            &r["e2e_total_ms"],
            &t["e2e_total_ms"],
            &mut diffs,
        );
        time(
            format!("{id}: time_to_first_output_ms"),
            &r["time_to_first_output_ms"],
            &t["time_to_first_output_ms"],
            &mut diffs,
        );
        for key in ABSENT_REQUEST {
            if r.get(key).is_some() {
                diffs.push(format!("{id}: {key} = {} is not in such a trace", r[key]));
            }
        }
        let stages = r["stages"].as_array().unwrap_or(&empty);
        let truth_stages = t["stages"].as_array().unwrap_or(&empty);
        if stages.len() != truth_stages.len() {
            diffs.push(format!(
                "{id}: {} stages (truth {})",
                stages.len(),
                truth_stages.len()
            ));
            continue;
        }
        for (s, w) in stages.iter().zip(truth_stages) {
            let sid = &w["stage_id"];
            for key in ["stage_id", "stage_name", "replica_id"] {
                if s[key] != w[key] {
                    diffs.push(format!(
                        "{id} stage {sid}: {key} {} (truth {})",
                        s[key], w[key]
                    ));
                }
            }
            if s["spans"] != 1 {
                diffs.push(format!("{id} stage {sid}: spans {}", s["spans"]));
            }
            for (key, truth_key) in [
                ("wall_time_ms", "wall_time_ms"),
                // The stage span's whole duration: the trace does not split it.
                ("stage_gen_time_ms", "wall_time_ms"),
                ("time_to_first_output_ms", "time_to_first_output_ms"),
            ] {
                time(
                    format!("{id} stage {sid}: {key}"),
                    &s[key],
                    &w[truth_key],
                    &mut diffs,
                );
            }
            for key in ABSENT_STAGE {
                if s.get(key).is_some() {
                    diffs.push(format!(
                        "{id} stage {sid}: {key} = {} is not in such a trace",
                        s[key]
                    ));
                }
            }
        }
    }

    // The summary of everything (`--group-by all`).
    let all = summaries(records);
    let Some(s) = all.get("all") else {
        diffs.push(format!("no summary of scope all: {:?}", all.keys()));
        return (diffs, max_diff.get());
    };
    let ok: Vec<&Value> = want.iter().filter(|r| r["outcome"] == "success").collect();
    let count = |outcome: &str| want.iter().filter(|r| r["outcome"] == outcome).count();
    let counts = [
        ("e2e_requests", ok.len()),
        ("e2e_requests_error", count("error")),
        ("e2e_requests_aborted", count("aborted")),
    ];
    for (key, n) in counts {
        if s[key].as_u64() != Some(n as u64) {
            diffs.push(format!("summary: {key} {} (truth {n})", s[key]));
        }
    }
    if s["source"] != "vllm-omni" {
        diffs.push(format!("summary: source {}", s["source"]));
    }
    for key in ABSENT_SUMMARY {
        if s.get(key).is_some() {
            diffs.push(format!(
                "summary: {key} = {} is not in such a trace",
                s[key]
            ));
        }
    }
    let ns = |v: &Value| v.as_u64().unwrap_or(0);
    // `--group-by all` starts the scope at the first request replayed: requests are
    // replayed in the order they ended (the replay module's docs); the wall ends at the
    // last completion.
    let first_start = want
        .iter()
        .min_by_key(|r| ns(&r["end_ns"]))
        .map_or(0, |r| ns(&r["start_ns"]));
    let last_ok = ok.iter().map(|r| ns(&r["end_ns"])).max().unwrap_or(0);
    let wall = (last_ok - first_start) as f64 / 1e6;
    time(
        "summary: e2e_wall_time_ms".into(),
        &s["e2e_wall_time_ms"],
        &Value::from(wall),
        &mut diffs,
    );
    time(
        "summary: e2e_avg_time_per_request_ms".into(),
        &s["e2e_avg_time_per_request_ms"],
        &Value::from(wall / ok.len() as f64),
        &mut diffs,
    );
    let ok_stages = || {
        ok.iter()
            .flat_map(|r| r["stages"].as_array().unwrap_or(&empty))
    };
    for stage in 0..3_u64 {
        let of = || ok_stages().filter(move |s| s["stage_id"] == stage);
        let start = of().map(|s| ns(&s["start_ns"])).min().unwrap_or(0);
        let end = of().map(|s| ns(&s["end_ns"])).max().unwrap_or(0);
        time(
            format!("summary: e2e_stage_{stage}_wall_time_ms"),
            &s[format!("e2e_stage_{stage}_wall_time_ms")],
            &Value::from((end - start) as f64 / 1e6),
            &mut diffs,
        );
        let walls: Vec<f64> = of().map(|s| ms(&s["wall_time_ms"])).collect();
        let first: Vec<f64> = of()
            .filter_map(|s| s["time_to_first_output_ms"].as_f64())
            .collect();
        let d = &s["distributions"];
        check_distribution(
            &format!("stage_{stage}_gen_time_ms"),
            d,
            &walls,
            &mut diffs,
            &max_diff,
        );
        check_distribution(
            &format!("stage_{stage}_time_to_first_output_ms"),
            d,
            &first,
            &mut diffs,
            &max_diff,
        );
        // Per replica, where more than one served the stage.
        let mut replicas: Vec<u64> = of().filter_map(|s| s["replica_id"].as_u64()).collect();
        replicas.sort_unstable();
        replicas.dedup();
        for replica in replicas.iter().filter(|_| replicas.len() > 1) {
            let walls: Vec<f64> = of()
                .filter(|s| s["replica_id"] == *replica)
                .map(|s| ms(&s["wall_time_ms"]))
                .collect();
            check_distribution(
                &format!("stage_{stage}_replica_{replica}_gen_time_ms"),
                d,
                &walls,
                &mut diffs,
                &max_diff,
            );
        }
        if replicas.len() == 1
            && d.as_object().is_some_and(|o| {
                o.keys()
                    .any(|k| k.starts_with(&format!("stage_{stage}_replica_")))
            })
        {
            diffs.push(format!(
                "summary: stage {stage} has one replica, but rows by replica"
            ));
        }
        if !d[format!("stage_{stage}_queue_time_ms")].is_null() {
            diffs.push(format!(
                "summary: stage_{stage}_queue_time_ms is not in such a trace"
            ));
        }
    }
    let e2e: Vec<f64> = ok.iter().map(|r| ms(&r["e2e_total_ms"])).collect();
    let first: Vec<f64> = ok
        .iter()
        .filter_map(|r| r["time_to_first_output_ms"].as_f64())
        .collect();
    let d = &s["distributions"];
    check_distribution("e2e_total_ms", d, &e2e, &mut diffs, &max_diff);
    check_distribution("time_to_first_output_ms", d, &first, &mut diffs, &max_diff);
    (diffs, max_diff.get())
}

/// The figures side by side, for the eye (and the closing note).
fn side_by_side(truth: &Value, records: &[Value]) -> String {
    let found = requests(records);
    let mut out = String::from(
        "request        status   e2e_ms truth / report      ttfo_ms truth / report     stages \
         (id type replica wall truth/report)\n",
    );
    let empty = Vec::new();
    let opt = |v: &Value| v.as_f64().map_or("-".to_owned(), |v| format!("{v:.3}"));
    for t in truth["requests"].as_array().unwrap_or(&empty) {
        let id = t["request_id"].as_str().unwrap_or_default();
        let r = found.get(id).cloned().unwrap_or(Value::Null);
        let stages: Vec<String> = t["stages"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .zip(r["stages"].as_array().unwrap_or(&empty))
            .map(|(w, s)| {
                format!(
                    "{} {} r{} {}/{}",
                    w["stage_id"],
                    w["stage_name"].as_str().unwrap_or_default(),
                    w["replica_id"],
                    opt(&w["wall_time_ms"]),
                    opt(&s["wall_time_ms"])
                )
            })
            .collect();
        out.push_str(&format!(
            "{id:<14} {:<8} {:>9} / {:<9}  {:>9} / {:<9}  {}\n",
            r["status"].as_str().unwrap_or("?"),
            opt(&t["e2e_total_ms"]),
            opt(&r["e2e_total_ms"]),
            opt(&t["time_to_first_output_ms"]),
            opt(&r["time_to_first_output_ms"]),
            stages.join(", ")
        ));
    }
    if let Some(s) = summaries(records).get("all") {
        let mut summary = s.clone();
        if let Some(o) = summary.as_object_mut() {
            o.remove("distributions");
        }
        out.push_str(&format!("summary: {summary}\n"));
        for (name, d) in s["distributions"].as_object().into_iter().flatten() {
            out.push_str(&format!("  {name}: {d}\n"));
        }
    }
    out
}

/// Traces of the real Python SDK, driven as vLLM-Omni drives it, exported over OTLP/gRPC to
/// a collector writing the Collector's files (JSON and protobuf): the report of either file
/// finds every request, every number the generator's (times within 1 ms), tokens, batches,
/// transfers and the split of a stage's time absent from its records, tables and summary;
/// grouped as live (no run: each request its own scope), every request is there too; the
/// HTML page has them, with what is unknown as null, and renders in Chromium a bar per stage
/// and tables without those rows.
#[test]
fn vllm_omnis_own_traces_from_the_python_sdk_report_what_the_generator_did() {
    let Some(python) = python_with_the_sdk() else {
        return;
    };
    let dir = test_dir("vllm-omni");
    let Generated { truth, json, proto } = generate(&dir, &python);
    let want = truth["requests"].as_array().map_or(0, Vec::len);
    assert!(want >= 20, "the generator made {want} requests");

    let (stdout, stderr) = report_ok([
        "--format".as_ref(),
        "jsonl".as_ref(),
        "--group-by".as_ref(),
        "all".as_ref(),
        json.as_os_str(),
    ]);
    let got = records(&stdout);
    eprintln!("{}", side_by_side(&truth, &got));
    let (diffs, max_diff) = check(&truth, &got);
    assert!(
        diffs.is_empty(),
        "the report differs from the generator's truth:\n{}\n\nstderr:\n{stderr}",
        diffs.join("\n")
    );
    eprintln!("largest time difference from the truth: {max_diff:.6} ms");
    let spans = truth["spans"].as_u64().unwrap_or(0);
    assert!(
        stderr.contains(&format!(
            "{spans} spans in {want} traces from 1 file: {want} requests"
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("stage_id"),
        "no stage lacks its id: {stderr}"
    );

    // The protobuf file holds the same: the same report.
    let (from_proto, _) = report_ok([
        "--format".as_ref(),
        "jsonl".as_ref(),
        "--group-by".as_ref(),
        "all".as_ref(),
        proto.as_os_str(),
    ]);
    let mut a: Vec<&str> = stdout.lines().collect();
    let mut b: Vec<&str> = from_proto.lines().collect();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b, "the protobuf file reports as the JSON one");

    // Grouped as live: vLLM-Omni has no run, each request is its own scope.
    let (live_grouping, _) = report_ok(["--format".as_ref(), "jsonl".as_ref(), json.as_os_str()]);
    let by_request = records(&live_grouping);
    assert_eq!(requests(&by_request).len(), want);
    assert_eq!(summaries(&by_request).len(), want);
    for s in summaries(&by_request).values() {
        assert_eq!(s["source"], "vllm-omni", "{s}");
        assert!(s.get("e2e_total_tokens").is_none(), "{s}");
    }

    // The tables: no row for what such a trace cannot hold.
    let page = dir.join("report.html");
    let (tables, _) = report_ok([
        "--group-by".as_ref(),
        "all".as_ref(),
        "--html".as_ref(),
        page.as_os_str(),
        json.as_os_str(),
    ]);
    for absent in [
        "e2e_total_tokens",
        "e2e_avg_tokens_per_s",
        "transfers_total",
        "TransferEdgeStats",
        "num_tokens",
        "batch_",
        "queue_time_ms",
        "postprocess_time_ms",
        "output_chunks",
        "audio_generated_frames",
    ] {
        assert!(
            !tables.contains(absent),
            "{absent} in the tables:\n{tables}"
        );
    }
    for present in [
        "| replica_id ",
        "| stage_gen_time_ms ",
        "| time_to_first_output_ms ",
        "0 llm |",
        "2 audio |",
        "| e2e_stage_2_wall_time_ms ",
        "Distributions",
    ] {
        assert!(
            tables.contains(present),
            "no {present} in the tables:\n{tables}"
        );
    }

    // The HTML page: every request, tokens unknown (null), not 0.
    let html = std::fs::read_to_string(&page).expect("the page");
    let blob = html_blob(&html);
    let rows = blob["requests"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), want);
    let columns = &blob["columns"]["request"];
    let col = |name: &str| {
        columns
            .as_array()
            .and_then(|c| c.iter().position(|c| c == name))
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    for row in &rows {
        assert!(row[col("e2e_total_tokens")].is_null(), "{row}");
        assert!(row[col("transfers_total_time_ms")].is_null(), "{row}");
    }
    assert!(
        blob["summary"]["e2e_total_tokens"].is_null(),
        "{}",
        blob["summary"]
    );
    // In the browser: a bar per stage; the summary's and a request's tables without the
    // rows the trace cannot give.
    let Some(browser) = chromium::browser("vllm_omni") else {
        return;
    };
    let first = truth["requests"][0]["request_id"]
        .as_str()
        .unwrap_or_default();
    let run = chromium::run(
        &browser,
        &chromium::file_url(&page, &format!("request={first}")),
        &["--dump-dom"],
        std::time::Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(run.console.is_empty(), "{:?}", run.console);
    let attr = |name| chromium::body_attr(&run.stdout, name);
    assert_eq!(attr("data-rendered").as_deref(), Some("1"));
    let stages: usize = rows
        .iter()
        .map(|r| r[col("stages")].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(attr("data-bars"), Some(stages.to_string()));
    for absent in [
        "e2e_total_tokens",
        "e2e_avg_tokens_per_s",
        "transfers_total_time_ms",
        "num_tokens_in",
        "batch_size",
        "queue_time_ms",
        "postprocess_time_ms",
        "output_chunks",
    ] {
        let field = format!("data-field=\"{absent}\"");
        assert!(!run.stdout.contains(&field), "{field} on the page");
    }
    for present in [
        "e2e_requests",
        "e2e_total_ms",
        "stage_gen_time_ms",
        "time_to_first_output_ms",
    ] {
        let field = format!("data-field=\"{present}\"");
        assert!(run.stdout.contains(&field), "no {field} on the page");
    }
}

/// The page's data blob.
fn html_blob(html: &str) -> Value {
    let start = html
        .find("<script type=\"application/json\"")
        .and_then(|i| html[i..].find('>').map(|j| i + j + 1))
        .expect("the blob");
    let end = html[start..].find("</script>").expect("its end") + start;
    serde_json::from_str(&html[start..end]).expect("the blob is JSON")
}

/// A file holding both shapes: vLLM-Omni's request is read as such (an outcome the reader
/// does not know is an error, with the outcome said), the convention's request prints
/// exactly as it does without it, and a summary is marked (its tokens left out) only where
/// it holds a request of vLLM-Omni's.
#[test]
fn beside_the_conventions_spans_only_vllm_omnis_requests_are_marked() {
    use serde_json::json;
    let ours = [
        span_json(
            &"a".repeat(32),
            1,
            None,
            "omni.request",
            0.0,
            50.0,
            &[("request_id", json!("ours-1"))],
            &[],
        ),
        span_json(
            &"a".repeat(32),
            2,
            Some(1),
            "omni.stage",
            1.0,
            40.0,
            &[
                ("stage_id", json!(0)),
                ("num_tokens_in", json!(5)),
                ("num_tokens_out", json!(3)),
            ],
            &[("omni.output", 10.0, Some(3))],
        ),
    ];
    let pipeline = span_json(
        &"b".repeat(32),
        3,
        None,
        "omni.pipeline",
        5.0,
        65.0,
        &[
            ("omni.request.id", json!("theirs-1")),
            ("omni.request.outcome", json!("timeout")),
        ],
        &[],
    );
    let theirs = [
        pipeline,
        span_json(
            &"b".repeat(32),
            4,
            Some(3),
            "omni.stage",
            6.0,
            65.0,
            &[
                ("omni.stage.id", json!(0)),
                ("omni.stage.type", json!("llm")),
                ("omni.replica.id", json!(2)),
                ("omni.request.outcome", json!("timeout")),
            ],
            &[("omni.stage.first_output", 16.5, None)],
        ),
    ];
    let dir = test_dir("vllm-omni-mixed");
    let alone = dir.join("ours.json");
    let both = dir.join("both.json");
    std::fs::write(&alone, line_of("engine", ours.to_vec()) + "\n").expect("write");
    std::fs::write(
        &both,
        line_of("engine", ours.to_vec()) + "\n" + &line_of("vllm-omni", theirs.to_vec()) + "\n",
    )
    .expect("write");
    let jsonl = |path: &Path, group: &str| {
        report_ok([
            "--format".as_ref(),
            "jsonl".as_ref(),
            "--group-by".as_ref(),
            group.as_ref(),
            path.as_os_str(),
        ])
        .0
    };
    let line_of_request = |text: &str, id: &str| {
        text.lines()
            .find(|l| l.contains(&format!(r#""request_id":"{id}""#)))
            .unwrap_or_default()
            .to_owned()
    };
    for group in ["run", "all"] {
        let (a, b) = (jsonl(&alone, group), jsonl(&both, group));
        assert_eq!(
            line_of_request(&a, "ours-1"),
            line_of_request(&b, "ours-1"),
            "--group-by {group}: the convention's request prints as without vLLM-Omni's"
        );
        assert!(line_of_request(&a, "ours-1").contains(r#""e2e_total_tokens":8,"#));
        let r = requests(&records(&b));
        let t = &r["theirs-1"];
        assert_eq!(
            (
                &t["status"],
                &t["status_message"],
                &t["source"],
                &t["e2e_total_ms"]
            ),
            (
                &json!("error"),
                &json!("timeout"),
                &json!("vllm-omni"),
                &json!(60.0)
            ),
            "{t}"
        );
        let stage = &t["stages"][0];
        assert_eq!(
            (
                &stage["stage_name"],
                &stage["replica_id"],
                &stage["time_to_first_output_ms"]
            ),
            (&json!("llm"), &json!(2), &json!(10.5)),
            "{stage}"
        );
        assert!(t.get("e2e_total_tokens").is_none(), "{t}");
        let s = summaries(&records(&b));
        match group {
            // Each request its own scope: only vLLM-Omni's is marked.
            "run" => {
                assert_eq!(s["ours-1"]["e2e_total_tokens"], 8, "{}", s["ours-1"]);
                assert!(s["ours-1"].get("source").is_none());
                assert_eq!(s["theirs-1"]["source"], "vllm-omni");
                assert!(s["theirs-1"].get("e2e_total_tokens").is_none());
            }
            // One scope with both: its tokens are not known for all its requests.
            _ => {
                assert_eq!(s["all"]["source"], "vllm-omni", "{}", s["all"]);
                assert!(s["all"].get("e2e_total_tokens").is_none());
                assert_eq!(s["all"]["e2e_requests"], 1);
                assert_eq!(s["all"]["e2e_requests_error"], 1);
            }
        }
    }
}
