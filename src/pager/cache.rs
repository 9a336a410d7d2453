//! The page cache: opened (decrypted and verified) page payloads, bounded in bytes.
//!
//! Layer: pager. Invariants: an entry is only ever inserted after its page opened and matched
//! the tag it was reached by (or right after the writer sealed it), and it records that tag;
//! a lookup by (page, tag) misses when the tags differ, so a reused page number can never
//! serve stale bytes. Eviction is CLOCK per shard. Evicted and dropped entries are zeroized
//! (plaintext does not linger in freed heap memory).

use std::collections::VecDeque;

use super::pagemap::PageMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::bufpool::BufPool;
use crate::crypto::seal::PageBuf;
use crate::crypto::wipe::wipe;
use crate::error::PageNo;
use crate::format::page::{PAYLOAD_SIZE, SealTag};

/// An opened page: its plaintext payload and the tag it was sealed with.
pub(crate) struct CachedPage {
    pub(crate) tag: SealTag,
    /// Always `Some` until the entry drops (its buffer then goes back to `pool`).
    buf: Option<Box<PageBuf>>,
    /// Wipe the plaintext when dropped (`Config::zeroize_cache`, default on).
    pub(crate) wipe: bool,
    pool: Option<Arc<BufPool>>,
}

impl CachedPage {
    pub(crate) fn new(tag: SealTag, buf: Box<PageBuf>, wipe: bool, pool: Option<Arc<BufPool>>) -> CachedPage {
        CachedPage { tag, buf: Some(buf), wipe, pool }
    }

    /// The whole page buffer (payload and trailer).
    pub(crate) fn bytes(&self) -> &[u8] {
        self.buf.as_deref().map_or(&[][..], |b| &b[..])
    }

    pub(crate) fn payload(&self) -> &[u8] {
        self.bytes().get(..PAYLOAD_SIZE).unwrap_or_default()
    }
}

impl Drop for CachedPage {
    fn drop(&mut self) {
        let Some(mut buf) = self.buf.take() else { return };
        if self.wipe {
            wipe(&mut buf[..]);
        }
        if let Some(pool) = self.pool.take() {
            pool.give(buf);
        }
    }
}

const SHARDS: usize = 16;

struct Slot {
    page: Arc<CachedPage>,
    referenced: bool,
}

#[derive(Default)]
struct Shard {
    map: PageMap<Slot>,
    clock: VecDeque<PageNo>,
}

pub(crate) struct PageCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
}

/// Counters the cache reports to the metrics.
pub(crate) enum CacheEvent {
    Hit,
    Miss,
}

impl PageCache {
    pub(crate) fn new(capacity_bytes: usize) -> PageCache {
        let pages = (capacity_bytes / crate::format::PAGE_SIZE).max(SHARDS * 4);
        PageCache { shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(), per_shard: pages / SHARDS }
    }

    fn shard(&self, page: PageNo) -> &Mutex<Shard> {
        &self.shards[(page as usize) % SHARDS]
    }

    /// The cached page if present *and* sealed with `tag`.
    pub(crate) fn get(&self, page: PageNo, tag: &SealTag) -> (Option<Arc<CachedPage>>, CacheEvent) {
        let mut s = self.shard(page).lock();
        match s.map.get_mut(&page) {
            Some(slot) if slot.page.tag.ct_eq(tag) => {
                slot.referenced = true;
                (Some(slot.page.clone()), CacheEvent::Hit)
            }
            _ => (None, CacheEvent::Miss),
        }
    }

    /// Inserts or replaces; returns the number of pages evicted.
    pub(crate) fn insert(&self, page: PageNo, p: Arc<CachedPage>) -> u64 {
        let mut s = self.shard(page).lock();
        if let Some(slot) = s.map.get_mut(&page) {
            slot.page = p;
            slot.referenced = true;
            return 0;
        }
        let mut evicted = 0;
        while s.map.len() >= self.per_shard {
            let Some(victim) = s.clock.pop_front() else { break };
            let hot = match s.map.get_mut(&victim) {
                Some(slot) if slot.referenced => {
                    slot.referenced = false;
                    true
                }
                Some(_) => false,
                None => continue,
            };
            if hot {
                s.clock.push_back(victim);
            } else {
                s.map.remove(&victim);
                evicted += 1;
            }
        }
        s.map.insert(page, Slot { page: p, referenced: false });
        s.clock.push_back(page);
        evicted
    }

    pub(crate) fn remove(&self, page: PageNo) {
        let mut s = self.shard(page).lock();
        s.map.remove(&page);
    }

    pub(crate) fn clear(&self) {
        for s in &self.shards {
            let mut s = s.lock();
            s.map.clear();
            s.clock.clear();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(tag: u8) -> Arc<CachedPage> {
        Arc::new(CachedPage::new(SealTag([tag; 16]), Box::new([tag; crate::format::PAGE_SIZE]), true, None))
    }

    #[test]
    fn a_dropped_entry_gives_its_buffer_back_wiped() {
        let pool = Arc::new(BufPool::default());
        let e = CachedPage::new(SealTag([3; 16]), Box::new([0xAB; crate::format::PAGE_SIZE]), true, Some(pool.clone()));
        assert_eq!(e.payload().len(), PAYLOAD_SIZE);
        drop(e);
        assert_eq!(pool.idle(), 1);
        assert!(pool.take().iter().all(|b| *b == 0));
        assert_eq!(pool.idle(), 0);
    }

    #[test]
    fn tag_must_match_and_capacity_holds() {
        let c = PageCache::new(0);
        c.insert(5, page(1));
        assert!(c.get(5, &SealTag([1; 16])).0.is_some());
        assert!(c.get(5, &SealTag([2; 16])).0.is_none());
        for p in 0..10_000 {
            c.insert(p, page(3));
        }
        assert!(c.len() <= SHARDS * 4);
    }
}
