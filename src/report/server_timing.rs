//! A finished request's timings as a W3C `Server-Timing` header value, for a server to
//! return to its caller (billing, SLAs, a browser's devtools).

use std::fmt::Write as _;

use crate::stats::RequestE2EStats;

/// `record` as a `Server-Timing` header value (W3C Server Timing): `e2e` (its
/// `e2e_total_ms`), `queue` (its stages' `queue_time_ms`, summed) and one entry per stage,
/// `stage-<id>`, its wall time (first start to last end), with the stage's name as `desc`
/// when it has one; each `dur` in ms with three decimals.
///
/// ```
/// use omni_metrics::stats::{RequestE2EStats, StageRequestStats};
/// let record = RequestE2EStats {
///     e2e_total_ms: 41.5,
///     stages: vec![StageRequestStats {
///         stage_id: 0,
///         stage_name: Some("thinker".into()),
///         queue_time_ms: 2.0,
///         wall_time_ms: 30.25,
///         ..Default::default()
///     }],
///     ..Default::default()
/// };
/// assert_eq!(
///     omni_metrics::report::server_timing(&record),
///     r#"e2e;dur=41.500, queue;dur=2.000, stage-0;desc="thinker";dur=30.250"#
/// );
/// ```
pub fn server_timing(record: &RequestE2EStats) -> String {
    let queue_ms: f64 = record.stages.iter().map(|s| s.queue_time_ms).sum();
    let mut value = format!(
        "e2e;dur={:.3}, queue;dur={:.3}",
        crate::stats::finite(record.e2e_total_ms),
        crate::stats::finite(queue_ms)
    );
    for s in &record.stages {
        let _ = write!(value, ", stage-{}", s.stage_id);
        if let Some(name) = &s.stage_name {
            let _ = write!(value, ";desc=\"{}\"", quoted(name));
        }
        let _ = write!(value, ";dur={:.3}", crate::stats::finite(s.wall_time_ms));
    }
    value
}

/// `text` as the inside of an HTTP quoted-string: `"` and `\` escaped, and what a header
/// value cannot hold (controls, non-ASCII) left out, so the header is always valid.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().take(64) {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_values_stay_finite() {
        let record = RequestE2EStats {
            e2e_total_ms: f64::NAN,
            stages: vec![crate::stats::StageRequestStats {
                stage_id: 2,
                stage_name: Some("co\"de\\2\nwav é".into()),
                wall_time_ms: f64::INFINITY,
                ..Default::default()
            }],
            ..Default::default()
        };
        let value = server_timing(&record);
        assert_eq!(
            value,
            format!(
                "e2e;dur=0.000, queue;dur=0.000, stage-2;desc=\"co\\\"de\\\\2wav \";dur={:.3}",
                f64::MAX
            )
        );
        assert!(http::HeaderValue::from_str(&value).is_ok());
    }
}
