//! Temporary files beside a target: named here, and those an interrupted run left removed.
//!
//! Layer: public API (db). A copy, an import, a salvage or an in-place conversion writes its
//! new database under a hidden name beside the target, and a restore likewise, then renames or
//! links it into place; an error or a panic removes it. A kill, a crash or a power loss runs
//! neither, and the next run picks a new random name: the old file stayed for good, for
//! `decrypt` with records in plaintext (migration review, low). So each run first removes what
//! an earlier one left beside the same target.
//!
//! Names (NAME is the target's file name, HEX twelve lowercase hex digits):
//!
//! ```text
//!   .NAME.copy-HEX               a copy, import or salvage into NAME; an in-place conversion's new file
//!   ..NAME.copy-HEX.copy-HEX     the copy an in-place conversion of NAME writes before its rename
//!   .NAME.restore-HEX            a restore into NAME
//!   any of these + ".fvwal"      its write-ahead log
//! ```
//!
//! Invariants: only a name of exactly these forms is touched; a file is removed only while
//! this process holds its lock, so one a live run is writing (which holds it locked) is left,
//! and none is ever overwritten (a crash between the link into place and the removal of the
//! temporary name leaves the target's own file under it: only the name goes).

use std::path::{Path, PathBuf};

use rand::RngCore;

/// The kinds of temporary file, as they appear in the names.
const KINDS: [&str; 2] = ["copy", "restore"];
/// Hex digits of the random part of a name.
const RANDOM_HEX: usize = 12;

/// A new hidden name beside `target` for a temporary file of `kind` (`copy`, `restore`).
pub(crate) fn temp_beside(target: &Path, kind: &str) -> PathBuf {
    let mut r = [0u8; RANDOM_HEX / 2];
    rand::rngs::OsRng.fill_bytes(&mut r);
    target.with_file_name(format!(".{}.{kind}-{}", file_name(target), crate::format::page::hex(&r)))
}

fn file_name(target: &Path) -> String {
    target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "db".into())
}

/// Removes the temporary files (and their logs) that interrupted runs left beside `target`
/// and no live process holds; returns how many files it removed. Failures to list or remove
/// are left for the next run: this tidies, it never fails a run.
pub(crate) fn remove_stale(target: &Path) -> usize {
    let name = file_name(target);
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let Some(found) = entry.file_name().to_str().map(str::to_owned) else { continue };
        let path = dir.join(&found);
        match found.strip_suffix(".fvwal") {
            // A log whose file is gone (removed here or by the run's own error path).
            Some(base) if is_temp_name(base, &name) && !dir.join(base).exists() => {
                removed += usize::from(std::fs::remove_file(&path).is_ok());
            }
            Some(_) => {}
            None if is_temp_name(&found, &name) => {
                // Held by this process while it goes: a live run holds it locked, and is left.
                let Ok(held) = crate::storage::FileStorage::open(&path, false) else { continue };
                if std::fs::remove_file(&path).is_ok() {
                    removed += 1;
                    tracing::warn!(target: "foldvault::audit", path = %path.display(),
                        "removed a temporary file an interrupted copy, conversion or restore left");
                    if std::fs::remove_file(crate::storage::wal::sidecar_path(&path)).is_ok() {
                        removed += 1;
                    }
                }
                drop(held);
            }
            None => {}
        }
    }
    removed
}

/// Whether `found` is a temporary name beside a target named `name` (the module's table).
fn is_temp_name(found: &str, name: &str) -> bool {
    let random = |s: &str| s.len() == RANDOM_HEX && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let one = |s: &str| KINDS.iter().any(|kind| s.strip_prefix(&format!(".{name}.{kind}-")).is_some_and(random));
    if one(found) {
        return true;
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
            (".db.partial-0123456789ab", false),
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
}
