//! Configuring an [`OmniMetricsLayer`]: sinks, clock, the online aggregates, the
//! Prometheus endpoint, the HTML report, and the `OMNI_METRICS_*` variables.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{OmniMetricsLayer, Parts};
use crate::aggregate::{self, DEFAULT_SUMMARY_WINDOW, MIN_LOG_INTERVAL};
use crate::clock::Clock;
use crate::report::html::live::HtmlLane;
use crate::report::html::{DEFAULT_HTML_MAX_REQUESTS, HTML_ENV};
use crate::report::{ConsoleSink, DEFAULT_QUEUE_CAPACITY, JsonLinesSink, Sink};

/// Environment variable: write JSON-lines records to this file (appending), unless
/// [`Builder::with_jsonl_path`] or [`Builder::with_jsonl_writer`] was called.
pub const JSONL_ENV: &str = "OMNI_METRICS_JSONL";

/// Environment variable: print the periodic line ([`Builder::with_periodic_log`]) every
/// interval: `10s`, `500ms`, `1.5s`, `2m`, a bare number of seconds; `0` or `off` for none.
/// [`Builder::with_periodic_log`] wins over it; unset, there is no periodic line. A value
/// that cannot be read is a warning (target `omni_metrics::diagnostics`, when the layer
/// joins a subscriber) naming the variable, and there is no periodic line.
///
/// ```
/// assert_eq!(omni_metrics::LOG_INTERVAL_ENV, "OMNI_METRICS_LOG_INTERVAL");
/// ```
pub const LOG_INTERVAL_ENV: &str = "OMNI_METRICS_LOG_INTERVAL";

/// Environment variable: whether online requests print their tables on the console
/// ([`Builder::with_online_tables`]): `1`, `true`, `on`, `yes` or `0`, `false`, `off`, `no`.
/// [`Builder::with_online_tables`] wins over it; unset, online tables are printed unless
/// the periodic line is on. Another value is a warning naming the variable, and the
/// default applies.
///
/// ```
/// assert_eq!(omni_metrics::ONLINE_TABLES_ENV, "OMNI_METRICS_ONLINE_TABLES");
/// ```
pub const ONLINE_TABLES_ENV: &str = "OMNI_METRICS_ONLINE_TABLES";

/// Builds an [`OmniMetricsLayer`].
///
/// Defaults: console tables on stderr ([`Builder::with_console`]), per-request tables
/// included ([`Builder::with_request_tables`]), online requests' tables printed unless the
/// periodic line is on ([`Builder::with_online_tables`]), no periodic line
/// ([`Builder::with_periodic_log`]), JSON lines only if [`JSONL_ENV`] is set, the online
/// aggregates on with a one-minute window ([`Builder::with_summary_window`]), an HTML
/// report of each run only if [`HTML_ENV`] is set, the monotonic clock.
///
/// The console, JSON lines and HTML report are written by background threads of the layer, fed by a
/// bounded queue ([`Builder::with_queue_capacity`]): the engine's threads never format or
/// write them, and never wait for them. Your own sinks ([`Builder::with_sink`]) are called
/// on the engine's threads.
///
/// ```
/// let layer = omni_metrics::OmniMetricsLayer::builder()
///     .with_console(false)
///     .with_jsonl_writer(std::io::sink())
///     .build()?;
/// # drop(layer);
/// # Ok::<(), omni_metrics::BuildError>(())
/// ```
#[doc = include_str!("../../docs/reference/configuration.md")]
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder {
    console: bool,
    console_writer: Option<Box<dyn Write + Send>>,
    request_tables: bool,
    jsonl_path: Option<PathBuf>,
    jsonl_writer: Option<Box<dyn Write + Send>>,
    /// `false`: no JSON lines, whatever [`JSONL_ENV`] says.
    jsonl: bool,
    html_path: Option<PathBuf>,
    html_max_requests: usize,
    sinks: Vec<Box<dyn Sink>>,
    clock: Option<Arc<dyn Clock>>,
    trace_annotations: bool,
    queue_capacity: usize,
    #[cfg(feature = "prometheus")]
    prometheus: Option<String>,
    /// Set in code; else [`ONLINE_TABLES_ENV`], else on unless the periodic line is.
    online_tables: Option<bool>,
    /// Set in code (`ZERO`: off); else [`LOG_INTERVAL_ENV`], else off.
    periodic_log: Option<Duration>,
    summary_window: Duration,
    aggregates: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            console: true,
            console_writer: None,
            request_tables: true,
            jsonl_path: None,
            jsonl_writer: None,
            jsonl: true,
            html_path: None,
            html_max_requests: DEFAULT_HTML_MAX_REQUESTS,
            sinks: Vec::new(),
            clock: None,
            trace_annotations: false,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            #[cfg(feature = "prometheus")]
            prometheus: None,
            online_tables: None,
            periodic_log: None,
            summary_window: DEFAULT_SUMMARY_WINDOW,
            aggregates: true,
        }
    }
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("console", &self.console)
            .field("request_tables", &self.request_tables)
            .field("jsonl_path", &self.jsonl_path)
            .field("jsonl_writer", &self.jsonl_writer.is_some())
            .field("html_path", &self.html_path)
            .field("html_max_requests", &self.html_max_requests)
            .field("sinks", &self.sinks.len())
            .field("custom_clock", &self.clock.is_some())
            .field("queue_capacity", &self.queue_capacity)
            .field("online_tables", &self.online_tables)
            .field("periodic_log", &self.periodic_log)
            .field("summary_window", &self.summary_window)
            .field("aggregates", &self.aggregates)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// Prints the tables on the console (stderr unless [`Builder::with_console_writer`]).
    /// Default: `true`.
    pub fn with_console(mut self, enabled: bool) -> Self {
        self.console = enabled;
        self
    }

    /// Prints the tables to `writer` instead of stderr (and enables the console sink).
    pub fn with_console_writer(mut self, writer: impl Write + Send + 'static) -> Self {
        self.console = true;
        self.console_writer = Some(Box::new(writer));
        self
    }

    /// Whether the console also shows each request's E2E, stage and transfer tables (not only
    /// the Overall Summary). Default: `true`, as vLLM-Omni's `--log-stats`.
    ///
    /// For online requests, see also [`Builder::with_online_tables`], which turns off their
    /// one-request summaries too.
    pub fn with_request_tables(mut self, enabled: bool) -> Self {
        self.request_tables = enabled;
        self
    }

    /// Whether an online request (one with no `omni.run`) prints its tables on the console
    /// when it finishes: its one-request Overall Summary, and its request tables when
    /// [`Builder::with_request_tables`] is on. Runs are not affected (their request tables
    /// and summary still print), nor are the JSON lines and your own sinks, which still get
    /// every record.
    ///
    /// Default: on, unless the periodic line is on ([`Builder::with_periodic_log`] or
    /// [`LOG_INTERVAL_ENV`]): a server under load then prints one line per interval instead
    /// of tables per request. This setting wins over [`ONLINE_TABLES_ENV`], which wins over
    /// the default.
    ///
    /// ```
    /// // A server: no tables per request, one line every 10 s, summaries on demand.
    /// let layer = omni_metrics::OmniMetricsLayer::builder()
    ///     .with_online_tables(false)
    ///     .with_periodic_log(std::time::Duration::from_secs(10))
    ///     .build()?;
    /// # drop(layer);
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn with_online_tables(mut self, enabled: bool) -> Self {
        self.online_tables = Some(enabled);
        self
    }

    /// Prints one line every `interval` on the console (where the tables go): the window
    /// summary's requests by status, request and token rates, the p50 and p99 of `e2e_total_ms`
    /// and the requests open now, as vLLM prints its throughput every 10 s. Nothing is
    /// printed while no request finished in the window and none is open. See
    /// [`crate::aggregate`] for the line's format.
    ///
    /// `Duration::ZERO` turns it off; a shorter interval than
    /// [`MIN_LOG_INTERVAL`](crate::aggregate::MIN_LOG_INTERVAL) is raised to it. It needs
    /// the console ([`Builder::with_console`]) and the aggregates
    /// ([`Builder::with_aggregates`]). Wins over [`LOG_INTERVAL_ENV`]; default: off. With
    /// the line on, online requests' tables default to off
    /// ([`Builder::with_online_tables`]).
    ///
    /// The line is made and written by the console's writer thread; it stops when the
    /// [`OmniGuard`](crate::OmniGuard) shuts down or drops, and with the layer.
    ///
    /// ```
    /// let layer = omni_metrics::OmniMetricsLayer::builder()
    ///     .with_periodic_log(std::time::Duration::from_secs(10))
    ///     .build()?;
    /// # drop(layer);
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn with_periodic_log(mut self, interval: impl Into<Duration>) -> Self {
        self.periodic_log = Some(interval.into());
        self
    }

    /// The length of the window summary
    /// ([`MetricsHandle::window_summary`](crate::MetricsHandle::window_summary)) and of the
    /// periodic line. Default: [`DEFAULT_SUMMARY_WINDOW`] (one minute); at least
    /// [`MIN_SUMMARY_WINDOW`](crate::aggregate::MIN_SUMMARY_WINDOW).
    ///
    /// ```
    /// let layer = omni_metrics::OmniMetricsLayer::builder()
    ///     .with_console(false)
    ///     .with_summary_window(std::time::Duration::from_secs(10))
    ///     .build()?;
    /// assert_eq!(layer.handle().summary_window().as_secs(), 10);
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn with_summary_window(mut self, window: impl Into<Duration>) -> Self {
        self.summary_window = window.into();
        self
    }

    /// Whether finished requests are added to the online aggregates (the cumulative and
    /// window summaries, and the periodic line). Default: `true`. Off, the summaries are
    /// all zero, there is no periodic line, and each engine thread saves a few histogram
    /// records per request and the aggregates' memory (see [`crate::aggregate`]).
    ///
    /// ```
    /// let layer = omni_metrics::OmniMetricsLayer::builder()
    ///     .with_console(false)
    ///     .with_aggregates(false)
    ///     .build()?;
    /// assert_eq!(layer.handle().cumulative_summary().e2e_requests, 0);
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn with_aggregates(mut self, enabled: bool) -> Self {
        self.aggregates = enabled;
        self
    }

    /// Appends JSON-lines records to the file at `path`. Overrides [`JSONL_ENV`].
    ///
    /// The file is created again when it is renamed or deleted (log rotation), and a write
    /// that fails (a full disk) leaves no partial line.
    pub fn with_jsonl_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.jsonl_path = Some(path.into());
        self.jsonl_writer = None;
        self
    }

    /// `false`: no JSON-lines records at all, whatever [`JSONL_ENV`] says (a tool that
    /// replays or tests records of its own); `true` (the default): records go where
    /// [`Builder::with_jsonl_path`], [`Builder::with_jsonl_writer`] or [`JSONL_ENV`] say.
    ///
    /// ```
    /// let layer = omni_metrics::OmniMetricsLayer::builder().with_jsonl(false).build()?;
    /// # drop(layer);
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn with_jsonl(mut self, enabled: bool) -> Self {
        self.jsonl = enabled;
        self
    }

    /// Writes JSON-lines records to `writer`. Overrides [`JSONL_ENV`].
    pub fn with_jsonl_writer(mut self, writer: impl Write + Send + 'static) -> Self {
        self.jsonl_writer = Some(Box::new(writer));
        self.jsonl_path = None;
        self
    }

    /// Writes an HTML report of each run to the file at `path` when the run closes (see
    /// [`report::html`](crate::report::html)): the tables, a timeline of every request, and
    /// histograms, in one self-contained page. Overrides [`HTML_ENV`].
    ///
    /// `{scope}` in the path is replaced by the run's scope (made safe as a file name), so
    /// each run gets its own file; without it each run replaces the file, which is written
    /// whole under a temporary name and renamed. Rendering and writing run on a thread of
    /// the layer, never the engine's. A run's requests are held in memory until it closes,
    /// at most [`Builder::with_html_max_requests`] of them (about 1.2 KiB each). Online
    /// requests (no `omni.run`) make no report: call
    /// [`report::html::render`](crate::report::html::render) with requests you collect. A
    /// write that fails is warned about once, naming the file, and counted in
    /// [`MetricsHandle::sink_losses`](crate::MetricsHandle::sink_losses); it never fails the
    /// engine.
    ///
    /// ```
    /// let layer = omni_metrics::OmniMetricsLayer::builder()
    ///     .with_html_path(std::env::temp_dir().join("omni-report-{scope}.html"))
    ///     .build()?;
    /// # drop(layer);
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn with_html_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.html_path = Some(path.into());
        self
    }

    /// The most requests of one run the HTML report keeps; the page counts those left out.
    /// Default: [`DEFAULT_HTML_MAX_REQUESTS`] (100,000; about 120 MiB held until the run
    /// closes).
    ///
    /// ```
    /// let layer = omni_metrics::OmniMetricsLayer::builder()
    ///     .with_html_path("report.html")
    ///     .with_html_max_requests(20_000)
    ///     .build()?;
    /// # drop(layer);
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn with_html_max_requests(mut self, max_requests: usize) -> Self {
        self.html_max_requests = max_requests;
        self
    }

    /// How many finished records (a request's, a summary) may wait for the console and
    /// JSON-lines writer thread; more are dropped and counted
    /// ([`MetricsHandle::sink_losses`](crate::MetricsHandle::sink_losses)), never waited
    /// for. At least 1. Default: [`DEFAULT_QUEUE_CAPACITY`] (4,096).
    ///
    /// ```
    /// let layer = omni_metrics::OmniMetricsLayer::builder()
    ///     .with_queue_capacity(65_536) // long bursts, a slow terminal
    ///     .build()?;
    /// # drop(layer);
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn with_queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// Adds a sink of your own; it sees every finished request and scope.
    pub fn with_sink(mut self, sink: impl Sink) -> Self {
        self.sinks.push(Box::new(sink));
        self
    }

    /// Puts the computed numbers on the exported OpenTelemetry spans: gen, post-processing and
    /// queue time on stage spans, transfer times and kbytes on transfer spans, the
    /// RequestE2EStats figures and each stage's gen time on request spans. Needs the
    /// `tracing-opentelemetry` layer in the same subscriber (`Install` sets this when it
    /// exports traces). Default: `false`.
    #[cfg(feature = "otlp")]
    pub fn with_trace_annotations(mut self, enabled: bool) -> Self {
        self.trace_annotations = enabled;
        self
    }

    /// Serves the `vllm_omni:*` metrics as OpenMetrics on `GET http://{addr}/metrics`, from a
    /// thread of the layer's ([`PrometheusSink`](crate::PrometheusSink)). `addr` is
    /// `host:port`, such as [`DEFAULT_PROMETHEUS_ADDR`](crate::DEFAULT_PROMETHEUS_ADDR)
    /// (`127.0.0.1:9464`); a bare `port` means `127.0.0.1:port`. Overrides
    /// [`PROMETHEUS_ADDR_ENV`](crate::PROMETHEUS_ADDR_ENV) (`OMNI_METRICS_PROMETHEUS_ADDR`).
    /// Default: no endpoint unless that variable is set.
    ///
    /// To know the port chosen for port 0, bind a
    /// [`PrometheusSink`](crate::PrometheusSink) yourself and add it with
    /// [`Builder::with_sink`].
    ///
    /// ```no_run
    /// let layer = omni_metrics::OmniMetricsLayer::builder()
    ///     .with_prometheus(omni_metrics::DEFAULT_PROMETHEUS_ADDR)
    ///     .build()?;
    /// # drop(layer);
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    #[cfg(feature = "prometheus")]
    pub fn with_prometheus(mut self, addr: impl Into<String>) -> Self {
        self.prometheus = Some(addr.into());
        self
    }

    /// Uses `clock` for span timestamps (a [`crate::clock::ManualClock`] in tests).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Builds the layer.
    ///
    /// # Errors
    ///
    /// [`BuildError`] if the JSON-lines file (from [`Builder::with_jsonl_path`] or
    /// [`JSONL_ENV`]) cannot be opened for appending, or (feature `prometheus`) the
    /// Prometheus address (from `with_prometheus` or `OMNI_METRICS_PROMETHEUS_ADDR`) is not
    /// one or cannot be bound.
    #[allow(unused_mut)] // `sinks` grows only with the `prometheus` feature
    pub fn build(mut self) -> Result<OmniMetricsLayer, BuildError> {
        #[cfg(feature = "prometheus")]
        if let Some(sink) = crate::PrometheusSink::configured(self.prometheus.take())
            .map_err(|e| BuildError(BuildErrorKind::Prometheus(e)))?
        {
            self.sinks.push(Box::new(sink));
        }
        let mut warnings = Vec::new();
        let periodic = match self.periodic_log {
            Some(interval) => Some(interval),
            None => env_interval(&mut warnings),
        }
        .filter(|interval| !interval.is_zero())
        .map(|interval| interval.max(MIN_LOG_INTERVAL));
        let online_tables = match self.online_tables {
            Some(enabled) => enabled,
            None => env_switch(ONLINE_TABLES_ENV, &mut warnings).unwrap_or(periodic.is_none()),
        };
        let console = self.console.then(|| {
            let writer = self
                .console_writer
                .unwrap_or_else(|| Box::new(io::stderr()));
            ConsoleSink::new(writer, self.request_tables)
        });
        let jsonl = match (self.jsonl_writer, self.jsonl_path) {
            _ if !self.jsonl => None,
            (Some(writer), _) => Some(JsonLinesSink::new(writer)),
            (None, Some(path)) => Some(open_append(path, JsonlOrigin::Code)?),
            (None, None) => match std::env::var_os(JSONL_ENV) {
                Some(path) if !path.is_empty() => {
                    Some(open_append(PathBuf::from(path), JsonlOrigin::Env)?)
                }
                _ => None,
            },
        };
        let html_path = self.html_path.or_else(|| {
            std::env::var_os(HTML_ENV)
                .filter(|path| !path.is_empty())
                .map(PathBuf::from)
        });
        let html = html_path.map(|path| HtmlLane::new(path, self.html_max_requests));
        Ok(OmniMetricsLayer::from_parts(Parts {
            clock: self.clock,
            sinks: self.sinks,
            console,
            online_tables,
            periodic: periodic.filter(|_| self.aggregates),
            jsonl,
            html,
            queue_capacity: self.queue_capacity,
            trace_annotations: self.trace_annotations,
            aggregates: self.aggregates,
            summary_window: self.summary_window,
            warnings,
        }))
    }
}

/// [`LOG_INTERVAL_ENV`], read; a value that cannot be read is noted in `warnings` (and
/// means off).
fn env_interval(warnings: &mut Vec<String>) -> Option<Duration> {
    let value = env_text(LOG_INTERVAL_ENV)?;
    if value.trim().is_empty() {
        return None;
    }
    match aggregate::parse_interval(&value) {
        Ok(interval) => interval,
        Err(aggregate::BadInterval) => {
            warnings.push(format!(
                "{LOG_INTERVAL_ENV}={value:?} is not an interval: no periodic line is printed. \
                 Use a number with a unit (`10s`, `500ms`, `1.5s`, `2m`), or `0` for none"
            ));
            None
        }
    }
}

/// A yes/no variable, read; a value that cannot be read is noted in `warnings` (and means
/// unset).
fn env_switch(name: &str, warnings: &mut Vec<String>) -> Option<bool> {
    let value = env_text(name)?;
    match value.trim().to_ascii_lowercase().as_str() {
        "" => None,
        "1" | "true" | "on" | "yes" => Some(true),
        "0" | "false" | "off" | "no" => Some(false),
        _ => {
            warnings.push(format!(
                "{name}={value:?} is neither on nor off: the default is used. Use `1` or `0`"
            ));
            None
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum JsonlOrigin {
    Code,
    Env,
}

fn open_append(path: PathBuf, origin: JsonlOrigin) -> Result<JsonLinesSink, BuildError> {
    match JsonLinesSink::append_to(&path) {
        Ok(sink) => Ok(sink),
        Err(source) => Err(BuildError(BuildErrorKind::Jsonl {
            path,
            from_env: matches!(origin, JsonlOrigin::Env),
            source,
        })),
    }
}

/// The layer could not be built: its JSON-lines file cannot be opened, or (feature
/// `prometheus`) its Prometheus endpoint cannot be served. The message says what to do.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct BuildError(BuildErrorKind);

#[derive(Debug, thiserror::Error)]
enum BuildErrorKind {
    #[error(
        "cannot open the JSON-lines file `{}`{} for appending: {source}; check that its directory exists and is writable{}",
        path.display(),
        if *from_env { " (from OMNI_METRICS_JSONL)" } else { "" },
        if *from_env { ", or unset OMNI_METRICS_JSONL" } else { "" }
    )]
    Jsonl {
        path: PathBuf,
        from_env: bool,
        #[source]
        source: io::Error,
    },
    #[cfg(feature = "prometheus")]
    #[error(transparent)]
    Prometheus(crate::PrometheusError),
}

impl BuildError {
    /// The JSON-lines file that could not be opened, if that was the error.
    pub fn path(&self) -> Option<&std::path::Path> {
        match &self.0 {
            BuildErrorKind::Jsonl { path, .. } => Some(path),
            #[cfg(feature = "prometheus")]
            BuildErrorKind::Prometheus(_) => None,
        }
    }

    /// The Prometheus endpoint's error, if that was the error.
    #[cfg(feature = "prometheus")]
    pub fn prometheus(&self) -> Option<&crate::PrometheusError> {
        match &self.0 {
            BuildErrorKind::Prometheus(e) => Some(e),
            BuildErrorKind::Jsonl { .. } => None,
        }
    }
}

/// A variable's value, with bytes that are not UTF-8 replaced (so that they are reported as
/// a bad value, not ignored).
fn env_text(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}
