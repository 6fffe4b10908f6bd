//! Per-span state, kept in the span's extensions from open to close.
//!
//! Only runs, requests, stages and transfers get an extension. The timing children (queue,
//! postprocess, tx, rx_decode) keep no state of their own: they add to a [`LeafTimer`] in
//! their parent, which saves an allocation and a lookup per child span.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use super::fields::{FieldValue, SetField};
use crate::accumulate::{RequestAcc, ScopeAcc, StageSample, TransferSample};
use crate::convention::field;
use crate::diagnostics::{Issue, IssueSet};
use crate::stats::{self, RequestStatus};

/// Total duration of a parent's children of one kind, open or closed in any order.
///
/// Opening subtracts the start time and closing adds the end time (wrapping), so once every
/// child is closed the sum is `sum(end - start)` without storing a start per child. The
/// Registry closes children before their parent, so a parent always reads a complete sum.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct LeafTimer {
    sum: u64,
    seen: u32,
}

impl LeafTimer {
    #[inline]
    pub(super) fn open(&mut self, now: u64) {
        self.sum = self.sum.wrapping_sub(now);
        self.seen += 1;
    }

    #[inline]
    pub(super) fn close(&mut self, now: u64) {
        self.sum = self.sum.wrapping_add(now);
    }

    /// The summed duration in ms, or `None` if no child was seen.
    fn total_ms(&self) -> Option<f64> {
        (self.seen > 0).then(|| stats::ns_to_ms(self.sum))
    }
}

/// `omni.run`.
#[derive(Debug)]
pub(super) struct RunSpan {
    pub(super) run_id: Option<String>,
    pub(super) scope: ScopeAcc,
}

impl SetField for RunSpan {
    fn set(&mut self, name: &str, value: FieldValue<'_>) {
        if name == field::RUN_ID {
            self.run_id = Some(value.to_text());
        }
    }
}

/// A request's accumulator, shared with its open stages and transfers so that closing one
/// needs no Registry lookup of the request.
pub(super) type RequestLink = Arc<Mutex<RequestAcc>>;

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
    /// The nearest enclosing `omni.run`, if any.
    pub(super) run: Option<tracing_core::span::Id>,
    pub(super) request_id: Option<String>,
    pub(super) status: Option<RequestStatus>,
    pub(super) issues: IssueSet,
    pub(super) acc: RequestLink,
}

impl SetField for RequestSpan {
    fn set(&mut self, name: &str, value: FieldValue<'_>) {
        match name {
            field::REQUEST_ID => self.request_id = Some(value.to_text()),
            field::STATUS => {
                let text = value.to_text();
                self.status = Some(RequestStatus::parse(&text).unwrap_or_else(|| {
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
    /// The nearest enclosing `omni.request`; `None` is a convention violation.
    pub(super) request: Option<RequestLink>,
    pub(super) issues: IssueSet,
    stage_id: Option<u64>,
    stage_name: Option<Arc<str>>,
    batch_id: Option<u64>,
    batch_size: Option<u64>,
    num_tokens_in: u64,
    num_tokens_out: u64,
    audio_generated_frames: u64,
    audio_sample_rate: Option<u64>,
    image_num: Option<u64>,
    resolution: Option<String>,
    gen_override_ms: Option<f64>,
    postprocess_override_ms: Option<f64>,
    pub(super) queue: LeafTimer,
    pub(super) postprocess: LeafTimer,
}

impl StageSpan {
    pub(super) fn new(start_ns: u64, request: Option<RequestLink>) -> Self {
        Self {
            start_ns,
            request,
            ..Self::default()
        }
    }

    /// The span's contribution, or `None` (with the issue noted) if it cannot be placed.
    pub(super) fn finish(&mut self, end_ns: u64) -> Option<StageSample> {
        let Some(stage_id) = self.stage_id else {
            self.issues.insert(Issue::MissingStageId);
            return None;
        };
        let queue_ms = self.queue.total_ms().unwrap_or(0.0);
        let measured_pp_ms = self.postprocess.total_ms().unwrap_or(0.0);
        let postprocess_ms = self.postprocess_override_ms.unwrap_or(measured_pp_ms);
        let gen_ms = self.gen_override_ms.unwrap_or_else(|| {
            stats::stage_gen_time_ms(
                stats::ns_to_ms(end_ns.saturating_sub(self.start_ns)),
                queue_ms,
                measured_pp_ms,
            )
        });
        Some(StageSample {
            stage_id,
            stage_name: self.stage_name.take(),
            batch_id: self.batch_id,
            batch_size: self.batch_size,
            num_tokens_in: self.num_tokens_in,
            num_tokens_out: self.num_tokens_out,
            audio_generated_frames: self.audio_generated_frames,
            audio_sample_rate: self.audio_sample_rate,
            image_num: self.image_num,
            resolution: self.resolution.take(),
            stage_gen_time_ms: gen_ms,
            postprocess_time_ms: postprocess_ms,
            queue_time_ms: queue_ms,
            start_ns: self.start_ns,
            end_ns,
        })
    }
}

/// Sets `slot` to the field as a count, keeping the old value (and noting why) on bad input.
fn set_u64(slot: &mut Option<u64>, value: &FieldValue<'_>, issues: &mut IssueSet) {
    if let Some(v) = value.to_u64(issues) {
        *slot = Some(v);
    }
}

fn set_count(slot: &mut u64, value: &FieldValue<'_>, issues: &mut IssueSet) {
    if let Some(v) = value.to_u64(issues) {
        *slot = v;
    }
}

fn set_ms(slot: &mut Option<f64>, value: &FieldValue<'_>, issues: &mut IssueSet) {
    if let Some(v) = value.to_ms(issues) {
        *slot = Some(v);
    }
}

impl SetField for StageSpan {
    fn set(&mut self, name: &str, value: FieldValue<'_>) {
        let issues = &mut self.issues;
        match name {
            field::STAGE_ID => set_u64(&mut self.stage_id, &value, issues),
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
            field::AUDIO_GENERATED_FRAMES => {
                set_count(&mut self.audio_generated_frames, &value, issues)
            }
            field::AUDIO_SAMPLE_RATE => set_u64(&mut self.audio_sample_rate, &value, issues),
            field::IMAGE_NUM => set_u64(&mut self.image_num, &value, issues),
            field::RESOLUTION => self.resolution = Some(value.to_text()),
            field::STAGE_GEN_TIME_MS => set_ms(&mut self.gen_override_ms, &value, issues),
            field::POSTPROCESS_TIME_MS => set_ms(&mut self.postprocess_override_ms, &value, issues),
            _ => {}
        }
    }
}

/// `omni.transfer`.
#[derive(Debug, Default)]
pub(super) struct TransferSpan {
    /// The nearest enclosing `omni.request`; `None` is a convention violation.
    pub(super) request: Option<RequestLink>,
    pub(super) issues: IssueSet,
    from_stage: Option<u64>,
    to_stage: Option<u64>,
    size_bytes: u64,
    tx_override_ms: Option<f64>,
    rx_override_ms: Option<f64>,
    in_flight_override_ms: Option<f64>,
    pub(super) tx: LeafTimer,
    pub(super) rx: LeafTimer,
    /// End of the last `omni.transfer.tx` child.
    pub(super) tx_last_end_ns: Option<u64>,
    /// Start of the first `omni.transfer.rx_decode` child.
    pub(super) rx_first_start_ns: Option<u64>,
}

impl TransferSpan {
    pub(super) fn new(request: Option<RequestLink>) -> Self {
        Self {
            request,
            ..Self::default()
        }
    }

    /// The span's contribution, or `None` (with the issue noted) if it cannot be placed.
    pub(super) fn finish(&mut self) -> Option<TransferSample> {
        let (Some(from_stage), Some(to_stage)) = (self.from_stage, self.to_stage) else {
            self.issues.insert(Issue::MissingEdge);
            return None;
        };
        let tx = self.tx.total_ms();
        let rx = self.rx.total_ms();
        if tx.is_none() && self.tx_override_ms.is_none() {
            self.issues.insert(Issue::TransferWithoutTx);
        }
        if rx.is_none() && self.rx_override_ms.is_none() {
            self.issues.insert(Issue::TransferWithoutRx);
        }
        let in_flight = self.in_flight_override_ms.unwrap_or_else(|| {
            match (self.tx_last_end_ns, self.rx_first_start_ns) {
                (Some(tx_end), Some(rx_start)) => stats::in_flight_time_ms(tx_end, rx_start),
                _ => 0.0,
            }
        });
        Some(TransferSample {
            from_stage,
            to_stage,
            size_bytes: self.size_bytes,
            tx_time_ms: self.tx_override_ms.or(tx).unwrap_or(0.0),
            rx_decode_time_ms: self.rx_override_ms.or(rx).unwrap_or(0.0),
            in_flight_time_ms: in_flight,
        })
    }
}

impl SetField for TransferSpan {
    fn set(&mut self, name: &str, value: FieldValue<'_>) {
        let issues = &mut self.issues;
        match name {
            field::FROM_STAGE => set_u64(&mut self.from_stage, &value, issues),
            field::TO_STAGE => set_u64(&mut self.to_stage, &value, issues),
            field::SIZE_BYTES => set_count(&mut self.size_bytes, &value, issues),
            field::TX_TIME_MS => set_ms(&mut self.tx_override_ms, &value, issues),
            field::RX_DECODE_TIME_MS => set_ms(&mut self.rx_override_ms, &value, issues),
            field::IN_FLIGHT_TIME_MS => set_ms(&mut self.in_flight_override_ms, &value, issues),
            _ => {}
        }
    }
}
