//! Configuring an [`OmniMetricsLayer`]: sinks, clock, the online aggregates, the
//! Prometheus endpoint, the HTML report, and the `OMNI_METRICS_*` variables.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{OmniMetricsLayer, Parts};
use crate::aggregate::{self, MIN_LOG_INTERVAL};
use crate::clock::Clock;
use crate::env::MODEL_NAME_ENV;
use crate::env::{AUDIO_CONTINUITY_ENV, HTML_ENV, JSONL_ENV, LOG_INTERVAL_ENV, ONLINE_TABLES_ENV};
use crate::report::html::live::HtmlLane;
use crate::report::{ConsoleSink, JsonLinesSink, Sink};

/// Where the console tables ([`Builder::with_console`]) or the JSON-lines records
/// ([`Builder::with_jsonl`]) go.
///
/// Made from a `bool`: `true` is the default place (stderr for the console; for the
/// records, the file `OMNI_METRICS_JSONL` names, if set), `false` is nowhere; from a path
/// (`&str`, `String`, `&Path`, `PathBuf`): that file, appended to; or from any writer with
/// [`Destination::writer`].
///
/// ```
/// use omni_metrics::{Destination, OmniMetricsLayer};
/// let layer = OmniMetricsLayer::builder()
///     .with_console(Destination::writer(std::io::stdout())) // the tables on stdout
///     .with_jsonl(std::env::temp_dir().join("records.jsonl")) // records to a file
///     .build()?;
/// # drop(layer);
/// # Ok::<(), omni_metrics::BuildError>(())
/// ```
pub struct Destination(Place);

/// Where a [`Destination`] points.
enum Place {
    /// Stderr for the console, `OMNI_METRICS_JSONL` for the records.
    Default,
    Off,
    Path(PathBuf),
    Writer(Box<dyn Write + Send>),
}

impl Destination {
    /// Writes to `writer`: an in-memory buffer in a test, a pipe, a socket. It is written
    /// from the layer's writer thread, never the engine's.
    pub fn writer(writer: impl Write + Send + 'static) -> Self {
        Self(Place::Writer(Box::new(writer)))
    }
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Place::Default => f.write_str("Destination(default)"),
            Place::Off => f.write_str("Destination(off)"),
            Place::Path(path) => f.debug_tuple("Destination").field(path).finish(),
            Place::Writer(_) => f.write_str("Destination(writer)"),
        }
    }
}

impl From<bool> for Destination {
    /// `true`: the default place; `false`: nowhere.
    fn from(enabled: bool) -> Self {
        Self(if enabled { Place::Default } else { Place::Off })
    }
}

impl From<PathBuf> for Destination {
    /// The file at this path, appended to.
    fn from(path: PathBuf) -> Self {
        Self(Place::Path(path))
    }
}

impl From<&Path> for Destination {
    /// The file at this path, appended to.
    fn from(path: &Path) -> Self {
        Self(Place::Path(path.to_owned()))
    }
}

impl From<&PathBuf> for Destination {
    /// The file at this path, appended to.
    fn from(path: &PathBuf) -> Self {
        Self(Place::Path(path.clone()))
    }
}

impl From<&String> for Destination {
    /// The file at this path, appended to.
    fn from(path: &String) -> Self {
        Self(Place::Path(path.into()))
    }
}

impl From<String> for Destination {
    /// The file at this path, appended to.
    fn from(path: String) -> Self {
        Self(Place::Path(path.into()))
    }
}

impl From<&str> for Destination {
    /// The file at this path, appended to.
    fn from(path: &str) -> Self {
        Self(Place::Path(path.into()))
    }
}

/// Builds an [`OmniMetricsLayer`].
///
/// Defaults: console tables on stderr ([`Builder::with_console`]), per-request tables
/// included ([`Builder::with_request_tables`]), online requests' tables printed unless the
/// periodic line is on ([`Builder::with_online_tables`]), no periodic line
/// ([`Builder::with_periodic_log`]), JSON lines only if `OMNI_METRICS_JSONL` is set
/// ([`Builder::with_jsonl`]), the online aggregates on with a one-minute window
/// ([`Builder::with_summary_window`]), an HTML report of each run only if `OMNI_METRICS_HTML` is
/// set ([`Builder::with_html_path`]), a Prometheus endpoint only if
/// `OMNI_METRICS_PROMETHEUS_ADDR` is set (feature `prometheus`).
/// The `DEFAULT_*` constants below are the defaults of the setters that take a number.
///
/// The console, JSON lines and HTML report are written by background threads of the layer, fed by a
/// bounded queue ([`Builder::with_queue_capacity`]): the engine's threads never format or
/// write them, and never wait for them. Your own sinks ([`Builder::with_sink`]) are called
/// on the engine's threads.
///
/// ```
/// let layer = omni_metrics::OmniMetricsLayer::builder()
///     .with_console(false)
///     .with_jsonl(omni_metrics::Destination::writer(std::io::sink()))
///     .build()?;
/// # drop(layer);
/// # Ok::<(), omni_metrics::BuildError>(())
/// ```
#[doc = include_str!("../../docs/reference/configuration.md")]
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder {
    console: Place,
    request_tables: bool,
    /// [`Place::Default`]: `OMNI_METRICS_JSONL`'s file, if set.
    jsonl: Place,
    html_path: Option<PathBuf>,
    html_max_requests: usize,
    sinks: Vec<Box<dyn Sink>>,
    clock: Option<Arc<dyn Clock>>,
    trace_annotations: bool,
    queue_capacity: usize,
    /// The [`PrometheusSink`](crate::PrometheusSink)s added in code (the variable is then
    /// not read), told the model name at build.
    #[cfg(feature = "prometheus")]
    prometheus_in_code: Vec<crate::PrometheusSink>,
    /// Set in code (empty: none); else `OMNI_METRICS_MODEL_NAME`, else none.
    model_name: Option<Arc<str>>,
    /// Set in code; else `OMNI_METRICS_ONLINE_TABLES`, else on unless the periodic line is.
    online_tables: Option<bool>,
    /// Set in code (`ZERO`: off); else `OMNI_METRICS_LOG_INTERVAL`, else off.
    periodic_log: Option<Duration>,
    summary_window: Duration,
    aggregates: bool,
    /// Set in code; else `OMNI_METRICS_AUDIO_CONTINUITY_MS`, else the default.
    audio_thresholds_ms: Option<Vec<u64>>,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            console: Place::Default,
            request_tables: true,
            jsonl: Place::Default,
            html_path: None,
            html_max_requests: Self::DEFAULT_HTML_MAX_REQUESTS,
            sinks: Vec::new(),
            clock: None,
            trace_annotations: false,
            queue_capacity: Self::DEFAULT_QUEUE_CAPACITY,
            #[cfg(feature = "prometheus")]
            prometheus_in_code: Vec::new(),
            model_name: None,
            online_tables: None,
            periodic_log: None,
            summary_window: Self::DEFAULT_SUMMARY_WINDOW,
            aggregates: true,
            audio_thresholds_ms: None,
        }
    }
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("console", &Destination(clone_place(&self.console)))
            .field("request_tables", &self.request_tables)
            .field("jsonl", &Destination(clone_place(&self.jsonl)))
            .field("html_path", &self.html_path)
            .field("html_max_requests", &self.html_max_requests)
            .field("sinks", &self.sinks.len())
            .field("custom_clock", &self.clock.is_some())
            .field("queue_capacity", &self.queue_capacity)
            .field("online_tables", &self.online_tables)
            .field("periodic_log", &self.periodic_log)
            .field("summary_window", &self.summary_window)
            .field("model_name", &self.model_name)
            .field("aggregates", &self.aggregates)
            .field("audio_thresholds_ms", &self.audio_thresholds_ms)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// The default of [`Builder::with_summary_window`]: one minute.
    pub const DEFAULT_SUMMARY_WINDOW: Duration = aggregate::DEFAULT_SUMMARY_WINDOW;

    /// The default of [`Builder::with_audio_continuity_thresholds`]: 100 ms, the commonly
    /// cited audible gap of streaming speech (vLLM-Omni's default).
    pub const DEFAULT_AUDIO_CONTINUITY_MS: u64 = 100;

    /// The most audio continuity thresholds a layer judges streams at; more are dropped.
    pub const MAX_AUDIO_CONTINUITY_THRESHOLDS: usize = 8;

    /// The default of [`Builder::with_queue_capacity`], in records: 4,096.
    ///
    /// An online request makes two records (its summary and itself), a run one per request
    /// plus its summary. Rendering a request's tables takes the writer some 40 µs (release
    /// build), so 4,096 records absorb a stall of the console of about 2,000 requests (a
    /// paused terminal, a slow pipe, a disk hiccup) before records are dropped, while the
    /// queue stays small: 24 bytes a slot allocated up front, and at most a few MiB of
    /// queued records.
    pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;

    /// The default of [`Builder::with_html_max_requests`]: 100,000 requests of one run.
    ///
    /// The report holds each request of an open run in memory until the run closes, about
    /// 1.2 KiB per request of three stages and two edges (120 MiB at this cap); the page of
    /// 100,000 requests is some 60 MB.
    pub const DEFAULT_HTML_MAX_REQUESTS: usize = 100_000;

    /// Where the tables are printed ([`Destination`]): `true` (the default) on stderr,
    /// `false` nowhere, a path to append them to a file, or
    /// [`Destination::writer`]. They are written by the layer's writer thread.
    ///
    /// ```
    /// use omni_metrics::{Destination, OmniMetricsLayer};
    /// let quiet = OmniMetricsLayer::builder().with_console(false).build()?;
    /// let to_stdout = OmniMetricsLayer::builder()
    ///     .with_console(Destination::writer(std::io::stdout()))
    ///     .build()?;
    /// # drop((quiet, to_stdout));
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn with_console(mut self, destination: impl Into<Destination>) -> Self {
        self.console = destination.into().0;
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
    /// `OMNI_METRICS_LOG_INTERVAL`): a server under load then prints one line per interval instead
    /// of tables per request. This setting wins over `OMNI_METRICS_ONLINE_TABLES`, which wins over
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
    /// [the periodic line](crate::MetricsHandle#the-periodic-line) for its format.
    ///
    /// `Duration::ZERO` turns it off; a shorter interval than 10 ms is raised to it. It needs
    /// the console ([`Builder::with_console`]) and the aggregates
    /// ([`Builder::with_aggregates`]). Wins over `OMNI_METRICS_LOG_INTERVAL`; default: off. With
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

    /// The playback gaps a listener tolerates, in ms: each audio stage's stream is judged
    /// "continuity ok" at each threshold when no gap exceeds it
    /// ([`StageRequestStats::audio_continuity`](crate::stats::StageRequestStats::audio_continuity)).
    /// Default: [`DEFAULT_AUDIO_CONTINUITY_MS`](Self::DEFAULT_AUDIO_CONTINUITY_MS); wins over
    /// `OMNI_METRICS_AUDIO_CONTINUITY_MS`. Sorted and deduplicated;
    /// 0 is dropped, and so are thresholds beyond
    /// [`MAX_AUDIO_CONTINUITY_THRESHOLDS`](Self::MAX_AUDIO_CONTINUITY_THRESHOLDS).
    ///
    /// ```
    /// let layer = omni_metrics::OmniMetricsLayer::builder()
    ///     .with_console(false)
    ///     .with_audio_continuity_thresholds([100, 250])
    ///     .build()?;
    /// # drop(layer);
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn with_audio_continuity_thresholds(
        mut self,
        thresholds_ms: impl IntoIterator<Item = u64>,
    ) -> Self {
        self.audio_thresholds_ms = Some(thresholds_ms.into_iter().collect());
        self
    }

    /// The length of the window summary
    /// ([`MetricsHandle::window_summary`](crate::MetricsHandle::window_summary)) and of the
    /// periodic line. Default: [`DEFAULT_SUMMARY_WINDOW`](Self::DEFAULT_SUMMARY_WINDOW)
    /// (one minute); at least 1 ms.
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

    /// The model the layer serves: the `model_name` label of every metric of its Prometheus
    /// endpoint and OTLP metrics (vLLM's label; its sinks take it from the records, so a
    /// [`PrometheusSink`](crate::PrometheusSink) needs no setting of its own), and a
    /// `model_name` key in its request records and summaries. Wins over
    /// `OMNI_METRICS_MODEL_NAME`; an empty name is none. Default: none (no key; the label is
    /// `unknown`(crate::metrics::catalog::DEFAULT_MODEL_NAME), `unknown`).
    ///
    /// ```
    /// use omni_metrics::instrument::Request;
    /// use omni_metrics::testing::CaptureSink; // feature `testing`
    /// use tracing_subscriber::prelude::*;
    ///
    /// let capture = CaptureSink::new();
    /// let layer = omni_metrics::OmniMetricsLayer::builder()
    ///     .with_console(false)
    ///     .with_model_name("Qwen/Qwen3-Omni-30B-A3B-Instruct")
    ///     .with_sink(capture.clone())
    ///     .build()?;
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     Request::start("r-1").finish();
    /// });
    /// let model = capture.requests()[0].model_name.clone();
    /// assert_eq!(model.as_deref(), Some("Qwen/Qwen3-Omni-30B-A3B-Instruct"));
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn with_model_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.model_name = Some(name.into());
        self
    }

    /// Whether finished requests are added to the online aggregates (the cumulative and
    /// window summaries, and the periodic line). Default: `true`. Off, the summaries are
    /// all zero, there is no periodic line, and each engine thread saves a few histogram
    /// records per request and the aggregates' memory (see
    /// [Cost](crate::MetricsHandle#cost)).
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

    /// Where the JSON-lines records go ([`Destination`]): a path to append them to that
    /// file, [`Destination::writer`], `false` for none whatever `OMNI_METRICS_JSONL` says (a tool
    /// that replays or tests records of its own), or `true` (the default): the file
    /// `OMNI_METRICS_JSONL` names, none when it is unset. A path or writer set here wins over
    /// `OMNI_METRICS_JSONL`. They are written by the layer's writer thread.
    ///
    /// A file is created again when it is renamed or deleted (log rotation), and a write
    /// that fails (a full disk) leaves no partial line.
    ///
    /// ```
    /// let layer = omni_metrics::OmniMetricsLayer::builder()
    ///     .with_jsonl(std::env::temp_dir().join("records.jsonl"))
    ///     .build()?;
    /// # drop(layer);
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn with_jsonl(mut self, destination: impl Into<Destination>) -> Self {
        self.jsonl = destination.into().0;
        self
    }

    /// Writes an HTML report of each run to the file at `path` when the run closes (see
    /// [`report::html`](crate::report::html)): the tables, a timeline of every request, and
    /// histograms, in one self-contained page. Overrides `OMNI_METRICS_HTML`.
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
    /// Default: [`DEFAULT_HTML_MAX_REQUESTS`](Self::DEFAULT_HTML_MAX_REQUESTS) (100,000;
    /// about 120 MiB held until the run closes).
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
    /// for. At least 1, at most 1,048,576 (a queue's slots are allocated when the layer is
    /// built). Default: [`DEFAULT_QUEUE_CAPACITY`](Self::DEFAULT_QUEUE_CAPACITY) (4,096).
    ///
    /// ```
    /// let layer = omni_metrics::OmniMetricsLayer::builder()
    ///     .with_queue_capacity(65_536) // long bursts, a slow terminal
    ///     .build()?;
    /// # drop(layer);
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn with_queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.clamp(1, crate::queue::MAX_CAPACITY);
        self
    }

    /// Adds a sink; it sees every finished request and scope, on the engine's thread that
    /// finished it. Yours ([`Sink`]), or one of the crate's: the Prometheus endpoint
    /// ([`PrometheusSink`](crate::PrometheusSink), feature `prometheus`; adding one here
    /// means `OMNI_METRICS_PROMETHEUS_ADDR` is not read), the
    /// OTLP metrics ([`OtlpPipeline::metrics_sink`](crate::otlp::OtlpPipeline::metrics_sink),
    /// feature `otlp`).
    ///
    /// ```no_run
    /// use omni_metrics::{OmniMetricsLayer, PrometheusSink};
    /// // `GET http://127.0.0.1:9464/metrics`; port 0 picks a free port (`local_addr`).
    /// let prometheus = PrometheusSink::bind(PrometheusSink::DEFAULT_ADDR)?;
    /// let layer = OmniMetricsLayer::builder().with_sink(prometheus).build()?;
    /// # drop(layer);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_sink<S: Sink>(mut self, sink: S) -> Self {
        #[cfg(feature = "prometheus")]
        if let Some(prometheus) =
            (&sink as &dyn std::any::Any).downcast_ref::<crate::PrometheusSink>()
        {
            self.prometheus_in_code.push(prometheus.clone());
        }
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

    /// Times every span by `clock`, which only moves when the test moves it (feature
    /// `testing`; the [`Harness`](crate::testing::Harness) does this). Default: the
    /// monotonic clock (the CPU's invariant time-stamp counter, else the OS's).
    #[cfg(feature = "testing")]
    #[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
    pub fn with_clock(self, clock: crate::testing::ManualClock) -> Self {
        self.clock(clock)
    }

    /// Times every span by `clock`.
    pub(crate) fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Builds the layer.
    ///
    /// # Errors
    ///
    /// [`BuildError`] if the console's or the JSON-lines file (from
    /// [`Builder::with_console`], [`Builder::with_jsonl`] or `OMNI_METRICS_JSONL`) cannot be
    /// opened for appending, or (feature `prometheus`) the Prometheus address of
    /// `OMNI_METRICS_PROMETHEUS_ADDR` is not one or cannot be
    /// bound.
    #[allow(unused_mut)] // `sinks` grows only with the `prometheus` feature
    pub fn build(mut self) -> Result<OmniMetricsLayer, BuildError> {
        let mut warnings = Vec::new();
        let model_name = match self.model_name.take() {
            Some(name) => Some(name).filter(|name| !name.trim().is_empty()),
            None => env_model_name(&mut warnings),
        };
        #[cfg(feature = "prometheus")]
        if self.prometheus_in_code.is_empty() {
            if let Some(sink) = crate::PrometheusSink::configured(None)
                .map_err(|e| BuildError(BuildErrorKind::Prometheus(e)))?
            {
                self.prometheus_in_code.push(sink.clone());
                self.sinks.push(Box::new(sink));
            }
        }
        // The label-less families' zero series are the model's from the start.
        #[cfg(feature = "prometheus")]
        for prometheus in &self.prometheus_in_code {
            prometheus.serve_model(model_name.as_deref());
        }
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
        let console_writer: Option<Box<dyn Write + Send>> = match self.console {
            Place::Off => None,
            Place::Default => Some(Box::new(io::stderr())),
            Place::Writer(writer) => Some(writer),
            Place::Path(path) => match crate::report::open_append(&path) {
                Ok(file) => Some(Box::new(file)),
                Err(source) => return Err(BuildError(BuildErrorKind::Console { path, source })),
            },
        };
        let console = console_writer.map(|writer| ConsoleSink::new(writer, self.request_tables));
        let jsonl = match self.jsonl {
            Place::Off => None,
            Place::Writer(writer) => Some(JsonLinesSink::new(writer)),
            Place::Path(path) => Some(open_append(path, JsonlOrigin::Code)?),
            Place::Default => match std::env::var_os(JSONL_ENV) {
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
            model_name,
            trace_annotations: self.trace_annotations,
            aggregates: self.aggregates,
            summary_window: self.summary_window,
            audio_thresholds_ms: audio_thresholds(self.audio_thresholds_ms, &mut warnings),
            warnings,
        }))
    }
}

/// `OMNI_METRICS_MODEL_NAME`, read and trimmed; empty is none, and a value that is not UTF-8 is
/// noted in `warnings` (and means none).
fn env_model_name(warnings: &mut Vec<String>) -> Option<Arc<str>> {
    match std::env::var(MODEL_NAME_ENV) {
        Ok(name) => Some(name.trim()).filter(|n| !n.is_empty()).map(Arc::from),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(raw)) => {
            warnings.push(format!(
                "{MODEL_NAME_ENV}={raw:?} is not UTF-8: no model name is set (the metrics' \
                 model_name is `{}`)",
                crate::metrics::catalog::DEFAULT_MODEL_NAME
            ));
            None
        }
    }
}

/// `OMNI_METRICS_LOG_INTERVAL`, read; a value that cannot be read is noted in `warnings` (and
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

/// The audio continuity thresholds: set in code, else `OMNI_METRICS_AUDIO_CONTINUITY_MS` (a value that
/// cannot be read is noted in `warnings`), else the default; sorted, deduplicated, without
/// 0, at most [`Builder::MAX_AUDIO_CONTINUITY_THRESHOLDS`].
fn audio_thresholds(in_code: Option<Vec<u64>>, warnings: &mut Vec<String>) -> Box<[u64]> {
    let default = || vec![Builder::DEFAULT_AUDIO_CONTINUITY_MS];
    let mut thresholds = in_code.unwrap_or_else(|| {
        let Some(value) = env_text(AUDIO_CONTINUITY_ENV).filter(|v| !v.trim().is_empty()) else {
            return default();
        };
        let parsed: Result<Vec<u64>, _> = value
            .split(',')
            .map(|t| t.trim().trim_end_matches("ms").trim().parse::<u64>())
            .collect();
        match parsed {
            Ok(thresholds) => thresholds,
            Err(_) => {
                warnings.push(format!(
                    "{AUDIO_CONTINUITY_ENV}={value:?} is not a list of milliseconds: the \
                     default ({} ms) is used. Use e.g. `100` or `100,250`",
                    Builder::DEFAULT_AUDIO_CONTINUITY_MS
                ));
                default()
            }
        }
    });
    thresholds.retain(|t| *t > 0);
    thresholds.sort_unstable();
    thresholds.dedup();
    thresholds.truncate(Builder::MAX_AUDIO_CONTINUITY_THRESHOLDS);
    thresholds.into_boxed_slice()
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

/// The layer could not be built: its JSON-lines or console file cannot be opened, or
/// (feature `prometheus`) its Prometheus endpoint cannot be served. The message says what
/// to do.
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
    #[error(
        "cannot open the console's file `{}` for appending: {source}; check that its directory exists and is writable",
        path.display()
    )]
    Console {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[cfg(feature = "prometheus")]
    #[error(transparent)]
    Prometheus(crate::PrometheusError),
}

impl BuildError {
    /// The JSON-lines or console file that could not be opened, if that was the error.
    pub fn path(&self) -> Option<&std::path::Path> {
        match &self.0 {
            BuildErrorKind::Jsonl { path, .. } | BuildErrorKind::Console { path, .. } => Some(path),
            #[cfg(feature = "prometheus")]
            BuildErrorKind::Prometheus(_) => None,
        }
    }

    /// The Prometheus endpoint's error, if that was the error (the address of
    /// `OMNI_METRICS_PROMETHEUS_ADDR` is not one or cannot be
    /// bound).
    #[cfg(feature = "prometheus")]
    pub fn prometheus(&self) -> Option<&crate::PrometheusError> {
        match &self.0 {
            BuildErrorKind::Prometheus(e) => Some(e),
            BuildErrorKind::Jsonl { .. } | BuildErrorKind::Console { .. } => None,
        }
    }
}

/// A variable's value, with bytes that are not UTF-8 replaced (so that they are reported as
/// a bad value, not ignored).
fn env_text(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

/// A copy of `place` for `Debug` (a writer is shown, not copied).
fn clone_place(place: &Place) -> Place {
    match place {
        Place::Default => Place::Default,
        Place::Off => Place::Off,
        Place::Path(path) => Place::Path(path.clone()),
        Place::Writer(_) => Place::Writer(Box::new(io::sink())),
    }
}
