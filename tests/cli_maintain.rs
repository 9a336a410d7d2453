//! The `foldvault` maintenance commands run as an operator would: compact, check, salvage,
//! backup, verify-backup and restore, on whole and damaged files.

#[path = "common/cli_env.rs"]
mod cli_env;

use cli_env::*;
use std::path::Path;
use std::process::{Command, Stdio};

/// `compact` after a load that rewrote every record in one transaction (copy-on-write put the
/// new leaves past the end of the file and freed the old ones): the file shrinks, the records
/// read back, `check` passes, a second run has nothing to move, a wrong key exits 3.
#[test]
fn compact_shrinks_the_file_and_keeps_the_records() {
    let e = Env::new();
    let (db, _) = multi_leaf_db(&e, "db");
    let pass = e.pass();
    let lines: String =
        (0..2000).map(|i| format!("{{\"key\": \"k{i:05}\", \"value\": \"rewritten {i}\"}}\n")).collect();
    e.fv_in(&["load", &db, "t", "--passphrase-file", &pass], lines.as_bytes()).ok();
    let before = std::fs::metadata(&db).unwrap().len();
    let status = e.fv(&["status", &db, "--passphrase-file", &pass]).ok().text();
    assert!(status.lines().any(|l| l.starts_with("free space:") && !l.contains(" 0 pages")), "{status}");
    let t = e.fv(&["compact", &db, "--passphrase-file", &pass]).ok().text();
    assert!(t.starts_with("compacted ") && t.contains("pages moved in"), "{t}");
    let after = std::fs::metadata(&db).unwrap().len();
    assert!(after < before, "{before} -> {after}: {t}");
    let j = e.fv(&["compact", &db, "--json", "--passphrase-file", &pass]).ok().text();
    assert!(j.contains("\"pages_moved\": 0") && j.contains(&format!("\"pages_after\": {},", after / 4096)), "{j}");
    e.fv(&["check", &db, "--passphrase-file", &pass]).ok();
    assert_eq!(e.fv(&["get", &db, "t", "k01234", "--passphrase-file", &pass]).ok().text(), "rewritten 1234");
    let wrong = e.p("wrong");
    secret(&wrong, "not the passphrase");
    e.fv(&["compact", &db, "--passphrase-file", &wrong]).code(3);
}

#[test]
fn check_reports_every_problem_with_its_page() {
    let e = Env::new();
    let (db, leaf) = multi_leaf_db(&e, "db");
    let pass = e.pass();
    let o = e.fv(&["check", &db, "--passphrase-file", &pass]).ok();
    let t = o.text();
    assert!(
        t.contains("problems:        none")
            && t.lines().any(|l| l.starts_with("  t ") && l.contains(" 2000 records, ")),
        "{t}"
    );
    assert!(t.contains("trailing bytes:  0") && t.lines().last().unwrap().starts_with("check: ok"), "{t}");
    assert!(o.stderr.is_empty(), "{}", o.err());
    let j = e.fv(&["check", &db, "--json", "--passphrase-file", &pass]).ok().text();
    assert!(j.lines().count() == 1 && j.contains("\"ok\": true") && j.contains("\"problems\": []"), "{j}");
    assert!(j.contains("{\"name\": \"t\", \"records\": 2000, \"pages\": "), "{j}");
    // Without the key: exit 3.
    e.fv(&["check", &db]).code(3);

    flip_byte(&db, leaf * 4096 + 100);
    let o = e.fv(&["check", &db, "--passphrase-file", &pass]).code(4);
    let t = o.text();
    assert!(t.contains(&format!("  page {leaf} (t): seal does not verify")), "{t}");
    assert!(t.lines().last().unwrap().starts_with("check: FAILED"), "{t}");
    // Regression: damage met while copying was reported against the new file (which no
    // longer exists), not the source.
    let copy = e.p("copy");
    let args = ["decrypt", &db, &copy, "--passphrase-file", &pass, "--i-understand-this-writes-plaintext"];
    let d = e.fv(&args).code(4);
    assert!(d.err().trim_end().ends_with(&format!("({db})")), "{}", d.err());
    assert!(!Path::new(&copy).exists());
    // Regression: a report cut short by a closed pipe exited 0, damage found or not.
    let fv = env!("CARGO_BIN_EXE_foldvault");
    assert_eq!(e.exit_into_closed_pipe(fv, &["check", &db, "--passphrase-file", &pass]), 4);
    let pd = env!("CARGO_BIN_EXE_pagedump");
    assert_eq!(e.exit_into_closed_pipe(pd, &[&db, "--all", "--passphrase-file", &pass]), 4);
    assert_eq!(e.exit_into_closed_pipe(pd, &[&db, "--tree", "t", "--passphrase-file", &pass]), 4);
    assert_eq!(e.exit_into_closed_pipe(pd, &[&db, "--passphrase-file", &pass]), 0, "pages 0-3 are whole");
    let lost = e.p("salvaged");
    assert_eq!(e.exit_into_closed_pipe(fv, &["salvage", &db, &lost, "--passphrase-file", &pass]), 4);
    assert!(o.err().starts_with("foldvault: check found ") && o.err().lines().count() == 1, "{}", o.err());
    let j = e.fv(&["check", &db, "--json", "--passphrase-file", &pass]).code(4).text();
    assert!(j.contains("\"ok\": false") && j.contains(&format!("{{\"page\": {leaf}, \"tree\": \"t\"")), "{j}");
}

#[test]
fn salvage_copies_what_authenticates() {
    let e = Env::new();
    let (db, leaf) = multi_leaf_db(&e, "db");
    let pass = e.pass();
    // An undamaged database: everything copied, exit 0.
    let whole = e.p("whole");
    let t = e.fv(&["salvage", &db, &whole, "--passphrase-file", &pass]).ok().text();
    assert!(t.contains("t: 2000 records copied") && t.contains("nothing lost"), "{t}");
    assert_eq!(
        e.fv(&["dump", &whole, "--passphrase-file", &pass]).ok().stdout,
        e.fv(&["dump", &db, "--passphrase-file", &pass]).ok().stdout
    );
    // The copy keeps the source's cipher and KDF cost.
    assert!(e.fv(&["status", &whole]).ok().text().contains("passphrase (argon2id: 1024 KiB, 1 passes"));
    // DST must be new.
    let o = e.fv(&["salvage", &db, &whole, "--passphrase-file", &pass]).code(2);
    assert!(o.err().contains("already exists"), "{}", o.err());

    flip_byte(&db, leaf * 4096 + 100);
    let out = e.p("salvaged");
    let o = e.fv(&["salvage", &db, &out, "--passphrase-file", &pass]).code(4);
    let t = o.text();
    let copied: u64 = t
        .lines()
        .find_map(|l| l.trim().strip_prefix("t: ")?.strip_suffix(" records copied")?.parse().ok())
        .unwrap_or_else(|| panic!("{t}"));
    assert!(copied > 1000 && copied < 2000, "{t}");
    assert!(t.contains("other: 1 record copied"), "{t}");
    let lost = t.lines().find(|l| l.trim().starts_with("lost: keys from \"k0")).unwrap_or_else(|| panic!("{t}"));
    assert!(lost.contains(&format!("page {leaf}")) && !lost.contains("value number"), "{t}");
    assert!(o.err().contains("salvage lost 1 key range"), "{}", o.err());
    // The salvaged database opens, checks clean and holds what was reported.
    e.fv(&["check", &out, "--passphrase-file", &pass]).ok();
    assert_eq!(e.fv(&["get", &out, "other", "a", "--passphrase-file", &pass]).ok().stdout, b"b");
    let dump = e.fv(&["dump", &out, "--passphrase-file", &pass]).ok().text();
    assert_eq!(dump.lines().count() as u64, copied + 1);
    // Wrong or no key: exit 3, and no DST is left behind.
    let wrong = e.p("wrong");
    secret(&wrong, "nope");
    let none = e.p("none");
    e.fv(&["salvage", &db, &none, "--passphrase-file", &wrong]).code(3);
    e.fv(&["salvage", &db, &none]).code(3);
    assert!(!Path::new(&none).exists());

    // A plaintext source gives a plaintext copy.
    let plain = e.p("plain");
    e.fv(&["init", &plain, "--plaintext"]).ok();
    e.fv(&["put", &plain, "t", "k", "v"]).ok();
    let plain2 = e.p("plain2");
    e.fv(&["salvage", &plain, &plain2]).ok();
    assert!(e.fv(&["status", &plain2]).ok().text().contains("plaintext"));
}

#[test]
fn backup_verify_restore_round_trip() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    e.fv_in(&["load", &db, "--passphrase-file", &pass], RECORDS.as_bytes()).ok();
    let dump = e.fv(&["dump", &db, "--passphrase-file", &pass]).ok().stdout;
    let bk = e.p("db.backup");
    let o = e.fv(&["backup", &db, &bk, "--passphrase-file", &pass]).ok();
    assert!(o.stdout.is_empty(), "{}", o.text());
    let err = o.err();
    assert!(err.lines().count() == 1 && err.starts_with("backup: commit "), "{err}");
    assert!(
        err.contains(" bytes, ") && err.contains(" pages, ") && err.contains("chunk") && err.contains("MB/s"),
        "{err}"
    );
    let bytes = std::fs::read(&bk).unwrap();
    assert!(bytes.starts_with(b"FVBACKUP"));
    assert!(!contains(&bytes, b"node_id") && !contains(&bytes, b"schemas"));

    // Without a key: structure and hashes only.
    let t = e.fv(&["verify-backup", &bk]).ok().text();
    assert!(t.contains("encryption:      encrypted") && t.contains("no key: pages not opened"), "{t}");
    assert!(!t.contains("trees:") && t.lines().last().unwrap().starts_with("verify-backup: ok (without key)"), "{t}");
    // With the key: every page, and the records per tree.
    let t = e.fv(&["verify-backup", &bk, "--passphrase-file", &pass]).ok().text();
    assert!(t.contains("every page opened") && t.contains("verify-backup: ok (full)"), "{t}");
    assert!(has_line(&t, "metadata 2 records") && has_line(&t, "schemas 2 records"), "{t}");
    assert!(has_line(&t, "__sled__default 1 record"), "{t}");
    // --no-key wins over a passphrase in the environment.
    let bin = env!("CARGO_BIN_EXE_foldvault");
    let t = e.run(bin, &["verify-backup", &bk, "--no-key"], b"", &[("FOLDVAULT_PASSPHRASE", PASS)]).ok().text();
    assert!(t.contains("no key: pages not opened"), "{t}");
    let t = e.run(bin, &["verify-backup", &bk], b"", &[("FOLDVAULT_PASSPHRASE", PASS)]).ok().text();
    assert!(t.contains("every page opened"), "{t}");
    e.fv(&["verify-backup", &bk, "--no-key", "--passphrase-file", &pass]).code(2);

    // Restore, then the dump is byte for byte the original's.
    let restored = e.p("restored");
    let t = e.fv(&["restore", &bk, &restored, "--passphrase-file", &pass]).ok().text();
    assert!(t.lines().last().unwrap().starts_with("restore: commit "), "{t}");
    assert_eq!(e.fv(&["dump", &restored, "--passphrase-file", &pass]).ok().stdout, dump);
    e.fv(&["check", &restored, "--passphrase-file", &pass]).ok();

    // Onto a symbolic link to nothing: refused as DB's fault, before the backup is read or a
    // passphrase asked for (no key given: the backup is encrypted).
    let dangling = e.p("dangling");
    std::os::unix::fs::symlink(e.p("nowhere"), &dangling).unwrap();
    let err = e.fv(&["restore", &bk, &dangling]).code(2).err();
    assert!(err.contains("dangling") && err.contains("symbolic link") && !err.contains(&bk), "{err}");

    // Into a database directory, and a plaintext database's backup.
    let dir = e.p("dir");
    std::fs::create_dir(&dir).unwrap();
    e.fv(&["restore", &bk, &dir, "--passphrase-file", &pass]).ok();
    assert_eq!(e.fv(&["dump", &dir, "--passphrase-file", &pass]).ok().stdout, dump);
    let plain = e.p("plain");
    e.fv(&["init", &plain, "--plaintext"]).ok();
    e.fv_in(&["load", &plain], &dump).ok();
    let pbk = e.p("plain.backup");
    e.fv(&["backup", &plain, &pbk]).ok();
    let t = e.fv(&["verify-backup", &pbk]).ok().text();
    assert!(t.contains("plaintext") && t.contains("every page opened"), "{t}");
    let plain2 = e.p("plain2");
    e.fv(&["restore", &pbk, &plain2]).ok();
    assert_eq!(e.fv(&["dump", &plain2]).ok().stdout, dump);

    // A second backup replaces the first only when it is complete.
    e.fv(&["put", &db, "metadata", "more", "x", "--passphrase-file", &pass]).ok();
    e.fv(&["backup", &db, &bk, "--passphrase-file", &pass]).ok();
    let leftovers: Vec<_> = std::fs::read_dir(e.dir.path())
        .unwrap()
        .filter_map(|d| d.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let restored2 = e.p("restored2");
    e.fv(&["restore", &bk, &restored2, "--passphrase-file", &pass]).ok();
    assert_eq!(e.fv(&["get", &restored2, "metadata", "more", "--passphrase-file", &pass]).ok().stdout, b"x");
}

/// `backup` replaces an earlier backup (or an empty file) at OUT, and any other file only with
/// `--force`: `backup db1 db2` once destroyed the database db2.
#[test]
fn backup_replaces_only_a_backup_unless_forced() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    e.fv(&["put", &db, "t", "k", "v", "--passphrase-file", &pass]).ok();
    let other = e.init_encrypted("other");
    let before = std::fs::read(&other).unwrap();
    let o = e.fv(&["backup", &db, &other, "--passphrase-file", &pass]).code(2);
    assert!(o.err().contains("is not a foldvault backup") && o.err().contains("--force"), "{}", o.err());
    assert_eq!(std::fs::read(&other).unwrap(), before);
    let bk = e.p("db.backup");
    std::fs::write(&bk, b"").unwrap();
    e.fv(&["backup", &db, &bk, "--passphrase-file", &pass]).ok();
    e.fv(&["backup", &db, &bk, "--passphrase-file", &pass]).ok();
    e.fv(&["backup", &db, &other, "--passphrase-file", &pass, "--force"]).ok();
    e.fv(&["verify-backup", &other, "--passphrase-file", &pass]).ok();
    // A character device is written directly (the backup thrown away); a block device (a
    // disk, a partition) only with --force. The node made here (when `mknod` is allowed: as
    // root) names a major number reserved for local use, which no driver has: even a backup
    // that went ahead could not reach a disk through it.
    e.fv(&["backup", &db, "/dev/null", "--passphrase-file", &pass]).ok();
    let node = e.p("disk");
    let made = std::process::Command::new("mknod").args([node.as_str(), "b", "240", "0"]).output();
    if made.is_ok_and(|o| o.status.success()) {
        let link = e.p("disk-link");
        std::os::unix::fs::symlink(&node, &link).unwrap();
        for out in [&node, &link] {
            let o = e.fv(&["backup", &db, out, "--passphrase-file", &pass]).code(2);
            assert!(o.err().contains("--force"), "{}", o.err());
        }
    }
}

/// Standard error closed (a reader that has gone): the exit code still says what happened
/// (`eprintln!` panicked there, exit 101); so does `status` with standard output closed.
#[test]
fn a_closed_stderr_or_stdout_keeps_the_exit_code() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    let wrong = e.p("wrong-pass");
    std::fs::write(&wrong, "not the passphrase\n").unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let fv = env!("CARGO_BIN_EXE_foldvault");
    assert_eq!(e.exit_with_stderr_closed(fv, &["get", &db, "t", "missing", "--passphrase-file", &pass]), 1);
    assert_eq!(e.exit_with_stderr_closed(fv, &["get", &db, "t", "k", "--passphrase-file", &wrong]), 3);
    assert_eq!(e.exit_with_stderr_closed(fv, &["backup", &db, &e.p("b"), "--passphrase-file", &pass]), 0);
    assert_eq!(e.exit_into_closed_pipe(fv, &["status", &db, "--passphrase-file", &wrong]), 3);
    assert_eq!(e.exit_into_closed_pipe(fv, &["status", &db, "--json", "--passphrase-file", &wrong]), 3);
    // The header's part is printed whatever the open says (`--json` printed nothing).
    let j = e.fv(&["status", &db, "--json", "--passphrase-file", &wrong]).code(3).text();
    assert!(j.trim_start().starts_with('{') && j.contains("\"slots\""), "{j}");
}

#[test]
fn backup_through_a_pipe() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    e.fv_in(&["load", &db, "--passphrase-file", &pass], RECORDS.as_bytes()).ok();
    let dump = e.fv(&["dump", &db, "--passphrase-file", &pass]).ok().stdout;
    let o = e.fv(&["backup", &db, "-", "--passphrase-file", &pass]).ok();
    // Standard output holds the backup and nothing else.
    assert!(o.stdout.starts_with(b"FVBACKUP"), "{}", o.err());
    assert!(o.err().contains("to standard output") && o.err().lines().count() == 1, "{}", o.err());
    let file = e.p("file.backup");
    e.fv(&["backup", &db, &file, "--passphrase-file", &pass]).ok();
    assert_eq!(o.stdout.len() as u64, std::fs::metadata(&file).unwrap().len());

    let t = e.fv_in(&["verify-backup", "-"], &o.stdout).ok().text();
    assert!(t.contains("backup:          <stdin>") && t.contains("verify-backup: ok (without key)"), "{t}");
    let t = e.fv_in(&["verify-backup", "-", "--passphrase-file", &pass], &o.stdout).ok().text();
    assert!(t.contains("verify-backup: ok (full)"), "{t}");
    let restored = e.p("restored");
    e.fv_in(&["restore", "-", &restored, "--passphrase-file", &pass], &o.stdout).ok();
    assert_eq!(e.fv(&["dump", &restored, "--passphrase-file", &pass]).ok().stdout, dump);

    // A real pipe between two processes.
    let bin = env!("CARGO_BIN_EXE_foldvault");
    let mut producer = Command::new(bin)
        .args(["backup", &db, "-", "--passphrase-file", &pass])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let consumer = Command::new(bin)
        .args(["verify-backup", "-", "--passphrase-file", &pass])
        .stdin(producer.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(producer.wait().unwrap().success());
    assert!(consumer.status.success(), "{}", String::from_utf8_lossy(&consumer.stderr));
    assert!(String::from_utf8_lossy(&consumer.stdout).contains("verify-backup: ok (full)"));
}

#[test]
fn damaged_backups_exit_4_and_name_the_place() {
    let e = Env::new();
    let (db, _) = multi_leaf_db(&e, "db");
    let pass = e.pass();
    let bk = e.p("db.backup");
    e.fv(&["backup", &db, &bk, "--passphrase-file", &pass]).ok();
    let good = std::fs::read(&bk).unwrap();
    assert!(good.len() > 3 * 8192, "{}", good.len());

    // A flipped byte inside the chunks: found without the key, named by chunk and offset.
    let bad = e.p("bad.backup");
    let mut b = good.clone();
    b[good.len() / 2] ^= 0x01;
    std::fs::write(&bad, &b).unwrap();
    for args in [&["verify-backup", &bad][..], &["verify-backup", &bad, "--passphrase-file", &pass]] {
        let o = e.fv(args).code(4);
        let err = o.err();
        assert!(err.contains("chunk ") && err.contains("byte ") && err.lines().count() == 1, "{err}");
    }
    let target = e.p("target");
    let o = e.fv(&["restore", &bad, &target, "--passphrase-file", &pass]).code(4);
    assert!(o.err().contains("chunk "), "{}", o.err());
    assert!(!Path::new(&target).exists());
    // In the header, and in the trailer.
    for off in [100, good.len() - 10] {
        let mut b = good.clone();
        b[off] ^= 0x01;
        std::fs::write(&bad, &b).unwrap();
        let o = e.fv(&["verify-backup", &bad]).code(4);
        assert!(o.err().contains("byte "), "{}", o.err());
    }
    // Truncated, through a pipe too.
    let short = &good[..good.len() - 100];
    let o = e.fv_in(&["verify-backup", "-"], short).code(4);
    assert!(o.err().contains("truncated"), "{}", o.err());
    e.fv_in(&["restore", "-", &target, "--passphrase-file", &pass], short).code(4);
    assert!(!Path::new(&target).exists());
    // Not a backup at all.
    let o = e.fv(&["verify-backup", &db]).code(4);
    assert!(o.err().contains("not a foldvault backup"), "{}", o.err());
    // A damaged database is not backed up.
    let (db2, leaf) = multi_leaf_db(&e, "db2");
    flip_byte(&db2, leaf * 4096 + 100);
    let out = e.p("db2.backup");
    let o = e.fv(&["backup", &db2, &out, "--passphrase-file", &pass]).code(4);
    assert!(o.err().contains(&format!("corrupt page {leaf}")), "{}", o.err());
    assert!(!Path::new(&out).exists());
}

#[test]
fn backup_keys_and_existing_targets() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    e.fv(&["put", &db, "t", "k", "v1", "--passphrase-file", &pass]).ok();
    let bk = e.p("db.backup");
    e.fv(&["backup", &db, &bk, "--passphrase-file", &pass]).ok();
    let wrong = e.p("wrong");
    secret(&wrong, "not the passphrase");
    let key = e.p("key");
    let target = e.p("target");
    // Wrong key: 3 for verify-backup and restore, and nothing restored.
    let o = e.fv(&["verify-backup", &bk, "--passphrase-file", &wrong]).code(3);
    assert!(o.err().starts_with("foldvault: wrong key or passphrase") && o.err().lines().count() == 1);
    e.fv(&["verify-backup", &bk, "--key-file", &key]).code(3);
    e.fv(&["restore", &bk, &target, "--passphrase-file", &wrong]).code(3);
    e.fv(&["restore", &bk, &target]).code(3);
    assert!(!Path::new(&target).exists());
    e.fv(&["backup", &db, &target, "--passphrase-file", &wrong]).code(3);
    assert!(!Path::new(&target).exists());

    // An existing database is not replaced without --force.
    let other = e.init_encrypted("other");
    e.fv(&["put", &other, "t", "k", "other", "--passphrase-file", &pass]).ok();
    let o = e.fv(&["restore", &bk, &other, "--passphrase-file", &pass]).code(2);
    assert!(o.err().contains("already exists") && o.err().contains("--force"), "{}", o.err());
    assert_eq!(e.fv(&["get", &other, "t", "k", "--passphrase-file", &pass]).ok().stdout, b"other");
    // Nor while it is open elsewhere, even with --force.
    {
        let _held =
            foldvault::Config::new().file(&other).passphrase(PASS).use_env(false).flush_every_ms(None).open().unwrap();
        let o = e.fv(&["restore", &bk, &other, "--force", "--passphrase-file", &pass]).code(5);
        assert!(o.err().contains("locked"), "{}", o.err());
    }
    e.fv_after_unlock(&["restore", &bk, &other, "--force", "--passphrase-file", &pass]).ok();
    assert_eq!(e.fv(&["get", &other, "t", "k", "--passphrase-file", &pass]).ok().stdout, b"v1");
    // A backup of a plaintext database: refused with --require-encryption, restored as
    // plaintext (with a warning) when a key is given without it.
    let plain = e.p("plain");
    e.fv(&["init", &plain, "--plaintext"]).ok();
    e.fv(&["put", &plain, "t", "k", "clear"]).ok();
    let pbk = e.p("plain.backup");
    e.fv(&["backup", &plain, &pbk]).ok();
    let ptarget = e.p("ptarget");
    let o = e.fv(&["restore", &pbk, &ptarget, "--require-encryption", "--passphrase-file", &pass]).code(2);
    assert!(o.err().contains("plaintext database"), "{}", o.err());
    assert!(!Path::new(&ptarget).exists());
    let o = e.fv(&["restore", &pbk, &ptarget, "--passphrase-file", &pass]).ok();
    assert!(o.err().contains("restored as plaintext"), "{}", o.err());
    // verify-backup alike: with a key, a plaintext backup is said to be authenticated by none
    // of it, and --require-encryption refuses it.
    let o = e.fv(&["verify-backup", &pbk, "--require-encryption"]).code(2);
    assert!(o.err().contains("plaintext database"), "{}", o.err());
    let o = e.fv(&["verify-backup", &pbk, "--passphrase-file", &pass]).ok();
    assert!(o.err().contains("authenticates nothing"), "{}", o.err());
    assert!(o.text().contains("plaintext (not encrypted)"), "{}", o.text());
    let o = e.fv(&["verify-backup", &pbk]).ok();
    assert!(!o.err().contains("warning"), "no key, no warning: {}", o.err());
    assert_eq!(e.fv(&["get", &ptarget, "t", "k"]).ok().stdout, b"clear");
    // Missing files.
    e.fv(&["verify-backup", &e.p("missing")]).code(5);
    e.fv(&["backup", &e.p("missing"), &e.p("out"), "--passphrase-file", &pass]).code(5);
}

#[test]
fn maintenance_commands_show_no_progress_without_a_terminal() {
    let e = Env::new();
    let (db, _) = multi_leaf_db(&e, "db");
    let pass = e.pass();
    let bk = e.p("bk");
    let clean = |o: &Out| {
        for s in [&o.stdout, &o.stderr] {
            assert!(!contains(s, b"\r") && !contains(s, b"\x1b["), "{}", o.err());
        }
    };
    let o = e.fv(&["check", &db, "--passphrase-file", &pass]).ok();
    assert!(o.stderr.is_empty(), "{}", o.err());
    clean(&o);
    let o = e.fv(&["salvage", &db, &e.p("s"), "--passphrase-file", &pass]).ok();
    assert!(o.stderr.is_empty(), "{}", o.err());
    clean(&o);
    let o = e.fv(&["backup", &db, &bk, "--passphrase-file", &pass]).ok();
    assert_eq!(o.err().lines().count(), 1, "{}", o.err());
    clean(&o);
    let o = e.fv(&["verify-backup", &bk, "--passphrase-file", &pass]).ok();
    assert!(o.stderr.is_empty(), "{}", o.err());
    clean(&o);
    let o = e.fv(&["restore", &bk, &e.p("r"), "--passphrase-file", &pass]).ok();
    assert!(o.stderr.is_empty(), "{}", o.err());
    clean(&o);
}

#[test]
fn check_and_salvage_report_what_recovery_dropped() {
    let e = Env::new();
    let (db, _) = multi_leaf_db(&e, "db");
    let pass = e.pass();
    let (seq, catalog) = newest_catalog(&e, &db);
    assert!(seq >= 2, "{seq}");

    // The older commit record damaged: the data is whole, but check says so.
    let older = e.p("older");
    std::fs::copy(&db, &older).unwrap();
    // (After a clean close both slots name the newest commit: the second record lets the next
    // open skip verification. Then either slot is "the other one".)
    let other_slot = ["2", "3"]
        .into_iter()
        .find(|p| !e.pd(&[&db, "--page", p, "--passphrase-file", &pass]).text().contains(&format!(", seq {seq}\n")))
        .unwrap_or("2");
    flip_byte(&older, other_slot.parse::<u64>().unwrap() * 4096 + 100);
    let t = e.fv(&["check", &older, "--passphrase-file", &pass]).code(4).text();
    assert!(t.contains(&format!("  page {other_slot} (commit record): commit record does not open")), "{t}");
    // Salvage copies the commit that opens, and does not call the result whole: the record
    // that does not open may have named a newer commit (it exited 0, "nothing lost").
    let o = e.fv(&["salvage", &older, &e.p("from-older"), "--passphrase-file", &pass]).code(4);
    assert!(o.text().contains("LOST perhaps a newer commit"), "{}{}", o.text(), o.err());

    // The newest commit's catalog damaged after a clean close: the catalog is read at open, so
    // check fails (exit 4) naming the catalog page, and so does salvage.
    flip_byte(&db, catalog * 4096 + 100);
    let o = e.fv(&["check", &db, "--passphrase-file", &pass]).code(4);
    assert!(format!("{}{}", o.text(), o.err()).contains(&format!("page {catalog}")), "{}{}", o.text(), o.err());
    // Salvage goes on from the newest commit record that opens, and reports the catalog lost.
    let o = e.fv(&["salvage", &db, &e.p("salvaged"), "--passphrase-file", &pass]).code(4);
    assert!(o.err().contains("does not open") && o.text().contains("catalog"), "{}{}", o.text(), o.err());
}

/// `backup DB OUT` onto an empty OUT that another process holds locked (a database it is
/// creating there) waits for nothing and replaces nothing: `Locked` (exit 5), OUT as it was.
/// It was renamed over, and the creator wrote on into a file no name reached.
#[test]
fn backup_does_not_replace_an_empty_file_being_created() {
    use std::os::unix::fs::MetadataExt;
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    let out = e.p("being-created");
    std::fs::write(&out, b"").unwrap();
    let held = foldvault::storage::FileStorage::open(Path::new(&out), false).unwrap();
    let ino = std::fs::metadata(&out).unwrap().ino();
    let o = e.fv(&["backup", &db, &out, "--passphrase-file", &pass]);
    assert_eq!(o.code, 5, "{}", o.err());
    assert_eq!(std::fs::metadata(&out).unwrap().ino(), ino, "OUT was replaced");
    drop(held);
    // Unheld, an empty OUT is replaced as before.
    e.fv(&["backup", &db, &out, "--passphrase-file", &pass]).ok();
    assert!(std::fs::metadata(&out).unwrap().len() > 0);
}

/// A commit record that does not open beside one that does: `status` says which slot was
/// rejected and agrees with `check` on whether the open fell back (it said "the newest commit
/// did not verify; opened at the previous one" whenever any recovery happened).
#[test]
fn status_and_check_agree_on_a_rejected_commit_record() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    e.fv(&["put", &db, "t", "k", "v", "--passphrase-file", &pass]).ok();
    flip_byte(&db, 3 * 4096 + 100);
    let s = e.fv(&["status", &db, "--json", "--passphrase-file", &pass]).ok().text();
    let c = e.fv(&["check", &db, "--json", "--passphrase-file", &pass]).text();
    assert!(s.contains("\"rejected_commit_slots\": [3]") && c.contains("\"rejected_commit_slots\": [3]"), "{s}\n{c}");
    let recovered = |j: &str| j.contains("\"recovered\": true");
    assert_eq!(recovered(&s), recovered(&c), "{s}\n{c}");
    let t = e.fv(&["status", &db, "--passphrase-file", &pass]).ok().text();
    assert!(t.contains("the commit record in page 3 does not open"), "{t}");
    assert_eq!(t.contains("opened at the previous one"), recovered(&c), "{t}");
}

/// A group of the write-ahead log that fails its checksum leaves its commits out of the
/// database: `check` reports it (exit 4, `log_group_dropped` in its JSON, as `status` has it),
/// `salvage` counts it as lost (exit 4), and a command that reads warns. They said ok and
/// "nothing lost" (CLI review, high).
#[test]
fn a_dropped_log_group_is_a_problem_for_check_and_a_loss_for_salvage() {
    let e = Env::new();
    let (crashed, log) = e.crashed_with_log(|db| {
        for i in 0..6u32 {
            db.insert(format!("k{i}"), &b"v"[..]).unwrap();
            db.flush().unwrap();
        }
    });
    // A byte of the log's first group flipped (page 1 is its index).
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[2 * 4096 + 100] ^= 0x40;
    std::fs::write(&log, &bytes).unwrap();
    let pass = e.pass();
    let c = e.fv(&["check", &crashed, "--json", "--passphrase-file", &pass]).code(4).text();
    assert!(c.contains("\"log_group_dropped\": true") && c.contains("LogGroupDropped"), "{c}");
    let s = e.fv(&["status", &crashed, "--json", "--passphrase-file", &pass]).ok().text();
    assert!(s.contains("\"log_group_dropped\": true"), "{s}");
    let out = e.p("salvaged");
    let t = e.fv(&["salvage", &crashed, &out, "--passphrase-file", &pass]).code(4).text();
    assert!(t.contains("LOST") && t.contains("write-ahead log"), "{t}");
    // (The damaged group is the first: every commit is out, and the key is missing.)
    let g = e.fv(&["get", &crashed, "__sled__default", "k0", "--passphrase-file", &pass]);
    assert!(g.err().contains("write-ahead log fails its checksum"), "{}", g.err());
}

/// A copy into a directory that does not exist is refused naming the destination: salvage named
/// the source for the temporary file it could not make there (CLI review).
#[test]
fn a_copy_into_a_missing_directory_names_the_destination() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    let out = e.p("missing/dir/out");
    for cmd in [
        vec!["salvage", &db, &out, "--passphrase-file", &pass],
        vec!["decrypt", &db, &out, "--passphrase-file", &pass, "--i-understand-this-writes-plaintext"],
    ] {
        let err = e.fv(&cmd).code(2).err();
        assert!(err.contains("DST") && err.contains("missing/dir") && err.contains("does not exist"), "{cmd:?}: {err}");
    }
}
