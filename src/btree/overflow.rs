//! Overflow chains: values too large for a leaf. SPEC.md §4.3.
//!
//! ```text
//! payload: common header (kind = 3, count = 0, generation)
//!          16  next PageRef (NONE on the last page)
//!          48  chunk length u32
//!          52  chunk bytes (at most OVERFLOW_CHUNK)
//! ```
//! Written from the last chunk to the first so each page holds its successor's seal tag; the
//! leaf holds the first page's. Every chunk but the last is full. Reading checks every tag,
//! every chunk length, and that the chain holds exactly the length the leaf states (no more
//! pages, no fewer bytes); a chain longer than the file has pages is damaged, so a loop in a
//! damaged chain ends there whatever length its leaf states.

use super::tx::TxPages;
use crate::crypto::wipe::{extend_wiping, wipe_vec};
use crate::error::{CorruptReason, Error, PageNo, Result};
use crate::format::page::{PAGE_HEADER_SIZE, PAGE_REF_SIZE, PAYLOAD_SIZE, PageKind, PageRef, write_header};
use crate::format::{PAGE_SIZE, get_u32, put_u32};
use crate::pager::Pager;

pub const NEXT_OFFSET: usize = PAGE_HEADER_SIZE;
pub const CHUNK_LEN_OFFSET: usize = NEXT_OFFSET + PAGE_REF_SIZE;
pub const CHUNK_OFFSET: usize = CHUNK_LEN_OFFSET + 4;
pub const OVERFLOW_CHUNK: usize = PAYLOAD_SIZE - CHUNK_OFFSET;

/// Writes `value` as a chain of new pages; returns the first page's reference.
pub(crate) fn write(tx: &mut TxPages, value: &[u8]) -> Result<PageRef> {
    let n = value.len().div_ceil(OVERFLOW_CHUNK).max(1);
    let pages: Vec<PageNo> = (0..n).map(|_| tx.alloc_page()).collect();
    let mut next = PageRef::NONE;
    for i in (0..n).rev() {
        let chunk = &value[i * OVERFLOW_CHUNK..((i + 1) * OVERFLOW_CHUNK).min(value.len())];
        next = write_page(tx, pages[i], next, chunk)?;
    }
    Ok(next)
}

/// Seals one page of a chain holding `chunk` (at most `OVERFLOW_CHUNK` bytes) and its
/// successor's reference; returns its own.
fn write_page(tx: &mut TxPages, page: PageNo, next: PageRef, chunk: &[u8]) -> Result<PageRef> {
    let mut buf = Box::new([0u8; PAGE_SIZE]);
    write_header(&mut buf[..], PageKind::Overflow, 0, tx.seq);
    next.encode(&mut buf[NEXT_OFFSET..]);
    put_u32(&mut buf[..], CHUNK_LEN_OFFSET, chunk.len() as u32);
    buf[CHUNK_OFFSET..CHUNK_OFFSET + chunk.len()].copy_from_slice(chunk);
    let tag = tx.pager.write(page, tx.epoch, buf)?;
    Ok(PageRef { page, tag, generation: tx.seq })
}

/// Visits each page of the chain in order: `f(page, chunk)`; checks the total length.
pub(crate) fn walk(
    pager: &Pager,
    first: PageRef,
    len: u64,
    mut f: impl FnMut(PageNo, &[u8]) -> Result<()>,
) -> Result<()> {
    walk_refs(pager, first, len, |at, chunk| f(at.page, chunk))
}

/// `walk`, handing `f` each page's whole reference (the tag that opened it).
fn walk_refs(pager: &Pager, first: PageRef, len: u64, mut f: impl FnMut(PageRef, &[u8]) -> Result<()>) -> Result<()> {
    // No value is longer (SPEC §4.3): a chain that holds more is damaged, whatever it holds.
    if len > crate::MAX_VALUE_LEN {
        return Err(Error::corrupt(first.page, CorruptReason::OverflowLength));
    }
    let max_pages = len.div_ceil(OVERFLOW_CHUNK as u64).max(1).min(pager.page_limit());
    let mut at = first;
    let mut seen = 0u64;
    let mut pages = 0u64;
    while !at.is_none() {
        pages += 1;
        if pages > max_pages {
            return Err(Error::corrupt(at.page, CorruptReason::OverflowLength));
        }
        let p = pager.read(at, Some(PageKind::Overflow))?;
        let payload = p.payload();
        let bad = || Error::corrupt(at.page, CorruptReason::BadLayout);
        let clen = get_u32(payload, CHUNK_LEN_OFFSET).ok_or_else(bad)? as usize;
        if clen > OVERFLOW_CHUNK {
            return Err(bad());
        }
        let chunk = payload.get(CHUNK_OFFSET..CHUNK_OFFSET + clen).ok_or_else(bad)?;
        seen += clen as u64;
        if seen > len {
            return Err(Error::corrupt(at.page, CorruptReason::OverflowLength));
        }
        f(at, chunk)?;
        let next = PageRef::decode(payload, NEXT_OFFSET).ok_or_else(bad)?;
        if !next.is_none() && clen != OVERFLOW_CHUNK {
            // The writer fills every chunk but the last.
            return Err(Error::corrupt(at.page, CorruptReason::OverflowLength));
        }
        at = next;
    }
    if seen != len {
        return Err(Error::corrupt(first.page, CorruptReason::OverflowLength));
    }
    Ok(())
}

/// Reads a whole value. The allocation is bounded by what the file can hold.
pub(crate) fn read(pager: &Pager, first: PageRef, len: u64) -> Result<Vec<u8>> {
    read_visiting(pager, first, len, |_| Ok(()))
}

/// `read`, calling `visit` with each page of the chain before its chunk is taken; an error
/// from `visit` ends the read with it (salvage records the pages it reached). The value
/// grows as its chunks authenticate, its old buffers wiped, and is wiped on failure.
pub(crate) fn read_visiting(
    pager: &Pager,
    first: PageRef,
    len: u64,
    mut visit: impl FnMut(PageNo) -> Result<()>,
) -> Result<Vec<u8>> {
    let limit = pager.page_limit().saturating_mul(OVERFLOW_CHUNK as u64);
    if len > limit {
        return Err(Error::corrupt(first.page, CorruptReason::OverflowLength));
    }
    let mut out = Vec::with_capacity(len.min(64 << 20) as usize);
    let walked = walk(pager, first, len, |page, chunk| {
        visit(page)?;
        extend_wiping(&mut out, chunk, usize::try_from(len).unwrap_or(usize::MAX));
        Ok(())
    });
    if let Err(e) = walked {
        wipe_vec(&mut out);
        return Err(e);
    }
    Ok(out)
}

/// The references of a chain's pages, first to last (each checked as `walk` checks it).
pub(crate) fn refs(pager: &Pager, first: PageRef, len: u64) -> Result<Vec<PageRef>> {
    let mut v = Vec::new();
    walk_refs(pager, first, len, |at, _| {
        v.push(at);
        Ok(())
    })?;
    Ok(v)
}

/// Writes a copy of the chain whose pages are `refs` (as `refs` found them, for a value of
/// `len` bytes) to new pages; returns the copy's first reference. The value is never whole in
/// memory (compaction and rekey copy values of up to `MAX_VALUE_LEN`): the copy is written
/// from its last page to its first, as `write` writes, each old page opened again by the
/// reference the first walk found (its tag checked again, so a page changed since cannot
/// pass), one page in clear at a time.
pub(crate) fn copy(tx: &mut TxPages, refs: &[PageRef], len: u64) -> Result<PageRef> {
    let pages: Vec<PageNo> = refs.iter().map(|_| tx.alloc_page()).collect();
    let mut next = PageRef::NONE;
    for (i, (&old, &page)) in refs.iter().zip(&pages).enumerate().rev() {
        // Every chunk but the last is full (as `walk` checked).
        let want = len.saturating_sub(i as u64 * OVERFLOW_CHUNK as u64).min(OVERFLOW_CHUNK as u64) as usize;
        let p = tx.pager.read(old, Some(PageKind::Overflow))?;
        let chunk = p
            .payload()
            .get(CHUNK_OFFSET..CHUNK_OFFSET + want)
            .filter(|_| get_u32(p.payload(), CHUNK_LEN_OFFSET) == Some(want as u32))
            .ok_or_else(|| Error::corrupt(old.page, CorruptReason::OverflowLength))?;
        next = write_page(tx, page, next, chunk)?;
    }
    Ok(next)
}

/// The pages of a chain (to free them).
pub(crate) fn pages(pager: &Pager, first: PageRef, len: u64) -> Result<Vec<PageNo>> {
    let mut v = Vec::new();
    walk(pager, first, len, |p, _| {
        v.push(p);
        Ok(())
    })?;
    Ok(v)
}
