//! OpenMetrics exemplars: the trace id of an exported request, on its histogram buckets.

use openmetrics_parser::OpenMetricsValue;

use crate::support::Harness;

#[test]
fn no_trace_no_exemplar() {
    let h = Harness::new();
    h.play_many(3);
    let (response, parsed) = h.scrape();
    assert!(h.requests().iter().all(|r| r.trace_id.is_none()));
    for f in parsed.families.values() {
        for sample in f.iter_samples() {
            if let OpenMetricsValue::Histogram(hist) = &sample.value {
                assert!(hist.buckets.iter().all(|b| b.exemplar.is_none()));
            }
        }
    }
    assert!(!response.body.contains("trace_id"));
}

#[cfg(feature = "otlp")]
#[test]
fn exemplars_carry_the_trace_ids_of_exported_requests() {
    use std::collections::HashMap;

    use omni_metrics::stats::RequestStatus;

    use crate::support::histogram;

    let h = Harness::traced();
    h.play_many(8);
    let requests = h.requests();
    // Trace id -> the request's latency in seconds.
    let latency: HashMap<String, f64> = requests
        .iter()
        .filter(|r| r.status == RequestStatus::Ok)
        .map(|r| {
            let id = r
                .trace_id
                .clone()
                .expect("an exported request has a trace id");
            (id, r.e2e_total_ms / 1000.0)
        })
        .collect();
    assert_eq!(latency.len(), 6, "one trace per ok request");
    let (_, parsed) = h.scrape();

    let e2e = histogram(&parsed, "vllm_omni:e2e_request_latency_s", &[]);
    let mut exemplars = 0;
    for bucket in &e2e.buckets {
        if let Some(exemplar) = &bucket.exemplar {
            exemplars += 1;
            assert_eq!(exemplar.labels.len(), 1, "{exemplar:?}");
            let trace_id = &exemplar.labels["trace_id"];
            assert_eq!(trace_id.len(), 32);
            // The exemplar is that request's own observation, in that bucket.
            assert_eq!(latency.get(trace_id), Some(&exemplar.id), "{exemplar:?}");
            assert!(exemplar.id <= bucket.upper_bound);
        }
    }
    assert!(exemplars > 0, "{e2e:?}");

    // Every histogram's exemplars name traces of these requests, and nothing else.
    for f in parsed.families.values() {
        for sample in f.iter_samples() {
            if let OpenMetricsValue::Histogram(hist) = &sample.value {
                for exemplar in hist.buckets.iter().filter_map(|b| b.exemplar.as_ref()) {
                    assert!(
                        latency.contains_key(&exemplar.labels["trace_id"]),
                        "{}: {exemplar:?}",
                        f.family_name
                    );
                }
            }
        }
    }
}

/// A classic scraper (no `Accept`, as `curl` or `promtool`) gets the classic text format,
/// which has no exemplars: the traces are linked only for an OpenMetrics scrape.
#[cfg(feature = "otlp")]
#[test]
fn a_classic_scrape_carries_no_exemplars() {
    use crate::support::get_accepting;

    let h = Harness::traced();
    h.play_many(4);
    assert!(h.requests().iter().all(|r| r.trace_id.is_some()));
    let (_, parsed) = h.scrape();
    let with_exemplars = parsed
        .families
        .values()
        .flat_map(|f| f.iter_samples())
        .filter_map(|s| match &s.value {
            OpenMetricsValue::Histogram(h) => Some(h),
            _ => None,
        })
        .flat_map(|h| &h.buckets)
        .filter(|b| b.exemplar.is_some())
        .count();
    assert!(with_exemplars > 0, "an OpenMetrics scrape has exemplars");
    let classic = get_accepting(h.addr(), "GET /metrics HTTP/1.1", None);
    assert_eq!(
        classic.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(!classic.body.contains("trace_id"), "{}", classic.body);
    assert!(!classic.body.contains(" # {"), "{}", classic.body);
}
