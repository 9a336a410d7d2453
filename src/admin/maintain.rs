//! The maintenance commands of `foldvault`: check, salvage, backup, verify-backup, restore.
//!
//! Layer: admin; public API only (`Db::check`, `salvage`, `Db::backup_to`, `backup::verify`,
//! `backup::restore`), plus `FileStorage` to hold the lock of a database `restore --force`
//! replaces.
//!
//! Invariants: `backup` to standard output writes nothing else there (its summary goes to
//! standard error); a backup file is written beside its target and renamed into place only when
//! complete, so a failed backup never replaces a good one; `salvage` opens its source
//! read-only (as `check` does: nothing is written to it, and a commit its open fell back from
//! stays in place), never writes into an existing database, and removes the one it created
//! when it fails; `restore` never replaces an
//! existing database without `--force`, nor one another process has open; lost key ranges are
//! shown by their bounding keys, escaped and shortened, never with values.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, IsTerminal, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::Rng;

use super::cli::{BackupArgs, CheckArgs, RestoreArgs, SalvageArgs, VerifyBackupArgs};
use super::commands::{Access, Target, open_db, printable};
use super::jsonl::{Obj, array};
use super::keys::Prompt;
use super::{At, CliError, read_header};
use crate::backup::{BackupHeader, BackupSummary, Progress, RestoreOptions};
use crate::{CheckReport, Credentials, Durability, Encryption, Error, LostRange, PageRole};

/// Keys in lost-range lines are shortened to this many bytes.
const MAX_SHOWN_KEY: usize = 48;

fn stdout_buf() -> BufWriter<std::io::StdoutLock<'static>> {
    BufWriter::with_capacity(64 * 1024, std::io::stdout().lock())
}

/// `n` followed by `word`, with an `s` unless `n` is one.
pub(crate) fn plural(n: u64, word: &str) -> String {
    if n == 1 { format!("{n} {word}") } else { format!("{n} {word}s") }
}

/// A transfer rate in MB/s (10^6 bytes per second).
pub(crate) fn mb_per_s(bytes: u64, d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs <= 0.0 { "-".to_string() } else { format!("{:.1} MB/s", bytes as f64 / 1e6 / secs) }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
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

/// A key for a message line: escaped (see [`printable`]), quoted, and shortened when long.
fn shown_key(k: &[u8]) -> String {
    if k.len() <= MAX_SHOWN_KEY {
        format!("\"{}\"", printable(k))
    } else {
        format!("\"{}\"... ({} bytes)", printable(&k[..MAX_SHOWN_KEY]), k.len())
    }
}

/// The error for an encrypted file when no key was given.
fn no_key(file: &Path) -> CliError {
    CliError::db(
        Error::WrongKey {
            hint: "the database is encrypted and no key was given (use --passphrase-file, FOLDVAULT_PASSPHRASE or --key-file)",
        },
        file,
    )
}

// ---------------------------------------------------------------------------------------------
// check

/// One problem `check` reports: the library's, or what recovery at open found.
struct Finding {
    page: Option<u64>,
    /// Pages from `page` on that the finding covers (a leaked run is one finding).
    pages: u64,
    tree: String,
    kind: String,
    reason: String,
}

/// The library's problems, then what recovery at open rejected: a commit record that does not
/// open and a newest commit that did not verify are damage (or a commit torn by a crash) that
/// the check of the surviving commit cannot see.
fn findings(r: &CheckReport, rec: &crate::RecoveryReport) -> Vec<Finding> {
    let mut out: Vec<Finding> = r
        .problems
        .iter()
        .map(|p| Finding {
            page: Some(p.page),
            pages: p.pages,
            tree: p.tree.clone(),
            kind: format!("{:?}", p.reason),
            reason: p.reason.to_string(),
        })
        .collect();
    for &page in &rec.rejected_slots {
        out.push(Finding {
            page: Some(page),
            pages: 1,
            tree: "commit record".into(),
            kind: "CommitRecordRejected".into(),
            reason: "commit record does not open (a commit torn by a crash, or altered)".into(),
        });
    }
    if rec.fell_back {
        out.push(Finding {
            page: None,
            pages: 0,
            tree: "commit".into(),
            kind: "FellBack".into(),
            reason: format!(
                "the newest commit did not verify; the database opened at the previous durable commit {}",
                rec.seq
            ),
        });
    }
    out
}

pub fn check(a: CheckArgs) -> Result<(), CliError> {
    let (db, file) = open_db(&a.db, &a.keys, Access::Read)?;
    let bar = spinner("checking");
    let t0 = Instant::now();
    let report = db.check();
    bar.finish_and_clear();
    let report = report.at(&file)?;
    let elapsed = t0.elapsed();
    let recovery = db.recovery_report();
    drop(db);
    let found = findings(&report, &recovery);
    // The verdict is the exit code, even when the reader of the report has gone.
    let mut o = super::verdict_stdout();
    if a.json {
        writeln!(o, "{}", check_json(&file, &report, &recovery, &found)).map_err(CliError::stdout)?;
    } else {
        write_check(&mut o, &file, &report, &found, elapsed).map_err(CliError::stdout)?;
    }
    o.flush().map_err(CliError::stdout)?;
    if found.is_empty() {
        Ok(())
    } else {
        Err(CliError::Verify(format!("check found {} ({})", plural(found.len() as u64, "problem"), file.display())))
    }
}

/// Pages per role, in the order they are shown.
fn role_counts(r: &CheckReport) -> [(&'static str, u64); 7] {
    let mut n = [0u64; 7];
    for (pages, role) in r.roles.runs() {
        let i = match role {
            PageRole::Header => 0,
            PageRole::CommitRecord => 1,
            PageRole::Catalog => 2,
            PageRole::Tree(_) => 3,
            PageRole::FreeList => 4,
            PageRole::Free => 5,
            PageRole::Unaccounted => 6,
        };
        n[i] += pages.end - pages.start;
    }
    [
        ("header", n[0]),
        ("commit records", n[1]),
        ("catalog", n[2]),
        ("trees", n[3]),
        ("free list", n[4]),
        ("free", n[5]),
        ("unaccounted", n[6]),
    ]
}

fn write_check(
    o: &mut dyn Write,
    file: &Path,
    r: &CheckReport,
    found: &[Finding],
    elapsed: Duration,
) -> std::io::Result<()> {
    writeln!(o, "file:            {}", file.display())?;
    writeln!(o, "commit sequence: {}", r.commit_seq)?;
    let roles: Vec<String> = role_counts(r).iter().map(|(name, n)| format!("{name} {n}")).collect();
    writeln!(o, "pages:           {} ({})", r.page_count, roles.join(", "))?;
    writeln!(o, "used / free:     {} used, {} free", r.used_pages, r.free_pages)?;
    writeln!(o, "trailing bytes:  {}", r.trailing_bytes)?;
    writeln!(o, "trees:")?;
    let width = r.trees.iter().map(|t| printable(t.name.as_bytes()).chars().count()).max().unwrap_or(0);
    for t in &r.trees {
        writeln!(
            o,
            "  {:width$}  {}, {}",
            printable(t.name.as_bytes()),
            plural(t.records, "record"),
            plural(t.pages, "page")
        )?;
    }
    if found.is_empty() {
        writeln!(o, "problems:        none")?;
    } else {
        writeln!(o, "problems:        {}", found.len())?;
        for f in found {
            match f.page {
                Some(page) if f.pages > 1 => {
                    let last = page.saturating_add(f.pages - 1);
                    writeln!(o, "  pages {page}-{last} ({}): {}", printable(f.tree.as_bytes()), f.reason)?
                }
                Some(page) => writeln!(o, "  page {page} ({}): {}", printable(f.tree.as_bytes()), f.reason)?,
                None => writeln!(o, "  {}: {}", f.tree, f.reason)?,
            }
        }
    }
    let records: u64 = r.trees.iter().map(|t| t.records).sum();
    let verdict =
        if found.is_empty() { "ok".to_string() } else { format!("FAILED, {}", plural(found.len() as u64, "problem")) };
    writeln!(
        o,
        "check: {verdict}; {}, {}, {} checked in {}",
        plural(r.trees.len() as u64, "tree"),
        plural(records, "record"),
        plural(r.page_count, "page"),
        secs(elapsed)
    )
}

fn check_json(file: &Path, r: &CheckReport, rec: &crate::RecoveryReport, found: &[Finding]) -> String {
    let trees =
        array(r.trees.iter().map(|t| {
            Obj::new().bytes("name", t.name.as_bytes()).num("records", t.records).num("pages", t.pages).finish()
        }));
    let problems = array(found.iter().map(|f| {
        let o = match f.page {
            Some(page) => Obj::new().num("page", page),
            None => Obj::new().raw("page", "null"),
        };
        o.str("tree", &f.tree).str("kind", &f.kind).str("reason", &f.reason).num("pages", f.pages).finish()
    }));
    let roles = role_counts(r).iter().fold(Obj::new(), |o, (name, n)| o.num(&name.replace(' ', "_"), *n)).finish();
    Obj::new()
        .str("file", &file.display().to_string())
        .bool("ok", found.is_empty())
        .num("commit_seq", r.commit_seq)
        .bool("recovered", rec.fell_back)
        .raw("rejected_commit_slots", &array(rec.rejected_slots.iter().map(|p| p.to_string())))
        .num("page_count", r.page_count)
        .num("used_pages", r.used_pages)
        .num("free_pages", r.free_pages)
        .raw("pages_by_role", &roles)
        .num("trailing_bytes", r.trailing_bytes)
        .raw("trees", &trees)
        .raw("problems", &problems)
        .finish()
}

// ---------------------------------------------------------------------------------------------
// salvage

/// True when `a` and `b` name the same existing file.
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => crate::storage::same_inode(&x, &y),
        _ => false,
    }
}

/// Fails when `t` names an existing non-empty file.
pub(crate) fn must_not_exist(t: &Target, what: &str) -> Result<(), CliError> {
    match std::fs::metadata(&t.file) {
        Ok(m) if m.len() > 0 || !m.is_file() => {
            Err(CliError::Usage(format!("{what} {} already exists; it is not replaced", t.file.display())))
        }
        _ => Ok(()),
    }
}

fn lost_text(l: &LostRange) -> String {
    let what = match (&l.lo, &l.hi) {
        (Some(lo), Some(hi)) if lo == hi => format!("the value of key {}", shown_key(lo)),
        (None, None) => "every key".to_string(),
        (Some(lo), None) => format!("keys from {} (included) to the end", shown_key(lo)),
        (None, Some(hi)) => format!("keys from the start to {} (excluded)", shown_key(hi)),
        (Some(lo), Some(hi)) => format!("keys from {} (included) to {} (excluded)", shown_key(lo), shown_key(hi)),
    };
    let err = super::one_line(&l.error);
    if err.contains(&format!("page {}", l.page)) {
        format!("{what} ({err})")
    } else {
        format!("{what} (page {}: {err})", l.page)
    }
}

pub fn salvage(a: SalvageArgs) -> Result<(), CliError> {
    let src = Target::resolve(&a.src);
    src.must_exist()?;
    let dst = Target::resolve(&a.dst);
    if same_file(&src.file, &dst.file) {
        return Err(CliError::Usage("SRC and DST are the same file".into()));
    }
    must_not_exist(&dst, "DST")?;
    let info = read_header(&src.file).at(&src.file)?;
    let h = &info.header;
    let encrypted = h.is_encrypted();
    if !encrypted && a.keys.any_given() {
        return Err(CliError::Usage(format!(
            "{} is plaintext, so the salvaged copy is plaintext too: give no --passphrase-file or --key-file",
            src.file.display()
        )));
    }
    let creds = if encrypted { a.keys.credentials(Prompt::Unlock)? } else { Credentials::none() };
    if encrypted && creds.is_empty() {
        return Err(no_key(&src.file));
    }
    let src_cfg = src.config().credentials(creds.duplicate()).durability(Durability::Eventual);
    let mut dst_cfg = dst.config().durability(Durability::Immediate);
    if encrypted {
        dst_cfg = dst_cfg.encryption(Encryption::Required).cipher(h.cipher).credentials(creds);
        // The passphrase slot of the copy costs what the source's does.
        if let Some(s) = h.slots.iter().flatten().find(|s| s.kind.uses_passphrase()) {
            dst_cfg = dst_cfg.kdf(s.kdf);
        }
    } else {
        dst_cfg = dst_cfg.plaintext();
    }
    let bar = spinner("salvaging");
    let t0 = Instant::now();
    // What recovery at open does to SRC: `salvage` copies from the commit the open accepts,
    // so a newest commit that did not verify is lost as a whole and must be reported.
    let recovery = match src_cfg.clone().read_only(true).open() {
        Ok(db) => db.recovery_report(),
        // No commit verifies whole (a damaged catalog or free-list page): the library reads
        // the newest commit record that opens, and the report says what it could not copy.
        Err(e) if e.is_corruption() => {
            bar.suspend(|| {
                note!(
                    "foldvault: warning: {} does not open ({}); salvaging from its newest commit record that opens",
                    src.file.display(),
                    e.to_string().replace(['\n', '\r'], " ")
                )
            });
            Default::default()
        }
        Err(e) => {
            bar.finish_and_clear();
            return Err(CliError::db(e, &src.file));
        }
    };
    let result = crate::salvage(&src_cfg, &dst_cfg);
    bar.finish_and_clear();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            // The library wrote under a temporary name and removed it: nothing is at DST, or
            // what is there is another process's (a file that appeared meanwhile) and stays.
            // Which file the error is about: DST only for what creating it can fail with.
            let about = match &e {
                Error::AlreadyExists(_) | Error::InvalidConfig(_) | Error::Unsupported(_) => &dst.file,
                _ => &src.file,
            };
            return Err(CliError::db(e, about));
        }
    };
    let elapsed = t0.elapsed();
    let copied: u64 = report.copied.values().sum();
    let ranges: u64 = report.lost.values().map(|v| v.len() as u64).sum();
    // The verdict is the exit code, even when the reader of the report has gone.
    let mut o = super::verdict_stdout();
    let w = CliError::stdout;
    writeln!(o, "salvaged {} into {}", src.file.display(), dst.file.display()).map_err(w)?;
    let mut names: Vec<&String> = report.copied.keys().chain(report.lost.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let shown = printable(name.as_bytes());
        let n = report.copied.get(name).copied();
        let lost = report.lost.get(name).map(Vec::as_slice).unwrap_or_default();
        match n {
            Some(n) => writeln!(o, "  {shown}: {} copied", plural(n, "record")).map_err(w)?,
            None => writeln!(o, "  {shown}:").map_err(w)?,
        }
        for l in lost {
            writeln!(o, "    lost: {}", lost_text(l)).map_err(w)?;
        }
    }
    if report.lost.contains_key("catalog") && !report.copied.contains_key("catalog") {
        writeln!(o, "  (a tree whose catalog entry was lost is missing from the copy entirely)").map_err(w)?;
    }
    for page in &recovery.rejected_slots {
        writeln!(o, "  commit record page {page} does not open (a commit torn by a crash, or altered)").map_err(w)?;
    }
    if recovery.fell_back {
        writeln!(
            o,
            "  lost: the newest commit did not verify; copied the previous durable commit {}: the changes \
             of the newer commit are lost",
            recovery.seq
        )
        .map_err(w)?;
    }
    let mut losses = Vec::new();
    if recovery.fell_back {
        losses.push("the newest commit".to_string());
    }
    if ranges > 0 {
        losses.push(format!("{} in {}", plural(ranges, "key range"), plural(report.lost.len() as u64, "tree")));
    }
    let verdict = if losses.is_empty() { "nothing lost".to_string() } else { format!("LOST {}", losses.join(" and ")) };
    writeln!(
        o,
        "salvage: {} copied from {}; {verdict} ({})",
        plural(copied, "record"),
        plural(report.copied.len() as u64, "tree"),
        secs(elapsed)
    )
    .map_err(w)?;
    o.flush().map_err(w)?;
    if !losses.is_empty() {
        return Err(CliError::Verify(format!(
            "salvage lost {}; the readable records are in {}",
            losses.join(" and "),
            dst.file.display()
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// backup

/// A writer that remembers whether a write to it failed, so that an I/O error of the backup
/// is attributed to the output rather than the database.
struct Tracked<W: Write> {
    inner: W,
    failed: bool,
}

impl<W: Write> Write for Tracked<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = self.inner.write(buf);
        self.failed |= r.is_err();
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

/// A spinner for work that reports no progress (hidden unless standard error is a terminal).
fn spinner(what: &str) -> indicatif::ProgressBar {
    let bar = super::progress(None, what);
    if !bar.is_hidden() {
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(120));
    }
    bar
}

/// A temporary name beside `target`.
fn temp_beside(target: &Path, what: &str) -> PathBuf {
    let tag = crate::format::page::hex(&rand::thread_rng().r#gen::<[u8; 6]>());
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "backup".into());
    target.with_file_name(format!(".{name}.{what}-{tag}"))
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

pub fn backup(a: BackupArgs) -> Result<(), CliError> {
    let to_stdout = a.out.as_os_str() == "-";
    let stdout_name = Path::new("<stdout>");
    if to_stdout && std::io::stdout().is_terminal() {
        return Err(CliError::Usage(
            "refusing to write a backup to a terminal: redirect standard output or name a file".into(),
        ));
    }
    // A regular (or new) file is written beside its target and renamed; anything else (a pipe,
    // /dev/null) is written directly.
    let direct = !to_stdout && std::fs::metadata(&a.out).is_ok_and(|m| !m.is_file() && !m.is_dir());
    if !to_stdout && a.out.is_dir() {
        return Err(CliError::Usage(format!("{} is a directory; name the backup file", a.out.display())));
    }
    // A file there is replaced only if it is an earlier backup (or empty), or with --force:
    // `backup db1 db2` must not destroy the database db2.
    if !to_stdout && !direct && !a.force && !replaceable_by_backup(&a.out).at(&a.out)? {
        return Err(CliError::Usage(format!(
            "{} exists and is not a foldvault backup: name another file, or pass --force to replace it",
            a.out.display()
        )));
    }
    let (db, file) = open_db(&a.db, &a.keys, Access::Read)?;
    // The backup written over the database itself (or its log) would replace it.
    let log = crate::storage::wal::sidecar_path(&file);
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
        (stats, a.out.display().to_string())
    } else {
        let tmp = temp_beside(&a.out, "partial");
        let result = (|| -> Result<crate::backup::BackupStats, CliError> {
            let f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).at(&a.out)?;
            let mut w = Tracked { inner: BufWriter::with_capacity(1 << 20, f), failed: false };
            let stats = db.backup_to(&mut w, &mut cb).map_err(|e| match e {
                Error::Io(io) if w.failed => CliError::io(io, &a.out),
                e => CliError::db(e, &file),
            })?;
            let f = w.inner.into_inner().map_err(|e| CliError::io(e.into_error(), &a.out))?;
            f.sync_all().at(&a.out)?;
            drop(f);
            // `[backup] verify_after` in the config file: what was written is read back and
            // its structure and hashes verified (as `verify-backup` without a key) before it
            // replaces anything.
            if verify_after {
                let f = std::fs::File::open(&tmp).at(&a.out)?;
                crate::backup::verify(std::io::BufReader::new(f), None, &mut |_| {})
                    .map_err(|e| backup_err(e, &a.out))?;
            }
            std::fs::rename(&tmp, &a.out).at(&a.out)?;
            crate::storage::sync_parent_dir(&a.out).at(&a.out)?;
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
        Ok((Box::new(BufReader::with_capacity(1 << 20, f)), arg.to_path_buf()))
    }
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

fn trees_lines(o: &mut dyn Write, trees: &std::collections::BTreeMap<String, u64>) -> std::io::Result<()> {
    writeln!(o, "trees:")?;
    let width = trees.keys().map(|n| printable(n.as_bytes()).chars().count()).max().unwrap_or(0);
    for (name, n) in trees {
        writeln!(o, "  {:width$}  {}", printable(name.as_bytes()), plural(*n, "record"))?;
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
    writeln!(
        o,
        "verify-backup: ok ({}); {} bytes, {} in {} ({})",
        if s.deep { "full" } else { "without key" },
        s.bytes,
        plural(s.pages, "page"),
        secs(elapsed),
        mb_per_s(s.bytes, elapsed)
    )
    .map_err(w)?;
    o.flush().map_err(w)
}

pub fn restore(a: RestoreArgs) -> Result<(), CliError> {
    let t = Target::resolve(&a.db);
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
    let result = crate::backup::restore(
        input,
        &t.file,
        &creds,
        RestoreOptions { force: a.force, progress: Some(&mut cb), encryption },
    );
    bar.finish_and_clear();
    let s = result.map_err(|e| match e {
        Error::AlreadyExists(_) | Error::Io(_) | Error::Locked => CliError::db(e, &t.file),
        e => backup_err(e, &name),
    })?;
    let elapsed = t0.elapsed();
    let size = std::fs::metadata(&t.file).map(|m| m.len()).unwrap_or(0);
    let mut o = stdout_buf();
    let w = CliError::stdout;
    write_summary(&mut o, &name, &s).map_err(w)?;
    trees_lines(&mut o, &s.trees).map_err(w)?;
    writeln!(
        o,
        "restore: commit {} into {} ({size} bytes, checked); {} bytes of backup, {} in {} ({})",
        s.seq,
        t.file.display(),
        s.bytes,
        plural(s.pages, "page"),
        secs(elapsed),
        mb_per_s(s.bytes, elapsed)
    )
    .map_err(w)?;
    o.flush().map_err(w)
}
