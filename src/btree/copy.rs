//! Copy-on-write of chosen pages of a tree, for two jobs: a data-key rotation copies every page
//! still sealed under an epoch older than the rotation's first one, so the commit seals it anew
//! under the new key (`db::rekey`); compaction copies every page at or above a page number, so
//! the copy lands in free space lower in the file (`db::compact`, SPEC.md §7.1), after merging
//! neighbouring nodes that fit one page together (`repack`).
//!
//! Invariant: a copied node's parent is made dirty too (and so on up to the root), so the
//! commit records the copy's new tag; a node already dirty is new in this transaction and is
//! left where it is. Overflow chains are copied whole, a page at a time (`overflow::copy`).
//! The walk reads nodes it does not copy in place (`RawNode`), without decoding them.

use super::node::Node;
use super::raw::{RawNode, RawValue};
use super::search::shortest_separator;
use super::tx::{TxPages, fit_one_page};
use super::{MAX_DEPTH, TreeRoot, overflow};
use crate::crypto::seal::trailer;
use crate::error::{CorruptReason, Error, PageNo, Result};
use crate::format::page::{PAYLOAD_SIZE, PageRef, TAG_SIZE};
use crate::pager::pagemap::PageSet;
use std::collections::HashSet;

/// Records a committed branch a walk enters, or a committed overflow chain it reaches (by its
/// first page); one met already is damage. A branch has one parent and a chain one entry, so
/// in a sound tree this never fails. In a damaged one whose branches share their children (a
/// plaintext file edited with its checksums fixed), the walks would otherwise go down every
/// path, exponentially many, where memo and budget need not stop them. Not leaves: a leaf
/// below two entered branches is read at most once per reference to it, and branches and
/// chains are few beside leaves, so the set stays small.
fn first_visit(entered: &mut PageSet, page: PageNo, dirty: bool) -> Result<()> {
    if dirty { Ok(()) } else { crate::pager::pagemap::reach_once(entered, page) }
}

/// Which pages `TxPages::copy_where` copies.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CopyRule {
    /// Pages sealed under an epoch below this one (rekey).
    EpochBelow(u32),
    /// Pages at or above this page number (compaction).
    AtOrAbove(PageNo),
}

impl TxPages {
    fn epoch_of(&self, page: PageNo) -> Result<u32> {
        Ok(trailer(&*self.pager.read_raw(page)?).2)
    }

    fn needs_copy(&self, page: PageNo, rule: CopyRule) -> Result<bool> {
        match rule {
            CopyRule::EpochBelow(below) => Ok(self.epoch_of(page)? < below),
            CopyRule::AtOrAbove(at) => Ok(page >= at),
        }
    }

    /// Copies (at most `budget` more) pages of the tree at `root` that `rule` picks. Returns
    /// whether anything was copied; `budget` is decremented per page.
    /// `memo` under `AtOrAbove` (compaction's) names leaves known to hold no overflow value;
    /// under `EpochBelow` (rekey's) it names committed branches whose whole subtree was found
    /// sealed at or above the epoch, which later batches skip. This walk adds those it finds.
    pub(crate) fn copy_where(
        &mut self,
        root: &mut PageRef,
        rule: CopyRule,
        budget: &mut usize,
        memo: Option<&mut InlineLeaves>,
    ) -> Result<bool> {
        if root.is_none() || *budget == 0 {
            return Ok(false);
        }
        match self.copy_rec(*root, rule, budget, memo, &mut PageSet::default(), 0)? {
            Some(p) => {
                *root = PageRef::dirty(p);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The editable copy of the node at `r`: `me` if it has one already, else a new one
    /// (`make_dirty`), recorded in `me`.
    fn copy_once(&mut self, r: PageRef, me: &mut Option<PageNo>) -> Result<PageNo> {
        match *me {
            Some(p) => Ok(p),
            None => Ok(*me.insert(self.make_dirty(r)?)),
        }
    }

    /// Points child `i` of the dirty branch `p` at the dirty node `child`.
    fn point_child(&mut self, p: PageNo, i: usize, child: PageNo) {
        if let Some(Node::Branch(b)) = self.dirty.get_mut(&p)
            && let Some(c) = b.children.get_mut(i)
        {
            *c = PageRef::dirty(child);
        }
    }

    /// What a node links to, read without decoding it when it is not dirty (a compaction walks
    /// every node of every tree and copies few): its children, or its overflow values (entry
    /// index, first page, length).
    fn links(&self, r: PageRef) -> Result<Links> {
        match self.edited(r)? {
            Some(Node::Branch(b)) => Ok(Links::Children(b.children.clone())),
            Some(Node::Leaf(l)) => Ok(Links::Values(l.overflow_values().collect())),
            None => {
                let page = self.pager.read(r, None)?;
                let raw = RawNode::new(page.payload(), r.page)?;
                if raw.is_leaf() {
                    let mut values = Vec::new();
                    for i in 0..raw.len() {
                        if let (_, RawValue::Overflow { first, len }) = raw.leaf_entry(i)? {
                            values.push((i, first, len));
                        }
                    }
                    Ok(Links::Values(values))
                } else {
                    (0..=raw.len()).map(|i| raw.child(i)).collect::<Result<Vec<_>>>().map(Links::Children)
                }
            }
        }
    }

    /// `links`, noting in `memo` a committed leaf read from its page that holds no overflow
    /// value (not a page of this transaction: one given back may be written again in it).
    fn links_noting(&self, r: PageRef, memo: Option<&mut InlineLeaves>) -> Result<Links> {
        let links = self.links(r)?;
        if let (Links::Values(v), Some(m)) = (&links, memo)
            && v.is_empty()
            && !self.dirty.contains_key(&r.page)
            && !self.new_pages.contains(&r.page)
        {
            m.note(r);
        }
        Ok(links)
    }

    /// Returns the node's new page if it (or anything below it) was copied. Leaves copied on
    /// the way may be written before the commit (`spill_if_large`), which bounds the memory
    /// of a large copy as it bounds a large transaction's. `entered` holds the committed
    /// branches and chains met so far (see `first_visit`).
    fn copy_rec(
        &mut self,
        r: PageRef,
        rule: CopyRule,
        budget: &mut usize,
        mut memo: Option<&mut InlineLeaves>,
        entered: &mut PageSet,
        depth: usize,
    ) -> Result<Option<PageNo>> {
        if depth > MAX_DEPTH {
            return Err(Error::corrupt(r.page, CorruptReason::TooDeep));
        }
        let dirty = self.dirty.contains_key(&r.page);
        // A leaf below the target with no overflow value has nothing to copy, and a committed
        // subtree found all re-sealed stays so (its pages cannot change): known without
        // reading them again.
        if let Some(m) = memo.as_deref()
            && !dirty
            && m.contains(r)
            && match rule {
                CopyRule::AtOrAbove(at) => r.page < at,
                CopyRule::EpochBelow(_) => true,
            }
        {
            return Ok(None);
        }
        let links = match rule {
            CopyRule::AtOrAbove(_) => self.links_noting(r, memo.as_deref_mut())?,
            CopyRule::EpochBelow(_) => self.links(r)?,
        };
        let branch = matches!(links, Links::Children(_));
        if branch {
            first_visit(entered, r.page, dirty)?;
        }
        let mut me = if dirty { Some(r.page) } else { None };
        if me.is_none() && *budget > 0 && self.needs_copy(r.page, rule)? {
            me = Some(self.make_dirty(r)?);
            *budget -= 1;
        }
        match links {
            Links::Children(children) => {
                for (i, listed) in children.iter().enumerate() {
                    if *budget == 0 {
                        break;
                    }
                    // An edited branch's entry as it is now: a spill since the list was read may
                    // have written out the edited leaf it named (B-tree review: not reachable
                    // while every walk starts from a fresh transaction, but kept right).
                    let c = match me.map(|p| self.dirty.get(&p)) {
                        Some(Some(Node::Branch(b))) => b.children.get(i).copied().unwrap_or(*listed),
                        _ => *listed,
                    };
                    if let Some(np) = self.copy_rec(c, rule, budget, memo.as_deref_mut(), entered, depth + 1)? {
                        let p = self.copy_once(r, &mut me)?;
                        self.point_child(p, i, np);
                        self.spill_if_large()?;
                    }
                }
            }
            Links::Values(values) => {
                for (i, first, len) in values {
                    if *budget == 0 {
                        break;
                    }
                    if self.new_pages.contains(&first.page) {
                        continue;
                    }
                    // A committed chain named by a second entry is damage too: it was copied
                    // once per entry, its pages freed once per entry.
                    first_visit(entered, first.page, false)?;
                    // A chain is written in one transaction, under one epoch: its first page
                    // speaks for it. Compaction looks at every page.
                    let old = match rule {
                        CopyRule::EpochBelow(_) if !self.needs_copy(first.page, rule)? => continue,
                        CopyRule::EpochBelow(_) => overflow::refs(&self.pager, first, len)?,
                        // A chain of one page is that page: known without reading it.
                        CopyRule::AtOrAbove(at) if len <= overflow::OVERFLOW_CHUNK as u64 && first.page < at => {
                            continue;
                        }
                        CopyRule::AtOrAbove(at) => {
                            let refs = overflow::refs(&self.pager, first, len)?;
                            if refs.iter().all(|r| r.page < at) {
                                continue;
                            }
                            refs
                        }
                    };
                    *budget = budget.saturating_sub(old.len());
                    let nf = overflow::copy(self, &old, len)?;
                    for r in old {
                        self.discard(r.page);
                    }
                    let p = self.copy_once(r, &mut me)?;
                    if let Some(Node::Leaf(l)) = self.dirty.get_mut(&p) {
                        l.set_overflow_first(i, nf);
                    }
                }
            }
        }
        // Budget left means the walk below went to its end (it stops only at zero); with
        // nothing copied, the whole committed subtree is at or above the epoch. Branches only:
        // one entry then skips a hundred leaves, and the memo stays small.
        if let (CopyRule::EpochBelow(_), Some(m)) = (rule, memo)
            && branch
            && *budget > 0
            && me.is_none()
            && !dirty
            && !self.new_pages.contains(&r.page)
        {
            m.note(r);
        }
        // A node already dirty has a dirty parent holding its number; a copied one is new.
        Ok(if dirty { None } else { me })
    }
}

/// What `TxPages::repack` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RepackTally {
    /// Pairs of neighbouring nodes merged into one.
    pub merged: u64,
    /// Pairs of neighbouring leaves between which entries moved (`shift_left`).
    pub refilled: u64,
}

/// A leaf that compaction fills with its right neighbour's entries is filled to this many bytes
/// at most (encoded, header included): nine tenths of a page, so that the first inserts after a
/// compaction do not each split a full leaf (a B-tree index build leaves the same room in
/// PostgreSQL). Merges still fill a page whole.
pub(crate) const REFILL_TO: usize = PAYLOAD_SIZE * 9 / 10;

impl TxPages {
    /// Merges neighbouring nodes of the tree at `root` that fit one page together, and moves
    /// entries leftwards between neighbouring leaves that do not (filling the left one to
    /// `REFILL_TO`), from the leaves up, within `budget` pages: a tree hollowed out by removals
    /// (leaves merge only below a quarter full) or grown by random inserts (leaves split half
    /// full) takes fewer pages. Returns whether anything changed.
    pub(crate) fn repack(
        &mut self,
        root: &mut TreeRoot,
        budget: &mut usize,
        tally: &mut RepackTally,
        memo: &mut InlineLeaves,
    ) -> Result<bool> {
        if root.root.is_none() || *budget == 0 {
            return Ok(false);
        }
        let Some(p) = self.repack_rec(root.root, budget, tally, memo, &mut PageSet::default(), 0)? else {
            return Ok(false);
        };
        root.root = PageRef::dirty(p);
        self.collapse_root(root)?;
        Ok(true)
    }

    /// Returns the branch's new page if it (or anything below it) changed. `entered`: as in
    /// `copy_rec`.
    fn repack_rec(
        &mut self,
        r: PageRef,
        budget: &mut usize,
        tally: &mut RepackTally,
        memo: &mut InlineLeaves,
        entered: &mut PageSet,
        depth: usize,
    ) -> Result<Option<PageNo>> {
        if depth > MAX_DEPTH {
            return Err(Error::corrupt(r.page, CorruptReason::TooDeep));
        }
        let Links::Children(children) = self.links_noting(r, Some(&mut *memo))? else { return Ok(None) };
        let dirty = self.dirty.contains_key(&r.page);
        first_visit(entered, r.page, dirty)?;
        let mut me = if dirty { Some(r.page) } else { None };
        // Children first: merges below can leave two of them small enough to merge here.
        for (i, c) in children.iter().enumerate() {
            if *budget == 0 {
                break;
            }
            if let Some(np) = self.repack_rec(*c, budget, tally, memo, entered, depth + 1)? {
                let p = self.copy_once(r, &mut me)?;
                self.point_child(p, i, np);
            }
        }
        let mut i = 0;
        while *budget > 0 {
            let pair = match me.and_then(|p| self.dirty.get(&p)) {
                Some(Node::Branch(b)) => b.children.get(i).copied().zip(b.children.get(i + 1).copied()),
                _ => children.get(i).copied().zip(children.get(i + 1).copied()),
            };
            let Some((left, right)) = pair else { break };
            // The tests `merge_children` and `shift_left` make, before the branch is copied: a
            // branch copied and not changed would make every walk a commit.
            let here = me.map_or(r, PageRef::dirty);
            if fit_one_page(self.node_size(left)?, self.node_size(right)?, self.separator_len(here, i)?) {
                let p = self.copy_once(r, &mut me)?;
                if self.merge_children(p, i)? {
                    *budget = budget.saturating_sub(2);
                    tally.merged += 1;
                    self.spill_if_large()?;
                    continue;
                }
            } else if let Some(n) = self.refill_count(here, i, left, right)? {
                let p = self.copy_once(r, &mut me)?;
                self.shift_left(p, i, n)?;
                *budget = budget.saturating_sub(2);
                tally.refilled += 1;
                self.spill_if_large()?;
            }
            i += 1;
        }
        Ok(if dirty { None } else { me })
    }

    /// The encoded size and key length of each entry of the leaf at `r` (dirty or not); `None`
    /// for a branch.
    fn leaf_entry_sizes(&self, r: PageRef) -> Result<Option<Vec<(usize, usize)>>> {
        match self.dirty.get(&r.page) {
            Some(Node::Leaf(l)) => return Ok(Some((0..l.len()).map(|i| (l.entry_size(i), l.key(i).len())).collect())),
            Some(Node::Branch(_)) => return Ok(None),
            None => {}
        }
        let p = self.pager.read(r, None)?;
        let raw = RawNode::new(p.payload(), r.page)?;
        if !raw.is_leaf() {
            return Ok(None);
        }
        (0..raw.len()).map(|i| raw.entry_size(i)).collect::<Result<Vec<_>>>().map(Some)
    }

    /// How many entries `shift_left` would move from leaf `right` to leaf `left`, children `i`
    /// and `i + 1` of the branch at `here`: as many from the front of `right` as keep `left`
    /// within `REFILL_TO`, leaving `right` one at least, and only if the branch still fits a page
    /// with a separator as long as `right`'s new first key (an upper bound: `shift_left` puts in
    /// the shortest separator, never longer). `None` if that is none.
    fn refill_count(&self, here: PageRef, i: usize, left: PageRef, right: PageRef) -> Result<Option<usize>> {
        let Some(sizes) = self.leaf_entry_sizes(right)? else { return Ok(None) };
        let mut size = self.node_size(left)?;
        let mut n = 0;
        while let Some(&(s, _)) = sizes.get(n)
            && n + 1 < sizes.len()
            && size + s <= REFILL_TO
        {
            size += s;
            n += 1;
        }
        let new_sep = match sizes.get(n) {
            Some(&(_, klen)) if n > 0 => klen,
            _ => return Ok(None),
        };
        let branch = self.node_size(here)?.saturating_sub(self.separator_len(here, i)?) + new_sep;
        Ok((branch <= PAYLOAD_SIZE).then_some(n))
    }

    /// Moves the first `n` entries of child `li + 1` of the dirty branch `p` (a leaf) to the
    /// end of child `li` (a leaf); separator `li` becomes the shortest key between the left
    /// leaf's new last key and the right leaf's new first key.
    fn shift_left(&mut self, p: PageNo, li: usize, n: usize) -> Result<()> {
        let (left, right) = match self.dirty.get(&p) {
            Some(Node::Branch(b)) => match (b.children.get(li), b.children.get(li + 1)) {
                (Some(&l), Some(&r)) => (l, r),
                _ => return Err(Error::ReportableBug("refill past a branch's last child".into())),
            },
            _ => return Err(Error::ReportableBug(format!("page {p} not a dirty branch"))),
        };
        let lp = self.make_dirty(left)?;
        let rp = self.make_dirty(right)?;
        let Some(Node::Leaf(mut r)) = self.dirty.remove(&rp) else {
            return Err(Error::corrupt(right.page, CorruptReason::WrongPageKind));
        };
        let sep = if let Some(Node::Leaf(l)) = self.dirty.get_mut(&lp) {
            let mut tail = r.split_front(n);
            l.append(&mut tail);
            (!r.is_empty() && !l.is_empty()).then(|| shortest_separator(l.key(l.len() - 1), r.key(0)))
        } else {
            None
        };
        self.dirty.insert(rp, Node::Leaf(r));
        let Some(mut sep) = sep else {
            return Err(Error::corrupt(left.page, CorruptReason::WrongPageKind));
        };
        if let Some(Node::Branch(b)) = self.dirty.get_mut(&p) {
            b.children.get_mut(li).into_iter().for_each(|c| *c = PageRef::dirty(lp));
            b.children.get_mut(li + 1).into_iter().for_each(|c| *c = PageRef::dirty(rp));
            if let Some(mut old) = b.remove_key(li) {
                crate::crypto::wipe::wipe_vec(&mut old);
            }
            b.insert_key(li, sep);
        } else {
            crate::crypto::wipe::wipe_vec(&mut sep);
        }
        if [lp, rp, p].iter().any(|q| self.dirty.get(q).is_some_and(|n| n.size() > PAYLOAD_SIZE)) {
            return Err(Error::ReportableBug("a refill overflowed a page".into()));
        }
        Ok(())
    }
}

/// Leaves a compaction has read and found holding no overflow value, by their whole reference
/// (page, generation and tag): a committed page of one generation has one content (a page is
/// written once per transaction that commits it), so a walk of a later commit of the same
/// compaction that meets the same reference below its target has nothing to copy there and
/// need not read the page again (rekey keeps one of branches whose subtree is re-sealed whole,
/// `TxPages::copy_where`). At most `MAX_INLINE_LEAVES` entries (a table of 2^19 slots
/// of 33 bytes: about 17 MiB, for a tree of over a gigabyte of leaves); past that, leaves are
/// read as before. A wrong entry could only leave a page unmoved (a leaf's overflow pages not
/// copied), never lose one: the trim gives up only pages the allocator holds free.
#[derive(Default)]
pub(crate) struct InlineLeaves(HashSet<(PageNo, u64, [u8; TAG_SIZE])>);

const MAX_INLINE_LEAVES: usize = 1 << 18;

impl InlineLeaves {
    fn contains(&self, r: PageRef) -> bool {
        self.0.contains(&(r.page, r.generation, r.tag.0))
    }

    fn note(&mut self, r: PageRef) {
        if self.0.len() < MAX_INLINE_LEAVES {
            self.0.insert((r.page, r.generation, r.tag.0));
        }
    }
}

/// What a node links to (`TxPages::links`).
enum Links {
    Children(Vec<PageRef>),
    Values(Vec<(usize, PageRef, u64)>),
}
