//! Bad input: a clear message once per kind, a count every time, no panic, nothing
//! well-formed lost.

use crate::support::{HarnessExt as _, diagnosed as setup};
use omni_metrics::OmniMetricsLayer;
use omni_metrics::testing::CaptureSink;
use tracing::info_span;
use tracing_subscriber::prelude::*;

#[test]
fn stage_without_stage_id_is_reported_once_and_the_rest_kept() {
    let s = setup();
    tracing::dispatcher::with_default(s.dispatch(), || {
        let req = info_span!("omni.request", request_id = "r");
        for _ in 0..5 {
            let _bad = info_span!(parent: &req, "omni.stage", num_tokens_out = 99);
        }
        let _good = info_span!(parent: &req, "omni.stage", stage_id = 0, num_tokens_in = 10);
    });
    let r = &s.capture().requests()[0];
    assert_eq!(r.stages.len(), 1, "only the well-formed stage");
    assert_eq!(r.e2e_total_tokens, 10);
    assert_eq!(r.invalid_spans, 5);
    assert_eq!(s.capture().summaries()[0].invalid_spans, 5);
    assert_eq!(s.handle().totals().invalid_spans, 5);
    let msgs = s.messages();
    assert_eq!(msgs.len(), 1, "reported once, not once per span: {msgs:?}");
    assert!(msgs[0].contains("without a `stage_id`") && msgs[0].contains("Give every stage"));
}

#[test]
fn mistyped_and_negative_fields_are_ignored_and_counted() {
    let s = setup();
    tracing::dispatcher::with_default(s.dispatch(), || {
        let req = info_span!("omni.request", request_id = "r");
        let _a = info_span!(parent: &req, "omni.stage", stage_id = 0, num_tokens_in = "many",
            num_tokens_out = 3);
        let _b = info_span!(parent: &req, "omni.stage", stage_id = 1, num_tokens_out = -5,
            batch_size = 2.5);
        // Lenient where unambiguous: a numeric string and an integral float are accepted.
        let _c = info_span!(parent: &req, "omni.stage", stage_id = "2", num_tokens_out = 4.0);
    });
    let r = &s.capture().requests()[0];
    assert_eq!(r.stages.len(), 3);
    assert_eq!(
        r.stage(0).map(|s| (s.num_tokens_in, s.num_tokens_out)),
        Some((0, 3))
    );
    assert_eq!(
        r.stage(1).map(|s| (s.num_tokens_out, s.batch_size)),
        Some((0, 0))
    );
    assert_eq!(r.stage(2).map(|s| s.num_tokens_out), Some(4));
    assert_eq!(r.invalid_spans, 2);
    let msgs = s.messages();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("wrong type")));
    assert!(msgs.iter().any(|m| m.contains("negative")));
}

#[test]
fn spans_outside_any_request_are_counted_without_panic() {
    let s = setup();
    tracing::dispatcher::with_default(s.dispatch(), || {
        let stage = info_span!("omni.stage", stage_id = 0, num_tokens_in = 5);
        let _q = info_span!(parent: &stage, "omni.queue");
        let t = info_span!("omni.transfer", from_stage = 0, to_stage = 1);
        let _tx = info_span!(parent: &t, "omni.transfer.tx");
        let _orphan_leaf = info_span!("omni.postprocess");
    });
    assert!(s.capture().requests().is_empty());
    assert_eq!(
        s.handle().totals().invalid_spans,
        3,
        "stage, transfer and the orphan postprocess"
    );
    let msgs = s.messages();
    assert!(
        msgs.iter()
            .any(|m| m.contains("no `omni.request` ancestor")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("not a direct child")),
        "{msgs:?}"
    );
}

#[test]
fn transfer_without_tx_or_rx_keeps_its_bytes() {
    let s = setup();
    tracing::dispatcher::with_default(s.dispatch(), || {
        let req = info_span!("omni.request", request_id = "r");
        let t = info_span!(parent: &req, "omni.transfer", from_stage = 0, to_stage = 1,
            size_bytes = 2048);
        let _tx = info_span!(parent: &t, "omni.transfer.tx");
        drop(_tx);
        drop(t);
        let _no_children = info_span!(parent: &req, "omni.transfer", from_stage = 1, to_stage = 2,
            size_bytes = 1024);
    });
    let r = &s.capture().requests()[0];
    assert_eq!(r.transfers.len(), 2);
    assert_eq!(r.transfers[0].size_bytes, 2048);
    assert_eq!(r.transfers[0].in_flight_time_ms, 0.0);
    assert_eq!(r.transfers[1].size_bytes, 1024);
    assert_eq!(r.invalid_spans, 2);
    assert!(
        s.messages()
            .iter()
            .any(|m| m.contains("without an `omni.transfer.rx_decode`"))
    );
    assert!(
        s.messages()
            .iter()
            .any(|m| m.contains("without an `omni.transfer.tx`"))
    );
}

/// Chunks of one stage computed in different batches (continuous batching) are valid: the
/// stage keeps the batch of its earliest-starting chunk that gives one.
#[test]
fn chunks_in_different_batches_are_valid_and_keep_the_earliest() {
    let s = setup();
    tracing::dispatcher::with_default(s.dispatch(), || {
        let req = info_span!("omni.request", request_id = "r");
        drop(info_span!(parent: &req, "omni.stage", stage_id = 0, batch_id = 3, batch_size = 2));
        drop(info_span!(parent: &req, "omni.stage", stage_id = 0, batch_id = 4, batch_size = 8));
        drop(info_span!(parent: &req, "omni.stage", stage_id = 0, num_tokens_out = 1));
    });
    let r = &s.capture().requests()[0];
    let st = &r.stages[0];
    assert_eq!((st.batch_id, st.batch_size, st.spans), (3, 2, 3));
    assert_eq!(r.invalid_spans, 0);
    assert!(s.messages().is_empty(), "{:?}", s.messages());
}

#[test]
fn missing_request_id_and_bad_status_are_named_and_reported() {
    let s = setup();
    tracing::dispatcher::with_default(s.dispatch(), || {
        let _a = info_span!("omni.request");
        drop(_a);
        let _b = info_span!("omni.request", request_id = "b", status = "finished");
    });
    let reqs = s.capture().requests();
    assert_eq!(reqs[0].request_id, "request-1");
    assert_eq!(reqs[1].status, omni_metrics::stats::RequestStatus::Error);
    assert_eq!(s.handle().totals().invalid_spans, 2);
}

#[test]
fn a_panicking_sink_does_not_reach_the_engine() {
    struct Bomb;
    impl omni_metrics::report::Sink for Bomb {
        fn on_request(&self, _: &omni_metrics::stats::RequestE2EStats) {
            panic!("sink bug");
        }
    }
    let capture = CaptureSink::new();
    let layer = OmniMetricsLayer::builder()
        .with_console(false)
        .with_sink(Bomb)
        .with_sink(capture.clone())
        .build()
        .expect("no file");
    let handle = layer.handle();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..2 {
            let _r = info_span!("omni.request", request_id = i);
        }
    });
    assert_eq!(
        capture.requests().len(),
        2,
        "the other sinks still see every request"
    );
    assert_eq!(handle.totals().requests_ok, 2);
}

/// A count given as a float too large for 64 bits is refused and said, not saturated to
/// `u64::MAX`.
#[test]
fn a_count_beyond_64_bits_is_refused_not_saturated() {
    let s = setup();
    tracing::dispatcher::with_default(s.dispatch(), || {
        let req = info_span!("omni.request", request_id = "big");
        drop(
            info_span!(parent: &req, "omni.stage", stage_id = 0_u64, num_tokens_in = 3_u64,
            num_tokens_out = 1e308_f64),
        );
    });
    let r = &s.capture().requests()[0];
    assert_eq!(r.stages[0].num_tokens_out, 0);
    assert_eq!(r.stages[0].num_tokens_in, 3);
    assert_eq!(r.invalid_spans, 1);
    s.warned("a count of 2^64 or more");
}
