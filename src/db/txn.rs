//! Explicit transactions, in the style of redb: `Db::begin_write()` and `Db::begin_read()`.
//!
//! A `WriteTransaction` holds the writer lock for its whole life; it spans any number of trees
//! and commits atomically (`commit`) or not at all (`abort`, or drop). Ranges read inside a
//! write transaction are returned as vectors (they see the transaction's own writes).
//! A `ReadTransaction` is a snapshot: it sees the commit that was newest when it began,
//! unaffected by later commits, for as long as it lives.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use super::api::{Handle, bound_to_vec, tx_get};
use super::config::Durability;
use super::engine::{Snapshot, check_user_tree_name};
use super::iter::{Iter, wipe_bound};
use super::ivec::IVec;
use super::watch::{Changes, TreeChanges};
use crate::btree::TreeRoot;
use crate::btree::node::Value;
use crate::btree::read;
use crate::btree::tx::TxPages;
use crate::error::{Error, Result};

pub(crate) struct TxInner {
    pub(crate) guard: super::engine::WriterGuard,
    pub(crate) pages: TxPages,
    pub(crate) base: Arc<Snapshot>,
    pub(crate) trees: super::tree_map::TreeMap,
    pub(crate) changed: BTreeSet<Vec<u8>>,
    pub(crate) dropped: BTreeSet<Vec<u8>>,
    /// A write failed part way, with this error: its page bookkeeping is not trustworthy, so
    /// the transaction can only be aborted (found by the `db_ops` fuzzer: a batch failing on its
    /// second insert). Its commit returns this error, not one of its own.
    pub(crate) failed: Option<Error>,
    /// What the writes changed, for subscribers (recorded only when there are any).
    pub(crate) changes: Changes,
}

/// A read-write transaction over any number of trees.
pub struct WriteTransaction {
    pub(crate) handle: Arc<Handle>,
    pub(crate) inner: RefCell<Option<TxInner>>,
    durability: Cell<Durability>,
}

impl WriteTransaction {
    pub(crate) fn begin(handle: Arc<Handle>) -> Result<WriteTransaction> {
        let (guard, pages, base) = handle.engine.begin()?;
        let trees = base.trees.clone();
        // Each write decides whether it records (a subscription may be made while this runs,
        // on this thread; on another it waits for the writer).
        let changes = Changes::new(true);
        let durability = Cell::new(handle.engine.durability);
        Ok(WriteTransaction {
            handle,
            inner: RefCell::new(Some(TxInner {
                guard,
                pages,
                base,
                trees,
                changed: BTreeSet::new(),
                dropped: BTreeSet::new(),
                failed: None,
                changes,
            })),
            durability,
        })
    }

    /// Durability of this transaction's commit (default: the database's). An `Eventual` commit
    /// in an `Immediate` database waits for the next `flush()` or `Immediate` commit: no
    /// background flusher runs there.
    pub fn set_durability(&self, d: Durability) {
        self.durability.set(d);
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut TxInner) -> Result<T>) -> Result<T> {
        let mut b = self.inner.borrow_mut();
        let inner = b.as_mut().ok_or_else(|| Error::ReportableBug("transaction already finished".into()))?;
        // After a write failed part way, pages the transaction gave back may still be named by
        // its trees: a read could find another tree's node in one, a write take it again.
        if inner.failed.is_some() {
            return Err(Error::Unsupported(
                "a write in this transaction failed part way; it can only be aborted (or dropped)".into(),
            ));
        }
        f(inner)
    }

    /// Opens (creating if missing) a tree in this transaction.
    pub fn open_tree<N: AsRef<[u8]>>(&self, name: N) -> Result<TxTree<'_>> {
        let name = name.as_ref().to_vec();
        check_user_tree_name(&name)?;
        self.with(|t| {
            if !t.trees.contains_key(&name) {
                t.trees.insert(name.clone(), TreeRoot::default());
                t.changed.insert(name.clone());
            }
            Ok(())
        })?;
        Ok(TxTree { tx: self, name })
    }

    /// Removes a tree and frees its pages. Returns whether it existed. The default tree and the
    /// reserved names cannot be dropped (`Unsupported`), as `Db::drop_tree`.
    pub fn drop_tree<N: AsRef<[u8]>>(&self, name: N) -> Result<bool> {
        let name = name.as_ref();
        check_droppable(name)?;
        self.with(|t| {
            let Some(root) = t.trees.get(name).copied() else { return Ok(false) };
            // Freeing walks the whole tree and may fail part way (a page that does not open),
            // having freed some of its pages: the transaction can then only be aborted.
            if let Err(e) = t.pages.free_tree(root.root) {
                t.failed = Some(e.clone());
                return Err(e);
            }
            t.trees.remove(name);
            t.changed.remove(name);
            if t.base.trees.contains_key(name) {
                t.dropped.insert(name.to_vec());
            }
            Ok(true)
        })
    }

    /// Names of the trees as this transaction sees them. After a write of this transaction
    /// failed part way, `Unsupported` (as every other call): an empty list would read as "no
    /// trees".
    pub fn tree_names(&self) -> Result<Vec<IVec>> {
        self.with(|t| Ok(super::api::visible_names(t.trees.keys())))
    }

    /// Commits every change atomically.
    pub fn commit(self) -> Result<()> {
        let inner = self.inner.borrow_mut().take();
        let Some(mut t) = inner else { return Err(Error::ReportableBug("transaction already finished".into())) };
        if let Some(e) = t.failed.take() {
            // The write's own error (an I/O error, damage), which a caller that went on past it
            // (a sled closure that logged it) would otherwise never see: it was `Unsupported`.
            self.handle.engine.abort(&mut t.guard, t.pages);
            return Err(e);
        }
        self.handle.engine.commit_released(
            t.guard,
            t.pages,
            &t.base,
            t.trees,
            &t.changed,
            &t.dropped,
            self.durability.get(),
            t.changes,
        )?;
        self.handle.engine.flush_if_requested().map(drop)
    }

    /// Discards every change (dropping the transaction does the same).
    pub fn abort(self) {
        drop(self)
    }
}

impl Drop for WriteTransaction {
    fn drop(&mut self) {
        let taken = self.inner.borrow_mut().take();
        if let Some(mut t) = taken {
            self.handle.engine.abort(&mut t.guard, t.pages);
        }
        // With the writer let go: a `flush` called inside this transaction, which ended
        // without a commit (or whose commit failed), is made now.
        if let Err(e) = self.handle.engine.flush_if_requested() {
            tracing::error!(target: "foldvault::audit", error = %e, "a flush asked for inside a write transaction failed");
        }
    }
}

/// A tree inside a write transaction.
pub struct TxTree<'t> {
    pub(crate) tx: &'t WriteTransaction,
    pub(crate) name: Vec<u8>,
}

impl TxTree<'_> {
    fn read<T>(&self, f: impl FnOnce(&TxPages, &TreeRoot) -> Result<T>) -> Result<T> {
        self.tx.with(|t| {
            let root = t.trees.get(&self.name).copied().ok_or(Error::CollectionNotFound)?;
            f(&t.pages, &root)
        })
    }

    fn write<T>(&self, f: impl FnOnce(&mut TxPages, &mut TreeRoot, &mut TreeChanges) -> Result<T>) -> Result<T> {
        self.write_if(|p, r, c| f(p, r, c).map(|out| (out, true)))
    }

    /// As `write`, for a change `f` may find there is nothing to make (it says so with
    /// `false`): the tree is then left as the transaction saw it, so that a removal of a key
    /// that is not there neither commits a new catalog nor brings back, empty, a tree dropped
    /// since the handle was opened (as outside transactions: `Tree::write`).
    ///
    /// `f`'s word is not the only one: a change that copied or freed a page, or moved the
    /// root or the count, is kept whatever `f` says. The commit frees every page in
    /// `TxPages::freed`, so a root left as it was while the pages under it were freed would
    /// have the catalog name reusable pages (a forged count of 0 hid a batch's removals).
    fn write_if<T>(
        &self,
        f: impl FnOnce(&mut TxPages, &mut TreeRoot, &mut TreeChanges) -> Result<(T, bool)>,
    ) -> Result<T> {
        self.tx.with(|t| {
            let before = t.trees.get(&self.name).copied().unwrap_or_default();
            let pages_before = (t.pages.new_pages.len(), t.pages.freed.len());
            let mut root = before;
            // The instance subscribers watch: the one the transaction began with, unless it
            // dropped it (a tree made again here has none yet).
            let born = match t.dropped.contains(&self.name) {
                true => Some(u64::MAX),
                false => t.base.trees.get(&self.name).map(|r| r.born),
            };
            let watched = self.tx.handle.engine.watchers.watching(&self.name);
            let (out, said) = match f(&mut t.pages, &mut root, &mut t.changes.of(&self.name, born, watched)) {
                Ok(out) => out,
                // Size checks run before anything changes; any other failure may leave a
                // half-done change behind.
                Err(e @ (Error::KeyTooLarge { .. } | Error::ValueTooLarge { .. })) => return Err(e),
                Err(e) => {
                    t.failed = Some(e.clone());
                    return Err(e);
                }
            };
            let changed = said
                || (t.pages.new_pages.len(), t.pages.freed.len()) != pages_before
                || (root.root.page, root.count) != (before.root.page, before.count);
            if changed {
                // A name dropped earlier in this transaction stays in `dropped`: the commit
                // removes the old tree's entry and enters this one as a new instance.
                t.trees.insert(self.name.clone(), root);
                t.changed.insert(self.name.clone());
            }
            Ok(out)
        })
    }

    pub fn insert<K: AsRef<[u8]>, V: AsRef<[u8]>>(&self, key: K, value: V) -> Result<Option<IVec>> {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.write(|p, r, c| {
            let old = p.insert(r, key, value, true)?.map(IVec::from);
            c.note(key, old.as_deref(), Some(value), false);
            Ok(old)
        })
    }

    pub fn remove<K: AsRef<[u8]>>(&self, key: K) -> Result<Option<IVec>> {
        let key = key.as_ref();
        self.write_if(|p, r, c| {
            let old = p.remove(r, key, true)?.map(IVec::from);
            c.note(key, old.as_deref(), None, false);
            let removed = old.is_some();
            Ok((old, removed))
        })
    }

    pub fn get<K: AsRef<[u8]>>(&self, key: K) -> Result<Option<IVec>> {
        self.read(|p, r| tx_get(p, r, key.as_ref()))
    }

    pub fn contains_key<K: AsRef<[u8]>>(&self, key: K) -> Result<bool> {
        self.read(|p, r| Ok(p.get_with(r, key.as_ref(), |_| Ok(()))?.is_some()))
    }

    /// The entries in `range`, in key order, as this transaction sees them.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Result<Vec<(IVec, IVec)>> {
        let (mut lo, mut hi) = (bound_to_vec(range.start_bound()), bound_to_vec(range.end_bound()));
        let found = self.read(|p, r| {
            let mut out = Vec::new();
            let collected =
                read::collect_range(&p.pager, Some(&p.dirty), r.root, as_ref_bound(&lo), as_ref_bound(&hi), &mut out);
            let converted = collected.and_then(|()| {
                let mut entries = Vec::with_capacity(out.len());
                for (k, v) in out.iter_mut() {
                    let value = IVec::from(resolve(p, v)?);
                    entries.push((IVec::from(std::mem::take(k)), value));
                }
                Ok(entries)
            });
            // Keys an error left unconverted are the caller's plaintext: wiped, not only freed
            // (values wipe themselves).
            for (k, _) in out.iter_mut() {
                crate::crypto::wipe::wipe_vec(k);
            }
            converted
        });
        wipe_bound(&mut lo);
        wipe_bound(&mut hi);
        found
    }

    pub fn iter(&self) -> Result<Vec<(IVec, IVec)>> {
        self.range::<&[u8], _>(..)
    }

    pub fn scan_prefix<P: AsRef<[u8]>>(&self, prefix: P) -> Result<Vec<(IVec, IVec)>> {
        let prefix = prefix.as_ref();
        // Bounded above by the prefix's successor, as `Tree::scan_prefix`: the records past the
        // prefix are not read (their overflow values included).
        match super::iter::prefix_successor(prefix) {
            Some(mut end) => {
                let r = self.range::<&[u8], _>((Bound::Included(prefix), Bound::Excluded(&end[..])));
                crate::crypto::wipe::wipe(&mut end);
                r
            }
            None => self.range::<&[u8], _>((Bound::Included(prefix), Bound::Unbounded)),
        }
    }

    pub fn len(&self) -> Result<usize> {
        self.read(|_, r| Ok(r.count as usize))
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        self.write(|p, r, c| {
            c.note_clear(p, r)?;
            p.free_tree(r.root)?;
            *r = TreeRoot::default();
            Ok(())
        })
    }

    pub fn apply_batch(&self, batch: &super::api::Batch) -> Result<()> {
        batch.validate()?;
        self.write_if(|p, r, c| {
            // Only removals of keys that are not there: nothing changes (the count tells).
            let (count, inserts) = (r.count, batch.ops.iter().any(|(_, v)| v.is_some()));
            super::batch::apply_ops(p, r, batch, c)?;
            let changed = inserts || r.count != count;
            Ok(((), changed))
        })
    }
}

fn resolve(p: &TxPages, v: &Value) -> Result<Vec<u8>> {
    p.value_bytes(v)
}

fn as_ref_bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Refuses a tree name that cannot be dropped: the default tree (as sled, whose message this
/// is) and any name `open_tree` refuses.
pub(crate) fn check_droppable(name: &[u8]) -> Result<()> {
    check_user_tree_name(name)?;
    if name == super::api::DEFAULT_TREE {
        return Err(Error::Unsupported("cannot remove the core structures".into()));
    }
    Ok(())
}

/// A read-only snapshot of the whole database.
pub struct ReadTransaction {
    pub(crate) handle: Arc<Handle>,
    pub(crate) snap: Arc<Snapshot>,
}

impl ReadTransaction {
    /// The snapshot's commit sequence number.
    pub fn commit_seq(&self) -> u64 {
        self.snap.seq
    }
    /// A tree of this snapshot; `CollectionNotFound` if it does not exist in it. The default
    /// tree always exists (empty until its first write), as `tree_names` lists it.
    pub fn open_tree<N: AsRef<[u8]>>(&self, name: N) -> Result<ReadTree> {
        // A name too long that the catalog lists came from the file: its damage, for every
        // reader that opens the trees the catalog lists (a copy, a checksum, the command line's
        // dump), not the caller's `KeyTooLarge` (diff review).
        if name.as_ref().len() > crate::MAX_KEY_LEN && self.snap.trees.contains_key(name.as_ref()) {
            let leaf = super::open::catalog_leaf_of(&self.handle.engine.pager, self.snap.catalog, name.as_ref());
            return Err(Error::corrupt(leaf, crate::error::CorruptReason::BadLayout));
        }
        check_user_tree_name(name.as_ref())?;
        let root = match self.snap.trees.get(name.as_ref()) {
            Some(root) => *root,
            None if name.as_ref() == super::api::DEFAULT_TREE => TreeRoot::default(),
            None => return Err(Error::CollectionNotFound),
        };
        Ok(ReadTree { handle: self.handle.clone(), snap: self.snap.clone(), root })
    }
    pub fn tree_names(&self) -> Vec<IVec> {
        super::api::visible_names(self.snap.trees.keys())
    }
    /// Each tree's name (as `tree_names` lists them, sorted) with its record count, both from
    /// this snapshot's catalog: no tree is opened, so none can fail to open and look empty.
    pub fn tree_lens(&self) -> Vec<(IVec, u64)> {
        let mut names = self.tree_names();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|n| {
                // A listed name missing from the catalog is the default tree before its first
                // write: empty.
                let count = self.snap.trees.get(n.as_ref()).map_or(0, |root| root.count);
                (n, count)
            })
            .collect()
    }
}

/// A tree of a read snapshot.
pub struct ReadTree {
    handle: Arc<Handle>,
    snap: Arc<Snapshot>,
    root: TreeRoot,
}

impl ReadTree {
    pub fn get<K: AsRef<[u8]>>(&self, key: K) -> Result<Option<IVec>> {
        super::api::get_in(&self.handle.engine, &self.snap, self.root.root, key.as_ref())
    }
    pub fn contains_key<K: AsRef<[u8]>>(&self, key: K) -> Result<bool> {
        super::api::contains_in(&self.handle.engine, &self.snap, self.root.root, key.as_ref())
    }
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        Iter::new(
            self.handle.clone(),
            self.snap.clone(),
            self.root.root,
            bound_to_vec(range.start_bound()),
            bound_to_vec(range.end_bound()),
        )
    }
    pub fn iter(&self) -> Iter {
        self.range::<&[u8], _>(..)
    }
    pub fn scan_prefix<P: AsRef<[u8]>>(&self, prefix: P) -> Iter {
        Iter::prefix(self.handle.clone(), self.snap.clone(), self.root.root, prefix.as_ref())
    }
    pub fn len(&self) -> usize {
        self.root.count as usize
    }
    pub fn is_empty(&self) -> bool {
        self.root.count == 0
    }
}
