//! Item 18: the console's table layout.

use omni_metrics::OmniMetricsLayer;
use omni_metrics::instrument::Request;
use omni_metrics::testing::CaptureSink;
use tracing_subscriber::prelude::*;

use crate::support::{seed_like_request, written};

fn console_output(requests: impl FnOnce()) -> String {
    written(
        |buf| OmniMetricsLayer::builder().with_console(omni_metrics::Destination::writer(buf)),
        requests,
    )
}

fn captured(requests: impl FnOnce()) -> CaptureSink {
    let capture = CaptureSink::new();
    let layer = OmniMetricsLayer::builder()
        .with_console(false)
        .with_sink(capture.clone())
        .build()
        .expect("no file");
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, requests);
    capture
}

#[test]
fn issue6_18_a_blank_line_separates_consecutive_tables() {
    let out = console_output(|| {
        seed_like_request("a");
        seed_like_request("b");
    });
    let titles = [
        "Overall Summary",
        "RequestE2EStats",
        "StageRequestStats",
        "TransferEdgeStats",
    ];
    let lines: Vec<&str> = out.lines().collect();
    let mut seen = 0;
    for (i, line) in lines.iter().enumerate() {
        if titles.iter().any(|t| line.starts_with(t)) {
            seen += 1;
            if i > 0 {
                assert_eq!(lines[i - 1], "", "no blank line before {line:?}:\n{out}");
            }
        }
    }
    assert_eq!(seen, 8, "{out}");
    assert!(
        out.ends_with("|\n\n"),
        "a report ends with a blank line: {out:?}"
    );
}

#[test]
fn issue6_18_stage_columns_are_headed_with_their_names() {
    let capture = captured(|| {
        let request = Request::start("named");
        request.stage(0).name("thinker").tokens_in(1);
        request.stage(1).tokens_in(1);
        request.finish();
    });
    let out = capture.requests()[0].to_string();
    let header = out
        .lines()
        .skip_while(|l| !l.starts_with("StageRequestStats"))
        .nth(1)
        .expect("the stage table's header");
    let cells: Vec<&str> = header.trim_matches('|').split('|').map(str::trim).collect();
    assert_eq!(cells, ["Field", "0 thinker", "1"], "{out}");
}

fn has_batch_row(out: &str) -> bool {
    out.lines().any(|l| l.starts_with("| batch_id "))
}

#[test]
fn issue6_18_batch_id_row_shown_when_every_stage_ran_in_batch_0() {
    let capture = captured(|| {
        let request = Request::start("batch-zero");
        request.stage(0).batch(0, 4).tokens_in(1);
        request.stage(1).batch(0, 4).tokens_in(1);
        request.finish();
        let request = Request::start("no-batch");
        request.stage(0).tokens_in(1);
        request.finish();
        let request = Request::start("one-batched");
        request.stage(0).tokens_in(1);
        request.stage(1).batch(0, 1).tokens_in(1);
        request.finish();
    });
    let requests = capture.requests();
    let zero = requests[0].to_string();
    assert!(has_batch_row(&zero), "batch 0 is a batch:\n{zero}");
    assert!(zero.contains("| batch_id "), "{zero}");
    let none = requests[1].to_string();
    assert!(!has_batch_row(&none), "no stage recorded a batch:\n{none}");
    let one = requests[2].to_string();
    let row = one
        .lines()
        .find(|l| l.starts_with("| batch_id "))
        .expect("a stage recorded batch 0");
    let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
    assert_eq!(
        cells,
        ["batch_id", "", "0"],
        "unrecorded is blank, not 0:\n{one}"
    );
    // The records are unchanged: batch_id stays a number, no new key.
    let line = omni_metrics::report::Record::Request(requests[1].clone()).to_json_line();
    assert!(line.contains(r#""batch_id":0,"#), "{line}");
    assert!(!line.contains("batch_recorded"), "{line}");
}
