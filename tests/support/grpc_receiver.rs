//! A real OTLP/gRPC receiver on loopback, built from `opentelemetry-proto`'s generated
//! `TraceService` and `MetricsService`, running on its own tokio runtime.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::trace::v1::Span;

#[derive(Clone, Default)]
struct Collect {
    /// How long to wait before answering (a slow collector).
    delay: std::time::Duration,
    spans: Arc<Mutex<Vec<Span>>>,
    services: Arc<Mutex<Vec<String>>>,
    authorization: Arc<Mutex<Vec<String>>>,
    metrics: Arc<Mutex<Vec<ResourceMetrics>>>,
}

#[tonic::async_trait]
impl MetricsService for Collect {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let mut metrics = self
            .metrics
            .lock()
            .map_err(|_| tonic::Status::internal("poisoned"))?;
        metrics.extend(request.into_inner().resource_metrics);
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl TraceService for Collect {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let mut spans = self
            .spans
            .lock()
            .map_err(|_| tonic::Status::internal("poisoned"))?;
        if let Some(value) = request.metadata().get("authorization") {
            if let (Ok(mut seen), Ok(text)) = (self.authorization.lock(), value.to_str()) {
                seen.push(text.to_owned());
            }
        }
        let request = request.into_inner();
        if let Ok(mut services) = self.services.lock() {
            for rs in &request.resource_spans {
                let name = rs.resource.as_ref().and_then(|r| {
                    r.attributes.iter().find(|a| a.key == "service.name").and_then(|a| {
                        match a.value.as_ref()?.value.as_ref()? {
                            opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s) => {
                                Some(s.clone())
                            }
                            _ => None,
                        }
                    })
                });
                services.extend(name);
            }
        }
        for rs in request.resource_spans {
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A running receiver; stops when dropped.
pub(crate) struct GrpcReceiver {
    pub(crate) addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    services: Arc<Mutex<Vec<String>>>,
    authorization: Arc<Mutex<Vec<String>>>,
    metrics: Arc<Mutex<Vec<ResourceMetrics>>>,
    _runtime: tokio::runtime::Runtime,
}

impl GrpcReceiver {
    pub(crate) fn start() -> Self {
        Self::serve(None, std::time::Duration::ZERO)
    }

    /// A receiver that answers each export only after `delay`.
    #[allow(dead_code)] // not every test binary that includes the receiver uses it
    pub(crate) fn start_slow(delay: std::time::Duration) -> Self {
        Self::serve(None, delay)
    }

    /// A receiver speaking TLS with this certificate and key (PEM).
    #[allow(dead_code)] // not every test binary that includes the receiver uses TLS
    pub(crate) fn start_tls(cert_pem: &str, key_pem: &str) -> Self {
        Self::serve(
            Some(
                tonic::transport::ServerTlsConfig::new()
                    .identity(tonic::transport::Identity::from_pem(cert_pem, key_pem)),
            ),
            std::time::Duration::ZERO,
        )
    }

    fn serve(tls: Option<tonic::transport::ServerTlsConfig>, delay: std::time::Duration) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("receiver runtime");
        let collect = Collect {
            delay,
            ..Collect::default()
        };
        let spans = collect.spans.clone();
        let services = collect.services.clone();
        let authorization = collect.authorization.clone();
        let metrics = collect.metrics.clone();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            server = server.tls_config(tls).expect("server TLS config");
        }
        runtime.spawn(
            server
                .add_service(TraceServiceServer::new(collect.clone()))
                .add_service(MetricsServiceServer::new(collect))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        Self {
            addr,
            spans,
            services,
            authorization,
            metrics,
            _runtime: runtime,
        }
    }

    pub(crate) fn spans(&self) -> Vec<Span> {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The resource metrics of every metrics export received, in order.
    #[allow(dead_code)] // not every test binary that includes the receiver reads metrics
    pub(crate) fn metrics(&self) -> Vec<ResourceMetrics> {
        self.metrics.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// The `authorization` header of every export received.
    #[allow(dead_code)] // not every test binary that includes the receiver reads it
    pub(crate) fn authorization(&self) -> Vec<String> {
        self.authorization
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// The `service.name` of every export received.
    #[allow(dead_code)] // not every test binary that includes the receiver reads it
    pub(crate) fn services(&self) -> Vec<String> {
        self.services.lock().map(|s| s.clone()).unwrap_or_default()
    }
}
