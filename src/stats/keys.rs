//! Every output key, named once: the records' JSON-lines keys, the console tables' rows, the
//! HTML report's columns, the trace annotations and the keys the replay reads back.
//!
//! A key that is also a field of the span convention (an explicit value an engine may give,
//! such as `stage_gen_time_ms`) is the convention's constant. The JSON-lines keys of the
//! record types are their field names (serde): the tests below hold each to its constant.

// Some keys are written only by serde, from the record types' field names; the tests read
// them.
#![cfg_attr(not(test), allow(dead_code))]

use crate::convention::field;

// `RequestE2EStats` (the `request` record).
pub(crate) const REQUEST_ID: &str = field::REQUEST_ID;
pub(crate) const STATUS: &str = field::STATUS;
pub(crate) const STATUS_MESSAGE: &str = field::STATUS_MESSAGE;
pub(crate) const SCOPE: &str = "scope";
/// Also the metrics' label of the model (vLLM's `model_name`).
pub(crate) const MODEL_NAME: &str = "model_name";
pub(crate) const TRACE_ID: &str = "trace_id";
/// A record's [`TraceSource`](super::TraceSource), when not the convention.
pub(crate) const SOURCE: &str = "source";
pub(crate) const E2E_TOTAL_MS: &str = "e2e_total_ms";
pub(crate) const E2E_TOTAL_TOKENS: &str = "e2e_total_tokens";
pub(crate) const TRANSFERS_TOTAL_TIME_MS: &str = "transfers_total_time_ms";
pub(crate) const TRANSFERS_TOTAL_KBYTES: &str = "transfers_total_kbytes";
pub(crate) const TIME_TO_FIRST_OUTPUT_MS: &str = field::TIME_TO_FIRST_OUTPUT_MS;
pub(crate) const TIME_TO_FIRST_AUDIO_MS: &str = "time_to_first_audio_ms";
pub(crate) const AUDIO_DURATION_MS: &str = "audio_duration_ms";
pub(crate) const AUDIO_E2E_RTF: &str = "audio_e2e_rtf";
pub(crate) const INVALID_SPANS: &str = "invalid_spans";
pub(crate) const STAGES: &str = "stages";
/// A request's edges; also an edge's count of transfer spans.
pub(crate) const TRANSFERS: &str = "transfers";

// `StageRequestStats` (a request's `stages`).
pub(crate) const STAGE_ID: &str = field::STAGE_ID;
pub(crate) const STAGE_NAME: &str = field::STAGE_NAME;
pub(crate) const BATCH_ID: &str = field::BATCH_ID;
pub(crate) const BATCH_SIZE: &str = field::BATCH_SIZE;
pub(crate) const NUM_TOKENS_IN: &str = field::NUM_TOKENS_IN;
pub(crate) const NUM_TOKENS_OUT: &str = field::NUM_TOKENS_OUT;
pub(crate) const STAGE_GEN_TIME_MS: &str = field::STAGE_GEN_TIME_MS;
pub(crate) const POSTPROCESS_TIME_MS: &str = field::POSTPROCESS_TIME_MS;
pub(crate) const AUDIO_GENERATED_FRAMES: &str = field::AUDIO_GENERATED_FRAMES;
pub(crate) const IMAGE_NUM: &str = field::IMAGE_NUM;
pub(crate) const RESOLUTION: &str = field::RESOLUTION;
pub(crate) const QUEUE_TIME_MS: &str = "queue_time_ms";
pub(crate) const AUDIO_SAMPLE_RATE: &str = field::AUDIO_SAMPLE_RATE;
pub(crate) const SPANS: &str = "spans";
pub(crate) const WALL_TIME_MS: &str = "wall_time_ms";
pub(crate) const OUTPUT_CHUNKS: &str = "output_chunks";
pub(crate) const OUTPUT_UNITS: &str = "output_units";
pub(crate) const INTER_OUTPUT_MS: &str = field::INTER_OUTPUT_MS;
pub(crate) const AUDIO_RTF: &str = "audio_rtf";
pub(crate) const REPLICA_ID: &str = field::REPLICA_ID;
pub(crate) const NUM_INFERENCE_STEPS: &str = field::NUM_INFERENCE_STEPS;
pub(crate) const DENOISE_STEP_LATENCY_MS: &str = "denoise_step_latency_ms";
pub(crate) const VIDEO_FRAMES: &str = field::VIDEO_FRAMES;
pub(crate) const VIDEO_FPS: &str = field::VIDEO_FPS;
pub(crate) const VIDEO_DURATION_MS: &str = "video_duration_ms";
pub(crate) const VIDEO_RTF: &str = "video_rtf";
pub(crate) const AUDIO_UNDERRUN_MS: &str = "audio_underrun_ms";
pub(crate) const AUDIO_MAX_GAP_MS: &str = "audio_max_gap_ms";
pub(crate) const AUDIO_CONTINUITY: &str = "audio_continuity";
pub(crate) const AUDIO_SKIPPED: &str = "audio_skipped";

// `TransferEdgeStats` (a request's `transfers`).
pub(crate) const EDGE: &str = "edge";
pub(crate) const FROM_STAGE: &str = field::FROM_STAGE;
pub(crate) const TO_STAGE: &str = field::TO_STAGE;
pub(crate) const FROM_REPLICA: &str = field::FROM_REPLICA;
pub(crate) const TO_REPLICA: &str = field::TO_REPLICA;
pub(crate) const SIZE_KBYTES: &str = "size_kbytes";
pub(crate) const TX_TIME_MS: &str = field::TX_TIME_MS;
pub(crate) const RX_DECODE_TIME_MS: &str = field::RX_DECODE_TIME_MS;
pub(crate) const IN_FLIGHT_TIME_MS: &str = field::IN_FLIGHT_TIME_MS;
pub(crate) const SIZE_BYTES: &str = field::SIZE_BYTES;

// `OverallSummary` (the `summary` record; `scope` and `invalid_spans` as above).
pub(crate) const E2E_REQUESTS: &str = "e2e_requests";
pub(crate) const E2E_WALL_TIME_MS: &str = "e2e_wall_time_ms";
pub(crate) const E2E_AVG_TIME_PER_REQUEST_MS: &str = "e2e_avg_time_per_request_ms";
pub(crate) const E2E_AVG_TOKENS_PER_S: &str = "e2e_avg_tokens_per_s";
pub(crate) const E2E_REQUESTS_ERROR: &str = "e2e_requests_error";
pub(crate) const E2E_REQUESTS_ABORTED: &str = "e2e_requests_aborted";
pub(crate) const AUDIO_STREAMS: &str = "audio_streams";

/// The `scope` of the online cumulative summary.
pub(crate) const CUMULATIVE_SCOPE: &str = "cumulative";
/// The `scope` of the online window summary.
pub(crate) const WINDOW_SCOPE: &str = "window";
pub(crate) const AUDIO_SKIPPED_REQUESTS: &str = "audio_skipped_requests";
pub(crate) const E2E_IMAGES: &str = "e2e_images";
pub(crate) const E2E_IMAGES_PER_S: &str = "e2e_images_per_s";
pub(crate) const E2E_MEGAPIXELS_PER_S: &str = "e2e_megapixels_per_s";

/// `audio_continuity_ok_{threshold_ms}ms`: a summary's streams with no gap above it.
pub(crate) fn audio_continuity_ok(threshold_ms: u64) -> String {
    format!("audio_continuity_ok_{threshold_ms}ms")
}
pub(crate) const DISTRIBUTIONS: &str = "distributions";

/// The summary's `e2e_stage_{i}_wall_time_ms` of stage `stage_id`.
pub(crate) fn e2e_stage_wall_time_ms(stage_id: u64) -> String {
    format!("e2e_stage_{stage_id}_wall_time_ms")
}

// `LatencyStats` (one entry of `distributions`).
pub(crate) const COUNT: &str = "count";
pub(crate) const MEAN_MS: &str = "mean_ms";
pub(crate) const P50_MS: &str = "p50_ms";
pub(crate) const P90_MS: &str = "p90_ms";
pub(crate) const P99_MS: &str = "p99_ms";
pub(crate) const MAX_MS: &str = "max_ms";

/// A request span's GenAI usage (semantic conventions, current names): its prompt tokens
/// (stage 0's `num_tokens_in`) and generated tokens (every stage's `num_tokens_out`), as the
/// metrics' `prompt_tokens` and `generation_tokens` count them.
pub(crate) const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
/// See [`GEN_AI_USAGE_INPUT_TOKENS`].
pub(crate) const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";

/// A request span's annotation of each stage's gen time, `stage_{i}_gen_time_ms` (the
/// name of its distribution, [`Quantity::StageGenTime`](super::latency::Quantity)), as
/// static strings; stages beyond the last are left out of the attributes (not the tables).
pub(crate) const STAGE_GEN_TIME_KEYS: [&str; 8] = [
    "stage_0_gen_time_ms",
    "stage_1_gen_time_ms",
    "stage_2_gen_time_ms",
    "stage_3_gen_time_ms",
    "stage_4_gen_time_ms",
    "stage_5_gen_time_ms",
    "stage_6_gen_time_ms",
    "stage_7_gen_time_ms",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::latency::Quantity;
    use crate::stats::{EdgeName, RequestE2EStats, StageRequestStats, TransferEdgeStats};

    /// The keys of a JSON object, sorted (serde_json's map may sort them).
    fn keys_of(value: &serde_json::Value) -> Vec<String> {
        let mut keys: Vec<String> = value
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort_unstable();
        keys
    }

    fn sorted<const N: usize>(mut keys: [&str; N]) -> Vec<String> {
        keys.sort_unstable();
        keys.iter().map(|k| (*k).to_owned()).collect()
    }

    /// A record with every optional value given: every key is written.
    fn full_request() -> RequestE2EStats {
        RequestE2EStats {
            status_message: Some("boom".into()),
            model_name: Some("qwen3-omni".into()),
            trace_id: Some("0".repeat(32)),
            source: Some(crate::stats::TraceSource::VllmOmni),
            time_to_first_output_ms: Some(1.0),
            time_to_first_audio_ms: Some(1.0),
            audio_duration_ms: Some(1.0),
            audio_e2e_rtf: Some(1.0),
            stages: vec![StageRequestStats {
                stage_name: Some("thinker".into()),
                image_num: Some(1),
                resolution: Some("1x1".into()),
                audio_sample_rate: Some(1),
                output_chunks: 1,
                output_units: 1,
                time_to_first_output_ms: Some(1.0),
                inter_output_ms: Some(1.0),
                audio_duration_ms: Some(1.0),
                audio_rtf: Some(1.0),
                replica_id: Some(1),
                num_inference_steps: Some(1),
                denoise_step_latency_ms: Some(1.0),
                video_frames: 1,
                video_fps: Some(1),
                video_duration_ms: Some(1.0),
                video_rtf: Some(1.0),
                audio_underrun_ms: Some(1.0),
                audio_max_gap_ms: Some(1.0),
                audio_continuity: vec![crate::stats::AudioContinuity::default()],
                audio_skipped: Some("no_frames"),
                ..Default::default()
            }],
            transfers: vec![TransferEdgeStats {
                from_replica: Some(1),
                to_replica: Some(1),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// serde names the records' keys after their fields: each is its constant here.
    #[test]
    fn the_records_keys_are_these() {
        let json = serde_json::to_value(full_request()).expect("serializable");
        assert_eq!(
            keys_of(&json),
            sorted([
                REQUEST_ID,
                STATUS,
                STATUS_MESSAGE,
                SCOPE,
                MODEL_NAME,
                TRACE_ID,
                SOURCE,
                E2E_TOTAL_MS,
                E2E_TOTAL_TOKENS,
                TRANSFERS_TOTAL_TIME_MS,
                TRANSFERS_TOTAL_KBYTES,
                TIME_TO_FIRST_OUTPUT_MS,
                TIME_TO_FIRST_AUDIO_MS,
                AUDIO_DURATION_MS,
                AUDIO_E2E_RTF,
                INVALID_SPANS,
                STAGES,
                TRANSFERS,
            ])
        );
        assert_eq!(
            keys_of(&json[STAGES][0]),
            sorted([
                STAGE_ID,
                STAGE_NAME,
                BATCH_ID,
                BATCH_SIZE,
                NUM_TOKENS_IN,
                NUM_TOKENS_OUT,
                STAGE_GEN_TIME_MS,
                POSTPROCESS_TIME_MS,
                AUDIO_GENERATED_FRAMES,
                IMAGE_NUM,
                RESOLUTION,
                QUEUE_TIME_MS,
                AUDIO_SAMPLE_RATE,
                SPANS,
                WALL_TIME_MS,
                OUTPUT_CHUNKS,
                OUTPUT_UNITS,
                TIME_TO_FIRST_OUTPUT_MS,
                INTER_OUTPUT_MS,
                AUDIO_DURATION_MS,
                AUDIO_RTF,
                REPLICA_ID,
                NUM_INFERENCE_STEPS,
                DENOISE_STEP_LATENCY_MS,
                VIDEO_FRAMES,
                VIDEO_FPS,
                VIDEO_DURATION_MS,
                VIDEO_RTF,
                AUDIO_UNDERRUN_MS,
                AUDIO_MAX_GAP_MS,
                AUDIO_CONTINUITY,
                AUDIO_SKIPPED,
            ])
        );
        assert_eq!(
            keys_of(&json[TRANSFERS][0]),
            sorted([
                EDGE,
                FROM_STAGE,
                TO_STAGE,
                FROM_REPLICA,
                TO_REPLICA,
                SIZE_KBYTES,
                TX_TIME_MS,
                RX_DECODE_TIME_MS,
                IN_FLIGHT_TIME_MS,
                SIZE_BYTES,
                TRANSFERS,
            ])
        );
    }

    /// The summary's keys, `model_name` only when set, right after `scope`.
    #[test]
    fn the_summary_names_its_model_when_set() {
        use crate::stats::OverallSummary;
        let mut summary = OverallSummary {
            scope: "run-1".into(),
            ..Default::default()
        };
        let without = serde_json::to_string(&summary).expect("serializable");
        assert!(!without.contains(MODEL_NAME), "{without}");
        summary.model_name = Some("qwen3-omni".into());
        let with = serde_json::to_string(&summary).expect("serializable");
        assert!(
            with.starts_with(r#"{"scope":"run-1","model_name":"qwen3-omni","e2e_requests":0,"#),
            "{with}"
        );
        assert_eq!(with.replace(r#""model_name":"qwen3-omni","#, ""), without);
    }

    #[test]
    fn the_stage_keys_are_the_distributions_names() {
        for (id, key) in STAGE_GEN_TIME_KEYS.iter().enumerate() {
            assert_eq!(Quantity::StageGenTime(id as u64).to_string(), *key);
        }
        let edge = Quantity::TransferTime(EdgeName { from: 0, to: 1 });
        assert_eq!(edge.to_string(), "transfer_0->1_time_ms");
    }
}
