//! The console tables, laid out as vLLM-Omni prints them; `Display` of
//! [`OverallSummary`] and [`RequestE2EStats`] renders them.
//!
//! `Overall Summary` and `RequestE2EStats` are Field | Value tables; `StageRequestStats`
//! has one column per stage id and `TransferEdgeStats` one per edge; `Distributions`
//! (after a summary of two or more requests) has one row per quantity and a column per
//! statistic. Integers get thousands separators (`5,202`), floats three decimals
//! (`41,299.190`); labels are left-aligned and numbers right-aligned. A stage, edge or
//! distribution row that is zero or empty in every column is left out, so an LLM-only
//! pipeline shows no image rows.
//!
//! Text from the engine (request ids, scopes, stage names, resolutions) is printed safely:
//! control characters become visible escapes (`\n`, `\x1b`, `\u{9b}`), so a request id
//! cannot forge a table row or send a terminal escape sequence, and every cell and title is
//! cut at [`MAX_CELL_CHARS`] characters, so a huge value renders in microseconds.

use std::borrow::Cow;
use std::fmt::Write as _;

use comfy_table::presets::ASCII_MARKDOWN;
use comfy_table::{CellAlignment, ContentArrangement, Table};

use crate::stats::{Distributions, LatencyStats, Quantity};
use crate::stats::{OverallSummary, RequestE2EStats, StageRequestStats, TransferEdgeStats, keys};

/// The longest text a table cell or a title shows, in characters (escapes included).
///
/// Longer text is cut there and ends with `…` and its full length in bytes, e.g.
/// `xxxx… (4,194,304 bytes)`: a 10 MiB `resolution` renders as fast as a short one.
pub(crate) const MAX_CELL_CHARS: usize = 256;

/// Whether `c` may not reach a terminal as is: C0 controls (newline included), DEL, C1
/// controls (`U+0080..=U+009F`, e.g. the 8-bit CSI `U+009B`), and the Unicode marks that
/// reorder or hide text (bidirectional overrides and isolates, line/paragraph separators).
fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `text` as it may be printed: escaped (see [`must_escape`]; in cells `|` too, so no
/// column can be forged) and cut at [`MAX_CELL_CHARS`]. Borrows when nothing changes.
///
/// Runs in time proportional to the cap, not to the text.
pub(crate) fn printable(text: &str, in_cell: bool) -> Cow<'_, str> {
    let clean = |c: char| !(must_escape(c) || (in_cell && c == '|'));
    if text.len() <= MAX_CELL_CHARS && text.chars().all(clean) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(MAX_CELL_CHARS + 32);
    let mut shown = 0;
    for (i, c) in text.char_indices() {
        let start = out.len();
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '|' if in_cell => out.push_str("\\|"),
            c if must_escape(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if must_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
        // Escapes are ASCII, so bytes written = characters shown for them.
        shown += if clean(c) { 1 } else { out.len() - start };
        if shown > MAX_CELL_CHARS || (shown == MAX_CELL_CHARS && i + c.len_utf8() < text.len()) {
            out.truncate(start);
            let _ = write!(out, "… ({} bytes)", format_int(text.len() as u64));
            return Cow::Owned(out);
        }
    }
    Cow::Owned(out)
}

/// An integer with thousands
/// An integer with thousands separators: `5202` -> `5,202`.
pub(crate) fn format_int(v: u64) -> String {
    group(&v.to_string())
}

/// A float with three decimals and thousands separators: `41299.19` -> `41,299.190`.
pub(crate) fn format_float(v: f64) -> String {
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

/// An id given (0 included: replica 0 is a replica), or blank.
fn opt_id(v: Option<u64>) -> Cell {
    Cell {
        text: v.map(format_int).unwrap_or_default(),
        blank: v.is_none(),
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

/// A measured value: shown when present, 0 included (a first output at once is a value).
fn opt_float(v: Option<f64>) -> Cell {
    match v {
        Some(v) => Cell {
            text: format_float(v),
            blank: false,
        },
        None => Cell {
            text: String::new(),
            blank: true,
        },
    }
}

fn text(v: Option<&str>) -> Cell {
    Cell {
        text: printable(v.unwrap_or_default(), true).into_owned(),
        blank: v.is_none_or(str::is_empty),
    }
}

/// `batch_id`: blank where the stage recorded none (0 is a batch, absent is not).
fn batch(s: &StageRequestStats) -> Cell {
    if s.batch_recorded || s.batch_id != 0 {
        Cell {
            text: format_int(s.batch_id),
            blank: false,
        }
    } else {
        Cell {
            text: String::new(),
            blank: true,
        }
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

/// The `Overall Summary` rows beyond the seed's and before the error counts, each present
/// only when it has something to say (audio continuity, images): `(label, value)`, as the
/// console and the HTML report show them.
pub(crate) fn summary_extra_rows(s: &OverallSummary) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    if s.audio_streams > 0 {
        rows.push((keys::AUDIO_STREAMS.to_owned(), format_int(s.audio_streams)));
        for (threshold_ms, ok) in &s.audio_continuity_ok {
            rows.push((keys::audio_continuity_ok(*threshold_ms), format_int(*ok)));
        }
    }
    if s.audio_skipped_requests > 0 {
        rows.push((
            keys::AUDIO_SKIPPED_REQUESTS.to_owned(),
            format_int(s.audio_skipped_requests),
        ));
    }
    if s.e2e_images > 0 {
        rows.push((keys::E2E_IMAGES.to_owned(), format_int(s.e2e_images)));
        rows.push((
            keys::E2E_IMAGES_PER_S.to_owned(),
            format_float(s.e2e_images_per_s),
        ));
        rows.push((
            keys::E2E_MEGAPIXELS_PER_S.to_owned(),
            format_float(s.e2e_megapixels_per_s),
        ));
    }
    rows
}

/// The `Overall Summary` table.
///
/// vLLM-Omni's rows always; `e2e_requests_error`, `e2e_requests_aborted` and `invalid_spans`
/// only when not zero.
fn summary_table(s: &OverallSummary) -> String {
    let online = is_online(s);
    // An online aggregate's wall time runs from its start, idle time included: its
    // averages over it are no latency, and say so.
    let label = |key: &'static str, what: &str| -> std::borrow::Cow<'static, str> {
        if online {
            format!("{key} ({what})").into()
        } else {
            key.into()
        }
    };
    let mut t = new_table(vec!["Field".into(), "Value".into()]);
    push_row(&mut t, keys::E2E_REQUESTS, vec![int(s.e2e_requests)], false);
    push_row(
        &mut t,
        &label(keys::E2E_WALL_TIME_MS, "wall clock, idle time included"),
        vec![float(s.e2e_wall_time_ms)],
        false,
    );
    if s.knows(keys::E2E_TOTAL_TOKENS) {
        push_row(
            &mut t,
            keys::E2E_TOTAL_TOKENS,
            vec![int(s.e2e_total_tokens)],
            false,
        );
    }
    push_row(
        &mut t,
        &label(
            keys::E2E_AVG_TIME_PER_REQUEST_MS,
            "wall time / requests, not latency",
        ),
        vec![float(s.e2e_avg_time_per_request_ms)],
        false,
    );
    if s.knows(keys::E2E_AVG_TOKENS_PER_S) {
        push_row(
            &mut t,
            &label(keys::E2E_AVG_TOKENS_PER_S, "tokens / wall time"),
            vec![float(s.e2e_avg_tokens_per_s)],
            false,
        );
    }
    for (id, ms) in &s.stage_wall_time_ms {
        push_row(
            &mut t,
            &keys::e2e_stage_wall_time_ms(*id),
            vec![float(*ms)],
            false,
        );
    }
    for (label, value) in summary_extra_rows(s) {
        push_row(
            &mut t,
            &label,
            vec![Cell {
                text: value,
                blank: false,
            }],
            false,
        );
    }
    push_row(
        &mut t,
        keys::E2E_REQUESTS_ERROR,
        vec![int(s.e2e_requests_error)],
        true,
    );
    push_row(
        &mut t,
        keys::E2E_REQUESTS_ABORTED,
        vec![int(s.e2e_requests_aborted)],
        true,
    );
    push_row(
        &mut t,
        keys::INVALID_SPANS,
        vec![int(s.invalid_spans)],
        true,
    );
    t.to_string()
}

/// The `RequestE2EStats` table; `invalid_spans` only when not zero, the output-event and
/// audio rows (`time_to_first_output_ms`, `time_to_first_audio_ms`, `audio_duration_ms`,
/// `audio_e2e_rtf`) only when measured.
fn request_table(r: &RequestE2EStats) -> String {
    let mut t = new_table(vec!["Field".into(), "Value".into()]);
    push_row(
        &mut t,
        keys::E2E_TOTAL_MS,
        vec![float(r.e2e_total_ms)],
        false,
    );
    let always: [(&str, Cell); 3] = [
        (keys::E2E_TOTAL_TOKENS, int(r.e2e_total_tokens)),
        (
            keys::TRANSFERS_TOTAL_TIME_MS,
            float(r.transfers_total_time_ms),
        ),
        (
            keys::TRANSFERS_TOTAL_KBYTES,
            float(r.transfers_total_kbytes),
        ),
    ];
    for (label, cell) in always {
        // A record of another trace source leaves out what it cannot know.
        if r.knows(label) {
            push_row(&mut t, label, vec![cell], false);
        }
    }
    let measured: [(&str, Option<f64>); 4] = [
        (keys::TIME_TO_FIRST_OUTPUT_MS, r.time_to_first_output_ms),
        (keys::TIME_TO_FIRST_AUDIO_MS, r.time_to_first_audio_ms),
        (keys::AUDIO_DURATION_MS, r.audio_duration_ms),
        (keys::AUDIO_E2E_RTF, r.audio_e2e_rtf),
    ];
    for (label, value) in measured {
        push_row(&mut t, label, vec![opt_float(value)], true);
    }
    push_row(
        &mut t,
        keys::INVALID_SPANS,
        vec![int(r.invalid_spans)],
        true,
    );
    t.to_string()
}

/// The `StageRequestStats` table: one column per stage, headed by its id, with its name when
/// it has one (`0 thinker`); vLLM-Omni's rows in its (alphabetical) order, then
/// `queue_time_ms` and the output-event and audio rows (`output_chunks`, `output_units`,
/// `time_to_first_output_ms`, `inter_output_ms`, `audio_duration_ms`, `audio_rtf`).
///
/// `batch_id` is shown when any stage recorded one, 0 included (batch 0 is a batch).
///
/// A row `known` refuses (a field a record of another trace source cannot know) is left
/// out.
fn stage_table(stages: &[StageRequestStats], known: &dyn Fn(&str) -> bool) -> String {
    stage_table_with(
        stages,
        |s| match &s.stage_name {
            Some(name) => format!("{} {}", s.stage_id, printable(name, true)),
            None => s.stage_id.to_string(),
        },
        known,
    )
}

fn stage_table_with(
    stages: &[StageRequestStats],
    heading: impl Fn(&StageRequestStats) -> String,
    known: &dyn Fn(&str) -> bool,
) -> String {
    let mut header = vec!["Field".to_owned()];
    header.extend(stages.iter().map(heading));
    let mut t = new_table(header);
    let rows: [Row<StageRequestStats>; 16] = [
        (keys::AUDIO_GENERATED_FRAMES, |s| {
            int(s.audio_generated_frames)
        }),
        (keys::BATCH_ID, batch),
        (keys::BATCH_SIZE, |s| int(s.batch_size)),
        (keys::IMAGE_NUM, |s| opt_int(s.image_num)),
        (keys::NUM_TOKENS_IN, |s| int(s.num_tokens_in)),
        (keys::NUM_TOKENS_OUT, |s| int(s.num_tokens_out)),
        (keys::POSTPROCESS_TIME_MS, |s| float(s.postprocess_time_ms)),
        (keys::RESOLUTION, |s| text(s.resolution.as_deref())),
        (keys::STAGE_GEN_TIME_MS, |s| float(s.stage_gen_time_ms)),
        (keys::QUEUE_TIME_MS, |s| float(s.queue_time_ms)),
        (keys::OUTPUT_CHUNKS, |s| int(s.output_chunks)),
        (keys::OUTPUT_UNITS, |s| int(s.output_units)),
        (keys::TIME_TO_FIRST_OUTPUT_MS, |s| {
            opt_float(s.time_to_first_output_ms)
        }),
        (keys::INTER_OUTPUT_MS, |s| opt_float(s.inter_output_ms)),
        (keys::AUDIO_DURATION_MS, |s| opt_float(s.audio_duration_ms)),
        (keys::AUDIO_RTF, |s| opt_float(s.audio_rtf)),
    ];
    for (label, cell) in rows.into_iter().filter(|(label, _)| known(label)) {
        push_row(&mut t, label, stages.iter().map(cell).collect(), true);
    }
    for (label, cells) in stage_extra_rows(stages) {
        t.add_row(
            std::iter::once(label.to_owned())
                .chain(cells)
                .collect::<Vec<_>>(),
        );
    }
    t.to_string()
}

/// The `StageRequestStats` rows beyond the seed's (replicas, diffusion, video, audio
/// continuity), each only when a stage gives it: `(label, a cell per stage)`, as the console
/// and the HTML report show them.
pub(crate) fn stage_extra_rows(stages: &[StageRequestStats]) -> Vec<(&'static str, Vec<String>)> {
    let rows: [Row<StageRequestStats>; 9] = [
        (keys::REPLICA_ID, |s| opt_id(s.replica_id)),
        (keys::NUM_INFERENCE_STEPS, |s| {
            opt_int(s.num_inference_steps)
        }),
        (keys::DENOISE_STEP_LATENCY_MS, |s| {
            opt_float(s.denoise_step_latency_ms)
        }),
        (keys::VIDEO_FRAMES, |s| int(s.video_frames)),
        (keys::VIDEO_DURATION_MS, |s| opt_float(s.video_duration_ms)),
        (keys::VIDEO_RTF, |s| opt_float(s.video_rtf)),
        (keys::AUDIO_UNDERRUN_MS, |s| opt_float(s.audio_underrun_ms)),
        (keys::AUDIO_MAX_GAP_MS, |s| opt_float(s.audio_max_gap_ms)),
        (keys::AUDIO_SKIPPED, |s| text(s.audio_skipped)),
    ];
    extra_rows(&rows, stages)
}

/// The rows of `rows` over `columns` that are not blank in every column.
fn extra_rows<T>(rows: &[Row<T>], columns: &[T]) -> Vec<(&'static str, Vec<String>)> {
    rows.iter()
        .filter_map(|(label, cell)| {
            let cells: Vec<Cell> = columns.iter().map(cell).collect();
            (!cells.iter().all(|c| c.blank))
                .then(|| (*label, cells.into_iter().map(|c| c.text).collect()))
        })
        .collect()
}

/// The `TransferEdgeStats` table: one column per edge `from->to`.
fn transfer_table(edges: &[TransferEdgeStats]) -> String {
    let mut header = vec!["Field".to_owned()];
    header.extend(edges.iter().map(|e| e.edge.to_string()));
    let mut t = new_table(header);
    let rows: [Row<TransferEdgeStats>; 4] = [
        (keys::SIZE_KBYTES, |e| float(e.size_kbytes)),
        (keys::TX_TIME_MS, |e| float(e.tx_time_ms)),
        (keys::RX_DECODE_TIME_MS, |e| float(e.rx_decode_time_ms)),
        (keys::IN_FLIGHT_TIME_MS, |e| float(e.in_flight_time_ms)),
    ];
    for (label, cell) in rows {
        push_row(&mut t, label, edges.iter().map(cell).collect(), true);
    }
    for (label, cells) in edge_extra_rows(edges) {
        t.add_row(
            std::iter::once(label.to_owned())
                .chain(cells)
                .collect::<Vec<_>>(),
        );
    }
    t.to_string()
}

/// The `TransferEdgeStats` rows beyond the seed's (the replicas), each only when an edge
/// gives it.
pub(crate) fn edge_extra_rows(edges: &[TransferEdgeStats]) -> Vec<(&'static str, Vec<String>)> {
    let rows: [Row<TransferEdgeStats>; 2] = [
        (keys::FROM_REPLICA, |e| opt_id(e.from_replica)),
        (keys::TO_REPLICA, |e| opt_id(e.to_replica)),
    ];
    extra_rows(&rows, edges)
}

/// The `Distributions` table: one row per quantity (`e2e_total_ms`,
/// `time_to_first_output_ms`, `time_to_first_audio_ms`, `stage_{i}_gen_time_ms`,
/// `stage_{i}_queue_time_ms`, `stage_{i}_time_to_first_output_ms`,
/// `stage_{i}_inter_output_ms`, `transfer_{from}->{to}_time_ms`; see
/// [`Quantity`]), columns count | mean | p50 | p90 | p99 | max in ms.
///
/// A row without values, or zero in every request (a stage with no `omni.queue` spans), is
/// left out, as in the stage table.
fn distribution_table(d: &Distributions) -> String {
    let header = ["Field", "count", "mean", "p50", "p90", "p99", "max"];
    let mut t = new_table(header.iter().map(|h| (*h).to_owned()).collect());
    for (quantity, stats) in distribution_rows(d) {
        let cells = vec![
            int(stats.count),
            float(stats.mean_ms),
            float(stats.p50_ms),
            float(stats.p90_ms),
            float(stats.p99_ms),
            float(stats.max_ms),
        ];
        push_row(&mut t, &quantity.to_string(), cells, false);
    }
    t.to_string()
}

/// The rows [`distribution_table`] shows.
fn distribution_rows(d: &Distributions) -> impl Iterator<Item = (Quantity, LatencyStats)> + '_ {
    d.iter().filter(|(_, s)| s.count > 0 && s.max_ms != 0.0)
}

/// The summary with its title, as the console prints it: the title, the table and a blank
/// line (so consecutive reports stay apart). The scope is escaped and capped.
///
/// For two or more completed requests, the `Distributions` table follows, titled and
/// followed by a blank line the same way (when it has a row).
///
/// An online aggregate (scope `cumulative` or `window`) leads with its latency: the
/// `Distributions` table first (request latency: mean, p50, p99), whatever the number of
/// requests, then the summary, its wall-based rows labelled as such.
pub(crate) fn render_summary(s: &OverallSummary) -> String {
    let has_rows = distribution_rows(&s.distributions).next().is_some();
    let distributions = || {
        format!(
            "Distributions\n{}\n\n",
            distribution_table(&s.distributions)
        )
    };
    let mut out = String::new();
    let online = is_online(s);
    if online && has_rows {
        out.push_str(&distributions());
    }
    let _ = write!(
        out,
        "Overall Summary (scope {})\n{}\n\n",
        printable(&s.scope, false),
        summary_table(s)
    );
    if !online && s.shows_distributions() && has_rows {
        out.push_str(&distributions());
    }
    out
}

/// Whether `s` is one of the layer's online aggregates ([`MetricsHandle::cumulative_summary`],
/// [`MetricsHandle::window_summary`]), whose wall time runs from the aggregate's start.
///
/// [`MetricsHandle::cumulative_summary`]: crate::MetricsHandle::cumulative_summary
/// [`MetricsHandle::window_summary`]: crate::MetricsHandle::window_summary
fn is_online(s: &OverallSummary) -> bool {
    s.scope == keys::CUMULATIVE_SCOPE || s.scope == keys::WINDOW_SCOPE
}

/// A request's three tables with their titles, as the console prints them: each title and
/// table followed by a blank line; stage columns headed `"{id} {name}"`. Stage and transfer tables are left out when the request has no
/// stage or no transfer. The request id and scope are escaped and capped.
pub(crate) fn render_request(r: &RequestE2EStats) -> String {
    let mut out = format!(
        "RequestE2EStats (request {}, status {}, scope {})\n{}\n\n",
        printable(&r.request_id, false),
        r.status.as_str(),
        printable(&r.scope, false),
        request_table(r)
    );
    if !r.stages.is_empty() {
        let known = |key: &str| r.knows(key);
        let _ = write!(
            out,
            "StageRequestStats\n{}\n\n",
            stage_table(&r.stages, &known)
        );
    }
    if !r.transfers.is_empty() {
        let _ = write!(
            out,
            "TransferEdgeStats\n{}\n\n",
            transfer_table(&r.transfers)
        );
    }
    out
}

impl std::fmt::Display for OverallSummary {
    /// The summary as the console prints it: `Overall Summary (scope ...)`, its table and a
    /// blank line; for two or more completed requests, the `Distributions` table after it
    /// the same way. The scope is escaped and capped.
    ///
    /// ```
    /// use omni_metrics::stats::OverallSummary;
    /// let summary = OverallSummary { scope: "run-3".into(), e2e_requests: 1, ..Default::default() };
    /// let text = summary.to_string();
    /// assert!(text.starts_with("Overall Summary (scope run-3)\n"));
    /// assert!(text.contains("| e2e_requests "));
    /// ```
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&render_summary(self))
    }
}

impl std::fmt::Display for RequestE2EStats {
    /// The request's tables as the console prints them: `RequestE2EStats (request ...,
    /// status ..., scope ...)`, then `StageRequestStats` (one column per stage, headed
    /// `"{id} {name}"`) and `TransferEdgeStats` (one per edge) when it has stages and
    /// transfers, each title and table followed by a blank line. The request id and scope
    /// are escaped and capped.
    ///
    /// ```
    /// use omni_metrics::stats::{RequestE2EStats, StageRequestStats};
    /// let thinker = StageRequestStats { stage_id: 0, stage_name: Some("thinker".into()), num_tokens_in: 9, ..Default::default() };
    /// let request = RequestE2EStats { request_id: "r-1".into(), stages: vec![thinker], ..Default::default() };
    /// let text = request.to_string();
    /// assert!(text.starts_with("RequestE2EStats (request r-1, status ok, scope )\n"));
    /// assert!(text.contains("\nStageRequestStats\n"));
    /// assert!(text.lines().any(|l| l.ends_with("| 0 thinker |")));
    /// ```
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&render_request(self))
    }
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
    fn printable_escapes_controls_and_keeps_plain_text() {
        assert!(matches!(printable("r-17 thinker", true), Cow::Borrowed(_)));
        assert_eq!(printable("a\nb\r\t|", false), "a\\nb\\r\\t|");
        assert_eq!(printable("a|b", true), "a\\|b");
        assert_eq!(printable("\x1b[2J\x00\x7f", false), "\\x1b[2J\\x00\\x7f");
        assert_eq!(printable("\u{9b}\u{202e}é", false), "\\u{9b}\\u{202e}é");
    }

    #[test]
    fn printable_caps_at_the_limit_and_says_the_length() {
        let exact = "é".repeat(MAX_CELL_CHARS);
        assert_eq!(printable(&exact, true), exact.as_str());
        let long = "é".repeat(MAX_CELL_CHARS + 1);
        let cut = printable(&long, true);
        assert_eq!(
            cut,
            format!("{}… (514 bytes)", "é".repeat(MAX_CELL_CHARS - 1))
        );
        // An escape is never cut in half.
        let newlines = "\n".repeat(MAX_CELL_CHARS);
        let cut = printable(&newlines, false);
        assert!(cut.starts_with("\\n\\n"), "{cut}");
        assert!(cut.ends_with("\\n… (256 bytes)"), "{cut}");
        assert!(cut.chars().count() <= MAX_CELL_CHARS + 20);
    }

    #[test]
    fn all_zero_rows_are_left_out() {
        let stage = StageRequestStats {
            stage_id: 0,
            num_tokens_in: 10,
            ..Default::default()
        };
        let table = stage_table(&[stage], &|_| true);
        assert!(table.contains("num_tokens_in"));
        assert!(!table.contains("image_num"), "{table}");
        assert!(!table.contains("resolution"), "{table}");
    }
}
