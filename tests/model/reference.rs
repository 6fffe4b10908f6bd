//! The reference model: SPEC.md's arithmetic, written as plainly as possible, straight from
//! a [`Schedule`]. It shares no code with the crate (only the crate's record types are
//! read, in `compare`). Every instant of a schedule is a whole microsecond, so the model
//! computes in integer microseconds, exactly, and turns them into ms only at the end.
//!
//! Where SPEC.md is silent, the model takes the reading written beside the rule, and the
//! generator keeps clear of the rest:
//! - `queue_time_ms` and a measured `postprocess_time_ms` are the *sum* of their children's
//!   durations (the record type's documentation: "summed"); only gen time subtracts the
//!   children's union.
//! - `stage_name`, `audio_sample_rate`, `resolution` and the explicit
//!   `time_to_first_output_ms` / `inter_output_ms` are given with one value per stage in a
//!   request (on any subset of its chunks), so which chunk "wins" does not matter.
//! - An explicit `inter_output_ms` replaces the mean only; the gaps (and their
//!   distribution) still come from the `omni.output` events.
//! - A stage's `audio_duration_ms` needs frames and a sample rate (none for 0 frames).
//! - When several chunks giving a `batch_id` (or `batch_size`) start at the same earliest
//!   instant, any of their values is accepted.

use std::collections::BTreeMap;

use crate::schedule::{Chunk, Request, Schedule, Transfer, Us, Window};

/// One stage of one request, as SPEC.md computes it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stage {
    pub(crate) stage_id: u64,
    pub(crate) stage_name: Option<String>,
    /// The values the record may show (several only for a tie at the earliest start).
    pub(crate) batch_id: Vec<u64>,
    pub(crate) batch_size: Vec<u64>,
    pub(crate) batch_recorded: bool,
    pub(crate) num_tokens_in: u64,
    pub(crate) num_tokens_out: u64,
    pub(crate) gen_us: u64,
    pub(crate) postprocess_us: u64,
    pub(crate) queue_us: u64,
    pub(crate) audio_generated_frames: u64,
    pub(crate) audio_sample_rate: Option<u64>,
    pub(crate) image_num: Option<u64>,
    pub(crate) resolution: Option<String>,
    pub(crate) spans: u64,
    pub(crate) start: Us,
    pub(crate) end: Us,
    pub(crate) output_chunks: u64,
    pub(crate) output_units: u64,
    pub(crate) first_output: Option<Us>,
    pub(crate) last_output: Option<Us>,
    pub(crate) time_to_first_output_us: Option<u64>,
    pub(crate) inter_output_ms: Option<f64>,
    pub(crate) gaps_us: Vec<u64>,
    pub(crate) audio_duration_ms: Option<f64>,
    pub(crate) audio_rtf: Option<f64>,
    /// Audio continuity of the stage's packets: (sum of gaps, longest gap), in ms.
    pub(crate) audio_gaps_ms: Option<(f64, f64)>,
}

/// One edge of one request.
#[derive(Clone, Debug, Default)]
pub(crate) struct Edge {
    pub(crate) from: u64,
    pub(crate) to: u64,
    pub(crate) size_bytes: u64,
    pub(crate) tx_us: u64,
    pub(crate) rx_us: u64,
    pub(crate) in_flight_us: u64,
    pub(crate) transfers: u64,
    pub(crate) start: Us,
    pub(crate) end: Us,
}

/// One finished request.
#[derive(Clone, Debug, Default)]
pub(crate) struct Req {
    pub(crate) request_id: String,
    pub(crate) status: &'static str,
    pub(crate) status_message: Option<String>,
    pub(crate) scope: String,
    pub(crate) e2e_us: u64,
    pub(crate) e2e_total_tokens: u64,
    pub(crate) transfers_total_us: u64,
    pub(crate) transfers_total_kbytes: f64,
    pub(crate) time_to_first_output_us: Option<u64>,
    pub(crate) time_to_first_audio_us: Option<u64>,
    pub(crate) audio_duration_ms: Option<f64>,
    pub(crate) audio_e2e_rtf: Option<f64>,
    pub(crate) stages: Vec<Stage>,
    pub(crate) edges: Vec<Edge>,
    pub(crate) start: Us,
    pub(crate) end: Us,
}

/// One scope's summary.
#[derive(Clone, Debug, Default)]
pub(crate) struct Summary {
    pub(crate) scope: String,
    pub(crate) e2e_requests: u64,
    pub(crate) wall_us: u64,
    pub(crate) e2e_total_tokens: u64,
    pub(crate) avg_time_per_request_ms: f64,
    pub(crate) avg_tokens_per_s: f64,
    /// `(stage id, wall in µs)`, ascending.
    pub(crate) stage_walls: Vec<(u64, u64)>,
    pub(crate) errors: u64,
    pub(crate) aborted: u64,
    /// Every value recorded, in µs, by quantity name.
    pub(crate) distributions: BTreeMap<String, Vec<u64>>,
    /// Audio streams of `ok` requests measured, and those with no gap above 100 ms.
    pub(crate) audio_streams: u64,
    pub(crate) audio_ok_100ms: u64,
    /// Requests of any status with an audio stage that produced nothing.
    pub(crate) audio_skipped: u64,
    /// Images of `ok` requests, and their pixels (`WxH` each).
    pub(crate) images: u64,
    pub(crate) pixels: u64,
}

/// What the layer must report for a schedule.
#[derive(Clone, Debug, Default)]
pub(crate) struct Expected {
    pub(crate) requests: Vec<Req>,
    pub(crate) summaries: Vec<Summary>,
}

fn to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn length((start, end): Window) -> u64 {
    end - start
}

/// How much time at least one of `windows` covers: every elementary piece between two
/// consecutive boundaries counts if some window contains it.
fn union_us(windows: &[Window]) -> u64 {
    let mut bounds: Vec<Us> = windows.iter().flat_map(|&(s, e)| [s, e]).collect();
    bounds.sort_unstable();
    bounds.dedup();
    let mut covered = 0;
    for pair in bounds.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if windows.iter().any(|&(s, e)| s <= a && b <= e) {
            covered += b - a;
        }
    }
    covered
}

/// One stage span's compute time: its explicit value, or its duration minus what its queue
/// and postprocess children cover (with an explicit postprocess time: minus the queue
/// children's coverage and that value), never below 0.
fn chunk_gen_us(c: &Chunk) -> u64 {
    if let Some(explicit) = c.gen_us.value() {
        return explicit;
    }
    let excluded = match c.postprocess_us.value() {
        Some(explicit) => union_us(&c.queues) + explicit,
        None => {
            let mut children = c.queues.clone();
            children.extend(c.postprocesses.iter().copied());
            union_us(&children)
        }
    };
    length(c.window).saturating_sub(excluded)
}

fn chunk_postprocess_us(c: &Chunk) -> u64 {
    match c.postprocess_us.value() {
        Some(explicit) => explicit,
        None => c.postprocesses.iter().map(|w| length(*w)).sum(),
    }
}

/// The value of the earliest-starting chunk that gives `field`; every value at that start
/// when chunks tie; `[0]` when none gives it.
fn earliest(chunks: &[&Chunk], field: impl Fn(&Chunk) -> Option<u64>) -> Vec<u64> {
    let giving: Vec<(Us, u64)> = chunks
        .iter()
        .filter_map(|c| field(c).map(|v| (c.window.0, v)))
        .collect();
    let Some(first) = giving.iter().map(|g| g.0).min() else {
        return vec![0];
    };
    let mut values: Vec<u64> = giving
        .iter()
        .filter(|g| g.0 == first)
        .map(|g| g.1)
        .collect();
    values.sort_unstable();
    values.dedup();
    values
}

fn stage(id: u64, chunks: &[&Chunk]) -> Stage {
    let sum = |f: &dyn Fn(&Chunk) -> u64| chunks.iter().map(|c| f(c)).sum::<u64>();
    let any = |f: &dyn Fn(&Chunk) -> Option<u64>| chunks.iter().find_map(|c| f(c));
    let start = chunks.iter().map(|c| c.window.0).min().unwrap_or(0);
    let end = chunks.iter().map(|c| c.window.1).max().unwrap_or(0);
    let mut outputs: Vec<Us> = chunks
        .iter()
        .flat_map(|c| c.outputs.iter().map(|o| o.at))
        .collect();
    outputs.sort_unstable();
    let n = outputs.len() as u64;
    let gaps_us: Vec<u64> = outputs.windows(2).map(|p| p[1] - p[0]).collect();
    let explicit_first = any(&|c| c.first_output_us.value());
    let explicit_inter = any(&|c| c.inter_output_us.value());
    let time_to_first_output_us = explicit_first.or(outputs.first().map(|t| t - start));
    let inter_output_ms = match (explicit_inter, outputs.first(), outputs.last()) {
        (Some(explicit), _, _) => Some(to_ms(explicit)),
        (None, Some(first), Some(last)) if n >= 2 => Some(to_ms(last - first) / (n - 1) as f64),
        _ => None,
    };
    let gen_us = sum(&chunk_gen_us);
    let frames = sum(&|c| c.audio_generated_frames.value().unwrap_or(0));
    let rate = any(&|c| c.audio_sample_rate.value());
    let audio_duration_ms = match rate {
        Some(rate) if frames > 0 && rate > 0 => Some(frames as f64 * 1000.0 / rate as f64),
        _ => None,
    };
    let images: Vec<u64> = chunks.iter().filter_map(|c| c.image_num.value()).collect();
    // SPEC's playback: packets of `units` frames in arrival order, each playing when it has
    // arrived and the one before has played out.
    let mut packets: Vec<(Us, u64)> = chunks
        .iter()
        .flat_map(|c| c.outputs.iter().map(|o| (o.at, o.units.unwrap_or(0))))
        .filter(|p| p.1 > 0)
        .collect();
    packets.sort_by_key(|p| p.0);
    let audio_gaps_ms = match (rate, packets.first()) {
        (Some(rate), Some(&(first, _))) if rate > 0 => {
            let mut free_at = 0.0_f64; // when the audio played so far runs out, ms after `first`
            let (mut total, mut longest) = (0.0_f64, 0.0_f64);
            for (k, &(at, units)) in packets.iter().enumerate() {
                let arrives = to_ms(at - first);
                let starts = if k == 0 {
                    arrives
                } else {
                    arrives.max(free_at)
                };
                let gap = if k == 0 { 0.0 } else { starts - free_at };
                total += gap;
                longest = longest.max(gap);
                free_at = starts + units as f64 * 1000.0 / rate as f64;
            }
            Some((total, longest))
        }
        _ => None,
    };
    Stage {
        stage_id: id,
        stage_name: chunks
            .iter()
            .find_map(|c| c.stage_name.value())
            .map(str::to_owned),
        batch_id: earliest(chunks, |c| c.batch_id.value()),
        batch_size: earliest(chunks, |c| c.batch_size.value()),
        batch_recorded: chunks.iter().any(|c| c.batch_id.value().is_some()),
        num_tokens_in: sum(&|c| c.num_tokens_in.value().unwrap_or(0)),
        num_tokens_out: sum(&|c| c.num_tokens_out.value().unwrap_or(0)),
        gen_us,
        postprocess_us: sum(&chunk_postprocess_us),
        queue_us: sum(&|c| c.queues.iter().map(|w| length(*w)).sum()),
        audio_generated_frames: frames,
        audio_sample_rate: rate,
        image_num: (!images.is_empty()).then(|| images.iter().sum()),
        resolution: chunks
            .iter()
            .find_map(|c| c.resolution.value())
            .map(str::to_owned),
        spans: chunks.len() as u64,
        start,
        end,
        output_chunks: n,
        output_units: chunks
            .iter()
            .flat_map(|c| c.outputs.iter().map(|o| o.units.unwrap_or(0)))
            .sum(),
        first_output: outputs.first().copied(),
        last_output: outputs.last().copied(),
        time_to_first_output_us,
        inter_output_ms,
        gaps_us,
        audio_duration_ms,
        audio_rtf: audio_duration_ms.map(|d| to_ms(gen_us) / d),
        audio_gaps_ms,
    }
}

/// One transfer span's in-flight time: the k-th `rx_decode` by start pairs with the k-th
/// `tx` by end, each gap clamped at 0; unpaired ones add nothing.
fn in_flight_us(t: &Transfer) -> u64 {
    let mut tx_ends: Vec<Us> = t.tx.iter().map(|w| w.1).collect();
    let mut rx_starts: Vec<Us> = t.rx.iter().map(|w| w.0).collect();
    tx_ends.sort_unstable();
    rx_starts.sort_unstable();
    tx_ends
        .iter()
        .zip(&rx_starts)
        .map(|(tx_end, rx_start)| rx_start.saturating_sub(*tx_end))
        .sum()
}

fn edge(from: u64, to: u64, transfers: &[&Transfer]) -> Edge {
    let mut e = Edge {
        from,
        to,
        transfers: transfers.len() as u64,
        start: transfers.iter().map(|t| t.window.0).min().unwrap_or(0),
        end: transfers.iter().map(|t| t.window.1).max().unwrap_or(0),
        ..Edge::default()
    };
    for t in transfers {
        e.size_bytes += t.size_bytes.value().unwrap_or(0);
        e.tx_us += t
            .tx_us
            .value()
            .unwrap_or_else(|| t.tx.iter().map(|w| length(*w)).sum());
        e.rx_us += t
            .rx_us
            .value()
            .unwrap_or_else(|| t.rx.iter().map(|w| length(*w)).sum());
        e.in_flight_us += t.in_flight_us.value().unwrap_or_else(|| in_flight_us(t));
    }
    e
}

/// A stage's first output counted from the request's start.
fn since_request(s: &Stage, request_start: Us) -> Option<u64> {
    s.time_to_first_output_us
        .map(|own| s.start - request_start + own)
}

fn request(r: &Request, scope: &str) -> Req {
    // A request aborted by a record (a typed request or guard dropped unfinished) ends
    // there; its stages and transfers that close later are not its.
    let end = match r.status.late() {
        Some((at, "aborted")) => at.clamp(r.window.0, r.window.1),
        _ => r.window.1,
    };
    let kept = |window: Window| window.1 <= end;
    let owned = Request {
        chunks: r
            .chunks
            .iter()
            .filter(|c| kept(c.window))
            .cloned()
            .collect(),
        transfers: r
            .transfers
            .iter()
            .filter(|t| kept(t.window))
            .cloned()
            .collect(),
        window: (r.window.0, end),
        ..r.clone()
    };
    let r = &owned;
    let mut ids: Vec<u64> = r.chunks.iter().map(|c| c.stage_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let stages: Vec<Stage> = ids
        .iter()
        .map(|&id| {
            let chunks: Vec<&Chunk> = r.chunks.iter().filter(|c| c.stage_id == id).collect();
            stage(id, &chunks)
        })
        .collect();
    let mut pairs: Vec<(u64, u64)> = r
        .transfers
        .iter()
        .map(|t| (t.from_stage, t.to_stage))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let edges: Vec<Edge> = pairs
        .iter()
        .map(|&(from, to)| {
            let ts: Vec<&Transfer> = r
                .transfers
                .iter()
                .filter(|t| (t.from_stage, t.to_stage) == (from, to))
                .collect();
            edge(from, to, &ts)
        })
        .collect();
    let input = stages
        .iter()
        .find(|s| s.stage_id == 0)
        .map_or(0, |s| s.num_tokens_in);
    let e2e_us = length(r.window);
    let last = stages.last();
    let first_audio = stages.iter().find(|s| s.audio_sample_rate.is_some());
    let audio_duration_ms = stages.iter().rev().find_map(|s| s.audio_duration_ms);
    Req {
        request_id: r.request_id.clone(),
        status: r.status.value().unwrap_or("ok"),
        status_message: r.status_message.value(),
        scope: scope.to_owned(),
        e2e_us,
        e2e_total_tokens: input + stages.iter().map(|s| s.num_tokens_out).sum::<u64>(),
        transfers_total_us: edges
            .iter()
            .map(|e| e.tx_us + e.rx_us + e.in_flight_us)
            .sum(),
        transfers_total_kbytes: edges.iter().map(|e| e.size_bytes as f64 / 1024.0).sum(),
        time_to_first_output_us: last.and_then(|s| since_request(s, r.window.0)),
        time_to_first_audio_us: first_audio.and_then(|s| since_request(s, r.window.0)),
        audio_duration_ms,
        audio_e2e_rtf: audio_duration_ms.map(|d| to_ms(e2e_us) / d),
        stages,
        edges,
        start: r.window.0,
        end: r.window.1,
    }
}

fn summary(scope: &str, start: Us, requests: &[Req]) -> Summary {
    let ok: Vec<&Req> = requests.iter().filter(|r| r.status == "ok").collect();
    let n = ok.len() as u64;
    let wall_us = ok.iter().map(|r| r.end - start).max().unwrap_or(0);
    let tokens: u64 = ok.iter().map(|r| r.e2e_total_tokens).sum();
    let mut walls: BTreeMap<u64, (Us, Us)> = BTreeMap::new();
    let mut d: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut add = |name: String, us: u64| d.entry(name).or_default().push(us);
    for r in &ok {
        add("e2e_total_ms".into(), r.e2e_us);
        if let Some(us) = r.time_to_first_output_us {
            add("time_to_first_output_ms".into(), us);
        }
        if let Some(us) = r.time_to_first_audio_us {
            add("time_to_first_audio_ms".into(), us);
        }
        for s in &r.stages {
            let id = s.stage_id;
            let w = walls.entry(id).or_insert((s.start, s.end));
            *w = (w.0.min(s.start), w.1.max(s.end));
            add(format!("stage_{id}_gen_time_ms"), s.gen_us);
            add(format!("stage_{id}_queue_time_ms"), s.queue_us);
            if let Some(us) = s.time_to_first_output_us {
                add(format!("stage_{id}_time_to_first_output_ms"), us);
            }
            for gap in &s.gaps_us {
                add(format!("stage_{id}_inter_output_ms"), *gap);
            }
        }
        for e in &r.edges {
            let name = format!("transfer_{}->{}_time_ms", e.from, e.to);
            add(name, e.tx_us + e.rx_us + e.in_flight_us);
        }
    }
    let wall_ms = to_ms(wall_us);
    Summary {
        scope: scope.to_owned(),
        e2e_requests: n,
        wall_us,
        e2e_total_tokens: tokens,
        avg_time_per_request_ms: if n == 0 { 0.0 } else { wall_ms / n as f64 },
        avg_tokens_per_s: if wall_us == 0 {
            0.0
        } else {
            tokens as f64 * 1000.0 / wall_ms
        },
        stage_walls: walls.into_iter().map(|(id, (s, e))| (id, e - s)).collect(),
        errors: requests.iter().filter(|r| r.status == "error").count() as u64,
        aborted: requests.iter().filter(|r| r.status == "aborted").count() as u64,
        distributions: d,
        audio_streams: ok
            .iter()
            .flat_map(|r| &r.stages)
            .filter(|s| s.audio_gaps_ms.is_some())
            .count() as u64,
        audio_ok_100ms: ok
            .iter()
            .flat_map(|r| &r.stages)
            .filter(|s| s.audio_gaps_ms.is_some_and(|g| g.1 <= 100.0))
            .count() as u64,
        images: ok
            .iter()
            .flat_map(|r| &r.stages)
            .map(|s| s.image_num.unwrap_or(0))
            .sum(),
        pixels: ok
            .iter()
            .flat_map(|r| &r.stages)
            .map(|s| {
                let (w, h) = s
                    .resolution
                    .as_deref()
                    .and_then(|r| r.split_once('x'))
                    .unwrap_or(("0", "0"));
                s.image_num.unwrap_or(0)
                    * w.parse::<u64>().unwrap_or(0)
                    * h.parse::<u64>().unwrap_or(0)
            })
            .sum(),
        audio_skipped: requests
            .iter()
            .filter(|r| {
                r.stages.iter().any(|s| {
                    s.audio_sample_rate.is_some()
                        && s.audio_gaps_ms.is_none()
                        && s.audio_generated_frames == 0
                        && s.output_units == 0
                })
            })
            .count() as u64,
    }
}

/// What SPEC.md says the layer reports for `schedule`.
pub(crate) fn expect(schedule: &Schedule) -> Expected {
    let mut out = Expected::default();
    for run in &schedule.runs {
        let requests: Vec<Req> = run
            .requests
            .iter()
            .map(|r| request(r, &run.run_id))
            .collect();
        out.summaries
            .push(summary(&run.run_id, run.window.0, &requests));
        out.requests.extend(requests);
    }
    for r in &schedule.online {
        let req = request(r, &r.request_id);
        out.summaries.push(summary(
            &r.request_id,
            r.window.0,
            std::slice::from_ref(&req),
        ));
        out.requests.push(req);
    }
    out
}
