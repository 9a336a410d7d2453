//! `foldvault status`: what a database file is, read from its header without a key; with a key
//! (or for a plaintext file) also its trees, record counts and commit counters.
//!
//! Layer: admin. [`read_header`] reads only pages 0 and 1 through `std::fs` (no lock, no key, no
//! writes) and decodes them with the public `FileHeader::decode`; everything it returns is
//! public in the file already (no key material: slots hold only wrapped keys, which are not
//! shown).

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::cli::StatusArgs;
use super::commands::Target;
use super::jsonl::{Obj, array};
use super::keys::Prompt;
use super::{At, CliError};
use crate::error::PageNo;
use crate::format::header::FileHeader;
use crate::format::{HEADER_PAGE_A, HEADER_PAGE_B, PAGE_SIZE};
use crate::{Db, Error};

/// The header of a database file, as read without a key.
#[derive(Debug, Clone)]
pub struct HeaderInfo {
    /// The valid copy with the highest generation.
    pub header: FileHeader,
    /// The page that copy was read from (0 or 1).
    pub header_page: PageNo,
    /// Whether copies A (page 0) and B (page 1) decode.
    pub copies_valid: [bool; 2],
    /// File size in bytes.
    pub file_size: u64,
    /// `file_size / 4096`.
    pub page_count: u64,
    /// Bytes of the write-ahead log beside the file (`FILE.fvwal`, SPEC §15), if there is one:
    /// the database is open elsewhere, or its last session crashed (the next open replays it).
    pub log_size: Option<u64>,
}

/// Reads and decodes both header copies of the file at `path` and keeps the valid one with the
/// highest generation. Needs no key and takes no lock. Errors: `Io`, `NotADatabase`,
/// `Truncated`, or when neither copy is valid the copies' most telling decode error
/// (`format::header::most_telling`).
pub fn read_header(path: &Path) -> crate::Result<HeaderInfo> {
    let file = std::fs::File::open(path)?;
    let file_size = file.metadata()?.len();
    if file_size < 2 * PAGE_SIZE as u64 {
        let mut magic = [0u8; 8];
        if file_size < 8 || file.read_exact_at(&mut magic, 0).is_err() || magic != crate::format::MAGIC {
            return Err(Error::NotADatabase);
        }
        return Err(Error::Truncated { expected: 2 * PAGE_SIZE as u64, found: file_size });
    }
    let mut best: Option<(FileHeader, PageNo)> = None;
    let mut failures = [None, None];
    let mut copies_valid = [false; 2];
    for (i, page) in [HEADER_PAGE_A, HEADER_PAGE_B].into_iter().enumerate() {
        let mut buf = vec![0u8; PAGE_SIZE];
        file.read_exact_at(&mut buf, page * PAGE_SIZE as u64)?;
        match FileHeader::decode(&buf, page) {
            Ok(h) => {
                copies_valid[i] = true;
                if best.as_ref().is_none_or(|(b, _)| h.generation > b.generation) {
                    best = Some((h, page));
                }
            }
            Err(e) => failures[i] = Some(e),
        }
    }
    match best {
        Some((header, header_page)) => {
            let log_size = std::fs::metadata(crate::storage::wal::log_of(path)).ok().map(|m| m.len());
            let page_count = file_size / PAGE_SIZE as u64;
            Ok(HeaderInfo { header, header_page, copies_valid, file_size, page_count, log_size })
        }
        None => Err(crate::format::header::most_telling(failures)),
    }
}

fn slot_text(s: &crate::format::header::KeySlot) -> String {
    slot_kind_text(s.kind, s.kind.uses_passphrase().then_some(&s.kdf))
}

/// A slot's kind and, for passphrase kinds, its Argon2id parameters.
pub fn slot_kind_text(kind: crate::SlotKind, kdf: Option<&crate::KdfParams>) -> String {
    match kdf {
        Some(k) => format!(
            "{} (argon2id: {} KiB, {} passes, {} lanes)",
            kind.name(),
            k.memory_kib,
            k.iterations,
            k.parallelism
        ),
        None => kind.name().to_string(),
    }
}

/// The AES-GCM implementation's name.
pub fn backend_name(b: crate::CipherBackend) -> &'static str {
    match b {
        crate::CipherBackend::RustCrypto => "RustCrypto aes-gcm",
        crate::CipherBackend::AwsLc => "aws-lc-rs",
        crate::CipherBackend::Ring => "ring",
    }
}

/// Which AES-GCM implementations seal and open pages: one name when one does both.
pub fn backends_text(b: crate::CipherBackends) -> String {
    if b.seal == b.open {
        backend_name(b.seal).to_string()
    } else {
        format!("{} to seal, {} to open", backend_name(b.seal), backend_name(b.open))
    }
}

/// How AES runs on this CPU, for `status`.
pub fn aes_text() -> &'static str {
    if crate::CipherBackend::hardware_aes() {
        if cfg!(any(target_arch = "x86", target_arch = "x86_64")) {
            "hardware (AES-NI)"
        } else {
            "hardware (ARMv8 AES)"
        }
    } else {
        "software (constant-time)"
    }
}

fn slots_json(h: &FileHeader) -> String {
    array(h.slots.iter().enumerate().filter_map(|(i, s)| {
        let s = s.as_ref()?;
        let mut o = Obj::new().num("slot", i as u64).str("kind", s.kind.name());
        if s.kind.uses_passphrase() {
            o = o.raw(
                "kdf",
                &Obj::new()
                    .str("algorithm", "argon2id")
                    .num("memory_kib", s.kdf.memory_kib)
                    .num("iterations", s.kdf.iterations)
                    .num("parallelism", s.kdf.parallelism)
                    .finish(),
            );
        }
        Some(o.finish())
    }))
}

/// What an opened database adds to the header.
pub struct DbInfo {
    pub trees: Vec<(Vec<u8>, u64)>,
    pub commit_seq: u64,
    pub durable_commit_seq: u64,
    pub key_epoch: u32,
    pub seals_in_epoch: u64,
    /// Seals allowed per key epoch (the nonce budget).
    pub seal_budget: u64,
    /// What recovery at open found (`Db::recovery_report`): `recovered` in the JSON output is
    /// its `fell_back`, as in `check --json`; the rejected slots and a dropped log group are
    /// reported apart (a rejected older record opened the newest commit: nothing fell back).
    pub recovery: crate::RecoveryReport,
    /// Bytes of key memory locked against swapping while the database was open.
    pub locked_bytes: u64,
    /// Whether some key memory could not be locked (RLIMIT_MEMLOCK).
    pub locking_failed: bool,
    /// Free pages as of the last durable commit (`Metrics::free_pages`).
    pub free_pages: u64,
}

impl DbInfo {
    pub fn of(db: &Db, file: &Path) -> Result<DbInfo, CliError> {
        // One snapshot, so the names and counts agree with each other and with `commit_seq`.
        let rt = db.begin_read().at(file)?;
        let trees = rt.tree_lens().into_iter().map(|(name, count)| (name.to_vec(), count)).collect();
        let es = db.encryption_status();
        Ok(DbInfo {
            trees,
            commit_seq: rt.commit_seq(),
            durable_commit_seq: db.durable_commit_seq(),
            key_epoch: es.key_epoch,
            seals_in_epoch: es.seals_in_epoch,
            seal_budget: es.seal_budget,
            recovery: db.recovery_report(),
            // Read while the database (and so its keys) is open.
            locked_bytes: crate::crypto::locked::locked_bytes(),
            locking_failed: crate::crypto::locked::locking_failed(),
            free_pages: db.metrics().free_pages,
        })
    }
}

/// Writes the status as text or one JSON object.
pub fn write_status(
    o: &mut dyn Write,
    file: &Path,
    info: &HeaderInfo,
    db: Option<&DbInfo>,
    json: bool,
) -> std::io::Result<()> {
    let h = &info.header;
    let cipher = if h.is_encrypted() { h.cipher.name() } else { "none" };
    if json {
        let mut obj = Obj::new()
            .str("file", &file.display().to_string())
            .bool("encrypted", h.is_encrypted())
            .str("cipher", cipher)
            .num("format_version", h.version)
            .num("header_generation", h.generation)
            .num("header_page", info.header_page)
            .bool("header_a_valid", info.copies_valid[0])
            .bool("header_b_valid", info.copies_valid[1])
            .str("file_id", &crate::format::page::hex(&h.file_id))
            .bool("rekey_pending", h.next_key.is_some())
            .bool("hardware_aes", crate::CipherBackend::hardware_aes())
            .str("aes_seal_backend", backend_name(crate::CipherBackends::default().seal))
            .str("aes_open_backend", backend_name(crate::CipherBackends::default().open))
            .raw("slots", &slots_json(h))
            .num("file_size", info.file_size)
            .num("page_count", info.page_count)
            .bool("write_ahead_log", info.log_size.is_some())
            .num("write_ahead_log_size", info.log_size.unwrap_or(0))
            .bool("opened", db.is_some());
        if let Some(d) = db {
            obj = obj
                .num("commit_seq", d.commit_seq)
                .num("durable_commit_seq", d.durable_commit_seq)
                .num("key_epoch", d.key_epoch)
                .num("seals_in_epoch", d.seals_in_epoch)
                .num("seal_budget", d.seal_budget)
                .num("free_pages", d.free_pages)
                .bool("recovered", d.recovery.fell_back)
                .raw("rejected_commit_slots", &array(d.recovery.rejected_slots.iter().map(|p| p.to_string())))
                .bool("log_group_dropped", d.recovery.log_group_dropped);
            if h.is_encrypted() {
                obj = obj.bool("key_memory_locked", !d.locking_failed).num("key_memory_locked_bytes", d.locked_bytes);
            }
            obj = obj.raw(
                "trees",
                &array(d.trees.iter().map(|(n, c)| Obj::new().bytes("name", n).num("records", *c).finish())),
            );
        }
        return writeln!(o, "{}", obj.finish());
    }
    writeln!(o, "file:            {}", file.display())?;
    writeln!(o, "encryption:      {}", if h.is_encrypted() { "encrypted" } else { "plaintext (CRC32-checked pages)" })?;
    writeln!(o, "cipher:          {cipher}")?;
    writeln!(o, "format version:  {}", h.version)?;
    let copies = |v: bool| if v { "valid" } else { "INVALID" };
    writeln!(
        o,
        "header:          generation {} (copy A {}, copy B {})",
        h.generation,
        copies(info.copies_valid[0]),
        copies(info.copies_valid[1])
    )?;
    writeln!(o, "file id:         {}", crate::format::page::hex(&h.file_id))?;
    writeln!(o, "file size:       {} bytes ({} pages)", info.file_size, info.page_count)?;
    match info.log_size {
        None => writeln!(o, "write-ahead log: none (the file holds every commit)")?,
        Some(n) => writeln!(
            o,
            "write-ahead log: {n} bytes beside the file (open elsewhere, or left by a crash: the next open replays it)"
        )?,
    }
    if h.is_encrypted() {
        writeln!(o, "key slots:")?;
        for (i, s) in h.slots.iter().enumerate() {
            if let Some(s) = s.as_ref() {
                writeln!(o, "  slot {i}: {}", slot_text(s))?;
            }
        }
        if h.next_key.is_some() {
            writeln!(o, "rekey:           in progress (run `foldvault rekey` again to finish it)")?;
        }
        writeln!(
            o,
            "AES:             {}; default backend here {}",
            aes_text(),
            backends_text(crate::CipherBackends::default())
        )?;
    }
    match db {
        None => writeln!(o, "(not opened: trees and counters need the database opened with its key)")?,
        Some(d) => {
            writeln!(o, "commit sequence: {} (durable {})", d.commit_seq, d.durable_commit_seq)?;
            writeln!(
                o,
                "free space:      {} pages ({:.1} MiB; `foldvault compact` gives back what it can)",
                d.free_pages,
                super::pages_mib(d.free_pages)
            )?;
            if h.is_encrypted() {
                writeln!(o, "key epoch:       {}", d.key_epoch)?;
                let pct = if d.seal_budget == 0 { 0.0 } else { d.seals_in_epoch as f64 * 100.0 / d.seal_budget as f64 };
                writeln!(
                    o,
                    "nonce budget:    {} of {} seals used in this epoch ({pct:.4}%)",
                    d.seals_in_epoch, d.seal_budget
                )?;
                if d.locking_failed {
                    writeln!(o, "key memory:      NOT locked (RLIMIT_MEMLOCK): keys may be swapped to disk")?;
                } else {
                    writeln!(o, "key memory:      locked ({} bytes)", d.locked_bytes)?;
                }
            }
            let r = &d.recovery;
            if r.fell_back {
                writeln!(o, "recovery:        the newest commit did not verify; opened at the previous one")?;
            }
            for page in &r.rejected_slots {
                writeln!(
                    o,
                    "recovery:        the commit record in page {page} does not open (torn by a crash, or altered)"
                )?;
            }
            if r.log_group_dropped {
                writeln!(o, "recovery:        a write-ahead log group failed its checksum; its commits were left out")?;
            }
            writeln!(o, "trees:")?;
            for (name, count) in &d.trees {
                writeln!(o, "  {}  {} records", super::commands::printable(name), count)?;
            }
        }
    }
    Ok(())
}

pub fn status(a: StatusArgs) -> Result<(), CliError> {
    let t = Target::resolve(&a.db);
    t.must_exist()?;
    let mut info = read_header(&t.file).at(&t.file)?;
    let creds = a.keys.credentials(Prompt::Never)?;
    let mut opened = None;
    let mut open_err = None;
    if !info.header.is_encrypted() || !creds.is_empty() {
        match t.config().credentials(creds).read_only(true).open() {
            Ok(db) => {
                opened = Some(DbInfo::of(&db, &t.file)?);
                // The header the database has, authenticated: the file's header pages may be
                // older (a slot change a crash left only in a log an earlier build wrote), and listed
                // slots it no longer has, or lacked one it has (CLI review).
                info.header = db.live_header();
            }
            Err(e) => open_err = Some(CliError::db(e, &t.file)),
        }
    }
    // The header's part is written whatever the open said (a database open elsewhere, a wrong
    // key): `--json` printed nothing then (CLI review). The open's error is the exit code.
    let mut o = std::io::BufWriter::new(std::io::stdout().lock());
    let written = write_status(&mut o, &t.file, &info, opened.as_ref(), a.json).and_then(|()| o.flush());
    // A failed open is the verdict (wrong key, damage) even when standard output has gone.
    match open_err {
        Some(e) => Err(e),
        None => written.map_err(CliError::stdout),
    }
}
