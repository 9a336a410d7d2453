//! Tests of data-key rotation that set its batch size (`Db::rotate_in_batches`): a rotation in
//! many batches reads the file a few times; and one cut by a power loss at any storage
//! operation, with durable commits made between its batches, loses no acknowledged commit, and
//! its resumption (cut once more by a second power loss) leaves a file that opens, whole, under
//! the key its slots now wrap.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::storage::{CrashModel, FaultPlan, FaultyDevices, FaultyStorage, MemoryStorage, Storage, WalStorage};
use crate::{Config, Credentials, Db, Durability, KdfParams, Result, Tree};

/// Each batch walks the trees from their roots; the memo of subtrees re-sealed whole keeps
/// a rotation in many batches to a few reads of the file (about six here: each page is read
/// for its epoch, opened, copied, and walked once more at the end). Without the memo a
/// rotation reads the file about once per batch (here 18 times for 14 batches; a 10 GiB
/// file takes some 1,300 batches).
#[test]
fn a_rotation_in_many_batches_reads_the_file_a_few_times() {
    let s: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let cfg = Config::new()
        .storage(s.clone())
        .passphrase("rotate")
        .kdf(KdfParams::insecure_fast())
        .use_env(false)
        .flush_every_ms(None)
        .cache_capacity(64 * 4096);
    let db = cfg.open().unwrap();
    let t = db.open_tree("t").unwrap();
    let mut b = crate::Batch::default();
    for i in 0..40_000u32 {
        b.insert(&i.to_be_bytes()[..], vec![i as u8; 150]);
    }
    t.apply_batch(b).unwrap();
    db.flush().unwrap();
    let pages = s.len().unwrap() / 4096;
    assert!(pages > 1_500, "{pages} pages");
    let before = db.metrics();
    let mut batches = 0;
    db.rotate_in_batches(&[Credentials::passphrase("rotate")], &mut |p| batches = p.batches, 128).unwrap();
    let read = (db.metrics().bytes_read - before.bytes_read) / 4096;
    assert!(batches > 10, "{batches} batches");
    assert!(read < 8 * pages, "{read} pages read for a file of {pages}");
    for i in (0..40_000u32).step_by(97) {
        assert_eq!(t.get(i.to_be_bytes()).unwrap().unwrap().len(), 150);
    }
    drop((t, db));
    let db = cfg.open().unwrap();
    assert_eq!(db.open_tree("t").unwrap().len(), 40_000);
    assert!(db.check().unwrap().is_ok());
}

type Contents = BTreeMap<Vec<u8>, Vec<u8>>;

const PASS: &str = "rotate";
/// Pages re-sealed per batch: a rotation of the file below takes several batches.
const BATCH: usize = 4;

/// Opens the database on `dev` (with a write-ahead log, a small one, so that the rotation
/// checkpoints and goes direct), every commit durable, refusing a fall back below `min_seq`.
/// The log's checkpoints run in the sync that fills it, so operations are numbered alike in
/// every run.
fn open(dev: &FaultyDevices, min_seq: u64) -> Result<Db> {
    let main: Arc<dyn Storage> = Arc::new(dev.main.clone());
    let s: Arc<dyn Storage> = match &dev.log {
        None => main,
        Some(l) => {
            Arc::new(WalStorage::open(main, Arc::new(l.clone()), 16, None)?.max_group(8).background_checkpoints(false))
        }
    };
    Config::new()
        .storage(s)
        .passphrase(PASS)
        .kdf(KdfParams::insecure_fast())
        .use_env(false)
        .flush_every_ms(None)
        .cache_capacity(16 * 4096)
        .durability(Durability::Immediate)
        .min_commit_seq(min_seq)
        .open()
}

/// Plans a power loss at operation `at` (counted from now) of device `device` of `dev`.
fn lose_power_at(dev: &FaultyDevices, device: usize, at: u64) {
    dev.plan_on(device, &FaultPlan { crash_at: Some(at), ..FaultPlan::default() });
}

fn contents(db: &Db) -> Result<Contents> {
    db.open_tree("t")?.iter().map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec()))).collect()
}

/// What a rotation with commits between its batches was told before it ended.
struct Run {
    result: Result<()>,
    /// The contents of the last insert acknowledged, and the newest durable commit then
    /// (a batch's, or an insert's).
    acked: Contents,
    acked_seq: u64,
    /// The contents of the insert that failed, if one did.
    in_flight: Option<Contents>,
}

/// Rotates the data key of `db` (`tree` holding `start`) in batches of `BATCH` pages; after each
/// batch, while the rotation waits, inserts one record in a durable commit of its own.
fn rotate_with_commits(db: &Db, tree: &Tree, start: &Contents) -> Run {
    let mut run = Run { result: Ok(()), acked: start.clone(), acked_seq: db.durable_commit_seq(), in_flight: None };
    run.result = db.rotate_in_batches(
        &creds(),
        &mut |p| {
            if run.in_flight.is_some() {
                return;
            }
            run.acked_seq = db.durable_commit_seq(); // the batch's commit
            let (k, v) = (format!("w{:04}", p.batches).into_bytes(), vec![p.batches as u8; 300]);
            let mut next = run.acked.clone();
            next.insert(k.clone(), v.clone());
            match tree.insert(k, v) {
                Ok(_) => {
                    run.acked = next;
                    run.acked_seq = db.durable_commit_seq();
                }
                Err(_) => run.in_flight = Some(next),
            }
        },
        BATCH,
    );
    run
}

/// A database of 400 records and two values in overflow chains, closed cleanly; its contents.
fn filled(wal: bool) -> (FaultyDevices, Contents) {
    let dev = FaultyDevices::new(wal);
    let db = open(&dev, 0).unwrap();
    let mut want = Contents::new();
    let mut b = crate::Batch::default();
    for i in 0..400u32 {
        let (k, v) = (format!("r{i:04}").into_bytes(), vec![(i % 251) as u8; 150]);
        b.insert(k.clone(), v.clone());
        want.insert(k, v);
    }
    for (k, n) in [("big1", 9_000), ("big2", 20_000)] {
        b.insert(k, vec![7u8; n]);
        want.insert(k.as_bytes().to_vec(), vec![7u8; n]);
    }
    db.open_tree("t").unwrap().apply_batch(b).unwrap();
    drop(db);
    (dev, want)
}

/// A power loss at each operation in turn of a rotation with durable commits between its
/// batches, with and without the write-ahead log: the file opens at the newest acknowledged
/// commit (or the insert in flight) and passes the check; a rotation that was cut off resumes,
/// is cut again by a second power loss, opens at the same contents and resumes to its end; the
/// file then opens with the passphrase alone, passes the check and holds the same.
#[test]
fn a_rotation_with_commits_between_batches_survives_a_power_loss_at_any_operation() {
    for wal in [false, true] {
        let (dev, start) = filled(wal);
        let images = dev.durable_images();
        let fresh = || FaultyDevices::from_images(images.clone());
        // A clean run counts each device's operations.
        let clean = fresh();
        let db = open(&clean, 0).unwrap();
        let tree = db.open_tree("t").unwrap();
        clean.iter().for_each(|d| d.set_plan(FaultPlan::default()));
        let run = rotate_with_commits(&db, &tree, &start);
        run.result.unwrap();
        let batches = run.acked.len() - start.len();
        assert!(batches >= 4, "{batches} batches");
        let totals: Vec<u64> = clean.iter().map(FaultyStorage::op_count).collect();
        drop((tree, db));
        let (mut points, mut resumed, mut resumed_twice, mut at_insert) = (0, 0, 0, 0);
        for (device, &total) in totals.iter().enumerate() {
            for at in 1..=total {
                let dev = fresh();
                let db = open(&dev, 0).unwrap();
                let tree = db.open_tree("t").unwrap();
                lose_power_at(&dev, device, at);
                let run = rotate_with_commits(&db, &tree, &start);
                drop((tree, db));
                assert!(run.result.is_err(), "log {wal}, device {device}, operation {at}: no power loss");
                at_insert += usize::from(run.in_flight.is_some());
                for model in [CrashModel::LoseUnsynced, CrashModel::TearUnsynced { seed: at }] {
                    let what = format!("log {wal}, power loss at operation {at} of device {device}, {model:?}");
                    let mut after = dev.reboot(&model);
                    let db = open(&after, run.acked_seq).unwrap_or_else(|e| panic!("{what}: open: {e}"));
                    let report = db.check().unwrap_or_else(|e| panic!("{what}: check: {e}"));
                    assert!(report.is_ok(), "{what}: {:?}", report.problems);
                    let got = contents(&db).unwrap_or_else(|e| panic!("{what}: read: {e}"));
                    assert!(
                        got == run.acked || run.in_flight.as_ref() == Some(&got),
                        "{what}: {} records recovered, {} acknowledged",
                        got.len(),
                        run.acked.len()
                    );
                    let mut db = db;
                    if db.encryption_status().rekey_in_progress {
                        // A second power loss, at one of the resumption's first 40 operations
                        // on the same device: the file opens at the same contents again.
                        let second = 1 + (at * 7) % 40;
                        lose_power_at(&after, device, second);
                        let cut = db.rekey(&creds(), &mut |_| {});
                        drop(db);
                        after = after.reboot(&CrashModel::LoseUnsynced);
                        let what = format!("{what}, then at operation {second} of the resumption ({cut:?})");
                        db = open(&after, run.acked_seq).unwrap_or_else(|e| panic!("{what}: open: {e}"));
                        let report = db.check().unwrap_or_else(|e| panic!("{what}: check: {e}"));
                        assert!(report.is_ok(), "{what}: {:?}", report.problems);
                        assert!(contents(&db).unwrap() == got, "{what}: contents changed");
                        if db.encryption_status().rekey_in_progress {
                            db.rekey(&creds(), &mut |_| {}).unwrap_or_else(|e| panic!("{what}: resume: {e}"));
                            resumed_twice += 1;
                        }
                        resumed += 1;
                    }
                    assert!(!db.encryption_status().rekey_in_progress, "{what}");
                    drop(db);
                    let db = open(&after, 0).unwrap_or_else(|e| panic!("{what}: open after the rotation: {e}"));
                    let report = db.check().unwrap_or_else(|e| panic!("{what}: check after: {e}"));
                    assert!(report.is_ok(), "{what}: after the rotation: {:?}", report.problems);
                    assert!(contents(&db).unwrap() == got, "{what}: contents changed by the rotation");
                    points += 1;
                }
            }
        }
        println!(
            "log {wal}: operations per device {totals:?}, {batches} batches; {points} recoveries, {resumed} resumed ({resumed_twice} after a second loss), {at_insert} losses in an insert"
        );
        assert!(
            points > 300 && resumed > points / 2 && resumed < points && resumed_twice > resumed / 2 && at_insert > 0,
            "{points} points, {resumed} resumed, {at_insert} in inserts"
        );
    }
}

/// A rotation cut by a power loss right after its start: the next-key block is durable, but no
/// commit under the new key is, so the newest record is under the old epoch. The next open
/// seals under the new key from the rotation's first epoch on, as the cut session did (it
/// sealed under the old key again, so data written after the rotation began went under the
/// key being retired, until a `rekey` resumed it).
#[test]
fn an_open_after_a_rotation_began_seals_under_the_new_key() {
    let (dev, _) = filled(false);
    let images = dev.durable_images();
    let mut cut_after_start = 0;
    for at in 1..400 {
        let dev = FaultyDevices::from_images(images.clone());
        let db = open(&dev, 0).unwrap();
        lose_power_at(&dev, 0, at);
        let cut = db.rotate_in_batches(&creds(), &mut |_| {}, BATCH);
        drop(db);
        let after = dev.reboot(&CrashModel::LoseUnsynced);
        let db = open(&after, 0).unwrap();
        let e = &db.handle.engine;
        let first = e.header.lock().next_key.as_ref().map(|n| n.first_epoch);
        let durable_epoch = e.writer.lock().durable.key_epoch;
        let Some(first) = first else {
            assert!(cut.is_err(), "a finished rotation leaves no next-key block");
            continue;
        };
        if durable_epoch >= first {
            break; // a batch under the new key is durable: past the point this test is about
        }
        cut_after_start += 1;
        assert_eq!(e.current_epoch(), first, "power loss at operation {at}");
        db.insert("after the start", &b"x"[..]).unwrap();
        db.flush().unwrap();
        assert!(e.writer.lock().durable.key_epoch >= first, "power loss at operation {at}");
        assert!(db.check().unwrap().is_ok());
        drop(db);
        let db = open(&after, 0).unwrap();
        db.rekey(&creds(), &mut |_| {}).unwrap();
        assert_eq!(db.get("after the start").unwrap().as_deref(), Some(&b"x"[..]));
    }
    assert!(cut_after_start > 0, "no power loss fell between the start and the first batch");
}

fn creds() -> [Credentials; 1] {
    [Credentials::passphrase(PASS)]
}

/// A slot made before keys of zeros were refused (here put in place by hand) keeps working:
/// a rekey re-wraps it and finishes, and a passphrase change of a slot combining it with a
/// passphrase goes through. Only new slots are refused such a key.
#[test]
fn a_slot_under_a_key_of_zeros_made_before_the_rule_still_rekeys() {
    use crate::MasterKey;
    use crate::crypto::slots;
    use crate::format::header::SlotKind;
    let s: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let zeros = || Credentials::master_key(MasterKey::from_bytes([0; 32]));
    let cfg =
        |c: Credentials| Config::new().storage(s.clone()).credentials(c).kdf(KdfParams::insecure_fast()).use_env(false);
    let db = cfg(Credentials::master_key(MasterKey::from_bytes([1; 32]))).open().unwrap();
    db.insert("k", "v").unwrap();
    let both = zeros().with_passphrase("p");
    db.update_header(|h, dk| {
        h.slots[0].set(Some(slots::make_slot(
            SlotKind::MasterKey,
            KdfParams::insecure_fast(),
            &zeros(),
            dk,
            &h.file_id,
            0,
        )?));
        let kdf = KdfParams::insecure_fast();
        h.slots[1].set(Some(slots::make_slot(SlotKind::MasterKeyAndPassphrase, kdf, &both, dk, &h.file_id, 1)?));
        Ok(())
    })
    .unwrap();
    assert!(matches!(db.add_slot(&zeros(), KdfParams::insecure_fast()), Err(crate::Error::InvalidConfig(_))));
    db.rekey(&[zeros(), both.duplicate()], &mut |_| {}).unwrap();
    db.change_passphrase(&both, "q".into(), KdfParams::insecure_fast()).unwrap();
    db.flush().unwrap();
    drop(db);
    for c in [zeros(), zeros().with_passphrase("q")] {
        let db = cfg(c).open().unwrap();
        assert_eq!(&db.get("k").unwrap().unwrap()[..], b"v");
    }
}

/// A slot under the empty passphrase (made before such slots were refused) cannot be made
/// again: a rekey says so before it writes anything. It failed at the finish, after
/// re-sealing the whole file, and left a rotation that never finished and refused every slot
/// change from then on.
#[test]
fn a_rekey_that_cannot_remake_a_slot_fails_before_it_starts() {
    use crate::crypto::slots;
    use crate::format::header::SlotKind;
    let s: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let db = Config::new()
        .storage(s.clone())
        .passphrase(PASS)
        .kdf(KdfParams::insecure_fast())
        .use_env(false)
        .open()
        .unwrap();
    db.insert("k", "v").unwrap();
    let empty = || Credentials::passphrase("");
    db.update_header(|h, dk| {
        let kdf = KdfParams::insecure_fast();
        let legacy = slots::SlotKey::derive_unchecked(SlotKind::Passphrase, kdf, &empty())?;
        h.slots[1].set(Some(legacy.wrap(dk, &h.file_id, 1)?));
        Ok(())
    })
    .unwrap();
    let sealed = db.metrics().pages_sealed;
    let r = db.rekey(&[Credentials::passphrase(PASS), empty()], &mut |_| {});
    assert!(matches!(r, Err(crate::Error::InvalidConfig(_))), "{r:?}");
    assert!(!db.encryption_status().rekey_in_progress, "a rotation was left unfinished");
    assert_eq!(db.metrics().pages_sealed, sealed, "pages were re-sealed");
    // The slot can be replaced, and the rotation then runs.
    db.remove_slot(1).unwrap();
    db.rekey(&creds(), &mut |_| {}).unwrap();
    assert_eq!(&db.get("k").unwrap().unwrap()[..], b"v");
}

/// A rekey whose finish fails writing either copy of its new header (the handle poisoned)
/// leaves the handle's header and keys alike: a backup taken from it restores under the
/// credentials. (When the finish's last step was a checkpoint after both copies, the header in
/// memory was changed before it and the keys after it: the backup copied the new header and
/// sealed its chunks and MAC under the old key, and no credentials restored it.)
#[test]
fn a_rekey_whose_finish_fails_writing_its_header_leaves_backups_restorable() {
    for allowed in [2, 3] {
        rekey_finish_fails_at_header_write(allowed);
    }
}

/// The rotation's start writes two header copies through; the finish's write number
/// `allowed - 1` (0: its first) fails.
fn rekey_finish_fails_at_header_write(allowed: u64) {
    use std::sync::atomic::{AtomicU64, Ordering};
    struct FailsHeaderWrites {
        inner: MemoryStorage,
        /// Header writes still allowed; `u64::MAX` while unarmed.
        allowed: AtomicU64,
    }
    impl Storage for FailsHeaderWrites {
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
            self.inner.read_at(offset, buf)
        }
        fn write_at(&self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
            self.inner.write_at(offset, buf)
        }
        fn sync(&self) -> std::io::Result<()> {
            self.inner.sync()
        }
        fn len(&self) -> std::io::Result<u64> {
            self.inner.len()
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.inner.set_len(len)
        }
        fn write_through(&self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
            match self.allowed.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)) {
                Ok(_) => self.inner.write_at(offset, buf).and_then(|()| self.inner.sync()),
                Err(_) => Err(std::io::Error::other("injected: the header write fails")),
            }
        }
    }
    let s = Arc::new(FailsHeaderWrites { inner: MemoryStorage::new(), allowed: AtomicU64::new(u64::MAX) });
    let cfg = Config::new()
        .storage(s.clone())
        .passphrase(PASS)
        .kdf(KdfParams::insecure_fast())
        .use_env(false)
        .flush_every_ms(None);
    let db = cfg.open().unwrap();
    let t = db.open_tree("t").unwrap();
    for i in 0..300u32 {
        t.insert(i.to_be_bytes(), vec![i as u8; 100]).unwrap();
    }
    db.flush().unwrap();
    // The rotation's start (its next key into the header) writes both copies; its finish fails.
    s.allowed.store(allowed, Ordering::Release);
    assert!(db.rekey(&creds(), &mut |_| {}).is_err(), "the finish's header write failed");
    // Its commits were durable: a backup of them is still taken from the poisoned handle.
    let mut backup = Vec::new();
    db.backup_to(&mut backup, &mut |_| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("restored");
    crate::backup::restore(&backup[..], &dst, &Credentials::passphrase(PASS), Default::default())
        .expect("a backup of the handle restores under its credentials");
    let restored = Config::new().file(&dst).passphrase(PASS).use_env(false).open().unwrap();
    assert_eq!(restored.open_tree("t").unwrap().len(), 300);
}
