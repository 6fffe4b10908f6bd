//! Did a change help? Two runs compared measure by measure, with honest uncertainty: the
//! `omni-metrics compare BASE NEW` command as a library. Feature `replay`.
//!
//! Each side is a [`Side`]: the request records of one run (or of several, pooled) and the
//! summaries of its runs, read from the files the report command reads and from the JSON
//! lines the layer writes ([`load`]), or built in code ([`Side::new`]). [`Compare::run`]
//! gives a [`Comparison`]: for every [`Measure`] both sides have, the base and new p50, p90,
//! p99 and mean, the change, and a [`Verdict`] from a confidence interval on the difference;
//! [`Warning`]s first, for runs that do not compare like with like. It renders as a table,
//! JSON lines or Markdown ([`Comparison::to_table`], [`Comparison::to_jsonl`],
//! [`Comparison::to_markdown`]) and as one HTML page ([`html::render`]); [`FailOn`] is the
//! CI gate (`--fail-on 'e2e_p99>+5%'`).
//!

mod gate;
pub(crate) mod html;
mod input;
mod measures;
mod render;
mod stats;
mod warnings;

use std::collections::HashSet;

pub(crate) use gate::FailOn;
pub(crate) use input::{LoadError, Loaded, load};
pub(crate) use measures::Measure;
pub(crate) use warnings::Warning;

use measures::{Kind, Values};

use crate::replay::GroupBy;
use crate::stats::{OverallSummary, RequestE2EStats};

/// One side of a comparison: the requests of a run (or of several runs pooled) and the
/// figures of each run, for throughput.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub(crate) struct Side {
    /// What the side is called in the outputs (its files, or `base` and `new`).
    pub label: String,
    /// Every request, of any status; latencies are compared over the `ok` ones.
    pub requests: Vec<RequestE2EStats>,
    /// The side's runs, each with its wall time: throughput is one value per run.
    pub runs: Vec<RunFigures>,
    /// Whether the requests carry their times (read from traces; records read back from
    /// JSON lines do not), for the HTML page's timelines.
    pub timed: bool,
}

/// The figures of one run that throughput is computed from (its `Overall Summary`).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub(crate) struct RunFigures {
    /// The run's scope.
    pub scope: String,
    /// `e2e_requests`: its completed requests.
    pub requests: u64,
    /// `e2e_wall_time_ms`.
    pub wall_ms: f64,
    /// `e2e_total_tokens`.
    pub tokens: u64,
}

impl RunFigures {
    /// A run's figures from its summary.
    pub(crate) fn of(summary: &OverallSummary) -> Self {
        Self {
            scope: summary.scope.clone(),
            requests: summary.e2e_requests,
            wall_ms: summary.e2e_wall_time_ms,
            tokens: summary.e2e_total_tokens,
        }
    }
}

impl Side {
    /// A side of `requests` (any status, any scope, pooled) and the summaries of their
    /// runs. Summaries of online requests (a scope that is a request's own id) are not
    /// runs and are left out. The requests' times are taken as real
    /// ([`Side::timed`]) when any request has a start.
    pub(crate) fn new(
        label: impl Into<String>,
        requests: Vec<RequestE2EStats>,
        summaries: &[OverallSummary],
    ) -> Self {
        let online: HashSet<&str> = requests
            .iter()
            .filter(|r| r.scope == r.request_id)
            .map(|r| r.scope.as_str())
            .collect();
        let runs = summaries
            .iter()
            .filter(|s| !online.contains(s.scope.as_str()))
            .map(RunFigures::of)
            .collect();
        let timed = requests.iter().any(|r| r.start_ns > 0 || r.end_ns > 0);
        Self {
            label: label.into(),
            requests,
            runs,
            timed,
        }
    }

    /// The side `label` of what was `loaded`, grouped by `group_by`: with
    /// [`GroupBy::All`], every request of every file, pooled (throughput is then one value
    /// per run); with [`GroupBy::Run`], the one run the files hold, or the run named
    /// `scope`, or, when the files hold online requests only, those.
    ///
    /// # Errors
    ///
    /// [`LoadError`]: no request, the scope asked for is not there, or several runs and
    /// none chosen (the error lists them).
    pub(crate) fn from_loaded(
        label: impl Into<String>,
        loaded: Loaded,
        group_by: GroupBy,
        scope: Option<&str>,
    ) -> Result<Self, LoadError> {
        let label = label.into();
        let Loaded {
            requests,
            summaries,
            timed,
            ..
        } = loaded;
        if requests.is_empty() {
            return Err(LoadError::no_requests(&label));
        }
        let is_online = |r: &RequestE2EStats| r.scope == r.request_id;
        let mut scopes: Vec<&str> = Vec::new();
        let mut seen = HashSet::new();
        for r in requests.iter().filter(|r| !is_online(r)) {
            if seen.insert(r.scope.as_str()) {
                scopes.push(r.scope.as_str());
            }
        }
        let chosen: Option<String> = match (scope, group_by) {
            (Some(scope), _) => {
                if !seen.contains(scope) {
                    return Err(LoadError::unknown_scope(&label, scope, &scopes));
                }
                Some(scope.to_owned())
            }
            (None, GroupBy::Run) => match scopes.as_slice() {
                [] => None,
                [one] if requests.iter().all(|r| !is_online(r)) => Some((*one).to_owned()),
                _ => {
                    let online = requests.iter().filter(|r| is_online(r)).count();
                    return Err(LoadError::several_runs(&label, &scopes, online));
                }
            },
            (None, _) => None,
        };
        let (requests, summaries): (Vec<_>, Vec<_>) = match &chosen {
            Some(scope) => (
                requests.into_iter().filter(|r| &r.scope == scope).collect(),
                summaries
                    .into_iter()
                    .filter(|s| &s.scope == scope)
                    .collect(),
            ),
            None => (requests, summaries),
        };
        let mut side = Side::new(label, requests, &summaries);
        side.timed &= timed;
        Ok(side)
    }
}

/// A statistic of a measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub(crate) enum Stat {
    /// The median (nearest rank).
    P50,
    /// The 90th percentile (nearest rank).
    P90,
    /// The 99th percentile (nearest rank).
    P99,
    /// The mean (of the requests; of the runs for a throughput).
    Mean,
    /// The share of requests, in percent (error and abort rates).
    Rate,
}

impl Stat {
    /// Its name in `--fail-on` and the outputs: `p50`, `p90`, `p99`, `mean`, `rate`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Stat::P50 => "p50",
            Stat::P90 => "p90",
            Stat::P99 => "p99",
            Stat::Mean => "mean",
            Stat::Rate => "rate",
        }
    }

    /// The statistic named `name`.
    pub(crate) fn parse(name: &str) -> Option<Stat> {
        [Stat::P50, Stat::P90, Stat::P99, Stat::Mean, Stat::Rate]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// What the interval says of a statistic, or of a measure (a row).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub(crate) enum Verdict {
    /// The interval of the difference excludes 0, on the better side (lower, or higher
    /// for a throughput).
    Better,
    /// The interval excludes 0 on the worse side.
    Worse,
    /// A row only: some statistics better, others worse (a distribution that changed shape).
    Mixed,
    /// The interval includes 0: no change this comparison can tell from noise.
    NoChange,
    /// Too few values for an interval (a p99 needs about 600 requests a side, a
    /// throughput two runs a side), or the measure is on one side only.
    NotTested,
}

impl Verdict {
    /// `better`, `worse`, `mixed`, `no change`, `not tested`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::Mixed => "mixed",
            Verdict::NoChange => "no change",
            Verdict::NotTested => "not tested",
        }
    }

    /// Whether it is a real change (better, worse or mixed).
    pub(crate) fn is_change(self) -> bool {
        matches!(self, Verdict::Better | Verdict::Worse | Verdict::Mixed)
    }
}

/// One statistic of one measure on both sides.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub(crate) struct StatChange {
    /// Which statistic.
    pub stat: Stat,
    /// Its value on the base side, in the measure's unit.
    pub base: f64,
    /// Its value on the new side.
    pub new: f64,
    /// `(new - base) / base` in percent; `None` when `base` is 0.
    pub change_pct: Option<f64>,
    /// The interval of `new - base` at the comparison's per-test level; `None` when not
    /// tested.
    pub interval: Option<(f64, f64)>,
    /// What the interval says.
    pub verdict: Verdict,
}

impl StatChange {
    /// `new - base`, in the measure's unit (percentage points for a rate).
    pub(crate) fn difference(&self) -> f64 {
        self.new - self.base
    }
}

/// One measure on both sides: a row of the comparison.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub(crate) struct Row {
    /// What is compared.
    pub measure: Measure,
    /// Values on the base side (requests, or runs for a throughput).
    pub base_n: u64,
    /// Values on the new side.
    pub new_n: u64,
    /// p50, p90, p99 and mean (or the rate, or the mean over runs).
    pub stats: Vec<StatChange>,
    /// The row's verdict: better or worse when every statistic that changed changed that
    /// way, mixed when they disagree.
    pub verdict: Verdict,
}

impl Row {
    /// The statistic `stat` of the row, if it has it.
    pub(crate) fn stat(&self, stat: Stat) -> Option<&StatChange> {
        self.stats.iter().find(|s| s.stat == stat)
    }

    /// The largest change in percent among the statistics that changed for real (0 if
    /// none): rows sort by it.
    pub(crate) fn largest_real_change_pct(&self) -> f64 {
        self.stats
            .iter()
            .filter(|s| s.verdict.is_change())
            .map(|s| match s.change_pct {
                Some(p) => p.abs(),
                // A change from 0 is as large as it gets.
                None => f64::MAX,
            })
            .fold(0.0, f64::max)
    }
}

/// Who a side is, in counts: said at the top of every output.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub(crate) struct SideCounts {
    /// The side's label.
    pub label: String,
    /// Requests of any status.
    pub requests: u64,
    /// Requests that ended `ok`.
    pub ok: u64,
    /// Requests that ended in error.
    pub errors: u64,
    /// Requests aborted.
    pub aborted: u64,
    /// Runs (with their summary).
    pub runs: u64,
}

/// The comparison of two sides: warnings, then a row per measure, the largest real
/// changes first.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub(crate) struct Comparison {
    /// The base side, in counts.
    pub base: SideCounts,
    /// The new side, in counts.
    pub new: SideCounts,
    /// The confidence of the whole comparison (0.95 by default): the chance that no row of
    /// a comparison of two runs without a real change says better or worse is at least this.
    pub confidence: f64,
    /// How many statistics were tested; each interval is at level `1 - (1 - confidence) /
    /// tests` (Bonferroni).
    pub tests: u64,
    /// Ways the runs differ beyond the measures: said first, never hidden in a ratio.
    pub warnings: Vec<Warning>,
    /// One row per measure either side has (a measure zero on both sides is left out), the
    /// largest real changes first, then the measures with no detectable change.
    pub rows: Vec<Row>,
}

impl Comparison {
    /// The row of `measure`, if either side has it.
    pub(crate) fn row(&self, measure: Measure) -> Option<&Row> {
        self.rows.iter().find(|r| r.measure == measure)
    }

    #[cfg(test)]
    /// The rows with a real change (better, worse or mixed).
    pub(crate) fn changes(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.verdict.is_change())
    }

    /// The per-test level each interval is computed at: `1 - (1 - confidence) / tests`.
    pub(crate) fn per_test_confidence(&self) -> f64 {
        1.0 - (1.0 - self.confidence) / self.tests.max(1) as f64
    }
}

/// Compares two [`Side`]s; see the [module docs](self) for the method.
#[derive(Clone, Debug)]
#[must_use = "a Compare does nothing until `run` is called"]
pub(crate) struct Compare {
    confidence: f64,
    token_tolerance: f64,
}

impl Default for Compare {
    fn default() -> Self {
        Self::new()
    }
}

impl Compare {
    /// The default confidence of a comparison: see [`Compare::with_confidence`].
    pub(crate) const DEFAULT_CONFIDENCE: f64 = 0.95;

    /// The default tolerance on the workload's tokens per request: see
    /// [`Compare::with_token_tolerance`].
    pub(crate) const DEFAULT_TOKEN_TOLERANCE: f64 = 0.05;

    /// A comparison at [`Compare::DEFAULT_CONFIDENCE`] and
    /// [`Compare::DEFAULT_TOKEN_TOLERANCE`].
    pub(crate) fn new() -> Self {
        Self {
            confidence: Self::DEFAULT_CONFIDENCE,
            token_tolerance: Self::DEFAULT_TOKEN_TOLERANCE,
        }
    }

    /// The confidence of the whole comparison (`--confidence`): two runs without a real
    /// difference show no better or worse row with at least this probability (every test
    /// is at level `1 - (1 - confidence) / tests`, Bonferroni). Clamped to [0.5, 0.999999].
    /// Default: [`Compare::DEFAULT_CONFIDENCE`].
    pub(crate) fn with_confidence(mut self, confidence: f64) -> Self {
        self.confidence = if confidence.is_finite() {
            confidence.clamp(0.5, 0.999_999)
        } else {
            Self::DEFAULT_CONFIDENCE
        };
        self
    }

    /// How far the mean tokens per request (prompt, generated) may differ between the
    /// sides, as a fraction, before the workload is said to differ (`--token-tolerance`).
    /// Default: [`Compare::DEFAULT_TOKEN_TOLERANCE`] (5%).
    pub(crate) fn with_token_tolerance(mut self, tolerance: f64) -> Self {
        self.token_tolerance = if tolerance.is_finite() {
            tolerance.max(0.0)
        } else {
            Self::DEFAULT_TOKEN_TOLERANCE
        };
        self
    }

    /// Compares `base` with `new`. Never panics; every number in the result is finite.
    pub(crate) fn run(&self, base: &Side, new: &Side) -> Comparison {
        let (vb, vn) = (Values::of(base), Values::of(new));
        let counts = |side: &Side, v: &Values| SideCounts {
            label: side.label.clone(),
            requests: v.total,
            ok: v.total - v.errors - v.aborted,
            errors: v.errors,
            aborted: v.aborted,
            runs: side.runs.len() as u64,
        };
        let mut measures: Vec<Measure> = vb
            .samples
            .keys()
            .chain(vn.samples.keys())
            .copied()
            .collect();
        if vb.errors + vn.errors > 0 {
            measures.push(Measure::ErrorRate);
        }
        if vb.aborted + vn.aborted > 0 {
            measures.push(Measure::AbortRate);
        }
        if vb.audio_gapped + vn.audio_gapped > 0 {
            measures.push(Measure::AudioGapRate);
        }
        measures.sort_unstable();
        measures.dedup();
        measures.retain(|m| m.kind() == Kind::Proportion || !(vb.all_zero(*m) && vn.all_zero(*m)));

        // First the estimates, to count the tests; then the intervals at the shared level.
        let planned: Vec<Planned> = measures.iter().map(|m| plan(*m, &vb, &vn)).collect();
        let tests: u64 = planned.iter().map(|p| p.testable()).sum();
        let alpha = (1.0 - self.confidence) / tests.max(1) as f64;
        let mut rows: Vec<Row> = planned.into_iter().map(|p| p.finish(alpha)).collect();
        rows.sort_by(|a, b| {
            let tier = |r: &Row| match r.verdict {
                v if v.is_change() => 0,
                Verdict::NoChange => 1,
                _ => 2,
            };
            tier(a)
                .cmp(&tier(b))
                .then_with(|| {
                    b.largest_real_change_pct()
                        .total_cmp(&a.largest_real_change_pct())
                })
                .then_with(|| a.measure.order_key().cmp(&b.measure.order_key()))
        });
        let warnings = warnings::find(base, new, &vb, &vn, self.token_tolerance);
        Comparison {
            base: counts(base, &vb),
            new: counts(new, &vn),
            confidence: self.confidence,
            tests,
            warnings,
            rows,
        }
    }
}

/// A row's estimates before the level of its intervals is known.
struct Planned {
    measure: Measure,
    base_n: u64,
    new_n: u64,
    stats: Vec<PlannedStat>,
}

enum PlannedStat {
    Estimates(Stat, Option<stats::Estimate>, Option<stats::Estimate>),
    Proportion { base: (u64, u64), new: (u64, u64) },
}

impl Planned {
    fn testable(&self) -> u64 {
        self.stats
            .iter()
            .filter(|s| match s {
                PlannedStat::Estimates(_, Some(b), Some(n)) => b.se.is_some() && n.se.is_some(),
                PlannedStat::Estimates(..) => false,
                PlannedStat::Proportion { base, new } => base.1 > 0 && new.1 > 0,
            })
            .count() as u64
    }

    fn finish(self, alpha: f64) -> Row {
        let higher_better = self.measure.higher_is_better();
        let judge = |interval: Option<(f64, f64)>| match interval {
            None => Verdict::NotTested,
            Some((lo, _)) if lo > 0.0 => {
                if higher_better {
                    Verdict::Better
                } else {
                    Verdict::Worse
                }
            }
            Some((_, hi)) if hi < 0.0 => {
                if higher_better {
                    Verdict::Worse
                } else {
                    Verdict::Better
                }
            }
            Some(_) => Verdict::NoChange,
        };
        let stats: Vec<StatChange> = self
            .stats
            .into_iter()
            .filter_map(|s| match s {
                PlannedStat::Estimates(stat, b, n) => {
                    let interval = match (&b, &n) {
                        (Some(b), Some(n)) => stats::difference_interval(b, n, alpha),
                        _ => None,
                    };
                    let (base, new) = (b.map(|e| e.value), n.map(|e| e.value));
                    if base.is_none() && new.is_none() {
                        return None;
                    }
                    let (base, new) = (base.unwrap_or(0.0), new.unwrap_or(0.0));
                    let known = b.is_some() && n.is_some();
                    Some(StatChange {
                        stat,
                        base: crate::stats::finite(base),
                        new: crate::stats::finite(new),
                        change_pct: if known { change_pct(base, new) } else { None },
                        interval: interval.map(finite_pair),
                        verdict: judge(interval),
                    })
                }
                PlannedStat::Proportion { base, new } => {
                    let pct = |(k, n): (u64, u64)| {
                        if n == 0 {
                            0.0
                        } else {
                            k as f64 * 100.0 / n as f64
                        }
                    };
                    let interval =
                        stats::proportion_difference(base.0, base.1, new.0, new.1, alpha)
                            .map(|(lo, hi)| (lo * 100.0, hi * 100.0));
                    let (b, n) = (pct(base), pct(new));
                    Some(StatChange {
                        stat: Stat::Rate,
                        base: b,
                        new: n,
                        change_pct: change_pct(b, n),
                        interval: interval.map(finite_pair),
                        verdict: judge(interval),
                    })
                }
            })
            .collect();
        let any = |v: Verdict| stats.iter().any(|s| s.verdict == v);
        let verdict = match (any(Verdict::Better), any(Verdict::Worse)) {
            (true, true) => Verdict::Mixed,
            (true, false) => Verdict::Better,
            (false, true) => Verdict::Worse,
            _ if any(Verdict::NoChange) => Verdict::NoChange,
            _ => Verdict::NotTested,
        };
        Row {
            measure: self.measure,
            base_n: self.base_n,
            new_n: self.new_n,
            stats,
            verdict,
        }
    }
}

fn finite_pair((lo, hi): (f64, f64)) -> (f64, f64) {
    (crate::stats::finite(lo), crate::stats::finite(hi))
}

/// `(new - base) / base` in percent, `None` for a base of 0.
fn change_pct(base: f64, new: f64) -> Option<f64> {
    let pct = (new - base) / base.abs() * 100.0;
    (base != 0.0 && pct.is_finite()).then_some(pct)
}

/// The estimates of `measure` on both sides.
fn plan(measure: Measure, vb: &Values, vn: &Values) -> Planned {
    let empty: &[f64] = &[];
    let (b, n) = (
        vb.samples.get(&measure).map_or(empty, Vec::as_slice),
        vn.samples.get(&measure).map_or(empty, Vec::as_slice),
    );
    let mut planned = Planned {
        measure,
        base_n: b.len() as u64,
        new_n: n.len() as u64,
        stats: Vec::new(),
    };
    match measure.kind() {
        Kind::Latency | Kind::Ratio => {
            for (stat, p) in stats::QUANTILES {
                planned.stats.push(PlannedStat::Estimates(
                    stat,
                    stats::quantile_estimate(b, p),
                    stats::quantile_estimate(n, p),
                ));
            }
            planned.stats.push(PlannedStat::Estimates(
                Stat::Mean,
                stats::mean_estimate(b),
                stats::mean_estimate(n),
            ));
        }
        Kind::PerRun => planned.stats.push(PlannedStat::Estimates(
            Stat::Mean,
            stats::mean_estimate(b),
            stats::mean_estimate(n),
        )),
        Kind::Proportion => {
            let (base, new) = (vb.proportion(measure), vn.proportion(measure));
            planned.base_n = base.1;
            planned.new_n = new.1;
            planned.stats.push(PlannedStat::Proportion { base, new });
        }
    }
    planned
}

#[cfg(test)]
mod tests;

// The examples of this module, as unit tests (the module is internal to the crate).
#[cfg(test)]
mod examples {
    #[test]
    fn example_module() -> Result<(), Box<dyn std::error::Error>> {
        use crate::compare::{Compare, Measure, Side, Stat, Verdict};
        use crate::stats::{RequestE2EStats, StageRequestStats};

        // 1,000 requests a side; stage 1 is 20% slower in the new run.
        let run = |scale: f64| -> Vec<RequestE2EStats> {
            (0..1000)
                .map(|i| {
                    let jitter = (i % 97) as f64;
                    RequestE2EStats {
                        request_id: format!("r-{i}"),
                        e2e_total_ms: 300.0 + jitter + 200.0 * scale,
                        stages: vec![
                            StageRequestStats {
                                stage_id: 0,
                                stage_gen_time_ms: 100.0 + jitter,
                                ..Default::default()
                            },
                            StageRequestStats {
                                stage_id: 1,
                                stage_gen_time_ms: (100.0 + jitter) * scale,
                                ..Default::default()
                            },
                        ],
                        ..Default::default()
                    }
                })
                .collect()
        };
        let base = Side::new("base", run(1.0), &[]);
        let new = Side::new("new", run(1.2), &[]);
        let comparison = Compare::new().run(&base, &new);

        let row = comparison
            .row(Measure::StageGen(1))
            .expect("stage 1 is in both runs");
        assert_eq!(row.verdict, Verdict::Worse);
        let mean = row.stat(Stat::Mean).expect("a mean");
        assert!((mean.change_pct.unwrap_or(0.0) - 20.0).abs() < 1e-9);
        assert_eq!(
            comparison.row(Measure::StageGen(0)).map(|r| r.verdict),
            Some(Verdict::NoChange)
        );
        // The largest real change comes first.
        assert_eq!(comparison.rows[0].measure, Measure::StageGen(1));
        Ok(())
    }

    #[test]
    fn example_compare() -> Result<(), Box<dyn std::error::Error>> {
        use crate::compare::Compare;
        let compare = Compare::new()
            .with_confidence(0.99)
            .with_token_tolerance(0.10);
        drop(compare);
        Ok(())
    }
}
