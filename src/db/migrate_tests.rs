//! Unit tests of `migrate`: the in-place conversion's steps, apart.

use super::*;

/// A panic inside sled during an import is an error of the import.
#[cfg(feature = "sled-import")]
#[test]
fn a_panic_inside_sled_is_an_error() {
    let r: Result<()> = inside_sled(|| panic!("sled's own expect"));
    assert!(matches!(r, Err(Error::Unsupported(m)) if m.contains("sled panicked")));
}

fn plain(path: &Path) -> Config {
    Config::new().file(path).plaintext().use_env(false).flush_every_ms(None)
}

/// Regression: the source, closed after the rename, wrote its clean-close commit record
/// (its last session had not closed cleanly) through its log, whose name by then was the
/// new file's: a crash in that close left a log the new file refused (`ForeignLog`). Its
/// close now has nothing to write: the emptied log stays zeros.
#[test]
fn the_source_writes_nothing_to_its_emptied_log_when_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let cfg = plain(&path).write_ahead_log(true);
    let last = cfg.clone().checkpoint_on_close(false).open().unwrap();
    last.insert("k", "v").unwrap();
    last.flush().unwrap();
    drop(last);
    let src = cfg.open().unwrap();
    let side = crate::storage::wal::sidecar_path(&path);
    let log = std::fs::OpenOptions::new().read(true).write(true).open(&side).unwrap();
    empty_log_before_replacement(&src, Some(&log)).unwrap();
    drop(src);
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut &log, &mut bytes).unwrap();
    assert!(!bytes.is_empty() && bytes.iter().all(|&b| b == 0), "the close wrote to the emptied log");
}

/// The rename used where a file system has no hard links: a free name or an empty file is
/// replaced; a name holding data, or one another open holds locked, is refused; a name it
/// made is removed again when the rename fails.
#[test]
fn a_rename_without_hard_links_takes_the_name_only_under_its_lock() {
    let dir = tempfile::tempdir().unwrap();
    let (tmp, dst) = (dir.path().join("tmp"), dir.path().join("dst"));
    std::fs::write(&tmp, b"new").unwrap();
    rename_under_lock(&tmp, &dst).unwrap();
    assert_eq!(std::fs::read(&dst).unwrap(), b"new");
    assert!(!tmp.exists());
    std::fs::write(&tmp, b"newer").unwrap();
    assert!(matches!(rename_under_lock(&tmp, &dst), Err(Error::AlreadyExists(_))));
    assert_eq!(std::fs::read(&dst).unwrap(), b"new", "a file with data is kept");
    std::fs::write(&dst, b"").unwrap();
    let creator = crate::storage::FileStorage::open(&dst, true).unwrap();
    assert!(matches!(rename_under_lock(&tmp, &dst), Err(Error::Locked)));
    drop(creator);
    rename_under_lock(&tmp, &dst).unwrap();
    assert_eq!(std::fs::read(&dst).unwrap(), b"newer", "an empty file no one holds is replaced");
    let missing = dir.path().join("missing");
    let free = dir.path().join("free");
    assert!(matches!(rename_under_lock(&missing, &free), Err(Error::Io(_))));
    assert!(!free.exists(), "the failed rename left the name it made");
}

/// A crash just after an in-place conversion's rename (emulated: the two files as they are
/// then, copied elsewhere, with no close of the source): the new file opens beside the old
/// file's log, and that log holds none of the source's bytes.
#[test]
fn a_crash_after_the_rename_leaves_a_log_the_new_file_opens_with() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let marker = b"plaintext-marker-3b9f";
    let src = plain(&path).open().unwrap();
    for i in 0..50u32 {
        src.insert(i.to_be_bytes(), &marker[..]).unwrap();
    }
    src.flush().unwrap();
    let side = crate::storage::wal::sidecar_path(&path);
    let log = std::fs::OpenOptions::new().read(true).write(true).open(&side).unwrap();
    assert!(log.metadata().unwrap().len() > 0);
    empty_log_before_replacement(&src, Some(&log)).unwrap();
    // The copy (another file id) takes the name; then the process dies.
    let copy = dir.path().join("copy");
    let other = plain(&copy).open().unwrap();
    other.insert("copied", "yes").unwrap();
    drop(other);
    std::fs::rename(&copy, &path).unwrap();
    let after = tempfile::tempdir().unwrap();
    let (path, side) = (after.path().join("db"), crate::storage::wal::sidecar_path(&after.path().join("db")));
    std::fs::copy(dir.path().join("db"), &path).unwrap();
    std::fs::copy(crate::storage::wal::sidecar_path(&dir.path().join("db")), &side).unwrap();
    drop(src);
    let bytes = std::fs::read(&side).unwrap();
    assert!(!bytes.windows(marker.len()).any(|w| w == marker), "the old log still holds the source's pages");
    let db = plain(&path).open().unwrap();
    assert_eq!(db.get("copied").unwrap().unwrap(), "yes");
    db.insert("after", "crash").unwrap();
    db.flush().unwrap();
}

/// An in-place conversion whose new name's directory does not sync keeps the replaced file
/// whole and says so (`LeftBehind::DirectoryNotSynced`): a power loss may give the name back to
/// it. It was overwritten with zeros, and such a power loss lost both files (migration review,
/// medium-high). With the directory synced, it is overwritten.
#[test]
fn a_conversion_whose_directory_does_not_sync_keeps_the_old_file_whole() {
    use crate::storage::REFUSE_DIR_SYNC;
    for refuse in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let src = plain(&path).write_ahead_log(true).open().unwrap();
        for i in 0..50u32 {
            src.insert(i.to_be_bytes(), &b"old data"[..]).unwrap();
        }
        src.flush().unwrap();
        drop(src);
        let old = std::fs::File::open(&path).unwrap();
        let to = plain(&path)
            .passphrase("in place")
            .encryption(crate::Encryption::Required)
            .kdf(crate::KdfParams::insecure_fast());
        REFUSE_DIR_SYNC.with(|r| r.set(refuse));
        let report = convert_in_place(&path, &plain(&path), &to, &mut |_| {});
        REFUSE_DIR_SYNC.with(|r| r.set(false));
        let report = report.unwrap();
        assert_eq!(to.open().unwrap().get(7u32.to_be_bytes()).unwrap().unwrap(), &b"old data"[..]);
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut &old, &mut bytes).unwrap();
        if refuse {
            assert_eq!(report.left_behind, [LeftBehind::DirectoryNotSynced]);
            // The old file as the name would give it back: the whole database.
            let back = dir.path().join("given back");
            std::fs::write(&back, &bytes).unwrap();
            assert_eq!(plain(&back).open().unwrap().get(7u32.to_be_bytes()).unwrap().unwrap(), &b"old data"[..]);
        } else {
            assert!(report.left_behind.is_empty(), "{:?}", report.left_behind);
            assert!(bytes.iter().all(|&b| b == 0), "the replaced file was not overwritten");
        }
    }
}
