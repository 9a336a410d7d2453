//! Counters the engine keeps as it runs: cheap relaxed atomics, read by `Db::metrics()`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub(crate) struct Counters {
    pub pages_sealed: AtomicU64,
    pub pages_opened: AtomicU64,
    pub bytes_written: AtomicU64,
    pub bytes_read: AtomicU64,
    pub crypto_nanos: AtomicU64,
    pub cache_misses: AtomicU64,
    pub cache_evictions: AtomicU64,
    pub commits: AtomicU64,
    pub durable_commits: AtomicU64,
    pub syncs: AtomicU64,
    /// A gauge, not a counter: the pages the last durable commit's free list records.
    pub free_pages: AtomicU64,
}

/// A snapshot of the engine's counters (`Db::metrics()`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    pub pages_sealed: u64,
    pub pages_opened: u64,
    pub bytes_written: u64,
    pub bytes_read: u64,
    /// Time spent sealing and opening pages, in nanoseconds.
    pub crypto_nanos: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_evictions: u64,
    pub commits: u64,
    pub durable_commits: u64,
    /// Syncs the engine asked its storage for: one per durable commit or group of them, and one
    /// per write through of header pages (both copies at creation, a repair at open, each copy
    /// of a key change).
    pub syncs: u64,
    /// `fdatasync`s that returned on the database file and its write-ahead log, the log's
    /// checkpoints included (`Storage::device_syncs`; 0 on storage with no device): what the
    /// durable commits cost the device.
    pub device_syncs: u64,
    /// Pages currently held in the cache.
    pub cached_pages: u64,
    /// The key epoch new pages are sealed under.
    pub key_epoch: u32,
    /// Seals made under the current epoch.
    pub seals_in_epoch: u64,
    /// Pages the last durable commit recorded as free. Later commits reuse them; `Db::compact`
    /// gives back to the file system what it can of them.
    pub free_pages: u64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }
    pub(crate) fn snapshot(&self) -> Metrics {
        Metrics {
            pages_sealed: self.pages_sealed.load(Relaxed),
            pages_opened: self.pages_opened.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            bytes_read: self.bytes_read.load(Relaxed),
            crypto_nanos: self.crypto_nanos.load(Relaxed),
            // Counted by the cache (`Pager::cache_hits`); the caller fills it in.
            cache_hits: 0,
            cache_misses: self.cache_misses.load(Relaxed),
            cache_evictions: self.cache_evictions.load(Relaxed),
            commits: self.commits.load(Relaxed),
            durable_commits: self.durable_commits.load(Relaxed),
            syncs: self.syncs.load(Relaxed),
            free_pages: self.free_pages.load(Relaxed),
            ..Metrics::default()
        }
    }
}
