//! The copy-on-write B+tree over sealed pages. SPEC.md §4.
//!
//! Layer: btree, above `pager`; below `db`. Every tree (the catalog of named trees included)
//! is a B+tree whose branch entries hold each child's page number *and seal tag*, so the whole
//! database is a Merkle tree rooted in the commit record: a stale or swapped page is caught when
//! reached (`Corrupt { page, TagMismatch }`).
//!
//! Invariants:
//! - copy-on-write: a transaction never modifies a page that a committed state references; it
//!   copies it (`TxPages::make_dirty`) to a page allocated for it;
//! - a node in the dirty set is encoded and sealed only at commit, children before parents, so
//!   each parent records its children's final tags;
//! - descent is bounded by `MAX_DEPTH`, so a damaged file with a cycle cannot recurse forever.

pub(crate) mod copy;
pub(crate) mod node;
pub(crate) mod overflow;
pub(crate) mod raw;
pub(crate) mod read;
pub(crate) mod salvage;
pub(crate) mod search;
pub(crate) mod tx;
pub(crate) mod verify;

#[cfg(test)]
mod damage_tests;

use crate::format::page::{PAGE_REF_SIZE, PageRef};
use crate::format::{get_u64, put_u64};

/// Deepest tree accepted. With 4 KiB pages and keys of at most 1 KiB a branch has at least three
/// children, so a tree of 64 levels would hold more entries than any file can.
pub const MAX_DEPTH: usize = 64;

/// A tree's root and record count, as the catalog stores it, and which instance of its name
/// it is in this process.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TreeRoot {
    pub root: PageRef,
    pub count: u64,
    /// The commit that made this tree, if this process made it (0: read from the file). Not
    /// stored: a `Tree` handle made before its name was dropped (and perhaps made again) sees
    /// another value, or none, and answers `CollectionNotFound`, as sled's does.
    pub born: u64,
}

pub(crate) const TREE_ROOT_SIZE: usize = PAGE_REF_SIZE + 8;

impl TreeRoot {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = vec![0u8; TREE_ROOT_SIZE];
        self.root.encode(&mut v);
        put_u64(&mut v, PAGE_REF_SIZE, self.count);
        v
    }
    pub(crate) fn decode(b: &[u8]) -> Option<TreeRoot> {
        if b.len() != TREE_ROOT_SIZE {
            return None;
        }
        Some(TreeRoot { root: PageRef::decode_committed(b, 0)?, count: get_u64(b, PAGE_REF_SIZE)?, born: 0 })
    }
}
