//! What is exported: the OpenTelemetry layer's own filter.
//!
//! Exported by default: every `omni.*` span, the engine's other spans and events at `INFO`
//! and above. Never exported: spans and events of the exporter's own crates (gRPC, HTTP, the
//! OpenTelemetry SDK: an exporter that traced itself would export its own export forever),
//! and `DEBUG`/`TRACE` events unless the filter asks for them (an engine's
//! `debug!(prompt = ...)` must not leave the process by default).

use tracing_core::subscriber::Interest;
use tracing_core::{Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::LookupSpan;

use crate::env::{OTEL_FILTER_ENV, TRACE_DETAIL_ENV};

/// How much of each request goes into its trace. Whatever the detail, every span still
/// feeds the tables and metrics: this only thins the export (a streamed stage's chunk
/// events and the timing spans dominate trace volume).
///
/// ```
/// use omni_metrics::otlp::{OtlpPipeline, TraceDetail};
/// assert_eq!(TraceDetail::default(), TraceDetail::Full);
/// // A production trace: requests, stages and transfers, no timing children.
/// let builder = OtlpPipeline::builder().with_trace_detail(TraceDetail::Stages);
/// # drop(builder);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum TraceDetail {
    /// The requests only (`omni.request`; runs are exported as ever).
    Requests,
    /// Requests, stages, transfers and batches: a production trace. The timing children
    /// (`omni.queue`, `omni.postprocess`, `omni.transfer.tx`, `omni.transfer.rx_decode`)
    /// and the `omni.output` chunk events stay out.
    Stages,
    /// Everything (the default).
    #[default]
    Full,
}

impl TraceDetail {
    /// Parses `full`, `stages` or `requests` (any case); `None` otherwise.
    pub(super) fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "full" => Some(Self::Full),
            "stages" => Some(Self::Stages),
            "requests" => Some(Self::Requests),
            _ => None,
        }
    }

    /// From code if given, else `OMNI_METRICS_TRACE_DETAIL` (a bad value is warned about and
    /// ignored), else [`TraceDetail::Full`].
    pub(super) fn resolve(code: Option<TraceDetail>) -> Self {
        if let Some(detail) = code {
            return detail;
        }
        match super::env::nonempty(TRACE_DETAIL_ENV) {
            Some(text) => Self::parse(&text).unwrap_or_else(|| {
                tracing::warn!(
                    target: "omni_metrics::diagnostics",
                    "{TRACE_DETAIL_ENV}={text:?} is not `full`, `stages` or `requests`: \
                     exporting everything (`full`)."
                );
                Self::Full
            }),
            None => Self::Full,
        }
    }

    /// Whether an `omni.*` span or the `omni.output` event of this metadata is exported.
    fn exports(self, meta: &Metadata<'_>) -> bool {
        use crate::convention::SpanKind;
        if self == Self::Full {
            return true;
        }
        if meta.is_event() {
            return meta.name() != crate::convention::OUTPUT;
        }
        match SpanKind::from_name(meta.name()) {
            Some(SpanKind::Request | SpanKind::Run) => true,
            Some(SpanKind::Stage | SpanKind::Transfer | SpanKind::Batch) => self >= Self::Stages,
            Some(_) => false,
            None => true,
        }
    }
}

/// Targets (crates) never exported: the exporter's own stack.
const EXPORTER_CRATES: &[&str] = &[
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "tower_http",
    "reqwest",
    "rustls",
    "tokio",
    "tokio_util",
    "mio",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
    "opentelemetry_http",
    "tracing_opentelemetry",
];

fn is_exporter_crate(target: &str) -> bool {
    EXPORTER_CRATES.iter().any(|krate| {
        target
            .strip_prefix(krate)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

fn is_omni_span(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.name().starts_with("omni.")
}

/// `omni.run` spans are exported by [`RunLinks`](super::RunLinks) instead, so that each of
/// their requests is the root of its own trace.
fn is_run(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.name() == crate::convention::RUN
}

/// The OpenTelemetry layer's filter.
///
/// Exported: every `omni.*` span (but `omni.run`, exported by
/// [`RunLinks`](super::RunLinks)), whatever the directives say; the engine's other spans and
/// events as the directives say (default [`OtlpBuilder::DEFAULT_FILTER`](super::OtlpBuilder::DEFAULT_FILTER), `info`). Never exported:
/// the exporter's own crates (gRPC, HTTP, the OpenTelemetry SDK), whatever the directives
/// say. `DEBUG`/`TRACE` events (an engine's `debug!(prompt = ...)`) stay in the process
/// unless the directives ask for them.
#[derive(Debug)]
pub(super) struct ExportFilter {
    env: EnvFilter,
    detail: TraceDetail,
    /// Nothing passes: the layer of a pipeline that exports nothing costs no bridge work.
    nothing: bool,
}

impl ExportFilter {
    /// A filter from `EnvFilter` directives (`"info,my_engine=debug"`); invalid directives
    /// are skipped, as `RUST_LOG`'s are.
    fn new(directives: &str) -> Self {
        Self {
            env: EnvFilter::builder().parse_lossy(directives),
            detail: TraceDetail::Full,
            nothing: false,
        }
    }

    /// Exports only `detail` of each request ([`TraceDetail`]; default `Full`).
    #[must_use]
    pub(super) fn with_detail(mut self, detail: TraceDetail) -> Self {
        self.detail = detail;
        self
    }

    /// A filter that lets nothing through.
    pub(super) fn nothing() -> Self {
        Self {
            env: EnvFilter::builder().parse_lossy("off"),
            detail: TraceDetail::Full,
            nothing: true,
        }
    }

    /// From code if given, else `OMNI_METRICS_OTEL_FILTER`, else
    /// [`OtlpBuilder::DEFAULT_FILTER`](super::OtlpBuilder::DEFAULT_FILTER).
    pub(super) fn resolve(code: Option<&str>) -> Self {
        match code {
            Some(directives) => Self::new(directives),
            None => match super::env::nonempty(OTEL_FILTER_ENV) {
                Some(directives) => Self::new(&directives),
                None => Self::new(super::OtlpBuilder::DEFAULT_FILTER),
            },
        }
    }
}

impl<S> Filter<S> for ExportFilter
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        // Cheapest first: most spans and events are decided by the level directives.
        if self.nothing || is_run(meta) {
            false
        } else if is_omni_span(meta) {
            self.detail.exports(meta)
        } else {
            Filter::<S>::enabled(&self.env, meta, cx)
                && !is_exporter_crate(meta.target())
                && self.detail.exports(meta)
        }
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.nothing
            || is_exporter_crate(meta.target())
            || is_run(meta)
            || !self.detail.exports(meta)
        {
            Interest::never()
        } else if is_omni_span(meta) {
            Interest::always()
        } else {
            Filter::<S>::callsite_enabled(&self.env, meta)
        }
    }

    fn event_enabled(&self, event: &tracing_core::Event<'_>, cx: &Context<'_, S>) -> bool {
        Filter::<S>::event_enabled(&self.env, event, cx)
    }

    fn on_new_span(
        &self,
        attrs: &tracing_core::span::Attributes<'_>,
        id: &tracing_core::span::Id,
        ctx: Context<'_, S>,
    ) {
        Filter::<S>::on_new_span(&self.env, attrs, id, ctx);
    }

    fn on_record(
        &self,
        id: &tracing_core::span::Id,
        values: &tracing_core::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        Filter::<S>::on_record(&self.env, id, values, ctx);
    }

    fn on_enter(&self, id: &tracing_core::span::Id, ctx: Context<'_, S>) {
        Filter::<S>::on_enter(&self.env, id, ctx);
    }

    fn on_exit(&self, id: &tracing_core::span::Id, ctx: Context<'_, S>) {
        Filter::<S>::on_exit(&self.env, id, ctx);
    }

    fn on_close(&self, id: tracing_core::span::Id, ctx: Context<'_, S>) {
        Filter::<S>::on_close(&self.env, id, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exporter_crates_are_matched_by_crate_not_prefix() {
        assert!(is_exporter_crate("h2"));
        assert!(is_exporter_crate("h2::codec"));
        assert!(is_exporter_crate("opentelemetry_sdk::trace"));
        assert!(!is_exporter_crate("h2o_engine"));
        assert!(!is_exporter_crate("my_engine::tonic"));
    }
}
