//! Memory of one long `omni.run` (issue #9, item 2), and what a burst of open spans leaves
//! behind.
//!
//! Run: a run keeps no per-request data, so its resident set stops growing once its
//! histograms have seen the range of the values. One `omni.run` of 1,000,000 requests (each
//! with a unique `request_id`, 3 stages and 2 transfers with tx/rx children), the metrics
//! layer with the console off. Prints the resident set size (`VmRSS`, Linux) after 10,000
//! requests and at the end, and the growth.
//!
//! Burst: 100,000 spans open at once on one thread, then all closed, twice, after a warm-up
//! (`requests`: 100,000 `omni.request` spans; `mix`: 25,000 requests, each with an open
//! stage holding an open queue child, and an open transfer). Each under a scoped
//! dispatcher, through `registry().with(Identity)` (the baseline: the Registry keeps its
//! slab's pages, about 11 MiB) and through the metrics layer. Prints the live heap (a
//! counting allocator) before, at the peak and after each burst, and `VmRSS` before, at the
//! peak, after the burst and once glibc gave its free memory back (`malloc_trim`). The
//! layer's own figure is its heap retained after the burst less the baseline's.
//!
//! Run: `cargo bench --bench run_memory` (`-- --quick` for a run of 100,000 requests; the
//! bursts are the same; `-- --burst N` for bursts of `N` spans).
//!
//! Run figures: see `docs/performance.md` and `docs/design/performance-history.md`. Burst
//! figures, measured on 2026-12-07 on a 2-vCPU Intel Xeon VM
//! (`cargo bench --bench run_memory -- --quick`), the layer's own heap retained after a
//! burst:
//!
//! | burst of 100,000 spans | before the fix | after |
//! |---|---|---|
//! | `requests` | +5.96 MiB | +0.04 MiB |
//! | `mix` | +6.04 MiB | +0.08 MiB |
//! | `requests`, 240,000 spans (`--burst 240000`) | +24.36 MiB | +0.05 MiB |
//!
//! Before, that was the capacity of the table's hash map for spans beyond its direct slots
//! (49 bytes a span, rounded up to a power of two), kept for good; now it is given back as
//! the spans close. What is left is the online aggregates' histograms, widened to the
//! burst's longer latencies (nothing with `with_aggregates(false)`). At the peak the layer
//! holds 41 MiB more than the baseline for 100,000 requests (a request's accumulator, about
//! 430 bytes), 24 MiB for the mix. `VmRSS` after a burst of requests: 58.7 MiB (layer), 20.2
//! MiB (baseline); 20.7 MiB once trimmed (26.8 MiB before the fix).

mod support;

use omni_metrics::OmniMetricsLayer;
use support::{Args, live_heap, rss_kib};
use tracing::{Dispatch, Span, info_span};
use tracing_subscriber::layer::Identity;
use tracing_subscriber::prelude::*;

/// Counts the live heap bytes: what the layer keeps, free of the allocator's own
/// fragmentation and of what it keeps from the system (which `VmRSS` shows).
#[global_allocator]
static GLOBAL: support::CountLiveBytes = support::CountLiveBytes;

/// One request of the run: a unique `request_id`, 3 stages with a queue child each, 2
/// transfers with their tx and rx_decode children.
fn request(i: u64) {
    let req = info_span!("omni.request", request_id = format!("r-{i}"));
    for stage in 0..3_u64 {
        let s = info_span!(parent: &req, "omni.stage", stage_id = stage, num_tokens_in = 100_u64,
            num_tokens_out = 10_u64);
        drop(info_span!(parent: &s, "omni.queue"));
        drop(s);
        if stage < 2 {
            support::transfer_span(&req, stage);
        }
    }
}

/// Spans open at once in a burst (`--burst N` for another number).
const BURST_SPANS: usize = 100_000;

/// What is open in a burst.
#[derive(Clone, Copy)]
enum Shape {
    /// `omni.request` spans alone.
    Requests,
    /// Requests, each with a stage (holding a queue child) and a transfer: four spans each.
    Mix,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Requests => "requests",
            Shape::Mix => "mix",
        }
    }

    /// Opens `n` spans (whole requests), kept in `spans`.
    fn open(self, n: usize, spans: &mut Vec<Span>) {
        match self {
            Shape::Requests => {
                for i in 0..n {
                    spans.push(info_span!("omni.request", request_id = format!("r-{i}")));
                }
            }
            Shape::Mix => {
                for i in 0..n / 4 {
                    let req = info_span!("omni.request", request_id = format!("r-{i}"));
                    let stage = info_span!(parent: &req, "omni.stage", stage_id = 0_u64,
                        num_tokens_in = 100_u64, num_tokens_out = 10_u64);
                    let queue = info_span!(parent: &stage, "omni.queue");
                    let transfer = info_span!(parent: &req, "omni.transfer", from_stage = 0_u64,
                        to_stage = 1_u64, size_bytes = 4096_u64, tx_time_ms = 1.0,
                        rx_decode_time_ms = 1.0);
                    spans.extend([req, stage, queue, transfer]);
                }
            }
        }
    }
}

/// One configuration's burst figures: live heap bytes before, at the first peak, after the
/// first burst and after the second; `VmRSS` KiB before, at the peak, after the first burst
/// and after [`trim`].
struct Burst {
    heap: [usize; 4],
    rss: [u64; 4],
}

impl Burst {
    /// Heap retained after the `n`th burst (1 or 2) over before it.
    fn retained(&self, n: usize) -> isize {
        self.heap[n + 1] as isize - self.heap[0] as isize
    }

    fn peak(&self) -> isize {
        self.heap[1] as isize - self.heap[0] as isize
    }
}

/// Has the allocator give its free memory back to the system (glibc keeps it for reuse):
/// what is left in `VmRSS` is in use.
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: glibc's `malloc_trim` only releases free memory; it takes no pointer.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Warms `dispatch` up (pools, the slab's first pages), then opens `n` spans of `shape`
/// and closes them, twice.
fn burst(dispatch: Dispatch, shape: Shape, n: usize) -> Burst {
    let mut spans: Vec<Span> = Vec::with_capacity(n);
    let figures = tracing::dispatcher::with_default(&dispatch, || {
        shape.open(4096, &mut spans);
        spans.clear();
        trim();
        let before = (live_heap(), rss_kib());
        shape.open(n, &mut spans);
        let peak = (live_heap(), rss_kib());
        spans.clear();
        let after = (live_heap(), rss_kib());
        trim();
        let trimmed = rss_kib();
        shape.open(n, &mut spans);
        spans.clear();
        Burst {
            heap: [before.0, peak.0, after.0, live_heap()],
            rss: [before.1, peak.1, after.1, trimmed],
        }
    });
    drop(dispatch);
    figures
}

fn mib(bytes: isize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The burst figures of `shape`, layer and baseline.
fn bursts(shape: Shape, n: usize) {
    let base = burst(
        Dispatch::new(tracing_subscriber::registry().with(Identity::new())),
        shape,
        n,
    );
    let layer = OmniMetricsLayer::builder()
        .with_console(false)
        .build()
        .expect("no JSON-lines file in the bench");
    let with_layer = burst(
        Dispatch::new(tracing_subscriber::registry().with(layer)),
        shape,
        n,
    );
    println!(
        "burst of {n} spans open at once ({}) on one thread, then closed; twice",
        shape.name()
    );
    println!(
        "  {:<20} heap MiB: before    peak   after  after 2nd | VmRSS MiB: before  peak  after  trimmed",
        ""
    );
    for (name, b) in [
        ("registry + Identity", &base),
        ("registry + layer", &with_layer),
    ] {
        let m = |i: usize| mib(b.heap[i] as isize);
        let r = |i: usize| b.rss[i] as f64 / 1024.0;
        println!(
            "  {name:<20} {:>14.2} {:>7.2} {:>7.2} {:>10.2} | {:>17.1} {:>5.1} {:>6.1} {:>8.1}",
            m(0),
            m(1),
            m(2),
            m(3),
            r(0),
            r(1),
            r(2),
            r(3)
        );
    }
    println!(
        "  the layer's own heap (layer less baseline): {:+.2} MiB at the peak; retained {:+.2} \
         MiB after the burst, {:+.2} MiB after the second",
        mib(with_layer.peak() - base.peak()),
        mib(with_layer.retained(1) - base.retained(1)),
        mib(with_layer.retained(2) - base.retained(2)),
    );
}

fn main() {
    let args = Args::parse();
    let burst_spans = args.number("--burst", BURST_SPANS);
    support::print_machine();
    run(args.quick());
    // Under scoped dispatchers: the run's global one stays as it is.
    bursts(Shape::Requests, burst_spans);
    bursts(Shape::Mix, burst_spans);
}

/// One long `omni.run` under a global subscriber: the resident set's growth.
fn run(quick: bool) {
    let total: u64 = if quick { 100_000 } else { 1_000_000 };
    let warm: u64 = 10_000;
    let layer = OmniMetricsLayer::builder()
        .with_console(false)
        .build()
        .expect("no JSON-lines file in the bench");
    let handle = layer.handle();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
        .expect("the bench sets the only global subscriber");
    let run = info_span!("omni.run", run_id = "memory");
    let _in_run = run.enter();
    let mut after_warm = 0;
    for i in 0..total {
        if i == warm {
            after_warm = rss_kib();
        }
        request(i);
    }
    let end = rss_kib();
    drop(_in_run);
    drop(run);
    let summary = handle.last_summary();
    println!("one omni.run of {total} requests (3 stages, 2 transfers each), console off");
    println!("VmRSS after {warm} requests: {after_warm} KiB");
    println!("VmRSS after {total} requests: {end} KiB");
    println!(
        "growth: {:.2} MiB; requests in the summary: {}",
        end.saturating_sub(after_warm) as f64 / 1024.0,
        summary.map_or(0, |s| s.e2e_requests)
    );
}
