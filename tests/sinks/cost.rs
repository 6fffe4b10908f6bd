//! What the built-in sinks cost the engine's thread per request, and what a huge cell costs
//! to render (measurements, ignored by default):
//! `cargo test --release --test sinks -- --ignored --nocapture`.

use std::time::Instant;

use tracing_subscriber::prelude::*;

use crate::support::seed_like_request;

/// This thread's CPU time (not wall time: the writer thread and other processes share the
/// cores).
#[cfg(unix)]
fn thread_cpu() -> std::time::Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a plain clock read into a local.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[cfg(not(unix))]
fn thread_cpu() -> std::time::Duration {
    std::time::Duration::ZERO
}

/// (wall, engine-thread CPU) µs per request.
fn per_request_us(builder: omni_metrics::Builder, requests: u32) -> (f64, f64) {
    let layer = builder.build().expect("no file");
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..200 {
            seed_like_request(&format!("warm-{i}"));
        }
        let (start, cpu) = (Instant::now(), thread_cpu());
        for i in 0..requests {
            seed_like_request(&format!("r-{i}"));
        }
        let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / f64::from(requests);
        (per(start.elapsed()), per(thread_cpu() - cpu))
    })
}

#[test]
#[ignore = "a measurement; run it with --release --ignored --nocapture"]
fn engine_thread_cost_of_the_builtin_sinks() {
    use omni_metrics::OmniMetricsLayer as L;
    // Fewer requests than the queue holds, so nothing is dropped and every record is queued.
    let n = 1_500;
    for round in 0..3 {
        let off = per_request_us(L::builder().with_console(false), n);
        let console = per_request_us(
            L::builder().with_console(omni_metrics::Destination::writer(std::io::sink())),
            n,
        );
        let both = per_request_us(
            L::builder()
                .with_console(omni_metrics::Destination::writer(std::io::sink()))
                .with_jsonl(omni_metrics::Destination::writer(std::io::sink())),
            n,
        );
        println!(
            "round {round}: us/request (wall, engine-thread CPU): sinks off {off:.2?}, \
             console {console:.2?}, console+jsonl {both:.2?}"
        );
    }
}

#[test]
#[ignore = "a measurement; run it with --release --ignored --nocapture"]
fn render_time_of_a_huge_resolution() {
    use omni_metrics::stats::{RequestE2EStats, StageRequestStats};
    for mib in [4, 10] {
        let huge = "x".repeat(mib << 20);
        let request = RequestE2EStats {
            request_id: "huge".into(),
            stages: vec![StageRequestStats {
                image_num: Some(1),
                resolution: Some(huge),
                ..Default::default()
            }],
            ..Default::default()
        };
        let start = Instant::now();
        let out = request.to_string();
        println!(
            "{mib} MiB resolution: rendered {} bytes in {:?}",
            out.len(),
            start.elapsed()
        );
    }
}
