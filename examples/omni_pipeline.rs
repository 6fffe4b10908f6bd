//! A simulated multi-stage ("omni") inference engine, instrumented with omni-metrics.
//!
//! `--pipeline omni` (default) is Qwen3-Omni shaped: thinker (LLM) -> talker (LLM emitting
//! codec tokens) -> code2wav (audio decoder). `--pipeline image` is text-to-image: a text
//! encoder -> a diffusion stage that makes images. Each stage is a tokio task with its own
//! queue; it batches the requests waiting for it, "computes" (sleeps in proportion to the
//! tokens), and hands real byte buffers to the next stage, serialized by the sender and
//! decoded by the receiver.
//!
//! ```text
//! cargo run --example omni_pipeline                          # offline: one run of 8 requests
//! cargo run --example omni_pipeline -- --mode online -n 2    # each request its own summary
//! cargo run --example omni_pipeline -- --pipeline image
//! OMNI_METRICS_JSONL=records.jsonl cargo run --example omni_pipeline
//! OMNI_METRICS_TRACE_FILE=trace.jsonl cargo run --example omni_pipeline   # its traces, for `omni-metrics report`
//! cargo run --example omni_pipeline -- --otlp http://localhost:4317   # traces and metrics to a collector
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317 cargo run --example omni_pipeline
//! ```

use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use omni_metrics::OmniMetricsLayer;
use omni_metrics::instrument::{Request, Run, Stage, Timing, Transfer};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::Span;

#[derive(Parser, Debug)]
#[command(
    about = "A simulated omni inference pipeline printing vLLM-Omni style --log-stats tables"
)]
struct Args {
    /// offline: one `omni.run` summarizes all requests; online: each request is its own scope.
    #[arg(long, value_enum, default_value_t = Mode::Offline)]
    mode: Mode,
    /// The pipeline's shape.
    #[arg(long, value_enum, default_value_t = Pipeline::Omni)]
    pipeline: Pipeline,
    /// Number of requests.
    #[arg(short = 'n', long, default_value_t = 8)]
    requests: u32,
    /// Print only the summaries, not each request's tables.
    #[arg(long)]
    summary_only: bool,
    /// Export traces and metrics over OTLP/gRPC to this collector (e.g.
    /// http://localhost:4317). Without it, they are exported when
    /// OTEL_EXPORTER_OTLP_ENDPOINT is set.
    #[arg(long, value_name = "ENDPOINT")]
    otlp: Option<String>,
    /// Fail every N-th request (status error, with a reason), to see failures in the
    /// records and traces. 0: none.
    #[arg(long, default_value_t = 0, value_name = "N")]
    fail_every: u32,
    /// Stay idle this long after the last request before shutting down (what an idle
    /// server exports).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    linger_ms: u64,
}

/// Requests in flight at once (they are batched by the stages).
const CONCURRENCY: usize = 4;

/// Largest batch a stage forms.
const MAX_BATCH: usize = 4;

/// Simulated milliseconds of compute per generated token (thinker; the talker is faster).
const MS_PER_TOKEN: f64 = 0.5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Online,
    Offline,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Pipeline {
    Omni,
    Image,
}

/// Data on the wire between two stages: the transfer's span travels with it, so the
/// receiver's `rx_decode` is a child of the same transfer (one trace per request).
struct Handoff {
    request: Span,
    transfer: Transfer,
    payload: Vec<u8>,
    tokens_in: u64,
    done: oneshot::Sender<()>,
}

/// A request waiting at a stage for a batch slot; its stage span is open, timing the queue.
struct Job {
    request: Span,
    stage: Stage,
    queue: Option<Timing>,
    input: Vec<f32>,
    tokens_in: u64,
    done: oneshot::Sender<()>,
}

/// Simulated compute time for `tokens` tokens.
fn compute_time(tokens: u64, ms_per_token: f64) -> Duration {
    Duration::from_secs_f64(tokens as f64 * ms_per_token / 1000.0)
}

/// Hidden states, codec tokens or latents: real f32 values, serialized little-endian.
fn encode(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 4);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn decode(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Deterministic pseudo-random activations.
fn activations(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// One stage of the pipeline.
#[derive(Clone, Copy)]
struct StageSpec {
    id: u64,
    name: &'static str,
    /// Simulated compute per output token (or per step).
    ms_per_token: f64,
    /// Output tokens for the input tokens.
    tokens_out: fn(u64) -> u64,
    /// Compute units (decode steps, denoising steps) for the input tokens.
    compute_units: fn(u64) -> u64,
    /// f32 values handed to the next stage, from (input tokens, output tokens).
    handover_values: fn(u64, u64) -> usize,
    /// Post-processing after compute (detokenize, VAE decode, PNG encode), in ms.
    postprocess_ms: u64,
    /// Records what the stage produced beyond tokens (audio frames, images), from its
    /// input tokens.
    outputs: fn(&Stage, u64),
    /// Output chunks the stage streams (`omni.output` events), spread over its compute.
    chunks: u64,
    /// Units (tokens, audio frames, images) streamed in all, from the input tokens.
    units: fn(u64) -> u64,
}

/// Receives hand-overs for one stage: decodes them on arrival, then queues them.
async fn intake(spec: StageSpec, mut wire: mpsc::Receiver<Handoff>, queue: mpsc::Sender<Job>) {
    while let Some(h) = wire.recv().await {
        let rx = h.transfer.rx_decode();
        let input = decode(&h.payload);
        drop(rx);
        drop(h.transfer);
        let stage = Stage::child_of(&h.request, spec.id);
        let queue_timing = stage.queue();
        let job = Job {
            request: h.request,
            stage,
            queue: Some(queue_timing),
            input,
            tokens_in: h.tokens_in,
            done: h.done,
        };
        if queue.send(job).await.is_err() {
            return;
        }
    }
}

/// Runs one stage: forms batches from the waiting requests, computes, post-processes and
/// hands each result to the next stage.
async fn worker(
    spec: StageSpec,
    max_batch: usize,
    mut queue: mpsc::Receiver<Job>,
    next: Option<mpsc::Sender<Handoff>>,
) {
    let mut batch_id = 0u64;
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let size = batch.len() as u64;
        let mut longest = 0;
        for job in &mut batch {
            job.stage
                .name(spec.name)
                .batch(batch_id, size)
                .tokens_in(job.tokens_in);
            longest = longest.max((spec.compute_units)(job.tokens_in));
            // Compute starts: the queue time ends.
            drop(job.queue.take());
        }
        // Compute, streaming each request's output in chunks as it goes (`omni.output`):
        // the first chunk gives the stage's time to first output (TTFT, or time to first
        // audio for code2wav).
        let steps = spec.chunks.max(1);
        let step = compute_time(longest, spec.ms_per_token) / steps as u32;
        for chunk in 0..steps {
            tokio::time::sleep(step).await;
            for job in batch.iter().filter(|_| spec.chunks > 0) {
                let total = (spec.units)(job.tokens_in);
                let per_chunk = total / spec.chunks;
                let units = if chunk + 1 == spec.chunks {
                    total - per_chunk * (spec.chunks - 1)
                } else {
                    per_chunk
                };
                job.stage.output(units);
            }
        }
        for job in batch {
            let out = (spec.tokens_out)(job.tokens_in);
            job.stage.tokens_out(out);
            // The engine's own events, inside the stage's span: an INFO one is exported on
            // the stage's span; the DEBUG one (a prompt) never leaves the process by default.
            job.stage.span().in_scope(|| {
                if spec.id == 0 {
                    tracing::debug!(prompt = %format!("secret prompt of {} tokens", job.tokens_in), "prompt");
                }
                tracing::info!(tokens_out = out, "stage computed");
            });
            (spec.outputs)(&job.stage, job.tokens_in);
            // A real stage computes on its input; keep it alive until here.
            let _checksum: f32 = job.input.iter().sum();
            if spec.postprocess_ms > 0 {
                let _post = job.stage.postprocess();
                tokio::time::sleep(Duration::from_millis(spec.postprocess_ms)).await;
            }
            drop(job.stage);
            let Some(next) = &next else {
                let _ = job.done.send(());
                continue;
            };
            // The sender side: serialize and hand over.
            let transfer = Transfer::child_of(&job.request, spec.id, spec.id + 1);
            let tx = transfer.tx();
            let values = activations((spec.handover_values)(job.tokens_in, out), job.tokens_in);
            let payload = encode(&values);
            transfer.size_bytes(payload.len() as u64);
            let handoff = Handoff {
                request: job.request,
                transfer,
                payload,
                // The next stage reads what this one wrote (or the prompt, for an encoder).
                tokens_in: if out > 0 { out } else { job.tokens_in },
                done: job.done,
            };
            let sent = next.send(handoff).await;
            drop(tx);
            if sent.is_err() {
                return;
            }
        }
        batch_id += 1;
    }
}

fn omni_stages(ms_per_token: f64) -> Vec<StageSpec> {
    vec![
        StageSpec {
            id: 0,
            name: "thinker",
            ms_per_token,
            tokens_out: |tokens_in| 40 + tokens_in % 60,
            compute_units: |tokens_in| 40 + tokens_in % 60 + tokens_in / 50, // decode + prefill
            handover_values: |_, out| out as usize * 2048, // hidden states to the talker
            postprocess_ms: 3,                             // detokenize
            outputs: |_, _| {},
            chunks: 4,
            units: |tokens_in| 40 + tokens_in % 60,
        },
        StageSpec {
            id: 1,
            name: "talker",
            ms_per_token: ms_per_token / 2.0,
            tokens_out: |tokens_in| tokens_in * 4, // codec tokens
            compute_units: |tokens_in| tokens_in * 4,
            handover_values: |_, out| out as usize * 16, // codebook ids per codec token
            postprocess_ms: 0,
            outputs: |_, _| {},
            chunks: 4,
            units: |tokens_in| tokens_in * 4,
        },
        StageSpec {
            id: 2,
            name: "code2wav",
            ms_per_token: ms_per_token / 10.0,
            tokens_out: |_| 0,
            compute_units: |tokens_in| tokens_in,
            handover_values: |_, _| 0,
            postprocess_ms: 0,
            // 24 kHz audio, 1,920 samples (80 ms) per codec token.
            outputs: |stage, codec_tokens| {
                stage.audio(codec_tokens * 1920, 24_000);
            },
            chunks: 4,
            units: |codec_tokens| codec_tokens * 1920,
        },
    ]
}

fn image_stages(ms_per_token: f64) -> Vec<StageSpec> {
    vec![
        StageSpec {
            id: 0,
            name: "text_encoder",
            ms_per_token: ms_per_token / 4.0,
            tokens_out: |_| 0,
            compute_units: |tokens_in| tokens_in,
            // Prompt embeddings: one 4,096-float vector per prompt token.
            handover_values: |tokens_in, _| tokens_in as usize * 4096,
            postprocess_ms: 0,
            outputs: |_, _| {},
            chunks: 0, // an encoder streams nothing
            units: |_| 0,
        },
        StageSpec {
            id: 1,
            name: "diffusion",
            ms_per_token: ms_per_token * 8.0, // per denoising step
            tokens_out: |_| 0,
            compute_units: |_| 30, // steps
            handover_values: |_, _| 0,
            postprocess_ms: 8, // VAE decode + PNG encode
            outputs: |stage, _| {
                stage.images(1, "1024x1024");
            },
            chunks: 1,
            units: |_| 1,
        },
    ]
}

fn main() -> std::process::ExitCode {
    // Errors are printed with their Display message (which says what to do), not Debug.
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    #[cfg_attr(not(feature = "otlp"), allow(unused_mut))]
    let mut install = omni_metrics::Install::new()
        .with_metrics(OmniMetricsLayer::builder().with_request_tables(!args.summary_only));
    #[cfg(not(feature = "otlp"))]
    if args.otlp.is_some() {
        return Err("--otlp needs the `otlp` feature (on by default)".into());
    }
    #[cfg(feature = "otlp")]
    {
        // Traces and metrics go to --otlp, or wherever the OTEL_* variables say;
        // OTEL_SERVICE_NAME wins over the program's own name.
        let mut otlp =
            omni_metrics::otlp::OtlpPipeline::builder().with_default_service_name("omni_pipeline");
        if let Some(endpoint) = &args.otlp {
            otlp = otlp.with_endpoint(endpoint.clone());
        }
        install = install.with_otlp(otlp);
    }
    // Tables, RUST_LOG-filtered logs and (when configured) OTLP traces and metrics; the
    // guard flushes them when it is dropped at the end of main.
    let guard = install.init()?;
    #[cfg(feature = "otlp")]
    {
        let otlp = guard.otlp();
        if otlp.and_then(|o| o.stats()).is_some() {
            tracing::info!("exporting traces over OTLP");
        }
        if otlp.and_then(|o| o.metrics_stats()).is_some() {
            tracing::info!("exporting metrics over OTLP");
        }
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let linger = Duration::from_millis(args.linger_ms);
    runtime.block_on(serve(args));
    std::thread::sleep(linger);
    drop(runtime);
    drop(guard);
    Ok(())
}

async fn serve(args: Args) {
    let stages = match args.pipeline {
        Pipeline::Omni => omni_stages(MS_PER_TOKEN),
        Pipeline::Image => image_stages(MS_PER_TOKEN),
    };
    // Wire the stages: worker i -> (wire) -> intake i+1 -> (queue) -> worker i+1.
    let mut first_queue = None;
    let mut next_wire: Option<mpsc::Sender<Handoff>> = None;
    for spec in stages.into_iter().rev() {
        let (queue_tx, queue_rx) = mpsc::channel::<Job>(1024);
        tokio::spawn(worker(spec, MAX_BATCH, queue_rx, next_wire.take()));
        if spec.id == 0 {
            first_queue = Some(queue_tx);
        } else {
            let (wire_tx, wire_rx) = mpsc::channel::<Handoff>(1024);
            tokio::spawn(intake(spec, wire_rx, queue_tx));
            next_wire = Some(wire_tx);
        }
    }
    let Some(first_queue) = first_queue else {
        return;
    };

    let run = (args.mode == Mode::Offline).then(|| Arc::new(Run::with_id("omni-pipeline")));
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let mut clients = Vec::new();
    let fail_every = args.fail_every;
    for i in 0..args.requests {
        let run = run.clone();
        let slots = slots.clone();
        let queue = first_queue.clone();
        clients.push(tokio::spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let id = format!("req-{i}");
            let request = match &run {
                Some(run) => run.request(&id),
                None => Request::start(&id),
            };
            let prompt_tokens = 300 + u64::from(i) * 97 % 4_500;
            let stage = Stage::child_of(request.span(), 0);
            let queue_timing = stage.queue();
            let (done_tx, done_rx) = oneshot::channel();
            let job = Job {
                request: request.span().clone(),
                stage,
                queue: Some(queue_timing),
                input: activations(prompt_tokens as usize, u64::from(i)),
                tokens_in: prompt_tokens,
                done: done_tx,
            };
            if queue.send(job).await.is_err() {
                request.fail();
                return;
            }
            match done_rx.await {
                Ok(()) if fail_every > 0 && (i + 1) % fail_every == 0 => {
                    request.fail_with("simulated failure (--fail-every)")
                }
                Ok(()) => request.finish(),
                Err(_) => request.fail_with("the pipeline stopped"),
            }
        }));
    }
    for client in clients {
        let _ = client.await;
    }
    // The run's summary is printed when its last handle closes.
    drop(run);
}
