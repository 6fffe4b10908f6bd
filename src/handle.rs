//! Reading the layer's results from code ([`MetricsHandle`]): cumulative totals, the online
//! aggregates, open runs and the latest summary, from the layer's shared core.

use std::sync::Arc;

use crate::shared::Shared;
use crate::stats::{EdgeName, OverallSummary};

/// Reads an [`OmniMetricsLayer`](crate::OmniMetricsLayer)'s results; cheap to clone, usable
/// from any thread.
///
/// ```
/// let layer = omni_metrics::OmniMetricsLayer::builder().with_console(false).build()?;
/// let handle = layer.handle();
/// assert_eq!(handle.totals().requests_ok, 0);
/// assert!(handle.last_summary().is_none());
/// # Ok::<(), omni_metrics::BuildError>(())
/// ```
#[doc = include_str!("../docs/reference/aggregates.md")]
#[derive(Clone, Debug)]
pub struct MetricsHandle {
    shared: Arc<Shared>,
}

/// Cumulative totals since the layer was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Totals {
    /// Requests finished with `status = ok`.
    pub requests_ok: u64,
    /// Requests finished with `status = error`.
    pub requests_error: u64,
    /// Requests dropped unfinished (`status = aborted`).
    pub requests_aborted: u64,
    /// `e2e_total_tokens` summed over `ok` requests.
    pub total_tokens: u64,
    /// Bytes moved between stages by `ok` requests.
    pub transfer_bytes: u64,
    /// Runs (`omni.run`) summarized.
    pub runs: u64,
    /// Spans that broke the convention (each reported once as a warning).
    pub invalid_spans: u64,
    /// Stages and transfers done in this process for requests owned by another
    /// ([`crate::propagation`]); they are in that process's tables.
    pub remote_spans: u64,
    /// Stages and transfers that closed after their request was aborted (spawned work a
    /// cancellation did not stop): the request ended at its abort, so they are in none of
    /// its numbers.
    pub after_abort_spans: u64,
}

/// What is in flight now, from the spans open at the instant it is read
/// ([`MetricsHandle::live`]): vLLM-Omni's `num_requests_running`, `num_requests_waiting`
/// and `stage_inflight_requests`, and the transfers under way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveGauges {
    /// Open `omni.request` spans.
    pub requests_running: u64,
    /// Of those, the requests inside an open `omni.queue` span, or in no stage yet (no stage
    /// open, none finished).
    pub requests_waiting: u64,
    /// Requests with an open `omni.stage` span, by stage and replica (a chunked stage's
    /// request counts once), in stage then replica order.
    pub stages_in_flight: Vec<StageInFlight>,
    /// Open `omni.transfer` spans, by edge, in edge order.
    pub transfers_open: Vec<(EdgeName, u64)>,
}

/// Requests in flight on one stage (and replica), in [`LiveGauges::stages_in_flight`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StageInFlight {
    /// The stage.
    pub stage_id: u64,
    /// Its replica, when the stage spans say (`replica_id`).
    pub replica_id: Option<u64>,
    /// Requests with an open span of it.
    pub requests: u64,
}

impl LiveGauges {
    fn from_counts(mut counts: crate::shared::LiveCounts) -> Self {
        counts.stages.sort_unstable();
        counts.stages.dedup();
        let mut stages_in_flight: Vec<StageInFlight> = Vec::new();
        for (stage_id, replica_id, _) in counts.stages {
            match stages_in_flight.last_mut() {
                Some(last) if (last.stage_id, last.replica_id) == (stage_id, replica_id) => {
                    last.requests = last.requests.saturating_add(1);
                }
                _ => stages_in_flight.push(StageInFlight {
                    stage_id,
                    replica_id,
                    requests: 1,
                }),
            }
        }
        counts.transfers.sort_unstable();
        let mut transfers_open: Vec<(EdgeName, u64)> = Vec::new();
        for edge in counts.transfers {
            match transfers_open.last_mut() {
                Some((last, n)) if *last == edge => *n = n.saturating_add(1),
                _ => transfers_open.push((edge, 1)),
            }
        }
        Self {
            requests_running: counts.requests_running,
            requests_waiting: counts.requests_waiting,
            stages_in_flight,
            transfers_open,
        }
    }
}

impl MetricsHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// A reference to the layer's state that does not keep it alive (a metrics export's,
    /// told of the layer at build: [`Sink::on_layer_built`](crate::report::Sink::on_layer_built)).
    #[cfg_attr(not(any(feature = "otlp", feature = "prometheus")), allow(dead_code))]
    pub(crate) fn downgrade(&self) -> std::sync::Weak<Shared> {
        Arc::downgrade(&self.shared)
    }

    /// The handle of a layer state still alive.
    #[cfg_attr(not(any(feature = "otlp", feature = "prometheus")), allow(dead_code))]
    pub(crate) fn upgrade(weak: &std::sync::Weak<Shared>) -> Option<Self> {
        weak.upgrade().map(Self::new)
    }

    /// The model the layer serves, when named.
    #[cfg_attr(not(any(feature = "otlp", feature = "prometheus")), allow(dead_code))]
    pub(crate) fn model_name(&self) -> Option<Arc<str>> {
        self.shared.model_name()
    }

    /// A snapshot of the cumulative totals.
    ///
    /// Consistent: every request is in it whole (its status, tokens and bytes) or not at
    /// all, so `total_tokens` always belongs to the requests counted. Counters saturate at
    /// `u64::MAX`.
    pub fn totals(&self) -> Totals {
        let s = &self.shared;
        let sum = s.counts();
        Totals {
            requests_ok: sum.requests.ok,
            requests_error: sum.requests.error,
            requests_aborted: sum.requests.aborted,
            total_tokens: sum.total_tokens,
            transfer_bytes: sum.transfer_bytes,
            runs: s.runs_summarized(),
            invalid_spans: s.diagnostics.invalid_spans(),
            remote_spans: s.diagnostics.remote_spans(),
            after_abort_spans: s.diagnostics.after_abort_spans(),
        }
    }

    /// The runs and requests whose spans are open now, by id: what would be missing from
    /// the records if the process ended now. [`crate::OmniGuard`] reports them when it
    /// drops.
    ///
    /// ```
    /// use tracing_subscriber::prelude::*;
    /// let layer = omni_metrics::OmniMetricsLayer::builder().with_console(false).build()?;
    /// let handle = layer.handle();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     let request = tracing::info_span!("omni.request", request_id = "r-1");
    ///     assert_eq!(handle.open_spans().requests, ["r-1"]);
    ///     drop(request);
    ///     assert!(handle.open_spans().is_empty());
    /// });
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn open_spans(&self) -> OpenSpans {
        let s = &self.shared;
        let mut runs = s.open_run_names();
        runs.sort();
        let mut requests = Vec::new();
        s.each_open_request(&mut |id| {
            requests.push(id.map_or_else(|| "(no request_id)".to_owned(), str::to_owned));
        });
        requests.sort();
        OpenSpans { runs, requests }
    }

    /// What is in flight now: requests running and waiting, requests per stage (and
    /// replica), transfers per edge, from the spans open in every copy of the layer at this
    /// instant (see [`LiveGauges`]).
    ///
    /// A scan of the open spans: the reader (a scrape, the periodic line) pays for it, not
    /// the engine's requests; an engine thread may wait for the scan of its shard.
    ///
    /// ```
    /// use omni_metrics::instrument::Request;
    /// use tracing_subscriber::prelude::*;
    /// let layer = omni_metrics::OmniMetricsLayer::builder().with_console(false).build()?;
    /// let handle = layer.handle();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     let request = Request::start("r-1");
    ///     let thinker = request.stage(0);
    ///     let live = handle.live();
    ///     assert_eq!((live.requests_running, live.requests_waiting), (1, 0));
    ///     assert_eq!(live.stages_in_flight[0].requests, 1);
    ///     drop(thinker);
    ///     request.finish();
    /// });
    /// assert_eq!(handle.live().requests_running, 0);
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn live(&self) -> LiveGauges {
        LiveGauges::from_counts(self.shared.live())
    }

    /// The latest finished run's (`omni.run`) summary; online requests are in
    /// [`MetricsHandle::totals`], [`MetricsHandle::cumulative_summary`] and
    /// [`MetricsHandle::window_summary`], and reach the sinks with a summary each.
    pub fn last_summary(&self) -> Option<OverallSummary> {
        self.shared.last_summary()
    }

    /// The cumulative summary: every request the layer has seen finish, online and in runs,
    /// since it was built or since [`MetricsHandle::reset_cumulative`]; scope `cumulative`.
    ///
    /// The same [`OverallSummary`] as a run's (see
    /// [Online aggregates](Self#online-aggregates)): `e2e_requests`
    /// counts the `ok` requests, `e2e_wall_time_ms` runs from the start (or reset) to the
    /// last completion, and `distributions` has their latency percentiles. Requests that
    /// finish while it is taken may be left to the next read. All zero with
    /// [`Builder::with_aggregates(false)`](crate::Builder::with_aggregates).
    ///
    /// Merges the stripes' buckets on the calling thread; the engine's threads wait for
    /// none of it.
    ///
    /// ```
    /// use omni_metrics::instrument::Request;
    /// use tracing_subscriber::prelude::*;
    ///
    /// let layer = omni_metrics::OmniMetricsLayer::builder().with_console(false).build()?;
    /// let handle = layer.handle();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     for i in 0..20 {
    ///         let request = Request::start(&format!("r-{i}"));
    ///         request.stage(0).tokens_in(10).tokens_out(5);
    ///         request.finish();
    ///     }
    /// });
    /// let summary = handle.cumulative_summary();
    /// assert_eq!((summary.e2e_requests, summary.e2e_total_tokens), (20, 300));
    /// let latency = summary.distributions.get(omni_metrics::stats::Quantity::RequestLatency);
    /// assert_eq!(latency.map(|l| l.count), Some(20));
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn cumulative_summary(&self) -> OverallSummary {
        let (merged, _) = self.shared.merged();
        OverallSummary {
            model_name: self.shared.model_name(),
            ..merged.cumulative_summary()
        }
    }

    /// Starts the cumulative summary again: [`MetricsHandle::cumulative_summary`] counts
    /// from now on, its `e2e_wall_time_ms` from now. The window summary and
    /// [`MetricsHandle::totals`] are not reset.
    ///
    /// ```
    /// use omni_metrics::instrument::Request;
    /// use tracing_subscriber::prelude::*;
    ///
    /// let layer = omni_metrics::OmniMetricsLayer::builder().with_console(false).build()?;
    /// let handle = layer.handle();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     Request::start("before").finish();
    ///     handle.reset_cumulative();
    ///     Request::start("after").finish();
    /// });
    /// assert_eq!(handle.cumulative_summary().e2e_requests, 1);
    /// assert_eq!(handle.totals().requests_ok, 2);
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn reset_cumulative(&self) {
        let (mut merged, now) = self.shared.merged();
        merged.reset_cumulative(now);
    }

    /// The window summary: the requests completed in the last window
    /// ([`Builder::with_summary_window`](crate::Builder::with_summary_window), default
    /// [`DEFAULT_SUMMARY_WINDOW`](crate::Builder::DEFAULT_SUMMARY_WINDOW)), on the
    /// layer's clock; scope `window`.
    ///
    /// It covers at least the window and at most one bucket (a sixth of it) more; its
    /// `e2e_wall_time_ms` runs from the start of the oldest bucket to the last completion.
    /// [The window](Self#the-window) has the exact definition.
    ///
    /// ```
    /// use omni_metrics::testing::ManualClock; // feature `testing`
    /// use omni_metrics::instrument::Request;
    /// use tracing_subscriber::prelude::*;
    ///
    /// let clock = ManualClock::new();
    /// let layer = omni_metrics::OmniMetricsLayer::builder()
    ///     .with_console(false)
    ///     .with_clock(clock.clone())
    ///     .build()?;
    /// let handle = layer.handle();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     Request::start("r-1").finish();
    /// });
    /// assert_eq!(handle.window_summary().e2e_requests, 1);
    /// clock.advance_ms(120_000.0); // two minutes later
    /// assert_eq!(handle.window_summary().e2e_requests, 0);
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn window_summary(&self) -> OverallSummary {
        let (merged, now) = self.shared.merged();
        OverallSummary {
            model_name: self.shared.model_name(),
            ..merged.window_summary(self.shared.aggregates(), now)
        }
    }

    /// The window summary's length.
    ///
    /// ```
    /// let layer = omni_metrics::OmniMetricsLayer::builder().with_console(false).build()?;
    /// assert_eq!(layer.handle().summary_window(), omni_metrics::Builder::DEFAULT_SUMMARY_WINDOW);
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn summary_window(&self) -> std::time::Duration {
        self.shared.aggregates().window()
    }

    /// Prints the cumulative summary on the layer's console (its `Overall Summary` and,
    /// for two or more requests, `Distributions` tables, as a run's), through the console
    /// writer thread. Returns whether it was queued: `false` when the layer has no console
    /// or its queue is full. A summary's `Display` renders it the same way, to a `String`
    /// (`summary.to_string()`).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let console = std::io::sink(); // stderr by default
    /// let layer = omni_metrics::OmniMetricsLayer::builder()
    ///     .with_console(omni_metrics::Destination::writer(console))
    ///     .build()?;
    /// let handle = layer.handle();
    /// assert!(handle.print_summary());
    /// handle.flush(Duration::from_secs(2))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn print_summary(&self) -> bool {
        let Some(writer) = self.shared.sink_writer.get() else {
            return false;
        };
        writer.console_summary(self.cumulative_summary())
    }

    /// The summaries of the runs (`omni.run`) still open, as they stand: their completed
    /// requests so far, `e2e_wall_time_ms` from the run's start to its last completion so
    /// far. Sorted by scope; a run without a `run_id` yet (and no request finished) is
    /// `(unnamed run)`.
    ///
    /// Each run's summary is computed under that run's lock, which its requests take when
    /// they finish: they wait for that one computation at most.
    ///
    /// ```
    /// use omni_metrics::instrument::Run;
    /// use tracing_subscriber::prelude::*;
    ///
    /// let layer = omni_metrics::OmniMetricsLayer::builder().with_console(false).build()?;
    /// let handle = layer.handle();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     let run = Run::with_id("batch-7");
    ///     run.request("r-1").finish();
    ///     let open = handle.open_run_summaries();
    ///     assert_eq!(open.len(), 1);
    ///     assert_eq!((open[0].scope.as_str(), open[0].e2e_requests), ("batch-7", 1));
    ///     drop(run);
    ///     assert!(handle.open_run_summaries().is_empty());
    /// });
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn open_run_summaries(&self) -> Vec<OverallSummary> {
        let runs = self.shared.open_runs();
        // Run locks are taken with no registry lock held.
        let model_name = self.shared.model_name();
        let mut summaries: Vec<OverallSummary> = runs
            .iter()
            .map(|run| OverallSummary {
                model_name: model_name.clone(),
                ..run.snapshot()
            })
            .collect();
        summaries.sort_by(|a, b| a.scope.cmp(&b.scope));
        summaries
    }

    /// Waits until the console tables and JSON-lines records queued so far are written, at
    /// most `timeout`; safe to call any time, from any thread (not from a [`Sink`] of yours).
    ///
    /// Call it before reading a records file the layer writes. Dropping the
    /// [`OmniGuard`](crate::OmniGuard) does it with
    /// [`OmniMetricsLayer::FLUSH_TIMEOUT`](crate::OmniMetricsLayer::FLUSH_TIMEOUT).
    ///
    /// [`Sink`]: crate::report::Sink
    ///
    /// # Errors
    ///
    /// [`FlushError`](crate::report::FlushError) if records were still queued at the time
    /// limit (a blocked console or disk).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let layer = omni_metrics::OmniMetricsLayer::builder()
    ///     .with_jsonl(omni_metrics::Destination::writer(std::io::sink()))
    ///     .build()?;
    /// layer.handle().flush(Duration::from_secs(2))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn flush(&self, timeout: std::time::Duration) -> Result<(), crate::report::FlushError> {
        match self.shared.sink_writer.get() {
            Some(writer) => writer.flush(timeout),
            None => Ok(()),
        }
    }

    /// Records the built-in console and JSON-lines sinks lost so far (queue full, failed
    /// writes); see [`SinkLosses`](crate::report::SinkLosses).
    pub fn sink_losses(&self) -> crate::report::SinkLosses {
        self.shared
            .sink_writer
            .get()
            .map(|writer| writer.losses())
            .unwrap_or_default()
    }

    /// Flushes within `timeout`, then reports once what the built-in sinks lost.
    pub(crate) fn shutdown_sinks(
        &self,
        timeout: std::time::Duration,
    ) -> Result<(), crate::report::FlushError> {
        match self.shared.sink_writer.get() {
            Some(writer) => writer.shutdown(timeout),
            None => Ok(()),
        }
    }
}

/// Runs and requests still open, from [`MetricsHandle::open_spans`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenSpans {
    /// Open `omni.run` spans, by `run_id` (`(unnamed run)` before one is known).
    pub runs: Vec<String>,
    /// Open `omni.request` spans, by `request_id`.
    pub requests: Vec<String>,
}

impl OpenSpans {
    /// Whether nothing is open.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty() && self.requests.is_empty()
    }
}

impl std::fmt::Display for OpenSpans {
    /// `1 run (run-3) and 2 requests (r-1, r-2)`, at most 10 ids of each listed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn list(f: &mut std::fmt::Formatter<'_>, what: &str, ids: &[String]) -> std::fmt::Result {
            const SHOWN: usize = 10;
            let plural = if ids.len() == 1 { "" } else { "s" };
            write!(f, "{} {what}{plural} (", ids.len())?;
            for (i, id) in ids.iter().take(SHOWN).enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{}", id.escape_debug())?;
            }
            if ids.len() > SHOWN {
                write!(f, ", and {} more", ids.len() - SHOWN)?;
            }
            f.write_str(")")
        }
        match (self.runs.is_empty(), self.requests.is_empty()) {
            (true, true) => f.write_str("nothing"),
            (false, true) => list(f, "run", &self.runs),
            (true, false) => list(f, "request", &self.requests),
            (false, false) => {
                list(f, "run", &self.runs)?;
                f.write_str(" and ")?;
                list(f, "request", &self.requests)
            }
        }
    }
}
