//! What the benches share (each includes it with `mod support;`, as tracing-subscriber's
//! benches do): the command line, medians and spreads, the machine, the engine thread's CPU
//! time, the process's memory (`/proc/self/status`), the counting allocators, the span
//! workload of `layer_overhead`, and the finished request the sink benches record.
//!
//! A bench uses a part of it; the rest is dead code in that bench.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use omni_metrics::stats::{
    EdgeName, RequestE2EStats, RequestStatus, StageRequestStats, TransferEdgeStats,
};
use tracing::{Span, info_span};

/// A bench's command line: `--quick` for CI's short run, and `--NAME VALUE` options.
pub(crate) struct Args(Vec<String>);

impl Args {
    pub(crate) fn parse() -> Self {
        Self(std::env::args().collect())
    }

    /// `--quick`: the short run CI makes (`.ci/run`).
    pub(crate) fn quick(&self) -> bool {
        self.0.iter().any(|a| a == "--quick")
    }

    /// The word after `flag` (`--case NAME`), if given.
    pub(crate) fn value(&self, flag: &str) -> Option<&str> {
        let at = self.0.iter().position(|a| a == flag)?;
        self.0.get(at + 1).map(String::as_str)
    }

    /// The words after `flag`, `n` of them (`--child FILE MODE`), if `flag` is given.
    pub(crate) fn values(&self, flag: &str, n: usize) -> Option<&[String]> {
        let at = self.0.iter().position(|a| a == flag)?;
        self.0.get(at + 1..at + 1 + n)
    }

    /// The number after `flag` (`--burst 240000`), or `default` when it is absent or not a
    /// number.
    pub(crate) fn number<T: std::str::FromStr>(&self, flag: &str, default: T) -> T {
        self.value(flag)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// The bench's own path (`argv[0]`), to run itself as a child.
    pub(crate) fn program(&self) -> &str {
        self.0.first().map_or("", String::as_str)
    }
}

/// The median, least and greatest of a bench's per-round figures (NaN when there are none).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Spread {
    /// The median is the upper one of an even count (`v[len / 2]` once sorted).
    pub(crate) fn of(mut v: Vec<f64>) -> Self {
        v.sort_by(f64::total_cmp);
        let at = |i: usize| v.get(i).copied().unwrap_or(f64::NAN);
        Spread {
            median: at(v.len() / 2),
            min: at(0),
            max: at(v.len().wrapping_sub(1)),
        }
    }
}

/// The machine, for the figures a bench prints: CPUs and the processor's model (Linux's
/// `/proc/cpuinfo`; the count alone elsewhere).
pub(crate) fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
    });
    match model {
        Some(model) => format!("{cpus} CPUs, {model}"),
        None => format!("{cpus} CPUs"),
    }
}

/// Prints [`machine`] as the first line of a bench's report.
pub(crate) fn print_machine() {
    println!("machine: {}", machine());
}

/// CPU time this thread has used: what an engine's thread spends on the sink, whatever
/// else runs on the machine (the recorder thread, other processes).
#[cfg(unix)]
pub(crate) fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to; CLOCK_THREAD_CPUTIME_ID always exists
    // on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Elsewhere, wall time since the first call (the recorder's time may be in it).
#[cfg(not(unix))]
pub(crate) fn thread_cpu_time() -> Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

/// A figure of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`), or 0 where unavailable.
fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The resident set size in KiB (`VmRSS`), or 0 where unavailable.
pub(crate) fn rss_kib() -> u64 {
    proc_status_kib("VmRSS")
}

/// The peak resident set size in KiB (`VmHWM`), or 0 where unavailable.
pub(crate) fn peak_rss_kib() -> u64 {
    proc_status_kib("VmHWM")
}

/// A global allocator that counts the heap allocations (and reallocations) of each thread
/// ([`allocs_so_far`]): a bench's allocations per request.
///
/// The count is per thread: a shared atomic bumped on every allocation would make the
/// two-thread runs contend on the bench's own counter, not on anything measured.
pub(crate) struct CountAllocs;

thread_local! {
    static ALLOCS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count_alloc() {
    // `try_with`: the allocator may run while this thread's locals are being destroyed.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

/// The allocations this thread has made under [`CountAllocs`].
pub(crate) fn allocs_so_far() -> u64 {
    ALLOCS.try_with(std::cell::Cell::get).unwrap_or(0)
}

unsafe impl GlobalAlloc for CountAllocs {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_alloc();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// A global allocator that counts the live heap bytes ([`live_heap`]): what is kept, free
/// of the allocator's own fragmentation and of what it keeps from the system (which
/// `VmRSS` shows).
pub(crate) struct CountLiveBytes;

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Live heap bytes now, under [`CountLiveBytes`].
pub(crate) fn live_heap() -> usize {
    LIVE.load(Ordering::Relaxed)
}

unsafe impl GlobalAlloc for CountLiveBytes {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

/// Spans of one request of the workload (issue #8).
pub(crate) const SPANS_PER_REQUEST: u64 = 10;

/// One request of the workload: 10 `omni.*` spans (a request, 3 entered stages of 5 fields
/// and one `record`, 2 transfers with their tx and rx_decode children).
pub(crate) fn request(i: u64) {
    let req = request_span();
    for stage in 0..3_u64 {
        stage_span(&req, stage, i);
        if stage < 2 {
            transfer_span(&req, stage);
        }
    }
    drop(black_box(req));
}

/// The workload's `omni.request`.
pub(crate) fn request_span() -> Span {
    info_span!("omni.request", request_id = "bench-request")
}

/// A stage, entered, with 5 fields and one `record`.
pub(crate) fn stage_span(req: &Span, stage: u64, i: u64) {
    let s = info_span!(parent: req, "omni.stage", stage_id = stage, batch_id = i,
        batch_size = 1_u64, num_tokens_in = 100_u64, num_tokens_out = tracing::field::Empty);
    {
        let _entered = s.enter();
        s.record("num_tokens_out", 10_u64);
    }
    drop(s);
}

/// A transfer from `stage` to the next, with its tx and rx_decode children.
pub(crate) fn transfer_span(req: &Span, stage: u64) {
    let t = info_span!(parent: req, "omni.transfer", from_stage = stage,
        to_stage = stage + 1, size_bytes = 4096_u64);
    drop(info_span!(parent: &t, "omni.transfer.tx"));
    drop(info_span!(parent: &t, "omni.transfer.rx_decode"));
    drop(t);
}

/// The finished request the Prometheus benches record: `ok`, 3 stages (stage 0 with 16
/// output gaps, stage 2 with audio), 2 edges, and a trace id when `trace`: 48 observations
/// into 33 series.
pub(crate) fn sink_request(trace: bool) -> RequestE2EStats {
    let stage = |id: u64, gaps: usize| StageRequestStats {
        stage_id: id,
        num_tokens_in: 4_860,
        num_tokens_out: 67,
        stage_gen_time_ms: 9_910.007,
        postprocess_time_ms: 256.158,
        queue_time_ms: 12.5,
        time_to_first_output_ms: Some(42.5),
        inter_output_gaps_ms: (0..gaps).map(|g| 20.0 + g as f64).collect(),
        ..Default::default()
    };
    let mut audio = stage(2, 0);
    audio.audio_generated_frames = 525_525;
    audio.audio_sample_rate = Some(24_000);
    audio.audio_duration_ms = Some(21_896.875);
    audio.audio_rtf = Some(0.45);
    let edge = |from: u64, to: u64| TransferEdgeStats {
        edge: EdgeName { from, to },
        from_stage: from,
        to_stage: to,
        size_bytes: 111_900_005,
        tx_time_ms: 78.701,
        rx_decode_time_ms: 111.865,
        in_flight_time_ms: 2.015,
        ..Default::default()
    };
    RequestE2EStats {
        request_id: "r-17".into(),
        status: RequestStatus::Ok,
        trace_id: trace.then(|| "4bf92f3577b34da6a3ce929d0e0e4736".into()),
        e2e_total_ms: 41_299.133,
        time_to_first_output_ms: Some(950.0),
        time_to_first_audio_ms: Some(1_200.5),
        audio_duration_ms: Some(21_896.875),
        audio_e2e_rtf: Some(1.886),
        stages: vec![stage(0, 16), stage(1, 0), audio],
        transfers: vec![edge(0, 1), edge(1, 2)],
        ..Default::default()
    }
}
