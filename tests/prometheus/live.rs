//! The live gauges and the audio continuity families on the endpoint (issue 25, items 3
//! and 4): requests held open at known points, scraped over loopback HTTP, show exactly the
//! gauges the open spans make, then 0; a hand-computed packet schedule (SPEC.md, "Audio
//! continuity") shows its underrun, its continuity at each threshold and the skipped audio.

use std::collections::BTreeMap;

use omni_metrics::OmniMetricsLayer;
use omni_metrics::instrument::Request;

use crate::support::{Harness, counter, family, gauges, histogram, labels_of};

const MODEL: &str = "qwen3-omni";

/// `(labels, value)` pairs as [`gauges`] reads them; `model_name` is [`MODEL`].
fn series(rows: &[(&[(&str, &str)], f64)]) -> BTreeMap<Vec<(String, String)>, f64> {
    rows.iter()
        .map(|(labels, value)| {
            let mut labels: Vec<(String, String)> = labels
                .iter()
                .chain(&[("model_name", MODEL)])
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            labels.sort();
            (labels, *value)
        })
        .collect()
}

/// The four live gauge families of one scrape, each as [`gauges`] reads it.
struct Live {
    running: BTreeMap<Vec<(String, String)>, f64>,
    waiting: BTreeMap<Vec<(String, String)>, f64>,
    stages: BTreeMap<Vec<(String, String)>, f64>,
    transfers: BTreeMap<Vec<(String, String)>, f64>,
}

fn scrape(h: &Harness) -> Live {
    let (_, parsed) = h.scrape();
    Live {
        running: gauges(&parsed, "vllm_omni:num_requests_running"),
        waiting: gauges(&parsed, "vllm_omni:num_requests_waiting"),
        stages: gauges(&parsed, "vllm_omni:stage_inflight_requests"),
        transfers: gauges(&parsed, "vllm_omni:transfer_inflight"),
    }
}

#[test]
fn live_gauges_are_exact_at_each_scrape_then_zero() {
    let h = Harness::with_model_name(MODEL);
    let none: &[(&str, &str)] = &[];
    h.run(|| {
        // Before any request: the model's zero series, no stage or edge yet.
        let live = scrape(&h);
        assert_eq!(live.running, series(&[(none, 0.0)]));
        assert_eq!(live.waiting, series(&[(none, 0.0)]));
        assert!(live.stages.is_empty() && live.transfers.is_empty());

        // A: opened, in no stage yet: waiting.
        let a = Request::start("a");
        // B: in stage 0 on replica 1, queued: waiting, and in flight there.
        let b = Request::start("b");
        let b0 = b.stage(0);
        b0.replica(1);
        let b_queue = b0.queue();
        // C: computing on stage 0, replica 0, a transfer 0 -> 1 under way.
        let c = Request::start("c");
        let c0 = c.stage(0);
        c0.replica(0);
        let c_transfer = c.transfer(0, 1);
        // D: stage 0 done, stage 1 streamed in two open chunks on replica 2: once in
        // flight. (Every stage gives its replica: the OpenMetrics parser of these tests
        // wants one label set per family.)
        let d = Request::start("d");
        d.stage(0).replica(0);
        let d1 = d.stage(1);
        d1.replica(2);
        let d1_chunk = d.stage(1);
        d1_chunk.replica(2);
        // E: between stages, its transfer 0 -> 1 open: running, not waiting.
        let e = Request::start("e");
        e.stage(0).replica(0);
        let e_transfer = e.transfer(0, 1);

        let live = scrape(&h);
        assert_eq!(live.running, series(&[(none, 5.0)]));
        assert_eq!(live.waiting, series(&[(none, 2.0)]), "a and b");
        assert_eq!(
            live.stages,
            series(&[
                (&[("stage", "0"), ("replica", "1")], 1.0),
                (&[("stage", "0"), ("replica", "0")], 1.0),
                (&[("stage", "1"), ("replica", "2")], 1.0),
            ])
        );
        assert_eq!(
            live.transfers,
            series(&[(&[("from_stage", "0"), ("to_stage", "1")], 2.0)])
        );

        // B's queue ends: computing, no longer waiting.
        drop(b_queue);
        let live = scrape(&h);
        assert_eq!(live.waiting, series(&[(none, 1.0)]), "a only");
        assert_eq!(live.running, series(&[(none, 5.0)]));

        // Every stage and transfer closes: their series read 0 (not gone, not stale).
        drop((b0, c0, c_transfer, d1, d1_chunk, e_transfer));
        let live = scrape(&h);
        assert_eq!(live.running, series(&[(none, 5.0)]));
        assert_eq!(
            live.stages,
            series(&[
                (&[("stage", "0"), ("replica", "1")], 0.0),
                (&[("stage", "0"), ("replica", "0")], 0.0),
                (&[("stage", "1"), ("replica", "2")], 0.0),
            ])
        );
        assert_eq!(
            live.transfers,
            series(&[(&[("from_stage", "0"), ("to_stage", "1")], 0.0)])
        );
        for r in [a, b, c, d, e] {
            r.finish();
        }
    });
    // Finished: every gauge 0.
    let live = scrape(&h);
    assert_eq!(live.running, series(&[(none, 0.0)]));
    assert_eq!(live.waiting, series(&[(none, 0.0)]));
    assert!(live.stages.values().all(|v| *v == 0.0), "{:?}", live.stages);
    assert!(live.transfers.values().all(|v| *v == 0.0));
    assert_eq!(h.requests().len(), 5);
}

/// Two layers serving the same model with one sink: the gauges add up; a layer dropped
/// counts no more.
#[test]
fn a_sink_of_several_layers_adds_their_gauges_by_model() {
    let h = Harness::with_model_name(MODEL);
    let other = OmniMetricsLayer::builder()
        .with_console(false)
        .with_model_name(MODEL)
        .with_sink(h.prometheus.clone())
        .build()
        .expect("a layer");
    let other_handle = other.handle();
    let other = tracing::Dispatch::new(tracing_subscriber::layer::SubscriberExt::with(
        tracing_subscriber::registry(),
        other,
    ));
    let none: &[(&str, &str)] = &[];
    let mine = h.run(|| Request::start("mine"));
    let theirs = tracing::dispatcher::with_default(&other, || {
        let r = Request::start("theirs");
        let s = r.stage(2);
        (r, s)
    });
    assert_eq!(other_handle.live().requests_running, 1);
    let live = scrape(&h);
    assert_eq!(live.running, series(&[(none, 2.0)]));
    assert_eq!(live.stages, series(&[(&[("stage", "2")], 1.0)]));
    tracing::dispatcher::with_default(&other, || {
        drop(theirs.1);
        theirs.0.finish();
    });
    drop(other);
    let live = scrape(&h);
    assert_eq!(live.running, series(&[(none, 1.0)]));
    assert_eq!(live.stages, series(&[(&[("stage", "2")], 0.0)]));
    h.run(|| mine.finish());
}

/// One audio stage (stage 1, replica 0, 24 kHz) streaming 200 ms packets (4,800 frames)
/// whose arrivals, in ms after the first, are `at_ms`.
fn stream(h: &Harness, id: &str, at_ms: &[u64]) {
    let request = Request::start(id);
    let talker = request.stage(1);
    talker.replica(0).audio(4_800 * at_ms.len() as u64, 24_000);
    h.clock.advance_ns(30_000_000); // the first packet after 30 ms
    let mut now = 0;
    for &at in at_ms {
        h.clock.advance_ns((at - now) * 1_000_000);
        now = at;
        talker.output(4_800);
    }
    drop(talker);
    request.finish();
}

#[test]
fn audio_continuity_families_from_a_hand_computed_schedule() {
    let h = Harness::with_builder(
        OmniMetricsLayer::builder()
            .with_model_name(MODEL)
            .with_audio_continuity_thresholds([100, 50]),
    );
    h.run(|| {
        // SPEC.md's example: packet 2 plays at 200 (no gap), packet 3 waits from 400 to
        // 500: underrun 100 ms, max gap 100 ms, ok at 100 ms, not at 50 ms.
        stream(&h, "spec", &[0, 150, 500]);
        // Steady: each packet before the previous one ends. No gap.
        stream(&h, "steady", &[0, 190, 380, 570]);
        // Audio stages that made no audio, for each reason.
        let silent = Request::start("silent");
        silent.stage(1).replica(0).audio(0, 24_000);
        silent.finish();
        let failed = Request::start("failed");
        failed.stage(1).replica(0).audio(0, 24_000);
        failed.fail();
        let dropped = Request::start("dropped");
        dropped.stage(1).replica(0).audio(0, 24_000);
        drop(dropped);
    });
    let records = h.requests();
    assert_eq!(records.len(), 5);
    let spec = records.iter().find(|r| r.request_id == "spec").unwrap();
    let talker = spec.stage(1).unwrap();
    assert_eq!(
        (talker.audio_underrun_ms, talker.audio_max_gap_ms),
        (Some(100.0), Some(100.0))
    );

    let (response, parsed) = h.scrape();
    let model = ("model_name", MODEL);
    let talker: &[(&str, &str)] = &[model, ("stage", "1"), ("replica", "0")];
    // One observation per measured stream: 0.1 s and 0 s, in the fast seconds buckets.
    let underrun = histogram(&parsed, "vllm_omni:audio_underrun_s", talker);
    assert_eq!(underrun.count, Some(2));
    assert_eq!(underrun.sum.map(|s| s.as_f64()), Some(0.1));
    let le = |bound: f64| {
        underrun
            .buckets
            .iter()
            .find(|b| b.upper_bound == bound)
            .map(|b| b.count.as_f64())
    };
    assert_eq!(
        (le(0.001), le(0.05), le(0.1), le(f64::INFINITY)),
        (Some(1.0), Some(1.0), Some(2.0), Some(2.0))
    );
    // Continuity: both streams ok at 100 ms, only the steady one at 50 ms, the series of
    // each configured threshold there (0 would read as absent otherwise).
    let ok = |threshold: &str| {
        let mut labels = talker.to_vec();
        labels.push(("threshold_ms", threshold));
        counter(&parsed, "vllm_omni:audio_continuity_ok", &labels)
    };
    assert_eq!((ok("50"), ok("100")), (1.0, 2.0));
    let thresholds: Vec<String> = family(&parsed, "vllm_omni:audio_continuity_ok")
        .iter_samples()
        .flat_map(labels_of)
        .filter(|(k, _)| k == "threshold_ms")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        thresholds.len(),
        2,
        "one series per threshold: {thresholds:?}"
    );
    // Skipped audio, by reason, whatever the request's status.
    let skipped = |reason: &str| {
        let mut labels = talker.to_vec();
        labels.push(("reason", reason));
        counter(&parsed, "vllm_omni:audio_skipped_requests", &labels)
    };
    assert_eq!(
        (skipped("no_frames"), skipped("error"), skipped("aborted")),
        (1.0, 1.0, 1.0)
    );
    // As written, in vLLM-Omni's label order.
    for line in [
        "vllm_omni:audio_continuity_ok_total{model_name=\"qwen3-omni\",stage=\"1\",replica=\"0\",threshold_ms=\"50\"} 1",
        "vllm_omni:audio_skipped_requests_total{model_name=\"qwen3-omni\",stage=\"1\",replica=\"0\",reason=\"aborted\"} 1",
    ] {
        assert!(
            response.body.lines().any(|l| l == line),
            "{line}\n{}",
            response.body
        );
    }
}
