//! Migration between plaintext and encrypted mode, and import from sled 0.34.
//!
//! A copy goes through one read snapshot of the source into a temporary file beside the
//! target, which is synced and then renamed into place: a crash leaves either no target or a
//! complete one. In-place conversion writes the new file beside the old, syncs, and renames it
//! over the old name, then overwrites the old file and its log with zeros.

use std::path::Path;

use rand::RngCore;

use super::api::{Batch, Db};
use super::config::{Config, Encryption};
use crate::error::{Error, Result};

/// Progress of a copy.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyProgress {
    pub records: u64,
    pub bytes: u64,
}

/// What a copy did: records per tree, and a BLAKE3 digest of each tree's contents (keys and
/// values in key order) taken from the source and checked against the copy. Each digest is
/// keyed with a random key of that tree's copy, discarded at once: it matched the copy's inside
/// the process, and tells nothing about the contents (an unkeyed digest of a small tree would
/// let anyone who sees it confirm a guess of the records). `Debug` shows counts only (tree
/// names are user data).
#[derive(Clone, Default)]
pub struct CopyReport {
    /// (tree name as stored, records, digest)
    pub trees: Vec<(Vec<u8>, u64, [u8; 32])>,
    /// What an in-place conversion ([`convert_in_place`]) could not overwrite of the file it
    /// replaced, and why; empty for a copy into a new file (whose source is left as it was).
    pub left_behind: Vec<LeftBehind>,
}

/// Why an in-place conversion left the replaced file's old bytes on the disk, beyond what a
/// file system may keep below any file (copy-on-write, snapshots, spare blocks: SPEC §9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeftBehind {
    /// The directory of the new name could not be synced (a file system that refuses it, a
    /// directory this process cannot open): the old file is kept whole, since a power loss may
    /// yet give the name back to it.
    DirectoryNotSynced,
    /// The old file or its log has another name (a hard link someone made): that name's data,
    /// not overwritten.
    OtherName,
    /// The overwrite of the old file or its log failed.
    OverwriteFailed,
    /// The replaced file's emptied log could not be removed from beside the new file.
    LogNotRemoved,
}

impl std::fmt::Debug for CopyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyReport")
            .field("trees", &self.trees.len())
            .field("records", &self.trees.iter().map(|t| t.1).sum::<u64>())
            .field("left_behind", &self.left_behind)
            .finish()
    }
}

const BATCH: usize = 10_000;
/// A batch is also applied once its records reach this many bytes (values may be large).
pub(crate) const BATCH_BYTES: u64 = 64 << 20;

fn digest_tree(t: &super::api::Tree, key: &[u8; 32]) -> Result<(u64, [u8; 32])> {
    let mut h = blake3::Hasher::new_keyed(key);
    let mut n = 0;
    for kv in t.iter() {
        let (k, v) = kv?;
        digest_entry(&mut h, &k, &v);
        n += 1;
    }
    Ok((n, *h.finalize().as_bytes()))
}

pub(crate) fn digest_entry(h: &mut blake3::Hasher, k: &[u8], v: &[u8]) {
    h.update(&(k.len() as u64).to_le_bytes());
    h.update(k);
    h.update(&(v.len() as u64).to_le_bytes());
    h.update(v);
}

/// Copies records into `dt` in batches, digesting them on the way, then checks the copy's count
/// and digest against the source's. Returns both (the digest keyed: `CopyReport`).
fn copy_records<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    items: impl Iterator<Item = Result<(K, V)>>,
    dt: &super::api::Tree,
    p: &mut CopyProgress,
    progress: &mut dyn FnMut(CopyProgress),
) -> Result<(u64, [u8; 32])> {
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut key[..]);
    let mut h = blake3::Hasher::new_keyed(&key);
    let mut n = 0u64;
    let mut batch = Batch::default();
    let mut batch_bytes = 0u64;
    for kv in items {
        let (k, v) = kv?;
        let (k, v) = (k.as_ref(), v.as_ref());
        digest_entry(&mut h, k, v);
        p.records += 1;
        p.bytes += (k.len() + v.len()) as u64;
        n += 1;
        batch.insert(k, v);
        batch_bytes += (k.len() + v.len()) as u64;
        if batch.len() >= BATCH || batch_bytes >= BATCH_BYTES {
            batch_bytes = 0;
            dt.apply_batch(std::mem::take(&mut batch))?;
            progress(*p);
        }
    }
    dt.apply_batch(batch)?;
    let digest = *h.finalize().as_bytes();
    let (m, d) = digest_tree(dt, &key)?;
    if m != n || d != digest {
        return Err(Error::ReportableBug("a copied tree does not match its source".into()));
    }
    progress(*p);
    Ok((n, digest))
}

/// Copies every tree of `src` (opened by `src_cfg`) into a new database at `dst` made with
/// `dst_cfg` (whose location is replaced by `dst`), through a temporary file and a rename.
///
/// The copy of an encrypted database is encrypted unless `dst_cfg` asks for plaintext
/// (`Encryption::Plaintext`): under `Encryption::Auto` it needs a key, as under `Required`.
pub fn copy_to(src: &Db, dst: &Path, dst_cfg: &Config, progress: &mut dyn FnMut(CopyProgress)) -> Result<CopyReport> {
    let required;
    let dst_cfg = if src.is_encrypted() && dst_cfg.encryption == Encryption::Auto {
        required = dst_cfg.clone().encryption(Encryption::Required);
        &required
    } else {
        dst_cfg
    };
    copy_through_temp(dst, |tmp| {
        let out = new_copy(dst_cfg, tmp)?;
        let rt = src.begin_read()?;
        let mut report = CopyReport::default();
        let mut p = CopyProgress::default();
        for name in rt.tree_names() {
            // The default tree is named, and opens empty, before its first write: a copy has
            // it as well without being given it.
            if !rt.snap.trees.contains_key(&name[..]) {
                continue;
            }
            // (A name longer than any write makes is the catalog's damage: `open_tree` says so.)
            let t = rt.open_tree(&name)?;
            let dt = out.open_tree(&name)?;
            let (n, src_digest) = copy_records(t.iter(), &dt, &mut p, progress)?;
            report.trees.push((name.to_vec(), n, src_digest));
        }
        // The id generator's reservation (a hidden tree) travels too, so ids keep increasing.
        if rt.snap.trees.contains_key(super::engine::IDS_TREE) {
            let src_ids = super::api::Tree::fixed(src.handle.clone(), super::engine::IDS_TREE);
            let dst_ids = super::api::Tree::fixed(out.handle.clone(), super::engine::IDS_TREE);
            if let Some(v) = src_ids.get(b"next")? {
                dst_ids.insert(b"next", v)?;
            }
        }
        finish_copy(out)?;
        Ok(report)
    })
}

/// Runs `write` on a temporary name beside `dst` (refused first if `dst` is taken), then puts
/// what it wrote at `dst` if that is still free (`put_in_place`, `Placement::NewOnly`); on an
/// error the temporary file is removed. Copies, imports and salvage.
pub(crate) fn copy_through_temp<T>(dst: &Path, write: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let started = std::time::SystemTime::now();
    // Tidied first: beside a target that is there, what an earlier run left was never removed.
    super::leftovers::remove_stale(dst);
    refuse_occupied(dst)?;
    let tmp = super::leftovers::temp_beside(dst, "copy");
    let result = {
        let _unwinding = RemovedOnPanic(&tmp);
        write(&tmp)
    };
    let placed = put_in_place(result, &tmp, dst, Placement::NewOnly, || remove_old_log(dst))?;
    super::leftovers::remove_left_before(dst, started);
    Ok(placed)
}

/// Removes a temporary copy (and a log beside it) when a panic unwinds through its writer (a
/// bug, or one in the sled crate an import calls): no partial copy, which may be plaintext, is
/// left under a hidden name. Errors remove it in `put_in_place`. Restore guards its file too.
pub(crate) struct RemovedOnPanic<'a>(pub(crate) &'a Path);

impl Drop for RemovedOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = std::fs::remove_file(self.0);
            let _ = crate::storage::wal::remove_sidecar(self.0);
        }
    }
}

/// The new database a copy is written into, at `tmp`: without a write-ahead log, so that its
/// `flush` makes the file itself durable (a log is folded into the file only when the handle
/// drops, where a failure could not be reported). Not temporary, whatever `dst_cfg` says, and
/// with no rollback anchors: those name the source, and this database is new.
pub(crate) fn new_copy(dst_cfg: &Config, tmp: &Path) -> Result<Db> {
    let cfg = dst_cfg.clone().without_anchors().file(tmp).create_new(true).temporary(false);
    cfg.flush_every_ms(None).write_ahead_log(false).open()
}

/// Makes a finished copy durable and checks it whole (`Db::check`), then closes it.
pub(crate) fn finish_copy(out: Db) -> Result<()> {
    out.flush()?;
    let check = out.check()?;
    if let Some(p) = check.problems.first() {
        // The copy was just written and synced by this process: a problem in it is a bug here,
        // not damage to the source (whose pages all opened to be copied).
        return Err(Error::ReportableBug(format!("the finished copy fails its check: page {}: {}", p.page, p.reason)));
    }
    Ok(())
}

/// Whether [`put_in_place`] may give its file the name of a file already there.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Placement {
    /// Restore onto a file that was there when it began (and is locked since): it is replaced.
    Replace,
    /// A copy, a salvage, a restore to a missing name: only a missing or empty file (one made
    /// by `mktemp`, say) is replaced. A file that appeared at the name meanwhile is kept, and
    /// the call fails `AlreadyExists`.
    NewOnly,
}

/// Puts a file written to `tmp` (closed, durable) at `dst`: `prepare` runs first (what to do
/// with a log left beside `dst`, so that it cannot be replayed over the new file); the file is
/// locked from before the rename until the directory is synced (the lock moves with the file),
/// so no process opens it before it is in place. On an error before the rename, the rename's
/// included, the temporary file is removed. Used by copies and by restore.
pub(crate) fn put_in_place<T>(
    result: Result<T>,
    tmp: &Path,
    dst: &Path,
    placement: Placement,
    prepare: impl FnOnce() -> Result<()>,
) -> Result<T> {
    let placed = result.and_then(|r| {
        let lock = crate::storage::FileStorage::open(tmp, false)?;
        // Checked before `prepare`, which may remove a log beside `dst`. An empty file there
        // may be a database another process is creating (it holds the file's lock while it
        // writes the header): it is taken over only under its lock, held through the rename.
        let target = match placement {
            Placement::NewOnly => lock_empty_target(dst)?,
            Placement::Replace => None,
        };
        prepare()?;
        match placement {
            Placement::Replace => std::fs::rename(tmp, dst)?,
            Placement::NewOnly => rename_new(tmp, dst, target.is_some())?,
        }
        Ok((r, lock, target))
    });
    match placed {
        Ok((r, _lock, _target)) => {
            // The copy has its name: a directory that cannot be synced is said, not reported as
            // a failed copy (storage review, low); one whose sync failed is the error.
            crate::storage::sync_new_name(dst)?;
            Ok(r)
        }
        Err(e) => {
            let _ = std::fs::remove_file(tmp);
            let _ = crate::storage::wal::remove_sidecar(tmp);
            Err(e)
        }
    }
}

/// A copy's target must be missing or empty.
fn refuse_occupied(dst: &Path) -> Result<()> {
    match std::fs::symlink_metadata(dst) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io(e)),
        Ok(m) if m.is_file() && m.len() == 0 => Ok(()),
        Ok(_) => Err(Error::AlreadyExists(dst.display().to_string())),
    }
}

/// A copy's target, checked as `refuse_occupied` does; an empty file there is locked (`Locked`
/// if a process holds it) and checked empty again under the lock, which the caller holds until
/// the file is replaced. Copies, and the command line's `backup` onto an empty file.
pub(crate) fn lock_empty_target(dst: &Path) -> Result<Option<crate::storage::FileStorage>> {
    refuse_occupied(dst)?;
    if !dst.exists() {
        return Ok(None);
    }
    let held = crate::storage::FileStorage::open(dst, false)?;
    if crate::storage::Storage::len(&held)? > 0 {
        return Err(Error::AlreadyExists(dst.display().to_string()));
    }
    Ok(Some(held))
}

/// Renames `tmp` to `dst`, never over a file another process made there. A hard link takes the
/// name only if it is free, in one step; the temporary name is then removed (a crash in between
/// leaves the file under both names, the temporary one hidden). A name taken by the empty file
/// the caller holds locked (`empty_target_held`) is replaced by a rename; so is a free name on a
/// file system without hard links, taken and locked first (`rename_under_lock`).
pub(crate) fn rename_new(tmp: &Path, dst: &Path, empty_target_held: bool) -> Result<()> {
    match std::fs::hard_link(tmp, dst) {
        Ok(()) => {
            // The file is in place under its name; a leftover second name is only untidy.
            if let Err(e) = std::fs::remove_file(tmp) {
                tracing::warn!(target: "foldvault::audit", error = %e, path = %tmp.display(), "a copy's temporary name could not be removed; remove it");
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && !empty_target_held => {
            Err(Error::AlreadyExists(dst.display().to_string()))
        }
        // The empty file there is the caller's, locked: replaced.
        Err(_) if empty_target_held => Ok(std::fs::rename(tmp, dst)?),
        Err(e) => {
            tracing::debug!(error = %e, "no hard link; renaming under the name's lock");
            rename_under_lock(tmp, dst)
        }
    }
}

/// Renames `tmp` over `dst` once `dst` is free or an empty file, with `dst` made (if missing)
/// and locked first and held through the rename: a process creating a database at `dst` holds
/// its lock first (this fails `Locked`), or waits for it and then finds the new file at the
/// name (an open checks, once locked, that the path still names the file it locked). A check
/// and a rename alone could replace a file a creator had just made and was writing. A name this
/// call made is removed again if the rename fails.
fn rename_under_lock(tmp: &Path, dst: &Path) -> Result<()> {
    refuse_occupied(dst)?;
    let held = crate::storage::FileStorage::open(dst, true)?;
    if crate::storage::Storage::len(&held)? > 0 {
        return Err(Error::AlreadyExists(dst.display().to_string()));
    }
    std::fs::rename(tmp, dst).map_err(|e| {
        if held.created() {
            super::location::remove_if_same(dst, held.metadata().ok().as_ref());
        }
        Error::Io(e)
    })
}

/// Removes a log left beside `dst`, durably, before a new file takes its name.
fn remove_old_log(dst: &Path) -> Result<()> {
    if crate::storage::wal::sidecar_path(dst).exists() {
        crate::storage::wal::remove_sidecar(dst)?;
        crate::storage::sync_parent_dir(dst)?;
    }
    Ok(())
}

/// Copies a database into a new *encrypted* one. `dst_cfg` carries the key or passphrase.
pub fn encrypt(
    src_cfg: &Config,
    dst: &Path,
    dst_cfg: &Config,
    progress: &mut dyn FnMut(CopyProgress),
) -> Result<CopyReport> {
    // Read-only: a mistyped source path is not made into an empty database copied as such,
    // and the source is not written (migrate review, low).
    let src = src_cfg.clone().read_only(true).open()?;
    copy_to(&src, dst, &dst_cfg.clone().encryption(Encryption::Required), progress)
}

/// Copies a database into a new *plaintext* one (the command line asks for an explicit
/// confirmation before calling this).
pub fn decrypt(src_cfg: &Config, dst: &Path, progress: &mut dyn FnMut(CopyProgress)) -> Result<CopyReport> {
    let src = src_cfg.clone().read_only(true).open()?;
    copy_to(&src, dst, &Config::new().plaintext().use_env(false), progress)
}

/// Converts the database file at `path` in place: the new file is written beside it, synced,
/// and renamed over the old name. The source must not be open elsewhere.
pub fn convert_in_place(
    path: &Path,
    src_cfg: &Config,
    dst_cfg: &Config,
    progress: &mut dyn FnMut(CopyProgress),
) -> Result<CopyReport> {
    // The file itself: a rename over a symbolic link would replace the link and leave the
    // file it names as it was.
    // The database is opened by the name given, which finds a log an earlier version left
    // beside a link (`wal::log_for`).
    let given = path;
    let path = &std::fs::canonicalize(path)?;
    // A handle on the file the source opens (checked to be the one the name still gives just
    // before the rename), to overwrite it once replaced.
    let old = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
    // First read-only, which writes nothing: a read-write open that falls back repairs the
    // record slots, and the newest record, which salvage would read, would be gone.
    let probe = src_cfg.clone().file(given).read_only(true).open()?;
    let recovered = probe.was_recovered();
    drop(probe);
    // Checked again on the read-write handle: a commit may have come between the two opens.
    let src = if recovered { None } else { Some(src_cfg.clone().file(given).open()?) };
    let Some(src) = src.filter(|s| !s.was_recovered()) else {
        // A commit record that did not open, or a newest commit whose pages did not verify: a
        // commit cut by a crash, or damage that salvage could partly read. The original is not
        // destroyed for it.
        return Err(Error::Unsupported(
            "recovery at open found a commit record that did not open or verify (a crash during a commit, or \
damage): convert it into a new file instead, which keeps the original (or run `foldvault check` / `salvage` on it)"
                .into(),
        ));
    };
    // Another conversion of this file, which would be writing them, waits for the source's lock.
    super::leftovers::remove_stale(path);
    let tmp = super::leftovers::temp_beside(path, "copy");
    let mut report = copy_to(&src, &tmp, dst_cfg, progress)?;
    if let Err(e) = take_owner_and_mode(&tmp, &old) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // The source's log, found as its open found it (the source holds the lock: it stays).
    let side = crate::storage::wal::log_of(given);
    // No log is nothing to empty; a log that is there but does not open is an error before
    // anything changes (taken for none, it stayed beside the new file with the old owner's
    // bytes, and the next open said ForeignLog: migrate review, low).
    let old_log = match std::fs::OpenOptions::new().read(true).write(true).open(&side) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
    };
    if let Err(e) = empty_log_before_replacement(&src, old_log.as_ref()) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let placed = (|| -> Result<(crate::storage::FileStorage, bool)> {
        if !same_file(&old, &std::fs::metadata(path)?)? {
            return Err(Error::Unsupported(format!(
                "{} was replaced by another file while it was being converted: nothing was changed",
                path.display()
            )));
        }
        // The copy's lock from before the rename, the source's (held by `src`) until after it:
        // no process opens or commits to either name in between.
        let lock = crate::storage::FileStorage::open(&tmp, false)?;
        std::fs::rename(&tmp, path)?;
        // In place now: a directory that cannot be synced is said, and reported (`LeftBehind`);
        // the old file is then not overwritten (below). A sync that failed (EIO, ENOSPC) too:
        // the conversion is done, and its error would have said it failed.
        let synced = crate::storage::sync_new_name(path).unwrap_or_else(|e| {
            tracing::warn!(target: "foldvault::audit", error = %e, "the converted file's directory sync failed");
            false
        });
        Ok((lock, synced))
    })();
    let (_lock, synced) = match placed {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    // The source closes, writing nothing (`empty_log_before_replacement` did its close's
    // work): its log, emptied, loses the name beside the new file.
    drop(src);
    // A log the close could not remove still has the name beside the new file: the copy holds
    // all it held, so it goes. The conversion is done: a failure here is only reported, and the
    // old data is still overwritten below.
    let mut log_kept = false;
    if let Some(log) = &old_log
        && std::fs::metadata(&side).is_ok_and(|m| same_file(log, &m).unwrap_or(false))
    {
        match std::fs::remove_file(&side) {
            Err(e) => {
                tracing::warn!(target: "foldvault::audit", error = %e, path = %side.display(),
                    "the replaced file's emptied log could not be removed; remove it");
                report.left_behind.push(LeftBehind::LogNotRemoved);
                log_kept = true;
            }
            // Removed: a directory that does not sync may give the name back to it, emptied
            // (zeros), which the next open writes over. Said, not reported as left behind.
            Ok(()) => {
                if let Err(e) = crate::storage::sync_new_name(&side) {
                    tracing::warn!(target: "foldvault::audit", error = %e, path = %side.display(),
                        "the directory of the replaced file's removed log could not be synced");
                }
            }
        }
    }
    // The rename not known to be durable: a power loss may give the name back to the old file,
    // which must then still be the database. Overwritten, both were lost (the new file with no
    // name, the old one zeros: migration review, medium-high). Its log was emptied above, after
    // its commits were copied into it.
    if !synced {
        tracing::warn!(target: "foldvault::audit", "the new name is not known to be durable: the replaced file is kept whole");
        report.left_behind.push(LeftBehind::DirectoryNotSynced);
        return Ok(report);
    }
    // Best effort (SPEC §9.1): the old blocks are overwritten where the file system writes in
    // place; copy-on-write file systems, snapshots and SSD spare blocks keep them.
    // (A log the removal above left keeps its own name: reported there, and emptied already.)
    for f in std::iter::once(&old).chain(old_log.as_ref().filter(|_| !log_kept)) {
        // A file another name still links (a hard link the user made) is that name's data.
        match f.metadata() {
            Ok(m) if std::os::unix::fs::MetadataExt::nlink(&m) > 0 => {
                tracing::warn!(target: "foldvault::audit", links = std::os::unix::fs::MetadataExt::nlink(&m),
                    "the replaced file has another name: not overwritten");
                report.left_behind.push(LeftBehind::OtherName);
                continue;
            }
            _ => {}
        }
        if let Err(e) = zero_fill(f) {
            tracing::warn!(target: "foldvault::audit", error = %e, "the replaced file could not be overwritten");
            report.left_behind.push(LeftBehind::OverwriteFailed);
        }
    }
    Ok(report)
}

/// Before the source loses its name to its copy: what its close would write written now (the
/// clean-close commit record), every commit of `src` copied from its log into its file, and
/// the log (`log`, the file beside it) overwritten with zeros, durably. A crash after the
/// rename then leaves beside the new file a log that holds nothing (which the next open writes
/// over), not one naming the old file (which refuses to open, `ForeignLog`) nor, from a
/// plaintext source, readable pages; and the source's close, after the rename, has nothing
/// left to write there.
fn empty_log_before_replacement(src: &Db, log: Option<&std::fs::File>) -> Result<()> {
    src.flush()?;
    src.handle.engine.checkpoint_on_close()?;
    src.checkpoint_log()?;
    if let Some(f) = log {
        zero_fill(f)?;
    }
    Ok(())
}

/// Gives the converted file at `tmp` the owner and permissions of the file it replaces (`old`),
/// so that a conversion run by another user (root, for a service's database) leaves a file
/// its owner can still open. Changing the owner needs the privilege to; without it the file
/// keeps the converting user's.
fn take_owner_and_mode(tmp: &Path, old: &std::fs::File) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let was = old.metadata()?;
    let f = std::fs::OpenOptions::new().write(true).open(tmp)?;
    let now = f.metadata()?;
    if (now.uid(), now.gid()) != (was.uid(), was.gid())
        && let Err(e) = std::os::unix::fs::fchown(&f, Some(was.uid()), Some(was.gid()))
    {
        tracing::warn!(target: "foldvault::audit", error = %e, "the converted file keeps this user as its owner");
    }
    f.set_permissions(was.permissions())?;
    Ok(f.sync_all()?)
}

/// Whether the open file `f` is the file `name_meta` describes.
fn same_file(f: &std::fs::File, name_meta: &std::fs::Metadata) -> Result<bool> {
    Ok(crate::storage::same_inode(&f.metadata()?, name_meta))
}

/// Overwrites with zeros every part of `f` that is not zero already, and syncs it. What reads
/// as zeros is left alone: a sparse file's holes (a file can claim far more than it holds) are
/// read, not made into real blocks of zeros.
fn zero_fill(f: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let len = f.metadata()?.len();
    let zeros = vec![0u8; 1 << 20];
    // What it reads is the replaced file's plaintext: wiped when done with.
    let mut buf = zeroize::Zeroizing::new(vec![0u8; zeros.len()]);
    let mut at = 0;
    while at < len {
        let n = (len - at).min(zeros.len() as u64) as usize;
        // A part that does not read is overwritten all the same.
        let read = f.read_exact_at(&mut buf[..n], at);
        if read.is_err() || buf[..n].iter().any(|&b| b != 0) {
            f.write_all_at(&zeros[..n], at)?;
        }
        at += n as u64;
    }
    f.sync_data()
}

/// Opens a sled database for reading. sled 0.34 lets go of its directory lock from a background
/// thread after the last handle drops, so a database its application has just closed can stay
/// locked for a moment: the open is retried for up to ten seconds while sled reports the lock
/// held (another process that keeps it open still fails, after those ten seconds).
#[cfg(feature = "sled-import")]
pub(crate) fn open_sled(path: &Path) -> Result<sled::Db> {
    let stored = sled_storage_parameters(path);
    if stored.compressed {
        return Err(Error::Unsupported(format!(
            "{} is a sled database made with use_compression, which this import does not read: export it \
with a sled built with compression into one without, then import that",
            path.display()
        )));
    }
    let mut config = sled::Config::new().path(path);
    // sled refuses to open a database at any segment size but the one it was made with, and
    // its default is 512 KiB: one made with another could not be imported (migration review).
    if let Some(size) = stored.segment_size {
        config = config.segment_size(size);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            // sled 0.34 reports a held lock as an `Io` error of kind `Other` whose text names it.
            Err(sled::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock") =>
            {
                if std::time::Instant::now() >= deadline {
                    return Err(Error::Locked);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(sled_error(e)),
        }
    }
}

/// What a sled database's `conf` file says of how it was made (sled 0.34: lines
/// `segment_size: N`, `use_compression: BOOL`, `version: A.B`, then a CRC-32 that sled checks
/// itself). Read bounded, and only values sled itself accepts are taken; anything else is left
/// for sled's open to report.
#[cfg(feature = "sled-import")]
#[derive(Debug, Default, PartialEq, Eq)]
struct SledStorageParameters {
    segment_size: Option<usize>,
    compressed: bool,
}

#[cfg(feature = "sled-import")]
fn sled_storage_parameters(path: &Path) -> SledStorageParameters {
    let mut bytes = Vec::new();
    let read = std::fs::File::open(path.join("conf"))
        .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, 4096), &mut bytes));
    let mut found = SledStorageParameters::default();
    if read.is_err() {
        return found;
    }
    for line in bytes.split(|&b| b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else { continue };
        match line.split_once(": ") {
            Some(("segment_size", n)) => {
                // sled's own bounds: a power of two from 256 bytes to 16 MiB.
                found.segment_size =
                    n.trim().parse::<usize>().ok().filter(|n| n.is_power_of_two() && (256..=1 << 24).contains(n));
            }
            Some(("use_compression", b)) => found.compressed = b.trim() == "true",
            _ => {}
        }
    }
    found
}

/// A sled error as ours: its I/O errors as `Io`; the rest (corruption sled found, an
/// unsupported feature, a bug it reports) as `Unsupported`, with sled's text, since no page of
/// ours is involved.
#[cfg(feature = "sled-import")]
fn sled_error(e: sled::Error) -> Error {
    match e {
        sled::Error::Io(e) => Error::Io(e),
        e => Error::Unsupported(format!("sled: {e}")),
    }
}

/// Added to sled's id counter by an import (`from_sled`): ids sled handed out under an
/// `idgen_persist_interval` larger than its default lie past the counter an import reads.
#[cfg(feature = "sled-import")]
pub(crate) const SLED_ID_MARGIN: u64 = 1 << 32;

/// Imports every tree of a sled 0.34 database directory into a new foldvault database,
/// verifying the record count and a digest per tree.
#[cfg(feature = "sled-import")]
pub fn from_sled(
    sled_path: &Path,
    dst: &Path,
    dst_cfg: &Config,
    progress: &mut dyn FnMut(CopyProgress),
) -> Result<CopyReport> {
    // sled would create a database in any directory it is given: a path with no sled
    // database is refused before sled writes to it.
    if !super::location::holds_sled_database(sled_path) {
        return Err(Error::Unsupported(format!(
            "{} holds no sled database (no conf and db files)",
            sled_path.display()
        )));
    }
    // The target is checked before sled opens (which writes to its directory, and waits for
    // its lock): an occupied target changed the source and could say `Locked` (review, low).
    super::leftovers::remove_stale(dst);
    refuse_occupied(dst)?;
    let sdb = inside_sled(|| open_sled(sled_path))?;
    copy_through_temp(dst, |tmp| {
        // sled's own checksum of everything (its trees' names, keys and values), which the
        // copy must give too (`Db::checksum` hashes the same bytes): a second check, by sled's
        // reading of its files, of what each tree's digest checks by the import's.
        let expected = inside_sled(|| sdb.checksum().map_err(sled_error))?;
        let out = new_copy(dst_cfg, tmp)?;
        let mut report = CopyReport::default();
        let mut p = CopyProgress::default();
        let names = inside_sled(|| Ok(sdb.tree_names()))?;
        let trees = names.len();
        for (i, name) in names.into_iter().enumerate() {
            // A name foldvault cannot take ends the import naming the tree by position (names
            // are the caller's data), as a key does: it was a bare `KeyTooLarge`, or "reserved"
            // naming no tree (migration review, low).
            if let Err(e) = super::engine::check_user_tree_name(&name) {
                return Err(Error::Unsupported(format!(
                    "sled tree {} of {trees}: its name cannot be a foldvault tree's ({e}); nothing was imported",
                    i + 1
                )));
            }
            let st = inside_sled(|| sdb.open_tree(&name).map_err(sled_error))?;
            let dt = out.open_tree(&*name)?;
            let mut records = st.iter();
            let mut at = 0u64;
            // Each step of sled's iterator on its own: a panic in it ends the copy as an
            // error, the iterator not touched again.
            let mut failed = false;
            let items = std::iter::from_fn(|| {
                match failed {
                true => None,
                false => match inside_sled(|| Ok(records.next())) {
                    Ok(kv) => kv.map(|kv| {
                        at += 1;
                        let (k, v) = kv.map_err(sled_error)?;
                        // sled has no key limit: a key foldvault cannot hold ends the import
                        // naming where it is (by position: names and keys are the caller's
                        // data), not with a bare `KeyTooLarge` at the next batch.
                        if k.len() > crate::MAX_KEY_LEN {
                            return Err(Error::Unsupported(format!(
                                "sled tree {} of {trees}, record {at}: a key of {} bytes, over the {} a foldvault key may have; nothing was imported",
                                i + 1,
                                k.len(),
                                crate::MAX_KEY_LEN
                            )));
                        }
                        Ok((k, v))
                    }),
                    Err(e) => {
                        failed = true;
                        Some(Err(e))
                    }
                },
            }
            });
            let (n, d) = copy_records(items, &dt, &mut p, progress)?;
            report.trees.push((name.to_vec(), n, d));
        }
        // sled's id counter carries over, with a margin: an id drawn from it is above every id
        // it handed out only if the application ran sled with an `idgen_persist_interval` of at
        // most twice this process's (sled's default, 1,000,000: its recovery puts the counter
        // that far past the one it persisted); an application that drew ids with a larger one
        // got repeats (migration review, medium). `SLED_ID_MARGIN` covers intervals up to 2^31.
        let next = inside_sled(|| sdb.generate_id().map_err(sled_error))?;
        let ids = super::api::Tree::fixed(out.handle.clone(), super::engine::IDS_TREE);
        ids.insert(b"next", next.saturating_add(1).saturating_add(SLED_ID_MARGIN).to_le_bytes())?;
        drop(ids);
        if out.checksum()? != expected {
            return Err(Error::ReportableBug("the copy's checksum differs from the sled database's".into()));
        }
        finish_copy(out)?;
        Ok(report)
    })
}

/// Runs `f`, a call into sled: a panic there (sled 0.34 has `expect`s on what it reads from
/// its files) is the import's error, not the caller's process ending; the copy in progress is
/// discarded with it (`copy_through_temp`). Only sled's calls are wrapped: a panic of the
/// caller's progress callback, or of foldvault's own code, goes on as a panic (it was reported
/// as sled's, the source called damaged: migration review, low).
#[cfg(feature = "sled-import")]
fn inside_sled<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(Error::Unsupported("sled panicked reading the source database (it may be damaged)".into()))
    })
}

#[cfg(test)]
#[path = "migrate_tests.rs"]
mod tests;
