//! Checked accessors over an opened leaf or branch page (layouts: `node` and SPEC.md §4).
//!
//! Invariants: every offset and length read from the page is checked against the page, so a
//! damaged page gives `Corrupt { page, BadLayout }`, never a panic or an out-of-range read.
//!
//! A node opened from a cache entry (`RawNode::cached`) searches the entry's key prefixes
//! (`pager::cache::KeyPrefixes`, built here on the page's second search) and reads a key from the
//! page only when prefixes tie: a probe of a cached leaf touches one array instead of an entry
//! scattered in the page. Prefixes are built only when every key of the page can be read, so a
//! damaged page is searched, and reported, exactly as without them.

use super::node::{LEAF_ENTRY_HEADER, OVERFLOW_REF_SIZE, SLOT, Value};
use super::search::{compare_keys, key_prefix, search_prefixed};
use crate::error::{CorruptReason, Error, PageNo, Result};
use crate::format::page::{PAGE_HEADER_SIZE, PAGE_REF_SIZE, PAYLOAD_SIZE, PageKind, PageRef, count};
use crate::format::{get_u16, get_u32, get_u64};
use crate::pager::cache::{CachedPage, KeyPrefixes, MAX_PREFIXES};

/// A value as read from a raw leaf, borrowing the page.
pub(crate) enum RawValue<'a> {
    Inline(&'a [u8]),
    Overflow { first: PageRef, len: u64 },
}

impl RawValue<'_> {
    pub(crate) fn to_owned_value(&self) -> Value {
        match self {
            RawValue::Inline(v) => Value::Inline(v.to_vec()),
            RawValue::Overflow { first, len } => Value::Overflow { first: *first, len: *len },
        }
    }
}

/// Checked accessors over an opened leaf or branch payload.
#[derive(Clone, Copy)]
pub(crate) struct RawNode<'a> {
    p: &'a [u8],
    page: PageNo,
    leaf: bool,
    n: usize,
    /// The prefixes of the node's keys, when opened from a cache entry that has them.
    prefixes: Option<&'a [u64]>,
}

impl<'a> RawNode<'a> {
    pub(crate) fn new(p: &'a [u8], page: PageNo) -> Result<RawNode<'a>> {
        let leaf = match p.first().copied().and_then(PageKind::from_byte) {
            Some(PageKind::Leaf) => true,
            Some(PageKind::Branch) => false,
            _ => return Err(Error::corrupt(page, CorruptReason::WrongPageKind)),
        };
        let n = count(p) as usize;
        let fixed =
            if leaf { PAGE_HEADER_SIZE + SLOT * n } else { PAGE_HEADER_SIZE + (n + 1) * PAGE_REF_SIZE + SLOT * n };
        if fixed > PAYLOAD_SIZE.min(p.len()) {
            return Err(Error::corrupt(page, CorruptReason::BadLayout));
        }
        Ok(RawNode { p, page, leaf, n, prefixes: None })
    }

    /// Opens the node a cache entry holds, with its key prefixes (built on its second search).
    pub(crate) fn cached(p: &'a CachedPage, page: PageNo) -> Result<RawNode<'a>> {
        let mut raw = RawNode::new(p.payload(), page)?;
        raw.prefixes = p.key_prefixes(|| raw.all_prefixes());
        Ok(raw)
    }

    /// The prefixes of all keys, or `None` if a key cannot be read or there are too many.
    fn all_prefixes(&self) -> Option<KeyPrefixes> {
        if self.n > MAX_PREFIXES {
            return None;
        }
        let mut out = KeyPrefixes::with_capacity(self.n);
        for i in 0..self.n {
            let k = if self.leaf { self.leaf_key(i) } else { self.branch_key(i) };
            if !out.push(key_prefix(k.ok()?)) {
                return None;
            }
        }
        Some(out)
    }

    pub(crate) fn is_leaf(&self) -> bool {
        self.leaf
    }
    pub(crate) fn len(&self) -> usize {
        self.n
    }
    fn bad(&self) -> Error {
        Error::corrupt(self.page, CorruptReason::BadLayout)
    }
    fn slice(&self, off: usize, len: usize) -> Result<&'a [u8]> {
        let end = off.checked_add(len).ok_or_else(|| self.bad())?;
        if end > PAYLOAD_SIZE {
            return Err(self.bad());
        }
        self.p.get(off..end).ok_or_else(|| self.bad())
    }

    pub(crate) fn leaf_entry(&self, i: usize) -> Result<(&'a [u8], RawValue<'a>)> {
        if !self.leaf || i >= self.n {
            return Err(self.bad());
        }
        let off = get_u16(self.p, PAGE_HEADER_SIZE + SLOT * i).ok_or_else(|| self.bad())? as usize;
        let klen = get_u16(self.p, off).ok_or_else(|| self.bad())? as usize;
        let kind = *self.p.get(off + 2).ok_or_else(|| self.bad())?;
        let vlen = get_u32(self.p, off + 3).ok_or_else(|| self.bad())? as usize;
        let key = self.slice(off + LEAF_ENTRY_HEADER, klen)?;
        let voff = off + LEAF_ENTRY_HEADER + klen;
        let v = match kind {
            0 => RawValue::Inline(self.slice(voff, vlen)?),
            1 => {
                let b = self.slice(voff, OVERFLOW_REF_SIZE)?;
                RawValue::Overflow {
                    first: PageRef::decode(b, 0).ok_or_else(|| self.bad())?,
                    len: get_u64(b, PAGE_REF_SIZE).ok_or_else(|| self.bad())?,
                }
            }
            _ => return Err(self.bad()),
        };
        Ok((key, v))
    }

    /// The key of entry `i` alone (the search path: the value is not decoded).
    pub(crate) fn leaf_key(&self, i: usize) -> Result<&'a [u8]> {
        if !self.leaf || i >= self.n {
            return Err(self.bad());
        }
        let off = get_u16(self.p, PAGE_HEADER_SIZE + SLOT * i).ok_or_else(|| self.bad())? as usize;
        let klen = get_u16(self.p, off).ok_or_else(|| self.bad())? as usize;
        self.slice(off + LEAF_ENTRY_HEADER, klen)
    }

    /// Binary search for `key` among the leaf's entries.
    pub(crate) fn leaf_search(&self, key: &[u8]) -> Result<std::result::Result<usize, usize>> {
        if let Some(prefixes) = self.prefixes.filter(|p| p.len() == self.n && self.leaf) {
            return Ok(search_prefixed(prefixes, |i| self.leaf_key(i).ok(), key));
        }
        let (mut lo, mut hi) = (0usize, self.n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match compare_keys(self.leaf_key(mid)?, key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Ok(mid)),
            }
        }
        Ok(Err(lo))
    }

    pub(crate) fn child(&self, i: usize) -> Result<PageRef> {
        if self.leaf || i > self.n {
            return Err(self.bad());
        }
        PageRef::decode(self.p, PAGE_HEADER_SIZE + i * PAGE_REF_SIZE).ok_or_else(|| self.bad())
    }

    pub(crate) fn branch_key(&self, i: usize) -> Result<&'a [u8]> {
        if self.leaf || i >= self.n {
            return Err(self.bad());
        }
        let slots = PAGE_HEADER_SIZE + (self.n + 1) * PAGE_REF_SIZE;
        let off = get_u16(self.p, slots + SLOT * i).ok_or_else(|| self.bad())? as usize;
        let klen = get_u16(self.p, off).ok_or_else(|| self.bad())? as usize;
        self.slice(off + 2, klen)
    }

    /// Index of the child that holds `key` (number of separator keys `<= key`).
    pub(crate) fn child_index(&self, key: &[u8]) -> Result<usize> {
        if let Some(prefixes) = self.prefixes.filter(|p| p.len() == self.n && !self.leaf) {
            // Just past an equal separator: the child holding keys `>=` it.
            return Ok(search_prefixed(prefixes, |i| self.branch_key(i).ok(), key).map_or_else(|i| i, |i| i + 1));
        }
        let (mut lo, mut hi) = (0usize, self.n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if compare_keys(self.branch_key(mid)?, key).is_le() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btree::node::{Branch, Leaf, LeafEntry, Node};

    /// Keys that tie on their first 8 bytes, are shorter than 8, or end in zero bytes: the cases
    /// where a prefix alone cannot decide.
    fn tricky_keys() -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"\0".to_vec(),
            b"a".to_vec(),
            b"a\0".to_vec(),
            b"abcdefgh".to_vec(),
            b"abcdefgh\0".to_vec(),
            b"abcdefghi".to_vec(),
            b"abcdefgi".to_vec(),
            b"\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
            b"\xff\xff\xff\xff\xff\xff\xff\xff\0".to_vec(),
        ];
        keys.extend((0..40u8).map(|i| format!("atom:0000{i:02}").into_bytes()));
        keys.sort();
        keys.dedup();
        keys
    }

    fn entry_of(node: Node) -> CachedPage {
        let mut e = CachedPage::blank();
        node.encode(1, &mut e.bytes_mut()[..PAYLOAD_SIZE]).expect("fits");
        e
    }

    #[test]
    fn searches_through_cached_prefixes_agree_with_the_page() {
        let keys = tricky_keys();
        let leaf = Leaf::new(keys.iter().map(|k| LeafEntry::new(k.clone(), Value::Inline(vec![7]))).collect());
        let branch = Branch::new(keys.clone(), vec![PageRef::NONE; keys.len() + 1]);
        let (leaf, branch) = (entry_of(Node::Leaf(leaf)), entry_of(Node::Branch(branch)));
        let mut probes = keys.clone();
        probes.extend(keys.iter().map(|k| [&k[..], b"\0"].concat()));
        probes.extend(keys.iter().filter(|k| !k.is_empty()).map(|k| k[..k.len() - 1].to_vec()));
        for (entry, is_leaf) in [(&leaf, true), (&branch, false)] {
            let plain = RawNode::new(entry.payload(), 4).unwrap();
            assert!(RawNode::cached(entry, 4).unwrap().prefixes.is_none(), "not on the first search");
            let cached = RawNode::cached(entry, 4).unwrap();
            assert_eq!(cached.prefixes.map(<[u64]>::len), Some(keys.len()), "built on the second");
            for p in &probes {
                if is_leaf {
                    assert_eq!(cached.leaf_search(p).unwrap(), plain.leaf_search(p).unwrap(), "{p:?}");
                    assert_eq!(cached.leaf_search(p).unwrap(), keys.binary_search(p), "{p:?}");
                } else {
                    assert_eq!(cached.child_index(p).unwrap(), plain.child_index(p).unwrap(), "{p:?}");
                    assert_eq!(cached.child_index(p).unwrap(), keys.partition_point(|k| k <= p), "{p:?}");
                }
            }
        }
    }

    #[test]
    fn a_page_whose_keys_cannot_all_be_read_gets_no_prefixes() {
        let keys = tricky_keys();
        let leaf = Leaf::new(keys.iter().map(|k| LeafEntry::new(k.clone(), Value::Inline(vec![7]))).collect());
        let mut e = entry_of(Node::Leaf(leaf));
        // Point the last slot past the page: that key cannot be read.
        let slot = PAGE_HEADER_SIZE + SLOT * (keys.len() - 1);
        e.bytes_mut()[slot..slot + 2].copy_from_slice(&0xFFF0u16.to_le_bytes());
        let _first = RawNode::cached(&e, 4).unwrap();
        let cached = RawNode::cached(&e, 4).unwrap();
        assert!(cached.prefixes.is_none());
        assert!(cached.leaf_search(keys.last().unwrap()).is_err(), "reported as the page search reports it");
    }

    #[test]
    fn garbage_pages_give_errors_not_panics() {
        let mut buf = vec![0xFFu8; PAYLOAD_SIZE];
        buf[0] = 2;
        let raw = RawNode::new(&buf, 1);
        assert!(raw.is_err() || raw.unwrap().leaf_entry(0).is_err());
        buf[2] = 1;
        buf[3] = 0;
        let raw = RawNode::new(&buf, 1).unwrap();
        assert!(raw.leaf_entry(0).is_err());
    }
}
