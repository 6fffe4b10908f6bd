//! The standard `OTEL_*` variables: read once, validated, with a clear error for what cannot
//! work and a warning naming the variable and the value used for what can fall back.
//!
//! Precedence, as everywhere in this crate: a setting made in code, then the signal-specific
//! variable (`..._TRACES_...`), then the generic one, then the default.

use opentelemetry_sdk::trace::Sampler;

use super::{OtlpBuilder, OtlpError, OtlpProtocol};

pub(super) use crate::env::{
    OTEL_BSP_MAX_QUEUE_SIZE, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    OTEL_EXPORTER_OTLP_METRICS_PROTOCOL, OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE,
    OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_METRIC_EXPORT_INTERVAL, OTEL_METRICS_EXPORTER,
    OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER, OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG,
};

/// The signal a setting is for: its signal-specific variables win over the generic ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    /// The endpoint variables, the signal's first.
    pub(super) fn endpoint_vars(self) -> [&'static str; 2] {
        match self {
            Self::Traces => [
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                OTEL_EXPORTER_OTLP_ENDPOINT,
            ],
            Self::Metrics => [
                OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
                OTEL_EXPORTER_OTLP_ENDPOINT,
            ],
        }
    }

    /// The protocol variables, the signal's first.
    pub(super) fn protocol_vars(self) -> [&'static str; 2] {
        match self {
            Self::Traces => [
                OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
                OTEL_EXPORTER_OTLP_PROTOCOL,
            ],
            Self::Metrics => [
                OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
                OTEL_EXPORTER_OTLP_PROTOCOL,
            ],
        }
    }

    /// The protocol: `code`, else the variables, else gRPC.
    pub(super) fn protocol(self, code: Option<OtlpProtocol>) -> Result<OtlpProtocol, OtlpError> {
        if let Some(p) = code {
            return Ok(p);
        }
        for var in self.protocol_vars() {
            if let Some(value) = nonempty(var) {
                return OtlpProtocol::parse(&value).ok_or_else(|| OtlpError::protocol(var, &value));
            }
        }
        Ok(OtlpProtocol::Grpc)
    }

    /// Checks the endpoint the exporter will read from the variables (the signal's first),
    /// if one is set: `Ok(true)` for an `https://` one.
    pub(super) fn check_env_endpoint(self, protocol: OtlpProtocol) -> Result<bool, OtlpError> {
        for var in self.endpoint_vars() {
            if let Some(value) = nonempty(var) {
                return check_endpoint(&value, var, protocol);
            }
        }
        Ok(false)
    }
}

pub(super) fn nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Whether an OTLP endpoint for traces is configured in the environment
/// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`).
pub(super) fn endpoint_in_env() -> bool {
    Signal::Traces
        .endpoint_vars()
        .into_iter()
        .any(|var| nonempty(var).is_some())
}

/// Whether an OTLP endpoint for metrics is configured in the environment
/// (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`).
pub(super) fn metrics_endpoint_in_env() -> bool {
    Signal::Metrics
        .endpoint_vars()
        .into_iter()
        .any(|var| nonempty(var).is_some())
}

/// What `OTEL_METRICS_EXPORTER` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum MetricsExporterVar {
    /// Unset (or empty): metrics follow the endpoint settings.
    Unset,
    /// `otlp` (alone or in a list): export, to the default endpoint if none is set.
    Otlp,
    /// `none`: export no metrics.
    None,
    /// Anything else: not exported, said once.
    Unsupported(String),
}

/// Reads `OTEL_METRICS_EXPORTER`: a comma-separated list, in any case (`otlp`, `none`).
pub(super) fn metrics_exporter_var() -> MetricsExporterVar {
    let Some(value) = nonempty(OTEL_METRICS_EXPORTER) else {
        return MetricsExporterVar::Unset;
    };
    let entries: Vec<String> = value
        .split(',')
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .collect();
    if entries.iter().any(|e| e == "otlp") {
        MetricsExporterVar::Otlp
    } else if entries.iter().all(|e| e == "none") {
        MetricsExporterVar::None
    } else {
        MetricsExporterVar::Unsupported(value)
    }
}

/// Whether `OTEL_SDK_DISABLED=true` turns every OTLP export off.
pub(super) fn sdk_disabled_in_env() -> bool {
    sdk_disabled()
}

/// Whether the environment turns trace export off (`OTEL_SDK_DISABLED=true` or
/// `OTEL_TRACES_EXPORTER=none`).
pub(super) fn disabled_in_env() -> bool {
    sdk_disabled() || exporter_var().as_deref() == Some("none")
}

/// Whether the environment asks for OTLP export explicitly (`OTEL_TRACES_EXPORTER=otlp`).
pub(super) fn otlp_requested_in_env() -> bool {
    exporter_var().as_deref() == Some("otlp")
}

fn sdk_disabled() -> bool {
    nonempty(OTEL_SDK_DISABLED).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

fn exporter_var() -> Option<String> {
    nonempty(OTEL_TRACES_EXPORTER).map(|v| v.trim().to_ascii_lowercase())
}

/// What the pipeline is built from, after code and environment are merged and checked.
pub(super) struct Settings {
    pub(super) protocol: OtlpProtocol,
    /// The endpoint given in code; the exporter reads the variables itself otherwise (they
    /// were checked here).
    pub(super) code_endpoint: Option<String>,
    /// Whether the endpoint in use is `https://`.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(super) https: bool,
    pub(super) max_queue_size: usize,
    /// A sampler to set in code when the environment's cannot be used as it is.
    pub(super) sampler: Option<Sampler>,
    /// Fallbacks taken, each naming its variable and the value used.
    pub(super) warnings: Vec<String>,
}

impl Settings {
    /// The trace settings of `builder` and the variables; `otlp`: whether traces go to a
    /// collector (else only to the trace file, and the protocol and endpoint are not read).
    pub(super) fn read(builder: &OtlpBuilder, otlp: bool) -> Result<Self, OtlpError> {
        let mut warnings = Vec::new();
        if let Some(value) = nonempty(OTEL_SDK_DISABLED) {
            let v = value.trim();
            if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") {
                warnings.push(format!(
                    "{OTEL_SDK_DISABLED}={value:?} is neither `true` nor `false`: traces are \
                     exported (only `true` disables them)"
                ));
            }
        }
        match exporter_var().as_deref() {
            None | Some("otlp") | Some("none") => {}
            Some(other) => {
                return Err(OtlpError::config(
                    OTEL_TRACES_EXPORTER,
                    other,
                    "use `otlp` (or `none` to export no traces): this crate exports OTLP only",
                ));
            }
        }
        let (protocol, code_endpoint, https) = if otlp {
            let protocol = Signal::Traces.protocol(builder.protocol)?;
            let code_endpoint = builder.endpoint.clone();
            let https = match &code_endpoint {
                Some(endpoint) => check_endpoint(endpoint, "the endpoint given in code", protocol)?,
                None => Signal::Traces.check_env_endpoint(protocol)?,
            };
            (protocol, code_endpoint, https)
        } else {
            (OtlpProtocol::Grpc, None, false)
        };
        let max_queue_size = match builder.max_queue_size {
            Some(n) => n,
            None => match nonempty(OTEL_BSP_MAX_QUEUE_SIZE) {
                None => super::OtlpBuilder::DEFAULT_MAX_QUEUE_SIZE,
                Some(v) => match v.trim().parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => {
                        warnings.push(format!(
                            "{OTEL_BSP_MAX_QUEUE_SIZE}={v:?} is not a positive number of \
                             spans: using {}",
                            super::OtlpBuilder::DEFAULT_MAX_QUEUE_SIZE
                        ));
                        super::OtlpBuilder::DEFAULT_MAX_QUEUE_SIZE
                    }
                },
            },
        };
        let sampler = sampler_from_env(&mut warnings);
        Ok(Self {
            protocol,
            code_endpoint,
            https,
            max_queue_size,
            sampler,
            warnings,
        })
    }
}

/// An endpoint that cannot work is an error now, not a silent loss later. `Ok(true)` for an
/// `https://` endpoint.
pub(super) fn check_endpoint(
    endpoint: &str,
    source: &'static str,
    protocol: OtlpProtocol,
) -> Result<bool, OtlpError> {
    let bad = |why: &'static str| OtlpError::endpoint(source, endpoint, why);
    let uri: http::Uri = endpoint
        .trim()
        .parse()
        .map_err(|_| bad("it is not a URL; write it as `http://host:4317`"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") if !cfg!(feature = "tls") => {
            return Err(bad(
                "TLS needs this crate's `tls` feature (on by default); or use an `http://` \
                 endpoint (a local collector or a sidecar terminates TLS)",
            ));
        }
        Some("https") if protocol == OtlpProtocol::HttpProtobuf => {
            return Err(bad(
                "TLS is supported over gRPC only: use `OTEL_EXPORTER_OTLP_PROTOCOL=grpc` (port \
                 4317), or an `http://` endpoint",
            ));
        }
        Some("https") => true,
        Some(_) => return Err(bad("the scheme must be `http://` or `https://`")),
        None => {
            return Err(bad(
                "it has no scheme; write it as `http://host:4317` (gRPC) or \
                 `http://host:4318` (HTTP)",
            ));
        }
    };
    let Some(authority) = uri.authority() else {
        return Err(bad("it has no host; write it as `http://host:4317`"));
    };
    if authority.host().is_empty() {
        return Err(bad("it has no host; write it as `http://host:4317`"));
    }
    // `Authority::port` is `None` for a port that is not a u16: read the text itself.
    let after_host = authority
        .as_str()
        .rsplit_once(']')
        .map_or(authority.as_str(), |(_, rest)| rest);
    if let Some((_, port)) = after_host.rsplit_once(':') {
        if !matches!(port.parse::<u16>(), Ok(p) if p > 0) {
            return Err(bad("its port is not between 1 and 65535"));
        }
    }
    Ok(https)
}

/// The sampler of `OTEL_TRACES_SAMPLER`/`_ARG` when the SDK would misread them: a ratio that
/// is not a number in `[0, 1]` (the SDK takes `NaN` or `-1` as "export nothing" and `2` as
/// "everything", silently). `None` leaves the variables to the SDK.
fn sampler_from_env(warnings: &mut Vec<String>) -> Option<Sampler> {
    let name = nonempty(OTEL_TRACES_SAMPLER)?.trim().to_ascii_lowercase();
    let ratio_based = matches!(name.as_str(), "traceidratio" | "parentbased_traceidratio");
    let known = ratio_based
        || matches!(
            name.as_str(),
            "always_on" | "always_off" | "parentbased_always_on" | "parentbased_always_off"
        );
    if !known {
        warnings.push(format!(
            "{OTEL_TRACES_SAMPLER}={name:?} is not supported: using `parentbased_always_on` \
             (use always_on, always_off, traceidratio, parentbased_always_on, \
             parentbased_always_off or parentbased_traceidratio)"
        ));
        return Some(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    }
    if !ratio_based {
        return None;
    }
    let arg = nonempty(OTEL_TRACES_SAMPLER_ARG);
    let ratio = match arg.as_deref().map(|a| a.trim().parse::<f64>()) {
        Some(Ok(r)) if (0.0..=1.0).contains(&r) => r,
        _ => {
            warnings.push(format!(
                "{OTEL_TRACES_SAMPLER_ARG}={:?} is not a ratio between 0 and 1: using 1.0 \
                 (every trace)",
                arg.unwrap_or_default()
            ));
            1.0
        }
    };
    let ratio = Sampler::TraceIdRatioBased(ratio);
    Some(if name == "parentbased_traceidratio" {
        Sampler::ParentBased(Box::new(ratio))
    } else {
        ratio
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_that_cannot_work_are_errors() {
        for bad in [
            "not a url",
            "collector:4317",
            "ftp://collector:4317",
            "http://collector:99999",
            "https://collector:4317",
        ] {
            assert!(
                check_endpoint(bad, "test", OtlpProtocol::HttpProtobuf).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            check_endpoint("https://collector:4317", "test", OtlpProtocol::Grpc).is_ok(),
            cfg!(feature = "tls")
        );
        for good in [
            "http://localhost:4317",
            "http://127.0.0.1:4318/v1/traces",
            "http://collector",
        ] {
            assert!(
                check_endpoint(good, "test", OtlpProtocol::Grpc).is_ok(),
                "{good}"
            );
        }
    }
}
