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
#[path = "freelist_tests.rs"]
mod tests;
