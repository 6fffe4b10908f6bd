//! What the metrics layer costs an engine, per span, against the Registry alone.
//!
//! Workload: one request with 3 stages (each with a postprocess child) and 2 transfers (each
//! with tx and rx_decode children): 13 spans, with the fields an engine records.
//!
//! Run: `cargo bench --bench layer_overhead` (add `-- --quick` for a short run).
//!
//! Targets (issue #2), as ratios within one run:
//! - added cost per span <= 0.8x the Registry's own per-span cost;
//! - <= 1 heap allocation per span added by the layer;
//! - two threads give >= 1.8x the one-thread throughput.
//!
//! Results are in the README's "Performance" section, with the machine they came from.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::Instant;

use omni_metrics::OmniMetricsLayer;
use tracing::{Dispatch, info_span};
use tracing_subscriber::prelude::*;

/// Counts heap allocations, so the layer's allocations per request can be measured.
///
/// The count is per thread: a shared atomic bumped on every allocation would make the
/// two-thread runs contend on the bench's own counter, not on anything of the layer's.
struct Counting;

thread_local! {
    static ALLOCS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count_alloc() {
    // `try_with`: the allocator may run while this thread's locals are being destroyed.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

fn allocs_so_far() -> u64 {
    ALLOCS.try_with(std::cell::Cell::get).unwrap_or(0)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_alloc();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SPANS_PER_REQUEST: u64 = 13;

/// One request of the workload.
fn request(i: u64) {
    let req = info_span!("omni.request", request_id = "bench-request");
    for stage in 0..3_u64 {
        let s = info_span!(parent: &req, "omni.stage", stage_id = stage, stage_name = "stage",
            batch_id = i, batch_size = 1_u64, num_tokens_in = 100_u64, num_tokens_out = 10_u64);
        drop(info_span!(parent: &s, "omni.postprocess"));
        drop(s);
        if stage < 2 {
            let t = info_span!(parent: &req, "omni.transfer", from_stage = stage,
                to_stage = stage + 1, size_bytes = 4096_u64);
            drop(info_span!(parent: &t, "omni.transfer.tx"));
            drop(info_span!(parent: &t, "omni.transfer.rx_decode"));
            drop(t);
        }
    }
    drop(black_box(req));
}

fn registry_only() -> Dispatch {
    Dispatch::new(tracing_subscriber::registry())
}

fn with_layer() -> Dispatch {
    let layer = OmniMetricsLayer::builder()
        .with_console(false)
        .build()
        .expect("no JSON-lines file in the bench");
    Dispatch::new(tracing_subscriber::registry().with(layer))
}

/// The median over `rounds` of the wall time for `iters` requests on each of `threads`
/// threads, in ns per span of one thread, under the global subscriber. The threads live
/// across rounds (a new thread would pay for new Registry slab pages, not the layer's cost).
fn ns_per_span(threads: usize, iters: u64, rounds: usize) -> f64 {
    let barrier = std::sync::Barrier::new(threads + 1);
    let mut samples = Vec::with_capacity(rounds);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let barrier = &barrier;
            scope.spawn(move || {
                for i in 0..iters {
                    request(i); // warm up: slab pages, allocator caches
                }
                for _ in 0..rounds {
                    barrier.wait();
                    for i in 0..iters {
                        request(i);
                    }
                    barrier.wait();
                }
            });
        }
        for _ in 0..rounds {
            barrier.wait();
            let start = Instant::now();
            barrier.wait();
            samples.push(start.elapsed());
        }
    });
    let mut ns: Vec<f64> = samples
        .iter()
        .map(|t| t.as_nanos() as f64 / (iters * SPANS_PER_REQUEST) as f64)
        .collect();
    ns.sort_by(f64::total_cmp);
    ns[ns.len() / 2]
}

fn allocs_per_request(iters: u64) -> f64 {
    for i in 0..iters {
        request(i);
    }
    let before = allocs_so_far();
    for i in 0..iters {
        request(i);
    }
    (allocs_so_far() - before) as f64 / iters as f64
}

/// One case in this process, under a global subscriber as engines install it (a scoped
/// dispatcher would add an `Arc` clone per span that both threads contend on).
/// Prints `ns_per_span allocs_per_request`.
fn run_case(case: &str, iters: u64, rounds: usize) {
    let (layer, threads) = match case {
        "registry1" => (false, 1),
        "registry2" => (false, 2),
        "layer1" => (true, 1),
        "layer2" => (true, 2),
        _ => {
            eprintln!("unknown case {case}: use registry1, registry2, layer1 or layer2");
            std::process::exit(2);
        }
    };
    let dispatch = if layer { with_layer() } else { registry_only() };
    if tracing::dispatcher::set_global_default(dispatch).is_err() {
        eprintln!("a global subscriber is already set");
        std::process::exit(1);
    }
    let ns = ns_per_span(threads, iters, rounds);
    let allocs = if threads == 1 {
        allocs_per_request(iters / 10)
    } else {
        0.0
    };
    println!("{ns} {allocs}");
}

/// Runs one case in a child process (each needs its own global subscriber).
fn child(case: &str, quick: bool) -> (f64, f64) {
    let exe = std::env::current_exe().expect("the bench binary knows its path");
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["--case", case]);
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd.output().expect("the bench can run itself");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text
        .split_whitespace()
        .map(|v| v.parse::<f64>().unwrap_or(f64::NAN));
    (it.next().unwrap_or(f64::NAN), it.next().unwrap_or(f64::NAN))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let (iters, rounds) = if quick { (20_000, 3) } else { (200_000, 7) };
    if let Some(case) = args
        .iter()
        .position(|a| a == "--case")
        .and_then(|i| args.get(i + 1))
    {
        run_case(case, iters, rounds);
        return;
    }
    // Each case runs in 3 processes, interleaved, and the median is kept: on a shared VM a
    // single process can be 20% off.
    let mut runs: Vec<[(f64, f64); 4]> = Vec::new();
    for _ in 0..3 {
        runs.push(["registry1", "layer1", "registry2", "layer2"].map(|c| child(c, quick)));
    }
    let median = |i: usize| {
        let mut v: Vec<(f64, f64)> = runs.iter().map(|r| r[i]).collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v[v.len() / 2]
    };
    let (reg_1, reg_allocs) = median(0);
    let (lay_1, lay_allocs) = median(1);
    let (reg_2, _) = median(2);
    let (lay_2, _) = median(3);

    let added = lay_1 - reg_1;
    let added_allocs = (lay_allocs - reg_allocs) / SPANS_PER_REQUEST as f64;
    // Two threads each ran `iters` requests in the time measured: throughput ratio is
    // 2 * (one-thread time per span) / (two-thread time per span).
    let scale_reg = 2.0 * reg_1 / reg_2;
    let scale_lay = 2.0 * lay_1 / lay_2;

    println!("workload: 1 request, 3 stages + postprocess, 2 transfers + tx/rx = 13 spans");
    println!(
        "iterations: {iters} requests per thread, median of {rounds} rounds, median of 3 processes, global subscriber"
    );
    println!("ns/span of each process (registry1, layer1, registry2, layer2):");
    for r in &runs {
        println!("  {:.1} {:.1} {:.1} {:.1}", r[0].0, r[1].0, r[2].0, r[3].0);
    }
    println!();
    println!("| measure                                    | value     | target  |");
    println!("|--------------------------------------------|-----------|---------|");
    println!("| Registry alone, ns/span (1 thread)         | {reg_1:9.1} |         |");
    println!("| Registry + layer, ns/span (1 thread)       | {lay_1:9.1} |         |");
    println!("| layer's added ns/span                      | {added:9.1} |         |");
    println!(
        "| added cost / Registry cost                 | {:8.2}x | <= 0.8x |",
        added / reg_1
    );
    println!("| Registry alone, allocations/request        | {reg_allocs:9.2} |         |");
    println!("| Registry + layer, allocations/request      | {lay_allocs:9.2} |         |");
    println!("| layer's added allocations per span         | {added_allocs:9.2} | <= 1    |");
    println!("| Registry alone, 2-thread/1-thread thrput   | {scale_reg:8.2}x |         |");
    println!("| Registry + layer, 2-thread/1-thread thrput | {scale_lay:8.2}x | >= 1.8x |");
}
