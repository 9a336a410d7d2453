//! The pager: pages in and out of storage, sealed on the way out and opened on the way in,
//! through a bounded cache of opened pages; page allocation; the durable commit.
//!
//! Layer: pager, above `storage`, `crypto` and `format`; below `btree`. It knows the page
//! trailer and the commit record, not what B-tree pages contain.
//!
//! ```text
//!            open()                         write error / sync error
//!  [closed] --------> [open: reads+writes] --------------------------> [poisoned: reads only]
//!                        |     ^                                               |
//!      write_page() ... |     | sync() returns: commit record N durable       | drop, reopen
//!                        v     |                                               v
//!                    [pages of commit N written, unsynced] -----------> [closed]
//! ```
//! Invariants (numbered as SQLite's pager.c):
//! 1. A page reachable from the last durable commit record is never written (copy-on-write;
//!    the allocator hands out only pages that no durable or readable state references).
//! 2. A page is returned only after it opened under its seal and matched the tag its parent
//!    holds (or it is in the cache, which holds only such pages, keyed with their tag).
//! 3. The commit record of a durable commit goes to the slot *not* holding the previous durable
//!    record; pages and record reach the disk with one `sync`; recovery verifies the pages
//!    written since the previous durable commit before it trusts the newer record.
//! 4. After any write or sync fails, the handle is poisoned: further writes fail with
//!    `Error::Poisoned` until the database is reopened (we do not guess what reached the disk).
//!    One exception: a failed cut of the file's end (`truncate`) leaves the file longer than
//!    the page count, which every reader accepts, and poisons nothing.

pub(crate) mod alloc;
mod batch;
pub(crate) mod bufpool;
pub(crate) mod cache;
pub(crate) mod free_set;
pub(crate) mod freelist;
pub mod metrics;
pub(crate) mod pagemap;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::crypto::seal::{KeyPurpose, PageBuf, PageSealer};
use crate::error::{CorruptReason, Error, PageNo, Result};
use crate::format::commit::CommitRecord;
use crate::format::page::{PageKind, PageRef, SealTag, check_kind};
use crate::format::{FIRST_DATA_PAGE, PAGE_SIZE};
use crate::storage::Storage;
use cache::{CachedPage, PageCache};
use metrics::Counters;

/// A commit slot as the file holds it beneath a log replayed at open ([`Pager::slot_under_log`]).
pub(crate) struct SlotUnderLog {
    /// The file's own record in the slot, if it opens.
    pub file: Option<CommitRecord>,
    /// The file's bytes are one of the logged versions (a checkpoint copied it home).
    pub file_is_logged: bool,
    /// The file's bytes are all zero: the slot was never written (a new file's second slot).
    pub file_is_blank: bool,
    /// Each logged version that opens, oldest first.
    pub logged: Vec<CommitRecord>,
}

pub(crate) struct Pager {
    storage: Arc<dyn Storage>,
    pub(crate) sealer: PageSealer,
    cache: PageCache,
    pub(crate) counters: Counters,
    poisoned: AtomicBool,
    /// Opened with `Config::read_only`: every write fails `ReadOnly` before reaching storage.
    read_only: AtomicBool,
    /// Pages `0..page_limit` may be referenced; anything above is out of range.
    page_limit: AtomicU64,
    seals_in_epoch: AtomicU64,
    /// Wipe opened pages when they leave the cache (`Config::zeroize_cache`).
    wipe_cache: AtomicBool,
    /// A length the file is known to have reached (it only grows while we hold the lock), so
    /// `ensure_pages` asks the OS only when it may have to extend the file.
    known_len: AtomicU64,
    /// Page buffers of dropped cache entries, reused by reads (`bufpool`).
    pool: Arc<bufpool::BufPool>,
    /// Held across each sync, so that one sync's failure is seen by every sync after it: a
    /// file reports a failed write-back once, and a sync racing it (a commit's beside a header
    /// update's) then found nothing to write and returned `Ok` for a record that was lost
    /// (recovery review, medium).
    syncing: parking_lot::Mutex<()>,
}

impl Pager {
    pub(crate) fn new(storage: Arc<dyn Storage>, sealer: PageSealer, cache_bytes: usize) -> Pager {
        Pager {
            storage,
            sealer,
            cache: PageCache::new(cache_bytes),
            counters: Counters::default(),
            poisoned: AtomicBool::new(false),
            read_only: AtomicBool::new(false),
            page_limit: AtomicU64::new(FIRST_DATA_PAGE),
            seals_in_epoch: AtomicU64::new(0),
            wipe_cache: AtomicBool::new(true),
            known_len: AtomicU64::new(0),
            pool: Arc::default(),
            syncing: parking_lot::Mutex::new(()),
        }
    }

    pub(crate) fn set_wipe_cache(&self, on: bool) {
        self.wipe_cache.store(on, Ordering::Relaxed);
    }

    pub(crate) fn set_page_limit(&self, n: u64) {
        self.page_limit.store(n, Ordering::Release);
    }

    /// Raises the page limit to at least `n` (pages just allocated by the writer).
    pub(crate) fn raise_page_limit(&self, n: u64) {
        self.page_limit.fetch_max(n, Ordering::AcqRel);
    }

    /// Seals made under the current epoch (the nonce budget's counter).
    pub(crate) fn seals_in_epoch(&self) -> u64 {
        self.seals_in_epoch.load(Ordering::Acquire)
    }

    pub(crate) fn set_seals_in_epoch(&self, n: u64) {
        self.seals_in_epoch.store(n, Ordering::Release);
    }

    pub(crate) fn page_limit(&self) -> u64 {
        self.page_limit.load(Ordering::Acquire)
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Refuses further writes until the database is reopened; `why` goes to the audit log.
    pub(crate) fn poison_now(&self, why: &'static str) {
        if !self.poisoned.swap(true, Ordering::AcqRel) {
            tracing::error!(target: "foldvault::audit", "{why}; handle poisoned until reopened");
        }
    }

    /// From here on every write fails with `Error::ReadOnly` (a read-only open).
    pub(crate) fn set_read_only(&self) {
        self.read_only.store(true, Ordering::Release);
    }

    /// Every write to storage passes here first.
    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.read_only.load(Ordering::Acquire) {
            Err(Error::ReadOnly)
        } else if self.is_poisoned() {
            Err(Error::Poisoned)
        } else {
            Ok(())
        }
    }

    fn poison<T>(&self, e: std::io::Error) -> Result<T> {
        self.poisoned.store(true, Ordering::Release);
        tracing::error!(target: "foldvault::audit", error = %e, "write failed; handle poisoned until reopened");
        Err(Error::Io(e))
    }

    /// Reads the raw (sealed) bytes of a page. A short file is `Truncated`.
    pub(crate) fn read_raw(&self, page: PageNo) -> Result<Box<PageBuf>> {
        // Every byte is overwritten by the read (or the buffer is dropped with the error).
        let mut buf = self.pool.take();
        self.read_into(page, &mut buf)?;
        Ok(buf)
    }

    fn read_into(&self, page: PageNo, buf: &mut PageBuf) -> Result<()> {
        // Callers bound `page` by the page limit; a limit set from an unverified record must
        // not turn into an overflow here.
        let off = page.checked_mul(PAGE_SIZE as u64).ok_or(Error::corrupt(page, CorruptReason::PageOutOfRange))?;
        match self.storage.read_at(off, &mut buf[..]) {
            Ok(()) => {
                Counters::add(&self.counters.bytes_read, PAGE_SIZE as u64);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                let found = self.storage.len().unwrap_or(0);
                Err(Error::Truncated { expected: off.saturating_add(PAGE_SIZE as u64), found })
            }
            Err(e) => Err(Error::Io(e)),
        }
    }

    /// Writes raw bytes of a page (headers, restore). Poisons on failure.
    pub(crate) fn write_raw(&self, page: PageNo, buf: &PageBuf) -> Result<()> {
        self.check_writable()?;
        match self.storage.write_at(page * PAGE_SIZE as u64, &buf[..]) {
            Ok(()) => {
                Counters::add(&self.counters.bytes_written, PAGE_SIZE as u64);
                Ok(())
            }
            Err(e) => self.poison(e),
        }
    }

    /// Writes `bytes` (whole pages, from `first` on) into the file itself, past any log, and
    /// syncs (`Storage::write_through`): the header pages, which no log may hold a copy of. One
    /// sync at a time, as `sync`; a failure or a panic poisons the pager, as a failed sync does.
    pub(crate) fn write_raw_through(&self, first: PageNo, bytes: &[u8]) -> Result<()> {
        debug_assert!(bytes.len().is_multiple_of(PAGE_SIZE));
        let _one_at_a_time = self.syncing.lock();
        self.check_writable()?;
        let _unwinding = self.poison_on_panic();
        Counters::add(&self.counters.syncs, 1);
        match self.storage.write_through(first * PAGE_SIZE as u64, bytes) {
            Ok(()) => {
                Counters::add(&self.counters.bytes_written, bytes.len() as u64);
                Ok(())
            }
            Err(e) => self.poison(e),
        }
    }

    /// Reads and opens page `r.page`, checking that it was sealed with `r.tag` and is of `kind`.
    pub(crate) fn read(&self, r: PageRef, kind: Option<PageKind>) -> Result<Arc<CachedPage>> {
        if r.page < FIRST_DATA_PAGE || r.page >= self.page_limit() {
            return Err(Error::corrupt(r.page, CorruptReason::PageOutOfRange));
        }
        // The same checks on a hit as on a miss (the cache is keyed by page and tag alone), so
        // that what a read returns never depends on what the cache holds.
        let fits = |p: &CachedPage| -> Result<()> {
            if r.generation != 0 && crate::format::page::generation(p.payload()) != r.generation {
                return Err(Error::corrupt(r.page, CorruptReason::TagMismatch));
            }
            if let Some(kind) = kind {
                check_kind(p.payload(), r.page, kind)?;
            }
            Ok(())
        };
        if let Some(p) = self.cache.get(r.page, &r.tag) {
            fits(&p)?;
            return Ok(p);
        }
        Counters::add(&self.counters.cache_misses, 1);
        let p = self.open_from_disk(r.page, KeyPurpose::Page)?;
        if !p.tag.ct_eq(&r.tag) {
            return Err(Error::corrupt(r.page, CorruptReason::TagMismatch));
        }
        fits(&p)?;
        self.cache_insert(r.page, p.clone());
        Ok(p)
    }

    /// Opens a page without a parent tag to compare with (diagnostics, salvage). Not cached.
    pub(crate) fn read_unanchored(&self, page: PageNo) -> Result<Arc<CachedPage>> {
        self.open_from_disk(page, KeyPurpose::Page)
    }

    /// Reads and opens a page into a cache entry (not inserted). On failure the entry drops,
    /// and whatever it held is wiped.
    fn open_from_disk(&self, page: PageNo, purpose: KeyPurpose) -> Result<Arc<CachedPage>> {
        let mut entry = self.cache.entry();
        let e = Arc::get_mut(&mut entry).ok_or_else(|| Error::ReportableBug("a new cache entry is shared".into()))?;
        self.read_into(page, e.bytes_mut())?;
        let t = Instant::now();
        let (tag, _epoch) = self.sealer.open(purpose, page, e.bytes_mut())?;
        Counters::add(&self.counters.crypto_nanos, t.elapsed().as_nanos() as u64);
        Counters::add(&self.counters.pages_opened, 1);
        self.settle_entry(e, tag);
        Ok(entry)
    }

    /// Records the tag a filled cache entry was sealed with, and whether it is wiped on drop.
    fn settle_entry(&self, e: &mut CachedPage, tag: SealTag) {
        e.tag = tag;
        e.wipe = self.wipe_cache.load(Ordering::Relaxed);
    }

    /// Caches an entry (its page opened or just sealed), counting what it evicted.
    fn cache_insert(&self, page: PageNo, entry: Arc<CachedPage>) {
        let ev = self.cache.insert(page, entry);
        Counters::add(&self.counters.cache_evictions, ev);
    }

    /// Seals `buf` in place as page `page` under `epoch` for `purpose`, counting the seal (and
    /// the time it took) against the nonce budget and the metrics.
    fn seal_counted(&self, purpose: KeyPurpose, page: PageNo, epoch: u32, buf: &mut PageBuf) -> Result<SealTag> {
        // A tree, catalog or free-list page never goes where a header or commit record lives,
        // whatever state the allocator is in.
        if purpose == KeyPurpose::Page && page < FIRST_DATA_PAGE {
            return Err(Error::ReportableBug(format!("a data page was to be written over reserved page {page}")));
        }
        let t = Instant::now();
        let tag = self.sealer.seal(purpose, page, epoch, buf)?;
        Counters::add(&self.counters.crypto_nanos, t.elapsed().as_nanos() as u64);
        Counters::add(&self.counters.pages_sealed, 1);
        self.seals_in_epoch.fetch_add(1, Ordering::AcqRel);
        Ok(tag)
    }

    /// Seals `buf` (whose payload the caller filled) as page `page` under `epoch`, writes it and
    /// caches the plaintext. Returns the tag for the parent to hold.
    pub(crate) fn write(&self, page: PageNo, epoch: u32, mut buf: Box<PageBuf>) -> Result<SealTag> {
        // The entry takes a copy of the plaintext (wiped whenever it drops); `buf` is sealed in
        // place, or wiped on every path that fails before it is.
        let mut entry = self.cache.entry();
        let Some(e) = Arc::get_mut(&mut entry) else {
            crate::crypto::wipe::wipe(&mut buf[..]);
            return Err(Error::ReportableBug("a new cache entry is shared".into()));
        };
        e.bytes_mut().copy_from_slice(&buf[..]);
        let tag = match self.check_writable().and_then(|()| self.seal_counted(KeyPurpose::Page, page, epoch, &mut buf))
        {
            Ok(t) => t,
            Err(err) => {
                crate::crypto::wipe::wipe(&mut buf[..]);
                return Err(err);
            }
        };
        self.write_raw(page, &buf)?;
        self.pool.give(buf);
        self.settle_entry(e, tag);
        self.cache_insert(page, entry);
        Ok(tag)
    }

    /// Drops a page from the cache (it was freed).
    pub(crate) fn forget(&self, page: PageNo) {
        self.cache.remove(page);
    }

    pub(crate) fn clear_cache(&self) {
        self.cache.clear();
    }

    pub(crate) fn cached_pages(&self) -> usize {
        self.cache.len()
    }

    /// Cache hits (counted by the cache itself, under its shard locks).
    pub(crate) fn device_syncs(&self) -> u64 {
        self.storage.device_syncs()
    }

    pub(crate) fn cache_hits(&self) -> u64 {
        self.cache.hits()
    }

    /// Reads commit slot `slot_page` (2 or 3).
    pub(crate) fn read_commit(&self, slot_page: PageNo) -> Result<CommitRecord> {
        let p = self.open_from_disk(slot_page, KeyPurpose::Commit)?;
        CommitRecord::decode(p.payload(), slot_page, self.sealer.version())
    }

    /// Commit slot `slot_page` where a log replayed at open holds versions of it
    /// (`Storage::logged_versions`): the file's own record there, whether the file's bytes are
    /// one of the logged versions (copied home by a checkpoint), and each logged version that
    /// opens. `None` where no log holds the slot.
    pub(crate) fn slot_under_log(&self, slot_page: PageNo) -> Result<Option<SlotUnderLog>> {
        let decode = |bytes: &[u8]| -> Option<CommitRecord> {
            let mut buf = Box::new([0u8; PAGE_SIZE]);
            buf.copy_from_slice(bytes.get(..PAGE_SIZE).filter(|_| bytes.len() == PAGE_SIZE)?);
            self.sealer.open(KeyPurpose::Commit, slot_page, &mut buf).ok()?;
            CommitRecord::decode(&buf[..crate::format::page::PAYLOAD_SIZE], slot_page, self.sealer.version()).ok()
        };
        let mut file = vec![0u8; PAGE_SIZE];
        let (mut hashes, mut logged) = (Vec::new(), Vec::new());
        let held = self.storage.logged_versions(slot_page * PAGE_SIZE as u64, &mut file, &mut |v| {
            hashes.push(blake3::hash(v));
            logged.extend(decode(v));
        })?;
        if !held {
            return Ok(None);
        }
        let file_is_logged = hashes.contains(&blake3::hash(&file));
        let file_is_blank = file.iter().all(|&b| b == 0);
        Ok(Some(SlotUnderLog { file: decode(&file), file_is_logged, file_is_blank, logged }))
    }

    /// The commit record with the highest sequence number among the two slots that open,
    /// nothing behind it verified (pagedump's epoch bound, salvage of a file that does not open).
    pub(crate) fn newest_commit(&self) -> Option<CommitRecord> {
        [crate::format::COMMIT_PAGE_A, crate::format::COMMIT_PAGE_B]
            .into_iter()
            .filter_map(|p| self.read_commit(p).ok())
            .max_by_key(|r| r.seq)
    }

    /// Seals and writes a commit record into `slot_page` (not synced).
    pub(crate) fn write_commit(&self, slot_page: PageNo, rec: &CommitRecord) -> Result<()> {
        self.check_writable()?;
        let mut buf = Box::new([0u8; PAGE_SIZE]);
        rec.encode(&mut buf[..crate::format::page::PAYLOAD_SIZE]);
        self.seal_counted(KeyPurpose::Commit, slot_page, rec.key_epoch, &mut buf)?;
        self.write_raw(slot_page, &buf)
    }

    /// Poisons the handle if dropped by a panic (a caller's `Storage`) in a step that changes
    /// what the file or its log holds beyond one page's write (a checkpoint, a truncation).
    fn poison_on_panic(&self) -> crate::error::OnPanic<impl FnMut() + '_> {
        crate::error::OnPanic::new(|| self.poison_now("storage panicked part way through a checkpoint or truncation"))
    }

    /// Makes every earlier write durable. Poisons on failure.
    pub(crate) fn sync(&self) -> Result<()> {
        let _one_at_a_time = self.syncing.lock();
        // Looked at once the sync before this one has returned: its failure poisoned the
        // handle, and the writes this sync was to cover may be what it lost.
        self.check_writable()?;
        Counters::add(&self.counters.syncs, 1);
        match self.storage.sync() {
            Ok(()) => Ok(()),
            Err(e) => self.poison(e),
        }
    }

    pub(crate) fn file_len(&self) -> Result<u64> {
        Ok(self.storage.len()?)
    }

    /// Bytes the storage occupies on disk (a write-ahead log beside the file included).
    pub(crate) fn bytes_on_disk(&self) -> Result<u64> {
        Ok(self.storage.bytes_on_disk()?)
    }

    /// Folds a write-ahead log into the file (`Storage::checkpoint_log`). A failure poisons the
    /// pager, as a failed sync does: the log refuses every later sync after one.
    pub(crate) fn checkpoint_log(&self) -> Result<()> {
        self.fold_log(|s| s.checkpoint_log())
    }

    /// `checkpoint_log`, and the log's old bytes overwritten (`Storage::checkpoint_and_erase_log`):
    /// after an open that replayed a header page from a log an earlier build wrote. Poisons on
    /// failure.
    pub(crate) fn checkpoint_and_erase_log(&self) -> Result<()> {
        self.fold_log(|s| s.checkpoint_and_erase_log())
    }

    fn fold_log(&self, fold: impl FnOnce(&dyn Storage) -> std::io::Result<()>) -> Result<()> {
        self.check_writable()?;
        let _unwinding = self.poison_on_panic();
        match fold(&*self.storage) {
            Ok(()) => Ok(()),
            Err(e) => self.poison(e),
        }
    }

    /// Cuts the file to `pages` pages, the page count of the newest durable record (compaction,
    /// SPEC.md §7.1); pages past it are out of range from now on.
    pub(crate) fn truncate(&self, pages: u64) -> Result<()> {
        self.check_writable()?;
        let want = pages * PAGE_SIZE as u64;
        self.set_page_limit(pages);
        self.known_len.store(want.min(self.known_len.load(Ordering::Acquire)), Ordering::Release);
        // A failure leaves the file longer than the page count, which every reader accepts
        // (SPEC.md §5.2): no need to poison.
        if self.storage.len()? > want {
            self.storage.set_len(want)?;
        }
        Ok(())
    }

    /// Extends the file to hold `pages` pages if it is shorter (pages allocated but never
    /// written, e.g. by an aborted transaction, must still exist below the page count).
    pub(crate) fn ensure_pages(&self, pages: u64) -> Result<()> {
        self.check_writable()?;
        let want = pages * PAGE_SIZE as u64;
        if want <= self.known_len.load(Ordering::Acquire) {
            return Ok(());
        }
        if self.storage.len()? < want
            && let Err(e) = self.storage.set_len(want)
        {
            return self.poison(e);
        }
        self.known_len.fetch_max(want, Ordering::AcqRel);
        Ok(())
    }
}
