//! Reading `tracing` field values into the per-span state, whatever type the engine used.

use std::fmt;

use tracing_core::field::{Field, Visit};

use crate::diagnostics::{Issue, IssueSet};

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
    #[inline]
    pub(super) fn to_u64(&self, issues: &mut IssueSet) -> Option<u64> {
        match *self {
            FieldValue::U64(v) => Some(v),
            _ => self.to_u64_slow(issues),
        }
    }

    /// [`FieldValue::to_u64`] of anything but a `u64`.
    #[inline(never)]
    fn to_u64_slow(&self, issues: &mut IssueSet) -> Option<u64> {
        match *self {
            FieldValue::U64(v) => Some(v),
            FieldValue::I64(v) if v >= 0 => Some(v as u64),
            FieldValue::I64(_) => {
                issues.insert(Issue::NegativeValue);
                None
            }
            // 2^64 and above do not fit: said, not saturated to `u64::MAX`.
            FieldValue::F64(v) if v >= 18_446_744_073_709_551_616.0 => {
                issues.insert(Issue::OutOfRange);
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
        let mut text = String::new();
        self.write_text(&mut text);
        text
    }
}

/// Per-span state that takes the convention's fields.
pub(super) trait SetField {
    /// Applies one field; unknown names are ignored (e.g. `gen_ai.*`).
    fn set(&mut self, name: &str, value: FieldValue<'_>);
}

/// Adapts a [`SetField`] to `tracing`'s [`Visit`].
pub(super) struct Visitor<'a, T>(pub(super) &'a mut T);

impl<T: SetField> Visit for Visitor<'_, T> {
    #[inline]
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.set(field.name(), FieldValue::U64(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.set(field.name(), FieldValue::I64(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.set(field.name(), FieldValue::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.set(field.name(), FieldValue::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.set(field.name(), FieldValue::Str(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `field = %value` and `field = ?value` arrive here; fields the layer ignores
        // (`otel.*`, `gen_ai.*`, the engine's own) are skipped before formatting.
        if crate::convention::field::is_known(field.name()) {
            let text = format!("{value:?}");
            let text = text
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .unwrap_or(&text);
            self.0.set(field.name(), FieldValue::Str(text));
        }
    }
}
