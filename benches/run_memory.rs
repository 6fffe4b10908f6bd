//! Memory of one long `omni.run` (issue #9, item 2): a run keeps no per-request data, so its
//! resident set stops growing once its histograms have seen the range of the values.
//!
//! Workload: one `omni.run` of 1,000,000 requests (each with a unique `request_id`, 3 stages
//! and 2 transfers with tx/rx children), the metrics layer with the console off. Prints the
//! resident set size (`VmRSS`, Linux) after 10,000 requests and at the end, and the growth.
//!
//! Run: `cargo bench --bench run_memory` (`-- --quick` for 100,000 requests).
//!
//! Measured on 2026-12-01 on the 2-vCPU AMD EPYC VM this crate is developed on: see the
//! README's "Latency distributions" section.

use omni_metrics::OmniMetricsLayer;
use tracing::info_span;
use tracing_subscriber::prelude::*;

/// The resident set size in KiB (`VmRSS` of `/proc/self/status`), or 0 where unavailable.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn request(i: u64) {
    let req = info_span!("omni.request", request_id = format!("r-{i}"));
    for stage in 0..3_u64 {
        let s = info_span!(parent: &req, "omni.stage", stage_id = stage, num_tokens_in = 100_u64,
            num_tokens_out = 10_u64);
        drop(info_span!(parent: &s, "omni.queue"));
        drop(s);
        if stage < 2 {
            let t = info_span!(parent: &req, "omni.transfer", from_stage = stage,
                to_stage = stage + 1, size_bytes = 4096_u64);
            drop(info_span!(parent: &t, "omni.transfer.tx"));
            drop(info_span!(parent: &t, "omni.transfer.rx_decode"));
            drop(t);
        }
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
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
