//! The serve example as its clients meet it: a client that hangs up before its response is
//! complete, at any point of the pipeline, ends its request `aborted`; one that reads its
//! response to the end, `ok`.
//!
//! The example runs as a real process on a free loopback port, with its records in a JSON
//! lines file; clients are plain TCP connections.

#[path = "../support/example.rs"]
mod example;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The example serving on a free port; killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(records: &Path) -> Server {
    let mut child = Command::new(example::serve())
        .args([
            "--addr",
            "127.0.0.1:0",
            "--ms-per-token",
            "20",
            "--log-interval",
            "0",
        ])
        .env("OMNI_METRICS_JSONL", records)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("OTEL_SDK_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example starts");
    let stderr = child.stderr.take().expect("piped");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(addr) = line.strip_prefix("serving on http://") {
                    break addr.trim().to_owned();
                }
            }
            other => {
                let _ = child.kill();
                panic!("the example stopped before serving: {other:?}");
            }
        }
    };
    // Keep reading its stderr so that it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Server { child, addr }
}

/// Sends a chat completion; returns the connection.
fn post(addr: &str, stream: bool) -> TcpStream {
    let body = format!(
        r#"{{"stream":{stream},"max_tokens":8,"messages":[{{"role":"user","content":"hello"}}]}}"#
    );
    let mut conn = TcpStream::connect(addr).expect("connected");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("a timeout");
    write!(
        conn,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("sent");
    conn
}

/// Reads the streamed response until `frames` text deltas have arrived; returns the
/// request's id (from the first frame).
fn read_text_frames(conn: &mut TcpStream, frames: usize) -> String {
    let mut seen = String::new();
    let mut buf = [0_u8; 4096];
    loop {
        let deltas = seen.matches("\"content\":").count();
        if deltas >= frames {
            let at = seen.find("\"id\":\"").expect("an id") + 6;
            let id = &seen[at..];
            return id[..id.find('"').expect("a quoted id")].to_owned();
        }
        let n = conn.read(&mut buf).expect("the stream goes on");
        assert!(n > 0, "the stream ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// Reads until the connection has the whole streamed response.
fn read_to_done(conn: &mut TcpStream) -> String {
    let mut seen = String::new();
    let mut buf = [0_u8; 4096];
    while !seen.contains("data: [DONE]") {
        let n = conn.read(&mut buf).expect("the stream goes on");
        assert!(n > 0, "the stream ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let at = seen.find("\"id\":\"").expect("an id") + 6;
    let id = &seen[at..];
    id[..id.find('"').expect("a quoted id")].to_owned()
}

/// The request records written so far: (request id, status).
fn statuses(records: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(records).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "request")
        .map(|v| {
            (
                v["request_id"].as_str().unwrap_or_default().to_owned(),
                v["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_client_that_hangs_up_at_any_point_ends_its_request_aborted() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let records = dir.path().join("records.jsonl");
    let server = start(&records);
    let addr = server.addr.as_str();

    // The thinker decodes 4 chunks of 2 tokens (40 ms each), the talker then computes for
    // about 320 ms and code2wav for 64 ms before the reply's last frame.
    let mut in_thinker = post(addr, true);
    let mut after_text = post(addr, true);
    let mut in_reply = post(addr, true);
    let mut complete = post(addr, true);
    let not_streamed = post(addr, false);

    let thinker_id = read_text_frames(&mut in_thinker, 1);
    drop(in_thinker);
    // The last text delta is out: the talker computes, no more text will be sent.
    let after_text_id = read_text_frames(&mut after_text, 4);
    drop(after_text);
    // Hung up late: talker or code2wav still running, or the reply already queued.
    let in_reply_id = read_text_frames(&mut in_reply, 4);
    std::thread::sleep(Duration::from_millis(300));
    drop(in_reply);
    // A non-streamed request whose client leaves before the answer.
    std::thread::sleep(Duration::from_millis(50));
    drop(not_streamed);
    let complete_id = read_to_done(&mut complete);

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = statuses(&records);
    while seen.len() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        seen = statuses(&records);
    }
    assert_eq!(seen.len(), 5, "five requests recorded: {seen:?}");
    let status_of = |id: &str| {
        seen.iter()
            .find(|(r, _)| r == id)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| panic!("no record of {id}: {seen:?}"))
    };
    assert_eq!(status_of(&complete_id), "ok", "read to the end: {seen:?}");
    for (point, id) in [
        ("thinker", &thinker_id),
        ("after the last text delta", &after_text_id),
        ("late in the pipeline", &in_reply_id),
    ] {
        assert_eq!(status_of(id), "aborted", "hung up {point}: {seen:?}");
    }
    let known = [&thinker_id, &after_text_id, &in_reply_id, &complete_id];
    let (_, unstreamed) = seen
        .iter()
        .find(|(id, _)| !known.contains(&id))
        .expect("the non-streamed request's record");
    assert_eq!(unstreamed, "aborted", "non-streamed, hung up: {seen:?}");
}

/// `GET path`: the response's body.
fn get(addr: &str, path: &str) -> String {
    let mut conn = TcpStream::connect(addr).expect("connected");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("a timeout");
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .expect("sent");
    let mut response = String::new();
    conn.read_to_string(&mut response).expect("a response");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    body.to_owned()
}

/// `/stats` leads with the latency distribution and labels its wall-based figures: the
/// server's wall time includes its idle time, so wall time per request is no latency.
#[test]
fn stats_lead_with_the_latency_and_label_wall_figures() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let records = dir.path().join("records.jsonl");
    let server = start(&records);
    let addr = server.addr.as_str();
    let mut conn = post(addr, true);
    read_to_done(&mut conn);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stats = get(addr, "/stats");
    while !stats.contains("e2e_total_ms") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        stats = get(addr, "/stats");
    }
    // Chunked or not, the first table is the latency's (after the live gauges).
    let first_title = stats
        .lines()
        .find(|l| l.starts_with("Distributions") || l.starts_with("Overall Summary"));
    assert_eq!(first_title, Some("Distributions"), "{stats}");
    assert!(
        stats.contains("| e2e_avg_time_per_request_ms (wall time / requests, not latency) |"),
        "{stats}"
    );
    assert!(
        stats.contains("Overall Summary (scope cumulative)"),
        "{stats}"
    );
}

/// A request's own timings go back to its caller: a `Server-Timing` header on a plain
/// answer, a last `omni.timing` event before `[DONE]` on a stream, each equal to the
/// request's record in the JSON lines.
#[test]
fn the_caller_gets_its_requests_timings() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let records = dir.path().join("records.jsonl");
    let server = start(&records);
    let addr = server.addr.as_str();

    let mut plain = post(addr, false);
    let mut response = String::new();
    plain.read_to_string(&mut response).ok();
    let head = response
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let timing = head
        .lines()
        .find_map(|l| l.strip_prefix("server-timing: "))
        .unwrap_or_else(|| panic!("no Server-Timing header: {head}"))
        .to_owned();
    assert!(timing.starts_with("e2e;dur="), "{timing}");
    for entry in [
        "queue;dur=",
        "stage-0;desc=\"thinker\";dur=",
        "stage-2;desc=\"code2wav\";dur=",
    ] {
        assert!(timing.contains(entry), "{entry} in {timing}");
    }
    let plain_id = {
        let at = response.find("\"id\":\"").expect("an id") + 6;
        response[at..][..response[at..].find('"').expect("quoted")].to_owned()
    };

    let mut streamed = post(addr, true);
    let mut seen = String::new();
    let mut buf = [0_u8; 4096];
    while !seen.contains("data: [DONE]") {
        let n = streamed.read(&mut buf).expect("the stream goes on");
        assert!(n > 0, "the stream ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let event = seen
        .split("event: omni.timing\ndata: ")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .unwrap_or_else(|| panic!("no omni.timing event: {seen}"));
    let event: serde_json::Value = serde_json::from_str(event).expect("the event is JSON");
    assert!(seen.find("event: omni.timing") < seen.find("data: [DONE]"));

    // Both equal the records the layer wrote.
    let deadline = Instant::now() + Duration::from_secs(30);
    let record_of = |id: &str| {
        loop {
            let text = std::fs::read_to_string(&records).unwrap_or_default();
            let found = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["type"] == "request" && v["request_id"] == id);
            if let Some(found) = found {
                return found;
            }
            assert!(Instant::now() < deadline, "no record of {id}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let plain_record = record_of(&plain_id);
    let e2e = plain_record["e2e_total_ms"].as_f64().expect("e2e");
    assert!(
        timing.starts_with(&format!("e2e;dur={e2e:.3},")),
        "{timing} vs {e2e}"
    );
    let streamed_id = event["record"]["request_id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let streamed_record = record_of(&streamed_id);
    assert_eq!(
        event["record"]["e2e_total_ms"],
        streamed_record["e2e_total_ms"]
    );
    assert_eq!(event["record"]["stages"], streamed_record["stages"]);
    assert!(
        event["server_timing"]
            .as_str()
            .is_some_and(|t| t.starts_with("e2e;dur=")),
        "{event}"
    );
}
