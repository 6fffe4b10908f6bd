//! Opening spans and recording their fields: the per-span state goes into the layer's
//! [table](super::table).
//!
//! A new span finds what it belongs to (its request, its run) through its parent's state in
//! the table: the parent comes from the span's attributes (explicit, or the thread's
//! current span), so no Registry lookup is needed. Only a span whose parent is not an
//! `omni.*` span of this layer (an engine's own span in between) walks its ancestors in the
//! Registry, as it always did.

use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use super::fields::Visitor;
use super::state::{self, BatchSpan, RequestSpan, RunSpan, RunState, StageSpan, TransferSpan};
use super::table::{Key, LeafSpan, Slot, Table};
use super::{Inner, OutputFields, lock_run};
use crate::accumulate::ScopeAcc;
use crate::convention::SpanKind;
use crate::diagnostics::{Issue, IssueSet};
use crate::stats::RequestStatus;

/// The nearest `omni.request` ancestor of `span` (excluding itself), and whether an
/// `omni.stage` lies between them (or above, when there is no request).
///
/// Only span names are read.
pub(super) fn enclosing_request<'a, S>(span: &SpanRef<'a, S>) -> (Option<SpanRef<'a, S>>, bool)
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    let mut in_stage = false;
    let mut next = span.parent();
    while let Some(ancestor) = next {
        match SpanKind::from_name(ancestor.name()) {
            Some(SpanKind::Request) => return (Some(ancestor), in_stage),
            Some(SpanKind::Stage) => in_stage = true,
            _ => {}
        }
        next = ancestor.parent();
    }
    (None, in_stage)
}

/// The parent a new span or an event gets from its attributes: explicit, the thread's
/// current span (contextual), or none (root).
fn parent_of<S>(explicit: Option<&Id>, contextual: bool, ctx: &Context<'_, S>) -> Option<Key>
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    match explicit {
        Some(parent) => Some(parent.into_u64()),
        None if contextual => ctx.current_span().id().map(Id::into_u64),
        None => None,
    }
}

/// What a child of the span `parent` (whose state is `slot`) inherits, when that span is a
/// request, a stage or a transfer: its request's span id, and whether a stage lies between.
fn ancestry(parent: Key, slot: &Slot) -> Option<(Option<Key>, bool)> {
    match slot {
        Slot::Request(_) => Some((Some(parent), false)),
        Slot::Stage(s) => Some((s.request, true)),
        Slot::Transfer(t) => Some((t.request, t.in_stage)),
        _ => None,
    }
}

/// Places a new stage or transfer in its request.
fn place(slot: &mut Slot, (request, in_stage): (Option<Key>, bool)) {
    match slot {
        Slot::Stage(stage) => {
            stage.request = request;
            // A remote stage sits under the stage that called it (its local view).
            if in_stage && !stage.remote {
                stage.issues.insert(Issue::StageInStage);
            }
        }
        Slot::Transfer(transfer) => {
            transfer.request = request;
            transfer.in_stage = in_stage;
        }
        _ => {}
    }
}

/// Opens or closes a timing child in its parent's state. `false` if the parent is not of
/// the right kind (the child is then not counted, on open and close alike).
pub(super) fn leaf_event(kind: SpanKind, parent: &mut Slot, now: u64, open: bool) -> bool {
    match (kind, parent) {
        (SpanKind::Queue | SpanKind::Postprocess, Slot::Stage(stage)) => {
            let queue = kind == SpanKind::Queue;
            let timer = if queue {
                &mut stage.queue
            } else {
                &mut stage.postprocess
            };
            if open {
                timer.open(now);
                stage.excluded.open(now);
                if queue {
                    stage.queued.open(now);
                }
            } else {
                timer.close(now);
                stage.excluded.close(now);
                if queue {
                    stage.queued.close(now);
                }
            }
            true
        }
        (SpanKind::Tx | SpanKind::RxDecode, Slot::Transfer(transfer)) => {
            match (kind, open) {
                (SpanKind::Tx, true) => transfer.tx.open(now),
                (SpanKind::Tx, false) => transfer.tx_closed(now),
                (_, true) => transfer.rx_opened(now),
                (_, false) => transfer.rx.close(now),
            }
            true
        }
        _ => false,
    }
}

impl Inner {
    /// `id`'s key, if it is an open request of this layer's.
    pub(super) fn request_key(&self, table: &Table, id: &Id) -> Option<Key> {
        let key = id.into_u64();
        table
            .with(key, |slot| matches!(slot, Slot::Request(_)))
            .and_then(|is| is.then_some(key))
    }

    /// The request a new stage or transfer belongs to, and whether a stage lies between:
    /// from its parent's state, else by walking its ancestors in the Registry.
    fn enclosing<S>(
        &self,
        table: &Table,
        parent: Option<Key>,
        id: &Id,
        ctx: &Context<'_, S>,
    ) -> (Option<Key>, bool)
    where
        S: Subscriber + for<'l> LookupSpan<'l>,
    {
        let Some(parent) = parent else {
            return (None, false);
        };
        if let Some(known) = table.with(parent, |slot| ancestry(parent, slot)).flatten() {
            return known;
        }
        let Some(span) = ctx.span(id) else {
            return (None, false);
        };
        let (request, in_stage) = enclosing_request(&span);
        let request = request.and_then(|r| self.request_key(table, &r.id()));
        (request, in_stage)
    }

    /// The run a new request belongs to, and its issues (a request inside a request): from
    /// its parent's state, else by walking its ancestors in the Registry.
    fn enclosing_run<S>(
        &self,
        table: &Table,
        parent: Option<Key>,
        id: &Id,
        ctx: &Context<'_, S>,
    ) -> (Option<super::RunLink>, IssueSet)
    where
        S: Subscriber + for<'l> LookupSpan<'l>,
    {
        let mut issues = IssueSet::default();
        let Some(parent) = parent else {
            return (None, issues);
        };
        let known = table
            .with(parent, |slot| match slot {
                Slot::Run(r) => Some((Some(r.state.clone()), false)),
                Slot::Request(r) => Some((r.run.clone(), true)),
                _ => None,
            })
            .flatten();
        if let Some((run, nested)) = known {
            if nested {
                issues.insert(Issue::RequestInRequest);
            }
            return (run, issues);
        }
        let Some(span) = ctx.span(id) else {
            return (None, issues);
        };
        let mut next = span.parent();
        while let Some(ancestor) = next {
            match SpanKind::from_name(ancestor.name()) {
                Some(SpanKind::Request) => issues.insert(Issue::RequestInRequest),
                Some(SpanKind::Run) => {
                    let run = table
                        .with(ancestor.id().into_u64(), |slot| match slot {
                            Slot::Run(r) => Some(r.state.clone()),
                            _ => None,
                        })
                        .flatten();
                    return (run, issues);
                }
                _ => {}
            }
            next = ancestor.parent();
        }
        (None, issues)
    }

    /// `on_new_span` of an `omni.*` span: its state into the table, placed in its request or
    /// run; a timing child only names its parent, whose timer it starts.
    pub(super) fn new_span<S>(
        &self,
        table: &Table,
        kind: SpanKind,
        attrs: &Attributes<'_>,
        id: &Id,
        ctx: &Context<'_, S>,
    ) where
        S: Subscriber + for<'l> LookupSpan<'l>,
    {
        let key = id.into_u64();
        let parent = || parent_of(attrs.parent(), attrs.is_contextual(), ctx);
        if kind.is_timing() {
            return self.new_timing_span(table, kind, key, parent());
        }
        // Only an exported span's name reads it.
        let named = self.annotations && attrs.metadata().fields().field("otel.name").is_some();
        let slot = match kind {
            SpanKind::Run => return self.new_run(table, key, attrs, named),
            SpanKind::Request => {
                let (run, issues) = self.enclosing_run(table, parent(), id, ctx);
                let now = self.clock.now();
                let mut request = RequestSpan {
                    start_ns: now,
                    run,
                    status: None,
                    aborted_at: None,
                    reply: None,
                    issues,
                    acc: state::new_request_acc(),
                    named,
                };
                attrs.record(&mut Visitor(&mut request));
                table.insert(key, Slot::Request(request));
                return;
            }
            SpanKind::Stage => {
                let mut stage = state::boxed(StageSpan::new(self.clock.now(), None));
                stage.named = named;
                attrs.record(&mut Visitor(&mut *stage));
                return self.insert_child(table, id, parent(), ctx, Slot::Stage(stage));
            }
            SpanKind::Transfer => {
                let mut transfer = state::boxed(TransferSpan::new(self.clock.now(), None));
                transfer.named = named;
                attrs.record(&mut Visitor(&mut *transfer));
                return self.insert_child(table, id, parent(), ctx, Slot::Transfer(transfer));
            }
            SpanKind::Batch => {
                let mut batch = BatchSpan::default();
                attrs.record(&mut Visitor(&mut batch));
                Slot::Batch(batch)
            }
            SpanKind::Queue | SpanKind::Postprocess | SpanKind::Tx | SpanKind::RxDecode => return,
        };
        table.insert(key, slot);
    }

    /// A timing child (queue, postprocess, tx, rx_decode) opened: it only names its parent,
    /// whose timer it starts, under one lock when both are in one shard. A misplaced child
    /// is diagnosed when it closes: an event emitted here, inside the dispatcher's
    /// `get_default`, would reach no subscriber.
    #[inline]
    fn new_timing_span(&self, table: &Table, kind: SpanKind, key: Key, parent: Option<Key>) {
        let now = self.clock.now();
        let Some(mut map) = table.lock(key) else {
            return;
        };
        if !map.insert(key, Slot::Leaf(LeafSpan { kind, parent })) {
            return;
        }
        if let Some(p) = parent {
            map.with_parent(table, key, p, |slot| leaf_event(kind, slot, now, true));
        }
    }

    /// An `omni.run` opened: its scope, shared with its requests, and its entry in the
    /// handle's registry of open runs.
    fn new_run(&self, table: &Table, key: Key, attrs: &Attributes<'_>, named: bool) {
        let now = self.clock.now();
        let mut state = RunState {
            run_id: None,
            scope: ScopeAcc::new(now),
            named: false,
            issues: IssueSet::default(),
            open_key: 0,
        };
        attrs.record(&mut Visitor(&mut state));
        let name = state.run_id.clone();
        let link = std::sync::Arc::new(std::sync::Mutex::new(state));
        let open_key = self.shared.run_opened(name, link.clone());
        lock_run(&link).open_key = open_key;
        if !table.insert(key, Slot::Run(RunSpan { state: link, named })) {
            self.shared.run_closed(open_key);
        }
    }

    /// Stores a new stage or transfer, placed in its request: under one lock when its
    /// parent's state is in the same shard (the usual case: the same thread made both).
    fn insert_child<S>(
        &self,
        table: &Table,
        id: &Id,
        parent: Option<Key>,
        ctx: &Context<'_, S>,
        mut slot: Slot,
    ) where
        S: Subscriber + for<'l> LookupSpan<'l>,
    {
        let key = id.into_u64();
        let Some(mut map) = table.lock(key) else {
            return;
        };
        let known = match parent {
            None => Some((None, false)),
            Some(p) if Table::same_shard(key, p) => map.get(&p).and_then(|slot| ancestry(p, slot)),
            Some(_) => None,
        };
        match known {
            Some(known) => {
                place(&mut slot, known);
                map.insert(key, slot);
            }
            None => {
                drop(map);
                place(&mut slot, self.enclosing(table, parent, id, ctx));
                table.insert(key, slot);
            }
        }
    }

    /// `record` on a span: its fields into its state.
    pub(super) fn record(&self, table: &Table, id: &Id, values: &Record<'_>) {
        let key = id.into_u64();
        let Some(mut map) = table.lock(key) else {
            return;
        };
        let run = match map.get_mut(&key) {
            Some(Slot::Run(run)) => run.state.clone(),
            Some(Slot::Request(r)) => {
                // Whether this record gives `status`: an abort recorded (a typed request or
                // guard dropped unfinished) ends the request now.
                let before = r.status.take();
                values.record(&mut Visitor(&mut *r));
                match r.status {
                    None => r.status = before,
                    Some(RequestStatus::Aborted) if r.aborted_at.is_none() => {
                        r.aborted_at = Some(self.clock.now());
                    }
                    Some(_) => {}
                }
                return;
            }
            Some(Slot::Stage(s)) => return values.record(&mut Visitor(&mut **s)),
            Some(Slot::Transfer(t)) => return values.record(&mut Visitor(&mut **t)),
            Some(Slot::Batch(b)) => return values.record(&mut Visitor(b)),
            Some(Slot::Leaf(_)) | None => return,
        };
        drop(map);
        let mut state = lock_run(&run);
        values.record(&mut Visitor(&mut *state));
        if let (Some(name), false) = (&state.run_id, state.named) {
            self.shared.run_named(state.open_key, name);
        }
    }

    /// `follows_from` between a stage and a batch (either way): the stage takes the batch's
    /// id and size where it gave none.
    pub(super) fn link(&self, table: &Table, a: &Id, b: &Id) {
        let batch = |id: &Id| {
            table
                .with(id.into_u64(), |slot| match slot {
                    Slot::Batch(b) => Some((b.batch_id, b.batch_size)),
                    _ => None,
                })
                .flatten()
        };
        let lend = |stage: &Id, (id, size): (Option<u64>, Option<u64>)| {
            table
                .with(stage.into_u64(), |slot| match slot {
                    Slot::Stage(stage) => {
                        stage.lend_batch(id, size);
                        true
                    }
                    _ => false,
                })
                .unwrap_or(false)
        };
        if batch(b).is_some_and(|lent| lend(a, lent)) {
            return;
        }
        if let Some(lent) = batch(a) {
            lend(b, lent);
        }
    }

    /// An `omni.output` event: one output chunk of the stage it sits in.
    pub(super) fn output<S>(&self, table: &Table, event: &Event<'_>, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'l> LookupSpan<'l>,
    {
        let now = self.clock.now();
        let mut fields = OutputFields::default();
        event.record(&mut Visitor(&mut fields));
        let mut issues = fields.issues;
        let to_stage = |key: Key| {
            table
                .with(key, |slot| match slot {
                    Slot::Stage(stage) => {
                        stage.output(now, fields.units);
                        true
                    }
                    _ => false,
                })
                .unwrap_or(false)
        };
        // Usually the event sits in the stage itself.
        let counted = parent_of(event.parent(), event.is_contextual(), ctx).is_some_and(to_stage)
            || {
                // The nearest enclosing stage (the event may sit in its queue or
                // postprocess child).
                let stage = ctx.event_span(event).and_then(|span| {
                    span.scope()
                        .take_while(|s| SpanKind::from_name(s.name()) != Some(SpanKind::Request))
                        .find(|s| SpanKind::from_name(s.name()) == Some(SpanKind::Stage))
                });
                stage.is_some_and(|span| to_stage(span.id().into_u64()))
            };
        if !counted {
            issues.insert(Issue::OutputOutsideStage);
        }
        // An event is not inside the dispatcher's `get_default`: the warning goes out now.
        self.shared.diagnostics.record(issues);
    }

    /// A timing child whose parent was not a stage (queue, postprocess) or a transfer (tx,
    /// rx_decode): counted in the request it sits in too, so that the records, the summary
    /// and the handle agree.
    pub(super) fn misplaced_leaf<S>(&self, table: &Table, id: &Id, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'l> LookupSpan<'l>,
    {
        let request = ctx
            .span(id)
            .and_then(|span| enclosing_request(&span).0.map(|r| r.id()));
        if let Some(request) = request {
            table.with(request.into_u64(), |slot| {
                if let Slot::Request(r) = slot {
                    r.acc.count_invalid();
                }
            });
        }
        let mut issues = IssueSet::default();
        issues.insert(Issue::LeafOutsideParent);
        self.shared.diagnostics.record(issues);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names as the convention spells them, matched the plain way.
    fn reference(name: &str) -> Option<SpanKind> {
        Some(match name.strip_prefix("omni.")? {
            "run" => SpanKind::Run,
            "request" => SpanKind::Request,
            "stage" => SpanKind::Stage,
            "queue" => SpanKind::Queue,
            "postprocess" => SpanKind::Postprocess,
            "transfer" => SpanKind::Transfer,
            "transfer.tx" => SpanKind::Tx,
            "transfer.rx_decode" => SpanKind::RxDecode,
            "batch" => SpanKind::Batch,
            _ => return None,
        })
    }

    #[test]
    fn kinds_are_read_as_the_convention_spells_them() {
        for name in [
            "omni.run",
            "omni.request",
            "omni.stage",
            "omni.queue",
            "omni.postprocess",
            "omni.transfer",
            "omni.transfer.tx",
            "omni.transfer.rx_decode",
            "omni.batch",
            "omni.output",
            "omni.",
            "omni",
            "omni.runs",
            "omni.rux",
            "omni.transfer.rx",
            "omni.transfer.tx_decode_",
            "Omni.run",
            "http.request",
            "",
        ] {
            assert_eq!(SpanKind::from_name(name), reference(name), "{name}");
        }
    }
}
