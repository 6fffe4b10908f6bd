//! What the metrics layer costs an engine, per span, as ratios measured in one run.
//!
//! Workload (issue #8): one request, 3 stages (entered, 5 fields, one `record` each) and 2
//! transfers (each with tx and rx_decode children): 10 spans.
//!
//! Configurations, each in its own process under a global subscriber, as engines run:
//! - `base`: `registry().with(Identity)`, the baseline. A bare `registry()` is not one: with
//!   no layer it never frees closed spans, so its processes grow by gigabytes and its time is
//!   the kernel clearing pages;
//! - `layer`: the Registry with the metrics layer;
//! - `layer-noagg`: the same with the online aggregates off (`with_aggregates(false)`), to
//!   price them: `layer - layer-noagg` is what adding each request to them costs;
//! - `otel`: the Registry with tracing-opentelemetry alone (an SDK tracer that exports
//!   nothing), and `both`: the metrics layer with annotations on in front of it;
//!   `both-noann`: the same with annotations off;
//! - `foreign`: 10 spans that are not `omni.*`, with and without the layer;
//! - 1 and 2 threads for `base` and `layer`.
//!
//! Rounds are interleaved (every configuration once per round, each in a fresh process);
//! ratios are taken per round, and the median and the spread (min..max) over rounds printed.
//!
//! Run: `cargo bench --bench layer_overhead` (`-- --quick` for a short run; `-- --case NAME`
//! runs one configuration alone, for `perf record` or callgrind; with `--part PART` it runs
//! only a part of the workload, `request-only`, `stages` or `transfers`, to price each kind
//! of span).
//!
//! The research floors measured for issue 8 (`deferred-floor`, `frame-floor`, `frame-locked`,
//! `otel-floor`: the least a layer of another design would cost) are no longer here: their
//! figures, and the commit whose bench still runs them, are in
//! `docs/design/per-span-cost.md`.
//!
//! Results: the table of `docs/performance.md` (the crate's `guide::performance`), and every
//! round in `docs/design/performance-history.md`, with the machine they came from.

mod support;

use std::hint::black_box;
use std::time::Instant;

use omni_metrics::OmniMetricsLayer;
use support::{Args, SPANS_PER_REQUEST, Spread, request, request_span, stage_span, transfer_span};
use tracing::{Dispatch, info_span};
use tracing_subscriber::layer::Identity;
use tracing_subscriber::prelude::*;

/// Counts heap allocations per thread, so the layer's allocations per request can be
/// measured.
#[global_allocator]
static GLOBAL: support::CountAllocs = support::CountAllocs;

/// The workload's parts alone, for pricing each kind of span under callgrind
/// (`--case NAME --part PART`): what a part adds over `request-only` is what its spans cost.
#[derive(Clone, Copy)]
struct Part {
    work: fn(u64),
    spans: u64,
}

/// `--part`: `request-only` (the request span), `stages` (it and its 3 stages) or
/// `transfers` (it and its 2 transfers with their tx and rx_decode), else the whole request.
fn part(name: Option<&str>) -> Option<Part> {
    Some(match name {
        None => Part {
            work: request,
            spans: SPANS_PER_REQUEST,
        },
        Some("request-only") => Part {
            work: |_| drop(black_box(request_span())),
            spans: 1,
        },
        Some("stages") => Part {
            work: |i| {
                let req = request_span();
                (0..3).for_each(|stage| stage_span(&req, stage, i));
                drop(black_box(req));
            },
            spans: 4,
        },
        Some("transfers") => Part {
            work: |_| {
                let req = request_span();
                (0..2).for_each(|stage| transfer_span(&req, stage));
                drop(black_box(req));
            },
            spans: 7,
        },
        Some(_) => return None,
    })
}

/// Ten spans of the engine's own, nested as engines nest them.
fn foreign(i: u64) {
    let root = info_span!("http.request", id = i);
    let _e = root.enter();
    for k in 0..9_u64 {
        let s = info_span!("engine.step", k);
        let _e = s.enter();
        s.record("k", k + 1);
    }
}

fn metrics_layer(annotations: bool) -> OmniMetricsLayer {
    metrics_layer_with(annotations, true)
}

fn metrics_layer_with(annotations: bool, aggregates: bool) -> OmniMetricsLayer {
    let builder = OmniMetricsLayer::builder()
        .with_console(false)
        .with_aggregates(aggregates);
    #[cfg(feature = "otlp")]
    let builder = builder.with_trace_annotations(annotations);
    #[cfg(not(feature = "otlp"))]
    let _ = annotations;
    builder.build().expect("no JSON-lines file in the bench")
}

#[cfg(feature = "otlp")]
fn otel_layer<S>() -> impl tracing_subscriber::Layer<S> + 'static
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use opentelemetry::trace::TracerProvider as _;
    // A tracer whose spans are recorded and dropped: what OpenTelemetry costs the engine's
    // thread, without the export (which runs on its own thread).
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let tracer = provider.tracer("bench");
    std::mem::forget(provider); // lives as long as the process
    omni_metrics::otlp::AnnotationLayer::new()
        .and_then(tracing_opentelemetry::layer().with_tracer(tracer))
}

/// The subscriber of a configuration, or `None` for an unknown one.
fn dispatch(config: &str) -> Option<Dispatch> {
    let registry = tracing_subscriber::registry;
    Some(match config {
        "base" | "foreign-base" => Dispatch::new(registry().with(Identity::new())),
        "layer" | "foreign-layer" => Dispatch::new(registry().with(metrics_layer(false))),
        "layer-noagg" => Dispatch::new(registry().with(metrics_layer_with(false, false))),
        #[cfg(feature = "otlp")]
        "otel" => Dispatch::new(registry().with(otel_layer())),
        #[cfg(feature = "otlp")]
        "both" => Dispatch::new(registry().with(metrics_layer(true)).with(otel_layer())),
        #[cfg(feature = "otlp")]
        "both-noann" => Dispatch::new(registry().with(metrics_layer(false)).with(otel_layer())),
        _ => return None,
    })
}

/// The median over `rounds` of the wall time for `iters` iterations on each of `threads`
/// threads, in ns per span of one thread. The threads live across rounds (a new thread
/// would pay for new Registry slab pages, not the layer's cost).
fn ns_per_span(work: fn(u64), spans: u64, threads: usize, iters: u64, rounds: usize) -> f64 {
    let barrier = std::sync::Barrier::new(threads + 1);
    let mut samples = Vec::with_capacity(rounds);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let barrier = &barrier;
            scope.spawn(move || {
                for i in 0..iters {
                    work(i); // warm up: slab pages, allocator caches
                }
                for _ in 0..rounds {
                    barrier.wait();
                    for i in 0..iters {
                        work(i);
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
    let ns = samples
        .iter()
        .map(|t| t.as_nanos() as f64 / (iters * spans) as f64);
    Spread::of(ns.collect()).median
}

fn allocs_per_iter(work: fn(u64), iters: u64) -> f64 {
    for i in 0..iters {
        work(i);
    }
    let before = support::allocs_so_far();
    for i in 0..iters {
        work(i);
    }
    (support::allocs_so_far() - before) as f64 / iters as f64
}

/// One case in this process: `CONFIG` or `CONFIG@2` (two threads). Prints
/// `ns_per_span allocs_per_iteration`.
fn run_case(case: &str, part: Part, iters: u64, rounds: usize) {
    let (config, threads) = match case.split_once('@') {
        Some((c, "2")) => (c, 2),
        _ => (case, 1),
    };
    let Some(dispatch) = dispatch(config) else {
        eprintln!(
            "unknown case {case}: use base, layer, layer-noagg, otel, both, both-noann, \
             foreign-base or foreign-layer, optionally with @2 for two threads"
        );
        std::process::exit(2);
    };
    if tracing::dispatcher::set_global_default(dispatch).is_err() {
        eprintln!("a global subscriber is already set");
        std::process::exit(1);
    }
    let (work, spans) = if config.starts_with("foreign") {
        (foreign as fn(u64), SPANS_PER_REQUEST)
    } else {
        (part.work, part.spans)
    };
    let ns = ns_per_span(work, spans, threads, iters, rounds);
    let allocs = if threads == 1 {
        allocs_per_iter(work, (iters / 10).max(1))
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

/// One process's result: ns per span, allocations per iteration.
type Sample = (f64, f64);

fn main() {
    let args = Args::parse();
    let quick = args.quick();
    let (iters, rounds, processes) = if quick {
        (10_000, 3, 3)
    } else {
        (100_000, 5, 7)
    };
    if let Some(case) = args.value("--case") {
        let Some(part) = part(args.value("--part")) else {
            eprintln!("unknown part: use request-only, stages or transfers");
            std::process::exit(2);
        };
        run_case(case, part, iters, rounds);
        return;
    }
    let mut cases = vec![
        "base",
        "layer",
        "layer-noagg",
        "base@2",
        "layer@2",
        "foreign-base",
        "foreign-layer",
    ];
    if cfg!(feature = "otlp") {
        cases.extend(["otel", "both", "both-noann"]);
    }
    // Interleaved: every case once per round, each in its own process.
    let mut rounds_data: Vec<Vec<Sample>> = Vec::new();
    for _ in 0..processes {
        rounds_data.push(cases.iter().map(|c| child(c, quick)).collect());
    }
    let col = |name: &str| cases.iter().position(|c| *c == name);
    let per_round = |f: &dyn Fn(&[Sample]) -> Option<f64>| -> Option<Spread> {
        let v: Vec<f64> = rounds_data.iter().filter_map(|r| f(r)).collect();
        (!v.is_empty()).then(|| Spread::of(v))
    };
    let get = |r: &[Sample], name: &str| col(name).and_then(|i| r.get(i)).map(|x| x.0);
    let alloc = |r: &[Sample], name: &str| col(name).and_then(|i| r.get(i)).map(|x| x.1);

    support::print_machine();
    println!(
        "workload: 1 request, 3 entered stages (5 fields, 1 record), 2 transfers + tx/rx = 10 spans"
    );
    println!(
        "{iters} iterations per thread, median of {rounds} timed rounds per process, {processes} interleaved rounds of processes, global subscriber"
    );
    println!("ns/span of each round ({}):", cases.join(", "));
    for r in &rounds_data {
        let cells: Vec<String> = r.iter().map(|(ns, _)| format!("{ns:.1}")).collect();
        println!("  {}", cells.join(" "));
    }
    println!();
    println!("| measure | median | spread (min..max) | target |");
    println!("|---|---|---|---|");
    let row = |label: &str, target: &str, v: Option<Spread>, unit: &str| {
        if let Some(Spread { median, min, max }) = v {
            println!("| {label} | {median:.2}{unit} | {min:.2}..{max:.2} | {target} |");
        }
    };
    row(
        "baseline `registry().with(Identity)`, ns/span",
        "",
        per_round(&|r| get(r, "base")),
        "",
    );
    row(
        "metrics layer added, ns/span",
        "",
        per_round(&|r| Some(get(r, "layer")? - get(r, "base")?)),
        "",
    );
    row(
        "added / baseline",
        "<= 0.8x (aim 0.5x)",
        per_round(&|r| Some((get(r, "layer")? - get(r, "base")?) / get(r, "base")?)),
        "x",
    );
    row(
        "online aggregates (layer - layer-noagg), ns/span",
        "",
        per_round(&|r| Some(get(r, "layer")? - get(r, "layer-noagg")?)),
        "",
    );
    row(
        "online aggregates / metrics layer added",
        "<= 5%",
        per_round(&|r| {
            Some(
                100.0 * (get(r, "layer")? - get(r, "layer-noagg")?)
                    / (get(r, "layer")? - get(r, "base")?),
            )
        }),
        "%",
    );
    row(
        "allocations per request added",
        "<= 2",
        per_round(&|r| Some(alloc(r, "layer")? - alloc(r, "base")?)),
        "",
    );
    row(
        "foreign spans: added ns/span",
        "< 5",
        per_round(&|r| Some(get(r, "foreign-layer")? - get(r, "foreign-base")?)),
        "",
    );
    row(
        "foreign spans: allocations per 10 spans added",
        "0",
        per_round(&|r| Some(alloc(r, "foreign-layer")? - alloc(r, "foreign-base")?)),
        "",
    );
    row(
        "baseline, 2-thread / 1-thread throughput",
        "",
        per_round(&|r| Some(2.0 * get(r, "base")? / get(r, "base@2")?)),
        "x",
    );
    row(
        "metrics layer, 2-thread / 1-thread throughput",
        ">= 1.8x",
        per_round(&|r| Some(2.0 * get(r, "layer")? / get(r, "layer@2")?)),
        "x",
    );
    row(
        "tracing-opentelemetry alone: added / baseline",
        "",
        per_round(&|r| Some((get(r, "otel")? - get(r, "base")?) / get(r, "base")?)),
        "x",
    );
    row(
        "metrics + OTel (annotations on) / OTel alone",
        "<= 1.08x",
        per_round(&|r| Some(get(r, "both")? / get(r, "otel")?)),
        "x",
    );
    row(
        "metrics + OTel, annotations off / OTel alone",
        "",
        per_round(&|r| Some(get(r, "both-noann")? / get(r, "otel")?)),
        "x",
    );
    row(
        "metrics + OTel: allocations per request added over OTel alone",
        "",
        per_round(&|r| Some(alloc(r, "both")? - alloc(r, "otel")?)),
        "",
    );
}
