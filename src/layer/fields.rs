//! Reading `tracing` field values into the per-span state, whatever type the engine used.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use tracing_core::callsite::Identifier;
use tracing_core::field::{Field, Visit};

use crate::convention::field;
use crate::diagnostics::{Issue, IssueSet};

/// A field of the convention, or another one (ignored): what a field name means, worked out
/// once per callsite rather than string-matched on every value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Known {
    /// Not a field of the convention (`otel.*`, `gen_ai.*`, the engine's own).
    Other,
    RunId,
    RequestId,
    Status,
    StatusMessage,
    StageId,
    StageName,
    BatchId,
    BatchSize,
    NumTokensIn,
    NumTokensOut,
    AudioGeneratedFrames,
    AudioSampleRate,
    ImageNum,
    Resolution,
    FromStage,
    ToStage,
    SizeBytes,
    StageGenTimeMs,
    PostprocessTimeMs,
    TxTimeMs,
    RxDecodeTimeMs,
    InFlightTimeMs,
    Units,
    RemoteRequest,
    TimeToFirstOutputMs,
    InterOutputMs,
}

impl Known {
    /// Every meaning, by its `u8` value.
    const ALL: [Known; 27] = [
        Known::Other,
        Known::RunId,
        Known::RequestId,
        Known::Status,
        Known::StatusMessage,
        Known::StageId,
        Known::StageName,
        Known::BatchId,
        Known::BatchSize,
        Known::NumTokensIn,
        Known::NumTokensOut,
        Known::AudioGeneratedFrames,
        Known::AudioSampleRate,
        Known::ImageNum,
        Known::Resolution,
        Known::FromStage,
        Known::ToStage,
        Known::SizeBytes,
        Known::StageGenTimeMs,
        Known::PostprocessTimeMs,
        Known::TxTimeMs,
        Known::RxDecodeTimeMs,
        Known::InFlightTimeMs,
        Known::Units,
        Known::RemoteRequest,
        Known::TimeToFirstOutputMs,
        Known::InterOutputMs,
    ];

    /// What the field `name` is.
    pub(super) fn of(name: &str) -> Self {
        match name {
            field::RUN_ID => Known::RunId,
            field::REQUEST_ID => Known::RequestId,
            field::STATUS => Known::Status,
            field::STATUS_MESSAGE => Known::StatusMessage,
            field::STAGE_ID => Known::StageId,
            field::STAGE_NAME => Known::StageName,
            field::BATCH_ID => Known::BatchId,
            field::BATCH_SIZE => Known::BatchSize,
            field::NUM_TOKENS_IN => Known::NumTokensIn,
            field::NUM_TOKENS_OUT => Known::NumTokensOut,
            field::AUDIO_GENERATED_FRAMES => Known::AudioGeneratedFrames,
            field::AUDIO_SAMPLE_RATE => Known::AudioSampleRate,
            field::IMAGE_NUM => Known::ImageNum,
            field::RESOLUTION => Known::Resolution,
            field::FROM_STAGE => Known::FromStage,
            field::TO_STAGE => Known::ToStage,
            field::SIZE_BYTES => Known::SizeBytes,
            field::STAGE_GEN_TIME_MS => Known::StageGenTimeMs,
            field::POSTPROCESS_TIME_MS => Known::PostprocessTimeMs,
            field::TX_TIME_MS => Known::TxTimeMs,
            field::RX_DECODE_TIME_MS => Known::RxDecodeTimeMs,
            field::IN_FLIGHT_TIME_MS => Known::InFlightTimeMs,
            field::UNITS => Known::Units,
            field::REMOTE_REQUEST => Known::RemoteRequest,
            field::TIME_TO_FIRST_OUTPUT_MS => Known::TimeToFirstOutputMs,
            field::INTER_OUTPUT_MS => Known::InterOutputMs,
            _ => Known::Other,
        }
    }
}

/// Callsites whose field meanings are kept; beyond that (an engine with that many
/// callsites with `omni.*` spans or events), field names are matched per value.
const CALLSITES: usize = 1024;
/// Slots probed before giving up on the cache.
const PROBES: usize = 8;
/// A field's meaning not worked out yet.
const UNSEEN: u8 = u8::MAX;

/// One callsite's field meanings by field index, each worked out on first use.
type Meanings = [AtomicU8; 32];

/// Per callsite: the meaning of each of its fields. Filled on a callsite's first value,
/// never emptied: callsites are static, and so is what is kept (33 bytes per callsite).
static CALLSITE_FIELDS: [OnceLock<(Identifier, &'static Meanings)>; CALLSITES] =
    [const { OnceLock::new() }; CALLSITES];

/// Keeps what a callsite identifier hashes to (its address).
struct Capture(u64);

impl std::hash::Hasher for Capture {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0 ^ n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The field meanings of `field`'s callsite, or `None` if the cache is full.
fn meanings_of(field: &Field) -> Option<&'static Meanings> {
    use std::hash::Hash as _;
    let callsite = field.callsite();
    let mut hash = Capture(0);
    callsite.hash(&mut hash);
    let mut slot = (hash.0 >> 32) as usize;
    for _ in 0..PROBES {
        let cell = &CALLSITE_FIELDS[slot % CALLSITES];
        let (owner, meanings) = cell.get_or_init(|| {
            let fresh: &'static Meanings =
                Box::leak(Box::new([const { AtomicU8::new(UNSEEN) }; 32]));
            (callsite.clone(), fresh)
        });
        if *owner == callsite {
            return Some(meanings);
        }
        slot += 1;
    }
    None
}

/// The largest time a `*_ms` field may give (10^12 ms, 31 years): far beyond any real
/// duration, and small enough that no sum of such values can overflow to infinity.
pub(super) const MAX_MS: f64 = 1e12;

/// A field value, normalized from the `Visit` callback it arrived by.
#[derive(Debug)]
pub(super) enum FieldValue<'a> {
    U64(u64),
    I64(i64),
    F64(f64),
    Str(&'a str),
    Bool(bool),
}

impl FieldValue<'_> {
    /// An unsigned count or id. Integral floats and numeric strings are accepted.
    pub(super) fn to_u64(&self, issues: &mut IssueSet) -> Option<u64> {
        match *self {
            FieldValue::U64(v) => Some(v),
            FieldValue::I64(v) if v >= 0 => Some(v as u64),
            FieldValue::I64(_) => {
                issues.insert(Issue::NegativeValue);
                None
            }
            FieldValue::F64(v) if v.is_finite() && v >= 0.0 && v.fract() == 0.0 => Some(v as u64),
            FieldValue::F64(v) if v < 0.0 => {
                issues.insert(Issue::NegativeValue);
                None
            }
            FieldValue::Str(s) => match s.trim().parse::<u64>() {
                Ok(v) => Some(v),
                Err(_) if s.trim().parse::<i64>().is_ok_and(|v| v < 0) => {
                    issues.insert(Issue::NegativeValue);
                    None
                }
                Err(_) => {
                    issues.insert(Issue::MistypedField);
                    None
                }
            },
            FieldValue::F64(_) | FieldValue::Bool(_) => {
                issues.insert(Issue::MistypedField);
                None
            }
        }
    }

    /// A non-negative time in milliseconds.
    pub(super) fn to_ms(&self, issues: &mut IssueSet) -> Option<f64> {
        let v = match *self {
            FieldValue::U64(v) => v as f64,
            FieldValue::I64(v) => v as f64,
            FieldValue::F64(v) => v,
            FieldValue::Str(s) => s.trim().parse::<f64>().unwrap_or(f64::NAN),
            FieldValue::Bool(_) => f64::NAN,
        };
        if v.is_nan() || v.is_infinite() {
            issues.insert(Issue::MistypedField);
            None
        } else if v < 0.0 {
            issues.insert(Issue::NegativeValue);
            None
        } else if v > MAX_MS {
            issues.insert(Issue::OutOfRange);
            None
        } else {
            // `-0.0` is a zero, printed as one.
            Some(v + 0.0)
        }
    }

    /// Appends the value as text to `out` (see [`FieldValue::to_text`]).
    pub(super) fn write_text(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = match *self {
            FieldValue::Str(s) => {
                out.push_str(s);
                Ok(())
            }
            FieldValue::U64(v) => write!(out, "{v}"),
            FieldValue::I64(v) => write!(out, "{v}"),
            FieldValue::F64(v) => write!(out, "{v}"),
            FieldValue::Bool(v) => write!(out, "{v}"),
        };
    }

    /// Text (names, ids); numbers are written out.
    pub(super) fn to_text(&self) -> String {
        match *self {
            FieldValue::Str(s) => s.to_owned(),
            FieldValue::U64(v) => v.to_string(),
            FieldValue::I64(v) => v.to_string(),
            FieldValue::F64(v) => v.to_string(),
            FieldValue::Bool(v) => v.to_string(),
        }
    }
}

/// Per-span state that takes the convention's fields.
pub(super) trait SetField {
    /// Applies one field of the convention ([`Known::Other`] never arrives).
    fn set(&mut self, field: Known, value: FieldValue<'_>);
}

/// Adapts a [`SetField`] to `tracing`'s [`Visit`]. A field's meaning is read by its index
/// in its callsite's meanings, worked out once per callsite (see [`meanings_of`]).
pub(super) struct Visitor<'a, T> {
    state: &'a mut T,
    /// The callsite's meanings: `None` before the first field, `Some(None)` if not cached.
    meanings: Option<Option<&'static Meanings>>,
}

impl<'a, T: SetField> Visitor<'a, T> {
    pub(super) fn new(state: &'a mut T) -> Self {
        Self {
            state,
            meanings: None,
        }
    }

    #[inline]
    fn known(&mut self, field: &Field) -> Known {
        let meanings = *self.meanings.get_or_insert_with(|| meanings_of(field));
        let Some(cell) = meanings.and_then(|m| m.get(field.index())) else {
            return Known::of(field.name());
        };
        match Known::ALL.get(usize::from(cell.load(Ordering::Relaxed))) {
            Some(known) => *known,
            None => {
                let known = Known::of(field.name());
                cell.store(known as u8, Ordering::Relaxed);
                known
            }
        }
    }

    #[inline]
    fn set(&mut self, field: &Field, value: FieldValue<'_>) {
        let known = self.known(field);
        if known != Known::Other {
            self.state.set(known, value);
        }
    }
}

impl<T: SetField> Visit for Visitor<'_, T> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field, FieldValue::U64(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, FieldValue::I64(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field, FieldValue::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, FieldValue::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, FieldValue::Str(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `field = %value` and `field = ?value` arrive here; fields the layer ignores
        // (`otel.*`, `gen_ai.*`, the engine's own) are skipped before formatting.
        let known = self.known(field);
        if known != Known::Other {
            let text = format!("{value:?}");
            let text = text
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .unwrap_or(&text);
            self.state.set(known, FieldValue::Str(text));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_of_the_convention_is_known_and_no_other() {
        for name in [
            "stage_id",
            "request_id",
            "units",
            "inter_output_ms",
            "remote_request",
        ] {
            assert_ne!(Known::of(name), Known::Other, "{name}");
        }
        for (i, known) in Known::ALL.iter().enumerate() {
            assert_eq!(*known as usize, i);
        }
        for name in ["otel.name", "gen_ai.system", "stage", ""] {
            assert_eq!(Known::of(name), Known::Other, "{name}");
            assert!(!field::is_known(name));
        }
    }
}
