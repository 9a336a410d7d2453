//! The foundation: keys and slots at the file level, the nonce budget, locking, and secrets
//! that never print.

use std::sync::Arc;

mod common;

use foldvault::storage::{MemoryStorage, Storage};
use foldvault::{Config, CorruptReason, Credentials, Error, KdfParams, MasterKey};

fn mem() -> (MemoryStorage, Arc<dyn Storage>) {
    let m = MemoryStorage::new();
    let s: Arc<dyn Storage> = Arc::new(m.clone());
    (m, s)
}

/// An encrypted database on `s` whose key epochs last `budget` seals.
fn budgeted(s: &Arc<dyn Storage>, budget: u64) -> Config {
    Config::new().storage(s.clone()).passphrase("pw").kdf(KdfParams::insecure_fast()).use_env(false).seal_budget(budget)
}

#[test]
fn wrong_passphrase_and_wrong_master_key_are_wrong_key() {
    let (_, s) = mem();
    let db = Config::new()
        .storage(s.clone())
        .passphrase("right")
        .kdf(KdfParams::insecure_fast())
        .use_env(false)
        .open()
        .unwrap();
    db.insert("k", &b"v"[..]).unwrap();
    drop(db);
    let r = Config::new().storage(s.clone()).passphrase("wrong").use_env(false).open();
    assert!(matches!(r, Err(Error::WrongKey { .. })), "{r:?}");
    let r = Config::new().storage(s.clone()).use_env(false).open();
    match r {
        Err(Error::WrongKey { hint }) => {
            assert!(hint.contains("FOLDVAULT_KEY_FILE") && hint.contains("FOLDVAULT_PASSPHRASE"))
        }
        other => panic!("{other:?}"),
    }

    let (_, s) = mem();
    let db = Config::new().storage(s.clone()).master_key(MasterKey::from_bytes([1; 32])).use_env(false).open().unwrap();
    drop(db);
    let r = Config::new().storage(s.clone()).master_key(MasterKey::from_bytes([2; 32])).use_env(false).open();
    assert!(matches!(r, Err(Error::WrongKey { .. })));
    Config::new().storage(s).master_key(MasterKey::from_bytes([1; 32])).use_env(false).open().unwrap();
}

/// A changed KDF parameter in the header is detected: in one copy by its checksum (the other
/// copy is used and the damaged one repaired); in both copies with checksums recomputed, the
/// slot no longer unwraps.
#[test]
fn changed_kdf_parameter_is_detected() {
    use foldvault::format::header::{CHECKSUM_OFFSET, SLOT_ITERATIONS_OFFSET, SLOTS_OFFSET};
    let (m, s) = mem();
    let db = Config::new().storage(s).passphrase("pw").kdf(KdfParams::insecure_fast()).use_env(false).open().unwrap();
    db.insert("k", &b"v"[..]).unwrap();
    db.flush().unwrap();
    drop(db);
    let good = m.snapshot();
    let off = SLOTS_OFFSET + SLOT_ITERATIONS_OFFSET;
    // One copy, checksum not fixed: repaired from the other.
    let mut img = good.clone();
    img[off] ^= 1;
    let s: Arc<dyn Storage> = Arc::new(MemoryStorage::from_bytes(img));
    let db = Config::new().storage(s).passphrase("pw").use_env(false).open().unwrap();
    assert_eq!(db.recovery_report().header_repaired, Some(0));
    // Both copies, checksums recomputed: the slot's AAD binds the parameter.
    let mut img = good.clone();
    for base in [0usize, 4096] {
        img[base + off] ^= 1;
        let sum = blake3::hash(&img[base..base + CHECKSUM_OFFSET]);
        img[base + CHECKSUM_OFFSET..base + CHECKSUM_OFFSET + 32].copy_from_slice(sum.as_bytes());
    }
    let s: Arc<dyn Storage> = Arc::new(MemoryStorage::from_bytes(img));
    let r = Config::new().storage(s).passphrase("pw").use_env(false).open();
    // The changed count is in range (so the slot is tried, not skipped): the wrap's AAD fails,
    // which is a wrong key, never corruption (SPEC §6.2).
    assert!(matches!(r, Err(Error::WrongKey { .. })), "{r:?}");
}

/// When a key's seal budget is spent the engine moves to a new epoch by itself, and every page
/// of every epoch still opens.
#[test]
fn seal_budget_rolls_over_to_new_epochs() {
    let (_, s) = mem();
    let db = budgeted(&s, 200).open().unwrap();
    let t = db.open_tree("t").unwrap();
    for i in 0..3000u32 {
        t.insert(format!("k{i:05}"), vec![i as u8; 300]).unwrap();
        if i % 100 == 0 {
            db.flush().unwrap();
        }
    }
    db.flush().unwrap();
    let m = db.metrics();
    assert!(m.key_epoch >= 5, "epoch {}", m.key_epoch);
    assert!(m.seals_in_epoch <= 200 + 64);
    drop(t);
    drop(db);
    let db = budgeted(&s, 200).open().unwrap();
    let t = db.open_tree("t").unwrap();
    assert_eq!(t.len(), 3000);
    assert!(db.check().unwrap().is_ok());
    assert_eq!(t.get("k00007").unwrap().unwrap().len(), 300);
}

/// Seals no durable commit counts (a large transaction's leaves written early, then the
/// transaction dropped) are counted at a clean close: the next session starts from them and
/// moves to a new epoch once the budget is spent. The close wrote nothing, the next open counted
/// from the record again, and sessions that commit nothing durable sealed without bound under
/// one key's epoch.
#[test]
fn seals_of_a_dropped_transaction_count_across_a_close() {
    let (_, s) = mem();
    let cfg = budgeted(&s, 16).tx_spill_after(16).flush_every_ms(None);
    drop(cfg.open().unwrap());
    let before = cfg.open().unwrap();
    let epoch = before.metrics().key_epoch;
    {
        let tx = before.begin_write().unwrap();
        let t = tx.open_tree("t").unwrap();
        for i in 0..3000u32 {
            t.insert(format!("k{i:05}"), vec![i as u8; 300]).unwrap();
        }
        // Dropped: no commit, only the leaves written early.
    }
    assert!(before.metrics().seals_in_epoch >= 16, "the dropped transaction wrote its leaves early");
    drop(before);
    let db = cfg.open().unwrap();
    db.insert("k", "v").unwrap();
    assert!(db.metrics().key_epoch > epoch, "the next session sealed on under the spent epoch");
}

/// `check` lists damage as problems and fails only when it cannot run: a header copy that
/// does not read (the check's first I/O) is an I/O error, not a damaged header copy.
#[test]
fn check_reports_an_unreadable_device_as_an_io_error_not_damage() {
    use foldvault::storage::{FaultPlan, FaultyStorage};
    let device = FaultyStorage::new();
    let s: Arc<dyn Storage> = Arc::new(device.clone());
    let db = Config::new().storage(s).plaintext().use_env(false).flush_every_ms(None).open().unwrap();
    db.insert("k", "v").unwrap();
    db.flush().unwrap();
    assert!(db.check().unwrap().is_ok());
    device.set_plan(FaultPlan { fail_at: Some(1), ..FaultPlan::default() });
    match db.check() {
        Err(Error::Io(_)) => {}
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

/// The check reads every page from the file, not from the cache: a page damaged on the disk
/// after it was read or written is reported (compaction and check review: a cached copy
/// vouched for it).
#[test]
fn check_reads_pages_from_the_file_not_the_cache() {
    use foldvault::PageRole;
    let s: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let db = Config::new().storage(s.clone()).plaintext().use_env(false).flush_every_ms(None).open().unwrap();
    let t = db.open_tree("t").unwrap();
    t.insert("k", "v").unwrap();
    db.flush().unwrap();
    assert_eq!(t.get("k").unwrap().unwrap(), "v");
    let report = db.check().unwrap();
    assert!(report.is_ok());
    let leaf = report.roles.pages(|r| *r == PageRole::Tree("t".into())).next().unwrap();
    let mut page = vec![0u8; 4096];
    s.read_at(leaf * 4096, &mut page).unwrap();
    page[100] ^= 0x40;
    s.write_at(leaf * 4096, &page).unwrap();
    let problems = db.check().unwrap().problems;
    assert!(problems.iter().any(|p| p.page == leaf && p.reason == CorruptReason::SealMismatch), "{problems:?}");
}

/// A value's overflow chain with a page that reads as past the file's end (a storage cut short
/// there under an open handle): the check names that page `PageOutOfRange`, once, as it names a
/// tree page there; it named it `SealMismatch` on the chain's first page, and leaked.
#[test]
fn check_names_an_overflow_page_past_the_files_end_out_of_range() {
    use foldvault::PageRole;
    use foldvault::format::page::{KIND_OFFSET, PageKind};
    use std::sync::atomic::{AtomicU64, Ordering};
    /// Memory whose page `cut` reads as the end of the file.
    struct CutAt(MemoryStorage, AtomicU64);
    impl Storage for CutAt {
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
            match offset / 4096 == self.1.load(Ordering::Relaxed) {
                true => Err(std::io::ErrorKind::UnexpectedEof.into()),
                false => self.0.read_at(offset, buf),
            }
        }
        fn write_at(&self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
            self.0.write_at(offset, buf)
        }
        fn sync(&self) -> std::io::Result<()> {
            self.0.sync()
        }
        fn len(&self) -> std::io::Result<u64> {
            self.0.len()
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.0.set_len(len)
        }
    }
    let s = Arc::new(CutAt(MemoryStorage::new(), AtomicU64::new(u64::MAX)));
    let db = Config::new().storage(s.clone()).plaintext().use_env(false).flush_every_ms(None).open().unwrap();
    let t = db.open_tree("t").unwrap();
    t.insert("k", vec![7u8; 3 * 4096]).unwrap();
    db.flush().unwrap();
    let report = db.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let mut page = vec![0u8; 4096];
    let chain: Vec<u64> = report
        .roles
        .pages(|r| *r == PageRole::Tree("t".into()))
        .filter(|&p| {
            s.read_at(p * 4096, &mut page).unwrap();
            page[KIND_OFFSET] == PageKind::Overflow as u8
        })
        .collect();
    assert_eq!(chain.len(), 4, "{chain:?}");
    let cut = chain[2];
    s.1.store(cut, Ordering::Relaxed);
    let problems = db.check().unwrap().problems;
    let at_cut: Vec<_> = problems.iter().filter(|p| p.page == cut).map(|p| p.reason).collect();
    assert_eq!(at_cut, [CorruptReason::PageOutOfRange], "{problems:?}");
    // The chain's first page is sound; the page after the cut is reached by nothing (a leak).
    assert!(!problems.iter().any(|p| p.page == chain[0] || p.reason == CorruptReason::SealMismatch), "{problems:?}");
    // The free list's page, likewise: a problem of the check, not a failed check.
    let free_list: Vec<u64> = report.roles.pages(|r| *r == PageRole::FreeList).collect();
    assert_eq!(free_list.len(), 1);
    s.1.store(free_list[0], Ordering::Relaxed);
    let problems = db.check().unwrap().problems;
    let listed: Vec<_> = problems.iter().filter(|p| p.page == free_list[0]).map(|p| p.reason).collect();
    assert_eq!(listed, [CorruptReason::PageOutOfRange], "{problems:?}");
}

/// A header copy whose magic or version this reader does not know is reported by the check as
/// `HeaderField` (SPEC §2 checks them before the checksum), not as a checksum mismatch.
#[test]
fn check_names_a_header_copys_unknown_magic_or_version_a_field() {
    use foldvault::format::header::{CHECKSUM_OFFSET, MAGIC_OFFSET, VERSION_OFFSET};
    for (offset, byte) in [(MAGIC_OFFSET, b'X'), (VERSION_OFFSET, 0xEE)] {
        let s: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let db = Config::new().storage(s.clone()).plaintext().use_env(false).flush_every_ms(None).open().unwrap();
        db.insert("k", "v").unwrap();
        db.flush().unwrap();
        // Copy B edited, its checksum made to fit (so that a version it does not know is what
        // the reader meets; a magic is looked at before the checksum either way).
        let mut page = vec![0u8; 4096];
        s.read_at(4096, &mut page).unwrap();
        page[offset] = byte;
        let sum = *blake3::hash(&page[..CHECKSUM_OFFSET]).as_bytes();
        page[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 32].copy_from_slice(&sum);
        s.write_at(4096, &page).unwrap();
        let report = db.check().unwrap();
        let header: Vec<_> = report.problems.iter().filter(|p| p.tree == "header").collect();
        assert_eq!(header.len(), 1, "{offset}: {:?}", report.problems);
        assert_eq!((header[0].page, header[0].reason), (1, CorruptReason::HeaderField), "{offset}");
    }
}

#[test]
fn second_open_of_a_locked_file_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("db.fv");
    let db = Config::new().file(&p).plaintext().use_env(false).open().unwrap();
    assert!(matches!(Config::new().file(&p).plaintext().use_env(false).open(), Err(Error::Locked)));
    drop(db);
    Config::new().file(&p).plaintext().use_env(false).open().unwrap();
}

#[test]
fn debug_of_keys_and_config_shows_no_key_bytes() {
    let mk = MasterKey::from_bytes([0x5A; 32]);
    let cfg = Config::new()
        .file("/tmp/x")
        .passphrase("p4ssphrase-SECRET")
        .master_key(mk.duplicate())
        .recovery_key(MasterKey::from_bytes([0x5A; 32]));
    let creds = Credentials::master_key(mk.duplicate()).with_passphrase("p4ssphrase-SECRET");
    for s in [format!("{cfg:?}"), format!("{mk:?}"), format!("{mk}"), format!("{creds:?}")] {
        assert!(!s.contains("SECRET"), "{s}");
        assert!(!s.to_lowercase().contains("5a5a"), "{s}");
        assert!(!s.contains("90, 90"), "{s}");
    }
}

#[test]
fn pager_commit_then_reopen() {
    for encrypted in [true, false] {
        let (_, s) = mem();
        let c = || {
            let c = Config::new().storage(s.clone()).use_env(false).flush_every_ms(None);
            if encrypted { c.passphrase("p").kdf(KdfParams::insecure_fast()) } else { c.plaintext() }
        };
        let db = c().open().unwrap();
        let tx = db.begin_write().unwrap();
        tx.set_durability(foldvault::Durability::Immediate);
        let t = tx.open_tree("x").unwrap();
        for i in 0..1000u32 {
            t.insert(i.to_be_bytes(), i.to_le_bytes()).unwrap();
        }
        tx.commit().unwrap();
        let seq = db.commit_seq();
        drop(db);
        let db = c().open().unwrap();
        assert_eq!(db.commit_seq(), seq);
        assert_eq!(db.is_encrypted(), encrypted);
        let t = db.open_tree("x").unwrap();
        assert_eq!(t.get(7u32.to_be_bytes()).unwrap().unwrap(), &7u32.to_le_bytes()[..]);
    }
}

/// Lookups start from a root page pinned per snapshot: each snapshot must keep reading its own
/// roots as commits replace them (splits that deepen the tree, removals that empty it, a tree
/// dropped and made again under the same name).
#[test]
fn lookups_follow_their_own_snapshots_roots() {
    let (_m, s) = mem();
    let db = Config::new().storage(s).plaintext().use_env(false).open().unwrap();
    let t = db.open_tree("t").unwrap();
    let u = db.open_tree("u").unwrap();
    t.insert(b"k", b"v1").unwrap();
    u.insert(b"k", b"u").unwrap();
    assert_eq!(t.get(b"k").unwrap().as_deref(), Some(&b"v1"[..]));
    assert_eq!(u.get(b"k").unwrap().as_deref(), Some(&b"u"[..]), "each tree its own root");
    let before = db.begin_read().unwrap();
    let old = before.open_tree("t").unwrap();
    assert_eq!(old.get(b"k").unwrap().as_deref(), Some(&b"v1"[..]), "pins the one-leaf root");
    let lens = |rt: &foldvault::ReadTransaction| -> Vec<(Vec<u8>, u64)> {
        rt.tree_lens().into_iter().map(|(n, c)| (n.to_vec(), c)).collect()
    };
    let at_first = vec![(b"__sled__default".to_vec(), 0), (b"t".to_vec(), 1), (b"u".to_vec(), 1)];
    assert_eq!(lens(&before), at_first, "names sorted, the unwritten default tree empty");
    // Deepen the tree: the root becomes a branch, on another page.
    for i in 0..5_000u32 {
        t.insert(i.to_be_bytes(), vec![7u8; 40]).unwrap();
    }
    t.insert(b"k", b"v2").unwrap();
    assert_eq!(t.get(b"k").unwrap().as_deref(), Some(&b"v2"[..]));
    assert_eq!(t.get(1234u32.to_be_bytes()).unwrap().as_deref(), Some(&[7u8; 40][..]));
    assert_eq!(old.get(b"k").unwrap().as_deref(), Some(&b"v1"[..]), "the old snapshot keeps its root");
    assert_eq!(old.get(1234u32.to_be_bytes()).unwrap(), None);
    assert_eq!(lens(&before), at_first, "an old snapshot keeps its counts");
    assert_eq!(lens(&db.begin_read().unwrap())[1], (b"t".to_vec(), 5_001));
    assert!(old.contains_key(b"k").unwrap() && !old.contains_key(1234u32.to_be_bytes()).unwrap());
    assert!(t.contains_key(1234u32.to_be_bytes()).unwrap() && !t.contains_key(b"absent").unwrap());
    assert_eq!(u.get(b"k").unwrap().as_deref(), Some(&b"u"[..]));
    drop((old, before));
    // Empty it: no root at all.
    for i in 0..5_000u32 {
        t.remove(i.to_be_bytes()).unwrap();
    }
    t.remove(b"k").unwrap();
    assert_eq!(t.get(b"k").unwrap(), None);
    // Drop and make it again under the same name.
    t.insert(b"k", b"v3").unwrap();
    assert!(db.drop_tree("t").unwrap());
    let t = db.open_tree("t").unwrap();
    assert_eq!(t.get(b"k").unwrap(), None);
    t.insert(b"k", b"v4").unwrap();
    assert_eq!(t.get(b"k").unwrap().as_deref(), Some(&b"v4"[..]));
}

/// A write that moves to a new epoch (the budget spent) and then commits nothing, followed by a
/// close, leaves the spent epoch spent: the close's copy of the last record does not pair the
/// old epoch with the new epoch's count, which would hand the spent key a fresh budget.
#[test]
fn a_spent_epoch_stays_spent_across_a_close() {
    let (_, s) = mem();
    let db = budgeted(&s, 16).open().unwrap();
    let mut i = 0u32;
    while db.metrics().seals_in_epoch < 16 {
        db.insert(format!("k{i:05}"), vec![1u8; 200]).unwrap();
        db.flush().unwrap();
        i += 1;
    }
    let spent = db.metrics().key_epoch;
    // Moves to the next epoch, then commits nothing.
    db.remove("absent").unwrap();
    assert_eq!(db.metrics().key_epoch, spent + 1, "the test's premise: the write moved on");
    drop(db);
    let db = budgeted(&s, 16).open().unwrap();
    let m = db.metrics();
    assert!(
        m.key_epoch > spent || m.seals_in_epoch >= 16,
        "epoch {} reopened with {} seals",
        m.key_epoch,
        m.seals_in_epoch
    );
    db.insert("after", "reopen").unwrap();
    db.flush().unwrap();
    assert!(db.metrics().key_epoch > spent, "the next write uses a new epoch");
}

/// A read-only open writes nothing, ever: not at open, not at close, not after a crash left a
/// log or a damaged newest commit; every write fails `ReadOnly`; several read-only handles
/// share the file, and a read-write open waits for them (`Locked`). The crashed copy's log is
/// shown to hold commits its file lacks (the file alone opens at an earlier commit, without the
/// records), so that its read-only opens replay groups rather than find an empty log.
#[test]
fn a_read_only_open_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.fv");
    let cfg = || {
        Config::new().file(&path).passphrase("ro").kdf(KdfParams::insecure_fast()).use_env(false).flush_every_ms(None)
    };
    let db = cfg().open().unwrap();
    let t = db.open_tree("t").unwrap();
    for i in 0..200u32 {
        t.insert(i.to_be_bytes(), vec![1u8; 50]).unwrap();
    }
    db.flush().unwrap();
    // A crash: the files as they are while the database is open (its last commits in its log).
    let crashed = dir.path().join("crashed.fv");
    std::fs::copy(&path, &crashed).unwrap();
    let log = foldvault::storage::wal::sidecar_path(&path);
    let crashed_log = foldvault::storage::wal::sidecar_path(&crashed);
    std::fs::copy(&log, &crashed_log).unwrap();
    drop((t, db));
    // The crash left groups in the log that the file alone lacks: the file without its log
    // opens at an earlier commit, without the records. So the read-only opens of the crashed
    // copy below replay groups (in memory), and must still write nothing.
    let bare = dir.path().join("bare.fv");
    std::fs::copy(&crashed, &bare).unwrap();
    let bare_seq = {
        let db = Config::new().file(&bare).passphrase("ro").use_env(false).read_only(true).open().unwrap();
        let records = db.open_tree("t").map_or(0, |t| t.len());
        assert!(records < 200, "the crashed file alone holds the {records} records: its log adds nothing");
        db.commit_seq()
    };
    let snapshot =
        |p: &std::path::Path| (std::fs::read(p).unwrap(), std::fs::read(foldvault::storage::wal::sidecar_path(p)).ok());
    for p in [&path, &crashed] {
        let before = snapshot(p);
        let ro = || Config::new().file(p).passphrase("ro").use_env(false).read_only(true);
        let (a, b) = (ro().open().unwrap(), ro().open().unwrap());
        if p == &crashed {
            assert!(before.1.is_some(), "the crash left no log");
            assert!(a.commit_seq() > bare_seq, "opened at {} with the log, {bare_seq} without", a.commit_seq());
        }
        assert!(matches!(Config::new().file(p).passphrase("ro").use_env(false).open(), Err(Error::Locked)));
        let t = a.open_tree("t").unwrap();
        assert_eq!(t.len(), 200);
        assert_eq!(b.open_tree("t").unwrap().get(7u32.to_be_bytes()).unwrap().unwrap().len(), 50);
        assert!(matches!(t.insert("k", "v"), Err(Error::ReadOnly)));
        assert!(matches!(a.remove("absent"), Err(Error::ReadOnly)));
        assert!(matches!(a.begin_write().map(|_| ()), Err(Error::ReadOnly)));
        assert!(matches!(a.open_tree("new"), Err(Error::ReadOnly) | Err(Error::CollectionNotFound)));
        assert!(a.check().unwrap().is_ok());
        a.flush().unwrap();
        drop((t, a, b));
        assert!(snapshot(p) == before, "{}: a read-only open changed the files", p.display());
    }
    assert!(matches!(
        Config::new().file(dir.path().join("missing.fv")).read_only(true).use_env(false).open(),
        Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound
    ));
    assert!(!dir.path().join("missing.fv").exists());
    // Read-write again: the crashed copy's log is replayed and folded in as usual.
    assert_eq!(
        Config::new().file(&crashed).passphrase("ro").use_env(false).open().unwrap().open_tree("t").unwrap().len(),
        200
    );
}

/// A read-only open that falls back from a damaged newest commit leaves that commit's record:
/// every read-only open (`check`, `salvage`) sees the same fallback, and the file stays as it was.
#[test]
fn a_read_only_open_keeps_the_commit_it_fell_back_from() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.fv");
    let cfg = || {
        Config::new()
            .file(&path)
            .passphrase("ro")
            .kdf(KdfParams::insecure_fast())
            .use_env(false)
            .flush_every_ms(None)
            .write_ahead_log(false)
            .checkpoint_on_close(false)
    };
    let bytes = common::file_whose_newest_commit_fails(&cfg(), &path);
    for _ in 0..2 {
        let db = cfg().checkpoint_on_close(true).read_only(true).open().unwrap();
        assert!(db.was_recovered(), "every read-only open falls back");
        assert_eq!(db.get("newest").unwrap(), None);
        drop(db);
        assert!(std::fs::read(&path).unwrap() == bytes, "the file is unchanged");
    }
}

/// A `drop_tree` that fails part way (a page of the tree does not open) leaves its transaction
/// unable to commit: the pages it freed before the failure are still the tree's.
#[test]
fn a_failed_drop_tree_aborts_its_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.fv");
    let cfg = || Config::new().file(&path).plaintext().use_env(false).flush_every_ms(None).write_ahead_log(false);
    let db = cfg().open().unwrap();
    let t = db.open_tree("t").unwrap();
    let mut b = foldvault::Batch::default();
    for i in 0..3000u32 {
        b.insert(i.to_be_bytes(), [5u8; 60]);
    }
    t.apply_batch(b).unwrap();
    drop((t, db));
    let good = std::fs::read(&path).unwrap();
    let mut tried = 0;
    for p in 4..good.len() / 4096 {
        let mut bytes = good.clone();
        bytes[p * 4096 + 200] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let Ok(db) = cfg().checkpoint_on_close(false).open() else { continue };
        let found = |db: &foldvault::Db| -> Vec<_> {
            db.check().unwrap().problems.iter().map(|x| (x.page, x.reason)).collect()
        };
        let damage = found(&db);
        let tx = db.begin_write().unwrap();
        if tx.drop_tree("t").is_ok() {
            continue;
        }
        tried += 1;
        assert!(tx.commit().is_err(), "page {p}: a transaction whose drop_tree failed committed");
        assert_eq!(db.tree_names().iter().filter(|n| &n[..] == b"t").count(), 1);
        // No page the failed drop freed went back to the allocator: new writes elsewhere take
        // none of the tree's pages (a check finds what it found before), and every record
        // outside the damaged page still reads.
        let u = db.open_tree("u").unwrap();
        let mut b = foldvault::Batch::default();
        for i in 0..3000u32 {
            b.insert(i.to_be_bytes(), [7u8; 60]);
        }
        u.apply_batch(b).unwrap();
        db.flush().unwrap();
        let problems = found(&db);
        assert!(!damage.is_empty() && problems == damage, "page {p}: {damage:?}, then {problems:?}");
        let t = db.open_tree("t").unwrap();
        for i in 0..3000u32 {
            match t.get(i.to_be_bytes()) {
                Ok(v) => assert_eq!(v.as_deref(), Some(&[5u8; 60][..]), "page {p}: key {i}"),
                Err(Error::Corrupt { page, .. }) => assert_eq!(page, p as u64, "key {i}"),
                Err(e) => panic!("page {p}: key {i}: {e}"),
            }
        }
    }
    assert!(tried > 0, "no page made drop_tree fail");
}

/// A plaintext database in the file `p`, with no background flush.
fn plain_file(p: &std::path::Path) -> Config {
    Config::new().file(p).plaintext().use_env(false).flush_every_ms(None)
}

/// A salvaged copy goes on handing out ids above every id the source handed out.
#[test]
fn salvage_carries_the_id_counter() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.fv"), dir.path().join("dst.fv"));
    let cfg = plain_file;
    let db = cfg(&src).open().unwrap();
    db.insert("k", "v").unwrap();
    let last = (0..5).map(|_| db.generate_id().unwrap()).max().unwrap();
    drop(db);
    let report = foldvault::salvage(&cfg(&src), &cfg(&dst)).unwrap();
    assert!(report.lost.is_empty(), "{report:?}");
    let copy = cfg(&dst).open().unwrap();
    assert_eq!(copy.get("k").unwrap().unwrap(), &b"v"[..]);
    assert!(copy.generate_id().unwrap() > last, "an id handed out again");
}

/// Salvage writes as a copy does: under a temporary name, given DST's name only at the end.
/// Nothing but DST is left beside it, without a log; a DST that holds a file is refused before
/// anything is read, and kept as it was.
#[test]
fn salvage_writes_through_a_temporary_name_and_never_over_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.fv"), dir.path().join("dst.fv"));
    let cfg = plain_file;
    let db = cfg(&src).open().unwrap();
    for i in 0..3000u32 {
        db.insert(i.to_be_bytes(), vec![1u8; 100]).unwrap();
    }
    drop(db);
    let report = foldvault::salvage(&cfg(&src), &cfg(&dst)).unwrap();
    assert_eq!(report.copied.values().sum::<u64>(), 3000);
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["dst.fv", "src.fv"]);
    assert_eq!(cfg(&dst).open().unwrap().len(), 3000);
    let other = dir.path().join("other.fv");
    std::fs::write(&other, b"not mine").unwrap();
    assert!(matches!(foldvault::salvage(&cfg(&src), &cfg(&other)), Err(Error::AlreadyExists(_))));
    assert_eq!(std::fs::read(&other).unwrap(), b"not mine");
}

/// The reports of check, copy, backup and salvage name no tree and show no key in `Debug`
/// (tree names and keys are user data).
#[test]
fn reports_show_no_tree_name_or_key_in_debug() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.fv");
    let cfg = plain_file;
    let db = cfg(&path).open().unwrap();
    db.open_tree("SECRETNAME").unwrap().insert("SECRETKEY", "v").unwrap();
    let mut backup = Vec::new();
    db.backup_to(&mut backup, &mut |_| {}).unwrap();
    let shown = [
        format!("{:?}", db.check().unwrap()),
        format!("{:?}", foldvault::backup::verify(&backup[..], None, &mut |_| {}).unwrap()),
    ];
    drop(db);
    let copy = foldvault::migrate::decrypt(&cfg(&path), &dir.path().join("copy.fv"), &mut |_| {}).unwrap();
    let salvaged = foldvault::salvage(&cfg(&path), &cfg(&dir.path().join("salvaged.fv"))).unwrap();
    for s in shown.iter().chain([&format!("{copy:?}"), &format!("{salvaged:?}")]) {
        assert!(!s.contains("SECRETNAME") && !s.contains("SECRETKEY"), "{s}");
    }
}

/// A damaged catalog page stops the open (the catalog is read whole), but not salvage: it reads
/// the newest commit record that opens and copies every tree the other catalog pages name.
#[test]
fn salvage_copies_what_a_damaged_catalog_still_names() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.fv");
    let cfg = |p: &std::path::Path| {
        Config::new().file(p).passphrase("s").kdf(KdfParams::insecure_fast()).use_env(false).flush_every_ms(None)
    };
    let db = cfg(&src).open().unwrap();
    let handed_out = (0..5).map(|_| db.generate_id().unwrap()).max().unwrap();
    let tx = db.begin_write().unwrap();
    for i in 0..400u32 {
        tx.open_tree(format!("tree-with-a-longish-name-{i:04}")).unwrap().insert("k", i.to_be_bytes()).unwrap();
    }
    tx.commit().unwrap();
    let catalog: Vec<u64> = db.check().unwrap().roles.pages(|r| matches!(r, foldvault::PageRole::Catalog)).collect();
    drop(db);
    assert!(catalog.len() > 2, "the catalog spans pages: {catalog:?}");
    let good = std::fs::read(&src).unwrap();
    let mut partial = 0;
    for (n, &p) in catalog.iter().enumerate() {
        let mut bytes = good.clone();
        bytes[p as usize * 4096 + 300] ^= 1;
        std::fs::write(&src, &bytes).unwrap();
        let r = cfg(&src).open();
        let names_page = matches!(r, Err(Error::Corrupt { page, reason: CorruptReason::SealMismatch }) if page == p);
        assert!(names_page, "page {p}: {:?}", r.err());
        let dst = dir.path().join(format!("salvaged-{n}.fv"));
        let report = foldvault::salvage(&cfg(&src), &cfg(&dst)).unwrap();
        assert!(report.lost.contains_key(&foldvault::SalvagedPart::Catalog), "page {p}: {report:?}");
        // Whatever the damage took, the copy's ids go on above every id the source handed
        // out (a lost counter entry restarted them at 0: salvage review, medium).
        let next = cfg(&dst).open().unwrap().generate_id().unwrap();
        assert!(next > handed_out, "page {p}: the copy's next id {next} is not above {handed_out}");
        let copied = report.copied.len();
        if copied > 0 {
            partial += 1;
            let out = cfg(&dst).open().unwrap();
            let names = out.tree_names();
            assert!(names.len() > copied, "the default tree and every copied one");
            for name in names.iter().filter(|n| n.starts_with(b"tree-")) {
                assert_eq!(out.open_tree(name).unwrap().len(), 1);
            }
        }
        assert!(std::fs::read(&src).unwrap() == bytes, "salvage wrote to its source");
    }
    assert!(partial > 0, "no damaged catalog page left trees to copy");
}

/// Salvage refuses a destination that would not stay (a temporary one, deleted when its handle
/// drops, after salvage said it was done) or that names no place (salvage review, low); one
/// into a directory it made leaves no directory behind when it fails.
#[test]
fn salvage_needs_a_destination_that_stays() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.fv");
    let cfg = |p: &std::path::Path| Config::new().file(p).plaintext().use_env(false).flush_every_ms(None);
    cfg(&src).open().unwrap().insert("k", "v").unwrap();
    for dst in [Config::new().use_env(false), Config::new().temporary(true).use_env(false)] {
        assert!(matches!(foldvault::salvage(&cfg(&src), &dst), Err(Error::Unsupported(_))));
    }
    // A destination directory salvage makes, for a copy that cannot be made (encryption
    // required, and no key).
    let made = dir.path().join("made-here").join("and-here");
    let keyless = Config::new().path(&made).encryption(foldvault::Encryption::Required).use_env(false);
    assert!(foldvault::salvage(&cfg(&src), &keyless).is_err());
    assert!(!dir.path().join("made-here").exists(), "a directory salvage made for a copy it did not make is left");
    let report = foldvault::salvage(&cfg(&src), &Config::new().path(&made).plaintext().use_env(false)).unwrap();
    assert_eq!(report.copied.len(), 1);
    assert!(made.join("db.foldvault").exists());
}

/// The background flush (every 500 ms by default, every millisecond here) makes an `Eventual`
/// commit durable with no `flush()` call: a crash that loses every unsynced write keeps it.
/// (Waited for a minute at most: a bound on liveness, not a speed.) Nothing tested the flusher.
#[test]
fn the_background_flush_makes_an_eventual_commit_durable() {
    use foldvault::storage::{CrashModel, FaultyStorage};
    let dev = FaultyStorage::new();
    let cfg = |s: FaultyStorage| Config::new().storage(Arc::new(s)).plaintext().use_env(false);
    let db = cfg(dev.clone()).flush_every_ms(Some(1)).open().unwrap();
    db.insert("k", "v").unwrap();
    let seq = db.commit_seq();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while db.durable_commit_seq() < seq {
        assert!(std::time::Instant::now() < deadline, "the background flush never made commit {seq} durable");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let crashed = FaultyStorage::from_bytes(dev.crash_image(&CrashModel::LoseUnsynced));
    assert_eq!(cfg(crashed).open().unwrap().get("k").unwrap().unwrap(), "v");
    drop(db);
}
