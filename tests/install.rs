//! The one-call install, as an application uses it: one global subscriber per process, so
//! this binary holds one test.

#![cfg(feature = "otlp")]

#[path = "support/grpc_receiver.rs"]
mod receiver;

use std::time::Duration;

use omni_metrics::instrument::Request;
use omni_metrics::otlp::{OtlpPipeline, OtlpProtocol};

#[test]
fn init_exports_and_the_guard_shuts_down_from_a_current_thread_runtime() {
    let receiver = receiver::GrpcReceiver::start();
    let guard = omni_metrics::Install::new()
        .with_metrics(omni_metrics::OmniMetricsLayer::builder().with_console(false))
        .with_otlp(
            OtlpPipeline::builder()
                .with_endpoint(format!("http://{}", receiver.addr))
                .with_protocol(OtlpProtocol::Grpc)
                .with_shutdown_timeout(Duration::from_secs(10)),
        )
        .init()
        .expect("first install in this process");
    let otlp = guard.otlp();
    assert!(
        otlp.and_then(|o| o.stats()).is_some(),
        "traces are exported"
    );
    assert!(
        otlp.and_then(|o| o.metrics_stats()).is_some(),
        "metrics go to the same collector"
    );

    let second = omni_metrics::init().expect_err("a second install is refused");
    assert!(matches!(
        second,
        omni_metrics::InitError::AlreadyInstalled(_)
    ));
    assert!(
        second
            .to_string()
            .contains("call omni_metrics::init() once"),
        "{second}"
    );

    // An engine on a current-thread runtime drops the guard on the runtime's own thread:
    // a naive blocking shutdown would wait on itself.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("current-thread runtime");
    rt.block_on(async move {
        let request = Request::start("installed");
        request.stage(0).tokens_in(7);
        request.finish();
        assert_eq!(guard.metrics().totals().total_tokens, 7);
        drop(guard);
    });
    let spans = receiver.spans();
    let installed = spans.iter().any(|s| {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        s.name == "request"
            && s.attributes.iter().any(|a| {
                a.key == "request_id"
                    && matches!(a.value.as_ref().and_then(|v| v.value.as_ref()),
                        Some(Value::StringValue(id)) if id == "installed")
            })
    });
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert!(installed, "{names:?}");

    // The guard's drop recorded what was queued and exported the metrics once more.
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
    let metrics: Vec<_> = receiver
        .metrics()
        .into_iter()
        .flat_map(|rm| rm.scope_metrics)
        .flat_map(|sm| sm.metrics)
        .collect();
    let find = |name: &str| {
        metrics
            .iter()
            .find(|m| m.name == name)
            .and_then(|m| m.data.clone())
            .unwrap_or_else(|| panic!("{name} exported"))
    };
    match find("gen_ai.server.request.duration") {
        Data::Histogram(h) => assert_eq!(h.data_points[0].count, 1),
        other => panic!("a histogram: {other:?}"),
    }
    match find("omni.request.prompt_tokens") {
        Data::Sum(s) => assert_eq!(s.data_points[0].value, Some(Value::AsInt(7))),
        other => panic!("a sum: {other:?}"),
    }
}
