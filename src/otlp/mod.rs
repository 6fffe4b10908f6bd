//! OTLP trace export: the same spans as OpenTelemetry traces, one trace per request.
//!
//! Built on `opentelemetry-otlp` and the `tracing-opentelemetry` bridge. The standard
//! variables are honoured (`OTEL_EXPORTER_OTLP_*`, `OTEL_SDK_DISABLED`,
//! `OTEL_TRACES_EXPORTER`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER`/`_ARG`, `OTEL_BSP_*`) and checked first ([`OtlpBuilder::build`]): an
//! error for a value that cannot work, a warning naming the variable and the value used for
//! one that can fall back. A setting made in code wins only where the caller made it.
//!
//! What is exported is filtered ([`ExportFilter`]); runs are exported apart ([`RunLinks`])
//! so that every request is the root of its own trace; losses are counted by cause and
//! said as they happen ([`ExportStats`]).
//!
//! Sampling only affects what is exported: the metrics layer sees every span.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

mod env;
mod export;
mod filter;
mod runs;
#[cfg(feature = "tls")]
mod tls;

pub use self::env::{
    OTEL_BSP_MAX_QUEUE_SIZE, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_SDK_DISABLED,
    OTEL_SERVICE_NAME, OTEL_TRACES_EXPORTER, OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG,
    disabled_in_env, endpoint_in_env,
};
pub use self::export::{ExportStats, LOSS_REPORT_INTERVAL};
pub use self::filter::{
    DEFAULT_EXPORT_FILTER, ExportFilter, OTEL_FILTER_ENV, TRACE_DETAIL_ENV, TraceDetail,
};
pub use self::runs::RunLinks;
pub(crate) use self::runs::RunTrace;
#[cfg(feature = "tls")]
pub use self::tls::{
    OTEL_EXPORTER_OTLP_CERTIFICATE, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_CLIENT_KEY, OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
    OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE, OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY,
};
pub use crate::layer::AnnotationLayer;

use self::env::Settings;
use self::export::{CountingExporter, CountingProcessor};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing_subscriber::layer::Layered;

/// The span queue used unless `OTEL_BSP_MAX_QUEUE_SIZE` or
/// [`OtlpBuilder::with_max_queue_size`] says otherwise.
///
/// The SDK's default (2,048) dropped more than half the spans of an engine with two busy
/// threads; 65,536 spans (a few MiB) absorb bursts of thousands of requests. Spans that are
/// dropped anyway are counted and reported at shutdown ([`ExportStats`]).
pub const DEFAULT_MAX_QUEUE_SIZE: usize = 65_536;

/// How long dropping the guard waits for the last export, unless
/// [`OtlpBuilder::with_shutdown_timeout`] says otherwise.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OtlpProtocol {
    /// gRPC via tonic (collector port 4317).
    Grpc,
    /// HTTP with protobuf bodies (collector port 4318, path `/v1/traces`).
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
}

impl OtlpBuilder {
    /// The collector's URL (`http://localhost:4317` for gRPC, `http://localhost:4318/v1/traces`
    /// for HTTP). Overrides `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` and
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The transport. Overrides `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` and
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`; default gRPC.
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
    /// endpoints, gRPC). Overrides `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE` and
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

    /// Whether an endpoint is set here or in the environment.
    pub fn endpoint_configured(&self) -> bool {
        self.endpoint.is_some() || endpoint_in_env()
    }

    /// Whether [`build`](OtlpBuilder::build) makes a pipeline that exports: an endpoint is
    /// configured (in code or `OTEL_EXPORTER_OTLP_*ENDPOINT`) or `OTEL_TRACES_EXPORTER=otlp`
    /// asks for the default one, and neither `OTEL_SDK_DISABLED=true` nor
    /// `OTEL_TRACES_EXPORTER=none` turns export off. `init()` and a pipeline you build
    /// yourself decide alike.
    pub fn exports(&self) -> bool {
        (self.endpoint_configured() || env::otlp_requested_in_env()) && !disabled_in_env()
    }

    fn protocol(&self) -> Result<OtlpProtocol, OtlpError> {
        if let Some(p) = self.protocol {
            return Ok(p);
        }
        for var in [
            OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
            OTEL_EXPORTER_OTLP_PROTOCOL,
        ] {
            if let Some(value) = env::nonempty(var) {
                return OtlpProtocol::parse(&value).ok_or(OtlpError::Protocol { var, value });
            }
        }
        Ok(OtlpProtocol::Grpc)
    }

    /// Builds the exporter, its batch processor and the tracer provider; or, when
    /// [`exports`](OtlpBuilder::exports) is `false`, a pipeline whose layer exports nothing.
    ///
    /// # Errors
    ///
    /// [`OtlpError`] for what cannot work: an unsupported protocol or exporter, an endpoint
    /// that is not an `http://` URL with a valid port, a failure to start the exporter's
    /// runtime. A value that can fall back (a sampler ratio outside `[0, 1]`, a queue size
    /// that is not a number) is a warning naming the variable and the value used, logged
    /// when the pipeline becomes a guard. A collector that is down is not an error: spans
    /// that cannot be delivered are counted in [`ExportStats`] and reported.
    pub fn build(self) -> Result<OtlpPipeline, OtlpError> {
        let filter = self.filter.clone();
        let detail = self.detail;
        let shutdown_timeout = self.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT);
        if !self.exports() {
            // As `init()` does: nothing is exported, so nothing else is read or checked.
            let provider = SdkTracerProvider::builder()
                .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOff)
                .build();
            return Ok(OtlpPipeline {
                provider: Some(provider),
                runtime: None,
                stats: Arc::new(ExportStats::new(DEFAULT_MAX_QUEUE_SIZE)),
                protocol: self.protocol.unwrap_or(OtlpProtocol::Grpc),
                shutdown_timeout,
                filter,
                detail,
                warnings: Vec::new(),
                exporting: false,
            });
        }
        let settings = Settings::read(&self)?;
        let stats = Arc::new(ExportStats::new(settings.max_queue_size));
        let protocol = settings.protocol;
        // tonic needs a tokio runtime with more than one worker to build the channel and to
        // drive its I/O while the batch thread blocks on an export; it gets its own.
        let runtime = match protocol {
            OtlpProtocol::Grpc => Some(ExporterRuntime(Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("omni-otlp")
                    .enable_all()
                    .build()
                    .map_err(OtlpError::Runtime)?,
            ))),
            OtlpProtocol::HttpProtobuf => None,
        };
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
                    if settings.https || tls::configured_in_env() || self.ca_certificate.is_some() {
                        use opentelemetry_otlp::WithTonicConfig as _;
                        b = b.with_tls_config(tls::client_config(self.ca_certificate.as_deref())?);
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
        let mut provider = SdkTracerProvider::builder()
            .with_span_processor(CountingProcessor {
                inner: processor,
                stats: stats.clone(),
            })
            .with_resource(resource.build());
        if let Some(sampler) = settings.sampler {
            provider = provider.with_sampler(sampler);
        }
        Ok(OtlpPipeline {
            provider: Some(provider.build()),
            runtime,
            stats,
            protocol,
            shutdown_timeout,
            filter,
            detail,
            warnings: settings.warnings,
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

/// An exporter pipeline: make its [`layer`](OtlpPipeline::layer), keep its
/// [`guard`](OtlpPipeline::into_guard) alive while the engine runs.
pub struct OtlpPipeline {
    /// `None` once moved into a guard.
    provider: Option<SdkTracerProvider>,
    runtime: Option<ExporterRuntime>,
    stats: Arc<ExportStats>,
    protocol: OtlpProtocol,
    shutdown_timeout: Duration,
    /// The export filter's directives from code (else the variable, else the default).
    filter: Option<String>,
    /// The trace detail from code (else the variable, else `Full`).
    detail: Option<TraceDetail>,
    /// Fallbacks taken while reading the configuration, logged once by `into_guard`.
    warnings: Vec<String>,
    /// Whether anything is exported (see [`OtlpBuilder::exports`]).
    exporting: bool,
}

impl fmt::Debug for OtlpPipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpPipeline")
            .field("exporting", &self.exporting)
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

    /// Whether this pipeline exports anything (see [`OtlpBuilder::exports`]).
    pub fn exports(&self) -> bool {
        self.exporting
    }

    /// What was exported so far.
    pub fn stats(&self) -> Arc<ExportStats> {
        self.stats.clone()
    }

    /// The guard that flushes and shuts the pipeline down when dropped. Logs the
    /// configuration's fallbacks (each naming its variable), once: call it after the
    /// subscriber is installed, so that they are seen.
    pub fn into_guard(mut self) -> OtlpGuard {
        for warning in std::mem::take(&mut self.warnings) {
            tracing::warn!(target: "omni_metrics::otlp", "{warning}");
        }
        OtlpGuard {
            inner: Some(Parts {
                provider: self.provider.take(),
                runtime: self.runtime.take(),
                stats: self.stats.clone(),
                shutdown_timeout: self.shutdown_timeout,
            }),
        }
    }
}

impl Drop for OtlpPipeline {
    /// A pipeline dropped without becoming a guard (an error path after `build`): shut it
    /// down off this thread, without waiting. Safe anywhere, inside an async runtime too.
    fn drop(&mut self) {
        let parts = Parts {
            provider: self.provider.take(),
            runtime: self.runtime.take(),
            stats: self.stats.clone(),
            shutdown_timeout: self.shutdown_timeout,
        };
        if parts.provider.is_some() || parts.runtime.is_some() {
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
    runtime: Option<ExporterRuntime>,
    stats: Arc<ExportStats>,
    shutdown_timeout: Duration,
}

impl Parts {
    /// Shuts the provider (flushing the queue) and then the runtime down on a thread of
    /// its own; the receiver gets the provider's result.
    fn shutdown_in_background(
        self,
    ) -> Result<std::sync::mpsc::Receiver<OTelSdkResult>, std::io::Error> {
        let Parts {
            provider,
            runtime,
            shutdown_timeout,
            ..
        } = self;
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("omni-otlp-shutdown".into())
            .spawn(move || {
                let result = match provider {
                    Some(provider) => provider.shutdown_with_timeout(shutdown_timeout),
                    None => Ok(()),
                };
                drop(runtime);
                let _ = done_tx.send(result);
            })?;
        Ok(done_rx)
    }
}

/// Flushes and shuts the exporter down when dropped, within the shutdown timeout, from any
/// context: the blocking shutdown runs on a thread of its own, so a current-thread tokio
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
    /// What was exported so far.
    pub fn stats(&self) -> Option<Arc<ExportStats>> {
        self.inner.as_ref().map(|p| p.stats.clone())
    }

    /// Flushes and shuts down now; later calls (and the drop) do nothing.
    ///
    /// # Errors
    ///
    /// [`OtlpError::Shutdown`] if the exporter did not finish within the timeout, or spans
    /// were not exported (the message says how many).
    pub fn shutdown(&mut self) -> Result<(), OtlpError> {
        let Some(parts) = self.inner.take() else {
            return Ok(());
        };
        let stats = parts.stats.clone();
        let shutdown_timeout = parts.shutdown_timeout;
        let outcome = match parts.shutdown_in_background() {
            Err(e) => Err(format!("cannot start the shutdown thread: {e}")),
            Ok(done_rx) => match done_rx
                .recv_timeout(shutdown_timeout.saturating_add(Duration::from_secs(1)))
            {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("did not finish within {shutdown_timeout:?}")),
            },
        };
        let lost = stats.not_exported();
        let causes = format!(
            "{} dropped because the queue was full or still queued at shutdown, {} in exports \
             that failed (collector down or refusing), {} in exports that timed out (the \
             collector may have received these)",
            stats.unaccounted(),
            stats.failed(),
            stats.timed_out()
        );
        match (outcome, lost) {
            (Ok(()), 0) => Ok(()),
            (outcome, lost) => Err(OtlpError::Shutdown {
                lost,
                ended: stats.ended(),
                detail: match outcome {
                    Ok(()) => causes,
                    Err(e) => format!("{causes}; shutdown: {e}"),
                },
            }),
        }
    }
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
}

/// Sets `attributes` (and a readable `name`) on the OpenTelemetry span of `id`, if the
/// subscriber has a `tracing-opentelemetry` layer and the span is sampled.
pub(crate) fn annotate(
    dispatch: &tracing::Dispatch,
    id: &tracing::span::Id,
    annotation: crate::layer::Annotation<'_>,
) {
    use opentelemetry::trace::TraceContextExt as _;
    let Some(cx) = tracing_opentelemetry::get_otel_context(id, dispatch) else {
        return;
    };
    let span = cx.span();
    // The bridge ignores `otel.name` once the span has started (a child was opened);
    // the readable name is set here, at close, where it is known.
    if let Some(name) = annotation.name {
        span.update_name(name);
    }
    for (key, value) in annotation.attributes {
        span.set_attribute(export::attribute(key, *value));
    }
    if let Some((error_type, message)) = annotation.failure {
        // What Jaeger (`error=true`) and Tempo (`status = error`) search on, and
        // OpenTelemetry's `error.type` to tell a failure from a cancellation.
        span.set_attribute(opentelemetry::KeyValue::new("error.type", error_type));
        span.set_status(opentelemetry::trace::Status::error(message));
    }
}

/// The trace id (32 lowercase hex digits) of span `id`'s exported trace, if the subscriber
/// has a `tracing-opentelemetry` layer that samples it: what a request's record and the
/// metrics' exemplars point to.
pub(crate) fn trace_id(dispatch: &tracing::Dispatch, id: &tracing::span::Id) -> Option<String> {
    use opentelemetry::trace::TraceContextExt as _;
    let cx = tracing_opentelemetry::get_otel_context(id, dispatch)?;
    let span = cx.span();
    let sc = span.span_context();
    (sc.is_valid() && sc.is_sampled()).then(|| sc.trace_id().to_string())
}

/// The subscriber a layer was registered in, if it was (a layer inside an `Option` is not:
/// tracing-subscriber 0.3 does not pass the registration on). No guess is made: annotating
/// through another subscriber would reach the wrong spans.
pub(crate) fn dispatch_of(
    registered: &std::sync::OnceLock<tracing::dispatcher::WeakDispatch>,
) -> Option<tracing::Dispatch> {
    registered
        .get()
        .and_then(tracing::dispatcher::WeakDispatch::upgrade)
}

/// Makes `request` the root of its own trace, linked to the `run` span it belongs to, so an
/// offline batch exports one trace per request (not one trace per run).
pub(crate) fn detach_request(run: &tracing::Span, request: &tracing::Span) {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if request.set_parent(opentelemetry::Context::new()).is_ok() {
        let run_cx = run.context();
        let link = run_cx.span().span_context().clone();
        if link.is_valid() {
            request.add_link(link);
        }
    }
}
