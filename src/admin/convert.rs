//! The conversion commands of `foldvault`: encrypt, decrypt, import-sled.
//!
//! Layer: admin; public API (`migrate::copy_to`, `migrate::convert_in_place`,
//! `import::from_sled` with the `sled-import` feature).
//!
//! Invariants: a conversion never writes into an existing database (the copy is made beside
//! the target, synced and renamed into place: a failure leaves no target, or with `--in-place`
//! the source as it was); `decrypt` does nothing without its acknowledgement flag; every tree
//! of a copy is checked against its source, and its record count is printed (its digest,
//! keyed with a random key, is checked and never shown).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use super::cli::{DecryptArgs, EncryptArgs, ImportSledArgs};
use super::commands::{Access, Target, open_target, printable};
use super::keys::{KeyArgs, Prompt};
use super::maintain::{must_not_exist, plural, same_file};
use super::{At, CliError, read_header};
use crate::migrate::{CopyProgress, CopyReport};
use crate::{CipherId, Config, Credentials, Encryption, Error};

/// A progress spinner over records (hidden unless standard error is a terminal).
fn record_bar(what: &str) -> indicatif::ProgressBar {
    let bar = super::progress(None, what);
    if !bar.is_hidden()
        && let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} {pos} records ({elapsed})")
    {
        bar.set_style(style);
    }
    bar
}

/// The configuration of a new database, without its location (the copy functions set it).
fn new_db_config() -> Config {
    Config::new().use_env(false).flush_every_ms(None)
}

/// Prints each tree's record count, then `summary`. (No digest: the copy's are keyed and
/// checked inside the process, `CopyReport`.)
fn print_report(report: &CopyReport, summary: &str) -> Result<(), CliError> {
    let w = CliError::stdout;
    let mut o = std::io::BufWriter::new(std::io::stdout().lock());
    let width = report.trees.iter().map(|(n, _, _)| printable(n).chars().count()).max().unwrap_or(0);
    for (name, count, _) in &report.trees {
        let name = printable(name);
        writeln!(o, "  {name:<width$}  {count:>10} records").map_err(w)?;
    }
    let records: u64 = report.trees.iter().map(|(_, c, _)| c).sum();
    writeln!(
        o,
        "{summary}: {}, {}; every tree checked against its source (count and keyed BLAKE3 digest)",
        plural(report.trees.len() as u64, "tree"),
        plural(records, "record")
    )
    .map_err(w)?;
    o.flush().map_err(w)
}

/// The credentials for an encrypted SRC of `encrypt`: its own options, else the new key's.
fn src_credentials(a: &EncryptArgs, dst_creds: &Credentials) -> Result<Credentials, CliError> {
    let src_keys = KeyArgs {
        passphrase_file: a.src_passphrase_file.clone(),
        key_file: a.src_key_file.clone(),
        recovery_key_file: a.src_recovery_key_file.clone(),
    };
    if src_keys.any_given() { src_keys.credentials(Prompt::Never) } else { Ok(dst_creds.duplicate()) }
}

/// An error of a copy from `src` into the new file `dst`, named after the file it is about:
/// damage found reading is the source's (the copy's own check failing is a bug, not damage);
/// everything else (creating, writing, placing the copy) is the target's.
fn copy_error(e: Error, src: &Path, dst: &Path) -> CliError {
    let about = match &e {
        Error::Corrupt { .. } | Error::Truncated { .. } | Error::NotADatabase | Error::UnsupportedVersion { .. } => src,
        _ => dst,
    };
    CliError::db(e, about)
}

/// The slots of an encrypted header, named, when it has more than one (else none): what a
/// copy with one slot, for the key given, leaves behind.
fn other_slots(h: &crate::format::header::FileHeader) -> Vec<String> {
    let slots: Vec<String> = h
        .slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.as_ref().map(|s| format!("slot {i} ({})", s.kind.name())))
        .collect();
    if slots.len() > 1 { slots } else { Vec::new() }
}

/// Refuses an in-place `encrypt` that would drop `dropped` slots, unless told to.
fn refuse_dropping_slots(a: &EncryptArgs, file: &Path, dropped: &[String]) -> Result<(), CliError> {
    if a.in_place && !dropped.is_empty() && !a.drop_other_slots {
        return Err(CliError::Usage(format!(
            "{} has {} key slots ({}); its encrypted copy has one, for the key given, and the others would \
             stop opening it: use rekey to change the data key and keep every slot, or pass \
             --drop-other-slots",
            file.display(),
            dropped.len(),
            dropped.join(", ")
        )));
    }
    Ok(())
}

pub fn encrypt(a: EncryptArgs) -> Result<(), CliError> {
    let src = Target::resolve(&a.src);
    src.must_exist()?;
    let src_header = read_header(&src.file).at(&src.file)?.header;
    let src_encrypted = src_header.is_encrypted();
    // The copy gets one slot, for the new key: the source's other ways in (a recovery key,
    // other passphrases) are not carried over. In place they would be gone with the source.
    // Refused here from the header on disk, before any key is asked for; checked again below
    // against the authenticated header, which a slot change still only in the log updates.
    let mut dropped_slots = if src_encrypted { other_slots(&src_header) } else { Vec::new() };
    // With a log beside the file the pages may hold slots a change in the log removed: only the
    // check below, on the database's own header, can refuse then (review of the fix).
    if !crate::storage::wal::log_of(&src.file).exists() {
        refuse_dropping_slots(&a, &src.file, &dropped_slots)?;
    }
    let given_src_keys =
        a.src_passphrase_file.is_some() || a.src_key_file.is_some() || a.src_recovery_key_file.is_some();
    if !src_encrypted && given_src_keys {
        return Err(CliError::Usage(format!(
            "{} is plaintext: give no --src-passphrase-file, --src-key-file or --src-recovery-key-file",
            src.file.display()
        )));
    }
    let dst = match (&a.dst, a.in_place) {
        (Some(d), false) => {
            let dst = Target::resolve(d);
            if same_file(&src.file, &dst.file) || src.file == dst.file {
                return Err(CliError::Usage("SRC and DST are the same file (use --in-place)".into()));
            }
            must_not_exist(&dst, "DST")?;
            Some(dst)
        }
        (None, true) => None,
        _ => return Err(CliError::Usage("give DST or --in-place, not both".into())),
    };
    let dst_creds = a.keys.credentials(Prompt::Create)?;
    if dst_creds.is_empty() {
        return Err(CliError::Usage(
            "the encrypted database needs a key: use --passphrase-file, FOLDVAULT_PASSPHRASE or --key-file".into(),
        ));
    }
    let src_creds = if src_encrypted { src_credentials(&a, &dst_creds)? } else { Credentials::none() };
    if src_encrypted && a.in_place {
        // The slots as the database sees them: the header pages on disk may be older than a
        // slot added or removed, whose header is still only in the write-ahead log (CLI
        // review, medium: a recovery key added just before a crash was dropped unsaid).
        let db = open_target(&src, true, src_creds.duplicate(), Access::Read)?;
        dropped_slots = other_slots(&db.live_header());
        drop(db);
        refuse_dropping_slots(&a, &src.file, &dropped_slots)?;
    }
    let cipher: CipherId = a.new.cipher();
    let dst_cfg =
        new_db_config().encryption(Encryption::Required).cipher(cipher).kdf(a.new.kdf()?).credentials(dst_creds);
    let bar = record_bar("encrypting");
    let mut cb = |p: CopyProgress| bar.set_position(p.records);
    let t0 = Instant::now();
    let (report, target) = match dst {
        Some(dst) => {
            let db = open_target(&src, src_encrypted, src_creds, Access::Read)?;
            let r = crate::migrate::copy_to(&db, &dst.file, &dst_cfg, &mut cb);
            drop(db);
            bar.finish_and_clear();
            (r.map_err(|e| copy_error(e, &src.file, &dst.file))?, dst.file)
        }
        None => {
            let src_cfg = src.config().credentials(src_creds);
            let r = crate::migrate::convert_in_place(&src.file, &src_cfg, &dst_cfg, &mut cb);
            bar.finish_and_clear();
            (r.at(&src.file)?, src.file.clone())
        }
    };
    if !dropped_slots.is_empty() {
        note!(
            "note: the copy has one key slot, for the key given; {} had {}",
            src.file.display(),
            dropped_slots.join(", ")
        );
    }
    note_left_behind(&report, &src.file);
    if !a.in_place && !src_encrypted {
        note!(
            "note: {} still holds every record in clear, and removing it does not erase its blocks; \
`encrypt --in-place` overwrites the file it replaces",
            src.file.display()
        );
    }
    let how = if a.in_place { "in place" } else { "into" };
    let verb = if src_encrypted { "re-encrypted" } else { "encrypted" };
    print_report(
        &report,
        &format!(
            "{verb} {} {how}{} ({}, new data key) in {:.2} s",
            src.file.display(),
            if a.in_place { String::new() } else { format!(" {}", target.display()) },
            cipher.name(),
            t0.elapsed().as_secs_f64()
        ),
    )
}

/// What an in-place conversion could not overwrite of the file it replaced (`CopyReport::left_behind`),
/// said on stderr: the library says it in an audit event, which this binary does not print.
fn note_left_behind(report: &CopyReport, file: &std::path::Path) {
    use crate::migrate::LeftBehind;
    for left in &report.left_behind {
        let f = file.display();
        match left {
            LeftBehind::DirectoryNotSynced => note!(
                "note: the old data of {f} was not overwritten: the directory could not be synced, so the old file was \
kept whole (a power loss could give the name back to it)"
            ),
            LeftBehind::OtherName => {
                note!(
                    "note: the old data of {f} was not overwritten: it has another name (a hard link), whose data it is"
                )
            }
            LeftBehind::OverwriteFailed => note!("note: the old data of {f} could not be overwritten"),
            LeftBehind::LogNotRemoved => {
                note!("note: the emptied write-ahead log of the old {f} could not be removed from beside it; remove it")
            }
        }
    }
}

pub fn decrypt(a: DecryptArgs) -> Result<(), CliError> {
    if !a.i_understand_this_writes_plaintext {
        return Err(CliError::Usage(
            "decrypt writes every record in clear to DST; add --i-understand-this-writes-plaintext to confirm".into(),
        ));
    }
    let src = Target::resolve(&a.src);
    src.must_exist()?;
    if !read_header(&src.file).at(&src.file)?.header.is_encrypted() {
        return Err(CliError::Usage(format!("{} is not encrypted: there is nothing to decrypt", src.file.display())));
    }
    let dst = Target::resolve(&a.dst);
    if same_file(&src.file, &dst.file) || src.file == dst.file {
        return Err(CliError::Usage("SRC and DST are the same file".into()));
    }
    must_not_exist(&dst, "DST")?;
    let creds = a.keys.credentials(Prompt::Unlock)?;
    let db = open_target(&src, true, creds, Access::Read)?;
    let bar = record_bar("decrypting");
    let mut cb = |p: CopyProgress| bar.set_position(p.records);
    let t0 = Instant::now();
    let r = crate::migrate::copy_to(&db, &dst.file, &new_db_config().plaintext(), &mut cb);
    bar.finish_and_clear();
    drop(db);
    let report = r.map_err(|e| copy_error(e, &src.file, &dst.file))?;
    print_report(
        &report,
        &format!(
            "decrypted {} into {} (PLAINTEXT) in {:.2} s",
            src.file.display(),
            dst.file.display(),
            t0.elapsed().as_secs_f64()
        ),
    )?;
    warn_if_shared(&dst.file);
    Ok(())
}

/// Warns when a plaintext copy can be read by other users.
fn warn_if_shared(file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(file) {
        let mode = m.permissions().mode();
        if mode & 0o077 != 0 {
            note!(
                "foldvault: warning: {} holds every record in clear and other users can read it (mode {:04o}); \
chmod 600 it unless that is intended",
                file.display(),
                mode & 0o7777
            );
        }
    }
}

pub fn import_sled(a: ImportSledArgs) -> Result<(), CliError> {
    #[cfg(not(feature = "sled-import"))]
    {
        let _ = a;
        Err(CliError::Usage(
            "import-sled: this build has no sled support; rebuild foldvault with the cargo feature `sled-import` \
(cargo build --features sled-import)"
                .into(),
        ))
    }
    #[cfg(feature = "sled-import")]
    {
        import_sled_with_feature(a)
    }
}

#[cfg(feature = "sled-import")]
fn import_sled_with_feature(a: ImportSledArgs) -> Result<(), CliError> {
    if !a.sled.is_dir() {
        return Err(CliError::Usage(format!("{} is not a sled database directory", a.sled.display())));
    }
    let dst = Target::resolve(&a.dst);
    if dst.is_dir && same_file(&a.sled, &dst.arg) {
        return Err(CliError::Usage("DST is the sled directory itself; give another path".into()));
    }
    must_not_exist(&dst, "DST")?;
    let mut cfg = new_db_config();
    let cipher: CipherId = a.new.cipher();
    if a.plaintext {
        if a.keys.any_given() {
            return Err(CliError::Usage(
                "--plaintext takes no --passphrase-file, --key-file or --recovery-key-file".into(),
            ));
        }
        cfg = cfg.plaintext();
    } else {
        let creds = a.keys.credentials(Prompt::Create)?;
        if creds.is_empty() {
            return Err(CliError::Usage(
                "the new database needs a key: use --passphrase-file, FOLDVAULT_PASSPHRASE or --key-file (or --plaintext)"
                    .into(),
            ));
        }
        cfg = cfg.encryption(Encryption::Required).cipher(cipher).kdf(a.new.kdf()?).credentials(creds);
    }
    let bar = record_bar("importing");
    let mut cb = |p: CopyProgress| bar.set_position(p.records);
    let t0 = Instant::now();
    let r = crate::import::from_sled(&a.sled, &dst.file, &cfg, &mut cb);
    bar.finish_and_clear();
    let report = match r {
        Ok(r) => r,
        // sled's own refusals, and its lock still held by another process (the copy's
        // temporary file is this process's alone), are about the sled directory.
        Err(e @ (crate::Error::Unsupported(_) | crate::Error::Locked)) => return Err(CliError::db(e, &a.sled)),
        Err(e) => return Err(CliError::db(e, &dst.file)),
    };
    let mode = if a.plaintext { "plaintext".to_string() } else { format!("encrypted, {}", cipher.name()) };
    print_report(
        &report,
        &format!(
            "imported sled database {} into {} ({mode}) in {:.2} s",
            a.sled.display(),
            dst.file.display(),
            t0.elapsed().as_secs_f64()
        ),
    )
}
