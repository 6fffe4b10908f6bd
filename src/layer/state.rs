//! Per-span state, kept in the layer's [table](super::table) from open to close.
//!
//! Runs, requests, stages, transfers and batches have state of their own. The timing
//! children (queue, postprocess, tx, rx_decode) only name their parent: they add to timers
//! in it.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use smallvec::SmallVec;

use super::fields::{FieldValue, SetField};
use super::table::Key;
use crate::accumulate::{RequestAcc, ScopeAcc, StageRare, StageSample, TransferSample};
use crate::convention::field;
use crate::diagnostics::{Issue, IssueSet};
use crate::stats::{self, RequestStatus};

/// Total duration of a parent's children of one kind, open or closed in any order.
///
/// Opening subtracts the start time and closing adds the end time (wrapping), so once every
/// child is closed the sum is `sum(end - start)` without storing a start per child. The
/// Registry closes children before their parent, so a parent always reads a complete sum. A
/// clock read backwards makes the sum "negative"; it then saturates to 0, as every
/// duration does.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct LeafTimer {
    sum: u64,
    seen: u32,
}

impl LeafTimer {
    #[inline]
    pub(super) fn open(&mut self, now: u64) {
        self.sum = self.sum.wrapping_sub(now);
        self.seen = self.seen.saturating_add(1);
    }

    #[inline]
    pub(super) fn close(&mut self, now: u64) {
        self.sum = self.sum.wrapping_add(now);
    }

    /// The summed duration in ms, or `None` if no child was seen.
    fn total_ms(&self) -> Option<f64> {
        // Durations are far below 2^63 ns (292 years): a "negative" sum is a clock that
        // went backwards, never a real duration.
        let ns = u64::try_from(self.sum as i64).unwrap_or(0);
        (self.seen > 0).then(|| stats::ns_to_ms(ns))
    }
}

/// The time covered by at least one of a stage's queue or postprocess children, each
/// instant counted once however the children overlap.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Coverage {
    open: u32,
    since: u64,
    covered: u64,
}

impl Coverage {
    #[inline]
    pub(super) fn open(&mut self, now: u64) {
        if self.open == 0 {
            self.since = now;
        }
        self.open = self.open.saturating_add(1);
    }

    #[inline]
    pub(super) fn close(&mut self, now: u64) {
        match self.open {
            0 => {}
            1 => {
                self.open = 0;
                self.covered = self
                    .covered
                    .saturating_add(stats::elapsed_ns(self.since, now));
            }
            _ => self.open -= 1,
        }
    }

    /// Whether a child is open now.
    pub(super) fn is_open(&self) -> bool {
        self.open > 0
    }

    fn covered_ms(&self) -> f64 {
        stats::ns_to_ms(self.covered)
    }
}

/// `omni.run`.
#[derive(Debug)]
pub(super) struct RunSpan {
    /// The run's scope, shared with its requests.
    pub(super) state: RunLink,
    /// It names its exported span itself (`otel.name`).
    pub(super) named: bool,
}

/// A run's scope, shared with its requests: closing a request adds to it without looking the
/// run up (which a layer that does not see the run, such as the annotation layer behind the
/// export filter, could not do).
pub(super) type RunLink = Arc<Mutex<RunState>>;

/// What a run accumulates.
#[derive(Debug)]
pub(super) struct RunState {
    pub(super) run_id: Option<String>,
    pub(super) scope: ScopeAcc,
    /// Set once a request of the run was reported under the run's name: a `run_id`
    /// recorded later would make records and summary disagree, so it is refused.
    pub(super) named: bool,
    pub(super) issues: IssueSet,
    /// The run's entry in the open-span registry.
    pub(super) open_key: u64,
}

impl SetField for RunState {
    fn set(&mut self, name: &str, value: FieldValue<'_>) {
        if name == field::RUN_ID {
            if self.named {
                self.issues.insert(Issue::LateRunId);
            } else {
                self.run_id = Some(value.to_text());
            }
        }
    }
}

/// Accumulators kept per thread for the next requests: one is reused, buffers and all, when
/// its request is done with it.
const POOLED: usize = 32;

thread_local! {
    // The boxes themselves are what the pool keeps, to be reused.
    #[allow(clippy::vec_box)]
    static POOL: RefCell<Vec<Box<RequestAcc>>> = const { RefCell::new(Vec::new()) };
}

/// An empty accumulator for a new request: a pooled one when this thread has one.
pub(super) fn new_request_acc() -> Box<RequestAcc> {
    POOL.try_with(|pool| pool.try_borrow_mut().ok()?.pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Gives a finished request's accumulator back for a later request; `acc` must be empty
/// (see [`RequestAcc::recycle`]).
pub(super) fn pool_request_acc(acc: Box<RequestAcc>) {
    let _ = POOL.try_with(|pool| {
        if let Ok(mut pool) = pool.try_borrow_mut() {
            if pool.len() < POOLED {
                pool.push(acc);
            }
        }
    });
}

/// Per-thread free lists of the boxes that hold stage and transfer state.
///
/// A stage's or transfer's state is about 170 bytes: kept inline in the table it was moved
/// two or three times per hook (into the table, out of it, into the close path). Boxed, a
/// slot is a pointer; pooled, the box costs no allocation in the steady state (a span
/// closed on another thread than the one that opened it moves its box to that thread's
/// pool). Returned boxes are reset, so nothing (such as a request's accumulator) stays held.
pub(super) trait Pooled: 'static {
    /// This type's free list on the current thread.
    fn free_list() -> &'static std::thread::LocalKey<RefCell<Vec<Box<Self>>>>;

    /// Drops what the state holds (shared links, names, buffers) before its box is pooled.
    fn release(&mut self);
}

/// Boxes kept per thread and type.
const POOLED_BOXES: usize = 64;

/// `value` in a box, reused from this thread's pool when it has one.
#[inline]
pub(super) fn boxed<T: Pooled>(value: T) -> Box<T> {
    match T::free_list()
        .try_with(|pool| pool.try_borrow_mut().ok()?.pop())
        .ok()
        .flatten()
    {
        Some(mut b) => {
            *b = value;
            b
        }
        None => Box::new(value),
    }
}

/// Gives a box back to this thread's pool, emptied (what its state holds is dropped now).
#[inline]
pub(super) fn unbox<T: Pooled>(mut b: Box<T>) {
    b.release();
    let _ = T::free_list().try_with(|pool| {
        if let Ok(mut pool) = pool.try_borrow_mut() {
            if pool.len() < POOLED_BOXES {
                pool.push(b);
            }
        }
    });
}

/// A [`Pooled::free_list`] of its own for the type it is expanded in.
macro_rules! free_list {
    ($t:ty) => {
        // The boxes themselves are what the pool keeps, to be reused.
        #[allow(clippy::vec_box)]
        fn free_list() -> &'static std::thread::LocalKey<RefCell<Vec<Box<Self>>>> {
            thread_local! {
                static FREE: RefCell<Vec<Box<$t>>> = const { RefCell::new(Vec::new()) };
            }
            &FREE
        }
    };
}

impl Pooled for StageSpan {
    free_list!(StageSpan);

    #[inline]
    fn release(&mut self) {
        self.request = None;
        self.stage_name = None;
        self.rare = None;
    }
}

impl Pooled for TransferSpan {
    free_list!(TransferSpan);

    #[inline]
    fn release(&mut self) {
        self.request = None;
        if self.pending_tx_ends.spilled() {
            self.pending_tx_ends = SmallVec::new();
        }
    }
}

/// Returns the same `Arc<str>` for a stage name this thread has seen before: stage names are
/// few and repeat on every request, so this saves an allocation per stage span.
fn intern(name: &str) -> Arc<str> {
    const CAPACITY: usize = 64;
    thread_local! {
        static NAMES: RefCell<Vec<Arc<str>>> = const { RefCell::new(Vec::new()) };
    }
    NAMES
        .try_with(|names| {
            let mut names = names.try_borrow_mut().ok()?;
            if let Some(found) = names.iter().find(|n| &***n == name) {
                return Some(found.clone());
            }
            let new: Arc<str> = Arc::from(name);
            if names.len() < CAPACITY {
                names.push(new.clone());
            }
            Some(new)
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| Arc::from(name))
}

/// `omni.request`.
#[derive(Debug)]
pub(super) struct RequestSpan {
    pub(super) start_ns: u64,
    /// The nearest enclosing `omni.run`'s scope, if any.
    pub(super) run: Option<RunLink>,
    pub(super) status: Option<RequestStatus>,
    /// When `status = aborted` was first recorded: the request ends there, though spawned
    /// work may keep its span open; stages and transfers closing later are left out.
    pub(super) aborted_at: Option<u64>,
    pub(super) issues: IssueSet,
    /// What its stages and transfers add as they close: they reach it through the table,
    /// by the request's span id, under the lock of its shard.
    pub(super) acc: Box<RequestAcc>,
    /// It names its exported span itself (`otel.name`): the layer keeps that name.
    pub(super) named: bool,
    /// Where its record goes when it closes, for the engine that asked
    /// ([`crate::instrument::Request::finish_with_record`]).
    pub(super) reply: Option<std::sync::Arc<ReplySlot>>,
}

/// A finished request's record, for the engine that asked for it.
pub(crate) type ReplySlot = std::sync::Mutex<Option<crate::stats::RequestE2EStats>>;

impl SetField for RequestSpan {
    #[inline]
    fn set(&mut self, name: &str, value: FieldValue<'_>) {
        match name {
            field::REQUEST_ID => self.acc.set_request_id_with(|id| value.write_text(id)),
            field::STATUS_MESSAGE => self.acc.set_status_message(value.to_text()),
            field::STATUS => {
                let parsed = match value {
                    FieldValue::Str(text) => RequestStatus::parse(text),
                    other => RequestStatus::parse(&other.to_text()),
                };
                self.status = Some(parsed.unwrap_or_else(|| {
                    self.issues.insert(Issue::BadStatus);
                    RequestStatus::Error
                }));
            }
            _ => {}
        }
    }
}

/// `omni.stage`.
#[derive(Debug, Default)]
pub(super) struct StageSpan {
    pub(super) start_ns: u64,
    /// The span id of the nearest enclosing `omni.request` (open as long as this span is:
    /// the Registry closes a parent after its children); `None` is a convention violation.
    pub(super) request: Option<Key>,
    pub(super) issues: IssueSet,
    stage_id: Option<u64>,
    stage_name: Option<Arc<str>>,
    batch_id: Option<u64>,
    batch_size: Option<u64>,
    num_tokens_in: u64,
    num_tokens_out: u64,
    /// Fields most stages never set, apart: the state moves in and out of the span's
    /// extensions, and a smaller one moves faster.
    rare: Option<Box<StageRare>>,
    pub(super) queue: LeafTimer,
    pub(super) postprocess: LeafTimer,
    /// Time covered by queue or postprocess children (what gen time excludes).
    pub(super) excluded: Coverage,
    /// Time covered by queue children alone (what gen time excludes beside an explicit
    /// `postprocess_time_ms`, which stands for the postprocess children).
    pub(super) queued: Coverage,
    /// See [`RequestSpan::named`].
    pub(super) named: bool,
    /// It carries `remote_request`: work done here for a request owned by another process
    /// (opened from a propagated context), left to that process's tables.
    pub(super) remote: bool,
}

impl StageSpan {
    pub(super) fn new(start_ns: u64, request: Option<Key>) -> Self {
        Self {
            start_ns,
            request,
            ..Self::default()
        }
    }

    /// The span's contribution, or `None` (with the issue noted) if it cannot be placed.
    #[inline]
    pub(super) fn finish(&mut self, end_ns: u64) -> Option<StageSample> {
        let Some(stage_id) = self.stage_id else {
            self.issues.insert(Issue::MissingStageId);
            return None;
        };
        let rare = self.rare.as_deref();
        let postprocess_override_ms = rare.and_then(|r| r.postprocess_override_ms);
        let gen_override_ms = rare.and_then(|r| r.gen_override_ms);
        let queue_ms = self.queue.total_ms().unwrap_or(0.0);
        let stage_ms = stats::elapsed_ms(self.start_ns, end_ns);
        // Excluded from compute: the time the children covered, once. An explicit
        // post-processing time is the stage's: its postprocess children are then not
        // measured, and the explicit value is excluded beside the queue's coverage.
        let (postprocess_ms, gen_ms) = match postprocess_override_ms {
            Some(pp_ms) => (
                pp_ms,
                stats::stage_gen_time_ms(stage_ms, self.queued.covered_ms(), pp_ms),
            ),
            None => (
                self.postprocess.total_ms().unwrap_or(0.0),
                stats::stage_gen_time_ms(stage_ms, self.excluded.covered_ms(), 0.0),
            ),
        };
        let gen_ms = gen_override_ms.unwrap_or(gen_ms);
        Some(StageSample {
            stage_id,
            stage_name: self.stage_name.take(),
            batch_id: self.batch_id,
            batch_size: self.batch_size,
            num_tokens_in: self.num_tokens_in,
            num_tokens_out: self.num_tokens_out,
            stage_gen_time_ms: gen_ms,
            postprocess_time_ms: postprocess_ms,
            queue_time_ms: queue_ms,
            start_ns: self.start_ns,
            end_ns,
            rare: self.rare.take(),
        })
    }

    /// Its stage id and replica, once known: what the live gauges count it under.
    pub(super) fn gauge_key(&self) -> Option<(u64, Option<u64>)> {
        let replica = self.rare.as_deref().and_then(|r| r.replica_id);
        self.stage_id.map(|id| (id, replica))
    }

    /// Whether one of its `omni.queue` children is open now: its request waits.
    pub(super) fn queued_now(&self) -> bool {
        self.queued.is_open()
    }

    /// An `omni.output` event of this span at `now`.
    pub(super) fn output(&mut self, now: u64, units: u64) {
        self.rare.get_or_insert_default().outputs.output(now, units);
    }
}

/// Sets `slot` to the field as a count, keeping the old value (and noting why) on bad input.
#[inline]
fn set_u64(slot: &mut Option<u64>, value: &FieldValue<'_>, issues: &mut IssueSet) {
    if let Some(v) = value.to_u64(issues) {
        *slot = Some(v);
    }
}

#[inline]
fn set_count(slot: &mut u64, value: &FieldValue<'_>, issues: &mut IssueSet) {
    if let Some(v) = value.to_u64(issues) {
        *slot = v;
    }
}

#[inline]
fn set_ms(slot: &mut Option<f64>, value: &FieldValue<'_>, issues: &mut IssueSet) {
    if let Some(v) = value.to_ms(issues) {
        *slot = Some(v);
    }
}

impl SetField for StageSpan {
    #[inline]
    fn set(&mut self, name: &str, value: FieldValue<'_>) {
        let issues = &mut self.issues;
        match name {
            field::STAGE_ID => set_u64(&mut self.stage_id, &value, issues),
            field::REMOTE_REQUEST => self.remote = true,
            field::STAGE_NAME => {
                self.stage_name = Some(match value {
                    FieldValue::Str(s) => intern(s),
                    other => intern(&other.to_text()),
                })
            }
            field::BATCH_ID => set_u64(&mut self.batch_id, &value, issues),
            field::BATCH_SIZE => set_u64(&mut self.batch_size, &value, issues),
            field::NUM_TOKENS_IN => set_count(&mut self.num_tokens_in, &value, issues),
            field::NUM_TOKENS_OUT => set_count(&mut self.num_tokens_out, &value, issues),
            field::AUDIO_GENERATED_FRAMES => set_count(
                &mut self.rare.get_or_insert_default().audio_generated_frames,
                &value,
                issues,
            ),
            field::AUDIO_SAMPLE_RATE => set_u64(
                &mut self.rare.get_or_insert_default().audio_sample_rate,
                &value,
                issues,
            ),
            field::IMAGE_NUM => set_u64(
                &mut self.rare.get_or_insert_default().image_num,
                &value,
                issues,
            ),
            field::RESOLUTION => {
                self.rare.get_or_insert_default().resolution = Some(value.to_text())
            }
            field::REPLICA_ID => set_u64(
                &mut self.rare.get_or_insert_default().replica_id,
                &value,
                issues,
            ),
            field::NUM_INFERENCE_STEPS => set_u64(
                &mut self.rare.get_or_insert_default().num_inference_steps,
                &value,
                issues,
            ),
            field::VIDEO_FRAMES => set_count(
                &mut self.rare.get_or_insert_default().video_frames,
                &value,
                issues,
            ),
            field::VIDEO_FPS => set_u64(
                &mut self.rare.get_or_insert_default().video_fps,
                &value,
                issues,
            ),
            field::STAGE_GEN_TIME_MS => set_ms(
                &mut self.rare.get_or_insert_default().gen_override_ms,
                &value,
                issues,
            ),
            field::POSTPROCESS_TIME_MS => set_ms(
                &mut self.rare.get_or_insert_default().postprocess_override_ms,
                &value,
                issues,
            ),
            field::TIME_TO_FIRST_OUTPUT_MS => set_ms(
                &mut self.rare.get_or_insert_default().first_output_override_ms,
                &value,
                issues,
            ),
            field::INTER_OUTPUT_MS => set_ms(
                &mut self.rare.get_or_insert_default().inter_output_override_ms,
                &value,
                issues,
            ),
            _ => {}
        }
    }
}

/// `omni.batch`: what it lends to the stages linked to it.
#[derive(Debug, Default)]
pub(super) struct BatchSpan {
    pub(super) batch_id: Option<u64>,
    pub(super) batch_size: Option<u64>,
    issues: IssueSet,
}

impl BatchSpan {
    pub(super) fn issues(&self) -> IssueSet {
        self.issues
    }
}

impl SetField for BatchSpan {
    #[inline]
    fn set(&mut self, name: &str, value: FieldValue<'_>) {
        let issues = &mut self.issues;
        match name {
            field::BATCH_ID => set_u64(&mut self.batch_id, &value, issues),
            field::BATCH_SIZE => set_u64(&mut self.batch_size, &value, issues),
            _ => {}
        }
    }
}

impl StageSpan {
    /// Takes a linked batch's id and size where the stage gave none of its own.
    pub(super) fn lend_batch(&mut self, batch_id: Option<u64>, batch_size: Option<u64>) {
        self.batch_id = self.batch_id.or(batch_id);
        self.batch_size = self.batch_size.or(batch_size);
    }
}

/// Tx ends a transfer keeps waiting for their rx, at most (32 KiB): a transfer's chunks
/// pair exactly up to this many sent and not yet received.
const MAX_PENDING_TX: usize = 4096;

/// `omni.transfer`.
#[derive(Debug, Default)]
pub(super) struct TransferSpan {
    start_ns: u64,
    /// The span id of the nearest enclosing `omni.request` (open as long as this span is:
    /// the Registry closes a parent after its children); `None` is a convention violation.
    pub(super) request: Option<Key>,
    pub(super) issues: IssueSet,
    from_stage: Option<u64>,
    to_stage: Option<u64>,
    from_replica: Option<u64>,
    to_replica: Option<u64>,
    size_bytes: u64,
    tx_override_ms: Option<f64>,
    rx_override_ms: Option<f64>,
    in_flight_override_ms: Option<f64>,
    pub(super) tx: LeafTimer,
    pub(super) rx: LeafTimer,
    /// Ends of the `omni.transfer.tx` children not yet paired with an `rx_decode`, oldest
    /// first from `paired`: chunk `k`'s rx pairs with chunk `k`'s tx, also when they are
    /// pipelined (tx, tx, rx, rx).
    pending_tx_ends: SmallVec<[u64; 2]>,
    /// How many of `pending_tx_ends` are paired already (consumed from the front).
    paired: usize,
    /// Pending tx ends forgotten beyond [`MAX_PENDING_TX`] (the oldest): the next rx
    /// pair with them, their gap unknown (0).
    forgotten_tx: u32,
    /// `rx_decode` children that started before any tx was pending (a receiver already
    /// waiting): the next tx end pairs with them, with no gap.
    waiting_rx: u32,
    /// Each chunk's gap from its tx end to the next rx start, summed.
    in_flight_ns: u64,
    /// See [`RequestSpan::named`].
    pub(super) named: bool,
    /// See [`StageSpan::remote`].
    pub(super) remote: bool,
    /// An `omni.stage` lies between it and its request: what a child of it inherits.
    pub(super) in_stage: bool,
}

impl TransferSpan {
    /// Its edge, once both stage ids are known: what the live gauges count it under.
    pub(super) fn edge(&self) -> Option<crate::stats::EdgeName> {
        Some(crate::stats::EdgeName {
            from: self.from_stage?,
            to: self.to_stage?,
        })
    }

    pub(super) fn new(start_ns: u64, request: Option<Key>) -> Self {
        Self {
            start_ns,
            request,
            ..Self::default()
        }
    }

    /// An `omni.transfer.tx` child ended.
    pub(super) fn tx_closed(&mut self, now: u64) {
        self.tx.close(now);
        if self.waiting_rx > 0 {
            self.waiting_rx -= 1;
            return;
        }
        if self.pending_tx_ends.len() - self.paired >= MAX_PENDING_TX {
            // The oldest is forgotten, not its place: the rx that comes for it still
            // takes it (with no gap), so later chunks keep their pairs.
            self.paired += 1;
            self.forgotten_tx = self.forgotten_tx.saturating_add(1);
        }
        if self.paired > 0 && self.paired * 2 >= self.pending_tx_ends.len() {
            self.pending_tx_ends.drain(..self.paired);
            self.paired = 0;
        }
        self.pending_tx_ends.push(now);
    }

    /// An `omni.transfer.rx_decode` child started: the gap since the tx it pairs with is
    /// that chunk's in-flight time (tx[0,1] rx[2,3] tx[4,5] rx[6,7] is 1 + 1 ms; so is
    /// tx[0,1] tx[1,2] rx[2,3] rx[3,4]).
    pub(super) fn rx_opened(&mut self, now: u64) {
        self.rx.open(now);
        if self.forgotten_tx > 0 {
            self.forgotten_tx -= 1;
            return;
        }
        match self.pending_tx_ends.get(self.paired) {
            Some(&tx_end) => {
                self.paired += 1;
                if self.paired == self.pending_tx_ends.len() {
                    self.pending_tx_ends.clear();
                    self.paired = 0;
                }
                self.in_flight_ns = self
                    .in_flight_ns
                    .saturating_add(stats::in_flight_ns(tx_end, now));
            }
            None => self.waiting_rx = self.waiting_rx.saturating_add(1),
        }
    }

    /// The span's contribution, or `None` (with the issue noted) if it cannot be placed.
    /// Issues that an unfinished request explains (no tx or no rx yet) are returned apart:
    /// they only count if the request ends `ok`.
    pub(super) fn finish(&mut self, end_ns: u64) -> (Option<TransferSample>, IssueSet) {
        let mut incomplete = IssueSet::default();
        let (Some(from_stage), Some(to_stage)) = (self.from_stage, self.to_stage) else {
            self.issues.insert(Issue::MissingEdge);
            return (None, incomplete);
        };
        if from_stage == to_stage {
            self.issues.insert(Issue::SelfTransfer);
            return (None, incomplete);
        }
        let tx = self.tx.total_ms();
        let rx = self.rx.total_ms();
        if tx.is_none() && self.tx_override_ms.is_none() {
            incomplete.insert(Issue::TransferWithoutTx);
        }
        if rx.is_none() && self.rx_override_ms.is_none() {
            incomplete.insert(Issue::TransferWithoutRx);
        }
        let in_flight = self
            .in_flight_override_ms
            .unwrap_or_else(|| stats::ns_to_ms(self.in_flight_ns));
        let sample = TransferSample {
            from_stage,
            to_stage,
            from_replica: self.from_replica,
            to_replica: self.to_replica,
            size_bytes: self.size_bytes,
            tx_time_ms: self.tx_override_ms.or(tx).unwrap_or(0.0),
            rx_decode_time_ms: self.rx_override_ms.or(rx).unwrap_or(0.0),
            in_flight_time_ms: in_flight,
            start_ns: self.start_ns,
            end_ns,
        };
        (Some(sample), incomplete)
    }
}

impl SetField for TransferSpan {
    #[inline]
    fn set(&mut self, name: &str, value: FieldValue<'_>) {
        let issues = &mut self.issues;
        match name {
            field::FROM_STAGE => set_u64(&mut self.from_stage, &value, issues),
            field::FROM_REPLICA => set_u64(&mut self.from_replica, &value, issues),
            field::TO_REPLICA => set_u64(&mut self.to_replica, &value, issues),
            field::REMOTE_REQUEST => self.remote = true,
            field::TO_STAGE => set_u64(&mut self.to_stage, &value, issues),
            field::SIZE_BYTES => set_count(&mut self.size_bytes, &value, issues),
            field::TX_TIME_MS => set_ms(&mut self.tx_override_ms, &value, issues),
            field::RX_DECODE_TIME_MS => set_ms(&mut self.rx_override_ms, &value, issues),
            field::IN_FLIGHT_TIME_MS => set_ms(&mut self.in_flight_override_ms, &value, issues),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Beyond [`MAX_PENDING_TX`] tx waiting for their rx, the oldest are forgotten but keep
    /// their place: their rx count no gap, and every later chunk still pairs with its own.
    #[test]
    fn chunks_beyond_the_pending_bound_keep_their_pairs() {
        let chunks = MAX_PENDING_TX as u64 + 3;
        let mut t = TransferSpan::new(0, None);
        for k in 0..chunks {
            t.tx.open(k * 10);
            t.tx_closed(k * 10 + 1);
        }
        for k in 0..chunks {
            // Each rx starts one whole run after its own tx ended.
            t.rx_opened(chunks * 10 + k * 10 + 1);
            t.rx.close(chunks * 10 + k * 10 + 2);
        }
        let gap = chunks * 10;
        assert_eq!(t.in_flight_ns, (chunks - 3) * gap);
        assert_eq!((t.forgotten_tx, t.waiting_rx), (0, 0));
        assert!(t.pending_tx_ends.is_empty());
    }
}
