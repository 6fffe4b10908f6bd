//! `omni-metrics compare` on two runs of 100,000 requests each (target: under 5 s on one
//! core): the whole command, in-process through [`omni_metrics::cli::run`], from two JSON
//! lines files of records: reading both, every measure's values sorted, p50/p90/p99 with
//! their order-statistic errors, means, the mismatch checks, the table; then the same with
//! the HTML page (`--html`). Single-threaded; each step's CPU time on this thread and its
//! wall time, median of 3 rounds.
//!
//! The runs are `tests/support/runs.rs`'s: thinker -> talker -> code2wav, two edges, every
//! time log-normal; the new run's stage 1 is 20% slower: 18 rows, 64 tests.
//!
//! Run: `cargo bench --features cli --bench compare` (100,000 requests a side);
//! `-- --requests N` for another size; `-- --quick` for CI (10,000, one round).
//!
//! Measured on the 2-vCPU VM this crate is developed on (release build):
//!
//! ```text
//! machine: 2 CPUs, Intel(R) Xeon(R) Processor
//! 100000 requests a side, 3 round(s), one thread
//!   records files: 285.1 MiB together
//! end to end: load both files + compare + table cpu   1895.7 ms (min 1874.4, max 1902.1)   wall   1895.9 ms
//! the same with --html                         cpu   2075.3 ms (min 2068.8, max 2105.3)   wall   2076.2 ms
//!   page: 49.9 KiB
//! ```
//!
//! (Records read back from JSON lines carry no times: the page has no timelines.)

mod support;

#[allow(dead_code)]
#[path = "../tests/support/runs.rs"]
mod runs;

use std::process::ExitCode;
use std::time::Instant;

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
    let dir = std::env::temp_dir().join(format!("omni-compare-bench-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_err() {
        println!("cannot create {}", dir.display());
        return;
    }
    let write = |name: &str, run: &runs::Run| {
        let (requests, _) = run.build();
        let mut text = String::with_capacity(requests.len() * 1200);
        for r in requests {
            text.push_str(&Record::Request(r).to_json_line());
            text.push('\n');
        }
        let path = dir.join(name);
        std::fs::write(&path, text).map(|()| path)
    };
    let (Ok(base_file), Ok(new_file)) =
        (write("base.jsonl", &base_run), write("new.jsonl", &new_run))
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
    let page = dir.join("compare.html");
    let command = |html: bool| {
        let mut args = vec![
            "omni-metrics".into(),
            "compare".into(),
            base_file.clone().into_os_string(),
            new_file.clone().into_os_string(),
            "--group-by".into(),
            "all".into(),
        ];
        if html {
            args.extend(["--html".into(), page.clone().into_os_string()]);
        }
        omni_metrics::cli::run(args)
    };
    // Exit 0: no gate was given; anything else is a failure of the command.
    let ok = |code: ExitCode| code == ExitCode::SUCCESS;
    let table = measure(
        "end to end: load both files + compare + table",
        rounds,
        || ok(command(false)),
    );
    let html = measure("the same with --html", rounds, || ok(command(true)));
    if let Ok(meta) = std::fs::metadata(&page) {
        println!("  page: {:.1} KiB", meta.len() as f64 / 1024.0);
    }
    let _ = std::fs::remove_dir_all(&dir);
    if !(table && html) {
        println!("the command failed");
        std::process::exit(1);
    }
}
