//! The metric catalogue: every metric the crate exports, defined once.
//!
//! Each [`MetricDef`] names its family twice, once per metrics export: a Prometheus name in
//! vLLM-Omni's `vllm_omni:*` namespace (its own families where it has one, so its Grafana
//! dashboards work unchanged; ours, in the same style, where it has none), and an
//! OpenTelemetry name (the GenAI semantic conventions where one exists, `omni.*`
//! elsewhere). [`observe`] turns one finished request into its observations, in the
//! exports' units: times in **seconds** (converted from the model's milliseconds here and
//! nowhere else), sizes in bytes, counts as counts. Both exports read this file, so they
//! cannot disagree on a name, a unit, a bucket or a value.
//!
//! Which requests feed what: every request counts once in
//! `vllm_omni:requests_success`, labelled with its `finished_reason` (`stop`, `error` or
//! `abort`); only `ok` requests feed every other metric (latencies, tokens,
//! audio, transfers), as only they feed the summary and the distributions.
//!
//! Labels are vLLM-Omni's and bounded: `model_name` on every family (the record's, else
//! `unknown`), stage ids and their `replica`, edge stage ids and their
//! `from_replica` / `to_replica` (a replica only when the record gives one), and
//! `finished_reason`; never a request id. Each export keeps at most 64 distinct stage ids
//! and 64 replica ids, and the process at most 16 model names.
//!
//! ```
//! use omni_metrics::metrics::observe;
//! use omni_metrics::stats::{RequestE2EStats, StageRequestStats};
//!
//! let request = RequestE2EStats {
//!     e2e_total_ms: 1_500.0,
//!     stages: vec![StageRequestStats { stage_id: 0, stage_gen_time_ms: 1_200.0, ..Default::default() }],
//!     ..Default::default()
//! };
//! let mut seen = Vec::new();
//! observe(&request, |def, labels, value| seen.push((def.prometheus, labels.stage, value)));
//! assert!(seen.contains(&("vllm_omni:e2e_request_latency_s", None, 1.5)));
//! assert!(seen.contains(&("vllm_omni:stage_gen_time_s", Some(0), 1.2)));
//! ```

use crate::handle::LiveGauges;
use crate::stats::{
    self, RequestE2EStats, RequestStatus, StageRequestStats, TransferEdgeStats, finite,
};

/// Counter, histogram or gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// A monotonic sum: each observation adds its value (Prometheus appends `_total`).
    Counter,
    /// A histogram over [`MetricDef::buckets`]: each observation is one sample.
    Histogram,
    /// A value read when the metrics are collected (a scrape, an OTLP export), never fed by
    /// [`observe`]: the live gauges, read from the open spans when an export collects.
    Gauge,
}

/// The label set of a family, besides `model_name`, which every family has. Label keys are
/// the same in both exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Labels {
    /// No label of its own (`model_name` only): one series per model.
    None,
    /// `stage` (the stage id, as a decimal string), and `replica` when the stage's record
    /// gives one ([`StageRequestStats::replica_id`]).
    Stage,
    /// `from_stage` and `to_stage` (stage ids), and `from_replica` / `to_replica` when the
    /// edge's record gives them ([`TransferEdgeStats::from_replica`]).
    Edge,
    /// `finished_reason`: `stop`, `error` or `abort`.
    FinishedReason,
    /// [`Labels::Stage`] and `threshold_ms`: one of the configured audio continuity
    /// thresholds ([`StageRequestStats::audio_continuity`]), at most
    /// [`MAX_AUDIO_CONTINUITY_THRESHOLDS`](crate::Builder::MAX_AUDIO_CONTINUITY_THRESHOLDS).
    StageThreshold,
    /// [`Labels::Stage`] and `reason`: why an audio stage produced no audio
    /// ([`StageRequestStats::audio_skipped`]: `no_frames`, `error` or `aborted`).
    StageReason,
}

impl Labels {
    /// Every label key a series of the family may carry, in exposition order (vLLM-Omni's):
    /// `model_name` first, always; a replica key only on the series of records that give
    /// a replica.
    ///
    /// ```
    /// use omni_metrics::metrics::Labels;
    /// assert_eq!(
    ///     Labels::Edge.keys(),
    ///     ["model_name", "from_stage", "from_replica", "to_stage", "to_replica"]
    /// );
    /// assert_eq!(Labels::None.keys(), ["model_name"]);
    /// ```
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Labels::None => &[MODEL_NAME_LABEL],
            Labels::Stage => &[MODEL_NAME_LABEL, STAGE_LABEL, REPLICA_LABEL],
            Labels::Edge => &[
                MODEL_NAME_LABEL,
                FROM_STAGE_LABEL,
                FROM_REPLICA_LABEL,
                TO_STAGE_LABEL,
                TO_REPLICA_LABEL,
            ],
            Labels::FinishedReason => &[MODEL_NAME_LABEL, FINISHED_REASON_LABEL],
            Labels::StageThreshold => &[
                MODEL_NAME_LABEL,
                STAGE_LABEL,
                REPLICA_LABEL,
                THRESHOLD_MS_LABEL,
            ],
            Labels::StageReason => &[MODEL_NAME_LABEL, STAGE_LABEL, REPLICA_LABEL, REASON_LABEL],
        }
    }
}

/// Label key of a stage id (vLLM-Omni's `stage`).
pub(crate) const STAGE_LABEL: &str = "stage";
/// Label key of an edge's sending stage id (vLLM-Omni's `from_stage`).
pub(crate) const FROM_STAGE_LABEL: &str = crate::convention::field::FROM_STAGE;
/// Label key of an edge's receiving stage id (vLLM-Omni's `to_stage`).
pub(crate) const TO_STAGE_LABEL: &str = crate::convention::field::TO_STAGE;
/// Label key of how a request ended (vLLM's `finished_reason`).
pub(crate) const FINISHED_REASON_LABEL: &str = "finished_reason";
/// Label key of a stage's replica (vLLM-Omni's `replica`).
pub(crate) const REPLICA_LABEL: &str = "replica";
/// Label key of an edge's sending replica (vLLM-Omni's `from_replica`).
pub(crate) const FROM_REPLICA_LABEL: &str = crate::convention::field::FROM_REPLICA;
/// Label key of an edge's receiving replica (vLLM-Omni's `to_replica`).
pub(crate) const TO_REPLICA_LABEL: &str = crate::convention::field::TO_REPLICA;
/// Label key of an audio continuity threshold, in ms (vLLM-Omni's `threshold_ms`).
pub(crate) const THRESHOLD_MS_LABEL: &str = "threshold_ms";
/// Label key of why an audio stage produced no audio (vLLM-Omni's `reason`).
pub(crate) const REASON_LABEL: &str = "reason";
/// Label key of the model (vLLM's and vLLM-Omni's `model_name`), on every family.
pub(crate) const MODEL_NAME_LABEL: &str = crate::stats::keys::MODEL_NAME;

/// The `model_name` of a request whose record names no model
/// ([`RequestE2EStats::model_name`] is `None`: no
/// [`Builder::with_model_name`](crate::Builder::with_model_name), no
/// `OMNI_METRICS_MODEL_NAME`). vLLM-Omni always has the label, and a
/// dashboard's `$model_name` variable (`label_values(..., model_name)`) lists only values
/// that are not empty: a fixed word keeps such a dashboard working before a name is set.
pub(crate) const DEFAULT_MODEL_NAME: &str = "unknown";

/// The most distinct model names the metrics exports label series with, in a process. A
/// process serves one model or a few; observations of requests naming further ones are
/// counted by each export (as those of stages beyond [`MAX_STAGE_LABELS`]) and not
/// exported.
pub(crate) const MAX_MODEL_NAMES: usize = 16;

/// The most distinct replica ids a metrics export labels series with (as
/// [`MAX_STAGE_LABELS`] for stage ids); observations of further replica ids are counted by
/// the export and not exported.
#[cfg_attr(not(any(feature = "otlp", feature = "prometheus")), allow(dead_code))]
pub(crate) const MAX_REPLICA_LABELS: usize = 64;

/// The most distinct stage ids a metrics export labels series with (as the distributions'
/// 64 quantities); observations of further stage
/// ids, and of edges touching one, are counted by the export and not exported, so an engine
/// that numbers stages wildly cannot grow a scrape without bound.
#[cfg_attr(not(any(feature = "otlp", feature = "prometheus")), allow(dead_code))]
pub(crate) const MAX_STAGE_LABELS: usize = 64;

/// The most distinct audio continuity thresholds (`threshold_ms`) a metrics export labels
/// series with: a layer judges streams at
/// [`MAX_AUDIO_CONTINUITY_THRESHOLDS`](crate::Builder::MAX_AUDIO_CONTINUITY_THRESHOLDS) at
/// most; observations of further ones (layers configured apart, records made by hand) are
/// counted by the export and not exported.
#[cfg_attr(not(any(feature = "otlp", feature = "prometheus")), allow(dead_code))]
pub(crate) const MAX_THRESHOLD_LABELS: usize = 8;

/// Which metric a [`MetricDef`] is: its index in [`METRICS`] (`METRICS[id as usize]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub(crate) enum MetricId {
    /// Finished requests by `finished_reason`.
    RequestsSuccess = 0,
    /// Request latency.
    E2eRequestLatency,
    /// Request start to the first output of its last stage.
    RequestTimeToFirstOutput,
    /// Request start to its first audio output.
    TimeToFirstAudio,
    /// Prompt tokens (stage 0's `num_tokens_in`).
    PromptTokens,
    /// Generated tokens (every stage's `num_tokens_out`).
    GenerationTokens,
    /// Request latency over its audio's duration.
    AudioE2eRtf,
    /// Stage compute time.
    StageGenTime,
    /// Stage queue time.
    StageQueueTime,
    /// Stage post-processing time.
    StagePostprocessTime,
    /// Stage start to its first output.
    StageTimeToFirstOutput,
    /// Gaps between a stage's consecutive outputs.
    StageInterOutputLatency,
    /// A stage's audio duration.
    AudioDuration,
    /// A stage's compute time over its audio's duration.
    AudioRtf,
    /// Audio frames produced.
    AudioFrames,
    /// An edge's whole transfer time (tx + rx + in flight).
    TransferTime,
    /// An edge's sender time.
    TransferTx,
    /// An edge's receiver time.
    TransferRx,
    /// An edge's in-flight time.
    TransferInFlight,
    /// An edge's bytes.
    TransferSize,
    /// A stage's decode time per output token after its first output.
    StageTimePerOutputToken,
    /// An audio stream's playback gaps, summed (one observation per measured stream).
    AudioUnderrun,
    /// Audio streams with no playback gap above a threshold (0 for the others).
    AudioContinuityOk,
    /// Audio stages that produced no audio, by reason.
    AudioSkippedRequests,
    /// Requests open now (a gauge).
    RequestsRunning,
    /// Requests waiting now: in a queue, or in no stage yet (a gauge).
    RequestsWaiting,
    /// Requests in a stage now (a gauge).
    StageInflightRequests,
    /// Transfers open now, per edge (a gauge).
    TransferInflight,
}

impl MetricId {
    /// Its definition.
    pub(crate) fn def(self) -> &'static MetricDef {
        &METRICS[self as usize]
    }
}

/// One metric, as both the Prometheus sink and OTLP metrics export it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricDef {
    /// Which metric; `METRICS[id as usize]` is this definition.
    pub(crate) id: MetricId,
    /// The Prometheus family name (a counter's exposition appends `_total`).
    pub prometheus: &'static str,
    /// The OpenTelemetry instrument name.
    pub otel: &'static str,
    /// The help text (Prometheus `# HELP`, OpenTelemetry description).
    pub help: &'static str,
    /// The unit, UCUM as OpenTelemetry writes it: `s`, `By`, `1`, `{token}`, `{frame}`,
    /// `{request}`.
    pub unit: &'static str,
    /// Counter, histogram or gauge.
    pub kind: MetricKind,
    /// The label set.
    pub labels: Labels,
    /// Histogram bucket upper bounds in [`MetricDef::unit`] (seconds, bytes, ratio),
    /// ascending, `+Inf` implied; empty for a counter or a gauge. The Prometheus endpoint's: vLLM-Omni's
    /// lists, so that its dashboards' `le` values exist.
    pub buckets: &'static [f64],
    /// The OTLP export's bucket bounds: the OpenTelemetry semantic conventions' recommended
    /// boundaries where the instrument is one of theirs (`gen_ai.server.*`), else the same
    /// as [`MetricDef::buckets`].
    pub otel_buckets: &'static [f64],
    /// Whether vLLM-Omni defines this Prometheus family (name and meaning); `false` for
    /// ours, named in its style.
    pub vllm_omni: bool,
}

/// Seconds, 50 ms to 300 s: request latency, stage compute, time to first audio (vLLM-Omni's
/// `SECONDS_BUCKETS`).
pub(crate) const SECONDS_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

/// Seconds, 1 ms to 60 s: transfers, queueing, post-processing, time to first token,
/// inter-output gaps (vLLM-Omni's `SECONDS_FAST_BUCKETS`).
pub(crate) const SECONDS_FAST_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// Real-time factors, 0.1 to 10, dense around the SLO line at 1 (vLLM-Omni's
/// `RTF_BUCKETS`).
pub(crate) const RTF_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.25, 1.5, 2.0, 5.0, 10.0];

/// Bytes, 1 KiB to 256 MiB in steps of 4 (vLLM-Omni's `BYTES_BUCKETS`).
pub(crate) const BYTES_BUCKETS: &[f64] = &[
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
    268_435_456.0,
];

/// `gen_ai.server.request.duration`'s recommended boundaries (OpenTelemetry GenAI semantic
/// conventions): 0.01 s doubling to 81.92 s. The OTLP export's; Prometheus keeps
/// [`SECONDS_BUCKETS`].
pub(crate) const GENAI_REQUEST_DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// `gen_ai.server.time_to_first_token`'s recommended boundaries, in seconds.
pub(crate) const GENAI_TIME_TO_FIRST_TOKEN_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// `gen_ai.server.time_per_output_token`'s recommended boundaries, in seconds.
pub(crate) const GENAI_TIME_PER_OUTPUT_TOKEN_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];

/// Every metric.
pub static METRICS: &[MetricDef] = &[
    MetricDef {
        id: MetricId::RequestsSuccess,
        prometheus: "vllm_omni:requests_success",
        otel: "omni.requests",
        help: "Finished requests by finished_reason (stop = ok, error, abort).",
        unit: "{request}",
        kind: MetricKind::Counter,
        labels: Labels::FinishedReason,
        buckets: &[],
        otel_buckets: &[],
        vllm_omni: true,
    },
    MetricDef {
        id: MetricId::E2eRequestLatency,
        prometheus: "vllm_omni:e2e_request_latency_s",
        otel: "gen_ai.server.request.duration",
        help: "End-to-end request latency in seconds (request span duration; ok requests).",
        unit: "s",
        kind: MetricKind::Histogram,
        labels: Labels::None,
        buckets: SECONDS_BUCKETS,
        otel_buckets: GENAI_REQUEST_DURATION_BUCKETS,
        vllm_omni: true,
    },
    MetricDef {
        id: MetricId::RequestTimeToFirstOutput,
        prometheus: "vllm_omni:time_to_first_output_s",
        otel: "gen_ai.server.time_to_first_token",
        help: "Request start to the first output of its last stage, in seconds.",
        unit: "s",
        kind: MetricKind::Histogram,
        labels: Labels::None,
        buckets: SECONDS_BUCKETS,
        otel_buckets: GENAI_TIME_TO_FIRST_TOKEN_BUCKETS,
        vllm_omni: false,
    },
    MetricDef {
        id: MetricId::TimeToFirstAudio,
        prometheus: "vllm_omni:audio_ttfp_s",
        otel: "omni.request.time_to_first_audio",
        help: "Request start to the first audio output (audio TTFP), in seconds, by audio stage.",
        unit: "s",
        kind: MetricKind::Histogram,
        labels: Labels::Stage,
        buckets: SECONDS_BUCKETS,
        otel_buckets: SECONDS_BUCKETS,
        vllm_omni: true,
    },
    MetricDef {
        id: MetricId::PromptTokens,
        prometheus: "vllm_omni:prompt_tokens",
        otel: "omni.request.prompt_tokens",
        help: "Prompt (input) tokens: stage 0's num_tokens_in.",
        unit: "{token}",
        kind: MetricKind::Counter,
        labels: Labels::None,
        buckets: &[],
        otel_buckets: &[],
        vllm_omni: true,
    },
    MetricDef {
        id: MetricId::GenerationTokens,
        prometheus: "vllm_omni:generation_tokens",
        otel: "omni.request.generation_tokens",
        help: "Generated (output) tokens, summed over every stage's num_tokens_out.",
        unit: "{token}",
        kind: MetricKind::Counter,
        labels: Labels::None,
        buckets: &[],
        otel_buckets: &[],
        vllm_omni: true,
    },
    MetricDef {
        id: MetricId::AudioE2eRtf,
        prometheus: "vllm_omni:audio_e2e_rtf",
        otel: "omni.audio.e2e_rtf",
        help: "Request latency over its audio's duration (benchmark RTF); below 1 is faster than real time.",
        unit: "1",
        kind: MetricKind::Histogram,
        labels: Labels::None,
        buckets: RTF_BUCKETS,
        otel_buckets: RTF_BUCKETS,
        vllm_omni: false,
    },
    MetricDef {
        id: MetricId::StageGenTime,
        prometheus: "vllm_omni:stage_gen_time_s",
        otel: "omni.stage.gen_time",
        help: "Stage compute time in seconds (stage span minus queue and post-processing).",
        unit: "s",
        kind: MetricKind::Histogram,
        labels: Labels::Stage,
        buckets: SECONDS_BUCKETS,
        otel_buckets: SECONDS_BUCKETS,
        vllm_omni: false,
    },
    MetricDef {
        id: MetricId::StageQueueTime,
        prometheus: "vllm_omni:stage_queue_time_s",
        otel: "omni.stage.queue_time",
        help: "Stage queue time in seconds, before compute.",
        unit: "s",
        kind: MetricKind::Histogram,
        labels: Labels::Stage,
        buckets: SECONDS_FAST_BUCKETS,
        otel_buckets: SECONDS_FAST_BUCKETS,
        vllm_omni: false,
    },
    MetricDef {
        id: MetricId::StagePostprocessTime,
        prometheus: "vllm_omni:stage_postprocess_time_s",
        otel: "omni.stage.postprocess_time",
        help: "Stage post-processing time in seconds.",
        unit: "s",
        kind: MetricKind::Histogram,
        labels: Labels::Stage,
        buckets: SECONDS_FAST_BUCKETS,
        otel_buckets: SECONDS_FAST_BUCKETS,
        vllm_omni: false,
    },
    MetricDef {
        id: MetricId::StageTimeToFirstOutput,
        prometheus: "vllm_omni:stage_time_to_first_output_s",
        otel: "omni.stage.time_to_first_output",
        help: "Stage start to its first output (TTFT of an LLM stage), in seconds.",
        unit: "s",
        kind: MetricKind::Histogram,
        labels: Labels::Stage,
        buckets: SECONDS_FAST_BUCKETS,
        otel_buckets: SECONDS_FAST_BUCKETS,
        vllm_omni: false,
    },
    MetricDef {
        id: MetricId::StageInterOutputLatency,
        prometheus: "vllm_omni:stage_inter_output_latency_s",
        otel: "omni.stage.inter_output_latency",
        help: "Gap between consecutive outputs of a stage (inter-token latency of an LLM stage), in seconds.",
        unit: "s",
        kind: MetricKind::Histogram,
        labels: Labels::Stage,
        buckets: SECONDS_FAST_BUCKETS,
        otel_buckets: SECONDS_FAST_BUCKETS,
        vllm_omni: false,
    },
    MetricDef {
        id: MetricId::AudioDuration,
        prometheus: "vllm_omni:audio_duration_s",
        otel: "omni.audio.duration",
        help: "Generated audio duration in seconds (audio_frames / sample_rate).",
        unit: "s",
        kind: MetricKind::Histogram,
        labels: Labels::Stage,
        buckets: SECONDS_BUCKETS,
        otel_buckets: SECONDS_BUCKETS,
        vllm_omni: true,
    },
    MetricDef {
        id: MetricId::AudioRtf,
        prometheus: "vllm_omni:audio_rtf",
        otel: "omni.audio.rtf",
        help: "Audio real-time factor (stage_gen_time / audio_duration); below 1 is faster than real time.",
        unit: "1",
        kind: MetricKind::Histogram,
        labels: Labels::Stage,
        buckets: RTF_BUCKETS,
        otel_buckets: RTF_BUCKETS,
        vllm_omni: true,
    },
    MetricDef {
        id: MetricId::AudioFrames,
        prometheus: "vllm_omni:audio_frames",
        otel: "omni.audio.frames",
        help: "Audio frames generated.",
        unit: "{frame}",
        kind: MetricKind::Counter,
        labels: Labels::Stage,
        buckets: &[],
        otel_buckets: &[],
        vllm_omni: true,
    },
    MetricDef {
        id: MetricId::TransferTime,
        prometheus: "vllm_omni:transfer_time_s",
        otel: "omni.transfer.time",
        help: "Cross-stage transfer time in seconds (tx + rx + in flight), per request and edge.",
        unit: "s",
        kind: MetricKind::Histogram,
        labels: Labels::Edge,
        buckets: SECONDS_FAST_BUCKETS,
        otel_buckets: SECONDS_FAST_BUCKETS,
        vllm_omni: false,
    },
    MetricDef {
        id: MetricId::TransferTx,
        prometheus: "vllm_omni:transfer_tx_s",
        otel: "omni.transfer.tx_time",
        help: "Sender-side transfer time in seconds (serialize + submit), per request and edge.",
        unit: "s",
        kind: MetricKind::Histogram,
        labels: Labels::Edge,
        buckets: SECONDS_FAST_BUCKETS,
        otel_buckets: SECONDS_FAST_BUCKETS,
        vllm_omni: true,
    },
    MetricDef {
        id: MetricId::TransferRx,
        prometheus: "vllm_omni:transfer_rx_s",
        otel: "omni.transfer.rx_time",
        help: "Receiver-side transfer time in seconds (receive + decode), per request and edge.",
        unit: "s",
        kind: MetricKind::Histogram,
        labels: Labels::Edge,
        buckets: SECONDS_FAST_BUCKETS,
        otel_buckets: SECONDS_FAST_BUCKETS,
        vllm_omni: true,
    },
    MetricDef {
        id: MetricId::TransferInFlight,
        prometheus: "vllm_omni:transfer_in_flight_s",
        otel: "omni.transfer.in_flight_time",
        help: "Transfer in-flight time in seconds (tx done to rx start), per request and edge.",
        unit: "s",
        kind: MetricKind::Histogram,
        labels: Labels::Edge,
        buckets: SECONDS_FAST_BUCKETS,
        otel_buckets: SECONDS_FAST_BUCKETS,
        vllm_omni: true,
    },
    MetricDef {
        id: MetricId::TransferSize,
        prometheus: "vllm_omni:transfer_size_bytes",
        otel: "omni.transfer.size",
        help: "Cross-stage transfer payload in bytes, per request and edge.",
        unit: "By",
        kind: MetricKind::Histogram,
        labels: Labels::Edge,
        buckets: BYTES_BUCKETS,
        otel_buckets: BYTES_BUCKETS,
        vllm_omni: true,
    },
    MetricDef {
        id: MetricId::StageTimePerOutputToken,
        prometheus: "vllm_omni:stage_time_per_output_token_s",
        otel: "gen_ai.server.time_per_output_token",
        help: "Time per output token after a stage's first output, in seconds \
               ((last output - first output) / (num_tokens_out - 1)), by stage.",
        unit: "s",
        kind: MetricKind::Histogram,
        labels: Labels::Stage,
        buckets: SECONDS_FAST_BUCKETS,
        otel_buckets: GENAI_TIME_PER_OUTPUT_TOKEN_BUCKETS,
        vllm_omni: false,
    },
    MetricDef {
        id: MetricId::AudioUnderrun,
        prometheus: "vllm_omni:audio_underrun_s",
        otel: "omni.audio.underrun",
        help: "Playback gaps of an audio stream as a listener hears it, summed, in seconds \
               (time the played audio had run out before the next packet came); one \
               observation per measured stream.",
        unit: "s",
        kind: MetricKind::Histogram,
        labels: Labels::Stage,
        buckets: SECONDS_FAST_BUCKETS,
        otel_buckets: SECONDS_FAST_BUCKETS,
        vllm_omni: true,
    },
    MetricDef {
        id: MetricId::AudioContinuityOk,
        prometheus: "vllm_omni:audio_continuity_ok",
        otel: "omni.audio.continuity_ok",
        help: "Audio streams with no playback gap longer than threshold_ms (a stream with one \
               adds 0; audio_underrun_s_count counts every measured stream).",
        unit: "{stream}",
        kind: MetricKind::Counter,
        labels: Labels::StageThreshold,
        buckets: &[],
        otel_buckets: &[],
        vllm_omni: true,
    },
    MetricDef {
        id: MetricId::AudioSkippedRequests,
        prometheus: "vllm_omni:audio_skipped_requests",
        otel: "omni.audio.skipped_requests",
        help: "Requests whose audio stage produced no audio, by reason (no_frames: the \
               request ended ok; error; aborted).",
        unit: "{request}",
        kind: MetricKind::Counter,
        labels: Labels::StageReason,
        buckets: &[],
        otel_buckets: &[],
        vllm_omni: true,
    },
    MetricDef {
        id: MetricId::RequestsRunning,
        prometheus: "vllm_omni:num_requests_running",
        otel: "omni.requests.running",
        help: "Requests open now (omni.request spans not yet closed).",
        unit: "{request}",
        kind: MetricKind::Gauge,
        labels: Labels::None,
        buckets: &[],
        otel_buckets: &[],
        vllm_omni: true,
    },
    MetricDef {
        id: MetricId::RequestsWaiting,
        prometheus: "vllm_omni:num_requests_waiting",
        otel: "omni.requests.waiting",
        help: "Open requests waiting now: inside an omni.queue span, or in no stage yet.",
        unit: "{request}",
        kind: MetricKind::Gauge,
        labels: Labels::None,
        buckets: &[],
        otel_buckets: &[],
        vllm_omni: true,
    },
    MetricDef {
        id: MetricId::StageInflightRequests,
        prometheus: "vllm_omni:stage_inflight_requests",
        otel: "omni.stage.requests_in_flight",
        help: "Requests in a stage now (an omni.stage span open), by stage.",
        unit: "{request}",
        kind: MetricKind::Gauge,
        labels: Labels::Stage,
        buckets: &[],
        otel_buckets: &[],
        vllm_omni: true,
    },
    MetricDef {
        id: MetricId::TransferInflight,
        prometheus: "vllm_omni:transfer_inflight",
        otel: "omni.transfer.open",
        help: "Transfers under way now (omni.transfer spans open), by edge.",
        unit: "{transfer}",
        kind: MetricKind::Gauge,
        labels: Labels::Edge,
        buckets: &[],
        otel_buckets: &[],
        vllm_omni: false,
    },
];

/// The most buckets a histogram of the catalogue has, `+Inf` included: an export that keeps
/// per-bucket state in a fixed array (the recorder queue's coalesced batches) sizes it so.
// Used by the metrics exports (and the tests): unused in a build without one.
#[cfg_attr(not(any(feature = "otlp", feature = "prometheus")), allow(dead_code))]
pub(crate) const MAX_BUCKETS: usize = {
    let lens = [
        SECONDS_BUCKETS.len(),
        SECONDS_FAST_BUCKETS.len(),
        RTF_BUCKETS.len(),
        BYTES_BUCKETS.len(),
    ];
    let mut max = 0;
    let mut i = 0;
    while i < lens.len() {
        if lens[i] > max {
            max = lens[i];
        }
        i += 1;
    }
    max + 1
};

#[cfg_attr(not(any(feature = "otlp", feature = "prometheus")), allow(dead_code))]
impl MetricDef {
    /// The bucket `value` falls in: the first whose upper bound is at or above it, or
    /// `buckets.len()` (`+Inf`, NaN too), as `prometheus-client` and OpenTelemetry count.
    #[inline]
    pub(crate) fn bucket(&self, value: f64) -> usize {
        self.buckets
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.buckets.len())
    }
}

/// The label values of one observation; the fields its [`MetricDef::labels`] names are set,
/// the others `None`. [`observe`] sets `model_name` on every observation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LabelValues {
    /// `model_name`, on every family: the record's
    /// [`model_name`](RequestE2EStats::model_name), else `unknown`. `None` from
    /// [`observe`] only for a request naming a model beyond the first 16 distinct names of
    /// the process: the exports count such observations and do not export them.
    pub model_name: Option<&'static str>,
    /// `stage`, for [`Labels::Stage`].
    pub stage: Option<u64>,
    /// `replica`, for [`Labels::Stage`], when the stage's record gives one.
    pub replica: Option<u64>,
    /// `from_stage`, for [`Labels::Edge`].
    pub from_stage: Option<u64>,
    /// `from_replica`, for [`Labels::Edge`], when the edge's record gives one.
    pub from_replica: Option<u64>,
    /// `to_stage`, for [`Labels::Edge`].
    pub to_stage: Option<u64>,
    /// `to_replica`, for [`Labels::Edge`], when the edge's record gives one.
    pub to_replica: Option<u64>,
    /// `finished_reason`, for [`Labels::FinishedReason`].
    pub finished_reason: Option<&'static str>,
    /// `threshold_ms`, for [`Labels::StageThreshold`].
    pub threshold_ms: Option<u64>,
    /// `reason`, for [`Labels::StageReason`].
    pub reason: Option<&'static str>,
}

impl LabelValues {
    /// No label.
    pub(crate) const NONE: LabelValues = LabelValues {
        model_name: None,
        stage: None,
        replica: None,
        from_stage: None,
        from_replica: None,
        to_stage: None,
        to_replica: None,
        finished_reason: None,
        threshold_ms: None,
        reason: None,
    };

    /// Only `model_name`.
    fn model(model_name: Option<&'static str>) -> Self {
        Self {
            model_name,
            ..Self::NONE
        }
    }

    /// A stage's labels: its id, and its replica when given.
    fn stage(s: &StageRequestStats, model: LabelValues) -> Self {
        Self::of_stage(s.stage_id, s.replica_id, model)
    }

    /// A stage's labels from its id and replica.
    fn of_stage(stage: u64, replica: Option<u64>, model: LabelValues) -> Self {
        Self {
            stage: Some(stage),
            replica,
            ..model
        }
    }

    /// An edge's labels from its stage ids (no replicas).
    #[cfg_attr(not(any(feature = "otlp", feature = "prometheus")), allow(dead_code))]
    fn of_edge(from: u64, to: u64, model: LabelValues) -> Self {
        Self {
            from_stage: Some(from),
            to_stage: Some(to),
            ..model
        }
    }

    /// An edge's labels: its stages, and their replicas when given.
    fn edge(e: &TransferEdgeStats, model: LabelValues) -> Self {
        Self {
            from_stage: Some(e.from_stage),
            from_replica: e.from_replica,
            to_stage: Some(e.to_stage),
            to_replica: e.to_replica,
            ..model
        }
    }

    /// A hash of `model_name`'s text (FNV-1a; 0 for none), for the exports' series maps:
    /// equal names hash equal, wherever their text lives.
    #[cfg_attr(not(any(feature = "otlp", feature = "prometheus")), allow(dead_code))]
    pub(crate) fn model_word(&self) -> u64 {
        self.model_name.map_or(0, |name| {
            name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            })
        })
    }

    /// The stage ids the labels name (`stage`, `from_stage`, `to_stage`).
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    pub(crate) fn stage_ids(&self) -> impl Iterator<Item = u64> + Clone + use<> {
        [self.stage, self.from_stage, self.to_stage]
            .into_iter()
            .flatten()
    }

    /// The replica ids the labels name (`replica`, `from_replica`, `to_replica`).
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    pub(crate) fn replica_ids(&self) -> impl Iterator<Item = u64> + Clone + use<> {
        [self.replica, self.from_replica, self.to_replica]
            .into_iter()
            .flatten()
    }
}

/// The `model_name` label of a record's `model_name`: `unknown` for none (or an
/// empty one), else the name, interned for the life of the process (labels are
/// `&'static str`, copied with each observation); `None` once [`MAX_MODEL_NAMES`] other
/// names are interned. A thread asks the shared table only when its name changes.
pub(crate) fn model_label(name: Option<&str>) -> Option<&'static str> {
    use std::cell::Cell;
    thread_local! {
        static LAST: Cell<Option<&'static str>> = const { Cell::new(None) };
    }
    let name = match name {
        None => return Some(DEFAULT_MODEL_NAME),
        Some(name) if name.is_empty() || name == DEFAULT_MODEL_NAME => {
            return Some(DEFAULT_MODEL_NAME);
        }
        Some(name) => name,
    };
    if let Ok(Some(last)) = LAST.try_with(Cell::get) {
        if last == name {
            return Some(last);
        }
    }
    let interned = intern_model_name(name)?;
    let _ = LAST.try_with(|last| last.set(Some(interned)));
    Some(interned)
}

/// Names interned for the life of the process, at most `cap` of them (each leaked once).
struct Interned {
    names: std::sync::RwLock<Vec<&'static str>>,
    cap: usize,
}

impl Interned {
    const fn new(cap: usize) -> Self {
        Self {
            names: std::sync::RwLock::new(Vec::new()),
            cap,
        }
    }

    /// `name`'s one copy; `None` once `cap` other names are kept.
    fn intern(&self, name: &str) -> Option<&'static str> {
        use std::sync::PoisonError;
        let find = |names: &[&'static str]| names.iter().copied().find(|known| *known == name);
        if let Some(known) = find(&self.names.read().unwrap_or_else(PoisonError::into_inner)) {
            return Some(known);
        }
        let mut names = self.names.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = find(&names) {
            return Some(known);
        }
        if names.len() >= self.cap {
            return None;
        }
        let leaked: &'static str = Box::leak(name.into());
        names.push(leaked);
        Some(leaked)
    }
}

/// The model names the exports label series with.
static MODEL_NAMES: Interned = Interned::new(MAX_MODEL_NAMES);

fn intern_model_name(name: &str) -> Option<&'static str> {
    MODEL_NAMES.intern(name)
}

/// vLLM's `finished_reason` for a request's status: `ok` is `stop`, `aborted` is `abort`
/// (vLLM's value for a cancelled request), `error` is `error` (vLLM-Omni counts failures
/// under `abort`; we keep them apart, as the model does).
pub(crate) fn finished_reason(status: RequestStatus) -> &'static str {
    match status {
        RequestStatus::Ok => "stop",
        RequestStatus::Error => "error",
        RequestStatus::Aborted => "abort",
    }
}

/// Milliseconds (the model's unit) to seconds (the exports'): the one conversion.
#[inline]
fn seconds(ms: f64) -> f64 {
    finite(ms / 1000.0)
}

/// Every observation one finished request makes, in the exports' units (seconds, bytes,
/// counts): its `vllm_omni:requests_success` and skipped audio stages, then its own in
/// [`METRICS`] order, then per stage (ascending id), then per edge.
///
/// Every request counts once in `vllm_omni:requests_success`, and once per audio stage
/// that produced no audio in `vllm_omni:audio_skipped_requests` (whatever its status, as
/// the summary's `audio_skipped_requests`); only an `ok` request makes the others. A
/// histogram observation is one sample; a counter observation is an increment (possibly 0:
/// a stream not continuous at a threshold adds 0 to `vllm_omni:audio_continuity_ok`, so
/// that its series exists). Values are finite and never negative. Gauges
/// ([`MetricKind::Gauge`]) are never observed here: the exports read them from the open spans when they collect.
pub fn observe(r: &RequestE2EStats, mut f: impl FnMut(&'static MetricDef, LabelValues, f64)) {
    let model = LabelValues::model(model_label(r.model_name.as_deref()));
    let mut emit = |id: MetricId, labels: LabelValues, value: f64| f(id.def(), labels, value);
    emit(
        MetricId::RequestsSuccess,
        LabelValues {
            finished_reason: Some(finished_reason(r.status)),
            ..model
        },
        1.0,
    );
    for s in &r.stages {
        if let Some(reason) = s.audio_skipped {
            let labels = LabelValues {
                reason: Some(reason),
                ..LabelValues::stage(s, model)
            };
            emit(MetricId::AudioSkippedRequests, labels, 1.0);
        }
    }
    if !stats::counts_in_summary(r.status) {
        return;
    }
    observe_totals(r, model, &mut emit);
    for s in &r.stages {
        observe_stage(s, model, &mut emit);
    }
    for e in &r.transfers {
        observe_edge(e, model, &mut emit);
    }
}

/// The live gauges' values of one layer now ([`MetricsHandle::live`](crate::MetricsHandle::live)),
/// labelled with the model the layer serves (`model_name`: its
/// [`Builder::with_model_name`](crate::Builder::with_model_name), else
/// `unknown`): `vllm_omni:num_requests_running` and
/// `vllm_omni:num_requests_waiting` always, `vllm_omni:stage_inflight_requests` per stage (and
/// replica, when the stage's spans give one) with a span open, `vllm_omni:transfer_inflight`
/// per edge with a transfer open. The exports read this when they are collected (a scrape,
/// an OTLP export), never per request; nothing for a model beyond the first 16 names of the
/// process.
#[cfg_attr(not(any(feature = "otlp", feature = "prometheus")), allow(dead_code))]
pub(crate) fn observe_live(
    live: &LiveGauges,
    model_name: Option<&str>,
    mut f: impl FnMut(&'static MetricDef, LabelValues, f64),
) {
    let Some(model) = model_label(model_name) else {
        return;
    };
    let model = LabelValues::model(Some(model));
    let mut emit = |id: MetricId, labels: LabelValues, value: u64| {
        f(id.def(), labels, value as f64);
    };
    emit(MetricId::RequestsRunning, model, live.requests_running);
    emit(MetricId::RequestsWaiting, model, live.requests_waiting);
    for s in &live.stages_in_flight {
        let labels = LabelValues::of_stage(s.stage_id, s.replica_id, model);
        emit(MetricId::StageInflightRequests, labels, s.requests);
    }
    for (edge, open) in &live.transfers_open {
        let labels = LabelValues::of_edge(edge.from, edge.to, model);
        emit(MetricId::TransferInflight, labels, *open);
    }
}

/// An `ok` request's own observations: latency, times to first output and audio, tokens,
/// its audio's real-time factor.
fn observe_totals(
    r: &RequestE2EStats,
    model: LabelValues,
    emit: &mut impl FnMut(MetricId, LabelValues, f64),
) {
    emit(MetricId::E2eRequestLatency, model, seconds(r.e2e_total_ms));
    if let Some(ms) = r.time_to_first_output_ms {
        emit(MetricId::RequestTimeToFirstOutput, model, seconds(ms));
    }
    if let Some(ms) = r.time_to_first_audio_ms {
        // Labelled with the stage (and replica) it is measured on.
        if let Some(stage) = stats::audio_stage(&r.stages) {
            emit(
                MetricId::TimeToFirstAudio,
                LabelValues::stage(stage, model),
                seconds(ms),
            );
        }
    }
    let prompt = stats::prompt_tokens(&r.stages);
    let generated = stats::generated_tokens(&r.stages);
    emit(MetricId::PromptTokens, model, prompt as f64);
    emit(MetricId::GenerationTokens, model, generated as f64);
    if let Some(rtf) = r.audio_e2e_rtf {
        emit(MetricId::AudioE2eRtf, model, finite(rtf));
    }
}

/// One stage's observations, labelled with its id (and replica, when given).
fn observe_stage(
    s: &StageRequestStats,
    model: LabelValues,
    emit: &mut impl FnMut(MetricId, LabelValues, f64),
) {
    let labels = LabelValues::stage(s, model);
    emit(MetricId::StageGenTime, labels, seconds(s.stage_gen_time_ms));
    emit(MetricId::StageQueueTime, labels, seconds(s.queue_time_ms));
    emit(
        MetricId::StagePostprocessTime,
        labels,
        seconds(s.postprocess_time_ms),
    );
    if let Some(ms) = s.time_to_first_output_ms {
        emit(MetricId::StageTimeToFirstOutput, labels, seconds(ms));
    }
    for &gap in &s.inter_output_gaps_ms {
        emit(MetricId::StageInterOutputLatency, labels, seconds(gap));
    }
    if let Some(ms) = stats::time_per_output_token_ms(s) {
        emit(MetricId::StageTimePerOutputToken, labels, seconds(ms));
    }
    if let Some(ms) = s.audio_duration_ms {
        emit(MetricId::AudioDuration, labels, seconds(ms));
    }
    if let Some(rtf) = s.audio_rtf {
        emit(MetricId::AudioRtf, labels, finite(rtf));
    }
    if s.audio_generated_frames > 0 {
        emit(
            MetricId::AudioFrames,
            labels,
            s.audio_generated_frames as f64,
        );
    }
    if let Some(ms) = s.audio_underrun_ms {
        emit(MetricId::AudioUnderrun, labels, seconds(ms));
    }
    for c in &s.audio_continuity {
        let at = LabelValues {
            threshold_ms: Some(c.threshold_ms),
            ..labels
        };
        emit(
            MetricId::AudioContinuityOk,
            at,
            if c.ok { 1.0 } else { 0.0 },
        );
    }
}

/// One edge's observations, labelled with its stages (and replicas, when given).
fn observe_edge(
    e: &TransferEdgeStats,
    model: LabelValues,
    emit: &mut impl FnMut(MetricId, LabelValues, f64),
) {
    let labels = LabelValues::edge(e, model);
    emit(MetricId::TransferTime, labels, seconds(e.total_time_ms()));
    emit(MetricId::TransferTx, labels, seconds(e.tx_time_ms));
    emit(MetricId::TransferRx, labels, seconds(e.rx_decode_time_ms));
    emit(
        MetricId::TransferInFlight,
        labels,
        seconds(e.in_flight_time_ms),
    );
    emit(MetricId::TransferSize, labels, e.size_bytes as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_open_span_observes_the_two_request_gauges_at_zero() {
        let mut seen = Vec::new();
        observe_live(
            &LiveGauges::default(),
            Some("qwen3-omni"),
            |def, labels, value| seen.push((def.id, labels.model_name, value)),
        );
        assert_eq!(
            seen,
            [
                (MetricId::RequestsRunning, Some("qwen3-omni"), 0.0),
                (MetricId::RequestsWaiting, Some("qwen3-omni"), 0.0),
            ]
        );
    }

    #[test]
    fn finished_reasons_are_vllms() {
        assert_eq!(finished_reason(RequestStatus::Ok), "stop");
        assert_eq!(finished_reason(RequestStatus::Error), "error");
        assert_eq!(finished_reason(RequestStatus::Aborted), "abort");
    }
    use crate::stats::{EdgeName, StageRequestStats, TransferEdgeStats};

    fn request(status: RequestStatus) -> RequestE2EStats {
        RequestE2EStats {
            request_id: "r-1".into(),
            status,
            e2e_total_ms: 41_299.133,
            time_to_first_output_ms: Some(950.0),
            time_to_first_audio_ms: Some(1_200.5),
            audio_duration_ms: Some(21_896.875),
            audio_e2e_rtf: Some(1.886),
            stages: vec![
                StageRequestStats {
                    stage_id: 0,
                    num_tokens_in: 4860,
                    num_tokens_out: 67,
                    stage_gen_time_ms: 9_910.007,
                    postprocess_time_ms: 256.158,
                    queue_time_ms: 12.5,
                    time_to_first_output_ms: Some(42.5),
                    inter_output_gaps_ms: vec![20.0, 30.0],
                    ..Default::default()
                },
                StageRequestStats {
                    stage_id: 2,
                    num_tokens_in: 4384,
                    num_tokens_out: 275,
                    stage_gen_time_ms: 5_000.0,
                    audio_generated_frames: 525_525,
                    audio_sample_rate: Some(24_000),
                    audio_duration_ms: Some(21_896.875),
                    audio_rtf: Some(0.228),
                    ..Default::default()
                },
            ],
            transfers: vec![TransferEdgeStats {
                edge: EdgeName { from: 0, to: 2 },
                from_stage: 0,
                to_stage: 2,
                size_bytes: 111_900_005,
                tx_time_ms: 78.701,
                rx_decode_time_ms: 111.865,
                in_flight_time_ms: 2.015,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn collect(r: &RequestE2EStats) -> Vec<(MetricId, LabelValues, f64)> {
        let mut out = Vec::new();
        observe(r, |def, labels, v| out.push((def.id, labels, v)));
        out
    }

    fn values(obs: &[(MetricId, LabelValues, f64)], id: MetricId) -> Vec<(LabelValues, f64)> {
        obs.iter()
            .filter(|(i, ..)| *i == id)
            .map(|(_, l, v)| (*l, *v))
            .collect()
    }

    #[test]
    fn ids_index_the_catalogue() {
        for (i, def) in METRICS.iter().enumerate() {
            assert_eq!(def.id as usize, i, "{} is out of place", def.prometheus);
            assert!(
                def.prometheus.starts_with("vllm_omni:"),
                "{}",
                def.prometheus
            );
            assert!(!def.prometheus.ends_with("_total"), "{}", def.prometheus);
            match def.kind {
                MetricKind::Counter | MetricKind::Gauge => assert!(def.buckets.is_empty()),
                MetricKind::Histogram => {
                    assert!(!def.buckets.is_empty());
                    assert!(def.buckets.windows(2).all(|w| w[0] < w[1]));
                }
            }
            assert!(def.buckets.len() < MAX_BUCKETS, "{}", def.prometheus);
            // OTLP's buckets are Prometheus' except where the semantic conventions
            // recommend their own (`gen_ai.server.*`).
            assert_eq!(def.otel_buckets.is_empty(), def.buckets.is_empty());
            assert!(def.otel_buckets.windows(2).all(|w| w[0] < w[1]));
            if !def.otel.starts_with("gen_ai.server.") {
                assert_eq!(def.otel_buckets, def.buckets, "{}", def.otel);
            }
            let seconds_name = def.prometheus.ends_with("_s");
            assert_eq!(seconds_name, def.unit == "s", "{}", def.prometheus);
        }
        let mut names: Vec<_> = METRICS.iter().map(|d| d.prometheus).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METRICS.len());
        let mut otel: Vec<_> = METRICS.iter().map(|d| d.otel).collect();
        otel.sort_unstable();
        otel.dedup();
        assert_eq!(otel.len(), METRICS.len());
    }

    #[test]
    fn an_ok_request_in_seconds_bytes_and_counts() {
        let obs = collect(&request(RequestStatus::Ok));
        // Without a model name, every series is the default's.
        let none = LabelValues::model(Some(DEFAULT_MODEL_NAME));
        let stage = |id| LabelValues {
            stage: Some(id),
            ..none
        };
        let edge = LabelValues {
            from_stage: Some(0),
            to_stage: Some(2),
            ..none
        };
        // Milliseconds to seconds, as an export must see them (one division, no rounding).
        let s = |ms: f64| ms / 1000.0;
        assert_eq!(
            values(&obs, MetricId::RequestsSuccess),
            [(
                LabelValues {
                    finished_reason: Some("stop"),
                    ..none
                },
                1.0
            )]
        );
        assert_eq!(
            values(&obs, MetricId::E2eRequestLatency),
            [(none, s(41_299.133))]
        );
        assert_eq!(
            values(&obs, MetricId::RequestTimeToFirstOutput),
            [(none, s(950.0))]
        );
        assert_eq!(
            values(&obs, MetricId::TimeToFirstAudio),
            [(stage(2), s(1_200.5))]
        );
        assert_eq!(values(&obs, MetricId::PromptTokens), [(none, 4860.0)]);
        assert_eq!(values(&obs, MetricId::GenerationTokens), [(none, 342.0)]);
        assert_eq!(values(&obs, MetricId::AudioE2eRtf), [(none, 1.886)]);
        assert_eq!(
            values(&obs, MetricId::StageGenTime),
            [(stage(0), s(9_910.007)), (stage(2), 5.0)]
        );
        assert_eq!(
            values(&obs, MetricId::StageQueueTime),
            [(stage(0), s(12.5)), (stage(2), 0.0)]
        );
        assert_eq!(
            values(&obs, MetricId::StagePostprocessTime),
            [(stage(0), s(256.158)), (stage(2), 0.0)]
        );
        assert_eq!(
            values(&obs, MetricId::StageTimeToFirstOutput),
            [(stage(0), s(42.5))]
        );
        assert_eq!(
            values(&obs, MetricId::StageInterOutputLatency),
            [(stage(0), s(20.0)), (stage(0), s(30.0))]
        );
        assert_eq!(
            values(&obs, MetricId::AudioDuration),
            [(stage(2), s(21_896.875))]
        );
        assert_eq!(values(&obs, MetricId::AudioRtf), [(stage(2), 0.228)]);
        assert_eq!(values(&obs, MetricId::AudioFrames), [(stage(2), 525_525.0)]);
        let total = s(78.701 + 111.865 + 2.015);
        assert_eq!(values(&obs, MetricId::TransferTime), [(edge, total)]);
        assert_eq!(values(&obs, MetricId::TransferTx), [(edge, s(78.701))]);
        assert_eq!(values(&obs, MetricId::TransferRx), [(edge, s(111.865))]);
        assert_eq!(values(&obs, MetricId::TransferInFlight), [(edge, s(2.015))]);
        assert_eq!(
            values(&obs, MetricId::TransferSize),
            [(edge, 111_900_005.0)]
        );
        // Every observation carries exactly the labels its family declares.
        for (id, labels, value) in &obs {
            let keys = id.def().labels;
            let staged = matches!(
                keys,
                Labels::Stage | Labels::StageThreshold | Labels::StageReason
            );
            assert_eq!(labels.stage.is_some(), staged, "{id:?}");
            assert_eq!(
                labels.threshold_ms.is_some(),
                keys == Labels::StageThreshold,
                "{id:?}"
            );
            assert_eq!(
                labels.reason.is_some(),
                keys == Labels::StageReason,
                "{id:?}"
            );
            assert_eq!(labels.from_stage.is_some(), keys == Labels::Edge, "{id:?}");
            assert_eq!(labels.to_stage.is_some(), keys == Labels::Edge, "{id:?}");
            assert_eq!(labels.model_name, Some(DEFAULT_MODEL_NAME), "{id:?}");
            assert_eq!(labels.replica_ids().count(), 0, "no replica given: {id:?}");
            assert_eq!(
                labels.finished_reason.is_some(),
                keys == Labels::FinishedReason,
                "{id:?}"
            );
            assert!(value.is_finite() && *value >= 0.0, "{id:?} = {value}");
        }
    }

    #[test]
    fn replicas_and_the_model_name_label_what_they_give() {
        let mut r = request(RequestStatus::Ok);
        r.model_name = Some("qwen3-omni".into());
        r.stages[1].replica_id = Some(3);
        r.transfers[0].to_replica = Some(3);
        let obs = collect(&r);
        assert!(
            obs.iter()
                .all(|(_, l, _)| l.model_name == Some("qwen3-omni"))
        );
        let gen_time = values(&obs, MetricId::StageGenTime);
        assert_eq!(
            gen_time
                .iter()
                .map(|(l, _)| (l.stage, l.replica))
                .collect::<Vec<_>>(),
            [(Some(0), None), (Some(2), Some(3))],
            "a stage without a replica has no replica label"
        );
        let ttfa = values(&obs, MetricId::TimeToFirstAudio);
        assert_eq!((ttfa[0].0.stage, ttfa[0].0.replica), (Some(2), Some(3)));
        let size = values(&obs, MetricId::TransferSize)[0].0;
        assert_eq!(
            (size.from_replica, size.to_replica),
            (None, Some(3)),
            "each end as given"
        );
        assert_eq!(size.replica_ids().collect::<Vec<_>>(), [3]);
        assert_eq!(size.stage_ids().collect::<Vec<_>>(), [0, 2]);
        // An empty name is no name.
        r.model_name = Some("".into());
        assert!(
            collect(&r)
                .iter()
                .all(|(_, l, _)| l.model_name == Some(DEFAULT_MODEL_NAME))
        );
    }

    #[test]
    fn model_names_are_interned_and_bounded() {
        let a = model_label(Some("model-a")).expect("room");
        let b = model_label(Some(&String::from("model-a"))).expect("known");
        assert!(std::ptr::eq(a, b), "one copy per name");
        assert_eq!(model_label(None), Some(DEFAULT_MODEL_NAME));
        assert_eq!(
            model_label(Some(DEFAULT_MODEL_NAME)),
            Some(DEFAULT_MODEL_NAME)
        );
        // A table of its own (the process's is shared by the other tests).
        let table = Interned::new(2);
        assert_eq!(table.intern("x"), Some("x"));
        assert_eq!(table.intern("y"), Some("y"));
        assert_eq!(table.intern("z"), None, "beyond the cap");
        assert_eq!(table.intern("x"), Some("x"), "a known name still is");
    }

    /// SPEC's example: 200 ms packets arriving at 0, 150 and 500 ms play with one gap of
    /// 100 ms; judged at 50 and 100 ms (the record's fields, as the layer sets them).
    #[test]
    fn audio_continuity_and_skipped_stages() {
        use crate::stats::AudioContinuity;
        let mut r = request(RequestStatus::Ok);
        r.stages[1].replica_id = Some(1);
        r.stages[1].audio_underrun_ms = Some(100.0);
        r.stages[1].audio_max_gap_ms = Some(100.0);
        r.stages[1].audio_continuity = vec![
            AudioContinuity {
                threshold_ms: 50,
                ok: false,
            },
            AudioContinuity {
                threshold_ms: 100,
                ok: true,
            },
        ];
        r.stages[0].audio_skipped = Some("no_frames");
        let obs = collect(&r);
        let none = LabelValues::model(Some(DEFAULT_MODEL_NAME));
        let talker = LabelValues {
            stage: Some(2),
            replica: Some(1),
            ..none
        };
        assert_eq!(values(&obs, MetricId::AudioUnderrun), [(talker, 0.1)]);
        let at = |threshold_ms| LabelValues {
            threshold_ms: Some(threshold_ms),
            ..talker
        };
        assert_eq!(
            values(&obs, MetricId::AudioContinuityOk),
            [(at(50), 0.0), (at(100), 1.0)],
            "a stream not ok adds 0: its series exists"
        );
        let skipped = |reason| LabelValues {
            stage: Some(0),
            reason: Some(reason),
            ..none
        };
        assert_eq!(
            values(&obs, MetricId::AudioSkippedRequests),
            [(skipped("no_frames"), 1.0)]
        );
        // A failed request: its skipped stage counts (as in the summary), nothing else.
        for (status, reason) in [
            (RequestStatus::Error, "error"),
            (RequestStatus::Aborted, "aborted"),
        ] {
            r.status = status;
            r.stages[0].audio_skipped = Some(reason);
            let obs = collect(&r);
            assert_eq!(obs.len(), 2, "{obs:?}");
            assert_eq!(
                values(&obs, MetricId::AudioSkippedRequests),
                [(skipped(reason), 1.0)]
            );
        }
    }

    #[test]
    fn live_gauges_by_model_stage_and_edge() {
        use crate::handle::StageInFlight;
        let live = LiveGauges {
            requests_running: 3,
            requests_waiting: 1,
            stages_in_flight: vec![
                StageInFlight {
                    stage_id: 0,
                    replica_id: None,
                    requests: 1,
                },
                StageInFlight {
                    stage_id: 1,
                    replica_id: Some(2),
                    requests: 1,
                },
            ],
            transfers_open: vec![(EdgeName { from: 0, to: 1 }, 1)],
        };
        let mut obs = Vec::new();
        observe_live(&live, None, |def, labels, value| {
            assert_eq!(def.kind, MetricKind::Gauge);
            obs.push((def.id, labels, value));
        });
        let none = LabelValues::model(Some(DEFAULT_MODEL_NAME));
        assert_eq!(
            obs,
            [
                (MetricId::RequestsRunning, none, 3.0),
                (MetricId::RequestsWaiting, none, 1.0),
                (
                    MetricId::StageInflightRequests,
                    LabelValues {
                        stage: Some(0),
                        ..none
                    },
                    1.0
                ),
                (
                    MetricId::StageInflightRequests,
                    LabelValues {
                        stage: Some(1),
                        replica: Some(2),
                        ..none
                    },
                    1.0
                ),
                (
                    MetricId::TransferInflight,
                    LabelValues {
                        from_stage: Some(0),
                        to_stage: Some(1),
                        ..none
                    },
                    1.0
                ),
            ]
        );
        // Gauges are never observed from a record.
        collect(&request(RequestStatus::Ok))
            .iter()
            .for_each(|(id, ..)| assert_ne!(id.def().kind, MetricKind::Gauge, "{id:?}"));
    }

    #[test]
    fn failed_requests_only_count() {
        for (status, reason) in [
            (RequestStatus::Error, "error"),
            (RequestStatus::Aborted, "abort"),
        ] {
            let obs = collect(&request(status));
            assert_eq!(obs.len(), 1);
            assert_eq!(obs[0].0, MetricId::RequestsSuccess);
            assert_eq!(obs[0].1.finished_reason, Some(reason));
        }
    }

    #[test]
    fn absent_optional_values_make_no_observation() {
        let r = RequestE2EStats {
            stages: vec![StageRequestStats {
                stage_id: 1,
                num_tokens_in: 7,
                ..Default::default()
            }],
            ..Default::default()
        };
        let obs = collect(&r);
        for id in [
            MetricId::RequestTimeToFirstOutput,
            MetricId::TimeToFirstAudio,
            MetricId::AudioE2eRtf,
            MetricId::StageTimeToFirstOutput,
            MetricId::StageInterOutputLatency,
            MetricId::AudioDuration,
            MetricId::AudioRtf,
            MetricId::AudioFrames,
            MetricId::TransferTime,
        ] {
            assert!(values(&obs, id).is_empty(), "{id:?}");
        }
        // No stage 0: no prompt tokens.
        assert_eq!(
            values(&obs, MetricId::PromptTokens),
            [(LabelValues::model(Some(DEFAULT_MODEL_NAME)), 0.0)]
        );
    }

    #[test]
    fn a_value_falls_in_the_first_bucket_at_or_above_it() {
        let def = MetricId::E2eRequestLatency.def();
        assert_eq!(def.bucket(0.0), 0);
        assert_eq!(def.bucket(0.05), 0, "upper bounds are inclusive");
        assert_eq!(def.bucket(0.050_000_1), 1);
        assert_eq!(def.bucket(300.0), def.buckets.len() - 1);
        assert_eq!(def.bucket(300.1), def.buckets.len(), "+Inf");
        assert_eq!(def.bucket(f64::NAN), def.buckets.len());
    }

    #[test]
    fn saturated_values_stay_finite() {
        let r = RequestE2EStats {
            e2e_total_ms: f64::MAX,
            ..Default::default()
        };
        let obs = collect(&r);
        let latency = values(&obs, MetricId::E2eRequestLatency)[0].1;
        assert!(latency.is_finite());
    }
}
