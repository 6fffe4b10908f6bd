//! `omni-metrics report` end to end: engines run as real processes (this test binary run
//! again as a child) and export to a collector on loopback that writes files as the
//! Collector's file exporter does; the report command runs as a real process on them, and
//! its tables and records are compared with what the live layer printed.

#[allow(dead_code)]
#[path = "../support/chromium.rs"]
mod chromium;
mod collector;
#[path = "../support/example.rs"]
mod example;
#[cfg(target_os = "linux")]
mod hostile;
mod input;
mod live;
mod multiprocess;
mod processes;
mod scenario;
mod trace_file;
mod vllm_omni;
#[cfg(target_os = "linux")]
#[path = "../support/warnings.rs"]
mod warnings;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The scenario a child process runs (see [`child_process`]).
const CHILD: &str = "OMNI_REPORT_CHILD";

/// Not a test of its own: the entry point of the child processes. Does nothing unless
/// [`CHILD`] names a scenario.
#[test]
fn child_process() {
    match std::env::var(CHILD).as_deref() {
        Ok("live") => scenario::live(),
        Ok("frontend") => scenario::frontend(),
        Ok("worker") => scenario::worker(),
        #[cfg(target_os = "linux")]
        Ok("measure") => hostile::measure(),
        _ => {}
    }
}

/// Runs this binary as a child running `scenario`, with `env`; returns it running.
fn spawn_child(scenario: &str, env: &[(&str, &str)]) -> std::process::Child {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        "child_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, scenario)
    .env_remove("RUST_LOG")
    .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
    .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    .env_remove("OTEL_SDK_DISABLED")
    .env_remove("OTEL_TRACES_EXPORTER")
    .env_remove("OMNI_METRICS_JSONL")
    .env_remove("OMNI_METRICS_TRACE_FILE")
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("the child starts")
}

/// Waits for a child and checks that it succeeded.
#[track_caller]
fn finish_child(child: std::process::Child) {
    let out = child.wait_with_output().expect("the child runs");
    assert!(
        out.status.success(),
        "child failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh directory for one test's files.
fn test_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("omni-report-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// `omni-metrics report ARGS...`, as a real process.
fn report<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_omni-metrics"))
        .arg("report")
        .args(args)
        .env_remove("OMNI_METRICS_JSONL")
        .output()
        .expect("omni-metrics runs")
}

/// The report's standard output and error, checking that it succeeded.
#[track_caller]
fn report_ok<I, S>(args: I) -> (String, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = report(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "report failed ({}):\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// JSON-lines records.
#[track_caller]
fn records(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[track_caller]
fn records_in(path: &Path) -> Vec<Value> {
    records(&std::fs::read_to_string(path).expect("records file"))
}

/// The request records, by `request_id`.
fn requests(records: &[Value]) -> std::collections::BTreeMap<String, Value> {
    records
        .iter()
        .filter(|r| r["type"] == "request")
        .map(|r| {
            (
                r["request_id"].as_str().unwrap_or_default().to_owned(),
                r.clone(),
            )
        })
        .collect()
}

/// The summary records, by `scope`.
fn summaries(records: &[Value]) -> std::collections::BTreeMap<String, Value> {
    records
        .iter()
        .filter(|r| r["type"] == "summary")
        .map(|r| {
            (
                r["scope"].as_str().unwrap_or_default().to_owned(),
                r.clone(),
            )
        })
        .collect()
}

/// Compares a record of the report with the live one: the same keys, counts and text equal,
/// times (`*_ms`) within 1 ms, other fractional numbers (rates, RTFs) within 1%. Differences
/// go to `diffs`; the largest time difference is kept in `max_ms`.
/// Compares two records field by field; times may differ by `tol_ms`.
fn compare(
    path: &str,
    live: &Value,
    report: &Value,
    tol_ms: f64,
    max_ms: &mut f64,
    diffs: &mut Vec<String>,
) {
    // The field's name: the last segment of the path, without array indexes.
    let mut key = path.rsplit('.').next().unwrap_or(path);
    while let Some(i) = key.rfind('[').filter(|_| key.ends_with(']')) {
        key = &key[..i];
    }
    let time = key.ends_with("_ms");
    match (live, report) {
        (Value::Number(a), Value::Number(b)) => {
            if let (Some(a), Some(b)) = (a.as_u64(), b.as_u64()) {
                if a != b && !time {
                    diffs.push(format!("{path}: live {a}, report {b}"));
                    return;
                }
            }
            let (a, b) = (
                a.as_f64().unwrap_or(f64::NAN),
                b.as_f64().unwrap_or(f64::NAN),
            );
            if time {
                let d = (a - b).abs();
                *max_ms = max_ms.max(d);
                if d.is_nan() || d > tol_ms {
                    diffs.push(format!("{path}: live {a} ms, report {b} ms"));
                }
            } else if (a - b).abs() > 0.01 * a.abs().max(b.abs()) + 1e-9 {
                diffs.push(format!("{path}: live {a}, report {b}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                diffs.push(format!(
                    "{path}: live {} items, report {}",
                    a.len(),
                    b.len()
                ));
                return;
            }
            for (i, (a, b)) in a.iter().zip(b).enumerate() {
                compare(&format!("{path}[{i}]"), a, b, tol_ms, max_ms, diffs);
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            let (ka, kb): (Vec<_>, Vec<_>) = (a.keys().collect(), b.keys().collect());
            if ka != kb {
                diffs.push(format!("{path}: live keys {ka:?}, report keys {kb:?}"));
            }
            for (k, v) in a {
                if let Some(w) = b.get(k) {
                    compare(&format!("{path}.{k}"), v, w, tol_ms, max_ms, diffs);
                }
            }
        }
        (a, b) => {
            if a != b {
                diffs.push(format!("{path}: live {a}, report {b}"));
            }
        }
    }
}

/// Asserts that the report's records equal the live ones (as [`compare`] says); returns the
/// largest time difference.
#[track_caller]
/// The live records and the report's agree, times within 1 ms; returns the largest time
/// difference.
fn assert_same_records(live: &[Value], report: &[Value]) -> f64 {
    assert_same_records_within(live, report, 1.0)
}

/// [`assert_same_records`] with times within `tol_ms`.
fn assert_same_records_within(live: &[Value], report: &[Value], tol_ms: f64) -> f64 {
    let mut diffs = Vec::new();
    let mut max_ms: f64 = 0.0;
    let (lr, rr) = (requests(live), requests(report));
    let (ls, rs) = (summaries(live), summaries(report));
    assert_eq!(
        lr.keys().collect::<Vec<_>>(),
        rr.keys().collect::<Vec<_>>(),
        "the same requests"
    );
    assert_eq!(
        ls.keys().collect::<Vec<_>>(),
        rs.keys().collect::<Vec<_>>(),
        "the same scopes"
    );
    for (id, l) in &lr {
        compare(
            &format!("request {id}"),
            l,
            &rr[id],
            tol_ms,
            &mut max_ms,
            &mut diffs,
        );
    }
    for (scope, l) in &ls {
        compare(
            &format!("summary {scope}"),
            l,
            &rs[scope],
            tol_ms,
            &mut max_ms,
            &mut diffs,
        );
    }
    assert!(
        diffs.is_empty(),
        "report differs from live:\n{}",
        diffs.join("\n")
    );
    max_ms
}

/// One span in OTLP JSON, as the Collector writes it (times in ms from an origin of 1 s).
#[allow(clippy::too_many_arguments)]
fn span_json(
    trace: &str,
    id: u64,
    parent: Option<u64>,
    name: &str,
    start_ms: f64,
    end_ms: f64,
    attributes: &[(&str, Value)],
    events: &[(&str, f64, Option<u64>)],
) -> Value {
    let ns = |ms: f64| (1_000_000_000_u64 + (ms * 1e6).round() as u64).to_string();
    let attr = |(k, v): &(&str, Value)| {
        let value = match v {
            Value::String(s) => serde_json::json!({ "stringValue": s }),
            Value::Number(n) if n.is_f64() => serde_json::json!({ "doubleValue": n }),
            Value::Number(n) => serde_json::json!({ "intValue": n.to_string() }),
            other => serde_json::json!({ "boolValue": other.as_bool() }),
        };
        serde_json::json!({ "key": k, "value": value })
    };
    serde_json::json!({
        "traceId": trace,
        "spanId": format!("{id:016x}"),
        "parentSpanId": parent.map(|p| format!("{p:016x}")).unwrap_or_default(),
        "name": name,
        "kind": 1,
        "startTimeUnixNano": ns(start_ms),
        "endTimeUnixNano": ns(end_ms),
        "attributes": attributes.iter().map(attr).collect::<Vec<_>>(),
        "events": events.iter().map(|(name, at, units)| serde_json::json!({
            "timeUnixNano": ns(*at),
            "name": name,
            "attributes": units.map(|u| vec![serde_json::json!({"key": "units", "value": {"intValue": u.to_string()}})]).unwrap_or_default(),
        })).collect::<Vec<_>>(),
        "status": {}
    })
}

/// One line of a file exporter's output holding `spans`.
fn line_of(service: &str, spans: Vec<Value>) -> String {
    serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "other-sdk"}, "spans": spans}]
    }]})
    .to_string()
}
