//! The Prometheus sink: a metrics endpoint (`GET /metrics`) with vLLM-Omni's `vllm_omni:*`
//! families ([`catalog`](super::catalog)), fed by a [`Sink`].
//!
//! [`PrometheusSink`] records each finished request into `prometheus-client` families
//! (one counter or histogram per catalogue entry, labelled by stage or edge ids and
//! `finished_reason` only), and serves them from a thread of its own. Histograms carry an
//! OpenMetrics exemplar with the request's `trace_id` when it has one (a request exported
//! as a trace).
//!
//! # Which format a scrape gets
//!
//! The endpoint answers in the format the scrape's `Accept` header asks for, as Prometheus'
//! own client libraries negotiate ([`PrometheusSink::encode_for`]; responses say
//! `Vary: Accept`):
//!
//! - **OpenMetrics text** (`application/openmetrics-text; version=1.0.0; charset=utf-8`, or `version=0.0.1`
//!   when only that is asked for) when `Accept` prefers `application/openmetrics-text`, as
//!   a Prometheus server's scrapes do: exemplars on the histograms' buckets, a counter's
//!   `# HELP` and `# TYPE` on its family name (`vllm_omni:prompt_tokens`) and its sample
//!   `_total`, and `# EOF` at the end. With `--enable-feature=exemplar-storage`, Prometheus
//!   keeps the exemplars (`/api/v1/query_exemplars`, Grafana's exemplar dots).
//! - **The classic text format 0.0.4** (`text/plain; version=0.0.4; charset=utf-8`) otherwise:
//!   without an `Accept` header (`curl`), with `text/plain` or `*/*`, or one preferring a
//!   format not served (protobuf). This is what `promtool check metrics`, Python's
//!   `text_string_to_metric_families` and other classic parsers read: a counter's `# HELP`
//!   and `# TYPE ... counter` are on its `_total` name, there is no `# EOF` and **no
//!   exemplars** (the format has none): a classic scraper cannot link a bucket to a trace.
//!   `promtool check metrics` finds nothing in it but what vLLM-Omni's names require (`:` in
//!   the names, the `_s` unit suffix).
//!
//! Both are written by `prometheus-client` from the same families (its `text` and
//! `prometheus_text` encoders), so they hold the same series and values; only `le` is
//! written differently (`le="1.0"` in OpenMetrics, `le="1"` as Go's clients write the
//! classic format). [`PrometheusSink::encode`] is the OpenMetrics text; a server of your own
//! answers a scrape with [`PrometheusSink::encode_for`] and the request's `Accept`.
//!
//! - The engine's thread only walks a finished request's observations into a pooled buffer
//!   and queues it (bounded, never waited on). A recorder thread
//!   (`omni-metrics-prometheus-recorder`) records them into the families, whose locks a
//!   scrape holds while it formats: the engine never waits on a scrape. A scrape first
//!   waits (up to a second) for the requests finished before it.
//! - Bursts lose nothing: a request that does not fit in the full queue is folded on the
//!   engine's thread into a pending batch (per series, a counter's total and a histogram's
//!   per-bucket counts and sums, with the latest exemplar per bucket), which the recorder
//!   takes whole when it has caught up. Memory is bounded by the series, not by the rate.
//!   The recorder records a folded histogram by observing, per bucket, the bucket's mean
//!   once per observation (and the exemplar's own value once): `prometheus-client` has no
//!   bulk update, so counts and buckets are exact, sums exact to rounding, and the
//!   recorder's work stays one observation per observation: 350,000 to 550,000 requests
//!   of 48 observations a second, sharing 2 vCPUs with 4 engine threads
//!   (`benches/prometheus_sustained.rs`). Above that, nothing is lost but the scrape lags
//!   (it waits a second for the recorder; [`PrometheusSink::wait_recorded`] longer).
//! - Scrapes are served by hyper's HTTP/1 server on a current-thread tokio runtime owned by
//!   the server thread (`omni-metrics-prometheus`); the engine's threads never touch it, and
//!   none of it is traced (a no-op dispatcher is its default). Clients are served
//!   concurrently, at most 64 connections at once: beyond that a connection is answered 503
//!   and closed at once, never queued. Each request head must arrive whole within 5 s of the
//!   connection (or of the previous response), however slowly its bytes trickle in, and each
//!   response be written within 10 s of its head, else the connection is closed: slow
//!   clients hold a slot for seconds, never the endpoint. Kept alive only when the client
//!   asks (`Connection: keep-alive`). A scrape is encoded on one of the runtime's two
//!   blocking threads (`omni-metrics-prometheus-encode`), as it waits for the recorder.
//! - Label cardinality is bounded: at most 64 distinct stage ids and 64 distinct replica
//!   ids, and 16 model names in a process; the observations of further stages or replicas
//!   (and of edges touching one), or of further models, are counted
//!   ([`PrometheusSink::overflowed_observations`]), said once as a warning, and not exported.
//! - Every series has `model_name` (vLLM's label): the request record's
//!   ([`RequestE2EStats::model_name`]), else
//!   `unknown`. A layer tells the sinks it
//!   is built with its model name (a sink added with `with_sink` needs no configuration of
//!   its own), so that the label-less families' series start at zero under that name.
//! - The live gauges (`num_requests_running`, `num_requests_waiting`,
//!   `stage_inflight_requests`, `transfer_inflight`) are read at each scrape, on the encoding
//!   thread, from the layers built with the sink ([`Sink::on_layer_built`] hands it each
//!   layer's [`MetricsHandle`]; held weakly, so a sink keeps no layer alive):
//!   [`MetricsHandle::live`], a scan of their open spans, summed over the layers serving the
//!   same model. A stage or edge once read stays, at 0 when nothing is open on it. A sink no
//!   layer was built with has only the label-less gauges' zero series.
//!
//! ```
//! use omni_metrics::metrics::prometheus::PrometheusSink;
//!
//! let prometheus = PrometheusSink::bind("127.0.0.1:0")?; // port 0: any free port
//! let layer = omni_metrics::OmniMetricsLayer::builder()
//!     .with_sink(prometheus.clone())
//!     .build()?;
//! println!("scrape http://{}/metrics", prometheus.local_addr().unwrap());
//! # drop(layer);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use smallvec::SmallVec;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};

use super::catalog::{
    DEFAULT_MODEL_NAME, FINISHED_REASON_LABEL, FROM_REPLICA_LABEL, FROM_STAGE_LABEL, LabelValues,
    Labels, MAX_MODEL_NAMES, MAX_REPLICA_LABELS, MAX_STAGE_LABELS, MAX_THRESHOLD_LABELS, METRICS,
    MODEL_NAME_LABEL, MetricKind, REASON_LABEL, REPLICA_LABEL, STAGE_LABEL, THRESHOLD_MS_LABEL,
    TO_REPLICA_LABEL, TO_STAGE_LABEL, model_label, observe,
};
use super::live::LiveSources;
use super::queue::{Batch, Merge, ObservationQueue, Pending, Record, parse_trace_id};
use crate::MetricsHandle;
use crate::env::PROMETHEUS_ADDR_ENV;
use crate::report::Sink;
use crate::stats::RequestE2EStats;

/// [`PrometheusSink::DEFAULT_ADDR`].
const DEFAULT_PROMETHEUS_ADDR: &str = "127.0.0.1:9464";

/// The path the endpoint serves.
const METRICS_PATH: &str = "/metrics";

/// `application/openmetrics-text; version=1.0.0; charset=utf-8`.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The same text, answered to an `Accept` that asks for OpenMetrics 0.0.1 only (as Go's
/// client does; the two versions' texts do not differ in what this sink writes).
const OPENMETRICS_0_0_1_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=0.0.1; charset=utf-8";

/// `text/plain; version=0.0.4; charset=utf-8`.
const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The longest request head read (hyper's least buffer); a longer one is answered 431.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// A series' labels: the catalogue's [`LabelValues`], written as its family declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Series(LabelValues);

impl std::hash::Hash for Series {
    /// One word per lookup (a family's map hashes on every observation): the ids mixed,
    /// the reason's length (its values differ in length) and the model name's hash. Equal
    /// series hash equal.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let v = &self.0;
        let id = |x: Option<u64>| x.map_or(u64::MAX, |x| x);
        let word = id(v.stage)
            ^ id(v.from_stage).rotate_left(21)
            ^ id(v.to_stage).rotate_left(42)
            ^ id(v.replica).rotate_left(11)
            ^ id(v.from_replica).rotate_left(32)
            ^ id(v.to_replica).rotate_left(53)
            ^ v.finished_reason.map_or(0, str::len) as u64
            ^ (v.reason.map_or(0, str::len) as u64).rotate_left(5)
            ^ id(v.threshold_ms).rotate_left(37)
            ^ v.model_word();
        state.write_u64(word);
    }
}

impl EncodeLabelSet for Series {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), fmt::Error> {
        // vLLM-Omni's order: the model, then each stage before its replica.
        let v = &self.0;
        if let Some(model) = v.model_name {
            (MODEL_NAME_LABEL, model).encode(encoder.encode_label())?;
        }
        for (key, id) in [
            (STAGE_LABEL, v.stage),
            (REPLICA_LABEL, v.replica),
            (FROM_STAGE_LABEL, v.from_stage),
            (FROM_REPLICA_LABEL, v.from_replica),
            (TO_STAGE_LABEL, v.to_stage),
            (TO_REPLICA_LABEL, v.to_replica),
        ] {
            if let Some(id) = id {
                (key, id).encode(encoder.encode_label())?;
            }
        }
        if let Some(threshold_ms) = v.threshold_ms {
            (THRESHOLD_MS_LABEL, threshold_ms).encode(encoder.encode_label())?;
        }
        if let Some(reason) = v.reason {
            (REASON_LABEL, reason).encode(encoder.encode_label())?;
        }
        if let Some(reason) = v.finished_reason {
            (FINISHED_REASON_LABEL, reason).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// An exemplar's label set: `trace_id`, 32 lowercase hex digits, kept inline (no
/// allocation per observation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct TraceExemplar([u8; 32]);

impl TraceExemplar {
    fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl EncodeLabelSet for TraceExemplar {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), fmt::Error> {
        (crate::stats::keys::TRACE_ID, self.as_str()).encode(encoder.encode_label())
    }
}

type Histogram = HistogramWithExemplars<TraceExemplar>;

/// Builds a family's histograms with its catalogue buckets.
#[derive(Clone, Debug)]
struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// One catalogue entry's family (indexed like [`METRICS`]).
#[derive(Debug)]
enum Door {
    Counter(Family<Series, Counter>),
    Histogram(Family<Series, Histogram, Buckets>),
    /// Set at each scrape from the live gauges ([`Recorder::read_gauges`]).
    Gauge(Family<Series, Gauge>),
}

/// Ids that label series, ascending, at most `cap` of them: the first ones seen.
#[derive(Debug)]
struct Admitted {
    ids: RwLock<Vec<u64>>,
    cap: usize,
}

impl Admitted {
    fn new(cap: usize) -> Self {
        Self {
            ids: RwLock::new(Vec::new()),
            cap,
        }
    }

    /// Admits the ids while fewer than the cap are; returns the ids left out (usually
    /// none).
    fn admit(&self, ids: impl Iterator<Item = u64> + Clone) -> SmallVec<[u64; 4]> {
        {
            let admitted = self.ids.read().unwrap_or_else(PoisonError::into_inner);
            if ids.clone().all(|id| admitted.binary_search(&id).is_ok()) {
                return SmallVec::new();
            }
        }
        let mut admitted = self.ids.write().unwrap_or_else(PoisonError::into_inner);
        let mut rejected = SmallVec::new();
        for id in ids {
            match admitted.binary_search(&id) {
                Ok(_) => {}
                Err(at) if admitted.len() < self.cap => admitted.insert(at, id),
                Err(_) if !rejected.contains(&id) => rejected.push(id),
                Err(_) => {}
            }
        }
        rejected
    }
}

/// What a batch's labels name beyond the caps: stage ids, replica ids, audio continuity
/// thresholds, a model name (an observation without one).
#[derive(Debug, Default)]
struct Rejected {
    stages: SmallVec<[u64; 4]>,
    replicas: SmallVec<[u64; 4]>,
    thresholds: SmallVec<[u64; 4]>,
    models: bool,
}

impl Rejected {
    fn is_empty(&self) -> bool {
        self.stages.is_empty()
            && self.replicas.is_empty()
            && self.thresholds.is_empty()
            && !self.models
    }

    /// Whether an observation's labels name something left out.
    fn mentions(&self, labels: &LabelValues) -> bool {
        (self.models && labels.model_name.is_none())
            || labels.stage_ids().any(|id| self.stages.contains(&id))
            || labels.replica_ids().any(|id| self.replicas.contains(&id))
            || labels
                .threshold_ms
                .is_some_and(|t| self.thresholds.contains(&t))
    }
}

/// The families, their registry and the label caps: shared by the sink's clones and the
/// server thread.
#[derive(Debug)]
struct Recorder {
    registry: Registry,
    doors: Vec<Door>,
    /// Stage ids that label series; at most [`MAX_STAGE_LABELS`].
    stages: Admitted,
    /// Replica ids that label series; at most [`MAX_REPLICA_LABELS`].
    replicas: Admitted,
    /// Audio continuity thresholds that label series; at most [`MAX_THRESHOLD_LABELS`].
    thresholds: Admitted,
    /// The layers this sink was built into, whose live gauges a scrape reads.
    live: LiveSources,
    overflowed: AtomicU64,
    warned: AtomicBool,
    /// Whether a request was ever given to the sink (the default model's zero series are
    /// then kept: see [`Recorder::serve_model`]).
    fed: AtomicBool,
}

impl Recorder {
    fn new() -> Self {
        let mut registry = Registry::default();
        let mut doors = Vec::with_capacity(METRICS.len());
        for def in METRICS {
            // `register` appends the full stop itself.
            let help = def.help.strip_suffix('.').unwrap_or(def.help);
            let door = match def.kind {
                MetricKind::Counter => {
                    let family = Family::<Series, Counter>::default();
                    registry.register(def.prometheus, help, family.clone());
                    Door::Counter(family)
                }
                MetricKind::Histogram => {
                    let family = Family::new_with_constructor(Buckets(def.buckets));
                    registry.register(def.prometheus, help, family.clone());
                    Door::Histogram(family)
                }
                MetricKind::Gauge => {
                    let family = Family::<Series, Gauge>::default();
                    registry.register(def.prometheus, help, family.clone());
                    Door::Gauge(family)
                }
            };
            doors.push(door);
        }
        let recorder = Self {
            registry,
            doors,
            stages: Admitted::new(MAX_STAGE_LABELS),
            replicas: Admitted::new(MAX_REPLICA_LABELS),
            thresholds: Admitted::new(MAX_THRESHOLD_LABELS),
            live: LiveSources::default(),
            overflowed: AtomicU64::new(0),
            warned: AtomicBool::new(false),
            fed: AtomicBool::new(false),
        };
        recorder.zero_series(DEFAULT_MODEL_NAME, true);
        recorder
    }

    /// A family without labels of its own has its one series per model from the start, at
    /// zero (`create`), or not at all (`!create`: the default model's, taken away).
    fn zero_series(&self, model: &'static str, create: bool) {
        let series = Series(LabelValues {
            model_name: Some(model),
            ..LabelValues::NONE
        });
        for (def, door) in METRICS.iter().zip(&self.doors) {
            if def.labels != Labels::None {
                continue;
            }
            match (door, create) {
                (Door::Counter(f), true) => drop(f.get_or_create(&series)),
                (Door::Histogram(f), true) => drop(f.get_or_create(&series)),
                (Door::Gauge(f), true) => drop(f.get_or_create(&series)),
                (Door::Counter(f), false) => {
                    f.remove(&series);
                }
                (Door::Histogram(f), false) => {
                    f.remove(&series);
                }
                (Door::Gauge(f), false) => {
                    f.remove(&series);
                }
            }
        }
    }

    /// A layer serving `model` was built with this sink: the label-less families' zero
    /// series are that model's from now on. Those of the default model go, unless a request
    /// was given to the sink already (they may count it).
    fn serve_model(&self, model: Option<&str>) {
        let Some(model) = model_label(model) else {
            return; // beyond the cap: its observations are counted as they come
        };
        if model == DEFAULT_MODEL_NAME {
            return;
        }
        if !self.fed.load(Ordering::SeqCst) {
            self.zero_series(DEFAULT_MODEL_NAME, false);
        }
        self.zero_series(model, true);
    }

    fn record_batch(&self, batch: &Batch) {
        let exemplar = batch.trace_id.map(TraceExemplar);
        let rejected = self.admit(batch.observations.iter().map(|(_, l, _)| *l));
        let mut overflowed = 0u64;
        let mut previous = None;
        for &(def, labels, value) in &batch.observations {
            if !rejected.is_empty() && rejected.mentions(&labels) {
                overflowed += 1;
                continue;
            }
            // A series observed several times in a row (a stage's output gaps) gets the
            // request's exemplar once: a bucket keeps only its latest one anyway.
            let repeat = previous.replace((def.id, labels)) == Some((def.id, labels));
            let series = Series(labels);
            match &self.doors[def.id as usize] {
                // Counter values are whole counts (tokens, frames, requests).
                Door::Counter(f) => {
                    f.get_or_create(&series).inc_by(value as u64);
                }
                Door::Histogram(f) => {
                    let exemplar = if repeat { None } else { exemplar };
                    f.get_or_create(&series).observe(value, exemplar, None);
                }
                Door::Gauge(f) => {
                    f.get_or_create(&series).set(gauge_value(value));
                }
            }
        }
        self.overflow(overflowed, &rejected);
    }

    /// Records a pending batch (many requests, folded per series; see [`Pending`]).
    ///
    /// `prometheus-client`'s histograms take one observation at a time, and its exemplars
    /// are made only by an observation: a bucket of `n` observations summing to `s` is
    /// recorded as its exemplar's own value (when it has one) and the others' mean, brought
    /// inside the bucket if rounding put it an ulp out. Counts and buckets are exact, sums
    /// exact to rounding.
    fn merge_pending(&self, pending: &Pending) {
        let rejected = self.admit(pending.series().map(|s| s.labels));
        let mut overflowed = 0u64;
        for folded in pending.series() {
            if !rejected.is_empty() && rejected.mentions(&folded.labels) {
                overflowed = overflowed.saturating_add(folded.observations);
                continue;
            }
            let series = Series(folded.labels);
            let def = folded.def;
            match &self.doors[def.id as usize] {
                Door::Counter(f) => {
                    f.get_or_create(&series).inc_by(folded.total);
                }
                Door::Gauge(f) => {
                    f.get_or_create(&series)
                        .set(i64::try_from(folded.total).unwrap_or(i64::MAX));
                }
                Door::Histogram(f) => {
                    let histogram = f.get_or_create(&series);
                    for (b, &(count, sum)) in folded.buckets.iter().enumerate() {
                        if count == 0 {
                            continue;
                        }
                        let low = b
                            .checked_sub(1)
                            .and_then(|below| def.buckets.get(below))
                            .map_or(f64::NEG_INFINITY, |bound| *bound);
                        let high = def.buckets.get(b).map_or(f64::INFINITY, |bound| *bound);
                        let exemplar = folded.exemplars.get(b).copied().flatten();
                        let (others, others_sum) = match exemplar {
                            Some((value, _)) => (count.saturating_sub(1), sum - value),
                            None => (count, sum),
                        };
                        if others > 0 {
                            let mean = within(others_sum / others as f64, low, high);
                            for _ in 0..others {
                                histogram.observe(mean, None, None);
                            }
                        }
                        if let Some((value, trace)) = exemplar {
                            histogram.observe(value, Some(TraceExemplar(trace)), None);
                        }
                    }
                }
            }
        }
        self.overflow(overflowed, &rejected);
    }

    /// Counts `overflowed` observations of what `rejected` names, said once.
    fn overflow(&self, overflowed: u64, rejected: &Rejected) {
        if overflowed > 0 {
            self.overflowed.fetch_add(overflowed, Ordering::Relaxed);
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    target: "omni_metrics::prometheus",
                    stages = ?rejected.stages,
                    replicas = ?rejected.replicas,
                    thresholds = ?rejected.thresholds,
                    models = rejected.models,
                    "more than {MAX_STAGE_LABELS} distinct stage ids, {MAX_REPLICA_LABELS} \
                     replica ids, {MAX_THRESHOLD_LABELS} audio continuity thresholds or \
                     {MAX_MODEL_NAMES} model names: the Prometheus series of further ones (and \
                     of edges touching them) are not exported, only counted \
                     (PrometheusSink::overflowed_observations). Number stages and replicas \
                     0, 1, 2..."
                );
            }
        }
    }

    /// Admits the stage and replica ids the labels name while fewer than their caps are;
    /// returns what is left out (usually nothing), and whether an observation has no model
    /// name (a model beyond [`MAX_MODEL_NAMES`]).
    fn admit(&self, labels: impl Iterator<Item = LabelValues> + Clone) -> Rejected {
        Rejected {
            stages: self
                .stages
                .admit(labels.clone().flat_map(|l| l.stage_ids())),
            replicas: self
                .replicas
                .admit(labels.clone().flat_map(|l| l.replica_ids())),
            thresholds: self
                .thresholds
                .admit(labels.clone().filter_map(|l| l.threshold_ms)),
            models: labels.clone().any(|l| l.model_name.is_none()),
        }
    }

    /// Sets the gauges to the live gauges of the layers this sink was built into, now
    /// ([`LiveSources::read`]: 0 for a series on which nothing is open any more). Stage and
    /// replica ids beyond the caps are left out (not counted: a reading is no
    /// observation).
    fn read_gauges(&self) {
        let readings = self.live.read();
        let rejected = self.admit(readings.iter().map(|(_, labels, _)| *labels));
        for (def, labels, value) in readings {
            if rejected.mentions(&labels) {
                continue;
            }
            if let Door::Gauge(f) = &self.doors[def.id as usize] {
                f.get_or_create(&Series(labels)).set(gauge_value(value));
            }
        }
    }

    /// The families in `format`, both written by `prometheus-client` from the one registry.
    fn encode(&self, format: Format) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail; the encoders report no error of their own.
        let _ = match format {
            Format::OpenMetrics(_) => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
            Format::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
        };
        out
    }
}

/// A gauge's value (a whole count) as `prometheus-client`'s gauges hold it.
fn gauge_value(value: f64) -> i64 {
    // `as` saturates, and maps NaN to 0.
    value as i64
}

/// A scrape's exposition format, chosen by [`Format::negotiate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// The classic text format 0.0.4 ([`TEXT_CONTENT_TYPE`]): no exemplars.
    Text,
    /// OpenMetrics text, answered with this content type (the version asked for).
    OpenMetrics(&'static str),
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics(content_type) => content_type,
        }
    }

    /// The format an `Accept` header asks for, as Prometheus' Go client negotiates
    /// (`expfmt.NegotiateIncludingOpenMetrics`): the media ranges by preference (`q`, then
    /// the more specific first, then as written); the first that is `text/plain` (version
    /// 0.0.4 or none) or `application/openmetrics-text` (version 1.0.0, 0.0.1 or none)
    /// decides; else, and without a header, the classic text format. Unlike Go's, an
    /// unversioned OpenMetrics range is answered 1.0.0 (the version written), and a range of
    /// `q=0` (not acceptable) or an unreadable `q` is skipped.
    fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut ranges: SmallVec<[MediaRange<'_>; 8]> =
            accept.split(',').filter_map(MediaRange::parse).collect();
        // Stable: equals keep the order written.
        ranges.sort_by(|a, b| {
            b.q.total_cmp(&a.q)
                .then((a.kind == "*").cmp(&(b.kind == "*")))
                .then((a.subtype == "*").cmp(&(b.subtype == "*")))
        });
        for range in &ranges {
            let version = range.version;
            if range.kind.eq_ignore_ascii_case("text")
                && range.subtype.eq_ignore_ascii_case("plain")
                && matches!(version, None | Some("0.0.4"))
            {
                return Format::Text;
            }
            if range.kind.eq_ignore_ascii_case("application")
                && range.subtype.eq_ignore_ascii_case("openmetrics-text")
            {
                match version {
                    None | Some("1.0.0") => return Format::OpenMetrics(OPENMETRICS_CONTENT_TYPE),
                    Some("0.0.1") => return Format::OpenMetrics(OPENMETRICS_0_0_1_CONTENT_TYPE),
                    Some(_) => {}
                }
            }
        }
        Format::Text
    }
}

/// One media range of an `Accept` header: `type/subtype`, its `version` parameter and its
/// preference `q` (above 0).
#[derive(Clone, Copy, Debug)]
struct MediaRange<'a> {
    kind: &'a str,
    subtype: &'a str,
    version: Option<&'a str>,
    q: f32,
}

impl<'a> MediaRange<'a> {
    /// `type/subtype *(; name=value)`; `None` for what is not one, or is not acceptable
    /// (`q=0`, or a `q` that is not a number from 0 to 1).
    fn parse(range: &'a str) -> Option<Self> {
        let mut parts = range.split(';');
        let (kind, subtype) = parts.next()?.trim().split_once('/')?;
        let (kind, subtype) = (kind.trim(), subtype.trim());
        if kind.is_empty() || subtype.is_empty() {
            return None;
        }
        let mut version = None;
        let mut q = 1.0f32;
        for parameter in parts {
            let Some((name, value)) = parameter.split_once('=') else {
                continue;
            };
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            match name.trim() {
                n if n.eq_ignore_ascii_case("q") => {
                    q = value.parse().ok().filter(|q| (0.0..=1.0).contains(q))?;
                }
                n if n.eq_ignore_ascii_case("version") => version = Some(value),
                _ => {}
            }
        }
        (q > 0.0).then_some(Self {
            kind,
            subtype,
            version,
            q,
        })
    }
}

impl Record for Recorder {
    fn record(&self, batch: &Batch) {
        self.record_batch(batch);
    }
}

impl Merge for Recorder {
    fn merge(&self, pending: &Pending) {
        self.merge_pending(pending);
    }
}

/// `mean` inside the bucket `(low, high]` it stands for: rounding may have put a mean of
/// values in the bucket an ulp outside it (or made it NaN, from infinite sums).
fn within(mean: f64, low: f64, high: f64) -> f64 {
    if mean > low && mean <= high {
        mean
    } else if mean > high {
        high
    } else if low.is_finite() {
        next_up(low)
    } else if high.is_finite() {
        high
    } else {
        0.0
    }
}

/// The least `f64` above finite `x` (`f64::next_up` is newer than the crate's MSRV).
fn next_up(x: f64) -> f64 {
    if x == 0.0 {
        f64::from_bits(1)
    } else if x > 0.0 {
        f64::from_bits(x.to_bits() + 1)
    } else {
        f64::from_bits(x.to_bits() - 1)
    }
}

/// The recorder and the queue to its thread: what the sink's clones and the server share.
#[derive(Debug)]
struct Shared {
    recorder: Arc<Recorder>,
    /// `None` if the OS refused the recorder thread: requests are then recorded on the
    /// engine's thread, as a last resort (nothing is lost).
    queue: Option<ObservationQueue>,
}

/// Said once if a request is ever not wholly recorded (see
/// [`PrometheusSink::dropped_requests`]); the figure is the queue's `MAX_SERIES`.
const LOST_MESSAGE: &str = "Prometheus: the recorder fell behind and the requests waiting \
    for it make more than 1,024 distinct series at once; observations of further series are \
    not in the scraped metrics (their requests counted in PrometheusSink::dropped_requests). \
    Number stages 0, 1, 2... and keep the edges between them few. The tables and records are \
    complete. Said once.";

/// How long a scrape waits for the requests queued before it to be recorded.
const SCRAPE_DRAIN: Duration = Duration::from_secs(1);

impl Shared {
    fn new() -> Self {
        let recorder = Arc::new(Recorder::new());
        let queue = ObservationQueue::start_coalescing(
            "omni-metrics-prometheus-recorder",
            RECORD_QUEUE_CAPACITY,
            recorder.clone(),
            LOST_MESSAGE,
        )
        .inspect_err(|e| {
            tracing::warn!(
                target: "omni_metrics::prometheus",
                "the Prometheus recorder thread could not start ({e}): requests are recorded \
                 on the engine's threads instead"
            );
        })
        .ok();
        Self { recorder, queue }
    }

    fn push(&self, request: &RequestE2EStats) {
        if !self.recorder.fed.load(Ordering::Relaxed) {
            self.recorder.fed.store(true, Ordering::SeqCst);
        }
        match &self.queue {
            Some(queue) => queue.push(request, true),
            None => {
                let mut batch = Batch {
                    trace_id: request.trace_id.as_deref().and_then(parse_trace_id),
                    ..Batch::default()
                };
                observe(request, |def, labels, value| {
                    batch.observations.push((def, labels, value));
                });
                self.recorder.record_batch(&batch);
            }
        }
    }

    /// The text of a scrape in `format`, with every request finished before it recorded
    /// and the live gauges read now.
    fn encode(&self, format: Format) -> String {
        self.drain(Instant::now() + SCRAPE_DRAIN);
        self.recorder.read_gauges();
        self.recorder.encode(format)
    }

    /// Waits until every request finished so far is recorded, until `deadline`.
    fn drain(&self, deadline: Instant) -> bool {
        self.queue
            .as_ref()
            .is_none_or(|queue| queue.drain(deadline))
    }
}

/// Finished requests that may wait for the Prometheus recorder thread one by one; while it
/// is full, further ones are folded into pending batches (see the module's documentation),
/// not dropped.
const RECORD_QUEUE_CAPACITY: usize = 1024;

/// Records finished requests as vLLM-Omni-compatible Prometheus families and serves them
/// on `GET /metrics`, in the format the scrape's `Accept` header asks for
/// ([`PrometheusSink::encode_for`]): OpenMetrics text, with exemplars (the requests'
/// `trace_id`s), to a scraper that asks for it, as a Prometheus server does; the classic
/// text format 0.0.4 to others (`curl`, `promtool`, classic parsers), which has **no
/// exemplars**.
///
/// Clones share the families and the endpoint; the endpoint closes when the last clone
/// drops (the layer holding it, typically). Add it to a layer with
/// [`Builder::with_sink`](crate::Builder::with_sink), or let `OMNI_METRICS_PROMETHEUS_ADDR`
/// create one when the code adds none.
///
/// ```no_run
/// use omni_metrics::{OmniMetricsLayer, PrometheusSink};
///
/// let layer = OmniMetricsLayer::builder()
///     .with_sink(PrometheusSink::bind(PrometheusSink::DEFAULT_ADDR)?) // 127.0.0.1:9464
///     .build()?;
/// # drop(layer);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// ```
/// use omni_metrics::PrometheusSink;
/// use omni_metrics::report::Sink;
/// use omni_metrics::stats::RequestE2EStats;
///
/// let prometheus = PrometheusSink::unserved();
/// prometheus.on_request(&RequestE2EStats { e2e_total_ms: 250.0, ..Default::default() });
/// let text = prometheus.encode();
/// assert!(text.contains("vllm_omni:e2e_request_latency_s_sum{model_name=\"unknown\"} 0.25"));
/// assert!(text.contains(
///     "vllm_omni:requests_success_total{model_name=\"unknown\",finished_reason=\"stop\"} 1"
/// ));
/// ```
#[derive(Clone, Debug)]
pub struct PrometheusSink {
    shared: Arc<Shared>,
    server: Option<Arc<Server>>,
}

impl PrometheusSink {
    /// The address to [`bind`](Self::bind) when you have no other: loopback only, port 9464
    /// (the OpenTelemetry Prometheus exporter's port; vLLM serves its own `/metrics` on its
    /// API port, so the two never clash). Expose it beyond the host by asking for it:
    /// `0.0.0.0:9464`.
    pub const DEFAULT_ADDR: &'static str = DEFAULT_PROMETHEUS_ADDR;

    /// Records and serves `GET /metrics` on `addr` (`host:port`, e.g.
    /// [`DEFAULT_ADDR`](Self::DEFAULT_ADDR); a bare `port` or `:port` means `127.0.0.1:port`; port
    /// 0 picks a free one, see [`PrometheusSink::local_addr`]), from a thread of its own.
    ///
    /// # Errors
    ///
    /// [`PrometheusError`] when the address is not one or cannot be bound (in use, or
    /// a privileged port); its message says what to do.
    pub fn bind(addr: impl Into<String>) -> Result<Self, PrometheusError> {
        Self::bind_from(addr.into(), false)
    }

    /// Records only: no endpoint. Serve [`PrometheusSink::encode`] from a server of your
    /// own, or read it in tests.
    pub fn unserved() -> Self {
        Self {
            shared: Arc::new(Shared::new()),
            server: None,
        }
    }

    /// The sink [`Builder::build`](crate::Builder::build) adds: `addr` from the code, else
    /// `OMNI_METRICS_PROMETHEUS_ADDR` when set and not empty, else none.
    pub(crate) fn configured(code: Option<String>) -> Result<Option<Self>, PrometheusError> {
        if let Some(addr) = code {
            return Self::bind_from(addr, false).map(Some);
        }
        match std::env::var(PROMETHEUS_ADDR_ENV) {
            Ok(addr) if !addr.trim().is_empty() => Self::bind_from(addr, true).map(Some),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(raw)) => Err(PrometheusError {
                addr: raw.to_string_lossy().into_owned(),
                from_env: true,
                source: io::Error::new(io::ErrorKind::InvalidInput, "not valid UTF-8"),
            }),
        }
    }

    fn bind_from(addr: String, from_env: bool) -> Result<Self, PrometheusError> {
        let error = |source| PrometheusError {
            addr: addr.clone(),
            from_env,
            source,
        };
        let listener = TcpListener::bind(&*with_default_host(&addr)).map_err(error)?;
        let local = listener.local_addr().map_err(error)?;
        listener.set_nonblocking(true).map_err(error)?;
        let shared = Arc::new(Shared::new());
        let (stop, thread_stop) = oneshot::channel();
        let (started_tx, started) = std::sync::mpsc::channel();
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("omni-metrics-prometheus".into())
            .spawn(move || run_server(listener, thread_shared, thread_stop, &started_tx))
            .map_err(error)?;
        // The runtime is built on its own thread (never dropped on the caller's, which may
        // be async); it says whether it started.
        match started.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(error(e)),
            Err(_) => return Err(error(io::Error::other("the server thread ended at start"))),
        }
        Ok(Self {
            shared,
            server: Some(Arc::new(Server {
                addr: local,
                _stop: stop,
            })),
        })
    }

    /// The address the endpoint is bound to (the port chosen for port 0); `None` for
    /// [`PrometheusSink::unserved`].
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(|s| s.addr)
    }

    /// The OpenMetrics text (with exemplars, ending `# EOF`) of the families now, once the
    /// requests finished before the call are recorded (it waits up to a second for the
    /// recorder thread). Its content type is
    /// `application/openmetrics-text; version=1.0.0; charset=utf-8`. To answer a
    /// scrape, use [`PrometheusSink::encode_for`], which also serves classic scrapers.
    pub fn encode(&self) -> String {
        self.shared
            .encode(Format::OpenMetrics(OPENMETRICS_CONTENT_TYPE))
    }

    /// The answer to a scrape whose `Accept` header is `accept` (`None` without one): its
    /// `Content-Type` and body, negotiated as Prometheus' client libraries do. OpenMetrics
    /// text (`application/openmetrics-text; version=1.0.0; charset=utf-8`, or its
    /// `version=0.0.1` when only that is asked for) when `accept` prefers
    /// `application/openmetrics-text`, as Prometheus' scrapes do; otherwise the classic text
    /// format 0.0.4 (`text/plain; version=0.0.4; charset=utf-8`): no exemplars,
    /// no `# EOF`, a counter's `# HELP` and `# TYPE` on its `_total` name. The endpoint
    /// answers with this; a server of your own serves `/metrics` with it too (add
    /// `Vary: Accept`). Waits for the recorder as [`PrometheusSink::encode`] does.
    ///
    /// ```
    /// use omni_metrics::PrometheusSink;
    ///
    /// let prometheus = PrometheusSink::unserved();
    /// // In a handler: the request's `Accept` header, if any.
    /// let accept = Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5");
    /// let (content_type, body) = prometheus.encode_for(accept);
    /// assert_eq!(content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    /// assert!(body.ends_with("# EOF\n"));
    ///
    /// // curl, promtool, a classic parser: the classic text format.
    /// let (content_type, body) = prometheus.encode_for(None);
    /// assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    /// assert!(body.contains("# TYPE vllm_omni:prompt_tokens_total counter\n"));
    /// assert!(body.contains("\nvllm_omni:prompt_tokens_total{model_name=\"unknown\"} 0\n"));
    /// ```
    pub fn encode_for(&self, accept: Option<&str>) -> (&'static str, String) {
        let format = Format::negotiate(accept);
        (format.content_type(), self.shared.encode(format))
    }

    /// Waits until every request finished before the call is recorded, at most `timeout`;
    /// `false` if it gave up (the recorder is that far behind). [`PrometheusSink::encode`]
    /// and a scrape wait up to a second by themselves; after a burst far beyond what the
    /// recorder keeps up with, wait longer here first.
    pub fn wait_recorded(&self, timeout: Duration) -> bool {
        self.shared.drain(Instant::now() + timeout)
    }

    /// Requests not wholly recorded: while the recorder falls behind, finished requests are
    /// folded into pending batches of at most 1,024 distinct series; observations of a
    /// series beyond that are lost and their requests counted here (said once as a warning).
    /// 0 for an engine whose stages and edges make fewer series.
    pub fn dropped_requests(&self) -> u64 {
        self.shared
            .queue
            .as_ref()
            .map_or(0, ObservationQueue::dropped)
    }

    /// Observations not exported because their stage id came after the first
    /// 64 distinct ones, their replica id after the first 64, or their model name after the
    /// process's first 16.
    pub fn overflowed_observations(&self) -> u64 {
        self.shared.recorder.overflowed.load(Ordering::Relaxed)
    }

    /// The layer being built with this sink serves `model` (its
    /// [`Builder::with_model_name`](crate::Builder::with_model_name)); see
    /// [`Recorder::serve_model`].
    pub(crate) fn serve_model(&self, model: Option<&str>) {
        self.shared.recorder.serve_model(model);
    }
}

impl Sink for PrometheusSink {
    fn on_request(&self, request: &RequestE2EStats) {
        // Queued: the families' locks (which a scrape holds while it formats) are taken on
        // the recorder thread, never on the engine's.
        self.shared.push(request);
    }

    /// Each scrape reads the live gauges of the layers built with this sink (see
    /// [`crate::metrics::prometheus`]).
    fn on_layer_built(&self, handle: &MetricsHandle) {
        self.shared.recorder.live.attach(handle);
    }
}

/// `port` and `:port` mean `127.0.0.1:port`: loopback unless asked otherwise.
fn with_default_host(addr: &str) -> Cow<'_, str> {
    let addr = addr.trim();
    let port = addr.strip_prefix(':').unwrap_or(addr);
    if port.parse::<u16>().is_ok() {
        Cow::Owned(format!("127.0.0.1:{port}"))
    } else {
        Cow::Borrowed(addr)
    }
}

/// The running endpoint: its address, and the sender whose drop (with the last sink
/// clone) stops the server thread, which closes the listener and every connection.
#[derive(Debug)]
struct Server {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

/// Connections served at once. Beyond them a connection is answered 503 (if its socket
/// takes the bytes at once) and closed, never queued: slots free within the deadlines.
const MAX_CONNECTIONS: usize = 64;

/// Deadline on a whole request head, from the connection's start (or the end of the
/// previous response on a kept-alive connection) however the bytes trickle in.
const HEAD_DEADLINE: Duration = Duration::from_secs(5);

/// Deadline from a request's head to its whole response written; past it the connection is
/// closed. An encode waits at most a second for the recorder: the rest is the client's.
const RESPONSE_DEADLINE: Duration = Duration::from_secs(10);

/// Scrapes encoded at once, on the runtime's blocking threads (an encode waits for the
/// recorder); further ones wait their turn within their response deadline.
const ENCODERS: usize = 2;

/// The answer to a connection beyond [`MAX_CONNECTIONS`].
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\
    Retry-After: 1\r\nConnection: close\r\n\r\n";

/// The server thread: a current-thread tokio runtime of its own (the engine's threads never
/// touch it) serving `listener` until `stop`'s sender drops. Says through `started` whether
/// the runtime could start.
fn run_server(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: oneshot::Receiver<()>,
    started: &std::sync::mpsc::Sender<io::Result<()>>,
) {
    // Nothing this thread does is traced: its spans and events would be the engine's.
    let _quiet = tracing::dispatcher::set_default(&tracing::Dispatch::none());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(ENCODERS)
        .thread_name("omni-metrics-prometheus-encode")
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => return drop(started.send(Err(e))),
    };
    let listener = {
        let _context = runtime.enter();
        tokio::net::TcpListener::from_std(listener)
    };
    let listener = match listener {
        Ok(listener) => listener,
        Err(e) => return drop(started.send(Err(e))),
    };
    let _ = started.send(Ok(()));
    runtime.block_on(serve(listener, shared, stop));
    // The listener is closed; connections still open are dropped, and an encode under way
    // is left to finish on its own.
    runtime.shutdown_background();
}

/// Accepts connections until `stop`, each served on a task of its own, at most
/// [`MAX_CONNECTIONS`] at once.
async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let http = http1_server();
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            // Out of file descriptors, say: wait instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                tokio::spawn(connection(http.clone(), stream, Arc::clone(&shared), slot));
            }
            // Written on the plain socket (tokio's `try_write` waits for a readiness event
            // a fresh socket may not have had yet): its empty send buffer takes them at
            // once; whether the client reads them before the close is its own affair.
            Err(_) => {
                if let Ok(stream) = stream.into_std() {
                    let _ = io::Write::write(&mut &stream, REFUSED);
                }
            }
        }
    }
}

/// hyper's HTTP/1 server: [`HEAD_DEADLINE`] on each head, heads of at most
/// [`MAX_REQUEST_HEAD`], keep-alive when the client asks.
fn http1_server() -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEAD_DEADLINE)
        .max_buf_size(MAX_REQUEST_HEAD)
        .keep_alive(true);
    http
}

/// Serves one connection (holding `_slot` while it lives): hyper closes it when a head
/// misses [`HEAD_DEADLINE`], this when a response misses [`RESPONSE_DEADLINE`] (counted
/// from the latest head: a kept-alive connection idle past it is closed too).
async fn connection(
    http: http1::Builder,
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    shared: Arc<Shared>,
    _slot: OwnedSemaphorePermit,
) {
    let (deadline_tx, mut deadline) = watch::channel(None::<tokio::time::Instant>);
    let service = service_fn(move |request| {
        deadline_tx.send_replace(Some(tokio::time::Instant::now() + RESPONSE_DEADLINE));
        respond(request, Arc::clone(&shared))
    });
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    loop {
        let due = *deadline.borrow_and_update();
        let overdue = async {
            match due {
                Some(due) => tokio::time::sleep_until(due).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // Served, hung up, or a bad or late head: done either way.
            _ = conn.as_mut() => return,
            () = overdue => return,
            // A request began (on a kept-alive connection, the next one): its own deadline.
            Ok(()) = deadline.changed() => {}
        }
    }
}

/// Answers one request: `GET`/`HEAD` [`METRICS_PATH`] (any query) with the scrape in the
/// format its `Accept` asks for ([`Format::negotiate`]; `Vary: Accept`), another path 404,
/// another method 405. The connection closes after the response unless the client
/// asked for keep-alive (an idle connection holds a slot; Prometheus, scraping every 15 s or
/// more, would find it closed by the head deadline anyway).
async fn respond(
    request: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<String>, Infallible> {
    let text = "text/plain; charset=utf-8";
    let mut response = match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, METRICS_PATH) => {
            let format = Format::negotiate(accept(&request).as_deref());
            let encode = tokio::task::spawn_blocking(move || {
                tracing::dispatcher::with_default(&tracing::Dispatch::none(), || {
                    shared.encode(format)
                })
            });
            match encode.await {
                Ok(body) => {
                    let mut scrape = reply(StatusCode::OK, format.content_type(), body);
                    scrape
                        .headers_mut()
                        .insert(header::VARY, HeaderValue::from_static("accept"));
                    scrape
                }
                // The encoder panicked: a failed scrape, the endpoint still serves.
                Err(_) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    text,
                    "the metrics could not be encoded\n".into(),
                ),
            }
        }
        (&Method::GET | &Method::HEAD, _) => reply(
            StatusCode::NOT_FOUND,
            text,
            format!("not found: the metrics are at {METRICS_PATH}\n"),
        ),
        _ => {
            let mut refused = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                text,
                format!("method not allowed: use GET {METRICS_PATH}\n"),
            );
            refused
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            refused
        }
    };
    if !asks_keep_alive(&request) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

/// A response with its content type, length and `Cache-Control: no-store` (hyper sends no
/// body to `HEAD`).
fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<String> {
    let length = HeaderValue::from(body.len());
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, length);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The request's `Accept` header (its fields joined, if it has several); `None` without
/// one, or with one that is not text.
fn accept(request: &Request<Incoming>) -> Option<Cow<'_, str>> {
    let mut fields = request.headers().get_all(header::ACCEPT).iter();
    let first = fields.next()?.to_str().ok()?;
    let mut joined = Cow::Borrowed(first);
    for field in fields {
        let field = field.to_str().ok()?;
        let all = joined.to_mut();
        all.push(',');
        all.push_str(field);
    }
    Some(joined)
}

/// Whether the request says `Connection: keep-alive`.
fn asks_keep_alive(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("keep-alive"))
}

/// The Prometheus endpoint could not be started: the address is not one, or cannot be
/// bound. The message says which address, where it came from and what to do.
#[derive(Debug)]
pub struct PrometheusError {
    addr: String,
    from_env: bool,
    source: io::Error,
}

impl PrometheusError {
    /// The address asked for, as given.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether it came from `OMNI_METRICS_PROMETHEUS_ADDR`.
    pub fn from_env(&self) -> bool {
        self.from_env
    }

    /// What went wrong: [`io::ErrorKind::AddrInUse`] for a port already served,
    /// [`io::ErrorKind::InvalidInput`] for an address that is not one, ...
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

impl fmt::Display for PrometheusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot serve Prometheus metrics on `{}`", self.addr)?;
        if self.from_env {
            write!(f, " (from {PROMETHEUS_ADDR_ENV})")?;
        }
        write!(f, ": {}; ", self.source)?;
        match self.source.kind() {
            io::ErrorKind::AddrInUse => f.write_str(
                "another process (or another layer of this one) serves that port: choose \
                 another port, or port 0 for any free one",
            )?,
            io::ErrorKind::PermissionDenied => {
                f.write_str("ports below 1024 need privileges: choose a higher port")?;
            }
            io::ErrorKind::AddrNotAvailable => {
                f.write_str("that host is not an address of this machine: use 127.0.0.1")?;
            }
            _ => write!(
                f,
                "give host:port, such as {DEFAULT_PROMETHEUS_ADDR} (port 0 picks a free port)"
            )?,
        }
        if self.from_env {
            write!(f, ", or unset {PROMETHEUS_ADDR_ENV}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PrometheusError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::StageRequestStats;

    #[test]
    fn trace_ids_make_exemplars_only_when_valid() {
        let id = "4BF92F3577B34DA6A3CE929D0E0E4736";
        assert_eq!(
            parse_trace_id(id).map(|t| TraceExemplar(t).as_str().to_owned()),
            Some(id.to_ascii_lowercase())
        );
        for bad in ["", "abc", &"0".repeat(32), &"g".repeat(32), &"a".repeat(33)] {
            assert!(parse_trace_id(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn bare_ports_mean_loopback() {
        assert_eq!(with_default_host("9464"), "127.0.0.1:9464");
        assert_eq!(with_default_host(" :0 "), "127.0.0.1:0");
        assert_eq!(with_default_host("0.0.0.0:9464"), "0.0.0.0:9464");
        assert_eq!(with_default_host("[::1]:9464"), "[::1]:9464");
    }

    #[test]
    fn stage_ids_beyond_the_cap_are_counted_not_exported() {
        let sink = PrometheusSink::unserved();
        for id in 0..(MAX_STAGE_LABELS as u64 + 3) {
            sink.on_request(&RequestE2EStats {
                stages: vec![StageRequestStats {
                    stage_id: id,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        let text = sink.encode();
        let last = MAX_STAGE_LABELS as u64 - 1;
        assert!(text.contains(&format!("stage=\"{last}\"")));
        assert!(!text.contains(&format!("stage=\"{}\"", last + 1)));
        // Three stages over, three stage histograms each (gen, queue, postprocess).
        assert_eq!(sink.overflowed_observations(), 9);
        // The requests themselves still count.
        assert!(text.contains(&format!(
            "vllm_omni:requests_success_total{{model_name=\"unknown\",finished_reason=\"stop\"}} {}",
            MAX_STAGE_LABELS + 3
        )));
    }

    #[test]
    fn a_burst_beyond_the_queue_is_recorded_whole() {
        let sink = PrometheusSink::unserved();
        let request = RequestE2EStats {
            e2e_total_ms: 70.0,
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            ..Default::default()
        };
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..4 * RECORD_QUEUE_CAPACITY {
                        sink.on_request(&request);
                    }
                });
            }
        });
        assert!(sink.wait_recorded(Duration::from_secs(60)));
        let text = sink.encode();
        let n = 8 * RECORD_QUEUE_CAPACITY;
        assert!(
            text.contains(&format!(
                "vllm_omni:e2e_request_latency_s_count{{model_name=\"unknown\"}} {n}\n"
            )),
            "{text}"
        );
        assert!(text.contains(&format!("e2e_request_latency_s_bucket{{le=\"0.1\",model_name=\"unknown\"}} {n} # {{trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"}} 0.07\n")), "{text}");
        assert_eq!(sink.dropped_requests(), 0);
    }

    #[test]
    fn a_folded_mean_stays_in_its_bucket() {
        assert_eq!(within(0.3, 0.25, 0.5), 0.3);
        assert_eq!(within(0.500_000_000_1, 0.25, 0.5), 0.5);
        assert_eq!(within(0.25, 0.25, 0.5), next_up(0.25));
        assert!(next_up(0.25) > 0.25 && next_up(0.25) < 0.250_000_000_1);
        assert_eq!(within(f64::NAN, f64::NEG_INFINITY, 0.05), 0.05);
        assert_eq!(within(f64::INFINITY, 300.0, f64::INFINITY), f64::INFINITY);
        assert_eq!(within(f64::NAN, 300.0, f64::INFINITY), next_up(300.0));
        assert!(LOST_MESSAGE.contains(&format!("1,{:03}", super::super::queue::MAX_SERIES - 1000)));
    }

    /// Runs `f` on a current-thread runtime whose clock advances only when it idles.
    fn paused<F: std::future::Future>(f: impl FnOnce() -> F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(f())
    }

    #[test]
    fn a_response_not_taken_is_cut_at_its_deadline() {
        use tokio::io::AsyncWriteExt;
        paused(|| async {
            // A 64-byte pipe: the response's head alone fills it, and the client never reads.
            let (mut client, server) = tokio::io::duplex(64);
            let slot = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
            let started = tokio::time::Instant::now();
            let served = tokio::spawn(connection(
                http1_server(),
                server,
                Arc::new(Shared::new()),
                slot,
            ));
            client
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            served.await.unwrap();
            let took = started.elapsed();
            assert!(
                took >= RESPONSE_DEADLINE && took < RESPONSE_DEADLINE + Duration::from_secs(1),
                "{took:?}"
            );
            drop(client);
        });
    }

    #[test]
    fn a_trickled_head_is_cut_at_its_deadline_and_a_kept_alive_one_too() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        paused(|| async {
            let (mut client, server) = tokio::io::duplex(64 * 1024);
            let slot = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
            let started = tokio::time::Instant::now();
            let served = tokio::spawn(connection(
                http1_server(),
                server,
                Arc::new(Shared::new()),
                slot,
            ));
            // A byte a second: each read is prompt, the head never whole.
            for byte in b"GET /metrics HTTP/1.1\r\n" {
                if client.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            served.await.unwrap();
            let took = started.elapsed();
            assert!(took >= HEAD_DEADLINE && took < HEAD_DEADLINE + Duration::from_secs(2));

            // Kept alive after a response, an idle connection is closed by the same deadline.
            let (mut client, server) = tokio::io::duplex(64 * 1024);
            let slot = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
            let served = tokio::spawn(connection(
                http1_server(),
                server,
                Arc::new(Shared::new()),
                slot,
            ));
            client
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
                .await
                .unwrap();
            let mut response = [0u8; 12];
            client.read_exact(&mut response).await.unwrap();
            assert_eq!(&response, b"HTTP/1.1 404");
            let answered = tokio::time::Instant::now();
            served.await.unwrap();
            let idle = answered.elapsed();
            assert!(
                idle >= HEAD_DEADLINE - Duration::from_millis(10),
                "{idle:?}"
            );
            assert!(idle < HEAD_DEADLINE + Duration::from_secs(1), "{idle:?}");
        });
    }

    /// A request that makes an observation of every family, with a trace id.
    fn every_family() -> RequestE2EStats {
        use crate::stats::{EdgeName, TransferEdgeStats};
        RequestE2EStats {
            request_id: "r-1".into(),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            e2e_total_ms: 41_250.0,
            time_to_first_output_ms: Some(950.0),
            time_to_first_audio_ms: Some(1_200.5),
            audio_duration_ms: Some(21_896.875),
            audio_e2e_rtf: Some(1.886),
            stages: vec![
                StageRequestStats {
                    stage_id: 0,
                    num_tokens_in: 4860,
                    num_tokens_out: 67,
                    stage_gen_time_ms: 9_910.007,
                    postprocess_time_ms: 256.158,
                    queue_time_ms: 12.5,
                    time_to_first_output_ms: Some(42.5),
                    inter_output_gaps_ms: vec![20.0, 30.0],
                    output_chunks: 3,
                    first_output_ns: Some(1_000_000),
                    last_output_ns: Some(67_000_000),
                    ..Default::default()
                },
                StageRequestStats {
                    stage_id: 2,
                    num_tokens_in: 4384,
                    num_tokens_out: 275,
                    stage_gen_time_ms: 5_000.0,
                    audio_generated_frames: 525_525,
                    audio_sample_rate: Some(24_000),
                    audio_duration_ms: Some(21_896.875),
                    audio_rtf: Some(0.228),
                    audio_underrun_ms: Some(100.0),
                    audio_max_gap_ms: Some(100.0),
                    audio_continuity: vec![crate::stats::AudioContinuity {
                        threshold_ms: 100,
                        ok: true,
                    }],
                    ..Default::default()
                },
                // An audio stage that produced none.
                StageRequestStats {
                    stage_id: 3,
                    audio_sample_rate: Some(24_000),
                    audio_skipped: Some("no_frames"),
                    ..Default::default()
                },
            ],
            transfers: vec![TransferEdgeStats {
                edge: EdgeName { from: 0, to: 2 },
                from_stage: 0,
                to_stage: 2,
                size_bytes: 111_900_005,
                tx_time_ms: 78.701,
                rx_decode_time_ms: 111.865,
                in_flight_time_ms: 2.015,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// A family as Python's `prometheus_client.parser.text_string_to_metric_families` (the
    /// classic text format's parser) reads it: its name, type, help and samples' names.
    #[derive(Debug)]
    struct ClassicFamily {
        name: String,
        kind: String,
        help: String,
        samples: Vec<String>,
    }

    /// Python's classic parser, line for line: a family is named by its `# HELP` or
    /// `# TYPE` line, takes only the samples its type allows (`name` for a counter or gauge,
    /// `name_bucket`, `_sum`, `_count` for a histogram), and a sample it does not take is a
    /// family of its own, `unknown`. A counter family named `x_total` is `x`; one named `x`
    /// has its samples renamed `x_total`.
    fn read_as_python_classic(text: &str) -> Vec<ClassicFamily> {
        fn build(name: &str, kind: &str, help: &str, samples: Vec<String>) -> ClassicFamily {
            let kind = if kind == "untyped" { "unknown" } else { kind };
            let (name, samples) = match (kind, name.strip_suffix("_total")) {
                ("counter", Some(stripped)) => (stripped.to_owned(), samples),
                ("counter", None) => (
                    name.to_owned(),
                    samples.into_iter().map(|s| s + "_total").collect(),
                ),
                _ => (name.to_owned(), samples),
            };
            ClassicFamily {
                name,
                kind: kind.to_owned(),
                help: help.to_owned(),
                samples,
            }
        }
        let mut families = Vec::new();
        let (mut name, mut kind, mut help) = (String::new(), "untyped".to_owned(), String::new());
        let mut samples: Vec<String> = Vec::new();
        let mut allowed: Vec<String> = Vec::new();
        for line in text.lines().map(str::trim) {
            if let Some(comment) = line.strip_prefix('#') {
                let mut parts = comment.trim_start().splitn(3, ' ');
                let (token, family, rest) = (
                    parts.next().unwrap_or(""),
                    parts.next().unwrap_or(""),
                    parts.next().unwrap_or(""),
                );
                if token != "HELP" && token != "TYPE" {
                    continue; // `# EOF`, `# UNIT`: comments
                }
                if family != name {
                    if !name.is_empty() {
                        families.push(build(&name, &kind, &help, std::mem::take(&mut samples)));
                    }
                    name = family.to_owned();
                    kind = "untyped".into();
                    help.clear();
                    samples.clear();
                    allowed = vec![name.clone()];
                }
                if token == "HELP" {
                    help = rest.to_owned();
                } else {
                    kind = rest.to_owned();
                    let suffixes: &[&str] = match rest {
                        "summary" => &["_count", "_sum", ""],
                        "histogram" => &["_count", "_sum", "_bucket"],
                        _ => &[""],
                    };
                    allowed = suffixes.iter().map(|s| format!("{name}{s}")).collect();
                }
            } else if !line.is_empty() {
                let sample = line.split(['{', ' ']).next().unwrap_or_default().to_owned();
                if allowed.contains(&sample) {
                    samples.push(sample);
                } else {
                    if !name.is_empty() {
                        families.push(build(&name, &kind, &help, std::mem::take(&mut samples)));
                    }
                    name.clear();
                    kind = "untyped".into();
                    help.clear();
                    allowed.clear();
                    families.push(build(&sample, "untyped", "", vec![sample.clone()]));
                }
            }
        }
        if !name.is_empty() {
            families.push(build(&name, &kind, &help, samples));
        }
        families
    }

    const PROMETHEUS_2_42_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
        application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,\
        */*;q=0.1";

    #[test]
    fn the_accept_header_chooses_the_format_as_prometheus_client_libraries_do() {
        let sink = PrometheusSink::unserved();
        let om = OPENMETRICS_CONTENT_TYPE;
        let om_0_0_1 = "application/openmetrics-text; version=0.0.1; charset=utf-8";
        let text = TEXT_CONTENT_TYPE;
        assert_eq!(text, "text/plain; version=0.0.4; charset=utf-8");
        for (accept, want) in [
            // No header, anything, or the classic format: the classic format.
            (None, text),
            (Some(""), text),
            (Some("*/*"), text),
            (Some("text/plain"), text),
            (Some("text/plain; version=0.0.4; charset=utf-8"), text),
            (Some("text/*;q=0.9, application/json"), text),
            // Prometheus' own scrape header (2.x): OpenMetrics 1.0.0.
            (Some(PROMETHEUS_2_42_ACCEPT), om),
            (Some("application/openmetrics-text"), om),
            (Some("application/openmetrics-text; version=1.0.0"), om),
            (Some("Application/OpenMetrics-Text; Version=\"1.0.0\""), om),
            (Some("application/openmetrics-text;version=0.0.1"), om_0_0_1),
            (
                Some("application/openmetrics-text;version=0.0.1,text/plain;q=0.5"),
                om_0_0_1,
            ),
            // Preference by q, whatever the order written.
            (Some("text/plain;q=0.5, application/openmetrics-text"), om),
            (
                Some("application/openmetrics-text;q=0.3, text/plain;q=0.5"),
                text,
            ),
            (
                Some("text/plain;version=0.0.4;q=0.2,application/openmetrics-text;q=0.8"),
                om,
            ),
            // q=0 is "not acceptable"; a version this crate does not write is skipped.
            (
                Some("application/openmetrics-text;q=0, text/plain;q=0.1"),
                text,
            ),
            (
                Some("application/openmetrics-text;version=2.0.0, */*"),
                text,
            ),
            (
                Some("text/plain;version=1.0.0, application/openmetrics-text;q=0.1"),
                om,
            ),
            // Protobuf is not served: the next choice, else the classic format.
            (
                Some(
                    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
                     encoding=delimited,application/openmetrics-text;q=0.9",
                ),
                om,
            ),
            (
                Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily"),
                text,
            ),
            // Garbage is no preference.
            (Some(",,;;==, /;q=x"), text),
        ] {
            assert_eq!(sink.encode_for(accept).0, want, "Accept: {accept:?}");
        }
    }

    #[test]
    fn classic_text_reads_right_in_python_classic_parser() {
        let sink = PrometheusSink::unserved();
        sink.on_request(&every_family());
        let (content_type, text) = sink.encode_for(None);
        assert_eq!(content_type, TEXT_CONTENT_TYPE);
        let families = read_as_python_classic(&text);
        // Every catalogue family, once, typed as it is, with its help; nothing unknown. But
        // the gauges with labels of their own: without a layer no stage or edge was ever in
        // flight, and the classic text leaves out a family without series.
        let unread = |def: &super::super::catalog::MetricDef| {
            def.kind == MetricKind::Gauge && def.labels != Labels::None
        };
        let read = METRICS.iter().filter(|d| !unread(d)).count();
        assert_eq!(families.len(), read, "{families:#?}\n{text}");
        for def in METRICS.iter().filter(|d| !unread(d)) {
            let family = families
                .iter()
                .find(|f| f.name == def.prometheus)
                .unwrap_or_else(|| panic!("no family {}: {families:#?}\n{text}", def.prometheus));
            let help = def.help.strip_suffix('.').unwrap_or(def.help);
            assert_eq!(family.help, format!("{help}."), "{}", def.prometheus);
            match def.kind {
                MetricKind::Counter => {
                    assert_eq!(family.kind, "counter", "{family:?}");
                    assert!(!family.samples.is_empty(), "{family:?}");
                    let total = format!("{}_total", def.prometheus);
                    assert!(family.samples.iter().all(|s| *s == total), "{family:?}");
                }
                MetricKind::Histogram => {
                    assert_eq!(family.kind, "histogram", "{family:?}");
                    for suffix in ["_bucket", "_sum", "_count"] {
                        let sample = format!("{}{suffix}", def.prometheus);
                        assert!(family.samples.contains(&sample), "{family:?}");
                    }
                }
                // No layer: the label-less ones' zero series only.
                MetricKind::Gauge => {
                    assert_eq!(family.kind, "gauge", "{family:?}");
                    assert!(family.samples.iter().all(|s| s == def.prometheus));
                }
            }
        }
        // The classic format has no exemplars, units or end marker.
        assert!(!text.contains(" # {"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        assert!(!text.contains("# UNIT"), "{text}");

        // The same parser misreads OpenMetrics (the issue): an empty counter family and an
        // unknown `_total` one.
        let misread = read_as_python_classic(&sink.encode());
        let counter = misread
            .iter()
            .find(|f| f.name == "vllm_omni:prompt_tokens")
            .expect("a family of that name");
        assert_eq!(counter.kind, "counter");
        assert!(counter.samples.is_empty(), "{counter:?}");
        assert!(
            misread
                .iter()
                .any(|f| f.name == "vllm_omni:prompt_tokens_total" && f.kind == "unknown"),
            "{misread:#?}"
        );
    }

    // Long: every kind of family in both formats, their expected lines side by side.
    #[test]
    fn each_kind_in_both_formats() {
        let sink = PrometheusSink::unserved();
        sink.on_request(&every_family());
        let exemplar = "# {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"}";

        let (content_type, classic) = sink.encode_for(Some("text/plain;version=0.0.4"));
        assert_eq!(content_type, TEXT_CONTENT_TYPE);
        for line in [
            // A counter with labels: HELP and TYPE on the `_total` name.
            "# HELP vllm_omni:requests_success_total Finished requests by finished_reason \
             (stop = ok, error, abort).",
            "# TYPE vllm_omni:requests_success_total counter",
            "vllm_omni:requests_success_total{model_name=\"unknown\",finished_reason=\"stop\"} 1",
            // Without labels.
            "# HELP vllm_omni:prompt_tokens_total Prompt (input) tokens: stage 0's num_tokens_in.",
            "# TYPE vllm_omni:prompt_tokens_total counter",
            "vllm_omni:prompt_tokens_total{model_name=\"unknown\"} 4860",
            "# TYPE vllm_omni:generation_tokens_total counter",
            "vllm_omni:generation_tokens_total{model_name=\"unknown\"} 342",
            "# TYPE vllm_omni:audio_frames_total counter",
            "vllm_omni:audio_frames_total{model_name=\"unknown\",stage=\"2\"} 525525",
            // A histogram: buckets without exemplars, `le` as Go's clients write it.
            "# HELP vllm_omni:e2e_request_latency_s End-to-end request latency in seconds \
             (request span duration; ok requests).",
            "# TYPE vllm_omni:e2e_request_latency_s histogram",
            "vllm_omni:e2e_request_latency_s_bucket{model_name=\"unknown\",le=\"30\"} 0",
            "vllm_omni:e2e_request_latency_s_bucket{model_name=\"unknown\",le=\"60\"} 1",
            "vllm_omni:e2e_request_latency_s_bucket{model_name=\"unknown\",le=\"+Inf\"} 1",
            "vllm_omni:e2e_request_latency_s_sum{model_name=\"unknown\"} 41.25",
            "vllm_omni:e2e_request_latency_s_count{model_name=\"unknown\"} 1",
            "# TYPE vllm_omni:stage_gen_time_s histogram",
            "vllm_omni:stage_gen_time_s_bucket{model_name=\"unknown\",stage=\"2\",le=\"5\"} 1",
            "vllm_omni:transfer_size_bytes_bucket{model_name=\"unknown\",from_stage=\"0\",to_stage=\"2\",le=\"1.6777216e+07\"} 0",
            "vllm_omni:transfer_size_bytes_bucket{model_name=\"unknown\",from_stage=\"0\",to_stage=\"2\",le=\"6.7108864e+07\"} 0",
            "vllm_omni:transfer_size_bytes_bucket{model_name=\"unknown\",from_stage=\"0\",to_stage=\"2\",le=\"2.68435456e+08\"} 1",
            // Audio continuity: the threshold and the reason after the stage.
            "vllm_omni:audio_underrun_s_bucket{model_name=\"unknown\",stage=\"2\",le=\"0.1\"} 1",
            "# TYPE vllm_omni:audio_continuity_ok_total counter",
            "vllm_omni:audio_continuity_ok_total{model_name=\"unknown\",stage=\"2\",threshold_ms=\"100\"} 1",
            "vllm_omni:audio_skipped_requests_total{model_name=\"unknown\",stage=\"3\",reason=\"no_frames\"} 1",
            // A gauge (no layer: the label-less ones' zero series).
            "# HELP vllm_omni:num_requests_running Requests open now (omni.request spans not yet closed).",
            "# TYPE vllm_omni:num_requests_running gauge",
            "vllm_omni:num_requests_running{model_name=\"unknown\"} 0",
        ] {
            assert!(
                classic.lines().any(|l| l == line),
                "classic text lacks {line:?}:\n{classic}"
            );
        }
        assert!(!classic.contains("trace_id"), "{classic}");
        assert!(!classic.contains("# EOF"), "{classic}");

        let (content_type, openmetrics) = sink.encode_for(Some(PROMETHEUS_2_42_ACCEPT));
        assert_eq!(content_type, OPENMETRICS_CONTENT_TYPE);
        // The sink's `encode` is OpenMetrics, as before.
        assert_eq!(openmetrics, sink.encode());
        for line in [
            // A counter: HELP and TYPE on the family's name, the sample `_total`.
            "# HELP vllm_omni:requests_success Finished requests by finished_reason \
             (stop = ok, error, abort).",
            "# TYPE vllm_omni:requests_success counter",
            "vllm_omni:requests_success_total{model_name=\"unknown\",finished_reason=\"stop\"} 1",
            "# TYPE vllm_omni:prompt_tokens counter",
            "vllm_omni:prompt_tokens_total{model_name=\"unknown\"} 4860",
            "vllm_omni:audio_frames_total{model_name=\"unknown\",stage=\"2\"} 525525",
            // A histogram, its buckets with the request's trace as exemplar.
            "# TYPE vllm_omni:e2e_request_latency_s histogram",
            // OpenMetrics writes `le` first.
            &format!(
                "vllm_omni:e2e_request_latency_s_bucket{{le=\"60.0\",model_name=\"unknown\"}} 1 \
                 {exemplar} 41.25"
            ),
            "vllm_omni:e2e_request_latency_s_count{model_name=\"unknown\"} 1",
            "# TYPE vllm_omni:num_requests_running gauge",
            "vllm_omni:num_requests_running{model_name=\"unknown\"} 0",
            "# EOF",
        ] {
            assert!(
                openmetrics.lines().any(|l| l == line),
                "OpenMetrics text lacks {line:?}:\n{openmetrics}"
            );
        }
        assert!(openmetrics.ends_with("# EOF\n"));

        // Both are the same series and values (labels in any order, `le` and values as
        // numbers).
        type Sample = (String, Vec<(String, String)>, String);
        let samples = |text: &str| -> Vec<Sample> {
            let mut samples: Vec<_> = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| {
                    let l = l.split(" # ").next().unwrap_or(l);
                    let (series, value) = l.rsplit_once(' ').expect("a value");
                    let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
                    let mut labels: Vec<(String, String)> = labels
                        .trim_end_matches('}')
                        .split(',')
                        .filter(|l| !l.is_empty())
                        .map(|l| {
                            let (k, v) = l.split_once('=').expect("name=value");
                            let v = v.trim_matches('"');
                            let v = match k {
                                "le" => v.replace("+Inf", "inf").parse::<f64>().expect("a bound"),
                                _ => return (k.to_owned(), v.to_owned()),
                            };
                            (k.to_owned(), v.to_string())
                        })
                        .collect();
                    labels.sort();
                    let value: f64 = value.parse().expect("a number");
                    (name.to_owned(), labels, value.to_string())
                })
                .collect();
            samples.sort();
            samples
        };
        assert_eq!(samples(&classic), samples(&openmetrics));
    }

    #[test]
    fn errors_say_what_to_do() {
        let taken = PrometheusSink::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let err = PrometheusSink::bind(addr.clone()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains(&addr), "{err}");
        assert!(err.to_string().contains("port 0"), "{err}");
        let err = PrometheusSink::bind_from("not an address".into(), true).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(PROMETHEUS_ADDR_ENV), "{message}");
        assert!(message.contains("host:port"), "{message}");
        assert!(message.contains("unset"), "{message}");
    }
}
