//! In-memory storage: a growable byte vector behind a lock, for tests and ephemeral databases.
//!
//! Layer: storage (bottom). May call only `std`, `parking_lot` and `crate::error`; nothing in
//! the crate sits below it.
//!
//! Invariants:
//! - clones share one byte vector (`Arc`), so a test "reopens" a database by cloning;
//! - reads never see past the end: a read that does not fit fails with `UnexpectedEof`;
//! - writes past the end extend the vector with zeros first; an empty write never extends;
//! - no operation allocates for an end offset above [`MAX_STORAGE_LEN`] (2^40 bytes): such a
//!   write or `set_len` fails with `InvalidInput` instead;
//! - `sync` is a no-op: nothing here survives the process anyway.
//!
//! The `pub(super)` helpers at the bottom implement the same byte semantics for the
//! fault-injecting backend, so both in-memory backends behave identically.

use std::fmt;
use std::io;
use std::sync::Arc;

use parking_lot::RwLock;

use super::Storage;

/// The largest length (and end offset) an in-memory backend will grow to: 1 TiB.
pub(super) const MAX_STORAGE_LEN: u64 = 1 << 40;

/// An in-memory file. Clones share the same bytes.
#[derive(Clone, Default)]
pub struct MemoryStorage {
    data: Arc<RwLock<Vec<u8>>>,
}

impl MemoryStorage {
    /// An empty in-memory file.
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    /// An in-memory file holding `bytes`.
    pub fn from_bytes(bytes: Vec<u8>) -> MemoryStorage {
        MemoryStorage { data: Arc::new(RwLock::new(bytes)) }
    }

    /// A copy of the current bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        self.data.read().clone()
    }
}

impl fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStorage").field("len", &self.data.read().len()).finish()
    }
}

impl Storage for MemoryStorage {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_vec(&self.data.read(), offset, buf)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        write_vec(&mut self.data.write(), offset, buf)
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.data.read().len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        set_len_vec(&mut self.data.write(), len)
    }
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Checks that `offset + len` neither overflows nor exceeds [`MAX_STORAGE_LEN`]; returns the
/// end offset as a `usize`.
pub(super) fn checked_end(offset: u64, len: usize) -> io::Result<usize> {
    let end = offset.checked_add(len as u64).ok_or_else(|| invalid("offset + length overflows"))?;
    if end > MAX_STORAGE_LEN {
        return Err(invalid("offset + length exceeds the in-memory storage limit"));
    }
    usize::try_from(end).map_err(|_| invalid("offset + length does not fit in memory"))
}

/// Fills `buf` from `data` at `offset`, or fails with `UnexpectedEof` if it does not fit.
pub(super) fn read_vec(data: &[u8], offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let end = offset.checked_add(buf.len() as u64);
    match end {
        Some(end) if end <= data.len() as u64 => {
            // Both bounds are at most data.len(), so they fit in usize.
            let start = offset as usize;
            buf.copy_from_slice(&data[start..end as usize]);
            Ok(())
        }
        _ => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the storage")),
    }
}

/// Writes `buf` into `data` at `offset`, zero-extending first if needed. An empty write is a
/// no-op (as with `pwrite`), whatever the offset.
pub(super) fn write_vec(data: &mut Vec<u8>, offset: u64, buf: &[u8]) -> io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    let end = checked_end(offset, buf.len())?;
    if end > data.len() {
        data.resize(end, 0);
    }
    let start = end - buf.len();
    data[start..end].copy_from_slice(buf);
    Ok(())
}

/// Truncates or zero-extends `data` to `len` bytes.
pub(super) fn set_len_vec(data: &mut Vec<u8>, len: u64) -> io::Result<()> {
    let len = checked_end(len, 0)?;
    data.resize(len, 0);
    Ok(())
}

/// What a test wants done before each write of a [`GatedMemory`]: count it, hold it, refuse it.
#[cfg(test)]
pub(crate) trait WriteGate: Send + Sync + 'static {
    fn before_write(&self) -> io::Result<()>;
    /// Before a `sync`; passes unless a gate says otherwise.
    fn before_sync(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Memory storage whose writes first pass `gate` (tests of the layers above).
#[cfg(test)]
#[derive(Default)]
pub(crate) struct GatedMemory<G> {
    pub(crate) inner: MemoryStorage,
    pub(crate) gate: G,
}

#[cfg(test)]
impl<G: WriteGate> Storage for GatedMemory<G> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.gate.before_write()?;
        self.inner.write_at(offset, buf)
    }
    fn sync(&self) -> io::Result<()> {
        self.gate.before_sync()?;
        self.inner.sync()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = MemoryStorage::new();
        assert_eq!(s.len().unwrap(), 0);
        s.write_at(0, b"hello").unwrap();
        s.write_at(10, b"world").unwrap();
        assert_eq!(s.len().unwrap(), 15);
        let mut buf = [0xffu8; 15];
        s.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"hello\0\0\0\0\0world");
        s.write_at(2, b"LL").unwrap();
        let mut buf = [0u8; 5];
        s.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"heLLo");
        s.sync().unwrap();
    }

    #[test]
    fn read_past_end_is_unexpected_eof() {
        let s = MemoryStorage::from_bytes(vec![1, 2, 3]);
        let mut buf = [0u8; 2];
        let err = s.read_at(2, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let err = s.read_at(u64::MAX, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        s.read_at(1, &mut buf).unwrap();
        assert_eq!(buf, [2, 3]);
        // An empty read at the very end is fine.
        s.read_at(3, &mut []).unwrap();
    }

    #[test]
    fn clones_share_bytes() {
        let a = MemoryStorage::new();
        let b = a.clone();
        a.write_at(0, b"shared").unwrap();
        assert_eq!(b.snapshot(), b"shared");
        b.set_len(3).unwrap();
        assert_eq!(a.snapshot(), b"sha");
        a.set_len(5).unwrap();
        assert_eq!(b.snapshot(), b"sha\0\0");
    }

    #[test]
    fn absurd_offsets_are_rejected_without_allocating() {
        let s = MemoryStorage::new();
        let err = s.write_at(MAX_STORAGE_LEN, b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = s.write_at(u64::MAX, b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = s.set_len(MAX_STORAGE_LEN + 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        // An empty write never extends.
        s.write_at(u64::MAX, b"").unwrap();
        assert_eq!(s.len().unwrap(), 0);
    }
}
