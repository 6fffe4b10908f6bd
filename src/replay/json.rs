//! OTLP JSON (pdata's encoding, as the Collector's file exporter writes it), decoded span by
//! span: the spans of a line are converted one at a time as the parser reaches them (a line
//! never exists twice in memory as structs), ids decoded from hex in place, strings borrowed
//! from the line unless they hold escapes, 64-bit integers as strings or numbers, and
//! everything the replay does not read skipped without being built: attributes other than
//! the convention's, events other than `omni.output`, links after the first.
//!
//! A value no OTLP attribute can hold (an `intValue` beyond int64, a timestamp that is not
//! a count of ns, a string where a number belongs) spoils only itself: it is kept as
//! [`AttrValue::Invalid`] or a problem of its span, and said. A span without valid ids is
//! left out, and said; the line's other spans are kept.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize as _;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{DecodeError, Decoded};
use crate::replay::model::{self, AttrValue, Output, RawSpan, SpanRec};
use crate::replay::origin::Origin;

/// The spans of one JSON line, appended to `out`.
pub(super) fn decode(line: &[u8], out: &mut Decoded) -> Result<(), DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(line);
    Nested {
        out,
        level: Level::Line,
    }
    .deserialize(&mut de)
    .map_err(DecodeError::Json)?;
    de.end().map_err(DecodeError::Json)
}

/// Where in `{"resourceSpans":[{"scopeSpans":[{"spans":[...]}]}]}` a [`Nested`] is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Line,
    Resource,
    Scope,
}

impl Level {
    /// The key of the list one level down, and that level (`None`: spans).
    fn child(self) -> (&'static str, Option<Level>) {
        match self {
            Level::Line => ("resourceSpans", Some(Level::Resource)),
            Level::Resource => ("scopeSpans", Some(Level::Scope)),
            Level::Scope => ("spans", None),
        }
    }
}

/// An object of one of the three levels above the spans: only its list of the next level
/// is read, the rest skipped.
struct Nested<'o> {
    out: &'o mut Decoded,
    level: Level,
}

impl<'de> DeserializeSeed<'de> for Nested<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Nested<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an OTLP object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (list, next) = self.level.child();
        // A `ResourceSpans`' resource names where its spans were measured (before or
        // after them).
        let resource = (self.level == Level::Resource).then_some("resource");
        let (first, mut origin) = (self.out.spans.len(), Origin::default());
        while let Some(key) = map.next_key_seed(KeyOf(list, resource))? {
            match key {
                Some(Key::List) => {
                    map.next_value_seed(List {
                        out: &mut *self.out,
                        level: next,
                    })?;
                }
                Some(Key::Other) => {
                    map.next_value_seed(ResourcePart {
                        origin: &mut origin,
                        part: Part::Resource,
                    })?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if resource.is_some() {
            self.out.resource(first, origin);
        }
        Ok(())
    }
}

/// A list of the level `level` (`None`: of spans); `null` is an empty list.
struct List<'o> {
    out: &'o mut Decoded,
    level: Option<Level>,
}

impl<'de> DeserializeSeed<'de> for List<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for List<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        match self.level {
            Some(level) => {
                while seq
                    .next_element_seed(Nested {
                        out: &mut *self.out,
                        level,
                    })?
                    .is_some()
                {}
            }
            None => {
                while let Some(span) = seq.next_element::<Span<'de>>()? {
                    self.out.push(convert(span));
                }
            }
        }
        Ok(())
    }
}

/// Which of two names a map key is, if either (read without building it).
struct KeyOf(&'static str, Option<&'static str>);

/// A key [`KeyOf`] looks for: the first name, or the second.
enum Key {
    List,
    Other,
}

impl<'de> DeserializeSeed<'de> for KeyOf {
    type Value = Option<Key>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Key>, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyOf {
    type Value = Option<Key>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Option<Key>, E> {
        Ok(if s == self.0 {
            Some(Key::List)
        } else if Some(s) == self.1 {
            Some(Key::Other)
        } else {
            None
        })
    }
}

/// A part of a `Resource`: the host and process its attributes name are noted in
/// `origin`. Read leniently: what is not where it belongs is skipped, so that a resource
/// never spoils its spans.
struct ResourcePart<'o> {
    origin: &'o mut Origin,
    part: Part,
}

/// Where in `{"attributes":[{"key":..,"value":{"stringValue":..}}]}` a [`ResourcePart`] is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Resource,
    Attributes,
    Attribute,
    Value,
}

impl ResourcePart<'_> {
    fn at(&mut self, part: Part) -> ResourcePart<'_> {
        ResourcePart {
            origin: &mut *self.origin,
            part,
        }
    }
}

impl<'de> DeserializeSeed<'de> for ResourcePart<'_> {
    /// An attribute's string value (at [`Part::Value`]).
    type Value = Option<Cow<'de, str>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ResourcePart<'_> {
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a resource")
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut key, mut value) = (None, None);
        while let Some(k) = map.next_key::<Scalar<'de>>()? {
            let Scalar::Str(k) = k else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            match (self.part, &*k) {
                (Part::Resource, "attributes") => {
                    map.next_value_seed(self.at(Part::Attributes))?;
                }
                (Part::Attribute, "key") => key = Some(map.next_value::<Scalar<'de>>()?),
                (Part::Attribute, "value") => value = map.next_value_seed(self.at(Part::Value))?,
                (Part::Value, "stringValue") => {
                    if let Scalar::Str(s) = map.next_value::<Scalar<'de>>()? {
                        value = Some(s);
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        match (self.part, key, value) {
            (Part::Attribute, Some(Scalar::Str(k)), Some(v)) => {
                self.origin.note(&k, &v);
                Ok(None)
            }
            (Part::Value, _, value) => Ok(value),
            _ => Ok(None),
        }
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Self::Value, A::Error> {
        if self.part == Part::Attributes {
            while seq.next_element_seed(self.at(Part::Attribute))?.is_some() {}
        } else {
            IgnoredAny.visit_seq(seq)?;
        }
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
}

#[derive(serde::Deserialize)]
struct Span<'a> {
    #[serde(rename = "traceId", default)]
    trace_id: Id,
    #[serde(rename = "spanId", default)]
    span_id: Id,
    #[serde(rename = "parentSpanId", default)]
    parent_span_id: Id,
    #[serde(default, borrow)]
    name: Cow<'a, str>,
    #[serde(rename = "startTimeUnixNano", default)]
    start: Nanos,
    #[serde(rename = "endTimeUnixNano", default)]
    end: Nanos,
    #[serde(default, borrow)]
    attributes: Attributes<'a>,
    #[serde(default)]
    events: Outputs,
    #[serde(default)]
    links: FirstLink,
    #[serde(default, borrow)]
    status: Option<Status<'a>>,
}

/// The convention's attributes of a list (the rest skipped), each once (a later one wins).
#[derive(Default)]
struct Attributes<'a>(Vec<(Cow<'a, str>, AttrValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Attributes<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Attributes<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of attributes")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Attributes::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut kept: Vec<(Cow<'a, str>, AttrValue)> = Vec::new();
                while let Some(kv) = seq.next_element::<KeyValue<'a>>()? {
                    if !model::kept(&kv.key) {
                        continue;
                    }
                    let Some(value) = kv.value.as_ref().and_then(AnyValue::value) else {
                        continue;
                    };
                    match kept.iter_mut().find(|(k, _)| *k == kv.key) {
                        Some(slot) => slot.1 = value,
                        None => kept.push((kv.key, value)),
                    }
                }
                Ok(Attributes(kept))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[derive(serde::Deserialize)]
struct KeyValue<'a> {
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(default, borrow)]
    value: Option<AnyValue<'a>>,
}

/// One of the scalar values (arrays, maps and bytes are skipped: the convention has none),
/// each read whatever it holds, so that a bad one is said rather than failing the line.
#[derive(serde::Deserialize)]
struct AnyValue<'a> {
    #[serde(rename = "stringValue", default, borrow)]
    string: Option<Scalar<'a>>,
    #[serde(rename = "intValue", default, borrow)]
    int: Option<Scalar<'a>>,
    #[serde(rename = "doubleValue", default, borrow)]
    double: Option<Scalar<'a>>,
    #[serde(rename = "boolValue", default, borrow)]
    bool: Option<Scalar<'a>>,
}

impl AnyValue<'_> {
    fn value(&self) -> Option<AttrValue> {
        let invalid = |what: String| Some(AttrValue::Invalid(what.into()));
        if let Some(s) = &self.string {
            match s {
                Scalar::Str(s) => Some(AttrValue::Str(Box::from(&**s))),
                other => invalid(format!("a stringValue of {other}")),
            }
        } else if let Some(i) = &self.int {
            match i.integer() {
                Some(i) => match i64::try_from(i) {
                    Ok(i) => Some(AttrValue::Int(i)),
                    Err(_) => invalid(format!("intValue {i} is beyond int64")),
                },
                None => invalid(format!("an intValue of {i}")),
            }
        } else if let Some(d) = &self.double {
            match d.float() {
                Some(d) => Some(AttrValue::Double(d)),
                None => invalid(format!("a doubleValue of {d}")),
            }
        } else {
            match self.bool.as_ref()? {
                Scalar::Bool(b) => Some(AttrValue::Bool(*b)),
                other => invalid(format!("a boolValue of {other}")),
            }
        }
    }
}

/// Any JSON value, kept only if scalar.
enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(Cow<'a, str>),
    /// An array or an object.
    Other,
}

impl Scalar<'_> {
    /// A whole number: an integer, an integral float, or either in a string.
    fn integer(&self) -> Option<i128> {
        match self {
            Scalar::Int(i) => Some(*i),
            // Within ±2^100, where an f64 converts exactly.
            Scalar::Float(f) if f.fract() == 0.0 && f.abs() < 1.267_650_6e30 => Some(*f as i128),
            Scalar::Str(s) => {
                let s = s.trim();
                s.parse::<i128>()
                    .ok()
                    .or_else(|| Scalar::Float(s.parse().ok()?).integer())
            }
            _ => None,
        }
    }

    /// A number, or a number in a string (`NaN`, `Infinity` as pdata writes them).
    fn float(&self) -> Option<f64> {
        match self {
            Scalar::Int(i) => Some(*i as f64),
            Scalar::Float(f) => Some(*f),
            Scalar::Str(s) => match s.trim() {
                "NaN" => Some(f64::NAN),
                "Infinity" => Some(f64::INFINITY),
                "-Infinity" => Some(f64::NEG_INFINITY),
                s => s.parse().ok(),
            },
            _ => None,
        }
    }
}

impl fmt::Display for Scalar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Null => f.write_str("null"),
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x:e}"),
            Scalar::Str(s) => {
                // Said in full up to 40 characters.
                let short: String = s.chars().take(40).collect();
                let more = if short.len() < s.len() { "..." } else { "" };
                write!(f, "{short:?}{more}")
            }
            Scalar::Other => f.write_str("an array or object"),
        }
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                IgnoredAny.visit_seq(seq)?;
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                IgnoredAny.visit_map(map)?;
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A timestamp in ns: a count as a string or a number; anything else is said.
struct Nanos(Result<u64, String>);

impl Default for Nanos {
    fn default() -> Self {
        Nanos(Ok(0))
    }
}

impl<'de> serde::Deserialize<'de> for Nanos {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Scalar::deserialize(d)?;
        Ok(Nanos(match &v {
            Scalar::Null => Ok(0),
            other => other
                .integer()
                .and_then(|i| u64::try_from(i).ok())
                .ok_or_else(|| format!("{other}")),
        }))
    }
}

/// The `omni.output` events of a list (the rest skipped).
#[derive(Default)]
struct Outputs {
    outputs: Vec<Output>,
    problems: Vec<String>,
}

impl<'de> serde::Deserialize<'de> for Outputs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Outputs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of events")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Outputs, E> {
                Ok(Outputs::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Outputs, A::Error> {
                let mut out = Outputs::default();
                while let Some(e) = seq.next_element::<Event<'de>>()? {
                    if !model::is_output(&e.name) {
                        continue;
                    }
                    let time_ns = match e.time.0 {
                        Ok(t) => t,
                        Err(what) => {
                            out.problems
                                .push(format!("an `omni.output` event's time of {what}"));
                            0
                        }
                    };
                    let units = e
                        .attributes
                        .0
                        .iter()
                        .find_map(|(k, v)| (k == crate::convention::field::UNITS).then_some(v));
                    let counted = units.and_then(AttrValue::count);
                    if let (Some(v), None) = (units, counted) {
                        out.problems
                            .push(format!("an `omni.output` event's `units` of {v:?}"));
                    }
                    out.outputs.push(Output {
                        time_ns,
                        units: counted,
                    });
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(serde::Deserialize)]
struct Event<'a> {
    #[serde(rename = "timeUnixNano", default)]
    time: Nanos,
    #[serde(default, borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    attributes: Attributes<'a>,
}

/// The first valid link of a list (a request's run; the rest skipped).
#[derive(Default)]
struct FirstLink(Option<(u128, u64)>);

impl<'de> serde::Deserialize<'de> for FirstLink {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FirstLink;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of links")
            }
            fn visit_unit<E: de::Error>(self) -> Result<FirstLink, E> {
                Ok(FirstLink(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FirstLink, A::Error> {
                let mut first = None;
                while let Some(l) = seq.next_element::<Link>()? {
                    if first.is_none() {
                        first = l.trace_id.trace_id().ok().zip(l.span_id.span_id().ok());
                    }
                }
                Ok(FirstLink(first))
            }
        }
        d.deserialize_any(V)
    }
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
    message: Option<Scalar<'a>>,
}

/// An id, decoded from hex: up to 16 bytes kept, and its length in bytes; `Err` with what
/// it was when it is not hex.
struct Id(Result<([u8; 16], usize), String>);

impl Default for Id {
    fn default() -> Self {
        Id(Ok(([0; 16], 0)))
    }
}

impl Id {
    fn bytes(&self, kind: &str, want: usize) -> Result<&[u8], DecodeError> {
        match &self.0 {
            Ok((bytes, n)) if *n == want => Ok(&bytes[..want]),
            Ok((_, n)) => Err(DecodeError::Span(format!(
                "a {kind} id of {n} bytes ({want} expected)"
            ))),
            Err(what) => Err(DecodeError::Span(format!("a {kind} id of {what}"))),
        }
    }

    fn trace_id(&self) -> Result<u128, DecodeError> {
        let b = self.bytes("trace", 16)?;
        Ok(u128::from_be_bytes(b.try_into().unwrap_or([0; 16])))
    }

    fn span_id(&self) -> Result<u64, DecodeError> {
        let b = self.bytes("span", 8)?;
        Ok(u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
    }

    fn is_empty(&self) -> bool {
        matches!(self.0, Ok((_, 0)))
    }
}

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Scalar::deserialize(d)?;
        let Scalar::Str(s) = &v else {
            return Ok(match v {
                Scalar::Null => Id::default(),
                other => Id(Err(format!("{other}"))),
            });
        };
        let hex = s.as_bytes();
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        if hex.len() % 2 != 0 {
            return Ok(Id(Err(format!("{v} (an odd number of hex digits)"))));
        }
        let mut bytes = [0_u8; 16];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let (Some(hi), Some(lo)) = (digit(pair[0]), digit(pair[1])) else {
                return Ok(Id(Err(format!("{v} (not hex)"))));
            };
            if let Some(b) = bytes.get_mut(i) {
                *b = hi << 4 | lo;
            }
        }
        Ok(Id(Ok((bytes, hex.len() / 2))))
    }
}

/// A status code: a number (`2`), or its name (`STATUS_CODE_ERROR`); anything else is
/// unset.
fn status_code<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(match Scalar::deserialize(d)? {
        Scalar::Str(s) => match &*s {
            "STATUS_CODE_OK" => 1,
            "STATUS_CODE_ERROR" => 2,
            other => other.parse().unwrap_or(0),
        },
        other => other
            .integer()
            .and_then(|i| i64::try_from(i).ok())
            .unwrap_or(0),
    })
}

/// The status code of an error (`STATUS_CODE_ERROR`).
const ERROR: i64 = 2;

fn convert(span: Span<'_>) -> Result<SpanRec, DecodeError> {
    let trace = span.trace_id.trace_id()?;
    let span_id = span.span_id.span_id()?;
    let parent_id = match span.parent_span_id.is_empty() {
        true => None,
        false => Some(span.parent_span_id.span_id()?).filter(|id| *id != 0),
    };
    let Outputs {
        outputs,
        mut problems,
    } = span.events;
    let mut bad_time = false;
    let mut time = |which: &str, t: &Nanos| match &t.0 {
        Ok(t) => *t,
        Err(what) => {
            problems.push(format!("a {which} of {what} (not a count of ns)"));
            bad_time = true;
            0
        }
    };
    let (start_ns, end_ns) = (
        time("startTimeUnixNano", &span.start),
        time("endTimeUnixNano", &span.end),
    );
    let error = span
        .status
        .as_ref()
        .filter(|s| s.code == ERROR)
        .map(|s| match &s.message {
            Some(Scalar::Str(m)) => &**m,
            _ => "",
        });
    Ok(SpanRec::from_raw(RawSpan {
        trace_id: trace,
        span_id,
        parent_id,
        name: &span.name,
        start_ns,
        end_ns,
        attributes: span
            .attributes
            .0
            .iter()
            .map(|(k, v)| (&**k, v.clone()))
            .collect(),
        error,
        links: span.links.0.into_iter().collect(),
        outputs,
        problems,
        bad_time,
    }))
}
