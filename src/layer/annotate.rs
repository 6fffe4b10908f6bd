//! What the layer puts on an exported span when it closes: a readable name and the table's
//! numbers ([`Annotation`]), handed to the OpenTelemetry layer by `otel.rs` (feature
//! `otlp`; without it, annotations go nowhere).

use tracing_core::span::Id;

use super::Inner;

/// The subscriber to annotate exported spans through, when annotations are on.
pub(super) type AnnotateVia<'a> = Option<&'a tracing::Dispatch>;

/// A number put on an exported span: a count (an OTLP int) or a time (a double).
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub(crate) enum Num {
    Count(u64),
    Float(f64),
}

/// What the layer puts on one exported span when it closes.
#[derive(Debug)]
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub(crate) struct Annotation<'a> {
    /// A readable name, unless the span named itself (`otel.name`).
    pub(crate) name: Option<std::borrow::Cow<'static, str>>,
    pub(crate) attributes: &'a [(&'static str, Num)],
    /// An id the span may not hold as a field (a run's generated `run_id`): the exported
    /// name is the same for every span of its kind, so the id is an attribute.
    pub(crate) id: Option<(&'static str, &'a str)>,
    /// A failed request: `error.type` (`error` or `aborted`) and the status message.
    pub(crate) failure: Option<(&'static str, String)>,
}

impl Inner {
    /// Puts computed numbers on the exported OpenTelemetry span `id`, so a trace viewer
    /// shows the table's figures; with `want_trace_id`, returns the span's trace id from
    /// the same lookup. Call with no lock held.
    #[cfg(feature = "otlp")]
    pub(super) fn annotate(
        &self,
        via: AnnotateVia<'_>,
        id: &Id,
        annotation: Annotation<'_>,
        want_trace_id: bool,
    ) -> Option<String> {
        via.and_then(|dispatch| super::otel::annotate(dispatch, id, annotation, want_trace_id))
    }

    #[cfg(not(feature = "otlp"))]
    pub(super) fn annotate(
        &self,
        _via: AnnotateVia<'_>,
        _id: &Id,
        _annotation: Annotation<'_>,
        _want_trace_id: bool,
    ) -> Option<String> {
        None
    }
}
