//! `BufPool`: page buffers for raw reads (`Pager::read_raw`: headers, backup, salvage), fed by
//! the sealed buffers `Pager::write` is done with.
//!
//! Layer: pager. Cache misses do not use it: the cache recycles its own entries
//! (`PageCache::entry`). Invariants: the pool holds sealed pages only, the bytes the file holds
//! (`Pager::write` gives a buffer back after sealing it in place, and wipes it instead on a
//! failure before that); whoever takes a buffer overwrites all of it before reading any of it
//! (`Pager::read_raw` fills it from storage or fails); the pool never holds more than
//! `MAX_POOLED` buffers.

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
}
