//! Temporary files beside a target: named here, and those an interrupted run left removed.
//!
//! Layer: public API (db). A copy, an import, a salvage or an in-place conversion writes its
//! new database under a hidden name beside the target, a restore likewise, and the command
//! line's `backup` its stream; then each renames or links it into place, and an error or a
//! panic removes it. A kill, a crash or a power loss runs neither, and the next run picks a
//! new random name: the old file stayed for good, for `decrypt` with records in plaintext
//! (migration review, low). So each run first removes what an earlier one left beside the
//! same target (a command-line run refused because the target is there too), and a copy, once
//! its file holds the target's name, what runs before it left however recently
//! (`remove_left_before`): no later run into that target tidies before it is refused.
//!
//! Names (NAME is the target's file name, HEX twelve lowercase hex digits):
//!
//! ```text
//!   .NAME.copy-HEX               a copy, import or salvage into NAME; an in-place conversion's new file
//!   ..NAME.copy-HEX.copy-HEX     the copy an in-place conversion of NAME writes before its rename
//!   .NAME.restore-HEX            a restore into NAME
//!   .NAME.fvwal.restore-HEX      a log a restore into NAME set aside (another file's, or stale)
//!   .NAME.partial-HEX            a backup stream written to NAME (the command line's `backup`)
//!   .NAME.new-HEX                a new database file, locked, before its link to NAME (`storage::file`)
//!   any of these + ".fvwal"      its write-ahead log
//! ```
//!
//! Invariants: only a regular file with a name of exactly these forms is touched, and none is
//! ever overwritten: only its name is removed. A second name of the target's own file (a crash
//! between the link into place and the removal of the temporary name) goes at once: the file
//! stays under the target's name (whose lock the caller may hold; before, it was skipped as
//! held, and a conversion in place then left the old file unerased under it: diff review). Any
//! other goes only when it has not been written for `STALE_AFTER` and this process can take
//! its lock: a live run holds its file locked while it writes, and in the moments it does not
//! (between closing the new database and taking its name) it has just written it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::RngCore;

/// The kinds of temporary file, as they appear in the names.
const KINDS: [&str; 4] = ["copy", "restore", "partial", "new"];
/// Hex digits of the random part of a name.
const RANDOM_HEX: usize = 12;
/// How long a temporary file must have gone unwritten before it is taken for abandoned.
const STALE_AFTER: Duration = Duration::from_secs(60);

/// A new hidden name beside `target` for a temporary file of `kind` (`copy`, `restore`,
/// `partial`).
pub(crate) fn temp_beside(target: &Path, kind: &str) -> PathBuf {
    let mut r = [0u8; RANDOM_HEX / 2];
    rand::rngs::OsRng.fill_bytes(&mut r);
    target.with_file_name(format!(".{}.{kind}-{}", file_name(target), crate::format::page::hex(&r)))
}

fn file_name(target: &Path) -> String {
    target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "db".into())
}

/// Removes the temporary files (and their logs) that interrupted runs left beside `target`
/// and no live run holds. Failures to list or remove are left for the next run: this tidies,
/// it never fails a run.
pub(crate) fn remove_stale(target: &Path) {
    remove_abandoned(target, &KINDS, stale);
}

/// Removes, as `remove_stale` does, what earlier runs left beside `target` and last wrote before
/// `since` (this run's start), however recently: called once this run's file holds the target's
/// name, after which any other run into it fails (the target is occupied) and nothing would
/// ever remove them. A run killed and run again at once left its file (for `decrypt`, records
/// in plaintext) for good: the next run into the target was refused before it tidied
/// (migration review, medium-low). A run still writing holds its file locked, and is left.
/// Copies' files only (`.NAME.copy-…`): a restore or a backup into the same target, between its
/// file's close and its rename, is not taken for one left behind (file review).
pub(crate) fn remove_left_before(target: &Path, since: std::time::SystemTime) {
    remove_abandoned(target, &["copy"], |meta| meta.modified().is_ok_and(|m| m < since));
}

fn remove_abandoned(target: &Path, kinds: &[&str], stale: impl Fn(&std::fs::Metadata) -> bool) {
    let name = file_name(target);
    let set_aside = format!("{name}.fvwal");
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    let target_file = std::fs::metadata(target).ok();
    for entry in entries.flatten() {
        let Some(found) = entry.file_name().to_str().map(str::to_owned) else { continue };
        let path = dir.join(&found);
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if !meta.is_file() {
            continue;
        }
        let ours = |n: &str| is_temp_name_of(n, &name, kinds) || is_temp_name_of(n, &set_aside, kinds);
        let gone = match found.strip_suffix(".fvwal") {
            // A log whose file is gone (removed here or by its run's own error path).
            Some(base) if ours(base) => !dir.join(base).exists() && stale(&meta) && remove(&path),
            Some(_) => false,
            None if !ours(&found) => false,
            None if target_file.as_ref().is_some_and(|t| crate::storage::same_inode(t, &meta)) => remove(&path),
            None if !stale(&meta) => false,
            None => {
                // Held by this process while it goes: a live run holds it locked, and is left.
                let Ok(held) = crate::storage::FileStorage::open(&path, false) else { continue };
                let gone = remove(&path);
                if gone {
                    remove(&crate::storage::wal::sidecar_path(&path));
                }
                drop(held);
                gone
            }
        };
        if gone {
            tracing::warn!(target: "foldvault::audit", path = %path.display(),
                "removed a temporary file an interrupted copy, conversion, restore or backup left");
        }
    }
}

fn remove(path: &Path) -> bool {
    std::fs::remove_file(path).is_ok()
}

/// Whether a file was last written `STALE_AFTER` ago or more.
fn stale(meta: &std::fs::Metadata) -> bool {
    meta.modified().ok().and_then(|m| m.elapsed().ok()).is_some_and(|age| age >= STALE_AFTER)
}

/// Whether `found` is a temporary name beside a target named `name` (the module's table).
#[cfg(test)]
fn is_temp_name(found: &str, name: &str) -> bool {
    is_temp_name_of(found, name, &KINDS)
}

/// Whether `found` is a temporary name of one of `kinds` beside a target named `name` (the
/// module's table; the nested copy name is of kind `copy`).
fn is_temp_name_of(found: &str, name: &str, kinds: &[&str]) -> bool {
    let random = |s: &str| s.len() == RANDOM_HEX && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let one = |s: &str| kinds.iter().any(|kind| s.strip_prefix(&format!(".{name}.{kind}-")).is_some_and(random));
    if one(found) {
        return true;
    }
    if !kinds.contains(&"copy") {
        return false;
    }
    // `..NAME.copy-HEX.copy-HEX`: the copy into `.NAME.copy-HEX`.
    found
        .strip_prefix('.')
        .and_then(|inner| inner.rsplit_once(".copy-"))
        .is_some_and(|(outer, rest)| random(rest) && outer.strip_prefix(&format!(".{name}.copy-")).is_some_and(random))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised_and_nothing_else() {
        for (found, want) in [
            (".db.copy-0123456789ab", true),
            (".db.restore-0123456789ab", true),
            ("..db.copy-0123456789ab.copy-ba9876543210", true),
            (".db.copy-0123456789AB", false),
            (".db.copy-0123456789a", false),
            (".db.copy-0123456789abc", false),
            (".db.copy-notes", false),
            (".db.partial-0123456789ab", true),
            (".db.new-0123456789ab", true),
            (".db.new-1234-0", false),
            (".db.backup-0123456789ab", false),
            ("db.copy-0123456789ab", false),
            (".other.copy-0123456789ab", false),
            ("..db.copy-0123456789ab", false),
            ("..db.copy-0123456789ab.copy-", false),
            ("..db.restore-0123456789ab.copy-ba9876543210", false),
        ] {
            assert_eq!(is_temp_name(found, "db"), want, "{found}");
        }
        let made = temp_beside(Path::new("/x/db"), "copy");
        assert!(is_temp_name(made.file_name().unwrap().to_str().unwrap(), "db"));
    }

    /// The hidden name a new database file is made under (`.NAME.new-HEX`), left by a creation
    /// killed before it removed it, goes at the next creation of NAME once it has gone unwritten
    /// for a minute; one written just now (a creation that may be running) stays.
    #[test]
    fn a_creation_removes_the_hidden_name_a_killed_one_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (old, fresh) = (dir.path().join(".db.new-0123456789ab"), dir.path().join(".db.new-aaaaaaaaaaaa"));
        let f = std::fs::File::create(&old).unwrap();
        f.set_modified(std::time::SystemTime::now() - 2 * STALE_AFTER).unwrap();
        drop(f);
        std::fs::File::create(&fresh).unwrap();
        let db = crate::Config::new().file(&path).plaintext().use_env(false).flush_every_ms(None).open().unwrap();
        assert!(!old.exists(), "the stale hidden name stayed");
        assert!(fresh.exists(), "a hidden name written just now went");
        drop(db);
        // The name a creation makes is of that form, and it is gone once the file is linked.
        let names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert!(names.iter().all(|n| n == "db" || n == ".db.new-aaaaaaaaaaaa"), "{names:?}");
    }
}
