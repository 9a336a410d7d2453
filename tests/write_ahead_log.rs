//! The write-ahead log beside a database file (`Config::write_ahead_log`, SPEC.md §15), through
//! real files: a clean close leaves one file; a log left by a crash is replayed at the next open,
//! with the setting on or off; a log beside another database file is refused; tools that put a
//! new file in place of an old one take the old one's log away. (Crash safety at every write:
//! `tests/crash.rs`; the log's own format: unit tests in `src/storage/wal/tests.rs`.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use foldvault::storage::wal::sidecar_path;
use foldvault::storage::{FaultPlan, FaultyDevices, Storage, WalStorage};
use foldvault::{Config, Durability, Error, KdfParams};

#[path = "write_ahead_log/faulty.rs"]
mod faulty;
#[path = "write_ahead_log/header_crash.rs"]
mod header_crash;
#[path = "write_ahead_log/log_file.rs"]
mod log_file;

const PAGE: usize = 4096;

fn config(path: &Path) -> Config {
    Config::new()
        .file(path)
        .use_env(false)
        .flush_every_ms(None)
        .passphrase("write-ahead log test")
        .kdf(KdfParams::insecure_fast())
        .write_ahead_log(true)
}

/// Durable commits of `n` records `key{i}` -> `value{i}{tag}`.
fn commit_records(db: &foldvault::Db, n: u32, tag: &str) {
    for i in 0..n {
        let tx = db.begin_write().unwrap();
        tx.open_tree("t").unwrap().insert(format!("key{i:03}"), format!("value{i}{tag}").into_bytes()).unwrap();
        tx.set_durability(Durability::Immediate);
        tx.commit().unwrap();
    }
}

/// A new database at `path` with `n` durable commits (`commit_records`, tagged `tag`), and a
/// backup of it.
fn with_backup(path: &Path, n: u32, tag: &str) -> (foldvault::Db, Vec<u8>) {
    let db = config(path).open().unwrap();
    commit_records(&db, n, tag);
    let mut backup = Vec::new();
    db.backup_to(&mut backup, &mut |_| {}).unwrap();
    (db, backup)
}

/// A new database `db.foldvault` in a new directory, with `n` durable commits (`commit_records`).
fn new_db(n: u32) -> (tempfile::TempDir, PathBuf, foldvault::Db) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.foldvault");
    let db = config(&path).open().unwrap();
    commit_records(&db, n, "");
    (dir, path, db)
}

/// `key{i}` -> `value{i}{tag}` for every `i` in `range`, as `commit_records` writes them.
fn records(range: std::ops::Range<u32>, tag: &str) -> BTreeMap<String, String> {
    range.map(|i| (format!("key{i:03}"), format!("value{i}{tag}"))).collect()
}

/// What a database reopened after a crash must hold, exactly: every page checks, the trees are
/// the default one (empty) and `t`, and `t` holds `want` and nothing else.
fn assert_holds_exactly(db: &foldvault::Db, want: &BTreeMap<String, String>) {
    assert!(db.check().unwrap().is_ok());
    let names: Vec<Vec<u8>> =
        db.tree_names().iter().map(|n| n.to_vec()).filter(|n| n.as_slice() != foldvault::DEFAULT_TREE).collect();
    assert_eq!(names, vec![b"t".to_vec()]);
    assert!(db.iter().next().is_none(), "the default tree holds nothing");
    let got: BTreeMap<String, String> = db
        .open_tree("t")
        .unwrap()
        .iter()
        .map(|r| {
            let (k, v) = r.unwrap();
            (String::from_utf8(k.to_vec()).unwrap(), String::from_utf8(v.to_vec()).unwrap())
        })
        .collect();
    assert_eq!(&got, want);
}

/// Sets the version byte of a log header and makes its CRC hold again.
fn set_log_version(log: &mut [u8], version: u8) {
    log[7] = version;
    let crc = crc32fast::hash(&log[..48]);
    log[48..52].copy_from_slice(&crc.to_le_bytes());
}

/// The files of a database as a crash would leave them: copied while it is open.
fn copy_open(path: &Path, to: &Path) -> PathBuf {
    let dst = to.join("copy.foldvault");
    std::fs::copy(path, &dst).unwrap();
    std::fs::copy(sidecar_path(path), sidecar_path(&dst)).unwrap();
    dst
}

#[test]
fn a_clean_close_leaves_one_file_and_durable_commits_wait_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.foldvault");
    let db = config(&path).open().unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    let (syncs, device_syncs) = (db.metrics().syncs, db.metrics().device_syncs);
    commit_records(&db, 50, "");
    assert!(sidecar_path(&path).exists());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), before, "commits append to the log, not the file");
    assert_eq!(db.metrics().syncs - syncs, 50, "one sync per durable commit");
    assert_eq!(db.metrics().device_syncs - device_syncs, 50, "each an fdatasync of the log alone");
    drop(db);
    assert!(!sidecar_path(&path).exists(), "a clean close checkpoints and removes the log");
    let db = config(&path).write_ahead_log(false).open().unwrap();
    let t = db.open_tree("t").unwrap();
    assert_eq!(t.len(), 50);
    assert_eq!(t.get("key049").unwrap().unwrap(), &b"value49"[..]);
}

/// A log whose removal at a clean close never reached the disk (its directory's sync failed,
/// then the power) comes back holding no group: a later session without the log wrote over the
/// file, and a replay of the old groups would put older pages over its commits.
#[test]
fn a_log_removed_at_a_clean_close_that_comes_back_replays_nothing() {
    let (dir, path, db) = new_db(5);
    let kept = dir.path().join("kept-log");
    std::fs::hard_link(sidecar_path(&path), &kept).unwrap();
    drop(db);
    assert!(!sidecar_path(&path).exists());
    let db = config(&path).write_ahead_log(false).open().unwrap();
    commit_records(&db, 5, "-later");
    drop(db);
    std::fs::rename(&kept, sidecar_path(&path)).unwrap();
    let db = config(&path).open().unwrap();
    assert_holds_exactly(&db, &records(0..5, "-later"));
}

/// `Db::checkpoint_log` makes every commit durable and folds the log into the file: a copy of
/// the file alone, taken while the database is open, then holds every commit (before it, the
/// commits were in the log only).
#[test]
fn checkpoint_log_folds_every_commit_into_the_file() {
    let (dir, path, db) = new_db(30);
    let tx = db.begin_write().unwrap();
    tx.open_tree("t").unwrap().insert("eventual", &b"e"[..]).unwrap();
    tx.set_durability(Durability::Eventual);
    tx.commit().unwrap();
    let file_alone = |name: &str| {
        let copy = dir.path().join(name);
        std::fs::copy(&path, &copy).unwrap();
        let db = config(&copy).write_ahead_log(false).open().unwrap();
        if db.tree_names().iter().any(|n| &n[..] == b"t") { db.open_tree("t").unwrap().len() } else { 0 }
    };
    assert_eq!(file_alone("before.foldvault"), 0, "the commits are in the log only");
    db.checkpoint_log().unwrap();
    assert_eq!(file_alone("after.foldvault"), 31, "every commit, the eventual one too, is in the file");
    // The log goes on: a commit after it, and a second checkpoint.
    commit_records(&db, 1, "later");
    db.checkpoint_log().unwrap();
    let copy = dir.path().join("later.foldvault");
    std::fs::copy(&path, &copy).unwrap();
    let later = config(&copy).write_ahead_log(false).open().unwrap();
    assert_eq!(later.open_tree("t").unwrap().get("key000").unwrap().unwrap(), &b"value0later"[..]);
    // Inside a write transaction on the same thread its commit is not made yet: refused.
    let held = db.begin_write().unwrap();
    assert!(matches!(db.checkpoint_log(), Err(Error::Unsupported(_))));
    drop(held);
    db.checkpoint_log().unwrap();
    drop(db);
    let ro = config(&path).read_only(true).open().unwrap();
    assert!(matches!(ro.checkpoint_log(), Err(Error::ReadOnly)));
}

#[test]
fn a_session_that_only_reads_writes_nothing() {
    let (_dir, path, db) = new_db(20);
    drop(db);
    let before = std::fs::read(&path).unwrap();
    let db = config(&path).open().unwrap();
    assert_eq!(db.open_tree("t").unwrap().len(), 20);
    assert_eq!(db.metrics().syncs, 0);
    assert_eq!(std::fs::metadata(sidecar_path(&path)).unwrap().len(), 0, "no log header before a group");
    drop(db);
    assert!(!sidecar_path(&path).exists());
    assert_eq!(std::fs::read(&path).unwrap(), before, "the file is as it was");
    // The first durable commit of a session writes the header, then its group.
    let db = config(&path).open().unwrap();
    commit_records(&db, 1, "again");
    assert!(std::fs::metadata(sidecar_path(&path)).unwrap().len() >= 3 * 4096);
    let crashed = copy_open(&path, &tempfile::tempdir().unwrap().keep());
    drop(db);
    let db = config(&crashed).open().unwrap();
    let mut want = records(0..20, "");
    want.insert("key000".into(), "value0again".into());
    assert_holds_exactly(&db, &want);
    drop(db);
    std::fs::remove_dir_all(crashed.parent().unwrap()).unwrap();
}

#[test]
fn a_log_left_by_a_crash_is_replayed_with_the_setting_on_or_off() {
    for reopen_with_log in [true, false] {
        let (_dir, path, db) = new_db(30);
        let durable = db.durable_commit_seq();
        // An eventual commit that was never made durable: a crash may lose it.
        db.insert("undurable", b"x".to_vec()).unwrap();
        let crashed = copy_open(&path, &tempfile::tempdir().unwrap().keep());
        drop(db);
        // The durable sequence anchors it (SPEC §11): the log's commits count.
        let db = config(&crashed).write_ahead_log(reopen_with_log).min_commit_seq(durable).open().unwrap();
        assert_eq!(db.commit_seq(), durable);
        // Every acknowledged commit is in the log, and the undurable one is not.
        assert_holds_exactly(&db, &records(0..30, ""));
        // With the setting off the session runs on the log it found, and folds it in at close.
        assert!(sidecar_path(&crashed).exists());
        drop(db);
        assert!(!sidecar_path(&crashed).exists());
        assert_eq!(config(&crashed).open().unwrap().open_tree("t").unwrap().len(), 30);
        std::fs::remove_dir_all(crashed.parent().unwrap()).unwrap();
    }
}

#[test]
fn a_log_of_another_log_version_is_refused_and_kept() {
    let (dir, path, db) = new_db(10);
    let crashed = copy_open(&path, dir.path());
    drop(db);
    // The header as a later log version would write it: version byte 2, its CRC made to hold.
    let log = sidecar_path(&crashed);
    let mut bytes = std::fs::read(&log).unwrap();
    assert_eq!(&bytes[..8], b"FVWAL\0\0\x01");
    set_log_version(&mut bytes, 2);
    std::fs::write(&log, &bytes).unwrap();
    for with_log in [true, false] {
        match config(&crashed).write_ahead_log(with_log).open() {
            Err(Error::UnsupportedLogVersion { found: 2, supported: 1 }) => {}
            other => panic!("expected UnsupportedLogVersion, got {:?}", other.map(|_| ())),
        }
    }
    assert_eq!(std::fs::read(&log).unwrap(), bytes, "the log is neither replayed nor overwritten");
    // Put back as this version wrote it, it replays.
    set_log_version(&mut bytes, 1);
    std::fs::write(&log, &bytes).unwrap();
    assert_eq!(config(&crashed).open().unwrap().open_tree("t").unwrap().len(), 10);
}

#[test]
fn a_log_beside_another_database_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.foldvault"), dir.path().join("b.foldvault"));
    drop(config(&b).open().unwrap());
    let db = config(&a).open().unwrap();
    commit_records(&db, 5, "");
    std::fs::copy(sidecar_path(&a), sidecar_path(&b)).unwrap();
    drop(db);
    assert!(matches!(config(&b).open(), Err(Error::ForeignLog)));
    assert!(matches!(config(&b).write_ahead_log(false).open(), Err(Error::ForeignLog)));
    std::fs::remove_file(sidecar_path(&b)).unwrap();
    assert!(config(&b).open().unwrap().open_tree("t").unwrap().is_empty());
}

#[test]
fn restore_over_a_crashed_database_takes_its_log_away() {
    let dir = tempfile::tempdir().unwrap();
    // The backup: database B with records tagged "b".
    let (db, backup) = with_backup(&dir.path().join("b.foldvault"), 10, "b");
    drop(db);
    // The target: database A as a crash left it, its last commits only in its log.
    let a_dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("a.foldvault");
    let db = config(&live).open().unwrap();
    commit_records(&db, 20, "a");
    let a = copy_open(&live, a_dir.path());
    drop(db);
    let creds = foldvault::Credentials::passphrase("write-ahead log test");
    foldvault::backup::restore(
        &backup[..],
        &a,
        &creds,
        foldvault::backup::RestoreOptions { force: true, ..Default::default() },
    )
    .unwrap();
    assert!(!sidecar_path(&a).exists(), "the replaced database's log is gone");
    let t = config(&a).open().unwrap().open_tree("t").unwrap();
    assert_eq!(t.len(), 10);
    assert_eq!(t.get("key003").unwrap().unwrap(), &b"value3b"[..]);
}

/// A backup of a database restored over that same database (same file id, so its log's owner
/// check would accept the log): refused while the database is open (`Locked`, nothing changed);
/// once it is closed as a crash left it, with commits after the backup only in its log, the
/// log is folded into the old file before the rename and gone after it, and the restored file
/// holds exactly the backup.
#[test]
fn restore_over_the_same_database_locks_it_and_leaves_no_log_behind() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("a.foldvault");
    let (db, backup) = with_backup(&live, 10, "");
    commit_records(&db, 20, "after");
    let creds = foldvault::Credentials::passphrase("write-ahead log test");
    let force = || foldvault::backup::RestoreOptions { force: true, ..Default::default() };
    let r = foldvault::backup::restore(&backup[..], &live, &creds, force());
    assert!(matches!(r, Err(Error::Locked)), "{r:?}");
    assert_eq!(db.open_tree("t").unwrap().get("key003").unwrap().unwrap(), &b"value3after"[..]);
    let names = |d: &Path| std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect::<Vec<_>>();
    assert!(!names(dir.path()).iter().any(|n| n.to_string_lossy().contains(".restore-")), "temporary file left");
    // The same database as a crash leaves it: its last commits only in its log.
    let crashed_dir = tempfile::tempdir().unwrap();
    let crashed = copy_open(&live, crashed_dir.path());
    drop(db);
    foldvault::backup::restore(&backup[..], &crashed, &creds, force()).unwrap();
    assert!(!sidecar_path(&crashed).exists(), "the replaced database's log is gone");
    let t = config(&crashed).open().unwrap().open_tree("t").unwrap();
    assert_eq!(t.len(), 10);
    assert_eq!(t.get("key003").unwrap().unwrap(), &b"value3"[..]);
}

#[test]
fn a_log_that_cannot_be_created_leaves_the_file_alone_working() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.foldvault");
    // Where the log would go, a link to nowhere: creating it fails (as in a read-only
    // directory, which root, running these tests, could still write).
    std::os::unix::fs::symlink(dir.path().join("missing/dir/log"), sidecar_path(&path)).unwrap();
    let db = config(&path).open().unwrap();
    commit_records(&db, 5, "");
    drop(db);
    let db = config(&path).write_ahead_log(false).open().unwrap();
    assert_eq!(db.open_tree("t").unwrap().len(), 5);
}

/// A damaged first header copy (zeroed, or one bit of its file id flipped) is repaired by the
/// open that uses the second; the commits of that session, logged or not, survive a crash, and
/// the log is never written under an owner that no copy of the header holds.
#[test]
fn commits_after_a_header_copy_repair_survive_a_crash() {
    for damage in ["zeroed", "file id bit"] {
        let (dir, path, db) = new_db(5);
        drop(db);
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        use std::os::unix::fs::FileExt;
        match damage {
            "zeroed" => f.write_all_at(&[0u8; 64], 0).unwrap(),
            _ => {
                let mut b = [0u8; 1];
                std::fs::File::open(&path).unwrap().read_exact_at(&mut b, 20).unwrap();
                f.write_all_at(&[b[0] ^ 1], 20).unwrap();
            }
        }
        drop(f);
        let db = config(&path).open().unwrap();
        for i in 5..40u32 {
            let tx = db.begin_write().unwrap();
            tx.open_tree("t").unwrap().insert(format!("key{i:03}"), format!("value{i}").into_bytes()).unwrap();
            tx.set_durability(Durability::Immediate);
            tx.commit().unwrap();
        }
        let crashed = copy_open(&path, &tempfile::tempdir().unwrap().keep());
        drop(db);
        // The crash came during a checkpoint, after its copy of the repaired first header copy
        // (the same bytes as the second) had reached the file.
        let mut second = vec![0u8; 4096];
        let c = std::fs::OpenOptions::new().read(true).write(true).open(&crashed).unwrap();
        c.read_exact_at(&mut second, 4096).unwrap();
        c.write_all_at(&second, 0).unwrap();
        drop(c);
        let reopened = config(&crashed).open().unwrap_or_else(|e| panic!("{damage}: {e}"));
        assert_holds_exactly(&reopened, &records(0..40, ""));
        drop(reopened);
        std::fs::remove_dir_all(crashed.parent().unwrap()).unwrap();
        drop(dir);
    }
}

/// A database opened through a symbolic link keeps its log beside the file the link names, so
/// an open by either name after a crash replays it: with the log beside the link, an open by
/// the file's own name missed the acknowledged commits, and a later open through the link
/// replayed that log over whatever had been committed meanwhile.
#[test]
fn a_database_opened_through_a_link_keeps_its_log_beside_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("volume");
    std::fs::create_dir(&data).unwrap();
    let file = data.join("db.foldvault");
    let link = dir.path().join("app.foldvault");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    // Created through the (dangling) link: the file is made where it points, the link stays.
    let db = config(&link).open().unwrap();
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    commit_records(&db, 20, "");
    assert!(sidecar_path(&file).exists() && !sidecar_path(&link).exists(), "the log is beside the file");
    // The crash: the files as they are while the database is open.
    let crashed = tempfile::tempdir().unwrap();
    let copy = copy_open(&file, crashed.path());
    drop(db);
    let copy_link = crashed.path().join("link.foldvault");
    std::os::unix::fs::symlink(&copy, &copy_link).unwrap();
    let db = config(&copy).open().unwrap();
    assert_holds_exactly(&db, &records(0..20, ""));
    drop(db);
    let db = config(&copy_link).open().unwrap();
    assert_holds_exactly(&db, &records(0..20, ""));
}

/// A database with 10 durable commits as a crash left it, reached through a symbolic link
/// `link.foldvault`, its log beside the link (where earlier versions put it): the directory,
/// the file and the link.
fn crashed_with_log_beside_link() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (dir, path, db) = new_db(10);
    let crashed = copy_open(&path, dir.path());
    drop(db);
    let link = dir.path().join("link.foldvault");
    std::os::unix::fs::symlink(&crashed, &link).unwrap();
    std::fs::rename(sidecar_path(&crashed), sidecar_path(&link)).unwrap();
    (dir, crashed, link)
}

/// A log an earlier version left beside a link's own name is replayed by an open through the
/// link; with a log beside the file too the open is refused, naming both, and changes nothing.
#[test]
fn a_log_left_beside_a_link_by_an_earlier_version_is_still_replayed() {
    let (_dir, crashed, link) = crashed_with_log_beside_link();
    let log = std::fs::read(sidecar_path(&link)).unwrap();

    std::fs::write(sidecar_path(&crashed), &log).unwrap();
    let err = config(&link).open().map(|_| ()).unwrap_err();
    assert!(matches!(&err, Error::Unsupported(m) if m.contains("link.foldvault.fvwal")), "{err}");
    assert_eq!(std::fs::read(sidecar_path(&link)).unwrap(), log, "the refused open changed nothing");
    std::fs::remove_file(sidecar_path(&crashed)).unwrap();

    // A refused open leaves the log where it found it (it moves it beside the file first).
    let wrong_key = config(&link).passphrase("not the passphrase").open().map(|_| ()).unwrap_err();
    assert!(matches!(wrong_key, Error::WrongKey { .. }), "{wrong_key:?}");
    assert!(!sidecar_path(&crashed).exists(), "the refused open left the log beside the file");
    assert_eq!(std::fs::read(sidecar_path(&link)).unwrap(), log, "the refused open changed the log");

    let db = config(&link).open().unwrap();
    assert_holds_exactly(&db, &records(0..10, ""));
    // The open moved the log beside the file: the session logs where every name finds it, so
    // an open by the file's own name after a crash sees the commits made through the link.
    assert!(sidecar_path(&crashed).exists() && !sidecar_path(&link).exists(), "the log is still beside the link");
    commit_records(&db, 12, "-again");
    let again = tempfile::tempdir().unwrap();
    let copy = copy_open(&crashed, again.path());
    drop(db);
    assert!(!sidecar_path(&crashed).exists(), "a clean close removes the log it took");
    assert_holds_exactly(&config(&crashed).open().unwrap(), &records(0..12, "-again"));
    assert_holds_exactly(&config(&copy).open().unwrap(), &records(0..12, "-again"));
}

/// An in-place conversion through a link takes the log the database's open takes: one an
/// earlier version left beside the link, whose commits the converted file then holds, and
/// which is gone afterwards (the converted file has another identity).
#[test]
fn converting_through_a_link_takes_the_log_left_beside_it() {
    let (_dir, crashed, link) = crashed_with_log_beside_link();
    let to = config(&link).passphrase("converted");
    foldvault::migrate::convert_in_place(&link, &config(&link), &to, &mut |_| {}).unwrap();
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link stays");
    assert!(!sidecar_path(&link).exists() && !sidecar_path(&crashed).exists());
    assert_holds_exactly(&to.open().unwrap(), &records(0..10, ""));
    assert_holds_exactly(&config(&crashed).passphrase("converted").open().unwrap(), &records(0..10, ""));
}

/// An open refused for its key or a rollback anchor leaves a crashed database's file and log
/// byte for byte as they were: the log's close folded it into the file and removed it.
#[test]
fn an_open_that_fails_leaves_the_file_and_its_log_as_they_were() {
    let (dir, path, db) = new_db(10);
    let crashed = copy_open(&path, dir.path());
    drop(db);
    let (file, log) = (std::fs::read(&crashed).unwrap(), std::fs::read(sidecar_path(&crashed)).unwrap());
    let wrong_key = config(&crashed).passphrase("not the passphrase").open().map(|_| ()).unwrap_err();
    assert!(matches!(wrong_key, Error::WrongKey { .. }), "{wrong_key:?}");
    let anchored = config(&crashed).min_commit_seq(1_000).open().map(|_| ()).unwrap_err();
    assert!(matches!(anchored, Error::RolledBack { .. }), "{anchored:?}");
    // `create_new` finds the file holds a database once it has the lock.
    let exists = config(&crashed).create_new(true).open().map(|_| ()).unwrap_err();
    assert!(matches!(exists, Error::AlreadyExists(_)), "{exists:?}");
    assert_eq!(std::fs::read(sidecar_path(&crashed)).unwrap(), log, "the log changed");
    assert_eq!(std::fs::read(&crashed).unwrap(), file, "the file changed");
    assert_holds_exactly(&config(&crashed).open().unwrap(), &records(0..10, ""));
}

/// A copy of the open database `db` at `path` as a crash leaves it, and a second name of that
/// copy (a hard link) with the log beside it instead: opens by the first name find no log.
fn crashed_with_log_beside_alias(dir: &Path, path: &Path, db: foldvault::Db) -> (PathBuf, PathBuf) {
    let crashed = copy_open(path, dir);
    drop(db);
    let alias = dir.join("alias.foldvault");
    std::fs::hard_link(&crashed, &alias).unwrap();
    std::fs::rename(sidecar_path(&crashed), sidecar_path(&alias)).unwrap();
    (crashed, alias)
}

/// A log older than the file is refused (`StaleLog`), not replayed over it. Two hard links to
/// one file: a crash leaves commits in the log beside one name; an open by the other does not
/// find that log and commits on without it; an open by the first name then finds a log whose
/// commits the file went on without, and replaying it would put them over the later ones.
#[test]
fn a_log_older_than_the_file_is_refused() {
    // (One commit later is not told apart from a commit torn before its sync and committed
    // again: `a_commit_torn_before_its_sync_and_committed_again_through_the_log_is_not_stale`.)
    for later in [5u32, 2] {
        let (dir, path, db) = new_db(10);
        let (crashed, alias) = crashed_with_log_beside_alias(dir.path(), &path, db);
        // By the other name: the log is not found, the file goes on without it.
        let other = config(&crashed).open().unwrap();
        commit_records(&other, later, "-b");
        drop(other);
        let (file, log) = (std::fs::read(&crashed).unwrap(), std::fs::read(sidecar_path(&alias)).unwrap());
        let err = config(&alias).open().map(|_| ()).unwrap_err();
        assert!(matches!(err, Error::StaleLog { .. }), "{later} later commits: {err:?}");
        assert_eq!(std::fs::read(&crashed).unwrap(), file, "the refused open changed the file");
        assert_eq!(std::fs::read(sidecar_path(&alias)).unwrap(), log, "the refused open changed the log");
        let read_only = config(&alias).read_only(true).open().map(|_| ()).unwrap_err();
        assert!(matches!(read_only, Error::StaleLog { .. }), "read-only: {read_only:?}");
        // The log moved away, the file opens as it is.
        std::fs::remove_file(sidecar_path(&alias)).unwrap();
        assert_holds_exactly(&config(&alias).open().unwrap(), &records(0..later, "-b"));
    }
}

/// A crashed session's open that repaired a damaged header copy writes the repair through to
/// the file, as every header page is written: the log a crash then leaves beside another name
/// holds no header page, and the passphrase change and the slot added through the first name
/// since are kept when that log is found again. (The log held the repair's copy, of an older
/// generation than the file's, and the open said `StaleLog`; that check stays for a log an
/// earlier build wrote, which logged its header pages.)
#[test]
fn a_header_repair_leaves_no_header_page_in_the_log() {
    let (dir, path, db) = new_db(10);
    drop(db);
    // Copy B damaged: the next open repairs it.
    let mut file = std::fs::read(&path).unwrap();
    file[4096 + 300] ^= 1;
    std::fs::write(&path, &file).unwrap();
    let db = config(&path).open().unwrap();
    let (crashed, alias) = crashed_with_log_beside_alias(dir.path(), &path, db);
    let logged = std::fs::read(sidecar_path(&alias)).unwrap();
    let headers = logged.chunks(4096).skip(1).filter(|p| p.starts_with(&foldvault::format::MAGIC)).count();
    assert_eq!(headers, 0, "the repair's header copy is in the log");
    let other = config(&crashed).open().unwrap();
    let old = foldvault::Credentials::passphrase("write-ahead log test");
    other.change_passphrase(&old, foldvault::Passphrase::from("changed"), KdfParams::insecure_fast()).unwrap();
    other.add_slot(&foldvault::Credentials::passphrase("third"), KdfParams::insecure_fast()).unwrap();
    drop(other);
    let reopened = config(&alias).passphrase("changed").open().unwrap();
    assert_eq!(reopened.slots().len(), 2);
    assert_holds_exactly(&reopened, &records(0..10, ""));
}

/// The same with the log holding one commit record only (a checkpoint came before its one
/// commit), and the file gone on by two commits: the second lands in the slot the log does not
/// hold. A check of only the slots the log holds let the log be replayed over both.
#[test]
fn a_log_holding_one_slot_older_than_the_file_is_refused() {
    let (dir, path, db) = new_db(10);
    db.checkpoint_log().unwrap();
    commit_records(&db, 1, "-a");
    let (crashed, alias) = crashed_with_log_beside_alias(dir.path(), &path, db);
    // No second record at the close: that would be built on the later commit itself, and show
    // it in either slot.
    let other = config(&crashed).checkpoint_on_close(false).open().unwrap();
    commit_records(&other, 2, "-b");
    drop(other);
    let err = config(&alias).open().map(|_| ()).unwrap_err();
    assert!(matches!(err, Error::StaleLog { .. }), "{err:?}");
    std::fs::remove_file(sidecar_path(&alias)).unwrap();
    let mut want = records(0..10, "");
    want.extend(records(0..2, "-b"));
    assert_holds_exactly(&config(&alias).open().unwrap(), &want);
}

/// A log beside a file older than the commit the log was built on (the file put back from an
/// older copy, the log left as it was) is refused too: the file's records are all built on
/// earlier commits, but neither slot holds the log's base, and the log's pages would land on a
/// tree they were not written against.
#[test]
fn a_log_beside_a_file_older_than_its_base_is_refused() {
    let (_dir, crashed) = older_file_put_back_beside_a_later_log(10);
    std::fs::remove_file(sidecar_path(&crashed)).unwrap();
    assert_holds_exactly(&config(&crashed).open().unwrap(), &records(0..10, ""));
}

/// A database of `n` commits, checkpointed, copied; 5 commits, a checkpoint and 2 commits
/// more, a crash; the copy put back beside the crash's log: `StaleLog`, and the file left as
/// it was. Returns its directory and path.
fn older_file_put_back_beside_a_later_log(n: u32) -> (tempfile::TempDir, PathBuf) {
    let (dir, path, db) = new_db(n);
    if n > 0 {
        db.checkpoint_log().unwrap();
    }
    let older = std::fs::read(&path).unwrap();
    commit_records(&db, 5, "-a");
    db.checkpoint_log().unwrap();
    commit_records(&db, 2, "-b");
    let crashed = copy_open(&path, dir.path());
    drop(db);
    std::fs::write(&crashed, &older).unwrap();
    let err = config(&crashed).open().map(|_| ()).unwrap_err();
    assert!(matches!(err, Error::StaleLog { .. }), "{err:?}");
    assert_eq!(std::fs::read(&crashed).unwrap(), older, "the refused open changed the file");
    (dir, crashed)
}

/// The same with the file as it was made, before any checkpoint: its second commit slot was
/// never written (all zeros), which is not a record a crash tore, and does not stand for the
/// log's base (a review's case: it let the log be replayed onto the new file).
#[test]
fn a_log_beside_a_new_file_put_back_is_refused() {
    older_file_put_back_beside_a_later_log(0);
}

/// A file emptied (or cut short of its headers) with its log beside it is `Truncated`, as
/// without a log (SPEC §11), not a log of another database's.
#[test]
fn an_emptied_file_beside_its_log_is_truncated() {
    let (dir, path, db) = new_db(3);
    let crashed = copy_open(&path, dir.path());
    drop(db);
    for len in [0u64, 100, 4096] {
        let f = std::fs::OpenOptions::new().write(true).open(&crashed).unwrap();
        f.set_len(len).unwrap();
        drop(f);
        let err = config(&crashed).open().map(|_| ()).unwrap_err();
        assert!(matches!(err, Error::Truncated { found, .. } if found == len), "{len}: {err:?}");
    }
    // Cut keeping its first bytes, which still name the log's owner: the header was read as
    // damaged (`HeaderChecksum`) below 4,032 bytes.
    let whole = std::fs::read(&path).unwrap();
    for len in [100usize, 1000, 4000, 4096 + 100] {
        std::fs::write(&crashed, &whole[..len]).unwrap();
        let err = config(&crashed).open().map(|_| ()).unwrap_err();
        assert!(matches!(err, Error::Truncated { found, .. } if found == len as u64), "{len}: {err:?}");
    }
}

/// A file cut short beside its log, its header copies whole, is `Truncated` at open (SPEC
/// §12), when the pages cut off are live in the commit and no group of the log holds them
/// (SPEC review, medium: the log's length stood in for the file's, the cut pages read as
/// zeros, and the open succeeded, every read of them then a seal mismatch). Cut where only
/// logged pages are missing, the file opens whole.
#[test]
fn a_file_cut_short_beside_its_log_is_truncated() {
    let (dir, path, db) = new_db(0);
    let t = db.open_tree("t").unwrap();
    for i in 0..2000u32 {
        t.insert(format!("bulk{i:05}"), vec![i as u8; 200]).unwrap();
    }
    db.flush().unwrap();
    db.checkpoint_log().unwrap();
    commit_records(&db, 3, "");
    let crashed = copy_open(&path, dir.path());
    drop(db);
    let whole = std::fs::read(&crashed).unwrap();
    assert!(whole.len() > 64 * PAGE);
    for pages in [2u64, 8, 40] {
        std::fs::write(&crashed, &whole[..pages as usize * PAGE]).unwrap();
        let err = config(&crashed).open().map(|_| ()).unwrap_err();
        assert!(matches!(err, Error::Truncated { found, .. } if found == pages * PAGE as u64), "{pages}: {err:?}");
    }
    std::fs::write(&crashed, &whole).unwrap();
    let db = config(&crashed).open().unwrap();
    assert_eq!(db.open_tree("t").unwrap().len(), 2003);
}

/// A group of the log that fails its checksum (a byte of a logged page flipped) stops the
/// replay there: its commits and the later ones are left out, and the open says so
/// (`was_recovered`, `log_group_dropped`), as it does for a commit record in the file that does
/// not open. A copy of the same log undamaged says nothing.
#[test]
fn a_damaged_log_group_is_reported_by_was_recovered() {
    let (dir, path, db) = new_db(3);
    commit_records(&db, 6, "-again");
    let crashed = copy_open(&path, dir.path());
    drop(db);
    let clean_dir = tempfile::tempdir().unwrap();
    let clean = copy_open(&crashed, clean_dir.path());
    let db = config(&clean).open().unwrap();
    assert!(!db.was_recovered() && !db.recovery_report().log_group_dropped);
    drop(db);
    let log = sidecar_path(&crashed);
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[2 * PAGE + 100] ^= 0x40;
    std::fs::write(&log, &bytes).unwrap();
    let db = config(&crashed).open().unwrap();
    assert!(db.recovery_report().log_group_dropped);
    assert!(db.was_recovered());
}

/// Issue #8's target: a durable one-record commit costs at most about 1.3 fsyncs. Counted, not
/// timed: the `fdatasync`s that returned on the file and the log (`Metrics::device_syncs`),
/// checkpoints included, over 2,000 durable commits of one record (several checkpoints), with
/// the log and without it.
#[test]
fn a_durable_one_record_commit_costs_at_most_about_one_fsync() {
    for log in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let db = config(&dir.path().join("db.foldvault")).write_ahead_log(log).open().unwrap();
        commit_records(&db, 10, "");
        let before = db.metrics().device_syncs;
        let t = db.open_tree("t").unwrap();
        for i in 0..2000u32 {
            let tx = db.begin_write().unwrap();
            tx.open_tree("t").unwrap().insert(i.to_be_bytes(), vec![7u8; 100]).unwrap();
            tx.set_durability(Durability::Immediate);
            tx.commit().unwrap();
        }
        let per_commit = (db.metrics().device_syncs - before) as f64 / 2000.0;
        assert!((1.0..=1.3).contains(&per_commit), "log {log}: {per_commit} fdatasyncs per durable commit");
        assert_eq!(t.len(), 2010);
    }
}

/// `Config::wal_checkpoint_pages` and `Config::wal_background_checkpoints` reach the log: with a
/// checkpoint every 8 pages the log stays within its first growth step (it grows 256 pages at a
/// time) in both checkpoint modes, and without background ones the file alone holds the earlier
/// commits (with the default, 16 MiB, 300 commits stay in the log alone and grow it further); without background checkpoints the copy is made in the commit that fills the
/// log, so the file alone holds the commits up to it at once. Every commit survives a reopen.
#[test]
fn the_checkpoint_settings_of_config_reach_the_log() {
    let records_in_file_alone = |dir: &Path, path: &Path, name: &str| {
        let copy = dir.join(name);
        std::fs::copy(path, &copy).unwrap();
        let db = config(&copy).write_ahead_log(false).open().unwrap();
        if db.tree_names().iter().any(|n| &n[..] == b"t") { db.open_tree("t").unwrap().len() } else { 0 }
    };
    let log_pages = |path: &Path| std::fs::metadata(sidecar_path(path)).unwrap().len() / PAGE as u64;
    for (small, background) in [(false, true), (true, true), (true, false)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.foldvault");
        let mut cfg = config(&path).wal_background_checkpoints(background);
        if small {
            cfg = cfg.wal_checkpoint_pages(8);
        }
        let db = cfg.open().unwrap();
        let mut max_log = 0;
        for i in 0..300u32 {
            let tx = db.begin_write().unwrap();
            tx.open_tree("t").unwrap().insert(format!("key{i:03}"), format!("value{i}").into_bytes()).unwrap();
            tx.set_durability(Durability::Immediate);
            tx.commit().unwrap();
            max_log = max_log.max(log_pages(&path));
            if small && !background && i == 20 {
                let in_file = records_in_file_alone(dir.path(), &path, "at-20.foldvault");
                assert!(in_file >= 10, "commit 20: the file alone holds {in_file} records");
            }
        }
        if small {
            assert!(max_log <= 257, "background {background}: the log reached {max_log} pages");
            // (With background checkpoints a copy may be writing the file now: a copy of the
            // file alone taken meanwhile need not open. The log's bound shows the checkpoints.)
            if !background {
                let in_file = records_in_file_alone(dir.path(), &path, "file-alone.foldvault");
                assert!(in_file >= 290, "the file alone holds {in_file} records");
            }
        } else {
            let in_file = records_in_file_alone(dir.path(), &path, "file-alone.foldvault");
            assert!(max_log > 257, "the default log held {max_log} pages");
            assert_eq!(in_file, 0, "with the default, the commits are in the log only");
        }
        drop(db);
        let db = config(&path).open().unwrap();
        assert_holds_exactly(&db, &records(0..300, ""));
    }
}
