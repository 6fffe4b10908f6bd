//! OTLP trace data (`TracesData`, the same message as `ExportTraceServiceRequest`) in its
//! two encodings, JSON (one object per line, as the Collector's file exporter writes it) and
//! protobuf, to [`SpanRec`]s.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span, TracesData};

#[path = "json.rs"]
mod json;

use super::model::{self, AttrValue, Output, RawSpan, SpanRec};

/// Why a record is not trace data.
#[derive(Debug)]
pub(crate) enum DecodeError {
    Json(serde_json::Error),
    Proto(prost::DecodeError),
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

/// The spans of one JSON line (`{"resourceSpans":[...]}`, pdata's JSON: camelCase, hex ids,
/// 64-bit integers as strings or numbers). Lines of other signals (`resourceLogs`,
/// `resourceMetrics`) in the same file hold no spans and give none.
///
/// Read into borrowed structs (`replay/json.rs`): only what the replay keeps is converted,
/// and a string without escapes is never copied.
pub(crate) fn decode_json(line: &[u8]) -> Result<Vec<SpanRec>, DecodeError> {
    let data: json::Line<'_> = serde_json::from_slice(line).map_err(DecodeError::Json)?;
    let mut out = Vec::new();
    for rs in &data.resource_spans {
        for ss in &rs.scope_spans {
            out.reserve(ss.spans.len());
            for span in &ss.spans {
                out.push(json::convert(span)?);
            }
        }
    }
    Ok(out)
}

/// The spans of one protobuf `TracesData` (or `ExportTraceServiceRequest`) message.
pub(crate) fn decode_proto(message: &[u8]) -> Result<Vec<SpanRec>, DecodeError> {
    use prost::Message as _;
    let data = TracesData::decode(message).map_err(DecodeError::Proto)?;
    spans_of(data.resource_spans)
}

fn spans_of(resource_spans: Vec<ResourceSpans>) -> Result<Vec<SpanRec>, DecodeError> {
    let mut out = Vec::new();
    for rs in resource_spans {
        for ss in rs.scope_spans {
            for span in ss.spans {
                out.push(convert(&span)?);
            }
        }
    }
    Ok(out)
}

fn trace_id(bytes: &[u8]) -> Result<u128, DecodeError> {
    <[u8; 16]>::try_from(bytes)
        .map(u128::from_be_bytes)
        .map_err(|_| {
            DecodeError::Span(format!("a trace id of {} bytes (16 expected)", bytes.len()))
        })
}

fn span_id(bytes: &[u8]) -> Result<u64, DecodeError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| DecodeError::Span(format!("a span id of {} bytes (8 expected)", bytes.len())))
}

fn value(v: Option<&AnyValue>) -> Option<AttrValue> {
    Some(match v?.value.as_ref()? {
        Value::StringValue(s) => AttrValue::Str(s.as_str().into()),
        Value::IntValue(i) => AttrValue::Int(*i),
        Value::DoubleValue(d) => AttrValue::Double(*d),
        Value::BoolValue(b) => AttrValue::Bool(*b),
        _ => return None,
    })
}

fn attributes(kvs: &[KeyValue]) -> Vec<(&str, AttrValue)> {
    kvs.iter()
        .filter(|kv| model::kept(&kv.key))
        .filter_map(|kv| Some((kv.key.as_str(), value(kv.value.as_ref())?)))
        .collect()
}

fn convert(span: &Span) -> Result<SpanRec, DecodeError> {
    let trace = trace_id(&span.trace_id)?;
    let parent_id = match span.parent_span_id.as_slice() {
        [] => None,
        bytes => Some(span_id(bytes)?).filter(|id| *id != 0),
    };
    let outputs = span
        .events
        .iter()
        .filter(|e| model::is_output(&e.name))
        .map(|e| Output {
            time_ns: e.time_unix_nano,
            units: e
                .attributes
                .iter()
                .find(|kv| kv.key == crate::convention::field::UNITS)
                .and_then(|kv| value(kv.value.as_ref())?.count()),
        })
        .collect();
    let error = span
        .status
        .as_ref()
        .filter(|s| s.code == StatusCode::Error as i32)
        .map(|s| s.message.as_str());
    let links = span
        .links
        .iter()
        .filter_map(|l| Some((trace_id(&l.trace_id).ok()?, span_id(&l.span_id).ok()?)))
        .collect();
    Ok(SpanRec::from_raw(RawSpan {
        trace_id: trace,
        span_id: span_id(&span.span_id)?,
        parent_id,
        name: &span.name,
        start_ns: span.start_time_unix_nano,
        end_ns: span.end_time_unix_nano,
        attributes: attributes(&span.attributes),
        error,
        links,
        outputs,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convention::SpanKind;

    /// A line as the Collector's file exporter writes it (pdata's JSON: camelCase, hex ids,
    /// 64-bit integers as strings, enums as numbers).
    const LINE: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"engine"}}]},"scopeSpans":[{"scope":{"name":"omni"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b173","name":"stage 0 thinker","kind":1,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000","attributes":[{"key":"stage_id","value":{"intValue":"0"}},{"key":"num_tokens_in","value":{"intValue":"12"}},{"key":"stage_gen_time_ms","value":{"doubleValue":999.5}},{"key":"stage_name","value":{"stringValue":"thinker"}},{"key":"gen_ai.system","value":{"stringValue":"x"}}],"events":[{"timeUnixNano":"1544712660500000000","name":"omni.output","attributes":[{"key":"units","value":{"intValue":"8"}}]},{"timeUnixNano":"1544712660600000000","name":"decoding"}],"status":{}}]}]}]}"#;

    #[test]
    fn collector_json_lines_decode() {
        let spans = decode_json(LINE.as_bytes()).expect("valid");
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
    }

    #[test]
    fn other_signals_and_bad_ids() {
        assert!(
            decode_json(br#"{"resourceLogs":[]}"#)
                .expect("skipped")
                .is_empty()
        );
        let bad = LINE.replace("eee19b7ec3c1b174", "eee19b");
        assert!(matches!(
            decode_json(bad.as_bytes()),
            Err(DecodeError::Span(_))
        ));
        assert!(matches!(
            decode_json(b"{\"resourceSpans\": 3}"),
            Err(DecodeError::Json(_))
        ));
    }

    #[test]
    fn protobuf_decodes_the_same() {
        use prost::Message as _;
        let data: TracesData = serde_json::from_str(LINE).expect("json");
        let spans = decode_proto(&data.encode_to_vec()).expect("valid");
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].fields.len(), 4);
        assert!(decode_proto(&[0xff, 0xff, 0xff]).is_err());
    }
}
