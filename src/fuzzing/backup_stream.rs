//! Target `backup_stream`: reserved for the encrypted backup stream (SPEC.md §9.6), which is
//! not implemented yet.
//!
//! TODO (when `Db::backup_to` and `foldvault::backup::{verify, restore}` land):
//! - build, once (`OnceLock`), a small database and its backup stream, as `corrupt_file` does;
//! - apply the input as mutations of the stream (bit flips, truncation, chunks dropped,
//!   duplicated or reordered, a chunk of another backup spliced in), or, behind a flag byte,
//!   take the input itself as a stream;
//! - run `verify` and `restore` into a `MemoryStorage`: errors must be typed
//!   (`Corrupt { reason: BackupFormat, .. }`, `WrongKey`, `Truncated`), never a panic, and no
//!   allocation may follow a length read from the stream before it is authenticated;
//! - when the stream is unmodified, `verify` passes and the restored database's contents equal
//!   the source's; when `verify` passes on a modified stream, `restore` must succeed and give the
//!   source's contents (a stream that verifies is authentic);
//! - seed `fuzz/corpus/backup_stream/` with a few mutation lists.

/// Does nothing yet (see the module documentation).
pub fn run(data: &[u8]) {
    let _ = data;
}
