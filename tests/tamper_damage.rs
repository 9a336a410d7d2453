//! Damage to single pages of the tamper fixture (`tests/common/tamper_cases.rs`), beyond the
//! SPEC.md §12 matrix (`tests/tamper.rs`): one damaged leaf leaves the rest of its tree and
//! every other tree readable and writable; a bit flip in every third page is a typed error, a
//! documented fallback or harmless, as the page's role allows; the known gaps of §12; ranges
//! beside a damaged leaf; salvage around a damaged root.
//!
//! `cargo test --test tamper_damage -- --nocapture` prints the sweep.

#[path = "common/tamper_cases.rs"]
mod tamper_cases;
#[path = "common/tamper_trial.rs"]
mod tamper_trial;
#[path = "common/tamper_util.rs"]
mod tamper_util;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{Excluded, Unbounded};
use std::path::PathBuf;

use foldvault::{CorruptReason, Error, PageRole, SalvagedPart};
use tamper_cases::*;
use tamper_trial::*;
use tamper_util::*;

/// One damaged leaf must not stop reads of other trees, nor of the rest of its own tree
/// (SQLCipher's "one bad page poisons the connection"); the handle keeps working for writes
/// that do not need the damaged page.
#[test]
fn one_damaged_leaf_does_not_poison_the_rest() {
    let f = fixture();
    let pk = picks(f);
    let l = &f.layout;
    let dir = tempfile::tempdir().unwrap();
    let path = f.copy(dir.path(), "isolation");
    xor_byte(&path, pk.small_leaf * PAGE as u64 + 77, 0x10);
    let in_leaf: BTreeSet<Vec<u8>> = l.pages[pk.small_leaf as usize].keys.iter().cloned().collect();
    let model = f.final_model();
    let small = &model[SMALL.as_bytes()];

    let db = master_cfg(&path).open().expect("open with a damaged leaf");
    assert!(!db.was_recovered());
    let t = db.open_tree(SMALL).unwrap();
    let (mut ok, mut bad) = (0usize, 0usize);
    for (k, v) in small {
        match t.get(k) {
            Ok(Some(got)) => {
                assert_eq!(&got[..], &v[..], "wrong value for {}", show_key(k));
                assert!(!in_leaf.contains(k), "a key of the damaged leaf was readable");
                ok += 1;
            }
            Err(Error::Corrupt { page, reason: CorruptReason::SealMismatch }) if page == pk.small_leaf => {
                assert!(in_leaf.contains(k), "{} failed but is not in the damaged leaf", show_key(k));
                bad += 1;
            }
            other => panic!("{}: unexpected {other:?}", show_key(k)),
        }
    }
    assert_eq!(bad, in_leaf.len());
    assert_eq!(ok + bad, small.len());
    // Ranges on either side of the damaged leaf return every one of their records, correct.
    // (Today a forward range that ends just before the leaf then reports the leaf's error
    // instead of ending: the cursor steps into the next leaf before it checks the bound; see
    // `range_ending_before_a_damaged_leaf_does_not_read_it`.)
    let first_bad = in_leaf.iter().next().unwrap().clone();
    let last_bad = in_leaf.iter().next_back().unwrap().clone();
    let first_after = small.range::<Vec<u8>, _>((Excluded(last_bad.clone()), Unbounded)).next().unwrap().0.clone();
    let want_before = small.range::<Vec<u8>, _>(..first_bad.clone()).count();
    let want_after = small.range::<Vec<u8>, _>(first_after.clone()..).count();
    let (before, before_err) = drain(t.range(..first_bad.clone()), small);
    let (after, after_err) = drain(t.range(first_after.clone()..), small);
    assert_eq!((before, after), (want_before, want_after), "records on either side of the damaged leaf");
    for e in before_err.iter().chain(after_err.iter()) {
        assert!(matches!(e, Error::Corrupt { page, .. } if *page == pk.small_leaf), "{e:?}");
    }
    assert!(after_err.is_none(), "a range starting after the damaged leaf never needs it");
    let across: Vec<_> = t.iter().collect();
    assert!(matches!(across.last(), Some(Err(Error::Corrupt { page, .. })) if *page == pk.small_leaf));
    // Every other tree reads in full.
    let mut others = 0usize;
    for (name, kv) in model {
        if name == SMALL.as_bytes() {
            continue;
        }
        let t = if name == DEFAULT { (*db).clone() } else { db.open_tree(name).unwrap() };
        for (k, v) in kv {
            assert_eq!(&t.get(k).unwrap().unwrap()[..], &v[..]);
            others += 1;
        }
    }
    // The handle is not poisoned: writes elsewhere commit and flush; a write that needs the
    // damaged leaf fails with the typed error and changes nothing.
    let marker = db.open_tree(MARKER).unwrap();
    marker.insert("after-damage", b"ok".to_vec()).unwrap();
    // A key of the same tree after the damaged leaf (its path does not go through it).
    let old = t.insert(&first_after, b"outside the damaged leaf".to_vec()).unwrap();
    assert_eq!(old.as_deref(), Some(&small[&first_after][..]));
    let e = t.insert(&first_bad, b"x".to_vec()).unwrap_err();
    assert!(matches!(e, Error::Corrupt { page, .. } if page == pk.small_leaf), "{e:?}");
    db.flush().unwrap();
    assert_eq!(&marker.get("after-damage").unwrap().unwrap()[..], b"ok");
    drop((t, marker, db));
    let db = master_cfg(&path).open().unwrap();
    let t = db.open_tree(SMALL).unwrap();
    assert_eq!(&t.get(&first_after).unwrap().unwrap()[..], b"outside the damaged leaf");
    // The failed write changed nothing: its key still fails on the damaged leaf alone.
    assert!(matches!(t.get(&first_bad), Err(Error::Corrupt { page, .. }) if page == pk.small_leaf));
    let (before_again, _) = drain(t.range(..first_bad.clone()), small);
    assert_eq!(before_again, want_before);
    println!(
        "\nISOLATION: leaf {} of 'small' damaged: {ok}/{} keys of 'small' still readable by get ({bad} in the \
         damaged leaf fail with Corrupt{{{}, SealMismatch}}); ranges before/after it return all {before}+{after} \
         of their records (the range before then ends with {}); {others} records of other trees all readable; \
         writes and flush on the same handle still work",
        pk.small_leaf,
        small.len(),
        pk.small_leaf,
        before_err.map_or("no error".to_string(), |e| short_err(&e)),
    );
}

/// A write transaction in which a write failed part way (here `drop_tree`, which frees pages as
/// it walks and stops at the damaged leaf) refuses every later call but its end: the pages it
/// had given back would otherwise be taken by the next write while the tree it failed to drop
/// still named them (a review's case), and reads through it could return another tree's bytes.
#[test]
fn a_write_transaction_that_failed_part_way_refuses_further_calls() {
    let f = fixture();
    let pk = picks(f);
    let l = &f.layout;
    let dir = tempfile::tempdir().unwrap();
    let path = f.copy(dir.path(), "failed-tx");
    xor_byte(&path, pk.small_leaf * PAGE as u64 + 77, 0x10);
    let in_leaf: BTreeSet<Vec<u8>> = l.pages[pk.small_leaf as usize].keys.iter().cloned().collect();
    let model = f.final_model();
    let small = &model[SMALL.as_bytes()];
    let last_bad = in_leaf.iter().next_back().unwrap().clone();
    let first_after = small.range::<Vec<u8>, _>((Excluded(last_bad), Unbounded)).next().unwrap().0.clone();

    let db = master_cfg(&path).open().unwrap();
    let seq = db.commit_seq();
    let tx = db.begin_write().unwrap();
    // Pages of this transaction's own in the tree, which the failed drop gives back.
    tx.open_tree(SMALL).unwrap().insert(&first_after, b"in the transaction").unwrap();
    let e = tx.drop_tree(SMALL).unwrap_err();
    assert!(matches!(e, Error::Corrupt { page, .. } if page == pk.small_leaf), "{e:?}");
    let refused = |r: foldvault::Result<()>, what: &str| {
        assert!(matches!(r, Err(Error::Unsupported(_))), "{what} after the failure: {r:?}");
    };
    refused(tx.open_tree(MARKER).map(drop), "open_tree");
    refused(tx.drop_tree(MARKER).map(drop), "drop_tree");
    refused(tx.open_tree(SMALL).map(drop), "open_tree of the tree it failed to drop");
    refused(tx.tree_names().map(drop), "tree_names (it listed none)");
    // Its commit is refused with the write's own error (it was `Unsupported`, the damage lost).
    let e = tx.commit().unwrap_err();
    assert!(matches!(e, Error::Corrupt { page, .. } if page == pk.small_leaf), "{e:?}");
    assert_eq!(db.commit_seq(), seq, "nothing committed");
    // A transaction's handles taken before the failure are refused too.
    let tx = db.begin_write().unwrap();
    let small_t = tx.open_tree(SMALL).unwrap();
    let marker_t = tx.open_tree(MARKER).unwrap();
    small_t.insert(&first_after, b"in the transaction").unwrap();
    tx.drop_tree(SMALL).unwrap_err();
    refused(marker_t.insert("k", "v").map(drop), "insert into another tree");
    refused(small_t.get(&first_after).map(drop), "get");
    refused(marker_t.iter().map(drop), "iter");
    drop(tx);
    // The handle goes on: the tree as it was committed.
    assert_eq!(&db.open_tree(SMALL).unwrap().get(&first_after).unwrap().unwrap()[..], &small[&first_after][..]);
}

/// Every page of every kind, one at a time: a bit flip must give a typed error or a documented
/// fallback, never a panic or wrong data. (Sampled: every 3rd data page, to bound the time.)
#[test]
fn bit_flip_in_every_third_page_is_detected_or_harmless() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("sweep.db");
    let mut tally: std::collections::BTreeMap<String, usize> = Default::default();
    let mut failures = Vec::new();
    for p in (0..f.layout.page_count).step_by(3) {
        write_file(&path, &f.image);
        xor_byte(&path, p * PAGE as u64 + 1000, 0x04);
        let o = trial(&master_cfg(&path), &f.models);
        if let Err(e) = invariants(&o) {
            failures.push(format!("page {p} ({:?}): {e}", f.layout.pages[p as usize].role));
        }
        let info = &f.layout.pages[p as usize];
        let role = match &info.role {
            Some(PageRole::Tree(t)) => format!("tree {t} kind {}", info.kind),
            r => format!("{r:?}"),
        };
        // What an open reads (SPEC §5.2): the headers and commit records, the catalog and the
        // free list, and the pages the newest commit wrote since its previous durable one. Only
        // damage there may change the open (fail it, or make it fall back).
        let open_reads = p < 4
            || matches!(info.role, Some(PageRole::Catalog | PageRole::FreeList))
            || info.generation > f.layout.commits[0].prev_durable_seq;
        if !open_reads && (o.open_err.is_some() || o.recovered || o.seq != f.last_seq()) {
            failures.push(format!("page {p} ({role}): the open does not read it, yet: {}", o.summary()));
        }
        // Every live page is read by the check: damage to one is never harmless.
        let live = matches!(info.role, Some(PageRole::Tree(_) | PageRole::Catalog | PageRole::FreeList));
        let class = if let Some(e) = &o.open_err {
            format!("open {}", short_err_kind(e))
        } else if o.recovered || o.seq != f.last_seq() {
            "fell back to the previous durable commit".into()
        } else if let Some(h) = o.header_repaired {
            format!("header copy {h} repaired, all data ok")
        } else if !o.rejected_slots.is_empty() {
            format!("older commit record {:?} rejected, newest used, all data ok", o.rejected_slots)
        } else if o.read_errors.is_empty() && o.check_ok() {
            if live {
                failures.push(format!("page {p} ({role}): damage to a live page went unseen"));
            }
            "harmless".into()
        } else {
            let named = o.read_error_pages().iter().all(|(q, _)| *q == p) && o.problems().iter().any(|(q, _)| *q == p);
            if !named {
                failures.push(format!("page {p}: errors do not name the page: {}", o.summary()));
            }
            "read error + check problem naming the page".into()
        };
        *tally.entry(format!("{role}: {class}")).or_default() += 1;
    }
    println!("\nSWEEP (bit flip at byte 1000 of every 3rd page):");
    for (k, n) in &tally {
        println!("  {n:>4} × {k}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

fn short_err_kind(e: &Error) -> String {
    match e {
        Error::Corrupt { reason, .. } => format!("Corrupt({reason:?})"),
        other => short_err(other),
    }
}

/// SPEC.md §12 "known gaps", asserted as they should behave. The API documents
/// `Db::was_recovered()` as "true if the newest commit record was rejected at open and an older
/// one used"; a newest record that does not open at all leaves it false.
#[test]
fn destroyed_newest_commit_record_sets_was_recovered() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let path = f.copy(dir.path(), "gap-record");
    xor_byte(&path, f.layout.commits[0].slot * PAGE as u64 + 200, 1);
    let db = master_cfg(&path).open().unwrap();
    assert_eq!(db.recovery_report().seq, f.seqs[2]);
    assert!(db.was_recovered(), "opened at an older commit than the newest on disk, but was_recovered() is false");
    assert!(!db.recovery_report().rejected_slots.is_empty());
}

/// SPEC.md §12 known gap: a file truncated to zero bytes is silently initialised as a new,
/// empty database (all data gone, no error) instead of being reported as truncated.
#[test]
fn file_truncated_to_zero_is_an_error() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let path = f.copy(dir.path(), "gap-empty");
    set_len(&path, 0);
    match master_cfg(&path).open() {
        Err(Error::Truncated { .. } | Error::NotADatabase) => {}
        Err(e) => panic!("unexpected error {e:?}"),
        Ok(db) => panic!("a zero-length file opened as a database with {} trees", db.tree_names().len()),
    }
}

/// Reads an iterator to its end or its first error, checking every record against `model`.
/// Returns the records read and the error, if any.
fn drain(
    it: impl Iterator<Item = foldvault::Result<(foldvault::IVec, foldvault::IVec)>>,
    model: &BTreeMap<Vec<u8>, Vec<u8>>,
) -> (usize, Option<Error>) {
    let mut n = 0;
    for item in it {
        match item {
            Ok((k, v)) => {
                assert_eq!(model.get(&k[..]).map(|v| &v[..]), Some(&v[..]), "wrong data for {}", show_key(&k));
                n += 1;
            }
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

/// A range whose records all lie outside a damaged leaf must end normally. Today, when the
/// range ends at the last key before the damaged leaf (forward) or starts at the first key after
/// it (backward), the iterator yields every record of the range and then, asked for the next
/// one, steps into the damaged neighbour leaf and returns its `Corrupt` error instead of `None`.
/// `Iter::step` (src/db/api.rs) calls `Cursor::next`/`prev` — which descends into the next
/// leaf (src/btree/read.rs `settle_forward` / `step_back_from_start`) — before checking the
/// bound, even after it has returned the key equal to an inclusive bound. Reads of undamaged
/// key ranges therefore fail when they end next to a damaged page.
#[test]
fn range_ending_before_a_damaged_leaf_does_not_read_it() {
    let f = fixture();
    let pk = picks(f);
    let dir = tempfile::tempdir().unwrap();
    let path = f.copy(dir.path(), "overread");
    xor_byte(&path, pk.small_leaf * PAGE as u64 + 77, 0x10);
    let keys = &f.layout.pages[pk.small_leaf as usize].keys;
    let small = &f.final_model()[SMALL.as_bytes()];
    let last_before = small.range::<Vec<u8>, _>(..keys[0].clone()).next_back().unwrap().0.clone();
    let first_after =
        small.range::<Vec<u8>, _>((Excluded(keys[keys.len() - 1].clone()), Unbounded)).next().unwrap().0.clone();
    let db = master_cfg(&path).open().unwrap();
    let t = db.open_tree(SMALL).unwrap();
    let mut failures = Vec::new();
    let mut expect = |what: &str, got: (usize, Option<Error>), want: usize| {
        if got.0 != want || got.1.is_some() {
            failures.push(format!("{what}: {} of {want} records, then {:?}", got.0, got.1));
        }
    };
    let want = small.range::<Vec<u8>, _>(..=last_before.clone()).count();
    expect("forward range ..=last key before the leaf", drain(t.range(..=last_before.clone()), small), want);
    let want = small.range::<Vec<u8>, _>(first_after.clone()..).count();
    expect("backward range first key after the leaf..", drain(t.range(first_after.clone()..).rev(), small), want);
    expect("one-key range k..=k, k just before", drain(t.range(last_before.clone()..=last_before.clone()), small), 1);
    expect(
        "one-key range k..=k backward, k just after",
        drain(t.range(first_after.clone()..=first_after.clone()).rev(), small),
        1,
    );
    // Controls: these do need the damaged leaf (the neighbour of the key is in it).
    assert!(matches!(t.get_lt(&first_after), Err(Error::Corrupt { page, .. }) if page == pk.small_leaf));
    assert!(matches!(t.get_gt(&last_before), Err(Error::Corrupt { page, .. }) if page == pk.small_leaf));
    println!("\nOVER-READ next to damaged leaf {}:\n  {}", pk.small_leaf, failures.join("\n  "));
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A damaged tree root (the "small" tree's, written before the newest commit): the file still
/// opens, since recovery verifies only the pages written since the durable commit before the
/// newest (SPEC.md §5.2), and `foldvault::salvage` copies it. The report names the damaged tree
/// as lost, whole (one range without bounds, at its root) and nothing else; the copy holds
/// every record of every other tree, each the model's (`final_model`), counted as copied, and
/// no record of the damaged tree (none is reachable without its root), nor a tree the model
/// lacks.
#[test]
fn salvage_recovers_the_other_trees_when_a_tree_root_is_damaged() {
    let f = fixture();
    let pk = picks(f);
    let dir = tempfile::tempdir().unwrap();
    let path = f.copy(dir.path(), "salvage-src");
    xor_byte(&path, pk.small_root * PAGE as u64 + 100, 1);
    // Recovery reads only pages newer than the last durable commit, so the file still opens.
    assert!(master_cfg(&path).open().is_ok());
    let dst = dir.path().join("salvage-dst.db");
    let report = foldvault::salvage(&master_cfg(&path), &master_cfg(&dst)).expect("salvage runs");
    assert!(report.lost_anything());
    let small = SalvagedPart::Tree(SMALL.as_bytes().to_vec());
    assert_eq!(report.lost.keys().collect::<Vec<_>>(), [&small], "only the damaged tree is lost: {report:?}");
    let ranges = &report.lost[&small];
    assert!(
        ranges.len() == 1 && ranges[0].page == pk.small_root && ranges[0].lo.is_none() && ranges[0].hi.is_none(),
        "the damaged tree is lost whole, at its root {}: {ranges:?}",
        pk.small_root
    );
    let model = f.final_model();
    let db = master_cfg(&dst).open().unwrap();
    for name in db.tree_names() {
        assert!(model.contains_key(&name[..]), "a tree the model lacks: {}", String::from_utf8_lossy(&name));
    }
    for (name, kv) in model {
        let shown = String::from_utf8_lossy(name);
        let t = if name == DEFAULT { (*db).clone() } else { db.open_tree(name).unwrap() };
        let got: BTreeMap<Vec<u8>, Vec<u8>> =
            t.iter().map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec()))).collect::<Result<_, _>>().unwrap();
        // Whatever the copy holds is the model's, record for record.
        for (k, v) in &got {
            assert_eq!(kv.get(k), Some(v), "tree {shown}: {} is not the model's", show_key(k));
        }
        assert_eq!(report.copied.get(&name[..]), Some(&(got.len() as u64)), "tree {shown}: records copied");
        if name == SMALL.as_bytes() {
            assert!(got.is_empty(), "tree {shown}: {} records copied from under a damaged root", got.len());
            continue;
        }
        assert_eq!(got.len(), kv.len(), "tree {shown}: every record copied");
        assert_eq!(t.len(), kv.len(), "tree {shown}");
        for (k, v) in kv {
            assert_eq!(&t.get(k).unwrap().unwrap()[..], &v[..]);
        }
    }
}

/// An I/O error while `check` reads a tree's pages is the check's error (`Io`: it cannot say
/// what the page holds), not damage to report: it was reported as a page that does not open
/// (`SealMismatch`), which tells the user the file is damaged. One read fails in turn at each
/// operation of a check.
#[test]
fn an_io_error_during_check_is_an_error_not_damage() {
    use foldvault::storage::{FaultPlan, FaultyStorage, Storage};
    let dev = FaultyStorage::new();
    let s: std::sync::Arc<dyn Storage> = std::sync::Arc::new(dev.clone());
    let db = foldvault::Config::new()
        .storage(s)
        .plaintext()
        .use_env(false)
        .flush_every_ms(None)
        .cache_capacity(16 * 4096)
        .open()
        .unwrap();
    let t = db.open_tree("t").unwrap();
    for i in 0..30_000u32 {
        t.insert(i.to_be_bytes(), vec![1u8; 100]).unwrap();
    }
    db.flush().unwrap();
    let before = dev.op_count();
    assert!(db.check().unwrap().is_ok());
    let ops = dev.op_count() - before;
    assert!(ops > 20, "{ops} operations: the check reads from the cache, the test shows nothing");
    let mut failed = 0;
    for k in 1..=ops {
        dev.set_plan(FaultPlan { fail_at: Some(k), ..FaultPlan::default() });
        match db.check() {
            Err(Error::Io(_)) => failed += 1,
            Ok(report) => assert!(report.is_ok(), "read {k} of the check failed: {:?}", report.problems),
            Err(e) => panic!("read {k} of the check failed: {e:?}"),
        }
    }
    dev.set_plan(FaultPlan::default());
    assert!(failed > ops / 2, "{failed} of {ops} checks met the fault");
    assert!(db.check().unwrap().is_ok());
}
