//! On-disk format: byte layouts of the file header, the sealed page and the commit record.
//!
//! Layer: format (beside `crypto`, above `storage`). Pure encoding and decoding; no I/O, no
//! keys. Every field has a named offset constant built from the one before it, and a
//! compile-time check that the layout fits its page. SPEC.md §2–§5 is the authoritative
//! description; `tests/spec_tables.rs` checks these constants against SPEC.md's tables.
//! Everything here decodes untrusted bytes: no panics, no unchecked lengths.

pub mod commit;
pub mod header;
pub mod page;

/// The format version this build writes, and the newest it reads.
pub const FORMAT_VERSION: u16 = 2;
/// Size of every page in the file, header pages included.
pub const PAGE_SIZE: usize = 4096;
/// The first eight bytes of every foldvault file.
pub const MAGIC: [u8; 8] = *b"FOLDVLT\x01";

/// Page numbers of the fixed pages.
pub const HEADER_PAGE_A: u64 = 0;
pub const HEADER_PAGE_B: u64 = 1;
pub const COMMIT_PAGE_A: u64 = 2;
pub const COMMIT_PAGE_B: u64 = 3;
/// The first page that holds tree, overflow or free-list data.
pub const FIRST_DATA_PAGE: u64 = 4;

/// Little-endian field readers over a slice whose length the caller has already checked.
/// They return `None` instead of panicking when a range falls outside the slice.
#[inline]
pub(crate) fn get_u16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
#[inline]
pub(crate) fn get_u32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
#[inline]
pub(crate) fn get_u64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}
#[inline]
pub(crate) fn get_array<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off + N)?.try_into().ok()
}
#[inline]
pub(crate) fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
#[inline]
pub(crate) fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
#[inline]
pub(crate) fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
