//! Item 5: a full stderr pipe must not hang the engine with the default `init()`; dropping
//! the guard flushes queued records within its time limit. Each scenario runs in a child
//! process (one global subscriber each, and a hang becomes a time-out, not a stuck suite).

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{is_child, run_child, seed_like_request};

const FULL_STDERR: &str = "stderr::issue6_5_full_stderr_pipe_does_not_hang_the_engine";

/// More records than the default queue holds: an online request sends two.
const FULL_STDERR_REQUESTS: u64 = 5_000;

#[test]
fn issue6_5_full_stderr_pipe_does_not_hang_the_engine() {
    if is_child(FULL_STDERR) {
        // The child: default install (console on stderr, a pipe nobody reads).
        let guard = omni_metrics::init().expect("the child's only install");
        let handle = guard.metrics().clone();
        for i in 0..FULL_STDERR_REQUESTS {
            seed_like_request(&format!("r-{i}"));
        }
        let losses = handle.sink_losses();
        println!(
            "RESULT requests_ok={} queue_full={} console_failed={}",
            handle.totals().requests_ok,
            losses.queue_full,
            losses.console_failed
        );
        let start = Instant::now();
        drop(guard);
        println!("RESULT guard_drop_ms={}", start.elapsed().as_millis());
        return;
    }
    let run = run_child(FULL_STDERR, &[], Stdio::piped(), Duration::from_secs(30))
        .expect("the engine hung on a full stderr pipe (child killed after 30 s)");
    assert!(run.success, "child failed:\n{}", run.stdout);
    assert_eq!(run.value("requests_ok"), FULL_STDERR_REQUESTS);
    // Stderr filled up, so records were dropped, counted, not waited for.
    assert!(run.value("queue_full") > 0, "{}", run.stdout);
    // The guard waits for the blocked writer at most its time limit (+ the loss report's).
    let limit = omni_metrics::OmniMetricsLayer::FLUSH_TIMEOUT.as_millis() as u64 + 1_000;
    assert!(run.value("guard_drop_ms") <= limit, "{}", run.stdout);
}

const GUARD_FLUSH: &str = "stderr::issue6_5_dropping_the_guard_writes_every_queued_record";

/// Fewer records than the queue holds, so none may be lost.
const GUARD_FLUSH_REQUESTS: u64 = 500;

#[test]
fn issue6_5_dropping_the_guard_writes_every_queued_record() {
    if is_child(GUARD_FLUSH) {
        // The child: default install, records to OMNI_METRICS_JSONL (set by the parent).
        let guard = omni_metrics::init().expect("the child's only install");
        for i in 0..GUARD_FLUSH_REQUESTS {
            seed_like_request(&format!("r-{i}"));
        }
        let handle = guard.metrics().clone();
        drop(guard); // no explicit flush: the guard's drop writes what is queued
        let losses = handle.sink_losses();
        println!("RESULT lost={}", losses.total());
        return;
    }
    let parent_path = std::env::temp_dir().join(format!(
        "omni-metrics-guard-flush-{}.jsonl",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&parent_path);
    let path_text = parent_path.to_string_lossy().into_owned();
    let run = run_child(
        GUARD_FLUSH,
        &[("OMNI_METRICS_JSONL", &path_text)],
        Stdio::null(),
        Duration::from_secs(60),
    )
    .expect("the child finished");
    assert!(run.success, "child failed:\n{}", run.stdout);
    assert_eq!(run.value("lost"), 0);
    let text = std::fs::read_to_string(&parent_path).expect("records written");
    let _ = std::fs::remove_file(&parent_path);
    // An online request writes a summary and a request record.
    assert_eq!(text.lines().count() as u64, 2 * GUARD_FLUSH_REQUESTS);
}
