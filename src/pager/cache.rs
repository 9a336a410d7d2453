//! The page cache: opened (decrypted and verified) page payloads, bounded in bytes.
//!
//! Layer: pager. Invariants: an entry is only ever inserted after its page opened and matched
//! the tag it was reached by (or right after the writer sealed it), and it records that tag;
//! a lookup by (page, tag) misses when the tags differ, so a reused page number can never
//! serve stale bytes. Eviction is generalised CLOCK per shard: each entry counts its uses up to
//! `MAX_USES`, the hand takes one off each entry it passes and evicts the first it finds at
//! zero. Evicted and dropped entries are zeroized (plaintext does not linger in freed heap
//! memory).
//!
//! Why a count and not CLOCK's one bit (BENCHMARKS.md, "Twenty-sixth session"): in a cache a
//! tenth the size of the data, random lookups bring in a leaf each, and one bit let the hand
//! evict a branch page between two of its uses; a fifth of cold lookups opened a branch page
//! as well as the leaf. A branch page is used by every lookup below it, so its count stays up
//! and the hand passes it by; a leaf read once goes at the hand's next pass, and so do the
//! leaves of a long range scan.
//!
//! The cache has one shard per `PAGES_PER_SHARD` pages, up to `MAX_SHARDS`: shards let readers
//! on many threads look up at once, but each shard keeps its own clock, and a small cache split
//! sixteen ways (eight pages a shard for the 141 pages of `examples/cold_reads.rs`) evicts by
//! too coarse a measure.
//!
//! An entry has no uninitialised bytes (no padding, no `MaybeUninit`; behind the `Arc` only 7
//! bytes of tail padding, less than a key prefix): it is built on the stack and moved to the
//! heap, and uninitialised bytes would carry whatever the stack held there (key bytes a
//! comparison left, SPEC §14) into a block that is later freed unwiped. (A `OnceLock` of key
//! prefixes kept here was dropped for that reason: `tests/plaintext_frees.rs` found two prefixes
//! in its uninitialised slot.)

use std::collections::VecDeque;
use std::sync::Arc;

use super::pagemap::{PageMap, PageSet};

use parking_lot::Mutex;

use crate::crypto::seal::PageBuf;
use crate::crypto::wipe::wipe;
use crate::error::PageNo;
use crate::format::PAGE_SIZE;
use crate::format::page::{PAYLOAD_SIZE, SealTag};

/// An opened page: its plaintext payload and the tag it was sealed with.
///
/// The tag and then the page are held inline, first (`repr(C)`): behind an `Arc` they share a
/// cache line with the reference counts a lookup touches anyway, so checking the tag and
/// reading the page's header cost no memory access of their own.
#[repr(C)]
pub(crate) struct CachedPage {
    pub(crate) tag: SealTag,
    buf: PageBuf,
    /// Wipe the plaintext when dropped or recycled (`Config::zeroize_cache`, default on).
    pub(crate) wipe: bool,
}

impl CachedPage {
    /// An empty entry (all zero), to be filled through `Arc::get_mut` before it is shared.
    pub(crate) fn blank() -> CachedPage {
        CachedPage { buf: [0; PAGE_SIZE], tag: SealTag::default(), wipe: true }
    }

    /// The whole page buffer, to fill (only while the entry is not shared).
    pub(crate) fn bytes_mut(&mut self) -> &mut PageBuf {
        &mut self.buf
    }

    /// Empties a recycled entry: the plaintext wiped (unless `wipe` is off).
    fn reset(&mut self) {
        if self.wipe {
            wipe(&mut self.buf);
        }
        self.tag = SealTag::default();
        self.wipe = true;
    }

    pub(crate) fn payload(&self) -> &[u8] {
        &self.buf[..PAYLOAD_SIZE]
    }
}

impl Drop for CachedPage {
    fn drop(&mut self) {
        if self.wipe {
            wipe(&mut self.buf);
        }
    }
}

/// Most shards: enough that readers on many threads rarely meet on one lock.
const MAX_SHARDS: usize = 16;
/// Fewest pages per shard (bar a cache of fewer pages, which has one shard).
const PAGES_PER_SHARD: usize = 64;
/// Fewest pages a cache holds, whatever its configured size.
const MIN_PAGES: usize = 64;
/// Highest use count: an entry used this often survives this many passes of the hand unused.
const MAX_USES: u8 = 3;

struct Slot {
    page: Arc<CachedPage>,
    /// Uses since the hand last passed, up to `MAX_USES`.
    uses: u8,
}

struct Shard {
    map: PageMap<Slot>,
    clock: VecDeque<PageNo>,
    /// Lookups that hit, counted under the shard's lock (no atomic of its own on the hit path).
    hits: u64,
}

pub(crate) struct PageCache {
    shards: Vec<Mutex<Shard>>,
    /// Pages each shard holds at most.
    per_shard: usize,
    /// Entries evicted while no reader held them, emptied, for the next miss to fill: a miss
    /// then allocates nothing (a `malloc` and `free` of 4 KiB per miss was 8–11% of a cold
    /// lookup). At most `MAX_SPARE`; with `zeroize_cache` on they hold no plaintext.
    spare: Mutex<Vec<Arc<CachedPage>>>,
}

/// Slots reserved per shard when the cache is made (16 shards of 16,384: the default 32 MiB
/// cache has 512 per shard; a cache of 1 GiB or more grows past this as it fills).
const MAX_RESERVED_PER_SHARD: usize = 16_384;

/// At most this many spare entries (256 KiB).
const MAX_SPARE: usize = 64;

impl Shard {
    /// Drops the clock's entries for pages no longer cached (`remove` leaves them, eviction
    /// skips them) and its repeats (a page removed and cached again is queued twice). Without
    /// this a cache that never fills would queue one entry per insert for ever.
    fn drop_stale_clock_entries(&mut self) {
        let mut seen = PageSet::default();
        let Shard { map, clock, .. } = self;
        clock.retain(|p| map.contains_key(p) && seen.insert(*p));
    }
}

impl PageCache {
    pub(crate) fn new(capacity_bytes: usize) -> PageCache {
        let pages = (capacity_bytes / crate::format::PAGE_SIZE).max(MIN_PAGES);
        let shards = (pages / PAGES_PER_SHARD).clamp(1, MAX_SHARDS);
        let per_shard = pages / shards;
        // Sized up front (up to a bound): growing them while the cache fills cost a realloc,
        // and a `malloc_consolidate`, in the middle of large commits.
        let reserve = per_shard.min(MAX_RESERVED_PER_SHARD);
        let shard = || Shard {
            map: PageMap::with_capacity_and_hasher(reserve, Default::default()),
            clock: VecDeque::with_capacity(reserve),
            hits: 0,
        };
        PageCache {
            shards: (0..shards).map(|_| Mutex::new(shard())).collect(),
            per_shard,
            spare: Mutex::new(Vec::new()),
        }
    }

    /// An entry to fill: a spare one, or a new one. Not shared, so `Arc::get_mut` gives it.
    pub(crate) fn entry(&self) -> Arc<CachedPage> {
        self.spare.lock().pop().unwrap_or_else(|| Arc::new(CachedPage::blank()))
    }

    /// Keeps an entry leaving the cache for reuse if no reader holds it (else it is freed,
    /// wiped, when the last reader lets go).
    fn recycle(&self, mut page: Arc<CachedPage>) {
        if let Some(p) = Arc::get_mut(&mut page) {
            p.reset();
            let mut spare = self.spare.lock();
            if spare.len() < MAX_SPARE {
                spare.push(page);
            }
        }
    }

    fn shard(&self, page: PageNo) -> &Mutex<Shard> {
        &self.shards[(page % self.shards.len() as u64) as usize]
    }

    /// The cached page if present *and* sealed with `tag`.
    pub(crate) fn get(&self, page: PageNo, tag: &SealTag) -> Option<Arc<CachedPage>> {
        let mut s = self.shard(page).lock();
        match s.map.get_mut(&page) {
            Some(slot) if slot.page.tag.ct_eq(tag) => {
                slot.uses = (slot.uses + 1).min(MAX_USES);
                let page = slot.page.clone();
                s.hits += 1;
                Some(page)
            }
            _ => None,
        }
    }

    /// Inserts or replaces; returns the number of pages evicted.
    pub(crate) fn insert(&self, page: PageNo, p: Arc<CachedPage>) -> u64 {
        let mut s = self.shard(page).lock();
        if let Some(slot) = s.map.get_mut(&page) {
            let old = std::mem::replace(&mut slot.page, p);
            slot.uses = (slot.uses + 1).min(MAX_USES);
            self.recycle(old);
            return 0;
        }
        let mut evicted = 0;
        while s.map.len() >= self.per_shard {
            let Some(victim) = s.clock.pop_front() else { break };
            let hot = match s.map.get_mut(&victim) {
                Some(slot) if slot.uses > 0 => {
                    slot.uses -= 1;
                    true
                }
                Some(_) => false,
                None => continue,
            };
            if hot {
                s.clock.push_back(victim);
            } else if let Some(slot) = s.map.remove(&victim) {
                self.recycle(slot.page);
                evicted += 1;
            }
        }
        s.map.insert(page, Slot { page: p, uses: 0 });
        s.clock.push_back(page);
        if s.clock.len() > 2 * self.per_shard {
            s.drop_stale_clock_entries();
        }
        evicted
    }

    pub(crate) fn remove(&self, page: PageNo) {
        let removed = self.shard(page).lock().map.remove(&page);
        if let Some(slot) = removed {
            self.recycle(slot.page);
        }
    }

    pub(crate) fn clear(&self) {
        for s in &self.shards {
            let mut s = s.lock();
            s.map.clear();
            s.clock.clear();
        }
    }

    /// Lookups that hit since the cache was made.
    pub(crate) fn hits(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().hits).sum()
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(tag: u8) -> Arc<CachedPage> {
        let mut p = CachedPage::blank();
        p.buf = [tag; PAGE_SIZE];
        p.tag = SealTag([tag; 16]);
        Arc::new(p)
    }

    #[test]
    fn an_evicted_entry_is_recycled_wiped_unless_a_reader_holds_it() {
        let c = PageCache::new(0);
        c.insert(5, page(0xAB));
        let held = c.get(5, &SealTag([0xAB; 16]));
        c.remove(5);
        assert_eq!(c.spare.lock().len(), 0, "a reader holds it: not reused");
        assert!(held.is_some_and(|p| p.payload().iter().all(|b| *b == 0xAB)));
        c.insert(6, page(0xCD));
        c.remove(6);
        let mut e = c.entry();
        assert!(c.spare.lock().is_empty());
        let e = Arc::get_mut(&mut e).expect("a recycled entry is not shared");
        assert!(e.buf.iter().all(|b| *b == 0) && e.tag.ct_eq(&SealTag::default()));
    }

    #[test]
    fn the_clock_stays_bounded_when_pages_come_and_go() {
        // 64 pages a shard; 32 a shard stay cached, so the cache never fills and never evicts.
        const SHARDS: usize = MAX_SHARDS;
        let c = PageCache::new(SHARDS * 64 * PAGE_SIZE);
        assert_eq!(c.shards.len(), SHARDS);
        for p in 0..(SHARDS * 32) as u64 {
            c.insert(10_000 + p, page(1));
        }
        for round in 0..5_000u64 {
            for p in 0..SHARDS as u64 {
                c.insert(p, page(round as u8));
                c.remove(p);
            }
        }
        for s in &c.shards {
            let s = s.lock();
            assert!(s.clock.len() <= 2 * c.per_shard, "clock of {} for {} cached", s.clock.len(), s.map.len());
        }
        assert_eq!(c.len(), SHARDS * 32, "every page inserted and not removed is still cached");
    }

    #[test]
    fn tag_must_match_and_capacity_holds() {
        let c = PageCache::new(0);
        c.insert(5, page(1));
        assert!(c.get(5, &SealTag([1; 16])).is_some());
        assert!(c.get(5, &SealTag([2; 16])).is_none());
        for p in 0..10_000 {
            c.insert(p, page(3));
        }
        assert!(c.len() <= MIN_PAGES);
        assert!(c.spare.lock().len() <= MAX_SPARE);
    }

    /// Regression (BENCHMARKS.md "Twenty-sixth session"): with one reference bit, a page used
    /// several times (a branch page) went at the hand's second pass, after about two cache-fulls
    /// of pages used once (leaves); its use count now keeps it through three passes.
    #[test]
    fn a_page_used_often_outlives_a_stream_of_pages_used_once() {
        let c = PageCache::new(MIN_PAGES * PAGE_SIZE);
        assert_eq!(c.shards.len(), 1, "a small cache is not split");
        let tag = SealTag([1; 16]);
        c.insert(0, page(1));
        for _ in 0..MAX_USES {
            assert!(c.get(0, &tag).is_some());
        }
        for p in 1..=3 * MIN_PAGES as u64 {
            c.insert(p, page(2));
        }
        assert!(c.get(0, &tag).is_some(), "the page used often was evicted by pages used once");
        assert!(c.get(1, &SealTag([2; 16])).is_none(), "the first page used once went");
        assert!(c.len() <= MIN_PAGES);
    }

    #[test]
    fn shards_grow_with_the_cache_up_to_the_bound() {
        for (pages, shards) in [(0, 1), (MIN_PAGES, 1), (2 * PAGES_PER_SHARD, 2), (1 << 20, MAX_SHARDS)] {
            let c = PageCache::new(pages * PAGE_SIZE);
            assert_eq!(c.shards.len(), shards, "{pages} pages");
            assert_eq!(c.per_shard * shards, pages.max(MIN_PAGES));
        }
    }
}
