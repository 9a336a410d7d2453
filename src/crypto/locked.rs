//! Memory for secrets: each buffer is its own anonymous mapping, locked against swapping
//! (`mlock`) and excluded from core dumps (`MADV_DONTDUMP` on Linux), and zeroized before it is
//! unmapped. Built on memmap2's safe API: no `unsafe` here.
//!
//! If locking fails (RLIMIT_MEMLOCK), the engine goes on: one warning is logged (without any
//! secret) and `locking_failed()` reports it for `status`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use zeroize::Zeroize;

static LOCK_FAILED: AtomicBool = AtomicBool::new(false);
static LOCKED_BYTES: AtomicU64 = AtomicU64::new(0);

/// True once any secret buffer could not be locked into memory.
pub fn locking_failed() -> bool {
    LOCK_FAILED.load(Ordering::Relaxed)
}

/// Bytes of memory locked for secret buffers: each is a mapping of its own, and `mlock` locks
/// whole pages, so each counts its length rounded up to a 4 KiB page (the least a page is; the
/// length itself, 32 bytes for a key, showed a hundredth of what counts against
/// RLIMIT_MEMLOCK).
pub fn locked_bytes() -> u64 {
    LOCKED_BYTES.load(Ordering::Relaxed)
}

enum Backing {
    Map(memmap2::MmapMut),
    /// Only if the mapping itself could not be made (out of address space).
    Heap(Vec<u8>),
}

/// A fixed-size secret buffer in locked, non-dumpable memory.
pub(crate) struct LockedBytes {
    backing: Backing,
    len: usize,
    /// The bytes counted in `LOCKED_BYTES` for this buffer (0 if it is not locked).
    locked: u64,
}

/// The least size of a page `mlock` locks.
const LOCK_PAGE: u64 = 4096;

/// Says, once per process, that a secret buffer could not be locked: `mapped`, its mapping was
/// made and `mlock` refused (RLIMIT_MEMLOCK); else no mapping could be made, and the buffer is
/// on the heap (not kept out of core dumps either).
fn note_lock_failed(mapped: bool) {
    if !LOCK_FAILED.swap(true, Ordering::Relaxed) {
        if mapped {
            tracing::warn!(target: "foldvault::audit", "could not lock key memory (RLIMIT_MEMLOCK?); keys may be swapped");
        } else {
            tracing::warn!(target: "foldvault::audit",
                "could not map key memory (vm.max_map_count?); keys are on the heap: they may be swapped and dumped");
        }
    }
}

impl LockedBytes {
    pub(crate) fn new(len: usize) -> LockedBytes {
        let map_len = len.max(1);
        let backing = match memmap2::MmapMut::map_anon(map_len) {
            Ok(m) => Backing::Map(m),
            Err(_) => Backing::Heap(vec![0u8; map_len]),
        };
        let mut locked = 0;
        match &backing {
            Backing::Map(m) => {
                #[cfg(target_os = "linux")]
                let _ = m.advise(memmap2::Advice::DontDump);
                match m.lock() {
                    Ok(()) => {
                        locked = (map_len as u64).next_multiple_of(LOCK_PAGE);
                        LOCKED_BYTES.fetch_add(locked, Ordering::Relaxed);
                    }
                    Err(_) => note_lock_failed(true),
                }
            }
            // Neither locked nor kept out of core dumps: said as a failed lock is (it went
            // unsaid, and `status` showed key memory locked).
            Backing::Heap(_) => note_lock_failed(false),
        }
        LockedBytes { backing, len, locked }
    }

    pub(crate) fn from_slice(b: &[u8]) -> LockedBytes {
        let mut l = LockedBytes::new(b.len());
        l.as_mut().copy_from_slice(b);
        l
    }

    pub(crate) fn as_ref(&self) -> &[u8] {
        match &self.backing {
            Backing::Map(m) => &m[..self.len],
            Backing::Heap(v) => &v[..self.len],
        }
    }

    pub(crate) fn as_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        match &mut self.backing {
            Backing::Map(m) => &mut m[..len],
            Backing::Heap(v) => &mut v[..len],
        }
    }
}

impl Drop for LockedBytes {
    fn drop(&mut self) {
        match &mut self.backing {
            Backing::Map(m) => {
                m[..].zeroize();
                LOCKED_BYTES.fetch_sub(self.locked, Ordering::Relaxed);
            }
            Backing::Heap(v) => v.zeroize(),
        }
    }
}

impl std::ops::Deref for LockedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_and_wipes() {
        let mut l = LockedBytes::new(32);
        l.as_mut().copy_from_slice(&[7; 32]);
        assert_eq!(l.as_ref(), &[7; 32]);
        let l2 = LockedBytes::from_slice(b"abc");
        assert_eq!(l2.as_ref(), b"abc");
    }

    /// A locked buffer counts the page `mlock` locked, not its own length (32 bytes for a key
    /// counted a hundredth of what it takes from RLIMIT_MEMLOCK).
    #[test]
    fn a_locked_key_counts_its_whole_page() {
        let l = LockedBytes::new(32);
        if l.locked > 0 {
            assert_eq!(l.locked, LOCK_PAGE);
            assert!(locked_bytes() >= LOCK_PAGE);
        } else {
            assert!(locking_failed(), "a buffer not locked is said to be");
        }
    }
}
