//! OTLP metrics end to end: requests through the real layer and pipeline (or the example
//! process, through `init()`), to real receivers on loopback; what arrives is compared with
//! the records the same requests made.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use omni_metrics::OmniMetricsLayer;
use omni_metrics::metrics::catalog::{METRICS, MetricDef, MetricKind, observe};

/// The catalogue's definition of the Prometheus family `name`.
fn def(name: &str) -> &'static MetricDef {
    METRICS
        .iter()
        .find(|d| d.prometheus == name)
        .unwrap_or_else(|| panic!("{name} is catalogued"))
}
use omni_metrics::otlp::{MetricTemporality, OtlpBuilder, OtlpError, OtlpPipeline, OtlpProtocol};
use omni_metrics::stats::RequestE2EStats;
use omni_metrics::testing::CaptureSink;
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, ResourceMetrics};
use tracing_subscriber::prelude::*;

use crate::http_receiver::HttpReceiver;
use crate::otlp_points::{Point, Series, latest, points};
use crate::receiver::GrpcReceiver;

/// What the records say each series must hold: (observations, sum), from the catalogue's
/// `observe` over the captured records.
fn expected(records: &[RequestE2EStats]) -> HashMap<Series, (u64, f64)> {
    let mut out: HashMap<Series, (u64, f64)> = HashMap::new();
    for r in records {
        observe(r, |def, labels, value| {
            let mut attributes = BTreeMap::new();
            let model = labels
                .model_name
                .expect("a model name on every observation");
            attributes.insert("model_name".to_owned(), model.to_owned());
            for (key, id) in [
                ("stage", labels.stage),
                ("replica", labels.replica),
                ("from_stage", labels.from_stage),
                ("from_replica", labels.from_replica),
                ("to_stage", labels.to_stage),
                ("to_replica", labels.to_replica),
            ] {
                if let Some(id) = id {
                    attributes.insert(key.to_owned(), format!("i:{id}"));
                }
            }
            if let Some(threshold_ms) = labels.threshold_ms {
                attributes.insert("threshold_ms".to_owned(), format!("i:{threshold_ms}"));
            }
            if let Some(reason) = labels.reason {
                attributes.insert("reason".to_owned(), reason.to_owned());
            }
            if let Some(reason) = labels.finished_reason {
                attributes.insert("finished_reason".to_owned(), reason.to_owned());
            }
            let entry = out.entry((def.otel.to_owned(), attributes)).or_default();
            entry.0 += 1;
            entry.1 += value;
        });
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Every series the records make arrived with the same count and sum, with the catalogue's
/// unit, kind and OTLP buckets; nothing else arrived but the live gauges (read from the
/// open spans, not the records: [`live_gauges_and_audio_continuity_reach_the_collector`]).
#[track_caller]
fn same_as_records(received: &HashMap<Series, Point>, records: &[RequestE2EStats]) {
    let want = expected(records);
    let mut problems = Vec::new();
    for ((name, attributes), (count, sum)) in &want {
        let Some(p) = received.get(&(name.clone(), attributes.clone())) else {
            problems.push(format!("missing {name} {attributes:?}"));
            continue;
        };
        let def = METRICS
            .iter()
            .find(|d| d.otel == name)
            .expect("a catalogued name");
        if p.unit != def.unit {
            problems.push(format!("{name}: unit {:?}, want {:?}", p.unit, def.unit));
        }
        match def.kind {
            MetricKind::Histogram => {
                if !p.histogram || p.count != *count || !close(p.sum, *sum) {
                    problems.push(format!(
                        "{name} {attributes:?}: count {} sum {}, want {count} and {sum}",
                        p.count, p.sum
                    ));
                }
                if p.bounds != def.otel_buckets {
                    problems.push(format!("{name}: bounds {:?}", p.bounds));
                }
            }
            MetricKind::Counter => {
                if p.histogram || !p.monotonic || !close(p.sum, *sum) {
                    problems.push(format!("{name} {attributes:?}: {} want {sum}", p.sum));
                }
            }
            MetricKind::Gauge => problems.push(format!("{name}: a gauge observed from a record")),
        }
    }
    let gauge = |name: &str| {
        METRICS
            .iter()
            .any(|d| d.otel == name && d.kind == MetricKind::Gauge)
    };
    for (key, p) in received {
        if gauge(&key.0) {
            if !p.gauge {
                problems.push(format!("{key:?}: not a gauge"));
            }
            continue;
        }
        if !want.contains_key(key) {
            problems.push(format!("unexpected series {key:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A metrics layer whose records are captured and whose metrics go to `pipeline`.
fn layer_to(pipeline: &OtlpPipeline) -> (OmniMetricsLayer, CaptureSink) {
    layer_of(pipeline, OmniMetricsLayer::builder())
}

/// [`layer_to`], from `builder`.
fn layer_of(
    pipeline: &OtlpPipeline,
    builder: omni_metrics::Builder,
) -> (OmniMetricsLayer, CaptureSink) {
    let capture = CaptureSink::new();
    let layer = builder
        .with_console(false)
        .with_sink(capture.clone())
        .with_sink(pipeline.metrics_sink())
        .build()
        .expect("no file");
    (layer, capture)
}

/// The attributes of a series without labels of its own: the default model name.
fn unnamed() -> BTreeMap<String, String> {
    BTreeMap::from([("model_name".to_owned(), "unknown".to_owned())])
}

/// Runs `work` through a subscriber with the metrics layer (and the pipeline's trace layer).
fn run(pipeline: &OtlpPipeline, work: impl FnOnce()) -> CaptureSink {
    let (metrics, capture) = layer_to(pipeline);
    let subscriber = tracing_subscriber::registry()
        .with(metrics)
        .with(pipeline.layer());
    tracing::subscriber::with_default(subscriber, work);
    capture
}

fn builder_to(endpoint: String) -> OtlpBuilder {
    OtlpPipeline::builder()
        .with_endpoint(endpoint)
        .with_shutdown_timeout(Duration::from_secs(10))
}

/// Requests `late-0`.. through `dispatch`: one stage, 4 tokens in, 1 out.
fn late_requests(dispatch: &tracing::Dispatch, n: usize) {
    tracing::dispatcher::with_default(dispatch, || {
        for i in 0..n {
            let r = omni_metrics::instrument::Request::start(&format!("late-{i}"));
            r.stage(0).tokens_in(4).tokens_out(1);
            r.finish();
        }
    });
}

/// The metrics layer (records captured, metrics to the pipeline) and the pipeline's trace
/// layer, as a dispatcher to use across flushes.
fn dispatch_to(pipeline: &OtlpPipeline) -> (tracing::Dispatch, CaptureSink) {
    let (metrics, capture) = layer_to(pipeline);
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(metrics)
            .with(pipeline.layer()),
    );
    (dispatch, capture)
}

#[test]
fn grpc_metrics_equal_the_records_cumulatively() {
    let receiver = GrpcReceiver::start();
    let pipeline = builder_to(format!("http://{}", receiver.addr))
        .build()
        .expect("pipeline");
    assert!(pipeline.exports_traces() && pipeline.exports_metrics());
    let (dispatch, capture) = dispatch_to(&pipeline);
    let mut guard = pipeline.into_guard();
    tracing::dispatcher::with_default(&dispatch, crate::pipeline_requests);
    guard.force_flush().expect("flushed");
    let first = receiver.metrics();
    assert_eq!(
        first.len(),
        1,
        "one export, by the flush (the interval is 60 s)"
    );
    let records = capture.requests();
    assert_eq!(records.len(), 3);
    let received = latest(&points(&first));
    same_as_records(&received, &records);

    // Spot checks straight from the model, not through the catalogue.
    let none = unnamed();
    let duration = &received[&("gen_ai.server.request.duration".to_owned(), none.clone())];
    let e2e: f64 = records.iter().map(|r| r.e2e_total_ms / 1000.0).sum();
    assert!(close(duration.sum, e2e), "{} vs {e2e}", duration.sum);
    assert_eq!((duration.count, duration.unit.as_str()), (3, "s"));
    // The GenAI semantic conventions' recommended boundaries: 0.01 s doubling to 81.92 s.
    let doubling: Vec<f64> = (0..14).map(|i| 0.01 * f64::from(1 << i)).collect();
    assert_eq!(duration.bounds, doubling);
    assert_eq!(
        duration.bounds,
        def("vllm_omni:e2e_request_latency_s").otel_buckets
    );
    assert_eq!(
        duration.temporality,
        AggregationTemporality::Cumulative as i32
    );
    let stage1 = BTreeMap::from([
        ("model_name".to_owned(), "unknown".to_owned()),
        ("stage".to_owned(), "i:1".to_owned()),
    ]);
    let gen1 = &received[&("omni.stage.gen_time".to_owned(), stage1)];
    let want: f64 = records
        .iter()
        .map(|r| r.stage(1).expect("stage 1").stage_gen_time_ms / 1000.0)
        .sum();
    assert!(close(gen1.sum, want) && gen1.count == 3);
    let edge = BTreeMap::from([
        ("model_name".to_owned(), "unknown".to_owned()),
        ("from_stage".to_owned(), "i:0".to_owned()),
        ("to_stage".to_owned(), "i:1".to_owned()),
    ]);
    let size = &received[&("omni.transfer.size".to_owned(), edge)];
    assert_eq!((size.sum, size.unit.as_str()), (3.0 * 4096.0, "By"));
    let requests = &received[&(
        "omni.requests".to_owned(),
        BTreeMap::from([
            ("model_name".to_owned(), "unknown".to_owned()),
            ("finished_reason".to_owned(), "stop".to_owned()),
        ]),
    )];
    assert_eq!((requests.sum, requests.monotonic), (3.0, true));
    let prompt = &received[&("omni.request.prompt_tokens".to_owned(), none.clone())];
    assert_eq!(prompt.sum, 30.0);
    for p in received.values() {
        assert!(
            p.attributes.keys().all(|k| {
                [
                    "model_name",
                    "stage",
                    "from_stage",
                    "to_stage",
                    "finished_reason",
                ]
                .contains(&k.as_str())
            }),
            "bounded attributes only: {p:?}"
        );
    }

    // More requests, another flush: the totals since the start.
    late_requests(&dispatch, 2);
    guard.force_flush().expect("flushed");
    let all = receiver.metrics();
    assert_eq!(all.len(), 2);
    let second = latest(&points(&all[1..]));
    let d2 = &second[&("gen_ai.server.request.duration".to_owned(), none)];
    assert_eq!(d2.count, 5, "cumulative: 3 + 2");
    assert_eq!(d2.start, duration.start, "the same start: cumulative");
    same_as_records(&second, &capture.requests());
    guard.shutdown().expect("every span and metric exported");
    assert!(
        guard.force_flush().is_ok(),
        "nothing to flush after shutdown"
    );
}

#[test]
fn delta_temporality_exports_what_happened_since_the_last_export() {
    let receiver = GrpcReceiver::start();
    let pipeline = builder_to(format!("http://{}", receiver.addr))
        .with_temporality(MetricTemporality::Delta)
        .build()
        .expect("pipeline");
    let (dispatch, capture) = dispatch_to(&pipeline);
    let mut guard = pipeline.into_guard();
    tracing::dispatcher::with_default(&dispatch, crate::pipeline_requests);
    guard.force_flush().expect("flushed");
    late_requests(&dispatch, 2);
    guard.shutdown().expect("every export delivered");
    let exports = receiver.metrics();
    assert_eq!(exports.len(), 2, "the flush's and the shutdown's");
    let duration = |rm: &ResourceMetrics| {
        points(std::slice::from_ref(rm))
            .into_iter()
            .find(|p| p.name == "gen_ai.server.request.duration")
            .expect("request duration")
    };
    let (a, b) = (duration(&exports[0]), duration(&exports[1]));
    assert_eq!(
        (a.count, b.count),
        (3, 2),
        "each export: what happened since the last"
    );
    assert_eq!(a.temporality, AggregationTemporality::Delta as i32);
    assert!(
        b.start > a.start,
        "a delta point starts where the last one ended"
    );
    // Summed over the exports, the deltas are the records.
    let records = capture.requests();
    let mut sums: HashMap<Series, Point> = HashMap::new();
    for p in points(&exports) {
        let key = (p.name.clone(), p.attributes.clone());
        match sums.get_mut(&key) {
            Some(s) => {
                s.count += p.count;
                s.sum += p.sum;
            }
            None => {
                sums.insert(key, p);
            }
        }
    }
    same_as_records(&sums, &records);
}

#[test]
fn http_protobuf_metrics_reach_v1_metrics() {
    let receiver = HttpReceiver::start();
    let pipeline = builder_to(format!("http://{}/v1/traces", receiver.addr))
        .with_protocol(OtlpProtocol::HttpProtobuf)
        .build()
        .expect("pipeline");
    let capture = run(&pipeline, crate::pipeline_requests);
    let mut guard = pipeline.into_guard();
    guard
        .shutdown()
        .expect("every span and metric exported over HTTP");
    let paths = receiver.paths();
    assert!(paths.iter().any(|p| p == "/v1/metrics"), "{paths:?}");
    assert!(paths.iter().any(|p| p == "/v1/traces"), "{paths:?}");
    same_as_records(&latest(&points(&receiver.metrics())), &capture.requests());
}

#[test]
fn a_metrics_only_pipeline_exports_no_traces() {
    let receiver = GrpcReceiver::start();
    let pipeline = OtlpPipeline::builder()
        .with_metrics_endpoint(format!("http://{}", receiver.addr))
        .build()
        .expect("pipeline");
    assert!(pipeline.exports_metrics() && !pipeline.exports_traces());
    let capture = run(&pipeline, crate::pipeline_requests);
    pipeline.into_guard().shutdown().expect("exported");
    assert!(receiver.spans().is_empty());
    same_as_records(&latest(&points(&receiver.metrics())), &capture.requests());

    let off = builder_to(format!("http://{}", receiver.addr)).with_metrics(false);
    let off = off.build().expect("pipeline");
    assert!(!off.exports_metrics() && off.exports_traces());
    let off = off.into_guard();
    assert!(off.metrics_stats().is_none());
}

/// A free port: nobody listens there.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn a_collector_that_is_down_costs_the_engine_nothing_and_failed_exports_are_counted() {
    let pipeline = OtlpPipeline::builder()
        .with_metrics_endpoint(format!("http://127.0.0.1:{}", free_port()))
        .with_metric_export_interval(Duration::from_millis(100))
        .with_shutdown_timeout(Duration::from_secs(3))
        .build()
        .expect("builds without a collector");
    let started = Instant::now();
    let capture = run(&pipeline, crate::pipeline_requests);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "recording waits for nothing: {:?}",
        started.elapsed()
    );
    assert_eq!(capture.requests().len(), 3, "the records are complete");
    let mut guard = pipeline.into_guard();
    let stats = guard.metrics_stats().expect("metrics are exported");
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.failed_exports() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(stats.failed_exports() >= 1, "a periodic export failed");
    assert!(stats.points_failed() > 0);
    assert_eq!(stats.points_exported(), 0);
    let started = Instant::now();
    let err = guard.shutdown().expect_err("nothing could be exported");
    assert!(
        started.elapsed() < Duration::from_secs(3 + 2),
        "bounded by the shutdown timeout: {:?}",
        started.elapsed()
    );
    assert!(matches!(err, OtlpError::MetricsShutdown { .. }), "{err}");
    let text = err.to_string();
    assert!(text.starts_with("OTLP metrics export: "), "{text}");
    assert!(text.contains("metric exports failed"), "{text}");
    assert!(
        text.contains("the tables and records are complete"),
        "{text}"
    );
    assert!(guard.shutdown().is_ok(), "a second shutdown is a no-op");
}

/// A collector that never answers in time: shutdown still ends within the timeout.
#[test]
fn a_slow_collector_does_not_hold_shutdown_beyond_its_limit() {
    let receiver = GrpcReceiver::start_slow(Duration::from_secs(30));
    let pipeline = OtlpPipeline::builder()
        .with_metrics_endpoint(format!("http://{}", receiver.addr))
        .with_shutdown_timeout(Duration::from_secs(1))
        .build()
        .expect("pipeline");
    run(&pipeline, crate::pipeline_requests);
    let mut guard = pipeline.into_guard();
    let started = Instant::now();
    let err = guard.shutdown().expect_err("the last export cannot finish");
    assert!(
        started.elapsed() < Duration::from_millis(2_500),
        "1 s timeout plus 1 s slack: {:?}",
        started.elapsed()
    );
    assert!(
        err.to_string().contains("did not finish within 1s"),
        "{err}"
    );
}

/// The example process, through `init()` and the standard variables.
fn example(receiver_addr: &str, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(crate::example::omni_pipeline());
    cmd.args(args)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver_addr)
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "1000");
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_EXPORTER",
        "OTEL_METRICS_EXPORTER",
        "OTEL_METRIC_EXPORT_INTERVAL",
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the example runs")
}

#[track_caller]
fn stderr_ok(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

/// Finished requests by `finished_reason`, from the latest points.
fn requests_by_reason(exports: &[ResourceMetrics]) -> BTreeMap<String, f64> {
    latest(&points(exports))
        .into_values()
        .filter(|p| p.name == "omni.requests")
        .map(|p| (p.attributes["finished_reason"].clone(), p.sum))
        .collect()
}

#[test]
fn metrics_are_never_sampled() {
    let receiver = GrpcReceiver::start();
    let out = example(
        &format!("http://{}", receiver.addr),
        &[("OTEL_TRACES_SAMPLER", "always_off")],
        &["-n", "4", "--summary-only", "--fail-every", "4"],
    );
    stderr_ok(&out);
    assert!(receiver.spans().is_empty(), "no trace is sampled");
    let exports = receiver.metrics();
    assert_eq!(
        requests_by_reason(&exports),
        BTreeMap::from([("error".to_owned(), 1.0), ("stop".to_owned(), 3.0)]),
        "every request counted, whatever the sampler"
    );
    let duration = latest(&points(&exports))
        .into_values()
        .find(|p| p.name == "gen_ai.server.request.duration")
        .expect("latency");
    assert_eq!(duration.count, 3, "the ok requests");
    for name in [
        "omni.audio.duration",
        "omni.audio.rtf",
        "omni.stage.time_to_first_output",
    ] {
        assert!(
            points(&exports).iter().any(|p| p.name == name),
            "the example's audio and streamed stages give {name}"
        );
    }
}

#[test]
fn the_standard_switches_turn_metrics_on_and_off() {
    let receiver = GrpcReceiver::start();
    let addr = format!("http://{}", receiver.addr);
    let args = ["-n", "2", "--summary-only"];

    // none: traces only.
    let out = example(&addr, &[("OTEL_METRICS_EXPORTER", "none")], &args);
    stderr_ok(&out);
    assert!(
        receiver.metrics().is_empty(),
        "OTEL_METRICS_EXPORTER=none exports no metrics"
    );
    assert!(!receiver.spans().is_empty());

    // An exporter this crate does not have: said, and off.
    let out = example(&addr, &[("OTEL_METRICS_EXPORTER", "console")], &args);
    let stderr = stderr_ok(&out);
    assert_eq!(
        stderr
            .matches("OTEL_METRICS_EXPORTER=\"console\" is not supported")
            .count(),
        1,
        "said once: {stderr}"
    );
    assert!(receiver.metrics().is_empty());

    // Metrics do not follow OTEL_TRACES_EXPORTER; the temporality variable is read in any
    // case.
    let spans_before = receiver.spans().len();
    let out = example(
        &addr,
        &[
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_METRICS_EXPORTER", "OTLP"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "Delta"),
        ],
        &args,
    );
    stderr_ok(&out);
    assert_eq!(receiver.spans().len(), spans_before, "no traces");
    let exports = receiver.metrics();
    assert_eq!(requests_by_reason(&exports)["stop"], 2.0);
    // Sums and histograms (a gauge's point has no temporality).
    assert!(
        points(&exports)
            .iter()
            .filter(|p| !p.gauge)
            .all(|p| p.temporality == AggregationTemporality::Delta as i32)
    );

    // Values that can fall back are said, naming the variable and the value used.
    let out = example(
        &addr,
        &[
            (
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                "weekly",
            ),
            ("OTEL_METRIC_EXPORT_INTERVAL", "soon"),
        ],
        &args,
    );
    let stderr = stderr_ok(&out);
    assert!(
        stderr.contains(
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=\"weekly\" is not `cumulative`, \
             `delta` or `lowmemory`: using cumulative"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "OTEL_METRIC_EXPORT_INTERVAL=\"soon\" is not a positive number of milliseconds: \
             using 60000"
        ),
        "{stderr}"
    );
    let last = receiver.metrics().split_off(exports.len());
    assert!(
        points(&last)
            .iter()
            .filter(|p| !p.gauge)
            .all(|p| p.temporality == AggregationTemporality::Cumulative as i32)
    );
}

#[test]
fn the_export_interval_is_honoured() {
    let receiver = GrpcReceiver::start();
    let out = example(
        &format!("http://{}", receiver.addr),
        &[("OTEL_METRIC_EXPORT_INTERVAL", "100")],
        &["-n", "2", "--summary-only", "--linger-ms", "1000"],
    );
    stderr_ok(&out);
    let exports = receiver.metrics().len();
    // Every 100 ms while idle for 1 s, plus the last one at shutdown.
    assert!(exports >= 5, "{exports} exports");
}

/// Failed exports are said while they happen, once per minute at most, and counted at
/// shutdown.
#[test]
fn failed_metric_exports_are_said_once_and_counted_at_shutdown() {
    let out = example(
        &format!("http://127.0.0.1:{}", free_port()),
        &[
            ("OTEL_METRIC_EXPORT_INTERVAL", "100"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "300"),
        ],
        &["-n", "2", "--summary-only", "--linger-ms", "1000"],
    );
    let stderr = stderr_ok(&out);
    assert_eq!(
        stderr.matches("OTLP metrics export is failing").count(),
        1,
        "said once: {stderr}"
    );
    let running = stderr.find("OTLP metrics export is failing").expect("said");
    let at_shutdown = stderr
        .find("metric exports failed")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(running < at_shutdown, "{stderr}");
}

/// The `otlp` module's table of names (`docs/reference/otlp.md`) is the catalogue's: every
/// metric, with its kind, unit, attributes and Prometheus family.
#[test]
fn the_readme_table_is_the_catalogue() {
    use omni_metrics::metrics::catalog::Labels;
    let readme = include_str!("../../docs/reference/otlp.md");
    for def in METRICS {
        let kind = match def.kind {
            MetricKind::Counter => "counter",
            MetricKind::Histogram => "histogram",
            MetricKind::Gauge => "gauge",
        };
        let attributes = match def.labels {
            Labels::None => "",
            Labels::Stage => "`stage`",
            Labels::Edge => "`from_stage`, `to_stage`",
            Labels::FinishedReason => "`finished_reason`",
            Labels::StageThreshold => "`stage`, `threshold_ms`",
            Labels::StageReason => "`stage`, `reason`",
        };
        let row = format!(
            "| `{}` | {kind} | `{}` | {attributes} |",
            def.otel, def.unit
        );
        let line = readme
            .lines()
            .find(|l| l.starts_with(&row))
            .unwrap_or_else(|| panic!("docs/reference/otlp.md lacks the row {row:?}"));
        assert!(
            line.ends_with(&format!("| `{}` |", def.prometheus)),
            "{line}"
        );
    }
    let rows = readme
        .lines()
        .filter(|l| {
            l.starts_with("| `omni.") || l.starts_with("| `gen_ai.") && l.contains("| `s` |")
        })
        .count();
    assert_eq!(rows, METRICS.len(), "one row per metric");
}

/// A layer named after its model, stages on replicas (issue 25, items 1, 2 and 8): every
/// point carries `model_name`, the stage and edge points their replicas as given, and the
/// `gen_ai.server.*` histograms the semantic conventions' recommended boundaries (the
/// Prometheus endpoint keeps vLLM-Omni's), over gRPC to the receiver.
#[test]
fn model_name_replicas_and_genai_buckets_reach_the_collector() {
    let receiver = GrpcReceiver::start();
    let pipeline = builder_to(format!("http://{}", receiver.addr))
        .build()
        .expect("pipeline");
    let (metrics, capture) = layer_of(
        &pipeline,
        OmniMetricsLayer::builder().with_model_name("qwen3-omni"),
    );
    let subscriber = tracing_subscriber::registry()
        .with(metrics)
        .with(pipeline.layer());
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..4_u64 {
            let request = omni_metrics::instrument::Request::start(&format!("rep-{i}"));
            {
                let thinker = request.stage(0);
                thinker.tokens_in(8).tokens_out(3).replica(i % 2);
                for _ in 0..3 {
                    std::thread::sleep(Duration::from_millis(1));
                    thinker.output(1);
                }
            }
            {
                let t = request.transfer(0, 1);
                t.size_bytes(2048).replicas(i % 2, 0);
                drop(t.tx());
                drop(t.rx_decode());
            }
            // The talker without a replica: no replica attribute.
            request.stage(1).tokens_in(3).tokens_out(7).output(7);
            request.finish();
        }
    });
    pipeline.into_guard().shutdown().expect("exported");
    let records = capture.requests();
    assert_eq!(records.len(), 4);
    assert!(
        records
            .iter()
            .all(|r| r.model_name.as_deref() == Some("qwen3-omni"))
    );
    let received = latest(&points(&receiver.metrics()));
    same_as_records(&received, &records);

    let at = |name: &str, attributes: &[(&str, &str)]| {
        let key = (
            name.to_owned(),
            attributes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        );
        received
            .get(&key)
            .unwrap_or_else(|| panic!("no {key:?} in {:#?}", received.keys()))
    };
    let model = ("model_name", "qwen3-omni");
    assert!(
        received
            .values()
            .all(|p| p.attributes["model_name"] == "qwen3-omni"),
        "model_name on every point"
    );
    for replica in ["i:0", "i:1"] {
        let gen_time = at(
            "omni.stage.gen_time",
            &[model, ("stage", "i:0"), ("replica", replica)],
        );
        assert_eq!(gen_time.count, 2, "two requests on each thinker replica");
        let size = at(
            "omni.transfer.size",
            &[
                model,
                ("from_stage", "i:0"),
                ("from_replica", replica),
                ("to_stage", "i:1"),
                ("to_replica", "i:0"),
            ],
        );
        assert_eq!((size.count, size.sum), (2, 4096.0));
    }
    assert_eq!(
        at("omni.stage.gen_time", &[model, ("stage", "i:1")]).count,
        4,
        "no replica given, no replica attribute"
    );

    // The GenAI histograms' buckets are the semantic conventions' (facts sheet).
    let doubling: Vec<f64> = (0..14).map(|i| 0.01 * f64::from(1 << i)).collect();
    assert_eq!(
        at("gen_ai.server.request.duration", &[model]).bounds,
        doubling
    );
    assert_eq!(
        at("gen_ai.server.time_to_first_token", &[model]).bounds,
        [
            0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
            10.0
        ]
    );
    assert_eq!(
        at(
            "gen_ai.server.time_per_output_token",
            &[model, ("stage", "i:0"), ("replica", "i:1")]
        )
        .bounds,
        [
            0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5
        ]
    );
    // The others keep the catalogue's (vLLM-Omni's) buckets.
    assert_eq!(
        at("omni.stage.gen_time", &[model, ("stage", "i:1")]).bounds,
        def("vllm_omni:stage_gen_time_s").buckets
    );
}

/// The live gauges and the audio continuity instruments over gRPC to the receiver (issue
/// 25, items 3 and 4): a request held in stage 0 on replica 1 with a transfer open at a
/// flush makes `omni.requests.running` 1, `omni.stage.requests_in_flight` 1 there and
/// `omni.transfer.open` 1; after it, at shutdown, they are 0. SPEC.md's packet schedule
/// (200 ms packets at 0, 150 and 500 ms) makes `omni.audio.underrun` 0.1 s, continuity ok
/// at 100 ms and not at 50 ms; a silent audio stage, `omni.audio.skipped_requests`.
#[test]
fn live_gauges_and_audio_continuity_reach_the_collector() {
    use omni_metrics::instrument::Request;
    use omni_metrics::testing::ManualClock;
    let receiver = GrpcReceiver::start();
    let pipeline = builder_to(format!("http://{}", receiver.addr))
        .build()
        .expect("pipeline");
    let clock = ManualClock::new();
    let (metrics, capture) = layer_of(
        &pipeline,
        OmniMetricsLayer::builder()
            .with_model_name("qwen3-omni")
            .with_clock(clock.clone())
            .with_audio_continuity_thresholds([50, 100]),
    );
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(metrics)
            .with(pipeline.layer()),
    );
    let mut guard = pipeline.into_guard();
    let model = ("model_name", "qwen3-omni");
    let key = |name: &str, attributes: &[(&str, &str)]| {
        (
            name.to_owned(),
            attributes
                .iter()
                .chain([&model])
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        )
    };
    let thinker = [("stage", "i:0"), ("replica", "i:1")];
    let edge = [("from_stage", "i:0"), ("to_stage", "i:1")];
    let gauge = |received: &HashMap<Series, Point>, name: &str, attributes: &[(&str, &str)]| {
        let p = received
            .get(&key(name, attributes))
            .unwrap_or_else(|| panic!("no {name} {attributes:?} in {:#?}", received.keys()));
        assert!(p.gauge, "{p:?}");
        let unit = if name == "omni.transfer.open" {
            "{transfer}"
        } else {
            "{request}"
        };
        assert_eq!(p.unit, unit);
        p.sum
    };

    // Held open at a flush.
    let held = tracing::dispatcher::with_default(&dispatch, || {
        let request = Request::start("held");
        let stage = request.stage(0);
        stage.replica(1);
        let transfer = request.transfer(0, 1);
        (request, stage, transfer)
    });
    guard.force_flush().expect("flushed");
    let first = latest(&points(&receiver.metrics()));
    assert_eq!(gauge(&first, "omni.requests.running", &[]), 1.0);
    assert_eq!(gauge(&first, "omni.requests.waiting", &[]), 0.0);
    assert_eq!(
        gauge(&first, "omni.stage.requests_in_flight", &thinker),
        1.0
    );
    assert_eq!(gauge(&first, "omni.transfer.open", &edge), 1.0);

    tracing::dispatcher::with_default(&dispatch, || {
        let (request, stage, transfer) = held;
        drop((stage, transfer));
        request.finish();
        // SPEC.md's example on stage 1 (24 kHz, 4,800 frames = 200 ms a packet).
        let spec = Request::start("spec");
        let talker = spec.stage(1);
        talker.audio(14_400, 24_000);
        for step_ms in [0, 150, 350] {
            clock.advance_ns(step_ms * 1_000_000);
            talker.output(4_800);
        }
        drop(talker);
        spec.finish();
        let silent = Request::start("silent");
        silent.stage(1).audio(0, 24_000);
        silent.finish();
    });
    guard.shutdown().expect("exported");
    let last = latest(&points(&receiver.metrics()));
    assert_eq!(gauge(&last, "omni.requests.running", &[]), 0.0);
    assert_eq!(gauge(&last, "omni.stage.requests_in_flight", &thinker), 0.0);
    assert_eq!(gauge(&last, "omni.transfer.open", &edge), 0.0);

    let talker = [("stage", "i:1")];
    let underrun = &last[&key("omni.audio.underrun", &talker)];
    assert_eq!((underrun.count, underrun.sum), (1, 0.1));
    assert_eq!(
        underrun.bounds,
        def("vllm_omni:audio_underrun_s").otel_buckets
    );
    let ok = |threshold: &str| {
        let p = &last[&key(
            "omni.audio.continuity_ok",
            &[("stage", "i:1"), ("threshold_ms", threshold)],
        )];
        assert_eq!(p.unit, "{stream}");
        p.sum
    };
    assert_eq!((ok("i:50"), ok("i:100")), (0.0, 1.0));
    let skipped = &last[&key(
        "omni.audio.skipped_requests",
        &[("stage", "i:1"), ("reason", "no_frames")],
    )];
    assert_eq!((skipped.sum, skipped.monotonic), (1.0, true));
    // The rest is the records', as for every request.
    same_as_records(&last, &capture.requests());
}
