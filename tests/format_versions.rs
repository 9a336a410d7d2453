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
