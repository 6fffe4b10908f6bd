//! SPEC.md's "Edge cases, decided", one test each: a small hand-written schedule goes
//! through the layer and the model (every field must agree), and the figures the rule is
//! about are pinned as literals.

use omni_metrics::stats::Quantity;
use omni_metrics::stats::{RequestE2EStats, RequestStatus, StageRequestStats};

use crate::assert_model;
use crate::drive::Outcome;
use crate::schedule::{Chunk, Field, Request, Run, Schedule, Transfer, ms, win};

fn online(requests: Vec<Request>) -> Schedule {
    Schedule {
        online: requests,
        ..Schedule::default()
    }
}

fn the_request(o: &Outcome) -> &RequestE2EStats {
    match o.requests.as_slice() {
        [r] => r,
        other => panic!("one request expected: {other:?}"),
    }
}

fn stage(r: &RequestE2EStats, id: u64) -> &StageRequestStats {
    r.stage(id).unwrap_or_else(|| panic!("stage {id} in {r:?}"))
}

#[track_caller]
fn approx(got: f64, want: f64) {
    assert!((got - want).abs() < 1e-9, "{got} != {want}");
}

#[track_caller]
fn approx_some(got: Option<f64>, want: f64) {
    match got {
        Some(v) => approx(v, want),
        None => panic!("None != {want}"),
    }
}

/// The example: stage 0 as span A [0, 10] ms with outputs at 1 and 5 ms and span B
/// [2, 12] ms with outputs at 3 and 7 ms. In time order the outputs are 1, 3, 5, 7: three
/// gaps of 2 ms, mean (7 - 1) / 3 = 2; the first output is 1 ms after the earliest start.
#[test]
fn inter_output_is_over_all_outputs_of_overlapping_chunks_in_time_order() {
    let mut r = Request::new("r-1", 0.0, 20.0);
    r.chunks = vec![
        Chunk::new(0, 0.0, 10.0).outputs(&[1.0, 5.0]),
        Chunk::new(0, 2.0, 12.0).outputs(&[3.0, 7.0]),
    ];
    let o = assert_model(&online(vec![r]));
    let s = stage(the_request(&o), 0);
    approx_some(s.inter_output_ms, 2.0);
    assert_eq!(s.inter_output_gaps_ms, [2.0, 2.0, 2.0]);
    assert_eq!(s.output_chunks, 4);
    approx_some(s.time_to_first_output_ms, 1.0);
}

/// Sequential chunks: the gap between the chunks counts too ((9 - 1) / 3).
#[test]
fn inter_output_is_over_all_outputs_of_sequential_chunks() {
    let mut r = Request::new("r-1", 0.0, 20.0);
    r.chunks = vec![
        Chunk::new(0, 6.0, 10.0).outputs(&[7.0, 9.0]),
        Chunk::new(0, 0.0, 4.0).outputs(&[1.0, 3.0]),
    ];
    let o = assert_model(&online(vec![r]));
    let s = stage(the_request(&o), 0);
    approx_some(s.inter_output_ms, 8.0 / 3.0);
    approx_some(s.time_to_first_output_ms, 1.0);
}

/// Two chunks of stage 0 in batches 7 and 8 (continuous batching) are valid; batch id and
/// size are those of the earliest-starting chunk that gives them, though it closes last;
/// a chunk that gives none does not count.
#[test]
fn chunks_in_different_batches_are_valid_and_the_earliest_start_gives_the_batch() {
    let mut r = Request::new("r-1", 0.0, 20.0);
    let mut unbatched = Chunk::new(0, 0.0, 1.0);
    unbatched.num_tokens_in = Field::Create(1);
    let mut first = Chunk::new(0, 1.0, 15.0);
    first.batch_id = Field::Create(7);
    first.batch_size = Field::Late(ms(3.0), 2);
    let mut second = Chunk::new(0, 2.0, 10.0);
    second.batch_id = Field::Create(8);
    second.batch_size = Field::Create(5);
    r.chunks = vec![unbatched, first, second];
    let o = assert_model(&online(vec![r]));
    let r = the_request(&o);
    assert_eq!(r.invalid_spans, 0);
    assert_eq!(o.summaries[0].invalid_spans, 0);
    let s = stage(r, 0);
    assert_eq!((s.batch_id, s.batch_size, s.spans), (7, 2, 3));
}

/// A batch id and size of 0 given by the earliest-starting chunk are given values: a
/// later-starting chunk's do not replace them, whichever closes first.
#[test]
fn a_batch_of_zero_is_a_given_value() {
    for (first_end, second_end) in [(5.0, 10.0), (15.0, 10.0)] {
        let mut r = Request::new("r-1", 0.0, 20.0);
        let mut first = Chunk::new(0, 0.0, first_end);
        first.batch_id = Field::Create(0);
        first.batch_size = Field::Create(0);
        let mut second = Chunk::new(0, 2.0, second_end);
        second.batch_id = Field::Create(3);
        second.batch_size = Field::Create(5);
        r.chunks = vec![first, second];
        let o = assert_model(&online(vec![r]));
        let s = stage(the_request(&o), 0);
        assert_eq!((s.batch_id, s.batch_size, s.batch_recorded), (0, 0, true));
    }
}

/// Gen time subtracts the time queue and postprocess children cover, once: stage [0, 10],
/// queue [2, 6], postprocess [4, 8]: gen 10 - 6 = 4 (queue 4 and postprocess 4 as summed).
#[test]
fn gen_time_subtracts_the_union_of_queue_and_postprocess_children() {
    let mut r = Request::new("r-1", 0.0, 10.0);
    let mut c = Chunk::new(0, 0.0, 10.0);
    c.queues = vec![win(2.0, 6.0)];
    c.postprocesses = vec![win(4.0, 8.0)];
    r.chunks = vec![c];
    let o = assert_model(&online(vec![r]));
    let s = stage(the_request(&o), 0);
    approx(s.stage_gen_time_ms, 4.0);
    approx(s.queue_time_ms, 4.0);
    approx(s.postprocess_time_ms, 4.0);
}

/// An explicit `postprocess_time_ms` beside postprocess children: the children are not
/// measured; gen = duration - queue coverage - the explicit value = 10 - 2 - 1.5.
#[test]
fn explicit_postprocess_time_replaces_postprocess_children() {
    let mut r = Request::new("r-1", 0.0, 10.0);
    let mut c = Chunk::new(0, 0.0, 10.0);
    c.queues = vec![win(1.0, 3.0)];
    c.postprocesses = vec![win(5.0, 9.0)];
    c.postprocess_us = Field::Create(ms(1.5));
    r.chunks = vec![c];
    let o = assert_model(&online(vec![r]));
    let s = stage(the_request(&o), 0);
    approx(s.stage_gen_time_ms, 6.5);
    approx(s.postprocess_time_ms, 1.5);
    approx(s.queue_time_ms, 2.0);
}

/// Gen time never goes below 0 (an explicit postprocess time longer than the stage).
#[test]
fn gen_time_is_clamped_at_zero() {
    let mut r = Request::new("r-1", 0.0, 10.0);
    let mut c = Chunk::new(0, 0.0, 2.0);
    c.postprocess_us = Field::Late(ms(1.0), ms(5.0));
    r.chunks = vec![c];
    let o = assert_model(&online(vec![r]));
    approx(stage(the_request(&o), 0).stage_gen_time_ms, 0.0);
}

/// No `stage_id` 0: no input tokens; the total is the output tokens.
#[test]
fn a_request_without_stage_zero_adds_no_input_tokens() {
    let mut r = Request::new("r-1", 0.0, 10.0);
    let mut one = Chunk::new(1, 0.0, 5.0);
    one.num_tokens_in = Field::Create(100);
    one.num_tokens_out = Field::Create(5);
    let mut two = Chunk::new(2, 5.0, 10.0);
    two.num_tokens_in = Field::Create(7);
    two.num_tokens_out = Field::Create(3);
    r.chunks = vec![two, one];
    let o = assert_model(&online(vec![r]));
    assert_eq!(the_request(&o).e2e_total_tokens, 8);
}

/// The last stage is the highest id (its first output is the request's); audio is that
/// of the highest-id stage with audio; time to first audio is the lowest-id stage with a
/// sample rate; both from the request's start.
#[test]
fn last_stage_audio_stage_and_first_audio_are_by_stage_id() {
    let mut r = Request::new("r-1", 0.0, 40.0);
    let mut talker = Chunk::new(1, 2.0, 20.0).outputs(&[6.0, 8.0]);
    talker.audio_sample_rate = Field::Create(16_000);
    talker.audio_generated_frames = Field::Create(16_000);
    let mut code2wav = Chunk::new(2, 10.0, 30.0).outputs(&[12.0]);
    code2wav.audio_sample_rate = Field::Create(24_000);
    code2wav.audio_generated_frames = Field::Late(ms(25.0), 48_000);
    r.chunks = vec![code2wav, Chunk::new(0, 0.0, 5.0).outputs(&[1.0]), talker];
    let o = assert_model(&online(vec![r]));
    let r = the_request(&o);
    approx_some(r.time_to_first_output_ms, 12.0);
    approx_some(r.time_to_first_audio_ms, 6.0);
    approx_some(r.audio_duration_ms, 2_000.0);
    approx_some(r.audio_e2e_rtf, 40.0 / 2_000.0);
    approx_some(stage(r, 2).audio_rtf, 20.0 / 2_000.0);
}

/// The last stage without an output: the request has no time to first output.
#[test]
fn a_last_stage_without_outputs_gives_no_request_first_output() {
    let mut r = Request::new("r-1", 0.0, 40.0);
    r.chunks = vec![
        Chunk::new(0, 0.0, 5.0).outputs(&[1.0]),
        Chunk::new(3, 5.0, 9.0),
    ];
    let o = assert_model(&online(vec![r]));
    assert_eq!(the_request(&o).time_to_first_output_ms, None);
}

/// Explicit `time_to_first_output_ms` and `inter_output_ms` win over the events; the
/// request's first output is the stage's start offset plus the explicit value.
#[test]
fn explicit_output_times_win() {
    let mut r = Request::new("r-1", 0.0, 20.0);
    let mut c = Chunk::new(1, 4.0, 10.0).outputs(&[5.0, 6.0, 9.0]);
    c.first_output_us = Field::Create(ms(3.0));
    c.inter_output_us = Field::Twice(ms(99.0), ms(5.0), ms(0.5));
    r.chunks = vec![c];
    let o = assert_model(&online(vec![r]));
    let r = the_request(&o);
    let s = stage(r, 1);
    approx_some(s.time_to_first_output_ms, 3.0);
    approx_some(s.inter_output_ms, 0.5);
    approx_some(r.time_to_first_output_ms, 7.0);
}

fn transfer_with(tx: &[(f64, f64)], rx: &[(f64, f64)]) -> Schedule {
    let mut r = Request::new("r-1", 0.0, 20.0);
    let mut t = Transfer::new(0, 1, 0.0, 20.0);
    t.tx = tx.iter().map(|&(a, b)| win(a, b)).collect();
    t.rx = rx.iter().map(|&(a, b)| win(a, b)).collect();
    r.transfers = vec![t];
    online(vec![r])
}

fn in_flight(schedule: &Schedule) -> f64 {
    let o = assert_model(schedule);
    the_request(&o).transfers[0].in_flight_time_ms
}

/// Several tx/rx pairs in one transfer: the k-th rx by start pairs with the k-th tx by end,
/// pipelined or interleaved; a gap is never negative; a tx never received has no gap.
#[test]
fn tx_and_rx_pair_in_order_and_gaps_are_clamped() {
    // Pipelined: tx, tx, rx, rx.
    let pipelined = transfer_with(&[(0.0, 1.0), (1.0, 2.0)], &[(2.0, 3.0), (3.0, 4.0)]);
    approx(in_flight(&pipelined), 2.0);
    // Interleaved: tx, rx, tx, rx.
    let interleaved = transfer_with(&[(0.0, 1.0), (4.0, 5.0)], &[(2.0, 3.0), (6.0, 7.0)]);
    approx(in_flight(&interleaved), 2.0);
    // The receiver waits before the sender is done: no gap.
    approx(in_flight(&transfer_with(&[(1.0, 2.0)], &[(0.0, 5.0)])), 0.0);
    // A tx never received: the one rx pairs with the first tx by end.
    let unreceived = transfer_with(&[(2.0, 3.0), (0.0, 1.0)], &[(4.0, 5.0)]);
    approx(in_flight(&unreceived), 3.0);
    // Several transfers on one edge: summed, each measured on its own.
    let mut twice = transfer_with(&[(0.0, 1.0)], &[(3.0, 4.0)]);
    let mut second = Transfer::new(0, 1, 10.0, 20.0);
    second.tx = vec![win(10.0, 11.0)];
    second.rx = vec![win(11.5, 12.0)];
    second.size_bytes = Field::Create(2048);
    twice.online[0].transfers.push(second);
    let o = assert_model(&twice);
    let e = &the_request(&o).transfers[0];
    approx(e.in_flight_time_ms, 2.5);
    approx(e.tx_time_ms, 2.0);
    approx(e.rx_decode_time_ms, 1.5);
    approx(e.size_kbytes, 2.0);
    approx(the_request(&o).transfers_total_time_ms, 6.0);
}

/// A scope with no completed request: wall time and averages 0, never a division by zero.
#[test]
fn a_scope_without_completed_requests_has_zero_wall_and_averages() {
    let mut failed = Request::new("r-1", 1.0, 5.0);
    failed.status = Field::Late(ms(4.0), "error");
    let mut aborted = Request::new("r-2", 0.0, 3.0);
    aborted.status = Field::Create("aborted");
    aborted.chunks = vec![Chunk::new(0, 0.0, 2.0)];
    let schedule = Schedule {
        runs: vec![
            Run::new("batch-0", 0.0, 10.0, vec![failed]),
            Run::new("batch-1", 0.0, 10.0, Vec::new()),
        ],
        online: vec![aborted],
        ..Schedule::default()
    };
    let o = assert_model(&schedule);
    assert_eq!(o.summaries.len(), 3);
    for s in &o.summaries {
        assert_eq!(s.e2e_requests, 0, "{s:?}");
        for v in [
            s.e2e_wall_time_ms,
            s.e2e_avg_time_per_request_ms,
            s.e2e_avg_tokens_per_s,
        ] {
            assert_eq!(v, 0.0, "{s:?}");
        }
    }
}

/// A field recorded twice keeps its last value (a status too).
#[test]
fn a_field_recorded_twice_keeps_its_last_value() {
    let mut r = Request::new("r-1", 0.0, 10.0);
    r.status = Field::Twice("error", ms(9.0), "ok");
    let mut c = Chunk::new(0, 0.0, 5.0);
    c.num_tokens_out = Field::Twice(5, ms(2.0), 9);
    c.batch_id = Field::Twice(1, ms(5.0), 4);
    r.chunks = vec![c];
    let o = assert_model(&online(vec![r]));
    let r = the_request(&o);
    assert_eq!(r.status, RequestStatus::Ok);
    assert_eq!((stage(r, 0).num_tokens_out, stage(r, 0).batch_id), (9, 4));
    assert_eq!(o.summaries[0].e2e_requests, 1);
}

/// Offline scope: the run's start to the last completion; per-stage walls from the
/// earliest start to the latest end of the ok requests' stage spans.
#[test]
fn a_run_is_one_scope_from_its_start() {
    let mut a = Request::new("r-1", 2.0, 10.0);
    a.chunks = vec![Chunk::new(0, 3.0, 6.0)];
    let mut b = Request::new("r-2", 4.0, 14.0);
    b.chunks = vec![Chunk::new(0, 5.0, 9.0), Chunk::new(1, 9.0, 13.0)];
    let mut c = Request::new("r-3", 1.0, 30.0);
    c.status = Field::Late(ms(20.0), "aborted");
    c.chunks = vec![Chunk::new(1, 1.0, 29.0)];
    let schedule = Schedule {
        runs: vec![Run::new("batch-0", 0.0, 31.0, vec![a, b, c])],
        ..Schedule::default()
    };
    let o = assert_model(&schedule);
    let s = &o.summaries[0];
    assert_eq!((s.e2e_requests, s.e2e_requests_aborted), (2, 1));
    approx(s.e2e_wall_time_ms, 14.0);
    approx(s.e2e_avg_time_per_request_ms, 7.0);
    approx_some(s.stage_wall_time_ms(0), 6.0);
    approx_some(s.stage_wall_time_ms(1), 4.0);
    let latency = s
        .distributions
        .get(Quantity::RequestLatency)
        .unwrap_or_default();
    assert_eq!(latency.count, 2);
    approx(latency.mean_ms, 9.0);
}

/// The pairing rule holds however many tx run ahead of their rx: 65 tx of 0.05 ms, one
/// every 0.1 ms from 0, then 65 rx from 10 ms on the same beat: every gap is 9.95 ms,
/// 646.75 ms in all.
/// (The crate once kept 64 pending tx ends and dropped the oldest, so each rx paired with
/// the tx after its own: 630.4 ms.)
#[test]
fn tx_and_rx_pair_in_order_beyond_64_pending() {
    let beat = |k: u32, from: f64| (from + f64::from(k) * 0.1, from + f64::from(k) * 0.1 + 0.05);
    let tx: Vec<(f64, f64)> = (0..65).map(|k| beat(k, 0.0)).collect();
    let rx: Vec<(f64, f64)> = (0..65).map(|k| beat(k, 10.0)).collect();
    approx(in_flight(&transfer_with(&tx, &rx)), 65.0 * 9.95);
}

/// The typed API records `aborted` by itself for a request dropped unfinished: counted
/// apart, with the stages it finished; the same request written as raw spans with `status`
/// recorded at its close gives the same record.
#[test]
fn a_typed_request_dropped_unfinished_is_aborted() {
    use omni_metrics::instrument::Request as Typed;
    let o = crate::drive::with_layer(|clock| {
        let request = Typed::start("r-1");
        clock.set_ns(1_000_000);
        let stage = request.stage(0);
        stage.tokens_in(4).tokens_out(2);
        clock.set_ns(3_000_000);
        drop(stage);
        clock.set_ns(5_000_000);
        drop(request);
    });
    let r = the_request(&o);
    assert_eq!(r.status, RequestStatus::Aborted);
    assert_eq!(stage(r, 0).num_tokens_out, 2);
    let s = &o.summaries[0];
    assert_eq!((s.e2e_requests, s.e2e_requests_aborted), (0, 1));
    assert_eq!(s.e2e_wall_time_ms, 0.0);

    let mut raw = Request::new("r-1", 0.0, 5.0);
    raw.status = Field::Late(ms(5.0), "aborted");
    let mut c = Chunk::new(0, 1.0, 3.0);
    c.num_tokens_in = Field::Late(ms(1.0), 4);
    c.num_tokens_out = Field::Late(ms(1.0), 2);
    raw.chunks = vec![c];
    let raw = assert_model(&online(vec![raw]));
    assert_eq!(raw.requests, o.requests);
    assert_eq!(raw.summaries, o.summaries);
}
