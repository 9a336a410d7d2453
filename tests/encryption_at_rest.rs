//! Encryption at rest, checked on the raw file (and its write-ahead log while the database is
//! open): after commit, flush and close, no byte of an
//! encrypted database reveals a marker that its keys, values and tree names contain (while a
//! plaintext database does, as a sanity check of the test); and an old, validly sealed copy of
//! a page written back over the current one is reported as `Corrupt { page, .. }` when read,
//! never returned as data.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use foldvault::{Config, Db, Error, KdfParams};

const MARKER: &str = "ZEBRA-MARKER-5f3a9c";
const PAGE: usize = 4096;
/// Pages 0-3 hold the two header copies and the two commit records.
const FIRST_DATA_PAGE: usize = 4;

fn config(path: &Path, encrypted: bool) -> Config {
    let c = Config::new().file(path).use_env(false).flush_every_ms(None);
    if encrypted { c.passphrase("correct horse battery staple").kdf(KdfParams::insecure_fast()) } else { c.plaintext() }
}

/// Every place where some 8-byte window of `MARKER` occurs in `bytes`.
fn traces(bytes: &[u8]) -> Vec<usize> {
    let m = MARKER.as_bytes();
    let windows: Vec<&[u8]> = m.windows(8).collect();
    bytes.windows(8).enumerate().filter(|(_, w)| windows.contains(w)).map(|(i, _)| i).collect()
}

fn marked_records(db: &Db) {
    // A tree whose name holds the marker, keys and values holding it, small and large.
    let t = db.open_tree(format!("tree-{MARKER}")).unwrap();
    for i in 0..300u32 {
        t.insert(format!("{MARKER}:key:{i:04}"), format!("{{\"note\":\"{MARKER}\",\"n\":{i}}}").into_bytes()).unwrap();
    }
    // A value spanning overflow pages.
    t.insert("big", MARKER.repeat(2000).into_bytes()).unwrap();
    // The default tree and a multi-tree transaction.
    db.insert(format!("atom:{MARKER}"), MARKER).unwrap();
    let tx = db.begin_write().unwrap();
    tx.open_tree(format!("{MARKER}-tx")).unwrap().insert(MARKER, MARKER).unwrap();
    tx.commit().unwrap();
}

/// Traces in the file and in its write-ahead log, while there is one (SPEC §15).
fn file_traces(path: &Path) -> Vec<usize> {
    let mut t = traces(&std::fs::read(path).unwrap());
    if let Ok(log) = std::fs::read(foldvault::storage::wal::sidecar_path(path)) {
        t.extend(traces(&log).into_iter().map(|i| i + (1 << 40)));
    }
    t
}

#[test]
fn encrypted_file_holds_no_trace_of_keys_values_or_tree_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("enc.foldvault");
    let db = config(&path, true).write_ahead_log(true).open().unwrap();
    assert!(db.is_encrypted());
    marked_records(&db);
    assert!(foldvault::storage::wal::sidecar_path(&path).exists(), "the log is scanned too");
    assert!(file_traces(&path).is_empty(), "after commit: marker at {:?}", file_traces(&path));
    db.flush().unwrap();
    assert!(file_traces(&path).is_empty(), "after flush: marker at {:?}", file_traces(&path));
    // Overwrites and removals free pages that held the marker; freed pages are ciphertext too.
    let t = db.open_tree(format!("tree-{MARKER}")).unwrap();
    for i in 0..150u32 {
        t.remove(format!("{MARKER}:key:{i:04}")).unwrap();
    }
    t.insert("big", b"replaced".to_vec()).unwrap();
    drop(t);
    db.flush().unwrap();
    drop(db);
    assert!(file_traces(&path).is_empty(), "after close: marker at {:?}", file_traces(&path));
    assert_eq!(
        foldvault::admin::read_header(&path).unwrap().header.flags & foldvault::format::header::FLAG_ENCRYPTED,
        1
    );

    // The records are all there for the key holder.
    let db = config(&path, true).open().unwrap();
    let t = db.open_tree(format!("tree-{MARKER}")).unwrap();
    assert_eq!(t.len(), 151);
    assert_eq!(db.get(format!("atom:{MARKER}")).unwrap().unwrap(), MARKER);
    assert!(db.tree_names().iter().any(|n| n == format!("{MARKER}-tx").as_str()));
}

#[test]
fn plaintext_file_shows_the_marker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.foldvault");
    let db = config(&path, false).open().unwrap();
    assert!(!db.is_encrypted());
    marked_records(&db);
    db.flush().unwrap();
    drop(db);
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.windows(MARKER.len()).filter(|w| *w == MARKER.as_bytes()).count() > 300);
    assert!(!traces(&bytes).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Stale pages.

fn pages(bytes: &[u8]) -> usize {
    bytes.len() / PAGE
}

fn page(bytes: &[u8], p: usize) -> &[u8] {
    &bytes[p * PAGE..(p + 1) * PAGE]
}

/// Builds a database, saves a copy, updates `target` in one leaf (a durable commit), then makes
/// one more durable commit elsewhere and closes. Returns (saved copy, current file path).
fn stale_page_fixture(dir: &Path, encrypted: bool) -> (Vec<u8>, PathBuf) {
    let path = dir.join("stale.foldvault");
    let db = config(&path, encrypted).open().unwrap();
    let t = db.open_tree("records").unwrap();
    for i in 0..400u32 {
        t.insert(format!("key-{i:04}"), format!("original value {i:04} {}", "-".repeat(80)).into_bytes()).unwrap();
    }
    db.flush().unwrap();
    // Churn, so that the next commits reuse freed pages (old versions exist on disk).
    for round in 0..4u32 {
        for i in (0..400u32).step_by(37) {
            t.insert(format!("key-{i:04}"), format!("churn {round} {i}").into_bytes()).unwrap();
        }
        db.flush().unwrap();
    }
    t.insert("key-0200", b"version A".to_vec()).unwrap();
    db.flush().unwrap();
    drop((t, db));
    let saved = std::fs::read(&path).unwrap();

    let db = config(&path, encrypted).open().unwrap();
    let t = db.open_tree("records").unwrap();
    t.insert("key-0200", b"version B".to_vec()).unwrap();
    db.flush().unwrap();
    // A later durable commit in another tree: the update above is no longer the newest commit,
    // so open does not re-verify its pages (recovery only checks the newest commit's pages).
    db.open_tree("elsewhere").unwrap().insert("x", "y").unwrap();
    db.flush().unwrap();
    drop((t, db));
    (saved, path)
}

/// Writes the saved version of each changed data page back, one at a time, and opens and reads
/// the result. Returns the pages whose replay was reported as `Corrupt` when `key-0200` was read.
fn replay_each_changed_page(encrypted: bool) -> Vec<(usize, foldvault::CorruptReason)> {
    let dir = tempfile::tempdir().unwrap();
    let (saved, path) = stale_page_fixture(dir.path(), encrypted);
    let current = std::fs::read(&path).unwrap();
    let changed: Vec<usize> = (FIRST_DATA_PAGE..pages(&saved).min(pages(&current)))
        .filter(|&p| page(&saved, p) != page(&current, p))
        .collect();
    assert!(!changed.is_empty());
    let mut caught = Vec::new();
    for &p in &changed {
        let victim = dir.path().join(format!("replayed-{p}.foldvault"));
        std::fs::write(&victim, &current).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&victim).unwrap();
        f.write_all_at(page(&saved, p), (p * PAGE) as u64).unwrap();
        f.sync_all().unwrap();
        drop(f);
        let db = match config(&victim, encrypted).open() {
            Ok(db) => db,
            Err(e) => {
                assert!(e.is_corruption(), "page {p}: open failed with {e:?}");
                continue;
            }
        };
        let read = db.open_tree("records").and_then(|t| t.get("key-0200"));
        match read {
            Ok(Some(v)) => assert_eq!(v, b"version B", "page {p}: stale data returned"),
            Ok(None) => panic!("page {p}: key-0200 vanished"),
            Err(Error::Corrupt { page, reason }) => {
                assert_eq!(page, p as u64, "the error names the replayed page");
                caught.push((p, reason));
            }
            Err(e) => panic!("page {p}: unexpected error {e:?}"),
        }
        drop(db);
        std::fs::remove_file(&victim).unwrap();
    }
    println!("changed pages {changed:?}; replays caught on read: {caught:?}");
    caught
}

#[test]
fn replayed_old_page_is_corrupt_never_data_encrypted() {
    let caught = replay_each_changed_page(true);
    assert!(!caught.is_empty(), "no replayed page was detected when read");
    assert!(caught.iter().all(|(_, r)| *r == foldvault::CorruptReason::TagMismatch), "{caught:?}");
}

#[test]
fn replayed_old_page_is_corrupt_never_data_plaintext() {
    let caught = replay_each_changed_page(false);
    assert!(!caught.is_empty(), "no replayed page was detected when read");
}

type Records = std::collections::BTreeMap<String, Vec<u8>>;

/// Asserts that `db` checks clean (`Db::check`: every reachable page's seal and parent-held tag,
/// the free list) and that its tree `records` is `want`, record for record: reading `key-0201`
/// alone says nothing of the branch, catalog and free-list pages off its path, so an old copy
/// of one of them accepted as current passed. `p`: the page put back, for the messages.
fn whole_and_equal(db: &Db, want: &Records, p: usize) {
    let report = db.check().unwrap();
    assert!(report.is_ok(), "page {p}: the check found {:?}", report.problems);
    let got: Records = db
        .open_tree("records")
        .unwrap()
        .iter()
        .map(|e| e.map(|(k, v)| (String::from_utf8(k.to_vec()).unwrap(), v.to_vec())))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("page {p}: the full read failed: {e:?}"));
    assert_eq!(got.len(), want.len(), "page {p}: record count");
    if let Some((k, v)) = got.iter().find(|&(k, v)| want.get(k) != Some(v)) {
        panic!("page {p}: {k} is {:?}, not the model's {:?}", String::from_utf8_lossy(v), want.get(k));
    }
}

/// The brief's simplest form: the leaf changed by the newest commit is put back. Recovery at
/// open verifies the newest commit's pages, so the database either reports the damage or falls
/// back to the previous durable commit (as after a crash) — it never mixes the two versions.
/// An open that reads `key-0201` at either version must also check clean and hold that
/// version's whole tree (`whole_and_equal`).
#[test]
fn replayed_page_of_the_newest_commit_is_never_mixed_in() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newest.foldvault");
    let v1 = |i: u32| format!("v1 {i:04} {}", "-".repeat(80)).into_bytes();
    // The tree as the first session left it (the previous durable commit), and as the second did.
    let previous: Records =
        (0..400u32).map(|i| (format!("key-{i:04}"), if i % 11 == 0 { b"churn".to_vec() } else { v1(i) })).collect();
    let mut newest = previous.clone();
    newest.insert("key-0201".into(), b"v2".to_vec());
    {
        let db = config(&path, true).open().unwrap();
        let t = db.open_tree("records").unwrap();
        for i in 0..400u32 {
            t.insert(format!("key-{i:04}"), v1(i)).unwrap();
        }
        db.flush().unwrap();
        for i in (0..400u32).step_by(11) {
            t.insert(format!("key-{i:04}"), b"churn".to_vec()).unwrap();
        }
        db.flush().unwrap();
    }
    let saved = std::fs::read(&path).unwrap();
    {
        let db = config(&path, true).open().unwrap();
        db.open_tree("records").unwrap().insert("key-0201", b"v2".to_vec()).unwrap();
        db.flush().unwrap();
    }
    let current = std::fs::read(&path).unwrap();
    let mut outcomes = Vec::new();
    for p in FIRST_DATA_PAGE..pages(&saved).min(pages(&current)) {
        if page(&saved, p) == page(&current, p) {
            continue;
        }
        let victim = dir.path().join(format!("v{p}"));
        let mut bytes = current.clone();
        bytes[p * PAGE..(p + 1) * PAGE].copy_from_slice(page(&saved, p));
        std::fs::write(&victim, &bytes).unwrap();
        match config(&victim, true).open() {
            Err(e) => {
                assert!(e.is_corruption(), "{e:?}");
                outcomes.push((p, "open: corrupt"));
            }
            Ok(db) => match db.open_tree("records").and_then(|t| t.get("key-0201")) {
                Ok(Some(v)) if v == b"v2" => {
                    whole_and_equal(&db, &newest, p);
                    outcomes.push((p, "current"))
                }
                Ok(Some(v)) if v.starts_with(b"v1") => {
                    assert!(db.was_recovered(), "page {p}: the old value without a fallback");
                    whole_and_equal(&db, &previous, p);
                    outcomes.push((p, "fell back to previous commit"));
                }
                Err(Error::Corrupt { page, .. }) => {
                    assert_eq!(page, p as u64);
                    outcomes.push((p, "read: corrupt"));
                }
                other => panic!("page {p}: {other:?}"),
            },
        }
    }
    println!("{outcomes:?}");
    assert!(outcomes.iter().any(|(_, o)| *o != "current"));
}
