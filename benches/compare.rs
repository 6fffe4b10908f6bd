//! `omni-metrics compare` on two runs of 100,000 requests each (issue 26: under 5 s on one
//! core): the comparison of the records in memory (`Compare::run`: every measure's values
//! sorted, p50/p90/p99 with their order-statistic errors, means, the mismatch checks), its
//! three text outputs and its HTML page, and the whole command's work from two JSON lines
//! files of records (reading both, then all of the above). Single-threaded; each step's
//! CPU time on this thread and its wall time, median of 3 rounds.
//!
//! The runs are `tests/compare/runs.rs`'s: thinker -> talker -> code2wav, two edges, every
//! time log-normal; the new run's stage 1 is 20% slower: 18 rows, 64 tests.
//!
//! Run: `cargo bench --features cli --bench compare` (100,000 requests a side);
//! `-- --requests N` for another size; `-- --quick` for CI (10,000, one round).
//!
//! Measured on the 2-vCPU VM this crate is developed on (release build, other builds
//! sharing the machine):
//!
//! ```text
//! machine: 2 CPUs, Intel(R) Xeon(R) Processor
//! 100000 requests a side, 3 round(s), one thread
//! Compare::run (in memory)                     cpu    253.5 ms (min 248.0, max 255.4)   wall    290.0 ms
//!   18 rows, 64 tests, 2 real changes
//! to_table + to_markdown + to_jsonl            cpu      0.4 ms (min 0.3, max 0.4)   wall      0.4 ms
//! html::render                                 cpu    203.9 ms (min 200.2, max 204.5)   wall    261.8 ms
//!   page: 446.1 KiB
//!   records files: 285.1 MiB together
//! end to end: load both files + compare + table cpu   1793.8 ms (min 1755.3, max 2592.6)   wall   1937.8 ms
//! ```
//!
//! Reading the 285 MiB of JSON is most of it; from trace files the replay dominates
//! (`report_throughput`).

mod support;

#[path = "../tests/compare/runs.rs"]
#[allow(dead_code)]
mod runs;

use std::time::Instant;

use omni_metrics::compare::{self, Compare, Side};
use omni_metrics::replay::GroupBy;
use omni_metrics::report::Record;
use support::{Args, Spread, thread_cpu_time};

/// Runs `f` `rounds` times; prints the median CPU and wall time of a round, in ms.
fn measure<T>(name: &str, rounds: usize, mut f: impl FnMut() -> T) -> T {
    let (mut cpu, mut wall) = (Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..rounds {
        let (c0, w0) = (thread_cpu_time(), Instant::now());
        last = Some(std::hint::black_box(f()));
        cpu.push((thread_cpu_time() - c0).as_secs_f64() * 1e3);
        wall.push(w0.elapsed().as_secs_f64() * 1e3);
    }
    let (c, w) = (Spread::of(cpu), Spread::of(wall));
    println!(
        "{name:<44} cpu {:>8.1} ms (min {:.1}, max {:.1})   wall {:>8.1} ms",
        c.median, c.min, c.max, w.median
    );
    match last {
        Some(v) => v,
        None => f(),
    }
}

fn main() {
    let args = Args::parse();
    let quick = args.quick();
    let n: usize = args.number("--requests", if quick { 10_000 } else { 100_000 });
    let rounds = if quick { 1 } else { 3 };
    support::print_machine();
    println!("{n} requests a side, {rounds} round(s), one thread");

    let base_run = runs::Run::new(n, 1);
    let mut new_run = runs::Run::new(n, 2);
    new_run.gen_time[1] = 1.2;
    let side = |label: &str, run: &runs::Run| {
        let (requests, summary) = run.build();
        Side::new(label, requests, &[summary])
    };
    let (base, new) = (side("base", &base_run), side("new", &new_run));

    let comparison = measure("Compare::run (in memory)", rounds, || {
        Compare::new().run(&base, &new)
    });
    println!(
        "  {} rows, {} tests, {} real changes",
        comparison.rows.len(),
        comparison.tests,
        comparison.changes().count()
    );
    measure("to_table + to_markdown + to_jsonl", rounds, || {
        comparison.to_table().len() + comparison.to_markdown().len() + comparison.to_jsonl().len()
    });
    let page = measure("html::render", rounds, || {
        compare::html::render(&comparison, &base, &new)
    });
    println!("  page: {:.1} KiB", page.len() as f64 / 1024.0);

    // The command's whole work from records files.
    let dir = std::env::temp_dir().join(format!("omni-compare-bench-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_err() {
        println!("cannot create {}", dir.display());
        return;
    }
    let write = |name: &str, side: &Side| {
        let mut text = String::with_capacity(side.requests.len() * 1200);
        for r in &side.requests {
            text.push_str(&Record::Request(r.clone()).to_json_line());
            text.push('\n');
        }
        let path = dir.join(name);
        std::fs::write(&path, text).map(|()| path)
    };
    let (Ok(base_file), Ok(new_file)) = (write("base.jsonl", &base), write("new.jsonl", &new))
    else {
        println!("cannot write the records in {}", dir.display());
        return;
    };
    let bytes: u64 = [&base_file, &new_file]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "  records files: {:.1} MiB together",
        bytes as f64 / (1 << 20) as f64
    );
    measure(
        "end to end: load both files + compare + table",
        rounds,
        || {
            let load = |path: &std::path::PathBuf, label: &str| {
                let loaded = compare::load(std::slice::from_ref(path), &mut |_| {});
                Side::from_loaded(label, loaded, GroupBy::All, None)
            };
            match (load(&base_file, "base"), load(&new_file, "new")) {
                (Ok(b), Ok(n)) => Compare::new().run(&b, &n).to_table().len(),
                _ => 0,
            }
        },
    );
    let _ = std::fs::remove_dir_all(&dir);
}
