//! Whole-file rollback (SPEC.md §11): an attacker who replaces the file with an older copy of
//! itself is undetectable from inside the file; the defence is an anchor kept outside it —
//! `Config::min_commit_seq` (`RolledBack`) or `Config::expected_root_digest`
//! (`RootDigestMismatch`).

#[path = "common/tamper_util.rs"]
mod tamper_util;

use foldvault::{Config, Error};
use tamper_util::*;

/// These tests copy and edit the database file as a crash or an attacker leaves it, so they
/// keep every commit in the file: without the write-ahead log, whose sidecar would hold the
/// newest commits while the database is open (`tests/write_ahead_log.rs` anchors a crash with
/// the log).
fn file_cfg(path: &std::path::Path) -> Config {
    master_cfg(path).write_ahead_log(false)
}

struct Setup {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    old_copy: Vec<u8>,
    old_seq: u64,
    old_digest: [u8; 32],
    seq: u64,
    digest: [u8; 32],
    records_before_close: Vec<u8>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = file_cfg(&path).open().unwrap();
    let t = db.open_tree("accounts").unwrap();
    for i in 0..500u32 {
        t.insert(format!("acct{i:04}"), format!("balance {}", i * 10).into_bytes()).unwrap();
    }
    db.flush().unwrap();
    let (old_seq, old_digest) = (db.commit_seq(), db.root_digest());
    assert_eq!(db.durable_commit_seq(), old_seq);
    drop((t, db));
    let old_copy = read_file(&path);

    let db = file_cfg(&path).open().unwrap();
    let t = db.open_tree("accounts").unwrap();
    for i in 0..500u32 {
        t.insert(format!("acct{i:04}"), format!("balance {}", i * 10 - i).into_bytes()).unwrap();
    }
    t.remove("acct0007").unwrap();
    db.flush().unwrap();
    let (seq, digest) = (db.commit_seq(), db.root_digest());
    assert_eq!(db.durable_commit_seq(), seq);
    assert!(seq > old_seq);
    assert_ne!(digest, old_digest);
    // The commit-record slots as a crash right now would leave them (before the clean close
    // adds its second record of this commit).
    let records_before_close = read_file(&path)[2 * PAGE..4 * PAGE].to_vec();
    drop((t, db));
    Setup { _dir: dir, path, old_copy, old_seq, old_digest, seq, digest, records_before_close }
}

fn open(cfg: Config) -> Result<foldvault::Db, Error> {
    cfg.open()
}

#[test]
fn whole_file_rollback_is_caught_by_the_anchors() {
    let s = setup();
    let current = read_file(&s.path);

    // The current file passes both anchors, separately and together.
    let db = open(file_cfg(&s.path).min_commit_seq(s.seq)).expect("current file, min_commit_seq");
    assert_eq!(db.commit_seq(), s.seq);
    drop(db);
    let db = open(file_cfg(&s.path).expected_root_digest(s.digest)).expect("current file, root digest");
    assert_eq!(db.root_digest(), s.digest);
    drop(db);
    open(file_cfg(&s.path).min_commit_seq(s.seq).expected_root_digest(s.digest)).expect("both anchors");

    // Put the old copy back.
    write_file(&s.path, &s.old_copy);

    // Without an anchor the rollback is invisible: the old state opens cleanly.
    let db = open(file_cfg(&s.path)).expect("old copy opens without anchors");
    assert_eq!(db.commit_seq(), s.old_seq);
    assert!(!db.was_recovered());
    assert_eq!(&db.open_tree("accounts").unwrap().get("acct0007").unwrap().unwrap()[..], b"balance 70");
    drop(db);

    match open(file_cfg(&s.path).min_commit_seq(s.seq)) {
        Err(Error::RolledBack { expected, found }) => {
            assert_eq!((expected, found), (s.seq, s.old_seq));
        }
        Err(e) => panic!("expected RolledBack, got {e:?}"),
        Ok(_) => panic!("rolled-back file opened despite min_commit_seq"),
    }
    match open(file_cfg(&s.path).expected_root_digest(s.digest)) {
        Err(Error::RootDigestMismatch) => {}
        Err(e) => panic!("expected RootDigestMismatch, got {e:?}"),
        Ok(_) => panic!("rolled-back file opened despite expected_root_digest"),
    }
    // The old copy still matches its own anchors (the anchors name a state, not a file).
    open(file_cfg(&s.path).min_commit_seq(s.old_seq).expected_root_digest(s.old_digest)).expect("old anchors");

    // The anchors did not modify the file: restoring the current bytes passes again.
    assert_eq!(read_file(&s.path), s.old_copy);
    write_file(&s.path, &current);
    open(file_cfg(&s.path).min_commit_seq(s.seq).expected_root_digest(s.digest)).expect("current again");
}

/// Destroying the newest commit record looks exactly like a crash before its sync: open falls
/// back to the previous durable commit. The anchors catch that too. (After a clean close both
/// slots name the newest commit, so damaging one changes nothing; `setup`'s file is put back
/// to its state before that second record, as a crash right after the commit leaves it.)
#[test]
fn destroyed_newest_commit_record_is_caught_by_the_anchors() {
    let s = setup();
    let slots_before_close = s.records_before_close.clone();
    let mut img = read_file(&s.path);
    img[2 * PAGE..4 * PAGE].copy_from_slice(&slots_before_close);
    write_file(&s.path, &img);
    // The newest record is in whichever slot opens with the higher sequence number; damage both
    // candidates one at a time and keep the case that falls back.
    let mut fell_back = false;
    for slot in [2u64, 3] {
        let img = read_file(&s.path);
        xor_byte(&s.path, slot * PAGE as u64 + 100, 1);
        let db = open(file_cfg(&s.path)).expect("one record damaged");
        let seq = db.commit_seq();
        if seq == s.old_seq {
            // The state fallen back to is whole: every page of it checks, and it holds the
            // first session's records, not a mix.
            assert!(db.check().unwrap().is_ok());
            let t = db.open_tree("accounts").unwrap();
            assert_eq!(t.len(), 500);
            for i in 0..500u32 {
                let want = format!("balance {}", i * 10);
                assert_eq!(t.get(format!("acct{i:04}")).unwrap().as_deref(), Some(want.as_bytes()));
            }
        }
        drop(db);
        if seq == s.old_seq {
            fell_back = true;
            assert!(matches!(
                open(file_cfg(&s.path).min_commit_seq(s.seq)),
                Err(Error::RolledBack { expected, found }) if expected == s.seq && found == s.old_seq
            ));
            assert!(matches!(open(file_cfg(&s.path).expected_root_digest(s.digest)), Err(Error::RootDigestMismatch)));
        } else {
            assert_eq!(seq, s.seq, "damaging the older record must not change the state opened");
            open(file_cfg(&s.path).min_commit_seq(s.seq).expected_root_digest(s.digest)).unwrap();
        }
        write_file(&s.path, &img);
    }
    assert!(fell_back, "damaging the newest record should fall back to the previous durable commit");
}

/// An anchor taken from a non-durable commit (`commit_seq()` before `flush`) is one a crash may
/// legitimately lose (SPEC.md §11: anchor the *durable* sequence). Check the two differ and
/// that anchoring the durable one works after a crash-like loss of the undurable commit.
#[test]
fn anchor_the_durable_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = file_cfg(&path).open().unwrap();
    db.insert("a", b"1".to_vec()).unwrap();
    db.flush().unwrap();
    let durable = db.durable_commit_seq();
    assert_eq!(db.durable_root_digest(), db.root_digest());
    db.insert("b", b"2".to_vec()).unwrap();
    assert!(db.commit_seq() > durable, "an eventual commit is not durable yet");
    assert_eq!(db.durable_commit_seq(), durable);
    // The digest anchor has a durable form too (`root_digest` names the newest commit).
    let durable_digest = db.durable_root_digest();
    assert_ne!(durable_digest, db.root_digest());
    // Simulate the crash: copy the file as it is on disk now (no flush happened for "b").
    let on_disk = read_file(&path);
    drop(db); // flushes "b"
    write_file(&path, &on_disk);
    let anchored = file_cfg(&path).min_commit_seq(durable).expected_root_digest(durable_digest);
    let db = open(anchored).expect("the durable anchors survive a crash");
    assert_eq!(db.commit_seq(), durable);
    assert!(db.get("b").unwrap().is_none());
    assert_eq!(db.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    assert!(db.check().unwrap().is_ok());
}

/// A file deleted (or replaced by nothing) is the oldest rollback of all: an open with an
/// anchor refuses to create a new database in its place, and leaves nothing behind.
#[test]
fn deleted_file_is_caught_by_the_anchors() {
    let s = setup();
    std::fs::remove_file(&s.path).unwrap();
    match open(file_cfg(&s.path).min_commit_seq(s.seq)) {
        Err(Error::RolledBack { expected, found }) => assert_eq!((expected, found), (s.seq, 0)),
        Err(e) => panic!("expected RolledBack, got {e:?}"),
        Ok(_) => panic!("a new database was created in place of an anchored one"),
    }
    assert!(!s.path.exists(), "the refused open left a file");
    match open(file_cfg(&s.path).expected_root_digest(s.digest)) {
        Err(Error::RootDigestMismatch) => {}
        Err(e) => panic!("expected RootDigestMismatch, got {e:?}"),
        Ok(_) => panic!("a new database was created in place of an anchored one"),
    }
    assert!(!s.path.exists(), "the refused open left a file");
    // A directory location: neither the file nor the directory made for it stays.
    let dir = s.path.with_file_name("dir");
    match master_cfg(&dir).path(&dir).write_ahead_log(true).min_commit_seq(1).open() {
        Err(Error::RolledBack { expected: 1, found: 0 }) => {}
        Err(e) => panic!("expected RolledBack, got {e:?}"),
        Ok(_) => panic!("a new database was created in place of an anchored one"),
    }
    assert!(!dir.exists(), "the refused open left its directory");
    // An anchor of 0 names the new database itself.
    let db = open(file_cfg(&s.path).min_commit_seq(0)).expect("min_commit_seq(0) on a new file");
    assert_eq!(db.commit_seq(), 0);
}

/// An open that fails an anchor writes nothing: not the repair of a damaged header copy, not a
/// sync.
#[test]
fn failed_anchor_writes_nothing() {
    let s = setup();
    // Header copy B damaged: an open repairs it from copy A.
    xor_byte(&s.path, PAGE as u64 + 200, 0x40);
    let damaged = read_file(&s.path);
    assert!(matches!(open(file_cfg(&s.path).expected_root_digest(s.old_digest)), Err(Error::RootDigestMismatch)));
    assert_eq!(read_file(&s.path), damaged, "the refused open changed the file");
    assert!(matches!(open(file_cfg(&s.path).min_commit_seq(s.seq + 1)), Err(Error::RolledBack { .. })));
    assert_eq!(read_file(&s.path), damaged, "the refused open changed the file");
    let db = open(file_cfg(&s.path).expected_root_digest(s.digest)).expect("the right anchor opens");
    assert_eq!(db.recovery_report().header_repaired, Some(1));
}

/// A copy or a salvage made with the source's configuration, anchors and all, is a new
/// database: the anchors name the source and are not applied to it. Each salvage copies the
/// source whole (499 records, each as `setup` wrote it, nothing reported lost), and its copy
/// opens without the anchors and holds them.
#[test]
fn copies_are_not_held_to_the_sources_anchors() {
    let s = setup();
    let anchored = file_cfg(&s.path).min_commit_seq(s.seq).expected_root_digest(s.digest);
    let db = anchored.clone().open().expect("the source opens with its anchors");
    let copy = s.path.with_file_name("copy");
    foldvault::migrate::copy_to(&db, &copy, &anchored, &mut |_| {}).expect("copy with the source's anchors");
    drop(db);
    assert_eq!(file_cfg(&copy).open().unwrap().open_tree("accounts").unwrap().len(), 499);
    // The source's records: `setup`'s second session's values, "acct0007" removed.
    let want: Vec<(Vec<u8>, Vec<u8>)> = (0..500u32)
        .filter(|&i| i != 7)
        .map(|i| (format!("acct{i:04}").into_bytes(), format!("balance {}", i * 10 - i).into_bytes()))
        .collect();
    let holds_the_source = |report: &foldvault::SalvageReport, db: foldvault::Db, what: &str| {
        assert!(!report.lost_anything(), "{what}: {report:?}");
        assert_eq!(report.copied.get(&b"accounts"[..]), Some(&499), "{what}: records copied");
        let got: Vec<(Vec<u8>, Vec<u8>)> = db
            .open_tree("accounts")
            .unwrap()
            .iter()
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got.len(), 499, "{what}: records in the copy");
        assert!(got == want, "{what}: the copy's records are not the source's");
    };
    let salvaged = s.path.with_file_name("salvaged");
    let report =
        foldvault::salvage(&anchored, &anchored.clone().file(&salvaged)).expect("salvage with the source's anchors");
    holds_the_source(&report, file_cfg(&salvaged).open().unwrap(), "salvage into a file");
    let mem = std::sync::Arc::new(foldvault::storage::MemoryStorage::new());
    let report = foldvault::salvage(&anchored, &anchored.clone().storage(mem.clone()))
        .expect("salvage into storage with anchors");
    let reopened = base().master_key(foldvault::MasterKey::from_bytes(MASTER)).storage(mem).open().unwrap();
    holds_the_source(&report, reopened, "salvage into a storage");
}

/// A rollback anchor with `temporary` or `create_new` is a contradiction (the anchor names a
/// database with commits, the others a new one): `InvalidConfig`, not a rollback alarm.
#[test]
fn an_anchor_on_a_database_that_must_be_new_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let bases = [
        foldvault::Config::new().temporary(true),
        foldvault::Config::new().file(dir.path().join("new")).create_new(true),
    ];
    for base in bases {
        let base = base.plaintext().use_env(false);
        for cfg in [base.clone().min_commit_seq(1), base.expected_root_digest([7u8; 32])] {
            let e = cfg.open().map(drop).unwrap_err();
            assert!(matches!(e, foldvault::Error::InvalidConfig(_)), "{e:?}");
        }
    }
    assert!(!dir.path().join("new").exists());
}
