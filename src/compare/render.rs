//! The comparison as text: a table for the console, JSON lines, Markdown for a pull request.

use std::fmt::Write as _;

use comfy_table::presets::ASCII_MARKDOWN;
use comfy_table::{CellAlignment, ContentArrangement, Table};
use serde_json::{Map, Value, json};

use super::{Comparison, Measure, Row, SideCounts, Stat, StatChange, Verdict};
use crate::report::table::{format_int, printable};

/// The statistic columns, in order.
const COLUMNS: [Stat; 4] = [Stat::P50, Stat::P90, Stat::P99, Stat::Mean];

/// A value with the decimals its size deserves (3 below 1, 2 below 100, 1 above) and
/// thousands separators.
pub(crate) fn number(v: f64) -> String {
    let v = crate::stats::finite(v);
    let a = v.abs();
    let decimals = if a >= 100.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        3
    };
    let text = format!("{a:.decimals$}");
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let int: u64 = int.parse().unwrap_or(0);
    let sign = if v < 0.0 && text.bytes().any(|b| matches!(b, b'1'..=b'9')) {
        "-"
    } else {
        ""
    };
    format!("{sign}{}.{frac}", format_int(int))
}

/// The change of a statistic: `+20.0%`, or `+0.50 pp` for a rate, `from 0` when the base is 0.
pub(crate) fn change(measure: Measure, s: &StatChange) -> String {
    if s.stat == Stat::Rate {
        return format!("{:+.2} pp", crate::stats::finite(s.difference()));
    }
    match s.change_pct {
        Some(p) => format!("{p:+.1}%"),
        None if s.base == 0.0 && s.new != 0.0 => "from 0".to_owned(),
        None => {
            let _ = measure;
            "n/a".to_owned()
        }
    }
}

/// `base → new (change verdict)`.
fn cell(measure: Measure, s: &StatChange, arrow: &str) -> String {
    let mark = match s.verdict {
        Verdict::Better => " better",
        Verdict::Worse => " worse",
        Verdict::NotTested => " untested",
        _ => "",
    };
    format!(
        "{} {arrow} {} ({}{mark})",
        number(s.base),
        number(s.new),
        change(measure, s)
    )
}

fn counts(s: &SideCounts) -> String {
    format!(
        "{}: {} requests ({} ok, {} error, {} aborted), {} run{}",
        printable(&s.label, false),
        format_int(s.requests),
        format_int(s.ok),
        format_int(s.errors),
        format_int(s.aborted),
        format_int(s.runs),
        if s.runs == 1 { "" } else { "s" }
    )
}

/// How the intervals were made, one paragraph.
pub(crate) fn method(c: &Comparison) -> String {
    format!(
        "{:.0}% confidence for the whole table: {} tests, each interval at {:.4}% (Bonferroni). \
         p50/p90/p99 by nearest rank, their errors from order statistics; means by Welch; \
         rates by Newcombe's score interval. A verdict is better or worse only when the \
         interval of the difference excludes 0.",
        c.confidence * 100.0,
        c.tests,
        c.per_test_confidence() * 100.0
    )
}

fn stat_cells(row: &Row, arrow: &str) -> Vec<String> {
    COLUMNS
        .iter()
        .map(|col| {
            let s = match row.stat(*col) {
                Some(s) => Some(s),
                // A rate sits in the mean's column.
                None if *col == Stat::Mean => row.stat(Stat::Rate),
                None => None,
            };
            s.map_or_else(|| "-".to_owned(), |s| cell(row.measure, s, arrow))
        })
        .collect()
}

impl Comparison {
    /// The comparison as console text: the two sides, the warnings, a table with a row per
    /// measure (`base → new (change verdict)` per statistic), and how the intervals were made.
    pub(crate) fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "omni-metrics compare");
        let _ = writeln!(out, "  base  {}", counts(&self.base));
        let _ = writeln!(out, "  new   {}", counts(&self.new));
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {}", w.message);
        }
        let mut table = Table::new();
        table
            .load_preset(ASCII_MARKDOWN)
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header([
                "measure",
                "unit",
                "n base/new",
                "p50",
                "p90",
                "p99",
                "mean",
                "verdict",
            ]);
        for row in &self.rows {
            let mut cells = vec![
                row.measure.to_string(),
                row.measure.unit().to_owned(),
                format!("{}/{}", format_int(row.base_n), format_int(row.new_n)),
            ];
            cells.extend(stat_cells(row, "->"));
            cells.push(row.verdict.as_str().to_owned());
            table.add_row(cells);
        }
        for i in 2..7 {
            if let Some(column) = table.column_mut(i) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        let _ = writeln!(out, "{table}");
        let _ = writeln!(out, "{}", method(self));
        out
    }

    /// The comparison as Markdown to paste into a pull request: a heading with the sides,
    /// the warnings as a quote, the table (real changes in bold), and the method in small
    /// print.
    pub(crate) fn to_markdown(&self) -> String {
        let md = |s: &str| printable(s, true).replace('`', "'");
        let mut out = String::new();
        let _ = writeln!(
            out,
            "### omni-metrics compare: `{}` → `{}`\n",
            md(&self.base.label),
            md(&self.new.label)
        );
        let _ = writeln!(out, "- base {}", md(&counts(&self.base)));
        let _ = writeln!(out, "- new {}\n", md(&counts(&self.new)));
        if !self.warnings.is_empty() {
            for w in &self.warnings {
                let _ = writeln!(out, "> **Warning:** {}  ", md(&w.message));
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "| measure | n base/new | p50 | p90 | p99 | mean | verdict |"
        );
        let _ = writeln!(out, "|:--|--:|--:|--:|--:|--:|:--|");
        for row in &self.rows {
            let cells: Vec<String> = stat_cells(row, "→")
                .into_iter()
                .map(|c| {
                    if c.ends_with(" better)") || c.ends_with(" worse)") {
                        format!("**{c}**")
                    } else {
                        c
                    }
                })
                .collect();
            let verdict = if row.verdict.is_change() {
                format!("**{}**", row.verdict.as_str())
            } else {
                row.verdict.as_str().to_owned()
            };
            let _ = writeln!(
                out,
                "| `{}` ({}) | {}/{} | {} | {verdict} |",
                row.measure,
                row.measure.unit(),
                format_int(row.base_n),
                format_int(row.new_n),
                cells.join(" | ")
            );
        }
        let _ = writeln!(out, "\n<sub>{}</sub>", method(self));
        out
    }

    /// The comparison as JSON lines: a `compare` line (the sides, the confidence, the
    /// tests), a `compare_warning` line per warning, a `compare_row` line per row, in the
    /// table's order. Every number is finite; a value that does not exist is `null`.
    pub(crate) fn to_jsonl(&self) -> String {
        let side = |s: &SideCounts| {
            json!({
                "label": s.label, "requests": s.requests, "ok": s.ok,
                "errors": s.errors, "aborted": s.aborted, "runs": s.runs,
            })
        };
        let mut lines = vec![json!({
            "type": "compare",
            "base": side(&self.base),
            "new": side(&self.new),
            "confidence": self.confidence,
            "tests": self.tests,
            "per_test_confidence": self.per_test_confidence(),
        })];
        for w in &self.warnings {
            lines.push(
                json!({"type": "compare_warning", "kind": w.kind.as_str(), "message": w.message}),
            );
        }
        for row in &self.rows {
            let mut stats = Map::new();
            for s in &row.stats {
                let (lo, hi) = s.interval.map_or((None, None), |(l, h)| (Some(l), Some(h)));
                stats.insert(
                    s.stat.as_str().to_owned(),
                    json!({
                        "base": s.base, "new": s.new,
                        "difference": crate::stats::finite(s.difference()),
                        "change_pct": s.change_pct,
                        "ci_low": lo, "ci_high": hi,
                        "verdict": s.verdict.as_str(),
                    }),
                );
            }
            lines.push(json!({
                "type": "compare_row",
                "measure": row.measure.to_string(),
                "field": row.measure.field(),
                "unit": row.measure.unit(),
                "higher_is_better": row.measure.higher_is_better(),
                "base_n": row.base_n,
                "new_n": row.new_n,
                "verdict": row.verdict.as_str(),
                "stats": Value::Object(stats),
            }));
        }
        let mut out = String::new();
        for line in lines {
            out.push_str(&line.to_string());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_take_the_decimals_their_size_deserves() {
        assert_eq!(number(41_299.19), "41,299.2");
        assert_eq!(number(12.345), "12.35");
        assert_eq!(number(0.12345), "0.123");
        assert_eq!(number(-0.0001), "0.000");
        assert_eq!(number(-1234.56), "-1,234.6");
        assert_eq!(number(f64::NAN), "0.000");
    }
}
