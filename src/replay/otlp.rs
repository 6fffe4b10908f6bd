//! OTLP trace data (`TracesData`, the same message as `ExportTraceServiceRequest`) in its
//! two encodings, JSON (one object per line, as the Collector's file exporter writes it) and
//! protobuf, to [`SpanRec`]s.
//!
//! Both are decoded span by span, keeping only what the replay reads, so that the memory a
//! record costs is about that of the spans kept, whatever the record holds (a protobuf
//! decoder that builds the whole message would hold every attribute of every span, several
//! times the record's size). A span that cannot be read (ids of the wrong length, a broken
//! sub-message) is left out and said; the record's other spans are kept.

#[path = "json.rs"]
mod json;

use super::model::{self, AttrValue, Output, RawSpan, SpanRec};
use super::origin::Origin;

/// Why a record is not trace data.
#[derive(Debug)]
pub(crate) enum DecodeError {
    Json(serde_json::Error),
    Proto(String),
    /// The record is valid, but a span in it is not: an id of the wrong length.
    Span(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Json(e) => write!(f, "not OTLP JSON: {e}"),
            DecodeError::Proto(e) => write!(f, "not OTLP protobuf: {e}"),
            DecodeError::Span(e) => write!(f, "not an OTLP span: {e}"),
        }
    }
}

/// The spans of one record, and the spans of it left out.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub(crate) spans: Vec<SpanRec>,
    /// Where each span was measured: its resource's host and process (one per span).
    pub(crate) origins: Vec<Origin>,
    /// The most spans kept of one record.
    max_spans: usize,
    /// Spans that could not be read, or were beyond `max_spans`.
    pub(crate) dropped: u64,
    /// Why the first of them was left out.
    pub(crate) first_dropped: Option<String>,
}

impl Decoded {
    /// Keeps at most `max_spans` spans.
    pub(crate) fn new(max_spans: usize) -> Self {
        Self {
            spans: Vec::new(),
            origins: Vec::new(),
            max_spans,
            dropped: 0,
            first_dropped: None,
        }
    }

    fn push(&mut self, span: Result<SpanRec, DecodeError>) {
        match span {
            Ok(rec) if self.spans.len() < self.max_spans => {
                self.spans.push(rec);
                self.origins.push(Origin::default());
            }
            Ok(_) => {
                let max = self.max_spans;
                self.drop_span(move || {
                    format!(
                        "the record holds more than {max} spans, more than a collector's \
                         export of its size (a forged file?)"
                    )
                });
            }
            Err(e) => self.drop_span(|| e.to_string()),
        }
    }

    /// The spans pushed since `first` (a `ResourceSpans`') were measured at `origin`; the
    /// resource may come before or after its spans.
    fn resource(&mut self, first: usize, origin: Origin) {
        if origin != Origin::default() {
            for o in self.origins.iter_mut().skip(first) {
                *o = origin;
            }
        }
    }

    /// The spans, each with where it was measured.
    pub(crate) fn into_spans(self) -> Vec<(SpanRec, Origin)> {
        self.spans.into_iter().zip(self.origins).collect()
    }

    fn drop_span(&mut self, why: impl FnOnce() -> String) {
        self.dropped += 1;
        if self.first_dropped.is_none() {
            self.first_dropped = Some(why());
        }
    }
}

/// The spans of one JSON line (`{"resourceSpans":[...]}`, pdata's JSON: camelCase, hex ids,
/// 64-bit integers as strings or numbers). Lines of other signals (`resourceLogs`,
/// `resourceMetrics`) in the same file hold no spans and give none.
pub(crate) fn decode_json(line: &[u8], out: &mut Decoded) -> Result<(), DecodeError> {
    json::decode(line, out)
}

/// The spans of one protobuf `TracesData` (or `ExportTraceServiceRequest`) message.
pub(crate) fn decode_proto(message: &[u8], out: &mut Decoded) -> Result<(), DecodeError> {
    let mut data = Wire(message);
    let record = |e: String| DecodeError::Proto(e);
    while let Some((field, wire)) = data.key().map_err(record)? {
        match field {
            1 => {
                let mut resource = Wire(data.len_delimited(wire).map_err(record)?);
                let (first, mut origin) = (out.spans.len(), Origin::default());
                while let Some((field, wire)) = resource.key().map_err(record)? {
                    match field {
                        1 => {
                            let message = resource.len_delimited(wire).map_err(record)?;
                            proto_resource(message, &mut origin).map_err(record)?;
                        }
                        2 => {
                            let mut scope = Wire(resource.len_delimited(wire).map_err(record)?);
                            while let Some((field, wire)) = scope.key().map_err(record)? {
                                match field {
                                    2 => {
                                        let span = scope.len_delimited(wire).map_err(record)?;
                                        out.push(proto_span(span).map_err(DecodeError::Span));
                                    }
                                    _ => scope.skip(wire).map_err(record)?,
                                }
                            }
                        }
                        _ => resource.skip(wire).map_err(record)?,
                    }
                }
                out.resource(first, origin);
            }
            _ => data.skip(wire).map_err(record)?,
        }
    }
    Ok(())
}

/// A `Resource` message: the host and process its attributes name.
fn proto_resource(message: &[u8], origin: &mut Origin) -> Result<(), String> {
    let mut resource = Wire(message);
    while let Some((field, wire)) = resource.key()? {
        match field {
            1 => {
                if let Some((k, AttrValue::Str(v))) = key_value(resource.len_delimited(wire)?)? {
                    origin.note(k, &v);
                }
            }
            _ => resource.skip(wire)?,
        }
    }
    Ok(())
}

/// Protobuf wire types.
const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

/// Protobuf's wire format over a message, read field by field.
struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some((&b, rest)) = self.0.split_first() else {
                return Err("a varint cut short".into());
            };
            self.0 = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint of more than 10 bytes".into())
    }

    /// The next field's number and wire type; `None` at the end.
    fn key(&mut self) -> Result<Option<(u64, u8)>, String> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let (field, wire) = (key >> 3, (key & 7) as u8);
        if field == 0 {
            return Err("a field number of 0".into());
        }
        Ok(Some((field, wire)))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let n = usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.0.len())
            .ok_or_else(|| format!("a field of {n} bytes where {} are left", self.0.len()))?;
        let (field, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(field)
    }

    fn len_delimited(&mut self, wire: u8) -> Result<&'a [u8], String> {
        if wire != LEN {
            return Err(format!("wire type {wire} where a message or bytes belong"));
        }
        let n = self.varint()?;
        self.take(n)
    }

    fn fixed64(&mut self, wire: u8) -> Result<u64, String> {
        if wire != I64 {
            return Err(format!("wire type {wire} where a fixed64 belongs"));
        }
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }

    fn int(&mut self, wire: u8) -> Result<u64, String> {
        if wire != VARINT {
            return Err(format!("wire type {wire} where a varint belongs"));
        }
        self.varint()
    }

    fn skip(&mut self, wire: u8) -> Result<(), String> {
        match wire {
            VARINT => self.varint().map(drop),
            I64 => self.take(8).map(drop),
            LEN => {
                let n = self.varint()?;
                self.take(n).map(drop)
            }
            I32 => self.take(4).map(drop),
            other => Err(format!("wire type {other} (groups are not OTLP)")),
        }
    }
}

fn trace_id(bytes: &[u8]) -> Result<u128, String> {
    <[u8; 16]>::try_from(bytes)
        .map(u128::from_be_bytes)
        .map_err(|_| format!("a trace id of {} bytes (16 expected)", bytes.len()))
}

fn span_id(bytes: &[u8]) -> Result<u64, String> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| format!("a span id of {} bytes (8 expected)", bytes.len()))
}

/// A `KeyValue`: its key and scalar value (`None`: absent, or an array, a map or bytes);
/// a key that is not UTF-8 is `None` (no field of the convention).
fn key_value(message: &[u8]) -> Result<Option<(&str, AttrValue)>, String> {
    let (mut key, mut value) = (None, None);
    let mut kv = Wire(message);
    while let Some((field, wire)) = kv.key()? {
        match field {
            1 => key = std::str::from_utf8(kv.len_delimited(wire)?).ok(),
            2 => {
                // `AnyValue`: a oneof, the last one given wins.
                let mut any = Wire(kv.len_delimited(wire)?);
                value = None;
                while let Some((field, wire)) = any.key()? {
                    value = match field {
                        1 => Some(match std::str::from_utf8(any.len_delimited(wire)?) {
                            Ok(s) => AttrValue::Str(s.into()),
                            Err(_) => AttrValue::Invalid("a stringValue that is not UTF-8".into()),
                        }),
                        2 => Some(AttrValue::Bool(any.int(wire)? != 0)),
                        3 => Some(AttrValue::Int(any.int(wire)? as i64)),
                        4 => Some(AttrValue::Double(f64::from_bits(any.fixed64(wire)?))),
                        _ => {
                            any.skip(wire)?;
                            None
                        }
                    };
                }
            }
            _ => kv.skip(wire)?,
        }
    }
    Ok(key.zip(value))
}

/// One `Span` message, read field by field (the last of a repeated scalar wins, as in
/// protobuf).
fn proto_span(message: &[u8]) -> Result<SpanRec, String> {
    let mut span = Wire(message);
    let (mut trace, mut id, mut parent): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    let mut name: &[u8] = &[];
    let (mut start_ns, mut end_ns) = (0, 0);
    let mut attributes: Vec<(&str, AttrValue)> = Vec::new();
    let mut outputs = Vec::new();
    let mut link = None;
    let mut error = None;
    let mut problems = Vec::new();
    while let Some((field, wire)) = span.key()? {
        match field {
            1 => trace = span.len_delimited(wire)?,
            2 => id = span.len_delimited(wire)?,
            4 => parent = span.len_delimited(wire)?,
            5 => name = span.len_delimited(wire)?,
            7 => start_ns = span.fixed64(wire)?,
            8 => end_ns = span.fixed64(wire)?,
            9 => {
                if let Some((k, v)) = key_value(span.len_delimited(wire)?)? {
                    if model::kept(k) {
                        model::keep(&mut attributes, k, v);
                    }
                }
            }
            11 => {
                if let Some(output) = proto_output(span.len_delimited(wire)?, &mut problems)? {
                    outputs.push(output);
                }
            }
            13 => {
                let first = proto_link(span.len_delimited(wire)?)?;
                if link.is_none() {
                    link = first;
                }
            }
            15 => error = proto_error(span.len_delimited(wire)?)?,
            _ => span.skip(wire)?,
        }
    }
    let name = String::from_utf8_lossy(name);
    let error = error.map(String::from_utf8_lossy);
    Ok(SpanRec::from_raw(RawSpan {
        trace_id: trace_id(trace)?,
        span_id: span_id(id)?,
        parent_id: match parent {
            [] => None,
            bytes => Some(span_id(bytes)?).filter(|id| *id != 0),
        },
        name: &name,
        start_ns,
        end_ns,
        attributes,
        error: error.as_deref(),
        links: link.into_iter().collect(),
        outputs,
        problems,
        bad_time: false,
    }))
}

/// An `Event` message: an `omni.output` (its time and `units`, a `units` that is not a
/// count said in `problems`), or `None` for any other event.
fn proto_output(message: &[u8], problems: &mut Vec<String>) -> Result<Option<Output>, String> {
    let mut event = Wire(message);
    let (mut time_ns, mut output, mut units) = (0, false, None);
    while let Some((field, wire)) = event.key()? {
        match field {
            1 => time_ns = event.fixed64(wire)?,
            2 => output = model::is_output_bytes(event.len_delimited(wire)?),
            3 => {
                if let Some((k, v)) = key_value(event.len_delimited(wire)?)? {
                    if k == crate::convention::field::UNITS {
                        units = Some(v);
                    }
                }
            }
            _ => event.skip(wire)?,
        }
    }
    if !output {
        return Ok(None);
    }
    let counted = units.as_ref().and_then(AttrValue::count);
    if let (Some(v), None) = (&units, counted) {
        problems.push(format!("an `omni.output` event's `units` of {v:?}"));
    }
    Ok(Some(Output {
        time_ns,
        units: counted,
    }))
}

/// A `Link` message: the trace and span it points to, if both are valid.
fn proto_link(message: &[u8]) -> Result<Option<(u128, u64)>, String> {
    let mut l = Wire(message);
    let (mut t, mut s): (&[u8], &[u8]) = (&[], &[]);
    while let Some((field, wire)) = l.key()? {
        match field {
            1 => t = l.len_delimited(wire)?,
            2 => s = l.len_delimited(wire)?,
            _ => l.skip(wire)?,
        }
    }
    Ok(trace_id(t).ok().zip(span_id(s).ok()))
}

/// A `Status` message: its message when its code is ERROR.
fn proto_error(message: &[u8]) -> Result<Option<&[u8]>, String> {
    let mut status = Wire(message);
    let (mut code, mut message): (u64, &[u8]) = (0, &[]);
    while let Some((field, wire)) = status.key()? {
        match field {
            2 => message = status.len_delimited(wire)?,
            3 => code = status.int(wire)?,
            _ => status.skip(wire)?,
        }
    }
    // STATUS_CODE_ERROR.
    Ok((code == 2).then_some(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convention::SpanKind;
    use opentelemetry_proto::tonic::trace::v1::TracesData;

    /// A line as the Collector's file exporter writes it (pdata's JSON: camelCase, hex ids,
    /// 64-bit integers as strings, enums as numbers).
    const LINE: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"engine"}}]},"scopeSpans":[{"scope":{"name":"omni"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b173","name":"stage 0 thinker","kind":1,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000","attributes":[{"key":"stage_id","value":{"intValue":"0"}},{"key":"num_tokens_in","value":{"intValue":"12"}},{"key":"stage_gen_time_ms","value":{"doubleValue":999.5}},{"key":"stage_name","value":{"stringValue":"thinker"}},{"key":"gen_ai.system","value":{"stringValue":"x"}}],"events":[{"timeUnixNano":"1544712660500000000","name":"omni.output","attributes":[{"key":"units","value":{"intValue":"8"}}]},{"timeUnixNano":"1544712660600000000","name":"decoding"}],"status":{}}]}]}]}"#;

    /// A failed request with a link, a repeated attribute and an output without units.
    const REQUEST: &str = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b173","name":"omni.request","startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712662000000000","attributes":[{"key":"request_id","value":{"stringValue":"r-0"}},{"key":"http.route","value":{"stringValue":"/v1"}},{"key":"request_id","value":{"stringValue":"r-1"}}],"links":[{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"00f067aa0ba902b7"},{"traceId":"1af7651916cd43dd8448eb211c80319c","spanId":"10f067aa0ba902b7"}],"events":[{"timeUnixNano":"1544712660500000000","name":"omni.output"}],"status":{"code":2,"message":"boom"}}]}]}]}"#;

    fn json(line: &[u8]) -> Result<Decoded, DecodeError> {
        let mut out = Decoded::new(usize::MAX);
        decode_json(line, &mut out).map(|()| out)
    }

    fn proto(message: &[u8]) -> Result<Decoded, DecodeError> {
        let mut out = Decoded::new(usize::MAX);
        decode_proto(message, &mut out).map(|()| out)
    }

    fn spans(line: &str) -> Vec<SpanRec> {
        let decoded = json(line.as_bytes()).expect("valid");
        assert_eq!(decoded.dropped, 0, "{:?}", decoded.first_dropped);
        decoded.spans
    }

    #[test]
    fn collector_json_lines_decode() {
        let spans = spans(LINE);
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!(s.trace_id, 0x5b8efff798038103d269b633813fc60c);
        assert_eq!(s.span_id, 0xeee19b7ec3c1b174);
        assert_eq!(s.parent_id, Some(0xeee19b7ec3c1b173));
        assert_eq!(s.kind, Some(SpanKind::Stage));
        assert_eq!(s.end_ns - s.start_ns, 1_000_000_000);
        let keys: Vec<&str> = s.fields.iter().map(|(k, _)| &**k).collect();
        assert_eq!(
            keys,
            [
                "stage_id",
                "num_tokens_in",
                "stage_gen_time_ms",
                "stage_name"
            ]
        );
        assert_eq!(
            s.outputs,
            [Output {
                time_ns: 1544712660500000000,
                units: Some(8)
            }]
        );
        assert!(s.problem.is_none());
    }

    #[test]
    fn a_repeated_attribute_is_kept_once_and_only_the_first_link() {
        let s = &spans(REQUEST)[0];
        assert_eq!(s.kind, Some(SpanKind::Request));
        assert_eq!(
            s.fields[0],
            ("request_id".into(), AttrValue::Str("r-1".into()))
        );
        assert_eq!(
            s.fields.iter().filter(|(k, _)| k == "request_id").count(),
            1
        );
        assert_eq!(
            s.links,
            [(0x0af7651916cd43dd8448eb211c80319c, 0x00f067aa0ba902b7)]
        );
        assert_eq!(s.outputs[0].units, None);
    }

    #[test]
    fn other_signals_and_a_bad_span_among_good_ones() {
        assert!(
            json(br#"{"resourceLogs":[]}"#)
                .expect("skipped")
                .spans
                .is_empty()
        );
        // A span with a short id is left out; the other span of the line is kept.
        let two = LINE.replace(
            r#""status":{}}]"#,
            &format!(
                r#""status":{{}}}},{}]"#,
                r#"{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b","name":"x"}"#
            ),
        );
        let decoded = json(two.as_bytes()).expect("the line is read");
        assert_eq!((decoded.spans.len(), decoded.dropped), (1, 1));
        assert_eq!(
            decoded.first_dropped.as_deref(),
            Some("not an OTLP span: a span id of 3 bytes (8 expected)")
        );
        assert!(matches!(
            json(b"{\"resourceSpans\": 3}"),
            Err(DecodeError::Json(_))
        ));
    }

    #[test]
    fn a_bad_value_spoils_only_itself() {
        let line = LINE
            .replace(
                r#"{"intValue":"12"}"#,
                r#"{"intValue":"99999999999999999999"}"#,
            )
            .replace(
                r#"{"doubleValue":999.5}"#,
                r#"{"doubleValue":"fast"}},{"key":"num_tokens_out","value":{"doubleValue":1e308}"#,
            );
        let s = &spans(&line)[0];
        let keys: Vec<&str> = s.fields.iter().map(|(k, _)| &**k).collect();
        assert_eq!(keys, ["stage_id", "stage_name"]);
        let problem = s.problem.as_deref().expect("said");
        assert_eq!(problem.values, 3);
        assert_eq!(
            problem.said,
            [
                "`num_tokens_in`: intValue 99999999999999999999 is beyond int64",
                r#"`stage_gen_time_ms`: a doubleValue of "fast""#,
                "`num_tokens_out` = 1e308 is beyond what a count holds (2^64)"
            ]
        );
        assert!(!problem.bad_time);
        // Timestamps: unreadable, or too far apart.
        let line = LINE.replace(r#""1544712660000000000""#, r#""-5""#);
        let s = &spans(&line)[0];
        let problem = s.problem.as_deref().expect("said");
        assert!(problem.bad_time);
        assert_eq!(
            problem.said,
            [r#"a startTimeUnixNano of "-5" (not a count of ns)"#]
        );
        assert_eq!(
            (s.start_ns, s.end_ns),
            (1544712661000000000, 1544712661000000000)
        );
        let line = LINE.replace(r#""1544712660000000000""#, r#""1""#);
        let s = &spans(&line)[0];
        assert!(s.problem.as_deref().is_some_and(|p| p.bad_time));
        assert_eq!((s.start_ns, s.end_ns), (1, 1));
    }

    #[test]
    fn protobuf_decodes_the_same() {
        use prost::Message as _;
        for line in [LINE, REQUEST] {
            let data: TracesData = serde_json::from_str(line).expect("json");
            let decoded = proto(&data.encode_to_vec()).expect("valid");
            assert_eq!(decoded.dropped, 0);
            assert_eq!(format!("{:?}", decoded.spans), format!("{:?}", spans(line)));
        }
        assert!(proto(&[0xff, 0xff, 0xff]).is_err());
        // A broken span is left out, the record read.
        let mut data: TracesData = serde_json::from_str(LINE).expect("json");
        data.resource_spans[0].scope_spans[0].spans[0].span_id = vec![1, 2];
        let decoded = proto(&data.encode_to_vec()).expect("valid");
        assert_eq!((decoded.spans.len(), decoded.dropped), (0, 1));
        // Spans beyond the record's share are left out, said.
        let line = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{0},{0},{0}]}}]}}]}}"#,
            r#"{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}"#
        );
        let mut out = Decoded::new(2);
        decode_json(line.as_bytes(), &mut out).expect("valid");
        assert_eq!((out.spans.len(), out.dropped), (2, 1));
        assert!(
            out.first_dropped
                .is_some_and(|w| w.contains("more than 2 spans"))
        );
    }

    /// Each span gets its resource's host and process, in either encoding, whether the
    /// resource comes before its spans or after them; a resource that is not what it
    /// should be names none and spoils nothing.
    #[test]
    fn spans_know_their_resources_host_and_process() {
        use crate::replay::origin::{HOST_NAME, SERVICE_INSTANCE_ID};
        use prost::Message as _;
        let span = r#"{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}"#;
        let named = r#"{"attributes":[{"key":"service.name","value":{"stringValue":"x"}},
            {"key":"host.name","value":{"stringValue":"gpu-7"}},
            {"key":"service.instance.id","value":{"stringValue":"4f1c"}},
            {"key":"process.command_args","value":{"arrayValue":{"values":[]}}}]}"#;
        let line = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{span},{span}]}}],"resource":{named}}},
                {{"resource":{{"attributes":[{{"key":"host.name","value":{{"stringValue":"gpu-8"}}}}]}},"scopeSpans":[{{"spans":[{span}]}}]}},
                {{"scopeSpans":[{{"spans":[{span}]}}]}}]}}"#
        )
        .replace('\n', "");
        let mut gpu7 = Origin::default();
        gpu7.note(HOST_NAME, "gpu-7");
        gpu7.note(SERVICE_INSTANCE_ID, "4f1c");
        let mut gpu8 = Origin::default();
        gpu8.note(HOST_NAME, "gpu-8");
        let expected = [gpu7, gpu7, gpu8, Origin::default()];
        let decoded = json(line.as_bytes()).expect("valid");
        assert_eq!(decoded.origins, expected);
        let data: TracesData = serde_json::from_str(&line).expect("json");
        let decoded = proto(&data.encode_to_vec()).expect("valid");
        assert_eq!(decoded.origins, expected);
        assert_eq!(decoded.into_spans().len(), 4);
        for resource in [
            "3",
            "null",
            "[1,{}]",
            r#"{"attributes":7}"#,
            r#"{"attributes":[1,{"key":2}]}"#,
        ] {
            let line = format!(
                r#"{{"resourceSpans":[{{"resource":{resource},"scopeSpans":[{{"spans":[{span}]}}]}}]}}"#
            );
            let decoded = json(line.as_bytes()).expect(resource);
            assert_eq!(decoded.origins, [Origin::default()], "{resource}");
        }
    }
}
