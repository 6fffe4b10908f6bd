//! Output events (issue 9, item 1): `omni.output` events give each stage's
//! `time_to_first_output_ms`, `inter_output_ms` and `output_chunks`, and each request's
//! `time_to_first_output_ms` and `time_to_first_audio_ms`; the audio figures
//! (`audio_duration_ms`, `audio_rtf`, `audio_e2e_rtf`) follow from the stage fields. Typed
//! API, raw events and explicit fields; table rows, record keys and distributions.

#[allow(dead_code, unused_imports)]
#[path = "../support/distributions.rs"]
mod support;

use omni_metrics::instrument::{Request, Run};
use omni_metrics::stats::MAX_OUTPUT_GAPS;
use omni_metrics::stats::Quantity;
use support::{Harness, section};
use tracing::Level;

fn ms(h: &Harness, ms: u64) {
    h.clock().advance_ns(ms * 1_000_000);
}

fn approx(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

/// A speech request on the typed API: a talker streaming 3 chunks, then code2wav streaming
/// 2 chunks of 24 kHz audio (2 s of it).
fn speech(h: &Harness, run: Option<&Run>, id: &str) {
    let request = match run {
        Some(run) => run.request(id),
        None => Request::start(id),
    };
    ms(h, 1);
    let talker = request.stage(1);
    talker.name("talker").tokens_out(10);
    ms(h, 10);
    talker.output(3); // 10 ms after the stage's start
    ms(h, 5);
    talker.output(3);
    ms(h, 10);
    talker.output(4);
    ms(h, 4);
    drop(talker); // t = 30
    ms(h, 10);
    let code2wav = request.stage(2);
    code2wav.name("code2wav").audio(48_000, 24_000);
    ms(h, 5);
    code2wav.output(24_000); // t = 45: the first audio
    ms(h, 5);
    code2wav.output(24_000);
    ms(h, 10);
    drop(code2wav); // t = 60
    ms(h, 10);
    request.finish(); // t = 70
}

#[test]
fn typed_outputs_give_first_output_gaps_and_audio_figures() {
    let h = Harness::new();
    h.run(|| speech(&h, None, "r-1"));
    let requests = h.capture().requests();
    let [r] = requests.as_slice() else {
        panic!("one request: {requests:?}")
    };
    let talker = r.stage(1).expect("talker");
    assert_eq!(talker.output_chunks, 3);
    assert_eq!(talker.output_units, 10);
    assert!(approx(talker.time_to_first_output_ms, 10.0), "{talker:?}");
    assert!(approx(talker.inter_output_ms, 7.5), "{talker:?}");
    assert_eq!(talker.inter_output_gaps_ms, [5.0, 10.0]);
    assert_eq!(talker.audio_duration_ms, None);
    assert_eq!(talker.audio_rtf, None);

    let code2wav = r.stage(2).expect("code2wav");
    assert_eq!(code2wav.output_chunks, 2);
    assert!(approx(code2wav.time_to_first_output_ms, 5.0));
    assert!(approx(code2wav.inter_output_ms, 5.0));
    assert!(approx(code2wav.audio_duration_ms, 2_000.0));
    // stage_gen_time_ms / audio_duration_ms = 20 / 2000
    assert!(approx(code2wav.audio_rtf, 0.01), "{code2wav:?}");

    // The last stage's first output and the first audio stage's, from the request's start.
    assert!(approx(r.time_to_first_output_ms, 45.0), "{r:?}");
    assert!(approx(r.time_to_first_audio_ms, 45.0));
    assert!(approx(r.audio_duration_ms, 2_000.0));
    // e2e_total_ms / audio_duration_ms = 70 / 2000
    assert!(approx(r.audio_e2e_rtf, 0.035));
}

#[test]
fn raw_events_count_from_the_stage_its_children_and_an_explicit_parent() {
    let h = Harness::new();
    h.run(|| {
        let request = tracing::info_span!("omni.request", request_id = "r-raw");
        let stage = tracing::info_span!(parent: &request, "omni.stage", stage_id = 0);
        ms(&h, 2);
        stage.in_scope(|| tracing::info!(name: "omni.output", units = 5));
        ms(&h, 3);
        {
            // Inside a postprocess child: the nearest enclosing stage counts it.
            let post = tracing::info_span!(parent: &stage, "omni.postprocess");
            post.in_scope(|| tracing::event!(name: "omni.output", Level::DEBUG, units = 2u64));
        }
        ms(&h, 4);
        tracing::event!(name: "omni.output", parent: &stage, Level::INFO, units = 1);
        drop(stage);
        drop(request);
    });
    let requests = h.capture().requests();
    let s = requests[0].stage(0).expect("stage 0");
    assert_eq!((s.output_chunks, s.output_units), (3, 8));
    assert!(approx(s.time_to_first_output_ms, 2.0));
    assert_eq!(s.inter_output_gaps_ms, [3.0, 4.0]);
    assert_eq!(h.handle().totals().invalid_spans, 0);
}

#[test]
fn explicit_fields_win_over_events() {
    let h = Harness::new();
    h.run(|| {
        let request = Request::start("r-explicit");
        let stage = request.stage(0);
        ms(&h, 2);
        stage.output(1);
        ms(&h, 2);
        stage.output(1);
        // Measured in the stage's own process.
        stage.first_output_ms(12.5).inter_output_ms(0.75);
        drop(stage);
        request.finish();
    });
    let requests = h.capture().requests();
    let s = requests[0].stage(0).expect("stage 0");
    assert!(approx(s.time_to_first_output_ms, 12.5));
    assert!(approx(s.inter_output_ms, 0.75));
    assert_eq!(s.output_chunks, 2, "the events are still counted");
}

#[test]
fn a_stage_streamed_as_several_spans_counts_the_gap_between_them() {
    let h = Harness::new();
    h.run(|| {
        let request = Request::start("r-chunks");
        for _ in 0..3 {
            let chunk = request.stage(0);
            ms(&h, 1);
            chunk.output(2);
            ms(&h, 1);
            drop(chunk);
        }
        request.finish();
    });
    let requests = h.capture().requests();
    let s = requests[0].stage(0).expect("stage 0");
    assert_eq!(s.spans, 3);
    assert_eq!((s.output_chunks, s.output_units), (3, 6));
    assert!(approx(s.time_to_first_output_ms, 1.0));
    assert_eq!(s.inter_output_gaps_ms, [2.0, 2.0]);
}

/// Chunks that overlap in time: the gaps are between the stage's outputs in time order
/// across its chunks. A [0, 10] ms with outputs at 1 and 5, B [2, 12] with outputs at 3
/// and 7: outputs 1, 3, 5, 7, so every gap is 2 ms.
#[test]
fn overlapping_chunks_interleave_their_outputs_in_time_order() {
    let h = Harness::new();
    h.run(|| {
        let request = Request::start("r-overlap");
        let a = request.stage(0);
        ms(&h, 1);
        a.output(1); // 1
        ms(&h, 1);
        let b = request.stage(0); // 2
        ms(&h, 1);
        b.output(1); // 3
        ms(&h, 2);
        a.output(1); // 5
        ms(&h, 2);
        b.output(1); // 7
        ms(&h, 3);
        drop(a); // 10
        ms(&h, 2);
        drop(b); // 12
        request.finish();
    });
    let requests = h.capture().requests();
    let s = requests[0].stage(0).expect("stage 0");
    assert_eq!((s.spans, s.output_chunks), (2, 4));
    assert!(approx(s.inter_output_ms, 2.0), "{:?}", s.inter_output_ms);
    assert_eq!(s.inter_output_gaps_ms, [2.0, 2.0, 2.0]);
    assert!(approx(s.time_to_first_output_ms, 1.0));
}

#[test]
fn a_long_stream_keeps_a_bounded_gap_list_and_an_exact_mean() {
    let h = Harness::new();
    let chunks = MAX_OUTPUT_GAPS as u64 + 1_000;
    h.run(|| {
        let request = Request::start("r-long");
        let stage = request.stage(0);
        for i in 0..chunks {
            h.clock().advance_ns(1_000_000 + (i % 2) * 1_000_000); // 1 ms, 2 ms, 1 ms, ...
            stage.output(1);
        }
        drop(stage);
        request.finish();
    });
    let requests = h.capture().requests();
    let s = requests[0].stage(0).expect("stage 0");
    assert_eq!(s.output_chunks, chunks);
    assert_eq!(s.inter_output_gaps_ms.len(), MAX_OUTPUT_GAPS);
    let gaps = chunks - 1;
    let expected = (gaps / 2 * 3 + gaps % 2 * 2) as f64 / gaps as f64;
    assert!(
        approx(s.inter_output_ms, expected),
        "{:?}",
        s.inter_output_ms
    );
}

#[test]
fn an_output_outside_a_stage_is_counted_and_said_not_a_panic() {
    let h = Harness::new();
    h.run(|| {
        let request = Request::start("r-stray");
        request
            .span()
            .in_scope(|| tracing::info!(name: "omni.output", units = 1));
        tracing::info!(name: "omni.output", units = 1);
        let stage = request.stage(0);
        stage
            .span()
            .in_scope(|| tracing::info!(name: "omni.output", units = -4));
        drop(stage);
        request.finish();
    });
    assert_eq!(h.handle().totals().invalid_spans, 3);
    let requests = h.capture().requests();
    let s = requests[0].stage(0).expect("stage 0");
    // A negative unit count is ignored, the chunk is still one.
    assert_eq!((s.output_chunks, s.output_units), (1, 0));
}

#[test]
fn rows_and_record_keys_appear_when_measured() {
    let h = Harness::with_sinks();
    h.run(|| speech(&h, None, "r-1"));
    let console = h.console();
    let request = section(&console, "RequestE2EStats").expect("request table");
    for row in [
        "| time_to_first_output_ms |    45.000 |",
        "| time_to_first_audio_ms  |    45.000 |",
        "| audio_duration_ms       | 2,000.000 |",
        "| audio_e2e_rtf           |     0.035 |",
    ] {
        assert!(request.contains(row), "{row} in\n{request}");
    }
    let stages = section(&console, "StageRequestStats").expect("stage table");
    for row in [
        "| output_chunks           |        3 |          2 |",
        "| time_to_first_output_ms |   10.000 |      5.000 |",
        "| inter_output_ms         |    7.500 |      5.000 |",
        "| audio_duration_ms       |          |  2,000.000 |",
        "| audio_rtf               |          |      0.010 |",
    ] {
        assert!(stages.contains(row), "{row} in\n{stages}");
    }
    let jsonl = h.jsonl();
    let record: serde_json::Value = jsonl
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v: &serde_json::Value| v["type"] == "request")
        .expect("a request record");
    assert_eq!(record["time_to_first_output_ms"], 45.0);
    assert_eq!(record["time_to_first_audio_ms"], 45.0);
    assert_eq!(record["audio_e2e_rtf"], 0.035);
    assert_eq!(record["stages"][0]["output_chunks"], 3);
    assert_eq!(record["stages"][0]["inter_output_ms"], 7.5);
    assert_eq!(record["stages"][1]["audio_rtf"], 0.01);
    assert!(record["stages"][0].get("inter_output_gaps_ms").is_none());
}

#[test]
fn no_outputs_no_new_rows_or_keys() {
    let h = Harness::with_sinks();
    h.run(|| {
        let request = Request::start("r-plain");
        let stage = request.stage(0);
        ms(&h, 3);
        drop(stage);
        request.finish();
    });
    let console = h.console();
    for label in ["time_to_first", "inter_output", "output_chunks", "audio_"] {
        assert!(!console.contains(label), "{label} in\n{console}");
    }
    let jsonl = h.jsonl();
    for key in [
        "time_to_first",
        "inter_output",
        "output_chunks",
        "audio_rtf",
        "trace_id",
    ] {
        assert!(!jsonl.contains(key), "{key} in {jsonl}");
    }
}

#[test]
fn a_run_summarizes_first_output_and_gaps_in_its_distributions() {
    let h = Harness::with_sinks();
    h.run(|| {
        let run = Run::with_id("speech");
        for i in 0..4 {
            speech(&h, Some(&run), &format!("r-{i}"));
        }
        drop(run);
    });
    let summaries = h.capture().summaries();
    let d = &summaries[0].distributions;
    assert_eq!(d.get(Quantity::RequestFirstAudio).map(|s| s.count), Some(4));
    assert_eq!(
        d.get(Quantity::RequestFirstOutput).map(|s| s.p50_ms),
        Some(45.0)
    );
    assert_eq!(
        d.get(Quantity::StageFirstOutput(1)).map(|s| s.max_ms),
        Some(10.0)
    );
    // One value per gap: 2 per talker, 1 per code2wav, in each of 4 requests.
    assert_eq!(
        d.get(Quantity::StageInterOutput(1)).map(|s| s.count),
        Some(8)
    );
    assert_eq!(
        d.get(Quantity::StageInterOutput(2)).map(|s| s.count),
        Some(4)
    );
    let console = h.console();
    let table = section(&console, "Distributions").expect("distributions table");
    assert!(table.contains("| time_to_first_audio_ms "), "{table}");
    assert!(table.contains("| stage_1_inter_output_ms "), "{table}");
}
