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
//! What is exported is filtered ([`OtlpBuilder::with_filter`],
//! [`OtlpBuilder::with_trace_detail`]); runs are exported apart so that every request is
//! the root of its own trace; losses are counted by cause and said as they happen
//! ([`ExportStats`], [`MetricsExportStats`]).
//!
//! The same spans may also be written to a file of the crate's own, as the Collector's file
//! exporter writes them, for `omni-metrics report` with no collector running
//! ([`OtlpBuilder::with_trace_file`], `OMNI_METRICS_TRACE_FILE`), with or without an
//! endpoint; what it lost is counted apart ([`OtlpGuard::trace_file_stats`]).
//!
//! Metrics ([`OtlpMetricsSink`]) go over the same exporter settings as traces, with the
//! catalogue's names ([`crate::metrics`]): GenAI semantic-convention names where
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
// metrics half; `file` writes the trace file; `env` and `tls` read the variables.
mod bridge;
mod builder;
mod env;
mod error;
mod export;
mod file;
mod filter;
mod guard;
mod metrics;
mod pipeline;
mod runs;
#[cfg(feature = "tls")]
mod tls;

pub use self::builder::{OtlpBuilder, OtlpProtocol};
pub use self::error::OtlpError;
pub use self::export::ExportStats;
pub use self::filter::TraceDetail;
pub use self::guard::OtlpGuard;
pub use self::metrics::{MetricTemporality, MetricsExportStats, OtlpMetricsSink};
pub use self::pipeline::OtlpPipeline;
pub use crate::layer::AnnotationLayer;

use self::filter::ExportFilter;
use self::runs::RunLinks;
