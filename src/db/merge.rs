//! Merge operators, as sled 0.34's: a function set on a tree that `Tree::merge` applies to a
//! key's current value and the bytes merged in.
//!
//! Layer: public API, above `Tree`'s compare-and-swap. Invariants: an operator belongs to one
//! instance of a tree name (`Tree::born`): a tree dropped and made again has none until one is
//! set on it, as sled's new `Tree` has none; the operator is kept in memory only (it is code,
//! not data), by the handle every `Db` and `Tree` of one open shares. It runs with no lock held,
//! like `update_and_fetch`'s function, so it may be called again for one merge (when another
//! writer changed the value first) and may panic without leaving anything held.

use std::sync::Arc;

use super::api::Tree;
use super::ivec::IVec;
use crate::error::{Error, Result};

/// A merge operator: `(key, current value, bytes merged)` to the new value, or `None` to
/// remove the key. As sled's, but `Send + Sync`: every handle of the database, on any thread,
/// shares it.
pub trait MergeOperator: Fn(&[u8], Option<&[u8]>, &[u8]) -> Option<Vec<u8>> + Send + Sync {}

impl<F> MergeOperator for F where F: Fn(&[u8], Option<&[u8]>, &[u8]) -> Option<Vec<u8>> + Send + Sync {}

/// The operators set on one open database, one per tree name (the instance it was set on
/// beside it), found by name.
#[derive(Default)]
pub(crate) struct MergeOperators {
    set: parking_lot::Mutex<std::collections::HashMap<Arc<[u8]>, OperatorEntry>>,
}

struct OperatorEntry {
    born: Option<u64>,
    op: Arc<dyn MergeOperator>,
}

impl MergeOperators {
    fn get(&self, name: &[u8], born: Option<u64>) -> Option<Arc<dyn MergeOperator>> {
        self.set.lock().get(name).filter(|e| e.born == born).map(|e| e.op.clone())
    }

    /// Sets `op` on instance `born` of `name` if `live()`, asked under the lock: a put that
    /// asked before it would land after a newer instance's own put, and, one entry per name,
    /// take that instance's operator away.
    fn put_if_live(&self, name: Arc<[u8]>, born: Option<u64>, op: Arc<dyn MergeOperator>, live: impl FnOnce() -> bool) {
        let replaced = {
            let mut set = self.set.lock();
            if !live() {
                return;
            }
            // One entry per name: an operator of a dropped instance of the name goes with it.
            set.insert(name, OperatorEntry { born, op })
        };
        // Dropped with the lock let go: what the old operator holds may merge or set an
        // operator as it drops, which under the lock waited for this thread (concurrency
        // review).
        drop(replaced);
    }
}

impl Tree {
    /// Sets the merge operator `merge` applies on this tree (replacing any set before). It is
    /// shared by every handle on this tree in this open, and is not stored in the file.
    pub fn set_merge_operator(&self, merge_operator: impl MergeOperator + 'static) {
        // A handle on a dropped tree sets nothing: it would take the operator of the tree made
        // again under the name (`merge` through it is `CollectionNotFound` anyway). Asked under
        // the operators' lock, with a snapshot taken there: asked before it, a handle on a tree
        // dropped and made again in between removed the new tree's operator.
        let live = || self.current(&self.handle.engine.snapshot()).is_ok();
        self.handle.merge_operators.put_if_live(self.name.clone(), self.born, Arc::new(merge_operator), live);
    }

    /// Merges `value` into `key`'s value with the tree's merge operator, atomically, and
    /// returns the new value (`None` when the operator removed the key). `Unsupported` when no
    /// operator is set on this tree. As `update_and_fetch`, the operator may run more than
    /// once for one call, whenever another writer changed the value first.
    pub fn merge<K: AsRef<[u8]>, V: AsRef<[u8]>>(&self, key: K, value: V) -> Result<Option<IVec>> {
        let Some(op) = self.handle.merge_operators.get(&self.name, self.born) else {
            // A handle on a dropped tree says so, as its other calls do.
            self.current(&self.handle.engine.snapshot())?;
            return Err(Error::Unsupported(
                "must set a merge operator on this Tree before calling merge, by calling Tree::set_merge_operator"
                    .into(),
            ));
        };
        let (key, value) = (key.as_ref(), value.as_ref());
        self.update_and_fetch(key, |old| op(key, old, value))
    }
}
