//! A fuzz target for every decoder of the report command, run in CI for a bounded time:
//! the JSON and protobuf OTLP decoders, the length-prefixed framing, the recognition of
//! compressed input, and the replay as a whole on decoded spans whose parents, times and
//! attributes are arbitrary (issue "Hostile input and exposed surfaces", item 7).
//!
//! Properties: no panic on any input; the records of any input are sane (every number
//! finite, no `null`, `e2e_total_ms` and wall times within 10^12 ms); the JSON and protobuf encodings of
//! the same spans give the same records; time linear in the input (the shapes that were
//! quadratic, parent cycles and long chains, are replayed at scale against a bound).
//! Memory is bounded by construction (the record limit, the window's share), and measured
//! on the real binary, in a child process, by `tests/cli_report/hostile.rs`.
//!
//! A stable harness (`proptest`, no nightly `cargo fuzz`): a few thousand cases in CI,
//! under a minute in debug on 2 cores,
//! `cargo test --features cli --lib replay::fuzz`. A longer search:
//! `PROPTEST_CASES=100000 cargo test --release --features cli --lib replay::fuzz`
//! (every property gets that many cases; no regression files are written: a failure
//! prints its minimal input).

use std::io::Write as _;
use std::time::{Duration, Instant};

use crate::replay::{GroupBy, Input, InputFormat, Lost, Replay, ReplayStats, Spans};
use crate::testing::CaptureSink;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Value, json};

/// `cases` unless `PROPTEST_CASES` says otherwise; no regression files.
fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Reads `bytes` as one file of `format`; the records or spans that could not be read are
/// counted (not the values left out of spans kept), none may panic.
fn read(bytes: &[u8], format: InputFormat) -> (Spans, u64) {
    let mut spans = Spans::new();
    let mut errors = 0;
    let summary = spans.read("fuzz", bytes, format, &mut |e| {
        if e.lost() != Lost::Values {
            errors += 1;
        }
    });
    assert!(summary.spans as usize >= spans.len(), "{summary:?}");
    (spans, errors)
}

/// Replays `spans` and checks every record.
fn replay_spans(spans: &Spans, group_by: GroupBy) -> Vec<Value> {
    let capture = CaptureSink::new();
    let stats = Replay::new()
        .group_by(group_by)
        .with_sink(capture.clone())
        .run(spans);
    assert_eq!(stats.spans_read as usize, spans.len());
    checked_records(&capture)
}

/// The records of `capture`, each checked: numbers finite, no `null`, a request's
/// `e2e_total_ms` within 10^12 ms.
fn checked_records(capture: &CaptureSink) -> Vec<Value> {
    let mut out = Vec::new();
    for r in capture.requests() {
        let v = serde_json::to_value(&r).expect("a request record serializes");
        let e2e = v["e2e_total_ms"].as_f64().unwrap_or(f64::NAN);
        assert!((0.0..=1e12).contains(&e2e), "e2e_total_ms {e2e}: {v}");
        sane(&v, "request");
        out.push(v);
    }
    for s in capture.summaries() {
        let v = serde_json::to_value(&s).expect("a summary record serializes");
        sane(&v, "summary");
        // Wall times come from timestamps only: within the bound of any time.
        for (k, wall) in v.as_object().into_iter().flatten() {
            if k.ends_with("wall_time_ms") {
                let wall = wall.as_f64().unwrap_or(f64::NAN);
                assert!((0.0..=1e12).contains(&wall), "{k} {wall}: {v}");
            }
        }
        out.push(v);
    }
    out
}

#[track_caller]
fn sane(v: &Value, path: &str) {
    match v {
        Value::Null => panic!("null at {path}"),
        Value::Number(n) => assert!(n.as_f64().is_some_and(f64::is_finite), "{n} at {path}"),
        Value::Array(a) => a.iter().for_each(|x| sane(x, path)),
        Value::Object(o) => o.iter().for_each(|(k, x)| sane(x, &format!("{path}.{k}"))),
        _ => {}
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip")
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = (message.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(message);
    out
}

// ---- Arbitrary span forests ------------------------------------------------------------

/// An attribute value.
#[derive(Clone, Debug)]
enum Val {
    Int(i64),
    Double(f64),
    Str(String),
    Bool(bool),
}

/// One span, with ids from small ranges so that parents, duplicates and cycles meet.
#[derive(Clone, Debug)]
struct Gen {
    trace: u8,
    id: u8,
    parent: Option<u8>,
    name: &'static str,
    start: u64,
    end: u64,
    attributes: Vec<(&'static str, Val)>,
    outputs: Vec<(u64, Option<Val>)>,
    link: Option<(u8, u8)>,
    error: Option<String>,
}

const NAMES: [&str; 16] = [
    "omni.request",
    "omni.stage",
    "omni.stage",
    "omni.transfer",
    "omni.queue",
    "omni.postprocess",
    "omni.transfer.tx",
    "omni.transfer.rx_decode",
    "omni.run",
    "omni.batch",
    "engine.step",
    "stage 0 thinker",
    "request r-1",
    "request",
    "run run-1",
    "run",
];

const KEYS: [&str; 20] = [
    "request_id",
    "status",
    "run_id",
    "stage_id",
    "stage_name",
    "batch_id",
    "batch_size",
    "num_tokens_in",
    "num_tokens_out",
    "audio_generated_frames",
    "image_num",
    "from_stage",
    "to_stage",
    "size_bytes",
    "stage_gen_time_ms",
    "postprocess_time_ms",
    "tx_time_ms",
    "in_flight_time_ms",
    "e2e_total_ms",
    "e2e_requests",
];

/// 2023, in ns: where most generated times are.
const T0: u64 = 1_700_000_000_000_000_000;

fn time() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => (0_u64..1_000_000_000).prop_map(|d| T0 + d),
        1 => any::<u64>(),
        1 => prop_oneof![Just(0), Just(1), Just(u64::MAX), Just(T0 + 1_000_000_000_000_000_000)],
    ]
}

fn value() -> impl Strategy<Value = Val> {
    prop_oneof![
        4 => (0_i64..10).prop_map(Val::Int),
        2 => any::<i64>().prop_map(Val::Int),
        2 => prop_oneof![
            (0.0_f64..1e4),
            any::<f64>(),
            Just(1e308),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(1.8446744073709552e19),
        ]
        .prop_map(Val::Double),
        2 => "[a-z0-9 ]{0,6}".prop_map(Val::Str),
        1 => prop_oneof![Just("ok"), Just("error"), Just("aborted"), Just("-3"), Just("1e30")]
            .prop_map(|s| Val::Str(s.to_owned())),
        1 => any::<bool>().prop_map(Val::Bool),
    ]
}

fn span() -> impl Strategy<Value = Gen> {
    (
        (0_u8..3, 1_u8..24, prop::option::weighted(0.8, 1_u8..26)),
        prop::sample::select(&NAMES[..]),
        (time(), time()),
        prop::collection::vec((prop::sample::select(&KEYS[..]), value()), 0..5),
        prop::collection::vec((time(), prop::option::of(value())), 0..4),
        prop::option::weighted(0.2, (0_u8..3, 1_u8..24)),
        prop::option::weighted(0.1, "[a-z ]{0,8}"),
    )
        .prop_map(
            |((trace, id, parent), name, (start, end), attributes, outputs, link, error)| Gen {
                trace,
                id,
                parent,
                name,
                start,
                end,
                attributes,
                outputs,
                link,
                error,
            },
        )
}

fn trace_hex(t: u8) -> String {
    format!(
        "{:032x}",
        0x4bf9_0000_0000_0000_0000_0000_0000_0000_u128 | u128::from(t)
    )
}

fn span_hex(s: u8) -> String {
    format!("{:016x}", 0xb7ad_0000_0000_0000_u64 | u64::from(s))
}

fn json_value(v: &Val) -> Value {
    match v {
        Val::Int(i) => json!({ "intValue": i.to_string() }),
        // pdata writes the doubles JSON cannot hold as strings.
        Val::Double(d) if d.is_nan() => json!({ "doubleValue": "NaN" }),
        Val::Double(d) if d.is_infinite() => {
            json!({ "doubleValue": if *d > 0.0 { "Infinity" } else { "-Infinity" } })
        }
        Val::Double(d) => json!({ "doubleValue": d }),
        Val::Str(s) => json!({ "stringValue": s }),
        Val::Bool(b) => json!({ "boolValue": b }),
    }
}

fn json_span(g: &Gen) -> Value {
    let kv = |(k, v): &(&str, Val)| json!({"key": k, "value": json_value(v)});
    json!({
        "traceId": trace_hex(g.trace),
        "spanId": span_hex(g.id),
        "parentSpanId": g.parent.map(span_hex).unwrap_or_default(),
        "name": g.name,
        "startTimeUnixNano": g.start.to_string(),
        "endTimeUnixNano": g.end.to_string(),
        "attributes": g.attributes.iter().map(kv).collect::<Vec<_>>(),
        "events": g.outputs.iter().map(|(t, units)| json!({
            "timeUnixNano": t.to_string(),
            "name": "omni.output",
            "attributes": units.iter().map(|u| kv(&("units", u.clone()))).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "links": g.link.iter().map(|(t, s)| json!({"traceId": trace_hex(*t), "spanId": span_hex(*s)})).collect::<Vec<_>>(),
        "status": g.error.as_ref().map_or(json!({}), |m| json!({"code": 2, "message": m})),
    })
}

/// The spans as JSON lines, `per_line` spans a line.
fn json_lines(spans: &[Gen], per_line: usize) -> String {
    spans
        .chunks(per_line.max(1))
        .map(|c| {
            json!({"resourceSpans": [{"scopeSpans": [{"spans": c.iter().map(json_span).collect::<Vec<_>>()}]}]})
                .to_string()
                + "\n"
        })
        .collect()
}

mod pb {
    pub(super) use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    pub(super) use opentelemetry_proto::tonic::trace::v1::{
        ResourceSpans, ScopeSpans, Span, Status, TracesData, span,
    };
}

fn proto_value(v: &Val) -> pb::AnyValue {
    use pb::any_value::Value as V;
    pb::AnyValue {
        value: Some(match v {
            Val::Int(i) => V::IntValue(*i),
            Val::Double(d) => V::DoubleValue(*d),
            Val::Str(s) => V::StringValue(s.clone()),
            Val::Bool(b) => V::BoolValue(*b),
        }),
    }
}

fn proto_span(g: &Gen) -> pb::Span {
    let kv = |(k, v): &(&str, Val)| pb::KeyValue {
        key: (*k).to_owned(),
        value: Some(proto_value(v)),
        ..Default::default()
    };
    let bytes = |hex: String| -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0))
            .collect()
    };
    pb::Span {
        trace_id: bytes(trace_hex(g.trace)),
        span_id: bytes(span_hex(g.id)),
        parent_span_id: g.parent.map(|p| bytes(span_hex(p))).unwrap_or_default(),
        name: g.name.to_owned(),
        start_time_unix_nano: g.start,
        end_time_unix_nano: g.end,
        attributes: g.attributes.iter().map(kv).collect(),
        events: g
            .outputs
            .iter()
            .map(|(t, units)| pb::span::Event {
                time_unix_nano: *t,
                name: "omni.output".to_owned(),
                attributes: units.iter().map(|u| kv(&("units", u.clone()))).collect(),
                ..Default::default()
            })
            .collect(),
        links: g
            .link
            .iter()
            .map(|(t, s)| pb::span::Link {
                trace_id: bytes(trace_hex(*t)),
                span_id: bytes(span_hex(*s)),
                ..Default::default()
            })
            .collect(),
        status: g.error.as_ref().map(|m| pb::Status {
            message: m.clone(),
            code: 2,
        }),
        ..Default::default()
    }
}

/// The spans as length-prefixed protobuf records, `per_record` spans a record.
fn proto_records(spans: &[Gen], per_record: usize) -> Vec<u8> {
    use prost::Message as _;
    let mut out = Vec::new();
    for c in spans.chunks(per_record.max(1)) {
        let data = pb::TracesData {
            resource_spans: vec![pb::ResourceSpans {
                scope_spans: vec![pb::ScopeSpans {
                    spans: c.iter().map(proto_span).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        out.extend(framed(&data.encode_to_vec()));
    }
    out
}

/// Replays `inputs` streaming (a small window or the default), checks the records.
fn replay_inputs(
    bytes: &[u8],
    format: InputFormat,
    group_by: GroupBy,
    window: u64,
) -> (ReplayStats, Vec<Value>) {
    let capture = CaptureSink::new();
    let stats = Replay::new()
        .group_by(group_by)
        .with_window(window)
        .with_sink(capture.clone())
        .run_inputs(vec![Input::bytes("fuzz", bytes)], format, &mut |_| {});
    (stats, checked_records(&capture))
}

/// Requests and summaries, by what identifies them, for comparing two replays.
fn keyed(records: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = records.iter().map(Value::to_string).collect();
    out.sort();
    out
}

proptest! {
    #![proptest_config(config(600))]

    /// Any bytes, as JSON lines, as protobuf, or recognized: never a panic.
    #[test]
    fn any_bytes_are_read_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for format in [InputFormat::Json, InputFormat::Proto, InputFormat::Auto] {
            let (spans, _) = read(&bytes, format);
            replay_spans(&spans, GroupBy::Run);
        }
    }

    /// Bytes after a length prefix (the framing) and inside a protobuf record (the
    /// decoder): never a panic, a record that cannot be read is one error.
    #[test]
    fn protobuf_records_of_any_bytes(
        messages in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut data: Vec<u8> = messages.iter().flat_map(|m| framed(m)).collect();
        read(&data, InputFormat::Proto);
        data.truncate(cut.index(data.len() + 1));
        read(&data, InputFormat::Proto);
    }

    /// Compressed input: any bytes behind gzip's and zstd's magic numbers, compressed
    /// streams of any bytes cut anywhere, zstd records of the older form.
    #[test]
    fn compressed_input_of_any_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        cut in any::<prop::sample::Index>(),
    ) {
        for magic in [&[0x1f, 0x8b][..], &[0x28, 0xb5, 0x2f, 0xfd], &[0, 0, 0, 9, 0x28, 0xb5, 0x2f, 0xfd]] {
            let mut data = magic.to_vec();
            data.extend_from_slice(&bytes);
            read(&data, InputFormat::Auto);
        }
        let zstd = zstd::stream::encode_all(&bytes[..], 1).expect("zstd");
        for data in [gzip(&bytes), zstd.clone(), framed(&zstd)] {
            read(&data, InputFormat::Auto);
            read(&data[..cut.index(data.len() + 1)], InputFormat::Auto);
        }
    }

    /// Arbitrary span forests (parents anywhere: cycles, missing, duplicates; times
    /// anywhere; any values), as JSON lines and as protobuf, replayed whole and streaming:
    /// sane records, and the same from both encodings.
    #[test]
    fn replay_of_arbitrary_span_forests(
        spans in prop::collection::vec(span(), 0..40),
        per_line in 1_usize..8,
        all in any::<bool>(),
        window in prop_oneof![Just(4_u64), Just(Replay::DEFAULT_WINDOW)],
    ) {
        let group_by = if all { GroupBy::All } else { GroupBy::Run };
        let text = json_lines(&spans, per_line);
        let proto = proto_records(&spans, per_line);
        let (from_json, errors) = read(text.as_bytes(), InputFormat::Json);
        prop_assert_eq!(errors, 0, "a generated line is valid");
        let (from_proto, _) = read(&proto, InputFormat::Proto);
        let json_records = replay_spans(&from_json, group_by);
        let proto_records = replay_spans(&from_proto, group_by);
        prop_assert_eq!(keyed(&json_records), keyed(&proto_records));
        let (_, streamed) = replay_inputs(text.as_bytes(), InputFormat::Auto, group_by, window);
        let (_, streamed_proto) = replay_inputs(&gzip(&proto), InputFormat::Auto, group_by, window);
        prop_assert_eq!(keyed(&streamed), keyed(&streamed_proto));
    }

    /// Valid lines with bytes changed, cut or repeated: never a panic; the other lines of
    /// the file are still read.
    #[test]
    fn mutated_lines_spoil_only_themselves(
        spans in prop::collection::vec(span(), 1..12),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let line = json_lines(&spans, spans.len());
        let mut bad = line.trim_end().as_bytes().to_vec();
        for (at, byte) in &edits {
            let i = at.index(bad.len());
            bad[i] = if *byte == b'\n' { b' ' } else { *byte };
        }
        bad.truncate(cut.index(bad.len() + 1).max(1));
        let mut text = line.clone().into_bytes();
        text.extend_from_slice(&bad);
        text.push(b'\n');
        text.extend_from_slice(line.as_bytes());
        let (read_spans, _) = read(&text, InputFormat::Json);
        let (good, _) = read(line.as_bytes(), InputFormat::Json);
        prop_assert!(read_spans.len() >= good.len(), "the good lines are read");
        replay_spans(&read_spans, GroupBy::Run);
        // The same edits inside a protobuf record.
        let mut proto = proto_records(&spans, spans.len());
        for (at, byte) in &edits {
            let i = 4 + at.index(proto.len() - 4);
            proto[i] = *byte;
        }
        let (proto_spans, _) = read(&proto, InputFormat::Proto);
        replay_spans(&proto_spans, GroupBy::All);
    }

    /// Values no attribute can hold, and timestamps that are not counts of ns, in JSON:
    /// the line is read, the span kept.
    #[test]
    fn unreadable_values_spoil_only_themselves(
        int in prop_oneof![Just("\"99999999999999999999\""), Just("\"1.5\""), Just("[1]"), Just("{}"), Just("true"), Just("\"x\""), Just("-1e300")],
        time in prop_oneof![Just("\"-5\""), Just("1.5"), Just("\"18446744073709551616\""), Just("null"), Just("[]")],
        key in prop::sample::select(&KEYS[..]),
    ) {
        let line = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"{}","spanId":"{}","name":"omni.request","startTimeUnixNano":{time},"endTimeUnixNano":"{T0}","attributes":[{{"key":"request_id","value":{{"stringValue":"r"}}}},{{"key":"{key}","value":{{"intValue":{int}}}}}]}}]}}]}}]}}"#,
            trace_hex(1),
            span_hex(1),
        );
        let mut said = 0;
        let mut spans = Spans::new();
        spans.read("fuzz", line.as_bytes(), InputFormat::Json, &mut |e| {
            assert_eq!(e.lost(), Lost::Values, "{e}");
            said += 1;
        });
        prop_assert_eq!((spans.len(), said), (1, 1));
        let records = replay_spans(&spans, GroupBy::Run);
        prop_assert!(!records.is_empty());
    }
}

/// `f` runs within `bound` (debug build, busy machine): the shapes that were quadratic.
#[track_caller]
fn within(bound: Duration, what: &str, f: impl FnOnce()) {
    let start = Instant::now();
    f();
    let took = start.elapsed();
    assert!(took < bound, "{what}: {took:?} (bound {bound:?})");
    eprintln!("{what}: {took:?}");
}

/// A trace of `n` spans as one JSON line each 512.
fn lines_of(spans: &[Value]) -> String {
    spans
        .chunks(512)
        .map(|c| json!({"resourceSpans": [{"scopeSpans": [{"spans": c}]}]}).to_string() + "\n")
        .collect()
}

fn raw_span(id: u64, parent: Option<u64>, name: &str, start: u64, end: u64, attrs: Value) -> Value {
    json!({
        "traceId": trace_hex(7),
        "spanId": format!("{id:016x}"),
        "parentSpanId": parent.map(|p| format!("{p:016x}")).unwrap_or_default(),
        "name": name,
        "startTimeUnixNano": start.to_string(),
        "endTimeUnixNano": end.to_string(),
        "attributes": attrs,
    })
}

/// Parent cycles (of the engine's own spans, and of stages), a chain of 20,000 engine
/// spans, and 20,000 stages under one cycle: each replayed in linear time (these walked
/// every chain from every span: 20,000 stages under a cycle is 400 million steps).
#[test]
fn cycles_and_long_chains_replay_in_linear_time() {
    const N: u64 = 20_000;
    let stage = |i: u64| json!([{"key": "stage_id", "value": {"intValue": (i % 5).to_string()}}]);
    let request = raw_span(
        1,
        None,
        "omni.request",
        T0,
        T0 + 1_000_000,
        json!([{"key": "request_id", "value": {"stringValue": "r"}}]),
    );
    // Stages under two engine spans naming each other.
    let mut under_cycle = vec![
        raw_span(2, Some(3), "engine.a", T0, T0 + 10, json!([])),
        raw_span(3, Some(2), "engine.b", T0, T0 + 10, json!([])),
    ];
    under_cycle
        .extend((0..N).map(|i| raw_span(100 + i, Some(2), "omni.stage", T0, T0 + 5, stage(i))));
    // Stages in a ring of parents.
    let ring: Vec<Value> = (0..N)
        .map(|i| {
            raw_span(
                100 + i,
                Some(100 + (i + 1) % N),
                "omni.stage",
                T0,
                T0 + 5,
                stage(i),
            )
        })
        .collect();
    // A chain of engine spans under a request, a stage at each level.
    let mut chain = vec![request.clone()];
    chain.extend((0..N).map(|i| {
        raw_span(
            100 + i,
            Some(if i == 0 { 1 } else { 99 + i }),
            "engine.step",
            T0,
            T0 + 5,
            json!([]),
        )
    }));
    chain.extend((0..N).step_by(100).map(|i| {
        raw_span(
            1_000_000 + i,
            Some(100 + i),
            "omni.stage",
            T0,
            T0 + 5,
            stage(i / 100),
        )
    }));
    for (what, spans) in [
        ("stages under a cycle", under_cycle),
        ("a ring of stages", ring),
        ("a chain of engine spans", chain),
    ] {
        let text = lines_of(&spans);
        within(Duration::from_secs(20), what, || {
            let (read_spans, errors) = read(text.as_bytes(), InputFormat::Json);
            assert_eq!(errors, 0);
            let capture = CaptureSink::new();
            let stats = Replay::new().with_sink(capture.clone()).run(&read_spans);
            let records = checked_records(&capture);
            if what == "a chain of engine spans" {
                // Every stage found its request through the chain.
                let stages = records[0]["stages"].as_array().map_or(0, Vec::len);
                assert_eq!((stats.parent_cycles, stages), (0, 5), "{what}: {stats:?}");
            } else {
                assert!(stats.parent_cycles >= 1, "{what}: {stats:?}");
            }
        });
    }
}

/// Found by `replay_of_arbitrary_span_forests`: a request whose timestamps are too far apart
/// (1 ns to 1.7e18 ns) takes its children's window, and its run (`--group-by all`) starts
/// there too, not at the timestamp that was left out (the run's wall was 1.7e12 ms).
#[test]
fn a_run_starts_at_its_requests_fitted_times() {
    let far = 1_700_000_000_000_000_000;
    let spans = [
        raw_span(3, Some(2), "omni.request", far, far, json!([])),
        raw_span(2, Some(13), "omni.request", far, far, json!([])),
        raw_span(13, None, "omni.request", 1, far, json!([])),
    ];
    let (read, _) = read(lines_of(&spans).as_bytes(), InputFormat::Json);
    for group_by in [GroupBy::All, GroupBy::Run] {
        // Checks every wall time within 10^12 ms.
        let records = replay_spans(&read, group_by);
        assert!(!records.is_empty());
    }
}
