//! Data-key rotation: online, resumable after a power loss, and leaving no page under the old key.

#[path = "common/hooked.rs"]
mod hooked;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use foldvault::storage::{CrashModel, FaultPlan, FaultyStorage, MemoryStorage, Storage};
use foldvault::{Config, Credentials, KdfParams};

fn cfg(s: Arc<dyn Storage>) -> Config {
    Config::new()
        .storage(s)
        .passphrase("rekey")
        .kdf(KdfParams::insecure_fast())
        .use_env(false)
        .flush_every_ms(None)
        .cache_capacity(256 << 10)
}

fn fill(db: &foldvault::Db, n: u32) {
    for t in ["a", "b"] {
        let tree = db.open_tree(t).unwrap();
        let mut b = foldvault::Batch::default();
        for i in 0..n {
            b.insert(format!("{t}{i:06}"), vec![(i % 250) as u8; 150]);
        }
        tree.apply_batch(b).unwrap();
        tree.insert("big", vec![9u8; 40_000]).unwrap();
    }
    db.flush().unwrap();
}

/// Every record `fill(db, n)` wrote reads back as written, and nothing else is there.
fn assert_filled(db: &foldvault::Db, n: u32) {
    for t in ["a", "b"] {
        let tree = db.open_tree(t).unwrap();
        let mut want: Vec<(Vec<u8>, Vec<u8>)> =
            (0..n).map(|i| (format!("{t}{i:06}").into_bytes(), vec![(i % 250) as u8; 150])).collect();
        want.push((b"big".to_vec(), vec![9u8; 40_000]));
        want.sort();
        let got: Vec<(Vec<u8>, Vec<u8>)> =
            tree.iter().map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()).collect();
        assert!(
            got == want,
            "tree {t}: {} records read, {} written, first difference at {:?}",
            got.len(),
            want.len(),
            got.iter().zip(&want).position(|(g, w)| g != w)
        );
    }
}

fn epochs_of_live_pages(db: &foldvault::Db, image: &[u8]) -> Vec<u32> {
    let report = db.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    report
        .roles
        .pages(|r| {
            matches!(r, foldvault::PageRole::Tree(_) | foldvault::PageRole::Catalog | foldvault::PageRole::FreeList)
        })
        .map(|p| {
            let o = p as usize * 4096 + 4092;
            u32::from_le_bytes(image[o..o + 4].try_into().unwrap())
        })
        .collect()
}

/// A rotation re-seals every live page and both commit records under the new key while a
/// reader runs, and the file reopens without recovery. The reader overlaps the rotation for sure:
/// the first progress callback (after the first batch, the rotation unfinished) waits until the
/// reader has made a whole read, begun and ended while the rotation runs.
#[test]
fn rekey_reseals_every_page_while_readers_run() {
    let m = MemoryStorage::new();
    let db = cfg(Arc::new(m.clone())).open().unwrap();
    fill(&db, 6000);
    let before: u32 = *epochs_of_live_pages(&db, &m.snapshot()).iter().max().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = {
        let (db, stop, reads) = (db.clone(), stop.clone(), reads.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            // At least one read, however late the thread runs.
            loop {
                let done = stop.load(Ordering::Relaxed);
                let rt = db.begin_read().unwrap();
                let t = rt.open_tree("a").unwrap();
                assert_eq!(t.iter().count(), 6001);
                assert_eq!(t.get("a000042").unwrap().unwrap().len(), 150);
                n += 1;
                reads.fetch_add(1, Ordering::SeqCst);
                if done {
                    break n;
                }
            }
        })
    };
    let mut batches = 0;
    // Whether the reader completed a read begun after the first batch, before the rotation
    // went on (None: no progress callback ran).
    let mut read_during = None;
    db.rekey(&[Credentials::passphrase("rekey")], &mut |p| {
        batches = p.batches;
        if read_during.is_none() {
            // The read that ends second after this point began after it.
            let want = reads.load(Ordering::SeqCst) + 2;
            let start = std::time::Instant::now();
            while reads.load(Ordering::SeqCst) < want
                && !reader.is_finished()
                && start.elapsed() < std::time::Duration::from_secs(60)
            {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            read_during = Some(reads.load(Ordering::SeqCst) >= want);
        }
    })
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(read_during, Some(true), "the reader completed no read during the rotation (within a minute)");
    assert!(batches >= 1);
    let image = m.snapshot();
    let after = epochs_of_live_pages(&db, &image);
    assert!(after.iter().all(|e| *e > before), "a live page is still under the old key: {after:?}");
    // Both commit records too (SPEC §6.4: two commits after the last batch rewrite the free
    // list and both slots under the new key): a record left under the destroyed key would be
    // rejected at every open.
    for slot in [2usize, 3] {
        let o = slot * 4096 + 4092;
        let epoch = u32::from_le_bytes(image[o..o + 4].try_into().unwrap());
        assert!(epoch > before, "commit record {slot} under epoch {epoch}, the old key's newest is {before}");
    }
    {
        let reopened = cfg(Arc::new(MemoryStorage::from_bytes(image))).open().unwrap();
        assert!(!reopened.was_recovered(), "{:?}", reopened.recovery_report().rejected_slots);
    }
    // The reader is gone: the next write transaction destroys the old key.
    db.insert("after", &b"x"[..]).unwrap();
    assert_eq!(db.encryption_status().data_keys_held, 1);
    drop(db);
    let db = cfg(Arc::new(m.clone())).open().unwrap();
    assert_eq!(db.open_tree("b").unwrap().len(), 6001);
    assert!(!db.encryption_status().rekey_in_progress);
}

/// A snapshot taken before the rotation still reads every page it reaches after the rotation
/// returns (the old key stays in memory for it); once it is released, the old key is destroyed.
#[test]
fn old_key_outlives_rekey_until_older_snapshots_go() {
    let m = MemoryStorage::new();
    let db = cfg(Arc::new(m.clone())).open().unwrap();
    fill(&db, 6000);
    let old = db.begin_read().unwrap();
    db.rekey(&[Credentials::passphrase("rekey")], &mut |_| {}).unwrap();
    assert!(!db.encryption_status().rekey_in_progress);
    assert_eq!(db.encryption_status().data_keys_held, 2, "destroyed while a snapshot needs it");
    // A slot added now must wrap the new key, not the one waiting to be destroyed.
    db.add_slot(&Credentials::passphrase("added during the wait"), KdfParams::insecure_fast()).unwrap();
    // Its backup is refused (the current header no longer unlocks its pages)...
    assert!(matches!(old.backup_to(&mut Vec::new(), &mut |_| {}), Err(foldvault::Error::Unsupported(_))));
    // ...but reading works. The small cache holds few of the old pages: most are opened again,
    // under the old key.
    let t = old.open_tree("a").unwrap();
    assert_eq!(t.iter().inspect(|r| assert!(r.is_ok(), "{r:?}")).count(), 6001);
    assert_eq!(t.get("a004242").unwrap().unwrap().len(), 150);
    drop(t);
    drop(old);
    db.insert("after", &b"x"[..]).unwrap();
    assert_eq!(db.encryption_status().data_keys_held, 1);
    drop(db);
    let db = cfg(Arc::new(m.clone())).passphrase("added during the wait").open().unwrap();
    assert_eq!(db.open_tree("a").unwrap().len(), 6001);
}

/// Two rotations, each outlived by a snapshot older than its finish: the first rotation's old
/// key goes once the snapshots older than the first finish are gone, whatever the second still
/// waits for. One slot held the pending retirement, and the second rotation's took the first's
/// place, so the oldest key waited for the second's snapshots too.
#[test]
fn each_rotations_old_key_goes_when_its_own_snapshots_do() {
    let db = cfg(Arc::new(MemoryStorage::new())).open().unwrap();
    fill(&db, 2000);
    let creds = [Credentials::passphrase("rekey")];
    let r1 = db.begin_read().unwrap();
    db.rekey(&creds, &mut |_| {}).unwrap();
    db.insert("between", &b"x"[..]).unwrap();
    let r2 = db.begin_read().unwrap();
    db.rekey(&creds, &mut |_| {}).unwrap();
    assert_eq!(db.encryption_status().data_keys_held, 3);
    drop(r1);
    db.insert("after r1", &b"x"[..]).unwrap();
    assert_eq!(db.encryption_status().data_keys_held, 2, "the first key outlived its snapshots");
    assert_eq!(r2.open_tree("a").unwrap().iter().count(), 2001, "the second key's snapshot still reads");
    drop(r2);
    db.insert("after r2", &b"x"[..]).unwrap();
    assert_eq!(db.encryption_status().data_keys_held, 1);
}

/// A power loss during the rotation: the file opens (with both keys), the rotation resumes
/// and finishes, and the data is intact. The handle that finished it holds both keys, so a page
/// left under the old one would still read there: the file is reopened, and must hold one key
/// (the new one: the next-key block is gone), read back whole and have no live page under an
/// epoch of the old key.
#[test]
fn rekey_resumes_after_power_loss() {
    let mut resumed = 0;
    for crash_at in [5u64, 40, 120, 400, 900, 2000] {
        let dev = FaultyStorage::new();
        let db = cfg(Arc::new(dev.clone())).open().unwrap();
        fill(&db, 4000);
        // The newest epoch under the old key (every live page is flushed).
        let old_newest: u32 = *epochs_of_live_pages(&db, &dev.live_image()).iter().max().unwrap();
        dev.set_plan(FaultPlan { crash_at: Some(crash_at), ..FaultPlan::default() });
        let r = db.rekey(&[Credentials::passphrase("rekey")], &mut |_| {});
        drop(db);
        for model in [CrashModel::LoseUnsynced, CrashModel::TearUnsynced { seed: crash_at }] {
            let img = dev.crash_image(&model);
            let mem = MemoryStorage::from_bytes(img);
            let s: Arc<dyn Storage> = Arc::new(mem.clone());
            let db = cfg(s.clone()).open().unwrap();
            assert_filled(&db, 4000);
            if r.is_err() {
                db.rekey(&[Credentials::passphrase("rekey")], &mut |_| {}).unwrap();
                resumed += 1;
            }
            assert!(!db.encryption_status().rekey_in_progress);
            assert!(db.check().unwrap().is_ok());
            assert_filled(&db, 4000);
            drop(db);
            let db = cfg(s).open().unwrap();
            let status = db.encryption_status();
            assert!(!status.rekey_in_progress, "crash at {crash_at}, {model:?}: a rotation unfinished after reopen");
            assert_eq!(status.data_keys_held, 1, "crash at {crash_at}, {model:?}: the old key still loads at open");
            assert!(status.key_epoch > old_newest, "crash at {crash_at}, {model:?}: epoch {}", status.key_epoch);
            assert!(db.check().unwrap().is_ok());
            assert_filled(&db, 4000);
            let epochs = epochs_of_live_pages(&db, &mem.snapshot());
            assert!(
                epochs.iter().all(|e| *e > old_newest),
                "crash at {crash_at}, {model:?}: a live page is still under the old key (its newest epoch is \
                 {old_newest}): {epochs:?}"
            );
        }
    }
    assert!(resumed > 0);
}

#[test]
fn rekey_needs_credentials_for_every_slot() {
    let m = MemoryStorage::new();
    let db = cfg(Arc::new(m.clone())).open().unwrap();
    db.add_slot(&Credentials::passphrase("second"), KdfParams::insecure_fast()).unwrap();
    let (epoch, generation) = (db.encryption_status().key_epoch, db.encryption_status().header_generation);
    let r = db.rekey(&[Credentials::passphrase("rekey")], &mut |_| {});
    assert!(matches!(r, Err(foldvault::Error::InvalidConfig(_))), "{r:?}");
    // Refused before anything changed: no rotation begun, the same key.
    let status = db.encryption_status();
    assert!(!status.rekey_in_progress);
    assert_eq!(status.key_epoch, epoch);
    assert_eq!(status.header_generation, generation);
    db.rekey(&[Credentials::passphrase("rekey"), Credentials::passphrase("second")], &mut |_| {}).unwrap();
    drop(db);
    let s: Arc<dyn Storage> = Arc::new(m);
    Config::new().storage(s).passphrase("second").use_env(false).open().unwrap();
}

/// Between the rotation's batches (its progress callback): a second rotation is refused, a
/// slot cannot be added or have its passphrase changed (it would wrap the key being retired),
/// and a slot removed stays removed when the rotation finishes (it is not re-wrapped back).
#[test]
fn slot_changes_during_a_rotation() {
    let m = MemoryStorage::new();
    let db = cfg(Arc::new(m.clone())).open().unwrap();
    db.add_slot(&Credentials::passphrase("removed midway"), KdfParams::insecure_fast()).unwrap();
    fill(&db, 6000);
    let creds = [Credentials::passphrase("rekey"), Credentials::passphrase("removed midway")];
    let mut checked = 0;
    db.rekey(&creds, &mut |_| {
        if checked > 0 {
            return;
        }
        checked += 1;
        let again = db.rekey(&creds, &mut |_| {});
        assert!(matches!(again, Err(foldvault::Error::Unsupported(_))), "{again:?}");
        let added = db.add_slot(&Credentials::passphrase("added midway"), KdfParams::insecure_fast());
        assert!(matches!(added, Err(foldvault::Error::Unsupported(_))), "{added:?}");
        let changed = db.change_passphrase(
            &Credentials::passphrase("rekey"),
            foldvault::Passphrase::from("changed midway"),
            KdfParams::insecure_fast(),
        );
        assert!(matches!(changed, Err(foldvault::Error::Unsupported(_))), "{changed:?}");
        db.remove_slot(1).unwrap();
    })
    .unwrap();
    assert_eq!(checked, 1, "the rotation took no batch");
    assert!(!db.encryption_status().rekey_in_progress);
    // After the rotation, slots change again, and a rotation runs again.
    db.add_slot(&Credentials::passphrase("added after"), KdfParams::insecure_fast()).unwrap();
    db.rekey(&[Credentials::passphrase("rekey"), Credentials::passphrase("added after")], &mut |_| {}).unwrap();
    drop(db);
    let s: Arc<dyn Storage> = Arc::new(m);
    let open = |p: &str| Config::new().storage(s.clone()).passphrase(p).use_env(false).open().map(|db| db.len());
    assert!(matches!(open("removed midway"), Err(foldvault::Error::WrongKey { .. })));
    assert!(matches!(open("added midway"), Err(foldvault::Error::WrongKey { .. })));
    assert_eq!(open("rekey").unwrap(), 0);
    assert_eq!(open("added after").unwrap(), 0);
}

/// A progress callback that panics ends that rotation, not every later one: the next call
/// resumes and finishes it.
#[test]
fn a_panicking_progress_callback_does_not_block_the_next_rotation() {
    let m = MemoryStorage::new();
    let db = cfg(Arc::new(m.clone())).open().unwrap();
    fill(&db, 6000);
    let creds = [Credentials::passphrase("rekey")];
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = db.rekey(&creds, &mut |_| panic!("progress callback panics"));
    }));
    assert!(r.is_err());
    assert!(db.encryption_status().rekey_in_progress);
    db.rekey(&creds, &mut |_| {}).unwrap();
    assert!(!db.encryption_status().rekey_in_progress);
    assert_eq!(db.open_tree("a").unwrap().len(), 6001);
}

/// A progress callback that keeps a write transaction open past its return: the rotation
/// stops with an error at its next step, and returns (its end took the writer lock the
/// callback's transaction held on the same thread, and waited for itself forever).
#[test]
fn a_progress_callback_that_keeps_a_transaction_does_not_hang_the_rotation() {
    let s: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let db = Arc::new(cfg(s).open().unwrap());
    fill(&db, 200);
    let (done, finished) = std::sync::mpsc::channel();
    let rotating = db.clone();
    std::thread::spawn(move || {
        let mut kept = None;
        let r = rotating.rekey(&[Credentials::passphrase("rekey")], &mut |_| {
            if kept.is_none() {
                kept = rotating.begin_write().ok();
            }
        });
        let held = kept.is_some();
        drop(kept);
        let _ = done.send((r.is_err(), held));
    });
    let (failed, held) = finished.recv_timeout(std::time::Duration::from_secs(60)).expect("the rotation hung");
    assert!(held && failed, "the callback's transaction ({held}) stopped the rotation ({failed})");
    // A rotation run again finishes it.
    db.rekey(&[Credentials::passphrase("rekey")], &mut |_| {}).unwrap();
    assert_filled(&db, 200);
}

/// A header update's two copies never reach the write-ahead log's bytes (they are written
/// through to the file, SPEC §15): logged, they stayed there after a checkpoint until later
/// groups reached them, a rotation's start header (its next-key block, which the old data key
/// unwraps) and the old key slots of a passphrase change among them.
#[test]
fn a_header_update_leaves_no_copy_of_the_header_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Config::new()
        .file(&path)
        .passphrase("rekey")
        .kdf(KdfParams::insecure_fast())
        .use_env(false)
        .flush_every_ms(None)
        .open()
        .unwrap();
    // Commits enough that the log's tail is far past the start of the log.
    for i in 0..200u32 {
        db.insert(i.to_be_bytes(), vec![7u8; 300]).unwrap();
        db.flush().unwrap();
    }
    let log = foldvault::storage::wal::sidecar_path(&path);
    let headers_in_log = || {
        let bytes = std::fs::read(&log).unwrap();
        bytes.chunks(4096).skip(1).filter(|p| p.starts_with(&foldvault::format::MAGIC)).count()
    };
    db.rekey(&[Credentials::passphrase("rekey")], &mut |_| {}).unwrap();
    assert_eq!(headers_in_log(), 0, "a header copy is in the log after a rotation");
    for i in 0..200u32 {
        db.insert(i.to_be_bytes(), vec![8u8; 300]).unwrap();
        db.flush().unwrap();
    }
    db.change_passphrase(&Credentials::passphrase("rekey"), "other".into(), KdfParams::insecure_fast()).unwrap();
    assert_eq!(headers_in_log(), 0, "a header copy is in the log after a passphrase change");
}

/// A caller's `Storage` that panics while a header update writes its second copy: the handle
/// is poisoned, as after an error there (it went on with the old header in memory beside the
/// new one on the disk).
#[test]
fn a_panic_in_a_header_update_poisons_the_handle() {
    let armed = Arc::new(AtomicBool::new(false));
    let trip = armed.clone();
    let panics_on_page_zero = move |offset: u64| {
        if offset == 0 && trip.load(Ordering::SeqCst) {
            panic!("the device panicked writing page 0");
        }
    };
    let db = cfg(Arc::new(hooked::Hooked::before_write(MemoryStorage::new(), panics_on_page_zero))).open().unwrap();
    fill(&db, 20);
    armed.store(true, Ordering::SeqCst);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        db.change_passphrase(&Credentials::passphrase("rekey"), "other".into(), KdfParams::insecure_fast())
    }));
    assert!(r.is_err(), "the header write did not panic");
    armed.store(false, Ordering::SeqCst);
    assert!(matches!(db.insert("k", "v"), Err(foldvault::Error::Poisoned)));
}
