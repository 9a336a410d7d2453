//! Every released format version keeps opening: a file written by each is checked in under
//! tests/data/ (`vN.foldvault`, made by the build of version N with `cargo test --test backup
//! make_fixtures -- --ignored`, which writes the current version's and never overwrites one).

use foldvault::Config;

#[test]
fn opens_checked_in_files_of_every_version() {
    for version in 1..=foldvault::format::FORMAT_VERSION {
        opens_checked_in_file(version);
    }
}

fn opens_checked_in_file(version: u16) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixture.foldvault");
    std::fs::copy(format!("{}/tests/data/v{version}.foldvault", env!("CARGO_MANIFEST_DIR")), &path).unwrap();
    let db = Config::new().file(&path).passphrase("foldvault v1 fixture").use_env(false).open().unwrap();
    assert!(db.is_encrypted());
    assert_eq!(db.encryption_status().format_version, version);
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

/// A version-1 file's header updates keep its version (SPEC §2, §10): a header written with the
/// current version would change every page's associated data, and the file would no longer
/// open. A slot added, the passphrase changed, a rekey (new data key, every page sealed again)
/// and a compaction, then a reopen under the new passphrase: version 1, every page checks, the
/// records are there.
#[test]
fn a_v1_files_key_changes_rekey_and_compaction_keep_it_v1() {
    use foldvault::{Credentials, KdfParams, MasterKey, Passphrase};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.foldvault");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/v1.foldvault"), &path).unwrap();
    let cfg = |p: &str| Config::new().file(&path).passphrase(p).use_env(false).kdf(KdfParams::insecure_fast());
    {
        let db = cfg("foldvault v1 fixture").open().unwrap();
        let old = Credentials::passphrase(Passphrase::new(b"foldvault v1 fixture".to_vec()));
        db.add_slot(&Credentials::master_key(MasterKey::from_bytes([3; 32])), KdfParams::insecure_fast()).unwrap();
        db.change_passphrase(&old, Passphrase::new(b"changed".to_vec()), KdfParams::insecure_fast()).unwrap();
        let new = Credentials::passphrase(Passphrase::new(b"changed".to_vec()));
        db.rekey(&[new, Credentials::master_key(MasterKey::from_bytes([3; 32]))], &mut |_| {}).unwrap();
        db.open_tree("metadata").unwrap().insert("after rekey", &b"y"[..]).unwrap();
        db.compact().unwrap();
        assert_eq!(db.encryption_status().format_version, 1);
    }
    for by_key in [false, true] {
        let db = match by_key {
            false => cfg("changed").open().unwrap(),
            true => Config::new().file(&path).master_key(MasterKey::from_bytes([3; 32])).use_env(false).open().unwrap(),
        };
        assert_eq!(db.encryption_status().format_version, 1, "a version-1 file keeps its version");
        let report = db.check().unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        let t = db.open_tree("metadata").unwrap();
        assert_eq!(t.len(), 101);
        assert_eq!(t.get("key042").unwrap().unwrap(), &b"value 42"[..]);
        assert_eq!(t.get("after rekey").unwrap().unwrap(), &b"y"[..]);
        assert_eq!(db.get("atom:fixture").unwrap().unwrap().len(), 9000);
    }
    assert!(matches!(cfg("foldvault v1 fixture").open(), Err(foldvault::Error::WrongKey { .. })));
}

/// With neither header copy valid, the error says the most telling thing: a copy that checks
/// out but names a newer format version is `UnsupportedVersion` whatever the other copy is
/// (copy A torn gave `Corrupt`), and a damaged copy beside a zeroed one is `Corrupt`, not
/// `NotADatabase`.
#[test]
fn two_bad_header_copies_report_the_most_telling_failure() {
    use foldvault::Error;
    use foldvault::format::header::{CHECKSUM_OFFSET, VERSION_OFFSET};
    use foldvault::format::{FORMAT_VERSION, PAGE_SIZE};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(Config::new().file(&path).plaintext().use_env(false).open().unwrap());
    let clean = std::fs::read(&path).unwrap();
    let open = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        Config::new().file(&path).plaintext().use_env(false).open().map(drop).unwrap_err()
    };
    // Copy A torn, copy B written by a newer build (its checksum right).
    let mut f = clean.clone();
    f[100] ^= 1;
    let b = &mut f[PAGE_SIZE..2 * PAGE_SIZE];
    b[VERSION_OFFSET..VERSION_OFFSET + 2].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let sum = blake3::hash(&b[..CHECKSUM_OFFSET]);
    b[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 32].copy_from_slice(sum.as_bytes());
    let e = open(&f);
    assert!(matches!(e, Error::UnsupportedVersion { found, .. } if found == FORMAT_VERSION + 1), "{e:?}");
    // Copy A zeroed, copy B damaged.
    let mut f = clean.clone();
    f[..PAGE_SIZE].fill(0);
    f[PAGE_SIZE + 100] ^= 1;
    let e = open(&f);
    assert!(matches!(e, Error::Corrupt { page: 1, .. }), "{e:?}");
}
