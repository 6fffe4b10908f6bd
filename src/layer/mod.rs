//! The `tracing-subscriber` layer: span hooks in, finished requests and scopes out to sinks.
//!
//! Data flow: `on_new_span`/`on_record` fill the per-span state ([`state`], kept in the
//! layer's [`table`]; see `open.rs`); `on_close` of a stage or transfer merges it into its
//! request's accumulator; `on_close` of a request builds its [`RequestE2EStats`] and adds
//! it to its scope; the scope's [`OverallSummary`] goes out when the run (or the online
//! request) closes (`close.rs`). `annotate.rs` says what an exported span gets (a name,
//! the table's numbers); `otel.rs` (feature `otlp`) puts it there through
//! tracing-opentelemetry and reads each request's trace id, whichever OpenTelemetry layer
//! the subscriber has.
//!
//! Diagnostics are emitted from `on_close` only: `on_new_span` runs inside the dispatcher's
//! `get_default`, where a nested event reaches no subscriber.
//!
//! Hot-path rules: hooks never block on I/O while a lock is held, never panic, and do one
//! table operation per hook; no hook looks a span up in the Registry in the common case (a
//! span's parent comes from its attributes, its kind from its state). Requests reuse pooled
//! accumulators, so a request allocates nothing in the steady state unless a sink keeps
//! its record.

mod annotate;
mod builder;
mod close;
mod fields;
mod live;
mod names;
mod open;
#[cfg(feature = "otlp")]
mod otel;
mod state;
mod table;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

pub(crate) use annotate::Num;
pub use builder::{BuildError, Builder, Destination};
#[cfg(feature = "otlp")]
pub use otel::AnnotationLayer;
#[cfg(feature = "otlp")]
pub(crate) use otel::{ExportedRun, RunTrace, attribute, dispatch_of_layer, id_attribute};
pub(crate) use state::ReplySlot;

use self::close::Closing;
use self::fields::SetField;
use self::state::{RunLink, RunState};
use self::table::{Slot, Table};
use crate::clock::{Clock, MonotonicClock};
use crate::convention::SpanKind;
use crate::diagnostics::{self, IssueSet};
use crate::handle::MetricsHandle;
use crate::report::writer::{ConsoleConfig, LineSource, Periodic, Writer};
use crate::report::{ConsoleSink, JsonLinesSink, Sink};
use crate::shared::Shared;
use crate::stats::OverallSummary;

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
/// [`FLUSH_TIMEOUT`](Self::FLUSH_TIMEOUT) for what is queued.
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
    /// The state of this copy's open `omni.*` spans: each clone has its own, since a clone
    /// in another subscriber sees that subscriber's span ids.
    table: Arc<Table>,
    /// Another copy of this layer in the same subscriber does the work; this one does
    /// nothing, so that each span counts once.
    duplicate: AtomicBool,
    /// The subscriber this copy of the layer is part of, for trace annotations and the check
    /// of its filter: each clone gets its own, so a clone in another subscriber annotates
    /// that subscriber's spans.
    dispatch: std::sync::OnceLock<tracing::dispatcher::WeakDispatch>,
}

impl Clone for OmniMetricsLayer {
    /// A copy that shares the sinks and totals, to add to another subscriber.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            table: new_table(&self.inner.shared),
            duplicate: AtomicBool::new(false),
            dispatch: std::sync::OnceLock::new(),
        }
    }
}

struct Inner {
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
    /// The audio continuity thresholds every audio stage is judged at, in ms.
    audio_thresholds_ms: Box<[u64]>,
    /// What the builder could not read in the environment: said once, when the layer
    /// joins a subscriber.
    warnings: std::sync::Mutex<Vec<String>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("sinks", &self.sinks.len())
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
    /// How long dropping the last clone of the layer (with its subscriber), or the
    /// [`OmniGuard`](crate::OmniGuard), waits for the queued console tables and JSON-lines
    /// records to be written: 2 s. A stuck writer (a full stderr pipe) cannot hold the
    /// engine's shutdown longer. [`MetricsHandle::flush`] waits as long as it is told.
    pub const FLUSH_TIMEOUT: std::time::Duration = crate::report::writer::FLUSH_TIMEOUT;

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
        let shared = Arc::new(Shared::new(
            shared_clock,
            parts.aggregates,
            parts.summary_window,
        ));
        if let Some(model) = parts.model_name {
            let _ = shared.model_name.set(model);
        }
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
        let table = new_table(&shared);
        // The sinks that read the layer (the metrics exports' live gauges) get its handle.
        let handle = crate::MetricsHandle::new(shared.clone());
        for sink in &parts.sinks {
            sink.on_layer_built(&handle);
        }
        Self {
            inner: Arc::new(Inner {
                clock,
                sinks: parts.sinks,
                writer,
                shared,
                next_run: AtomicU64::new(1),
                next_request: AtomicU64::new(1),
                sink_panicked: std::sync::atomic::AtomicBool::new(false),
                annotations: cfg!(feature = "otlp") && parts.trace_annotations,
                audio_thresholds_ms: parts.audio_thresholds_ms,
                warnings: std::sync::Mutex::new(parts.warnings),
            }),
            table,
            duplicate: AtomicBool::new(false),
            dispatch: std::sync::OnceLock::new(),
        }
    }
}

/// A copy's table of open spans, registered with the handle (which lists its open requests).
fn new_table(shared: &Shared) -> Arc<Table> {
    let table = Arc::new(Table::default());
    let weak: std::sync::Weak<dyn crate::shared::OpenRequests> = Arc::downgrade(&table) as _;
    shared.register_table(weak);
    table
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
    /// The model the layer serves, if named.
    model_name: Option<std::sync::Arc<str>>,
    trace_annotations: bool,
    aggregates: bool,
    summary_window: std::time::Duration,
    audio_thresholds_ms: Box<[u64]>,
    warnings: Vec<String>,
}

/// A run's summary so far, for [`MetricsHandle::open_run_summaries`].
impl crate::shared::OpenRun for std::sync::Mutex<RunState> {
    fn snapshot(&self) -> OverallSummary {
        let state = self
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let scope = state
            .run_id
            .clone()
            .unwrap_or_else(|| crate::shared::UNNAMED_RUN.to_owned());
        state.scope.summary(scope)
    }
}

/// Locks a run's scope; a panic elsewhere cannot make its data unreadable.
fn lock_run(link: &RunLink) -> std::sync::MutexGuard<'_, RunState> {
    link.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    /// Says, once, what the builder could not read in the environment, into `subscriber`.
    fn report_warnings(&self, subscriber: &tracing::Dispatch) {
        let warnings = std::mem::take(
            &mut *self
                .warnings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        diagnostics::warn_soon(subscriber, warnings);
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
}

impl OmniMetricsLayer {
    /// A slot the record of the open request `id` is put in when the request closes, or
    /// `None` if `id` is no open request of this copy.
    pub(crate) fn reply_to(&self, id: &Id) -> Option<Arc<state::ReplySlot>> {
        self.table
            .with(id.into_u64(), |slot| match slot {
                Slot::Request(request) => Some(request.reply.get_or_insert_default().clone()),
                _ => None,
            })
            .flatten()
    }

    /// This copy's subscriber, when annotations are on and it is known.
    fn annotation_dispatch(&self) -> Option<tracing::Dispatch> {
        if !self.inner.annotations {
            return None;
        }
        self.registered_dispatch()
    }

    /// This copy's subscriber, when known (for trace ids).
    #[cfg(feature = "otlp")]
    fn registered_dispatch(&self) -> Option<tracing::Dispatch> {
        otel::dispatch_of_layer(self, &self.dispatch)
    }

    #[cfg(not(feature = "otlp"))]
    fn registered_dispatch(&self) -> Option<tracing::Dispatch> {
        None
    }
}

impl OmniMetricsLayer {
    /// Lets `annotation` (of the same subscriber) close this layer's spans, when this layer
    /// annotates.
    #[cfg(feature = "otlp")]
    fn register_annotations(&self, annotation: &AnnotationLayer) {
        if self.inner.annotations && !self.duplicate.load(Ordering::Relaxed) {
            annotation.register(self.inner.clone(), self.table.clone());
        }
    }

    /// An `omni.*` span opened.
    #[inline(never)]
    fn opened<S>(&self, kind: SpanKind, attrs: &Attributes<'_>, id: &Id, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'l> LookupSpan<'l>,
    {
        if !self.duplicate.load(Ordering::Relaxed) {
            self.inner.new_span(&self.table, kind, attrs, id, ctx);
        }
    }

    /// A span that may be one of this layer's closed.
    #[inline(never)]
    fn closed<S>(&self, id: Id, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'l> LookupSpan<'l>,
    {
        let key = id.into_u64();
        let Some(mut map) = self.table.lock(key) else {
            return;
        };
        let Some(slot) = map.remove(key) else {
            return;
        };
        // Under the lock: read before it, the close measured about 3% slower (30 alternated
        // rounds); `Clock` says it must not make spans.
        let now = self.inner.clock.now();
        // A timing child adds to its parent: under the same lock when both are in one
        // shard (the usual case).
        if let Slot::Leaf(leaf) = slot {
            let placed = match leaf.parent {
                Some(p) => map
                    .with_parent(&self.table, key, p, |parent| {
                        open::leaf_event(leaf.kind, parent, now, false)
                    })
                    .unwrap_or(false),
                None => {
                    drop(map);
                    false
                }
            };
            if !placed {
                self.inner.misplaced_leaf(&self.table, &id, ctx);
            }
            return;
        }
        // A stage or transfer merges into its request under this lock (see
        // `Inner::close`); finding the subscriber below reads only `tracing`'s dispatcher
        // and the layers' types. Any other span lets go of it now.
        let held = match slot {
            Slot::Stage(_) | Slot::Transfer(_) => Some(map),
            _ => {
                drop(map);
                None
            }
        };
        let via = slot
            .annotated()
            .then(|| self.annotation_dispatch())
            .flatten();
        // A request's trace id, for its record and the metrics' exemplars: readable
        // here when this layer runs before the OpenTelemetry layer.
        let trace = match (&slot, &via) {
            (Slot::Request(_), None) => self.registered_dispatch(),
            _ => None,
        };
        let closing = Closing {
            id: &id,
            now,
            via: via.as_ref(),
            trace: trace.as_ref(),
        };
        self.inner.close(&self.table, held, slot, &closing, ctx);
    }
}

impl<S> tracing_subscriber::Layer<S> for OmniMetricsLayer
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    // Each hook is a small check inlined into the subscriber (the engine's own spans stop
    // there), then an out-of-line call for `omni.*` spans.
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing_core::subscriber::Interest {
        // A raw `omni.*` span a global filter hides never reaches the layer: ask the
        // subscriber, once it is built, whether it enables this callsite.
        // The typed API's target, `omni`, is checked by the level checks already.
        if metadata.is_span()
            && metadata.target() != crate::convention::TARGET
            && SpanKind::from_name(metadata.name()).is_some()
        {
            if let Some(dispatch) = self.dispatch.get() {
                diagnostics::check_callsite_soon(metadata, dispatch.clone());
            }
        }
        tracing_core::subscriber::Interest::always()
    }

    #[inline]
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let Some(kind) = SpanKind::from_name(attrs.metadata().name()) {
            self.opened(kind, attrs, id, &ctx);
        }
    }

    #[inline]
    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        if self.table.may_hold(id.into_u64()) {
            self.inner.record(&self.table, id, values);
        }
    }

    #[inline]
    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if self.table.may_hold(id.into_u64()) {
            self.closed(id, &ctx);
        }
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, _ctx: Context<'_, S>) {
        if self.table.may_hold(span.into_u64()) && self.table.may_hold(follows.into_u64()) {
            self.inner.link(&self.table, span, follows);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // One comparison for the engine's own events.
        if event.metadata().name() == crate::convention::OUTPUT
            && !self.duplicate.load(Ordering::Relaxed)
        {
            self.inner.output(&self.table, event, &ctx);
        }
    }

    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        // The same layer added twice to one subscriber counts each span once: the copy
        // found first does the work.
        if let Some(first) = subscriber.downcast_ref::<OmniMetricsLayer>() {
            if !std::ptr::eq(first, self) && Arc::ptr_eq(&first.inner, &self.inner) {
                self.duplicate.store(true, Ordering::Relaxed);
            }
        }
        if let Some(writer) = &self.inner.writer {
            writer.state().register(subscriber);
        }
        diagnostics::check_levels_soon();
        self.inner.report_warnings(subscriber);
        let _ = self.dispatch.set(subscriber.downgrade());
        #[cfg(feature = "otlp")]
        {
            if let Some(annotation) = subscriber.downcast_ref::<AnnotationLayer>() {
                self.register_annotations(annotation);
            }
        }
    }
}
