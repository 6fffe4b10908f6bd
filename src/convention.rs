//! The span convention: the span and field names an engine writes.
//!
//! These names are a public interface (engines and dashboards depend on them): they are added
//! to, never renamed. See the crate docs for the tree they form.
//!
//! ```
//! use omni_metrics::convention::{self, field};
//!
//! // Raw spans work as well as the typed API in `omni_metrics::instrument`.
//! let request = tracing::info_span!("omni.request", request_id = "r-1", status = tracing::field::Empty);
//! assert_eq!(convention::REQUEST, "omni.request");
//! assert_eq!(field::REQUEST_ID, "request_id");
//! # drop(request);
//! ```
#![doc = include_str!("../docs/reference/convention.md")]

/// The `tracing` target of the spans opened by [`crate::instrument`]; use it in filters
/// (`RUST_LOG=omni=info`).
pub const TARGET: &str = "omni";

/// An offline batch: every `omni.request` below it is summarized together.
pub const RUN: &str = "omni.run";
/// One request through the pipeline; the root of one trace.
pub const REQUEST: &str = "omni.request";
/// One stage's work on a request (or one chunk of it, for streamed stages).
pub const STAGE: &str = "omni.stage";
/// Time a stage waited before computing; excluded from `stage_gen_time_ms`.
pub const QUEUE: &str = "omni.queue";
/// A stage's post-processing; excluded from `stage_gen_time_ms`.
pub const POSTPROCESS: &str = "omni.postprocess";
/// One hand-over of data from one stage to the next (or one chunk of it).
pub const TRANSFER: &str = "omni.transfer";
/// The sender side of a transfer: serialize and hand over.
pub const TRANSFER_TX: &str = "omni.transfer.tx";
/// The receiver side of a transfer: take and decode.
pub const TRANSFER_RX_DECODE: &str = "omni.transfer.rx_decode";

/// One forward pass of a stage over several requests: fields `stage_id`, `batch_id`,
/// `batch_size`. Linked to each request's `omni.stage` span with `follows_from` in both
/// directions (a span link in the trace); a stage linked to a batch takes its `batch_id` and
/// `batch_size` when it does not give its own. Not part of any request: open it as a root.
pub const BATCH: &str = "omni.batch";

/// An event inside an `omni.stage` span marking one output chunk (tokens, audio frames or
/// images), with an optional `units` field: it gives the stage's `time_to_first_output_ms`,
/// `inter_output_ms` and `output_chunks`. Set it as the event's name:
/// `tracing::info!(name: "omni.output", units = 4)`.
pub const OUTPUT: &str = "omni.output";

/// Field names, as `tracing` fields on the spans above.
pub mod field {
    /// `omni.run`: a name for the run's scope (default `run-<n>`).
    pub const RUN_ID: &str = "run_id";
    /// `omni.request`: the request's id (required).
    pub const REQUEST_ID: &str = "request_id";
    /// `omni.request`: `ok` (default), `error` or `aborted`.
    pub const STATUS: &str = "status";
    /// `omni.request`: why it failed, with `status = error` (the exported span's status
    /// message).
    pub const STATUS_MESSAGE: &str = "status_message";

    /// `omni.stage`: the stage's index in the pipeline (required).
    pub const STAGE_ID: &str = "stage_id";
    /// `omni.stage`: a readable name ("thinker").
    pub const STAGE_NAME: &str = "stage_name";
    /// `omni.stage`: the engine's batch index.
    pub const BATCH_ID: &str = "batch_id";
    /// `omni.stage`: the number of requests in the batch.
    pub const BATCH_SIZE: &str = "batch_size";
    /// `omni.stage`: input tokens.
    pub const NUM_TOKENS_IN: &str = "num_tokens_in";
    /// `omni.stage`: output tokens.
    pub const NUM_TOKENS_OUT: &str = "num_tokens_out";
    /// `omni.stage`: audio frames (samples) produced.
    pub const AUDIO_GENERATED_FRAMES: &str = "audio_generated_frames";
    /// `omni.stage`: the sample rate of `audio_generated_frames`, in Hz.
    pub const AUDIO_SAMPLE_RATE: &str = "audio_sample_rate";
    /// `omni.stage`: images generated.
    pub const IMAGE_NUM: &str = "image_num";
    /// `omni.stage`: image resolution, e.g. `1024x1024`.
    pub const RESOLUTION: &str = "resolution";

    /// `omni.transfer`: the sending stage's id (required).
    pub const FROM_STAGE: &str = "from_stage";
    /// `omni.transfer`: the receiving stage's id (required).
    pub const TO_STAGE: &str = "to_stage";
    /// `omni.transfer`: bytes moved.
    pub const SIZE_BYTES: &str = "size_bytes";

    /// Explicit override on `omni.stage`: wins over the measured compute time.
    pub const STAGE_GEN_TIME_MS: &str = "stage_gen_time_ms";
    /// Explicit override on `omni.stage`: wins over the `omni.postprocess` children.
    pub const POSTPROCESS_TIME_MS: &str = "postprocess_time_ms";
    /// Explicit override on `omni.transfer`: wins over the `omni.transfer.tx` children.
    pub const TX_TIME_MS: &str = "tx_time_ms";
    /// Explicit override on `omni.transfer`: wins over the `omni.transfer.rx_decode` children.
    pub const RX_DECODE_TIME_MS: &str = "rx_decode_time_ms";
    /// Explicit override on `omni.transfer`: wins over the measured gap.
    pub const IN_FLIGHT_TIME_MS: &str = "in_flight_time_ms";
    /// `omni.stage` / `omni.transfer`: the id of the request this work is done for, when
    /// that request is owned by another process ([`crate::propagation`]). Such a span is
    /// remote work: counted apart, never in the tables (the owning process reports it).
    pub const REMOTE_REQUEST: &str = "remote_request";
    /// `omni.output` events: how many tokens, audio frames or images the chunk holds.
    pub const UNITS: &str = "units";
    /// Explicit override on `omni.stage`: wins over its first `omni.output` event.
    pub const TIME_TO_FIRST_OUTPUT_MS: &str = "time_to_first_output_ms";
    /// Explicit override on `omni.stage`: wins over the gaps between its `omni.output`
    /// events.
    pub const INTER_OUTPUT_MS: &str = "inter_output_ms";

    /// Whether `name` is one of the convention's fields (all others are ignored).
    ///
    /// ```
    /// assert!(omni_metrics::convention::field::is_known("stage_id"));
    /// assert!(!omni_metrics::convention::field::is_known("otel.name"));
    /// ```
    pub fn is_known(name: &str) -> bool {
        matches!(
            name,
            RUN_ID
                | REQUEST_ID
                | STATUS
                | STATUS_MESSAGE
                | STAGE_ID
                | STAGE_NAME
                | BATCH_ID
                | BATCH_SIZE
                | NUM_TOKENS_IN
                | NUM_TOKENS_OUT
                | AUDIO_GENERATED_FRAMES
                | AUDIO_SAMPLE_RATE
                | IMAGE_NUM
                | RESOLUTION
                | FROM_STAGE
                | TO_STAGE
                | SIZE_BYTES
                | STAGE_GEN_TIME_MS
                | POSTPROCESS_TIME_MS
                | TX_TIME_MS
                | RX_DECODE_TIME_MS
                | IN_FLIGHT_TIME_MS
                | UNITS
                | REMOTE_REQUEST
                | TIME_TO_FIRST_OUTPUT_MS
                | INTER_OUTPUT_MS
        )
    }
}

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
}
