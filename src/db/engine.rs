//! The engine: snapshots, the single writer, commits and durability. SPEC.md §5, §8.
//!
//! Layer: db, above `btree` and `pager`. Invariants:
//! - readers take an `Arc<Snapshot>` of the newest commit and never block the writer; pages a
//!   snapshot can reach are not reused while it lives (the writer keeps `Weak`s of replaced
//!   snapshots and hands freed pages out only when every older snapshot is gone);
//! - one write transaction at a time (the writer mutex); it owns the allocator while it runs
//!   and gives it back on commit or abort, with every page it allocated returned on abort; a
//!   transaction dropped with neither (a panic unwinding through engine code) lets go of the
//!   writer with `allocator_out` set, which poisons the handle: the next writer would otherwise
//!   take an empty allocator and hand out pages from 0 up (the headers and commit records);
//! - a commit publishes a new snapshot; a durable commit additionally writes the free list and
//!   a commit record and syncs once (`durable_commit` with the writer held, `make_durable`
//!   without: group commit, the sync running with the writer released);
//! - one record is written or synced at a time (`sync_lock`), and `durable_seq` moves only
//!   after a sync returned; pages freed since the last synced record wait for it (SPEC §5.3);
//! - lock order: `writer`, then `sync_lock`, then `header`. Nothing waits for the writer while
//!   it holds the header (a durable commit takes the header with the writer held).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};

use super::config::Durability;
use super::tree_map::TreeMap;
use crate::btree::TreeRoot;
use crate::btree::read::RootPins;
use crate::btree::tx::TxPages;
use crate::error::{Error, OnPanic, PageNo, Result};
use crate::format::commit::{CommitRecord, FREE_DELTA_VERSION};
use crate::format::header::FileHeader;
use crate::format::page::PageRef;
use crate::format::{COMMIT_PAGE_A, COMMIT_PAGE_B};
use crate::pager::Pager;
use crate::pager::alloc::Allocator;
use crate::pager::freelist;

/// Reserved catalog names start with this byte sequence and are hidden from `tree_names`.
pub(crate) const RESERVED_PREFIX: &[u8] = b"\0foldvault.";
pub(crate) const IDS_TREE: &[u8] = b"\0foldvault.ids";

/// Refuses a tree name the caller may not open or drop: one longer than a key, and the
/// reserved names, which hold the engine's own state (`generate_id`'s counter).
pub(crate) fn check_user_tree_name(name: &[u8]) -> Result<()> {
    // A name is a catalog key: refused here rather than at the commit that would list it.
    if name.len() > crate::MAX_KEY_LEN {
        return Err(Error::KeyTooLarge { len: name.len(), max: crate::MAX_KEY_LEN });
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Err(Error::Unsupported("tree names starting with \\0foldvault. are reserved".into()));
    }
    Ok(())
}

/// One committed state of the database.
pub(crate) struct Snapshot {
    pub(crate) seq: u64,
    pub(crate) catalog: PageRef,
    pub(crate) trees: TreeMap,
    /// The trees' root pages, pinned for lookups through this snapshot.
    pub(crate) roots: RootPins,
}

impl Snapshot {
    /// A snapshot of `trees`, its roots pinned (shared with `prev` where unchanged).
    pub(crate) fn new(pager: &Pager, seq: u64, catalog: PageRef, trees: TreeMap, prev: Option<&Snapshot>) -> Snapshot {
        let roots = RootPins::new(pager, trees.values().map(|t| t.root), prev.map(|p| &p.roots));
        Snapshot { seq, catalog, trees, roots }
    }
}

pub(crate) struct WriterState {
    pub(crate) alloc: Allocator,
    pub(crate) durable: CommitRecord,
    pub(crate) durable_slot: PageNo,
    /// The durable free-list chain, head first (`freelist::write` keeps what it can of it).
    pub(crate) freelist: freelist::FreeChain,
    pub(crate) retained: Vec<(u64, Weak<Snapshot>)>,
    pub(crate) epoch: u32,
    /// After each rekey whose old keys still wait, oldest first: (the first commit whose pages
    /// are all under the new key, that key's first epoch). Older keys are destroyed once no
    /// live snapshot is older than that commit.
    pub(crate) retiring_keys: Vec<(u64, u32)>,
    /// `alloc` is out with a transaction (`begin` took it; `abort` and `commit` give it back).
    pub(crate) allocator_out: bool,
}

impl WriterState {
    /// The oldest sequence number any live snapshot reads.
    fn oldest_live(&mut self, current: u64) -> u64 {
        self.retained.retain(|(_, w)| w.strong_count() > 0);
        self.retained.iter().map(|(s, _)| *s).min().unwrap_or(current).min(current)
    }
}

/// What recovery at open found.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// The commit sequence number the database opened at.
    pub seq: u64,
    /// True when the newest commit record did not verify and an older one was used (a commit
    /// interrupted by a crash before its sync returned, or tampering).
    pub fell_back: bool,
    /// Pages verified at open.
    pub pages_verified: u64,
    /// The header copy that was damaged or stale and was repaired, if any.
    pub header_repaired: Option<PageNo>,
    /// Commit-record slots holding bytes that do not open (a record torn by a crash, or
    /// tampered with).
    pub rejected_slots: Vec<PageNo>,
    /// The write-ahead log's replay stopped at a group that fails its checksum (torn by a
    /// crash, or damaged): that group's commits, and any logged after it, are not in the
    /// database (SPEC §15).
    pub log_group_dropped: bool,
}

pub(crate) struct Engine {
    pub(crate) pager: Arc<Pager>,
    pub(crate) header: Mutex<FileHeader>,
    pub(crate) current: RwLock<Arc<Snapshot>>,
    pub(crate) writer: Arc<Mutex<WriterState>>,
    pub(crate) durability: Durability,
    pub(crate) seal_budget: u64,
    /// `Config::tx_spill_after`.
    pub(crate) spill_after: usize,
    /// True while commits exist that are not yet durable.
    pub(crate) undurable: AtomicBool,
    /// A `Db::rekey` is running on this handle (one at a time). Not in the writer's state: a
    /// rekey's end clears it whoever holds the writer (a progress callback that kept a write
    /// transaction open waited there for itself: concurrency review).
    pub(crate) rekey_running: AtomicBool,
    pub(crate) recovery: RecoveryReport,
    pub(crate) ids: Mutex<(u64, u64)>,
    pub(crate) durable_seq: AtomicU64,
    /// The sequence number and catalog of the newest durable commit (`durable_root_digest`),
    /// set with `durable_seq`.
    pub(crate) durable_root: Mutex<(u64, PageRef)>,
    /// Held while a commit record is written and synced: records are written one at a time,
    /// each to the slot its predecessor does not hold, and only once that one is on disk.
    /// Taken after the writer lock; a thread holding it never waits for the writer.
    pub(crate) sync_lock: Mutex<()>,
    /// The thread holding the writer through a transaction (0 = none): a call from that same
    /// thread that needs the writer again fails or skips instead of deadlocking.
    pub(crate) writer_owner: Arc<AtomicU64>,
    /// The tokio task (if any) that took the writer through a transaction: the async API runs
    /// a call inline, in the transaction, only for that task; another task on the same thread
    /// (a `current_thread` runtime, a `LocalSet`) waits for the writer on the blocking pool.
    #[cfg(feature = "tokio")]
    pub(crate) writer_task: Mutex<Option<tokio::task::Id>>,
    /// The threads (`thread_tag`) that called `flush` inside their running write transaction:
    /// each flush is made when that transaction ends (`flush_if_requested`), by that thread.
    /// (A flag for the whole database was taken by whichever transaction ended first: another
    /// thread's, ending while the requester's still ran. One slot for a thread was taken over
    /// by another thread's request, made between the requester's release of the writer and its
    /// look at the slot, and the requester's commit returned without its sync: commit review.)
    /// At most one entry a thread; `flush_asks` counts them, so that a transaction's end
    /// (every commit) takes no lock when none is waiting.
    pub(crate) flush_in_tx: Mutex<Vec<u64>>,
    pub(crate) flush_asks: AtomicUsize,
    pub(crate) checkpoint_on_close: bool,
    /// Subscriptions to trees' changes (`Tree::watch_prefix`).
    pub(crate) watchers: Arc<super::watch::Watchers>,
}

/// A small per-thread id (never 0).
pub(crate) fn thread_tag() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static TAG: u64 = NEXT.fetch_add(1, Ordering::Relaxed));
    TAG.with(|t| *t)
}

/// The writer lock held by a transaction; records its thread while held.
pub(crate) struct WriterGuard {
    guard: parking_lot::ArcMutexGuard<parking_lot::RawMutex, WriterState>,
    owner: Arc<AtomicU64>,
    pager: Arc<Pager>,
}

impl std::ops::Deref for WriterGuard {
    type Target = WriterState;
    fn deref(&self) -> &WriterState {
        &self.guard
    }
}

impl std::ops::DerefMut for WriterGuard {
    fn deref_mut(&mut self) -> &mut WriterState {
        &mut self.guard
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        if self.guard.allocator_out {
            // The transaction was dropped without its abort or commit (a panic unwinding
            // through the engine): its allocator, and so which pages are free, is gone. The
            // file holds every commit; a reopen rebuilds the allocator from it.
            self.pager.poison_now("a write transaction was abandoned part way (a panic)");
        }
        self.owner.store(0, Ordering::Release);
    }
}

impl Engine {
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().clone()
    }

    /// Destroys the data keys a finished rekey left for older snapshots, once none is alive
    /// (checked whenever a write transaction begins, and when the rekey ends).
    pub(crate) fn retire_old_keys(&self, ws: &mut WriterState, current: u64) {
        // Oldest first: each rotation's old keys go once no snapshot older than its finish is
        // alive, whatever a later rotation still waits for (one slot, a second rotation took
        // the first's place, and its old key waited for the second's snapshots too).
        let oldest = ws.oldest_live(current);
        while let Some(&(seq, first)) = ws.retiring_keys.first() {
            if oldest < seq {
                break;
            }
            self.pager.sealer.retire_keys_before(first);
            ws.retiring_keys.remove(0);
            tracing::info!(target: "foldvault::audit", first_epoch = first, "old data key destroyed (no snapshot needs it)");
        }
    }

    /// Starts a write transaction: takes the writer lock and the allocator.
    pub(crate) fn begin(&self) -> Result<(WriterGuard, TxPages, Arc<Snapshot>)> {
        if self.writer_held_here() {
            return Err(Error::Unsupported(
                "this thread is inside a write transaction: write through the transaction's own trees".into(),
            ));
        }
        let guard = self.writer.lock_arc();
        self.writer_owner.store(thread_tag(), Ordering::Release);
        #[cfg(feature = "tokio")]
        {
            *self.writer_task.lock() = tokio::task::try_id();
        }
        let mut ws = WriterGuard { guard, owner: self.writer_owner.clone(), pager: self.pager.clone() };
        self.pager.check_writable()?;
        let base = self.snapshot();
        self.retire_old_keys(&mut ws, base.seq);
        let oldest = ws.oldest_live(base.seq);
        // The last record a sync made durable (`ws.durable` may name one still being synced).
        let durable = self.durable_seq.load(Ordering::Acquire);
        ws.alloc.promote(durable, oldest);
        if self.pager.seals_in_epoch() >= self.seal_budget {
            ws.epoch = ws.epoch.checked_add(1).ok_or(Error::NonceBudgetExhausted)?;
            self.pager.sealer.set_max_epoch(ws.epoch);
            self.pager.set_seals_in_epoch(0);
            tracing::info!(target: "foldvault::audit", epoch = ws.epoch, "seal budget reached: moved to a new key epoch");
        }
        // The next commit's number, which must decode (`CommitRecord::decode` refuses
        // `u64::MAX`): no real file gets near it, but a forged plaintext record (or backup
        // header) can start there, and the addition overflowed.
        let seq = base.seq.checked_add(1).filter(|&s| s < u64::MAX).ok_or_else(|| {
            Error::Unsupported("the commit sequence number is exhausted: no further commit can be recorded".into())
        })?;
        let alloc = std::mem::take(&mut ws.alloc);
        ws.allocator_out = true;
        let mut tx = TxPages::new(self.pager.clone(), alloc, seq, ws.epoch);
        tx.set_spill_after(self.spill_after);
        Ok((ws, tx, base))
    }

    /// Gives back every page a failed or abandoned transaction allocated.
    pub(crate) fn abort(&self, ws: &mut WriterState, mut tx: TxPages) {
        for p in tx.new_pages.drain() {
            self.pager.forget(p);
            tx.alloc.give_back(p);
        }
        ws.alloc = tx.alloc;
        ws.allocator_out = false;
    }

    /// Commits a transaction's changes. `changed` names trees whose roots changed (created
    /// included); `dropped` names trees to remove from the catalog (their pages already freed).
    /// A name in both was dropped and made again: a new instance (`TreeRoot::born`).
    pub(crate) fn commit(
        &self,
        ws: &mut WriterState,
        mut tx: TxPages,
        base: &Arc<Snapshot>,
        mut trees: TreeMap,
        changed: &BTreeSet<Vec<u8>>,
        dropped: &BTreeSet<Vec<u8>>,
        durability: Durability,
    ) -> Result<()> {
        if changed.is_empty() && dropped.is_empty() && tx.catalog_root.is_none() {
            self.abort(ws, tx);
            return Ok(());
        }
        let seq = tx.seq;
        let result = (|| -> Result<PageRef> {
            {
                let mut roots: Vec<&mut PageRef> = trees.roots_mut(changed).map(|(_, r)| &mut r.root).collect();
                tx.flush(&mut roots)?;
            }
            let mut cat =
                TreeRoot { root: tx.catalog_root.unwrap_or(base.catalog), count: base.trees.len() as u64, born: 0 };
            for name in dropped {
                tx.remove(&mut cat, name, false)?;
            }
            for (name, r) in trees.roots_mut(changed) {
                // A name longer than any write makes came from the file: damage to the catalog
                // (as the check reports it), where the insert below called it the caller's
                // `KeyTooLarge`, and a rotation or a compaction, which rewrite every tree's
                // entry, could never finish (input review).
                if name.len() > crate::MAX_KEY_LEN {
                    let leaf = super::open::catalog_leaf_of(&self.pager, base.catalog, name);
                    return Err(Error::corrupt(leaf, crate::error::CorruptReason::BadLayout));
                }
                // A tree new to the catalog, or dropped and made again, is a new instance; any
                // other keeps its own (whatever root the caller built: `clear` starts from an
                // empty one).
                r.born = match base.trees.get(name) {
                    Some(old) if !dropped.contains(name) => old.born,
                    _ => seq,
                };
                tx.insert(&mut cat, name, &r.encode(), false)?;
            }
            tx.flush(&mut [&mut cat.root])?;
            Ok(cat.root)
        })();
        let catalog = match result {
            Ok(c) => c,
            Err(e) => {
                self.abort(ws, tx);
                return Err(e);
            }
        };
        // From here the writer state moves ahead of the disk: a panic (a caller's `Storage`)
        // before the snapshot is published and its record written poisons the handle, as an
        // error does, or the next commit reused this sequence number and freed pages the
        // published trees hold (concurrency review).
        let _unwinding = OnPanic::new(|| self.pager.poison_now("a commit panicked part way"));
        let freed = std::mem::take(&mut tx.freed);
        ws.alloc = tx.alloc;
        ws.allocator_out = false;
        ws.alloc.release(seq, freed);
        self.pager.raise_page_limit(ws.alloc.page_count);
        let snap = Arc::new(Snapshot::new(&self.pager, seq, catalog, trees, Some(base)));
        {
            let mut cur = self.current.write();
            let old = std::mem::replace(&mut *cur, snap);
            ws.retained.push((old.seq, Arc::downgrade(&old)));
        }
        crate::pager::metrics::Counters::add(&self.pager.counters.commits, 1);
        self.undurable.store(true, Ordering::Release);
        if durability == Durability::Immediate {
            self.durable_commit(ws)?;
        }
        Ok(())
    }

    /// `commit` for a caller that is done with the writer: commits, lets go of the writer, and
    /// for an immediate commit then waits until it is durable (`make_durable`), so that commits
    /// other threads make meanwhile share its sync. Callers that keep working under the writer
    /// (rekey, `generate_id`) use `commit`, whose immediate commit syncs with the writer held.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn commit_released(
        &self,
        mut ws: WriterGuard,
        tx: TxPages,
        base: &Arc<Snapshot>,
        trees: TreeMap,
        changed: &BTreeSet<Vec<u8>>,
        dropped: &BTreeSet<Vec<u8>>,
        durability: Durability,
        changes: super::watch::Changes,
    ) -> Result<()> {
        let seq = tx.seq;
        // Subscriptions of the trees dropped here end with them (looked at now: one may have
        // been made since the transaction began).
        let ended: Vec<(Vec<u8>, u64)> = match self.watchers.any() {
            true => dropped.iter().filter_map(|n| base.trees.get(n).map(|r| (n.clone(), r.born))).collect(),
            false => Vec::new(),
        };
        let committed = self.commit(&mut ws, tx, base, trees, changed, dropped, Durability::Eventual);
        match committed {
            Ok(()) => self.send_released(ws, changes, &ended),
            Err(e) => {
                drop(ws);
                return Err(e);
            }
        }
        if durability == Durability::Immediate {
            self.make_durable(seq)?;
        }
        Ok(())
    }

    /// Lets the writer go, then sends the events of what it committed and ends the
    /// subscriptions of the tree instances in `ended`, in commit order: the commit's turn is
    /// taken before the writer is let go, so the next commit's events (and ends) wait for
    /// these, and they are sent without the writer (`watch`). A commit nobody hears and that
    /// ends no subscription takes no turn.
    pub(crate) fn send_released(&self, ws: WriterGuard, changes: super::watch::Changes, ended: &[(Vec<u8>, u64)]) {
        let events = changes.into_events();
        match self.watchers.take_turn(&events, ended) {
            None => drop(ws),
            Some(turn) => {
                drop(ws);
                self.watchers.deliver(turn, events, ended);
            }
        }
    }

    /// Returns once commit `seq` is durable (group commit), with the bytes of free list and
    /// record written if this call led a sync. Called without the writer. The sync runs with
    /// the writer released, so other threads commit in memory meanwhile and the next sync
    /// covers all of them; a call whose commit a sync already covered returns without one.
    /// `durable_seq` only moves after a sync returned, so a commit it covers is on disk.
    pub(crate) fn make_durable(&self, seq: u64) -> Result<usize> {
        // A commit that changed nothing took no sequence number.
        let seq = seq.min(self.snapshot().seq);
        loop {
            if self.durable_seq.load(Ordering::Acquire) >= seq {
                return Ok(0);
            }
            if self.pager.is_poisoned() {
                return Err(Error::Poisoned);
            }
            let mut ws = self.writer.lock();
            if self.durable_seq.load(Ordering::Acquire) >= seq {
                return Ok(0);
            }
            // Lock order: writer, then sync. A sync in flight is waited for without the writer.
            let Some(syncing) = self.sync_lock.try_lock() else {
                drop(ws);
                drop(self.sync_lock.lock());
                continue;
            };
            if !self.undurable.load(Ordering::Acquire) {
                // Nothing pending: the last record written covers everything and its sync
                // (which held `sync_lock`) returned, or failed and poisoned the handle.
                if self.pager.is_poisoned() {
                    return Err(Error::Poisoned);
                }
                if self.durable_seq.load(Ordering::Acquire) < seq {
                    return Err(Error::ReportableBug(format!("commit {seq} is neither pending nor durable")));
                }
                return Ok(0);
            }
            let _unwinding = OnPanic::new(|| self.pager.poison_now("a commit panicked part way"));
            let prepared = self.prepare_durable(&mut ws);
            // Poisoned before the writer is let go: a writer waiting for it would otherwise
            // find the handle sound and commit on a half-rewritten allocator and free list.
            if prepared.is_err() {
                self.pager.poison_now("commit failed part way");
            }
            drop(ws);
            let (durable, bytes) = prepared?;
            self.sync_record(durable)?;
            drop(syncing);
            return Ok(bytes);
        }
    }

    /// Makes the newest commit durable with the writer held: free list, commit record, one
    /// sync (waiting first for a sync in flight). Any failure part way leaves the writer state
    /// inconsistent with the disk, so it poisons the handle.
    pub(crate) fn durable_commit(&self, ws: &mut WriterState) -> Result<usize> {
        let _syncing = self.sync_lock.lock();
        if !self.undurable.load(Ordering::Acquire) {
            return if self.pager.is_poisoned() { Err(Error::Poisoned) } else { Ok(0) };
        }
        if self.pager.is_poisoned() {
            return Err(Error::Poisoned);
        }
        let _unwinding = OnPanic::new(|| self.pager.poison_now("a commit panicked part way"));
        let r = self.prepare_durable(ws).and_then(|(durable, bytes)| self.sync_record(durable).map(|()| bytes));
        if r.is_err() {
            self.pager.poison_now("commit failed part way");
        }
        r
    }

    /// The sync of the record of commit `durable` (its sequence number and catalog, written by
    /// `prepare_durable`; the caller holds `sync_lock`), then `durable_seq`. A failed sync
    /// poisons the handle.
    fn sync_record(&self, durable: (u64, PageRef)) -> Result<()> {
        self.pager.sync()?;
        *self.durable_root.lock() = durable;
        self.durable_seq.store(durable.0, Ordering::Release);
        crate::pager::metrics::Counters::add(&self.pager.counters.durable_commits, 1);
        Ok(())
    }

    /// Writes the free list and the commit record of the newest commit (everything but the
    /// sync); the caller holds `sync_lock`, so no other record is being written or synced.
    /// Returns the record's sequence number and the bytes written.
    ///
    /// From here on the writer state treats the record as durable: the next record goes to the
    /// other slot and names this one as its predecessor, and the allocator's "fresh" pages
    /// (allocated since the last durable record, reusable once freed) become ordinary ones,
    /// because this record may reference them. Pages freed up to this commit still wait for
    /// `durable_seq`, which moves only after the sync (`begin` promotes by it), so nothing
    /// reachable from the last synced record is written before this one is on disk. If the sync
    /// fails the handle is poisoned and this state is never used.
    fn prepare_durable(&self, ws: &mut WriterState) -> Result<((u64, PageRef), usize)> {
        let snap = self.snapshot();
        let seq = snap.seq;
        // Format version 2: small changes to the free list go in the record (SPEC.md §7).
        let delta_room =
            if self.pager.sealer.version() >= FREE_DELTA_VERSION { crate::format::commit::MAX_DELTA_PAGES } else { 0 };
        let (fl, written) = freelist::write(&self.pager, &mut ws.alloc, seq, ws.epoch, &mut ws.freelist, delta_room)?;
        self.pager.counters.free_pages.store(ws.alloc.unused_count(), Ordering::Relaxed);
        self.pager.raise_page_limit(ws.alloc.page_count);
        self.pager.ensure_pages(ws.alloc.page_count)?;
        let header_generation = self.header.lock().generation;
        let rec = CommitRecord {
            seq,
            prev_durable_seq: ws.durable.seq,
            catalog: snap.catalog,
            freelist: fl,
            page_count: ws.alloc.page_count,
            key_epoch: ws.epoch,
            oldest_epoch: ws.durable.oldest_epoch.min(ws.epoch),
            seals_in_epoch: self.pager.seals_in_epoch().saturating_add(1),
            header_generation,
            rekey_cursor: ws.durable.rekey_cursor,
            free_delta: ws.freelist.delta().clone(),
        };
        let slot = if ws.durable_slot == COMMIT_PAGE_A { COMMIT_PAGE_B } else { COMMIT_PAGE_A };
        self.pager.write_commit(slot, &rec)?;
        let pages = written + 1;
        ws.alloc.mark_durable();
        ws.durable = rec;
        ws.durable_slot = slot;
        // Every commit so far is in this record (commits set the flag under the writer, which
        // the caller holds).
        self.undurable.store(false, Ordering::Release);
        Ok(((seq, snap.catalog), pages * crate::format::PAGE_SIZE))
    }

    /// The epoch new pages are sealed under (without waiting for the writer when this thread
    /// holds it).
    pub(crate) fn current_epoch(&self) -> u32 {
        // The sealer's limit follows the writer's epoch (set wherever the epoch moves: `begin`,
        // open, rekey), so a reader of counters never waits for a write transaction to end.
        self.pager.sealer.max_epoch()
    }

    /// On a clean close: writes a second commit record naming the same commit, whose
    /// `prev_durable_seq` is the last durable commit itself, so the next open has no new pages
    /// to verify (recovery after a crash still verifies everything the newest commit wrote).
    /// One page and one sync; skipped when there is nothing to skip.
    pub(crate) fn checkpoint_on_close(&self) -> Result<()> {
        let mut ws = self.writer.lock();
        let _syncing = self.sync_lock.lock();
        // Seals the durable record does not count (the early-written leaves of a transaction
        // that was then dropped, or whose commit failed): written at close too, or the next
        // open counted from the record again, and sessions that make no durable commit could
        // seal without bound under one epoch (rekey review, low).
        let seals_unrecorded =
            ws.epoch == ws.durable.key_epoch && self.pager.seals_in_epoch() > ws.durable.seals_in_epoch;
        if !self.checkpoint_on_close
            || self.pager.is_poisoned()
            || self.undurable.load(Ordering::Acquire)
            || (ws.durable.prev_durable_seq >= ws.durable.seq && !seals_unrecorded)
        {
            return Ok(());
        }
        self.copy_durable_record(&mut ws)
    }

    /// Writes the last durable record again, into the other slot, with `prev_durable_seq = seq`,
    /// and syncs: both slots then name the same state (clean close; compaction before it cuts
    /// the file). Same sequence number and state; recovery prefers, among equal sequence
    /// numbers, the record with the higher `prev_durable_seq`. The caller holds `sync_lock` and
    /// nothing is pending (`undurable` is false).
    pub(crate) fn copy_durable_record(&self, ws: &mut WriterState) -> Result<()> {
        let mut rec = ws.durable.clone();
        rec.prev_durable_seq = rec.seq;
        rec.seals_in_epoch = if ws.epoch == rec.key_epoch {
            self.pager.seals_in_epoch().saturating_add(1)
        } else {
            // The writer left the record's epoch (its budget spent, or a rotation begun) and
            // committed nothing since: the pager counts the new epoch's seals, not this one's.
            // The record keeps its epoch spent, so the next writer after a reopen moves on again.
            rec.seals_in_epoch.max(self.seal_budget).saturating_add(1)
        };
        let slot = if ws.durable_slot == COMMIT_PAGE_A { COMMIT_PAGE_B } else { COMMIT_PAGE_A };
        self.pager.write_commit(slot, &rec)?;
        self.pager.sync()?;
        ws.durable = rec;
        ws.durable_slot = slot;
        Ok(())
    }

    /// The writer lock, for work outside a transaction (check, backup, key changes); refused
    /// rather than a deadlock when this thread holds it through an open transaction.
    pub(crate) fn lock_writer(&self) -> Result<parking_lot::MutexGuard<'_, WriterState>> {
        self.refuse_inside_transaction()?;
        Ok(self.writer.lock())
    }

    /// `Unsupported` on a thread inside a write transaction: for maintenance calls, before
    /// anything they do first (a `flush` there only leaves a request for the transaction's end).
    pub(crate) fn refuse_inside_transaction(&self) -> Result<()> {
        if self.writer_held_here() {
            return Err(Error::Unsupported(
                "this thread is inside a write transaction: commit or drop it first".into(),
            ));
        }
        Ok(())
    }

    /// True if this thread holds the writer through an open transaction.
    pub(crate) fn writer_held_here(&self) -> bool {
        self.writer_owner.load(Ordering::Acquire) == thread_tag()
    }

    /// True if this thread holds the writer through an open transaction begun by the tokio
    /// task running now (or, both outside any task, by this thread).
    #[cfg(feature = "tokio")]
    pub(crate) fn writer_held_by_this_task(&self) -> bool {
        self.writer_held_here() && *self.writer_task.lock() == tokio::task::try_id()
    }

    /// `flush()`: durable commit of whatever is pending; nearly free when nothing is. Called
    /// from inside a write transaction on the same thread (whose writer lock the sync would
    /// wait for) it returns at once, and the flush is made when that transaction ends,
    /// committed or not (`flush_if_requested`).
    pub(crate) fn flush(&self) -> Result<usize> {
        if self.pager.is_poisoned() {
            return Err(Error::Poisoned);
        }
        if self.writer_held_here() {
            // Another task on this thread: its flush would wait for this transaction's writer
            // lock, whose holder cannot run until it returns, and a deferred one answered it
            // `Ok` with nothing durable (concurrency review).
            #[cfg(feature = "tokio")]
            if !self.writer_held_by_this_task() {
                return Err(Error::Unsupported(
                    "another task on this thread is inside a write transaction: flush from that task, or after it ends"
                        .into(),
                ));
            }
            let mut asked = self.flush_in_tx.lock();
            let me = thread_tag();
            if !asked.contains(&me) {
                asked.push(me);
                self.flush_asks.fetch_add(1, Ordering::AcqRel);
            }
            return Ok(0);
        }
        self.make_durable(self.snapshot().seq)
    }

    /// Returns once commit `seq` (a snapshot's) is durable, syncing if it is not: `Poisoned`
    /// if it is not and the handle is, `Unsupported` from inside a write transaction of this
    /// thread when a sync is needed (it would wait for that transaction's writer lock).
    pub(crate) fn make_snapshot_durable(&self, seq: u64) -> Result<()> {
        if self.durable_seq.load(Ordering::Acquire) >= seq.min(self.snapshot().seq) {
            return Ok(());
        }
        if self.writer_held_here() {
            return Err(Error::Unsupported(
                "this snapshot is not durable yet and this thread is inside a write transaction: commit or drop it first"
                    .into(),
            ));
        }
        self.make_durable(seq).map(|_| ())
    }

    /// Makes the `flush` asked for inside the write transaction that just ended on this
    /// thread: called by that transaction once it has let go of the writer.
    pub(crate) fn flush_if_requested(&self) -> Result<usize> {
        // A request of this thread's own is seen here (made on this thread, before).
        if self.flush_asks.load(Ordering::Acquire) == 0 {
            return Ok(0);
        }
        let asked = {
            let mut asked = self.flush_in_tx.lock();
            let me = thread_tag();
            let had = asked.contains(&me);
            if had {
                asked.retain(|&t| t != me);
                self.flush_asks.fetch_sub(1, Ordering::AcqRel);
            }
            had
        };
        if asked { self.flush() } else { Ok(0) }
    }

    /// A public digest of the newest commit, for anchoring against whole-file rollback.
    pub(crate) fn root_digest(&self, snap: &Snapshot) -> [u8; 32] {
        root_digest(self.pager.sealer.file_id(), snap.seq, snap.catalog)
    }

    /// The root digest of the newest durable commit.
    pub(crate) fn durable_root_digest(&self) -> [u8; 32] {
        let (seq, catalog) = *self.durable_root.lock();
        root_digest(self.pager.sealer.file_id(), seq, catalog)
    }

    /// Unique, monotonic ids across restarts (ranges reserved durably in a hidden tree).
    pub(crate) fn generate_id(&self) -> Result<u64> {
        {
            let mut ids = self.ids.lock();
            if ids.0 < ids.1 {
                ids.0 += 1;
                return Ok(ids.0 - 1);
            }
        }
        // The range is spent. The writer lock is taken first and then the id lock, as
        // `TransactionalTree::generate_id` takes them: the id lock is never held while waiting
        // for the writer (a thread inside a transaction that asks for an id would wait for it
        // while the waiter waited for that thread's writer lock).
        let (mut ws, tx, base) = self.begin()?;
        let mut ids = self.ids.lock();
        if ids.0 < ids.1 {
            // Another thread reserved a range meanwhile.
            self.abort(&mut ws, tx);
        } else {
            let floor = ids.0;
            *ids = self.reserve_ids(&mut ws, tx, &base, floor)?;
        }
        ids.0 += 1;
        Ok(ids.0 - 1)
    }

    /// Makes ids below `end` never handed out again, across restarts too: the stored
    /// reservation is raised to at least `end` by a durable commit, and the engine's range
    /// starts there. For a range a transaction reserved that did not commit (its reservation
    /// was rolled back with it, and its ids may have been used).
    pub(crate) fn keep_ids_past(&self, end: u64) -> Result<()> {
        let (mut ws, tx, base) = self.begin()?;
        let mut ids = self.ids.lock();
        *ids = self.reserve_ids(&mut ws, tx, &base, ids.0.max(end))?;
        Ok(())
    }

    /// Reserves the next range of ids, from the stored reservation or `floor` if higher, in a
    /// durable commit of `tx`; returns it. The caller holds the writer and the id lock.
    fn reserve_ids(
        &self,
        ws: &mut WriterState,
        mut tx: TxPages,
        base: &Arc<Snapshot>,
        floor: u64,
    ) -> Result<(u64, u64)> {
        const RESERVE: u64 = 1_000_000;
        let mut trees = base.trees.clone();
        let mut root = trees.get(IDS_TREE).copied().unwrap_or_default();
        // Every failure aborts: a transaction dropped without it would poison the handle.
        let reserved = (|| -> Result<(u64, u64)> {
            let start = stored_next_id(&tx, &root)?.max(floor);
            let end = start
                .checked_add(RESERVE)
                .ok_or_else(|| Error::Unsupported("generate_id: the id space is spent".into()))?;
            tx.insert(&mut root, b"next", &end.to_le_bytes(), false)?;
            Ok((start, end))
        })();
        let range = match reserved {
            Ok(r) => r,
            Err(e) => {
                self.abort(ws, tx);
                return Err(e);
            }
        };
        trees.insert(IDS_TREE.to_vec(), root);
        let changed: BTreeSet<Vec<u8>> = [IDS_TREE.to_vec()].into();
        self.commit(ws, tx, base, trees, &changed, &BTreeSet::new(), Durability::Immediate)?;
        Ok(range)
    }
}

/// `generate_id`'s stored counter in the ids tree `root` (0 if none). The counter is 8 bytes;
/// any other value is damage (salvage reads it so too): read as 0, ids started again at the
/// floor (0 after an open) and repeated ids already handed out (limits review, low).
pub(crate) fn stored_next_id(tx: &TxPages, root: &TreeRoot) -> Result<u64> {
    let Some(v) = tx.get(root, b"next")? else { return Ok(0) };
    let b = tx.value_bytes(&v)?;
    let next: [u8; 8] =
        b[..].try_into().map_err(|_| Error::corrupt(root.root.page, crate::error::CorruptReason::BadLayout))?;
    Ok(u64::from_le_bytes(next))
}

/// The digest that names a commit: the file's id, the commit's sequence number and its catalog
/// root (whose tag authenticates everything below it). Backups carry it; restore and verify
/// check it.
pub(crate) fn root_digest(file_id: &[u8; 16], seq: u64, catalog: crate::format::page::PageRef) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("foldvault 2026-11-28 v1 root digest");
    h.update(file_id);
    h.update(&seq.to_le_bytes());
    h.update(&catalog.page.to_le_bytes());
    h.update(&catalog.tag.0);
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use crate::{Config, Db, Error};

    fn filled(dir: &std::path::Path) -> Db {
        let db = Config::new().file(dir.join("db")).plaintext().use_env(false).open().unwrap();
        for i in 0..300u32 {
            db.insert(i.to_be_bytes(), vec![3u8; 100]).unwrap();
        }
        db.flush().unwrap();
        db
    }

    /// A stored id counter that is not 8 bytes is damage: read as 0, ids started again from
    /// the floor (0 after an open), repeating ids already handed out. In a transaction too.
    #[test]
    fn a_malformed_id_counter_is_damage_not_a_restart_at_zero() {
        use crate::transaction::ConflictableTransactionError;
        let db = Config::new().temporary(true).plaintext().use_env(false).open().unwrap();
        super::super::api::Tree::fixed(db.handle.clone(), super::IDS_TREE).insert(b"next", &[1u8, 2, 3][..]).unwrap();
        let e = db.generate_id().unwrap_err();
        assert!(matches!(e, Error::Corrupt { reason: crate::error::CorruptReason::BadLayout, .. }), "{e:?}");
        let r = db.transaction(|tx| Ok::<_, ConflictableTransactionError>(tx.generate_id()?));
        assert!(r.is_err(), "{r:?}");
    }

    /// A tree name longer than any write makes (only a forged or damaged catalog holds one)
    /// is damage to the catalog when its entry is rewritten, not the caller's `KeyTooLarge`.
    #[test]
    fn a_tree_name_too_long_in_the_catalog_is_damage_when_rewritten() {
        let db = Config::new().temporary(true).plaintext().use_env(false).open().unwrap();
        db.open_tree("t").unwrap().insert("k", "v").unwrap();
        let e = &db.handle.engine;
        let (mut ws, tx, base) = e.begin().unwrap();
        let mut trees = base.trees.clone();
        let long = vec![b'z'; crate::MAX_KEY_LEN + 1];
        trees.insert(long.clone(), crate::btree::TreeRoot::default());
        let changed = std::collections::BTreeSet::from([long]);
        let r = e.commit(&mut ws, tx, &base, trees, &changed, &Default::default(), crate::Durability::Eventual);
        let catalog = base.catalog.page;
        assert!(
            matches!(r, Err(Error::Corrupt { page, reason: crate::error::CorruptReason::BadLayout }) if page == catalog),
            "{r:?}"
        );
        drop(ws);
        assert_eq!(db.open_tree("t").unwrap().get("k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    fn reopened_holds_every_record(dir: &std::path::Path) {
        let db = Config::new().file(dir.join("db")).plaintext().use_env(false).open().unwrap();
        assert_eq!(db.len(), 300);
        assert!(db.iter().all(|r| r.is_ok_and(|(_, v)| v == vec![3u8; 100])));
        db.insert("next", "write").unwrap();
    }

    /// A panic unwinding through the engine mid-transaction drops it with neither abort nor
    /// commit, and the allocator with it: the handle refuses further writes (which would take
    /// pages from an empty allocator, from page 0 up), and a reopen finds every commit.
    #[test]
    fn a_transaction_abandoned_by_a_panic_poisons_the_handle_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = filled(dir.path());
        let tree = db.open_tree("t").unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = tree.write(|tx, root, _| -> crate::Result<()> {
                tx.insert(root, b"half", b"done", true)?;
                panic!("a bug in the engine")
            });
        }));
        assert!(panicked.is_err());
        assert!(matches!(db.insert("x", "y"), Err(Error::Poisoned)));
        assert!(matches!(tree.insert("x", "y"), Err(Error::Poisoned)));
        assert_eq!(db.len(), 300);
        drop((tree, db));
        reopened_holds_every_record(dir.path());
    }

    /// Whatever the allocator says, a tree page is never sealed over a header or a commit record.
    #[test]
    fn a_data_page_is_never_written_over_the_reserved_pages() {
        let dir = tempfile::tempdir().unwrap();
        let db = filled(dir.path());
        let pager = &db.handle.engine.pager;
        for page in 0..crate::format::FIRST_DATA_PAGE {
            let r = pager.write(page, 0, Box::new([0u8; crate::format::PAGE_SIZE]));
            assert!(matches!(r, Err(Error::ReportableBug(_))), "page {page}: {r:?}");
        }
        drop(db);
        reopened_holds_every_record(dir.path());
    }
}
