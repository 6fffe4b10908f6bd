//! Runs in traces: one trace per request, and the run as a span of its own that every
//! request links to.
//!
//! An `omni.run` is not exported through the bridge (the [`ExportFilter`] leaves it out), so
//! every request under it, typed or raw, has no exported parent and becomes the root of its
//! own trace. This layer exports the run itself: it starts an OpenTelemetry span when the run
//! opens, links each request of the run to it, and the metrics layer names it `run` (its `run_id` an attribute),
//! puts the run's summary on it and ends it when the run closes.
//!
//! [`ExportFilter`]: super::ExportFilter

use std::sync::Mutex;
use std::time::SystemTime;

use opentelemetry::Context;
use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt as _, Tracer as _};
use opentelemetry_sdk::trace::{Span as SdkSpan, Tracer};
use tracing_core::Subscriber;
use tracing_core::span::{Attributes, Id};
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::registry::LookupSpan;

use crate::convention::{self, SpanKind as OmniKind};
use crate::layer::{ExportedRun, Num, RunTrace, attribute, dispatch_of_layer, id_attribute};

/// The exported span of an `omni.run`, which the metrics layer ends (see [`RunTrace`]).
struct RunSpan {
    span: Mutex<Option<SdkSpan>>,
}

impl ExportedRun for RunSpan {
    fn context(&self) -> Option<opentelemetry::trace::SpanContext> {
        let span = self.span.lock().ok()?;
        span.as_ref().map(|s| s.span_context().clone())
    }

    fn finish(
        &self,
        name: Option<std::borrow::Cow<'static, str>>,
        attributes: &[(&'static str, Num)],
        id: Option<(&'static str, &str)>,
    ) {
        let Ok(mut slot) = self.span.lock() else {
            return;
        };
        if let Some(mut span) = slot.take() {
            if let Some(name) = name {
                span.update_name(name);
            }
            for (key, value) in attributes {
                span.set_attribute(attribute(key, *value));
            }
            if let Some(id) = id_attribute(id) {
                span.set_attribute(id);
            }
            span.end_with_timestamp(SystemTime::now());
        }
    }
}

/// Exports `omni.run` spans apart, so that each request of a run is the root of its own
/// trace, linked to the run.
///
/// The [`ExportFilter`](super::ExportFilter) leaves runs out of the bridge, so every request
/// under a run, typed or raw, has no exported parent. This layer starts the run's own
/// exported span when it opens and links each of its requests to it; the metrics layer names
/// it `run` (its `run_id` an attribute), puts the run's summary on it and ends it when the run closes.
/// [`OtlpPipeline::layer`](super::OtlpPipeline::layer) includes it, after the
/// OpenTelemetry layer.
pub(super) struct RunLinks {
    tracer: Tracer,
    dispatch: std::sync::OnceLock<tracing::dispatcher::WeakDispatch>,
}

impl std::fmt::Debug for RunLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLinks").finish_non_exhaustive()
    }
}

impl RunLinks {
    pub(super) fn new(tracer: Tracer) -> Self {
        Self {
            tracer,
            dispatch: std::sync::OnceLock::new(),
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for RunLinks
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        match OmniKind::from_name(attrs.metadata().name()) {
            Some(OmniKind::Run) => {
                let Some(span) = ctx.span(id) else { return };
                let mut ext = span.extensions_mut();
                if ext.get_mut::<RunTrace>().is_some() {
                    return; // another pipeline in this subscriber exports it
                }
                let run = self
                    .tracer
                    .span_builder(convention::RUN)
                    .with_kind(SpanKind::Internal)
                    .with_start_time(SystemTime::now())
                    .start_with_context(&self.tracer, &Context::new());
                ext.insert(RunTrace(Box::new(RunSpan {
                    span: Mutex::new(Some(run)),
                })));
            }
            Some(OmniKind::Request) => {
                let Some(span) = ctx.span(id) else { return };
                let run_context = span.scope().skip(1).find_map(|ancestor| {
                    if OmniKind::from_name(ancestor.name()) != Some(OmniKind::Run) {
                        return None;
                    }
                    ancestor.extensions().get::<RunTrace>()?.0.context()
                });
                drop(span);
                let Some(run_context) = run_context.filter(|c| c.is_valid()) else {
                    return;
                };
                let Some(dispatch) = dispatch_of_layer(self, &self.dispatch) else {
                    return;
                };
                if let Some(cx) = tracing_opentelemetry::get_otel_context(id, &dispatch) {
                    cx.span().add_link(run_context, Vec::new());
                }
            }
            _ => {}
        }
    }
}
