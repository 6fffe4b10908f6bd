//! OTLP metrics: every finished request's metrics, as the catalogue defines them
//! ([`crate::metrics::catalog`]), recorded into OpenTelemetry instruments and exported
//! over the same settings as traces.
//!
//! - On when an endpoint is configured for metrics ([`OtlpBuilder::with_metrics_endpoint`],
//!   [`OtlpBuilder::with_endpoint`], `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`,
//!   `OTEL_EXPORTER_OTLP_ENDPOINT`), or `OTEL_METRICS_EXPORTER=otlp` /
//!   [`OtlpBuilder::with_metrics`]`(true)` asks for the default one. Off with
//!   `with_metrics(false)`, `OTEL_SDK_DISABLED=true`, `OTEL_METRICS_EXPORTER=none` (or
//!   `prometheus`, which the Prometheus endpoint serves); any other value of
//!   `OTEL_METRICS_EXPORTER` is a warning, and off. The environment's off switches win over
//!   code, as for traces: an operator can always turn export off.
//! - Never sampled: the sink sees every request, whatever the trace sampler keeps. The
//!   engine's thread only queues a request's observations; a recorder thread records them.
//! - Exported by a periodic reader on a thread of its own every
//!   [`OtlpBuilder::DEFAULT_METRIC_EXPORT_INTERVAL`] (`OTEL_METRIC_EXPORT_INTERVAL`), at
//!   [`OtlpGuard::force_flush`](super::OtlpGuard::force_flush) and once more at shutdown;
//!   failed exports are counted and said ([`MetricsExportStats`]).

use std::time::Duration;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};

use super::env::{
    self, OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, OTEL_METRIC_EXPORT_INTERVAL, Signal,
    check_endpoint,
};
use super::pipeline::ExporterRuntime;
use super::{OtlpBuilder, OtlpError, OtlpProtocol};

mod export;
mod sink;

pub use self::export::MetricsExportStats;
pub use self::sink::OtlpMetricsSink;

use self::export::CountingMetricExporter;

/// [`OtlpBuilder::DEFAULT_METRIC_EXPORT_INTERVAL`], here.
const DEFAULT_METRIC_EXPORT_INTERVAL: Duration = OtlpBuilder::DEFAULT_METRIC_EXPORT_INTERVAL;

/// How the exported sums and histograms accumulate: since the start of the process, or
/// since the previous export.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricTemporality {
    /// Totals since the process started (the default; what Prometheus expects). A failed
    /// export loses nothing: the next one carries the totals.
    #[default]
    Cumulative,
    /// What happened since the previous export (what some backends, Datadog among them,
    /// prefer). The points of a failed export are lost.
    Delta,
    /// Delta for counters and histograms, cumulative for up-down counters: the least
    /// memory in the SDK (this crate's sums are counters and histograms, so it is Delta
    /// here; its gauges have no temporality).
    LowMemory,
}

impl MetricTemporality {
    /// Parses `cumulative`, `delta` or `lowmemory`, in any case (the variable's values).
    pub(super) fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        [
            ("cumulative", Self::Cumulative),
            ("delta", Self::Delta),
            ("lowmemory", Self::LowMemory),
        ]
        .into_iter()
        .find_map(|(name, t)| s.eq_ignore_ascii_case(name).then_some(t))
    }

    fn sdk(self) -> Temporality {
        match self {
            Self::Cumulative => Temporality::Cumulative,
            Self::Delta => Temporality::Delta,
            Self::LowMemory => Temporality::LowMemory,
        }
    }
}

/// What the metrics exporter is built from, after code and environment are merged and
/// checked.
pub(super) struct MetricsSettings {
    pub(super) protocol: OtlpProtocol,
    /// The endpoint to set in code (given in code); the exporter reads the variables
    /// itself otherwise (they were checked here).
    code_endpoint: Option<String>,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    https: bool,
    temporality: MetricTemporality,
    interval: Duration,
}

impl MetricsSettings {
    /// Reads and checks the settings; fallbacks are pushed to `warnings`.
    pub(super) fn read(
        builder: &OtlpBuilder,
        warnings: &mut Vec<String>,
    ) -> Result<Self, OtlpError> {
        let protocol = Signal::Metrics.protocol(builder.protocol)?;
        let code_endpoint = match (&builder.metrics_endpoint, &builder.endpoint) {
            (Some(endpoint), _) => Some(endpoint.clone()),
            (None, Some(endpoint)) => Some(match protocol {
                OtlpProtocol::Grpc => endpoint.clone(),
                OtlpProtocol::HttpProtobuf => metrics_url(endpoint),
            }),
            (None, None) => None,
        };
        let https = match &code_endpoint {
            Some(endpoint) => {
                check_endpoint(endpoint, "the metrics endpoint given in code", protocol)?
            }
            None => Signal::Metrics.check_env_endpoint(protocol)?,
        };
        let temporality = match builder.temporality {
            Some(t) => t,
            None => match env::nonempty(OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE) {
                None => MetricTemporality::default(),
                Some(value) => MetricTemporality::parse(&value).unwrap_or_else(|| {
                    warnings.push(format!(
                        "{OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE}={value:?} is not \
                         `cumulative`, `delta` or `lowmemory`: using cumulative"
                    ));
                    MetricTemporality::default()
                }),
            },
        };
        let interval = match builder.metric_export_interval.filter(|d| !d.is_zero()) {
            Some(d) => d,
            None => match env::nonempty(OTEL_METRIC_EXPORT_INTERVAL) {
                None => DEFAULT_METRIC_EXPORT_INTERVAL,
                Some(value) => match value.trim().parse::<u64>() {
                    Ok(ms) if ms > 0 => Duration::from_millis(ms),
                    _ => {
                        warnings.push(format!(
                            "{OTEL_METRIC_EXPORT_INTERVAL}={value:?} is not a positive number \
                             of milliseconds: using {}",
                            DEFAULT_METRIC_EXPORT_INTERVAL.as_millis()
                        ));
                        DEFAULT_METRIC_EXPORT_INTERVAL
                    }
                },
            },
        };
        Ok(Self {
            protocol,
            code_endpoint,
            https,
            temporality,
            interval,
        })
    }
}

/// The metrics URL of an HTTP endpoint given for traces: `/v1/traces` replaced by
/// `/v1/metrics`, or `/v1/metrics` added to a URL without it (as the exporter does with
/// `OTEL_EXPORTER_OTLP_ENDPOINT`).
fn metrics_url(traces: &str) -> String {
    let base = traces.trim().trim_end_matches('/');
    let base = base.strip_suffix("/v1/traces").unwrap_or(base);
    format!("{base}/v1/metrics")
}

/// The metrics half of a pipeline.
pub(super) struct MetricsParts {
    /// Taken by the guard (or the pipeline's drop), which shuts it down.
    pub(super) provider: Option<SdkMeterProvider>,
    pub(super) sink: OtlpMetricsSink,
    pub(super) stats: std::sync::Arc<MetricsExportStats>,
}

/// Builds the exporter (inside `runtime` for gRPC), its periodic reader, the meter
/// provider and the sink's instruments.
pub(super) fn build(
    builder: &OtlpBuilder,
    settings: &MetricsSettings,
    runtime: Option<&ExporterRuntime>,
    resource: opentelemetry_sdk::Resource,
) -> Result<MetricsParts, OtlpError> {
    let temporality = settings.temporality.sdk();
    let exporter = match settings.protocol {
        OtlpProtocol::Grpc => {
            let _entered = runtime.and_then(ExporterRuntime::enter);
            let mut b = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_temporality(temporality);
            if let Some(endpoint) = &settings.code_endpoint {
                b = b.with_endpoint(endpoint.clone());
            }
            #[cfg(feature = "tls")]
            if settings.https
                || super::tls::configured_in_env(Signal::Metrics)
                || builder.ca_certificate.is_some()
            {
                use opentelemetry_otlp::WithTonicConfig as _;
                b = b.with_tls_config(super::tls::client_config(
                    Signal::Metrics,
                    builder.ca_certificate.as_deref(),
                )?);
            }
            #[cfg(not(feature = "tls"))]
            let _ = builder;
            b.build()
        }
        OtlpProtocol::HttpProtobuf => {
            let mut b = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_temporality(temporality);
            if let Some(endpoint) = &settings.code_endpoint {
                b = b.with_endpoint(endpoint.clone());
            }
            b.build()
        }
    }
    .map_err(|e| OtlpError::Exporter(e.to_string()))?;
    let stats = std::sync::Arc::new(MetricsExportStats::new());
    let reader = PeriodicReader::builder(CountingMetricExporter {
        inner: exporter,
        stats: stats.clone(),
    })
    .with_interval(settings.interval)
    .build();
    let provider = SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource)
        .build();
    let meter = provider.meter_with_scope(
        opentelemetry::InstrumentationScope::builder("omni-metrics")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    );
    Ok(MetricsParts {
        sink: OtlpMetricsSink::start(&meter).map_err(OtlpError::Runtime)?,
        provider: Some(provider),
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_metrics_urls_follow_the_traces_url() {
        assert_eq!(
            metrics_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/metrics"
        );
        assert_eq!(metrics_url("http://c:4318"), "http://c:4318/v1/metrics");
        assert_eq!(metrics_url("http://c:4318/"), "http://c:4318/v1/metrics");
        assert_eq!(
            metrics_url("http://c:4318/otlp/v1/traces"),
            "http://c:4318/otlp/v1/metrics"
        );
    }

    #[test]
    fn temporalities_parse_in_any_case() {
        assert_eq!(
            MetricTemporality::parse("LOWMEMORY"),
            Some(MetricTemporality::LowMemory)
        );
        assert_eq!(
            MetricTemporality::parse(" cumulative "),
            Some(MetricTemporality::Cumulative)
        );
        assert_eq!(MetricTemporality::parse(""), None);
    }
}
