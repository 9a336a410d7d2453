//! Checked accessors over an opened leaf or branch page (layouts: `node` and SPEC.md §4).
//!
//! Invariants: every offset and length read from the page is checked against the page, so a
//! damaged page gives `Corrupt { page, BadLayout }`, never a panic or an out-of-range read.

use super::node::{LEAF_ENTRY_HEADER, OVERFLOW_REF_SIZE, SLOT, Value};
use super::search::compare_keys;
use crate::error::{CorruptReason, Error, PageNo, Result};
use crate::format::page::{PAGE_HEADER_SIZE, PAGE_REF_SIZE, PAYLOAD_SIZE, PageKind, PageRef, count};
use crate::format::{get_u16, get_u32, get_u64};

/// A value as read from a raw leaf, borrowing the page (or a decoded leaf's buffer).
#[derive(Clone, Copy)]
pub(crate) enum RawValue<'a> {
    Inline(&'a [u8]),
    Overflow { first: PageRef, len: u64 },
}

impl<'a> RawValue<'a> {
    /// An inline value's bytes; none for an overflow value (a leaf holds only its reference).
    pub(crate) fn inline_bytes(self) -> &'a [u8] {
        match self {
            RawValue::Inline(v) => v,
            RawValue::Overflow { .. } => &[],
        }
    }

    pub(crate) fn is_overflow(&self) -> bool {
        matches!(self, RawValue::Overflow { .. })
    }

    pub(crate) fn to_owned_value(self) -> Value {
        match self {
            RawValue::Inline(v) => Value::Inline(v.to_vec()),
            RawValue::Overflow { first, len } => Value::Overflow { first, len },
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
        Ok(RawNode { p, page, leaf, n })
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

    /// Child `i`: always a data page (a reference to page 0, "none", or to a header or commit
    /// page is damage, not an empty subtree).
    pub(crate) fn child(&self, i: usize) -> Result<PageRef> {
        let c = self.child_as_stored(i)?;
        // Nor one that reads as a transaction's own (`PageRef::decode_committed`).
        if c.page < crate::format::FIRST_DATA_PAGE || c.is_dirty() {
            return Err(self.bad());
        }
        Ok(c)
    }

    /// Child `i` as the page stores it, whatever page it names (for `pagedump`, which shows
    /// damage rather than stop at it).
    pub(crate) fn child_as_stored(&self, i: usize) -> Result<PageRef> {
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

    /// The bytes the node takes encoded (`Node::size` of its decoded form), read from the
    /// page's entry headers without decoding it.
    pub(crate) fn encoded_size(&self) -> Result<usize> {
        let mut size = PAGE_HEADER_SIZE;
        if self.leaf {
            for i in 0..self.n {
                size += self.entry_size(i)?.0;
            }
        } else {
            size += (self.n + 1) * PAGE_REF_SIZE;
            for i in 0..self.n {
                size += SLOT + 2 + self.branch_key(i)?.len();
            }
        }
        Ok(size)
    }

    /// The bytes leaf entry `i` takes encoded (`Leaf::entry_size`, its slot included) and its
    /// key's length, read from the entry's header.
    pub(crate) fn entry_size(&self, i: usize) -> Result<(usize, usize)> {
        if !self.leaf || i >= self.n {
            return Err(self.bad());
        }
        let off = get_u16(self.p, PAGE_HEADER_SIZE + SLOT * i).ok_or_else(|| self.bad())? as usize;
        let klen = get_u16(self.p, off).ok_or_else(|| self.bad())? as usize;
        // As `leaf_entry` reads it: an overflow reference is always its fixed size.
        let vlen = match self.p.get(off + 2) {
            Some(0) => get_u32(self.p, off + 3).ok_or_else(|| self.bad())? as usize,
            Some(1) => OVERFLOW_REF_SIZE,
            _ => return Err(self.bad()),
        };
        Ok((SLOT + LEAF_ENTRY_HEADER + klen + vlen, klen))
    }

    /// Index of the child that holds `key` (number of separator keys `<= key`).
    pub(crate) fn child_index(&self, key: &[u8]) -> Result<usize> {
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
