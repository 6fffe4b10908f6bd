//! What the Prometheus sink costs the engine's thread per finished request: walking the
//! request's observations into a pooled buffer and queueing it (the families are updated on
//! the sink's recorder thread).
//!
//! Workload: one `ok` request of 3 stages (stage 0 with 16 output gaps, stage 2 with audio),
//! 2 edges and a trace id: 48 observations into 33 series that already exist (see
//! `metrics::catalog::observe`), recorded by `PrometheusSink::on_request`. Cases: with a
//! trace id (exemplars), without, and with a thread encoding a scrape in a loop meanwhile
//! (lock contention with the encoder).
//!
//! Run: `cargo bench --bench prometheus_record` (`-- --quick` for a short run). Prints the
//! fastest and the median round's ns per request, and per observation.
//!
//! Measured on 2026-12-01, 2-vCPU AMD EPYC VM shared with other builds (load 3.5), Rust
//! 1.95, `-- --quick` (3 rounds of 20,000 requests; fastest, median in brackets):
//!
//! ```text
//! with trace id (exemplars)       616 ns/request (median    622)   12.8 ns/observation
//! without trace id                590 ns/request (median    596)   12.3 ns/observation
//! while scraped continuously      290 ns/request (median    909)    6.0 ns/observation
//! ```
//!
//! Before the recorder thread (recording on the engine's thread), the same requests cost
//! 4,015 / 2,335 / 8,048 ns: the families' updates, and waits on a scrape's locks.

mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use omni_metrics::PrometheusSink;
use omni_metrics::metrics::observe;
use omni_metrics::report::Sink;
use omni_metrics::stats::RequestE2EStats;
use support::sink_request as request;

/// (Fastest, median) ns of the engine's thread per request over `rounds` rounds of
/// `per_round` requests. The requests are queued in bursts the queue holds (the recorder
/// catches up between bursts, untimed): the figure is what the engine's thread pays.
fn measure(
    sink: &PrometheusSink,
    r: &RequestE2EStats,
    rounds: usize,
    per_round: u32,
) -> (f64, f64) {
    const BURST: u32 = 512;
    for _ in 0..BURST {
        sink.on_request(black_box(r));
    }
    black_box(sink.encode());
    let ns: Vec<f64> = (0..rounds)
        .map(|_| {
            let mut timed = std::time::Duration::ZERO;
            for _ in 0..per_round.div_ceil(BURST) {
                let start = Instant::now();
                for _ in 0..BURST {
                    sink.on_request(black_box(r));
                }
                timed += start.elapsed();
                // The recorder records the burst (untimed); a scrape waits for it.
                black_box(sink.encode());
            }
            timed.as_nanos() as f64 / f64::from(per_round.div_ceil(BURST) * BURST)
        })
        .collect();
    assert_eq!(sink.dropped_requests(), 0, "the bursts fit in the queue");
    let spread = support::Spread::of(ns);
    (spread.min, spread.median)
}

fn main() {
    let quick = support::Args::parse().quick();
    let (rounds, per_round) = if quick { (3, 20_000) } else { (9, 200_000) };
    support::print_machine();
    let traced = request(true);
    let mut observations = 0;
    observe(&traced, |_, _, _| observations += 1);

    let report = |case: &str, (fastest, median): (f64, f64)| {
        println!(
            "{case:<28} {fastest:>6.0} ns/request (median {median:>6.0})  {:>5.1} ns/observation \
             ({observations} observations)",
            fastest / f64::from(observations)
        );
    };

    let sink = PrometheusSink::unserved();
    report(
        "with trace id (exemplars)",
        measure(&sink, &traced, rounds, per_round),
    );
    let sink = PrometheusSink::unserved();
    report(
        "without trace id",
        measure(&sink, &request(false), rounds, per_round),
    );

    // A scrape encoding in a loop on another thread: the engine's thread does not wait on
    // it (only the recorder thread shares the families' locks with the encoder).
    let sink = PrometheusSink::unserved();
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = {
        let (sink, stop) = (sink.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut scrapes = 0u64;
            while !stop.load(Ordering::Relaxed) {
                black_box(sink.encode());
                scrapes += 1;
            }
            scrapes
        })
    };
    let ns = measure(&sink, &traced, rounds, per_round);
    stop.store(true, Ordering::Relaxed);
    let scrapes = scraper.join().unwrap_or_default();
    report("while scraped continuously", ns);
    println!("({scrapes} scrapes encoded meanwhile)");
}
