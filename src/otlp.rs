//! OTLP trace export: the same spans as OpenTelemetry traces, one trace per request.
//!
//! Built on `opentelemetry-otlp` and the `tracing-opentelemetry` bridge. The standard
//! variables are honoured by the SDK itself (`OTEL_EXPORTER_OTLP_*ENDPOINT`, `*_HEADERS`,
//! `*_TIMEOUT`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`/`_ARG`,
//! `OTEL_BSP_*`); a setting made in code wins only where the caller made it.
//!
//! Sampling only affects what is exported: the metrics layer sees every span.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use crate::layer::AnnotationLayer;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter,
    SpanProcessor,
};
use tracing_subscriber::layer::Layered;

/// `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector for every signal.
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the collector for traces (wins over the above).
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc` or `http/protobuf`.
pub const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`: as above, for traces (wins over the above).
pub const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
/// `OTEL_BSP_MAX_QUEUE_SIZE`: the batch processor's queue; see [`DEFAULT_MAX_QUEUE_SIZE`].
pub const OTEL_BSP_MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";

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

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Whether an OTLP endpoint is configured in the environment.
pub fn endpoint_in_env() -> bool {
    env_nonempty(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT).is_some()
        || env_nonempty(OTEL_EXPORTER_OTLP_ENDPOINT).is_some()
}

/// Counts of spans handed to the exporter and spans it delivered, to report what was lost.
#[derive(Debug, Default)]
pub struct ExportStats {
    ended: AtomicU64,
    exported: AtomicU64,
    failed_batches: AtomicU64,
}

impl ExportStats {
    /// Sampled spans that ended and were handed to the batch processor.
    pub fn ended(&self) -> u64 {
        self.ended.load(Ordering::Relaxed)
    }

    /// Spans the collector accepted.
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }

    /// Spans that never reached the collector: dropped from a full queue, in a failed or
    /// timed-out export, or still queued when shutdown gave up.
    pub fn not_exported(&self) -> u64 {
        self.ended().saturating_sub(self.exported())
    }

    /// Export calls that failed (collector down, refused, timed out).
    pub fn failed_batches(&self) -> u64 {
        self.failed_batches.load(Ordering::Relaxed)
    }
}

/// Counts what the inner exporter delivered.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    stats: Arc<ExportStats>,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => self.stats.exported.fetch_add(n, Ordering::Relaxed),
            Err(_) => self.stats.failed_batches.fetch_add(1, Ordering::Relaxed),
        };
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// Counts the spans handed to the batch processor.
#[derive(Debug)]
struct CountingProcessor<P> {
    inner: P,
    stats: Arc<ExportStats>,
}

impl<P: SpanProcessor> SpanProcessor for CountingProcessor<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.stats.ended.fetch_add(1, Ordering::Relaxed);
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
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
    max_queue_size: Option<usize>,
    shutdown_timeout: Option<Duration>,
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

    fn protocol(&self) -> Result<OtlpProtocol, OtlpError> {
        if let Some(p) = self.protocol {
            return Ok(p);
        }
        for var in [
            OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
            OTEL_EXPORTER_OTLP_PROTOCOL,
        ] {
            if let Some(value) = env_nonempty(var) {
                return OtlpProtocol::parse(&value).ok_or(OtlpError::Protocol { var, value });
            }
        }
        Ok(OtlpProtocol::Grpc)
    }

    /// Builds the exporter, its batch processor and the tracer provider.
    ///
    /// # Errors
    ///
    /// [`OtlpError`] for an unsupported protocol, an invalid endpoint or header, or a failure
    /// to start the exporter's runtime. A collector that is down is not an error: spans that
    /// cannot be delivered are counted in [`ExportStats`].
    pub fn build(self) -> Result<OtlpPipeline, OtlpError> {
        let protocol = self.protocol()?;
        let stats = Arc::new(ExportStats::default());
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
                    if let Some(endpoint) = &self.endpoint {
                        b = b.with_endpoint(endpoint.clone());
                    }
                    b.build()
                }
                OtlpProtocol::HttpProtobuf => {
                    let mut b = builder.with_http().with_protocol(Protocol::HttpBinary);
                    if let Some(endpoint) = &self.endpoint {
                        b = b.with_endpoint(endpoint.clone());
                    }
                    b.build()
                }
            }
            .map_err(|e| OtlpError::Exporter(e.to_string()))?
        };
        let mut batch = BatchConfigBuilder::default();
        if self.max_queue_size.is_some() || env_nonempty(OTEL_BSP_MAX_QUEUE_SIZE).is_none() {
            batch =
                batch.with_max_queue_size(self.max_queue_size.unwrap_or(DEFAULT_MAX_QUEUE_SIZE));
        }
        let processor = BatchSpanProcessor::builder(CountingExporter {
            inner: exporter,
            stats: stats.clone(),
        })
        .with_batch_config(batch.build())
        .build();
        let mut resource = opentelemetry_sdk::Resource::builder();
        if let Some(name) = &self.service_name {
            resource = resource.with_service_name(name.clone());
        }
        let provider = SdkTracerProvider::builder()
            .with_span_processor(CountingProcessor {
                inner: processor,
                stats: stats.clone(),
            })
            .with_resource(resource.build())
            .build();
        Ok(OtlpPipeline {
            provider: Some(provider),
            runtime,
            stats,
            protocol,
            shutdown_timeout: self.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
        })
    }
}

/// An exporter pipeline: make its [`layer`](OtlpPipeline::layer), keep its
/// [`guard`](OtlpPipeline::into_guard) alive while the engine runs.
pub struct OtlpPipeline {
    /// `None` once moved into a guard.
    provider: Option<SdkTracerProvider>,
    runtime: Option<ExporterRuntime>,
    stats: Arc<ExportStats>,
    protocol: OtlpProtocol,
    shutdown_timeout: Duration,
}

impl fmt::Debug for OtlpPipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpPipeline")
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

    /// The `tracing-opentelemetry` layer exporting through this pipeline, behind an
    /// [`AnnotationLayer`] so that the metrics layer's names and numbers reach the exported
    /// spans whichever of the two layers is added first.
    pub fn layer<S>(
        &self,
    ) -> Layered<
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
        AnnotationLayer,
        S,
    >
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        use tracing_subscriber::Layer as _;
        let tracer = match &self.provider {
            Some(provider) => provider.tracer("omni-metrics"),
            // Only after `into_guard`, which consumes the pipeline: unreachable in practice.
            None => SdkTracerProvider::builder().build().tracer("omni-metrics"),
        };
        AnnotationLayer::new().and_then(tracing_opentelemetry::layer().with_tracer(tracer))
    }

    /// What was exported so far.
    pub fn stats(&self) -> Arc<ExportStats> {
        self.stats.clone()
    }

    /// The guard that flushes and shuts the pipeline down when dropped.
    pub fn into_guard(mut self) -> OtlpGuard {
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
            Ok(done_rx) => match done_rx.recv_timeout(shutdown_timeout + Duration::from_secs(1)) {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("did not finish within {shutdown_timeout:?}")),
            },
        };
        let lost = stats.not_exported();
        match (outcome, lost) {
            (Ok(()), 0) => Ok(()),
            (outcome, lost) => Err(OtlpError::Shutdown {
                lost,
                ended: stats.ended(),
                detail: outcome
                    .err()
                    .unwrap_or_else(|| "the collector refused or was unreachable".into()),
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
    name: Option<String>,
    attributes: &[(&'static str, f64)],
) {
    use opentelemetry::trace::TraceContextExt as _;
    if let Some(cx) = tracing_opentelemetry::get_otel_context(id, dispatch) {
        let span = cx.span();
        // The bridge ignores `otel.name` once the span has started (a child was opened);
        // the readable name is set here, at close, where it is known.
        if let Some(name) = name {
            span.update_name(name);
        }
        for (key, value) in attributes {
            span.set_attribute(opentelemetry::KeyValue::new(*key, *value));
        }
    }
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
