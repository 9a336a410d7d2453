//! The key commands of `foldvault`: passwd, slots, rekey, and the hidden `__dumpable`.
//!
//! Layer: admin; public API (`Db::slots`, `Db::add_slot`, `Db::add_recovery_key`,
//! `Db::remove_slot`, `Db::change_passphrase`, `Db::rekey`, `Db::encryption_status`), plus the
//! header as `read_header` decodes it (public bytes only) to tell which slot a command changed.
//!
//! Invariants: passwd and slots rewrite the header only, never a data page; the last key slot
//! is never removed; a new recovery key is printed once, alone on standard output (so that it
//! can be redirected to a file), written in one call straight from a buffer that is wiped, and
//! never appears in any other output or message.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use zeroize::Zeroizing;

use super::cli::{DumpableArgs, PasswdArgs, RekeyArgs, SlotAction, SlotsArgs};
use super::commands::{Access, Target, open_db, open_target};
use super::keys::{KeyArgs, Prompt, new_passphrase, read_key_file, read_passphrase_file};
use super::maintain::plural;
use super::status::slot_kind_text;
use super::{At, CliError, read_header};
use crate::format::header::FileHeader;
use crate::{Credentials, Db, Error, KdfParams, RekeyProgress, SlotInfo, SlotKind};
use std::path::PathBuf;

fn out() -> std::io::BufWriter<std::io::StdoutLock<'static>> {
    std::io::BufWriter::new(std::io::stdout().lock())
}

fn say(line: &str) -> Result<(), CliError> {
    let mut o = out();
    writeln!(o, "{line}").map_err(CliError::stdout)?;
    o.flush().map_err(CliError::stdout)
}

/// Opens `arg` for a key command, writable. What can be refused without the open is refused
/// first (a plaintext database, by its header; credentials `check` refuses): a writable open
/// replays a log a crash left, writes a clean-close record or repairs a header copy, and a
/// refusal after it changed the file it said it left alone (CLI review).
/// `check` may read more input (a new passphrase): what it returns is returned beside the handle.
fn open_for_keys<T>(
    arg: &Path,
    keys: &KeyArgs,
    check: impl FnOnce(&Credentials, &Path) -> Result<T, CliError>,
) -> Result<(Db, PathBuf, Credentials, T), CliError> {
    let t = Target::resolve(arg);
    t.must_exist()?;
    if !read_header(&t.file).at(&t.file)?.header.is_encrypted() {
        return Err(plaintext_has_no_slots(&t.file));
    }
    let creds = keys.credentials(Prompt::Unlock)?;
    let checked = check(&creds, &t.file)?;
    let db = open_target(&t, true, creds.duplicate(), Access::Write)?;
    // (The header read above is not authenticated: the open's is.)
    require_encrypted(&db, &t.file)?;
    Ok((db, t.file, creds, checked))
}

fn plaintext_has_no_slots(file: &Path) -> CliError {
    CliError::Usage(format!(
        "{} is a plaintext database: it has no key slots (`foldvault encrypt` makes an encrypted copy)",
        file.display()
    ))
}

/// Refuses a plaintext database, which has no key slots.
fn require_encrypted(db: &Db, file: &Path) -> Result<(), CliError> {
    if db.is_encrypted() {
        return Ok(());
    }
    Err(plaintext_has_no_slots(file))
}

fn slot_line(s: &SlotInfo) -> String {
    format!("slot {}: {}", s.index, slot_kind_text(s.kind, s.kdf.as_ref()))
}

/// The passphrase slot `creds` opens, without another key derivation when only one slot can
/// be it.
fn passphrase_slot_of(h: &FileHeader, creds: &Credentials) -> Option<usize> {
    let servable =
        |k: SlotKind| k.uses_passphrase() && (k != SlotKind::MasterKeyAndPassphrase || creds.master.is_some());
    let candidates: Vec<usize> = h
        .slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.as_ref().is_some_and(|s| servable(s.kind)))
        .map(|(i, _)| i)
        .collect();
    match candidates[..] {
        [i] => Some(i),
        [] => None,
        _ => crate::crypto::slots::unlock_kind(h, creds, servable).ok().map(|(_key, i)| i),
    }
}

/// The slot whose stored bytes differ between two headers (a rewritten slot has a new salt).
fn changed_slots(before: &FileHeader, after: &FileHeader) -> Vec<usize> {
    let pairs = before.slots.iter().zip(after.slots.iter()).enumerate();
    pairs
        .filter(|(_, (a, b))| match (a.as_ref(), b.as_ref()) {
            (Some(a), Some(b)) => a.bound_bytes() != b.bound_bytes() || a.wrapped != b.wrapped,
            (None, None) => false,
            _ => true,
        })
        .map(|(i, _)| i)
        .collect()
}

pub fn passwd(a: PasswdArgs) -> Result<(), CliError> {
    // The new passphrase is read (or asked for) before the open too.
    let (db, file, old, new) = open_for_keys(&a.db, &a.keys, |old, file| {
        if old.passphrase.is_none() {
            return Err(CliError::Usage(format!(
                "passwd changes the passphrase that opens {}: give the current one (--passphrase-file, \
FOLDVAULT_PASSPHRASE, or at the prompt); to add a passphrase slot, use `foldvault slots DB add-passphrase`",
                file.display()
            )));
        }
        new_passphrase(a.new_passphrase_file.as_deref())
    })?;
    // The open handle's header: the file's header pages may be older (their update only in a
    // write-ahead log an earlier build left, which logged header pages), and are not
    // authenticated.
    let before = db.live_header();
    let current = passphrase_slot_of(&before, &old);
    // Unless told otherwise, the slot keeps the cost it has.
    let base =
        current.and_then(|i| db.slots().into_iter().find(|s| s.index == i)).and_then(|s| s.kdf).unwrap_or_default();
    let kdf = a.kdf.resolve(base)?;
    db.change_passphrase(&old, new, kdf).at(&file)?;
    let after = db.live_header();
    drop(db);
    let mut slots = changed_slots(&before, &after);
    if slots.is_empty() {
        slots.extend(current);
    }
    let list = match &slots[..] {
        [] => "slot ?".to_string(),
        [i] => format!("slot {i}"),
        many => format!("slots {}", many.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")),
    };
    say(&format!("passphrase changed ({list}); no data page was rewritten"))
}

pub fn slots(a: SlotsArgs) -> Result<(), CliError> {
    match a.action {
        None => list_slots(&a.db, &a.keys),
        Some(SlotAction::AddPassphrase { new_passphrase_file, kdf }) => {
            let kdf = kdf.resolve(super::config_file::installed().kdf())?;
            let (db, file, _, p) =
                open_for_keys(&a.db, &a.keys, |_, _| new_passphrase(new_passphrase_file.as_deref()))?;
            let i = db.add_slot(&Credentials::passphrase(p), kdf).at(&file)?;
            say(&format!("added slot {i}: {}", slot_kind_text(SlotKind::Passphrase, Some(&kdf))))
        }
        Some(SlotAction::AddKeyFile { file: key_file }) => {
            let key = read_key_file(&key_file, "key file")?;
            let (db, file, _, ()) = open_for_keys(&a.db, &a.keys, |_, _| Ok(()))?;
            let i = db.add_slot(&Credentials::master_key(key), KdfParams::default()).at(&file)?;
            say(&format!("added slot {i}: {}", SlotKind::MasterKey.name()))
        }
        Some(SlotAction::AddRecovery) => add_recovery(&a.db, &a.keys),
        Some(SlotAction::Remove { n, force }) => remove_slot(&a.db, &a.keys, n, force),
    }
}

/// Lists the slots: from the authenticated header of the opened database when a key is
/// given, else from the header as read (no key needed: slots hold no secret in clear).
fn list_slots(arg: &Path, keys: &KeyArgs) -> Result<(), CliError> {
    let t = Target::resolve(arg);
    t.must_exist()?;
    let info = read_header(&t.file).at(&t.file)?;
    if !info.header.is_encrypted() {
        return Err(CliError::Usage(format!(
            "{} is a plaintext database: it has no key slots (`foldvault encrypt` makes an encrypted copy)",
            t.file.display()
        )));
    }
    let creds = keys.credentials(Prompt::Never)?;
    let list = if creds.is_empty() {
        // Without a key only the header pages can be read, unauthenticated, and a slot change
        // still in the write-ahead log is not in them yet (CLI review).
        if crate::storage::wal::log_of(&t.file).exists() {
            note!(
                "foldvault: a write-ahead log is beside {}: if an earlier build wrote it, a slot change still in it \
is not listed; give a key to list the slots the database has",
                t.file.display()
            );
        }
        crate::db::keys::slot_infos(&info.header)
    } else {
        let db = super::commands::open_target(&t, true, creds, Access::Read)?;
        db.slots()
    };
    let mut o = out();
    for s in &list {
        writeln!(o, "{}", slot_line(s)).map_err(CliError::stdout)?;
    }
    o.flush().map_err(CliError::stdout)
}

/// Makes standard output fit to receive a recovery key before one is made: a file other users
/// can read (made by `> rk` under the usual umask 022) is made private (mode 0600), as every key
/// file the command line reads must be; a named pipe they can open, or a file whose mode cannot
/// be changed, is refused (`FOLDVAULT_ALLOW_SHARED_KEY_FILES=1` lets both be, and only those:
/// a file it can make private is made private whatever the variable says). A terminal or an
/// anonymous pipe is left alone.
fn private_stdout_for_a_key() -> Result<(), CliError> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::PermissionsExt;
    let stdout = std::io::stdout();
    let Ok(fd) = stdout.as_fd().try_clone_to_owned() else { return Ok(()) };
    let f = std::fs::File::from(fd);
    let Ok(Some((how, mode))) = crate::crypto::secret_file::exposure(&f) else { return Ok(()) };
    let is_file = f.metadata().is_ok_and(|m| m.is_file());
    if is_file && f.set_permissions(std::fs::Permissions::from_mode(0o600)).is_ok() {
        note!("foldvault: standard output was {how} by other users (mode {mode:o}); it was made private (0600)");
        return Ok(());
    }
    // The variable lets the tool read shared key files; it left a new recovery key in a file
    // other users could read (config review, medium). Only what cannot be made private passes.
    if crate::crypto::secret_file::shared_files_allowed() {
        return Ok(());
    }
    Err(CliError::Usage(format!(
        "standard output is {how} by other users (mode {mode:o}) and could not be made private: the recovery key \
would be exposed; write it to a private file (umask 077), or set {}=1",
        crate::crypto::secret_file::ENV_ALLOW_SHARED_KEY_FILES
    )))
}

/// Syncs standard output when it is a regular file (`> recovery.key`): the slot is durable
/// when `add-recovery` returns, and so must the key be, or a power loss leaves a slot whose
/// key was never kept (CLI review, low). A pipe or a terminal has nothing to sync.
fn sync_if_a_file(stdout: &std::io::StdoutLock<'_>) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    let file = std::fs::File::from(stdout.as_fd().try_clone_to_owned()?);
    if file.metadata()?.is_file() { file.sync_all() } else { Ok(()) }
}

fn add_recovery(arg: &Path, keys: &KeyArgs) -> Result<(), CliError> {
    private_stdout_for_a_key()?;
    let (db, file, _, ()) = open_for_keys(arg, keys, |_, _| Ok(()))?;
    let (i, key) = db.add_recovery_key().at(&file)?;
    let mut line = Zeroizing::new(String::with_capacity(65));
    line.push_str(&key.to_hex());
    line.push('\n');
    drop(key);
    // One write of a whole line goes straight to the descriptor (standard output's line buffer
    // is empty here), so no unwiped copy is left in it.
    let mut stdout = std::io::stdout().lock();
    let written = stdout.write_all(line.as_bytes()).and_then(|_| stdout.flush()).and_then(|_| sync_if_a_file(&stdout));
    drop(stdout);
    if let Err(e) = written {
        // The key was never delivered (a closed pipe included): a slot nobody can open with
        // is taken away again, and this is an error, never a quiet exit.
        let removed = db.remove_slot(i).is_ok();
        let what = if removed { "was removed again" } else { "is left: remove it (slots remove)" };
        let err = std::io::Error::new(e.kind(), format!("recovery key not delivered ({e}); slot {i} {what}"));
        return Err(CliError::Io { err, file: std::path::PathBuf::from("<stdout>") });
    }
    drop(db);
    note!(
        "foldvault: added slot {i}: recovery-key ({}). The recovery key above is shown this once and is \
stored nowhere else: keep it offline (on paper, in a safe). Anyone who has it can open the database; \
open with it through --recovery-key-file FILE (a file only you can read).",
        file.display()
    );
    Ok(())
}

fn remove_slot(arg: &Path, keys: &KeyArgs, n: usize, force: bool) -> Result<(), CliError> {
    let (db, file, creds, ()) = open_for_keys(arg, keys, |_, _| Ok(()))?;
    let list = db.slots();
    let Some(slot) = list.iter().find(|s| s.index == n) else {
        return Err(CliError::Usage(format!(
            "{} has no key slot {n} (`foldvault slots {}` lists them)",
            file.display(),
            file.display()
        )));
    };
    if list.len() == 1 {
        return Err(CliError::Usage(format!(
            "slot {n} is the last key slot of {}: without it the database could never be opened again; \
add another slot first",
            file.display()
        )));
    }
    // Whether the key given still opens the database without slot n (a key derivation more),
    // by the open handle's header: the file's may be older (its update only in a log an earlier
    // build left), and hold a slot the key opens that is gone.
    let mut without = db.live_header();
    if let Some(s) = without.slots.get_mut(n) {
        s.set(None);
    }
    let still_opens = match crate::crypto::slots::unlock(&without, &creds) {
        Ok(_) => true,
        Err(Error::WrongKey { .. }) => false,
        // A slot that could not be tried (its key derivation's memory) is not "does not open".
        Err(e) => return Err(CliError::db(e, &file)),
    };
    if !force && !still_opens {
        return Err(CliError::Usage(format!(
            "slot {n} is the only slot of {} that the key given opens: after removing it, only the other slots' \
keys open the database; make sure you hold one, then add --force",
            file.display()
        )));
    }
    let what = slot_kind_text(slot.kind, slot.kdf.as_ref());
    db.remove_slot(n).at(&file)?;
    say(&format!("removed slot {n}: {what}; {} left", plural(list.len() as u64 - 1, "slot")))
}

pub fn rekey(a: RekeyArgs) -> Result<(), CliError> {
    // Every key file read before the open (a file that does not read is refused with nothing
    // changed), the credentials that open the database first.
    let mut all = Vec::new();
    for p in &a.also_passphrase_file {
        all.push(Credentials::passphrase(read_passphrase_file(p)?));
    }
    for k in &a.also_key_file {
        all.push(Credentials::master_key(read_key_file(k, "key file")?));
    }
    for r in &a.also_recovery_key_file {
        all.push(Credentials::recovery_key(read_key_file(r, "recovery key file")?));
    }
    // Clap hands the pairs over flattened, two files each (`num_args = 2`).
    for pair in a.also_key_and_passphrase.chunks(2) {
        if let [k, p] = pair {
            all.push(Credentials::master_key(read_key_file(k, "key file")?).with_passphrase(read_passphrase_file(p)?));
        }
    }
    let (db, file, creds, ()) = open_for_keys(&a.db, &a.keys, |_, _| Ok(()))?;
    all.insert(0, creds);
    let before = db.encryption_status();
    let pages = read_header(&file).at(&file)?.page_count;
    let bar = super::progress(Some(pages), "re-sealing pages");
    let mut last = RekeyProgress::default();
    let t0 = Instant::now();
    let result = db.rekey(&all, &mut |p: RekeyProgress| {
        bar.set_position(p.pages);
        last = p;
    });
    bar.finish_and_clear();
    match result {
        Ok(()) => {}
        Err(Error::InvalidConfig(m)) if m.contains("every key slot") => {
            let have: Vec<String> = before.slots.iter().map(slot_line).collect();
            return Err(CliError::Usage(format!(
                "rekey needs credentials that open every key slot, and those given do not ({}: {}); give the \
others with --also-passphrase-file, --also-key-file, --also-recovery-key-file or --also-key-and-passphrase; \
nothing was changed",
                file.display(),
                have.join(", ")
            )));
        }
        Err(e) => return Err(CliError::db(e, &file)),
    }
    let after = db.encryption_status();
    drop(db);
    say(&format!(
        "rekeyed {}: {} re-sealed in {} ({:.2} s); key epoch {} -> {}; {} re-wrapped around the new data key; \
the old data key is destroyed",
        file.display(),
        plural(last.pages, "page"),
        if last.batches == 1 { "1 batch".to_string() } else { format!("{} batches", last.batches) },
        t0.elapsed().as_secs_f64(),
        before.key_epoch,
        after.key_epoch,
        plural(after.slots.len() as u64, "key slot"),
    ))
}

/// `__dumpable`: holds the database's key and prints whether the process could be dumped.
pub fn dumpable(a: DumpableArgs) -> Result<(), CliError> {
    let (db, _file) = open_db(&a.db, &a.keys, Access::Read)?;
    let state = match super::is_dumpable() {
        Some(true) => "1",
        Some(false) => "0",
        None => "unknown",
    };
    let r = say(&format!("dumpable={state}"));
    drop(db);
    r
}
