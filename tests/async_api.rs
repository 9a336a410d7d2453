#![cfg(feature = "tokio")]
//! The async API (feature `tokio`): `AsyncDb` / `AsyncTree` cover sled's calls and the `KvStore`
//! shape of FoldDB's successor, and never block the runtime's worker threads — checked by
//! holding the writer lock while more writes are pending than there are workers, and showing
//! that other tasks still run.
//!
//! Run with `cargo test --features tokio --test async_api`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use foldvault::{AsyncDb, AsyncTree, Batch, Config, IVec};

async fn temp_db() -> AsyncDb {
    AsyncDb::open(Config::new().temporary(true).use_env(false)).await.expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_calls() {
    let db = temp_db().await;
    let t = db.open_tree("metadata").await.unwrap();
    assert_eq!(t.insert("k1", "v1").await.unwrap(), None);
    assert_eq!(t.insert("k1", "v2").await.unwrap().unwrap(), "v1");
    assert_eq!(t.get("k1").await.unwrap().unwrap(), "v2");
    assert!(t.contains_key(b"k1").await.unwrap());
    assert_eq!(t.remove("k1").await.unwrap().unwrap(), "v2");
    assert!(!t.contains_key("k1").await.unwrap());
    assert!(t.is_empty().await.unwrap());

    // A merge operator set on the tree serves its async merges; the checksum is the sync one.
    t.tree().set_merge_operator(|_: &[u8], old: Option<&[u8]>, m: &[u8]| Some([old.unwrap_or_default(), m].concat()));
    t.merge("m", "a").await.unwrap();
    assert_eq!(t.merge("m", "b").await.unwrap().unwrap(), "ab");
    assert_eq!(db.checksum().await.unwrap(), db.db().checksum().unwrap());
    t.remove("m").await.unwrap();

    for i in 0..50u32 {
        t.insert(format!("atom:{i:03}"), format!("{{\"n\":{i}}}").into_bytes()).await.unwrap();
    }
    t.insert("ref:1", "r").await.unwrap();
    assert_eq!(t.len().await.unwrap(), 51);
    assert_eq!(t.scan_prefix("atom:").await.unwrap().len(), 50);
    assert_eq!(t.scan_prefix("ref:").await.unwrap(), vec![(IVec::from("ref:1"), IVec::from("r"))]);
    let all = t.iter().await.unwrap();
    assert_eq!(all.len(), 51);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    let r = t.range("atom:010".."atom:020").await.unwrap();
    assert_eq!(r.len(), 10);
    assert_eq!(r[0].0, "atom:010");
    assert_eq!(t.range::<&str, _>(..).await.unwrap().len(), 51);
    assert_eq!(t.first().await.unwrap().unwrap().0, "atom:000");
    assert_eq!(t.last().await.unwrap().unwrap().0, "ref:1");
    assert_eq!(t.get_lt("atom:010").await.unwrap().unwrap().0, "atom:009");
    assert_eq!(t.get_gt("atom:049").await.unwrap().unwrap().0, "ref:1");
    assert_eq!(t.checksum().await.unwrap(), t.tree().checksum().unwrap());
    assert_eq!(t.name(), "metadata");

    // Compare-and-swap and the update loops, and the pops.
    assert!(t.compare_and_swap("c", None::<&[u8]>, Some("1")).await.unwrap().is_ok());
    let refused = t.compare_and_swap("c", None::<&[u8]>, Some("2")).await.unwrap().unwrap_err();
    assert_eq!(refused.current.unwrap(), "1");
    let next = |old: Option<&[u8]>| Some([old.unwrap_or_default(), b"+"].concat());
    assert_eq!(t.update_and_fetch("c", next).await.unwrap().unwrap(), "1+");
    assert_eq!(t.fetch_and_update("c", next).await.unwrap().unwrap(), "1+");
    assert_eq!(t.remove("c").await.unwrap().unwrap(), "1++");
    t.insert("\x00first", "f").await.unwrap();
    t.insert("~last", "l").await.unwrap();
    assert_eq!(t.pop_min().await.unwrap().unwrap().0, "\x00first");
    assert_eq!(t.pop_max().await.unwrap().unwrap().0, "~last");
    assert_eq!(t.len().await.unwrap(), 51);

    let mut batch = Batch::default();
    batch.insert("b1", "1");
    batch.remove("ref:1");
    t.apply_batch(batch).await.unwrap();
    assert_eq!(t.get("b1").await.unwrap().unwrap(), "1");
    assert_eq!(t.get("ref:1").await.unwrap(), None);
    t.flush().await.unwrap();
    assert_eq!(db.db().durable_commit_seq(), db.db().commit_seq());
    t.clear().await.unwrap();
    assert_eq!(t.len().await.unwrap(), 0);

    // The default tree through Deref, tree management, ids.
    db.insert("default", "yes").await.unwrap();
    assert_eq!(db.get("default").await.unwrap().unwrap(), "yes");
    assert_eq!(db.db().get("default").unwrap().unwrap(), "yes");
    let names = db.tree_names().await.unwrap();
    assert!(names.iter().any(|n| n == "metadata"));
    assert!(db.drop_tree("metadata").await.unwrap());
    assert!(!db.drop_tree("metadata").await.unwrap());
    let (a, b) = (db.generate_id().await.unwrap(), db.generate_id().await.unwrap());
    assert!(b > a);
    // Compaction after the drop: the file does not grow, the default tree stays.
    let r = db.compact().await.unwrap();
    assert!(r.pages_after <= r.pages_before, "{r:?}");
    assert_eq!(db.get("default").await.unwrap().unwrap(), "yes");
    // Errors come back as foldvault errors.
    let err = db.insert(vec![0u8; foldvault::MAX_KEY_LEN + 1], "x").await.unwrap_err();
    assert!(matches!(err, foldvault::Error::KeyTooLarge { .. }));
}

/// FoldDB's successor's storage trait, implemented on `AsyncTree` as it would be.
#[derive(Debug)]
#[allow(dead_code)] // the message is read through `Debug` when a test fails
struct StorageError(String);

impl From<foldvault::Error> for StorageError {
    fn from(e: foldvault::Error) -> Self {
        StorageError(e.to_string())
    }
}

trait KvStore: Send + Sync {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    async fn put(&self, key: &[u8], value: Vec<u8>) -> Result<(), StorageError>;
    async fn delete(&self, key: &[u8]) -> Result<bool, StorageError>;
    async fn exists(&self, key: &[u8]) -> Result<bool, StorageError>;
    async fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageError>;
    async fn batch_put(&self, items: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), StorageError>;
    async fn batch_delete(&self, keys: Vec<Vec<u8>>) -> Result<(), StorageError>;
    async fn flush(&self) -> Result<(), StorageError>;
}

struct FoldVaultKvStore {
    tree: AsyncTree,
}

impl KvStore for FoldVaultKvStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.tree.get(key).await?.map(|v| v.to_vec()))
    }
    async fn put(&self, key: &[u8], value: Vec<u8>) -> Result<(), StorageError> {
        Ok(self.tree.put(key, value).await?)
    }
    async fn delete(&self, key: &[u8]) -> Result<bool, StorageError> {
        Ok(self.tree.delete(key).await?)
    }
    async fn exists(&self, key: &[u8]) -> Result<bool, StorageError> {
        Ok(self.tree.exists(key).await?)
    }
    async fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageError> {
        Ok(self.tree.scan_prefix(prefix).await?.into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect())
    }
    async fn batch_put(&self, items: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), StorageError> {
        Ok(self.tree.batch_put(items).await?)
    }
    async fn batch_delete(&self, keys: Vec<Vec<u8>>) -> Result<(), StorageError> {
        Ok(self.tree.batch_delete(keys).await?)
    }
    async fn flush(&self) -> Result<(), StorageError> {
        self.tree.flush().await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_store_shape() {
    let db = temp_db().await;
    let store = FoldVaultKvStore { tree: db.open_tree("atoms").await.unwrap() };

    store.put(b"atom:1", b"{\"a\":1}".to_vec()).await.unwrap();
    store.flush().await.unwrap();
    assert_eq!(store.get(b"atom:1").await.unwrap().as_deref(), Some(&b"{\"a\":1}"[..]));
    assert!(store.exists(b"atom:1").await.unwrap());
    assert!(!store.exists(b"atom:2").await.unwrap());

    let items: Vec<(Vec<u8>, Vec<u8>)> =
        (0..100u32).map(|i| (format!("atom:{i:03}").into_bytes(), format!("{{\"i\":{i}}}").into_bytes())).collect();
    store.batch_put(items).await.unwrap();
    store.batch_put(vec![(b"ref:x".to_vec(), b"{}".to_vec())]).await.unwrap();
    store.flush().await.unwrap();
    let atoms = store.scan_prefix(b"atom:").await.unwrap();
    assert_eq!(atoms.len(), 101);
    assert_eq!(atoms[0].0, b"atom:000");

    let doomed: Vec<Vec<u8>> = (0..50u32).map(|i| format!("atom:{i:03}").into_bytes()).collect();
    store.batch_delete(doomed).await.unwrap();
    assert_eq!(store.scan_prefix(b"atom:").await.unwrap().len(), 51);
    assert!(store.delete(b"ref:x").await.unwrap());
    assert!(!store.delete(b"ref:x").await.unwrap());
    assert_eq!(store.get(b"ref:x").await.unwrap(), None);

    // Generic key and value types on AsyncTree directly.
    let t = &store.tree;
    t.batch_put(vec![("s1", "v"), ("s2", "w")]).await.unwrap();
    t.batch_delete(vec![String::from("s1")]).await.unwrap();
    assert!(!t.exists("s1").await.unwrap());
    assert!(t.exists("s2").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_are_send_and_static_even_for_borrowed_keys() {
    let db = temp_db().await;
    let t = db.open_tree("t").await.unwrap();
    let handles: Vec<_> = (0..32u32)
        .map(|i| {
            let key = format!("key-{i:02}");
            // The future owns what it needs: it can be spawned although `key` is borrowed.
            tokio::spawn(t.insert(key.as_str(), i.to_be_bytes().to_vec()))
        })
        .collect();
    for h in handles {
        h.await.unwrap().unwrap();
    }
    assert_eq!(t.len().await.unwrap(), 32);
    let key = String::from("key-07");
    let v = tokio::spawn(t.get(&key)).await.unwrap().unwrap().unwrap();
    assert_eq!(v, 7u32.to_be_bytes());
}

/// With the writer lock held elsewhere, four writes wait — on the blocking pool. If they waited
/// on the two worker threads instead, the small task below could never run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_writes_do_not_block_the_runtime() {
    let db = temp_db().await;
    let t = db.open_tree("t").await.unwrap();
    let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
    let (locked_tx, locked_rx) = tokio::sync::oneshot::channel::<()>();
    let timed_out = Arc::new(AtomicBool::new(false));
    let sync_db = db.db().clone();
    let holder = std::thread::spawn({
        let timed_out = timed_out.clone();
        move || {
            let tx = sync_db.begin_write().unwrap();
            tx.open_tree("t").unwrap().insert("held", "1").unwrap();
            locked_tx.send(()).unwrap();
            // A watchdog: never hang the test, fail it.
            if hold_rx.recv_timeout(Duration::from_secs(30)).is_err() {
                timed_out.store(true, Ordering::SeqCst);
            }
            tx.commit().unwrap();
        }
    });
    locked_rx.await.unwrap();

    let pending: Vec<_> =
        (0..4u32).map(|i| tokio::spawn(t.insert(format!("waiting-{i}"), i.to_be_bytes().to_vec()))).collect();
    tokio::task::yield_now().await;
    // Runs on a worker although four writes are waiting for the lock.
    let (ping_tx, ping_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move { ping_tx.send(42).unwrap() });
    assert_eq!(ping_rx.await.unwrap(), 42);
    // Reads do not wait for the writer either.
    assert_eq!(t.get("held").await.unwrap(), None);
    assert!(pending.iter().all(|h| !h.is_finished()), "a write finished while the lock was held");

    hold_tx.send(()).unwrap();
    for h in pending {
        h.await.unwrap().unwrap();
    }
    tokio::task::spawn_blocking(move || holder.join().unwrap()).await.unwrap();
    assert!(!timed_out.load(Ordering::SeqCst), "the runtime was blocked");
    assert_eq!(t.len().await.unwrap(), 5);
}

/// Polls `f` to completion on this thread, with no tokio runtime (as another executor would).
fn block_on_without_tokio<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(out) => return out,
            std::task::Poll::Pending => std::thread::park(),
        }
    }
}

/// Outside a tokio runtime the async API runs its work on the polling thread instead of
/// panicking (`spawn_blocking` needs a runtime).
#[test]
fn works_under_another_executor() {
    block_on_without_tokio(async {
        let db = temp_db().await;
        let t = db.open_tree("t").await.unwrap();
        t.insert("k", "v").await.unwrap();
        assert_eq!(t.get("k").await.unwrap().unwrap(), "v");
        t.flush().await.unwrap();
        assert_eq!(db.tree_names().await.unwrap().len(), 2);
    });
}

/// `close` flushes and closes on the blocking pool: once it returns, the file is unlocked and
/// holds every write; a clone still open keeps the database open until it closes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_flushes_and_releases_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::new().path(dir.path()).use_env(false).flush_every_ms(None);
    let db = AsyncDb::open(cfg.clone()).await.unwrap();
    let other = db.clone();
    db.insert("k", "v").await.unwrap();
    db.close().await.unwrap();
    other.insert("k2", "v2").await.unwrap();
    assert!(matches!(cfg.open(), Err(foldvault::Error::Locked)), "a clone still holds the file");
    other.close().await.unwrap();
    let reopened = AsyncDb::open(cfg).await.unwrap();
    assert_eq!(reopened.get("k").await.unwrap().unwrap(), "v");
    assert_eq!(reopened.get("k2").await.unwrap().unwrap(), "v2");
    reopened.close().await.unwrap();
}

/// A task that keeps a `WriteTransaction` across an `await` (a future that stays on its
/// thread: `block_on`, a `LocalSet`) and awaits an async call of the same database: the call
/// gets the synchronous API's answer on that thread (a flush made when the transaction ends,
/// `Unsupported` for a write), instead of waiting on the blocking pool for the writer lock the
/// task holds, forever.
#[test]
fn an_async_call_inside_a_write_transaction_does_not_wait_for_itself() {
    let r = on_one_thread(|| async {
        let db = temp_db().await;
        let t = db.open_tree("t").await.unwrap();
        t.insert("before", "v").await.unwrap();
        let tx = db.db().begin_write().unwrap();
        tx.open_tree("t").unwrap().insert("k", "v").unwrap();
        let flushed = t.tree().flush_async().await;
        let write = t.insert("other", "v").await;
        let read = t.get("before").await;
        tx.commit().unwrap();
        let after = t.get("k").await.unwrap();
        (flushed.is_ok(), matches!(write, Err(foldvault::Error::Unsupported(_))), read.is_ok(), after.is_some())
    });
    assert_eq!(r, (true, true, true, true));
}

/// Calls made before a write transaction began and awaited inside it get the answers of calls
/// made inside it: they waited on the blocking pool for the writer their own task held.
#[test]
fn an_async_call_made_before_a_transaction_and_awaited_inside_it_does_not_wait_for_itself() {
    let r = on_one_thread(|| async {
        let db = temp_db().await;
        let t = db.open_tree("t").await.unwrap();
        t.insert("before", "v").await.unwrap();
        let (write, flushed, read) = (t.insert("other", "v"), t.tree().flush_async(), t.get("before"));
        let tx = db.db().begin_write().unwrap();
        let write = write.await;
        let read = read.await;
        let flushed = flushed.await;
        drop(tx);
        let after = t.get("other").await.unwrap();
        (matches!(write, Err(foldvault::Error::Unsupported(_))), flushed.is_ok(), read.is_ok(), after.is_none())
    });
    assert_eq!(r, (true, true, true, true));
}

/// Runs the future `make` gives on a `current_thread` runtime of a thread of its own (every
/// task on one thread, as in a `LocalSet`) and returns its output; fails after 30 s (a call
/// that waits for itself would hang).
fn on_one_thread<T: Send + 'static, F: std::future::Future<Output = T>>(
    make: impl FnOnce() -> F + Send + 'static,
) -> T {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        done.send(rt.block_on(make())).unwrap();
    });
    finished.recv_timeout(Duration::from_secs(30)).expect("the task finished")
}

/// On the runtime's one thread: a write transaction of `db` writes to tree `t`, `other` runs as
/// another task and is given fifty turns, and the transaction commits. Whether `other` was
/// still waiting after its turns, and its output.
async fn beside_a_transaction<T: Send + 'static>(
    db: &AsyncDb,
    other: impl std::future::Future<Output = T> + Send + 'static,
) -> (bool, T) {
    let tx = db.db().begin_write().unwrap();
    tx.open_tree("t").unwrap().insert("in-tx", "v").unwrap();
    let other = tokio::spawn(other);
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    let waited = !other.is_finished();
    tx.commit().unwrap();
    (waited, other.await.unwrap())
}

/// Another task on the thread of a task holding a write transaction (a `current_thread`
/// runtime) is not inside it: its write waits on the blocking pool for the transaction to end
/// and then commits, and its flush syncs (db review, low: both were answered inline, the write
/// with `Unsupported` and the flush with `Ok(0)`, nothing synced).
#[test]
fn another_task_on_a_transactions_thread_waits_for_it() {
    let r = on_one_thread(|| async {
        let db = temp_db().await;
        let t = db.open_tree("t").await.unwrap();
        let writer = t.clone();
        let (waited, (write, flush)) =
            beside_a_transaction(&db, async move { (writer.insert("other", "v").await, writer.flush().await) }).await;
        (waited, write.map_err(|e| e.to_string()), flush.is_ok(), t.get("other").await.unwrap().is_some())
    });
    assert_eq!(r, (true, Ok(None), true, true));
}

/// The synchronous `flush` called by another task on the thread of a task holding a write
/// transaction cannot wait for it (the holder runs only once the call returns): it is refused,
/// where it was answered `Ok(0)` with nothing synced (concurrency review).
#[test]
fn a_synchronous_flush_from_another_task_on_a_transactions_thread_is_refused() {
    let r = on_one_thread(|| async {
        let db = AsyncDb::open(Config::new().temporary(true).use_env(false).flush_every_ms(None)).await.unwrap();
        let t = db.open_tree("t").await.unwrap();
        t.insert("eventual", "v").await.unwrap();
        let seq = db.db().commit_seq();
        let other = db.db().clone();
        let (_, flushed) = beside_a_transaction(&db, async move { other.flush() }).await;
        let refused = matches!(flushed, Err(foldvault::Error::Unsupported(_)));
        (refused, db.db().flush().is_ok() && db.db().durable_commit_seq() >= seq)
    });
    assert_eq!(r, (true, true));
}

/// `AsyncTree::watch_prefix` made by a task while another task on the same thread holds a
/// write transaction: it waits (on the blocking pool, the runtime's one thread free) for that
/// transaction to end, so it never subscribes in its middle, and then hears the next commit.
#[test]
fn an_async_subscription_waits_for_another_tasks_transaction() {
    let r = on_one_thread(|| async {
        let db = temp_db().await;
        let t = db.open_tree("t").await.unwrap();
        let subscriber = t.clone();
        let (waited, sub) = beside_a_transaction(&db, async move { subscriber.watch_prefix("").await }).await;
        let mut sub = sub.unwrap();
        let before = sub.next_timeout(Duration::ZERO).is_err();
        t.insert("after", "w").await.unwrap();
        let heard = (&mut sub).await.map(|e| e.key().to_vec());
        (waited, before, heard)
    });
    assert_eq!(r, (true, true, Some(b"after".to_vec())));
}

/// A call whose future is dropped before the blocking pool starts it is not made: a `put` the
/// caller gave up on (a `timeout`, an aborted task, its pool busy) committed all the same once
/// the pool got to it, and a retry applied it twice (async review). One awaited is made.
#[test]
fn a_call_dropped_before_the_pool_starts_it_is_not_made() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let db = temp_db().await;
        let t = db.open_tree("t").await.unwrap();
        // The pool's one thread held until released.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let busy = tokio::task::spawn_blocking(move || held.recv().ok());
        // The put, polled once here (its call queued on the pool, which is busy), then given
        // up on: its future dropped, as a `timeout` or a `select!` drops it.
        let mut put = Box::pin(t.put("k", "v"));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(put.as_mut().poll(&mut cx).is_pending(), "the put ran with the pool busy");
        drop(put);
        release.send(()).unwrap();
        busy.await.unwrap();
        // Queued after the abandoned put: when it answers, the put has had its turn.
        assert_eq!(t.get("k").await.unwrap(), None, "a call dropped before it started was made");
        // A call awaited to its end is made.
        t.put("k", "v").await.unwrap();
        assert_eq!(t.get("k").await.unwrap().unwrap(), "v");
    });
}
