//! The database layer: configuration, opening and recovery, the engine (snapshots, writer,
//! commits), explicit transactions, and the sled-compatible API on top.
//!
//! Layer: db, above `btree` and `pager`.

pub(crate) mod api;
#[cfg(feature = "tokio")]
pub(crate) mod async_api;
pub(crate) mod batch;
pub(crate) mod check;
pub(crate) mod checksum;
pub(crate) mod compact;
pub(crate) mod config;
pub(crate) mod engine;
pub(crate) mod iter;
pub(crate) mod ivec;
pub(crate) mod keys;
pub(crate) mod leftovers;
pub(crate) mod location;
pub(crate) mod merge;
pub mod migrate;
pub(crate) mod off_thread;
pub(crate) mod open;
pub(crate) mod page_roles;
pub(crate) mod rekey;
#[cfg(all(test, feature = "sled-import"))]
mod sled_diff_tests;
pub(crate) mod sledtx;
pub(crate) mod tree_map;
pub(crate) mod txn;
pub(crate) mod watch;
