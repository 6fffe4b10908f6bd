//! The console: the cumulative summary printed on demand, online tables turned off, and the
//! periodic line.

use std::time::Duration;

use omni_metrics::instrument::Run;

use crate::support::{Harness, SharedBuf, Status};

#[path = "../support/table_rows.rs"]
mod table_rows;
use table_rows::rows;

/// The table printed under the title line that starts with `title`.
fn section(console: &str, title: &str) -> Option<String> {
    let mut lines = console.lines().skip_while(|l| !l.starts_with(title));
    lines.next()?;
    Some(
        lines
            .take_while(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

#[test]
fn print_summary_prints_the_cumulative_tables_on_the_console() {
    let h = Harness::with_console(|b, console| {
        b.with_console(omni_metrics::Destination::writer(console))
            .with_online_tables(false)
    });
    h.run(|| {
        for (i, ms) in [100.0, 300.0, 200.0].into_iter().enumerate() {
            h.play(None, &format!("r-{i}"), ms, 100, Status::Ok);
        }
    });
    assert_eq!(h.console(), "", "online tables are off");
    assert!(h.handle().print_summary());
    let console = h.console();
    let summary = section(&console, "Overall Summary (scope cumulative)").expect(&console);
    assert_eq!(
        rows(&summary),
        [
            ["Field", "Value"],
            ["e2e_requests", "3"],
            [
                "e2e_wall_time_ms (wall clock, idle time included)",
                "600.000"
            ],
            ["e2e_total_tokens", "330"],
            [
                "e2e_avg_time_per_request_ms (wall time / requests, not latency)",
                "200.000"
            ],
            ["e2e_avg_tokens_per_s (tokens / wall time)", "550.000"],
            ["e2e_stage_0_wall_time_ms", "600.000"],
        ]
    );
    let distributions = section(&console, "Distributions").expect(&console);
    assert_eq!(
        rows(&distributions).get(1).map(|r| r[..2].to_vec()),
        Some(vec!["e2e_total_ms".to_owned(), "3".to_owned()])
    );
    // The same text as the summary's `Display` gives.
    assert_eq!(console, h.handle().cumulative_summary().to_string());
}

/// An online aggregate's wall time includes the server's idle time: its console form leads
/// with the latency and says which figures are wall time, so 100 ms requests 20 s apart
/// do not read as 13-second requests.
#[test]
fn an_online_summary_leads_with_latency_and_labels_its_wall_figures() {
    let h = Harness::with_console(|b, console| {
        b.with_console(omni_metrics::Destination::writer(console))
            .with_online_tables(false)
    });
    h.run(|| {
        for i in 0..3 {
            h.at(20_000.0 * i as f64);
            h.play(None, &format!("r-{i}"), 100.0, 10, Status::Ok);
        }
    });
    for summary in [h.handle().cumulative_summary(), h.handle().window_summary()] {
        let text = summary.to_string();
        assert!(text.starts_with("Distributions\n"), "{text}");
        let latency = &rows(&section(&text, "Distributions").expect(&text))[1];
        assert_eq!(
            latency[..5],
            ["e2e_total_ms", "3", "100.000", "100.000", "100.000"],
            "count, mean, p50, p90: the latency, first"
        );
        let table = rows(&section(&text, "Overall Summary").expect(&text));
        let avg = table
            .iter()
            .find(|r| r[0].starts_with("e2e_avg_time_per_request_ms"))
            .expect(&text);
        assert_eq!(
            avg[0],
            "e2e_avg_time_per_request_ms (wall time / requests, not latency)"
        );
        let wall_avg: f64 = avg[1].replace(',', "").parse().expect("a number");
        assert!(
            wall_avg > 10_000.0,
            "wall-based, idle time included: {wall_avg}"
        );
    }
    // A run's summary is the seed's, unlabelled.
    let h = Harness::new();
    h.run(|| {
        let run = Run::with_id("offline");
        h.play(Some(&run), "a", 100.0, 10, Status::Ok);
    });
    let text = h.capture().summaries()[0].to_string();
    assert!(
        text.starts_with("Overall Summary (scope offline)\n"),
        "{text}"
    );
    assert!(text.contains("| e2e_avg_time_per_request_ms |"), "{text}");
}

#[test]
fn print_summary_without_a_console_prints_nothing() {
    let h = Harness::new();
    assert!(!h.handle().print_summary());
    let jsonl = SharedBuf::default();
    let h = Harness::with(|b| b.with_jsonl(omni_metrics::Destination::writer(jsonl.clone())));
    assert!(!h.handle().print_summary());
    h.handle().flush(Duration::from_secs(10)).expect("flushed");
    assert_eq!(jsonl.text(), "", "the summary is for the console only");
}

#[test]
fn online_tables_off_leaves_runs_and_records_alone() {
    let jsonl = SharedBuf::default();
    let h = Harness::with_console(|b, console| {
        b.with_console(omni_metrics::Destination::writer(console))
            .with_jsonl(omni_metrics::Destination::writer(jsonl.clone()))
            .with_online_tables(false)
    });
    h.run(|| {
        let run = Run::with_id("batch");
        h.play(Some(&run), "in-run", 10.0, 1, Status::Ok);
        drop(run);
        h.play(None, "online-1", 10.0, 1, Status::Ok);
        h.play(None, "online-2", 10.0, 1, Status::Error);
    });
    let console = h.console();
    assert!(
        console.contains("RequestE2EStats (request in-run,"),
        "{console}"
    );
    assert!(
        console.contains("Overall Summary (scope batch)"),
        "{console}"
    );
    assert!(!console.contains("online-"), "{console}");
    // The records are all there: the run's request and summary, each online request's.
    let records = jsonl.text();
    assert_eq!(records.lines().count(), 6, "{records}");
    assert!(records.contains(r#""scope":"online-2""#), "{records}");
}

#[test]
fn online_tables_print_by_default_and_not_with_the_periodic_line() {
    let play = |h: &Harness| {
        h.run(|| h.play(None, "r-1", 10.0, 1, Status::Ok));
        h.console()
    };
    let h = Harness::with_console(|b, console| {
        b.with_console(omni_metrics::Destination::writer(console))
    });
    let console = play(&h);
    assert!(console.contains("Overall Summary (scope r-1)"), "{console}");
    assert!(
        console.contains("RequestE2EStats (request r-1,"),
        "{console}"
    );
    // The periodic line on (an hour: it never ticks here): online tables off by default.
    let hour = Duration::from_secs(3_600);
    let h = Harness::with_console(|b, console| {
        b.with_console(omni_metrics::Destination::writer(console))
            .with_periodic_log(hour)
    });
    assert_eq!(play(&h), "");
    // ... unless asked for, in code.
    let h = Harness::with_console(|b, console| {
        b.with_console(omni_metrics::Destination::writer(console))
            .with_periodic_log(hour)
            .with_online_tables(true)
    });
    assert!(play(&h).contains("Overall Summary (scope r-1)"));
    // Request tables off: online requests still print their summary.
    let h = Harness::with_console(|b, console| {
        b.with_console(omni_metrics::Destination::writer(console))
            .with_request_tables(false)
    });
    let console = play(&h);
    assert!(console.contains("Overall Summary (scope r-1)"), "{console}");
    assert!(!console.contains("RequestE2EStats"), "{console}");
}

#[test]
fn the_periodic_line_says_what_the_window_saw() {
    let h = Harness::with_console(|b, console| {
        b.with_console(omni_metrics::Destination::writer(console))
            .with_periodic_log(Duration::from_millis(20))
    });
    let open = h.run(|| {
        for i in 0..12u64 {
            h.at(500.0 * i as f64);
            h.play(None, &format!("r-{i}"), 500.0, 100, Status::Ok);
        }
        h.play(None, "failed", 1.0, 100, Status::Error);
        h.at(10_000.0);
        omni_metrics::instrument::Request::start("still-open")
    });
    // The manual clock stands at 10 s: 12 ok requests of 500 ms, 110 tokens each.
    let line = "omni-metrics: last 10.0 s: e2e latency mean 500.000 ms p50 500.000 ms \
                p99 500.000 ms; 12 ok, 1 error, 0 aborted requests (1.20 req/s), \
                132.0 tokens/s, 1 running, 1 waiting\n";
    let console = h.wait_for(line);
    assert!(console.contains(line), "{console}");
    // Nothing else on the console: no online tables while the line is on.
    for printed in console.lines() {
        assert!(printed.starts_with("omni-metrics: last "), "{console}");
    }
    h.run(|| open.finish());
    // The layer dropped: its line stops.
    let console = h.console.clone();
    drop(h);
    let before = console.text().len();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        console.text().len(),
        before,
        "a line after the layer was dropped"
    );
}

#[test]
fn an_idle_server_prints_no_periodic_line() {
    let h = Harness::with_console(|b, console| {
        b.with_console(omni_metrics::Destination::writer(console))
            .with_periodic_log(Duration::from_millis(10))
    });
    std::thread::sleep(Duration::from_millis(200)); // some 20 ticks
    assert_eq!(h.console(), "");
    // Requests long gone from the window: quiet again.
    h.run(|| h.play(None, "r-1", 10.0, 1, Status::Ok));
    h.at(3_600_000.0);
    std::thread::sleep(Duration::from_millis(100));
    let before = h.console().len();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(h.console().len(), before);
}

/// An interval past the clock's range (`OMNI_METRICS_LOG_INTERVAL` reads up to some 10^19
/// seconds) never ticks: the layer builds, and the console prints what it would without
/// the line.
#[test]
fn a_periodic_interval_beyond_the_clock_never_ticks() {
    let h = Harness::with_console(|b, console| {
        b.with_console(omni_metrics::Destination::writer(console))
            .with_periodic_log(Duration::MAX)
    });
    h.run(|| h.play(None, "r-1", 10.0, 1, Status::Ok));
    h.handle()
        .flush(Duration::from_secs(10))
        .expect("the console is written");
    assert_eq!(h.console(), "");
}
