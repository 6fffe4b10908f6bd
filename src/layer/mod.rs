//! The `tracing-subscriber` layer: span hooks in, finished requests and scopes out to sinks.
//!
//! Data flow: `on_new_span`/`on_record` fill the per-span state ([`state`]); `on_close` of a
//! stage or transfer merges it into its request's accumulator; `on_close` of a request
//! builds its [`RequestE2EStats`] and adds it to its scope; the scope's
//! [`OverallSummary`] goes out when the run (or the online request) closes.
//!
//! Diagnostics are emitted from `on_close` only: `on_new_span` runs inside the dispatcher's
//! `get_default`, where a nested event reaches no subscriber.
//!
//! Hot-path rules: hooks never block on I/O while a span lock is held, never panic, and
//! allocate at most one extension per run, request, stage or transfer span (the timing
//! children allocate nothing).

mod builder;
mod fields;
mod live;
mod names;
mod state;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};

pub use builder::{BuildError, Builder, JSONL_ENV, LOG_INTERVAL_ENV, ONLINE_TABLES_ENV};

use self::fields::{SetField, Visitor};
use self::state::{
    BatchSpan, LayerId, RequestLink, RequestSpan, RunLink, RunSpan, RunState, StageSpan,
    TransferSpan,
};
use crate::accumulate::{RequestAcc, ScopeAcc};
use crate::clock::{Clock, MonotonicClock};
use crate::convention::SpanKind;
use crate::diagnostics::{self, Issue, IssueSet};
use crate::handle::{MetricsHandle, Shared};
use crate::report::writer::{ConsoleConfig, LineSource, Periodic, Writer};
use crate::report::{ConsoleSink, JsonLinesSink, Sink};
use crate::stats::{OverallSummary, RequestE2EStats, RequestStatus};

/// The metrics layer: add it to a [`tracing_subscriber::Registry`].
///
/// It reads the `omni.*` spans of the [span convention](crate::convention), computes the
/// vLLM-Omni tables and hands each finished request and scope to its sinks (console tables,
/// JSON lines, your own [`Sink`]s). It ignores every other span and every event but
/// `omni.output`, so put it
/// beside your own layers and filters; give it no filter that drops `omni.*` spans, or their
/// requests will be missing from the tables.
///
/// The console tables and JSON lines are written by the layer's own writer thread (see
/// [`Builder`]); dropping the last clone of the layer (with its subscriber) waits up to
/// [`DEFAULT_FLUSH_TIMEOUT`](crate::report::DEFAULT_FLUSH_TIMEOUT) for what is queued.
///
/// ```
/// use tracing_subscriber::prelude::*;
///
/// let layer = omni_metrics::OmniMetricsLayer::builder()
///     .with_console(false)
///     .build()?;
/// let handle = layer.handle();
/// let subscriber = tracing_subscriber::registry().with(layer);
/// tracing::subscriber::with_default(subscriber, || {
///     let request = tracing::info_span!("omni.request", request_id = "r-1");
///     let stage = tracing::info_span!(parent: &request, "omni.stage", stage_id = 0, num_tokens_in = 12, num_tokens_out = 3);
///     drop(stage);
///     drop(request);
/// });
/// assert_eq!(handle.totals().requests_ok, 1);
/// assert_eq!(handle.totals().total_tokens, 15);
/// # Ok::<(), omni_metrics::BuildError>(())
/// ```
#[must_use = "a layer does nothing until it is added to a subscriber"]
pub struct OmniMetricsLayer {
    inner: Arc<Inner>,
    /// The subscriber this copy of the layer is part of, for trace annotations: each clone
    /// gets its own, so a clone in another subscriber annotates that subscriber's spans.
    #[cfg(feature = "otlp")]
    dispatch: std::sync::OnceLock<tracing::dispatcher::WeakDispatch>,
}

impl Clone for OmniMetricsLayer {
    /// A copy that shares the sinks and totals, to add to another subscriber.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            #[cfg(feature = "otlp")]
            dispatch: std::sync::OnceLock::new(),
        }
    }
}

struct Inner {
    /// This layer's key in the spans' extensions (clones share it).
    id: LayerId,
    clock: ClockSource,
    sinks: Vec<Box<dyn Sink>>,
    /// The built-in console and JSON lines, on their writer thread.
    writer: Option<Writer>,
    shared: Arc<Shared>,
    next_run: AtomicU64,
    next_request: AtomicU64,
    sink_panicked: std::sync::atomic::AtomicBool,
    /// Whether to put computed numbers on exported spans (`otlp` feature, opt-in).
    annotations: bool,
    /// The ids of the open `omni.*` spans, to skip the engine's own spans cheaply.
    live: live::LiveSpans,
    /// What the builder could not read in the environment: said once, when the layer
    /// joins a subscriber.
    warnings: std::sync::Mutex<Vec<String>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The fields of an `omni.output` event.
#[derive(Default)]
struct OutputFields {
    units: u64,
    issues: IssueSet,
}

impl SetField for OutputFields {
    fn set(&mut self, name: &str, value: fields::FieldValue<'_>) {
        if name == crate::convention::field::UNITS {
            if let Some(units) = value.to_u64(&mut self.issues) {
                self.units = units;
            }
        }
    }
}

/// The default clock without a virtual call; a custom one behind `dyn`.
enum ClockSource {
    Monotonic(MonotonicClock),
    Custom(Arc<dyn Clock>),
}

impl ClockSource {
    #[inline]
    fn now(&self) -> u64 {
        match self {
            ClockSource::Monotonic(c) => c.now_ns(),
            ClockSource::Custom(c) => c.now_ns(),
        }
    }
}

impl std::fmt::Debug for OmniMetricsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OmniMetricsLayer")
            .field("sinks", &self.inner.sinks.len())
            .field("writer", &self.inner.writer)
            .field(
                "clock",
                &match self.inner.clock {
                    ClockSource::Monotonic(_) => "monotonic",
                    ClockSource::Custom(_) => "custom",
                },
            )
            .finish_non_exhaustive()
    }
}

impl OmniMetricsLayer {
    /// A builder; see [`Builder`] for the defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A handle that reads this layer's totals and latest summary; cheap to clone.
    pub fn handle(&self) -> MetricsHandle {
        MetricsHandle::new(self.inner.shared.clone())
    }

    fn from_parts(parts: Parts) -> Self {
        let (clock, shared_clock): (ClockSource, Arc<dyn Clock>) = match parts.clock {
            Some(c) => (ClockSource::Custom(c.clone()), c),
            None => {
                let c = MonotonicClock::new();
                (ClockSource::Monotonic(c.clone()), Arc::new(c))
            }
        };
        static NEXT_LAYER: AtomicU64 = AtomicU64::new(1);
        let shared = Arc::new(Shared::new(
            shared_clock,
            parts.aggregates,
            parts.summary_window,
        ));
        let console = parts.console.map(|sink| ConsoleConfig {
            sink,
            online_tables: parts.online_tables,
            periodic: parts.periodic.map(|interval| {
                let source: Arc<dyn LineSource> = shared.clone();
                Periodic {
                    interval,
                    source: Arc::downgrade(&source),
                }
            }),
        });
        let writer = Writer::start(console, parts.jsonl, parts.html, parts.queue_capacity);
        if let Some(writer) = &writer {
            let _ = shared.sink_writer.set(writer.state().clone());
        }
        Self {
            inner: Arc::new(Inner {
                id: NEXT_LAYER.fetch_add(1, Ordering::Relaxed),
                clock,
                sinks: parts.sinks,
                writer,
                shared,
                next_run: AtomicU64::new(1),
                next_request: AtomicU64::new(1),
                sink_panicked: std::sync::atomic::AtomicBool::new(false),
                annotations: cfg!(feature = "otlp") && parts.trace_annotations,
                live: live::LiveSpans::new(),
                warnings: std::sync::Mutex::new(parts.warnings),
            }),
            #[cfg(feature = "otlp")]
            dispatch: std::sync::OnceLock::new(),
        }
    }
}

/// What [`Builder::build`] resolved, for [`OmniMetricsLayer::from_parts`].
pub(super) struct Parts {
    clock: Option<Arc<dyn Clock>>,
    sinks: Vec<Box<dyn Sink>>,
    console: Option<ConsoleSink>,
    online_tables: bool,
    periodic: Option<std::time::Duration>,
    jsonl: Option<JsonLinesSink>,
    html: Option<crate::report::html::live::HtmlLane>,
    queue_capacity: usize,
    trace_annotations: bool,
    aggregates: bool,
    summary_window: std::time::Duration,
    warnings: Vec<String>,
}

/// A run's summary so far, for [`MetricsHandle::open_run_summaries`].
impl crate::handle::OpenRun for std::sync::Mutex<RunState> {
    fn snapshot(&self) -> OverallSummary {
        let state = self
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let scope = state
            .run_id
            .clone()
            .unwrap_or_else(|| crate::handle::UNNAMED_RUN.to_owned());
        state.scope.summary(scope)
    }
}

/// Whether the span names its exported span itself (`otel.name`): then the layer keeps that
/// name (e.g. the GenAI form "chat qwen3-omni") instead of "stage 0 thinker".
fn named<S>(span: &SpanRef<'_, S>) -> bool
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    span.metadata().fields().field("otel.name").is_some()
}

/// Request-span attribute keys for each stage's gen time (`stage_{i}_gen_time_ms`), as
/// static strings; stages beyond the last are left out of the attributes (not the tables).
const STAGE_KEYS: [&str; 8] = [
    "stage_0_gen_time_ms",
    "stage_1_gen_time_ms",
    "stage_2_gen_time_ms",
    "stage_3_gen_time_ms",
    "stage_4_gen_time_ms",
    "stage_5_gen_time_ms",
    "stage_6_gen_time_ms",
    "stage_7_gen_time_ms",
];

/// The subscriber to annotate exported spans through, when annotations are on.
type AnnotateVia<'a> = Option<&'a tracing::Dispatch>;

/// A number put on an exported span: a count (an OTLP int) or a time (a double).
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub(crate) enum Num {
    Count(u64),
    Float(f64),
}

/// What the layer puts on one exported span when it closes.
#[derive(Debug)]
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub(crate) struct Annotation<'a> {
    /// A readable name, unless the span named itself (`otel.name`).
    pub(crate) name: Option<std::borrow::Cow<'static, str>>,
    pub(crate) attributes: &'a [(&'static str, Num)],
    /// A failed request: `error.type` (`error` or `aborted`) and the status message.
    pub(crate) failure: Option<(&'static str, String)>,
}

/// The nearest `omni.request` ancestor of `span` (excluding itself), and whether an
/// `omni.stage` lies between them (or above, when there is no request).
///
/// Only span names are read, no extension locks are taken.
fn enclosing_request<'a, S>(span: &SpanRef<'a, S>) -> (Option<SpanRef<'a, S>>, bool)
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    let mut in_stage = false;
    let mut next = span.parent();
    while let Some(ancestor) = next {
        match SpanKind::from_name(ancestor.name()) {
            Some(SpanKind::Request) => return (Some(ancestor), in_stage),
            Some(SpanKind::Stage) => in_stage = true,
            _ => {}
        }
        next = ancestor.parent();
    }
    (None, in_stage)
}

/// Locks a run's scope; a panic elsewhere cannot make its data unreadable.
fn lock_run(link: &RunLink) -> std::sync::MutexGuard<'_, RunState> {
    link.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Locks a request's accumulator; a panic elsewhere cannot make its data unreadable.
fn lock(link: &RequestLink) -> std::sync::MutexGuard<'_, RequestAcc> {
    link.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    /// Puts computed numbers on the exported OpenTelemetry span `id`, so a trace viewer
    /// shows the table's figures. Call with no extension lock held.
    #[cfg(feature = "otlp")]
    fn annotate(&self, via: AnnotateVia<'_>, id: &Id, annotation: Annotation<'_>) {
        if let Some(dispatch) = via {
            crate::otlp::annotate(dispatch, id, annotation);
        }
    }

    #[cfg(not(feature = "otlp"))]
    fn annotate(&self, _via: AnnotateVia<'_>, _id: &Id, _annotation: Annotation<'_>) {}

    /// The request accumulator of the request `span` belongs to, if any.
    fn request_link<S>(&self, request: Option<&SpanRef<'_, S>>) -> Option<RequestLink>
    where
        S: Subscriber + for<'l> LookupSpan<'l>,
    {
        let ext = request?.extensions();
        state::get::<RequestSpan>(&ext, self.id).map(|r| r.acc.clone())
    }

    fn new_span<S>(
        self: &Arc<Self>,
        kind: SpanKind,
        attrs: &Attributes<'_>,
        id: &Id,
        ctx: &Context<'_, S>,
    ) where
        S: Subscriber + for<'l> LookupSpan<'l>,
    {
        let now = self.clock.now();
        if kind.is_timing() {
            // A timing child keeps no state: one lookup, of its parent. A misplaced child is
            // diagnosed when it closes: an event emitted here, inside the dispatcher's
            // `get_default`, would reach no subscriber.
            let parent = if let Some(parent) = attrs.parent() {
                ctx.span(parent)
            } else if attrs.is_contextual() {
                ctx.lookup_current()
            } else {
                None
            };
            self.leaf_event(kind, parent, now, true);
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let owner = self.annotations.then(|| self.clone());
        match kind {
            SpanKind::Run => {
                let mut state = RunState {
                    run_id: None,
                    scope: ScopeAcc::new(now),
                    named: false,
                    issues: IssueSet::default(),
                    open_key: 0,
                };
                attrs.record(&mut Visitor(&mut state));
                let name = state.run_id.clone();
                let link = Arc::new(std::sync::Mutex::new(state));
                let key = self.shared.run_opened(name, link.clone());
                lock_run(&link).open_key = key;
                let run = RunSpan { state: link, owner };
                state::insert(&mut span.extensions_mut(), self.id, run);
            }
            SpanKind::Request => {
                // One walk up: the enclosing run, and whether a request encloses this one.
                let mut issues = IssueSet::default();
                let mut run = None;
                let mut next = span.parent();
                while let Some(ancestor) = next {
                    match SpanKind::from_name(ancestor.name()) {
                        Some(SpanKind::Request) => issues.insert(Issue::RequestInRequest),
                        Some(SpanKind::Run) => {
                            let ext = ancestor.extensions();
                            run = state::get::<RunSpan>(&ext, self.id).map(|r| r.state.clone());
                            break;
                        }
                        _ => {}
                    }
                    next = ancestor.parent();
                }
                let mut request = RequestSpan {
                    start_ns: now,
                    run,
                    status: None,
                    issues,
                    acc: RequestLink::default(),
                    open_key: 0,
                    owner,
                };
                attrs.record(&mut Visitor(&mut request));
                request.open_key = self.shared.request_opened(&request.acc);
                state::insert(&mut span.extensions_mut(), self.id, request);
            }
            SpanKind::Stage => {
                let (request, in_stage) = enclosing_request(&span);
                let mut stage = StageSpan::new(now, self.request_link(request.as_ref()));
                stage.owner = owner;
                attrs.record(&mut Visitor(&mut stage));
                // A remote stage sits under the stage that called it (its local view).
                if in_stage && !stage.remote {
                    stage.issues.insert(Issue::StageInStage);
                }
                state::insert(&mut span.extensions_mut(), self.id, stage);
            }
            SpanKind::Transfer => {
                let (request, _) = enclosing_request(&span);
                let mut transfer = TransferSpan::new(now, self.request_link(request.as_ref()));
                transfer.owner = owner;
                attrs.record(&mut Visitor(&mut transfer));
                state::insert(&mut span.extensions_mut(), self.id, transfer);
            }
            SpanKind::Batch => {
                let mut batch = BatchSpan::default();
                attrs.record(&mut Visitor(&mut batch));
                state::insert(&mut span.extensions_mut(), self.id, batch);
            }
            SpanKind::Queue | SpanKind::Postprocess | SpanKind::Tx | SpanKind::RxDecode => {}
        }
    }

    /// `follows_from` between a stage and a batch (either way): the stage takes the batch's
    /// id and size where it gave none.
    fn link<'a, S>(&self, a: SpanRef<'a, S>, b: SpanRef<'a, S>)
    where
        S: Subscriber + for<'l> LookupSpan<'l>,
    {
        let (stage, batch) = match (SpanKind::from_name(a.name()), SpanKind::from_name(b.name())) {
            (Some(SpanKind::Stage), Some(SpanKind::Batch)) => (a, b),
            (Some(SpanKind::Batch), Some(SpanKind::Stage)) => (b, a),
            _ => return,
        };
        let lent = {
            let ext = batch.extensions();
            state::get::<BatchSpan>(&ext, self.id).map(|b| (b.batch_id, b.batch_size))
        };
        if let Some((id, size)) = lent {
            if let Some(stage) = state::get_mut::<StageSpan>(&mut stage.extensions_mut(), self.id) {
                stage.lend_batch(id, size);
            }
        }
    }

    /// Opens or closes a timing child in its parent's state. `false` if the parent is not of
    /// the right kind (the child is then not counted, on open and close alike).
    fn leaf_event<S>(
        &self,
        kind: SpanKind,
        parent: Option<SpanRef<'_, S>>,
        now: u64,
        open: bool,
    ) -> bool
    where
        S: Subscriber + for<'l> LookupSpan<'l>,
    {
        let Some(parent) = parent else {
            return false;
        };
        let mut ext = parent.extensions_mut();
        match kind {
            SpanKind::Queue | SpanKind::Postprocess => {
                let Some(stage) = state::get_mut::<StageSpan>(&mut ext, self.id) else {
                    return false;
                };
                let timer = if kind == SpanKind::Queue {
                    &mut stage.queue
                } else {
                    &mut stage.postprocess
                };
                if open {
                    timer.open(now);
                    stage.excluded.open(now);
                } else {
                    timer.close(now);
                    stage.excluded.close(now);
                }
            }
            SpanKind::Tx | SpanKind::RxDecode => {
                let Some(transfer) = state::get_mut::<TransferSpan>(&mut ext, self.id) else {
                    return false;
                };
                match (kind, open) {
                    (SpanKind::Tx, true) => transfer.tx.open(now),
                    (SpanKind::Tx, false) => transfer.tx_closed(now),
                    (_, true) => transfer.rx_opened(now),
                    (_, false) => transfer.rx.close(now),
                }
            }
            _ => return false,
        }
        true
    }

    fn record<S>(&self, kind: SpanKind, values: &Record<'_>, span: SpanRef<'_, S>)
    where
        S: Subscriber + for<'l> LookupSpan<'l>,
    {
        let mut ext = span.extensions_mut();
        fn apply<'e, T: SetField + Send + Sync + 'static>(
            ext: &'e mut tracing_subscriber::registry::ExtensionsMut<'_>,
            layer: LayerId,
            values: &Record<'_>,
        ) -> Option<&'e mut T> {
            let state = state::get_mut::<T>(ext, layer)?;
            values.record(&mut Visitor(&mut *state));
            Some(state)
        }
        match kind {
            SpanKind::Run => {
                if let Some(run) = state::get_mut::<RunSpan>(&mut ext, self.id) {
                    let mut state = lock_run(&run.state);
                    values.record(&mut Visitor(&mut *state));
                    if let (Some(name), false) = (&state.run_id, state.named) {
                        self.shared.run_named(state.open_key, name);
                    }
                }
            }
            SpanKind::Request => {
                apply::<RequestSpan>(&mut ext, self.id, values);
            }
            SpanKind::Stage => {
                apply::<StageSpan>(&mut ext, self.id, values);
            }
            SpanKind::Transfer => {
                apply::<TransferSpan>(&mut ext, self.id, values);
            }
            SpanKind::Batch => {
                apply::<BatchSpan>(&mut ext, self.id, values);
            }
            _ => {}
        }
    }

    /// Closes `span`: merges it into its request, reports a request or a run. Idempotent:
    /// the state is taken out of the span, so a second call (the layer's own `on_close`
    /// after an [`AnnotationLayer`](crate::otlp::AnnotationLayer) ran it) does nothing.
    fn close<S>(
        &self,
        kind: SpanKind,
        span: SpanRef<'_, S>,
        via: AnnotateVia<'_>,
        trace: Option<&tracing::Dispatch>,
    ) where
        S: Subscriber + for<'l> LookupSpan<'l>,
    {
        let now = self.clock.now();
        match kind {
            SpanKind::Stage => {
                let Some(mut stage) =
                    state::remove::<StageSpan>(&mut span.extensions_mut(), self.id)
                else {
                    return;
                };
                let sample = stage.finish(now);
                if let (Some(_), Some(s)) = (via, &sample) {
                    let name = (!named(&span)).then(|| {
                        names::repeated(|out| {
                            use std::fmt::Write as _;
                            let _ = match &s.stage_name {
                                Some(n) => write!(out, "stage {} {n}", s.stage_id),
                                None => write!(out, "stage {}", s.stage_id),
                            };
                        })
                    });
                    self.annotate(
                        via,
                        &span.id(),
                        Annotation {
                            name,
                            attributes: &[
                                ("stage_gen_time_ms", Num::Float(s.stage_gen_time_ms)),
                                ("postprocess_time_ms", Num::Float(s.postprocess_time_ms)),
                                ("queue_time_ms", Num::Float(s.queue_time_ms)),
                            ],
                            failure: None,
                        },
                    );
                }
                if stage.remote {
                    self.remote_work(stage.issues);
                    return;
                }
                self.close_child(stage.request.take(), stage.issues, |acc| {
                    sample.map(|s| acc.add_stage(s)).unwrap_or_default()
                });
            }
            SpanKind::Transfer => {
                let Some(mut transfer) =
                    state::remove::<TransferSpan>(&mut span.extensions_mut(), self.id)
                else {
                    return;
                };
                let (sample, incomplete) = transfer.finish(now);
                if let (Some(_), Some(t)) = (via, &sample) {
                    let name = (!named(&span)).then(|| {
                        names::repeated(|out| {
                            use std::fmt::Write as _;
                            let _ = write!(out, "transfer {}->{}", t.from_stage, t.to_stage);
                        })
                    });
                    self.annotate(
                        via,
                        &span.id(),
                        Annotation {
                            name,
                            attributes: &[
                                (
                                    "size_kbytes",
                                    Num::Float(crate::stats::kbytes(t.size_bytes)),
                                ),
                                ("tx_time_ms", Num::Float(t.tx_time_ms)),
                                ("rx_decode_time_ms", Num::Float(t.rx_decode_time_ms)),
                                ("in_flight_time_ms", Num::Float(t.in_flight_time_ms)),
                            ],
                            failure: None,
                        },
                    );
                }
                if transfer.remote {
                    // One half of a transfer between processes: incomplete by design.
                    self.remote_work(transfer.issues);
                    return;
                }
                // Without a request to settle them, incomplete transfers are said now.
                let issues = match transfer.request {
                    Some(_) => transfer.issues,
                    None => transfer.issues.union(incomplete),
                };
                self.close_child(transfer.request.take(), issues, |acc| {
                    if let Some(t) = sample {
                        acc.add_transfer(t);
                    }
                    acc.defer_incomplete(incomplete);
                    IssueSet::default()
                });
            }
            SpanKind::Request => {
                let Some(request) =
                    state::remove::<RequestSpan>(&mut span.extensions_mut(), self.id)
                else {
                    return;
                };
                let (id, named) = (span.id(), named(&span));
                drop(span);
                #[cfg(feature = "otlp")]
                let trace_id = trace.or(via).and_then(|d| crate::otlp::trace_id(d, &id));
                #[cfg(not(feature = "otlp"))]
                let trace_id = trace.and(None);
                self.close_request(&id, named, request, now, via, trace_id);
            }
            SpanKind::Run => {
                let Some(run) = state::remove::<RunSpan>(&mut span.extensions_mut(), self.id)
                else {
                    return;
                };
                let (summary, issues) = {
                    let mut state = lock_run(&run.state);
                    self.shared.run_closed(state.open_key);
                    let scope = state.run_id.take().unwrap_or_else(|| {
                        format!("run-{}", self.next_run.fetch_add(1, Ordering::Relaxed))
                    });
                    let issues = state.issues;
                    if !issues.is_empty() {
                        // A late `run_id` counts in the run's summary too.
                        state.scope.count_invalid();
                    }
                    (state.scope.summary(scope), issues)
                };
                let name = (!named(&span)).then(|| format!("run {}", summary.scope).into());
                let attributes = [
                    ("e2e_requests", Num::Count(summary.e2e_requests)),
                    ("e2e_wall_time_ms", Num::Float(summary.e2e_wall_time_ms)),
                    ("e2e_total_tokens", Num::Count(summary.e2e_total_tokens)),
                ];
                #[cfg(feature = "otlp")]
                let exported_apart = {
                    // Exported by `otlp::RunLinks` (so that its requests own their traces).
                    let ext = span.extensions();
                    match ext.get::<crate::otlp::RunTrace>() {
                        Some(trace) => {
                            trace.finish(name.clone(), &attributes);
                            true
                        }
                        None => false,
                    }
                };
                #[cfg(not(feature = "otlp"))]
                let exported_apart = false;
                if via.is_some() && !exported_apart {
                    self.annotate(
                        via,
                        &span.id(),
                        Annotation {
                            name,
                            attributes: &attributes,
                            failure: None,
                        },
                    );
                }
                self.shared.diagnostics.record(issues);
                self.emit_run_summary(summary);
            }
            SpanKind::Batch => {
                if let Some(batch) = state::remove::<BatchSpan>(&mut span.extensions_mut(), self.id)
                {
                    // A mistyped batch field is said like any other.
                    self.shared.diagnostics.record(batch.issues());
                }
            }
            SpanKind::Queue | SpanKind::Postprocess | SpanKind::Tx | SpanKind::RxDecode => {
                if !self.leaf_event(kind, span.parent(), now, false) {
                    // Counted in the request it sits in too, so that the records, the
                    // summary and the handle agree.
                    if let Some(link) = self.request_link(enclosing_request(&span).0.as_ref()) {
                        lock(&link).count_invalid();
                    }
                    let mut issues = IssueSet::default();
                    issues.insert(Issue::LeafOutsideParent);
                    self.shared.diagnostics.record(issues);
                }
            }
        }
    }

    /// An `omni.output` event: one output chunk of the stage it sits in.
    fn output<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'l> LookupSpan<'l>,
    {
        let now = self.clock.now();
        let mut fields = OutputFields::default();
        event.record(&mut Visitor(&mut fields));
        let mut issues = fields.issues;
        // The nearest enclosing stage (the event may sit in its queue or postprocess child).
        let stage = ctx.event_span(event).and_then(|span| {
            span.scope()
                .take_while(|s| SpanKind::from_name(s.name()) != Some(SpanKind::Request))
                .find(|s| SpanKind::from_name(s.name()) == Some(SpanKind::Stage))
        });
        let counted = stage.is_some_and(|span| {
            let mut ext = span.extensions_mut();
            match state::get_mut::<StageSpan>(&mut ext, self.id) {
                Some(stage) => {
                    stage.output(now, fields.units);
                    true
                }
                None => false,
            }
        });
        if !counted {
            issues.insert(Issue::OutputOutsideStage);
        }
        // An event is not inside the dispatcher's `get_default`: the warning goes out now.
        self.shared.diagnostics.record(issues);
    }

    /// A stage or transfer done here for a request owned by another process
    /// ([`crate::propagation`]): counted, and left to that process's tables.
    fn remote_work(&self, issues: IssueSet) {
        self.shared.diagnostics.count_remote();
        self.shared.diagnostics.record(issues);
    }

    /// Merges a closed stage or transfer into its request, then reports its issues.
    fn close_child(
        &self,
        request: Option<RequestLink>,
        mut issues: IssueSet,
        merge: impl FnOnce(&mut RequestAcc) -> IssueSet,
    ) {
        match request {
            Some(link) => {
                let mut acc = lock(&link);
                issues = issues.union(merge(&mut acc));
                if !issues.is_empty() {
                    acc.count_invalid();
                }
            }
            None => issues.insert(Issue::OutsideRequest),
        }
        // No lock is held here: the warning may be formatted by another layer.
        self.shared.diagnostics.record(issues);
    }

    fn close_request(
        &self,
        id: &Id,
        named: bool,
        request: RequestSpan,
        now: u64,
        via: AnnotateVia<'_>,
        trace_id: Option<String>,
    ) {
        let RequestSpan {
            start_ns,
            run,
            status,
            mut issues,
            acc,
            open_key,
            ..
        } = request;
        self.shared.request_closed(open_key);
        let status = status.unwrap_or(RequestStatus::Ok);
        // Every child has closed (the Registry closes parents last), so the link is unique;
        // if not, take the data anyway.
        let mut acc = match Arc::try_unwrap(acc) {
            Ok(mutex) => mutex
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            Err(shared) => std::mem::take(&mut *lock(&shared)),
        };
        let (incomplete, incomplete_spans) = acc.settle(status);
        let request_id = acc.take_request_id().unwrap_or_else(|| {
            issues.insert(Issue::MissingRequestId);
            format!(
                "request-{}",
                self.next_request.fetch_add(1, Ordering::Relaxed)
            )
        });
        let online = run.is_none();
        let report = match run {
            Some(run) => {
                let mut run = lock_run(&run);
                if !run.scope.note_request_id(&request_id) {
                    issues.insert(Issue::DuplicateRequestId);
                }
                if !issues.is_empty() {
                    acc.count_invalid();
                }
                let scope = run.run_id.clone().unwrap_or_else(|| {
                    // Name the run now so its requests and summary agree.
                    let id = format!("run-{}", self.next_run.fetch_add(1, Ordering::Relaxed));
                    run.run_id = Some(id.clone());
                    id
                });
                let report = acc.finish(request_id, status, scope, start_ns, now);
                run.scope.add(&report);
                if !run.named {
                    run.named = true;
                    self.shared.run_named(run.open_key, &report.scope);
                }
                report
            }
            None => self.online(acc, issues, request_id, status, start_ns, now),
        };
        self.shared.diagnostics.record(issues);
        self.shared
            .diagnostics
            .record_n(incomplete, incomplete_spans);
        if via.is_some() {
            let mut attributes = vec![
                ("e2e_total_ms", Num::Float(report.e2e_total_ms)),
                ("e2e_total_tokens", Num::Count(report.e2e_total_tokens)),
                (
                    "transfers_total_time_ms",
                    Num::Float(report.transfers_total_time_ms),
                ),
                (
                    "transfers_total_kbytes",
                    Num::Float(report.transfers_total_kbytes),
                ),
            ];
            for s in report
                .stages
                .iter()
                .filter(|s| s.stage_id < STAGE_KEYS.len() as u64)
            {
                attributes.push((
                    STAGE_KEYS[s.stage_id as usize],
                    Num::Float(s.stage_gen_time_ms),
                ));
            }
            let failure = match report.status {
                RequestStatus::Ok => None,
                RequestStatus::Error => Some((
                    "error",
                    report
                        .status_message
                        .clone()
                        .unwrap_or_else(|| "error".to_owned()),
                )),
                RequestStatus::Aborted => Some(("aborted", "aborted".to_owned())),
            };
            let name = (!named).then(|| format!("request {}", report.request_id).into());
            self.annotate(
                via,
                id,
                Annotation {
                    name,
                    attributes: &attributes,
                    failure,
                },
            );
        }
        let mut report = report;
        report.trace_id = trace_id;
        self.emit_request(report, online);
    }

    /// An online request is its own scope: its summary goes out first, as in the seed.
    fn online(
        &self,
        mut acc: RequestAcc,
        issues: IssueSet,
        request_id: String,
        status: RequestStatus,
        start: u64,
        end: u64,
    ) -> RequestE2EStats {
        if !issues.is_empty() {
            acc.count_invalid();
        }
        let scope = request_id.clone();
        let report = acc.finish(request_id, status, scope, start, end);
        let to_writer = self.writer.as_ref().filter(|w| w.wants_online_summary());
        if !self.sinks.is_empty() || to_writer.is_some() {
            let mut scope = ScopeAcc::new(start);
            scope.add(&report);
            let summary = scope.summary(report.scope.clone());
            for sink in &self.sinks {
                self.guarded(|| sink.on_summary(&summary));
            }
            if let Some(writer) = to_writer {
                writer.summary(summary, true);
            }
        }
        report
    }

    /// A finished request (`online`: with no run): to the handle's totals and aggregates,
    /// then to the sinks.
    fn emit_request(&self, report: RequestE2EStats, online: bool) {
        self.shared.record_request(&report);
        for sink in &self.sinks {
            self.guarded(|| sink.on_request(&report));
        }
        // Moved, not cloned, into the writer's queue: no formatting or I/O here.
        if let Some(writer) = &self.writer {
            writer.request(report, online);
        }
    }

    /// Says, once, what the builder could not read in the environment, into `subscriber`.
    ///
    /// From a short-lived thread: the layer is being registered, inside tracing-core's
    /// registry of dispatchers, where an event of a new callsite would deadlock.
    fn report_warnings(&self, subscriber: &tracing::Dispatch) {
        let warnings = std::mem::take(
            &mut *self
                .warnings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if warnings.is_empty() {
            return;
        }
        let dispatch = subscriber.downgrade();
        let _ = std::thread::Builder::new()
            .name("omni-metrics-report".into())
            .spawn(move || {
                if let Some(dispatch) = dispatch.upgrade() {
                    tracing::dispatcher::with_default(&dispatch, || {
                        // Waits for the registration to finish (it holds tracing-core's
                        // lock of dispatchers), then sets the maximum level with this
                        // subscriber in it: before that, a WARN event may be dropped.
                        tracing_core::callsite::rebuild_interest_cache();
                        for warning in warnings {
                            tracing::warn!(target: "omni_metrics::diagnostics", "{warning}");
                        }
                    });
                }
            });
    }

    /// Runs a sink call so that a panicking sink cannot unwind into the engine's `drop` of a
    /// span; the panic is reported once and the other sinks still run.
    fn guarded(&self, call: impl FnOnce()) {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).is_err()
            && !self.sink_panicked.swap(true, Ordering::Relaxed)
        {
            tracing::error!(
                target: "omni_metrics::diagnostics",
                "a metrics sink panicked; its record was skipped (reported once). Sinks run on \
                 the engine's threads and must not panic."
            );
        }
    }

    /// A run's summary: to the sinks and the handle.
    fn emit_run_summary(&self, summary: OverallSummary) {
        for sink in &self.sinks {
            self.guarded(|| sink.on_summary(&summary));
        }
        if let Some(writer) = &self.writer {
            writer.summary(summary.clone(), false);
        }
        self.shared.record_run_summary(summary);
    }
}

impl OmniMetricsLayer {
    /// This copy's subscriber, when annotations are on and it is known.
    #[cfg(feature = "otlp")]
    fn annotation_dispatch(&self) -> Option<tracing::Dispatch> {
        if !self.inner.annotations {
            return None;
        }
        self.dispatch.get()?.upgrade()
    }

    #[cfg(not(feature = "otlp"))]
    fn annotation_dispatch(&self) -> Option<tracing::Dispatch> {
        None
    }

    /// This copy's subscriber, when known (for trace ids).
    #[cfg(feature = "otlp")]
    fn registered_dispatch(&self) -> Option<tracing::Dispatch> {
        self.dispatch.get()?.upgrade()
    }

    #[cfg(not(feature = "otlp"))]
    fn registered_dispatch(&self) -> Option<tracing::Dispatch> {
        None
    }
}

impl<S> tracing_subscriber::Layer<S> for OmniMetricsLayer
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(kind) = SpanKind::from_name(attrs.metadata().name()) else {
            return;
        };
        self.inner.live.opened(id);
        self.inner.new_span(kind, attrs, id, &ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if !self.inner.live.may_be_ours(id) {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        if let Some(kind) = SpanKind::from_name(span.name()) {
            self.inner.record(kind, values, span);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if !self.inner.live.may_be_ours(&id) {
            return;
        }
        let Some(span) = ctx.span(&id) else { return };
        if let Some(kind) = SpanKind::from_name(span.name()) {
            self.inner.live.closed(&id);
            let via = if kind.is_timing() {
                None
            } else {
                self.annotation_dispatch()
            };
            // A request's trace id, for its record and the metrics' exemplars: readable
            // here when this layer runs before the OpenTelemetry layer.
            let trace = match (kind, &via) {
                (SpanKind::Request, None) => self.registered_dispatch(),
                _ => None,
            };
            self.inner.close(kind, span, via.as_ref(), trace.as_ref());
        }
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        if !self.inner.live.may_be_ours(span) || !self.inner.live.may_be_ours(follows) {
            return;
        }
        if let (Some(a), Some(b)) = (ctx.span(span), ctx.span(follows)) {
            self.inner.link(a, b);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // One comparison for the engine's own events.
        if event.metadata().name() == crate::convention::OUTPUT {
            self.inner.output(event, &ctx);
        }
    }

    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        if let Some(writer) = &self.inner.writer {
            writer.state().register(subscriber);
        }
        diagnostics::check_levels_soon();
        self.inner.report_warnings(subscriber);
        #[cfg(feature = "otlp")]
        let _ = self.dispatch.set(subscriber.downgrade());
    }
}

/// Runs the metrics layers' close of `omni.*` spans just before the OpenTelemetry layer
/// ends them, and annotates through the subscriber it is part of.
///
/// The layers of a subscriber close a span in the order they were added. The metrics
/// layer puts names and numbers on the exported span when it closes; if the OpenTelemetry
/// layer was added first, it would have ended (and exported) the span already. This layer,
/// placed right before the OpenTelemetry layer, makes the order of the two irrelevant.
/// [`OtlpPipeline::layer`](crate::otlp::OtlpPipeline::layer) includes it; add it yourself
/// only in front of an OpenTelemetry layer you build:
///
/// ```
/// use omni_metrics::otlp::AnnotationLayer;
/// use tracing_subscriber::prelude::*;
///
/// let otel = tracing_opentelemetry::layer(); // with your own tracer
/// let metrics = omni_metrics::OmniMetricsLayer::builder()
///     .with_console(false)
///     .with_trace_annotations(true)
///     .build()?;
/// let subscriber = tracing_subscriber::registry()
///     .with(AnnotationLayer::new().and_then(otel))
///     .with(metrics); // after the OpenTelemetry layer: fine
/// # drop(subscriber);
/// # Ok::<(), omni_metrics::BuildError>(())
/// ```
#[cfg(feature = "otlp")]
#[derive(Debug, Default)]
pub struct AnnotationLayer {
    dispatch: std::sync::OnceLock<tracing::dispatcher::WeakDispatch>,
}

#[cfg(feature = "otlp")]
impl AnnotationLayer {
    /// The layer; put it right before (`.and_then`) the OpenTelemetry layer.
    pub fn new() -> Self {
        Self::default()
    }
}

#[cfg(feature = "otlp")]
impl<S> tracing_subscriber::Layer<S> for AnnotationLayer
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let kind = SpanKind::from_name(span.name());
        // The layers (usually one) that keep state for this span and want annotations.
        let owners: smallvec::SmallVec<[Arc<Inner>; 1]> = {
            let ext = span.extensions();
            fn owners_of<T: 'static>(
                ext: &tracing_subscriber::registry::Extensions<'_>,
                owner: fn(&T) -> Option<&Arc<Inner>>,
            ) -> smallvec::SmallVec<[Arc<Inner>; 1]> {
                ext.get::<state::PerLayer<T>>()
                    .map(|slots| slots.owners(owner))
                    .unwrap_or_default()
            }
            match kind {
                Some(SpanKind::Stage) => owners_of::<StageSpan>(&ext, |s| s.owner.as_ref()),
                Some(SpanKind::Transfer) => owners_of::<TransferSpan>(&ext, |s| s.owner.as_ref()),
                Some(SpanKind::Request) => owners_of::<RequestSpan>(&ext, |s| s.owner.as_ref()),
                Some(SpanKind::Run) => owners_of::<RunSpan>(&ext, |s| s.owner.as_ref()),
                _ => return,
            }
        };
        let (Some(kind), false) = (kind, owners.is_empty()) else {
            return;
        };
        let Some(dispatch) = crate::otlp::dispatch_of(&self.dispatch) else {
            return;
        };
        for inner in owners {
            if let Some(span) = ctx.span(&id) {
                inner.close(kind, span, Some(&dispatch), None);
            }
        }
    }
}
