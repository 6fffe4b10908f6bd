//! Bursts: four threads finishing requests as fast as they can (no pause) lose none of
//! them. Every series of the scrape equals the catalogue over the requests pushed, and the
//! sink counts no drop. (Before the recorder's queue coalesced its overflow, most of these
//! requests were dropped and counted.)

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use omni_metrics::PrometheusSink;
use omni_metrics::metrics::{METRICS, MetricKind, observe};
use omni_metrics::report::Sink;
use omni_metrics::stats::{
    EdgeName, RequestE2EStats, RequestStatus, StageRequestStats, TransferEdgeStats,
};
use openmetrics_parser::OpenMetricsValue;

use crate::support::{close, counter, get, histogram, labels_of, parse};

/// Threads pushing at once.
const THREADS: usize = 4;
/// Requests each thread pushes.
const PER_THREAD: usize = 50_000;
/// Distinct requests, pushed in turn (each thread pushes each one `PER_THREAD / VARIANTS`
/// times).
const VARIANTS: usize = 40;

/// Request `v` of the workload: two stages (the first streams outputs, the second makes
/// audio), one edge, a trace id; latencies spread over the buckets; every tenth fails and
/// every thirteenth is aborted.
fn variant(v: usize) -> RequestE2EStats {
    let x = v as f64;
    let status = match v {
        v if v % 10 == 7 => RequestStatus::Error,
        v if v % 13 == 5 => RequestStatus::Aborted,
        _ => RequestStatus::Ok,
    };
    RequestE2EStats {
        request_id: format!("burst-{v}"),
        status,
        trace_id: Some(format!("{:032x}", 0xabc0_0000_u64 + v as u64)),
        e2e_total_ms: 30.0 + 37.5 * x * x,
        time_to_first_output_ms: Some(5.0 + 11.0 * x),
        stages: vec![
            StageRequestStats {
                stage_id: 0,
                num_tokens_in: 100 + v as u64,
                num_tokens_out: 20 + v as u64,
                stage_gen_time_ms: 20.0 + 25.0 * x,
                queue_time_ms: 0.5 * x,
                time_to_first_output_ms: Some(3.0 + x),
                inter_output_gaps_ms: vec![2.0 + x, 4.5, 9.0 + 0.25 * x],
                ..Default::default()
            },
            StageRequestStats {
                stage_id: 1,
                num_tokens_out: 50,
                stage_gen_time_ms: 8.0 * x,
                audio_generated_frames: 24_000 * (v as u64 + 1),
                audio_sample_rate: Some(24_000),
                audio_duration_ms: Some(1_000.0 * (x + 1.0)),
                audio_rtf: Some(8.0 * x / (1_000.0 * (x + 1.0))),
                ..Default::default()
            },
        ],
        transfers: vec![TransferEdgeStats {
            edge: EdgeName { from: 0, to: 1 },
            from_stage: 0,
            to_stage: 1,
            size_bytes: 70_000 * (v as u64 + 1),
            tx_time_ms: 1.2 + 0.1 * x,
            rx_decode_time_ms: 2.0,
            in_flight_time_ms: 0.3,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// What the catalogue says `times` pushes of each request add to each series: count, sum
/// and cumulative bucket counts (a counter's value is its sum).
#[derive(Debug, Default)]
struct Expected {
    count: u64,
    sum: f64,
    buckets: Vec<u64>,
}

/// A series: its family's name and its labels, sorted.
type SeriesKey = (&'static str, Vec<(String, String)>);

fn expected(requests: &[RequestE2EStats], times: u64) -> BTreeMap<SeriesKey, Expected> {
    let mut out: BTreeMap<_, Expected> = BTreeMap::new();
    for r in requests {
        observe(r, |def, labels, value| {
            let key = crate::support::label_pairs(&labels);
            let e: &mut Expected = out.entry((def.prometheus, key)).or_default();
            e.buckets.resize(def.buckets.len(), 0);
            e.count += times;
            e.sum += value * times as f64;
            for (i, bound) in def.buckets.iter().enumerate() {
                if value <= *bound {
                    e.buckets[i] += times;
                }
            }
        });
    }
    out
}

#[test]
fn four_threads_pushing_flat_out_lose_no_request() {
    let sink = PrometheusSink::bind("127.0.0.1:0").expect("an ephemeral port");
    let requests: Vec<RequestE2EStats> = (0..VARIANTS).map(variant).collect();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (sink, requests) = (&sink, &requests);
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    sink.on_request(&requests[(i + t) % VARIANTS]);
                }
            });
        }
    });
    let total = (THREADS * PER_THREAD) as u64;
    let addr = sink.local_addr().expect("served");
    let requests_counted = |parsed: &crate::support::Exposition| {
        ["stop", "error", "abort"]
            .into_iter()
            .map(|reason| {
                counter(
                    parsed,
                    "vllm_omni:requests_success",
                    &[("finished_reason", reason)],
                )
            })
            .sum::<f64>()
    };
    // A scrape waits up to a second for the recorder to catch up: scrape until it has
    // (a debug build on a loaded machine may take a few), and the next scrape is the same.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut previous = String::new();
    let parsed = loop {
        let scrape = get(addr, "GET /metrics HTTP/1.1");
        assert_eq!(scrape.status, "HTTP/1.1 200 OK", "{}", scrape.body);
        let parsed = parse(&scrape.body);
        let caught_up = requests_counted(&parsed) + sink.dropped_requests() as f64;
        if (caught_up >= total as f64 && scrape.body == previous) || Instant::now() > deadline {
            break parsed;
        }
        previous = scrape.body;
    };

    assert_eq!(sink.dropped_requests(), 0, "no request may be dropped");
    assert_eq!(sink.overflowed_observations(), 0);

    // The headline figures: every request counted, every ok one in the latency histogram.
    let by_status = |status: RequestStatus| {
        let n = requests.iter().filter(|r| r.status == status).count();
        (n * THREADS * PER_THREAD / VARIANTS) as f64
    };
    let mut counted = 0.0;
    for (reason, status) in [
        ("stop", RequestStatus::Ok),
        ("error", RequestStatus::Error),
        ("abort", RequestStatus::Aborted),
    ] {
        let n = counter(
            &parsed,
            "vllm_omni:requests_success",
            &[("finished_reason", reason)],
        );
        assert_eq!(n, by_status(status), "{reason}");
        counted += n;
    }
    assert_eq!(counted, total as f64);
    let e2e = histogram(&parsed, "vllm_omni:e2e_request_latency_s", &[]);
    assert_eq!(e2e.count, Some(by_status(RequestStatus::Ok) as u64));

    // Every series: counts and buckets exact, sums to rounding.
    let times = (THREADS * PER_THREAD / VARIANTS) as u64;
    let want = expected(&requests, times);
    let mut seen = 0;
    for def in METRICS {
        // A family none of these requests observes has no series, and is not scraped.
        let Some(family) = parsed.families.get(def.prometheus) else {
            continue;
        };
        for sample in family.iter_samples() {
            let key = (def.prometheus, labels_of(sample));
            let Some(e) = want.get(&key) else {
                // Families without labels are there from the start, at zero.
                continue;
            };
            seen += 1;
            match (&sample.value, def.kind) {
                (OpenMetricsValue::Counter(c), MetricKind::Counter) => {
                    assert_eq!(c.value.as_f64(), e.sum, "{key:?}");
                }
                (OpenMetricsValue::Histogram(h), MetricKind::Histogram) => {
                    assert_eq!(h.count, Some(e.count), "{key:?}");
                    let sum = h.sum.as_ref().expect("a sum").as_f64();
                    assert!(close(sum, e.sum), "{key:?}: {sum} != {}", e.sum);
                    for (i, bucket) in h.buckets.iter().enumerate() {
                        let want = e.buckets.get(i).copied().unwrap_or(e.count);
                        assert_eq!(
                            bucket.count.as_f64(),
                            want as f64,
                            "{key:?} le={}",
                            bucket.upper_bound
                        );
                        // An exemplar is one request's own value, in its bucket.
                        if let Some(exemplar) = &bucket.exemplar {
                            assert!(exemplar.id <= bucket.upper_bound, "{key:?} {exemplar:?}");
                            let trace = &exemplar.labels["trace_id"];
                            assert!(
                                requests.iter().any(|r| r.trace_id.as_ref() == Some(trace)),
                                "{key:?} {exemplar:?}"
                            );
                        }
                    }
                }
                (other, kind) => panic!("{key:?}: a {kind:?} scraped as {other:?}"),
            }
        }
    }
    assert_eq!(
        seen,
        want.len(),
        "every series the requests make is scraped"
    );

    // The latency exemplars are the requests' own latencies.
    for bucket in &e2e.buckets {
        if let Some(exemplar) = &bucket.exemplar {
            let trace = &exemplar.labels["trace_id"];
            let r = requests
                .iter()
                .find(|r| r.trace_id.as_ref() == Some(trace))
                .expect("a pushed request's trace");
            assert_eq!(exemplar.id, r.e2e_total_ms / 1000.0, "{exemplar:?}");
        }
    }
}
