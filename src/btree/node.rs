//! B+tree page layouts, and the decoded nodes a write transaction edits. SPEC.md §4.
//!
//! Leaf payload:
//! ```text
//! 0   common header: kind = 2, count = n entries, generation
//! 16  n × u16 entry offsets (ascending key order)
//! ..  entries: key_len u16 | value_kind u8 | value_len u32 | key | value
//!     value_kind 0: value_len inline bytes follow
//!     value_kind 1: an overflow reference follows: first page PageRef (32) ‖ total length u64
//! ```
//! Branch payload:
//! ```text
//! 0   common header: kind = 1, count = n separator keys, generation
//! 16  (n + 1) × child PageRef (page u64 ‖ seal tag 16 ‖ generation u64)  -- the Merkle links
//! ..  n × u16 key offsets
//! ..  keys: key_len u16 | key
//! ```
//! Child `i` holds keys `k` with `keys[i-1] <= k < keys[i]`.
//!
//! Invariants: an encoded node never exceeds `PAYLOAD_SIZE` (a page that decodes to more is
//! refused); any entry is at most `MAX_ENTRY_SIZE`, half of the usable space, so a split of an
//! overfull node always yields two nodes that fit. Raw-page accessors check every offset and
//! length against the page and report `Corrupt { page, BadLayout }` instead of panicking.

use super::raw::{RawNode, RawValue};
use super::search::{key_prefix, search_prefixed};
use crate::crypto::wipe::wipe_vec;
use crate::error::{CorruptReason, Error, PageNo, Result};
use crate::format::page::{PAGE_HEADER_SIZE, PAGE_REF_SIZE, PAYLOAD_SIZE, PageKind, PageRef, write_header};
use crate::format::{put_u16, put_u32};

/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 1024;
/// Values up to this size (with their key) are stored in the leaf; longer ones in overflow pages.
/// The largest that keeps two entries within a leaf's usable space (`2 * MAX_ENTRY_SIZE` =
/// 4048), so that a split always yields two nodes that fit. It was 1900 before: readers never
/// checked it, so files written with either limit read and edit alike (SPEC.md §4.2).
pub const MAX_INLINE_ENTRY: usize = (PAYLOAD_SIZE - PAGE_HEADER_SIZE) / 2 - SLOT - LEAF_ENTRY_HEADER;
/// Entry header in a leaf.
pub const LEAF_ENTRY_HEADER: usize = 2 + 1 + 4;
pub const OVERFLOW_REF_SIZE: usize = PAGE_REF_SIZE + 8;
pub(crate) const SLOT: usize = 2;
/// Largest encoded size of one leaf entry, slot included.
pub const MAX_ENTRY_SIZE: usize = SLOT + LEAF_ENTRY_HEADER + MAX_INLINE_ENTRY;
const _: () = assert!(2 * MAX_ENTRY_SIZE <= PAYLOAD_SIZE - PAGE_HEADER_SIZE);
const _: () = assert!(2 * (SLOT + 2 + MAX_KEY_LEN + PAGE_REF_SIZE) + PAGE_REF_SIZE <= PAYLOAD_SIZE - PAGE_HEADER_SIZE);
const _: () = assert!(SLOT + LEAF_ENTRY_HEADER + MAX_KEY_LEN + OVERFLOW_REF_SIZE <= MAX_ENTRY_SIZE);

/// A value as a leaf holds it.
#[derive(Clone)]
pub(crate) enum Value {
    Inline(Vec<u8>),
    Overflow { first: PageRef, len: u64 },
}

/// Decoded keys and values are user plaintext: they are wiped when dropped (`crypto::wipe`).
impl Drop for Value {
    fn drop(&mut self) {
        if let Value::Inline(v) = self {
            wipe_vec(v);
        }
    }
}

/// The keys and values are wiped with their buffer, spare capacity included (the bytes of
/// removed entries and replaced values stay there until then). The prefixes are plaintext too
/// (8 bytes of each key): their buffer is wiped whole, spare capacity included (copies left by
/// removals and splits), and grows through `reserve_wiping`. They live only in that buffer,
/// never in a value passed around (an entry, a node), so no copy of them reaches the stack or
/// the uninitialised tail of a moved node.
impl Drop for Leaf {
    fn drop(&mut self) {
        wipe_vec(&mut self.bytes);
        self.prefixes.clear();
        crate::crypto::wipe::wipe_spare(&mut self.prefixes);
    }
}

/// The key buffer is wiped whole (spare capacity included: removals and splits leave copies
/// there); so is the buffer of their prefixes (plaintext).
impl Drop for Branch {
    fn drop(&mut self) {
        wipe_vec(&mut self.key_bytes);
        self.prefixes.clear();
        crate::crypto::wipe::wipe_spare(&mut self.prefixes);
    }
}

impl Value {
    /// The value as a page would hold it (borrowed).
    pub(crate) fn as_raw(&self) -> RawValue<'_> {
        match self {
            Value::Inline(v) => RawValue::Inline(v),
            Value::Overflow { first, len } => RawValue::Overflow { first: *first, len: *len },
        }
    }

    /// Moves an inline value out (the caller wipes it when done); `None` for an overflow value.
    pub(crate) fn take_inline(&mut self) -> Option<Vec<u8>> {
        match self {
            Value::Inline(v) => Some(std::mem::take(v)),
            Value::Overflow { .. } => None,
        }
    }
}

// Decoded keys and values are user plaintext: `Debug` shows their lengths only, so a node that
// reaches a log line, an assertion or a panic message carries none of it.
impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_raw().fmt(f)
    }
}

impl std::fmt::Debug for RawValue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawValue::Inline(v) => write!(f, "Inline(len={})", v.len()),
            RawValue::Overflow { first, len } => {
                f.debug_struct("Overflow").field("first", first).field("len", len).finish()
            }
        }
    }
}

impl std::fmt::Debug for Branch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key_lens: Vec<usize> = self.keys().map(<[u8]>::len).collect();
        f.debug_struct("Branch").field("key_lens", &key_lens).field("children", &self.children).finish()
    }
}

/// Where one entry of a decoded leaf lies in `Leaf::bytes`, and its value's form. Integers
/// only, in an order with no padding: slots are built on the stack and copied into a heap
/// vector, where padding would carry whatever the stack held (a key prefix, SPEC §14).
///
/// An overflow value's reference (first page and length, `OVERFLOW_REF_SIZE` bytes, encoded as
/// the page holds it) lies in `Leaf::bytes` after its key, as an inline value does, not here:
/// 16 bytes an entry rather than 56 (BENCHMARKS.md, "Twenty-sixth session": a decoded leaf
/// of a bulk load took about 7.3 KB, 3.6 of them this vector's).
#[derive(Clone, Copy)]
#[repr(C)]
struct EntryAt {
    /// Offset of the key; the value's stored bytes follow it.
    start: u32,
    key_len: u32,
    /// The bytes the value takes after the key: the inline value, or `OVERFLOW_REF_SIZE` for
    /// an overflow reference.
    value_len: u32,
    /// 1: the value is in overflow pages, its reference after the key; 0: inline.
    overflow: u32,
}

const _: () = assert!(std::mem::size_of::<EntryAt>() == 16);

/// The bytes a value takes stored after its key (and encoded after it in a page): an inline
/// value's own, or an overflow reference encoded in `scratch`.
fn stored_value<'a>(value: &RawValue<'a>, scratch: &'a mut [u8; OVERFLOW_REF_SIZE]) -> &'a [u8] {
    match *value {
        RawValue::Inline(v) => v,
        RawValue::Overflow { first, len } => {
            first.encode(&mut scratch[..]);
            scratch[PAGE_REF_SIZE..].copy_from_slice(&len.to_le_bytes());
            &scratch[..]
        }
    }
}

impl EntryAt {
    /// An entry whose key of `key_len` bytes starts at `start`, its value's `value_len` stored
    /// bytes after it.
    fn new(start: u32, key_len: usize, value_len: usize, overflow: bool) -> EntryAt {
        EntryAt { start, key_len: key_len as u32, value_len: value_len as u32, overflow: u32::from(overflow) }
    }

    /// The bytes the entry takes in `Leaf::bytes` (key and stored value).
    fn stored(&self) -> usize {
        self.key_len as usize + self.value_len as usize
    }

    /// The bytes the entry takes encoded, its slot included.
    fn encoded(&self) -> usize {
        SLOT + LEAF_ENTRY_HEADER + self.stored()
    }
}

/// A decoded leaf. Its keys and values lie in one buffer, each entry's key followed by its
/// value as the page holds it (inline bytes, or an overflow reference), so decoding a leaf
/// (which every edit below a committed page does) makes three allocations, not two per entry;
/// entries are added, removed and moved only through the methods below, which keep `at`,
/// `prefixes`, `encoded` and `dead` in step.
#[derive(Clone, Default)]
pub(crate) struct Leaf {
    /// Keys and stored values, in no particular order (`at` orders them). Grows only through
    /// `reserve`, which wipes the old buffer; removed entries and replaced values leave their
    /// bytes behind (`dead`) until then.
    bytes: Vec<u8>,
    /// The entries, in key order.
    at: Vec<EntryAt>,
    /// `key_prefix` of each entry's key, side by side so that a search decides most
    /// comparisons without reading a key.
    prefixes: Vec<u64>,
    /// The entries' encoded size (`EntryAt::encoded` summed).
    encoded: usize,
    /// Bytes of `bytes` that no entry uses.
    dead: usize,
    /// Zeros that make a leaf as large as a branch, so a `Node` holding a leaf has no
    /// uninitialised bytes: moved into the heap (the dirty set's table), such bytes would be a
    /// copy of whatever the stack held there, a key prefix a comparison left, for instance.
    #[allow(dead_code)]
    tail: [usize; 1],
}

const _: () = assert!(std::mem::size_of::<Leaf>() == std::mem::size_of::<Branch>());

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries: Vec<(usize, RawValue<'_>)> = (0..self.len()).map(|i| (self.key(i).len(), self.value(i))).collect();
        f.debug_struct("Leaf").field("key_lens_and_values", &entries).finish()
    }
}

/// Separator keys are private so that `key_ends` and `prefixes` stay in step: build with
/// `Branch::new`, edit with `insert_key`, `remove_key`, `merge` and `split`. The keys lie back
/// to back in one buffer, so decoding a branch (which every edit below it does) makes a few
/// allocations, not one per key.
#[derive(Clone, Default)]
pub(crate) struct Branch {
    /// The separator keys, back to back. Grows through `reserve_wiping` (`Drop for Branch`).
    key_bytes: Vec<u8>,
    /// Where key `i` ends in `key_bytes`; it starts where key `i - 1` ends (or at 0).
    key_ends: Vec<u32>,
    pub children: Vec<PageRef>,
    /// `key_prefix` of each key, beside one another so that `child_index` follows a key's
    /// pointer only when the prefixes tie. Grows through `reserve_wiping` (`Drop for Branch`).
    prefixes: Vec<u64>,
}

#[derive(Clone, Debug)]
pub(crate) enum Node {
    Leaf(Leaf),
    Branch(Branch),
}

impl Leaf {
    /// The encoded size of the leaf, header included.
    pub(crate) fn size(&self) -> usize {
        PAGE_HEADER_SIZE + self.encoded
    }

    /// The number of entries.
    pub(crate) fn len(&self) -> usize {
        self.at.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    fn key_of(&self, a: &EntryAt) -> &[u8] {
        let s = a.start as usize;
        self.bytes.get(s..s + a.key_len as usize).unwrap_or_default()
    }

    /// The value's stored bytes (after the key).
    fn stored_value_of(&self, a: &EntryAt) -> &[u8] {
        let s = a.start as usize + a.key_len as usize;
        self.bytes.get(s..s + a.value_len as usize).unwrap_or_default()
    }

    fn value_of(&self, a: &EntryAt) -> RawValue<'_> {
        let v = self.stored_value_of(a);
        if a.overflow == 0 {
            return RawValue::Inline(v);
        }
        // Stored by `store` from a reference; a short slice (never) reads as no chain.
        let first = PageRef::decode(v, 0).unwrap_or(PageRef::NONE);
        let len = v.get(PAGE_REF_SIZE..OVERFLOW_REF_SIZE).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
        RawValue::Overflow { first, len }
    }

    /// The key of entry `i` (empty past the end).
    pub(crate) fn key(&self, i: usize) -> &[u8] {
        self.at.get(i).map_or(&[], |a| self.key_of(a))
    }

    /// The value of entry `i` (an empty inline value past the end).
    pub(crate) fn value(&self, i: usize) -> RawValue<'_> {
        self.at.get(i).map_or(RawValue::Inline(&[]), |a| self.value_of(a))
    }

    /// The bytes entry `i` takes encoded, its slot included (0 past the end).
    pub(crate) fn entry_size(&self, i: usize) -> usize {
        self.at.get(i).map_or(0, EntryAt::encoded)
    }

    /// The overflow values: (entry index, first page, length).
    pub(crate) fn overflow_values(&self) -> impl Iterator<Item = (usize, PageRef, u64)> + '_ {
        self.at.iter().enumerate().filter_map(|(i, a)| match self.value_of(a) {
            RawValue::Overflow { first, len } => Some((i, first, len)),
            RawValue::Inline(_) => None,
        })
    }

    /// Makes room for `need` more bytes: the live entries move to a new buffer (the old one
    /// wiped) of a page's worth, or of exactly what they and `need` take if that is more. A leaf
    /// holds at most a page and one entry before it splits, so a buffer never doubles, and the
    /// dead bytes of removed entries and replaced values go at the same time.
    fn reserve(&mut self, need: usize) {
        if self.bytes.capacity() - self.bytes.len() >= need {
            return;
        }
        let live = self.bytes.len() - self.dead;
        self.compact(PAYLOAD_SIZE.max(live + need));
    }

    /// Copies the live entries, in key order, into a new buffer of `capacity` bytes (or of what
    /// they take, if more), and wipes the old one.
    fn compact(&mut self, capacity: usize) {
        let live = self.bytes.len() - self.dead;
        let mut bytes = Vec::with_capacity(capacity.max(live));
        for a in self.at.iter_mut() {
            let s = a.start as usize;
            a.start = bytes.len() as u32;
            bytes.extend_from_slice(self.bytes.get(s..s + a.stored()).unwrap_or_default());
        }
        wipe_vec(&mut self.bytes);
        self.bytes = bytes;
        self.dead = 0;
    }

    /// Copies `key` and `value` into the buffer; returns where they lie.
    fn store(&mut self, key: &[u8], value: RawValue<'_>) -> EntryAt {
        let mut scratch = [0u8; OVERFLOW_REF_SIZE];
        let stored = stored_value(&value, &mut scratch);
        self.reserve(key.len() + stored.len());
        let (start, capacity) = (self.bytes.len() as u32, self.bytes.capacity());
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(stored);
        debug_assert_eq!(capacity, self.bytes.capacity(), "a leaf's buffer grew without a wipe");
        EntryAt::new(start, key.len(), stored.len(), value.is_overflow())
    }

    /// `Ok(index)` of `key`, or `Err(index)` where it would be inserted.
    pub(crate) fn search(&self, key: &[u8]) -> std::result::Result<usize, usize> {
        debug_assert_eq!(self.prefixes.len(), self.at.len());
        search_prefixed(&self.prefixes, |i| self.at.get(i).map(|a| self.key_of(a)), key)
    }

    /// Inserts an entry of `key` and `value` (both copied) at `i` (at the end, if past it).
    pub(crate) fn insert(&mut self, i: usize, key: &[u8], value: RawValue<'_>) {
        let a = self.store(key, value);
        let i = i.min(self.at.len());
        crate::crypto::wipe::reserve_wiping(&mut self.prefixes, 1);
        self.prefixes.insert(i, key_prefix(key));
        self.at.insert(i, a);
        self.encoded += a.encoded();
    }

    /// Gives entry `i` the value `value` (copied); returns the value it had, or `None` past
    /// the end.
    pub(crate) fn replace_value(&mut self, i: usize, value: RawValue<'_>) -> Option<Value> {
        let old = *self.at.get(i)?;
        let previous = self.value_of(&old).to_owned_value();
        let mut scratch = [0u8; OVERFLOW_REF_SIZE];
        let stored = stored_value(&value, &mut scratch);
        // The key is stored again beside the new value (unless that fits where the old one was).
        let start = if stored.len() <= old.value_len as usize {
            let s = old.start as usize + old.key_len as usize;
            if let Some(dst) = self.bytes.get_mut(s..s + stored.len()) {
                dst.copy_from_slice(stored);
            }
            self.dead += old.value_len as usize - stored.len();
            old.start
        } else {
            self.reserve(old.key_len as usize + stored.len());
            let moved = *self.at.get(i)?;
            let s = moved.start as usize;
            let (start, capacity) = (self.bytes.len() as u32, self.bytes.capacity());
            self.bytes.extend_from_within(s..s + moved.key_len as usize);
            self.bytes.extend_from_slice(stored);
            debug_assert_eq!(capacity, self.bytes.capacity(), "a leaf's buffer grew without a wipe");
            self.dead += moved.stored();
            start
        };
        let a = EntryAt::new(start, old.key_len as usize, stored.len(), value.is_overflow());
        self.encoded = self.encoded - old.encoded() + a.encoded();
        *self.at.get_mut(i)? = a;
        Some(previous)
    }

    /// Points the overflow value of entry `i` at a copy of its chain starting at `first`.
    pub(crate) fn set_overflow_first(&mut self, i: usize, first: PageRef) {
        if let Some(&a) = self.at.get(i)
            && a.overflow != 0
        {
            let s = a.start as usize + a.key_len as usize;
            if let Some(dst) = self.bytes.get_mut(s..s + PAGE_REF_SIZE) {
                first.encode(dst);
            }
        }
    }

    /// Removes entry `i`; returns its value, or `None` past the end.
    pub(crate) fn remove(&mut self, i: usize) -> Option<Value> {
        if i >= self.at.len() {
            return None;
        }
        let a = self.at.remove(i);
        self.prefixes.remove(i);
        self.encoded -= a.encoded();
        self.dead += a.stored();
        Some(self.value_of(&a).to_owned_value())
    }

    /// Moves every entry of `right` (the right sibling) to the end of this leaf.
    pub(crate) fn append(&mut self, right: &mut Leaf) {
        self.reserve(right.bytes.len() - right.dead);
        for i in 0..right.len() {
            self.insert(self.len(), right.key(i), right.value(i));
        }
        *right = Leaf::default();
    }

    /// A new leaf holding copies of entries `from..to`.
    fn copy_range(&self, from: usize, to: usize) -> Leaf {
        let n = to.min(self.len()).saturating_sub(from);
        let mut l = Leaf {
            bytes: Vec::new(),
            at: Vec::with_capacity(n + 1),
            prefixes: Vec::with_capacity(n + 1),
            ..Leaf::default()
        };
        for i in from..to.min(self.len()) {
            l.insert(i - from, self.key(i), self.value(i));
        }
        l
    }

    /// Drops entries `from..` (their bytes become dead).
    fn truncate(&mut self, from: usize) {
        for a in self.at.iter().skip(from) {
            self.encoded -= a.encoded();
            self.dead += a.stored();
        }
        self.at.truncate(from);
        self.prefixes.truncate(from);
    }

    /// Removes the first `n` entries (all, if fewer) and returns them as a leaf.
    pub(crate) fn split_front(&mut self, n: usize) -> Leaf {
        let n = n.min(self.len());
        let rest = self.copy_range(n, self.len());
        self.truncate(n);
        // The front goes out in this leaf's buffers; the rest, in new ones, stays.
        std::mem::replace(self, rest)
    }

    /// Splits off the last entry alone (an append past the end of the tree: the rest fitted
    /// before it came, and the next appends fill the new leaf); returns it as the right half.
    pub(crate) fn split_last(&mut self) -> Leaf {
        self.split_at(self.len().saturating_sub(1))
    }

    /// Keeps the first entry alone (an insert before the start of the tree: the rest fitted
    /// before it came, and the next such inserts fill this leaf); returns the rest.
    pub(crate) fn split_first(&mut self) -> Leaf {
        self.split_at(1)
    }

    /// Keeps entries `..at`; returns the rest as a new leaf.
    fn split_at(&mut self, at: usize) -> Leaf {
        let right = self.copy_range(at, self.len());
        self.truncate(at);
        right
    }

    /// Splits off an upper part so that both halves fit (the split point minimises the larger
    /// half); returns the right half. Needs at least two entries.
    pub(crate) fn split(&mut self) -> Leaf {
        let total = self.encoded;
        let (mut best, mut best_max, mut left) = (1, usize::MAX, 0);
        for (i, a) in self.at.iter().enumerate().take(self.len().saturating_sub(1)) {
            left += a.encoded();
            let m = left.max(total - left);
            if m < best_max {
                best_max = m;
                best = i + 1;
            }
        }
        self.split_at(best.min(self.len()))
    }
}

impl Branch {
    /// A branch of `keys` (each wiped once copied in) and `children`.
    pub(crate) fn new(mut keys: Vec<Vec<u8>>, children: Vec<PageRef>) -> Branch {
        let mut b = Branch {
            key_bytes: Vec::with_capacity(keys.iter().map(Vec::len).sum()),
            key_ends: Vec::with_capacity(keys.len()),
            children,
            prefixes: Vec::with_capacity(keys.len()),
        };
        for k in keys.iter_mut() {
            b.push_key(k);
            wipe_vec(k);
        }
        b
    }

    /// Appends a key (the buffers grow through `reserve_wiping`).
    fn push_key(&mut self, k: &[u8]) {
        crate::crypto::wipe::reserve_wiping(&mut self.key_bytes, k.len());
        crate::crypto::wipe::reserve_wiping(&mut self.prefixes, 1);
        self.key_bytes.extend_from_slice(k);
        self.key_ends.push(self.key_bytes.len() as u32);
        self.prefixes.push(key_prefix(k));
    }

    fn key_start(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.key_ends.get(i - 1).map_or(self.key_bytes.len(), |&e| e as usize) }
    }

    /// Separator `i`, or `None` past the last.
    pub(crate) fn key(&self, i: usize) -> Option<&[u8]> {
        let end = *self.key_ends.get(i)? as usize;
        self.key_bytes.get(self.key_start(i)..end)
    }

    /// The number of separators (one less than the children).
    pub(crate) fn key_count(&self) -> usize {
        self.key_ends.len()
    }

    /// The separators in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.key_count()).filter_map(|i| self.key(i))
    }

    /// Inserts separator `key` at `i` (its right child is inserted by the caller); `key` is
    /// wiped once copied in.
    pub(crate) fn insert_key(&mut self, i: usize, mut key: Vec<u8>) {
        let i = i.min(self.key_count());
        let at = self.key_start(i);
        crate::crypto::wipe::reserve_wiping(&mut self.key_bytes, key.len());
        crate::crypto::wipe::reserve_wiping(&mut self.prefixes, 1);
        self.key_bytes.splice(at..at, key.iter().copied());
        let len = key.len() as u32;
        self.key_ends.insert(i, at as u32 + len);
        self.key_ends[i + 1..].iter_mut().for_each(|e| *e += len);
        self.prefixes.insert(i, key_prefix(&key));
        wipe_vec(&mut key);
    }

    /// Removes and returns separator `i`, or `None` past the end.
    pub(crate) fn remove_key(&mut self, i: usize) -> Option<Vec<u8>> {
        let (start, end) = (self.key_start(i), *self.key_ends.get(i)? as usize);
        let key = self.key_bytes.get(start..end)?.to_vec();
        self.key_bytes.drain(start..end);
        self.key_ends.remove(i);
        let len = (end - start) as u32;
        self.key_ends[i..].iter_mut().for_each(|e| *e -= len);
        self.prefixes.remove(i);
        Some(key)
    }

    /// Appends `sep` and then every key and child of `right` (the right sibling); `sep` is
    /// wiped once copied in.
    pub(crate) fn merge(&mut self, mut sep: Vec<u8>, right: &mut Branch) {
        crate::crypto::wipe::reserve_wiping(&mut self.key_bytes, sep.len() + right.key_bytes.len());
        crate::crypto::wipe::reserve_wiping(&mut self.prefixes, 1 + right.prefixes.len());
        self.push_key(&sep);
        wipe_vec(&mut sep);
        let base = self.key_bytes.len() as u32;
        self.key_bytes.extend_from_slice(&right.key_bytes);
        self.key_ends.extend(right.key_ends.drain(..).map(|e| base + e));
        self.prefixes.append(&mut right.prefixes);
        wipe_vec(&mut right.key_bytes);
        self.children.append(&mut right.children);
    }

    pub(crate) fn size(&self) -> usize {
        PAGE_HEADER_SIZE + self.children.len() * PAGE_REF_SIZE + self.key_count() * (SLOT + 2) + self.key_bytes.len()
    }

    /// Index of the child that holds `key`: the number of separators `<= key`.
    pub(crate) fn child_index(&self, key: &[u8]) -> usize {
        match search_prefixed(&self.prefixes, |i| self.key(i), key) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// Splits into two branches; returns (separator moved up, right half). The key at the split
    /// point moves up; the point minimises the larger half. Needs at least two keys.
    pub(crate) fn split(&mut self) -> (Vec<u8>, Branch) {
        let sizes: Vec<usize> = self.keys().map(|k| SLOT + 2 + k.len() + PAGE_REF_SIZE).collect();
        let total: usize = sizes.iter().sum();
        let (mut best, mut best_max, mut left) = (0, usize::MAX, 0);
        for (i, s) in sizes.iter().enumerate() {
            // keys[i] moves up: left holds keys[..i], right keys[i+1..].
            let right = total - left - s;
            let m = left.max(right);
            if m < best_max {
                best_max = m;
                best = i;
            }
            left += s;
        }
        self.split_at(best)
    }

    /// Splits an append past the end of the tree: the last separator but one moves up, and the
    /// right half keeps the last separator and the last two children (the rest fitted before
    /// the append, and the next appends fill the new branch). Needs at least three keys.
    pub(crate) fn split_last(&mut self) -> (Vec<u8>, Branch) {
        self.split_at(self.key_count().saturating_sub(2))
    }

    /// Splits an insert before the start of the tree: the left half keeps the first separator
    /// and the first two children, the second separator moves up (the mirror of `split_last`).
    /// Needs at least three keys.
    pub(crate) fn split_first(&mut self) -> (Vec<u8>, Branch) {
        self.split_at(1)
    }

    /// Splits at key `best`, which moves up: the left keeps keys `..best`, the right the rest.
    fn split_at(&mut self, best: usize) -> (Vec<u8>, Branch) {
        let sep = self.key(best).map(<[u8]>::to_vec).unwrap_or_default();
        let mut right = Branch {
            key_bytes: Vec::new(),
            key_ends: Vec::new(),
            children: self.children.split_off((best + 1).min(self.children.len())),
            prefixes: Vec::new(),
        };
        let from = self.key_ends.get(best).map_or(self.key_bytes.len(), |&e| e as usize);
        right.key_bytes = self.key_bytes.get(from..).unwrap_or_default().to_vec();
        right.key_ends = self.key_ends.iter().skip(best + 1).map(|&e| e - from as u32).collect();
        right.prefixes = self.prefixes.split_off((best + 1).min(self.prefixes.len()));
        // What stays behind past the new length is wiped with the buffer (`Drop for Branch`).
        self.key_bytes.truncate(self.key_start(best));
        self.key_ends.truncate(best);
        self.prefixes.truncate(best);
        (sep, right)
    }
}

impl Node {
    pub(crate) fn size(&self) -> usize {
        match self {
            Node::Leaf(l) => l.size(),
            Node::Branch(b) => b.size(),
        }
    }

    /// Encodes into a payload buffer (`PAYLOAD_SIZE` bytes, zeroed by the caller).
    pub(crate) fn encode(&self, generation: u64, out: &mut [u8]) -> Result<()> {
        if self.size() > PAYLOAD_SIZE || out.len() < PAYLOAD_SIZE {
            return Err(Error::ReportableBug(format!("node of {} bytes does not fit a page", self.size())));
        }
        match self {
            Node::Leaf(l) => {
                write_header(out, PageKind::Leaf, l.len() as u16, generation);
                let mut pos = PAGE_HEADER_SIZE + SLOT * l.len();
                for (i, a) in l.at.iter().enumerate() {
                    let key = l.key_of(a);
                    put_u16(out, PAGE_HEADER_SIZE + SLOT * i, pos as u16);
                    put_u16(out, pos, key.len() as u16);
                    // The stored value is what the page holds: the inline value, or the
                    // overflow reference as SPEC §4.1 encodes it.
                    let v = l.stored_value_of(a);
                    out[pos + 2] = a.overflow as u8;
                    put_u32(out, pos + 3, v.len() as u32);
                    pos += LEAF_ENTRY_HEADER;
                    out[pos..pos + key.len()].copy_from_slice(key);
                    pos += key.len();
                    out[pos..pos + v.len()].copy_from_slice(v);
                    pos += v.len();
                }
            }
            Node::Branch(b) => {
                write_header(out, PageKind::Branch, b.key_count() as u16, generation);
                let mut pos = PAGE_HEADER_SIZE;
                for c in &b.children {
                    c.encode(&mut out[pos..]);
                    pos += PAGE_REF_SIZE;
                }
                let slots = pos;
                pos += SLOT * b.key_count();
                for (i, k) in b.keys().enumerate() {
                    put_u16(out, slots + SLOT * i, pos as u16);
                    put_u16(out, pos, k.len() as u16);
                    out[pos + 2..pos + 2 + k.len()].copy_from_slice(k);
                    pos += 2 + k.len();
                }
            }
        }
        Ok(())
    }

    /// Decodes a raw payload (already opened and kind-checked or not).
    pub(crate) fn decode(payload: &[u8], page: PageNo) -> Result<Node> {
        let raw = RawNode::new(payload, page)?;
        // A damaged page whose entries overlap would decode to more than a page, each insert
        // reallocating: refused from its entry headers first.
        if raw.encoded_size()? > PAYLOAD_SIZE {
            return Err(Error::corrupt(page, CorruptReason::BadLayout));
        }
        // Keys strictly ascending (SPEC §4.2): searches and edits rely on it.
        for i in 1..raw.len() {
            let (a, b) = match raw.is_leaf() {
                true => (raw.leaf_key(i - 1)?, raw.leaf_key(i)?),
                false => (raw.branch_key(i - 1)?, raw.branch_key(i)?),
            };
            if super::search::compare_keys(a, b).is_ge() {
                return Err(Error::corrupt(page, CorruptReason::KeyOrder));
            }
        }
        if raw.is_leaf() {
            let n = raw.len();
            let mut l = Leaf {
                bytes: Vec::with_capacity(PAYLOAD_SIZE),
                at: Vec::with_capacity(n + 1),
                prefixes: Vec::with_capacity(n + 1),
                ..Leaf::default()
            };
            for i in 0..n {
                let (k, v) = raw.leaf_entry(i)?;
                l.insert(i, k, v);
            }
            Node::Leaf(l).fitting(page)
        } else {
            let n = raw.len();
            let mut total = 0;
            for i in 0..n {
                total += raw.branch_key(i)?.len();
            }
            let mut b = Branch {
                key_bytes: Vec::with_capacity(total),
                key_ends: Vec::with_capacity(n),
                children: Vec::with_capacity(n + 1),
                prefixes: Vec::with_capacity(n),
            };
            for i in 0..n {
                b.push_key(raw.branch_key(i)?);
            }
            for i in 0..=n {
                b.children.push(raw.child(i)?);
            }
            Node::Branch(b).fitting(page)
        }
    }

    /// The node, if its encoded size fits a page. A damaged page whose entries share bytes (its
    /// offsets overlap) decodes to more than a page: refused, so that every node an edit starts
    /// from fits, which the split rules rely on (SPEC.md §4.2).
    fn fitting(self, page: PageNo) -> Result<Node> {
        if self.size() > PAYLOAD_SIZE {
            return Err(Error::corrupt(page, CorruptReason::BadLayout));
        }
        Ok(self)
    }
}

#[cfg(test)]
mod debug_tests {
    use super::{Branch, Leaf, RawValue};

    #[test]
    fn debug_shows_lengths_not_bytes() {
        let mut e = Leaf::default();
        e.insert(0, b"secret-key", RawValue::Inline(b"secret-value"));
        let b = Branch::new(vec![b"secret-sep".to_vec()], Vec::new());
        let shown = format!("{e:?} {b:?}");
        assert!(!shown.contains("secret") && !shown.contains("115, 101, 99"), "{shown}");
        assert!(shown.contains("(10, Inline(len=12))"), "{shown}");
    }
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
