//! Rebuilding the tables from trace files: the `omni-metrics report` command as a library.
//!
//! [`Spans`] reads OTLP trace data as the Collector's file exporter writes it (JSON lines,
//! length-prefixed protobuf, either zstd- or gzip-compressed) from any number of files, of
//! any number of processes and hosts; [`Replay`] groups the spans by trace and replays them
//! through an [`OmniMetricsLayer`](crate::OmniMetricsLayer) on a clock set to each span's
//! exported times, so that every table, record and distribution is computed by the layer
//! itself, exactly as it is live. Feature `replay`.
//!

mod engine;
mod input;
mod model;
mod origin;
mod otlp;
mod vllm_omni;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::io::Read;
use std::path::Path;

use tracing_subscriber::layer::SubscriberExt as _;

#[cfg(test)]
use input::FileSummary;
use input::MAX_RECORD_BYTES;
pub(crate) use input::{InputFormat, Lost, ReadError};

use crate::report::Sink;
use crate::testing::ManualClock;

#[cfg(test)]
/// Every span read so far, from every file: a request whose stages were exported by
/// another process (another file) is whole once both files are read.
///
/// A span read twice (the same file given twice, a collector that exported a batch again)
/// is kept once.
#[derive(Debug, Default)]
pub(crate) struct Spans {
    spans: Vec<model::SpanRec>,
    /// Where each span was measured.
    origins: Vec<origin::Origin>,
    seen: HashSet<(u128, u64)>,
    duplicates: u64,
}

#[cfg(test)]
impl Spans {
    /// No spans yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// How many distinct spans were read (of the convention or not).
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Reads the trace data of `reader`, named `file` in errors. Compression (gzip, zstd) is
    /// recognized from the content, and so is the encoding with [`InputFormat::Auto`].
    ///
    /// A record (line, message) that cannot be read, or is longer than
    /// [`Replay::DEFAULT_MAX_RECORD_BYTES`], is handed to `on_error` and the rest is still read; a broken
    /// compressed stream or length prefix ends the file there (the error says so). Never
    /// panics, never fails as a whole.
    pub(crate) fn read(
        &mut self,
        file: &str,
        reader: impl Read,
        format: InputFormat,
        on_error: &mut dyn FnMut(ReadError),
    ) -> FileSummary {
        let Spans {
            spans,
            origins,
            seen,
            duplicates,
        } = self;
        input::read_records(
            file,
            reader,
            format,
            MAX_RECORD_BYTES,
            &mut |batch| {
                for (span, origin) in batch {
                    if seen.insert((span.trace_id, span.span_id)) {
                        spans.push(span);
                        origins.push(origin);
                    } else {
                        *duplicates += 1;
                    }
                }
            },
            on_error,
        )
    }
}

/// How requests are summarized together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum GroupBy {
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
    pub(crate) const ALL_SCOPE: &'static str = "all";
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
pub(crate) struct ReplayStats {
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
    /// Spans moved inside their parent's time, each with the spans under it, because their
    /// clocks disagree: spans of another host or process (their resources' `host.name` or
    /// `service.instance.id` differ), or, where the resources do not say, a span starting
    /// more than [`Replay::CLOCK_TOLERANCE_NS`] before its parent or ending more than that
    /// after its request. On one clock a child outside its parent is real data (the exported
    /// end of a span that was entered is its last exit, before the children that close after
    /// it): its parent is widened, as it was live, and nothing is moved.
    pub moved_into_parent: u64,
    /// The most one of those spans was moved by, in ns: about the skew between the clocks.
    pub max_moved_ns: u64,
    /// Records (lines, messages) decoded, from every input.
    pub records: u64,
    /// Distinct spans read (of the convention or not).
    pub spans_read: u64,
    /// Traces the spans belong to (a trace whose spans came back after it was replayed
    /// counts again).
    pub traces: u64,
    /// Spans read again (same trace and span id, while their trace was open) and left out.
    pub duplicates: u64,
    /// Spans whose trace had been replayed already when they were read: the window
    /// ([`Replay::with_window`]) was too short for how far apart the inputs are. They are
    /// missing from their request.
    pub late_spans: u64,
    /// Requests linked to a run that was summarized already (its span's trace was
    /// replayed, a window before): each is summarized on its own.
    pub requests_after_their_run: u64,
    /// The most spans held at once in traces still open: the replay's memory is bounded by
    /// this, not by the size of the input.
    pub max_open_spans: u64,
    /// Traces replayed before their window ended because the spans held open took more
    /// than the window's share of memory, or the trace held a quarter of the window (see
    /// [`Replay::with_window`]). Spans of theirs read later are counted in
    /// [`ReplayStats::late_spans`].
    pub traces_replayed_early: u64,
    /// Parent cycles found (spans that are their own ancestors: ids are unique, so only a
    /// corrupt or forged input has them). Each is resolved once.
    pub parent_cycles: u64,
    /// The first cycle's trace and one of its span ids, to name it.
    pub first_cycle: Option<(u128, u64)>,
    /// Spans of the convention whose parents lead into a cycle: each is replayed as
    /// outside any request.
    pub spans_under_cycles: u64,
    /// Spans of the convention with values the replay left out (said by the reader,
    /// counted in their request's `invalid_spans`).
    pub spans_with_invalid_values: u64,
    /// Requests more than 5 * 10^11 ms (15 years) from their run's start (timestamps in
    /// the wrong unit, or a run's span with a start of 0): each is summarized on its own,
    /// so that no wall time goes beyond 10^12 ms.
    pub requests_far_from_their_run: u64,
    /// Inputs that could be opened.
    pub inputs_read: u64,
    /// Bytes of data read from them (decompressed; the second pass, when there are two).
    pub bytes_read: u64,
}

/// Replays [`Spans`] through the metrics layer.
///
/// The layer has no console and no JSON lines of its own (and ignores
/// `OMNI_METRICS_JSONL`): records go to the sinks given here, synchronously, so none is
/// dropped however fast the replay runs. Each request's record carries the id of the trace
/// it was read from (`trace_id`).
#[must_use = "a replay does nothing until `run` is called"]
pub(crate) struct Replay {
    group_by: GroupBy,
    window: u64,
    max_record: usize,
    sinks: Vec<Box<dyn Sink>>,
    diagnostics: bool,
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("group_by", &self.group_by)
            .field("window", &self.window)
            .field("max_record", &self.max_record)
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
    pub(crate) fn new() -> Self {
        Self {
            group_by: GroupBy::default(),
            window: Self::DEFAULT_WINDOW,
            max_record: MAX_RECORD_BYTES,
            sinks: Vec::new(),
            diagnostics: false,
        }
    }

    /// The largest record read by default, in bytes (16 MiB): a JSON line, or a protobuf
    /// message once decompressed. A larger one is skipped and said, the rest of the file
    /// still read; this bound (with the window) keeps the report under 100 MiB whatever the
    /// input. The Collector's exports are far smaller (its gRPC receiver takes 4 MiB by
    /// default). [`Replay::with_max_record_bytes`] (`--max-record-mib`) raises it.
    pub(crate) const DEFAULT_MAX_RECORD_BYTES: usize = MAX_RECORD_BYTES;

    /// How many spans a trace waits for, by default, before it is replayed: see
    /// [`Replay::with_window`].
    pub(crate) const DEFAULT_WINDOW: u64 = 100_000;

    /// How far, in ns (1 ms), a span may start before its parent, or end after its
    /// request, before it is taken as clock skew, when the resources do not say whether
    /// the two spans share a clock (no `host.name` or `service.instance.id` on both): see
    /// [`ReplayStats::moved_into_parent`]. Spans of one process are never moved; spans of
    /// different hosts or processes are moved whenever they lie outside their parent.
    pub(crate) const CLOCK_TOLERANCE_NS: u64 = engine::TOLERANCE_NS;

    /// The memory, in bytes, the spans held open may take per span of the window: a little
    /// more than a collector's span of the convention takes once read (about 400 bytes for
    /// a stage with its figures, 150 for a timing span).
    pub(crate) const BYTES_PER_SPAN: u64 = 320;

    /// How long a trace stays open, in spans read: a trace is replayed (and its memory
    /// freed) once its root span has been read and no span of it has come in the last
    /// `spans` spans read from all the inputs together; a trace whose root never comes,
    /// after `4 * spans`; every trace still open at the end of the input. A span of a
    /// trace replayed already is counted in [`ReplayStats::late_spans`] (it is missing
    /// from its request; a larger window would have caught it). Memory is bounded by the
    /// spans of the traces open at once, about `spans` plus the spans of the requests in
    /// flight, whatever the size of the input. Two bounds make that hold for any input
    /// (spans far larger than a collector's, a trace of millions of spans): at most
    /// [`Replay::BYTES_PER_SPAN`] times `spans` bytes of spans are held (32 MB by default;
    /// beyond it, the traces read longest ago are replayed early), and a trace is replayed
    /// once it holds `spans / 4` spans (25,000 by default: replaying costs up to 1 KiB a
    /// span, for spans all open at once; an output counts as 1/16 of a span). Either is
    /// counted in
    /// [`ReplayStats::traces_replayed_early`], and the spans of such a trace read after
    /// it in [`ReplayStats::late_spans`]. Default: [`Replay::DEFAULT_WINDOW`]; `u64::MAX`
    /// keeps every trace open to the end (memory grows with the input).
    pub(crate) fn with_window(mut self, spans: u64) -> Self {
        self.window = spans.max(1);
        self
    }

    /// The largest record [`Replay::run_inputs`] reads: a JSON line, or a protobuf message
    /// once decompressed (a larger one is skipped and said, the rest of the file still read).
    /// Memory grows with it (a record is held whole while it is decoded). Default:
    /// [`Replay::DEFAULT_MAX_RECORD_BYTES`]; at most 4 GiB.
    pub(crate) fn with_max_record_bytes(mut self, bytes: usize) -> Self {
        self.max_record = bytes.clamp(1, u32::MAX as usize);
        self
    }

    /// How requests are summarized together. Default: [`GroupBy::Run`].
    pub(crate) fn group_by(mut self, group_by: GroupBy) -> Self {
        self.group_by = group_by;
        self
    }

    /// Adds a sink: yours (print a record's tables with its `Display`, its JSON line with
    /// [`Record::to_json_line`](crate::report::Record::to_json_line), as the report command
    /// does), or `testing::CaptureSink` (feature `testing`) to read them in code.
    pub(crate) fn with_sink(mut self, sink: impl Sink) -> Self {
        self.sinks.push(Box::new(sink));
        self
    }

    /// Prints the layer's diagnostics of bad input (`WARN`, target
    /// `omni_metrics::diagnostics`: a stage outside any request, a mistyped field...) on
    /// stderr, as `init()` would. Default: off (they are counted in `invalid_spans` either
    /// way).
    pub(crate) fn with_diagnostics(mut self, enabled: bool) -> Self {
        self.diagnostics = enabled;
        self
    }

    #[cfg(test)]
    /// Replays every span of `spans` (read whole into memory beforehand) and returns what
    /// was done; the records went to the sinks as each request and scope finished.
    /// Traces are replayed in the order their last span was read.
    pub(crate) fn run(self, spans: &Spans) -> ReplayStats {
        let known_runs = match self.group_by {
            GroupBy::Run => runs_of(&spans.spans),
            GroupBy::All => HashMap::new(),
        };
        let duplicates = spans.duplicates;
        let mut stats = self.with_engine(known_runs, |engine| {
            let mut traces = Traces::new(u64::MAX);
            for (i, span) in spans.spans.iter().enumerate() {
                let origin = spans.origins.get(i).copied().unwrap_or_default();
                traces.push(span.clone(), origin, engine);
            }
            traces.finish(engine)
        });
        stats.duplicates += duplicates;
        stats
    }

    /// Reads `inputs` and replays their spans as their traces complete (see
    /// [`Replay::with_window`]), with memory bounded by the traces open at once; returns
    /// what was done. A record that cannot be read goes to `on_error`, and the rest is still
    /// read, as [`Spans::read`] does.
    ///
    /// The inputs are read twice: a first pass finds the spans of runs (a run's span is
    /// exported after all its requests, but names their scope), reading only the records
    /// that mention `omni.run` or `e2e_requests`; the second pass reads the inputs in
    /// step, the next record always from the input whose next record ended first, so
    /// that the spans of a request that several processes exported meet within the
    /// window.
    pub(crate) fn run_inputs(
        self,
        mut inputs: Vec<Input<'_>>,
        format: InputFormat,
        on_error: &mut dyn FnMut(ReadError),
    ) -> ReplayStats {
        let max_record = self.max_record;
        let known_runs = match self.group_by {
            GroupBy::Run => first_pass(&mut inputs, format, max_record),
            GroupBy::All => HashMap::new(),
        };
        let window = self.window;
        self.with_engine(known_runs, |engine| {
            let mut files: Vec<input::Records<'_>> = Vec::with_capacity(inputs.len());
            for input in &mut inputs {
                match (input.open)() {
                    Ok(reader) => {
                        files.push(input::Records::new(&input.name, reader, format, max_record))
                    }
                    Err(e) => on_error(ReadError::unopenable(&input.name, &e)),
                }
            }
            let mut traces = Traces::new(window);
            // The next record of each input, by the earliest end of its spans.
            let mut pending: Vec<Option<Vec<(model::SpanRec, origin::Origin)>>> =
                Vec::with_capacity(files.len());
            let mut heap = BinaryHeap::new();
            let earliest = |spans: &[(model::SpanRec, origin::Origin)]| {
                spans.iter().map(|(s, _)| s.end_ns).min()
            };
            for (i, file) in files.iter_mut().enumerate() {
                let next = file.next(on_error);
                if let Some(key) = next.as_deref().and_then(earliest) {
                    heap.push(Reverse((key, i)));
                }
                pending.push(next);
            }
            while let Some(Reverse((_, i))) = heap.pop() {
                for (span, origin) in pending[i].take().into_iter().flatten() {
                    traces.push(span, origin, engine);
                }
                let next = files[i].next(on_error);
                if let Some(key) = next.as_deref().and_then(earliest) {
                    heap.push(Reverse((key, i)));
                }
                pending[i] = next;
            }
            let mut stats = traces.finish(engine);
            stats.records = files.iter().map(|f| f.summary.records).sum();
            stats.bytes_read = files.iter().map(|f| f.summary.bytes).sum();
            stats.inputs_read = files.len() as u64;
            stats
        })
    }

    /// Runs `replay` with an engine replaying through the metrics layer, in a scoped
    /// dispatcher; returns the engine's stats with what `replay` adds.
    fn with_engine(
        self,
        known_runs: HashMap<(u128, u64), model::SpanRec>,
        replay: impl FnOnce(&mut engine::Engine<'_>) -> ReplayStats,
    ) -> ReplayStats {
        let Replay {
            group_by,
            window: _,
            max_record: _,
            sinks,
            diagnostics,
        } = self;
        let clock = ManualClock::new();
        let current = engine::CurrentTrace::default();
        let layer = match crate::OmniMetricsLayer::builder()
            .with_console(false)
            // Not `OMNI_METRICS_JSONL`: the replay's records go to its sinks only.
            .with_jsonl(false)
            .with_request_tables(false)
            .with_queue_capacity(1 << 16)
            .clock(clock.clone())
            .with_sink(engine::TraceIds {
                current: current.clone(),
                sinks,
                scope_invalid: Default::default(),
                scope_source: Default::default(),
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
        tracing::subscriber::with_default(subscriber, || {
            let mut engine = engine::Engine::new(group_by, &clock, &current, known_runs);
            let mut read = replay(&mut engine);
            let stats = engine.finish();
            read.spans_replayed = stats.spans_replayed;
            read.requests = stats.requests;
            read.runs = stats.runs;
            read.missing_parents = stats.missing_parents;
            read.runs_without_span = stats.runs_without_span;
            read.moved_into_parent = stats.moved_into_parent;
            read.max_moved_ns = stats.max_moved_ns;
            read.requests_after_their_run = stats.requests_after_their_run;
            read.parent_cycles = stats.parent_cycles;
            read.first_cycle = stats.first_cycle;
            read.spans_under_cycles = stats.spans_under_cycles;
            read.spans_with_invalid_values = stats.spans_with_invalid_values;
            read.requests_far_from_their_run = stats.requests_far_from_their_run;
            read
        })
    }
}

/// The spans of runs among `spans`, by (trace id, span id).
fn runs_of<'s>(
    spans: impl IntoIterator<Item = &'s model::SpanRec>,
) -> HashMap<(u128, u64), model::SpanRec> {
    spans
        .into_iter()
        .filter(|s| s.kind == Some(crate::convention::SpanKind::Run))
        .map(|s| ((s.trace_id, s.span_id), s.clone()))
        .collect()
}

/// The first pass of [`Replay::run_inputs`]: the spans of runs, from the records that
/// mention one (errors are left to the second pass).
fn first_pass(
    inputs: &mut [Input<'_>],
    format: InputFormat,
    max_record: usize,
) -> HashMap<(u128, u64), model::SpanRec> {
    let finders = [
        memchr::memmem::Finder::new(crate::convention::RUN),
        memchr::memmem::Finder::new(crate::stats::keys::E2E_REQUESTS),
    ];
    let mut runs = HashMap::new();
    let mut ignore = |_: ReadError| {};
    for input in inputs {
        let Ok(reader) = (input.open)() else { continue };
        let mut records = input::Records::new(&input.name, reader, format, max_record);
        while let Some((place, encoding)) = records.next_raw(&mut ignore) {
            if finders.iter().any(|f| f.find(records.raw()).is_some()) {
                if let Some(spans) = records.decode(place, encoding, &mut ignore) {
                    runs.extend(runs_of(spans.iter().map(|(s, _)| s)));
                }
            }
        }
    }
    runs
}

/// One input of [`Replay::run_inputs`]: a name for errors and a way to open it (it is
/// read twice).
pub(crate) struct Input<'a> {
    name: String,
    open: Box<dyn FnMut() -> std::io::Result<Box<dyn Read + 'a>> + 'a>,
}

impl std::fmt::Debug for Input<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<'a> Input<'a> {
    /// An input named `name` in errors, opened by `open` (once for each pass).
    pub(crate) fn new<R: Read + 'a>(
        name: impl Into<String>,
        mut open: impl FnMut() -> std::io::Result<R> + 'a,
    ) -> Self {
        Self {
            name: name.into(),
            open: Box::new(move || open().map(|r| Box::new(r) as Box<dyn Read + 'a>)),
        }
    }

    /// The file at `path`, named as displayed.
    pub(crate) fn path(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref().to_path_buf();
        Self::new(path.display().to_string(), move || {
            std::fs::File::open(&path)
        })
    }

    /// Bytes in memory (standard input, read whole, or a test's data).
    pub(crate) fn bytes(name: impl Into<String>, bytes: &'a [u8]) -> Self {
        Self::new(name, move || Ok(bytes))
    }
}

/// What replaying a span with `outputs` outputs may cost in memory, at most: 1 KiB for the
/// span (the engine's steps and nodes, the subscriber's and the layer's state, with every
/// span of the trace open at once), 64 bytes an output (its step, the layer's record of
/// its time).
fn replay_cost(outputs: usize) -> u64 {
    1024 + 64 * outputs as u64
}

/// A trace being read.
#[derive(Default)]
struct OpenTrace {
    spans: Vec<model::SpanRec>,
    /// Where each was measured.
    origins: Vec<origin::Origin>,
    /// What they hold ([`model::SpanRec::weight`]).
    bytes: u64,
    /// What replaying them may cost ([`replay_cost`]).
    cost: u64,
    /// Span ids, once the trace is too large to look through.
    ids: Option<HashSet<u64>>,
    /// When (in spans read) its last span was read.
    last_seen: u64,
    /// Whether its root span (no parent) was read.
    root: bool,
}

impl OpenTrace {
    /// Whether a span of this id was read already.
    fn has(&mut self, span_id: u64) -> bool {
        const LOOK_THROUGH: usize = 64;
        match &mut self.ids {
            Some(ids) => !ids.insert(span_id),
            None if self.spans.len() < LOOK_THROUGH => {
                self.spans.iter().any(|s| s.span_id == span_id)
            }
            None => {
                let mut ids: HashSet<u64> = self.spans.iter().map(|s| s.span_id).collect();
                let had = !ids.insert(span_id);
                self.ids = Some(ids);
                had
            }
        }
    }
}

/// Groups spans by trace as they are read, and replays each trace once it is complete (see
/// [`Replay::with_window`]).
struct Traces {
    window: u64,
    /// Spans read (distinct or not).
    now: u64,
    open: HashMap<u128, OpenTrace>,
    /// (trace, when a span of it was read), in the order read: a trace whose last entry
    /// is a window old is complete.
    queue: VecDeque<(u128, u64)>,
    /// The same for traces without a root yet, which wait four windows.
    rootless: VecDeque<(u128, u64)>,
    /// Traces replayed recently, to tell their late spans apart.
    closed: HashSet<u128>,
    closed_order: VecDeque<u128>,
    open_spans: u64,
    /// What the open spans hold, and the most they may.
    open_bytes: u64,
    max_open_bytes: u64,
    /// The most a trace held may cost to replay ([`replay_cost`]): it is replayed then.
    max_trace_cost: u64,
    stats: ReplayStats,
}

impl Traces {
    fn new(window: u64) -> Self {
        Self {
            window,
            now: 0,
            open: HashMap::new(),
            queue: VecDeque::new(),
            rootless: VecDeque::new(),
            closed: HashSet::new(),
            closed_order: VecDeque::new(),
            open_spans: 0,
            open_bytes: 0,
            max_open_bytes: window.saturating_mul(Replay::BYTES_PER_SPAN),
            max_trace_cost: (window / 4).max(1024).saturating_mul(replay_cost(0)),
            stats: ReplayStats::default(),
        }
    }

    /// How many replayed traces are remembered (16 bytes each, twice): a span arriving
    /// this many traces after its own was replayed starts a trace of its own again.
    fn closed_capacity(&self) -> usize {
        usize::try_from(self.window / 4)
            .unwrap_or(usize::MAX)
            .clamp(1024, 1 << 20)
    }

    fn push(
        &mut self,
        span: model::SpanRec,
        origin: origin::Origin,
        engine: &mut engine::Engine<'_>,
    ) {
        self.now += 1;
        let trace_id = span.trace_id;
        if self.closed.contains(&trace_id) {
            self.stats.late_spans += 1;
            return;
        }
        let trace = self.open.entry(trace_id).or_default();
        if trace.spans.is_empty() {
            self.stats.traces += 1;
        }
        if trace.has(span.span_id) {
            self.stats.duplicates += 1;
            return;
        }
        self.stats.spans_read += 1;
        trace.last_seen = self.now;
        trace.root |= span.parent_id.is_none();
        let weight = span.weight() + std::mem::size_of::<origin::Origin>() as u64;
        trace.bytes += weight;
        self.open_bytes += weight;
        trace.cost += replay_cost(span.outputs.len());
        trace.spans.push(span);
        trace.origins.push(origin);
        let full = trace.cost >= self.max_trace_cost;
        self.open_spans += 1;
        self.stats.max_open_spans = self.stats.max_open_spans.max(self.open_spans);
        self.queue.push_back((trace_id, self.now));
        if full {
            self.stats.traces_replayed_early += 1;
            self.close(trace_id, engine);
        }
        // Traces complete: a window without a span of theirs (four without their root).
        let now = self.now;
        while let Some(&(id, seen)) = self.queue.front() {
            if seen.saturating_add(self.window) > now {
                break;
            }
            self.queue.pop_front();
            match self.open.get(&id) {
                Some(t) if t.last_seen == seen && t.root => self.close(id, engine),
                Some(t) if t.last_seen == seen => self.rootless.push_back((id, seen)),
                _ => {} // a later span of it is queued
            }
        }
        while let Some(&(id, seen)) = self.rootless.front() {
            if seen.saturating_add(self.window.saturating_mul(4)) > now {
                break;
            }
            self.rootless.pop_front();
            if self.open.get(&id).is_some_and(|t| t.last_seen == seen) {
                self.close(id, engine);
            }
        }
        // Over the memory the window allows: the traces read longest ago go first (those
        // waiting for their root, then the others), the trace just read last.
        while self.open_bytes > self.max_open_bytes {
            let (id, seen) = match self.rootless.pop_front() {
                Some(entry) => entry,
                None => match self.queue.pop_front() {
                    Some(entry) => entry,
                    None => break,
                },
            };
            if self.open.get(&id).is_some_and(|t| t.last_seen == seen) {
                self.stats.traces_replayed_early += 1;
                self.close(id, engine);
            }
        }
    }

    /// Replays the trace `id` and forgets its spans.
    fn close(&mut self, id: u128, engine: &mut engine::Engine<'_>) {
        let Some(trace) = self.open.remove(&id) else {
            return;
        };
        self.open_spans -= trace.spans.len() as u64;
        self.open_bytes -= trace.bytes;
        engine.replay_trace(&trace.spans, &trace.origins);
        if self.closed.insert(id) {
            self.closed_order.push_back(id);
            if self.closed_order.len() > self.closed_capacity() {
                if let Some(old) = self.closed_order.pop_front() {
                    self.closed.remove(&old);
                }
            }
        }
    }

    /// Replays every trace still open, in the order their last span was read.
    fn finish(mut self, engine: &mut engine::Engine<'_>) -> ReplayStats {
        let mut left: Vec<(u64, u128)> =
            self.open.iter().map(|(id, t)| (t.last_seen, *id)).collect();
        left.sort_unstable();
        for (_, id) in left {
            self.close(id, engine);
        }
        self.stats
    }
}

// The decoders and the replay fuzzed (proptest).
#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::CaptureSink;

    /// A request of one stage in trace `t`: the stage's line and the request's line.
    fn request(t: u64) -> [String; 2] {
        let span = |id: u64, parent: &str, name: &str, attrs: &str| {
            format!(
                r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"{t:032x}","spanId":"{id:016x}","parentSpanId":"{parent}","name":"{name}","startTimeUnixNano":"{}","endTimeUnixNano":"{}","attributes":[{attrs}]}}]}}]}}]}}"#,
                1_000 + t * 10,
                1_005 + t * 10
            )
        };
        [
            span(
                2,
                "0000000000000001",
                "omni.stage",
                r#"{"key":"stage_id","value":{"intValue":"0"}}"#,
            ),
            span(
                1,
                "",
                "omni.request",
                &format!(r#"{{"key":"request_id","value":{{"stringValue":"r-{t}"}}}}"#),
            ),
        ]
    }

    #[test]
    fn traces_are_replayed_after_a_window_and_late_spans_counted() {
        let mut lines: Vec<String> = (1..=100).flat_map(request).collect();
        // Trace 1's stage again, 200 spans after its trace: late.
        lines.push(request(1)[0].clone());
        // Trace 100's stage again, within the window: a duplicate.
        lines.push(request(100)[0].clone());
        let text = lines.join("\n");
        let capture = CaptureSink::new();
        let stats = Replay::new()
            .with_window(10)
            .with_sink(capture.clone())
            .run_inputs(
                vec![Input::bytes("t.json", text.as_bytes())],
                InputFormat::Json,
                &mut |e| panic!("{e}"),
            );
        assert_eq!(stats.requests, 100);
        assert_eq!(capture.requests().len(), 100);
        assert_eq!((stats.late_spans, stats.duplicates), (1, 1));
        assert_eq!(stats.spans_read, 200);
        assert!(
            stats.max_open_spans <= 12,
            "a window of 10 spans holds about 10: {}",
            stats.max_open_spans
        );
        // Every request has its stage.
        assert!(capture.requests().iter().all(|r| r.stages.len() == 1));
    }

    #[test]
    fn two_inputs_are_read_in_step_by_end_time() {
        // The stages in one file, the requests in another: with a window of 4 spans, read
        // one file after the other, every request would lose its stage.
        let (stages, requests): (Vec<String>, Vec<String>) = (1..=50)
            .map(request)
            .map(|[a, b]: [String; 2]| (a, b))
            .unzip();
        let (stages, requests) = (stages.join("\n"), requests.join("\n"));
        let capture = CaptureSink::new();
        let stats = Replay::new()
            .with_window(4)
            .with_sink(capture.clone())
            .run_inputs(
                vec![
                    Input::bytes("requests.json", requests.as_bytes()),
                    Input::bytes("stages.json", stages.as_bytes()),
                ],
                InputFormat::Json,
                &mut |e| panic!("{e}"),
            );
        assert_eq!(
            (stats.requests, stats.late_spans, stats.missing_parents),
            (50, 0, 0)
        );
        assert!(capture.requests().iter().all(|r| r.stages.len() == 1));
    }

    #[test]
    fn replicas_diffusion_and_video_are_read_back() {
        let [stage, request] = request(1);
        let stage = stage.replace(
            r#""attributes":[{"key":"stage_id","value":{"intValue":"0"}}]"#,
            r#""attributes":[{"key":"stage_id","value":{"intValue":"0"}},{"key":"replica_id","value":{"intValue":"3"}},{"key":"num_inference_steps","value":{"intValue":"5"}},{"key":"video_frames","value":{"intValue":"48"}},{"key":"video_fps","value":{"intValue":"24"}}]"#,
        );
        let text = [stage, request].join("\n");
        let capture = CaptureSink::new();
        Replay::new().with_sink(capture.clone()).run_inputs(
            vec![Input::bytes("t.json", text.as_bytes())],
            InputFormat::Json,
            &mut |e| panic!("{e}"),
        );
        let records = capture.requests();
        let s = &records[0].stages[0];
        assert_eq!(s.replica_id, Some(3));
        assert_eq!(s.num_inference_steps, Some(5));
        assert_eq!((s.video_frames, s.video_duration_ms), (48, Some(2000.0)));
    }
}

// The examples of this module, as unit tests (the module is internal to the crate).
#[cfg(test)]
mod examples {
    #[test]
    fn example_module() -> Result<(), Box<dyn std::error::Error>> {
        use crate::replay::{InputFormat, Replay, Spans};
        use crate::testing::CaptureSink; // feature `testing`

        // One exported request with one stage, as another SDK may write it.
        let line = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
          {"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331",
           "name":"omni.request","startTimeUnixNano":"1000000000","endTimeUnixNano":"1050000000",
           "attributes":[{"key":"request_id","value":{"stringValue":"r-1"}}]},
          {"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"00f067aa0ba902b7",
           "parentSpanId":"b7ad6b7169203331","name":"omni.stage",
           "startTimeUnixNano":"1010000000","endTimeUnixNano":"1040000000",
           "attributes":[{"key":"stage_id","value":{"intValue":"0"}},
                         {"key":"num_tokens_in","value":{"intValue":"12"}}]}]}]}]}"#;
        let mut spans = Spans::new();
        let read = spans.read(
            "traces.json",
            line.replace('\n', "").as_bytes(),
            InputFormat::Auto,
            &mut |e| eprintln!("{e}"),
        );
        assert_eq!((read.spans, read.errors), (2, 0));

        let capture = CaptureSink::new();
        let stats = Replay::new().with_sink(capture.clone()).run(&spans);
        assert_eq!(stats.requests, 1);
        let request = &capture.requests()[0];
        assert_eq!(request.e2e_total_ms, 50.0);
        assert_eq!(request.stages[0].stage_gen_time_ms, 30.0);
        assert_eq!(
            request.trace_id.as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        Ok(())
    }

    #[test]
    fn example_groupby() -> Result<(), Box<dyn std::error::Error>> {
        use crate::replay::GroupBy;
        assert_eq!("all".parse::<GroupBy>(), Ok(GroupBy::All));
        Ok(())
    }

    #[test]
    fn example_run_inputs() -> Result<(), Box<dyn std::error::Error>> {
        use crate::replay::{Input, InputFormat, Replay};
        use crate::testing::CaptureSink; // feature `testing`

        let line = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"omni.request","startTimeUnixNano":"1000000000","endTimeUnixNano":"1050000000","attributes":[{"key":"request_id","value":{"stringValue":"r-1"}}]}]}]}]}"#;
        let capture = CaptureSink::new();
        let stats = Replay::new().with_sink(capture.clone()).run_inputs(
            vec![Input::bytes("traces.json", &line[..])],
            InputFormat::Auto,
            &mut |e| eprintln!("{e}"),
        );
        assert_eq!((stats.requests, stats.spans_read), (1, 1));
        assert_eq!(capture.requests()[0].e2e_total_ms, 50.0);
        Ok(())
    }

    #[test]
    fn example_new() -> Result<(), Box<dyn std::error::Error>> {
        use crate::replay::Input;
        let input = Input::new("traces.json", || std::fs::File::open("traces.json"));
        drop(input);
        Ok(())
    }
}
