//! Compaction: merges half-empty pages, moves the pages at the end of the file into free space
//! nearer its start, then gives the free end of the file back to the file system. SPEC.md §7.1.
//!
//! Copy-on-write never shrinks a file by itself: a commit that rewrites many pages (a large
//! removal, a rekey) puts the copies past the end and leaves the old pages free in the middle,
//! where later commits reuse them but the file keeps its length. `Db::compact` runs online, as
//! a series of durable commits that change no data:
//!
//! 0. **Merge and refill.** Neighbouring nodes that fit one page together are merged, from the
//!    leaves up (`TxPages::repack`): removals merge a leaf only once it is under a quarter
//!    full, so a hollowed tree keeps many half-empty pages. Neighbouring leaves that do not
//!    fit one page are refilled: entries move from the right one to the left one until the
//!    left is nine tenths full (`shift_left`), so a tree grown by random inserts (leaves split
//!    half full) shrinks too.
//! 1. **Move.** Each commit picks the lowest page `t` such that the pages in use at or above
//!    `t` fit in the free pages below it (`Allocator::compaction_target`), and copies every tree
//!    and overflow page at or above `t` (`CopyRule::AtOrAbove`); the allocator hands out the
//!    lowest free page first, so the copies land below `t`.
//! 2. **Trim.** Once the old copies are free (durable, and no snapshot that reads them is
//!    alive), a durable commit writes the whole free list again below the end and a record
//!    whose page count stops before the free pages that end the file. A copy of that record
//!    follows in the other slot (`Engine::copy_durable_record`), so that neither slot names a
//!    page count past the new end; only then is the file cut. Rounds repeat while the end
//!    moves (the first frees the old free-list pages).
//!
//! Invariants: no record is ever written whose pages lie past the file's end, and the file is
//! cut only to the page count of both records on disk, after both are durable; so a crash at
//! any point opens at a record whose pages the file holds. Pages a live snapshot reads are not
//! free, so they are neither overwritten nor cut: compaction with readers alive does what it
//! can and reports it.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use super::api::Db;
use super::config::Durability;
use super::engine::{Engine, Snapshot};
use crate::btree::copy::{CopyRule, InlineLeaves, RepackTally};
use crate::btree::tx::TxPages;
use crate::error::Result;
use crate::format::PAGE_SIZE;
use crate::pager::freelist;

/// What `Db::compact` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// The file's length in pages before.
    pub pages_before: u64,
    /// The file's length in pages after.
    pub pages_after: u64,
    /// Pairs of neighbouring nodes merged into one because they fitted one page.
    pub nodes_merged: u64,
    /// Pairs of neighbouring leaves that did not fit one page, between which entries moved to
    /// fill the left one to nine tenths of a page.
    pub leaves_refilled: u64,
    /// Tree and overflow pages copied lower in the file (branches on the way to a moved page
    /// included).
    pub pages_moved: u64,
    /// Durable commits made (none of them changes data).
    pub commits: u64,
}

/// One durable commit of one pass over the trees: `pass` edits the trees (a copy of the
/// snapshot's; `changed` names those it edited, `tx.catalog_root` the catalog if it did) and
/// returns what it counts. `None`, and the transaction aborted, if it changed nothing.
fn one_pass<T>(
    e: &Engine,
    pass: impl FnOnce(&mut TxPages, &Snapshot, &mut super::tree_map::TreeMap, &mut BTreeSet<Vec<u8>>) -> Result<T>,
) -> Result<Option<T>> {
    let (mut ws, mut tx, base) = e.begin()?;
    let mut trees = base.trees.clone();
    let mut changed = BTreeSet::new();
    let counted = match pass(&mut tx, &base, &mut trees, &mut changed) {
        Ok(n) => n,
        Err(err) => {
            e.abort(&mut ws, tx);
            return Err(err);
        }
    };
    if changed.is_empty() && tx.catalog_root.is_none() {
        e.abort(&mut ws, tx);
        return Ok(None);
    }
    e.commit(&mut ws, tx, &base, trees, &changed, &BTreeSet::new(), Durability::Immediate)?;
    Ok(Some(counted))
}

/// Pages copied per commit at most (64 MiB): each commit walks every tree again, so few large
/// ones beat many small ones; the memory of one is bounded as a large transaction's is (leaves
/// are written before the commit, `Config::tx_spill_after`), and other writers wait for one.
const BATCH_PAGES: usize = 16_384;
/// Bounds on the number of move commits (64 GiB moved) and trim rounds, so that readers that
/// keep freeing and holding pages cannot keep one call going; a second call goes on.
const MAX_MOVE_COMMITS: usize = 1024;
const MAX_TRIM_ROUNDS: usize = 4;
/// A move that would lower the target by less than 1/`MINOR_GAIN` of it is not made.
const MINOR_GAIN: u64 = 1024;

impl Db {
    /// Merges half-empty pages and refills leaves to nine tenths of a page, moves pages from
    /// the end of the file into free space nearer its start, and shortens the file by the free
    /// pages that then end it. Online: readers go on, and other writers wait only for the
    /// commit in progress. Changes no data (each step is a commit, so the commit sequence
    /// number advances). Pages that a live snapshot (an open `ReadTransaction`,
    /// `WriteTransaction` or iterator) may read stay where they are: compact with none open to
    /// get the smallest file.
    pub fn compact(&self) -> Result<CompactReport> {
        let e = self.handle.engine.clone();
        e.refuse_inside_transaction()?;
        e.flush()?;
        let mut report = CompactReport { pages_before: e.pager.file_len()? / PAGE_SIZE as u64, ..Default::default() };
        // Leaves found without overflow values, which later walks need not read again.
        let mut memo = InlineLeaves::default();
        for _ in 0..MAX_MOVE_COMMITS {
            let repacked = one_pass(&e, |tx, _, trees, changed| {
                // Merging writes the merged nodes to free pages before it frees the old ones: as
                // many as are free now (less room for the branches above them), so that it
                // never lengthens the file.
                let mut budget = BATCH_PAGES.min(tx.alloc.free_len().saturating_sub(64));
                let mut tally = RepackTally::default();
                for (name, mut root) in trees.owned() {
                    if budget == 0 {
                        break;
                    }
                    if tx.repack(&mut root, &mut budget, &mut tally, &mut memo)? {
                        trees.insert(name.clone(), root);
                        changed.insert(name);
                    }
                }
                // Whether the walk stopped early for want of pages.
                Ok((tally, budget == 0))
            })?;
            // None: nothing left that fits one page with its neighbour or can fill it (or no
            // free page).
            let Some((tally, cut_short)) = repacked else { break };
            report.nodes_merged += tally.merged;
            report.leaves_refilled += tally.refilled;
            report.commits += 1;
            // A walk that went through every tree leaves only what its own merges of branches
            // made neighbours (a few pairs); another walk would read every page again for them.
            if !cut_short {
                break;
            }
        }
        // The target of the last move commit, if it copied every page at or above it.
        let mut last_target: Option<u64> = None;
        for _ in 0..MAX_MOVE_COMMITS {
            let moved = one_pass(&e, |tx, base, trees, changed| {
                let target = tx.alloc.compaction_target();
                if target >= tx.alloc.page_count {
                    return Ok((0, target, false));
                }
                // Each move lowers the target by about an eighth of what the one before did
                // (the slack `compaction_target` keeps): once a move would give back under
                // 1/1024 of the file, the moves left would give back about as little, for a
                // walk of every tree each.
                if last_target.is_some_and(|last| last.saturating_sub(target) < target / MINOR_GAIN) {
                    return Ok((0, target, false));
                }
                let rule = CopyRule::AtOrAbove(target);
                let mut budget = BATCH_PAGES;
                for (name, mut root) in trees.owned() {
                    if budget == 0 {
                        break;
                    }
                    if tx.copy_where(&mut root.root, rule, &mut budget, Some(&mut memo))? {
                        trees.insert(name.clone(), root);
                        changed.insert(name);
                    }
                }
                let mut cat = base.catalog;
                if budget > 0 && tx.copy_where(&mut cat, rule, &mut budget, Some(&mut memo))? {
                    tx.catalog_root = Some(cat);
                }
                Ok(((BATCH_PAGES - budget) as u64, target, budget == 0))
            })?;
            // None: no tree page is left at or above `t` (what is there is free-list pages or
            // pages still waiting for a reader, which the trim below deals with), or too few to
            // be worth a walk.
            let Some((n, target, cut_short)) = moved else { break };
            last_target = (!cut_short).then_some(target);
            report.pages_moved += n;
            report.commits += 1;
        }
        for round in 0..MAX_TRIM_ROUNDS {
            // `begin` hands the pages the moves freed to the allocator, if no reader holds them.
            let (mut ws, tx, _) = e.begin()?;
            e.abort(&mut ws, tx);
            let before = ws.alloc.page_count;
            // The whole list is about to be written: its pages must come from free pages below
            // the new end, or it would lengthen the file it is meant to shorten.
            let need = freelist::whole_list_pages(&ws.alloc, &ws.freelist);
            if ws.alloc.free_len() < need {
                break;
            }
            // The first round after a move also writes the free list again below the end,
            // even with nothing to trim yet: its old pages may be what ends the file. So does a
            // first round whose list has a page where the moves would have cleared (merges
            // alone can leave every tree page low and the list's pages ending the file).
            // (The target is taken once, and only when no move ran: it walks the free pages.)
            let list_high = round == 0 && report.pages_moved == 0 && {
                let target = ws.alloc.compaction_target();
                ws.freelist.pages().any(|p| p >= target)
            };
            if ws.alloc.trim_free_tail(need) == 0 && (round > 0 || (report.pages_moved == 0 && !list_high)) {
                break;
            }
            ws.alloc.forget_unused_since();
            e.undurable.store(true, Ordering::Release);
            e.durable_commit(&mut ws)?;
            {
                let _syncing = e.sync_lock.lock();
                e.copy_durable_record(&mut ws)?;
            }
            report.commits += 2;
            e.pager.truncate(ws.alloc.page_count)?;
            // Round 0 may only have moved the list off the end (its old pages are free from
            // round 1 on), so it goes on to round 1 even if the end stayed.
            if ws.alloc.page_count >= before && round > 0 {
                break;
            }
        }
        report.pages_after = e.pager.file_len()? / PAGE_SIZE as u64;
        tracing::info!(
            target: "foldvault::audit",
            pages_before = report.pages_before,
            pages_after = report.pages_after,
            pages_moved = report.pages_moved,
            nodes_merged = report.nodes_merged,
            leaves_refilled = report.leaves_refilled,
            "compacted"
        );
        Ok(report)
    }
}
