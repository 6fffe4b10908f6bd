//! Reading the layer's results from code: cumulative totals, the online aggregates, open
//! runs and the latest summary.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::aggregate::{Aggregates, StripeBuffer};
use crate::clock::Clock;
use crate::diagnostics::Diagnostics;
use crate::stats::{OverallSummary, RequestE2EStats, RequestStatus};

/// Per-request counters of one stripe. They are updated together under the stripe's lock,
/// so a reader sees each request whole: its status, tokens and bytes, or none of them.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    requests_ok: u64,
    requests_error: u64,
    requests_aborted: u64,
    total_tokens: u64,
    transfer_bytes: u64,
}

impl Counts {
    fn add(&mut self, r: &RequestE2EStats) {
        match r.status {
            RequestStatus::Ok => {
                self.requests_ok = self.requests_ok.saturating_add(1);
                self.total_tokens = self.total_tokens.saturating_add(r.e2e_total_tokens);
                let bytes = r
                    .transfers
                    .iter()
                    .fold(0u64, |sum, e| sum.saturating_add(e.size_bytes));
                self.transfer_bytes = self.transfer_bytes.saturating_add(bytes);
            }
            RequestStatus::Error => self.requests_error = self.requests_error.saturating_add(1),
            RequestStatus::Aborted => {
                self.requests_aborted = self.requests_aborted.saturating_add(1)
            }
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
        }
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
    fn merged(&self) -> (MutexGuard<'_, crate::aggregate::Merged>, u64) {
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
    fn each_open_request(&self, each: &mut dyn FnMut(Option<&str>)) {
        let tables: Vec<_> = lock(&self.tables)
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .collect();
        for table in tables {
            table.each_open_request(each);
        }
    }

    /// The requests open now.
    fn open_requests(&self) -> usize {
        let mut n = 0_usize;
        self.each_open_request(&mut |_| n = n.saturating_add(1));
        n
    }

    /// Adds a copy of the layer's table to those [`MetricsHandle::open_spans`] reads
    /// (dropped copies' are forgotten on the way).
    pub(crate) fn register_table(&self, table: std::sync::Weak<dyn OpenRequests>) {
        let mut tables = lock(&self.tables);
        tables.retain(|t| t.strong_count() > 0);
        tables.push(table);
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

/// Reads an [`OmniMetricsLayer`](crate::OmniMetricsLayer)'s results; cheap to clone, usable
/// from any thread.
///
/// ```
/// let layer = omni_metrics::OmniMetricsLayer::builder().with_console(false).build()?;
/// let handle = layer.handle();
/// assert_eq!(handle.totals().requests_ok, 0);
/// assert!(handle.last_summary().is_none());
/// # Ok::<(), omni_metrics::BuildError>(())
/// ```
#[derive(Clone, Debug)]
pub struct MetricsHandle {
    shared: Arc<Shared>,
}

/// Cumulative totals since the layer was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Totals {
    /// Requests finished with `status = ok`.
    pub requests_ok: u64,
    /// Requests finished with `status = error`.
    pub requests_error: u64,
    /// Requests dropped unfinished (`status = aborted`).
    pub requests_aborted: u64,
    /// `e2e_total_tokens` summed over `ok` requests.
    pub total_tokens: u64,
    /// Bytes moved between stages by `ok` requests.
    pub transfer_bytes: u64,
    /// Runs (`omni.run`) summarized.
    pub runs: u64,
    /// Spans that broke the convention (each reported once as a warning).
    pub invalid_spans: u64,
    /// Stages and transfers done in this process for requests owned by another
    /// ([`crate::propagation`]); they are in that process's tables.
    pub remote_spans: u64,
}

impl MetricsHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// A snapshot of the cumulative totals.
    ///
    /// Consistent: every request is in it whole (its status, tokens and bytes) or not at
    /// all, so `total_tokens` always belongs to the requests counted. Counters saturate at
    /// `u64::MAX`.
    pub fn totals(&self) -> Totals {
        let s = &self.shared;
        let mut sum = Counts::default();
        for stripe in &s.stripes {
            let c = lock(&stripe.data).counts;
            sum.requests_ok = sum.requests_ok.saturating_add(c.requests_ok);
            sum.requests_error = sum.requests_error.saturating_add(c.requests_error);
            sum.requests_aborted = sum.requests_aborted.saturating_add(c.requests_aborted);
            sum.total_tokens = sum.total_tokens.saturating_add(c.total_tokens);
            sum.transfer_bytes = sum.transfer_bytes.saturating_add(c.transfer_bytes);
        }
        Totals {
            requests_ok: sum.requests_ok,
            requests_error: sum.requests_error,
            requests_aborted: sum.requests_aborted,
            total_tokens: sum.total_tokens,
            transfer_bytes: sum.transfer_bytes,
            runs: s.runs.load(Ordering::Relaxed),
            invalid_spans: s.diagnostics.invalid_spans(),
            remote_spans: s.diagnostics.remote_spans(),
        }
    }

    /// The runs and requests whose spans are open now, by id: what would be missing from
    /// the records if the process ended now. [`crate::OmniGuard`] reports them when it
    /// drops.
    ///
    /// ```
    /// use tracing_subscriber::prelude::*;
    /// let layer = omni_metrics::OmniMetricsLayer::builder().with_console(false).build()?;
    /// let handle = layer.handle();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     let request = tracing::info_span!("omni.request", request_id = "r-1");
    ///     assert_eq!(handle.open_spans().requests, ["r-1"]);
    ///     drop(request);
    ///     assert!(handle.open_spans().is_empty());
    /// });
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn open_spans(&self) -> OpenSpans {
        let s = &self.shared;
        let mut runs: Vec<String> = lock(&s.open_runs)
            .values()
            .map(|entry| entry.name.clone().unwrap_or_else(|| UNNAMED_RUN.to_owned()))
            .collect();
        runs.sort();
        let mut requests = Vec::new();
        s.each_open_request(&mut |id| {
            requests.push(id.map_or_else(|| "(no request_id)".to_owned(), str::to_owned));
        });
        requests.sort();
        OpenSpans { runs, requests }
    }

    /// Spans that broke the convention so far.
    pub fn invalid_spans(&self) -> u64 {
        self.shared.diagnostics.invalid_spans()
    }

    /// The latest finished run's (`omni.run`) summary; online requests are in
    /// [`MetricsHandle::totals`], [`MetricsHandle::cumulative_summary`] and
    /// [`MetricsHandle::window_summary`], and reach the sinks with a summary each.
    pub fn last_summary(&self) -> Option<OverallSummary> {
        self.shared
            .last_summary
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The cumulative summary: every request the layer has seen finish, online and in runs,
    /// since it was built or since [`MetricsHandle::reset_cumulative`]; scope
    /// [`CUMULATIVE_SCOPE`](crate::aggregate::CUMULATIVE_SCOPE).
    ///
    /// The same [`OverallSummary`] as a run's (see [`crate::aggregate`]): `e2e_requests`
    /// counts the `ok` requests, `e2e_wall_time_ms` runs from the start (or reset) to the
    /// last completion, and `distributions` has their latency percentiles. Requests that
    /// finish while it is taken may be left to the next read. All zero with
    /// [`Builder::with_aggregates(false)`](crate::Builder::with_aggregates).
    ///
    /// Merges the stripes' buckets on the calling thread; the engine's threads wait for
    /// none of it.
    ///
    /// ```
    /// use omni_metrics::instrument::Request;
    /// use tracing_subscriber::prelude::*;
    ///
    /// let layer = omni_metrics::OmniMetricsLayer::builder().with_console(false).build()?;
    /// let handle = layer.handle();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     for i in 0..20 {
    ///         let request = Request::start(&format!("r-{i}"));
    ///         request.stage(0).tokens_in(10).tokens_out(5);
    ///         request.finish();
    ///     }
    /// });
    /// let summary = handle.cumulative_summary();
    /// assert_eq!((summary.e2e_requests, summary.e2e_total_tokens), (20, 300));
    /// assert_eq!(summary.distributions.request_latency().map(|l| l.count), Some(20));
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn cumulative_summary(&self) -> OverallSummary {
        let (merged, _) = self.shared.merged();
        merged.cumulative_summary()
    }

    /// Starts the cumulative summary again: [`MetricsHandle::cumulative_summary`] counts
    /// from now on, its `e2e_wall_time_ms` from now. The window summary and
    /// [`MetricsHandle::totals`] are not reset.
    ///
    /// ```
    /// use omni_metrics::instrument::Request;
    /// use tracing_subscriber::prelude::*;
    ///
    /// let layer = omni_metrics::OmniMetricsLayer::builder().with_console(false).build()?;
    /// let handle = layer.handle();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     Request::start("before").finish();
    ///     handle.reset_cumulative();
    ///     Request::start("after").finish();
    /// });
    /// assert_eq!(handle.cumulative_summary().e2e_requests, 1);
    /// assert_eq!(handle.totals().requests_ok, 2);
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn reset_cumulative(&self) {
        let (mut merged, now) = self.shared.merged();
        merged.reset_cumulative(now);
    }

    /// The window summary: the requests completed in the last window
    /// ([`Builder::with_summary_window`](crate::Builder::with_summary_window), default
    /// [`DEFAULT_SUMMARY_WINDOW`](crate::aggregate::DEFAULT_SUMMARY_WINDOW)), on the
    /// layer's clock; scope [`WINDOW_SCOPE`](crate::aggregate::WINDOW_SCOPE).
    ///
    /// It covers at least the window and at most one bucket (a sixth of it) more; its
    /// `e2e_wall_time_ms` runs from the start of the oldest bucket to the last completion.
    /// The [`crate::aggregate`] docs have the exact definition.
    ///
    /// ```
    /// use omni_metrics::clock::ManualClock;
    /// use omni_metrics::instrument::Request;
    /// use tracing_subscriber::prelude::*;
    ///
    /// let clock = ManualClock::new();
    /// let layer = omni_metrics::OmniMetricsLayer::builder()
    ///     .with_console(false)
    ///     .with_clock(clock.clone())
    ///     .build()?;
    /// let handle = layer.handle();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     Request::start("r-1").finish();
    /// });
    /// assert_eq!(handle.window_summary().e2e_requests, 1);
    /// clock.advance_ms(120_000.0); // two minutes later
    /// assert_eq!(handle.window_summary().e2e_requests, 0);
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn window_summary(&self) -> OverallSummary {
        let (merged, now) = self.shared.merged();
        merged.window_summary(&self.shared.aggregates, now)
    }

    /// The window summary's length.
    ///
    /// ```
    /// let layer = omni_metrics::OmniMetricsLayer::builder().with_console(false).build()?;
    /// assert_eq!(layer.handle().summary_window(), omni_metrics::aggregate::DEFAULT_SUMMARY_WINDOW);
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn summary_window(&self) -> std::time::Duration {
        self.shared.aggregates.window()
    }

    /// Prints the cumulative summary on the layer's console (its `Overall Summary` and,
    /// for two or more requests, `Distributions` tables, as a run's), through the console
    /// writer thread. Returns whether it was queued: `false` when the layer has no console
    /// or its queue is full. [`report::table::render_summary`](crate::report::table::render_summary)
    /// renders any summary to a `String`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let console = std::io::sink(); // stderr by default
    /// let layer = omni_metrics::OmniMetricsLayer::builder().with_console_writer(console).build()?;
    /// let handle = layer.handle();
    /// assert!(handle.print_summary());
    /// handle.flush(Duration::from_secs(2))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn print_summary(&self) -> bool {
        let Some(writer) = self.shared.sink_writer.get() else {
            return false;
        };
        writer.console_summary(self.cumulative_summary())
    }

    /// The summaries of the runs (`omni.run`) still open, as they stand: their completed
    /// requests so far, `e2e_wall_time_ms` from the run's start to its last completion so
    /// far. Sorted by scope; a run without a `run_id` yet (and no request finished) is
    /// `(unnamed run)`.
    ///
    /// Each run's summary is computed under that run's lock, which its requests take when
    /// they finish: they wait for that one computation at most.
    ///
    /// ```
    /// use omni_metrics::instrument::Run;
    /// use tracing_subscriber::prelude::*;
    ///
    /// let layer = omni_metrics::OmniMetricsLayer::builder().with_console(false).build()?;
    /// let handle = layer.handle();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     let run = Run::with_id("batch-7");
    ///     run.request("r-1").finish();
    ///     let open = handle.open_run_summaries();
    ///     assert_eq!(open.len(), 1);
    ///     assert_eq!((open[0].scope.as_str(), open[0].e2e_requests), ("batch-7", 1));
    ///     drop(run);
    ///     assert!(handle.open_run_summaries().is_empty());
    /// });
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn open_run_summaries(&self) -> Vec<OverallSummary> {
        let runs: Vec<Arc<dyn OpenRun>> = lock(&self.shared.open_runs)
            .values()
            .map(|entry| entry.run.clone())
            .collect();
        // Run locks are taken with no registry lock held.
        let mut summaries: Vec<OverallSummary> = runs.iter().map(|run| run.snapshot()).collect();
        summaries.sort_by(|a, b| a.scope.cmp(&b.scope));
        summaries
    }

    /// Waits until the console tables and JSON-lines records queued so far are written, at
    /// most `timeout`; safe to call any time, from any thread (not from a [`Sink`] of yours).
    ///
    /// Call it before reading a records file the layer writes. Dropping the
    /// [`OmniGuard`](crate::OmniGuard) does it with
    /// [`DEFAULT_FLUSH_TIMEOUT`](crate::report::DEFAULT_FLUSH_TIMEOUT).
    ///
    /// [`Sink`]: crate::report::Sink
    ///
    /// # Errors
    ///
    /// [`FlushError`](crate::report::FlushError) if records were still queued at the time
    /// limit (a blocked console or disk).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let layer = omni_metrics::OmniMetricsLayer::builder().with_jsonl_writer(std::io::sink()).build()?;
    /// layer.handle().flush(Duration::from_secs(2))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn flush(&self, timeout: std::time::Duration) -> Result<(), crate::report::FlushError> {
        match self.shared.sink_writer.get() {
            Some(writer) => writer.flush(timeout),
            None => Ok(()),
        }
    }

    /// Records the built-in console and JSON-lines sinks lost so far (queue full, failed
    /// writes); see [`SinkLosses`](crate::report::SinkLosses).
    pub fn sink_losses(&self) -> crate::report::SinkLosses {
        self.shared
            .sink_writer
            .get()
            .map(|writer| writer.losses())
            .unwrap_or_default()
    }

    /// Flushes within `timeout`, then reports once what the built-in sinks lost.
    pub(crate) fn shutdown_sinks(
        &self,
        timeout: std::time::Duration,
    ) -> Result<(), crate::report::FlushError> {
        match self.shared.sink_writer.get() {
            Some(writer) => writer.shutdown(timeout),
            None => Ok(()),
        }
    }
}

/// Runs and requests still open, from [`MetricsHandle::open_spans`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenSpans {
    /// Open `omni.run` spans, by `run_id` (`(unnamed run)` before one is known).
    pub runs: Vec<String>,
    /// Open `omni.request` spans, by `request_id`.
    pub requests: Vec<String>,
}

impl OpenSpans {
    /// Whether nothing is open.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty() && self.requests.is_empty()
    }
}

impl std::fmt::Display for OpenSpans {
    /// `1 run (run-3) and 2 requests (r-1, r-2)`, at most 10 ids of each listed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn list(f: &mut std::fmt::Formatter<'_>, what: &str, ids: &[String]) -> std::fmt::Result {
            const SHOWN: usize = 10;
            let plural = if ids.len() == 1 { "" } else { "s" };
            write!(f, "{} {what}{plural} (", ids.len())?;
            for (i, id) in ids.iter().take(SHOWN).enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{}", id.escape_debug())?;
            }
            if ids.len() > SHOWN {
                write!(f, ", and {} more", ids.len() - SHOWN)?;
            }
            f.write_str(")")
        }
        match (self.runs.is_empty(), self.requests.is_empty()) {
            (true, true) => f.write_str("nothing"),
            (false, true) => list(f, "run", &self.runs),
            (true, false) => list(f, "request", &self.requests),
            (false, false) => {
                list(f, "run", &self.runs)?;
                f.write_str(" and ")?;
                list(f, "request", &self.requests)
            }
        }
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
        let covered = now.saturating_sub(self.aggregates.window_start(now));
        crate::aggregate::periodic_line(&summary, covered, self.open_requests())
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
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::ManualClock::new());
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
