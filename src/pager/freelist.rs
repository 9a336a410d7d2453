//! The durable free list: a chain of sealed pages of extents. SPEC.md §7.
//!
//! ```text
//! payload: common header (kind = 4, count = extents in this page, generation)
//!          16  next PageRef (page u64, tag 16, generation u64)  -- NONE (page 0) ends the chain
//!          48  extents: count × (first page u64, length u32)
//! ```
//! The chain is written from its tail to its head so each page can hold its successor's tag;
//! the commit record holds the head's. Each durable commit writes a new front and keeps the
//! previous chain's unchanged tail (`FreeChain`, `write`), so a small commit on a fragmented
//! file rewrites a page or two. Invariants after every `write`: the chain records exactly the
//! allocator's unused pages, each once, none of them a chain page; extents are sorted within a
//! page, not across the chain. The front's own pages are taken from the pages it records
//! (iterating until those and the page count agree).
//!
//! Format version 2: a durable commit whose changes fit the commit record writes no chain page
//! at all. The record carries a delta (`FreeDelta`: pages freed that the chain does not record,
//! pages it records that are in use), kept here beside the chain and folded into the next
//! front that is written. The free pages of a record are `chain − used + freed`
//! (`apply_delta`); after every `write` that set is exactly the allocator's unused pages.

use super::Pager;
use super::alloc::Allocator;
use crate::crypto::seal::PageBuf;
use crate::error::{CorruptReason, Error, PageNo, Result};
use crate::format::commit::FreeDelta;
use crate::format::page::{PAGE_HEADER_SIZE, PAGE_REF_SIZE, PAYLOAD_SIZE, PageKind, PageRef, count, write_header};
use crate::format::{FIRST_DATA_PAGE, PAGE_SIZE, get_u32, get_u64, put_u32, put_u64};

pub const NEXT_OFFSET: usize = PAGE_HEADER_SIZE;
pub const EXTENTS_OFFSET: usize = NEXT_OFFSET + PAGE_REF_SIZE;
pub const EXTENT_SIZE: usize = 12;
pub const EXTENTS_PER_PAGE: usize = (PAYLOAD_SIZE - EXTENTS_OFFSET) / EXTENT_SIZE;

/// Run-length encodes a sorted, deduplicated list of pages.
#[cfg(test)]
pub(crate) fn extents(sorted: &[PageNo]) -> Vec<(PageNo, u32)> {
    coalesce(sorted.iter().map(|&p| (p, 1)))
}

/// Joins adjacent extents of a list sorted by first page and disjoint (up to `u32::MAX` pages
/// each).
fn coalesce(sorted: impl Iterator<Item = (PageNo, u32)>) -> Vec<(PageNo, u32)> {
    let mut out: Vec<(PageNo, u32)> = Vec::new();
    for (start, len) in sorted {
        match out.last_mut() {
            Some((s, l)) if *s + *l as u64 == start && (*l as u64 + len as u64) <= u32::MAX as u64 => *l += len,
            _ => out.push((start, len)),
        }
    }
    out
}

/// The durable free-list chain as this process last wrote it, so that the next durable commit
/// can keep the pages whose extents did not change.
///
/// Which page records a given free page is found through the pages' bounds (a chain page's
/// extents are sorted, so they lie in `[lo, hi)`): `Bounds`, built per lookup batch, then a
/// binary search in the one or few pages whose bounds hold it. An index of every extent was kept
/// here before: a commit that rewrites a head page of a few hundred extents then removed and
/// inserted each of them in a `BTreeMap`, which was a third of a one-record commit's CPU time on
/// a fragmented file.
#[derive(Debug, Default)]
pub(crate) struct FreeChain {
    /// The chain's pages, head first.
    pages: Vec<ChainPage>,
    /// What the last durable record carried beside the chain (format version 2); emptied when
    /// a front is written.
    delta: FreeDelta,
    /// Whether this process wrote the list (so chain and delta record the allocator's unused
    /// pages as of the last write); false for a new chain and one read at open.
    written: bool,
}

#[derive(Debug)]
struct ChainPage {
    page: PageNo,
    /// `None` for a page read at open: the next durable commit rewrites the whole chain.
    known: Option<KnownChainPage>,
}

#[derive(Debug)]
struct KnownChainPage {
    reference: PageRef,
    epoch: u32,
    extents: Vec<(PageNo, u32)>,
}

impl FreeChain {
    /// The chain read at open (its pages only).
    pub(crate) fn read_at_open(pages: Vec<PageNo>) -> FreeChain {
        FreeChain {
            pages: pages.into_iter().map(|page| ChainPage { page, known: None }).collect(),
            delta: FreeDelta::default(),
            written: false,
        }
    }

    /// The delta the last `write` left for its commit record.
    pub(crate) fn delta(&self) -> &FreeDelta {
        &self.delta
    }

    /// The head's reference (`NONE` for an empty chain).
    fn head(&self) -> PageRef {
        self.pages.first().and_then(|c| c.known.as_ref()).map_or(PageRef::NONE, |k| k.reference)
    }

    /// Records the changes since the last write in the delta, if the chain can stay as it is
    /// and the delta still fits `room` pages; returns whether it did. The chain stays only if
    /// this process wrote the list, and every page of it under `epoch` (a chain read at open,
    /// or of an older epoch, is written again), and the allocator tracked every page that became
    /// unused since. Each page that changed (became unused, or was handed out) is placed by its
    /// state now, so the order of its changes does not matter.
    fn record_in_delta(&mut self, alloc: &mut Allocator, epoch: u32, room: usize) -> bool {
        if !self.written || !self.pages.iter().all(|c| c.known.as_ref().is_some_and(|k| k.epoch == epoch)) {
            return false;
        }
        let Some(changed) = alloc.unused_since() else { return false };
        let is_unused = alloc.unused_test();
        let bounds = self.bounds();
        let mut delta = self.delta.clone();
        let mut left = changed.len() + alloc.handed_out_count();
        for p in changed.iter().copied().chain(alloc.handed_out()) {
            let recorded = bounds.recording(self, p).is_some();
            let unused = is_unused(p);
            set_member(&mut delta.freed, p, unused && !recorded);
            set_member(&mut delta.used, p, recorded && !unused);
            // Each page left can take at most one out: past this the delta cannot fit (a large
            // commit), so the front is written without finishing it.
            left -= 1;
            if delta.len() > room + left {
                return false;
            }
        }
        drop(is_unused);
        if delta.len() > room {
            return false;
        }
        self.delta = delta;
        alloc.take_unused_since();
        true
    }

    /// The chain's own pages.
    pub(crate) fn pages(&self) -> impl Iterator<Item = PageNo> + '_ {
        self.pages.iter().map(|c| c.page)
    }

    /// The known pages' bounds, for `Bounds::recording` while the chain is unchanged.
    fn bounds(&self) -> Bounds {
        // A page's extents are sorted: the first starts lowest, the last ends highest.
        let mut by_lo: Vec<(PageNo, PageNo, usize)> = (self.pages.iter().enumerate())
            .filter_map(|(i, c)| {
                let extents = &c.known.as_ref()?.extents;
                let (&(lo, _), &(start, len)) = (extents.first()?, extents.last()?);
                Some((lo, start + len as u64, i))
            })
            .collect();
        by_lo.sort_unstable();
        let max_hi = by_lo
            .iter()
            .scan(0, |m, &(_, hi, _)| {
                *m = hi.max(*m);
                Some(*m)
            })
            .collect();
        Bounds { by_lo, max_hi }
    }

    /// How many extents the known pages record.
    fn recorded_extents(&self) -> usize {
        self.pages.iter().filter_map(|c| c.known.as_ref()).map(|k| k.extents.len()).sum()
    }

    /// How many pages at the head must be rewritten: the pages after them, to the end, were
    /// written by this process under `epoch`, record at least one extent and no page handed
    /// out since (`allocated`). When anything is written anyway (`count > 0`, or `writing`: pages
    /// became unused since), the short pages that follow at the head go too: a front ends in one
    /// partly filled page, written first, and short pages must not pile up between full ones.
    fn rewrite_count(&self, epoch: u32, allocated: impl Iterator<Item = PageNo>, writing: bool) -> usize {
        let mut count = 0;
        for (i, c) in self.pages.iter().enumerate() {
            // An empty page (taken as the front's last page when taking pages shrank the
            // front) is not kept: kept, such pages would pile up.
            if !c.known.as_ref().is_some_and(|k| k.epoch == epoch && !k.extents.is_empty()) {
                count = i + 1;
            }
        }
        let bounds = self.bounds();
        for p in allocated {
            if let Some(i) = bounds.recording(self, p) {
                count = count.max(i + 1);
            }
        }
        if count > 0 || writing {
            while self
                .pages
                .get(count)
                .and_then(|c| c.known.as_ref())
                .is_some_and(|k| k.extents.len() < EXTENTS_PER_PAGE / 4)
            {
                count += 1;
            }
        }
        count
    }

    /// Drops the first `n` pages (to be rewritten) and returns them with their extents.
    fn drop_head(&mut self, n: usize) -> Vec<ChainPage> {
        self.pages.drain(..n.min(self.pages.len())).collect()
    }
}

/// The known chain pages' bounds sorted by their low end, with the running maximum of the high
/// ends: the pages whose bounds hold a page `p` are found by a binary search and a walk back that
/// stops where no earlier page reaches past `p` (chains written whole have disjoint bounds, so
/// it visits one or two; fronts written since overlap a few).
struct Bounds {
    by_lo: Vec<(PageNo, PageNo, usize)>,
    max_hi: Vec<PageNo>,
}

impl Bounds {
    /// The position in `chain` (the chain these bounds were taken of) of the known page whose
    /// extents record `p`, if one does.
    fn recording(&self, chain: &FreeChain, p: PageNo) -> Option<usize> {
        let mut i = self.by_lo.partition_point(|&(lo, _, _)| lo <= p);
        while i > 0 && self.max_hi.get(i - 1).is_some_and(|&m| m > p) {
            i -= 1;
            let (_, hi, pos) = self.by_lo[i];
            let known = chain.pages.get(pos).and_then(|c| c.known.as_ref());
            if p < hi && known.is_some_and(|k| covers(&k.extents, p)) {
                return Some(pos);
            }
        }
        None
    }
}

/// Rewrite the whole chain when the rewritten front would exceed this many pages and a quarter
/// of the chain (the front holds what changed since the chain was last written whole), or when
/// the chain has grown to more than twice this many pages over what the list needs.
const MAX_FRONT_PAGES: usize = 4;

/// Writes the free list for commit `seq` into `chain` and returns its head and the number of
/// pages written. Called once per durable commit, before `Allocator::mark_durable`.
///
/// The chain is a front of newly written pages followed by a tail kept from the last durable
/// commit's chain: the longest tail whose pages this process wrote under the current epoch and
/// whose extents hold no page handed out since (`Allocator::handed_out`, emptied by
/// `mark_durable` right after this write). The pages not kept are released as freed by `seq`;
/// the front records every unused page the tail does not: those of the dropped pages' extents
/// still unused, the pages that became unused since (`Allocator::take_unused_since`) and the
/// dropped chain pages themselves. Its own pages are taken from those. A commit that frees and
/// allocates a few pages of a fragmented file so rewrites a page or two and looks at the pages
/// that changed, not at the whole free space. When the front grows past `MAX_FRONT_PAGES` and a
/// quarter of the chain, or the chain to twice the pages its extents need, the chain is written
/// whole again from `Allocator::all_unused`.
///
/// With `delta_room > 0` (format version 2) the changes go into the chain's delta instead, and
/// no page is written, while they fit `delta_room` pages (`FreeChain::record_in_delta`); the
/// caller puts `chain.delta()` in the commit record. A front, when one is written, takes in the
/// delta (its freed pages as pages that became unused, its used pages as pages handed out) and
/// empties it.
pub(crate) fn write(
    pager: &Pager,
    alloc: &mut Allocator,
    seq: u64,
    epoch: u32,
    chain: &mut FreeChain,
    delta_room: usize,
) -> Result<(PageRef, usize)> {
    if delta_room > 0 && chain.record_in_delta(alloc, epoch, delta_room) {
        return Ok((chain.head(), 0));
    }
    let delta = std::mem::take(&mut chain.delta);
    let became_unused = alloc.take_unused_since().map(|mut v| {
        v.extend_from_slice(&delta.freed);
        v
    });
    let writing = became_unused.as_ref().is_none_or(|v| !v.is_empty()) || !delta.used.is_empty();
    let n = chain.rewrite_count(epoch, alloc.handed_out().chain(delta.used.iter().copied()), writing);
    let dropped = chain.drop_head(n);
    let dropped_pages: Vec<PageNo> = dropped.iter().map(|c| c.page).collect();
    alloc.release(seq, dropped_pages.clone());
    let mut front: Option<Vec<(PageNo, u32)>> = None;
    // Many pages freed since the last write (a large removal, or many commits without a
    // durable one): the list is written whole.
    if let Some(became_unused) =
        became_unused.filter(|_| dropped.iter().all(|c| c.known.is_some()) && !chain.pages.is_empty())
    {
        // Pages the dropped pages recorded stay unused unless handed out since and still in
        // use; pages that became unused since (and the dropped chain pages) count if they
        // still are and no kept page records them. Worked in extents: a dropped page can
        // record thousands of pages, of which a commit changes a few.
        let is_unused = alloc.unused_test();
        let mut in_use: Vec<PageNo> =
            alloc.handed_out().chain(delta.used.iter().copied()).filter(|&p| !is_unused(p)).collect();
        in_use.sort_unstable();
        in_use.dedup();
        let mut recorded: Vec<(PageNo, u32)> =
            dropped.iter().filter_map(|c| c.known.as_ref()).flat_map(|k| k.extents.iter().copied()).collect();
        recorded.sort_unstable();
        let recorded = without(&recorded, &in_use);
        let bounds = chain.bounds();
        let mut singles: Vec<PageNo> = became_unused
            .into_iter()
            .chain(dropped_pages)
            .filter(|&p| bounds.recording(chain, p).is_none() && !covers(&recorded, p) && is_unused(p))
            .collect();
        singles.sort_unstable();
        singles.dedup();
        let rest = union(&recorded, &singles);
        let front_extents = rest.len();
        let estimate = front_extents.div_ceil(EXTENTS_PER_PAGE) + 1;
        // Pages the whole list would need written afresh: kept pages holding few extents each
        // (each front leaves one partly filled page behind) are packed again once they double it.
        let packed = (front_extents + chain.recorded_extents()).div_ceil(EXTENTS_PER_PAGE) + 1;
        let small_front = estimate <= MAX_FRONT_PAGES || estimate * 4 <= estimate + chain.pages.len();
        if small_front && estimate + chain.pages.len() <= 2 * packed + MAX_FRONT_PAGES {
            front = Some(rest);
        }
    }
    let rest = match front {
        Some(rest) => rest,
        None => {
            let all = chain.drop_head(chain.pages.len());
            alloc.release(seq, all.iter().map(|c| c.page).collect());
            alloc.all_unused()
        }
    };
    let (taken, runs) = take_pages(alloc, &rest);
    let mut next = chain.head();
    // The partly filled chunk first: it lands in the head page, which the next write takes in.
    let short = runs.len() % EXTENTS_PER_PAGE;
    let chunks: Vec<&[(PageNo, u32)]> = if short == 0 {
        runs.chunks(EXTENTS_PER_PAGE).collect()
    } else {
        std::iter::once(&runs[..short]).chain(runs[short..].chunks(EXTENTS_PER_PAGE)).collect()
    };
    let mut written: Vec<ChainPage> = Vec::with_capacity(taken.len());
    for (i, &page) in taken.iter().enumerate().rev() {
        let chunk: &[(PageNo, u32)] = chunks.get(i).copied().unwrap_or(&[]);
        let mut buf: Box<PageBuf> = Box::new([0u8; PAGE_SIZE]);
        write_header(&mut buf[..], PageKind::FreeList, chunk.len() as u16, seq);
        next.encode(&mut buf[NEXT_OFFSET..]);
        for (j, (start, len)) in chunk.iter().enumerate() {
            let off = EXTENTS_OFFSET + j * EXTENT_SIZE;
            put_u64(&mut buf[..], off, *start);
            put_u32(&mut buf[..], off + 8, *len);
        }
        let tag = pager.write(page, epoch, buf)?;
        next = PageRef { page, tag, generation: seq };
        let known = KnownChainPage { reference: next, epoch, extents: chunk.to_vec() };
        written.push(ChainPage { page, known: Some(known) });
    }
    let count = written.len();
    written.reverse();
    written.append(&mut chain.pages);
    chain.pages = written;
    chain.written = true;
    Ok((next, count))
}

/// An upper bound on the pages a whole list written now would take (`write` after
/// `Allocator::forget_unused_since`): the unused pages' extents, and one more for each page of
/// `chain`, which that write releases and records (a chain page between pages in use is an
/// extent of its own); taking a page out of an extent splits it at most once.
pub(crate) fn whole_list_pages(alloc: &Allocator, chain: &FreeChain) -> usize {
    (alloc.all_unused().len() + chain.pages.len() + 1).div_ceil(EXTENTS_PER_PAGE) + 1
}

/// Takes pages for the front of the chain from `rest` (sorted extents; so never a page a kept
/// page records), until what is left of `rest` fits them; returns the pages and those extents.
fn take_pages(alloc: &mut Allocator, rest: &[(PageNo, u32)]) -> (Vec<PageNo>, Vec<(PageNo, u32)>) {
    let mut taken: Vec<PageNo> = Vec::new();
    // The lowest pages of `rest` that are free now (not waiting for durability or readers),
    // else new pages at the end of the file.
    let mut candidates = rest.iter().flat_map(|&(start, len)| start..start + len as u64);
    loop {
        let mut from_rest: Vec<PageNo> = taken.iter().copied().filter(|&p| covers(rest, p)).collect();
        from_rest.sort_unstable();
        let left = without(rest, &from_rest);
        if left.len().div_ceil(EXTENTS_PER_PAGE) <= taken.len() {
            return (taken, left);
        }
        while taken.len() < left.len().div_ceil(EXTENTS_PER_PAGE) {
            let p = candidates.by_ref().find(|&p| alloc.take_free(p)).unwrap_or_else(|| alloc.extend());
            taken.push(p);
        }
    }
}

/// Adds `p` to, or removes it from, the ascending `set`.
fn set_member(set: &mut Vec<PageNo>, p: PageNo, member: bool) {
    match (set.binary_search(&p), member) {
        (Err(i), true) => set.insert(i, p),
        (Ok(i), false) => _ = set.remove(i),
        _ => {}
    }
}

/// The free pages of a commit record: those its chain records (`free`, from `read`; `chain`
/// its pages) less the delta's used pages, plus its freed pages. A used page the chain does not
/// record, or a freed page it records or that is one of its pages, is `Corrupt { page: slot,
/// FreeList }` (`slot`: the record's page). Sorted, disjoint extents, adjacent ones joined
/// up to `u32::MAX` pages.
pub(crate) fn apply_delta(
    free: Vec<(PageNo, u32)>,
    chain: &[PageNo],
    delta: &FreeDelta,
    slot: PageNo,
) -> Result<Vec<(PageNo, u32)>> {
    if delta.is_empty() {
        return Ok(free);
    }
    let bad = || Error::corrupt(slot, CorruptReason::FreeList);
    let mut chain: Vec<PageNo> = chain.to_vec();
    chain.sort_unstable();
    if delta.used.iter().any(|&p| !covers(&free, p))
        || delta.freed.iter().any(|&p| covers(&free, p) || chain.binary_search(&p).is_ok())
    {
        return Err(bad());
    }
    let mut used = delta.used.clone();
    used.sort_unstable();
    used.dedup();
    let mut freed = delta.freed.clone();
    freed.sort_unstable();
    freed.dedup();
    Ok(union(&without(&free, &used), &freed))
}

/// True if the sorted, disjoint `extents` hold `p`.
pub(crate) fn covers(extents: &[(PageNo, u32)], p: PageNo) -> bool {
    let i = extents.partition_point(|&(start, _)| start <= p);
    i > 0 && extents.get(i - 1).is_some_and(|&(start, len)| p - start < len as u64)
}

/// The sorted, disjoint `extents` less the sorted `pages`, as extents.
fn without(extents: &[(PageNo, u32)], pages: &[PageNo]) -> Vec<(PageNo, u32)> {
    let mut out = Vec::with_capacity(extents.len() + pages.len());
    for &(start, len) in extents {
        let end = start + len as u64;
        let lo = pages.partition_point(|&p| p < start);
        let hi = pages.partition_point(|&p| p < end);
        let mut at = start;
        for &p in &pages[lo..hi] {
            if p > at {
                out.push((at, (p - at) as u32));
            }
            at = p + 1;
        }
        if end > at {
            out.push((at, (end - at) as u32));
        }
    }
    out
}

/// The sorted, disjoint `extents` with the sorted `pages` (none of them in an extent) added,
/// adjacent extents joined (up to `u32::MAX` pages each).
fn union(extents: &[(PageNo, u32)], pages: &[PageNo]) -> Vec<(PageNo, u32)> {
    let mut all: Vec<(PageNo, u32)> = extents.iter().copied().chain(pages.iter().map(|&p| (p, 1))).collect();
    all.sort_unstable();
    coalesce(all.into_iter())
}

/// Reads the free list from `head`: the free pages, as sorted, disjoint extents with adjacent
/// ones joined up to `u32::MAX` pages, and the chain's own pages. Every check that a damaged file could fail is a
/// `Corrupt` error. Memory is bounded by the chain's pages read (each authenticated), not by
/// how many pages its extents claim.
pub(crate) fn read(pager: &Pager, head: PageRef, page_count: u64) -> Result<(Vec<(PageNo, u32)>, Vec<PageNo>)> {
    let mut free: Vec<(PageNo, u32)> = Vec::new();
    let mut total = 0u64;
    let mut chain = Vec::new();
    // A chain page met again (a forged plaintext chain that loops) ends the read: the loop's
    // only bound was the page count, billions on a sparse file.
    let mut reached = crate::pager::pagemap::PageSet::default();
    let mut at = head;
    while !at.is_none() {
        if chain.len() as u64 >= page_count {
            return Err(Error::corrupt(at.page, CorruptReason::FreeList));
        }
        crate::pager::pagemap::reach_once(&mut reached, at.page)?;
        let p = pager.read(at, Some(PageKind::FreeList))?;
        let payload = p.payload();
        let n = count(payload) as usize;
        if n > EXTENTS_PER_PAGE {
            return Err(Error::corrupt(at.page, CorruptReason::BadLayout));
        }
        for j in 0..n {
            let off = EXTENTS_OFFSET + j * EXTENT_SIZE;
            let bad = || Error::corrupt(at.page, CorruptReason::FreeList);
            let start = get_u64(payload, off).ok_or_else(bad)?;
            let len = get_u32(payload, off + 8).ok_or_else(bad)?;
            let end = start.checked_add(u64::from(len)).ok_or_else(bad)?;
            total += u64::from(len);
            if start < FIRST_DATA_PAGE || end > page_count || len == 0 || total > page_count {
                return Err(bad());
            }
            free.push((start, len));
        }
        chain.push(at.page);
        at = PageRef::decode(payload, NEXT_OFFSET).ok_or_else(|| Error::corrupt(at.page, CorruptReason::BadLayout))?;
    }
    // No page recorded twice (extents overlap), and none of the chain's own pages recorded
    // free: either would hand a page in use to the allocator. Sorted by first page, the lowest
    // page recorded twice is the first extent to start below the end of one before it.
    free.sort_unstable();
    let mut reach = 0u64;
    for &(start, len) in &free {
        if start < reach {
            return Err(Error::corrupt(start, CorruptReason::DoubleReference));
        }
        reach = start + u64::from(len);
    }
    if let Some(&c) = chain.iter().find(|&&c| covers(&free, c)) {
        return Err(Error::corrupt(c, CorruptReason::FreeList));
    }
    Ok((coalesce(free.into_iter()), chain))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::BTreeSet;
    use std::sync::Arc;

    /// A chain page (sealed, so it authenticates) that records one of the chain's own pages, or
    /// a page twice, is refused: either would hand a page in use to the allocator.
    #[test]
    fn a_chain_that_records_its_own_page_or_a_page_twice_is_refused() {
        let pager = Pager::new(Arc::new(MemoryStorage::new()), PageSealer::plaintext(*b"freelist-forged!"), 1 << 20);
        pager.set_page_limit(100);
        let chain_page = |page: PageNo, extents: &[(u64, u32)]| {
            let mut buf = Box::new([0u8; crate::format::PAGE_SIZE]);
            write_header(&mut buf[..], PageKind::FreeList, extents.len() as u16, 1);
            PageRef::NONE.encode(&mut buf[NEXT_OFFSET..]);
            for (j, &(start, len)) in extents.iter().enumerate() {
                crate::format::put_u64(&mut buf[..], EXTENTS_OFFSET + j * EXTENT_SIZE, start);
                crate::format::put_u32(&mut buf[..], EXTENTS_OFFSET + j * EXTENT_SIZE + 8, len);
            }
            let tag = pager.write(page, 0, buf).expect("write");
            PageRef { page, tag, generation: 1 }
        };
        let reason = |r: Result<(Vec<(PageNo, u32)>, Vec<PageNo>)>| match r {
            Err(Error::Corrupt { page, reason }) => (page, reason),
            other => panic!("{other:?}"),
        };
        let (free, chain) = read(&pager, chain_page(10, &[(20, 3), (5, 2)]), 100).unwrap();
        assert_eq!((free, chain), (vec![(5, 2), (20, 3)], vec![10]));
        // Adjacent extents come back joined; a huge one is read as one (no page listed).
        let (free, _) = read(&pager, chain_page(13, &[(30, 4), (20, 10)]), 100).unwrap();
        assert_eq!(free, vec![(20, 14)]);
        pager.set_page_limit(1 << 40);
        let (free, _) = read(&pager, chain_page(14, &[(100, u32::MAX)]), 1 << 40).unwrap();
        assert_eq!(free, vec![(100, u32::MAX)]);
        pager.set_page_limit(100);
        assert_eq!(reason(read(&pager, chain_page(11, &[(9, 4)]), 100)), (11, CorruptReason::FreeList));
        assert_eq!(
            reason(read(&pager, chain_page(12, &[(20, 5), (23, 3)]), 100)),
            (23, CorruptReason::DoubleReference)
        );
    }

    use crate::crypto::seal::PageSealer;
    use crate::format::commit::CommitRecord;
    use crate::storage::MemoryStorage;

    /// A pager in memory and an allocator with a fragmented start: every other page of
    /// 4..3004 free (1,500 lone pages), so the list spans several pages.
    fn fragmented() -> (Pager, Allocator) {
        let pager = Pager::new(Arc::new(MemoryStorage::new()), PageSealer::plaintext(*b"freelist-model!!"), 1 << 20);
        let page_count = FIRST_DATA_PAGE + 3000;
        let free: Vec<PageNo> = (FIRST_DATA_PAGE..page_count).filter(|p| p % 2 == 0).collect();
        (pager, Allocator::new(page_count, &extents(&free)))
    }

    /// The engine's use of the allocator and the free list, driven by `ops`: transactions that
    /// allocate pages and commit or abort, commits that free live pages, readers that hold
    /// freed pages back, epoch changes, durable commits, and compaction's trim of the free pages
    /// that end the file before a durable commit. After every durable commit the
    /// chain read back from disk, with the delta its record would carry (up to `room` pages),
    /// must record exactly the allocator's unused pages, its pages must be those `FreeChain`
    /// names, and live, unused and chain pages must partition the file.
    fn run_model(ops: &[(u8, u16)], room: usize) {
        let (pager, mut alloc) = fragmented();
        let mut live: BTreeSet<PageNo> = (FIRST_DATA_PAGE..alloc.page_count).filter(|p| p % 2 == 1).collect();
        let mut chain = FreeChain::default();
        let (mut seq, mut durable, mut oldest, mut epoch) = (1u64, 0u64, 1u64, 0u32);
        let mut pick = 0usize;
        for &(op, arg) in ops {
            let arg = arg as usize;
            match op % 7 {
                0 | 1 => {
                    // A transaction allocating pages; every fourth one aborts.
                    alloc.promote(durable, oldest);
                    let pages: Vec<PageNo> = (0..arg % 40 + 1).map(|_| alloc.alloc()).collect();
                    if arg.is_multiple_of(4) {
                        pages.into_iter().for_each(|p| alloc.give_back(p));
                    } else {
                        seq += 1;
                        live.extend(pages);
                    }
                }
                2 => {
                    // A commit freeing live pages.
                    seq += 1;
                    let mut freed = Vec::new();
                    for _ in 0..arg % 50 + 1 {
                        pick = pick.wrapping_mul(31).wrapping_add(arg + 7);
                        // From 900 on: the highest live page, so that runs of frees join up.
                        let at = if arg >= 900 { live.len().saturating_sub(1) } else { pick % live.len().max(1) };
                        if let Some(&p) = live.iter().nth(at) {
                            live.remove(&p);
                            freed.push(p);
                        }
                    }
                    alloc.release(seq, freed);
                }
                3 => oldest = if arg.is_multiple_of(3) { oldest } else { seq },
                4 if arg.is_multiple_of(16) => epoch += 1,
                _ => {
                    if op % 7 == 6 {
                        // Compaction's trim (`Db::compact`): the free pages that end the file
                        // are given up, and the list is written whole below the new end.
                        alloc.promote(durable, oldest);
                        alloc.trim_free_tail(whole_list_pages(&alloc, &chain));
                        alloc.forget_unused_since();
                        assert!(live.iter().all(|&p| p < alloc.page_count), "a live page was cut");
                    }
                    let (head, _) = write(&pager, &mut alloc, seq, epoch, &mut chain, room).expect("write");
                    alloc.mark_durable();
                    durable = seq;
                    pager.raise_page_limit(alloc.page_count);
                    assert!(chain.delta().len() <= room, "the delta fits its room");
                    // The delta as the record carries it: encoded and decoded with the record's
                    // page count (a page past it would make the record fail to decode).
                    let rec = CommitRecord {
                        seq,
                        page_count: alloc.page_count,
                        free_delta: chain.delta().clone(),
                        ..CommitRecord::default()
                    };
                    let mut payload = vec![0u8; PAYLOAD_SIZE];
                    rec.encode(&mut payload);
                    let rec = CommitRecord::decode(&payload, 2, crate::format::FORMAT_VERSION).expect("record decodes");
                    let (free, pages) = read(&pager, head, alloc.page_count).expect("read back");
                    let free = apply_delta(free, &pages, &rec.free_delta, 2).expect("the delta applies");
                    let pages_of = |e: Vec<(PageNo, u32)>| -> BTreeSet<PageNo> {
                        e.into_iter().flat_map(|(s, n)| s..s + u64::from(n)).collect()
                    };
                    let free = pages_of(free);
                    let unused = pages_of(alloc.all_unused());
                    assert_eq!(free, unused, "the list records the unused pages");
                    // `Metrics::free_pages` counts them without building the list: `free` and
                    // the queued pages must never overlap.
                    assert_eq!(alloc.unused_count(), free.len() as u64, "the counted unused pages");
                    assert_eq!(pages, chain.pages().collect::<Vec<_>>(), "the chain is the one kept");
                    let chain_pages: BTreeSet<PageNo> = pages.iter().copied().collect();
                    assert_eq!(chain_pages.len(), pages.len(), "no chain page twice");
                    assert!(
                        chain_pages.is_disjoint(&free) && chain_pages.is_disjoint(&live) && free.is_disjoint(&live)
                    );
                    assert_eq!(live.len() + free.len() + pages.len(), (alloc.page_count - FIRST_DATA_PAGE) as usize);
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        #[test]
        fn chain_records_exactly_the_unused_pages(
            ops in proptest::collection::vec((0u8..7, 0u16..1000), 1..120),
            room in proptest::prop_oneof![proptest::strategy::Just(0usize), 1usize..64, proptest::strategy::Just(crate::format::commit::MAX_DELTA_PAGES)],
        ) {
            run_model(&ops, room);
        }
    }

    #[test]
    fn many_frees_between_durable_writes() {
        // More pages freed between two durable writes than the allocator tracks one by one
        // (`UNUSED_SINCE_MAX`): the list is written whole, and still exactly.
        let mut ops: Vec<(u8, u16)> = vec![(5, 1)];
        ops.extend([(1u8, 39u16); 150]);
        ops.extend([(5, 1), (0, 39), (5, 1)]);
        ops.extend([(2u8, 949u16); 120]);
        ops.extend([(5, 1), (1, 3), (2, 2), (5, 1), (0, 5), (5, 1)]);
        for room in [0, 40, crate::format::commit::MAX_DELTA_PAGES] {
            run_model(&ops, room);
        }
    }

    /// Compaction's trim keeps `whole_list_pages` free pages for the whole list it writes next,
    /// and gives up the rest of the free pages that end the file. That write releases the old
    /// chain and records its pages, each an extent of its own when it lies between pages in
    /// use: counted too, the list fits the pages kept. Counting only the unused pages' extents,
    /// a chain of more than `EXTENTS_PER_PAGE` such pages (here 337, recording 112,556 pages a
    /// reader holds) took pages past the trimmed end, lengthening the file the trim shortened.
    #[test]
    fn the_whole_list_after_a_trim_fits_the_free_pages_the_trim_kept() {
        let dir = tempfile::tempdir().expect("temporary directory");
        // A sparse file: only the chain's pages are written.
        let storage = crate::storage::FileStorage::open(&dir.path().join("trim"), true).expect("file");
        let pager = Pager::new(Arc::new(storage), PageSealer::plaintext(*b"freelist-trim!!!"), 1 << 20);
        let per_page = EXTENTS_PER_PAGE as u64;
        // `held` lone pages a reader holds, a number that with the tail's extent fills whole
        // chain pages; `first_chain` lone free pages at the start, which the first list takes
        // for its chain; then a free tail.
        let m = per_page + 3;
        let held = per_page * m - 2;
        // (The first write takes as many pages as the whole list, its own pages included, would
        // need: the fixed point.)
        let mut first_chain = 0;
        while first_chain < (held + 1 + first_chain).div_ceil(per_page) {
            first_chain += 1;
        }
        let held_from = FIRST_DATA_PAGE + 2 * first_chain;
        let tail_from = held_from + 2 * held;
        let page_count = tail_from + 1000;
        let lone_free: Vec<(PageNo, u32)> = (0..first_chain).map(|i| (FIRST_DATA_PAGE + 2 * i, 1)).collect();
        let mut alloc = Allocator::new(page_count, &[lone_free.clone(), vec![(tail_from, 1000)]].concat());
        pager.set_page_limit(page_count);
        alloc.release(2, (0..held).map(|i| held_from + 2 * i).collect());
        alloc.promote(1, 1);
        let mut chain = FreeChain::default();
        write(&pager, &mut alloc, 2, 0, &mut chain, 0).expect("first write");
        alloc.mark_durable();
        let chain_pages: Vec<PageNo> = chain.pages().collect();
        assert_eq!(chain_pages.len() as u64, first_chain);
        assert!(chain_pages.iter().all(|p| lone_free.contains(&(*p, 1))), "the chain is on the lone pages");
        // The trim, as `Db::compact` makes it.
        alloc.promote(2, 1);
        let need = whole_list_pages(&alloc, &chain);
        assert!(alloc.free_len() >= need);
        assert!(alloc.trim_free_tail(need) > 0);
        let trimmed = alloc.page_count;
        alloc.forget_unused_since();
        write(&pager, &mut alloc, 3, 0, &mut chain, 0).expect("whole list");
        assert_eq!(alloc.page_count, trimmed, "the list took a page past the trimmed end");
        let (free, pages) = read(&pager, chain.head(), alloc.page_count).expect("read back");
        assert_eq!(free, alloc.all_unused());
        assert_eq!(pages, chain.pages().collect::<Vec<_>>());
    }

    #[test]
    fn trim_after_freeing_the_end() {
        // The highest live pages freed and made durable, the list written whole (its last page
        // records them), a commit that changes only its head, then a trim: the list must lose
        // the extents past the new end, which the tail it would otherwise keep records.
        let ops = [(2, 949), (2, 949), (3, 1), (5, 1), (1, 3), (3, 1), (5, 1), (6, 0), (0, 5), (3, 1), (5, 1), (6, 0)];
        for room in [0, 40, crate::format::commit::MAX_DELTA_PAGES] {
            run_model(&ops, room);
        }
    }

    #[test]
    fn steady_small_commits_rewrite_few_pages() {
        // Many one-record-like commits on a fragmented file: each durable commit rewrites a
        // page or two, not the whole list.
        let ops: Vec<(u8, u16)> =
            (0..600u16).map(|i| ([1u8, 2, 3, 5][i as usize % 4], i.wrapping_mul(7) % 5 + 1)).collect();
        for room in [0, 40, crate::format::commit::MAX_DELTA_PAGES] {
            run_model(&ops, room);
        }
        // Without a delta (format version 1) a page or two per commit; with the record's room
        // for one (version 2) a front only every few dozen commits.
        for (room, most) in [(0, 198 * 3), (crate::format::commit::MAX_DELTA_PAGES, 20)] {
            let (pager, mut alloc) = fragmented();
            let mut chain = FreeChain::default();
            let (_, first) = write(&pager, &mut alloc, 1, 0, &mut chain, room).expect("write");
            alloc.mark_durable();
            assert!(first >= 4, "1,500 lone pages take several list pages ({first})");
            let mut total = 0;
            for seq in 2..200u64 {
                alloc.promote(seq - 1, seq);
                let got: Vec<PageNo> = (0..4).map(|_| alloc.alloc()).collect();
                alloc.release(seq, got[..2].to_vec());
                let (_, written) = write(&pager, &mut alloc, seq, 0, &mut chain, room).expect("write");
                alloc.mark_durable();
                total += written;
            }
            assert!(total <= most, "{total} list pages written for 198 small commits with room {room}");
        }
    }

    #[test]
    fn a_delta_that_does_not_match_its_chain_is_corrupt() {
        let chain_free = vec![(10, 3), (20, 1)];
        let chain_pages = [7];
        let d = |freed: Vec<PageNo>, used: Vec<PageNo>| FreeDelta { freed, used };
        assert_eq!(
            apply_delta(chain_free.clone(), &chain_pages, &d(vec![5, 30], vec![11]), 2).unwrap(),
            vec![(5, 1), (10, 1), (12, 1), (20, 1), (30, 1)]
        );
        for bad in [d(vec![], vec![13]), d(vec![12], vec![]), d(vec![7], vec![])] {
            let e = apply_delta(chain_free.clone(), &chain_pages, &bad, 3).unwrap_err();
            assert!(matches!(e, Error::Corrupt { page: 3, reason: CorruptReason::FreeList }), "{bad:?}: {e:?}");
        }
    }

    #[test]
    fn extent_arithmetic() {
        let e = vec![(4, 3), (10, 5)];
        assert!(covers(&e, 6) && covers(&e, 14) && !covers(&e, 7) && !covers(&e, 3) && !covers(&e, 15));
        assert_eq!(without(&e, &[4, 12, 14]), vec![(5, 2), (10, 2), (13, 1)]);
        assert_eq!(without(&e, &[]), e);
        assert_eq!(union(&e, &[2, 7, 8, 15]), vec![(2, 1), (4, 5), (10, 6)]);
    }

    #[test]
    fn extents_merge_runs() {
        assert_eq!(extents(&[4, 5, 6, 9, 11, 12]), vec![(4, 3), (9, 1), (11, 2)]);
        assert!(extents(&[]).is_empty());
    }
}
