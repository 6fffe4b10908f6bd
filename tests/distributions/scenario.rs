//! A deterministic run on a manual clock: every statistic against the true value computed
//! here from the same inputs.

use omni_metrics::instrument::Run;
use omni_metrics::stats::LatencyStats;
use omni_metrics::stats::{EdgeName, Quantity};

use crate::support::{Harness, Shape, Status, nearest_rank};

/// 300 requests of scrambled times, from sub-millisecond to seconds; every tenth fails and
/// every 25th is aborted (neither counts).
fn shapes() -> Vec<Shape> {
    (0..300u64)
        .map(|i| {
            let mut shape = Shape::ok(
                (i * 37 % 50) * 20,
                5_000 + (i * 7_919 % 1_000) * 97,
                [100 + (i % 13) * 10, (i % 5) * 3, 200 + (i * 11 % 17) * 50],
                20_000 + (i * 104_729 % 300) * 9_973,
            );
            shape.second_stage = i % 7 != 3;
            shape.status = match i {
                i if i % 10 == 9 => Status::Error,
                i if i % 25 == 7 => Status::Aborted,
                _ => Status::Ok,
            };
            shape
        })
        .collect()
}

/// Asserts `got` describes `values` (µs): exact count, mean and max, each percentile at
/// or above the true one and within 1% of it (0.1% by the histograms' precision).
#[track_caller]
fn assert_describes(got: Option<LatencyStats>, values: &[u64], what: &str) {
    let got = got.unwrap_or_else(|| panic!("{what}: no distribution"));
    let ms = |us: u64| us as f64 / 1000.0;
    assert_eq!(got.count, values.len() as u64, "{what}: count");
    let mean = values.iter().sum::<u64>() as f64 / values.len() as f64 / 1000.0;
    assert!(
        (got.mean_ms - mean).abs() <= 1e-9 * mean,
        "{what}: mean {got:?} vs {mean}"
    );
    assert_eq!(
        got.max_ms,
        ms(values.iter().copied().max().unwrap_or(0)),
        "{what}: max"
    );
    for (q, p) in [(0.50, got.p50_ms), (0.90, got.p90_ms), (0.99, got.p99_ms)] {
        let truth = ms(nearest_rank(values, q));
        assert!(
            p >= truth && p <= truth * 1.01,
            "{what}: p{} = {p}, true value {truth}",
            q * 100.0
        );
        assert!(
            p <= truth * 1.001 + 0.001,
            "{what}: p{} = {p} beyond 0.1%",
            q * 100.0
        );
    }
}

#[test]
fn issue9_2_percentiles_match_the_true_values_within_one_percent() {
    let shapes = shapes();
    let h = Harness::new();
    h.run(|| {
        let run = Run::with_id("run-d");
        for (i, shape) in shapes.iter().enumerate() {
            h.play(Some(&run), &format!("r-{i}"), shape);
        }
        drop(run);
    });
    let summaries = h.capture().summaries();
    assert_eq!(summaries.len(), 1);
    let summary = &summaries[0];

    let ok: Vec<&Shape> = shapes.iter().filter(|s| s.status == Status::Ok).collect();
    let both: Vec<&Shape> = ok.iter().copied().filter(|s| s.second_stage).collect();
    assert_eq!(summary.e2e_requests, ok.len() as u64);
    let values = |of: &[&Shape], f: fn(&Shape) -> u64| of.iter().map(|s| f(s)).collect::<Vec<_>>();

    let d = &summary.distributions;
    assert_describes(
        d.get(Quantity::RequestLatency),
        &values(&ok, Shape::e2e_us),
        "e2e_total_ms",
    );
    assert_describes(
        d.get(Quantity::StageGenTime(0)),
        &values(&ok, |s| s.gen0_us),
        "stage 0 gen",
    );
    assert_describes(
        d.get(Quantity::StageQueueTime(0)),
        &values(&ok, |s| s.queue0_us),
        "stage 0 queue",
    );
    assert_describes(
        d.get(Quantity::StageGenTime(1)),
        &values(&both, |s| s.gen1_us),
        "stage 1 gen",
    );
    assert_describes(
        d.get(Quantity::StageQueueTime(1)),
        &values(&both, |_| 0),
        "stage 1 queue",
    );
    assert_describes(
        d.get(Quantity::TransferTime(EdgeName { from: 0, to: 1 })),
        &values(&both, Shape::transfer_us),
        "edge 0->1",
    );
    assert_eq!(d.len(), 6, "{d:?}");

    // The records agree: each ok request's own figures are what was recorded.
    let requests = h.capture().requests();
    let from_records: Vec<u64> = requests
        .iter()
        .filter(|r| r.status == omni_metrics::stats::RequestStatus::Ok)
        .map(|r| (r.e2e_total_ms * 1000.0).round() as u64)
        .collect();
    assert_describes(
        d.get(Quantity::RequestLatency),
        &from_records,
        "e2e from the records",
    );
    // `e2e_avg_time_per_request_ms` stays wall / requests, not the mean latency.
    assert_eq!(
        summary.e2e_avg_time_per_request_ms,
        summary.e2e_wall_time_ms / ok.len() as f64
    );
}

#[test]
fn issue9_2_the_handle_keeps_the_runs_distributions() {
    let h = Harness::new();
    h.run(|| {
        let run = Run::with_id("run-h");
        for (i, us) in [1_000, 3_000].into_iter().enumerate() {
            h.play(Some(&run), &format!("r-{i}"), &Shape::ok(0, us, [0; 3], 0));
        }
    });
    let summary = h.capture().summaries().pop().unwrap_or_default();
    assert_eq!(h.handle().last_summary().as_ref(), Some(&summary));
    let latency = summary.distributions.get(Quantity::RequestLatency);
    assert_eq!(
        latency.map(|s| (s.count, s.mean_ms, s.max_ms)),
        Some((2, 2.0, 3.0))
    );
}
