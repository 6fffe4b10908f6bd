//! The one-call install: metrics, logs and (with the `otlp` feature) traces and OTLP
//! metrics.
//!
//! [`init`] installs the global subscriber: a `Registry` with the metrics layer, a fmt layer
//! filtered by `RUST_LOG` (on that layer only, so no log filter can hide an `omni.*` span
//! from the metrics) and, when an OTLP endpoint or a trace file
//! (`OMNI_METRICS_TRACE_FILE`) is configured, the OpenTelemetry layer and the OTLP
//! metrics sink. It returns an [`OmniGuard`]: keep it alive for the life of the
//! engine; dropping it flushes and shuts the exporters down within a bounded time.
//!
//! Engines that build their own subscriber use the layers directly:
//! [`OmniMetricsLayer`] and [`crate::otlp::OtlpPipeline::layer`].

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

use crate::MetricsHandle;
use crate::layer::{BuildError, Builder, OmniMetricsLayer};

/// Installs the global subscriber with defaults; see [`Install`].
///
/// ```no_run
/// let _guard = omni_metrics::init()?;
/// // ... run the engine; tables print as requests finish, traces and metrics go to
/// // OTEL_EXPORTER_OTLP_ENDPOINT when it is set, traces to OMNI_METRICS_TRACE_FILE too.
/// # Ok::<(), omni_metrics::InitError>(())
/// ```
///
/// # Errors
///
/// [`InitError`] if a global subscriber is already installed (a second call), or a layer
/// could not be built.
pub fn init() -> Result<OmniGuard, InitError> {
    Install::default().init()
}

/// Configures [`init`].
#[derive(Debug, Default)]
#[must_use = "call `init` to install"]
pub struct Install {
    metrics: Option<Builder>,
    log_filter: Option<String>,
    #[cfg(feature = "otlp")]
    otlp: Option<crate::otlp::OtlpBuilder>,
    #[cfg(feature = "otlp")]
    otlp_disabled: bool,
}

impl Install {
    /// A configuration with the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Configures the metrics layer (sinks, clock); default [`OmniMetricsLayer::builder`].
    pub fn with_metrics(mut self, builder: Builder) -> Self {
        self.metrics = Some(builder);
        self
    }

    /// The fmt layer's filter when `RUST_LOG` is unset (default `warn`); `RUST_LOG` wins.
    pub fn with_default_log_filter(mut self, directives: impl Into<String>) -> Self {
        self.log_filter = Some(directives.into());
        self
    }

    /// Configures OTLP export. Traces and metrics are exported as
    /// [`OtlpBuilder::build`](crate::otlp::OtlpBuilder::build) decides: traces when an
    /// endpoint is given (here or in `OTEL_EXPORTER_OTLP_ENDPOINT` / `..._TRACES_ENDPOINT`)
    /// or `OTEL_TRACES_EXPORTER=otlp` is set, and neither `OTEL_SDK_DISABLED=true` nor
    /// `OTEL_TRACES_EXPORTER=none` is (the same switches decide whether a trace file named
    /// by [`OtlpBuilder::with_trace_file`](crate::otlp::OtlpBuilder::with_trace_file) or
    /// `OMNI_METRICS_TRACE_FILE` is written); metrics when an endpoint is given for them,
    /// `OTEL_METRICS_EXPORTER=otlp` or
    /// [`OtlpBuilder::with_metrics`](crate::otlp::OtlpBuilder::with_metrics) asks: then the
    /// metrics layer gets the pipeline's
    /// [`metrics_sink`](crate::otlp::OtlpPipeline::metrics_sink). The guard says what is
    /// exported ([`OmniGuard::otlp`]).
    #[cfg(feature = "otlp")]
    pub fn with_otlp(mut self, builder: crate::otlp::OtlpBuilder) -> Self {
        self.otlp = Some(builder);
        self
    }

    /// Never exports traces or metrics over OTLP, nor writes a trace file, whatever the
    /// environment says.
    #[cfg(feature = "otlp")]
    pub fn without_otlp(mut self) -> Self {
        self.otlp_disabled = true;
        self
    }

    /// Installs the global subscriber.
    ///
    /// # Errors
    ///
    /// [`InitError::AlreadyInstalled`] on a second call (or if another global subscriber is
    /// set); [`InitError::Metrics`] or [`InitError::Otlp`] if a layer cannot be built.
    pub fn init(self) -> Result<OmniGuard, InitError> {
        if INSTALLED.load(std::sync::atomic::Ordering::Relaxed) {
            // Before building anything (an exporter runtime, a file): nothing to undo.
            return Err(InitError::AlreadyInstalled(
                "omni_metrics::init() already installed one".to_owned(),
            ));
        }
        let metrics_builder = self.metrics.unwrap_or_else(OmniMetricsLayer::builder);
        // Built first: the metrics layer gets the pipeline's metrics sink.
        #[cfg(feature = "otlp")]
        let mut pipeline = if self.otlp_disabled {
            None
        } else {
            Some(
                self.otlp
                    .unwrap_or_default()
                    .build()
                    .map_err(InitError::Otlp)?,
            )
        };
        // A pipeline that exports nothing is not installed; its warnings (an unsupported
        // OTEL_METRICS_EXPORTER) are still said, once the subscriber is there.
        #[cfg(feature = "otlp")]
        let unused_warnings = match pipeline.take_if(|p| !p.exports()) {
            Some(mut unused) => unused.take_warnings(),
            None => Vec::new(),
        };
        #[cfg(feature = "otlp")]
        let metrics_builder = match &pipeline {
            Some(p) if p.exports_metrics() => metrics_builder
                .with_trace_annotations(p.exports_traces())
                .with_sink(p.metrics_sink()),
            Some(p) => metrics_builder.with_trace_annotations(p.exports_traces()),
            None => metrics_builder.with_trace_annotations(false),
        };
        let metrics = metrics_builder.build().map_err(InitError::Metrics)?;
        if let Some(message) = crate::diagnostics::static_level_warning() {
            crate::diagnostics::stderr_notice(crate::diagnostics::Notice::StaticMaxLevel, message);
        }
        let handle = metrics.handle();
        let filter = match (std::env::var_os(EnvFilter::DEFAULT_ENV), &self.log_filter) {
            (None, Some(directives)) => EnvFilter::builder().parse_lossy(directives),
            _ => log_filter(),
        };
        let base = tracing_subscriber::registry().with(metrics);
        // Two subscriber types rather than an `Option` layer: `Option<L>` does not pass
        // `on_register_dispatch` on (tracing-subscriber 0.3), which the OTLP layers need.
        // `set_global_default`, not `try_init`: with tracing-subscriber's `tracing-log`
        // feature (on by default in an application's own dependency), `try_init` installs
        // the `log` bridge too, and `bridge_log` would then warn of a logger nobody else
        // installed. The bridge is installed once, below.
        #[cfg(feature = "otlp")]
        let installed = match &pipeline {
            Some(p) if p.exports_traces() => tracing::subscriber::set_global_default(
                base.with(p.layer()).with(log_layer(filter)),
            ),
            // Metrics only: their sink is in the metrics layer, no OpenTelemetry layer.
            _ => tracing::subscriber::set_global_default(base.with(log_layer(filter))),
        };
        #[cfg(not(feature = "otlp"))]
        let installed = tracing::subscriber::set_global_default(base.with(log_layer(filter)));
        installed.map_err(|e| InitError::AlreadyInstalled(e.to_string()))?;
        INSTALLED.store(true, std::sync::atomic::Ordering::Relaxed);
        bridge_log();
        #[cfg(feature = "otlp")]
        for warning in unused_warnings {
            tracing::warn!(target: "omni_metrics::otlp", "{warning}");
        }
        Ok(OmniGuard {
            handle,
            #[cfg(feature = "otlp")]
            otlp: pipeline.map(crate::otlp::OtlpPipeline::into_guard),
            reported: false,
        })
    }
}

/// `init()`'s log layer: fmt to stderr (colours on a terminal), filtered on its own.
fn log_layer<S>(filter: EnvFilter) -> impl tracing_subscriber::Layer<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter)
}

/// The log filter `init()` puts on its fmt layer: `RUST_LOG`, or `warn` when it is unset,
/// so that the crate's own warnings (what to fix, what was lost) are seen. Put it on your
/// own fmt layer (and on that layer only) to get the same behaviour.
///
/// ```
/// use tracing_subscriber::prelude::*;
/// let subscriber = tracing_subscriber::registry()
///     .with(tracing_subscriber::fmt::layer().with_filter(omni_metrics::log_filter()));
/// # drop(subscriber);
/// ```
pub fn log_filter() -> EnvFilter {
    EnvFilter::builder()
        .with_default_directive(tracing_subscriber::filter::LevelFilter::WARN.into())
        .from_env_lossy()
}

/// Set once [`Install::init`] has installed the global subscriber: a second call fails
/// before building anything.
static INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sends the `log` crate's records (from dependencies that log through `log`) to the
/// subscriber, as `tracing_subscriber::fmt::init()` does. An application that installed its
/// own `log` logger keeps it (said once).
fn bridge_log() {
    if let Err(error) = tracing_log::LogTracer::init() {
        tracing::warn!(
            target: "omni_metrics::install",
            %error,
            "a `log` logger is already installed: records of the `log` crate go to it, not to \
             this subscriber"
        );
    }
}

/// Keeps the installed pipeline running; dropping it writes the queued console tables and
/// JSON-lines records (within 2 s) and flushes and shuts the OTLP exporters (traces and
/// metrics) down within their timeout (from any thread or runtime).
#[derive(Debug)]
#[must_use = "dropping the guard shuts the exporter down at once"]
pub struct OmniGuard {
    handle: MetricsHandle,
    #[cfg(feature = "otlp")]
    otlp: Option<crate::otlp::OtlpGuard>,
    /// Whether what was still open has been reported.
    reported: bool,
}

impl OmniGuard {
    /// Says which runs and requests are still open (their records and the runs' summaries
    /// are not written): once, at shutdown.
    fn report_open(&mut self) {
        if std::mem::replace(&mut self.reported, true) {
            return;
        }
        let open = self.handle.open_spans();
        if !open.is_empty() {
            tracing::warn!(
                target: "omni_metrics::diagnostics",
                "still open at shutdown: {open}. Their records (and their run's summary) are \
                 not written: close (drop) every `omni.*` span before the guard drops."
            );
        }
    }

    /// The metrics layer's handle.
    pub fn metrics(&self) -> &MetricsHandle {
        &self.handle
    }

    /// The OTLP guard, when something is exported: its
    /// [`force_flush`](crate::otlp::OtlpGuard::force_flush) and export counts. Its
    /// [`stats`](crate::otlp::OtlpGuard::stats) are there when traces are exported, its
    /// [`metrics_stats`](crate::otlp::OtlpGuard::metrics_stats) when metrics are.
    ///
    /// ```no_run
    /// let guard = omni_metrics::init()?;
    /// let otlp = guard.otlp();
    /// if otlp.and_then(|o| o.stats()).is_some() {
    ///     tracing::info!("exporting traces over OTLP");
    /// }
    /// if otlp.and_then(|o| o.metrics_stats()).is_some() {
    ///     tracing::info!("exporting metrics over OTLP");
    /// }
    /// # Ok::<(), omni_metrics::InitError>(())
    /// ```
    #[cfg(feature = "otlp")]
    pub fn otlp(&self) -> Option<&crate::otlp::OtlpGuard> {
        self.otlp.as_ref()
    }

    /// Flushes the console and JSON-lines records (within
    /// [`OmniMetricsLayer::FLUSH_TIMEOUT`]) and shuts the
    /// exporter down now; safe to call twice.
    ///
    /// # Errors
    ///
    /// [`InitError::Otlp`] when spans could not be exported or metric exports failed (the
    /// message says how many).
    /// Lost records are reported as a warning and in
    /// [`MetricsHandle::sink_losses`].
    pub fn shutdown(&mut self) -> Result<(), InitError> {
        self.report_open();
        let _ = self.handle.shutdown_sinks(OmniMetricsLayer::FLUSH_TIMEOUT);
        #[cfg(feature = "otlp")]
        if let Some(otlp) = &mut self.otlp {
            otlp.shutdown().map_err(InitError::Otlp)?;
        }
        Ok(())
    }
}

impl Drop for OmniGuard {
    /// Writes the queued console tables and JSON-lines records, waiting at most
    /// [`OmniMetricsLayer::FLUSH_TIMEOUT`], and reports lost
    /// records once; then the OTLP guard shuts the exporter down.
    fn drop(&mut self) {
        self.report_open();
        let _ = self.handle.shutdown_sinks(OmniMetricsLayer::FLUSH_TIMEOUT);
    }
}

/// [`init`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// A global subscriber is already installed: `init` was called twice, or the
    /// application installed its own. Use the layers directly to compose them.
    #[error(
        "a global tracing subscriber is already installed ({0}); call omni_metrics::init() \
         once, or add OmniMetricsLayer to your own subscriber"
    )]
    AlreadyInstalled(String),
    /// The metrics layer could not be built.
    #[error(transparent)]
    Metrics(#[from] BuildError),
    /// The OTLP exporter could not be built or shut down cleanly.
    #[cfg(feature = "otlp")]
    #[error(transparent)]
    Otlp(#[from] crate::otlp::OtlpError),
}
