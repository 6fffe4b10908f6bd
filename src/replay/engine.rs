//! Replaying exported spans through the metrics layer.
//!
//! Every exported span of the convention becomes a real `tracing` span again, opened and
//! closed at its exported times on a [`ManualClock`], with its exported parent as explicit
//! parent and its attributes recorded as fields, under a scoped dispatcher holding an
//! [`OmniMetricsLayer`]. The layer then computes every table, record and distribution as it
//! does live: there is no second definition of any metric here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::field::Empty;
use tracing::{Level, Span};

use super::model::{AttrValue, SpanRec};
use super::{GroupBy, ReplayStats};
use crate::clock::ManualClock;
use crate::convention::{SpanKind, field};
use crate::report::Sink;
use crate::stats::{OverallSummary, RequestE2EStats};

/// A span to replay.
#[derive(Debug)]
struct Node {
    /// Index in the span set; `None` for a run made up here.
    rec: Option<usize>,
    kind: SpanKind,
    /// Index of the parent node.
    parent: Option<usize>,
    start_ns: u64,
    end_ns: u64,
    depth: u32,
    /// `run_id` of a run made up here.
    run_id: Option<&'static str>,
    trace_id: u128,
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

/// Spans by (trace id, span id).
type Index = HashMap<(u128, u64), usize>;

/// Builds the nodes to replay: the convention's spans, each under its nearest exported
/// ancestor of the convention, requests under their run as `group_by` says.
fn nodes(
    spans: &[SpanRec],
    index: &Index,
    group_by: GroupBy,
    stats: &mut ReplayStats,
) -> Vec<Node> {
    let mut node_of: HashMap<usize, usize> = HashMap::new();
    let mut nodes = Vec::new();
    for (i, rec) in spans.iter().enumerate() {
        let Some(kind) = rec.kind else { continue };
        if group_by == GroupBy::All && kind == SpanKind::Run {
            continue;
        }
        node_of.insert(i, nodes.len());
        nodes.push(Node {
            rec: Some(i),
            kind,
            parent: None,
            start_ns: rec.start_ns,
            end_ns: rec.end_ns,
            depth: 0,
            run_id: None,
            trace_id: rec.trace_id,
        });
    }
    // The nearest ancestor of the convention, through the engine's own spans.
    for node in &mut nodes {
        let Some(rec) = node.rec.map(|i| &spans[i]) else {
            continue;
        };
        let mut next = rec.parent_id;
        let mut parent = None;
        while let Some(id) = next {
            match index.get(&(rec.trace_id, id)) {
                Some(&i) => match node_of.get(&i) {
                    Some(&p) => {
                        parent = Some(p);
                        break;
                    }
                    // The engine's own span (or a run left out by `GroupBy::All`).
                    None => next = spans[i].parent_id,
                },
                None => {
                    if node.kind != SpanKind::Request {
                        stats.missing_parents += 1;
                    }
                    break;
                }
            }
        }
        node.parent = parent;
    }
    // Requests and their run.
    let mut made_up: HashMap<(u128, u64), usize> = HashMap::new();
    let mut all = None;
    for n in 0..nodes.len() {
        if nodes[n].kind != SpanKind::Request {
            continue;
        }
        match group_by {
            GroupBy::All => {
                let run = *all.get_or_insert_with(|| {
                    nodes.push(made_up_run(Some(GroupBy::ALL_SCOPE)));
                    nodes.len() - 1
                });
                nodes[n].parent = Some(run);
            }
            GroupBy::Run => {
                if nodes[n].parent.is_some() {
                    continue;
                }
                let Some(rec) = nodes[n].rec.map(|i| &spans[i]) else {
                    continue;
                };
                // The run a request links to (`otlp::RunLinks` exports it apart).
                let run = rec.links.iter().find_map(|link| match index.get(link) {
                    Some(i) => node_of
                        .get(i)
                        .copied()
                        .filter(|&p| nodes[p].kind == SpanKind::Run)
                        .map(Ok),
                    None => Some(Err(*link)),
                });
                nodes[n].parent = match run {
                    Some(Ok(run)) => Some(run),
                    // Linked to a span not in the input: a run whose span is missing;
                    // its requests are still summarized together.
                    Some(Err(link)) => Some(*made_up.entry(link).or_insert_with(|| {
                        stats.runs_without_span += 1;
                        nodes.push(made_up_run(None));
                        nodes.len() - 1
                    })),
                    None => None,
                };
            }
        }
    }
    nodes
}

fn made_up_run(run_id: Option<&'static str>) -> Node {
    Node {
        rec: None,
        kind: SpanKind::Run,
        parent: None,
        start_ns: u64::MAX,
        end_ns: 0,
        depth: 0,
        run_id,
        trace_id: 0,
    }
}

/// Puts every span inside its parent's time (clock skew between hosts may put a child
/// outside it), and every run around its requests. Returns how many spans were moved.
fn fit_times(nodes: &mut [Node]) -> u64 {
    // Depths, so that parents are fitted before their children.
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    for n in 0..nodes.len() {
        let mut depth = 0;
        let mut p = nodes[n].parent;
        while let Some(i) = p {
            depth += 1;
            p = nodes[i].parent;
            if depth > nodes.len() as u32 {
                break; // a cycle cannot come from ids that are unique, but never loop
            }
        }
        nodes[n].depth = depth;
    }
    // Runs first cover their children (a run made up here has no times of its own).
    for n in 0..nodes.len() {
        if let Some(p) = nodes[n].parent.filter(|&p| nodes[p].kind == SpanKind::Run) {
            let (start, end) = (nodes[n].start_ns, nodes[n].end_ns);
            let run = &mut nodes[p];
            run.start_ns = run.start_ns.min(start);
            run.end_ns = run.end_ns.max(end);
        }
    }
    for node in nodes.iter_mut() {
        if node.rec.is_none() && node.start_ns > node.end_ns {
            (node.start_ns, node.end_ns) = (0, 0); // a run with no request
        }
    }
    order.sort_by_key(|&n| nodes[n].depth);
    let mut moved = 0;
    for n in order {
        let Some(p) = nodes[n].parent else { continue };
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

/// Replays `spans` in the current default dispatcher (a scoped one holding the layer whose
/// clock is `clock`).
pub(super) fn replay(
    spans: &[SpanRec],
    group_by: GroupBy,
    clock: &ManualClock,
    current: &CurrentTrace,
    progress: &mut dyn FnMut(u64, u64),
) -> ReplayStats {
    let mut stats = ReplayStats::default();
    let mut index = Index::with_capacity(spans.len());
    for (i, s) in spans.iter().enumerate() {
        index.entry((s.trace_id, s.span_id)).or_insert(i);
    }
    let mut nodes = nodes(spans, &index, group_by, &mut stats);
    stats.moved_into_parent = fit_times(&mut nodes);
    // Outputs of the engine's own spans count in the nearest span of the convention.
    let mut extra_outputs: HashMap<usize, Vec<super::model::Output>> = HashMap::new();
    let node_of: HashMap<usize, usize> = nodes
        .iter()
        .enumerate()
        .filter_map(|(n, node)| Some((node.rec?, n)))
        .collect();
    for (i, rec) in spans.iter().enumerate() {
        if rec.outputs.is_empty() || node_of.contains_key(&i) {
            continue;
        }
        let mut next = rec.parent_id;
        while let Some(id) = next {
            let Some(&j) = index.get(&(rec.trace_id, id)) else {
                break;
            };
            if let Some(&n) = node_of.get(&j) {
                extra_outputs.entry(n).or_default().extend(&rec.outputs);
                break;
            }
            next = spans[j].parent_id;
        }
    }
    let outputs_of = |n: usize| -> Vec<super::model::Output> {
        let mut out: Vec<_> = nodes[n]
            .rec
            .map(|i| spans[i].outputs.clone())
            .unwrap_or_default();
        if let Some(extra) = extra_outputs.get(&n) {
            out.extend(extra);
        }
        out
    };
    let mut steps = Vec::with_capacity(nodes.len() * 2);
    let mut outputs: Vec<Vec<super::model::Output>> = Vec::with_capacity(nodes.len());
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
        let mut own = outputs_of(n);
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
    let total = steps.len() as u64;
    let mut open_spans: Vec<Option<Span>> = (0..nodes.len()).map(|_| None).collect();
    for (done, step) in steps.iter().enumerate() {
        if done % 65_536 == 0 {
            progress(done as u64, total);
        }
        clock.set_ns(step.time_ns);
        let n = step.node as usize;
        let node = &nodes[n];
        match step.rank {
            OPEN => {
                let parent = node
                    .parent
                    .and_then(|p| open_spans[p].as_ref())
                    .and_then(Span::id);
                let span = open(node.kind, parent);
                if let Some(i) = node.rec {
                    for (key, value) in &spans[i].fields {
                        record(&span, key, value);
                    }
                }
                if let Some(run_id) = node.run_id {
                    span.record(field::RUN_ID, run_id);
                }
                stats.spans_replayed += 1;
                match node.kind {
                    SpanKind::Request => stats.requests += 1,
                    SpanKind::Run => stats.runs += 1,
                    _ => {}
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
                    current.set(Some(format!("{:032x}", node.trace_id)));
                }
                drop(open_spans[n].take());
                current.set(None);
            }
        }
    }
    progress(total, total);
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(span_id: u64, parent: Option<u64>, kind: SpanKind, start: u64, end: u64) -> SpanRec {
        SpanRec {
            trace_id: 1,
            span_id,
            parent_id: parent,
            kind: Some(kind),
            start_ns: start,
            end_ns: end,
            fields: Vec::new(),
            links: Vec::new(),
            outputs: Vec::new(),
        }
    }

    #[test]
    fn children_are_fitted_into_their_parent_and_runs_around_their_requests() {
        let spans = vec![
            rec(1, None, SpanKind::Request, 100, 200),
            // Skewed: starts before its request and ends after it.
            rec(2, Some(1), SpanKind::Stage, 90, 210),
            rec(3, Some(2), SpanKind::Queue, 95, 120),
        ];
        let index: Index = spans
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.trace_id, s.span_id), i))
            .collect();
        let mut stats = ReplayStats::default();
        let mut nodes = nodes(&spans, &index, GroupBy::All, &mut stats);
        assert_eq!(nodes.len(), 4, "three spans and the scope of them all");
        assert_eq!(fit_times(&mut nodes), 2);
        assert_eq!((nodes[1].start_ns, nodes[1].end_ns), (100, 200));
        assert_eq!((nodes[2].start_ns, nodes[2].end_ns), (100, 120));
        assert_eq!((nodes[3].start_ns, nodes[3].end_ns), (100, 200), "the run");
        assert_eq!(nodes[2].depth, 3);
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
