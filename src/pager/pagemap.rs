//! Sets and maps keyed by page number.
//!
//! A fast multiplicative hash replaces SipHash on these hot paths. Page numbers are chosen by
//! the file's structure, which in plaintext mode anyone can forge (a CRC32 is redone at will),
//! so the hash must not let chosen numbers share a bucket: the table picks a bucket by the
//! hash's low bits, and a product's low bits depend only on the number's low bits (pages
//! 2^20 apart all had the same ones), so `finish` mixes the high bits into the low.
//! `PageBitmap` records pages reached by a walk in one bit each, made only where pages are.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use crate::error::{CorruptReason, Error, PageNo, Result};

/// Fibonacci hashing of a `u64`: multiply by 2^64 / φ; the high bits are well mixed.
#[derive(Default, Clone, Copy)]
pub(crate) struct PageHasher(u64);

impl Hasher for PageHasher {
    /// MurmurHash3's 64-bit finalizer over the product: every bit of the page number reaches
    /// the low bits.
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h ^= h >> 33;
        h
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(crate) type PageMap<V> = HashMap<u64, V, BuildHasherDefault<PageHasher>>;
pub(crate) type PageSet = HashSet<u64, BuildHasherDefault<PageHasher>>;

/// Records `page` as reached; one reached already is `DoubleReference` (no page has two
/// parents, nor two entries one overflow chain).
pub(crate) fn reach_once(seen: &mut PageSet, page: PageNo) -> Result<()> {
    match seen.insert(page) {
        true => Ok(()),
        false => Err(Error::corrupt(page, CorruptReason::DoubleReference)),
    }
}

/// Pages per `PageBitmap` chunk (a 512-byte chunk).
const BITMAP_CHUNK: u64 = 4096;

/// A set of pages, one bit each, in chunks made on first use: a walk of a large file costs an
/// eighth of a byte per page reached (a hash set, some sixteen), and one of a sparse file
/// claiming billions of pages costs what it reached.
#[derive(Default)]
pub(crate) struct PageBitmap {
    chunks: BTreeMap<u64, Box<[u64]>>,
}

impl PageBitmap {
    /// Adds `page`; false if it was there.
    pub(crate) fn insert(&mut self, page: PageNo) -> bool {
        let words = (BITMAP_CHUNK / 64) as usize;
        let chunk = self.chunks.entry(page / BITMAP_CHUNK).or_insert_with(|| vec![0u64; words].into_boxed_slice());
        let bit = page % BITMAP_CHUNK;
        let (word, mask) = (&mut chunk[(bit / 64) as usize], 1u64 << (bit % 64));
        if *word & mask != 0 {
            return false;
        }
        *word |= mask;
        true
    }

    /// The number of pages in the set.
    pub(crate) fn len(&self) -> u64 {
        self.chunks.values().flat_map(|words| words.iter()).map(|w| u64::from(w.count_ones())).sum()
    }

    /// The pages, in ascending order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = PageNo> + '_ {
        self.chunks.iter().flat_map(|(c, words)| {
            words.iter().enumerate().flat_map(move |(w, &bits)| {
                (0..64u64).filter(move |b| bits & (1 << b) != 0).map(move |b| c * BITMAP_CHUNK + w as u64 * 64 + b)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    /// Pages a power of two apart spread over the buckets a table picks by the hash's low bits.
    #[test]
    fn pages_far_apart_do_not_share_low_hash_bits() {
        let build = BuildHasherDefault::<PageHasher>::default();
        for shift in [0u32, 12, 20, 32, 40, 52] {
            let low: HashSet<u64> = (0..4096u64).map(|i| build.hash_one(i << shift) & 0xFFF).collect();
            assert!(low.len() > 2048, "pages 2^{shift} apart: {} distinct low hashes of 4096", low.len());
        }
    }

    #[test]
    fn the_bitmap_is_a_set_in_order() {
        let mut b = PageBitmap::default();
        let pages = [5u64, 4095, 4096, 63, 64, 1 << 40, 7];
        for p in pages {
            assert!(b.insert(p));
        }
        assert!(!b.insert(64) && !b.insert(1 << 40));
        let mut want = pages.to_vec();
        want.sort_unstable();
        assert_eq!(b.iter().collect::<Vec<_>>(), want);
    }
}
