//! The async API (feature `tokio`): `AsyncDb` and `AsyncTree`, thin wrappers of `Db` and `Tree`
//! whose every operation runs on tokio's blocking pool (`spawn_blocking`), so a caller on the
//! runtime never waits for a page read, a seal or an `fsync` on a worker thread.
//!
//! Layer: db, on top of the sled-style API (`api.rs`) and nothing else. Invariants:
//! - no method blocks the calling task's thread: arguments are turned into owned values when
//!   the method is called (a key becomes a `Vec<u8>`, a value an `IVec`), and the returned
//!   future, `Send + 'static` (it can be `tokio::spawn`ed, even for borrowed keys), only waits
//!   for the call on the blocking pool. Each method is used as an `async fn`: `t.get(k).await`.
//!   The exception: a call made by the task that holds a write transaction of the same
//!   database (keeping a `WriteTransaction` across an `await`) runs on its thread, where the
//!   synchronous API answers at once, not on the pool, where it would wait for that writer;
//!   another task, even on the same thread, waits on the pool for the transaction to end;
//! - each method is exactly one call of the synchronous API (or one `Batch`), so it keeps that
//!   call's atomicity: `batch_put` and `batch_delete` are one atomic commit each;
//! - a panic inside a blocking call is resumed in the caller (as if the call had been made
//!   inline); a call cancelled by a shutting-down runtime returns an `Error::Io`;
//! - a future dropped before it completes (a `timeout`, a `select!` that took another branch)
//!   cancels its call only if the blocking pool has not started it; one started runs to its
//!   end: a write may still commit after the caller stopped waiting for it (as with
//!   `tokio::fs`), so a timeout means the outcome is unknown, and its handle keeps the file
//!   open (and locked) until then, after `AsyncDb::close` too;
//! - a call that waits (for the writer lock, for a commit's turn, for room in a full
//!   subscriber) waits on a blocking-pool thread, and the pool is bounded and first in, first
//!   out: with that many writes waiting behind a full subscriber, or behind a transaction a
//!   task keeps, every later call (a read too) queues behind them, so the task that would
//!   free them must not await the pool first (drain the subscriber, end the transaction).
//!   Only the task that began a transaction is inside it: one moved to another task waits
//!   for itself there (async review: known gaps, documented).
//!
//! Besides sled's names (`insert`, `remove`, `contains_key`, ...) `AsyncTree` has the names of
//! FoldDB's `KvStore` trait: `put`, `delete`, `exists`, `batch_put`, `batch_delete`.
//! Iteration (`iter`, `range`, `scan_prefix`) collects into a `Vec`: an iterator cannot hop
//! between the runtime and the blocking pool for each entry at a sensible cost.

use std::future::Future;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use super::api::{Batch, Db, Tree};
use super::config::Config;
use super::engine::Engine;
use super::ivec::IVec;
use crate::error::{Error, Result};

/// Runs `f` on tokio's blocking pool and waits for it without blocking the runtime. Polled
/// outside a tokio runtime (another executor), `f` runs on the polling thread, as
/// `Tree::flush_async` does, instead of panicking. If the polling task is inside a write
/// transaction of `engine`'s database when the future is first polled (a task keeping a
/// `WriteTransaction` across an `await`, which only a future that stays on its thread can),
/// `f` runs there, so that it gets the synchronous API's answer (a flush made when the
/// transaction ends, `Unsupported` for a write), not a wait on the blocking pool for the
/// writer lock the waiting task holds. Another task on the transaction's thread (a
/// `current_thread` runtime, a `LocalSet`) is not inside it: its call waits on the blocking
/// pool for the transaction to end, as on any other thread. That is looked at when the future
/// is first polled, not when it was made: a call made before the transaction began and awaited
/// inside it waited for itself (migration and async review, low).
pub(crate) async fn blocking<T, F>(engine: Option<Arc<Engine>>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    if engine.is_some_and(|e| e.writer_held_by_this_task()) {
        return f();
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return f() };
    // A call whose future is dropped before the pool starts it (a `timeout`, a `select!` that
    // took another branch) is not made: it ran to its end all the same, so a write the caller
    // had given up on (and retried) committed twice, an open took the file's lock from the
    // retry, and calls nobody waited for kept the pool's queue long (async review). One the
    // pool has started runs to its end.
    let dropped = DroppedBeforeStart::default();
    let flag = dropped.0.clone();
    let r = runtime
        .spawn_blocking(move || {
            if flag.load(std::sync::atomic::Ordering::Acquire) {
                return Err(Error::Io(std::io::Error::other("the call's future was dropped before it started")));
            }
            f()
        })
        .await;
    dropped.completed();
    match r {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Error::Io(std::io::Error::other("blocking task cancelled: the runtime is shutting down"))),
    }
}

/// Raised when dropped before `completed`: a blocking call's future went away while it waited.
#[derive(Default)]
struct DroppedBeforeStart(Arc<std::sync::atomic::AtomicBool>, bool);

impl DroppedBeforeStart {
    fn completed(mut self) {
        self.1 = true;
    }
}

impl Drop for DroppedBeforeStart {
    fn drop(&mut self) {
        if !self.1 {
            self.0.store(true, std::sync::atomic::Ordering::Release);
        }
    }
}

/// Entries as owned pairs.
pub type Entries = Vec<(IVec, IVec)>;

/// A database whose operations are `async`. Derefs to its default tree, as `Db` does.
#[derive(Clone, Debug)]
pub struct AsyncDb {
    db: Db,
    default: AsyncTree,
}

impl From<Db> for AsyncDb {
    fn from(db: Db) -> AsyncDb {
        AsyncDb::new(db)
    }
}

impl std::ops::Deref for AsyncDb {
    type Target = AsyncTree;
    fn deref(&self) -> &AsyncTree {
        &self.default
    }
}

impl AsyncDb {
    /// Wraps an open database.
    pub fn new(db: Db) -> AsyncDb {
        let default = AsyncTree { tree: (*db).clone() };
        AsyncDb { db, default }
    }

    /// Opens a database (key derivation and recovery run on the blocking pool).
    pub fn open(config: Config) -> impl Future<Output = Result<AsyncDb>> + Send + 'static {
        let f = blocking(None, move || config.open());
        async move { f.await.map(AsyncDb::new) }
    }

    /// The synchronous database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The engine `blocking` asks whether the polling task is inside a write transaction.
    fn engine(&self) -> Option<Arc<Engine>> {
        Some(self.db.handle.engine.clone())
    }

    /// Opens (creating on first use) a named tree.
    pub fn open_tree<N: AsRef<[u8]>>(&self, name: N) -> impl Future<Output = Result<AsyncTree>> + Send + 'static {
        let (db, name) = (self.db.clone(), name.as_ref().to_vec());
        let f = blocking(self.engine(), move || db.open_tree(name));
        async move { f.await.map(AsyncTree::from) }
    }

    /// Removes a tree and frees its pages; whether it existed.
    pub fn drop_tree<N: AsRef<[u8]>>(&self, name: N) -> impl Future<Output = Result<bool>> + Send + 'static {
        let (db, name) = (self.db.clone(), name.as_ref().to_vec());
        blocking(self.engine(), move || db.drop_tree(name))
    }

    /// The names of all trees, the default tree included.
    pub fn tree_names(&self) -> impl Future<Output = Result<Vec<IVec>>> + Send + 'static {
        let db = self.db.clone();
        blocking(self.engine(), move || Ok(db.tree_names()))
    }

    /// `Db::checksum` on a blocking thread.
    pub fn checksum(&self) -> impl Future<Output = Result<u32>> + Send + 'static {
        let db = self.db.clone();
        blocking(self.engine(), move || db.checksum())
    }

    /// A unique, monotonically increasing id.
    pub fn generate_id(&self) -> impl Future<Output = Result<u64>> + Send + 'static {
        let db = self.db.clone();
        blocking(self.engine(), move || db.generate_id())
    }

    /// `Db::checkpoint_log` on a blocking thread.
    pub fn checkpoint_log(&self) -> impl Future<Output = Result<()>> + Send + 'static {
        let db = self.db.clone();
        blocking(self.engine(), move || db.checkpoint_log())
    }

    /// `Db::compact` on a blocking thread.
    pub fn compact(&self) -> impl Future<Output = Result<crate::CompactReport>> + Send + 'static {
        let db = self.db.clone();
        blocking(self.engine(), move || db.compact())
    }

    /// Flushes and lets go of this handle on the blocking pool, reporting a failed flush.
    /// Dropping the last handle of a database instead flushes, syncs and closes the file on
    /// the thread that drops it (a runtime worker, for a handle dropped in a task) and can
    /// only log a failure. Other clones of the database stay open, and so does a call whose
    /// future was dropped but which still runs on the pool (the file stays locked until it
    /// ends).
    pub fn close(self) -> impl Future<Output = Result<()>> + Send + 'static {
        blocking(self.engine(), move || {
            let flushed = self.db.flush();
            drop(self);
            flushed.map(|_| ())
        })
    }
}

/// A tree whose operations are `async`. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AsyncTree {
    tree: Tree,
}

impl From<Tree> for AsyncTree {
    fn from(tree: Tree) -> AsyncTree {
        AsyncTree { tree }
    }
}

impl AsyncTree {
    /// The synchronous tree.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// Runs `f` with a clone of the tree on the blocking pool.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(Tree) -> Result<T> + Send + 'static,
    ) -> impl Future<Output = Result<T>> + Send + 'static {
        let tree = self.tree.clone();
        blocking(Some(tree.handle.engine.clone()), move || f(tree))
    }

    // --- sled's names ---

    /// The value of `key`.
    pub fn get<K: AsRef<[u8]>>(&self, key: K) -> impl Future<Output = Result<Option<IVec>>> + Send + 'static {
        let key = IVec::from_slice(key.as_ref());
        self.run(move |t| t.get(key))
    }

    /// Inserts `key`, returning the previous value.
    pub fn insert<K: AsRef<[u8]>, V: Into<IVec>>(
        &self,
        key: K,
        value: V,
    ) -> impl Future<Output = Result<Option<IVec>>> + Send + 'static {
        let (key, value) = (IVec::from_slice(key.as_ref()), value.into());
        self.run(move |t| t.insert(key, value))
    }

    /// Removes `key`, returning the previous value.
    pub fn remove<K: AsRef<[u8]>>(&self, key: K) -> impl Future<Output = Result<Option<IVec>>> + Send + 'static {
        let key = IVec::from_slice(key.as_ref());
        self.run(move |t| t.remove(key))
    }

    /// Merges `value` into `key`'s value with the tree's merge operator (set on the tree,
    /// `tree().set_merge_operator`), returning the new value.
    pub fn merge<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        key: K,
        value: V,
    ) -> impl Future<Output = Result<Option<IVec>>> + Send + 'static {
        let (key, value) = (IVec::from_slice(key.as_ref()), IVec::from_slice(value.as_ref()));
        self.run(move |t| t.merge(key, value))
    }

    /// Subscribes to changes of keys under `prefix` (`Tree::watch_prefix`): the `Subscriber`
    /// is a `Future` of the next event (`(&mut subscriber).await`), as well as a blocking
    /// iterator, which a runtime thread should not use. The subscription waits for a write
    /// transaction of another task to end, on the blocking pool as every call here (review of
    /// the forty-first session: made inline, it blocked the runtime's thread on the writer,
    /// and on a `current_thread` runtime subscribed in the middle of another task's
    /// transaction).
    pub fn watch_prefix<P: AsRef<[u8]>>(
        &self,
        prefix: P,
    ) -> impl Future<Output = Result<crate::Subscriber>> + Send + 'static {
        let prefix = IVec::from_slice(prefix.as_ref());
        self.run(move |t| Ok(t.watch_prefix(prefix)))
    }

    /// Whether `key` is present.
    pub fn contains_key<K: AsRef<[u8]>>(&self, key: K) -> impl Future<Output = Result<bool>> + Send + 'static {
        let key = IVec::from_slice(key.as_ref());
        self.run(move |t| t.contains_key(key))
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub fn scan_prefix<P: AsRef<[u8]>>(&self, prefix: P) -> impl Future<Output = Result<Entries>> + Send + 'static {
        let prefix = IVec::from_slice(prefix.as_ref());
        self.run(move |t| t.scan_prefix(prefix).collect())
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Future<Output = Result<Entries>> + Send + 'static {
        self.run(|t| t.iter().collect())
    }

    /// The entries in `range`, in key order.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(
        &self,
        range: R,
    ) -> impl Future<Output = Result<Entries>> + Send + 'static {
        // `IVec`s, so the copies of the caller's keys are wiped when the task is done.
        let bounds: (Bound<IVec>, Bound<IVec>) = (
            range.start_bound().map(|k| IVec::from_slice(k.as_ref())),
            range.end_bound().map(|k| IVec::from_slice(k.as_ref())),
        );
        self.run(move |t| t.range::<IVec, _>(bounds).collect())
    }

    /// Sets `key` to `new` (`None` removes it) if its value is `old` (`None`: absent), as
    /// `Tree::compare_and_swap`.
    pub fn compare_and_swap<K: AsRef<[u8]>, OV: AsRef<[u8]>, NV: Into<IVec>>(
        &self,
        key: K,
        old: Option<OV>,
        new: Option<NV>,
    ) -> impl Future<Output = Result<crate::CompareAndSwapResult>> + Send + 'static {
        let key = IVec::from_slice(key.as_ref());
        let old = old.map(|o| IVec::from_slice(o.as_ref()));
        let new: Option<IVec> = new.map(Into::into);
        self.run(move |t| t.compare_and_swap(key, old, new))
    }

    /// Replaces the value with `f(old)` atomically (`f` may run more than once); the new
    /// value, as `Tree::update_and_fetch`.
    pub fn update_and_fetch<K, V, F>(&self, key: K, f: F) -> impl Future<Output = Result<Option<IVec>>> + Send + 'static
    where
        K: AsRef<[u8]>,
        V: Into<IVec>,
        F: FnMut(Option<&[u8]>) -> Option<V> + Send + 'static,
    {
        let key = IVec::from_slice(key.as_ref());
        self.run(move |t| t.update_and_fetch(key, f))
    }

    /// Replaces the value with `f(old)` atomically (`f` may run more than once); the old
    /// value, as `Tree::fetch_and_update`.
    pub fn fetch_and_update<K, V, F>(&self, key: K, f: F) -> impl Future<Output = Result<Option<IVec>>> + Send + 'static
    where
        K: AsRef<[u8]>,
        V: Into<IVec>,
        F: FnMut(Option<&[u8]>) -> Option<V> + Send + 'static,
    {
        let key = IVec::from_slice(key.as_ref());
        self.run(move |t| t.fetch_and_update(key, f))
    }

    /// The entry with the greatest key below `key`.
    pub fn get_lt<K: AsRef<[u8]>>(
        &self,
        key: K,
    ) -> impl Future<Output = Result<Option<(IVec, IVec)>>> + Send + 'static {
        let key = IVec::from_slice(key.as_ref());
        self.run(move |t| t.get_lt(key))
    }

    /// The entry with the least key above `key`.
    pub fn get_gt<K: AsRef<[u8]>>(
        &self,
        key: K,
    ) -> impl Future<Output = Result<Option<(IVec, IVec)>>> + Send + 'static {
        let key = IVec::from_slice(key.as_ref());
        self.run(move |t| t.get_gt(key))
    }

    /// Removes and returns the entry with the least key.
    pub fn pop_min(&self) -> impl Future<Output = Result<Option<(IVec, IVec)>>> + Send + 'static {
        self.run(|t| t.pop_min())
    }

    /// Removes and returns the entry with the greatest key.
    pub fn pop_max(&self) -> impl Future<Output = Result<Option<(IVec, IVec)>>> + Send + 'static {
        self.run(|t| t.pop_max())
    }

    /// The CRC32 of the tree's keys and values (`Tree::checksum`).
    pub fn checksum(&self) -> impl Future<Output = Result<u32>> + Send + 'static {
        self.run(|t| t.checksum())
    }

    /// The tree's name.
    pub fn name(&self) -> IVec {
        self.tree.name()
    }

    /// The first entry (least key).
    pub fn first(&self) -> impl Future<Output = Result<Option<(IVec, IVec)>>> + Send + 'static {
        self.run(|t| t.first())
    }

    /// The last entry (greatest key).
    pub fn last(&self) -> impl Future<Output = Result<Option<(IVec, IVec)>>> + Send + 'static {
        self.run(|t| t.last())
    }

    /// The number of entries.
    pub fn len(&self) -> impl Future<Output = Result<usize>> + Send + 'static {
        self.run(|t| Ok(t.len()))
    }

    /// Whether the tree has no entries.
    pub fn is_empty(&self) -> impl Future<Output = Result<bool>> + Send + 'static {
        self.run(|t| Ok(t.is_empty()))
    }

    /// Removes every entry.
    pub fn clear(&self) -> impl Future<Output = Result<()>> + Send + 'static {
        self.run(|t| t.clear())
    }

    /// Applies `batch` in one atomic commit.
    pub fn apply_batch(&self, batch: Batch) -> impl Future<Output = Result<()>> + Send + 'static {
        self.run(move |t| t.apply_batch(batch))
    }

    /// Makes every earlier commit durable; the bytes written.
    pub fn flush(&self) -> impl Future<Output = Result<usize>> + Send + 'static {
        self.run(|t| t.flush())
    }

    // --- FoldDB's `KvStore` names ---

    /// Sets `key` to `value`.
    pub fn put<K: AsRef<[u8]>, V: Into<IVec>>(
        &self,
        key: K,
        value: V,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let f = self.insert(key, value);
        async move { f.await.map(drop) }
    }

    /// Removes `key`; whether it was present.
    pub fn delete<K: AsRef<[u8]>>(&self, key: K) -> impl Future<Output = Result<bool>> + Send + 'static {
        let f = self.remove(key);
        async move { f.await.map(|old| old.is_some()) }
    }

    /// Whether `key` is present.
    pub fn exists<K: AsRef<[u8]>>(&self, key: K) -> impl Future<Output = Result<bool>> + Send + 'static {
        self.contains_key(key)
    }

    /// Sets every pair in one atomic commit.
    pub fn batch_put<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        items: Vec<(K, V)>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let mut batch = Batch::default();
        for (k, v) in items {
            batch.insert(k, v);
        }
        self.apply_batch(batch)
    }

    /// Removes every key in one atomic commit.
    pub fn batch_delete<K: AsRef<[u8]>>(&self, keys: Vec<K>) -> impl Future<Output = Result<()>> + Send + 'static {
        let mut batch = Batch::default();
        for k in keys {
            batch.remove(k);
        }
        self.apply_batch(batch)
    }
}
