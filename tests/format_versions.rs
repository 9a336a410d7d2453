//! Every released format version keeps opening: a file written by each is checked in under
//! tests/data/ (format v1: `v1.foldvault`, made by `cargo test --test backup make_fixtures -- --ignored`).

use foldvault::Config;

#[test]
fn opens_checked_in_v1_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.foldvault");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/v1.foldvault"), &path).unwrap();
    let db = Config::new().file(&path).passphrase("foldvault v1 fixture").use_env(false).open().unwrap();
    assert!(db.is_encrypted());
    let report = db.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let t = db.open_tree("metadata").unwrap();
    assert_eq!(t.len(), 100);
    assert_eq!(t.get("key042").unwrap().unwrap(), &b"value 42"[..]);
    assert_eq!(db.get("atom:fixture").unwrap().unwrap().len(), 9000);
    // And it stays writable.
    t.insert("new", &b"x"[..]).unwrap();
    db.flush().unwrap();
}

/// Format version 2 adds the free-list delta to the commit record. A version-1 file keeps its
/// version and is written without one: many small durable commits (each of which would carry a
/// delta in a version-2 file), a reopen, and the whole file must still account for every page
/// (a delta written into a version-1 file would be ignored when read back, and the pages it
/// freed would show up as `FreeList` problems). A new file is version 2.
#[test]
fn a_v1_file_stays_v1_through_small_commits_and_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.foldvault");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/v1.foldvault"), &path).unwrap();
    let open = || {
        Config::new()
            .file(&path)
            .passphrase("foldvault v1 fixture")
            .use_env(false)
            .flush_every_ms(None)
            .durability(foldvault::Durability::Immediate)
            .open()
            .unwrap()
    };
    {
        let db = open();
        let t = db.open_tree("metadata").unwrap();
        for i in 0..60 {
            t.insert(format!("key{:03}", i % 100), format!("rewritten {i}").as_bytes()).unwrap();
        }
        t.remove("key099").unwrap();
    }
    let db = open();
    assert_eq!(db.encryption_status().format_version, 1, "a version-1 file keeps its version");
    let report = db.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let t = db.open_tree("metadata").unwrap();
    assert_eq!(t.len(), 99);
    assert_eq!(t.get("key059").unwrap().unwrap(), &b"rewritten 59"[..]);
    drop(db);

    let fresh = dir.path().join("new.foldvault");
    let db = Config::new().file(&fresh).passphrase("p").use_env(false).open().unwrap();
    assert_eq!(db.encryption_status().format_version, foldvault::format::FORMAT_VERSION);
}
