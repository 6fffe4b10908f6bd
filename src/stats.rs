//! The stats model: vLLM-Omni's four tables as record types, and every formula, each defined
//! once.
//!
//! Field names are vLLM-Omni's (`--log-stats`), exactly; they are also the JSON-lines keys.
//! Values are unrounded; rounding is for the console only ([`crate::report`]).
#![doc = include_str!("../docs/reference/stats.md")]

pub(crate) mod keys;
pub(crate) mod latency;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

pub use self::latency::{Distributions, LatencyStats, Quantity};

/// Nanoseconds to milliseconds, the unit of every `*_ms` field.
#[inline]
pub(crate) fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1_000_000.0
}

/// `kbytes = bytes / 1024` (KiB), as vLLM-Omni computes its `*_kbytes` fields.
#[inline]
pub(crate) fn kbytes(bytes: u64) -> f64 {
    bytes as f64 / 1024.0
}

/// `stage_gen_time_ms` = stage span duration - the time its `omni.queue` and
/// `omni.postprocess` children cover - an explicit `postprocess_time_ms`, never negative.
///
/// The layer passes the children's time as the time they *cover* (their union: overlapping
/// children are subtracted once, not twice). An explicit `postprocess_time_ms` is the
/// stage's post-processing time: its postprocess children are then not measured, and
/// `queue_ms` is the time its queue children alone cover.
pub(crate) fn stage_gen_time_ms(stage_ms: f64, queue_ms: f64, postprocess_ms: f64) -> f64 {
    finite((stage_ms - queue_ms - postprocess_ms).max(0.0))
}

/// `v` if it is finite, else the nearest finite value (`f64::MAX` for +inf, 0 for NaN and
/// -inf), and `-0.0` as `0.0`: no record, table or attribute ever shows `inf`, `NaN`,
/// `null` or `-0.000`.
///
#[inline]
pub(crate) fn finite(v: f64) -> f64 {
    if v.is_finite() {
        v + 0.0
    } else if v == f64::INFINITY {
        f64::MAX
    } else {
        0.0
    }
}

/// Adds `b` to `a`, saturating at `f64::MAX` (see [`finite`]).
#[inline]
pub(crate) fn add_ms(a: f64, b: f64) -> f64 {
    finite(a + b)
}

/// The time from `from_ns` to `to_ns` on the layer's clock, in ns, never negative (a clock
/// read backwards, or a later instant given first, is no time): every duration, window and
/// gap is one.
#[inline]
pub(crate) fn elapsed_ns(from_ns: u64, to_ns: u64) -> u64 {
    to_ns.saturating_sub(from_ns)
}

/// The time from `from_ns` to `to_ns` on the layer's clock, in ms, never negative: every
/// wall time and duration. A request's `e2e_total_ms` (its span's creation to its close), a
/// stage span's duration, a stage's `wall_time_ms` (its first start to its last end), a
/// scope's `e2e_wall_time_ms` (its start to its last completion),
/// `e2e_stage_{i}_wall_time_ms`, a time to first output and the gap between two outputs
/// are each one.
///
#[inline]
pub(crate) fn elapsed_ms(from_ns: u64, to_ns: u64) -> f64 {
    ns_to_ms(elapsed_ns(from_ns, to_ns))
}

/// One chunk's in-flight gap in ns: end of its `omni.transfer.tx` to the start of its
/// `omni.transfer.rx_decode`, never negative. The layer sums a transfer's gaps in ns, then
/// gives the sum in ms ([`in_flight_time_ms`] of one chunk).
#[inline]
pub(crate) fn in_flight_ns(tx_end_ns: u64, rx_start_ns: u64) -> u64 {
    elapsed_ns(tx_end_ns, rx_start_ns)
}

/// `in_flight_time_ms` = start of `omni.transfer.rx_decode` - end of `omni.transfer.tx`,
/// never negative (a receiver that starts waiting before the sender is done has no gap).
/// The definition (the layer sums [`in_flight_ns`] per chunk); tested below.
#[cfg(test)]
pub(crate) fn in_flight_time_ms(tx_end_ns: u64, rx_start_ns: u64) -> f64 {
    ns_to_ms(in_flight_ns(tx_end_ns, rx_start_ns))
}

/// A request's prompt tokens: stage 0's `num_tokens_in` (0 without a stage 0). Later
/// stages' inputs are earlier stages' outputs, not the caller's prompt.
pub(crate) fn prompt_tokens(stages: &[StageRequestStats]) -> u64 {
    stages
        .iter()
        .find(|s| s.stage_id == 0)
        .map_or(0, |s| s.num_tokens_in)
}

/// A request's generated tokens: every stage's `num_tokens_out`, summed (saturating).
pub(crate) fn generated_tokens(stages: &[StageRequestStats]) -> u64 {
    stages
        .iter()
        .fold(0, |sum, s| sum.saturating_add(s.num_tokens_out))
}

/// `e2e_total_tokens` = [`prompt_tokens`] (stage 0's `num_tokens_in`) +
/// [`generated_tokens`] (the sum of every stage's `num_tokens_out`); a request without a
/// stage 0 counts no input tokens.
pub(crate) fn e2e_total_tokens(stages: &[StageRequestStats]) -> u64 {
    prompt_tokens(stages).saturating_add(generated_tokens(stages))
}

/// An edge's transfer time: `tx_time_ms + rx_decode_time_ms + in_flight_time_ms` (its
/// [`TransferEdgeStats::total_time_ms`], its distribution, its bar in the HTML report).
pub(crate) fn transfer_time_ms(tx_ms: f64, rx_decode_ms: f64, in_flight_ms: f64) -> f64 {
    finite(tx_ms + rx_decode_ms + in_flight_ms)
}

/// `transfers_total_time_ms` = sum over edges of `tx_time_ms + rx_decode_time_ms +
/// in_flight_time_ms`.
pub(crate) fn transfers_total_time_ms(edges: &[TransferEdgeStats]) -> f64 {
    // A fold from +0.0: an empty `f64` sum is -0.0, printed "-0.000".
    edges
        .iter()
        .fold(0.0, |sum, e| add_ms(sum, e.total_time_ms()))
}

/// `transfers_total_kbytes` = sum over edges of `size_kbytes`.
pub(crate) fn transfers_total_kbytes(edges: &[TransferEdgeStats]) -> f64 {
    edges.iter().fold(0.0, |sum, e| add_ms(sum, e.size_kbytes))
}

/// The bytes a request moved between stages: every edge's `size_bytes`, summed
/// (saturating); [`Totals::transfer_bytes`](crate::Totals::transfer_bytes) sums them over
/// `ok` requests.
pub(crate) fn transfers_total_bytes(edges: &[TransferEdgeStats]) -> u64 {
    edges
        .iter()
        .fold(0, |sum, e| sum.saturating_add(e.size_bytes))
}

/// `e2e_avg_time_per_request_ms` = `e2e_wall_time_ms / e2e_requests` (0 without requests).
pub(crate) fn e2e_avg_time_per_request_ms(wall_ms: f64, requests: u64) -> f64 {
    if requests == 0 {
        0.0
    } else {
        finite(wall_ms / requests as f64)
    }
}

/// A rate: `count * 1000 / wall_ms`, per second (0 for an empty wall).
pub(crate) fn per_second(count: u64, wall_ms: f64) -> f64 {
    if wall_ms > 0.0 {
        finite(count as f64 * 1000.0 / wall_ms)
    } else {
        0.0
    }
}

/// `e2e_avg_tokens_per_s` = `e2e_total_tokens * 1000 / e2e_wall_time_ms` (0 for an empty
/// wall): [`per_second`].
pub(crate) fn e2e_avg_tokens_per_s(total_tokens: u64, wall_ms: f64) -> f64 {
    per_second(total_tokens, wall_ms)
}

/// `time_to_first_output_ms` = the first `omni.output` event's time - `start_ns`, in ms
/// (TTFT for an LLM stage when `start_ns` is the stage's start; never negative).
pub(crate) fn time_to_first_output_ms(start_ns: u64, first_output_ns: u64) -> f64 {
    elapsed_ms(start_ns, first_output_ns)
}

/// `audio_duration_ms` = `audio_generated_frames * 1000 / audio_sample_rate`; `None` without
/// frames or without a sample rate.
pub(crate) fn audio_duration_ms(frames: u64, sample_rate: u64) -> Option<f64> {
    (frames > 0 && sample_rate > 0).then(|| finite(frames as f64 * 1000.0 / sample_rate as f64))
}

/// Audio continuity as a listener hears a stream (SPEC, "Audio continuity"): packet k
/// arrives at `a_k` (ns) holding `frames_k / sample_rate` seconds; playback starts at the
/// first packet, and packet k plays at `p_k = max(a_k, p_{k-1} + d_{k-1})`, after a gap of
/// `p_k - (p_{k-1} + d_{k-1})` when it came late. `None` without a rate or a packet that
/// holds audio (packets of 0 frames hold none and are skipped). `packets` are in arrival
/// order.
pub(crate) fn audio_playback(
    packets: impl IntoIterator<Item = (u64, u64)>,
    sample_rate: u64,
) -> Option<AudioPlayback> {
    if sample_rate == 0 {
        return None;
    }
    let mut packets = packets.into_iter().filter(|&(_, frames)| frames > 0);
    let (first_ns, first_frames) = packets.next()?;
    let ms_of = |frames: u64| frames as f64 * 1000.0 / sample_rate as f64;
    let ns_at = |ms: f64| first_ns.saturating_add((ms.max(0.0) * 1e6).round() as u64);
    // Times in ms from the first packet's arrival: exact enough for any stream (f64).
    let mut played_until = ms_of(first_frames);
    let mut playback = AudioPlayback::default();
    for (at_ns, frames) in packets {
        let arrival = elapsed_ms(first_ns, at_ns);
        let gap = (arrival - played_until).max(0.0);
        if gap > 0.0 && playback.gaps_ns.len() < MAX_AUDIO_GAPS {
            playback.gaps_ns.push((ns_at(played_until), ns_at(arrival)));
        }
        playback.underrun_ms += gap;
        playback.max_gap_ms = playback.max_gap_ms.max(gap);
        played_until = played_until.max(arrival) + ms_of(frames);
    }
    playback.underrun_ms = finite(playback.underrun_ms);
    playback.max_gap_ms = finite(playback.max_gap_ms);
    Some(playback)
}

/// The gaps a stage keeps per request, for the HTML timeline
/// ([`StageRequestStats::audio_gaps_ns`]); the sums cover every gap.
pub const MAX_AUDIO_GAPS: usize = 64;

/// What [`audio_playback`] finds in a stream.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct AudioPlayback {
    /// The sum of the gaps, in ms.
    pub(crate) underrun_ms: f64,
    /// The longest gap, in ms.
    pub(crate) max_gap_ms: f64,
    /// The first [`MAX_AUDIO_GAPS`] gaps: when the audio ran out and when it went on, ns.
    pub(crate) gaps_ns: Vec<(u64, u64)>,
}

/// [`audio_playback`]'s `(underrun_ms, max_gap_ms)`.
#[cfg(test)]
pub(crate) fn audio_continuity(
    packets: impl IntoIterator<Item = (u64, u64)>,
    sample_rate: u64,
) -> Option<(f64, f64)> {
    audio_playback(packets, sample_rate).map(|p| (p.underrun_ms, p.max_gap_ms))
}

/// A stage's images and their pixels: `image_num`, and `image_num` x `W` x `H` of its
/// `resolution` (`WxH`, e.g. `1024x1024`; 0 pixels when it cannot be read).
pub(crate) fn images_and_pixels(s: &StageRequestStats) -> (u64, u64) {
    let images = s.image_num.unwrap_or(0);
    if images == 0 {
        return (0, 0);
    }
    let per_image = s
        .resolution
        .as_deref()
        .and_then(|r| r.trim().split_once(['x', 'X', '*']))
        .and_then(|(w, h)| {
            Some(
                w.trim()
                    .parse::<u64>()
                    .ok()?
                    .saturating_mul(h.trim().parse().ok()?),
            )
        })
        .unwrap_or(0);
    (images, images.saturating_mul(per_image))
}

/// `denoise_step_latency_ms`: a diffusion stage's `stage_gen_time_ms / num_inference_steps`
/// (vLLM-Omni's formula); `None` without a step.
pub(crate) fn denoise_step_latency_ms(stage_gen_time_ms: f64, steps: u64) -> Option<f64> {
    (steps > 0).then(|| finite(stage_gen_time_ms / steps as f64))
}

/// A real-time factor: `time_ms / audio_duration_ms` (below 1 is faster than real time);
/// `None` for no audio. [`StageRequestStats::audio_rtf`] passes the stage's
/// `stage_gen_time_ms` (vLLM-Omni's server definition),
/// [`RequestE2EStats::audio_e2e_rtf`] the request's `e2e_total_ms` (its benchmark's).
pub(crate) fn rtf(time_ms: f64, audio_duration_ms: Option<f64>) -> Option<f64> {
    audio_duration_ms
        .filter(|d| *d > 0.0)
        .map(|d| finite(time_ms / d))
}

/// `inter_output_ms`: the mean gap between a stage's consecutive `omni.output` events, in
/// time order across all its spans (chunks may overlap), which is `(last - first) /
/// (outputs - 1)`; `None` for fewer than two outputs (no gap).
pub(crate) fn inter_output_ms(
    first_output_ns: u64,
    last_output_ns: u64,
    outputs: u64,
) -> Option<f64> {
    (outputs > 1).then(|| {
        finite(ns_to_ms(last_output_ns.saturating_sub(first_output_ns)) / (outputs - 1) as f64)
    })
}

/// A stage's time per output token (GenAI's `time_per_output_token`): the time from its
/// first to its last `omni.output`, over the tokens after the first, `(last - first) /
/// (num_tokens_out - 1)`; `None` without two outputs or two tokens. It assumes each output
/// marks tokens as they are decoded (the first output carries the first token).
pub(crate) fn time_per_output_token_ms(s: &StageRequestStats) -> Option<f64> {
    let (first, last) = (s.first_output_ns?, s.last_output_ns?);
    (s.output_chunks > 1 && s.num_tokens_out > 1 && last > first)
        .then(|| finite(ns_to_ms(last - first) / (s.num_tokens_out - 1) as f64))
}

/// A request's `time_to_first_output_ms`: its start to the first output of its last stage
/// (highest `stage_id`), i.e. that stage's start offset plus its own
/// [`StageRequestStats::time_to_first_output_ms`]; `None` if that stage has none.
pub(crate) fn request_time_to_first_output_ms(
    stages: &[StageRequestStats],
    request_start_ns: u64,
) -> Option<f64> {
    let last = stages.iter().max_by_key(|s| s.stage_id)?;
    since_request(last, request_start_ns)
}

/// A request's audio stage: the first stage (lowest `stage_id`) that has an
/// `audio_sample_rate`, on which its `time_to_first_audio_ms` is measured.
pub(crate) fn audio_stage(stages: &[StageRequestStats]) -> Option<&StageRequestStats> {
    stages
        .iter()
        .filter(|s| s.audio_sample_rate.is_some())
        .min_by_key(|s| s.stage_id)
}

/// A request's `time_to_first_audio_ms` (vLLM-Omni's audio TTFP): its start to the first
/// output of its [`audio_stage`].
pub(crate) fn time_to_first_audio_ms(
    stages: &[StageRequestStats],
    request_start_ns: u64,
) -> Option<f64> {
    since_request(audio_stage(stages)?, request_start_ns)
}

/// A request's `audio_duration_ms`: that of its last stage (highest `stage_id`) that
/// produced audio.
pub(crate) fn request_audio_duration_ms(stages: &[StageRequestStats]) -> Option<f64> {
    stages
        .iter()
        .filter(|s| s.audio_duration_ms.is_some())
        .max_by_key(|s| s.stage_id)?
        .audio_duration_ms
}

/// The stage's first output, counted from the request's start.
fn since_request(stage: &StageRequestStats, request_start_ns: u64) -> Option<f64> {
    let own = stage.time_to_first_output_ms?;
    Some(add_ms(elapsed_ms(request_start_ns, stage.start_ns), own))
}

/// How a request ended (the `status` field of `omni.request`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    /// Finished normally; the only status counted in `e2e_requests` and the summary.
    #[default]
    Ok,
    /// Failed; counted apart (`e2e_requests_error`).
    Error,
    /// Dropped before finishing (a cancelled future); counted apart (`e2e_requests_aborted`).
    Aborted,
}

impl RequestStatus {
    /// Parses the `status` field; `None` for anything but `ok`, `error` and `aborted`.
    ///
    /// ```
    /// use omni_metrics::stats::RequestStatus;
    /// assert_eq!(RequestStatus::parse("aborted"), Some(RequestStatus::Aborted));
    /// assert_eq!(RequestStatus::parse("done"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ok" => Some(Self::Ok),
            "error" => Some(Self::Error),
            "aborted" => Some(Self::Aborted),
            _ => None,
        }
    }

    /// The field value (`ok`, `error`, `aborted`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Aborted => "aborted",
        }
    }
}

/// Whether a request that ended with `status` counts in a summary's figures (`e2e_requests`,
/// tokens, wall times, distributions) and in the metrics and totals: only `ok`; `error` and
/// `aborted` requests are counted apart (`e2e_requests_error`, `e2e_requests_aborted`).
///
#[inline]
pub(crate) fn counts_in_summary(status: RequestStatus) -> bool {
    status == RequestStatus::Ok
}

/// Finished requests by how they ended: the summary's `e2e_requests`,
/// `e2e_requests_error` and `e2e_requests_aborted`, and the handle's totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StatusCounts {
    pub(crate) ok: u64,
    pub(crate) error: u64,
    pub(crate) aborted: u64,
}

impl StatusCounts {
    /// Counts a request that ended with `status`; whether it [`counts_in_summary`].
    #[inline]
    pub(crate) fn add(&mut self, status: RequestStatus) -> bool {
        let count = match status {
            RequestStatus::Ok => &mut self.ok,
            RequestStatus::Error => &mut self.error,
            RequestStatus::Aborted => &mut self.aborted,
        };
        *count = count.saturating_add(1);
        counts_in_summary(status)
    }

    /// Adds `other`'s counts.
    pub(crate) fn merge(&mut self, other: StatusCounts) {
        self.ok = self.ok.saturating_add(other.ok);
        self.error = self.error.saturating_add(other.error);
        self.aborted = self.aborted.saturating_add(other.aborted);
    }

    /// Requests of any status.
    #[cfg(test)]
    pub(crate) fn total(&self) -> u64 {
        self.ok
            .saturating_add(self.error)
            .saturating_add(self.aborted)
    }
}

/// Output-event gaps a stage keeps per request for percentiles (see
/// [`StageRequestStats::inter_output_gaps_ms`]): a long stream of chunks stays bounded.
pub const MAX_OUTPUT_GAPS: usize = 4096;

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Whether an audio stream played without a gap longer than `threshold_ms`
/// ([`StageRequestStats::audio_continuity`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AudioContinuity {
    /// The longest gap a listener tolerates, in ms.
    pub threshold_ms: u64,
    /// No gap exceeded it.
    pub ok: bool,
}

/// One stage of one request (a column of the `StageRequestStats` table).
///
/// A stage seen in several spans of one request (streamed chunks, in sequence or
/// overlapping) is one column: its counts and times are summed, `batch_id` and `batch_size`
/// are those of the earliest-starting span that gives them (chunks computed in different
/// batches are normal: continuous batching), and its wall window runs from the first start
/// to the last end.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StageRequestStats {
    /// The stage's index (`stage_id`).
    pub stage_id: u64,
    /// The stage's name, when given (shared: names repeat on every request).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_name: Option<std::sync::Arc<str>>,
    /// The engine's batch: that of the stage's earliest-starting span that gives one, else
    /// that of an `omni.batch` span linked to the stage; 0 when none was recorded (see
    /// `batch_recorded`).
    pub batch_id: u64,
    /// The batch's size, from the same span as `batch_id`.
    pub batch_size: u64,
    /// Input tokens, summed over the stage's spans.
    pub num_tokens_in: u64,
    /// Output tokens, summed over the stage's spans.
    pub num_tokens_out: u64,
    /// Compute time: `stage_gen_time_ms` of each span, summed: the span's duration minus
    /// the time its `omni.queue` and `omni.postprocess` children cover (once, however they
    /// overlap), or minus the queue children's coverage and an explicit
    /// `postprocess_time_ms`.
    pub stage_gen_time_ms: f64,
    /// Post-processing time: the `omni.postprocess` children, summed, or the explicit
    /// `postprocess_time_ms` field (which then stands for them).
    pub postprocess_time_ms: f64,
    /// Audio frames (samples) produced.
    pub audio_generated_frames: u64,
    /// Images generated (diffusion stages), when the stage reports them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_num: Option<u64>,
    /// Image size (`WxH`), when the stage reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// Beyond vLLM-Omni's tables: time waiting before compute (`omni.queue` children), summed.
    pub queue_time_ms: f64,
    /// Which replica of the stage did the work (`replica_id`), when the engine said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_id: Option<u64>,
    /// Denoising steps (`num_inference_steps`) of a diffusion stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_inference_steps: Option<u64>,
    /// `stage_gen_time_ms / num_inference_steps` (vLLM-Omni's formula).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denoise_step_latency_ms: Option<f64>,
    /// Video frames generated (`video_frames`).
    #[serde(skip_serializing_if = "is_zero")]
    pub video_frames: u64,
    /// The frame rate of `video_frames` (`video_fps`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_fps: Option<u64>,
    /// `video_frames * 1000 / video_fps`, the audio rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_duration_ms: Option<f64>,
    /// `stage_gen_time_ms / video_duration_ms`: below 1 is faster than real time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_rtf: Option<f64>,
    /// Total playback gap of the stage's audio stream as a listener hears it, in ms
    /// (`audio_underrun_ms`): an audio stage (`audio_sample_rate`) with `omni.output`
    /// events whose `units` are frames.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_underrun_ms: Option<f64>,
    /// The longest playback gap, in ms (`audio_max_gap_ms`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_max_gap_ms: Option<f64>,
    /// Whether no gap exceeds each configured threshold
    /// ([`Builder::with_audio_continuity_thresholds`](crate::Builder::with_audio_continuity_thresholds)),
    /// with the audio measured.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audio_continuity: Vec<AudioContinuity>,
    /// The gaps themselves, the first [`MAX_AUDIO_GAPS`]: when the played audio ran out and
    /// when the next packet began, on the layer's clock (ns), as the HTML timeline draws
    /// them. Not in the records.
    #[serde(skip)]
    pub audio_gaps_ns: Vec<(u64, u64)>,
    /// Why an audio stage (`audio_sample_rate` given) produced no frames, if it did not:
    /// `no_frames` (the request ended `ok`), `error` or `aborted` (its status).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_skipped: Option<&'static str>,
    /// Beyond vLLM-Omni's tables: the sample rate of the audio, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_sample_rate: Option<u64>,
    /// Beyond vLLM-Omni's tables: how many spans (chunks) made this stage.
    pub spans: u64,
    /// Beyond vLLM-Omni's tables: first start to last end of this stage's spans, in ms.
    pub wall_time_ms: f64,
    /// Beyond vLLM-Omni's tables: `omni.output` events of this stage (output chunks).
    #[serde(skip_serializing_if = "is_zero")]
    pub output_chunks: u64,
    /// Beyond vLLM-Omni's tables: the `units` of this stage's `omni.output` events, summed (tokens,
    /// audio frames or images, as the engine counts them).
    #[serde(skip_serializing_if = "is_zero")]
    pub output_units: u64,
    /// Beyond vLLM-Omni's tables: the stage's first start to its first `omni.output`, in ms
    /// (TTFT for an LLM stage; never negative), or the stage span's explicit field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_first_output_ms: Option<f64>,
    /// Beyond vLLM-Omni's tables: the mean gap between consecutive `omni.output` events, or the
    /// stage span's explicit field; `None` for fewer than two outputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inter_output_ms: Option<f64>,
    /// The gaps themselves, for the distributions and the metrics' histograms: at most
    /// [`MAX_OUTPUT_GAPS`] per stage and request (the mean covers all of them).
    #[serde(skip)]
    pub inter_output_gaps_ms: Vec<f64>,
    /// Beyond vLLM-Omni's tables: the audio this stage produced, in ms:
    /// `audio_generated_frames * 1000 / audio_sample_rate` (`None` without a sample rate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_duration_ms: Option<f64>,
    /// Beyond vLLM-Omni's tables: `stage_gen_time_ms / audio_duration_ms` (vLLM-Omni's server
    /// definition of the real-time factor; below 1 is faster than real time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_rtf: Option<f64>,
    /// When the stage's first `omni.output` came, in ns of the layer's clock.
    #[serde(skip)]
    pub first_output_ns: Option<u64>,
    /// When the stage's last `omni.output` came, in ns of the layer's clock.
    #[serde(skip)]
    pub last_output_ns: Option<u64>,
    /// When the stage's first span started, in ns of the layer's clock.
    #[serde(skip)]
    pub start_ns: u64,
    /// When the stage's last span ended, in ns of the layer's clock.
    #[serde(skip)]
    pub end_ns: u64,
    /// Whether a span of this stage recorded a `batch_id` (batch 0 included), so the console
    /// shows the `batch_id` row; not in the records.
    #[serde(skip)]
    pub batch_recorded: bool,
}

/// An edge's name, `"{from}->{to}"`, without allocating until it is written out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EdgeName {
    /// The sending stage.
    pub from: u64,
    /// The receiving stage.
    pub to: u64,
}

impl std::fmt::Display for EdgeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}->{}", self.from, self.to)
    }
}

impl Serialize for EdgeName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One edge `from->to` of one request (a column of the `TransferEdgeStats` table).
///
/// Several transfers on one edge (streamed chunks) are summed; bytes and times always cover
/// the same chunks.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TransferEdgeStats {
    /// `"{from}->{to}"` (serialized as that string).
    pub edge: EdgeName,
    /// The sending stage.
    pub from_stage: u64,
    /// The receiving stage.
    pub to_stage: u64,
    /// The sending stage's replica (`from_replica`), when the engine said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_replica: Option<u64>,
    /// The receiving stage's replica (`to_replica`), when the engine said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_replica: Option<u64>,
    /// KiB moved: `size_bytes / 1024`.
    pub size_kbytes: f64,
    /// Sender time (`omni.transfer.tx`), summed.
    pub tx_time_ms: f64,
    /// Receiver time (`omni.transfer.rx_decode`), summed.
    pub rx_decode_time_ms: f64,
    /// Each transfer's gap in flight, summed: start of its `omni.transfer.rx_decode` minus end
    /// of its `omni.transfer.tx`, never negative.
    pub in_flight_time_ms: f64,
    /// Beyond vLLM-Omni's tables: bytes moved, exactly.
    pub size_bytes: u64,
    /// Beyond vLLM-Omni's tables: how many transfers (chunks) made this edge.
    pub transfers: u64,
    /// When the edge's first transfer span started, in ns of the layer's clock.
    #[serde(skip)]
    pub start_ns: u64,
    /// When the edge's last transfer span ended, in ns of the layer's clock.
    #[serde(skip)]
    pub end_ns: u64,
}

impl TransferEdgeStats {
    /// The edge's transfer time: `tx_time_ms + rx_decode_time_ms + in_flight_time_ms`.
    pub fn total_time_ms(&self) -> f64 {
        transfer_time_ms(
            self.tx_time_ms,
            self.rx_decode_time_ms,
            self.in_flight_time_ms,
        )
    }
}

/// Where a record's spans came from, when not from the span convention: traces that another
/// program wrote in its own shape, which the report command reads too.
///
/// Such a trace holds less than the convention: a record built from it leaves out what it
/// cannot know, rather than showing it as 0. Serialized as its name (`"vllm-omni"`), the
/// records' `source` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum TraceSource {
    /// vLLM-Omni's own OpenTelemetry traces (`omni.pipeline` requests and their `omni.stage`
    /// spans with `omni.stage.id`): no tokens, batches, transfers, audio frames or output
    /// counts, and no split of a stage's time into queue, compute and post-processing.
    #[serde(rename = "vllm-omni")]
    VllmOmni,
}

impl TraceSource {
    /// Whether a request of `source` (or of the convention's own, `None`) can know its or
    /// its stages' field `key`.
    pub(crate) fn knows_request_field(source: Option<Self>, key: &str) -> bool {
        source.is_none_or(|s| {
            !s.unknown_request_fields().contains(&key) && !s.unknown_stage_fields().contains(&key)
        })
    }

    /// The name of the source (the records' `source` value).
    ///
    /// ```
    /// use omni_metrics::stats::TraceSource;
    /// assert_eq!(TraceSource::VllmOmni.as_str(), "vllm-omni");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VllmOmni => "vllm-omni",
        }
    }

    /// The [`RequestE2EStats`] fields a record of this source cannot know: 0 in the record,
    /// absent from its JSON line and tables.
    pub(crate) fn unknown_request_fields(self) -> &'static [&'static str] {
        match self {
            Self::VllmOmni => &[
                keys::E2E_TOTAL_TOKENS,
                keys::TRANSFERS_TOTAL_TIME_MS,
                keys::TRANSFERS_TOTAL_KBYTES,
                keys::TRANSFERS,
            ],
        }
    }

    /// The [`StageRequestStats`] fields a record of this source cannot know. For vLLM-Omni,
    /// `stage_gen_time_ms` is known but is the stage span's whole duration (its
    /// `wall_time_ms`): the trace does not split queue and post-processing out of it.
    pub(crate) fn unknown_stage_fields(self) -> &'static [&'static str] {
        match self {
            Self::VllmOmni => &[
                keys::BATCH_ID,
                keys::BATCH_SIZE,
                keys::NUM_TOKENS_IN,
                keys::NUM_TOKENS_OUT,
                keys::POSTPROCESS_TIME_MS,
                keys::AUDIO_GENERATED_FRAMES,
                keys::QUEUE_TIME_MS,
                keys::OUTPUT_CHUNKS,
                keys::OUTPUT_UNITS,
            ],
        }
    }

    /// The [`OverallSummary`] fields a summary with requests of this source cannot know
    /// (their `queue_time_ms` distributions are left out too).
    pub(crate) fn unknown_summary_fields(self) -> &'static [&'static str] {
        match self {
            Self::VllmOmni => &[keys::E2E_TOTAL_TOKENS, keys::E2E_AVG_TOKENS_PER_S],
        }
    }
}

impl std::fmt::Display for TraceSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finished request: the `RequestE2EStats` table plus its stage and edge columns.
///
/// Serialized, it is the `{"type":"request",...}` JSON-lines record.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RequestE2EStats {
    /// The request's `request_id`.
    pub request_id: String,
    /// How the request ended.
    pub status: RequestStatus,
    /// Beyond vLLM-Omni's tables: why a failed request failed (`status_message`), when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// The scope it is summarized in: its run's id, or its own id when online.
    pub scope: String,
    /// Beyond vLLM-Omni's tables: the model the layer serves
    /// ([`Builder::with_model_name`](crate::Builder::with_model_name),
    /// `OMNI_METRICS_MODEL_NAME`), when one is set; the metrics'
    /// `model_name` label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_name: Option<std::sync::Arc<str>>,
    /// Beyond vLLM-Omni's tables: the id (32 hex digits) of the request's exported trace, when an
    /// OpenTelemetry layer samples it; the metrics' exemplars carry it too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Beyond vLLM-Omni's tables: where the request's spans came from when they did not follow
    /// the span convention ([`TraceSource`]); `None` for the convention's (the layer's own
    /// records, and the report of their traces). A record from another source cannot know
    /// some fields: they are 0 here, and left out of its JSON line, its tables and its HTML
    /// report ([`TraceSource`] lists them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<TraceSource>,
    /// The request span's duration, creation to close.
    pub e2e_total_ms: f64,
    /// Stage 0's `num_tokens_in` plus every stage's `num_tokens_out`.
    pub e2e_total_tokens: u64,
    /// Every edge's `tx_time_ms + rx_decode_time_ms + in_flight_time_ms`, summed.
    pub transfers_total_time_ms: f64,
    /// Every edge's `size_kbytes`, summed.
    pub transfers_total_kbytes: f64,
    /// Beyond vLLM-Omni's tables: request start to the first `omni.output` of its last stage (the
    /// first output the caller could see); `None` if that stage marked none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_first_output_ms: Option<f64>,
    /// Beyond vLLM-Omni's tables: request start to the first `omni.output` of the first stage with
    /// an `audio_sample_rate` (vLLM-Omni's audio TTFP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_first_audio_ms: Option<f64>,
    /// Beyond vLLM-Omni's tables: the duration of the request's audio: that of its last stage
    /// with audio (the audio the caller receives).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_duration_ms: Option<f64>,
    /// Beyond vLLM-Omni's tables: `e2e_total_ms / audio_duration_ms` (vLLM-Omni's benchmark
    /// definition, named apart from the stages' `audio_rtf`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_e2e_rtf: Option<f64>,
    /// Beyond vLLM-Omni's tables: spans of this request that broke the convention and were left
    /// out.
    pub invalid_spans: u64,
    /// One entry per stage id, ascending.
    pub stages: Vec<StageRequestStats>,
    /// One entry per edge, ordered by (from, to).
    pub transfers: Vec<TransferEdgeStats>,
    /// When the request span started, in ns of the layer's clock.
    #[serde(skip)]
    pub start_ns: u64,
    /// When the request span closed, in ns of the layer's clock.
    #[serde(skip)]
    pub end_ns: u64,
}

impl RequestE2EStats {
    /// Whether the record's field `key` (of the request, or of a stage) is known: not one
    /// its [`source`](Self::source) cannot give.
    pub(crate) fn knows(&self, key: &str) -> bool {
        TraceSource::knows_request_field(self.source, key)
    }

    /// The stage with this id, if the request ran it.
    pub fn stage(&self, stage_id: u64) -> Option<&StageRequestStats> {
        self.stages.iter().find(|s| s.stage_id == stage_id)
    }

    /// The edge `from->to`, if the request used it.
    pub fn edge(&self, from: u64, to: u64) -> Option<&TransferEdgeStats> {
        self.transfers
            .iter()
            .find(|e| e.from_stage == from && e.to_stage == to)
    }
}

/// The `Overall Summary` of one scope: a run (offline) or one request (online).
///
/// Serialized, it is the `{"type":"summary",...}` JSON-lines record, with one
/// `e2e_stage_{i}_wall_time_ms` key per stage, and a `distributions` object for two or
/// more completed requests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OverallSummary {
    /// The scope's id: the run's `run_id` (or `run-<n>`), or the online request's id.
    pub scope: String,
    /// Beyond vLLM-Omni's tables: the model the layer serves, when one is set (as
    /// [`RequestE2EStats::model_name`]); the record's `model_name` key, after `scope`.
    pub model_name: Option<std::sync::Arc<str>>,
    /// Beyond vLLM-Omni's tables: set when some of the scope's requests came from traces that
    /// did not follow the span convention ([`RequestE2EStats::source`]): the figures they
    /// cannot give ([`TraceSource`] lists them) are then left out of the record
    /// and the tables, after `scope` (and `model_name`) comes `source`.
    pub source: Option<TraceSource>,
    /// Completed (`ok`) requests.
    pub e2e_requests: u64,
    /// Scope start (the run span's start, or the online request's) to the last completion,
    /// in ms.
    pub e2e_wall_time_ms: f64,
    /// Sum of the completed requests' `e2e_total_tokens`.
    pub e2e_total_tokens: u64,
    /// `e2e_wall_time_ms / e2e_requests` (0 without a request): not a mean latency.
    pub e2e_avg_time_per_request_ms: f64,
    /// `e2e_total_tokens * 1000 / e2e_wall_time_ms` (0 for an empty wall).
    pub e2e_avg_tokens_per_s: f64,
    /// `(stage id, e2e_stage_{i}_wall_time_ms)`: earliest start to latest end of stage `i`'s
    /// spans in the scope, ascending by stage id.
    pub stage_wall_time_ms: Vec<(u64, f64)>,
    /// Beyond vLLM-Omni's tables: requests that ended with `status = error`.
    pub e2e_requests_error: u64,
    /// Beyond vLLM-Omni's tables: requests dropped unfinished (`status = aborted`).
    pub e2e_requests_aborted: u64,
    /// Beyond vLLM-Omni's tables: spans in the scope that broke the convention and were left out.
    pub invalid_spans: u64,
    /// Beyond vLLM-Omni's tables: count, mean, p50/p90/p99 and max of the completed requests'
    /// latency, per stage compute and queue time, and per edge transfer time
    /// ([`Distributions`]).
    ///
    /// Always filled; printed (the `Distributions` table, the record's `distributions`
    /// key) only for a scope of two or more completed requests, so an online request's
    /// output is unchanged: its own record has its figures.
    pub distributions: Distributions,
    /// Beyond vLLM-Omni's tables: the audio streams of completed requests whose continuity
    /// was measured ([`StageRequestStats::audio_underrun_ms`]), one per audio stage.
    pub audio_streams: u64,
    /// `(threshold_ms, streams)`: of [`audio_streams`](Self::audio_streams), those with no
    /// gap above each threshold (`audio_continuity_ok_{threshold}ms`).
    pub audio_continuity_ok: Vec<(u64, u64)>,
    /// Requests whose audio stage produced no frames ([`StageRequestStats::audio_skipped`]),
    /// whatever their status.
    pub audio_skipped_requests: u64,
    /// Beyond vLLM-Omni's tables: images generated by the completed requests (their
    /// stages' `image_num`).
    pub e2e_images: u64,
    /// `e2e_images / e2e_wall_time_ms`, per second.
    pub e2e_images_per_s: f64,
    /// Their pixels (`image_num` x the `WxH` of `resolution`) over the wall time, in
    /// millions per second; images without a readable resolution add none.
    pub e2e_megapixels_per_s: f64,
}

impl OverallSummary {
    /// `e2e_stage_{i}_wall_time_ms` for one stage.
    pub fn stage_wall_time_ms(&self, stage_id: u64) -> Option<f64> {
        self.stage_wall_time_ms
            .iter()
            .find(|(id, _)| *id == stage_id)
            .map(|(_, ms)| *ms)
    }

    /// Whether the summary's figure `key` is known: not one its [`source`](Self::source)
    /// cannot give.
    pub(crate) fn knows(&self, key: &str) -> bool {
        self.source
            .is_none_or(|s| !s.unknown_summary_fields().contains(&key))
    }

    /// Whether the tables and the record show [`OverallSummary::distributions`]: for two or
    /// more completed requests.
    pub(crate) fn shows_distributions(&self) -> bool {
        self.e2e_requests > 1 && !self.distributions.is_empty()
    }
}

impl Serialize for OverallSummary {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry(keys::SCOPE, &self.scope)?;
        if let Some(model) = &self.model_name {
            map.serialize_entry(keys::MODEL_NAME, model)?;
        }
        if let Some(source) = self.source {
            map.serialize_entry(keys::SOURCE, &source)?;
        }
        let known = |key: &str| self.knows(key);
        map.serialize_entry(keys::E2E_REQUESTS, &self.e2e_requests)?;
        map.serialize_entry(keys::E2E_WALL_TIME_MS, &self.e2e_wall_time_ms)?;
        if known(keys::E2E_TOTAL_TOKENS) {
            map.serialize_entry(keys::E2E_TOTAL_TOKENS, &self.e2e_total_tokens)?;
        }
        map.serialize_entry(
            keys::E2E_AVG_TIME_PER_REQUEST_MS,
            &self.e2e_avg_time_per_request_ms,
        )?;
        if known(keys::E2E_AVG_TOKENS_PER_S) {
            map.serialize_entry(keys::E2E_AVG_TOKENS_PER_S, &self.e2e_avg_tokens_per_s)?;
        }
        for (id, ms) in &self.stage_wall_time_ms {
            map.serialize_entry(&keys::e2e_stage_wall_time_ms(*id), ms)?;
        }
        map.serialize_entry(keys::E2E_REQUESTS_ERROR, &self.e2e_requests_error)?;
        map.serialize_entry(keys::E2E_REQUESTS_ABORTED, &self.e2e_requests_aborted)?;
        map.serialize_entry(keys::INVALID_SPANS, &self.invalid_spans)?;
        if self.audio_streams > 0 {
            map.serialize_entry(keys::AUDIO_STREAMS, &self.audio_streams)?;
            for (threshold_ms, ok) in &self.audio_continuity_ok {
                map.serialize_entry(&keys::audio_continuity_ok(*threshold_ms), ok)?;
            }
        }
        if self.e2e_images > 0 {
            map.serialize_entry(keys::E2E_IMAGES, &self.e2e_images)?;
            map.serialize_entry(keys::E2E_IMAGES_PER_S, &finite(self.e2e_images_per_s))?;
            map.serialize_entry(
                keys::E2E_MEGAPIXELS_PER_S,
                &finite(self.e2e_megapixels_per_s),
            )?;
        }
        if self.audio_skipped_requests > 0 {
            map.serialize_entry(keys::AUDIO_SKIPPED_REQUESTS, &self.audio_skipped_requests)?;
        }
        if self.shows_distributions() {
            map.serialize_entry(keys::DISTRIBUTIONS, &self.distributions)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod formula_tests {
    /// Formerly the doc example of `stage_gen_time_ms`.
    #[test]
    fn formula_stage_gen_time_ms() {
        assert_eq!(crate::stats::stage_gen_time_ms(100.0, 10.0, 5.0), 85.0);
        assert_eq!(crate::stats::stage_gen_time_ms(1.0, 3.0, 0.0), 0.0);
    }

    /// Formerly the doc example of `finite`.
    #[test]
    fn formula_finite() {
        use crate::stats::finite;
        assert_eq!(finite(f64::INFINITY), f64::MAX);
        assert_eq!(finite(f64::NAN), 0.0);
        assert!(finite(-0.0).is_sign_positive());
    }

    /// Formerly the doc example of `elapsed_ms`.
    #[test]
    fn formula_elapsed_ms() {
        assert_eq!(crate::stats::elapsed_ms(1_000_000, 43_500_000), 42.5);
        assert_eq!(crate::stats::elapsed_ms(5_000_000, 4_000_000), 0.0);
    }

    /// Formerly the doc example of `in_flight_time_ms`.
    #[test]
    fn formula_in_flight_time_ms() {
        assert_eq!(crate::stats::in_flight_time_ms(2_000_000, 4_015_000), 2.015);
        assert_eq!(crate::stats::in_flight_time_ms(5_000_000, 4_000_000), 0.0);
    }

    /// Formerly the doc example of `prompt_tokens`.
    #[test]
    fn formula_prompt_tokens() {
        use crate::stats::{StageRequestStats, prompt_tokens};
        let stage = |id, i| StageRequestStats {
            stage_id: id,
            num_tokens_in: i,
            ..Default::default()
        };
        assert_eq!(prompt_tokens(&[stage(1, 4826), stage(0, 4860)]), 4860);
        assert_eq!(prompt_tokens(&[stage(1, 4826)]), 0);
    }

    /// Formerly the doc example of `generated_tokens`.
    #[test]
    fn formula_generated_tokens() {
        use crate::stats::{StageRequestStats, generated_tokens};
        let stage = |id, o| StageRequestStats {
            stage_id: id,
            num_tokens_out: o,
            ..Default::default()
        };
        assert_eq!(
            generated_tokens(&[stage(0, 67), stage(1, 275), stage(2, 0)]),
            342
        );
    }

    /// Formerly the doc example of `e2e_total_tokens`.
    #[test]
    fn formula_e2e_total_tokens() {
        use crate::stats::{StageRequestStats, e2e_total_tokens};
        let stage = |id, i, o| StageRequestStats {
            stage_id: id,
            num_tokens_in: i,
            num_tokens_out: o,
            ..Default::default()
        };
        let stages = [stage(0, 4860, 67), stage(1, 4826, 275), stage(2, 4384, 0)];
        assert_eq!(e2e_total_tokens(&stages), 5202);
    }

    /// Formerly the doc example of `transfer_time_ms`.
    #[test]
    fn formula_transfer_time_ms() {
        assert_eq!(crate::stats::transfer_time_ms(1.5, 2.0, 0.25), 3.75);
    }

    /// Formerly the doc example of `transfers_total_time_ms`.
    #[test]
    fn formula_transfers_total_time_ms() {
        assert_eq!(
            crate::stats::transfers_total_time_ms(&[]).to_bits(),
            0.0_f64.to_bits()
        );
    }

    /// Formerly the doc example of `transfers_total_bytes`.
    #[test]
    fn formula_transfers_total_bytes() {
        use crate::stats::{TransferEdgeStats, transfers_total_bytes};
        let edge = |b| TransferEdgeStats {
            size_bytes: b,
            ..Default::default()
        };
        assert_eq!(
            transfers_total_bytes(&[edge(4096), edge(1 << 20)]),
            1_052_672
        );
    }

    /// Formerly the doc example of `per_second`.
    #[test]
    fn formula_per_second() {
        assert_eq!(crate::stats::per_second(12, 10_000.0), 1.2);
        assert_eq!(crate::stats::per_second(12, 0.0), 0.0);
    }

    /// Formerly the doc example of `time_to_first_output_ms`.
    #[test]
    fn formula_time_to_first_output_ms() {
        assert_eq!(
            crate::stats::time_to_first_output_ms(1_000_000, 43_500_000),
            42.5
        );
    }

    /// Formerly the doc example of `audio_duration_ms`.
    #[test]
    fn formula_audio_duration_ms() {
        use crate::stats::audio_duration_ms;
        assert_eq!(audio_duration_ms(525_525, 24_000), Some(21_896.875));
        assert_eq!(audio_duration_ms(525_525, 0), None);
    }

    /// Formerly the doc example of `rtf`.
    #[test]
    fn formula_rtf() {
        assert_eq!(crate::stats::rtf(500.0, Some(2_000.0)), Some(0.25));
        assert_eq!(crate::stats::rtf(500.0, None), None);
    }

    /// Formerly the doc example of `inter_output_ms`.
    #[test]
    fn formula_inter_output_ms() {
        // Outputs at 1, 3, 5 and 7 ms (two overlapping chunks: 1 and 5, 3 and 7).
        assert_eq!(
            crate::stats::inter_output_ms(1_000_000, 7_000_000, 4),
            Some(2.0)
        );
        assert_eq!(crate::stats::inter_output_ms(1_000_000, 1_000_000, 1), None);
    }

    /// Formerly the doc example of `time_per_output_token_ms`.
    #[test]
    fn formula_time_per_output_token_ms() {
        use crate::stats::{StageRequestStats, time_per_output_token_ms};
        let s = StageRequestStats {
            num_tokens_out: 11,
            first_output_ns: Some(5_000_000),
            last_output_ns: Some(55_000_000),
            output_chunks: 11,
            ..Default::default()
        };
        assert_eq!(time_per_output_token_ms(&s), Some(5.0));
    }

    /// Formerly the doc example of `audio_stage`.
    #[test]
    fn formula_audio_stage() {
        use crate::stats::{StageRequestStats, audio_stage};
        let stage = |id, rate| StageRequestStats {
            stage_id: id,
            audio_sample_rate: rate,
            ..Default::default()
        };
        let stages = [
            stage(2, Some(24_000)),
            stage(0, None),
            stage(1, Some(16_000)),
        ];
        assert_eq!(audio_stage(&stages).map(|s| s.stage_id), Some(1));
        assert!(audio_stage(&stages[1..2]).is_none());
    }

    /// Formerly the doc example of `counts_in_summary`.
    #[test]
    fn formula_counts_in_summary() {
        use crate::stats::{RequestStatus, counts_in_summary};
        assert!(counts_in_summary(RequestStatus::Ok));
        assert!(!counts_in_summary(RequestStatus::Error));
        assert!(!counts_in_summary(RequestStatus::Aborted));
    }
}

#[cfg(test)]
mod audio_continuity_tests {
    use super::audio_continuity;

    const MS: u64 = 1_000_000;

    /// Packets of 200 ms (4,800 frames at 24 kHz) arriving at `at_ms`.
    fn play(at_ms: &[u64]) -> Option<(f64, f64)> {
        audio_continuity(at_ms.iter().map(|t| (t * MS, 4_800)), 24_000)
    }

    #[test]
    fn the_specs_example() {
        // 0 ms plays to 200; 150 ms plays at 200 (no gap) to 400; 500 ms after a 100 ms gap.
        assert_eq!(play(&[0, 150, 500]), Some((100.0, 100.0)));
    }

    #[test]
    fn steady_late_start_stall_and_jitter() {
        assert_eq!(play(&[0, 200, 400, 600]), Some((0.0, 0.0)), "steady");
        // Playback starts at the first packet, however late: that is time to first audio.
        assert_eq!(play(&[300, 500, 700]), Some((0.0, 0.0)), "late start");
        // Played out at 600, the fourth comes at 1,000: one 400 ms gap.
        assert_eq!(
            play(&[0, 200, 400, 1_000, 1_200]),
            Some((400.0, 400.0)),
            "stall"
        );
        // Gaps of 50 ms before the 2nd (250 > 200) and 4th (700 > 650); the 3rd and 5th
        // come early and wait their turn.
        assert_eq!(
            play(&[0, 250, 390, 700, 800]),
            Some((100.0, 50.0)),
            "jitter"
        );
    }

    #[test]
    fn the_gaps_are_kept_where_they_happen() {
        let playback = super::audio_playback([0, 150, 500].map(|t| (t * MS, 4_800)), 24_000);
        // Played out at 400 ms, the third packet came at 500.
        assert_eq!(
            playback.map(|p| p.gaps_ns),
            Some(vec![(400 * MS, 500 * MS)])
        );
    }

    #[test]
    fn no_audio_is_no_measure() {
        assert_eq!(play(&[]), None);
        assert_eq!(
            audio_continuity([(0, 0), (5 * MS, 0)], 24_000),
            None,
            "zero frames"
        );
        assert_eq!(audio_continuity([(0, 4_800)], 0), None, "no rate");
        // A packet of zero frames holds nothing and is skipped.
        let with_empty = [(0, 4_800), (100 * MS, 0), (300 * MS, 4_800)];
        assert_eq!(audio_continuity(with_empty, 24_000), Some((100.0, 100.0)));
    }
}

#[cfg(test)]
mod trace_source {
    use super::TraceSource;

    #[test]
    fn what_a_vllm_omni_trace_cannot_know() {
        assert!(
            TraceSource::VllmOmni
                .unknown_request_fields()
                .contains(&"e2e_total_tokens")
        );
        assert!(
            TraceSource::VllmOmni
                .unknown_stage_fields()
                .contains(&"num_tokens_out")
        );
        assert!(
            !TraceSource::VllmOmni
                .unknown_stage_fields()
                .contains(&"stage_gen_time_ms")
        );
        assert_eq!(
            TraceSource::VllmOmni.unknown_summary_fields(),
            ["e2e_total_tokens", "e2e_avg_tokens_per_s"]
        );
    }
}
