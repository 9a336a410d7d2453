//! Encrypted backup, verify and restore. SPEC.md §13 (backup format v2; v1 is read).
//!
//! Layer: backup, above `db`. A backup is a stream:
//! ```text
//! +------------------------+  4096 bytes: backup header (clear, BLAKE3-checked)
//! | backup header          |
//! +------------------------+  4096 bytes: the source file's header page, verbatim
//! | source file header     |  (key slots: restore unlocks with the credentials current
//! +------------------------+   when the backup was taken; its MAC authenticates it)
//! | chunk 0                |  chunk header | ciphertext of n × (page u64 ‖ sealed page) | tag
//! | chunk 0 BLAKE3 (32)    |  hash of the chunk, checkable without a key
//! | ...                    |
//! +------------------------+
//! | trailer                |  magic, chunk count, page count, the trailer's own offset,
//! +------------------------+  BLAKE3 of every byte before the hash (trailer's first 32 too)
//! ```
//! Invariants: only pages reachable from one read snapshot are written (free pages left out),
//! each still sealed under its page key *and* the chunk sealed again under the backup's chunk
//! key (BLAKE3 `derive_key` of the data key and the backup id), so page numbers, nonces and tags are hidden too; a
//! flipped byte is found without a key by the chunk hashes and the stream hash, a truncation by
//! the trailer. Nothing in a backup depends on pointer size, endianness or cache settings.

pub mod format;
mod restore;
mod structure;
mod verify;
mod write;

pub use format::{BACKUP_MAGIC, BACKUP_VERSION, BackupHeader, MIN_BACKUP_VERSION};
pub(crate) use restore::dangling_link;
pub use restore::{RestoreOptions, restore};
pub use verify::{BackupSummary, verify};
pub use write::BackupStats;

/// Progress of a backup, verify or restore.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub bytes: u64,
    pub pages: u64,
    /// Total pages, when known.
    pub total_pages: u64,
}
