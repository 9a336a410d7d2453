//! A second crash during recovery from the first, or in the work after it, from first images
//! that had different repairs to make (its second session may fail only once the power is cut).

use super::*;

/// The images a power loss leaves, opened: what the open had to repair. A crash image whose
/// open repairs nothing recovers the way a clean one does, so the second crash below starts
/// only from images with something to repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Repairs {
    /// The newest commit record did not open and an older one was taken.
    fell_back: bool,
    /// Commit-record slots that hold bytes that do not open.
    rejected: bool,
    /// A copy of the file header was damaged or stale, and rewritten.
    header: bool,
    /// Pages the write-ahead log holds, to replay over the file.
    log_pages: bool,
}

fn repairs_of(images: &DeviceImages, min_seq: u64) -> Result<Repairs, String> {
    let log_pages = match &images.1 {
        None => false,
        Some(l) => {
            // A look at the log alone, left as it is (nothing written).
            let main: Arc<dyn Storage> = Arc::new(FaultyStorage::from_bytes(images.0.clone()));
            let wal =
                WalStorage::open(main, Arc::new(FaultyStorage::from_bytes(l.clone())), WAL_CHECKPOINT_PAGES, None)
                    .map_err(|e| format!("log: {e}"))?;
            let logged = wal.logged_pages() > 0;
            wal.close_as_crash();
            logged
        }
    };
    let s = storage_of(&FaultyDevices::from_images(images.clone())).map_err(|e| format!("log: {e}"))?;
    let db = config(s, true).min_commit_seq(min_seq).open().map_err(|e| format!("open: {e}"))?;
    let r = db.recovery_report();
    Ok(Repairs {
        fell_back: r.fell_back,
        rejected: !r.rejected_slots.is_empty(),
        header: r.header_repaired.is_some(),
        log_pages,
    })
}

/// A second power loss during recovery from a first, or during the work after it. The first
/// losses cut five further transactions at one of their first forty operations; three of the
/// images they leave that have repairs to make at open are kept, a different set of repairs
/// each where there are three. From each, the second session opens the file and runs eight
/// more transactions, and power is lost at each of its operations in turn, on either device.
/// The second recovery must give a state between the second session's last acknowledged commit
/// and the one in flight (the first recovery's state when the second session acknowledged
/// nothing): nothing of either session is lost.
fn crash_during_recovery(wal: bool) {
    let rig = FaultyDevices::new(wal);
    let db = config(storage(&rig), true).open().unwrap();
    let mut states = vec![hash_model(&Model::new())];
    let mut model = Model::new();
    workload(&db, 200, 11, &mut states, &Mutex::new(Progress::default()), &mut model).unwrap();
    db.flush().unwrap();
    let base_seq = db.durable_commit_seq();
    drop(db); // a clean close: the file (and log) as the first loss finds them
    let base = rig.live_images();
    let rig_of = |images: &DeviceImages| FaultyDevices::from_images(images.clone());
    // The first losses, on the device a commit writes (the log if any), at each of the first
    // forty operations of a further five transactions.
    let mut candidates: Vec<(DeviceImages, Repairs, Progress, Vec<[u8; 32]>)> = Vec::new();
    for at in 1..=40u64 {
        for model1 in [CrashModel::TearUnsynced { seed: at }, CrashModel::ReorderUnsynced { seed: at }] {
            let rig1 = rig_of(&base);
            let db = config(storage(&rig1), true).open().unwrap();
            rig1.plan_on(usize::from(wal), &FaultPlan { crash_at: Some(at), ..FaultPlan::default() });
            let mut states1 = vec![hash_model(&model)];
            let progress1 = Mutex::new(Progress { acked_seq: base_seq, ..Progress::default() });
            let r = workload(&db, 5, 12, &mut states1, &progress1, &mut model.clone());
            drop(db);
            if r.is_ok() {
                continue; // past the transactions' last operation
            }
            let images = rig1.crash_images(&model1);
            let prog = *progress1.lock();
            let repairs = repairs_of(&images, prog.acked_seq).unwrap_or_else(|e| panic!("first loss at {at}: {e}"));
            if repairs.fell_back || repairs.rejected || repairs.header || repairs.log_pages {
                candidates.push((images, repairs, prog, states1));
            }
        }
    }
    // The first image of each set of repairs, then others spread over the operations, to three.
    let mut firsts: Vec<(DeviceImages, Repairs, Progress, Vec<[u8; 32]>)> = Vec::new();
    for c in &candidates {
        if firsts.len() < 3 && firsts.iter().all(|f| f.1 != c.1) {
            firsts.push(c.clone());
        }
    }
    // (Two crash points can leave the same images: the next distinct one is taken.)
    let spread = (1..=3).map(|i| i * candidates.len() / 4).chain(0..candidates.len());
    for c in spread.filter_map(|i| candidates.get(i)) {
        if firsts.len() < 3 && firsts.iter().all(|f| f.0 != c.0) {
            firsts.push(c.clone());
        }
    }
    let kinds: Vec<Repairs> = firsts.iter().map(|f| f.1).collect();
    println!("{} first losses left repairs to make; kept {kinds:?}", candidates.len());
    assert!(firsts.len() == 3, "first losses with repairs to make: {kinds:?}");
    let (mut checked, mut acknowledged_runs, mut sessions) = (0, 0, 0);
    for (first, repairs, prog, states1) in &firsts {
        let what1 = format!("first loss leaving {repairs:?}");
        let first_model = recover_model(first.clone(), true, prog.acked_seq).unwrap_or_else(|e| panic!("{what1}: {e}"));
        let h1 = hash_model(&first_model);
        assert!(states1[prog.acked..=prog.upper].contains(&h1), "{what1}: the recovery lost an acknowledged commit");
        // The second session: the open that recovers, then eight transactions.
        let session =
            |rig2: &FaultyDevices, states2: &mut Vec<[u8; 32]>, progress2: &Mutex<Progress>| -> foldvault::Result<()> {
                let s = storage_of(rig2)?; // reading the log may fail too
                let db2 = config(s, true).min_commit_seq(prog.acked_seq).open()?;
                workload(&db2, 8, 13, states2, progress2, &mut first_model.clone())
            };
        let start = || (vec![h1], Mutex::new(Progress { acked_seq: prog.acked_seq, ..Progress::default() }));
        let totals: Vec<u64> = {
            let rig2 = rig_of(first);
            rig2.iter().for_each(|d| d.set_plan(FaultPlan::default()));
            let (mut states2, progress2) = start();
            session(&rig2, &mut states2, &progress2).unwrap_or_else(|e| panic!("{what1}: clean second session: {e}"));
            rig2.iter().map(|d| d.op_count()).collect()
        };
        for (device, &total) in totals.iter().enumerate() {
            for second_at in 1..=total {
                let rig2 = rig_of(first);
                rig2.plan_on(device, &FaultPlan { crash_at: Some(second_at), ..FaultPlan::default() });
                let (mut states2, progress2) = start();
                let failed = session(&rig2, &mut states2, &progress2).err();
                let what = format!("{what1}, second loss at {second_at} on device {device}");
                // Any step may fail once the device is cut, and only then.
                assert!(
                    failed.is_none() || rig2.iter().any(|d| d.crashed()),
                    "{what}: the session failed with no power loss: {failed:?}"
                );
                sessions += 1;
                let p2 = *progress2.lock();
                acknowledged_runs += usize::from(p2.acked > 0);
                for model in [CrashModel::LoseUnsynced, CrashModel::ReorderUnsynced { seed: second_at }] {
                    let h = recover(rig2.crash_images(&model), true, p2.acked_seq)
                        .unwrap_or_else(|e| panic!("{what} ({model:?}): {e}"));
                    assert!(
                        states2[p2.acked..=p2.upper].contains(&h),
                        "{what} ({model:?}): state not between the last acknowledged commit ({} of the session) and the one in flight ({})",
                        p2.acked,
                        p2.upper
                    );
                    checked += 1;
                }
            }
        }
    }
    println!("second-loss recoveries: {checked}, {acknowledged_runs} of {sessions} sessions acknowledged a commit");
    // Both cases are reached: power lost before the second session acknowledged anything, and after.
    assert!(acknowledged_runs > 0 && acknowledged_runs < sessions, "{acknowledged_runs} of {sessions}");
}

#[test]
fn crash_during_recovery_file() {
    crash_during_recovery(false);
}

#[test]
fn crash_during_recovery_with_write_ahead_log() {
    crash_during_recovery(true);
}
