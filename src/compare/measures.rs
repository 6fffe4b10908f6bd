//! What is compared: each [`Measure`], its name (as `--fail-on` and the outputs spell it),
//! and its values, taken from each side's request records.

use std::collections::BTreeMap;
use std::fmt;

use super::Side;
use crate::stats::{RequestE2EStats, RequestStatus};

/// One quantity compared between two runs: a row of the comparison.
///
/// Latencies and real-time factors are one value per completed (`ok`) request that has
/// them; throughputs one value per run; error and abort rates a proportion of every request.
/// Names (`Display`, [`Measure::parse`]) are those of `--fail-on`:
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub(crate) enum Measure {
    /// `e2e_total_ms` of each completed request.
    E2e,
    /// A request's `time_to_first_output_ms` (its start to its last stage's first output).
    FirstOutput,
    /// A request's `time_to_first_audio_ms` (vLLM-Omni's audio TTFP).
    FirstAudio,
    /// `queue_time_ms` of a stage.
    StageQueue(u64),
    /// `stage_gen_time_ms` of a stage.
    StageGen(u64),
    /// `postprocess_time_ms` of a stage.
    StagePostprocess(u64),
    /// A stage's own `time_to_first_output_ms` (TTFT of an LLM stage).
    StageFirstOutput(u64),
    /// `audio_rtf` of a stage (`stage_gen_time_ms / audio_duration_ms`).
    StageAudioRtf(u64),
    /// `denoise_step_latency_ms` of a diffusion stage.
    StageDenoiseStep(u64),
    /// `audio_underrun_ms` of an audio stage: its stream's playback gaps, summed.
    StageAudioUnderrun(u64),
    /// `audio_max_gap_ms` of an audio stage: its stream's longest playback gap.
    StageAudioMaxGap(u64),
    /// `queue_time_ms` of one replica of a stage (stage, replica): only when the records
    /// carry a `replica_id`.
    ReplicaQueue(u64, u64),
    /// `stage_gen_time_ms` of one replica of a stage.
    ReplicaGen(u64, u64),
    /// `postprocess_time_ms` of one replica of a stage.
    ReplicaPostprocess(u64, u64),
    /// `tx_time_ms` of an edge `from->to`.
    EdgeTx(u64, u64),
    /// `in_flight_time_ms` of an edge.
    EdgeInFlight(u64, u64),
    /// `rx_decode_time_ms` of an edge.
    EdgeRx(u64, u64),
    /// A request's `audio_e2e_rtf` (`e2e_total_ms / audio_duration_ms`).
    AudioE2eRtf,
    /// Completed requests per second of a run's wall time (`e2e_requests * 1000 /
    /// e2e_wall_time_ms`), one value per run.
    ThroughputRps,
    /// Tokens per second of a run's wall time (`e2e_avg_tokens_per_s`), one value per run.
    ThroughputTps,
    /// The share of requests that ended with `status = error`.
    ErrorRate,
    /// The share of requests that ended with `status = aborted`.
    AbortRate,
    /// The share of completed requests with an audio stream whose playback had a gap
    /// beyond the (smallest) continuity threshold (`audio_continuity`, 100 ms by default).
    AudioGapRate,
}

/// How a measure's values are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Milliseconds per request: quantiles and mean.
    Latency,
    /// A ratio per request (real-time factors): quantiles and mean.
    Ratio,
    /// A figure per run: its mean over runs.
    PerRun,
    /// A proportion of requests.
    Proportion,
}

impl Measure {
    pub(crate) fn kind(self) -> Kind {
        match self {
            Measure::StageAudioRtf(_) | Measure::AudioE2eRtf => Kind::Ratio,
            Measure::ThroughputRps | Measure::ThroughputTps => Kind::PerRun,
            Measure::ErrorRate | Measure::AbortRate | Measure::AudioGapRate => Kind::Proportion,
            _ => Kind::Latency,
        }
    }

    /// Whether a higher value is better (throughputs); lower is better for the rest.
    pub(crate) fn higher_is_better(self) -> bool {
        matches!(self, Measure::ThroughputRps | Measure::ThroughputTps)
    }

    /// The unit of its values: `ms`, `x` (a ratio), `req/s`, `tok/s` or `%` (of requests).
    pub(crate) fn unit(self) -> &'static str {
        match self {
            Measure::StageAudioRtf(_) | Measure::AudioE2eRtf => "x",
            Measure::ThroughputRps => "req/s",
            Measure::ThroughputTps => "tok/s",
            Measure::ErrorRate | Measure::AbortRate | Measure::AudioGapRate => "%",
            _ => "ms",
        }
    }

    /// The record field it is taken from, for the docs and the outputs.
    pub(crate) fn field(self) -> &'static str {
        match self {
            Measure::E2e => "e2e_total_ms",
            Measure::FirstOutput | Measure::StageFirstOutput(_) => "time_to_first_output_ms",
            Measure::FirstAudio => "time_to_first_audio_ms",
            Measure::StageQueue(_) => "queue_time_ms",
            Measure::StageGen(_) => "stage_gen_time_ms",
            Measure::StagePostprocess(_) => "postprocess_time_ms",
            Measure::StageDenoiseStep(_) => "denoise_step_latency_ms",
            Measure::StageAudioUnderrun(_) => "audio_underrun_ms",
            Measure::StageAudioMaxGap(_) => "audio_max_gap_ms",
            Measure::AudioGapRate => "audio_continuity ok = false",
            Measure::ReplicaQueue(..) => "queue_time_ms",
            Measure::ReplicaGen(..) => "stage_gen_time_ms",
            Measure::ReplicaPostprocess(..) => "postprocess_time_ms",
            Measure::StageAudioRtf(_) => "audio_rtf",
            Measure::EdgeTx(..) => "tx_time_ms",
            Measure::EdgeInFlight(..) => "in_flight_time_ms",
            Measure::EdgeRx(..) => "rx_decode_time_ms",
            Measure::AudioE2eRtf => "audio_e2e_rtf",
            Measure::ThroughputRps => "e2e_requests / e2e_wall_time_ms",
            Measure::ThroughputTps => "e2e_avg_tokens_per_s",
            Measure::ErrorRate => "status = error",
            Measure::AbortRate => "status = aborted",
        }
    }

    /// The stage a measure is of (its distributions are drawn together), if any.
    pub(crate) fn stage(self) -> Option<u64> {
        match self {
            Measure::StageQueue(s)
            | Measure::StageGen(s)
            | Measure::StagePostprocess(s)
            | Measure::StageFirstOutput(s)
            | Measure::StageAudioRtf(s)
            | Measure::StageDenoiseStep(s)
            | Measure::StageAudioUnderrun(s)
            | Measure::StageAudioMaxGap(s)
            | Measure::ReplicaQueue(s, _)
            | Measure::ReplicaGen(s, _)
            | Measure::ReplicaPostprocess(s, _) => Some(s),
            _ => None,
        }
    }

    /// The measure named `name` (as `Display` writes it), if it is one.
    pub(crate) fn parse(name: &str) -> Option<Measure> {
        let fixed = match name {
            "e2e" => Some(Measure::E2e),
            "first_output" => Some(Measure::FirstOutput),
            "first_audio" => Some(Measure::FirstAudio),
            "audio_e2e_rtf" => Some(Measure::AudioE2eRtf),
            "throughput_rps" => Some(Measure::ThroughputRps),
            "throughput_tps" => Some(Measure::ThroughputTps),
            "error_rate" => Some(Measure::ErrorRate),
            "abort_rate" => Some(Measure::AbortRate),
            "audio_gap_rate" => Some(Measure::AudioGapRate),
            _ => None,
        };
        if fixed.is_some() {
            return fixed;
        }
        if let Some(rest) = name.strip_prefix("stage") {
            let (id, what) = rest.split_once('_')?;
            let id = parse_id(id)?;
            if let Some(rest) = what.strip_prefix('r') {
                if let Some((replica, what)) = rest.split_once('_') {
                    if let Some(replica) = parse_id(replica) {
                        return match what {
                            "queue" => Some(Measure::ReplicaQueue(id, replica)),
                            "gen" => Some(Measure::ReplicaGen(id, replica)),
                            "postprocess" => Some(Measure::ReplicaPostprocess(id, replica)),
                            _ => None,
                        };
                    }
                }
            }
            return match what {
                "queue" => Some(Measure::StageQueue(id)),
                "gen" => Some(Measure::StageGen(id)),
                "postprocess" => Some(Measure::StagePostprocess(id)),
                "first_output" => Some(Measure::StageFirstOutput(id)),
                "audio_rtf" => Some(Measure::StageAudioRtf(id)),
                "denoise_step" => Some(Measure::StageDenoiseStep(id)),
                "audio_underrun" => Some(Measure::StageAudioUnderrun(id)),
                "audio_max_gap" => Some(Measure::StageAudioMaxGap(id)),
                _ => None,
            };
        }
        let rest = name.strip_prefix("edge")?;
        let (from, rest) = rest.split_once('_')?;
        let (to, what) = rest.split_once('_')?;
        let (from, to) = (parse_id(from)?, parse_id(to)?);
        match what {
            "tx" => Some(Measure::EdgeTx(from, to)),
            "in_flight" => Some(Measure::EdgeInFlight(from, to)),
            "rx" => Some(Measure::EdgeRx(from, to)),
            _ => None,
        }
    }

    /// The order rows are listed in when no change sorts them: request measures, each stage,
    /// each edge, throughput, rates.
    pub(crate) fn order_key(self) -> (u8, u64, u64, u8) {
        match self {
            Measure::E2e => (0, 0, 0, 0),
            Measure::FirstOutput => (0, 0, 0, 1),
            Measure::FirstAudio => (0, 0, 0, 2),
            Measure::AudioE2eRtf => (0, 0, 0, 3),
            Measure::StageQueue(s) => (1, s, 0, 0),
            Measure::StageGen(s) => (1, s, 0, 1),
            Measure::StagePostprocess(s) => (1, s, 0, 2),
            Measure::StageFirstOutput(s) => (1, s, 0, 3),
            Measure::StageAudioRtf(s) => (1, s, 0, 4),
            Measure::StageDenoiseStep(s) => (1, s, 0, 5),
            Measure::StageAudioUnderrun(s) => (1, s, 0, 6),
            Measure::StageAudioMaxGap(s) => (1, s, 0, 7),
            Measure::ReplicaQueue(s, r) => (1, s, r + 1, 0),
            Measure::ReplicaGen(s, r) => (1, s, r + 1, 1),
            Measure::ReplicaPostprocess(s, r) => (1, s, r + 1, 2),
            Measure::EdgeTx(f, t) => (2, f, t, 0),
            Measure::EdgeInFlight(f, t) => (2, f, t, 1),
            Measure::EdgeRx(f, t) => (2, f, t, 2),
            Measure::ThroughputRps => (3, 0, 0, 0),
            Measure::ThroughputTps => (3, 0, 0, 1),
            Measure::ErrorRate => (4, 0, 0, 0),
            Measure::AbortRate => (4, 0, 0, 1),
            Measure::AudioGapRate => (4, 0, 0, 2),
        }
    }
}

/// A stage or edge id: decimal digits only (no sign, no `+`).
fn parse_id(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Measure::E2e => f.write_str("e2e"),
            Measure::FirstOutput => f.write_str("first_output"),
            Measure::FirstAudio => f.write_str("first_audio"),
            Measure::StageQueue(s) => write!(f, "stage{s}_queue"),
            Measure::StageGen(s) => write!(f, "stage{s}_gen"),
            Measure::StagePostprocess(s) => write!(f, "stage{s}_postprocess"),
            Measure::StageFirstOutput(s) => write!(f, "stage{s}_first_output"),
            Measure::StageAudioRtf(s) => write!(f, "stage{s}_audio_rtf"),
            Measure::StageDenoiseStep(s) => write!(f, "stage{s}_denoise_step"),
            Measure::StageAudioUnderrun(s) => write!(f, "stage{s}_audio_underrun"),
            Measure::StageAudioMaxGap(s) => write!(f, "stage{s}_audio_max_gap"),
            Measure::ReplicaQueue(s, r) => write!(f, "stage{s}_r{r}_queue"),
            Measure::ReplicaGen(s, r) => write!(f, "stage{s}_r{r}_gen"),
            Measure::ReplicaPostprocess(s, r) => write!(f, "stage{s}_r{r}_postprocess"),
            Measure::EdgeTx(a, b) => write!(f, "edge{a}_{b}_tx"),
            Measure::EdgeInFlight(a, b) => write!(f, "edge{a}_{b}_in_flight"),
            Measure::EdgeRx(a, b) => write!(f, "edge{a}_{b}_rx"),
            Measure::AudioE2eRtf => f.write_str("audio_e2e_rtf"),
            Measure::ThroughputRps => f.write_str("throughput_rps"),
            Measure::ThroughputTps => f.write_str("throughput_tps"),
            Measure::ErrorRate => f.write_str("error_rate"),
            Measure::AbortRate => f.write_str("abort_rate"),
            Measure::AudioGapRate => f.write_str("audio_gap_rate"),
        }
    }
}

/// A side's values, per measure: sorted ascending and finite (latencies, ratios, per-run
/// figures), and the request counts behind the rates.
#[derive(Debug, Default)]
pub(crate) struct Values {
    pub(crate) samples: BTreeMap<Measure, Vec<f64>>,
    /// Requests of any status, and those that ended in error or aborted.
    pub(crate) total: u64,
    pub(crate) errors: u64,
    pub(crate) aborted: u64,
    /// Completed requests with a measured audio stream, and those with a gap beyond the
    /// smallest continuity threshold.
    pub(crate) audio_streams: u64,
    pub(crate) audio_gapped: u64,
}

impl Values {
    /// Every measure's values of `side`, in one pass over its requests.
    pub(crate) fn of(side: &Side) -> Values {
        let mut values = Values::default();
        let mut samples: BTreeMap<Measure, Vec<f64>> = BTreeMap::new();
        let mut push = |m: Measure, v: f64| {
            if v.is_finite() {
                samples.entry(m).or_default().push(v);
            }
        };
        for r in &side.requests {
            values.total += 1;
            match r.status {
                RequestStatus::Ok => {
                    request_values(r, &mut push);
                    let strictest = r
                        .stages
                        .iter()
                        .flat_map(|s| &s.audio_continuity)
                        .min_by_key(|c| c.threshold_ms);
                    if let Some(c) = strictest {
                        values.audio_streams += 1;
                        values.audio_gapped += u64::from(!c.ok);
                    }
                }
                RequestStatus::Error => values.errors += 1,
                RequestStatus::Aborted => values.aborted += 1,
            }
        }
        for run in &side.runs {
            if run.wall_ms > 0.0 && run.requests > 0 {
                push(
                    Measure::ThroughputRps,
                    run.requests as f64 * 1000.0 / run.wall_ms,
                );
                push(
                    Measure::ThroughputTps,
                    run.tokens as f64 * 1000.0 / run.wall_ms,
                );
            }
        }
        for v in samples.values_mut() {
            v.sort_unstable_by(f64::total_cmp);
        }
        values.samples = samples;
        values
    }

    /// The (count, of how many) behind a proportion's measure.
    pub(crate) fn proportion(&self, m: Measure) -> (u64, u64) {
        match m {
            Measure::ErrorRate => (self.errors, self.total),
            Measure::AbortRate => (self.aborted, self.total),
            Measure::AudioGapRate => (self.audio_gapped, self.audio_streams),
            _ => (0, 0),
        }
    }

    /// Whether every value of `m` is zero (or there is none): such a row is left out when
    /// both sides have it so, as the console leaves out all-zero rows.
    pub(crate) fn all_zero(&self, m: Measure) -> bool {
        self.samples
            .get(&m)
            .is_none_or(|v| v.iter().all(|x| *x == 0.0))
    }
}

/// The per-request values of a completed request.
fn request_values(r: &RequestE2EStats, push: &mut impl FnMut(Measure, f64)) {
    push(Measure::E2e, r.e2e_total_ms);
    if let Some(v) = r.time_to_first_output_ms {
        push(Measure::FirstOutput, v);
    }
    if let Some(v) = r.time_to_first_audio_ms {
        push(Measure::FirstAudio, v);
    }
    if let Some(v) = r.audio_e2e_rtf {
        push(Measure::AudioE2eRtf, v);
    }
    for s in &r.stages {
        let id = s.stage_id;
        push(Measure::StageQueue(id), s.queue_time_ms);
        push(Measure::StageGen(id), s.stage_gen_time_ms);
        push(Measure::StagePostprocess(id), s.postprocess_time_ms);
        if let Some(v) = s.time_to_first_output_ms {
            push(Measure::StageFirstOutput(id), v);
        }
        if let Some(v) = s.audio_rtf {
            push(Measure::StageAudioRtf(id), v);
        }
        if let Some(v) = s.denoise_step_latency_ms {
            push(Measure::StageDenoiseStep(id), v);
        }
        if let Some(v) = s.audio_underrun_ms {
            push(Measure::StageAudioUnderrun(id), v);
        }
        if let Some(v) = s.audio_max_gap_ms {
            push(Measure::StageAudioMaxGap(id), v);
        }
        if let Some(replica) = s.replica_id {
            push(Measure::ReplicaQueue(id, replica), s.queue_time_ms);
            push(Measure::ReplicaGen(id, replica), s.stage_gen_time_ms);
            push(
                Measure::ReplicaPostprocess(id, replica),
                s.postprocess_time_ms,
            );
        }
    }
    for e in &r.transfers {
        let (a, b) = (e.from_stage, e.to_stage);
        push(Measure::EdgeTx(a, b), e.tx_time_ms);
        push(Measure::EdgeInFlight(a, b), e.in_flight_time_ms);
        push(Measure::EdgeRx(a, b), e.rx_decode_time_ms);
    }
}

// The examples of this module, as unit tests (the module is internal to the crate).
#[cfg(test)]
mod examples {
    #[test]
    fn example_measure() -> Result<(), Box<dyn std::error::Error>> {
        use crate::compare::Measure;
        assert_eq!(Measure::StageGen(1).to_string(), "stage1_gen");
        assert_eq!(Measure::EdgeInFlight(0, 1).to_string(), "edge0_1_in_flight");
        assert_eq!(
            Measure::parse("edge0_1_in_flight"),
            Some(Measure::EdgeInFlight(0, 1))
        );
        assert_eq!(Measure::parse("e2e"), Some(Measure::E2e));
        assert_eq!(
            Measure::parse("stage1_r2_gen"),
            Some(Measure::ReplicaGen(1, 2))
        );
        Ok(())
    }
}
