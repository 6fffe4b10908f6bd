//! The layer's side of `tracing-opentelemetry`: the exported span behind a span id (its
//! trace id, the names and numbers put on it), the [`AnnotationLayer`] that closes the
//! metrics layer's spans just before the OpenTelemetry layer ends them, and the hook
//! through which an exporter hands the layer a run's own exported span ([`RunTrace`]).
//!
//! The layer reads and annotates through whichever OpenTelemetry layer its subscriber has
//! (the crate's [`OtlpPipeline`](crate::otlp::OtlpPipeline) or one of the user's own), so
//! these calls live here, not in [`crate::otlp`], which builds on the layer.

use std::borrow::Cow;
use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanContext, TraceContextExt as _};
use tracing_core::Subscriber;
use tracing_core::span::Id;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::Inner;
use super::annotate::{Annotation, Num};
use super::table::{Slot, Table};

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
#[derive(Debug, Default)]
pub struct AnnotationLayer {
    dispatch: std::sync::OnceLock<tracing::dispatcher::WeakDispatch>,
    /// The metrics layers of the same subscriber that want annotations, with their tables:
    /// they register when the subscriber is built, before any span.
    owners: [std::sync::OnceLock<Owner>; MAX_OWNERS],
}

/// What is said when an [`AnnotationLayer`] cannot be reached through its subscriber.
const HIDDEN: &str = "the OpenTelemetry layer (`OtlpPipeline::layer()`, or an `AnnotationLayer` \
     with its OpenTelemetry layer) is inside a layer that hides it from the subscriber, such \
     as `tracing_subscriber::reload`: exported spans will lack the tables' names and numbers, \
     and request records their trace ids (the tables, records and metrics are unaffected). \
     Add it to the subscriber outside `reload`.";

/// Metrics layers with annotations one [`AnnotationLayer`] serves at most.
const MAX_OWNERS: usize = 4;

/// A metrics layer an [`AnnotationLayer`] closes spans for.
#[derive(Debug, Clone)]
struct Owner {
    inner: Arc<Inner>,
    table: Arc<Table>,
}

impl AnnotationLayer {
    /// The layer; put it right before (`.and_then`) the OpenTelemetry layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A metrics layer of the same subscriber, with annotations on (once each).
    pub(super) fn register(&self, inner: Arc<Inner>, table: Arc<Table>) {
        let mut known = self.owners.iter().map_while(std::sync::OnceLock::get);
        if known.any(|o| Arc::ptr_eq(&o.table, &table)) {
            return;
        }
        let mut owner = Owner { inner, table };
        for slot in &self.owners {
            match slot.set(owner) {
                Ok(()) => return,
                Err(back) => owner = back,
            }
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for AnnotationLayer
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
        if subscriber.downcast_ref::<AnnotationLayer>().is_none() {
            // Told of the subscriber but not reachable through it: inside a layer that
            // refuses downcasts, as `reload` does. The OpenTelemetry layer beside it cannot
            // be reached either, and its spans' context is what annotating needs.
            crate::diagnostics::warn_soon(subscriber, vec![HIDDEN.to_owned()]);
        }
        // The metrics layers register themselves; one that is not told of the subscriber
        // (inside an `Option`) is found from here.
        if let Some(metrics) = subscriber.downcast_ref::<super::OmniMetricsLayer>() {
            metrics.register_annotations(self);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let key = id.into_u64();
        let mut dispatch = None;
        for owner in self.owners.iter().map_while(std::sync::OnceLock::get) {
            if !owner.table.may_hold(key) {
                continue;
            }
            // Timing children and batches are left to the layer's own close.
            let Some(slot) = owner.table.remove_if(key, Slot::annotated) else {
                continue;
            };
            if dispatch.is_none() {
                dispatch = dispatch_of_layer(self, &self.dispatch);
            }
            let closing = super::Closing {
                id: &id,
                now: owner.inner.clock.now(),
                via: dispatch.as_ref(),
                trace: None,
            };
            owner.inner.close(&owner.table, None, slot, &closing, &ctx);
        }
    }
}

/// Sets `attributes` (and a readable `name`) on the OpenTelemetry span of `id`, if the
/// subscriber has a `tracing-opentelemetry` layer and the span is sampled. With
/// `want_trace_id`, also returns [`trace_id`] from the same lookup.
pub(super) fn annotate(
    dispatch: &tracing::Dispatch,
    id: &tracing::span::Id,
    annotation: Annotation<'_>,
    want_trace_id: bool,
) -> Option<String> {
    let cx = tracing_opentelemetry::get_otel_context(id, dispatch)?;
    let span = cx.span();
    // The bridge ignores `otel.name` once the span has started (a child was opened);
    // the readable name is set here, at close, where it is known.
    if let Some(name) = annotation.name {
        span.update_name(name);
    }
    // One call (one lock of the span) for all the numbers. `error.type` is what Jaeger
    // (`error=true`) and Tempo (`status = error`) search on beside the status, and
    // OpenTelemetry's way to tell a failure from a cancellation.
    let error_type = annotation
        .failure
        .as_ref()
        .map(|(error_type, _)| opentelemetry::KeyValue::new("error.type", *error_type));
    span.set_attributes(
        annotation
            .attributes
            .iter()
            .map(|(key, value)| attribute(key, *value))
            .chain(error_type)
            .chain(id_attribute(annotation.id)),
    );
    if let Some((_, message)) = annotation.failure {
        span.set_status(opentelemetry::trace::Status::error(message));
    }
    want_trace_id
        .then(|| trace_id_of(span.span_context()))
        .flatten()
}

/// The trace id (32 lowercase hex digits) of span `id`'s exported trace, if the subscriber
/// has a `tracing-opentelemetry` layer that samples it: what a request's record and the
/// metrics' exemplars point to.
pub(super) fn trace_id(dispatch: &tracing::Dispatch, id: &tracing::span::Id) -> Option<String> {
    let cx = tracing_opentelemetry::get_otel_context(id, dispatch)?;
    trace_id_of(cx.span().span_context())
}

/// A sampled span's trace id as 32 lowercase hex digits (what `TraceId`'s `Display`
/// writes, without the formatting machinery).
fn trace_id_of(sc: &SpanContext) -> Option<String> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if !(sc.is_valid() && sc.is_sampled()) {
        return None;
    }
    let mut text = String::with_capacity(32);
    for byte in sc.trace_id().to_bytes() {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    Some(text)
}

/// The subscriber a layer was registered in, if it was (a layer inside an `Option` is not:
/// tracing-subscriber 0.3 does not pass the registration on). No guess is made: annotating
/// through another subscriber would reach the wrong spans.
fn dispatch_of(
    registered: &std::sync::OnceLock<tracing::dispatcher::WeakDispatch>,
) -> Option<tracing::Dispatch> {
    registered
        .get()
        .and_then(tracing::dispatcher::WeakDispatch::upgrade)
}

/// [`dispatch_of`] for `layer`, without touching the subscriber's reference count when
/// it is the thread's current one (as a global subscriber is on every thread).
///
/// Upgrading the registered weak handle is an atomic read-modify-write on a count shared
/// by every thread: done per request, it cost two engine threads a quarter of their
/// throughput (`cargo bench --bench layer_overhead -- --case layer@2`: 345 against 247
/// ns/span). The current dispatcher is used only if it holds this very layer, so it is the
/// subscriber the layer was registered in.
pub(crate) fn dispatch_of_layer<L: std::any::Any>(
    layer: &L,
    registered: &std::sync::OnceLock<tracing::dispatcher::WeakDispatch>,
) -> Option<tracing::Dispatch> {
    registered.get()?;
    // A clone of the global dispatcher is a copy of a `'static` reference.
    tracing::dispatcher::get_default(|current| {
        current
            .downcast_ref::<L>()
            .is_some_and(|found| std::ptr::eq(found, layer))
            .then(|| current.clone())
    })
    .or_else(|| dispatch_of(registered))
}

/// The exported span of an `omni.run` that an exporter made apart from the bridge
/// (`otlp::RunLinks`, so that each of its requests is the root of its
/// own trace), kept in the run's extensions: the metrics layer names it, puts the run's
/// summary on it and ends it when the run closes.
pub(crate) struct RunTrace(pub(crate) Box<dyn ExportedRun>);

/// What an exporter's run span offers: its context, for the run's requests to link to, and
/// its end.
pub(crate) trait ExportedRun: Send + Sync {
    /// The span's context, while it has not ended.
    fn context(&self) -> Option<SpanContext>;

    /// Names the span (unless it named itself), puts `attributes` on it and ends it (once).
    fn finish(
        &self,
        name: Option<Cow<'static, str>>,
        attributes: &[(&'static str, Num)],
        id: Option<(&'static str, &str)>,
    );
}

/// An annotation's id as a string attribute.
pub(crate) fn id_attribute(id: Option<(&'static str, &str)>) -> Option<KeyValue> {
    id.map(|(key, value)| KeyValue::new(key, value.to_owned()))
}

/// An annotation's number as an attribute: a count as an OTLP int (clamped to `i64`), a time
/// as a finite double.
pub(crate) fn attribute(key: &'static str, value: Num) -> KeyValue {
    match value {
        Num::Count(v) => KeyValue::new(key, i64::try_from(v).unwrap_or(i64::MAX)),
        Num::Float(v) => KeyValue::new(key, crate::stats::finite(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};
    use tracing_subscriber::prelude::*;

    fn owners(dispatch: &tracing::Dispatch) -> usize {
        let annotation = dispatch.downcast_ref::<AnnotationLayer>();
        annotation.map_or(0, |a| {
            a.owners.iter().map_while(std::sync::OnceLock::get).count()
        })
    }

    fn annotating() -> super::super::OmniMetricsLayer {
        super::super::OmniMetricsLayer::builder()
            .with_console(false)
            .with_trace_annotations(true)
            .build()
            .expect("no file")
    }

    /// Each metrics layer that annotates is found once, also inside an `Option` (which
    /// tracing-subscriber does not tell of its subscriber).
    #[test]
    fn the_annotation_layer_serves_each_annotating_metrics_layer_once() {
        let plain = tracing::Dispatch::new(
            tracing_subscriber::registry()
                .with(annotating())
                .with(AnnotationLayer::new()),
        );
        assert_eq!(owners(&plain), 1);
        let optional = tracing::Dispatch::new(
            tracing_subscriber::registry()
                .with(Some(annotating()))
                .with(AnnotationLayer::new()),
        );
        assert_eq!(owners(&optional), 1);
        let quiet = super::super::OmniMetricsLayer::builder()
            .with_console(false)
            .build()
            .expect("no file");
        let none = tracing::Dispatch::new(
            tracing_subscriber::registry()
                .with(quiet)
                .with(AnnotationLayer::new()),
        );
        assert_eq!(owners(&none), 0);
    }

    #[test]
    fn a_trace_id_is_written_as_its_display_writes_it() {
        for raw in [1u128, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210, u128::MAX] {
            let id = TraceId::from(raw);
            let sampled = SpanContext::new(
                id,
                SpanId::from(7u64),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            );
            assert_eq!(trace_id_of(&sampled), Some(id.to_string()));
            let unsampled = SpanContext::new(
                id,
                SpanId::from(7u64),
                TraceFlags::default(),
                false,
                TraceState::default(),
            );
            assert_eq!(trace_id_of(&unsampled), None);
        }
    }
}
