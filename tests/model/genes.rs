//! Random schedules: proptest strategies over plain "genes" (counts, fractions, modes),
//! turned into a [`Schedule`] with every instant computed. Genes shrink towards fewer
//! requests, chunks and children, absent fields and instants at a parent's start.

use proptest::collection::vec;
use proptest::prelude::*;

use crate::schedule::{
    Chunk, FOREIGN_NAMES, Field, Foreign, Host, Output, Request, Run, Schedule, Transfer, Us,
    Window,
};

/// The stages' names, by stage id (the same in every request, as in an engine).
const STAGE_NAMES: [&str; 4] = ["thinker", "talker", "code2wav", "dit"];
/// The stages' resolutions, by stage id.
const RESOLUTIONS: [&str; 4] = ["512x512", "1024x1024", "640x480", "64x64"];
/// Sample rates a stage may declare.
const SAMPLE_RATES: [u64; 5] = [8_000, 16_000, 22_050, 24_000, 44_100];

/// A position inside a parent's window, in thousandths: its very start and end often.
fn frac() -> impl Strategy<Value = u16> + Clone {
    prop_oneof![1 => Just(0u16), 1 => Just(1000u16), 6 => 0..=1000u16]
}

/// A sub-window of `parent`: starts `a`/1000 into it, lasts `b`/1000 of what is left.
fn sub((s, e): Window, (a, b): (u16, u16)) -> Window {
    let start = s + (e - s) * u64::from(a) / 1000;
    let end = start + (e - start) * u64::from(b) / 1000;
    (start, end)
}

/// The instant `a`/1000 into `window`.
fn at((s, e): Window, a: u16) -> Us {
    s + (e - s) * u64::from(a) / 1000
}

/// How a field reaches its span (see [`Field`]): a mode, the first and last values, and
/// when a late value is recorded.
#[derive(Clone, Debug)]
pub(crate) struct FieldGene<T> {
    mode: u8,
    first: T,
    last: T,
    at: u16,
}

impl<T: Clone> FieldGene<T> {
    fn place(self, window: Window) -> Field<T> {
        let when = at(window, self.at);
        match self.mode {
            0 => Field::Absent,
            1 => Field::Create(self.last),
            2 => Field::Late(when, self.last),
            _ => Field::Twice(self.first, when, self.last),
        }
    }
}

impl FieldGene<()> {
    /// A field whose final value is `value` (the same on every chunk of a stage); a value
    /// given first and then replaced is `decoy`.
    fn place_as<T: Clone>(&self, window: Window, value: T, decoy: T) -> Field<T> {
        FieldGene {
            mode: self.mode,
            first: decoy,
            last: value,
            at: self.at,
        }
        .place(window)
    }
}

/// A field given often.
fn field<T: Clone + std::fmt::Debug + 'static>(
    value: impl Strategy<Value = T> + Clone + 'static,
) -> BoxedStrategy<FieldGene<T>> {
    let mode = prop_oneof![3 => Just(0u8), 3 => Just(1u8), 2 => Just(2u8), 1 => Just(3u8)];
    (mode, value.clone(), value, frac())
        .prop_map(|(mode, first, last, at)| FieldGene {
            mode,
            first,
            last,
            at,
        })
        .boxed()
}

/// A field given now and then (explicit times).
fn rare<T: Clone + std::fmt::Debug + 'static>(
    value: impl Strategy<Value = T> + Clone + 'static,
) -> BoxedStrategy<FieldGene<T>> {
    let mode = prop_oneof![8 => Just(0u8), 2 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8)];
    (mode, value.clone(), value, frac())
        .prop_map(|(mode, first, last, at)| FieldGene {
            mode,
            first,
            last,
            at,
        })
        .boxed()
}

/// A small count.
fn count() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![Just(0u64), 0..10u64, 0..100_000u64]
}

/// An explicit time, in µs.
fn micros() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![0..3_000u64, 0..60_000u64]
}

/// A window inside a parent, as two fractions.
fn window() -> impl Strategy<Value = (u16, u16)> + Clone {
    (frac(), frac())
}

#[derive(Clone, Debug)]
pub(crate) struct ChunkGene {
    stage_id: u64,
    id_late: Option<u16>,
    pos: (u16, u16),
    via_foreign: bool,
    contextual: bool,
    counts: [FieldGene<u64>; 6],
    constants: [FieldGene<()>; 5],
    times: [FieldGene<u64>; 2],
    queues: Vec<(u16, u16)>,
    postprocesses: Vec<(u16, u16)>,
    foreign_child: Option<(u16, u16)>,
    outputs: Vec<(u8, u8, u16, Option<u64>)>,
    decoys: Vec<u16>,
}

fn chunk() -> impl Strategy<Value = ChunkGene> {
    let stage_id = prop_oneof![3 => Just(0u64), 3 => Just(1u64), 2 => Just(2u64), 1 => Just(3u64)];
    let constant = || field(Just(()));
    (
        (
            stage_id,
            prop::option::weighted(0.15, frac()),
            window(),
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.3),
        ),
        [
            field(0..4u64), // batch_id
            field(0..9u64), // batch_size
            field(count()), // num_tokens_in
            field(count()), // num_tokens_out
            field(count()), // audio_generated_frames
            rare(0..4u64),  // image_num
        ],
        [constant(), constant(), constant(), constant(), constant()],
        [rare(micros()), rare(micros())],
        (
            vec(window(), 0..3),
            vec(window(), 0..3),
            prop::option::weighted(0.2, window()),
        ),
        (
            vec(
                (0..6u8, any::<u8>(), frac(), prop::option::of(0..5_000u64)),
                0..6,
            ),
            vec(frac(), 0..2),
        ),
    )
        .prop_map(
            |(
                (stage_id, id_late, pos, via_foreign, contextual),
                counts,
                constants,
                times,
                (queues, postprocesses, foreign_child),
                (outputs, decoys),
            )| ChunkGene {
                stage_id,
                id_late,
                pos,
                via_foreign,
                contextual,
                counts,
                constants,
                times,
                queues,
                postprocesses,
                foreign_child,
                outputs,
                decoys,
            },
        )
}

#[derive(Clone, Debug)]
pub(crate) struct TransferGene {
    /// 0 and 1: tx and rx anywhere; 2: every tx in the first half, every rx in the second
    /// (pipelined: tx, tx, rx, rx); 3: tx and rx alternating in slots (tx, rx, tx, rx).
    layout: u8,
    edge: (u64, u64),
    edge_late: Option<u16>,
    pos: (u16, u16),
    via_foreign: bool,
    contextual: bool,
    size: FieldGene<u64>,
    times: [FieldGene<u64>; 3],
    tx: Vec<(u16, u16)>,
    rx: Vec<(u16, u16)>,
}

fn transfer() -> impl Strategy<Value = TransferGene> {
    (
        (
            0..4u8,
            (0..4u64, 0..4u64),
            prop::option::weighted(0.15, frac()),
        ),
        window(),
        (prop::bool::weighted(0.2), prop::bool::weighted(0.3)),
        field(prop_oneof![0..2_048u64, 0..50_000_000u64]),
        [rare(micros()), rare(micros()), rare(micros())],
        vec(window(), 1..4),
        vec(window(), 1..4),
    )
        .prop_map(
            |((layout, edge, edge_late), pos, (via_foreign, contextual), size, times, tx, rx)| {
                TransferGene {
                    layout,
                    edge,
                    edge_late,
                    pos,
                    via_foreign,
                    contextual,
                    size,
                    times,
                    tx,
                    rx,
                }
            },
        )
}

#[derive(Clone, Debug)]
pub(crate) struct RequestGene {
    scope: u8,
    start: u64,
    len: u64,
    status: FieldGene<u8>,
    message: FieldGene<()>,
    id_late: Option<u16>,
    via_foreign: bool,
    contextual: bool,
    chunks: Vec<ChunkGene>,
    transfers: Vec<TransferGene>,
    foreign: Vec<(usize, (u16, u16))>,
    /// Per stage id: sample rate (index), explicit time to first output and inter-output
    /// time (µs), the same on every chunk that gives them.
    per_stage: [(usize, u64, u64); 4],
}

fn request() -> impl Strategy<Value = RequestGene> {
    let len = prop_oneof![1 => 0..2_000u64, 4 => 0..200_000u64, 1 => 0..20_000_000u64];
    let status = prop_oneof![4 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)];
    let per_stage = (0..SAMPLE_RATES.len(), micros(), micros());
    (
        (any::<u8>(), 0..100_000u64, len),
        (
            field(status),
            field(Just(())),
            prop::option::weighted(0.2, frac()),
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.3),
        ),
        vec(chunk(), 0..6),
        vec(transfer(), 0..4),
        vec((0..FOREIGN_NAMES.len(), window()), 0..2),
        [
            per_stage.clone(),
            per_stage.clone(),
            per_stage.clone(),
            per_stage,
        ],
    )
        .prop_map(
            |(
                (scope, start, len),
                (status, message, id_late, via_foreign, contextual),
                chunks,
                transfers,
                foreign,
                per_stage,
            )| RequestGene {
                scope,
                start,
                len,
                status,
                message,
                id_late,
                via_foreign,
                contextual,
                chunks,
                transfers,
                foreign,
                per_stage,
            },
        )
}

#[derive(Clone, Debug)]
pub(crate) struct RunGene {
    start: u64,
    tail: u64,
    id_late: Option<u16>,
    via_foreign: bool,
    foreign: Vec<(usize, (u16, u16))>,
}

fn run() -> impl Strategy<Value = RunGene> {
    (
        0..100_000u64,
        prop_oneof![Just(0u64), 0..10_000u64],
        prop::option::weighted(0.3, frac()),
        prop::bool::weighted(0.2),
        vec((0..FOREIGN_NAMES.len(), window()), 0..2),
    )
        .prop_map(|(start, tail, id_late, via_foreign, foreign)| RunGene {
            start,
            tail,
            id_late,
            via_foreign,
            foreign,
        })
}

/// The genes of one schedule.
#[derive(Clone, Debug)]
pub(crate) struct ScheduleGene {
    runs: Vec<RunGene>,
    requests: Vec<RequestGene>,
    foreign: Vec<(usize, u64, u64)>,
}

pub(crate) fn schedule() -> impl Strategy<Value = ScheduleGene> {
    (
        vec(run(), 0..3),
        vec(request(), 1..7),
        vec((0..FOREIGN_NAMES.len(), 0..200_000u64, 0..200_000u64), 0..3),
    )
        .prop_map(|(runs, requests, foreign)| ScheduleGene {
            runs,
            requests,
            foreign,
        })
}

impl ScheduleGene {
    /// The schedule these genes describe.
    pub(crate) fn build(&self) -> Schedule {
        let mut runs: Vec<Run> = self
            .runs
            .iter()
            .enumerate()
            .map(|(k, g)| Run {
                run_id: format!("batch-{k}"),
                run_id_late: None,
                via_foreign: g.via_foreign,
                window: (g.start, g.start),
                requests: Vec::new(),
                foreign: Vec::new(),
            })
            .collect();
        let mut online = Vec::new();
        for (i, g) in self.requests.iter().enumerate() {
            let scope = usize::from(g.scope) % (runs.len() + 1);
            let base = match scope {
                0 => 0,
                k => runs[k - 1].window.0,
            };
            let request = build_request(i, g, base);
            match scope {
                0 => online.push(request),
                k => runs[k - 1].requests.push(request),
            }
        }
        for (run, g) in runs.iter_mut().zip(&self.runs) {
            let last = run.requests.iter().map(|r| r.window.1).max();
            let end = last.unwrap_or(run.window.0).max(run.window.0) + g.tail;
            run.window.1 = end;
            run.foreign = foreign(&g.foreign, run.window);
            // A late run id comes before any of the run's requests closes (SPEC.md does not
            // say what a run id recorded after its first request is reported does).
            let first_close = run.requests.iter().map(|r| r.window.1).min();
            let before = (run.window.0, first_close.unwrap_or(end));
            run.run_id_late = g.id_late.map(|a| at(before, a));
        }
        Schedule {
            runs,
            online,
            foreign: self
                .foreign
                .iter()
                .map(|&(name, start, len)| Foreign {
                    name,
                    window: (start, start + len),
                })
                .collect(),
        }
    }
}

fn foreign(genes: &[(usize, (u16, u16))], parent: Window) -> Vec<Foreign> {
    genes
        .iter()
        .map(|&(name, pos)| Foreign {
            name,
            window: sub(parent, pos),
        })
        .collect()
}

fn build_request(i: usize, g: &RequestGene, base: Us) -> Request {
    let window = (base + g.start, base + g.start + g.len);
    let status = g
        .status
        .clone()
        .place(window)
        .map_value(|s| ["ok", "error", "aborted"][usize::from(s) % 3]);
    let status_message = g
        .message
        .place_as(window, format!("boom {i}"), "first".to_owned());
    Request {
        request_id: format!("r-{i}"),
        id_late: g.id_late.map(|a| at(window, a)),
        window,
        status,
        status_message,
        via_foreign: g.via_foreign,
        contextual: g.contextual,
        chunks: g
            .chunks
            .iter()
            .map(|c| build_chunk(c, window, &g.per_stage))
            .collect(),
        transfers: g
            .transfers
            .iter()
            .map(|t| build_transfer(t, window))
            .collect(),
        foreign: foreign(&g.foreign, window),
    }
}

impl<T> Field<T> {
    fn map_value<U>(self, f: impl Fn(T) -> U) -> Field<U> {
        match self {
            Field::Absent => Field::Absent,
            Field::Create(v) => Field::Create(f(v)),
            Field::Late(at, v) => Field::Late(at, f(v)),
            Field::Twice(a, at, b) => Field::Twice(f(a), at, f(b)),
        }
    }
}

fn build_chunk(g: &ChunkGene, request: Window, per_stage: &[(usize, u64, u64); 4]) -> Chunk {
    let w = sub(request, g.pos);
    let id = g.stage_id as usize;
    let (rate, first_output, inter_output) = per_stage[id];
    let [batch_id, batch_size, tokens_in, tokens_out, frames, images] = g.counts.clone();
    let [name, sample_rate, resolution, ttfo, inter] = &g.constants;
    let [gen_us, pp_us] = g.times.clone();
    let queues: Vec<Window> = g.queues.iter().map(|p| sub(w, *p)).collect();
    let postprocesses: Vec<Window> = g.postprocesses.iter().map(|p| sub(w, *p)).collect();
    let foreign_child = g.foreign_child.map(|p| sub(w, p));
    let outputs = g
        .outputs
        .iter()
        .map(|&(host, index, pos, units)| {
            let contextual = index >= 128;
            let index = index % 128;
            let host = match host {
                3 if !queues.is_empty() => Host::Queue(usize::from(index) % queues.len()),
                4 if !postprocesses.is_empty() => {
                    Host::Post(usize::from(index) % postprocesses.len())
                }
                5 if foreign_child.is_some() => Host::Foreign,
                _ => Host::Stage,
            };
            let inside = match host {
                Host::Stage => w,
                Host::Queue(q) => queues[q],
                Host::Post(p) => postprocesses[p],
                Host::Foreign => foreign_child.unwrap_or(w),
            };
            Output {
                at: at(inside, pos),
                units,
                host,
                contextual,
            }
        })
        .collect();
    Chunk {
        stage_id: g.stage_id,
        stage_id_late: g.id_late.map(|a| at(w, a)),
        window: w,
        via_foreign: g.via_foreign,
        contextual: g.contextual,
        stage_name: name.place_as(w, STAGE_NAMES[id], "unnamed"),
        batch_id: batch_id.place(w),
        batch_size: batch_size.place(w),
        num_tokens_in: tokens_in.place(w),
        num_tokens_out: tokens_out.place(w),
        audio_generated_frames: frames.place(w),
        audio_sample_rate: sample_rate.place_as(w, SAMPLE_RATES[rate], 1),
        image_num: images.place(w),
        resolution: resolution.place_as(w, RESOLUTIONS[id], "0x0"),
        gen_us: gen_us.place(w),
        postprocess_us: pp_us.place(w),
        first_output_us: ttfo.place_as(w, first_output, 999_999),
        inter_output_us: inter.place_as(w, inter_output, 999_999),
        queues,
        postprocesses,
        foreign_child,
        outputs,
        decoys: g.decoys.iter().map(|a| at(w, *a)).collect(),
    }
}

fn build_transfer(g: &TransferGene, request: Window) -> Transfer {
    let w = sub(request, g.pos);
    let (from, to) = match g.edge {
        (a, b) if a == b => (a, a + 1),
        edge => edge,
    };
    let [tx_us, rx_us, in_flight_us] = g.times.clone();
    Transfer {
        from_stage: from,
        to_stage: to,
        edge_late: g.edge_late.map(|a| at(w, a)),
        window: w,
        via_foreign: g.via_foreign,
        contextual: g.contextual,
        size_bytes: g.size.clone().place(w),
        tx_us: tx_us.place(w),
        rx_us: rx_us.place(w),
        in_flight_us: in_flight_us.place(w),
        tx: g
            .tx
            .iter()
            .enumerate()
            .map(|(k, p)| sub(slot(g.layout, w, k, false), *p))
            .collect(),
        rx: g
            .rx
            .iter()
            .enumerate()
            .map(|(k, p)| sub(slot(g.layout, w, k, true), *p))
            .collect(),
    }
}

/// Where the `k`-th tx (or rx) of a transfer over `w` may lie, by the transfer's layout.
fn slot(layout: u8, (s, e): Window, k: usize, rx: bool) -> Window {
    let len = e - s;
    match layout {
        2 if rx => (s + len / 2, e),
        2 => (s, s + len / 2),
        3 => {
            // Eight slots: tx k in slot 2k, rx k in slot 2k + 1.
            let i = (2 * k + usize::from(rx)).min(7) as u64;
            (s + len * i / 8, s + len * (i + 1) / 8)
        }
        _ => (s, e),
    }
}
