//! What each page of the file is used for, as a full check (`Db::check`) finds it: the
//! report's `roles`, kept as runs of pages with one role.
//!
//! Memory follows the pages the check read and the free list's extents, never the page count a
//! file claims. A sparse file (or, in plaintext mode, a forged commit record) can claim billions
//! of pages while holding a few: one entry per page was gigabytes there.
//!
//! - While trees are walked, each page reached is marked in `ReachedPages`: chunks of 1,024
//!   role codes (4 bytes a page), made only where a page is marked. Marking a page twice, or one past the
//!   page count, is refused (the walk reports the double reference and does not descend).
//! - `ReachedPages::finish` merges the marks with the free extents, in page order, into runs.
//!   The runs are in page order, non-empty, contiguous from page 0 to the page count, and
//!   neighbours differ in role. A page both reached and free keeps its reached role and is a
//!   problem; a run neither reached nor free from `FIRST_DATA_PAGE` on is leaked, one problem
//!   for the run.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::btree::verify::Problem;
use crate::error::{CorruptReason, PageNo};
use crate::format::FIRST_DATA_PAGE;

/// What a page is used for, as found by `Db::check`. `Debug` hides tree names (user data).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum PageRole {
    Header,
    CommitRecord,
    /// A page of the catalog of trees.
    Catalog,
    /// A page (branch, leaf or overflow) of the named tree.
    Tree(String),
    FreeList,
    Free,
    /// Neither reachable nor free (a leak) — also reported as a problem.
    Unaccounted,
}

impl PageRole {
    /// The number of kinds of role ([`PageRole::kind`] is below it).
    pub const KINDS: usize = 7;

    /// The role's kind as a number, in declaration order (a tree's name left out): `Header` is
    /// 0, `Tree` 3, `Unaccounted` 6.
    pub fn kind(&self) -> usize {
        match self {
            PageRole::Header => 0,
            PageRole::CommitRecord => 1,
            PageRole::Catalog => 2,
            PageRole::Tree(_) => TREE_KIND,
            PageRole::FreeList => 4,
            PageRole::Free => 5,
            PageRole::Unaccounted => 6,
        }
    }
}

impl std::fmt::Debug for PageRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PageRole::Header => f.write_str("Header"),
            PageRole::CommitRecord => f.write_str("CommitRecord"),
            PageRole::Catalog => f.write_str("Catalog"),
            PageRole::Tree(n) => write!(f, "Tree(name_len={})", n.len()),
            PageRole::FreeList => f.write_str("FreeList"),
            PageRole::Free => f.write_str("Free"),
            PageRole::Unaccounted => f.write_str("Unaccounted"),
        }
    }
}

/// The role of every page `0..page_count`, as runs of consecutive pages. `Debug` lists the runs
/// (tree names hidden, as in `PageRole`).
#[derive(Clone, Default)]
pub struct PageRoles {
    /// The distinct roles; a run names one by index. Kept as [`RoleEntry`]s, every byte set: a
    /// `PageRole` is only made on the stack, for the caller (see `RoleEntry`).
    table: Vec<RoleEntry>,
    runs: Vec<Run>,
}

#[derive(Clone, Copy)]
struct Run {
    first: PageNo,
    count: u64,
    role: u32,
}

impl PageRoles {
    /// The runs in page order: each range of pages and their role.
    pub fn runs(&self) -> impl Iterator<Item = (Range<PageNo>, PageRole)> + '_ {
        self.runs.iter().map(|r| (r.first..r.first + r.count, self.table[r.role as usize].role()))
    }

    /// The role of one page; `None` past the page count.
    pub fn get(&self, page: PageNo) -> Option<PageRole> {
        let i = self.runs.partition_point(|r| r.first + r.count <= page);
        self.runs.get(i).filter(|r| r.first <= page).map(|r| self.table[r.role as usize].role())
    }

    /// How many pages have a role `pick` accepts.
    pub fn count(&self, pick: impl Fn(&PageRole) -> bool) -> u64 {
        self.runs().filter(|(_, role)| pick(role)).map(|(pages, _)| pages.end - pages.start).sum()
    }

    /// The pages with a role `pick` accepts, in order. One item per page: a free run can be
    /// billions of pages long.
    pub fn pages<'a>(&'a self, pick: impl Fn(&PageRole) -> bool + 'a) -> impl Iterator<Item = PageNo> + 'a {
        self.runs().filter(move |(_, role)| pick(role)).flat_map(|(pages, _)| pages)
    }

    /// The number of pages covered (the page count checked).
    pub fn len(&self) -> u64 {
        self.runs.last().map_or(0, |r| r.first + r.count)
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Appends `count` pages of role code `role`, joining the last run when it has that role.
    fn push(&mut self, first: PageNo, count: u64, role: u32) {
        if count == 0 {
            return;
        }
        match self.runs.last_mut() {
            Some(last) if last.role == role && last.first + last.count == first => last.count += count,
            _ => self.runs.push(Run { first, count, role }),
        }
    }
}

/// Equal when every page has an equal role (however the role table is ordered).
impl PartialEq for PageRoles {
    fn eq(&self, other: &Self) -> bool {
        self.runs().eq(other.runs())
    }
}

impl std::fmt::Debug for PageRoles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.runs()).finish()
    }
}

/// Pages per chunk of `ReachedPages` (4 KiB of role codes: a forged sparse file whose pages
/// are each alone in a chunk costs no more than the pages the check read).
const CHUNK: u64 = 1024;

/// A role as [`ReachedPages`] and [`PageRoles`] keep it: its kind, and the tree's name (empty
/// for roles of other kinds). Every byte of it is set: a `PageRole` of a kind without a name,
/// moved into the heap, carries whatever the stack held in the bytes a name takes there (a
/// check's stack has held the user's keys), and the block is freed with them in it.
#[derive(Clone)]
struct RoleEntry {
    /// [`PageRole::kind`].
    kind: usize,
    name: String,
}

const TREE_KIND: usize = 3;

impl RoleEntry {
    fn of(role: PageRole) -> RoleEntry {
        let kind = role.kind();
        let name = if let PageRole::Tree(name) = role { name } else { String::new() };
        RoleEntry { kind, name }
    }

    fn role(&self) -> PageRole {
        match self.kind {
            0 => PageRole::Header,
            1 => PageRole::CommitRecord,
            2 => PageRole::Catalog,
            TREE_KIND => PageRole::Tree(self.name.clone()),
            4 => PageRole::FreeList,
            5 => PageRole::Free,
            _ => PageRole::Unaccounted,
        }
    }
}

/// The pages a check reached, with their roles, while it walks: see the module comment.
pub(crate) struct ReachedPages {
    page_count: PageNo,
    /// The distinct roles met, a code naming one by index.
    table: Vec<RoleEntry>,
    /// Each tree's role code, by the tree's name: one lookup per tree, where a search of the
    /// table made a check of a catalog of a million trees quadratic.
    tree_codes: std::collections::HashMap<String, u32>,
    /// Chunk index to the role code (table index + 1; 0 for unmarked) of each of its pages.
    chunks: BTreeMap<u64, Box<[u32]>>,
    marked: u64,
}

impl ReachedPages {
    pub(crate) fn new(page_count: PageNo) -> ReachedPages {
        ReachedPages {
            page_count,
            table: Vec::new(),
            tree_codes: Default::default(),
            chunks: BTreeMap::new(),
            marked: 0,
        }
    }

    /// The code for `role`, added to the table on first use.
    pub(crate) fn code(&mut self, role: PageRole) -> u32 {
        let role = RoleEntry::of(role);
        let known = if role.kind == TREE_KIND {
            self.tree_codes.get(&role.name).copied()
        } else {
            // A handful of roles of other kinds: found in the table.
            self.table.iter().position(|r| r.kind == role.kind).map(|i| i as u32)
        };
        if let Some(c) = known {
            return c;
        }
        let c = self.table.len() as u32;
        if role.kind == TREE_KIND {
            self.tree_codes.insert(role.name.clone(), c);
        }
        self.table.push(role);
        c
    }

    /// Marks `page` with role `code`; false (and nothing marked) when the page is past the page
    /// count or was marked already.
    pub(crate) fn mark(&mut self, page: PageNo, code: u32) -> bool {
        if page >= self.page_count {
            return false;
        }
        let chunk = self.chunks.entry(page / CHUNK).or_insert_with(|| vec![0u32; CHUNK as usize].into_boxed_slice());
        let slot = &mut chunk[(page % CHUNK) as usize];
        if *slot != 0 {
            return false;
        }
        *slot = code + 1;
        self.marked += 1;
        true
    }

    /// The number of pages marked.
    pub(crate) fn marked(&self) -> u64 {
        self.marked
    }

    /// The marked pages in order, with their codes.
    fn iter(&self) -> impl Iterator<Item = (PageNo, u32)> + '_ {
        self.chunks.iter().flat_map(|(c, codes)| {
            codes.iter().enumerate().filter(|(_, v)| **v != 0).map(move |(i, v)| (c * CHUNK + i as u64, v - 1))
        })
    }

    /// Merges the marks with the free extents `(first page, pages)` into runs covering
    /// `0..page_count`, reporting pages both reached and free, free pages past the page count or
    /// recorded twice, and leaked runs (module comment).
    pub(crate) fn finish(mut self, free: &[(PageNo, u32)], problems: &mut Vec<Problem>) -> PageRoles {
        let free_code = self.code(PageRole::Free);
        let leak_code = self.code(PageRole::Unaccounted);
        let page_count = self.page_count;
        let mut out = PageRoles { table: Vec::new(), runs: Vec::new() };
        let mut problem = |page: PageNo, pages: u64| {
            problems.push(Problem { tree: "free list".into(), page, pages, reason: CorruptReason::FreeList })
        };
        let mut extents: Vec<(PageNo, PageNo)> =
            free.iter().map(|&(s, n)| (s, s.saturating_add(u64::from(n)))).collect();
        extents.sort_unstable();
        let mut reached = self.iter().peekable();
        let mut at: PageNo = 0; // every page below is in `out`
        // Pages `at..end` not reached: leaked, or below the data pages (never written).
        let gap = |out: &mut PageRoles, at: PageNo, end: PageNo, problem: &mut dyn FnMut(PageNo, u64)| {
            if end > at {
                out.push(at, end - at, leak_code);
                let from = at.max(FIRST_DATA_PAGE);
                if end > from {
                    problem(from, end - from);
                }
            }
        };
        for (start, end) in extents {
            if end <= start {
                continue;
            }
            if end > page_count {
                let from = start.max(page_count);
                problem(from, end - from);
            }
            let end = end.min(page_count);
            if start < at {
                // Overlaps what an earlier extent recorded free: recorded twice.
                problem(start, end.min(at).saturating_sub(start).max(1));
            }
            let start = start.max(at);
            if start >= end {
                continue;
            }
            while let Some(&(p, code)) = reached.peek().filter(|(p, _)| *p < start) {
                gap(&mut out, at, p, &mut problem);
                out.push(p, 1, code);
                at = p + 1;
                reached.next();
            }
            gap(&mut out, at, start, &mut problem);
            at = start;
            while let Some(&(p, code)) = reached.peek().filter(|(p, _)| *p < end) {
                out.push(at, p - at, free_code);
                out.push(p, 1, code);
                problem(p, 1);
                at = p + 1;
                reached.next();
            }
            out.push(at, end - at, free_code);
            at = end;
        }
        for (p, code) in reached {
            gap(&mut out, at, p, &mut problem);
            out.push(p, 1, code);
            at = p + 1;
        }
        gap(&mut out, at, page_count, &mut problem);
        out.table = self.table;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles_of(page_count: u64, marks: &[(u64, PageRole)], free: &[(u64, u32)]) -> (PageRoles, Vec<(u64, u64)>) {
        let mut r = ReachedPages::new(page_count);
        for (p, role) in marks {
            let c = r.code(role.clone());
            assert!(r.mark(*p, c));
        }
        let mut problems = Vec::new();
        let roles = r.finish(free, &mut problems);
        (roles, problems.iter().map(|p| (p.page, p.pages)).collect())
    }

    /// The runs, and the problems, against a page-by-page model on random small layouts.
    #[test]
    fn runs_match_a_per_page_model() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let names = [PageRole::Header, PageRole::Catalog, PageRole::Tree("a".into()), PageRole::Tree("b".into())];
        for _ in 0..2000 {
            let page_count = next(40);
            let mut model: Vec<Option<PageRole>> = vec![None; page_count as usize];
            let mut reached = ReachedPages::new(page_count);
            for _ in 0..next(20) {
                let p = next(45);
                let role = names[next(4) as usize].clone();
                let code = reached.code(role.clone());
                let fresh = p < page_count && model[p as usize].is_none();
                assert_eq!(reached.mark(p, code), fresh);
                if fresh {
                    model[p as usize] = Some(role);
                }
            }
            let free: Vec<(u64, u32)> = (0..next(4)).map(|_| (next(45), next(8) as u32)).collect();
            let mut want_problems = Vec::new();
            let mut free_pages = vec![0u32; 60];
            for &(s, n) in &free {
                for p in s..s + u64::from(n) {
                    free_pages[p as usize] += 1;
                }
            }
            let mut want = Vec::new();
            for p in 0..page_count {
                let role = match (&model[p as usize], free_pages[p as usize]) {
                    (Some(r), f) => {
                        if f > 0 {
                            want_problems.push(p);
                        }
                        r.clone()
                    }
                    (None, 0) => {
                        if p >= FIRST_DATA_PAGE {
                            want_problems.push(p);
                        }
                        PageRole::Unaccounted
                    }
                    (None, f) => {
                        if f > 1 {
                            want_problems.push(p);
                        }
                        PageRole::Free
                    }
                };
                want.push(role);
            }
            let beyond = free.iter().any(|&(s, n)| s + u64::from(n) > page_count);
            let mut problems = Vec::new();
            let roles = reached.finish(&free, &mut problems);
            let problems: Vec<(u64, u64)> = problems.iter().map(|p| (p.page, p.pages)).collect();
            let got: Vec<PageRole> = (0..page_count).map(|p| roles.get(p).unwrap()).collect();
            assert_eq!(got, want, "{free:?} {page_count}");
            assert_eq!(roles.get(page_count), None);
            assert_eq!(roles.len(), page_count);
            assert_eq!(roles.pages(|_| true).count() as u64, page_count);
            let runs: Vec<_> = roles.runs().collect();
            assert!(runs.windows(2).all(|w| w[0].0.end == w[1].0.start && w[0].1 != w[1].1), "{runs:?}");
            // Every page the model finds a problem in is in a reported problem's pages, and
            // every reported problem covers one (or lies past the page count).
            let covered = |p: u64| problems.iter().any(|&(s, n)| s <= p && p < s + n);
            for p in &want_problems {
                assert!(covered(*p), "page {p}: {problems:?} {free:?} {page_count}");
            }
            for &(s, n) in &problems {
                assert!(n > 0);
                let real = (s..s + n).any(|p| want_problems.contains(&p)) || (beyond && s + n > page_count);
                assert!(real, "problem {s}+{n}: {want_problems:?} {free:?} {page_count}");
            }
        }
    }

    /// A leaked run of billions of pages is one run and one problem.
    #[test]
    fn a_huge_leak_is_one_run_and_one_problem() {
        let (roles, problems) = roles_of(1 << 32, &[(0, PageRole::Header), (5, PageRole::Catalog)], &[(6, 10)]);
        assert_eq!(problems, vec![(4, 1), (16, (1 << 32) - 16)]);
        assert_eq!(roles.runs().count(), 5);
        assert_eq!(roles.count(|r| *r == PageRole::Unaccounted), (1 << 32) - 12);
        assert_eq!(roles.get(1 << 31), Some(PageRole::Unaccounted));
    }
}
