//! Errors: one enum for the whole crate, grouped by who is at fault.
//!
//! Layer: shared by every layer. Invariants: no variant carries key material, passphrases or
//! plaintext of user data; `Display` of an I/O error keeps the operating system's text (callers
//! such as FoldDB match on "No such file or directory"); corruption names the page and a reason
//! that callers can match on (never a free-form string).

use std::fmt;

/// A page number: the index of a 4 KiB page in the file (page `n` starts at byte `n * 4096`).
pub type PageNo = u64;

/// Why a page or structure was judged corrupt. Each variant names one check that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CorruptReason {
    /// The AEAD tag (or, in plaintext mode, the CRC32) did not verify: the page was altered,
    /// moved from another position, or copied from another file.
    SealMismatch,
    /// The page opened, but its seal tag is not the one its parent holds: an old (or swapped)
    /// but validly sealed version of the page was put back.
    TagMismatch,
    /// The page names a key epoch whose key this file does not have.
    UnknownEpoch,
    /// The header's checksum does not match its contents.
    HeaderChecksum,
    /// The header's keyed MAC does not verify under the data key: a field was changed.
    HeaderMac,
    /// A header field is out of its allowed range.
    HeaderField,
    /// Neither commit record verifies (or neither has a root that verifies).
    NoValidCommit,
    /// A page has an unexpected kind byte for where it was reached.
    WrongPageKind,
    /// A length or offset inside a page points outside the page.
    BadLayout,
    /// Keys inside a page, or across pages, are out of order or outside their parent's range.
    KeyOrder,
    /// A page number points outside the file's committed page count or into the reserved pages.
    PageOutOfRange,
    /// The B-tree is deeper than the maximum possible depth (a cycle in a damaged file).
    TooDeep,
    /// An overflow chain is shorter or longer than the value length it must hold.
    OverflowLength,
    /// The free-space list is inconsistent (a page both free and in use, twice free, or leaked).
    FreeList,
    /// A page was referenced twice (a cycle or a shared subtree).
    DoubleReference,
    /// A tree's stored record count does not match its contents.
    CountMismatch,
    /// A backup stream's structure or hash is invalid.
    BackupFormat,
}

impl fmt::Display for CorruptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            CorruptReason::SealMismatch => "seal does not verify (page altered, moved or foreign)",
            CorruptReason::TagMismatch => "page is not the version its parent references (stale or swapped)",
            CorruptReason::UnknownEpoch => "page names an unknown key epoch",
            CorruptReason::HeaderChecksum => "header checksum mismatch",
            CorruptReason::HeaderMac => "header MAC does not verify",
            CorruptReason::HeaderField => "header field out of range",
            CorruptReason::NoValidCommit => "no commit record verifies",
            CorruptReason::WrongPageKind => "unexpected page kind",
            CorruptReason::BadLayout => "length or offset outside the page",
            CorruptReason::KeyOrder => "keys out of order or out of range",
            CorruptReason::PageOutOfRange => "page number out of range",
            CorruptReason::TooDeep => "tree deeper than possible (cycle?)",
            CorruptReason::OverflowLength => "overflow chain length mismatch",
            CorruptReason::FreeList => "free-space list inconsistent",
            CorruptReason::DoubleReference => "page referenced twice",
            CorruptReason::CountMismatch => "stored record count mismatch",
            CorruptReason::BackupFormat => "backup stream invalid",
        };
        f.write_str(s)
    }
}

/// Every failure foldvault reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- the caller's or operator's doing ---
    /// No key slot opens with the key or passphrase given (or none was given for an encrypted file).
    #[error("wrong key or passphrase: {hint}")]
    WrongKey {
        /// What was tried, never the key itself.
        hint: &'static str,
    },
    /// Another handle or process holds the file's lock (still, after
    /// [`crate::storage::LOCK_GRACE`]).
    #[error("database file is locked by another process or handle")]
    Locked,
    /// A key longer than [`crate::MAX_KEY_LEN`].
    #[error("key of {len} bytes exceeds the maximum of {max}")]
    KeyTooLarge { len: usize, max: usize },
    /// A value longer than [`crate::MAX_VALUE_LEN`].
    #[error("value of {len} bytes exceeds the maximum of {max}")]
    ValueTooLarge { len: u64, max: u64 },
    /// The operation is not supported (also constructible by applications, as in sled).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// The named tree does not exist.
    #[error("tree not found")]
    CollectionNotFound,
    /// The file is older than the commit sequence or digest the application anchored.
    #[error("database rolled back: commit sequence {found} is older than the anchored {expected}")]
    RolledBack { expected: u64, found: u64 },
    /// The file's root digest is not the one the application anchored.
    #[error("database root digest differs from the anchored digest (rolled back or replaced)")]
    RootDigestMismatch,
    /// A restore or migration target exists and overwriting was not requested.
    #[error("target already exists: {0}")]
    AlreadyExists(String),

    // --- the file's doing ---
    /// A page or structure failed a check.
    #[error("corrupt page {page}: {reason}")]
    Corrupt { page: PageNo, reason: CorruptReason },
    /// The file is shorter than its header or commit record says.
    #[error("file truncated: expected at least {expected} bytes, found {found}")]
    Truncated { expected: u64, found: u64 },
    /// A backup stream failed a check: at byte `offset`, in chunk `chunk` if known.
    #[error("backup damaged at byte {offset}{}: {what}", chunk.map(|c| format!(" (chunk {c})")).unwrap_or_default())]
    BackupCorrupt { offset: u64, chunk: Option<u64>, what: &'static str },
    /// Not a foldvault file at all (bad magic).
    #[error("not a foldvault file (bad magic)")]
    NotADatabase,
    /// The write-ahead log beside the database file (`FILE.fvwal`, SPEC §15) was written for
    /// another database file (its owner bytes match neither header copy): it is not replayed.
    /// A file replaced while its log stayed behind; remove the log if the file is the one wanted.
    #[error("the write-ahead log beside this file belongs to another database file")]
    ForeignLog,
    /// The write-ahead log beside the database file (SPEC §15) is older than the file: the
    /// file holds a commit record built on a later commit than the log's records were (the
    /// numbers are commit sequence numbers), or header pages of a later generation than the
    /// log's copies of them (the numbers are header generations). It is not replayed, which
    /// would put older pages over later ones: such a log was left beside another name of the
    /// file (a hard link) by a crash, or put back from a copy. Move it away to open the file as
    /// it is.
    #[error(
        "the write-ahead log beside this file is older than the file (log {log_seq}, file {file_seq}): not replayed"
    )]
    StaleLog { log_seq: u64, file_seq: u64 },
    /// A write (a transaction, a key or maintenance operation) on a database opened with
    /// `Config::read_only`.
    #[error("the database is open read-only")]
    ReadOnly,
    /// The write-ahead log beside the database file (SPEC §15) has a log version this build
    /// does not read: it may hold committed writes, so the database is not opened (open it with
    /// the build that wrote the log, which replays and removes it at a clean close).
    #[error("the write-ahead log beside this file has log version {found} (this build reads version {supported})")]
    UnsupportedLogVersion { found: u8, supported: u8 },
    /// The file was written by a format version this build does not read.
    #[error("unsupported format version {found} (this build reads up to {supported})")]
    UnsupportedVersion { found: u16, supported: u16 },
    /// A key epoch's seal budget and the epoch space are both spent.
    #[error("nonce budget exhausted")]
    NonceBudgetExhausted,

    // --- the environment's doing ---
    /// An I/O error from the storage layer (its text is the operating system's).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// An earlier write or sync failed; the handle refuses further writes. After a failed
    /// write it may be reopened; after a failed sync the file is not reopened for writing in
    /// this process (its cached pages may not be what the disk holds).
    #[error("database handle is poisoned by an earlier I/O failure (see the first error); open the database again")]
    Poisoned,
    /// An internal invariant failed (a bug; please report it).
    #[error("internal error: {0}")]
    ReportableBug(String),
}

impl Error {
    pub(crate) fn corrupt(page: PageNo, reason: CorruptReason) -> Error {
        tracing::warn!(target: "foldvault::audit", page, reason = ?reason, "integrity failure");
        Error::Corrupt { page, reason }
    }

    /// True when the error says the data on disk is damaged or tampered with.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::Corrupt { .. } | Error::Truncated { .. } | Error::NotADatabase | Error::BackupCorrupt { .. }
        )
    }
}

impl Clone for Error {
    fn clone(&self) -> Self {
        match self {
            Error::WrongKey { hint } => Error::WrongKey { hint },
            Error::Locked => Error::Locked,
            Error::KeyTooLarge { len, max } => Error::KeyTooLarge { len: *len, max: *max },
            Error::ValueTooLarge { len, max } => Error::ValueTooLarge { len: *len, max: *max },
            Error::Unsupported(s) => Error::Unsupported(s.clone()),
            Error::InvalidConfig(s) => Error::InvalidConfig(s),
            Error::CollectionNotFound => Error::CollectionNotFound,
            Error::RolledBack { expected, found } => Error::RolledBack { expected: *expected, found: *found },
            Error::AlreadyExists(s) => Error::AlreadyExists(s.clone()),
            Error::RootDigestMismatch => Error::RootDigestMismatch,
            Error::Corrupt { page, reason } => Error::Corrupt { page: *page, reason: *reason },
            Error::Truncated { expected, found } => Error::Truncated { expected: *expected, found: *found },
            Error::NotADatabase => Error::NotADatabase,
            Error::ForeignLog => Error::ForeignLog,
            Error::StaleLog { log_seq, file_seq } => Error::StaleLog { log_seq: *log_seq, file_seq: *file_seq },
            Error::ReadOnly => Error::ReadOnly,
            Error::UnsupportedLogVersion { found, supported } => {
                Error::UnsupportedLogVersion { found: *found, supported: *supported }
            }
            Error::BackupCorrupt { offset, chunk, what } => {
                Error::BackupCorrupt { offset: *offset, chunk: *chunk, what }
            }
            Error::UnsupportedVersion { found, supported } => {
                Error::UnsupportedVersion { found: *found, supported: *supported }
            }
            Error::NonceBudgetExhausted => Error::NonceBudgetExhausted,
            Error::Io(e) => Error::Io(std::io::Error::new(e.kind(), e.to_string())),
            Error::Poisoned => Error::Poisoned,
            Error::ReportableBug(s) => Error::ReportableBug(s.clone()),
        }
    }
}

/// `Result` with foldvault's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs its function if dropped by a panic that began after it was made: a step that a panic
/// (from a caller's `Storage`, say) would leave out of step with the disk marks the state
/// failed, as an error there does, rather than let the next call build on it. A guard made
/// while the thread is already unwinding (a `Drop` that commits) runs nothing for that panic.
pub(crate) struct OnPanic<F: FnMut()> {
    run: F,
    already: bool,
}

impl<F: FnMut()> OnPanic<F> {
    pub(crate) fn new(run: F) -> OnPanic<F> {
        OnPanic { run, already: std::thread::panicking() }
    }
}

impl<F: FnMut()> Drop for OnPanic<F> {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.already {
            (self.run)();
        }
    }
}
