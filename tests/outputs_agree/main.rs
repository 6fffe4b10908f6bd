//! Every output agrees: one run of concurrent requests, read through every
//! output at once (the console summary, the JSON-lines records, the Prometheus text parsed
//! with a real OpenMetrics parser, the OTLP metrics a real receiver got, and the handle),
//! gives the same counts and sums; times agree within the histograms' resolution.

#[allow(dead_code)]
#[path = "../support/otlp_points.rs"]
mod otlp_points;
#[allow(dead_code, unused_imports)]
#[path = "../support/prometheus.rs"]
mod prom;
#[allow(dead_code)]
#[path = "../support/grpc_receiver.rs"]
mod receiver;
#[path = "../support/shared_buf.rs"]
mod shared_buf;
#[path = "../support/table_rows.rs"]
mod table_rows;

use std::collections::BTreeMap;
use std::time::Duration;

use omni_metrics::instrument::Run;
use omni_metrics::otlp::{MetricTemporality, OtlpPipeline};
use omni_metrics::stats::Quantity;
use omni_metrics::{OmniMetricsLayer, PrometheusSink};
use tracing_subscriber::prelude::*;

use shared_buf::SharedBuf;

const THREADS: usize = 4;
const PER_THREAD: usize = 25;

/// One request: thinker streams tokens, talker streams codec tokens, code2wav audio; two
/// transfers. Every 10th fails, every 12th is dropped (aborted).
fn play(run: &Run, id: &str, i: usize) {
    let request = run.request(id);
    let tokens = 100 + (i as u64 % 7) * 13;
    for stage_id in 0..3u64 {
        let stage = request.stage(stage_id);
        stage
            .tokens_in(tokens)
            .tokens_out(if stage_id == 2 { 0 } else { tokens / 2 });
        drop(stage.queue());
        for _ in 0..3 {
            std::thread::sleep(Duration::from_micros(200));
            stage.output(4);
        }
        if stage_id == 2 {
            stage.audio(48_000 + i as u64, 24_000);
        }
        drop(stage.postprocess());
        drop(stage);
        if stage_id < 2 {
            let t = request.transfer(stage_id, stage_id + 1);
            t.size_bytes(4096 * (stage_id + 1) + i as u64);
            drop(t.tx());
            drop(t.rx_decode());
        }
    }
    if i % 10 == 9 {
        request.fail_with("out of memory");
    } else if i % 12 == 11 {
        drop(request);
    } else {
        request.finish();
    }
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0),
        "{what}: {a} vs {b}"
    );
}

#[test]
fn every_door_gives_the_same_counts_and_sums() {
    let receiver = receiver::GrpcReceiver::start();
    let pipeline = OtlpPipeline::builder()
        .with_endpoint(format!("http://{}", receiver.addr))
        .with_temporality(MetricTemporality::Cumulative)
        .with_shutdown_timeout(Duration::from_secs(10))
        .build()
        .expect("pipeline");
    let prometheus = PrometheusSink::bind("127.0.0.1:0").expect("a free port");
    let (console, jsonl) = (SharedBuf::default(), SharedBuf::default());
    let layer = OmniMetricsLayer::builder()
        .with_console(omni_metrics::Destination::writer(console.clone()))
        .with_request_tables(false)
        .with_jsonl(omni_metrics::Destination::writer(jsonl.clone()))
        .with_sink(prometheus.clone())
        .with_sink(pipeline.metrics_sink())
        .build()
        .expect("layer");
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(layer)
            .with(pipeline.layer()),
    );

    tracing::dispatcher::with_default(&dispatch, || {
        let run = Run::with_id("doors");
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let (run, dispatch) = (&run, &dispatch);
                scope.spawn(move || {
                    tracing::dispatcher::with_default(dispatch, || {
                        for i in 0..PER_THREAD {
                            play(run, &format!("t{t}-{i}"), i);
                        }
                    })
                });
            }
        });
        drop(run);
    });
    handle
        .flush(Duration::from_secs(10))
        .expect("records written");
    let guard = pipeline.into_guard();
    guard.force_flush().expect("metrics exported");

    // The records: the request lines and the run's summary line.
    let lines: Vec<serde_json::Value> = jsonl
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let requests: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["type"] == "request").collect();
    let summary = lines
        .iter()
        .find(|l| l["type"] == "summary")
        .expect("the run's summary record");
    assert_eq!(requests.len(), THREADS * PER_THREAD);
    let ok: Vec<&&serde_json::Value> = requests.iter().filter(|r| r["status"] == "ok").collect();
    let count = |status: &str| requests.iter().filter(|r| r["status"] == status).count() as u64;
    let (n_ok, n_error, n_aborted) = (count("ok"), count("error"), count("aborted"));
    assert_eq!(n_ok + n_error + n_aborted, (THREADS * PER_THREAD) as u64);
    assert!(n_error > 0 && n_aborted > 0);
    let sum = |f: &dyn Fn(&serde_json::Value) -> f64| ok.iter().map(|r| f(r)).sum::<f64>();
    let latency_ms = sum(&|r| r["e2e_total_ms"].as_f64().unwrap_or(f64::NAN));
    let tokens = sum(&|r| r["e2e_total_tokens"].as_f64().unwrap_or(f64::NAN));
    let prompt = sum(&|r| r["stages"][0]["num_tokens_in"].as_f64().unwrap_or(f64::NAN));
    let gen1_ms = sum(&|r| {
        r["stages"][1]["stage_gen_time_ms"]
            .as_f64()
            .unwrap_or(f64::NAN)
    });
    let bytes01 = sum(&|r| r["transfers"][0]["size_bytes"].as_f64().unwrap_or(f64::NAN));
    assert_eq!(summary["e2e_requests"], n_ok);
    assert_eq!(summary["e2e_requests_error"], n_error);
    assert_eq!(summary["e2e_requests_aborted"], n_aborted);
    assert_eq!(summary["e2e_total_tokens"].as_f64(), Some(tokens));
    let d = &summary["distributions"]["e2e_total_ms"];
    assert_eq!(d["count"], n_ok);
    // The histograms keep whole microseconds: the mean is within 1 µs of the records'.
    let mean = d["mean_ms"].as_f64().expect("a mean");
    assert!((mean - latency_ms / n_ok as f64).abs() <= 0.001, "{mean}");

    // The console: the run's Overall Summary and Distributions tables.
    let text = console.text();
    let table = |title: &str| -> BTreeMap<String, Vec<String>> {
        let mut lines = text.lines().skip_while(|l| !l.starts_with(title));
        lines
            .next()
            .unwrap_or_else(|| panic!("no {title} in\n{text}"));
        let body: Vec<&str> = lines.take_while(|l| !l.is_empty()).collect();
        table_rows::rows(&body.join("\n"))
            .into_iter()
            .filter_map(|mut row| (!row.is_empty()).then(|| (row.remove(0), row)))
            .collect()
    };
    let number = |s: &str| s.replace(',', "").parse::<f64>().expect("a number");
    let overall = table("Overall Summary (scope doors)");
    assert_eq!(number(&overall["e2e_requests"][0]), n_ok as f64);
    assert_eq!(number(&overall["e2e_total_tokens"][0]), tokens);
    assert_eq!(number(&overall["e2e_requests_error"][0]), n_error as f64);
    assert_eq!(
        number(&overall["e2e_requests_aborted"][0]),
        n_aborted as f64
    );
    let dist = table("Distributions");
    assert_eq!(number(&dist["e2e_total_ms"][0]), n_ok as f64);
    assert!((number(&dist["e2e_total_ms"][1]) - mean).abs() <= 0.0005 + 1e-9);
    assert_eq!(
        number(&dist["e2e_total_ms"][4]),
        (d["p99_ms"].as_f64().unwrap_or(f64::NAN) * 1000.0).round() / 1000.0
    );

    // The handle.
    let totals = handle.totals();
    assert_eq!(
        (
            totals.requests_ok,
            totals.requests_error,
            totals.requests_aborted
        ),
        (n_ok, n_error, n_aborted)
    );
    assert_eq!(totals.total_tokens as f64, tokens);
    let cumulative = handle.cumulative_summary();
    assert_eq!(cumulative.e2e_requests, n_ok);
    assert_eq!(cumulative.e2e_total_tokens as f64, tokens);
    let last = handle.last_summary().expect("the run's summary");
    assert_eq!(
        last.distributions
            .get(Quantity::RequestLatency)
            .map(|s| s.count),
        Some(n_ok)
    );

    // Prometheus, scraped over HTTP and parsed.
    let addr = prometheus.local_addr().expect("served");
    let scraped = prom::get(addr, "GET /metrics HTTP/1.1");
    let parsed = prom::parse(&scraped.body);
    let reason = |r: &str| {
        prom::counter(
            &parsed,
            "vllm_omni:requests_success",
            &[("finished_reason", r)],
        )
    };
    assert_eq!(
        (reason("stop"), reason("error"), reason("abort")),
        (n_ok as f64, n_error as f64, n_aborted as f64)
    );
    let prompt_p = prom::counter(&parsed, "vllm_omni:prompt_tokens", &[]);
    let generation_p = prom::counter(&parsed, "vllm_omni:generation_tokens", &[]);
    assert_eq!(prompt_p, prompt);
    assert_eq!(prompt_p + generation_p, tokens);
    let hist_sum_count = |name: &str, labels: &[(&str, &str)]| {
        let h = prom::histogram(&parsed, name, labels);
        let sum = h.sum.map_or(f64::NAN, |s| s.as_f64());
        let count = h.count.unwrap_or_default();
        (sum, count)
    };
    let (latency_s, latency_n) = hist_sum_count("vllm_omni:e2e_request_latency_s", &[]);
    assert_eq!(latency_n, n_ok);
    close(latency_s * 1000.0, latency_ms, "Prometheus latency sum");
    let (gen1_s, _) = hist_sum_count("vllm_omni:stage_gen_time_s", &[("stage", "1")]);
    close(gen1_s * 1000.0, gen1_ms, "Prometheus stage 1 gen sum");
    let (bytes_p, _) = hist_sum_count(
        "vllm_omni:transfer_size_bytes",
        &[("from_stage", "0"), ("to_stage", "1")],
    );
    assert_eq!(bytes_p, bytes01);
    assert!(!scraped.body.contains("t0-"), "no request id in a label");

    // OTLP metrics, as the receiver got them (cumulative: the latest point of each series).
    let received = otlp_points::latest(&otlp_points::points(&receiver.metrics()));
    // Every point carries `model_name`: the default one, this layer naming none.
    let point = |name: &str, attrs: &[(&str, &str)]| {
        let key = (
            name.to_owned(),
            attrs
                .iter()
                .chain([&("model_name", "unknown")])
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        );
        received
            .get(&key)
            .unwrap_or_else(|| panic!("no OTLP series {key:?}"))
            .clone()
    };
    let requests_otlp = |r: &str| point("omni.requests", &[("finished_reason", r)]).sum;
    assert_eq!(
        (
            requests_otlp("stop"),
            requests_otlp("error"),
            requests_otlp("abort")
        ),
        (n_ok as f64, n_error as f64, n_aborted as f64)
    );
    let duration = point("gen_ai.server.request.duration", &[]);
    assert_eq!(duration.count, n_ok);
    close(duration.sum * 1000.0, latency_ms, "OTLP latency sum");
    close(
        point("omni.stage.gen_time", &[("stage", "i:1")]).sum * 1000.0,
        gen1_ms,
        "OTLP stage 1 gen sum",
    );
    // Prometheus and OTLP hold the same counts (their buckets differ: OTLP's are the
    // GenAI semantic conventions').
    let buckets = prom::histogram(&parsed, "vllm_omni:e2e_request_latency_s", &[]);
    assert_eq!(buckets.count, Some(duration.count));
    drop(guard);
}
