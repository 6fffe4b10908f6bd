//! The layer's per-span state, in a table of its own keyed by span id.
//!
//! Keeping the state in the Registry's extensions costs, per hook, a Registry lookup (about
//! 19 ns), an extension lock (about 17 ns) and a `Box` per span. Here each hook does one
//! table operation: lock a shard, index its slots by the span's slab address (see [`Map`]),
//! unlock. A timing child stores a small slot naming its parent, and a stage or transfer
//! its request's id, so closing them needs no Registry lookup either.
//!
//! Shards follow the thread that made the span: the Registry's ids carry the shard of the
//! `sharded_slab` thread that allocated them (see [`super::live`]), so two threads making
//! spans lock different shards and never write the same cache line of the table. A guess
//! wrong for another id layout only costs contention, never a wrong answer.
//!
//! Each copy of the layer has its own table (a layer cloned into two subscribers sees two
//! sets of span ids, which may collide), so two metrics layers in one subscriber keep apart
//! what each one measures.
//!
//! No lock of the table is held while a `tracing` event is emitted, a sink runs or a span
//! is annotated. Under a shard lock run only this crate's code, the clock when a span
//! closes (see [`crate::clock::Clock`]), `tracing`'s dispatcher lookups (the current
//! subscriber and its layers' types, when a stage or transfer closes) and a field value's
//! `Debug` (a `record`ed `%value`): should one of them open or close an `omni.*` span, the
//! nested hook only tries the lock (see [`HELD`]) and skips the span rather than deadlock. A hook never waits for a second shard while it
//! holds one: it lets go of its own first.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::live::{ADDR_BITS, Region};
use super::state::{BatchSpan, RequestSpan, RunSpan, StageSpan, TransferSpan};
use crate::convention::SpanKind;

/// Shards of the table: one per residue of the thread shard in the span id.
const SHARDS: usize = 32;

/// A span id's table key.
pub(super) type Key = u64;

/// A timing child (`omni.queue`, `omni.postprocess`, `omni.transfer.tx`,
/// `omni.transfer.rx_decode`): where its time goes.
#[derive(Debug, Clone, Copy)]
pub(super) struct LeafSpan {
    pub(super) kind: SpanKind,
    /// The span it sits in, if any.
    pub(super) parent: Option<Key>,
}

/// One open `omni.*` span's state.
#[derive(Debug)]
pub(super) enum Slot {
    Run(RunSpan),
    Request(RequestSpan),
    Stage(Box<StageSpan>),
    Transfer(Box<TransferSpan>),
    Batch(BatchSpan),
    Leaf(LeafSpan),
}

impl Slot {
    /// Whether the span gets names and numbers on its exported span (closed by an
    /// [`AnnotationLayer`](crate::otlp::AnnotationLayer) when there is one).
    pub(super) fn annotated(&self) -> bool {
        matches!(
            self,
            Slot::Run(_) | Slot::Request(_) | Slot::Stage(_) | Slot::Transfer(_)
        )
    }
}

/// How many slab addresses of a shard have a slot of their own (the first six pages of a
/// `sharded_slab` thread, 2,016 addresses, fit): at most 96 KiB per shard, 3 MiB for the 32,
/// reached only by a thread with that many spans open at once. Spans at higher addresses go
/// to the hash map, which gives its room back after a burst; these slots stay (shrinking
/// them would need a count of the used ones, kept by every span), as the Registry keeps the
/// slab pages they mirror (about 96 bytes an address).
const DIRECT: usize = 2048;

/// The slot address in a Registry id less one (see [`super::live::ADDR_BITS`]).
const ADDR_MASK: u64 = (1 << ADDR_BITS) - 1;

/// One shard's open spans.
///
/// A span is stored at its slab address, which the Registry keeps unique among the open
/// spans of its thread: finding it is an index and a comparison of the whole id, with no
/// hashing or probing (that was about 1,300 instructions a request). A span whose address
/// is beyond [`DIRECT`], or taken by another span (an id layout other than the one
/// guessed), goes to a hash map: a wrong guess costs speed, never an answer.
#[derive(Debug, Default)]
pub(super) struct Map {
    direct: Vec<Option<(Key, Slot)>>,
    spill: HashMap<Key, Slot, crate::shared::KeyHash>,
}

impl Map {
    #[inline(always)]
    fn index(key: Key) -> usize {
        (key.wrapping_sub(1) & ADDR_MASK) as usize
    }

    /// The state of `key`, if it has some.
    #[inline]
    pub(super) fn get(&self, key: &Key) -> Option<&Slot> {
        match self.direct.get(Self::index(*key)) {
            Some(Some((k, slot))) if k == key => Some(slot),
            _ if self.spill.is_empty() => None,
            _ => self.spill.get(key),
        }
    }

    /// The state of `key`, if it has some, to change.
    #[inline]
    pub(super) fn get_mut(&mut self, key: &Key) -> Option<&mut Slot> {
        match self.direct.get_mut(Self::index(*key)) {
            Some(Some((k, slot))) if k == key => Some(slot),
            _ if self.spill.is_empty() => None,
            _ => self.spill.get_mut(key),
        }
    }

    /// Stores `slot` for `key`; `false` if `key` has state already (nothing is stored).
    #[inline]
    fn insert(&mut self, key: Key, slot: Slot) -> bool {
        let at = Self::index(key);
        if at < DIRECT {
            if at >= self.direct.len() {
                // Grown in powers of two, as the slab's pages are.
                self.direct
                    .resize_with((at + 1).next_power_of_two().min(DIRECT), || None);
            }
            if let Some(entry) = self.direct.get_mut(at) {
                match entry {
                    Some((k, _)) if *k == key => return false,
                    Some(_) => {}
                    None if !self.spill.is_empty() && self.spill.contains_key(&key) => {
                        return false;
                    }
                    None => {
                        *entry = Some((key, slot));
                        return true;
                    }
                }
            }
        }
        match self.spill.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(slot);
                true
            }
        }
    }

    /// Every span's state, in no order.
    fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.entries().map(|(_, slot)| slot)
    }

    /// Every span's key and state, in no order.
    fn entries(&self) -> impl Iterator<Item = (Key, &Slot)> {
        self.direct
            .iter()
            .filter_map(|entry| entry.as_ref().map(|(key, slot)| (*key, slot)))
            .chain(self.spill.iter().map(|(key, slot)| (*key, slot)))
    }

    /// Takes the state of `key` out.
    #[inline]
    fn remove(&mut self, key: Key) -> Option<Slot> {
        if let Some(entry) = self.direct.get_mut(Self::index(key)) {
            if entry.as_ref().is_some_and(|(k, _)| *k == key) {
                return entry.take().map(|(_, slot)| slot);
            }
        }
        if self.spill.is_empty() {
            None
        } else {
            self.remove_spilled(key)
        }
    }

    /// Takes the state of `key` out of the hash map. Out of line: the common close (a
    /// direct slot) stays as short as it was before the map gave its room back.
    #[inline(never)]
    fn remove_spilled(&mut self, key: Key) -> Option<Slot> {
        let slot = self.spill.remove(&key);
        // A burst of spans open at once grew it (about 49 bytes a span, to the next power
        // of two: 100,000 spans left 6 MiB behind), and a hash map never shrinks by itself.
        crate::shared::shrink_sparse(&mut self.spill, SPILL_KEPT);
        slot
    }
}

/// The hash map's room (in spans) kept however empty it gets: at most 49 KiB per shard.
const SPILL_KEPT: usize = 1024;

/// A shard on its own cache lines, with its region of the open-span filter.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    map: Mutex<Map>,
    live: Region,
}

thread_local! {
    /// Set while this thread holds a shard lock: a hook nested in it (a field's `Debug`
    /// that opens a span) only tries the lock.
    static HELD: Cell<bool> = const { Cell::new(false) };
}

/// A locked shard; clears [`HELD`] when dropped.
///
/// Spans go in and out through [`Locked::insert`] and [`Locked::remove`], which keep the
/// shard's open-span filter in step.
pub(super) struct Locked<'a> {
    map: MutexGuard<'a, Map>,
    live: &'a Region,
    /// Whether this guard set [`HELD`] (a nested guard leaves it to the outer one).
    outer: bool,
}

impl std::ops::Deref for Locked<'_> {
    type Target = Map;
    fn deref(&self) -> &Map {
        &self.map
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Map {
        &mut self.map
    }
}

impl Locked<'_> {
    /// Stores a new span's state; `false` if it has state already (nothing is stored).
    #[inline(always)]
    pub(super) fn insert(&mut self, key: Key, slot: Slot) -> bool {
        let stored = self.map.insert(key, slot);
        if stored {
            self.live.opened(key);
        }
        stored
    }

    /// Takes a span's state out.
    #[inline(always)]
    pub(super) fn remove(&mut self, key: Key) -> Option<Slot> {
        let slot = self.map.remove(key)?;
        self.live.closed(key);
        Some(slot)
    }

    /// Runs `f` on the state of `parent`, the parent of `key` (this guard's span): under
    /// this lock when both are in one shard, else after releasing it. The lock is released
    /// either way when this returns.
    #[inline]
    pub(super) fn with_parent<R>(
        mut self,
        table: &Table,
        key: Key,
        parent: Key,
        f: impl FnOnce(&mut Slot) -> R,
    ) -> Option<R> {
        if Table::same_shard(key, parent) {
            self.get_mut(&parent).map(f)
        } else {
            drop(self);
            table.with(parent, f)
        }
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if self.outer {
            let _ = HELD.try_with(|h| h.set(false));
        }
    }
}

/// The table of one copy of the layer.
#[derive(Debug)]
pub(super) struct Table {
    /// A fixed number, so that indexing by [`Table::shard_of`] needs no bounds check.
    shards: Box<[Shard; SHARDS]>,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            shards: Box::new(std::array::from_fn(|_| Shard::default())),
        }
    }
}

impl Table {
    /// The shard of `key`: the thread shard bits of a Registry id (see [`super::live`]).
    #[inline]
    fn shard_of(key: Key) -> usize {
        ((key.wrapping_sub(1) >> ADDR_BITS) as usize) & (SHARDS - 1)
    }

    /// Whether `a` and `b` are in the same shard (one lock serves both).
    #[inline]
    pub(super) fn same_shard(a: Key, b: Key) -> bool {
        Self::shard_of(a) == Self::shard_of(b)
    }

    /// `false` when `key` is certainly not one of the table's open spans: one load, no lock.
    #[inline]
    pub(super) fn may_hold(&self, key: Key) -> bool {
        self.shards[Self::shard_of(key)].live.may_hold(key)
    }

    /// Locks the shard of `key`; `None` only inside a nested hook whose shard is taken.
    #[inline]
    pub(super) fn lock(&self, key: Key) -> Option<Locked<'_>> {
        self.lock_shard(&self.shards[Self::shard_of(key)])
    }

    /// Locks `shard`; `None` only inside a nested hook whose shard is taken.
    #[inline]
    fn lock_shard<'a>(&'a self, Shard { map: shard, live }: &'a Shard) -> Option<Locked<'a>> {
        let nested = HELD.try_with(|h| h.replace(true)).unwrap_or(true);
        let map = if nested {
            match shard.try_lock() {
                Ok(map) => map,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return None,
            }
        } else {
            shard.lock().unwrap_or_else(PoisonError::into_inner)
        };
        Some(Locked {
            map,
            live,
            outer: !nested,
        })
    }

    /// Stores a new span's state; `false` if the span has state already (or the table
    /// could not be locked), and then nothing is stored.
    #[inline(always)]
    pub(super) fn insert(&self, key: Key, slot: Slot) -> bool {
        self.lock(key).is_some_and(|mut map| map.insert(key, slot))
    }

    /// Takes a span's state out if `take` says so.
    #[inline]
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub(super) fn remove_if(&self, key: Key, take: impl FnOnce(&Slot) -> bool) -> Option<Slot> {
        let mut map = self.lock(key)?;
        if take(map.get(&key)?) {
            map.remove(key)
        } else {
            None
        }
    }

    /// Runs `f` on a span's state, if it has some.
    #[inline]
    pub(super) fn with<R>(&self, key: Key, f: impl FnOnce(&mut Slot) -> R) -> Option<R> {
        self.lock(key)?.get_mut(&key).map(f)
    }
}

impl crate::shared::OpenRequests for Table {
    /// One shard at a time, each locked for a scan of its slots: a reader of the handle (or
    /// the periodic line, once per interval) pays for it, not each request; an engine thread
    /// may wait for a scan of its shard to end. Inside a nested hook (a field's `Debug`), a
    /// shard taken by this thread is skipped.
    fn each_open_request(&self, each: &mut dyn FnMut(Option<&str>)) {
        for shard in self.shards.iter() {
            let Some(map) = self.lock_shard(shard) else {
                continue;
            };
            for slot in map.slots() {
                if let Slot::Request(r) = slot {
                    each(r.acc.request_id());
                }
            }
        }
    }

    /// Adds this table's open spans to `gauges` (a scan of every shard, as
    /// [`Self::each_open_request`]): requests, and among them those waiting (in an open
    /// `omni.queue`, or in no stage yet), stages by id and replica, transfers by edge. A
    /// stage or transfer done here for another process's request is not counted.
    fn add_live(&self, gauges: &mut crate::shared::LiveCounts) {
        // Requests and what their open stages say of them; a stage may sit in another
        // shard than its request.
        let mut requests: Vec<(Key, bool)> = Vec::new();
        let mut staged: Vec<Key> = Vec::new();
        let mut queued: Vec<Key> = Vec::new();
        for shard in self.shards.iter() {
            let Some(map) = self.lock_shard(shard) else {
                continue;
            };
            for (key, slot) in map.entries() {
                match slot {
                    Slot::Request(r) => requests.push((key, r.acc.has_stages())),
                    Slot::Stage(stage) if !stage.remote => {
                        if let Some(request) = stage.request {
                            if let Some((stage_id, replica)) = stage.gauge_key() {
                                gauges.stages.push((stage_id, replica, request));
                            }
                            staged.push(request);
                            if stage.queued_now() {
                                queued.push(request);
                            }
                        }
                    }
                    Slot::Transfer(transfer) if !transfer.remote => {
                        if let Some(edge) = transfer.edge() {
                            gauges.transfers.push(edge);
                        }
                    }
                    _ => {}
                }
            }
        }
        staged.sort_unstable();
        queued.sort_unstable();
        for (key, finished_a_stage) in requests {
            gauges.requests_running = gauges.requests_running.saturating_add(1);
            let in_stage = staged.binary_search(&key).is_ok();
            let waiting = queued.binary_search(&key).is_ok() || (!in_stage && !finished_a_stage);
            if waiting {
                gauges.requests_waiting = gauges.requests_waiting.saturating_add(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf() -> Slot {
        Slot::Leaf(LeafSpan {
            kind: SpanKind::Queue,
            parent: None,
        })
    }

    #[test]
    fn a_span_is_stored_once_and_taken_once() {
        let table = Table::default();
        assert!(!table.may_hold(7));
        assert!(table.insert(7, leaf()));
        assert!(table.may_hold(7));
        assert!(!table.insert(7, leaf()), "a second insert keeps the first");
        assert!(table.with(7, |_| ()).is_some());
        assert!(table.remove_if(7, Slot::annotated).is_none());
        assert!(matches!(table.remove_if(7, |_| true), Some(Slot::Leaf(_))));
        assert!(table.remove_if(7, |_| true).is_none());
        assert!(!table.may_hold(7), "the filter forgets a span taken out");
    }

    fn kind(slot: Option<&Slot>) -> Option<SpanKind> {
        match slot? {
            Slot::Leaf(leaf) => Some(leaf.kind),
            _ => None,
        }
    }

    fn leaf_of(kind: SpanKind) -> Slot {
        Slot::Leaf(LeafSpan { kind, parent: None })
    }

    #[test]
    fn ids_that_share_an_address_or_lie_beyond_the_direct_slots_are_kept_apart() {
        let mut map = Map::default();
        // Same slab address (low 37 bits), other generations: as if the id layout were
        // not the one guessed.
        let a = 5;
        let b = 5 + (1 << 51);
        let far = DIRECT as u64 + 10;
        assert!(map.insert(a, leaf_of(SpanKind::Queue)));
        assert!(map.insert(b, leaf_of(SpanKind::Tx)));
        assert!(map.insert(far, leaf_of(SpanKind::RxDecode)));
        assert!(
            !map.insert(b, leaf_of(SpanKind::Queue)),
            "b is in the hash map"
        );
        assert_eq!(kind(map.get(&a)), Some(SpanKind::Queue));
        assert_eq!(kind(map.get(&b)), Some(SpanKind::Tx));
        assert_eq!(kind(map.get(&far)), Some(SpanKind::RxDecode));
        // With `a` gone, its slot is free, yet `b` is still found once, where it is.
        assert!(matches!(map.remove(a), Some(Slot::Leaf(_))));
        assert!(map.get(&a).is_none());
        assert!(
            !map.insert(b, leaf_of(SpanKind::Queue)),
            "b still has state"
        );
        assert_eq!(kind(map.get_mut(&b).map(|s| &*s)), Some(SpanKind::Tx));
        assert!(matches!(map.remove(b), Some(Slot::Leaf(_))));
        assert!(map.remove(b).is_none());
        assert!(matches!(map.remove(far), Some(Slot::Leaf(_))));
        assert!(map.direct.iter().all(Option::is_none) && map.spill.is_empty());
        assert!(map.direct.len() <= DIRECT);
    }

    #[test]
    fn the_hash_map_gives_its_room_back_after_a_burst() {
        let mut map = Map::default();
        // Addresses beyond the direct slots: as a thread with that many spans open at once.
        let far = |i: u64| DIRECT as u64 + 1 + i;
        for _ in 0..2 {
            for i in 0..100_000 {
                assert!(map.insert(far(i), leaf()));
            }
            assert!(map.spill.capacity() >= 100_000);
            for i in 0..100_000 {
                assert!(map.remove(far(i)).is_some());
            }
            assert!(
                map.spill.capacity() <= SPILL_KEPT,
                "room kept: {}",
                map.spill.capacity()
            );
        }
    }

    #[test]
    fn a_nested_lock_of_a_held_shard_is_refused_not_deadlocked() {
        let table = Table::default();
        let outer = table.lock(1).expect("free");
        assert!(table.lock(1).is_none(), "same shard, nested: refused");
        let other = 1 + (1 << 37);
        assert!(!Table::same_shard(1, other));
        assert!(table.lock(other).is_some(), "another shard: fine");
        drop(outer);
        assert!(table.lock(1).is_some());
    }
}
