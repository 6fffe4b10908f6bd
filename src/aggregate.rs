//! Online aggregates: the cumulative and window summaries and the periodic line; what they
//! are is documented on [`MetricsHandle`](crate::MetricsHandle)
//! (`docs/reference/aggregates.md`).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::accumulate::ScopeAcc;
use crate::report::table::{format_float, format_int};
use crate::stats::{self, OverallSummary, Quantity, RequestE2EStats};

/// [`Builder::DEFAULT_SUMMARY_WINDOW`](crate::Builder::DEFAULT_SUMMARY_WINDOW).
pub(crate) const DEFAULT_SUMMARY_WINDOW: Duration = Duration::from_secs(60);

/// The shortest window summary: 1 ms; a shorter one is raised to it.
pub(crate) const MIN_SUMMARY_WINDOW: Duration = Duration::from_millis(1);

/// The buckets a window is cut into: 6 (10 s each for the default minute). The window
/// summary merges the current bucket and the 6 before it (see `MetricsHandle`'s docs).
pub(crate) const WINDOW_BUCKETS: u32 = 6;

/// The shortest interval of the periodic line: 10 ms; a shorter one is raised to it.
pub(crate) const MIN_LOG_INTERVAL: Duration = Duration::from_millis(10);

pub(crate) use crate::stats::keys::{CUMULATIVE_SCOPE, WINDOW_SCOPE};

/// Buckets of the merged ring: the current one and the [`WINDOW_BUCKETS`] before it.
const RING: u64 = WINDOW_BUCKETS as u64 + 1;

/// The requests of one stripe completed in one bucket period.
#[derive(Debug)]
pub(crate) struct Bucket {
    period: u64,
    acc: ScopeAcc,
}

/// A stripe's share of the aggregates: the bucket its threads record into, and finished
/// buckets not merged yet (their hand-over found a reader holding the merged aggregates).
#[derive(Debug, Default)]
pub(crate) struct StripeBuffer {
    current: Option<Bucket>,
    retired: Vec<Bucket>,
}

impl StripeBuffer {
    /// Adds a finished request that completed in `period`. When that starts a new bucket,
    /// returns the buckets to hand over (the previous one, and any kept back).
    #[inline]
    pub(crate) fn add(&mut self, request: &RequestE2EStats, period: u64) -> Option<Vec<Bucket>> {
        if let Some(bucket) = self.current.as_mut().filter(|b| b.period >= period) {
            // A request of an earlier period (another thread of this stripe, whose clock
            // read came first) goes into the current bucket: off by one bucket at most.
            bucket.acc.add(request);
            return None;
        }
        let mut acc = ScopeAcc::new(0);
        acc.add(request);
        let previous = self.current.replace(Bucket { period, acc });
        if previous.is_none() && self.retired.is_empty() {
            return None;
        }
        let mut handover = std::mem::take(&mut self.retired);
        handover.extend(previous);
        Some(handover)
    }

    /// Keeps buckets whose hand-over failed, for the next reader or bucket.
    pub(crate) fn keep(&mut self, buckets: Vec<Bucket>) {
        self.retired.extend(buckets);
    }

    /// Takes every bucket out (a reader merges them).
    pub(crate) fn take(&mut self) -> impl Iterator<Item = Bucket> + use<> {
        let retired = std::mem::take(&mut self.retired);
        self.current.take().into_iter().chain(retired)
    }
}

/// The merged aggregates: the cumulative scope and the window's ring of buckets.
#[derive(Debug)]
pub(crate) struct Merged {
    cumulative: ScopeAcc,
    /// Bucket `p` lives at `p % RING`.
    ring: Vec<Option<Bucket>>,
}

/// The layer's aggregates, shared by its handles.
#[derive(Debug)]
pub(crate) struct Aggregates {
    enabled: bool,
    /// The layer's build time on its clock: bucket 0 starts there.
    origin_ns: u64,
    bucket_ns: u64,
    window: Duration,
    merged: Mutex<Merged>,
}

impl Aggregates {
    pub(crate) fn new(enabled: bool, origin_ns: u64, window: Duration) -> Self {
        let window = window.max(MIN_SUMMARY_WINDOW);
        let window_ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        Self {
            enabled,
            origin_ns,
            bucket_ns: (window_ns / u64::from(WINDOW_BUCKETS)).max(1),
            window,
            merged: Mutex::new(Merged {
                cumulative: ScopeAcc::new(origin_ns),
                ring: (0..RING).map(|_| None).collect(),
            }),
        }
    }

    /// Whether requests are aggregated at all.
    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// The window's length.
    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    /// The bucket period of a completion at `ns` on the layer's clock.
    #[inline]
    pub(crate) fn period(&self, ns: u64) -> u64 {
        ns.saturating_sub(self.origin_ns) / self.bucket_ns
    }

    /// The merged aggregates, for a reader (which may wait for another reader).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Merged> {
        self.merged.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Merges `buckets` unless a reader holds the merged aggregates; then gives them back.
    /// `now_period` is the period of the request that retired them.
    pub(crate) fn try_merge(&self, buckets: Vec<Bucket>, now_period: u64) -> Option<Vec<Bucket>> {
        let mut merged = match self.merged.try_lock() {
            Ok(merged) => merged,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Some(buckets),
        };
        for bucket in buckets {
            merged.absorb(bucket, now_period);
        }
        None
    }

    /// The start of the window that ends at `now_ns`: the start of its oldest bucket, never
    /// before the layer's build.
    pub(crate) fn window_start(&self, now_ns: u64) -> u64 {
        let first = self.period(now_ns).saturating_sub(RING - 1);
        self.origin_ns
            .saturating_add(first.saturating_mul(self.bucket_ns))
    }
}

impl Merged {
    /// Adds a stripe's bucket to the cumulative scope, and to the window unless it is
    /// already out of it at `now_period`.
    pub(crate) fn absorb(&mut self, bucket: Bucket, now_period: u64) {
        self.cumulative.merge(&bucket.acc);
        if bucket.period.saturating_add(RING - 1) < now_period {
            return;
        }
        let Some(slot) = self.ring.get_mut((bucket.period % RING) as usize) else {
            return;
        };
        match slot {
            Some(kept) if kept.period == bucket.period => kept.acc.merge(&bucket.acc),
            // A later period holds the slot: this bucket is out of the window.
            Some(kept) if kept.period > bucket.period => {}
            // Empty, or a period out of the window now: the bucket moves in, unmerged.
            _ => *slot = Some(bucket),
        }
    }

    /// Starts the cumulative scope again at `now_ns`.
    pub(crate) fn reset_cumulative(&mut self, now_ns: u64) {
        self.cumulative = ScopeAcc::new(now_ns);
    }

    /// The cumulative summary.
    pub(crate) fn cumulative_summary(&self) -> OverallSummary {
        self.cumulative.summary(CUMULATIVE_SCOPE.to_owned())
    }

    /// The summary of the window that ends at `now_ns`.
    pub(crate) fn window_summary(&self, aggregates: &Aggregates, now_ns: u64) -> OverallSummary {
        let start = aggregates.window_start(now_ns);
        let first = aggregates.period(start);
        let mut window = ScopeAcc::new(start);
        for bucket in self.ring.iter().flatten().filter(|b| b.period >= first) {
            window.merge(&bucket.acc);
        }
        window.summary(WINDOW_SCOPE.to_owned())
    }

    /// The heap memory of the distributions, in bytes: of the ring's buckets, and of the
    /// cumulative scope.
    #[cfg(test)]
    fn heap_bytes(&self) -> (usize, usize) {
        let ring = self.ring.iter().flatten().map(|b| b.acc.heap_bytes()).sum();
        (ring, self.cumulative.heap_bytes())
    }
}

/// The periodic line for a window `summary` that covers `covered_ns` up to now, with
/// `(running, waiting)` requests open now; `None` when there is nothing to say (no request
/// finished, none open).
pub(crate) fn periodic_line(
    summary: &OverallSummary,
    covered_ns: u64,
    (running, waiting): (u64, u64),
) -> Option<String> {
    let finished = summary
        .e2e_requests
        .saturating_add(summary.e2e_requests_error)
        .saturating_add(summary.e2e_requests_aborted);
    if finished == 0 && running == 0 {
        return None;
    }
    let seconds = covered_ns as f64 / 1e9;
    let per_s = |n: u64| stats::per_second(n, stats::ns_to_ms(covered_ns));
    // The latency leads; the rates are over the wall time the line covers.
    let mut line = format!("omni-metrics: last {seconds:.1} s: ");
    if let Some(latency) = summary.distributions.get(Quantity::RequestLatency) {
        line.push_str(&format!(
            "e2e latency mean {} ms p50 {} ms p99 {} ms; ",
            format_float(latency.mean_ms),
            format_float(latency.p50_ms),
            format_float(latency.p99_ms)
        ));
    }
    line.push_str(&format!(
        "{} ok, {} error, {} aborted requests ({:.2} req/s), {} tokens/s, {} running, {} waiting\n",
        format_int(summary.e2e_requests),
        format_int(summary.e2e_requests_error),
        format_int(summary.e2e_requests_aborted),
        per_s(summary.e2e_requests),
        one_decimal(per_s(summary.e2e_total_tokens)),
        format_int(running),
        format_int(waiting),
    ));
    Some(line)
}

/// `v` with thousands separators and one decimal: `5400.04` -> `5,400.0`.
fn one_decimal(v: f64) -> String {
    let mut text = format_float(v);
    text.truncate(text.len().saturating_sub(2));
    // format_float rounds to three decimals; one more digit cut is a truncation, fine for a
    // rate in a log line.
    text
}

/// Why a [`LOG_INTERVAL_ENV`](crate::LOG_INTERVAL_ENV) value cannot be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadInterval;

/// Reads an interval: a number with a unit (`500ms`, `10s`, `1.5s`, `2m`, `1h`), or a bare
/// number of seconds; zero or `off` is `None` (off).
pub(crate) fn parse_interval(text: &str) -> Result<Option<Duration>, BadInterval> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| BadInterval)?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(BadInterval),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(BadInterval);
    }
    if seconds == 0.0 {
        return Ok(None);
    }
    Duration::try_from_secs_f64(seconds)
        .map(Some)
        .map_err(|_| BadInterval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{RequestStatus, StageRequestStats};

    const SECOND: u64 = 1_000_000_000;

    fn request(end_ns: u64, ms: f64) -> RequestE2EStats {
        RequestE2EStats {
            status: RequestStatus::Ok,
            e2e_total_ms: ms,
            e2e_total_tokens: 10,
            stages: vec![StageRequestStats {
                stage_id: 0,
                stage_gen_time_ms: ms,
                start_ns: end_ns.saturating_sub(1000),
                end_ns,
                ..Default::default()
            }],
            end_ns,
            ..Default::default()
        }
    }

    /// Records `requests` through one stripe, handing buckets over as the layer does.
    fn record(aggregates: &Aggregates, stripe: &mut StripeBuffer, requests: &[RequestE2EStats]) {
        for r in requests {
            let period = aggregates.period(r.end_ns);
            if let Some(handover) = stripe.add(r, period) {
                if let Some(back) = aggregates.try_merge(handover, period) {
                    stripe.keep(back);
                }
            }
        }
    }

    fn read(
        aggregates: &Aggregates,
        stripe: &mut StripeBuffer,
        now: u64,
    ) -> (OverallSummary, OverallSummary) {
        let mut merged = aggregates.lock();
        let period = aggregates.period(now);
        for bucket in stripe.take() {
            merged.absorb(bucket, period);
        }
        (
            merged.cumulative_summary(),
            merged.window_summary(aggregates, now),
        )
    }

    #[test]
    fn the_window_keeps_between_one_window_and_one_bucket_more() {
        let aggregates = Aggregates::new(true, 0, Duration::from_secs(60));
        let mut stripe = StripeBuffer::default();
        // One request per second for two minutes.
        let requests: Vec<_> = (1..=120).map(|s| request(s * SECOND, 5.0)).collect();
        record(&aggregates, &mut stripe, &requests);
        let (cumulative, window) = read(&aggregates, &mut stripe, 120 * SECOND);
        assert_eq!(cumulative.e2e_requests, 120);
        assert_eq!(cumulative.e2e_wall_time_ms, 120_000.0);
        // Now is in bucket 12 (120-130 s): buckets 6..=12, from 60 s on.
        assert_eq!(window.e2e_requests, 61);
        assert_eq!(window.e2e_wall_time_ms, 60_000.0);
        assert_eq!(window.e2e_total_tokens, 610);
        assert_eq!(
            window
                .distributions
                .get(Quantity::RequestLatency)
                .map(|l| l.count),
            Some(61)
        );
        // 9.999 s later, still bucket 12; then bucket 13 drops 60-69 s.
        let (_, window) = read(&aggregates, &mut stripe, 129 * SECOND);
        assert_eq!(window.e2e_requests, 61);
        let (_, window) = read(&aggregates, &mut stripe, 130 * SECOND);
        assert_eq!(window.e2e_requests, 51);
        // Long idle: nothing in the window, everything in the cumulative scope.
        let (cumulative, window) = read(&aggregates, &mut stripe, 1_000 * SECOND);
        assert_eq!((window.e2e_requests, window.e2e_wall_time_ms), (0, 0.0));
        assert_eq!(cumulative.e2e_requests, 120);
    }

    #[test]
    fn a_busy_reader_gets_the_buckets_later_and_nothing_is_lost() {
        let aggregates = Aggregates::new(true, 0, Duration::from_secs(60));
        let mut stripe = StripeBuffer::default();
        {
            let _reader = aggregates.lock();
            let requests: Vec<_> = (0..40).map(|s| request(s * SECOND, 5.0)).collect();
            record(&aggregates, &mut stripe, &requests);
            // 39 s: buckets 0..=2 kept back, bucket 3 current.
            assert_eq!(stripe.retired.len(), 3);
        }
        let (cumulative, window) = read(&aggregates, &mut stripe, 40 * SECOND);
        assert_eq!((cumulative.e2e_requests, window.e2e_requests), (40, 40));
    }

    #[test]
    fn reset_starts_the_cumulative_scope_again() {
        let aggregates = Aggregates::new(true, 0, Duration::from_secs(60));
        let mut stripe = StripeBuffer::default();
        record(&aggregates, &mut stripe, &[request(SECOND, 5.0)]);
        let _ = read(&aggregates, &mut stripe, 2 * SECOND);
        aggregates.lock().reset_cumulative(2 * SECOND);
        record(&aggregates, &mut stripe, &[request(5 * SECOND, 5.0)]);
        let (cumulative, window) = read(&aggregates, &mut stripe, 5 * SECOND);
        assert_eq!(cumulative.e2e_requests, 1);
        assert_eq!(cumulative.e2e_wall_time_ms, 3_000.0);
        assert_eq!(window.e2e_requests, 2);
    }

    #[test]
    fn memory_stays_bounded_over_many_windows() {
        let aggregates = Aggregates::new(true, 0, Duration::from_secs(6));
        let mut stripe = StripeBuffer::default();
        let mut after_first_hour = (0, 0);
        for s in 0..7_200u64 {
            let requests: Vec<_> = (0..10)
                .map(|k| request(s * SECOND + k, (s % 100) as f64 + k as f64))
                .collect();
            record(&aggregates, &mut stripe, &requests);
            if s == 3_600 {
                let _ = read(&aggregates, &mut stripe, s * SECOND);
                after_first_hour = aggregates.lock().heap_bytes();
            }
        }
        let (cumulative, _) = read(&aggregates, &mut stripe, 7_200 * SECOND);
        assert_eq!(cumulative.e2e_requests, 72_000);
        let (ring, cumulative) = aggregates.lock().heap_bytes();
        // The cumulative scope grows with the values' range only; a bucket holds a part of
        // those values, so its histograms are no larger.
        assert_eq!(cumulative, after_first_hour.1);
        assert!(
            ring <= RING as usize * cumulative,
            "{ring} > {RING} x {cumulative}"
        );
        assert!(cumulative < 1 << 20, "{cumulative}");
    }

    #[test]
    fn the_line_says_counts_rates_percentiles_and_open_requests() {
        let aggregates = Aggregates::new(true, 0, Duration::from_secs(10));
        let mut stripe = StripeBuffer::default();
        let requests: Vec<_> = (1..=12)
            .map(|s| request(s * SECOND / 2, 800.0 + s as f64))
            .collect();
        record(&aggregates, &mut stripe, &requests);
        let (_, window) = read(&aggregates, &mut stripe, 10 * SECOND);
        let line = periodic_line(&window, 10 * SECOND, (3, 1));
        assert_eq!(
            line.as_deref(),
            Some(
                "omni-metrics: last 10.0 s: e2e latency mean 806.500 ms p50 806.399 ms \
                 p99 812.000 ms; 12 ok, 0 error, 0 aborted requests (1.20 req/s), \
                 12.0 tokens/s, 3 running, 1 waiting\n"
            )
        );
        let idle = Aggregates::new(true, 0, Duration::from_secs(10));
        let (_, empty) = read(&idle, &mut StripeBuffer::default(), 100 * SECOND);
        assert_eq!(periodic_line(&empty, 10 * SECOND, (0, 0)), None);
        assert_eq!(
            periodic_line(&empty, 10 * SECOND, (2, 2)).as_deref(),
            Some(
                "omni-metrics: last 10.0 s: 0 ok, 0 error, 0 aborted requests (0.00 req/s), \
                 0.0 tokens/s, 2 running, 2 waiting\n"
            )
        );
    }

    #[test]
    fn intervals_parse_with_units_and_zero_is_off() {
        let ok = |s: &str| parse_interval(s).expect(s);
        assert_eq!(ok("10s"), Some(Duration::from_secs(10)));
        assert_eq!(ok("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(ok("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(ok("2m"), Some(Duration::from_secs(120)));
        assert_eq!(ok(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(ok("1h"), Some(Duration::from_secs(3600)));
        for off in ["0", "0s", "0ms", "off", "OFF"] {
            assert_eq!(ok(off), None, "{off}");
        }
        for bad in [
            "", "ten", "10x", "-1s", "1e400", "s", "10 s s", "1..2s", "NaN",
        ] {
            assert_eq!(parse_interval(bad), Err(BadInterval), "{bad}");
        }
    }
}
