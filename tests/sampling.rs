//! Metrics do not depend on sampling: with `OTEL_TRACES_SAMPLER=traceidratio` and
//! `_ARG=0.1`, the tables count every request; only the export is sampled. The variables are
//! process-wide, so this binary holds one test.

#![cfg(feature = "otlp")]

#[path = "support/grpc_receiver.rs"]
mod receiver;

use std::time::Duration;

use omni_metrics::OmniMetricsLayer;
use omni_metrics::instrument::Request;
use omni_metrics::otlp::{OtlpPipeline, OtlpProtocol};
use tracing_subscriber::prelude::*;

const REQUESTS: usize = 300;

#[test]
fn traceidratio_sampling_exports_some_requests_and_counts_all() {
    // SAFETY: the only test of this binary; set before any thread reads the environment.
    unsafe {
        std::env::set_var("OTEL_TRACES_SAMPLER", "traceidratio");
        std::env::set_var("OTEL_TRACES_SAMPLER_ARG", "0.1");
    }
    let receiver = receiver::GrpcReceiver::start();
    let pipeline = OtlpPipeline::builder()
        .with_endpoint(format!("http://{}", receiver.addr))
        .with_protocol(OtlpProtocol::Grpc)
        .with_shutdown_timeout(Duration::from_secs(10))
        .build()
        .expect("pipeline");
    let metrics = OmniMetricsLayer::builder()
        .with_console(false)
        .build()
        .expect("no file");
    let handle = metrics.handle();
    let subscriber = tracing_subscriber::registry()
        .with(metrics)
        .with(pipeline.layer());
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..REQUESTS {
            let request = Request::start(&format!("s-{i}"));
            request.stage(0).tokens_in(1).tokens_out(1);
            request.finish();
        }
    });
    let mut guard = pipeline.into_guard();
    guard.shutdown().expect("sampled spans exported");

    assert_eq!(
        handle.totals().requests_ok,
        REQUESTS as u64,
        "every request counted"
    );
    assert_eq!(handle.totals().total_tokens, 2 * REQUESTS as u64);
    let exported = receiver
        .spans()
        .iter()
        .filter(|s| s.name == "request")
        .count();
    // Binomial(300, 0.1): mean 30; outside 5..=80 has probability below 1e-9.
    assert!(
        (5..=80).contains(&exported),
        "{exported} of {REQUESTS} requests exported at ratio 0.1"
    );
}
