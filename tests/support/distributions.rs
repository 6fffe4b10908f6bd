//! Shared helpers: the crate's testing harness (the real layer on a scoped subscriber with
//! a manual clock), with the console and JSON lines in memory, and requests of a fixed
//! shape whose every time is set in microseconds.

use std::time::Duration;

use omni_metrics::Destination;
use omni_metrics::instrument::Run;
use omni_metrics::testing;

#[path = "../support/shared_buf.rs"]
mod shared_buf;
use shared_buf::SharedBuf;

/// The crate's testing harness; with `sinks`, the console and JSON lines written to memory
/// too.
pub(crate) struct Harness {
    inner: testing::Harness,
    console: SharedBuf,
    jsonl: SharedBuf,
}

impl std::ops::Deref for Harness {
    type Target = testing::Harness;

    fn deref(&self) -> &testing::Harness {
        &self.inner
    }
}

impl Harness {
    /// Captured only (no writer threads).
    pub(crate) fn new() -> Self {
        Self::build(false)
    }

    /// Captured, and the console and JSON lines written to memory.
    pub(crate) fn with_sinks() -> Self {
        Self::build(true)
    }

    fn build(sinks: bool) -> Self {
        let (console, jsonl) = (SharedBuf::default(), SharedBuf::default());
        let inner = if sinks {
            let (c, j) = (console.clone(), jsonl.clone());
            testing::Harness::with(move |builder| {
                builder
                    .with_console(Destination::writer(c))
                    .with_jsonl(Destination::writer(j))
            })
        } else {
            testing::Harness::new()
        };
        Self {
            inner,
            console,
            jsonl,
        }
    }

    /// What the console printed.
    pub(crate) fn console(&self) -> String {
        self.flush();
        self.console.text()
    }

    /// The JSON lines written, as text.
    pub(crate) fn jsonl(&self) -> String {
        self.flush();
        self.jsonl.text()
    }

    fn flush(&self) {
        self.handle()
            .flush(Duration::from_secs(10))
            .expect("the writers finished");
    }

    /// Plays one request of `shape` in `run` (or online without one), on this harness's
    /// clock, which must be inside [`Harness::run`].
    pub(crate) fn play(&self, run: Option<&Run>, id: &str, shape: &Shape) {
        use omni_metrics::instrument::Request;
        let step = |us: u64| self.clock().advance_ns(us * 1_000);
        let request = match run {
            Some(run) => run.request(id),
            None => Request::start(id),
        };
        let stage = request.stage(0);
        let queue = stage.queue();
        step(shape.queue0_us);
        drop(queue);
        step(shape.gen0_us);
        drop(stage);
        if shape.second_stage {
            let transfer = request.transfer(0, 1);
            let tx = transfer.tx();
            step(shape.tx_us);
            drop(tx);
            step(shape.gap_us);
            let rx = transfer.rx_decode();
            step(shape.rx_us);
            drop(rx);
            drop(transfer);
            let stage = request.stage(1);
            step(shape.gen1_us);
            drop(stage);
        }
        match shape.status {
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

/// One request: stage 0 (a queue child, then compute), then, if `second_stage`, the edge
/// 0->1 (tx, a gap in flight, rx_decode) and stage 1 (compute, no queue). Times in µs.
#[derive(Clone, Debug)]
pub(crate) struct Shape {
    pub(crate) queue0_us: u64,
    pub(crate) gen0_us: u64,
    pub(crate) second_stage: bool,
    pub(crate) tx_us: u64,
    pub(crate) gap_us: u64,
    pub(crate) rx_us: u64,
    pub(crate) gen1_us: u64,
    pub(crate) status: Status,
}

impl Shape {
    /// An `ok` request through both stages.
    pub(crate) fn ok(queue0: u64, gen0: u64, [tx, gap, rx]: [u64; 3], gen1: u64) -> Self {
        Self {
            queue0_us: queue0,
            gen0_us: gen0,
            second_stage: true,
            tx_us: tx,
            gap_us: gap,
            rx_us: rx,
            gen1_us: gen1,
            status: Status::Ok,
        }
    }

    /// The edge's transfer time: tx + in flight + rx_decode.
    pub(crate) fn transfer_us(&self) -> u64 {
        self.tx_us + self.gap_us + self.rx_us
    }

    /// The request's latency: every step is back to back.
    pub(crate) fn e2e_us(&self) -> u64 {
        let first = self.queue0_us + self.gen0_us;
        if self.second_stage {
            first + self.transfer_us() + self.gen1_us
        } else {
            first
        }
    }
}

#[path = "../support/table_rows.rs"]
mod table_rows;
pub(crate) use table_rows::rows;

/// The table printed under the title line that starts with `title`: its lines up to the
/// next blank line.
pub(crate) fn section(console: &str, title: &str) -> Option<String> {
    let mut lines = console.lines().skip_while(|l| !l.starts_with(title));
    lines.next()?;
    Some(
        lines
            .take_while(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// The true `q` percentile of `values` by nearest rank: the smallest value with at least
/// `q` of them at or below it (as the histograms define it).
pub(crate) fn nearest_rank(values: &[u64], q: f64) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted.get(rank - 1).copied().unwrap_or_default()
}
