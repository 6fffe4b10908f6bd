//! The metrics doors' hand-off: the engine's thread walks a finished request's observations
//! into a pooled buffer and queues it; a recorder thread of the door records them.
//!
//! Recording into a metrics library takes its locks (per-series locks the Prometheus
//! scrape holds while it formats; the OpenTelemetry SDK's per-instrument maps), so it never
//! happens on the engine's thread. The queue is bounded and never waited on: a request
//! that does not fit is dropped, counted and said once. In a steady state the engine's
//! thread allocates nothing (the recorder gives its buffers back).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::catalog::{LabelValues, MetricDef, observe};
use crate::stats::RequestE2EStats;

/// One observation, as the catalogue made it.
pub(crate) type Observation = (&'static MetricDef, LabelValues, f64);

/// A finished request's observations, and the trace it was exported in (W3C trace id,
/// 32 lowercase hex digits), for exemplars.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) observations: Vec<Observation>,
    /// Read by the Prometheus door (the OpenTelemetry SDK records no exemplars).
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    pub(crate) trace_id: Option<[u8; 32]>,
}

/// What a door does with each batch, on its recorder thread.
pub(crate) trait Record: Send + Sync + 'static {
    fn record(&self, batch: &Batch);
}

enum Message {
    Request(Batch),
    /// Answered once everything queued before it is recorded.
    Barrier(mpsc::Sender<()>),
}

/// Buffers the recorder gives back, for the engine's threads to fill again. Neither side
/// ever waits on the lock (`try_lock`: a buffer is allocated, or dropped, instead).
#[derive(Default)]
struct Pool(Mutex<Vec<Vec<Observation>>>);

/// Buffers kept in the [`Pool`], at most.
const POOL_BUFFERS: usize = 64;
/// Observations a pooled buffer holds at most: a longer one (a stage that streamed
/// thousands of outputs) is freed, not kept.
const POOL_BUFFER_CAPACITY: usize = 256;

impl Pool {
    fn take(&self, capacity: usize) -> Vec<Observation> {
        self.0
            .try_lock()
            .ok()
            .and_then(|mut buffers| buffers.pop())
            .unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    fn give_back(&self, mut buffer: Vec<Observation>) {
        if buffer.capacity() > POOL_BUFFER_CAPACITY {
            return;
        }
        buffer.clear();
        if let Ok(mut buffers) = self.0.try_lock() {
            if buffers.len() < POOL_BUFFERS {
                buffers.push(buffer);
            }
        }
    }
}

/// The engine's side of a door's recorder thread.
pub(crate) struct ObservationQueue {
    tx: SyncSender<Message>,
    pool: Arc<Pool>,
    capacity: usize,
    dropped: AtomicU64,
    said_full: AtomicBool,
    /// Said once when the queue is first full (names the door and its counter).
    full_message: &'static str,
}

impl std::fmt::Debug for ObservationQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservationQueue")
            .field("capacity", &self.capacity)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl ObservationQueue {
    /// Starts the recorder thread `name`, recording with `recorder`; at most `capacity`
    /// requests wait.
    pub(crate) fn start(
        name: &str,
        capacity: usize,
        recorder: Arc<dyn Record>,
        full_message: &'static str,
    ) -> std::io::Result<Self> {
        let pool = Arc::new(Pool::default());
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        let thread_pool = pool.clone();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                for message in rx {
                    match message {
                        Message::Request(batch) => {
                            recorder.record(&batch);
                            thread_pool.give_back(batch.observations);
                        }
                        Message::Barrier(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })?;
        Ok(Self {
            tx,
            pool,
            capacity,
            dropped: AtomicU64::new(0),
            said_full: AtomicBool::new(false),
            full_message,
        })
    }

    /// Queues `request`'s observations (with its trace id when `exemplars`); never waits.
    pub(crate) fn push(&self, request: &RequestE2EStats, exemplars: bool) {
        // 8 per request, 8 per stage and 5 per edge cover most requests without growing;
        // streamed stages add one per output gap.
        let mut observations = self
            .pool
            .take(8 + 8 * request.stages.len() + 5 * request.transfers.len());
        observe(request, |def, labels, value| {
            observations.push((def, labels, value));
        });
        let trace_id = if exemplars {
            request.trace_id.as_deref().and_then(parse_trace_id)
        } else {
            None
        };
        let batch = Batch {
            observations,
            trace_id,
        };
        if self.tx.try_send(Message::Request(batch)).is_err() {
            let dropped = self
                .dropped
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1);
            if !self.said_full.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    target: "omni_metrics::metrics",
                    dropped,
                    capacity = self.capacity,
                    "{}",
                    self.full_message
                );
            }
        }
    }

    /// Requests dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every request queued so far is recorded, until `deadline`; `false` if
    /// it gave up.
    pub(crate) fn drain(&self, deadline: Instant) -> bool {
        let (done_tx, done_rx) = mpsc::channel();
        let mut barrier = Message::Barrier(done_tx);
        loop {
            match self.tx.try_send(barrier) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    barrier = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return false,
            }
        }
        done_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

/// A W3C trace id: 32 hex digits, not all zero, lowercased; anything else is `None`.
pub(crate) fn parse_trace_id(id: &str) -> Option<[u8; 32]> {
    let bytes: [u8; 32] = id.as_bytes().try_into().ok()?;
    let valid = bytes.iter().all(u8::is_ascii_hexdigit) && bytes.iter().any(|b| *b != b'0');
    valid.then(|| bytes.map(|b| b.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::StageRequestStats;

    struct Count(AtomicU64);
    impl Record for Count {
        fn record(&self, batch: &Batch) {
            self.0
                .fetch_add(batch.observations.len() as u64, Ordering::Relaxed);
        }
    }

    #[test]
    fn queued_requests_are_recorded_by_the_drain() {
        let count = Arc::new(Count(AtomicU64::new(0)));
        let queue = ObservationQueue::start("test-recorder", 16, count.clone(), "full").unwrap();
        let request = RequestE2EStats {
            stages: vec![StageRequestStats::default()],
            ..Default::default()
        };
        let mut expected = 0;
        observe(&request, |_, _, _| expected += 1);
        for _ in 0..10 {
            queue.push(&request, false);
        }
        assert!(queue.drain(Instant::now() + Duration::from_secs(10)));
        assert_eq!(count.0.load(Ordering::Relaxed), 10 * expected);
        assert_eq!(queue.dropped(), 0);
    }

    #[test]
    fn trace_ids_are_checked() {
        assert!(parse_trace_id("0af7651916cd43dd8448eb211c80319c").is_some());
        assert_eq!(
            parse_trace_id("0AF7651916CD43DD8448EB211C80319C").map(|b| b[1]),
            Some(b'a')
        );
        assert!(parse_trace_id(&"0".repeat(32)).is_none());
        assert!(parse_trace_id("xyz").is_none());
    }
}
