//! Latency distributions: [`DistributionRecorder`] collects a scope's
//! [`Distributions`](crate::stats::Distributions) (what they are, and how exact, is
//! documented there): one HDR histogram per [`Quantity`] (stage ids and edges are the only
//! labels), values in whole microseconds with [`SIGNIFICANT_DIGITS`] = 3. Its memory
//! depends on the range of the values, never on how many were recorded: no per-request data
//! is kept.

use std::fmt;

use hdrhistogram::Histogram;
use smallvec::SmallVec;

use crate::stats::{Distributions, LatencyStats, Quantity};
use crate::stats::{EdgeName, RequestE2EStats, counts_in_summary, finite};

/// Significant decimal digits kept by each histogram: 3, so a recorded value is known to
/// within 0.1% (relative), or to the microsecond below 2.048 ms.
pub(crate) const SIGNIFICANT_DIGITS: u8 = 3;

/// The largest value a histogram records, in microseconds (one week): larger values are
/// recorded as this.
pub(crate) const MAX_RECORDED_US: u64 = 7 * 24 * 3_600 * 1_000_000;

/// The most quantities one [`DistributionRecorder`] tracks (request latency, two per stage,
/// one per edge). Values of quantities beyond it are left out, so an engine that numbers
/// stages wildly cannot grow the memory without bound.
pub(crate) const MAX_QUANTITIES: usize = 64;

/// How many quantities a [`DistributionRecorder`] holds without allocating its list (the
/// histograms are allocated apart, from a quantity's second value on).
const INLINE_QUANTITIES: usize = 12;

/// Collects [`Distributions`]: one histogram per quantity, made when the quantity gets its
/// second value (a single value is kept as is), so a scope of one request of up to 12
/// quantities (four stages and three edges) allocates nothing.
///
/// Memory is bounded by the range of the values, not their number: at most
/// [`MAX_QUANTITIES`] histograms of about 250 KiB each when values span a microsecond to a
/// week, 16-150 KiB each for values up to a minute. Values are microseconds, rounded; a
/// value that is not finite or is negative is left out, one above [`MAX_RECORDED_US`] is
/// recorded as that. Two recorders merge ([`DistributionRecorder::merge`]), e.g. one per
/// thread or per run.
#[derive(Clone, Default)]
pub(crate) struct DistributionRecorder {
    series: SmallVec<[(Quantity, Series); INLINE_QUANTITIES]>,
    /// Where the next quantity is looked for first: requests record their quantities in the
    /// same order each time, so the one after the last found is usually the next.
    cursor: usize,
}

impl fmt::Debug for DistributionRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Counts per quantity; the histograms' buckets would be tens of thousands of lines.
        f.debug_map()
            .entries(self.series.iter().map(|(q, s)| (q.to_string(), s.count)))
            .finish()
    }
}

impl DistributionRecorder {
    /// An empty recorder.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Records one value of `quantity`, in ms. A value that is not finite or is negative
    /// is left out (counted nowhere); so is a new quantity beyond [`MAX_QUANTITIES`].
    #[inline]
    #[cfg_attr(not(test), allow(dead_code))] // the tests record values directly
    pub(crate) fn record(&mut self, quantity: Quantity, ms: f64) {
        self.record_inline(quantity, ms);
    }

    /// [`DistributionRecorder::record`], inlined where a request's values are recorded.
    #[inline(always)]
    fn record_inline(&mut self, quantity: Quantity, ms: f64) {
        let Some(us) = to_us(ms) else {
            return;
        };
        if let Some(series) = self.series_mut(quantity) {
            series.record(us);
        }
    }

    /// Records a finished request's quantities (request latency, each stage's compute and
    /// queue time, each edge's transfer time) if it ended `ok`; other requests are not
    /// counted, as in the summary.
    pub(crate) fn add_request(&mut self, request: &RequestE2EStats) {
        if !counts_in_summary(request.status) {
            return;
        }
        // A request starts where the last one started.
        self.cursor = 0;
        self.record_inline(Quantity::RequestLatency, request.e2e_total_ms);
        if let Some(ms) = request.time_to_first_output_ms {
            self.record_inline(Quantity::RequestFirstOutput, ms);
        }
        if let Some(ms) = request.time_to_first_audio_ms {
            self.record_inline(Quantity::RequestFirstAudio, ms);
        }
        for s in &request.stages {
            self.record_inline(Quantity::StageGenTime(s.stage_id), s.stage_gen_time_ms);
            if let Some(replica) = s.replica_id {
                let quantity = Quantity::StageReplicaGenTime {
                    stage: s.stage_id,
                    replica,
                };
                self.record_inline(quantity, s.stage_gen_time_ms);
            }
            self.record_inline(Quantity::StageQueueTime(s.stage_id), s.queue_time_ms);
            if let Some(ms) = s.time_to_first_output_ms {
                self.record_inline(Quantity::StageFirstOutput(s.stage_id), ms);
            }
            // One series lookup for all the stage's gaps (the lookup's hint is for the
            // next quantity, not the same one again).
            let mut gaps = s
                .inter_output_gaps_ms
                .iter()
                .filter_map(|ms| to_us(*ms))
                .peekable();
            if gaps.peek().is_some() {
                if let Some(series) = self.series_mut(Quantity::StageInterOutput(s.stage_id)) {
                    gaps.for_each(|us| series.record(us));
                }
            }
        }
        for e in &request.transfers {
            let edge = EdgeName {
                from: e.from_stage,
                to: e.to_stage,
            };
            self.record_inline(Quantity::TransferTime(edge), e.total_time_ms());
            if let (Some(from_replica), Some(to_replica)) = (e.from_replica, e.to_replica) {
                let quantity = Quantity::TransferReplicaTime {
                    edge,
                    from_replica,
                    to_replica,
                };
                self.record_inline(quantity, e.total_time_ms());
            }
        }
    }

    /// Adds everything `other` recorded, as if it had been recorded here.
    pub(crate) fn merge(&mut self, other: &DistributionRecorder) {
        for (quantity, theirs) in &other.series {
            if let Some(ours) = self.series_mut(*quantity) {
                ours.merge(theirs);
            }
        }
    }

    /// The stats of every quantity recorded so far, in the table's order.
    pub(crate) fn distributions(&self) -> Distributions {
        let mut entries: Vec<(Quantity, LatencyStats)> = self
            .series
            .iter()
            .filter(|(_, s)| s.count > 0)
            .map(|(q, s)| (*q, s.stats()))
            .collect();
        entries.sort_by_key(|e| e.0);
        // A stage's (an edge's) replicas are broken down only where more than one (pair)
        // served it.
        let group = |q: &Quantity| match *q {
            Quantity::StageReplicaGenTime { stage, .. } => Some((0, stage, 0)),
            Quantity::TransferReplicaTime { edge, .. } => Some((1, edge.from, edge.to)),
            _ => None,
        };
        let groups: Vec<(u8, u64, u64)> = entries.iter().filter_map(|(q, _)| group(q)).collect();
        entries.retain(|(q, _)| {
            group(q).is_none_or(|g| groups.iter().filter(|other| **other == g).count() > 1)
        });
        Distributions::from_sorted(entries)
    }

    /// How many quantities it tracks (at most [`MAX_QUANTITIES`]).
    #[cfg_attr(not(test), allow(dead_code))] // the tests measure it
    pub(crate) fn quantities(&self) -> usize {
        self.series.len()
    }

    /// The heap memory it holds, in bytes: the histograms' buckets, and its list of
    /// quantities once that outgrows its inline room. It grows with the range of the
    /// values, never with their number.
    #[cfg_attr(not(test), allow(dead_code))] // the tests measure it
    pub(crate) fn heap_bytes(&self) -> usize {
        let list = if self.series.spilled() {
            self.series.capacity() * std::mem::size_of::<(Quantity, Series)>()
        } else {
            0
        };
        self.series
            .iter()
            .filter_map(|(_, s)| s.hist.as_deref())
            .fold(list, |sum, h| {
                sum + std::mem::size_of::<Histogram<u64>>()
                    + h.distinct_values() * std::mem::size_of::<u64>()
            })
    }

    /// The series of `quantity`, made if new and there is room.
    #[inline]
    fn series_mut(&mut self, quantity: Quantity) -> Option<&mut Series> {
        // The hinted slot first: a request records its quantities in the order the last
        // one did, so this is one comparison per value.
        let at = self.cursor;
        if self.series.get(at).is_some_and(|(q, _)| *q == quantity) {
            self.cursor = at + 1;
            return self.series.get_mut(at).map(|(_, s)| s);
        }
        self.find_or_add(quantity)
    }

    /// [`DistributionRecorder::series_mut`] off the hinted slot: a search, or a new series.
    #[inline(never)]
    fn find_or_add(&mut self, quantity: Quantity) -> Option<&mut Series> {
        let at = match self.series.iter().position(|(q, _)| *q == quantity) {
            Some(at) => at,
            None if self.series.len() < MAX_QUANTITIES => {
                self.series.push((quantity, Series::default()));
                self.series.len() - 1
            }
            None => return None,
        };
        self.cursor = at + 1;
        self.series.get_mut(at).map(|(_, s)| s)
    }
}

/// Milliseconds to whole microseconds, clamped to [`MAX_RECORDED_US`]; `None` for a value
/// that is not finite or is negative.
#[inline(always)]
fn to_us(ms: f64) -> Option<u64> {
    /// [`MAX_RECORDED_US`] in ms: exact, as it is a whole number of ms.
    const MAX_MS: f64 = (MAX_RECORDED_US / 1000) as f64;
    if (0.0..MAX_MS).contains(&ms) {
        // Half up, by truncation (`ms` is not negative): `f64::round` is a libm call on the
        // baseline x86-64 target, a fifth of the cost of recording a value. The result is at
        // most `MAX_RECORDED_US`, far below 2^63, so the signed conversion (one
        // instruction, where the unsigned one takes a dozen) is exact.
        Some((ms * 1000.0 + 0.5) as i64 as u64)
    } else if ms >= MAX_MS && ms.is_finite() {
        Some(MAX_RECORDED_US)
    } else {
        // NaN (every comparison with it is false), negative values and infinity.
        None
    }
}

/// One quantity's values. With one value there is no histogram (the value is `max_us`);
/// the histogram is made at the second.
#[derive(Clone, Debug, Default)]
struct Series {
    count: u64,
    /// Sum of the values, for an exact mean (saturating: a week of microseconds times 2^40
    /// values still fits).
    sum_us: u64,
    max_us: u64,
    hist: Option<Box<Histogram<u64>>>,
}

impl Series {
    #[inline]
    fn record(&mut self, us: u64) {
        match self.hist.as_deref_mut() {
            Some(h) => record_into(h, us, 1),
            // The second value: the histogram is made now.
            None if self.count > 0 => {
                if let Some(h) = self.histogram() {
                    record_into(h, us, 1);
                }
            }
            None => {}
        }
        self.count = self.count.saturating_add(1);
        self.sum_us = self.sum_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
    }

    fn merge(&mut self, other: &Series) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        if let Some(h) = self.histogram() {
            match other.hist.as_deref() {
                Some(theirs) => {
                    if h.add(theirs).is_err() {
                        // Cannot happen with auto-resizing histograms of one precision;
                        // value by value then.
                        for v in theirs.iter_recorded() {
                            record_into(h, v.value_iterated_to(), v.count_at_value());
                        }
                    }
                }
                None => record_into(h, other.max_us, other.count),
            }
        }
        self.count = self.count.saturating_add(other.count);
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The histogram, made from the single value kept so far if there is none yet. `None`
    /// only if a histogram cannot be made (not with [`SIGNIFICANT_DIGITS`] = 3).
    #[cold]
    fn histogram(&mut self) -> Option<&mut Histogram<u64>> {
        if self.hist.is_none() {
            let mut h = Histogram::<u64>::new(SIGNIFICANT_DIGITS).ok()?;
            if self.count > 0 {
                // Without a histogram every value so far is `max_us` (there is one).
                record_into(&mut h, self.max_us, self.count);
            }
            self.hist = Some(Box::new(h));
        }
        self.hist.as_deref_mut()
    }

    fn stats(&self) -> LatencyStats {
        let ms = |us: u64| finite(us as f64 / 1000.0);
        let at = |q: f64| match self.hist.as_deref() {
            Some(h) => h.value_at_quantile(q).min(self.max_us),
            None => self.max_us,
        };
        LatencyStats {
            count: self.count,
            mean_ms: if self.count == 0 {
                0.0
            } else {
                finite(self.sum_us as f64 / self.count as f64 / 1000.0)
            },
            p50_ms: ms(at(0.50)),
            p90_ms: ms(at(0.90)),
            p99_ms: ms(at(0.99)),
            max_ms: ms(self.max_us),
        }
    }
}

/// Records `n` times `us` (at most [`MAX_RECORDED_US`]); the histogram grows to take it.
#[inline]
fn record_into(h: &mut Histogram<u64>, us: u64, n: u64) {
    let us = us.min(MAX_RECORDED_US);
    if h.record_n(us, n).is_err() {
        // Growing failed (not on 64-bit targets): clamp to what it holds.
        h.saturating_record_n(us, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{RequestE2EStats, RequestStatus, StageRequestStats};

    /// Moved from tests/distributions/jsonl.rs (the recorder is internal).
    #[test]
    fn issue9_2_numbers_stay_finite_whatever_the_input() {
        use crate::report::Record;
        use crate::stats::OverallSummary;
        use serde_json::Value;
        let mut recorder = DistributionRecorder::new();
        for ms in [f64::NAN, f64::INFINITY, -3.0, f64::MAX, 1e-9, 0.0] {
            recorder.record(Quantity::RequestLatency, ms);
            recorder.record(Quantity::StageQueueTime(7), ms);
        }
        let summary = OverallSummary {
            scope: "odd".into(),
            e2e_requests: 3,
            distributions: recorder.distributions(),
            ..Default::default()
        };
        let line = Record::Summary(summary.clone()).to_json_line();
        let record: Value = serde_json::from_str(&line).expect("valid JSON");
        let latency = &record["distributions"]["e2e_total_ms"];
        assert_eq!(latency["count"], 3, "{line}");
        for key in ["mean_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms"] {
            assert!(
                latency[key].as_f64().is_some_and(f64::is_finite),
                "{key}: {line}"
            );
        }
        let table = summary.to_string();
        assert!(table.contains("stage_7_queue_time_ms"), "{table}");
        assert!(!table.contains("NaN") && !table.contains("inf"), "{table}");
    }

    #[track_caller]
    fn assert_ordered(s: &LatencyStats, what: &str) {
        let all = [s.mean_ms, s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms];
        assert!(
            all.iter().all(|v| v.is_finite() && *v >= 0.0),
            "{what}: {s:?}"
        );
        assert!(
            s.p50_ms <= s.p90_ms && s.p90_ms <= s.p99_ms && s.p99_ms <= s.max_ms,
            "{what}: {s:?}"
        );
        assert!(s.mean_ms <= s.max_ms, "{what}: {s:?}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Moved from tests/distributions/properties.rs (the recorder is internal).
        #[test]
        fn issue9_2_any_input_is_safe_and_only_valid_values_count(
            values in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::any::<f64>(),
                    0.0..1e7f64,
                    proptest::prelude::Just(f64::NAN),
                    proptest::prelude::Just(f64::INFINITY),
                ],
                0..200,
            ),
            split in 0usize..200,
        ) {
            // Recorded in two recorders merged, and in one: the same.
            let (mut a, mut b, mut one) =
                (DistributionRecorder::new(), DistributionRecorder::new(), DistributionRecorder::new());
            for (i, v) in values.iter().enumerate() {
                let part = if i < split { &mut a } else { &mut b };
                part.record(Quantity::RequestLatency, *v);
                one.record(Quantity::RequestLatency, *v);
            }
            a.merge(&b);
            let merged = a.distributions();
            proptest::prop_assert_eq!(&merged, &one.distributions());
            let valid = values.iter().filter(|v| v.is_finite() && **v >= 0.0).count() as u64;
            let stats = merged.get(Quantity::RequestLatency);
            proptest::prop_assert_eq!(stats.map_or(0, |s| s.count), valid);
            if let Some(s) = stats {
                assert_ordered(&s, "e2e_total_ms");
            }
        }
    }

    #[test]
    fn percentiles_are_by_nearest_rank_mean_and_max_exact() {
        let mut recorder = DistributionRecorder::new();
        for ms in [12.0, 15.5, 11.0, 250.0] {
            recorder.record(Quantity::RequestLatency, ms);
        }
        let latency = recorder
            .distributions()
            .get(Quantity::RequestLatency)
            .unwrap_or_default();
        assert_eq!(latency.count, 4);
        assert!(latency.p50_ms >= 12.0 && latency.p50_ms <= 12.0 * 1.001); // the 2nd of 4
        assert_eq!(latency.max_ms, 250.0);
        assert_eq!(latency.mean_ms, 72.125);
    }

    #[test]
    fn ok_requests_only_and_recorders_merge() {
        let request = |ms: f64, status| RequestE2EStats {
            e2e_total_ms: ms,
            status,
            stages: vec![StageRequestStats {
                stage_id: 0,
                stage_gen_time_ms: ms / 2.0,
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut a = DistributionRecorder::new();
        a.add_request(&request(10.0, RequestStatus::Ok));
        a.add_request(&request(99.0, RequestStatus::Error)); // not counted
        let mut b = DistributionRecorder::new();
        b.add_request(&request(30.0, RequestStatus::Ok));
        a.merge(&b);
        let d = a.distributions();
        assert_eq!(
            d.get(Quantity::RequestLatency).map(|s| (s.count, s.max_ms)),
            Some((2, 30.0))
        );
        assert_eq!(
            d.get(Quantity::StageGenTime(0)).map(|s| s.mean_ms),
            Some(10.0)
        );
    }

    #[test]
    fn a_single_value_is_exact_and_allocates_nothing() {
        let mut r = DistributionRecorder::new();
        r.record(Quantity::RequestLatency, 41_299.133);
        assert_eq!(r.heap_bytes(), 0);
        let s = r
            .distributions()
            .get(Quantity::RequestLatency)
            .unwrap_or_default();
        assert_eq!(s.count, 1);
        for v in [s.mean_ms, s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms] {
            assert_eq!(v, 41_299.133);
        }
    }

    #[test]
    fn one_request_of_four_stages_and_three_edges_allocates_nothing() {
        let mut r = DistributionRecorder::new();
        r.record(Quantity::RequestLatency, 1.0);
        for id in 0..4 {
            r.record(Quantity::StageGenTime(id), 1.0);
            r.record(Quantity::StageQueueTime(id), 1.0);
        }
        for from in 0..3 {
            r.record(Quantity::TransferTime(EdgeName { from, to: from + 1 }), 1.0);
        }
        assert_eq!((r.quantities(), r.heap_bytes()), (12, 0));
    }

    #[test]
    fn bad_values_are_left_out_and_huge_ones_clamped() {
        let mut r = DistributionRecorder::new();
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, -0.0001] {
            r.record(Quantity::RequestLatency, v);
        }
        assert!(r.distributions().is_empty());
        r.record(Quantity::RequestLatency, -0.0);
        r.record(Quantity::RequestLatency, f64::MAX);
        r.record(Quantity::RequestLatency, 1e300);
        let s = r
            .distributions()
            .get(Quantity::RequestLatency)
            .unwrap_or_default();
        assert_eq!(s.count, 3);
        let week_ms = MAX_RECORDED_US as f64 / 1000.0;
        assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (week_ms, week_ms, week_ms));
        assert!(s.mean_ms.is_finite());
    }

    #[test]
    fn percentiles_are_nearest_rank_within_a_tenth_of_a_percent() {
        let mut r = DistributionRecorder::new();
        // 1..=1000 ms in a scrambled order.
        let values: Vec<u64> = (0..1000u64).map(|i| (i * 7919) % 1000 + 1).collect();
        for v in &values {
            r.record(Quantity::StageGenTime(3), *v as f64);
        }
        let s = r
            .distributions()
            .get(Quantity::StageGenTime(3))
            .unwrap_or_default();
        assert_eq!(s.count, 1000);
        assert_eq!(s.mean_ms, 500.5);
        assert_eq!(s.max_ms, 1000.0);
        for (got, want) in [(s.p50_ms, 500.0), (s.p90_ms, 900.0), (s.p99_ms, 990.0)] {
            assert!(got >= want && got <= want * 1.001, "{got} vs {want}");
        }
    }

    #[test]
    fn merging_equals_recording_in_one() {
        let values = |range: std::ops::Range<u64>| range.map(|v| (v * v % 5003) as f64 * 1.7);
        let mut a = DistributionRecorder::new();
        let mut b = DistributionRecorder::new();
        let mut all = DistributionRecorder::new();
        for v in values(0..300) {
            a.record(Quantity::RequestLatency, v);
            all.record(Quantity::RequestLatency, v);
        }
        // b: one value only (no histogram yet) of latency, several of an edge.
        b.record(Quantity::RequestLatency, 77.0);
        all.record(Quantity::RequestLatency, 77.0);
        let edge = Quantity::TransferTime(EdgeName { from: 0, to: 1 });
        for v in values(300..400) {
            b.record(edge, v);
            all.record(edge, v);
        }
        a.merge(&b);
        assert_eq!(a.distributions(), all.distributions());
        // Merging into an empty recorder copies.
        let mut empty = DistributionRecorder::new();
        empty.merge(&a);
        assert_eq!(empty.distributions(), all.distributions());
    }

    #[test]
    fn quantities_beyond_the_cap_are_left_out() {
        let mut r = DistributionRecorder::new();
        for id in 0..(MAX_QUANTITIES as u64 + 10) {
            r.record(Quantity::StageGenTime(id), 1.0);
        }
        assert_eq!(r.quantities(), MAX_QUANTITIES);
        assert!(
            r.distributions()
                .get(Quantity::StageGenTime(MAX_QUANTITIES as u64))
                .is_none()
        );
    }

    #[test]
    fn quantities_sort_in_the_tables_order() {
        let e = |from, to| Quantity::TransferTime(EdgeName { from, to });
        let mut qs = [
            e(1, 2),
            Quantity::StageQueueTime(0),
            e(0, 1),
            Quantity::StageGenTime(1),
            Quantity::RequestLatency,
            Quantity::StageGenTime(0),
        ];
        qs.sort();
        let names: Vec<String> = qs.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "e2e_total_ms",
                "stage_0_gen_time_ms",
                "stage_0_queue_time_ms",
                "stage_1_gen_time_ms",
                "transfer_0->1_time_ms",
                "transfer_1->2_time_ms",
            ]
        );
    }

    /// A million values of four quantities: the memory stays what the values' range needs.
    #[test]
    fn memory_is_bounded_by_the_range_not_the_count() {
        let mut r = DistributionRecorder::new();
        let quantities = [
            Quantity::RequestLatency,
            Quantity::StageGenTime(0),
            Quantity::StageQueueTime(0),
            Quantity::TransferTime(EdgeName { from: 0, to: 1 }),
        ];
        // Values from 0 to a week: every histogram grows to its largest.
        let value = |i: u64| ((i * 2_654_435_761) % (MAX_RECORDED_US + 1)) as f64 / 1000.0;
        let mut after_first_thousand = 0;
        for i in 0..1_000_000u64 {
            if i == 1_000 {
                for q in quantities {
                    r.record(q, MAX_RECORDED_US as f64 / 1000.0);
                }
                after_first_thousand = r.heap_bytes();
            }
            for q in quantities {
                r.record(q, value(i));
            }
        }
        assert_eq!(r.heap_bytes(), after_first_thousand);
        let per_histogram = r.heap_bytes() / quantities.len();
        assert!(per_histogram < 300 << 10, "{per_histogram} bytes");
        let d = r.distributions();
        assert_eq!(
            d.get(Quantity::RequestLatency).map(|s| s.count),
            Some(1_000_001)
        );
    }
}
