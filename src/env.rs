//! The names of the environment variables the crate reads, in one place: what each does is
//! in the crate root's table (`docs/reference/environment.md`), and each setter that wins
//! over a variable names it.
//!
//! A setting made in code wins over its variable; the `OTEL_*` off switches
//! (`OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none`, `OTEL_METRICS_EXPORTER=none`) win
//! over code.

// The metrics layer (`Builder::build`, and so `init()`).

/// `OMNI_METRICS_JSONL`: append JSON-lines records to this file, unless
/// [`Builder::with_jsonl`](crate::Builder::with_jsonl) was called.
pub(crate) const JSONL_ENV: &str = "OMNI_METRICS_JSONL";

/// `OMNI_METRICS_HTML`: write each run's HTML report to this file when the run closes,
/// unless [`Builder::with_html_path`](crate::Builder::with_html_path) was called. `{scope}`
/// in the path is replaced by the run's scope; without it each run replaces the file.
pub(crate) const HTML_ENV: &str = "OMNI_METRICS_HTML";

/// `OMNI_METRICS_LOG_INTERVAL`: print the periodic line
/// ([`Builder::with_periodic_log`](crate::Builder::with_periodic_log), which wins over it)
/// every interval: `10s`, `500ms`, `1.5s`, `2m`, a bare number of seconds; `0` or `off` for
/// none. Unset, there is no periodic line. A value that cannot be read is a warning (target
/// `omni_metrics::diagnostics`, when the layer joins a subscriber) naming the variable, and
/// there is no periodic line.
pub(crate) const LOG_INTERVAL_ENV: &str = "OMNI_METRICS_LOG_INTERVAL";

/// `OMNI_METRICS_AUDIO_CONTINUITY_MS`: the audio continuity thresholds, in ms, comma
/// separated (`100,250`), unless
/// [`Builder::with_audio_continuity_thresholds`](crate::Builder::with_audio_continuity_thresholds)
/// was called. Unset: 100 ms. A value that cannot be read is a warning naming the variable,
/// and the default applies.
pub(crate) const AUDIO_CONTINUITY_ENV: &str = "OMNI_METRICS_AUDIO_CONTINUITY_MS";

/// `OMNI_METRICS_MODEL_NAME`: the model the layer serves, unless
/// [`Builder::with_model_name`](crate::Builder::with_model_name) was called: the
/// `model_name` label of every metric (vLLM's) and a key of the records and summaries.
/// Unset or empty: no key, and the label is
/// [`DEFAULT_MODEL_NAME`](crate::metrics::catalog::DEFAULT_MODEL_NAME). A value that is not
/// UTF-8 is a warning naming the variable, and no name is set.
pub(crate) const MODEL_NAME_ENV: &str = "OMNI_METRICS_MODEL_NAME";

/// `OMNI_METRICS_ONLINE_TABLES`: whether online requests print their tables on the console
/// ([`Builder::with_online_tables`](crate::Builder::with_online_tables), which wins over
/// it): `1`, `true`, `on`, `yes` or `0`, `false`, `off`, `no`. Unset, online tables are
/// printed unless the periodic line is on. Another value is a warning naming the variable,
/// and the default applies.
pub(crate) const ONLINE_TABLES_ENV: &str = "OMNI_METRICS_ONLINE_TABLES";

/// `OMNI_METRICS_PROMETHEUS_ADDR`: serve the Prometheus endpoint on this address
/// (`host:port`; a bare `port` or `:port` means `127.0.0.1:port`), unless a
/// [`PrometheusSink`](crate::PrometheusSink) was added with
/// [`Builder::with_sink`](crate::Builder::with_sink). A bad address or a port in use is an
/// error of [`Builder::build`](crate::Builder::build) (and so of [`crate::init`]).
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub(crate) const PROMETHEUS_ADDR_ENV: &str = "OMNI_METRICS_PROMETHEUS_ADDR";

// OTLP export (`OtlpBuilder::build`, and so `init()`): the crate's own three.

/// `OMNI_METRICS_OTEL_FILTER`: what is exported, in `EnvFilter` syntax (`RUST_LOG`'s),
/// unless [`OtlpBuilder::with_filter`](crate::otlp::OtlpBuilder::with_filter) sets it.
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub(crate) const OTEL_FILTER_ENV: &str = "OMNI_METRICS_OTEL_FILTER";

/// `OMNI_METRICS_TRACE_DETAIL`: how much of each request is exported
/// ([`TraceDetail`](crate::otlp::TraceDetail): `full`, `stages` or `requests`), unless
/// [`OtlpBuilder::with_trace_detail`](crate::otlp::OtlpBuilder::with_trace_detail) sets it.
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub(crate) const TRACE_DETAIL_ENV: &str = "OMNI_METRICS_TRACE_DETAIL";

/// `OMNI_METRICS_TRACE_FILE`: also write the exported spans to this file, one line of OTLP
/// JSON per batch as the Collector's file exporter writes them, for `omni-metrics report`
/// without a collector; unless
/// [`OtlpBuilder::with_trace_file`](crate::otlp::OtlpBuilder::with_trace_file) sets it. The
/// file is appended to. `OTEL_SDK_DISABLED=true` and `OTEL_TRACES_EXPORTER=none` turn it off
/// too (said as a warning).
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub(crate) const TRACE_FILE_ENV: &str = "OMNI_METRICS_TRACE_FILE";

// OTLP export: the standard `OTEL_*` variables.

/// `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector for every signal; see
/// [`OtlpBuilder::with_endpoint`](crate::otlp::OtlpBuilder::with_endpoint).
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub(crate) const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the collector for traces (wins over
/// `OTEL_EXPORTER_OTLP_ENDPOINT`).
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub(crate) const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`: the collector for metrics (wins over
/// `OTEL_EXPORTER_OTLP_ENDPOINT`); over HTTP the full URL, `.../v1/metrics`. See
/// [`OtlpBuilder::with_metrics_endpoint`](crate::otlp::OtlpBuilder::with_metrics_endpoint).
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub(crate) const OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc` or `http/protobuf`; see
/// [`OtlpBuilder::with_protocol`](crate::otlp::OtlpBuilder::with_protocol).
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub(crate) const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`: as `OTEL_EXPORTER_OTLP_PROTOCOL`, for traces
/// (wins over it).
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub(crate) const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL`: as `OTEL_EXPORTER_OTLP_PROTOCOL`, for metrics
/// (wins over it).
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub(crate) const OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL";
/// `OTEL_BSP_MAX_QUEUE_SIZE`: the batch processor's queue; see
/// [`OtlpBuilder::with_max_queue_size`](crate::otlp::OtlpBuilder::with_max_queue_size).
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub(crate) const OTEL_BSP_MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
/// `OTEL_SDK_DISABLED`: `true` turns trace and metric export off (the tables are
/// unaffected), whatever the code asks for.
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub(crate) const OTEL_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
/// `OTEL_TRACES_EXPORTER`: `otlp` exports (to the default endpoint if none is set), `none`
/// exports nothing; other exporters are not supported.
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub(crate) const OTEL_TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
/// `OTEL_METRICS_EXPORTER`: `otlp` exports metrics (to the default endpoint if none is
/// set), `none` exports none; any other value is a warning, and no metrics are exported.
/// See [`OtlpBuilder::with_metrics`](crate::otlp::OtlpBuilder::with_metrics).
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub(crate) const OTEL_METRICS_EXPORTER: &str = "OTEL_METRICS_EXPORTER";
/// `OTEL_METRIC_EXPORT_INTERVAL`: milliseconds between two metric exports; see
/// [`OtlpBuilder::with_metric_export_interval`].
///
/// [`OtlpBuilder::with_metric_export_interval`]:
///     crate::otlp::OtlpBuilder::with_metric_export_interval
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub(crate) const OTEL_METRIC_EXPORT_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";
/// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`: `cumulative` (default), `delta` or
/// `lowmemory`, in any case; see
/// [`OtlpBuilder::with_temporality`](crate::otlp::OtlpBuilder::with_temporality).
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub(crate) const OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: &str =
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";
/// `OTEL_TRACES_SAMPLER`: which traces are exported (`always_on`, `always_off`,
/// `traceidratio`, `parentbased_always_on`, `parentbased_always_off`,
/// `parentbased_traceidratio`).
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub(crate) const OTEL_TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
/// `OTEL_TRACES_SAMPLER_ARG`: the ratio of the `*traceidratio` samplers, in `[0, 1]`.
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub(crate) const OTEL_TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
/// `OTEL_SERVICE_NAME`: the exported `service.name`; see
/// [`OtlpBuilder::with_service_name`](crate::otlp::OtlpBuilder::with_service_name).
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub(crate) const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";

// TLS for OTLP/gRPC (feature `tls`).

/// `OTEL_EXPORTER_OTLP_CERTIFICATE`: a PEM file of the CA(s) that signed the collector's
/// certificate, trusted besides the system's and the webpki roots; see
/// [`OtlpBuilder::with_ca_certificate`](crate::otlp::OtlpBuilder::with_ca_certificate).
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub(crate) const OTEL_EXPORTER_OTLP_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
/// `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`: as `OTEL_EXPORTER_OTLP_CERTIFICATE`, for
/// traces (wins over it).
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub(crate) const OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: &str =
    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE";
/// `OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE`: as `OTEL_EXPORTER_OTLP_CERTIFICATE`, for
/// metrics (wins over it).
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub(crate) const OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE: &str =
    "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE";
/// `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`: this client's certificate (PEM), for mutual TLS.
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub(crate) const OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: &str =
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE";
/// `OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE`: as
/// [`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`], for traces.
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub(crate) const OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE: &str =
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE";
/// `OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE`: as
/// [`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`], for metrics.
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub(crate) const OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE: &str =
    "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE";
/// `OTEL_EXPORTER_OTLP_CLIENT_KEY`: this client's private key (PEM), for mutual TLS.
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub(crate) const OTEL_EXPORTER_OTLP_CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_CLIENT_KEY";
/// `OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY`: as `OTEL_EXPORTER_OTLP_CLIENT_KEY`, for traces.
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub(crate) const OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY: &str =
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY";
/// `OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY`: as `OTEL_EXPORTER_OTLP_CLIENT_KEY`, for
/// metrics.
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub(crate) const OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY: &str =
    "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY";
