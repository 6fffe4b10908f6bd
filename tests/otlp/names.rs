//! The exported spans' names: a bounded set, the ids as attributes.

use tracing_subscriber::prelude::*;

use crate::receiver::GrpcReceiver;
use crate::support::{annotating_metrics, attr_str, is_request, is_run, pipeline_to};

/// Runs of `n` requests, typed and raw, each batch of its own, over two stages: the
/// distinct names of the exported spans.
fn exported_names(n: usize) -> std::collections::BTreeSet<String> {
    use omni_metrics::instrument::{Batch, Run};
    let receiver = GrpcReceiver::start();
    let pipeline = pipeline_to(&receiver);
    let (metrics, _capture) = annotating_metrics();
    let subscriber = tracing_subscriber::registry()
        .with(metrics)
        .with(pipeline.layer());
    tracing::subscriber::with_default(subscriber, || {
        let run = Run::with_id(&format!("run-of-{n}"));
        for i in 0..n {
            let request = run.request(&format!("typed-{i}"));
            for stage_id in 0..2_u64 {
                let batch = Batch::start(stage_id, i as u64, 1);
                let stage = request.stage(stage_id);
                stage.name(["thinker", "talker"][stage_id as usize]);
                batch.add(&stage);
            }
            drop(request.transfer(0, 1));
            request.finish();
            let raw = tracing::info_span!(target: "omni", "omni.request", request_id = %format!("raw-{i}"));
            drop(tracing::info_span!(target: "omni", parent: &raw, "omni.stage", stage_id = 0_u64));
        }
        drop(run);
        // A run without an id of its own: the layer gives one, as an attribute.
        drop(tracing::info_span!(target: "omni", "omni.run"));
    });
    pipeline.into_guard().shutdown().expect("exported");
    let spans = receiver.spans();
    assert!(spans.iter().any(|s| is_run(s, &format!("run-of-{n}"))));
    assert!(
        spans
            .iter()
            .any(|s| s.name == "run"
                && attr_str(s, "run_id").is_some_and(|id| id.starts_with("run-"))),
        "a generated run id is an attribute"
    );
    for i in 0..n {
        for id in [format!("typed-{i}"), format!("raw-{i}")] {
            assert!(spans.iter().any(|s| is_request(s, &id)), "{id} exported");
        }
    }
    spans.into_iter().map(|s| s.name).collect()
}

/// A backend keys on the span name (Jaeger's operations, spanmetrics): the names exported
/// do not grow with the requests, runs or batches; their ids are attributes.
#[test]
fn exported_span_names_do_not_grow_with_the_requests() {
    let few = exported_names(2);
    let many = exported_names(40);
    assert_eq!(few, many, "the same names for 2 and 40 requests");
    assert!(few.len() <= 8, "{few:?}");
}
