//! Subscriptions to a tree's changes, as sled 0.34's `Tree::watch_prefix`: a `Subscriber`
//! receives an `Event` for every key under its prefix that a commit changed.
//!
//! Layer: public API, beside the engine's commit. Invariants:
//! - Events are sent only for a commit that was made, after it is visible to readers (and
//!   before it is durable: an `Immediate` commit whose sync then fails has been heard, as it is
//!   seen, SPEC §8), in commit order: the writer records what each write changed (`Changes`),
//!   and the commit takes its turn, with the subscriptions made so far that hear one of its
//!   events, before it lets the writer go, so the next commit's events wait for these, and a
//!   subscription made after the commit hears none of them.
//! - Per commit and tree, each key gives at most one event, in key order: its value after the
//!   commit (`Insert`) or its removal (`Remove`), and only if that differs from its value before
//!   the commit, as sled sends none for a write that changes nothing; a compare-and-swap (so
//!   `update_and_fetch`, `fetch_and_update`, `merge`, `pop_min`, `pop_max`) that succeeds sends
//!   one whatever it wrote, as sled's do.
//! - A subscription belongs to one instance of its tree name (`Tree::born`), as merge operators
//!   do: a tree dropped and made again sends its events to subscribers made on the new one.
//! - Recording costs an atomic load a write while no subscriber exists (`Watchers::any`, false
//!   again once the last is gone): values are copied for events only for trees someone
//!   watches, and a commit no subscription hears (and that ends none) takes no turn. A
//!   watched `clear` holds every key of the tree (one event each) until it commits.
//! - Each subscriber holds at most `BUFFERED` events; a commit that finds one full waits until it
//!   takes one (as sled's do), in its turn (`Turns`) and without the writer, so later commits
//!   that some subscription hears wait for their turns, while writes that none hears, flushes
//!   (whose sync takes the writer) and subscriptions go on. A thread that owns a subscriber
//!   must therefore not make a write some subscription hears, nor drop a watched tree, while
//!   its subscriber may be full: its commit would wait for its turn, after the delivery that
//!   waits for that thread.
//! - A subscription is made under the writer (`Tree::watch_prefix`): no write transaction is
//!   running elsewhere when it starts, and each write checks whether its tree is watched as it
//!   is made, so every commit after the subscription hears all of its writes. So a thread
//!   inside a write transaction of one database must not subscribe on another whose writer a
//!   thread inside a transaction there may hold while it subscribes on the first (each would
//!   wait for the other's writer), as for nested transactions across databases.
//! - Events hold user keys and values in `IVec`s, wiped when dropped. A subscriber whose
//!   database closed, or whose tree was dropped, ends (`None`): a drop ends the tree's
//!   subscriptions in its commit's turn, after the events of every commit before it.
//! - A subscription made inside a write transaction hears that transaction's later writes,
//!   and its earlier ones too when another subscription watched the tree while they were made
//!   (they were recorded then).

use std::collections::VecDeque;
use std::future::Future;
use std::ops::Bound;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

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
    /// Commits send their events in turn, in commit order (`Turns`).
    turns: Turns,
}

/// The order in which commits send their events: a commit takes the next turn while it holds
/// the writer (so turns follow commit order), lets the writer go, and sends when its turn
/// comes. A commit waiting for its turn, or for a full subscriber in it, holds no lock another
/// writer, a flush or a subscription needs.
#[derive(Default)]
struct Turns {
    /// The next turn to hand out.
    next: AtomicU64,
    /// The turn whose events are being sent, or may be.
    serving: Mutex<u64>,
    changed: Condvar,
}

/// A commit's place in the order of deliveries, with the subscriptions made before it
/// (`Watchers::take_turn`). Its drop ends the turn, whether it sent or not (a panic).
pub(crate) struct Turn<'a> {
    turns: &'a Turns,
    number: u64,
    targets: Vec<Watch>,
}

impl Turns {
    /// Waits until turn `number` is served; the lock on `serving` comes back held.
    fn wait_for(&self, number: u64) -> parking_lot::MutexGuard<'_, u64> {
        let mut serving = self.serving.lock();
        while *serving != number {
            self.changed.wait(&mut serving);
        }
        serving
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        // Only the turn being served may end it; one dropped before its turn (never waited
        // for) waits for it here, so that no later turn is let go early.
        *self.turns.wait_for(self.number) += 1;
        self.turns.changed.notify_all();
    }
}

#[derive(Clone)]
struct Watch {
    id: u64,
    tree: Arc<[u8]>,
    born: Option<u64>,
    /// A user key's prefix: an `IVec`, so its clones share one copy, wiped with the last.
    prefix: IVec,
    queue: Arc<Queue>,
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

    /// Whether anyone watches anything (`watching` is an atomic load while nobody does).
    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    pub(crate) fn register(self: &Arc<Self>, tree: Arc<[u8]>, born: Option<u64>, prefix: &[u8]) -> Subscriber {
        let queue = Arc::new(Queue::default());
        let waker = Arc::new(Mutex::new(None));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let watch =
            Watch { id, tree, born, prefix: IVec::from_slice(prefix), queue: queue.clone(), waker: waker.clone() };
        let mut list = self.list.lock();
        list.push(watch);
        self.any.store(true, Ordering::Release);
        drop(list);
        Subscriber { id, queue, waker, home: self.clone() }
    }

    /// A subscriber that has ended already (its tree's handle is stale: the tree was dropped).
    pub(crate) fn ended(self: &Arc<Self>) -> Subscriber {
        let queue = Arc::new(Queue::default());
        queue.state.lock().ended = true;
        Subscriber { id: u64::MAX, queue, waker: Default::default(), home: self.clone() }
    }

    /// Takes out the subscriptions `gone` says, wakes them (an awaited subscriber then finds
    /// its end), and keeps `any` true only while some remain.
    fn remove(&self, gone: impl Fn(&Watch) -> bool) {
        let mut list = self.list.lock();
        let mut ended = Vec::new();
        list.retain(|w| {
            let go = gone(w);
            if go {
                ended.push((w.queue.clone(), w.waker.clone()));
            }
            !go
        });
        self.any.store(!list.is_empty(), Ordering::Release);
        drop(list);
        for (queue, w) in ended {
            queue.end();
            // Taken out of its lock before it is woken: an executor may poll at once.
            let waker = w.lock().take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    /// The next turn to send `changes` in, with the subscriptions made so far that take one of
    /// them: called by a commit while it holds the writer, so that turns follow commit order
    /// and a subscription made after the commit (under the writer) hears none of its events.
    /// None when no subscription takes any and the commit ends none (of the dropped tree
    /// instances in `ended`, none is watched): a write or a drop nobody hears waits for no
    /// one's turn. `changes` are in tree and key order (`Changes::into_events`): each
    /// subscription looks only at the run under its tree and prefix.
    pub(crate) fn take_turn(&self, changes: &[Change], ended: &[(Vec<u8>, u64)]) -> Option<Turn<'_>> {
        if changes.is_empty() && ended.is_empty() {
            return None;
        }
        let hears = |w: &Watch| {
            let from = changes.partition_point(|c| (&*c.tree, &c.key[..]) < (&*w.tree, &w.prefix[..]));
            changes[from..]
                .iter()
                .take_while(|c| c.tree == w.tree && c.key.starts_with(&w.prefix))
                .any(|c| w.takes(&c.tree, c.born))
        };
        let list = self.list.lock();
        let ends = ended.iter().any(|(name, born)| list.iter().any(|w| *w.tree == name[..] && w.born == Some(*born)));
        let targets: Vec<Watch> = list.iter().filter(|w| hears(w)).cloned().collect();
        drop(list);
        if targets.is_empty() && !ends {
            return None;
        }
        let number = self.turns.next.fetch_add(1, Ordering::Relaxed);
        Some(Turn { turns: &self.turns, number, targets })
    }

    /// Waits for `turn`, then sends each change to the subscriptions that take it, then ends
    /// the subscriptions of the tree instances in `ended` (dropped by the commit: after every
    /// event of the commits before it, which came in earlier turns); the turn ends with the
    /// call. A full subscriber is waited for; one that is gone is forgotten.
    pub(crate) fn deliver(&self, turn: Turn<'_>, changes: Vec<Change>, ended: &[(Vec<u8>, u64)]) {
        drop(self.turns.wait_for(turn.number));
        // Sent outside the list's lock: a full subscriber may take its time, and its drop
        // takes the lock.
        let targets = &turn.targets;
        let mut gone = Vec::new();
        for change in changes {
            let event = match change.value {
                Some(value) => Event::Insert { key: change.key, value },
                None => Event::Remove { key: change.key },
            };
            for w in targets {
                if !w.takes(&change.tree, change.born) || !event.key().starts_with(&w.prefix) || gone.contains(&w.id) {
                    continue;
                }
                if !w.queue.send(event.clone()) {
                    gone.push(w.id);
                    continue;
                }
                // Taken out of its lock before it is woken: an executor may poll at once.
                let waker = w.waker.lock().take();
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
        }
        if !gone.is_empty() {
            self.remove(|w| gone.contains(&w.id));
        }
        for (name, born) in ended {
            self.forget_instance(name, *born);
        }
    }

    /// Ends the subscriptions of `tree`'s instance `born` (dropped): they return `None`.
    pub(crate) fn forget_instance(&self, tree: &[u8], born: u64) {
        self.remove(|w| &*w.tree == tree && w.born == Some(born));
    }

    /// Ends every subscription (the database is closing).
    pub(crate) fn close(&self) {
        self.remove(|_| true);
    }
}

/// One key's change in a commit, as `Changes` leaves it.
pub(crate) struct Change {
    tree: Arc<[u8]>,
    born: Option<u64>,
    key: IVec,
    value: Option<IVec>,
}

/// What a write transaction changed in watched trees: each write's change, in order, coalesced
/// key by key when the events are made (the value before its first write to the key and after
/// its last).
///
/// A `Vec` of records without padding, not a map: a `BTreeMap`'s nodes are 640-byte blocks
/// whose unused slots are never written, and one built through the stack carried two key
/// prefixes a comparison had left there into the heap (`tests/plaintext_frees.rs` found it in
/// CI's build; SPEC §14).
#[derive(Default)]
pub(crate) struct Changes {
    on: bool,
    records: Vec<Record>,
}

/// One write's change. Every word is written (no padding, no `Option<u64>`): what the stack held
/// where it was built does not move with it.
struct Record {
    tree: Arc<[u8]>,
    key: IVec,
    before: Option<IVec>,
    after: Option<IVec>,
    /// The tree instance, valid when `flags & HAS_BORN`.
    born: u64,
    flags: u64,
}

const HAS_BORN: u64 = 1;
const FORCED: u64 = 2;

impl Changes {
    /// Records nothing unless `on` (a single write: someone watches its tree; a transaction:
    /// on, each write then deciding through `of` whether its tree is watched).
    pub(crate) fn new(on: bool) -> Changes {
        Changes { on, records: Vec::new() }
    }

    /// `key` of `tree` went from `before` to `after`; `forced`: an event even if they are equal
    /// (a compare-and-swap that succeeded). Called only through a `TreeChanges` that records
    /// (its `on` already holds this one's).
    fn record(
        &mut self,
        tree: &[u8],
        born: Option<u64>,
        key: &[u8],
        before: Option<&[u8]>,
        after: Option<&[u8]>,
        forced: bool,
    ) {
        let flags = if born.is_some() { HAS_BORN } else { 0 } | if forced { FORCED } else { 0 };
        self.records.push(Record {
            tree: Arc::from(tree),
            key: IVec::from(key),
            before: before.map(IVec::from),
            after: after.map(IVec::from),
            born: born.unwrap_or(0),
            flags,
        });
    }

    /// The recorder of one tree's changes (instance `born`); `watched`: whether anyone watches
    /// that tree (nothing is recorded for one nobody does).
    pub(crate) fn of<'a>(&'a mut self, tree: &'a [u8], born: Option<u64>, watched: bool) -> TreeChanges<'a> {
        let on = self.on && watched;
        TreeChanges { changes: self, tree, born, on }
    }

    /// The events to send, in tree and key order: per key, its value after the last write if
    /// it differs from the value before the first, or if a write was forced.
    pub(crate) fn into_events(mut self) -> Vec<Change> {
        // Stable: each key's records stay in the order they were made. Per tree instance: a
        // tree dropped and made again in one transaction has two, and a subscriber of the old
        // one hears only its writes (they were merged per name, and the old tree's subscriber
        // was sent the new one's value: transactions review, low).
        let instance = |r: &Record| (r.flags & HAS_BORN != 0).then_some(r.born);
        self.records.sort_by(|a, b| (&a.tree, &a.key, instance(a)).cmp(&(&b.tree, &b.key, instance(b))));
        let mut out = Vec::new();
        let mut records = self.records.into_iter().peekable();
        while let Some(first) = records.next() {
            let first_instance = instance(&first);
            let (mut after, mut flags) = (first.after, first.flags);
            while let Some(next) =
                records.next_if(|r| r.tree == first.tree && r.key == first.key && instance(r) == first_instance)
            {
                after = next.after;
                flags |= next.flags & FORCED;
            }
            if flags & FORCED != 0 || first.before != after {
                let born = (flags & HAS_BORN != 0).then_some(first.born);
                out.push(Change { tree: first.tree, born, key: first.key, value: after });
            }
        }
        out
    }
}

/// `Changes` of one tree: what its writes record through.
pub(crate) struct TreeChanges<'a> {
    changes: &'a mut Changes,
    tree: &'a [u8],
    born: Option<u64>,
    on: bool,
}

impl TreeChanges<'_> {
    /// Whether anything is recorded (someone watches the tree).
    pub(crate) fn on(&self) -> bool {
        self.on
    }

    /// Every key of the tree at `r` removed (a `clear`, about to free it): a removal event each,
    /// as sled's clear removes them one by one.
    pub(crate) fn note_clear(&mut self, p: &TxPages, r: &TreeRoot) -> Result<()> {
        if self.on {
            for k in keys_of(p, r)? {
                self.note(&k, Some(b""), None, true);
            }
        }
        Ok(())
    }

    /// `key` went from `before` to `after` (`forced`: an event even if they are equal).
    pub(crate) fn note(&mut self, key: &[u8], before: Option<&[u8]>, after: Option<&[u8]>, forced: bool) {
        if self.on {
            self.changes.record(self.tree, self.born, key, before, after, forced);
        }
    }
}

/// Every key of the tree at `r` as the transaction `p` sees it (a watched tree's `clear`).
fn keys_of(p: &TxPages, r: &TreeRoot) -> Result<Vec<IVec>> {
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
    ///
    /// The subscription is made with the writer held, so a write transaction running on
    /// another thread commits first (its events are not heard: it committed before this call
    /// returned), and every commit that follows records for it; and a `drop_tree` either ended
    /// the tree before (the subscriber has ended) or ends the subscription with it. Made inside
    /// a write transaction of this thread, it hears that transaction's writes made after it.
    pub fn watch_prefix<P: AsRef<[u8]>>(&self, prefix: P) -> Subscriber {
        let engine = &self.handle.engine;
        let _writer = match engine.writer_held_here() {
            true => None,
            false => Some(engine.writer.lock()),
        };
        // A handle on a dropped tree hears nothing: its subscriber has ended already.
        if self.current(&engine.snapshot()).is_err() {
            return engine.watchers.ended();
        }
        engine.watchers.register(self.name.clone(), self.born, prefix.as_ref())
    }
}

/// One subscription's events, at most `BUFFERED` of them: a queue of our own rather than
/// `std::sync::mpsc`, whose channel is moved to the heap with wide uninitialised padding (its
/// parts are aligned to cache lines), which carries whatever the stack held there, user keys
/// included (`tests/plaintext_frees.rs` found one; SPEC §14).
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    not_empty: Condvar,
    not_full: Condvar,
}

#[derive(Default)]
struct QueueState {
    events: VecDeque<Event>,
    /// No more events will come (the subscription was ended).
    ended: bool,
    /// The subscriber is gone: nobody takes events.
    gone: bool,
}

impl Queue {
    /// Adds `e`, waiting while the queue is full; false if the subscriber is gone.
    fn send(&self, e: Event) -> bool {
        let mut st = self.state.lock();
        while st.events.len() >= BUFFERED && !st.gone {
            self.not_full.wait(&mut st);
        }
        if st.gone {
            return false;
        }
        st.events.push_back(e);
        drop(st);
        self.not_empty.notify_one();
        true
    }

    /// The next event, waiting until `deadline` (`None`: for ever).
    fn recv(&self, deadline: Option<std::time::Instant>) -> std::result::Result<Event, RecvTimeoutError> {
        let mut st = self.state.lock();
        loop {
            if let Some(e) = st.events.pop_front() {
                drop(st);
                self.not_full.notify_one();
                return Ok(e);
            }
            if st.ended {
                return Err(RecvTimeoutError::Disconnected);
            }
            match deadline {
                None => self.not_empty.wait(&mut st),
                Some(d) => {
                    if self.not_empty.wait_until(&mut st, d).timed_out() && st.events.is_empty() && !st.ended {
                        return Err(RecvTimeoutError::Timeout);
                    }
                }
            }
        }
    }

    /// No more events will come.
    fn end(&self) {
        self.state.lock().ended = true;
        self.not_empty.notify_all();
    }

    /// Nobody takes events any more: a sender waiting for room gives up.
    fn abandon(&self) {
        let mut st = self.state.lock();
        st.gone = true;
        st.events.clear();
        drop(st);
        self.not_full.notify_all();
    }
}

/// A subscription made by `Tree::watch_prefix`: an `Iterator` of events that waits for the
/// next (`None` once the database closed or the tree was dropped), and a `Future` of the next
/// event (`(&mut subscriber).await`).
pub struct Subscriber {
    id: u64,
    queue: Arc<Queue>,
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
        // A timeout too long to add is no deadline at all.
        self.queue.recv(std::time::Instant::now().checked_add(timeout))
    }
}

impl Iterator for Subscriber {
    type Item = Event;
    fn next(&mut self) -> Option<Event> {
        self.queue.recv(None).ok()
    }
}

impl Future for Subscriber {
    type Output = Option<Event>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        // An event if there is one, `Some(None)` once ended, `None` if neither yet.
        let take = |q: &Queue| {
            let mut st = q.state.lock();
            match st.events.pop_front() {
                Some(e) => {
                    drop(st);
                    q.not_full.notify_one();
                    Some(Some(e))
                }
                None => st.ended.then_some(None),
            }
        };
        if let Some(out) = take(&self.queue) {
            return Poll::Ready(out);
        }
        // Registered, then looked at again: an event sent between the two finds the waker or
        // is found here.
        *self.waker.lock() = Some(cx.waker().clone());
        match take(&self.queue) {
            Some(out) => Poll::Ready(out),
            None => Poll::Pending,
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        // A commit waiting for room in this subscriber's queue goes on; its events are wiped
        // (`IVec`s) as they go.
        self.queue.abandon();
        let id = self.id;
        self.home.remove(|w| w.id == id);
    }
}
