//! Where span timestamps come from: the monotonic clock, or a clock a test drives.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A source of monotonic timestamps in nanoseconds.
///
/// The layer reads it once when an `omni.*` span opens and once when it closes. Tests inject
/// a [`ManualClock`] to build deterministic scenarios without sleeping.
///
/// A close reads it while the layer holds a lock of its own: `now_ns` must not open or
/// close spans (a nested span is skipped rather than deadlock) and should return quickly.
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds since an arbitrary, fixed origin; never decreasing.
    fn now_ns(&self) -> u64;
}

/// The default clock: the CPU's time-stamp counter (through `quanta`) where it is invariant,
/// else the OS monotonic clock, measured from the clock's creation.
///
/// Reading the TSC costs about a third of `clock_gettime` on the VMs we measured, and the
/// layer reads the clock twice per `omni.*` span. `quanta` calibrates the counter against
/// the OS clock once per process.
#[derive(Clone, Debug)]
pub struct MonotonicClock {
    clock: quanta::Clock,
    origin: quanta::Instant,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    ///
    /// ```
    /// use omni_metrics::clock::{Clock, MonotonicClock};
    /// let clock = MonotonicClock::new();
    /// assert!(clock.now_ns() <= clock.now_ns());
    /// ```
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let origin = clock.now();
        Self { clock, origin }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    #[inline]
    fn now_ns(&self) -> u64 {
        // u64 nanoseconds last 584 years; a counter read slightly behind the origin on
        // another core saturates to 0.
        self.clock
            .now()
            .saturating_duration_since(self.origin)
            .as_nanos() as u64
    }
}

/// A clock that only moves when told to: for tests and simulations.
///
/// Clones share the same time.
///
/// ```
/// use omni_metrics::clock::{Clock, ManualClock};
/// let clock = ManualClock::new();
/// clock.advance_ms(1.5);
/// assert_eq!(clock.now_ns(), 1_500_000);
/// clock.set_ns(10);
/// assert_eq!(clock.now_ns(), 10);
/// ```
#[derive(Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at 0 ns.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `ns` nanoseconds.
    pub fn advance_ns(&self, ns: u64) {
        self.now.fetch_add(ns, Ordering::SeqCst);
    }

    /// Moves the clock forward by `ms` milliseconds, rounded to the nanosecond; negative or
    /// NaN values do not move it.
    pub fn advance_ms(&self, ms: f64) {
        let ns = (ms * 1_000_000.0).round();
        if ns.is_finite() && ns > 0.0 {
            self.advance_ns(ns as u64);
        }
    }

    /// Sets the clock to `ns`.
    pub fn set_ns(&self, ns: u64) {
        self.now.store(ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now_ns", &self.now_ns())
            .finish()
    }
}
