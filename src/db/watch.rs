//! Subscriptions to a tree's changes, as sled 0.34's `Tree::watch_prefix`: a `Subscriber`
//! receives an `Event` for every key under its prefix that a commit changed.
//!
//! Layer: public API, beside the engine's commit. Invariants:
//! - Events are sent only for a commit that was made, after it is visible to readers, in
//!   commit order: the writer records what each write changed (`Changes`), and the commit takes
//!   the delivery lock before it lets the writer go, so the next commit's events wait for these.
//! - Per commit and tree, each key gives at most one event, in key order: its value after the
//!   commit (`Insert`) or its removal (`Remove`), and only if that differs from its value before
//!   the commit, as sled sends none for a write that changes nothing; a compare-and-swap (so
//!   `update_and_fetch`, `fetch_and_update`, `merge`, `pop_min`, `pop_max`) that succeeds sends
//!   one whatever it wrote, as sled's do.
//! - A subscription belongs to one instance of its tree name (`Tree::born`), as merge operators
//!   do: a tree dropped and made again sends its events to subscribers made on the new one.
//! - Recording costs nothing while no subscriber exists (`Watchers::any`): values are copied for
//!   events only for trees someone watches.
//! - Each subscriber holds at most `BUFFERED` events; a commit that finds one full waits until it
//!   takes one (as sled's do), holding the delivery lock, so the next commit with events waits
//!   too, with the writer. A thread that owns a subscriber must therefore not write (to any
//!   tree: the writer is one) while its subscriber may be full: it would wait for the writer,
//!   which waits for it. Events hold user keys and values in `IVec`s, wiped when dropped. A
//!   subscriber whose database closed, or whose tree was dropped, ends (`None`).

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Bound;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use parking_lot::Mutex;

use super::ivec::IVec;
use crate::btree::TreeRoot;
use crate::btree::read;
use crate::btree::tx::TxPages;
use crate::error::Result;

/// Events a subscriber holds before a commit that has one for it waits (sled's bound).
pub const BUFFERED: usize = 1024;

/// A change to a watched key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    /// The key now holds this value.
    Insert { key: IVec, value: IVec },
    /// The key was removed.
    Remove { key: IVec },
}

impl Event {
    /// The key the event is about.
    pub fn key(&self) -> &IVec {
        match self {
            Event::Insert { key, .. } | Event::Remove { key } => key,
        }
    }
}

/// The subscriptions of one open database.
#[derive(Default)]
pub(crate) struct Watchers {
    any: AtomicBool,
    next_id: AtomicU64,
    list: Mutex<Vec<Watch>>,
    /// Held from before a commit lets the writer go until its events are sent.
    pub(crate) order: Mutex<()>,
}

#[derive(Clone)]
struct Watch {
    id: u64,
    tree: Arc<[u8]>,
    born: Option<u64>,
    /// A user key's prefix: an `IVec`, so its clones share one copy, wiped with the last.
    prefix: IVec,
    tx: SyncSender<Event>,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl Watch {
    /// Whether a change of `tree` (instance `born`) reaches this subscription. One made on a
    /// handle of no instance (the default tree) takes the name's changes whatever the instance.
    fn takes(&self, tree: &[u8], born: Option<u64>) -> bool {
        &*self.tree == tree && (self.born.is_none() || self.born == born)
    }
}

impl Watchers {
    /// Whether anyone watches `tree`: writes record their changes only then.
    pub(crate) fn watching(&self, tree: &[u8]) -> bool {
        self.any.load(Ordering::Acquire) && self.list.lock().iter().any(|w| &*w.tree == tree)
    }

    /// Whether anyone watches anything (a write transaction records its changes only then).
    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    pub(crate) fn register(self: &Arc<Self>, tree: Arc<[u8]>, born: Option<u64>, prefix: &[u8]) -> Subscriber {
        let (tx, rx) = std::sync::mpsc::sync_channel(BUFFERED);
        let waker = Arc::new(Mutex::new(None));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let watch = Watch { id, tree, born, prefix: IVec::from_slice(prefix), tx, waker: waker.clone() };
        self.list.lock().push(watch);
        self.any.store(true, Ordering::Release);
        Subscriber { id, rx, waker, home: self.clone() }
    }

    /// Sends each change to the subscriptions that take it (the caller holds `order`). A full
    /// subscriber is waited for; one that is gone is forgotten.
    pub(crate) fn deliver(&self, changes: Vec<Change>) {
        // Sent outside the list's lock: a full subscriber may take its time, and its drop
        // takes the lock.
        let targets: Vec<Watch> = self.list.lock().clone();
        let mut gone = Vec::new();
        for change in changes {
            let event = match change.value {
                Some(value) => Event::Insert { key: change.key, value },
                None => Event::Remove { key: change.key },
            };
            for w in &targets {
                if !w.takes(&change.tree, change.born) || !event.key().starts_with(&w.prefix) || gone.contains(&w.id) {
                    continue;
                }
                if w.tx.send(event.clone()).is_err() {
                    gone.push(w.id);
                    continue;
                }
                if let Some(waker) = w.waker.lock().take() {
                    waker.wake();
                }
            }
        }
        if !gone.is_empty() {
            self.list.lock().retain(|w| !gone.contains(&w.id));
        }
    }

    /// Ends the subscriptions of `tree`'s instance `born` (dropped): they return `None`.
    pub(crate) fn forget_instance(&self, tree: &[u8], born: u64) {
        self.list.lock().retain(|w| !(&*w.tree == tree && w.born == Some(born)));
    }

    /// Ends every subscription (the database is closing).
    pub(crate) fn close(&self) {
        let wakers: Vec<_> = self.list.lock().drain(..).map(|w| w.waker).collect();
        for w in wakers {
            if let Some(w) = w.lock().take() {
                w.wake();
            }
        }
    }
}

/// One key's change in a commit, as `Changes` leaves it.
pub(crate) struct Change {
    tree: Arc<[u8]>,
    born: Option<u64>,
    key: IVec,
    value: Option<IVec>,
}

/// What a write transaction changed in watched trees, key by key: the value before its first
/// write to the key and after its last.
#[derive(Default)]
pub(crate) struct Changes {
    on: bool,
    keys: BTreeMap<(Arc<[u8]>, IVec), Pending>,
}

struct Pending {
    born: Option<u64>,
    before: Option<IVec>,
    after: Option<IVec>,
    forced: bool,
}

impl Changes {
    /// Records nothing unless `on` (someone watches).
    pub(crate) fn new(on: bool) -> Changes {
        Changes { on, keys: BTreeMap::new() }
    }

    pub(crate) fn on(&self) -> bool {
        self.on
    }

    /// `key` of `tree` went from `before` to `after`; `forced`: an event even if they are equal
    /// (a compare-and-swap that succeeded).
    pub(crate) fn record(
        &mut self,
        tree: &[u8],
        born: Option<u64>,
        key: &[u8],
        before: Option<&[u8]>,
        after: Option<&[u8]>,
        forced: bool,
    ) {
        if !self.on {
            return;
        }
        let after = after.map(IVec::from);
        let at = (Arc::from(tree), IVec::from(key));
        match self.keys.get_mut(&at) {
            Some(p) => {
                p.after = after;
                p.forced |= forced;
            }
            None => {
                let before = before.map(IVec::from);
                self.keys.insert(at, Pending { born, before, after, forced });
            }
        }
    }

    /// The recorder of one tree's changes (instance `born`).
    pub(crate) fn of<'a>(&'a mut self, tree: &'a [u8], born: Option<u64>) -> TreeChanges<'a> {
        TreeChanges { changes: self, tree, born }
    }

    /// The events to send, in tree and key order.
    pub(crate) fn into_events(self) -> Vec<Change> {
        self.keys
            .into_iter()
            .filter(|(_, p)| p.forced || p.before != p.after)
            .map(|((tree, key), p)| Change { tree, born: p.born, key, value: p.after })
            .collect()
    }
}

/// `Changes` of one tree: what its writes record through.
pub(crate) struct TreeChanges<'a> {
    changes: &'a mut Changes,
    tree: &'a [u8],
    born: Option<u64>,
}

impl TreeChanges<'_> {
    /// Whether anything is recorded (someone watches).
    pub(crate) fn on(&self) -> bool {
        self.changes.on
    }

    /// `key` went from `before` to `after` (`forced`: an event even if they are equal).
    pub(crate) fn note(&mut self, key: &[u8], before: Option<&[u8]>, after: Option<&[u8]>, forced: bool) {
        self.changes.record(self.tree, self.born, key, before, after, forced);
    }
}

/// Every key of the tree at `r` as the transaction `p` sees it (a watched tree's `clear`).
pub(crate) fn keys_of(p: &TxPages, r: &TreeRoot) -> Result<Vec<IVec>> {
    let mut out = Vec::new();
    let found = read::collect_range(&p.pager, Some(&p.dirty), r.root, Bound::Unbounded, Bound::Unbounded, &mut out);
    let keys = out.iter_mut().map(|(k, _)| IVec::from(std::mem::take(k))).collect();
    // Keys an error left behind are plaintext: wiped (the `IVec`s wipe themselves).
    for (k, _) in out.iter_mut() {
        crate::crypto::wipe::wipe_vec(k);
    }
    found.map(|()| keys)
}

impl super::api::Tree {
    /// Subscribes to the changes of this tree's keys that start with `prefix` (every key for
    /// an empty one), as sled's `watch_prefix`: each commit made after this call sends the
    /// subscriber an event per key it changed, in commit order (see `Subscriber`).
    pub fn watch_prefix<P: AsRef<[u8]>>(&self, prefix: P) -> Subscriber {
        self.handle.engine.watchers.register(self.name.clone(), self.born, prefix.as_ref())
    }
}

/// A subscription made by `Tree::watch_prefix`: an `Iterator` of events that waits for the
/// next (`None` once the database closed or the tree was dropped), and a `Future` of the next
/// event (`(&mut subscriber).await`).
pub struct Subscriber {
    id: u64,
    rx: Receiver<Event>,
    waker: Arc<Mutex<Option<Waker>>>,
    home: Arc<Watchers>,
}

/// Says nothing of the events (they hold user data).
impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber").finish_non_exhaustive()
    }
}

impl Subscriber {
    /// The next event, waiting at most `timeout`: `Timeout` if none came, `Disconnected` once
    /// the database closed or the tree was dropped.
    pub fn next_timeout(&mut self, timeout: Duration) -> std::result::Result<Event, RecvTimeoutError> {
        self.rx.recv_timeout(timeout)
    }
}

impl Iterator for Subscriber {
    type Item = Event;
    fn next(&mut self) -> Option<Event> {
        self.rx.recv().ok()
    }
}

impl Future for Subscriber {
    type Output = Option<Event>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let take = |rx: &Receiver<Event>| match rx.try_recv() {
            Ok(e) => Some(Some(e)),
            Err(TryRecvError::Disconnected) => Some(None),
            Err(TryRecvError::Empty) => None,
        };
        if let Some(out) = take(&self.rx) {
            return Poll::Ready(out);
        }
        // Registered, then looked at again: an event sent between the two finds the waker or
        // is found here.
        *self.waker.lock() = Some(cx.waker().clone());
        match take(&self.rx) {
            Some(out) => Poll::Ready(out),
            None => Poll::Pending,
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.home.list.lock().retain(|w| w.id != self.id);
    }
}
