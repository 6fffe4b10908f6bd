//! vLLM-Omni's own OpenTelemetry traces, read beside the convention's.
//!
//! vLLM-Omni's orchestrator traces each request with the Python SDK: a root span
//! `omni.pipeline` (`omni.request.id`; at its end `omni.request.outcome`, and on failure
//! `error.type` with status ERROR), one child `omni.stage` per stage (`omni.stage.id`,
//! `omni.stage.type`, `omni.replica.id`) with an event `omni.stage.first_output` at the
//! stage's first output. Such spans are given the convention's fields here, so the metrics
//! layer replays them as any other: a pipeline is a request, a stage of vLLM-Omni (told from
//! the convention's `omni.stage` by its `omni.stage.id`) a stage, its first output an
//! `omni.output` without `units`.

use super::model::{AttrValue, Key, RawSpan};
use crate::convention::{SpanKind, field};
use crate::stats::{RequestStatus, TraceSource};

/// The request's root span.
pub(crate) const PIPELINE: &str = "omni.pipeline";
/// The stage's span (the convention's name too).
const STAGE: &str = "omni.stage";
/// The pipeline's request id.
const REQUEST_ID: &str = "omni.request.id";
/// How the request ended: `success`, `error`, or what the caller passed.
const OUTCOME: &str = "omni.request.outcome";
/// The stage's index (int): what tells vLLM-Omni's stage from the convention's.
const STAGE_ID: &str = "omni.stage.id";
/// The stage's type (`llm`, `audio`, `diffusion`): its `stage_name`.
const STAGE_TYPE: &str = "omni.stage.type";
/// The replica that served the stage (int).
const REPLICA_ID: &str = "omni.replica.id";
/// The event at the stage's first output.
pub(crate) const FIRST_OUTPUT: &str = "omni.stage.first_output";
/// OpenTelemetry's `error.type` (vLLM-Omni's: `stage_error`, or what failed).
const ERROR_TYPE: &str = "error.type";

/// The outcomes read as `aborted`: the request was dropped unfinished.
const ABORTED: [&str; 4] = ["aborted", "abort", "cancelled", "canceled"];

/// Whether an attribute is read (vLLM-Omni's names).
pub(crate) fn kept(key: &str) -> bool {
    matches!(
        key,
        REQUEST_ID | OUTCOME | STAGE_ID | STAGE_TYPE | REPLICA_ID
    )
}

/// What a span of vLLM-Omni's shape is: `omni.pipeline` a request, an `omni.stage` with
/// `omni.stage.id` and no `stage_id` a stage; `None` for any other span.
pub(crate) fn kind(name: &str, has: impl Fn(&str) -> bool) -> Option<SpanKind> {
    match name {
        PIPELINE => Some(SpanKind::Request),
        STAGE if has(STAGE_ID) && !has(field::STAGE_ID) => Some(SpanKind::Stage),
        _ => None,
    }
}

/// The source of the spans [`kind`] recognises.
pub(crate) const SOURCE: TraceSource = TraceSource::VllmOmni;

/// A request's status and why it failed, from its span: `error.type` or status ERROR is
/// `error` (its `status_message` the `error.type`, else the status message); otherwise
/// `omni.request.outcome`: `success` (or `ok`) or none is `ok`, `error` is `error`,
/// `aborted`, `abort`, `cancelled` or `canceled` is `aborted`, and any other outcome is
/// `error` with the outcome as its `status_message` (a request that did not succeed is
/// never counted with those that did).
pub(crate) fn status(
    outcome: Option<&str>,
    error_type: Option<&str>,
    error: Option<&str>,
) -> (RequestStatus, Option<String>) {
    let said = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_owned);
    if error_type.is_some() || error.is_some() {
        return (
            RequestStatus::Error,
            said(error_type).or_else(|| said(error)),
        );
    }
    match outcome.map(str::trim) {
        None | Some("success" | "ok") => (RequestStatus::Ok, None),
        Some("error") => (RequestStatus::Error, None),
        Some(o) if ABORTED.contains(&o.to_ascii_lowercase().as_str()) => {
            (RequestStatus::Aborted, None)
        }
        Some(o) => (RequestStatus::Error, said(Some(o))),
    }
}

/// The convention's fields of a span of vLLM-Omni's shape (`kind` from [`kind`]); values
/// that cannot be taken (a stage id that is no count) are said through `problem`.
pub(crate) fn fields(
    kind: SpanKind,
    raw: &RawSpan<'_>,
    problem: &mut dyn FnMut(String),
) -> Vec<(Key, AttrValue)> {
    let get = |key: &str| {
        raw.attributes
            .iter()
            .rev()
            .find_map(|(k, v)| (*k == key).then_some(v))
    };
    let text = |key: &str| match get(key) {
        Some(AttrValue::Str(s)) => Some(&**s),
        _ => None,
    };
    let mut fields: Vec<(Key, AttrValue)> = Vec::new();
    match kind {
        SpanKind::Request => {
            match get(REQUEST_ID) {
                Some(AttrValue::Str(s)) => {
                    fields.push((field::REQUEST_ID.into(), AttrValue::Str(s.clone())));
                }
                Some(AttrValue::Int(i)) => {
                    fields.push((
                        field::REQUEST_ID.into(),
                        AttrValue::Str(i.to_string().into()),
                    ));
                }
                Some(v) => problem(format!("`{REQUEST_ID}` = {v:?} is not a request id")),
                None => {}
            }
            let (status, message) = status(text(OUTCOME), text(ERROR_TYPE), raw.error);
            fields.push((field::STATUS.into(), AttrValue::Str(status.as_str().into())));
            if let Some(message) = message {
                fields.push((field::STATUS_MESSAGE.into(), AttrValue::Str(message.into())));
            }
        }
        SpanKind::Stage => {
            for (theirs, ours) in [(STAGE_ID, field::STAGE_ID), (REPLICA_ID, field::REPLICA_ID)] {
                let Some(v) = get(theirs) else { continue };
                match v.count().and_then(|n| i64::try_from(n).ok()) {
                    Some(n) => fields.push((ours.into(), AttrValue::Int(n))),
                    None => problem(format!("`{theirs}` = {v:?} is not an id (a count)")),
                }
            }
            if let Some(name) = text(STAGE_TYPE) {
                fields.push((field::STAGE_NAME.into(), AttrValue::Str(name.into())));
            }
        }
        _ => {}
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelines_are_requests_and_stages_are_told_by_their_id() {
        let has = |keys: &'static [&'static str]| move |k: &str| keys.contains(&k);
        assert_eq!(kind(PIPELINE, has(&[])), Some(SpanKind::Request));
        assert_eq!(kind(STAGE, has(&[STAGE_ID])), Some(SpanKind::Stage));
        // The convention's own stage.
        assert_eq!(kind(STAGE, has(&["stage_id"])), None);
        assert_eq!(kind(STAGE, has(&[STAGE_ID, "stage_id"])), None);
        assert_eq!(kind(STAGE, has(&[])), None);
        assert_eq!(kind("omni.request", has(&[REQUEST_ID])), None);
    }

    #[test]
    fn outcomes_become_statuses() {
        use RequestStatus::{Aborted, Error, Ok};
        assert_eq!(status(Some("success"), None, None), (Ok, None));
        assert_eq!(status(None, None, None), (Ok, None));
        assert_eq!(status(Some("error"), None, None), (Error, None));
        assert_eq!(
            status(Some("error"), Some("stage_error"), Some("")),
            (Error, Some("stage_error".into()))
        );
        assert_eq!(
            status(Some("success"), None, Some("boom")),
            (Error, Some("boom".into()))
        );
        assert_eq!(status(Some("aborted"), None, None), (Aborted, None));
        assert_eq!(status(Some("Cancelled"), None, None), (Aborted, None));
        assert_eq!(
            status(Some("timeout"), None, None),
            (Error, Some("timeout".into()))
        );
    }
}
