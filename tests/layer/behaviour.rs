//! The convention's rules: chunks, overrides, queue/postprocess, scopes, status, threads.

use crate::support::{Harness, HarnessExt as _, assert_close, ns};
use omni_metrics::instrument::{Request, Run};
use omni_metrics::stats::RequestStatus;
use tracing::info_span;

#[test]
fn chunked_stage_is_summed_not_double_counted() {
    let h = Harness::new();
    h.run(|| {
        let req = info_span!("omni.request", request_id = "chunks");
        for i in 0..4_u64 {
            h.at(10.0 * i as f64);
            let s = info_span!(parent: &req, "omni.stage", stage_id = 1,
                batch_id = 7_u64, num_tokens_in = 10, num_tokens_out = 5);
            h.at(10.0 * i as f64 + 4.0);
            drop(s);
        }
        h.at(50.0);
    });
    let r = &h.capture().requests()[0];
    assert_eq!(r.stages.len(), 1, "one column per stage id");
    let s = &r.stages[0];
    assert_eq!((s.num_tokens_in, s.num_tokens_out, s.spans), (40, 20, 4));
    assert_close(s.stage_gen_time_ms, 16.0, "gen time = sum of chunks");
    assert_close(s.wall_time_ms, 34.0, "wall = first start to last end");
    assert_eq!(r.e2e_total_tokens, 20, "no stage 0: only outputs count");
    assert_eq!(h.handle().totals().invalid_spans, 0);
}

#[test]
fn chunked_edge_sums_bytes_and_times_over_the_same_chunks() {
    let h = Harness::new();
    h.run(|| {
        let req = info_span!("omni.request", request_id = "edge");
        for i in 0..3_u64 {
            let base = 100.0 * i as f64;
            h.at(base);
            let t = info_span!(parent: &req, "omni.transfer", from_stage = 1, to_stage = 2,
                size_bytes = 1024 * (i + 1));
            let tx = info_span!(parent: &t, "omni.transfer.tx");
            h.at(base + 1.0);
            drop(tx);
            h.at(base + 1.0 + (i + 1) as f64); // in flight 1, 2, 3 ms
            let rx = info_span!(parent: &t, "omni.transfer.rx_decode");
            h.at(base + 10.0);
            drop(rx);
            drop(t);
        }
    });
    let e = &h.capture().requests()[0].transfers[0];
    assert_eq!(
        (e.edge.to_string().as_str(), e.transfers, e.size_bytes),
        ("1->2", 3, 6144)
    );
    assert_close(e.size_kbytes, 6.0, "size_kbytes");
    assert_close(e.tx_time_ms, 3.0, "tx");
    assert_close(e.in_flight_time_ms, 6.0, "in flight per chunk, summed");
    assert_close(e.rx_decode_time_ms, 8.0 + 7.0 + 6.0, "rx");
}

#[test]
fn queue_and_postprocess_are_excluded_from_gen_time() {
    let h = Harness::new();
    h.run(|| {
        let req = info_span!("omni.request", request_id = "q");
        let s = info_span!(parent: &req, "omni.stage", stage_id = 0);
        let q = info_span!(parent: &s, "omni.queue");
        h.at(3.0);
        drop(q);
        h.at(10.0);
        // Two overlapping postprocess children: 2 ms and 3 ms.
        let p1 = info_span!(parent: &s, "omni.postprocess");
        h.at(11.0);
        let p2 = info_span!(parent: &s, "omni.postprocess");
        h.at(12.0);
        drop(p1);
        h.at(14.0);
        drop(p2);
        h.at(20.0);
    });
    let s = &h.capture().requests()[0].stages[0];
    assert_close(s.queue_time_ms, 3.0, "queue");
    assert_close(s.postprocess_time_ms, 5.0, "postprocess");
    // The two postprocess children overlap (10..12 and 11..14): 4 ms covered, subtracted
    // once (issue 6, item 14).
    assert_close(s.stage_gen_time_ms, 20.0 - 3.0 - 4.0, "gen");
}

/// An explicit `postprocess_time_ms` beside postprocess children is the stage's
/// postprocess time: the children are not measured, and gen time is the duration minus the
/// queue children's coverage minus the explicit value (SPEC, "Edge cases, decided").
#[test]
fn an_explicit_postprocess_time_stands_for_the_postprocess_children() {
    let h = Harness::new();
    h.run(|| {
        let req = info_span!("omni.request", request_id = "pp");
        let s = info_span!(parent: &req, "omni.stage", stage_id = 0,
            postprocess_time_ms = tracing::field::Empty);
        // Queue 0..4 and a postprocess child 2..10 that overlaps it.
        let q = info_span!(parent: &s, "omni.queue");
        h.at(2.0);
        let p = info_span!(parent: &s, "omni.postprocess");
        h.at(4.0);
        drop(q);
        h.at(10.0);
        drop(p);
        s.record("postprocess_time_ms", 3.0);
        h.at(30.0);
    });
    let st = &h.capture().requests()[0].stages[0];
    assert_close(st.postprocess_time_ms, 3.0, "postprocess");
    assert_close(st.queue_time_ms, 4.0, "queue");
    assert_close(st.stage_gen_time_ms, 30.0 - 4.0 - 3.0, "gen");
}

/// `batch_id` and `batch_size` are each the earliest-starting chunk's that gives them,
/// whatever order the chunks close in.
#[test]
fn a_chunked_stage_takes_its_batch_from_the_earliest_chunk_that_gives_one() {
    let h = Harness::new();
    h.run(|| {
        let req = info_span!("omni.request", request_id = "b");
        let a = info_span!(parent: &req, "omni.stage", stage_id = 0);
        h.at(1.0);
        let b = info_span!(parent: &req, "omni.stage", stage_id = 0, batch_id = 7_u64);
        h.at(2.0);
        let c = info_span!(parent: &req, "omni.stage", stage_id = 0, batch_id = 8_u64,
            batch_size = 4_u64);
        h.at(3.0);
        // a (no batch) closes first, then c: b, closing last, still started earlier.
        drop(a);
        drop(c);
        drop(b);
        h.at(4.0);
    });
    let r = &h.capture().requests()[0];
    let st = &r.stages[0];
    assert_eq!((st.batch_id, st.batch_size, st.spans), (7, 4, 3));
    assert_eq!(r.invalid_spans, 0);
}

#[test]
fn explicit_fields_win_over_measurements() {
    let h = Harness::new();
    h.run(|| {
        let req = info_span!("omni.request", request_id = "o");
        let s = info_span!(parent: &req, "omni.stage", stage_id = 0,
            stage_gen_time_ms = 123.5, postprocess_time_ms = tracing::field::Empty);
        let p = info_span!(parent: &s, "omni.postprocess");
        h.at(5.0);
        drop(p);
        s.record("postprocess_time_ms", 7.25);
        h.at(9.0);
        drop(s);
        let t = info_span!(parent: &req, "omni.transfer", from_stage = 0, to_stage = 1,
            tx_time_ms = 1.5, rx_decode_time_ms = 2.5, in_flight_time_ms = 0.5);
        let tx = info_span!(parent: &t, "omni.transfer.tx");
        h.at(20.0);
        drop(tx);
        drop(t);
    });
    let r = &h.capture().requests()[0];
    assert_eq!(r.stages[0].stage_gen_time_ms, 123.5);
    assert_eq!(r.stages[0].postprocess_time_ms, 7.25);
    let e = &r.transfers[0];
    assert_eq!(
        (e.tx_time_ms, e.rx_decode_time_ms, e.in_flight_time_ms),
        (1.5, 2.5, 0.5)
    );
    assert_eq!(
        h.handle().totals().invalid_spans,
        0,
        "overrides stand in for tx/rx"
    );
}

#[test]
fn online_request_is_its_own_scope_and_summary_comes_first() {
    let h = Harness::new();
    h.run(|| {
        let req = Request::start("solo");
        let st = req.stage(0);
        st.tokens_in(10).tokens_out(2);
        h.at(4.0);
        drop(st);
        h.at(8.0);
        req.finish();
    });
    let records = h.capture().records();
    assert!(matches!(
        records[0],
        omni_metrics::report::Record::Summary(_)
    ));
    let s = &h.capture().summaries()[0];
    assert_eq!(
        (s.scope.as_str(), s.e2e_requests, s.e2e_total_tokens),
        ("solo", 1, 12)
    );
    assert_close(s.e2e_wall_time_ms, 8.0, "wall");
    assert_close(s.e2e_avg_tokens_per_s, 12.0 * 1000.0 / 8.0, "tokens/s");
}

#[test]
fn run_summarizes_its_requests_and_counts_failures_apart() {
    let h = Harness::new();
    h.run(|| {
        let run = Run::with_id("batch");
        for (i, outcome) in ["ok", "ok", "error", "aborted"].iter().enumerate() {
            h.at(i as f64);
            let req = run.request(&format!("r{i}"));
            let st = req.stage(0);
            st.tokens_in(100).tokens_out(10);
            h.at(i as f64 + 5.0);
            drop(st);
            match *outcome {
                "ok" => req.finish(),
                "error" => req.fail(),
                _ => drop(req), // a cancelled future
            }
        }
        h.at(50.0);
        drop(run);
    });
    let s = &h.capture().summaries()[0];
    assert_eq!(s.scope, "batch");
    assert_eq!(
        (s.e2e_requests, s.e2e_requests_error, s.e2e_requests_aborted),
        (2, 1, 1)
    );
    assert_eq!(s.e2e_total_tokens, 220);
    assert_close(s.e2e_wall_time_ms, 6.0, "run start to last ok completion");
    assert_close(s.e2e_avg_time_per_request_ms, 3.0, "wall / requests");
    assert_close(
        s.stage_wall_time_ms(0).unwrap_or(-1.0),
        6.0,
        "stage 0 wall over ok requests",
    );
    let statuses: Vec<RequestStatus> = h.capture().requests().iter().map(|r| r.status).collect();
    use RequestStatus::*;
    assert_eq!(statuses, [Ok, Ok, Error, Aborted]);
    // Failed requests still report the stages they finished.
    assert_eq!(h.capture().requests()[3].stages[0].num_tokens_out, 10);
    let t = h.handle().totals();
    assert_eq!(
        (t.requests_ok, t.requests_error, t.requests_aborted, t.runs),
        (2, 1, 1, 1)
    );
}

#[test]
fn spans_opened_and_closed_on_other_threads_are_counted() {
    let h = Harness::new();
    let dispatch = h.dispatch().clone();
    h.run(|| {
        let req = Request::start("threads");
        let parent = req.span().clone();
        // Stage opened on one thread, its handle dropped on another.
        let stage = std::thread::spawn({
            let d = dispatch.clone();
            let p = parent.clone();
            move || {
                tracing::dispatcher::with_default(&d, || {
                    let s = omni_metrics::instrument::Stage::child_of(&p, 0);
                    s.tokens_in(3).tokens_out(4);
                    s
                })
            }
        })
        .join()
        .expect("thread");
        // With a scoped dispatcher the dropping thread must have it as default: the Registry
        // releases the parent through the thread's default dispatcher (see the README's
        // "Known limitations"; tests/global_subscriber.rs covers the global case).
        std::thread::spawn(move || tracing::dispatcher::with_default(&dispatch, || drop(stage)))
            .join()
            .expect("thread");
        req.finish();
    });
    let r = &h.capture().requests()[0];
    assert_eq!(r.e2e_total_tokens, 7);
    assert_eq!(h.handle().totals().invalid_spans, 0);
}

/// A transfer and its children made on another thread than their request, the transfer
/// closed on a third, and a stage closed on a thread of its own: each merges into the
/// request through the request's shard, with its times and issues.
#[test]
fn transfers_and_stages_closed_on_other_threads_merge_into_their_request() {
    let h = Harness::new();
    let on_thread = |f: Box<dyn FnOnce() -> tracing::Span + Send>| {
        let d = h.dispatch().clone();
        std::thread::spawn(move || tracing::dispatcher::with_default(&d, f))
            .join()
            .expect("thread")
    };
    h.run(|| {
        h.at(0.0);
        let req = info_span!("omni.request", request_id = "across");
        let parent = req.clone();
        let clock = h.clock().clone();
        let transfer = on_thread(Box::new(move || {
            let t = info_span!(parent: &parent, "omni.transfer", from_stage = 0_u64,
                to_stage = 1_u64, size_bytes = 2048_u64);
            clock.set_ns(ns(1.0));
            let tx = info_span!(parent: &t, "omni.transfer.tx");
            clock.set_ns(ns(3.0));
            drop(tx);
            clock.set_ns(ns(4.0));
            let rx = info_span!(parent: &t, "omni.transfer.rx_decode");
            clock.set_ns(ns(9.0));
            drop(rx);
            t
        }));
        let parent = req.clone();
        let stage = on_thread(Box::new(move || {
            info_span!(parent: &parent, "omni.stage", stage_id = 0_u64, num_tokens_in = 2_u64,
                num_tokens_out = 5_u64)
        }));
        // A transfer without tx or rx, closed here: incomplete, counted once the request
        // ends `ok`.
        let bare = info_span!(parent: &req, "omni.transfer", from_stage = 1_u64, to_stage = 2_u64);
        let closer = h.dispatch().clone();
        std::thread::spawn(move || {
            tracing::dispatcher::with_default(&closer, || drop((transfer, stage)));
        })
        .join()
        .expect("thread");
        drop(bare);
        h.at(12.0);
        drop(req);
    });
    let r = &h.capture().requests()[0];
    assert_eq!(r.request_id, "across");
    assert_eq!(r.e2e_total_tokens, 7);
    let edge = r
        .transfers
        .iter()
        .find(|e| (e.from_stage, e.to_stage) == (0, 1))
        .expect("the edge from the other threads");
    assert_eq!((edge.tx_time_ms, edge.rx_decode_time_ms), (2.0, 5.0));
    assert_eq!(edge.in_flight_time_ms, 1.0);
    assert_eq!(edge.size_bytes, 2048);
    assert_eq!(r.invalid_spans, 1, "the bare transfer, and only it");
    assert!(h.handle().open_spans().is_empty());
}

#[test]
fn stage_under_a_user_span_finds_its_request() {
    let h = Harness::new();
    h.run(|| {
        let req = info_span!("omni.request", request_id = "nested");
        let _g = req.enter();
        let user = info_span!("engine.step");
        let _u = user.enter();
        let s = info_span!("omni.stage", stage_id = 0, num_tokens_in = 9);
        drop(s);
    });
    assert_eq!(h.capture().requests()[0].e2e_total_tokens, 9);
}

#[test]
fn jsonl_from_the_environment_variable() {
    let dir = std::env::temp_dir().join(format!("omni-metrics-jsonl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("records.jsonl");
    let _ = std::fs::remove_file(&path);
    // The variable is read by `build()`; this is the only test that sets it.
    // SAFETY: no other test in this binary reads or writes OMNI_METRICS_JSONL.
    unsafe { std::env::set_var("OMNI_METRICS_JSONL", &path) };
    let layer = omni_metrics::OmniMetricsLayer::builder()
        .with_console(false)
        .build();
    unsafe { std::env::remove_var("OMNI_METRICS_JSONL") };
    let layer = layer.expect("the temp file opens");
    use tracing_subscriber::prelude::*;
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let _r = info_span!("omni.request", request_id = "env");
    });
    let text = std::fs::read_to_string(&path).expect("records written");
    let types: Vec<String> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("valid JSON line");
            v["type"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(types, ["summary", "request"]);

    // A path that cannot be opened is a clear error naming the variable's fix.
    let err = omni_metrics::OmniMetricsLayer::builder()
        .with_jsonl(dir.join("missing-dir").join("x.jsonl"))
        .build()
        .expect_err("directory does not exist");
    assert!(
        err.to_string().contains("check that its directory exists"),
        "{err}"
    );
}

#[test]
fn console_sink_prints_the_four_tables() {
    let buf = crate::support::SharedBuf::default();
    let layer = omni_metrics::OmniMetricsLayer::builder()
        .with_console(omni_metrics::Destination::writer(buf.clone()))
        .build()
        .expect("no file");
    use tracing_subscriber::prelude::*;
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let req = Request::start("print");
        req.stage(0).tokens_in(5);
        let t = req.transfer(0, 1);
        drop(t.tx());
        drop(t.rx_decode());
        drop(t);
        req.finish();
    });
    let out =
        String::from_utf8(buf.0.lock().map(|b| b.clone()).unwrap_or_default()).unwrap_or_default();
    for title in [
        "Overall Summary",
        "RequestE2EStats",
        "StageRequestStats",
        "TransferEdgeStats",
    ] {
        assert!(out.contains(title), "missing {title} in:\n{out}");
    }
    assert!(
        out.find("Overall Summary") < out.find("RequestE2EStats"),
        "{out}"
    );
}

/// A cancelled request ends at its cancellation: spawned stage work that goes on (and keeps
/// the request's span open) is counted apart and said, not added to e2e or the stage rows.
#[test]
fn an_aborted_request_ends_at_its_abort_and_later_work_is_counted_apart() {
    use omni_metrics::instrument::RequestGuard;
    let h = Harness::new();
    h.run(|| {
        // Typed: the request dropped unfinished at 700 ms; stage 1 was spawned and runs on.
        let request = Request::start("typed");
        let done = request.stage(0);
        done.tokens_in(4).tokens_out(2);
        h.at(100.0);
        drop(done);
        let spawned = request.stage(1);
        spawned.tokens_out(9);
        let transfer = request.transfer(0, 1);
        h.at(700.0);
        drop(request);
        h.at(900.0);
        drop((spawned, transfer));
        // Raw, with a guard, under a run: the same.
        let run = Run::with_id("cut");
        let raw = info_span!(parent: run.span(), "omni.request", request_id = "raw",
            status = tracing::field::Empty);
        let guard = RequestGuard::new(&raw);
        h.at(1000.0);
        let stage = info_span!(parent: &raw, "omni.stage", stage_id = 0, num_tokens_out = 3);
        drop(raw);
        h.at(1500.0);
        drop(guard);
        h.at(1948.0);
        drop(stage);
        drop(run);
    });
    let requests = h.capture().requests();
    let typed = requests
        .iter()
        .find(|r| r.request_id == "typed")
        .expect("typed");
    assert_eq!(typed.status, RequestStatus::Aborted);
    assert_close(typed.e2e_total_ms, 700.0, "e2e ends at the abort");
    assert_eq!(
        typed.stages.iter().map(|s| s.stage_id).collect::<Vec<_>>(),
        [0],
        "only the stage done before the abort"
    );
    assert!(
        typed.transfers.is_empty(),
        "the transfer closed after the abort"
    );
    let raw = requests
        .iter()
        .find(|r| r.request_id == "raw")
        .expect("raw");
    assert_eq!(raw.status, RequestStatus::Aborted);
    assert_close(raw.e2e_total_ms, 600.0, "e2e ends at the guard's drop");
    assert!(raw.stages.is_empty());
    let totals = h.handle().totals();
    assert_eq!(totals.after_abort_spans, 3);
    assert_eq!(totals.invalid_spans, 0, "late work breaks no rule");
    h.warned("closed after its request was aborted");
    let summary = &h.capture().summaries()[0];
    assert_eq!(summary.e2e_requests_aborted, 1);
}

/// Replicas, diffusion steps and video: each record carries what the engine said, and the
/// derived figures follow their definitions; a chunked stage keeps its earliest chunk's
/// replica. Without them, nothing of it shows.
#[test]
fn replicas_diffusion_and_video_reach_the_records_and_tables() {
    let h = Harness::new();
    h.run(|| {
        let run = Run::with_id("diffusion-run");
        let request = run.request("r-1");
        let thinker = request.stage(0);
        thinker.replica(3).tokens_in(4);
        h.at(10.0);
        drop(thinker);
        let transfer = request.transfer(0, 1);
        transfer.replicas(3, 0).size_bytes(1024);
        drop(transfer);
        // A diffusion stage of 50 steps, 400 ms of compute, then 48 frames at 24 fps.
        let dit = request.stage(1);
        dit.replica(0).inference_steps(50).video(48, 24);
        h.at(410.0);
        drop(dit);
        // A chunked stage: the later chunk from replica 5, the earlier from replica 1.
        let late = info_span!(parent: request.span(), "omni.stage", stage_id = 2_u64,
            replica_id = 5_u64);
        h.at(420.0);
        let early = info_span!(parent: request.span(), "omni.stage", stage_id = 2_u64,
            replica_id = 1_u64);
        h.at(430.0);
        drop(early);
        drop(late);
        request.finish();
        // No replica anywhere: no replica in the record or the table.
        let plain = run.request("plain");
        drop(plain.stage(0));
        plain.finish();
    });
    let requests = h.capture().requests();
    let r = requests
        .iter()
        .find(|r| r.request_id == "r-1")
        .expect("r-1");
    let replicas: Vec<_> = r.stages.iter().map(|s| s.replica_id).collect();
    assert_eq!(
        replicas,
        [Some(3), Some(0), Some(5)],
        "chunk started at 410 ms"
    );
    let t = &r.transfers[0];
    assert_eq!((t.from_replica, t.to_replica), (Some(3), Some(0)));
    let dit = &r.stages[1];
    assert_eq!(dit.num_inference_steps, Some(50));
    assert_close(dit.stage_gen_time_ms, 400.0, "gen");
    assert_close(
        dit.denoise_step_latency_ms.expect("steps"),
        8.0,
        "400 ms / 50 steps",
    );
    assert_eq!((dit.video_frames, dit.video_fps), (48, Some(24)));
    assert_close(dit.video_duration_ms.expect("video"), 2000.0, "48 / 24 fps");
    assert_close(dit.video_rtf.expect("video"), 0.2, "400 / 2000");
    let json = serde_json::to_value(r).expect("json");
    assert_eq!(json["stages"][0]["replica_id"], 3);
    assert_eq!(json["transfers"][0]["from_replica"], 3);
    assert_eq!(json["stages"][1]["denoise_step_latency_ms"], 8.0);
    let table = r.to_string();
    assert!(table.contains("| replica_id "), "{table}");
    assert!(table.contains("| denoise_step_latency_ms "), "{table}");
    assert!(table.contains("| from_replica "), "{table}");
    let plain = requests
        .iter()
        .find(|r| r.request_id == "plain")
        .expect("plain");
    assert_eq!(plain.stages[0].replica_id, None);
    let json = serde_json::to_string(plain).expect("json");
    assert!(
        !json.contains("replica") && !json.contains("video"),
        "{json}"
    );
    assert!(!plain.to_string().contains("replica"), "{plain}");
}

/// Audio continuity through the layer: the audio stage's `omni.output` events (units =
/// frames) played back as a listener hears them, judged at each threshold, summed in the
/// summary; an audio stage without frames is `audio_skipped`.
#[test]
fn audio_continuity_is_measured_from_the_audio_stage_outputs() {
    let h = Harness::with(|b| b.with_audio_continuity_thresholds([50, 100, 250]));
    h.run(|| {
        let run = Run::with_id("audio");
        // SPEC's example: 200 ms packets (4,800 frames at 24 kHz) at 0, 150 and 500 ms.
        let speech = run.request("speech");
        let vocoder = speech.stage(2);
        vocoder.audio(14_400, 24_000);
        for at in [0.0, 150.0, 500.0] {
            h.at(at);
            vocoder.output(4_800);
        }
        h.at(510.0);
        drop(vocoder);
        speech.finish();
        // Steady: no gap.
        let steady = run.request("steady");
        let vocoder = steady.stage(2);
        vocoder.audio(9_600, 24_000);
        for at in [600.0, 800.0] {
            h.at(at);
            vocoder.output(4_800);
        }
        drop(vocoder);
        steady.finish();
        // An audio stage that produced nothing.
        let silent = run.request("silent");
        silent.stage(2).audio(0, 24_000);
        silent.finish();
    });
    let requests = h.capture().requests();
    let find = |id: &str| requests.iter().find(|r| r.request_id == id).expect(id);
    let speech = &find("speech").stages[0];
    assert_eq!(speech.audio_underrun_ms, Some(100.0));
    assert_eq!(speech.audio_max_gap_ms, Some(100.0));
    let judged: Vec<(u64, bool)> = speech
        .audio_continuity
        .iter()
        .map(|c| (c.threshold_ms, c.ok))
        .collect();
    assert_eq!(judged, [(50, false), (100, true), (250, true)]);
    assert_eq!(find("steady").stages[0].audio_underrun_ms, Some(0.0));
    let silent = &find("silent").stages[0];
    assert_eq!(
        (silent.audio_underrun_ms, silent.audio_skipped),
        (None, Some("no_frames"))
    );
    let summary = &h.capture().summaries()[0];
    assert_eq!(summary.audio_streams, 2);
    assert_eq!(summary.audio_continuity_ok, [(50, 1), (100, 2), (250, 2)]);
    assert_eq!(summary.audio_skipped_requests, 1);
    let json = serde_json::to_value(summary).expect("json");
    assert_eq!(json["audio_continuity_ok_50ms"], 1);
    assert_eq!(json["audio_skipped_requests"], 1);
    let table = summary.to_string();
    assert!(table.contains("| audio_continuity_ok_100ms "), "{table}");
    let record = find("speech").to_string();
    assert!(record.contains("| audio_underrun_ms "), "{record}");
}

/// The live gauges are exact at any instant: requests held open at known points.
#[test]
fn live_gauges_count_the_open_spans_exactly() {
    use omni_metrics::StageInFlight;
    use omni_metrics::stats::EdgeName;
    let h = Harness::new();
    h.run(|| {
        // A: opened, in no stage yet: waiting.
        let a = Request::start("a");
        // B: in stage 0 on replica 1, queued: waiting, and in flight there.
        let b = Request::start("b");
        let b0 = b.stage(0);
        b0.replica(1);
        let b_queue = b0.queue();
        // C: computing on stage 0, replica 0, with a transfer to stage 1 under way.
        let c = Request::start("c");
        let c0 = c.stage(0);
        c0.replica(0);
        let c_transfer = c.transfer(0, 1);
        // D: stage 0 done, stage 1 streamed in two open chunks: one request in flight.
        let d = Request::start("d");
        drop(d.stage(0));
        let d1 = d.stage(1);
        let d1_chunk = d.stage(1);
        // E: stage 0 done, between stages: running, not waiting.
        let e = Request::start("e");
        drop(e.stage(0));
        let e_transfer = e.transfer(0, 1);

        let live = h.handle().live();
        assert_eq!(live.requests_running, 5);
        assert_eq!(live.requests_waiting, 2, "a (no stage yet) and b (queued)");
        let stages: Vec<(u64, Option<u64>, u64)> = live
            .stages_in_flight
            .iter()
            .map(|s: &StageInFlight| (s.stage_id, s.replica_id, s.requests))
            .collect();
        assert_eq!(stages, [(0, Some(0), 1), (0, Some(1), 1), (1, None, 1)]);
        assert_eq!(live.transfers_open, [(EdgeName { from: 0, to: 1 }, 2)]);

        // B's queue ends: B computes, and is no longer waiting.
        drop(b_queue);
        assert_eq!(h.handle().live().requests_waiting, 1);
        drop((b0, c0, c_transfer, d1, d1_chunk, e_transfer));
        let live = h.handle().live();
        assert_eq!((live.requests_running, live.requests_waiting), (5, 1));
        assert!(live.stages_in_flight.is_empty() && live.transfers_open.is_empty());
        for r in [a, b, c, d, e] {
            r.finish();
        }
    });
    assert_eq!(h.handle().live(), omni_metrics::LiveGauges::default());
}

/// Images and pixels per second in a summary, from the stages' `image_num` and
/// `resolution`; absent without images.
#[test]
fn summaries_count_images_and_megapixels_per_second() {
    let h = Harness::new();
    h.run(|| {
        let run = Run::with_id("images");
        for i in 0..2 {
            let request = run.request(&format!("img-{i}"));
            let dit = request.stage(1);
            dit.images(2, "1024x1024");
            h.at(500.0 * (i + 1) as f64);
            drop(dit);
            request.finish();
        }
        drop(run);
        let text = Run::with_id("text");
        drop(text.request("t").stage(0));
    });
    let summaries = h.capture().summaries();
    let images = summaries
        .iter()
        .find(|s| s.scope == "images")
        .expect("images");
    assert_eq!(images.e2e_images, 4);
    assert_close(images.e2e_wall_time_ms, 1000.0, "wall");
    assert_close(images.e2e_images_per_s, 4.0, "4 images in 1 s");
    assert_close(
        images.e2e_megapixels_per_s,
        4.0 * 1_048_576.0 / 1e6,
        "4 x 1024x1024 in 1 s",
    );
    let json = serde_json::to_value(images).expect("json");
    assert_eq!(json["e2e_images"], 4);
    assert!(images.to_string().contains("| e2e_megapixels_per_s "));
    let text = summaries.iter().find(|s| s.scope == "text").expect("text");
    let json = serde_json::to_string(text).expect("json");
    assert!(
        !json.contains("images") && !text.to_string().contains("images"),
        "{json}"
    );
}

/// A summary breaks a stage down by replica where more than one served it: one row each
/// in the Distributions (rows, not columns, so 4 stages of 8 replicas stay as wide as one).
#[test]
fn summaries_break_stages_down_by_replica_where_several_served() {
    let h = Harness::new();
    h.run(|| {
        let run = Run::with_id("replicas");
        for i in 0..32_u64 {
            let request = run.request(&format!("r-{i}"));
            for stage_id in 0..4_u64 {
                let stage = request.stage(stage_id);
                // Stage 3 runs on one replica; the others on 8.
                stage.replica(if stage_id == 3 { 0 } else { i % 8 });
                stage.gen_time_ms(10.0 * (stage_id + 1) as f64 + (i % 8) as f64);
                drop(stage);
            }
            let transfer = request.transfer(0, 1);
            transfer.replicas(i % 2, 0);
            drop(transfer);
            request.finish();
        }
    });
    let summary = &h.capture().summaries()[0];
    let names: Vec<String> = summary
        .distributions
        .iter()
        .map(|(q, _)| q.to_string())
        .collect();
    assert!(
        names.contains(&"stage_0_replica_7_gen_time_ms".to_owned()),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("stage_3_replica")),
        "one replica: {names:?}"
    );
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("stage_") && n.contains("_replica_"))
            .count(),
        24
    );
    assert!(
        names.contains(&"transfer_0->1_replica_1->0_time_ms".to_owned()),
        "{names:?}"
    );
    let replica_5 = summary
        .distributions
        .iter()
        .find(|(q, _)| q.to_string() == "stage_1_replica_5_gen_time_ms")
        .map(|(_, s)| s)
        .expect("replica 5 of stage 1");
    assert_eq!(replica_5.count, 4);
    assert_close(replica_5.mean_ms, 25.0, "20 + 5 ms, four requests");
    let table = summary.to_string();
    let widest = table.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    assert!(widest <= 100, "{widest} columns:\n{table}");
}
