//! The page's data: what each request keeps for the report ([`Row`]), and the one JSON blob
//! the page reads, written safe to embed in `<script type="application/json">`.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::report::table::printable;
use crate::stats::LatencyStats;
use crate::stats::{
    self, OverallSummary, RequestE2EStats, RequestStatus, TraceSource, finite, keys,
};

/// The blob's format name, bumped when a column changes meaning.
pub(crate) const FORMAT: &str = "omni-metrics-html/1";

/// A request's columns, in the order of each row of `requests` in the blob.
const REQUEST_COLUMNS: [&str; 18] = [
    keys::REQUEST_ID,
    keys::STATUS,
    keys::SCOPE,
    "start_ms",
    "end_ms",
    keys::E2E_TOTAL_MS,
    keys::E2E_TOTAL_TOKENS,
    keys::TRANSFERS_TOTAL_TIME_MS,
    keys::TRANSFERS_TOTAL_KBYTES,
    keys::TIME_TO_FIRST_OUTPUT_MS,
    keys::TIME_TO_FIRST_AUDIO_MS,
    keys::AUDIO_DURATION_MS,
    keys::AUDIO_E2E_RTF,
    keys::INVALID_SPANS,
    keys::STAGES,
    keys::TRANSFERS,
    "stage_extra",
    "edge_extra",
];

/// Table rows beyond the seed's, formatted as the console prints them: `(label, a cell per
/// column)` ([`crate::report::table::stage_extra_rows`]).
type ExtraRows = Box<[(&'static str, Box<[String]>)]>;

/// A stage's columns.
const STAGE_COLUMNS: [&str; 21] = [
    keys::STAGE_ID,
    keys::STAGE_NAME,
    "start_ms",
    "end_ms",
    keys::BATCH_ID,
    keys::BATCH_SIZE,
    keys::NUM_TOKENS_IN,
    keys::NUM_TOKENS_OUT,
    keys::STAGE_GEN_TIME_MS,
    keys::POSTPROCESS_TIME_MS,
    keys::QUEUE_TIME_MS,
    keys::AUDIO_GENERATED_FRAMES,
    keys::IMAGE_NUM,
    keys::RESOLUTION,
    keys::OUTPUT_CHUNKS,
    keys::OUTPUT_UNITS,
    keys::TIME_TO_FIRST_OUTPUT_MS,
    keys::INTER_OUTPUT_MS,
    keys::AUDIO_DURATION_MS,
    keys::AUDIO_RTF,
    "audio_gaps",
];

/// An edge's columns.
const EDGE_COLUMNS: [&str; 9] = [
    keys::FROM_STAGE,
    keys::TO_STAGE,
    "start_ms",
    "end_ms",
    keys::SIZE_BYTES,
    keys::SIZE_KBYTES,
    keys::TX_TIME_MS,
    keys::RX_DECODE_TIME_MS,
    keys::IN_FLIGHT_TIME_MS,
];

/// What the report keeps of one request: the tables' fields and the times of its bars, text
/// already escaped as the console prints it. No output gaps, no trace id: a run's worth of
/// these is what the live report holds in memory (about 1.2 KiB a request of 3 stages and 2
/// edges).
#[derive(Debug, Clone)]
pub(crate) struct Row {
    id: Box<str>,
    /// `None` when it is the report's own scope (the usual case).
    scope: Option<Box<str>>,
    status: RequestStatus,
    /// A request of another trace source: what it cannot know is written `null`.
    source: Option<TraceSource>,
    start_ns: u64,
    end_ns: u64,
    e2e_total_ms: f64,
    e2e_total_tokens: u64,
    transfers_total_time_ms: f64,
    transfers_total_kbytes: f64,
    time_to_first_output_ms: Option<f64>,
    time_to_first_audio_ms: Option<f64>,
    audio_duration_ms: Option<f64>,
    audio_e2e_rtf: Option<f64>,
    invalid_spans: u64,
    stages: Box<[StageRow]>,
    edges: Box<[EdgeRow]>,
    /// What few requests have (rows beyond the seed's, audio gaps), apart: a run's worth of
    /// rows stays small.
    extra: Option<Box<Extra>>,
}

/// A stage's audio playback gaps: when the audio ran out and when it went on, ns.
type Gaps = Box<[(u64, u64)]>;

/// A kept request's rarer parts ([`Row::extra`]).
#[derive(Debug, Clone, Default)]
struct Extra {
    /// The stage and edge tables' rows beyond the seed's.
    stage_rows: ExtraRows,
    edge_rows: ExtraRows,
    /// Each stage's audio playback gaps, on the clock (ns), by the stage's index.
    stage_gaps: Box<[Gaps]>,
}

impl Extra {
    fn of(r: &RequestE2EStats) -> Option<Box<Self>> {
        let extra = Self {
            stage_rows: extra(crate::report::table::stage_extra_rows(&r.stages)),
            edge_rows: extra(crate::report::table::edge_extra_rows(&r.transfers)),
            stage_gaps: if r.stages.iter().any(|s| !s.audio_gaps_ns.is_empty()) {
                r.stages
                    .iter()
                    .map(|s| s.audio_gaps_ns.clone().into_boxed_slice())
                    .collect()
            } else {
                Box::default()
            },
        };
        let empty = extra.stage_rows.is_empty()
            && extra.edge_rows.is_empty()
            && extra.stage_gaps.is_empty();
        (!empty).then(|| Box::new(extra))
    }
}

#[derive(Debug, Clone)]
struct StageRow {
    stage_id: u64,
    name: Option<Arc<str>>,
    start_ns: u64,
    end_ns: u64,
    /// `None` when the stage recorded no batch (the console leaves the cell blank).
    batch_id: Option<u64>,
    batch_size: u64,
    num_tokens_in: u64,
    num_tokens_out: u64,
    stage_gen_time_ms: f64,
    postprocess_time_ms: f64,
    queue_time_ms: f64,
    audio_generated_frames: u64,
    image_num: Option<u64>,
    resolution: Option<Box<str>>,
    output_chunks: u64,
    output_units: u64,
    time_to_first_output_ms: Option<f64>,
    inter_output_ms: Option<f64>,
    audio_duration_ms: Option<f64>,
    audio_rtf: Option<f64>,
}

#[derive(Debug, Clone)]
struct EdgeRow {
    from: u64,
    to: u64,
    start_ns: u64,
    end_ns: u64,
    size_bytes: u64,
    size_kbytes: f64,
    tx_time_ms: f64,
    rx_decode_time_ms: f64,
    in_flight_time_ms: f64,
}

impl Row {
    /// Keeps what the report shows of `r`; `report_scope` is the scope the page is titled
    /// with (a request of another scope keeps its own, shown in its title).
    pub(crate) fn new(r: &RequestE2EStats, report_scope: &str) -> Self {
        let stages = r
            .stages
            .iter()
            .map(|s| StageRow {
                stage_id: s.stage_id,
                // Names repeat on every request: share the engine's string when it prints
                // as it is.
                name: s
                    .stage_name
                    .as_ref()
                    .map(|name| match printable(name, true) {
                        std::borrow::Cow::Borrowed(_) => name.clone(),
                        std::borrow::Cow::Owned(escaped) => Arc::from(escaped),
                    }),
                start_ns: s.start_ns,
                end_ns: s.end_ns,
                batch_id: (s.batch_recorded || s.batch_id != 0).then_some(s.batch_id),
                batch_size: s.batch_size,
                num_tokens_in: s.num_tokens_in,
                num_tokens_out: s.num_tokens_out,
                stage_gen_time_ms: s.stage_gen_time_ms,
                postprocess_time_ms: s.postprocess_time_ms,
                queue_time_ms: s.queue_time_ms,
                audio_generated_frames: s.audio_generated_frames,
                image_num: s.image_num,
                resolution: s
                    .resolution
                    .as_deref()
                    .map(|text| printable(text, true).into()),
                output_chunks: s.output_chunks,
                output_units: s.output_units,
                time_to_first_output_ms: s.time_to_first_output_ms,
                inter_output_ms: s.inter_output_ms,
                audio_duration_ms: s.audio_duration_ms,
                audio_rtf: s.audio_rtf,
            })
            .collect();
        let edges = r
            .transfers
            .iter()
            .map(|e| EdgeRow {
                from: e.from_stage,
                to: e.to_stage,
                start_ns: e.start_ns,
                end_ns: e.end_ns,
                size_bytes: e.size_bytes,
                size_kbytes: e.size_kbytes,
                tx_time_ms: e.tx_time_ms,
                rx_decode_time_ms: e.rx_decode_time_ms,
                in_flight_time_ms: e.in_flight_time_ms,
            })
            .collect();
        Self {
            id: printable(&r.request_id, false).into(),
            scope: (r.scope != report_scope).then(|| printable(&r.scope, false).into()),
            status: r.status,
            source: r.source,
            start_ns: r.start_ns,
            end_ns: r.end_ns,
            e2e_total_ms: r.e2e_total_ms,
            e2e_total_tokens: r.e2e_total_tokens,
            transfers_total_time_ms: r.transfers_total_time_ms,
            transfers_total_kbytes: r.transfers_total_kbytes,
            time_to_first_output_ms: r.time_to_first_output_ms,
            time_to_first_audio_ms: r.time_to_first_audio_ms,
            audio_duration_ms: r.audio_duration_ms,
            audio_e2e_rtf: r.audio_e2e_rtf,
            invalid_spans: r.invalid_spans,
            stages,
            edges,
            extra: Extra::of(r),
        }
    }

    /// Whether the request's field `key` (or its stages') is known: not one its source
    /// cannot give.
    fn knows(&self, key: &str) -> bool {
        TraceSource::knows_request_field(self.source, key)
    }

    /// Whether the request carries times on a clock (records read back from JSON lines do
    /// not: their `start_ns`/`end_ns` are not serialized).
    fn timed(&self) -> bool {
        self.end_ns > 0
    }

    /// The earliest time this request's spans carry.
    fn earliest_ns(&self) -> u64 {
        let stages = self.stages.iter().map(|s| s.start_ns).filter(|t| *t > 0);
        let edges = self.edges.iter().map(|e| e.start_ns).filter(|t| *t > 0);
        stages.chain(edges).fold(self.start_ns, u64::min)
    }

    /// Bars this request adds to the timeline: one per stage and one per edge.
    pub(crate) fn bars(&self) -> usize {
        self.stages.len() + self.edges.len()
    }
}

/// The JSON blob: writes JSON that is safe inside `<script type="application/json">`.
///
/// Strings escape `<`, `>`, `&`, U+2028 and U+2029 as `\u` escapes (besides what JSON
/// requires), so no text can close the script element or start a comment; these characters
/// never occur outside strings. Numbers are always finite ([`finite`]); integers above
/// 2^53, which a JavaScript number cannot hold exactly, are written as strings of digits.
pub(crate) struct Json {
    pub(crate) out: String,
}

/// The largest integer a JavaScript number holds exactly.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

impl Json {
    fn raw(&mut self, s: &str) {
        self.out.push_str(s);
    }

    pub(crate) fn string(&mut self, s: &str) {
        self.out.reserve(s.len() + 2);
        self.out.push('"');
        for c in s.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                    let _ = write!(self.out, "\\u{:04x}", c as u32);
                }
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    let _ = write!(self.out, "\\u{:04x}", c as u32);
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }

    pub(crate) fn uint(&mut self, v: u64) {
        if v > MAX_SAFE_INTEGER {
            let _ = write!(self.out, "\"{v}\"");
        } else {
            let _ = write!(self.out, "{v}");
        }
    }

    /// A finite float in its shortest round-trip form: plain digits, or an exponent for
    /// very large and very small magnitudes (`1.7976931348623157e308`, which every JSON
    /// parser reads; 309 digits are out of range for some).
    pub(crate) fn float(&mut self, v: f64) {
        let v = finite(v);
        let a = v.abs();
        if a != 0.0 && !(1e-6..1e16).contains(&a) {
            let _ = write!(self.out, "{v:e}");
        } else {
            let _ = write!(self.out, "{v}");
        }
    }

    /// `v`, or `null` when it is not `known` (a figure a trace source cannot give).
    fn known_float(&mut self, v: f64, known: bool) {
        self.opt_float(known.then_some(v));
    }

    /// `v`, or `null` when it is not `known`.
    fn known_uint(&mut self, v: u64, known: bool) {
        self.opt_uint(known.then_some(v));
    }

    fn opt_float(&mut self, v: Option<f64>) {
        match v {
            Some(v) => self.float(v),
            None => self.raw("null"),
        }
    }

    fn opt_uint(&mut self, v: Option<u64>) {
        match v {
            Some(v) => self.uint(v),
            None => self.raw("null"),
        }
    }

    fn opt_string(&mut self, v: Option<&str>) {
        match v {
            Some(v) => self.string(v),
            None => self.raw("null"),
        }
    }

    fn key(&mut self, key: &str) {
        self.string(key);
        self.out.push(':');
    }

    fn columns(&mut self, names: &[&str]) {
        self.out.push('[');
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.string(name);
        }
        self.out.push(']');
    }
}

/// Where the timeline puts a request's spans, in ms from the report's origin.
#[derive(Clone, Copy)]
enum Layout {
    /// On the layer's clock: every time minus the earliest start of the report.
    Timed { origin_ns: u64 },
    /// Records without times: each request from 0, its stages one after another in stage
    /// order, each edge after its sending stage.
    Untimed,
}

/// ns on the layer's clock to ms from `origin_ns`, to the microsecond.
fn rel_ms(ns: u64, origin_ns: u64) -> f64 {
    (ns.saturating_sub(origin_ns) / 1_000) as f64 / 1_000.0
}

/// A stage's or edge's bar on a timed layout: its own `(start, end)` times when it has
/// them, else `ms` long from its request's start.
fn timed_bar(
    origin_ns: u64,
    (start_ns, end_ns): (u64, u64),
    request_ns: u64,
    ms: f64,
) -> (f64, f64) {
    if end_ns > 0 {
        (
            rel_ms(start_ns, origin_ns),
            rel_ms(end_ns.max(start_ns), origin_ns),
        )
    } else {
        let start = rel_ms(request_ns, origin_ns);
        (start, finite(start + ms))
    }
}

/// Writes the blob: the summary, the distributions the console shows, the column names and
/// one row per request, ordered by start time.
pub(crate) fn write_blob(out: &mut String, summary: &OverallSummary, rows: &mut [Row]) {
    let timed = rows.iter().any(Row::timed);
    let layout = if timed {
        let origin_ns = rows
            .iter()
            .filter(|r| r.timed())
            .map(Row::earliest_ns)
            .min()
            .unwrap_or(0);
        rows.sort_by_key(|r| (r.start_ns, r.end_ns));
        Layout::Timed { origin_ns }
    } else {
        Layout::Untimed
    };
    let total = summary
        .e2e_requests
        .saturating_add(summary.e2e_requests_error)
        .saturating_add(summary.e2e_requests_aborted);
    let left_out = total.saturating_sub(rows.len() as u64);

    let mut j = Json {
        out: std::mem::take(out),
    };
    j.raw("{");
    j.key("format");
    j.string(FORMAT);
    j.raw(",");
    j.key("generator");
    j.string(concat!("omni-metrics ", env!("CARGO_PKG_VERSION")));
    j.raw(",");
    j.key(keys::SCOPE);
    j.string(&printable(&summary.scope, false));
    j.raw(",");
    j.key("timed");
    j.raw(if timed { "true" } else { "false" });
    j.raw(",");
    j.key("left_out");
    j.uint(left_out);
    j.raw(",");
    j.key("summary");
    write_summary(&mut j, summary);
    j.raw(",");
    j.key(keys::DISTRIBUTIONS);
    write_distributions(&mut j, summary);
    j.raw(",");
    j.key("columns");
    j.raw("{");
    j.key("request");
    j.columns(&REQUEST_COLUMNS);
    j.raw(",");
    j.key("stage");
    j.columns(&STAGE_COLUMNS);
    j.raw(",");
    j.key("edge");
    j.columns(&EDGE_COLUMNS);
    j.raw("},");
    j.key("requests");
    j.raw("[");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            j.raw(",\n");
        }
        write_row(&mut j, row, layout);
    }
    j.raw("]}");
    *out = j.out;
}

fn write_summary(j: &mut Json, s: &OverallSummary) {
    j.raw("{");
    j.key(keys::E2E_REQUESTS);
    j.uint(s.e2e_requests);
    j.raw(",");
    j.key(keys::E2E_WALL_TIME_MS);
    j.float(s.e2e_wall_time_ms);
    j.raw(",");
    j.key(keys::E2E_TOTAL_TOKENS);
    j.known_uint(s.e2e_total_tokens, s.knows(keys::E2E_TOTAL_TOKENS));
    j.raw(",");
    j.key(keys::E2E_AVG_TIME_PER_REQUEST_MS);
    j.float(s.e2e_avg_time_per_request_ms);
    j.raw(",");
    j.key(keys::E2E_AVG_TOKENS_PER_S);
    j.known_float(s.e2e_avg_tokens_per_s, s.knows(keys::E2E_AVG_TOKENS_PER_S));
    j.raw(",");
    j.key("stage_wall_time_ms");
    j.raw("[");
    for (i, (id, ms)) in s.stage_wall_time_ms.iter().enumerate() {
        if i > 0 {
            j.raw(",");
        }
        j.raw("[");
        j.uint(*id);
        j.raw(",");
        j.float(*ms);
        j.raw("]");
    }
    j.raw("],");
    j.key(keys::E2E_REQUESTS_ERROR);
    j.uint(s.e2e_requests_error);
    j.raw(",");
    j.key(keys::E2E_REQUESTS_ABORTED);
    j.uint(s.e2e_requests_aborted);
    j.raw(",");
    j.key(keys::INVALID_SPANS);
    j.uint(s.invalid_spans);
    j.raw(",");
    j.key("extra");
    j.raw("[");
    for (i, (label, value)) in crate::report::table::summary_extra_rows(s)
        .iter()
        .enumerate()
    {
        if i > 0 {
            j.raw(",");
        }
        j.raw("[");
        j.string(label);
        j.raw(",");
        j.string(value);
        j.raw("]");
    }
    j.raw("]");
    j.raw("}");
}

/// The rows of the console's `Distributions` table: `[name, count, mean, p50, p90, p99,
/// max]`, none when the console shows none (fewer than two completed requests).
fn write_distributions(j: &mut Json, s: &OverallSummary) {
    j.raw("[");
    if s.shows_distributions() {
        let rows = s
            .distributions
            .iter()
            .filter(|(_, stats)| stats.count > 0 && stats.max_ms != 0.0);
        for (i, (quantity, stats)) in rows.enumerate() {
            if i > 0 {
                j.raw(",");
            }
            let LatencyStats {
                count,
                mean_ms,
                p50_ms,
                p90_ms,
                p99_ms,
                max_ms,
            } = stats;
            j.raw("[");
            j.string(&quantity.to_string());
            j.raw(",");
            j.uint(count);
            for v in [mean_ms, p50_ms, p90_ms, p99_ms, max_ms] {
                j.raw(",");
                j.float(v);
            }
            j.raw("]");
        }
    }
    j.raw("]");
}

/// One request of `requests` in the blob: its columns ([`REQUEST_COLUMNS`]), then its stages
/// and edges, each with the bar the page draws ([`Layout`]).
fn write_row(j: &mut Json, r: &Row, layout: Layout) {
    j.raw("[");
    write_columns(j, r, layout);
    j.raw(",[");
    // Untimed: stages one after another, each edge right after its sending stage.
    let stage_end = write_stages(j, r, layout);
    j.raw("],[");
    for (i, e) in r.edges.iter().enumerate() {
        if i > 0 {
            j.raw(",");
        }
        let total = stats::transfer_time_ms(e.tx_time_ms, e.rx_decode_time_ms, e.in_flight_time_ms);
        let bar = match layout {
            Layout::Timed { origin_ns } => {
                timed_bar(origin_ns, (e.start_ns, e.end_ns), r.start_ns, total)
            }
            Layout::Untimed => {
                let start = stage_end
                    .iter()
                    .find(|(id, _)| *id == e.from)
                    .map_or(0.0, |(_, end)| *end);
                (start, finite(start + total))
            }
        };
        write_edge(j, e, bar);
    }
    j.raw("],");
    let none: &[(&str, Box<[String]>)] = &[];
    write_extra(j, r.extra.as_deref().map_or(none, |x| &x.stage_rows));
    j.raw(",");
    write_extra(j, r.extra.as_deref().map_or(none, |x| &x.edge_rows));
    j.raw("]");
}

/// A request's own columns ([`REQUEST_COLUMNS`]), its bar first.
fn write_columns(j: &mut Json, r: &Row, layout: Layout) {
    let (start_ms, end_ms) = match layout {
        Layout::Timed { origin_ns } => (
            rel_ms(r.start_ns, origin_ns),
            rel_ms(r.end_ns.max(r.start_ns), origin_ns),
        ),
        Layout::Untimed => (0.0, finite(r.e2e_total_ms.max(0.0))),
    };
    j.string(&r.id);
    j.raw(",");
    j.string(r.status.as_str());
    j.raw(",");
    j.opt_string(r.scope.as_deref());
    j.raw(",");
    j.float(start_ms);
    j.raw(",");
    j.float(end_ms);
    j.raw(",");
    j.float(r.e2e_total_ms);
    j.raw(",");
    let known = |key: &str| r.knows(key);
    j.known_uint(r.e2e_total_tokens, known(keys::E2E_TOTAL_TOKENS));
    j.raw(",");
    j.known_float(
        r.transfers_total_time_ms,
        known(keys::TRANSFERS_TOTAL_TIME_MS),
    );
    j.raw(",");
    j.known_float(
        r.transfers_total_kbytes,
        known(keys::TRANSFERS_TOTAL_KBYTES),
    );
    j.raw(",");
    j.opt_float(r.time_to_first_output_ms);
    j.raw(",");
    j.opt_float(r.time_to_first_audio_ms);
    j.raw(",");
    j.opt_float(r.audio_duration_ms);
    j.raw(",");
    j.opt_float(r.audio_e2e_rtf);
    j.raw(",");
    j.uint(r.invalid_spans);
}

/// A request's stages with their bars; untimed, where each stage's bar ends (by stage id),
/// for the edges.
fn write_stages(j: &mut Json, r: &Row, layout: Layout) -> Vec<(u64, f64)> {
    let known = |key: &str| r.knows(key);
    let mut cursor = 0.0_f64;
    let mut stage_end: Vec<(u64, f64)> = Vec::new();
    for (i, s) in r.stages.iter().enumerate() {
        if i > 0 {
            j.raw(",");
        }
        let busy = finite(s.queue_time_ms + s.stage_gen_time_ms + s.postprocess_time_ms);
        let bar = match layout {
            Layout::Timed { origin_ns } => {
                timed_bar(origin_ns, (s.start_ns, s.end_ns), r.start_ns, busy)
            }
            Layout::Untimed => {
                let start = cursor;
                cursor = finite(cursor + busy);
                stage_end.push((s.stage_id, cursor));
                (start, cursor)
            }
        };
        let origin = match layout {
            Layout::Timed { origin_ns } => Some(origin_ns),
            Layout::Untimed => None,
        };
        let gaps = r
            .extra
            .as_deref()
            .and_then(|x| x.stage_gaps.get(i))
            .map_or(&[][..], |g| &g[..]);
        write_stage(j, s, bar, (origin, gaps), &known);
    }
    stage_end
}

/// Extra table rows, kept boxed.
fn extra(rows: Vec<(&'static str, Vec<String>)>) -> ExtraRows {
    rows.into_iter()
        .map(|(label, cells)| (label, cells.into_boxed_slice()))
        .collect()
}

/// Writes extra table rows: `[[label, [cell, ...]], ...]`.
fn write_extra(j: &mut Json, rows: &[(&str, Box<[String]>)]) {
    j.raw("[");
    for (i, (label, cells)) in rows.iter().enumerate() {
        if i > 0 {
            j.raw(",");
        }
        j.raw("[");
        j.string(label);
        j.raw(",[");
        for (k, cell) in cells.iter().enumerate() {
            if k > 0 {
                j.raw(",");
            }
            j.string(cell);
        }
        j.raw("]]");
    }
    j.raw("]");
}

/// A stage's columns ([`STAGE_COLUMNS`]), its bar from `start` to `end`.
/// A field `known` refuses (one a trace source cannot give) is written `null`.
fn write_stage(
    j: &mut Json,
    s: &StageRow,
    (start, end): (f64, f64),
    (origin_ns, gaps): (Option<u64>, &[(u64, u64)]),
    known: &dyn Fn(&str) -> bool,
) {
    j.raw("[");
    j.uint(s.stage_id);
    j.raw(",");
    j.opt_string(s.name.as_deref());
    j.raw(",");
    j.float(start);
    j.raw(",");
    j.float(end);
    j.raw(",");
    j.opt_uint(s.batch_id);
    j.raw(",");
    j.known_uint(s.batch_size, known(keys::BATCH_SIZE));
    j.raw(",");
    j.known_uint(s.num_tokens_in, known(keys::NUM_TOKENS_IN));
    j.raw(",");
    j.known_uint(s.num_tokens_out, known(keys::NUM_TOKENS_OUT));
    j.raw(",");
    j.float(s.stage_gen_time_ms);
    j.raw(",");
    j.known_float(s.postprocess_time_ms, known(keys::POSTPROCESS_TIME_MS));
    j.raw(",");
    j.known_float(s.queue_time_ms, known(keys::QUEUE_TIME_MS));
    j.raw(",");
    j.known_uint(
        s.audio_generated_frames,
        known(keys::AUDIO_GENERATED_FRAMES),
    );
    j.raw(",");
    j.opt_uint(s.image_num);
    j.raw(",");
    j.opt_string(s.resolution.as_deref());
    j.raw(",");
    j.known_uint(s.output_chunks, known(keys::OUTPUT_CHUNKS));
    j.raw(",");
    j.known_uint(s.output_units, known(keys::OUTPUT_UNITS));
    j.raw(",");
    j.opt_float(s.time_to_first_output_ms);
    j.raw(",");
    j.opt_float(s.inter_output_ms);
    j.raw(",");
    j.opt_float(s.audio_duration_ms);
    j.raw(",");
    j.opt_float(s.audio_rtf);
    // Playback gaps, `[[start_ms, end_ms], ...]` on the page's time axis (timed only).
    j.raw(",[");
    if let Some(origin_ns) = origin_ns {
        for (i, (gap_start, gap_end)) in gaps.iter().enumerate() {
            if i > 0 {
                j.raw(",");
            }
            j.raw("[");
            j.float(rel_ms(*gap_start, origin_ns));
            j.raw(",");
            j.float(rel_ms(*gap_end, origin_ns));
            j.raw("]");
        }
    }
    j.raw("]]");
}

/// An edge's columns ([`EDGE_COLUMNS`]), its bar from `start` to `end`.
fn write_edge(j: &mut Json, e: &EdgeRow, (start, end): (f64, f64)) {
    j.raw("[");
    j.uint(e.from);
    j.raw(",");
    j.uint(e.to);
    j.raw(",");
    j.float(start);
    j.raw(",");
    j.float(end);
    j.raw(",");
    j.uint(e.size_bytes);
    j.raw(",");
    j.float(e.size_kbytes);
    j.raw(",");
    j.float(e.tx_time_ms);
    j.raw(",");
    j.float(e.rx_decode_time_ms);
    j.raw(",");
    j.float(e.in_flight_time_ms);
    j.raw("]");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(f: impl FnOnce(&mut Json)) -> String {
        let mut j = Json { out: String::new() };
        f(&mut j);
        j.out
    }

    #[test]
    fn strings_cannot_close_the_script_element() {
        let text = json(|j| j.string("</script><!-- & \u{2028}\u{2029} \"\\\n\u{1}"));
        assert_eq!(
            text,
            r#""\u003c/script\u003e\u003c!-- \u0026 \u2028\u2029 \"\\\n\u0001""#
        );
        let back: String = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(back, "</script><!-- & \u{2028}\u{2029} \"\\\n\u{1}");
    }

    #[test]
    fn numbers_are_finite_json() {
        for v in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            f64::MAX,
            1e-300,
        ] {
            let text = json(|j| j.float(v));
            assert!(
                serde_json::from_str::<f64>(&text).is_ok_and(f64::is_finite),
                "{v} -> {text}"
            );
            assert!(!text.starts_with('-'), "{v} -> {text}");
        }
        assert_eq!(json(|j| j.uint(MAX_SAFE_INTEGER)), "9007199254740991");
        assert_eq!(json(|j| j.uint(u64::MAX)), "\"18446744073709551615\"");
    }

    #[test]
    fn a_kept_request_of_three_stages_and_two_edges_takes_about_1_2_kib() {
        use std::mem::size_of;
        // The row (and its spare capacity in the run's vector: up to one more), its stages
        // and edges, and its id's allocation; stage names are shared.
        let bytes =
            2 * size_of::<Row>() + 3 * size_of::<StageRow>() + 2 * size_of::<EdgeRow>() + 32;
        assert!(bytes <= 1300, "{bytes} bytes");
    }

    #[test]
    fn times_are_relative_to_the_earliest_start() {
        let request = |id: &str, start_ns: u64| RequestE2EStats {
            request_id: id.into(),
            scope: "run".into(),
            start_ns,
            end_ns: start_ns + 2_000_000,
            ..Default::default()
        };
        let mut rows = vec![
            Row::new(&request("late", 7_500_000), "run"),
            Row::new(&request("early", 5_000_000), "run"),
        ];
        let mut out = String::new();
        write_blob(&mut out, &OverallSummary::default(), &mut rows);
        let blob: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        let starts: Vec<_> = blob["requests"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| (r[0].as_str().unwrap_or("").to_owned(), r[3].as_f64()))
            .collect();
        assert_eq!(
            starts,
            [
                ("early".to_owned(), Some(0.0)),
                ("late".to_owned(), Some(2.5))
            ]
        );
        assert_eq!(blob["timed"], true);
    }
}
