//! One request across processes: an orchestrator and one worker process per stage.
//!
//! The orchestrator (this binary without `--worker`) spawns three workers (this same binary
//! with `--worker <stage>`), then runs each request through them: for every stage it opens
//! its own stage span (and the transfer into it), sends the serialized input over a
//! loopback socket with the request's trace context alongside (`omni_metrics::propagation`),
//! and records the times the worker measured as explicit fields, so its own tables are
//! complete. Each worker opens the receiving half of the transfer and its stage from the
//! context, so its spans join the request's one trace. Every process exports OTLP when
//! configured.
//!
//! ```text
//! cargo run --example multiprocess
//! cargo run --example multiprocess -- -n 8 --otlp http://localhost:4317   # traces to Jaeger
//! ```
//!
//! Wire format, both ways: a 4-byte big-endian length, a JSON header, an 8-byte big-endian
//! length, the payload bytes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use omni_metrics::instrument::{Request, Run};
use omni_metrics::propagation;
use serde::{Deserialize, Serialize};

#[derive(Parser, Debug)]
#[command(about = "An omni pipeline whose stages run in separate processes, one trace per request")]
struct Args {
    /// Run as the worker of this stage (the orchestrator starts them with it).
    #[arg(long, value_name = "STAGE", hide = true)]
    worker: Option<u64>,
    /// Number of requests.
    #[arg(short = 'n', long, default_value_t = 4)]
    requests: u32,
    /// Export traces over OTLP/gRPC to this collector, from every process (else as the
    /// OTEL_* variables say).
    #[arg(long, value_name = "ENDPOINT")]
    otlp: Option<String>,
}

const STAGES: [&str; 3] = ["thinker", "talker", "code2wav"];

/// Simulated milliseconds of compute per generated token, in every worker.
const MS_PER_TOKEN: f64 = 0.2;

/// What the orchestrator sends a worker with each input.
#[derive(Serialize, Deserialize)]
struct Job {
    request_id: String,
    tokens_in: u64,
    /// The orchestrator's stage span's context: the worker's stage nests under it.
    stage_context: HashMap<String, String>,
    /// The transfer's context (none for stage 0, whose input is the prompt).
    transfer_context: Option<HashMap<String, String>>,
}

/// What a worker measured, sent back with its output.
#[derive(Serialize, Deserialize, Default)]
struct Done {
    tokens_out: u64,
    gen_time_ms: f64,
    in_flight_time_ms: f64,
    rx_decode_time_ms: f64,
    time_to_first_output_ms: f64,
    inter_output_ms: Option<f64>,
    output_chunks: u64,
    audio_frames: u64,
}

fn write_frame(w: &mut impl Write, header: &impl Serialize, payload: &[u8]) -> std::io::Result<()> {
    let header = serde_json::to_vec(header)?;
    let len = u32::try_from(header.len()).map_err(std::io::Error::other)?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(&header)?;
    w.write_all(&(payload.len() as u64).to_be_bytes())?;
    w.write_all(payload)?;
    w.flush()
}

/// Reads one frame's header, then times reading its payload (the bytes in flight).
fn read_frame<T: for<'de> Deserialize<'de>>(
    r: &mut impl Read,
) -> std::io::Result<(T, Vec<u8>, Duration)> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let mut header = vec![0u8; u32::from_be_bytes(len) as usize];
    r.read_exact(&mut header)?;
    let header = serde_json::from_slice(&header).map_err(std::io::Error::other)?;
    let started = Instant::now();
    let mut len = [0u8; 8];
    r.read_exact(&mut len)?;
    let size = usize::try_from(u64::from_be_bytes(len)).map_err(std::io::Error::other)?;
    if size > 1 << 30 {
        return Err(std::io::Error::other(format!(
            "a payload of {size} bytes is too large"
        )));
    }
    let mut payload = vec![0u8; size];
    r.read_exact(&mut payload)?;
    Ok((header, payload, started.elapsed()))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = match args.worker {
        Some(stage) => worker(&args, stage),
        None => orchestrator(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Metrics (console off in workers), logs and, when configured, OTLP export named `service`.
fn install(
    args: &Args,
    service: &str,
    console: bool,
) -> Result<omni_metrics::OmniGuard, Box<dyn std::error::Error>> {
    #[cfg_attr(not(feature = "otlp"), allow(unused_mut))]
    let mut install = omni_metrics::Install::new()
        .with_metrics(omni_metrics::OmniMetricsLayer::builder().with_console(console));
    #[cfg(feature = "otlp")]
    {
        let mut otlp =
            omni_metrics::otlp::OtlpPipeline::builder().with_default_service_name(service);
        if let Some(endpoint) = &args.otlp {
            otlp = otlp.with_endpoint(endpoint.clone());
        }
        install = install.with_otlp(otlp);
    }
    #[cfg(not(feature = "otlp"))]
    let _ = (args, service);
    Ok(install.init()?)
}

// ---------------------------------------------------------------- worker

fn worker(args: &Args, stage_id: u64) -> Result<(), Box<dyn std::error::Error>> {
    let guard = install(args, &format!("omni-worker-{stage_id}"), false)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    // The orchestrator reads the port from the first line.
    println!("PORT {}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    // Stdin closing (the orchestrator is done, or gone) ends the worker, flushing its spans.
    listener.set_nonblocking(true)?;
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        let _ = stop_tx.send(());
    });
    let mut serving = Vec::new();
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                conn.set_nonblocking(false)?;
                serving.push(std::thread::spawn(move || serve_worker(conn, stage_id)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if stop_rx.recv_timeout(Duration::from_millis(5)).is_ok() {
                    break;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    for thread in serving {
        if let Ok(Err(e)) = thread.join() {
            eprintln!("worker {stage_id}: {e}");
        }
    }
    drop(guard);
    Ok(())
}

/// Serves one connection: jobs in, results out, until the orchestrator closes it.
fn serve_worker(conn: TcpStream, stage_id: u64) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    loop {
        let (job, payload, in_flight): (Job, Vec<u8>, Duration) = match read_frame(&mut reader) {
            Ok(frame) => frame,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut done = Done {
            in_flight_time_ms: ms(in_flight),
            ..Done::default()
        };
        // The receiving half of the transfer, in the request's trace.
        if let Some(context) = &job.transfer_context {
            let remote = propagation::extract(context);
            let started = Instant::now();
            let rx = remote.rx_decode();
            if let Some(t) = rx.transfer() {
                t.size_bytes(payload.len() as u64);
            }
            let checksum: u64 = payload.iter().map(|b| u64::from(*b)).sum();
            std::hint::black_box(checksum);
            drop(rx);
            done.rx_decode_time_ms = ms(started.elapsed());
        }
        // The stage's compute, under the orchestrator's stage span in the trace.
        let remote = propagation::extract(&job.stage_context);
        let started = Instant::now();
        let stage = remote.stage(remote.stage_id().unwrap_or(stage_id));
        stage
            .name(STAGES[stage_id as usize])
            .tokens_in(job.tokens_in);
        let (tokens_out, units, output) = match stage_id {
            0 => (
                40 + job.tokens_in % 60,
                40 + job.tokens_in % 60,
                (40 + job.tokens_in % 60) * 2048,
            ),
            1 => (job.tokens_in * 4, job.tokens_in * 4, job.tokens_in * 4 * 16),
            _ => (0, job.tokens_in * 1920, 0),
        };
        let chunks = 4u64;
        let step =
            Duration::from_secs_f64(units.min(400) as f64 * MS_PER_TOKEN / 1000.0 / chunks as f64);
        let mut last = None::<Instant>;
        let mut gaps = Vec::new();
        for _ in 0..chunks {
            std::thread::sleep(step);
            stage.output(units / chunks);
            let now = Instant::now();
            match last {
                None => done.time_to_first_output_ms = ms(now - started),
                Some(prev) => gaps.push(ms(now - prev)),
            }
            last = Some(now);
        }
        stage.tokens_out(tokens_out);
        if stage_id == 2 {
            stage.audio(units, 24_000);
            done.audio_frames = units;
        }
        drop(stage);
        done.gen_time_ms = ms(started.elapsed());
        done.tokens_out = tokens_out;
        done.output_chunks = chunks;
        done.inter_output_ms =
            (!gaps.is_empty()).then(|| gaps.iter().sum::<f64>() / gaps.len() as f64);
        write_frame(&mut writer, &done, &vec![1u8; output as usize])?;
    }
}

// ---------------------------------------------------------------- orchestrator

struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
}

fn spawn_worker(args: &Args, stage: u64) -> Result<Worker, Box<dyn std::error::Error>> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("--worker")
        .arg(stage.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(endpoint) = &args.otlp {
        command.arg("--otlp").arg(endpoint);
    }
    let mut child = command.spawn()?;
    let stdout = child.stdout.take().ok_or("the worker has no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("worker {stage} did not say its port (said {line:?})"))?;
    let stdin = child.stdin.take();
    Ok(Worker { child, stdin, port })
}

fn orchestrator(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let guard = install(args, "omni-orchestrator", true)?;
    let mut workers = Vec::new();
    for stage in 0..STAGES.len() as u64 {
        workers.push(spawn_worker(args, stage)?);
    }
    let mut conns = Vec::new();
    for w in &workers {
        let conn = TcpStream::connect(("127.0.0.1", w.port))?;
        conn.set_nodelay(true)?;
        conns.push((BufReader::new(conn.try_clone()?), conn));
    }

    let run = Run::with_id("multiprocess");
    let result = run
        .span()
        .in_scope(|| -> Result<(), Box<dyn std::error::Error>> {
            for i in 0..args.requests {
                one_request(&format!("r-{i}"), 200 + u64::from(i) * 37, &mut conns)?;
            }
            Ok(())
        });
    drop(run);

    drop(conns);
    for mut w in workers {
        drop(w.stdin.take()); // the worker stops, flushing its spans
        let status = w.child.wait()?;
        if !status.success() {
            eprintln!("a worker exited with {status}");
        }
    }
    drop(guard);
    result
}

fn one_request(
    request_id: &str,
    prompt_tokens: u64,
    conns: &mut [(BufReader<TcpStream>, TcpStream)],
) -> Result<(), Box<dyn std::error::Error>> {
    let request = Request::start(request_id);
    let mut tokens_in = prompt_tokens;
    let mut input = vec![7u8; prompt_tokens as usize * 4];
    for (stage_id, (reader, writer)) in conns.iter_mut().enumerate() {
        let stage_id = stage_id as u64;
        let transfer = (stage_id > 0).then(|| request.transfer(stage_id - 1, stage_id));
        let stage = request.stage(stage_id);
        stage.name(STAGES[stage_id as usize]).tokens_in(tokens_in);
        let mut stage_context = HashMap::new();
        propagation::inject_stage(stage.span(), request_id, stage_id, &mut stage_context);
        let transfer_context = transfer.as_ref().map(|t| {
            let mut context = HashMap::new();
            propagation::inject_transfer(
                t.span(),
                request_id,
                stage_id - 1,
                stage_id,
                &mut context,
            );
            context
        });
        let job = Job {
            request_id: request_id.to_owned(),
            tokens_in,
            stage_context,
            transfer_context,
        };
        let tx = transfer.as_ref().map(|t| t.tx());
        write_frame(writer, &job, &input)?;
        drop(tx);
        let (done, output, _): (Done, Vec<u8>, Duration) = read_frame(reader)?;
        // The worker's measures, as explicit fields: this process's tables are whole.
        if let Some(t) = transfer {
            t.size_bytes(input.len() as u64).times_ms(
                None,
                Some(done.rx_decode_time_ms),
                Some(done.in_flight_time_ms),
            );
        }
        stage
            .tokens_out(done.tokens_out)
            .gen_time_ms(done.gen_time_ms)
            .first_output_ms(done.time_to_first_output_ms);
        if let Some(gap) = done.inter_output_ms {
            stage.inter_output_ms(gap);
        }
        if done.audio_frames > 0 {
            stage.audio(done.audio_frames, 24_000);
        }
        drop(stage);
        tokens_in = if done.tokens_out > 0 {
            done.tokens_out
        } else {
            tokens_in
        };
        input = output;
    }
    request.finish();
    Ok(())
}
