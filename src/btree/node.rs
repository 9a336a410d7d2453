//! B+tree page layouts, and the decoded nodes a write transaction edits. SPEC.md §4.
//!
//! Leaf payload:
//! ```text
//! 0   common header: kind = 2, count = n entries, generation
//! 16  n × u16 entry offsets (ascending key order)
//! ..  entries: key_len u16 | value_kind u8 | value_len u32 | key | value
//!     value_kind 0: value_len inline bytes follow
//!     value_kind 1: an overflow reference follows: first page PageRef (24) ‖ total length u64
//! ```
//! Branch payload:
//! ```text
//! 0   common header: kind = 1, count = n separator keys, generation
//! 16  (n + 1) × child PageRef (page u64 ‖ seal tag 16)     -- the Merkle links
//! ..  n × u16 key offsets
//! ..  keys: key_len u16 | key
//! ```
//! Child `i` holds keys `k` with `keys[i-1] <= k < keys[i]`.
//!
//! Invariants: an encoded node never exceeds `PAYLOAD_SIZE`; any entry is at most
//! `MAX_ENTRY_SIZE`, which is under half of the usable space, so a split of an overfull node
//! always yields two nodes that fit. Raw-page accessors check every offset and length against
//! the page and report `Corrupt { page, BadLayout }` instead of panicking.

use super::raw::{RawNode, RawValue};
use super::search::{key_prefix, search_prefixed};
use crate::crypto::wipe::wipe_vec;
use crate::error::{Error, PageNo, Result};
use crate::format::page::{PAGE_HEADER_SIZE, PAGE_REF_SIZE, PAYLOAD_SIZE, PageKind, PageRef, write_header};
use crate::format::{put_u16, put_u32, put_u64};

/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 1024;
/// Values up to this size (with their key) are stored in the leaf; longer ones in overflow pages.
pub const MAX_INLINE_ENTRY: usize = 1900;
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

impl Drop for LeafEntry {
    fn drop(&mut self) {
        wipe_vec(&mut self.key);
    }
}

/// The prefixes are plaintext (8 bytes of each key): their buffer is wiped whole, spare
/// capacity included (copies left by removals and splits), and grows through `reserve_wiping`.
/// They live only in that buffer, never in a value passed around (an entry, a node), so no
/// copy of them reaches the stack or the uninitialised tail of a moved node.
impl Drop for Leaf {
    fn drop(&mut self) {
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

    /// Moves the value out, leaving an empty inline value behind.
    pub(crate) fn take(&mut self) -> Value {
        std::mem::replace(self, Value::Inline(Vec::new()))
    }

    /// Moves an inline value out (the caller wipes it when done); `None` for an overflow value.
    pub(crate) fn take_inline(&mut self) -> Option<Vec<u8>> {
        match self {
            Value::Inline(v) => Some(std::mem::take(v)),
            Value::Overflow { .. } => None,
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            Value::Inline(v) => v.len(),
            Value::Overflow { .. } => OVERFLOW_REF_SIZE,
        }
    }
}

#[derive(Clone)]
pub(crate) struct LeafEntry {
    pub key: Vec<u8>,
    pub value: Value,
}

impl LeafEntry {
    pub(crate) fn new(key: Vec<u8>, value: Value) -> LeafEntry {
        LeafEntry { key, value }
    }
}

// Decoded keys and values are user plaintext: `Debug` shows their lengths only, so a node that
// reaches a log line, an assertion or a panic message carries none of it.
impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Inline(v) => write!(f, "Inline(len={})", v.len()),
            Value::Overflow { first, len } => {
                f.debug_struct("Overflow").field("first", first).field("len", len).finish()
            }
        }
    }
}

impl std::fmt::Debug for LeafEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafEntry").field("key_len", &self.key.len()).field("value", &self.value).finish()
    }
}

impl std::fmt::Debug for Branch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key_lens: Vec<usize> = self.keys().map(<[u8]>::len).collect();
        f.debug_struct("Branch").field("key_lens", &key_lens).field("children", &self.children).finish()
    }
}

impl LeafEntry {
    pub(crate) fn size(&self) -> usize {
        SLOT + LEAF_ENTRY_HEADER + self.key.len() + self.value.encoded_len()
    }
}

/// Entries are read directly; entries are added, removed or moved only through `Leaf::new`,
/// `insert`, `remove`, `append` and `split`, which keep `prefixes` in step (values may be
/// edited in place).
#[derive(Clone, Default)]
pub(crate) struct Leaf {
    pub entries: Vec<LeafEntry>,
    /// `key_prefix` of each entry's key, side by side so that a search decides most
    /// comparisons without following a key's pointer (a decoded leaf's keys are separate heap
    /// blocks, so each probe would otherwise be a second cache miss).
    prefixes: Vec<u64>,
    /// Zeros that make a leaf as large as a branch, so a `Node` holding a leaf has no
    /// uninitialised bytes: moved into the heap (the dirty set's table), such bytes would be a
    /// copy of whatever the stack held there, a key prefix a comparison left, for instance.
    #[allow(dead_code)]
    tail: [usize; 6],
}

const _: () = assert!(std::mem::size_of::<Leaf>() == std::mem::size_of::<Branch>());

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf").field("entries", &self.entries).finish()
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
    pub(crate) fn size(&self) -> usize {
        PAGE_HEADER_SIZE + self.entries.iter().map(|e| e.size()).sum::<usize>()
    }
    pub(crate) fn new(entries: Vec<LeafEntry>) -> Leaf {
        let prefixes = entries.iter().map(|e| key_prefix(&e.key)).collect();
        Leaf { entries, prefixes, tail: [0; 6] }
    }
    /// `Ok(index)` of `key`, or `Err(index)` where it would be inserted.
    pub(crate) fn search(&self, key: &[u8]) -> std::result::Result<usize, usize> {
        debug_assert_eq!(self.prefixes.len(), self.entries.len());
        search_prefixed(&self.prefixes, |i| self.entries.get(i).map(|e| &e.key[..]), key)
    }
    /// Inserts `entry` at `i`.
    pub(crate) fn insert(&mut self, i: usize, entry: LeafEntry) {
        crate::crypto::wipe::reserve_wiping(&mut self.prefixes, 1);
        self.prefixes.insert(i, key_prefix(&entry.key));
        self.entries.insert(i, entry);
    }
    /// Removes and returns entry `i`, or `None` past the end.
    pub(crate) fn remove(&mut self, i: usize) -> Option<LeafEntry> {
        if i >= self.entries.len() {
            return None;
        }
        self.prefixes.remove(i);
        Some(self.entries.remove(i))
    }
    /// Moves every entry of `right` (the right sibling) to the end of this leaf.
    pub(crate) fn append(&mut self, right: &mut Leaf) {
        crate::crypto::wipe::reserve_wiping(&mut self.prefixes, right.prefixes.len());
        self.prefixes.append(&mut right.prefixes);
        self.entries.append(&mut right.entries);
    }
    /// Removes the first `n` entries (all, if fewer) and returns them as a leaf.
    pub(crate) fn split_front(&mut self, n: usize) -> Leaf {
        let n = n.min(self.entries.len());
        let rest = Leaf {
            entries: self.entries.split_off(n),
            prefixes: self.prefixes.split_off(n.min(self.prefixes.len())),
            tail: [0; 6],
        };
        // The front goes out in this leaf's buffers; the rest, in new ones, stays.
        std::mem::replace(self, rest)
    }
    /// Splits off an upper part so that both halves fit (the split point minimises the larger
    /// half); returns the right half. Needs at least two entries.
    pub(crate) fn split(&mut self) -> Leaf {
        let sizes: Vec<usize> = self.entries.iter().map(|e| e.size()).collect();
        let total: usize = sizes.iter().sum();
        let (mut best, mut best_max, mut left) = (1, usize::MAX, 0);
        for (i, s) in sizes.iter().enumerate().take(sizes.len().saturating_sub(1)) {
            left += s;
            let m = left.max(total - left);
            if m < best_max {
                best_max = m;
                best = i + 1;
            }
        }
        let at = best.min(self.entries.len());
        Leaf {
            entries: self.entries.split_off(at),
            prefixes: self.prefixes.split_off(at.min(self.prefixes.len())),
            tail: [0; 6],
        }
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
                write_header(out, PageKind::Leaf, l.entries.len() as u16, generation);
                let mut pos = PAGE_HEADER_SIZE + SLOT * l.entries.len();
                for (i, e) in l.entries.iter().enumerate() {
                    put_u16(out, PAGE_HEADER_SIZE + SLOT * i, pos as u16);
                    put_u16(out, pos, e.key.len() as u16);
                    match &e.value {
                        Value::Inline(v) => {
                            out[pos + 2] = 0;
                            put_u32(out, pos + 3, v.len() as u32);
                            pos += LEAF_ENTRY_HEADER;
                            out[pos..pos + e.key.len()].copy_from_slice(&e.key);
                            pos += e.key.len();
                            out[pos..pos + v.len()].copy_from_slice(v);
                            pos += v.len();
                        }
                        Value::Overflow { first, len } => {
                            out[pos + 2] = 1;
                            put_u32(out, pos + 3, OVERFLOW_REF_SIZE as u32);
                            pos += LEAF_ENTRY_HEADER;
                            out[pos..pos + e.key.len()].copy_from_slice(&e.key);
                            pos += e.key.len();
                            first.encode(&mut out[pos..]);
                            put_u64(out, pos + PAGE_REF_SIZE, *len);
                            pos += OVERFLOW_REF_SIZE;
                        }
                    }
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
        if raw.is_leaf() {
            let n = raw.len();
            let mut entries = Vec::with_capacity(n);
            for i in 0..n {
                let (k, v) = raw.leaf_entry(i)?;
                entries.push(LeafEntry::new(k.to_vec(), v.to_owned_value()));
            }
            Ok(Node::Leaf(Leaf::new(entries)))
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
            Ok(Node::Branch(b))
        }
    }
}

#[cfg(test)]
mod debug_tests {
    use super::{Branch, LeafEntry, Value};

    #[test]
    fn debug_shows_lengths_not_bytes() {
        let e = LeafEntry::new(b"secret-key".to_vec(), Value::Inline(b"secret-value".to_vec()));
        let b = Branch::new(vec![b"secret-sep".to_vec()], Vec::new());
        let shown = format!("{e:?} {b:?}");
        assert!(!shown.contains("secret") && !shown.contains("115, 101, 99"), "{shown}");
        assert!(shown.contains("key_len: 10") && shown.contains("Inline(len=12)"), "{shown}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(n: usize, vlen: usize) -> Leaf {
        Leaf::new(
            (0..n)
                .map(|i| LeafEntry::new(format!("key{i:05}").into_bytes(), Value::Inline(vec![i as u8; vlen])))
                .collect(),
        )
    }

    #[test]
    fn leaf_round_trip_and_search() {
        let l = leaf(30, 100);
        let mut buf = vec![0u8; PAYLOAD_SIZE];
        Node::Leaf(l.clone()).encode(7, &mut buf).unwrap();
        let raw = RawNode::new(&buf, 9).unwrap();
        assert_eq!(raw.len(), 30);
        assert_eq!(raw.leaf_search(b"key00010").unwrap(), Ok(10));
        assert_eq!(raw.leaf_search(b"key00010x").unwrap(), Err(11));
        let Node::Leaf(d) = Node::decode(&buf, 9).unwrap() else { panic!() };
        assert_eq!(d.entries.len(), 30);
        assert_eq!(d.entries[3].key, l.entries[3].key);
    }

    #[test]
    fn split_halves_fit() {
        let mut l = leaf(40, 1800);
        let r = l.split();
        assert!(!l.entries.is_empty() && !r.entries.is_empty());
        let mut b = Branch::new((0..200).map(|i| vec![i as u8; 1000]).collect(), vec![PageRef::NONE; 201]);
        let (sep, rb) = b.split();
        assert_eq!(b.children.len(), b.key_count() + 1);
        assert_eq!(rb.children.len(), rb.key_count() + 1);
        // The prefixes moved with their keys: every key routes to the child it separates.
        for (half, lo) in [(&b, 0usize), (&rb, b.key_count() + 1)] {
            assert_eq!(half.prefixes.len(), half.key_count());
            for (i, k) in half.keys().enumerate() {
                assert_eq!(half.child_index(k), i + 1, "key {} of the half from {lo}", i);
            }
        }
        assert_eq!(b.child_index(&sep), b.key_count());
    }

    /// The key buffer of a branch against a list of keys: inserts, removals, splits and merges,
    /// each followed by the checks that keys, prefixes, size and the page encoding agree.
    fn branch_model(ops: &[(u8, u16, Vec<u8>)]) {
        let mut b = Branch::new(Vec::new(), vec![PageRef::NONE]);
        let mut model: Vec<Vec<u8>> = Vec::new();
        for (op, at, key) in ops {
            let n = model.len();
            match op % 4 {
                0 | 1 => {
                    let i = *at as usize % (n + 1);
                    b.insert_key(i, key.clone());
                    b.children.insert(i + 1, PageRef::NONE);
                    model.insert(i, key.clone());
                }
                2 if n > 0 => {
                    let i = *at as usize % n;
                    assert_eq!(b.remove_key(i), Some(model.remove(i)));
                    b.children.remove(i + 1);
                }
                3 if n >= 2 => {
                    let (sep, mut right) = b.split();
                    let (l, r) = (b.key_count(), right.key_count());
                    assert_eq!(l + 1 + r, n);
                    assert_eq!(sep, model[l]);
                    assert!(right.keys().eq(model[l + 1..].iter().map(Vec::as_slice)));
                    b.merge(sep, &mut right);
                }
                _ => {}
            }
            assert!(b.keys().eq(model.iter().map(Vec::as_slice)), "keys");
            assert_eq!((b.prefixes.len(), b.children.len()), (model.len(), model.len() + 1));
            for (i, k) in model.iter().enumerate() {
                assert_eq!(b.prefixes[i], key_prefix(k));
                assert_eq!(b.key(i), Some(&k[..]));
            }
            assert_eq!(b.key(model.len()), None);
            let size = PAGE_HEADER_SIZE + (model.len() + 1) * PAGE_REF_SIZE;
            assert_eq!(b.size(), size + model.iter().map(|k| SLOT + 2 + k.len()).sum::<usize>());
            if b.size() <= PAYLOAD_SIZE {
                let mut buf = vec![0u8; PAYLOAD_SIZE];
                Node::Branch(b.clone()).encode(3, &mut buf).unwrap();
                let Node::Branch(d) = Node::decode(&buf, 9).unwrap() else { panic!("kind") };
                assert!(d.keys().eq(b.keys()) && d.prefixes == b.prefixes && d.size() == b.size());
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn branch_keys_follow_a_list(
            ops in proptest::collection::vec(
                (0u8..4, 0u16..1000, proptest::collection::vec(0u8..3, 0..12)), 1..80),
        ) {
            branch_model(&ops);
        }
    }
}
