#![allow(clippy::type_complexity, clippy::too_many_arguments)]
//! foldvault
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
pub use crypto::{CipherBackend, CipherId, KdfParams, MasterKey, Passphrase};
pub use db::api::{Batch, CompareAndSwapError, CompareAndSwapResult, DEFAULT_TREE, Db, Iter, Tree, open};
pub use db::config::{Config, Durability, ENV_KEY_FILE, ENV_PASSPHRASE, Encryption};
pub use db::engine::RecoveryReport;
pub use db::ivec::IVec;
pub use db::txn::{ReadTransaction, ReadTree, TxTree, WriteTransaction};
pub use error::{CorruptReason, Error, PageNo, Result};
pub use pager::metrics::Metrics;

/// The longest value accepted: 4 GiB - 1.
pub const MAX_VALUE_LEN: u64 = u32::MAX as u64;
pub use btree::salvage::LostRange;
pub use btree::verify::Problem;
pub use db::check::{CheckReport, PageRole, SalvageReport, TreeReport, salvage};
pub use db::keys::{EncryptionStatus, SlotInfo};
/// Migration between plaintext and encrypted mode, and import from sled 0.34.
pub use db::migrate;
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
