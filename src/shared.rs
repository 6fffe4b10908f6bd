//! The layer's shared core: what its hooks write and its handles read. Per-thread stripes
//! of request counts and of the online aggregates' buckets, the latest run summary, the
//! registry of open runs and of the layer copies' span tables, the diagnostics, and the
//! built-in sinks' writer. [`MetricsHandle`](crate::MetricsHandle) reads it; the layer
//! writes it as requests and runs finish.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::aggregate::{Aggregates, Merged, StripeBuffer};
use crate::clock::Clock;
use crate::diagnostics::Diagnostics;
use crate::stats::{self, OverallSummary, RequestE2EStats, StatusCounts};

/// Per-request counters of one stripe. They are updated together under the stripe's lock,
/// so a reader sees each request whole: its status, tokens and bytes, or none of them.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    pub(crate) requests: StatusCounts,
    /// `e2e_total_tokens` of the requests that count in the summary (`ok`).
    pub(crate) total_tokens: u64,
    /// Bytes moved by the requests that count in the summary (`ok`).
    pub(crate) transfer_bytes: u64,
}

impl Counts {
    fn add(&mut self, r: &RequestE2EStats) {
        if self.requests.add(r.status) {
            self.total_tokens = self.total_tokens.saturating_add(r.e2e_total_tokens);
            self.transfer_bytes = self
                .transfer_bytes
                .saturating_add(stats::transfers_total_bytes(&r.transfers));
        }
    }
}

/// What a stripe records per finished request, under one lock.
#[derive(Debug, Default)]
struct StripeData {
    counts: Counts,
    /// This stripe's share of the online aggregates.
    buffer: StripeBuffer,
}

/// One stripe per thread (modulo [`STRIPES`]) on its own cache line: a single shared line
/// written by every request would serialize the engine's threads. Its lock is almost never
/// contended (only by a reader, for a pointer swap, or a 17th thread).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe {
    data: Mutex<StripeData>,
}

const STRIPES: usize = 16;

/// This thread's number (unique, assigned on first use) and a counter of its own: open-span
/// keys are made without a shared write.
struct ThreadKeys {
    thread: u64,
    next: std::cell::Cell<u64>,
}

thread_local! {
    static KEYS: ThreadKeys = {
        static NEXT_THREAD: AtomicU64 = AtomicU64::new(0);
        ThreadKeys {
            thread: NEXT_THREAD.fetch_add(1, Ordering::Relaxed),
            next: std::cell::Cell::new(0),
        }
    };
}

/// This thread's stripe index, assigned round-robin on first use.
fn stripe_index() -> usize {
    KEYS.try_with(|k| (k.thread % STRIPES as u64) as usize)
        .unwrap_or(0)
}

/// A key unique in the process, for the registry of open runs: `thread << 40 | counter`
/// (2^24 threads and 2^40 keys per thread before a repeat), made with no shared write.
fn open_key() -> u64 {
    static FALLBACK: AtomicU64 = AtomicU64::new(1 << 63);
    KEYS.try_with(|k| {
        let n = k.next.get();
        k.next.set(n.wrapping_add(1));
        (k.thread << 40) | (n & ((1 << 40) - 1))
    })
    .unwrap_or_else(|_| FALLBACK.fetch_add(1, Ordering::Relaxed))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere (a sink) cannot make the totals unreadable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Hashes keys that are unique integers already (span ids in the layer's table): a
/// multiply, not SipHash (no key comes from outside the process).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct KeyHash;

impl std::hash::BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

#[derive(Debug)]
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Gives back the room of `map` once less than a quarter of it is used, when it has room
/// for more than `kept` entries: what a burst grew is returned once it is over, and a
/// `HashMap` never shrinks by itself.
///
/// Its room is halved, leaving it less than half full: the next rehash, growing or
/// shrinking, waits for what it holds to double or halve, so a count that goes up and down
/// by less never rehashes, and a rehash moves at most two entries for each one that came or
/// went since the one before. Costs a comparison when it does not shrink.
#[inline]
pub(crate) fn shrink_sparse<K, V, S>(map: &mut HashMap<K, V, S>, kept: usize)
where
    K: Eq + std::hash::Hash,
    S: std::hash::BuildHasher,
{
    #[cold]
    #[inline(never)]
    fn shrink<K, V, S>(map: &mut HashMap<K, V, S>)
    where
        K: Eq + std::hash::Hash,
        S: std::hash::BuildHasher,
    {
        map.shrink_to(map.capacity() / 2);
        #[cfg(test)]
        tests::SHRINKS.with(|n| n.set(n.get() + 1));
    }
    if map.len() < map.capacity() / 4 && map.capacity() > kept {
        shrink(map);
    }
}

/// How an open run without a `run_id` yet is named.
pub(crate) const UNNAMED_RUN: &str = "(unnamed run)";

/// The open requests of one copy of the layer (its table of open spans), as the handle
/// reads them: for [`MetricsHandle::open_spans`] and the periodic line's count, never per
/// request (a registry written by every request cost 6 atomic operations each).
pub(crate) trait OpenRequests: Send + Sync {
    /// Calls `each` with the request id (if it has one yet) of every open request.
    fn each_open_request(&self, each: &mut dyn FnMut(Option<&str>));

    /// Adds the copy's open spans to `counts` ([`MetricsHandle::live`]).
    fn add_live(&self, counts: &mut LiveCounts);
}

/// What the live gauges count, gathered over the tables of every copy of the layer.
#[derive(Debug, Default)]
pub(crate) struct LiveCounts {
    pub(crate) requests_running: u64,
    pub(crate) requests_waiting: u64,
    /// `(stage id, replica, request span)` of every open stage span with a request.
    pub(crate) stages: Vec<(u64, Option<u64>, u64)>,
    /// The edge of every open transfer span.
    pub(crate) transfers: Vec<crate::stats::EdgeName>,
}

/// An open run, as the handle sees it: its summary so far.
pub(crate) trait OpenRun: Send + Sync + std::fmt::Debug {
    /// The run's summary so far, computed under the run's lock.
    fn snapshot(&self) -> OverallSummary;
}

/// A run open now: its name so far, and its state.
#[derive(Debug)]
struct OpenRunEntry {
    name: Option<String>,
    run: Arc<dyn OpenRun>,
}

/// Room for open runs kept however few are open.
const RUNS_KEPT: usize = 64;

/// State shared by a layer and its handles.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) diagnostics: Diagnostics,
    stripes: [Stripe; STRIPES],
    runs: AtomicU64,
    /// The latest run's summary. Online requests don't touch it: a lock per request would
    /// serialize the engine's threads.
    last_summary: Mutex<Option<OverallSummary>>,
    /// Runs open now, by key.
    open_runs: Mutex<HashMap<u64, OpenRunEntry>>,
    /// The tables of the layer's copies, whose open requests the handle lists.
    tables: Mutex<Vec<std::sync::Weak<dyn OpenRequests>>>,
    /// The built-in sinks' writer thread, when the layer has console or JSON lines.
    pub(crate) sink_writer: std::sync::OnceLock<Arc<crate::report::writer::WriterState>>,
    /// The online aggregates: the per-stripe buffers are in the stripes.
    aggregates: Aggregates,
    /// The layer's clock, for the window's "now".
    clock: LayerClock,
    /// The model the layer serves, when named: set once, at build.
    pub(crate) model_name: std::sync::OnceLock<Arc<str>>,
}

/// The layer's clock, shared with its handles.
struct LayerClock(Arc<dyn Clock>);

impl std::fmt::Debug for LayerClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LayerClock")
    }
}

impl Shared {
    pub(crate) fn new(
        clock: Arc<dyn Clock>,
        aggregates: bool,
        window: std::time::Duration,
    ) -> Self {
        let origin = clock.now_ns();
        Self {
            diagnostics: Diagnostics::default(),
            stripes: Default::default(),
            runs: AtomicU64::new(0),
            last_summary: Mutex::new(None),
            open_runs: Mutex::new(HashMap::new()),
            tables: Mutex::new(Vec::new()),
            sink_writer: std::sync::OnceLock::new(),
            aggregates: Aggregates::new(aggregates, origin, window),
            clock: LayerClock(clock),
            model_name: std::sync::OnceLock::new(),
        }
    }

    /// The model the layer serves, for its records and summaries.
    pub(crate) fn model_name(&self) -> Option<Arc<str>> {
        self.model_name.get().cloned()
    }

    /// Counts a finished request, and adds it to this thread's share of the aggregates.
    pub(crate) fn record_request(&self, r: &RequestE2EStats) {
        let stripe = &self.stripes[stripe_index()];
        // Computed before the lock is taken.
        let period = self
            .aggregates
            .enabled()
            .then(|| self.aggregates.period(r.end_ns));
        let handover = {
            let mut data = lock(&stripe.data);
            data.counts.add(r);
            period.and_then(|period| Some((data.buffer.add(r, period)?, period)))
        };
        // A new bucket started: merge the previous one, unless a reader is merging now.
        if let Some((buckets, period)) = handover {
            if let Some(back) = self.aggregates.try_merge(buckets, period) {
                lock(&stripe.data).buffer.keep(back);
            }
        }
    }

    /// The merged aggregates with every stripe's buckets in them, and the time of the read.
    pub(crate) fn merged(&self) -> (MutexGuard<'_, Merged>, u64) {
        let now = self.clock.0.now_ns();
        let period = self.aggregates.period(now);
        let mut merged = self.aggregates.lock();
        for stripe in &self.stripes {
            // A pointer swap under the stripe's lock; the merge runs without it.
            let taken = lock(&stripe.data).buffer.take();
            for bucket in taken {
                merged.absorb(bucket, period);
            }
        }
        (merged, now)
    }

    /// Calls `each` with the id of every request open now, in the tables of all the
    /// layer's copies.
    pub(crate) fn each_open_request(&self, each: &mut dyn FnMut(Option<&str>)) {
        let tables = self.tables();
        for table in tables {
            table.each_open_request(each);
        }
    }

    /// The tables of the layer's copies still alive.
    fn tables(&self) -> Vec<std::sync::Arc<dyn OpenRequests>> {
        lock(&self.tables)
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .collect()
    }

    /// The live gauges: the open spans of every copy of the layer, now.
    pub(crate) fn live(&self) -> LiveCounts {
        let tables = self.tables();
        let mut counts = LiveCounts::default();
        for table in tables {
            table.add_live(&mut counts);
        }
        counts
    }

    /// Adds a copy of the layer's table to those [`MetricsHandle::open_spans`] reads
    /// (dropped copies' are forgotten on the way).
    pub(crate) fn register_table(&self, table: std::sync::Weak<dyn OpenRequests>) {
        let mut tables = lock(&self.tables);
        tables.retain(|t| t.strong_count() > 0);
        tables.push(table);
    }

    /// The per-request counters of every stripe, summed: each request whole or not at all.
    pub(crate) fn counts(&self) -> Counts {
        let mut sum = Counts::default();
        for stripe in &self.stripes {
            let c = lock(&stripe.data).counts;
            sum.requests.merge(c.requests);
            sum.total_tokens = sum.total_tokens.saturating_add(c.total_tokens);
            sum.transfer_bytes = sum.transfer_bytes.saturating_add(c.transfer_bytes);
        }
        sum
    }

    /// Runs summarized so far.
    pub(crate) fn runs_summarized(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// The latest run's summary.
    pub(crate) fn last_summary(&self) -> Option<OverallSummary> {
        lock(&self.last_summary).clone()
    }

    /// The online aggregates' settings (their data is read through [`Shared::merged`]).
    pub(crate) fn aggregates(&self) -> &Aggregates {
        &self.aggregates
    }

    /// The names of the runs open now (`(unnamed run)` before one is known), unsorted.
    pub(crate) fn open_run_names(&self) -> Vec<String> {
        lock(&self.open_runs)
            .values()
            .map(|entry| entry.name.clone().unwrap_or_else(|| UNNAMED_RUN.to_owned()))
            .collect()
    }

    /// The runs open now, to take their summaries with no registry lock held.
    pub(crate) fn open_runs(&self) -> Vec<Arc<dyn OpenRun>> {
        lock(&self.open_runs)
            .values()
            .map(|entry| entry.run.clone())
            .collect()
    }

    pub(crate) fn record_run_summary(&self, summary: OverallSummary) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_summary) = Some(summary);
    }

    /// Registers an open run; returns its key.
    pub(crate) fn run_opened(&self, name: Option<String>, run: Arc<dyn OpenRun>) -> u64 {
        let key = open_key();
        lock(&self.open_runs).insert(key, OpenRunEntry { name, run });
        key
    }

    pub(crate) fn run_named(&self, key: u64, name: &str) {
        if let Some(entry) = lock(&self.open_runs).get_mut(&key) {
            entry.name = Some(name.to_owned());
        }
    }

    pub(crate) fn run_closed(&self, key: u64) {
        let mut runs = lock(&self.open_runs);
        runs.remove(&key);
        // Many runs open at once grew it (about 49 bytes a run).
        shrink_sparse(&mut runs, RUNS_KEPT);
    }
}

impl crate::report::writer::LineSource for Shared {
    fn periodic_line(&self) -> Option<String> {
        if !self.aggregates.enabled() {
            return None;
        }
        let (summary, now) = {
            let (merged, now) = self.merged();
            let summary = merged.window_summary(&self.aggregates, now);
            (summary, now)
        };
        let covered = stats::elapsed_ns(self.aggregates.window_start(now), now);
        let live = self.live();
        crate::aggregate::periodic_line(
            &summary,
            covered,
            (live.requests_running, live.requests_waiting),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Rehashes by [`shrink_sparse`] on this thread.
        pub(super) static SHRINKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn shrinks() -> usize {
        SHRINKS.with(std::cell::Cell::get)
    }

    #[test]
    fn a_map_up_and_down_by_half_is_left_alone_and_an_emptied_one_gives_its_room_back() {
        let mut map: HashMap<u64, ()> = (0..10_000).map(|i| (i, ())).collect();
        let before = shrinks();
        for _ in 0..20 {
            for i in 5_000..10_000 {
                map.remove(&i);
                shrink_sparse(&mut map, 64);
            }
            map.extend((5_000..10_000).map(|i| (i, ())));
        }
        assert_eq!(shrinks(), before, "no rehash while it holds half or more");
        for i in 0..10_000 {
            map.remove(&i);
            let n = shrinks();
            shrink_sparse(&mut map, 64);
            if shrinks() > n {
                assert!(map.len() * 2 < map.capacity(), "less than half full after");
            }
        }
        assert!(map.capacity() <= 64, "room kept: {}", map.capacity());
        // 16,384 buckets down to 64 at most: halved 8 times, a rehash each.
        assert!(shrinks() - before <= 8, "{} rehashes", shrinks() - before);
    }

    #[derive(Debug)]
    struct NoRun;

    impl OpenRun for NoRun {
        fn snapshot(&self) -> OverallSummary {
            OverallSummary::default()
        }
    }

    #[test]
    fn the_registry_of_open_runs_gives_its_room_back_when_they_close() {
        let clock: Arc<dyn Clock> = Arc::new(crate::testing::ManualClock::new());
        let shared = Shared::new(clock, false, std::time::Duration::from_secs(60));
        let keys: Vec<u64> = (0..10_000)
            .map(|_| shared.run_opened(None, Arc::new(NoRun)))
            .collect();
        assert!(lock(&shared.open_runs).capacity() >= 10_000);
        for key in keys {
            shared.run_closed(key);
        }
        assert!(lock(&shared.open_runs).capacity() <= RUNS_KEPT);
    }
}
