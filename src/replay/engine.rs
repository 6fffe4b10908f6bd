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

use tracing::{Level, Span};

use super::model::{AttrValue, Key, MAX_SPAN_NS, SpanRec};
use super::origin::{Clocks, Origin};
use super::{GroupBy, ReplayStats};
use crate::convention::{self, SpanKind, field, omni_span};
use crate::report::Sink;
use crate::stats::{OverallSummary, Quantity, RequestE2EStats, TraceSource};
use crate::testing::ManualClock;

/// Where a node's parent is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Parent {
    None,
    /// Another node of the trace.
    Node(usize),
    /// A run open across traces.
    Run(RunKey),
}

/// What a span's chain of parents leads to, through spans outside the convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Up {
    /// Not resolved yet.
    Unset,
    /// On the chain being resolved.
    Visiting,
    /// No parent: a root.
    Root,
    /// A parent that is not in the trace.
    Missing,
    /// A chain that loops; the span (index) where the loop was found.
    Cycle(usize),
    /// A node of the trace.
    Node(usize),
    /// A run in the same trace (its span id).
    Run(u64),
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
    /// Where it was measured (its resource's host and process).
    origin: Origin,
    /// How far it was moved for its clock's skew (itself, or a span above it), in ns: its
    /// outputs move with it.
    shift: i128,
}

/// How far a span may start before its parent, or end after its request, on clocks not
/// known to differ, before it is taken as clock skew:
/// [`Replay::CLOCK_TOLERANCE_NS`](super::Replay::CLOCK_TOLERANCE_NS).
pub(super) const TOLERANCE_NS: u64 = 1_000_000;

/// Open, output, abort, close: the order of events at the same instant.
const OPEN: u8 = 0;
const OUTPUT: u8 = 1;
/// An aborted request's outcome, recorded when it was aborted (its exported
/// `e2e_total_ms`): live, the request ended there, and its stages that closed later were
/// not its.
const ABORT: u8 = 2;
const CLOSE: u8 = 3;

/// One step of the replay, sorted by time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Step {
    time_ns: u64,
    rank: u8,
    /// Opens go parent first, closes child first; for an output, the index of the span
    /// that holds it (outputs at one instant go in any order).
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
    /// Where its scope starts.
    start_ns: u64,
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
                start_ns: start,
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

    /// What each span's chain of parents leads to (see [`Up`]): every chain is walked once,
    /// its result kept for every span on it, so the whole trace costs linear time whatever
    /// its shape (a walk per span was quadratic through a cycle or a long chain of the
    /// engine's own spans).
    fn resolve_parents(
        &self,
        spans: &[SpanRec],
        index: &dyn Fn(u64) -> Option<usize>,
        node_of: &[Option<usize>],
    ) -> Vec<Up> {
        let mut up = vec![Up::Unset; spans.len()];
        let mut path = Vec::new();
        for first in 0..spans.len() {
            let mut i = first;
            let result = loop {
                match up[i] {
                    Up::Unset => {}
                    Up::Visiting => break Up::Cycle(i),
                    done => break done,
                }
                up[i] = Up::Visiting;
                path.push(i);
                let Some(id) = spans[i].parent_id else {
                    break Up::Root;
                };
                let Some(p) = index(id) else {
                    break Up::Missing;
                };
                if let Some(n) = node_of[p] {
                    break Up::Node(n);
                }
                // A run in the same trace as its requests.
                if spans[p].kind == Some(SpanKind::Run) && self.group_by == GroupBy::Run {
                    break Up::Run(id);
                }
                // The engine's own span (or a run left out by `GroupBy::All`).
                i = p;
            };
            for j in path.drain(..) {
                up[j] = result;
            }
        }
        up
    }

    /// A parent cycle at span `span` of trace `trace`, with `under` spans of the convention
    /// under it (outside any request now).
    fn cycle(&mut self, trace: u128, span: u64, under: u64) {
        self.stats.parent_cycles += 1;
        self.stats.spans_under_cycles += under;
        if self.stats.first_cycle.is_none() {
            self.stats.first_cycle = Some((trace, span));
        }
    }

    /// Replays the spans of one trace (every span in `spans` has the same trace id): its
    /// spans of the convention become nodes, placed under their nearest ancestor of the
    /// convention (or their run), fitted into its time, then opened, given their outputs and
    /// closed, in time order, through the metrics layer.
    pub(super) fn replay_trace(&mut self, spans: &[SpanRec], origins: &[Origin]) {
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
        let (node_of, mut nodes) = self.nodes_of(spans, origins);
        // The nearest ancestor of the convention, through the engine's own spans: resolved
        // once for every span, in linear time, a cycle found once.
        let up = self.resolve_parents(spans, &index, &node_of);
        self.place(spans, &mut nodes, &up);
        let bad_time: Vec<bool> = nodes
            .iter()
            .map(|n| spans[n.rec].problem.as_ref().is_some_and(|p| p.bad_time))
            .collect();
        let last_output: Vec<Option<u64>> = nodes
            .iter()
            .map(|n| spans[n.rec].outputs.iter().map(|o| o.time_ns).max())
            .collect();
        // Times fitted before requests are placed in their runs: a run starts at its
        // requests' fitted times, not at a timestamp that was left out.
        let fitted = fit_times(&mut nodes, &bad_time, &last_output);
        self.place_in_runs(spans, &mut nodes);
        self.stats.moved_into_parent += fitted.moved;
        self.stats.max_moved_ns = self.stats.max_moved_ns.max(fitted.max_moved_ns);
        if let Some(n) = fitted.cut {
            let rec = &spans[nodes[n].rec];
            self.cycle(rec.trace_id, rec.span_id, 0);
        }
        let invalid = self.invalid_by_request(spans, &nodes, &fitted.request);
        let steps = steps(spans, &nodes, &node_of, &up);
        self.play(spans, &nodes, &steps, &invalid);
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

    /// The spans of the convention as nodes (runs apart: replayed across traces, see
    /// [`Engine::ensure_run`]), and each span's node.
    fn nodes_of(
        &mut self,
        spans: &[SpanRec],
        origins: &[Origin],
    ) -> (Vec<Option<usize>>, Vec<Node>) {
        let mut node_of: Vec<Option<usize>> = vec![None; spans.len()];
        let mut nodes: Vec<Node> = Vec::with_capacity(spans.len());
        for (i, rec) in spans.iter().enumerate() {
            let Some(kind) = rec.kind else { continue };
            if kind == SpanKind::Run {
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
                origin: origins.get(i).copied().unwrap_or_default(),
                shift: 0,
            });
        }
        (node_of, nodes)
    }

    /// Each node's parent, from its nearest ancestor of the convention (`up`); a missing
    /// parent and the spans under a cycle are counted.
    fn place(&mut self, spans: &[SpanRec], nodes: &mut [Node], up: &[Up]) {
        let mut under_cycle = 0;
        for node in nodes.iter_mut() {
            node.parent = match up[node.rec] {
                Up::Node(p) => Parent::Node(p),
                Up::Run(id) => Parent::Run(RunKey::Span(spans[node.rec].trace_id, id)),
                Up::Root => Parent::None,
                Up::Missing => {
                    if node.kind != SpanKind::Request {
                        self.stats.missing_parents += 1;
                    }
                    Parent::None
                }
                Up::Cycle(_) | Up::Unset | Up::Visiting => {
                    under_cycle += 1;
                    Parent::None
                }
            };
        }
        if let Some(&Up::Cycle(at)) = up.iter().find(|u| matches!(u, Up::Cycle(_))) {
            self.cycle(spans[at].trace_id, spans[at].span_id, under_cycle);
        }
    }

    /// Requests without a parent here go under their run, open across traces; one that
    /// comes after its run closed, or lies beyond 10^12 ms of its run's start, is its own
    /// scope (counted).
    fn place_in_runs(&mut self, spans: &[SpanRec], nodes: &mut [Node]) {
        for node in nodes.iter_mut() {
            let key = match node.parent {
                Parent::Run(key) => key,
                Parent::None if node.kind == SpanKind::Request => {
                    match self.run_of(&spans[node.rec]) {
                        Some(key) => key,
                        None => continue,
                    }
                }
                _ => continue,
            };
            node.parent = Parent::None;
            if !self.ensure_run(key, node.start_ns) {
                self.stats.requests_after_their_run += 1;
                continue;
            }
            // A run's requests lie within 10^12 ms: its wall times are times as any other.
            let far = self.open_runs.get(&key).is_some_and(|run| {
                node.end_ns > run.start_ns.saturating_add(MAX_SPAN_NS / 2)
                    || node.start_ns.saturating_add(MAX_SPAN_NS / 2) < run.start_ns
            });
            if far {
                self.stats.requests_far_from_their_run += 1;
            } else {
                node.parent = Parent::Run(key);
            }
        }
    }

    /// Spans with values left out count in their request's `invalid_spans` (the layer never
    /// saw those values): by request node (`request`, each node's).
    fn invalid_by_request(
        &mut self,
        spans: &[SpanRec],
        nodes: &[Node],
        request: &[Option<usize>],
    ) -> HashMap<usize, u64> {
        let mut invalid: HashMap<usize, u64> = HashMap::new();
        for (n, node) in nodes.iter().enumerate() {
            if spans[node.rec].problem.is_none() {
                continue;
            }
            self.stats.spans_with_invalid_values += 1;
            if let Some(r) = request[n] {
                *invalid.entry(r).or_default() += 1;
            }
        }
        invalid
    }

    /// Runs the steps through the metrics layer at their times: a node's span opened (with
    /// its fields), its outputs, its close (a request's with what its record needs).
    fn play(
        &mut self,
        spans: &[SpanRec],
        nodes: &[Node],
        steps: &[Step],
        invalid: &HashMap<usize, u64>,
    ) {
        let mut open_spans: Vec<Option<Span>> = (0..nodes.len()).map(|_| None).collect();
        for step in steps {
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
                        if !at_close(node.kind, key) {
                            record(&span, key, value);
                        }
                    }
                    self.stats.spans_replayed += 1;
                    // Runs are counted where they are made (`ensure_run`), not as nodes.
                    if node.kind == SpanKind::Request {
                        self.stats.requests += 1;
                    }
                    open_spans[n] = Some(span);
                }
                OUTPUT => {
                    if let Some(span) = open_spans[n].as_ref() {
                        let output = spans
                            .get(step.order as usize)
                            .and_then(|s| s.outputs.get(step.output as usize));
                        output_event(span, output.and_then(|o| o.units));
                    }
                }
                ABORT => {
                    if let Some(span) = open_spans[n].as_ref() {
                        record_outcome(span, node.kind, &spans[node.rec].fields);
                    }
                }
                _ => {
                    if let Some(span) = open_spans[n].as_ref() {
                        record_outcome(span, node.kind, &spans[node.rec].fields);
                    }
                    if node.kind == SpanKind::Request {
                        self.current.set(Some(Closing {
                            trace: format!("{:032x}", spans[node.rec].trace_id),
                            invalid: invalid.get(&n).copied().unwrap_or(0),
                            summarized: false,
                            source: spans[node.rec].source,
                        }));
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
    }

    /// Closes every run still open, in the order they were opened; returns what was done.
    pub(super) fn finish(mut self) -> ReplayStats {
        for key in std::mem::take(&mut self.run_order) {
            self.close_run(key);
        }
        self.stats
    }
}

/// What [`fit_times`] did.
#[derive(Debug)]
struct Fitted {
    /// Spans moved inside their parent's time (each with the spans under it).
    moved: u64,
    /// The most a span was moved by, in ns.
    max_moved_ns: u64,
    /// A node whose parent link closed a cycle among the nodes, cut there (it is a root
    /// now).
    cut: Option<usize>,
    /// The request each node belongs to (itself, for a request).
    request: Vec<Option<usize>>,
}

/// Puts every span inside its parent's time, as the layer saw it live, after giving each
/// span whose own times are invalid (`bad_time`) the window of its children. Cuts a cycle
/// of parents among the nodes (ids are unique, but an input may still name them so), and
/// computes each node's depth and request. Linear in the nodes, but for one sort by depth.
///
/// On one clock, a child outside its parent is real data: `tracing` closes a parent after
/// its children, but the exported end of a span that was entered is its last exit
/// (tracing-opentelemetry), and a span's outputs may come after it. The parent is widened
/// to take them in, as its live close did ([`widen_parents`]). Only where the clocks
/// disagree (see [`skewed`]) is a child moved, with the spans under it ([`move_skewed`]).
fn fit_times(nodes: &mut [Node], bad_time: &[bool], last_output: &[Option<u64>]) -> Fitted {
    let cut = cut_cycles(nodes);
    let request = depths_and_requests(nodes);
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by_key(|&n| nodes[n].depth);
    if bad_time.iter().any(|b| *b) {
        windows_of_children(nodes, &order, bad_time);
    }
    let skewed = widen_parents(nodes, &order, last_output);
    let (moved, max_moved_ns) = move_skewed(nodes, &order, &skewed);
    Fitted {
        moved,
        max_moved_ns,
        cut,
        request,
    }
}

/// Whether a child that starts `before` ns before its parent's exported start, or ends
/// `after` ns after its exported end, is clock skew rather than real data: always on clocks
/// that differ (another host or process); on clocks not known to differ, a start more than
/// [`TOLERANCE_NS`] before the parent's (a span opens after its parent on one clock), or an
/// end more than that after its request's (the request's end is its close, measured by the
/// layer, after its children's). Never on one clock.
fn skewed(clocks: Clocks, parent: SpanKind, before: u64, after: u64) -> bool {
    match clocks {
        Clocks::One => false,
        Clocks::Different => before > 0 || after > 0,
        Clocks::Unknown => {
            before > TOLERANCE_NS || (parent == SpanKind::Request && after > TOLERANCE_NS)
        }
    }
}

/// Deepest first (`order` is by depth): each span's window takes in its last output, and
/// each parent's the windows of its children outside it that are not [`skewed`] (as wide
/// as their own children made them), up to 10^12 ms. Returns the nodes left outside their
/// parent (skewed, or too far for their parent to take in), compared with the parent's
/// exported times.
fn widen_parents(nodes: &mut [Node], order: &[usize], last_output: &[Option<u64>]) -> Vec<bool> {
    let exported: Vec<(u64, u64)> = nodes.iter().map(|n| (n.start_ns, n.end_ns)).collect();
    let mut outside = vec![false; nodes.len()];
    for &n in order.iter().rev() {
        if let Some(&Some(at)) = last_output.get(n) {
            let start = nodes[n].start_ns;
            widen(&mut nodes[n], start, at);
        }
        let Parent::Node(p) = nodes[n].parent else {
            continue;
        };
        let (lo, hi) = (nodes[n].start_ns, nodes[n].end_ns);
        let (parent_lo, parent_hi) = exported[p];
        let (before, after) = (parent_lo.saturating_sub(lo), hi.saturating_sub(parent_hi));
        if before == 0 && after == 0 {
            continue;
        }
        let clocks = nodes[p].origin.clocks(nodes[n].origin);
        if skewed(clocks, nodes[p].kind, before, after) || !widen(&mut nodes[p], lo, hi) {
            outside[n] = true;
        }
    }
    outside
}

/// Widens `node` to take in `[lo, hi]`, unless it would then last more than 10^12 ms;
/// whether it did.
fn widen(node: &mut Node, lo: u64, hi: u64) -> bool {
    let (start, end) = (node.start_ns.min(lo), node.end_ns.max(hi));
    if end - start > MAX_SPAN_NS {
        return false;
    }
    (node.start_ns, node.end_ns) = (start, end);
    true
}

/// `time_ns` moved by `by` ns, within what a timestamp holds.
fn shifted(time_ns: u64, by: i128) -> u64 {
    (i128::from(time_ns) + by).clamp(0, i128::from(u64::MAX)) as u64
}

/// Parents first (`order` is by depth): every span moves with its parent, and one still
/// outside it is moved by the least that puts it inside (with the spans under it), or, if
/// it is longer than its parent, to its parent's start and cut at its end. Returns how
/// many spans were moved and the most one was moved by (ns).
fn move_skewed(nodes: &mut [Node], order: &[usize], outside: &[bool]) -> (u64, u64) {
    let (mut moved, mut most) = (0, 0);
    for &n in order {
        let Parent::Node(p) = nodes[n].parent else {
            continue;
        };
        let (lo, hi, by) = (nodes[p].start_ns, nodes[p].end_ns, nodes[p].shift);
        let node = &mut nodes[n];
        node.shift = by;
        if by != 0 {
            (node.start_ns, node.end_ns) = (shifted(node.start_ns, by), shifted(node.end_ns, by));
        }
        let (start, end) = (node.start_ns, node.end_ns);
        if start >= lo && end <= hi {
            continue;
        }
        // Skewed (or under a span cut short): moved by the least that fits, with its
        // children; not skewed (its parent was cut short): cut.
        let d: i128 = match outside.get(n) {
            Some(true) if start < lo => i128::from(lo - start),
            Some(true) => -i128::from(end - hi),
            _ => 0,
        };
        let (start, end) = (shifted(start, d), shifted(end, d));
        let (fit_start, fit_end) = (start.clamp(lo, hi), end.clamp(lo, hi));
        let cut = start.abs_diff(fit_start).max(end.abs_diff(fit_end));
        node.shift = by + d;
        (node.start_ns, node.end_ns) = (fit_start, fit_end.max(fit_start));
        moved += 1;
        most = most.max(u64::try_from(d.unsigned_abs()).unwrap_or(u64::MAX).max(cut));
    }
    (moved, most)
}

/// Cuts every cycle of parents among the nodes: a walk up from every node not seen yet,
/// where a parent on the walk closes a cycle (that link is cut: the node becomes a root).
/// Returns the first node cut.
fn cut_cycles(nodes: &mut [Node]) -> Option<usize> {
    const NEW: u8 = 0;
    const ON_WALK: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; nodes.len()];
    let mut walk = Vec::new();
    let mut cut = None;
    for first in 0..nodes.len() {
        let mut n = first;
        while state[n] == NEW {
            state[n] = ON_WALK;
            walk.push(n);
            match nodes[n].parent {
                Parent::Node(p) if state[p] == ON_WALK => {
                    nodes[n].parent = Parent::None;
                    cut.get_or_insert(n);
                }
                Parent::Node(p) => n = p,
                _ => {}
            }
        }
        for m in walk.drain(..) {
            state[m] = DONE;
        }
    }
    cut
}

/// Each node's depth (parents before their children), and the request it belongs to
/// (itself, for a request): each node visited once (no cycle is left).
fn depths_and_requests(nodes: &mut [Node]) -> Vec<Option<usize>> {
    let len = nodes.len();
    let mut walk = Vec::new();
    let mut known = vec![false; len];
    let mut request = vec![None; len];
    for first in 0..len {
        let mut n = first;
        while !known[n] {
            walk.push(n);
            match nodes[n].parent {
                Parent::Node(p) => n = p,
                _ => break,
            }
        }
        while let Some(m) = walk.pop() {
            let (depth, req) = match nodes[m].parent {
                Parent::Node(p) => (nodes[p].depth.saturating_add(1), request[p]),
                Parent::Run(_) => (1, None),
                Parent::None => (0, None),
            };
            nodes[m].depth = depth;
            request[m] = if nodes[m].kind == SpanKind::Request {
                Some(m)
            } else {
                req
            };
            known[m] = true;
        }
    }
    request
}

/// A span whose own times are invalid (`bad_time`) gets the window of its children (at
/// most 10^12 ms wide), deepest first (`order` is by depth), so a child's own is known.
fn windows_of_children(nodes: &mut [Node], order: &[usize], bad_time: &[bool]) {
    let mut hull: Vec<Option<(u64, u64)>> = vec![None; nodes.len()];
    for &n in order.iter().rev() {
        if bad_time.get(n) == Some(&true) {
            if let Some((lo, hi)) = hull[n].filter(|(lo, hi)| hi - lo <= MAX_SPAN_NS) {
                (nodes[n].start_ns, nodes[n].end_ns) = (lo, hi);
            }
        }
        if let Parent::Node(p) = nodes[n].parent {
            let (lo, hi) = (nodes[n].start_ns, nodes[n].end_ns);
            hull[p] = Some(hull[p].map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
        }
    }
}

/// The request being closed: the id of its trace, and its spans with values the replay
/// left out (the layer never saw them), for its record and its scope's summary.
#[derive(Clone, Debug, Default)]
pub(super) struct Closing {
    trace: String,
    invalid: u64,
    /// Its online summary went out (it is a scope of its own).
    summarized: bool,
    /// Its spans were of another shape than the convention's (vLLM-Omni's own traces).
    source: Option<TraceSource>,
}

/// The request being closed, if any.
#[derive(Clone, Default)]
pub(super) struct CurrentTrace(Arc<Mutex<Option<Closing>>>);

impl CurrentTrace {
    fn set(&self, closing: Option<Closing>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = closing;
    }

    fn with<T>(&self, f: impl FnOnce(&mut Option<Closing>) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Hands records to the replay's sinks, each request with the id of the trace it was read
/// from, and `invalid_spans` counting the spans whose values the replay left out, in the
/// request's record and its scope's summary alike; a request of another trace source
/// (vLLM-Omni's) with its `source`, and so its scope's summary.
pub(super) struct TraceIds {
    pub(super) current: CurrentTrace,
    pub(super) sinks: Vec<Box<dyn Sink>>,
    /// Spans with values left out, by run scope, until the run's summary.
    pub(super) scope_invalid: Mutex<HashMap<String, u64>>,
    /// The source of run scopes with requests of another trace source, until the run's
    /// summary.
    pub(super) scope_source: Mutex<HashMap<String, TraceSource>>,
}

impl Sink for TraceIds {
    fn on_request(&self, request: &RequestE2EStats) {
        let mut request = request.clone();
        let (trace, invalid, summarized, source) = self.current.with(|c| match c {
            Some(c) => (Some(c.trace.clone()), c.invalid, c.summarized, c.source),
            None => (None, 0, false, None),
        });
        if let Some(trace) = trace {
            request.trace_id = Some(trace);
        }
        if let Some(source) = source {
            request.source = Some(source);
            if !summarized {
                self.scope_source
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(request.scope.clone(), source);
            }
        }
        if invalid > 0 {
            request.invalid_spans = request.invalid_spans.saturating_add(invalid);
            if !summarized {
                let mut scopes = self
                    .scope_invalid
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                *scopes.entry(request.scope.clone()).or_default() += invalid;
            }
        }
        for sink in &self.sinks {
            sink.on_request(&request);
        }
    }

    fn on_summary(&self, summary: &OverallSummary) {
        // An online request's summary goes out while it closes; a run's after its requests.
        let (invalid, source) = self
            .current
            .with(|c| {
                c.as_mut().map(|c| {
                    c.summarized = true;
                    (c.invalid, c.source)
                })
            })
            .unwrap_or_else(|| {
                let invalid = self
                    .scope_invalid
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&summary.scope)
                    .unwrap_or(0);
                let source = self
                    .scope_source
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&summary.scope);
                (invalid, source)
            });
        if invalid == 0 && source.is_none() {
            for sink in &self.sinks {
                sink.on_summary(summary);
            }
            return;
        }
        let mut summary = summary.clone();
        if let Some(source) = source {
            // Its requests' queue times are unknown, not 0.
            summary.source = Some(source);
            summary.distributions = summary
                .distributions
                .iter()
                .filter(|(q, _)| !matches!(q, Quantity::StageQueueTime(_)))
                .collect();
        }
        summary.invalid_spans = summary.invalid_spans.saturating_add(invalid);
        for sink in &self.sinks {
            sink.on_summary(&summary);
        }
    }
}

/// Every node's open and close, and every output of its span (and of the engine's own spans
/// under it, whose nearest ancestor of the convention it is: `up`), in the order they are
/// replayed.
fn steps(spans: &[SpanRec], nodes: &[Node], node_of: &[Option<usize>], up: &[Up]) -> Vec<Step> {
    // Outputs of the engine's own spans count in the nearest span of the convention: the
    // spans whose outputs each node has, its own first.
    let mut extra_outputs: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, rec) in spans.iter().enumerate() {
        if rec.outputs.is_empty() || node_of[i].is_some() {
            continue;
        }
        if let Up::Node(n) = up[i] {
            extra_outputs.entry(n).or_default().push(i);
        }
    }
    let extra = |n: usize| extra_outputs.get(&n).map_or(&[][..], Vec::as_slice);
    let outputs: usize = nodes
        .iter()
        .enumerate()
        .flat_map(|(n, node)| std::iter::once(&node.rec).chain(extra(n)))
        .map(|&i| spans[i].outputs.len())
        .sum();
    let mut steps = Vec::with_capacity(nodes.len() * 2 + outputs);
    for (n, node) in nodes.iter().enumerate() {
        steps.push(Step {
            time_ns: node.start_ns,
            rank: OPEN,
            order: node.depth,
            node: n as u32,
            output: 0,
        });
        if let Some(abort_ns) = spans[node.rec].abort_ns {
            steps.push(Step {
                time_ns: shifted(abort_ns, node.shift).clamp(node.start_ns, node.end_ns),
                rank: ABORT,
                order: node.depth,
                node: n as u32,
                output: 0,
            });
        }
        steps.push(Step {
            time_ns: node.end_ns,
            rank: CLOSE,
            order: u32::MAX - node.depth,
            node: n as u32,
            output: 0,
        });
        // Read where they are (not copied: a stage may have a million outputs).
        for &i in std::iter::once(&node.rec).chain(extra(n)) {
            for (k, o) in spans[i].outputs.iter().enumerate() {
                steps.push(Step {
                    time_ns: shifted(o.time_ns, node.shift).clamp(node.start_ns, node.end_ns),
                    rank: OUTPUT,
                    // For an output, the span that holds it.
                    order: i as u32,
                    node: n as u32,
                    output: k as u32,
                });
            }
        }
    }
    steps.sort_unstable();
    steps
}

/// An `omni.output` event in `span`, with its `units` when it had some.
fn output_event(span: &Span, units: Option<u64>) {
    match units {
        Some(units) => tracing::event!(
            name: convention::OUTPUT,
            target: crate::convention::TARGET,
            parent: span,
            Level::INFO,
            { field::UNITS } = units
        ),
        None => tracing::event!(
            name: convention::OUTPUT,
            target: crate::convention::TARGET,
            parent: span,
            Level::INFO,
            {}
        ),
    }
}

/// Opens the `tracing` span of a node. Every field of the convention is declared, so that
/// any of them can be recorded from the exported attributes.
fn open(kind: SpanKind, parent: Option<tracing::Id>) -> Span {
    match kind {
        SpanKind::Run => omni_span!(any(convention::RUN), [parent: parent]),
        SpanKind::Request => omni_span!(any(convention::REQUEST), [parent: parent]),
        SpanKind::Stage => omni_span!(any(convention::STAGE), [parent: parent]),
        SpanKind::Transfer => omni_span!(any(convention::TRANSFER), [parent: parent]),
        SpanKind::Batch => omni_span!(any(convention::BATCH), [parent: parent]),
        SpanKind::Queue => omni_span!(timing(convention::QUEUE), [parent: parent]),
        SpanKind::Postprocess => omni_span!(timing(convention::POSTPROCESS), [parent: parent]),
        SpanKind::Tx => omni_span!(timing(convention::TRANSFER_TX), [parent: parent]),
        SpanKind::RxDecode => {
            omni_span!(timing(convention::TRANSFER_RX_DECODE), [parent: parent])
        }
    }
}

/// Whether a field of a span of `kind` is recorded when it closes rather than when it opens:
/// a request's outcome, as an engine records it when the request ends (the layer takes an
/// abort's time as the request's end: recorded at the open, the request ended at its start
/// and every stage after it counted apart).
fn at_close(kind: SpanKind, key: &str) -> bool {
    kind == SpanKind::Request && (key == field::STATUS || key == field::STATUS_MESSAGE)
}

/// Records the fields of a span of `kind` that its engine records as it ends ([`at_close`]).
fn record_outcome(span: &Span, kind: SpanKind, fields: &[(Key, AttrValue)]) {
    for (key, value) in fields {
        if at_close(kind, key) {
            record(span, key, value);
        }
    }
}

fn record(span: &Span, key: &str, value: &AttrValue) {
    match value {
        AttrValue::Int(v) => span.record(key, *v),
        AttrValue::Double(v) => span.record(key, *v),
        AttrValue::Str(v) => span.record(key, &**v),
        AttrValue::Bool(v) => span.record(key, *v),
        // Left out of the span's fields when read; never recorded.
        AttrValue::Invalid(_) => span,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn node(rec: usize, kind: SpanKind, parent: Parent, ms: (u64, u64), origin: Origin) -> Node {
        Node {
            rec,
            kind,
            parent,
            start_ns: ms.0 * MS,
            end_ns: ms.1 * MS,
            depth: 0,
            origin,
            shift: 0,
        }
    }

    fn origin(instance: &str) -> Origin {
        let mut o = Origin::default();
        o.note(super::super::origin::SERVICE_INSTANCE_ID, instance);
        o
    }

    fn window(n: &Node) -> (u64, u64) {
        (n.start_ns / MS, n.end_ns / MS)
    }

    /// One process: the stage's exported end is its last exit (10 ms), before its
    /// post-processing child (10 to 14 ms) and its last output (12 ms). Live, the stage
    /// closed after its child: it is widened, nothing is moved. The same without a resource
    /// saying so (within the request's end).
    #[test]
    fn on_one_clock_a_parent_takes_in_its_children() {
        for o in [origin("a"), Origin::default()] {
            let mut nodes = vec![
                node(0, SpanKind::Request, Parent::Run(RunKey::All), (0, 20), o),
                node(1, SpanKind::Stage, Parent::Node(0), (1, 10), o),
                node(2, SpanKind::Postprocess, Parent::Node(1), (10, 14), o),
                node(3, SpanKind::Queue, Parent::Node(1), (1, 3), o),
            ];
            let last_output = [None, Some(12 * MS), None, None];
            let fitted = fit_times(&mut nodes, &[false; 4], &last_output);
            assert_eq!(
                (fitted.moved, fitted.max_moved_ns, fitted.cut),
                (0, 0, None)
            );
            assert_eq!(fitted.request, [Some(0), Some(0), Some(0), Some(0)]);
            let windows: Vec<_> = nodes.iter().map(window).collect();
            assert_eq!(windows, [(0, 20), (1, 14), (10, 14), (1, 3)]);
            assert_eq!(
                nodes[3].depth, 3,
                "under the stage, the request and its run"
            );
        }
    }

    /// Another process whose clock is 50 ms ahead: its stage (60 to 100 ms on the request's
    /// clock) was exported at 110 to 150 ms, with its queue child and an output. It is moved
    /// back by 50 ms, whole, with its child and its output; the request is unchanged.
    #[test]
    fn on_another_clock_a_child_is_moved_whole_by_the_skew() {
        let (a, b) = (origin("a"), origin("b"));
        let mut nodes = vec![
            node(0, SpanKind::Request, Parent::Run(RunKey::All), (0, 100), a),
            node(1, SpanKind::Stage, Parent::Node(0), (5, 50), a),
            node(2, SpanKind::Stage, Parent::Node(0), (110, 150), b),
            node(3, SpanKind::Queue, Parent::Node(2), (110, 120), b),
        ];
        let last_output = [None, None, Some(140 * MS), None];
        let fitted = fit_times(&mut nodes, &[false; 4], &last_output);
        assert_eq!((fitted.moved, fitted.max_moved_ns), (1, 50 * MS));
        let windows: Vec<_> = nodes.iter().map(window).collect();
        assert_eq!(windows, [(0, 100), (5, 50), (60, 100), (60, 70)]);
        assert_eq!(shifted(140 * MS, nodes[2].shift), 90 * MS, "its output");
        assert_eq!(nodes[3].shift, nodes[2].shift, "its child moved with it");
        // Behind by 50 ms: moved forward.
        let mut nodes = vec![
            node(
                0,
                SpanKind::Request,
                Parent::Run(RunKey::All),
                (100, 200),
                a,
            ),
            node(1, SpanKind::Transfer, Parent::Node(0), (50, 60), b),
        ];
        let fitted = fit_times(&mut nodes, &[false; 2], &[None, None]);
        assert_eq!((fitted.moved, fitted.max_moved_ns), (1, 50 * MS));
        assert_eq!(window(&nodes[1]), (100, 110));
    }

    /// Where the resources do not say: within 1 ms, real data (the parent is widened);
    /// beyond it, a start before the parent's or an end after the request's is skew; an
    /// end after a stage's is not (its exported end may be its last exit).
    #[test]
    fn without_resources_the_tolerance_tells_skew() {
        let o = Origin::default();
        let fit = |child: (u64, u64), parent: SpanKind| {
            let mut nodes = vec![
                node(0, parent, Parent::None, (100, 200), o),
                node(1, SpanKind::Queue, Parent::Node(0), child, o),
            ];
            nodes[1].start_ns -= 1;
            let fitted = fit_times(&mut nodes, &[false; 2], &[None, None]);
            (fitted.moved, window(&nodes[0]), nodes[1].start_ns % MS == 0)
        };
        // 1 ns before: widened.
        assert_eq!(fit((100, 150), SpanKind::Stage), (0, (99, 200), false));
        // 5 ms before: moved (to the parent's start).
        assert_eq!(fit((95, 150), SpanKind::Stage), (1, (100, 200), true));
        // 30 ms after a stage: widened; after a request: moved.
        assert_eq!(fit((150, 230), SpanKind::Stage), (0, (100, 230), false));
        assert_eq!(fit((150, 230), SpanKind::Request).0, 1);
    }

    /// A skewed child longer than its parent is moved to its start and cut at its end.
    #[test]
    fn a_skewed_child_longer_than_its_parent_is_cut() {
        let mut nodes = vec![
            node(0, SpanKind::Request, Parent::None, (100, 200), origin("a")),
            node(1, SpanKind::Stage, Parent::Node(0), (90, 250), origin("b")),
        ];
        let fitted = fit_times(&mut nodes, &[false; 2], &[None, None]);
        assert_eq!((fitted.moved, fitted.max_moved_ns), (1, 60 * MS));
        assert_eq!(window(&nodes[1]), (100, 200));
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
