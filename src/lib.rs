//! foldvault
mod error;
pub mod storage;
pub mod crypto;
pub mod format;
pub(crate) mod pager;
pub(crate) mod btree;
pub(crate) mod db;

pub use btree::node::MAX_KEY_LEN;
pub use db::api::{open, Batch, CompareAndSwapError, CompareAndSwapResult, Db, Iter, Tree, DEFAULT_TREE};
pub use db::config::{Config, Durability, Encryption, ENV_KEY_FILE, ENV_PASSPHRASE};
pub use db::engine::RecoveryReport;
pub use db::ivec::IVec;
pub use db::txn::{ReadTransaction, ReadTree, TxTree, WriteTransaction};
pub use error::{CorruptReason, Error, PageNo, Result};
pub use pager::metrics::Metrics;
pub use crypto::{CipherBackend, CipherId, KdfParams, MasterKey, Passphrase};
pub use crypto::slots::Credentials;

/// The longest value accepted: 4 GiB - 1.
pub const MAX_VALUE_LEN: u64 = u32::MAX as u64;
