//! Reading a side: the JSON lines records the layer writes (`OMNI_METRICS_JSONL`, `omni-metrics
//! report --format jsonl`) and the trace files the report command reads (replayed through
//! the layer, [`crate::replay`]), any number of each, plain, gzip or zstd.

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::replay::{GroupBy, Input, InputFormat, Replay};
use crate::stats::{
    AudioContinuity, EdgeName, OverallSummary, RequestE2EStats, RequestStatus, StageRequestStats,
    TransferEdgeStats,
};
use crate::testing::CaptureSink;

/// The longest JSON line read (16 MiB, as the report command's records); a longer one is
/// skipped and said.
const MAX_LINE_BYTES: usize = Replay::DEFAULT_MAX_RECORD_BYTES;

/// Why a side cannot be compared. Its message is for the reader (and for logging only).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct LoadError {
    message: String,
}

impl LoadError {
    pub(crate) fn no_requests(label: &str) -> Self {
        Self {
            message: format!(
                "{label}: no request found (give JSON lines records or trace files holding omni.request spans)"
            ),
        }
    }

    pub(crate) fn unknown_scope(label: &str, scope: &str, scopes: &[&str]) -> Self {
        Self {
            message: format!("{label}: no run {scope:?}; its runs: {}", names(scopes)),
        }
    }

    pub(crate) fn several_runs(label: &str, scopes: &[&str], online: usize) -> Self {
        let online = match online {
            0 => String::new(),
            n => format!(" and {n} online requests"),
        };
        Self {
            message: format!(
                "{label} holds {} runs{online} ({}): pick one with --{label}-scope, or pool them with --group-by all",
                scopes.len(),
                names(scopes)
            ),
        }
    }
}

/// Up to ten scope names, quoted as the console prints them.
fn names(scopes: &[&str]) -> String {
    let mut out: Vec<String> = scopes
        .iter()
        .take(10)
        .map(|s| crate::report::table::printable(s, false).into_owned())
        .collect();
    if scopes.len() > 10 {
        out.push(format!("and {} more", scopes.len() - 10));
    }
    if out.is_empty() {
        "none".to_owned()
    } else {
        out.join(", ")
    }
}

/// What the files of one side held: every request and summary, before grouping
/// ([`Side::from_loaded`](super::Side::from_loaded)).
#[derive(Debug, Default)]
#[non_exhaustive]
pub(crate) struct Loaded {
    /// Every request record, any status, any scope.
    pub requests: Vec<RequestE2EStats>,
    /// Every summary record.
    pub summaries: Vec<OverallSummary>,
    /// Whether every request carries its times (all came from trace files).
    pub timed: bool,
    /// Files read as JSON lines records.
    pub record_files: u64,
    /// Files read as trace files.
    pub trace_files: u64,
    /// Lines or records that could not be read (each said).
    pub unreadable: u64,
}

/// Reads `paths` (files; a directory stands for the files in it, in name order): each file
/// of JSON lines records (the first line has a `"type"` and no `"resourceSpans"`) is read
/// as records, every other file as a trace file, all trace files together through one
/// replay grouped by run, as `omni-metrics report` reads them (a request whose spans several
/// files hold is whole). Compression (gzip, zstd) is recognized from the content.
///
/// What cannot be read (a file, a line) is handed to `on_note`, and the rest is read:
/// never fails, never panics. A request given twice (the same records file twice) is kept
/// once.
pub(crate) fn load(paths: &[PathBuf], on_note: &mut dyn FnMut(&str)) -> Loaded {
    let mut loaded = Loaded {
        timed: true,
        ..Loaded::default()
    };
    let mut traces = Vec::new();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut twice = 0u64;
    for path in expand(paths, on_note) {
        let name = path.display().to_string();
        match open(&path).and_then(|mut r| is_records(&mut r).map(|rec| (r, rec))) {
            Err(e) => {
                on_note(&format!("{name}: cannot read: {e}"));
                loaded.unreadable += 1;
            }
            Ok((reader, true)) => {
                loaded.record_files += 1;
                loaded.timed = false;
                read_records(&name, reader, &mut loaded, &mut seen, &mut twice, on_note);
            }
            Ok((_, false)) => traces.push(path),
        }
    }
    if twice > 0 {
        on_note(&format!(
            "{twice} request record{} read twice, kept once",
            if twice == 1 { " was" } else { "s were" }
        ));
    }
    if !traces.is_empty() {
        loaded.trace_files = traces.len() as u64;
        let kept = CaptureSink::default();
        let inputs = traces.iter().map(Input::path).collect();
        let mut errors = 0u64;
        let stats = Replay::new()
            .group_by(GroupBy::Run)
            .with_sink(kept.clone())
            .run_inputs(inputs, InputFormat::Auto, &mut |e| {
                errors += 1;
                if errors <= 20 {
                    on_note(&e.to_string());
                }
            });
        loaded.unreadable += errors;
        if stats.spans_read == 0 {
            on_note(&format!(
                "no span found in {} trace file{}",
                traces.len(),
                if traces.len() == 1 { "" } else { "s" }
            ));
        }
        let (summaries, requests) = kept.take();
        loaded.requests.extend(requests);
        loaded.summaries.extend(summaries);
    }
    loaded
}

/// The files of `paths`: a directory's regular files (not hidden), in name order.
fn expand(paths: &[PathBuf], on_note: &mut dyn FnMut(&str)) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for path in paths {
        if !path.is_dir() {
            out.push(path.clone());
            continue;
        }
        match std::fs::read_dir(path) {
            Ok(entries) => {
                let mut files: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .map(|e| e.path())
                    .collect();
                files.sort();
                if files.is_empty() {
                    on_note(&format!("{}: no file in the directory", path.display()));
                }
                out.extend(files);
            }
            Err(e) => on_note(&format!(
                "{}: cannot read the directory: {e}",
                path.display()
            )),
        }
    }
    out
}

/// `path` opened, decompressed by its content (gzip, zstd), buffered.
fn open(path: &Path) -> io::Result<Box<dyn BufRead>> {
    let mut file = BufReader::with_capacity(64 << 10, std::fs::File::open(path)?);
    let magic = file.fill_buf()?;
    Ok(if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::with_capacity(
            64 << 10,
            flate2::bufread::MultiGzDecoder::new(file),
        ))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let mut decoder = zstd::stream::read::Decoder::with_buffer(file)?;
        // As the replay: no window beyond the record limit.
        decoder.window_log_max(24)?;
        Box::new(BufReader::with_capacity(64 << 10, decoder))
    } else {
        Box::new(file)
    })
}

/// Whether the (decompressed) data starts with a JSON lines record: its first line has a
/// `"type"` key and no `"resourceSpans"`.
fn is_records(reader: &mut Box<dyn BufRead>) -> io::Result<bool> {
    let head = reader.fill_buf()?;
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    let head = &head[start..];
    if head.first() != Some(&b'{') {
        return Ok(false);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or(head);
    let has = |needle: &[u8]| line.windows(needle.len()).any(|w| w == needle);
    Ok(has(b"\"type\"") && !has(b"\"resourceSpans\""))
}

/// Reads one line into `buf` (without its newline), at most `max` bytes: `Ok(None)` at the
/// end, `Ok(Some(false))` for a line too long (skipped to its end).
fn read_line(reader: &mut dyn BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<bool>> {
    buf.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(any.then_some(!too_long));
        }
        any = true;
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(at) => (at, true),
            None => (chunk.len(), false),
        };
        if !too_long && buf.len() + take <= max {
            buf.extend_from_slice(&chunk[..take]);
        } else {
            too_long = true;
            buf.clear();
        }
        reader.consume(take + usize::from(done));
        if done {
            return Ok(Some(!too_long));
        }
    }
}

fn read_records(
    name: &str,
    mut reader: Box<dyn BufRead>,
    loaded: &mut Loaded,
    seen: &mut HashSet<(String, String)>,
    twice: &mut u64,
    on_note: &mut dyn FnMut(&str),
) {
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    let mut bad = 0u64;
    let mut say = |loaded: &mut Loaded, line: u64, what: &str| {
        loaded.unreadable += 1;
        bad += 1;
        if bad <= 20 {
            on_note(&format!("{name}:{line}: {what}"));
        }
    };
    loop {
        line_no += 1;
        match read_line(&mut *reader, &mut buf, MAX_LINE_BYTES) {
            Err(e) => {
                say(loaded, line_no, &format!("cannot read further: {e}"));
                break;
            }
            Ok(None) => break,
            Ok(Some(false)) => say(loaded, line_no, "a line longer than 16 MiB, skipped"),
            Ok(Some(true)) => {
                let line = buf.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                match parse_line(line) {
                    Ok(Parsed::Request(r)) => {
                        if seen.insert((r.scope.clone(), r.request_id.clone())) {
                            loaded.requests.push(*r);
                        } else {
                            *twice += 1;
                        }
                    }
                    Ok(Parsed::Summary(s)) => loaded.summaries.push(*s),
                    Ok(Parsed::Other) => {}
                    Err(e) => say(loaded, line_no, &format!("not a record: {e}")),
                }
            }
        }
    }
    if bad > 20 {
        on_note(&format!("{name}: {bad} lines could not be read"));
    }
}

enum Parsed {
    Request(Box<RequestE2EStats>),
    Summary(Box<OverallSummary>),
    Other,
}

#[derive(Deserialize)]
struct Tag<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

/// A request record as the layer writes it (keys of [`RequestE2EStats`]'s serialization);
/// absent keys are 0 or none, unknown keys ignored.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RequestLine {
    request_id: String,
    status: Option<String>,
    status_message: Option<String>,
    scope: String,
    trace_id: Option<String>,
    e2e_total_ms: f64,
    e2e_total_tokens: u64,
    transfers_total_time_ms: f64,
    transfers_total_kbytes: f64,
    time_to_first_output_ms: Option<f64>,
    time_to_first_audio_ms: Option<f64>,
    audio_duration_ms: Option<f64>,
    audio_e2e_rtf: Option<f64>,
    invalid_spans: u64,
    stages: Vec<StageLine>,
    transfers: Vec<EdgeLine>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StageLine {
    stage_id: u64,
    stage_name: Option<String>,
    batch_id: u64,
    batch_size: u64,
    num_tokens_in: u64,
    num_tokens_out: u64,
    stage_gen_time_ms: f64,
    postprocess_time_ms: f64,
    audio_generated_frames: u64,
    image_num: Option<u64>,
    resolution: Option<String>,
    queue_time_ms: f64,
    replica_id: Option<u64>,
    num_inference_steps: Option<u64>,
    denoise_step_latency_ms: Option<f64>,
    audio_sample_rate: Option<u64>,
    spans: u64,
    wall_time_ms: f64,
    output_chunks: u64,
    output_units: u64,
    time_to_first_output_ms: Option<f64>,
    inter_output_ms: Option<f64>,
    audio_duration_ms: Option<f64>,
    audio_rtf: Option<f64>,
    audio_underrun_ms: Option<f64>,
    audio_max_gap_ms: Option<f64>,
    audio_continuity: Vec<ContinuityLine>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ContinuityLine {
    threshold_ms: u64,
    ok: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct EdgeLine {
    from_stage: u64,
    to_stage: u64,
    from_replica: Option<u64>,
    to_replica: Option<u64>,
    size_kbytes: f64,
    tx_time_ms: f64,
    rx_decode_time_ms: f64,
    in_flight_time_ms: f64,
    size_bytes: u64,
    transfers: u64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SummaryLine {
    scope: String,
    e2e_requests: u64,
    e2e_wall_time_ms: f64,
    e2e_total_tokens: u64,
    e2e_avg_time_per_request_ms: f64,
    e2e_avg_tokens_per_s: f64,
    e2e_requests_error: u64,
    e2e_requests_aborted: u64,
    invalid_spans: u64,
}

fn parse_line(line: &[u8]) -> Result<Parsed, String> {
    let tag: Tag<'_> = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    match tag.kind.as_deref() {
        Some("request") => {
            let r: RequestLine = serde_json::from_slice(line).map_err(|e| e.to_string())?;
            let status = match r.status.as_deref() {
                None => RequestStatus::Ok,
                Some(s) => {
                    RequestStatus::parse(s).ok_or_else(|| format!("unknown status {s:?}"))?
                }
            };
            Ok(Parsed::Request(Box::new(RequestE2EStats {
                request_id: r.request_id,
                status,
                status_message: r.status_message,
                scope: r.scope,
                trace_id: r.trace_id,
                e2e_total_ms: r.e2e_total_ms,
                e2e_total_tokens: r.e2e_total_tokens,
                transfers_total_time_ms: r.transfers_total_time_ms,
                transfers_total_kbytes: r.transfers_total_kbytes,
                time_to_first_output_ms: r.time_to_first_output_ms,
                time_to_first_audio_ms: r.time_to_first_audio_ms,
                audio_duration_ms: r.audio_duration_ms,
                audio_e2e_rtf: r.audio_e2e_rtf,
                invalid_spans: r.invalid_spans,
                stages: r.stages.into_iter().map(stage).collect(),
                transfers: r.transfers.into_iter().map(edge).collect(),
                ..Default::default()
            })))
        }
        Some("summary") => {
            let s: SummaryLine = serde_json::from_slice(line).map_err(|e| e.to_string())?;
            Ok(Parsed::Summary(Box::new(OverallSummary {
                scope: s.scope,
                e2e_requests: s.e2e_requests,
                e2e_wall_time_ms: s.e2e_wall_time_ms,
                e2e_total_tokens: s.e2e_total_tokens,
                e2e_avg_time_per_request_ms: s.e2e_avg_time_per_request_ms,
                e2e_avg_tokens_per_s: s.e2e_avg_tokens_per_s,
                e2e_requests_error: s.e2e_requests_error,
                e2e_requests_aborted: s.e2e_requests_aborted,
                invalid_spans: s.invalid_spans,
                ..Default::default()
            })))
        }
        _ => Ok(Parsed::Other),
    }
}

fn stage(s: StageLine) -> StageRequestStats {
    StageRequestStats {
        stage_id: s.stage_id,
        stage_name: s.stage_name.map(Into::into),
        batch_id: s.batch_id,
        batch_size: s.batch_size,
        num_tokens_in: s.num_tokens_in,
        num_tokens_out: s.num_tokens_out,
        stage_gen_time_ms: s.stage_gen_time_ms,
        postprocess_time_ms: s.postprocess_time_ms,
        audio_generated_frames: s.audio_generated_frames,
        image_num: s.image_num,
        resolution: s.resolution,
        queue_time_ms: s.queue_time_ms,
        replica_id: s.replica_id,
        num_inference_steps: s.num_inference_steps,
        denoise_step_latency_ms: s.denoise_step_latency_ms,
        audio_sample_rate: s.audio_sample_rate,
        spans: s.spans,
        wall_time_ms: s.wall_time_ms,
        output_chunks: s.output_chunks,
        output_units: s.output_units,
        time_to_first_output_ms: s.time_to_first_output_ms,
        inter_output_ms: s.inter_output_ms,
        audio_duration_ms: s.audio_duration_ms,
        audio_rtf: s.audio_rtf,
        audio_underrun_ms: s.audio_underrun_ms,
        audio_max_gap_ms: s.audio_max_gap_ms,
        audio_continuity: s
            .audio_continuity
            .into_iter()
            .map(|c| AudioContinuity {
                threshold_ms: c.threshold_ms,
                ok: c.ok,
            })
            .collect(),
        ..Default::default()
    }
}

fn edge(e: EdgeLine) -> TransferEdgeStats {
    TransferEdgeStats {
        edge: EdgeName {
            from: e.from_stage,
            to: e.to_stage,
        },
        from_stage: e.from_stage,
        to_stage: e.to_stage,
        from_replica: e.from_replica,
        to_replica: e.to_replica,
        size_kbytes: e.size_kbytes,
        tx_time_ms: e.tx_time_ms,
        rx_decode_time_ms: e.rx_decode_time_ms,
        in_flight_time_ms: e.in_flight_time_ms,
        size_bytes: e.size_bytes,
        transfers: e.transfers,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_bounded_and_bad_lines_said() {
        let text = b"{\"type\":\"request\",\"request_id\":\"a\",\"e2e_total_ms\":1}\nxxxxxxxxxxxxxxxxxxxx\n{\"type\":\"request\",\"status\":\"odd\"}\n{\"type\":\"summary\",\"scope\":\"s\",\"e2e_requests\":-1}\n\n";
        let mut reader: Box<dyn BufRead> = Box::new(&text[..]);
        let mut buf = Vec::new();
        let mut lines = Vec::new();
        while let Some(ok) = read_line(&mut *reader, &mut buf, 30).unwrap_or(None) {
            lines.push((ok, buf.len()));
        }
        assert_eq!(
            lines,
            [(false, 0), (true, 20), (false, 0), (false, 0), (true, 0)]
        );

        let mut loaded = Loaded::default();
        let mut notes = Vec::new();
        read_records(
            "r.jsonl",
            Box::new(&text[..]),
            &mut loaded,
            &mut HashSet::new(),
            &mut 0,
            &mut |n| notes.push(n.to_owned()),
        );
        assert_eq!(loaded.requests.len(), 1);
        assert_eq!(loaded.unreadable, 3, "{notes:?}");
        assert!(notes[1].contains("unknown status"), "{notes:?}");
    }
}

// The examples of this module, as unit tests (the module is internal to the crate).
#[cfg(test)]
mod examples {
    #[test]
    fn example_load() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("omni-doc-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("records.jsonl");
        std::fs::write(
            &file,
            concat!(
                r#"{"type":"request","request_id":"r-1","status":"ok","scope":"run-1","e2e_total_ms":41.5,"e2e_total_tokens":7,"stages":[],"transfers":[]}"#,
                "\n",
                r#"{"type":"summary","scope":"run-1","e2e_requests":1,"e2e_wall_time_ms":50.0,"e2e_total_tokens":7}"#,
                "\n",
            ),
        )?;
        let loaded = crate::compare::load(&[file], &mut |note| eprintln!("{note}"));
        assert_eq!(loaded.requests[0].e2e_total_ms, 41.5);
        assert_eq!(loaded.summaries[0].e2e_wall_time_ms, 50.0);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
