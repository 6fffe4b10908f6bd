//! Bad input from the engine: what went wrong, said once, counted always.
//!
//! The layer never panics on what an engine writes. Each kind of mistake is reported once
//! per layer as a `WARN` event with target `omni_metrics::diagnostics` and a message that
//! says what to fix; every occurrence is counted (`invalid_spans` in the records and
//! [`crate::MetricsHandle::invalid_spans`]).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A kind of convention violation. Its discriminant is its bit in an [`IssueSet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Issue {
    MissingStageId = 0,
    MissingEdge,
    MissingRequestId,
    MistypedField,
    NegativeValue,
    OutsideRequest,
    LeafOutsideParent,
    TransferWithoutTx,
    TransferWithoutRx,
    BadStatus,
    RequestInRequest,
    StageInStage,
    SelfTransfer,
    DuplicateRequestId,
    LateRunId,
    OutOfRange,
    OutputOutsideStage,
}

impl Issue {
    const ALL: [Issue; 17] = [
        Issue::MissingStageId,
        Issue::MissingEdge,
        Issue::MissingRequestId,
        Issue::MistypedField,
        Issue::NegativeValue,
        Issue::OutsideRequest,
        Issue::LeafOutsideParent,
        Issue::TransferWithoutTx,
        Issue::TransferWithoutRx,
        Issue::BadStatus,
        Issue::RequestInRequest,
        Issue::StageInStage,
        Issue::SelfTransfer,
        Issue::DuplicateRequestId,
        Issue::LateRunId,
        Issue::OutOfRange,
        Issue::OutputOutsideStage,
    ];

    /// What happened and what to fix.
    // Long: one arm per issue, so that the messages read side by side.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Issue::MissingStageId => {
                "an `omni.stage` span closed without a `stage_id`: it is left out of the tables. \
                 Give every stage span `stage_id = <u64>` (or record it before the span closes)."
            }
            Issue::MissingEdge => {
                "an `omni.transfer` span closed without `from_stage` and `to_stage`: it is left \
                 out of the tables. Give every transfer span both stage ids."
            }
            Issue::MissingRequestId => {
                "an `omni.request` span has no `request_id`: it is reported as `request-<n>`. \
                 Give every request span `request_id = <id>`."
            }
            Issue::MistypedField => {
                "an `omni.*` field has a value of the wrong type (e.g. `stage_id = \"zero\"`): \
                 the field is ignored. Ids and counts are unsigned integers, `*_ms` fields are \
                 numbers, `stage_name`/`resolution`/`request_id` are strings."
            }
            Issue::NegativeValue => {
                "an `omni.*` count or time is negative: the field is ignored. Record counts and \
                 times as non-negative numbers."
            }
            Issue::OutsideRequest => {
                "an `omni.stage` or `omni.transfer` span has no `omni.request` ancestor: it is \
                 left out of the tables. Create it inside the request span, or pass the request \
                 span as `parent:` when it is created on another task or thread."
            }
            Issue::LeafOutsideParent => {
                "an `omni.queue`/`omni.postprocess` span is not a direct child of an \
                 `omni.stage`, or an `omni.transfer.tx`/`rx_decode` span is not a direct child \
                 of an `omni.transfer`: its time is not counted. Create it with that parent."
            }
            Issue::TransferWithoutTx => {
                "an `omni.transfer` span closed without an `omni.transfer.tx` child (or a \
                 `tx_time_ms` field): its tx time is 0 and its in-flight time is unknown (0)."
            }
            Issue::TransferWithoutRx => {
                "an `omni.transfer` span closed without an `omni.transfer.rx_decode` child (or \
                 a `rx_decode_time_ms` field): its rx time is 0 and its in-flight time is \
                 unknown (0)."
            }
            Issue::BadStatus => {
                "an `omni.request` has a `status` other than `ok`, `error` or `aborted`: it is \
                 counted as `error`."
            }
            Issue::RequestInRequest => {
                "an `omni.request` span is nested in another `omni.request`: both are reported \
                 as separate requests. Open requests side by side, under an `omni.run` if they \
                 belong to one batch."
            }
            Issue::StageInStage => {
                "an `omni.stage` span is nested in another `omni.stage`: the inner stage's time \
                 is counted in both stages. Open stages side by side under the request; time \
                 parts of one stage with `omni.queue`/`omni.postprocess` children."
            }
            Issue::SelfTransfer => {
                "an `omni.transfer` span has `from_stage` equal to `to_stage`: a transfer \
                 connects two different stages, so it is left out of the tables. Check the \
                 stage ids given to the transfer."
            }
            Issue::DuplicateRequestId => {
                "two requests of one `omni.run` have the same `request_id`: both are counted, \
                 but their records cannot be told apart. Give every request of a run its own id."
            }
            Issue::LateRunId => {
                "a `run_id` was recorded on an `omni.run` after one of its requests had been \
                 reported under the run's previous name: it is ignored, so that the run's \
                 records and summary agree. Give `run_id` when the run is created."
            }
            Issue::OutOfRange => {
                "an `omni.*` value is beyond what its field holds (a time beyond 10^12 ms, 31 \
                 years, or a count of 2^64 or more): the field is ignored. Times are \
                 milliseconds and counts unsigned 64-bit integers; check the unit."
            }
            Issue::OutputOutsideStage => {
                "an `omni.output` event is not inside an `omni.stage` span: it is not counted. \
                 Emit it while the stage span is entered, or with `parent: &stage_span`."
            }
        }
    }
}

/// A small set of issues seen on one span or request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct IssueSet(u32);

impl IssueSet {
    #[inline]
    pub(crate) fn insert(&mut self, issue: Issue) {
        self.0 |= 1 << issue as u8;
    }

    /// Both sets together.
    #[inline]
    pub(crate) fn union(self, other: IssueSet) -> IssueSet {
        IssueSet(self.0 | other.0)
    }

    #[inline]
    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) fn contains(self, issue: Issue) -> bool {
        self.0 & (1 << issue as u8) != 0
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = Issue> {
        Issue::ALL.into_iter().filter(move |i| self.contains(*i))
    }
}

/// Per-layer memory of which issues were already reported, and a count of all of them.
#[derive(Debug, Default)]
pub(crate) struct Diagnostics {
    reported: AtomicU32,
    invalid_spans: AtomicU64,
    remote_spans: AtomicU64,
    after_abort_spans: AtomicU64,
}

impl Diagnostics {
    /// Counts one invalid span and reports each of its issues not yet reported.
    ///
    /// Call it from `on_close` (not `on_new_span`, where the event would be lost), with no
    /// span lock held: the warning is a `tracing` event, which other layers
    /// (fmt) may handle by reading span extensions.
    pub(crate) fn record(&self, issues: IssueSet) {
        if issues.is_empty() {
            return;
        }
        self.invalid_spans.fetch_add(1, Ordering::Relaxed);
        let before = self.reported.fetch_or(issues.0, Ordering::Relaxed);
        let fresh = IssueSet(issues.0 & !before);
        for issue in fresh.iter() {
            tracing::warn!(
                target: "omni_metrics::diagnostics",
                issue = ?issue,
                "{} (reported once; every occurrence is counted in `invalid_spans`)",
                issue.message()
            );
        }
    }

    pub(crate) fn invalid_spans(&self) -> u64 {
        self.invalid_spans.load(Ordering::Relaxed)
    }

    /// Counts one stage or transfer done for a request of another process.
    /// A stage or transfer that closed after its request was aborted: counted, and said
    /// the first time.
    pub(crate) fn count_after_abort(&self) {
        if self.after_abort_spans.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(
                target: "omni_metrics::diagnostics",
                "a stage or transfer span closed after its request was aborted: the request \
                 ended at its abort, so this work is not in its e2e time or stage rows \
                 (counted in `Totals::after_abort_spans`). Cancel the request's spawned work \
                 with it (a `tokio_util::sync::CancellationToken`, or `JoinHandle::abort`) if \
                 it should not run on (reported once)."
            );
        }
    }

    pub(crate) fn after_abort_spans(&self) -> u64 {
        self.after_abort_spans.load(Ordering::Relaxed)
    }

    pub(crate) fn count_remote(&self) {
        self.remote_spans.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn remote_spans(&self) -> u64 {
        self.remote_spans.load(Ordering::Relaxed)
    }
}

impl Diagnostics {
    /// Like [`Diagnostics::record`] for `spans` spans that share the same issues.
    pub(crate) fn record_n(&self, issues: IssueSet, spans: u64) {
        if issues.is_empty() || spans == 0 {
            return;
        }
        self.invalid_spans
            .fetch_add(spans.saturating_sub(1), Ordering::Relaxed);
        self.record(issues);
    }
}

/// A condition said on stderr once per process (see [`stderr_notice`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Notice {
    /// The subscriber's level filter disables the `omni.*` spans (INFO).
    FilteredSubscriber = 0,
    /// tracing's `max_level_*` features compile the `omni.*` spans out.
    StaticMaxLevel,
    /// The typed API opened a span that no subscriber enabled.
    DisabledSpan,
    /// The subscriber's filter disables a raw `omni.*` span's callsite (its target).
    HiddenCallsite,
}

/// Says `message` on stderr once per process per `notice`, even when every `tracing` event
/// is filtered out (which is when it matters: the tables are silently empty otherwise).
///
/// The write happens on a short-lived thread of its own, so an engine whose stderr is a full
/// pipe never waits on it.
pub(crate) fn stderr_notice(notice: Notice, message: String) {
    static SAID: AtomicU32 = AtomicU32::new(0);
    let bit = 1 << notice as u8;
    if SAID.fetch_or(bit, Ordering::Relaxed) & bit != 0 {
        return;
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("omni-metrics-notice".into())
        .spawn(move || {
            use std::io::Write as _;
            let line = format!("omni-metrics: WARN {message}\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            let _ = done_tx.send(());
        });
    if spawned.is_ok() {
        // Once per process: wait a moment so a short program still shows it before exiting,
        // but never longer (stderr may be a pipe nobody reads).
        let _ = done_rx.recv_timeout(NOTICE_WAIT);
    }
}

/// How long [`stderr_notice`] waits for its line to be written, at most.
const NOTICE_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// Checks, once per process and shortly after a subscriber with the metrics layer is
/// registered, that INFO spans are enabled at all: a filter on the whole subscriber (not on
/// one layer), or tracing's `max_level_*` features, would leave the tables silently empty.
///
/// Shortly after, because the global maximum level is only updated once the registration
/// is complete; on a thread of its own, so that nobody waits.
pub(crate) fn check_levels_soon() {
    static SCHEDULED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if SCHEDULED.swap(true, Ordering::Relaxed) {
        return;
    }
    if let Some(message) = static_level_warning() {
        stderr_notice(Notice::StaticMaxLevel, message);
        return;
    }
    let _ = std::thread::Builder::new()
        .name("omni-metrics-check".into())
        .spawn(|| {
            std::thread::sleep(LEVEL_CHECK_DELAY);
            if let Some(message) = level_warning(tracing::level_filters::LevelFilter::current()) {
                stderr_notice(Notice::FilteredSubscriber, message);
            }
        });
}

/// The `omni.*` span callsites waiting for [`check_callsite_soon`]'s check, and whether a
/// check is scheduled. Bounded: callsites beyond it wait for the next check.
static CALLSITES_TO_CHECK: std::sync::Mutex<(Vec<CallsiteCheck>, bool)> =
    std::sync::Mutex::new((Vec::new(), false));

/// An `omni.*` span callsite and the subscriber it was registered with.
type CallsiteCheck = (
    &'static tracing::Metadata<'static>,
    tracing::dispatcher::WeakDispatch,
);

/// Asks `dispatch`, shortly and from a thread of its own, whether it enables the `omni.*`
/// span callsite `metadata`, and says once on stderr when it does not: a raw span whose
/// target a global filter leaves out (`RUST_LOG=warn,omni=info` lets through target
/// `omni`, not `my_engine::server`) never reaches the layer, and its request is silently
/// missing from the tables otherwise.
///
/// Called from `register_callsite`, inside tracing-core's registration, where asking the
/// subscriber is not safe; the thread waits for the registration to end.
pub(crate) fn check_callsite_soon(
    metadata: &'static tracing::Metadata<'static>,
    dispatch: tracing::dispatcher::WeakDispatch,
) {
    const MAX_PENDING: usize = 256;
    let Ok(mut pending) = CALLSITES_TO_CHECK.lock() else {
        return;
    };
    if pending.0.len() < MAX_PENDING {
        pending.0.push((metadata, dispatch));
    }
    if std::mem::replace(&mut pending.1, true) {
        return;
    }
    drop(pending);
    let spawned = std::thread::Builder::new()
        .name("omni-metrics-check".into())
        .spawn(|| {
            std::thread::sleep(CALLSITE_CHECK_DELAY);
            let checks = match CALLSITES_TO_CHECK.lock() {
                Ok(mut pending) => {
                    pending.1 = false;
                    std::mem::take(&mut pending.0)
                }
                Err(_) => return,
            };
            let hidden = checks.into_iter().find(|(metadata, dispatch)| {
                dispatch.upgrade().is_some_and(|d| !d.enabled(metadata))
            });
            if let Some((metadata, _)) = hidden {
                stderr_notice(Notice::HiddenCallsite, hidden_callsite_warning(metadata));
            }
        });
    if spawned.is_err() {
        if let Ok(mut pending) = CALLSITES_TO_CHECK.lock() {
            pending.1 = false;
        }
    }
}

/// How long [`check_callsite_soon`] waits before asking the subscriber.
const CALLSITE_CHECK_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

/// Why the spans of the callsite `metadata` are missing from the tables, and what to do.
pub(crate) fn hidden_callsite_warning(metadata: &tracing::Metadata<'_>) -> String {
    format!(
        "the subscriber's filter disables `{name}` spans of target `{target}` at level \
         {level} ({file}:{line}): they never reach omni-metrics and their requests are \
         missing from the tables. Give raw spans the convention's target, `omni` \
         (`info_span!(target: \"omni\", \"{name}\", ...)`, `#[instrument(target = \"omni\", \
         name = \"{name}\", ...)]`), which `RUST_LOG=warn,omni=info` lets through, or add a \
         directive for `{target}`; better, filter only your log layer \
         (`fmt::layer().with_filter(...)`). Said once.",
        name = metadata.name(),
        target = metadata.target(),
        level = metadata.level(),
        file = metadata.file().unwrap_or("?"),
        line = metadata.line().unwrap_or(0),
    )
}

/// Emits `warnings` (WARN, target `omni_metrics::diagnostics`) into `subscriber`, from a
/// short-lived thread: a layer being registered is inside tracing-core's registry of
/// dispatchers, where an event of a new callsite would deadlock.
pub(crate) fn warn_soon(subscriber: &tracing::Dispatch, warnings: Vec<String>) {
    if warnings.is_empty() {
        return;
    }
    let dispatch = subscriber.downgrade();
    let _ = std::thread::Builder::new()
        .name("omni-metrics-report".into())
        .spawn(move || {
            if let Some(dispatch) = dispatch.upgrade() {
                tracing::dispatcher::with_default(&dispatch, || {
                    // Waits for the registration to finish (it holds tracing-core's lock
                    // of dispatchers), then sets the maximum level with this subscriber in
                    // it: before that, a WARN event may be dropped.
                    tracing_core::callsite::rebuild_interest_cache();
                    for warning in warnings {
                        tracing::warn!(target: "omni_metrics::diagnostics", "{warning}");
                    }
                });
            }
        });
}

/// How long after registration the level check runs.
const LEVEL_CHECK_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

/// Why the tables would be empty under a subscriber whose most verbose level is `max`, or
/// `None` when INFO spans get through.
pub(crate) fn level_warning(max: tracing::level_filters::LevelFilter) -> Option<String> {
    use tracing::level_filters::LevelFilter;
    (max < LevelFilter::INFO).then(|| {
        format!(
            "the subscriber's most verbose level is {max}, which disables the INFO `omni.*` \
             spans: the metrics tables will stay empty. Filter your log layer on its own \
             (`fmt::layer().with_filter(EnvFilter::from_default_env())`) instead of the \
             whole subscriber, or let the spans through (`RUST_LOG=warn,omni=info`)."
        )
    })
}

/// Why the tables would be empty because tracing's `max_level_*` / `release_max_level_*`
/// features compile INFO spans out, or `None`.
pub(crate) fn static_level_warning() -> Option<String> {
    use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
    (STATIC_MAX_LEVEL < LevelFilter::INFO).then(|| {
        format!(
            "this build compiles out tracing spans below {STATIC_MAX_LEVEL} (a `max_level_*` \
             or `release_max_level_*` feature of the `tracing` crate): the INFO `omni.*` \
             spans do not exist and the metrics tables stay empty. Remove that feature, or \
             use `max_level_info` at the lowest."
        )
    })
}
