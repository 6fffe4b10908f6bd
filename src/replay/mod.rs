//! Rebuilding the tables from trace files: the `omni-metrics report` command as a library.
//!
//! [`Spans`] reads OTLP trace data as the Collector's file exporter writes it (JSON lines,
//! length-prefixed protobuf, either zstd- or gzip-compressed) from any number of files, of
//! any number of processes and hosts; [`Replay`] groups the spans by trace and replays them
//! through an [`OmniMetricsLayer`](crate::OmniMetricsLayer) on a
//! [`ManualClock`], so that every table, record and distribution is computed by the layer
//! itself, exactly as it is live. Feature `replay`.
//!
//! ```
//! use omni_metrics::replay::{InputFormat, Replay, Spans};
//! use omni_metrics::report::CaptureSink;
//!
//! // One exported request with one stage, as another SDK may write it.
//! let line = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
//!   {"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331",
//!    "name":"omni.request","startTimeUnixNano":"1000000000","endTimeUnixNano":"1050000000",
//!    "attributes":[{"key":"request_id","value":{"stringValue":"r-1"}}]},
//!   {"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"00f067aa0ba902b7",
//!    "parentSpanId":"b7ad6b7169203331","name":"omni.stage",
//!    "startTimeUnixNano":"1010000000","endTimeUnixNano":"1040000000",
//!    "attributes":[{"key":"stage_id","value":{"intValue":"0"}},
//!                  {"key":"num_tokens_in","value":{"intValue":"12"}}]}]}]}]}"#;
//! let mut spans = Spans::new();
//! let read = spans.read("traces.json", line.replace('\n', "").as_bytes(), InputFormat::Auto, &mut |e| {
//!     eprintln!("{e}")
//! });
//! assert_eq!((read.spans, read.errors), (2, 0));
//!
//! let capture = CaptureSink::new();
//! let stats = Replay::new().with_sink(capture.clone()).run(&spans);
//! assert_eq!(stats.requests, 1);
//! let request = &capture.requests()[0];
//! assert_eq!(request.e2e_total_ms, 50.0);
//! assert_eq!(request.stages[0].stage_gen_time_ms, 30.0);
//! assert_eq!(request.trace_id.as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
//! ```
//!
//! What is rebuilt and what is not is said in the crate docs ("Report command").

mod engine;
mod input;
mod model;
mod otlp;

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use tracing_subscriber::layer::SubscriberExt as _;

pub use input::{FileSummary, InputFormat, MAX_RECORD_BYTES, ReadError};

use crate::clock::ManualClock;
use crate::report::Sink;

/// Every span read so far, from every file: a request whose stages were exported by
/// another process (another file) is whole once both files are read.
///
/// A span read twice (the same file given twice, a collector that exported a batch again)
/// is kept once.
#[derive(Debug, Default)]
pub struct Spans {
    spans: Vec<model::SpanRec>,
    seen: HashSet<(u128, u64)>,
    duplicates: u64,
}

impl Spans {
    /// No spans yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many distinct spans were read (of the convention or not).
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether no span was read.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Spans read again (same trace and span id) and left out.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// How many distinct traces the spans belong to.
    pub fn traces(&self) -> usize {
        self.spans
            .iter()
            .map(|s| s.trace_id)
            .collect::<HashSet<_>>()
            .len()
    }

    /// Reads the trace data of `reader`, named `file` in errors. Compression (gzip, zstd) is
    /// recognized from the content, and so is the encoding with [`InputFormat::Auto`].
    ///
    /// A record (line, message) that cannot be read is handed to `on_error` and the rest is
    /// still read; a broken compressed stream or length prefix ends the file there (the
    /// error says so). Never panics, never fails as a whole.
    pub fn read(
        &mut self,
        file: &str,
        reader: impl Read,
        format: InputFormat,
        on_error: &mut dyn FnMut(ReadError),
    ) -> FileSummary {
        let Spans {
            spans,
            seen,
            duplicates,
        } = self;
        input::read_records(
            file,
            reader,
            format,
            &mut |batch| {
                for span in batch {
                    if seen.insert((span.trace_id, span.span_id)) {
                        spans.push(span);
                    } else {
                        *duplicates += 1;
                    }
                }
            },
            on_error,
        )
    }

    /// Reads the file at `path` (see [`Spans::read`]); a file that cannot be opened is one
    /// error.
    pub fn read_path(
        &mut self,
        path: &Path,
        format: InputFormat,
        on_error: &mut dyn FnMut(ReadError),
    ) -> FileSummary {
        let name = path.display().to_string();
        match std::fs::File::open(path) {
            Ok(file) => self.read(&name, file, format, on_error),
            Err(e) => {
                on_error(ReadError::unopenable(&name, &e));
                FileSummary {
                    errors: 1,
                    ..FileSummary::default()
                }
            }
        }
    }
}

/// How requests are summarized together.
///
/// ```
/// use omni_metrics::replay::GroupBy;
/// assert_eq!("all".parse::<GroupBy>(), Ok(GroupBy::All));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupBy {
    /// As live: the requests of one `omni.run` together (the run's exported span, which its
    /// requests link to, or their `omni.run` parent), each other request on its own.
    #[default]
    Run,
    /// Every request of every file in one scope, named [`GroupBy::ALL_SCOPE`], from the
    /// first request's start to the last one's end.
    All,
}

impl GroupBy {
    /// The scope of [`GroupBy::All`].
    pub const ALL_SCOPE: &'static str = "all";
}

impl std::str::FromStr for GroupBy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "run" => Ok(Self::Run),
            "all" => Ok(Self::All),
            other => Err(format!("unknown grouping {other:?}: use run or all")),
        }
    }
}

/// What a replay did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayStats {
    /// Spans of the convention replayed (runs made up for [`GroupBy::All`] or for a
    /// missing run included).
    pub spans_replayed: u64,
    /// Requests replayed.
    pub requests: u64,
    /// Scopes of runs replayed.
    pub runs: u64,
    /// Stages, transfers and timing spans whose parent is not in the input (a file of
    /// another process is missing): each is reported as outside any request.
    pub missing_parents: u64,
    /// Runs that requests link to but whose span is not in the input: their requests are
    /// still summarized together, from the first one's start.
    pub runs_without_span: u64,
    /// Spans moved inside their parent's time (clocks of different hosts disagree).
    pub moved_into_parent: u64,
}

/// Replays [`Spans`] through the metrics layer.
///
/// The layer has no console and no JSON lines of its own (and ignores
/// `OMNI_METRICS_JSONL`): records go to the sinks given here, synchronously, so none is
/// dropped however fast the replay runs. Each request's record carries the id of the trace
/// it was read from (`trace_id`).
#[must_use = "a replay does nothing until `run` is called"]
pub struct Replay {
    group_by: GroupBy,
    sinks: Vec<Box<dyn Sink>>,
    diagnostics: bool,
    progress: Option<Box<dyn FnMut(u64, u64)>>,
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("group_by", &self.group_by)
            .field("sinks", &self.sinks.len())
            .field("diagnostics", &self.diagnostics)
            .finish_non_exhaustive()
    }
}

impl Default for Replay {
    fn default() -> Self {
        Self::new()
    }
}

impl Replay {
    /// A replay grouping by run, with no sink yet and no diagnostics printed.
    pub fn new() -> Self {
        Self {
            group_by: GroupBy::default(),
            sinks: Vec::new(),
            diagnostics: false,
            progress: None,
        }
    }

    /// How requests are summarized together. Default: [`GroupBy::Run`].
    pub fn group_by(mut self, group_by: GroupBy) -> Self {
        self.group_by = group_by;
        self
    }

    /// Adds a sink: [`ConsoleSink`](crate::report::ConsoleSink) for the tables,
    /// [`JsonLinesSink`](crate::report::JsonLinesSink) for records,
    /// [`CaptureSink`](crate::report::CaptureSink) to read them in code.
    pub fn with_sink(mut self, sink: impl Sink) -> Self {
        self.sinks.push(Box::new(sink));
        self
    }

    /// Prints the layer's diagnostics of bad input (`WARN`, target
    /// `omni_metrics::diagnostics`: a stage outside any request, a mistyped field...) on
    /// stderr, as `init()` would. Default: off (they are counted in `invalid_spans` either
    /// way).
    pub fn with_diagnostics(mut self, enabled: bool) -> Self {
        self.diagnostics = enabled;
        self
    }

    /// Calls `progress(done, total)` now and then while replaying (steps: a span's open,
    /// close or output).
    pub fn with_progress(mut self, progress: impl FnMut(u64, u64) + 'static) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }

    /// Replays every span, in the order of their exported times, and returns what was
    /// done; the records went to the sinks as each request and scope finished.
    pub fn run(self, spans: &Spans) -> ReplayStats {
        let Replay {
            group_by,
            sinks,
            diagnostics,
            progress,
        } = self;
        let clock = ManualClock::new();
        let current = engine::CurrentTrace::default();
        let layer = match crate::OmniMetricsLayer::builder()
            .with_console(false)
            // Not `OMNI_METRICS_JSONL`: the replay's records go to its sinks only.
            .with_jsonl_writer(std::io::sink())
            .with_request_tables(false)
            .with_queue_capacity(1 << 16)
            .with_clock(clock.clone())
            .with_sink(engine::TraceIds {
                current: current.clone(),
                sinks,
            })
            .build()
        {
            Ok(layer) => layer,
            // Only a JSON-lines file can fail to open, and none is opened.
            Err(_) => return ReplayStats::default(),
        };
        let diagnostics = diagnostics.then(|| {
            use std::io::IsTerminal as _;
            use tracing_subscriber::Layer as _;
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_target(false)
                .without_time()
                .with_filter(
                    tracing_subscriber::filter::Targets::new()
                        .with_target("omni_metrics", tracing::Level::WARN),
                )
        });
        let subscriber = tracing_subscriber::registry().with(layer).with(diagnostics);
        let mut progress = progress;
        let mut report = |done: u64, total: u64| {
            if let Some(p) = progress.as_mut() {
                p(done, total);
            }
        };
        tracing::subscriber::with_default(subscriber, || {
            engine::replay(&spans.spans, group_by, &clock, &current, &mut report)
        })
    }
}
