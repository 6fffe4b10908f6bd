//! The built-in sinks' writer threads: the engine's threads only queue finished records.
//!
//! The console tables, the JSON lines and the HTML report are rendered, serialized and
//! written on background threads, one per built-in sink (so that a blocked console cannot
//! hold up the JSON lines),
//! each fed by a bounded queue, as `tracing-appender`'s non-blocking writer does. The engine's thread moves the finished record into the queue
//! and returns: no formatting, no serialization, no write. When the queue is full the record
//! is dropped and counted, never waited for (a full stderr pipe cannot stall the engine).
//! Failed writes are counted too. The first loss of each kind is reported once as a `WARN`
//! event (target `omni_metrics::diagnostics`) saying what to do; every loss is counted in
//! [`MetricsHandle::sink_losses`](crate::MetricsHandle::sink_losses).
//!
//! The writer threads never trace into the engine's subscriber (it runs under a no-op
//! default subscriber). Loss warnings are emitted from a short-lived thread of their own
//! into the layer's subscriber, so that neither the engine nor the writer waits on the log
//! output (which may be the very stderr that is full).

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use tracing::dispatcher::WeakDispatch;

use super::html::live::HtmlLane;
use super::{ConsoleSink, JsonLinesSink};
use crate::queue::{Progress, Queue, Work};
use crate::stats::{OverallSummary, RequestE2EStats};

// The trace file's writer (feature `otlp`): lines serialized by the SDK's batch thread,
// written with this module's queue, flush and loss reports.
#[cfg(feature = "otlp")]
mod lines;
#[cfg(feature = "otlp")]
pub(crate) use lines::{Delivery, LineWriter};

/// [`OmniMetricsLayer::FLUSH_TIMEOUT`](crate::OmniMetricsLayer::FLUSH_TIMEOUT).
pub(crate) const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the final loss warning of a shutdown may take to print, after the flush.
const REPORT_WAIT: Duration = Duration::from_millis(250);

/// Records the built-in sinks lost, by cause, since the layer was built.
///
/// ```
/// let layer = omni_metrics::OmniMetricsLayer::builder().with_console(false).build()?;
/// assert_eq!(layer.handle().sink_losses().total(), 0);
/// # Ok::<(), omni_metrics::BuildError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SinkLosses {
    /// Records dropped because the writer's queue was full (or its thread could not
    /// start): raise [`Builder::with_queue_capacity`](crate::Builder::with_queue_capacity),
    /// or find what slows the console down.
    pub queue_full: u64,
    /// Console reports (a request's tables, a summary or a periodic line) whose write
    /// failed.
    pub console_failed: u64,
    /// JSON-lines records whose write failed (a full disk, a removed directory); no partial
    /// line is left.
    pub jsonl_failed: u64,
    /// HTML reports (one per run) whose write failed.
    pub html_failed: u64,
}

impl SinkLosses {
    /// All losses: `queue_full + console_failed + jsonl_failed + html_failed`.
    pub fn total(&self) -> u64 {
        self.queue_full
            .saturating_add(self.console_failed)
            .saturating_add(self.jsonl_failed)
            .saturating_add(self.html_failed)
    }
}

/// A flush did not finish in time: the writer is stuck or slow.
///
/// ```
/// # use std::time::Duration;
/// let layer = omni_metrics::OmniMetricsLayer::builder().with_console(false).build()?;
/// if let Err(e) = layer.handle().flush(Duration::from_secs(2)) {
///     eprintln!("{e}");
/// }
/// # Ok::<(), omni_metrics::BuildError>(())
/// ```
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error(
    "{pending} metrics records were still queued after {timeout:?}: the console or JSON-lines \
     writer is blocked or slow (a full stderr pipe, a stalled disk?); they may be lost"
)]
pub struct FlushError {
    pending: u64,
    timeout: Duration,
}

impl FlushError {
    /// Records still queued (or being written) when the flush gave up.
    pub fn pending(&self) -> u64 {
        self.pending
    }
}

/// One queued record. Boxed so that a queue slot is two words.
#[derive(Clone, Debug)]
enum Job {
    /// Shared by the writers: one allocation per record, whatever the number of sinks.
    Request(Arc<RequestE2EStats>),
    Summary(Arc<OverallSummary>),
}

/// One built-in sink on a thread of its own, so that a console that blocks (a full stderr
/// pipe) cannot hold up the JSON lines, nor the other way round.
struct Lane {
    /// Takes nothing if the thread could not start.
    queue: Queue<Job>,
    /// Whether this sink wants request records (JSON lines always; the console when it
    /// prints request tables).
    requests: bool,
    /// Whether this sink wants the records of online requests, and their one-request
    /// summaries (JSON lines always; the console unless online tables are off).
    online: bool,
}

/// Where the periodic line comes from: the layer's aggregates.
pub(crate) trait LineSource: Send + Sync {
    /// The line to print now, with its newline; `None` for nothing.
    fn periodic_line(&self) -> Option<String>;
}

/// The console's periodic line: every `interval`, from `source` while the layer lives.
pub(crate) struct Periodic {
    pub(crate) interval: Duration,
    pub(crate) source: Weak<dyn LineSource>,
}

/// What the console prints, as the builder resolved it.
pub(crate) struct ConsoleConfig {
    pub(crate) sink: ConsoleSink,
    /// Whether online requests print their tables (their summary, and their request tables
    /// with request tables on).
    pub(crate) online_tables: bool,
    pub(crate) periodic: Option<Periodic>,
}

/// A built-in sink, as its writer thread owns it.
enum LaneSink {
    Console(ConsoleSink),
    Jsonl(JsonLinesSink),
    /// Boxed: it holds the requests of the open runs.
    Html(Box<HtmlLane>),
}

/// A kind of loss, and its bit in [`WriterState::reported`].
#[derive(Clone, Copy)]
enum Loss {
    QueueFull = 1,
    Console = 2,
    Jsonl = 4,
    Html = 16,
}

/// The engine's side of the writer: owned by the layer.
pub(crate) struct Writer {
    lanes: Vec<Lane>,
    state: Arc<WriterState>,
    /// Whether request records of a run are wanted (JSON lines, or console request tables).
    requests: bool,
    /// Whether request records of online requests are wanted.
    online_requests: bool,
    /// Whether online requests' one-request summaries are wanted.
    online_summaries: bool,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("capacity", &self.state.capacity)
            .field("requests", &self.requests)
            .field("online_requests", &self.online_requests)
            .field("online_summaries", &self.online_summaries)
            .finish_non_exhaustive()
    }
}

/// What the layer, the writer threads and the handles share.
#[derive(Debug)]
pub(crate) struct WriterState {
    capacity: usize,
    /// Every lane's records: queued, written (or failed), dropped because the queue was
    /// full ([`SinkLosses::queue_full`]).
    progress: Arc<Progress>,
    console_failed: AtomicU64,
    jsonl_failed: AtomicU64,
    html_failed: AtomicU64,
    /// Which kinds of loss were reported ([`Loss`] bits), and the final report (bit 8).
    reported: AtomicU8,
    /// The subscriber the layer is in: where loss warnings go.
    dispatch: OnceLock<WeakDispatch>,
    /// Why the thread could not start, if it could not (every record is then lost).
    start_error: OnceLock<String>,
    /// The console's queue, for summaries printed on demand
    /// ([`MetricsHandle::print_summary`](crate::MetricsHandle::print_summary)); emptied when
    /// the layer is dropped, so that the console thread ends with it.
    console: Mutex<Option<Queue<Job>>>,
    /// Whether the periodic line may still print: cleared at shutdown.
    ticking: AtomicBool,
}

const FINAL_REPORTED: u8 = 8;

impl WriterState {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            progress: Arc::default(),
            console_failed: AtomicU64::new(0),
            jsonl_failed: AtomicU64::new(0),
            html_failed: AtomicU64::new(0),
            reported: AtomicU8::new(0),
            dispatch: OnceLock::new(),
            start_error: OnceLock::new(),
            console: Mutex::new(None),
            ticking: AtomicBool::new(true),
        }
    }
}

/// Starts the thread `name` writing to `sink` from a queue of `capacity` jobs; a queue
/// that takes nothing if the thread cannot start (its records are then lost, and said so).
fn spawn_lane(
    state: &Arc<WriterState>,
    capacity: usize,
    sink: LaneSink,
    periodic: Option<Periodic>,
    name: &str,
) -> Queue<Job> {
    let is_console = matches!(sink, LaneSink::Console(_));
    // An interval past the clock's range never ticks.
    let ticker = periodic.and_then(|p| Some((Instant::now().checked_add(p.interval)?, p)));
    let lane = LaneWork {
        sink,
        state: state.clone(),
        ticker,
    };
    let (queue, started) = Queue::spawn(name, capacity, &state.progress, true, lane);
    let started = started.inspect_err(|e| {
        let _ = state.start_error.set(e.to_string());
    });
    if is_console && started.is_ok() {
        *state.console.lock().unwrap_or_else(PoisonError::into_inner) = Some(queue.clone());
    }
    queue
}

impl Writer {
    /// Starts the writer threads for the built-in `console`, `jsonl` and `html` sinks;
    /// `None` when there is none.
    pub(crate) fn start(
        console: Option<ConsoleConfig>,
        jsonl: Option<JsonLinesSink>,
        html: Option<HtmlLane>,
        capacity: usize,
    ) -> Option<Self> {
        if console.is_none() && jsonl.is_none() && html.is_none() {
            return None;
        }
        let capacity = capacity.max(1);
        let console_requests = console.as_ref().is_some_and(|c| c.sink.request_tables());
        let console_online = console.as_ref().is_some_and(|c| c.online_tables);
        let requests = jsonl.is_some() || html.is_some() || console_requests;
        let online_requests = jsonl.is_some() || (console_requests && console_online);
        let online_summaries = jsonl.is_some() || console_online;
        let state = Arc::new(WriterState::new(capacity));
        let sinks = [
            console.map(|c| {
                (
                    c.sink.request_tables(),
                    c.online_tables,
                    LaneSink::Console(c.sink),
                    c.periodic,
                    "omni-metrics-console",
                )
            }),
            jsonl.map(|j| (true, true, LaneSink::Jsonl(j), None, "omni-metrics-jsonl")),
            html.map(|h| {
                (
                    true,
                    false,
                    LaneSink::Html(Box::new(h)),
                    None,
                    "omni-metrics-html",
                )
            }),
        ];
        let lanes = sinks
            .into_iter()
            .flatten()
            .map(|(requests, online, sink, periodic, name)| {
                let queue = spawn_lane(&state, capacity, sink, periodic, name);
                Lane {
                    queue,
                    requests,
                    online,
                }
            })
            .collect();
        Some(Self {
            lanes,
            state,
            requests,
            online_requests,
            online_summaries,
        })
    }

    /// The state the handles read.
    pub(crate) fn state(&self) -> &Arc<WriterState> {
        &self.state
    }

    /// Queues a finished request (`online`: without a run) for the built-in sinks that
    /// want it; never blocks.
    #[inline]
    pub(crate) fn request(&self, request: RequestE2EStats, online: bool) {
        if self.requests && (!online || self.online_requests) {
            self.send(Job::Request(Arc::new(request)), online);
        }
    }

    /// Queues a finished scope's summary (`online`: an online request's own); never
    /// blocks.
    #[inline]
    pub(crate) fn summary(&self, summary: OverallSummary, online: bool) {
        self.send(Job::Summary(Arc::new(summary)), online);
    }

    /// Whether an online request's one-request summary goes to any built-in sink.
    #[inline]
    pub(crate) fn wants_online_summary(&self) -> bool {
        self.online_summaries
    }

    fn send(&self, job: Job, online: bool) {
        let is_request = matches!(job, Job::Request(_));
        let wanted = |l: &&Lane| (l.requests || !is_request) && (l.online || !online);
        for lane in self.lanes.iter().filter(wanted) {
            // Dropped here, on the engine's thread: freeing memory, no I/O.
            if !lane.queue.push(job.clone()) {
                self.state.lost(Loss::QueueFull, None);
            }
        }
    }
}

impl Drop for Writer {
    /// The layer is gone: the threads write what is queued and end; wait for them at most
    /// [`FLUSH_TIMEOUT`].
    fn drop(&mut self) {
        self.lanes.clear();
        drop(
            self.state
                .console
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let _ = self.state.flush(FLUSH_TIMEOUT);
    }
}

/// A writer thread: renders or serializes and writes each record, until the layer is gone;
/// the console's also prints the periodic line.
struct LaneWork {
    sink: LaneSink,
    state: Arc<WriterState>,
    /// When the console's periodic line is next due, and the line.
    ticker: Option<(Instant, Periodic)>,
}

impl Work<Job> for LaneWork {
    fn handle(&mut self, job: Job) {
        let result = match (&mut self.sink, &job) {
            (LaneSink::Console(c), Job::Request(r)) => attempt(|| c.write_request(r)),
            (LaneSink::Console(c), Job::Summary(s)) => attempt(|| c.write_summary(s)),
            (LaneSink::Jsonl(j), Job::Request(r)) => attempt(|| j.write_request(r)),
            (LaneSink::Jsonl(j), Job::Summary(s)) => attempt(|| j.write_summary(s)),
            (LaneSink::Html(h), Job::Request(r)) => attempt(|| {
                h.request(r);
                Ok(())
            }),
            (LaneSink::Html(h), Job::Summary(s)) => attempt(|| h.summary(s)),
        };
        drop(job);
        if let Err(error) = result {
            let loss = match self.sink {
                LaneSink::Console(_) => Loss::Console,
                LaneSink::Jsonl(_) => Loss::Jsonl,
                LaneSink::Html(_) => Loss::Html,
            };
            self.state.lost(loss, Some(&error));
        }
    }

    fn patience(&mut self) -> Option<Duration> {
        let (next, _) = self.ticker.as_ref()?;
        Some(next.saturating_duration_since(Instant::now()))
    }

    fn idle(&mut self) {
        let Some((next, periodic)) = &mut self.ticker else {
            return;
        };
        // Missed ticks (a blocked console) are skipped, not caught up.
        let later = next.checked_add(periodic.interval);
        let later = later.map(|later| later.max(Instant::now()));
        match (later, tick(periodic, &self.sink, &self.state)) {
            (Some(later), true) => *next = later,
            _ => self.ticker = None,
        }
    }
}

/// Prints the periodic line, if there is one; `false` once it should stop (a shutdown, or
/// the layer is gone).
fn tick(periodic: &Periodic, sink: &LaneSink, state: &WriterState) -> bool {
    if !state.ticking.load(Ordering::Acquire) {
        return false;
    }
    let (LaneSink::Console(console), Some(source)) = (sink, periodic.source.upgrade()) else {
        return false;
    };
    let line = catch_unwind(AssertUnwindSafe(|| source.periodic_line())).unwrap_or(None);
    drop(source);
    if let Some(line) = line {
        if let Err(error) = attempt(|| console.write_text(&line)) {
            state.lost(Loss::Console, Some(&error));
        }
    }
    true
}

/// Runs one sink write; a panicking writer is a failed write, not a dead thread.
fn attempt(write: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    catch_unwind(AssertUnwindSafe(write))
        .unwrap_or_else(|_| Err(io::Error::other("the writer panicked")))
}

impl WriterState {
    /// Remembers the subscriber the layer is in, for loss warnings (the first one wins).
    pub(crate) fn register(&self, dispatch: &tracing::Dispatch) {
        let _ = self.dispatch.set(dispatch.downgrade());
    }

    /// Queues `summary` for the console only (a summary printed on demand); `false` when
    /// there is no console or its queue is full.
    pub(crate) fn console_summary(&self, summary: OverallSummary) -> bool {
        let console = self.console.lock().unwrap_or_else(PoisonError::into_inner);
        console
            .as_ref()
            .is_some_and(|queue| queue.try_push(Job::Summary(Arc::new(summary))).is_ok())
    }

    /// The losses so far.
    pub(crate) fn losses(&self) -> SinkLosses {
        SinkLosses {
            queue_full: self.progress.dropped(),
            console_failed: self.console_failed.load(Ordering::Relaxed),
            jsonl_failed: self.jsonl_failed.load(Ordering::Relaxed),
            html_failed: self.html_failed.load(Ordering::Relaxed),
        }
    }

    /// Waits until every record queued before the call is written (or failed), at most
    /// `timeout`.
    pub(crate) fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        let deadline = Instant::now().checked_add(timeout);
        self.progress
            .flush(deadline)
            .map_err(|pending| FlushError { pending, timeout })
    }

    /// A shutdown: flushes within `timeout`, then reports, once, what was lost (waiting
    /// briefly for the warning to go out, never on the log output itself).
    pub(crate) fn shutdown(&self, timeout: Duration) -> Result<(), FlushError> {
        // No periodic line after a shutdown.
        self.ticking.store(false, Ordering::Release);
        let flushed = self.flush(timeout);
        let losses = self.losses();
        let lost = losses.total() > 0 || flushed.is_err();
        if lost && self.first_report(FINAL_REPORTED) {
            let pending = match &flushed {
                Err(e) => format!("; {e}"),
                Ok(()) => String::new(),
            };
            let message = format!(
                "{} metrics records were lost by the built-in sinks (queue full: {}, console \
                 writes failed: {}, JSON-lines writes failed: {}, HTML reports not written: \
                 {}){pending}",
                losses.total(),
                losses.queue_full,
                losses.console_failed,
                losses.jsonl_failed,
                losses.html_failed,
            );
            if let Some(done) = self.report(message) {
                let _ = done.recv_timeout(REPORT_WAIT);
            }
        }
        flushed
    }

    /// Counts one lost record (the queue counted those it dropped); the first of its kind
    /// is reported.
    fn lost(&self, loss: Loss, error: Option<&io::Error>) {
        let counter = match loss {
            Loss::QueueFull => None,
            Loss::Console => Some(&self.console_failed),
            Loss::Jsonl => Some(&self.jsonl_failed),
            Loss::Html => Some(&self.html_failed),
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if !self.first_report(loss as u8) {
            return;
        }
        let error = error.map_or_else(String::new, |e| format!(": {e}"));
        let message = match (loss, self.start_error.get()) {
            (Loss::QueueFull, Some(start_error)) => format!(
                "cannot start the metrics writer thread ({start_error}), so console tables and \
                 JSON-lines records are dropped. Every lost record is counted in \
                 `MetricsHandle::sink_losses` (reported once)"
            ),
            (Loss::QueueFull, None) => format!(
                "the metrics writer's queue is full ({} records), so console tables and \
                 JSON-lines records are being dropped instead of slowing the engine. Raise \
                 `Builder::with_queue_capacity`, print fewer tables \
                 (`Builder::with_request_tables(false)`), or unblock the console (is stderr a \
                 pipe nobody reads?). Every lost record is counted in \
                 `MetricsHandle::sink_losses` (reported once)",
                self.capacity
            ),
            (Loss::Console, _) => format!(
                "cannot write the console tables{error}; those tables are lost. Every lost \
                 record is counted in `MetricsHandle::sink_losses` (reported once)"
            ),
            (Loss::Jsonl, _) => format!(
                "cannot write a JSON-lines record{error}; it is lost (no partial line is left). \
                 Check the disk (space, permissions) or the writer; every lost record is \
                 counted in `MetricsHandle::sink_losses` (reported once)"
            ),
            (Loss::Html, _) => format!(
                "the run's HTML report is not written{error}. Check that the directory exists \
                 and is writable, or unset OMNI_METRICS_HTML; every report not written is \
                 counted in `MetricsHandle::sink_losses` (reported once)"
            ),
        };
        let _ = self.report(message);
    }

    /// Whether the report `bit` ([`Loss`] bits, [`FINAL_REPORTED`]...) is due: the first time.
    fn first_report(&self, bit: u8) -> bool {
        self.reported.fetch_or(bit, Ordering::Relaxed) & bit == 0
    }

    /// Emits `message` as a warning into the layer's subscriber, from a thread of its own
    /// (the log output may be the stderr that is full). Returns a receiver that gets `()`
    /// once it was emitted; `None` if there is no subscriber or no thread.
    fn report(&self, message: String) -> Option<Receiver<()>> {
        let dispatch = self.dispatch.get()?.upgrade()?;
        let (done, emitted) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("omni-metrics-report".into())
            .spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    tracing::warn!(target: "omni_metrics::diagnostics", "{message}");
                });
                drop(dispatch);
                let _ = done.send(());
            })
            .ok()?;
        Some(emitted)
    }
}
