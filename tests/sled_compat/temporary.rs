//! Config: temporary databases (removed on drop, refused over an existing database) and creates
//! that fail, which leave nothing behind.

use std::path::Path;

use super::*;

fn dir_is_gone_or_empty(p: &Path) -> bool {
    !p.exists() || std::fs::read_dir(p).map(|mut d| d.next().is_none()).unwrap_or(false)
}

/// The file of a temporary plaintext database, found by a marker it holds (its directory has
/// a random name in the system's temporary directory).
fn find_temporary_file(marker: &[u8]) -> std::path::PathBuf {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
        let file = entry.path().join("db.foldvault");
        if entry.file_name().to_string_lossy().starts_with("foldvault-")
            && std::fs::read(&file).is_ok_and(|b| b.windows(marker.len()).any(|w| w == marker))
        {
            found.push(file);
        }
    }
    assert_eq!(found.len(), 1, "{found:?}");
    found.pop().unwrap()
}

#[test]
fn temporary_without_path_is_removed_on_drop() {
    let db = Config::new().temporary(true).use_env(false).open().unwrap();
    let db2 = Config::new().temporary(true).use_env(false).open().unwrap();
    let marker = format!("temporary-marker-{}", std::process::id());
    db.insert(&marker, "v").unwrap();
    db2.insert("k", "other").unwrap();
    db.flush().unwrap();
    assert_eq!(db.get(&marker).unwrap().unwrap(), "v");
    assert_eq!(db2.get(&marker).unwrap(), None);
    let file = find_temporary_file(marker.as_bytes());
    let dir = file.parent().unwrap().to_path_buf();
    let tree = db.open_tree("t").unwrap();
    drop(db);
    tree.insert("still", "works").unwrap();
    assert!(file.exists(), "removed while a tree still uses it");
    drop(tree);
    assert!(!file.exists());
    assert!(!dir.exists());
    assert_eq!(db2.get("k").unwrap().unwrap(), "other");
}

#[test]
fn temporary_with_existing_empty_dir_is_removed_on_drop() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("empty");
    std::fs::create_dir(&dir).unwrap();
    {
        let db = Config::new().path(&dir).temporary(true).use_env(false).open().unwrap();
        db.insert("k", "v").unwrap();
        db.flush().unwrap();
        assert!(dir.join("db.foldvault").exists());
    }
    assert!(dir_is_gone_or_empty(&dir));
    assert!(!dir.join("db.foldvault").exists());
}

/// Regression: `temporary(true)` at a path holding a database emptied its file (and removed
/// its log) at open; it is refused and the database is kept.
#[test]
fn temporary_over_an_existing_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        db.insert("k", "kept").unwrap();
        db.flush().unwrap();
    }
    let r = Config::new().path(dir.path()).temporary(true).use_env(false).open();
    assert!(matches!(r, Err(Error::AlreadyExists(_))), "{r:?}");
    assert_eq!(open(dir.path()).get("k").unwrap().unwrap(), "kept");
    // A log with no file beside it: refused too, and no file is left made.
    let other = dir.path().join("other");
    std::fs::write(foldvault::storage::wal::sidecar_path(&other), b"a log").unwrap();
    let r = Config::new().file(&other).temporary(true).use_env(false).open();
    assert!(matches!(r, Err(Error::AlreadyExists(_))), "{r:?}");
    assert!(!other.exists(), "the refused open left a file it made");
}

#[test]
fn temporary_inside_another_databases_folder() {
    let dir = tempfile::tempdir().unwrap();
    let main = open(dir.path());
    main.insert("main", "data").unwrap();
    main.flush().unwrap();
    // The flushed commit is in the write-ahead log beside the file, not yet in the file.
    let log = dir.path().join("db.foldvault.fvwal");
    assert!(log.exists());
    let nested = dir.path().join("scratch");
    {
        let tmp = Config::new().path(&nested).temporary(true).use_env(false).open().unwrap();
        tmp.insert("tmp", "x").unwrap();
        tmp.flush().unwrap();
        assert_eq!(tmp.get("main").unwrap(), None);
    }
    assert!(dir_is_gone_or_empty(&nested));
    // The same folder as the open database: refused, and the database is untouched.
    let clash = Config::new().path(dir.path()).temporary(true).use_env(false).open();
    assert!(matches!(clash, Err(Error::Locked)), "{clash:?}");
    // Nothing was touched before the lock was tried: the log holding the commit is still there.
    assert!(log.exists(), "the refused temporary open removed the database's log");
    assert_eq!(main.get("main").unwrap().unwrap(), "data");
    main.insert("more", "1").unwrap();
    drop(main);
    let main = open(dir.path());
    assert_eq!(main.get("main").unwrap().unwrap(), "data");
    assert_eq!(main.get("more").unwrap().unwrap(), "1");
}

/// A create that is refused (encryption required and no key) leaves nothing behind: no empty
/// file that the next open would take for a truncated database, no directory, no log.
#[test]
fn a_refused_create_leaves_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("new");
    let file = parent.path().join("file.db");
    let required = || Config::new().use_env(false).encryption(foldvault::Encryption::Required);
    for cfg in [required().path(&dir), required().file(&file), required().file(&file).write_ahead_log(false)] {
        match cfg.open() {
            Err(Error::WrongKey { .. }) => {}
            other => panic!("expected WrongKey, got {:?}", other.map(|_| ())),
        }
        assert!(!dir.exists(), "the refused create left its directory");
        assert!(!file.exists(), "the refused create left its file");
        assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0, "the refused create left a file");
    }
    // The same names open (and create) afterwards.
    for cfg in [Config::new().use_env(false).path(&dir), Config::new().use_env(false).file(&file)] {
        let db = cfg.open().expect("create after a refused create");
        db.insert("k", "v").unwrap();
    }
    // An existing empty file (made by mktemp, say) is not this open's: a refused create keeps it.
    let empty = parent.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    assert!(required().file(&empty).create_new(true).open().is_err());
    assert!(empty.exists());
    // ...and takes away the log it made beside it: left there, it made every later
    // `create_new` fail `AlreadyExists`, and an open without it create a database in the file.
    assert!(!foldvault::storage::wal::sidecar_path(&empty).exists(), "the refused create left its log");
    let db = Config::new().use_env(false).file(&empty).create_new(true).open().expect("create_new after a refused one");
    db.insert("k", "v").unwrap();
    drop(db);
    // The same for a refused open of a file that holds a database: the log it made goes.
    let keyed = parent.path().join("keyed.db");
    let pass =
        |p: &str| Config::new().use_env(false).file(&keyed).passphrase(p).kdf(foldvault::KdfParams::insecure_fast());
    drop(pass("right").open().unwrap());
    assert!(matches!(pass("wrong").open(), Err(Error::WrongKey { .. })));
    assert!(!foldvault::storage::wal::sidecar_path(&keyed).exists(), "the refused open left a log");
}

/// A create whose write-ahead log fails to open (here a directory has the log's name) takes
/// away the file it made: an empty file left there would fail every later open as truncated.
#[test]
fn a_create_whose_log_fails_leaves_no_file() {
    let parent = tempfile::tempdir().unwrap();
    let file = parent.path().join("file.db");
    let log = foldvault::storage::wal::sidecar_path(&file);
    std::fs::create_dir(&log).unwrap();
    for wal in [true, false] {
        assert!(Config::new().use_env(false).file(&file).write_ahead_log(wal).open().is_err());
        assert!(!file.exists(), "the failed create left its file (log on: {wal})");
    }
    std::fs::remove_dir(&log).unwrap();
    let db = Config::new().use_env(false).file(&file).open().expect("create once the log's name is free");
    db.insert("k", "v").unwrap();
    drop(db);
    // A file that holds a database is kept whatever its log does.
    std::fs::create_dir(&log).unwrap();
    assert!(Config::new().use_env(false).file(&file).open().is_err());
    std::fs::remove_dir(&log).unwrap();
    let db = Config::new().use_env(false).file(&file).open().expect("reopen");
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
}
