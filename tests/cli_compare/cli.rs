//! `omni-metrics compare` on the real binary: records and trace files in, the gate's exits.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use omni_metrics::report::Record;

use crate::runs::Run;

/// A fresh directory for one test's files.
pub(crate) fn temp_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("compare-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// Writes `runs` as the layer's JSON lines records to `path`.
fn write_records(path: &Path, runs: &[&Run]) {
    let mut text = String::new();
    for run in runs {
        let (requests, summary) = run.build();
        for r in requests {
            text.push_str(&Record::Request(r).to_json_line());
            text.push('\n');
        }
        text.push_str(&Record::Summary(summary).to_json_line());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn compare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omni-metrics"))
        .arg("compare")
        .args(args)
        .output()
        .expect("the omni-metrics binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// base.jsonl and new.jsonl: 3,000 requests each, stage 1 20% slower in the new run.
fn records(test: &str) -> (PathBuf, String, String) {
    let dir = temp_dir(test);
    let base = Run::new(3_000, 71);
    let mut new = Run::new(3_000, 72);
    new.gen_time[1] = 1.2;
    let (b, n) = (dir.join("base.jsonl"), dir.join("new.jsonl"));
    write_records(&b, &[&base]);
    write_records(&n, &[&new]);
    let s = |p: &Path| p.display().to_string();
    (dir.clone(), s(&b), s(&n))
}

#[test]
fn fail_on_exits_3_when_a_real_change_is_beyond_its_threshold() {
    let (_dir, base, new) = records("gate-fails");
    let out = compare(&[
        &base,
        &new,
        "--fail-on",
        "e2e_p99>+50%",
        "--fail-on",
        "stage1_gen_p50>+5%,edge0_1_tx_mean>+1%",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr:\n{stderr}");
    assert!(
        stderr.contains("--fail-on stage1_gen_p50>+5%: stage1_gen_p50 changed by +"),
        "{stderr}"
    );
    // Only the condition that held is said.
    assert!(!stderr.contains("--fail-on e2e_p99"), "{stderr}");
    assert!(!stderr.contains("--fail-on edge0_1_tx"), "{stderr}");
    // The table is printed all the same.
    assert!(
        text(&out.stdout).contains("| stage1_gen "),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn fail_on_exits_0_when_no_condition_holds() {
    let (_dir, base, new) = records("gate-passes");
    // A threshold beyond the change, a change in the other direction, noise.
    let out = compare(&[
        &base,
        &new,
        "--fail-on",
        "stage1_gen_p50>+50%, stage1_gen_mean<-1%, edge0_1_tx_p99>+1%",
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", text(&out.stderr));
    // The same run against itself passes any gate.
    let out = compare(&[&base, &base, "--fail-on", "e2e_p50>+0%"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", text(&out.stderr));
}

#[test]
fn a_gate_that_cannot_be_decided_is_a_usage_error() {
    let (_dir, base, new) = records("gate-usage");
    for (expr, says) in [
        ("e2e_p99>>5%", "expected an operator"),
        ("stage7_gen_p50>+5%", "stage7_gen is not in this comparison"),
        ("e2e_p99>+5", "needs a unit"),
    ] {
        let out = compare(&[&base, &new, "--fail-on", expr]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{expr}: {stderr}");
        assert!(stderr.contains(says), "{expr}: {stderr}");
    }
}

#[test]
fn markdown_and_jsonl_on_standard_output() {
    let (_dir, base, new) = records("formats");
    let out = compare(&[&base, &new, "--format", "markdown"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let md = text(&out.stdout);
    assert!(
        md.starts_with("### omni-metrics compare: `base` → `new`\n"),
        "{md}"
    );
    assert!(
        md.contains("| `stage1_gen` (ms) | 3,000/3,000 | **"),
        "{md}"
    );
    let out = compare(&[&base, &new, "--format", "jsonl"]);
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(rows[0]["type"], "compare");
    assert!(
        rows.iter()
            .any(|r| r["measure"] == "stage1_gen" && r["verdict"] == "worse")
    );
}

/// Several runs on a side: named in the error, picked with --base-scope, or pooled with
/// --group-by all (throughput then compared over the runs).
#[test]
fn several_runs_a_side_are_picked_or_pooled() {
    let dir = temp_dir("runs");
    let runs: Vec<Run> = (0..3).map(|k| Run::new(400, 80 + k)).collect();
    let base = dir.join("base.jsonl");
    write_records(&base, &runs.iter().collect::<Vec<_>>());
    let new = dir.join("new.jsonl");
    let mut faster: Vec<Run> = (0..3).map(|k| Run::new(400, 90 + k)).collect();
    for r in &mut faster {
        r.gen_time[0] = 0.7;
    }
    write_records(&new, &faster.iter().collect::<Vec<_>>());
    let (b, n) = (base.display().to_string(), new.display().to_string());
    let out = compare(&[&b, &n]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("base holds 3 runs (run-80, run-81, run-82): pick one with --base-scope"),
        "{stderr}"
    );
    let out = compare(&[&b, &n, "--base-scope", "run-81", "--new-scope", "run-90"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("400 requests"),
        "{}",
        text(&out.stdout)
    );
    let out = compare(&[&b, &n, "--group-by", "all", "--format", "jsonl"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(r#""measure":"throughput_rps""#), "{stdout}");
    let head: serde_json::Value =
        serde_json::from_str(stdout.lines().next().unwrap_or("")).expect("JSON");
    assert_eq!(
        (
            head["base"]["requests"].as_u64(),
            head["base"]["runs"].as_u64()
        ),
        (Some(1200), Some(3)),
        "{stdout}"
    );
}

/// No request on a side: exit 1, said.
#[test]
fn a_side_without_requests_fails() {
    let dir = temp_dir("empty");
    let empty = dir.join("empty.json");
    std::fs::write(&empty, "{}\n").expect("write");
    let (_d, base, _new) = records("empty-base");
    let out = compare(&[&base, &empty.display().to_string()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("new: no request found"), "{stderr}");
}

/// OTLP JSON lines for `n` requests of two stages (stage 1 `slow` times as long), one
/// run: what a collector's file exporter writes.
pub(crate) fn trace_file(path: &Path, n: u64, slow: f64, seed: u64) {
    let mut rng = crate::runs::Rng::new(seed);
    let t0: u64 = 1_700_000_000_000_000_000;
    let mut lines = Vec::new();
    let span = |trace: u128,
                id: u64,
                parent: Option<u64>,
                name: &str,
                start: u64,
                end: u64,
                attrs: &str| {
        format!(
            r#"{{"traceId":"{trace:032x}","spanId":"{id:016x}","parentSpanId":"{}","name":"{name}","startTimeUnixNano":"{start}","endTimeUnixNano":"{end}","attributes":[{attrs}]}}"#,
            parent.map(|p| format!("{p:016x}")).unwrap_or_default()
        )
    };
    let run_trace: u128 = 0xabc << 64 | seed as u128;
    let mut last_end = t0;
    for r in 0..n {
        let trace = (r as u128 + 1) << 64 | 0x5eed << 16 | seed as u128;
        let start = t0 + r * 3_000_000;
        let g0 = (rng.around(20.0) * 1e6) as u64;
        let g1 = (rng.around(30.0) * slow * 1e6) as u64;
        let end = start + g0 + g1 + 2_000_000;
        last_end = last_end.max(end);
        let link = format!(
            r#","links":[{{"traceId":"{run_trace:032x}","spanId":"{:016x}"}}]"#,
            1u64
        );
        let request = span(
            trace,
            1,
            None,
            "omni.request",
            start,
            end,
            &format!(r#"{{"key":"request_id","value":{{"stringValue":"r-{r}"}}}}"#),
        );
        let request = format!("{}{link}}}", &request[..request.len() - 1]);
        let spans = [
            request,
            span(
                trace,
                2,
                Some(1),
                "omni.stage",
                start + 1_000_000,
                start + 1_000_000 + g0,
                r#"{"key":"stage_id","value":{"intValue":"0"}},{"key":"num_tokens_in","value":{"intValue":"100"}}"#,
            ),
            span(
                trace,
                3,
                Some(1),
                "omni.stage",
                start + 1_000_000 + g0,
                start + 1_000_000 + g0 + g1,
                r#"{"key":"stage_id","value":{"intValue":"1"}}"#,
            ),
        ];
        lines.push(format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
            spans.join(",")
        ));
    }
    let run = span(
        run_trace,
        1,
        None,
        "omni.run",
        t0,
        last_end + 1_000_000,
        &format!(r#"{{"key":"run_id","value":{{"stringValue":"run-{seed}"}}}}"#),
    );
    lines.push(format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{run}]}}]}}]}}"#
    ));
    std::fs::write(path, lines.join("\n") + "\n")
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Trace files are replayed as the report command reads them; their requests carry times,
/// so the HTML page has both timelines.
#[test]
fn trace_files_are_compared_through_the_replay() {
    let dir = temp_dir("traces");
    let (base, new) = (dir.join("base.json"), dir.join("new.json"));
    trace_file(&base, 800, 1.0, 1);
    trace_file(&new, 800, 1.5, 2);
    let html = dir.join("compare.html");
    let out = compare(&[
        &base.display().to_string(),
        &new.display().to_string(),
        "--format",
        "jsonl",
        "--html",
        &html.display().to_string(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let stdout = text(&out.stdout);
    let head: serde_json::Value =
        serde_json::from_str(stdout.lines().next().unwrap_or("")).expect("JSON");
    assert_eq!(head["base"]["requests"], 800, "{stdout}");
    assert_eq!(head["base"]["runs"], 1, "{stdout}");
    assert!(
        stdout.contains(r#""measure":"stage1_gen""#) && stdout.contains(r#""verdict":"worse""#),
        "{stdout}"
    );
    let page = std::fs::read_to_string(&html).expect("the page is written");
    assert!(page.contains("id=\"timeline-0\"") && page.contains("id=\"timeline-1\""));
    assert!(!page.contains("no-times"));
}
