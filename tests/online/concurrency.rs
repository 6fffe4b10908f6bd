//! Many engine threads, a reader reading all along: exact counts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use omni_metrics::instrument::Request;
use omni_metrics::stats::Quantity;

use crate::support::Harness;

const THREADS: u64 = 4;
const PER_THREAD: u64 = 1_000;

/// 4 threads x 1,000 online requests, each moving the shared clock on 1 ms, through a 1 s
/// window (buckets of 167 ms: every thread hands buckets over many times), while another
/// thread reads the summaries all along.
#[test]
fn four_threads_of_a_thousand_online_requests_count_exactly() {
    let h = Harness::with(|b| b.with_summary_window(Duration::from_secs(1)));
    let done = AtomicBool::new(false);
    let reads = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut reads = 0u64;
            let mut last = 0;
            while !done.load(Ordering::Acquire) {
                let s = h.handle().cumulative_summary();
                assert!(s.e2e_requests >= last, "the count went back");
                last = s.e2e_requests;
                let _ = h.handle().window_summary();
                reads += 1;
            }
            reads
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let h = &h;
                scope.spawn(move || {
                    h.run(|| {
                        for i in 0..PER_THREAD {
                            let request = Request::start(&format!("t{t}-r{i}"));
                            let stage = request.stage(0);
                            stage.tokens_in(i % 10).tokens_out(1);
                            h.clock().advance_ms(1.0);
                            drop(stage);
                            request.finish();
                        }
                    })
                })
            })
            .collect();
        for w in workers {
            w.join().expect("a worker panicked");
        }
        done.store(true, Ordering::Release);
        reader.join().expect("the reader panicked")
    });
    assert!(reads > 0);
    let total = THREADS * PER_THREAD;
    let s = h.handle().cumulative_summary();
    assert_eq!(s.e2e_requests, total);
    let tokens = THREADS * (0..PER_THREAD).map(|i| i % 10 + 1).sum::<u64>();
    assert_eq!(s.e2e_total_tokens, tokens);
    assert_eq!(
        s.distributions
            .get(Quantity::RequestLatency)
            .map(|l| l.count),
        Some(total)
    );
    assert_eq!(
        s.distributions
            .get(Quantity::StageGenTime(0))
            .map(|l| l.count),
        Some(total)
    );
    assert_eq!(h.handle().totals().requests_ok, total);
    // The clock moved 4 s: the window (1 s and a bucket at most) holds the last ones only.
    let w = h.handle().window_summary();
    assert!(
        w.e2e_requests > 0 && w.e2e_requests < total,
        "{}",
        w.e2e_requests
    );
}
