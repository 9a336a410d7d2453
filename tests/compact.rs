//! `Db::compact`: the file shrinks back after copy-on-write grew it and removals left half-empty
//! pages (merged, then moved), every record and tree stays as it was (checked against a `BTreeMap` model and by `Db::check`), across a reopen, with
//! a reader alive, and with either commit slot damaged afterwards (SPEC.md §7.1).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{enc, mem_db, plain, reopen};
use foldvault::Db;
use foldvault::fuzzing::Rng;
use foldvault::storage::{MemoryStorage, Storage};

const PAGE_SIZE: usize = 4096;

type Model = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;
const TREES: [&str; 3] = ["atoms", "schemas", "metadata"];

/// Loads `n` records over three trees in one commit (every 50th value past a leaf, so overflow
/// chains move too), then removes half of them in one commit: the removal copies nearly every
/// leaf past the end of the file and leaves the old ones free below.
fn grow_and_hollow(db: &Db, n: usize) -> Model {
    let mut rng = Rng(0xc0ac7);
    let mut model = Model::new();
    let tx = db.begin_write().unwrap();
    for i in 0..n {
        let name = TREES[i % 3];
        let mut k = vec![0u8; 16];
        rng.fill(&mut k);
        let mut v = vec![0u8; if i % 50 == 0 { 5_000 } else { 100 }];
        rng.fill(&mut v);
        tx.open_tree(name).unwrap().insert(&k, &v).unwrap();
        model.entry(name.into()).or_default().insert(k, v);
    }
    tx.commit().unwrap();
    db.flush().unwrap();
    let tx = db.begin_write().unwrap();
    for (name, t) in model.iter_mut() {
        let keys: Vec<Vec<u8>> = t.keys().step_by(2).cloned().collect();
        let tree = tx.open_tree(name).unwrap();
        for k in keys {
            tree.remove(&k).unwrap();
            t.remove(&k);
        }
    }
    tx.commit().unwrap();
    db.flush().unwrap();
    model
}

fn contents(db: &Db) -> Model {
    let mut m = Model::new();
    for name in TREES {
        let t = db.open_tree(name).unwrap();
        let tm: BTreeMap<Vec<u8>, Vec<u8>> =
            t.iter().map(|kv| kv.unwrap()).map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        m.insert(name.into(), tm);
    }
    m
}

fn assert_sound(db: &Db, model: &Model) {
    let report = db.check().unwrap();
    assert!(report.is_ok(), "check: {:?}", report.problems);
    assert_eq!(&contents(db), model);
}

fn pages(m: &MemoryStorage) -> u64 {
    m.len().unwrap() / PAGE_SIZE as u64
}

fn shrinks_and_keeps_everything(encrypted: bool) {
    let (db, m) = mem_db(encrypted);
    let model = grow_and_hollow(&db, 20_000);
    let before = pages(&m);
    let free_before = db.metrics().free_pages;
    assert!(free_before * 3 > before, "the removal freed a third of the file or more: {free_before} of {before}");
    let report = db.compact().unwrap();
    let after = pages(&m);
    // What is left free is what the merged and moved pages could not give back.
    assert!(db.metrics().free_pages * 10 < after, "{} free of {after}", db.metrics().free_pages);
    println!("compact ({}): {report:?}", if encrypted { "encrypted" } else { "plaintext" });
    assert_eq!((report.pages_before, report.pages_after), (before, after));
    // Half of the records are left; the removal had nearly doubled the file and left the
    // leaves half empty.
    assert!(after * 10 <= before * 4, "{before} -> {after} pages");
    assert!(report.pages_moved > 0 && report.nodes_merged > 0 && report.commits >= 3, "{report:?}");
    // A handful of commits: a walk that copies a branch without changing it must not make
    // every walk a commit (it once ran to the bound of 1,024).
    assert!(report.commits <= 16, "{report:?}");
    assert_sound(&db, &model);
    // Nothing left to move: a second run keeps the file as it is.
    let again = db.compact().unwrap();
    assert_eq!((again.pages_moved, again.pages_after), (0, after), "{again:?}");
    drop(db);
    let db = reopen(&m, encrypted);
    assert!(!db.was_recovered());
    assert_sound(&db, &model);
    // The file grows again from the new end.
    let mut model = model;
    let t = db.open_tree("atoms").unwrap();
    for i in 0..2_000u32 {
        let (k, v) = (format!("new{i:05}").into_bytes(), vec![i as u8; 300]);
        t.insert(&k[..], &v[..]).unwrap();
        model.entry("atoms".into()).or_default().insert(k, v);
    }
    db.flush().unwrap();
    assert_sound(&db, &model);
    drop(db);
    assert_sound(&reopen(&m, encrypted), &model);
}

#[test]
fn compact_shrinks_the_file_and_keeps_every_record_encrypted() {
    shrinks_and_keeps_everything(true);
}

#[test]
fn compact_shrinks_the_file_and_keeps_every_record_plaintext() {
    shrinks_and_keeps_everything(false);
}

/// FoldDB-shaped records (41-byte keys, 300-2,000-byte values: a few per leaf, so many pairs of
/// neighbours only just miss fitting one page): compaction ends in a handful of commits.
#[test]
fn compact_of_large_records_ends_in_a_few_commits() {
    let (db, _m) = mem_db(true);
    let mut rng = Rng(41);
    let mut model = BTreeMap::new();
    let tx = db.begin_write().unwrap();
    for _ in 0..6_000 {
        let mut k = vec![0u8; 41];
        rng.fill(&mut k);
        let v = vec![k[0]; 300 + rng.below(1700) as usize];
        tx.open_tree("atoms").unwrap().insert(&k, &v).unwrap();
        model.insert(k, v);
    }
    tx.commit().unwrap();
    let tx = db.begin_write().unwrap();
    for k in model.keys().step_by(2) {
        tx.open_tree("atoms").unwrap().remove(k).unwrap();
    }
    tx.commit().unwrap();
    model = model.into_iter().skip(1).step_by(2).collect();
    let r = db.compact().unwrap();
    assert!(r.commits <= 16 && r.pages_after * 2 < r.pages_before, "{r:?}");
    let got: BTreeMap<Vec<u8>, Vec<u8>> =
        db.open_tree("atoms").unwrap().iter().map(|kv| kv.unwrap()).map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
    assert_eq!(got, model);
    assert!(db.check().unwrap().is_ok());
}

/// A reader that started before the removal still reads every record it saw, during and after
/// compaction; the pages it holds stay. Once it is gone, compaction gets the rest.
#[test]
fn compact_leaves_what_a_live_reader_reads() {
    let (db, m) = mem_db(true);
    let mut rng = Rng(5);
    let t = db.open_tree("atoms").unwrap();
    let mut full = BTreeMap::new();
    let tx = db.begin_write().unwrap();
    for _ in 0..8_000 {
        let mut k = vec![0u8; 16];
        rng.fill(&mut k);
        let v = k.repeat(6);
        tx.open_tree("atoms").unwrap().insert(&k, &v).unwrap();
        full.insert(k, v);
    }
    tx.commit().unwrap();
    let reader = db.begin_read().unwrap();
    let tx = db.begin_write().unwrap();
    for k in full.keys().step_by(2) {
        tx.open_tree("atoms").unwrap().remove(k).unwrap();
    }
    tx.commit().unwrap();
    let before = pages(&m);
    let held = db.compact().unwrap();
    let seen: BTreeMap<Vec<u8>, Vec<u8>> = reader
        .open_tree("atoms")
        .unwrap()
        .iter()
        .map(|kv| kv.unwrap())
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    assert_eq!(seen, full, "the reader's snapshot changed under compaction");
    drop(reader);
    let freed = db.compact().unwrap();
    println!("with a reader: {held:?}; after it: {freed:?}");
    assert!(freed.pages_after < held.pages_after, "{before}: {held:?} then {freed:?}");
    let half: BTreeMap<Vec<u8>, Vec<u8>> = full.into_iter().skip(1).step_by(2).collect();
    assert_eq!(t.iter().count(), half.len());
    for (k, v) in &half {
        assert_eq!(t.get(k).unwrap().as_deref(), Some(&v[..]));
    }
    assert!(db.check().unwrap().is_ok());
}

/// A tree grown by random inserts in small commits has leaves split half full, about 70% full
/// on average, and neighbours that do not fit one page together, so merging alone leaves it as
/// it is. Compaction refills each leaf from its right neighbour to nine tenths of a page: the
/// pages left hold the records at 80% of a page or better.
#[test]
fn compact_refills_the_leaves_of_a_tree_grown_at_random() {
    let (db, m) = mem_db(true);
    let mut rng = Rng(11);
    let mut model = BTreeMap::new();
    for _ in 0..200 {
        let tx = db.begin_write().unwrap();
        for _ in 0..100 {
            let mut k = vec![0u8; 16];
            rng.fill(&mut k);
            let v = k.repeat(6);
            tx.open_tree("atoms").unwrap().insert(&k, &v).unwrap();
            model.insert(k, v);
        }
        tx.commit().unwrap();
    }
    // Each leaf entry: 2-byte slot, 7-byte header, 16-byte key, 96-byte value.
    let data = model.len() as u64 * (2 + 7 + 16 + 96);
    let before = pages(&m);
    let report = db.compact().unwrap();
    let after = pages(&m);
    println!("{before} -> {after} pages for {data} bytes of entries: {report:?}");
    assert!(report.leaves_refilled > 0, "{report:?}");
    assert!(after * PAGE_SIZE as u64 * 8 <= data * 10, "{after} pages hold {data} bytes: under 80% full");
    let t = db.open_tree("atoms").unwrap();
    let got: BTreeMap<Vec<u8>, Vec<u8>> =
        t.iter().map(|kv| kv.unwrap()).map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
    assert_eq!(got, model);
    assert!(db.check().unwrap().is_ok());
    // Refilled leaves are left alone by the next compaction.
    let again = db.compact().unwrap();
    assert_eq!((again.leaves_refilled, again.nodes_merged, again.pages_after), (0, 0, after), "{again:?}");
}

/// Both commit slots name a page count within the cut file: damage to either one (the newest
/// included) still opens, at the same data.
#[test]
fn compact_leaves_two_records_within_the_file() {
    for encrypted in [true, false] {
        let (db, m) = mem_db(encrypted);
        let model = grow_and_hollow(&db, 6_000);
        let report = db.compact().unwrap();
        assert!(report.pages_after < report.pages_before, "{report:?}");
        let image = m.snapshot();
        drop(db);
        for slot in [2u64, 3] {
            let mut img = image.clone();
            let at = (slot * PAGE_SIZE as u64) as usize + 100;
            img[at] ^= 0x40;
            let s: Arc<dyn Storage> = Arc::new(MemoryStorage::from_bytes(img));
            let cfg = if encrypted { enc(s) } else { plain(s) };
            let db = cfg.open().unwrap_or_else(|e| panic!("slot {slot} damaged: {e}"));
            assert_sound(&db, &model);
        }
    }
}

/// Inside a write transaction on the same thread, compaction refuses (it needs the writer the
/// transaction holds) instead of waiting for it forever; once the transaction ends it runs.
#[test]
fn compact_inside_a_write_transaction_refuses() {
    let (db, _m) = mem_db(false);
    db.insert("k", "v").unwrap();
    let tx = db.begin_write().unwrap();
    assert!(matches!(db.compact(), Err(foldvault::Error::Unsupported(_))));
    tx.commit().unwrap();
    db.compact().unwrap();
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
}
