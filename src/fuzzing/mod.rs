//! Fuzz targets. Each is a `run(data: &[u8])` that must return normally for every input: a
//! panic is a bug, either in the library or in an invariant the target checks. cargo-fuzz runs
//! them from `fuzz/fuzz_targets/` (thin wrappers); `tests/fuzz_corpus.rs` runs them over the
//! checked-in corpus (`fuzz/corpus/<target>/seed-*`) and over pseudo-random inputs, so a plain
//! `cargo test` catches regressions without libFuzzer.
//!
//! Doc-hidden and not part of the API: the targets reach crate-private decoders directly.
//!
//! | target | what it feeds with fuzz input |
//! |--------|-------------------------------|
//! | [`open_page`] | one page to every page decoder; a few pages to the tree, overflow and free-list readers |
//! | [`db_ops`] | operations on three trees over a `FaultyStorage`, with crashes and I/O errors, against a model |
//! | [`corrupt_file`] | mutations of valid database files, then open, scan and check |
//! | [`backup_stream`] | (not yet: backup is not implemented) |
//!
//! Inputs are read through [`Input`], which turns any byte string into small numbers, so every
//! input means something and libFuzzer's mutations stay local.

pub mod backup_stream;
pub mod corrupt_file;
pub mod db_ops;
pub mod open_page;

use crate::crypto::seal::PageBuf;
use crate::format::page::{EPOCH_OFFSET, NONCE_OFFSET, NONCE_SIZE, PAYLOAD_SIZE, SealTag, TAG_OFFSET, TAG_SIZE, aad};
use crate::format::{FORMAT_VERSION, PAGE_SIZE};

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// Every target, by the name of its directory under `fuzz/corpus/`.
pub const TARGETS: [(&str, Target); 4] = [
    ("open_page", open_page::run),
    ("db_ops", db_ops::run),
    ("corrupt_file", corrupt_file::run),
    ("backup_stream", backup_stream::run),
];

/// A cursor over fuzz input. Reads past the end give zeros, so decoding never fails.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data, pos: 0 }
    }
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos = self.pos.saturating_add(1);
        b
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    pub fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }
    /// A number in `0..n` (`n > 0`), from one byte when `n <= 256`, else two.
    pub fn below(&mut self, n: usize) -> usize {
        let x = if n <= 256 { usize::from(self.u8()) } else { usize::from(self.u16()) };
        x % n.max(1)
    }
    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = self.pos.saturating_add(n);
        &self.data[start..end]
    }
    /// A byte string whose length (one byte, `0..=max`) comes first.
    pub fn short_bytes(&mut self, max: usize) -> &'a [u8] {
        let n = self.below(max + 1);
        self.bytes(n)
    }
    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        self.pos = self.data.len();
        &self.data[start..]
    }
}

/// SplitMix64: deterministic filler for values and for the pseudo-random test inputs.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }
    pub fn fill(&mut self, out: &mut [u8]) {
        for c in out.chunks_mut(8) {
            let x = self.next_u64().to_le_bytes();
            c.copy_from_slice(&x[..c.len()]);
        }
    }
}

/// `len` bytes determined by `seed` (values in the targets are named by a seed, not spelled out).
pub(crate) fn filler(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng(seed).fill(&mut v);
    v
}

/// A page buffer holding `bytes` (cut to a page, zero-padded).
pub(crate) fn page_of(bytes: &[u8]) -> Box<PageBuf> {
    let mut b = Box::new([0u8; PAGE_SIZE]);
    let n = bytes.len().min(PAGE_SIZE);
    b[..n].copy_from_slice(&bytes[..n]);
    b
}

/// The plaintext-mode tag of a sealed page as it stands (SPEC.md §3.1: CRC32 of AAD ‖ nonce ‖
/// payload, in the first four tag bytes). Mirrors `crypto::seal`, keeping the page's nonce and
/// epoch, so the harness can re-seal an edited plaintext page deterministically.
pub(crate) fn plain_tag(file_id: &[u8; 16], page: u64, buf: &PageBuf) -> SealTag {
    let mut e = [0u8; 4];
    e.copy_from_slice(&buf[EPOCH_OFFSET..EPOCH_OFFSET + 4]);
    let ad = aad(file_id, page, u32::from_le_bytes(e), FORMAT_VERSION);
    let mut h = crc32fast::Hasher::new();
    h.update(&ad);
    h.update(&buf[NONCE_OFFSET..NONCE_OFFSET + NONCE_SIZE]);
    h.update(&buf[..PAYLOAD_SIZE]);
    let mut t = [0u8; TAG_SIZE];
    t[..4].copy_from_slice(&h.finalize().to_le_bytes());
    SealTag(t)
}

/// Re-seals a plaintext page in place (its nonce and epoch kept); returns the new tag.
pub(crate) fn plain_reseal(file_id: &[u8; 16], page: u64, buf: &mut PageBuf) -> SealTag {
    let t = plain_tag(file_id, page, buf);
    buf[TAG_OFFSET..TAG_OFFSET + TAG_SIZE].copy_from_slice(&t.0);
    t
}

/// Replaces every occurrence of `from` in `hay` by `to` (same length); true if any was found.
pub(crate) fn replace_all(hay: &mut [u8], from: &[u8], to: &[u8]) -> bool {
    let n = from.len();
    let mut found = false;
    let mut i = 0;
    while n > 0 && i + n <= hay.len() {
        if &hay[i..i + n] == from {
            hay[i..i + n].copy_from_slice(to);
            found = true;
            i += n;
        } else {
            i += 1;
        }
    }
    found
}
