//! Mutation of trees inside one write transaction: the dirty set of decoded nodes, page
//! allocation for it, and the bottom-up sealing of the dirty set at commit.

use std::sync::Arc;

use super::node::{Branch, Leaf, MAX_INLINE_ENTRY, MAX_KEY_LEN, Node, Value};
use super::raw::RawValue;
use super::search::shortest_separator;
use super::{MAX_DEPTH, TreeRoot, overflow, read};
use crate::error::{CorruptReason, Error, PageNo, Result};
use crate::format::page::{PAYLOAD_SIZE, PageRef, SealTag};
use crate::pager::Pager;
use crate::pager::alloc::Allocator;
use crate::pager::pagemap::{PageMap, PageSet};

/// A node below this size after a removal is merged with a sibling when the two fit one page.
const UNDERFLOW: usize = PAYLOAD_SIZE / 4;

/// The pages a write transaction has touched.
pub(crate) struct TxPages {
    pub(crate) pager: Arc<Pager>,
    pub(crate) alloc: Allocator,
    /// Nodes edited by this transaction, by their new page number.
    pub(crate) dirty: PageMap<Node>,
    /// Pages allocated by this transaction (dirty nodes and overflow pages written already).
    pub(crate) new_pages: PageSet,
    /// Committed pages this transaction stopped referencing.
    pub(crate) freed: Vec<PageNo>,
    /// Committed pages `make_dirty` copied: the one reference to each now names the copy, so a
    /// second reference met later is damage (two parents sharing a child), not a second copy.
    copied: PageSet,
    /// The sequence number this transaction commits as (the generation of its pages).
    pub(crate) seq: u64,
    pub(crate) epoch: u32,
    /// A catalog root this transaction already edited directly (rekey re-sealing), used by the
    /// commit instead of the base snapshot's.
    pub(crate) catalog_root: Option<PageRef>,
    /// `insert` and `remove` write dirty leaves early (`spill`) once the dirty set grows past
    /// `spill_at`, which each spill moves to what stays dirty (branches) plus `spill_after`:
    /// a transaction with many dirty branches does not rescan them on every call.
    spill_after: usize,
    spill_at: usize,
}

/// A node's split, for its parent: the separator (user key bytes, wiped if the split is
/// dropped unused, as on an error path), the new right half's page, and whether the split was
/// at an edge of the tree (`split_last` or `split_first`, of a leaf or a branch).
struct Split {
    sep: Vec<u8>,
    right: PageNo,
    at_edge: bool,
}

impl Drop for Split {
    fn drop(&mut self) {
        crate::crypto::wipe::wipe_vec(&mut self.sep);
    }
}

/// Which edges of the tree a node lies on: every node above it took its first child (`first`)
/// or its last (`last`). The root lies on both.
#[derive(Clone, Copy, Default)]
struct Edges {
    first: bool,
    last: bool,
}

impl TxPages {
    pub(crate) fn new(pager: Arc<Pager>, alloc: Allocator, seq: u64, epoch: u32) -> TxPages {
        TxPages {
            pager,
            alloc,
            dirty: PageMap::default(),
            new_pages: PageSet::default(),
            freed: Vec::new(),
            copied: PageSet::default(),
            seq,
            epoch,
            catalog_root: None,
            spill_after: usize::MAX,
            spill_at: usize::MAX,
        }
    }

    /// Bounds the decoded dirty set near `nodes` (`Config::tx_spill_after`).
    pub(crate) fn set_spill_after(&mut self, nodes: usize) {
        self.spill_after = nodes;
        self.spill_at = nodes;
    }

    pub(crate) fn spill_if_large(&mut self) -> Result<()> {
        if self.dirty.len() > self.spill_at {
            self.spill()?;
            self.spill_at = self.dirty.len().saturating_add(self.spill_after);
        }
        Ok(())
    }

    /// Encodes, seals and writes `nodes` (in parallel when many); their tags, in order.
    fn write_nodes(&self, nodes: Vec<(PageNo, Node)>) -> Result<Vec<SealTag>> {
        let seq = self.seq;
        self.pager.write_batch(self.epoch, nodes, &|node: &Node, out: &mut [u8]| node.encode(seq, out))
    }

    pub(crate) fn alloc_page(&mut self) -> PageNo {
        let p = self.alloc.alloc();
        self.pager.raise_page_limit(self.alloc.page_count);
        self.new_pages.insert(p);
        p
    }

    /// Drops a page from the tree being built: a page of this transaction is reusable at once,
    /// a committed page is freed when this transaction commits.
    pub(crate) fn discard(&mut self, page: PageNo) {
        self.dirty.remove(&page);
        if self.new_pages.remove(&page) {
            self.pager.forget(page);
            self.alloc.give_back(page);
        } else {
            self.freed.push(page);
        }
    }

    /// Returns the page number of an editable copy of the node at `r`. A committed page is
    /// copied once per transaction: met again (a leaf two references share, merged with
    /// itself), it is `DoubleReference`, never a second copy of the same entries.
    pub(crate) fn make_dirty(&mut self, r: PageRef) -> Result<PageNo> {
        if self.edited(r)?.is_some() {
            return Ok(r.page);
        }
        if self.copied.contains(&r.page) {
            return Err(Error::corrupt(r.page, CorruptReason::DoubleReference));
        }
        let p = self.pager.read(r, None)?;
        let node = Node::decode(p.payload(), r.page)?;
        let np = self.alloc_page();
        if self.new_pages.remove(&r.page) {
            // A leaf this transaction wrote early (`spill`): nothing committed refers to it.
            self.pager.forget(r.page);
            self.alloc.give_back(r.page);
        } else {
            self.freed.push(r.page);
            self.copied.insert(r.page);
        }
        self.dirty.insert(np, node);
        Ok(np)
    }

    /// The edited node `r` names, if it names one. Only a reference made in this transaction
    /// (`PageRef::dirty`) does: a committed reference to a page being edited means that a page
    /// a committed tree still uses was handed out as free (damage, or a writer's bug), and
    /// following it would join two trees at one page (B-tree review, low).
    pub(crate) fn edited(&self, r: PageRef) -> Result<Option<&Node>> {
        match self.dirty.get(&r.page) {
            Some(_) if !r.is_dirty() => Err(Error::corrupt(r.page, CorruptReason::DoubleReference)),
            found => Ok(found),
        }
    }

    fn node_mut(&mut self, p: PageNo) -> Result<&mut Node> {
        self.dirty.get_mut(&p).ok_or_else(|| Error::ReportableBug(format!("page {p} not dirty")))
    }

    /// The encoded size of the node at `r` (read from the page, not decoded, if not dirty).
    pub(crate) fn node_size(&self, r: PageRef) -> Result<usize> {
        if let Some(n) = self.edited(r)? {
            return Ok(n.size());
        }
        let p = self.pager.read(r, None)?;
        super::raw::RawNode::new(p.payload(), r.page)?.encoded_size()
    }

    /// Reads a value (dirty nodes first).
    pub(crate) fn get(&self, root: &TreeRoot, key: &[u8]) -> Result<Option<Value>> {
        read::get(&self.pager, Some(&self.dirty), root.root, key)
    }

    /// Looks a key up (dirty nodes first) and hands its value as stored to `f`.
    pub(crate) fn get_with<T>(
        &self,
        root: &TreeRoot,
        key: &[u8],
        f: impl FnOnce(super::raw::RawValue<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        read::get_with(&self.pager, Some(&self.dirty), root.root, key, f)
    }

    /// Turns user bytes into a leaf value, writing an overflow chain for a large one.
    fn make_value<'v>(&mut self, key: &[u8], value: &'v [u8]) -> Result<RawValue<'v>> {
        check_entry(key, value)?;
        if key.len() + value.len() <= MAX_INLINE_ENTRY {
            Ok(RawValue::Inline(value))
        } else {
            let first = overflow::write(self, value)?;
            Ok(RawValue::Overflow { first, len: value.len() as u64 })
        }
    }

    /// Resolves a leaf value to bytes.
    pub(crate) fn value_bytes(&self, v: &Value) -> Result<Vec<u8>> {
        match v {
            Value::Inline(b) => Ok(b.clone()),
            Value::Overflow { first, len } => overflow::read(&self.pager, *first, *len),
        }
    }

    /// Frees a value its leaf no longer holds (an overflow value's pages) and returns its bytes
    /// if `want` (empty otherwise): an inline value's own buffer, taken, not copied again.
    fn retire_value(&mut self, mut old: Value, want: bool) -> Result<Vec<u8>> {
        // An unwanted inline value stays in `old`, which wipes it when dropped.
        let bytes = if !want {
            Vec::new()
        } else if let Some(b) = old.take_inline() {
            b
        } else {
            self.value_bytes(&old)?
        };
        if let Err(e) = self.free_value(old.as_raw()) {
            let mut bytes = bytes;
            crate::crypto::wipe::wipe_vec(&mut bytes);
            return Err(e);
        }
        Ok(bytes)
    }

    /// Frees the pages of an overflow value.
    fn free_value(&mut self, v: RawValue<'_>) -> Result<()> {
        if let RawValue::Overflow { first, len } = v {
            for p in overflow::pages(&self.pager, first, len)? {
                self.discard(p);
            }
        }
        Ok(())
    }

    /// Inserts or replaces; returns the previous value's bytes if `want_old`.
    pub(crate) fn insert(
        &mut self,
        root: &mut TreeRoot,
        key: &[u8],
        value: &[u8],
        want_old: bool,
    ) -> Result<Option<Vec<u8>>> {
        let v = self.make_value(key, value)?;
        if root.root.is_none() {
            let p = self.alloc_page();
            let mut leaf = Leaf::default();
            leaf.insert(0, key, v);
            self.dirty.insert(p, Node::Leaf(leaf));
            root.root = PageRef::dirty(p);
            root.count = 1;
            return Ok(None);
        }
        let (p, old, split) = self.insert_rec(root.root, key, v, 0, Edges { first: true, last: true })?;
        root.root = PageRef::dirty(p);
        if let Some(mut split) = split {
            let np = self.alloc_page();
            let (sep, right) = (std::mem::take(&mut split.sep), split.right);
            self.dirty.insert(np, Node::Branch(Branch::new(vec![sep], vec![PageRef::dirty(p), PageRef::dirty(right)])));
            root.root = PageRef::dirty(np);
        }
        self.spill_if_large()?;
        match old {
            None => {
                // Saturating: a forged plaintext catalog can hold any count.
                root.count = root.count.saturating_add(1);
                Ok(None)
            }
            Some(old) => self.retire_value(old, want_old).map(Some),
        }
    }

    /// Inserts below `r`, which lies on the tree's edges that `edges` names. A node that
    /// overflows splits in two; an append past the end of the tree (a new last entry on the
    /// last edge: keys that only grow, such as `generate_id`'s) splits off the new entry alone,
    /// and an insert before its start (keys that only shrink) the mirror way, so that
    /// sequential inserts fill their leaves and branches instead of leaving each half empty (as
    /// SQLite's `balance_quick` does for appends).
    fn insert_rec(
        &mut self,
        r: PageRef,
        key: &[u8],
        value: RawValue<'_>,
        depth: usize,
        edges: Edges,
    ) -> Result<(PageNo, Option<Value>, Option<Split>)> {
        if depth > MAX_DEPTH {
            return Err(Error::corrupt(r.page, CorruptReason::TooDeep));
        }
        let p = self.make_dirty(r)?;
        let (idx, child) = match self.node_mut(p)? {
            Node::Leaf(l) => {
                let (old, at) = match l.search(key) {
                    Ok(i) => (l.replace_value(i, value), None),
                    Err(i) => {
                        l.insert(i, key, value);
                        (None, Some(i))
                    }
                };
                if l.size() <= PAYLOAD_SIZE {
                    return Ok((p, old, None));
                }
                let (right, at_edge) = match at {
                    Some(i) if edges.last && i + 1 == l.len() && l.len() > 1 => (l.split_last(), true),
                    Some(0) if edges.first && l.len() > 1 => (l.split_first(), true),
                    _ => (l.split(), false),
                };
                let sep = shortest_separator(l.key(l.len() - 1), right.key(0));
                let rp = self.alloc_page();
                self.dirty.insert(rp, Node::Leaf(right));
                return Ok((p, old, Some(Split { sep, right: rp, at_edge })));
            }
            Node::Branch(b) => {
                let i = b.child_index(key);
                (i, b.children[i])
            }
        };
        let below = match self.node_mut(p)? {
            Node::Branch(b) => {
                Edges { first: edges.first && idx == 0, last: edges.last && idx + 1 == b.children.len() }
            }
            Node::Leaf(_) => Edges::default(),
        };
        let (cp, old, split) = self.insert_rec(child, key, value, depth + 1, below)?;
        let Node::Branch(b) = self.node_mut(p)? else {
            return Err(Error::ReportableBug("branch became leaf".into()));
        };
        b.children[idx] = PageRef::dirty(cp);
        let Some(mut split) = split else {
            return Ok((p, old, None));
        };
        b.insert_key(idx, std::mem::take(&mut split.sep));
        b.children.insert(idx + 1, PageRef::dirty(split.right));
        if b.size() <= PAYLOAD_SIZE {
            return Ok((p, old, None));
        }
        // A child that split at an edge splits this branch at the same edge.
        let ((sep, half), at_edge) = match (split.at_edge && b.key_count() > 2, below) {
            (true, Edges { last: true, .. }) => (b.split_last(), true),
            (true, Edges { first: true, .. }) => (b.split_first(), true),
            _ => (b.split(), false),
        };
        let rp = self.alloc_page();
        self.dirty.insert(rp, Node::Branch(half));
        Ok((p, old, Some(Split { sep, right: rp, at_edge })))
    }

    /// Removes `key`; returns its value's bytes if it was present (empty if `!want_old`).
    pub(crate) fn remove(&mut self, root: &mut TreeRoot, key: &[u8], want_old: bool) -> Result<Option<Vec<u8>>> {
        // Present at all? (Without this, a miss would copy its whole path for nothing.)
        if root.root.is_none() || key.len() > MAX_KEY_LEN || self.get_with(root, key, |_| Ok(()))?.is_none() {
            return Ok(None);
        }
        let (p, old) = self.remove_rec(root.root, key, 0)?;
        root.root = PageRef::dirty(p);
        self.collapse_root(root)?;
        let Some(old) = old else { return Ok(None) };
        root.count = root.count.saturating_sub(1);
        let bytes = self.retire_value(old, want_old)?;
        self.spill_if_large()?;
        Ok(Some(bytes))
    }

    pub(crate) fn collapse_root(&mut self, root: &mut TreeRoot) -> Result<()> {
        loop {
            let p = root.root.page;
            match self.dirty.get(&p) {
                Some(Node::Leaf(l)) if l.is_empty() => {
                    self.discard(p);
                    root.root = PageRef::NONE;
                    return Ok(());
                }
                Some(Node::Branch(b)) if b.key_count() == 0 => {
                    let child = b.children.first().copied().unwrap_or(PageRef::NONE);
                    self.discard(p);
                    root.root = child;
                    if child.is_none() {
                        return Ok(());
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn remove_rec(&mut self, r: PageRef, key: &[u8], depth: usize) -> Result<(PageNo, Option<Value>)> {
        if depth > MAX_DEPTH {
            return Err(Error::corrupt(r.page, CorruptReason::TooDeep));
        }
        let p = self.make_dirty(r)?;
        let (idx, child) = match self.node_mut(p)? {
            Node::Leaf(l) => {
                let old = match l.search(key) {
                    Ok(i) => l.remove(i),
                    Err(_) => None,
                };
                return Ok((p, old));
            }
            Node::Branch(b) => {
                let i = b.child_index(key);
                (i, b.children[i])
            }
        };
        let (cp, old) = self.remove_rec(child, key, depth + 1)?;
        if let Node::Branch(b) = self.node_mut(p)? {
            b.children[idx] = PageRef::dirty(cp);
        }
        self.rebalance(p, idx)?;
        Ok((p, old))
    }

    /// After a removal under child `idx` of branch `p`: merges that child with a sibling when
    /// it is small and the two fit one page.
    fn rebalance(&mut self, p: PageNo, idx: usize) -> Result<()> {
        let (left_i, child) = {
            let Node::Branch(b) = self.node_mut(p)? else { return Ok(()) };
            if b.children.len() < 2 || idx >= b.children.len() {
                return Ok(());
            }
            (idx.saturating_sub(1), b.children[idx])
        };
        if self.node_size(child)? < UNDERFLOW {
            self.merge_children(p, left_i)?;
        }
        Ok(())
    }

    /// The length of separator `i` of the branch at `r` (dirty or not).
    pub(crate) fn separator_len(&self, r: PageRef, i: usize) -> Result<usize> {
        if let Some(Node::Branch(b)) = self.dirty.get(&r.page) {
            return Ok(b.key(i).map_or(0, <[u8]>::len));
        }
        let p = self.pager.read(r, None)?;
        Ok(super::raw::RawNode::new(p.payload(), r.page)?.branch_key(i)?.len())
    }

    /// Merges children `li` and `li + 1` of the dirty branch `p` into one node if the two fit
    /// one page (into a merged branch the separator comes down). Returns whether it merged.
    pub(crate) fn merge_children(&mut self, p: PageNo, li: usize) -> Result<bool> {
        let (left, right, sep_len) = {
            let Node::Branch(b) = self.node_mut(p)? else { return Ok(false) };
            let (Some(&left), Some(&right)) = (b.children.get(li), b.children.get(li + 1)) else { return Ok(false) };
            (left, right, b.key(li).map_or(0, <[u8]>::len))
        };
        if !fit_one_page(self.node_size(left)?, self.node_size(right)?, sep_len) {
            return Ok(false);
        }
        let lp = self.make_dirty(left)?;
        let rp = self.make_dirty(right)?;
        // Two branches merge around their separator only if it lies strictly between their
        // keys: one equal to a key (damage the check reports, `verify`) would make a branch
        // that no later edit decodes.
        if let (Some(Node::Branch(parent)), Some(Node::Branch(l)), Some(Node::Branch(r))) =
            (self.dirty.get(&p), self.dirty.get(&lp), self.dirty.get(&rp))
            && let Some(sep) = parent.key(li)
        {
            let last = l.key_count().checked_sub(1).and_then(|i| l.key(i));
            if last.is_some_and(|k| k >= sep) || r.key(0).is_some_and(|k| k <= sep) {
                return Err(Error::corrupt(right.page, CorruptReason::KeyOrder));
            }
        }
        let right_node = self.dirty.remove(&rp);
        let mut sep = {
            let Node::Branch(b) = self.node_mut(p)? else { return Ok(false) };
            b.children[li] = PageRef::dirty(lp);
            b.children.remove(li + 1);
            b.remove_key(li).ok_or_else(|| Error::ReportableBug("merge of a branch past its last key".into()))?
        };
        match (self.node_mut(lp)?, right_node) {
            (Node::Leaf(l), Some(Node::Leaf(mut r))) => {
                l.append(&mut r);
                crate::crypto::wipe::wipe_vec(&mut sep);
            }
            (Node::Branch(l), Some(Node::Branch(mut r))) => l.merge(sep, &mut r),
            _ => return Err(Error::corrupt(right.page, CorruptReason::WrongPageKind)),
        }
        if self.node_mut(lp)?.size() > PAYLOAD_SIZE {
            return Err(Error::ReportableBug("merge overflowed a page".into()));
        }
        self.discard(rp);
        Ok(true)
    }
}

/// Whether two neighbouring nodes of `left` and `right` bytes, with a separator of `sep_len`
/// bytes between them, fit one page merged: a merged branch gains the separator (slot, length
/// and key; a merged leaf does not, and the bound is kept for both), and the two lose one header.
pub(crate) fn fit_one_page(left: usize, right: usize, sep_len: usize) -> bool {
    left + right + 4 + sep_len <= PAYLOAD_SIZE + crate::format::page::PAGE_HEADER_SIZE
}

impl TxPages {
    /// Bounds the memory of a large transaction: seals and writes every dirty leaf whose parent
    /// is a dirty branch, points the parent at the written page (tag and this transaction's
    /// generation, as `flush` would) and drops the decoded leaf. Roots stay dirty (their
    /// references live outside). The pages are this transaction's: nothing committed refers to
    /// them, so a crash or an abort leaves them free, and `make_dirty` gives one back at once
    /// when its leaf is edited again.
    fn spill(&mut self) -> Result<()> {
        let mut refs: Vec<(PageNo, usize, PageNo)> = Vec::new();
        for (&bp, node) in self.dirty.iter() {
            if let Node::Branch(b) = node {
                for (i, c) in b.children.iter().enumerate() {
                    if matches!(self.dirty.get(&c.page), Some(Node::Leaf(_))) {
                        refs.push((bp, i, c.page));
                    }
                }
            }
        }
        let mut batch = Vec::with_capacity(refs.len());
        let mut spilled = Vec::with_capacity(refs.len());
        for (bp, i, lp) in refs {
            let Some(node) = self.dirty.remove(&lp) else { continue };
            batch.push((lp, node));
            spilled.push((bp, i, lp));
        }
        let tags = self.write_nodes(batch)?;
        for ((bp, i, lp), tag) in spilled.into_iter().zip(tags) {
            if let Some(Node::Branch(b)) = self.dirty.get_mut(&bp)
                && let Some(c) = b.children.get_mut(i)
                && c.page == lp
            {
                *c = PageRef { page: lp, tag, generation: self.seq };
            }
        }
        Ok(())
    }

    /// Frees every page of a tree (for `clear` and `drop_tree`). A page reached twice (a
    /// damaged tree whose children are shared) is `DoubleReference`, never freed twice.
    pub(crate) fn free_tree(&mut self, root: PageRef) -> Result<()> {
        if root.is_none() {
            return Ok(());
        }
        let mut seen = PageSet::default();
        let mut stack = vec![(root, 0usize)];
        while let Some((r, depth)) = stack.pop() {
            if depth > MAX_DEPTH {
                return Err(Error::corrupt(r.page, CorruptReason::TooDeep));
            }
            if !seen.insert(r.page) {
                return Err(Error::corrupt(r.page, CorruptReason::DoubleReference));
            }
            let node = match self.edited(r)? {
                Some(n) => n.clone(),
                None => Node::decode(self.pager.read(r, None)?.payload(), r.page)?,
            };
            match &node {
                Node::Leaf(l) => {
                    for i in 0..l.len() {
                        if let RawValue::Overflow { first, len } = l.value(i) {
                            for p in overflow::pages(&self.pager, first, len)? {
                                if !seen.insert(p) {
                                    return Err(Error::corrupt(p, CorruptReason::DoubleReference));
                                }
                                self.discard(p);
                            }
                        }
                    }
                }
                Node::Branch(b) => stack.extend(b.children.iter().map(|c| (*c, depth + 1))),
            }
            self.discard(r.page);
        }
        Ok(())
    }

    /// Seals every dirty node reachable from `roots`, children first, and fills in each root's
    /// tag. Nodes at the same height are sealed as one batch (in parallel when large).
    pub(crate) fn flush(&mut self, roots: &mut [&mut PageRef]) -> Result<()> {
        let mut level_of: PageMap<usize> = PageMap::default();
        let mut order: Vec<PageNo> = Vec::new();
        for r in roots.iter() {
            if self.dirty.contains_key(&r.page) {
                self.levels(r.page, &mut level_of, &mut order, 0)?;
            }
        }
        let max_level = level_of.values().copied().max().unwrap_or(0);
        let mut tags: PageMap<SealTag> = PageMap::default();
        for level in 0..=max_level {
            let mut batch = Vec::new();
            for &p in order.iter().filter(|p| level_of.get(p) == Some(&level)) {
                let Some(mut node) = self.dirty.remove(&p) else { continue };
                if let Node::Branch(b) = &mut node {
                    for c in b.children.iter_mut() {
                        if let Some(t) = tags.get(&c.page) {
                            c.tag = *t;
                            c.generation = self.seq;
                        }
                    }
                }
                batch.push((p, node));
            }
            let pages: Vec<PageNo> = batch.iter().map(|(p, _)| *p).collect();
            let t = self.write_nodes(batch)?;
            tags.extend(pages.into_iter().zip(t));
        }
        for r in roots.iter_mut() {
            if let Some(t) = tags.get(&r.page) {
                r.tag = *t;
                r.generation = self.seq;
            }
        }
        Ok(())
    }

    fn levels(&self, p: PageNo, level_of: &mut PageMap<usize>, order: &mut Vec<PageNo>, depth: usize) -> Result<usize> {
        if depth > MAX_DEPTH {
            return Err(Error::corrupt(p, CorruptReason::TooDeep));
        }
        if let Some(l) = level_of.get(&p) {
            return Ok(*l);
        }
        let mut level = 0;
        if let Some(Node::Branch(b)) = self.dirty.get(&p) {
            for c in &b.children {
                if self.dirty.contains_key(&c.page) {
                    level = level.max(1 + self.levels(c.page, level_of, order, depth + 1)?);
                }
            }
        }
        level_of.insert(p, level);
        order.push(p);
        Ok(level)
    }
}

/// Whether `key` and `value` may be stored: `KeyTooLarge`, `ValueTooLarge` if not (checked by
/// every write before it reads or writes anything for them).
pub(crate) fn check_entry(key: &[u8], value: &[u8]) -> Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(Error::KeyTooLarge { len: key.len(), max: MAX_KEY_LEN });
    }
    if value.len() as u64 > crate::MAX_VALUE_LEN {
        return Err(Error::ValueTooLarge { len: value.len() as u64, max: crate::MAX_VALUE_LEN });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btree::raw::RawNode;
    use crate::crypto::seal::PageSealer;
    use crate::format::FIRST_DATA_PAGE;
    use crate::storage::MemoryStorage;

    /// A tree built by `insert` in one transaction, flushed to a pager in memory.
    fn build(keys: &[Vec<u8>], value_len: usize) -> (Arc<Pager>, TreeRoot) {
        let pager =
            Arc::new(Pager::new(Arc::new(MemoryStorage::new()), PageSealer::plaintext(*b"tx-shape-tests!!"), 1 << 24));
        let mut tx = TxPages::new(pager.clone(), Allocator::new(FIRST_DATA_PAGE, &[]), 1, 0);
        let mut root = TreeRoot::default();
        for k in keys {
            tx.insert(&mut root, k, &vec![7u8; value_len], false).unwrap();
        }
        tx.flush(&mut [&mut root.root]).unwrap();
        for k in keys.iter().step_by(7) {
            assert!(read::get(&pager, None, root.root, k).unwrap().is_some());
        }
        (pager, root)
    }

    /// The tree's shape: the payload bytes used by each leaf, and by each branch below the
    /// root, and the length of every separator.
    fn shape(pager: &Pager, root: PageRef) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
        let (mut leaves, mut branches, mut seps, mut todo) = (Vec::new(), Vec::new(), Vec::new(), vec![root]);
        while let Some(r) = todo.pop() {
            let page = pager.read(r, None).unwrap();
            let raw = RawNode::new(page.payload(), r.page).unwrap();
            if raw.is_leaf() {
                leaves.push(raw.encoded_size().unwrap());
            } else {
                if r.page != root.page {
                    branches.push(raw.encoded_size().unwrap());
                }
                seps.extend((0..raw.len()).map(|i| raw.branch_key(i).unwrap().len()));
                todo.extend((0..=raw.len()).map(|i| raw.child(i).unwrap()));
            }
        }
        (leaves, branches, seps)
    }

    /// Leaf splits put the shortest separator in the parent, not the right leaf's first key:
    /// with `atom:{uuid}`-shaped keys (37 bytes, sharing their first five) the separators of a
    /// 20,000-key tree average well under half a key, and every key is still found through them.
    #[test]
    fn leaf_splits_promote_short_separators() {
        let mut rng = crate::fuzzing::Rng(11);
        let keys: Vec<Vec<u8>> = (0..20_000)
            .map(|_| {
                let mut id = [0u8; 16];
                rng.fill(&mut id);
                let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
                format!("atom:{hex}").into_bytes()
            })
            .collect();
        let (pager, root) = build(&keys, 120);
        let (_, _, lens) = shape(&pager, root.root);
        let mean = lens.iter().sum::<usize>() as f64 / lens.len() as f64;
        assert!(lens.len() > 100 && mean < 16.0, "{} separators, {mean:.1} bytes on average", lens.len());
    }

    /// Keys that only grow (appends past the end of the tree) fill their leaves and branches:
    /// each split on the right edge leaves the old node whole and starts a new one, where a
    /// split in the middle would leave every node about half full. Keys in random order still
    /// split in the middle (leaves about 70 % full). Keys that only shrink fill theirs the
    /// mirror way.
    #[test]
    fn appends_fill_their_leaves_and_branches() {
        let fill = |keys: &[Vec<u8>]| {
            let (pager, root) = build(keys, 100);
            let (leaves, branches, _) = shape(&pager, root.root);
            let used = |v: &[usize]| v.iter().sum::<usize>() as f64 / (v.len().max(1) * PAYLOAD_SIZE) as f64;
            (used(&leaves), used(&branches), branches.len())
        };
        let ascending: Vec<Vec<u8>> = (0..60_000u64).map(|i| (i << 20).to_be_bytes().to_vec()).collect();
        let mut rng = crate::fuzzing::Rng(5);
        let mut shuffled = ascending.clone();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let descending: Vec<Vec<u8>> = ascending.iter().rev().cloned().collect();
        let (up, down, random) = (fill(&ascending), fill(&descending), fill(&shuffled));
        assert!(up.0 > 0.95 && up.1 > 0.85 && up.2 > 5, "ascending keys fill leaves and branches {up:.2?}");
        assert!(down.0 > 0.95 && down.1 > 0.85 && down.2 > 5, "descending keys fill leaves and branches {down:.2?}");
        assert!((0.6..0.8).contains(&random.0), "random keys fill leaves {random:.2?}");
    }
}
