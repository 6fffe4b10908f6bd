//! What is kept of an exported span: its place in the trace, its times, and the attributes
//! and events the convention reads. Everything else is dropped when the span is read.

use super::vllm_omni;
use crate::convention::{self, FieldKind, SpanKind, exported, field};
use crate::stats::{RequestStatus, TraceSource, keys};

/// An attribute value, as OTLP carries it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum AttrValue {
    Int(i64),
    Double(f64),
    Str(Box<str>),
    Bool(bool),
    /// A value that no OTLP attribute can hold (an `intValue` beyond int64, a number that
    /// is not one), said as written: it is never recorded, only reported.
    Invalid(Box<str>),
}

/// 2^64: the first double a count (`u64`) cannot hold (`as u64` would saturate silently).
const COUNT_LIMIT: f64 = 18_446_744_073_709_551_616.0;

impl AttrValue {
    /// The value as a count (an `omni.output` event's `units`): a non-negative integer,
    /// a whole non-negative double below 2^64, or text holding one; `None` otherwise.
    pub(crate) fn count(&self) -> Option<u64> {
        match self {
            AttrValue::Int(i) => u64::try_from(*i).ok(),
            AttrValue::Double(d) if (0.0..COUNT_LIMIT).contains(d) && d.fract() == 0.0 => {
                Some(*d as u64)
            }
            AttrValue::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// The longest time a span's timestamps may give, in ns: 10^12 ms, the bound the layer
/// puts on explicit `*_ms` fields (31 years; a clock in the wrong unit goes beyond it).
pub(crate) const MAX_SPAN_NS: u64 = 1_000_000_000_000_000_000;

/// Whether a field's value is a count or an id (`u64`): a double at or beyond 2^64 would
/// become `u64::MAX` in the layer.
fn is_count(key: &str) -> bool {
    convention::span_field(key).is_some_and(|f| f.kind == FieldKind::Count)
}

/// Values of a span of the convention that the replay did not take: each is left out (as
/// the layer leaves out an invalid field) and the span counts in its request's
/// `invalid_spans`; the reader says the first with the span's file and line.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Problem {
    /// What the first few were, e.g. ``` `num_tokens_out` = 1e308 is beyond what a count
    /// holds (2^64) ```.
    pub(crate) said: Vec<String>,
    /// How many values were left out.
    pub(crate) values: u32,
    /// Its timestamps were unreadable or too far apart: its window is its children's.
    pub(crate) bad_time: bool,
}

impl Problem {
    /// How many values of one span are described (the rest are counted).
    const SAID: usize = 4;

    fn add(problem: &mut Option<Box<Problem>>, what: impl FnOnce() -> String) {
        let p = problem.get_or_insert_with(Box::default);
        if p.said.len() < Self::SAID {
            p.said.push(what());
        }
        p.values = p.values.saturating_add(1);
    }
}

/// Attributes the layer's trace annotations put on exported spans; read only to classify a
/// span whose name the engine chose (`otel.name`).
const E2E_TOTAL_MS: &str = keys::E2E_TOTAL_MS;
const QUEUE_TIME_MS: &str = keys::QUEUE_TIME_MS;
const E2E_REQUESTS: &str = keys::E2E_REQUESTS;
/// OpenTelemetry's `error.type`: `aborted` or `error` on a failed request's span.
const ERROR_TYPE: &str = "error.type";

/// Whether an attribute is kept when a span is read.
pub(crate) fn kept(key: &str) -> bool {
    field::is_known(key)
        || matches!(
            key,
            E2E_TOTAL_MS | QUEUE_TIME_MS | E2E_REQUESTS | ERROR_TYPE
        )
        || vllm_omni::kept(key)
}

/// A kept attribute's key: the convention's own `&'static str` when it is one (not
/// copied).
fn key(k: &str) -> Key {
    match convention::field_def(k) {
        Some(f) => Key::Borrowed(f.name),
        None => Key::Owned(k.to_owned()),
    }
}

/// A field's key.
pub(crate) type Key = std::borrow::Cow<'static, str>;

/// One `omni.output` event: its time and `units`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Output {
    pub(crate) time_ns: u64,
    pub(crate) units: Option<u64>,
}

/// One exported span, as kept.
#[derive(Clone, Debug)]
pub(crate) struct SpanRec {
    pub(crate) trace_id: u128,
    pub(crate) span_id: u64,
    /// `None` for a root span.
    pub(crate) parent_id: Option<u64>,
    /// `None` for spans outside the convention (kept only to link their children).
    pub(crate) kind: Option<SpanKind>,
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
    /// Convention fields, in the order they were exported (a later one wins, as a later
    /// `record` does).
    pub(crate) fields: Vec<(Key, AttrValue)>,
    /// Span links: (trace id, span id). Kept for requests only (their run).
    pub(crate) links: Vec<(u128, u64)>,
    pub(crate) outputs: Vec<Output>,
    /// Values left out (spans of the convention only).
    pub(crate) problem: Option<Box<Problem>>,
    /// A span of another shape than the convention's, given the convention's fields
    /// (vLLM-Omni's own traces): its request's record says so.
    pub(crate) source: Option<TraceSource>,
    /// An aborted request: when it was aborted (its start plus its exported
    /// `e2e_total_ms`). Its span ends later when work it spawned went on, and that work
    /// was not the request's (see the layer's rule).
    pub(crate) abort_ns: Option<u64>,
}

impl SpanRec {
    /// About the memory it holds, in bytes: what bounds the traces held open.
    pub(crate) fn weight(&self) -> u64 {
        let fields: usize = self
            .fields
            .iter()
            .map(|(k, v)| {
                std::mem::size_of::<(Key, AttrValue)>()
                    + match k {
                        Key::Owned(k) => k.len(),
                        Key::Borrowed(_) => 0,
                    }
                    + match v {
                        AttrValue::Str(s) | AttrValue::Invalid(s) => s.len(),
                        _ => 0,
                    }
            })
            .sum();
        let problem = self.problem.as_ref().map_or(0, |p| {
            std::mem::size_of::<Problem>() + p.said.iter().map(|s| s.len() + 24).sum::<usize>()
        });
        (std::mem::size_of::<Self>()
            + fields
            + self.links.len() * std::mem::size_of::<(u128, u64)>()
            + self.outputs.len() * std::mem::size_of::<Output>()
            + problem) as u64
    }
}

/// An exported span before it is classified and trimmed.
#[derive(Debug, Default)]
pub(crate) struct RawSpan<'a> {
    pub(crate) trace_id: u128,
    pub(crate) span_id: u64,
    pub(crate) parent_id: Option<u64>,
    pub(crate) name: &'a str,
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
    pub(crate) attributes: Vec<(&'a str, AttrValue)>,
    /// The span's status is ERROR, with this message.
    pub(crate) error: Option<&'a str>,
    pub(crate) links: Vec<(u128, u64)>,
    pub(crate) outputs: Vec<Output>,
    /// Values of the span that cannot be read (timestamps, an event's `units`), said.
    pub(crate) problems: Vec<String>,
    /// A timestamp could not be read (it is 0 here).
    pub(crate) bad_time: bool,
}

/// Keeps `value` as the value of `key` among `attrs`: a later one wins, as a later
/// `record` does, and a span repeating an attribute holds it once.
pub(crate) fn keep<'a>(attrs: &mut Vec<(&'a str, AttrValue)>, key: &'a str, value: AttrValue) {
    match attrs.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => attrs.push((key, value)),
    }
}

/// What an exported span is: by its name (`omni.stage`), by the name the layer's trace
/// annotations gave it (`stage 0 thinker`, `request`, `transfer 0->1`, `run`, and the
/// `request r-1` and `run run-3` of files written before names left ids out) when its
/// attributes agree, or, for a span the engine named itself (`otel.name`, e.g. `chat
/// qwen3-omni`), by the attributes the annotations put on it.
pub(crate) fn classify(name: &str, has: impl Fn(&str) -> bool) -> Option<SpanKind> {
    if let Some(kind) = SpanKind::from_name(name) {
        return Some(kind);
    }
    let edge = || has(field::FROM_STAGE) && has(field::TO_STAGE);
    let named = |exported: &str| {
        name.strip_prefix(exported)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
    };
    if named(exported::REQUEST) && has(field::REQUEST_ID) {
        Some(SpanKind::Request)
    } else if name.starts_with("stage ") && has(field::STAGE_ID) {
        Some(SpanKind::Stage)
    } else if name.starts_with("transfer ") && edge() {
        Some(SpanKind::Transfer)
    } else if name.starts_with("batch ") && has(field::BATCH_ID) && has(field::STAGE_ID) {
        Some(SpanKind::Batch)
    } else if named(exported::RUN) && has(E2E_REQUESTS) {
        Some(SpanKind::Run)
    } else if has(field::REQUEST_ID) && has(E2E_TOTAL_MS) {
        Some(SpanKind::Request)
    } else if has(field::STAGE_ID) && has(field::STAGE_GEN_TIME_MS) && has(QUEUE_TIME_MS) {
        Some(SpanKind::Stage)
    } else if edge() && has(field::TX_TIME_MS) && has(field::IN_FLIGHT_TIME_MS) {
        Some(SpanKind::Transfer)
    } else {
        None
    }
}

impl SpanRec {
    /// Classifies and trims `raw`.
    ///
    /// A run exported apart by an earlier version (`run run-3`, no `run_id` attribute) gets
    /// its `run_id` from its name. A request whose status is ERROR but which has no `status` attribute (another
    /// SDK) gets `status` from `error.type` (`aborted`) or `error`, and the status message as
    /// its `status_message`.
    ///
    /// A span of vLLM-Omni's own traces (see the `vllm_omni` module) is a request or a
    /// stage given the convention's fields from its own, marked with its
    /// [`source`](Self::source).
    pub(crate) fn from_raw(raw: RawSpan<'_>) -> Self {
        let has = |key: &str| raw.attributes.iter().any(|(k, _)| *k == key);
        let theirs = vllm_omni::kind(raw.name, has);
        let kind = theirs.or_else(|| classify(raw.name, has));
        let source = theirs.map(|_| vllm_omni::SOURCE);
        let mut problem = None;
        let mut fields = Vec::new();
        if let Some(theirs) = theirs {
            fields = vllm_omni::fields(theirs, &raw, &mut |what| {
                Problem::add(&mut problem, || what);
            });
        } else if kind.is_some() {
            fields = kept_fields(&raw, &mut problem);
        }
        if kind.is_some() {
            for what in &raw.problems {
                Problem::add(&mut problem, || what.clone());
            }
        }
        if theirs.is_none() {
            fill_from_export(kind, &raw, &mut fields);
        }
        let aborted = kind == Some(SpanKind::Request)
            && fields.iter().rev().find(|(k, _)| k == field::STATUS).is_some_and(|(_, v)| {
                matches!(v, AttrValue::Str(s) if &**s == RequestStatus::Aborted.as_str())
            });
        let (start_ns, end_ns, abort_ns) = times(kind, aborted, &raw, &mut problem);
        let links = match kind {
            Some(SpanKind::Request) => raw.links,
            _ => Vec::new(),
        };
        Self {
            trace_id: raw.trace_id,
            span_id: raw.span_id,
            parent_id: raw.parent_id,
            kind,
            start_ns,
            end_ns,
            fields,
            links,
            outputs: raw.outputs,
            problem,
            abort_ns,
            source,
        }
    }
}

/// The span's fields of the convention, each value the replay can take; the others are
/// left out, each said in `problem`.
fn kept_fields(raw: &RawSpan<'_>, problem: &mut Option<Box<Problem>>) -> Vec<(Key, AttrValue)> {
    let mut fields = Vec::new();
    for (k, v) in raw.attributes.iter().filter(|(k, _)| field::is_known(k)) {
        match v {
            AttrValue::Invalid(what) => {
                Problem::add(problem, || format!("`{k}`: {what}"));
            }
            AttrValue::Double(d) if is_count(k) && d.abs() >= COUNT_LIMIT => {
                Problem::add(problem, || {
                    format!("`{k}` = {d:e} is beyond what a count holds (2^64)")
                });
            }
            _ => fields.push((key(k), v.clone())),
        }
    }
    fields
}

/// What the export says in its own way: a run exported apart has its `run_id` in its name,
/// a failed request of another SDK its status in `error.type` and its span status.
fn fill_from_export(kind: Option<SpanKind>, raw: &RawSpan<'_>, fields: &mut Vec<(Key, AttrValue)>) {
    let has = |fields: &[(Key, AttrValue)], key: &str| fields.iter().any(|(k, _)| k == key);
    match kind {
        Some(SpanKind::Run) if !has(fields, field::RUN_ID) => {
            if let Some(id) = raw.name.strip_prefix("run ").filter(|id| !id.is_empty()) {
                fields.push((field::RUN_ID.into(), AttrValue::Str(id.into())));
            }
        }
        Some(SpanKind::Request) if !has(fields, field::STATUS) => {
            if let Some(message) = raw.error {
                let aborted = raw
                    .attributes
                    .iter()
                    .any(|(k, v)| *k == ERROR_TYPE && *v == AttrValue::Str("aborted".into()));
                let status = if aborted { "aborted" } else { "error" };
                fields.push((field::STATUS.into(), AttrValue::Str(status.into())));
                if !message.is_empty() && !has(fields, field::STATUS_MESSAGE) {
                    fields.push((field::STATUS_MESSAGE.into(), AttrValue::Str(message.into())));
                }
            }
        }
        _ => {}
    }
}

/// The span's start and end: a request ends where the layer measured it (its
/// `e2e_total_ms` annotation); timestamps that cannot be read, or lie more than 10^12 ms
/// apart, give a zero-length span (said in `problem`) until the replay gives it its
/// children's window.
fn times(
    kind: Option<SpanKind>,
    aborted: bool,
    raw: &RawSpan<'_>,
    problem: &mut Option<Box<Problem>>,
) -> (u64, u64, Option<u64>) {
    let (mut start_ns, mut end_ns) = (raw.start_ns, raw.end_ns.max(raw.start_ns));
    let mut abort_ns = None;
    if kind == Some(SpanKind::Request) {
        // The layer's own measure of the request (its trace annotation): the exported
        // end is read later, by the OpenTelemetry layer, after the metrics layer's close
        // has run (by milliseconds on a busy machine).
        let e2e_ms = raw.attributes.iter().rev().find_map(|(k, v)| match v {
            AttrValue::Double(ms) if *k == E2E_TOTAL_MS => Some(*ms),
            AttrValue::Int(ms) if *k == E2E_TOTAL_MS => Some(*ms as f64),
            _ => None,
        });
        if let Some(ms) = e2e_ms.filter(|ms| ms.is_finite() && *ms >= 0.0 && *ms <= 1e12) {
            let e2e_end = raw.start_ns.saturating_add((ms * 1e6).round() as u64);
            if aborted {
                // Its span may run on past the abort (work it spawned); the window stays
                // the span's, and the abort is replayed at its time.
                abort_ns = Some(e2e_end.min(end_ns));
            } else {
                end_ns = e2e_end;
            }
        }
    }
    if kind.is_some() && (raw.bad_time || end_ns - start_ns > MAX_SPAN_NS) {
        // Zero-length at the time that can be trusted (a start of 0 is unset), until the
        // replay gives it its children's window.
        let at = if start_ns == 0 { end_ns } else { start_ns };
        if !raw.bad_time {
            Problem::add(problem, || {
                format!(
                    "its timestamps ({start_ns} and {end_ns} ns) are {:e} ms apart, beyond \
                     10^12 ms (a clock in the wrong unit?)",
                    (end_ns - start_ns) as f64 / 1e6
                )
            });
        }
        problem.get_or_insert_with(Box::default).bad_time = true;
        (start_ns, end_ns) = (at, at);
        abort_ns = None;
    }
    (start_ns, end_ns, abort_ns)
}

/// Whether an exported event is an `omni.output` (tracing-opentelemetry names an event
/// without a message after the event's name), or vLLM-Omni's `omni.stage.first_output`
/// (an output without `units`).
pub(crate) fn is_output(name: &str) -> bool {
    name == convention::OUTPUT || name == vllm_omni::FIRST_OUTPUT
}

/// [`is_output`] of a name not yet known to be UTF-8.
pub(crate) fn is_output_bytes(name: &[u8]) -> bool {
    name == convention::OUTPUT.as_bytes() || name == vllm_omni::FIRST_OUTPUT.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(name: &str, keys: &[&str]) -> Option<SpanKind> {
        classify(name, |k| keys.contains(&k))
    }

    #[test]
    fn listed_fields_are_the_conventions() {
        for f in convention::FIELDS.map(|f| f.name) {
            assert!(field::is_known(f), "{f}");
        }
        assert!(matches!(key("stage_id"), Key::Borrowed(_)));
    }

    #[test]
    fn names_and_annotations_classify() {
        assert_eq!(kind_of("omni.stage", &[]), Some(SpanKind::Stage));
        assert_eq!(kind_of("omni.transfer.tx", &[]), Some(SpanKind::Tx));
        assert_eq!(
            kind_of("stage 0 thinker", &["stage_id"]),
            Some(SpanKind::Stage)
        );
        assert_eq!(
            kind_of("request r-1", &["request_id"]),
            Some(SpanKind::Request)
        );
        assert_eq!(
            kind_of("transfer 0->1", &["from_stage", "to_stage"]),
            Some(SpanKind::Transfer)
        );
        assert_eq!(kind_of("run run-3", &["e2e_requests"]), Some(SpanKind::Run));
        // Today's names: the same for every request and run.
        assert_eq!(kind_of("request", &["request_id"]), Some(SpanKind::Request));
        assert_eq!(kind_of("run", &["e2e_requests"]), Some(SpanKind::Run));
        assert_eq!(
            kind_of("batch of stage 0", &["batch_id", "stage_id"]),
            Some(SpanKind::Batch)
        );
        assert_eq!(kind_of("requested", &["request_id"]), None);
        assert_eq!(kind_of("running", &["e2e_requests"]), None);
        // The engine's own spans that only look alike.
        assert_eq!(kind_of("stage 0 thinker", &[]), None);
        assert_eq!(kind_of("run migrations", &[]), None);
        assert_eq!(kind_of("http.request", &["request_id"]), None);
        // Named by the engine (`otel.name`), annotated by the layer.
        assert_eq!(
            kind_of(
                "chat qwen3-omni",
                &["stage_id", "stage_gen_time_ms", "queue_time_ms"]
            ),
            Some(SpanKind::Stage)
        );
        assert_eq!(
            kind_of("POST /v1/chat", &["request_id", "e2e_total_ms"]),
            Some(SpanKind::Request)
        );
    }

    #[test]
    fn runs_get_their_id_from_the_name_and_failed_requests_a_status() {
        let run = SpanRec::from_raw(RawSpan {
            name: "run batch-7",
            attributes: vec![("e2e_requests", AttrValue::Int(2))],
            ..RawSpan::default()
        });
        assert_eq!(run.kind, Some(SpanKind::Run));
        assert_eq!(
            run.fields,
            vec![("run_id".into(), AttrValue::Str("batch-7".into()))]
        );
        let request = SpanRec::from_raw(RawSpan {
            name: "omni.request",
            attributes: vec![
                ("request_id", AttrValue::Str("r-1".into())),
                ("error.type", AttrValue::Str("aborted".into())),
                ("http.route", AttrValue::Str("/v1".into())),
            ],
            error: Some("aborted"),
            ..RawSpan::default()
        });
        let keys: Vec<&str> = request.fields.iter().map(|(k, _)| &**k).collect();
        assert_eq!(keys, ["request_id", "status", "status_message"]);
        assert_eq!(request.fields[1].1, AttrValue::Str("aborted".into()));
    }
}
