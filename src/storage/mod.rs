//! Storage layer (the VFS): the only code that touches bytes on a device.
//!
//! Layer: bottom. Calls nothing else in the crate but `error`. Every other layer reaches the
//! file only through [`Storage`]. Backends: a file, memory, a fault-injecting memory file for
//! tests, and [`WalStorage`], a file and its write-ahead log seen as one file (SPEC.md §15).
//!
//! Contract (as redb's `StorageBackend`: five required methods, and `bytes_on_disk` and
//! `checkpoint_log` with default bodies; `u64` offsets):
//! - `read_at` fills the whole buffer or fails; reading past the end fails with
//!   `io::ErrorKind::UnexpectedEof`.
//! - `write_at` may extend the file; a write is *not* durable until a later `sync` returns.
//!   Until then it may be lost, torn at any 512-byte boundary, or reordered with other unsynced
//!   writes (the fault-injecting backend models exactly this).
//! - `sync` makes every earlier write and `set_len` durable (`fdatasync`).
//! - `len` is the current (not necessarily durable) length.
//! - implementations are `Send + Sync`; callers serialise writes themselves (one writer),
//!   while reads may run concurrently with writes to *other* offsets.

use std::io;

mod fault;
mod file;
mod memory;
pub mod wal;

pub use fault::{CrashModel, DeviceImages, FaultPlan, FaultyDevices, FaultyStorage, Observer};
#[cfg(test)]
pub(crate) use file::REFUSE_DIR_SYNC;
pub use file::{FileStorage, LOCK_GRACE, sync_parent_dir};
pub(crate) use file::{same_inode, sync_new_name};
pub use memory::MemoryStorage;
#[cfg(test)]
pub(crate) use memory::{GatedMemory, WriteGate};
pub use wal::WalStorage;

/// Positioned, page-aligned I/O over one file. See the module documentation for the contract.
#[allow(clippy::len_without_is_empty)]
pub trait Storage: Send + Sync + 'static {
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, extending the file if needed.
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Makes all earlier writes and length changes durable.
    fn sync(&self) -> io::Result<()>;
    /// The current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Bytes the storage occupies, every file it keeps counted (a log beside the file too);
    /// the length unless a storage says otherwise.
    fn bytes_on_disk(&self) -> io::Result<u64> {
        self.len()
    }
    /// Folds what the storage keeps beside the file into it now, and waits (a write-ahead log's
    /// pages copied home and synced, the log started anew); nothing for a storage that keeps
    /// nothing beside the file. Only writes made durable by an earlier `sync` are folded.
    fn checkpoint_log(&self) -> io::Result<()> {
        Ok(())
    }
    /// Writes `buf` at `offset` into the file itself, past any log beside it (whose pages are
    /// folded into the file first), and makes it durable with every earlier write before
    /// returning. For the header pages (SPEC §6.2, §15): a log must never hold a copy of one,
    /// whose old key slots (or a rotation's next-key block) would outlive a key change in the
    /// log's bytes. `write_at` then `sync` for a storage that keeps nothing beside the file; a
    /// storage that wraps one with a log forwards this call, or the header pages go into the log.
    fn write_through(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.write_at(offset, buf)?;
        self.sync()
    }
    /// `checkpoint_log`, then what the log held overwritten (zeros, synced), so that no earlier
    /// version of a page stays in its bytes: after an open that replayed a header page from a
    /// log an earlier build wrote (which logged its header updates), whose old key slots (and a
    /// rotation's next-key block) must not outlive it there. `checkpoint_log` for a storage
    /// that keeps nothing beside the file; a storage that wraps one with a log forwards this
    /// call as it forwards `checkpoint_log`, or the erase is lost.
    fn checkpoint_and_erase_log(&self) -> io::Result<()> {
        self.checkpoint_log()
    }
    /// The storage is given up with its files, which its owner removes while holding them (a
    /// create that failed): its close must then write nothing and remove nothing by name (a
    /// name freed by then may be another process's). Nothing for a storage whose close does
    /// neither.
    fn abandon(&self) {}
    /// The runs (first page, pages) of the pages below `below` that neither the file nor a
    /// log holds: past the end of a file under a log, and in no group of it (they read as
    /// zeros), with the file's own length in bytes. Open checks that each is free in the
    /// commit it takes: a live one is the file cut short under its log (SPEC §15, "Replay at
    /// open"). None for every storage without a log (its length is its file's, which open
    /// compares with the commit's page count).
    fn unbacked_runs(&self, below: u64) -> Option<(u64, Vec<(u64, u64)>)> {
        let _ = below;
        None
    }
    /// Where a log replayed at open holds versions of the page at `offset` (one page of
    /// `file.len()` bytes): fills `file` with what the file itself holds there (zeros past its
    /// end), calls `version` with each version the log holds, oldest first, and returns true.
    /// False, nothing filled or called, where no log holds the page (every storage that keeps
    /// none). Open compares the commit records of the two, so that a log older than the file
    /// is refused, not replayed over it (SPEC §15, "Replay at open").
    fn logged_versions(&self, offset: u64, file: &mut [u8], version: &mut dyn FnMut(&[u8])) -> io::Result<bool> {
        let _ = (offset, file, version);
        Ok(false)
    }
    /// Whether a log replayed at open stopped at a group it found whole enough to be one (its
    /// header names the next group of the generation) that failed its checksum or its checks:
    /// a group torn by a crash, or damaged, and the commits in it and after it not replayed.
    /// Open reports it (`RecoveryReport::log_group_dropped`, `Db::was_recovered`), as it reports
    /// a commit record in the file that does not open. False for every storage without a log.
    fn replay_dropped_a_group(&self) -> bool {
        false
    }
    /// `fdatasync`s of files on a device that returned, made by this storage and anything it
    /// runs (a write-ahead log's file and log, its background checkpoint's included): what a
    /// durable commit costs the device, which `Metrics::syncs` (the engine's sync requests)
    /// does not count. 0 for a storage with no device under it.
    fn device_syncs(&self) -> u64 {
        0
    }
}
