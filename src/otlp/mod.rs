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

// A pipeline's life: `builder` (settings, `OTEL_*` variables, the exporters and providers
// they make) -> `pipeline` (the providers, until the guard takes them) -> `guard` (flush,
// shutdown, what was lost); `error` says why one failed. Traces reach it through `bridge`
// (the tracing-opentelemetry layer for its tracer), `filter` (what is exported) and `runs`
// (a run's own span); `export` counts what the exporters delivered; `metrics` is the
// metrics half; `env` and `tls` read the variables.
mod bridge;
mod builder;
mod env;
mod error;
mod export;
mod filter;
mod guard;
mod metrics;
mod pipeline;
mod runs;
#[cfg(feature = "tls")]
mod tls;

pub use self::bridge::OtlpLayer;
pub use self::builder::{
    DEFAULT_MAX_QUEUE_SIZE, DEFAULT_SHUTDOWN_TIMEOUT, OtlpBuilder, OtlpProtocol,
};
pub use self::error::OtlpError;
pub use self::guard::OtlpGuard;
pub use self::pipeline::OtlpPipeline;

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
