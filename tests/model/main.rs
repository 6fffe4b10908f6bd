//! Model-based test of the layer against SPEC.md: random schedules of `omni.*` spans go
//! through the real layer (scoped dispatcher, manual clock, capture sink, console off) and
//! through a deliberately plain reference model of SPEC.md written here (`reference`,
//! sharing no code with the crate's `stats`, `accumulate` or layer modules); every field of
//! every request record (its stages and edges included) and of every summary (stage wall
//! times and distributions included) must agree.
//!
//! A schedule (`genes`, `schedule`) has online requests (each its own scope) and requests
//! under `omni.run`s, with
//! - stages chunked: one `stage_id` as several `omni.stage` spans, in sequence and
//!   overlapping, in the same or different batches (continuous batching);
//! - `omni.queue` and `omni.postprocess` children overlapping each other;
//! - explicit times (`stage_gen_time_ms`, `postprocess_time_ms`, `tx_time_ms`,
//!   `rx_decode_time_ms`, `in_flight_time_ms`, `time_to_first_output_ms`,
//!   `inter_output_ms`);
//! - `omni.transfer`s with several `omni.transfer.tx` / `omni.transfer.rx_decode` children,
//!   pipelined (tx, tx, rx, rx) and interleaved, several transfers per edge;
//! - `omni.output` events (with and without `units`) in stages, in their queue and
//!   postprocess children and in an engine span inside a stage, and decoy events;
//! - `batch_id`/`batch_size`, token counts, `size_bytes`, audio frames and sample rates,
//!   `image_num` and `resolution`, statuses `ok`/`error`/`aborted` and `status_message`;
//! - every field given at creation, recorded later with `Span::record`, or both (the last
//!   value wins). A field recorded later is declared at creation with no value: the
//!   callsite declares it, with `None` (an absent `Option` records nothing, exactly as
//!   `tracing::field::Empty`);
//!   Ids too (`run_id`, `request_id`, `stage_id`, `from_stage`/`to_stage`), sometimes over
//!   a decoy given at creation; late counts and whole ms sometimes as integers;
//! - spans opened with an explicit `parent:` or inside their parent (`in_scope`, a
//!   contextual parent), outputs likewise;
//! - engine (non-omni) spans interleaved: roots, children of runs, requests and stages, and
//!   between the convention's spans (a run, a request, a stage or a transfer opened under
//!   one).
//!
//! Everything runs on one thread in time order; every instant is a whole microsecond, so
//! the model computes exactly and floats are compared with a relative tolerance of 1e-9.
//! Distributions: counts and means exact up to float rounding, max exact, percentiles by
//! nearest rank within the histogram's 0.1%.
//!
//! A failure lists every mismatching field by path, then the schedule step by step.
//!
//! Run: `cargo test --test model` (256 cases, a few seconds in debug; `PROPTEST_CASES=n`
//! sets the count). A longer search: `PROPTEST_CASES=20000 cargo test --release --test
//! model` (about 15 s; 300,000 cases take about 5 min). `PROPTEST_RNG_SEED=n` makes a run
//! repeatable. No regression file is written: a failure prints the shrunk schedule step by
//! step, to turn into an `edge_cases` test.
//!
//! `edge_cases` pins SPEC.md's "Edge cases, decided" one by one, with literal values;
//! `scale` goes past the layer's fixed-size paths (thousands of open spans, thousands of
//! outputs); `coverage` checks that the generator reaches every situation above.

mod compare;
mod coverage;
mod drive;
mod edge_cases;
mod genes;
mod reference;
mod scale;
mod schedule;

use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::drive::Outcome;
use crate::schedule::Schedule;

/// Runs `schedule` through the layer and the model: the layer's outcome, or every
/// mismatch followed by the schedule's steps.
pub(crate) fn check(schedule: &Schedule) -> Result<Outcome, String> {
    let outcome = drive::drive(schedule);
    let expected = reference::expect(schedule);
    let mismatches = compare::compare(&outcome, &expected);
    if mismatches.is_empty() {
        return Ok(outcome);
    }
    Err(format!(
        "{} mismatching field(s), the crate against the model of SPEC.md:\n  {}\n\n\
         the schedule, step by step (time, then what):\n{}",
        mismatches.len(),
        mismatches.join("\n  "),
        outcome.log
    ))
}

/// [`check`], panicking with its report.
#[track_caller]
pub(crate) fn assert_model(schedule: &Schedule) -> Outcome {
    check(schedule).unwrap_or_else(|report| panic!("{report}"))
}

/// 256 cases unless `PROPTEST_CASES` says otherwise; no regression files.
fn config() -> Config {
    Config {
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_layer_agrees_with_the_model_of_the_spec(genes in genes::schedule()) {
        let schedule = genes.build();
        if let Err(report) = check(&schedule) {
            return Err(TestCaseError::fail(report));
        }
    }
}
