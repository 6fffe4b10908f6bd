//! A built pipeline: the tracer and meter providers with their exporters' runtime, until
//! they move into the [guard](super::OtlpGuard); the layer and the metrics sink are made
//! from it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;

use super::file::{FileRegistrar, TraceFile};
use super::guard::Parts;
use super::metrics::MetricsParts;
use super::{
    ExportFilter, ExportStats, OtlpBuilder, OtlpGuard, OtlpMetricsSink, OtlpProtocol, TraceDetail,
};

/// An exporter pipeline: make its [`layer`](OtlpPipeline::layer) (traces) and its
/// [`metrics_sink`](OtlpPipeline::metrics_sink) (metrics), keep its
/// [`guard`](OtlpPipeline::into_guard) alive while the engine runs.
pub struct OtlpPipeline {
    /// `None` once moved into a guard.
    pub(super) provider: Option<SdkTracerProvider>,
    pub(super) runtime: Option<ExporterRuntime>,
    pub(super) stats: Arc<ExportStats>,
    /// The metrics half, when metrics are exported; the provider is taken by the guard.
    pub(super) metrics: Option<MetricsParts>,
    pub(super) protocol: OtlpProtocol,
    pub(super) shutdown_timeout: Duration,
    /// The export filter's directives from code (else the variable, else the default).
    pub(super) filter: Option<String>,
    /// The trace detail from code (else the variable, else `Full`).
    pub(super) detail: Option<TraceDetail>,
    /// Fallbacks taken while reading the configuration, logged once by `into_guard`.
    pub(super) warnings: Vec<String>,
    /// Whether traces are exported: to a collector (see [`OtlpBuilder::exports_traces`]),
    /// to the trace file, or both.
    pub(super) exporting: bool,
    /// Whether traces go to a collector.
    pub(super) otlp_traces: bool,
    /// The trace file, when one is written.
    pub(super) file: Option<Arc<TraceFile>>,
}

impl fmt::Debug for OtlpPipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpPipeline")
            .field("exporting", &self.exporting)
            .field("exporting_metrics", &self.metrics.is_some())
            .field("trace_file", &self.file.as_ref().map(|f| f.path()))
            .field("protocol", &self.protocol)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish_non_exhaustive()
    }
}

impl OtlpPipeline {
    /// A builder.
    pub fn builder() -> OtlpBuilder {
        OtlpBuilder::default()
    }

    /// The `tracing-opentelemetry` layer exporting through this pipeline: filtered (the
    /// `omni.*` spans and the engine's spans and events as
    /// [`OtlpBuilder::with_filter`] says, never the exporter's own), behind an [`AnnotationLayer`](super::AnnotationLayer) so that the
    /// metrics layer's names and numbers reach the exported spans whichever of the two layers
    /// is added first.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        let tracer = match &self.provider {
            Some(provider) => provider.tracer("omni-metrics"),
            // Only after `into_guard`, which consumes the pipeline: unreachable in practice.
            None => SdkTracerProvider::builder().build().tracer("omni-metrics"),
        };
        let filter = if self.exporting {
            ExportFilter::resolve(self.filter.as_deref())
                .with_detail(TraceDetail::resolve(self.detail))
        } else {
            ExportFilter::nothing()
        };
        // The trace file says its losses in the subscriber this layer joins.
        tracing_subscriber::Layer::and_then(
            super::bridge::layer(tracer, filter),
            FileRegistrar(self.file.clone()),
        )
    }

    /// The sink that records every finished request's metrics into this pipeline's
    /// instruments: add it to the metrics layer
    /// ([`Builder::with_sink`](crate::Builder::with_sink)); `init()` does. It records
    /// nothing when this pipeline exports no metrics.
    pub fn metrics_sink(&self) -> OtlpMetricsSink {
        self.metrics
            .as_ref()
            .map_or_else(OtlpMetricsSink::disabled, |m| m.sink.clone())
    }

    /// Whether this pipeline exports traces (to a collector, to a trace file, or both), as
    /// [`OtlpBuilder::build`] decided from the settings and the variables. When it does not, [`layer`](Self::layer) lets
    /// nothing through; when it does, put the metrics layer's numbers on the exported spans
    /// ([`Builder::with_trace_annotations`](crate::Builder::with_trace_annotations)).
    ///
    /// ```
    /// use omni_metrics::otlp::OtlpPipeline;
    /// let otlp = OtlpPipeline::builder().build()?; // exports when OTEL_* say so
    /// let layer = omni_metrics::OmniMetricsLayer::builder()
    ///     .with_trace_annotations(otlp.exports_traces())
    ///     .build()?;
    /// # drop((layer, otlp));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn exports_traces(&self) -> bool {
        self.exporting
    }

    /// Whether this pipeline exports metrics, as [`OtlpBuilder::build`] decided; when it
    /// does not, [`metrics_sink`](Self::metrics_sink) records nothing.
    pub fn exports_metrics(&self) -> bool {
        self.metrics.is_some()
    }

    /// Whether this pipeline exports anything, traces or metrics.
    pub(crate) fn exports(&self) -> bool {
        self.exports_traces() || self.exports_metrics()
    }

    /// The configuration's fallbacks (each naming its variable), taken: for `init()` when
    /// it keeps no guard.
    pub(crate) fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// The guard that flushes and shuts the pipeline down when dropped. Logs the
    /// configuration's fallbacks (each naming its variable), once: call it after the
    /// subscriber is installed, so that they are seen.
    pub fn into_guard(mut self) -> OtlpGuard {
        for warning in self.take_warnings() {
            tracing::warn!(target: "omni_metrics::otlp", "{warning}");
        }
        OtlpGuard {
            inner: Some(self.take_parts()),
        }
    }

    fn take_parts(&mut self) -> Parts {
        Parts {
            provider: self.provider.take(),
            meter_provider: self.metrics.as_mut().and_then(|m| m.provider.take()),
            metrics_sink: self.metrics.as_ref().map(|m| m.sink.clone()),
            runtime: self.runtime.take(),
            stats: self.stats.clone(),
            traces: self.otlp_traces,
            file: self.file.clone(),
            metrics_stats: self.metrics.as_ref().map(|m| m.stats.clone()),
            shutdown_timeout: self.shutdown_timeout,
        }
    }
}

impl Drop for OtlpPipeline {
    /// A pipeline dropped without becoming a guard (an error path after `build`): shut it
    /// down off this thread, without waiting. Safe anywhere, inside an async runtime too.
    fn drop(&mut self) {
        // The meter provider goes with the parts: the last reference to it must not be
        // dropped here (on a tokio thread, say), where its drop would shut it down, blocking.
        let parts = self.take_parts();
        if parts.provider.is_some() || parts.runtime.is_some() || parts.meter_provider.is_some() {
            // Nothing was exported through it that the caller waits for.
            let _ = parts.shutdown_in_background();
        }
    }
}

/// The exporter's own tokio runtime. Dropping a runtime inside another runtime's context
/// panics ("Cannot drop a runtime in a context where blocking is not allowed"), so it is
/// only ever shut down in the background, which never blocks and never panics.
pub(super) struct ExporterRuntime(pub(super) Option<tokio::runtime::Runtime>);

impl ExporterRuntime {
    pub(super) fn enter(&self) -> Option<tokio::runtime::EnterGuard<'_>> {
        self.0.as_ref().map(tokio::runtime::Runtime::enter)
    }
}

impl Drop for ExporterRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}
