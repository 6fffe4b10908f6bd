//! Why a pipeline could not be built, flushed or shut down cleanly ([`OtlpError`]).

/// The OTLP pipeline could not be built, flushed or shut down cleanly.
///
/// One variant per outcome; the message says what went wrong and what to do (for logging
/// only: the counts of what was lost are in the guard's
/// [`ExportStats`](super::ExportStats) and [`MetricsExportStats`](super::MetricsExportStats)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtlpError {
    /// A setting or variable cannot work: an unsupported protocol or exporter, a value that
    /// cannot be used, an endpoint that is not an `http://` (or, with TLS, `https://`) URL
    /// with a valid port. The message names it, its value and what to write instead.
    #[error("{0}")]
    Config(String),
    /// A TLS file named by a variable (or the builder) cannot be read.
    #[error("{0}")]
    TlsFile(String, #[source] std::io::Error),
    /// The trace file (from [`OtlpBuilder::with_trace_file`](super::OtlpBuilder::with_trace_file)
    /// or `OMNI_METRICS_TRACE_FILE`) cannot be opened for appending, or its writer thread
    /// cannot start.
    #[error("{0}")]
    TraceFile(String, #[source] std::io::Error),
    /// The exporter rejected its configuration.
    #[error("cannot build the OTLP exporter: {0}; check the OTEL_EXPORTER_OTLP_* variables")]
    Exporter(String),
    /// The exporter's runtime (or the metrics' recorder thread) could not start.
    #[error("cannot start the OTLP exporter's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// Shutdown did not deliver every span.
    #[error("{0}")]
    Shutdown(String),
    /// Every span was delivered (or none was exported), but metric exports failed or the
    /// metrics did not shut down in time.
    #[error("{0}")]
    MetricsShutdown(String),
    /// A flush did not complete.
    #[error("OTLP flush: {0}")]
    Flush(String),
}

impl OtlpError {
    /// A protocol variable names an unsupported protocol.
    pub(super) fn protocol(var: &'static str, value: &str) -> Self {
        Self::Config(format!(
            "{var}={value:?} is not supported: use `grpc` or `http/protobuf`"
        ))
    }

    /// `var` has a value that cannot work; `fix` says what to do.
    pub(super) fn config(var: &'static str, value: &str, fix: &'static str) -> Self {
        Self::Config(format!("{var}={value:?} cannot be used: {fix}"))
    }

    /// The endpoint from `source_name` (a variable's name, or code) cannot work: `why`.
    pub(super) fn endpoint(source_name: &'static str, endpoint: &str, why: &'static str) -> Self {
        Self::Config(format!(
            "the OTLP endpoint {endpoint:?} ({source_name}) cannot be used: {why}"
        ))
    }

    /// The TLS file `path` of `var` (or the builder method) cannot be read.
    #[cfg(feature = "tls")]
    pub(super) fn tls_file(var: &'static str, path: &str, source: std::io::Error) -> Self {
        Self::TlsFile(
            format!("cannot read {var}={path:?}: {source}; check the path and its permissions"),
            source,
        )
    }

    /// `lost` of the `ended` spans were not exported; `detail` says what happened.
    pub(super) fn shutdown(lost: u64, ended: u64, detail: &str) -> Self {
        Self::Shutdown(format!(
            "OTLP export: {lost} of {ended} spans could not be exported ({detail}); the tables \
             and records are complete, only the traces miss them"
        ))
    }

    /// The trace file at `path` (from the variable when `from_env`) cannot be opened.
    pub(super) fn trace_file(
        path: &std::path::Path,
        from_env: bool,
        source: std::io::Error,
    ) -> Self {
        let (origin, or_unset) = if from_env {
            (
                format!(" (from {})", crate::env::TRACE_FILE_ENV),
                format!(", or unset {}", crate::env::TRACE_FILE_ENV),
            )
        } else {
            (String::new(), String::new())
        };
        Self::TraceFile(
            format!(
                "cannot open the trace file `{}`{origin} for appending: {source}; check that \
                 its directory exists and is writable{or_unset}",
                path.display()
            ),
            source,
        )
    }

    /// `failed` of the `exports` metric exports failed; `detail` says what happened.
    pub(super) fn metrics_shutdown(failed: u64, exports: u64, detail: &str) -> Self {
        Self::MetricsShutdown(format!(
            "OTLP metrics export: {failed} of {exports} exports failed ({detail}); the tables \
             and records are complete, only the metrics backend misses them"
        ))
    }
}
