//! The metrics exports' hand-off: the engine's thread walks a finished request's observations
//! into a pooled buffer and queues it; a recorder thread of the export records them.
//!
//! Recording into a metrics library takes its locks (per-series locks the Prometheus
//! scrape holds while it formats; the OpenTelemetry SDK's per-instrument maps), so it never
//! happens on the engine's thread. The queue is bounded and never waited on. In a steady
//! state the engine's thread allocates nothing (the recorder gives its buffers back).
//!
//! A request that does not fit in the full queue is, depending on the export:
//! - **coalesced** ([`ObservationQueue::start_coalescing`], the Prometheus sink): folded
//!   into one of [`SLOTS`] pending batches ([`Pending`]: per series, a counter's total, a
//!   histogram's per-bucket counts and sums with the latest exemplar per bucket). The
//!   recorder takes each pending batch whole (swapping an empty one in) when it has caught
//!   up with the queue, every [`SWEEP_EVERY`] requests meanwhile, and when a drain asks.
//!   Nothing is lost at any rate, and memory is bounded by the series, not by the requests
//!   folded: at most [`MAX_SERIES`] per pending batch. An observation of a series
//!   beyond that is the only loss (its request counted, said once).
//! - **dropped** ([`ObservationQueue::start`], the OTLP metrics sink, whose SDK cannot record a
//!   folded histogram): counted and said once.
//!
//! Locks: the engine's thread takes a pending batch with `try_lock` only (a busy one is
//! skipped for the next), so it never waits on the recorder, which holds one only to swap
//! it out. Only when every pending batch is being folded into by other engine threads at
//! once does it spin until one is free.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use super::catalog::{LabelValues, MAX_BUCKETS, MetricDef, MetricKind, observe};
use crate::queue::{Progress, Queue, Work};
use crate::stats::RequestE2EStats;

/// One observation, as the catalogue made it.
pub(crate) type Observation = (&'static MetricDef, LabelValues, f64);

/// A finished request's observations, and the trace it was exported in (W3C trace id,
/// 32 lowercase hex digits), for exemplars.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) observations: Vec<Observation>,
    /// Read by the Prometheus sink (the OpenTelemetry SDK records no exemplars).
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    pub(crate) trace_id: Option<[u8; 32]>,
}

/// What an export does with each batch, on its recorder thread.
pub(crate) trait Record: Send + Sync + 'static {
    fn record(&self, batch: &Batch);
}

/// An export that can also record a [`Pending`] batch (many requests, folded per series):
/// one whose queue coalesces instead of dropping.
pub(crate) trait Merge: Record {
    fn merge(&self, pending: &Pending);
}

/// Pending batches the engine's threads fold into while the queue is full: enough that
/// threads folding at once rarely meet (a thread starts at a slot of its own).
pub(crate) const SLOTS: usize = 8;

/// Distinct series one pending batch holds at most: far more than a pipeline of tens of
/// stages and edges makes (about 10 per stage and 5 per edge); bounds its memory (about
/// 1 KiB a series).
pub(crate) const MAX_SERIES: usize = 1024;

/// A pending batch's index: open addressing at most half full.
const INDEX_LEN: usize = 2 * MAX_SERIES;

/// Requests the recorder records from the queue between two takes of the pending batches,
/// while some wait: folded requests reach a scrape even while the queue never empties.
pub(crate) const SWEEP_EVERY: u32 = 64;

/// One series of a [`Pending`] batch: everything its folded observations add.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Folded {
    pub(crate) def: &'static MetricDef,
    pub(crate) labels: LabelValues,
    /// Observations folded (a counter's zero increments too: they make the series).
    pub(crate) observations: u64,
    /// A counter's increments, summed (whole counts, as the exports record them).
    pub(crate) total: u64,
    /// A histogram's observations and their sum, per bucket (the catalogue's bounds, then
    /// `+Inf`; see [`MetricDef::bucket`]).
    pub(crate) buckets: [(u64, f64); MAX_BUCKETS],
    /// Per bucket, the latest observation of a request with a trace id, and that id.
    pub(crate) exemplars: [Option<(f64, [u8; 32])>; MAX_BUCKETS],
}

impl Folded {
    fn new(def: &'static MetricDef, labels: LabelValues) -> Self {
        Self {
            def,
            labels,
            observations: 0,
            total: 0,
            buckets: [(0, 0.0); MAX_BUCKETS],
            exemplars: [None; MAX_BUCKETS],
        }
    }

    fn is(&self, def: &MetricDef, labels: &LabelValues) -> bool {
        self.def.id == def.id && self.labels == *labels
    }
}

/// Many requests' observations folded per series. Its size depends on the series it has
/// seen (at most [`MAX_SERIES`]), never on the requests folded; emptied, it keeps its
/// series and index for the next fold (no allocation in a steady state).
#[derive(Debug, Default)]
pub(crate) struct Pending {
    series: Vec<Folded>,
    /// Series index + 1 by hash (0: empty), [`INDEX_LEN`] long once used.
    index: Vec<u32>,
    requests: u64,
}

/// The index slot a series' key starts probing at.
fn slot_of(def: &MetricDef, labels: &LabelValues) -> usize {
    const MIX: u64 = 0x9e37_79b9_7f4a_7c15;
    let id = |x: Option<u64>| x.map_or(u64::MAX, |x| x);
    let text = |t: Option<&str>| {
        t.map_or(0, |r| {
            (r.len() as u64) << 8 | u64::from(r.as_bytes().first().copied().unwrap_or(0))
        })
    };
    let reason = text(labels.finished_reason) ^ text(labels.reason).rotate_left(17);
    let model = labels.model_word();
    let mut h = (def.id as u64).wrapping_mul(MIX);
    for word in [
        id(labels.stage),
        id(labels.from_stage),
        id(labels.to_stage),
        reason,
        id(labels.replica),
        id(labels.from_replica),
        id(labels.to_replica),
        id(labels.threshold_ms),
        model,
    ] {
        h = (h ^ word).wrapping_mul(MIX).rotate_left(27);
    }
    (h ^ (h >> 31)) as usize & (INDEX_LEN - 1)
}

impl Pending {
    /// The series with at least one observation.
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    pub(crate) fn series(&self) -> impl Iterator<Item = &Folded> + Clone {
        self.series.iter().filter(|s| s.observations > 0)
    }

    /// Requests folded.
    pub(crate) fn requests(&self) -> u64 {
        self.requests
    }

    /// Folds one request's observations; `false` if some could not be kept (a new series
    /// beyond [`MAX_SERIES`]).
    fn fold(&mut self, observations: &[Observation], trace_id: Option<[u8; 32]>) -> bool {
        let mut kept = true;
        let mut previous: Option<usize> = None;
        for &(def, labels, value) in observations {
            // Runs of one series (a stage's output gaps), then the next series in the
            // order of the last request of the same shape, before the index.
            let repeat =
                previous.filter(|&p| self.series.get(p).is_some_and(|s| s.is(def, &labels)));
            let at = match repeat {
                Some(at) => Some(at),
                None => {
                    let next = previous.map_or(0, |p| p + 1);
                    if self.series.get(next).is_some_and(|s| s.is(def, &labels)) {
                        Some(next)
                    } else {
                        self.find_or_insert(def, labels)
                    }
                }
            };
            let Some(series) = at.and_then(|at| self.series.get_mut(at)) else {
                kept = false;
                continue;
            };
            previous = at;
            series.observations = series.observations.saturating_add(1);
            match def.kind {
                // Counter values are whole counts (tokens, frames, requests).
                MetricKind::Counter => series.total = series.total.saturating_add(value as u64),
                // Never observed per request (the live gauges are read at collection): the
                // latest value, should one come.
                MetricKind::Gauge => series.total = value as u64,
                MetricKind::Histogram => {
                    let b = def.bucket(value);
                    let Some(bucket) = series.buckets.get_mut(b) else {
                        kept = false;
                        continue;
                    };
                    bucket.0 = bucket.0.saturating_add(1);
                    bucket.1 += value;
                    // A series observed several times in a row gets the request's
                    // exemplar once, as the per-request path does.
                    if let (Some(trace), None) = (trace_id, repeat) {
                        if let Some(exemplar) = series.exemplars.get_mut(b) {
                            *exemplar = Some((value, trace));
                        }
                    }
                }
            }
        }
        self.requests = self.requests.saturating_add(1);
        kept
    }

    /// The series `(def, labels)`, added if new and there is room.
    fn find_or_insert(&mut self, def: &'static MetricDef, labels: LabelValues) -> Option<usize> {
        if self.index.len() != INDEX_LEN {
            self.index = vec![0; INDEX_LEN];
            self.reindex();
        }
        let free = match self.probe(def, &labels) {
            Ok(at) => return Some(at),
            Err(free) => free,
        };
        let free = if self.series.len() < MAX_SERIES {
            free
        } else {
            // Full: forget the series nothing was folded into since the last take.
            self.series.retain(|s| s.observations > 0);
            self.reindex();
            if self.series.len() >= MAX_SERIES {
                return None;
            }
            self.probe(def, &labels).err()?
        };
        self.series.push(Folded::new(def, labels));
        self.index[free] = u32::try_from(self.series.len()).ok()?;
        Some(self.series.len() - 1)
    }

    /// `Ok(series index)` if present, else `Err(free index slot)`. Terminates: the index
    /// is never more than half full.
    fn probe(&self, def: &MetricDef, labels: &LabelValues) -> Result<usize, usize> {
        let mut i = slot_of(def, labels);
        loop {
            match self.index[i] {
                0 => return Err(i),
                n => {
                    let at = n as usize - 1;
                    if self.series.get(at).is_some_and(|s| s.is(def, labels)) {
                        return Ok(at);
                    }
                }
            }
            i = (i + 1) & (INDEX_LEN - 1);
        }
    }

    fn reindex(&mut self) {
        self.index.iter_mut().for_each(|i| *i = 0);
        for at in 0..self.series.len() {
            let s = &self.series[at];
            if let Err(free) = self.probe(s.def, &s.labels) {
                self.index[free] = at as u32 + 1;
            }
        }
    }

    /// Empties it, keeping its series (at zero) and index for the next fold.
    fn clear(&mut self) {
        for s in &mut self.series {
            s.observations = 0;
            s.total = 0;
            s.buckets = [(0, 0.0); MAX_BUCKETS];
            s.exemplars = [None; MAX_BUCKETS];
        }
        self.requests = 0;
    }
}

/// The pending batches: folded into by the engine's threads while the queue is full,
/// taken by the recorder thread.
struct Overflow {
    slots: [Mutex<Pending>; SLOTS],
    /// Requests folded and not yet taken (changed under a slot's lock: never below 0).
    folded: AtomicU64,
    /// Sweeps finished: a drain waits for one that began after it.
    swept: AtomicU64,
}

/// The slot an engine thread tries first: threads are spread over the slots in the order
/// they first fold.
fn home_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static HOME: Cell<Option<usize>> = const { Cell::new(None) };
    }
    HOME.try_with(|home| match home.get() {
        Some(slot) => slot,
        None => {
            let slot = NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS;
            home.set(Some(slot));
            slot
        }
    })
    .unwrap_or(0)
}

impl Overflow {
    fn new() -> Self {
        Self {
            slots: std::array::from_fn(|_| Mutex::new(Pending::default())),
            folded: AtomicU64::new(0),
            swept: AtomicU64::new(0),
        }
    }

    /// Folds `batch` into the first free slot from this thread's own; `false` if some of
    /// its observations could not be kept.
    fn fold(&self, batch: &Batch) -> bool {
        let home = home_slot();
        let mut rounds = 0u32;
        loop {
            for k in 0..SLOTS {
                let slot = &self.slots[(home + k) % SLOTS];
                let mut pending = match slot.try_lock() {
                    Ok(pending) => pending,
                    // A fold cannot panic half-way in a way that matters: keep folding.
                    Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                    Err(TryLockError::WouldBlock) => continue,
                };
                let kept = pending.fold(&batch.observations, batch.trace_id);
                self.folded.fetch_add(1, Ordering::Relaxed);
                return kept;
            }
            // Every slot is being folded into by another engine thread (the recorder
            // holds at most one, for a swap): one frees within a fold's time.
            rounds = rounds.wrapping_add(1);
            if rounds % 8 == 0 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// On the recorder thread: merges every pending batch, swapping the empty `spare` in
    /// for it (the slot is held for the swap only).
    fn sweep(&self, merge: &dyn Merge, spare: &mut Pending) {
        for slot in &self.slots {
            {
                let mut pending = slot.lock().unwrap_or_else(PoisonError::into_inner);
                if pending.requests == 0 {
                    continue;
                }
                std::mem::swap(&mut *pending, spare);
            }
            merge.merge(spare);
            self.folded.fetch_sub(spare.requests(), Ordering::Relaxed);
            spare.clear();
        }
        self.swept.fetch_add(1, Ordering::Relaxed);
    }

    fn waiting(&self) -> bool {
        self.folded.load(Ordering::Relaxed) > 0
    }
}

enum Message {
    Request(Batch),
    /// Takes the pending batches (a drain wakes a recorder that waits for the queue).
    Sweep,
}

/// Buffers the recorder gives back, for the engine's threads to fill again. Neither side
/// ever waits on the lock (`try_lock`: a buffer is allocated, or dropped, instead).
#[derive(Default)]
struct Pool(Mutex<Vec<Vec<Observation>>>);

/// Buffers kept in the [`Pool`], at most.
const POOL_BUFFERS: usize = 64;
/// Observations a pooled buffer holds at most: a longer one (a stage that streamed
/// thousands of outputs) is freed, not kept.
const POOL_BUFFER_CAPACITY: usize = 256;

impl Pool {
    fn take(&self, capacity: usize) -> Vec<Observation> {
        self.0
            .try_lock()
            .ok()
            .and_then(|mut buffers| buffers.pop())
            .unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    fn give_back(&self, mut buffer: Vec<Observation>) {
        if buffer.capacity() > POOL_BUFFER_CAPACITY {
            return;
        }
        buffer.clear();
        if let Ok(mut buffers) = self.0.try_lock() {
            if buffers.len() < POOL_BUFFERS {
                buffers.push(buffer);
            }
        }
    }
}

/// The engine's side of an export's recorder thread.
pub(crate) struct ObservationQueue {
    queue: Queue<Message>,
    progress: Arc<Progress>,
    pool: Arc<Pool>,
    capacity: usize,
    /// The pending batches, when the queue coalesces.
    overflow: Option<Arc<Overflow>>,
    said_lost: AtomicBool,
    /// Said once when a request is first lost (names the export, its counter and what to
    /// do).
    lost_message: &'static str,
}

impl std::fmt::Debug for ObservationQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservationQueue")
            .field("capacity", &self.capacity)
            .field("coalesces", &self.overflow.is_some())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

/// The recorder thread: records the queue in order, and the pending batches (if any)
/// when it has caught up, every [`SWEEP_EVERY`] requests while some wait, and when a drain
/// asks.
struct Recorder {
    recorder: Arc<dyn Record>,
    merger: Option<(Arc<dyn Merge>, Arc<Overflow>)>,
    pool: Arc<Pool>,
    spare: Pending,
    since_sweep: u32,
    /// Whether pending batches waited when the recorder last looked at the queue.
    waiting: bool,
    /// Woken after a sweep: a drain may wait for one.
    progress: Arc<Progress>,
}

impl Recorder {
    fn sweep(&mut self) {
        if let Some((merge, overflow)) = &self.merger {
            overflow.sweep(&**merge, &mut self.spare);
            self.progress.wake();
        }
        self.since_sweep = 0;
    }
}

impl Work<Message> for Recorder {
    fn handle(&mut self, message: Message) {
        match message {
            Message::Request(batch) => {
                self.recorder.record(&batch);
                self.pool.give_back(batch.observations);
            }
            Message::Sweep => self.sweep(),
        }
        if self.waiting {
            self.since_sweep += 1;
            if self.since_sweep >= SWEEP_EVERY {
                self.sweep();
            }
        }
    }

    /// While pending batches wait, never for the queue: they are taken when it is empty.
    fn patience(&mut self) -> Option<Duration> {
        self.waiting = self.merger.as_ref().is_some_and(|(_, o)| o.waiting());
        self.waiting.then_some(Duration::ZERO)
    }

    fn idle(&mut self) {
        self.sweep();
    }
}

impl ObservationQueue {
    /// Starts the recorder thread `name`, recording with `recorder`; at most `capacity`
    /// requests wait, and a request that does not fit is dropped (counted, and
    /// `full_message` said once).
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub(crate) fn start(
        name: &str,
        capacity: usize,
        recorder: Arc<dyn Record>,
        full_message: &'static str,
    ) -> std::io::Result<Self> {
        Self::spawn(name, capacity, recorder, None, full_message)
    }

    /// Starts the recorder thread `name`, recording with `recorder`; at most `capacity`
    /// requests wait, and a request that does not fit is folded into a pending batch
    /// instead ([`Pending`]). `lost_message` is said once if a pending batch ever has no
    /// room for a series.
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    pub(crate) fn start_coalescing<R: Merge>(
        name: &str,
        capacity: usize,
        recorder: Arc<R>,
        lost_message: &'static str,
    ) -> std::io::Result<Self> {
        let merge: Arc<dyn Merge> = recorder.clone();
        Self::spawn(name, capacity, recorder, Some(merge), lost_message)
    }

    fn spawn(
        name: &str,
        capacity: usize,
        recorder: Arc<dyn Record>,
        merge: Option<Arc<dyn Merge>>,
        lost_message: &'static str,
    ) -> std::io::Result<Self> {
        let pool = Arc::new(Pool::default());
        let overflow = merge.as_ref().map(|_| Arc::new(Overflow::new()));
        let progress = Arc::default();
        let work = Recorder {
            recorder,
            merger: merge.zip(overflow.clone()),
            pool: pool.clone(),
            spare: Pending::default(),
            since_sweep: 0,
            waiting: false,
            progress: Arc::clone(&progress),
        };
        let (queue, started) = Queue::spawn(name, capacity, &progress, false, work);
        started?;
        Ok(Self {
            queue,
            progress,
            pool,
            capacity,
            overflow,
            said_lost: AtomicBool::new(false),
            lost_message,
        })
    }

    /// Queues `request`'s observations (with its trace id when `exemplars`), or folds them
    /// when the queue is full and it coalesces; never waits on the recorder.
    pub(crate) fn push(&self, request: &RequestE2EStats, exemplars: bool) {
        // 8 per request, 8 per stage and 5 per edge cover most requests without growing;
        // streamed stages add one per output gap.
        let capacity = 8 + 8 * request.stages.len() + 5 * request.transfers.len();
        let mut batch = Batch {
            observations: self.pool.take(capacity),
            trace_id: exemplars
                .then(|| request.trace_id.as_deref().and_then(parse_trace_id))
                .flatten(),
        };
        observe(request, |def, labels, value| {
            batch.observations.push((def, labels, value));
        });
        let fold = |message| match (message, &self.overflow) {
            (Message::Request(batch), Some(overflow)) => {
                let kept = overflow.fold(&batch);
                self.pool.give_back(batch.observations);
                kept
            }
            _ => false,
        };
        let batch = Message::Request(batch);
        if !self.queue.push_or(batch, fold) {
            self.lost();
        }
    }

    /// Says, the first time, that a request was not (wholly) recorded.
    fn lost(&self) {
        if !self.said_lost.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "omni_metrics::metrics",
                dropped = self.dropped(),
                capacity = self.capacity,
                "{}",
                self.lost_message
            );
        }
    }

    /// Requests not recorded (dropped because the queue was full), or not wholly
    /// (coalesced, with a series a pending batch had no room for).
    pub(crate) fn dropped(&self) -> u64 {
        self.progress.dropped()
    }

    /// Waits until every request queued (or folded) so far is recorded, until `deadline`;
    /// `false` if it gave up.
    pub(crate) fn drain(&self, deadline: Instant) -> bool {
        let swept = self
            .overflow
            .as_ref()
            .map_or(0, |o| o.swept.load(Ordering::Relaxed));
        if self.progress.flush(Some(deadline)).is_err() {
            return false;
        }
        let Some(overflow) = self.overflow.as_ref().filter(|o| o.waiting()) else {
            return true;
        };
        // A recorder waiting for the queue is woken; one whose queue is full sweeps soon by
        // itself. A sweep begun after this drain began takes every batch folded before.
        let _ = self.queue.try_push(Message::Sweep);
        self.progress.wait_until(Some(deadline), None, || {
            !overflow.waiting() || overflow.swept.load(Ordering::Relaxed) >= swept.saturating_add(2)
        })
    }
}

/// A W3C trace id: 32 hex digits, not all zero, lowercased; anything else is `None`.
pub(crate) fn parse_trace_id(id: &str) -> Option<[u8; 32]> {
    let bytes: [u8; 32] = id.as_bytes().try_into().ok()?;
    let valid = bytes.iter().all(u8::is_ascii_hexdigit) && bytes.iter().any(|b| *b != b'0');
    valid.then(|| bytes.map(|b| b.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::catalog::{METRICS, MetricId};
    use crate::stats::StageRequestStats;

    struct Count(AtomicU64);
    impl Record for Count {
        fn record(&self, batch: &Batch) {
            self.0
                .fetch_add(batch.observations.len() as u64, Ordering::Relaxed);
        }
    }

    #[test]
    fn queued_requests_are_recorded_by_the_drain() {
        let count = Arc::new(Count(AtomicU64::new(0)));
        let queue = ObservationQueue::start("test-recorder", 16, count.clone(), "full").unwrap();
        let request = RequestE2EStats {
            stages: vec![StageRequestStats::default()],
            ..Default::default()
        };
        let mut expected = 0;
        observe(&request, |_, _, _| expected += 1);
        for _ in 0..10 {
            queue.push(&request, false);
        }
        assert!(queue.drain(Instant::now() + Duration::from_secs(10)));
        assert_eq!(count.0.load(Ordering::Relaxed), 10 * expected);
        assert_eq!(queue.dropped(), 0);
    }

    /// Counts observations, whether queued one request at a time or folded.
    struct Tally {
        observations: AtomicU64,
        requests: AtomicU64,
        merges: AtomicU64,
    }
    impl Record for Tally {
        fn record(&self, batch: &Batch) {
            self.observations
                .fetch_add(batch.observations.len() as u64, Ordering::Relaxed);
            self.requests.fetch_add(1, Ordering::Relaxed);
        }
    }
    impl Merge for Tally {
        fn merge(&self, pending: &Pending) {
            let folded: u64 = pending.series().map(|s| s.observations).sum();
            self.observations.fetch_add(folded, Ordering::Relaxed);
            self.requests
                .fetch_add(pending.requests(), Ordering::Relaxed);
            self.merges.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_full_coalescing_queue_folds_and_loses_nothing() {
        let tally = Arc::new(Tally {
            observations: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            merges: AtomicU64::new(0),
        });
        // A queue of one: nearly everything is folded.
        let queue = ObservationQueue::start_coalescing("test-coalescing", 1, tally.clone(), "lost")
            .unwrap();
        let request = RequestE2EStats {
            stages: vec![StageRequestStats {
                inter_output_gaps_ms: vec![1.0, 2.0, 3.0],
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut per_request = 0;
        observe(&request, |_, _, _| per_request += 1);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..5_000 {
                        queue.push(&request, false);
                    }
                });
            }
        });
        assert!(queue.drain(Instant::now() + Duration::from_secs(30)));
        assert_eq!(queue.dropped(), 0);
        assert_eq!(tally.requests.load(Ordering::Relaxed), 20_000);
        assert_eq!(
            tally.observations.load(Ordering::Relaxed),
            20_000 * per_request
        );
        assert!(tally.merges.load(Ordering::Relaxed) > 0, "some were folded");
    }

    /// A request folded just as the recorder went back to waiting for the queue: the drain
    /// wakes it to take the pending batches.
    #[test]
    fn a_drain_takes_what_was_folded_while_the_recorder_waited() {
        let tally = Arc::new(Tally {
            observations: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            merges: AtomicU64::new(0),
        });
        let queue =
            ObservationQueue::start_coalescing("test-idle", 4, tally.clone(), "lost").unwrap();
        let batch = Batch {
            observations: vec![(MetricId::PromptTokens.def(), LabelValues::NONE, 1.0)],
            trace_id: None,
        };
        // The recorder, started, waits for the queue.
        std::thread::sleep(Duration::from_millis(100));
        assert!(queue.overflow.as_ref().is_some_and(|o| o.fold(&batch)));
        assert!(queue.drain(Instant::now() + Duration::from_secs(10)));
        assert_eq!(tally.requests.load(Ordering::Relaxed), 1);
        assert_eq!(tally.merges.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_pending_batch_folds_per_series_and_bucket() {
        let mut pending = Pending::default();
        let latency = MetricId::E2eRequestLatency.def();
        let tokens = MetricId::PromptTokens.def();
        let none = LabelValues::NONE;
        let trace = [b'a'; 32];
        assert!(pending.fold(
            &[
                (latency, none, 0.01),
                (latency, none, 0.02),
                (tokens, none, 7.0)
            ],
            Some(trace),
        ));
        assert!(pending.fold(&[(latency, none, 400.0), (tokens, none, 0.0)], None));
        let series: Vec<_> = pending.series().collect();
        assert_eq!(series.len(), 2);
        let l = series[0];
        assert_eq!((l.def.id, l.observations), (MetricId::E2eRequestLatency, 3));
        assert_eq!(l.buckets[0].0, 2);
        assert!((l.buckets[0].1 - 0.03).abs() < 1e-15);
        assert_eq!(l.buckets[latency.buckets.len()], (1, 400.0));
        // A series' second observation in a row does not replace the exemplar.
        assert_eq!(l.exemplars[0], Some((0.01, trace)));
        let t = series[1];
        assert_eq!((t.observations, t.total), (2, 7));
        assert_eq!(pending.requests(), 2);

        pending.clear();
        assert_eq!(pending.series().count(), 0);
        assert_eq!(pending.requests(), 0);
    }

    #[test]
    fn a_pending_batch_keeps_at_most_max_series() {
        let mut pending = Pending::default();
        let def = MetricId::StageGenTime.def();
        let stage = |id| LabelValues {
            stage: Some(id),
            ..LabelValues::NONE
        };
        for id in 0..MAX_SERIES as u64 {
            assert!(pending.fold(&[(def, stage(id), 1.0)], None));
        }
        assert!(!pending.fold(&[(def, stage(u64::MAX), 1.0)], None));
        // Known series still fold; emptied, the room comes back.
        assert!(pending.fold(&[(def, stage(3), 1.0)], None));
        pending.clear();
        assert!(pending.fold(&[(def, stage(u64::MAX), 1.0)], None));
        assert_eq!(pending.series().count(), 1);
        assert!(METRICS.len() < MAX_SERIES);
    }

    #[test]
    fn trace_ids_are_checked() {
        assert!(parse_trace_id("0af7651916cd43dd8448eb211c80319c").is_some());
        assert_eq!(
            parse_trace_id("0AF7651916CD43DD8448EB211C80319C").map(|b| b[1]),
            Some(b'a')
        );
        assert!(parse_trace_id(&"0".repeat(32)).is_none());
        assert!(parse_trace_id("xyz").is_none());
    }
}
