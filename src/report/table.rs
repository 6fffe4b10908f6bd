//! The console tables, laid out as vLLM-Omni prints them.
//!
//! `Overall Summary` and `RequestE2EStats` are Field | Value tables; `StageRequestStats`
//! has one column per stage id and `TransferEdgeStats` one per edge. Integers get thousands
//! separators (`5,202`), floats three decimals (`41,299.190`); labels are left-aligned and
//! numbers right-aligned. A stage or edge row that is zero or empty in every column is left
//! out, so an LLM-only pipeline shows no image rows.

use comfy_table::presets::ASCII_MARKDOWN;
use comfy_table::{CellAlignment, ContentArrangement, Table};

use crate::stats::{OverallSummary, RequestE2EStats, StageRequestStats, TransferEdgeStats};

/// An integer with thousands separators: `5202` -> `5,202`.
///
/// ```
/// assert_eq!(omni_metrics::report::table::format_int(5202), "5,202");
/// assert_eq!(omni_metrics::report::table::format_int(0), "0");
/// ```
pub fn format_int(v: u64) -> String {
    group(&v.to_string())
}

/// A float with three decimals and thousands separators: `41299.19` -> `41,299.190`.
///
/// ```
/// assert_eq!(omni_metrics::report::table::format_float(41299.19), "41,299.190");
/// assert_eq!(omni_metrics::report::table::format_float(0.4906), "0.491");
/// ```
pub fn format_float(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let text = format!("{v:.3}");
    let (sign, digits) = match text.strip_prefix('-') {
        // A value that rounds to zero prints as 0.000, never -0.000.
        Some(rest) if rest.bytes().any(|b| matches!(b, b'1'..=b'9')) => ("-", rest),
        Some(rest) => ("", rest),
        None => ("", text.as_str()),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, "000"));
    format!("{sign}{}.{frac}", group(int))
}

fn group(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A row of a per-column table: its label and how to read its cell from one column.
type Row<T> = (&'static str, fn(&T) -> Cell);

/// A cell: its text and whether it counts as "zero or empty" for row elision.
struct Cell {
    text: String,
    blank: bool,
}

fn int(v: u64) -> Cell {
    Cell {
        text: format_int(v),
        blank: v == 0,
    }
}

fn float(v: f64) -> Cell {
    Cell {
        text: format_float(v),
        blank: v == 0.0,
    }
}

fn opt_int(v: Option<u64>) -> Cell {
    v.map_or(
        Cell {
            text: String::new(),
            blank: true,
        },
        int,
    )
}

fn text(v: Option<&str>) -> Cell {
    Cell {
        text: v.unwrap_or_default().to_owned(),
        blank: v.is_none_or(str::is_empty),
    }
}

fn new_table(header: Vec<String>) -> Table {
    let mut table = Table::new();
    let columns = header.len();
    table
        .load_preset(ASCII_MARKDOWN)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header);
    for i in 1..columns {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}

/// Adds `label | cells...` unless every cell is blank (when `elide` is set).
fn push_row(table: &mut Table, label: &str, cells: Vec<Cell>, elide: bool) {
    if elide && cells.iter().all(|c| c.blank) {
        return;
    }
    let mut row = vec![label.to_owned()];
    row.extend(cells.into_iter().map(|c| c.text));
    table.add_row(row);
}

/// The `Overall Summary` table.
///
/// The seed's rows always; `e2e_requests_error`, `e2e_requests_aborted` and `invalid_spans`
/// only when not zero.
pub fn summary_table(s: &OverallSummary) -> String {
    let mut t = new_table(vec!["Field".into(), "Value".into()]);
    push_row(&mut t, "e2e_requests", vec![int(s.e2e_requests)], false);
    push_row(
        &mut t,
        "e2e_wall_time_ms",
        vec![float(s.e2e_wall_time_ms)],
        false,
    );
    push_row(
        &mut t,
        "e2e_total_tokens",
        vec![int(s.e2e_total_tokens)],
        false,
    );
    push_row(
        &mut t,
        "e2e_avg_time_per_request_ms",
        vec![float(s.e2e_avg_time_per_request_ms)],
        false,
    );
    push_row(
        &mut t,
        "e2e_avg_tokens_per_s",
        vec![float(s.e2e_avg_tokens_per_s)],
        false,
    );
    for (id, ms) in &s.stage_wall_time_ms {
        push_row(
            &mut t,
            &format!("e2e_stage_{id}_wall_time_ms"),
            vec![float(*ms)],
            false,
        );
    }
    push_row(
        &mut t,
        "e2e_requests_error",
        vec![int(s.e2e_requests_error)],
        true,
    );
    push_row(
        &mut t,
        "e2e_requests_aborted",
        vec![int(s.e2e_requests_aborted)],
        true,
    );
    push_row(&mut t, "invalid_spans", vec![int(s.invalid_spans)], true);
    t.to_string()
}

/// The `RequestE2EStats` table (`invalid_spans` only when not zero).
pub fn request_table(r: &RequestE2EStats) -> String {
    let mut t = new_table(vec!["Field".into(), "Value".into()]);
    push_row(&mut t, "e2e_total_ms", vec![float(r.e2e_total_ms)], false);
    push_row(
        &mut t,
        "e2e_total_tokens",
        vec![int(r.e2e_total_tokens)],
        false,
    );
    push_row(
        &mut t,
        "transfers_total_time_ms",
        vec![float(r.transfers_total_time_ms)],
        false,
    );
    push_row(
        &mut t,
        "transfers_total_kbytes",
        vec![float(r.transfers_total_kbytes)],
        false,
    );
    push_row(&mut t, "invalid_spans", vec![int(r.invalid_spans)], true);
    t.to_string()
}

/// The `StageRequestStats` table: one column per stage id, the seed's rows in its
/// (alphabetical) order, then `queue_time_ms`.
pub fn stage_table(stages: &[StageRequestStats]) -> String {
    let mut header = vec!["Field".to_owned()];
    header.extend(stages.iter().map(|s| s.stage_id.to_string()));
    let mut t = new_table(header);
    let rows: [Row<StageRequestStats>; 10] = [
        ("audio_generated_frames", |s| int(s.audio_generated_frames)),
        ("batch_id", |s| int(s.batch_id)),
        ("batch_size", |s| int(s.batch_size)),
        ("image_num", |s| opt_int(s.image_num)),
        ("num_tokens_in", |s| int(s.num_tokens_in)),
        ("num_tokens_out", |s| int(s.num_tokens_out)),
        ("postprocess_time_ms", |s| float(s.postprocess_time_ms)),
        ("resolution", |s| text(s.resolution.as_deref())),
        ("stage_gen_time_ms", |s| float(s.stage_gen_time_ms)),
        ("queue_time_ms", |s| float(s.queue_time_ms)),
    ];
    for (label, cell) in rows {
        push_row(&mut t, label, stages.iter().map(cell).collect(), true);
    }
    t.to_string()
}

/// The `TransferEdgeStats` table: one column per edge `from->to`.
pub fn transfer_table(edges: &[TransferEdgeStats]) -> String {
    let mut header = vec!["Field".to_owned()];
    header.extend(edges.iter().map(|e| e.edge.to_string()));
    let mut t = new_table(header);
    let rows: [Row<TransferEdgeStats>; 4] = [
        ("size_kbytes", |e| float(e.size_kbytes)),
        ("tx_time_ms", |e| float(e.tx_time_ms)),
        ("rx_decode_time_ms", |e| float(e.rx_decode_time_ms)),
        ("in_flight_time_ms", |e| float(e.in_flight_time_ms)),
    ];
    for (label, cell) in rows {
        push_row(&mut t, label, edges.iter().map(cell).collect(), true);
    }
    t.to_string()
}

/// The summary with its title, as the console prints it.
pub fn render_summary(s: &OverallSummary) -> String {
    format!(
        "Overall Summary (scope {})\n{}\n",
        s.scope,
        summary_table(s)
    )
}

/// A request's three tables with their titles, as the console prints them. Stage and
/// transfer tables are left out when the request has no stage or no transfer.
pub fn render_request(r: &RequestE2EStats) -> String {
    let mut out = format!(
        "RequestE2EStats (request {}, status {}, scope {})\n{}\n",
        r.request_id,
        r.status.as_str(),
        r.scope,
        request_table(r)
    );
    if !r.stages.is_empty() {
        out.push_str(&format!("StageRequestStats\n{}\n", stage_table(&r.stages)));
    }
    if !r.transfers.is_empty() {
        out.push_str(&format!(
            "TransferEdgeStats\n{}\n",
            transfer_table(&r.transfers)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_round_half_away_and_group() {
        assert_eq!(format_float(1234567.0), "1,234,567.000");
        assert_eq!(format_float(999.9996), "1,000.000");
        assert_eq!(format_float(-1234.5), "-1,234.500");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(-0.0), "0.000");
        assert_eq!(format_float(-0.0004), "0.000");
    }

    #[test]
    fn all_zero_rows_are_left_out() {
        let stage = StageRequestStats {
            stage_id: 0,
            num_tokens_in: 10,
            ..Default::default()
        };
        let table = stage_table(&[stage]);
        assert!(table.contains("num_tokens_in"));
        assert!(!table.contains("image_num"), "{table}");
        assert!(!table.contains("resolution"), "{table}");
    }
}
