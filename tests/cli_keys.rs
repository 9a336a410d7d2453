//! The `foldvault` key commands run as an operator would: passwd, slots, rekey, encrypt and
//! decrypt, import-sled, the config file, and the process hygiene of a command holding a key.

#[path = "common/cli_env.rs"]
mod cli_env;

use cli_env::*;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn passwd_changes_only_the_header() {
    let e = Env::new();
    let (db, _) = multi_leaf_db(&e, "db");
    let pass = e.pass();
    let new = e.new_pass();
    let before = std::fs::read(&db).unwrap();
    let mut args = vec!["passwd", db.as_str(), "--passphrase-file", &pass, "--new-passphrase-file", &new];
    args.extend(FAST_KDF);
    let t = e.fv(&args).ok().text();
    assert_eq!(t, "passphrase changed (slot 0); no data page was rewritten\n");
    let after = std::fs::read(&db).unwrap();
    assert_eq!(before.len(), after.len());
    assert!(before[..2 * 4096] != after[..2 * 4096], "the header did not change");
    assert!(before[2 * 4096..] == after[2 * 4096..], "a page after page 1 changed");
    // The old passphrase no longer opens it; the new one does.
    e.fv(&["get", &db, "other", "a", "--passphrase-file", &pass]).code(3);
    assert_eq!(e.fv(&["get", &db, "other", "a", "--passphrase-file", &new]).ok().stdout, b"b");
    // Without --kdf-*, the slot keeps its cost.
    e.fv(&["passwd", &db, "--passphrase-file", &new, "--new-passphrase-file", &pass]).ok();
    assert!(e.fv(&["slots", &db]).ok().text().contains("slot 0: passphrase (argon2id: 1024 KiB, 1 passes"));
    // A wrong current passphrase: exit 3, nothing changes.
    let header = std::fs::read(&db).unwrap();
    e.fv(&["passwd", &db, "--passphrase-file", &new, "--new-passphrase-file", &new]).code(3);
    assert!(std::fs::read(&db).unwrap() == header);
    // No new passphrase and no terminal to ask on: exit 2.
    let o = e.fv(&["passwd", &db, "--passphrase-file", &pass]).code(2);
    assert!(o.err().contains("--new-passphrase-file"), "{}", o.err());
    // A key file opens no passphrase slot: nothing to change.
    let plain = e.p("plain");
    e.fv(&["init", &plain, "--plaintext"]).ok();
    e.fv(&["passwd", &plain, "--new-passphrase-file", &new]).code(2);
}

#[test]
fn slots_list_add_remove() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    let key = e.p("key");
    e.fv(&["put", &db, "t", "k", "v", "--passphrase-file", &pass]).ok();
    // Listing needs no key.
    let t = e.fv(&["slots", &db]).ok().text();
    assert_eq!(t, "slot 0: passphrase (argon2id: 1024 KiB, 1 passes, 1 lanes)\n");
    // Adding needs the key; the key options may follow the action.
    e.fv(&["slots", &db, "add-key-file", &key]).code(3);
    let t = e.fv(&["slots", &db, "add-key-file", &key, "--passphrase-file", &pass]).ok().text();
    assert_eq!(t, "added slot 1: master-key\n");
    assert_eq!(e.fv(&["get", &db, "t", "k", "--key-file", &key]).ok().stdout, b"v");
    let new = e.new_pass();
    let mut args = vec!["slots", db.as_str(), "--key-file", &key, "add-passphrase", "--new-passphrase-file", &new];
    args.extend(FAST_KDF);
    assert!(e.fv(&args).ok().text().starts_with("added slot 2: passphrase (argon2id: 1024 KiB"));
    let t = e.fv(&["slots", &db, "--passphrase-file", &new]).ok().text();
    assert_eq!(slot_numbers(&t), [0, 1, 2], "{t}");
    assert!(t.contains("slot 1: master-key\n"), "{t}");

    // Remove: no such slot, then slots 0 and 2; the last one is refused.
    let o = e.fv(&["slots", &db, "remove", "7", "--key-file", &key]).code(2);
    assert!(o.err().contains("no key slot 7"), "{}", o.err());
    // The only slot the key given opens goes only with --force (slot 2's passphrase also opens
    // the database, but it was not given).
    let o = e.fv(&["slots", &db, "remove", "1", "--key-file", &key]).code(2);
    assert!(o.err().contains("only slot") && o.err().contains("--force"), "{}", o.err());
    let t = e.fv(&["slots", &db, "remove", "0", "--key-file", &key]).ok().text();
    assert!(t.starts_with("removed slot 0: passphrase") && t.contains("2 slots left"), "{t}");
    e.fv(&["get", &db, "t", "k", "--passphrase-file", &pass]).code(3);
    e.fv(&["slots", &db, "remove", "2", "--key-file", &key]).ok();
    let o = e.fv(&["slots", &db, "remove", "1", "--key-file", &key]).code(2);
    assert!(o.err().contains("slot 1 is the last key slot"), "{}", o.err());
    assert_eq!(e.fv(&["slots", &db]).ok().text(), "slot 1: master-key\n");
    assert_eq!(e.fv(&["get", &db, "t", "k", "--key-file", &key]).ok().stdout, b"v");

    // A plaintext database has no slots.
    let plain = e.p("plain");
    e.fv(&["init", &plain, "--plaintext"]).ok();
    let o = e.fv(&["slots", &plain]).code(2);
    assert!(o.err().contains("plaintext"), "{}", o.err());
}

/// `passwd` of a passphrase that two slots hold changes both and names both: the old one then
/// opens nothing (it went on opening the database through the second slot).
#[test]
fn passwd_changes_every_slot_the_old_passphrase_opens() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    e.fv(&["put", &db, "t", "k", "v", "--passphrase-file", &pass]).ok();
    let mut args =
        vec!["slots", db.as_str(), "--passphrase-file", &pass, "add-passphrase", "--new-passphrase-file", &pass];
    args.extend(FAST_KDF);
    e.fv(&args).ok();
    let new = e.new_pass();
    let t = e.fv(&["passwd", &db, "--passphrase-file", &pass, "--new-passphrase-file", &new]).ok().text();
    assert_eq!(t, "passphrase changed (slots 0, 1); no data page was rewritten\n");
    e.fv(&["get", &db, "t", "k", "--passphrase-file", &pass]).code(3);
    assert_eq!(e.fv(&["get", &db, "t", "k", "--passphrase-file", &new]).ok().stdout, b"v");
}

/// The guard against removing the only slot the key given opens reads the open database's
/// header, not the file's header pages: after a session whose slot removal is still only in
/// the write-ahead log, those pages list a slot the key opened that is gone.
#[test]
fn slot_removal_is_judged_by_the_live_header() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let (pass, key) = (e.pass(), e.p("key"));
    let mut args =
        vec!["slots", db.as_str(), "--passphrase-file", &pass, "add-passphrase", "--new-passphrase-file", &pass];
    args.extend(FAST_KDF);
    assert!(e.fv(&args).ok().text().starts_with("added slot 1: passphrase"));
    e.fv(&["slots", &db, "add-key-file", &key, "--passphrase-file", &pass]).ok();
    // Slot 1 (the passphrase's second slot) goes in a session that crashes with the removal
    // only in its log (the files copied as they are then).
    let d = foldvault::Config::new().file(&db).passphrase(PASS).use_env(false).open().unwrap();
    d.remove_slot(1).unwrap();
    let crashed = e.p("crashed");
    std::fs::copy(&db, &crashed).unwrap();
    std::fs::copy(format!("{db}.fvwal"), format!("{crashed}.fvwal")).unwrap();
    drop(d);
    let db = crashed;
    let o = e.fv(&["slots", &db, "remove", "0", "--passphrase-file", &pass]).code(2);
    assert!(o.err().contains("only slot") && o.err().contains("--force"), "{}", o.err());
    e.fv(&["get", &db, "t", "k", "--passphrase-file", &pass]).code(1);
    // passwd names the slot it changed by the live header too.
    let new = e.new_pass();
    let t = e.fv(&["passwd", &db, "--passphrase-file", &pass, "--new-passphrase-file", &new]).ok().text();
    assert!(t.starts_with("passphrase changed (slot 0)"), "{t}");
}

/// A recovery key that cannot be delivered (standard output fails: a full device here, a
/// closed pipe alike) is an error, and its slot is taken away again.
#[test]
fn an_undelivered_recovery_key_leaves_no_slot() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_foldvault"))
        .args(["slots", &db, "add-recovery", "--passphrase-file", &pass])
        .env_remove("FOLDVAULT_PASSPHRASE")
        .env_remove("FOLDVAULT_KEY_FILE")
        .stdin(Stdio::null())
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("recovery key not delivered") && err.contains("removed again"), "{err}");
    assert!(!e.fv(&["slots", &db, "--passphrase-file", &pass]).ok().text().contains("recovery-key"));
}

/// A recovery key sent to a file other users can read (`> rk` under umask 022) is not left
/// there readable: the file is made private first, and the key in it opens the database.
#[test]
fn a_recovery_key_redirected_to_a_shared_file_makes_it_private() {
    use std::os::unix::fs::PermissionsExt;
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    e.fv(&["put", &db, "t", "k", "v", "--passphrase-file", &pass]).ok();
    // FOLDVAULT_ALLOW_SHARED_KEY_FILES=1 lets the tool read shared key files; a new key's file
    // is made private all the same (it was left readable).
    for allow in ["", "1"] {
        let rk = e.p(&format!("rk{allow}"));
        let shared = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&rk).unwrap();
        shared.set_permissions(std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_foldvault"));
        cmd.args(["slots", &db, "add-recovery", "--passphrase-file", &pass])
            .env_remove("FOLDVAULT_PASSPHRASE")
            .env_remove("FOLDVAULT_KEY_FILE")
            .env_remove("FOLDVAULT_ALLOW_SHARED_KEY_FILES");
        if !allow.is_empty() {
            cmd.env("FOLDVAULT_ALLOW_SHARED_KEY_FILES", allow);
        }
        let out = cmd.stdin(Stdio::null()).stdout(shared).stderr(Stdio::piped()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert!(err.contains("made private"), "{allow:?}: {err}");
        assert_eq!(std::fs::metadata(&rk).unwrap().permissions().mode() & 0o777, 0o600, "{allow:?}");
        assert_eq!(std::fs::read(&rk).unwrap().len(), 65);
        assert_eq!(e.fv(&["get", &db, "t", "k", "--recovery-key-file", &rk]).ok().stdout, b"v");
    }
}

#[test]
fn recovery_key_is_printed_once_and_opens_the_database() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    e.fv(&["put", &db, "t", "k", "v", "--passphrase-file", &pass]).ok();
    let o = e.fv(&["slots", &db, "add-recovery", "--passphrase-file", &pass]).ok();
    let recovery = o.text();
    assert_eq!(recovery.len(), 65, "{recovery}");
    assert!(recovery.trim_end().bytes().all(|b| b.is_ascii_hexdigit()) && recovery.ends_with('\n'));
    let hex = recovery.trim_end();
    assert!(o.err().contains("shown this once") && o.err().contains("offline"), "{}", o.err());
    assert!(!o.err().contains(hex), "the recovery key is on standard error");
    assert!(e.fv(&["slots", &db]).ok().text().contains("slot 1: recovery-key\n"));
    // The recovery key opens it, as a recovery key (not as a master key).
    let rk = e.p("recovery.key");
    secret(&rk, &recovery);
    assert_eq!(e.fv(&["get", &db, "t", "k", "--recovery-key-file", &rk]).ok().stdout, b"v");
    e.fv(&["get", &db, "t", "k", "--key-file", &rk]).code(3);
    // It is never shown again.
    for args in [&["status", &db, "--recovery-key-file", &rk][..], &["slots", &db, "--recovery-key-file", &rk]] {
        let o = e.fv(args).ok();
        assert!(!o.text().contains(hex) && !o.err().contains(hex), "{args:?}");
    }
}

/// A combined master-key + passphrase slot (`init` given both) is served by
/// `--also-key-and-passphrase`: the two parts given apart serve it not.
#[test]
fn rekey_takes_a_combined_slots_key_and_passphrase_together() {
    let e = Env::new();
    let (db, pass, key, other) = (e.p("db"), e.pass(), e.p("key"), e.p("other"));
    secret(&other, "a second passphrase\n");
    let mut args = vec!["init", &db, "--key-file", &key, "--passphrase-file", &pass];
    args.extend(FAST_KDF);
    e.fv(&args).ok();
    e.fv(&["put", &db, "t", "k", "v", "--key-file", &key, "--passphrase-file", &pass]).ok();
    let mut args =
        vec!["slots", &db, "--key-file", &key, "--passphrase-file", &pass, "add-passphrase", "--new-passphrase-file"];
    args.push(&other);
    args.extend(FAST_KDF);
    e.fv(&args).ok();
    let file0 = std::fs::read(&db).unwrap();
    let o = e.fv(&["rekey", &db, "--passphrase-file", &other]).code(2);
    assert!(o.err().contains("--also-key-and-passphrase"), "{}", o.err());
    let apart = ["rekey", &db, "--passphrase-file", &other, "--also-key-file", &key, "--also-passphrase-file", &pass];
    e.fv(&apart).code(2);
    assert!(std::fs::read(&db).unwrap() == file0, "a refused rekey changed the file");
    let t = e.fv(&["rekey", &db, "--passphrase-file", &other, "--also-key-and-passphrase", &key, &pass]).ok().text();
    assert!(t.starts_with("rekeyed ") && t.contains("2 key slots"), "{t}");
    assert_eq!(e.fv(&["get", &db, "t", "k", "--passphrase-file", &other]).ok().stdout, b"v");
    assert_eq!(e.fv(&["get", &db, "t", "k", "--key-file", &key, "--passphrase-file", &pass]).ok().stdout, b"v");
    // One file alone is a usage error, before any key is read.
    let o = e.fv(&["rekey", &db, "--passphrase-file", &other, "--also-key-and-passphrase", &key]).code(2);
    assert!(o.err().contains("2 values required"), "{}", o.err());
}

#[test]
fn rekey_reseals_every_page_and_needs_every_slot() {
    let e = Env::new();
    let (db, _) = multi_leaf_db(&e, "db");
    let pass = e.pass();
    let key = e.p("key");
    e.fv(&["slots", &db, "add-key-file", &key, "--passphrase-file", &pass]).ok();
    let dump = e.fv(&["dump", &db, "--passphrase-file", &pass]).ok().stdout;
    let epoch0 = key_epoch(&e.fv(&["status", &db, "--passphrase-file", &pass]).ok().text());
    // Credentials for slot 0 only: refused before anything changes.
    let file0 = std::fs::read(&db).unwrap();
    let o = e.fv(&["rekey", &db, "--passphrase-file", &pass]).code(2);
    assert!(o.err().contains("every key slot") && o.err().contains("--also-key-file"), "{}", o.err());
    assert!(std::fs::read(&db).unwrap() == file0);

    let o = e.fv(&["rekey", &db, "--passphrase-file", &pass, "--also-key-file", &key]).ok();
    let t = o.text();
    assert!(t.starts_with("rekeyed ") && t.contains(" pages re-sealed in ") && t.contains("2 key slots"), "{t}");
    assert!(o.stderr.is_empty(), "{}", o.err());
    let pages: u64 = t.split(": ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).unwrap();
    assert!(pages > 10, "{t}");
    // The data reads as before, through either slot; the key epoch went up.
    assert_eq!(e.fv(&["dump", &db, "--passphrase-file", &pass]).ok().stdout, dump);
    assert_eq!(e.fv(&["dump", &db, "--key-file", &key]).ok().stdout, dump);
    let s = e.fv(&["status", &db, "--passphrase-file", &pass]).ok().text();
    assert!(key_epoch(&s) > epoch0, "{s}");
    assert!(!s.contains("rekey:"), "{s}");
    e.fv(&["check", &db, "--key-file", &key]).ok();
    // pagedump: pages freed before the rotation, still sealed under the destroyed key, are shown
    // as free pages, not counted as damage; a page in use that fails to open still is.
    let t = e.pd(&[&db, "--all", "--key-file", &key]).ok().text();
    assert!(t.contains("free page (not in use), does not open") && !t.contains("FAILS TO OPEN"), "{t}");
    let j = e.pd(&[&db, "--all", "--json", "--key-file", &key]).ok().text();
    assert!(j.contains("\"kind\": \"unused\""), "{j}");
    let (_, catalog) = newest_catalog(&e, &db);
    flip_byte(&db, catalog * 4096 + 100);
    let t = e.pd(&[&db, "--all", "--key-file", &key]).code(4).text();
    assert!(t.contains(&format!("page {catalog}: FAILS TO OPEN")), "{t}");
}

/// Regression: `encrypt --in-place` of an encrypted database with a recovery key gave the
/// file one slot, for the key given, and said nothing: the recovery key stopped opening it.
#[test]
fn encrypt_in_place_does_not_drop_key_slots_silently() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    e.fv(&["put", &db, "t", "k", "v", "--passphrase-file", &pass]).ok();
    let rk = e.p("recovery.key");
    secret(&rk, e.fv(&["slots", &db, "add-recovery", "--passphrase-file", &pass]).ok().text());
    let before = std::fs::read(&db).unwrap();
    let mut args = vec!["encrypt", db.as_str(), "--in-place", "--passphrase-file", &pass];
    args.extend(FAST_KDF);
    let o = e.fv(&args).code(2);
    assert!(o.err().contains("slot 1 (recovery-key)") && o.err().contains("rekey"), "{}", o.err());
    assert_eq!(std::fs::read(&db).unwrap(), before, "the refused conversion changed the file");
    // A copy keeps the source, and says what it did not carry over.
    let copy = e.p("copy");
    let mut copy_args = vec!["encrypt", db.as_str(), copy.as_str(), "--passphrase-file", &pass];
    copy_args.extend(FAST_KDF);
    let o = e.fv(&copy_args).ok();
    assert!(o.err().contains("one key slot") && o.err().contains("slot 1 (recovery-key)"), "{}", o.err());
    e.fv(&["get", &copy, "t", "k", "--recovery-key-file", &rk]).code(3);
    // Asked for: converted, and the recovery key no longer opens it.
    args.push("--drop-other-slots");
    e.fv(&args).ok();
    assert_eq!(e.fv(&["get", &db, "t", "k", "--passphrase-file", &pass]).ok().stdout, b"v");
    e.fv(&["get", &db, "t", "k", "--recovery-key-file", &rk]).code(3);
}

/// A slot added just before a crash is in the header the write-ahead log holds, not yet in
/// the file's header pages: `encrypt --in-place` counts the slots the database has, and
/// refuses (CLI review, medium: it read the pages, saw one slot, and dropped the recovery key
/// unsaid). This build writes header pages through to the file, past the log, so only a log an
/// earlier build left holds a header: the log is made here as such a build's crash left it,
/// one group holding the new header's two copies.
#[test]
fn encrypt_in_place_counts_a_slot_still_only_in_the_log() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    let phrase = std::fs::read_to_string(&pass).unwrap();
    let before = std::fs::read(&db).unwrap();
    let live = foldvault::Config::new().file(&db).passphrase(phrase.trim_end()).use_env(false).open().unwrap();
    live.add_recovery_key().unwrap();
    drop(live);
    let new_header = std::fs::read(&db).unwrap()[..4096].to_vec();
    // The crash image: the file as it was, and a log holding the new header.
    let crashed = e.p("crashed");
    std::fs::write(&crashed, &before).unwrap();
    let log = log_of_one_group(&before, &[(0, &new_header), (1, &new_header)]);
    std::fs::write(foldvault::storage::wal::sidecar_path(Path::new(&crashed)), log).unwrap();
    let listed = e.fv(&["slots", &crashed]).ok().text();
    assert!(!listed.contains("recovery"), "the header pages already hold the slot: {listed}");
    // `status` with the key lists the slots the database has (it listed the header pages').
    let status = e.fv(&["status", &crashed, "--passphrase-file", &pass]).ok().text();
    assert!(status.contains("recovery-key"), "status lists the file's stale slots: {status}");
    let mut args = vec!["encrypt", crashed.as_str(), "--in-place", "--passphrase-file", &pass];
    args.extend(FAST_KDF);
    let o = e.fv(&args).code(2);
    assert!(o.err().contains("recovery-key") && o.err().contains("--drop-other-slots"), "{}", o.err());
}

/// A write-ahead log (SPEC §15) beside a database file whose bytes are `file`, holding one
/// group that writes `pages` (page number, bytes), as a crash right after that group's sync
/// leaves it.
fn log_of_one_group(file: &[u8], pages: &[(u64, &[u8])]) -> Vec<u8> {
    const P: usize = 4096;
    let salt = 0x5eed_u64.to_le_bytes();
    let mut log = vec![0u8; P * (2 + pages.len())];
    log[..8].copy_from_slice(b"FVWAL\0\0\x01");
    log[8..16].copy_from_slice(&salt);
    log[16..48].copy_from_slice(&file[..32]);
    let crc = crc32fast::hash(&log[..48]);
    log[48..52].copy_from_slice(&crc.to_le_bytes());
    let index = &mut log[P..2 * P];
    index[..8].copy_from_slice(b"FVWALGRP");
    index[8..16].copy_from_slice(&salt);
    index[24..28].copy_from_slice(&(pages.len() as u32).to_le_bytes());
    index[32..40].copy_from_slice(&(file.len() as u64).to_le_bytes());
    for (i, (page, _)) in pages.iter().enumerate() {
        index[48 + 8 * i..56 + 8 * i].copy_from_slice(&page.to_le_bytes());
    }
    for (i, (_, bytes)) in pages.iter().enumerate() {
        log[(2 + i) * P..(3 + i) * P].copy_from_slice(bytes);
    }
    let crc = crc32fast::hash(&log[P..]);
    log[P + 28..P + 32].copy_from_slice(&crc.to_le_bytes());
    log
}

#[test]
fn encrypt_and_decrypt_copies() {
    const MARKER: &str = "MARKER-Qx7-plaintext-record";
    let e = Env::new();
    let pass = e.pass();
    let plain = e.p("plain");
    e.fv(&["init", &plain, "--plaintext"]).ok();
    let lines: String = (0..300).map(|i| format!("{{\"key\": \"k{i:04}\", \"value\": \"{MARKER} {i}\"}}\n")).collect();
    e.fv_in(&["load", &plain, "t"], lines.as_bytes()).ok();
    e.fv(&["put", &plain, "other", "a", "b"]).ok();
    assert!(contains(&std::fs::read(&plain).unwrap(), MARKER.as_bytes()));
    let dump = e.fv(&["dump", &plain]).ok().stdout;

    // encrypt: no marker in the copy's bytes; per-tree counts at the end, and no digest of a
    // tree's plaintext (an unkeyed one would confirm a guess of a small tree's records).
    let enc = e.p("enc");
    let mut args = vec!["encrypt", plain.as_str(), &enc, "--passphrase-file", &pass];
    args.extend(FAST_KDF);
    let t = e.fv(&args).ok().text();
    let t_line = t.lines().find(|l| l.trim_start().starts_with("t ")).unwrap_or_else(|| panic!("{t}"));
    assert_eq!(t_line.split_whitespace().collect::<Vec<_>>(), ["t", "300", "records"], "{t}");
    let hex_run = |l: &str| l.split_whitespace().any(|w| w.len() >= 16 && w.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(!t.lines().any(hex_run), "{t}");
    let counted = |t: &str| t.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["t", "300", "records"]);
    assert!(t.lines().last().unwrap().starts_with("encrypted ") && t.contains("2 trees, 301 records"), "{t}");
    assert!(!contains(&std::fs::read(&enc).unwrap(), MARKER.as_bytes()));
    assert!(e.fv(&["status", &enc]).ok().text().contains("encryption:      encrypted"));
    assert_eq!(e.fv(&["dump", &enc, "--passphrase-file", &pass]).ok().stdout, dump);
    // An existing DST is not replaced.
    e.fv(&args).code(2);

    // decrypt: refused without the acknowledgement, and nothing written.
    let dec = e.p("dec");
    let o = e.fv(&["decrypt", &enc, &dec, "--passphrase-file", &pass]).code(2);
    assert!(o.err().contains("--i-understand-this-writes-plaintext"), "{}", o.err());
    assert!(!Path::new(&dec).exists());
    e.fv(&["decrypt", &enc, &dec, "--i-understand-this-writes-plaintext"]).code(3);
    assert!(!Path::new(&dec).exists());
    let t =
        e.fv(&["decrypt", &enc, &dec, "--passphrase-file", &pass, "--i-understand-this-writes-plaintext"]).ok().text();
    assert!(counted(&t) && !t.lines().any(hex_run) && t.contains("PLAINTEXT"), "{t}");
    assert!(contains(&std::fs::read(&dec).unwrap(), MARKER.as_bytes()));
    assert_eq!(e.fv(&["dump", &dec]).ok().stdout, dump);

    // encrypt --in-place converts the file itself.
    // Through a symbolic link, the file it names is converted; a descriptor kept open on the
    // old file shows that its bytes were overwritten, not only unlinked. (A second name, a
    // hard link, would keep them: that name's file is not overwritten.)
    let inplace = e.p("inplace");
    std::fs::copy(&plain, &inplace).unwrap();
    let link = e.p("inplace-link");
    std::os::unix::fs::symlink(&inplace, &link).unwrap();
    let old_file = std::fs::File::open(&inplace).unwrap();
    let old_bytes = |f: &std::fs::File| {
        let mut b = vec![0u8; f.metadata().unwrap().len() as usize];
        f.read_exact_at(&mut b, 0).unwrap();
        b
    };
    assert!(contains(&old_bytes(&old_file), MARKER.as_bytes()));
    let key = e.p("key");
    let t = e.fv(&["encrypt", &link, "--in-place", "--key-file", &key]).ok().text();
    assert!(counted(&t) && !t.lines().any(hex_run) && t.contains("in place"), "{t}");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(!contains(&std::fs::read(&inplace).unwrap(), MARKER.as_bytes()));
    assert!(old_bytes(&old_file).iter().all(|&b| b == 0), "the old file's bytes survive");
    assert_eq!(e.fv(&["dump", &inplace, "--key-file", &key]).ok().stdout, dump);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&inplace).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&dec).unwrap().permissions().mode() & 0o777, 0o600);
    // No key for the new database: refused.
    e.fv(&["encrypt", &plain, &e.p("nokey")]).code(2);
    assert!(!Path::new(&e.p("nokey")).exists());
}

#[test]
fn import_sled_needs_its_feature() {
    let e = Env::new();
    let o = e.fv(&["import-sled", &e.p("sled-dir"), &e.p("dst"), "--passphrase-file", &e.pass()]);
    if cfg!(feature = "sled-import") {
        assert_ne!(o.code, 0);
    } else {
        o.code(2);
        let o = e.fv(&["import-sled", &e.p("sled-dir"), &e.p("dst")]).code(2);
        assert!(o.err().contains("sled-import"), "{}", o.err());
    }
    assert!(!Path::new(&e.p("dst")).exists());
}

#[cfg(feature = "sled-import")]
#[test]
fn import_sled_copies_every_tree() {
    let e = Env::new();
    let dir = e.p("sled-dir");
    {
        let s = sled::open(&dir).unwrap();
        for i in 0..50u32 {
            s.insert(format!("k{i:03}"), format!("value {i}").as_bytes()).unwrap();
        }
        s.open_tree("metadata").unwrap().insert("node_id", "abc").unwrap();
        for _ in 0..3 {
            s.generate_id().unwrap();
        }
        s.flush().unwrap();
    }
    // sled lets go of its lock on a thread of its own, a moment after the drop.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let reopened = loop {
        match sled::open(&dir) {
            Err(_) if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(20)),
            r => break r.unwrap(),
        }
    };
    let sled_id = reopened.generate_id().unwrap();
    drop(reopened);
    let dst = e.p("dst");
    let pass = e.pass();
    let mut args = vec!["import-sled", dir.as_str(), &dst, "--passphrase-file", &pass];
    args.extend(FAST_KDF);
    let t = e.fv(&args).ok().text();
    let counted =
        |name: &str, n: &str| t.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == [name, n, "records"]);
    assert!(counted("__sled__default", "50") && counted("metadata", "1"), "{t}");
    assert!(t.lines().last().unwrap().starts_with("imported sled database "), "{t}");
    assert_eq!(e.fv(&["get", &dst, "metadata", "node_id", "--passphrase-file", &pass]).ok().stdout, b"abc");
    // The target must be new.
    e.fv(&args).code(2);
    // Nothing left beside the target (no temporary file, no log).
    let names: Vec<String> = std::fs::read_dir(e.dir.path())
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains(".copy-") || n.ends_with(".fvwal")), "{names:?}");
    // sled's id counter carries over: ids go on above every id sled handed out.
    let db = foldvault::Config::new().file(&dst).passphrase(PASS).use_env(false).open().unwrap();
    assert!(db.generate_id().unwrap() > sled_id);
    drop(db);
    // A directory with no sled database is refused, and sled writes nothing into it.
    let empty = e.p("not-sled");
    std::fs::create_dir(&empty).unwrap();
    let dst2 = e.p("dst2");
    let mut args = vec!["import-sled", empty.as_str(), &dst2, "--passphrase-file", &pass];
    args.extend(FAST_KDF);
    let o = e.fv(&args);
    assert_ne!(o.code, 0);
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

#[cfg(target_os = "linux")]
#[test]
fn the_process_is_not_dumpable_while_it_holds_a_key() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let o = e.fv(&["__dumpable", &db, "--passphrase-file", &e.pass()]).ok();
    assert_eq!(o.text(), "dumpable=0\n");
    assert!(o.stderr.is_empty(), "{}", o.err());
    // Hidden from the help.
    assert!(!e.fv(&["--help"]).ok().text().contains("__dumpable"));
}

#[test]
fn shared_key_files_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let e = Env::new();
    let db = e.init_encrypted("db");
    let shared = e.p("shared-pass");
    std::fs::write(&shared, format!("{PASS}\n")).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = e.fv(&["get", &db, "t", "k", "--passphrase-file", &shared]).code(2);
    let want = format!("passphrase file {shared} is readable by other users; chmod 600 it");
    assert!(o.err().contains(&want), "{}", o.err());
    // Group-readable is refused too, and so is a key file, named by option or environment.
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o640)).unwrap();
    e.fv(&["get", &db, "t", "k", "--passphrase-file", &shared]).code(2);
    let key = e.p("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o604)).unwrap();
    let o = e.fv(&["init", &e.p("db2"), "--key-file", &key]).code(2);
    assert!(o.err().contains("key file") && o.err().contains("chmod 600"), "{}", o.err());
    assert!(!Path::new(&e.p("db2")).exists());
    let bin = env!("CARGO_BIN_EXE_foldvault");
    e.run(bin, &["status", &db], b"", &[("FOLDVAULT_KEY_FILE", &key)]).code(2);
    // FOLDVAULT_ALLOW_SHARED_KEY_FILES=1 lets them through.
    let allow = [("FOLDVAULT_ALLOW_SHARED_KEY_FILES", "1")];
    e.run(bin, &["get", &db, "t", "k", "--passphrase-file", &shared], b"", &allow).code(1);
}

#[test]
fn status_shows_key_memory_aes_and_nonce_budget() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    e.fv(&["put", &db, "t", "k", "v", "--passphrase-file", &pass]).ok();
    let t = e.fv(&["status", &db, "--passphrase-file", &pass]).ok().text();
    let line = |name: &str| t.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name}: {t}"));
    let mem = line("key memory:");
    assert!(mem.contains(" locked (") || mem.contains("NOT locked (RLIMIT_MEMLOCK)"), "{t}");
    let aes = line("AES:");
    assert!(aes.contains("hardware (") || aes.contains("software (constant-time)"), "{t}");
    // The backends that seal and open pages here: one name, or one for each direction.
    let names = ["ring", "aws-lc-rs", "RustCrypto aes-gcm"];
    let backends = aes.split_once("default backend here ").map(|(_, b)| b).unwrap_or_else(|| panic!("{t}"));
    let named = |b: &str| names.contains(&b);
    let one_or_pair = named(backends)
        || backends
            .split_once(" to seal, ")
            .and_then(|(seal, open)| Some((seal, open.strip_suffix(" to open")?)))
            .is_some_and(|(seal, open)| named(seal) && named(open) && seal != open);
    assert!(one_or_pair, "{t}");
    assert!(line("nonce budget:").contains(" seals used in this epoch"), "{t}");
    // Without a key: the AES line (a property of this machine), no key memory to report.
    let t = e.fv(&["status", &db]).ok().text();
    assert!(t.contains("\nAES:") && !t.contains("key memory:"), "{t}");
    let j = e.fv(&["status", &db, "--json", "--passphrase-file", &pass]).ok().text();
    assert!(j.contains("\"seal_budget\": ") && j.contains("\"key_memory_locked\": "), "{j}");
    for key in ["aes_seal_backend", "aes_open_backend"] {
        assert!(names.iter().any(|n| j.contains(&format!("\"{key}\": \"{n}\""))), "{key}: {j}");
    }
}

#[test]
fn config_file_sets_kdf_and_refuses_bad_files() {
    let e = Env::new();
    let cfg = e.p("fv.toml");
    std::fs::write(
        &cfg,
        "cache_capacity = \"4MiB\"\ndurability = \"immediate\"\n[kdf]\nmemory_mib = 2\niterations = 1\n",
    )
    .unwrap();
    let db = e.p("cfg.db");
    let pass = e.pass();
    e.fv(&["init", &db, "--config", &cfg, "--passphrase-file", &pass]).ok();
    let t = e.fv(&["status", &db]).ok().text();
    assert!(t.contains("2048"), "slot KDF memory from the config file: {t}");
    // KDF parameters out of range refuse what makes a slot under them, not a read that makes
    // none (a review's case: every command failed, reads of plaintext databases included).
    let costly = e.p("costly.toml");
    std::fs::write(&costly, "[kdf]\nmemory_mib = 9000\niterations = 1\n").unwrap();
    let clear = e.p("kdf-plain.db");
    e.fv(&["init", &clear, "--plaintext"]).ok();
    e.fv(&["put", &clear, "t", "k", "v"]).ok();
    assert_eq!(e.fv(&["get", &clear, "t", "k", "--config", &costly]).ok().stdout, b"v");
    e.fv(&["init", &e.p("costly.db"), "--config", &costly, "--passphrase-file", &pass]).code(2);
    // Regression: the cipher, and the KDF of encrypt and slots add-passphrase, ignored the
    // file; `durability` is read and said to be unused.
    let o = e
        .fv(&[
            "slots",
            &db,
            "add-passphrase",
            "--new-passphrase-file",
            &pass,
            "--config",
            &cfg,
            "--passphrase-file",
            &pass,
        ])
        .ok();
    assert!(o.text().contains("2048 KiB") && o.err().contains("durability not used"), "{}{}", o.text(), o.err());
    let plain = e.p("plain.db");
    e.fv(&["init", &plain, "--plaintext"]).ok();
    let enc = e.p("enc.db");
    e.fv(&["encrypt", &plain, &enc, "--config", &cfg, "--passphrase-file", &pass]).ok();
    assert!(e.fv(&["status", &enc]).ok().text().contains("2048 KiB"));
    std::fs::write(&cfg, "cipher = \"chacha20-poly1305\"\n[kdf]\nmemory_mib = 2\niterations = 1\n").unwrap();
    let aes = e.p("aes.db");
    e.fv(&["init", &aes, "--cipher", "aes-256-gcm", "--config", &cfg, "--passphrase-file", &pass]).ok();
    assert!(
        e.fv(&["status", &aes]).ok().text().contains("cipher:          aes-256-gcm"),
        "the option goes over the file"
    );
    let chacha = e.p("chacha.db");
    let o = e.fv(&["init", &chacha, "--config", &cfg, "--passphrase-file", &pass]);
    if cfg!(feature = "chacha") {
        assert!(e.fv(&["status", &chacha]).ok().text().contains("cipher:          chacha20-poly1305"), "{}", o.err());
    } else {
        o.code(2); // built without ChaCha20-Poly1305: the file's cipher is refused
    }
    let bad = e.p("bad.toml");
    std::fs::write(&bad, "cipher = 7\n").unwrap();
    let o = e.fv(&["status", &db, "--config", &bad]).code(2);
    assert!(o.err().contains("line 1"), "{}", o.err());
    // A config file that cannot be read is an I/O error; one past 1 MiB is refused unread.
    e.fv(&["status", &db, "--config", &e.p("missing.toml")]).code(5);
    let big = e.p("big.toml");
    std::fs::write(&big, vec![b'#'; (1 << 20) + 10]).unwrap();
    e.fv(&["status", &db, "--config", &big]).code(2);
    // Bytes that are not text are a usage error too, not an I/O error.
    let binary = e.p("binary.toml");
    std::fs::write(&binary, b"cipher = \"\xff\"\n").unwrap();
    assert!(e.fv(&["status", &db, "--config", &binary]).code(2).err().contains("not UTF-8"));
    // `[backup] verify_after`: the backup file is read back and verified.
    std::fs::write(&cfg, "[backup]\nverify_after = true\n").unwrap();
    let o = e.fv(&["backup", &db, &e.p("cfg.fvbk"), "--config", &cfg, "--passphrase-file", &pass]).ok();
    assert!(o.err().contains("read back and verified"), "{}", o.err());
    // The backup is not written over the database itself.
    e.fv(&["backup", &db, &db, "--passphrase-file", &pass]).code(2);
    e.fv(&["get", &db, "t", "k", "--passphrase-file", &pass]).code(1);
}

/// Temporary files a killed copy, in-place conversion, restore or backup left beside its
/// target are removed by the next run into that target (they stayed for good, for `decrypt`
/// with records in plaintext): those unwritten for a minute that no live run holds locked, their
/// logs, and at once a second name of the target's own file. One written just now, one a live
/// run holds, and names of other forms are left.
#[test]
fn the_next_run_removes_what_a_killed_one_left_beside_its_target() {
    use foldvault::storage::FileStorage;
    let e = Env::new();
    let pass = e.pass();
    let enc = e.init_encrypted("enc");
    e.fv(&["put", &enc, "t", "k", "MARKER-left-behind", "--passphrase-file", &pass]).ok();
    let exists = |name: &str| Path::new(&e.p(name)).exists();
    let fresh = |name: &str| secret(&e.p(name), "MARKER-left-behind partial copy");
    // Left by a run killed two minutes ago.
    let leave = |name: &str| {
        fresh(name);
        let f = std::fs::File::options().write(true).open(e.p(name)).unwrap();
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(120)).unwrap();
    };

    // decrypt into `dec`: a killed copy's file and its log go; so, once the copy has the name,
    // does one written just before this run (a run killed and run again at once: no later run
    // into `dec`, refused as it is occupied, would remove it); a held one and others stay.
    for name in [".dec.copy-0123456789ab", ".dec.copy-0123456789ab.fvwal", ".dec.copy-0123456789ac", ".dec.copy-notes"]
    {
        leave(name);
    }
    fresh(".dec.copy-00000000000f");
    let held = FileStorage::open(Path::new(&e.p(".dec.copy-0123456789ac")), false).unwrap();
    e.fv(&["decrypt", &enc, &e.p("dec"), "--passphrase-file", &pass, "--i-understand-this-writes-plaintext"]).ok();
    assert!(!exists(".dec.copy-0123456789ab") && !exists(".dec.copy-0123456789ab.fvwal"));
    assert!(!exists(".dec.copy-00000000000f"), "a copy killed just before this run stays for good");
    assert!(exists(".dec.copy-0123456789ac") && exists(".dec.copy-notes"));
    drop(held);
    // A run refused because `dec` is there still tidies what a killed one left beside it.
    leave(".dec.copy-0123456789dd");
    e.fv(&["decrypt", &enc, &e.p("dec"), "--passphrase-file", &pass, "--i-understand-this-writes-plaintext"]).code(2);
    assert!(!exists(".dec.copy-0123456789dd"), "left beside an occupied target for good");

    // encrypt --in-place: its finished copy and the copy into it, killed before the rename,
    // and a second name of the file itself (killed between the link into place and the
    // removal of the temporary name), which would keep the old file from being overwritten.
    let plain = e.p("plain");
    e.fv(&["init", &plain, "--plaintext"]).ok();
    e.fv(&["put", &plain, "t", "k", "MARKER-in-place"]).ok();
    leave(".plain.copy-00000000000a");
    leave("..plain.copy-00000000000a.copy-00000000000b");
    std::fs::hard_link(&plain, e.p(".plain.copy-00000000000c")).unwrap();
    let old_file = std::fs::File::open(&plain).unwrap();
    let mut args = vec!["encrypt", plain.as_str(), "--in-place", "--passphrase-file", &pass];
    args.extend(FAST_KDF);
    e.fv(&args).ok();
    for name in [".plain.copy-00000000000a", "..plain.copy-00000000000a.copy-00000000000b", ".plain.copy-00000000000c"]
    {
        assert!(!exists(name), "{name}");
    }
    let mut old = Vec::new();
    std::io::Read::read_to_end(&mut &old_file, &mut old).unwrap();
    assert!(!contains(&old, b"MARKER-in-place"), "the old file was not overwritten");

    // restore into `back`, with a log an earlier restore set aside; backup into `bk`.
    let bk = e.p("bk");
    leave(".bk.partial-0123456789ab");
    e.fv(&["backup", &enc, &bk, "--passphrase-file", &pass]).ok();
    assert!(!exists(".bk.partial-0123456789ab"));
    leave(".back.restore-0123456789ab");
    leave(".back.fvwal.restore-0123456789ab");
    e.fv(&["restore", &bk, &e.p("back"), "--passphrase-file", &pass]).ok();
    assert!(!exists(".back.restore-0123456789ab") && !exists(".back.fvwal.restore-0123456789ab"));
    let left: Vec<String> = std::fs::read_dir(e.dir.path())
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    // (The held one went with the refused run, no longer held.)
    assert_eq!(left, [".dec.copy-notes"], "{left:?}");
}

/// A creation killed while its passphrase is stretched (Argon2id at a high cost: seconds) leaves
/// nothing at the path: the header and key slots are made before the file is. The file was
/// made first and stayed empty, and every later open refused it as a database truncated to
/// nothing. On Linux the path is checked only once the child is seen stretching (its VmRSS in
/// /proc holds most of Argon2's 256 MiB, which is all written before the first pass), and the
/// child must still hold that memory after the check: a slow machine can no longer make the test
/// pass without showing anything (it fails, saying so, if the memory is not seen within a
/// minute). Elsewhere the test waits 600 ms, as it did, and can pass without showing anything.
#[test]
fn a_creation_killed_while_its_passphrase_is_stretched_leaves_no_file() {
    let e = Env::new();
    let db = e.p("new.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_foldvault"))
        .args(["init", &db, "--passphrase-file", &e.pass(), "--kdf-memory-mib", "256", "--kdf-iterations", "32"])
        .env_remove("FOLDVAULT_PASSPHRASE")
        .env_remove("FOLDVAULT_KEY_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Most of the 256 MiB Argon2 works in (the child's resident set before it is some MiB).
    const STRETCHING_KIB: u64 = 192 * 1024;
    let rss_kib = |pid: u32| -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
    };
    let linux = cfg!(target_os = "linux");
    if linux {
        let start = std::time::Instant::now();
        loop {
            let rss = rss_kib(child.id());
            if rss.is_some_and(|kib| kib >= STRETCHING_KIB) {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the creation ended ({status}) before it was seen stretching the passphrase (VmRSS {rss:?} kB)");
            }
            if start.elapsed() > std::time::Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the child's VmRSS stayed below {STRETCHING_KIB} kB for 60 s (last {rss:?} kB): it was never seen \
                     stretching the passphrase"
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    } else {
        std::thread::sleep(std::time::Duration::from_millis(600));
    }
    let during = Path::new(&db).exists();
    let rss_after = rss_kib(child.id());
    assert!(child.try_wait().unwrap().is_none(), "the creation ended (or failed) before it was killed");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !linux || rss_after.is_some_and(|kib| kib >= STRETCHING_KIB),
        "the stretch ended before the path was checked (VmRSS {rss_after:?} kB): the check showed nothing"
    );
    assert!(!during, "the file exists while the passphrase is stretched");
    assert!(!Path::new(&db).exists(), "the killed creation left a file");
    e.fv(&["init", &db, "--passphrase-file", &e.pass()]).ok();
    e.fv(&["put", &db, "t", "k", "v", "--passphrase-file", &e.pass()]).ok();
}

/// A key command refused for what it could know before opening (`passwd` given no passphrase,
/// only a key file that opens another slot) changes nothing: its writable open replayed the log
/// a crash left into the file before it refused (CLI review).
#[test]
fn a_refused_key_command_leaves_a_crashed_database_as_it_was() {
    let e = Env::new();
    let key_file = e.p("key");
    std::fs::write(&key_file, [7u8; 32]).unwrap();
    let (crashed, log) = e.crashed_with_log(|db| {
        let key = foldvault::MasterKey::from_bytes([7u8; 32]);
        db.add_slot(&foldvault::Credentials::master_key(key), Default::default()).unwrap();
        for i in 0..4u32 {
            db.insert(format!("k{i}"), &b"v"[..]).unwrap();
            db.flush().unwrap();
        }
    });
    let (file, logged) = (std::fs::read(&crashed).unwrap(), std::fs::read(&log).unwrap());
    let err = e.fv(&["passwd", &crashed, "--key-file", &key_file]).code(2).err();
    assert!(err.contains("give the current one"), "{err}");
    assert!(std::fs::read(&crashed).unwrap() == file, "the refused passwd changed the file");
    assert!(std::fs::read(&log).unwrap() == logged, "the refused passwd changed the log");
}
