//! foldvault: an embedded, transactional key-value store in one file whose every 4 KiB page —
//! data, B-tree branches, the catalog of named trees, free-space lists, commit records — is
//! sealed with AES-256-GCM, with the page number, the key epoch, the format version and the
//! file's identity bound as associated data. Branch pages hold each child's seal tag, so the
//! whole file is a Merkle tree: a flipped bit, a moved page or an old copy of a page is reported
//! (`Error::Corrupt { page, reason }`), never returned as data.
//!
//! The API follows sled 0.34 (what FoldDB calls today), so most code written for sled compiles
//! by swapping `sled::` for `foldvault::` (the differences are listed in README.md):
//!
//! ```
//! # fn main() -> foldvault::Result<()> {
//! # let dir = tempfile::tempdir()?;
//! let db = foldvault::Config::new()
//!     .path(dir.path().join("data"))
//!     .passphrase("correct horse battery staple")
//! #   .kdf(foldvault::KdfParams::insecure_fast())
//!     .open()?;
//! let schemas = db.open_tree("schemas")?;
//! schemas.insert("Person", &b"{\"fields\":[]}"[..])?;
//! schemas.flush()?; // durable: one sync
//! assert_eq!(schemas.get("Person")?.as_deref(), Some(&b"{\"fields\":[]}"[..]));
//! for item in db.scan_prefix("atom:").flatten() {
//!     let (_key, _value) = item;
//! }
//! # Ok(()) }
//! ```
//!
//! Beyond sled: explicit transactions over many trees (`Db::begin_write`, `Db::begin_read`),
//! an integrity check (`Db::check`) and `salvage`, encrypted online backup (`Db::backup_to`,
//! `backup::verify`, `backup::restore`), key slots and passphrase changes, data-key rotation
//! (`Db::rekey`), migration (`migrate`), import from sled (feature `sled-import`), an async API
//! (feature `tokio`), and the `foldvault` and `pagedump` command-line tools.
//!
//! The byte-level format and the security argument are in SPEC.md; the differences from sled
//! 0.34 are listed in the README and at the top of `src/db/sledtx.rs`.
//!
//! Layers, bottom up (each a folder under `src/`): `storage` (the VFS: five required
//! methods), `crypto` and `format` (keys, seals, byte layouts), `pager` (cache, allocation,
//! commit), `btree`, `db` (the engine, transactions, the public API), then `backup` and `admin`
//! (the tools).
#![allow(clippy::type_complexity, clippy::too_many_arguments)]
pub mod admin;
pub mod backup;
pub(crate) mod btree;
pub mod crypto;
pub(crate) mod db;
mod error;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod pager;
pub mod storage;

pub use btree::node::MAX_KEY_LEN;
pub use crypto::slots::Credentials;
pub use crypto::{CipherBackend, CipherBackends, CipherId, KdfParams, MasterKey, Passphrase};
pub use db::api::{Batch, CompareAndSwapError, CompareAndSwapResult, DEFAULT_TREE, Db, Tree, open};
pub use db::config::{Config, Durability, ENV_KEY_FILE, ENV_PASSPHRASE, Encryption, MAX_WAL_CHECKPOINT_PAGES};
pub use db::engine::RecoveryReport;
pub use db::iter::Iter;
pub use db::ivec::IVec;
pub use db::merge::MergeOperator;
pub use db::txn::{ReadTransaction, ReadTree, TxTree, WriteTransaction};
pub use db::watch::{Event, Subscriber};
pub use error::{CorruptReason, Error, PageNo, Result};
pub use pager::metrics::Metrics;

/// The longest value accepted: 4 GiB - 1.
pub const MAX_VALUE_LEN: u64 = u32::MAX as u64;
pub use btree::salvage::LostRange;
pub use btree::verify::Problem;
pub use db::check::{CheckReport, SalvageReport, SalvagedPart, TreeReport, salvage};
pub use db::compact::CompactReport;
pub use db::keys::{EncryptionStatus, SlotInfo};
/// Migration between plaintext and encrypted mode, and import from sled 0.34.
pub use db::migrate;
pub use db::page_roles::{PageRole, PageRoles};
pub use format::header::SlotKind;
#[cfg(feature = "sled-import")]
/// Import from sled (feature `sled-import`).
pub mod import {
    pub use crate::db::migrate::from_sled;
}
#[cfg(feature = "tokio")]
pub use db::async_api::{AsyncDb, AsyncTree};
pub use db::sledtx::Transactional;

/// sled 0.34's `transaction` module: `Tree::transaction`, [`Transactional`] and their types.
pub mod transaction {
    pub use crate::db::sledtx::{
        ConflictableTransactionError, ConflictableTransactionResult, TransactionError, TransactionResult,
        Transactional, TransactionalTree, TransactionalTrees, UnabortableTransactionError,
        UnabortableTransactionResult, abort,
    };
}
pub use db::rekey::RekeyProgress;
