//! Sealed batch writes: the pages of a commit, encoded, sealed and written together.
//!
//! Layer: pager. `Pager::write_batch` takes the pages as items and a `fill` that encodes one
//! into a payload (the B-tree passes its nodes), so nothing is staged for the whole batch:
//! each thread fills a page's plaintext straight into the cache entry that will hold it, seals
//! a copy into its run buffer, and writes pages with consecutive numbers in one storage write
//! of up to `RUN_PAGES` pages; the pages are cached once their run is written.
//!
//! Invariants: the tags come back in the order of the items, whatever order the pages were
//! written in; a page is cached only after the write that holds it returned; a run slot holds
//! plaintext only between its copy and its seal, and a failed seal wipes it; a failed write
//! poisons the pager (as `Pager::write`), and the entries of its run drop, wiped.

use std::sync::Arc;

use super::Pager;
use super::cache::CachedPage;
use super::metrics::Counters;
use crate::crypto::seal::{KeyPurpose, PageBuf};
use crate::error::{Error, PageNo, Result};
use crate::format::PAGE_SIZE;
use crate::format::page::{PAYLOAD_SIZE, SealTag};

impl Pager {
    /// Encodes (`fill`), seals and writes a batch of pages, in parallel when the batch is large;
    /// returns their tags in the order of `items`. Each page's plaintext is filled straight into
    /// the cache entry that will hold it, and its sealed copy into a run buffer: pages with
    /// consecutive numbers go to storage in one write of up to `RUN_PAGES` pages. Nothing is
    /// staged for the whole batch, and each item is dropped by the thread that encoded it.
    pub(crate) fn write_batch<T: Send>(
        &self,
        epoch: u32,
        items: Vec<(PageNo, T)>,
        fill: &(dyn Fn(&T, &mut [u8]) -> Result<()> + Sync),
    ) -> Result<Vec<SealTag>> {
        const PARALLEL_FROM: usize = 32;
        // Asking the OS is costly (it reads cgroup files): once per process.
        static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let threads =
            *THREADS.get_or_init(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8));
        self.check_writable()?;
        let count = items.len();
        let mut items: Vec<(usize, PageNo, T)> = items.into_iter().enumerate().map(|(i, (p, t))| (i, p, t)).collect();
        items.sort_unstable_by_key(|(_, p, _)| *p);
        let parts = if count < PARALLEL_FROM { 1 } else { threads };
        let chunk = count.div_ceil(parts).max(1);
        let mut rest = items;
        let mut split = Vec::new();
        while rest.len() > chunk {
            let tail = rest.split_off(chunk);
            split.push(std::mem::replace(&mut rest, tail));
        }
        split.push(rest);
        let results: Vec<Result<Vec<(usize, SealTag)>>> =
            if split.len() == 1 {
                split.into_iter().map(|part| self.write_runs(epoch, part, fill)).collect()
            } else {
                std::thread::scope(|s| {
                    // A thread the OS does not give (a process or cgroup thread limit) leaves its
                    // part to this one: `Scope::spawn` would panic.
                    let mut here = Vec::new();
                    let mut handles = Vec::new();
                    for part in split {
                        let (tx, rx) = std::sync::mpsc::channel();
                        let spawned = std::thread::Builder::new().spawn_scoped(s, move || {
                            let part = rx.recv().unwrap_or_default();
                            self.write_runs(epoch, part, fill)
                        });
                        match spawned {
                            Ok(h) => {
                                // A thread gone before its share arrived (it cannot be) is handed
                                // an empty one; the share is done here.
                                if let Err(back) = tx.send(part) {
                                    here.push(back.0);
                                }
                                handles.push(h);
                            }
                            Err(_) => here.push(part),
                        }
                    }
                    let mut out: Vec<_> = here.into_iter().map(|part| self.write_runs(epoch, part, fill)).collect();
                    out.extend(handles.into_iter().map(|h| {
                        h.join().unwrap_or_else(|_| Err(Error::ReportableBug("sealing thread panicked".into())))
                    }));
                    out
                })
            };
        let mut tags = vec![SealTag::default(); count];
        let mut failed: Option<Error> = None;
        for r in results {
            match r {
                Ok(part) => {
                    for (i, tag) in part {
                        if let Some(t) = tags.get_mut(i) {
                            *t = tag;
                        }
                    }
                }
                Err(e) => keep_cause(&mut failed, e),
            }
        }
        failed.map_or(Ok(tags), Err)
    }

    /// One thread's share of `write_batch`, in ascending page order.
    fn write_runs<T>(
        &self,
        epoch: u32,
        part: Vec<(usize, PageNo, T)>,
        fill: &(dyn Fn(&T, &mut [u8]) -> Result<()> + Sync),
    ) -> Result<Vec<(usize, SealTag)>> {
        // One look at the process id for the whole share (`crypto::nonce`).
        crate::crypto::nonce::checked_run(|| self.write_runs_checked(epoch, part, fill))
    }

    fn write_runs_checked<T>(
        &self,
        epoch: u32,
        part: Vec<(usize, PageNo, T)>,
        fill: &(dyn Fn(&T, &mut [u8]) -> Result<()> + Sync),
    ) -> Result<Vec<(usize, SealTag)>> {
        let mut run = SealedRun::new(part.len());
        let mut tags = Vec::with_capacity(part.len());
        for (i, page, item) in part {
            if run.is_full() || (run.len() > 0 && page != run.first + run.len() as u64) {
                self.write_run(&mut run)?;
            }
            let mut entry = self.cache.entry();
            let e =
                Arc::get_mut(&mut entry).ok_or_else(|| Error::ReportableBug("a new cache entry is shared".into()))?;
            let plain = e.bytes_mut();
            plain.fill(0);
            fill(&item, &mut plain[..PAYLOAD_SIZE])?;
            drop(item);
            let tag = run.push_sealed(page, plain, |slot| self.seal_counted(KeyPurpose::Page, page, epoch, slot))?;
            self.settle_entry(e, tag);
            run.entries.push(entry);
            tags.push((i, tag));
        }
        self.write_run(&mut run)?;
        Ok(tags)
    }

    /// Writes a run of sealed pages in one storage write, then caches their plaintext.
    fn write_run(&self, run: &mut SealedRun) -> Result<()> {
        if run.len() == 0 {
            return Ok(());
        }
        self.check_writable()?;
        let bytes = run.sealed();
        match self.storage.write_at(run.first * PAGE_SIZE as u64, bytes) {
            Ok(()) => Counters::add(&self.counters.bytes_written, bytes.len() as u64),
            Err(e) => return self.poison(e),
        }
        for (k, entry) in run.entries.drain(..).enumerate() {
            self.cache_insert(run.first + k as u64, entry);
        }
        Ok(())
    }
}

/// Keeps the first error of the sealing threads, unless it is the `Poisoned` that one thread
/// met after another's write failed, or any other error while another thread's write failed
/// (the write poisoned the handle): then the I/O error itself is reported.
fn keep_cause(failed: &mut Option<Error>, e: Error) {
    let replace = match (&*failed, &e) {
        (None, _) | (Some(Error::Poisoned), _) => true,
        (Some(Error::Io(_)), _) => false,
        (Some(_), Error::Io(_)) => true,
        _ => false,
    };
    if replace {
        *failed = Some(e);
    }
}

/// Pages written by one storage write in `write_batch`.
const RUN_PAGES: usize = 32;

/// Sealed pages with consecutive numbers from `first`, waiting for one write, and the cache
/// entries holding their plaintext. A slot holds plaintext only between its copy and its seal
/// (in an encrypted file); a failed seal wipes the slot.
struct SealedRun {
    first: PageNo,
    buf: Box<[u8]>,
    entries: Vec<Arc<CachedPage>>,
}

impl SealedRun {
    /// A run of at most `pages` pages (a buffer no larger than the thread's share needs: a
    /// small commit's levels are a page or a few each).
    fn new(pages: usize) -> SealedRun {
        let pages = pages.clamp(1, RUN_PAGES);
        SealedRun { first: 0, buf: vec![0u8; pages * PAGE_SIZE].into_boxed_slice(), entries: Vec::with_capacity(pages) }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn is_full(&self) -> bool {
        self.len() * PAGE_SIZE >= self.buf.len()
    }

    /// The sealed bytes of the run.
    fn sealed(&self) -> &[u8] {
        &self.buf[..self.len() * PAGE_SIZE]
    }

    /// Copies `plain` into the next slot (as page `page`) and seals it there with `seal`.
    /// The caller pushes the entry next.
    fn push_sealed(
        &mut self,
        page: PageNo,
        plain: &PageBuf,
        seal: impl FnOnce(&mut PageBuf) -> Result<SealTag>,
    ) -> Result<SealTag> {
        if self.len() == 0 {
            self.first = page;
        }
        let at = self.len() * PAGE_SIZE;
        let slot = self
            .buf
            .get_mut(at..at + PAGE_SIZE)
            .and_then(|s| <&mut PageBuf>::try_from(s).ok())
            .ok_or_else(|| Error::ReportableBug("a sealed run overflowed".into()))?;
        slot.copy_from_slice(plain);
        seal(slot).inspect_err(|_| crate::crypto::wipe::wipe(slot))
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::*;
    use crate::crypto::cipher::{CipherBackend, CipherId};
    use crate::crypto::keys::SecretKey;
    use crate::crypto::seal::{DataKeys, PageSealer};
    use crate::format::page::PageRef;
    use crate::storage::{GatedMemory, Storage, WriteGate};

    /// Counts the writes of a `GatedMemory` and can be told to fail them, or its syncs.
    #[derive(Default)]
    struct Counts {
        writes: AtomicU64,
        fail: AtomicBool,
        fail_sync: AtomicBool,
    }

    impl WriteGate for Counts {
        fn before_write(&self) -> io::Result<()> {
            if self.fail.load(Ordering::Relaxed) {
                return Err(io::Error::other("injected"));
            }
            self.writes.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        fn before_sync(&self) -> io::Result<()> {
            if self.fail_sync.load(Ordering::Relaxed) {
                return Err(io::Error::other("injected sync failure"));
            }
            Ok(())
        }
    }

    /// A failed sync poisons the pager as a failed write does: nothing is retried on the same
    /// handle (after a failed `fdatasync` the kernel may have dropped the writes it held).
    #[test]
    fn a_failed_sync_poisons() {
        for (storage, pager) in pagers() {
            let items: Vec<(PageNo, u32)> = (0..4).map(|i| (100 + i as u64, i)).collect();
            pager.write_batch(0, items, &fill_item).unwrap();
            storage.gate.fail_sync.store(true, Ordering::Relaxed);
            assert!(matches!(pager.sync(), Err(Error::Io(_))));
            assert!(pager.is_poisoned());
            storage.gate.fail_sync.store(false, Ordering::Relaxed);
            assert!(matches!(pager.sync(), Err(Error::Poisoned)), "a sync is not retried");
            let items: Vec<(PageNo, u32)> = (0..4).map(|i| (200 + i as u64, i)).collect();
            assert!(pager.write_batch(0, items, &fill_item).is_err());
        }
    }

    type CountingStorage = GatedMemory<Counts>;

    fn pagers() -> Vec<(Arc<CountingStorage>, Pager)> {
        let fid = [7u8; 16];
        let sealers = [
            PageSealer::plaintext(fid),
            PageSealer::encrypted(
                fid,
                CipherId::Aes256Gcm,
                CipherBackend::default(),
                DataKeys::single(SecretKey::from_bytes([5; 32])),
                10,
            ),
        ];
        sealers
            .into_iter()
            .map(|sealer| {
                let storage = Arc::new(CountingStorage::default());
                let pager = Pager::new(storage.clone(), sealer, 1 << 20);
                pager.set_page_limit(1_000);
                (storage, pager)
            })
            .collect()
    }

    /// What `fill` writes for item `i`: its number, then a byte pattern of its own.
    fn fill_item(i: &u32, out: &mut [u8]) -> Result<()> {
        out[..4].copy_from_slice(&i.to_le_bytes());
        out[4..64].fill(*i as u8 ^ 0x5A);
        Ok(())
    }

    #[test]
    fn a_batch_comes_back_in_item_order_and_runs_share_writes() {
        // Unsorted, with gaps: runs 100..170 (70 pages: three runs of up to 32), 300..303, and
        // lone pages; over 32 items, so two threads share it.
        let mut pages: Vec<PageNo> = (100..170).rev().collect();
        pages.extend([302, 9, 300, 301, 500, 11]);
        for (storage, pager) in pagers() {
            let items: Vec<(PageNo, u32)> = pages.iter().enumerate().map(|(i, p)| (*p, i as u32)).collect();
            let tags = pager.write_batch(0, items, &fill_item).expect("write_batch");
            assert_eq!(tags.len(), pages.len());
            // One write per run at least; each thread's share (up to 8) may cut one run in two.
            let writes = storage.gate.writes.load(Ordering::Relaxed);
            assert!((6..=13).contains(&writes), "{writes} writes for 6 runs");
            for pass in ["cached", "from storage"] {
                for (i, (&page, &tag)) in pages.iter().zip(&tags).enumerate() {
                    let p = pager.read(PageRef { page, tag, generation: 0 }, None).expect(pass);
                    let mut want = vec![0u8; PAYLOAD_SIZE];
                    fill_item(&(i as u32), &mut want).expect("fill");
                    assert!(p.payload() == &want[..], "page {page} ({pass}) holds item {i}'s payload");
                }
                pager.clear_cache();
            }
        }
    }

    #[test]
    fn the_io_error_is_reported_not_the_poisoning_it_caused() {
        let io = || Error::Io(io::Error::other("injected"));
        for order in [[Error::Poisoned, io()], [io(), Error::Poisoned]] {
            let mut failed = None;
            order.into_iter().for_each(|e| keep_cause(&mut failed, e));
            assert!(matches!(failed, Some(Error::Io(_))), "{failed:?}");
        }
        let mut failed = None;
        keep_cause(&mut failed, Error::Poisoned);
        assert!(matches!(failed, Some(Error::Poisoned)));
    }

    #[test]
    fn a_page_not_written_is_not_cached_and_a_failed_write_poisons() {
        for (storage, pager) in pagers() {
            let refuse = |i: &u32, out: &mut [u8]| {
                if *i == 40 { Err(Error::ReportableBug("refused".into())) } else { fill_item(i, out) }
            };
            let items: Vec<(PageNo, u32)> = (0..50).map(|i| (100 + i as u64, i)).collect();
            assert!(pager.write_batch(0, items, &refuse).is_err());
            assert!(!pager.is_poisoned(), "a fill that fails is not an I/O failure");
            // However the threads shared the pages, the refused page was never written, so it
            // is not cached (nor is the rest of its thread's run).
            let cached = pager.cached_pages();
            assert!(cached < 50, "{cached} pages cached");
            let mut b = vec![0u8; PAGE_SIZE];
            if storage.read_at(140 * PAGE_SIZE as u64, &mut b).is_ok() {
                assert!(b.iter().all(|x| *x == 0), "the refused page was not written");
            }
            storage.gate.fail.store(true, Ordering::Relaxed);
            let items: Vec<(PageNo, u32)> = (0..50).map(|i| (200 + i as u64, i)).collect();
            assert!(matches!(pager.write_batch(0, items, &fill_item), Err(Error::Io(_))));
            assert!(pager.is_poisoned());
            assert_eq!(pager.cached_pages(), cached, "no page of a failed write is cached");
        }
    }
}
