//! The log on fault-injecting devices: a commit torn before its sync and committed again through
//! the log is not taken for a stale log; a stale log is refused with the setting off too.

use super::*;

/// A database on fault-injecting devices: the file and its log (checkpoints at 48 pages,
/// groups of at most 8, so a batch of 200 records goes direct).
fn faulty_storage(rig: &FaultyDevices) -> foldvault::Result<Arc<dyn Storage>> {
    let l = rig.log.as_ref().unwrap();
    Ok(Arc::new(WalStorage::open(Arc::new(rig.main.clone()), Arc::new(l.clone()), 48, None)?.max_group(8)))
}
/// A plaintext database on `s`.
fn storage_config(s: Arc<dyn Storage>) -> Config {
    Config::new().storage(s).use_env(false).flush_every_ms(None).cache_capacity(1 << 20).plaintext()
}
/// 200 records of 300 bytes in one batch: more pages than a group holds.
fn large_batch(db: &foldvault::Db, b: u8) -> foldvault::Result<()> {
    let t = db.open_tree("t").unwrap();
    let mut batch = foldvault::Batch::default();
    for i in 0..200u32 {
        batch.insert(format!("k{i:04}").into_bytes(), vec![b; 300]);
    }
    t.apply_batch(batch)
}

/// Not a stale log: a large commit goes direct (to the file); power is lost before its sync,
/// and only its commit record reached the disk (a reordered crash). The next open falls back
/// to the previous commit; the next session commits (logged) into the same slot with the same
/// sequence number, then crashes. The log holds an acknowledged commit and must be replayed,
/// not refused as older than the file's torn record (a reviewer's case).
#[test]
fn a_commit_torn_before_its_sync_and_committed_again_through_the_log_is_not_stale() {
    // `extra`: commits held in memory before the large one, all made durable by one flush: the
    // torn record's sequence number is then past the one the next session commits again.
    for extra in [0u32, 3] {
        torn_and_committed_again(extra);
    }
}

fn torn_and_committed_again(extra: u32) {
    let rig = FaultyDevices::new(true);
    let db = storage_config(faulty_storage(&rig).unwrap()).open().unwrap();
    let t = db.open_tree("t").unwrap();
    t.insert(b"a", b"1").unwrap();
    db.flush().unwrap();
    drop(t);
    drop(db);
    let base = rig.live_images();
    let mut false_positives = 0;
    let mut cases = 0;
    for at in 1..400u64 {
        let rig1 = FaultyDevices::from_images(base.clone());
        let db = storage_config(faulty_storage(&rig1).unwrap()).open().unwrap();
        db.open_tree("t").unwrap().insert(b"b", b"2").unwrap();
        db.flush().unwrap();
        let acked = db.durable_commit_seq();
        let t = db.open_tree("t").unwrap();
        for e in 0..extra {
            t.insert(format!("e{e}"), &b"x"[..]).unwrap();
        }
        // (`set_plan` numbers operations from 1 again: `at` is the batch's `at`-th operation.)
        rig1.plan_on(0, &FaultPlan { crash_at: Some(at), ..FaultPlan::default() });
        let r = large_batch(&db, 7).and_then(|()| db.flush().map(|_| ()));
        drop(t);
        std::mem::forget(db);
        if r.is_ok() {
            break;
        }
        // durable image plus the commit slots as the live image has them
        let live = rig1.main.live_image();
        let mut main = rig1.main.durable_image();
        if live.len() < 4 * PAGE || main.len() < 4 * PAGE {
            continue;
        }
        if live[2 * PAGE..4 * PAGE] == main[2 * PAGE..4 * PAGE] {
            continue;
        }
        main[2 * PAGE..4 * PAGE].copy_from_slice(&live[2 * PAGE..4 * PAGE]);
        let log = rig1.log.as_ref().unwrap().durable_image();
        let rig2 = FaultyDevices::from_images((main, Some(log)));
        // Every such image opens at the acknowledged commit or later: an error here (a
        // rollback past it, damage) is the loss this test guards against (test review: it was
        // skipped).
        let db2 = storage_config(faulty_storage(&rig2).unwrap())
            .min_commit_seq(acked)
            .open()
            .unwrap_or_else(|e| panic!("extra {extra}, at {at}: the crash image does not open: {e}"));
        let rep = db2.recovery_report();
        if !rep.fell_back {
            drop(db2);
            continue;
        }
        cases += 1;
        db2.open_tree("t").unwrap().insert(b"c", b"3").unwrap();
        db2.flush().unwrap();
        let acked2 = db2.durable_commit_seq();
        std::mem::forget(db2); // crash: the group is synced in the log
        let rig3 = FaultyDevices::from_images(rig2.durable_images());
        match storage_config(faulty_storage(&rig3).unwrap()).min_commit_seq(acked2).open() {
            Ok(db3) => assert_eq!(db3.open_tree("t").unwrap().get(b"c").unwrap().as_deref(), Some(&b"3"[..])),
            Err(e @ Error::StaleLog { .. }) => {
                eprintln!("extra {extra}, at {at}: refused as stale: {e}");
                false_positives += 1;
            }
            Err(e) => panic!("at {at}: {e}"),
        }
    }
    assert!(cases > 0, "extra {extra}: no crash left a torn record to fall back from");
    assert_eq!(false_positives, 0, "extra {extra}");
}

/// A stale log put back beside the file is refused with the log setting off as well as on: with
/// it off the log was folded into the file while the file was located, before the check, and
/// three acknowledged commits were rolled back (a reviewer's case). With it off, a log found is
/// used by the session and folded in at its close.
#[test]
fn a_stale_log_is_refused_with_the_setting_off_too() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let cfg = |on: bool| Config::new().file(&a).use_env(false).flush_every_ms(None).plaintext().write_ahead_log(on);
    let db = cfg(true).open().unwrap();
    for v in [b"1", b"2"] {
        db.insert(b"k", &v[..]).unwrap();
        db.flush().unwrap();
    }
    let saved = std::fs::read(sidecar_path(&a)).unwrap();
    drop(db);
    let db = cfg(true).open().unwrap();
    for v in [b"3", b"4", b"5"] {
        db.insert(b"k", &v[..]).unwrap();
        db.flush().unwrap();
    }
    drop(db);
    std::fs::write(sidecar_path(&a), &saved).unwrap();
    let file = std::fs::read(&a).unwrap();
    for on in [true, false] {
        let err = cfg(on).open().map(|_| ()).unwrap_err();
        assert!(matches!(err, Error::StaleLog { .. }), "setting {on}: {err:?}");
        assert_eq!(std::fs::read(&a).unwrap(), file, "setting {on}: the refused open changed the file");
    }
    std::fs::remove_file(sidecar_path(&a)).unwrap();
    assert_eq!(cfg(false).open().unwrap().get(b"k").unwrap().unwrap(), &b"5"[..]);
}
