//! Export over TLS to a collector with a self-signed certificate, with headers.

use crate::example;
use crate::receiver::GrpcReceiver;
use crate::support::one_trace_per_request;

/// Issue 7: an `https://` endpoint with the collector's CA from
/// `OTEL_EXPORTER_OTLP_CERTIFICATE` receives every span, with the headers of
/// `OTEL_EXPORTER_OTLP_HEADERS` (never printed); without the CA, the loss is said.
#[test]
fn issue7_tls_receiver_with_a_self_signed_certificate_gets_every_span() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("a self-signed certificate");
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    let receiver = GrpcReceiver::start_tls(&cert_pem, &key_pem);
    let dir = std::env::temp_dir().join(format!("omni-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &cert_pem).expect("write the CA");
    let endpoint = format!("https://localhost:{}", receiver.addr.port());
    let run = |with_ca: bool| {
        let mut cmd = std::process::Command::new(example::omni_pipeline());
        cmd.args(["-n", "3", "--summary-only"])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env(
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20s3cr3t-token",
            )
            .env("OTEL_EXPORTER_OTLP_TIMEOUT", "2000")
            .env_remove("OTEL_EXPORTER_OTLP_CERTIFICATE")
            .env_remove("RUST_LOG");
        if with_ca {
            cmd.env("OTEL_EXPORTER_OTLP_CERTIFICATE", &ca);
        }
        cmd.output().expect("the example runs")
    };
    let out = run(true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("could not be exported"), "{stderr}");
    let spans = receiver.spans();
    one_trace_per_request(&spans, 3, "every request over TLS");
    assert!(
        !receiver.metrics().is_empty(),
        "metrics over TLS too, with the same CA"
    );
    assert!(!stderr.contains("metric exports failed"), "{stderr}");
    assert!(
        receiver
            .authorization()
            .iter()
            .all(|a| a == "Bearer s3cr3t-token"),
        "{:?}",
        receiver.authorization()
    );
    assert!(!receiver.authorization().is_empty());
    assert!(
        !stderr.contains("s3cr3t"),
        "headers are never logged: {stderr}"
    );

    let before = spans.len();
    let out = run(false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        receiver.spans().len(),
        before,
        "an untrusted certificate gets nothing"
    );
    assert!(
        stderr.contains("spans could not be exported"),
        "said, not silent: {stderr}"
    );
    assert!(
        stderr.contains("metric exports failed"),
        "the metrics' loss too: {stderr}"
    );
    assert!(!stderr.contains("s3cr3t"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
