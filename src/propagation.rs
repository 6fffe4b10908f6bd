//! One request across processes: carry its trace context and id with the data.
//!
//! The sending side [`inject`]s the request's W3C trace context (`traceparent`,
//! `tracestate`, through OpenTelemetry's `TraceContextPropagator`, never a format of our
//! own) and its id (`omni-request-id`, plus `omni-edge` for a transfer) into a [`Carrier`]:
//! a string map, HTTP headers, gRPC metadata (`tonic::metadata::MetadataMap::as_mut()` is an
//! `http::HeaderMap`). The receiving side [`extract`]s a [`Remote`] and opens its stage or
//! the receiving half of the transfer *from it*: the span starts with the remote parent
//! already set, so it cannot be set too late (`tracing-opentelemetry` ignores a parent set
//! after the span started).
//!
//! A missing or malformed context never fails the engine: the span starts a fresh trace, a
//! warning says so once, and [`fresh_traces`] counts it. Without the `otlp` feature the
//! helpers still carry the request id (the trace context is then neither written nor read).
//!
//! ```
//! use std::collections::HashMap;
//! use omni_metrics::instrument::Request;
//! use omni_metrics::propagation;
//!
//! // Orchestrator: hand stage 1's input to a worker process, with the context alongside.
//! let request = Request::start("r-17");
//! let transfer = request.transfer(0, 1);
//! let mut headers = HashMap::new();
//! propagation::inject_transfer(transfer.span(), "r-17", 0, 1, &mut headers);
//! assert_eq!(headers["omni-request-id"], "r-17");
//! assert_eq!(headers["omni-edge"], "0->1");
//!
//! // Worker: decode the input, then run stage 1, both in the request's trace.
//! let remote = propagation::extract(&headers);
//! assert_eq!(remote.request_id(), Some("r-17"));
//! drop(remote.rx_decode());
//! let stage = remote.stage(1);
//! stage.tokens_out(275);
//! ```
//!
//! A stage or transfer opened from a [`Remote`] carries `remote_request` (the request's id):
//! it is remote work, which the metrics layer counts apart
//! ([`Totals::remote_spans`](crate::Totals::remote_spans)) and leaves out of the tables,
//! whether or not an `omni.request` encloses it (in a trace rebuilt from several processes
//! it does). The process that owns the request has the tables: open its own stage span
//! around the remote call, inject *that* span's context (the remote stage then nests under
//! it in the trace), and record the times measured remotely on it with the explicit fields
//! ([`Stage::gen_time_ms`], [`Transfer::times_ms`]).
#![doc = include_str!("../docs/reference/propagation.md")]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tracing::Span;

use crate::convention::{field, omni_span};
use crate::instrument::{Stage, Timing, Transfer};
use crate::stats::EdgeName;

/// The carrier key of the request id.
pub const REQUEST_ID_KEY: &str = "omni-request-id";
/// The carrier key of the sending stage's replica (`"3"`), when it runs as several: set it
/// with [`set_replica`]; [`Remote::rx_decode`] records it as the transfer's `from_replica`.
pub const REPLICA_KEY: &str = "omni-replica";
/// The carrier key of the edge (`"0->1"`) a transfer's context crosses.
pub const EDGE_KEY: &str = "omni-edge";
/// The carrier key of the stage a stage's context is for.
pub const STAGE_KEY: &str = "omni-stage";
/// The W3C trace context keys, written and read by OpenTelemetry's propagator.
pub const TRACE_CONTEXT_KEYS: [&str; 2] = ["traceparent", "tracestate"];

/// Where a context is written and read: a string map, HTTP headers, gRPC metadata.
pub trait Carrier {
    /// Sets `key` (lowercase ASCII) to `value`; a value the carrier cannot hold is skipped.
    fn set(&mut self, key: &str, value: String);
    /// The value of `key`, if present and text.
    fn get(&self, key: &str) -> Option<&str>;
}

impl Carrier for HashMap<String, String> {
    fn set(&mut self, key: &str, value: String) {
        self.insert(key.to_owned(), value);
    }
    fn get(&self, key: &str) -> Option<&str> {
        HashMap::get(self, key).map(String::as_str)
    }
}

impl Carrier for BTreeMap<String, String> {
    fn set(&mut self, key: &str, value: String) {
        self.insert(key.to_owned(), value);
    }
    fn get(&self, key: &str) -> Option<&str> {
        BTreeMap::get(self, key).map(String::as_str)
    }
}

impl Carrier for http::HeaderMap {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.insert(name, value);
        }
    }
    fn get(&self, key: &str) -> Option<&str> {
        http::HeaderMap::get(self, key).and_then(|v| v.to_str().ok())
    }
}

/// Writes the trace context of `span` (the request's, or the span the remote work hangs
/// under) and `request_id` into `carrier`.
pub fn inject(span: &Span, request_id: &str, carrier: &mut impl Carrier) {
    carrier.set(REQUEST_ID_KEY, request_id.to_owned());
    #[cfg(feature = "otlp")]
    otel::inject(span, carrier);
    #[cfg(not(feature = "otlp"))]
    let _ = span;
}

/// [`inject`] for a transfer `from -> to`: its span's context, the request id and the edge,
/// so that the receiver opens the transfer's receiving half ([`Remote::rx_decode`]).
pub fn inject_transfer(
    transfer: &Span,
    request_id: &str,
    from: u64,
    to: u64,
    carrier: &mut impl Carrier,
) {
    inject(transfer, request_id, carrier);
    carrier.set(EDGE_KEY, EdgeName { from, to }.to_string());
}

/// Adds the sending stage's replica to a carrier [`inject_transfer`] wrote, so that the
/// receiving half of the transfer has its `from_replica` (the receiver sets its own
/// `to_replica`: `remote_rx.transfer()` and [`Transfer::replicas`]).
///
/// ```
/// use std::collections::HashMap;
/// let mut headers = HashMap::new();
/// omni_metrics::propagation::set_replica(3, &mut headers);
/// assert_eq!(omni_metrics::propagation::extract(&headers).replica_id(), Some(3));
/// ```
pub fn set_replica(replica_id: u64, carrier: &mut impl Carrier) {
    carrier.set(REPLICA_KEY, replica_id.to_string());
}

/// [`inject`] for a stage run elsewhere: the context of the span it nests under (the
/// owner's own stage span), the request id and the stage id, so that the receiver opens it
/// with [`Remote::stage`] (`remote.stage(remote.stage_id().unwrap_or(..))`).
pub fn inject_stage(span: &Span, request_id: &str, stage_id: u64, carrier: &mut impl Carrier) {
    inject(span, request_id, carrier);
    carrier.set(STAGE_KEY, stage_id.to_string());
}

/// Reads what [`inject`] wrote. Never fails: a missing or malformed trace context gives a
/// [`Remote`] that starts a fresh trace (counted in [`fresh_traces`]).
///
/// It warns once when something the sender wrote did not arrive whole: no request id (the
/// keys were not passed along), or a `traceparent` that is not a valid one. A carrier with
/// a request id and no `traceparent` is what a sender that exports no traces writes: its
/// remote work starts a fresh trace, without a warning.
pub fn extract(carrier: &impl Carrier) -> Remote {
    let request_id = carrier.get(REQUEST_ID_KEY).map(str::to_owned);
    let edge = carrier.get(EDGE_KEY).and_then(parse_edge);
    let stage = carrier.get(STAGE_KEY).and_then(|s| s.trim().parse().ok());
    let replica = carrier.get(REPLICA_KEY).and_then(|s| s.trim().parse().ok());
    #[cfg(feature = "otlp")]
    let parent = otel::extract(carrier);
    #[cfg(feature = "otlp")]
    let fresh = parent.is_none();
    #[cfg(not(feature = "otlp"))]
    let fresh = false;
    if fresh || request_id.is_none() {
        let malformed = carrier.get(TRACE_CONTEXT_KEYS[0]).is_some();
        note_fresh(
            request_id.is_none(),
            request_id.is_none() || (fresh && malformed),
        );
    }
    Remote {
        request_id,
        edge,
        stage,
        replica,
        #[cfg(feature = "otlp")]
        parent,
    }
}

fn parse_edge(text: &str) -> Option<EdgeName> {
    let (from, to) = text.split_once("->")?;
    Some(EdgeName {
        from: from.trim().parse().ok()?,
        to: to.trim().parse().ok()?,
    })
}

static FRESH: AtomicU64 = AtomicU64::new(0);
static WARNED: AtomicBool = AtomicBool::new(false);

fn note_fresh(no_request_id: bool, warn: bool) {
    FRESH.fetch_add(1, Ordering::Relaxed);
    if warn && !WARNED.swap(true, Ordering::Relaxed) {
        let what = if no_request_id {
            "no `omni-request-id`"
        } else {
            "no valid `traceparent`"
        };
        tracing::warn!(
            target: "omni_metrics::diagnostics",
            "a propagated context had {what}: the remote work starts a fresh trace (reported \
             once; counted in `propagation::fresh_traces()`). Call `propagation::inject` on \
             the sending side and pass every key it writes along with the data."
        );
    }
}

/// How many extracted contexts lacked a valid trace context or request id, in this process.
pub fn fresh_traces() -> u64 {
    FRESH.load(Ordering::Relaxed)
}

/// A request's context received from another process: open the work done here from it.
#[derive(Clone, Debug, Default)]
pub struct Remote {
    request_id: Option<String>,
    edge: Option<EdgeName>,
    stage: Option<u64>,
    replica: Option<u64>,
    #[cfg(feature = "otlp")]
    parent: Option<opentelemetry::Context>,
}

impl Remote {
    /// The request's id, if it was carried.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The edge the context crossed, for a transfer's.
    pub fn edge(&self) -> Option<EdgeName> {
        self.edge
    }

    /// The sending stage's replica, when [`set_replica`] wrote it.
    pub fn replica_id(&self) -> Option<u64> {
        self.replica
    }

    /// The stage the context is for, when [`inject_stage`] wrote it.
    pub fn stage_id(&self) -> Option<u64> {
        self.stage
    }

    /// Whether the remote work continues the sender's trace (a valid `traceparent` was
    /// read; always `false` without the `otlp` feature).
    pub fn continues_trace(&self) -> bool {
        #[cfg(feature = "otlp")]
        return self.parent.is_some();
        #[cfg(not(feature = "otlp"))]
        false
    }

    /// Opens stage `stage_id` of the request here, a child of the remote span in the trace.
    pub fn stage(&self, stage_id: u64) -> Stage {
        let span = omni_span!(
            stage(stage_id),
            [parent: None],
            { field::REMOTE_REQUEST } = self.request_id.as_deref().unwrap_or_default(),
            otel.name = %format_args!("stage {stage_id}"),
            otel.kind = "internal",
        );
        self.adopt(&span);
        Stage::from_span(span)
    }

    /// Opens the receiving half of the transfer the context came with (an `omni.transfer`
    /// span, on the edge carried, a child of the sender's transfer span in the trace) and
    /// its `omni.transfer.rx_decode` child: time the take and decode with the returned
    /// guard; the transfer closes with it.
    pub fn rx_decode(&self) -> RemoteRx {
        let edge = self.edge.unwrap_or_default();
        let span = omni_span!(
            transfer(edge.from, edge.to),
            [parent: None],
            { field::REMOTE_REQUEST } = self.request_id.as_deref().unwrap_or_default(),
            otel.name = %format_args!("transfer {edge} rx"),
            otel.kind = "consumer",
        );
        self.adopt(&span);
        if let Some(replica) = self.replica {
            span.record(field::FROM_REPLICA, replica);
        }
        let transfer = Transfer::from_span(span);
        let rx = transfer.rx_decode();
        RemoteRx { _rx: rx, transfer }
    }

    /// Sets the remote parent before the span starts (it cannot be set later).
    fn adopt(&self, span: &Span) {
        #[cfg(feature = "otlp")]
        if let Some(parent) = &self.parent {
            use tracing_opentelemetry::OpenTelemetrySpanExt as _;
            let _ = span.set_parent(parent.clone());
        }
        #[cfg(not(feature = "otlp"))]
        let _ = span;
    }
}

/// The receiving half of a transfer from another process ([`Remote::rx_decode`]): dropping
/// it ends the decode, then the transfer.
#[derive(Debug)]
#[must_use = "the decode's time ends when this is dropped"]
pub struct RemoteRx {
    // Held to be dropped: fields drop in order, so the decode ends before the transfer.
    _rx: Timing,
    transfer: Transfer,
}

impl RemoteRx {
    /// The transfer's span (its `size_bytes` can be recorded through [`RemoteRx::transfer`]).
    pub fn transfer(&self) -> Option<&Transfer> {
        Some(&self.transfer)
    }
}

#[cfg(feature = "otlp")]
mod otel {
    use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
    use opentelemetry::trace::TraceContextExt as _;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    use super::Carrier;

    struct In<'a, C: ?Sized>(&'a mut C);
    impl<C: Carrier + ?Sized> Injector for In<'_, C> {
        fn set(&mut self, key: &str, value: String) {
            self.0.set(key, value);
        }
    }

    struct Out<'a, C: ?Sized>(&'a C);
    impl<C: Carrier + ?Sized> Extractor for Out<'_, C> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key)
        }
        fn keys(&self) -> Vec<&str> {
            super::TRACE_CONTEXT_KEYS.to_vec()
        }
    }

    pub(super) fn inject<C: Carrier + ?Sized>(span: &tracing::Span, carrier: &mut C) {
        let cx = span.context();
        if cx.span().span_context().is_valid() {
            TraceContextPropagator::new().inject_context(&cx, &mut In(carrier));
        }
    }

    /// The remote parent, if the carrier holds a valid one.
    pub(super) fn extract<C: Carrier + ?Sized>(carrier: &C) -> Option<opentelemetry::Context> {
        let cx = TraceContextPropagator::new().extract(&Out(carrier));
        cx.span().span_context().is_valid().then_some(cx)
    }
}
