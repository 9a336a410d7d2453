//! sled 0.34's subscriptions (`Tree::watch_prefix`, `Subscriber`, `Event`). Their events against
//! sled's, step by step, are compared in `src/db/sled_diff_tests.rs` (feature `sled-import`);
//! these tests hold what a comparison on one thread does not: events across threads, in commit
//! order; the `Future` side; the end of a subscription (database closed, tree dropped); a
//! subscriber that falls behind; and events that never carry user bytes into `Debug`.

#[path = "common/blocked.rs"]
mod blocked;
#[path = "common/sled_env.rs"]
mod sled_env;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use foldvault::{Event, IVec};
use sled_env::*;

fn insert(k: &str, v: &str) -> Event {
    Event::Insert { key: IVec::from(k), value: IVec::from(v) }
}

fn remove(k: &str) -> Event {
    Event::Remove { key: IVec::from(k) }
}

/// A thread that inserts `keys` into `t`, one commit each, returned once `t` holds `len`
/// entries and the thread sleeps on a lock: past a subscriber's 1,024 events that nobody
/// reads, it is then waiting on it.
fn writer_until<K: AsRef<[u8]> + Send + 'static>(
    t: &foldvault::Tree,
    keys: impl IntoIterator<Item = K> + Send + 'static,
    len: usize,
) -> std::thread::JoinHandle<()> {
    let (named_tx, named_rx) = std::sync::mpsc::channel();
    let writer = {
        let t = t.clone();
        std::thread::spawn(move || {
            named_tx.send(blocked::this_thread()).unwrap();
            for k in keys {
                t.insert(k, "v").unwrap();
            }
        })
    };
    let tid = named_rx.recv().unwrap();
    while t.len() < len {
        std::thread::yield_now();
    }
    blocked::until_blocked(tid.as_deref(), Duration::from_millis(50));
    writer
}

/// Events written on another thread reach a subscriber blocked in `next`; only keys under its
/// prefix, and only changes.
#[test]
fn a_subscriber_on_one_thread_hears_writes_on_another() {
    let db = temp_db();
    let t = db.open_tree("t").unwrap();
    let mut atoms = t.watch_prefix("atom:");
    let mut all = t.watch_prefix("");
    let writer = {
        let t = t.clone();
        std::thread::spawn(move || {
            t.insert("atom:1", "a").unwrap();
            t.insert("ref:1", "r").unwrap();
            t.insert("atom:1", "a").unwrap(); // the same value: no change, no event
            t.remove("atom:2").unwrap(); // not there: no event
            t.remove("atom:1").unwrap();
        })
    };
    assert_eq!(atoms.next(), Some(insert("atom:1", "a")));
    assert_eq!(atoms.next(), Some(remove("atom:1")));
    writer.join().unwrap();
    assert!(atoms.next_timeout(Duration::ZERO).is_err(), "nothing more");
    let heard: Vec<Event> = std::iter::from_fn(|| all.next_timeout(Duration::ZERO).ok()).collect();
    assert_eq!(heard, [insert("atom:1", "a"), insert("ref:1", "r"), remove("atom:1")]);
    // Another tree's writes are not this tree's.
    db.insert("atom:1", "default tree").unwrap();
    assert!(all.next_timeout(Duration::ZERO).is_err());
}

/// A transaction's events come when it commits, one per key it changed (its last value), none
/// if it aborts.
#[test]
fn a_transaction_is_heard_once_committed_and_never_if_aborted() {
    let db = temp_db();
    let t = db.open_tree("t").unwrap();
    t.insert("kept", "same").unwrap();
    let mut sub = t.watch_prefix("");
    let tx = db.begin_write().unwrap();
    let tt = tx.open_tree("t").unwrap();
    tt.insert("a", "1").unwrap();
    tt.insert("a", "2").unwrap();
    tt.insert("b", "gone again").unwrap();
    tt.remove("b").unwrap();
    tt.insert("kept", "other").unwrap();
    tt.insert("kept", "same").unwrap();
    assert!(sub.next_timeout(Duration::ZERO).is_err(), "nothing before the commit");
    tx.commit().unwrap();
    let heard: Vec<Event> = std::iter::from_fn(|| sub.next_timeout(Duration::ZERO).ok()).collect();
    assert_eq!(heard, [insert("a", "2")]);
    let tx = db.begin_write().unwrap();
    tx.open_tree("t").unwrap().insert("c", "3").unwrap();
    tx.abort();
    let r: foldvault::transaction::TransactionResult<(), ()> = t.transaction(|tt| {
        tt.insert("d", "4")?;
        foldvault::transaction::abort(())
    });
    assert!(r.is_err());
    assert!(sub.next_timeout(Duration::ZERO).is_err(), "an aborted transaction is not heard");
}

/// Merges from many threads into one counter: each commit's event carries the count it made,
/// so the events must read 1, 2, 3, ... exactly (delivered in commit order, none lost).
#[test]
fn merged_counts_are_heard_in_commit_order() {
    let db = temp_db();
    let t = db.open_tree("counter").unwrap();
    t.set_merge_operator(|_: &[u8], old: Option<&[u8]>, add: &[u8]| {
        let n = |b: Option<&[u8]>| b.and_then(|b| <[u8; 4]>::try_from(b).ok()).map_or(0, u32::from_be_bytes);
        Some((n(old) + n(Some(add))).to_be_bytes().to_vec())
    });
    let mut sub = t.watch_prefix("");
    std::thread::scope(|s| {
        for _ in 0..4 {
            let t = t.clone();
            s.spawn(move || {
                for _ in 0..200 {
                    t.merge("n", 1u32.to_be_bytes()).unwrap();
                }
            });
        }
        for want in 1..=800u32 {
            let Some(Event::Insert { value, .. }) = sub.next() else { panic!("an insert") };
            assert_eq!(u32::from_be_bytes(value[..].try_into().unwrap()), want);
        }
    });
    assert!(sub.next_timeout(Duration::ZERO).is_err());
}

/// Writers on many threads: every subscriber hears every commit, each key's values in the
/// order they were committed.
#[test]
fn events_arrive_in_commit_order() {
    let db = temp_db();
    let t = db.open_tree("counters").unwrap();
    let mut sub = t.watch_prefix("");
    std::thread::scope(|s| {
        for w in 0..4u32 {
            let t = t.clone();
            s.spawn(move || {
                for i in 0..200u32 {
                    t.insert(format!("w{w}"), i.to_be_bytes().to_vec()).unwrap();
                }
            });
        }
        let mut last = [None::<u32>; 4];
        for _ in 0..800 {
            let Some(Event::Insert { key, value }) = sub.next() else { panic!("an insert") };
            let w = usize::from(key[1] - b'0');
            let i = u32::from_be_bytes(value[..].try_into().unwrap());
            assert_eq!(last[w].map_or(0, |l| l + 1), i, "writer {w}'s values out of order");
            last[w] = Some(i);
        }
    });
    assert!(sub.next_timeout(Duration::ZERO).is_err());
}

/// A subscriber holds 1,024 events; a writer that finds it full waits until it takes one, and
/// nothing is lost.
#[test]
fn a_full_subscriber_holds_up_writers_and_loses_nothing() {
    let db = temp_db();
    let t = db.open_tree("t").unwrap();
    let mut sub = t.watch_prefix("");
    // The writer gets as far as the subscriber's 1,024 events and the commit waiting on it,
    // and no further.
    let writer = writer_until(&t, (0..3000u32).map(u32::to_be_bytes), 1025);
    std::thread::sleep(Duration::from_millis(50));
    assert!(t.len() <= 1026, "{} commits went past a full subscriber", t.len());
    // Writes to a tree nobody watches, in a transaction too, do not wait for it.
    let other = db.open_tree("other").unwrap();
    other.insert("free", "1").unwrap();
    let tx = db.begin_write().unwrap();
    tx.open_tree("other").unwrap().insert("free too", "2").unwrap();
    tx.commit().unwrap();
    for i in 0..3000u32 {
        assert_eq!(sub.next().unwrap().key(), &i.to_be_bytes()[..]);
    }
    writer.join().unwrap();
}

/// A commit waiting for a full subscriber holds no lock a flush or a subscription needs: the
/// thread that reads the subscriber may flush and subscribe before it drains it, while one
/// writer waits on the full subscriber and another, with events too, waits for its turn (API
/// review, medium: the second held the writer while it waited, and the reader's flush, which
/// takes the writer to write its commit record, waited for it for good; sled's flush does not).
#[test]
fn the_reader_of_a_full_subscriber_may_flush_and_subscribe() {
    let db = temp_db();
    let t = db.open_tree("t").unwrap();
    let mut sub = t.watch_prefix("");
    let first = writer_until(&t, (0..1100u32).map(u32::to_be_bytes), 1025);
    let second = writer_until(&t, [5000u32.to_be_bytes()], 1026);
    let (done, finished) = std::sync::mpsc::channel();
    let reader = {
        let db = db.clone();
        std::thread::spawn(move || {
            db.flush().unwrap();
            let later = db.open_tree("t").unwrap().watch_prefix("none:");
            done.send(()).unwrap();
            let mut keys: Vec<IVec> = (0..1101).map(|_| sub.next().unwrap().key().clone()).collect();
            keys.sort();
            (keys, later)
        })
    };
    finished.recv_timeout(Duration::from_secs(20)).expect("the flush or the subscription waited for the writers");
    let (keys, _later) = reader.join().unwrap();
    first.join().unwrap();
    second.join().unwrap();
    let mut want: Vec<IVec> = (0..1100u32).chain([5000]).map(|i| IVec::from(&i.to_be_bytes()[..])).collect();
    want.sort();
    assert_eq!(keys, want);
}

/// A commit that waits for a full subscriber holds up only the commits some subscriber hears:
/// a write under no subscriber's prefix, on the watched tree itself, goes on, and the thread
/// that reads the full subscriber may make it (review of the session's diff, medium: every
/// commit with recorded changes took a turn, and that write waited for the full subscriber's
/// delivery, which waited for its thread).
#[test]
fn a_write_no_subscriber_hears_does_not_wait_for_a_full_one() {
    let db = temp_db();
    let t = db.open_tree("t").unwrap();
    let mut sub = t.watch_prefix("x");
    let writer = writer_until(&t, (0..1100u32).map(|i| format!("x{i:05}")), 1025);
    let (done, finished) = std::sync::mpsc::channel();
    let reader = {
        let t = t.clone();
        std::thread::spawn(move || {
            t.insert("y", "unheard").unwrap();
            done.send(()).unwrap();
            (0..1100).map(|_| sub.next().unwrap()).count()
        })
    };
    finished.recv_timeout(Duration::from_secs(20)).expect("a write nobody hears waited for a full subscriber");
    assert_eq!(reader.join().unwrap(), 1100);
    writer.join().unwrap();
}

/// Dropping a tree nobody watches takes no delivery turn: the reader of a full subscriber may
/// do it (review of the session's last commits, medium: every drop took a turn while anyone
/// subscribed anywhere, and waited for the full subscriber's delivery, which waited for it).
#[test]
fn dropping_an_unwatched_tree_does_not_wait_for_a_full_subscriber() {
    let db = temp_db();
    let a = db.open_tree("a").unwrap();
    db.open_tree("b").unwrap().insert("k", "v").unwrap();
    let mut full = a.watch_prefix("");
    let writer = writer_until(&a, (0..1100u32).map(u32::to_be_bytes), 1025);
    let (done, finished) = std::sync::mpsc::channel();
    let reader = {
        let db = db.clone();
        std::thread::spawn(move || {
            assert!(db.drop_tree("b").unwrap());
            done.send(()).unwrap();
            (0..1100).map(|_| full.next().unwrap()).count()
        })
    };
    finished.recv_timeout(Duration::from_secs(20)).expect("the drop of an unwatched tree waited for a full subscriber");
    assert_eq!(reader.join().unwrap(), 1100);
    writer.join().unwrap();
}

/// A tree's drop ends its subscriptions after the events of every commit made before it, even
/// when those wait for another tree's full subscriber (review of the session's diff, medium:
/// the drop ended them at once, the subscriber said `None` before an event of an earlier
/// commit, which arrived after its end).
#[test]
fn a_drop_ends_subscriptions_after_the_events_of_earlier_commits() {
    let db = temp_db();
    let (a, b) = (db.open_tree("a").unwrap(), db.open_tree("b").unwrap());
    let mut full = a.watch_prefix("");
    let mut ending = b.watch_prefix("");
    let first = writer_until(&a, (0..1025u32).map(u32::to_be_bytes), 1025);
    let second = {
        let b = b.clone();
        std::thread::spawn(move || b.insert("x", "1").unwrap())
    };
    while b.get("x").unwrap().is_none() {
        std::thread::yield_now();
    }
    let collector = std::thread::spawn(move || (&mut ending).collect::<Vec<_>>());
    let dropper = {
        let db = db.clone();
        std::thread::spawn(move || db.drop_tree("b").unwrap())
    };
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!((0..1025).map(|_| full.next().unwrap()).count(), 1025);
    assert!(dropper.join().unwrap());
    assert_eq!(collector.join().unwrap(), vec![insert("x", "1")]);
    first.join().unwrap();
    second.join().unwrap();
}

/// A subscription ends (`None`, `Disconnected`) when its tree is dropped or its database closes;
/// the tree made again under the name has subscribers of its own.
#[test]
fn a_subscription_ends_with_its_tree_or_its_database() {
    let db = temp_db();
    let t = db.open_tree("t").unwrap();
    let mut old = t.watch_prefix("");
    t.insert("k", "v").unwrap();
    assert!(db.drop_tree("t").unwrap());
    assert_eq!(old.next(), Some(insert("k", "v")));
    assert_eq!(old.next(), None, "the dropped tree's subscriber ends");
    let again = db.open_tree("t").unwrap();
    let mut new = again.watch_prefix("");
    again.insert("k", "new").unwrap();
    assert_eq!(new.next(), Some(insert("k", "new")));
    let mut default = db.watch_prefix("");
    drop((t, again));
    drop(db);
    assert_eq!(default.next(), None, "the database closed");
    assert_eq!(new.next(), None);
}

/// A tree dropped and made again in one write transaction: the old tree's subscriber hears the
/// old tree's writes only, then ends; a write of the new tree to the same key was merged with
/// the old one's, and the old subscriber heard the new value (or nothing, when the new tree's
/// last write was a removal of an absent key).
#[test]
fn a_tree_dropped_and_made_again_in_one_transaction_sends_old_subscribers_only_theirs() {
    for (new_write, want) in [(Some("new"), insert("k", "old")), (None, insert("k", "old"))] {
        let db = temp_db();
        let t = db.open_tree("t").unwrap();
        let mut sub = t.watch_prefix("");
        let tx = db.begin_write().unwrap();
        tx.open_tree("t").unwrap().insert("k", "old").unwrap();
        assert!(tx.drop_tree("t").unwrap());
        let again = tx.open_tree("t").unwrap();
        match new_write {
            Some(v) => again.insert("k", v).unwrap(),
            None => again.remove("k").unwrap(),
        };
        drop(again);
        tx.commit().unwrap();
        assert_eq!(sub.next_timeout(Duration::from_secs(5)), Ok(want), "{new_write:?}");
        assert_eq!(sub.next(), None, "{new_write:?}");
    }
}

/// The `Future` side: pending until a commit, woken by it, `None` once the database closed.
#[test]
fn a_subscriber_is_a_future_woken_by_a_commit() {
    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let flag = Arc::new(Flag(false.into()));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let db = temp_db();
    let mut sub = db.watch_prefix("");
    assert!(Pin::new(&mut sub).poll(&mut cx).is_pending());
    db.insert("k", "v").unwrap();
    assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst), "the commit woke it");
    assert_eq!(Pin::new(&mut sub).poll(&mut cx), Poll::Ready(Some(insert("k", "v"))));
    assert!(Pin::new(&mut sub).poll(&mut cx).is_pending());
    // A dropped tree's subscriber is woken to find its end; so is every one at the close.
    let t = db.open_tree("t").unwrap();
    let mut on_t = t.watch_prefix("");
    assert!(Pin::new(&mut on_t).poll(&mut cx).is_pending());
    flag.0.store(false, std::sync::atomic::Ordering::SeqCst);
    db.drop_tree("t").unwrap();
    assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst), "the drop woke it");
    assert_eq!(Pin::new(&mut on_t).poll(&mut cx), Poll::Ready(None));
    // A handle on the dropped tree gives a subscriber that has ended.
    assert_eq!(Pin::new(&mut t.watch_prefix("")).poll(&mut cx), Poll::Ready(None));
    flag.0.store(false, std::sync::atomic::Ordering::SeqCst);
    drop((t, db));
    assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst), "the close woke it");
    assert_eq!(Pin::new(&mut sub).poll(&mut cx), Poll::Ready(None));
}

/// Events and subscribers print no user bytes.
#[test]
fn events_print_no_user_bytes() {
    let db = temp_db();
    let mut sub = db.watch_prefix("");
    db.insert("secret-key", "secret-value").unwrap();
    let e = sub.next().unwrap();
    let shown = format!("{e:?} {sub:?}");
    assert!(!shown.contains("secret"), "{shown}");
}

/// A subscription made inside a write transaction of its own thread hears the writes the
/// transaction makes after it, when it commits (db review, medium: whether a transaction
/// recorded was decided when it began, so it sent nothing).
#[test]
fn a_subscription_made_inside_a_transaction_hears_its_later_writes() {
    let db = temp_db();
    let t = db.open_tree("t").unwrap();
    let tx = db.begin_write().unwrap();
    let tt = tx.open_tree("t").unwrap();
    tt.insert("before", "1").unwrap();
    let mut sub = t.watch_prefix("");
    tt.insert("after", "2").unwrap();
    assert!(sub.next_timeout(Duration::ZERO).is_err(), "nothing before the commit");
    tx.commit().unwrap();
    assert_eq!(sub.next_timeout(Duration::ZERO), Ok(insert("after", "2")));
    assert!(sub.next_timeout(Duration::ZERO).is_err());
}

/// A subscription made while a write transaction runs on another thread waits for it to end,
/// so it never misses part of a commit that follows its return (db review, medium: made
/// meanwhile, it heard nothing of that transaction's commit, though the commit came after).
#[test]
fn a_subscription_waits_for_a_transaction_running_elsewhere() {
    let db = temp_db();
    let t = db.open_tree("t").unwrap();
    let tx = db.begin_write().unwrap();
    let tt = tx.open_tree("t").unwrap();
    tt.insert("a", "1").unwrap();
    let (sent, made) = std::sync::mpsc::channel();
    let (named_tx, named_rx) = std::sync::mpsc::channel();
    let subscriber = {
        let t = t.clone();
        std::thread::spawn(move || {
            named_tx.send(blocked::this_thread()).unwrap();
            let sub = t.watch_prefix("");
            sent.send(()).unwrap();
            sub
        })
    };
    // Until the subscriber waits (for the transaction's writer, which this thread holds).
    blocked::until_blocked(named_rx.recv().unwrap().as_deref(), Duration::from_millis(100));
    assert!(made.try_recv().is_err(), "subscribed while a transaction was running");
    tt.insert("b", "2").unwrap();
    tx.commit().unwrap();
    let mut sub = subscriber.join().unwrap();
    assert!(sub.next_timeout(Duration::ZERO).is_err(), "the commit came before the subscription");
    t.insert("c", "3").unwrap();
    assert_eq!(sub.next_timeout(Duration::ZERO), Ok(insert("c", "3")));
}
