//! The pipeline's side of `tracing-opentelemetry`: the layer that turns the subscriber's
//! spans into OpenTelemetry spans of the pipeline's tracer ([`OtlpLayer`]), the bridge
//! behind an [`AnnotationLayer`], filtered by an [`ExportFilter`], followed by [`RunLinks`].
//!
//! The metrics layer's own calls into the bridge (requests' trace ids, the names and numbers
//! put on exported spans) are the layer's, as they serve any OpenTelemetry layer.

use opentelemetry_sdk::trace::Tracer;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::Layered;

use super::{AnnotationLayer, ExportFilter, RunLinks};

/// The layer [`OtlpPipeline::layer`](super::OtlpPipeline::layer) returns: the OpenTelemetry
/// layer behind an [`AnnotationLayer`], filtered by an [`ExportFilter`], followed by
/// [`RunLinks`].
pub(super) type OtlpLayer<S> = Layered<
    RunLinks,
    tracing_subscriber::filter::Filtered<
        Layered<
            tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
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
        .and_then(otel)
        .with_filter(filter)
        .and_then(RunLinks::new(tracer))
}
