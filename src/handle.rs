//! Reading the layer's results from code: cumulative totals and the latest summary.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

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

/// One stripe per thread (modulo [`STRIPES`]) on its own cache line: a single shared line
/// written by every request would serialize the engine's threads. Its lock is almost never
/// contended (only by a reader, or a 17th thread).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe {
    counts: Mutex<Counts>,
    /// Requests open now, by their key in the open-span registry.
    open_requests: Mutex<HashMap<u64, RequestLink, KeyHash>>,
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

/// A key unique in the process, whose stripe is this thread's: `thread << 40 | counter`
/// (2^24 threads and 2^40 keys per thread before a repeat).
fn open_key() -> u64 {
    static FALLBACK: AtomicU64 = AtomicU64::new(1 << 63);
    KEYS.try_with(|k| {
        let n = k.next.get();
        k.next.set(n.wrapping_add(1));
        (k.thread << 40) | (n & ((1 << 40) - 1))
    })
    .unwrap_or_else(|_| FALLBACK.fetch_add(1, Ordering::Relaxed))
}

/// The stripe a key was made on.
fn key_stripe(key: u64) -> usize {
    ((key >> 40) % STRIPES as u64) as usize
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere (a sink) cannot make the totals unreadable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Hashes the registry's keys, which are unique integers already: a multiply, not SipHash
/// (no key comes from outside the process).
#[derive(Clone, Copy, Debug, Default)]
struct KeyHash;

impl std::hash::BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

#[derive(Debug)]
struct KeyHasher(u64);

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

/// A request's accumulator as the open-span registry holds it.
pub(crate) type RequestLink = Arc<Mutex<crate::accumulate::RequestAcc>>;

/// State shared by a layer and its handles.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) diagnostics: Diagnostics,
    stripes: [Stripe; STRIPES],
    runs: AtomicU64,
    /// The latest run's summary. Online requests don't touch it: a lock per request would
    /// serialize the engine's threads.
    last_summary: Mutex<Option<OverallSummary>>,
    /// Runs open now: key -> the run's name so far.
    open_runs: Mutex<HashMap<u64, Option<String>>>,
    /// The built-in sinks' writer thread, when the layer has console or JSON lines.
    pub(crate) sink_writer: std::sync::OnceLock<Arc<crate::report::writer::WriterState>>,
}

impl Shared {
    pub(crate) fn record_request(&self, r: &RequestE2EStats) {
        let mut c = lock(&self.stripes[stripe_index()].counts);
        match r.status {
            RequestStatus::Ok => {
                c.requests_ok = c.requests_ok.saturating_add(1);
                c.total_tokens = c.total_tokens.saturating_add(r.e2e_total_tokens);
                let bytes = r
                    .transfers
                    .iter()
                    .fold(0u64, |sum, e| sum.saturating_add(e.size_bytes));
                c.transfer_bytes = c.transfer_bytes.saturating_add(bytes);
            }
            RequestStatus::Error => c.requests_error = c.requests_error.saturating_add(1),
            RequestStatus::Aborted => c.requests_aborted = c.requests_aborted.saturating_add(1),
        }
    }

    pub(crate) fn record_run_summary(&self, summary: OverallSummary) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_summary) = Some(summary);
    }

    /// Registers an open request; returns its key for [`Shared::request_closed`].
    pub(crate) fn request_opened(&self, link: &RequestLink) -> u64 {
        let key = open_key();
        let stripe = &self.stripes[key_stripe(key)];
        lock(&stripe.open_requests).insert(key, link.clone());
        key
    }

    pub(crate) fn request_closed(&self, key: u64) {
        let stripe = &self.stripes[key_stripe(key)];
        lock(&stripe.open_requests).remove(&key);
    }

    /// Registers an open run; returns its key.
    pub(crate) fn run_opened(&self, name: Option<String>) -> u64 {
        let key = open_key();
        lock(&self.open_runs).insert(key, name);
        key
    }

    pub(crate) fn run_named(&self, key: u64, name: &str) {
        if let Some(slot) = lock(&self.open_runs).get_mut(&key) {
            *slot = Some(name.to_owned());
        }
    }

    pub(crate) fn run_closed(&self, key: u64) {
        lock(&self.open_runs).remove(&key);
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
            let c = *lock(&stripe.counts);
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
            .map(|name| name.clone().unwrap_or_else(|| "(unnamed run)".to_owned()))
            .collect();
        runs.sort();
        let mut links = Vec::new();
        for stripe in &s.stripes {
            links.extend(lock(&stripe.open_requests).values().cloned());
        }
        // Request locks are taken with no registry lock held.
        let mut requests: Vec<String> = links
            .iter()
            .map(|link| {
                lock(link)
                    .request_id()
                    .map_or_else(|| "(no request_id)".to_owned(), str::to_owned)
            })
            .collect();
        requests.sort();
        OpenSpans { runs, requests }
    }

    /// Spans that broke the convention so far.
    pub fn invalid_spans(&self) -> u64 {
        self.shared.diagnostics.invalid_spans()
    }

    /// The latest finished run's (`omni.run`) summary; online requests are in
    /// [`MetricsHandle::totals`] and reach the sinks with a summary each.
    pub fn last_summary(&self) -> Option<OverallSummary> {
        self.shared
            .last_summary
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
