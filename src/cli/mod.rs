//! The `omni-metrics` command (feature `cli`): `omni-metrics report FILE...` rebuilds the
//! vLLM-Omni tables (or the JSON-lines records, or the HTML report) from OTLP trace files as
//! a collector's file exporter writes them; `omni-metrics compare BASE NEW` compares two
//! runs. Guides: [`report_command`](crate::guide::report_command) and
//! [`compare`](crate::guide::compare).
//!
//! The command is the interface: the trace reader and the comparison behind it are not
//! public, so that their internals can change. [`run`] runs it in-process (as a benchmark or
//! a tool of your own that embeds it does); the binary is [`main`].
//!
//! # The report command
#![doc = include_str!("../../docs/reference/replay.md")]
//!
//! # The compare command
#![doc = include_str!("../../docs/reference/compare.md")]

/// `eprintln!` that cannot panic: a closed or failing stderr (`2>&1 | head`) is ignored, as
/// `run` is a library function.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

use std::io::{IsTerminal as _, Read, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::replay::{self, GroupBy, InputFormat, Lost, ReadError, Replay};
use crate::report::{Record, Sink};
use crate::stats::{OverallSummary, RequestE2EStats};
use crate::testing::CaptureSink;
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

/// Inputs at least this large (in bytes, all files together) get a progress bar on a
/// terminal.
const PROGRESS_MIN_BYTES: u64 = 32 << 20;

/// Errors of reading shown on stderr; the rest are counted (a file of a million bad lines
/// must not print a million lines).
const MAX_ERRORS_SAID: u64 = 100;

#[derive(Parser, Debug)]
#[command(
    name = "omni-metrics",
    version,
    about = "vLLM-Omni --log-stats tables from omni.* traces"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Rebuild the tables from OTLP trace files (a collector's file exporter: JSON lines or
    /// length-prefixed protobuf, plain, gzip or zstd), from any number of processes and hosts.
    Report(ReportArgs),
    /// Compare two runs (BASE, then NEW): each measure's p50, p90, p99 and mean on both
    /// sides, the change, and whether it is real or noise.
    #[command(after_help = COMPARE_HELP)]
    Compare(CompareArgs),
}

/// `compare --help`'s closing text: the `--fail-on` syntax and the exit status.
const COMPARE_HELP: &str = "\
--fail-on EXPR: MEASURE_STAT OP THRESHOLD, comma-separated or repeated; any holding fails.
  MEASURE  e2e, first_output, first_audio, audio_e2e_rtf, stageN_queue, stageN_gen,
           stageN_postprocess, stageN_first_output, stageN_audio_rtf, stageN_denoise_step,
           stageN_audio_underrun, stageN_audio_max_gap, stageN_rR_gen (replica R; _queue,
           _postprocess), edgeA_B_tx, edgeA_B_in_flight, edgeA_B_rx, throughput_rps,
           throughput_tps, error_rate, abort_rate, audio_gap_rate
  STAT     p50, p90, p99 or mean (throughputs: mean, rates: rate; either may be left out)
  OP       > (went up) or < (went down)
  THRESHOLD  signed number and unit: % of the base value, ms (times), pp (rates), none for
           the measure's own unit (RTF, req/s, tok/s); > takes 0 or more, < 0 or less
  A condition holds when the change is real (its interval excludes 0 that way) and beyond
  the threshold. Examples: 'e2e_p99>+5%', 'stage1_gen_mean>+20ms',
  'throughput_rps<-5%', 'error_rate>+0.5pp'.

Exit status: 0 compared (no condition held); 1 a side could not be read or holds no
request, or the HTML page could not be written; 2 a usage error (a bad --fail-on, or one on
a measure the runs lack or could not test); 3 a --fail-on condition held.";

#[derive(Args, Debug)]
struct CompareArgs {
    /// The base run: a records file (JSON lines), a trace file, or a directory of them.
    #[arg(value_name = "BASE")]
    base: PathBuf,
    /// The new run, as BASE.
    #[arg(value_name = "NEW")]
    new: PathBuf,
    /// More files of the base run (repeat it).
    #[arg(long, value_name = "FILE")]
    base_file: Vec<PathBuf>,
    /// More files of the new run (repeat it).
    #[arg(long, value_name = "FILE")]
    new_file: Vec<PathBuf>,
    /// What to print on standard output.
    #[arg(long, value_enum, default_value_t = CompareFormat::Table)]
    format: CompareFormat,
    /// What a side is.
    #[arg(long, value_enum, default_value_t = CompareGroup::Run)]
    group_by: CompareGroup,
    /// The run (scope) of the base files to compare, when they hold several.
    #[arg(long, value_name = "SCOPE")]
    base_scope: Option<String>,
    /// The run (scope) of the new files to compare, when they hold several.
    #[arg(long, value_name = "SCOPE")]
    new_scope: Option<String>,
    /// The confidence of the whole table: runs without a real difference show no better or
    /// worse row with at least this probability.
    #[arg(long, value_name = "P", default_value_t = crate::compare::Compare::DEFAULT_CONFIDENCE)]
    confidence: f64,
    /// How far the mean tokens per request may differ, in percent, before the workload is
    /// said to differ.
    #[arg(long, value_name = "PCT", default_value_t = 5.0)]
    token_tolerance: f64,
    /// Exit 3 when a change is real and beyond a threshold, e.g. 'e2e_p99>+5%' (syntax
    /// below).
    #[arg(long, value_name = "EXPR")]
    fail_on: Vec<String>,
    /// Also write the comparison as one self-contained HTML page.
    #[arg(long, value_name = "OUT.html")]
    html: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum CompareGroup {
    /// One run: the one its files hold (--base-scope, --new-scope pick one of several), or
    /// their online requests.
    Run,
    /// Every request of its files, pooled; throughput is compared over its runs.
    All,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum CompareFormat {
    /// A table for the console.
    Table,
    /// JSON lines: the sides, each warning, each row.
    Jsonl,
    /// Markdown to paste into a pull request.
    Markdown,
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// Trace files; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// What to print on standard output.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// How requests are summarized together.
    #[arg(long, value_enum, default_value_t = Group::Run)]
    group_by: Group,
    /// How the files are encoded (compression is always recognized from the content).
    #[arg(long, value_enum, default_value_t = Input::Auto)]
    input_format: Input,
    /// Tables: only each scope's Overall Summary (and Distributions), not every request's.
    #[arg(long)]
    summary_only: bool,
    /// Never show a progress bar (shown only on a terminal, for inputs of 32 MiB or more).
    #[arg(long)]
    no_progress: bool,
    /// How long a trace is held, in spans read, before it is replayed (its spans read later
    /// are missing from it); memory grows with it: about 320 bytes a span.
    #[arg(long, value_name = "SPANS", default_value_t = Replay::DEFAULT_WINDOW,
          value_parser = clap::value_parser!(u64).range(1..))]
    window: u64,
    /// The largest record read, in MiB: a JSON line, or a protobuf message once
    /// decompressed; a larger one is skipped and said. Memory grows with it.
    #[arg(long, value_name = "MIB", default_value_t = (Replay::DEFAULT_MAX_RECORD_BYTES >> 20) as u32,
          value_parser = clap::value_parser!(u32).range(1..=4095))]
    max_record_mib: u32,
    /// Also write the self-contained HTML report (tables, timeline, histograms) of each
    /// run to this file; `{scope}` in the name gives one file per scope (needed when the
    /// input holds several runs; `--group-by all` makes one).
    #[arg(long, value_name = "OUT.html")]
    html: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    /// The four tables (and Distributions), as the layer prints them live.
    Table,
    /// One JSON record per request and per scope, as `OMNI_METRICS_JSONL` writes them.
    Jsonl,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Group {
    /// As live: each run's requests together, every other request on its own.
    Run,
    /// Every request of every file in one scope, `all`.
    All,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Input {
    /// By the file's extension (`.json`, `.jsonl`; `.pb`, `.binpb`), else JSON if the
    /// (decompressed) data looks like text, else protobuf.
    Auto,
    /// OTLP JSON, one export request per line.
    Json,
    /// OTLP protobuf, each message after its 4-byte big-endian length.
    Proto,
}

/// Runs the command with the process's arguments: what the `omni-metrics` binary does.
pub fn main() -> ExitCode {
    run(std::env::args_os())
}

/// Runs the command with `args`, the first being the program's name (as
/// [`std::env::args_os`] gives them); a usage error prints clap's message and returns its
/// exit code (2), `--help` and `--version` print and return success.
///
/// ```
/// use std::process::ExitCode;
/// // `compare` needs two sides: a usage error, exit code 2.
/// assert_eq!(omni_metrics::cli::run(["omni-metrics", "compare"]), ExitCode::from(2));
/// ```
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // `--help` and `--version` are "errors" that print to stdout and exit 0.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match cli.command {
        Command::Report(args) => report(args),
        Command::Compare(args) => compare(args),
    }
}

/// `omni-metrics compare`: both sides read, compared, printed; the gate checked.
fn compare(args: CompareArgs) -> ExitCode {
    use crate::compare::{self, Compare, FailOn, Side};
    let mut gate = FailOn::default();
    for expr in &args.fail_on {
        if let Err(e) = gate.add(expr) {
            say!("omni-metrics: {e}");
            return ExitCode::from(2);
        }
    }
    let group_by = match args.group_by {
        CompareGroup::Run => GroupBy::Run,
        CompareGroup::All => GroupBy::All,
    };
    let side = |label: &str, first: &PathBuf, more: &[PathBuf], scope: Option<&str>| {
        let files: Vec<PathBuf> = std::iter::once(first.clone())
            .chain(more.iter().cloned())
            .collect();
        let loaded = compare::load(&files, &mut |note| say!("omni-metrics: {label}: {note}"));
        Side::from_loaded(label, loaded, group_by, scope)
    };
    let sides = side(
        "base",
        &args.base,
        &args.base_file,
        args.base_scope.as_deref(),
    )
    .and_then(|base| {
        Ok((
            base,
            side("new", &args.new, &args.new_file, args.new_scope.as_deref())?,
        ))
    });
    let (base, new) = match sides {
        Ok(sides) => sides,
        Err(e) => {
            say!("omni-metrics: {e}");
            return ExitCode::FAILURE;
        }
    };
    let comparison = Compare::new()
        .with_confidence(args.confidence)
        .with_token_tolerance(args.token_tolerance / 100.0)
        .run(&base, &new);
    let text = match args.format {
        CompareFormat::Table => comparison.to_table(),
        CompareFormat::Jsonl => comparison.to_jsonl(),
        CompareFormat::Markdown => comparison.to_markdown(),
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        say!("omni-metrics: cannot write the comparison on standard output: {e}");
    }
    if let Some(path) = &args.html {
        let page = compare::html::render(&comparison, &base, &new);
        match std::fs::write(path, page) {
            Ok(()) => say!("omni-metrics: wrote {}", path.display()),
            Err(e) => {
                say!("omni-metrics: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    match gate.check(&comparison) {
        Ok(hits) if hits.is_empty() => ExitCode::SUCCESS,
        Ok(hits) => {
            for hit in hits {
                say!("omni-metrics: --fail-on {hit}");
            }
            ExitCode::from(3)
        }
        Err(e) => {
            say!("omni-metrics: {e}");
            ExitCode::from(2)
        }
    }
}

fn report(args: ReportArgs) -> ExitCode {
    let format = match args.input_format {
        Input::Auto => InputFormat::Auto,
        Input::Json => InputFormat::Json,
        Input::Proto => InputFormat::Proto,
    };
    let group_by = match args.group_by {
        Group::Run => GroupBy::Run,
        Group::All => GroupBy::All,
    };
    let bar = progress_bar(&args, group_by);
    // Standard input cannot be read twice: it is read whole.
    let mut stdin = Vec::new();
    if args.files.iter().any(|f| f.as_os_str() == "-") {
        if let Err(e) = std::io::stdin().lock().read_to_end(&mut stdin) {
            say!("omni-metrics: <stdin>: cannot read: {e}");
        }
    }
    let inputs = inputs(&args.files, &stdin, bar.as_ref());
    let mut errors = ReadErrors::default();
    let mut on_error = |e: ReadError| errors.add(&e, bar.as_ref());
    let mut replay = Replay::new()
        .group_by(group_by)
        .with_diagnostics(true)
        .with_window(args.window)
        .with_max_record_bytes((args.max_record_mib as usize) << 20);
    replay = replay.with_sink(Stdout {
        format: args.format,
        request_tables: !args.summary_only,
        said: std::sync::atomic::AtomicBool::new(false),
    });
    let html = args
        .html
        .as_ref()
        .map(|path| (path, CaptureSink::default()));
    if let Some((_, kept)) = &html {
        replay = replay.with_sink(kept.clone());
    }
    let stats = replay.run_inputs(inputs, format, &mut on_error);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if !read_something(&stats, &errors, args.files.len()) {
        return ExitCode::FAILURE;
    }
    let html_ok = html.is_none_or(|(path, kept)| write_html(path, &kept));
    say!(
        "omni-metrics: {} in {} from {}: {}, {}",
        plural(stats.spans_read, "span", "spans"),
        plural(stats.traces, "trace", "traces"),
        plural(args.files.len() as u64, "file", "files"),
        plural(stats.requests, "request", "requests"),
        plural(stats.runs, "run", "runs"),
    );
    say_left_out(&stats, args.window);
    say_repaired(&stats, &errors);
    if html_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A progress bar on stderr, for a terminal and inputs of [`PROGRESS_MIN_BYTES`] or more
/// (read twice when grouped by run: the first pass reads only the runs).
fn progress_bar(args: &ReportArgs, group_by: GroupBy) -> Option<ProgressBar> {
    let total_bytes: u64 = args
        .files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .fold(0u64, u64::saturating_add);
    let passes: u64 = if group_by == GroupBy::Run { 2 } else { 1 };
    let progress = !args.no_progress && std::io::stderr().is_terminal();
    (progress && total_bytes >= PROGRESS_MIN_BYTES).then(|| {
        let bar = ProgressBar::new(total_bytes.saturating_mul(passes));
        if let Ok(style) = ProgressStyle::with_template(
            "reading {bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {msg}",
        ) {
            bar.set_style(style);
        }
        bar
    })
}

/// The replay's inputs: each file opened when it is read (through the progress bar), `-`
/// standard input, read whole beforehand (`stdin`).
fn inputs<'a>(
    files: &'a [PathBuf],
    stdin: &'a [u8],
    bar: Option<&ProgressBar>,
) -> Vec<replay::Input<'a>> {
    files
        .iter()
        .map(|path| {
            if path.as_os_str() == "-" {
                return replay::Input::bytes("<stdin>", stdin);
            }
            let bar = bar.cloned();
            replay::Input::new(path.display().to_string(), move || {
                let file = std::fs::File::open(path)?;
                Ok(match &bar {
                    Some(bar) => {
                        bar.set_message(path.display().to_string());
                        Box::new(bar.wrap_read(file)) as Box<dyn Read>
                    }
                    None => Box::new(file),
                })
            })
        })
        .collect()
}

/// What could not be read, counted; the first [`MAX_ERRORS_SAID`] errors are said.
#[derive(Default)]
struct ReadErrors {
    bad_lines: u64,
    bad_other: u64,
    lost_spans: u64,
    said: u64,
}

impl ReadErrors {
    /// Counts `e`, and says it while fewer than [`MAX_ERRORS_SAID`] were (above `bar`).
    fn add(&mut self, e: &ReadError, bar: Option<&ProgressBar>) {
        match e.lost() {
            Lost::Spans => self.lost_spans += 1,
            // Said, and counted by the replay (`spans_with_invalid_values`).
            Lost::Values => {}
            _ if e.line().is_some() => self.bad_lines += 1,
            _ => self.bad_other += 1,
        }
        // A file of nothing but bad records says the first ones, then counts.
        self.said += 1;
        if self.said > MAX_ERRORS_SAID {
            return;
        }
        let last = self.said == MAX_ERRORS_SAID;
        let say = || {
            say!("{e}");
            if last {
                say!("omni-metrics: more errors are counted, not shown");
            }
        };
        match bar {
            Some(bar) => bar.suspend(say),
            None => say(),
        }
    }
}

/// Whether the input held spans; if not, says so (nothing readable, or no span in what
/// was read: the wrong file?).
fn read_something(stats: &replay::ReplayStats, errors: &ReadErrors, files: usize) -> bool {
    let (bad_lines, bad_other) = (errors.bad_lines, errors.bad_other);
    if stats.records == 0 && bad_lines + bad_other > 0 {
        say!(
            "omni-metrics: nothing could be read: {}",
            could_not_read(bad_lines, bad_other)
        );
        return false;
    }
    if stats.spans_read == 0 {
        // Not a report: a script that gave the wrong file notices.
        say!(
            "omni-metrics: no span found in {files} file{} ({} bytes of data, {} records{}): \
             is it an OTLP trace file (the collector's traces pipeline, not metrics or logs)?",
            if files == 1 { "" } else { "s" },
            stats.bytes_read,
            stats.records,
            match bad_lines + bad_other {
                0 => String::new(),
                _ => format!("; {}", could_not_read(bad_lines, bad_other)),
            }
        );
        return false;
    }
    true
}

/// Says what of the input is not in the tables, or not where it was: no request, spans
/// read twice or too late for their trace (`window`), requests after or far from their run.
fn say_left_out(stats: &replay::ReplayStats, window: u64) {
    if stats.requests == 0 {
        say!(
            "omni-metrics: no omni.request span in the input: were the omni.* spans exported \
             (OTLP export on, the metrics layer's trace annotations or span names kept)?"
        );
    }
    if stats.duplicates > 0 {
        say!(
            "omni-metrics: {} read twice and counted once",
            plural(stats.duplicates, "span was", "spans were")
        );
    }
    if stats.late_spans > 0 {
        let early = match stats.traces_replayed_early {
            0 => String::new(),
            n => format!(
                ", or their trace was replayed early to bound memory ({}: the spans held took \
                 {} MB, or a trace held {} spans)",
                plural(n, "trace", "traces"),
                window.saturating_mul(Replay::BYTES_PER_SPAN) / 1_000_000,
                window / 4,
            ),
        };
        say!(
            "omni-metrics: {} after their trace was replayed and missing from their \
             requests: more than {} spans were read after the trace's last span{early}; a \
             larger --window holds traces longer (memory grows with it)",
            plural(stats.late_spans, "span came", "spans came"),
            window,
        );
    }
    if stats.requests_after_their_run > 0 {
        say!(
            "omni-metrics: {} after their run was summarized, summarized on their own",
            plural(
                stats.requests_after_their_run,
                "request came",
                "requests came"
            )
        );
    }
    if stats.requests_far_from_their_run > 0 {
        say!(
            "omni-metrics: {} more than 15 years from the start of {} run (timestamps in the \
             wrong unit?) and summarized on {} own",
            plural(
                stats.requests_far_from_their_run,
                "request is",
                "requests are"
            ),
            if stats.requests_far_from_their_run == 1 {
                "its"
            } else {
                "their"
            },
            if stats.requests_far_from_their_run == 1 {
                "its"
            } else {
                "their"
            },
        );
    }
}

/// Says what the replay repaired or left out of the input, and what could not be read:
/// parents and runs missing, parent cycles, values and spans that could not be taken,
/// spans moved inside their parent.
fn say_repaired(stats: &replay::ReplayStats, errors: &ReadErrors) {
    if stats.missing_parents > 0 {
        say!(
            "omni-metrics: {} a parent that is not in the input (give the files of every \
             process); they count as outside any request",
            plural(stats.missing_parents, "span has", "spans have")
        );
    }
    if stats.runs_without_span > 0 {
        say!(
            "omni-metrics: {} not in the input, only their requests; each such run's wall \
             time starts at its first request",
            plural(stats.runs_without_span, "run is", "runs are")
        );
    }
    if let Some((trace, span)) = stats.first_cycle {
        say!(
            "omni-metrics: {} (spans that are their own ancestors, first in trace \
             {trace:032x} at span {span:016x}: a corrupt or forged file?); the {} under \
             them count as outside any request",
            plural(stats.parent_cycles, "parent cycle", "parent cycles"),
            plural(stats.spans_under_cycles, "span", "spans"),
        );
    }
    if stats.spans_with_invalid_values > 0 {
        say!(
            "omni-metrics: {} values that could not be taken (said above); the values \
             were ignored, the spans kept and counted in `invalid_spans`",
            plural(stats.spans_with_invalid_values, "span had", "spans had")
        );
    }
    if errors.lost_spans > 0 {
        say!(
            "omni-metrics: {} spans that could not be read (said above); \
             their other spans were read",
            plural(errors.lost_spans, "record had", "records had")
        );
    }
    if stats.moved_into_parent > 0 {
        say!(
            "omni-metrics: {} moved inside {} parent, with the spans under {}, by up to \
             {:.3} ms: clock skew (another host or process by `host.name` or \
             `service.instance.id`, or, where the resources do not say, a span starting \
             more than {} ms before its parent or ending more than that after its request)",
            plural(stats.moved_into_parent, "span was", "spans were"),
            if stats.moved_into_parent == 1 {
                "its"
            } else {
                "their"
            },
            if stats.moved_into_parent == 1 {
                "it"
            } else {
                "them"
            },
            stats.max_moved_ns as f64 / 1e6,
            Replay::CLOCK_TOLERANCE_NS as f64 / 1e6,
        );
    }
    if errors.bad_lines + errors.bad_other > 0 {
        say!(
            "omni-metrics: {}",
            could_not_read(errors.bad_lines, errors.bad_other)
        );
    }
}

/// Writes the HTML page of each summarized scope with requests (runs, or `all`; online
/// requests, each its own scope, only when they are all there is); `false` on a failure,
/// said on stderr.
fn write_html(path: &std::path::Path, kept: &CaptureSink) -> bool {
    let (summaries, requests) = kept.take();
    // Grouped once: online requests are a scope each, so a scan per scope is quadratic.
    let mut by_scope: std::collections::HashMap<String, Vec<_>> = Default::default();
    for r in requests {
        by_scope.entry(r.scope.clone()).or_default().push(r);
    }
    let of_scope = |scope: &str| by_scope.get(scope).map_or(&[][..], Vec::as_slice);
    // Scopes of more than one request first; single online requests only if nothing else.
    let mut scopes: Vec<_> = summaries
        .iter()
        .filter(|s| of_scope(&s.scope).len() > 1)
        .collect();
    if scopes.is_empty() {
        scopes = summaries.iter().collect();
    }
    let per_scope = path.to_str().is_some_and(|p| p.contains("{scope}"));
    if scopes.len() > 1 && !per_scope {
        say!(
            "omni-metrics: the input holds {} scopes; put `{{scope}}` in the --html file name \
             for one page each, or use --group-by all for one page of everything",
            scopes.len()
        );
        return false;
    }
    let mut ok = true;
    let mut pages = crate::report::html::PageWriter::new(path);
    for summary in scopes {
        match pages.write(summary, of_scope(&summary.scope)) {
            Ok(written) => say!("omni-metrics: wrote {}", written.display()),
            Err(e) => {
                say!("omni-metrics: {e}");
                ok = false;
            }
        }
    }
    ok
}

/// Writes each record on standard output as it finishes: its tables as the layer prints them
/// (`Display`), or its JSON line.
struct Stdout {
    format: Format,
    /// Tables: each request's too, not only the summaries.
    request_tables: bool,
    /// Whether a failed write was said (once).
    said: std::sync::atomic::AtomicBool,
}

impl Stdout {
    /// Writes `text` in one call; a failure (a closed pipe) is said once.
    fn write(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            if !self.said.swap(true, std::sync::atomic::Ordering::Relaxed) {
                say!("omni-metrics: cannot write the report on standard output: {e}");
            }
        }
    }
}

impl Sink for Stdout {
    fn on_request(&self, request: &RequestE2EStats) {
        match self.format {
            Format::Table if self.request_tables => self.write(&request.to_string()),
            Format::Table => {}
            Format::Jsonl => {
                let line = Record::Request(request.clone()).to_json_line();
                self.write(&(line + "\n"));
            }
        }
    }

    fn on_summary(&self, summary: &OverallSummary) {
        match self.format {
            Format::Table => self.write(&summary.to_string()),
            Format::Jsonl => {
                let line = Record::Summary(summary.clone()).to_json_line();
                self.write(&(line + "\n"));
            }
        }
    }
}

/// `n` and the word for one or many.
fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn could_not_read(lines: u64, other: u64) -> String {
    match (lines, other) {
        (l, 0) => format!("{} could not be read", plural(l, "line", "lines")),
        (0, o) => format!(
            "{} could not be read",
            plural(o, "record or file", "records or files")
        ),
        (l, o) => format!(
            "{} and {} could not be read",
            plural(l, "line", "lines"),
            plural(o, "record or file", "records or files")
        ),
    }
}
