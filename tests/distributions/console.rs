//! The console's `Distributions` table: after a run's `Overall Summary` of two or more
//! requests, never for an online request.

use omni_metrics::instrument::Run;
use omni_metrics::stats::Quantity;

use crate::support::{Harness, Shape, Status, rows, section};

/// Four ok requests of exactly representable times (every value under 2.048 ms is kept
/// to the microsecond; every mean is a whole microsecond) and one failed request of huge
/// times that must not show.
pub(crate) fn small_run(h: &Harness) {
    h.run(|| {
        let run = Run::with_id("run-d");
        let mut failed = Shape::ok(9_000_000, 9_000_000, [9_000_000; 3], 9_000_000);
        failed.status = Status::Error;
        let shapes = [
            Shape::ok(100, 400, [48, 12, 40], 300),
            Shape::ok(100, 500, [52, 8, 40], 400),
            failed,
            Shape::ok(200, 600, [60, 20, 72], 548),
            Shape::ok(300, 700, [80, 32, 88], 800),
        ];
        for (i, shape) in shapes.iter().enumerate() {
            h.play(Some(&run), &format!("r-{i}"), shape);
        }
        drop(run);
    });
}

#[test]
fn issue9_2_the_distributions_table_follows_a_runs_summary() {
    let h = Harness::with_sinks();
    small_run(&h);
    let console = h.console();
    let titles: Vec<&str> = console
        .lines()
        .filter(|l| l.starts_with("Overall Summary") || l.starts_with("Distributions"))
        .collect();
    assert_eq!(
        titles,
        ["Overall Summary (scope run-d)", "Distributions"],
        "{console}"
    );
    let table = section(&console, "Distributions").unwrap_or_default();
    // Stage 1 has no queue: its all-zero row is left out, as in the stage table.
    let want = [
        ["Field", "count", "mean", "p50", "p90", "p99", "max"],
        [
            "e2e_total_ms",
            "4",
            "1.375",
            "1.100",
            "2.000",
            "2.000",
            "2.000",
        ],
        [
            "stage_0_gen_time_ms",
            "4",
            "0.550",
            "0.500",
            "0.700",
            "0.700",
            "0.700",
        ],
        [
            "stage_0_queue_time_ms",
            "4",
            "0.175",
            "0.100",
            "0.300",
            "0.300",
            "0.300",
        ],
        [
            "stage_1_gen_time_ms",
            "4",
            "0.512",
            "0.400",
            "0.800",
            "0.800",
            "0.800",
        ],
        [
            "transfer_0->1_time_ms",
            "4",
            "0.138",
            "0.100",
            "0.200",
            "0.200",
            "0.200",
        ],
    ];
    assert_eq!(rows(&table), want.map(|r| r.map(str::to_owned)), "{table}");
    // Labels left, numbers right, as in the other tables.
    assert!(
        table.contains("| e2e_total_ms          |     4 | 1.375 |"),
        "{table}"
    );
    // The table is followed by a blank line, like every report.
    assert!(console.ends_with("|\n\n"), "{console:?}");
    // The summary table itself is as before.
    let summary = section(&console, "Overall Summary").unwrap_or_default();
    assert_eq!(rows(&summary)[1], ["e2e_requests", "4"]);
    assert_eq!(
        rows(&summary).last().map(|r| r[0].as_str()),
        Some("e2e_requests_error")
    );
}

#[test]
fn issue9_2_rendering_shows_the_table_only_for_two_requests_or_more() {
    let h = Harness::new();
    small_run(&h);
    let mut summary = h.capture().summaries().pop().unwrap_or_default();
    let rendered = summary.to_string();
    assert!(rendered.contains("\nDistributions\n"), "{rendered}");
    assert!(rendered.ends_with(&format!(
        "{}\n\n",
        section(&rendered, "Distributions").unwrap_or_default()
    )));
    summary.e2e_requests = 1;
    let rendered = summary.to_string();
    assert!(!rendered.contains("Distributions"), "{rendered}");
    assert_eq!(
        rendered,
        format!(
            "Overall Summary (scope run-d)\n{}\n\n",
            section(&rendered, "Overall Summary").unwrap_or_default()
        )
    );
}

#[test]
fn issue9_2_online_requests_print_no_distributions() {
    let h = Harness::with_sinks();
    h.run(|| {
        for i in 0..3 {
            h.play(
                None,
                &format!("online-{i}"),
                &Shape::ok(10, 2_000, [5, 1, 7], 900 + i),
            );
        }
    });
    let console = h.console();
    assert_eq!(console.matches("Overall Summary").count(), 3, "{console}");
    assert!(!console.contains("Distributions"), "{console}");
    // Each online summary still carries its one request in the struct.
    for summary in h.capture().summaries() {
        assert_eq!(
            summary
                .distributions
                .get(Quantity::RequestLatency)
                .map(|s| s.count),
            Some(1)
        );
    }
}

#[test]
fn issue9_2_a_run_of_one_request_prints_as_before() {
    let h = Harness::with_sinks();
    h.run(|| {
        let run = Run::with_id("run-1");
        h.play(Some(&run), "only", &Shape::ok(10, 2_000, [5, 1, 7], 900));
        let mut failed = Shape::ok(10, 2_000, [5, 1, 7], 900);
        failed.status = Status::Aborted;
        h.play(Some(&run), "gone", &failed);
    });
    let console = h.console();
    assert!(
        console.contains("Overall Summary (scope run-1)"),
        "{console}"
    );
    assert!(!console.contains("Distributions"), "{console}");
}
