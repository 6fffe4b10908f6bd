//! The report of an engine's exported traces equals what its live layer printed.

use std::io::Write as _;
use std::path::Path;
use std::sync::OnceLock;

use super::collector::FileCollector;
use super::*;

/// The live run, once for every test of this file: the directory holding the engine's
/// tables (`live.txt`), records (`live.jsonl`) and exported traces (`traces.json`,
/// `traces.pb`).
fn live_run() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = test_dir("live");
        let collector = FileCollector::start(&dir, "traces");
        let dir_text = dir.display().to_string();
        finish_child(spawn_child(
            "live",
            &[
                ("OMNI_REPORT_DIR", dir_text.as_str()),
                ("OMNI_REPORT_ENDPOINT", collector.endpoint.as_str()),
            ],
        ));
        drop(collector);
        dir
    })
}

fn path(name: &str) -> String {
    live_run().join(name).display().to_string()
}

#[test]
fn jsonl_records_equal_the_live_records() {
    let live = records_in(&live_run().join("live.jsonl"));
    let (stdout, stderr) = report_ok(["--format", "jsonl", &path("traces.json")]);
    let report = records(&stdout);
    assert_eq!(
        live.len(),
        8,
        "5 requests, the run's summary, one per online request"
    );
    assert_eq!(report.len(), live.len(), "{stdout}\n{stderr}");
    let max_ms = assert_same_records(&live, &report);
    eprintln!("largest time difference, report vs live: {max_ms:.4} ms");
    // Every record of the engine's: its counts, statuses, scopes and trace ids.
    let r = requests(&report);
    assert_eq!(r["r-1"]["status"], "error");
    assert_eq!(r["r-1"]["status_message"], "out of memory");
    assert_eq!(r["o-2"]["status"], "aborted");
    assert_eq!(r["r-0"]["scope"], "batch-1");
    assert_eq!(
        r["r-0"]["stages"][1]["spans"], 2,
        "the talker streamed as two spans"
    );
    assert_eq!(r["r-0"]["transfers"][0]["transfers"], 1);
    assert_eq!(r["r-0"]["stages"][0]["output_chunks"], 2);
    assert!(r["r-0"]["trace_id"].as_str().is_some_and(|t| t.len() == 32));
    let s = summaries(&report);
    assert_eq!(s["batch-1"]["e2e_requests"], 2);
    assert_eq!(s["batch-1"]["e2e_requests_error"], 1);
    assert!(s["batch-1"]["distributions"].is_object());
    assert!(stderr.contains("5 requests, 1 run"), "{stderr}");
}

/// Times of the children (queue, post-processing, tx, rx) are not subtracted or added
/// twice: the exported stage and transfer spans carry the layer's own figures
/// (`stage_gen_time_ms`...), which the replay takes as the explicit values they look like;
/// they equal what the children give, so a double count would show here by several ms.
#[test]
fn child_times_are_counted_once() {
    let live = requests(&records_in(&live_run().join("live.jsonl")));
    let (stdout, _) = report_ok(["--format", "jsonl", &path("traces.json")]);
    let report = requests(&records(&stdout));
    for id in ["r-0", "r-2", "o-1"] {
        let (l, r) = (&live[id]["stages"][0], &report[id]["stages"][0]);
        for key in [
            "stage_gen_time_ms",
            "queue_time_ms",
            "postprocess_time_ms",
            "wall_time_ms",
        ] {
            let (a, b) = (
                l[key].as_f64().unwrap_or(-1.0),
                r[key].as_f64().unwrap_or(-1.0),
            );
            assert!((a - b).abs() < 1.0, "{id} {key}: live {a}, report {b}");
        }
        // The thinker queued 3 ms and post-processed 2 ms: its gen time is its span minus
        // both, once.
        let gen_ms = r["stage_gen_time_ms"].as_f64().unwrap_or_default();
        let wall = r["wall_time_ms"].as_f64().unwrap_or_default();
        let (queue, post) = (
            r["queue_time_ms"].as_f64().unwrap_or_default(),
            r["postprocess_time_ms"].as_f64().unwrap_or_default(),
        );
        assert!(
            queue >= 3.0 && post >= 2.0,
            "{id}: queue {queue}, post {post}"
        );
        // The gen time is the layer's own figure, the wall time the exported span's: they
        // differ by the time between the two layers' clock reads (microseconds, but 0.76 ms
        // once on a loaded 2-core machine); a child counted twice would be 2 ms or more.
        assert!(
            (wall - queue - post - gen_ms).abs() < 1.5,
            "{id}: {wall} = {queue} + {post} + {gen_ms}"
        );
    }
}

#[test]
fn tables_equal_the_live_tables() {
    let live = std::fs::read_to_string(live_run().join("live.txt")).expect("live tables");
    let (stdout, _) = report_ok([path("traces.json")]);
    let (live_lines, report_lines): (Vec<&str>, Vec<&str>) =
        (live.lines().collect(), stdout.lines().collect());
    assert_eq!(
        live_lines.len(),
        report_lines.len(),
        "live:\n{live}\nreport:\n{stdout}"
    );
    let mut diffs = Vec::new();
    let mut max_ms: f64 = 0.0;
    for (n, (l, r)) in live_lines.iter().zip(&report_lines).enumerate() {
        let (lc, rc): (Vec<&str>, Vec<&str>) = (l.split('|').collect(), r.split('|').collect());
        if lc.len() != rc.len() {
            diffs.push(format!("line {n}: {l} / {r}"));
            continue;
        }
        // A row's label says its unit: times end with `_ms` (the Distributions table's
        // columns are all in ms).
        let label = lc.get(1).map(|c| c.trim()).unwrap_or_default();
        let in_ms = label.ends_with("_ms") || label.starts_with("transfer_");
        for (a, b) in lc.iter().zip(&rc) {
            let (a, b) = (a.trim(), b.trim());
            let num = |s: &str| s.replace(',', "").parse::<f64>().ok();
            match (num(a), num(b)) {
                // Times are printed with three decimals (within 1 ms, plus rounding), rates
                // within 1%; counts as integers, exactly.
                (Some(x), Some(y)) if a.contains('.') => {
                    let d = (x - y).abs();
                    let off = if in_ms {
                        max_ms = max_ms.max(d);
                        d > 1.001
                    } else {
                        d > 0.01 * x.abs().max(y.abs()) + 0.001
                    };
                    if off {
                        diffs.push(format!("line {n}: {l} / {r}"));
                    }
                }
                _ if a != b => diffs.push(format!("line {n}: {l} / {r}")),
                _ => {}
            }
        }
    }
    assert!(diffs.is_empty(), "tables differ:\n{}", diffs.join("\n"));
    eprintln!("largest table difference, report vs live: {max_ms:.3}");
    assert!(stdout.contains("StageRequestStats") && stdout.contains("Distributions"));
}

/// The same traces as protobuf, and compressed with gzip or zstd (whole stream, or each
/// record apart as the file exporter's older compression does), give the same output.
#[test]
fn protobuf_gzip_and_zstd_inputs_give_the_same_report() {
    let dir = live_run();
    let json = std::fs::read(dir.join("traces.json")).expect("json");
    let proto = std::fs::read(dir.join("traces.pb")).expect("proto");
    let gz = dir.join("traces.json.gz");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&json).expect("gzip");
    std::fs::write(&gz, encoder.finish().expect("gzip")).expect("gz file");
    let zst = dir.join("traces.pb.zst");
    std::fs::write(&zst, zstd::stream::encode_all(&proto[..], 3).expect("zstd")).expect("zst");
    // Older file exporter compression: every JSON line its own zstd frame, length first.
    let framed = dir.join("traces-framed.zst");
    let mut bytes = Vec::new();
    for line in json.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let frame = zstd::stream::encode_all(line, 3).expect("zstd");
        bytes.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&frame);
    }
    std::fs::write(&framed, bytes).expect("framed");

    let (expected, _) = report_ok(["--format", "jsonl", &path("traces.json")]);
    for file in [dir.join("traces.pb"), gz, zst, framed] {
        let (stdout, stderr) =
            report_ok([Path::new("--format"), Path::new("jsonl"), file.as_path()]);
        assert_eq!(stdout, expected, "{}: {stderr}", file.display());
    }
    let (stdout, _) = report_ok([
        "--input-format",
        "proto",
        "--format",
        "jsonl",
        &path("traces.pb"),
    ]);
    assert_eq!(stdout, expected);
}

/// The report of `traces.json` with `--group-by all`, as JSON lines.
fn all_in_one_scope() -> Vec<serde_json::Value> {
    records(
        &report_ok([
            "--format",
            "jsonl",
            "--group-by",
            "all",
            &path("traces.json"),
        ])
        .0,
    )
}

/// `--group-by all`: every request of the files in one scope.
#[test]
fn group_by_all_summarizes_every_request_together() {
    let live = requests(&records_in(&live_run().join("live.jsonl")));
    let report = all_in_one_scope();
    let s = summaries(&report);
    assert_eq!(s.keys().collect::<Vec<_>>(), ["all"]);
    let all = &s["all"];
    let ok: Vec<&Value> = live.values().filter(|r| r["status"] == "ok").collect();
    assert_eq!(all["e2e_requests"], ok.len());
    assert_eq!(all["e2e_requests_error"], 1);
    assert_eq!(all["e2e_requests_aborted"], 1);
    let tokens: u64 = ok
        .iter()
        .filter_map(|r| r["e2e_total_tokens"].as_u64())
        .sum();
    assert_eq!(all["e2e_total_tokens"], tokens);
    assert_eq!(all["distributions"]["e2e_total_ms"]["count"], ok.len());
    for r in requests(&report).values() {
        assert_eq!(r["scope"], "all");
    }
}

/// The same file twice: every span counted once.
#[test]
fn a_file_given_twice_counts_once() {
    let (once, _) = report_ok(["--format", "jsonl", &path("traces.json")]);
    let (twice, stderr) = report_ok([
        "--format",
        "jsonl",
        &path("traces.json"),
        &path("traces.json"),
    ]);
    assert_eq!(once, twice);
    assert!(
        stderr.contains("spans were read twice and counted once"),
        "{stderr}"
    );
}

/// A run whose span is in no file (a collector that lost it, a run still open): its
/// requests, which link to it, are still summarized together.
#[test]
fn requests_of_a_run_missing_from_the_files_stay_together() {
    let dir = live_run();
    let mut lines = Vec::new();
    for line in std::fs::read_to_string(dir.join("traces.json"))
        .expect("json")
        .lines()
    {
        let mut v: Value = serde_json::from_str(line).expect("json");
        for rs in v["resourceSpans"].as_array_mut().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array_mut().into_iter().flatten() {
                if let Some(spans) = ss["spans"].as_array_mut() {
                    spans.retain(|s| {
                        let run_id = s["attributes"]
                            .as_array()
                            .and_then(|a| a.iter().find(|a| a["key"] == "run_id"));
                        !(s["name"] == "run"
                            && run_id.is_some_and(|a| a["value"]["stringValue"] == "batch-1"))
                    });
                }
            }
        }
        lines.push(v.to_string());
    }
    let without_run = dir.join("without-run.json");
    std::fs::write(&without_run, lines.join("\n")).expect("write");
    let (stdout, stderr) = report_ok([
        Path::new("--format"),
        Path::new("jsonl"),
        without_run.as_path(),
    ]);
    let s = summaries(&records(&stdout));
    let runs: Vec<&Value> = s
        .values()
        .filter(|v| v["e2e_requests_error"] == 1)
        .collect();
    assert_eq!(runs.len(), 1, "{stdout}");
    assert_eq!(runs[0]["e2e_requests"], 2);
    assert!(stderr.contains("1 run is not in the input"), "{stderr}");
}

/// `--html`: the report's page of the trace files, rendered in headless Chromium: no
/// console message, one bar per stage and transfer of the records the same files give.
#[test]
fn html_report_of_the_trace_files() {
    let out = test_dir("html").join("report-{scope}.html");
    let out_text = out.display().to_string();
    let (_, stderr) = report_ok([
        "--group-by",
        "all",
        "--summary-only",
        "--html",
        &out_text,
        &path("traces.json"),
    ]);
    let page = out.with_file_name("report-all.html");
    assert!(stderr.contains("wrote"), "{stderr}");
    let html = std::fs::read_to_string(&page).expect("the page was written");
    let report = all_in_one_scope();
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
    let Some(browser) = chromium::browser("html_report_of_the_trace_files") else {
        return;
    };
    let run = chromium::run(
        &browser,
        &chromium::file_url(&page, ""),
        &["--dump-dom"],
        std::time::Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(run.console.is_empty(), "{:?}", run.console);
    let attr = |name| chromium::body_attr(&run.stdout, name);
    assert_eq!(attr("data-rendered").as_deref(), Some("1"));
    assert_eq!(attr("data-bars"), Some(bars.to_string()));
}

/// `--html` without `{scope}`: the live run's page (its online requests, one scope each,
/// get none when a run is there).
#[test]
fn html_of_the_run_is_written_under_the_name_given() {
    let out = test_dir("html-run").join("report.html");
    let (_, stderr) = report_ok(["--html", &out.display().to_string(), &path("traces.json")]);
    assert!(stderr.contains("wrote"), "{stderr}");
    let html = std::fs::read_to_string(&out).expect("the page was written");
    let live = requests(&records_in(&live_run().join("live.jsonl")));
    let in_run: Vec<&String> = live
        .iter()
        .filter(|(id, r)| r["scope"] != id.as_str())
        .map(|(id, _)| id)
        .collect();
    assert!(!in_run.is_empty());
    for id in in_run {
        assert!(html.contains(id.as_str()), "{id} is on the run's page");
    }
}
