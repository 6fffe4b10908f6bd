//! Inputs written by hand: spans of another SDK that follow the convention, corrupt lines,
//! files that cannot be read, explicit times.

use serde_json::json;

use super::*;

const TRACE_A: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACE_B: &str = "0af7651916cd43dd8448eb211c80319c";

/// A request as another SDK exports it: the convention's names and attributes, no
/// annotations, a failed status on a second request. Times in ms (from an origin).
fn other_sdk_lines() -> Vec<String> {
    let a = vec![
        span_json(
            TRACE_A,
            1,
            None,
            "omni.request",
            0.0,
            100.0,
            &[("request_id", json!("py-1"))],
            &[],
        ),
        span_json(
            TRACE_A,
            2,
            Some(1),
            "omni.stage",
            10.0,
            60.0,
            &[
                ("stage_id", json!(0)),
                ("stage_name", json!("thinker")),
                ("num_tokens_in", json!(40)),
                ("num_tokens_out", json!(9)),
                ("gen_ai.request.model", json!("qwen3-omni")),
            ],
            &[
                ("omni.output", 25.0, Some(4)),
                ("omni.output", 35.0, Some(5)),
                ("log", 36.0, None),
            ],
        ),
        span_json(TRACE_A, 3, Some(2), "omni.queue", 10.0, 20.0, &[], &[]),
        span_json(
            TRACE_A,
            4,
            Some(1),
            "omni.transfer",
            60.0,
            70.0,
            &[
                ("from_stage", json!(0)),
                ("to_stage", json!(1)),
                ("size_bytes", json!(10240)),
            ],
            &[],
        ),
        span_json(
            TRACE_A,
            5,
            Some(4),
            "omni.transfer.tx",
            60.0,
            62.0,
            &[],
            &[],
        ),
        span_json(
            TRACE_A,
            6,
            Some(4),
            "omni.transfer.rx_decode",
            65.0,
            69.0,
            &[],
            &[],
        ),
        // An engine span of its own between the request and a stage.
        span_json(
            TRACE_A,
            7,
            Some(1),
            "worker.step",
            70.0,
            96.0,
            &[("stage_id", json!(5))],
            &[],
        ),
        span_json(
            TRACE_A,
            8,
            Some(7),
            "omni.stage",
            70.0,
            95.0,
            &[
                ("stage_id", json!(1)),
                ("num_tokens_in", json!(9)),
                ("num_tokens_out", json!(30)),
            ],
            &[],
        ),
        span_json(
            TRACE_A,
            9,
            Some(8),
            "omni.postprocess",
            90.0,
            95.0,
            &[],
            &[],
        ),
    ];
    let mut failed = span_json(
        TRACE_B,
        1,
        None,
        "omni.request",
        200.0,
        210.0,
        &[("request_id", json!("py-2"))],
        &[],
    );
    failed["status"] = json!({"code": 2, "message": "CUDA out of memory"});
    vec![
        line_of("python-engine", a),
        line_of("python-engine", vec![failed]),
    ]
}

fn write(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").expect("write");
    path
}

#[track_caller]
fn close(actual: &Value, expected: f64) {
    let v = actual.as_f64().unwrap_or(f64::NAN);
    assert!((v - expected).abs() < 1e-6, "{v} != {expected}");
}

#[test]
fn spans_of_another_sdk_following_the_convention_are_read() {
    let dir = test_dir("other-sdk");
    let file = write(&dir, "python.json", &other_sdk_lines());
    let (stdout, stderr) = report_ok([Path::new("--format"), Path::new("jsonl"), &file]);
    let r = requests(&records(&stdout));
    let py = &r["py-1"];
    assert_eq!(py["status"], "ok", "{stderr}");
    close(&py["e2e_total_ms"], 100.0);
    assert_eq!(py["e2e_total_tokens"], 40 + 9 + 30);
    assert_eq!(py["invalid_spans"], 0);
    assert_eq!(py["trace_id"], TRACE_A);
    let thinker = &py["stages"][0];
    assert_eq!(thinker["stage_name"], "thinker");
    close(&thinker["stage_gen_time_ms"], 40.0); // 50 ms minus 10 ms of queue
    close(&thinker["queue_time_ms"], 10.0);
    close(&thinker["time_to_first_output_ms"], 15.0);
    close(&thinker["inter_output_ms"], 10.0);
    assert_eq!(thinker["output_chunks"], 2);
    assert_eq!(thinker["output_units"], 9);
    let talker = &py["stages"][1];
    assert_eq!(
        talker["stage_id"], 1,
        "the stage under the engine's own span"
    );
    close(&talker["stage_gen_time_ms"], 20.0);
    close(&talker["postprocess_time_ms"], 5.0);
    let edge = &py["transfers"][0];
    close(&edge["size_kbytes"], 10.0);
    close(&edge["tx_time_ms"], 2.0);
    close(&edge["rx_decode_time_ms"], 4.0);
    close(&edge["in_flight_time_ms"], 3.0);
    close(&py["transfers_total_time_ms"], 9.0);
    // A failed status without a `status` attribute: the request failed.
    assert_eq!(r["py-2"]["status"], "error");
    assert_eq!(r["py-2"]["status_message"], "CUDA out of memory");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Explicit times on exported spans: the layer's own annotations (equal to what the
/// children give) are not subtracted again; a time measured elsewhere wins, as live.
#[test]
fn explicit_times_win_and_annotations_do_not_double_count() {
    let dir = test_dir("explicit");
    let stage = |id: u64, trace: &str, name: &str, attributes: &[(&str, Value)]| {
        let mut attrs = vec![("stage_id", json!(0))];
        attrs.extend(attributes.iter().cloned());
        vec![
            span_json(
                trace,
                1,
                None,
                "omni.request",
                0.0,
                100.0,
                &[("request_id", json!(format!("e-{id}")))],
                &[],
            ),
            span_json(trace, 2, Some(1), name, 0.0, 100.0, &attrs, &[]),
            span_json(trace, 3, Some(2), "omni.queue", 0.0, 30.0, &[], &[]),
            span_json(trace, 4, Some(2), "omni.postprocess", 80.0, 100.0, &[], &[]),
        ]
    };
    let lines = vec![
        // Measured from the children: 100 - 30 - 20.
        line_of("a", stage(1, TRACE_A, "omni.stage", &[])),
        // As the layer exports it: named, with its figures.
        line_of(
            "a",
            stage(
                2,
                TRACE_B,
                "stage 0 thinker",
                &[
                    ("stage_gen_time_ms", json!(50.0)),
                    ("postprocess_time_ms", json!(20.0)),
                    ("queue_time_ms", json!(30.0)),
                ],
            ),
        ),
        // Measured in another process, given as a field.
        line_of(
            "a",
            stage(
                3,
                "11111111111111111111111111111111",
                "omni.stage",
                &[("stage_gen_time_ms", json!(7.5))],
            ),
        ),
    ];
    let file = write(&dir, "explicit.json", &lines);
    let (stdout, _) = report_ok([Path::new("--format"), Path::new("jsonl"), &file]);
    let r = requests(&records(&stdout));
    for id in ["e-1", "e-2"] {
        close(&r[id]["stages"][0]["stage_gen_time_ms"], 50.0);
        close(&r[id]["stages"][0]["postprocess_time_ms"], 20.0);
        close(&r[id]["stages"][0]["queue_time_ms"], 30.0);
    }
    close(&r["e-3"]["stages"][0]["stage_gen_time_ms"], 7.5);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn corrupt_lines_are_named_and_the_rest_is_read() {
    let dir = test_dir("corrupt");
    let good = other_sdk_lines();
    let lines = vec![
        good[0].clone(),
        "this is not json".to_owned(),
        good[1].clone(),
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz"}]}]}]}"#.to_owned(),
        good[0][..good[0].len() / 2].to_owned(), // a line cut short
    ];
    let file = write(&dir, "records.json", &lines);
    let missing = dir.join("missing.json");
    let out = report([Path::new("--format"), Path::new("jsonl"), &file, &missing]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "something was read: {stderr}");
    let name = file.display().to_string();
    for line in [2, 5] {
        assert!(
            stderr.contains(&format!("{name}:{line}: not OTLP JSON: ")),
            "line {line}:\n{stderr}"
        );
    }
    // A span that cannot be read spoils only itself: its line is read.
    assert!(
        stderr.contains(&format!(
            "{name}:4: a span left out: not an OTLP span: a trace id of \"xyz\" (an odd \
             number of hex digits); the record's other spans are read"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 record had spans that could not be read"),
        "{stderr}"
    );
    assert!(!stderr.contains(&format!("{name}:1:")), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: cannot open: ", missing.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 lines and 1 record or file could not be read"),
        "{stderr}"
    );
    let r = requests(&records(&stdout));
    assert_eq!(r.keys().collect::<Vec<_>>(), ["py-1", "py-2"]);
    assert_eq!(r["py-1"]["stages"].as_array().map(Vec::len), Some(2));

    // Nothing readable at all: a failure, said.
    let garbage = write(&dir, "garbage.json", &["nope".to_owned(), "{".to_owned()]);
    let out = report([&garbage]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("nothing could be read: 2 lines could not be read"),
        "{stderr}"
    );
    // Binary junk: one error, never a panic.
    let junk = dir.join("junk.pb");
    std::fs::write(
        &junk,
        [0x00, 0x00, 0x00, 0x05, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00],
    )
    .expect("junk");
    let out = report([&junk]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(": record 1 (byte 0): not OTLP protobuf"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_lists_the_options() {
    let out = Command::new(env!("CARGO_BIN_EXE_omni-metrics"))
        .args(["report", "--help"])
        .output()
        .expect("runs");
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--format",
        "--group-by",
        "--input-format",
        "--summary-only",
        "table",
        "jsonl",
        "all",
    ] {
        assert!(help.contains(option), "{option}:\n{help}");
    }
}

/// One line of spans whose resource names its host and process (issue 24, item 5).
fn line_at(host: Option<&str>, instance: Option<&str>, spans: Vec<Value>) -> String {
    let mut attributes = vec![json!({"key": "service.name", "value": {"stringValue": "engine"}})];
    for (key, value) in [("host.name", host), ("service.instance.id", instance)] {
        if let Some(v) = value {
            attributes.push(json!({"key": key, "value": {"stringValue": v}}));
        }
    }
    json!({"resourceSpans": [{
        "resource": {"attributes": attributes},
        "scopeSpans": [{"scope": {"name": "omni"}, "spans": spans}]
    }]})
    .to_string()
}

/// The live records of one request on a manual clock: a thinker (1 to 14 ms) with a queue
/// child, two outputs and a post-processing child (10 to 14 ms), a transfer, a talker (17 to
/// 25 ms) post-processing from 22 ms.
fn one_clock_live() -> Vec<Value> {
    use omni_metrics::instrument::Request;
    use omni_metrics::report::Record;
    use omni_metrics::testing::Harness;
    let h = Harness::new();
    let at = |ms: u64| h.clock().set_ns(1_000_000_000 + ms * 1_000_000);
    h.run(|| {
        at(0);
        let request = Request::start("c-1");
        at(1);
        let thinker = request.stage(0);
        thinker.name("thinker").tokens_in(10);
        let queue = thinker.queue();
        at(3);
        drop(queue);
        at(6);
        thinker.output(4);
        at(8);
        thinker.output(4).tokens_out(8);
        at(10);
        let post = thinker.postprocess();
        at(14);
        drop(post);
        drop(thinker);
        let t = request.transfer(0, 1);
        t.size_bytes(1024);
        let tx = t.tx();
        at(15);
        drop(tx);
        at(16);
        let rx = t.rx_decode();
        at(17);
        drop(rx);
        drop(t);
        let talker = request.stage(1);
        talker.name("talker").tokens_in(8);
        at(20);
        talker.output(16).tokens_out(16);
        at(22);
        let post = talker.postprocess();
        at(25);
        drop(post);
        drop(talker);
        at(30);
        request.finish();
    });
    h.capture()
        .records()
        .iter()
        .map(|r: &Record| serde_json::from_str(&r.to_json_line()).expect("a record"))
        .collect()
}

/// The spans of [`one_clock_live`] as they are exported: each stage ends at its last exit
/// (tracing-opentelemetry's end of a span that was entered: 7 and 22 ms), before its
/// post-processing child and, for the thinker, its second output; the request ends where
/// the layer measured it (`e2e_total_ms`), the exported end being read later.
fn one_clock_spans() -> Vec<Value> {
    let s = |id,
             parent,
             name,
             start,
             end,
             attrs: &[(&str, Value)],
             events: &[(&str, f64, Option<u64>)]| {
        span_json(TRACE_A, id, parent, name, start, end, attrs, events)
    };
    vec![
        s(
            1,
            None,
            "omni.request",
            0.0,
            31.0,
            &[
                ("request_id", json!("c-1")),
                ("status", json!("ok")),
                ("e2e_total_ms", json!(30.0)),
            ],
            &[],
        ),
        s(
            2,
            Some(1),
            "omni.stage",
            1.0,
            7.0,
            &[
                ("stage_id", json!(0)),
                ("stage_name", json!("thinker")),
                ("num_tokens_in", json!(10)),
                ("num_tokens_out", json!(8)),
            ],
            &[("omni.output", 6.0, Some(4)), ("omni.output", 8.0, Some(4))],
        ),
        s(3, Some(2), "omni.queue", 1.0, 3.0, &[], &[]),
        s(4, Some(2), "omni.postprocess", 10.0, 14.0, &[], &[]),
        s(
            5,
            Some(1),
            "omni.transfer",
            14.0,
            17.0,
            &[
                ("from_stage", json!(0)),
                ("to_stage", json!(1)),
                ("size_bytes", json!(1024)),
            ],
            &[],
        ),
        s(6, Some(5), "omni.transfer.tx", 14.0, 15.0, &[], &[]),
        s(7, Some(5), "omni.transfer.rx_decode", 16.0, 17.0, &[], &[]),
        s(
            8,
            Some(1),
            "omni.stage",
            17.0,
            22.0,
            &[
                ("stage_id", json!(1)),
                ("stage_name", json!("talker")),
                ("num_tokens_in", json!(8)),
                ("num_tokens_out", json!(16)),
            ],
            &[("omni.output", 20.0, Some(16))],
        ),
        s(9, Some(8), "omni.postprocess", 22.0, 25.0, &[], &[]),
    ]
}

/// Issue 24, item 5: on one clock, a child that ends after its parent's exported end is
/// real data (the parent's exported end is its last exit; `tracing` closed it after its
/// children). The report equals the live records, summary included (the thinker's wall
/// time is 13 ms, not the 6 ms of its exported span), and nothing is said to be moved:
/// with the process named by its resource, and with a resource that names none.
#[test]
fn on_one_clock_the_report_equals_live_with_children_after_their_parent() {
    let dir = test_dir("one-clock");
    let live = one_clock_live();
    assert_eq!(
        live.len(),
        2,
        "the request and its online summary: {live:?}"
    );
    for (name, line) in [
        (
            "named",
            line_at(Some("gpu-1"), Some("engine-1"), one_clock_spans()),
        ),
        ("anonymous", line_of("engine", one_clock_spans())),
    ] {
        let file = write(&dir, &format!("{name}.json"), &[line]);
        let (stdout, stderr) = report_ok([Path::new("--format"), Path::new("jsonl"), &file]);
        assert!(!stderr.contains("moved"), "{name}: {stderr}");
        let mut report = records(&stdout);
        for r in &mut report {
            if let Some(r) = r.as_object_mut() {
                r.remove("trace_id");
            }
        }
        assert_same_records_within(&live, &report, 1e-6);
        let summary = &summaries(&report)["c-1"];
        close(&summary["e2e_stage_0_wall_time_ms"], 13.0);
        close(&summary["e2e_stage_1_wall_time_ms"], 8.0);
        let r = &requests(&report)["c-1"];
        close(&r["stages"][0]["postprocess_time_ms"], 4.0);
        close(&r["stages"][0]["stage_gen_time_ms"], 7.0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 24, item 5: spans of another host (`service.instance.id` and `host.name` differ)
/// whose clock is 50 ms ahead: the talker (60 to 100 ms on the request's clock) and the
/// transfer's receiving half are moved back whole, with their outputs, by the skew, and the
/// report says so with its size. Clamped, the talker lasted 0 ms.
#[test]
fn spans_of_a_skewed_host_are_moved_whole_and_said_with_the_size() {
    let dir = test_dir("skewed-host");
    let s = |id,
             parent,
             name,
             start,
             end,
             attrs: &[(&str, Value)],
             events: &[(&str, f64, Option<u64>)]| {
        span_json(TRACE_B, id, parent, name, start, end, attrs, events)
    };
    let host_a = vec![
        s(
            1,
            None,
            "omni.request",
            0.0,
            100.0,
            &[("request_id", json!("s-1"))],
            &[],
        ),
        s(
            2,
            Some(1),
            "omni.stage",
            5.0,
            50.0,
            &[("stage_id", json!(0))],
            &[],
        ),
        s(
            3,
            Some(1),
            "omni.transfer",
            50.0,
            60.0,
            &[("from_stage", json!(0)), ("to_stage", json!(1))],
            &[],
        ),
        s(4, Some(3), "omni.transfer.tx", 50.0, 52.0, &[], &[]),
    ];
    // 50 ms ahead: the receiving half ran from 56 to 60 ms, the talker from 60 to 100 ms.
    let host_b = vec![
        s(
            5,
            Some(3),
            "omni.transfer.rx_decode",
            106.0,
            110.0,
            &[],
            &[],
        ),
        s(
            6,
            Some(1),
            "omni.stage",
            110.0,
            150.0,
            &[("stage_id", json!(1))],
            &[
                ("omni.output", 120.0, Some(8)),
                ("omni.output", 140.0, Some(8)),
            ],
        ),
        s(7, Some(6), "omni.queue", 110.0, 115.0, &[], &[]),
    ];
    let file = write(
        &dir,
        "hosts.json",
        &[
            line_at(Some("gpu-a"), Some("a-1"), host_a),
            line_at(Some("gpu-b"), Some("b-1"), host_b),
        ],
    );
    let (stdout, stderr) = report_ok([Path::new("--format"), Path::new("jsonl"), &file]);
    assert!(
        stderr.contains(
            "2 spans were moved inside their parent, with the spans under them, by up to \
             50.000 ms: clock skew"
        ),
        "{stderr}"
    );
    let r = &requests(&records(&stdout))["s-1"];
    close(&r["e2e_total_ms"], 100.0);
    let talker = &r["stages"][1];
    close(&talker["wall_time_ms"], 40.0);
    close(&talker["queue_time_ms"], 5.0);
    close(&talker["stage_gen_time_ms"], 35.0);
    close(&talker["time_to_first_output_ms"], 10.0);
    close(&talker["inter_output_ms"], 20.0);
    let edge = &r["transfers"][0];
    close(&edge["tx_time_ms"], 2.0);
    close(&edge["rx_decode_time_ms"], 4.0);
    close(&edge["in_flight_time_ms"], 4.0);
    let _ = std::fs::remove_dir_all(&dir);
}
