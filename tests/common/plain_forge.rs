//! Editing a plaintext database file page by page, as an attacker can: a plaintext page is
//! checked by a CRC32 anyone can recompute (SPEC §3), so an edited page is resealed and the
//! references to it (its parent's tag, up to the commit records) are fixed to match.

#![allow(dead_code)]

use std::os::unix::fs::FileExt;
use std::path::Path;

use foldvault::format::commit::CommitRecord;
use foldvault::format::header::{FILE_ID_OFFSET, VERSION_OFFSET};
use foldvault::format::page::{
    EPOCH_OFFSET, NONCE_OFFSET, PAGE_REF_SIZE, PAYLOAD_SIZE, PageRef, SealTag, TAG_OFFSET, aad, generation,
};

pub const PAGE: u64 = 4096;

pub fn read_page(path: &Path, p: u64) -> Vec<u8> {
    let mut b = vec![0u8; PAGE as usize];
    std::fs::File::open(path).unwrap().read_exact_at(&mut b, p * PAGE).unwrap();
    b
}

pub fn write_page(path: &Path, p: u64, b: &[u8]) {
    std::fs::OpenOptions::new().write(true).open(path).unwrap().write_all_at(b, p * PAGE).unwrap();
}

/// The file's identity and format version, as the page seals bind them.
pub fn identity(path: &Path) -> ([u8; 16], u16) {
    let header = read_page(path, 0);
    let file_id = header[FILE_ID_OFFSET..FILE_ID_OFFSET + 16].try_into().unwrap();
    (file_id, u16::from_le_bytes([header[VERSION_OFFSET], header[VERSION_OFFSET + 1]]))
}

/// Seals a plaintext page in place as the engine does (CRC32 over the associated data, the
/// nonce and the payload), keeping the page's nonce and epoch; returns its tag.
pub fn reseal_plain(page: &mut [u8], page_no: u64, file_id: &[u8; 16], version: u16) -> SealTag {
    let epoch = u32::from_le_bytes(page[EPOCH_OFFSET..EPOCH_OFFSET + 4].try_into().unwrap());
    let mut h = crc32fast::Hasher::new();
    h.update(&aad(file_id, page_no, epoch, version));
    h.update(&page[NONCE_OFFSET..NONCE_OFFSET + 12]);
    h.update(&page[..PAYLOAD_SIZE]);
    let mut tag = [0u8; 16];
    tag[..4].copy_from_slice(&h.finalize().to_le_bytes());
    page[TAG_OFFSET..TAG_OFFSET + 16].copy_from_slice(&tag);
    SealTag(tag)
}

/// The reference a parent holds to page `p` as it is on disk.
pub fn ref_of(path: &Path, p: u64) -> PageRef {
    let b = read_page(path, p);
    PageRef { page: p, tag: SealTag(b[TAG_OFFSET..TAG_OFFSET + 16].try_into().unwrap()), generation: generation(&b) }
}

fn encoded(r: PageRef) -> Vec<u8> {
    let mut b = vec![0u8; PAGE_REF_SIZE];
    r.encode(&mut b);
    b
}

/// Edits page `p` of the closed plaintext file at `path` with `edit`, reseals it, and fixes the
/// reference to it in `parents[0]` (a page holding that reference once), and on up through
/// the rest of `parents` (each the parent of the one before), and last in the commit records.
pub fn edit_page(path: &Path, p: u64, parents: &[u64], edit: impl FnOnce(&mut [u8])) {
    let (file_id, version) = identity(path);
    let mut old = ref_of(path, p);
    let mut page = read_page(path, p);
    edit(&mut page[..PAYLOAD_SIZE]);
    let mut new = PageRef { tag: reseal_plain(&mut page, p, &file_id, version), ..old };
    write_page(path, p, &page);
    for &parent in parents {
        let mut b = read_page(path, parent);
        let (from, to) = (encoded(old), encoded(new));
        let at =
            b[..PAYLOAD_SIZE].windows(PAGE_REF_SIZE).position(|w| w == from).expect("the parent holds the reference");
        b[at..at + PAGE_REF_SIZE].copy_from_slice(&to);
        old = ref_of(path, parent);
        new = PageRef { tag: reseal_plain(&mut b, parent, &file_id, version), ..old };
        write_page(path, parent, &b);
    }
    let edited = edit_commits(path, |rec| {
        if encoded(rec.catalog) == encoded(old) {
            rec.catalog = new;
        }
    });
    assert!(edited >= 1, "no commit record decodes: the edit of page {p} was not carried up to one");
}

/// Rewrites each commit record that decodes with `edit`, resealed; returns how many slots it
/// rewrote. A slot whose record does not decode is left as it is (never written: slot B of a
/// new file), so a caller asserts the count: with none, nothing was forged and a test of the
/// forgery passed on the file as it was.
#[must_use = "assert that a commit record was edited"]
pub fn edit_commits(path: &Path, mut edit: impl FnMut(&mut CommitRecord)) -> usize {
    let (file_id, version) = identity(path);
    let mut edited = 0;
    for slot in [2u64, 3] {
        let mut b = read_page(path, slot);
        let Ok(mut rec) = CommitRecord::decode(&b[..PAYLOAD_SIZE], slot, version) else { continue };
        edit(&mut rec);
        rec.encode(&mut b[..PAYLOAD_SIZE]);
        reseal_plain(&mut b, slot, &file_id, version);
        write_page(path, slot, &b);
        edited += 1;
    }
    edited
}

/// Sets nonce bytes 0..4 of the plaintext page `page` (page number `page_no`) so that its CRC32
/// seal is `want`, whatever the payload holds: a page can then name itself with its own tag.
/// CRC32 is affine in its input bits, so the 32 nonce bits that give `want` solve a linear
/// system over GF(2).
pub fn force_crc(page: &mut [u8], page_no: u64, file_id: &[u8; 16], version: u16, want: u32) {
    let crc = |p: &mut [u8]| {
        let tag = reseal_plain(p, page_no, file_id, version);
        u32::from_le_bytes(tag.0[..4].try_into().unwrap())
    };
    page[NONCE_OFFSET..NONCE_OFFSET + 4].fill(0);
    let base = crc(page);
    // Column i: what nonce bit i adds to the CRC.
    let cols: Vec<u32> = (0..32)
        .map(|i| {
            page[NONCE_OFFSET + i / 8] ^= 1 << (i % 8);
            let c = crc(page) ^ base;
            page[NONCE_OFFSET + i / 8] ^= 1 << (i % 8);
            c
        })
        .collect();
    // Gaussian elimination: rows are (column value, the nonce bits that make it).
    let mut rows: Vec<(u32, u32)> = cols.iter().enumerate().map(|(i, &c)| (c, 1u32 << i)).collect();
    let mut basis: Vec<(u32, u32)> = Vec::new();
    for bit in (0..32).rev() {
        let Some(at) = rows.iter().position(|(c, _)| c >> bit & 1 == 1) else { continue };
        let pivot = rows.swap_remove(at);
        for r in rows.iter_mut().chain(basis.iter_mut()) {
            if r.0 >> bit & 1 == 1 {
                r.0 ^= pivot.0;
                r.1 ^= pivot.1;
            }
        }
        basis.push(pivot);
    }
    assert_eq!(basis.len(), 32, "the nonce bits reach every CRC value");
    let (mut need, mut bits) = (want ^ base, 0u32);
    for &(c, b) in &basis {
        let top = 31 - c.leading_zeros();
        if need >> top & 1 == 1 {
            need ^= c;
            bits ^= b;
        }
    }
    assert_eq!(need, 0);
    page[NONCE_OFFSET..NONCE_OFFSET + 4].copy_from_slice(&bits.to_le_bytes());
    assert_eq!(crc(page), want);
}
