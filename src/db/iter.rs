//! `Iter`: a double-ended iterator over one snapshot of a tree, with sled's bounds semantics.
//!
//! Layer: db (the sled-compatible API). Invariants: the iterator holds its snapshot, so every
//! page it reaches stays allocated while it lives; the two ends never cross (each end stops at
//! the last key the other yielded); an inclusive bound already yielded ends the scan without
//! reading the next leaf; the bounds (copies of the caller's keys) are wiped on drop.

use std::ops::Bound;
use std::sync::Arc;

use super::api::{Handle, value_of};
use super::engine::Snapshot;
use super::ivec::IVec;
use crate::btree::read::Cursor;
use crate::crypto::wipe::wipe_vec;
use crate::error::{CorruptReason, Error, Result};
use crate::format::page::PageRef;

/// An iterator over a snapshot's entries; double-ended. Holds its whole snapshot alive while
/// it exists: no page a later commit frees, in any tree, is reused until it drops, so the file
/// grows by what commits made meanwhile rewrite (README, "Differences from sled").
pub struct Iter {
    handle: Arc<Handle>,
    _snap: Arc<Snapshot>,
    root: PageRef,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    front: Option<Cursor>,
    back: Option<Cursor>,
    front_started: bool,
    back_started: bool,
    last_front: Option<IVec>,
    last_back: Option<IVec>,
    done: bool,
    /// An error to yield first, then end (a handle whose tree was dropped).
    failed: Option<Error>,
    /// Values are read (`keys` turns this off: a listing of keys opens no overflow chain).
    read_values: bool,
}

/// The bounds are the caller's keys: wiped with the iterator (the last keys are `IVec`s, which
/// wipe themselves).
impl Drop for Iter {
    fn drop(&mut self) {
        wipe_bound(&mut self.lo);
        wipe_bound(&mut self.hi);
    }
}

/// Wipes the key a range bound holds (a copy of the caller's key).
pub(crate) fn wipe_bound(b: &mut Bound<Vec<u8>>) {
    if let Bound::Included(k) | Bound::Excluded(k) = b {
        wipe_vec(k);
    }
}

impl Iter {
    pub(crate) fn new(
        handle: Arc<Handle>,
        snap: Arc<Snapshot>,
        root: PageRef,
        lo: Bound<Vec<u8>>,
        hi: Bound<Vec<u8>>,
    ) -> Iter {
        Iter {
            handle,
            _snap: snap,
            root,
            lo,
            hi,
            front: None,
            back: None,
            front_started: false,
            back_started: false,
            last_front: None,
            last_back: None,
            done: false,
            failed: None,
            read_values: true,
        }
    }

    /// An iterator that yields `e` once and ends.
    pub(crate) fn failed(handle: Arc<Handle>, snap: Arc<Snapshot>, e: Error) -> Iter {
        let mut it = Iter::new(handle, snap, PageRef::NONE, Bound::Unbounded, Bound::Unbounded);
        it.failed = Some(e);
        it
    }

    pub(crate) fn prefix(handle: Arc<Handle>, snap: Arc<Snapshot>, root: PageRef, prefix: &[u8]) -> Iter {
        let hi = match prefix_successor(prefix) {
            Some(s) => Bound::Excluded(s),
            None => Bound::Unbounded,
        };
        Iter::new(handle, snap, root, Bound::Included(prefix.to_vec()), hi)
    }

    /// Keys only. Values are not read (a large value's overflow pages are not opened).
    pub fn keys(mut self) -> impl DoubleEndedIterator<Item = Result<IVec>> {
        self.read_values = false;
        self.map(|r| r.map(|(k, _)| k))
    }

    /// Values only.
    pub fn values(self) -> impl DoubleEndedIterator<Item = Result<IVec>> {
        self.map(|r| r.map(|(_, v)| v))
    }

    fn step(&mut self, forward: bool) -> Result<Option<(IVec, IVec)>> {
        let pager = &self.handle.engine.pager;
        // At an inclusive bound already yielded, stop without reading further (the next leaf
        // may be damaged, and the range does not need it).
        let at_bound = if forward {
            matches!((&self.hi, &self.last_front), (Bound::Included(h), Some(l)) if h[..] == l[..])
        } else {
            matches!((&self.lo, &self.last_back), (Bound::Included(h), Some(l)) if h[..] == l[..])
        };
        if at_bound {
            return Ok(None);
        }
        let cur = if forward {
            if !self.front_started {
                self.front_started = true;
                let (key, excluded) = seek_target(&self.lo);
                Cursor::seek_ge(pager, self.root, key, excluded)?
            } else {
                match self.front.take() {
                    Some(c) => c.next(pager)?,
                    None => None,
                }
            }
        } else if !self.back_started {
            self.back_started = true;
            let (key, excluded) = seek_target(&self.hi);
            Cursor::seek_le(pager, self.root, key, excluded)?
        } else {
            match self.back.take() {
                Some(c) => c.prev(pager)?,
                None => None,
            }
        };
        let Some(c) = cur else { return Ok(None) };
        // Keys move strictly away from the last one this end yielded: a damaged tree (a child
        // referenced twice, keys out of order) is reported, not repeated.
        let (last_here, last_there) =
            if forward { (&self.last_front, &self.last_back) } else { (&self.last_back, &self.last_front) };
        let moves_on = |k: &[u8]| match last_here {
            None => true,
            Some(l) if forward => k > &l[..],
            Some(l) => k < &l[..],
        };
        let in_range = |k: &[u8]| {
            if forward {
                let below_hi = match &self.hi {
                    Bound::Included(h) => k <= &h[..],
                    Bound::Excluded(h) => k < &h[..],
                    Bound::Unbounded => true,
                };
                below_hi && last_there.as_ref().is_none_or(|b| k < &b[..])
            } else {
                let above_lo = match &self.lo {
                    Bound::Included(l) => k >= &l[..],
                    Bound::Excluded(l) => k > &l[..],
                    Bound::Unbounded => true,
                };
                above_lo && last_there.as_ref().is_none_or(|f| k > &f[..])
            }
        };
        // The value is read only for a key that is yielded (it may be a large overflow value).
        let (key, ordered, value) = c.with_current(|k, v| {
            let ordered = moves_on(k);
            let value = (ordered && in_range(k)).then(|| match self.read_values {
                true => value_of(pager, v),
                false => Ok(IVec::from_slice(&[])),
            });
            (IVec::from_slice(k), ordered, value)
        })?;
        if !ordered {
            return Err(Error::corrupt(c.leaf_page(), CorruptReason::KeyOrder));
        }
        let Some(value) = value else { return Ok(None) };
        let value = value?;
        if forward {
            self.front = Some(c);
            self.last_front = Some(key.clone());
        } else {
            self.back = Some(c);
            self.last_back = Some(key.clone());
        }
        Ok(Some((key, value)))
    }
}

/// The smallest byte string greater than every string starting with `prefix`.
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < 0xFF {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

impl Iter {
    /// One step from either end; the iterator ends (for both ends) at the first error.
    fn advance(&mut self, forward: bool) -> Option<Result<(IVec, IVec)>> {
        if self.done {
            return None;
        }
        if let Some(e) = self.failed.take() {
            self.done = true;
            return Some(Err(e));
        }
        let r = self.step(forward).transpose();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }
}

impl Iterator for Iter {
    type Item = Result<(IVec, IVec)>;
    fn next(&mut self) -> Option<Self::Item> {
        self.advance(true)
    }

    /// The last entry, read from the back end (as sled's), not by walking the range.
    fn last(mut self) -> Option<Self::Item> {
        self.next_back()
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.advance(false)
    }
}

/// Where a cursor starts for a bound: the key (none for an unbounded end) and whether the key
/// itself is excluded.
fn seek_target(b: &Bound<Vec<u8>>) -> (Option<&[u8]>, bool) {
    match b {
        Bound::Included(k) => (Some(k), false),
        Bound::Excluded(k) => (Some(k), true),
        Bound::Unbounded => (None, false),
    }
}
