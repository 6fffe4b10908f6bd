//! What the metrics layer costs an engine, per span, as ratios measured in one run.
//!
//! Workload (issue #8): one request, 3 stages (entered, 5 fields, one `record` each) and 2
//! transfers (each with tx and rx_decode children): 10 spans.
//!
//! Configurations, each in its own process under a global subscriber, as engines run:
//! - `base`: `registry().with(Identity)`, the baseline. A bare `registry()` is not one: with
//!   no layer it never frees closed spans, so its processes grow by gigabytes and its time is
//!   the kernel clearing pages;
//! - `layer`: the Registry with the metrics layer;
//! - `layer-noagg`: the same with the online aggregates off (`with_aggregates(false)`), to
//!   price them: `layer - layer-noagg` is what adding each request to them costs;
//! - `otel`: the Registry with tracing-opentelemetry alone (an SDK tracer that exports
//!   nothing), and `both`: the metrics layer with annotations on in front of it;
//!   `both-noann`: the same with annotations off;
//! - `otel-floor`: `otel` with the least any annotation through tracing-opentelemetry's
//!   public API costs (one `get_otel_context`, one name and one `set_attributes` of as many
//!   numbers as the metrics layer sets, per request, stage and transfer span; nothing
//!   measured or computed): the part of `both / otel` no metrics layer can remove;
//! - `deferred-floor`: not this crate's layer, but the least a layer that moved its work off
//!   the engine's thread would still cost it: per `omni.*` span, a clock read and the
//!   fields copied into a per-thread buffer at open, `record` and close (see
//!   [`DeferredFloor`]);
//! - `frame-floor`: not this crate's layer either, but the least a synchronous layer that
//!   keeps each request's spans in a frame on its own thread would cost (see
//!   [`FrameFloor`]), on 1 and 2 threads;
//! - `frame-locked`: `frame-floor` with an uncontended lock taken and let go in each hook,
//!   as a layer whose state is in a shared table sharded by thread pays;
//! - `foreign`: 10 spans that are not `omni.*`, with and without the layer;
//! - 1 and 2 threads for `base` and `layer`.
//!
//! Rounds are interleaved (every configuration once per round, each in a fresh process);
//! ratios are taken per round, and the median and the spread (min..max) over rounds printed.
//!
//! Run: `cargo bench --bench layer_overhead` (`-- --quick` for a short run; `-- --case NAME`
//! runs one configuration alone, for `perf record` or callgrind; with `--part PART` it runs
//! only a part of the workload, `request-only`, `stages` or `transfers`, to price each kind
//! of span).
//!
//! Results: the table of `docs/performance.md` (the crate's `guide::performance`), and every
//! round in `docs/design/performance-history.md`, with the machine they came from.

mod support;

use std::hint::black_box;
use std::time::Instant;

use omni_metrics::OmniMetricsLayer;
use support::{Args, SPANS_PER_REQUEST, Spread, request, request_span, stage_span, transfer_span};
use tracing::{Dispatch, info_span};
use tracing_subscriber::layer::Identity;
use tracing_subscriber::prelude::*;

/// Counts heap allocations per thread, so the layer's allocations per request can be
/// measured.
#[global_allocator]
static GLOBAL: support::CountAllocs = support::CountAllocs;

/// The workload's parts alone, for pricing each kind of span under callgrind
/// (`--case NAME --part PART`): what a part adds over `request-only` is what its spans cost.
#[derive(Clone, Copy)]
struct Part {
    work: fn(u64),
    spans: u64,
}

/// `--part`: `request-only` (the request span), `stages` (it and its 3 stages) or
/// `transfers` (it and its 2 transfers with their tx and rx_decode), else the whole request.
fn part(name: Option<&str>) -> Option<Part> {
    Some(match name {
        None => Part {
            work: request,
            spans: SPANS_PER_REQUEST,
        },
        Some("request-only") => Part {
            work: |_| drop(black_box(request_span())),
            spans: 1,
        },
        Some("stages") => Part {
            work: |i| {
                let req = request_span();
                (0..3).for_each(|stage| stage_span(&req, stage, i));
                drop(black_box(req));
            },
            spans: 4,
        },
        Some("transfers") => Part {
            work: |_| {
                let req = request_span();
                (0..2).for_each(|stage| transfer_span(&req, stage));
                drop(black_box(req));
            },
            spans: 7,
        },
        Some(_) => return None,
    })
}

/// Ten spans of the engine's own, nested as engines nest them.
fn foreign(i: u64) {
    let root = info_span!("http.request", id = i);
    let _e = root.enter();
    for k in 0..9_u64 {
        let s = info_span!("engine.step", k);
        let _e = s.enter();
        s.record("k", k + 1);
    }
}

fn metrics_layer(annotations: bool) -> OmniMetricsLayer {
    metrics_layer_with(annotations, true)
}

fn metrics_layer_with(annotations: bool, aggregates: bool) -> OmniMetricsLayer {
    let builder = OmniMetricsLayer::builder()
        .with_console(false)
        .with_aggregates(aggregates);
    #[cfg(feature = "otlp")]
    let builder = builder.with_trace_annotations(annotations);
    #[cfg(not(feature = "otlp"))]
    let _ = annotations;
    builder.build().expect("no JSON-lines file in the bench")
}

#[cfg(feature = "otlp")]
fn otel_layer<S>() -> impl tracing_subscriber::Layer<S> + 'static
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use opentelemetry::trace::TracerProvider as _;
    // A tracer whose spans are recorded and dropped: what OpenTelemetry costs the engine's
    // thread, without the export (which runs on its own thread).
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let tracer = provider.tracer("bench");
    std::mem::forget(provider); // lives as long as the process
    omni_metrics::otlp::AnnotationLayer::new()
        .and_then(tracing_opentelemetry::layer().with_tracer(tracer))
}

/// The least an annotation costs through tracing-opentelemetry's public API: per request,
/// stage and transfer span, at close and before the OpenTelemetry layer ends it, one
/// context lookup, a name and one `set_attributes` of as many numbers as the metrics layer
/// sets (request 7, stage 3, transfer 4).
#[cfg(feature = "otlp")]
struct FloorAnnotator;

#[cfg(feature = "otlp")]
impl<S> tracing_subscriber::Layer<S> for FloorAnnotator
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        use opentelemetry::trace::TraceContextExt as _;
        let Some(name) = ctx.metadata(&id).map(|m| m.name()) else {
            return;
        };
        let (label, n) = match name {
            "omni.request" => ("request", 7),
            "omni.stage" => ("stage", 3),
            "omni.transfer" => ("transfer", 4),
            _ => return,
        };
        tracing::dispatcher::get_default(|dispatch| {
            if let Some(cx) = tracing_opentelemetry::get_otel_context(&id, dispatch) {
                let span = cx.span();
                span.update_name(label);
                span.set_attributes(
                    ["a0", "a1", "a2", "a3", "a4", "a5", "a6"]
                        .into_iter()
                        .take(n)
                        .map(|k| opentelemetry::KeyValue::new(k, 1.5)),
                );
            }
        });
    }
}

/// The least a layer that defers its work costs the engine's thread, to know what that
/// design could reach before building it: for each `omni.*` span, a clock read and its
/// fields copied into a per-thread buffer of events when it opens, records and closes; a
/// full buffer would be handed to another thread whole (here it is cleared). Nothing is
/// merged, computed or reported. It has no filter for foreign spans at `record` and close
/// (the workload has none).
struct DeferredFloor {
    clock: omni_metrics::clock::MonotonicClock,
}

/// One hook's copy: the span, its parent, the time and up to 6 numeric fields; text
/// fields go to a per-thread byte arena.
#[derive(Clone, Copy, Default)]
#[allow(dead_code)] // read by the thread the buffer would be handed to
struct SpanEvent {
    id: u64,
    parent: u64,
    at: u64,
    kind: u8,
    len: u8,
    fields: [(u8, u64); 6],
}

thread_local! {
    static EVENTS: std::cell::RefCell<(Vec<SpanEvent>, Vec<u8>)> =
        std::cell::RefCell::new((Vec::with_capacity(4096), Vec::with_capacity(1 << 16)));
}

impl tracing::field::Visit for SpanEvent {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        if let Some(slot) = self.fields.get_mut(usize::from(self.len)) {
            *slot = (field.index() as u8, value);
            self.len += 1;
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        let _ = EVENTS.try_with(|events| {
            let arena = &mut events.borrow_mut().1;
            if arena.len() + value.len() > arena.capacity() {
                arena.clear();
            }
            arena.push(field.index() as u8);
            arena.extend_from_slice(value.as_bytes());
        });
    }

    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

impl DeferredFloor {
    fn push(&self, mut event: SpanEvent, values: impl FnOnce(&mut SpanEvent)) {
        event.at = omni_metrics::clock::Clock::now_ns(&self.clock);
        values(&mut event);
        let _ = EVENTS.try_with(|events| {
            let events = &mut events.borrow_mut().0;
            if events.len() == events.capacity() {
                events.clear();
            }
            events.push(event);
        });
    }
}

/// A new span's parent as the floors keep it: explicit, the thread's current span, or 0.
fn parent_key<S>(
    attrs: &tracing::span::Attributes<'_>,
    ctx: &tracing_subscriber::layer::Context<'_, S>,
) -> u64
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    match attrs.parent() {
        Some(p) => p.into_u64(),
        None if attrs.is_contextual() => ctx.current_span().id().map_or(0, |p| p.into_u64()),
        None => 0,
    }
}

impl<S> tracing_subscriber::Layer<S> for DeferredFloor
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if !attrs.metadata().name().starts_with("omni.") {
            return;
        }
        let parent = parent_key(attrs, &ctx);
        let event = SpanEvent {
            id: id.into_u64(),
            parent,
            kind: 1,
            ..SpanEvent::default()
        };
        self.push(event, |e| attrs.record(e));
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let event = SpanEvent {
            id: id.into_u64(),
            kind: 2,
            ..SpanEvent::default()
        };
        self.push(event, |e| values.record(e));
    }

    fn on_close(&self, id: tracing::span::Id, _: tracing_subscriber::layer::Context<'_, S>) {
        let event = SpanEvent {
            id: id.into_u64(),
            kind: 3,
            ..SpanEvent::default()
        };
        self.push(event, |_| {});
    }
}

/// The least a synchronous layer that keeps each request's state on its own thread would
/// cost, to know what that design could reach before building it: every `omni.*` span of a
/// request opened on this thread lives in a per-thread frame (a small inline list searched
/// by id: no shared table, no lock, no hashing), its numbers are folded into the request as
/// it closes, and the request's close computes its totals and records them in per-thread
/// histograms (the online aggregates). Spans that cross threads, records to sinks, the
/// handle's counts and every diagnostic are left out: it is a floor, not a layer.
///
/// `LOCKED` (`frame-locked`): each hook also takes and lets go of an uncontended lock of a
/// shard chosen by the span id, as a layer with a shared, sharded table does (the price of
/// "the table's shard is the frame" over this floor). Without it the lock is compiled out.
struct FrameFloor<const LOCKED: bool> {
    clock: omni_metrics::clock::MonotonicClock,
    shards: Box<[std::sync::Mutex<u64>; SHARDS]>,
}

/// The shards of `frame-locked`, as many as the layer's table has.
const SHARDS: usize = 32;

/// Where the Registry puts a span's thread shard in its id (the layer's
/// `live::ADDR_BITS`, which the bench cannot reach).
const SHARD_SHIFT: u32 = 37;

impl<const LOCKED: bool> FrameFloor<LOCKED> {
    fn new() -> Self {
        Self {
            clock: omni_metrics::clock::MonotonicClock::new(),
            shards: Box::new(std::array::from_fn(|_| std::sync::Mutex::new(0))),
        }
    }

    /// When `LOCKED`: locks the shard of `id` (the thread bits of a Registry id) and counts
    /// the hook in it, as a table's hook would touch its shard.
    #[inline]
    fn touch(&self, id: u64) {
        if LOCKED {
            let shard = (id.wrapping_sub(1) >> SHARD_SHIFT) as usize % SHARDS;
            if let Some(Ok(mut n)) = self.shards.get(shard).map(|m| m.lock()) {
                *n = black_box(n.wrapping_add(1));
            }
        }
    }
}

/// One open span of a request, or one closed stage or transfer's numbers.
#[derive(Clone, Copy, Default)]
struct FrameSpan {
    id: u64,
    parent: u64,
    kind: u8,
    start: u64,
    /// stage: stage_id, batch_id, batch_size, tokens in, tokens out; transfer: from, to,
    /// size; leaves: unused.
    fields: [u64; 5],
    /// transfer: tx and rx_decode time.
    tx_ns: u64,
    rx_ns: u64,
}

#[derive(Default)]
struct Frame {
    request: u64,
    start: u64,
    request_id: String,
    open: smallvec::SmallVec<[FrameSpan; 8]>,
    /// Closed stages and transfers: (kind, stage id or edge, duration ns, tokens or size).
    done: smallvec::SmallVec<[(u8, u64, u64, u64); 8]>,
}

struct FrameThread {
    frames: Vec<Frame>,
    spare: Vec<Frame>,
    latency: hdrhistogram::Histogram<u64>,
    stage_gen: Vec<hdrhistogram::Histogram<u64>>,
    stage_queue: Vec<hdrhistogram::Histogram<u64>>,
    edge: Vec<hdrhistogram::Histogram<u64>>,
}

fn new_histogram() -> hdrhistogram::Histogram<u64> {
    let mut h = hdrhistogram::Histogram::new(3).expect("3 significant figures are valid");
    h.auto(true);
    h
}

thread_local! {
    static FRAMES: std::cell::RefCell<FrameThread> = std::cell::RefCell::new(FrameThread {
        frames: Vec::with_capacity(4),
        spare: Vec::with_capacity(4),
        latency: new_histogram(),
        stage_gen: (0..8).map(|_| new_histogram()).collect(),
        stage_queue: (0..8).map(|_| new_histogram()).collect(),
        edge: (0..8).map(|_| new_histogram()).collect(),
    });
}

const KIND_REQUEST: u8 = 1;
const KIND_STAGE: u8 = 2;
const KIND_TRANSFER: u8 = 3;
const KIND_TX: u8 = 4;
const KIND_RX: u8 = 5;

fn frame_kind(name: &str) -> Option<u8> {
    use omni_metrics::convention::{REQUEST, STAGE, TRANSFER, TRANSFER_RX_DECODE, TRANSFER_TX};
    Some(match name {
        REQUEST => KIND_REQUEST,
        STAGE => KIND_STAGE,
        TRANSFER => KIND_TRANSFER,
        TRANSFER_TX => KIND_TX,
        TRANSFER_RX_DECODE => KIND_RX,
        _ => return None,
    })
}

impl tracing::field::Visit for FrameSpan {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        use omni_metrics::convention::field::{
            BATCH_ID, BATCH_SIZE, FROM_STAGE, NUM_TOKENS_IN, NUM_TOKENS_OUT, SIZE_BYTES, STAGE_ID,
            TO_STAGE,
        };
        let slot = match (self.kind, field.name()) {
            (KIND_STAGE, STAGE_ID) | (KIND_TRANSFER, FROM_STAGE) => 0,
            (KIND_STAGE, BATCH_ID) | (KIND_TRANSFER, TO_STAGE) => 1,
            (KIND_STAGE, BATCH_SIZE) | (KIND_TRANSFER, SIZE_BYTES) => 2,
            (KIND_STAGE, NUM_TOKENS_IN) => 3,
            (KIND_STAGE, NUM_TOKENS_OUT) => 4,
            _ => return,
        };
        self.fields[slot] = value;
    }

    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

/// The request id, copied into the frame's reused string.
struct RequestId<'a>(&'a mut String);

impl tracing::field::Visit for RequestId<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == omni_metrics::convention::field::REQUEST_ID {
            self.0.clear();
            self.0.push_str(value);
        }
    }

    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

impl FrameThread {
    /// The open span `id` of the innermost frame holding it, with its frame.
    fn find(&mut self, id: u64) -> Option<(&mut Frame, usize)> {
        let frame = self.frames.last_mut()?;
        let at = frame.open.iter().position(|s| s.id == id)?;
        Some((frame, at))
    }

    fn close_request(&mut self, now: u64) {
        let Some(mut frame) = self.frames.pop() else {
            return;
        };
        let e2e_us = now.saturating_sub(frame.start) / 1_000;
        let _ = self.latency.record(e2e_us);
        let mut tokens = 0_u64;
        for &(kind, key, ns, n) in &frame.done {
            let i = usize::try_from(key).unwrap_or(usize::MAX) % 8;
            if kind == KIND_STAGE {
                tokens = tokens.saturating_add(n);
                let _ = self.stage_gen[i].record(ns / 1_000);
                let _ = self.stage_queue[i].record(0);
            } else {
                let _ = self.edge[i].record(ns / 1_000);
            }
        }
        black_box((e2e_us, tokens, frame.request_id.len()));
        frame.open.clear();
        frame.done.clear();
        self.spare.push(frame);
    }
}

impl<S, const LOCKED: bool> tracing_subscriber::Layer<S> for FrameFloor<LOCKED>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let Some(kind) = frame_kind(attrs.metadata().name()) else {
            return;
        };
        self.touch(id.into_u64());
        let now = omni_metrics::clock::Clock::now_ns(&self.clock);
        let parent = parent_key(attrs, &ctx);
        let _ = FRAMES.try_with(|t| {
            let t = &mut *t.borrow_mut();
            if kind == KIND_REQUEST {
                let mut frame = t.spare.pop().unwrap_or_default();
                frame.request = id.into_u64();
                frame.start = now;
                attrs.record(&mut RequestId(&mut frame.request_id));
                t.frames.push(frame);
                return;
            }
            let Some(frame) = t.frames.last_mut() else {
                return; // another thread's request: the shared table's work
            };
            if parent != frame.request && !frame.open.iter().any(|s| s.id == parent) {
                return;
            }
            let mut span = FrameSpan {
                id: id.into_u64(),
                parent,
                kind,
                start: now,
                ..FrameSpan::default()
            };
            attrs.record(&mut span);
            frame.open.push(span);
        });
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.touch(id.into_u64());
        let _ = FRAMES.try_with(|t| {
            if let Some((frame, at)) = t.borrow_mut().find(id.into_u64()) {
                values.record(&mut frame.open[at]);
            }
        });
    }

    fn on_close(&self, id: tracing::span::Id, _: tracing_subscriber::layer::Context<'_, S>) {
        let key = id.into_u64();
        self.touch(key);
        let _ = FRAMES.try_with(|t| {
            let t = &mut *t.borrow_mut();
            if t.frames.last().is_some_and(|f| f.request == key) {
                let now = omni_metrics::clock::Clock::now_ns(&self.clock);
                t.close_request(now);
                return;
            }
            let Some((frame, at)) = t.find(key) else {
                return;
            };
            let span = frame.open.swap_remove(at);
            let now = omni_metrics::clock::Clock::now_ns(&self.clock);
            let ns = now.saturating_sub(span.start);
            match span.kind {
                KIND_STAGE => frame.done.push((
                    KIND_STAGE,
                    span.fields[0],
                    ns,
                    span.fields[3].saturating_add(span.fields[4]),
                )),
                KIND_TRANSFER => frame.done.push((
                    KIND_TRANSFER,
                    span.fields[0],
                    ns.saturating_sub(span.tx_ns).saturating_sub(span.rx_ns),
                    span.fields[2],
                )),
                kind => {
                    if let Some(parent) = frame.open.iter_mut().find(|s| s.id == span.parent) {
                        if kind == KIND_TX {
                            parent.tx_ns = ns;
                        } else {
                            parent.rx_ns = ns;
                        }
                    }
                }
            }
        });
    }
}

/// The subscriber of a configuration, or `None` for an unknown one.
fn dispatch(config: &str) -> Option<Dispatch> {
    let registry = tracing_subscriber::registry;
    Some(match config {
        "base" | "foreign-base" => Dispatch::new(registry().with(Identity::new())),
        "layer" | "foreign-layer" => Dispatch::new(registry().with(metrics_layer(false))),
        "layer-noagg" => Dispatch::new(registry().with(metrics_layer_with(false, false))),
        "deferred-floor" => Dispatch::new(registry().with(DeferredFloor {
            clock: omni_metrics::clock::MonotonicClock::new(),
        })),
        "frame-floor" => Dispatch::new(registry().with(FrameFloor::<false>::new())),
        "frame-locked" => Dispatch::new(registry().with(FrameFloor::<true>::new())),
        #[cfg(feature = "otlp")]
        "otel" => Dispatch::new(registry().with(otel_layer())),
        #[cfg(feature = "otlp")]
        "both" => Dispatch::new(registry().with(metrics_layer(true)).with(otel_layer())),
        #[cfg(feature = "otlp")]
        "both-noann" => Dispatch::new(registry().with(metrics_layer(false)).with(otel_layer())),
        #[cfg(feature = "otlp")]
        "otel-floor" => Dispatch::new(registry().with(FloorAnnotator.and_then(otel_layer()))),
        _ => return None,
    })
}

/// The median over `rounds` of the wall time for `iters` iterations on each of `threads`
/// threads, in ns per span of one thread. The threads live across rounds (a new thread
/// would pay for new Registry slab pages, not the layer's cost).
fn ns_per_span(work: fn(u64), spans: u64, threads: usize, iters: u64, rounds: usize) -> f64 {
    let barrier = std::sync::Barrier::new(threads + 1);
    let mut samples = Vec::with_capacity(rounds);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let barrier = &barrier;
            scope.spawn(move || {
                for i in 0..iters {
                    work(i); // warm up: slab pages, allocator caches
                }
                for _ in 0..rounds {
                    barrier.wait();
                    for i in 0..iters {
                        work(i);
                    }
                    barrier.wait();
                }
            });
        }
        for _ in 0..rounds {
            barrier.wait();
            let start = Instant::now();
            barrier.wait();
            samples.push(start.elapsed());
        }
    });
    let ns = samples
        .iter()
        .map(|t| t.as_nanos() as f64 / (iters * spans) as f64);
    Spread::of(ns.collect()).median
}

fn allocs_per_iter(work: fn(u64), iters: u64) -> f64 {
    for i in 0..iters {
        work(i);
    }
    let before = support::allocs_so_far();
    for i in 0..iters {
        work(i);
    }
    (support::allocs_so_far() - before) as f64 / iters as f64
}

/// One case in this process: `CONFIG` or `CONFIG@2` (two threads). Prints
/// `ns_per_span allocs_per_iteration`.
fn run_case(case: &str, part: Part, iters: u64, rounds: usize) {
    let (config, threads) = match case.split_once('@') {
        Some((c, "2")) => (c, 2),
        _ => (case, 1),
    };
    let Some(dispatch) = dispatch(config) else {
        eprintln!(
            "unknown case {case}: use base, layer, layer-noagg, deferred-floor, frame-floor, frame-locked, otel, \
             both, both-noann, otel-floor, foreign-base or \
             foreign-layer, optionally with @2 for two threads"
        );
        std::process::exit(2);
    };
    if tracing::dispatcher::set_global_default(dispatch).is_err() {
        eprintln!("a global subscriber is already set");
        std::process::exit(1);
    }
    let (work, spans) = if config.starts_with("foreign") {
        (foreign as fn(u64), SPANS_PER_REQUEST)
    } else {
        (part.work, part.spans)
    };
    let ns = ns_per_span(work, spans, threads, iters, rounds);
    let allocs = if threads == 1 {
        allocs_per_iter(work, (iters / 10).max(1))
    } else {
        0.0
    };
    println!("{ns} {allocs}");
}

/// Runs one case in a child process (each needs its own global subscriber).
fn child(case: &str, quick: bool) -> (f64, f64) {
    let exe = std::env::current_exe().expect("the bench binary knows its path");
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["--case", case]);
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd.output().expect("the bench can run itself");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text
        .split_whitespace()
        .map(|v| v.parse::<f64>().unwrap_or(f64::NAN));
    (it.next().unwrap_or(f64::NAN), it.next().unwrap_or(f64::NAN))
}

/// One process's result: ns per span, allocations per iteration.
type Sample = (f64, f64);

fn main() {
    let args = Args::parse();
    let quick = args.quick();
    let (iters, rounds, processes) = if quick {
        (10_000, 3, 3)
    } else {
        (100_000, 5, 7)
    };
    if let Some(case) = args.value("--case") {
        let Some(part) = part(args.value("--part")) else {
            eprintln!("unknown part: use request-only, stages or transfers");
            std::process::exit(2);
        };
        run_case(case, part, iters, rounds);
        return;
    }
    let mut cases = vec![
        "base",
        "layer",
        "layer-noagg",
        "base@2",
        "layer@2",
        "foreign-base",
        "foreign-layer",
        "deferred-floor",
        "frame-floor",
        "frame-floor@2",
        "frame-locked",
    ];
    if cfg!(feature = "otlp") {
        cases.extend(["otel", "both", "both-noann", "otel-floor"]);
    }
    // Interleaved: every case once per round, each in its own process.
    let mut rounds_data: Vec<Vec<Sample>> = Vec::new();
    for _ in 0..processes {
        rounds_data.push(cases.iter().map(|c| child(c, quick)).collect());
    }
    let col = |name: &str| cases.iter().position(|c| *c == name);
    let per_round = |f: &dyn Fn(&[Sample]) -> Option<f64>| -> Option<Spread> {
        let v: Vec<f64> = rounds_data.iter().filter_map(|r| f(r)).collect();
        (!v.is_empty()).then(|| Spread::of(v))
    };
    let get = |r: &[Sample], name: &str| col(name).and_then(|i| r.get(i)).map(|x| x.0);
    let alloc = |r: &[Sample], name: &str| col(name).and_then(|i| r.get(i)).map(|x| x.1);

    support::print_machine();
    println!(
        "workload: 1 request, 3 entered stages (5 fields, 1 record), 2 transfers + tx/rx = 10 spans"
    );
    println!(
        "{iters} iterations per thread, median of {rounds} timed rounds per process, {processes} interleaved rounds of processes, global subscriber"
    );
    println!("ns/span of each round ({}):", cases.join(", "));
    for r in &rounds_data {
        let cells: Vec<String> = r.iter().map(|(ns, _)| format!("{ns:.1}")).collect();
        println!("  {}", cells.join(" "));
    }
    println!();
    println!("| measure | median | spread (min..max) | target |");
    println!("|---|---|---|---|");
    let row = |label: &str, target: &str, v: Option<Spread>, unit: &str| {
        if let Some(Spread { median, min, max }) = v {
            println!("| {label} | {median:.2}{unit} | {min:.2}..{max:.2} | {target} |");
        }
    };
    row(
        "baseline `registry().with(Identity)`, ns/span",
        "",
        per_round(&|r| get(r, "base")),
        "",
    );
    row(
        "metrics layer added, ns/span",
        "",
        per_round(&|r| Some(get(r, "layer")? - get(r, "base")?)),
        "",
    );
    row(
        "added / baseline",
        "<= 0.8x (aim 0.5x)",
        per_round(&|r| Some((get(r, "layer")? - get(r, "base")?) / get(r, "base")?)),
        "x",
    );
    row(
        "deferred floor (clock + copy per hook, nothing merged): added / baseline",
        "",
        per_round(&|r| Some((get(r, "deferred-floor")? - get(r, "base")?) / get(r, "base")?)),
        "x",
    );
    row(
        "frame floor (per-thread request frames, synchronous): added / baseline",
        "",
        per_round(&|r| Some((get(r, "frame-floor")? - get(r, "base")?) / get(r, "base")?)),
        "x",
    );
    row(
        "frame floor + a shard lock per hook: added / baseline",
        "",
        per_round(&|r| Some((get(r, "frame-locked")? - get(r, "base")?) / get(r, "base")?)),
        "x",
    );
    row(
        "frame floor: 2-thread / 1-thread throughput",
        "",
        per_round(&|r| Some(2.0 * get(r, "frame-floor")? / get(r, "frame-floor@2")?)),
        "x",
    );
    row(
        "online aggregates (layer - layer-noagg), ns/span",
        "",
        per_round(&|r| Some(get(r, "layer")? - get(r, "layer-noagg")?)),
        "",
    );
    row(
        "online aggregates / metrics layer added",
        "<= 5%",
        per_round(&|r| {
            Some(
                100.0 * (get(r, "layer")? - get(r, "layer-noagg")?)
                    / (get(r, "layer")? - get(r, "base")?),
            )
        }),
        "%",
    );
    row(
        "allocations per request added",
        "<= 2",
        per_round(&|r| Some(alloc(r, "layer")? - alloc(r, "base")?)),
        "",
    );
    row(
        "foreign spans: added ns/span",
        "< 5",
        per_round(&|r| Some(get(r, "foreign-layer")? - get(r, "foreign-base")?)),
        "",
    );
    row(
        "foreign spans: allocations per 10 spans added",
        "0",
        per_round(&|r| Some(alloc(r, "foreign-layer")? - alloc(r, "foreign-base")?)),
        "",
    );
    row(
        "baseline, 2-thread / 1-thread throughput",
        "",
        per_round(&|r| Some(2.0 * get(r, "base")? / get(r, "base@2")?)),
        "x",
    );
    row(
        "metrics layer, 2-thread / 1-thread throughput",
        ">= 1.8x",
        per_round(&|r| Some(2.0 * get(r, "layer")? / get(r, "layer@2")?)),
        "x",
    );
    row(
        "tracing-opentelemetry alone: added / baseline",
        "",
        per_round(&|r| Some((get(r, "otel")? - get(r, "base")?) / get(r, "base")?)),
        "x",
    );
    row(
        "metrics + OTel (annotations on) / OTel alone",
        "<= 1.08x",
        per_round(&|r| Some(get(r, "both")? / get(r, "otel")?)),
        "x",
    );
    row(
        "metrics + OTel, annotations off / OTel alone",
        "",
        per_round(&|r| Some(get(r, "both-noann")? / get(r, "otel")?)),
        "x",
    );
    row(
        "annotation floor (bridge's API only, nothing computed) / OTel alone",
        "",
        per_round(&|r| Some(get(r, "otel-floor")? / get(r, "otel")?)),
        "x",
    );
    row(
        "metrics + OTel: allocations per request added over OTel alone",
        "",
        per_round(&|r| Some(alloc(r, "both")? - alloc(r, "otel")?)),
        "",
    );
}
