//! The real layer with a Prometheus sink on an ephemeral loopback port, a manual clock and
//! a capture of the model; a plain HTTP GET; the OpenMetrics parser; a request workload.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use omni_metrics::instrument::Request;
use omni_metrics::stats::RequestE2EStats;
use omni_metrics::testing::CaptureSink;
use omni_metrics::testing::ManualClock;
use omni_metrics::{OmniMetricsLayer, PrometheusSink};
use openmetrics_parser::{
    HistogramValue, MetricFamily, MetricsExposition, OpenMetricsType, OpenMetricsValue,
};
use tracing::Dispatch;
use tracing_subscriber::prelude::*;

pub(crate) type Exposition = MetricsExposition<OpenMetricsType, OpenMetricsValue>;
pub(crate) type Family = MetricFamily<OpenMetricsType, OpenMetricsValue>;

/// A layer whose only outputs are a capture of the model and a served Prometheus sink.
pub(crate) struct Harness {
    pub(crate) clock: ManualClock,
    pub(crate) capture: CaptureSink,
    pub(crate) prometheus: PrometheusSink,
    dispatch: Dispatch,
    #[cfg(feature = "otlp")]
    _provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Harness {
    /// Without an OpenTelemetry layer: no request has a trace id.
    pub(crate) fn new() -> Self {
        Self::build(false, None)
    }

    /// A layer serving `model` ([`Builder::with_model_name`](omni_metrics::Builder::with_model_name)).
    pub(crate) fn with_model_name(model: &str) -> Self {
        Self::build(false, Some(model))
    }

    /// With an OpenTelemetry layer after the metrics layer (as `init()` stacks them), that
    /// samples every request: each one has a trace id.
    #[cfg(feature = "otlp")]
    pub(crate) fn traced() -> Self {
        Self::build(true, None)
    }

    /// A layer from `builder` (with the harness's clock, capture and sink added).
    pub(crate) fn with_builder(builder: omni_metrics::Builder) -> Self {
        Self::build_from(builder, false, None)
    }

    fn build(traced: bool, model: Option<&str>) -> Self {
        Self::build_from(OmniMetricsLayer::builder(), traced, model)
    }

    fn build_from(mut builder: omni_metrics::Builder, traced: bool, model: Option<&str>) -> Self {
        let clock = ManualClock::new();
        let capture = CaptureSink::new();
        let prometheus = PrometheusSink::bind("127.0.0.1:0").expect("an ephemeral port");
        if let Some(model) = model {
            builder = builder.with_model_name(model);
        }
        let layer = builder
            .with_console(false)
            .with_clock(clock.clone())
            .with_sink(capture.clone())
            .with_sink(prometheus.clone())
            .build()
            .expect("no file, no port of its own");
        let registry = tracing_subscriber::registry().with(layer);
        #[cfg(feature = "otlp")]
        {
            use opentelemetry::trace::TracerProvider as _;
            if traced {
                let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
                let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
                return Self {
                    clock,
                    capture,
                    prometheus,
                    dispatch: Dispatch::new(registry.with(otel)),
                    _provider: Some(provider),
                };
            }
        }
        assert!(!traced, "tracing needs the otlp feature");
        Self {
            clock,
            capture,
            prometheus,
            dispatch: Dispatch::new(registry),
            #[cfg(feature = "otlp")]
            _provider: None,
        }
    }

    /// Runs `f` with this harness's subscriber as the thread's default.
    pub(crate) fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        tracing::dispatcher::with_default(&self.dispatch, f)
    }

    /// Plays `n` requests of [`play`] named `req-000`, `req-001`, ...
    pub(crate) fn play_many(&self, n: u64) {
        self.run(|| {
            for i in 0..n {
                play(&self.clock, &format!("req-{i:03}"), i);
            }
        });
    }

    /// Plays `n` requests of [`play_on_replicas`] named `rep-000`, `rep-001`, ...
    pub(crate) fn play_replicas(&self, n: u64) {
        self.run(|| {
            for i in 0..n {
                play_on_replicas(&self.clock, &format!("rep-{i:03}"), i);
            }
        });
    }

    /// The bound address of the endpoint.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.prometheus.local_addr().expect("served")
    }

    /// `GET /metrics` over loopback, parsed.
    pub(crate) fn scrape(&self) -> (Response, Exposition) {
        let response = get(self.addr(), "GET /metrics HTTP/1.1");
        assert_eq!(response.status, "HTTP/1.1 200 OK", "{}", response.body);
        let parsed = parse(&response.body);
        (response, parsed)
    }

    /// The model's requests, as the sinks saw them.
    pub(crate) fn requests(&self) -> Vec<RequestE2EStats> {
        self.capture.requests()
    }
}

/// One request of a fixed shape varied by `i`: stage 0 (`thinker`: tokens, a queue, three
/// outputs), the edge 0->1 (bytes, tx, a gap in flight, rx), stage 1 (`talker`: audio at
/// 24 kHz, one output). Every fifth-plus-third request fails, every fifth-plus-fourth is
/// dropped (aborted); the others finish. Times are on `clock`, which must drive the
/// subscriber this runs under.
pub(crate) fn play(clock: &ManualClock, id: &str, i: u64) {
    play_with(clock, id, i, None);
}

/// [`play`], each stage and edge on a replica: the thinker on replica `i % 2`, the talker
/// on `i % 3`, the edge between them from and to those. Every request finishes.
pub(crate) fn play_on_replicas(clock: &ManualClock, id: &str, i: u64) {
    play_with(clock, id, i, Some((i % 2, i % 3)));
}

fn play_with(clock: &ManualClock, id: &str, i: u64, replicas: Option<(u64, u64)>) {
    let step = |us: u64| clock.advance_ns(us * 1_000);
    let request = Request::start(id);
    {
        let thinker = request.stage(0);
        thinker
            .name("thinker")
            .tokens_in(100 + i)
            .tokens_out(20 + i);
        if let Some((thinker_replica, _)) = replicas {
            thinker.replica(thinker_replica);
        }
        let queue = thinker.queue();
        step(300 + 50 * i);
        drop(queue);
        step(40_000 + 1_000 * i);
        thinker.output(1);
        step(5_000);
        thinker.output(1);
        step(7_000 + 10 * i);
        thinker.output(1);
    }
    {
        let transfer = request.transfer(0, 1);
        transfer.size_bytes(70_000 * (i + 1));
        if let Some((from, to)) = replicas {
            transfer.replicas(from, to);
        }
        let tx = transfer.tx();
        step(1_200);
        drop(tx);
        step(300);
        let rx = transfer.rx_decode();
        step(2_000 + i);
        drop(rx);
    }
    {
        let talker = request.stage(1);
        talker
            .name("talker")
            .tokens_out(50)
            .audio(48_000 * (i + 1), 24_000);
        if let Some((_, talker_replica)) = replicas {
            talker.replica(talker_replica);
        }
        step(200_000 + 150_000 * i);
        talker.output(4);
        step(900_000);
    }
    match i % 5 {
        _ if replicas.is_some() => request.finish(),
        3 => request.fail(),
        4 => drop(request),
        _ => request.finish(),
    }
}

/// An HTTP response: its status line, headers (names lowercased) and body.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: String,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: String,
}

/// Sends `request_line` (e.g. `GET /metrics HTTP/1.1`) to `addr`, accepting OpenMetrics
/// (as Prometheus does), and reads the whole response (the server closes the connection).
pub(crate) fn get(addr: SocketAddr, request_line: &str) -> Response {
    get_accepting(addr, request_line, Some("application/openmetrics-text"))
}

/// [`get`] with this `Accept` header, or none.
pub(crate) fn get_accepting(
    addr: SocketAddr,
    request_line: &str,
    accept: Option<&str>,
) -> Response {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("the endpoint accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(stream, "{request_line}\r\nHost: {addr}\r\n{accept}\r\n").expect("the request is sent");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("a UTF-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Parses OpenMetrics text, or fails the test with the text.
#[track_caller]
pub(crate) fn parse(text: &str) -> Exposition {
    match openmetrics_parser::openmetrics::parse_openmetrics(text) {
        Ok(parsed) => parsed,
        Err(e) => panic!("not OpenMetrics ({e:?}):\n{text}"),
    }
}

/// A family by name (a counter's family has no `_total`).
#[track_caller]
pub(crate) fn family<'a>(parsed: &'a Exposition, name: &str) -> &'a Family {
    parsed
        .families
        .get(name)
        .unwrap_or_else(|| panic!("no family {name}; have {:?}", parsed.families.keys()))
}

/// A series' labels, sorted, without `le`.
pub(crate) fn labels_of(
    sample: &openmetrics_parser::Sample<OpenMetricsValue>,
) -> Vec<(String, String)> {
    let set = sample.get_labelset().expect("a label set");
    let mut labels: Vec<(String, String)> = set
        .iter()
        .filter(|(k, _)| k.as_str() != "le")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.sort();
    labels
}

/// The labels a series of `labels` is scraped with, sorted (as [`labels_of`] reads them).
pub(crate) fn label_pairs(labels: &omni_metrics::metrics::LabelValues) -> Vec<(String, String)> {
    let id = |v: Option<u64>| v.map(|v| v.to_string());
    let mut pairs: Vec<(String, String)> = [
        ("model_name", labels.model_name.map(str::to_owned)),
        ("stage", id(labels.stage)),
        ("replica", id(labels.replica)),
        ("from_stage", id(labels.from_stage)),
        ("from_replica", id(labels.from_replica)),
        ("to_stage", id(labels.to_stage)),
        ("to_replica", id(labels.to_replica)),
        ("finished_reason", labels.finished_reason.map(str::to_owned)),
        ("threshold_ms", id(labels.threshold_ms)),
        ("reason", labels.reason.map(str::to_owned)),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k.to_owned(), v?)))
    .collect();
    pairs.sort();
    pairs
}

/// The `model_name` of a layer built without one (every family has the label).
pub(crate) const UNNAMED: &str = "unknown";

/// `labels`, sorted, with `model_name` [`UNNAMED`] unless they give one.
fn owned(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    if !labels.iter().any(|(k, _)| *k == "model_name") {
        v.push(("model_name".to_owned(), UNNAMED.to_owned()));
    }
    v.sort();
    v
}

/// Every series of the gauge family `name`: its labels (sorted, as [`labels_of`] reads
/// them) and value.
#[track_caller]
pub(crate) fn gauges(parsed: &Exposition, name: &str) -> BTreeMap<Vec<(String, String)>, f64> {
    let Some(family) = parsed.families.get(name) else {
        return BTreeMap::new(); // no series yet: the exposition leaves the family out
    };
    family
        .iter_samples()
        .map(|sample| match &sample.value {
            OpenMetricsValue::Gauge(g) => (labels_of(sample), g.as_f64()),
            other => panic!("{name} is not a gauge: {other:?}"),
        })
        .collect()
}

/// The histogram series `name{labels}` (`model_name` [`UNNAMED`] unless given).
#[track_caller]
pub(crate) fn histogram(
    parsed: &Exposition,
    name: &str,
    labels: &[(&str, &str)],
) -> HistogramValue {
    let want = owned(labels);
    for sample in family(parsed, name).iter_samples() {
        if labels_of(sample) == want {
            match &sample.value {
                OpenMetricsValue::Histogram(h) => return h.clone(),
                other => panic!("{name} is not a histogram: {other:?}"),
            }
        }
    }
    panic!("no series {name}{want:?}")
}

/// The counter series `name{labels}`'s value, 0 if absent (`model_name` [`UNNAMED`] unless
/// given).
#[track_caller]
pub(crate) fn counter(parsed: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    let want = owned(labels);
    for sample in family(parsed, name).iter_samples() {
        if labels_of(sample) == want {
            match &sample.value {
                OpenMetricsValue::Counter(c) => return c.value.as_f64(),
                other => panic!("{name} is not a counter: {other:?}"),
            }
        }
    }
    0.0
}

/// Whether `a` and `b` agree to within 1e-9, relative to the larger (or absolutely below 1).
pub(crate) fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}
