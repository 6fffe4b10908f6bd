//! A collector on loopback that writes what it receives as the Collector's file exporter
//! does: one `ExportTraceServiceRequest` per line in OTLP JSON (`format: json`), and the same
//! requests as length-prefixed protobuf (`format: proto`) in a second file.

use std::fs::File;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

struct Files {
    json: File,
    proto: File,
}

#[derive(Clone)]
struct Writer(Arc<Mutex<Files>>);

#[tonic::async_trait]
impl TraceService for Writer {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        use prost::Message as _;
        let request = request.into_inner();
        let line =
            serde_json::to_string(&request).map_err(|e| tonic::Status::internal(e.to_string()))?;
        let message = request.encode_to_vec();
        let mut files = self
            .0
            .lock()
            .map_err(|_| tonic::Status::internal("poisoned"))?;
        let written = writeln!(files.json, "{line}")
            .and_then(|()| files.proto.write_all(&(message.len() as u32).to_be_bytes()))
            .and_then(|()| files.proto.write_all(&message));
        written.map_err(|e| tonic::Status::internal(e.to_string()))?;
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A running collector writing `<name>.json` and `<name>.pb` in a directory; stops when
/// dropped.
pub(crate) struct FileCollector {
    pub(crate) endpoint: String,
    pub(crate) json: PathBuf,
    #[allow(dead_code)] // the tests read the protobuf file by its name
    pub(crate) proto: PathBuf,
    _runtime: tokio::runtime::Runtime,
}

impl FileCollector {
    pub(crate) fn start(dir: &Path, name: &str) -> Self {
        let json = dir.join(format!("{name}.json"));
        let proto = dir.join(format!("{name}.pb"));
        let files = Files {
            json: File::create(&json).expect("json file"),
            proto: File::create(&proto).expect("proto file"),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("collector runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind loopback");
        let addr: SocketAddr = listener.local_addr().expect("local addr");
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(Writer(Arc::new(Mutex::new(files)))))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        Self {
            endpoint: format!("http://{addr}"),
            json,
            proto,
            _runtime: runtime,
        }
    }
}
