//! The rate the Prometheus sink sustains from 4 engine threads, and what it loses.
//!
//! Workload: the request of `benches/prometheus_record.rs` (one `ok` request of 3 stages,
//! 2 edges and a trace id: 48 observations into 33 series), pushed with
//! `PrometheusSink::on_request` by 4 threads at once, each on a clone of the sink.
//!
//! - **flat out**: the 4 threads push as fast as they can for the run's length. Offered is
//!   what they pushed per second; recorded is what the scrape says once the recorder has
//!   caught up (`requests_success_total`), and how long catching up took after the last push.
//! - **paced**: the 4 threads push at a fixed total rate (each a quarter, in 1 ms steps),
//!   50,000 requests/s and above; at each rate, the same figures. A rate is sustained when
//!   nothing is dropped and the recorder is caught up within a few milliseconds of the last
//!   push.
//!
//! Run: `cargo bench --bench prometheus_sustained` (`-- --quick` for 1 s runs instead of 5 s).
//! Prints, per run: requests offered per second, the engine threads' CPU time per request
//! (walking, queueing or folding), requests dropped, requests the scrape counts, the
//! recorder's rate (recorded over the run and its catch-up), and the catch-up.
//!
//! Measured on 2026-12-07, 2-vCPU Intel Xeon VM shared with other builds (load 3.5 to 4),
//! Rust 1.95, 5 s runs (the engine's 4 threads and the recorder share the 2 vCPUs):
//!
//! ```text
//! flat out        offered 1344650/s engine  514 ns/request dropped 0 of 6740928 recorded 6740928 recorder 550427/s caught up 7233.6 ms after the run
//! paced 50000/s   offered   49986/s engine 1100 ns/request dropped 0 of  249989 recorded  249989 recorder  49982/s caught up    0.5 ms after the run
//! paced 100000/s  offered   99964/s engine  747 ns/request dropped 0 of  499950 recorded  499950 recorder  99949/s caught up    0.7 ms after the run
//! paced 200000/s  offered  199932/s engine  638 ns/request dropped 0 of  999912 recorded  999912 recorder 199908/s caught up    0.6 ms after the run
//! paced 400000/s  offered  399856/s engine  740 ns/request dropped 0 of 1999839 recorded 1999839 recorder 399568/s caught up    3.6 ms after the run
//! paced 800000/s  offered  799337/s engine  566 ns/request dropped 0 of 4000098 recorded 4000098 recorder 548626/s caught up 2286.9 ms after the run
//! ```
//!
//! Sustained from 4 threads with no drop and the recorder caught up within milliseconds:
//! 400,000 requests/s (8x the 50,000 asked for). Beyond the recorder's rate (some 350,000
//! to 550,000 requests/s here, varying with the machine's load), nothing is dropped either:
//! the requests wait folded (memory bounded by the series) and the scrape lags until the
//! recorder catches up. The paced runs' engine time per request is higher than flat out's:
//! each 1 ms step starts with cold caches after a sleep.
//!
//! Before the queue coalesced (a request that did not fit in the full queue of 1,024 was
//! dropped and counted), same machine and runs:
//!
//! ```text
//! flat out        offered 2160806/s recorded   23878/s dropped 10728756 of 10848640
//! paced 50000/s   offered   49988/s recorded   47072/s dropped    14588 of   250099
//! paced 100000/s  offered   99973/s recorded   98874/s dropped     5497 of   499953
//! paced 200000/s  offered  199943/s recorded  175759/s dropped   120952 of   999957
//! paced 400000/s  offered  399886/s recorded  244727/s dropped   775919 of  1999747
//! ```

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use omni_metrics::PrometheusSink;
use omni_metrics::report::Sink;
use support::thread_cpu_time;

/// Engine threads pushing at once.
const THREADS: usize = 4;

/// The requests a scrape counts (`requests_success_total{...,finished_reason="stop"}`,
/// whatever its other labels: `model_name`).
fn recorded(text: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("vllm_omni:requests_success_total{"))
        .filter(|l| l.contains("finished_reason=\"stop\""))
        .find_map(|l| l.rsplit_once(' ')?.1.trim().parse().ok())
        .unwrap_or(0)
}

/// One run's figures.
struct Run {
    offered: u64,
    /// The engine threads' CPU time, in all.
    engine_cpu: Duration,
    seconds: f64,
    recorded: u64,
    dropped: u64,
    /// From the last push until the scrape counted every request not dropped.
    catch_up: Duration,
}

impl Run {
    fn print(&self, case: &str) {
        let recording = self.seconds + self.catch_up.as_secs_f64();
        println!(
            "{case:<16} offered {:>9.0}/s  engine {:>5.0} ns/request  dropped {:>2} of {:>9}  \
             recorded {:>9}  recorder {:>7.0}/s  caught up {:>7.1} ms after the run",
            self.offered as f64 / self.seconds,
            self.engine_cpu.as_nanos() as f64 / self.offered.max(1) as f64,
            self.dropped,
            self.offered,
            self.recorded,
            self.recorded as f64 / recording,
            self.catch_up.as_secs_f64() * 1e3,
        );
    }
}

/// Pushes from [`THREADS`] threads for `length`, at `rate` requests/s in all (`None`: as
/// fast as they can), on a fresh sink; then scrapes until every request not dropped is
/// counted (a scrape waits up to a second for the recorder; 60 s in all at most).
fn run(length: Duration, rate: Option<f64>) -> Run {
    let sink = PrometheusSink::unserved();
    let r = support::sink_request(true);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let (offered, engine_cpu) = std::thread::scope(|s| {
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let (sink, r, stop) = (sink.clone(), &r, &stop);
                s.spawn(move || {
                    let cpu = thread_cpu_time();
                    let mut sent = 0u64;
                    let per_thread = rate.map(|rate| rate / THREADS as f64);
                    while !stop.load(Ordering::Relaxed) {
                        let due = match per_thread {
                            None => sent + 64,
                            Some(rate) => (start.elapsed().as_secs_f64() * rate) as u64,
                        };
                        while sent < due {
                            sink.on_request(r);
                            sent += 1;
                        }
                        if per_thread.is_some() {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    (sent, thread_cpu_time().saturating_sub(cpu))
                })
            })
            .collect();
        std::thread::sleep(length);
        stop.store(true, Ordering::Relaxed);
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or_default())
            .fold((0, Duration::ZERO), |(n, cpu), (sent, used)| {
                (n + sent, cpu + used)
            })
    });
    let seconds = start.elapsed().as_secs_f64();
    let pushed = Instant::now();
    let mut counted = 0;
    while pushed.elapsed() < Duration::from_secs(60) {
        counted = recorded(&sink.encode());
        if counted + sink.dropped_requests() >= offered {
            break;
        }
    }
    Run {
        offered,
        engine_cpu,
        seconds,
        recorded: counted,
        dropped: sink.dropped_requests(),
        catch_up: pushed.elapsed(),
    }
}

fn main() {
    let quick = support::Args::parse().quick();
    let length = Duration::from_secs(if quick { 1 } else { 5 });
    support::print_machine();
    println!("{THREADS} threads, {} s per run", length.as_secs());
    run(length, None).print("flat out");
    for rate in [50_000.0, 100_000.0, 200_000.0, 400_000.0, 800_000.0] {
        run(length, Some(rate)).print(&format!("paced {rate:.0}/s"));
    }
}
