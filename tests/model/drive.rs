//! Runs a [`Schedule`] through the real layer: a Registry with the layer on a scoped
//! dispatcher (never the global one), a manual clock and a capture sink, console off. One
//! thread, in time order: at each step the clock is set, then a span opens or closes, a
//! field is recorded or an event fires.

use std::fmt::Write as _;

use omni_metrics::stats::{OverallSummary, RequestE2EStats};
use omni_metrics::testing::{Harness, ManualClock};
use tracing::{Id, Level, Span};

use crate::schedule::{
    Chunk, FOREIGN_NAMES, Field, Foreign, Host, Request, Run, Schedule, Transfer, Us, Window,
};

/// What the layer reported, and the steps that made it (for failure messages).
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) requests: Vec<RequestE2EStats>,
    pub(crate) summaries: Vec<OverallSummary>,
    pub(crate) log: String,
}

enum Kind<'a> {
    Run(&'a Run),
    Request(&'a Request),
    Stage(&'a Chunk),
    Transfer(&'a Transfer),
    Queue,
    Postprocess,
    Tx,
    RxDecode,
    Foreign(usize),
}

/// How a span gets its parent: `parent:` given explicitly, or the current span inside
/// `parent.in_scope(..)` (contextual).
#[derive(Clone, Copy, PartialEq)]
enum Parenting {
    Explicit,
    InScope,
}

impl Parenting {
    fn of(contextual: bool) -> Self {
        if contextual {
            Parenting::InScope
        } else {
            Parenting::Explicit
        }
    }
}

struct Node<'a> {
    kind: Kind<'a>,
    window: Window,
    parent: Option<usize>,
    parenting: Parenting,
    label: String,
}

/// A field value recorded after creation.
#[derive(Debug)]
enum Value {
    Text(String),
    Count(u64),
    /// Whole µs, recorded as f64 ms (or as an integer of ms when it is one).
    Micros(u64),
}

enum Act {
    Open(usize),
    Close(usize),
    Record(usize, &'static str, Value),
    Output(usize, Option<u64>, Parenting),
    Decoy(usize),
}

/// Depths, for the order of spans opening or closing at one instant.
const ROOT: i32 = 0;
const RUN: i32 = 1;
const REQUEST: i32 = 3;
const CHILD: i32 = 5;
const LEAF: i32 = 6;

/// Steps sort by (time, phase, order): at one instant spans open first (parents before
/// children), then fields are recorded and events fire, then spans close (children before
/// parents). Ties keep the order they were planned in.
#[derive(Default)]
struct Plan<'a> {
    nodes: Vec<Node<'a>>,
    steps: Vec<(Us, u8, i32, Act)>,
}

fn ms(us: Us) -> f64 {
    us as f64 / 1000.0
}

impl<'a> Plan<'a> {
    fn node(
        &mut self,
        kind: Kind<'a>,
        (parent, parenting): (Option<usize>, Parenting),
        depth: i32,
        (start, end): Window,
        label: String,
    ) -> usize {
        let i = self.nodes.len();
        let how = match (parent, parenting) {
            (Some(p), Parenting::InScope) => format!(" [opened in #{p}]"),
            (Some(p), Parenting::Explicit) => format!(" [parent: #{p}]"),
            (None, _) => " [root]".to_owned(),
        };
        self.nodes.push(Node {
            kind,
            window: (start, end),
            parent,
            parenting,
            label: format!("#{i} {label}{how}"),
        });
        self.steps.push((start, 0, depth, Act::Open(i)));
        self.steps.push((end, 2, -depth, Act::Close(i)));
        i
    }

    fn at(&mut self, t: Us, act: Act) {
        self.steps.push((t, 1, 0, act));
    }

    fn late<T: Clone>(&mut self, node: usize, name: &'static str, f: &Field<T>, v: fn(T) -> Value) {
        if let Some((t, value)) = f.late() {
            self.at(t, Act::Record(node, name, v(value)));
        }
    }

    fn foreign(&mut self, f: &Foreign, parent: (Option<usize>, Parenting), depth: i32) -> usize {
        let label = FOREIGN_NAMES[f.name].to_owned();
        self.node(Kind::Foreign(f.name), parent, depth, f.window, label)
    }

    /// `parent` itself, or an engine span between it and a child opened over `window` at
    /// `depth` (the engine span one less).
    fn via(
        &mut self,
        via: bool,
        parent: (Option<usize>, Parenting),
        depth: i32,
        window: Window,
    ) -> (Option<usize>, Parenting) {
        if via {
            let f = Foreign { name: 0, window };
            (Some(self.foreign(&f, parent, depth - 1)), parent.1)
        } else {
            parent
        }
    }

    fn run(&mut self, run: &'a Run) {
        let parent = self.via(
            run.via_foreign,
            (None, Parenting::Explicit),
            RUN,
            run.window,
        );
        let label = format!("omni.run run_id={}{}", run.run_id, late(run.run_id_late));
        let r = self.node(Kind::Run(run), parent, RUN, run.window, label);
        if let Some(t) = run.run_id_late {
            self.at(t, Act::Record(r, "run_id", Value::Text(run.run_id.clone())));
        }
        for f in &run.foreign {
            self.foreign(f, (Some(r), Parenting::Explicit), RUN + 1);
        }
        for request in &run.requests {
            self.request(request, Some(r));
        }
    }

    fn request(&mut self, req: &'a Request, parent: Option<usize>) {
        let how = Parenting::of(req.contextual);
        let parent = self.via(req.via_foreign, (parent, how), REQUEST, req.window);
        let label = format!(
            "omni.request {}{}{}",
            req.request_id,
            late(req.id_late),
            given(&[
                ("status", show(req.status.at_creation())),
                ("status_message", show(req.status_message.at_creation())),
            ]),
        );
        let q = self.node(Kind::Request(req), parent, REQUEST, req.window, label);
        if let Some(t) = req.id_late {
            let id = Value::Text(req.request_id.clone());
            self.at(t, Act::Record(q, "request_id", id));
        }
        self.late(q, "status", &req.status, |s| Value::Text(s.to_owned()));
        self.late(q, "status_message", &req.status_message, Value::Text);
        for f in &req.foreign {
            self.foreign(f, (Some(q), how), REQUEST + 1);
        }
        for c in &req.chunks {
            self.chunk(c, q, &req.request_id);
        }
        for t in &req.transfers {
            self.transfer(t, q, &req.request_id);
        }
    }

    fn chunk(&mut self, c: &'a Chunk, request: usize, id: &str) {
        let how = Parenting::of(c.contextual);
        let parent = self.via(c.via_foreign, (Some(request), how), CHILD, c.window);
        let ms = |f: &Field<u64>| f.at_creation().map(ms);
        let label = format!(
            "omni.stage ({id}) stage_id={}{}{}",
            c.stage_id,
            late(c.stage_id_late),
            given(&[
                ("stage_name", show(c.stage_name.at_creation())),
                ("batch_id", show(c.batch_id.at_creation())),
                ("batch_size", show(c.batch_size.at_creation())),
                ("num_tokens_in", show(c.num_tokens_in.at_creation())),
                ("num_tokens_out", show(c.num_tokens_out.at_creation())),
                (
                    "audio_generated_frames",
                    show(c.audio_generated_frames.at_creation())
                ),
                ("audio_sample_rate", show(c.audio_sample_rate.at_creation())),
                ("image_num", show(c.image_num.at_creation())),
                ("resolution", show(c.resolution.at_creation())),
                ("stage_gen_time_ms", show(ms(&c.gen_us))),
                ("postprocess_time_ms", show(ms(&c.postprocess_us))),
                ("time_to_first_output_ms", show(ms(&c.first_output_us))),
                ("inter_output_ms", show(ms(&c.inter_output_us))),
            ]),
        );
        let s = self.node(Kind::Stage(c), parent, CHILD, c.window, label);
        if let Some(t) = c.stage_id_late {
            self.at(t, Act::Record(s, "stage_id", Value::Count(c.stage_id)));
        }
        let text = |v: &'static str| Value::Text(v.to_owned());
        self.late(s, "stage_name", &c.stage_name, text);
        self.late(s, "batch_id", &c.batch_id, Value::Count);
        self.late(s, "batch_size", &c.batch_size, Value::Count);
        self.late(s, "num_tokens_in", &c.num_tokens_in, Value::Count);
        self.late(s, "num_tokens_out", &c.num_tokens_out, Value::Count);
        let frames = &c.audio_generated_frames;
        self.late(s, "audio_generated_frames", frames, Value::Count);
        self.late(s, "audio_sample_rate", &c.audio_sample_rate, Value::Count);
        self.late(s, "image_num", &c.image_num, Value::Count);
        self.late(s, "resolution", &c.resolution, text);
        self.late(s, "stage_gen_time_ms", &c.gen_us, Value::Micros);
        self.late(s, "postprocess_time_ms", &c.postprocess_us, Value::Micros);
        let first = &c.first_output_us;
        self.late(s, "time_to_first_output_ms", first, Value::Micros);
        self.late(s, "inter_output_ms", &c.inter_output_us, Value::Micros);
        // Children alternate between the two ways of naming their parent.
        let mut k = 0;
        let mut child = |plan: &mut Self, kind, w: Window, label: String| {
            k += 1;
            let how = Parenting::of(c.contextual ^ (k % 2 == 0));
            plan.node(kind, (Some(s), how), LEAF, w, label)
        };
        let mut queues = Vec::new();
        for w in &c.queues {
            queues.push(child(
                self,
                Kind::Queue,
                *w,
                format!("omni.queue (of #{s})"),
            ));
        }
        let mut posts = Vec::new();
        for w in &c.postprocesses {
            let label = format!("omni.postprocess (of #{s})");
            posts.push(child(self, Kind::Postprocess, *w, label));
        }
        let foreign = c.foreign_child.map(|w| {
            let label = format!("{} (in #{s})", FOREIGN_NAMES[2]);
            child(self, Kind::Foreign(2), w, label)
        });
        for o in &c.outputs {
            let host = match o.host {
                Host::Stage => s,
                Host::Queue(i) => queues[i],
                Host::Post(i) => posts[i],
                Host::Foreign => foreign.unwrap_or(s),
            };
            let how = Parenting::of(o.contextual);
            self.at(o.at, Act::Output(host, o.units, how));
        }
        for t in &c.decoys {
            self.at(*t, Act::Decoy(s));
        }
    }

    fn transfer(&mut self, t: &'a Transfer, request: usize, id: &str) {
        let how = Parenting::of(t.contextual);
        let parent = self.via(t.via_foreign, (Some(request), how), CHILD, t.window);
        let ms = |f: &Field<u64>| f.at_creation().map(ms);
        let label = format!(
            "omni.transfer ({id}) {}->{}{}{}",
            t.from_stage,
            t.to_stage,
            late(t.edge_late),
            given(&[
                ("size_bytes", show(t.size_bytes.at_creation())),
                ("tx_time_ms", show(ms(&t.tx_us))),
                ("rx_decode_time_ms", show(ms(&t.rx_us))),
                ("in_flight_time_ms", show(ms(&t.in_flight_us))),
            ]),
        );
        let x = self.node(Kind::Transfer(t), parent, CHILD, t.window, label);
        if let Some(at) = t.edge_late {
            self.at(at, Act::Record(x, "from_stage", Value::Count(t.from_stage)));
            self.at(at, Act::Record(x, "to_stage", Value::Count(t.to_stage)));
        }
        self.late(x, "size_bytes", &t.size_bytes, Value::Count);
        self.late(x, "tx_time_ms", &t.tx_us, Value::Micros);
        self.late(x, "rx_decode_time_ms", &t.rx_us, Value::Micros);
        self.late(x, "in_flight_time_ms", &t.in_flight_us, Value::Micros);
        let children = t.tx.iter().map(|w| (Kind::Tx, "omni.transfer.tx", w));
        let rx =
            t.rx.iter()
                .map(|w| (Kind::RxDecode, "omni.transfer.rx_decode", w));
        for (k, (kind, name, w)) in children.chain(rx).enumerate() {
            let how = Parenting::of(t.contextual ^ (k % 2 == 1));
            self.node(kind, (Some(x), how), LEAF, *w, format!("{name} (of #{x})"));
        }
    }
}

/// A value given at creation, for the log.
fn show<T: std::fmt::Debug>(v: Option<T>) -> Option<String> {
    v.map(|v| format!("{v:?}"))
}

/// The fields given at creation, for the log: ` a=1 b="x"`.
fn given(fields: &[(&str, Option<String>)]) -> String {
    fields
        .iter()
        .filter_map(|(name, v)| v.as_ref().map(|v| format!(" {name}={v}")))
        .collect()
}

/// How an id recorded late (at `at`) appears in the log.
fn late(at: Option<Us>) -> &'static str {
    match at {
        None => "",
        Some(at) if decoy(at) => " (recorded late, over a decoy given at creation)",
        Some(_) => " (recorded late)",
    }
}

/// Whether an id recorded late at `at` is first given another value at creation (it is
/// then recorded twice: the late value wins).
fn decoy(at: Us) -> bool {
    at % 2 == 1
}

/// Opens a span of `kind`; the tokens given (`parent: p,` or none) go before the level.
macro_rules! open_span {
    ($kind:expr; $($parent:tt)*) => {{
        let ms = |us: Option<Us>| us.map(ms);
        match $kind {
            Kind::Run(run) => {
                let id = match run.run_id_late {
                    None => Some(run.run_id.as_str()),
                    Some(at) => decoy(at).then_some("decoy-run"),
                };
                tracing::span!($($parent)* Level::INFO, "omni.run", run_id = id)
            }
            Kind::Request(r) => {
                let decoy_id = format!("decoy-{}", r.request_id);
                let id = match r.id_late {
                    None => Some(r.request_id.as_str()),
                    Some(at) => decoy(at).then_some(decoy_id.as_str()),
                };
                let message = r.status_message.at_creation();
                tracing::span!($($parent)* Level::INFO, "omni.request",
                    request_id = id,
                    status = r.status.at_creation(),
                    status_message = message.as_deref())
            }
            Kind::Stage(c) => tracing::span!($($parent)* Level::INFO, "omni.stage",
                stage_id = match c.stage_id_late {
                    None => Some(c.stage_id),
                    Some(at) => decoy(at).then_some(c.stage_id + 10),
                },
                stage_name = c.stage_name.at_creation(),
                batch_id = c.batch_id.at_creation(),
                batch_size = c.batch_size.at_creation(),
                num_tokens_in = c.num_tokens_in.at_creation(),
                num_tokens_out = c.num_tokens_out.at_creation(),
                audio_generated_frames = c.audio_generated_frames.at_creation(),
                audio_sample_rate = c.audio_sample_rate.at_creation(),
                image_num = c.image_num.at_creation(),
                resolution = c.resolution.at_creation(),
                stage_gen_time_ms = ms(c.gen_us.at_creation()),
                postprocess_time_ms = ms(c.postprocess_us.at_creation()),
                time_to_first_output_ms = ms(c.first_output_us.at_creation()),
                inter_output_ms = ms(c.inter_output_us.at_creation()),
                // Not a convention field: ignored.
                gen_ai.system = "decoy"),
            Kind::Transfer(t) => {
                let edge = match t.edge_late {
                    None => Some((t.from_stage, t.to_stage)),
                    Some(at) => decoy(at).then_some((9, 8)),
                };
                tracing::span!($($parent)* Level::INFO, "omni.transfer",
                    from_stage = edge.map(|e| e.0),
                    to_stage = edge.map(|e| e.1),
                    size_bytes = t.size_bytes.at_creation(),
                    tx_time_ms = ms(t.tx_us.at_creation()),
                    rx_decode_time_ms = ms(t.rx_us.at_creation()),
                    in_flight_time_ms = ms(t.in_flight_us.at_creation()))
            }
            Kind::Queue => tracing::span!($($parent)* Level::INFO, "omni.queue"),
            Kind::Postprocess => tracing::span!($($parent)* Level::INFO, "omni.postprocess"),
            Kind::Tx => tracing::span!($($parent)* Level::INFO, "omni.transfer.tx"),
            Kind::RxDecode => {
                tracing::span!($($parent)* Level::INFO, "omni.transfer.rx_decode")
            }
            // Engine spans carrying convention field names: still not the convention's.
            Kind::Foreign(0) => tracing::span!($($parent)* Level::INFO, "engine.step",
                stage_id = 9_u64, num_tokens_out = 1_000_u64),
            Kind::Foreign(1) => tracing::span!($($parent)* Level::INFO, "omnivore",
                request_id = "decoy", status = "error"),
            Kind::Foreign(_) => tracing::span!($($parent)* Level::DEBUG, "http.request",
                request_id = "decoy", units = 7_u64),
        }
    }};
}

/// Opens a span of `kind` with an explicit parent (`None`: a root).
fn open_explicit(kind: &Kind<'_>, parent: Option<Id>) -> Span {
    open_span!(kind; parent: parent,)
}

/// Opens a span of `kind` whose parent is the current span.
fn open_contextual(kind: &Kind<'_>) -> Span {
    open_span!(kind;)
}

/// Panics unless every span lies inside its parent and every record and event inside its
/// span (a hand-written schedule may get this wrong).
fn check_nesting(nodes: &[Node<'_>], steps: &[(Us, u8, i32, Act)]) {
    let inside = |t: Us, i: usize| nodes[i].window.0 <= t && t <= nodes[i].window.1;
    for node in nodes {
        let (start, end) = node.window;
        assert!(
            start <= end,
            "schedule error: {} ends before it starts",
            node.label
        );
        if let Some(p) = node.parent {
            assert!(
                inside(start, p) && inside(end, p),
                "schedule error: {} {:?} outside its parent {} {:?}",
                node.label,
                node.window,
                nodes[p].label,
                nodes[p].window,
            );
        }
    }
    for (t, _, _, act) in steps {
        if let Act::Record(i, ..) | Act::Output(i, ..) | Act::Decoy(i) = act {
            assert!(
                inside(*t, *i),
                "schedule error: a record or event at {t} µs outside {} {:?}",
                nodes[*i].label,
                nodes[*i].window,
            );
        }
    }
}

/// Runs `schedule` through a fresh layer and returns what it reported.
pub(crate) fn drive(schedule: &Schedule) -> Outcome {
    let mut plan = Plan::default();
    for f in &schedule.foreign {
        plan.foreign(f, (None, Parenting::Explicit), ROOT);
    }
    for run in &schedule.runs {
        plan.run(run);
    }
    for request in &schedule.online {
        plan.request(request, None);
    }
    let Plan { nodes, mut steps } = plan;
    check_nesting(&nodes, &steps);
    steps.sort_by_key(|&(t, phase, order, _)| (t, phase, order));

    let mut log = String::new();
    let mut outcome = with_layer(|clock| {
        let mut spans: Vec<Option<Span>> = (0..nodes.len()).map(|_| None).collect();
        for (t, _, _, act) in steps {
            clock.set_ns(t * 1_000);
            let _ = write!(log, "{:>12.3} ms  ", ms(t));
            match act {
                Act::Open(i) => {
                    let node = &nodes[i];
                    let parent = node.parent.and_then(|p| spans[p].as_ref());
                    spans[i] = Some(match (parent, node.parenting) {
                        (Some(p), Parenting::InScope) => p.in_scope(|| open_contextual(&node.kind)),
                        (p, _) => open_explicit(&node.kind, p.and_then(Span::id)),
                    });
                    let _ = writeln!(log, "open   {}", node.label);
                }
                Act::Close(i) => {
                    spans[i] = None;
                    let _ = writeln!(log, "close  #{i}");
                }
                Act::Record(i, name, value) => {
                    let span = spans[i].as_ref().expect("recorded while open");
                    // Counts and whole ms alternate between integer types, as engines
                    // write them.
                    match &value {
                        Value::Text(v) => span.record(name, v.as_str()),
                        Value::Count(v) if (i as u64 + v) % 3 == 0 => {
                            span.record(name, i64::try_from(*v).unwrap_or(i64::MAX))
                        }
                        Value::Count(v) => span.record(name, *v),
                        Value::Micros(v) if v % 1000 == 0 && i % 2 == 0 => {
                            span.record(name, v / 1000)
                        }
                        Value::Micros(v) => span.record(name, ms(*v)),
                    };
                    let _ = writeln!(log, "record #{i} {name} = {value:?}");
                }
                Act::Output(i, units, how) => {
                    let host = spans[i].as_ref().expect("output while open");
                    let id = host.id();
                    match how {
                        Parenting::InScope => host.in_scope(
                            || tracing::event!(name: "omni.output", Level::INFO, units = units),
                        ),
                        Parenting::Explicit => {
                            tracing::event!(name: "omni.output", parent: id, Level::INFO, units = units)
                        }
                    }
                    let kind = if how == Parenting::InScope {
                        "inside"
                    } else {
                        "parent:"
                    };
                    let _ = writeln!(log, "output ({kind} #{i}) units={units:?}");
                }
                Act::Decoy(i) => {
                    let id = spans[i].as_ref().and_then(Span::id);
                    tracing::event!(parent: id, Level::INFO, units = 99_u64, "not an output");
                    let _ = writeln!(log, "event  (parent: #{i}) not omni.output");
                }
            }
        }
        assert!(spans.iter().all(Option::is_none), "every span closed");
    });
    outcome.log = log;
    outcome
}

/// Runs `f` with a fresh layer (manual clock, capture sink, console off) as the thread's
/// scoped dispatcher, and returns what it reported (no log).
pub(crate) fn with_layer(f: impl FnOnce(&ManualClock)) -> Outcome {
    let h = Harness::new();
    h.run(|| f(h.clock()));
    Outcome {
        requests: h.capture().requests(),
        summaries: h.capture().summaries(),
        log: String::new(),
    }
}
