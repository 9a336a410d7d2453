//! foldvault
mod error;
pub mod storage;
pub use error::{CorruptReason, Error, PageNo, Result};
pub mod crypto;
pub mod format;
pub(crate) mod pager;
