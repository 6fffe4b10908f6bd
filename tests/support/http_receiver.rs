//! A real OTLP/HTTP (protobuf) trace receiver on loopback: HTTP/1.1 over a std
//! `TcpListener`, bodies decoded with `opentelemetry-proto`'s prost types.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// A running receiver: spans received, and the request paths they came on.
pub(crate) struct HttpReceiver {
    pub(crate) addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    paths: Arc<Mutex<Vec<String>>>,
}

impl HttpReceiver {
    pub(crate) fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let (s, p) = (spans.clone(), paths.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (s, p) = (s.clone(), p.clone());
                std::thread::spawn(move || serve(stream, &s, &p));
            }
        });
        Self { addr, spans, paths }
    }

    pub(crate) fn spans(&self) -> Vec<Span> {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub(crate) fn paths(&self) -> Vec<String> {
        self.paths.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Serves one keep-alive connection: `POST` with a protobuf body, answered `200`.
fn serve(stream: TcpStream, spans: &Mutex<Vec<Span>>, paths: &Mutex<Vec<String>>) {
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
        let status = match ExportTraceServiceRequest::decode(body.as_slice()) {
            Ok(req) => {
                if let Ok(mut s) = spans.lock() {
                    for rs in req.resource_spans {
                        for ss in rs.scope_spans {
                            s.extend(ss.spans);
                        }
                    }
                }
                "200 OK"
            }
            Err(_) => "400 Bad Request",
        };
        if let Ok(mut p) = paths.lock() {
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
