//! Many concurrent requests on a multi-thread runtime: exact totals, nothing lost or doubled.

use std::sync::Arc;

use omni_metrics::instrument::Run;
use tracing::instrument::WithSubscriber;

use crate::support::Harness;

const REQUESTS: u64 = 1_000;

#[test]
fn thousand_concurrent_requests_give_exact_totals() {
    let h = Harness::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dispatch = h.dispatch().clone();
    runtime.block_on(
        async move {
            let run = Arc::new(tracing::dispatcher::with_default(&dispatch, || {
                Run::with_id("load")
            }));
            let mut tasks = Vec::new();
            for i in 0..REQUESTS {
                let run = run.clone();
                let d = dispatch.clone();
                let inner = d.clone();
                // Each task polls (and drops its spans) with the test's dispatcher as default.
                tasks.push(tokio::spawn(
                    async move {
                        let req = run.request(&format!("r{i}"));
                        let parent = req.span().clone();
                        // Stages run on other tasks, spans created with an explicit parent.
                        let thinker = tokio::spawn(
                            async move {
                                let s = omni_metrics::instrument::Stage::child_of(&parent, 0);
                                s.tokens_in(100 + i % 7).tokens_out(10);
                                tokio::task::yield_now().await;
                                drop(s.postprocess());
                                let t = omni_metrics::instrument::Transfer::child_of(&parent, 0, 1);
                                t.size_bytes(1000 + i);
                                drop(t.tx());
                                tokio::task::yield_now().await;
                                drop(t.rx_decode());
                            }
                            .with_subscriber(inner),
                        );
                        thinker.await.expect("stage task");
                        let talker = req.stage(1);
                        talker.tokens_in(110).tokens_out(20);
                        tokio::task::yield_now().await;
                        drop(talker);
                        req.finish();
                    }
                    .with_subscriber(d),
                ));
            }
            for t in tasks {
                t.await.expect("request task");
            }
            drop(run);
        }
        .with_subscriber(h.dispatch().clone()),
    );
    let expected_tokens: u64 = (0..REQUESTS).map(|i| 100 + i % 7 + 10 + 20).sum();
    let expected_bytes: u64 = (0..REQUESTS).map(|i| 1000 + i).sum();
    let totals = h.handle().totals();
    assert_eq!(totals.requests_ok, REQUESTS);
    assert_eq!(totals.total_tokens, expected_tokens);
    assert_eq!(totals.transfer_bytes, expected_bytes);
    assert_eq!(totals.invalid_spans, 0);
    let summaries = h.capture().summaries();
    assert_eq!(summaries.len(), 1, "one run, one summary");
    assert_eq!(summaries[0].e2e_requests, REQUESTS);
    assert_eq!(summaries[0].e2e_total_tokens, expected_tokens);
    let requests = h.capture().requests();
    assert_eq!(requests.len() as u64, REQUESTS);
    assert!(
        requests
            .iter()
            .all(|r| r.stages.len() == 2 && r.transfers.len() == 1)
    );
}

/// The Registry trap of scoped subscribers, as the docs of `CaptureSink` say it: a stage
/// dropped on a thread whose default dispatcher is not its own never closes its request
/// (the request stays listed as open, never recorded); dropped under its dispatcher, it
/// does.
#[test]
fn a_child_dropped_outside_its_scoped_dispatcher_leaves_its_request_open() {
    use crate::support::Harness;
    let h = Harness::new();
    let stage = h.run(|| {
        let request = tracing::info_span!("omni.request", request_id = "lost");
        tracing::info_span!(parent: &request, "omni.stage", stage_id = 0_u64)
    });
    // The request's own handle was dropped above; the stage holds it open.
    std::thread::spawn(move || drop(stage))
        .join()
        .expect("the thread drops the stage");
    assert!(
        h.capture().requests().is_empty(),
        "the request never closes"
    );
    assert_eq!(h.handle().open_spans().requests, ["lost"]);

    let h = Harness::new();
    let stage = h.run(|| {
        let request = tracing::info_span!("omni.request", request_id = "kept");
        tracing::info_span!(parent: &request, "omni.stage", stage_id = 0_u64)
    });
    let dispatch = h.dispatch().clone();
    std::thread::spawn(move || tracing::dispatcher::with_default(&dispatch, || drop(stage)))
        .join()
        .expect("the thread drops the stage");
    assert_eq!(h.capture().requests()[0].request_id, "kept");
    assert!(h.handle().open_spans().is_empty());
}
