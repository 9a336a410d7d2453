//! Durability under concurrent commits: commits acknowledged while others run, and commits made
//! while a sync is in flight (held at a gate), survive a power loss; nothing unacknowledged shows.

use super::hooked::Hooked;
use super::*;

/// Holds the syncs that pass it while armed: `arm`, `wait_for_sync` (one is held), `open`.
#[derive(Default)]
struct Gate {
    armed: parking_lot::Mutex<(bool, bool)>, // (armed, a sync is waiting at the gate)
    cv: parking_lot::Condvar,
}

impl Gate {
    /// Holds the caller while the gate is armed.
    fn pass(&self) {
        let mut g = self.armed.lock();
        if g.0 {
            g.1 = true;
            self.cv.notify_all();
            while g.0 {
                self.cv.wait(&mut g);
            }
            g.1 = false;
        }
    }

    fn arm(&self) {
        self.armed.lock().0 = true;
    }

    /// Returns once a sync is held at the gate.
    fn wait_for_sync(&self) {
        let mut g = self.armed.lock();
        while !g.1 {
            self.cv.wait(&mut g);
        }
    }

    /// Lets every held sync go, and every later one pass.
    fn open(&self) {
        let mut g = self.armed.lock();
        g.0 = false;
        self.cv.notify_all();
    }
}

/// Durable commits from several threads at once (group commit: a commit becomes durable after
/// its thread lets go of the writer, and one sync may cover the commits of several threads).
/// Every commit acknowledged before a power loss is in the image the loss leaves, and no more
/// syncs happen than commits.
#[test]
fn concurrent_immediate_commits_are_durable_once_acknowledged() {
    concurrent_immediate_commits(false);
}

/// The same over a file and its write-ahead log (SPEC.md §15): commits write pages while
/// another thread's group is being synced.
#[test]
fn concurrent_immediate_commits_with_write_ahead_log_are_durable_once_acknowledged() {
    concurrent_immediate_commits(true);
}

fn concurrent_immediate_commits(wal: bool) {
    use foldvault::storage::{CrashModel, FaultyStorage, Storage, WalStorage};
    use foldvault::{Durability, KdfParams};
    use parking_lot::Mutex;

    const WRITERS: usize = 4;
    const EACH: usize = 150;
    let device = FaultyStorage::new();
    let log = wal.then(FaultyStorage::new);
    let config = |s: Arc<dyn Storage>| {
        Config::new().storage(s).use_env(false).flush_every_ms(None).passphrase("group").kdf(KdfParams::insecure_fast())
    };
    // A small log, so that checkpoints happen while the writers run.
    let storage = |main: Arc<dyn Storage>, log: Option<Arc<dyn Storage>>| -> Arc<dyn Storage> {
        match log {
            Some(l) => Arc::new(WalStorage::open(main, l, 64, None).unwrap().max_group(16)),
            None => main,
        }
    };
    // A sync as slow as a disk's, so that commits of other threads land while one runs.
    let slow = || thread::sleep(Duration::from_micros(300));
    let slowed = |d: &FaultyStorage| -> Arc<dyn Storage> { Arc::new(Hooked::before_sync(d.clone(), slow)) };
    let db = Arc::new(config(storage(slowed(&device), log.as_ref().map(slowed))).open().unwrap());
    db.open_tree("t").unwrap();
    db.flush().unwrap();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let before = db.metrics();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (db, acked) = (db.clone(), acked.clone());
            thread::spawn(move || {
                for i in 0..EACH {
                    let key = format!("w{w}-{i:03}");
                    let tx = db.begin_write().unwrap();
                    tx.open_tree("t").unwrap().insert(&key, &b"v"[..]).unwrap();
                    tx.set_durability(Durability::Immediate);
                    tx.commit().unwrap();
                    acked.lock().push(key);
                }
            })
        })
        .collect();
    // Pages of commits made while another thread's record is being synced land among the
    // unsynced writes: lost, torn or reordered, they must not touch what that record or the
    // one before it can reach.
    let (round, straddled) = (std::cell::Cell::new(0u64), std::cell::Cell::new(0u64));
    // Images checked while the writers ran (test review: all could be skipped, unnoticed).
    let live_checked = std::cell::Cell::new(0u64);
    // `live`: the writers still run. The two images are then taken one after the other, and a
    // checkpoint that copied later groups home and began a new log between them leaves a file
    // newer than the log image: not a state a power loss leaves (groups are durable in the log
    // before their copies reach the file), and one the open refuses as a stale log (SPEC §15).
    // Such a pair is counted and skipped; once the writers are done, none may be refused.
    let check = |keys: &[String], live: bool| {
        let seed = round.get();
        round.set(seed + 1);
        let models =
            [CrashModel::LoseUnsynced, CrashModel::TearUnsynced { seed }, CrashModel::ReorderUnsynced { seed }];
        for model in models {
            // The log's image first: the file changes only by copying pages already durable in
            // the log (checkpoints) or into pages free in its newest state, so a file image
            // taken a moment later completes it.
            let log_image = log.as_ref().map(|l| l.crash_image(&model));
            let image = device.crash_image(&model);
            let log_storage = log_image.map(|b| Arc::new(FaultyStorage::from_bytes(b)) as Arc<dyn Storage>);
            let after = match config(storage(Arc::new(FaultyStorage::from_bytes(image)), log_storage)).open() {
                Err(foldvault::Error::StaleLog { .. }) if live => {
                    straddled.set(straddled.get() + 1);
                    continue;
                }
                r => r.unwrap(),
            };
            assert!(after.check().unwrap().is_ok(), "{model:?}: the image does not check");
            let t = after.open_tree("t").unwrap();
            for k in keys {
                assert!(t.get(k).unwrap().is_some(), "{model:?}: acknowledged commit {k} lost in a power loss");
            }
            if live {
                live_checked.set(live_checked.get() + 1);
            }
        }
    };
    // Power losses while the writers run: acknowledged first, image second, so the image was
    // taken after every acknowledgement it must show.
    while writers.iter().any(|w| !w.is_finished()) {
        let keys = acked.lock().clone();
        check(&keys, true);
    }
    for w in writers {
        w.join().unwrap();
    }
    let keys = acked.lock().clone();
    assert_eq!(keys.len(), WRITERS * EACH);
    eprintln!(
        "{} rounds of power-loss images while the writers ran ({} images checked, {} pairs straddling a \
         checkpoint skipped)",
        round.get(),
        live_checked.get(),
        straddled.get()
    );
    assert!(live_checked.get() > 0, "no power-loss image was checked while the writers ran");
    check(&keys, false);
    let m = db.metrics();
    assert!(m.syncs - before.syncs <= m.commits - before.commits, "more syncs than commits");
}

/// While one thread's commit record is being synced (the sync held at a gate), other commits
/// run and write pages. A power loss at that moment, with those unsynced writes lost, torn or
/// reordered, must leave a file that opens, checks and holds the last synced commit: the
/// pages the record being synced freed stay untouched until its sync returns.
#[test]
fn commits_during_a_sync_in_flight_leave_the_last_synced_commit_intact() {
    commits_during_a_sync_in_flight(false);
}

/// The same over a file and its write-ahead log, the sync held being the log's: the group being
/// synced is on the log device unsynced (lost, torn or reordered by the power loss), the pages
/// of the commits made meanwhile wait in memory for the next group.
#[test]
fn commits_during_a_log_sync_in_flight_leave_the_last_synced_commit_intact() {
    commits_during_a_sync_in_flight(true);
}

fn commits_during_a_sync_in_flight(wal: bool) {
    use foldvault::storage::{CrashModel, FaultyStorage, Storage, WalStorage};
    use foldvault::{Durability, KdfParams};

    let device = FaultyStorage::new();
    let log = wal.then(FaultyStorage::new);
    let gate = Arc::new(Gate::default());
    let config = |s: Arc<dyn Storage>| {
        Config::new().storage(s).use_env(false).flush_every_ms(None).passphrase("gate").kdf(KdfParams::insecure_fast())
    };
    let storage = |main: Arc<dyn Storage>, log: Option<Arc<dyn Storage>>| -> Arc<dyn Storage> {
        match log {
            Some(l) => Arc::new(WalStorage::open(main, l, 4096, None).unwrap()),
            None => main,
        }
    };
    // The log's image first, then the file's (as in `concurrent_immediate_commits`).
    let image_of = |model: &CrashModel| -> Arc<dyn Storage> {
        let log_image =
            log.as_ref().map(|l| Arc::new(FaultyStorage::from_bytes(l.crash_image(model))) as Arc<dyn Storage>);
        storage(Arc::new(FaultyStorage::from_bytes(device.crash_image(model))), log_image)
    };
    let at_gate = gate.clone();
    let gated = |d: &FaultyStorage| -> Arc<dyn Storage> {
        let at_gate = at_gate.clone();
        Arc::new(Hooked::before_sync(d.clone(), move || at_gate.pass()))
    };
    let db = Arc::new(
        config(match &log {
            Some(l) => storage(Arc::new(device.clone()), Some(gated(l))),
            None => gated(&device),
        })
        .open()
        .unwrap(),
    );
    let t = db.open_tree("t").unwrap();
    for i in 0..40u32 {
        t.insert(format!("k{i:02}"), vec![1u8; 300]).unwrap();
    }
    db.flush().unwrap(); // the last synced commit: every key holds 1s
    // A commit that is never made durable on its own, so the record below (its successor)
    // frees the pages of the synced commit in an earlier commit than its own: the leader's
    // own snapshot does not keep them from reuse, only the rule does.
    for i in 0..40u32 {
        t.insert(format!("k{i:02}"), vec![9u8; 300]).unwrap();
    }
    gate.arm();
    let leader = {
        let db = db.clone();
        thread::spawn(move || {
            let tx = db.begin_write().unwrap();
            let t = tx.open_tree("t").unwrap();
            for i in 0..40u32 {
                t.insert(format!("k{i:02}"), vec![2u8; 300]).unwrap();
            }
            tx.set_durability(Durability::Immediate);
            tx.commit()
        })
    };
    gate.wait_for_sync();
    // The record of the 2s is written and its sync is held. Commits meanwhile, in memory.
    for round in 3..8u8 {
        if wal {
            // One commit a round: 200 one-key commits write more pages than one group holds
            // (506), and a writer past that bound waits for the sync in flight (here, forever).
            let tx = db.begin_write().unwrap();
            let tt = tx.open_tree("t").unwrap();
            for i in 0..40u32 {
                tt.insert(format!("k{i:02}"), vec![round; 300]).unwrap();
            }
            drop(tt);
            tx.commit().unwrap();
        } else {
            for i in 0..40u32 {
                t.insert(format!("k{i:02}"), vec![round; 300]).unwrap();
            }
        }
    }
    for seed in 0..150u64 {
        for model in [CrashModel::LoseUnsynced, CrashModel::TearUnsynced { seed }, CrashModel::ReorderUnsynced { seed }]
        {
            let after = config(image_of(&model)).open().unwrap();
            assert!(after.check().unwrap().is_ok(), "{model:?}: the image does not check");
            let t = after.open_tree("t").unwrap();
            for i in 0..40u32 {
                let v = t.get(format!("k{i:02}")).unwrap().expect("a synced key is missing");
                assert!(
                    v.iter().all(|b| *b == v[0]) && (v[0] == 1 || v[0] == 2),
                    "{model:?}: a mixed or unsynced value"
                );
                assert_eq!(v[0], t.get("k00").unwrap().unwrap()[0], "{model:?}: half of a commit");
            }
        }
    }
    gate.open();
    leader.join().unwrap().unwrap();
    // The record of the 2s is on disk now, with the pages written meanwhile: the record and
    // every page it reaches are whole (none was reused for the commits made during its sync).
    for model in [CrashModel::LoseUnsynced, CrashModel::ReorderUnsynced { seed: 7 }] {
        let after = config(image_of(&model)).open().unwrap();
        assert!(after.check().unwrap().is_ok(), "{model:?}: the synced record does not check");
        assert_eq!(&after.open_tree("t").unwrap().get("k39").unwrap().unwrap()[..], &[2u8; 300][..]);
    }
    db.flush().unwrap();
    assert_eq!(&t.get("k39").unwrap().unwrap()[..], &[7u8; 300][..]);
}

/// A `flush()` called inside a write transaction is made when that transaction ends, by it, even
/// when another thread's transaction ends in between: the request was one flag for the whole
/// database, which the other thread's transaction took (its flush covered only its own commit),
/// so the first transaction's commit returned without the sync it asked for.
#[test]
fn a_flush_asked_for_in_a_transaction_is_made_when_that_transaction_ends() {
    use foldvault::storage::FaultyStorage;
    use foldvault::{Durability, KdfParams};

    let device = FaultyStorage::new();
    let gate = Arc::new(Gate::default());
    let at_gate = gate.clone();
    let storage: Arc<dyn foldvault::storage::Storage> =
        Arc::new(Hooked::before_sync(device.clone(), move || at_gate.pass()));
    let db = Arc::new(
        Config::new()
            .storage(storage)
            .use_env(false)
            .flush_every_ms(None)
            .durability(Durability::Eventual)
            .passphrase("flush")
            .kdf(KdfParams::insecure_fast())
            .open()
            .unwrap(),
    );
    db.insert("before", "v").unwrap();
    db.flush().unwrap();
    gate.arm();
    // Another thread's durable commit, its sync held at the gate (the writer let go).
    let other = {
        let db = db.clone();
        thread::spawn(move || {
            let tx = db.begin_write().unwrap();
            tx.open_tree("t").unwrap().insert("other", "v").unwrap();
            tx.set_durability(Durability::Immediate);
            tx.commit()
        })
    };
    gate.wait_for_sync();
    // This thread's transaction asks for a flush, and is still open when the other ends.
    let tx = db.begin_write().unwrap();
    tx.open_tree("t").unwrap().insert("mine", "v").unwrap();
    db.flush().unwrap();
    gate.open();
    other.join().unwrap().unwrap();
    tx.commit().unwrap();
    assert_eq!(
        db.durable_commit_seq(),
        db.encryption_status().commit_seq,
        "the commit that asked for a flush is not durable"
    );
}

/// A `flush()` asked for in a transaction is made when that transaction ends even when another
/// thread asks for one in its own transaction between the first's release of the writer and
/// its look at the request: one slot held the requesting thread, the second request took it,
/// and the first commit returned without its sync. The first commit's return is held up by a
/// full subscriber, which it waits on after it let go of the writer.
#[test]
fn a_flush_asked_for_in_a_transaction_is_not_taken_over_by_another_threads_request() {
    let db = Arc::new(Config::new().temporary(true).use_env(false).flush_every_ms(None).open().unwrap());
    let t = db.open_tree("t").unwrap();
    let mut sub = t.watch_prefix("");
    // A subscriber's queue holds 1,024 events: full, the next commit waits for it.
    for i in 0..1024u32 {
        t.insert(i.to_be_bytes(), "v").unwrap();
    }
    let before = db.commit_seq();
    let first = {
        let db = db.clone();
        thread::spawn(move || {
            let tx = db.begin_write().unwrap();
            tx.open_tree("t").unwrap().insert("mine", "v").unwrap();
            db.flush().unwrap();
            tx.commit().unwrap();
            (db.commit_seq(), db.durable_commit_seq())
        })
    };
    // Its commit published (and the writer let go), it waits on the full subscriber.
    while db.commit_seq() == before {
        thread::sleep(Duration::from_millis(1));
    }
    let (release, held) = mpsc::channel::<()>();
    let (asked, has_asked) = mpsc::channel::<()>();
    let second = {
        let db = db.clone();
        thread::spawn(move || {
            let tx = db.begin_write().unwrap();
            db.flush().unwrap();
            asked.send(()).unwrap();
            let _ = held.recv();
            drop(tx);
        })
    };
    has_asked.recv().unwrap();
    // One event taken: the first commit's delivery goes on, then its flush.
    assert!(sub.next().is_some());
    let (done, finished) = mpsc::channel();
    let waiter = thread::spawn(move || done.send(first.join().unwrap()).unwrap());
    // Its flush may wait for the writer the second transaction holds: let that go after a
    // while. (Without the fix the first returns at once, its commit not durable.)
    let got = match finished.recv_timeout(Duration::from_secs(2)) {
        Ok(r) => r,
        Err(_) => {
            release.send(()).unwrap();
            finished.recv().unwrap()
        }
    };
    let _ = release.send(());
    second.join().unwrap();
    waiter.join().unwrap();
    let (committed, durable) = got;
    assert!(durable >= committed.min(before + 1), "the commit that asked for a flush returned before it was durable");
}

/// A caller's `Storage` that panics in a durable commit's sync (or any write of its last
/// steps) poisons the handle, as an error there does. A handle that went on had marked the
/// unsynced record durable: its flushes failed with `ReportableBug`, and its next record went
/// into the slot of the last one synced (a crash in that sync could leave no commit to open).
#[test]
fn a_storage_that_panics_in_a_durable_commit_poisons_the_handle() {
    use foldvault::storage::{CrashModel, FaultyStorage};
    use foldvault::{Durability, Error};

    let armed = Arc::new(AtomicBool::new(false));
    let trip = armed.clone();
    let panics = move || {
        if trip.load(Ordering::SeqCst) {
            panic!("the device panicked in its sync");
        }
    };
    let device = FaultyStorage::new();
    let db = Config::new()
        .storage(Arc::new(Hooked::before_sync(device.clone(), panics)))
        .use_env(false)
        .plaintext()
        .flush_every_ms(None)
        .durability(Durability::Immediate)
        .open()
        .unwrap();
    db.insert("a", "1").unwrap();
    armed.store(true, Ordering::SeqCst);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.insert("b", "2")));
    assert!(r.is_err(), "the commit's sync did not panic");
    armed.store(false, Ordering::SeqCst);
    assert!(matches!(db.flush(), Err(Error::Poisoned)), "{:?}", db.flush());
    assert!(matches!(db.insert("c", "3"), Err(Error::Poisoned)));
    drop(db);
    // What was acknowledged is on the device.
    for model in [CrashModel::LoseUnsynced, CrashModel::TearUnsynced { seed: 3 }] {
        let image = FaultyStorage::from_bytes(device.crash_image(&model));
        let db = Config::new().storage(Arc::new(image)).use_env(false).plaintext().open().unwrap();
        assert_eq!(db.get("a").unwrap().as_deref(), Some(&b"1"[..]), "{model:?}");
        assert_eq!(db.get("c").unwrap(), None, "{model:?}");
    }
}

/// A sync that races a failing one. A file reports a failed write-back once: a commit's sync
/// (thread A, its record written) that ran after a header update's failed sync (thread B,
/// `add_slot`) found nothing to write, returned `Ok`, and the acknowledged commit was lost
/// with the sectors the failure dropped. Syncs now run one at a time, and one after a failure
/// sees the handle poisoned.
#[test]
fn a_commit_synced_beside_a_failing_header_update_is_durable_once_acknowledged() {
    use foldvault::storage::{CrashModel, FaultPlan, FaultyStorage, Storage};
    use foldvault::{Credentials, Durability, KdfParams};
    use parking_lot::{Condvar, Mutex};

    /// (syncs seen since armed, B's sync has failed, A may go on)
    #[derive(Default)]
    struct Race {
        state: Mutex<(u32, bool, bool)>,
        cv: Condvar,
        armed: AtomicBool,
    }
    struct RacingSyncs(FaultyStorage, Arc<Race>, u64);
    impl Storage for RacingSyncs {
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
            self.0.read_at(offset, buf)
        }
        fn write_at(&self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
            self.0.write_at(offset, buf)
        }
        fn sync(&self) -> std::io::Result<()> {
            if !self.1.armed.load(Ordering::SeqCst) {
                return self.0.sync();
            }
            let mut st = self.1.state.lock();
            st.0 += 1;
            self.1.cv.notify_all();
            if st.0 == 1 {
                // A's: held until B's sync has failed, or B waits for this one.
                while !st.2 {
                    self.1.cv.wait(&mut st);
                }
                drop(st);
                return self.0.sync();
            }
            // B's: fails, dropping some of what was unsynced (A's record among it).
            drop(st);
            self.0.set_plan(FaultPlan { fail_at: Some(1), seed: self.2, ..Default::default() });
            let r = self.0.sync();
            self.0.set_plan(FaultPlan::default());
            let mut st = self.1.state.lock();
            st.1 = true;
            self.1.cv.notify_all();
            r
        }
        fn len(&self) -> std::io::Result<u64> {
            self.0.len()
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.0.set_len(len)
        }
    }

    for seed in 0..4 {
        let device = FaultyStorage::new();
        let race = Arc::new(Race::default());
        let cfg = |s: Arc<dyn Storage>| {
            Config::new().storage(s).use_env(false).passphrase("p").kdf(KdfParams::insecure_fast()).flush_every_ms(None)
        };
        let storage = Arc::new(RacingSyncs(device.clone(), race.clone(), seed));
        let db = Arc::new(cfg(storage).durability(Durability::Immediate).open().unwrap());
        for i in 0..100 {
            db.insert(format!("k{i:03}"), &b"v"[..]).unwrap();
        }
        db.flush().unwrap();
        race.armed.store(true, Ordering::SeqCst);
        let a = {
            let db = db.clone();
            thread::spawn(move || db.insert("acked", "v").map(|_| ()))
        };
        {
            let mut st = race.state.lock();
            while st.0 == 0 {
                race.cv.wait(&mut st);
            }
        }
        let (named_tx, named) = mpsc::channel();
        let b = {
            let db = db.clone();
            thread::spawn(move || {
                named_tx.send(blocked::this_thread()).unwrap();
                db.add_slot(&Credentials::passphrase("second"), KdfParams::insecure_fast())
            })
        };
        let tid = named.recv().unwrap();
        // Until B's sync has failed (before the fix), or B waits for A's sync to end: seen as B
        // asleep on a lock while A's sync is the only one begun. `until_blocked` falls back to
        // 500 ms where that cannot be seen: no `/proc` (no thread id), or a kernel that shows
        // every wait channel as "0" (where a loop on `blocked_now` alone ran into its 60 s).
        let start = Instant::now();
        loop {
            let seen = blocked::until_blocked(tid.as_deref(), Duration::from_millis(500));
            let st = race.state.lock();
            if st.1 || !seen || st.0 == 1 {
                break;
            }
            drop(st);
            assert!(start.elapsed() < Duration::from_secs(60), "B neither synced nor waited");
            thread::sleep(Duration::from_millis(1));
        }
        race.state.lock().2 = true;
        race.cv.notify_all();
        let acked = a.join().unwrap();
        assert!(b.join().unwrap().is_err(), "seed {seed}: the failing sync was not B's");
        drop(db);
        if acked.is_ok() {
            let db = cfg(Arc::new(device.reboot(&CrashModel::LoseUnsynced))).open().unwrap();
            assert_eq!(
                db.get("acked").unwrap().as_deref(),
                Some(&b"v"[..]),
                "seed {seed}: an acknowledged commit lost"
            );
        }
    }
}
