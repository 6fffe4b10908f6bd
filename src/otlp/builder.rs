//! Building a pipeline: the settings in code ([`OtlpBuilder`]), what they and the `OTEL_*`
//! variables decide (whether traces and metrics are exported), and the exporters, providers
//! and runtime they make.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};

use super::env::{self, MetricsExporterVar, Settings, disabled_in_env, endpoint_in_env};
use super::export::{CountingExporter, CountingProcessor};
use super::file::TraceFile;
use super::metrics::{self, MetricsSettings};
use super::pipeline::ExporterRuntime;
#[cfg(feature = "tls")]
use super::tls;
use super::{ExportStats, MetricTemporality, OtlpError, OtlpPipeline, TraceDetail};
use crate::env::{OTEL_METRICS_EXPORTER, OTEL_SERVICE_NAME, TRACE_FILE_ENV};

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
    /// Parses `grpc` or `http/protobuf` (the variables' values).
    pub(super) fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "grpc" => Some(Self::Grpc),
            "http/protobuf" => Some(Self::HttpProtobuf),
            _ => None,
        }
    }
}

/// Builds an [`OtlpPipeline`]. Every setting left unset falls to its `OTEL_*` variable, then
/// to the default (the `DEFAULT_*` constants here, else the SDK's).
///
/// Whether the pipeline exports traces and metrics is decided by [`build`](Self::build),
/// from the settings and the variables; the pipeline says what was decided
/// ([`OtlpPipeline::exports_traces`], [`OtlpPipeline::exports_metrics`]).
#[derive(Debug, Default, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct OtlpBuilder {
    pub(super) endpoint: Option<String>,
    pub(super) protocol: Option<OtlpProtocol>,
    pub(super) service_name: Option<String>,
    pub(super) default_service_name: Option<String>,
    pub(super) max_queue_size: Option<usize>,
    pub(super) shutdown_timeout: Option<Duration>,
    pub(super) filter: Option<String>,
    pub(super) detail: Option<TraceDetail>,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(super) ca_certificate: Option<String>,
    pub(super) metrics: Option<bool>,
    pub(super) metrics_endpoint: Option<String>,
    pub(super) temporality: Option<MetricTemporality>,
    pub(super) metric_export_interval: Option<Duration>,
    pub(super) trace_file: Option<PathBuf>,
}

impl OtlpBuilder {
    /// The span queue used unless [`OtlpBuilder::with_max_queue_size`] or
    /// `OTEL_BSP_MAX_QUEUE_SIZE` says otherwise:
    /// 65,536 spans.
    ///
    /// The SDK's default (2,048) dropped more than half the spans of an engine with two busy
    /// threads; 65,536 spans (a few MiB) absorb bursts of thousands of requests. Spans that
    /// are dropped anyway are counted and reported at shutdown ([`ExportStats`]).
    pub const DEFAULT_MAX_QUEUE_SIZE: usize = 65_536;

    /// How long dropping the guard waits for the last export (of traces and of metrics,
    /// which shut down side by side), unless [`OtlpBuilder::with_shutdown_timeout`] says
    /// otherwise: 5 s.
    pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

    /// Time between two metric exports unless [`OtlpBuilder::with_metric_export_interval`]
    /// or `OTEL_METRIC_EXPORT_INTERVAL` says
    /// otherwise: 60 s, the OpenTelemetry default.
    pub const DEFAULT_METRIC_EXPORT_INTERVAL: Duration = Duration::from_secs(60);

    /// The export filter used unless [`OtlpBuilder::with_filter`] or
    /// `OMNI_METRICS_OTEL_FILTER` says otherwise: `info`. The
    /// `omni.*` spans are exported whatever the filter says.
    pub const DEFAULT_FILTER: &'static str = "info";

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
    /// `OMNI_METRICS_OTEL_FILTER`; default
    /// [`DEFAULT_FILTER`](Self::DEFAULT_FILTER). The `omni.*` spans are always exported;
    /// the exporter's own crates (gRPC, HTTP, the OpenTelemetry SDK) never are, nor
    /// `DEBUG`/`TRACE` events unless the filter asks for them.
    pub fn with_filter(mut self, directives: impl Into<String>) -> Self {
        self.filter = Some(directives.into());
        self
    }

    /// How much of each request is exported ([`TraceDetail`]): `Stages` keeps a production
    /// trace to its requests, stages and transfers. Overrides
    /// `OMNI_METRICS_TRACE_DETAIL`; default
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
    /// [`DEFAULT_MAX_QUEUE_SIZE`](Self::DEFAULT_MAX_QUEUE_SIZE).
    pub fn with_max_queue_size(mut self, spans: usize) -> Self {
        self.max_queue_size = Some(spans);
        self
    }

    /// How long dropping the guard waits for the last export; default
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`](Self::DEFAULT_SHUTDOWN_TIMEOUT).
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = Some(timeout);
        self
    }

    /// Whether OTLP metrics are exported: `false` never exports them; `true` exports them
    /// even without an endpoint (to the default one, `http://localhost:4317` for gRPC).
    /// Unset, metrics are exported when an endpoint is configured for them. The
    /// environment's off switches win over `true`: `OTEL_SDK_DISABLED=true`,
    /// `OTEL_METRICS_EXPORTER=none`; see [`OtlpPipeline::exports_metrics`].
    ///
    /// ```
    /// use omni_metrics::otlp::OtlpPipeline;
    /// // Traces only, whatever OTEL_METRICS_EXPORTER says.
    /// let pipeline = OtlpPipeline::builder().with_metrics(false).build()?;
    /// assert!(!pipeline.exports_metrics());
    /// # Ok::<(), omni_metrics::otlp::OtlpError>(())
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
    /// [`DEFAULT_METRIC_EXPORT_INTERVAL`](Self::DEFAULT_METRIC_EXPORT_INTERVAL) (60 s); zero
    /// means the default.
    pub fn with_metric_export_interval(mut self, interval: Duration) -> Self {
        self.metric_export_interval = Some(interval);
        self
    }

    /// Also writes the exported spans to the file at `path` (created, or appended to), one
    /// line of OTLP JSON per batch, as the Collector's file exporter writes them
    /// (`format: json`): `omni-metrics report` reads it back into the same tables, records
    /// and HTML page, with no collector running. Overrides
    /// `OMNI_METRICS_TRACE_FILE`.
    ///
    /// With or without an OTLP endpoint: with one, the same spans go to both, each through a
    /// batch queue of its own. The file holds what a collector would receive: the spans the
    /// filter, the [detail](Self::with_trace_detail) and the sampler
    /// (`OTEL_TRACES_SAMPLER`) keep; keep the defaults for a report equal to the live
    /// tables. It is written on a thread of its own through a bounded queue, never waited
    /// for; spans lost (a full queue, a failed write) are counted
    /// ([`OtlpGuard::trace_file_stats`](super::OtlpGuard::trace_file_stats)) and said. The
    /// off switches win: `OTEL_SDK_DISABLED=true` and `OTEL_TRACES_EXPORTER=none` write no
    /// file (said as a warning).
    ///
    /// ```no_run
    /// use omni_metrics::otlp::OtlpBuilder;
    /// // Then: omni-metrics report trace.jsonl --html report.html
    /// let _guard = omni_metrics::Install::new()
    ///     .with_otlp(OtlpBuilder::default().with_trace_file("trace.jsonl"))
    ///     .init()?;
    /// # Ok::<(), omni_metrics::InitError>(())
    /// ```
    pub fn with_trace_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.trace_file = Some(path.into());
        self
    }

    /// The trace file set in code, else by `OMNI_METRICS_TRACE_FILE`, with whether it came from the
    /// variable; `None` when neither names one or an off switch turns trace export off (a
    /// warning in `warnings` then).
    fn trace_file_path(&self, warnings: &mut Vec<String>) -> Option<(PathBuf, bool)> {
        let path = match &self.trace_file {
            Some(path) => (path.clone(), false),
            None => (
                PathBuf::from(std::env::var_os(TRACE_FILE_ENV).filter(|p| !p.is_empty())?),
                true,
            ),
        };
        if disabled_in_env() {
            warnings.push(format!(
                "no trace file is written to `{}` ({}): OTEL_SDK_DISABLED=true or \
                 OTEL_TRACES_EXPORTER=none turns trace export off",
                path.0.display(),
                if path.1 {
                    TRACE_FILE_ENV
                } else {
                    "OtlpBuilder::with_trace_file"
                }
            ));
            return None;
        }
        Some(path)
    }

    /// Whether an endpoint for traces is set here or in the environment.
    fn endpoint_configured(&self) -> bool {
        self.endpoint.is_some() || endpoint_in_env()
    }

    /// Whether [`build`](OtlpBuilder::build) makes a pipeline that exports traces: an
    /// endpoint is configured (in code or `OTEL_EXPORTER_OTLP_ENDPOINT` /
    /// `..._TRACES_ENDPOINT`) or `OTEL_TRACES_EXPORTER=otlp` asks for the default one, and
    /// neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` turns export off.
    /// `init()` and a pipeline you build yourself decide alike.
    pub(super) fn exports_traces(&self) -> bool {
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
    pub(super) fn exports_metrics(&self) -> bool {
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
    /// when neither traces nor metrics are exported, a pipeline that exports nothing.
    ///
    /// Traces are exported when an endpoint is configured (in code, or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` / `..._TRACES_ENDPOINT`) or `OTEL_TRACES_EXPORTER=otlp`
    /// asks for the default one, and written to a trace file when one is named
    /// ([`with_trace_file`](Self::with_trace_file), `OMNI_METRICS_TRACE_FILE`); neither
    /// when `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turns export off. Metrics are exported when an endpoint
    /// is configured for them ([`with_metrics_endpoint`](Self::with_metrics_endpoint),
    /// [`with_endpoint`](Self::with_endpoint), `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`), or `OTEL_METRICS_EXPORTER=otlp` or
    /// [`with_metrics(true)`](Self::with_metrics) asks for the default one; and none of
    /// `with_metrics(false)`, `OTEL_SDK_DISABLED=true`, `OTEL_METRICS_EXPORTER=none` (or
    /// `prometheus`, served by the Prometheus endpoint, or an unsupported value, which is
    /// said) turns them off. `init()` and a pipeline you build yourself decide alike; the
    /// pipeline says what was decided ([`OtlpPipeline::exports_traces`],
    /// [`OtlpPipeline::exports_metrics`]).
    ///
    /// # Errors
    ///
    /// [`OtlpError`] for what cannot work: an unsupported protocol or exporter, an endpoint
    /// that is not an `http://` URL with a valid port, a failure to start the exporter's
    /// runtime, a trace file that cannot be opened for appending ([`OtlpError::TraceFile`]).
    /// A value that can fall back (a sampler ratio outside `[0, 1]`, a queue size
    /// or export interval that is not a number, an unknown temporality) is a warning naming
    /// the variable and the value used, logged when the pipeline becomes a guard. A
    /// collector that is down is not an error: spans that cannot be delivered are counted
    /// in [`ExportStats`], failed metric exports in
    /// [`MetricsExportStats`](super::MetricsExportStats), and reported.
    pub fn build(self) -> Result<OtlpPipeline, OtlpError> {
        let filter = self.filter.clone();
        let detail = self.detail;
        let shutdown_timeout = self
            .shutdown_timeout
            .unwrap_or(Self::DEFAULT_SHUTDOWN_TIMEOUT);
        let mut warnings: Vec<String> = self.metrics_exporter_warning().into_iter().collect();
        let (otlp_traces, metrics_on) = (self.exports_traces(), self.exports_metrics());
        let trace_file = self.trace_file_path(&mut warnings);
        // Nothing else is read or checked for a signal that is not exported.
        let trace_settings = (otlp_traces || trace_file.is_some())
            .then(|| Settings::read(&self, otlp_traces))
            .transpose()?;
        let metric_settings = metrics_on
            .then(|| MetricsSettings::read(&self, &mut warnings))
            .transpose()?;
        let grpc = trace_settings
            .as_ref()
            .is_some_and(|s| otlp_traces && s.protocol == OtlpProtocol::Grpc)
            || metric_settings
                .as_ref()
                .is_some_and(|s| s.protocol == OtlpProtocol::Grpc);
        let runtime = grpc.then(exporter_runtime).transpose()?;
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
                stats: Arc::new(ExportStats::new(Self::DEFAULT_MAX_QUEUE_SIZE)),
                metrics,
                protocol: self.protocol.unwrap_or(OtlpProtocol::Grpc),
                shutdown_timeout,
                filter,
                detail,
                warnings,
                exporting: false,
                otlp_traces: false,
                file: None,
            });
        };
        warnings.extend(settings.warnings.iter().cloned());
        let stats = Arc::new(ExportStats::new(settings.max_queue_size));
        let protocol = settings.protocol;
        let exporter = otlp_traces
            .then(|| self.span_exporter(&settings, runtime.as_ref()))
            .transpose()?;
        let file = match trace_file {
            Some((path, from_env)) => Some(TraceFile::open(
                path,
                from_env,
                settings.max_queue_size,
                shutdown_timeout,
            )?),
            None => None,
        };
        let provider = tracer_provider(settings, exporter, file.as_ref(), &stats, resource);
        Ok(OtlpPipeline {
            provider: Some(provider),
            runtime,
            stats,
            metrics,
            protocol,
            shutdown_timeout,
            filter,
            detail,
            warnings,
            exporting: true,
            otlp_traces,
            file,
        })
    }

    /// The span exporter `settings` ask for (built inside `runtime` for gRPC, with TLS for
    /// an `https://` endpoint or a certificate given).
    fn span_exporter(
        &self,
        settings: &Settings,
        runtime: Option<&ExporterRuntime>,
    ) -> Result<opentelemetry_otlp::SpanExporter, OtlpError> {
        let _entered = runtime.and_then(ExporterRuntime::enter);
        let builder = opentelemetry_otlp::SpanExporter::builder();
        match settings.protocol {
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
        .map_err(|e| OtlpError::Exporter(e.to_string()))
    }
}

/// The exporters' own tokio runtime, for gRPC: tonic needs one with more than one worker to
/// build the channel and to drive its I/O while the batch thread (or the metrics reader)
/// blocks on an export; the exporters share it.
fn exporter_runtime() -> Result<ExporterRuntime, OtlpError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("omni-otlp")
        .enable_all()
        .build()
        .map_err(OtlpError::Runtime)?;
    Ok(ExporterRuntime(Some(runtime)))
}

/// The tracer provider exporting through `exporter` (counted in `stats`) and to `file`,
/// each with a batch processor of its own, of the queue size `settings` give, and their
/// sampler.
fn tracer_provider(
    settings: Settings,
    exporter: Option<opentelemetry_otlp::SpanExporter>,
    file: Option<&Arc<TraceFile>>,
    stats: &Arc<ExportStats>,
    resource: opentelemetry_sdk::Resource,
) -> SdkTracerProvider {
    let batch = || {
        BatchConfigBuilder::default()
            .with_max_queue_size(settings.max_queue_size)
            .build()
    };
    let mut provider = SdkTracerProvider::builder().with_resource(resource);
    if let Some(exporter) = exporter {
        let processor = BatchSpanProcessor::builder(CountingExporter {
            inner: exporter,
            stats: stats.clone(),
        })
        .with_batch_config(batch())
        .build();
        provider = provider.with_span_processor(CountingProcessor {
            inner: processor,
            stats: stats.clone(),
        });
    }
    if let Some(file) = file {
        let processor = BatchSpanProcessor::builder(file.exporter())
            .with_batch_config(batch())
            .build();
        provider = provider.with_span_processor(CountingProcessor {
            inner: processor,
            stats: file.stats().clone(),
        });
    }
    if let Some(sampler) = settings.sampler {
        provider = provider.with_sampler(sampler);
    }
    provider.build()
}
