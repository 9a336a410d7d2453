//! The backup commands of `foldvault`: backup, verify-backup, restore.
//!
//! Layer: admin; public API only (`Db::backup_to`, `backup::verify`, `backup::restore`), plus
//! `FileStorage` to hold the lock of a database `restore --force` replaces.
//!
//! Invariants: `backup` to standard output writes nothing else there (its summary goes to
//! standard error); a backup file is written beside its target and given its name only when
//! complete and synced, so a failed backup never replaces a good one, and only over a file that
//! is still an earlier backup (or empty, or missing: a file made at the name meanwhile is kept)
//! unless `--force`; `restore` never replaces an existing database without `--force`, nor one
//! another process has open.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, IsTerminal, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::cli::{BackupArgs, RestoreArgs, VerifyBackupArgs};
use super::commands::{Access, Target, open_db, printable};
use super::keys::Prompt;
use super::maintain::{mb_per_s, plural, same_file, secs, stdout_buf};
use super::{At, CliError};
use crate::backup::{BackupHeader, BackupSummary, Progress, RestoreOptions};
use crate::{Credentials, Encryption, Error};

/// A writer (or reader) that remembers whether a write to it (a read from it) failed, so that
/// an I/O error of a backup or a restore is attributed to the backup's file or stream rather
/// than the database.
struct Tracked<T> {
    inner: T,
    failed: bool,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let r = self.inner.read(buf);
        // (An interrupted read is retried by the reader, not an error.)
        self.failed |= r.as_ref().is_err_and(|e| e.kind() != std::io::ErrorKind::Interrupted);
        r
    }
}

impl<W: Write> Write for Tracked<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = self.inner.write(buf);
        // (An interrupted write is retried by the writer, not an error: counted, a later
        // failure of the database's read was blamed on the output. Backup review, low.)
        self.failed |= r.as_ref().is_err_and(|e| e.kind() != std::io::ErrorKind::Interrupted);
        r
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        self.failed |= r.is_err();
        r
    }
}

/// The callback that drives a [`page_bar`].
fn on_progress(bar: &indicatif::ProgressBar) -> impl FnMut(Progress) + '_ {
    move |p: Progress| {
        if p.total_pages > 0 {
            bar.set_length(p.total_pages);
        }
        bar.set_position(p.pages);
    }
}

/// A progress bar over pages whose total arrives with the first report (hidden unless standard
/// error is a terminal).
fn page_bar(what: &str) -> indicatif::ProgressBar {
    let bar = super::progress(Some(0), what);
    if !bar.is_hidden()
        && let Ok(style) = indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} pages ({elapsed})")
    {
        bar.set_style(style);
    }
    bar
}

/// Whether a backup may replace the file at `out` without `--force`: nothing there, an empty
/// file, or a foldvault backup (its first bytes are the backup magic).
fn replaceable_by_backup(out: &Path) -> std::io::Result<bool> {
    let f = match std::fs::File::open(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        r => r?,
    };
    let mut head = Vec::with_capacity(8);
    f.take(8).read_to_end(&mut head)?;
    Ok(head.is_empty() || head == crate::backup::BACKUP_MAGIC)
}

fn not_a_backup(out: &Path) -> CliError {
    CliError::Usage(format!(
        "{} exists and is not a foldvault backup: name another file, or pass --force to replace it",
        out.display()
    ))
}

/// Gives the written backup `tmp` the name `out`, as the checks at the start allowed, against
/// what is there now: a name that was free is taken only if it still is (`rename_new`: a file
/// made there meanwhile is kept); a file there is replaced if it is still an earlier backup (or
/// empty), or with `force`.
fn place_backup(tmp: &Path, out: &Path, force: bool, was_missing: bool) -> Result<(), CliError> {
    if force {
        return std::fs::rename(tmp, out).at(out);
    }
    if was_missing {
        return crate::db::migrate::rename_new(tmp, out, false).map_err(|e| match e {
            Error::AlreadyExists(_) => not_a_backup(out),
            e => CliError::db(e, out),
        });
    }
    if !replaceable_by_backup(out).at(out)? {
        return Err(not_a_backup(out));
    }
    // An empty file may be a database another process is creating under its lock (as a copy's
    // placement takes it: `migrate::rename_new`): replaced only while this run holds that lock,
    // and still empty (CLI review: it was renamed over, the creator writing on into a file no
    // name reached).
    let held = match std::fs::metadata(out) {
        Ok(m) if m.len() == 0 => crate::db::migrate::lock_empty_target(out).map_err(|e| match e {
            Error::AlreadyExists(_) => not_a_backup(out),
            e => CliError::db(e, out),
        })?,
        _ => None,
    };
    std::fs::rename(tmp, out).at(out)?;
    drop(held);
    Ok(())
}

pub fn backup(a: BackupArgs) -> Result<(), CliError> {
    let to_stdout = a.out.as_os_str() == "-";
    let stdout_name = Path::new("<stdout>");
    if to_stdout && std::io::stdout().is_terminal() {
        return Err(CliError::Usage(
            "refusing to write a backup to a terminal: redirect standard output or name a file".into(),
        ));
    }
    // A regular (or new) file is written beside its target and renamed; a pipe or a character
    // device (/dev/null) is written directly, and so is a block device, with --force only.
    let kind = std::fs::metadata(&a.out).ok().filter(|_| !to_stdout).map(|m| m.file_type());
    let direct = kind.is_some_and(|t| !t.is_file() && !t.is_dir());
    if direct && !a.force && !kind.is_some_and(|t| t.is_fifo() || t.is_char_device()) {
        return Err(CliError::Usage(format!(
            "{} is not a file, a pipe or a character device: pass --force to write the backup onto it",
            a.out.display()
        )));
    }
    if kind.is_some_and(|t| t.is_dir()) {
        return Err(CliError::Usage(format!("{} is a directory; name the backup file", a.out.display())));
    }
    // A file there is replaced only if it is an earlier backup (or empty), or with --force:
    // `backup db1 db2` must not destroy the database db2.
    let was_missing = std::fs::symlink_metadata(&a.out).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
    if !to_stdout && !direct && !a.force && !replaceable_by_backup(&a.out).at(&a.out)? {
        return Err(not_a_backup(&a.out));
    }
    let (db, file) = open_db(&a.db, &a.keys, Access::Read)?;
    // The backup written over the database itself (or its log) would replace it.
    let log = crate::storage::wal::log_of(&file);
    if !to_stdout && (same_file(&a.out, &file) || same_file(&a.out, &log)) {
        return Err(CliError::Usage("OUT is the database (or its log): name another file".into()));
    }
    let verify_after = super::config_file::installed().backup_verify_after == Some(true);
    let bar = page_bar("backup");
    let mut cb = on_progress(&bar);
    let t0 = Instant::now();
    let (stats, shown) = if to_stdout {
        let mut w = Tracked { inner: BufWriter::with_capacity(1 << 20, std::io::stdout().lock()), failed: false };
        let r = db.backup_to(&mut w, &mut cb);
        bar.finish_and_clear();
        let stats = r.map_err(|e| match e {
            Error::Io(io) if w.failed => CliError::io(io, stdout_name),
            e => CliError::db(e, &file),
        })?;
        (stats, "standard output".to_string())
    } else if direct {
        let f = OpenOptions::new().write(true).open(&a.out).at(&a.out)?;
        let mut w = Tracked { inner: BufWriter::with_capacity(1 << 20, f), failed: false };
        let r = db.backup_to(&mut w, &mut cb);
        bar.finish_and_clear();
        let stats = r.map_err(|e| match e {
            Error::Io(io) if w.failed => CliError::io(io, &a.out),
            e => CliError::db(e, &file),
        })?;
        // A device keeps what was written in the page cache until it is synced: the summary
        // must not come before the backup is on it (a pipe or /dev/null has nothing to sync).
        if kind.is_some_and(|t| t.is_block_device()) {
            let f = w.inner.into_inner().map_err(|e| CliError::io(e.into_error(), &a.out))?;
            f.sync_all().at(&a.out)?;
        }
        (stats, a.out.display().to_string())
    } else {
        crate::db::leftovers::remove_stale(&a.out);
        let tmp = crate::db::leftovers::temp_beside(&a.out, "partial");
        let result = (|| -> Result<crate::backup::BackupStats, CliError> {
            let f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).at(&a.out)?;
            // Locked while written: another run's tidying leaves it (`db::leftovers`).
            f.lock().at(&a.out)?;
            let mut w = Tracked { inner: BufWriter::with_capacity(1 << 20, f), failed: false };
            let stats = db.backup_to(&mut w, &mut cb).map_err(|e| match e {
                Error::Io(io) if w.failed => CliError::io(io, &a.out),
                e => CliError::db(e, &file),
            })?;
            let f = w.inner.into_inner().map_err(|e| CliError::io(e.into_error(), &a.out))?;
            f.sync_all().at(&a.out)?;
            // Still locked through the read-back and the rename: a verify longer than a minute
            // let another run's tidying take it for abandoned and remove it (file review).
            let _locked = f;
            // `[backup] verify_after` in the config file: what was written is read back and
            // its structure and hashes verified (as `verify-backup` without a key) before it
            // replaces anything.
            if verify_after {
                let f = std::fs::File::open(&tmp).at(&a.out)?;
                crate::backup::verify(std::io::BufReader::new(f), None, &mut |_| {})
                    .map_err(|e| backup_err(e, &a.out))?;
            }
            place_backup(&tmp, &a.out, a.force, was_missing)?;
            // In place: a directory that cannot be synced is said, not a failure (one whose
            // sync failed is).
            crate::storage::sync_new_name(&a.out).at(&a.out)?;
            Ok(stats)
        })();
        bar.finish_and_clear();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        (result?, a.out.display().to_string())
    };
    let elapsed = t0.elapsed();
    drop(db);
    if !to_stdout && !direct && verify_after {
        note!("backup: {} read back and verified (structure and hashes)", a.out.display());
    }
    note!(
        "backup: commit {} of {} to {}: {} bytes, {}, {} in {} ({})",
        stats.seq,
        file.display(),
        shown,
        stats.bytes,
        plural(stats.pages, "page"),
        plural(stats.chunks, "chunk"),
        secs(elapsed),
        mb_per_s(stats.bytes, elapsed)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// verify-backup and restore

/// The backup stream named by `arg` (`-`: standard input) and the name to use in messages.
fn open_input(arg: &Path) -> Result<(Box<dyn Read>, PathBuf), CliError> {
    if arg.as_os_str() == "-" {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            return Err(CliError::Usage(
                "refusing to read a backup from a terminal: redirect standard input or name a file".into(),
            ));
        }
        Ok((Box::new(BufReader::with_capacity(1 << 20, stdin.lock())), PathBuf::from("<stdin>")))
    } else {
        let f = File::open(arg).at(arg)?;
        if f.metadata().at(arg)?.is_dir() {
            return Err(CliError::Usage(format!("{} is a directory, not a backup", arg.display())));
        }
        // As `-` on a terminal (`--help` says so): it would wait for the keyboard (CLI review).
        if f.is_terminal() {
            return Err(CliError::Usage(format!("refusing to read a backup from a terminal ({})", arg.display())));
        }
        let block_device = std::os::unix::fs::FileTypeExt::is_block_device(&f.metadata().at(arg)?.file_type());
        let r = BufReader::with_capacity(1 << 20, f);
        if block_device {
            // A device has no end where the stream `backup` wrote to it ends: read up to the
            // length its header gives, not on into what the device held before (which failed
            // every such backup as "bytes after the trailer": backup review, medium).
            return Ok((end_at_stream_len(Box::new(r), arg)?, arg.to_path_buf()));
        }
        Ok((Box::new(r), arg.to_path_buf()))
    }
}

/// `r` cut at the length of the stream its header describes (`BackupHeader::stream_len`); as
/// it is when the header does not decode (the library then says why).
fn end_at_stream_len(r: Box<dyn Read>, name: &Path) -> Result<Box<dyn Read>, CliError> {
    let (header, r) = peek_header(r, name)?;
    Ok(match header.and_then(|h| h.stream_len()) {
        Some(len) => Box::new(r.take(len)),
        None => r,
    })
}

/// Reads the backup header (the first page) ahead, to learn whether the backup is encrypted,
/// and gives back a reader that yields the whole stream again. `None` when the header does
/// not decode: the library then reports why.
fn peek_header(mut r: Box<dyn Read>, name: &Path) -> Result<(Option<BackupHeader>, Box<dyn Read>), CliError> {
    let mut head = Vec::with_capacity(crate::format::PAGE_SIZE);
    (&mut r).take(crate::format::PAGE_SIZE as u64).read_to_end(&mut head).at(name)?;
    let header = BackupHeader::decode(&head).ok();
    Ok((header, Box::new(std::io::Cursor::new(head).chain(r))))
}

/// A library error about the backup stream `name`.
fn backup_err(e: Error, name: &Path) -> CliError {
    match e {
        Error::NotADatabase => {
            CliError::Verify(format!("not a foldvault backup (bad magic at byte 0) ({})", name.display()))
        }
        Error::Truncated { expected, found } => CliError::Verify(format!(
            "backup truncated: the stream ends at byte {found}, at least {expected} expected ({})",
            name.display()
        )),
        Error::BackupCorrupt { offset, chunk: Some(chunk), what } => CliError::Verify(format!(
            "backup damaged in chunk {chunk} (which starts at byte {offset}): {what} ({})",
            name.display()
        )),
        e => CliError::db(e, name),
    }
}

fn trees_lines(o: &mut dyn Write, trees: &std::collections::BTreeMap<Vec<u8>, u64>) -> std::io::Result<()> {
    writeln!(o, "trees:")?;
    let width = trees.keys().map(|n| printable(n).chars().count()).max().unwrap_or(0);
    for (name, n) in trees {
        writeln!(o, "  {:width$}  {}", printable(name), plural(*n, "record"))?;
    }
    Ok(())
}

fn write_summary(o: &mut dyn Write, name: &Path, s: &BackupSummary) -> std::io::Result<()> {
    writeln!(o, "backup:          {}", name.display())?;
    writeln!(o, "encryption:      {}", if s.encrypted { "encrypted" } else { "plaintext (not encrypted)" })?;
    writeln!(o, "commit sequence: {}", s.seq)?;
    writeln!(o, "root digest:     {}", crate::format::page::hex(&s.root_digest))?;
    writeln!(o, "created:         {}", utc(s.created_unix))?;
    writeln!(o, "size:            {} bytes, {}, {}", s.bytes, plural(s.chunks, "chunk"), plural(s.pages, "page"))?;
    Ok(())
}

pub fn verify_backup(a: VerifyBackupArgs) -> Result<(), CliError> {
    let (input, name) = open_input(&a.file)?;
    let creds = if a.no_key { Credentials::none() } else { a.keys.credentials(Prompt::Never)? };
    let creds = if creds.is_empty() { None } else { Some(creds) };
    // Whether a backup is encrypted, the stream says under unkeyed hashes only: a key given
    // authenticates nothing of a plaintext one, which anyone able to write the backup can put
    // in place of an encrypted one (SPEC §13.4).
    let (header, input) = peek_header(input, &name)?;
    let plaintext = header.as_ref().is_some_and(|h| !h.encrypted);
    if a.require_encryption && plaintext {
        return Err(CliError::Usage(format!(
            "{} is a backup of a plaintext database (--require-encryption)",
            name.display()
        )));
    }
    if plaintext && creds.is_some() {
        note!(
            "foldvault: warning: {} is a backup of a plaintext database: the key given authenticates nothing of it \
             (its hashes detect damage, not forgery; --require-encryption refuses such a backup)",
            name.display()
        );
    }
    let bar = page_bar("verifying");
    let mut cb = on_progress(&bar);
    let t0 = Instant::now();
    let result = crate::backup::verify(input, creds.as_ref(), &mut cb);
    bar.finish_and_clear();
    let s = result.map_err(|e| backup_err(e, &name))?;
    let elapsed = t0.elapsed();
    let mut o = stdout_buf();
    let w = CliError::stdout;
    write_summary(&mut o, &name, &s).map_err(w)?;
    if s.deep {
        writeln!(o, "checked:         structure, chunk and stream hashes; every page opened and every link followed")
            .map_err(w)?;
        trees_lines(&mut o, &s.trees).map_err(w)?;
    } else {
        writeln!(o, "checked:         structure, chunk and stream hashes (no key: pages not opened)").map_err(w)?;
    }
    let kind = if s.deep { "full" } else { "without key" };
    writeln!(o, "verify-backup: ok ({kind}); {}", read_rate(&s, elapsed)).map_err(w)?;
    o.flush().map_err(w)
}

pub fn restore(a: RestoreArgs) -> Result<(), CliError> {
    let t = Target::resolve(&a.db);
    // A link to nothing, refused here before the backup is read or a passphrase asked for, and
    // as DB's fault: the library's refusal came after the prompt, blamed on FILE (backup review).
    if std::fs::symlink_metadata(&t.file).is_ok_and(|m| m.file_type().is_symlink()) && !t.file.exists() {
        return Err(CliError::db(crate::backup::dangling_link(&t.file), &t.file));
    }
    let exists = std::fs::metadata(&t.file).is_ok_and(|m| m.len() > 0 || !m.is_file());
    if exists && !a.force {
        return Err(CliError::Usage(format!(
            "{} already exists; restore replaces a database only with --force",
            t.file.display()
        )));
    }
    if exists && !std::fs::metadata(&t.file).is_ok_and(|m| m.is_file()) {
        return Err(CliError::Usage(format!("{} is not a regular file", t.file.display())));
    }
    let (input, name) = open_input(&a.file)?;
    if a.file.as_os_str() != "-" && same_file(&a.file, &t.file) {
        return Err(CliError::Usage("FILE and DB are the same file".into()));
    }
    // A database in use is not swapped away under its users: `restore` holds the lock of the
    // one it replaces throughout; tried here first, so that it fails before any prompt.
    if exists {
        drop(crate::storage::FileStorage::open(&t.file, false).map_err(|e| CliError::db(e, &t.file))?);
    }
    let (header, input) = peek_header(input, &name)?;
    let encrypted = header.as_ref().is_some_and(|h| h.encrypted);
    if a.require_encryption && header.is_some() && !encrypted {
        return Err(CliError::Usage(format!(
            "{} is a backup of a plaintext database (--require-encryption)",
            name.display()
        )));
    }
    let prompt = if encrypted && a.file.as_os_str() != "-" { Prompt::Unlock } else { Prompt::Never };
    let creds = a.keys.credentials(prompt)?;
    if encrypted && creds.is_empty() {
        return Err(CliError::db(
            Error::WrongKey {
                hint: "the backup is encrypted and no key was given (use --passphrase-file, FOLDVAULT_PASSPHRASE or --key-file)",
            },
            &name,
        ));
    }
    if header.is_some() && !encrypted && !creds.is_empty() {
        note!(
            "foldvault: warning: {} is a backup of a plaintext database: it is restored as plaintext, and the key \
             given is not used (--require-encryption refuses such a backup)",
            name.display()
        );
    }
    let encryption = if a.require_encryption { Encryption::Required } else { Encryption::Auto };
    let bar = page_bar("restoring");
    let mut cb = on_progress(&bar);
    let t0 = Instant::now();
    let mut input = Tracked { inner: input, failed: false };
    let result = crate::backup::restore(
        &mut input,
        &t.file,
        &creds,
        RestoreOptions { force: a.force, progress: Some(&mut cb), encryption },
    );
    bar.finish_and_clear();
    let s = result.map_err(|e| match e {
        // A read of the backup (or standard input) that failed is the backup's error.
        Error::Io(io) if input.failed => CliError::io(io, &name),
        Error::AlreadyExists(_) | Error::Io(_) | Error::Locked => CliError::db(e, &t.file),
        e => backup_err(e, &name),
    })?;
    let elapsed = t0.elapsed();
    let size = std::fs::metadata(&t.file).map(|m| m.len()).unwrap_or(0);
    let mut o = stdout_buf();
    let w = CliError::stdout;
    write_summary(&mut o, &name, &s).map_err(w)?;
    trees_lines(&mut o, &s.trees).map_err(w)?;
    let rate = read_rate(&s, elapsed);
    writeln!(o, "restore: commit {} into {} ({size} bytes, checked); {rate} of backup", s.seq, t.file.display())
        .map_err(w)?;
    o.flush().map_err(w)
}

/// What reading a backup took: `B bytes, N pages in S s (R MB/s)`.
fn read_rate(s: &BackupSummary, elapsed: std::time::Duration) -> String {
    format!("{} bytes, {} in {} ({})", s.bytes, plural(s.pages, "page"), secs(elapsed), mb_per_s(s.bytes, elapsed))
}

/// A Unix time as `YYYY-MM-DD hh:mm:ss UTC`.
fn utc(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let rem = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is at OUT when the backup is placed decides, not what was there at the start: a
    /// file made at a name that was free, or a backup replaced meanwhile by something else, is
    /// kept (and the written backup removed by the caller); a backup still there is replaced.
    #[test]
    fn a_backup_replaces_only_what_is_still_replaceable() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, out) = (dir.path().join("tmp"), dir.path().join("out"));
        let backup = [crate::backup::BACKUP_MAGIC.as_slice(), b"new"].concat();
        std::fs::write(&tmp, &backup).unwrap();
        std::fs::write(&out, b"a database made meanwhile").unwrap();
        for was_missing in [true, false] {
            let r = place_backup(&tmp, &out, false, was_missing);
            assert!(matches!(r, Err(CliError::Usage(_))), "{was_missing}");
            assert_eq!(std::fs::read(&out).unwrap(), b"a database made meanwhile");
            assert!(tmp.exists());
        }
        std::fs::write(&out, [crate::backup::BACKUP_MAGIC.as_slice(), b"old"].concat()).unwrap();
        place_backup(&tmp, &out, false, false).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), backup);
        // A name still free is taken; with --force anything is replaced.
        std::fs::write(&tmp, &backup).unwrap();
        let fresh = dir.path().join("fresh");
        place_backup(&tmp, &fresh, false, true).unwrap();
        assert!(!tmp.exists() && std::fs::read(&fresh).unwrap() == backup);
        std::fs::write(&tmp, b"x").unwrap();
        std::fs::write(&out, b"not a backup").unwrap();
        place_backup(&tmp, &out, true, false).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"x");
    }

    /// A reader that gives `good` bytes of `stream` (after one interrupted read), then fails;
    /// at the stream's end it ends.
    struct FailingAfter {
        stream: Vec<u8>,
        at: usize,
        good: usize,
        interrupted: bool,
    }

    impl Read for FailingAfter {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if !self.interrupted {
                self.interrupted = true;
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            if self.at == self.stream.len() {
                return Ok(0);
            }
            if self.at >= self.good {
                return Err(std::io::Error::other("the backup's device failed"));
            }
            let n = buf.len().min(self.good - self.at);
            buf[..n].copy_from_slice(&self.stream[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    /// A restore whose backup stops reading with an I/O error: the error is the reader's (the
    /// command then names the backup, not the database), an interrupted read is not one, and a
    /// whole stream read through the same wrapper leaves it unmarked.
    #[test]
    fn a_failed_read_of_the_backup_is_the_backups_error() {
        let db = crate::Config::new().temporary(true).plaintext().use_env(false).open().unwrap();
        for i in 0..200u32 {
            db.insert(i.to_be_bytes(), vec![1u8; 100]).unwrap();
        }
        let mut stream = Vec::new();
        db.backup_to(&mut stream, &mut |_| {}).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let good = stream.len() / 2;
        let reader = FailingAfter { stream: stream.clone(), at: 0, good, interrupted: false };
        let mut input = Tracked { inner: reader, failed: false };
        let r = crate::backup::restore(&mut input, &dir.path().join("a"), &Credentials::none(), Default::default());
        assert!(matches!(r, Err(Error::Io(_))) && input.failed, "{r:?}");
        let reader = FailingAfter { stream: stream.clone(), at: 0, good: stream.len(), interrupted: false };
        let mut input = Tracked { inner: reader, failed: false };
        let r = crate::backup::restore(&mut input, &dir.path().join("b"), &Credentials::none(), Default::default());
        assert!(r.is_ok(), "{r:?}");
        assert!(!input.failed);
    }
}
