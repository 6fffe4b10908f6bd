//! OTLP export: the same spans as OpenTelemetry traces, one trace per request, and every
//! request's metrics as OpenTelemetry metrics.
//!
//! Built on `opentelemetry-otlp` and the `tracing-opentelemetry` bridge. The standard
//! variables are honoured (`OTEL_EXPORTER_OTLP_*`, `OTEL_SDK_DISABLED`,
//! `OTEL_TRACES_EXPORTER`, `OTEL_METRICS_EXPORTER`, `OTEL_METRIC_EXPORT_INTERVAL`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`/`_ARG`,
//! `OTEL_BSP_*`) and checked first ([`OtlpBuilder::build`]): an error for a value that
//! cannot work, a warning naming the variable and the value used for one that can fall
//! back. A setting made in code wins only where the caller made it.
//!
//! What is exported is filtered ([`ExportFilter`]); runs are exported apart ([`RunLinks`])
//! so that every request is the root of its own trace; losses are counted by cause and
//! said as they happen ([`ExportStats`], [`MetricsExportStats`]).
//!
//! Metrics ([`OtlpMetricsSink`]) go over the same exporter settings as traces, with the
//! catalogue's names ([`crate::metrics::catalog`]): GenAI semantic-convention names where
//! one exists (`gen_ai.server.request.duration`, `gen_ai.server.time_to_first_token`),
//! `omni.*` for stages, transfers and audio.
//!
//! Sampling only affects which traces are exported: the metrics layer, and the metrics it
//! exports, see every span.
#![doc = include_str!("../../docs/reference/otlp.md")]

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

mod env;
mod export;
mod filter;
mod metrics;
mod runs;
#[cfg(feature = "tls")]
mod tls;

pub use self::env::{
    OTEL_BSP_MAX_QUEUE_SIZE, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    OTEL_EXPORTER_OTLP_METRICS_PROTOCOL, OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE,
    OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_METRIC_EXPORT_INTERVAL, OTEL_METRICS_EXPORTER,
    OTEL_SDK_DISABLED, OTEL_SERVICE_NAME, OTEL_TRACES_EXPORTER, OTEL_TRACES_SAMPLER,
    OTEL_TRACES_SAMPLER_ARG, disabled_in_env, endpoint_in_env,
};
pub use self::export::{ExportStats, LOSS_REPORT_INTERVAL};
pub use self::filter::{
    DEFAULT_EXPORT_FILTER, ExportFilter, OTEL_FILTER_ENV, TRACE_DETAIL_ENV, TraceDetail,
};
pub use self::metrics::{
    DEFAULT_METRIC_EXPORT_INTERVAL, METRICS_QUEUE_CAPACITY, MetricTemporality, MetricsExportStats,
    OtlpMetricsSink,
};
pub use self::runs::RunLinks;
#[cfg(feature = "tls")]
pub use self::tls::{
    OTEL_EXPORTER_OTLP_CERTIFICATE, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_CLIENT_KEY, OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE,
    OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE, OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY,
    OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE, OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY,
};
pub use crate::layer::AnnotationLayer;

use self::env::{MetricsExporterVar, Settings};
use self::export::{CountingExporter, CountingProcessor};
use self::metrics::{MetricsParts, MetricsSettings};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing_subscriber::layer::Layered;

/// The span queue used unless `OTEL_BSP_MAX_QUEUE_SIZE` or
/// [`OtlpBuilder::with_max_queue_size`] says otherwise.
///
/// The SDK's default (2,048) dropped more than half the spans of an engine with two busy
/// threads; 65,536 spans (a few MiB) absorb bursts of thousands of requests. Spans that are
/// dropped anyway are counted and reported at shutdown ([`ExportStats`]).
pub const DEFAULT_MAX_QUEUE_SIZE: usize = 65_536;

/// How long dropping the guard waits for the last export (of traces and of metrics, which
/// shut down side by side), unless [`OtlpBuilder::with_shutdown_timeout`] says otherwise.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OtlpProtocol {
    /// gRPC via tonic (collector port 4317).
    Grpc,
    /// HTTP with protobuf bodies (collector port 4318, paths `/v1/traces` and
    /// `/v1/metrics`).
    HttpProtobuf,
}

impl OtlpProtocol {
    /// Parses `grpc` or `http/protobuf`.
    ///
    /// ```
    /// use omni_metrics::otlp::OtlpProtocol;
    /// assert_eq!(OtlpProtocol::parse("http/protobuf"), Some(OtlpProtocol::HttpProtobuf));
    /// assert_eq!(OtlpProtocol::parse("http/json"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "grpc" => Some(Self::Grpc),
            "http/protobuf" => Some(Self::HttpProtobuf),
            _ => None,
        }
    }
}

/// Builds an [`OtlpPipeline`]. Every setting left unset falls to its `OTEL_*` variable, then
/// to the SDK's default.
#[derive(Debug, Default, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct OtlpBuilder {
    endpoint: Option<String>,
    protocol: Option<OtlpProtocol>,
    service_name: Option<String>,
    default_service_name: Option<String>,
    max_queue_size: Option<usize>,
    shutdown_timeout: Option<Duration>,
    filter: Option<String>,
    detail: Option<TraceDetail>,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    ca_certificate: Option<String>,
    metrics: Option<bool>,
    metrics_endpoint: Option<String>,
    temporality: Option<MetricTemporality>,
    metric_export_interval: Option<Duration>,
}

impl OtlpBuilder {
    /// The collector's URL (`http://localhost:4317` for gRPC, `http://localhost:4318/v1/traces`
    /// for HTTP). Overrides `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` and
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    ///
    /// Metrics go to the same collector (overriding `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`
    /// too) unless [`with_metrics_endpoint`](Self::with_metrics_endpoint) says otherwise;
    /// over HTTP, to this URL with `/v1/traces` replaced by `/v1/metrics` (or `/v1/metrics`
    /// added to a URL without it).
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The transport, of traces and metrics. Overrides `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`,
    /// `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL` and `OTEL_EXPORTER_OTLP_PROTOCOL`; default
    /// gRPC.
    pub fn with_protocol(mut self, protocol: OtlpProtocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// The `service.name` resource attribute. Overrides `OTEL_SERVICE_NAME`.
    pub fn with_service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// The `service.name` to use when `OTEL_SERVICE_NAME` is not set: a program's own name,
    /// which the operator can still override.
    pub fn with_default_service_name(mut self, name: impl Into<String>) -> Self {
        self.default_service_name = Some(name.into());
        self
    }

    /// What is exported, in `EnvFilter` syntax (`"info,my_engine=debug"`). Overrides
    /// [`OTEL_FILTER_ENV`]; default [`DEFAULT_EXPORT_FILTER`]. The `omni.*` spans are always
    /// exported, the exporter's own crates never; see [`ExportFilter`].
    pub fn with_filter(mut self, directives: impl Into<String>) -> Self {
        self.filter = Some(directives.into());
        self
    }

    /// How much of each request is exported ([`TraceDetail`]): `Stages` keeps a production
    /// trace to its requests, stages and transfers. Overrides [`TRACE_DETAIL_ENV`]; default
    /// [`TraceDetail::Full`]. The tables and metrics see every span whatever the detail.
    pub fn with_trace_detail(mut self, detail: TraceDetail) -> Self {
        self.detail = Some(detail);
        self
    }

    /// A PEM file of the CA(s) that signed the collector's certificate (`https://`
    /// endpoints, gRPC), for traces and metrics. Overrides
    /// `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`, `OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE` and
    /// `OTEL_EXPORTER_OTLP_CERTIFICATE`.
    #[cfg(feature = "tls")]
    pub fn with_ca_certificate(mut self, path: impl Into<String>) -> Self {
        self.ca_certificate = Some(path.into());
        self
    }

    /// The batch processor's queue. Overrides `OTEL_BSP_MAX_QUEUE_SIZE`; default
    /// [`DEFAULT_MAX_QUEUE_SIZE`].
    pub fn with_max_queue_size(mut self, spans: usize) -> Self {
        self.max_queue_size = Some(spans);
        self
    }

    /// How long dropping the guard waits for the last export; default
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`].
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = Some(timeout);
        self
    }

    /// Whether OTLP metrics are exported: `false` never exports them; `true` exports them
    /// even without an endpoint (to the default one, `http://localhost:4317` for gRPC).
    /// Unset, metrics are exported when an endpoint is configured for them. The
    /// environment's off switches win over `true`: `OTEL_SDK_DISABLED=true`,
    /// `OTEL_METRICS_EXPORTER=none`; see [`exports_metrics`](Self::exports_metrics).
    ///
    /// ```
    /// use omni_metrics::otlp::OtlpPipeline;
    /// // Traces only, whatever OTEL_METRICS_EXPORTER says.
    /// let builder = OtlpPipeline::builder().with_metrics(false);
    /// assert!(!builder.exports_metrics());
    /// ```
    pub fn with_metrics(mut self, enabled: bool) -> Self {
        self.metrics = Some(enabled);
        self
    }

    /// The collector's URL for metrics (`http://localhost:4317` for gRPC,
    /// `http://localhost:4318/v1/metrics` for HTTP), used as given. Overrides
    /// [`with_endpoint`](Self::with_endpoint), `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` and
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` for metrics.
    pub fn with_metrics_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.metrics_endpoint = Some(endpoint.into());
        self
    }

    /// How exported metrics accumulate. Overrides
    /// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`; default
    /// [`MetricTemporality::Cumulative`].
    pub fn with_temporality(mut self, temporality: MetricTemporality) -> Self {
        self.temporality = Some(temporality);
        self
    }

    /// Time between two metric exports. Overrides `OTEL_METRIC_EXPORT_INTERVAL`; default
    /// [`DEFAULT_METRIC_EXPORT_INTERVAL`] (60 s); zero means the default.
    pub fn with_metric_export_interval(mut self, interval: Duration) -> Self {
        self.metric_export_interval = Some(interval);
        self
    }

    /// Whether an endpoint for traces is set here or in the environment.
    pub fn endpoint_configured(&self) -> bool {
        self.endpoint.is_some() || endpoint_in_env()
    }

    /// Whether [`build`](OtlpBuilder::build) makes a pipeline that exports traces: an
    /// endpoint is configured (in code or `OTEL_EXPORTER_OTLP_ENDPOINT` /
    /// `..._TRACES_ENDPOINT`) or `OTEL_TRACES_EXPORTER=otlp` asks for the default one, and
    /// neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` turns export off.
    /// `init()` and a pipeline you build yourself decide alike.
    pub fn exports_traces(&self) -> bool {
        (self.endpoint_configured() || env::otlp_requested_in_env()) && !disabled_in_env()
    }

    /// Whether [`build`](OtlpBuilder::build) makes a pipeline that exports metrics:
    /// an endpoint is configured for them ([`with_metrics_endpoint`](Self::with_metrics_endpoint),
    /// [`with_endpoint`](Self::with_endpoint), `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`), or `OTEL_METRICS_EXPORTER=otlp` or
    /// [`with_metrics(true)`](Self::with_metrics) asks for the default one; and none of
    /// `with_metrics(false)`, `OTEL_SDK_DISABLED=true`, `OTEL_METRICS_EXPORTER=none` (or
    /// `prometheus`, served by the Prometheus endpoint, or an unsupported value, which is
    /// said) turns them off. `OTEL_TRACES_EXPORTER` and a traces-only endpoint
    /// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) do not affect metrics.
    pub fn exports_metrics(&self) -> bool {
        if self.metrics == Some(false) || env::sdk_disabled_in_env() {
            return false;
        }
        match env::metrics_exporter_var() {
            MetricsExporterVar::Otlp => true,
            MetricsExporterVar::None | MetricsExporterVar::Unsupported(_) => false,
            MetricsExporterVar::Unset => {
                self.metrics == Some(true)
                    || self.endpoint.is_some()
                    || self.metrics_endpoint.is_some()
                    || env::metrics_endpoint_in_env()
            }
        }
    }

    /// Whether [`build`](OtlpBuilder::build) makes a pipeline that exports anything: traces
    /// ([`exports_traces`](Self::exports_traces)) or metrics
    /// ([`exports_metrics`](Self::exports_metrics)).
    pub fn exports(&self) -> bool {
        self.exports_traces() || self.exports_metrics()
    }

    /// The `OTEL_METRICS_EXPORTER` value that is neither `otlp` nor `none`, said once.
    fn metrics_exporter_warning(&self) -> Option<String> {
        match env::metrics_exporter_var() {
            MetricsExporterVar::Unsupported(value) if self.metrics != Some(false) => Some(format!(
                "{OTEL_METRICS_EXPORTER}={value:?} is not supported: no OTLP metrics are \
                 exported (use `otlp`, or `none`; the tables, records and traces are \
                 unaffected)"
            )),
            _ => None,
        }
    }

    /// The resource of both providers: `service.name` from code, `OTEL_SERVICE_NAME`, the
    /// default name given in code, and `OTEL_RESOURCE_ATTRIBUTES`.
    fn resource(&self) -> opentelemetry_sdk::Resource {
        let mut resource = opentelemetry_sdk::Resource::builder();
        let service_name = self.service_name.clone().or_else(|| {
            env::nonempty(OTEL_SERVICE_NAME)
                .is_none()
                .then(|| self.default_service_name.clone())
                .flatten()
        });
        if let Some(name) = service_name {
            resource = resource.with_service_name(name);
        }
        resource.build()
    }

    /// Builds the exporters (traces and metrics, each when it exports), the trace batch
    /// processor and tracer provider, the metrics' periodic reader and meter provider; or,
    /// when [`exports`](OtlpBuilder::exports) is `false`, a pipeline that exports nothing.
    ///
    /// # Errors
    ///
    /// [`OtlpError`] for what cannot work: an unsupported protocol or exporter, an endpoint
    /// that is not an `http://` URL with a valid port, a failure to start the exporter's
    /// runtime. A value that can fall back (a sampler ratio outside `[0, 1]`, a queue size
    /// or export interval that is not a number, an unknown temporality) is a warning naming
    /// the variable and the value used, logged when the pipeline becomes a guard. A
    /// collector that is down is not an error: spans that cannot be delivered are counted
    /// in [`ExportStats`], failed metric exports in [`MetricsExportStats`], and reported.
    pub fn build(self) -> Result<OtlpPipeline, OtlpError> {
        let filter = self.filter.clone();
        let detail = self.detail;
        let shutdown_timeout = self.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT);
        let mut warnings: Vec<String> = self.metrics_exporter_warning().into_iter().collect();
        let (traces_on, metrics_on) = (self.exports_traces(), self.exports_metrics());
        // Nothing else is read or checked for a signal that is not exported.
        let trace_settings = traces_on.then(|| Settings::read(&self)).transpose()?;
        let metric_settings = metrics_on
            .then(|| MetricsSettings::read(&self, &mut warnings))
            .transpose()?;
        let grpc = trace_settings
            .as_ref()
            .is_some_and(|s| s.protocol == OtlpProtocol::Grpc)
            || metric_settings
                .as_ref()
                .is_some_and(|s| s.protocol == OtlpProtocol::Grpc);
        // tonic needs a tokio runtime with more than one worker to build the channel and to
        // drive its I/O while the batch thread (or the metrics reader) blocks on an export;
        // the exporters share one of their own.
        let runtime = if grpc {
            Some(ExporterRuntime(Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("omni-otlp")
                    .enable_all()
                    .build()
                    .map_err(OtlpError::Runtime)?,
            )))
        } else {
            None
        };
        let resource = self.resource();
        let metrics = match &metric_settings {
            Some(settings) => Some(metrics::build(
                &self,
                settings,
                runtime.as_ref(),
                resource.clone(),
            )?),
            None => None,
        };
        let Some(settings) = trace_settings else {
            let provider = SdkTracerProvider::builder()
                .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOff)
                .build();
            return Ok(OtlpPipeline {
                provider: Some(provider),
                runtime,
                stats: Arc::new(ExportStats::new(DEFAULT_MAX_QUEUE_SIZE)),
                metrics,
                protocol: self.protocol.unwrap_or(OtlpProtocol::Grpc),
                shutdown_timeout,
                filter,
                detail,
                warnings,
                exporting: false,
            });
        };
        warnings.extend(settings.warnings.iter().cloned());
        let stats = Arc::new(ExportStats::new(settings.max_queue_size));
        let protocol = settings.protocol;
        let exporter = {
            let _entered = runtime.as_ref().and_then(ExporterRuntime::enter);
            let builder = opentelemetry_otlp::SpanExporter::builder();
            match protocol {
                OtlpProtocol::Grpc => {
                    let mut b = builder.with_tonic();
                    if let Some(endpoint) = &settings.code_endpoint {
                        b = b.with_endpoint(endpoint.clone());
                    }
                    #[cfg(feature = "tls")]
                    if settings.https
                        || tls::configured_in_env(env::Signal::Traces)
                        || self.ca_certificate.is_some()
                    {
                        use opentelemetry_otlp::WithTonicConfig as _;
                        b = b.with_tls_config(tls::client_config(
                            env::Signal::Traces,
                            self.ca_certificate.as_deref(),
                        )?);
                    }
                    b.build()
                }
                OtlpProtocol::HttpProtobuf => {
                    let mut b = builder.with_http().with_protocol(Protocol::HttpBinary);
                    if let Some(endpoint) = &settings.code_endpoint {
                        b = b.with_endpoint(endpoint.clone());
                    }
                    b.build()
                }
            }
            .map_err(|e| OtlpError::Exporter(e.to_string()))?
        };
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(settings.max_queue_size)
            .build();
        let processor = BatchSpanProcessor::builder(CountingExporter {
            inner: exporter,
            stats: stats.clone(),
        })
        .with_batch_config(batch)
        .build();
        let mut provider = SdkTracerProvider::builder()
            .with_span_processor(CountingProcessor {
                inner: processor,
                stats: stats.clone(),
            })
            .with_resource(resource);
        if let Some(sampler) = settings.sampler {
            provider = provider.with_sampler(sampler);
        }
        Ok(OtlpPipeline {
            provider: Some(provider.build()),
            runtime,
            stats,
            metrics,
            protocol,
            shutdown_timeout,
            filter,
            detail,
            warnings,
            exporting: true,
        })
    }
}

/// The layer [`OtlpPipeline::layer`] returns: the OpenTelemetry layer behind an
/// [`AnnotationLayer`], filtered by an [`ExportFilter`], followed by [`RunLinks`].
pub type OtlpLayer<S> = Layered<
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

/// An exporter pipeline: make its [`layer`](OtlpPipeline::layer) (traces) and its
/// [`metrics_sink`](OtlpPipeline::metrics_sink) (metrics), keep its
/// [`guard`](OtlpPipeline::into_guard) alive while the engine runs.
pub struct OtlpPipeline {
    /// `None` once moved into a guard.
    provider: Option<SdkTracerProvider>,
    runtime: Option<ExporterRuntime>,
    stats: Arc<ExportStats>,
    /// The metrics half, when metrics are exported; the provider is taken by the guard.
    metrics: Option<MetricsParts>,
    protocol: OtlpProtocol,
    shutdown_timeout: Duration,
    /// The export filter's directives from code (else the variable, else the default).
    filter: Option<String>,
    /// The trace detail from code (else the variable, else `Full`).
    detail: Option<TraceDetail>,
    /// Fallbacks taken while reading the configuration, logged once by `into_guard`.
    warnings: Vec<String>,
    /// Whether traces are exported (see [`OtlpBuilder::exports_traces`]).
    exporting: bool,
}

impl fmt::Debug for OtlpPipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpPipeline")
            .field("exporting", &self.exporting)
            .field("exporting_metrics", &self.metrics.is_some())
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

    /// The `tracing-opentelemetry` layer exporting through this pipeline: filtered by the
    /// [`ExportFilter`] (the `omni.*` spans and the engine's INFO spans and events, never the
    /// exporter's own), behind an [`AnnotationLayer`] so that the metrics layer's names and
    /// numbers reach the exported spans whichever of the two layers is added first.
    pub fn layer<S>(&self) -> OtlpLayer<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        use tracing_subscriber::Layer as _;
        let tracer = match &self.provider {
            Some(provider) => provider.tracer("omni-metrics"),
            // Only after `into_guard`, which consumes the pipeline: unreachable in practice.
            None => SdkTracerProvider::builder().build().tracer("omni-metrics"),
        };
        let otel = tracing_opentelemetry::layer()
            .with_tracer(tracer.clone())
            // busy_ns/idle_ns say nothing an engine's user reads; the table's times do.
            .with_tracked_inactivity(false);
        AnnotationLayer::new()
            .and_then(otel)
            .with_filter(if self.exporting {
                ExportFilter::resolve(self.filter.as_deref())
                    .with_detail(TraceDetail::resolve(self.detail))
            } else {
                ExportFilter::nothing()
            })
            .and_then(RunLinks::new(tracer))
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

    /// Whether this pipeline exports traces (see [`OtlpBuilder::exports_traces`]).
    pub fn exports_traces(&self) -> bool {
        self.exporting
    }

    /// Whether this pipeline exports metrics (see [`OtlpBuilder::exports_metrics`]).
    pub fn exports_metrics(&self) -> bool {
        self.metrics.is_some()
    }

    /// Whether this pipeline exports anything, traces or metrics.
    pub fn exports(&self) -> bool {
        self.exports_traces() || self.exports_metrics()
    }

    /// What was exported of the traces so far.
    pub fn stats(&self) -> Arc<ExportStats> {
        self.stats.clone()
    }

    /// What was exported of the metrics so far; `None` when no metrics are exported.
    pub fn metrics_stats(&self) -> Option<Arc<MetricsExportStats>> {
        self.metrics.as_ref().map(|m| m.stats.clone())
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
struct ExporterRuntime(Option<tokio::runtime::Runtime>);

impl ExporterRuntime {
    fn enter(&self) -> Option<tokio::runtime::EnterGuard<'_>> {
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

/// What shutting a pipeline down needs, moved out of the pipeline.
struct Parts {
    provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
    /// Drained before the metrics are flushed or shut down.
    metrics_sink: Option<OtlpMetricsSink>,
    runtime: Option<ExporterRuntime>,
    stats: Arc<ExportStats>,
    metrics_stats: Option<Arc<MetricsExportStats>>,
    shutdown_timeout: Duration,
}

/// Where the results of a shutdown (or flush) running in the background arrive.
struct Pending {
    traces: std::sync::mpsc::Receiver<OTelSdkResult>,
    metrics: Option<std::sync::mpsc::Receiver<OTelSdkResult>>,
}

impl Pending {
    /// Waits until `deadline` for each result: the traces', then the metrics'. `Err` says
    /// which did not finish in time.
    fn wait(
        self,
        deadline: std::time::Instant,
        limit: Duration,
    ) -> (Result<(), String>, Result<(), String>) {
        let recv = |rx: &std::sync::mpsc::Receiver<OTelSdkResult>| {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("did not finish within {limit:?}")),
            }
        };
        let traces = recv(&self.traces);
        let metrics = self.metrics.as_ref().map_or(Ok(()), recv);
        (traces, metrics)
    }
}

/// Runs `work` on a thread of its own named `name`; the receiver gets its result.
fn in_background(
    name: &str,
    work: impl FnOnce() -> OTelSdkResult + Send + 'static,
) -> Result<std::sync::mpsc::Receiver<OTelSdkResult>, std::io::Error> {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = done_tx.send(work());
        })?;
    Ok(done_rx)
}

impl Parts {
    /// Shuts the tracer provider (flushing the queue) and the meter provider (a last
    /// export) down side by side on threads of their own, then the runtime once both are
    /// done; the receivers get the providers' results.
    fn shutdown_in_background(self) -> Result<Pending, std::io::Error> {
        let Parts {
            provider,
            meter_provider,
            metrics_sink,
            runtime,
            shutdown_timeout,
            ..
        } = self;
        let (metrics_done_tx, metrics_done_rx) = std::sync::mpsc::channel();
        let metrics = match meter_provider {
            Some(meter_provider) => {
                let rx = in_background("omni-otlp-metrics-shutdown", move || {
                    // What the engine queued is recorded before the last export.
                    if let Some(sink) = metrics_sink {
                        sink.drain(std::time::Instant::now() + shutdown_timeout);
                    }
                    let result = meter_provider.shutdown_with_timeout(shutdown_timeout);
                    let _ = metrics_done_tx.send(());
                    result
                })?;
                Some(rx)
            }
            None => None,
        };
        let traces = in_background("omni-otlp-shutdown", move || {
            let result = match provider {
                Some(provider) => provider.shutdown_with_timeout(shutdown_timeout),
                None => Ok(()),
            };
            // The metrics' last export runs on the runtime too: keep it until that is done
            // (the SDK's reader gives up after 5 s).
            let _ = metrics_done_rx.recv();
            drop(runtime);
            result
        })?;
        Ok(Pending { traces, metrics })
    }
}

/// Flushes and shuts the exporters down when dropped, within the shutdown timeout, from any
/// context: the blocking shutdowns run on threads of their own, so a current-thread tokio
/// runtime's thread never waits on itself.
#[must_use = "dropping the guard shuts the exporter down"]
pub struct OtlpGuard {
    inner: Option<Parts>,
}

impl fmt::Debug for OtlpGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpGuard")
            .field("shut_down", &self.inner.is_none())
            .finish_non_exhaustive()
    }
}

impl OtlpGuard {
    /// What was exported of the traces so far.
    pub fn stats(&self) -> Option<Arc<ExportStats>> {
        self.inner.as_ref().map(|p| p.stats.clone())
    }

    /// What was exported of the metrics so far; `None` when no metrics are exported (or
    /// after shutdown).
    pub fn metrics_stats(&self) -> Option<Arc<MetricsExportStats>> {
        self.inner.as_ref().and_then(|p| p.metrics_stats.clone())
    }

    /// Exports what is queued now: the spans in the batch queue and the metrics recorded so
    /// far (a metrics export outside the interval), waiting at most the shutdown timeout.
    /// Safe from any context, a current-thread tokio runtime's thread included. Does nothing
    /// after shutdown.
    ///
    /// # Errors
    ///
    /// [`OtlpError::Flush`] if an export failed or did not finish within the timeout (for
    /// logging only; failures are counted in [`ExportStats`] and [`MetricsExportStats`]).
    pub fn force_flush(&self) -> Result<(), OtlpError> {
        let Some(parts) = &self.inner else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let provider = parts.provider.clone();
        let pending = Pending {
            traces: in_background("omni-otlp-flush", move || match provider {
                Some(p) => p.force_flush(),
                None => Ok(()),
            })
            .map_err(|e| OtlpError::Flush(format!("cannot start the flush thread: {e}")))?,
            metrics: match parts.meter_provider.clone() {
                Some(p) => {
                    let sink = parts.metrics_sink.clone();
                    let deadline = started + parts.shutdown_timeout;
                    Some(
                        in_background("omni-otlp-metrics-flush", move || {
                            // What the engine queued is recorded before the export.
                            if let Some(sink) = sink {
                                sink.drain(deadline);
                            }
                            p.force_flush()
                        })
                        .map_err(|e| {
                            OtlpError::Flush(format!("cannot start the flush thread: {e}"))
                        })?,
                    )
                }
                None => None,
            },
        };
        let limit = parts.shutdown_timeout;
        match pending.wait(started + limit, limit) {
            (Ok(()), Ok(())) => Ok(()),
            (traces, metrics) => Err(OtlpError::Flush(
                [
                    traces.err().map(|e| format!("traces: {e}")),
                    metrics.err().map(|e| format!("metrics: {e}")),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; "),
            )),
        }
    }

    /// Flushes and shuts down now; later calls (and the drop) do nothing.
    ///
    /// # Errors
    ///
    /// [`OtlpError::Shutdown`] if the exporter did not finish within the timeout, or spans
    /// were not exported (the message says how many, and how many metric exports failed);
    /// [`OtlpError::MetricsShutdown`] if every span was exported but metric exports
    /// failed or the metrics did not shut down within the timeout.
    pub fn shutdown(&mut self) -> Result<(), OtlpError> {
        let Some(parts) = self.inner.take() else {
            return Ok(());
        };
        let stats = parts.stats.clone();
        let metrics_stats = parts.metrics_stats.clone();
        let shutdown_timeout = parts.shutdown_timeout;
        let deadline =
            std::time::Instant::now() + shutdown_timeout.saturating_add(Duration::from_secs(1));
        let (outcome, metrics_outcome) = match parts.shutdown_in_background() {
            Err(e) => {
                let e = format!("cannot start the shutdown thread: {e}");
                (Err(e.clone()), Err(e))
            }
            Ok(pending) => pending.wait(deadline, shutdown_timeout),
        };
        let metrics_problem = metrics_stats.and_then(|m| {
            let failures = m.shutdown_summary();
            let outcome = match metrics_outcome {
                Ok(()) => None,
                // The SDK's own "failed to shutdown" says no more than the counted failure.
                Err(e) if failures.is_some() && !e.starts_with("did not finish") => None,
                Err(e) => Some(format!("shutdown: {e}")),
            };
            (failures.is_some() || outcome.is_some()).then(|| MetricsLoss {
                failed: m.failed_exports(),
                exports: m.exports(),
                detail: [failures, outcome]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("; "),
            })
        });
        let lost = stats.not_exported();
        let causes = format!(
            "{} dropped because the queue was full or still queued at shutdown, {} in exports \
             that failed (collector down or refusing), {} in exports that timed out (the \
             collector may have received these)",
            stats.unaccounted(),
            stats.failed(),
            stats.timed_out()
        );
        match (outcome, lost, metrics_problem) {
            (Ok(()), 0, None) => Ok(()),
            (Ok(()), 0, Some(m)) => Err(OtlpError::MetricsShutdown {
                failed: m.failed,
                exports: m.exports,
                detail: m.detail,
            }),
            (outcome, lost, metrics) => Err(OtlpError::Shutdown {
                lost,
                ended: stats.ended(),
                detail: [
                    Some(causes),
                    outcome.err().map(|e| format!("shutdown: {e}")),
                    metrics.map(|m| format!("metrics: {}", m.detail)),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; "),
            }),
        }
    }
}

/// What the metrics did not deliver, for [`OtlpError`].
struct MetricsLoss {
    failed: u64,
    exports: u64,
    detail: String,
}

impl Drop for OtlpGuard {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(target: "omni_metrics::otlp", "{e}");
        }
    }
}

/// The OTLP pipeline could not be built or shut down cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtlpError {
    /// A protocol variable names an unsupported protocol.
    #[error("{var}={value:?} is not supported: use `grpc` or `http/protobuf`")]
    Protocol {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// A variable has a value that cannot work.
    #[error("{var}={value:?} cannot be used: {fix}")]
    Config {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What to do.
        fix: &'static str,
    },
    /// A TLS file named by a variable cannot be read.
    #[error("cannot read {var}={path:?}: {source}; check the path and its permissions")]
    TlsFile {
        /// The variable (or the builder method).
        var: &'static str,
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The endpoint cannot work.
    #[error("the OTLP endpoint {endpoint:?} ({source_name}) cannot be used: {why}")]
    Endpoint {
        /// Where it came from: a variable's name, or code.
        source_name: &'static str,
        /// The endpoint.
        endpoint: String,
        /// Why, and what to write instead.
        why: &'static str,
    },
    /// The exporter rejected its configuration (for logging only).
    #[error("cannot build the OTLP exporter: {0}; check the OTEL_EXPORTER_OTLP_* variables")]
    Exporter(String),
    /// The exporter's runtime could not start.
    #[error("cannot start the OTLP exporter's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// Shutdown did not deliver every span.
    #[error(
        "OTLP export: {lost} of {ended} spans could not be exported ({detail}); the tables and \
         records are complete, only the traces miss them"
    )]
    Shutdown {
        /// Spans not exported.
        lost: u64,
        /// Spans handed to the exporter.
        ended: u64,
        /// What happened (for logging only).
        detail: String,
    },
    /// Every span was delivered (or none was exported), but metric exports failed or the
    /// metrics did not shut down in time.
    #[error(
        "OTLP metrics export: {failed} of {exports} exports failed ({detail}); the tables and \
         records are complete, only the metrics backend misses them"
    )]
    MetricsShutdown {
        /// Metric exports that failed or timed out.
        failed: u64,
        /// Metric exports made.
        exports: u64,
        /// What happened (for logging only).
        detail: String,
    },
    /// A flush did not complete (for logging only).
    #[error("OTLP flush: {0}")]
    Flush(String),
}
