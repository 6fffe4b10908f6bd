//! Regression tests for issue 6 ("drop-in without traps"): each failed before its fix.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use crate::support::{HarnessExt as _, assert_close, diagnosed as setup, layer, ns, table_under};
use omni_metrics::instrument::{Request, RequestGuard};
use omni_metrics::report::Record;
use omni_metrics::stats::RequestStatus;
use omni_metrics::testing::CaptureSink;
use omni_metrics::testing::ManualClock;
use tracing::info_span;
use tracing_subscriber::prelude::*;

/// Item 2: two metrics layers in one subscriber each see every request.
#[test]
fn issue6_two_layers_in_one_subscriber_both_work() {
    let clock = ManualClock::new();
    let (a, b) = (CaptureSink::new(), CaptureSink::new());
    let subscriber = tracing_subscriber::registry()
        .with(layer(&clock, &a))
        .with(layer(&clock, &b));
    tracing::subscriber::with_default(subscriber, || {
        let req = info_span!("omni.request", request_id = "two");
        let stage = info_span!(parent: &req, "omni.stage", stage_id = 0, num_tokens_in = 5);
        clock.set_ns(ns(1.0));
        let queue = info_span!(parent: &stage, "omni.queue");
        clock.set_ns(ns(3.0));
        drop(queue);
        clock.set_ns(ns(10.0));
        drop(stage);
    });
    for capture in [&a, &b] {
        let r = &capture.requests()[0];
        assert_eq!(r.request_id, "two");
        assert_eq!(r.e2e_total_tokens, 5);
        assert_close(r.stages[0].queue_time_ms, 2.0, "queue, in each layer once");
        assert_close(r.stages[0].stage_gen_time_ms, 8.0, "gen");
    }
}

/// Item 4: counts saturate instead of overflowing (debug: a panic in the span's drop that
/// lost the request; release: totals wrapped to 0).
#[test]
fn issue6_u64_max_counts_saturate() {
    let s = setup();
    s.run(|| {
        let req = info_span!("omni.request", request_id = "big");
        for stage_id in 0..2_u64 {
            let _s = info_span!(parent: &req, "omni.stage", stage_id = stage_id,
                num_tokens_in = u64::MAX, num_tokens_out = u64::MAX);
        }
        for (from, to) in [(0_u64, 1_u64), (1, 2)] {
            let t = info_span!(parent: &req, "omni.transfer", from_stage = from, to_stage = to,
                size_bytes = u64::MAX, tx_time_ms = 1.0, rx_decode_time_ms = 1.0);
            drop(t);
        }
    });
    let r = &s.capture().requests()[0];
    assert_eq!(r.e2e_total_tokens, u64::MAX);
    let totals = s.handle().totals();
    assert_eq!(totals.requests_ok, 1);
    assert_eq!(totals.total_tokens, u64::MAX);
    assert_eq!(totals.transfer_bytes, u64::MAX);
}

/// Item 4: times whose sum overflows f64 never give `inf`/`null`, and a clock read
/// backwards never gives a huge duration.
#[test]
fn issue6_times_stay_finite_and_saturate() {
    let s = setup();
    s.run(|| {
        let req = info_span!("omni.request", request_id = "t");
        for _ in 0..2 {
            let _s = info_span!(parent: &req, "omni.stage", stage_id = 0,
                stage_gen_time_ms = 1.7e308);
        }
        s.at(0.001);
        let stage = info_span!(parent: &req, "omni.stage", stage_id = 1);
        s.clock().set_ns(1_000);
        let queue = info_span!(parent: &stage, "omni.queue");
        s.clock().set_ns(900); // 100 ns backwards
        drop(queue);
        s.clock().set_ns(2_000);
        drop(stage);
    });
    let r = &s.capture().requests()[0];
    let line = Record::Request(r.clone()).to_json_line();
    assert!(!line.contains("null") && !line.contains("inf"), "{line}");
    let s1 = r.stage(1).expect("stage 1");
    assert_eq!(s1.queue_time_ms, 0.0, "saturated, not 1.8e13 ms");
    assert!(s1.stage_gen_time_ms <= 0.001, "{}", s1.stage_gen_time_ms);
    s.warned("beyond 10^12 ms");
}

/// Item 8: an `#[instrument]`ed request future cancelled by a timeout is `aborted`, not `ok`.
#[test]
fn issue6_cancelled_instrumented_request_is_aborted() {
    #[tracing::instrument(name = "omni.request", skip_all,
        fields(request_id = %id, status = tracing::field::Empty))]
    async fn handle(id: String) {
        let guard = RequestGuard::current();
        let stage = info_span!("omni.stage", stage_id = 0, num_tokens_in = 3);
        drop(stage);
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        guard.finish();
    }
    #[tracing::instrument(name = "omni.request", skip_all,
        fields(request_id = %id, status = tracing::field::Empty))]
    async fn quick(id: String) {
        let guard = RequestGuard::current();
        guard.finish();
    }
    let s = setup();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    s.run(|| {
        rt.block_on(async {
            let timed_out =
                tokio::time::timeout(std::time::Duration::from_millis(10), handle("slow".into()))
                    .await;
            assert!(timed_out.is_err());
            quick("fast".into()).await;
        })
    });
    let requests = s.capture().requests();
    let status = |id: &str| {
        requests
            .iter()
            .find(|r| r.request_id == id)
            .map(|r| r.status)
    };
    assert_eq!(status("slow"), Some(RequestStatus::Aborted));
    assert_eq!(status("fast"), Some(RequestStatus::Ok));
    assert_eq!(s.handle().totals().requests_ok, 1);
}

/// Item 8: a typed request dropped by a panic is an `error`, not `aborted`.
#[test]
fn issue6_request_dropped_by_a_panic_is_an_error() {
    let s = setup();
    s.run(|| {
        let result = std::panic::catch_unwind(|| {
            let _request = Request::start("boom");
            panic!("engine bug");
        });
        assert!(result.is_err());
    });
    assert_eq!(s.capture().requests()[0].status, RequestStatus::Error);
}

/// A typed request or guard unwound by a panic says so in `status_message`.
#[test]
fn a_request_unwound_by_a_panic_says_it_panicked() {
    let s = setup();
    s.run(|| {
        let typed = std::panic::catch_unwind(|| {
            let _request = Request::start("typed");
            panic!("engine bug");
        });
        assert!(typed.is_err());
        let guarded = std::panic::catch_unwind(|| {
            let span = info_span!(
                "omni.request",
                request_id = "guarded",
                status = tracing::field::Empty,
                status_message = tracing::field::Empty
            );
            let _guard = omni_metrics::instrument::RequestGuard::new(&span);
            panic!("engine bug");
        });
        assert!(guarded.is_err());
    });
    let requests = s.capture().requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(r.status, RequestStatus::Error, "{}", r.request_id);
        assert_eq!(
            r.status_message.as_deref(),
            Some("panicked"),
            "{}",
            r.request_id
        );
    }
}

/// Item 9: what is still open can be listed by id.
#[test]
fn issue6_open_runs_and_requests_are_listed() {
    let s = setup();
    s.run(|| {
        let run = info_span!("omni.run", run_id = "batch-7");
        let a = info_span!(parent: &run, "omni.request", request_id = "r-a");
        let b = info_span!(parent: &run, "omni.request", request_id = "r-b");
        let open = s.handle().open_spans();
        assert_eq!(open.runs, ["batch-7"]);
        assert_eq!(open.requests, ["r-a", "r-b"]);
        assert_eq!(
            open.to_string(),
            "1 run (batch-7) and 2 requests (r-a, r-b)"
        );
        drop(a);
        assert_eq!(s.handle().open_spans().requests, ["r-b"]);
        std::mem::forget(b); // never closes, and so keeps its run open
        drop(run);
        assert_eq!(
            s.handle().open_spans().to_string(),
            "1 run (batch-7) and 1 request (r-b)"
        );
    });
}

/// The open requests of a clone of the layer in another subscriber are listed too, with a
/// request id recorded after the span opened.
#[test]
fn issue6_open_requests_of_every_copy_of_the_layer_are_listed() {
    let layer = omni_metrics::OmniMetricsLayer::builder()
        .with_console(false)
        .build()
        .expect("builds");
    let handle = layer.handle();
    let other = tracing_subscriber::registry().with(layer.clone());
    let first = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(first, || {
        let a = info_span!("omni.request", request_id = "in-first");
        let (b, unnamed) = tracing::subscriber::with_default(other, || {
            let b = info_span!("omni.request", request_id = tracing::field::Empty);
            b.record("request_id", "named-later");
            (b, info_span!("omni.request"))
        });
        assert_eq!(
            handle.open_spans().requests,
            ["(no request_id)", "in-first", "named-later"]
        );
        drop(a);
        assert_eq!(
            handle.open_spans().requests,
            ["(no request_id)", "named-later"]
        );
        drop((b, unnamed));
    });
    assert!(handle.open_spans().is_empty());
}

/// Item 11: a misplaced timing child counts in the request's record and summary too.
#[test]
fn issue6_misplaced_timing_child_counts_in_the_records() {
    let s = setup();
    s.run(|| {
        let req = info_span!("omni.request", request_id = "m");
        let _q = info_span!(parent: &req, "omni.queue"); // should be under a stage
    });
    assert_eq!(s.capture().requests()[0].invalid_spans, 1);
    assert_eq!(s.capture().summaries()[0].invalid_spans, 1);
    assert_eq!(s.handle().totals().invalid_spans, 1);
}

/// Item 11: a transfer cut short by a cancelled request is part of the abort, not a
/// convention violation.
#[test]
fn issue6_transfer_cancelled_during_tx_is_not_a_violation() {
    let s = setup();
    s.run(|| {
        let request = Request::start("cut");
        let t = request.transfer(0, 1);
        let _tx = t.tx();
        drop(_tx);
        drop(t);
        drop(request); // aborted
    });
    let r = &s.capture().requests()[0];
    assert_eq!(r.status, RequestStatus::Aborted);
    assert_eq!(r.invalid_spans, 0);
    assert_eq!(s.handle().totals().invalid_spans, 0, "{:?}", s.messages());
    // The same transfer in a request that ends ok is still reported.
    s.run(|| {
        let request = Request::start("ok-but-no-rx");
        drop(request.transfer(0, 1).tx());
        request.finish();
    });
    s.warned("without an `omni.transfer.rx_decode`");
    assert_eq!(s.handle().totals().invalid_spans, 1);
}

/// Item 11: stage in stage, self transfer, duplicate request ids and a late run id are
/// each warned about.
#[test]
fn issue6_nested_stage_self_transfer_duplicate_id_and_late_run_id_warn() {
    let s = setup();
    s.run(|| {
        let run = info_span!("omni.run", run_id = tracing::field::Empty);
        for _ in 0..2 {
            let req = info_span!(parent: &run, "omni.request", request_id = "dup");
            let outer = info_span!(parent: &req, "omni.stage", stage_id = 0);
            let _inner = info_span!(parent: &outer, "omni.stage", stage_id = 1);
            let _t = info_span!(parent: &req, "omni.transfer", from_stage = 1, to_stage = 1,
                tx_time_ms = 1.0, rx_decode_time_ms = 1.0);
        }
        run.record("run_id", "late");
    });
    s.warned("nested in another `omni.stage`");
    s.warned("`from_stage` equal to `to_stage`");
    s.warned("same `request_id`");
    s.warned("after one of its requests");
    let requests = s.capture().requests();
    let summary = &s.capture().summaries()[0];
    assert!(
        requests.iter().all(|r| r.scope == summary.scope),
        "records and summary agree"
    );
    assert!(
        requests.iter().all(|r| r.transfers.is_empty()),
        "no self edge"
    );
}

/// Item 12: each chunk's in-flight gap of one transfer span, on its own.
#[test]
fn issue6_chunked_transfer_measures_each_gap() {
    let s = setup();
    s.run(|| {
        let req = info_span!("omni.request", request_id = "chunks");
        let t = info_span!(parent: &req, "omni.transfer", from_stage = 0, to_stage = 1);
        for (start, kind) in [(0.0, "tx"), (2.0, "rx"), (4.0, "tx"), (6.0, "rx")] {
            s.at(start);
            let child = if kind == "tx" {
                info_span!(parent: &t, "omni.transfer.tx")
            } else {
                info_span!(parent: &t, "omni.transfer.rx_decode")
            };
            s.at(start + 1.0);
            drop(child);
        }
    });
    let e = &s.capture().requests()[0].transfers[0];
    assert_close(e.in_flight_time_ms, 2.0, "1 ms + 1 ms");
    assert_close(e.tx_time_ms, 2.0, "tx");
    assert_close(e.rx_decode_time_ms, 2.0, "rx");
}

/// Item 12 (review): pipelined chunks (tx, tx, rx, rx) pair in order.
#[test]
fn issue6_pipelined_chunks_pair_in_order() {
    let s = setup();
    s.run(|| {
        let req = info_span!("omni.request", request_id = "pipelined");
        let t = info_span!(parent: &req, "omni.transfer", from_stage = 0, to_stage = 1);
        for (start, end, kind) in [
            (0.0, 1.0, "tx"),
            (1.0, 2.0, "tx"),
            (3.0, 4.0, "rx"),
            (5.0, 6.0, "rx"),
        ] {
            s.at(start);
            let child = if kind == "tx" {
                info_span!(parent: &t, "omni.transfer.tx")
            } else {
                info_span!(parent: &t, "omni.transfer.rx_decode")
            };
            s.at(end);
            drop(child);
        }
    });
    let e = &s.capture().requests()[0].transfers[0];
    // rx1 (3) - tx1 end (1) = 2; rx2 (5) - tx2 end (2) = 3.
    assert_close(e.in_flight_time_ms, 5.0, "each chunk with its own tx");
}

/// Item 12 (review): a receiver already waiting when the sender finishes has no gap.
#[test]
fn issue6_a_waiting_receiver_has_no_in_flight_gap() {
    let s = setup();
    s.run(|| {
        let req = info_span!("omni.request", request_id = "waiting");
        let t = info_span!(parent: &req, "omni.transfer", from_stage = 0, to_stage = 1);
        s.at(0.0);
        let tx = info_span!(parent: &t, "omni.transfer.tx");
        s.at(1.0);
        let rx = info_span!(parent: &t, "omni.transfer.rx_decode");
        s.at(2.0);
        drop(tx);
        s.at(3.0);
        drop(rx);
        // A second chunk, sequential: its own 1 ms gap.
        s.at(4.0);
        drop(info_span!(parent: &t, "omni.transfer.tx"));
        s.at(5.0);
        let rx = info_span!(parent: &t, "omni.transfer.rx_decode");
        s.at(6.0);
        drop(rx);
    });
    let e = &s.capture().requests()[0].transfers[0];
    assert_close(
        e.in_flight_time_ms,
        1.0,
        "0 for the waiting receiver, 1 ms for chunk 2",
    );
}

/// Item 13: no `-0.000` for a request without transfers.
#[test]
fn issue6_no_negative_zero_without_transfers() {
    let s = setup();
    s.run(|| {
        let _req = info_span!("omni.request", request_id = "z");
    });
    let r = &s.capture().requests()[0];
    assert!(r.transfers_total_time_ms.is_sign_positive());
    assert!(r.transfers_total_kbytes.is_sign_positive());
    let line = Record::Request(r.clone()).to_json_line();
    assert!(!line.contains("-0.0"), "{line}");
    assert!(!table_under(&r.to_string(), "RequestE2EStats").contains("-0.000"));
}

/// Item 14: an explicit `postprocess_time_ms` is subtracted from the measured stage time, and
/// overlapping queue and postprocess children are subtracted once.
#[test]
fn issue6_gen_time_subtracts_the_covered_time_once() {
    let s = setup();
    s.run(|| {
        let req = info_span!("omni.request", request_id = "g");
        s.at(0.0);
        let explicit = info_span!(parent: &req, "omni.stage", stage_id = 0,
            postprocess_time_ms = 5.0);
        s.at(20.0);
        drop(explicit);
        s.at(100.0);
        let stage = info_span!(parent: &req, "omni.stage", stage_id = 1);
        let q = info_span!(parent: &stage, "omni.queue");
        s.at(105.0);
        let p = info_span!(parent: &stage, "omni.postprocess");
        s.at(110.0);
        drop(q);
        s.at(112.0);
        drop(p);
        s.at(120.0);
        drop(stage);
    });
    let r = &s.capture().requests()[0];
    let s0 = r.stage(0).expect("stage 0");
    assert_close(
        s0.stage_gen_time_ms,
        15.0,
        "20 ms - explicit 5 ms postprocess",
    );
    assert_close(s0.postprocess_time_ms, 5.0, "postprocess");
    let s1 = r.stage(1).expect("stage 1");
    assert_close(
        s1.stage_gen_time_ms,
        20.0 - 12.0,
        "queue 100..110 and pp 105..112 cover 12 ms",
    );
    assert_close(s1.queue_time_ms, 10.0, "queue");
    assert_close(s1.postprocess_time_ms, 7.0, "postprocess");
}

/// Item 15: `totals()` is a consistent snapshot while requests land on several threads.
#[test]
fn issue6_totals_are_a_consistent_snapshot() {
    const WRITERS: usize = 4;
    const REQUESTS: usize = 20_000;
    let s = setup();
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(WRITERS + 1));
    let reader = {
        let (handle, done, start) = (s.handle().clone(), done.clone(), start.clone());
        std::thread::spawn(move || {
            start.wait();
            let mut reads = 0_u64;
            while !done.load(Ordering::Relaxed) {
                let t = handle.totals();
                assert_eq!(t.total_tokens, 7 * t.requests_ok, "a torn snapshot: {t:?}");
                assert_eq!(
                    t.transfer_bytes,
                    3 * t.requests_ok,
                    "a torn snapshot: {t:?}"
                );
                reads += 1;
            }
            reads
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (dispatch, start) = (s.dispatch().clone(), start.clone());
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    start.wait();
                    for i in 0..REQUESTS {
                        let id = format!("{w}-{i}");
                        let req = info_span!("omni.request", request_id = %id);
                        let _s = info_span!(parent: &req, "omni.stage", stage_id = 0,
                            num_tokens_in = 7);
                        let _t = info_span!(parent: &req, "omni.transfer", from_stage = 0,
                            to_stage = 1, size_bytes = 3, tx_time_ms = 0.0,
                            rx_decode_time_ms = 0.0);
                    }
                })
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    done.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("every snapshot consistent");
    assert!(reads > 0);
    assert_eq!(s.handle().totals().requests_ok, (WRITERS * REQUESTS) as u64);
}
