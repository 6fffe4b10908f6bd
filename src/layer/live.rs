//! Which span ids may be this layer's `omni.*` spans, without a Registry lookup or a lock.
//!
//! Most spans an engine makes are its own, not `omni.*`. `on_record` and `on_close` get only
//! an id, and learning the span's name costs a Registry lookup (about 20 ns each). A
//! counting filter over the ids of the open `omni.*` spans answers "certainly not ours" with
//! one load: zero in a span's slot means no open `omni.*` span hashes there. A collision
//! only costs the table lookup it saves otherwise.
//!
//! Each shard of the [table](super::table) has its own region of the filter, written only
//! while that shard is locked: the counts need no atomic read-modify-write (two per span
//! saved), and a read without the lock is never stale for a span the reader holds (it was
//! opened before the reader got its id).

use std::sync::atomic::{AtomicU32, Ordering};

/// The Registry's ids are `sharded_slab` indices + 1: a slot address (bits 0..37), the
/// shard of the thread that made the span (37..50) and a generation above. The table and
/// this filter rely on that layout for speed only: a guess wrong for another layout costs
/// speed, never an answer.
pub(super) const ADDR_BITS: u32 = 37;

/// The bits of the thread shard in a Registry id, above [`ADDR_BITS`].
const SHARD_BITS: u32 = 13;

/// Slots of one shard's region, as a power of two: 256 KiB over the table's 32 shards.
const REGION_BITS: u32 = 11;

pub(super) struct Region {
    /// A fixed size, so that a hash of [`REGION_BITS`] bits indexes it with no bounds check.
    slots: Box<[AtomicU32; 1 << REGION_BITS]>,
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region").finish_non_exhaustive()
    }
}

impl Default for Region {
    fn default() -> Self {
        Self {
            slots: Box::new(std::array::from_fn(|_| AtomicU32::new(0))),
        }
    }
}

impl Region {
    #[inline]
    fn slot(&self, key: u64) -> Option<&AtomicU32> {
        // The thread shard picks the region; the address and generation are hashed
        // (Fibonacci hashing). See `ADDR_BITS` for the layout.
        let raw = key.wrapping_sub(1);
        let hashed = (raw & ((1 << ADDR_BITS) - 1)) ^ (raw >> (ADDR_BITS + SHARD_BITS));
        let h = hashed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - REGION_BITS);
        self.slots.get(h as usize)
    }

    /// An `omni.*` span was stored; call with the region's shard locked.
    #[inline]
    pub(super) fn opened(&self, key: u64) {
        if let Some(slot) = self.slot(key) {
            slot.store(
                slot.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Relaxed,
            );
        }
    }

    /// An `omni.*` span was taken out; call with the region's shard locked.
    #[inline]
    pub(super) fn closed(&self, key: u64) {
        if let Some(slot) = self.slot(key) {
            slot.store(
                slot.load(Ordering::Relaxed).wrapping_sub(1),
                Ordering::Relaxed,
            );
        }
    }

    /// `false` when `key` is certainly not an open `omni.*` span of the table.
    #[inline]
    pub(super) fn may_hold(&self, key: u64) -> bool {
        self.slot(key)
            .is_none_or(|slot| slot.load(Ordering::Relaxed) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_spans_are_found_and_closed_ones_forgotten() {
        let live = Region::default();
        let (a, b) = (1, 2);
        assert!(!live.may_hold(a));
        live.opened(a);
        assert!(live.may_hold(a));
        live.closed(a);
        assert!(!live.may_hold(a));
        assert!(!live.may_hold(b));
    }
}
