//! The comparison's text outputs: Markdown fit for a pull request, JSON lines with finite
//! numbers, the console table.

use crate::compare::{Compare, Comparison};

use super::finding::side;
use super::runs::Run;

fn comparison() -> Comparison {
    let base = Run::new(2_000, 61);
    let mut new = Run::new(2_000, 62);
    new.gen_time[1] = 1.2;
    new.error_every = Some(100);
    Compare::new().run(&side("base.jsonl", &base), &side("new.jsonl", &new))
}

/// A heading naming both sides, the sides' counts, the warnings as quotes, then one table:
/// a header, the alignment row, a row per measure with seven cells, real changes in bold;
/// the method in small print last.
#[test]
fn markdown_is_a_heading_warnings_and_one_table() {
    let c = comparison();
    let md = c.to_markdown();
    let lines: Vec<&str> = md.lines().collect();
    assert_eq!(
        lines[0],
        "### omni-metrics compare: `base.jsonl` → `new.jsonl`"
    );
    assert!(
        lines[2].starts_with("- base base.jsonl: 2,000 requests (2,000 ok"),
        "{md}"
    );
    assert!(
        lines[3].starts_with("- new new.jsonl: 2,000 requests (1,980 ok, 20 error"),
        "{md}"
    );
    let quotes: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("> **Warning:** "))
        .collect();
    assert_eq!(quotes.len(), c.warnings.len());
    assert!(
        quotes.iter().any(|q| q.contains("new.jsonl has 20 error")),
        "{md}"
    );
    let table: Vec<&&str> = lines.iter().filter(|l| l.starts_with('|')).collect();
    assert_eq!(
        *table[0],
        "| measure | n base/new | p50 | p90 | p99 | mean | verdict |"
    );
    assert_eq!(*table[1], "|:--|--:|--:|--:|--:|--:|:--|");
    assert_eq!(table.len(), 2 + c.rows.len());
    for row in &table[2..] {
        assert_eq!(row.matches(" | ").count(), 6, "seven cells: {row}");
        assert!(row.ends_with(" |"), "{row}");
    }
    // The largest real changes first, in bold: errors appearing (a change from 0), then
    // the slower stage.
    assert!(
        table[2].starts_with(
            "| `error_rate` (%) | 2,000/2,000 | - | - | - | **0.000 → 1.00 (+1.00 pp worse)** |"
        ),
        "{}",
        table[2]
    );
    assert!(
        table[3].starts_with("| `stage1_gen` (ms) | 2,000/1,980 | **"),
        "{}",
        table[3]
    );
    assert!(table[3].ends_with("| **worse** |"), "{}", table[3]);
    assert!(md.trim_end().ends_with("</sub>"), "{md}");
    assert!(md.contains("95% confidence for the whole table"), "{md}");
}

/// Every line is a JSON object of a known type; every number is finite; the rows are the
/// table's, in its order.
#[test]
fn jsonl_lines_are_typed_with_finite_numbers() {
    let c = comparison();
    let text = c.to_jsonl();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines[0]["type"], "compare");
    assert_eq!(lines[0]["base"]["requests"], 2_000);
    assert_eq!(lines[0]["new"]["errors"], 20);
    let warnings = lines
        .iter()
        .filter(|l| l["type"] == "compare_warning")
        .count();
    assert_eq!(warnings, c.warnings.len());
    let rows: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["type"] == "compare_row")
        .collect();
    assert_eq!(rows.len(), c.rows.len());
    for (line, row) in rows.iter().zip(&c.rows) {
        assert_eq!(line["measure"], row.measure.to_string());
        assert_eq!(line["verdict"], row.verdict.as_str());
    }
    assert_eq!(rows[0]["measure"], "error_rate");
    assert_eq!(rows[0]["stats"]["rate"]["new"], 1.0);
    let first = &rows[1]["stats"]["p50"];
    assert_eq!(rows[1]["measure"], "stage1_gen");
    assert!(first["ci_low"].as_f64().is_some_and(|v| v > 0.0), "{first}");
    assert_eq!(first["verdict"], "worse");
    fn finite(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Number(n) => n.as_f64().is_some_and(f64::is_finite),
            serde_json::Value::Array(a) => a.iter().all(finite),
            serde_json::Value::Object(o) => o.values().all(finite),
            _ => true,
        }
    }
    assert!(lines.iter().all(finite));
}

/// The console table: the sides, the warnings, one row per measure, the method.
#[test]
fn the_table_has_a_row_per_measure() {
    let c = comparison();
    let table = c.to_table();
    assert!(
        table.starts_with("omni-metrics compare\n  base  base.jsonl: 2,000 requests"),
        "{table}"
    );
    let rows = table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| measure"))
        .count();
    assert_eq!(rows, c.rows.len(), "{table}");
    assert!(table.contains("| stage1_gen "), "{table}");
    assert!(table.contains("tests, each interval at"), "{table}");
}
