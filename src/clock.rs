//! Where span timestamps come from: the monotonic clock, or a clock a test drives
//! ([`ManualClock`](crate::testing::ManualClock)).

/// A source of monotonic timestamps in nanoseconds.
///
/// The layer reads it once when an `omni.*` span opens and once when it closes. Tests inject
/// a [`ManualClock`](crate::testing::ManualClock) to build deterministic scenarios without
/// sleeping.
///
/// A close reads it while the layer holds a lock of its own: `now_ns` must not open or
/// close spans (a nested span is skipped rather than deadlock) and should return quickly.
pub(crate) trait Clock: Send + Sync + 'static {
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
pub(crate) struct MonotonicClock {
    clock: quanta::Clock,
    origin: quanta::Instant,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    pub(crate) fn new() -> Self {
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
