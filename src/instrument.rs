//! A typed API over the span convention: field names cannot be misspelled, and a request
//! dropped unfinished (a cancelled future) is marked `aborted`.
//!
//! Every type here is a thin owner of a [`tracing::Span`]; dropping it closes the span, and
//! [`span`](Request::span) gives the span for `.instrument()`, `in_scope` or an explicit
//! `parent:`. Raw spans following [`crate::convention`] work equally.
//!
//! ```
//! use omni_metrics::instrument::Request;
//!
//! let request = Request::start("r-17");
//! {
//!     let stage = request.stage(0);
//!     stage.name("thinker").batch(38, 1).tokens_in(4860);
//!     {
//!         let _queue = stage.queue(); // waiting for a batch slot
//!     }
//!     stage.tokens_out(67);
//!     let _post = stage.postprocess();
//! }
//! let transfer = request.transfer(0, 1);
//! transfer.size_bytes(1 << 20);
//! drop(transfer.tx());
//! drop(transfer.rx_decode());
//! drop(transfer);
//! request.finish();
//! ```

use tracing::{Level, Span};

use crate::convention::{self, TARGET, field, omni_span};
use crate::diagnostics::{self, Notice};
use crate::stats::RequestStatus;

/// Says once, on stderr, that a typed span was opened but no subscriber enabled it: the
/// tables would otherwise stay silently empty.
fn check_enabled(span: &Span) {
    if span.is_disabled() {
        diagnostics::stderr_notice(
            Notice::DisabledSpan,
            "an `omni.*` span was opened but no subscriber enabled it, so the metrics tables \
             stay empty. Install `omni_metrics::init()` (or add `OmniMetricsLayer` to your \
             subscriber) before the engine starts, and let INFO spans of target `omni` \
             through every filter that is not on a single layer (e.g. \
             `RUST_LOG=warn,omni=info`)."
                .to_owned(),
        );
    }
}

/// Ends a request span dropped unfinished: `error` with `status_message = "panicked"` when a
/// panic unwinds through it, `aborted` otherwise (a cancelled future, an early return).
fn close_unfinished(span: &Span) {
    if std::thread::panicking() {
        span.record(convention::field::STATUS, RequestStatus::Error.as_str());
        span.record(convention::field::STATUS_MESSAGE, "panicked");
    } else {
        span.record(convention::field::STATUS, RequestStatus::Aborted.as_str());
    }
}

/// An `omni.run`: an offline batch whose requests are summarized together when it closes.
#[derive(Debug)]
#[must_use = "the run closes (and its summary is printed) when this is dropped"]
pub struct Run {
    span: Span,
}

impl Run {
    /// Opens a run named `run-<n>`, as a child of the current span.
    pub fn start() -> Self {
        let span = omni_span!(run, []);
        check_enabled(&span);
        Self { span }
    }

    /// Opens a run whose scope is called `run_id` in the records.
    pub fn with_id(run_id: &str) -> Self {
        let run = Self::start();
        run.span.record(convention::field::RUN_ID, run_id);
        run
    }

    /// Opens a request of this run. Exported over OTLP, the request is the root of its own
    /// trace (one trace per request), linked to the run's span.
    pub fn request(&self, request_id: &str) -> Request {
        Request::child_of(&self.span, request_id)
    }

    /// The run's span.
    pub fn span(&self) -> &Span {
        &self.span
    }
}

/// An `omni.request`: one request through the pipeline.
///
/// Close it with [`Request::finish`] (`ok`) or [`Request::fail`] (`error`); dropping it
/// unfinished records `status = aborted`.
#[derive(Debug)]
#[must_use = "the request is marked aborted when dropped without finish()"]
pub struct Request {
    span: Span,
    finished: bool,
}

impl Request {
    /// Opens a request as a child of the current span: its own scope (online serving), or
    /// part of the enclosing [`Run`] if one is entered.
    pub fn start(request_id: &str) -> Self {
        let current = Span::current();
        if current
            .metadata()
            .is_some_and(|m| m.name() == convention::RUN)
        {
            // An explicit parent: exported, the request is then the root of its own trace
            // even when the run sits inside one of the engine's own spans.
            return Self::child_of(&current, request_id);
        }
        Self::checked(omni_span!(
            request(request_id),
            [],
            otel.name = convention::exported::REQUEST,
            otel.kind = "server",
        ))
    }

    /// Opens a request as a child of `parent` (an `omni.run` span, for instance).
    pub fn child_of(parent: &Span, request_id: &str) -> Self {
        let request = Self::checked(omni_span!(
            request(request_id),
            [parent: parent],
            otel.name = convention::exported::REQUEST,
            otel.kind = "server",
        ));
        request.own_trace(parent);
        request
    }

    /// Exported over OTLP, a request under a run is the root of its own trace (one trace
    /// per request), linked to the run's span, through whichever OpenTelemetry layer the
    /// subscriber has.
    fn own_trace(&self, parent: &Span) {
        #[cfg(feature = "otlp")]
        if parent
            .metadata()
            .is_some_and(|m| m.name() == convention::RUN)
        {
            use opentelemetry::trace::TraceContextExt as _;
            use tracing_opentelemetry::OpenTelemetrySpanExt as _;
            if self.span.set_parent(opentelemetry::Context::new()).is_ok() {
                let run = parent.context();
                let link = run.span().span_context().clone();
                if link.is_valid() {
                    self.span.add_link(link);
                }
            }
        }
        #[cfg(not(feature = "otlp"))]
        let _ = parent;
    }

    fn checked(span: Span) -> Self {
        check_enabled(&span);
        Self {
            span,
            finished: false,
        }
    }

    /// Opens one stage's work on this request (call again for each chunk of a streamed
    /// stage).
    pub fn stage(&self, stage_id: u64) -> Stage {
        Stage::child_of(&self.span, stage_id)
    }

    /// Opens one hand-over from stage `from` to stage `to` (call again for each chunk).
    pub fn transfer(&self, from: u64, to: u64) -> Transfer {
        Transfer::child_of(&self.span, from, to)
    }

    /// The request's span, e.g. for `parent:` of your own spans.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// Closes the request with `status = ok`.
    pub fn finish(self) {
        self.close(RequestStatus::Ok);
    }

    /// Closes the request with `status = ok` and returns its record: what the tables and
    /// the sinks get, for the caller to return its own timings (a `Server-Timing` header,
    /// [`crate::report::server_timing`]).
    ///
    /// `None` when the request does not close here: work it spawned still holds its span
    /// (the record comes when that work ends), or no omni-metrics layer is in the
    /// subscriber.
    ///
    /// ```
    /// use omni_metrics::instrument::Request;
    /// use tracing_subscriber::prelude::*;
    /// let layer = omni_metrics::OmniMetricsLayer::builder().with_console(false).build()?;
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     let request = Request::start("r-1");
    ///     request.stage(0).tokens_in(12);
    ///     let record = request.finish_with_record().expect("closed here");
    ///     assert_eq!(record.stages[0].num_tokens_in, 12);
    /// });
    /// # Ok::<(), omni_metrics::BuildError>(())
    /// ```
    pub fn finish_with_record(self) -> Option<crate::stats::RequestE2EStats> {
        let slot = reply_slot(&self.span);
        self.finish();
        slot.and_then(|slot| slot.lock().ok()?.take())
    }

    /// Closes the request with `status = error`: counted apart from the summary.
    pub fn fail(self) {
        self.close(RequestStatus::Error);
    }

    /// Closes the request with `status = error` and why (`status_message`): the exported
    /// span's status is ERROR with this message, and the record carries it.
    pub fn fail_with(self, reason: &str) {
        self.span.record(convention::field::STATUS_MESSAGE, reason);
        self.close(RequestStatus::Error);
    }

    fn close(mut self, status: RequestStatus) {
        self.span.record(convention::field::STATUS, status.as_str());
        self.finished = true;
    }
}

impl Drop for Request {
    /// Unfinished: `aborted`, or `error` when a panic unwinds through the request.
    fn drop(&mut self) {
        if !self.finished {
            close_unfinished(&self.span);
        }
    }
}

/// Gives a raw or `#[instrument]`ed `omni.request` span what the typed [`Request`] has: if it
/// is dropped before [`finish`](RequestGuard::finish) (the future was cancelled by a
/// timeout, the handler returned early), the request is recorded `aborted`, or `error` when
/// a panic unwinds through it, instead of `ok`.
///
/// The span must declare `status = tracing::field::Empty`: `tracing` drops values recorded
/// on fields a span did not declare (a missing declaration is reported once).
///
/// ```
/// use omni_metrics::instrument::RequestGuard;
/// use tracing::field::Empty;
///
/// #[tracing::instrument(target = "omni", name = "omni.request", skip_all,
///     fields(request_id = %id, status = Empty))]
/// async fn handle(id: String) {
///     let guard = RequestGuard::current(); // dropped with the future if it is cancelled
///     // ... stages and transfers ...
///     guard.finish();
/// }
/// # drop(handle("r-1".into()));
/// ```
#[derive(Debug)]
#[must_use = "the request is marked aborted when the guard drops without finish()"]
pub struct RequestGuard {
    span: Span,
    finished: bool,
}

impl RequestGuard {
    /// Guards `span`, an `omni.request` span declaring `status`.
    pub fn new(span: &Span) -> Self {
        let declares_status = span
            .metadata()
            .is_some_and(|m| m.fields().field(convention::field::STATUS).is_some());
        if !span.is_disabled() && !declares_status {
            static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(
                    target: "omni_metrics::diagnostics",
                    span = span.metadata().map_or("", |m| m.name()),
                    "RequestGuard: the span does not declare `status`, so a cancelled request \
                     cannot be marked aborted. Declare `status = tracing::field::Empty` on the \
                     `omni.request` span (reported once)."
                );
            }
        }
        Self {
            span: span.clone(),
            finished: false,
        }
    }

    /// Guards the current span (the `#[instrument]`ed function's own span).
    pub fn current() -> Self {
        Self::new(&Span::current())
    }

    /// The request completed: `status = ok`.
    pub fn finish(mut self) {
        self.finished = true;
        self.span
            .record(convention::field::STATUS, RequestStatus::Ok.as_str());
    }

    /// The request failed: `status = error`.
    pub fn fail(mut self) {
        self.finished = true;
        self.span
            .record(convention::field::STATUS, RequestStatus::Error.as_str());
    }

    /// The request failed, and why: `status = error`, `status_message = reason` (declare
    /// `status_message = Empty` on the span too).
    pub fn fail_with(self, reason: &str) {
        self.span.record(convention::field::STATUS_MESSAGE, reason);
        self.fail();
    }
}

/// The slot the layer puts `span`'s record in when it closes, if an omni-metrics layer
/// holds it open.
fn reply_slot(span: &Span) -> Option<std::sync::Arc<crate::layer::ReplySlot>> {
    span.with_subscriber(|(id, dispatch)| {
        dispatch
            .downcast_ref::<crate::OmniMetricsLayer>()
            .and_then(|layer| layer.reply_to(id))
    })
    .flatten()
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if !self.finished {
            close_unfinished(&self.span);
        }
    }
}

/// An `omni.stage`: one stage's work on one request. Setters record fields on the span and
/// return `&Self` to chain.
#[derive(Debug)]
#[must_use = "the stage's time ends when this is dropped"]
pub struct Stage {
    span: Span,
}

impl Stage {
    /// Wraps an `omni.stage` span opened elsewhere in the crate (a remote stage).
    pub(crate) fn from_span(span: Span) -> Self {
        Self { span }
    }

    /// Opens stage `stage_id` as a child of `request` (an `omni.request` span, possibly
    /// created on another task or thread).
    pub fn child_of(request: &Span, stage_id: u64) -> Self {
        Self {
            span: omni_span!(stage(stage_id), [parent: request], otel.kind = "internal"),
        }
    }

    /// A readable name ("thinker"); with trace annotations on, the exported span is named
    /// "stage 0 thinker".
    pub fn name(&self, name: &str) -> &Self {
        self.span.record(convention::field::STAGE_NAME, name);
        self
    }

    /// The batch this request ran in, and its size.
    pub fn batch(&self, batch_id: u64, batch_size: u64) -> &Self {
        self.span.record(convention::field::BATCH_ID, batch_id);
        self.span.record(convention::field::BATCH_SIZE, batch_size);
        self
    }

    /// Input tokens.
    pub fn tokens_in(&self, n: u64) -> &Self {
        self.span.record(convention::field::NUM_TOKENS_IN, n);
        self
    }

    /// Output tokens (the last value recorded on this span counts).
    pub fn tokens_out(&self, n: u64) -> &Self {
        self.span.record(convention::field::NUM_TOKENS_OUT, n);
        self
    }

    /// Audio frames (samples) produced, at `sample_rate` Hz.
    pub fn audio(&self, frames: u64, sample_rate: u64) -> &Self {
        self.span
            .record(convention::field::AUDIO_GENERATED_FRAMES, frames);
        self.span
            .record(convention::field::AUDIO_SAMPLE_RATE, sample_rate);
        self
    }

    /// Images generated, and their resolution (`"1024x1024"`).
    pub fn images(&self, count: u64, resolution: &str) -> &Self {
        self.span.record(convention::field::IMAGE_NUM, count);
        self.span.record(convention::field::RESOLUTION, resolution);
        self
    }

    /// The replica of the stage that did the work, when the stage runs as several
    /// (data-parallel workers): records and metrics break the stage down by it.
    pub fn replica(&self, replica_id: u64) -> &Self {
        self.span.record(convention::field::REPLICA_ID, replica_id);
        self
    }

    /// Denoising steps of a diffusion stage: gives `denoise_step_latency_ms`.
    pub fn inference_steps(&self, steps: u64) -> &Self {
        self.span
            .record(convention::field::NUM_INFERENCE_STEPS, steps);
        self
    }

    /// Video frames produced, at `fps` frames per second: gives the video's duration and
    /// real-time factor.
    pub fn video(&self, frames: u64, fps: u64) -> &Self {
        self.span.record(convention::field::VIDEO_FRAMES, frames);
        self.span.record(convention::field::VIDEO_FPS, fps);
        self
    }

    /// Reports compute time measured elsewhere (another process); wins over the span's
    /// own measure.
    pub fn gen_time_ms(&self, ms: f64) -> &Self {
        self.span.record(convention::field::STAGE_GEN_TIME_MS, ms);
        self
    }

    /// Reports post-processing time measured elsewhere; wins over `omni.postprocess`
    /// children.
    pub fn postprocess_time_ms(&self, ms: f64) -> &Self {
        self.span.record(convention::field::POSTPROCESS_TIME_MS, ms);
        self
    }

    /// Marks one output chunk of this stage (an `omni.output` event): `units` tokens,
    /// audio frames or images. The first gives `time_to_first_output_ms` (TTFT for an LLM
    /// stage; time to first audio for the first stage with audio), the gaps between them
    /// `inter_output_ms`.
    ///
    /// ```
    /// # let request = omni_metrics::instrument::Request::start("r-1");
    /// let talker = request.stage(1);
    /// for _chunk in 0..3 {
    ///     // ... decode 8 tokens ...
    ///     talker.output(8);
    /// }
    /// ```
    pub fn output(&self, units: u64) -> &Self {
        tracing::event!(
            name: convention::OUTPUT,
            target: TARGET,
            parent: &self.span,
            Level::INFO,
            { field::UNITS } = units
        );
        self
    }

    /// Reports the time to first output measured elsewhere (another process); wins over
    /// this span's `omni.output` events.
    pub fn first_output_ms(&self, ms: f64) -> &Self {
        self.span
            .record(convention::field::TIME_TO_FIRST_OUTPUT_MS, ms);
        self
    }

    /// Reports the mean gap between outputs measured elsewhere; wins over this span's
    /// `omni.output` events.
    pub fn inter_output_ms(&self, ms: f64) -> &Self {
        self.span.record(convention::field::INTER_OUTPUT_MS, ms);
        self
    }

    /// Opens an `omni.queue` child: time waiting before compute, excluded from
    /// `stage_gen_time_ms`.
    pub fn queue(&self) -> Timing {
        Timing {
            span: omni_span!(timing(convention::QUEUE), [parent: &self.span]),
        }
    }

    /// Opens an `omni.postprocess` child, excluded from `stage_gen_time_ms`.
    pub fn postprocess(&self) -> Timing {
        Timing {
            span: omni_span!(timing(convention::POSTPROCESS), [parent: &self.span]),
        }
    }

    /// The stage's span.
    pub fn span(&self) -> &Span {
        &self.span
    }
}

/// An `omni.batch`: one forward pass of a stage over several requests, linked to each
/// request's stage span both ways (span links in the trace: Jaeger shows which requests
/// shared a pass). It is a root span, in no request's trace; the tables ignore it, except
/// that a stage linked to it takes its `batch_id` and `batch_size` when the stage gives none.
///
/// ```
/// use omni_metrics::instrument::{Batch, Request};
///
/// let (a, b) = (Request::start("r-1"), Request::start("r-2"));
/// let (stage_a, stage_b) = (a.stage(0), b.stage(0));
/// let batch = Batch::start(0, 38, 2);
/// batch.add(&stage_a).add(&stage_b);
/// // ... one forward pass for both ...
/// drop(batch); // the pass is over
/// ```
#[derive(Debug)]
#[must_use = "the batch's time ends when this is dropped"]
pub struct Batch {
    span: Span,
}

impl Batch {
    /// Opens batch `batch_id` of `batch_size` requests on stage `stage_id`, as a root span.
    pub fn start(stage_id: u64, batch_id: u64, batch_size: u64) -> Self {
        let span = omni_span!(
            batch(stage_id, batch_id, batch_size),
            [parent: None],
            otel.name = %format_args!("batch of stage {stage_id}"),
            otel.kind = "internal",
        );
        check_enabled(&span);
        Self { span }
    }

    /// Links `stage` (one request's work in this batch) and the batch, both ways.
    pub fn add(&self, stage: &Stage) -> &Self {
        stage.span().follows_from(&self.span);
        self.span.follows_from(stage.span());
        self
    }

    /// The batch's span.
    pub fn span(&self) -> &Span {
        &self.span
    }
}

/// An `omni.transfer`: one hand-over between two stages.
#[derive(Debug)]
#[must_use = "the transfer is recorded when this is dropped"]
pub struct Transfer {
    span: Span,
}

impl Transfer {
    /// Wraps an `omni.transfer` span opened elsewhere in the crate (a remote transfer).
    pub(crate) fn from_span(span: Span) -> Self {
        Self { span }
    }

    /// Opens a transfer `from->to` as a child of `request`.
    pub fn child_of(request: &Span, from: u64, to: u64) -> Self {
        Self {
            span: omni_span!(
                transfer(from, to),
                [parent: request],
                otel.name = %format_args!("transfer {from}->{to}"),
                otel.kind = "internal",
            ),
        }
    }

    /// Bytes moved.
    pub fn size_bytes(&self, bytes: u64) -> &Self {
        self.span.record(convention::field::SIZE_BYTES, bytes);
        self
    }

    /// Opens the sender side (`omni.transfer.tx`): serialize and hand over.
    pub fn tx(&self) -> Timing {
        Timing {
            span: omni_span!(timing(convention::TRANSFER_TX), [parent: &self.span]),
        }
    }

    /// Opens the receiver side (`omni.transfer.rx_decode`): take and decode.
    pub fn rx_decode(&self) -> Timing {
        Timing {
            span: omni_span!(timing(convention::TRANSFER_RX_DECODE), [parent: &self.span]),
        }
    }

    /// The replicas of the sending and receiving stages, when they run as several.
    pub fn replicas(&self, from_replica: u64, to_replica: u64) -> &Self {
        self.span
            .record(convention::field::FROM_REPLICA, from_replica);
        self.span.record(convention::field::TO_REPLICA, to_replica);
        self
    }

    /// Reports times measured elsewhere (another process); each wins over the measure.
    pub fn times_ms(
        &self,
        tx: Option<f64>,
        rx_decode: Option<f64>,
        in_flight: Option<f64>,
    ) -> &Self {
        if let Some(ms) = tx {
            self.span.record(convention::field::TX_TIME_MS, ms);
        }
        if let Some(ms) = rx_decode {
            self.span.record(convention::field::RX_DECODE_TIME_MS, ms);
        }
        if let Some(ms) = in_flight {
            self.span.record(convention::field::IN_FLIGHT_TIME_MS, ms);
        }
        self
    }

    /// The transfer's span.
    pub fn span(&self) -> &Span {
        &self.span
    }
}

/// A timing child (queue, postprocess, tx, rx_decode): its time runs until it is dropped.
#[derive(Debug)]
#[must_use = "the timing ends as soon as this is dropped"]
pub struct Timing {
    span: Span,
}

impl Timing {
    /// The span.
    pub fn span(&self) -> &Span {
        &self.span
    }
}
