//! Replaying exported spans through the metrics layer.
//!
//! Every exported span of the convention becomes a real `tracing` span again, opened and
//! closed at its exported times on a [`ManualClock`], with its exported parent as explicit
//! parent and its attributes recorded as fields, under a scoped dispatcher holding an
//! [`OmniMetricsLayer`](crate::OmniMetricsLayer). The layer then computes every table,
//! record and distribution as it does live: there is no second definition of any metric
//! here.
//!
//! Spans are replayed one trace at a time ([`Engine::replay_trace`]), as the reader hands
//! over each completed trace. Runs span many traces: a run is opened when the first of its
//! requests is replayed (at the run's exported start, known from the files' first pass,
//! else that request's start), stays open while its requests are replayed, and is closed
//! when its own span's trace is replayed, or at the end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::field::Empty;
use tracing::{Level, Span};

use super::model::{AttrValue, Output, SpanRec};
use super::{GroupBy, ReplayStats};
use crate::clock::ManualClock;
use crate::convention::{SpanKind, field};
use crate::report::Sink;
use crate::stats::{OverallSummary, RequestE2EStats};

/// Where a node's parent is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Parent {
    None,
    /// Another node of the trace.
    Node(usize),
    /// A run open across traces.
    Run(RunKey),
}

/// A span of the trace to replay.
#[derive(Debug)]
struct Node {
    /// Index in the trace's spans.
    rec: usize,
    kind: SpanKind,
    parent: Parent,
    start_ns: u64,
    end_ns: u64,
    depth: u32,
}

/// Open, output, close: the order of events at the same instant.
const OPEN: u8 = 0;
const OUTPUT: u8 = 1;
const CLOSE: u8 = 2;

/// One step of the replay, sorted by time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Step {
    time_ns: u64,
    rank: u8,
    /// Opens go parent first, closes child first.
    order: u32,
    node: u32,
    /// The output's index in its span, for outputs.
    output: u32,
}

/// A run open across traces: the span of a run (trace id, span id), or the scope of
/// [`GroupBy::All`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum RunKey {
    Span(u128, u64),
    All,
}

/// A run open across traces.
struct OpenRun {
    span: Span,
    /// The latest end of its requests (and of its own span, once read).
    end_ns: u64,
}

/// Replays traces, one at a time, in the current default dispatcher (a scoped one holding
/// the layer whose clock is `clock`).
pub(super) struct Engine<'a> {
    group_by: GroupBy,
    clock: &'a ManualClock,
    current: &'a CurrentTrace,
    /// Run spans, by (trace id, span id), read before the replay (the files' first pass).
    known_runs: HashMap<(u128, u64), SpanRec>,
    open_runs: HashMap<RunKey, OpenRun>,
    /// The order runs were opened in (they are closed in it at the end).
    run_order: Vec<RunKey>,
    closed_runs: std::collections::HashSet<RunKey>,
    pub(super) stats: ReplayStats,
}

impl<'a> Engine<'a> {
    pub(super) fn new(
        group_by: GroupBy,
        clock: &'a ManualClock,
        current: &'a CurrentTrace,
        known_runs: HashMap<(u128, u64), SpanRec>,
    ) -> Self {
        Self {
            group_by,
            clock,
            current,
            known_runs,
            open_runs: HashMap::new(),
            run_order: Vec::new(),
            closed_runs: std::collections::HashSet::new(),
            stats: ReplayStats::default(),
        }
    }

    /// Opens the run `key` (if not yet open) for a request starting at `start_ns`; `false`
    /// if it was closed already.
    fn ensure_run(&mut self, key: RunKey, start_ns: u64) -> bool {
        if self.open_runs.contains_key(&key) {
            return true;
        }
        if self.closed_runs.contains(&key) {
            return false;
        }
        let known = match key {
            RunKey::Span(t, s) => self.known_runs.get(&(t, s)),
            RunKey::All => None,
        };
        let start = known.map_or(start_ns, |r| r.start_ns.min(start_ns));
        self.clock.set_ns(start);
        let span = open(SpanKind::Run, None);
        match (key, known) {
            (_, Some(rec)) => {
                for (k, v) in &rec.fields {
                    record(&span, k, v);
                }
            }
            (RunKey::All, None) => {
                span.record(field::RUN_ID, GroupBy::ALL_SCOPE);
            }
            // Linked to a span not in the input: a run whose span is missing; its requests
            // are still summarized together.
            (RunKey::Span(..), None) => self.stats.runs_without_span += 1,
        }
        self.stats.runs += 1;
        self.stats.spans_replayed += 1;
        self.open_runs.insert(
            key,
            OpenRun {
                span,
                end_ns: known.map_or(start, |r| r.end_ns),
            },
        );
        self.run_order.push(key);
        true
    }

    /// Closes the run `key` if it is open.
    fn close_run(&mut self, key: RunKey) {
        if let Some(run) = self.open_runs.remove(&key) {
            self.clock.set_ns(run.end_ns);
            drop(run.span);
            self.closed_runs.insert(key);
        }
    }

    /// The run a request without a parent in its trace belongs to.
    fn run_of(&self, rec: &SpanRec) -> Option<RunKey> {
        match self.group_by {
            GroupBy::All => Some(RunKey::All),
            GroupBy::Run => rec.links.first().map(|&(t, s)| RunKey::Span(t, s)),
        }
    }

    /// Replays the spans of one trace (every span in `spans` has the same trace id).
    pub(super) fn replay_trace(&mut self, spans: &[SpanRec]) {
        // Spans by id: looked through in a small trace, hashed in a large one.
        const LOOK_THROUGH: usize = 32;
        let hashed: HashMap<u64, usize> = if spans.len() > LOOK_THROUGH {
            spans
                .iter()
                .enumerate()
                .map(|(i, s)| (s.span_id, i))
                .collect()
        } else {
            HashMap::new()
        };
        let index = |id: u64| -> Option<usize> {
            if spans.len() > LOOK_THROUGH {
                hashed.get(&id).copied()
            } else {
                spans.iter().position(|s| s.span_id == id)
            }
        };
        // The node of each span of the convention.
        let mut node_of: Vec<Option<usize>> = vec![None; spans.len()];
        let mut nodes: Vec<Node> = Vec::with_capacity(spans.len());
        for (i, rec) in spans.iter().enumerate() {
            let Some(kind) = rec.kind else { continue };
            if kind == SpanKind::Run {
                // Replayed across traces (see `ensure_run`).
                if self.group_by == GroupBy::Run {
                    self.known_runs
                        .entry((rec.trace_id, rec.span_id))
                        .or_insert_with(|| rec.clone());
                }
                continue;
            }
            node_of[i] = Some(nodes.len());
            nodes.push(Node {
                rec: i,
                kind,
                parent: Parent::None,
                start_ns: rec.start_ns,
                end_ns: rec.end_ns,
                depth: 0,
            });
        }
        // The nearest ancestor of the convention, through the engine's own spans.
        for node in &mut nodes {
            let rec = &spans[node.rec];
            let mut next = rec.parent_id;
            let mut hops = 0;
            while let Some(id) = next {
                hops += 1;
                match index(id) {
                    Some(i) if hops <= spans.len() => match node_of[i] {
                        Some(p) => {
                            node.parent = Parent::Node(p);
                            break;
                        }
                        // A run in the same trace as its requests.
                        None if spans[i].kind == Some(SpanKind::Run)
                            && self.group_by == GroupBy::Run =>
                        {
                            node.parent = Parent::Run(RunKey::Span(rec.trace_id, id));
                            break;
                        }
                        // The engine's own span (or a run left out by `GroupBy::All`).
                        None => next = spans[i].parent_id,
                    },
                    _ => {
                        if node.kind != SpanKind::Request {
                            self.stats.missing_parents += 1;
                        }
                        break;
                    }
                }
            }
        }
        // Requests without a parent here: under their run, open across traces.
        for n in 0..nodes.len() {
            let key = match nodes[n].parent {
                Parent::Run(key) => key,
                Parent::None if nodes[n].kind == SpanKind::Request => {
                    match self.run_of(&spans[nodes[n].rec]) {
                        Some(key) => key,
                        None => continue,
                    }
                }
                _ => continue,
            };
            nodes[n].parent = Parent::None;
            if self.ensure_run(key, nodes[n].start_ns) {
                nodes[n].parent = Parent::Run(key);
            } else {
                self.stats.requests_after_their_run += 1;
            }
        }
        let moved = fit_times(&mut nodes);
        self.stats.moved_into_parent += moved;
        // Outputs of the engine's own spans count in the nearest span of the convention.
        let mut extra_outputs: HashMap<usize, Vec<Output>> = HashMap::new();
        for (i, rec) in spans.iter().enumerate() {
            if rec.outputs.is_empty() || node_of[i].is_some() {
                continue;
            }
            let mut next = rec.parent_id;
            let mut hops = 0;
            while let Some(id) = next {
                hops += 1;
                let Some(j) = index(id).filter(|_| hops <= spans.len()) else {
                    break;
                };
                if let Some(n) = node_of[j] {
                    extra_outputs.entry(n).or_default().extend(&rec.outputs);
                    break;
                }
                next = spans[j].parent_id;
            }
        }
        let mut steps = Vec::with_capacity(nodes.len() * 2);
        let mut outputs: Vec<Vec<Output>> = Vec::with_capacity(nodes.len());
        for (n, node) in nodes.iter().enumerate() {
            steps.push(Step {
                time_ns: node.start_ns,
                rank: OPEN,
                order: node.depth,
                node: n as u32,
                output: 0,
            });
            steps.push(Step {
                time_ns: node.end_ns,
                rank: CLOSE,
                order: u32::MAX - node.depth,
                node: n as u32,
                output: 0,
            });
            let mut own = spans[node.rec].outputs.clone();
            if let Some(extra) = extra_outputs.get(&n) {
                own.extend(extra);
            }
            for (k, o) in own.iter_mut().enumerate() {
                o.time_ns = o.time_ns.clamp(node.start_ns, node.end_ns);
                steps.push(Step {
                    time_ns: o.time_ns,
                    rank: OUTPUT,
                    order: 0,
                    node: n as u32,
                    output: k as u32,
                });
            }
            outputs.push(own);
        }
        steps.sort_unstable();
        let mut open_spans: Vec<Option<Span>> = (0..nodes.len()).map(|_| None).collect();
        for step in &steps {
            self.clock.set_ns(step.time_ns);
            let n = step.node as usize;
            let node = &nodes[n];
            match step.rank {
                OPEN => {
                    let parent = match node.parent {
                        Parent::None => None,
                        Parent::Node(p) => open_spans[p].as_ref().and_then(Span::id),
                        Parent::Run(key) => self.open_runs.get(&key).and_then(|r| r.span.id()),
                    };
                    let span = open(node.kind, parent);
                    for (key, value) in &spans[node.rec].fields {
                        record(&span, key, value);
                    }
                    self.stats.spans_replayed += 1;
                    // Runs are counted where they are made (`ensure_run`), not as nodes.
                    if node.kind == SpanKind::Request {
                        self.stats.requests += 1;
                    }
                    open_spans[n] = Some(span);
                }
                OUTPUT => {
                    let Some(span) = open_spans[n].as_ref() else {
                        continue;
                    };
                    match outputs[n][step.output as usize].units {
                        Some(units) => tracing::event!(
                            name: "omni.output",
                            target: crate::convention::TARGET,
                            parent: span,
                            Level::INFO,
                            units = units
                        ),
                        None => tracing::event!(
                            name: "omni.output",
                            target: crate::convention::TARGET,
                            parent: span,
                            Level::INFO,
                            {}
                        ),
                    }
                }
                _ => {
                    if node.kind == SpanKind::Request {
                        self.current
                            .set(Some(format!("{:032x}", spans[node.rec].trace_id)));
                    }
                    drop(open_spans[n].take());
                    self.current.set(None);
                    if let Parent::Run(key) = node.parent {
                        if let Some(run) = self.open_runs.get_mut(&key) {
                            run.end_ns = run.end_ns.max(node.end_ns);
                        }
                    }
                }
            }
        }
        // A run's own span (exported apart): its requests came before it.
        if self.group_by == GroupBy::Run {
            for rec in spans {
                if rec.kind == Some(SpanKind::Run) {
                    let key = RunKey::Span(rec.trace_id, rec.span_id);
                    // A run with no request: replayed at its own times.
                    if self.ensure_run(key, rec.start_ns) {
                        if let Some(run) = self.open_runs.get_mut(&key) {
                            run.end_ns = run.end_ns.max(rec.end_ns);
                        }
                    }
                    self.close_run(key);
                }
            }
        }
    }

    /// Closes every run still open, in the order they were opened; returns what was done.
    pub(super) fn finish(mut self) -> ReplayStats {
        for key in std::mem::take(&mut self.run_order) {
            self.close_run(key);
        }
        self.stats
    }
}

/// Puts every span inside its parent's time (clock skew between hosts may put a child
/// outside it). Returns how many spans were moved.
fn fit_times(nodes: &mut [Node]) -> u64 {
    // Depths, so that parents are fitted before their children.
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    for n in 0..nodes.len() {
        let mut depth = 0;
        let mut p = nodes[n].parent;
        while let Parent::Node(i) = p {
            depth += 1;
            p = nodes[i].parent;
            if depth > nodes.len() as u32 {
                break; // a cycle cannot come from ids that are unique, but never loop
            }
        }
        if let Parent::Run(_) = p {
            depth += 1;
        }
        nodes[n].depth = depth;
    }
    order.sort_by_key(|&n| nodes[n].depth);
    let mut moved = 0;
    for n in order {
        let Parent::Node(p) = nodes[n].parent else {
            continue;
        };
        let (lo, hi) = (nodes[p].start_ns, nodes[p].end_ns);
        let node = &mut nodes[n];
        let start = node.start_ns.clamp(lo, hi);
        let end = node.end_ns.clamp(start, hi);
        if (start, end) != (node.start_ns, node.end_ns) {
            moved += 1;
            node.start_ns = start;
            node.end_ns = end;
        }
    }
    moved
}

/// The trace id of the request being closed, for its record.
#[derive(Clone, Default)]
pub(super) struct CurrentTrace(Arc<Mutex<Option<String>>>);

impl CurrentTrace {
    fn set(&self, trace: Option<String>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = trace;
    }

    fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Hands records to the replay's sinks, each request with the id of the trace it was read
/// from.
pub(super) struct TraceIds {
    pub(super) current: CurrentTrace,
    pub(super) sinks: Vec<Box<dyn Sink>>,
}

impl Sink for TraceIds {
    fn on_request(&self, request: &RequestE2EStats) {
        let mut request = request.clone();
        if let Some(trace) = self.current.get() {
            request.trace_id = Some(trace);
        }
        for sink in &self.sinks {
            sink.on_request(&request);
        }
    }

    fn on_summary(&self, summary: &OverallSummary) {
        for sink in &self.sinks {
            sink.on_summary(summary);
        }
    }
}

/// Opens the `tracing` span of a node. Every field of the convention is declared, so that
/// any of them can be recorded from the exported attributes.
fn open(kind: SpanKind, parent: Option<tracing::Id>) -> Span {
    macro_rules! omni_span {
        ($name:literal) => {
            tracing::span!(
                target: crate::convention::TARGET,
                parent: parent,
                Level::INFO,
                $name,
                run_id = Empty,
                request_id = Empty,
                status = Empty,
                status_message = Empty,
                stage_id = Empty,
                stage_name = Empty,
                batch_id = Empty,
                batch_size = Empty,
                num_tokens_in = Empty,
                num_tokens_out = Empty,
                audio_generated_frames = Empty,
                audio_sample_rate = Empty,
                image_num = Empty,
                resolution = Empty,
                from_stage = Empty,
                to_stage = Empty,
                size_bytes = Empty,
                stage_gen_time_ms = Empty,
                postprocess_time_ms = Empty,
                tx_time_ms = Empty,
                rx_decode_time_ms = Empty,
                in_flight_time_ms = Empty,
                time_to_first_output_ms = Empty,
                inter_output_ms = Empty,
                remote_request = Empty
            )
        };
    }
    macro_rules! timing_span {
        ($name:literal) => {
            tracing::span!(target: crate::convention::TARGET, parent: parent, Level::INFO, $name)
        };
    }
    match kind {
        SpanKind::Run => omni_span!("omni.run"),
        SpanKind::Request => omni_span!("omni.request"),
        SpanKind::Stage => omni_span!("omni.stage"),
        SpanKind::Transfer => omni_span!("omni.transfer"),
        SpanKind::Batch => omni_span!("omni.batch"),
        SpanKind::Queue => timing_span!("omni.queue"),
        SpanKind::Postprocess => timing_span!("omni.postprocess"),
        SpanKind::Tx => timing_span!("omni.transfer.tx"),
        SpanKind::RxDecode => timing_span!("omni.transfer.rx_decode"),
    }
}

fn record(span: &Span, key: &str, value: &AttrValue) {
    match value {
        AttrValue::Int(v) => span.record(key, *v),
        AttrValue::Double(v) => span.record(key, *v),
        AttrValue::Str(v) => span.record(key, &**v),
        AttrValue::Bool(v) => span.record(key, *v),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_fitted_into_their_parent() {
        let node = |rec, kind, parent, start_ns, end_ns| Node {
            rec,
            kind,
            parent,
            start_ns,
            end_ns,
            depth: 0,
        };
        let mut nodes = vec![
            node(0, SpanKind::Request, Parent::Run(RunKey::All), 100, 200),
            // Skewed: starts before its request and ends after it.
            node(1, SpanKind::Stage, Parent::Node(0), 90, 210),
            node(2, SpanKind::Queue, Parent::Node(1), 95, 120),
        ];
        assert_eq!(fit_times(&mut nodes), 2);
        assert_eq!((nodes[0].start_ns, nodes[0].end_ns), (100, 200));
        assert_eq!((nodes[1].start_ns, nodes[1].end_ns), (100, 200));
        assert_eq!((nodes[2].start_ns, nodes[2].end_ns), (100, 120));
        assert_eq!(
            nodes[2].depth, 3,
            "under the stage, the request and its run"
        );
    }

    #[test]
    fn steps_order_parents_around_children_at_one_instant() {
        let mut steps = [
            Step {
                time_ns: 5,
                rank: CLOSE,
                order: u32::MAX - 1,
                node: 0,
                output: 0,
            },
            Step {
                time_ns: 5,
                rank: CLOSE,
                order: u32::MAX - 2,
                node: 1,
                output: 0,
            },
            Step {
                time_ns: 5,
                rank: OPEN,
                order: 2,
                node: 1,
                output: 0,
            },
            Step {
                time_ns: 5,
                rank: OUTPUT,
                order: 0,
                node: 1,
                output: 0,
            },
            Step {
                time_ns: 5,
                rank: OPEN,
                order: 1,
                node: 0,
                output: 0,
            },
        ];
        steps.sort_unstable();
        let seen: Vec<(u8, u32)> = steps.iter().map(|s| (s.rank, s.node)).collect();
        assert_eq!(
            seen,
            [(OPEN, 0), (OPEN, 1), (OUTPUT, 1), (CLOSE, 1), (CLOSE, 0)]
        );
    }
}
