//! Encrypted backup, verify and restore.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use foldvault::backup::{self, RestoreOptions};
use foldvault::{Config, Credentials, Db, Error, KdfParams};

#[path = "backup/durability.rs"]
mod durability;

const PASS: &str = "backup test passphrase";

fn cfg(path: &std::path::Path) -> Config {
    Config::new().file(path).passphrase(PASS).kdf(KdfParams::insecure_fast()).use_env(false).flush_every_ms(None)
}

fn creds() -> Credentials {
    Credentials::passphrase(PASS)
}

type Contents = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

fn contents(db: &Db) -> Contents {
    let mut out = Contents::new();
    for name in db.tree_names() {
        let t = db.open_tree(&name).unwrap();
        out.insert(name.to_vec(), t.iter().map(|r| r.unwrap()).map(|(k, v)| (k.to_vec(), v.to_vec())).collect());
    }
    out
}

fn populate(db: &Db) {
    for (ti, name) in ["metadata", "schemas", "atoms"].iter().enumerate() {
        let t = db.open_tree(name).unwrap();
        let mut b = foldvault::Batch::default();
        for i in 0..800u32 {
            b.insert(
                format!("{name}:{i:05}"),
                format!("{{\"i\":{i},\"marker\":\"SECRETMARKER\"}}").repeat(1 + (i as usize % 5)),
            );
        }
        t.apply_batch(b).unwrap();
        t.insert("big", vec![ti as u8; 30_000]).unwrap();
    }
    db.insert("atom:00000000-0000-0000-0000-000000000000", &b"{}"[..]).unwrap();
    for i in (0..800u32).step_by(3) {
        db.open_tree("schemas").unwrap().remove(format!("schemas:{i:05}")).unwrap();
    }
    db.flush().unwrap();
}

fn make_backup() -> (tempfile::TempDir, Vec<u8>, Contents) {
    let dir = tempfile::tempdir().unwrap();
    let db = cfg(&dir.path().join("src.fv")).open().unwrap();
    populate(&db);
    let mut out = Vec::new();
    let stats = db.backup_to(&mut out, &mut |_| {}).unwrap();
    assert_eq!(stats.bytes as usize, out.len());
    let c = contents(&db);
    (dir, out, c)
}

#[test]
fn backup_verify_restore_round_trip() {
    let (dir, bytes, want) = make_backup();
    assert!(!bytes.windows(12).any(|w| w == b"SECRETMARKER"), "plaintext in the backup");
    assert!(!bytes.windows(8).any(|w| w == b"metadata"), "tree name in the backup");
    let shallow = backup::verify(Cursor::new(&bytes), None, &mut |_| {}).unwrap();
    assert!(!shallow.deep);
    let deep = backup::verify(Cursor::new(&bytes), Some(&creds()), &mut |_| {}).unwrap();
    assert!(deep.deep);
    assert_eq!(deep.trees.get(&b"metadata"[..]), Some(&801));
    let dst = dir.path().join("restored.fv");
    let mut calls = 0;
    let mut p = |_: backup::Progress| calls += 1;
    let s = backup::restore(
        Cursor::new(&bytes),
        &dst,
        &creds(),
        RestoreOptions { force: false, progress: Some(&mut p), ..Default::default() },
    )
    .unwrap();
    assert!(calls > 0);
    assert_eq!(s.seq, deep.seq);
    let db = cfg(&dst).open().unwrap();
    assert!(db.check().unwrap().is_ok());
    assert_eq!(contents(&db), want);
    drop(db);
    // Refuses to overwrite unless forced.
    assert!(matches!(
        backup::restore(Cursor::new(&bytes), &dst, &creds(), RestoreOptions::default()),
        Err(Error::AlreadyExists(_))
    ));
    backup::restore(Cursor::new(&bytes), &dst, &creds(), RestoreOptions { force: true, ..Default::default() }).unwrap();
}

/// A stream's length follows from its header (`BackupHeader::stream_len`), which the command
/// line reads a block device up to: a backup written over a device's earlier bytes (here a
/// longer backup's, then zeros) verifies when cut there, and fails as "bytes after the trailer"
/// when not (backup review, medium: every backup on a device failed so).
#[test]
fn a_backup_followed_by_other_bytes_verifies_when_cut_at_its_header_length() {
    let (_dir, bytes, _) = make_backup();
    let header = backup::BackupHeader::decode(&bytes[..4096]).unwrap();
    assert_eq!(header.stream_len(), Some(bytes.len() as u64));
    let mut device = bytes.clone();
    device.extend(std::iter::repeat_n(0u8, 1 << 20));
    let r = backup::verify(Cursor::new(&device), None, &mut |_| {});
    assert!(matches!(r, Err(foldvault::Error::BackupCorrupt { .. })), "{r:?}");
    let cut = std::io::Read::take(Cursor::new(&device), header.stream_len().unwrap());
    backup::verify(cut, Some(&creds()), &mut |_| {}).unwrap();
}

/// A forced restore onto a symbolic link replaces the database the link names; the link stays.
#[test]
fn a_restore_through_a_symbolic_link_replaces_the_file_it_names() {
    let (dir, bytes, want) = make_backup();
    let real = dir.path().join("real.fv");
    let link = dir.path().join("link.fv");
    let other = cfg(&real).open().unwrap();
    other.insert("only", "in the old file").unwrap();
    drop(other);
    std::os::unix::fs::symlink(&real, &link).unwrap();
    backup::restore(Cursor::new(&bytes), &link, &creds(), RestoreOptions { force: true, ..Default::default() })
        .unwrap();
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
    let db = cfg(&real).open().unwrap();
    assert_eq!(contents(&db), want);
    drop(db);
    // Earlier versions kept the log of a database used through a link beside the link: a
    // crash left it there (here the two files copied as they are while it is open, the log
    // put beside the link as such a version would have), and the restore folds it in, so
    // that it is not replayed over the restored file.
    let used = cfg(&link).open().unwrap();
    used.insert("logged", "only in the log").unwrap();
    used.flush().unwrap();
    let (crashed, crashed_link) = (dir.path().join("crashed.fv"), dir.path().join("crashed-link.fv"));
    std::fs::copy(&real, &crashed).unwrap();
    let link_log = foldvault::storage::wal::sidecar_path(&real);
    assert!(link_log.exists(), "no log: the test shows nothing");
    std::fs::copy(&link_log, foldvault::storage::wal::sidecar_path(&crashed_link)).unwrap();
    drop(used);
    std::os::unix::fs::symlink(&crashed, &crashed_link).unwrap();
    backup::restore(Cursor::new(&bytes), &crashed_link, &creds(), RestoreOptions { force: true, ..Default::default() })
        .unwrap();
    assert!(!foldvault::storage::wal::sidecar_path(&crashed_link).exists(), "the log beside the link is left");
    let db = cfg(&crashed_link).open().unwrap();
    assert_eq!(contents(&db), want);
}

/// A progress callback that panics mid-restore: the panic reaches the caller and the partial
/// file (hidden, beside the target) goes with it; the target name stays free.
#[test]
fn a_panic_during_restore_leaves_no_partial_file() {
    let (_src, bytes, _) = make_backup();
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("restored.fv");
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut p = |_: backup::Progress| panic!("progress callback panics");
        backup::restore(
            Cursor::new(&bytes),
            &dst,
            &creds(),
            RestoreOptions { progress: Some(&mut p), ..Default::default() },
        )
    }));
    assert!(unwound.is_err());
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    backup::restore(Cursor::new(&bytes), &dst, &creds(), RestoreOptions::default()).unwrap();
}

/// A forced restore over an existing database that fails (a damaged chunk, a stream cut
/// short, a wrong key, a progress callback that panics) leaves that database as it was, its
/// log and the commits in it included, and no temporary file beside it (SPEC §13.3: `dst`
/// keeps its old contents or holds the whole backup). Every failing restore tested before went
/// to a name that did not exist yet.
#[test]
fn a_failed_forced_restore_keeps_the_database_it_would_replace() {
    use foldvault::storage::wal::sidecar_path;
    let (_src, bytes, _) = make_backup();
    let dir = tempfile::tempdir().unwrap();
    // The database to be replaced, copied with its log while open: as a crash leaves it.
    let live = dir.path().join("live.fv");
    let db = cfg(&live).write_ahead_log(true).open().unwrap();
    db.open_tree("kept").unwrap().insert("k", "in the file").unwrap();
    db.flush().unwrap();
    db.checkpoint_log().unwrap();
    db.open_tree("kept").unwrap().insert("logged", "only in the log").unwrap();
    db.flush().unwrap();
    let dst = dir.path().join("dst.fv");
    let crashed = (std::fs::read(&live).unwrap(), std::fs::read(sidecar_path(&live)).unwrap());
    let want = contents(&db);
    drop(db);
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    let cut = bytes[..bytes.len() / 2].to_vec();
    let cases: [(&str, &[u8], Credentials, bool); 4] = [
        ("a damaged chunk", &flipped, creds(), false),
        ("a stream cut short", &cut, creds(), false),
        ("a wrong key", &bytes, Credentials::passphrase("not the backup's"), false),
        ("a panicking progress callback", &bytes, creds(), true),
    ];
    for (what, stream, creds, panics) in cases {
        std::fs::write(&dst, &crashed.0).unwrap();
        std::fs::write(sidecar_path(&dst), &crashed.1).unwrap();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut p = |_: backup::Progress| {
                if panics {
                    panic!("progress callback panics")
                }
            };
            let options = RestoreOptions { force: true, progress: Some(&mut p), ..Default::default() };
            backup::restore(Cursor::new(stream), &dst, &creds, options)
        }));
        match outcome {
            Ok(r) => assert!(r.is_err() && !panics, "{what}: {:?}", r.map(|_| ())),
            Err(_) => assert!(panics, "{what}: panicked"),
        }
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{what}: left behind: {left:?}");
        let reopened = cfg(&dst).open().unwrap();
        assert_eq!(contents(&reopened), want, "{what}");
        drop(reopened);
        std::fs::remove_file(&dst).unwrap();
    }
}

/// A restore into a missing name never replaces a database another process creates there
/// while it runs (forced or not: `force` is about a file that was there at the start): it
/// fails `AlreadyExists`, and that database keeps its commits.
#[test]
fn a_database_created_at_the_target_during_a_restore_is_kept() {
    let (dir, bytes, _) = make_backup();
    for force in [false, true] {
        let dst = dir.path().join(format!("appeared-{force}.fv"));
        let mut app: Option<Db> = None;
        let mut p = |_: backup::Progress| {
            if app.is_none() {
                let db = cfg(&dst).open().unwrap();
                db.insert("made while restoring", "kept").unwrap();
                db.flush().unwrap();
                app = Some(db);
            }
        };
        let r = backup::restore(
            Cursor::new(&bytes),
            &dst,
            &creds(),
            RestoreOptions { force, progress: Some(&mut p), ..Default::default() },
        );
        assert!(matches!(r, Err(Error::AlreadyExists(_))), "force {force}: {r:?}");
        drop(app.take());
        let db = cfg(&dst).open().unwrap();
        assert_eq!(db.get("made while restoring").unwrap().unwrap(), "kept");
        assert_eq!(db.tree_names().len(), 1);
    }
}

#[test]
fn wrong_key_is_wrong_key() {
    let (dir, bytes, _) = make_backup();
    let bad = Credentials::passphrase("nope");
    assert!(matches!(backup::verify(Cursor::new(&bytes), Some(&bad), &mut |_| {}), Err(Error::WrongKey { .. })));
    let dst = dir.path().join("x.fv");
    assert!(matches!(
        backup::restore(Cursor::new(&bytes), &dst, &bad, RestoreOptions::default()),
        Err(Error::WrongKey { .. })
    ));
    assert!(!dst.exists());
}

/// Any single flipped byte (sampled over every region) fails verify without a key, and
/// restore refuses; every truncation is detected.
#[test]
fn flipped_bytes_and_truncation_are_detected() {
    let (dir, bytes, _) = make_backup();
    let n = bytes.len();
    let mut offsets: Vec<usize> = (0..n).step_by(997).collect();
    // every region: headers, first chunk header, a page body, a chunk tag and hash, the trailer
    offsets.extend([0, 8, 4095, 4096, 4096 + 100, 8192, 8192 + 30, n - 70, n - 64, n - 40, n - 32, n - 1]);
    let dst = dir.path().join("never.fv");
    for (i, &off) in offsets.iter().enumerate() {
        let mut b = bytes.clone();
        b[off] ^= 0x20;
        let r = backup::verify(Cursor::new(&b), None, &mut |_| {});
        assert!(r.is_err(), "flip at {off} not detected without a key");
        let e = r.unwrap_err();
        assert!(e.is_corruption() || matches!(e, Error::UnsupportedVersion { .. }), "flip at {off}: {e}");
        if i.is_multiple_of(10) {
            assert!(backup::restore(Cursor::new(&b), &dst, &creds(), RestoreOptions::default()).is_err());
            assert!(!dst.exists());
        }
    }
    for cut in (0..n).step_by(1499).chain([n - 1, n - 32, n - 64]) {
        let r = backup::verify(Cursor::new(&bytes[..cut]), None, &mut |_| {});
        assert!(matches!(r, Err(Error::Truncated { .. })), "cut at {cut}: {r:?}");
    }
    // Bytes that are no backup, shorter than a header or not: not a backup, not a truncated one.
    for junk in [&b"not a backup at all"[..], &[0u8; 5000][..]] {
        let r = backup::verify(Cursor::new(junk), None, &mut |_| {});
        assert!(matches!(r, Err(Error::NotADatabase)), "{r:?}");
    }
    // Junk after the end is also refused.
    let mut b = bytes.clone();
    b.push(0);
    assert!(backup::verify(Cursor::new(&b), None, &mut |_| {}).is_err());
}

/// A backup taken while another thread commits equals the snapshot it started from. The
/// overlap is made sure of, not hoped for from a sleep: the snapshot is taken once the writer has
/// committed `EARLY_WRITES` times (it holds some of its writes, not only `populate`'s), and the
/// backup's progress callback waits until the writer commits again, so writes land while
/// `backup_to` runs (the write counter is asserted to have moved across it).
#[test]
fn online_backup_is_a_consistent_snapshot() {
    const EARLY_WRITES: u64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let db = cfg(&dir.path().join("live.fv")).open().unwrap();
    populate(&db);
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let (db, stop, writes) = (db.clone(), stop.clone(), writes.clone());
        std::thread::spawn(move || {
            let t = db.open_tree("metadata").unwrap();
            let mut i = 0u64;
            // At least one write, however late the thread runs.
            loop {
                let done = stop.load(Ordering::Relaxed);
                t.insert(format!("live:{i:08}"), vec![7u8; 200]).unwrap();
                if i.is_multiple_of(2) {
                    t.remove("metadata:00001").unwrap();
                    t.insert("metadata:00001", vec![i as u8; 50]).unwrap();
                }
                i += 1;
                writes.fetch_add(1, Ordering::SeqCst);
                if done {
                    break i;
                }
            }
        })
    };
    // Polls `done` every millisecond for up to a minute: whether it came true.
    let wait_for = |done: &dyn Fn() -> bool| {
        let start = std::time::Instant::now();
        while !done() {
            if start.elapsed() > std::time::Duration::from_secs(60) {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        true
    };
    let early = wait_for(&|| writes.load(Ordering::SeqCst) >= EARLY_WRITES || writer.is_finished());
    assert!(
        early && !writer.is_finished(),
        "the writer made {} of {EARLY_WRITES} writes before the backup (or it failed)",
        writes.load(Ordering::SeqCst)
    );
    let rt = db.begin_read().unwrap();
    let mut snapshot = Contents::new();
    for name in rt.tree_names() {
        let t = rt.open_tree(&name).unwrap();
        snapshot.insert(name.to_vec(), t.iter().map(|r| r.unwrap()).map(|(k, v)| (k.to_vec(), v.to_vec())).collect());
    }
    let mut out = Vec::new();
    // Whether a write was committed after the backup's first chunk was written (None: no chunk).
    let mut overlapped = None;
    let before = writes.load(Ordering::SeqCst);
    rt.backup_to(&mut out, &mut |_| {
        if overlapped.is_none() {
            let at_first_chunk = writes.load(Ordering::SeqCst);
            let moved = || writes.load(Ordering::SeqCst) > at_first_chunk;
            overlapped = Some(wait_for(&|| moved() || writer.is_finished()) && moved());
        }
    })
    .unwrap();
    let after = writes.load(Ordering::SeqCst);
    drop(rt);
    stop.store(true, Ordering::Relaxed);
    let n = writer.join().unwrap();
    assert!(n > 0);
    assert_eq!(overlapped, Some(true), "no write was committed while the backup ran (within a minute)");
    assert!(after > before, "the write counter did not move while backup_to ran ({before} before and after)");
    let dst = dir.path().join("snap.fv");
    backup::restore(Cursor::new(&out), &dst, &creds(), RestoreOptions::default()).unwrap();
    let restored = cfg(&dst).open().unwrap();
    let mut got = contents(&restored);
    got.retain(|_, t| !t.is_empty() || snapshot.contains_key(&b"x"[..]));
    snapshot.retain(|_, t| !t.is_empty());
    assert_eq!(got, snapshot);
}

/// The checked-in backups of every released backup format verify and restore forever:
/// version 1 (one chunk key per data key, a header MAC without the source header page, taken
/// of a format-1 file) and version 2 (taken of a format-2 file). A restore gives back the file
/// format the backup was taken of (SPEC §10), which stays writable and keeps that version.
#[test]
fn checked_in_backups_of_every_version_restore() {
    for (name, backup_version, file_version) in [("backup-v1.fvbk", 1u16, 1u16), ("backup-v2.fvbk", 2, 2)] {
        let bytes = std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let dst = dir.path().join("restored.fv");
        let creds = Credentials::passphrase("foldvault v1 fixture");
        let header = foldvault::backup::BackupHeader::decode(&bytes[..4096]).unwrap();
        assert_eq!(header.version, backup_version, "{name}");
        let checked = backup::verify(Cursor::new(&bytes), Some(&creds), &mut |_| {}).unwrap();
        assert!(checked.deep);
        assert_eq!(checked.trees.get(&b"metadata"[..]), Some(&100));
        backup::restore(Cursor::new(&bytes), &dst, &creds, RestoreOptions::default()).unwrap();
        let open = || Config::new().file(&dst).passphrase("foldvault v1 fixture").use_env(false).open().unwrap();
        let db = open();
        assert_eq!(db.encryption_status().format_version, file_version, "{name}");
        let t = db.open_tree("metadata").unwrap();
        assert_eq!(t.len(), 100);
        for i in 0..100u32 {
            assert_eq!(t.get(format!("key{i:03}")).unwrap().unwrap(), format!("value {i}").as_bytes());
        }
        assert_eq!(db.get("atom:fixture").unwrap().unwrap().len(), 9000);
        t.insert("after restore", &b"z"[..]).unwrap();
        drop((t, db));
        let db = open();
        assert_eq!(db.encryption_status().format_version, file_version, "{name}");
        assert!(db.check().unwrap().is_ok());
        assert_eq!(db.open_tree("metadata").unwrap().len(), 101);
    }
}

/// A backup taken today of the checked-in format-1 file restores a format-1 file.
#[test]
fn a_backup_of_a_v1_file_restores_a_v1_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("v1.foldvault");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/v1.foldvault"), &src).unwrap();
    let open = |p: &std::path::Path| Config::new().file(p).passphrase("foldvault v1 fixture").use_env(false).open();
    let mut out = Vec::new();
    open(&src).unwrap().backup_to(&mut out, &mut |_| {}).unwrap();
    assert_eq!(foldvault::backup::BackupHeader::decode(&out[..4096]).unwrap().version, 2);
    let dst = dir.path().join("restored.fv");
    backup::restore(Cursor::new(&out), &dst, &Credentials::passphrase("foldvault v1 fixture"), Default::default())
        .unwrap();
    let db = open(&dst).unwrap();
    assert_eq!(db.encryption_status().format_version, 1);
    assert!(db.check().unwrap().is_ok());
    assert_eq!(db.open_tree("metadata").unwrap().len(), 100);
}

/// Writes the fixtures of the current versions, `tests/data/v{FORMAT_VERSION}.foldvault` and
/// `backup-v{BACKUP_VERSION}.fvbk` (run by hand: `cargo test --test backup make_fixtures --
/// --ignored`), leaving any already there: the checked-in files of a released version are never
/// made again (the version-1 ones came from the build of that version). Their passphrase is
/// "foldvault v1 fixture" for every version.
#[test]
#[ignore]
fn make_fixtures() {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    let file_out = format!("{data}/v{}.foldvault", foldvault::format::FORMAT_VERSION);
    let backup_out = format!("{data}/backup-v{}.fvbk", foldvault::backup::BACKUP_VERSION);
    assert!(!std::path::Path::new(&file_out).exists() && !std::path::Path::new(&backup_out).exists());
    let dir = tempfile::tempdir().unwrap();
    let kdf = KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 };
    let db = Config::new()
        .file(dir.path().join("v.foldvault"))
        .passphrase("foldvault v1 fixture")
        .kdf(kdf)
        .use_env(false)
        .open()
        .unwrap();
    let t = db.open_tree("metadata").unwrap();
    for i in 0..100u32 {
        t.insert(format!("key{i:03}"), format!("value {i}").into_bytes()).unwrap();
    }
    db.insert("atom:fixture", vec![b'x'; 9000]).unwrap();
    db.flush().unwrap();
    let mut out = Vec::new();
    db.backup_to(&mut out, &mut |_| {}).unwrap();
    std::fs::write(backup_out, out).unwrap();
    drop(t);
    drop(db);
    std::fs::copy(dir.path().join("v.foldvault"), file_out).unwrap();
}

/// Makes a backup header's unkeyed checksum hold again after an edit (as anyone can).
fn fix_backup_header_checksum(b: &mut [u8]) {
    use foldvault::backup::format::B_CHECKSUM_OFFSET;
    let sum = blake3::hash(&b[..B_CHECKSUM_OFFSET]);
    b[B_CHECKSUM_OFFSET..B_CHECKSUM_OFFSET + 32].copy_from_slice(sum.as_bytes());
}

/// An edited backup header (a raised sequence number, checksum and stream hash recomputed) passes the keyless
/// check — the checksum only finds damage — but not verify-with-key nor restore: its MAC does
/// not verify.
#[test]
fn forged_backup_header_does_not_restore() {
    use foldvault::backup::format::B_SEQ_OFFSET;
    let (dir, bytes, _) = make_backup();
    let mut b = bytes.clone();
    let seq = u64::from_le_bytes(b[B_SEQ_OFFSET..B_SEQ_OFFSET + 8].try_into().unwrap());
    b[B_SEQ_OFFSET..B_SEQ_OFFSET + 8].copy_from_slice(&(seq + 1000).to_le_bytes());
    fix_backup_header_checksum(&mut b);
    // The unkeyed stream hash (the last 32 bytes) can be recomputed too.
    let n = b.len();
    let stream = blake3::hash(&b[..n - 32]);
    b[n - 32..].copy_from_slice(stream.as_bytes());
    assert!(backup::verify(Cursor::new(&b), None, &mut |_| {}).is_ok(), "unkeyed hashes alone cannot tell");
    let deep = backup::verify(Cursor::new(&b), Some(&creds()), &mut |_| {});
    assert!(matches!(deep, Err(Error::BackupCorrupt { what: "backup header MAC", .. })), "{deep:?}");
    let dst = dir.path().join("forged.fv");
    assert!(backup::restore(Cursor::new(&b), &dst, &creds(), RestoreOptions::default()).is_err());
    assert!(!dst.exists());
}

/// The source header page in a backup, edited (its generation raised) with its checksum and
/// the stream hash refitted: its own MAC fails once a slot unlocks, and verify and restore name
/// the backup's damage at the byte the page starts at, not page 0 of a database.
#[test]
fn an_edited_source_header_is_named_as_the_backups_damage() {
    use foldvault::format::header::{CHECKSUM_OFFSET, CHECKSUM_SIZE, GENERATION_OFFSET};
    let (dir, bytes, _) = make_backup();
    let mut b = bytes.clone();
    let page = &mut b[4096..8192];
    page[GENERATION_OFFSET] ^= 1;
    let sum = blake3::hash(&page[..CHECKSUM_OFFSET]);
    page[CHECKSUM_OFFSET..CHECKSUM_OFFSET + CHECKSUM_SIZE].copy_from_slice(sum.as_bytes());
    let n = b.len();
    let stream = blake3::hash(&b[..n - 32]);
    b[n - 32..].copy_from_slice(stream.as_bytes());
    assert!(backup::verify(Cursor::new(&b), None, &mut |_| {}).is_ok(), "unkeyed hashes alone cannot tell");
    let deep = backup::verify(Cursor::new(&b), Some(&creds()), &mut |_| {}).map(drop);
    assert!(names_the_source_header_mac(&deep), "{deep:?}");
    let dst = dir.path().join("edited.fv");
    let restored = backup::restore(Cursor::new(&b), &dst, &creds(), RestoreOptions::default()).map(drop);
    assert!(names_the_source_header_mac(&restored), "{restored:?}");
    assert!(!dst.exists());
}

fn names_the_source_header_mac(r: &foldvault::Result<()>) -> bool {
    matches!(r, Err(Error::BackupCorrupt { offset: 4096, what: "source header MAC", .. }))
}

/// A target that is a symbolic link to nothing is refused before the stream is read (it was
/// refused only at the end, every byte read and checked: a review's case).
#[test]
fn a_target_linked_to_nothing_is_refused_before_reading() {
    let (dir, bytes, _) = make_backup();
    let dst = dir.path().join("dangling.fv");
    std::os::unix::fs::symlink(dir.path().join("missing.fv"), &dst).unwrap();
    let mut stream = Cursor::new(&bytes);
    let opts = RestoreOptions { force: true, ..RestoreOptions::default() };
    let r = backup::restore(&mut stream, &dst, &creds(), opts);
    assert!(matches!(r, Err(Error::Unsupported(_))), "{r:?}");
    assert_eq!(stream.position(), 0, "nothing was read");
    assert!(!dir.path().join("missing.fv").exists());
}

/// Restore's progress counts the stream's bytes as it reads them (it said 0 throughout).
#[test]
fn restore_progress_counts_the_bytes_read() {
    let (dir, bytes, _) = make_backup();
    let mut seen = Vec::new();
    let mut progress = |p: foldvault::backup::Progress| seen.push(p.bytes);
    let opts = RestoreOptions { progress: Some(&mut progress), ..RestoreOptions::default() };
    backup::restore(Cursor::new(&bytes), &dir.path().join("progress.fv"), &creds(), opts).unwrap();
    assert!(!seen.is_empty() && seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert!(seen[0] > 0 && *seen.last().unwrap() <= bytes.len() as u64, "{seen:?}");
}

/// A plaintext backup's header (no MAC: anyone may edit it and refit its hashes) claiming a
/// page count below the first data page is refused by verify as by restore: verify took it, and
/// restore then wrote a commit record no open accepts (a review's case). Verify checks what
/// restore checks.
#[test]
fn a_page_count_below_the_first_data_page_is_refused_by_verify_and_restore() {
    use foldvault::backup::format::B_PAGE_COUNT_OFFSET;
    let dir = tempfile::tempdir().unwrap();
    let db = Config::new().file(dir.path().join("src.fv")).plaintext().use_env(false).open().unwrap();
    let mut bytes = Vec::new();
    db.backup_to(&mut bytes, &mut |_| {}).unwrap();
    for count in [0u64, 3] {
        let mut b = bytes.clone();
        b[B_PAGE_COUNT_OFFSET..B_PAGE_COUNT_OFFSET + 8].copy_from_slice(&count.to_le_bytes());
        fix_backup_header_checksum(&mut b);
        let n = b.len();
        let stream = blake3::hash(&b[..n - 32]);
        b[n - 32..].copy_from_slice(stream.as_bytes());
        let verified = backup::verify(Cursor::new(&b), None, &mut |_| {});
        assert!(matches!(verified, Err(Error::BackupCorrupt { .. })), "{count}: {verified:?}");
        let dst = dir.path().join(format!("restored-{count}.fv"));
        let restored = backup::restore(Cursor::new(&b), &dst, &Credentials::none(), RestoreOptions::default());
        assert!(matches!(restored, Err(Error::BackupCorrupt { .. })), "{count}: {restored:?}");
        assert!(!dst.exists());
    }
}

/// The source header page is bound to the backup (version 2): another copy of the source's
/// header (here the one from before a slot was removed, whose slot the removed passphrase
/// opens), spliced into a later backup with every unkeyed hash recomputed, unlocks the same
/// data key, yet neither verify-with-key nor restore takes it.
#[test]
fn a_spliced_source_header_does_not_restore() {
    let dir = tempfile::tempdir().unwrap();
    let db = cfg(&dir.path().join("src.fv")).open().unwrap();
    populate(&db);
    let old_slot = db.add_slot(&Credentials::passphrase("removed later"), KdfParams::insecure_fast()).unwrap();
    let mut before = Vec::new();
    db.backup_to(&mut before, &mut |_| {}).unwrap();
    db.remove_slot(old_slot).unwrap();
    let mut after = Vec::new();
    db.backup_to(&mut after, &mut |_| {}).unwrap();
    drop(db);
    let page = 4096;
    assert_ne!(before[page..2 * page], after[page..2 * page], "the header did not change");
    let mut b = after.clone();
    b[page..2 * page].copy_from_slice(&before[page..2 * page]);
    let n = b.len();
    let stream = blake3::hash(&b[..n - 32]);
    b[n - 32..].copy_from_slice(stream.as_bytes());
    assert!(backup::verify(Cursor::new(&b), None, &mut |_| {}).is_ok(), "unkeyed hashes alone cannot tell");
    let removed = Credentials::passphrase("removed later");
    for c in [creds(), removed.duplicate()] {
        let deep = backup::verify(Cursor::new(&b), Some(&c), &mut |_| {});
        assert!(matches!(deep, Err(Error::BackupCorrupt { what: "backup header MAC", .. })), "{deep:?}");
        let dst = dir.path().join("spliced.fv");
        assert!(backup::restore(Cursor::new(&b), &dst, &c, RestoreOptions::default()).is_err());
        assert!(!dst.exists());
    }
    // The removed passphrase opens neither untouched backup taken after its removal.
    let deep = backup::verify(Cursor::new(&after), Some(&removed), &mut |_| {});
    assert!(matches!(deep, Err(Error::WrongKey { .. })), "{deep:?}");
}

/// Reserved header bytes must be zero (checksum recomputed): they are outside the MAC.
#[test]
fn reserved_backup_header_bytes_are_refused() {
    use foldvault::backup::format::{B_CHECKSUM_OFFSET, B_FIELDS_END};
    let (_dir, bytes, _) = make_backup();
    for at in [B_FIELDS_END, B_CHECKSUM_OFFSET - 1] {
        let mut b = bytes.clone();
        b[at] = 1;
        fix_backup_header_checksum(&mut b);
        let r = backup::verify(Cursor::new(&b), None, &mut |_| {});
        assert!(matches!(r, Err(Error::BackupCorrupt { what: "backup header field out of range", .. })), "{r:?}");
    }
}

/// A flag bit the format does not define (checksum recomputed) is refused when the header is
/// read: the header MAC covers the fields as decoded, so such a bit would pass unauthenticated.
#[test]
fn an_unknown_backup_flag_is_refused() {
    use foldvault::backup::format::B_FLAGS_OFFSET;
    let (_dir, bytes, _) = make_backup();
    for bit in [1u16 << 1, 1 << 15] {
        let mut b = bytes.clone();
        let flags = u16::from_le_bytes([b[B_FLAGS_OFFSET], b[B_FLAGS_OFFSET + 1]]) | bit;
        b[B_FLAGS_OFFSET..B_FLAGS_OFFSET + 2].copy_from_slice(&flags.to_le_bytes());
        fix_backup_header_checksum(&mut b);
        let r = backup::verify(Cursor::new(&b), None, &mut |_| {});
        assert!(matches!(r, Err(Error::BackupCorrupt { offset: 0, .. })), "{bit:#x}: {r:?}");
    }
}

/// `Encryption::Required` refuses a backup of a plaintext database before writing anything;
/// `Auto` restores it as plaintext even with credentials given.
#[test]
fn required_encryption_refuses_a_plaintext_backup() {
    let dir = tempfile::tempdir().unwrap();
    let db = Config::new().file(dir.path().join("plain.fv")).plaintext().use_env(false).open().unwrap();
    populate(&db);
    let mut out = Vec::new();
    db.backup_to(&mut out, &mut |_| {}).unwrap();
    let dst = dir.path().join("restored.fv");
    let required = RestoreOptions { encryption: foldvault::Encryption::Required, ..Default::default() };
    let r = backup::restore(Cursor::new(&out), &dst, &creds(), required);
    assert!(matches!(r, Err(Error::Unsupported(_))), "{r:?}");
    assert!(!dst.exists());
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.iter().all(|n| !n.to_string_lossy().contains("restored")), "{left:?}");
    backup::restore(Cursor::new(&out), &dst, &creds(), RestoreOptions::default()).unwrap();
    let r = Config::new().file(&dst).use_env(false).open().unwrap();
    assert!(!r.is_encrypted());
    assert_eq!(contents(&r), contents(&db));
}

/// Input too short to hold a header is `NotADatabase` unless what is there starts as the
/// format does (then `Truncated`): a short text file is not "a truncated database".
#[test]
fn short_inputs_that_are_not_ours_are_not_a_database() {
    let verify = |b: &[u8]| backup::verify(b, None, &mut |_| {});
    assert!(matches!(verify(b"abc"), Err(Error::NotADatabase)));
    assert!(matches!(verify(b"FVB"), Err(Error::Truncated { .. })));
    assert!(matches!(verify(b"FVBACKUP"), Err(Error::Truncated { .. })));
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "a hundred bytes of someone's notes, opened by mistake as a database file\n").unwrap();
    assert!(matches!(cfg(&text).open(), Err(Error::NotADatabase)));
    let (_d, bytes, _) = make_backup();
    assert!(matches!(verify(&bytes[..100]), Err(Error::Truncated { .. })));
}

/// A plaintext backup whose first chunk is split in two (every hash, the trailer and the stream
/// hash recomputed, as anyone can for a plaintext source): it holds the same pages, but not in
/// full chunks, so its header's page count no longer describes the stream. Refused.
#[test]
fn a_stream_of_short_chunks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = Config::new().file(dir.path().join("p.fv")).plaintext().use_env(false).open().unwrap();
    populate(&db);
    let mut b = Vec::new();
    db.backup_to(&mut b, &mut |_| {}).unwrap();
    backup::verify(&b[..], None, &mut |_| {}).unwrap();
    const HEAD: usize = 24;
    const ENTRY: usize = 4104;
    let (chunk_at, first_n) = (8192, u32::from_le_bytes(b[8192 + 8..8192 + 12].try_into().unwrap()) as usize);
    assert!(first_n >= 2, "the first chunk holds {first_n} pages");
    let chunk = |index: u64, entries: &[u8]| {
        let mut c = Vec::new();
        c.extend_from_slice(&index.to_le_bytes());
        c.extend_from_slice(&((entries.len() / ENTRY) as u32).to_le_bytes());
        c.extend_from_slice(&[0; 12]);
        c.extend_from_slice(entries);
        c.extend_from_slice(&[0; 16]);
        let h = blake3::hash(&c);
        c.extend_from_slice(h.as_bytes());
        c
    };
    let entries = &b[chunk_at + HEAD..chunk_at + HEAD + first_n * ENTRY];
    let half = first_n / 2 * ENTRY;
    let mut out = b[..chunk_at].to_vec();
    out.extend(chunk(0, &entries[..half]));
    out.extend(chunk(1, &entries[half..]));
    // The later chunks, renumbered.
    let mut at = chunk_at + HEAD + first_n * ENTRY + 48;
    let mut index = 2u64;
    let trailer_at = b.len() - 64;
    while at < trailer_at {
        let n = u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
        out.extend(chunk(index, &b[at + HEAD..at + HEAD + n * ENTRY]));
        at += HEAD + n * ENTRY + 48;
        index += 1;
    }
    let mut trailer = b[trailer_at..trailer_at + 32].to_vec();
    trailer[8..16].copy_from_slice(&index.to_le_bytes());
    trailer[24..32].copy_from_slice(&(out.len() as u64).to_le_bytes());
    out.extend_from_slice(&trailer);
    let h = blake3::hash(&out);
    out.extend_from_slice(h.as_bytes());
    let r = backup::verify(&out[..], None, &mut |_| {});
    assert!(matches!(&r, Err(Error::BackupCorrupt { what: "chunk header", .. })), "{r:?}");
}

/// Tree names are bytes: two names that are not UTF-8 (and would both read as U+FFFD as text)
/// are two entries, with their own counts, in every report (check, deep verify, restore, copy,
/// salvage), never merged into one.
#[test]
fn reports_keep_tree_names_that_are_not_utf8_apart() {
    let dir = tempfile::tempdir().unwrap();
    let db = cfg(&dir.path().join("src.fv")).open().unwrap();
    let (a, b) = (vec![0xff, b'x'], vec![0xfe, b'x']);
    db.open_tree(&a).unwrap().insert("k", "v").unwrap();
    let tb = db.open_tree(&b).unwrap();
    tb.insert("k1", "v").unwrap();
    tb.insert("k2", "v").unwrap();
    db.flush().unwrap();
    let want: BTreeMap<Vec<u8>, u64> = [(a.clone(), 1), (b.clone(), 2)].into();
    let of = |pairs: Vec<(Vec<u8>, u64)>| -> BTreeMap<Vec<u8>, u64> {
        pairs.into_iter().filter(|(n, _)| n[0] >= 0x80).collect()
    };

    let check = db.check().unwrap();
    assert_eq!(of(check.trees.iter().map(|t| (t.name.clone(), t.records)).collect()), want);

    let mut out = Vec::new();
    db.backup_to(&mut out, &mut |_| {}).unwrap();
    let deep = backup::verify(Cursor::new(&out), Some(&creds()), &mut |_| {}).unwrap();
    assert_eq!(of(deep.trees.clone().into_iter().collect()), want);
    let restored = backup::restore(Cursor::new(&out), &dir.path().join("restored.fv"), &creds(), Default::default());
    assert_eq!(of(restored.unwrap().trees.into_iter().collect()), want);

    let copy =
        foldvault::migrate::copy_to(&db, &dir.path().join("copy.fv"), &cfg(&dir.path().join("copy.fv")), &mut |_| {});
    assert_eq!(of(copy.unwrap().trees.iter().map(|(n, c, _)| (n.clone(), *c)).collect()), want);
    drop((db, tb));

    let salvaged = foldvault::salvage(&cfg(&dir.path().join("src.fv")), &cfg(&dir.path().join("salvaged.fv"))).unwrap();
    assert_eq!(of(salvaged.copied.clone().into_iter().collect()), want);
    assert!(!salvaged.lost_anything());
}

/// A value of a megabyte is a chain of some 260 overflow pages below its leaf: deep verify
/// walks it as a chain, not as 260 tree levels, and the backup verifies and restores.
#[test]
fn a_backup_of_a_large_value_verifies_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let db = cfg(&dir.path().join("src.fv")).open().unwrap();
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    db.insert("big", big.clone()).unwrap();
    db.open_tree("t").unwrap().insert("also", big[..300_000].to_vec()).unwrap();
    db.flush().unwrap();
    let mut out = Vec::new();
    db.backup_to(&mut out, &mut |_| {}).unwrap();
    let deep = backup::verify(Cursor::new(&out), Some(&creds()), &mut |_| {}).unwrap();
    assert_eq!(deep.trees.get(&b"t"[..]), Some(&1));
    let dst = dir.path().join("restored.fv");
    backup::restore(Cursor::new(&out), &dst, &creds(), Default::default()).unwrap();
    assert_eq!(cfg(&dst).open().unwrap().get("big").unwrap().unwrap(), big);
}

/// The chunks of a backup as they lie after its two header pages (header, index first).
fn backup_chunks(b: &[u8]) -> Vec<Vec<u8>> {
    let (mut at, trailer_at, mut out) = (8192, b.len() - 64, Vec::new());
    while at < trailer_at {
        let n = u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
        let len = 24 + n * 4104 + 48;
        out.push(b[at..at + len].to_vec());
        at += len;
    }
    out
}

/// `b`'s headers, `chunks` numbered by their place with their hashes computed again, and a
/// trailer and stream hash that fit them: every unkeyed check holds.
fn reassemble_backup(b: &[u8], chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b[..8192].to_vec();
    let mut pages = 0u64;
    for (i, c) in chunks.iter().enumerate() {
        let mut c = c.clone();
        c[..8].copy_from_slice(&(i as u64).to_le_bytes());
        pages += u64::from(u32::from_le_bytes(c[8..12].try_into().unwrap()));
        let l = c.len();
        let h = blake3::hash(&c[..l - 32]);
        c[l - 32..].copy_from_slice(h.as_bytes());
        out.extend(c);
    }
    let trailer_at = b.len() - 64;
    let mut trailer = b[trailer_at..trailer_at + 32].to_vec();
    trailer[8..16].copy_from_slice(&(chunks.len() as u64).to_le_bytes());
    trailer[16..24].copy_from_slice(&pages.to_le_bytes());
    trailer[24..32].copy_from_slice(&(out.len() as u64).to_le_bytes());
    out.extend_from_slice(&trailer);
    let h = blake3::hash(&out);
    out.extend_from_slice(h.as_bytes());
    out
}

/// An encrypted backup's chunks are bound to their place and to their backup (SPEC §13.2: the
/// chunk AAD names the backup id and the index): two chunks swapped, or a chunk of another
/// backup of the same database spliced in, each with every unkeyed hash made to fit, pass the
/// unkeyed verify and fail the keyed verify and the restore, which creates nothing.
#[test]
fn swapped_or_spliced_chunks_fail_the_keyed_checks() {
    let dir = tempfile::tempdir().unwrap();
    let db = cfg(&dir.path().join("src.fv")).open().unwrap();
    populate(&db);
    let mut b = foldvault::Batch::default();
    for i in 0..4000u32 {
        b.insert(format!("more:{i:05}"), vec![(i % 251) as u8; 200]);
    }
    db.apply_batch(b).unwrap();
    let backup_of = |db: &Db| {
        let mut out = Vec::new();
        db.backup_to(&mut out, &mut |_| {}).unwrap();
        out
    };
    let (bytes, other) = (backup_of(&db), backup_of(&db));
    let chunks = backup_chunks(&bytes);
    assert!(chunks.len() >= 3, "{} chunks", chunks.len());
    assert_eq!(reassemble_backup(&bytes, &chunks), bytes, "the forging tools change an untouched backup");
    let other_chunks = backup_chunks(&other);
    assert_eq!(other_chunks[0].len(), chunks[0].len());
    let mut swapped = chunks.clone();
    swapped.swap(0, 1);
    let mut spliced = chunks.clone();
    spliced[0] = other_chunks[0].clone();
    let dst = dir.path().join("never.fv");
    for (what, forged) in [("swapped", swapped), ("spliced", spliced)] {
        let b = reassemble_backup(&bytes, &forged);
        backup::verify(Cursor::new(&b), None, &mut |_| {}).unwrap_or_else(|e| panic!("{what}: unkeyed verify: {e}"));
        let r = backup::verify(Cursor::new(&b), Some(&creds()), &mut |_| {});
        assert!(matches!(r, Err(Error::BackupCorrupt { chunk: Some(0 | 1), .. })), "{what}: keyed verify: {r:?}");
        let r = backup::restore(Cursor::new(&b), &dst, &creds(), RestoreOptions::default());
        assert!(matches!(r, Err(Error::BackupCorrupt { .. })), "{what}: restore: {r:?}");
        assert!(!dst.exists(), "{what}: restore left a file");
    }
}
