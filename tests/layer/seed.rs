//! The seed's example tables (vLLM-Omni metrics page), reproduced through the real layer.

use crate::support::{Harness, HarnessExt as _, SharedBuf, assert_close, assert_rows, table_under};
use omni_metrics::report::Record;
use omni_metrics::stats::{RequestE2EStats, StageRequestStats};
use tracing::info_span;

/// `request` with its stages' names left out.
fn unnamed(request: &RequestE2EStats) -> RequestE2EStats {
    RequestE2EStats {
        stages: request
            .stages
            .iter()
            .map(|s| StageRequestStats {
                stage_name: None,
                ..s.clone()
            })
            .collect(),
        ..request.clone()
    }
}

/// One Qwen3-Omni request (thinker -> talker -> code2wav) inside an `omni.run`, timed so that
/// every figure of the seed's tables comes out. Raw spans, as an `#[instrument]`ed engine
/// writes them. The gaps between a stage's chunks make its wall time exceed its compute.
pub(crate) fn seed_scenario(h: &Harness) {
    h.run(|| {
        h.at(0.0);
        let run = info_span!("omni.run", run_id = "run-3");
        h.at(0.057);
        let req = info_span!(parent: &run, "omni.request", request_id = "r-17");

        // Stage 0, thinker: two chunks 26.124 ms apart; post-processing at the end.
        h.at(1.0);
        let s = info_span!(parent: &req, "omni.stage", stage_id = 0, stage_name = "thinker",
            batch_id = 38, batch_size = 1, num_tokens_in = 4860, num_tokens_out = 60);
        h.at(9001.0);
        drop(s);
        h.at(9027.124);
        let s = info_span!(parent: &req, "omni.stage", stage_id = 0, num_tokens_out = 7);
        h.at(9937.131);
        let pp = info_span!(parent: &s, "omni.postprocess");
        h.at(10193.289);
        drop(pp);
        drop(s);

        // Edge 0->1. Sub-microsecond times: the seed's table rounds unrounded values.
        transfer(
            h,
            &req,
            (0, 1),
            111_900_005,
            10193.289,
            [78.7008, 2.0148, 111.8648],
        );

        // Stage 1, talker.
        h.at(10386.0);
        let s = info_span!(parent: &req, "omni.stage", stage_id = 1, stage_name = "talker",
            batch_id = 274, batch_size = 1, num_tokens_in = 4826, num_tokens_out = 200);
        h.at(30386.0);
        drop(s);
        h.at(30547.72);
        let s = info_span!(parent: &req, "omni.stage", stage_id = 1, num_tokens_out = 75);
        h.at(40926.918);
        let pp = info_span!(parent: &s, "omni.postprocess");
        h.at(40927.409);
        drop(pp);
        drop(s);

        // Edge 1->2.
        transfer(
            h,
            &req,
            (1, 2),
            29_504_093,
            40927.409,
            [18.7898, 2.8188, 31.7058],
        );

        // Stage 2, code2wav: audio out, no tokens out.
        h.at(41000.0);
        let s = info_span!(parent: &req, "omni.stage", stage_id = 2, stage_name = "code2wav",
            batch_id = 0, batch_size = 1, num_tokens_in = 4384, num_tokens_out = 0,
            audio_generated_frames = 300_000);
        h.at(41100.0);
        drop(s);
        h.at(41146.751);
        let s =
            info_span!(parent: &req, "omni.stage", stage_id = 2, audio_generated_frames = 225_525);
        h.at(41207.496);
        drop(s);

        h.at(41299.19);
        drop(req);
        h.at(41300.0);
        drop(run);
    });
}

/// One transfer starting at `start` ms: tx, then the in-flight gap, then rx_decode, in ms.
fn transfer(
    h: &Harness,
    request: &tracing::Span,
    (from, to): (u64, u64),
    bytes: u64,
    start: f64,
    [tx_ms, gap_ms, rx_ms]: [f64; 3],
) {
    let t = info_span!(parent: request, "omni.transfer", from_stage = from, to_stage = to,
        size_bytes = bytes);
    let tx = info_span!(parent: &t, "omni.transfer.tx");
    h.at(start + tx_ms);
    drop(tx);
    h.at(start + tx_ms + gap_ms);
    let rx = info_span!(parent: &t, "omni.transfer.rx_decode");
    h.at(start + tx_ms + gap_ms + rx_ms);
    drop(rx);
}

#[test]
fn seed_tables_are_reproduced_exactly() {
    let h = Harness::new();
    seed_scenario(&h);
    let summaries = h.capture().summaries();
    let requests = h.capture().requests();
    assert_eq!((summaries.len(), requests.len()), (1, 1));
    assert_eq!(h.handle().totals().invalid_spans, 0);

    assert_rows(
        &table_under(&summaries[0].to_string(), "Overall Summary"),
        &[
            &["Field", "Value"],
            &["e2e_requests", "1"],
            &["e2e_wall_time_ms", "41,299.190"],
            &["e2e_total_tokens", "5,202"],
            &["e2e_avg_time_per_request_ms", "41,299.190"],
            &["e2e_avg_tokens_per_s", "125.959"],
            &["e2e_stage_0_wall_time_ms", "10,192.289"],
            &["e2e_stage_1_wall_time_ms", "30,541.409"],
            &["e2e_stage_2_wall_time_ms", "207.496"],
        ],
    );
    // The seed's table shows 245.895: the sum of the unrounded edge times. Its rounded
    // inputs add up to 245.896, as the seed itself explains; our computation gives 245.895.
    assert_rows(
        &table_under(&requests[0].to_string(), "RequestE2EStats"),
        &[
            &["Field", "Value"],
            &["e2e_total_ms", "41,299.133"],
            &["e2e_total_tokens", "5,202"],
            &["transfers_total_time_ms", "245.895"],
            &["transfers_total_kbytes", "138,089.939"],
        ],
    );
    assert_rows(
        // vLLM-Omni's table heads its columns with ids only: the stages without their names.
        &table_under(&unnamed(&requests[0]).to_string(), "StageRequestStats"),
        &[
            &["Field", "0", "1", "2"],
            &["audio_generated_frames", "0", "0", "525,525"],
            &["batch_id", "38", "274", "0"],
            &["batch_size", "1", "1", "1"],
            &["num_tokens_in", "4,860", "4,826", "4,384"],
            &["num_tokens_out", "67", "275", "0"],
            &["postprocess_time_ms", "256.158", "0.491", "0.000"],
            &["stage_gen_time_ms", "9,910.007", "30,379.198", "160.745"],
        ],
    );
    assert_rows(
        &table_under(&requests[0].to_string(), "TransferEdgeStats"),
        &[
            &["Field", "0->1", "1->2"],
            &["size_kbytes", "109,277.349", "28,812.591"],
            &["tx_time_ms", "78.701", "18.790"],
            &["rx_decode_time_ms", "111.865", "31.706"],
            &["in_flight_time_ms", "2.015", "2.819"],
        ],
    );
}

#[test]
fn seed_identities_hold_on_unrounded_values() {
    let h = Harness::new();
    seed_scenario(&h);
    let r = &h.capture().requests()[0];
    let stage0_in = r.stage(0).map_or(0, |s| s.num_tokens_in);
    let outs: u64 = r.stages.iter().map(|s| s.num_tokens_out).sum();
    assert_eq!(r.e2e_total_tokens, stage0_in + outs);
    assert_eq!(r.e2e_total_tokens, 5202);
    let sum: f64 = r
        .transfers
        .iter()
        .map(|e| e.tx_time_ms + e.rx_decode_time_ms + e.in_flight_time_ms)
        .sum();
    assert_close(r.transfers_total_time_ms, sum, "transfers_total_time_ms");
    assert_close(r.transfers_total_time_ms, 245.8948, "unrounded total");
}

#[test]
fn seed_records_are_the_spec_json_lines() {
    let h = Harness::new();
    seed_scenario(&h);
    let records = h.capture().records();
    // Requests go out as they finish, the run's summary when it closes.
    let lines: Vec<serde_json::Value> = records
        .iter()
        .map(|r| serde_json::from_str(&r.to_json_line()).expect("each record is one JSON object"))
        .collect();
    assert!(matches!(records[0], Record::Request(_)));
    let req = &lines[0];
    assert_eq!(req["type"], "request");
    assert_eq!(req["request_id"], "r-17");
    assert_eq!(req["status"], "ok");
    assert_eq!(req["scope"], "run-3");
    assert_eq!(req["e2e_total_tokens"], 5202);
    assert_eq!(req["stages"][0]["stage_name"], "thinker");
    assert_eq!(req["stages"][0]["batch_id"], 38);
    assert_eq!(req["stages"][0]["num_tokens_in"], 4860);
    assert_eq!(req["stages"][2]["audio_generated_frames"], 525_525);
    assert_eq!(req["transfers"][0]["edge"], "0->1");
    assert_eq!(req["transfers"][1]["from_stage"], 1);
    let kb = req["transfers"][0]["size_kbytes"]
        .as_f64()
        .unwrap_or_default();
    assert_close(kb, 111_900_005.0 / 1024.0, "size_kbytes unrounded");

    let sum = &lines[1];
    assert_eq!(sum["type"], "summary");
    assert_eq!(sum["scope"], "run-3");
    assert_eq!(sum["e2e_requests"], 1);
    assert_eq!(sum["e2e_total_tokens"], 5202);
    let keys: Vec<&str> = sum
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    for key in [
        "e2e_wall_time_ms",
        "e2e_avg_time_per_request_ms",
        "e2e_avg_tokens_per_s",
        "e2e_stage_0_wall_time_ms",
        "e2e_stage_1_wall_time_ms",
        "e2e_stage_2_wall_time_ms",
    ] {
        assert!(keys.contains(&key), "summary record lacks {key}: {keys:?}");
    }
    assert_close(
        sum["e2e_avg_tokens_per_s"].as_f64().unwrap_or_default(),
        5202.0 * 1000.0 / 41299.19,
        "e2e_avg_tokens_per_s",
    );
}

/// The README shows the seed's console output, and the `report` module's reference
/// (`docs/reference/report.md`) its records; they must be what the layer produces.
#[test]
fn readme_shows_the_real_seed_output() {
    let console = SharedBuf::default();
    let h = Harness::with(|b| b.with_console(omni_metrics::Destination::writer(console.clone())));
    seed_scenario(&h);
    h.handle()
        .flush(std::time::Duration::from_secs(10))
        .expect("the console is written");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md is at the crate root");
    let records_doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/reference/report.md"
    ))
    .expect("docs/reference/report.md shows the records");
    for record in h.capture().records() {
        let line = record.to_json_line();
        assert!(
            records_doc.lines().any(|l| l == line),
            "docs/reference/report.md lacks this exact record line:\n{line}"
        );
    }
    // The four tables as the console prints them: the request's three, then the run's
    // summary when the run closes.
    let printed = console.text();
    assert!(
        readme.contains(printed.trim_end()),
        "README lacks the console output:\n{printed}"
    );
}
