//! The layer under a global subscriber, as engines install it: spans may be opened, entered
//! and dropped on any thread. This binary holds one test, so the global default is its own.

use omni_metrics::instrument::{Request, Stage};
use omni_metrics::testing::CaptureSink;
use tracing_subscriber::prelude::*;

#[test]
fn stage_dropped_on_a_thread_that_did_not_open_it() {
    let capture = CaptureSink::new();
    let layer = omni_metrics::OmniMetricsLayer::builder()
        .with_console(false)
        .with_sink(capture.clone())
        .build()
        .expect("no file configured");
    let handle = layer.handle();
    tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .expect("first global subscriber of this test binary");

    let request = Request::start("cross-thread");
    let parent = request.span().clone();
    let stage = std::thread::spawn(move || {
        let s = Stage::child_of(&parent, 0);
        s.tokens_in(11).tokens_out(4);
        s
    })
    .join()
    .expect("opening thread");
    let t = request.transfer(0, 1);
    let tx = t.tx();
    std::thread::spawn(move || {
        drop(stage);
        drop(tx);
    })
    .join()
    .expect("dropping thread");
    drop(t.rx_decode());
    drop(t);
    request.finish();

    let requests = capture.requests();
    assert_eq!(
        requests.len(),
        1,
        "the request closed once its children closed"
    );
    assert_eq!(requests[0].e2e_total_tokens, 15);
    assert_eq!(requests[0].transfers[0].transfers, 1);
    assert_eq!(handle.totals().invalid_spans, 0);
}
