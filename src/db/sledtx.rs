//! sled 0.34-style transactions: `Tree::transaction`, the `Transactional` trait (one tree,
//! slices and tuples of trees), `TransactionalTree` and sled's error types, so code written for
//! `sled::transaction` compiles against `foldvault::transaction` unchanged.
//!
//! Layer: db, on top of the explicit transactions of `txn.rs` (and nothing below them except
//! the engine's id counter). Invariants:
//! - one call of `transaction` runs the closure against exactly one [`WriteTransaction`]; it
//!   commits (with the database's configured durability) when the closure returns `Ok`, and
//!   discards every change otherwise, so an `Abort` or a storage error leaves nothing behind
//!   (but the raised id reservation of the last invariant, in a hidden tree);
//! - the write transaction holds the single writer lock for the closure's whole run, so there
//!   are never conflicts between transactions: the `Conflict` variants and the retry loop exist
//!   for sled's shape (a closure may return `Conflict` itself);
//! - every tree of one transaction belongs to one database (`Arc::ptr_eq` of their handles),
//!   else `Error::Unsupported`, as sled does;
//! - the writer lock is taken before the engine's id lock, here (`TransactionalTree::
//!   generate_id`) as in `Db::generate_id`, which holds the id lock only briefly or under the
//!   writer lock, never while waiting for it;
//! - an id handed out is never handed out again, across restarts too: a range reserved by an
//!   attempt that does not commit (aborted, failed, or run again) is made durable after it
//!   (`Engine::keep_ids_past`), since the closure may have used its ids.
//!
//! # Differences from sled 0.34 (known)
//!
//! Transactions and errors:
//! - `ConflictableTransactionError`, `TransactionError` and `UnabortableTransactionError`
//!   derive `Debug` and `Clone` but not `PartialEq` (foldvault's `Error` is not `PartialEq`).
//! - `TransactionalTree` also has `contains_key`; it is `!Send` and `Clone`, as in sled.
//! - Reads inside a transaction see the transaction's own writes and the commit that was newest
//!   when it began; since transactions run one at a time, the closure runs once, unless it
//!   returns `Conflict` itself (which sled would also retry, forever).
//! - A transaction's changes are durable per the database's `Durability` (sled: after `flush`),
//!   or at once if the closure calls `TransactionalTree::flush`.
//! - A transaction blocks other writers (single `insert`s included) while its closure runs;
//!   keep closures short. Readers never block.
//! - Inside a closure, use only the `TransactionalTree`s for writes: a non-transactional write
//!   on the same database from the closure's thread (`Tree::insert`, `open_tree` of a new tree,
//!   `drop_tree`, `Db::generate_id` when its range is spent) fails with `Error::Unsupported`
//!   instead of waiting for the writer lock the transaction holds (sled 0.34 deadlocks there);
//!   `Tree::flush` there returns `Ok(0)` at once, and the flush is made when the transaction
//!   ends, committed or aborted, before `transaction` returns (sled flushes at the call;
//!   `TransactionalTree::flush` makes the commit durable). The same holds on a thread that keeps
//!   a `WriteTransaction` alive (the flush is made at its `commit` or drop). Reads are fine.
//! - Ids from `TransactionalTree::generate_id` in a transaction that aborts are never reused
//!   (their range is made durable after the abort, one more commit); a crash before that
//!   commit may hand them out again.
//! - A transaction over an empty slice of trees returns `Storage(Error::Unsupported)` (sled
//!   panics).
//! - A tree listed twice in one transaction (`(&t, &t)`) gives two views of one tree: each
//!   sees the other's writes and the last write wins (sled keeps a write set per view and
//!   applies them in list order).
//!
//! Elsewhere in the sled-style API:
//! - `Error` has other variants (`Corrupt { page, reason }`, `WrongKey`, `KeyTooLarge`, ...);
//!   `CollectionNotFound` carries no name; there is no `Error::Corruption { at, bt }`; there is no
//!   `From<Error> for std::io::Error`.
//! - `CompareAndSwapResult` is the inner `Result<(), CompareAndSwapError>`
//!   (`compare_and_swap` returns `Result<CompareAndSwapResult>`; sled's alias is the outer
//!   result), and `CompareAndSwapError` is not `Ord`/`Hash`.
//! - Keys are at most `MAX_KEY_LEN` (1,024) bytes (`Error::KeyTooLarge`); values at most
//!   `MAX_VALUE_LEN` (4 GiB - 1).
//! - Merge operators (`set_merge_operator`, `merge`) must be `Send + Sync` (sled's need not
//!   be); as in sled, one may run more than once for one merge, when another writer changed
//!   the value first. `Db::checksum` gives sled's number
//!   for the same contents (an import from sled checks it), over one snapshot, without
//!   stopping writers; `ReadTransaction::checksum` is that of a snapshot.
//! - `watch_prefix` gives sled's events (checked against sled's, step by step, in
//!   `src/db/sled_diff_tests.rs`): one per key a commit changed, after the commit is visible,
//!   in commit order; a transaction's when it commits, none if it aborts. A `Subscriber` is
//!   an `Iterator` and a `Future`; `next_timeout` goes on past a write that changed nothing
//!   (sled's returns `Disconnected` from then on), and a subscriber ends (`None`) when its
//!   tree is dropped or its database closes. As in sled, a subscriber holds 1,024 events and
//!   a commit that finds it full waits for it to take one, without the writer (`watch.rs`):
//!   a thread must not make a write that any subscriber hears (sled: its own), nor drop a
//!   watched tree, while a subscriber it reads may be full. `Event`'s `Debug` shows lengths
//!   only. (README.md, "Differences from sled 0.34", is the current, longer list.)
//! - Not provided: `Db::export` / `import`, `Config::mode`, `compression_factor`,
//!   `segment_size`, `print_profile_on_drop`, `idgen_persist_interval`.
//!   `Config::use_compression` is accepted and ignored.
//! - `Config::path` names a directory holding one file, `db.foldvault`; the file is locked
//!   while open and the lock is released when the last handle (`Db`, `Tree`, `Iter`) drops.
//! - `Tree::len` is O(1); `IVec`'s `Debug` shows only the length, never the bytes.
//! - `Batch::insert` takes `AsRef<[u8]>` values (sled: `Into<IVec>`), a superset for callers.
//! - `Db::was_recovered()` is true only when recovery at open fell back to an older commit,
//!   rejected a commit record, or left out a group of the write-ahead log that failed its
//!   checksum (a crash during a commit, or tampering: SPEC §5, §11, §15); sled's is
//!   true whenever an existing database was opened. Code that used it to detect a first start
//!   should look for its own data instead.
//! - Tree names starting with `\0foldvault.` are reserved (the engine keeps `generate_id`'s
//!   counter there): `open_tree` and `drop_tree` refuse them with `Unsupported`. A tree name is a
//!   catalog key: at most `MAX_KEY_LEN` bytes (`KeyTooLarge`).
//! - A `Tree` handle whose tree was dropped (and perhaps opened again since) answers
//!   `CollectionNotFound`, as sled's does; its `len` is 0 (sled's counts its iterator).
//! - Iterators (`iter`, `range`, `scan_prefix`) read the snapshot of the moment they were made;
//!   sled's may see writes made while they run.
//! - `IVec` has no `DerefMut`/`AsMut`, `subslice` or `From<Arc<[u8]>>`; it compares equal to
//!   anything that is bytes, as sled's.
//! - `foldvault::open` (or `Config::path`) on a directory that holds a sled database (`conf` and
//!   `db`) and no `db.foldvault` is refused (`Unsupported`): import it first (`import-sled`).
//! - `size_on_disk` counts the database file and, while it is open, the write-ahead log beside it.
//! - The async API (`AsyncDb`, `AsyncTree`) polled outside a tokio runtime runs its work on the
//!   polling thread.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use super::api::{Batch, Handle, Tree};
use super::config::Durability;
use super::engine::IDS_TREE;
use super::ivec::IVec;
use super::txn::{TxTree, WriteTransaction};
use crate::error::{Error, Result};

/// Ids reserved at once by `TransactionalTree::generate_id` (as `Db::generate_id` does).
const ID_RESERVE: u64 = 1_000_000;

// ------------------------------------------------------------------------------------------
// Errors and results (sled's shapes).

/// The error a transaction's closure returns: abort with a user error, a storage failure, or a
/// conflict (the transaction is then run again).
#[derive(Debug, Clone)]
pub enum ConflictableTransactionError<E = Error> {
    /// Abort the transaction; `transaction` returns `TransactionError::Abort(e)`.
    Abort(E),
    /// The storage failed.
    Storage(Error),
    #[doc(hidden)]
    /// Run the transaction again (never produced by foldvault except as documented above).
    Conflict,
}

/// The error `transaction` returns.
#[derive(Debug, Clone)]
pub enum TransactionError<E = Error> {
    /// The closure aborted with this error; nothing was written.
    Abort(E),
    /// The storage failed. Nothing was written, unless it failed after the commit: in the sync
    /// that a durable commit, or a `flush` asked for in the closure, makes once the commit is
    /// published. Then the commit is visible, and not known to be durable (the handle is
    /// poisoned): a closure is not to be run again on this error without a look at the data.
    Storage(Error),
}

/// The error of an operation on a `TransactionalTree` (cannot be an abort).
#[derive(Debug, Clone)]
pub enum UnabortableTransactionError {
    #[doc(hidden)]
    /// Run the transaction again.
    Conflict,
    /// The storage failed.
    Storage(Error),
}

/// What a transaction's closure returns.
pub type ConflictableTransactionResult<T, E = ()> = std::result::Result<T, ConflictableTransactionError<E>>;
/// What `transaction` returns.
pub type TransactionResult<T, E = ()> = std::result::Result<T, TransactionError<E>>;
/// What an operation on a `TransactionalTree` returns.
pub type UnabortableTransactionResult<T> = std::result::Result<T, UnabortableTransactionError>;

/// `Err(ConflictableTransactionError::Abort(t))`, as `sled::transaction::abort`.
pub fn abort<A, T>(t: T) -> ConflictableTransactionResult<A, T> {
    Err(ConflictableTransactionError::Abort(t))
}

impl From<Error> for UnabortableTransactionError {
    fn from(e: Error) -> Self {
        UnabortableTransactionError::Storage(e)
    }
}

impl<E> From<UnabortableTransactionError> for ConflictableTransactionError<E> {
    fn from(e: UnabortableTransactionError) -> Self {
        match e {
            UnabortableTransactionError::Conflict => ConflictableTransactionError::Conflict,
            UnabortableTransactionError::Storage(e) => ConflictableTransactionError::Storage(e),
        }
    }
}

impl<E> From<Error> for ConflictableTransactionError<E> {
    fn from(e: Error) -> Self {
        ConflictableTransactionError::Storage(e)
    }
}

impl<E> From<Error> for TransactionError<E> {
    fn from(e: Error) -> Self {
        TransactionError::Storage(e)
    }
}

impl fmt::Display for UnabortableTransactionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnabortableTransactionError::Conflict => f.write_str("Conflict during transaction"),
            UnabortableTransactionError::Storage(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Display> fmt::Display for ConflictableTransactionError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConflictableTransactionError::Abort(e) => e.fmt(f),
            ConflictableTransactionError::Conflict => f.write_str("Conflict during transaction"),
            ConflictableTransactionError::Storage(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Display> fmt::Display for TransactionError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransactionError::Abort(e) => e.fmt(f),
            TransactionError::Storage(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for UnabortableTransactionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UnabortableTransactionError::Storage(e) => Some(e),
            UnabortableTransactionError::Conflict => None,
        }
    }
}

impl<E: std::error::Error> std::error::Error for ConflictableTransactionError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConflictableTransactionError::Storage(e) => Some(e),
            _ => None,
        }
    }
}

impl<E: std::error::Error> std::error::Error for TransactionError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TransactionError::Storage(e) => Some(e),
            TransactionError::Abort(_) => None,
        }
    }
}

// ------------------------------------------------------------------------------------------
// The overlay: one write transaction shared by the views of one attempt.

/// One attempt of a transaction: the write transaction and what the closure asked for.
struct Overlay {
    /// `None` once committed or rolled back (a view that outlives its transaction then fails).
    tx: RefCell<Option<WriteTransaction>>,
    /// `TransactionalTree::flush` was called: flush after committing.
    flush: Cell<bool>,
    /// Ids reserved inside this transaction: the next one and the end of the range.
    ids: Cell<(u64, u64)>,
}

impl Overlay {
    /// An attempt's overlay over `tx` (`None`: one that serves nothing).
    fn new(tx: Option<WriteTransaction>) -> Rc<Overlay> {
        Rc::new(Overlay { tx: RefCell::new(tx), flush: Cell::new(false), ids: Cell::new((0, 0)) })
    }

    /// Rolls back a transaction `finish` did not end (its closure panicked), and keeps a range
    /// of ids it reserved, whose ids the closure may have used, from reuse, as `finish` does:
    /// rolled back with the transaction, the reservation was lost, and after a restart the same
    /// ids were handed out again. Nothing if the transaction already ended.
    fn roll_back(&self) {
        // A borrow still held (a panic inside a view's own call) leaves it to the last view.
        let Some(tx) = self.tx.try_borrow_mut().ok().and_then(|mut t| t.take()) else { return };
        let handle = tx.handle.clone();
        drop(tx);
        keep_ids_or_log(&handle, self.ids.get().1);
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        self.roll_back();
    }
}

/// Keeps the ids below `end` (a range a transaction that did not commit reserved) from reuse;
/// a failure is logged on the audit target (the caller's outcome stands).
fn keep_ids_or_log(handle: &Handle, end: u64) {
    if end > 0
        && let Err(e) = handle.engine.keep_ids_past(end)
    {
        tracing::error!(target: "foldvault::audit", error = %e, "ids a rolled-back transaction handed out could not be kept from reuse");
    }
}

fn finished() -> Error {
    Error::Unsupported("the transaction this TransactionalTree belongs to has finished".into())
}

/// The trees of one transaction attempt (sled's name; its methods are internal).
pub struct TransactionalTrees {
    overlay: Rc<Overlay>,
    inner: Vec<TransactionalTree>,
}

impl TransactionalTrees {
    /// The view of the `ix`-th tree; one that serves nothing (every call `Storage`, "the
    /// transaction ... has finished") if the overlay was made for fewer trees (the public
    /// `Transactional` methods called with another tuple's overlay), rather than a panic.
    fn view(&self, ix: usize) -> TransactionalTree {
        self.inner
            .get(ix)
            .cloned()
            .unwrap_or_else(|| TransactionalTree { overlay: Overlay::new(None), name: Arc::from(&b""[..]) })
    }
}

impl Drop for TransactionalTrees {
    /// An attempt dropped before `finish` (its closure panicked) is rolled back here, not when
    /// the last view goes: a view the closure kept (in a cell outside it) held the writer, and
    /// every other thread's write waited for as long as it lived.
    fn drop(&mut self) {
        self.overlay.roll_back();
    }
}

impl TransactionalTrees {
    fn begin(trees: &[&Tree]) -> Result<TransactionalTrees> {
        let Some(first) = trees.first() else {
            return Err(Error::Unsupported("a transaction needs at least one tree".into()));
        };
        if !trees.iter().all(|t| Arc::ptr_eq(&t.handle, &first.handle)) {
            return Err(Error::Unsupported("cannot use trees from multiple databases in the same transaction".into()));
        }
        let tx = WriteTransaction::begin(first.handle.clone())?;
        // A handle whose tree was dropped since it was opened is `CollectionNotFound` (the
        // transaction would make the tree again), checked against the transaction's snapshot.
        let base = tx.with(|t| Ok(t.base.clone()))?;
        for t in trees {
            t.current(&base)?;
        }
        let overlay = Overlay::new(Some(tx));
        let inner =
            trees.iter().map(|t| TransactionalTree { overlay: overlay.clone(), name: t.name.clone() }).collect();
        Ok(TransactionalTrees { overlay, inner })
    }

    /// Commits or rolls back per the closure's result. `None` means: run the closure again.
    fn finish<A, E>(mut self, ret: ConflictableTransactionResult<A, E>) -> Option<TransactionResult<A, E>> {
        self.inner.clear();
        let overlay = self.overlay.clone();
        let Some(tx) = overlay.tx.borrow_mut().take() else {
            return Some(Err(TransactionError::Storage(finished())));
        };
        let handle = tx.handle.clone();
        let (next, end) = overlay.ids.get();
        // A view kept past the transaction serves none of its range.
        overlay.ids.set((end, end));
        let outcome = match ret {
            Ok(r) => match tx.commit() {
                Ok(()) => {
                    // A range this transaction reserved is now durable: what it did not use goes
                    // to the engine, unless the engine reserved past it meanwhile (ids stay
                    // increasing).
                    if next < end {
                        let mut ids = handle.engine.ids.lock();
                        if *ids == (end, end) {
                            *ids = (next, end);
                        }
                    }
                    if overlay.flush.get()
                        && let Err(e) = handle.engine.flush()
                    {
                        return Some(Err(TransactionError::Storage(e)));
                    }
                    return Some(Ok(r));
                }
                Err(e) => Some(Err(TransactionError::Storage(e))),
            },
            Err(e) => {
                drop(tx);
                match e {
                    ConflictableTransactionError::Abort(e) => Some(Err(TransactionError::Abort(e))),
                    ConflictableTransactionError::Storage(e) => Some(Err(TransactionError::Storage(e))),
                    ConflictableTransactionError::Conflict => None,
                }
            }
        };
        // Not committed (rolled back, and the writer let go): a range it reserved went with it,
        // though the closure may have used its ids. A failure to keep them is logged; the
        // closure's `Abort` or `Conflict` stands (it was replaced by the storage error).
        keep_ids_or_log(&handle, end);
        outcome
    }
}

// ------------------------------------------------------------------------------------------
// TransactionalTree.

/// A tree inside a transaction (the view a transaction's closure receives).
#[derive(Clone)]
pub struct TransactionalTree {
    overlay: Rc<Overlay>,
    name: Arc<[u8]>,
}

impl fmt::Debug for TransactionalTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransactionalTree").field("name_len", &self.name.len()).finish_non_exhaustive()
    }
}

impl TransactionalTree {
    fn with<T>(&self, f: impl FnOnce(TxTree<'_>) -> Result<T>) -> Result<T> {
        let guard = self.overlay.tx.borrow();
        let tx = guard.as_ref().ok_or_else(finished)?;
        f(TxTree { tx, name: self.name.to_vec() })
    }

    /// Sets `key` to `value`; returns the previous value.
    pub fn insert<K, V>(&self, key: K, value: V) -> UnabortableTransactionResult<Option<IVec>>
    where
        K: AsRef<[u8]> + Into<IVec>,
        V: Into<IVec>,
    {
        let value: IVec = value.into();
        Ok(self.with(|t| t.insert(key.as_ref(), &value))?)
    }

    /// Removes `key`; returns the previous value.
    pub fn remove<K>(&self, key: K) -> UnabortableTransactionResult<Option<IVec>>
    where
        K: AsRef<[u8]> + Into<IVec>,
    {
        Ok(self.with(|t| t.remove(key.as_ref()))?)
    }

    /// The value of `key` as this transaction sees it (its own writes included).
    pub fn get<K: AsRef<[u8]>>(&self, key: K) -> UnabortableTransactionResult<Option<IVec>> {
        match self.with(|t| t.get(key.as_ref())) {
            // The tree has no entry in the catalog yet (a default tree never written to).
            Err(Error::CollectionNotFound) => Ok(None),
            r => Ok(r?),
        }
    }

    /// Whether `key` is present as this transaction sees it (not in sled).
    pub fn contains_key<K: AsRef<[u8]>>(&self, key: K) -> UnabortableTransactionResult<bool> {
        match self.with(|t| t.contains_key(key.as_ref())) {
            Err(Error::CollectionNotFound) => Ok(false),
            r => Ok(r?),
        }
    }

    /// Applies every insert and removal of `batch` inside this transaction.
    pub fn apply_batch(&self, batch: &Batch) -> UnabortableTransactionResult<()> {
        Ok(self.with(|t| t.apply_batch(batch))?)
    }

    /// Makes the transaction durable (flushes) once it has committed.
    pub fn flush(&self) {
        self.overlay.flush.set(true);
    }

    /// A unique, monotonically increasing id, as `Db::generate_id`. Ids are not contiguous;
    /// reserving a new range makes this transaction's commit durable.
    pub fn generate_id(&self) -> Result<u64> {
        let ov = &self.overlay;
        if ov.tx.borrow().is_none() {
            return Err(finished());
        }
        let (next, end) = ov.ids.get();
        if next < end {
            ov.ids.set((next + 1, end));
            return Ok(next);
        }
        let guard = ov.tx.borrow();
        let tx = guard.as_ref().ok_or_else(finished)?;
        // The writer lock (held by this transaction), then the id lock: the order of every
        // holder, and none holds the id lock while waiting for the writer.
        let mut ids = tx.handle.engine.ids.lock();
        if ids.0 < ids.1 {
            let id = ids.0;
            ids.0 += 1;
            return Ok(id);
        }
        // Reserve a range in this transaction. Whatever becomes of it, the engine's range moves
        // past it, so no id handed out here is handed out again in this process.
        let floor = ids.0;
        let start = tx.with(|t| {
            let mut root = t.trees.get(IDS_TREE).copied().unwrap_or_default();
            let start = super::engine::stored_next_id(&t.pages, &root)?.max(floor);
            let end = start.checked_add(ID_RESERVE).ok_or_else(|| Error::Unsupported("ids exhausted".into()))?;
            if let Err(e) = t.pages.insert(&mut root, b"next", &end.to_le_bytes(), false) {
                // Part way through an edit: the transaction cannot commit (as `TxTree` writes).
                t.failed = Some(e.clone());
                return Err(e);
            }
            t.trees.insert(IDS_TREE.to_vec(), root);
            t.changed.insert(IDS_TREE.to_vec());
            Ok(start)
        })?;
        let end = start + ID_RESERVE;
        *ids = (end, end);
        tx.set_durability(Durability::Immediate);
        ov.ids.set((start + 1, end));
        Ok(start)
    }
}

// ------------------------------------------------------------------------------------------
// Transactional.

/// Something a transaction can run on: a tree, a slice of trees, or a tuple of tree references.
pub trait Transactional<E = ()> {
    /// What the closure receives: a `TransactionalTree`, a `Vec` or a tuple of them.
    type View;

    #[doc(hidden)]
    /// Begins the write transaction (internal).
    fn make_overlay(&self) -> Result<TransactionalTrees>;

    #[doc(hidden)]
    /// The closure's view of an overlay (internal).
    fn view_overlay(overlay: &TransactionalTrees) -> Self::View;

    /// Runs `f` in one atomic transaction: commits if it returns `Ok`, writes nothing if it
    /// returns `Err` (`Abort(e)` becomes `TransactionError::Abort(e)`).
    fn transaction<F, A>(&self, f: F) -> TransactionResult<A, E>
    where
        F: Fn(&Self::View) -> ConflictableTransactionResult<A, E>,
    {
        loop {
            let overlay = self.make_overlay()?;
            let view = Self::view_overlay(&overlay);
            let ret = f(&view);
            drop(view);
            if let Some(r) = overlay.finish(ret) {
                return r;
            }
        }
    }
}

impl<E> Transactional<E> for &Tree {
    type View = TransactionalTree;
    fn make_overlay(&self) -> Result<TransactionalTrees> {
        TransactionalTrees::begin(&[*self])
    }
    fn view_overlay(overlay: &TransactionalTrees) -> TransactionalTree {
        overlay.view(0)
    }
}

impl<E> Transactional<E> for &&Tree {
    type View = TransactionalTree;
    fn make_overlay(&self) -> Result<TransactionalTrees> {
        TransactionalTrees::begin(&[**self])
    }
    fn view_overlay(overlay: &TransactionalTrees) -> TransactionalTree {
        overlay.view(0)
    }
}

impl<E> Transactional<E> for Tree {
    type View = TransactionalTree;
    fn make_overlay(&self) -> Result<TransactionalTrees> {
        TransactionalTrees::begin(&[self])
    }
    fn view_overlay(overlay: &TransactionalTrees) -> TransactionalTree {
        overlay.view(0)
    }
}

impl<E> Transactional<E> for [Tree] {
    type View = Vec<TransactionalTree>;
    fn make_overlay(&self) -> Result<TransactionalTrees> {
        TransactionalTrees::begin(&self.iter().collect::<Vec<_>>())
    }
    fn view_overlay(overlay: &TransactionalTrees) -> Vec<TransactionalTree> {
        overlay.inner.clone()
    }
}

impl<E> Transactional<E> for [&Tree] {
    type View = Vec<TransactionalTree>;
    fn make_overlay(&self) -> Result<TransactionalTrees> {
        TransactionalTrees::begin(self)
    }
    fn view_overlay(overlay: &TransactionalTrees) -> Vec<TransactionalTree> {
        overlay.inner.clone()
    }
}

/// `Transactional` for tuples of `&Tree`: `$ix` are the tuple indices, `$t` one ident each.
macro_rules! impl_transactional_tuple {
    (@ref $t:ident) => { &Tree };
    (@view $t:ident) => { TransactionalTree };
    ($($ix:tt $t:ident),+) => {
        impl<E> Transactional<E> for ($(impl_transactional_tuple!(@ref $t),)+) {
            type View = ($(impl_transactional_tuple!(@view $t),)+);
            fn make_overlay(&self) -> Result<TransactionalTrees> {
                TransactionalTrees::begin(&[$(self.$ix),+])
            }
            fn view_overlay(overlay: &TransactionalTrees) -> Self::View {
                ($(overlay.view($ix),)+)
            }
        }
    };
}

impl_transactional_tuple!(0 A);
impl_transactional_tuple!(0 A, 1 B);
impl_transactional_tuple!(0 A, 1 B, 2 C);
impl_transactional_tuple!(0 A, 1 B, 2 C, 3 D);
impl_transactional_tuple!(0 A, 1 B, 2 C, 3 D, 4 F);
impl_transactional_tuple!(0 A, 1 B, 2 C, 3 D, 4 F, 5 G);
impl_transactional_tuple!(0 A, 1 B, 2 C, 3 D, 4 F, 5 G, 6 H);
impl_transactional_tuple!(0 A, 1 B, 2 C, 3 D, 4 F, 5 G, 6 H, 7 I);
impl_transactional_tuple!(0 A, 1 B, 2 C, 3 D, 4 F, 5 G, 6 H, 7 I, 8 J);
impl_transactional_tuple!(0 A, 1 B, 2 C, 3 D, 4 F, 5 G, 6 H, 7 I, 8 J, 9 K);
impl_transactional_tuple!(0 A, 1 B, 2 C, 3 D, 4 F, 5 G, 6 H, 7 I, 8 J, 9 K, 10 L);
impl_transactional_tuple!(0 A, 1 B, 2 C, 3 D, 4 F, 5 G, 6 H, 7 I, 8 J, 9 K, 10 L, 11 M);
impl_transactional_tuple!(0 A, 1 B, 2 C, 3 D, 4 F, 5 G, 6 H, 7 I, 8 J, 9 K, 10 L, 11 M, 12 N);
impl_transactional_tuple!(0 A, 1 B, 2 C, 3 D, 4 F, 5 G, 6 H, 7 I, 8 J, 9 K, 10 L, 11 M, 12 N, 13 O);

impl Tree {
    /// Runs `f` as one atomic transaction on this tree (sled's `Tree::transaction`). For several
    /// trees use [`Transactional`] on a tuple or slice: `(&a, &b).transaction(|(a, b)| ...)`.
    pub fn transaction<F, A, E>(&self, f: F) -> TransactionResult<A, E>
    where
        F: Fn(&TransactionalTree) -> ConflictableTransactionResult<A, E>,
    {
        Transactional::transaction(&self, f)
    }
}
