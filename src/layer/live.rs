//! Which span ids may be this layer's `omni.*` spans, without a Registry lookup.
//!
//! Most spans an engine makes are its own, not `omni.*`. `on_record` and `on_close` get only
//! an id, and learning the span's name costs a Registry lookup (about 20 ns each). A
//! counting filter over the ids of the open `omni.*` spans answers "certainly not ours" with
//! one load: zero in a span's slot means no open `omni.*` span hashes there. A collision
//! (or a counter wrapped by a span closed twice) only costs the lookup it saves otherwise.

use std::sync::atomic::{AtomicU32, Ordering};

use tracing_core::span::Id;

/// Slots of the filter: with 10,000 open `omni.*` spans, about 15% of the other spans
/// still pay a lookup. 256 KiB per layer.
const SLOTS: usize = REGIONS << REGION_BITS;
/// Regions of the filter, one per residue of the thread shard (see [`LiveSpans::slot`]).
const REGIONS: usize = 16;
/// Slots of a region, as a power of two.
const REGION_BITS: u32 = 12;

pub(super) struct LiveSpans {
    slots: Box<[AtomicU32]>,
}

impl std::fmt::Debug for LiveSpans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSpans").finish_non_exhaustive()
    }
}

impl LiveSpans {
    pub(super) fn new() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    #[inline]
    fn slot(&self, id: &Id) -> Option<&AtomicU32> {
        // The Registry's ids are sharded_slab indices + 1: a slot address (bits 0..37), the
        // shard of the thread that made the span (37..50) and a generation above. Each of
        // 16 regions serves the shards with one residue, so two threads never write the
        // same cache line of the filter (which would cost both their scaling); within a
        // region, the address and generation are hashed (Fibonacci hashing). A guess wrong
        // for another layout only costs speed, never a miss.
        const ADDR_BITS: u32 = 37;
        const SHARD_BITS: u32 = 13;
        let raw = id.into_u64().wrapping_sub(1);
        let region = (raw >> ADDR_BITS) & (REGIONS as u64 - 1);
        let key = (raw & ((1 << ADDR_BITS) - 1)) ^ (raw >> (ADDR_BITS + SHARD_BITS));
        let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - REGION_BITS);
        self.slots.get(((region << REGION_BITS) | h) as usize)
    }

    /// An `omni.*` span opened.
    #[inline]
    pub(super) fn opened(&self, id: &Id) {
        if let Some(slot) = self.slot(id) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An `omni.*` span closed.
    #[inline]
    pub(super) fn closed(&self, id: &Id) {
        if let Some(slot) = self.slot(id) {
            slot.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// `false` when `id` is certainly not an open `omni.*` span of this layer.
    #[inline]
    pub(super) fn may_be_ours(&self, id: &Id) -> bool {
        self.slot(id)
            .is_none_or(|slot| slot.load(Ordering::Relaxed) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_spans_are_found_and_closed_ones_forgotten() {
        let live = LiveSpans::new();
        let (a, b) = (Id::from_u64(1), Id::from_u64(2));
        assert!(!live.may_be_ours(&a));
        live.opened(&a);
        assert!(live.may_be_ours(&a));
        live.closed(&a);
        assert!(!live.may_be_ours(&a));
        // A close never seen opened only costs lookups afterwards, never a miss.
        live.closed(&b);
        assert!(live.may_be_ours(&b));
    }
}
