//! The endpoint as HTTP: content type, paths and methods, the address, its errors.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use omni_metrics::{OmniMetricsLayer, PrometheusSink};

use crate::support::{Harness, get, get_accepting};

#[test]
fn metrics_are_openmetrics_text() {
    let h = Harness::new();
    h.play_many(2);
    let (response, _) = h.scrape();
    assert_eq!(
        response.headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(
        response.headers["content-length"],
        response.body.len().to_string()
    );
    assert!(response.body.ends_with("# EOF\n"), "{}", response.body);
    // A query string is ignored; HEAD has the headers and no body.
    let with_query = get(h.addr(), "GET /metrics?x=1 HTTP/1.1");
    assert_eq!(with_query.status, "HTTP/1.1 200 OK");
    let head = get(h.addr(), "HEAD /metrics HTTP/1.1");
    assert_eq!(head.status, "HTTP/1.1 200 OK");
    assert!(head.body.is_empty());
}

/// Prometheus 2.x's scrape `Accept` header.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

#[test]
fn the_format_follows_the_accept_header() {
    let h = Harness::new();
    h.play_many(5);
    // No `Accept` (curl), `*/*`, `text/plain`: the classic text format.
    for accept in [None, Some("*/*"), Some("text/plain;version=0.0.4")] {
        let classic = get_accepting(h.addr(), "GET /metrics HTTP/1.1", accept);
        assert_eq!(classic.status, "HTTP/1.1 200 OK", "{accept:?}");
        assert_eq!(
            classic.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8",
            "{accept:?}"
        );
        assert_eq!(classic.headers["vary"], "accept");
        assert_eq!(
            classic.headers["content-length"],
            classic.body.len().to_string()
        );
        let body = &classic.body;
        assert!(!body.contains("# EOF"), "{body}");
        for line in [
            "# TYPE vllm_omni:requests_success_total counter",
            "# TYPE vllm_omni:prompt_tokens_total counter",
            "vllm_omni:prompt_tokens_total{model_name=\"unknown\"} 303",
            "# TYPE vllm_omni:e2e_request_latency_s histogram",
            // Requests 0, 1 and 2 finish (3 fails, 4 is dropped): 100 + 101 + 102 tokens.
            "vllm_omni:e2e_request_latency_s_count{model_name=\"unknown\"} 3",
        ] {
            assert!(body.lines().any(|l| l == line), "no {line:?} in\n{body}");
        }
        assert!(
            body.lines().any(|l| l
                .starts_with("# HELP vllm_omni:requests_success_total Finished requests")),
            "{body}"
        );
    }
    // Prometheus' own header: OpenMetrics, as `encode` writes it.
    let openmetrics = get_accepting(h.addr(), "GET /metrics HTTP/1.1", Some(PROMETHEUS_ACCEPT));
    assert_eq!(
        openmetrics.headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(openmetrics.headers["vary"], "accept");
    assert_eq!(openmetrics.body, h.prometheus.encode());
    assert!(openmetrics.body.ends_with("# EOF\n"));
    // Only 0.0.1 asked for: the same text, said as 0.0.1.
    let old = get_accepting(
        h.addr(),
        "GET /metrics HTTP/1.1",
        Some("application/openmetrics-text; version=0.0.1"),
    );
    assert_eq!(
        old.headers["content-type"],
        "application/openmetrics-text; version=0.0.1; charset=utf-8"
    );
    assert_eq!(old.body, openmetrics.body);
    // HEAD negotiates alike.
    let head = get_accepting(h.addr(), "HEAD /metrics HTTP/1.1", None);
    assert_eq!(
        head.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(head.body.is_empty());
}

#[test]
fn other_paths_and_methods_are_refused() {
    let h = Harness::new();
    let other = get(h.addr(), "GET / HTTP/1.1");
    assert_eq!(other.status, "HTTP/1.1 404 Not Found");
    assert!(other.body.contains("/metrics"));
    let post = get(h.addr(), "POST /metrics HTTP/1.1");
    assert_eq!(post.status, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(post.headers["allow"], "GET, HEAD");
    // Still serving after both.
    let _ = h.scrape();
}

#[test]
fn bound_to_loopback_by_default() {
    assert!(PrometheusSink::DEFAULT_ADDR.starts_with("127.0.0.1:"));
    for addr in ["0", ":0"] {
        let sink = PrometheusSink::bind(addr).expect("an ephemeral loopback port");
        let bound = sink.local_addr().unwrap();
        assert_eq!(bound.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST), "{addr}");
        assert_ne!(bound.port(), 0);
    }
    assert_eq!(PrometheusSink::unserved().local_addr(), None);
}

#[test]
fn a_bad_address_fails_bind_with_what_to_do() {
    let err = PrometheusSink::bind("localhost:http-ish").unwrap_err();
    let message = err.to_string();
    assert!(message.contains("`localhost:http-ish`"), "{message}");
    assert!(message.contains("host:port"), "{message}");
    assert!(!err.from_env());
}

#[test]
fn a_port_in_use_fails_bind_with_what_to_do() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = PrometheusSink::bind(addr.clone()).unwrap_err();
    let prometheus = &err;
    assert_eq!(prometheus.kind(), io::ErrorKind::AddrInUse);
    assert_eq!(prometheus.addr(), addr);
    assert!(!prometheus.from_env());
    let message = err.to_string();
    assert!(message.contains("choose another port"), "{message}");
    assert!(
        std::error::Error::source(&err).is_some() || message.contains("in use"),
        "{message}"
    );
}

#[test]
fn the_port_is_freed_when_the_sink_drops() {
    let sink = PrometheusSink::bind("127.0.0.1:0").unwrap();
    let addr = sink.local_addr().unwrap();
    let layer = OmniMetricsLayer::builder()
        .with_console(false)
        .with_sink(sink)
        .build()
        .unwrap();
    drop(layer);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr) {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{addr} still bound: {e}"),
        }
    }
}

/// Reads one response off a kept-alive connection: its head's lines, and a body of its
/// `Content-Length` (none for `HEAD`).
fn read_response(stream: &mut TcpStream, with_body: bool) -> (Vec<String>, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("a response head");
        head.push(byte[0]);
    }
    let lines: Vec<String> = String::from_utf8(head)
        .expect("UTF-8")
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let length: usize = lines
        .iter()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .expect("a Content-Length")
        .parse()
        .expect("a length");
    let mut body = vec![0u8; if with_body { length } else { 0 }];
    stream.read_exact(&mut body).expect("the body");
    (lines, String::from_utf8(body).expect("UTF-8"))
}

#[test]
fn a_client_that_asks_for_keep_alive_gets_it() {
    let h = Harness::new();
    h.play_many(2);
    let mut stream = TcpStream::connect(h.addr()).expect("connected");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    let ask = |method: &str| {
        format!(
            "{method} /metrics HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\
             Accept: application/openmetrics-text\r\n\r\n"
        )
    };
    // HEAD's length is the scrape's; the next response follows its head directly.
    stream.write_all(ask("HEAD").as_bytes()).expect("sent");
    let (head, _) = read_response(&mut stream, false);
    stream.write_all(ask("GET").as_bytes()).expect("sent");
    let (get, body) = read_response(&mut stream, true);
    for lines in [&head, &get] {
        assert_eq!(lines[0], "HTTP/1.1 200 OK");
        assert!(
            !lines
                .iter()
                .any(|l| l.eq_ignore_ascii_case("connection: close")),
            "{lines:?}"
        );
    }
    let length = |lines: &[String]| {
        lines
            .iter()
            .find(|l| l.to_ascii_lowercase().starts_with("content-length:"))
            .cloned()
    };
    assert_eq!(length(&head), length(&get));
    assert!(body.ends_with("# EOF\n"), "{body}");
    // Without asking, the connection closes after the response.
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("sent");
    let (last, _) = read_response(&mut stream, true);
    assert!(
        last.iter()
            .any(|l| l.eq_ignore_ascii_case("connection: close")),
        "{last:?}"
    );
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("closed");
    assert!(rest.is_empty());
}
