//! Names and numbers on exported spans, and the [`AnnotationLayer`] that closes the
//! metrics layer's spans just before the OpenTelemetry layer exports them.

#[cfg(feature = "otlp")]
use std::sync::Arc;

#[cfg(feature = "otlp")]
use tracing_core::Subscriber;
use tracing_core::span::Id;
#[cfg(feature = "otlp")]
use tracing_subscriber::layer::Context;
#[cfg(feature = "otlp")]
use tracing_subscriber::registry::LookupSpan;

use super::Inner;
#[cfg(feature = "otlp")]
use super::table::{Slot, Table};

/// Request-span attribute keys for each stage's gen time (`stage_{i}_gen_time_ms`), as
/// static strings; stages beyond the last are left out of the attributes (not the tables).
pub(super) const STAGE_KEYS: [&str; 8] = [
    "stage_0_gen_time_ms",
    "stage_1_gen_time_ms",
    "stage_2_gen_time_ms",
    "stage_3_gen_time_ms",
    "stage_4_gen_time_ms",
    "stage_5_gen_time_ms",
    "stage_6_gen_time_ms",
    "stage_7_gen_time_ms",
];

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
        via.and_then(|dispatch| crate::otlp::annotate(dispatch, id, annotation, want_trace_id))
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

/// Runs the metrics layers' close of `omni.*` spans just before the OpenTelemetry layer
/// ends them, and annotates through the subscriber it is part of.
///
/// The layers of a subscriber close a span in the order they were added. The metrics
/// layer puts names and numbers on the exported span when it closes; if the OpenTelemetry
/// layer was added first, it would have ended (and exported) the span already. This layer,
/// placed right before the OpenTelemetry layer, makes the order of the two irrelevant.
/// [`OtlpPipeline::layer`](crate::otlp::OtlpPipeline::layer) includes it; add it yourself
/// only in front of an OpenTelemetry layer you build:
///
/// ```
/// use omni_metrics::otlp::AnnotationLayer;
/// use tracing_subscriber::prelude::*;
///
/// let otel = tracing_opentelemetry::layer(); // with your own tracer
/// let metrics = omni_metrics::OmniMetricsLayer::builder()
///     .with_console(false)
///     .with_trace_annotations(true)
///     .build()?;
/// let subscriber = tracing_subscriber::registry()
///     .with(AnnotationLayer::new().and_then(otel))
///     .with(metrics); // after the OpenTelemetry layer: fine
/// # drop(subscriber);
/// # Ok::<(), omni_metrics::BuildError>(())
/// ```
#[cfg(feature = "otlp")]
#[derive(Debug, Default)]
pub struct AnnotationLayer {
    dispatch: std::sync::OnceLock<tracing::dispatcher::WeakDispatch>,
    /// The metrics layers of the same subscriber that want annotations, with their tables:
    /// they register when the subscriber is built, before any span.
    owners: [std::sync::OnceLock<Owner>; MAX_OWNERS],
}

/// What is said when an [`AnnotationLayer`] cannot be reached through its subscriber.
#[cfg(feature = "otlp")]
const HIDDEN: &str = "the OpenTelemetry layer (`OtlpPipeline::layer()`, or an `AnnotationLayer` \
     with its OpenTelemetry layer) is inside a layer that hides it from the subscriber, such \
     as `tracing_subscriber::reload`: exported spans will lack the tables' names and numbers, \
     and request records their trace ids (the tables, records and metrics are unaffected). \
     Add it to the subscriber outside `reload`.";

/// Metrics layers with annotations one [`AnnotationLayer`] serves at most.
#[cfg(feature = "otlp")]
const MAX_OWNERS: usize = 4;

/// A metrics layer an [`AnnotationLayer`] closes spans for.
#[cfg(feature = "otlp")]
#[derive(Debug, Clone)]
struct Owner {
    inner: Arc<Inner>,
    table: Arc<Table>,
}

#[cfg(feature = "otlp")]
impl AnnotationLayer {
    /// The layer; put it right before (`.and_then`) the OpenTelemetry layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A metrics layer of the same subscriber, with annotations on (once each).
    pub(super) fn register(&self, inner: Arc<Inner>, table: Arc<Table>) {
        let mut known = self.owners.iter().map_while(std::sync::OnceLock::get);
        if known.any(|o| Arc::ptr_eq(&o.table, &table)) {
            return;
        }
        let mut owner = Owner { inner, table };
        for slot in &self.owners {
            match slot.set(owner) {
                Ok(()) => return,
                Err(back) => owner = back,
            }
        }
    }
}

#[cfg(feature = "otlp")]
impl<S> tracing_subscriber::Layer<S> for AnnotationLayer
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
        if subscriber.downcast_ref::<AnnotationLayer>().is_none() {
            // Told of the subscriber but not reachable through it: inside a layer that
            // refuses downcasts, as `reload` does. The OpenTelemetry layer beside it cannot
            // be reached either, and its spans' context is what annotating needs.
            crate::diagnostics::warn_soon(subscriber, vec![HIDDEN.to_owned()]);
        }
        // The metrics layers register themselves; one that is not told of the subscriber
        // (inside an `Option`) is found from here.
        if let Some(metrics) = subscriber.downcast_ref::<super::OmniMetricsLayer>() {
            metrics.register_annotations(self);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let key = id.into_u64();
        let mut dispatch = None;
        for owner in self.owners.iter().map_while(std::sync::OnceLock::get) {
            if !owner.table.may_hold(key) {
                continue;
            }
            // Timing children and batches are left to the layer's own close.
            let Some(slot) = owner.table.remove_if(key, Slot::annotated) else {
                continue;
            };
            if dispatch.is_none() {
                dispatch = crate::otlp::dispatch_of_layer(self, &self.dispatch);
            }
            let closing = super::Closing {
                id: &id,
                now: owner.inner.clock.now(),
                via: dispatch.as_ref(),
                trace: None,
            };
            owner.inner.close(&owner.table, None, slot, &closing, &ctx);
        }
    }
}

#[cfg(all(test, feature = "otlp"))]
mod tests {
    use super::*;
    use tracing_subscriber::prelude::*;

    fn owners(dispatch: &tracing::Dispatch) -> usize {
        let annotation = dispatch.downcast_ref::<AnnotationLayer>();
        annotation.map_or(0, |a| {
            a.owners.iter().map_while(std::sync::OnceLock::get).count()
        })
    }

    fn annotating() -> super::super::OmniMetricsLayer {
        super::super::OmniMetricsLayer::builder()
            .with_console(false)
            .with_trace_annotations(true)
            .build()
            .expect("no file")
    }

    /// Each metrics layer that annotates is found once, also inside an `Option` (which
    /// tracing-subscriber does not tell of its subscriber).
    #[test]
    fn the_annotation_layer_serves_each_annotating_metrics_layer_once() {
        let plain = tracing::Dispatch::new(
            tracing_subscriber::registry()
                .with(annotating())
                .with(AnnotationLayer::new()),
        );
        assert_eq!(owners(&plain), 1);
        let optional = tracing::Dispatch::new(
            tracing_subscriber::registry()
                .with(Some(annotating()))
                .with(AnnotationLayer::new()),
        );
        assert_eq!(owners(&optional), 1);
        let quiet = super::super::OmniMetricsLayer::builder()
            .with_console(false)
            .build()
            .expect("no file");
        let none = tracing::Dispatch::new(
            tracing_subscriber::registry()
                .with(quiet)
                .with(AnnotationLayer::new()),
        );
        assert_eq!(owners(&none), 0);
    }
}
