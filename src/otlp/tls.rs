//! TLS for OTLP/gRPC: the roots, the collector's CA and a client identity, from the standard
//! variables (feature `tls`).

use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};

use super::OtlpError;
use super::env::{Signal, nonempty};

use crate::env::{
    OTEL_EXPORTER_OTLP_CERTIFICATE, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_CLIENT_KEY, OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE,
    OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE, OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY,
    OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE, OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY,
};

/// The CA, client certificate and client key variables of `signal`, each the signal's
/// first.
fn vars(signal: Signal) -> [[&'static str; 2]; 3] {
    match signal {
        Signal::Traces => [
            [
                OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
                OTEL_EXPORTER_OTLP_CERTIFICATE,
            ],
            [
                OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE,
                OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
            ],
            [
                OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY,
                OTEL_EXPORTER_OTLP_CLIENT_KEY,
            ],
        ],
        Signal::Metrics => [
            [
                OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE,
                OTEL_EXPORTER_OTLP_CERTIFICATE,
            ],
            [
                OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE,
                OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
            ],
            [
                OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY,
                OTEL_EXPORTER_OTLP_CLIENT_KEY,
            ],
        ],
    }
}

/// The first of `vars` that is set: its name and value.
fn first_set(vars: [&'static str; 2]) -> Option<(&'static str, String)> {
    vars.into_iter()
        .find_map(|var| nonempty(var).map(|value| (var, value)))
}

/// Whether any TLS variable of `signal` is set (then TLS is configured even for an
/// endpoint given without a scheme the exporter would upgrade).
pub(super) fn configured_in_env(signal: Signal) -> bool {
    let [ca, cert, _] = vars(signal);
    first_set(ca).is_some() || first_set(cert).is_some()
}

fn read(var: &'static str, path: &str) -> Result<Vec<u8>, OtlpError> {
    std::fs::read(path).map_err(|source| OtlpError::tls_file(var, path, source))
}

/// The TLS configuration of `signal`: the system's and the webpki roots, plus the CA file
/// (code, then the variables) and the client identity of the variables.
pub(super) fn client_config(
    signal: Signal,
    ca_from_code: Option<&str>,
) -> Result<ClientTlsConfig, OtlpError> {
    let [ca_vars, cert_vars, key_vars] = vars(signal);
    let mut config = ClientTlsConfig::new().with_enabled_roots();
    let ca = match ca_from_code {
        Some(path) => Some(("OtlpBuilder::with_ca_certificate", path.to_owned())),
        None => first_set(ca_vars),
    };
    if let Some((var, path)) = ca {
        config = config.ca_certificate(Certificate::from_pem(read(var, &path)?));
    }
    let cert = first_set(cert_vars);
    let key = first_set(key_vars);
    match (cert, key) {
        (Some((cert_var, cert)), Some((key_var, key))) => {
            config = config.identity(Identity::from_pem(
                read(cert_var, &cert)?,
                read(key_var, &key)?,
            ));
        }
        (None, None) => {}
        (Some((var, _)), None) | (None, Some((var, _))) => {
            return Err(OtlpError::config(
                var,
                "(set)",
                "a client certificate needs its key and the other way round: set both \
                 OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY",
            ));
        }
    }
    Ok(config)
}
