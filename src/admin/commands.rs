//! The data commands of `foldvault`: init, put, get, del, scan, load, dump, stats; and how
//! every command opens a database.
//!
//! Layer: admin; public API only (`Config`, `Db`, `WriteTransaction`, `ReadTransaction`).
//! Invariants: a command other than `init` never creates a database (a missing file is an I/O
//! error, an empty one is not a database); writing commands commit with
//! `Durability::Immediate`; `dump` reads one snapshot, so its output is one consistent state.

use std::ffi::OsString;
use std::io::{BufRead, Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use super::cli::{CompactArgs, DumpArgs, InitArgs, KeyCmdArgs, LoadArgs, PutArgs, ScanArgs, StatsArgs};
use super::jsonl::{Obj, Record};
use super::keys::{KeyArgs, Prompt};
use super::{At, CliError};
use crate::{Config, Credentials, Db, Durability, Encryption, Error, ReadTransaction};

/// The name of the file inside a database directory (as `Config::path` uses it).
const DB_FILE_IN_DIR: &str = "db.foldvault";

/// Where a DB argument points.
pub struct Target {
    /// The argument as given (used in messages).
    pub arg: PathBuf,
    /// The database file itself.
    pub file: PathBuf,
    /// True when the argument is a directory holding `db.foldvault`.
    pub is_dir: bool,
}

impl Target {
    pub fn resolve(arg: &Path) -> Target {
        if arg.is_dir() {
            Target { arg: arg.to_path_buf(), file: arg.join(DB_FILE_IN_DIR), is_dir: true }
        } else {
            Target { arg: arg.to_path_buf(), file: arg.to_path_buf(), is_dir: false }
        }
    }

    /// The base configuration: location, no background flusher, no environment lookups.
    pub fn config(&self) -> Config {
        let c = if self.is_dir { Config::new().path(&self.arg) } else { Config::new().file(&self.file) };
        super::config_file::installed().apply(c).flush_every_ms(None).use_env(false)
    }

    /// Fails unless the database file exists and is not empty.
    pub fn must_exist(&self) -> Result<(), CliError> {
        let meta = std::fs::metadata(&self.file).at(&self.file)?;
        if meta.len() == 0 {
            // As the library says it (SPEC §12): a database truncated to nothing.
            let truncated = Error::Truncated { expected: 4 * crate::format::PAGE_SIZE as u64, found: 0 };
            return Err(CliError::db(truncated, &self.file));
        }
        Ok(())
    }
}

/// How a command uses the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Opens an existing database with the key options; prompts for a passphrase only when the
/// header says the file is encrypted and no key was given.
pub fn open_db(arg: &Path, keys: &KeyArgs, access: Access) -> Result<(Db, PathBuf), CliError> {
    let (db, file, _creds) = open_db_creds(arg, keys, access)?;
    Ok((db, file))
}

/// As [`open_db`], and also returns the credentials that opened it (for the key commands,
/// which need them again).
pub fn open_db_creds(arg: &Path, keys: &KeyArgs, access: Access) -> Result<(Db, PathBuf, Credentials), CliError> {
    let t = Target::resolve(arg);
    t.must_exist()?;
    let encrypted = super::read_header(&t.file).at(&t.file)?.header.is_encrypted();
    let creds = keys.credentials(if encrypted { Prompt::Unlock } else { Prompt::Never })?;
    if !encrypted && !creds.is_empty() {
        note!(
            "foldvault: warning: {} is plaintext (not encrypted); the key given was not used (`foldvault encrypt` converts it)",
            t.file.display()
        );
    }
    let db = open_target(&t, encrypted, creds.duplicate(), access)?;
    Ok((db, t.file, creds))
}

/// Opens the existing database `t` with `creds` (`encrypted` as its header says).
pub fn open_target(t: &Target, encrypted: bool, creds: Credentials, access: Access) -> Result<Db, CliError> {
    if encrypted && creds.is_empty() {
        return Err(CliError::db(
            Error::WrongKey {
                hint: "the database is encrypted and no key was given (use --passphrase-file, FOLDVAULT_PASSPHRASE or --key-file)",
            },
            &t.file,
        ));
    }
    let durability = if access == Access::Write { Durability::Immediate } else { Durability::Eventual };
    // Commands that only read open read-only: they write nothing to the file or its log, and
    // leave a commit the open fell back from in place (`check`, `salvage` see it again).
    let db =
        t.config().credentials(creds).durability(durability).read_only(access == Access::Read).open().at(&t.file)?;
    let recovery = db.recovery_report();
    if recovery.fell_back {
        note!(
            "foldvault: warning: the newest commit did not verify; opened at the previous durable commit {} ({})",
            db.commit_seq(),
            t.file.display()
        );
    } else if !recovery.rejected_slots.is_empty() {
        note!(
            "foldvault: warning: a commit record does not open (a commit torn by a crash, or altered); opened at \
             commit {} ({})",
            db.commit_seq(),
            t.file.display()
        );
    }
    if recovery.log_group_dropped {
        note!(
            "foldvault: warning: a group of the write-ahead log fails its checksum (torn by a crash, or damaged): \
             its commits and any logged after it are not in the database; opened at commit {} ({})",
            db.commit_seq(),
            t.file.display()
        );
    }
    Ok(db)
}

fn bytes(s: OsString) -> Vec<u8> {
    s.into_vec()
}

/// Refuses tree names in the engine's reserved namespace (`Db::open_tree` and a write
/// transaction's `open_tree` refuse them too; checked here to word the usage error).
fn writable_tree(name: &[u8]) -> Result<&[u8], CliError> {
    if name.starts_with(crate::db::engine::RESERVED_PREFIX) {
        return Err(CliError::Usage(format!(
            "tree names starting with {} are reserved",
            printable(crate::db::engine::RESERVED_PREFIX)
        )));
    }
    Ok(name)
}

fn out() -> std::io::BufWriter<std::io::StdoutLock<'static>> {
    std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock())
}

pub fn init(a: InitArgs) -> Result<(), CliError> {
    let t = Target::resolve(&a.db);
    if t.file.exists() && std::fs::metadata(&t.file).at(&t.file)?.len() > 0 {
        return Err(CliError::db(Error::AlreadyExists(t.file.display().to_string()), &t.file));
    }
    let mut cfg = t.config().create_new(true).durability(Durability::Immediate);
    let cipher = a.new.cipher();
    if a.plaintext {
        if a.keys.any_given() {
            return Err(CliError::Usage("--plaintext takes no --passphrase-file or --key-file".into()));
        }
        cfg = cfg.plaintext();
    } else {
        let kdf = a.new.kdf()?;
        let creds = a.keys.credentials(Prompt::Create)?;
        if creds.is_empty() {
            return Err(CliError::Usage(
                "an encrypted database needs a key: use --passphrase-file, FOLDVAULT_PASSPHRASE or --key-file (or --plaintext)".into(),
            ));
        }
        cfg = cfg.encryption(Encryption::Required).cipher(cipher).kdf(kdf).credentials(creds);
    }
    // A failed create takes away the file it made itself, under the file's lock
    // (`db::location`): no removal here, which could take another process's new file.
    let db = cfg.open().at(&t.file)?;
    db.flush().at(&t.file)?;
    let mode = if db.is_encrypted() { format!("encrypted ({})", cipher.name()) } else { "plaintext".into() };
    drop(db);
    let mut o = out();
    writeln!(o, "created {} database {}", mode, t.file.display()).map_err(CliError::stdout)?;
    o.flush().map_err(CliError::stdout)
}

pub fn put(a: PutArgs) -> Result<(), CliError> {
    let (db, file) = open_db(&a.db, &a.keys, Access::Write)?;
    // Wiped when it goes, refused or written (a transaction's `insert` copies what it is given).
    let value = if a.value == "-" { read_value(&file)? } else { zeroize::Zeroizing::new(bytes(a.value)) };
    let tx = db.begin_write().at(&file)?;
    tx.open_tree(writable_tree(&bytes(a.tree))?).at(&file)?.insert(bytes(a.key), &value[..]).at(&file)?;
    tx.commit().at(&file)
}

/// A value from standard input, read bounded (a byte past the largest value is enough to
/// refuse it) into buffers that are wiped when they go: the read's chunk, the value as it
/// grows (a `read_to_end` freed each smaller buffer as it was), and the value itself.
fn read_value(file: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, CliError> {
    let max = crate::MAX_VALUE_LEN;
    let mut value = zeroize::Zeroizing::new(Vec::new());
    let mut chunk = zeroize::Zeroizing::new(vec![0u8; 64 * 1024]);
    let mut input = std::io::stdin().lock();
    loop {
        let n = match input.read(&mut chunk[..]) {
            Ok(0) => return Ok(value),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).at(Path::new("<stdin>")),
        };
        let len = value.len() as u64 + n as u64;
        if len > max {
            return Err(CliError::db(Error::ValueTooLarge { len, max }, file));
        }
        crate::crypto::wipe::extend_wiping(&mut value, &chunk[..n], usize::MAX);
    }
}

/// The tree of a read snapshot, or `None` when it does not exist.
fn read_tree(rt: &ReadTransaction, name: &[u8], file: &Path) -> Result<Option<crate::ReadTree>, CliError> {
    match rt.open_tree(name) {
        Ok(t) => Ok(Some(t)),
        Err(Error::CollectionNotFound) => Ok(None),
        Err(e) => Err(CliError::db(e, file)),
    }
}

pub fn get(a: KeyCmdArgs) -> Result<(), CliError> {
    let (db, file) = open_db(&a.db, &a.keys, Access::Read)?;
    let rt = db.begin_read().at(&file)?;
    let Some(tree) = read_tree(&rt, &bytes(a.tree), &file)? else {
        return Err(CliError::NotFound { what: "tree not found", file });
    };
    let Some(v) = tree.get(bytes(a.key)).at(&file)? else {
        return Err(CliError::NotFound { what: "key not found", file });
    };
    let mut o = out();
    o.write_all(&v).map_err(CliError::stdout)?;
    o.flush().map_err(CliError::stdout)
}

pub fn del(a: KeyCmdArgs) -> Result<(), CliError> {
    let (db, file) = open_db(&a.db, &a.keys, Access::Write)?;
    let name = bytes(a.tree);
    let tx = db.begin_write().at(&file)?;
    if !tx.tree_names().at(&file)?.iter().any(|n| n == name.as_slice()) {
        return Ok(());
    }
    tx.open_tree(&name).at(&file)?.remove(bytes(a.key)).at(&file)?;
    tx.commit().at(&file)
}

/// Bytes for a text line: as they are when UTF-8 without control characters or backslashes,
/// else escaped (`\n`, `\t`, `\xNN`, `\\`, ...): a key holding a backslash and a `t` printed as
/// one holding a tab did (CLI review).
pub fn printable(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if !s.chars().any(|c| c.is_control() || c == '\\') => s.to_string(),
        // UTF-8 stays readable: only backslashes and control characters are escaped.
        Ok(s) => s
            .chars()
            .map(|c| if c == '\\' || c.is_control() { c.escape_default().to_string() } else { c.to_string() })
            .collect(),
        Err(_) => b.escape_ascii().to_string(),
    }
}

pub fn scan(a: ScanArgs) -> Result<(), CliError> {
    let (db, file) = open_db(&a.db, &a.keys, Access::Read)?;
    let rt = db.begin_read().at(&file)?;
    let Some(tree) = read_tree(&rt, &bytes(a.tree), &file)? else {
        return Err(CliError::NotFound { what: "tree not found", file });
    };
    let iter = match a.prefix {
        Some(p) => tree.scan_prefix(bytes(p)),
        None => tree.iter(),
    };
    let mut o = out();
    for item in iter {
        let (k, v) = item.at(&file)?;
        let line = if a.json {
            Record { tree: None, key: k.to_vec(), value: v.to_vec() }.to_line()
        } else {
            format!("{}\t{}", printable(&k), printable(&v))
        };
        writeln!(o, "{line}").map_err(CliError::stdout)?;
    }
    o.flush().map_err(CliError::stdout)
}

pub fn load(a: LoadArgs) -> Result<(), CliError> {
    let (db, file) = open_db(&a.db, &a.keys, Access::Write)?;
    let forced_tree = a.tree.map(bytes);
    let batch = a.batch.unwrap_or(u64::MAX);
    let stdin_path = Path::new("<stdin>");
    let mut input = std::io::stdin().lock();
    let bar = super::progress(None, "loading");
    let mut tx = db.begin_write().at(&file)?;
    let (mut line_no, mut loaded, mut in_tx, mut committed) = (0u64, 0u64, 0u64, 0u64);
    // Every error names its line, and what earlier batches committed.
    let at_line = |line_no: u64, committed: u64, what: String| {
        let done =
            if committed > 0 { format!("; {committed} records before it were committed") } else { String::new() };
        CliError::Usage(format!("line {line_no}, {what}{done} (<stdin>)"))
    };
    let mut line = Vec::new();
    loop {
        line.clear();
        // At most one byte past the limit is read: a line without an end never fills memory.
        if (&mut input).take(a.max_line_bytes.saturating_add(1)).read_until(b'\n', &mut line).at(stdin_path)? == 0 {
            break;
        }
        line_no += 1;
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        if body.len() as u64 > a.max_line_bytes {
            let what = format!("longer than {} bytes (--max-line-bytes)", a.max_line_bytes);
            return Err(at_line(line_no, committed, what));
        }
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        // A record, or a tree without records (created: opening it in the transaction makes it).
        let (named, record) =
            match super::jsonl::parse_line(&line).map_err(|e| at_line(line_no, committed, e.to_string()))? {
                super::jsonl::Line::Record(rec) => (rec.tree.clone(), Some(rec)),
                super::jsonl::Line::Tree(name) => (Some(name), None),
            };
        let tree = match (&forced_tree, &named) {
            (Some(t), _) | (None, Some(t)) => t.as_slice(),
            (None, None) => {
                let what = "no tree named (give TREE or a \"tree\" field)".to_string();
                return Err(at_line(line_no, committed, what));
            }
        };
        let tree = writable_tree(tree)
            .map_err(|e| at_line(line_no, committed, e.message().unwrap_or_default().to_string()))?;
        let written = tx.open_tree(tree).and_then(|t| match &record {
            Some(rec) => t.insert(&rec.key, &rec.value).map(|_| ()),
            None => Ok(()),
        });
        match written {
            Ok(()) => {}
            // A record or name the database refuses (a key or name too long): the line's fault.
            Err(e @ (Error::KeyTooLarge { .. } | Error::ValueTooLarge { .. } | Error::InvalidConfig(_))) => {
                return Err(at_line(line_no, committed, e.to_string()));
            }
            Err(e) => return Err(e).at(&file),
        }
        if record.is_none() {
            continue;
        }
        loaded += 1;
        in_tx += 1;
        bar.inc(1);
        if in_tx >= batch {
            tx.commit().at(&file)?;
            committed = loaded;
            in_tx = 0;
            tx = db.begin_write().at(&file)?;
        }
    }
    tx.commit().at(&file)?;
    bar.finish_and_clear();
    let mut o = out();
    writeln!(o, "loaded {loaded} records into {}", file.display()).map_err(CliError::stdout)?;
    o.flush().map_err(CliError::stdout)
}

pub fn dump(a: DumpArgs) -> Result<(), CliError> {
    let (db, file) = open_db(&a.db, &a.keys, Access::Read)?;
    let rt = db.begin_read().at(&file)?;
    let mut names: Vec<Vec<u8>> = rt.tree_names().iter().map(|n| n.to_vec()).collect();
    names.sort();
    names.dedup();
    if let Some(only) = a.tree {
        let only = bytes(only);
        names.retain(|n| *n == only);
        if names.is_empty() {
            return Err(CliError::NotFound { what: "tree not found", file });
        }
    }
    let mut o = out();
    for name in names {
        let Some(tree) = read_tree(&rt, &name, &file)? else {
            continue;
        };
        let mut any = false;
        for item in tree.iter() {
            let (k, v) = item.at(&file)?;
            let line = Record { tree: Some(name.clone()), key: k.to_vec(), value: v.to_vec() }.to_line();
            writeln!(o, "{line}").map_err(CliError::stdout)?;
            any = true;
        }
        // A tree without records gets a line of its own (the default tree is in every
        // database: an empty one gets none).
        if !any && name != crate::db::api::DEFAULT_TREE {
            writeln!(o, "{}", super::jsonl::Line::tree_line(&name)).map_err(CliError::stdout)?;
        }
    }
    o.flush().map_err(CliError::stdout)
}

pub fn compact(a: CompactArgs) -> Result<(), CliError> {
    let (db, file) = open_db(&a.db, &a.keys, Access::Write)?;
    let t0 = std::time::Instant::now();
    let r = db.compact().at(&file)?;
    let secs = t0.elapsed().as_secs_f64();
    drop(db);
    let mut o = out();
    if a.json {
        let obj = Obj::new()
            .str("file", &file.display().to_string())
            .num("pages_before", r.pages_before)
            .num("pages_after", r.pages_after)
            .num("nodes_merged", r.nodes_merged)
            .num("leaves_refilled", r.leaves_refilled)
            .num("pages_moved", r.pages_moved)
            .num("commits", r.commits);
        writeln!(o, "{}", obj.finish()).map_err(CliError::stdout)?;
    } else {
        writeln!(
            o,
            "compacted {}: {} pages ({:.1} MiB) -> {} pages ({:.1} MiB); {} node pairs merged, {} leaf pairs refilled, {} pages moved in {} commits ({secs:.2} s)",
            file.display(),
            r.pages_before,
            super::pages_mib(r.pages_before),
            r.pages_after,
            super::pages_mib(r.pages_after),
            r.nodes_merged,
            r.leaves_refilled,
            r.pages_moved,
            r.commits
        )
        .map_err(CliError::stdout)?;
    }
    o.flush().map_err(CliError::stdout)
}

pub fn stats(a: StatsArgs) -> Result<(), CliError> {
    let (db, file) = open_db(&a.db, &a.keys, Access::Read)?;
    let m = db.metrics();
    let size = db.size_on_disk().at(&file)?;
    let fields: [(&str, u64); 17] = [
        ("pages_sealed", m.pages_sealed),
        ("pages_opened", m.pages_opened),
        ("bytes_written", m.bytes_written),
        ("bytes_read", m.bytes_read),
        ("crypto_nanos", m.crypto_nanos),
        ("cache_hits", m.cache_hits),
        ("cache_misses", m.cache_misses),
        ("cache_evictions", m.cache_evictions),
        ("commits", m.commits),
        ("durable_commits", m.durable_commits),
        ("syncs", m.syncs),
        ("cached_pages", m.cached_pages),
        ("key_epoch", u64::from(m.key_epoch)),
        ("seals_in_epoch", m.seals_in_epoch),
        ("free_pages", m.free_pages),
        ("commit_seq", db.commit_seq()),
        ("size_on_disk", size),
    ];
    let mut o = out();
    if a.json {
        let obj = fields.iter().fold(Obj::new().str("file", &file.display().to_string()), |o, (k, v)| o.num(k, *v));
        writeln!(o, "{}", obj.finish()).map_err(CliError::stdout)?;
    } else {
        writeln!(o, "file: {}", file.display()).map_err(CliError::stdout)?;
        for (k, v) in fields {
            writeln!(o, "{k}: {v}").map_err(CliError::stdout)?;
        }
    }
    o.flush().map_err(CliError::stdout)
}

#[cfg(test)]
mod tests {
    /// A key holding a backslash and a `t` is told apart from one holding a tab (CLI review:
    /// both printed `a\tb`).
    #[test]
    fn printable_tells_a_backslash_from_an_escape() {
        assert_eq!(super::printable(b"plain key"), "plain key");
        assert_eq!(super::printable(b"a\tb"), "a\\tb");
        assert_eq!(super::printable(b"a\\tb"), "a\\\\tb");
        assert_ne!(super::printable(b"a\tb"), super::printable(b"a\\tb"));
        // UTF-8 stays readable beside an escape; other bytes are escaped as hex.
        assert_eq!(super::printable("é\\".as_bytes()), "é\\\\");
        assert_eq!(super::printable(b"\xff"), "\\xff");
    }
}
