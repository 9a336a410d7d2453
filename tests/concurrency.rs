//! Concurrency: readers running during a stream of commits never see a partial commit;
//! snapshots are unaffected by later commits; an abandoned write transaction changes nothing;
//! sled-style transactions from many threads are serializable; `generate_id` inside and
//! outside transactions, from many threads, neither deadlocks nor repeats an id.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use foldvault::fuzzing::Rng;
use foldvault::transaction::{ConflictableTransactionError, abort};
use foldvault::{Config, Db, IVec, Transactional};

#[path = "common/blocked.rs"]
mod blocked;
#[path = "concurrency/durability.rs"]
mod durability;
#[path = "common/hooked.rs"]
mod hooked;

const ACCOUNTS: u32 = 64;
const INITIAL: u64 = 1_000;
const TOTAL: u64 = 2 * ACCOUNTS as u64 * INITIAL;

fn temp_db() -> Db {
    Config::new().temporary(true).use_env(false).open().expect("open temporary")
}

/// A temporary encrypted database under `passphrase` (a cheap key derivation).
fn temp_encrypted(passphrase: &str) -> Db {
    Config::new()
        .temporary(true)
        .use_env(false)
        .passphrase(passphrase)
        .kdf(foldvault::KdfParams::insecure_fast())
        .open()
        .unwrap()
}

fn num(v: &IVec) -> u64 {
    u64::from_be_bytes(v.as_ref().try_into().expect("8-byte balance"))
}

fn account(i: u32) -> String {
    format!("acct-{i:03}")
}

/// Runs `f` on a thread and fails the test if it has not finished after `secs` (a deadlock).
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => {
            worker.join().unwrap();
            v
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            worker.join().unwrap();
            unreachable!("the worker panicked")
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("not finished after {secs} s: deadlock?"),
    }
}

#[test]
fn readers_never_see_a_partial_transfer() {
    let db = temp_db();
    let (a, b) = (db.open_tree("A").unwrap(), db.open_tree("B").unwrap());
    {
        let tx = db.begin_write().unwrap();
        let (ta, tb) = (tx.open_tree("A").unwrap(), tx.open_tree("B").unwrap());
        for i in 0..ACCOUNTS {
            ta.insert(account(i), INITIAL.to_be_bytes()).unwrap();
            tb.insert(account(i), INITIAL.to_be_bytes()).unwrap();
        }
        tx.commit().unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let snapshots = Arc::new(AtomicU64::new(0));
    // Each reader reads the first commit before the writers start, and once more after they
    // end (a read begun after `stop`), however the threads are scheduled.
    let started = Arc::new(std::sync::Barrier::new(5));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (db, stop, snapshots) = (db.clone(), stop.clone(), snapshots.clone());
            let mut started = Some(started.clone());
            thread::spawn(move || {
                let mut seqs = Vec::new();
                loop {
                    let done = stop.load(Ordering::Acquire);
                    let r = db.begin_read().unwrap();
                    let mut sum = 0;
                    for name in ["A", "B"] {
                        let t = r.open_tree(name).unwrap();
                        let mut n = 0;
                        for kv in t.iter() {
                            sum += num(&kv.unwrap().1);
                            n += 1;
                        }
                        assert_eq!(n, ACCOUNTS, "snapshot {} of tree {name}", r.commit_seq());
                        assert_eq!(t.len(), ACCOUNTS as usize);
                    }
                    assert_eq!(sum, TOTAL, "snapshot at commit {} is not balanced", r.commit_seq());
                    seqs.push(r.commit_seq());
                    snapshots.fetch_add(1, Ordering::Relaxed);
                    if let Some(b) = started.take() {
                        b.wait();
                    }
                    if done {
                        break seqs;
                    }
                }
            })
        })
        .collect();
    started.wait();
    let first = db.begin_read().unwrap().commit_seq();

    // Writer 1: explicit transactions, A -> B. Half way it waits for four more snapshots, so
    // that readers surely read while the writers are at work (after the barrier, a reader on a
    // loaded machine could otherwise first run again once they were done).
    let w1 = {
        let (db, snapshots) = (db.clone(), snapshots.clone());
        thread::spawn(move || {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
            for i in 0..400 {
                if i == 200 {
                    // A minute at most: a reader that failed counts no more snapshots, and its
                    // panic, not this wait, is what the test must report.
                    let (at, deadline) = (snapshots.load(Ordering::Relaxed), Instant::now() + Duration::from_secs(60));
                    while snapshots.load(Ordering::Relaxed) < at + 4 && Instant::now() < deadline {
                        thread::yield_now();
                    }
                }
                let (from, to) =
                    (account(rng.below(ACCOUNTS as u64) as u32), account(rng.below(ACCOUNTS as u64) as u32));
                let tx = db.begin_write().unwrap();
                let (ta, tb) = (tx.open_tree("A").unwrap(), tx.open_tree("B").unwrap());
                let have = num(&ta.get(&from).unwrap().unwrap());
                let amount = rng.below(have + 1);
                ta.insert(&from, (have - amount).to_be_bytes()).unwrap();
                let there = num(&tb.get(&to).unwrap().unwrap());
                tb.insert(&to, (there + amount).to_be_bytes()).unwrap();
                tx.commit().unwrap();
            }
        })
    };
    // Writer 2: sled-style transactions, B -> A, some of them aborted half way.
    let w2 = {
        let (a, b) = (a.clone(), b.clone());
        thread::spawn(move || {
            let mut rng = Rng(0xD1B5_4A32_D192_ED03);
            let mut aborted = 0;
            for round in 0..400u32 {
                let (from, to) =
                    (account(rng.below(ACCOUNTS as u64) as u32), account(rng.below(ACCOUNTS as u64) as u32));
                let r = (&b, &a).transaction(|(tb, ta)| {
                    let have = num(&tb.get(&from)?.unwrap());
                    let amount = have / 3;
                    tb.insert(from.as_str(), (have - amount).to_be_bytes())?;
                    if round % 7 == 0 {
                        return abort("half way");
                    }
                    let there = num(&ta.get(&to)?.unwrap());
                    ta.insert(to.as_str(), (there + amount).to_be_bytes())?;
                    Ok(())
                });
                match r {
                    Ok(()) => {}
                    Err(foldvault::transaction::TransactionError::Abort("half way")) => aborted += 1,
                    Err(e) => panic!("{e:?}"),
                }
            }
            aborted
        })
    };
    w1.join().unwrap();
    let aborted = w2.join().unwrap();
    let last = db.begin_read().unwrap().commit_seq();
    stop.store(true, Ordering::Release);
    let mut distinct = std::collections::BTreeSet::new();
    for r in readers {
        distinct.extend(r.join().unwrap());
    }
    assert_eq!(aborted, 58);
    let total: u64 = a.iter().chain(b.iter()).map(|kv| num(&kv.unwrap().1)).sum();
    assert_eq!(total, TOTAL);
    assert!(snapshots.load(Ordering::Relaxed) > 0);
    println!("{} balanced snapshots over {} distinct commits", snapshots.load(Ordering::Relaxed), distinct.len());
    assert!(distinct.iter().any(|s| first < *s && *s < last), "no reader saw a commit made while writers ran");
}

#[test]
fn snapshot_is_unaffected_by_later_commits() {
    let db = temp_db();
    let t = db.open_tree("t").unwrap();
    t.insert("k", "v1").unwrap();
    t.insert("other", "o1").unwrap();

    let snap = db.begin_read().unwrap();
    let st = snap.open_tree("t").unwrap();
    assert_eq!(st.get("k").unwrap().unwrap(), "v1");

    t.insert("k", "v2").unwrap();
    t.remove("other").unwrap();
    t.insert("new", "n").unwrap();
    let tx = db.begin_write().unwrap();
    tx.open_tree("t").unwrap().insert("k", "v3").unwrap();
    tx.open_tree("created-later").unwrap().insert("x", "y").unwrap();
    tx.commit().unwrap();
    db.flush().unwrap();

    // The same key read again through the old snapshot: unchanged.
    assert_eq!(st.get("k").unwrap().unwrap(), "v1");
    assert_eq!(st.get("other").unwrap().unwrap(), "o1");
    assert_eq!(st.get("new").unwrap(), None);
    assert_eq!(st.len(), 2);
    assert_eq!(st.iter().count(), 2);
    assert!(snap.open_tree("created-later").is_err());
    // The live tree and a new snapshot see the newest commit.
    assert_eq!(t.get("k").unwrap().unwrap(), "v3");
    let now = db.begin_read().unwrap();
    assert!(now.commit_seq() > snap.commit_seq());
    assert_eq!(now.open_tree("t").unwrap().get("k").unwrap().unwrap(), "v3");
    assert_eq!(now.open_tree("created-later").unwrap().get("x").unwrap().unwrap(), "y");

    // Many commits that overwrite and free the snapshot's pages do not disturb it.
    for i in 0..2000u32 {
        t.insert(format!("fill-{i:05}"), vec![i as u8; 200]).unwrap();
        if i % 500 == 0 {
            db.flush().unwrap();
        }
    }
    t.clear().unwrap();
    db.flush().unwrap();
    assert_eq!(st.get("k").unwrap().unwrap(), "v1");
    assert_eq!(st.iter().map(|kv| kv.unwrap().0).collect::<Vec<_>>(), vec![IVec::from("k"), IVec::from("other")]);
}

#[test]
fn dropped_write_transaction_aborts() {
    let db = temp_db();
    let t = db.open_tree("t").unwrap();
    t.insert("keep", "1").unwrap();
    let seq = db.commit_seq();
    {
        let tx = db.begin_write().unwrap();
        let tt = tx.open_tree("t").unwrap();
        tt.insert("keep", "changed").unwrap();
        tt.insert("added", "x").unwrap();
        tx.open_tree("brand-new").unwrap().insert("a", "b").unwrap();
        assert!(tx.drop_tree("t").unwrap());
        // dropped here without commit
    }
    assert_eq!(db.commit_seq(), seq);
    assert_eq!(t.get("keep").unwrap().unwrap(), "1");
    assert_eq!(t.get("added").unwrap(), None);
    assert!(!db.tree_names().iter().any(|n| n == "brand-new"));

    // The writer lock was released: other writers proceed at once.
    within(120, {
        let t = t.clone();
        move || t.insert("after", "ok").unwrap()
    });
    let tx = db.begin_write().unwrap();
    tx.open_tree("t").unwrap().insert("explicit", "abort").unwrap();
    tx.abort();
    assert_eq!(t.get("explicit").unwrap(), None);

    // A transaction dropped on another thread (as on a panic) also aborts.
    let db2 = db.clone();
    let r = thread::spawn(move || {
        let tx = db2.begin_write().unwrap();
        tx.open_tree("t").unwrap().insert("panicked", "x").unwrap();
        panic!("writer thread dies mid-transaction");
    })
    .join();
    assert!(r.is_err());
    assert_eq!(t.get("panicked").unwrap(), None);
    t.insert("still", "writable").unwrap();
}

#[test]
fn concurrent_sled_transactions_are_serializable() {
    let db = temp_db();
    let counters = db.open_tree("counters").unwrap();
    let log = db.open_tree("log").unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|id| {
            let (c, l) = (counters.clone(), log.clone());
            thread::spawn(move || {
                for i in 0..150u64 {
                    (&c, &l)
                        .transaction(|(c, l)| {
                            let n = c.get("n")?.map(|v| num(&v)).unwrap_or(0);
                            c.insert("n", (n + 1).to_be_bytes())?;
                            l.insert((n + 1).to_be_bytes(), (id * 1000 + i).to_be_bytes())?;
                            Ok::<_, ConflictableTransactionError>(())
                        })
                        .unwrap();
                    // Plain inserts interleave with the transactions.
                    c.insert(format!("t{id}"), i.to_be_bytes()).unwrap();
                }
            })
        })
        .collect();
    within(600, move || threads.into_iter().for_each(|t| t.join().unwrap()));
    assert_eq!(num(&counters.get("n").unwrap().unwrap()), 600);
    assert_eq!(log.len(), 600);
    let keys: Vec<u64> = log.iter().keys().map(|k| num(&k.unwrap())).collect();
    assert_eq!(keys, (1..=600).collect::<Vec<_>>());
}

#[test]
fn generate_id_inside_and_outside_transactions_from_many_threads() {
    let ids = within(600, || {
        let db = temp_db();
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let db = db.clone();
                thread::spawn(move || {
                    let mut mine = Vec::new();
                    for _ in 0..200 {
                        if i % 2 == 0 {
                            mine.push(db.generate_id().unwrap());
                        } else {
                            let pair = db
                                .transaction(|tx| {
                                    let id = tx.generate_id()?;
                                    tx.insert(id.to_be_bytes(), b"")?;
                                    Ok::<_, ConflictableTransactionError>(id)
                                })
                                .unwrap();
                            mine.push(pair);
                        }
                    }
                    mine
                })
            })
            .collect();
        let mut all: Vec<u64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        assert_eq!(db.len(), 400);
        all.sort_unstable();
        all
    });
    let n = ids.len();
    let mut dedup = ids.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), n, "an id was generated twice");
}

/// `Db::generate_id` waiting for the writer lock (no range reserved yet) while a transaction
/// that holds it asks for an id: the waiter holds no lock while it waits (it held the id lock,
/// and the transaction had to be rolled back and run again), so the transaction gets its id at
/// once, in its one attempt, and the waiter its own after.
#[test]
fn generate_id_in_transaction_while_db_generate_id_waits() {
    let db = temp_db();
    let attempts = Arc::new(AtomicU64::new(0));
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let ready_tx = std::sync::Mutex::new(ready_tx);
    let (named_tx, named_rx) = mpsc::channel();
    let named_rx = std::sync::Mutex::new(named_rx);
    let waiter = {
        let db = db.clone();
        thread::spawn(move || {
            ready_rx.recv().unwrap();
            named_tx.send(blocked::this_thread()).unwrap();
            // Finds no range reserved, then waits for the writer lock.
            db.generate_id().unwrap()
        })
    };
    let (db2, attempts2) = (db.clone(), attempts.clone());
    let id = within(300, move || {
        db2.transaction(|tx| {
            attempts2.fetch_add(1, Ordering::SeqCst);
            tx.insert("first attempt", "kept")?;
            ready_tx.lock().unwrap().send(()).unwrap();
            // Until the waiter waits for the writer lock this transaction holds.
            let tid = named_rx.lock().unwrap().recv().unwrap();
            blocked::until_blocked(tid.as_deref(), Duration::from_millis(300));
            let id = tx.generate_id()?;
            tx.insert("id", id.to_be_bytes())?;
            Ok::<_, ConflictableTransactionError>(id)
        })
        .unwrap()
    });
    let other = waiter.join().unwrap();
    assert!(other > id, "{other} after {id}");
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "one attempt");
    assert_eq!(db.get("first attempt").unwrap().unwrap(), "kept");
    assert_eq!(num(&db.get("id").unwrap().unwrap()), id);
}

/// sled 0.34 lets a transaction's closure call `flush()` on a tree (its flush takes no
/// transaction lock). Here `Tree::flush` takes the writer lock when commits are pending, and
/// the transaction holds it: the call never returns. (Non-transactional *writes* inside the
/// closure deadlock in sled 0.34 too; `TransactionalTree::flush` is the supported form.)
#[test]
fn flush_inside_a_transaction_closure_returns() {
    let db = temp_db();
    let t = db.open_tree("t").unwrap();
    t.insert("pending", "not yet durable").unwrap();
    let t2 = t.clone();
    within(120, move || {
        t2.transaction(|tx| {
            tx.insert("k", "v")?;
            t2.flush()?;
            Ok::<_, ConflictableTransactionError>(())
        })
        .unwrap()
    });
    assert_eq!(t.get("k").unwrap().unwrap(), "v");
}

/// ... and that flush is made when the transaction ends, before `transaction` returns: under
/// the default (eventual) durability, a commit made before the closure's `flush` survives a
/// power loss right after, whether the transaction committed (its commit too) or aborted.
#[test]
fn a_flush_inside_a_transaction_closure_is_made_when_the_transaction_ends() {
    use foldvault::storage::{CrashModel, FaultyStorage, Storage};
    use foldvault::transaction::TransactionResult;
    let cfg = |s: Arc<dyn Storage>| Config::new().storage(s).use_env(false).flush_every_ms(None).plaintext();
    for commit in [true, false] {
        let device = FaultyStorage::new();
        let db = cfg(Arc::new(device.clone())).open().unwrap();
        let t = db.open_tree("t").unwrap();
        db.flush().unwrap();
        t.insert("before", "v").unwrap();
        let r: TransactionResult<(), ()> = t.transaction(|tx| {
            tx.insert("inside", "v")?;
            t.flush()?;
            if commit { Ok(()) } else { abort(()) }
        });
        assert_eq!(r.is_ok(), commit);
        let after =
            cfg(Arc::new(FaultyStorage::from_bytes(device.crash_image(&CrashModel::LoseUnsynced)))).open().unwrap();
        let t2 = after.open_tree("t").unwrap();
        assert_eq!(t2.get("before").unwrap().unwrap(), "v", "commit {commit}");
        assert_eq!(t2.contains_key("inside").unwrap(), commit);
    }
}

/// Readers racing a writer through a cache of 64 pages: entries are evicted, wiped and refilled
/// for other pages while readers hold them or are about to, page numbers are reused as soon as
/// each commit is durable, and each commit's snapshot pins new roots. Every value a reader gets
/// must be one written for that key (the key is inside the value) and never older than what the
/// reader saw before.
#[test]
fn readers_through_a_tiny_cache_get_their_own_keys_values() {
    within(600, || {
        let db = Config::new().temporary(true).use_env(false).cache_capacity(0).open().expect("open");
        let t = db.open_tree("t").expect("tree");
        const KEYS: u32 = 3_000;
        let value = |k: u32, version: u64| {
            let mut v = format!("key-{k:05}-").into_bytes();
            v.extend_from_slice(&version.to_be_bytes());
            v.resize(120, b'.');
            v
        };
        for k in 0..KEYS {
            t.insert(format!("key-{k:05}"), value(k, 0)).expect("insert");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..3u64)
            .map(|r| {
                let (t, stop) = (t.clone(), stop.clone());
                thread::spawn(move || {
                    let mut rng = Rng(r + 11);
                    let mut seen = vec![0u64; KEYS as usize];
                    let mut reads = 0u64;
                    while !stop.load(Ordering::Relaxed) || reads < 20_000 {
                        let k = rng.below(KEYS as u64) as u32;
                        let v = t.get(format!("key-{k:05}")).expect("get").expect("present");
                        let prefix = format!("key-{k:05}-");
                        assert!(v.starts_with(prefix.as_bytes()), "key {k} read another key's value");
                        let version = u64::from_be_bytes(v[prefix.len()..prefix.len() + 8].try_into().unwrap());
                        assert!(
                            version >= seen[k as usize],
                            "key {k} went back from {} to {version}",
                            seen[k as usize]
                        );
                        seen[k as usize] = version;
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        let mut rng = Rng(5);
        for version in 1..=400u64 {
            let mut batch = foldvault::Batch::default();
            for _ in 0..20 {
                let k = rng.below(KEYS as u64) as u32;
                batch.insert(format!("key-{k:05}").as_bytes(), value(k, version));
            }
            t.apply_batch(batch).expect("batch");
            // Durable at once, so freed pages are handed out again while readers run.
            db.flush().expect("flush");
        }
        stop.store(true, Ordering::Relaxed);
        let reads: u64 = readers.into_iter().map(|h| h.join().expect("reader")).sum();
        assert!(reads >= 60_000);
        assert!(db.metrics().cache_evictions > 1_000, "the cache was too large to recycle entries");
    });
}

/// Regression: `encryption_status` held the header lock while it waited for the writer (for
/// the key epoch), against the lock order (writer, then header) that durable commits and
/// header updates follow. Here the thread holding the writer asks for the header, as a commit
/// does: the two waited for each other forever.
#[test]
fn encryption_status_waits_for_the_writer_without_holding_the_header() {
    within(300, || {
        let db = temp_encrypted("status");
        let tx = db.begin_write().unwrap();
        tx.open_tree("t").unwrap().insert(b"k", b"v").unwrap();
        let (named_tx, named_rx) = mpsc::channel();
        let asker = {
            let db = db.clone();
            thread::spawn(move || {
                named_tx.send(blocked::this_thread()).unwrap();
                db.encryption_status().commit_seq
            })
        };
        // Until the asker waits for the writer lock, which this transaction holds.
        blocked::until_blocked(named_rx.recv().unwrap().as_deref(), Duration::from_millis(300));
        assert_eq!(db.slots().len(), 1, "the header, with the writer held");
        tx.commit().unwrap();
        let seen = asker.join().unwrap();
        assert!(seen <= db.encryption_status().commit_seq);
    });
}

/// Regression: `metrics()` and `encryption_status()` read the key epoch under the writer lock,
/// so a monitoring thread waited for any write transaction on another thread to end.
#[test]
fn counters_do_not_wait_for_a_write_transaction() {
    let db = temp_encrypted("counters");
    let tx = db.begin_write().unwrap();
    tx.open_tree("t").unwrap().insert(b"k", b"v").unwrap();
    let reader = db.clone();
    let (epoch, status_epoch) = within(60, move || (reader.metrics().key_epoch, reader.encryption_status().key_epoch));
    assert_eq!(epoch, status_epoch);
    tx.commit().unwrap();
    assert_eq!(db.metrics().key_epoch, epoch);
}

/// Regression: check, backup, rekey and the key-slot calls took the writer lock directly, so
/// on a thread inside a write transaction they waited for themselves forever. They are
/// refused instead, as `Tree` writes are; the transaction still commits.
#[test]
fn maintenance_inside_a_write_transaction_is_refused_not_a_deadlock() {
    within(300, || {
        let fast = foldvault::KdfParams::insecure_fast();
        let db = temp_encrypted("m");
        let tx = db.begin_write().unwrap();
        tx.open_tree("t").unwrap().insert(b"k", b"v").unwrap();
        tx.set_durability(foldvault::Durability::Eventual);
        let syncs = db.metrics().syncs;
        let refused = |r: foldvault::Result<()>| matches!(r, Err(foldvault::Error::Unsupported(_)));
        assert!(refused(db.check().map(|_| ())), "check");
        assert!(refused(db.backup_to(Vec::new(), &mut |_| {}).map(|_| ())), "backup");
        assert!(refused(db.rekey(&[foldvault::Credentials::passphrase("m")], &mut |_| {})), "rekey");
        assert!(refused(db.add_slot(&foldvault::Credentials::passphrase("n"), fast).map(|_| ())), "add_slot");
        assert!(refused(db.remove_slot(0)), "remove_slot");
        let old = foldvault::Credentials::passphrase("m");
        assert!(refused(db.change_passphrase(&old, "n".into(), fast)), "change_passphrase");
        tx.commit().unwrap();
        // None left a flush for the transaction's end (check and backup did).
        assert_eq!(db.metrics().syncs, syncs, "a refused call made the commit sync");
        // Compaction too, and without leaving a flush for the transaction's end (it did, and
        // was then refused for a write).
        let tx = db.begin_write().unwrap();
        tx.set_durability(foldvault::Durability::Eventual);
        tx.open_tree("t").unwrap().insert(b"k2", b"v").unwrap();
        let syncs = db.metrics().syncs;
        assert!(refused(db.compact().map(|_| ())), "compact");
        tx.commit().unwrap();
        assert_eq!(db.metrics().syncs, syncs, "the refused compaction made the commit sync");
        assert!(db.check().unwrap().is_ok());
        assert_eq!(db.slots().len(), 1);
    });
}

/// Regression: opens of a new path at once. A file is created under its name and only then
/// locked, so an open that locked it first found it empty and answered `Truncated` (a
/// database truncated to nothing). Each open now opens the database or is `Locked`.
#[test]
fn concurrent_opens_of_a_new_path_never_report_truncated() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..60 {
        let path = dir.path().join(format!("db{i}"));
        let gate = Arc::new(std::sync::Barrier::new(4));
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let (path, gate) = (path.clone(), gate.clone());
                thread::spawn(move || {
                    gate.wait();
                    Config::new().file(&path).plaintext().use_env(false).open().map(drop)
                })
            })
            .collect();
        for o in opens {
            match o.join().unwrap() {
                Ok(()) | Err(foldvault::Error::Locked) => {}
                Err(e) => panic!("open {i}: {e:?}"),
            }
        }
    }
}
