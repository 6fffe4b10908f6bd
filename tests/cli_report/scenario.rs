//! What the child processes run: an engine instrumented with the typed API (or raw spans, in
//! the worker), exporting through the crate's own OTLP pipeline with trace annotations on,
//! as `init()` sets it up, printing its tables and records as it goes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use omni_metrics::OmniMetricsLayer;
use omni_metrics::instrument::{Request, Run};
use omni_metrics::otlp::{OtlpGuard, OtlpPipeline};
use tracing_subscriber::prelude::*;

fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the parent"))
}

/// Installs, as the process's global subscriber, the metrics layer (tables to
/// `<dir>/<name>.txt`, records to `<dir>/<name>.jsonl`) and the OTLP pipeline to the
/// parent's collector (`OMNI_REPORT_ENDPOINT`), to a trace file (`OMNI_REPORT_TRACE_FILE`),
/// or both.
fn install(name: &str) -> (omni_metrics::MetricsHandle, OtlpGuard) {
    let dir = PathBuf::from(env("OMNI_REPORT_DIR"));
    let mut pipeline = OtlpPipeline::builder()
        .with_shutdown_timeout(Duration::from_secs(20))
        .with_service_name(name);
    if let Ok(endpoint) = std::env::var("OMNI_REPORT_ENDPOINT") {
        pipeline = pipeline.with_endpoint(endpoint);
    }
    if let Ok(path) = std::env::var("OMNI_REPORT_TRACE_FILE") {
        pipeline = pipeline.with_trace_file(path);
    }
    let pipeline = pipeline.build().expect("pipeline");
    let metrics = OmniMetricsLayer::builder()
        .with_console(omni_metrics::Destination::writer(
            std::fs::File::create(dir.join(format!("{name}.txt"))).expect("txt"),
        ))
        .with_jsonl(dir.join(format!("{name}.jsonl")))
        .with_trace_annotations(pipeline.exports_traces())
        .build()
        .expect("records file");
    let handle = metrics.handle();
    let subscriber = tracing_subscriber::registry()
        .with(metrics)
        .with(pipeline.layer());
    tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
    (handle, pipeline.into_guard())
}

/// Flushes the records and the traces; every span has reached the collector (and the
/// trace file) after this.
fn shut_down(handle: &omni_metrics::MetricsHandle, mut guard: OtlpGuard) {
    handle
        .flush(Duration::from_secs(10))
        .expect("records written");
    let file = guard.trace_file_stats();
    guard.shutdown().expect("every span exported");
    if let Some(file) = file {
        assert!(file.ended() > 0, "spans reached the trace file's processor");
        assert_eq!(
            (file.exported(), file.not_exported()),
            (file.ended(), 0),
            "every span written to the trace file"
        );
    }
}

/// One request through thinker -> talker (streamed as two spans) -> code2wav, with queue
/// and post-processing time, output events, audio and two-chunk transfers.
fn one_request(request: &Request, i: u64) {
    let thinker = request.stage(0);
    thinker.name("thinker").batch(10 + i, 1).tokens_in(100 + i);
    drop({
        let queue = thinker.queue();
        nap(3);
        queue
    });
    nap(2);
    thinker.output(4);
    nap(1);
    thinker.output(4).tokens_out(8);
    // The engine's own event inside the stage, as the example writes it: the exported
    // stage's end is this last exit (tracing-opentelemetry), 2 ms before it closes, after
    // its post-processing child (issue 24, item 5).
    thinker
        .span()
        .in_scope(|| tracing::info!(tokens_out = 8, "stage computed"));
    drop({
        let post = thinker.postprocess();
        nap(2);
        post
    });
    drop(thinker);
    let t = request.transfer(0, 1);
    t.size_bytes(1 << 20);
    for _chunk in 0..2 {
        drop({
            let tx = t.tx();
            nap(1);
            tx
        });
        nap(1);
        drop({
            let rx = t.rx_decode();
            nap(1);
            rx
        });
    }
    drop(t);
    for _chunk in 0..2 {
        let talker = request.stage(1);
        talker
            .name("talker")
            .batch(20, 2)
            .tokens_in(8)
            .tokens_out(16);
        nap(2);
        talker.output(16);
        drop(talker);
    }
    let t = request.transfer(1, 2);
    t.size_bytes(4096 + i);
    drop({
        let tx = t.tx();
        nap(1);
        tx
    });
    drop({
        let rx = t.rx_decode();
        nap(1);
        rx
    });
    drop(t);
    let vocoder = request.stage(2);
    vocoder.name("code2wav").audio(24_000, 24_000);
    nap(1);
    vocoder.output(12_000);
    nap(1);
    vocoder.output(12_000);
    drop(vocoder);
}

/// An offline run of three requests (one failing), then two online requests (one
/// aborted).
pub(crate) fn live() {
    let (handle, guard) = install("live");
    let run = Run::with_id("batch-1");
    for i in 0..3 {
        let request = run.request(&format!("r-{i}"));
        one_request(&request, i);
        if i == 1 {
            request.fail_with("out of memory");
        } else {
            request.finish();
        }
    }
    drop(run);
    let online = Request::start("o-1");
    one_request(&online, 3);
    online.finish();
    let aborted = Request::start("o-2");
    let stage = aborted.stage(0);
    stage.name("thinker").tokens_in(7);
    drop(stage);
    // Work the request spawned goes on after its abort: live, the request ends at the
    // abort and this stage is not its; the report must say the same.
    let spawned = aborted.stage(1);
    spawned.name("talker").tokens_out(3);
    drop(aborted); // dropped unfinished: aborted
    std::thread::sleep(Duration::from_millis(20));
    drop(spawned);
    shut_down(&handle, guard);
}

/// Polls for `path` for up to 60 s.
fn wait_for(path: &std::path::Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return text;
            }
        }
        assert!(Instant::now() < deadline, "{} never came", path.display());
        nap(5);
    }
}

/// The process that receives a request: opens it, says its trace context, waits for the
/// worker process to run the stages, finishes it.
pub(crate) fn frontend() {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let dir = PathBuf::from(env("OMNI_REPORT_DIR"));
    let (handle, guard) = install("frontend");
    let request = Request::start("x-1");
    let cx = request.span().context();
    let sc = cx.span().span_context().clone();
    // What a W3C `traceparent` carries to the worker.
    std::fs::write(
        dir.join("parent.txt"),
        format!("{} {}\n", sc.trace_id(), sc.span_id()),
    )
    .expect("parent.txt");
    wait_for(&dir.join("worker.done"));
    nap(2);
    request.finish();
    shut_down(&handle, guard);
}

/// The process that runs the stages of the frontend's request, as children of its remote
/// span, with raw spans.
pub(crate) fn worker() {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId};
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let dir = PathBuf::from(env("OMNI_REPORT_DIR"));
    let parent = wait_for(&dir.join("parent.txt"));
    let (trace, span) = parent.trim().split_once(' ').expect("trace and span ids");
    let remote = SpanContext::new(
        TraceId::from_hex(trace).expect("trace id"),
        SpanId::from_hex(span).expect("span id"),
        TraceFlags::SAMPLED,
        true,
        Default::default(),
    );
    let cx = opentelemetry::Context::new().with_remote_span_context(remote);
    let (handle, guard) = install("worker");
    for stage_id in 0..3_u64 {
        let stage = tracing::info_span!(
            target: "omni",
            "omni.stage",
            stage_id,
            stage_name = ["thinker", "talker", "code2wav"][stage_id as usize],
            num_tokens_in = 10_u64,
            num_tokens_out = 5_u64
        );
        let _ = stage.set_parent(cx.clone());
        drop({
            let queue = tracing::info_span!(target: "omni", parent: &stage, "omni.queue");
            nap(2);
            queue
        });
        nap(3);
        tracing::event!(name: "omni.output", target: "omni", parent: &stage, tracing::Level::INFO, units = 5_u64);
        nap(1);
        drop(stage);
        if stage_id < 2 {
            let transfer = tracing::info_span!(
                target: "omni",
                "omni.transfer",
                from_stage = stage_id,
                to_stage = stage_id + 1,
                size_bytes = 2048_u64
            );
            let _ = transfer.set_parent(cx.clone());
            drop({
                let tx = tracing::info_span!(target: "omni", parent: &transfer, "omni.transfer.tx");
                nap(1);
                tx
            });
            nap(1);
            drop({
                let rx = tracing::info_span!(target: "omni", parent: &transfer, "omni.transfer.rx_decode");
                nap(1);
                rx
            });
        }
    }
    shut_down(&handle, guard);
    std::fs::write(dir.join("worker.done"), "done\n").expect("worker.done");
}
