//! A real OTLP/HTTP (protobuf) receiver on loopback, traces (`/v1/traces`) and metrics
//! (`/v1/metrics`): HTTP/1.1 over a std `TcpListener`, bodies decoded with
//! `opentelemetry-proto`'s prost types.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// What a receiver got.
#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<Span>>>,
    metrics: Arc<Mutex<Vec<ResourceMetrics>>>,
    paths: Arc<Mutex<Vec<String>>>,
}

/// A running receiver: spans and metrics received, and the request paths they came on.
pub(crate) struct HttpReceiver {
    pub(crate) addr: SocketAddr,
    received: Received,
}

impl HttpReceiver {
    pub(crate) fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let received = Received::default();
        let r = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let r = r.clone();
                std::thread::spawn(move || serve(stream, &r));
            }
        });
        Self { addr, received }
    }

    pub(crate) fn spans(&self) -> Vec<Span> {
        self.received
            .spans
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// The resource metrics of every metrics export received, in order.
    #[allow(dead_code)] // not every test binary that includes the receiver reads metrics
    pub(crate) fn metrics(&self) -> Vec<ResourceMetrics> {
        self.received
            .metrics
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    pub(crate) fn paths(&self) -> Vec<String> {
        self.received
            .paths
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }
}

/// Serves one keep-alive connection: `POST` with a protobuf body, answered `200`.
fn serve(stream: TcpStream, received: &Received) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_owned();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let status = if path.ends_with("/v1/metrics") {
            match ExportMetricsServiceRequest::decode(body.as_slice()) {
                Ok(req) => {
                    if let Ok(mut m) = received.metrics.lock() {
                        m.extend(req.resource_metrics);
                    }
                    "200 OK"
                }
                Err(_) => "400 Bad Request",
            }
        } else {
            match ExportTraceServiceRequest::decode(body.as_slice()) {
                Ok(req) => {
                    if let Ok(mut s) = received.spans.lock() {
                        for rs in req.resource_spans {
                            for ss in rs.scope_spans {
                                s.extend(ss.spans);
                            }
                        }
                    }
                    "200 OK"
                }
                Err(_) => "400 Bad Request",
            }
        };
        if let Ok(mut p) = received.paths.lock() {
            p.push(path);
        }
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
