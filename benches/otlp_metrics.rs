//! What recording one finished request into the OTLP metrics costs: on the engine's thread,
//! `OtlpMetricsSink::on_request`, which walks the catalogue's observations into a buffer and
//! queues it; on the recorder thread, recording each observation into its OpenTelemetry
//! instrument.
//!
//! Workload: one `ok` request of 3 stages (the first streams 32 outputs: 31 inter-output
//! gaps; the last makes audio) and 2 edges: 63 observations into 20 instruments. The
//! engine's side queues 8 requests, then waits for the recorder (an engine finishes
//! requests far slower than the recorder records them) and counts its own CPU time only;
//! the recorder's side is the wall time of a burst of 1,000 requests until recorded. The
//! pipeline exports metrics to a port nobody listens on, every hour: nothing is exported
//! while measuring, so this is the recording alone.
//!
//! Run: `cargo bench --bench otlp_metrics` (`-- --quick` for a short run). Prints ns per
//! request on the engine's thread and on the recorder's (median of rounds, 1 and 2
//! threads), and heap allocations per request on the engine's thread.
//!
//! Results: the table of `docs/performance.md`, and `docs/design/performance-history.md`, with
//! the machine they came from.

mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use omni_metrics::metrics::catalog::observe;
use omni_metrics::otlp::{OtlpMetricsSink, OtlpPipeline, OtlpProtocol};
use omni_metrics::report::Sink;
use omni_metrics::stats::{RequestE2EStats, StageRequestStats, TransferEdgeStats};
use support::{Spread, allocs_so_far, thread_cpu_time};

/// Counts heap allocations of the measuring thread.
#[global_allocator]
static GLOBAL: support::CountAllocs = support::CountAllocs;

fn request() -> RequestE2EStats {
    let stage = |id: u64| StageRequestStats {
        stage_id: id,
        num_tokens_in: 4860,
        num_tokens_out: 67,
        stage_gen_time_ms: 910.5,
        postprocess_time_ms: 25.1,
        queue_time_ms: 3.2,
        time_to_first_output_ms: Some(42.0),
        ..Default::default()
    };
    let mut stages = vec![stage(0), stage(1), stage(2)];
    stages[0].inter_output_gaps_ms = (0..31).map(|i| 20.0 + f64::from(i)).collect();
    stages[2].audio_generated_frames = 525_525;
    stages[2].audio_sample_rate = Some(24_000);
    stages[2].audio_duration_ms = Some(21_896.875);
    stages[2].audio_rtf = Some(0.04);
    let edge = |from: u64| TransferEdgeStats {
        from_stage: from,
        to_stage: from + 1,
        size_bytes: 111_900_005,
        tx_time_ms: 78.7,
        rx_decode_time_ms: 111.8,
        in_flight_time_ms: 2.0,
        ..Default::default()
    };
    RequestE2EStats {
        request_id: "r-17".into(),
        e2e_total_ms: 2_299.1,
        time_to_first_output_ms: Some(950.0),
        time_to_first_audio_ms: Some(1_200.0),
        audio_duration_ms: Some(21_896.875),
        audio_e2e_rtf: Some(0.1),
        stages,
        transfers: vec![edge(0), edge(1)],
        ..Default::default()
    }
}

/// Requests an engine's thread queues before it waits for the recorder: an engine finishes
/// requests one by one, far slower than the recorder records them.
const BATCH: u64 = 8;

/// CPU ns per request on the engine's threads: each of `threads` threads queues `iters`
/// requests, waiting for the recorder after every [`BATCH`] (the wait is not counted).
fn engine_ns(sink: &OtlpMetricsSink, r: &RequestE2EStats, threads: usize, iters: u64) -> f64 {
    let spent: Duration = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters / BATCH {
                        let started = thread_cpu_time();
                        for _ in 0..BATCH {
                            sink.on_request(black_box(r));
                        }
                        spent += thread_cpu_time().saturating_sub(started);
                        assert!(sink.wait_recorded(Duration::from_secs(60)), "recorded");
                    }
                    spent
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("ran")).sum()
    });
    spent.as_nanos() as f64 / (iters / BATCH * BATCH * threads as u64) as f64
}

/// Wall ns per request for the recorder: a burst of requests queued at once (below the
/// queue's capacity), until every one is recorded.
fn recorder_ns(sink: &OtlpMetricsSink, r: &RequestE2EStats) -> f64 {
    const BURST: u32 = 1000;
    let started = Instant::now();
    for _ in 0..BURST {
        sink.on_request(black_box(r));
    }
    assert!(sink.wait_recorded(Duration::from_secs(60)), "recorded");
    started.elapsed().as_nanos() as f64 / f64::from(BURST)
}

fn main() {
    let quick = support::Args::parse().quick();
    let (iters, rounds) = if quick { (20_000, 3) } else { (200_000, 9) };
    support::print_machine();
    let pipeline = OtlpPipeline::builder()
        .with_metrics_endpoint("http://127.0.0.1:9/v1/metrics")
        .with_protocol(OtlpProtocol::HttpProtobuf)
        .with_metric_export_interval(Duration::from_secs(3600))
        .with_shutdown_timeout(Duration::from_millis(200))
        .build()
        .expect("pipeline");
    assert!(pipeline.exports_metrics(), "metrics are exported");
    let sink = pipeline.metrics_sink();
    let r = request();
    let mut observations = 0u64;
    observe(&r, |_, _, _| observations += 1);

    // Every series exists after the first request, and the buffers come back to be
    // filled again.
    for _ in 0..10 {
        sink.on_request(&r);
        assert!(sink.wait_recorded(Duration::from_secs(10)));
    }
    let before = allocs_so_far();
    for _ in 0..100 {
        for _ in 0..BATCH {
            sink.on_request(black_box(&r));
        }
        assert!(sink.wait_recorded(Duration::from_secs(10)));
    }
    let allocs = (allocs_so_far() - before) as f64 / (100 * BATCH) as f64;

    for threads in [1, 2] {
        engine_ns(&sink, &r, threads, iters / 10); // warm up
        let Spread { median, min, max } = Spread::of(
            (0..rounds)
                .map(|_| engine_ns(&sink, &r, threads, iters))
                .collect(),
        );
        println!(
            "engine's thread, {threads} thread(s): {median:.0} ns of CPU per request \
             ({min:.0}..{max:.0})"
        );
    }
    let Spread { median, min, max } =
        Spread::of((0..rounds).map(|_| recorder_ns(&sink, &r)).collect());
    println!(
        "recorder thread: {median:.0} ns per request ({min:.0}..{max:.0}), {:.1} ns per \
         observation, {observations} observations",
        median / observations as f64
    );
    assert_eq!(sink.dropped_requests(), 0, "every request recorded");
    println!("{allocs:.2} heap allocations per request on the engine's thread");
    // Nothing to deliver: the collector is absent, shut down without waiting for it.
    drop(pipeline);
}
