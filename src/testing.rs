//! Testing your instrumentation (feature `testing`): the metrics layer in memory, on a clock
//! you move, under a subscriber of the test's own.
//!
//! An engine's tests want to know that their spans make the tables they mean: that a stage
//! is counted in its request, that queue time is not compute, that a transfer pairs its
//! sides. [`Harness`] gives them the real [`OmniMetricsLayer`] on a
//! `Registry` of its own, with
//!
//! - a [`ManualClock`]: every span's times are the ones the test sets, so a figure can be
//!   asserted exactly;
//! - a [`CaptureSink`]: every finished request and scope, readable as soon as its span
//!   closes;
//! - the layer's diagnostics ([`Harness::diagnostics`]): what it said about spans that
//!   break the convention (a stage outside any request, a count that is not a number);
//! - a scoped dispatcher ([`Harness::run`]): never the global one, so tests run in parallel
//!   and each sees only its own spans.
//!
//! Nothing leaves the process: no console, no JSON lines (whatever `OMNI_METRICS_JSONL`
//! says), no endpoint.
//!
//! ```
//! use omni_metrics::instrument::Request;
//! use omni_metrics::testing::Harness;
//!
//! let h = Harness::new();
//! h.run(|| {
//!     let request = Request::start("r-1");
//!     let stage = request.stage(0);
//!     stage.tokens_in(12);
//!     let queue = stage.queue();
//!     h.clock().advance_ms(5.0); // 5 ms waiting
//!     drop(queue);
//!     h.clock().advance_ms(20.0); // 20 ms computing
//!     stage.tokens_out(3);
//!     drop(stage);
//!     request.finish();
//! });
//! let request = &h.capture().requests()[0];
//! assert_eq!(request.e2e_total_tokens, 15);
//! let stage = request.stage(0).expect("stage 0");
//! assert_eq!((stage.queue_time_ms, stage.stage_gen_time_ms), (5.0, 20.0));
//! assert!(h.diagnostics().is_empty(), "{:?}", h.diagnostics());
//! ```
//!
//! The layer's settings are yours to change ([`Harness::with`]); [`ManualClock`] and
//! [`CaptureSink`] also serve a subscriber you assemble yourself (with an OpenTelemetry
//! layer, say), through [`Builder::with_clock`](crate::Builder::with_clock) and
//! [`Builder::with_sink`](crate::Builder::with_sink).
//!
//! # Spans on other threads
//!
//! [`Harness::run`] makes the harness's subscriber the default of the calling thread only.
//! A stage run on a worker thread or task must be created and dropped under the same
//! dispatcher: give the thread [`Harness::dispatch`]
//! (`tracing::dispatcher::with_default(&dispatch, ..)` around its work), or the task
//! (`.with_subscriber(dispatch)` from `tracing::instrument::WithSubscriber`). A span
//! dropped on a thread whose default is another subscriber never closes its parent (the
//! Registry releases the parent through the closing thread's dispatcher), so its request
//! is never recorded; [`MetricsHandle::open_spans`](crate::MetricsHandle::open_spans) then
//! lists it.

// Compiled without the feature too (the replay plays spans on a `ManualClock`); public
// only with it.
#![cfg_attr(not(feature = "testing"), allow(unreachable_pub, dead_code))]

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tracing::Dispatch;
use tracing_subscriber::prelude::*;

use crate::clock::Clock;
use crate::report::{Record, Sink};
use crate::stats::{OverallSummary, RequestE2EStats};
use crate::{Builder, MetricsHandle, OmniMetricsLayer};

/// The metrics layer on a `Registry` of its own, with a [`ManualClock`], a [`CaptureSink`]
/// and the layer's diagnostics collected; see the [module](self).
///
/// The layer is built with the console and JSON lines off; [`Harness::with`] changes that
/// and any other setting.
pub struct Harness {
    clock: ManualClock,
    capture: CaptureSink,
    handle: MetricsHandle,
    diagnostics: Diagnostics,
    dispatch: Dispatch,
}

impl fmt::Debug for Harness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Harness")
            .field("clock", &self.clock)
            .field("records", &self.capture.lock().len())
            .finish_non_exhaustive()
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// The layer with its defaults, but no console and no JSON lines; the clock at 0.
    pub fn new() -> Self {
        Self::with(|builder| builder)
    }

    /// The layer as `configure` sets it up, from a builder with the console and JSON lines
    /// off (turn them on with a [`Destination::writer`](crate::Destination::writer) to read
    /// what they print). The harness adds its clock and its capture.
    ///
    /// ```
    /// use omni_metrics::testing::Harness;
    /// let h = Harness::with(|b| b.with_summary_window(std::time::Duration::from_secs(10)));
    /// assert_eq!(h.handle().summary_window().as_secs(), 10);
    /// ```
    ///
    /// # Panics
    ///
    /// If the layer cannot be built: `configure` asked for a file that cannot be opened,
    /// or an endpoint that cannot be served.
    pub fn with(configure: impl FnOnce(Builder) -> Builder) -> Self {
        let clock = ManualClock::new();
        let capture = CaptureSink::new();
        let builder = OmniMetricsLayer::builder()
            .with_console(false)
            .with_jsonl(false);
        let layer = configure(builder)
            .clock(clock.clone())
            .with_sink(capture.clone())
            .build()
            .unwrap_or_else(|e| panic!("the harness's layer cannot be built: {e}"));
        let handle = layer.handle();
        let diagnostics = Diagnostics::default();
        let dispatch = Dispatch::new(
            tracing_subscriber::registry()
                .with(layer)
                .with(diagnostics.clone()),
        );
        Self {
            clock,
            capture,
            handle,
            diagnostics,
            dispatch,
        }
    }

    /// Runs `f` with the harness's subscriber as the calling thread's default (scoped: other
    /// threads and tests are unaffected), and returns what `f` returns.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        tracing::dispatcher::with_default(&self.dispatch, f)
    }

    /// The clock every span is timed by: move it between opening and closing spans.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// Every finished request and scope, in order.
    pub fn capture(&self) -> &CaptureSink {
        &self.capture
    }

    /// The layer's handle: totals, summaries, open spans.
    pub fn handle(&self) -> &MetricsHandle {
        &self.handle
    }

    /// The subscriber, for threads and tasks of the test (see the [module](self)).
    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }

    /// What the layer said so far about spans that break the convention: the messages of
    /// its events of target `omni_metrics::diagnostics`, in order.
    pub fn diagnostics(&self) -> Vec<String> {
        self.diagnostics.messages()
    }
}

/// Keeps the messages of the layer's diagnostics (events of target
/// `omni_metrics::diagnostics`); clones share them.
#[derive(Clone, Default)]
struct Diagnostics(Arc<Mutex<Vec<String>>>);

impl Diagnostics {
    fn messages(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Diagnostics {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "omni_metrics::diagnostics" {
            return;
        }
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(message.0);
    }
}

/// A clock that only moves when told to, for tests and simulations: give it to the layer
/// with [`Builder::with_clock`](crate::Builder::with_clock) (the [`Harness`] does).
///
/// Clones share the same time.
///
/// ```
/// use omni_metrics::testing::ManualClock;
/// let clock = ManualClock::new();
/// clock.advance_ms(1.5);
/// clock.advance_ns(500_000);
/// clock.set_ns(10);
/// # drop(clock);
/// ```
#[derive(Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at 0 ns.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `ns` nanoseconds.
    pub fn advance_ns(&self, ns: u64) {
        self.now.fetch_add(ns, Ordering::SeqCst);
    }

    /// Moves the clock forward by `ms` milliseconds, rounded to the nanosecond; negative or
    /// NaN values do not move it.
    pub fn advance_ms(&self, ms: f64) {
        let ns = (ms * 1_000_000.0).round();
        if ns.is_finite() && ns > 0.0 {
            self.advance_ns(ns as u64);
        }
    }

    /// Sets the clock to `ns` nanoseconds (back in time too: a span closed before it
    /// opened counts as lasting 0 ms).
    pub fn set_ns(&self, ns: u64) {
        self.now.store(ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now_ns", &self.now_ns())
            .finish()
    }
}

/// Keeps every record in memory, in arrival order: add it to a layer
/// ([`Builder::with_sink`](crate::Builder::with_sink); the [`Harness`] does) and read what
/// the layer made.
///
/// Clones share the same records. It runs synchronously, on the thread that closed the span
/// (unlike the built-in console and JSON lines, which are written by the layer's writer
/// thread), so a test reads a request's record as soon as its span has closed.
///
/// ```
/// use omni_metrics::testing::CaptureSink;
/// use tracing_subscriber::prelude::*;
///
/// let capture = CaptureSink::new();
/// let layer = omni_metrics::OmniMetricsLayer::builder()
///     .with_console(false)
///     .with_sink(capture.clone())
///     .build()?;
/// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
///     let _request = tracing::info_span!("omni.request", request_id = "r-1");
/// });
/// assert_eq!(capture.requests()[0].request_id, "r-1");
/// assert_eq!(capture.summaries()[0].e2e_requests, 1);
/// assert_eq!(capture.records().len(), 2); // the online request's summary, then itself
/// # Ok::<(), omni_metrics::BuildError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct CaptureSink {
    records: Arc<Mutex<Vec<Record>>>,
}

impl CaptureSink {
    /// An empty capture.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every record so far.
    pub fn records(&self) -> Vec<Record> {
        self.lock().clone()
    }

    /// The finished requests so far.
    pub fn requests(&self) -> Vec<RequestE2EStats> {
        self.lock()
            .iter()
            .filter_map(|r| match r {
                Record::Request(r) => Some(r.clone()),
                Record::Summary(_) => None,
            })
            .collect()
    }

    /// The finished scopes so far.
    pub fn summaries(&self) -> Vec<OverallSummary> {
        self.lock()
            .iter()
            .filter_map(|r| match r {
                Record::Summary(s) => Some(s.clone()),
                Record::Request(_) => None,
            })
            .collect()
    }

    /// Takes every record so far (the capture is left empty): the summaries, then the
    /// requests, in their order. What `omni-metrics` keeps of a replay, without a copy.
    #[cfg(feature = "cli")]
    pub(crate) fn take(&self) -> (Vec<OverallSummary>, Vec<RequestE2EStats>) {
        let (mut summaries, mut requests) = (Vec::new(), Vec::new());
        for record in std::mem::take(&mut *self.lock()) {
            match record {
                Record::Request(r) => requests.push(r),
                Record::Summary(s) => summaries.push(s),
            }
        }
        (summaries, requests)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Record>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Sink for CaptureSink {
    fn on_request(&self, request: &RequestE2EStats) {
        self.lock().push(Record::Request(request.clone()));
    }

    fn on_summary(&self, summary: &OverallSummary) {
        self.lock().push(Record::Summary(summary.clone()));
    }
}
