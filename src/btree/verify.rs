//! Walks over whole trees: recovery verification of the pages a commit wrote, and the full
//! structural check (`Db::check`).

use super::raw::RawNode;
use super::raw::RawValue;
use super::{MAX_DEPTH, overflow};
use crate::error::{CorruptReason, Error, PageNo, Result};
use crate::format::PAGE_SIZE;
use crate::format::page::{PAYLOAD_SIZE, PageRef, generation};
use crate::pager::Pager;
use crate::pager::pagemap::reach_once;
use zeroize::Zeroizing;

/// Verifies every page reachable from `root` that was written after commit `since` (its
/// generation is above it): each opens under its seal and matches its parent-held tag. Pages
/// of older generations were made durable by an earlier sync and are not descended into.
pub(crate) fn verify_since(pager: &Pager, root: PageRef, since: u64) -> Result<u64> {
    let mut checked = 0u64;
    if root.is_none() {
        return Ok(0);
    }
    // A page reached twice is damage (no page has two parents): without this, a damaged tree
    // whose children are shared would be walked once per path, exponentially many.
    let mut seen = crate::pager::pagemap::PageSet::default();
    let mut stack = vec![(root, 0usize)];
    while let Some((r, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(Error::corrupt(r.page, CorruptReason::TooDeep));
        }
        // Written by a durable commit (synced before the newer record): not read at all, so a
        // damaged old page cannot stop the database from opening.
        if r.generation <= since {
            continue;
        }
        reach_once(&mut seen, r.page)?;
        let p = pager.read(r, None)?;
        checked += 1;
        if generation(p.payload()) <= since {
            continue;
        }
        let raw = RawNode::new(p.payload(), r.page)?;
        if raw.is_leaf() {
            for i in 0..raw.len() {
                if let (_, RawValue::Overflow { first, len }) = raw.leaf_entry(i)?
                    && first.generation > since
                {
                    // A chain page reached twice ends the walk, as a tree page does.
                    overflow::walk(pager, first, len, |pg, _| {
                        checked += 1;
                        reach_once(&mut seen, pg)
                    })?;
                }
            }
        } else {
            for i in 0..=raw.len() {
                stack.push((raw.child(i)?, depth + 1));
            }
        }
    }
    Ok(checked)
}

/// One problem found by a full check. `Debug` does not show the tree's name (user data).
#[derive(Clone)]
pub struct Problem {
    /// The tree it was found in (its name, lossily as text), or a structure name.
    pub tree: String,
    pub page: PageNo,
    /// How many pages, from `page` on, the problem covers: 1, except for a run of leaked pages
    /// (or free pages past the page count), reported once.
    pub pages: u64,
    pub reason: CorruptReason,
}

/// Walks a whole tree, recording every page it uses (tree and overflow pages) and every
/// problem, without stopping at the first: a damaged subtree is skipped, the rest is checked.
/// Returns the number of records seen; an I/O error (the walk cannot go on: not damage to
/// report) ends it.
pub(crate) fn check_tree(
    pager: &Pager,
    tree: &str,
    root: PageRef,
    used: &mut dyn FnMut(PageNo) -> bool,
    problems: &mut Vec<Problem>,
) -> Result<u64> {
    let mut unread = Vec::new();
    let records = check_tree_leaving_unread(pager, tree, root, used, problems, &mut unread)?;
    for page in unread {
        used(page);
    }
    Ok(records)
}

/// [`check_tree`], leaving the pages no reference read (a wrong tag, damage, past the file's
/// end) in `unread` instead of marking them: a caller that walks several trees marks them once
/// all are walked, so that a bad reference in one tree to a page another holds does not make
/// that tree's real reference a second one.
pub(crate) fn check_tree_leaving_unread(
    pager: &Pager,
    tree: &str,
    root: PageRef,
    used: &mut dyn FnMut(PageNo) -> bool,
    problems: &mut Vec<Problem>,
    unread: &mut Vec<PageNo>,
) -> Result<u64> {
    let mut records = 0u64;
    if root.is_none() {
        return Ok(0);
    }
    // (ref, depth, lower bound, upper bound)
    // The bounds are user keys: `Zeroizing`, so they are wiped when done with.
    type KeyBound = Option<Zeroizing<Vec<u8>>>;
    let mut stack: Vec<(PageRef, usize, KeyBound, KeyBound)> = vec![(root, 0, None, None)];
    let mut leaf_depth: Option<usize> = None;
    // One problem per page and reason in the whole walk: a forged leaf of 2,000 entries that
    // all point at one entry (or share one overflow chain) gave a problem each, and a file of a
    // few MB so made millions, each with its tree's name and an audit line; two reasons met by
    // turns (an over-long key repeated: order, then length) got past a check of the last
    // problem alone, and a branch whose children all name one page gave one per child. The set
    // holds one entry per problem reported, so it is never larger than the report.
    let mut reported = std::collections::HashSet::new();
    while let Some((r, depth, lo, hi)) = stack.pop() {
        let mut report = |page: PageNo, reason: CorruptReason| {
            if reported.insert((page, reason)) {
                problems.push(Problem::one(tree, page, reason));
            }
        };
        if depth > MAX_DEPTH {
            report(r.page, CorruptReason::TooDeep);
            continue;
        }
        // A reference no tree page can have, named as a read names it (`used` refuses such a
        // page too, which read as a second reference).
        if r.page < crate::format::FIRST_DATA_PAGE {
            report(r.page, CorruptReason::BadLayout);
            continue;
        }
        if r.page >= pager.page_limit() {
            report(r.page, CorruptReason::PageOutOfRange);
            continue;
        }
        // Marked once it reads (as salvage does): a reference with a wrong tag met first marked
        // the page, and its real reference, met later, was taken for a second one, its healthy
        // subtree skipped and its pages called leaked (check review, low). A page no reference
        // reads is marked after the walk (`unread`; after every tree's, by `Db::check`), so it
        // is not also called leaked.
        let p = match pager.read(r, None) {
            Ok(p) => p,
            Err(Error::Corrupt { page, reason }) => {
                report(page, reason);
                unread.push(r.page);
                continue;
            }
            Err(Error::Truncated { .. }) => {
                report(r.page, CorruptReason::PageOutOfRange);
                unread.push(r.page);
                continue;
            }
            Err(e @ Error::Io(_)) => return Err(e),
            Err(_) => {
                report(r.page, CorruptReason::SealMismatch);
                unread.push(r.page);
                continue;
            }
        };
        if !used(r.page) {
            report(r.page, CorruptReason::DoubleReference);
            continue;
        }
        // Not a tree page (`WrongPageKind`), or a count whose slots overrun the page
        // (`BadLayout`): reported as readers report it.
        let raw = match RawNode::new(p.payload(), r.page) {
            Ok(raw) => raw,
            Err(e) => {
                report(
                    r.page,
                    if let Error::Corrupt { reason, .. } = e { reason } else { CorruptReason::WrongPageKind },
                );
                continue;
            }
        };
        // Entries that share bytes (overlapping offsets) read, but decode to more than a page,
        // which `Node::decode` refuses: no edit could start from this page. (Entries that do not
        // decode at all are reported below, once.)
        if raw.encoded_size().is_ok_and(|size| size > PAYLOAD_SIZE) {
            report(r.page, CorruptReason::BadLayout);
        }
        let in_range = |k: &[u8]| lo.as_deref().is_none_or(|l| k >= l) && hi.as_deref().is_none_or(|h| k < h);
        if raw.is_leaf() {
            match leaf_depth {
                None => leaf_depth = Some(depth),
                Some(d) if d != depth => report(r.page, CorruptReason::BadLayout),
                _ => {}
            }
            let mut prev: Option<&[u8]> = None;
            for i in 0..raw.len() {
                let (k, v) = match raw.leaf_entry(i) {
                    Ok(e) => e,
                    Err(_) => {
                        report(r.page, CorruptReason::BadLayout);
                        break;
                    }
                };
                if prev.is_some_and(|pk| pk >= k) || !in_range(k) {
                    report(r.page, CorruptReason::KeyOrder);
                }
                // Longer than any write makes (SPEC §4.1): salvage loses such a key, which a
                // copy could not write.
                if k.len() > super::node::MAX_KEY_LEN {
                    report(r.page, CorruptReason::BadLayout);
                }
                prev = Some(k);
                records += 1;
                // Each chain page is recorded as it is walked, and a page recorded already
                // (a chain shared by two entries, or joining another) ends the walk with one
                // problem: walked to its end each time, a chain shared by a leaf's entries was
                // read once per entry and reported once per page.
                if let RawValue::Overflow { first, len } = v {
                    let walked = overflow::walk(pager, first, len, |pg, _| match used(pg) {
                        true => Ok(()),
                        false => Err(Error::corrupt(pg, CorruptReason::DoubleReference)),
                    });
                    match walked {
                        Ok(()) => {}
                        Err(Error::Corrupt { page, reason }) => {
                            // A chain page whose seal failed was reached all the same (and
                            // can be no other structure's page): not reported a second time as
                            // a leaked page. One that opened but is not the chain's (another
                            // tag, kind or layout) is left for the structure it belongs to.
                            if reason == CorruptReason::SealMismatch
                                && (crate::format::FIRST_DATA_PAGE..pager.page_limit()).contains(&page)
                            {
                                used(page);
                            }
                            report(page, reason)
                        }
                        // A chain page past the file's end (cut short under the handle):
                        // named as a tree page there is, and reached all the same.
                        Err(Error::Truncated { expected, .. }) => {
                            let page = (expected / PAGE_SIZE as u64).saturating_sub(1);
                            if (crate::format::FIRST_DATA_PAGE..pager.page_limit()).contains(&page) {
                                used(page);
                            }
                            report(page, CorruptReason::PageOutOfRange)
                        }
                        Err(e @ Error::Io(_)) => return Err(e),
                        Err(_) => report(first.page, CorruptReason::SealMismatch),
                    }
                }
            }
        } else {
            let n = raw.len();
            let mut keys = Vec::with_capacity(n);
            for i in 0..n {
                match raw.branch_key(i) {
                    Ok(k) => keys.push(Zeroizing::new(k.to_vec())),
                    Err(_) => {
                        report(r.page, CorruptReason::BadLayout);
                        break;
                    }
                }
            }
            if keys.len() != n {
                continue;
            }
            // A separator equals no lower bound: every writer promotes one strictly above a key
            // at or past the bound, and a branch merged under one would not decode (SPEC §4.2).
            let above_lo = |k: &[u8]| lo.as_deref().is_none_or(|l| k > l);
            if keys.windows(2).any(|w| w[0][..] >= w[1][..]) || keys.iter().any(|k| !in_range(k) || !above_lo(k)) {
                report(r.page, CorruptReason::KeyOrder);
            }
            for i in 0..=n {
                // One child reference that cannot be (below page 4) is reported, and its
                // siblings are still walked: their pages are not taken for leaked ones.
                let Ok(c) = raw.child(i) else {
                    report(r.page, CorruptReason::BadLayout);
                    continue;
                };
                let clo = if i == 0 { lo.clone() } else { Some(keys[i - 1].clone()) };
                let chi = if i == n { hi.clone() } else { Some(keys[i].clone()) };
                stack.push((c, depth + 1, clo, chi));
            }
        }
    }
    Ok(records)
}

impl Problem {
    /// A problem with one page.
    pub(crate) fn one(tree: impl Into<String>, page: PageNo, reason: CorruptReason) -> Problem {
        Problem { tree: tree.into(), page, pages: 1, reason }
    }
}

impl std::fmt::Debug for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Problem")
            .field("tree_name_len", &self.tree.len())
            .field("page", &self.page)
            .field("pages", &self.pages)
            .field("reason", &self.reason)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::check_tree;
    use crate::btree::node::{Leaf, Node, SLOT};
    use crate::btree::raw::RawValue;
    use crate::crypto::seal::PageSealer;
    use crate::error::CorruptReason;
    use crate::format::page::{PAGE_HEADER_SIZE, PAYLOAD_SIZE, PageRef};
    use crate::format::{FIRST_DATA_PAGE, PAGE_SIZE, get_u16, put_u16};
    use crate::pager::Pager;
    use crate::storage::MemoryStorage;

    /// The problems `check_tree` finds in a one-leaf tree, after `damage` edits its payload.
    fn check_one_leaf(damage: impl Fn(&mut [u8])) -> Vec<(u64, CorruptReason)> {
        let mut l = Leaf::default();
        l.insert(0, b"a", RawValue::Inline(&[1; 2500]));
        l.insert(1, b"b", RawValue::Inline(&[2; 10]));
        let mut buf = Box::new([0u8; PAGE_SIZE]);
        Node::Leaf(l).encode(1, &mut buf[..PAYLOAD_SIZE]).expect("a leaf that fits");
        damage(&mut buf[..PAYLOAD_SIZE]);
        let pager = Pager::new(Arc::new(MemoryStorage::new()), PageSealer::plaintext(*b"verify-tests!!!!"), 1 << 20);
        pager.set_page_limit(FIRST_DATA_PAGE + 1);
        let tag = pager.write(FIRST_DATA_PAGE, 0, buf).expect("write");
        let root = PageRef { page: FIRST_DATA_PAGE, tag, generation: 1 };
        let mut problems = Vec::new();
        check_tree(&pager, "t", root, &mut |_| true, &mut problems).unwrap();
        problems.into_iter().map(|p| (p.page, p.reason)).collect()
    }

    /// A leaf whose two slots name the same large entry reads entry by entry, but would decode
    /// to more than a page, which the writer refuses: the check reports it, so that a tree the
    /// check passes is one every edit can start from.
    #[test]
    fn a_leaf_whose_entries_overlap_past_a_page_is_reported() {
        assert_eq!(check_one_leaf(|_| {}), []);
        let overlapped = check_one_leaf(|p| {
            let first = get_u16(p, PAGE_HEADER_SIZE).expect("slot 0");
            put_u16(p, PAGE_HEADER_SIZE + SLOT, first);
        });
        assert!(overlapped.contains(&(FIRST_DATA_PAGE, CorruptReason::BadLayout)), "{overlapped:?}");
    }

    /// A page that is not a tree page, and a leaf whose count of slots overruns the page, are
    /// reported as readers report them.
    #[test]
    fn a_page_that_does_not_parse_is_reported_with_its_reason() {
        let not_a_node = check_one_leaf(|p| p[0] = 9);
        assert_eq!(not_a_node, [(FIRST_DATA_PAGE, CorruptReason::WrongPageKind)]);
        let overrun = check_one_leaf(|p| put_u16(p, 2, u16::MAX));
        assert_eq!(overrun, [(FIRST_DATA_PAGE, CorruptReason::BadLayout)]);
    }
}
