//! The log's own file: only a plain file at its name is used, it is shared as the database file
//! is, and it keeps no session's pages under another name once the session closes.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;

/// A symbolic link (or a directory) where the log goes is refused, naming it, and what a link
/// names is left as it was: an open took another database behind such a link for an empty
/// log, and its first group wrote a log header over that database's header page.
#[test]
fn a_link_or_a_directory_where_the_log_goes_is_refused() {
    let (dir, path, db) = new_db(3);
    drop(db);
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let log = sidecar_path(&path);
    std::os::unix::fs::symlink(&victim, &log).unwrap();
    let err = config(&path).open().map(|_| ()).unwrap_err();
    assert!(matches!(&err, Error::Unsupported(m) if m.contains(".fvwal")), "{err:?}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    // A link to nothing: no log (as where one cannot be made), and the file it names is not
    // made.
    std::fs::remove_file(&victim).unwrap();
    commit_records(&config(&path).open().unwrap(), 1, "-no-log");
    assert!(!victim.exists(), "the open made the file a link names");
    std::fs::remove_file(&log).unwrap();
    std::fs::create_dir(&log).unwrap();
    let err = config(&path).open().map(|_| ()).unwrap_err();
    assert!(err.to_string().contains(".fvwal"), "{err}");
    std::fs::remove_dir(&log).unwrap();
    let mut want = records(0..3, "");
    want.extend(records(0..1, "-no-log"));
    assert_holds_exactly(&config(&path).open().unwrap(), &want);
}

/// The log a session makes is shared as the database file is (a group-shared file's log was
/// 0600, and another member's next open after a crash failed with a bare "Permission denied"),
/// with read and write for its owner.
#[test]
fn a_new_log_takes_the_database_files_sharing() {
    let (_dir, path, db) = new_db(1);
    drop(db);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let db = config(&path).open().unwrap();
    commit_records(&db, 1, "-shared");
    let mode = std::fs::metadata(sidecar_path(&path)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
}

/// Another name of the log keeps no session's pages: the creation name a kill left (its link to
/// the log made, its removal not) is removed at the next open, and a close empties the log
/// before it removes its name, so a hard link someone made holds nothing after it.
#[test]
fn no_other_name_of_the_log_keeps_its_pages() {
    let (dir, path, db) = new_db(1);
    drop(db);
    let log = sidecar_path(&path);
    std::fs::write(&log, b"").unwrap();
    let creation_name = dir.path().join(".db.foldvault.fvwal.new-0123456789ab");
    std::fs::hard_link(&log, &creation_name).unwrap();
    let db = config(&path).open().unwrap();
    assert!(!creation_name.exists(), "the creation name a kill left is still there");
    let keep = dir.path().join("keep");
    std::fs::hard_link(&log, &keep).unwrap();
    commit_records(&db, 5, "-linked");
    assert!(std::fs::metadata(&keep).unwrap().len() > 0, "the session logged nothing");
    drop(db);
    assert!(!log.exists());
    let kept = std::fs::metadata(&keep).unwrap();
    assert_eq!((kept.len(), kept.nlink()), (0, 1), "the log's pages outlived its close under another name");
    assert_holds_exactly(&config(&path).open().unwrap(), &records(0..5, "-linked"));
}

/// A hard link at the log's name to a file that holds no log (another database) is refused:
/// taken for an empty log, its first page was overwritten by the first group's header.
#[test]
fn a_hard_link_to_another_file_at_the_logs_name_is_refused() {
    let (dir, path, db) = new_db(2);
    drop(db);
    let (_other_dir, other, other_db) = new_db(1);
    drop(other_db);
    let before = std::fs::read(&other).unwrap();
    let log = sidecar_path(&path);
    std::fs::hard_link(&other, &log).unwrap();
    let err = config(&path).open().map(|_| ()).unwrap_err();
    assert!(matches!(&err, Error::Unsupported(m) if m.contains("holds no write-ahead log")), "{err:?}");
    assert!(std::fs::read(&other).unwrap() == before, "the other database was written to");
    std::fs::remove_file(&log).unwrap();
    assert_holds_exactly(&config(&path).open().unwrap(), &records(0..2, ""));
    drop(dir);
}
