//! The pipeline's side of `tracing-opentelemetry`: the layer that turns the subscriber's
//! spans into OpenTelemetry spans of the pipeline's tracer ([`OtlpLayer`]), the bridge
//! behind an [`AnnotationLayer`], filtered by an [`ExportFilter`], followed by [`RunLinks`].
//!
//! The metrics layer's own calls into the bridge (requests' trace ids, the names and numbers
//! put on exported spans) are the layer's, as they serve any OpenTelemetry layer.

use opentelemetry_sdk::trace::Tracer;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, Layered};
use tracing_subscriber::registry::LookupSpan;

use super::{AnnotationLayer, ExportFilter, RunLinks};

/// The layer [`OtlpPipeline::layer`](super::OtlpPipeline::layer) returns: the OpenTelemetry
/// layer behind an [`AnnotationLayer`], filtered by an [`ExportFilter`], followed by
/// [`RunLinks`].
pub(super) type OtlpLayer<S> = Layered<
    RunLinks,
    tracing_subscriber::filter::Filtered<
        Layered<
            EndAtClose<
                tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
            >,
            AnnotationLayer,
            S,
        >,
        ExportFilter,
        S,
    >,
    S,
>;

/// The bridge exporting through `tracer` what `filter` lets through; see [`OtlpLayer`].
pub(super) fn layer<S>(tracer: Tracer, filter: ExportFilter) -> OtlpLayer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer.clone())
        // busy_ns/idle_ns say nothing an engine's user reads; the table's times do.
        .with_tracked_inactivity(false);
    AnnotationLayer::new()
        .and_then(EndAtClose(otel))
        .with_filter(filter)
        .and_then(RunLinks::new(tracer))
}

/// The OpenTelemetry layer, its spans ended when they close.
///
/// `tracing-opentelemetry` ends an exported span at its last exit, not its close: a stage
/// entered once (`span.in_scope(|| info!(..))`) that goes on computing, or waits for a child
/// (tracing closes a parent after its children), would be exported shorter than it was, and
/// a report of the trace would disagree with the live tables. An enter and exit of the span
/// just before its close sets its end there; every other call passes through unchanged.
pub(crate) struct EndAtClose<L>(pub(crate) L);

impl<S, L> Layer<S> for EndAtClose<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.0.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.0.on_layer(subscriber);
    }

    fn register_callsite(
        &self,
        metadata: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        self.0.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.0.enabled(metadata, ctx)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.0.on_new_span(attrs, id, ctx);
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        self.0.max_level_hint()
    }

    fn on_record(&self, span: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.0.on_record(span, values, ctx);
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.0.on_follows_from(span, follows, ctx);
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.0.event_enabled(event, ctx)
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        self.0.on_event(event, ctx);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        self.0.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        self.0.on_exit(id, ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        // The exit records its time as the span's end (and undoes the enter).
        self.0.on_enter(&id, ctx.clone());
        self.0.on_exit(&id, ctx.clone());
        self.0.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.0.on_id_change(old, new, ctx);
    }

    // SAFETY: forwards to the inner layer, which answers for its own types (the
    // OpenTelemetry layer's `WithContext`, through which trace ids are read); this wrapper
    // adds none.
    unsafe fn downcast_raw(&self, id: std::any::TypeId) -> Option<*const ()> {
        if id == std::any::TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        // SAFETY: the inner layer's own contract.
        unsafe { self.0.downcast_raw(id) }
    }
}
