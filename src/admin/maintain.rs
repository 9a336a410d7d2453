//! The maintenance commands of `foldvault`: check and salvage (the backup commands are in
//! `backups`), and the helpers of their reports.
//!
//! Layer: admin; public API only (`Db::check`, `salvage`).
//!
//! Invariants: `salvage` opens its source read-only (as `check` does: nothing is written to
//! it, and a commit its open fell back from stays in place), never writes into an existing
//! database, and removes the one it created when it fails; lost key ranges are shown by their
//! bounding keys, escaped and shortened, never with values.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::cli::{CheckArgs, SalvageArgs};
use super::commands::{Access, Target, open_db, printable};
use super::jsonl::{Obj, array};
use super::keys::Prompt;
use super::{At, CliError, read_header};
use crate::{CheckReport, Credentials, Durability, Encryption, Error, LostRange, PageRole, SalvagedPart};

/// Keys in lost-range lines are shortened to this many bytes.
const MAX_SHOWN_KEY: usize = 48;

pub(super) fn stdout_buf() -> BufWriter<std::io::StdoutLock<'static>> {
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

pub(super) fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// A spinner for work that reports no progress (hidden unless standard error is a terminal).
pub(super) fn spinner(what: &str) -> indicatif::ProgressBar {
    let bar = super::progress(None, what);
    if !bar.is_hidden() {
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(120));
    }
    bar
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

/// What a write-ahead log group that replay dropped means, for `check` and `salvage` alike.
const LOG_GROUP_DROPPED: &str = "the write-ahead log's replay stopped at a group that fails its checksum: the commits in it, and any logged after it, are not in the database (a last group torn by a crash was never acknowledged; damage loses acknowledged ones)";

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
    // As a record that does not open: commits the log held are missing (CLI review, high: the
    // check said ok, and salvage "nothing lost").
    if rec.log_group_dropped {
        out.push(Finding {
            page: None,
            pages: 0,
            tree: "write-ahead log".into(),
            kind: "LogGroupDropped".into(),
            reason: LOG_GROUP_DROPPED.into(),
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
fn role_counts(r: &CheckReport) -> [(&'static str, u64); PageRole::KINDS] {
    let mut n = [0u64; PageRole::KINDS];
    for (pages, role) in r.roles.runs() {
        n[role.kind()] += pages.end - pages.start;
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
    let width = r.trees.iter().map(|t| printable(&t.name).chars().count()).max().unwrap_or(0);
    for t in &r.trees {
        writeln!(o, "  {:width$}  {}, {}", printable(&t.name), plural(t.records, "record"), plural(t.pages, "page"))?;
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
    let trees = array(
        r.trees
            .iter()
            .map(|t| Obj::new().bytes("name", &t.name).num("records", t.records).num("pages", t.pages).finish()),
    );
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
        .bool("log_group_dropped", rec.log_group_dropped)
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
    // The directory it goes in must be there: the copy's temporary file made in a missing one
    // failed with a bare "No such file or directory", and salvage named the source for it
    // (CLI review).
    let parent = t.file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(CliError::Usage(format!(
            "{what} {}: its directory {} does not exist",
            t.file.display(),
            parent.display()
        )));
    }
    match std::fs::metadata(&t.file) {
        Ok(m) if m.len() > 0 || !m.is_file() => {
            // What killed runs left beside it is tidied all the same (the library's copies do
            // so before they refuse): no run into it would, and for `decrypt` it is plaintext.
            crate::db::leftovers::remove_stale(&t.file);
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
    // An open of SRC first, to say why it does not open, if it does not (what recovery found,
    // and so what is lost, comes back in the salvage's report).
    match src_cfg.clone().read_only(true).open() {
        Ok(_) => {}
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
        }
        Err(e) => {
            bar.finish_and_clear();
            return Err(CliError::db(e, &src.file));
        }
    }
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
    // What recovery found in SRC (the library's salvage reads the commit the open accepts, or,
    // if none verifies whole, the newest record that opens): a newer commit lost as a whole.
    let recovery = &report.recovery;
    let copied: u64 = report.copied.values().sum();
    let ranges: u64 = report.lost.values().map(|v| v.len() as u64).sum();
    // The verdict is the exit code, even when the reader of the report has gone.
    let mut o = super::verdict_stdout();
    let w = CliError::stdout;
    writeln!(o, "salvaged {} into {}", src.file.display(), dst.file.display()).map_err(w)?;
    let trees = report.copied.keys().map(|name| SalvagedPart::Tree(name.clone()));
    let parts: std::collections::BTreeSet<SalvagedPart> = report.lost.keys().cloned().chain(trees).collect();
    for part in &parts {
        let (shown, n) = match part {
            SalvagedPart::Catalog => ("(catalog of trees)".to_string(), None),
            SalvagedPart::IdCounter => ("(generate_id counter)".to_string(), None),
            SalvagedPart::Tree(name) => (printable(name), report.copied.get(name).copied()),
        };
        match n {
            Some(n) => writeln!(o, "  {shown}: {} copied", plural(n, "record")).map_err(w)?,
            None => writeln!(o, "  {shown}:").map_err(w)?,
        }
        for l in report.lost.get(part).map(Vec::as_slice).unwrap_or_default() {
            writeln!(o, "    lost: {}", lost_text(l)).map_err(w)?;
        }
    }
    if report.lost.contains_key(&SalvagedPart::Catalog) {
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
    // A record that does not open may have been the newer of the two (its commit is then
    // missing from the copy) or the older one: which, nothing readable says. As check does,
    // the verdict counts it (`SalvageReport::lost_anything`).
    if !recovery.rejected_slots.is_empty() {
        losses.push("perhaps a newer commit (a commit record does not open)".to_string());
    }
    if recovery.log_group_dropped {
        writeln!(o, "  lost: {LOG_GROUP_DROPPED}").map_err(w)?;
        losses.push("perhaps the commits of a write-ahead log group (it fails its checksum)".to_string());
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
