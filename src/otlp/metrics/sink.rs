//! The OTLP metrics sink: each finished request's observations ([`observe`]) handed to a
//! recorder thread, which records them into OpenTelemetry instruments, one per
//! [`MetricDef`], made once.
//!
//! The engine's thread only walks the catalogue's observations into a buffer (one the
//! recorder gave back, when one is free) and queues it (`try_send` on a bounded queue): it
//! never takes a lock of the SDK's (a histogram series is a mutex, shared by every thread
//! that records into it) and never waits. A request that does not fit in the queue is
//! dropped, counted and said once.
//!
//! The live gauges are observable gauges: their callbacks read the layers the sink was
//! built into ([`Sink::on_layer_built`]) when the reader collects, on its thread.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, Counter, Histogram, Meter};
use smallvec::SmallVec;

use crate::MetricsHandle;
use crate::metrics::catalog::{
    FINISHED_REASON_LABEL, FROM_REPLICA_LABEL, FROM_STAGE_LABEL, LabelValues, MAX_MODEL_NAMES,
    MAX_REPLICA_LABELS, MAX_STAGE_LABELS, MAX_THRESHOLD_LABELS, METRICS, MODEL_NAME_LABEL,
    MetricDef, MetricKind, REASON_LABEL, REPLICA_LABEL, STAGE_LABEL, THRESHOLD_MS_LABEL,
    TO_REPLICA_LABEL, TO_STAGE_LABEL,
};
use crate::metrics::live::LiveSources;
use crate::metrics::queue::{Batch, ObservationQueue, Record};
use crate::report::Sink;
use crate::stats::RequestE2EStats;

/// Finished requests that may wait for the recorder thread; more are dropped and counted
/// ([`OtlpMetricsSink::dropped_requests`]).
///
/// The recorder takes 5 to 11 µs a request (3 stages and 2 edges, 63 observations;
/// release build, `benches/otlp_metrics.rs`), some 100,000 requests a second, far more
/// than an engine finishes; 1,024 absorb a 10 ms stall of the recorder (a collection of
/// every series) even at that rate, while the queue stays small (a slot is 24 bytes up
/// front, a queued request about 5 KiB).
pub(crate) const METRICS_QUEUE_CAPACITY: usize = 1024;

/// Records every finished request's metrics into the OTLP pipeline's instruments: a
/// [`Sink`] for [`Builder::with_sink`](crate::Builder::with_sink).
///
/// [`OtlpPipeline::metrics_sink`](super::super::OtlpPipeline::metrics_sink) makes it;
/// `init()` adds it by itself. Each metric of the catalogue ([`crate::metrics::catalog`]) is
/// one instrument, made once: a histogram with the catalogue's bucket boundaries, or a
/// counter, or an observable gauge for the live gauges. Attributes are the catalogue's
/// labels: `model_name` on every point (a string: the record's, else `unknown`), `stage`,
/// `replica`, `from_stage`, `from_replica`, `to_stage`, `to_replica`, `threshold_ms` (ints;
/// a replica only when the record gives one), `finished_reason` and `reason` (strings),
/// never a request id. Histograms have the catalogue's OTLP buckets
/// ([`MetricDef::otel_buckets`]: the GenAI semantic conventions' for `gen_ai.server.*`). At
/// most 64 distinct stage ids, 64 replica ids, 8 audio continuity thresholds and 16 model
/// names are exported; observations of further ones are counted
/// ([`dropped_observations`](Self::dropped_observations)) and said once.
///
/// The live gauges (`omni.requests.running`, `omni.requests.waiting`,
/// `omni.stage.requests_in_flight`, `omni.transfer.open`) are read from the layers built with
/// this sink ([`Sink::on_layer_built`]) each time the metrics are collected (every export
/// interval, a flush, the shutdown): the spans open at that instant, summed over the layers
/// that serve the same model, and 0 for a stage or edge read before on which nothing is open
/// now.
///
/// Never sampled: it sees every request the metrics layer sees. The engine's thread only
/// queues the request's observations (one allocation, no lock of the SDK's, never a wait);
/// a recorder thread of the pipeline records them, and the guard's flush and shutdown
/// record what is queued before exporting. A sink of a pipeline that exports no metrics
/// records nothing.
///
/// ```
/// use omni_metrics::otlp::OtlpPipeline;
/// let otlp = OtlpPipeline::builder().build()?; // exports when OTEL_* say so
/// let layer = omni_metrics::OmniMetricsLayer::builder()
///     .with_sink(otlp.metrics_sink())
///     .build()?;
/// # drop((layer, otlp));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct OtlpMetricsSink {
    inner: Option<Arc<Queue>>,
}

/// The engine's side: the queue to the recorder thread, and the counts it shares.
struct Queue {
    queue: ObservationQueue,
    counts: Arc<Counts>,
    /// The layers whose live gauges the observable gauges read.
    live: Arc<LiveSources>,
}

/// Counts shared with the recorder thread (which must not hold the queue's sender: it
/// ends when every sender is gone).
#[derive(Default)]
struct Counts {
    dropped_observations: AtomicU64,
    said_stages: AtomicBool,
    said_replicas: AtomicBool,
    said_models: AtomicBool,
    said_thresholds: AtomicBool,
}

impl fmt::Debug for OtlpMetricsSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpMetricsSink")
            .field("records", &self.records())
            .field("dropped_requests", &self.dropped_requests())
            .field("dropped_observations", &self.dropped_observations())
            .finish()
    }
}

impl OtlpMetricsSink {
    /// A sink with one instrument per metric of the catalogue, made on `meter`, and its
    /// recorder thread.
    pub(super) fn start(meter: &Meter) -> Result<Self, std::io::Error> {
        let counts = Arc::new(Counts::default());
        let caps = Arc::new(Caps::default());
        let live = Arc::new(LiveSources::default());
        let recorder = Recorder {
            instruments: Instruments {
                by_id: METRICS
                    .iter()
                    .map(|def| instrument(meter, def, &live, &caps))
                    .collect(),
                caps,
            },
            counts: counts.clone(),
        };
        let queue = ObservationQueue::start(
            "omni-otlp-metrics",
            METRICS_QUEUE_CAPACITY,
            Arc::new(recorder),
            "OTLP metrics: the recorder's queue is full; requests that do not fit are not in \
             the exported metrics (counted in OtlpMetricsSink::dropped_requests). The tables \
             and records are complete. Said once.",
        )?;
        Ok(Self {
            inner: Some(Arc::new(Queue {
                queue,
                counts,
                live,
            })),
        })
    }

    /// A sink that records nothing (no metrics are exported).
    pub(crate) fn disabled() -> Self {
        Self::default()
    }

    /// Whether this sink records anything (its pipeline exports metrics).
    pub(crate) fn records(&self) -> bool {
        self.inner.is_some()
    }

    /// Requests not recorded because the recorder's queue was full
    /// (1,024 requests).
    pub fn dropped_requests(&self) -> u64 {
        self.inner.as_ref().map_or(0, |q| q.queue.dropped())
    }

    /// Observations not exported because their stage id was beyond the first
    /// 64 distinct ones, their replica id beyond the first 64, or their model name beyond
    /// the process's first 16.
    pub fn dropped_observations(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |q| q.counts.dropped_observations.load(Ordering::Relaxed))
    }

    /// Waits until every request queued so far is recorded into the instruments, at most
    /// `timeout`; `false` if it gave up. The guard's
    /// [`force_flush`](super::super::OtlpGuard::force_flush) and shutdown do this before
    /// they export; a test of your own (with a reader of its own) may too.
    pub fn wait_recorded(&self, timeout: Duration) -> bool {
        self.drain(Instant::now() + timeout)
    }

    /// [`wait_recorded`](Self::wait_recorded) until `deadline`.
    pub(crate) fn drain(&self, deadline: Instant) -> bool {
        match &self.inner {
            Some(queue) => queue.queue.drain(deadline),
            None => true,
        }
    }
}

fn instrument(
    meter: &Meter,
    def: &'static MetricDef,
    live: &Arc<LiveSources>,
    caps: &Arc<Caps>,
) -> Instrument {
    match def.kind {
        MetricKind::Gauge => {
            let (live, caps) = (live.clone(), caps.clone());
            // The SDK keeps the callback; the returned handle is a marker.
            let _gauge = meter
                .u64_observable_gauge(def.otel)
                .with_description(def.help)
                .with_unit(def.unit)
                .with_callback(move |gauge| observe_gauge(def, &live, &caps, gauge))
                .build();
            Instrument::Gauge
        }
        MetricKind::Histogram => Instrument::Histogram(
            meter
                .f64_histogram(def.otel)
                .with_description(def.help)
                .with_unit(def.unit)
                .with_boundaries(def.otel_buckets.to_vec())
                .build(),
        ),
        MetricKind::Counter if def.unit.starts_with('{') || def.unit == "1" => Instrument::Count(
            meter
                .u64_counter(def.otel)
                .with_description(def.help)
                .with_unit(def.unit)
                .build(),
        ),
        MetricKind::Counter => Instrument::Sum(
            meter
                .f64_counter(def.otel)
                .with_description(def.help)
                .with_unit(def.unit)
                .build(),
        ),
    }
}

/// The oldest reading of the open spans a gauge's callback takes from another gauge of the
/// same collection (its callbacks run back to back).
const GAUGE_READING_AGE: std::time::Duration = std::time::Duration::from_millis(100);

enum Instrument {
    /// A count (`{request}`, `{token}`, `{frame}`).
    Count(Counter<u64>),
    /// A sum of another unit.
    Sum(Counter<f64>),
    Histogram(Histogram<f64>),
    /// A live gauge: an observable gauge, read by its callback ([`observe_gauge`]).
    Gauge,
}

/// `def`'s live gauge series now, from the layers in `live` (one scan of the layers' open
/// spans serves every gauge of a collection: [`LiveSources::read_for`]). Series beyond the caps are left out (not counted: a reading is
/// no observation).
fn observe_gauge(
    def: &'static MetricDef,
    live: &LiveSources,
    caps: &Caps,
    gauge: &dyn AsyncInstrument<u64>,
) {
    for &(of, labels, value) in live.read_for(def.id, GAUGE_READING_AGE).iter() {
        if of.id != def.id {
            continue;
        }
        if let Ok(attributes) = caps.attributes(labels) {
            // Whole counts; `as` saturates.
            gauge.observe(value as u64, &attributes);
        }
    }
}

/// The ids that label series, at most so many of each.
#[derive(Default)]
struct Caps {
    stages: StageIds,
    /// The replica ids exported, as the stage ids.
    replicas: StageIds,
    /// The audio continuity thresholds exported (in the first [`MAX_THRESHOLD_LABELS`]
    /// slots).
    thresholds: StageIds,
}

/// Why an observation's labels are not exported: what they name beyond its cap.
enum Over {
    Model,
    Stage(u64),
    Replica(u64),
    Threshold(u64),
}

impl Caps {
    /// An observation's attributes, or what it names beyond a cap (admitting new ids while
    /// there is room).
    fn attributes(&self, labels: LabelValues) -> Result<SmallVec<[KeyValue; 6]>, Over> {
        let model = labels.model_name.ok_or(Over::Model)?;
        let mut attributes: SmallVec<[KeyValue; 6]> = SmallVec::new();
        attributes.push(KeyValue::new(MODEL_NAME_LABEL, model));
        // vLLM-Omni's order: each stage before its replica.
        for (key, id, replica) in [
            (STAGE_LABEL, labels.stage, false),
            (REPLICA_LABEL, labels.replica, true),
            (FROM_STAGE_LABEL, labels.from_stage, false),
            (FROM_REPLICA_LABEL, labels.from_replica, true),
            (TO_STAGE_LABEL, labels.to_stage, false),
            (TO_REPLICA_LABEL, labels.to_replica, true),
        ] {
            let Some(id) = id else { continue };
            if replica && !self.replicas.admit(id) {
                return Err(Over::Replica(id));
            }
            if !replica && !self.stages.admit(id) {
                return Err(Over::Stage(id));
            }
            attributes.push(KeyValue::new(key, int(id)));
        }
        if let Some(threshold_ms) = labels.threshold_ms {
            if !self
                .thresholds
                .admit_within(threshold_ms, MAX_THRESHOLD_LABELS)
            {
                return Err(Over::Threshold(threshold_ms));
            }
            attributes.push(KeyValue::new(THRESHOLD_MS_LABEL, int(threshold_ms)));
        }
        if let Some(reason) = labels.reason {
            attributes.push(KeyValue::new(REASON_LABEL, reason));
        }
        if let Some(reason) = labels.finished_reason {
            attributes.push(KeyValue::new(FINISHED_REASON_LABEL, reason));
        }
        Ok(attributes)
    }
}

/// The recorder thread's side: the instruments.
struct Instruments {
    /// Indexed like [`METRICS`] (by [`MetricDef::id`]).
    by_id: Vec<Instrument>,
    /// Shared with the live gauges' callbacks.
    caps: Arc<Caps>,
}

/// A stage id as an OTLP int (clamped, never wrapped).
fn int(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

impl Instruments {
    fn record(&self, def: &'static MetricDef, labels: LabelValues, value: f64, counts: &Counts) {
        let Some(instrument) = self.by_id.get(def.id as usize) else {
            return;
        };
        let attributes = match self.caps.attributes(labels) {
            Ok(attributes) => attributes,
            Err(over) => return counts.drop_over(&over),
        };
        match instrument {
            // Counts arrive as whole numbers; `as` saturates (and maps NaN to 0).
            Instrument::Count(c) => c.add(value as u64, &attributes),
            Instrument::Sum(c) => c.add(value, &attributes),
            Instrument::Histogram(h) => h.record(value, &attributes),
            // Read by its callback, never recorded.
            Instrument::Gauge => {}
        }
    }
}

impl Counts {
    /// Counts an observation whose labels name `over`, said once for its kind.
    fn drop_over(&self, over: &Over) {
        match *over {
            Over::Model => self.drop_one(&self.said_models, || {
                tracing::warn!(
                    target: "omni_metrics::otlp",
                    "OTLP metrics: more than {MAX_MODEL_NAMES} distinct model names in the \
                     process; observations of further ones are not exported. The tables and \
                     records are complete."
                );
            }),
            Over::Threshold(threshold_ms) => self.drop_one(&self.said_thresholds, || {
                tracing::warn!(
                    target: "omni_metrics::otlp",
                    threshold_ms,
                    "OTLP metrics: more than {MAX_THRESHOLD_LABELS} distinct audio continuity \
                     thresholds; observations at further ones are not exported. The tables \
                     and records are complete."
                );
            }),
            Over::Stage(id) | Over::Replica(id) => {
                let replica = matches!(over, Over::Replica(_));
                let said = if replica {
                    &self.said_replicas
                } else {
                    &self.said_stages
                };
                let (what, cap) = if replica {
                    ("replica", MAX_REPLICA_LABELS)
                } else {
                    ("stage", MAX_STAGE_LABELS)
                };
                self.drop_one(said, || {
                    tracing::warn!(
                        target: "omni_metrics::otlp",
                        id,
                        "OTLP metrics: more than {cap} distinct {what} ids; observations of \
                         {what} {id} and of every further new {what} id are not exported \
                         (each would be series of its own). The tables and records are \
                         complete. Number {what}s 0, 1, 2... per pipeline, not per request."
                    );
                });
            }
        }
    }

    /// Counts an observation not exported; `say` the first time for its kind.
    fn drop_one(&self, said: &AtomicBool, say: impl FnOnce()) {
        self.dropped_observations.fetch_add(1, Ordering::Relaxed);
        if !said.swap(true, Ordering::Relaxed) {
            say();
        }
    }
}

impl Sink for OtlpMetricsSink {
    fn on_request(&self, request: &RequestE2EStats) {
        if let Some(queue) = &self.inner {
            // OpenTelemetry's SDK records no exemplars: no trace id is carried.
            queue.queue.push(request, false);
        }
    }

    /// The live gauges read this layer from now on (nothing for a sink that records
    /// nothing).
    fn on_layer_built(&self, handle: &MetricsHandle) {
        if let Some(queue) = &self.inner {
            queue.live.attach(handle);
        }
    }
}

/// The recorder thread's side.
struct Recorder {
    instruments: Instruments,
    counts: Arc<Counts>,
}

impl Record for Recorder {
    fn record(&self, batch: &Batch) {
        for &(def, labels, value) in &batch.observations {
            self.instruments.record(def, labels, value, &self.counts);
        }
    }
}

/// The first [`MAX_STAGE_LABELS`] distinct stage ids seen (or replica ids: as many),
/// lock-free: a slot holds an id plus one (0 is empty).
// One type keeps both caps.
const _: () = assert!(MAX_REPLICA_LABELS == MAX_STAGE_LABELS);

struct StageIds {
    slots: [AtomicU64; MAX_STAGE_LABELS],
    used: AtomicUsize,
}

impl Default for StageIds {
    fn default() -> Self {
        Self {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            used: AtomicUsize::new(0),
        }
    }
}

impl StageIds {
    /// Whether `id` is one of the labelled stage ids, taking a free slot for a new one.
    fn admit(&self, id: u64) -> bool {
        self.admit_within(id, MAX_STAGE_LABELS)
    }

    /// [`StageIds::admit`] within the first `cap` slots.
    fn admit_within(&self, id: u64, cap: usize) -> bool {
        let Some(tag) = id.checked_add(1) else {
            return false; // u64::MAX: no slot can name it
        };
        for slot in self.slots.iter().take(cap) {
            let current = slot.load(Ordering::Acquire);
            if current == tag {
                return true;
            }
            if current == 0 {
                match slot.compare_exchange(0, tag, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        self.used.fetch_add(1, Ordering::Relaxed);
                        return true;
                    }
                    // Another thread took this slot: for this id, or for another one.
                    Err(other) if other == tag => return true,
                    Err(_) => continue,
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::metrics::MeterProvider as _;

    #[test]
    fn at_most_max_stage_labels_distinct_ids() {
        let ids = StageIds::default();
        for id in 0..MAX_STAGE_LABELS as u64 {
            assert!(ids.admit(id * 7));
        }
        assert!(ids.admit(0), "a known id stays admitted");
        assert!(!ids.admit(1), "the 65th distinct id is not");
        assert!(!ids.admit(u64::MAX));
        assert_eq!(ids.used.load(Ordering::Relaxed), MAX_STAGE_LABELS);
    }

    #[test]
    fn a_disabled_sink_records_nothing() {
        let sink = OtlpMetricsSink::disabled();
        sink.on_request(&RequestE2EStats::default());
        assert!(!sink.records());
        assert_eq!(sink.dropped_requests(), 0);
        assert!(sink.drain(Instant::now()));
    }

    #[test]
    fn stage_ids_beyond_the_cap_are_counted_not_exported() {
        let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder().build();
        let sink = OtlpMetricsSink::start(&provider.meter("test")).expect("thread");
        let stage = |id| crate::stats::StageRequestStats {
            stage_id: id,
            ..Default::default()
        };
        let r = RequestE2EStats {
            stages: (0..MAX_STAGE_LABELS as u64 + 2).map(stage).collect(),
            ..Default::default()
        };
        sink.on_request(&r);
        assert!(sink.drain(Instant::now() + Duration::from_secs(10)));
        // Two stages beyond the cap, three observations each (gen, queue, postprocess).
        assert_eq!(sink.dropped_observations(), 6);
        assert_eq!(sink.dropped_requests(), 0);
    }
}
