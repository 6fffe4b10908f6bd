//! Past the layer's fixed-size paths: thousands of spans open at once on one thread, and a
//! stage with more outputs than a record keeps gaps of.

use omni_metrics::stats::MAX_OUTPUT_GAPS;
use omni_metrics::stats::Quantity;

use crate::assert_model;
use crate::drive::drive;
use crate::schedule::{Chunk, Field, Request, Run, Schedule, Transfer, win};

/// Thousands of spans open at once on one thread (a run of 300 requests, each with four
/// overlapping chunks that each wait in a queue and stream outputs), then closed in a
/// different order: every figure still agrees with the model.
#[test]
fn thousands_of_spans_open_at_once() {
    let requests = (0..300)
        .map(|i| {
            let f = f64::from(i);
            let mut r = Request::new(&format!("r-{i}"), f * 0.001, 200.0 + f * 0.1);
            r.chunks = (0..4u32)
                .map(|k| {
                    let k = f64::from(k);
                    let mut c = Chunk::new(k as u64 % 2, 1.0 + k, 150.0 - f * 0.1 + k)
                        .outputs(&[60.0 + k, 70.0 + f * 0.1]);
                    c.queues = vec![win(2.0 + k, 50.0 + f * 0.05)];
                    c.batch_id = Field::Create(i as u64 % 7);
                    c.num_tokens_out = Field::Late(100_000, 3);
                    c
                })
                .collect();
            let mut t = Transfer::new(0, 1, 5.0, 190.0);
            t.tx = vec![win(6.0, 7.0 + f * 0.01)];
            t.rx = vec![win(100.0 - f * 0.1, 120.0)];
            r.transfers = vec![t];
            r
        })
        .collect();
    let schedule = Schedule {
        runs: vec![Run::new("bulk", 0.0, 300.0, requests)],
        ..Schedule::default()
    };
    let outcome = assert_model(&schedule);
    assert_eq!(outcome.requests.len(), 300);
}

/// Two overlapping chunks of 2,600 outputs each, interleaved (5,200 outputs, 5,199 gaps of
/// 0.25 and 0.75 ms): the record keeps at most [`MAX_OUTPUT_GAPS`] gaps (its documented
/// bound), each one of the stage's true gaps, and the distribution counts those; the mean,
/// the count and the first output still cover every output.
#[test]
fn more_outputs_than_gaps_kept() {
    let n = 2_600u32;
    let a: Vec<f64> = (0..n).map(|k| 1.0 + f64::from(k)).collect();
    let b: Vec<f64> = (0..n).map(|k| 1.25 + f64::from(k)).collect();
    let mut r = Request::new("r-1", 0.0, 3_000.0);
    r.chunks = vec![
        Chunk::new(0, 0.0, 2_900.0).outputs(&a),
        Chunk::new(0, 0.5, 2_950.0).outputs(&b),
    ];
    let o = drive(&Schedule {
        online: vec![r],
        ..Schedule::default()
    });
    let s = o.requests[0].stage(0).expect("stage 0");
    assert_eq!(s.output_chunks, 5_200);
    let mean = s.inter_output_ms.expect("a mean");
    let want = (1.25 + f64::from(n - 1) - 1.0) / 5_199.0;
    assert!((mean - want).abs() < 1e-9, "{mean} != {want}");
    assert_eq!(s.time_to_first_output_ms, Some(1.0));
    assert_eq!(s.inter_output_gaps_ms.len(), MAX_OUTPUT_GAPS);
    assert!(
        s.inter_output_gaps_ms
            .iter()
            .all(|g| (g - 0.25).abs() < 1e-9 || (g - 0.75).abs() < 1e-9),
        "every gap kept is a gap of the stage"
    );
    let d = o.summaries[0]
        .distributions
        .get(Quantity::StageInterOutput(0));
    assert_eq!(d.map(|d| d.count), Some(MAX_OUTPUT_GAPS as u64));
}
