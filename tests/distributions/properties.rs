//! Properties: through the real layer, each distribution counts exactly the ok requests
//! that had the quantity, and p50 <= p90 <= p99 <= max, every number finite. (Straight into
//! a recorder, any input is safe: the unit tests of `src/distribution.rs`.)

use omni_metrics::instrument::Run;
use omni_metrics::stats::{EdgeName, LatencyStats, Quantity};
use proptest::prelude::*;

use crate::support::{Harness, Shape, Status, nearest_rank};

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        6 => Just(Status::Ok),
        1 => Just(Status::Error),
        1 => Just(Status::Aborted),
    ]
}

/// Times from nothing to ten seconds, most of them short.
fn micros() -> impl Strategy<Value = u64> {
    prop_oneof![0..2_048u64, 0..200_000u64, 0..10_000_000u64]
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        (micros(), micros(), any::<bool>()),
        [micros(), micros(), micros(), micros()],
        status(),
    )
        .prop_map(|((queue0, gen0, second), [tx, gap, rx, gen1], status)| {
            let mut shape = Shape::ok(queue0, gen0, [tx, gap, rx], gen1);
            shape.second_stage = second;
            shape.status = status;
            shape
        })
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn issue9_2_counts_are_the_ok_requests_and_percentiles_are_ordered(
        shapes in prop::collection::vec(shape(), 0..40)
    ) {
        let h = Harness::new();
        h.run(|| {
            let run = Run::with_id("run-p");
            for (i, shape) in shapes.iter().enumerate() {
                h.play(Some(&run), &format!("r-{i}"), shape);
            }
        });
        let summary = h.capture().summaries().pop().unwrap_or_default();
        let ok: Vec<&Shape> = shapes.iter().filter(|s| s.status == Status::Ok).collect();
        let with_edge = ok.iter().filter(|s| s.second_stage).count() as u64;
        let d = &summary.distributions;
        let count = |s: Option<LatencyStats>| s.map_or(0, |s| s.count);
        prop_assert_eq!(summary.e2e_requests, ok.len() as u64);
        prop_assert_eq!(count(d.get(Quantity::RequestLatency)), ok.len() as u64);
        prop_assert_eq!(count(d.get(Quantity::StageGenTime(0))), ok.len() as u64);
        prop_assert_eq!(count(d.get(Quantity::StageQueueTime(0))), ok.len() as u64);
        prop_assert_eq!(count(d.get(Quantity::StageGenTime(1))), with_edge);
        prop_assert_eq!(count(d.get(Quantity::TransferTime(EdgeName { from: 0, to: 1 }))), with_edge);
        prop_assert_eq!(d.is_empty(), ok.is_empty());
        for (quantity, stats) in d.iter() {
            assert_ordered(&stats, &quantity.to_string());
        }
        // Request latency against its true percentiles: within 0.1%.
        let e2e: Vec<u64> = ok.iter().map(|s| s.e2e_us()).collect();
        if let Some(s) = d.get(Quantity::RequestLatency) {
            for (q, p) in [(0.50, s.p50_ms), (0.90, s.p90_ms), (0.99, s.p99_ms)] {
                let truth = nearest_rank(&e2e, q) as f64 / 1000.0;
                prop_assert!(p >= truth && p <= truth * 1.001 + 0.001, "p{q}: {p} vs {truth}");
            }
        }
    }
}
