//! The durable free list: a chain of sealed pages of extents. SPEC.md §7.
//!
//! ```text
//! payload: common header (kind = 4, count = extents in this page, generation)
//!          16  next PageRef (page u64, tag 16)    -- NONE (page 0) ends the chain
//!          40  extents: count × (first page u64, length u32)
//! ```
//! The chain is written from its tail to its head so each page can hold its successor's tag;
//! the commit record holds the head's. It is rewritten at each durable commit; its own pages
//! are taken from the free set (iterating until the set and the page count agree).

use super::Pager;
use super::alloc::Allocator;
use crate::crypto::seal::PageBuf;
use crate::error::{CorruptReason, Error, PageNo, Result};
use crate::format::page::{PAGE_HEADER_SIZE, PAGE_REF_SIZE, PAYLOAD_SIZE, PageKind, PageRef, count, write_header};
use crate::format::{FIRST_DATA_PAGE, PAGE_SIZE, get_u32, get_u64, put_u32, put_u64};

pub const NEXT_OFFSET: usize = PAGE_HEADER_SIZE;
pub const EXTENTS_OFFSET: usize = NEXT_OFFSET + PAGE_REF_SIZE;
pub const EXTENT_SIZE: usize = 12;
pub const EXTENTS_PER_PAGE: usize = (PAYLOAD_SIZE - EXTENTS_OFFSET) / EXTENT_SIZE;

/// Run-length encodes a sorted, deduplicated list of pages.
pub(crate) fn extents(sorted: &[PageNo]) -> Vec<(PageNo, u32)> {
    let mut out: Vec<(PageNo, u32)> = Vec::new();
    for &p in sorted {
        match out.last_mut() {
            Some((start, len)) if *start + *len as u64 == p && *len < u32::MAX => *len += 1,
            _ => out.push((p, 1)),
        }
    }
    out
}

/// Writes the free list for commit `seq` and returns its head and its pages.
pub(crate) fn write(pager: &Pager, alloc: &mut Allocator, seq: u64, epoch: u32) -> Result<(PageRef, Vec<PageNo>)> {
    let mut taken: Vec<PageNo> = Vec::new();
    let runs = loop {
        let runs = extents(&alloc.all_unused());
        let need = runs.len().div_ceil(EXTENTS_PER_PAGE);
        if taken.len() >= need {
            break runs;
        }
        taken.push(alloc.alloc());
    };
    if taken.is_empty() {
        return Ok((PageRef::NONE, taken));
    }
    let chunks: Vec<&[(PageNo, u32)]> = runs.chunks(EXTENTS_PER_PAGE).collect();
    let mut next = PageRef::NONE;
    for (i, &page) in taken.iter().enumerate().rev() {
        let chunk: &[(PageNo, u32)] = chunks.get(i).copied().unwrap_or(&[]);
        let mut buf: Box<PageBuf> = Box::new([0u8; PAGE_SIZE]);
        write_header(&mut buf[..], PageKind::FreeList, chunk.len() as u16, seq);
        next.encode(&mut buf[NEXT_OFFSET..]);
        for (j, (start, len)) in chunk.iter().enumerate() {
            let off = EXTENTS_OFFSET + j * EXTENT_SIZE;
            put_u64(&mut buf[..], off, *start);
            put_u32(&mut buf[..], off + 8, *len);
        }
        let tag = pager.write(page, epoch, buf)?;
        next = PageRef { page, tag, generation: seq };
    }
    Ok((next, taken))
}

/// Reads the free list from `head`: the free pages and the chain's own pages. Every check
/// that a damaged file could fail is a `Corrupt` error; allocation is bounded by `page_count`.
pub(crate) fn read(pager: &Pager, head: PageRef, page_count: u64) -> Result<(Vec<PageNo>, Vec<PageNo>)> {
    let mut free = Vec::new();
    let mut chain = Vec::new();
    let mut at = head;
    while !at.is_none() {
        if chain.len() as u64 >= page_count {
            return Err(Error::corrupt(at.page, CorruptReason::FreeList));
        }
        let p = pager.read(at, Some(PageKind::FreeList))?;
        let payload = p.payload();
        let n = count(payload) as usize;
        if n > EXTENTS_PER_PAGE {
            return Err(Error::corrupt(at.page, CorruptReason::BadLayout));
        }
        for j in 0..n {
            let off = EXTENTS_OFFSET + j * EXTENT_SIZE;
            let bad = || Error::corrupt(at.page, CorruptReason::FreeList);
            let start = get_u64(payload, off).ok_or_else(bad)?;
            let len = get_u32(payload, off + 8).ok_or_else(bad)? as u64;
            let end = start.checked_add(len).ok_or_else(bad)?;
            if start < FIRST_DATA_PAGE || end > page_count || len == 0 || free.len() as u64 + len > page_count {
                return Err(bad());
            }
            free.extend(start..end);
        }
        chain.push(at.page);
        at = PageRef::decode(payload, NEXT_OFFSET).ok_or_else(|| Error::corrupt(at.page, CorruptReason::BadLayout))?;
    }
    Ok((free, chain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_merge_runs() {
        assert_eq!(extents(&[4, 5, 6, 9, 11, 12]), vec![(4, 3), (9, 1), (11, 2)]);
        assert!(extents(&[]).is_empty());
    }
}
