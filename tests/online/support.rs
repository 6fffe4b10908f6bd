//! Shared helpers: the crate's testing harness (the real layer on a scoped subscriber, a
//! manual clock), the console in memory, and online requests of a known shape.

use std::time::{Duration, Instant};

use omni_metrics::instrument::{Request, Run};
use omni_metrics::{Builder, testing};

#[path = "../support/shared_buf.rs"]
mod shared_buf;
pub(crate) use shared_buf::SharedBuf;

/// The crate's testing harness; the console (off unless `configure` turns it on with
/// [`Harness::with_console`]) written to memory.
pub(crate) struct Harness {
    inner: testing::Harness,
    pub(crate) console: SharedBuf,
}

impl std::ops::Deref for Harness {
    type Target = testing::Harness;

    fn deref(&self) -> &testing::Harness {
        &self.inner
    }
}

impl Harness {
    pub(crate) fn new() -> Self {
        Self::with(|b| b)
    }

    /// With more configuration; `configure` gets the builder and the console's buffer.
    pub(crate) fn with(configure: impl FnOnce(Builder) -> Builder) -> Self {
        Self::with_console(|b, _| configure(b))
    }

    pub(crate) fn with_console(configure: impl FnOnce(Builder, SharedBuf) -> Builder) -> Self {
        let console = SharedBuf::default();
        let buffer = console.clone();
        let inner = testing::Harness::with(move |builder| configure(builder, buffer));
        Self { inner, console }
    }

    /// Sets the clock to `ms` milliseconds.
    pub(crate) fn at(&self, ms: f64) {
        self.clock().set_ns(ns(ms));
    }

    /// What the console printed, once the writer has written what is queued.
    pub(crate) fn console(&self) -> String {
        self.handle()
            .flush(Duration::from_secs(10))
            .expect("the console writer finished");
        self.console.text()
    }

    /// Waits (at most 10 s) until the console shows `needle`; returns what it shows.
    pub(crate) fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.console.text();
            if text.contains(needle) || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Plays an online request (or one of `run`) that takes `ms` on the clock: one stage
    /// of `tokens_in` in and 10 out, and it ends with `status`. Inside [`Harness::run`].
    pub(crate) fn play(
        &self,
        run: Option<&Run>,
        id: &str,
        ms: f64,
        tokens_in: u64,
        status: Status,
    ) {
        let request = match run {
            Some(run) => run.request(id),
            None => Request::start(id),
        };
        let stage = request.stage(0);
        stage.tokens_in(tokens_in).tokens_out(10);
        self.clock().advance_ms(ms);
        drop(stage);
        match status {
            Status::Ok => request.finish(),
            Status::Error => request.fail(),
            Status::Aborted => drop(request),
        }
    }
}

/// How a played request ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Ok,
    Error,
    Aborted,
}

pub(crate) fn ns(ms: f64) -> u64 {
    (ms * 1_000_000.0).round() as u64
}

/// Asserts `a` and `b` agree to within 1e-9 (relative to their size).
#[track_caller]
pub(crate) fn assert_close(a: f64, b: f64, what: &str) {
    let tol = 1e-9 * a.abs().max(b.abs()).max(1.0);
    assert!((a - b).abs() <= tol, "{what}: {a} != {b}");
}
