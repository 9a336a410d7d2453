//! Plaintext files forged with every seal and parent-held tag recomputed (a CRC32 anyone can
//! redo, SPEC §3): each page passes its check, and what the values say must still not make the
//! engine panic, loop or lose a commit.
//! - One branch's two children are one page: only a walk that remembers the pages it reached
//!   can see it. Every whole-tree operation names the shared page (`DoubleReference`) and walks
//!   it once; nested, such sharing made exponentially many paths, which backup writing (and,
//!   over empty leaves, a cursor, and compaction's walks: `src/btree/damage_tests.rs`) went
//!   down one by one.
//! - A commit sequence number near 2^64, a record count of 2^64 - 1, a page count and catalog
//!   page near 2^62: arithmetic on them overflowed (a panic in debug builds; in release, a
//!   commit recorded under a number no open accepts).
//! - A tree name longer than any write makes: salvage loses that tree whole, not the salvage.
//! - A free-list page naming itself as the next (its CRC32 forced to the tag it holds): the
//!   chain's read looped up to the page count.

#[path = "common/plain_forge.rs"]
mod plain_forge;

use foldvault::format::page::{PAGE_HEADER_SIZE, PAGE_REF_SIZE, PageKind, generation, write_header};
use foldvault::{Config, CorruptReason, Error, PageRole};
use plain_forge::{edit_commits, edit_page, identity, read_page, ref_of, reseal_plain, write_page};

fn cfg(path: &std::path::Path) -> Config {
    Config::new().file(path).plaintext().use_env(false).flush_every_ms(None).write_ahead_log(false)
}

/// A plaintext file at `path` with one record in tree `t`, closed; its check's report.
fn one_record(path: &std::path::Path) -> foldvault::CheckReport {
    let db = cfg(path).open().unwrap();
    db.open_tree("t").unwrap().insert("a", &b"1"[..]).unwrap();
    db.flush().unwrap();
    db.check().unwrap()
}

/// As `one_record`; the catalog's page and the page of tree `t` (a leaf, its root).
fn one_record_pages(path: &std::path::Path) -> (u64, u64) {
    let report = one_record(path);
    let catalog: Vec<u64> = report.roles.pages(|r| *r == PageRole::Catalog).collect();
    let root: Vec<u64> = report.roles.pages(|r| *r == PageRole::Tree("t".into())).collect();
    assert_eq!((catalog.len(), root.len()), (1, 1));
    (catalog[0], root[0])
}

/// As `one_record`, with the catalog's record count of tree `t` forged to `count`.
fn one_record_counted(path: &std::path::Path, count: u64) {
    let (catalog, root) = one_record_pages(path);
    let mut root_ref = vec![0u8; PAGE_REF_SIZE];
    ref_of(path, root).encode(&mut root_ref);
    edit_page(path, catalog, &[], |b| {
        let at =
            b.windows(PAGE_REF_SIZE).position(|w| w == root_ref).expect("the catalog names the root") + PAGE_REF_SIZE;
        b[at..at + 8].copy_from_slice(&count.to_le_bytes());
    });
}

/// A database at `path` with 2,000 records in tree `t`, closed: its one catalog page, the root
/// branch of its two-level tree and that branch's first child.
fn two_level_tree(path: &std::path::Path) -> (Vec<u64>, u64, u64) {
    let db = cfg(path).open().unwrap();
    let t = db.open_tree("t").unwrap();
    for i in 0..2000u32 {
        t.insert(i.to_be_bytes(), vec![7u8; 40]).unwrap();
    }
    db.flush().unwrap();
    let report = db.check().unwrap();
    drop((t, db));
    let catalog: Vec<u64> = report.roles.pages(|r| *r == PageRole::Catalog).collect();
    let tree: Vec<u64> = report.roles.pages(|r| *r == PageRole::Tree("t".into())).collect();
    let branches: Vec<u64> = tree.iter().copied().filter(|&p| read_page(path, p)[0] == 1).collect();
    assert_eq!((catalog.len(), branches.len()), (1, 1), "a one-page catalog and a two-level tree");
    let first = PAGE_HEADER_SIZE;
    let leaf = u64::from_le_bytes(read_page(path, branches[0])[first..first + 8].try_into().unwrap());
    (catalog, branches[0], leaf)
}

#[test]
fn a_branch_whose_children_are_one_page_is_named_and_walked_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forged.fv");
    let (catalog, root, leaf) = two_level_tree(&path);
    // The first leaf is emptied, and child 1 becomes child 0: the empty leaf is reached twice
    // (no key out of its range gives the sharing away), the second leaf not at all.
    let first = PAGE_HEADER_SIZE;
    edit_page(&path, leaf, &[root, catalog[0]], |b| {
        let g = generation(b);
        write_header(b, PageKind::Leaf, 0, g);
    });
    edit_page(&path, root, &catalog, |b| {
        b.copy_within(first..first + PAGE_REF_SIZE, first + PAGE_REF_SIZE);
    });

    let db = cfg(&path).open().unwrap();
    let report = db.check().unwrap();
    let shared: Vec<_> = report.problems.iter().filter(|p| p.reason == CorruptReason::DoubleReference).collect();
    assert!(shared.len() == 1 && shared[0].page == leaf, "{:?}", report.problems);
    let e = db.backup_to(Vec::new(), &mut |_| {}).unwrap_err();
    assert!(matches!(e, Error::Corrupt { page, reason: CorruptReason::DoubleReference } if page == leaf), "{e:?}");
    // Iteration passes over the empty leaf, meets it again, and stops there.
    let t = db.open_tree("t").unwrap();
    let e = t.iter().next().unwrap().unwrap_err();
    assert!(matches!(e, Error::Corrupt { page, reason: CorruptReason::DoubleReference } if page == leaf), "{e:?}");
    drop((t, db));

    let dst = dir.path().join("salvaged.fv");
    let report = foldvault::salvage(&cfg(&path), &cfg(&dst)).unwrap();
    assert!(report.lost_anything(), "{report:?}");
    let copy = cfg(&dst).open().unwrap().open_tree("t").unwrap();
    let keys: Vec<Vec<u8>> = copy.iter().map(|r| r.unwrap().0.to_vec()).collect();
    let mut unique = keys.clone();
    unique.dedup();
    assert!(keys.len() == unique.len() && keys.len() < 2000, "each surviving record once: {}", keys.len());
}

/// A branch whose first child reference names page 2 (no tree page can be there) is reported
/// once, and its other children are still walked: only the first leaf, no longer reached, is
/// a leaked page (compaction and check review: the walk stopped at the bad reference, and every
/// later leaf was reported leaked and its records uncounted).
#[test]
fn a_bad_child_reference_leaves_its_siblings_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad-child.fv");
    let (catalog, root, leaf) = two_level_tree(&path);
    let first = PAGE_HEADER_SIZE;
    edit_page(&path, root, &catalog, |b| b[first..first + 8].copy_from_slice(&2u64.to_le_bytes()));

    let problems = cfg(&path).open().unwrap().check().unwrap().problems;
    assert!(problems.iter().any(|p| p.page == root && p.reason == CorruptReason::BadLayout), "{problems:?}");
    let leaked: Vec<_> = problems.iter().filter(|p| p.reason == CorruptReason::FreeList).collect();
    assert!(leaked.len() == 1 && leaked[0].page == leaf && leaked[0].pages == 1, "{problems:?}");
}

/// A branch whose child references all name its first leaf is one `DoubleReference` problem,
/// not one per child (review of the session's last commits: the problems were kept apart per
/// page walked, and each repeated child was a page walked).
#[test]
fn children_that_all_name_one_page_are_one_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one-child.fv");
    let (catalog, root, _) = two_level_tree(&path);
    let children = u16::from_le_bytes(read_page(&path, root)[2..4].try_into().unwrap()) as usize + 1;
    assert!(children > 3, "{children} children");
    let first = PAGE_HEADER_SIZE;
    edit_page(&path, root, &catalog, |b| {
        for i in 1..children {
            b.copy_within(first..first + PAGE_REF_SIZE, first + i * PAGE_REF_SIZE);
        }
    });
    let problems = cfg(&path).open().unwrap().check().unwrap().problems;
    let shared = problems.iter().filter(|p| p.reason == CorruptReason::DoubleReference).count();
    assert_eq!(shared, 1, "{problems:?}");
}

/// Commits run up to the last number a record can hold, then writes are refused (`Unsupported`),
/// and every acknowledged commit is there after a reopen. The addition overflowed at the
/// second commit (a panic in debug); in release a commit was recorded under `u64::MAX`, which
/// no open accepts, and was lost.
#[test]
fn a_commit_sequence_at_its_end_refuses_writes_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.fv");
    let db = cfg(&path).open().unwrap();
    db.insert("k", &b"v"[..]).unwrap();
    db.flush().unwrap();
    drop(db);
    let offset = u64::MAX - 10;
    let edited = edit_commits(&path, |r| {
        r.seq += offset;
        r.prev_durable_seq += offset;
    });
    assert!(edited >= 1, "no commit record was forged");
    let db = cfg(&path).open().unwrap();
    let mut acked = Vec::new();
    let refused =
        (0..20u32).find_map(|i| match db.insert(i.to_be_bytes(), &b"w"[..]).and_then(|_| db.flush().map(drop)) {
            Ok(()) => {
                acked.push(i);
                None
            }
            Err(e) => Some(e),
        });
    assert!(matches!(refused, Some(Error::Unsupported(_))), "{refused:?}");
    assert!(!acked.is_empty() && acked.len() < 10, "{acked:?}");
    drop(db);
    let db = cfg(&path).open().unwrap();
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    for i in acked {
        assert!(db.get(i.to_be_bytes()).unwrap().is_some(), "acknowledged commit {i} lost");
    }
}

/// A tree whose record count reads 2^64 - 1 takes an insert: the count stays there (it
/// overflowed, a panic in debug), and the check reports the mismatch.
#[test]
fn a_record_count_at_its_end_saturates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("count.fv");
    one_record_counted(&path, u64::MAX);
    let db = cfg(&path).open().unwrap();
    let t = db.open_tree("t").unwrap();
    assert_eq!(t.len(), u64::MAX as usize);
    t.insert("b", &b"2"[..]).unwrap();
    assert_eq!(t.len(), u64::MAX as usize);
    let problems = db.check().unwrap().problems;
    assert!(problems.iter().any(|p| p.reason == CorruptReason::CountMismatch), "{problems:?}");
}

/// `pagedump --tree` on a file whose newest record claims 2^62 pages and a catalog at page
/// 2^60 ends with an error, not a panic (the page's byte offset overflowed): the catalog lies
/// past the file's pages, `PageOutOfRange`, exit 4 (corruption) with that page named. The
/// default view of a record claiming 2^64 - 1 pages and a free list at page 2^62 does not panic
/// either (it reads each record's free list, and took the record's page count as the limit of
/// its reads): it shows the records as they decode, forged count included, and exits 0.
#[test]
fn pagedump_of_a_record_claiming_a_huge_file_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.fv");
    one_record(&path);
    let clean = std::fs::read(&path).unwrap();
    type Forge = fn(&mut foldvault::format::commit::CommitRecord);
    // Each forgery, pagedump's arguments, its exit code and what it says (on standard error
    // for an error, else on standard output).
    let forged: [(&[&str], Forge, i32, String); 2] = [
        (
            &["--tree", "t"],
            |r| {
                r.page_count = 1 << 62;
                r.catalog.page = 1 << 60;
            },
            4,
            format!("corrupt page {}: page number out of range", 1u64 << 60),
        ),
        (
            &[],
            |r| {
                r.page_count = u64::MAX;
                r.freelist.page = 1 << 62;
            },
            0,
            format!("page count {}", u64::MAX),
        ),
    ];
    for (args, forge, code, said) in forged {
        std::fs::write(&path, &clean).unwrap();
        assert!(edit_commits(&path, forge) >= 1, "{args:?}: no commit record was forged");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pagedump"))
            .arg(&path)
            .args(args)
            .env_clear()
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.code() != Some(101) && !err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        let text = if code == 0 { String::from_utf8_lossy(&out.stdout) } else { err };
        assert!(text.contains(&said), "{args:?}: {said:?} not said in {text}");
    }
}

/// A free-list page that names itself as the next one (its CRC32 forced to the tag it holds):
/// the open reads it once, and fails `DoubleReference`. The chain's only bound was the page
/// count, billions on a sparse file, 8 bytes a turn.
#[test]
fn a_free_list_chain_that_loops_is_refused_at_open() {
    use foldvault::format::page::{PageRef, SealTag, write_header};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loop.fv");
    one_record(&path);
    let (file_id, version) = plain_forge::identity(&path);
    let page_count = std::fs::metadata(&path).unwrap().len() / plain_forge::PAGE;
    let mut seq = 0;
    assert!(edit_commits(&path, |r| seq = seq.max(r.seq)) >= 1, "no commit record decodes");
    let tag = SealTag([0x5a, 0xa5, 0x3c, 0xc3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let me = PageRef { page: page_count, tag, generation: seq };
    let mut list = read_page(&path, 2);
    list[..foldvault::format::page::PAYLOAD_SIZE].fill(0);
    write_header(&mut list, PageKind::FreeList, 0, seq);
    me.encode(&mut list[PAGE_HEADER_SIZE..]);
    plain_forge::force_crc(&mut list, page_count, &file_id, version, u32::from_le_bytes([0x5a, 0xa5, 0x3c, 0xc3]));
    plain_forge::write_page(&path, page_count, &list);
    let edited = edit_commits(&path, |r| {
        r.freelist = me;
        r.page_count = page_count + 1;
        r.free_delta = Default::default();
    });
    assert!(edited >= 1, "no commit record was forged");
    let e = cfg(&path).open().map(|_| ()).unwrap_err();
    assert!(
        matches!(e, Error::Corrupt { page, reason: CorruptReason::DoubleReference } if page == page_count),
        "{e:?}"
    );
}

/// A catalog naming a tree with a name one byte longer than `MAX_KEY_LEN` (its leaf entry
/// rewritten, resealed): the check reports the catalog leaf (`BadLayout`), and salvage loses
/// that tree whole, under its own label, and copies every other tree.
#[test]
fn a_tree_name_longer_than_any_write_makes_is_lost_whole_in_salvage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long-name.fv");
    let long = vec![b'z'; foldvault::MAX_KEY_LEN];
    let db = cfg(&path).open().unwrap();
    for name in [&b"good"[..], &long] {
        let t = db.open_tree(name).unwrap();
        for i in 0..50u32 {
            t.insert(i.to_be_bytes(), &b"value"[..]).unwrap();
        }
    }
    db.flush().unwrap();
    let report = db.check().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    drop(db);
    let catalog: Vec<u64> = report.roles.pages(|r| *r == PageRole::Catalog).collect();
    assert_eq!(catalog.len(), 1, "a one-page catalog");
    // The long name's entry (`key_len u16 ‖ value_kind u8 ‖ value_len u32 ‖ key ‖ value`, SPEC
    // §4.1) is the last one packed; written again one key byte longer, it still fits the page.
    edit_page(&path, catalog[0], &[], |b| {
        let at = b.windows(long.len()).position(|w| w == long).expect("the catalog holds the name") - 7;
        let offsets = (0..foldvault::format::page::count(b) as usize)
            .map(|i| u16::from_le_bytes([b[PAGE_HEADER_SIZE + 2 * i], b[PAGE_HEADER_SIZE + 2 * i + 1]]) as usize);
        assert_eq!(offsets.max(), Some(at), "the long name's entry is the last one packed");
        let value_len = u32::from_le_bytes(b[at + 3..at + 7].try_into().unwrap()) as usize;
        let value = b[at + 7 + long.len()..at + 7 + long.len() + value_len].to_vec();
        assert!(at + 7 + long.len() + 1 + value_len <= foldvault::format::page::PAYLOAD_SIZE);
        b[at..at + 2].copy_from_slice(&(long.len() as u16 + 1).to_le_bytes());
        b[at + 7..at + 7 + long.len() + 1].fill(b'z');
        b[at + 8 + long.len()..at + 8 + long.len() + value_len].copy_from_slice(&value);
    });

    let db = cfg(&path).open().unwrap();
    let problems = db.check().unwrap().problems;
    assert!(problems.iter().any(|p| p.page == catalog[0] && p.reason == CorruptReason::BadLayout), "{problems:?}");
    // A copy, a checksum (and the command line's dump) call it the same damage, not the
    // caller's `KeyTooLarge` (a usage error on the command line).
    let r = db.checksum().map(|_| ());
    assert!(
        matches!(r, Err(foldvault::Error::Corrupt { page, reason: CorruptReason::BadLayout }) if page == catalog[0]),
        "{r:?}"
    );
    let copy = dir.path().join("copy.fv");
    let r = foldvault::migrate::copy_to(&db, &copy, &cfg(&copy), &mut |_| ()).map(|_| ());
    assert!(
        matches!(r, Err(foldvault::Error::Corrupt { page, reason: CorruptReason::BadLayout }) if page == catalog[0]),
        "{r:?}"
    );
    drop(db);
    let dst = dir.path().join("salvaged.fv");
    let report = foldvault::salvage(&cfg(&path), &cfg(&dst)).unwrap();
    assert_eq!(report.lost.len(), 1, "{report:?}");
    let (label, ranges) = report.lost.iter().next().unwrap();
    assert_eq!(*label, foldvault::SalvagedPart::Tree(vec![b'z'; long.len() + 1]), "the lost part is that tree");
    assert!(ranges.len() == 1 && ranges[0].lo.is_none() && ranges[0].hi.is_none(), "{ranges:?}");
    let copy = cfg(&dst).open().unwrap();
    let names: Vec<Vec<u8>> = copy.tree_names().iter().map(|n| n.to_vec()).filter(|n| !n.starts_with(b"__")).collect();
    assert_eq!(names, [b"good".to_vec()]);
    assert_eq!(copy.open_tree("good").unwrap().len(), 50);
}

/// A tree whose record count reads 0 while it holds a record: a batch in a write transaction
/// that removes the record empties the tree. The count cannot tell (it stays 0); had the
/// transaction judged by it, the catalog would keep the old root while the commit freed the
/// pages the removal had copied, and later writes would take pages the catalog still names.
#[test]
fn a_batch_removal_under_a_record_count_of_zero_frees_only_what_the_catalog_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zero.fv");
    one_record_counted(&path, 0);
    let db = cfg(&path).open().unwrap();
    let tx = db.begin_write().unwrap();
    let mut batch = foldvault::Batch::default();
    batch.remove("a");
    tx.open_tree("t").unwrap().apply_batch(&batch).unwrap();
    tx.commit().unwrap();
    let t = db.open_tree("t").unwrap();
    assert_eq!(t.get("a").unwrap(), None, "the removal is committed");
    // Later commits reuse what the removal freed: none of it may be a page the tree holds.
    for i in 0..50u32 {
        t.insert(i.to_be_bytes(), vec![3u8; 200]).unwrap();
    }
    db.flush().unwrap();
    let problems = db.check().unwrap().problems;
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(t.len(), 50);
}

/// A tree whose stored record count is not the records it holds: the database opens and takes
/// writes, but verify and restore refuse a backup of it (`CountMismatch`), so `backup_to`
/// refuses to write one, before writing a byte (a review's case: it wrote a backup that could
/// never be restored).
#[test]
fn a_backup_of_a_tree_whose_count_is_wrong_is_refused_before_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("miscounted.fv");
    one_record_counted(&path, 5);
    let db = cfg(&path).open().unwrap();
    let mut out = Vec::new();
    let e = db.backup_to(&mut out, &mut |_| {}).unwrap_err();
    assert!(matches!(e, Error::Corrupt { reason: CorruptReason::CountMismatch, .. }), "{e:?}");
    assert!(out.is_empty(), "{} bytes written", out.len());
}

/// A plaintext database whose one tree page lies past 2^20 free pages (moved there by hand: a
/// small tree written after a 4 GiB one was dropped can end up the same). Verify and restore
/// refuse a plaintext backup with that many free pages below a page, lest a forged stream make
/// a file of any length; `backup_to` refuses it too, before writing a byte, rather than write
/// a backup that cannot be restored.
#[test]
fn a_backup_that_restore_would_refuse_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("far.fv");
    let (catalog, root) = one_record_pages(&path);
    // The leaf, resealed for a page far past the end (the file stays sparse), and the catalog's
    // reference and the records' page count made to fit.
    let far = (1u64 << 20) + 100;
    let (file_id, version) = identity(&path);
    let old = ref_of(&path, root);
    let mut leaf = read_page(&path, root);
    let tag = reseal_plain(&mut leaf, far, &file_id, version);
    write_page(&path, far, &leaf);
    let (mut from, mut to) = (vec![0u8; PAGE_REF_SIZE], vec![0u8; PAGE_REF_SIZE]);
    old.encode(&mut from);
    foldvault::format::page::PageRef { page: far, tag, ..old }.encode(&mut to);
    edit_page(&path, catalog, &[], |b| {
        let at = b.windows(PAGE_REF_SIZE).position(|w| w == from).expect("the catalog names the root");
        b[at..at + PAGE_REF_SIZE].copy_from_slice(&to);
    });
    assert!(edit_commits(&path, |rec| rec.page_count = far + 1) >= 1, "no commit record was forged");
    let db = cfg(&path).open().unwrap();
    assert_eq!(db.open_tree("t").unwrap().get("a").unwrap().as_deref(), Some(&b"1"[..]), "the moved tree reads");
    let mut out = Vec::new();
    let err = db.backup_to(&mut out, &mut |_| {}).map(|_| ()).unwrap_err();
    assert!(matches!(err, Error::Unsupported(ref m) if m.contains("compact the source")), "{err:?}");
    assert!(out.is_empty(), "{} bytes written", out.len());
}

/// A leaf whose 2,020 slots all point at one 7-byte entry (an empty key and value, at the end of
/// the page): every entry after the first is out of order. `check` reports that once for the
/// page, not once per entry (a file of a few MB of such pages made millions of problems, each
/// with its tree's name and an audit line); salvage keeps the one entry.
#[test]
fn a_leaf_of_one_entry_repeated_is_one_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repeated.fv");
    let (catalog, root) = one_record_pages(&path);
    let (n, entry) = (2020usize, 4056usize);
    edit_page(&path, root, &[catalog], |b| {
        leaf_of_one_slot_repeated(b, n, entry);
    });
    let db = cfg(&path).open().unwrap();
    a_few_problems_all_on(&db, root);
    drop(db);
    let out = dir.path().join("salvaged.fv");
    let report = foldvault::salvage(&cfg(&path), &cfg(&out)).unwrap();
    assert_eq!(report.copied.get(&b"t"[..]), Some(&1));
}

/// Makes `b` an empty leaf of `n` slots that all point at the entry at byte `entry`.
fn leaf_of_one_slot_repeated(b: &mut [u8], n: usize, entry: usize) {
    let generation = generation(b);
    b.fill(0);
    write_header(b, PageKind::Leaf, n as u16, generation);
    for i in 0..n {
        b[PAGE_HEADER_SIZE + 2 * i..PAGE_HEADER_SIZE + 2 * i + 2].copy_from_slice(&(entry as u16).to_le_bytes());
    }
}

/// The check finds one to three problems, all on page `page`.
fn a_few_problems_all_on(db: &foldvault::Db, page: u64) {
    let problems = db.check().unwrap().problems;
    assert!(
        !problems.is_empty() && problems.len() <= 3 && problems.iter().all(|p| p.page == page),
        "{} problems: {:?}",
        problems.len(),
        problems.iter().take(5).collect::<Vec<_>>()
    );
}

/// A leaf whose 1,500 slots all point at one entry with an over-long key (1,025 bytes) is one
/// problem per reason, though the two reasons (order, length) come by turns (compaction and
/// check review, medium: only the last problem was compared, and the leaf gave about 3,000).
#[test]
fn a_repeated_over_long_key_is_one_problem_per_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repeated-long.fv");
    let (catalog, root) = one_record_pages(&path);
    let (n, entry, klen) = (1500usize, 3024usize, 1025usize);
    edit_page(&path, root, &[catalog], |b| {
        leaf_of_one_slot_repeated(b, n, entry);
        let at = entry;
        b[at..at + 2].copy_from_slice(&(klen as u16).to_le_bytes());
        // value kind 0 (inline) and length 0 follow, zero already; then the key.
        b[at + 7..at + 7 + klen].fill(b'k');
    });
    let db = cfg(&path).open().unwrap();
    a_few_problems_all_on(&db, root);
}

/// A catalog whose entries for two trees name one root: salvage copies that tree's records
/// once, for the first tree, and reports the second lost (`DoubleReference`) rather than copy
/// the records again under its name (a catalog of 37,000 such entries, about 4 MB, made a copy
/// of many GB, a tree's pages once per entry).
#[test]
fn trees_that_share_a_root_are_salvaged_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared-root.fv");
    let db = cfg(&path).open().unwrap();
    for (name, n) in [("a", 300u32), ("b", 5)] {
        let t = db.open_tree(name).unwrap();
        for i in 0..n {
            t.insert(i.to_be_bytes(), vec![b'v'; 50]).unwrap();
        }
    }
    db.flush().unwrap();
    let report = db.check().unwrap();
    drop(db);
    let catalog: Vec<u64> = report.roles.pages(|r| *r == PageRole::Catalog).collect();
    let root_of = |name: &str| report.roles.pages(|r| *r == PageRole::Tree(name.into())).min().unwrap();
    let (a, b) = (root_of("a"), root_of("b"));
    let entry = |page: u64| {
        let mut r = vec![0u8; PAGE_REF_SIZE];
        ref_of(&path, page).encode(&mut r);
        r
    };
    let (entry_a, entry_b) = (entry(a), entry(b));
    edit_page(&path, catalog[0], &[], |p| {
        let at = |r: &[u8]| p.windows(PAGE_REF_SIZE).position(|w| w == r).expect("the catalog names the root");
        let (ia, ib) = (at(&entry_a), at(&entry_b));
        // The root and the record count after it.
        let value: Vec<u8> = p[ia..ia + PAGE_REF_SIZE + 8].to_vec();
        p[ib..ib + PAGE_REF_SIZE + 8].copy_from_slice(&value);
    });
    let out = dir.path().join("salvaged.fv");
    let report = foldvault::salvage(&cfg(&path), &cfg(&out)).unwrap();
    assert_eq!(report.copied.get(&b"a"[..]), Some(&300));
    assert_eq!(report.copied.get(&b"b"[..]), Some(&0));
    let lost = report.lost.get(&foldvault::SalvagedPart::Tree(b"b".to_vec())).expect("b is reported lost");
    assert!(lost.iter().any(|l| l.error.contains("DoubleReference") || l.error.contains("twice")), "{lost:?}");
    let copy = cfg(&out).open().unwrap();
    assert_eq!(copy.open_tree("b").unwrap().len(), 0);
    assert!(copy.check().unwrap().is_ok());
}

/// The newest commit record damaged: the source opens at the commit before it, and salvage
/// copies that one. Its report says so (`recovery`, `lost_anything`): the newer commit's
/// changes are missing from the copy, which the report once left out (the command line found
/// it by an open of its own, which a source that does not open at all could not give).
#[test]
fn a_salvage_from_an_older_commit_reports_the_newer_one_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newest-damaged.fv");
    let db = cfg(&path).checkpoint_on_close(false).open().unwrap();
    let t = db.open_tree("t").unwrap();
    t.insert("a", &b"1"[..]).unwrap();
    db.flush().unwrap();
    t.insert("b", &b"2"[..]).unwrap();
    db.flush().unwrap();
    drop((t, db));
    let (_, version) = identity(&path);
    let seq_in = |slot: u64| {
        let b = read_page(&path, slot);
        foldvault::format::commit::CommitRecord::decode(&b[..foldvault::format::page::PAYLOAD_SIZE], slot, version)
            .unwrap()
            .seq
    };
    let newest = if seq_in(2) > seq_in(3) { 2 } else { 3 };
    let mut b = read_page(&path, newest);
    b[40] ^= 1;
    write_page(&path, newest, &b);
    let out = dir.path().join("salvaged.fv");
    let report = foldvault::salvage(&cfg(&path), &cfg(&out)).unwrap();
    assert_eq!(report.copied.get(&b"t"[..]), Some(&1));
    assert_eq!(report.recovery.rejected_slots, vec![newest]);
    assert!(report.lost_anything(), "{report:?}");
}

/// The library's salvage of an encrypted source into a configuration that names no
/// encryption and no key is refused, as a copy's is (`migrate::copy_to`): it once wrote the
/// records out as plaintext. With a key the copy is encrypted.
#[test]
fn a_salvage_of_an_encrypted_source_is_not_written_in_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("encrypted.fv");
    let enc = |p: &std::path::Path| {
        Config::new()
            .file(p)
            .passphrase("salvage")
            .kdf(foldvault::KdfParams::insecure_fast())
            .use_env(false)
            .write_ahead_log(false)
    };
    enc(&path).open().unwrap().insert("a", &b"secret"[..]).unwrap();
    let out = dir.path().join("copy.fv");
    let bare = Config::new().file(&out).use_env(false).write_ahead_log(false);
    let r = foldvault::salvage(&enc(&path), &bare);
    assert!(matches!(r, Err(foldvault::Error::WrongKey { .. })), "{r:?}");
    assert!(!out.exists(), "a copy was left at the target");
    foldvault::salvage(&enc(&path), &enc(&out)).unwrap();
    assert!(enc(&out).open().unwrap().is_encrypted());
}

/// A catalog naming a tree root past the file's end, or on a header page: `check` names it as
/// a read would (`PageOutOfRange`, `BadLayout`), not as a page referenced twice, which it was
/// reported as (the page-marking step refuses such a page before it is read).
#[test]
fn a_root_no_tree_page_can_have_is_named_as_such() {
    for (page, want) in [(1u64 << 40, CorruptReason::PageOutOfRange), (1, CorruptReason::BadLayout)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("far-root.fv");
        let (catalog, root) = one_record_pages(&path);
        let old = ref_of(&path, root);
        let (mut from, mut to) = (vec![0u8; PAGE_REF_SIZE], vec![0u8; PAGE_REF_SIZE]);
        old.encode(&mut from);
        foldvault::format::page::PageRef { page, ..old }.encode(&mut to);
        edit_page(&path, catalog, &[], |b| {
            let at = b.windows(PAGE_REF_SIZE).position(|w| w == from).expect("the catalog names the root");
            b[at..at + PAGE_REF_SIZE].copy_from_slice(&to);
        });
        let db = cfg(&path).open().unwrap();
        let problems = db.check().unwrap().problems;
        assert!(problems.iter().any(|p| p.page == page && p.reason == want), "{page}: {problems:?}");
        assert!(!problems.iter().any(|p| p.reason == CorruptReason::DoubleReference), "{page}: {problems:?}");
    }
}

/// `generate_id`'s counter forged to 3 bytes: salvage reports it lost and the copy's ids start
/// at 2^62, above any the source handed out; it copied the 3 bytes as they were, and the
/// copy's ids started again from 0.
#[test]
fn an_id_counter_that_does_not_read_is_salvaged_as_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ids.fv");
    let db = cfg(&path).open().unwrap();
    for _ in 0..5 {
        db.generate_id().unwrap();
    }
    db.insert("a", &b"1"[..]).unwrap();
    db.flush().unwrap();
    let report = db.check().unwrap();
    drop(db);
    let catalog: Vec<u64> = report.roles.pages(|r| *r == PageRole::Catalog).collect();
    let ids: Vec<u64> = report.roles.pages(|r| *r == PageRole::Tree("\0foldvault.ids".into())).collect();
    assert_eq!((catalog.len(), ids.len()), (1, 1));
    edit_page(&path, ids[0], &catalog, |b| {
        // The entry's header before the key: key length 4, kind 0 (inline), value length 8.
        let at = b.windows(11).position(|w| w == b"\x04\x00\x00\x08\x00\x00\x00next").expect("the counter's entry");
        b[at + 3] = 3;
    });
    let out = dir.path().join("salvaged.fv");
    let report = foldvault::salvage(&cfg(&path), &cfg(&out)).unwrap();
    assert!(report.lost.contains_key(&foldvault::SalvagedPart::IdCounter), "{report:?}");
    assert!(cfg(&out).open().unwrap().generate_id().unwrap() >= 1 << 62);
}

/// A commit record whose key epoch is the last one (2^32 - 1) with its budget spent: the next
/// write transaction is refused `NonceBudgetExhausted` (SPEC §6.3), changing nothing, and reads
/// go on.
#[test]
fn the_last_epoch_spent_refuses_writes_and_keeps_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spent.fv");
    one_record(&path);
    let edited = edit_commits(&path, |r| {
        r.key_epoch = u32::MAX;
        r.seals_in_epoch = u64::MAX;
    });
    assert!(edited >= 1, "no commit record was forged");
    let db = cfg(&path).open().unwrap();
    let t = db.open_tree("t").unwrap();
    let r = t.insert("b", &b"2"[..]);
    assert!(matches!(r, Err(foldvault::Error::NonceBudgetExhausted)), "{r:?}");
    assert_eq!(t.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    assert!(t.get("b").unwrap().is_none());
}

/// A root separator forged above every key (its first byte 0xFF, the page's layout unchanged):
/// the last leaf's keys are in the tree by position but no lookup reaches them. `pop_max` found
/// its entry by position, its removal by key found nothing, and it returned the entry without
/// removing it, the same one at every call (a `while let Some(_) = pop_max()` never ended).
/// Now it is damage, and the tree is left as it was.
#[test]
fn pop_max_of_a_key_no_lookup_reaches_is_damage_not_an_endless_pop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forged.fv");
    let (catalog, root, _) = two_level_tree(&path);
    edit_page(&path, root, &catalog, |b| {
        let n = u16::from_le_bytes([b[2], b[3]]) as usize;
        let offsets = PAGE_HEADER_SIZE + (n + 1) * PAGE_REF_SIZE;
        let last = u16::from_le_bytes([b[offsets + 2 * (n - 1)], b[offsets + 2 * (n - 1) + 1]]) as usize;
        // key_len u16, then the key: its first byte.
        b[last + 2] = 0xFF;
    });
    let db = cfg(&path).open().unwrap();
    let t = db.open_tree("t").unwrap();
    let last = 1999u32.to_be_bytes();
    assert_eq!(t.get(last).unwrap(), None, "the last leaf's keys are out of every lookup's reach");
    for _ in 0..2 {
        match t.pop_max() {
            Err(Error::Corrupt { reason: CorruptReason::KeyOrder, .. }) => {}
            other => panic!("expected Corrupt KeyOrder, got {:?}", other.map(|e| e.map(|(k, _)| k.to_vec()))),
        }
    }
    assert_eq!(t.len(), 2000, "nothing was removed");
    assert_eq!(t.last().unwrap().map(|(k, _)| k.to_vec()), Some(last.to_vec()));
}

/// A catalog entry whose value is not a tree root (its length forged one byte short): the
/// catalog does not load, and salvage walks it leaf by leaf. That entry was skipped without a
/// word, the tree missing from the copy and the salvage saying nothing was lost; it is now a
/// lost range of the catalog, naming that key alone.
#[test]
fn salvage_reports_a_catalog_entry_that_is_not_a_tree_root_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad-entry.fv");
    let db = cfg(&path).open().unwrap();
    for name in ["good", "spoilt"] {
        let t = db.open_tree(name).unwrap();
        for i in 0..20u32 {
            t.insert(i.to_be_bytes(), &b"value"[..]).unwrap();
        }
    }
    db.flush().unwrap();
    let report = db.check().unwrap();
    drop(db);
    let catalog: Vec<u64> = report.roles.pages(|r| *r == PageRole::Catalog).collect();
    assert_eq!(catalog.len(), 1, "a one-page catalog");
    // `key_len u16 ‖ value_kind u8 ‖ value_len u32 ‖ key ‖ value` (SPEC §4.1): the value read one
    // byte short, the page's layout unchanged.
    edit_page(&path, catalog[0], &[], |b| {
        let at = b.windows(6).position(|w| w == b"spoilt").expect("the catalog holds the name") - 7;
        let value_len = u32::from_le_bytes(b[at + 3..at + 7].try_into().unwrap());
        b[at + 3..at + 7].copy_from_slice(&(value_len - 1).to_le_bytes());
    });
    let dst = dir.path().join("salvaged.fv");
    let report = foldvault::salvage(&cfg(&path), &cfg(&dst)).unwrap();
    assert!(report.lost_anything(), "{report:?}");
    let ranges = &report.lost[&foldvault::SalvagedPart::Catalog];
    assert!(
        ranges.iter().any(|r| r.lo.as_deref() == Some(&b"spoilt"[..]) && r.hi.as_deref() == Some(&b"spoilt\0"[..])),
        "{ranges:?}"
    );
    let copy = cfg(&dst).open().unwrap();
    assert_eq!(copy.open_tree("good").unwrap().len(), 20);
}

/// A branch of tree `a` naming, with a stale tag, a healthy leaf of tree `b`: the check reports
/// the bad reference in `a` (and `a`'s count) and nothing in `b`. The page the bad reference
/// could not read was marked at the end of `a`'s walk, before `b`'s, whose real reference then
/// looked like a second one: `b`'s leaf skipped, its records miscounted, its page called shared.
#[test]
fn a_bad_reference_in_one_tree_to_a_page_of_another_leaves_that_tree_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cross.fv");
    let db = cfg(&path).open().unwrap();
    for name in ["a", "b"] {
        let t = db.open_tree(name).unwrap();
        for i in 0..2000u32 {
            t.insert(i.to_be_bytes(), vec![7u8; 40]).unwrap();
        }
    }
    db.flush().unwrap();
    let report = db.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    drop(db);
    let catalog: Vec<u64> = report.roles.pages(|r| *r == PageRole::Catalog).collect();
    let pages_of = |name: &str| -> Vec<u64> { report.roles.pages(|r| *r == PageRole::Tree(name.into())).collect() };
    let a_root = pages_of("a").into_iter().find(|&p| read_page(&path, p)[0] == 1).expect("a two-level tree a");
    let b_leaf = pages_of("b").into_iter().find(|&p| read_page(&path, p)[0] == 2).expect("a leaf of b");
    // `a`'s first child now names `b`'s leaf, with the tag of the page it named before.
    edit_page(&path, a_root, &catalog, |b| {
        b[PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + 8].copy_from_slice(&b_leaf.to_le_bytes());
    });
    let db = cfg(&path).open().unwrap();
    let problems = db.check().unwrap().problems;
    assert!(problems.iter().any(|p| p.page == b_leaf && p.tree == "a"), "{problems:?}");
    assert!(!problems.iter().any(|p| p.tree == "b"), "tree b is whole: {problems:?}");
    assert!(!problems.iter().any(|p| p.reason == CorruptReason::DoubleReference), "{problems:?}");
}

/// A catalog entry that is not a tree root (its value kind flipped to an overflow reference:
/// a tree root and an overflow reference are both 40 bytes) is damage to the catalog leaf
/// that holds it: the open named the page the "overflow reference" pointed at (the tree's
/// own, healthy root), and a bad length named the catalog's root, not its leaf.
#[test]
fn a_catalog_entry_that_is_not_a_tree_root_names_its_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.fv");
    let db = cfg(&path).open().unwrap();
    for i in 0..300u32 {
        db.open_tree(format!("{i:0>100}")).unwrap().insert("k", "v").unwrap();
    }
    db.flush().unwrap();
    let report = db.check().unwrap();
    drop(db);
    let catalog: Vec<u64> = report.roles.pages(|r| *r == PageRole::Catalog).collect();
    let kind = |p: u64| PageKind::from_byte(read_page(&path, p)[0]);
    let branch = *catalog.iter().find(|&&p| kind(p) == Some(PageKind::Branch)).expect("a catalog of two levels");
    let leaf = *catalog.iter().find(|&&p| kind(p) == Some(PageKind::Leaf)).unwrap();
    edit_page(&path, leaf, &[branch], |b| {
        let first = u16::from_le_bytes([b[PAGE_HEADER_SIZE], b[PAGE_HEADER_SIZE + 1]]) as usize;
        assert_eq!(b[first + 2], 0, "an inline tree root");
        b[first + 2] = 1;
    });
    let r = cfg(&path).open().map(|_| ());
    assert!(matches!(r, Err(Error::Corrupt { page, reason: CorruptReason::BadLayout }) if page == leaf), "{r:?}");
}
