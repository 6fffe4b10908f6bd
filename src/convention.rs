//! The span convention: the span and field names an engine writes.
//!
//! These names are a public interface (engines and dashboards depend on them): they are added
//! to, never renamed. See the crate docs for the tree they form.
//!
//! ```
//! // Raw spans work as well as the typed API in `omni_metrics::instrument`; give them the
//! // convention's target, so that a filter such as `RUST_LOG=warn,omni=info` lets them through.
//! let request = tracing::info_span!(target: "omni", "omni.request",
//!     request_id = "r-1", status = tracing::field::Empty);
//! # drop(request);
//! ```
#![doc = include_str!("../docs/reference/convention.md")]

/// The `tracing` target of the spans opened by [`crate::instrument`], and the one raw
/// `omni.*` spans should have (`info_span!(target: "omni", ...)`,
/// `#[instrument(target = "omni", ...)]`): filters name it (`RUST_LOG=warn,omni=info`).
pub(crate) const TARGET: &str = "omni";

/// An offline batch: every `omni.request` below it is summarized together.
pub(crate) const RUN: &str = "omni.run";
/// One request through the pipeline; the root of one trace.
pub(crate) const REQUEST: &str = "omni.request";
/// One stage's work on a request (or one chunk of it, for streamed stages).
pub(crate) const STAGE: &str = "omni.stage";
/// Time a stage waited before computing; excluded from `stage_gen_time_ms`.
pub(crate) const QUEUE: &str = "omni.queue";
/// A stage's post-processing; excluded from `stage_gen_time_ms`.
pub(crate) const POSTPROCESS: &str = "omni.postprocess";
/// One hand-over of data from one stage to the next (or one chunk of it).
pub(crate) const TRANSFER: &str = "omni.transfer";
/// The sender side of a transfer: serialize and hand over.
pub(crate) const TRANSFER_TX: &str = "omni.transfer.tx";
/// The receiver side of a transfer: take and decode.
pub(crate) const TRANSFER_RX_DECODE: &str = "omni.transfer.rx_decode";

/// One forward pass of a stage over several requests: fields `stage_id`, `batch_id`,
/// `batch_size`. Linked to each request's `omni.stage` span with `follows_from` in both
/// directions (a span link in the trace); a stage linked to a batch takes its `batch_id` and
/// `batch_size` when it does not give its own. Not part of any request: open it as a root.
pub(crate) const BATCH: &str = "omni.batch";

/// An event inside an `omni.stage` span marking one output chunk (tokens, audio frames or
/// images), with an optional `units` field: it gives the stage's `time_to_first_output_ms`,
/// `inter_output_ms` and `output_chunks`. Set it as the event's name:
/// `tracing::info!(name: "omni.output", units = 4)`.
pub(crate) const OUTPUT: &str = "omni.output";

/// The names exported spans get (OTLP), where they are not the span's own. Each is the same
/// for every request: a backend keys its operation list and span metrics on the name, so an
/// id in it would make one entry per request; ids are attributes (`request_id`, `run_id`).
pub(crate) mod exported {
    /// An `omni.request` span (the root of its trace).
    pub(crate) const REQUEST: &str = "request";
    /// An `omni.run` span (exported apart; its requests link to it).
    pub(crate) const RUN: &str = "run";
}

/// Field names, as `tracing` fields on the spans above.
pub(crate) mod field {
    /// `omni.run`: a name for the run's scope (default `run-<n>`).
    pub(crate) const RUN_ID: &str = "run_id";
    /// `omni.request`: the request's id (required).
    pub(crate) const REQUEST_ID: &str = "request_id";
    /// `omni.request`: `ok` (default), `error` or `aborted`.
    pub(crate) const STATUS: &str = "status";
    /// `omni.request`: why it failed, with `status = error` (the exported span's status
    /// message).
    pub(crate) const STATUS_MESSAGE: &str = "status_message";

    /// `omni.stage`: the stage's index in the pipeline (required).
    pub(crate) const STAGE_ID: &str = "stage_id";
    /// `omni.stage`: a readable name ("thinker").
    pub(crate) const STAGE_NAME: &str = "stage_name";
    /// `omni.stage`: the engine's batch index.
    pub(crate) const BATCH_ID: &str = "batch_id";
    /// `omni.stage`: the number of requests in the batch.
    pub(crate) const BATCH_SIZE: &str = "batch_size";
    /// `omni.stage`: input tokens.
    pub(crate) const NUM_TOKENS_IN: &str = "num_tokens_in";
    /// `omni.stage`: output tokens.
    pub(crate) const NUM_TOKENS_OUT: &str = "num_tokens_out";
    /// `omni.stage`: audio frames (samples) produced.
    pub(crate) const AUDIO_GENERATED_FRAMES: &str = "audio_generated_frames";
    /// `omni.stage`: the sample rate of `audio_generated_frames`, in Hz.
    pub(crate) const AUDIO_SAMPLE_RATE: &str = "audio_sample_rate";
    /// `omni.stage`: images generated.
    pub(crate) const IMAGE_NUM: &str = "image_num";
    /// `omni.stage`: image resolution, e.g. `1024x1024`.
    pub(crate) const RESOLUTION: &str = "resolution";

    /// `omni.stage`: which replica of the stage did the work (a data-parallel worker),
    /// when the stage runs as several. Absent means one replica.
    pub(crate) const REPLICA_ID: &str = "replica_id";
    /// `omni.stage`: denoising steps of a diffusion stage: gives
    /// `denoise_step_latency_ms` (`stage_gen_time_ms / num_inference_steps`).
    pub(crate) const NUM_INFERENCE_STEPS: &str = "num_inference_steps";
    /// `omni.stage`: video frames generated.
    pub(crate) const VIDEO_FRAMES: &str = "video_frames";
    /// `omni.stage`: the frame rate of `video_frames`, in frames per second.
    pub(crate) const VIDEO_FPS: &str = "video_fps";

    /// `omni.transfer`: the sending stage's id (required).
    pub(crate) const FROM_STAGE: &str = "from_stage";
    /// `omni.transfer`: the receiving stage's id (required).
    pub(crate) const TO_STAGE: &str = "to_stage";
    /// `omni.transfer`: the sending stage's replica, when it runs as several.
    pub(crate) const FROM_REPLICA: &str = "from_replica";
    /// `omni.transfer`: the receiving stage's replica, when it runs as several.
    pub(crate) const TO_REPLICA: &str = "to_replica";
    /// `omni.transfer`: bytes moved.
    pub(crate) const SIZE_BYTES: &str = "size_bytes";

    /// Explicit override on `omni.stage`: wins over the measured compute time.
    pub(crate) const STAGE_GEN_TIME_MS: &str = "stage_gen_time_ms";
    /// Explicit override on `omni.stage`: wins over the `omni.postprocess` children.
    pub(crate) const POSTPROCESS_TIME_MS: &str = "postprocess_time_ms";
    /// Explicit override on `omni.transfer`: wins over the `omni.transfer.tx` children.
    pub(crate) const TX_TIME_MS: &str = "tx_time_ms";
    /// Explicit override on `omni.transfer`: wins over the `omni.transfer.rx_decode` children.
    pub(crate) const RX_DECODE_TIME_MS: &str = "rx_decode_time_ms";
    /// Explicit override on `omni.transfer`: wins over the measured gap.
    pub(crate) const IN_FLIGHT_TIME_MS: &str = "in_flight_time_ms";
    /// `omni.stage` / `omni.transfer`: the id of the request this work is done for, when
    /// that request is owned by another process ([`crate::propagation`]). Such a span is
    /// remote work: counted apart, never in the tables (the owning process reports it).
    pub(crate) const REMOTE_REQUEST: &str = "remote_request";
    /// `omni.output` events: how many tokens, audio frames or images the chunk holds.
    pub(crate) const UNITS: &str = "units";
    /// Explicit override on `omni.stage`: wins over its first `omni.output` event.
    pub(crate) const TIME_TO_FIRST_OUTPUT_MS: &str = "time_to_first_output_ms";
    /// Explicit override on `omni.stage`: wins over the gaps between its `omni.output`
    /// events.
    pub(crate) const INTER_OUTPUT_MS: &str = "inter_output_ms";

    /// Whether `name` is one of the convention's fields (all others are ignored).
    pub(crate) fn is_known(name: &str) -> bool {
        super::field_def(name).is_some()
    }
}

/// What a convention field holds: how the layer reads it and how it is exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FieldKind {
    /// A count or an id (`u64`): an OTLP int.
    Count,
    /// A time in ms (`f64`), given to replace what the layer measures: an OTLP double.
    Ms,
    /// Text: an id, a status, a name.
    Text,
}

/// One field of the convention: its name, what it holds, and the spans (or the
/// `omni.output` event) that carry it.
#[derive(Clone, Copy, Debug)]
// `kind` and `spans` are read by the OTLP export and the replay, and the test of
// `omni_span!`.
#[cfg_attr(not(any(feature = "otlp", feature = "cli")), allow(dead_code))]
pub(crate) struct FieldDef {
    pub(crate) name: &'static str,
    pub(crate) kind: FieldKind,
    /// The span kinds that declare it; empty for the `omni.output` event's `units`.
    pub(crate) spans: &'static [SpanKind],
}

/// Every field of the convention, once, in the order spans declare them: what the layer
/// reads ([`field::is_known`]), the exporter types ([`FieldKind`]), the replay keeps and
/// [`omni_span!`] declares.
pub(crate) const FIELDS: [FieldDef; 32] = {
    use FieldKind::{Count, Ms, Text};
    use SpanKind::{Batch, Request, Run, Stage, Transfer};
    const fn def(name: &'static str, kind: FieldKind, spans: &'static [SpanKind]) -> FieldDef {
        FieldDef { name, kind, spans }
    }
    [
        def(field::RUN_ID, Text, &[Run]),
        def(field::REQUEST_ID, Text, &[Request]),
        def(field::STATUS, Text, &[Request]),
        def(field::STATUS_MESSAGE, Text, &[Request]),
        def(field::STAGE_ID, Count, &[Stage, Batch]),
        def(field::STAGE_NAME, Text, &[Stage]),
        def(field::BATCH_ID, Count, &[Stage, Batch]),
        def(field::BATCH_SIZE, Count, &[Stage, Batch]),
        def(field::NUM_TOKENS_IN, Count, &[Stage]),
        def(field::NUM_TOKENS_OUT, Count, &[Stage]),
        def(field::AUDIO_GENERATED_FRAMES, Count, &[Stage]),
        def(field::AUDIO_SAMPLE_RATE, Count, &[Stage]),
        def(field::IMAGE_NUM, Count, &[Stage]),
        def(field::RESOLUTION, Text, &[Stage]),
        def(field::REPLICA_ID, Count, &[Stage]),
        def(field::NUM_INFERENCE_STEPS, Count, &[Stage]),
        def(field::VIDEO_FRAMES, Count, &[Stage]),
        def(field::VIDEO_FPS, Count, &[Stage]),
        def(field::FROM_STAGE, Count, &[Transfer]),
        def(field::TO_STAGE, Count, &[Transfer]),
        def(field::FROM_REPLICA, Count, &[Transfer]),
        def(field::TO_REPLICA, Count, &[Transfer]),
        def(field::SIZE_BYTES, Count, &[Transfer]),
        def(field::STAGE_GEN_TIME_MS, Ms, &[Stage]),
        def(field::POSTPROCESS_TIME_MS, Ms, &[Stage]),
        def(field::TX_TIME_MS, Ms, &[Transfer]),
        def(field::RX_DECODE_TIME_MS, Ms, &[Transfer]),
        def(field::IN_FLIGHT_TIME_MS, Ms, &[Transfer]),
        def(field::TIME_TO_FIRST_OUTPUT_MS, Ms, &[Stage]),
        def(field::INTER_OUTPUT_MS, Ms, &[Stage]),
        def(field::REMOTE_REQUEST, Text, &[Stage, Transfer]),
        def(field::UNITS, Count, &[]),
    ]
};

/// The convention's field named `name`.
pub(crate) fn field_def(name: &str) -> Option<&'static FieldDef> {
    FIELDS.iter().find(|f| f.name == name)
}

/// The convention's field named `name` when spans carry it (every one but the
/// `omni.output` event's `units`).
#[cfg_attr(not(any(feature = "otlp", feature = "cli")), allow(dead_code))]
pub(crate) fn span_field(name: &str) -> Option<&'static FieldDef> {
    field_def(name).filter(|f| !f.spans.is_empty())
}

/// Opens an `omni.*` span of [`TARGET`] at INFO, declaring every field of its kind, as
/// [`FIELDS`] lists them: the ones the typed API gives when it opens one take their values,
/// in order (`request(id)`, `stage(id)`, `transfer(from, to)`, `batch(stage, batch,
/// size)`), the rest are `Empty`, to be recorded later; `run` has only `run_id`, `Empty`, and
/// `timing(name)` (queue, postprocess, tx, rx_decode) none. `any(name)` declares every span
/// field of the convention `Empty` (the replay records whichever an exported span had).
/// `[...]` is the span's parent, as `tracing::span!` takes it (`parent: p`, or nothing for
/// the current span); what follows is passed on (`otel.*` fields, `remote_request`).
///
/// ```ignore
/// let span = omni_span!(stage(stage_id), [parent: request], otel.kind = "internal");
/// ```
macro_rules! omni_span {
    (@open [$(parent: $parent:expr)?] $name:expr, $($fields:tt)*) => {
        ::tracing::span!(
            target: $crate::convention::TARGET,
            $(parent: $parent,)?
            ::tracing::Level::INFO,
            $name,
            $($fields)*
        )
    };
    (run, [$($parent:tt)*] $(, $($extra:tt)+)?) => {
        $crate::convention::omni_span!(@open [$($parent)*] $crate::convention::RUN,
            { $crate::convention::field::RUN_ID } = ::tracing::field::Empty,
            $($($extra)+)?
        )
    };
    (request($id:expr), [$($parent:tt)*] $(, $($extra:tt)+)?) => {
        $crate::convention::omni_span!(@open [$($parent)*] $crate::convention::REQUEST,
            { $crate::convention::field::REQUEST_ID } = $id,
            { $crate::convention::field::STATUS } = ::tracing::field::Empty,
            { $crate::convention::field::STATUS_MESSAGE } = ::tracing::field::Empty,
            $($($extra)+)?
        )
    };
    (stage($id:expr), [$($parent:tt)*] $(, $($extra:tt)+)?) => {
        $crate::convention::omni_span!(@open [$($parent)*] $crate::convention::STAGE,
            { $crate::convention::field::STAGE_ID } = $id,
            { $crate::convention::field::STAGE_NAME } = ::tracing::field::Empty,
            { $crate::convention::field::BATCH_ID } = ::tracing::field::Empty,
            { $crate::convention::field::BATCH_SIZE } = ::tracing::field::Empty,
            { $crate::convention::field::NUM_TOKENS_IN } = ::tracing::field::Empty,
            { $crate::convention::field::NUM_TOKENS_OUT } = ::tracing::field::Empty,
            { $crate::convention::field::AUDIO_GENERATED_FRAMES } = ::tracing::field::Empty,
            { $crate::convention::field::AUDIO_SAMPLE_RATE } = ::tracing::field::Empty,
            { $crate::convention::field::IMAGE_NUM } = ::tracing::field::Empty,
            { $crate::convention::field::RESOLUTION } = ::tracing::field::Empty,
            { $crate::convention::field::REPLICA_ID } = ::tracing::field::Empty,
            { $crate::convention::field::NUM_INFERENCE_STEPS } = ::tracing::field::Empty,
            { $crate::convention::field::VIDEO_FRAMES } = ::tracing::field::Empty,
            { $crate::convention::field::VIDEO_FPS } = ::tracing::field::Empty,
            { $crate::convention::field::STAGE_GEN_TIME_MS } = ::tracing::field::Empty,
            { $crate::convention::field::POSTPROCESS_TIME_MS } = ::tracing::field::Empty,
            { $crate::convention::field::TIME_TO_FIRST_OUTPUT_MS } = ::tracing::field::Empty,
            { $crate::convention::field::INTER_OUTPUT_MS } = ::tracing::field::Empty,
            $($($extra)+)?
        )
    };
    (transfer($from:expr, $to:expr), [$($parent:tt)*] $(, $($extra:tt)+)?) => {
        $crate::convention::omni_span!(@open [$($parent)*] $crate::convention::TRANSFER,
            { $crate::convention::field::FROM_STAGE } = $from,
            { $crate::convention::field::TO_STAGE } = $to,
            { $crate::convention::field::FROM_REPLICA } = ::tracing::field::Empty,
            { $crate::convention::field::TO_REPLICA } = ::tracing::field::Empty,
            { $crate::convention::field::SIZE_BYTES } = ::tracing::field::Empty,
            { $crate::convention::field::TX_TIME_MS } = ::tracing::field::Empty,
            { $crate::convention::field::RX_DECODE_TIME_MS } = ::tracing::field::Empty,
            { $crate::convention::field::IN_FLIGHT_TIME_MS } = ::tracing::field::Empty,
            $($($extra)+)?
        )
    };
    (batch($stage:expr, $batch:expr, $size:expr), [$($parent:tt)*] $(, $($extra:tt)+)?) => {
        $crate::convention::omni_span!(@open [$($parent)*] $crate::convention::BATCH,
            { $crate::convention::field::STAGE_ID } = $stage,
            { $crate::convention::field::BATCH_ID } = $batch,
            { $crate::convention::field::BATCH_SIZE } = $size,
            $($($extra)+)?
        )
    };
    (timing($name:expr), [$($parent:tt)*]) => {
        $crate::convention::omni_span!(@open [$($parent)*] $name,)
    };
    (any($name:expr), [$($parent:tt)*]) => {
        $crate::convention::omni_span!(@open [$($parent)*] $name,
            { $crate::convention::field::RUN_ID } = ::tracing::field::Empty,
            { $crate::convention::field::REQUEST_ID } = ::tracing::field::Empty,
            { $crate::convention::field::STATUS } = ::tracing::field::Empty,
            { $crate::convention::field::STATUS_MESSAGE } = ::tracing::field::Empty,
            { $crate::convention::field::STAGE_ID } = ::tracing::field::Empty,
            { $crate::convention::field::STAGE_NAME } = ::tracing::field::Empty,
            { $crate::convention::field::BATCH_ID } = ::tracing::field::Empty,
            { $crate::convention::field::BATCH_SIZE } = ::tracing::field::Empty,
            { $crate::convention::field::NUM_TOKENS_IN } = ::tracing::field::Empty,
            { $crate::convention::field::NUM_TOKENS_OUT } = ::tracing::field::Empty,
            { $crate::convention::field::AUDIO_GENERATED_FRAMES } = ::tracing::field::Empty,
            { $crate::convention::field::AUDIO_SAMPLE_RATE } = ::tracing::field::Empty,
            { $crate::convention::field::IMAGE_NUM } = ::tracing::field::Empty,
            { $crate::convention::field::RESOLUTION } = ::tracing::field::Empty,
            { $crate::convention::field::REPLICA_ID } = ::tracing::field::Empty,
            { $crate::convention::field::NUM_INFERENCE_STEPS } = ::tracing::field::Empty,
            { $crate::convention::field::VIDEO_FRAMES } = ::tracing::field::Empty,
            { $crate::convention::field::VIDEO_FPS } = ::tracing::field::Empty,
            { $crate::convention::field::FROM_STAGE } = ::tracing::field::Empty,
            { $crate::convention::field::TO_STAGE } = ::tracing::field::Empty,
            { $crate::convention::field::FROM_REPLICA } = ::tracing::field::Empty,
            { $crate::convention::field::TO_REPLICA } = ::tracing::field::Empty,
            { $crate::convention::field::SIZE_BYTES } = ::tracing::field::Empty,
            { $crate::convention::field::STAGE_GEN_TIME_MS } = ::tracing::field::Empty,
            { $crate::convention::field::POSTPROCESS_TIME_MS } = ::tracing::field::Empty,
            { $crate::convention::field::TX_TIME_MS } = ::tracing::field::Empty,
            { $crate::convention::field::RX_DECODE_TIME_MS } = ::tracing::field::Empty,
            { $crate::convention::field::IN_FLIGHT_TIME_MS } = ::tracing::field::Empty,
            { $crate::convention::field::TIME_TO_FIRST_OUTPUT_MS } = ::tracing::field::Empty,
            { $crate::convention::field::INTER_OUTPUT_MS } = ::tracing::field::Empty,
            { $crate::convention::field::REMOTE_REQUEST } = ::tracing::field::Empty
        )
    };
}
pub(crate) use omni_span;

/// What an `omni.*` span is, from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SpanKind {
    Run,
    Request,
    Stage,
    Queue,
    Postprocess,
    Transfer,
    Tx,
    RxDecode,
    Batch,
}

impl SpanKind {
    /// Queue, postprocess, tx and rx_decode: children that only time a part of their parent.
    #[inline]
    pub(crate) fn is_timing(self) -> bool {
        matches!(
            self,
            Self::Queue | Self::Postprocess | Self::Tx | Self::RxDecode
        )
    }

    /// Classifies a span name; `None` for spans outside the convention.
    #[inline]
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        // Every span of the engine's comes here: byte compares of known lengths (no
        // `memcmp` calls), and a cheap reject of the engine's own spans.
        let (b"omni.", rest) = name.as_bytes().split_at_checked(5)? else {
            return None;
        };
        Some(match (rest.len(), rest.first()?) {
            (3, b'r') if rest == b"run" => Self::Run,
            (7, b'r') if rest == b"request" => Self::Request,
            (5, b's') if rest == b"stage" => Self::Stage,
            (5, b'q') if rest == b"queue" => Self::Queue,
            (11, b'p') if rest == b"postprocess" => Self::Postprocess,
            (8, b't') if rest == b"transfer" => Self::Transfer,
            (11, b't') if rest == b"transfer.tx" => Self::Tx,
            (18, b't') if rest == b"transfer.rx_decode" => Self::RxDecode,
            (5, b'b') if rest == b"batch" => Self::Batch,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_classifies() {
        for (name, kind) in [
            (RUN, SpanKind::Run),
            (REQUEST, SpanKind::Request),
            (STAGE, SpanKind::Stage),
            (QUEUE, SpanKind::Queue),
            (POSTPROCESS, SpanKind::Postprocess),
            (TRANSFER, SpanKind::Transfer),
            (TRANSFER_TX, SpanKind::Tx),
            (TRANSFER_RX_DECODE, SpanKind::RxDecode),
        ] {
            assert_eq!(SpanKind::from_name(name), Some(kind), "{name}");
        }
        assert_eq!(SpanKind::from_name("omni.stagex"), None);
        assert_eq!(SpanKind::from_name("http.request"), None);
    }

    /// The convention's fields of `kind`, as [`FIELDS`] lists them, sorted.
    fn fields_of(kind: SpanKind) -> Vec<&'static str> {
        let mut names: Vec<_> = FIELDS
            .iter()
            .filter(|f| f.spans.contains(&kind))
            .map(|f| f.name)
            .collect();
        names.sort_unstable();
        names
    }

    /// The convention fields `span` declares, sorted.
    fn declared(span: &tracing::Span) -> Vec<&'static str> {
        let mut names: Vec<_> = span
            .metadata()
            .map(|m| m.fields().iter().map(|f| f.name()).collect())
            .unwrap_or_default();
        names.retain(|n| field::is_known(n));
        names.sort_unstable();
        names
    }

    /// `omni_span!` declares what [`FIELDS`] gives each span, no more, no less; the typed
    /// API adds `remote_request` to a stage or transfer only for remote work.
    #[test]
    fn omni_span_declares_the_fields_the_list_gives_each_span() {
        // A disabled span has no metadata: any subscriber enables them.
        tracing::subscriber::with_default(tracing_subscriber::registry(), every_span_kind);
    }

    fn every_span_kind() {
        let without_remote = |kind| {
            let mut names = fields_of(kind);
            names.retain(|n| *n != field::REMOTE_REQUEST);
            names
        };
        assert_eq!(declared(&omni_span!(run, [])), fields_of(SpanKind::Run));
        assert_eq!(
            declared(&omni_span!(request("r-1"), [parent: None])),
            fields_of(SpanKind::Request)
        );
        assert_eq!(
            declared(&omni_span!(stage(0), [parent: None])),
            without_remote(SpanKind::Stage)
        );
        assert_eq!(
            declared(&omni_span!(stage(0), [], { field::REMOTE_REQUEST } = "r-1")),
            fields_of(SpanKind::Stage)
        );
        assert_eq!(
            declared(&omni_span!(transfer(0, 1), [parent: None])),
            without_remote(SpanKind::Transfer)
        );
        assert_eq!(
            declared(&omni_span!(batch(0, 1, 2), [parent: None])),
            fields_of(SpanKind::Batch)
        );
        assert!(declared(&omni_span!(timing(QUEUE), [])).is_empty());
        let mut every: Vec<_> = FIELDS
            .iter()
            .filter(|f| !f.spans.is_empty())
            .map(|f| f.name)
            .collect();
        every.sort_unstable();
        assert_eq!(declared(&omni_span!(any(STAGE), [])), every);
        // Each name once, `units` the only field of no span.
        let mut names: Vec<_> = FIELDS.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FIELDS.len());
        assert!(span_field(field::UNITS).is_none() && field::is_known(field::UNITS));
        assert!(field::is_known("stage_id") && !field::is_known("otel.name"));
    }
}

#[cfg(test)]
mod names {
    #[test]
    fn the_request_span_and_its_id_field() {
        assert_eq!(super::REQUEST, "omni.request");
        assert_eq!(super::field::REQUEST_ID, "request_id");
    }
}
