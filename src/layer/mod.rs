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
mod state;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};

pub use builder::{BuildError, Builder, JSONL_ENV};

use self::fields::{SetField, Visitor};
use self::state::{RequestLink, RequestSpan, RunSpan, StageSpan, TransferSpan};
use crate::accumulate::{RequestAcc, ScopeAcc};
use crate::clock::{Clock, MonotonicClock};
use crate::convention::SpanKind;
use crate::diagnostics::{Issue, IssueSet};
use crate::handle::{MetricsHandle, Shared};
use crate::report::Sink;
use crate::report::writer::Writer;
use crate::stats::{OverallSummary, RequestE2EStats, RequestStatus};

/// The metrics layer: add it to a [`tracing_subscriber::Registry`].
///
/// It reads the `omni.*` spans of the [span convention](crate::convention), computes the
/// vLLM-Omni tables and hands each finished request and scope to its sinks (console tables,
/// JSON lines, your own [`Sink`]s). It ignores every other span and all events, so put it
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
#[derive(Clone)]
#[must_use = "a layer does nothing until it is added to a subscriber"]
pub struct OmniMetricsLayer {
    inner: Arc<Inner>,
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
    /// Where to annotate exported spans with computed numbers (`otlp` feature, opt-in).
    #[cfg(feature = "otlp")]
    annotations: Option<std::sync::OnceLock<tracing::dispatcher::WeakDispatch>>,
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

    fn from_parts(
        clock: Option<Arc<dyn Clock>>,
        sinks: Vec<Box<dyn Sink>>,
        writer: Option<Writer>,
        #[cfg_attr(not(feature = "otlp"), allow(unused_variables))] trace_annotations: bool,
    ) -> Self {
        let clock = match clock {
            Some(c) => ClockSource::Custom(c),
            None => ClockSource::Monotonic(MonotonicClock::new()),
        };
        let shared = Shared::default();
        if let Some(writer) = &writer {
            let _ = shared.sink_writer.set(writer.state().clone());
        }
        Self {
            inner: Arc::new(Inner {
                clock,
                sinks,
                writer,
                shared: Arc::new(shared),
                next_run: AtomicU64::new(1),
                next_request: AtomicU64::new(1),
                sink_panicked: std::sync::atomic::AtomicBool::new(false),
                #[cfg(feature = "otlp")]
                annotations: trace_annotations.then(std::sync::OnceLock::new),
            }),
        }
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

/// The nearest `omni.request` ancestor of `span` (excluding itself).
///
/// Only span names are read, no extension locks are taken.
fn nearest_request<'a, S>(span: &SpanRef<'a, S>) -> Option<SpanRef<'a, S>>
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    let mut next = span.parent();
    while let Some(ancestor) = next {
        if SpanKind::from_name(ancestor.name()) == Some(SpanKind::Request) {
            return Some(ancestor);
        }
        next = ancestor.parent();
    }
    None
}

/// The accumulator of the request `span` belongs to.
fn request_link<S>(span: &SpanRef<'_, S>) -> Option<RequestLink>
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    let request = nearest_request(span)?;
    let ext = request.extensions();
    ext.get::<RequestSpan>().map(|r| r.acc.clone())
}

/// Locks a request's accumulator; a panic elsewhere cannot make its data unreadable.
fn lock(link: &RequestLink) -> std::sync::MutexGuard<'_, RequestAcc> {
    link.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    /// Puts computed numbers on the exported OpenTelemetry span `id` (when enabled), so a
    /// trace viewer shows the table's figures. Call with no extension lock held.
    #[cfg(feature = "otlp")]
    fn annotate(&self, id: &Id, name: Option<String>, attributes: &[(&'static str, f64)]) {
        let Some(dispatch) = self
            .annotations
            .as_ref()
            .and_then(|cell| cell.get())
            .and_then(tracing::dispatcher::WeakDispatch::upgrade)
        else {
            return;
        };
        crate::otlp::annotate(&dispatch, id, name, attributes);
    }

    #[cfg(not(feature = "otlp"))]
    fn annotate(&self, _id: &Id, _name: Option<String>, _attributes: &[(&'static str, f64)]) {}

    fn annotating(&self) -> bool {
        #[cfg(feature = "otlp")]
        {
            self.annotations.is_some()
        }
        #[cfg(not(feature = "otlp"))]
        {
            false
        }
    }

    fn new_span<S>(&self, kind: SpanKind, attrs: &Attributes<'_>, id: &Id, ctx: &Context<'_, S>)
    where
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
        match kind {
            SpanKind::Run => {
                let mut run = RunSpan {
                    run_id: None,
                    scope: ScopeAcc::new(now),
                };
                attrs.record(&mut Visitor(&mut run));
                span.extensions_mut().insert(run);
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
                            run = Some(ancestor.id());
                            break;
                        }
                        _ => {}
                    }
                    next = ancestor.parent();
                }
                let mut request = RequestSpan {
                    start_ns: now,
                    run,
                    request_id: None,
                    status: None,
                    issues,
                    acc: RequestLink::default(),
                };
                attrs.record(&mut Visitor(&mut request));
                span.extensions_mut().insert(request);
            }
            SpanKind::Stage => {
                let mut stage = StageSpan::new(now, request_link(&span));
                attrs.record(&mut Visitor(&mut stage));
                span.extensions_mut().insert(stage);
            }
            SpanKind::Transfer => {
                let mut transfer = TransferSpan::new(request_link(&span));
                attrs.record(&mut Visitor(&mut transfer));
                span.extensions_mut().insert(transfer);
            }
            SpanKind::Queue | SpanKind::Postprocess | SpanKind::Tx | SpanKind::RxDecode => {}
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
                let Some(stage) = ext.get_mut::<StageSpan>() else {
                    return false;
                };
                let timer = if kind == SpanKind::Queue {
                    &mut stage.queue
                } else {
                    &mut stage.postprocess
                };
                if open {
                    timer.open(now)
                } else {
                    timer.close(now)
                }
            }
            SpanKind::Tx | SpanKind::RxDecode => {
                let Some(transfer) = ext.get_mut::<TransferSpan>() else {
                    return false;
                };
                match (kind, open) {
                    (SpanKind::Tx, true) => transfer.tx.open(now),
                    (SpanKind::Tx, false) => {
                        transfer.tx.close(now);
                        transfer.tx_last_end_ns = transfer.tx_last_end_ns.max(Some(now));
                    }
                    (_, true) => {
                        transfer.rx.open(now);
                        let first = transfer.rx_first_start_ns.map_or(now, |t| t.min(now));
                        transfer.rx_first_start_ns = Some(first);
                    }
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
        fn apply<T: SetField + 'static>(
            ext: &mut tracing_subscriber::registry::ExtensionsMut<'_>,
            values: &Record<'_>,
        ) {
            if let Some(state) = ext.get_mut::<T>() {
                values.record(&mut Visitor(state));
            }
        }
        match kind {
            SpanKind::Run => apply::<RunSpan>(&mut ext, values),
            SpanKind::Request => apply::<RequestSpan>(&mut ext, values),
            SpanKind::Stage => apply::<StageSpan>(&mut ext, values),
            SpanKind::Transfer => apply::<TransferSpan>(&mut ext, values),
            _ => {}
        }
    }

    fn close<S>(&self, kind: SpanKind, span: SpanRef<'_, S>, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'l> LookupSpan<'l>,
    {
        let now = self.clock.now();
        match kind {
            SpanKind::Stage => {
                let Some(mut stage) = span.extensions_mut().remove::<StageSpan>() else {
                    return;
                };
                let sample = stage.finish(now);
                if let (true, Some(s)) = (self.annotating(), &sample) {
                    let name = (!named(&span)).then(|| match &s.stage_name {
                        Some(n) => format!("stage {} {n}", s.stage_id),
                        None => format!("stage {}", s.stage_id),
                    });
                    self.annotate(
                        &span.id(),
                        name,
                        &[
                            ("stage_gen_time_ms", s.stage_gen_time_ms),
                            ("postprocess_time_ms", s.postprocess_time_ms),
                            ("queue_time_ms", s.queue_time_ms),
                        ],
                    );
                }
                self.close_child(stage.request.take(), stage.issues, |acc| {
                    sample.map(|s| acc.add_stage(s)).unwrap_or_default()
                });
            }
            SpanKind::Transfer => {
                let Some(mut transfer) = span.extensions_mut().remove::<TransferSpan>() else {
                    return;
                };
                let sample = transfer.finish();
                if let (true, Some(t)) = (self.annotating(), &sample) {
                    let name = (!named(&span))
                        .then(|| format!("transfer {}->{}", t.from_stage, t.to_stage));
                    self.annotate(
                        &span.id(),
                        name,
                        &[
                            ("size_kbytes", crate::stats::kbytes(t.size_bytes)),
                            ("tx_time_ms", t.tx_time_ms),
                            ("rx_decode_time_ms", t.rx_decode_time_ms),
                            ("in_flight_time_ms", t.in_flight_time_ms),
                        ],
                    );
                }
                self.close_child(transfer.request.take(), transfer.issues, |acc| {
                    if let Some(t) = sample {
                        acc.add_transfer(t);
                    }
                    IssueSet::default()
                });
            }
            SpanKind::Request => {
                let Some(request) = span.extensions_mut().remove::<RequestSpan>() else {
                    return;
                };
                let (id, named) = (span.id(), named(&span));
                drop(span);
                self.close_request(&id, named, request, now, ctx);
            }
            SpanKind::Run => {
                let Some(run) = span.extensions_mut().remove::<RunSpan>() else {
                    return;
                };
                let scope = run.run_id.unwrap_or_else(|| {
                    format!("run-{}", self.next_run.fetch_add(1, Ordering::Relaxed))
                });
                let summary = run.scope.summary(scope);
                self.emit_run_summary(summary);
            }
            SpanKind::Queue | SpanKind::Postprocess | SpanKind::Tx | SpanKind::RxDecode => {
                if !self.leaf_event(kind, span.parent(), now, false) {
                    let mut issues = IssueSet::default();
                    issues.insert(Issue::LeafOutsideParent);
                    self.shared.diagnostics.record(issues);
                }
            }
        }
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

    fn close_request<S>(
        &self,
        id: &Id,
        named: bool,
        request: RequestSpan,
        now: u64,
        ctx: &Context<'_, S>,
    ) where
        S: Subscriber + for<'l> LookupSpan<'l>,
    {
        let RequestSpan {
            start_ns,
            run,
            request_id,
            status,
            mut issues,
            acc,
        } = request;
        let request_id = request_id.unwrap_or_else(|| {
            issues.insert(Issue::MissingRequestId);
            format!(
                "request-{}",
                self.next_request.fetch_add(1, Ordering::Relaxed)
            )
        });
        let status = status.unwrap_or(RequestStatus::Ok);
        // Every child has closed (the Registry closes parents last), so the link is unique;
        // if not, take the data anyway.
        let mut acc = match Arc::try_unwrap(acc) {
            Ok(mutex) => mutex
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            Err(shared) => std::mem::take(&mut *lock(&shared)),
        };
        if !issues.is_empty() {
            acc.count_invalid();
        }
        let run_span = run.as_ref().and_then(|id| ctx.span(id));
        let report = match run_span {
            Some(run_span) => {
                let mut ext = run_span.extensions_mut();
                match ext.get_mut::<RunSpan>() {
                    Some(run) => {
                        let scope = run.run_id.clone().unwrap_or_else(|| {
                            // Name the run now so its requests and summary agree.
                            let id =
                                format!("run-{}", self.next_run.fetch_add(1, Ordering::Relaxed));
                            run.run_id = Some(id.clone());
                            id
                        });
                        let report = acc.finish(request_id, status, scope, start_ns, now);
                        run.scope.add(&report);
                        drop(ext);
                        report
                    }
                    None => {
                        drop(ext);
                        self.online(acc, request_id, status, start_ns, now)
                    }
                }
            }
            None => self.online(acc, request_id, status, start_ns, now),
        };
        self.shared.diagnostics.record(issues);
        if self.annotating() {
            let mut attributes = vec![
                ("e2e_total_ms", report.e2e_total_ms),
                ("e2e_total_tokens", report.e2e_total_tokens as f64),
                ("transfers_total_time_ms", report.transfers_total_time_ms),
                ("transfers_total_kbytes", report.transfers_total_kbytes),
            ];
            for s in report
                .stages
                .iter()
                .filter(|s| s.stage_id < STAGE_KEYS.len() as u64)
            {
                attributes.push((STAGE_KEYS[s.stage_id as usize], s.stage_gen_time_ms));
            }
            let name = (!named).then(|| format!("request {}", report.request_id));
            self.annotate(id, name, &attributes);
        }
        self.emit_request(report);
    }

    /// An online request is its own scope: its summary goes out first, as in the seed.
    fn online(
        &self,
        acc: RequestAcc,
        request_id: String,
        status: RequestStatus,
        start: u64,
        end: u64,
    ) -> RequestE2EStats {
        let scope = request_id.clone();
        let report = acc.finish(request_id, status, scope, start, end);
        if !self.sinks.is_empty() || self.writer.is_some() {
            let mut scope = ScopeAcc::new(start);
            scope.add(&report);
            let summary = scope.summary(report.scope.clone());
            for sink in &self.sinks {
                self.guarded(|| sink.on_summary(&summary));
            }
            if let Some(writer) = &self.writer {
                writer.summary(summary);
            }
        }
        report
    }

    fn emit_request(&self, report: RequestE2EStats) {
        self.shared.record_request(&report);
        for sink in &self.sinks {
            self.guarded(|| sink.on_request(&report));
        }
        // Moved, not cloned, into the writer's queue: no formatting or I/O here.
        if let Some(writer) = &self.writer {
            writer.request(report);
        }
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
            writer.summary(summary.clone());
        }
        self.shared.record_run_summary(summary);
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
        self.inner.new_span(kind, attrs, id, &ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(kind) = SpanKind::from_name(span.name()) {
            self.inner.record(kind, values, span);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        if let Some(kind) = SpanKind::from_name(span.name()) {
            self.inner.close(kind, span, &ctx);
        }
    }

    fn on_event(&self, _event: &Event<'_>, _ctx: Context<'_, S>) {}

    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        if let Some(writer) = &self.inner.writer {
            writer.state().register(subscriber);
        }
        #[cfg(feature = "otlp")]
        if let Some(cell) = &self.inner.annotations {
            let _ = cell.set(subscriber.downgrade());
        }
    }
}
