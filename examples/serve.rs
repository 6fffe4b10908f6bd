//! An online omni server: an OpenAI-style `/v1/chat/completions` (streaming and not) whose
//! every request runs a simulated Qwen3-Omni pipeline (thinker -> talker -> code2wav),
//! instrumented with omni-metrics; `/metrics` for Prometheus; the periodic summary line on
//! the console.
//!
//! ```text
//! cargo run --example serve                                  # http://127.0.0.1:8000
//! curl -s localhost:8000/v1/chat/completions -d '{"messages":[{"role":"user","content":"hi"}]}'
//! curl -sN localhost:8000/v1/chat/completions -d '{"stream":true,"messages":[{"role":"user","content":"hi"}]}'
//! curl -s localhost:8000/metrics
//! cargo run --release --example serve -- --load 32          # requests/s with and without metrics
//! ```
//!
//! Online, every request is its own scope; the server prints no per-request tables (they
//! would flood the console under load) but one line every `--log-interval` seconds, and
//! `/stats` shows the cumulative and windowed summaries.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Parser;
use omni_metrics::instrument::Request;
use serde::Deserialize;
use tokio::sync::mpsc;

#[derive(Parser, Debug, Clone)]
#[command(about = "An OpenAI-style server running a simulated omni pipeline, with omni-metrics")]
struct Args {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: SocketAddr,
    /// Simulated milliseconds of compute per generated token (thinker; the talker is faster).
    #[arg(long, default_value_t = 0.5)]
    ms_per_token: f64,
    /// Seconds between the periodic summary lines (0: none).
    #[arg(long, default_value_t = 10.0)]
    log_interval: f64,
    /// Measure instead of serving: drive this many concurrent clients against an in-process
    /// server, once without metrics and once with them, and print requests/s.
    #[arg(long, value_name = "CLIENTS")]
    load: Option<usize>,
    /// Requests per configuration and round in `--load` mode.
    #[arg(long, default_value_t = 2000)]
    requests: u64,
    /// Rounds in `--load` mode (the configurations alternate; medians are reported).
    #[arg(long, default_value_t = 5)]
    rounds: u32,
}

/// The simulated engine: how long each stage computes and what it emits.
#[derive(Clone, Copy, Debug)]
struct Engine {
    ms_per_token: f64,
}

#[derive(Clone)]
struct AppState {
    engine: Engine,
    next_id: Arc<AtomicU64>,
    metrics: Option<omni_metrics::MetricsHandle>,
    prometheus: Option<omni_metrics::PrometheusSink>,
}

#[derive(Deserialize)]
struct ChatRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    max_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: String,
}

/// What the pipeline sends back while it runs: text deltas, then the end.
enum Piece {
    Text(String),
    Done {
        prompt_tokens: u64,
        completion_tokens: u64,
        audio_ms: f64,
        /// Finished by whoever hands the response's last bytes to the connection; dropped
        /// unfinished (the client hung up first), it is recorded `aborted`.
        request: Request,
    },
}

fn sleep_for(ms: f64) -> Duration {
    Duration::from_secs_f64((ms / 1000.0).clamp(0.0, 60.0))
}

impl Engine {
    /// Runs one request until its response is complete or its client hangs up, whichever
    /// comes first: a client gone at any point (a stage computing, a hand-over, the reply
    /// queued) drops the pipeline, and its request ends `aborted`.
    async fn run(
        self,
        request_id: String,
        prompt_tokens: u64,
        max_tokens: u64,
        out: mpsc::Sender<Piece>,
    ) {
        let gone = out.clone();
        tokio::select! {
            () = self.pipeline(request_id, prompt_tokens, max_tokens, out) => {}
            () = gone.closed() => {}
        }
    }

    /// Runs one request through thinker -> talker -> code2wav, streaming text deltas.
    async fn pipeline(
        self,
        request_id: String,
        prompt_tokens: u64,
        max_tokens: u64,
        out: mpsc::Sender<Piece>,
    ) {
        // Dropped unfinished (the client went away): recorded as `aborted`.
        let request = Request::start(&request_id);

        // Thinker: prefill, then decode in 4 chunks, each streamed to the client.
        let thinker = request.stage(0);
        thinker.name("thinker").batch(0, 1).tokens_in(prompt_tokens);
        let text_tokens = max_tokens.min(40 + prompt_tokens % 60);
        tokio::time::sleep(sleep_for(prompt_tokens as f64 * self.ms_per_token / 50.0)).await;
        let chunks = 4;
        for i in 0..chunks {
            let units = text_tokens / chunks + u64::from(i == chunks - 1) * (text_tokens % chunks);
            tokio::time::sleep(sleep_for(units as f64 * self.ms_per_token)).await;
            thinker.output(units);
            let delta = format!("word{i} ");
            if out.send(Piece::Text(delta)).await.is_err() {
                return; // client gone: `request` drops as aborted
            }
        }
        thinker.tokens_out(text_tokens);
        drop(thinker);

        // Thinker -> talker: hidden states, serialized and decoded.
        let hidden = vec![0u8; text_tokens as usize * 2048];
        handover(&request, 0, 1, &hidden);

        // Talker: 4 codec tokens per text token, in 4 chunks.
        let talker = request.stage(1);
        talker.name("talker").batch(0, 1).tokens_in(text_tokens);
        let codec = text_tokens * 4;
        for _ in 0..chunks {
            tokio::time::sleep(sleep_for(
                codec as f64 / chunks as f64 * self.ms_per_token / 2.0,
            ))
            .await;
            talker.output(codec / chunks);
        }
        talker.tokens_out(codec);
        drop(talker);

        let codes = vec![0u8; codec as usize * 16];
        handover(&request, 1, 2, &codes);

        // Code2wav: 1,920 samples (80 ms at 24 kHz) per codec token, in 4 audio packets.
        let code2wav = request.stage(2);
        code2wav.name("code2wav").batch(0, 1).tokens_in(codec);
        let frames = codec * 1920;
        for _ in 0..chunks {
            tokio::time::sleep(sleep_for(
                codec as f64 / chunks as f64 * self.ms_per_token / 10.0,
            ))
            .await;
            code2wav.output(frames / chunks);
        }
        code2wav.audio(frames, 24_000);
        drop(code2wav);

        // The reply finishes the request as it goes out (before its bytes do: a client that
        // got its answer finds the request in the totals). A reply nobody takes any more
        // drops it unfinished: `aborted`.
        let _ = out
            .send(Piece::Done {
                prompt_tokens,
                completion_tokens: text_tokens,
                audio_ms: frames as f64 * 1000.0 / 24_000.0,
                request,
            })
            .await;
    }
}

/// One hand-over between stages: serialize (tx), then decode (rx_decode).
fn handover(request: &Request, from: u64, to: u64, payload: &[u8]) {
    let transfer = request.transfer(from, to);
    let tx = transfer.tx();
    let wire = payload.to_vec();
    transfer.size_bytes(wire.len() as u64);
    drop(tx);
    let rx = transfer.rx_decode();
    let decoded: u64 = wire.iter().map(|b| u64::from(*b)).sum();
    std::hint::black_box(decoded);
    drop(rx);
}

async fn chat(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
    let chat: ChatRequest = match serde_json::from_slice(&body) {
        Ok(chat) => chat,
        Err(e) => {
            let message = serde_json::json!({"error": {"message": format!("bad request body: {e}"), "type": "invalid_request_error"}});
            return (StatusCode::BAD_REQUEST, Json(message)).into_response();
        }
    };
    let id = format!("chatcmpl-{}", state.next_id.fetch_add(1, Ordering::Relaxed));
    let prompt: usize = chat
        .messages
        .iter()
        .map(|m| m.content.split_whitespace().count())
        .sum();
    let prompt_tokens = 200 + prompt as u64;
    let model = chat.model.unwrap_or_else(|| "qwen3-omni-sim".to_owned());
    let (tx, mut rx) = mpsc::channel(8);
    tokio::spawn(state.engine.run(
        id.clone(),
        prompt_tokens,
        chat.max_tokens.unwrap_or(256),
        tx,
    ));

    if chat.stream {
        // Server-sent events: one chunk per text delta, then [DONE]. A client that hangs
        // up drops the stream, and the pipeline's request ends `aborted`.
        let stream = async_stream(id, model, rx);
        return Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(Body::from_stream(stream))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let mut text = String::new();
    while let Some(piece) = rx.recv().await {
        match piece {
            Piece::Text(delta) => text.push_str(&delta),
            Piece::Done {
                prompt_tokens,
                completion_tokens,
                audio_ms,
                request,
            } => {
                // The request's own timings go back with its answer (W3C Server-Timing).
                let timing = request
                    .finish_with_record()
                    .map(|record| omni_metrics::report::server_timing(&record));
                let mut response = Json(serde_json::json!({
                    "id": id, "object": "chat.completion", "model": model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text},
                                 "audio": {"duration_ms": audio_ms}}],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                              "total_tokens": prompt_tokens + completion_tokens},
                }))
                .into_response();
                if let Some(value) = timing.and_then(|t| header::HeaderValue::from_str(&t).ok()) {
                    response.headers_mut().insert("server-timing", value);
                }
                return response;
            }
        }
    }
    (StatusCode::INTERNAL_SERVER_ERROR, "the pipeline stopped").into_response()
}

/// The SSE body: a stream of `data: ...\n\n` frames fed by the pipeline.
fn async_stream(
    id: String,
    model: String,
    rx: mpsc::Receiver<Piece>,
) -> impl tokio_stream::Stream<Item = Result<String, std::convert::Infallible>> {
    let frames = tokio_stream::wrappers::ReceiverStream::new(rx);
    tokio_stream::StreamExt::map(frames, move |piece| {
        let chunk = match piece {
            Piece::Text(delta) => serde_json::json!({
                "id": id, "object": "chat.completion.chunk", "model": model,
                "choices": [{"index": 0, "delta": {"content": delta}, "finish_reason": null}],
            }),
            Piece::Done { request, .. } => {
                // The last event before [DONE] carries the request's own timings: the
                // Server-Timing value and the record (clients that do not know the event
                // name skip it).
                let timing = request.finish_with_record().map(|record| {
                    let event = serde_json::json!({
                        "server_timing": omni_metrics::report::server_timing(&record),
                        "record": record,
                    });
                    format!("event: omni.timing\ndata: {event}\n\n")
                });
                return Ok(format!(
                    "data: {}\n\n{}data: [DONE]\n\n",
                    serde_json::json!({"id": id, "object": "chat.completion.chunk", "model": model,
                                       "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
                    timing.unwrap_or_default()
                ));
            }
        };
        Ok(format!("data: {chunk}\n\n"))
    })
}

/// The cumulative and windowed summaries, as the console prints them.
async fn stats(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => {
            let cumulative = handle.cumulative_summary();
            let window = handle.window_summary();
            let live = live_text(&handle.live());
            format!("{live}\n{cumulative}{window}").into_response()
        }
        None => (StatusCode::NOT_FOUND, "metrics are off").into_response(),
    }
}

/// What is in flight now, a line each: requests, then stages (and replicas), then edges.
fn live_text(live: &omni_metrics::LiveGauges) -> String {
    let mut text = format!(
        "Live\nrequests_running {}\nrequests_waiting {}\n",
        live.requests_running, live.requests_waiting
    );
    for s in &live.stages_in_flight {
        let replica = s
            .replica_id
            .map(|r| format!(" replica {r}"))
            .unwrap_or_default();
        text.push_str(&format!(
            "stage {}{replica} in flight {}\n",
            s.stage_id, s.requests
        ));
    }
    for (edge, open) in &live.transfers_open {
        text.push_str(&format!("transfer {edge} open {open}\n"));
    }
    text
}

/// The Prometheus families in the format the scraper's `Accept` asks for: OpenMetrics (with
/// exemplars) for Prometheus, the classic text format for `curl`, `promtool` and classic
/// parsers.
async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    match &state.prometheus {
        Some(sink) => {
            let accept = headers
                .get(header::ACCEPT)
                .and_then(|value| value.to_str().ok());
            let (content_type, body) = sink.encode_for(accept);
            (
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::VARY, "accept"),
                ],
                body,
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "metrics are off").into_response(),
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(clients) = args.load {
        return load(&args, clients);
    }
    // The Prometheus families are served on this server's own /metrics.
    let prometheus = omni_metrics::PrometheusSink::unserved();
    // Online: no per-request tables (they would flood the console), one line every
    // --log-interval seconds instead, over a window of the same length.
    let interval = Duration::from_secs_f64(args.log_interval.max(0.0));
    let mut metrics = omni_metrics::OmniMetricsLayer::builder()
        .with_online_tables(false)
        .with_periodic_log(interval)
        .with_sink(prometheus.clone());
    if !interval.is_zero() {
        metrics = metrics.with_summary_window(interval);
    }
    let guard = omni_metrics::Install::new().with_metrics(metrics).init()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let state = AppState {
        engine: Engine {
            ms_per_token: args.ms_per_token,
        },
        next_id: Arc::new(AtomicU64::new(0)),
        metrics: Some(guard.metrics().clone()),
        prometheus: Some(prometheus),
    };
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.addr).await?;
        eprintln!("serving on http://{}", listener.local_addr()?);
        axum::serve(listener, router(state))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    })?;
    drop(runtime);
    drop(guard);
    Ok(())
}

/// `--load`: the same server in-process, driven by `clients` concurrent keep-alive clients,
/// once per configuration; each configuration gets its own runtime whose threads use its
/// subscriber.
fn load(args: &Args, clients: usize) -> Result<(), Box<dyn std::error::Error>> {
    let configurations: [(&str, u8); 3] = [
        ("no metrics (Registry + Identity)", 0),
        ("omni-metrics layer (aggregates on)", 1),
        ("layer + Prometheus door", 2),
    ];
    // Rounds interleave the configurations, so a busy machine slows them alike; each
    // configuration's figure is its median round.
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); configurations.len()];
    for round in 0..args.rounds.max(1) {
        for (index, &(name, doors)) in configurations.iter().enumerate() {
            let prometheus = (doors >= 2).then(omni_metrics::PrometheusSink::unserved);
            let (dispatch, handle) = if doors >= 1 {
                let mut builder = omni_metrics::OmniMetricsLayer::builder().with_console(false);
                if let Some(sink) = &prometheus {
                    builder = builder.with_sink(sink.clone());
                }
                let layer = builder.build()?;
                let handle = layer.handle();
                let subscriber = tracing_subscriber::layer::SubscriberExt::with(
                    tracing_subscriber::registry(),
                    layer,
                );
                (tracing::Dispatch::new(subscriber), Some(handle))
            } else {
                let subscriber = tracing_subscriber::layer::SubscriberExt::with(
                    tracing_subscriber::registry(),
                    tracing_subscriber::layer::Identity::new(),
                );
                (tracing::Dispatch::new(subscriber), None)
            };
            let thread_dispatch = dispatch.clone();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .on_thread_start(move || {
                    // The guard lives as long as the thread: every span of this runtime goes to
                    // this configuration's subscriber.
                    std::mem::forget(tracing::dispatcher::set_default(&thread_dispatch));
                })
                .build()?;
            let state = AppState {
                engine: Engine {
                    ms_per_token: args.ms_per_token,
                },
                next_id: Arc::new(AtomicU64::new(0)),
                metrics: handle.clone(),
                prometheus,
            };
            let requests = args.requests;
            let rate = runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                tokio::spawn(async move { axum::serve(listener, router(state)).await });
                drive(addr, clients, requests).await
            })?;
            if let Some(handle) = &handle {
                // Every request reached the tables (none lost under load).
                let recorded = handle.totals().requests_ok;
                if recorded != requests {
                    return Err(
                        format!("{name}: {recorded} of {requests} requests recorded").into(),
                    );
                }
            }
            drop(runtime);
            if round == 0 {
                // A reader that went away (`| head`) is no reason to stop the load.
                let _ = writeln!(std::io::stderr(), "{name}: {rate:.0} requests/s (round 1)");
            }
            rates[index].push(rate);
        }
    }
    let results: Vec<(&str, f64)> = configurations
        .iter()
        .zip(&mut rates)
        .map(|(&(name, _), rates)| {
            rates.sort_by(f64::total_cmp);
            (name, rates.get(rates.len() / 2).copied().unwrap_or(0.0))
        })
        .collect();
    // Written, not printed: a reader that stops early (`| head -1`) ends the output, not
    // the process with a panic.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{clients} clients, {} requests per round, median of {} rounds",
        args.requests,
        args.rounds.max(1)
    );
    let _ = writeln!(out, "| configuration | requests/s | vs no metrics |");
    let _ = writeln!(out, "|---|---|---|");
    let base = results.first().map_or(1.0, |r| r.1);
    for (name, rate) in &results {
        let _ = writeln!(out, "| {name} | {rate:.0} | {:.3} |", rate / base);
    }
    Ok(())
}

/// Sends `requests` non-streaming chat completions from `clients` keep-alive connections;
/// returns requests per second.
async fn drive(addr: SocketAddr, clients: usize, requests: u64) -> std::io::Result<f64> {
    let left = Arc::new(AtomicU64::new(requests));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let left = left.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = tokio::net::TcpStream::connect(addr).await?;
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                post_chat(&mut conn).await?;
            }
            Ok::<(), std::io::Error>(())
        }));
    }
    for task in tasks {
        task.await.map_err(std::io::Error::other)??;
    }
    Ok(requests as f64 / start.elapsed().as_secs_f64().max(1e-9))
}

/// One request on a keep-alive HTTP/1.1 connection; reads the whole response.
async fn post_chat(conn: &mut tokio::net::TcpStream) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body =
        r#"{"messages":[{"role":"user","content":"say hello in a calm voice"}],"max_tokens":64}"#;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "server closed",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 200") {
            return Err(std::io::Error::other(format!(
                "unexpected response: {head}"
            )));
        }
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| std::io::Error::other("no content-length"))?;
        while buf.len() < end + 4 + length {
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "body cut",
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        return Ok(());
    }
}
