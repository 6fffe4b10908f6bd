//! Why a pipeline could not be built, flushed or shut down cleanly ([`OtlpError`]).

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
