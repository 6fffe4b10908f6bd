//! Closing spans: a stage or transfer merges into its request's accumulator, a request
//! becomes its record (and joins its run's scope), a run its summary; then the sinks.

use std::borrow::Cow;
use std::sync::atomic::Ordering;

use tracing_core::Subscriber;
use tracing_core::span::Id;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::annotate::{AnnotateVia, Annotation};
use super::state::{self, RequestSpan, RunSpan, StageSpan, TransferSpan};
use super::table::{Key, Locked, Slot, Table};
use super::{Inner, Num, lock_run, names};
use crate::accumulate::{RequestAcc, ScopeAcc};
use crate::convention::exported;
use crate::diagnostics::{Issue, IssueSet};
use crate::stats::{OverallSummary, RequestE2EStats, RequestStatus, keys};

/// A span being closed: its id, the time it closed, and where its numbers go.
pub(super) struct Closing<'a> {
    pub(super) id: &'a Id,
    /// The clock's time of the close.
    pub(super) now: u64,
    /// The subscriber to annotate its exported span through, when annotations are on.
    pub(super) via: AnnotateVia<'a>,
    /// For a request: the subscriber to read its trace id from (this layer runs before
    /// the OpenTelemetry layer).
    pub(super) trace: Option<&'a tracing::Dispatch>,
}

/// What a closed stage's or transfer's exported span gets: its name (unless it named
/// itself) and its numbers.
type Exported<const N: usize> = (Option<Cow<'static, str>>, [(&'static str, Num); N]);

/// What became of a closed stage or transfer, for its request ([`Inner::merge_child`]).
enum Merged {
    /// Merged; the issues to report.
    Into(IssueSet),
    /// Its request was aborted before it closed: not merged.
    AfterAbort,
}

/// A closed request span, for [`Inner::finish_request`].
struct Done<'a> {
    id: &'a Id,
    named: bool,
    start_ns: u64,
    end_ns: u64,
    run: Option<super::RunLink>,
    status: RequestStatus,
    issues: IssueSet,
    via: AnnotateVia<'a>,
    trace_id: Option<String>,
    reply: Option<std::sync::Arc<state::ReplySlot>>,
}

impl Inner {
    /// Closes a span whose state was taken out of `table`: merges a stage or transfer
    /// into its request, reports a request or a run. The state is taken out by whoever
    /// closes first (the layer's own `on_close`, or an
    /// [`AnnotationLayer`](crate::otlp::AnnotationLayer) just before the OpenTelemetry
    /// layer), so a span is closed once.
    ///
    /// `held` is the lock of the span's shard, when the caller still holds it: a stage or
    /// transfer in the same shard as its request (the usual case: one thread made both)
    /// merges under it, with no second lock. It is released before anything else runs
    /// (annotations, diagnostics, sinks).
    #[inline]
    pub(super) fn close<S>(
        &self,
        table: &Table,
        held: Option<Locked<'_>>,
        slot: Slot,
        closing: &Closing<'_>,
        ctx: &Context<'_, S>,
    ) where
        S: Subscriber + for<'l> LookupSpan<'l>,
    {
        match slot {
            Slot::Stage(mut stage) => {
                self.close_stage(table, held, &mut stage, closing);
                state::unbox(stage);
            }
            Slot::Transfer(mut transfer) => {
                self.close_transfer(table, held, &mut transfer, closing);
                state::unbox(transfer);
            }
            other => {
                drop(held);
                self.close_unheld(other, closing, ctx);
            }
        }
    }

    /// [`Inner::close`] of a request, run, batch or timing child: no lock is held.
    fn close_unheld<S>(&self, slot: Slot, closing: &Closing<'_>, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'l> LookupSpan<'l>,
    {
        let Closing {
            id,
            now,
            via,
            trace,
        } = *closing;
        match slot {
            Slot::Request(request) => {
                // With annotations, the trace id comes with the request's annotation.
                #[cfg(feature = "otlp")]
                let trace_id = trace.and_then(|d| super::otel::trace_id(d, id));
                #[cfg(not(feature = "otlp"))]
                let trace_id = trace.and(None);
                self.close_request(id, request, now, via, trace_id);
            }
            Slot::Run(run) => self.close_run(run, id, ctx, via),
            Slot::Batch(batch) => {
                // A mistyped batch field is said like any other.
                self.shared.diagnostics.record(batch.issues());
            }
            // Closed by the layer's own `on_close` (an `AnnotationLayer` takes only
            // annotated spans); stages and transfers by `Inner::close`.
            Slot::Leaf(_) | Slot::Stage(_) | Slot::Transfer(_) => {}
        }
    }

    #[inline]
    fn close_stage(
        &self,
        table: &Table,
        held: Option<Locked<'_>>,
        stage: &mut StageSpan,
        closing: &Closing<'_>,
    ) {
        let Closing { id, now, via, .. } = *closing;
        let mut sample = stage.finish(now);
        // What the exported span gets, read before the sample goes into the request.
        let exported = match (via, &sample) {
            (Some(_), Some(s)) => Some((
                (!stage.named).then(|| names::stage(s.stage_id, s.stage_name.as_ref())),
                [
                    (keys::STAGE_GEN_TIME_MS, Num::Float(s.stage_gen_time_ms)),
                    (keys::POSTPROCESS_TIME_MS, Num::Float(s.postprocess_time_ms)),
                    (keys::QUEUE_TIME_MS, Num::Float(s.queue_time_ms)),
                ],
            )),
            _ => None,
        };
        let issues = if stage.remote {
            drop(held);
            None
        } else {
            let request = stage.request.take();
            let merged = self.merge_child(table, held, id, request, now, stage.issues, |acc| {
                if let Some(s) = sample.as_mut() {
                    acc.add_stage(s);
                }
                IssueSet::default()
            });
            Some(
                self.merged(merged)
                    .unwrap_or_else(|| outside_request(stage.issues)),
            )
        };
        self.child_closed(id, via, exported, issues, stage.issues);
    }

    #[inline]
    fn close_transfer(
        &self,
        table: &Table,
        held: Option<Locked<'_>>,
        transfer: &mut TransferSpan,
        closing: &Closing<'_>,
    ) {
        let Closing { id, now, via, .. } = *closing;
        let (mut sample, incomplete) = transfer.finish(now);
        // What the exported span gets, read before the sample goes into the request.
        let exported = match (via, &sample) {
            (Some(_), Some(t)) => Some((
                (!transfer.named).then(|| names::transfer(t.from_stage, t.to_stage)),
                [
                    (
                        keys::SIZE_KBYTES,
                        Num::Float(crate::stats::kbytes(t.size_bytes)),
                    ),
                    (keys::TX_TIME_MS, Num::Float(t.tx_time_ms)),
                    (keys::RX_DECODE_TIME_MS, Num::Float(t.rx_decode_time_ms)),
                    (keys::IN_FLIGHT_TIME_MS, Num::Float(t.in_flight_time_ms)),
                ],
            )),
            _ => None,
        };
        let issues = if transfer.remote {
            // One half of a transfer between processes: incomplete by design.
            drop(held);
            None
        } else {
            let request = transfer.request.take();
            let merged = self.merge_child(table, held, id, request, now, transfer.issues, |acc| {
                if let Some(t) = sample.take() {
                    acc.add_transfer(t);
                }
                acc.defer_incomplete(incomplete);
                IssueSet::default()
            });
            // Without a request to settle them, incomplete transfers are said now.
            Some(
                self.merged(merged)
                    .unwrap_or_else(|| outside_request(transfer.issues.union(incomplete))),
            )
        };
        self.child_closed(id, via, exported, issues, transfer.issues);
    }

    /// The end of a stage's or transfer's close, once no lock is held: its exported span
    /// annotated, then its issues said (`merged`, or `own` as remote work when it merged
    /// into no request of this process).
    fn child_closed<const N: usize>(
        &self,
        id: &Id,
        via: AnnotateVia<'_>,
        exported: Option<Exported<N>>,
        merged: Option<IssueSet>,
        own: IssueSet,
    ) {
        if let Some((name, attributes)) = exported {
            self.annotate(
                via,
                id,
                Annotation {
                    name,
                    attributes: &attributes,
                    id: None,
                    failure: None,
                },
                false,
            );
        }
        match merged {
            Some(issues) => self.shared.diagnostics.record(issues),
            None => self.remote_work(own),
        }
    }

    fn close_run<S>(&self, run: RunSpan, id: &Id, ctx: &Context<'_, S>, via: AnnotateVia<'_>)
    where
        S: Subscriber + for<'l> LookupSpan<'l>,
    {
        let (summary, issues) = {
            let mut state = lock_run(&run.state);
            self.shared.run_closed(state.open_key);
            let scope = state.run_id.take().unwrap_or_else(|| {
                format!("run-{}", self.next_run.fetch_add(1, Ordering::Relaxed))
            });
            let issues = state.issues;
            if !issues.is_empty() {
                // A late `run_id` counts in the run's summary too.
                state.scope.count_invalid();
            }
            (state.scope.summary(scope), issues)
        };
        let summary = OverallSummary {
            model_name: self.shared.model_name(),
            ..summary
        };
        let name = (!run.named).then_some(exported::RUN.into());
        let run_id = Some((crate::convention::field::RUN_ID, summary.scope.as_str()));
        let attributes = [
            (keys::E2E_REQUESTS, Num::Count(summary.e2e_requests)),
            (keys::E2E_WALL_TIME_MS, Num::Float(summary.e2e_wall_time_ms)),
            (keys::E2E_TOTAL_TOKENS, Num::Count(summary.e2e_total_tokens)),
        ];
        #[cfg(feature = "otlp")]
        let exported_apart = ctx.span(id).is_some_and(|span| {
            // Exported by `otlp::RunLinks` (so that its requests own their traces).
            let ext = span.extensions();
            match ext.get::<super::otel::RunTrace>() {
                Some(trace) => {
                    trace.0.finish(name.clone(), &attributes, run_id);
                    true
                }
                None => false,
            }
        });
        #[cfg(not(feature = "otlp"))]
        let exported_apart = {
            let _ = ctx;
            false
        };
        if via.is_some() && !exported_apart {
            self.annotate(
                via,
                id,
                Annotation {
                    name,
                    attributes: &attributes,
                    id: run_id,
                    failure: None,
                },
                false,
            );
        }
        self.shared.diagnostics.record(issues);
        self.emit_run_summary(summary);
    }

    /// A stage or transfer done here for a request owned by another process
    /// ([`crate::propagation`]): counted, and left to that process's tables.
    fn remote_work(&self, issues: IssueSet) {
        self.shared.diagnostics.count_remote();
        self.shared.diagnostics.record(issues);
    }

    /// Merges a closed stage or transfer (`id`, closed at `closed_ns`) into its request
    /// (`request`, its span id): under `held`, the lock of the child's shard, when the
    /// request is in that shard, else under the request's shard's lock. Returns the child's
    /// issues, for the caller to report once no lock is held, or that the request was
    /// aborted before the child closed (nothing merged); `None` if it has no request, or
    /// (only inside a span's `Debug` that closes it, with the request's shard held) none
    /// reachable.
    #[allow(clippy::too_many_arguments)]
    fn merge_child(
        &self,
        table: &Table,
        held: Option<Locked<'_>>,
        id: &Id,
        request: Option<Key>,
        closed_ns: u64,
        issues: IssueSet,
        merge: impl FnOnce(&mut RequestAcc) -> IssueSet,
    ) -> Option<Merged> {
        let into = |slot: &mut Slot| match slot {
            // The request ended when it was aborted: later work is not its.
            Slot::Request(r) if r.aborted_at.is_some_and(|at| closed_ns > at) => {
                Some(Merged::AfterAbort)
            }
            Slot::Request(r) => {
                let all = issues.union(merge(&mut r.acc));
                if !all.is_empty() {
                    r.acc.count_invalid();
                }
                Some(Merged::Into(all))
            }
            _ => None,
        };
        match (request?, held) {
            (key, Some(held)) => held.with_parent(table, id.into_u64(), key, into),
            (key, None) => table.with(key, into),
        }
        .flatten()
    }

    /// The issues of a child [`Inner::merge_child`] merged; a child that closed after its
    /// request was aborted is counted apart (and said once), with its own issues.
    fn merged(&self, merged: Option<Merged>) -> Option<IssueSet> {
        match merged? {
            Merged::Into(issues) => Some(issues),
            Merged::AfterAbort => {
                self.shared.diagnostics.count_after_abort();
                Some(IssueSet::default())
            }
        }
    }

    fn close_request(
        &self,
        id: &Id,
        request: RequestSpan,
        now: u64,
        via: AnnotateVia<'_>,
        trace_id: Option<String>,
    ) {
        let RequestSpan {
            start_ns,
            run,
            status,
            aborted_at,
            issues,
            mut acc,
            named,
            reply,
        } = request;
        let status = status.unwrap_or(RequestStatus::Ok);
        // An aborted request ends at its abort, not when spawned work lets its span close.
        let end_ns = match (status, aborted_at) {
            (RequestStatus::Aborted, Some(at)) => at.clamp(start_ns, now),
            _ => now,
        };
        let done = Done {
            id,
            named,
            start_ns,
            end_ns,
            run,
            status,
            issues,
            via,
            trace_id,
            reply,
        };
        // Every child has closed (the Registry closes parents last): the accumulator is
        // this span's alone, finished in place, then pooled with its buffers.
        self.finish_request(&mut acc, done);
        state::pool_request_acc(acc);
    }

    /// A closed request's record out of its accumulator, to its scope and the sinks; the
    /// accumulator is left empty for another request.
    fn finish_request(&self, acc: &mut RequestAcc, done: Done<'_>) {
        let Done {
            id,
            named,
            start_ns,
            end_ns: now,
            run,
            status,
            mut issues,
            via,
            mut trace_id,
            reply,
        } = done;
        let (incomplete, incomplete_spans) = acc.settle(status);
        let request_id = acc.take_request_id().unwrap_or_else(|| {
            issues.insert(Issue::MissingRequestId);
            format!(
                "request-{}",
                self.next_request.fetch_add(1, Ordering::Relaxed)
            )
        });
        let online = run.is_none();
        let mut report = match run {
            Some(run) => self.in_run(acc, &run, &mut issues, request_id, status, (start_ns, now)),
            None => self.online(acc, issues, request_id, status, start_ns, now),
        };
        self.shared.diagnostics.record(issues);
        self.shared
            .diagnostics
            .record_n(incomplete, incomplete_spans);
        if via.is_some() {
            let annotated = self.annotate_request(via, id, named, &report, trace_id.is_none());
            trace_id = trace_id.or(annotated);
        }
        report.trace_id = trace_id;
        report.model_name = self.shared.model_name();
        if let Some(reply) = reply {
            if let Ok(mut slot) = reply.lock() {
                *slot = Some(report.clone());
            }
        }
        self.emit_request(report, online, acc);
    }

    /// A request of `run` (its scope, for its record and summary): a repeated id is an
    /// issue, the run is named now if it has no name yet (so that its requests and summary
    /// agree), and the record joins the run's scope.
    fn in_run(
        &self,
        acc: &mut RequestAcc,
        run: &super::RunLink,
        issues: &mut IssueSet,
        request_id: String,
        status: RequestStatus,
        (start_ns, end_ns): (u64, u64),
    ) -> RequestE2EStats {
        let mut run = lock_run(run);
        if !run.scope.note_request_id(&request_id) {
            issues.insert(Issue::DuplicateRequestId);
        }
        if !issues.is_empty() {
            acc.count_invalid();
        }
        let name = run.run_id.get_or_insert_with(|| {
            // Name the run now so its requests and summary agree.
            format!("run-{}", self.next_run.fetch_add(1, Ordering::Relaxed))
        });
        let mut scope = acc.spare_string();
        scope.push_str(name);
        let report = acc.finish(
            request_id,
            status,
            scope,
            (start_ns, end_ns),
            &self.audio_thresholds_ms,
        );
        run.scope.add(&report);
        if !run.named {
            run.named = true;
            self.shared.run_named(run.open_key, &report.scope);
        }
        report
    }

    /// Puts a finished request's numbers on its exported span: the record's totals, each
    /// stage's gen time, a failure's type and message, and a readable name unless it named
    /// itself. With `want_trace_id`, returns its trace id.
    fn annotate_request(
        &self,
        via: AnnotateVia<'_>,
        id: &Id,
        named: bool,
        report: &RequestE2EStats,
        want_trace_id: bool,
    ) -> Option<String> {
        // Inline: 4 totals, the GenAI usage and up to 8 stages need no allocation.
        let mut attributes: smallvec::SmallVec<[(&'static str, Num); 14]> = smallvec::smallvec![
            (keys::E2E_TOTAL_MS, Num::Float(report.e2e_total_ms)),
            (keys::E2E_TOTAL_TOKENS, Num::Count(report.e2e_total_tokens)),
            (
                keys::TRANSFERS_TOTAL_TIME_MS,
                Num::Float(report.transfers_total_time_ms),
            ),
            (
                keys::TRANSFERS_TOTAL_KBYTES,
                Num::Float(report.transfers_total_kbytes),
            ),
            // The GenAI semantic conventions' current names (not the deprecated
            // `prompt_tokens` / `completion_tokens`), as the metrics count them.
            (
                keys::GEN_AI_USAGE_INPUT_TOKENS,
                Num::Count(crate::stats::prompt_tokens(&report.stages)),
            ),
            (
                keys::GEN_AI_USAGE_OUTPUT_TOKENS,
                Num::Count(crate::stats::generated_tokens(&report.stages)),
            ),
        ];
        for s in report
            .stages
            .iter()
            .filter(|s| s.stage_id < keys::STAGE_GEN_TIME_KEYS.len() as u64)
        {
            attributes.push((
                keys::STAGE_GEN_TIME_KEYS[s.stage_id as usize],
                Num::Float(s.stage_gen_time_ms),
            ));
        }
        let failure = match report.status {
            RequestStatus::Ok => None,
            RequestStatus::Error => Some((
                "error",
                report
                    .status_message
                    .clone()
                    .unwrap_or_else(|| "error".to_owned()),
            )),
            RequestStatus::Aborted => Some(("aborted", "aborted".to_owned())),
        };
        let name = (!named).then_some(exported::REQUEST.into());
        self.annotate(
            via,
            id,
            Annotation {
                name,
                attributes: &attributes,
                id: None,
                failure,
            },
            want_trace_id,
        )
    }

    /// An online request is its own scope: its summary goes out first, as vLLM-Omni does.
    fn online(
        &self,
        acc: &mut RequestAcc,
        issues: IssueSet,
        request_id: String,
        status: RequestStatus,
        start: u64,
        end: u64,
    ) -> RequestE2EStats {
        if !issues.is_empty() {
            acc.count_invalid();
        }
        let mut scope = acc.spare_string();
        scope.push_str(&request_id);
        let report = acc.finish(
            request_id,
            status,
            scope,
            (start, end),
            &self.audio_thresholds_ms,
        );
        let to_writer = self.writer.as_ref().filter(|w| w.wants_online_summary());
        if !self.sinks.is_empty() || to_writer.is_some() {
            let mut scope = ScopeAcc::new(start);
            scope.add(&report);
            let mut summary = scope.summary(report.scope.clone());
            summary.model_name = self.shared.model_name();
            for sink in &self.sinks {
                self.guarded(|| sink.on_summary(&summary));
            }
            if let Some(writer) = to_writer {
                writer.summary(summary, true);
            }
        }
        report
    }

    /// A finished request (`online`: with no run): to the handle's totals and aggregates,
    /// then to the sinks; the accumulator is recycled, with the record's buffers when no
    /// writer took the record.
    #[inline]
    fn emit_request(&self, mut report: RequestE2EStats, online: bool, acc: &mut RequestAcc) {
        self.shared.record_request(&report);
        for sink in &self.sinks {
            self.guarded(|| sink.on_request(&report));
        }
        // Moved, not cloned, into the writer's queue: no formatting or I/O here. Without
        // a writer, the accumulator takes the record's buffers back.
        match &self.writer {
            Some(writer) => {
                writer.request(report, online);
                acc.recycle(None);
            }
            None => acc.recycle(Some(&mut report)),
        }
    }

    /// A run's summary: to the sinks and the handle.
    fn emit_run_summary(&self, summary: OverallSummary) {
        for sink in &self.sinks {
            self.guarded(|| sink.on_summary(&summary));
        }
        if let Some(writer) = &self.writer {
            writer.summary(summary.clone(), false);
        }
        self.shared.record_run_summary(summary);
    }
}

/// A stage's or transfer's issues when it merged into no request.
fn outside_request(mut issues: IssueSet) -> IssueSet {
    issues.insert(Issue::OutsideRequest);
    issues
}
