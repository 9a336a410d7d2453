//! Page allocation. SPEC.md §7 (free space).
//!
//! Invariant (after LMDB): every page in `FIRST_DATA_PAGE..page_count` is, at every durable
//! commit, exactly one of: reachable from the commit record (tree, overflow or free-list page),
//! or recorded in its free list. In memory a freed page goes through `pending` first: pages
//! freed by commit K are handed out again only once K is durable *and* no live snapshot is
//! older than K (a snapshot at K-1 may still read them).

use std::collections::{HashSet, VecDeque};

use super::free_set::FreeSet;

use crate::error::PageNo;
use crate::format::FIRST_DATA_PAGE;

/// See `Allocator::unused_since`.
const UNUSED_SINCE_MAX: usize = 4096;

#[derive(Debug)]
pub(crate) struct Allocator {
    free: FreeSet,
    /// (commit sequence that freed them, pages), ascending by sequence.
    pending: VecDeque<(u64, Vec<PageNo>)>,
    /// Pages handed out since the last durable commit: the durable state does not reference
    /// them, so once freed they wait only for readers, not for durability.
    fresh: HashSet<PageNo>,
    /// Freed fresh pages: (commit that freed them, pages).
    pending_fresh: VecDeque<(u64, Vec<PageNo>)>,
    /// Every page of `pending` and `pending_fresh`, for `unused_test` (kept as they change, so
    /// that a durable commit does not rebuild it: a reader held across many commits makes the
    /// queues long).
    queued: HashSet<PageNo>,
    /// Pages released or given back since the free list was last written (with repeats, and
    /// possibly handed out again since): what the free-list writer looks at besides its own
    /// chain's extents. `None` once more than `UNUSED_SINCE_MAX` were recorded (many commits
    /// without a durable one, or a large one): the writer then writes the whole list.
    unused_since: Option<Vec<PageNo>>,
    /// High-water mark: pages at or above are unused and not recorded anywhere.
    pub(crate) page_count: u64,
}

impl Default for Allocator {
    fn default() -> Allocator {
        Allocator {
            free: FreeSet::default(),
            pending: VecDeque::new(),
            fresh: HashSet::new(),
            pending_fresh: VecDeque::new(),
            queued: HashSet::new(),
            unused_since: Some(Vec::new()),
            page_count: 0,
        }
    }
}

/// The most pages in use at or above a target that `free_below` free pages take, with the
/// spare room `compaction_target` keeps: the largest `x` with `x + x / 8 + 16 <= free_below`.
fn most_in_use_fitting(free_below: u64) -> u64 {
    let room = |x: u64| x + x / 8 + 16;
    if free_below < 16 {
        return 0; // (none fit; callers stop either way)
    }
    let mut x = (free_below - 16) / 9 * 8;
    while room(x + 1) <= free_below {
        x += 1;
    }
    x
}

impl Allocator {
    /// An allocator whose free pages are `free` (extents: first page, length).
    pub(crate) fn new(page_count: u64, free: &[(PageNo, u32)]) -> Allocator {
        let free = FreeSet::from_extents(free.iter().map(|&(s, n)| (s, u64::from(n))));
        Allocator { free, page_count, ..Allocator::default() }
    }

    fn note_unused(&mut self, pages: &[PageNo]) {
        if let Some(v) = &mut self.unused_since {
            if v.len() + pages.len() > UNUSED_SINCE_MAX {
                self.unused_since = None;
            } else {
                v.extend_from_slice(pages);
            }
        }
    }

    /// A page no durable or readable state references. Lowest free page first, so the file
    /// stays compact; otherwise the next page past the high-water mark.
    pub(crate) fn alloc(&mut self) -> PageNo {
        match self.free.pop_first() {
            Some(p) => {
                self.fresh.insert(p);
                p
            }
            None => self.extend(),
        }
    }

    /// Hands out `page` if it is free now (the free-list writer picks its own pages).
    pub(crate) fn take_free(&mut self, page: PageNo) -> bool {
        let taken = self.free.remove(page);
        if taken {
            self.fresh.insert(page);
        }
        taken
    }

    /// Hands out a new page past the high-water mark.
    pub(crate) fn extend(&mut self) -> PageNo {
        self.page_count += 1;
        self.fresh.insert(self.page_count - 1);
        self.page_count - 1
    }

    /// Pages handed out since the last durable record was written, which is also since the
    /// free list was last written (`freelist::write` runs just before `mark_durable`).
    pub(crate) fn handed_out(&self) -> impl Iterator<Item = PageNo> + '_ {
        self.fresh.iter().copied()
    }

    /// How many pages `handed_out` yields.
    pub(crate) fn handed_out_count(&self) -> usize {
        self.fresh.len()
    }

    /// The pages released or given back since the last `take_unused_since`, `None` if too many
    /// to track (see `unused_since`).
    pub(crate) fn unused_since(&self) -> Option<&[PageNo]> {
        self.unused_since.as_deref()
    }

    /// The pages released or given back since the last call, `None` if too many to track
    /// (see `unused_since`).
    pub(crate) fn take_unused_since(&mut self) -> Option<Vec<PageNo>> {
        self.unused_since.replace(Vec::new())
    }

    /// A test of whether a page is unused now (free, or waiting in a queue), for many pages.
    pub(crate) fn unused_test(&self) -> impl Fn(PageNo) -> bool + '_ {
        move |page| self.free.contains(page) || self.queued.contains(&page)
    }

    /// The newest commit became durable: nothing allocated so far is fresh any more.
    pub(crate) fn mark_durable(&mut self) {
        self.fresh.clear();
        for (seq, pages) in self.pending_fresh.drain(..) {
            match self.pending.iter_mut().find(|(s, _)| *s == seq) {
                Some((_, v)) => v.extend(pages),
                None => self.pending.push_back((seq, pages)),
            }
        }
        self.pending.make_contiguous().sort_by_key(|(s, _)| *s);
    }

    /// Returns a page that no committed state ever referenced (allocated and dropped within one
    /// transaction, or by an aborted one): reusable at once.
    pub(crate) fn give_back(&mut self, page: PageNo) {
        self.note_unused(&[page]);
        self.free.insert(page);
    }

    /// Records pages freed by commit `seq`.
    ///
    /// A page that is not one this file could free (the header's, or past the high-water
    /// mark), or that is free or queued already, is left out: only a damaged or forged file
    /// (two references to one page) frees a page twice, and the second release would have
    /// the page handed out again while the first reuse still holds it.
    pub(crate) fn release(&mut self, seq: u64, mut pages: Vec<PageNo>) {
        let before = pages.len();
        pages.retain(|&p| {
            (FIRST_DATA_PAGE..self.page_count).contains(&p) && !self.free.contains(p) && self.queued.insert(p)
        });
        if pages.len() != before {
            tracing::error!(
                target: "foldvault::audit",
                left_out = before - pages.len(),
                "a commit freed pages that were free already, or that no tree can hold: the file references a page twice"
            );
        }
        self.note_unused(&pages);
        let (fresh, old): (Vec<PageNo>, Vec<PageNo>) = pages.into_iter().partition(|p| self.fresh.contains(p));
        for (list, pages) in [(&mut self.pending_fresh, fresh), (&mut self.pending, old)] {
            if pages.is_empty() {
                continue;
            }
            match list.back_mut() {
                Some((s, v)) if *s == seq => v.extend(pages),
                _ => list.push_back((seq, pages)),
            }
        }
    }

    /// Moves to `free` the pages freed by commits `<= min(durable_seq, oldest_live_seq)`.
    pub(crate) fn promote(&mut self, durable_seq: u64, oldest_live_seq: u64) {
        while let Some((s, _)) = self.pending_fresh.front() {
            if *s > oldest_live_seq {
                break;
            }
            if let Some((_, pages)) = self.pending_fresh.pop_front() {
                for p in pages {
                    self.queued.remove(&p);
                    self.free.insert(p);
                }
            }
        }
        let limit = durable_seq.min(oldest_live_seq);
        while let Some((s, _)) = self.pending.front() {
            if *s > limit {
                break;
            }
            if let Some((_, pages)) = self.pending.pop_front() {
                for p in pages {
                    self.queued.remove(&p);
                    self.free.insert(p);
                }
            }
        }
    }

    /// Makes the next free-list write record the whole list (compaction: so that no chain page
    /// outlives a truncation, and no extent names a page past the new end).
    pub(crate) fn forget_unused_since(&mut self) {
        self.unused_since = None;
    }

    /// The lowest page `t` such that the pages in use at or above `t` (tree, overflow and chain
    /// pages) fit, with room to spare, in the pages free now below `t`: what compaction moves
    /// pages under. The spare room covers the branches a move copies on its way to the root.
    /// `page_count` when nothing can be moved.
    pub(crate) fn compaction_target(&self) -> PageNo {
        let mut queued: Vec<PageNo> = self.queued.iter().copied().collect();
        queued.sort_unstable();
        let free_total = self.free.len();
        let mut free_ext: Vec<(PageNo, PageNo)> = self.free.extents().collect();
        // Walk `t` down from the end: pages at or above `t`, of them unused, and free below.
        // A run of free pages is passed in one step (the room needed is the same all along
        // it), and so is a run of pages in use (as far as the room allows), so the walk costs
        // the free extents and queued pages, not the pages.
        let (mut t, mut unused_above, mut free_above) = (self.page_count, 0u64, 0u64);
        let mut best = self.page_count;
        let mut q = queued.len();
        while t > FIRST_DATA_PAGE {
            while free_ext.last().is_some_and(|&(s, _)| s >= t) {
                free_ext.pop();
            }
            let in_use_above = (self.page_count - t) - unused_above;
            let need = in_use_above + in_use_above / 8 + 16;
            if let Some(&(s, _)) = free_ext.last().filter(|&&(_, e)| e >= t) {
                let run = t - s.max(FIRST_DATA_PAGE);
                let room = (free_total - free_above).saturating_sub(need);
                let k = run.min(room);
                t -= k;
                unused_above += k;
                free_above += k;
                if k > 0 {
                    best = t;
                }
                if k < run {
                    break;
                }
                continue;
            }
            // A run of pages in use below `t` (down to the next free run or queued page) is
            // passed in one step too, as far as the room allows: a forged plaintext file can
            // claim billions of pages, and a step each took seconds.
            while q > 0 && queued.get(q - 1).is_some_and(|&p| p >= t) {
                q -= 1;
            }
            let lo = free_ext.last().map_or(0, |&(_, e)| e).max(FIRST_DATA_PAGE);
            let lo = q.checked_sub(1).and_then(|i| queued.get(i)).map_or(lo, |&p| lo.max(p + 1));
            if t > lo {
                let in_use_now = (self.page_count - t) - unused_above;
                let fits = most_in_use_fitting(free_total - free_above);
                let k = (t - lo).min(fits.saturating_sub(in_use_now));
                if k == 0 {
                    break;
                }
                t -= k;
                best = t;
                continue;
            }
            t -= 1;
            // (Queued pages passed inside a free run, which the queues never share with
            // `free`, would be skipped here rather than stop the walk's pointer.)
            while q > 0 && queued.get(q - 1).is_some_and(|&p| p > t) {
                q -= 1;
            }
            if q > 0 && queued.get(q - 1) == Some(&t) {
                q -= 1;
                unused_above += 1;
            }
            let in_use_above = (self.page_count - t) - unused_above;
            let free_below = free_total - free_above;
            if free_below < in_use_above + in_use_above / 8 + 16 {
                break;
            }
            best = t;
        }
        best
    }

    /// Pages not in use by the newest state (free, or waiting in a queue): what the durable
    /// free list records (`all_unused`), counted without building it.
    pub(crate) fn unused_count(&self) -> u64 {
        self.free.len() + self.queued.len() as u64
    }

    /// Pages free now (not waiting in a queue).
    pub(crate) fn free_len(&self) -> usize {
        usize::try_from(self.free.len()).unwrap_or(usize::MAX)
    }

    /// Gives up the free pages at the end of the file: lowers `page_count` past every free page
    /// that ends it, keeping at least `keep` free pages (for the free list the caller writes
    /// next). Pages waiting in a queue are not free yet and stop it. Returns how many pages were
    /// given up.
    pub(crate) fn trim_free_tail(&mut self, keep: usize) -> u64 {
        let most = self.free.len().saturating_sub(keep as u64).min(self.page_count.saturating_sub(FIRST_DATA_PAGE));
        let n = self.free.take_top(self.page_count, most);
        self.page_count -= n;
        n
    }

    /// Every page not in use by the newest state (free and pending), as sorted, disjoint
    /// extents of at most `u32::MAX` pages, adjacent ones joined: what the durable free list
    /// records (after a reopen no snapshot is alive).
    pub(crate) fn all_unused(&self) -> Vec<(PageNo, u32)> {
        let mut queued: Vec<PageNo> = Vec::new();
        for (_, p) in self.pending.iter().chain(self.pending_fresh.iter()) {
            queued.extend_from_slice(p);
        }
        queued.sort_unstable();
        queued.dedup();
        // `free` and the queues are disjoint; merge the two ascending lists of extents.
        let mut out: Vec<(PageNo, u32)> = Vec::new();
        let mut push = |start: PageNo, end: PageNo| {
            let mut at = start;
            while at < end {
                match out.last_mut() {
                    Some((s, l)) if *s + u64::from(*l) == at && *l < u32::MAX => {
                        let n = (end - at).min(u64::from(u32::MAX - *l));
                        *l += n as u32;
                        at += n;
                    }
                    _ => {
                        let n = (end - at).min(u64::from(u32::MAX));
                        out.push((at, n as u32));
                        at += n;
                    }
                }
            }
        };
        let mut q = queued.iter().copied().peekable();
        for (start, end) in self.free.extents() {
            while let Some(p) = q.next_if(|&p| p < start) {
                push(p, p + 1);
            }
            push(start, end);
            // A queued page inside a free extent would be a bug; skipped, not listed twice.
            while q.next_if(|&p| p < end).is_some() {}
        }
        for p in q {
            push(p, p + 1);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_waits_for_durability_and_readers() {
        let mut a = Allocator::new(10, &[(5, 1)]);
        assert_eq!(a.alloc(), 5);
        assert_eq!(a.alloc(), 10);
        a.mark_durable();
        a.release(3, vec![6, 7]);
        a.promote(2, 100);
        assert_eq!(a.alloc(), 11, "not durable yet");
        a.promote(3, 2);
        assert_eq!(a.alloc(), 12, "a reader at 2 may still see them");
        a.promote(3, 3);
        assert_eq!(a.alloc(), 6);
        assert_eq!(a.all_unused(), vec![(7, 1)]);
    }

    /// A page released twice (two references to it in a forged file) is queued once: the
    /// second release, promoted after the first reuse, would hand it out while in use.
    #[test]
    fn a_page_released_twice_is_handed_out_once() {
        let mut a = Allocator::new(10, &[]);
        a.release(3, vec![6, 6, 0, 99]);
        a.promote(3, 3);
        assert_eq!(a.alloc(), 6);
        assert_eq!(a.alloc(), 10, "6 once; 0 is the header's, 99 past the end");
        a.release(5, vec![7]);
        a.release(6, vec![7]);
        a.promote(5, 5);
        assert_eq!(a.alloc(), 7);
        a.promote(6, 6);
        assert_eq!(a.alloc(), 11, "7 is in use: commit 6's release of it was a repeat");
    }
}

#[cfg(test)]
mod target_tests {
    use super::*;

    /// The walk that passes runs of free pages in one step finds the page a walk of every page
    /// finds (the definition), over random states with free, queued and used pages.
    #[test]
    fn compaction_target_matches_a_page_by_page_walk() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..2000 {
            let page_count = FIRST_DATA_PAGE + next() % 400;
            // Some states with long runs of pages in use above plenty of free ones.
            let dense = round % 4 == 0;
            let mut free = Vec::new();
            let mut queued = Vec::new();
            for p in FIRST_DATA_PAGE..page_count {
                let free_odds = if dense && p < page_count / 2 { 1 } else { 2 + next() % 6 };
                match next() % free_odds.max(2) {
                    0 if dense && p >= page_count / 2 => {}
                    0 => free.push(p),
                    _ if dense && p < page_count / 2 => free.push(p),
                    1 if next() % 4 == 0 => queued.push(p),
                    _ => {}
                }
            }
            let ext: Vec<(PageNo, u32)> = free.iter().map(|&p| (p, 1)).collect();
            let mut a = Allocator::new(page_count, &ext);
            a.release(1, queued.clone());
            let (mut t, mut unused_above, mut free_above, mut best) = (page_count, 0u64, 0u64, page_count);
            while t > FIRST_DATA_PAGE {
                t -= 1;
                let (f, q) = (free.contains(&t), queued.contains(&t));
                unused_above += u64::from(f || q);
                free_above += u64::from(f);
                let in_use = (page_count - t) - unused_above;
                if (free.len() as u64 - free_above) < in_use + in_use / 8 + 16 {
                    break;
                }
                best = t;
            }
            assert_eq!(a.compaction_target(), best, "page count {page_count}, free {free:?}, queued {queued:?}");
        }
    }

    /// 2^41 pages claimed in use above 2^40 free ones (a forged plaintext file): the run in use
    /// is passed in one step, as far as the free pages take it. A step a page would not finish
    /// (some 10^12 steps).
    #[test]
    fn a_huge_run_in_use_is_passed_in_one_step() {
        let free = 1u64 << 40;
        let extent = 1u64 << 31;
        let extents: Vec<(PageNo, u32)> =
            (0..free / extent).map(|i| (FIRST_DATA_PAGE + i * extent, extent as u32)).collect();
        let page_count = FIRST_DATA_PAGE + 3 * free;
        let a = Allocator::new(page_count, &extents);
        let fits = most_in_use_fitting(free);
        assert!(fits + fits / 8 + 16 <= free && (fits + 1) + (fits + 1) / 8 + 16 > free);
        assert_eq!(a.compaction_target(), page_count - fits);
    }

    /// A free extent of four billion pages at the end of the file: the target is found, and
    /// the tail trimmed, without a step per page.
    #[test]
    fn a_huge_free_tail_is_passed_in_one_step() {
        let n = u64::from(u32::MAX);
        let mut a = Allocator::new(FIRST_DATA_PAGE + 10 + n, &[(FIRST_DATA_PAGE + 10, u32::MAX)]);
        assert_eq!(a.compaction_target(), FIRST_DATA_PAGE + 10 + 16);
        assert_eq!(a.trim_free_tail(2), n - 2);
        assert_eq!(a.page_count, FIRST_DATA_PAGE + 12);
        assert_eq!(a.all_unused(), vec![(FIRST_DATA_PAGE + 10, 2)]);
    }
}

#[cfg(test)]
mod fresh_tests {
    use super::*;

    /// Pages written and freed between two durable commits are reused without waiting for a
    /// sync (else eventual durability grows the file by every copy-on-write).
    #[test]
    fn fresh_pages_wait_only_for_readers() {
        let mut a = Allocator::new(10, &[]);
        let p = a.alloc();
        a.release(5, vec![p]);
        a.promote(0, 4);
        assert_eq!(a.alloc(), 11, "a reader at 4 may see it");
        a.promote(0, 5);
        assert_eq!(a.alloc(), p, "not durable, but never referenced by a durable state");
    }
}
