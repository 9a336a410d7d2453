//! The allocator's free pages, as extents. SPEC.md §7 (free space).
//!
//! Invariants: the extents are disjoint, non-empty and never adjacent (two that touch are one);
//! `len` is the number of pages they hold. Memory is one map entry per extent, however many
//! pages each holds: a file with a few large free regions (a large removal, or a length the
//! free list claims) costs a few entries, where a set of pages cost one entry per page.
//!
//! The map is keyed by each extent's end (exclusive) and holds its start, so that handing out
//! the lowest page, the commonest edit, changes an entry in place.

use std::collections::BTreeMap;

use crate::error::PageNo;

#[derive(Debug, Default, Clone)]
pub(crate) struct FreeSet {
    /// end (exclusive) -> start.
    by_end: BTreeMap<PageNo, PageNo>,
    len: u64,
}

impl FreeSet {
    /// The set of the pages of `extents` (start, length), in any order, overlapping or not.
    pub(crate) fn from_extents(extents: impl IntoIterator<Item = (PageNo, u64)>) -> FreeSet {
        let mut v: Vec<(PageNo, PageNo)> =
            extents.into_iter().filter(|&(_, n)| n > 0).map(|(s, n)| (s, s.saturating_add(n))).collect();
        v.sort_unstable();
        let mut merged: Vec<(PageNo, PageNo)> = Vec::with_capacity(v.len());
        for (s, e) in v {
            match merged.last_mut() {
                Some((_, last_end)) if s <= *last_end => *last_end = (*last_end).max(e),
                _ => merged.push((s, e)),
            }
        }
        let len = merged.iter().map(|&(s, e)| e - s).sum();
        FreeSet { by_end: merged.into_iter().map(|(s, e)| (e, s)).collect(), len }
    }

    /// Pages held.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The extent holding `page`, as (start, end).
    fn extent_of(&self, page: PageNo) -> Option<(PageNo, PageNo)> {
        let (&end, &start) = self.by_end.range(page.checked_add(1)?..).next()?;
        (start <= page).then_some((start, end))
    }

    pub(crate) fn contains(&self, page: PageNo) -> bool {
        self.extent_of(page).is_some()
    }

    /// Takes the lowest page.
    pub(crate) fn pop_first(&mut self) -> Option<PageNo> {
        let mut first = self.by_end.first_entry()?;
        let page = *first.get();
        *first.get_mut() += 1;
        if *first.get() == *first.key() {
            first.remove();
        }
        self.len -= 1;
        Some(page)
    }

    /// Takes up to `most` pages from the top of the set if its highest extent ends at `end`;
    /// returns how many (they were `end - n .. end`).
    pub(crate) fn take_top(&mut self, end: PageNo, most: u64) -> u64 {
        let Some((&e, &start)) = self.by_end.last_key_value() else {
            return 0;
        };
        if e != end || most == 0 {
            return 0;
        }
        let n = (e - start).min(most);
        self.by_end.remove(&e);
        if start < e - n {
            self.by_end.insert(e - n, start);
        }
        self.len -= n;
        n
    }

    /// Removes `page`; returns whether it was there.
    pub(crate) fn remove(&mut self, page: PageNo) -> bool {
        let Some((start, end)) = self.extent_of(page) else {
            return false;
        };
        // The part above `page` keeps the entry (its end); the part below gets one of its own.
        if page + 1 == end {
            self.by_end.remove(&end);
        } else if let Some(s) = self.by_end.get_mut(&end) {
            *s = page + 1;
        }
        if start < page {
            self.by_end.insert(page, start);
        }
        self.len -= 1;
        true
    }

    /// Adds `page`; nothing if it is there already.
    pub(crate) fn insert(&mut self, page: PageNo) {
        if self.contains(page) {
            return;
        }
        let below = self.by_end.get(&page).copied();
        // The extent starting right above `page`, if any: the first extent ending above it
        // (none holds `page`).
        let above = self.by_end.range(page + 1..).next().filter(|&(_, &s)| s == page + 1).map(|(&e, _)| e);
        match (below, above) {
            (Some(bs), Some(ae)) => {
                self.by_end.remove(&page);
                self.by_end.insert(ae, bs);
            }
            (Some(bs), None) => {
                self.by_end.remove(&page);
                self.by_end.insert(page + 1, bs);
            }
            (None, Some(ae)) => {
                self.by_end.insert(ae, page);
            }
            (None, None) => {
                self.by_end.insert(page + 1, page);
            }
        }
        self.len += 1;
    }

    /// The extents, ascending: (start, end exclusive).
    pub(crate) fn extents(&self) -> impl Iterator<Item = (PageNo, PageNo)> + '_ {
        self.by_end.iter().map(|(&e, &s)| (s, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every operation against a set of pages, with the invariants checked after each.
    #[test]
    fn matches_a_set_of_pages() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut set = FreeSet::from_extents([(10, 5), (12, 10), (40, 1), (41, 2), (100, 0)]);
        let mut model: BTreeSet<PageNo> = (10..22).chain(40..43).collect();
        for _ in 0..20_000 {
            let page = 4 + next() % 120;
            match next() % 6 {
                0 | 1 => {
                    set.insert(page);
                    model.insert(page);
                }
                2 => assert_eq!(set.remove(page), model.remove(&page)),
                3 => assert_eq!(set.pop_first(), model.pop_first()),
                4 => {
                    let end = model.last().map_or(0, |l| l + 1);
                    let most = next() % 4;
                    let n = set.take_top(end, most);
                    let mut want = 0;
                    while end > 0 && want < most && model.last() == Some(&(end - 1 - want)) {
                        model.pop_last();
                        want += 1;
                    }
                    assert_eq!(n, want);
                }
                _ => assert_eq!(set.contains(page), model.contains(&page)),
            }
            assert_eq!(set.len(), model.len() as u64);
            assert_eq!(set.extents().last().map(|(_, e)| e - 1), model.last().copied());
            let pages: Vec<PageNo> = set.extents().flat_map(|(s, e)| s..e).collect();
            assert_eq!(pages, model.iter().copied().collect::<Vec<_>>());
            // Disjoint, non-empty, never adjacent.
            let ext: Vec<_> = set.extents().collect();
            assert!(ext.iter().all(|&(s, e)| s < e));
            assert!(ext.windows(2).all(|w| w[0].1 < w[1].0), "{ext:?}");
        }
    }

    /// A free extent of four billion pages costs one entry.
    #[test]
    fn a_huge_extent_is_one_entry() {
        let mut set = FreeSet::from_extents([(4, u32::MAX as u64)]);
        assert_eq!(set.len(), u32::MAX as u64);
        assert!(set.remove(1 << 31));
        assert_eq!(set.extents().count(), 2);
        assert_eq!(set.pop_first(), Some(4));
        assert_eq!(set.len(), u32::MAX as u64 - 2);
    }
}
