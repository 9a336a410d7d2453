//! Hash maps keyed by page number. Page numbers are not attacker-chosen hash keys (the file's
//! structure decides them, and every page is authenticated before it is used), so a fast
//! multiplicative hash replaces SipHash on these hot paths.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Fibonacci hashing of a `u64`: multiply by 2^64 / φ; the high bits are well mixed.
#[derive(Default, Clone, Copy)]
pub(crate) struct PageHasher(u64);

impl Hasher for PageHasher {
    fn finish(&self) -> u64 {
        self.0
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
