//! Reading trees: point lookups and cursors. Reads go through the pager, which checks every
//! page's seal and its parent-held tag; within a write transaction the dirty set is consulted
//! first.

use std::ops::Bound;
use std::sync::Arc;

use super::MAX_DEPTH;
use super::node::{Node, Value};
use super::raw::{RawNode, RawValue};
use crate::error::{CorruptReason, Error, PageNo, Result};
use crate::format::page::PageRef;
use crate::pager::Pager;
use crate::pager::cache::CachedPage;

pub(crate) type Dirty = crate::pager::pagemap::PageMap<Node>;

/// Point lookup.
pub(crate) fn get(pager: &Pager, dirty: Option<&Dirty>, root: PageRef, key: &[u8]) -> Result<Option<Value>> {
    get_with(pager, dirty, root, key, |v| Ok(v.to_owned_value()))
}

/// Looks `key` up and hands its value, as the page holds it, to `f` (so a caller that copies
/// the value out copies it once).
pub(crate) fn get_with<T>(
    pager: &Pager,
    dirty: Option<&Dirty>,
    root: PageRef,
    key: &[u8],
    f: impl FnOnce(RawValue<'_>) -> Result<T>,
) -> Result<Option<T>> {
    get_from(pager, dirty, None, root, key, f)
}

/// The most tree roots a snapshot pins (1 MiB of pages).
pub(crate) const MAX_PINNED_ROOTS: usize = 256;

/// The root pages of a snapshot's trees, pinned when the snapshot is made: every lookup passes
/// its tree's root, and a pinned root costs no cache lookup (no shard lock, no hash, no
/// reference count). The pins are cache entries, wiped when their last holder (the cache or a
/// snapshot) drops them; at most `MAX_PINNED_ROOTS` per snapshot, outside the cache's budget.
/// Built eagerly, not on first use, so that the list holds no uninitialised bytes (a
/// `OnceLock` per root would) for the stack to leave key bytes in (SPEC §14).
pub(crate) struct RootPins(Vec<(PageRef, Arc<CachedPage>)>);

impl RootPins {
    /// Pins `roots`: one `prev` pinned is shared from it, another is read through the pager (a
    /// cache hit for a root the commit just wrote). A root that does not read is left unpinned:
    /// a lookup reads it and reports the error.
    pub(crate) fn new(pager: &Pager, roots: impl Iterator<Item = PageRef>, prev: Option<&RootPins>) -> RootPins {
        let mut v = Vec::new();
        for r in roots.filter(|r| !r.is_none()).take(MAX_PINNED_ROOTS) {
            let page = match prev.and_then(|p| p.find(r)) {
                Some(p) => Some(p.clone()),
                None => pager.read(r, None).ok(),
            };
            if let Some(p) = page {
                v.push((r, p));
            }
        }
        v.sort_by_key(|(r, _)| r.page);
        v.dedup_by_key(|(r, _)| r.page);
        RootPins(v)
    }

    /// The pinned page at `root`, if it is pinned with that tag and generation.
    fn find(&self, root: PageRef) -> Option<&Arc<CachedPage>> {
        let i = self.0.binary_search_by_key(&root.page, |(r, _)| r.page).ok()?;
        let (r, p) = self.0.get(i)?;
        (r.tag.ct_eq(&root.tag) && r.generation == root.generation).then_some(p)
    }
}

/// `get_with`, starting from a pinned root when `pins` holds `root`.
pub(crate) fn get_from<T>(
    pager: &Pager,
    dirty: Option<&Dirty>,
    pins: Option<&RootPins>,
    root: PageRef,
    key: &[u8],
    f: impl FnOnce(RawValue<'_>) -> Result<T>,
) -> Result<Option<T>> {
    let mut at = root;
    for depth in 0..=MAX_DEPTH {
        if at.is_none() {
            return Ok(None);
        }
        // Only a reference made in the transaction names an edited node; a committed one
        // naming the same page (damage) reads the page, whose tag check then refuses it.
        if let Some(node) = dirty.filter(|_| at.is_dirty()).and_then(|d| d.get(&at.page)) {
            match node {
                Node::Leaf(l) => {
                    let Ok(i) = l.search(key) else { return Ok(None) };
                    return f(l.value(i)).map(Some);
                }
                Node::Branch(b) => {
                    at = b.children[b.child_index(key)];
                    continue;
                }
            }
        }
        let pinned = match pins {
            Some(pins) if depth == 0 => pins.find(at).map(|p| &**p),
            _ => None,
        };
        let held;
        let p = match pinned {
            Some(p) => p,
            None => {
                held = pager.read(at, None)?;
                &*held
            }
        };
        let raw = RawNode::new(p.payload(), at.page)?;
        if raw.is_leaf() {
            return match raw.leaf_search(key)? {
                Ok(i) => f(raw.leaf_entry(i)?.1).map(Some),
                Err(_) => Ok(None),
            };
        }
        at = raw.child(raw.child_index(key)?)?;
    }
    Err(Error::corrupt(at.page, CorruptReason::TooDeep))
}

/// Collects the entries of `[lo, hi]` in key order (dirty-aware; used inside write
/// transactions, where results are materialised).
pub(crate) fn collect_range(
    pager: &Pager,
    dirty: Option<&Dirty>,
    root: PageRef,
    lo: Bound<&[u8]>,
    hi: Bound<&[u8]>,
    out: &mut Vec<(Vec<u8>, Value)>,
) -> Result<()> {
    fn above_lo(k: &[u8], lo: Bound<&[u8]>) -> bool {
        match lo {
            Bound::Included(l) => k >= l,
            Bound::Excluded(l) => k > l,
            Bound::Unbounded => true,
        }
    }
    fn below_hi(k: &[u8], hi: Bound<&[u8]>) -> bool {
        match hi {
            Bound::Included(h) => k <= h,
            Bound::Excluded(h) => k < h,
            Bound::Unbounded => true,
        }
    }
    #[allow(clippy::too_many_arguments)]
    fn rec(
        pager: &Pager,
        dirty: Option<&Dirty>,
        at: PageRef,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        out: &mut Vec<(Vec<u8>, Value)>,
        depth: usize,
        seen: &mut crate::pager::pagemap::PageSet,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::corrupt(at.page, CorruptReason::TooDeep));
        }
        if at.is_none() {
            return Ok(());
        }
        // A page reached twice (shared children: damage) would repeat entries, exponentially.
        if !seen.insert(at.page) {
            return Err(Error::corrupt(at.page, CorruptReason::DoubleReference));
        }
        let owned;
        let node = match dirty.filter(|_| at.is_dirty()).and_then(|d| d.get(&at.page)) {
            Some(n) => n,
            None => {
                owned = Node::decode(pager.read(at, None)?.payload(), at.page)?;
                &owned
            }
        };
        match node {
            Node::Leaf(l) => {
                for i in 0..l.len() {
                    let key = l.key(i);
                    if above_lo(key, lo) && below_hi(key, hi) {
                        out.push((key.to_vec(), l.value(i).to_owned_value()));
                    }
                }
            }
            Node::Branch(b) => {
                for (i, c) in b.children.iter().enumerate() {
                    // child i holds keys in [keys[i-1], keys[i])
                    if i > 0 && !b.key(i - 1).is_some_and(|k| below_hi(k, hi)) {
                        break;
                    }
                    if b.key(i).is_some_and(|k| !above_lo_strict(k, lo)) {
                        continue;
                    }
                    rec(pager, dirty, *c, lo, hi, out, depth + 1, seen)?;
                }
            }
        }
        Ok(())
    }
    /// Whether a child whose keys are all `< upper` can hold keys satisfying `lo`.
    fn above_lo_strict(upper: &[u8], lo: Bound<&[u8]>) -> bool {
        match lo {
            Bound::Included(l) | Bound::Excluded(l) => upper > l,
            Bound::Unbounded => true,
        }
    }
    rec(pager, dirty, root, lo, hi, out, 0, &mut crate::pager::pagemap::PageSet::default())
}

/// A position in a tree of clean pages: the path from the root to a leaf entry.
pub(crate) struct Cursor {
    /// (page, its number, index): for branches the child followed, for the leaf the entry.
    stack: Vec<(Arc<CachedPage>, PageNo, usize)>,
}

impl Cursor {
    fn raw(&self, level: usize) -> Result<RawNode<'_>> {
        let (p, n, _) = &self.stack[level];
        RawNode::new(p.payload(), *n)
    }

    fn descend(&mut self, pager: &Pager, mut at: PageRef, leftmost: bool) -> Result<()> {
        loop {
            if self.stack.len() > MAX_DEPTH {
                return Err(Error::corrupt(at.page, CorruptReason::TooDeep));
            }
            let p = pager.read(at, None)?;
            let raw = RawNode::new(p.payload(), at.page)?;
            let n = raw.len();
            let leaf = raw.is_leaf();
            let idx = match (leaf, leftmost) {
                (_, true) => 0,
                (true, false) => n.saturating_sub(1),
                (false, false) => n,
            };
            let child = if leaf { None } else { Some(raw.child(idx)?) };
            self.stack.push((p, at.page, idx));
            match child {
                Some(c) => at = c,
                None => return Ok(()),
            }
        }
    }

    /// Descends from `root` towards `key`, pushing the path; stops at the leaf (pushed with
    /// index 0) and returns where `key` falls in it (`Ok(i)` found at i, `Err(i)` insert at i).
    fn descend_to(&mut self, pager: &Pager, root: PageRef, key: &[u8]) -> Result<std::result::Result<usize, usize>> {
        let mut at = root;
        loop {
            if self.stack.len() > MAX_DEPTH {
                return Err(Error::corrupt(at.page, CorruptReason::TooDeep));
            }
            let p = pager.read(at, None)?;
            let raw = RawNode::new(p.payload(), at.page)?;
            if raw.is_leaf() {
                let pos = raw.leaf_search(key)?;
                self.stack.push((p, at.page, 0));
                return Ok(pos);
            }
            let i = raw.child_index(key)?;
            let child = raw.child(i)?;
            self.stack.push((p, at.page, i));
            at = child;
        }
    }

    /// Positions at the first entry `>= key` (or `> key` if `exclusive`); `None` key = first.
    pub(crate) fn seek_ge(pager: &Pager, root: PageRef, key: Option<&[u8]>, exclusive: bool) -> Result<Option<Cursor>> {
        if root.is_none() {
            return Ok(None);
        }
        let mut c = Cursor { stack: Vec::new() };
        let Some(key) = key else {
            c.descend(pager, root, true)?;
            return c.settle_forward(pager);
        };
        let i = match c.descend_to(pager, root, key)? {
            Ok(i) if exclusive => i + 1,
            Ok(i) | Err(i) => i,
        };
        if let Some(top) = c.stack.last_mut() {
            top.2 = i;
        }
        c.settle_forward(pager)
    }

    /// Positions at the last entry `<= key` (or `< key` if `exclusive`); `None` key = last.
    pub(crate) fn seek_le(pager: &Pager, root: PageRef, key: Option<&[u8]>, exclusive: bool) -> Result<Option<Cursor>> {
        if root.is_none() {
            return Ok(None);
        }
        let mut c = Cursor { stack: Vec::new() };
        let Some(key) = key else {
            c.descend(pager, root, false)?;
            return c.settle_backward(pager);
        };
        // index of the entry to stand on, +1 (0 = before the first)
        let after = match c.descend_to(pager, root, key)? {
            Ok(i) if exclusive => i,
            Ok(i) => i + 1,
            Err(i) => i,
        };
        if after == 0 {
            return c.step_back_from_start(pager);
        }
        if let Some(top) = c.stack.last_mut() {
            top.2 = after - 1;
        }
        c.settle_backward(pager)
    }

    /// An empty leaf the cursor is passing over: an error if it was passed over already in
    /// this step. A tree holds few empty leaves, if any; in a damaged one whose branches share
    /// their children (a plaintext file edited with its checksums fixed), the same empty leaves
    /// are met again and again, exponentially many times, while no entry comes out for the
    /// key-order check to catch. So a step meets at most as many empty leaves as the file has.
    fn pass_empty(&self, passed: &mut crate::pager::pagemap::PageSet) -> Result<()> {
        crate::pager::pagemap::reach_once(passed, self.stack[self.stack.len() - 1].1)
    }

    /// If the leaf index is past the end, moves to the next leaf (skipping empty ones).
    fn settle_forward(mut self, pager: &Pager) -> Result<Option<Cursor>> {
        let mut passed = crate::pager::pagemap::PageSet::default();
        loop {
            let top = self.stack.len() - 1;
            let len = self.raw(top)?.len();
            if self.stack[top].2 < len {
                return Ok(Some(self));
            }
            if len == 0 {
                self.pass_empty(&mut passed)?;
            }
            // climb to a branch with a next child
            self.stack.pop();
            loop {
                let Some(level) = self.stack.len().checked_sub(1) else { return Ok(None) };
                let n = self.raw(level)?.len();
                if self.stack[level].2 < n {
                    self.stack[level].2 += 1;
                    let child = self.raw(level)?.child(self.stack[level].2)?;
                    self.descend(pager, child, true)?;
                    break;
                }
                self.stack.pop();
            }
        }
    }

    /// If the leaf is empty, moves to the previous leaf's last entry.
    fn settle_backward(self, pager: &Pager) -> Result<Option<Cursor>> {
        let top = self.stack.len() - 1;
        if self.raw(top)?.len() > 0 {
            return Ok(Some(self));
        }
        self.step_back_from_start(pager)
    }

    fn step_back_from_start(mut self, pager: &Pager) -> Result<Option<Cursor>> {
        let mut passed = crate::pager::pagemap::PageSet::default();
        loop {
            if self.raw(self.stack.len() - 1)?.len() == 0 {
                self.pass_empty(&mut passed)?;
            }
            self.stack.pop();
            loop {
                let Some(level) = self.stack.len().checked_sub(1) else { return Ok(None) };
                if self.stack[level].2 > 0 {
                    self.stack[level].2 -= 1;
                    let child = self.raw(level)?.child(self.stack[level].2)?;
                    self.descend(pager, child, false)?;
                    break;
                }
                self.stack.pop();
            }
            let top = self.stack.len() - 1;
            if self.raw(top)?.len() > 0 {
                return Ok(Some(self));
            }
        }
    }

    /// The entry under the cursor.
    pub(crate) fn current(&self) -> Result<(Vec<u8>, Value)> {
        let top = self.stack.len() - 1;
        let (k, v) = self.raw(top)?.leaf_entry(self.stack[top].2)?;
        Ok((k.to_vec(), v.to_owned_value()))
    }

    /// Runs `f` on the current entry without copying it.
    /// The leaf the cursor is on (for errors about its entries).
    pub(crate) fn leaf_page(&self) -> PageNo {
        self.stack.last().map_or(0, |s| s.1)
    }

    pub(crate) fn with_current<T>(&self, f: impl FnOnce(&[u8], RawValue<'_>) -> T) -> Result<T> {
        let top = self.stack.len() - 1;
        let (k, v) = self.raw(top)?.leaf_entry(self.stack[top].2)?;
        Ok(f(k, v))
    }

    pub(crate) fn next(mut self, pager: &Pager) -> Result<Option<Cursor>> {
        let top = self.stack.len() - 1;
        self.stack[top].2 += 1;
        self.settle_forward(pager)
    }

    pub(crate) fn prev(mut self, pager: &Pager) -> Result<Option<Cursor>> {
        let top = self.stack.len() - 1;
        if self.stack[top].2 > 0 {
            self.stack[top].2 -= 1;
            return Ok(Some(self));
        }
        self.step_back_from_start(pager)
    }
}
