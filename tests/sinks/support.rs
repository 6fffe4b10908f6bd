//! Shared helpers: a shared in-memory writer, a time limit for scenarios that could hang,
//! the test binary re-run as a child process, and one request of the seed's shape.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use omni_metrics::instrument::Request;

#[path = "../support/shared_buf.rs"]
mod shared_buf;
pub(crate) use shared_buf::SharedBuf;

/// Runs `f` on its own thread and waits at most `limit` for it: `None` if it did not
/// finish (it is then left blocked; the test fails instead of hanging).
pub(crate) fn within<R: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> R + Send + 'static,
) -> Option<R> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

/// Set in a child run of this test binary: which scenario the child plays.
pub(crate) const CHILD_ENV: &str = "OMNI_METRICS_TEST_CHILD";

/// Whether this process is the child run of `test` (a full test path, e.g.
/// `stderr::issue6_5_full_stderr_pipe_does_not_hang_the_engine`).
pub(crate) fn is_child(test: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|v| v == test)
}

/// What a child run printed, and how it ended.
#[derive(Debug)]
pub(crate) struct ChildRun {
    pub(crate) stdout: String,
    pub(crate) success: bool,
}

impl ChildRun {
    /// The value of `key=` on the child's `RESULT ` lines.
    #[track_caller]
    pub(crate) fn value(&self, key: &str) -> u64 {
        let prefix = format!("{key}=");
        self.stdout
            .lines()
            // libtest's "test name ... " may precede it on the same line.
            .filter_map(|l| l.find("RESULT ").map(|at| &l[at..]))
            .flat_map(|l| l.split_whitespace())
            .find_map(|w| w.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("the child printed no {key}=:\n{}", self.stdout))
    }
}

/// Re-runs this test binary with only `test`, as the child (`CHILD_ENV = test`), with
/// `env` added and `stderr` as given (a pipe nobody reads, to make stderr full). Kills it
/// and returns `None` after `limit`.
pub(crate) fn run_child(
    test: &str,
    env: &[(&str, &str)],
    stderr: Stdio,
    limit: Duration,
) -> Option<ChildRun> {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = Command::new(exe);
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    for var in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OMNI_METRICS_JSONL",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("re-run the test binary");
    // Read stdout on a thread so a chatty child cannot block on it.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => break None,
        }
    };
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    };
    // Keep the unread stderr pipe open until the child is gone, then close it.
    drop(child);
    let stdout = reader.join().unwrap_or_default();
    Some(ChildRun {
        stdout,
        success: status.success(),
    })
}

/// One request of the seed's shape: three named stages in batches, two transfers.
pub(crate) fn seed_like_request(id: &str) {
    let request = Request::start(id);
    for (stage_id, name) in [(0, "thinker"), (1, "talker"), (2, "code2wav")] {
        let stage = request.stage(stage_id);
        stage
            .name(name)
            .batch(stage_id, 1)
            .tokens_in(100)
            .tokens_out(10);
        drop(stage.postprocess());
    }
    for (from, to) in [(0, 1), (1, 2)] {
        let transfer = request.transfer(from, to);
        transfer.size_bytes(4096);
        drop(transfer.tx());
        drop(transfer.rx_decode());
    }
    request.finish();
}

/// What a layer built by `configure` (given the in-memory writer to use) wrote for the spans
/// `requests` makes, once its writers have flushed.
pub(crate) fn written(
    configure: impl FnOnce(SharedBuf) -> omni_metrics::Builder,
    requests: impl FnOnce(),
) -> String {
    use tracing_subscriber::prelude::*;
    let buf = SharedBuf::default();
    let layer = configure(buf.clone()).build().expect("no file");
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, requests);
    handle.flush(Duration::from_secs(10)).expect("written");
    buf.text()
}
