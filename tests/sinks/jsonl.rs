//! Item 10: JSON lines are never torn or glued, a rotated or deleted file is reopened, and
//! lost records are counted.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use omni_metrics::{MetricsHandle, OmniMetricsLayer};
use tracing_subscriber::prelude::*;

use crate::support::{SharedBuf, is_child, run_child, seed_like_request};

/// Runs `requests` online requests through a layer with only the JSON-lines sink, then
/// flushes.
fn online_requests(layer: OmniMetricsLayer, ids: &[&str]) -> MetricsHandle {
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        for id in ids {
            seed_like_request(id);
        }
    });
    handle
        .flush(Duration::from_secs(10))
        .expect("the writer finished");
    handle
}

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("omni-metrics-sinks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

fn request_ids(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "request")
        .map(|v| v["request_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Accepts bytes until `out` holds `fail_at` of them, then fails `failures` write calls
/// (ENOSPC), then accepts again: a disk that fills up mid-line and is then cleaned.
#[derive(Clone)]
struct FillsUp {
    out: SharedBuf,
    fail_at: usize,
    failures: Arc<Mutex<u32>>,
}

impl Write for FillsUp {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let len = self.out.0.lock().map(|o| o.len()).unwrap_or_default();
        let mut failures = self
            .failures
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?;
        if len >= self.fail_at && *failures > 0 {
            *failures -= 1;
            return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
        }
        let room = if *failures > 0 {
            self.fail_at - len
        } else {
            b.len()
        };
        self.out.write(&b[..room.min(b.len())])
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A layer with only the JSON-lines sink, on a clock that stands still (records of the
/// same ids have the same length).
fn jsonl_layer(writer: impl Write + Send + 'static) -> OmniMetricsLayer {
    OmniMetricsLayer::builder()
        .with_console(false)
        .with_clock(omni_metrics::testing::ManualClock::new())
        .with_jsonl(omni_metrics::Destination::writer(writer))
        .build()
        .expect("no file")
}

#[test]
fn issue6_10_a_failed_write_never_glues_two_records() {
    let probe = SharedBuf::default();
    online_requests(jsonl_layer(probe.clone()), &["a"]);
    let summary_len = probe.text().lines().next().map_or(0, str::len) + 1;
    // The disk fills 100 bytes into the second record (a request's, after its summary).
    let out = SharedBuf::default();
    let layer = jsonl_layer(FillsUp {
        out: out.clone(),
        fail_at: summary_len + 100,
        failures: Arc::new(Mutex::new(1)),
    });
    let handle = online_requests(layer, &["a", "b", "c"]);
    let text = out.text();
    let lines: Vec<&str> = text.lines().collect();
    // summary a, torn request a, then b's and c's records, each on its own line.
    assert_eq!(lines.len(), 6, "{text}");
    assert_eq!(lines[1].len(), 100, "the torn fragment stays alone: {text}");
    for (i, line) in lines.iter().enumerate().filter(|(i, _)| *i != 1) {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "line {i} is not one record: {line}"
        );
    }
    assert_eq!(request_ids(&text), ["b", "c"]);
    assert_eq!(handle.sink_losses().jsonl_failed, 1);
}

#[test]
fn issue6_10_a_rotated_or_deleted_file_is_reopened() {
    let path = temp_path("rotated.jsonl");
    let layer = OmniMetricsLayer::builder()
        .with_console(false)
        .with_jsonl(&path)
        .build()
        .expect("the temp file opens");
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let flush = || handle.flush(Duration::from_secs(10)).expect("written");
    tracing::dispatcher::with_default(&dispatch, || seed_like_request("before"));
    flush();
    // logrotate's default: rename, then the writer must create the file again.
    let rotated = path.with_extension("jsonl.1");
    std::fs::rename(&path, &rotated).expect("rename");
    tracing::dispatcher::with_default(&dispatch, || seed_like_request("after-rename"));
    flush();
    // Deleted outright.
    let deleted = std::fs::read_to_string(&path).expect("the file was created again");
    std::fs::remove_file(&path).expect("remove");
    tracing::dispatcher::with_default(&dispatch, || seed_like_request("after-delete"));
    flush();
    let old = std::fs::read_to_string(&rotated).expect("rotated file");
    let new = std::fs::read_to_string(&path).expect("the file was created again");
    assert_eq!(request_ids(&old), ["before"]);
    assert_eq!(request_ids(&deleted), ["after-rename"]);
    assert_eq!(request_ids(&new), ["after-delete"]);
    assert_eq!(handle.sink_losses().total(), 0);
    let _ = std::fs::remove_file(&rotated);
    let _ = std::fs::remove_file(&path);
}

#[cfg(target_os = "linux")]
#[test]
fn issue6_10_records_lost_on_a_full_device_are_counted() {
    let layer = OmniMetricsLayer::builder()
        .with_console(false)
        .with_jsonl("/dev/full")
        .build()
        .expect("/dev/full opens");
    let handle = online_requests(layer, &["a", "b", "c"]);
    let losses = handle.sink_losses();
    assert_eq!(losses.jsonl_failed, 6, "{losses:?}");
    assert_eq!(losses.total(), 6);
}

#[cfg(target_os = "linux")]
const FILE_LIMIT: &str = "jsonl::issue6_10_a_file_that_fills_up_keeps_only_whole_lines";

/// A real file that cannot grow past a limit (RLIMIT_FSIZE, in a child process): the write
/// that crosses it is partial, and the partial line must be removed.
#[cfg(target_os = "linux")]
#[test]
fn issue6_10_a_file_that_fills_up_keeps_only_whole_lines() {
    const LIMIT: u64 = 3_000;
    if is_child(FILE_LIMIT) {
        let path = std::env::var("OMNI_METRICS_TEST_FILE").expect("set by the parent");
        let layer = OmniMetricsLayer::builder()
            .with_console(false)
            .with_jsonl(&path)
            .build()
            .expect("the file opens");
        // SAFETY: plain libc calls; ignoring SIGXFSZ makes an oversized write fail with EFBIG
        // instead of killing the process.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: libc::RLIM_INFINITY,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
        }
        let ids: Vec<String> = (0..20).map(|i| format!("r-{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let handle = online_requests(layer, &ids);
        println!("RESULT jsonl_failed={}", handle.sink_losses().jsonl_failed);
        return;
    }
    let path = temp_path("limited.jsonl");
    let path_text = path.to_string_lossy().into_owned();
    let run = run_child(
        FILE_LIMIT,
        &[("OMNI_METRICS_TEST_FILE", &path_text)],
        Stdio::null(),
        Duration::from_secs(60),
    )
    .expect("the child finished");
    assert!(run.success, "child failed:\n{}", run.stdout);
    let text = std::fs::read_to_string(&path).expect("the file");
    let _ = std::fs::remove_file(&path);
    assert!(text.len() as u64 <= LIMIT);
    assert!(text.ends_with('\n'), "no torn last line: {text}");
    let written = text.lines().count() as u64;
    for line in text.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "a torn line: {line}"
        );
    }
    assert!(written > 0 && written < 40, "{written} lines");
    assert_eq!(
        run.value("jsonl_failed"),
        40 - written,
        "every record that is not in the file is counted"
    );
}
