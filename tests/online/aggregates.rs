//! The cumulative and window summaries, reset, and open runs' snapshots.

use std::time::Duration;

use omni_metrics::instrument::{Request, Run};
use omni_metrics::stats::Quantity;

use crate::support::{Harness, Status, assert_close};

/// The scopes of the cumulative and window summaries.
const CUMULATIVE_SCOPE: &str = "cumulative";
const WINDOW_SCOPE: &str = "window";

/// Issue 9, item 3: 20 online requests used to make 20 one-request summaries and no
/// `last_summary()`; the cumulative summary holds them all.
#[test]
fn issue9_twenty_online_requests_make_one_cumulative_summary() {
    let h = Harness::new();
    h.run(|| {
        for i in 0..20u64 {
            h.at(1_000.0 * i as f64);
            h.play(
                None,
                &format!("r-{i}"),
                100.0 + 10.0 * i as f64,
                100 + i,
                Status::Ok,
            );
        }
    });
    assert!(h.handle().last_summary().is_none(), "no run finished");
    let s = h.handle().cumulative_summary();
    assert_eq!(s.scope, CUMULATIVE_SCOPE);
    assert_eq!(s.e2e_requests, 20);
    assert_eq!((s.e2e_requests_error, s.e2e_requests_aborted), (0, 0));
    // Tokens: stage 0's input (100 + i) and its 10 out, per request.
    let tokens: u64 = (0..20).map(|i| 110 + i).sum();
    assert_eq!(s.e2e_total_tokens, tokens);
    // From the layer's start (0) to the last completion: 19 s + 290 ms.
    assert_close(s.e2e_wall_time_ms, 19_290.0, "e2e_wall_time_ms");
    assert_close(s.e2e_avg_time_per_request_ms, 19_290.0 / 20.0, "avg time");
    assert_close(
        s.e2e_avg_tokens_per_s,
        tokens as f64 * 1000.0 / 19_290.0,
        "tokens/s",
    );
    assert_eq!(s.stage_wall_time_ms, vec![(0, 19_290.0)]);
    let latency = s
        .distributions
        .get(Quantity::RequestLatency)
        .expect("a latency row");
    assert_eq!(latency.count, 20);
    assert_eq!((latency.mean_ms, latency.max_ms), (195.0, 290.0));
    // Nearest rank: the 10th of 100, 110, ..., 290 ms; p99 the 20th.
    assert!(
        latency.p50_ms >= 190.0 && latency.p50_ms <= 190.0 * 1.001,
        "{latency:?}"
    );
    assert_eq!(latency.p99_ms, 290.0);
    assert_eq!(
        s.distributions
            .get(Quantity::StageGenTime(0))
            .map(|g| g.count),
        Some(20)
    );
    // The handle's totals agree.
    let totals = h.handle().totals();
    assert_eq!((totals.requests_ok, totals.total_tokens), (20, tokens));
    // All of them finished within the last minute.
    let w = h.handle().window_summary();
    assert_eq!(w.scope, WINDOW_SCOPE);
    assert_eq!((w.e2e_requests, w.e2e_total_tokens), (20, tokens));
    assert_close(w.e2e_wall_time_ms, 19_290.0, "window wall time");
    assert_eq!(w.distributions, s.distributions);
}

#[test]
fn runs_requests_and_failed_requests_are_in_the_aggregates() {
    let h = Harness::new();
    h.run(|| {
        let run = Run::with_id("batch");
        for (i, status) in [Status::Ok, Status::Ok, Status::Error, Status::Ok]
            .into_iter()
            .enumerate()
        {
            h.play(Some(&run), &format!("b-{i}"), 50.0, 100, status);
        }
        drop(run);
        for (i, status) in [Status::Ok, Status::Aborted, Status::Ok]
            .into_iter()
            .enumerate()
        {
            h.play(None, &format!("o-{i}"), 50.0, 100, status);
        }
    });
    let run = h.handle().last_summary().expect("the run's summary");
    assert_eq!((run.e2e_requests, run.e2e_requests_error), (3, 1));
    let s = h.handle().cumulative_summary();
    assert_eq!(
        (s.e2e_requests, s.e2e_requests_error, s.e2e_requests_aborted),
        (5, 1, 1)
    );
    assert_eq!(s.e2e_total_tokens, 5 * 110);
    assert_close(s.e2e_wall_time_ms, 7.0 * 50.0, "wall time");
    // Failed requests are counted apart, as in a run: not in the distributions.
    assert_eq!(
        s.distributions
            .get(Quantity::RequestLatency)
            .map(|l| l.count),
        Some(5)
    );
}

#[test]
fn reset_starts_the_cumulative_summary_again() {
    let h = Harness::new();
    h.run(|| {
        for i in 0..5 {
            h.play(None, &format!("before-{i}"), 1_000.0, 100, Status::Ok);
        }
        h.at(10_000.0);
        h.handle().reset_cumulative();
        h.at(12_000.0);
        for i in 0..3 {
            h.play(None, &format!("after-{i}"), 500.0, 100, Status::Ok);
        }
    });
    let s = h.handle().cumulative_summary();
    assert_eq!(s.e2e_requests, 3);
    assert_eq!(s.e2e_total_tokens, 3 * 110);
    // From the reset (10 s) to the last completion (13.5 s).
    assert_close(s.e2e_wall_time_ms, 3_500.0, "wall time since the reset");
    assert_eq!(
        s.distributions
            .get(Quantity::RequestLatency)
            .map(|l| l.count),
        Some(3)
    );
    // Neither the totals nor the window are reset.
    assert_eq!(h.handle().totals().requests_ok, 8);
    assert_eq!(h.handle().window_summary().e2e_requests, 8);
    // A second reset with nothing since: an empty summary.
    h.handle().reset_cumulative();
    let empty = h.handle().cumulative_summary();
    assert_eq!((empty.e2e_requests, empty.e2e_wall_time_ms), (0, 0.0));
    assert!(empty.distributions.is_empty());
}

/// The default window is a minute in buckets of 10 s: a request leaves it between 60 and
/// 70 s after it completed.
#[test]
fn the_window_drops_requests_once_the_clock_moves_past_it() {
    let h = Harness::new();
    h.run(|| {
        for i in 0..4 {
            h.play(None, &format!("early-{i}"), 200.0, 100, Status::Ok); // done by 0.8 s
        }
        h.at(30_000.0);
        for i in 0..3 {
            h.play(None, &format!("late-{i}"), 100.0, 100, Status::Ok); // done by 30.3 s
        }
    });
    let window_at = |ms: f64| {
        h.at(ms);
        h.handle().window_summary()
    };
    assert_eq!(window_at(59_000.0).e2e_requests, 7);
    assert_eq!(window_at(69_999.0).e2e_requests, 7);
    // From 70 s the window starts at 10 s: the early requests are out.
    let w = window_at(70_000.0);
    assert_eq!((w.e2e_requests, w.e2e_total_tokens), (3, 3 * 110));
    assert_close(w.e2e_wall_time_ms, 30_300.0 - 10_000.0, "window wall time");
    assert_eq!(
        w.distributions
            .get(Quantity::RequestLatency)
            .map(|l| l.count),
        Some(3)
    );
    assert_eq!(w.stage_wall_time_ms, vec![(0, 300.0)]);
    let w = window_at(100_000.0);
    assert_eq!((w.e2e_requests, w.e2e_wall_time_ms), (0, 0.0));
    assert!(w.distributions.is_empty());
    // The cumulative summary keeps everything.
    assert_eq!(h.handle().cumulative_summary().e2e_requests, 7);
}

#[test]
fn a_shorter_window_is_cut_into_shorter_buckets() {
    let h = Harness::with(|b| b.with_summary_window(Duration::from_secs(6)));
    assert_eq!(h.handle().summary_window(), Duration::from_secs(6));
    h.run(|| {
        h.play(None, "a", 100.0, 100, Status::Ok);
        h.at(5_000.0);
        h.play(None, "b", 100.0, 100, Status::Ok);
    });
    // Buckets of 1 s: at 7.5 s the window starts at 1 s.
    h.at(7_500.0);
    let w = h.handle().window_summary();
    assert_eq!(w.e2e_requests, 1);
    assert_close(w.e2e_wall_time_ms, 5_100.0 - 1_000.0, "window wall time");
}

#[test]
fn an_open_run_can_be_read_while_it_runs() {
    let h = Harness::new();
    h.run(|| {
        let run = Run::with_id("batch-1");
        h.play(Some(&run), "r-1", 100.0, 100, Status::Ok);
        h.play(Some(&run), "r-2", 200.0, 100, Status::Ok);
        let open = run.request("r-3");
        let unnamed = Run::start();
        let snapshots = h.handle().open_run_summaries();
        assert_eq!(snapshots.len(), 2, "{snapshots:?}");
        // Sorted by scope: "(unnamed run)" before "batch-1".
        assert_eq!(snapshots[0].scope, "(unnamed run)");
        assert_eq!(snapshots[0].e2e_requests, 0);
        let s = &snapshots[1];
        assert_eq!(s.scope, "batch-1");
        assert_eq!((s.e2e_requests, s.e2e_total_tokens), (2, 220));
        // From the run's start to its last completion so far; the open request is not in.
        assert_close(s.e2e_wall_time_ms, 300.0, "run wall time so far");
        assert_eq!(
            s.distributions
                .get(Quantity::RequestLatency)
                .map(|l| l.count),
            Some(2)
        );
        assert_eq!(h.handle().open_spans().requests, ["r-3"]);
        // Its requests go on; the snapshot did not hold them.
        h.clock().advance_ms(50.0);
        open.finish();
        drop(unnamed);
        let s = h.handle().open_run_summaries();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].e2e_requests, 3);
        drop(run);
    });
    assert!(h.handle().open_run_summaries().is_empty());
    assert_eq!(h.handle().last_summary().map(|s| s.e2e_requests), Some(3));
    assert_eq!(h.handle().cumulative_summary().e2e_requests, 3);
}

#[test]
fn an_unnamed_run_is_named_in_its_snapshot_once_a_request_finished() {
    let h = Harness::new();
    h.run(|| {
        let run = Run::start();
        h.play(Some(&run), "r-1", 10.0, 1, Status::Ok);
        let snapshots = h.handle().open_run_summaries();
        assert_eq!(snapshots.len(), 1);
        assert!(snapshots[0].scope.starts_with("run-"), "{snapshots:?}");
        assert_eq!(h.handle().open_spans().runs, [snapshots[0].scope.clone()]);
        drop(run);
    });
}

#[test]
fn with_the_aggregates_off_the_summaries_are_empty() {
    let h = Harness::with(|b| b.with_aggregates(false));
    h.run(|| {
        Request::start("r-1").finish();
    });
    assert_eq!(h.handle().totals().requests_ok, 1);
    assert_eq!(h.handle().cumulative_summary().e2e_requests, 0);
    assert_eq!(h.handle().window_summary().e2e_requests, 0);
}
