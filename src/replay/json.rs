//! OTLP JSON (pdata's encoding, as the Collector's file exporter writes it) into borrowed
//! structs: ids decoded from hex in place, strings borrowed from the line unless they hold
//! escapes, 64-bit integers as strings or numbers, everything the replay does not read
//! skipped without being built.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};

use super::DecodeError;
use crate::replay::model::{self, AttrValue, Output, RawSpan, SpanRec};

#[derive(serde::Deserialize)]
pub(super) struct Line<'a> {
    #[serde(rename = "resourceSpans", default, borrow)]
    pub(super) resource_spans: Vec<ResourceSpans<'a>>,
}

#[derive(serde::Deserialize)]
pub(super) struct ResourceSpans<'a> {
    #[serde(rename = "scopeSpans", default, borrow)]
    pub(super) scope_spans: Vec<ScopeSpans<'a>>,
}

#[derive(serde::Deserialize)]
pub(super) struct ScopeSpans<'a> {
    #[serde(default, borrow)]
    pub(super) spans: Vec<Span<'a>>,
}

#[derive(serde::Deserialize)]
pub(super) struct Span<'a> {
    #[serde(rename = "traceId", default)]
    trace_id: Id,
    #[serde(rename = "spanId", default)]
    span_id: Id,
    #[serde(rename = "parentSpanId", default)]
    parent_span_id: Id,
    #[serde(default, borrow)]
    name: Cow<'a, str>,
    #[serde(rename = "startTimeUnixNano", default, deserialize_with = "int")]
    start: u64,
    #[serde(rename = "endTimeUnixNano", default, deserialize_with = "int")]
    end: u64,
    #[serde(default, borrow)]
    attributes: Vec<KeyValue<'a>>,
    #[serde(default, borrow)]
    events: Vec<Event<'a>>,
    #[serde(default)]
    links: Vec<Link>,
    #[serde(default, borrow)]
    status: Option<Status<'a>>,
}

#[derive(serde::Deserialize)]
struct KeyValue<'a> {
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(default, borrow)]
    value: Option<AnyValue<'a>>,
}

/// One of the scalar values (arrays, maps and bytes are skipped: the convention has none).
#[derive(serde::Deserialize)]
struct AnyValue<'a> {
    #[serde(rename = "stringValue", default, borrow)]
    string: Option<Cow<'a, str>>,
    #[serde(rename = "intValue", default, deserialize_with = "opt_int")]
    int: Option<i64>,
    #[serde(rename = "doubleValue", default, deserialize_with = "opt_float")]
    double: Option<f64>,
    #[serde(rename = "boolValue", default)]
    bool: Option<bool>,
}

impl AnyValue<'_> {
    fn value(&self) -> Option<AttrValue> {
        if let Some(s) = &self.string {
            Some(AttrValue::Str(Box::from(&**s)))
        } else if let Some(i) = self.int {
            Some(AttrValue::Int(i))
        } else if let Some(d) = self.double {
            Some(AttrValue::Double(d))
        } else {
            self.bool.map(AttrValue::Bool)
        }
    }
}

#[derive(serde::Deserialize)]
struct Event<'a> {
    #[serde(rename = "timeUnixNano", default, deserialize_with = "int")]
    time: u64,
    #[serde(default, borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    attributes: Vec<KeyValue<'a>>,
}

#[derive(serde::Deserialize)]
struct Link {
    #[serde(rename = "traceId", default)]
    trace_id: Id,
    #[serde(rename = "spanId", default)]
    span_id: Id,
}

#[derive(serde::Deserialize)]
struct Status<'a> {
    #[serde(default, deserialize_with = "status_code")]
    code: i64,
    #[serde(default, borrow)]
    message: Cow<'a, str>,
}

/// An id, decoded from hex: up to 16 bytes kept, and its length in bytes.
#[derive(Default)]
struct Id {
    bytes: [u8; 16],
    len: usize,
}

impl Id {
    fn trace_id(&self) -> Result<u128, DecodeError> {
        match self.len {
            16 => Ok(u128::from_be_bytes(self.bytes)),
            n => Err(DecodeError::Span(format!(
                "a trace id of {n} bytes (16 expected)"
            ))),
        }
    }

    fn span_id(&self) -> Result<u64, DecodeError> {
        match self.len {
            8 => {
                let mut b = [0_u8; 8];
                b.copy_from_slice(&self.bytes[..8]);
                Ok(u64::from_be_bytes(b))
            }
            n => Err(DecodeError::Span(format!(
                "a span id of {n} bytes (8 expected)"
            ))),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a hex id")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Id, E> {
                let hex = s.as_bytes();
                if hex.len() % 2 != 0 {
                    return Err(E::custom(format!("an odd number of hex digits: {s:?}")));
                }
                let digit = |c: u8| match c {
                    b'0'..=b'9' => Ok(c - b'0'),
                    b'a'..=b'f' => Ok(c - b'a' + 10),
                    b'A'..=b'F' => Ok(c - b'A' + 10),
                    _ => Err(E::custom(format!("not a hex id: {s:?}"))),
                };
                let mut id = Id {
                    bytes: [0; 16],
                    len: hex.len() / 2,
                };
                for (i, pair) in hex.chunks_exact(2).enumerate() {
                    let byte = digit(pair[0])? << 4 | digit(pair[1])?;
                    if let Some(b) = id.bytes.get_mut(i) {
                        *b = byte;
                    }
                }
                Ok(id)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Id, E> {
                Ok(Id::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// A number, or a number in a string (pdata writes 64-bit integers as strings).
enum Num {
    Int(i128),
    Float(f64),
}

fn num<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Num>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<Num>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number, or a number in a string")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(Num::Int(v.into())))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(Num::Int(v.into())))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(Num::Float(v)))
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            let s = s.trim();
            if let Ok(i) = s.parse::<i128>() {
                return Ok(Some(Num::Int(i)));
            }
            match s {
                "NaN" => Ok(Some(Num::Float(f64::NAN))),
                "Infinity" => Ok(Some(Num::Float(f64::INFINITY))),
                "-Infinity" => Ok(Some(Num::Float(f64::NEG_INFINITY))),
                _ => s
                    .parse::<f64>()
                    .map(|f| Some(Num::Float(f)))
                    .map_err(|_| E::custom(format!("not a number: {s:?}"))),
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

fn int<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match num(d)? {
        None => Ok(0),
        Some(Num::Int(i)) => u64::try_from(i).map_err(|_| de::Error::custom("a time out of range")),
        Some(Num::Float(_)) => Err(de::Error::custom("a time that is not an integer")),
    }
}

fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match num(d)? {
        None => Ok(None),
        Some(Num::Int(i)) => i64::try_from(i)
            .map(Some)
            .map_err(|_| de::Error::custom("an intValue out of range")),
        Some(Num::Float(_)) => Err(de::Error::custom("an intValue that is not an integer")),
    }
}

fn opt_float<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(num(d)?.map(|n| match n {
        Num::Int(i) => i as f64,
        Num::Float(f) => f,
    }))
}

/// A status code: a number (`2`), or its name (`STATUS_CODE_ERROR`).
fn status_code<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a status code")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            Ok(i64::try_from(v).unwrap_or(0))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<i64, E> {
            Ok(match s {
                "STATUS_CODE_OK" => 1,
                "STATUS_CODE_ERROR" => 2,
                other => other.parse().unwrap_or(0),
            })
        }
        fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
            Ok(0)
        }
    }
    d.deserialize_any(V)
}

/// The status code of an error (`STATUS_CODE_ERROR`).
const ERROR: i64 = 2;

fn attributes<'s>(kvs: &'s [KeyValue<'_>]) -> Vec<(&'s str, AttrValue)> {
    kvs.iter()
        .filter(|kv| model::kept(&kv.key))
        .filter_map(|kv| Some((&*kv.key, kv.value.as_ref()?.value()?)))
        .collect()
}

pub(super) fn convert(span: &Span<'_>) -> Result<SpanRec, DecodeError> {
    let trace = span.trace_id.trace_id()?;
    let parent_id = match span.parent_span_id.len {
        0 => None,
        _ => Some(span.parent_span_id.span_id()?).filter(|id| *id != 0),
    };
    let outputs = span
        .events
        .iter()
        .filter(|e| model::is_output(&e.name))
        .map(|e| Output {
            time_ns: e.time,
            units: e
                .attributes
                .iter()
                .find(|kv| kv.key == crate::convention::field::UNITS)
                .and_then(|kv| kv.value.as_ref()?.value()?.count()),
        })
        .collect();
    let error = span
        .status
        .as_ref()
        .filter(|s| s.code == ERROR)
        .map(|s| &*s.message);
    let links = span
        .links
        .iter()
        .filter_map(|l| Some((l.trace_id.trace_id().ok()?, l.span_id.span_id().ok()?)))
        .collect();
    Ok(SpanRec::from_raw(RawSpan {
        trace_id: trace,
        span_id: span.span_id.span_id()?,
        parent_id,
        name: &span.name,
        start_ns: span.start,
        end_ns: span.end,
        attributes: attributes(&span.attributes),
        error,
        links,
        outputs,
    }))
}
