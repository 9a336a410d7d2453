//! The integrity check (`Db::check`) and salvage (`foldvault::salvage`).
//!
//! `check` makes the newest commit durable, then, holding the writer lock and with the page
//! cache emptied (so that each page is read from the file), walks every reachable page
//! (catalog, every tree, overflow chains, the free-list chain), verifying each seal and
//! parent-held tag, key order and key ranges, equal leaf depth, stored record counts,
//! and the free-space accounting: every page in `FIRST_DATA_PAGE..page_count` must be used
//! exactly once or free, never both, none leaked. It reports every problem with its page and
//! tree, not just the first; a damaged subtree is skipped and the rest still checked.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::api::{Db, Tree};
use super::config::{Config, DB_FILE_NAME, Location};
use super::migrate;
use super::open::load_catalog;
use super::page_roles::{PageRole, PageRoles, ReachedPages};
use crate::btree::salvage::{self, LostRange};
use crate::btree::verify::{Problem, check_tree_leaving_unread};
use crate::error::{CorruptReason, Error, PageNo, Result};
use crate::format::header::FileHeader;
use crate::format::{HEADER_PAGE_A, HEADER_PAGE_B, PAGE_SIZE};

/// Per-tree results. `Debug` hides the name (user data).
#[derive(Clone)]
pub struct TreeReport {
    /// The tree's name, as stored (bytes: a name need not be UTF-8).
    pub name: Vec<u8>,
    pub records: u64,
    pub pages: u64,
}

/// The result of `Db::check`.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub commit_seq: u64,
    pub page_count: u64,
    pub used_pages: u64,
    pub free_pages: u64,
    /// Bytes beyond the last committed page (writes of an interrupted commit, or appended junk).
    pub trailing_bytes: u64,
    pub trees: Vec<TreeReport>,
    pub problems: Vec<Problem>,
    /// The role of every page, as runs of pages (memory follows the pages read, not the page
    /// count: see `PageRoles`).
    pub roles: PageRoles,
}

impl std::fmt::Debug for TreeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeReport")
            .field("name_len", &self.name.len())
            .field("records", &self.records)
            .field("pages", &self.pages)
            .finish()
    }
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

pub(crate) fn tree_label(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl Db {
    /// Checks the whole database. `Ok` with problems listed when damage is found; `Err` only
    /// when the check itself cannot run (I/O error, poisoned handle).
    pub fn check(&self) -> Result<CheckReport> {
        let engine = &self.handle.engine;
        engine.refuse_inside_transaction()?;
        engine.flush()?;
        let ws = engine.lock_writer()?;
        let snap = engine.snapshot();
        let pager = &engine.pager;
        // Every page is read from the file, as the next open will read it: a cached copy does
        // not vouch for a page damaged on the disk since (compaction and check review). Every
        // committed page is in the file or its log, and no transaction runs: the writer is
        // held. The reads after the check start cold.
        pager.clear_cache();
        let page_count = ws.alloc.page_count;
        let mut reached = ReachedPages::new(page_count);
        for (p, role) in [
            (HEADER_PAGE_A, PageRole::Header),
            (HEADER_PAGE_B, PageRole::Header),
            (crate::format::COMMIT_PAGE_A, PageRole::CommitRecord),
            (crate::format::COMMIT_PAGE_B, PageRole::CommitRecord),
        ] {
            let code = reached.code(role);
            reached.mark(p, code);
        }
        let mut problems = Vec::new();
        // Header copies: both should be valid.
        for p in [HEADER_PAGE_A, HEADER_PAGE_B] {
            match pager.read_raw(p).and_then(|b| FileHeader::decode(&b[..], p)) {
                Ok(_) => {}
                Err(Error::Corrupt { page, reason }) => problems.push(Problem::one("header", page, reason)),
                // The check cannot run: not damage to report.
                Err(e @ Error::Io(_)) => return Err(e),
                // A magic or a version this reader does not know: a field, before the checksum
                // is even looked at (SPEC §2, "Validity of a copy").
                Err(Error::NotADatabase | Error::UnsupportedVersion { .. }) => {
                    problems.push(Problem::one("header", p, CorruptReason::HeaderField))
                }
                Err(_) => problems.push(Problem::one("header", p, CorruptReason::HeaderChecksum)),
            }
        }
        let mut trees = Vec::new();
        // Pages no reference read, with the role of the structure that named them: marked once
        // every structure is walked (`check_tree_leaving_unread`).
        let mut unread = Vec::new();
        let mut unread_of = |pages: Vec<PageNo>, code| unread.extend(pages.into_iter().map(|p| (p, code)));
        {
            let code = reached.code(PageRole::Catalog);
            let mut left = Vec::new();
            let n = check_tree_leaving_unread(
                pager,
                "catalog",
                snap.catalog,
                &mut |p| reached.mark(p, code),
                &mut problems,
                &mut left,
            )?;
            unread_of(left, code);
            if n != snap.trees.len() as u64 {
                problems.push(Problem::one("catalog", snap.catalog.page, CorruptReason::CountMismatch));
            }
        }
        for (name, root) in &snap.trees {
            let label = tree_label(name);
            let code = reached.code(PageRole::Tree(label.clone()));
            let mut pages = 0u64;
            let mut left = Vec::new();
            let records = check_tree_leaving_unread(
                pager,
                &label,
                root.root,
                &mut |p| {
                    // Only pages this tree holds: a page refused (reached before, by this tree
                    // or another, or past the page count) is not counted as one of its own.
                    let marked = reached.mark(p, code);
                    pages += u64::from(marked);
                    marked
                },
                &mut problems,
                &mut left,
            )?;
            unread_of(left, code);
            if records != root.count {
                problems.push(Problem::one(label.clone(), root.root.page, CorruptReason::CountMismatch));
            }
            trees.push(TreeReport { name: name.to_vec(), records, pages });
        }
        let code = reached.code(PageRole::FreeList);
        for p in ws.freelist.pages() {
            if !reached.mark(p, code) {
                problems.push(Problem::one("free list", p, CorruptReason::FreeList));
            }
        }
        // Not also called leaked (whatever else reached them reported them already).
        for (p, code) in unread {
            reached.mark(p, code);
        }
        // The free-list chain as the durable record names it, read from disk: each page's seal
        // and tag, and the list's consistency (no page recorded twice, none of its own pages
        // recorded free, the record's delta applying), as the next open will read it.
        let rec = &ws.durable;
        let on_disk = crate::pager::freelist::read(pager, rec.freelist, rec.page_count).and_then(|(free, chain)| {
            crate::pager::freelist::apply_delta(free, &chain, &rec.free_delta, ws.durable_slot)
        });
        match on_disk {
            // The leaks and double uses below are found against the allocator's free pages; what
            // the next open loads is this list: the two must agree once the snapshot is the
            // durable commit (a free-list writer's fault that recorded a live page free, or
            // left a free one out, passed the check of the handle that wrote it).
            Ok(free) if rec.seq == snap.seq => {
                // Below the record's page count: pages past it that a dropped transaction took
                // and gave back are free in the allocator and beyond the record.
                let below = |runs: Vec<(PageNo, PageNo)>| -> Vec<(PageNo, PageNo)> {
                    runs.into_iter()
                        .filter(|&(s, _)| s < rec.page_count)
                        .map(|(s, e)| (s, e.min(rec.page_count)))
                        .collect()
                };
                let unused = below(merged(&ws.alloc.all_unused()));
                if let Some(page) = first_difference(&below(merged(&free)), &unused) {
                    problems.push(Problem::one("free list", page, CorruptReason::FreeList));
                }
            }
            Ok(_) => {}
            Err(Error::Corrupt { page, reason }) => problems.push(Problem::one("free list", page, reason)),
            // A chain page past the file's end (cut short under the handle), named as a tree
            // page there is.
            Err(Error::Truncated { expected, .. }) => {
                let page = (expected / PAGE_SIZE as u64).saturating_sub(1);
                problems.push(Problem::one("free list", page, CorruptReason::PageOutOfRange))
            }
            Err(e) => return Err(e),
        }
        let free_pages = ws.alloc.unused_count();
        let used = reached.marked();
        let roles = reached.finish(&ws.alloc.all_unused(), &mut problems);
        for p in &problems {
            tracing::warn!(target: "foldvault::audit", page = p.page, pages = p.pages, reason = ?p.reason, "integrity check problem");
        }
        let file_len = pager.file_len()?;
        Ok(CheckReport {
            commit_seq: snap.seq,
            page_count,
            used_pages: used,
            free_pages,
            trailing_bytes: file_len.saturating_sub(page_count * PAGE_SIZE as u64),
            trees,
            problems,
            roles,
        })
    }
}

/// Free extents as sorted, disjoint, non-adjacent runs `[start, end)`.
fn merged(extents: &[(PageNo, u32)]) -> Vec<(PageNo, PageNo)> {
    let mut runs: Vec<(PageNo, PageNo)> =
        extents.iter().filter(|&&(_, n)| n > 0).map(|&(s, n)| (s, s.saturating_add(u64::from(n)))).collect();
    runs.sort_unstable();
    let mut out: Vec<(PageNo, PageNo)> = Vec::with_capacity(runs.len());
    for (s, e) in runs {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The first page free in one of two sets of runs (`merged`) and not in the other, if any.
fn first_difference(a: &[(PageNo, PageNo)], b: &[(PageNo, PageNo)]) -> Option<PageNo> {
    let i = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    match (a.get(i), b.get(i)) {
        (None, None) => None,
        (Some(x), None) | (None, Some(x)) => Some(x.0),
        (Some(x), Some(y)) if x.0 != y.0 => Some(x.0.min(y.0)),
        // Same start, different ends: the first page past the shorter run.
        (Some(x), Some(y)) => Some(x.1.min(y.1)),
    }
}

/// What part of a database a salvage loss is in. `Debug` shows a tree name's length only.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SalvagedPart {
    /// The catalog of named trees: a tree its lost entries named is missing from the copy.
    Catalog,
    /// `generate_id`'s reservation: the copy hands out ids from 2^62.
    IdCounter,
    /// The tree of this name (bytes, as stored).
    Tree(Vec<u8>),
}

impl std::fmt::Debug for SalvagedPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SalvagedPart::Catalog => f.write_str("Catalog"),
            SalvagedPart::IdCounter => f.write_str("IdCounter"),
            SalvagedPart::Tree(name) => write!(f, "Tree({} bytes)", name.len()),
        }
    }
}

/// What salvage copied and what it could not. `Debug` shows counts, not tree names or keys.
#[derive(Clone, Default)]
pub struct SalvageReport {
    /// Records copied, per tree name (bytes, as stored).
    pub copied: BTreeMap<Vec<u8>, u64>,
    /// Key ranges lost, per part.
    pub lost: BTreeMap<SalvagedPart, Vec<LostRange>>,
    /// What recovery found in the source: the commit copied (`seq`), and whether a newer
    /// commit record did not open (`rejected_slots`) or did not verify (`fell_back`), whose
    /// changes the copy then lacks. For a source that does not open, the commit record read
    /// and the slots that held bytes that do not open.
    pub recovery: super::engine::RecoveryReport,
}

impl std::fmt::Debug for SalvageReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalvageReport")
            .field("trees", &self.copied.len())
            .field("records", &self.copied.values().sum::<u64>())
            .field("lost_ranges", &self.lost.values().map(Vec::len).sum::<usize>())
            .finish()
    }
}

impl SalvageReport {
    /// True if a key range, a tree or a newer commit of the source is missing from the copy
    /// (a commit fallen back from, a record that does not open, a log group dropped).
    pub fn lost_anything(&self) -> bool {
        self.lost.values().any(|v| !v.is_empty())
            || self.recovery.fell_back
            || !self.recovery.rejected_slots.is_empty()
            || self.recovery.log_group_dropped
    }
}

/// Copies every record that still authenticates from the database `src` opens (read-only:
/// nothing is written to it) to a new database `dst` opens, and reports what was lost, by tree
/// and key range. A source that does not open because no commit verifies whole (a damaged
/// catalog or free-list page, say) is read from the newest commit record that opens.
///
/// A `dst` named by a file or directory is written as a copy is (`migrate::copy_to`): into a
/// temporary file beside it, synced and checked, then given the name only if it is still
/// free (`AlreadyExists` otherwise), so a salvage cut short leaves no partial database there.
pub fn salvage(src: &Config, dst: &Config) -> Result<SalvageReport> {
    let source = SalvageSource::open(src)?;
    // As for a copy (`migrate::copy_to`): the copy of an encrypted source is encrypted unless
    // `dst` asks for plaintext; under `Encryption::Auto` it needs a key, as under `Required`.
    let required;
    let dst = if source.pager.sealer.is_encrypted() && dst.encryption == super::config::Encryption::Auto {
        required = dst.clone().encryption(super::config::Encryption::Required);
        &required
    } else {
        dst
    };
    // A copy that goes away when its handle drops, or into a path the caller never named, is
    // no salvage (salvage review, low: one was reported done and then deleted, the other
    // written in place where an error left a partial database).
    if dst.temporary || matches!(dst.location, Location::Unset) {
        return Err(Error::Unsupported(
            "salvage needs a destination that stays: a file, a directory or a storage, not temporary".into(),
        ));
    }
    let (file, made_dir) = match &dst.location {
        Location::File(f) => (f.clone(), None),
        // A path that names a file already is a database there (`Config::path` opens one):
        // a salvage writes only a new one.
        Location::Dir(d) if d.is_file() => return Err(Error::AlreadyExists(d.display().to_string())),
        Location::Dir(d) => {
            // The highest directory this salvage makes (`create_dir_all` may make several).
            let top = d.ancestors().take_while(|a| !a.as_os_str().is_empty() && !a.exists()).last();
            std::fs::create_dir_all(d)?;
            (d.join(DB_FILE_NAME), top.map(|t| (d.as_path(), t)))
        }
        _ => {
            let dst_db = dst.clone().without_anchors().create_new(true).open()?;
            let report = salvage_into(&source, &dst_db)?;
            dst_db.flush()?;
            return Ok(report);
        }
    };
    let copied = migrate::copy_through_temp(&file, |tmp| {
        let dst_db = migrate::new_copy(dst, tmp)?;
        let report = salvage_into(&source, &dst_db)?;
        migrate::finish_copy(dst_db)?;
        Ok(report)
    });
    // Directories this salvage made: durable in their parents once the copy is in them (the
    // copy's own placement syncs only the directory it is in), or gone again (each empty, from
    // the deepest) if there is no copy.
    if let Some((deepest, top)) = made_dir {
        let made: Vec<&std::path::Path> = deepest.ancestors().take_while(|a| *a != top).chain([top]).collect();
        for d in made {
            match &copied {
                Ok(_) => crate::storage::sync_parent_dir(d)?,
                Err(_) => drop(std::fs::remove_dir(d)),
            }
        }
    }
    copied
}

/// A salvage's source, opened read-only (and held open, with its lock, to the end): its pager,
/// the catalog root it is read from, and what recovery found.
struct SalvageSource {
    pager: Arc<crate::pager::Pager>,
    catalog: crate::format::page::PageRef,
    recovery: super::engine::RecoveryReport,
    _db: Option<Db>,
}

impl SalvageSource {
    /// The database `src` opens; if it does not open because no commit verifies whole, its
    /// newest commit record that opens (`raw_source`).
    fn open(src: &Config) -> Result<SalvageSource> {
        let src = src.clone().read_only(true);
        match src.open() {
            Ok(db) => {
                let engine = db.handle.engine.clone();
                let catalog = engine.snapshot().catalog;
                Ok(SalvageSource {
                    pager: engine.pager.clone(),
                    catalog,
                    recovery: db.recovery_report(),
                    _db: Some(db),
                })
            }
            Err(e) if e.is_corruption() => {
                tracing::warn!(target: "foldvault::audit", error = %e, "salvage: the source does not open; reading its newest commit record that opens");
                let (pager, catalog, recovery) = raw_source(&src)?;
                Ok(SalvageSource { pager, catalog, recovery, _db: None })
            }
            Err(e) => Err(e),
        }
    }
}

fn salvage_into(source: &SalvageSource, dst_db: &Db) -> Result<SalvageReport> {
    let (pager, catalog) = (&*source.pager, source.catalog);
    let mut report = SalvageReport { recovery: source.recovery.clone(), ..SalvageReport::default() };
    // Every page the walks reach, across the catalog and every tree: each is copied once.
    let mut seen = crate::pager::pagemap::PageSet::default();
    // The catalog itself: read what authenticates.
    let trees = match load_catalog(pager, catalog) {
        Ok(t) => t,
        // A read that failed is the salvage's own error, not damage: whole trees were left out
        // of the copy, said lost, because a read failed once (error review, medium).
        Err(e @ Error::Io(_)) => return Err(e),
        Err(_) => {
            let mut t = BTreeMap::new();
            let mut undecoded = Vec::new();
            salvage::walk_unseen(
                pager,
                catalog,
                &mut seen,
                &mut |k, v| {
                    match crate::btree::TreeRoot::decode(&v) {
                        Some(r) => {
                            t.insert(k.to_vec(), r);
                        }
                        // An entry that is not a tree root loses the tree of that name, said as
                        // such (it was skipped, and the salvage said nothing was lost).
                        None => undecoded.push(LostRange {
                            lo: Some(k.to_vec()),
                            hi: Some(k.iter().copied().chain([0]).collect()),
                            page: catalog.page,
                            error: "a catalog entry that is not a tree root".into(),
                        }),
                    }
                    Ok(())
                },
                &mut |l| report.lost.entry(SalvagedPart::Catalog).or_default().push(l),
            )?;
            report.lost.entry(SalvagedPart::Catalog).or_default().append(&mut undecoded);
            t
        }
    };
    // `generate_id`'s reservation travels too (as in a copy), so ids keep increasing. If it does
    // not read, the copy's ids start at 2^62, above any a database hands out in practice, and
    // the loss is reported.
    if let Some(root) = trees.get(super::engine::IDS_TREE) {
        let ids = Tree::fixed(dst_db.handle.clone(), super::engine::IDS_TREE);
        // The counter is 8 bytes, inline: any other value (an overflow value, whose inline bytes
        // are none, or a length a forged leaf gives it) does not read either, and copied as it
        // was, the copy's ids started again from 0.
        let next = crate::btree::read::get_with(pager, None, root.root, b"next", |v| Ok(v.inline_bytes().to_vec()))
            .and_then(|v| match v {
                Some(v) if v.len() != 8 => Err(Error::corrupt(root.root.page, CorruptReason::BadLayout)),
                v => Ok(v),
            });
        match next {
            Ok(Some(v)) => drop(ids.insert(b"next", v)?),
            Ok(None) => {}
            // A read that failed ends the salvage, as in the trees (SPEC §12).
            Err(e @ Error::Io(_)) => return Err(e),
            Err(e) => {
                ids.insert(b"next", (1u64 << 62).to_le_bytes())?;
                let page = if let Error::Corrupt { page, .. } = &e { *page } else { 0 };
                let lost = LostRange { lo: None, hi: None, page, error: e.to_string() };
                report.lost.entry(SalvagedPart::IdCounter).or_default().push(lost);
            }
        }
    } else if report.lost.contains_key(&SalvagedPart::Catalog) {
        // No counter found, but part of the catalog did not read: its entry may have been
        // there (it sorts first, in the leftmost leaf), and a copy whose ids started again
        // from 0 would hand out ids the source already had (review of salvage, medium).
        Tree::fixed(dst_db.handle.clone(), super::engine::IDS_TREE).insert(b"next", (1u64 << 62).to_le_bytes())?;
        let lost = LostRange {
            lo: None,
            hi: None,
            page: catalog.page,
            error: "the catalog's entry of the id counter may be in what did not read".into(),
        };
        report.lost.entry(SalvagedPart::IdCounter).or_default().push(lost);
    }
    for (name, root) in trees {
        if name.starts_with(super::engine::RESERVED_PREFIX) {
            continue;
        }
        // A tree name longer than any write makes (a forged plaintext catalog): the tree is
        // lost, the rest copied.
        let dst_tree: Tree = match dst_db.open_tree(&name) {
            Ok(t) => t,
            Err(e @ Error::KeyTooLarge { .. }) => {
                let lost = LostRange { lo: None, hi: None, page: root.root.page, error: e.to_string() };
                report.lost.entry(SalvagedPart::Tree(name)).or_default().push(lost);
                continue;
            }
            Err(e) => return Err(e),
        };
        // A `Batch` wipes the records it holds when it goes, on an error too.
        let mut batch = super::api::Batch::default();
        let mut batch_bytes = 0u64;
        let mut n = 0u64;
        let mut lost = Vec::new();
        salvage::walk_unseen(
            pager,
            root.root,
            &mut seen,
            &mut |k, v| {
                batch_bytes += (k.len() + v.len()) as u64;
                batch.insert_owned(k.to_vec(), v);
                n += 1;
                if batch.len() >= SALVAGE_BATCH_RECORDS || batch_bytes >= super::migrate::BATCH_BYTES {
                    dst_tree.apply_batch(std::mem::take(&mut batch))?;
                    batch_bytes = 0;
                }
                Ok(())
            },
            &mut |l| lost.push(l),
        )?;
        dst_tree.apply_batch(batch)?;
        if !lost.is_empty() {
            tracing::warn!(target: "foldvault::audit", ranges = lost.len(), "salvage lost key ranges");
            report.lost.insert(SalvagedPart::Tree(name.clone()), lost);
        }
        report.copied.insert(name, n);
    }
    Ok(report)
}

/// The source of a salvage that does not open: its header unlocked, and the catalog root of the
/// newest commit record that opens, nothing else verified (salvage's walks check each page they
/// read), with the record's seq and the slots holding bytes that do not open. Read-only, as any
/// salvage source.
fn raw_source(
    cfg: &Config,
) -> Result<(Arc<crate::pager::Pager>, crate::format::page::PageRef, super::engine::RecoveryReport)> {
    let storage = super::location::read_only_location(cfg)?;
    let (header, header_page, _) = super::open::read_header(&*storage)?;
    let dk = match header.is_encrypted() {
        true => Some(super::open::unlock(&header, header_page, &cfg.effective_credentials()?)?.0),
        false => None,
    };
    let sealer = super::open::file_sealer(&header, dk.as_ref(), cfg.backends)?;
    drop(dk);
    let pager = Arc::new(crate::pager::Pager::new(storage.clone(), sealer, cfg.cache_capacity));
    pager.set_read_only();
    let pages = storage.len()? / PAGE_SIZE as u64;
    let (records, rejected_slots) = super::open::commit_slots(&pager)?;
    let (rec, _) = records
        .into_iter()
        .max_by_key(|(r, _)| r.seq)
        .ok_or_else(|| Error::corrupt(crate::format::COMMIT_PAGE_A, CorruptReason::NoValidCommit))?;
    let recovery = super::engine::RecoveryReport { seq: rec.seq, rejected_slots, ..Default::default() };
    pager.set_page_limit(rec.page_count.min(pages));
    pager.sealer.set_max_epoch(rec.key_epoch);
    Ok((pager, rec.catalog, recovery))
}

/// Salvage copies a tree in batches of at most this many records, or `migrate`'s byte limit
/// of keys and values, whichever comes first: a thousand large values would otherwise be held
/// at once.
const SALVAGE_BATCH_RECORDS: usize = 1000;

#[allow(dead_code)]
fn _assert_send(_: Arc<Db>) {}

#[cfg(test)]
mod tests {
    use crate::storage::{MemoryStorage, Storage};
    use crate::{Config, CorruptReason};
    use std::sync::Arc;

    /// The free list the durable record names must agree with the allocator's free pages: a
    /// record whose delta (as a faulty free-list writer could make it) names a live page free
    /// passed the check of the handle that wrote it, whose leak and double-use test looked at
    /// the allocator alone; the next open would have handed that page out again.
    #[test]
    fn a_durable_free_list_that_names_a_live_page_free_is_reported() {
        let s: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let db = Config::new().storage(s).plaintext().use_env(false).flush_every_ms(None).open().unwrap();
        let t = db.open_tree("t").unwrap();
        for i in 0..500u32 {
            t.insert(i.to_be_bytes(), vec![1u8; 200]).unwrap();
        }
        db.flush().unwrap();
        let report = db.check().unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        let live = report.roles.pages(|r| *r == crate::PageRole::Tree("t".into())).next().unwrap();
        db.handle.engine.writer.lock().durable.free_delta.freed.push(live);
        let report = db.check().unwrap();
        let found: Vec<_> = report.problems.iter().map(|p| (p.page, p.reason)).collect();
        assert_eq!(found, [(live, CorruptReason::FreeList)]);
    }
}
