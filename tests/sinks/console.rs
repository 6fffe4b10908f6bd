//! Items 5 and 6 on the console: written off the engine's threads, never blocking it,
//! losses counted and reported; control characters escaped; huge cells capped.

use std::io::Write;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use omni_metrics::OmniMetricsLayer;
use omni_metrics::stats::{RequestE2EStats, StageRequestStats};
use tracing::info_span;
use tracing_subscriber::prelude::*;

use crate::support::{SharedBuf, seed_like_request, within, written};

/// The longest text a table cell or title shows, in characters: the report's cap.
const MAX_CELL_CHARS: usize = 256;

/// A thread's id and name.
type ThreadSeen = (std::thread::ThreadId, Option<String>);

/// A writer that notes the thread it runs on.
#[derive(Clone, Default)]
struct ThreadNote(Arc<Mutex<Vec<ThreadSeen>>>);

impl Write for ThreadNote {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let t = std::thread::current();
        if let Ok(mut seen) = self.0.lock() {
            seen.push((t.id(), t.name().map(str::to_owned)));
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn issue6_5_tables_and_records_are_written_off_the_engine_thread() {
    let (console, jsonl) = (ThreadNote::default(), ThreadNote::default());
    let layer = OmniMetricsLayer::builder()
        .with_console(omni_metrics::Destination::writer(console.clone()))
        .with_jsonl(omni_metrics::Destination::writer(jsonl.clone()))
        .build()
        .expect("no file");
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || seed_like_request("off-thread"));
    handle
        .flush(Duration::from_secs(10))
        .expect("records written");
    let engine = std::thread::current().id();
    for (what, note) in [("console", console), ("jsonl", jsonl)] {
        let seen = note.0.lock().map(|s| s.clone()).unwrap_or_default();
        assert!(!seen.is_empty(), "{what} got nothing");
        for (id, name) in seen {
            assert_ne!(id, engine, "{what} was written on the engine's thread");
            // Each built-in sink writes on a thread of its own.
            let thread = format!("omni-metrics-{what}");
            assert_eq!(name.as_deref(), Some(thread.as_str()), "{what}");
        }
    }
}

/// A console whose writes wait until the test opens the gate (drops the sender).
struct Gate(Mutex<Receiver<()>>);

impl Write for Gate {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.lock().map(|rx| rx.recv());
        Err(std::io::Error::other("gate closed"))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn gate() -> (Sender<()>, Gate) {
    let (tx, rx) = channel();
    (tx, Gate(Mutex::new(rx)))
}

/// Collects the `omni_metrics::diagnostics` warnings' messages.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message<'a>(&'a mut String);
        impl tracing::field::Visit for Message<'_> {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    *self.0 = format!("{v:?}");
                }
            }
        }
        if event.metadata().target() == "omni_metrics::diagnostics" {
            let mut text = String::new();
            event.record(&mut Message(&mut text));
            if let Ok(mut all) = self.0.lock() {
                all.push(text);
            }
        }
    }
}

impl Warnings {
    fn matching(&self, needle: &str) -> usize {
        let all = self.0.lock().map(|a| a.clone()).unwrap_or_default();
        all.iter().filter(|m| m.contains(needle)).count()
    }

    /// Waits up to 10 s for a warning containing `needle` (they are reported off-thread).
    fn wait_for(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.matching(needle) > 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

#[test]
fn issue6_5_a_blocked_console_never_blocks_the_engine() {
    let (open, console) = gate();
    let warnings = Warnings::default();
    let layer = OmniMetricsLayer::builder()
        .with_console(omni_metrics::Destination::writer(console))
        .with_queue_capacity(8)
        .build()
        .expect("no file");
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(layer)
            .with(warnings.clone()),
    );
    let engine = dispatch.clone();
    let finished = within(Duration::from_secs(20), move || {
        tracing::dispatcher::with_default(&engine, || {
            for i in 0..200 {
                seed_like_request(&format!("r-{i}"));
            }
        })
    });
    assert!(finished.is_some(), "the engine waited on a blocked console");
    assert_eq!(handle.totals().requests_ok, 200);
    let losses = handle.sink_losses();
    // 400 records (summary + request each); at most the queue and the one being written
    // got through.
    assert!(losses.queue_full >= 400 - 8 - 2, "{losses:?}");
    assert!(
        warnings.wait_for("with_queue_capacity"),
        "the first loss is reported as a warning saying what to do"
    );
    // Flushing a blocked writer gives up at its time limit.
    let start = Instant::now();
    let flushed = handle.flush(Duration::from_millis(200));
    assert!(flushed.is_err(), "the console is still blocked");
    assert!(start.elapsed() < Duration::from_secs(5));

    drop(open); // the console fails from now on: those writes are counted too
    handle
        .flush(Duration::from_secs(10))
        .expect("the writer drains once the console returns");
    let losses = handle.sink_losses();
    assert!(losses.console_failed >= 1, "{losses:?}");
    assert_eq!(
        losses.total(),
        losses.queue_full + losses.console_failed + losses.jsonl_failed
    );
    assert_eq!(
        warnings.matching("with_queue_capacity"),
        1,
        "a loss is reported once"
    );
    drop(dispatch);
}

/// Issue 6, item 5 (review): a blocked console does not hold up the JSON lines: each built-in
/// sink has a thread and a queue of its own.
#[test]
fn issue6_5_a_blocked_console_does_not_stop_the_json_lines() {
    let (open, console) = gate();
    let jsonl = SharedBuf::default();
    let layer = OmniMetricsLayer::builder()
        .with_console(omni_metrics::Destination::writer(console))
        .with_jsonl(omni_metrics::Destination::writer(jsonl.clone()))
        .with_queue_capacity(8)
        .build()
        .expect("no file");
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..100 {
            seed_like_request(&format!("r-{i}"));
            if i % 4 == 3 {
                // Let the JSON-lines thread drain its own queue of 8 (4 requests and their
                // summaries) before the next 4; a console that held it up would keep it
                // from draining, and the count below would fall short. Waited for, not
                // slept on: a busy machine may not run the thread within a fixed time.
                let want = 2 * (i + 1);
                let deadline = Instant::now() + Duration::from_secs(5);
                while jsonl.text().lines().count() < want && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while jsonl.text().lines().count() < 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        jsonl.text().lines().count(),
        200,
        "every record (summary + request) reached the JSON lines while the console was blocked"
    );
    assert!(handle.sink_losses().jsonl_failed == 0);
    drop(open);
    drop(dispatch);
}

/// Hostile text in every string the console prints.
const HOSTILE: &str = "r\n| e2e_requests | 999999 |\x1b[31m\r\u{9b}2J\x07\x7f\u{202e}";

#[test]
fn issue6_6_control_characters_never_reach_the_console() {
    let out = written(
        |buf| OmniMetricsLayer::builder().with_console(omni_metrics::Destination::writer(buf)),
        || {
            let run = info_span!("omni.run", run_id = HOSTILE);
            let request = info_span!(parent: &run, "omni.request", request_id = HOSTILE);
            drop(
                info_span!(parent: &request, "omni.stage", stage_id = 0, stage_name = HOSTILE,
            batch_id = 0, image_num = 1, resolution = HOSTILE, num_tokens_in = 1),
            );
            drop(request);
            drop(run);
        },
    );
    assert!(out.contains("RequestE2EStats"), "{out}");
    for bad in ['\x1b', '\u{9b}', '\r', '\x07', '\x7f', '\u{202e}'] {
        assert!(!out.contains(bad), "{bad:?} reached the console:\n{out}");
    }
    assert!(
        !out.lines()
            .any(|l| l.starts_with("| e2e_requests | 999999")),
        "a forged row:\n{out}"
    );
    // Each table row is a row: the only lines are titles, table rows and blank lines.
    for line in out.lines() {
        assert!(
            line.is_empty()
                || line.starts_with('|')
                || ["Overall Summary", "RequestE2EStats", "StageRequestStats"]
                    .iter()
                    .any(|t| line.starts_with(t)),
            "a line that is no part of a table: {line:?}\n{out}"
        );
    }
    // Escapes are visible, in the titles and in the cells.
    assert!(out.contains(r"RequestE2EStats (request r\n"), "{out}");
    assert!(out.contains(r"\x1b[31m\r\u{9b}2J\x07\x7f\u{202e}"), "{out}");
    assert!(
        out.contains(r"0 r\n"),
        "the stage's header is escaped too:\n{out}"
    );
}

#[test]
fn issue6_6_json_lines_escape_control_characters() {
    let out = written(
        |buf| {
            OmniMetricsLayer::builder()
                .with_console(false)
                .with_jsonl(omni_metrics::Destination::writer(buf))
        },
        || {
            let request = info_span!("omni.request", request_id = HOSTILE);
            drop(info_span!(parent: &request, "omni.stage", stage_id = 0, resolution = HOSTILE));
            drop(request);
        },
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    for line in lines {
        assert!(!line.chars().any(char::is_control), "{line:?}");
        let v: serde_json::Value = serde_json::from_str(line).expect("one JSON object a line");
        assert_eq!(v["scope"], HOSTILE, "the text itself survives, escaped");
    }
}

#[test]
fn issue6_5_huge_cells_and_titles_are_capped() {
    let huge = "x".repeat(4 << 20);
    let request = RequestE2EStats {
        request_id: huge.clone(),
        scope: huge.clone(),
        stages: vec![StageRequestStats {
            stage_id: 0,
            stage_name: Some(huge.as_str().into()),
            image_num: Some(1),
            resolution: Some(huge.clone()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let start = Instant::now();
    let out = request.to_string();
    let elapsed = start.elapsed();
    let cap = MAX_CELL_CHARS;
    assert!(out.len() < 20 * cap, "{} bytes rendered", out.len());
    assert!(out.contains("…"), "truncation is marked");
    assert!(
        out.contains("4,194,304 bytes"),
        "and says how long the text was"
    );
    assert!(
        !out.contains(&"x".repeat(cap + 1)),
        "no cell is longer than the cap"
    );
    // Deterministic bounds above; a generous one on time for a busy CI box.
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}
