//! `BufPool`: page buffers given back by dropped cache entries, reused by the next page read.
//!
//! Layer: pager. A read that misses the cache needs a 4 KiB buffer, and the entry it evicts
//! frees one: without the pool each miss is a `malloc` and a `free` of 4 KiB, which the
//! allocator pays for in bin management (8-11 % of a cold lookup in `perf`). Invariants: an
//! encrypted database's pool holds no plaintext when `Config::zeroize_cache` is on (cache
//! entries wipe their buffer before giving it back; `Pager::write` gives back its sealed copy,
//! ciphertext); whoever takes a buffer overwrites all of it before reading any of it
//! (`Pager::read_raw` fills it from storage or fails; `Pager::write` copies a whole page in);
//! the pool never holds more than `MAX_POOLED` buffers.

use parking_lot::Mutex;

use crate::crypto::seal::PageBuf;
use crate::format::PAGE_SIZE;

/// At most this many idle buffers (256 KiB).
const MAX_POOLED: usize = 64;

#[derive(Default)]
pub(crate) struct BufPool {
    idle: Mutex<Vec<Box<PageBuf>>>,
}

impl BufPool {
    /// A page buffer whose contents are unspecified: the caller overwrites all of it.
    pub(crate) fn take(&self) -> Box<PageBuf> {
        self.idle.lock().pop().unwrap_or_else(|| Box::new([0u8; PAGE_SIZE]))
    }

    /// Gives a buffer back (freed instead when the pool is full).
    pub(crate) fn give(&self, buf: Box<PageBuf>) {
        let mut idle = self.idle.lock();
        if idle.len() < MAX_POOLED {
            idle.push(buf);
        }
    }

    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.idle.lock().len()
    }
}
