//! Configuring an [`OmniMetricsLayer`]: sinks, clock, and the `OMNI_METRICS_JSONL` and
//! `OMNI_METRICS_HTML` variables.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use super::OmniMetricsLayer;
use crate::clock::Clock;
use crate::report::html::live::HtmlLane;
use crate::report::html::{DEFAULT_HTML_MAX_REQUESTS, HTML_ENV};
use crate::report::writer::Writer;
use crate::report::{ConsoleSink, DEFAULT_QUEUE_CAPACITY, JsonLinesSink, Sink};

/// Environment variable: write JSON-lines records to this file (appending), unless
/// [`Builder::with_jsonl_path`] or [`Builder::with_jsonl_writer`] was called.
pub const JSONL_ENV: &str = "OMNI_METRICS_JSONL";

/// Builds an [`OmniMetricsLayer`].
///
/// Defaults: console tables on stderr ([`Builder::with_console`]), per-request tables
/// included ([`Builder::with_request_tables`]), JSON lines only if [`JSONL_ENV`] is set, an
/// HTML report of each run only if [`HTML_ENV`] is set, the monotonic clock.
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
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder {
    console: bool,
    console_writer: Option<Box<dyn Write + Send>>,
    request_tables: bool,
    jsonl_path: Option<PathBuf>,
    jsonl_writer: Option<Box<dyn Write + Send>>,
    html_path: Option<PathBuf>,
    html_max_requests: usize,
    sinks: Vec<Box<dyn Sink>>,
    clock: Option<Arc<dyn Clock>>,
    trace_annotations: bool,
    queue_capacity: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            console: true,
            console_writer: None,
            request_tables: true,
            jsonl_path: None,
            jsonl_writer: None,
            html_path: None,
            html_max_requests: DEFAULT_HTML_MAX_REQUESTS,
            sinks: Vec::new(),
            clock: None,
            trace_annotations: false,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
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
            .finish()
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
    pub fn with_request_tables(mut self, enabled: bool) -> Self {
        self.request_tables = enabled;
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
    /// [`JSONL_ENV`]) cannot be opened for appending.
    pub fn build(self) -> Result<OmniMetricsLayer, BuildError> {
        let console = self.console.then(|| {
            let writer = self
                .console_writer
                .unwrap_or_else(|| Box::new(io::stderr()));
            ConsoleSink::new(writer, self.request_tables)
        });
        let jsonl = match (self.jsonl_writer, self.jsonl_path) {
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
        let writer = Writer::start(console, jsonl, html, self.queue_capacity);
        Ok(OmniMetricsLayer::from_parts(
            self.clock,
            self.sinks,
            writer,
            self.trace_annotations,
        ))
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
        Err(source) => Err(BuildError {
            path,
            from_env: matches!(origin, JsonlOrigin::Env),
            source,
        }),
    }
}

/// The layer could not be built: its JSON-lines file cannot be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot open the JSON-lines file `{}`{} for appending: {source}; check that its directory exists and is writable{}",
    path.display(),
    if *from_env { " (from OMNI_METRICS_JSONL)" } else { "" },
    if *from_env { ", or unset OMNI_METRICS_JSONL" } else { "" }
)]
pub struct BuildError {
    path: PathBuf,
    from_env: bool,
    #[source]
    source: io::Error,
}

impl BuildError {
    /// The file that could not be opened.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}
