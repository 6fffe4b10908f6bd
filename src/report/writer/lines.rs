//! A writer thread for lines serialized elsewhere: the trace file's
//! ([`crate::otlp::OtlpBuilder::with_trace_file`]). The same bounded queue, flush and
//! once-only loss reports as the built-in sinks' lanes, and the same file handling as the
//! JSON lines ([`JsonLinesSink`]: opened without following another user's link, no partial
//! line left after a failed write, reopened after log rotation).
//!
//! The caller (the SDK's batch thread) serializes; this thread only writes. A line that does
//! not fit in the queue is dropped, never waited for. What became of each line's items is
//! told to a [`Delivery`]; the first loss of each kind is said once, as a `WARN` event
//! (target `omni_metrics::diagnostics`) in the subscriber registered with
//! [`LineWriter::register`].

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::{FlushError, JsonLinesSink, WriterState, attempt};
use crate::queue::{Queue, Work};

/// Counts what became of the items (spans) of each line.
pub(crate) trait Delivery: Send + Sync + 'static {
    /// The `items` of one line were written (`true`), or their write failed (`false`).
    fn delivered(&self, items: u64, written: bool);
}

/// One line, with its newline, and the number of items it holds.
struct Line {
    bytes: Vec<u8>,
    items: u64,
}

/// The loss bits of [`WriterState::reported`] for this writer (the built-in sinks' `Loss`
/// bits are not used by it).
const QUEUE_FULL_REPORTED: u8 = 32;
const WRITE_FAILED_REPORTED: u8 = 64;

/// The caller's side of a lines writer: [`send`](Self::send) never blocks.
pub(crate) struct LineWriter {
    /// `None` once closed.
    queue: Mutex<Option<Queue<Line>>>,
    state: Arc<WriterState>,
    path: PathBuf,
}

impl std::fmt::Debug for LineWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineWriter")
            .field("path", &self.path)
            .field("capacity", &self.state.capacity)
            .finish_non_exhaustive()
    }
}

impl LineWriter {
    /// Starts the thread `name` appending to the file at `path`, from a queue of `capacity`
    /// lines (at least 1); each line's outcome is told to `delivery`.
    ///
    /// # Errors
    ///
    /// The file cannot be opened for appending, or the thread cannot start.
    pub(crate) fn start(
        path: &Path,
        capacity: usize,
        delivery: Arc<dyn Delivery>,
        name: &str,
    ) -> io::Result<Self> {
        let sink = JsonLinesSink::append_to(path)?;
        let capacity = capacity.max(1);
        let state = Arc::new(WriterState::new(capacity));
        let work = LineWork {
            sink,
            delivery,
            state: state.clone(),
            path: path.to_owned(),
        };
        let (queue, started) = Queue::spawn(name, capacity, &state.progress, true, work);
        started?;
        Ok(Self {
            queue: Mutex::new(Some(queue)),
            state,
            path: path.to_owned(),
        })
    }

    /// Remembers the subscriber where losses are said (the first one wins).
    pub(crate) fn register(&self, dispatch: &tracing::Dispatch) {
        self.state.register(dispatch);
    }

    /// Queues `bytes` (one line, with its newline) holding `items` items; never blocks.
    /// `false` when the queue is full or the writer closed: the line is dropped, and the
    /// first such loss is said.
    pub(crate) fn send(&self, bytes: Vec<u8>, items: u64) -> bool {
        let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(queue) = queue.as_ref() else {
            return false;
        };
        let sent = queue.push(Line { bytes, items });
        if !sent {
            self.queue_full();
        }
        sent
    }

    /// Says, once, that lines are dropped because the queue is full.
    fn queue_full(&self) {
        if !self.state.first_report(QUEUE_FULL_REPORTED) {
            return;
        }
        let _ = self.state.report(format!(
            "the trace file's writer cannot keep up (`{}`, {} batches queued): batches of \
             spans are dropped instead of slowing the engine. Write the file to a faster disk, \
             or raise OTEL_BSP_MAX_QUEUE_SIZE (the queue holds as many spans). The tables and \
             records are complete; every span lost is counted in \
             `OtlpGuard::trace_file_stats` (reported once)",
            self.path.display(),
            self.state.capacity
        ));
    }

    /// Waits until every line queued before the call is written (or failed), at most
    /// `timeout`.
    pub(crate) fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        self.state.flush(timeout)
    }

    /// Stops taking lines, and waits at most `timeout` for those queued to be written;
    /// safe to call twice.
    pub(crate) fn close(&self, timeout: Duration) -> Result<(), FlushError> {
        drop(
            self.queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        self.state.flush(timeout)
    }
}

/// The writer thread: writes each line, tells `delivery` what became of it.
struct LineWork {
    sink: JsonLinesSink,
    delivery: Arc<dyn Delivery>,
    state: Arc<WriterState>,
    path: PathBuf,
}

impl Work<Line> for LineWork {
    fn handle(&mut self, line: Line) {
        let result = attempt(|| self.sink.write_line(&line.bytes));
        self.delivery.delivered(line.items, result.is_ok());
        if let Err(error) = result {
            write_failed(&self.state, &self.path, &error);
        }
    }
}

/// Says, once, that a write failed.
fn write_failed(state: &WriterState, path: &Path, error: &io::Error) {
    if !state.first_report(WRITE_FAILED_REPORTED) {
        return;
    }
    let _ = state.report(format!(
        "cannot write the trace file `{}`: {error}; the spans of that batch are lost (no \
         partial line is left). Check the disk (space, permissions). The tables and records \
         are complete; every span lost is counted in `OtlpGuard::trace_file_stats` (reported \
         once)",
        path.display()
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    struct Counts {
        written: AtomicU64,
        failed: AtomicU64,
    }

    impl Delivery for Counts {
        fn delivered(&self, items: u64, written: bool) {
            let counter = if written { &self.written } else { &self.failed };
            counter.fetch_add(items, Ordering::Relaxed);
        }
    }

    #[test]
    fn lines_are_appended_and_counted() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("trace.jsonl");
        let counts = Arc::new(Counts::default());
        let writer =
            LineWriter::start(&path, 4, counts.clone(), "test-lines").expect("the writer starts");
        assert!(writer.send(b"{\"a\":1}\n".to_vec(), 3));
        assert!(writer.send(b"{\"b\":2}\n".to_vec(), 2));
        writer
            .close(Duration::from_secs(10))
            .expect("written in time");
        assert!(!writer.send(b"{}\n".to_vec(), 1), "closed");
        assert_eq!(
            std::fs::read_to_string(&path).ok().as_deref(),
            Some("{\"a\":1}\n{\"b\":2}\n")
        );
        assert_eq!(counts.written.load(Ordering::Relaxed), 5);
        assert_eq!(counts.failed.load(Ordering::Relaxed), 0);
    }

    /// A reader that never reads (a FIFO whose pipe is full): the writer blocks, the queue
    /// fills, and what does not fit is dropped at once, not waited for. When the reader goes,
    /// the writes fail and are counted.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_queue_drops_lines_without_waiting() {
        use std::os::unix::fs::OpenOptionsExt as _;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("a path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .expect("the reading end");
        let counts = Arc::new(Counts::default());
        let writer =
            LineWriter::start(&path, 2, counts.clone(), "test-lines").expect("the writer starts");
        // Larger than a pipe's buffer: the first write blocks.
        let line = |c: u8| {
            let mut bytes = vec![c; 256 * 1024];
            bytes.push(b'\n');
            bytes
        };
        let started = std::time::Instant::now();
        let sent: Vec<bool> = (0..6).map(|i| writer.send(line(b'a' + i), 1)).collect();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "send never waits for the writer"
        );
        let dropped = sent.iter().filter(|s| !**s).count();
        assert!(
            dropped >= 6 - 3,
            "one line in the write, two queued, the rest dropped: {sent:?}"
        );
        drop(reader);
        writer
            .close(Duration::from_secs(10))
            .expect("done once the reader is gone");
        let (written, failed) = (
            counts.written.load(Ordering::Relaxed),
            counts.failed.load(Ordering::Relaxed),
        );
        assert_eq!(
            written + failed,
            (6 - dropped) as u64,
            "every line queued is counted"
        );
        assert!(failed >= 1, "the blocked write fails when the reader goes");
    }

    /// A device that refuses every write: each line's items are counted as failed.
    #[cfg(target_os = "linux")]
    #[test]
    fn failed_writes_are_counted() {
        let counts = Arc::new(Counts::default());
        let writer = LineWriter::start(Path::new("/dev/full"), 4, counts.clone(), "test-lines")
            .expect("/dev/full opens");
        assert!(writer.send(b"{}\n".to_vec(), 7));
        writer.close(Duration::from_secs(10)).expect("done in time");
        assert_eq!(counts.written.load(Ordering::Relaxed), 0);
        assert_eq!(counts.failed.load(Ordering::Relaxed), 7);
    }
}
