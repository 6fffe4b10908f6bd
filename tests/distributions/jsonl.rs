//! The summary record's `distributions` key: added after the existing keys, for two or
//! more requests; an online request's record is unchanged.

use omni_metrics::instrument::Run;
use omni_metrics::report::Record;
use serde_json::{Value, json};

use crate::console::small_run;
use crate::support::{Harness, Shape};

/// The summary records of the JSON lines written, each with its raw line.
fn summary_lines(h: &Harness) -> Vec<(String, Value)> {
    h.jsonl()
        .lines()
        .map(|l| {
            (
                l.to_owned(),
                serde_json::from_str::<Value>(l).expect("one JSON object"),
            )
        })
        .filter(|(_, v)| v["type"] == "summary")
        .collect()
}

/// The keys every summary record had before, in order.
const SEED_KEYS: [&str; 10] = [
    "type",
    "scope",
    "e2e_requests",
    "e2e_wall_time_ms",
    "e2e_total_tokens",
    "e2e_avg_time_per_request_ms",
    "e2e_avg_tokens_per_s",
    "e2e_requests_error",
    "e2e_requests_aborted",
    "invalid_spans",
];

#[test]
fn issue9_2_the_summary_record_has_a_distributions_object() {
    let h = Harness::with_sinks();
    small_run(&h);
    let lines = summary_lines(&h);
    assert_eq!(lines.len(), 1);
    let (line, record) = &lines[0];
    let d = &record["distributions"];
    let stats = |count, [mean, p50, p90, p99, max]: [f64; 5]| json!({"count": count, "mean_ms": mean, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": max});
    let want = json!({
        "e2e_total_ms": stats(4, [1.375, 1.1, 2.0, 2.0, 2.0]),
        "stage_0_gen_time_ms": stats(4, [0.55, 0.5, 0.7, 0.7, 0.7]),
        "stage_0_queue_time_ms": stats(4, [0.175, 0.1, 0.3, 0.3, 0.3]),
        "stage_1_gen_time_ms": stats(4, [0.512, 0.4, 0.8, 0.8, 0.8]),
        // Zero in every request: left out of the table, kept in the record.
        "stage_1_queue_time_ms": stats(4, [0.0; 5]),
        "transfer_0->1_time_ms": stats(4, [0.138, 0.1, 0.2, 0.2, 0.2]),
    });
    assert_eq!(d, &want, "{line}");

    // Existing keys unchanged and in their order; `distributions` comes last.
    let at = |key: &str| line.find(&format!("\"{key}\":"));
    let mut last = 0;
    for key in SEED_KEYS {
        let pos = at(key).unwrap_or_else(|| panic!("{key} is missing: {line}"));
        assert!(pos >= last, "{key} moved: {line}");
        last = pos;
    }
    assert!(at("distributions") > Some(last), "{line}");
    assert!(line.ends_with("}}}"), "{line}");
    // The captured record serializes the same way.
    let captured = h
        .capture()
        .summaries()
        .pop()
        .map(|s| Record::Summary(s).to_json_line());
    assert_eq!(captured.as_deref(), Some(line.as_str()));
}

#[test]
fn issue9_2_online_and_single_request_records_are_unchanged() {
    let h = Harness::with_sinks();
    h.run(|| {
        h.play(None, "online", &Shape::ok(10, 2_000, [5, 1, 7], 900));
        let run = Run::with_id("run-1");
        h.play(Some(&run), "only", &Shape::ok(10, 2_000, [5, 1, 7], 900));
    });
    let lines = summary_lines(&h);
    assert_eq!(lines.len(), 2);
    for (line, record) in &lines {
        assert!(record.get("distributions").is_none(), "{line}");
        let keys: Vec<&str> = record
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        for key in &keys {
            assert!(
                SEED_KEYS.contains(key) || key.starts_with("e2e_stage_"),
                "{key} is new: {line}"
            );
        }
    }
}
