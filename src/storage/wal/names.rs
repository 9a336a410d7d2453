//! Where a database file's write-ahead log lives (SPEC.md §15, "Files").
//!
//! Invariants:
//! - The log of a database file is `FILE.fvwal` beside the file itself: a path that is a
//!   symbolic link is followed first ([`resolve_links`]), so every name a database is opened by
//!   finds the same log. A log beside one name and not another would be missed by an open
//!   through the other name (commits acknowledged before a crash not shown), and replayed later
//!   over the commits made meanwhile.
//! - A log beside a link's own name was left by a version of foldvault that did not follow the
//!   link: an open through that link still takes it, as that version would have, unless a log
//!   is beside the file too, which is refused (`Error::Unsupported`, naming both): neither can
//!   be known to be the newer. An open that may write moves such a log beside the file first
//!   ([`move_log`]), so that its session's log, and a crash's, is found by every name; an open
//!   that is then refused moves it back.

use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// How many symbolic links [`resolve_links`] follows before it gives up (Linux's own bound).
const MAX_LINK_HOPS: usize = 40;

/// `path` with its last component followed through symbolic links, to the name of the file
/// itself (which need not exist: a dangling link gives the name it points at). Links in the
/// directories above are not resolved (the log's name is beside the file's in the same
/// directory either way). A loop, or a link that cannot be read, leaves the path as it was
/// last resolved: opening it then reports the file system's error.
pub fn resolve_links(path: &Path) -> PathBuf {
    let mut at = path.to_path_buf();
    for _ in 0..MAX_LINK_HOPS {
        let is_link = std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink());
        let target = match is_link.then(|| std::fs::read_link(&at)) {
            Some(Ok(t)) => t,
            _ => return at,
        };
        at = match at.parent() {
            Some(dir) if target.is_relative() => dir.join(target),
            _ => target,
        };
    }
    at
}

/// `file` with `.fvwal` appended: the name of the log beside the name `file` (no link followed).
pub fn sidecar_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".fvwal");
    PathBuf::from(s)
}

/// The log of the database opened by the name `given`, whose file (links followed) is `file`:
/// beside `file`, or a log an earlier version left beside a link's name (module comment). To
/// be asked while the file is locked: no process adds or removes either log meanwhile.
pub(crate) fn log_for(given: &Path, file: &Path) -> Result<PathBuf> {
    let beside_file = sidecar_path(file);
    if given == file {
        return Ok(beside_file);
    }
    let beside_link = sidecar_path(given);
    if std::fs::symlink_metadata(&beside_link).is_err() {
        return Ok(beside_file);
    }
    if std::fs::symlink_metadata(&beside_file).is_ok() {
        return Err(Error::Unsupported(format!(
            "a write-ahead log is beside both the link {} and the file it names, {}, each left by a crash: \
             open the database by each name with an earlier foldvault, or move the older log away",
            beside_link.display(),
            beside_file.display()
        )));
    }
    Ok(beside_link)
}

/// Moves a log from the name `from` to the name `to` and syncs both directories, the new
/// name's first: a crash between the two syncs leaves the log under one name or both, and an
/// open through a link refuses two ([`log_for`]) rather than guess. Asked while the file is
/// locked: an open that may write moves a log an earlier version left beside a link to its
/// place beside the file, so that its session, and a crash of it, logs where every name finds
/// it (an open by the file's own name after a crash would miss the commits otherwise), and a
/// refused open moves it back. A failed rename moves nothing (the link on another file
/// system, a directory that takes no new name): the log is then used where it is.
pub(crate) fn move_log(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)?;
    for name in [to, from] {
        if let Err(e) = crate::storage::sync_parent_dir(name) {
            tracing::warn!(target: "foldvault::audit", error = %e, path = %name.display(),
                "the directory of a moved write-ahead log could not be synced");
        }
    }
    Ok(())
}

/// The log of the database opened by the name `given` (a file or a link to one), as
/// [`log_for`] finds it; where both logs are there, the one beside the file. For tools that
/// look at the log without opening the database.
pub fn log_of(given: &Path) -> PathBuf {
    let file = resolve_links(given);
    log_for(given, &file).unwrap_or_else(|_| sidecar_path(&file))
}

/// Removes the log beside `file`, if any: for tools that put another database file in its
/// place (restore, migration), after the rename, so that a crash in between leaves a log the
/// owner check refuses (`Error::ForeignLog`) rather than a database without its last commits.
pub fn remove_sidecar(file: &Path) -> io::Result<()> {
    match std::fs::remove_file(sidecar_path(file)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_followed_to_the_file_and_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data").join("db");
        std::fs::create_dir(dir.path().join("data")).unwrap();
        std::fs::write(&file, b"x").unwrap();
        // A relative link to a relative link; and a dangling one.
        let inner = dir.path().join("inner");
        std::os::unix::fs::symlink("data/db", &inner).unwrap();
        let outer = dir.path().join("outer");
        std::os::unix::fs::symlink("inner", &outer).unwrap();
        assert_eq!(resolve_links(&outer), file);
        assert_eq!(resolve_links(&file), file);
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink("data/new", &dangling).unwrap();
        assert_eq!(resolve_links(&dangling), dir.path().join("data").join("new"));
        // A loop ends where the hops run out, as a name the open then fails on.
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::os::unix::fs::symlink("b", &a).unwrap();
        std::os::unix::fs::symlink("a", &b).unwrap();
        let _ = resolve_links(&a);

        assert_eq!(log_of(&outer), sidecar_path(&file));
        // A log an earlier version left beside the link is taken through the link...
        std::fs::write(sidecar_path(&outer), b"").unwrap();
        assert_eq!(log_for(&outer, &file).unwrap(), sidecar_path(&outer));
        assert_eq!(log_for(&file, &file).unwrap(), sidecar_path(&file));
        // ...but not when the file has one too.
        std::fs::write(sidecar_path(&file), b"").unwrap();
        let err = log_for(&outer, &file).unwrap_err();
        assert!(matches!(&err, Error::Unsupported(m) if m.contains("outer.fvwal")), "{err}");
        assert_eq!(log_of(&outer), sidecar_path(&file));
    }
}
