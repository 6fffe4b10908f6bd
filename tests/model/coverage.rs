//! The generator itself is checked: over a fixed sample of schedules, every situation the
//! property is meant to explore comes up often enough (a change that made, say, chunks
//! never overlap would otherwise pass unnoticed).

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::genes;
use crate::schedule::{Chunk, Field, Host, Request, Schedule, Transfer, Window};

fn overlap(a: Window, b: Window) -> bool {
    a.0 < b.1 && b.0 < a.1
}

fn late<T: Clone>(f: &Field<T>) -> bool {
    f.late().is_some()
}

fn twice<T>(f: &Field<T>) -> bool {
    matches!(f, Field::Twice(..))
}

/// Pairs of chunks of one stage in a request.
fn chunk_pairs(r: &Request) -> impl Iterator<Item = (&Chunk, &Chunk)> {
    r.chunks.iter().enumerate().flat_map(move |(i, a)| {
        r.chunks[i + 1..]
            .iter()
            .filter(move |b| b.stage_id == a.stage_id)
            .map(move |b| (a, b))
    })
}

/// Two chunks of a stage whose outputs interleave in time.
fn outputs_interleave(a: &Chunk, b: &Chunk) -> bool {
    let span = |c: &Chunk| {
        let times = c.outputs.iter().map(|o| o.at);
        (times.clone().min(), times.max())
    };
    match (span(a), span(b)) {
        ((Some(a0), Some(a1)), (Some(b0), Some(b1))) => a0 < b1 && b0 < a1,
        _ => false,
    }
}

/// tx, tx, rx, rx: two tx end before the first rx starts.
fn pipelined(t: &Transfer) -> bool {
    let first_rx = t.rx.iter().map(|w| w.0).min().unwrap_or(0);
    t.tx.iter().filter(|w| w.1 < first_rx).count() >= 2 && t.rx.len() >= 2
}

/// tx, rx, tx: an rx starts between two tx ends.
fn interleaved(t: &Transfer) -> bool {
    let mut ends: Vec<u64> = t.tx.iter().map(|w| w.1).collect();
    ends.sort_unstable();
    ends.windows(2)
        .any(|p| t.rx.iter().any(|w| p[0] < w.0 && w.0 < p[1]))
}

type Feature = (&'static str, fn(&Schedule) -> bool);

fn requests(s: &Schedule) -> impl Iterator<Item = &Request> {
    s.runs
        .iter()
        .flat_map(|r| r.requests.iter())
        .chain(&s.online)
}

fn chunks(s: &Schedule) -> impl Iterator<Item = &Chunk> {
    requests(s).flat_map(|r| r.chunks.iter())
}

fn transfers(s: &Schedule) -> impl Iterator<Item = &Transfer> {
    requests(s).flat_map(|r| r.transfers.iter())
}

const FEATURES: &[Feature] = &[
    ("a run of two or more requests", |s| {
        s.runs.iter().any(|r| r.requests.len() >= 2)
    }),
    ("a run without requests", |s| {
        s.runs.iter().any(|r| r.requests.is_empty())
    }),
    ("an online request", |s| !s.online.is_empty()),
    ("overlapping chunks of a stage", |s| {
        requests(s).any(|r| chunk_pairs(r).any(|(a, b)| overlap(a.window, b.window)))
    }),
    ("sequential chunks of a stage", |s| {
        requests(s).any(|r| chunk_pairs(r).any(|(a, b)| !overlap(a.window, b.window)))
    }),
    ("outputs of two chunks interleaved in time", |s| {
        requests(s).any(|r| chunk_pairs(r).any(|(a, b)| outputs_interleave(a, b)))
    }),
    ("chunks of a stage in different batches", |s| {
        requests(s).any(|r| {
            chunk_pairs(r).any(|(a, b)| match (a.batch_id.value(), b.batch_id.value()) {
                (Some(x), Some(y)) => x != y,
                _ => false,
            })
        })
    }),
    ("a later-starting chunk closing first, both batched", |s| {
        requests(s).any(|r| {
            chunk_pairs(r).any(|(a, b)| {
                let (first, second) = if a.window.0 < b.window.0 {
                    (a, b)
                } else {
                    (b, a)
                };
                first.window.0 < second.window.0
                    && second.window.1 < first.window.1
                    && first.batch_id.value().is_some()
                    && second.batch_id.value().is_some()
            })
        })
    }),
    ("overlapping queue and postprocess children", |s| {
        chunks(s).any(|c| {
            c.queues
                .iter()
                .any(|q| c.postprocesses.iter().any(|p| overlap(*q, *p)))
        })
    }),
    (
        "an explicit postprocess time beside postprocess children",
        |s| chunks(s).any(|c| c.postprocess_us.value().is_some() && !c.postprocesses.is_empty()),
    ),
    ("an explicit gen time", |s| {
        chunks(s).any(|c| c.gen_us.value().is_some())
    }),
    ("explicit output times", |s| {
        chunks(s).any(|c| c.first_output_us.value().is_some())
            && chunks(s).any(|c| c.inter_output_us.value().is_some())
    }),
    ("explicit transfer times", |s| {
        transfers(s).any(|t| t.tx_us.value().is_some())
            && transfers(s).any(|t| t.rx_us.value().is_some())
            && transfers(s).any(|t| t.in_flight_us.value().is_some())
    }),
    ("pipelined tx, tx, rx, rx", |s| transfers(s).any(pipelined)),
    ("interleaved tx, rx, tx", |s| transfers(s).any(interleaved)),
    ("an rx starting before its tx ends", |s| {
        transfers(s).any(|t| {
            let mut ends: Vec<u64> = t.tx.iter().map(|w| w.1).collect();
            let mut starts: Vec<u64> = t.rx.iter().map(|w| w.0).collect();
            ends.sort_unstable();
            starts.sort_unstable();
            ends.iter().zip(&starts).any(|(e, s)| s < e)
        })
    }),
    ("two transfers on one edge", |s| {
        requests(s).any(|r| {
            r.transfers.iter().enumerate().any(|(i, a)| {
                r.transfers[i + 1..]
                    .iter()
                    .any(|b| (a.from_stage, a.to_stage) == (b.from_stage, b.to_stage))
            })
        })
    }),
    ("outputs in queue, postprocess and engine children", |s| {
        let hosts: Vec<Host> = chunks(s)
            .flat_map(|c| c.outputs.iter().map(|o| o.host))
            .collect();
        hosts.iter().any(|h| matches!(h, Host::Queue(_)))
            && hosts.iter().any(|h| matches!(h, Host::Post(_)))
            && hosts.contains(&Host::Foreign)
    }),
    ("a stage with audio", |s| {
        chunks(s).any(|c| {
            c.audio_generated_frames.value().unwrap_or(0) > 0
                && c.audio_sample_rate.value().is_some()
        })
    }),
    ("an error request", |s| {
        requests(s).any(|r| r.status.value() == Some("error"))
    }),
    ("an aborted request", |s| {
        requests(s).any(|r| r.status.value() == Some("aborted"))
    }),
    ("a status recorded late", |s| {
        requests(s).any(|r| late(&r.status))
    }),
    ("a request id recorded late", |s| {
        requests(s).any(|r| r.id_late.is_some())
    }),
    ("stage fields recorded late and twice", |s| {
        chunks(s).any(|c| late(&c.batch_id)) && chunks(s).any(|c| twice(&c.num_tokens_out))
    }),
    ("engine spans between the convention's", |s| {
        requests(s).any(|r| r.via_foreign)
            && chunks(s).any(|c| c.via_foreign)
            && transfers(s).any(|t| t.via_foreign)
    }),
    ("a zero-length stage span", |s| {
        chunks(s).any(|c| c.window.0 == c.window.1)
    }),
    (
        "spans and outputs opened inside their parent (contextual)",
        |s| {
            requests(s).any(|r| r.contextual)
                && chunks(s).any(|c| c.contextual)
                && transfers(s).any(|t| t.contextual)
                && chunks(s).any(|c| c.outputs.iter().any(|o| o.contextual))
        },
    ),
    ("a run id recorded late", |s| {
        s.runs.iter().any(|r| r.run_id_late.is_some())
    }),
    ("a stage id recorded late", |s| {
        chunks(s).any(|c| c.stage_id_late.is_some())
    }),
    ("an edge recorded late", |s| {
        transfers(s).any(|t| t.edge_late.is_some())
    }),
    ("a run under an engine span", |s| {
        s.runs.iter().any(|r| r.via_foreign)
    }),
];

/// Each feature shows up in at least a tenth of 300 schedules.
#[test]
fn the_generator_explores_every_situation() {
    const SAMPLES: usize = 300;
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = genes::schedule();
    let mut seen = vec![0usize; FEATURES.len()];
    for _ in 0..SAMPLES {
        let schedule = strategy
            .new_tree(&mut runner)
            .expect("a schedule")
            .current()
            .build();
        for (count, (_, has)) in seen.iter_mut().zip(FEATURES) {
            *count += usize::from(has(&schedule));
        }
    }
    let rare: Vec<String> = FEATURES
        .iter()
        .zip(&seen)
        .filter(|(_, n)| **n < SAMPLES / 10)
        .map(|((name, _), n)| format!("{name}: {n} of {SAMPLES}"))
        .collect();
    let all: Vec<String> = FEATURES
        .iter()
        .zip(&seen)
        .map(|((name, _), n)| format!("{name}: {n}"))
        .collect();
    assert!(rare.is_empty(), "too rare: {rare:#?}\nall: {all:#?}");
}
