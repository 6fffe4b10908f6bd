//! Per-request and per-scope accumulation: closed stage and transfer spans in, the stats
//! model's records out. Every formula used here lives in [`crate::stats`].

use smallvec::SmallVec;

use crate::diagnostics::IssueSet;
use crate::distribution::DistributionRecorder;
use crate::stats::{
    self, EdgeName, OverallSummary, RequestE2EStats, RequestStatus, StageRequestStats,
    StatusCounts, TransferEdgeStats,
};

/// What one closed `omni.stage` span contributes to its request.
///
/// What most stages never set is in [`StageRare`], boxed, so that the common sample stays
/// small as it moves from the span to its request.
#[derive(Debug)]
pub(crate) struct StageSample {
    pub(crate) stage_id: u64,
    pub(crate) stage_name: Option<std::sync::Arc<str>>,
    pub(crate) batch_id: Option<u64>,
    pub(crate) batch_size: Option<u64>,
    pub(crate) num_tokens_in: u64,
    pub(crate) num_tokens_out: u64,
    pub(crate) stage_gen_time_ms: f64,
    pub(crate) postprocess_time_ms: f64,
    pub(crate) queue_time_ms: f64,
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
    pub(crate) rare: Option<Box<StageRare>>,
}

/// The fields of an `omni.stage` that only some stages set (audio, images, outputs, times
/// measured elsewhere), apart from the rest.
#[derive(Debug, Default)]
pub(crate) struct StageRare {
    pub(crate) audio_generated_frames: u64,
    pub(crate) audio_sample_rate: Option<u64>,
    pub(crate) image_num: Option<u64>,
    pub(crate) resolution: Option<String>,
    pub(crate) replica_id: Option<u64>,
    pub(crate) num_inference_steps: Option<u64>,
    pub(crate) video_frames: u64,
    pub(crate) video_fps: Option<u64>,
    pub(crate) gen_override_ms: Option<f64>,
    pub(crate) postprocess_override_ms: Option<f64>,
    /// Explicit `time_to_first_output_ms` (wins over the events).
    pub(crate) first_output_override_ms: Option<f64>,
    /// Explicit `inter_output_ms` (wins over the events).
    pub(crate) inter_output_override_ms: Option<f64>,
    /// The span's `omni.output` events.
    pub(crate) outputs: Outputs,
}

/// The `omni.output` events of a stage: of one span, then merged over the stage's spans.
///
/// Gaps are taken between consecutive outputs of the whole stage in time order, across all
/// its chunks (chunk spans may overlap in time), so the times themselves are kept: the
/// earliest [`stats::MAX_OUTPUT_GAPS`] + 1 of them, which merging two stages' earliest
/// keeps exact (the earliest of a union lie among the earliest of each part).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Outputs {
    chunks: u64,
    units: u64,
    first_ns: Option<u64>,
    last_ns: u64,
    /// The earliest outputs, in time order (at most [`stats::MAX_OUTPUT_GAPS`] + 1): each
    /// event's time and units (audio continuity plays them back).
    times_ns: Vec<(u64, u64)>,
}

/// Output times kept per stage: one more than the gaps kept.
const MAX_OUTPUT_TIMES: usize = stats::MAX_OUTPUT_GAPS + 1;

impl Outputs {
    /// One `omni.output` event at `now` carrying `units`.
    pub(crate) fn output(&mut self, now: u64, units: u64) {
        self.first_ns = Some(self.first_ns.map_or(now, |first| first.min(now)));
        self.last_ns = self.last_ns.max(now);
        self.chunks = self.chunks.saturating_add(1);
        self.units = self.units.saturating_add(units);
        // Events of one span arrive in time order: almost always a push at the end.
        match self.times_ns.last() {
            Some(&(last, _)) if now < last => {
                let at = self.times_ns.partition_point(|&(t, _)| t <= now);
                self.times_ns.insert(at, (now, units));
                self.times_ns.truncate(MAX_OUTPUT_TIMES);
            }
            _ if self.times_ns.len() < MAX_OUTPUT_TIMES => self.times_ns.push((now, units)),
            _ => {}
        }
    }

    /// Adds another span's events of the same stage: the outputs of both, in time order.
    fn merge(&mut self, other: Outputs) {
        if other.first_ns.is_none() {
            return;
        }
        if self.first_ns.is_none() {
            *self = other;
            return;
        }
        self.chunks = self.chunks.saturating_add(other.chunks);
        self.units = self.units.saturating_add(other.units);
        self.first_ns = self.first_ns.min(other.first_ns).or(other.first_ns);
        self.last_ns = self.last_ns.max(other.last_ns);
        let (mine, theirs) = (std::mem::take(&mut self.times_ns), other.times_ns);
        let mut merged = Vec::with_capacity((mine.len() + theirs.len()).min(MAX_OUTPUT_TIMES));
        let (mut a, mut b) = (mine.iter().peekable(), theirs.iter().peekable());
        while merged.len() < MAX_OUTPUT_TIMES {
            let next = match (a.peek(), b.peek()) {
                (Some(&&(x, _)), Some(&&(y, _))) if x <= y => a.next(),
                (Some(_), Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, _) => b.next(),
            };
            match next {
                Some(&t) => merged.push(t),
                None => break,
            }
        }
        self.times_ns = merged;
    }

    /// The gaps between consecutive outputs kept, in ms (the first
    /// [`stats::MAX_OUTPUT_GAPS`] of the stage's).
    fn gaps_ms(&self) -> Vec<f64> {
        self.times_ns
            .windows(2)
            .map(|w| stats::elapsed_ms(w[0].0, w[1].0))
            .collect()
    }
}

/// What a stage keeps beside its [`StageRequestStats`] until the request finishes.
#[derive(Debug, Default)]
struct StageSide {
    /// The start of the earliest-starting span that gave a `batch_id` (the stage's
    /// `batch_id` is that span's; absent and 0 differ).
    batch_id_from_ns: Option<u64>,
    /// The same for `batch_size`.
    batch_size_from_ns: Option<u64>,
    /// Outputs and explicit output times, merged over the stage's spans (the other rare
    /// fields are summed into the stage's row).
    rare: Option<Box<StageRare>>,
}

/// What one closed `omni.transfer` span contributes to its request's edge.
#[derive(Debug)]
pub(crate) struct TransferSample {
    pub(crate) from_stage: u64,
    pub(crate) to_stage: u64,
    pub(crate) from_replica: Option<u64>,
    pub(crate) to_replica: Option<u64>,
    pub(crate) size_bytes: u64,
    pub(crate) tx_time_ms: f64,
    pub(crate) rx_decode_time_ms: f64,
    pub(crate) in_flight_time_ms: f64,
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
}

/// One request's stages and edges, merged by id as their spans close.
#[derive(Debug, Default)]
pub(crate) struct RequestAcc {
    /// The request's `request_id`, once recorded (kept here so that the handle's list of
    /// open spans can name a request that never closes).
    request_id: Option<String>,
    /// Why the request failed, when recorded (`status_message`).
    status_message: Option<String>,
    stages: Vec<StageRequestStats>,
    /// Per entry of `stages`: what is merged apart until the request finishes.
    sides: SmallVec<[StageSide; 4]>,
    edges: Vec<TransferEdgeStats>,
    invalid_spans: u64,
    /// Transfers that closed without tx or rx: a convention violation only if the request
    /// ends `ok` (a cancelled request stops transfers half way).
    incomplete: IssueSet,
    incomplete_spans: u64,
    /// Strings of finished requests (their id and scope), kept for the next request of a
    /// pooled accumulator.
    spare: SmallVec<[String; 2]>,
}

impl RequestAcc {
    /// Whether a stage of the request has closed (it is past waiting for its first).
    pub(crate) fn has_stages(&self) -> bool {
        !self.stages.is_empty()
    }

    /// Sets the request's id, written by `write` into a reused buffer.
    pub(crate) fn set_request_id_with(&mut self, write: impl FnOnce(&mut String)) {
        let mut id = self
            .request_id
            .take()
            .unwrap_or_else(|| self.spare_string());
        id.clear();
        write(&mut id);
        self.request_id = Some(id);
    }

    /// An empty string, reusing a finished request's buffer when there is one.
    pub(crate) fn spare_string(&mut self) -> String {
        self.spare.pop().unwrap_or_default()
    }

    /// Empties the accumulator for another request. `report`, a finished record nobody
    /// kept, gives back the buffers [`RequestAcc::finish`] moved into it.
    pub(crate) fn recycle(&mut self, report: Option<&mut RequestE2EStats>) {
        // Field by field, in place (building a new accumulator and dropping the old one
        // moved it twice); every field is named, so a new one cannot be forgotten here.
        let Self {
            request_id,
            status_message,
            stages,
            sides,
            edges,
            invalid_spans,
            incomplete,
            incomplete_spans,
            spare,
        } = self;
        // The record's buffers are taken, not the record: it is 288 bytes to move.
        if let Some(report) = report {
            let (mut their_stages, mut their_edges) = (
                std::mem::take(&mut report.stages),
                std::mem::take(&mut report.transfers),
            );
            let texts = [
                std::mem::take(&mut report.request_id),
                std::mem::take(&mut report.scope),
            ];
            for mut text in texts {
                if spare.len() < 2 && text.capacity() > 0 {
                    text.clear();
                    spare.push(text);
                }
            }
            their_stages.clear();
            their_edges.clear();
            *stages = their_stages;
            *edges = their_edges;
        } else {
            stages.clear();
            edges.clear();
        }
        sides.clear();
        *request_id = None;
        *status_message = None;
        *invalid_spans = 0;
        *incomplete = IssueSet::default();
        *incomplete_spans = 0;
    }

    /// Sets why the request failed.
    pub(crate) fn set_status_message(&mut self, message: String) {
        self.status_message = Some(message);
    }

    /// The request's id, if recorded.
    pub(crate) fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// Takes the request's id out, at close.
    pub(crate) fn take_request_id(&mut self) -> Option<String> {
        self.request_id.take()
    }

    /// Counts one span of this request that broke the convention.
    pub(crate) fn count_invalid(&mut self) {
        self.invalid_spans = self.invalid_spans.saturating_add(1);
    }

    /// Notes a transfer that closed without tx or rx (see [`RequestAcc::settle`]).
    pub(crate) fn defer_incomplete(&mut self, issues: IssueSet) {
        if !issues.is_empty() {
            self.incomplete = self.incomplete.union(issues);
            self.incomplete_spans = self.incomplete_spans.saturating_add(1);
        }
    }

    /// Once the request's status is known: the incomplete transfers it cannot explain, as
    /// `(issues, spans)`, now counted as invalid. An `error` or `aborted` request explains
    /// them (it stopped half way), so they are not counted then.
    pub(crate) fn settle(&mut self, status: RequestStatus) -> (IssueSet, u64) {
        let issues = std::mem::take(&mut self.incomplete);
        let spans = std::mem::take(&mut self.incomplete_spans);
        if status != RequestStatus::Ok || spans == 0 {
            return (IssueSet::default(), 0);
        }
        self.invalid_spans = self.invalid_spans.saturating_add(spans);
        (issues, spans)
    }

    /// Adds one stage span; a repeated `stage_id` (a chunk) is summed into the first.
    ///
    /// Chunks may close out of order and be computed in different batches (continuous
    /// batching): `batch_id` and `batch_size` are each those of the earliest-starting span
    /// that gives them (the first to close among spans starting together).
    #[inline]
    pub(crate) fn add_stage(&mut self, s: &mut StageSample) {
        let found = self.stages.iter().position(|a| a.stage_id == s.stage_id);
        match found.and_then(|i| Some((self.stages.get_mut(i)?, self.sides.get_mut(i)?))) {
            Some((acc, side)) => merge_chunk(acc, side, s),
            None => self.new_stage(s),
        }
    }

    /// The first span of a stage in this request: its row, and what is kept beside it.
    #[inline]
    fn new_stage(&mut self, s: &mut StageSample) {
        // Filled in place: the row is 520 bytes, a copy of it per stage showed in the cost.
        self.stages
            .resize_with(self.stages.len() + 1, StageRequestStats::default);
        let Some(stats) = self.stages.last_mut() else {
            return;
        };
        stats.stage_id = s.stage_id;
        stats.stage_name = s.stage_name.take();
        stats.batch_id = s.batch_id.unwrap_or(0);
        stats.batch_size = s.batch_size.unwrap_or(0);
        stats.num_tokens_in = s.num_tokens_in;
        stats.num_tokens_out = s.num_tokens_out;
        stats.stage_gen_time_ms = s.stage_gen_time_ms;
        stats.postprocess_time_ms = s.postprocess_time_ms;
        stats.queue_time_ms = s.queue_time_ms;
        stats.spans = 1;
        stats.wall_time_ms = 0.0;
        stats.start_ns = s.start_ns;
        stats.end_ns = s.end_ns;
        stats.batch_recorded = s.batch_id.is_some();
        if let Some(rare) = s.rare.as_deref_mut() {
            stats.audio_generated_frames = rare.audio_generated_frames;
            stats.audio_sample_rate = rare.audio_sample_rate;
            stats.image_num = rare.image_num;
            stats.resolution = rare.resolution.take();
            stats.replica_id = rare.replica_id;
            stats.num_inference_steps = rare.num_inference_steps;
            stats.video_frames = rare.video_frames;
            stats.video_fps = rare.video_fps;
        }
        self.sides.push(StageSide {
            batch_id_from_ns: s.batch_id.map(|_| s.start_ns),
            batch_size_from_ns: s.batch_size.map(|_| s.start_ns),
            rare: s.rare.take(),
        });
    }
    /// Adds one transfer span; a repeated edge (a chunk) is summed, bytes and times together.
    pub(crate) fn add_transfer(&mut self, t: TransferSample) {
        let edge = match self
            .edges
            .iter_mut()
            .find(|e| e.from_stage == t.from_stage && e.to_stage == t.to_stage)
        {
            Some(edge) => edge,
            None => {
                // Filled in place, as a stage's row.
                self.edges.push(TransferEdgeStats::default());
                let Some(edge) = self.edges.last_mut() else {
                    return;
                };
                edge.edge = EdgeName {
                    from: t.from_stage,
                    to: t.to_stage,
                };
                edge.from_stage = t.from_stage;
                edge.to_stage = t.to_stage;
                edge
            }
        };
        let earlier = edge.transfers == 0 || t.start_ns < edge.start_ns;
        keep_earliest(&mut edge.from_replica, t.from_replica, earlier);
        keep_earliest(&mut edge.to_replica, t.to_replica, earlier);
        edge.size_bytes = edge.size_bytes.saturating_add(t.size_bytes);
        edge.tx_time_ms = stats::add_ms(edge.tx_time_ms, t.tx_time_ms);
        edge.rx_decode_time_ms = stats::add_ms(edge.rx_decode_time_ms, t.rx_decode_time_ms);
        edge.in_flight_time_ms = stats::add_ms(edge.in_flight_time_ms, t.in_flight_time_ms);
        if edge.transfers == 0 {
            edge.start_ns = t.start_ns;
            edge.end_ns = t.end_ns;
        } else {
            edge.start_ns = edge.start_ns.min(t.start_ns);
            edge.end_ns = edge.end_ns.max(t.end_ns);
        }
        edge.transfers = edge.transfers.saturating_add(1);
    }

    /// The finished request's record; the accumulator is left to [`RequestAcc::recycle`].
    /// `thresholds_ms`: the audio continuity thresholds each audio stage is judged at.
    pub(crate) fn finish(
        &mut self,
        request_id: String,
        status: RequestStatus,
        scope: String,
        (start_ns, end_ns): (u64, u64),
        thresholds_ms: &[u64],
    ) -> RequestE2EStats {
        let mut stages = std::mem::take(&mut self.stages);
        let mut edges = std::mem::take(&mut self.edges);
        let invalid_spans = self.invalid_spans;
        let status_message = self.status_message.take();
        for (s, side) in stages.iter_mut().zip(self.sides.drain(..)) {
            s.wall_time_ms = stats::elapsed_ms(s.start_ns, s.end_ns);
            let mut continuity_packets = None;
            if let Some(rare) = side.rare {
                let outputs = &rare.outputs;
                let first_ns = outputs.first_ns;
                s.output_chunks = outputs.chunks;
                s.output_units = outputs.units;
                s.first_output_ns = first_ns;
                s.last_output_ns = first_ns.map(|_| outputs.last_ns);
                s.time_to_first_output_ms = rare.first_output_override_ms.or_else(|| {
                    first_ns.map(|first| stats::time_to_first_output_ms(s.start_ns, first))
                });
                s.inter_output_ms = rare.inter_output_override_ms.or_else(|| {
                    first_ns.and_then(|first| {
                        stats::inter_output_ms(first, outputs.last_ns, outputs.chunks)
                    })
                });
                s.inter_output_gaps_ms = outputs.gaps_ms();
                continuity_packets = Some(rare.outputs.times_ns);
            }
            s.audio_duration_ms = s
                .audio_sample_rate
                .and_then(|rate| stats::audio_duration_ms(s.audio_generated_frames, rate));
            s.audio_rtf = stats::rtf(s.stage_gen_time_ms, s.audio_duration_ms);
            s.denoise_step_latency_ms = s
                .num_inference_steps
                .and_then(|steps| stats::denoise_step_latency_ms(s.stage_gen_time_ms, steps));
            s.video_duration_ms = s
                .video_fps
                .and_then(|fps| stats::audio_duration_ms(s.video_frames, fps));
            s.video_rtf = stats::rtf(s.stage_gen_time_ms, s.video_duration_ms);
            if let Some(rate) = s.audio_sample_rate {
                audio_continuity(s, continuity_packets.take(), rate, status, thresholds_ms);
            }
        }
        stages.sort_by_key(|s| s.stage_id);
        edges.sort_by_key(|e| (e.from_stage, e.to_stage));
        for e in &mut edges {
            e.size_kbytes = stats::kbytes(e.size_bytes);
        }
        let e2e_total_ms = stats::elapsed_ms(start_ns, end_ns);
        let audio_duration_ms = stats::request_audio_duration_ms(&stages);
        RequestE2EStats {
            request_id,
            status,
            status_message,
            scope,
            // The layer's, set when the record is emitted.
            model_name: None,
            trace_id: None,
            // The replay's, for traces of another shape.
            source: None,
            e2e_total_ms,
            time_to_first_output_ms: stats::request_time_to_first_output_ms(&stages, start_ns),
            time_to_first_audio_ms: stats::time_to_first_audio_ms(&stages, start_ns),
            audio_duration_ms,
            audio_e2e_rtf: stats::rtf(e2e_total_ms, audio_duration_ms),
            e2e_total_tokens: stats::e2e_total_tokens(&stages),
            transfers_total_time_ms: stats::transfers_total_time_ms(&edges),
            transfers_total_kbytes: stats::transfers_total_kbytes(&edges),
            invalid_spans,
            stages,
            transfers: edges,
            start_ns,
            end_ns,
        }
    }
}

/// An audio stage's continuity (`rate`: its sample rate) from its output events
/// (`packets`: time and frames, in time order), judged at each of `thresholds_ms`; or why
/// it has no audio.
fn audio_continuity(
    s: &mut StageRequestStats,
    packets: Option<Vec<(u64, u64)>>,
    rate: u64,
    status: RequestStatus,
    thresholds_ms: &[u64],
) {
    let measured = packets.and_then(|p| stats::audio_playback(p, rate));
    if let Some(playback) = measured {
        let max_gap_ms = playback.max_gap_ms;
        s.audio_underrun_ms = Some(playback.underrun_ms);
        s.audio_max_gap_ms = Some(max_gap_ms);
        s.audio_gaps_ns = playback.gaps_ns;
        s.audio_continuity = thresholds_ms
            .iter()
            .map(|&threshold_ms| stats::AudioContinuity {
                threshold_ms,
                ok: max_gap_ms <= threshold_ms as f64,
            })
            .collect();
    } else if s.audio_generated_frames == 0 && s.output_units == 0 {
        s.audio_skipped = Some(match status {
            RequestStatus::Ok => "no_frames",
            RequestStatus::Error => "error",
            RequestStatus::Aborted => "aborted",
        });
    }
}

/// A value of a stage's or edge's chunks where the earliest-starting chunk's stands
/// (`earlier`: this chunk starts before those merged so far); a chunk without one leaves it.
fn keep_earliest(mine: &mut Option<u64>, theirs: Option<u64>, earlier: bool) {
    if earlier || mine.is_none() {
        *mine = theirs.or(*mine);
    }
}

/// Sums another span (a chunk) of a stage into its row (`acc`) and what is kept beside it:
/// counts and times added, `batch_id` and `batch_size` those of the earliest-starting span
/// that gives them, the first name, resolution and sample rate given.
fn merge_chunk(acc: &mut StageRequestStats, side: &mut StageSide, s: &mut StageSample) {
    if let Some(theirs) = s.rare.take() {
        let earlier = s.start_ns < acc.start_ns;
        merge_rare(acc, side, theirs, earlier);
    }
    // Whether this span starts before the one `from` names (or none gave the value).
    let earliest = |from: Option<u64>| from.is_none_or(|from| s.start_ns < from);
    if let Some(batch_id) = s.batch_id.filter(|_| earliest(side.batch_id_from_ns)) {
        side.batch_id_from_ns = Some(s.start_ns);
        acc.batch_id = batch_id;
        acc.batch_recorded = true;
    }
    if let Some(size) = s.batch_size.filter(|_| earliest(side.batch_size_from_ns)) {
        side.batch_size_from_ns = Some(s.start_ns);
        acc.batch_size = size;
    }
    if acc.stage_name.is_none() {
        acc.stage_name = s.stage_name.take();
    }
    acc.num_tokens_in = acc.num_tokens_in.saturating_add(s.num_tokens_in);
    acc.num_tokens_out = acc.num_tokens_out.saturating_add(s.num_tokens_out);
    acc.stage_gen_time_ms = stats::add_ms(acc.stage_gen_time_ms, s.stage_gen_time_ms);
    acc.postprocess_time_ms = stats::add_ms(acc.postprocess_time_ms, s.postprocess_time_ms);
    acc.queue_time_ms = stats::add_ms(acc.queue_time_ms, s.queue_time_ms);
    acc.spans = acc.spans.saturating_add(1);
    acc.start_ns = acc.start_ns.min(s.start_ns);
    acc.end_ns = acc.end_ns.max(s.end_ns);
}

/// A chunk's rare fields into its stage (`earlier`: the chunk starts before every one
/// merged so far): audio frames, images, video frames and inference steps summed, the
/// first sample rate, frame rate and resolution kept, the earliest chunk's replica, outputs merged in time order, the first explicit output
/// times kept.
fn merge_rare(
    acc: &mut StageRequestStats,
    side: &mut StageSide,
    mut theirs: Box<StageRare>,
    earlier: bool,
) {
    acc.audio_generated_frames = acc
        .audio_generated_frames
        .saturating_add(theirs.audio_generated_frames);
    acc.audio_sample_rate = acc.audio_sample_rate.or(theirs.audio_sample_rate);
    acc.image_num = match (acc.image_num, theirs.image_num) {
        (Some(a), Some(b)) => Some(a.saturating_add(b)),
        (a, b) => a.or(b),
    };
    if acc.resolution.is_none() {
        acc.resolution = theirs.resolution.take();
    }
    // The earliest-starting chunk's replica stands (as its batch does).
    keep_earliest(&mut acc.replica_id, theirs.replica_id, earlier);
    acc.num_inference_steps = match (acc.num_inference_steps, theirs.num_inference_steps) {
        (Some(a), Some(b)) => Some(a.saturating_add(b)),
        (a, b) => a.or(b),
    };
    acc.video_frames = acc.video_frames.saturating_add(theirs.video_frames);
    acc.video_fps = acc.video_fps.or(theirs.video_fps);
    match side.rare.as_deref_mut() {
        Some(mine) => {
            mine.outputs.merge(std::mem::take(&mut theirs.outputs));
            mine.first_output_override_ms = mine
                .first_output_override_ms
                .or(theirs.first_output_override_ms);
            mine.inter_output_override_ms = mine
                .inter_output_override_ms
                .or(theirs.inter_output_override_ms);
        }
        None => side.rare = Some(theirs),
    }
}

/// Request ids a run keeps to spot a repeated id; see [`ScopeAcc::note_request_id`].
pub(crate) const MAX_TRACKED_REQUEST_IDS: usize = 100_000;

/// One scope's running totals: a run, or an online request on its own.
#[derive(Debug)]
pub(crate) struct ScopeAcc {
    start_ns: u64,
    last_completion_ns: Option<u64>,
    requests: StatusCounts,
    total_tokens: u64,
    invalid_spans: u64,
    /// `(stage id, earliest start, latest end)` over completed requests.
    stage_windows: Vec<(u64, u64, u64)>,
    /// Hashes of the request ids seen (runs only), to spot a repeated id.
    request_ids: std::collections::HashSet<u64>,
    ids_hasher: std::collections::hash_map::RandomState,
    /// Latency distributions of the completed requests (bounded: no per-request data).
    distributions: DistributionRecorder,
    /// Audio streams of completed requests with their continuity measured.
    audio_streams: u64,
    /// `(threshold_ms, streams with no gap above it)`.
    audio_continuity_ok: Vec<(u64, u64)>,
    /// Requests whose audio stage produced no frames (any status).
    audio_skipped_requests: u64,
    /// Images generated by completed requests, and their pixels.
    images: u64,
    pixels: u64,
}

impl ScopeAcc {
    pub(crate) fn new(start_ns: u64) -> Self {
        Self {
            start_ns,
            last_completion_ns: None,
            requests: StatusCounts::default(),
            total_tokens: 0,
            invalid_spans: 0,
            stage_windows: Vec::new(),
            request_ids: std::collections::HashSet::new(),
            ids_hasher: std::collections::hash_map::RandomState::new(),
            distributions: DistributionRecorder::new(),
            audio_streams: 0,
            audio_continuity_ok: Vec::new(),
            audio_skipped_requests: 0,
            images: 0,
            pixels: 0,
        }
    }

    /// Counts one span of the scope itself that broke the convention (the run's own).
    pub(crate) fn count_invalid(&mut self) {
        self.invalid_spans = self.invalid_spans.saturating_add(1);
    }

    /// Notes a request id of the scope; `false` if the scope has seen it before.
    ///
    /// Memory stays bounded: the first [`MAX_TRACKED_REQUEST_IDS`] ids are kept (about
    /// 1.2 MiB); a later id is checked against them but not kept, so a repeat of an id first
    /// seen after that many requests goes unnoticed.
    pub(crate) fn note_request_id(&mut self, request_id: &str) -> bool {
        use std::hash::BuildHasher as _;
        let hash = self.ids_hasher.hash_one(request_id);
        if self.request_ids.len() >= MAX_TRACKED_REQUEST_IDS {
            return !self.request_ids.contains(&hash);
        }
        self.request_ids.insert(hash)
    }

    /// Adds a finished request. Only `ok` requests count in the summary's figures; the
    /// others are counted apart.
    pub(crate) fn add(&mut self, r: &RequestE2EStats) {
        self.invalid_spans = self.invalid_spans.saturating_add(r.invalid_spans);
        if r.stages.iter().any(|s| s.audio_skipped.is_some()) {
            self.audio_skipped_requests = self.audio_skipped_requests.saturating_add(1);
        }
        if !self.requests.add(r.status) {
            return;
        }
        self.total_tokens = self.total_tokens.saturating_add(r.e2e_total_tokens);
        self.last_completion_ns = Some(self.last_completion_ns.unwrap_or(0).max(r.end_ns));
        for s in &r.stages {
            if s.audio_underrun_ms.is_some() {
                self.audio_streams = self.audio_streams.saturating_add(1);
                for c in &s.audio_continuity {
                    add_continuity(
                        &mut self.audio_continuity_ok,
                        c.threshold_ms,
                        u64::from(c.ok),
                    );
                }
            }
            let (images, pixels) = stats::images_and_pixels(s);
            self.images = self.images.saturating_add(images);
            self.pixels = self.pixels.saturating_add(pixels);
            match self.stage_windows.iter_mut().find(|w| w.0 == s.stage_id) {
                Some(w) => {
                    w.1 = w.1.min(s.start_ns);
                    w.2 = w.2.max(s.end_ns);
                }
                None => self.stage_windows.push((s.stage_id, s.start_ns, s.end_ns)),
            }
        }
        self.distributions.add_request(r);
    }

    /// Adds everything `other` accumulated, as if its requests had been added here; the
    /// scope's start stays this one's. Request ids are not merged (the scopes merged are
    /// the online aggregates, which keep none).
    pub(crate) fn merge(&mut self, other: &ScopeAcc) {
        self.requests.merge(other.requests);
        self.audio_streams = self.audio_streams.saturating_add(other.audio_streams);
        self.audio_skipped_requests = self
            .audio_skipped_requests
            .saturating_add(other.audio_skipped_requests);
        for &(threshold_ms, ok) in &other.audio_continuity_ok {
            add_continuity(&mut self.audio_continuity_ok, threshold_ms, ok);
        }
        self.images = self.images.saturating_add(other.images);
        self.pixels = self.pixels.saturating_add(other.pixels);
        self.total_tokens = self.total_tokens.saturating_add(other.total_tokens);
        self.invalid_spans = self.invalid_spans.saturating_add(other.invalid_spans);
        self.last_completion_ns = match (self.last_completion_ns, other.last_completion_ns) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        for &(id, start, end) in &other.stage_windows {
            match self.stage_windows.iter_mut().find(|w| w.0 == id) {
                Some(w) => {
                    w.1 = w.1.min(start);
                    w.2 = w.2.max(end);
                }
                None => self.stage_windows.push((id, start, end)),
            }
        }
        self.distributions.merge(&other.distributions);
    }

    /// Requests added so far, of any status.
    #[cfg(test)]
    pub(crate) fn requests(&self) -> u64 {
        self.requests.total()
    }

    /// The heap memory its distributions hold, in bytes.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.distributions.heap_bytes()
    }

    /// The `Overall Summary` of the scope so far.
    pub(crate) fn summary(&self, scope: String) -> OverallSummary {
        let wall_ms = self
            .last_completion_ns
            .map_or(0.0, |end| stats::elapsed_ms(self.start_ns, end));
        let mut walls: Vec<(u64, f64)> = self
            .stage_windows
            .iter()
            .map(|&(id, start, end)| (id, stats::elapsed_ms(start, end)))
            .collect();
        walls.sort_by_key(|w| w.0);
        OverallSummary {
            scope,
            // The layer's, set when the summary is emitted.
            model_name: None,
            // The replay's, for traces of another shape.
            source: None,
            e2e_requests: self.requests.ok,
            e2e_wall_time_ms: wall_ms,
            e2e_total_tokens: self.total_tokens,
            e2e_avg_time_per_request_ms: stats::e2e_avg_time_per_request_ms(
                wall_ms,
                self.requests.ok,
            ),
            e2e_avg_tokens_per_s: stats::e2e_avg_tokens_per_s(self.total_tokens, wall_ms),
            stage_wall_time_ms: walls,
            e2e_requests_error: self.requests.error,
            e2e_requests_aborted: self.requests.aborted,
            invalid_spans: self.invalid_spans,
            distributions: self.distributions.distributions(),
            audio_streams: self.audio_streams,
            audio_continuity_ok: self.audio_continuity_ok.clone(),
            audio_skipped_requests: self.audio_skipped_requests,
            e2e_images: self.images,
            e2e_images_per_s: stats::per_second(self.images, wall_ms),
            e2e_megapixels_per_s: stats::per_second(self.pixels, wall_ms) / 1e6,
        }
    }
}

/// Adds `ok` streams at `threshold_ms` to `counts` (kept in threshold order; a threshold
/// is listed from its first stream on, ok or not).
fn add_continuity(counts: &mut Vec<(u64, u64)>, threshold_ms: u64, ok: u64) {
    match counts.binary_search_by_key(&threshold_ms, |c| c.0) {
        Ok(i) => counts[i].1 = counts[i].1.saturating_add(ok),
        Err(i) => counts.insert(i, (threshold_ms, ok)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(i: u64, status: RequestStatus) -> RequestE2EStats {
        let ms = (i % 5_000) as f64 * 1.5 + 10.0;
        RequestE2EStats {
            status,
            e2e_total_ms: ms,
            stages: vec![StageRequestStats {
                stage_id: 0,
                stage_gen_time_ms: ms * 0.75,
                queue_time_ms: (i % 7) as f64,
                ..Default::default()
            }],
            transfers: vec![TransferEdgeStats {
                from_stage: 0,
                to_stage: 1,
                tx_time_ms: 0.5,
                in_flight_time_ms: (i % 3) as f64,
                ..Default::default()
            }],
            end_ns: i,
            ..Default::default()
        }
    }

    #[test]
    fn only_ok_requests_count_in_the_distributions() {
        let mut scope = ScopeAcc::new(0);
        for (i, status) in [
            RequestStatus::Ok,
            RequestStatus::Error,
            RequestStatus::Ok,
            RequestStatus::Aborted,
        ]
        .into_iter()
        .enumerate()
        {
            scope.add(&request(i as u64, status));
        }
        let summary = scope.summary("run-1".into());
        assert_eq!(summary.e2e_requests, 2);
        let d = &summary.distributions;
        assert_eq!(d.len(), 4, "{d:?}");
        for (quantity, stats) in d.iter() {
            assert_eq!(stats.count, 2, "{quantity}");
        }
    }

    /// Merging scopes equals adding every request to one: counts, tokens, last completion,
    /// stage windows and distributions.
    #[test]
    fn merging_scopes_equals_adding_to_one() {
        let statuses = [
            RequestStatus::Ok,
            RequestStatus::Error,
            RequestStatus::Aborted,
        ];
        let mut all = ScopeAcc::new(0);
        let mut parts = [ScopeAcc::new(0), ScopeAcc::new(7), ScopeAcc::new(9)];
        for i in 0..300u64 {
            let mut r = request(i * 13 % 300, statuses[(i % 7 % 3) as usize]);
            r.e2e_total_tokens = i;
            r.invalid_spans = i % 2;
            r.stages[0].start_ns = i;
            r.stages[0].end_ns = i * 2;
            all.add(&r);
            parts[(i % 3) as usize].add(&r);
        }
        let mut merged = ScopeAcc::new(0);
        for p in &parts {
            merged.merge(p);
        }
        assert_eq!(merged.requests(), 300);
        assert_eq!(merged.summary("s".into()), all.summary("s".into()));
        // Merging an empty scope changes nothing.
        merged.merge(&ScopeAcc::new(5));
        assert_eq!(merged.summary("s".into()), all.summary("s".into()));
    }

    /// A million requests in one scope: the distributions keep no per-request data.
    #[test]
    fn a_scope_of_a_million_requests_stays_small() {
        let mut scope = ScopeAcc::new(0);
        let mut after_ten_thousand = 0;
        for i in 0..1_000_000 {
            if i == 10_000 {
                after_ten_thousand = scope.distributions.heap_bytes();
            }
            assert!(scope.note_request_id(&format!("r-{i}")));
            scope.add(&request(i, RequestStatus::Ok));
        }
        // The ids kept to spot repeats stop growing too; early ids are still checked.
        assert_eq!(scope.request_ids.len(), MAX_TRACKED_REQUEST_IDS);
        assert!(!scope.note_request_id("r-17"));
        let bytes = scope.distributions.heap_bytes();
        assert_eq!(bytes, after_ten_thousand);
        assert!(bytes < 2 << 20, "{bytes} bytes");
        assert_eq!(scope.distributions.quantities(), 4);
        let summary = scope.summary("run-1".into());
        assert_eq!(
            summary
                .distributions
                .get(crate::stats::Quantity::RequestLatency)
                .map(|s| s.count),
            Some(1_000_000)
        );
    }

    /// A recycled accumulator starts the next request empty, keeping only its buffers.
    #[test]
    fn a_recycled_accumulator_keeps_buffers_and_nothing_else() {
        let mut acc = RequestAcc::default();
        let fill = |acc: &mut RequestAcc| {
            acc.set_request_id_with(|id| id.push_str("r-1"));
            acc.set_status_message("boom".into());
            acc.add_stage(&mut StageSample {
                stage_id: 2,
                stage_name: None,
                batch_id: Some(1),
                batch_size: None,
                num_tokens_in: 5,
                num_tokens_out: 7,
                stage_gen_time_ms: 1.0,
                postprocess_time_ms: 0.0,
                queue_time_ms: 0.0,
                start_ns: 0,
                end_ns: 1_000_000,
                rare: None,
            });
            acc.add_transfer(TransferSample {
                from_replica: None,
                to_replica: None,
                from_stage: 0,
                to_stage: 2,
                size_bytes: 10,
                tx_time_ms: 1.0,
                rx_decode_time_ms: 1.0,
                in_flight_time_ms: 0.0,
                start_ns: 0,
                end_ns: 1,
            });
            acc.count_invalid();
            let mut issues = IssueSet::default();
            issues.insert(crate::diagnostics::Issue::TransferWithoutTx);
            acc.defer_incomplete(issues);
        };
        fill(&mut acc);
        let id = acc.take_request_id().unwrap_or_default();
        let scope = acc.spare_string();
        let mut report = acc.finish(id, RequestStatus::Ok, scope, (0, 2_000_000), &[]);
        assert_eq!((report.stages.len(), report.transfers.len()), (1, 1));
        assert_eq!(report.invalid_spans, 1);
        acc.recycle(Some(&mut report));
        assert_eq!(acc.request_id(), None);
        assert!(acc.status_message.is_none() && acc.sides.is_empty());
        assert_eq!(acc.invalid_spans, 0);
        assert_eq!(acc.settle(RequestStatus::Ok), (IssueSet::default(), 0));
        let reused = acc.spare_string();
        assert!(
            reused.is_empty() && reused.capacity() > 0,
            "an id's buffer is reused"
        );
        let empty = acc.finish(String::new(), RequestStatus::Ok, reused, (0, 1), &[]);
        assert!(empty.stages.is_empty() && empty.transfers.is_empty());
        assert_eq!((empty.invalid_spans, empty.status_message), (0, None));
        assert!(empty.stages.capacity() > 0, "the stage vector is reused");
        // And without a record to take back.
        fill(&mut acc);
        acc.recycle(None);
        assert_eq!(acc.request_id(), None);
        assert!(acc.status_message.is_none() && acc.sides.is_empty());
        assert_eq!((acc.invalid_spans, acc.incomplete_spans), (0, 0));
        let empty = acc.finish(String::new(), RequestStatus::Ok, String::new(), (0, 1), &[]);
        assert!(empty.stages.is_empty() && empty.transfers.is_empty());
        assert_eq!((empty.invalid_spans, empty.status_message), (0, None));
    }
}
