//! The sled-compatible API: `Db`, `Tree`, `Iter`, `Batch`, `open`.
//!
//! Each single-call write (`insert`, `remove`, `apply_batch`, ...) is its own atomic
//! transaction with the configured durability (default, as in sled: eventual, durable after
//! `flush`). Reads see the newest commit. Differences from sled 0.34 are listed in README.md
//! and `src/db/sledtx.rs`.

use std::collections::BTreeSet;
use std::ops::{Bound, RangeBounds};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

pub use super::batch::Batch;
use super::config::Config;
use super::engine::{Engine, RESERVED_PREFIX, Snapshot, check_user_tree_name};
use super::iter::Iter;
use super::ivec::IVec;
use super::txn::{ReadTransaction, WriteTransaction};
use super::watch::{Changes, TreeChanges};
use crate::btree::TreeRoot;
use crate::btree::overflow;
use crate::btree::raw::RawValue;
use crate::btree::read::{self, Cursor};
use crate::btree::tx::TxPages;
use crate::error::{Error, Result};
use crate::format::page::PageRef;
use crate::pager::Pager;
use crate::storage::Storage;

/// The name of the default tree (as sled names it).
pub const DEFAULT_TREE: &[u8] = b"__sled__default";

struct FlushSignal {
    stop: Mutex<bool>,
    cv: Condvar,
}

/// What every public handle shares. Dropping the last one stops the background flusher,
/// flushes, closes the file (releasing its lock at once) and removes a temporary database.
pub(crate) struct Handle {
    pub(crate) engine: Arc<Engine>,
    // Both optional parts are boxed so that `Handle` is a few words with no wide uninitialised
    // `None` payload: `Arc::new` copies the struct from the stack, and the bytes of an unboxed
    // `None` would carry whatever the stack held there (it is not wiped, SPEC §14), key bytes
    // of an earlier comparison included, into a heap block (tests/plaintext_frees.rs).
    flusher: Mutex<Option<Box<(JoinHandle<()>, Arc<FlushSignal>)>>>,
    temporary: Option<Box<super::location::TemporaryNames>>,
    /// The merge operators set on this open's trees (`Tree::set_merge_operator`).
    pub(crate) merge_operators: super::merge::MergeOperators,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Subscribers end (their iterators return `None`) as the database closes.
        self.engine.watchers.close();
        if let Some(running) = self.flusher.lock().take() {
            let (join, sig) = *running;
            *sig.stop.lock() = true;
            sig.cv.notify_all();
            let _ = join.join();
        }
        if self.temporary.is_none()
            && let Err(e) = self.engine.flush().and_then(|_| self.engine.checkpoint_on_close())
        {
            tracing::error!(target: "foldvault::audit", error = %e, "flush on close failed");
        }
        if let Some(t) = self.temporary.take() {
            // Removed while the engine still holds the file's lock (the engine drops after
            // this): no other process can open it between the release and the removal.
            t.remove();
        }
    }
}

/// Opens a database directory with default settings (as `sled::open`).
pub fn open<P: AsRef<std::path::Path>>(path: P) -> Result<Db> {
    Config::new().path(path).open()
}

pub(crate) fn open_config(cfg: &Config) -> Result<Db> {
    cfg.validate()?;
    let creds = cfg.effective_credentials()?;
    // A new database's header and key slots are made before its file: a creation killed in
    // a passphrase's Argon2id (a second, at a high cost) left an empty file at the path, which
    // every later open refused as a database truncated to nothing. What is left to do once the
    // file is there is a few page writes and a sync.
    let prepared =
        if super::location::likely_new(cfg) { Some(super::open::prepare_create(cfg, &creds)?) } else { None };
    let located = super::location::locate(cfg)?;
    let storage = located.storage.clone();
    let len = match storage.len() {
        Ok(len) => len,
        Err(e) => {
            located.discard();
            return Err(e.into());
        }
    };
    let engine = if len == 0 {
        // A read-only open of an empty file; an existing, empty database file: a database
        // truncated to nothing looks the same, so it is not silently replaced by a new one.
        // Nor is a file that holds bytes under a log whose groups say it is empty (a group of
        // length 0: forged or damaged, never written): a database created there would overwrite
        // the file's header and key slots at the first checkpoint (panic audit, high).
        let log_empties_the_file = storage.unbacked_runs(0).is_some_and(|(file_len, _)| file_len > 0);
        if cfg.read_only || log_empties_the_file || (located.existed_empty && !cfg.create_new && !cfg.temporary) {
            located.discard();
            return Err(Error::Truncated { expected: 4 * crate::format::PAGE_SIZE as u64, found: 0 });
        }
        let new = prepared.map_or_else(|| super::open::prepare_create(cfg, &creds), Ok);
        match new.and_then(|new| create_synced(storage, cfg, new, located.new_names())) {
            Ok(e) => {
                // A new file's hidden name an earlier creation here left (killed between the
                // link and the name's removal: a second name of that database's file; or
                // before the link: an empty file) goes now (`leftovers`).
                if let Some(f) = located.new_file() {
                    super::leftovers::remove_stale(f);
                }
                e
            }
            Err(e) => {
                // Refused (no key for `Required`, a rollback anchor) or failed: nothing is left
                // that the next open would take for a truncated database.
                located.discard();
                return Err(e);
            }
        }
    } else {
        match super::open::open(storage, cfg, &creds, !cfg.read_only) {
            Ok(e) => e,
            Err(e) => {
                // A refused or failed open leaves the file and a log beside it as a crash would:
                // the log's close would fold it into the file and remove it (SPEC §5.2: an open
                // refused for its key or an anchor writes nothing). A log it made goes.
                located.discard();
                return Err(e);
            }
        }
    };
    let engine = Arc::new(engine);
    let flusher = match cfg.flush_every_ms {
        Some(ms) if !cfg.read_only && engine.durability == super::config::Durability::Eventual => {
            let sig = Arc::new(FlushSignal { stop: Mutex::new(false), cv: Condvar::new() });
            let (e, s) = (engine.clone(), sig.clone());
            let spawned = std::thread::Builder::new()
                .name("foldvault-flusher".into())
                .spawn(move || flusher_loop(e, s, Duration::from_millis(ms.max(1))));
            match spawned {
                Ok(join) => Some(Box::new((join, sig))),
                Err(e) => {
                    // A temporary database goes with the failed open, while `engine` still
                    // holds its file's lock.
                    if let Some(t) = &located.temporary {
                        t.remove();
                    }
                    return Err(e.into());
                }
            }
        }
        _ => None,
    };
    let handle = Arc::new(Handle {
        engine,
        flusher: Mutex::new(flusher),
        temporary: located.temporary.map(Box::new),
        merge_operators: Default::default(),
    });
    Ok(Db { default: Tree::fixed(handle.clone(), DEFAULT_TREE), handle })
}

/// Creates a database in empty `storage`, then syncs the directory entries of `new_names`
/// (a new directory, a new file): a file's own sync does not promise its name (the log's first
/// header does it too, but the log may be off).
fn create_synced<'a>(
    storage: Arc<dyn Storage>,
    cfg: &Config,
    new: super::open::NewDatabase,
    new_names: impl Iterator<Item = &'a PathBuf>,
) -> Result<Engine> {
    let engine = super::open::create(storage, cfg, new)?;
    for name in new_names {
        crate::storage::sync_new_name(name)?;
    }
    Ok(engine)
}

fn flusher_loop(engine: Arc<Engine>, sig: Arc<FlushSignal>, every: Duration) {
    loop {
        {
            let mut stop = sig.stop.lock();
            if !*stop {
                sig.cv.wait_for(&mut stop, every);
            }
            if *stop {
                return;
            }
        }
        if let Err(e) = engine.flush() {
            tracing::error!(target: "foldvault::audit", error = %e, "background flush failed");
            // A poisoned handle stays so: the flusher stops, after one line saying so (it said
            // so at every interval, two lines a second that buried the first error).
            if matches!(e, Error::Poisoned) {
                return;
            }
        }
    }
}

/// Names visible to users (reserved internal trees hidden).
pub(crate) fn visible_names<'a>(names: impl Iterator<Item = &'a Vec<u8>>) -> Vec<IVec> {
    let mut v: Vec<IVec> =
        names.filter(|n| !n.starts_with(RESERVED_PREFIX)).map(|n| IVec::from(n.as_slice())).collect();
    if !v.iter().any(|n| n == DEFAULT_TREE) {
        v.insert(0, IVec::from(DEFAULT_TREE));
    }
    v
}

pub(crate) fn bound_to_vec<K: AsRef<[u8]>>(b: Bound<&K>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

pub(crate) fn value_of(pager: &Pager, v: RawValue<'_>) -> Result<IVec> {
    match v {
        RawValue::Inline(b) => Ok(IVec::from(b)),
        RawValue::Overflow { first, len } => Ok(IVec::from(overflow::read(pager, first, len)?)),
    }
}

/// A value as a write transaction sees it (its own edits first), copied once into an `IVec`.
pub(crate) fn tx_get(tx: &TxPages, root: &TreeRoot, key: &[u8]) -> Result<Option<IVec>> {
    tx.get_with(root, key, |v| value_of(&tx.pager, v))
}

/// A lookup through snapshot `snap`, whose root pins it may use.
pub(crate) fn get_in(engine: &Engine, snap: &Snapshot, root: PageRef, key: &[u8]) -> Result<Option<IVec>> {
    read::get_from(&engine.pager, None, Some(&snap.roots), root, key, |v| value_of(&engine.pager, v))
}

/// Whether `key` is in the tree at `root` of snapshot `snap` (the value is not copied).
pub(crate) fn contains_in(engine: &Engine, snap: &Snapshot, root: PageRef, key: &[u8]) -> Result<bool> {
    Ok(read::get_from(&engine.pager, None, Some(&snap.roots), root, key, |_| Ok(()))?.is_some())
}

/// A database: a set of named trees in one file. Derefs to its default tree.
#[derive(Clone)]
pub struct Db {
    pub(crate) handle: Arc<Handle>,
    default: Tree,
}

impl std::ops::Deref for Db {
    type Target = Tree;
    fn deref(&self) -> &Tree {
        &self.default
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("encrypted", &self.handle.engine.pager.sealer.is_encrypted()).finish_non_exhaustive()
    }
}

impl Db {
    /// Opens (creating on first use) a named tree.
    pub fn open_tree<V: AsRef<[u8]>>(&self, name: V) -> Result<Tree> {
        let name = name.as_ref();
        check_user_tree_name(name)?;
        if name == DEFAULT_TREE {
            return Ok(Tree::fixed(self.handle.clone(), name));
        }
        loop {
            // The handle is for the instance of the name it finds (made here if there is none,
            // and looked for again: another thread may drop it before it is found).
            if let Some(r) = self.handle.engine.snapshot().trees.get(name) {
                return Ok(Tree { handle: self.handle.clone(), name: Arc::from(name), born: Some(r.born) });
            }
            let tx = self.begin_write()?;
            tx.open_tree(name)?;
            tx.commit()?;
        }
    }

    /// Removes a tree and frees every page of it. Returns whether it existed. The default tree
    /// cannot be dropped (as in sled: `Unsupported("cannot remove the core structures")`, its
    /// records kept), nor can a reserved name.
    pub fn drop_tree<V: AsRef<[u8]>>(&self, name: V) -> Result<bool> {
        // Refused before waiting for the writer lock (the transaction checks again).
        super::txn::check_droppable(name.as_ref())?;
        let tx = self.begin_write()?;
        let existed = tx.drop_tree(name)?;
        tx.commit()?;
        Ok(existed)
    }

    /// The names of all trees, the default tree included.
    pub fn tree_names(&self) -> Vec<IVec> {
        visible_names(self.handle.engine.snapshot().trees.keys())
    }

    /// A unique, monotonically increasing id (unique across restarts).
    pub fn generate_id(&self) -> Result<u64> {
        self.handle.engine.generate_id()
    }

    /// Starts a write transaction (waits for the current writer to finish).
    pub fn begin_write(&self) -> Result<WriteTransaction> {
        WriteTransaction::begin(self.handle.clone())
    }

    /// A read snapshot of the newest commit.
    pub fn begin_read(&self) -> Result<ReadTransaction> {
        Ok(ReadTransaction { handle: self.handle.clone(), snap: self.handle.engine.snapshot() })
    }

    /// The sequence number of the newest commit, which may not be durable yet (under
    /// `Durability::Eventual`): to anchor against rollback, use `durable_commit_seq`, which a
    /// crash cannot take back (SPEC §11).
    pub fn commit_seq(&self) -> u64 {
        self.handle.engine.snapshot().seq
    }

    /// The sequence number of the newest durable commit.
    pub fn durable_commit_seq(&self) -> u64 {
        self.handle.engine.durable_seq.load(std::sync::atomic::Ordering::Acquire)
    }

    /// A digest naming the newest commit (file id, sequence, catalog root and its tag), which
    /// may not be durable yet. To anchor against rollback, use `durable_root_digest`.
    pub fn root_digest(&self) -> [u8; 32] {
        let snap = self.handle.engine.snapshot();
        self.handle.engine.root_digest(&snap)
    }

    /// The digest of the newest durable commit: store it outside the file and pass it to
    /// `Config::expected_root_digest` to detect a rolled-back file. (The digest of a commit not
    /// yet durable is refused, `RootDigestMismatch`, by an open after a crash that lost it.)
    pub fn durable_root_digest(&self) -> [u8; 32] {
        self.handle.engine.durable_root_digest()
    }

    /// What recovery found at open.
    pub fn recovery_report(&self) -> super::engine::RecoveryReport {
        self.handle.engine.recovery.clone()
    }

    /// True if recovery at open found a commit record that did not open (either slot: the older
    /// one damaged too), a newest commit that did not verify and used an older one, or a group
    /// of the write-ahead log that failed its checksum, whose commits were left out (after a
    /// crash during a commit, or tampering); `recovery_report` says which.
    pub fn was_recovered(&self) -> bool {
        let r = &self.handle.engine.recovery;
        r.fell_back || !r.rejected_slots.is_empty() || r.log_group_dropped
    }

    /// The engine's counters.
    pub fn metrics(&self) -> crate::Metrics {
        let e = &self.handle.engine;
        let mut m = e.pager.counters.snapshot();
        m.cached_pages = e.pager.cached_pages() as u64;
        m.cache_hits = e.pager.cache_hits();
        m.device_syncs = e.pager.device_syncs();
        m.key_epoch = e.current_epoch();
        m.seals_in_epoch = e.pager.seals_in_epoch();
        m
    }

    /// Bytes the database occupies on disk: its file and, while it is open, the write-ahead log
    /// beside it (as sled counts all its files).
    pub fn size_on_disk(&self) -> Result<u64> {
        self.handle.engine.pager.bytes_on_disk()
    }

    /// Whether the file is encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.handle.engine.pager.sealer.is_encrypted()
    }
}

/// A named tree of key-value pairs. Cheap to clone; keeps working after its `Db` is dropped.
#[derive(Clone)]
pub struct Tree {
    pub(crate) handle: Arc<Handle>,
    pub(crate) name: Arc<[u8]>,
    /// The instance of `name` this handle was opened on (`TreeRoot::born`); `None` for a tree
    /// that cannot be dropped (the default tree, the internal ones).
    pub(crate) born: Option<u64>,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree").field("name_len", &self.name.len()).finish_non_exhaustive()
    }
}

/// The outcome of a failed `compare_and_swap`: the value found and the one proposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompareAndSwapError {
    pub current: Option<IVec>,
    pub proposed: Option<IVec>,
}

impl std::fmt::Display for CompareAndSwapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("compare and swap conflict")
    }
}
impl std::error::Error for CompareAndSwapError {}

pub type CompareAndSwapResult = std::result::Result<(), CompareAndSwapError>;

/// `for kv in &tree`, as sled: the tree's entries in key order ([`Tree::iter`]).
impl IntoIterator for &Tree {
    type Item = Result<(IVec, IVec)>;
    type IntoIter = Iter;
    fn into_iter(self) -> Iter {
        self.iter()
    }
}

impl Tree {
    /// A handle on a tree that cannot be dropped (the default tree, an internal one).
    pub(crate) fn fixed(handle: Arc<Handle>, name: &[u8]) -> Tree {
        Tree { handle, name: Arc::from(name), born: None }
    }

    /// This handle's tree in `snap`. A name dropped since the handle was opened (and perhaps
    /// made again) is `CollectionNotFound`, as sled answers a handle on a dropped tree: a write
    /// through it made the dropped tree again, and reads saw another tree of the same name.
    pub(crate) fn current(&self, snap: &Snapshot) -> Result<TreeRoot> {
        let found = snap.trees.get(&self.name).copied();
        match (self.born, found) {
            (None, found) => Ok(found.unwrap_or_default()),
            (Some(born), Some(r)) if r.born == born => Ok(r),
            _ => Err(Error::CollectionNotFound),
        }
    }

    fn root(&self, snap: &Snapshot) -> Result<PageRef> {
        self.current(snap).map(|r| r.root)
    }

    /// Runs `f` as one write transaction on this tree; `f` records what it changed in the
    /// `Changes` it is given, for subscribers (`watch`).
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&mut TxPages, &mut TreeRoot, &mut TreeChanges) -> Result<T>,
    ) -> Result<T> {
        let engine = &self.handle.engine;
        let (mut ws, mut tx, base) = engine.begin()?;
        let mut root = match self.current(&base) {
            Ok(r) => r,
            Err(e) => {
                engine.abort(&mut ws, tx);
                return Err(e);
            }
        };
        let mut changes = Changes::new(engine.watchers.watching(&self.name));
        let out = match f(&mut tx, &mut root, &mut changes.of(&self.name, self.born, true)) {
            Ok(v) => v,
            Err(e) => {
                engine.abort(&mut ws, tx);
                return Err(e);
            }
        };
        // A write that changed nothing commits nothing: nor does it bring back, empty, a tree
        // dropped since this handle was opened. (A compare-and-swap that removed an absent key
        // still says so to subscribers, as sled's does.)
        if tx.new_pages.is_empty() && tx.freed.is_empty() {
            engine.abort(&mut ws, tx);
            engine.send_released(ws, changes, &[]);
            return Ok(out);
        }
        let mut trees = base.trees.clone();
        trees.insert(self.name.to_vec(), root);
        let changed: BTreeSet<Vec<u8>> = [self.name.to_vec()].into();
        engine.commit_released(ws, tx, &base, trees, &changed, &BTreeSet::new(), engine.durability, changes)?;
        Ok(out)
    }

    /// Inserts a key, returning the previous value.
    pub fn insert<K: AsRef<[u8]>, V: Into<IVec>>(&self, key: K, value: V) -> Result<Option<IVec>> {
        // The caller's conversions run before the writer is taken: one that panicked inside the
        // write poisoned the handle.
        let (key, value): (&[u8], IVec) = (key.as_ref(), value.into());
        self.write(|tx, r, c| {
            let old = tx.insert(r, key, &value, true)?.map(IVec::from);
            c.note(key, old.as_deref(), Some(&value), false);
            Ok(old)
        })
    }

    pub fn get<K: AsRef<[u8]>>(&self, key: K) -> Result<Option<IVec>> {
        let snap = self.handle.engine.snapshot();
        get_in(&self.handle.engine, &snap, self.root(&snap)?, key.as_ref())
    }

    pub fn remove<K: AsRef<[u8]>>(&self, key: K) -> Result<Option<IVec>> {
        let key = key.as_ref();
        self.write(|tx, r, c| {
            let old = tx.remove(r, key, true)?.map(IVec::from);
            c.note(key, old.as_deref(), None, false);
            Ok(old)
        })
    }

    pub fn contains_key<K: AsRef<[u8]>>(&self, key: K) -> Result<bool> {
        let snap = self.handle.engine.snapshot();
        contains_in(&self.handle.engine, &snap, self.root(&snap)?, key.as_ref())
    }

    /// Sets `key` to `new` only if its current value is `old` (`None` = absent).
    pub fn compare_and_swap<K, OV, NV>(&self, key: K, old: Option<OV>, new: Option<NV>) -> Result<CompareAndSwapResult>
    where
        K: AsRef<[u8]>,
        OV: AsRef<[u8]>,
        NV: Into<IVec>,
    {
        let new: Option<IVec> = new.map(Into::into);
        let key = key.as_ref();
        // A value that cannot be stored is refused before the current one is read (and, if it
        // differs from `old`, answered as a failed swap instead of the error).
        if let Some(v) = &new {
            crate::btree::tx::check_entry(key, v)?;
        }
        let old: Option<&[u8]> = old.as_ref().map(|o| o.as_ref());
        self.write(|tx, r, c| {
            let cur = tx_get(tx, r, key)?;
            let matches = match (&cur, old) {
                (None, None) => true,
                (Some(c), Some(o)) => c.as_ref() == o,
                _ => false,
            };
            if !matches {
                return Ok(Err(CompareAndSwapError { current: cur, proposed: new.clone() }));
            }
            match &new {
                Some(v) => tx.insert(r, key, v, false)?,
                None => tx.remove(r, key, false)?,
            };
            c.note(key, cur.as_deref(), new.as_deref(), true);
            Ok(Ok(()))
        })
    }

    /// sled's loop: `f` runs on the current value with no lock held (so it may write to other
    /// trees, or panic, as freely as any caller's code), and its result is stored by a
    /// compare-and-swap, which fails, and `f` runs again, if the value changed meanwhile.
    fn update<V: Into<IVec>>(
        &self,
        key: &[u8],
        mut f: impl FnMut(Option<&[u8]>) -> Option<V>,
    ) -> Result<(Option<IVec>, Option<IVec>)> {
        let mut current = self.get(key)?;
        loop {
            let new: Option<IVec> = f(current.as_deref()).map(Into::into);
            match self.compare_and_swap(key, current.as_deref(), new.clone())? {
                Ok(()) => return Ok((current, new)),
                Err(e) => current = e.current,
            }
        }
    }

    /// Replaces the value with `f(old)` atomically; returns the new value. As in sled, `f` may
    /// run more than once (again whenever another writer changed the value first).
    pub fn update_and_fetch<K: AsRef<[u8]>, V: Into<IVec>, F: FnMut(Option<&[u8]>) -> Option<V>>(
        &self,
        key: K,
        f: F,
    ) -> Result<Option<IVec>> {
        Ok(self.update(key.as_ref(), f)?.1)
    }

    /// Replaces the value with `f(old)` atomically; returns the old value (`f` as in
    /// `update_and_fetch`).
    pub fn fetch_and_update<K: AsRef<[u8]>, V: Into<IVec>, F: FnMut(Option<&[u8]>) -> Option<V>>(
        &self,
        key: K,
        f: F,
    ) -> Result<Option<IVec>> {
        Ok(self.update(key.as_ref(), f)?.0)
    }

    /// Applies every operation of `batch` in one atomic transaction.
    pub fn apply_batch(&self, batch: Batch) -> Result<()> {
        batch.validate()?;
        self.write(|tx, r, c| super::batch::apply_ops(tx, r, &batch, c))
    }

    /// Entries in `range`, in key order, from the snapshot current when the iterator is made.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        let snap = self.handle.engine.snapshot();
        match self.root(&snap) {
            Ok(root) => Iter::new(
                self.handle.clone(),
                snap,
                root,
                bound_to_vec(range.start_bound()),
                bound_to_vec(range.end_bound()),
            ),
            Err(e) => Iter::failed(self.handle.clone(), snap, e),
        }
    }

    pub fn iter(&self) -> Iter {
        self.range::<&[u8], _>(..)
    }

    /// Entries whose key starts with `prefix`.
    pub fn scan_prefix<P: AsRef<[u8]>>(&self, prefix: P) -> Iter {
        let snap = self.handle.engine.snapshot();
        match self.root(&snap) {
            Ok(root) => Iter::prefix(self.handle.clone(), snap, root, prefix.as_ref()),
            Err(e) => Iter::failed(self.handle.clone(), snap, e),
        }
    }

    pub fn first(&self) -> Result<Option<(IVec, IVec)>> {
        self.iter().next().transpose()
    }

    pub fn last(&self) -> Result<Option<(IVec, IVec)>> {
        self.iter().next_back().transpose()
    }

    /// The entry with the greatest key below `key`.
    pub fn get_lt<K: AsRef<[u8]>>(&self, key: K) -> Result<Option<(IVec, IVec)>> {
        self.range::<&[u8], _>((Bound::Unbounded, Bound::Excluded(key.as_ref()))).next_back().transpose()
    }

    /// The entry with the least key above `key`.
    pub fn get_gt<K: AsRef<[u8]>>(&self, key: K) -> Result<Option<(IVec, IVec)>> {
        self.range::<&[u8], _>((Bound::Excluded(key.as_ref()), Bound::Unbounded)).next().transpose()
    }

    fn pop(&self, max: bool) -> Result<Option<(IVec, IVec)>> {
        self.write(|tx, r, changes| {
            // A fresh single-call transaction has no dirty pages yet: a cursor over the
            // committed pages finds the first or last entry in O(log n).
            let cursor = if max {
                Cursor::seek_le(&tx.pager, r.root, None, false)?
            } else {
                Cursor::seek_ge(&tx.pager, r.root, None, false)?
            };
            let Some(c) = cursor else { return Ok(None) };
            let (k, v) = c.current()?;
            // Wiped whatever fails next (the copies returned are `IVec`s, which wipe themselves).
            let k = zeroize::Zeroizing::new(k);
            let bytes = zeroize::Zeroizing::new(tx.value_bytes(&v)?);
            // The cursor finds the entry by position, the removal by key: a key its leaf holds
            // that no lookup reaches (a forged separator) is damage, never popped again and
            // again without leaving.
            if tx.remove(r, &k, false)?.is_none() {
                return Err(Error::corrupt(c.leaf_page(), crate::error::CorruptReason::KeyOrder));
            }
            changes.note(&k, Some(&bytes), None, true);
            Ok(Some((IVec::from(&k[..]), IVec::from(&bytes[..]))))
        })
    }

    /// Removes and returns the entry with the least key.
    pub fn pop_min(&self) -> Result<Option<(IVec, IVec)>> {
        self.pop(false)
    }

    /// Removes and returns the entry with the greatest key.
    pub fn pop_max(&self) -> Result<Option<(IVec, IVec)>> {
        self.pop(true)
    }

    /// Number of entries (kept in the catalog: O(1), unlike sled's O(n)).
    pub fn len(&self) -> usize {
        let snap = self.handle.engine.snapshot();
        // A handle whose tree was dropped counts nothing.
        self.current(&snap).map_or(0, |r| r.count as usize)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every entry and frees their pages.
    pub fn clear(&self) -> Result<()> {
        self.write(|tx, r, c| {
            c.note_clear(tx, r)?;
            tx.free_tree(r.root)?;
            *r = TreeRoot::default();
            Ok(())
        })
    }

    /// Makes every earlier commit durable. Returns the bytes written; costs almost nothing when
    /// nothing is pending. On a thread inside a write transaction (whose writer lock the sync
    /// needs) it returns `Ok(0)` at once, and the flush is made when the transaction ends;
    /// called by another tokio task than the transaction's on that thread it is `Unsupported`.
    pub fn flush(&self) -> Result<usize> {
        self.handle.engine.flush()
    }

    /// Makes every commit durable (`flush`), then copies every page the write-ahead log holds
    /// into the database file, syncs it and starts the log anew, waiting for all of it (as
    /// SQLite's `wal_checkpoint(FULL)`). The log does this by itself as it fills, partly on a
    /// thread of its own; this is for a moment the caller chooses: before copying the file
    /// alone, or so that the commits that follow pay none of it. Nothing more than `flush`
    /// without a log. `ReadOnly` on a read-only handle.
    /// `Unsupported` on a thread inside a write transaction (its commit is not made yet).
    pub fn checkpoint_log(&self) -> Result<()> {
        let engine = &self.handle.engine;
        engine.pager.check_writable()?;
        if engine.writer_held_here() {
            return Err(Error::Unsupported(
                "checkpoint_log inside a write transaction on the same thread: commit it first".into(),
            ));
        }
        engine.flush()?;
        engine.pager.checkpoint_log()
    }

    /// `flush` off the polling thread, as sled's runs on its own thread pool: on tokio's
    /// blocking pool inside a runtime (tokio feature), else on a thread of its own, so that the
    /// executor never waits for the sync. Inside a write transaction of the polling thread (of
    /// its task, with tokio) it runs as `flush` does there: when that transaction ends.
    pub async fn flush_async(&self) -> Result<usize> {
        let e = self.handle.engine.clone();
        #[cfg(feature = "tokio")]
        if tokio::runtime::Handle::try_current().is_ok() {
            return super::async_api::blocking(Some(e.clone()), move || e.flush()).await;
        }
        if e.writer_held_here() {
            return e.flush();
        }
        super::off_thread::run("foldvault-flush", move || e.flush()).await
    }

    /// The tree's name.
    pub fn name(&self) -> IVec {
        IVec::from(&*self.name)
    }
}
