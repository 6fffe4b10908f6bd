//! What a scrape says equals what the model says: counts, sums, buckets and labels.

use std::collections::{BTreeMap, BTreeSet};

use omni_metrics::metrics::{METRICS, MetricKind, observe};
use omni_metrics::stats::RequestStatus;
use openmetrics_parser::{OpenMetricsType, OpenMetricsValue};

use crate::support::{Harness, close, counter, family, histogram, labels_of};

/// What the catalogue says a set of requests adds to one series.
#[derive(Debug, Default)]
struct Expected {
    count: u64,
    sum: f64,
    /// Per catalogue bucket, how many values were at or below it (cumulative).
    buckets: Vec<u64>,
}

type SeriesKey = (&'static str, Vec<(String, String)>);

fn expected(requests: &[omni_metrics::stats::RequestE2EStats]) -> BTreeMap<SeriesKey, Expected> {
    let mut out: BTreeMap<SeriesKey, Expected> = BTreeMap::new();
    for r in requests {
        observe(r, |def, labels, value| {
            let key = crate::support::label_pairs(&labels);
            let e = out.entry((def.prometheus, key)).or_default();
            e.buckets.resize(def.buckets.len(), 0);
            e.count += 1;
            e.sum += value;
            for (i, bound) in def.buckets.iter().enumerate() {
                if value <= *bound {
                    e.buckets[i] += 1;
                }
            }
        });
    }
    out
}

#[test]
fn every_series_equals_the_catalogue_over_the_model() {
    let h = Harness::new();
    h.play_many(15);
    let requests = h.requests();
    assert_eq!(requests.len(), 15);
    let (_, parsed) = h.scrape();
    let want = expected(&requests);

    // Every family of the catalogue, with its type and help, and no other; but those of
    // which this workload makes no series (no audio stage without audio, no stage or edge
    // in flight at a scrape), which the exposition leaves out.
    let names: BTreeSet<&str> = parsed.families.keys().map(String::as_str).collect();
    let unmade = [
        "vllm_omni:audio_skipped_requests",
        "vllm_omni:stage_inflight_requests",
        "vllm_omni:transfer_inflight",
    ];
    let catalogue: BTreeSet<&str> = METRICS
        .iter()
        .map(|d| d.prometheus)
        .filter(|name| !unmade.contains(name))
        .collect();
    assert_eq!(names, catalogue);
    for def in METRICS.iter().filter(|d| !unmade.contains(&d.prometheus)) {
        let f = family(&parsed, def.prometheus);
        let kind = match def.kind {
            MetricKind::Counter => OpenMetricsType::Counter,
            MetricKind::Histogram => OpenMetricsType::Histogram,
            MetricKind::Gauge => OpenMetricsType::Gauge,
        };
        assert_eq!(f.family_type, kind, "{}", def.prometheus);
        assert_eq!(
            f.help.trim_end_matches('.'),
            def.help.trim_end_matches('.'),
            "{}",
            def.prometheus
        );
    }

    // Every scraped series is one the model makes, with its values; the live gauges (read
    // from the open spans, none now) are 0.
    let mut seen = 0;
    for def in METRICS.iter().filter(|d| !unmade.contains(&d.prometheus)) {
        for sample in family(&parsed, def.prometheus).iter_samples() {
            if def.kind == MetricKind::Gauge {
                let OpenMetricsValue::Gauge(g) = &sample.value else {
                    panic!("{}: {:?}", def.prometheus, sample.value);
                };
                assert_eq!(g.as_f64(), 0.0, "{}", def.prometheus);
                continue;
            }
            let key = (def.prometheus, labels_of(sample));
            let e = want
                .get(&key)
                .unwrap_or_else(|| panic!("unexpected series {key:?}"));
            seen += 1;
            match &sample.value {
                OpenMetricsValue::Counter(c) => {
                    assert_eq!(c.value.as_f64(), e.sum, "{key:?}");
                }
                OpenMetricsValue::Histogram(hist) => {
                    assert_eq!(hist.count, Some(e.count), "{key:?}");
                    let sum = hist.sum.as_ref().expect("a sum").as_f64();
                    assert!(close(sum, e.sum), "{key:?}: {sum} != {}", e.sum);
                    assert_eq!(hist.buckets.len(), def.buckets.len() + 1, "{key:?}");
                    for (i, bucket) in hist.buckets.iter().enumerate() {
                        let want = e.buckets.get(i).copied().unwrap_or(e.count);
                        assert_eq!(
                            bucket.count.as_f64(),
                            want as f64,
                            "{key:?} le={}",
                            bucket.upper_bound
                        );
                    }
                    assert!(hist.buckets.last().unwrap().upper_bound.is_infinite());
                }
                other => panic!("{key:?}: {other:?}"),
            }
        }
    }
    assert_eq!(seen, want.len(), "every series the model makes is scraped");
}

/// The same, by hand from the model's fields, without the catalogue's `observe`.
#[test]
fn sums_and_counts_match_the_records_fields() {
    let h = Harness::new();
    h.play_many(10);
    let requests = h.requests();
    let (_, parsed) = h.scrape();
    let ok: Vec<_> = requests
        .iter()
        .filter(|r| r.status == RequestStatus::Ok)
        .collect();
    assert_eq!(ok.len(), 6);

    for (reason, status) in [
        ("stop", RequestStatus::Ok),
        ("error", RequestStatus::Error),
        ("abort", RequestStatus::Aborted),
    ] {
        let n = requests.iter().filter(|r| r.status == status).count();
        assert_eq!(
            counter(
                &parsed,
                "vllm_omni:requests_success",
                &[("finished_reason", reason)]
            ),
            n as f64,
            "{reason}"
        );
    }

    let e2e = histogram(&parsed, "vllm_omni:e2e_request_latency_s", &[]);
    assert_eq!(e2e.count, Some(ok.len() as u64));
    let sum: f64 = ok.iter().map(|r| r.e2e_total_ms / 1000.0).sum();
    assert!((e2e.sum.unwrap().as_f64() - sum).abs() <= 1e-9, "{e2e:?}");
    for bucket in &e2e.buckets {
        let n = ok
            .iter()
            .filter(|r| r.e2e_total_ms / 1000.0 <= bucket.upper_bound)
            .count();
        assert_eq!(bucket.count.as_f64(), n as f64, "le={}", bucket.upper_bound);
    }

    let gen1 = histogram(&parsed, "vllm_omni:stage_gen_time_s", &[("stage", "1")]);
    let sum: f64 = ok
        .iter()
        .map(|r| r.stage(1).unwrap().stage_gen_time_ms / 1000.0)
        .sum();
    assert!((gen1.sum.unwrap().as_f64() - sum).abs() <= 1e-9);

    let size = histogram(
        &parsed,
        "vllm_omni:transfer_size_bytes",
        &[("from_stage", "0"), ("to_stage", "1")],
    );
    let bytes: u64 = ok.iter().map(|r| r.edge(0, 1).unwrap().size_bytes).sum();
    assert_eq!(size.sum.unwrap().as_f64(), bytes as f64);

    let prompt: u64 = ok.iter().map(|r| r.stage(0).unwrap().num_tokens_in).sum();
    assert_eq!(
        counter(&parsed, "vllm_omni:prompt_tokens", &[]),
        prompt as f64
    );
    let generated: u64 = ok
        .iter()
        .flat_map(|r| r.stages.iter())
        .map(|s| s.num_tokens_out)
        .sum();
    assert_eq!(
        counter(&parsed, "vllm_omni:generation_tokens", &[]),
        generated as f64
    );

    // Three outputs on stage 0: two gaps per request.
    let gaps = histogram(
        &parsed,
        "vllm_omni:stage_inter_output_latency_s",
        &[("stage", "0")],
    );
    assert_eq!(gaps.count, Some(2 * ok.len() as u64));

    let rtf = histogram(&parsed, "vllm_omni:audio_rtf", &[("stage", "1")]);
    let sum: f64 = ok
        .iter()
        .map(|r| r.stage(1).unwrap().audio_rtf.unwrap())
        .sum();
    assert!((rtf.sum.unwrap().as_f64() - sum).abs() <= 1e-9);
    let ttfa = histogram(&parsed, "vllm_omni:audio_ttfp_s", &[("stage", "1")]);
    let sum: f64 = ok
        .iter()
        .map(|r| r.time_to_first_audio_ms.unwrap() / 1000.0)
        .sum();
    assert!((ttfa.sum.unwrap().as_f64() - sum).abs() <= 1e-9);
}

#[test]
fn labels_are_the_model_stage_and_edge_ids_and_finished_reason_only() {
    let h = Harness::new();
    h.play_many(10);
    let (response, parsed) = h.scrape();
    // No replica given: no replica label. The audio continuity's threshold and the
    // skipped audio's reason are bounded too (the configured thresholds; three reasons).
    let allowed = [
        "model_name",
        "stage",
        "from_stage",
        "to_stage",
        "finished_reason",
        "threshold_ms",
        "reason",
    ];
    for f in parsed.families.values() {
        for sample in f.iter_samples() {
            for (key, value) in labels_of(sample) {
                assert!(allowed.contains(&key.as_str()), "{}: {key}", f.family_name);
                assert!(!value.starts_with("req-"), "{}: {value}", f.family_name);
            }
        }
    }
    assert!(!response.body.contains("req-"), "a request id leaked");
    assert!(!response.body.contains("request_id"));
    assert!(
        !response.body.contains("thinker"),
        "stage names are not labels"
    );
}

#[test]
fn recording_goes_on_while_scrapes_are_served() {
    use omni_metrics::report::Sink;
    use omni_metrics::stats::RequestE2EStats;

    let h = Harness::new();
    let request = RequestE2EStats {
        e2e_total_ms: 12.5,
        ..Default::default()
    };
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..500 {
                    h.prometheus.on_request(&request);
                }
            });
        }
        s.spawn(|| {
            for _ in 0..10 {
                let _ = h.scrape();
            }
        });
    });
    let (_, parsed) = h.scrape();
    let e2e = histogram(&parsed, "vllm_omni:e2e_request_latency_s", &[]);
    // 2,000 requests queued within a millisecond or two overflow the recorder's queue
    // (1,024, shared with the scrapes' barriers): the ones that do not fit are folded on
    // the engine's threads (never waited for), and recorded all the same.
    assert_eq!(h.prometheus.dropped_requests(), 0);
    assert_eq!(e2e.count, Some(2_000));
    assert!(close(e2e.sum.unwrap().as_f64(), 2_000.0 * 0.0125));
}
