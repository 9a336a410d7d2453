//! Crypto: key types, key derivation, key slots, and the sealing of pages.
//!
//! Layer: crypto (beside `format`, above `storage`). May call `format` for trailer offsets and
//! the AAD; does no I/O on a database file (`secret_file` reads key and passphrase files,
//! `locked` maps and locks memory for keys). Invariants:
//! - every secret lives in a type that zeroizes on drop and prints as `[redacted]`;
//! - secrets are moved, never cloned by a derived `Clone`;
//! - a nonce is drawn from a CSPRNG for every seal; a key is used for at most the budget in
//!   SPEC.md §6.3 plus one transaction's seals (the pager counts seals, the engine moves to the
//!   next epoch at `begin`);
//! - the page format does not depend on which backend sealed a page (tests check that every
//!   backend opens every other's pages).

pub mod cipher;
mod fastest;
pub mod kdf;
pub mod keys;
pub mod locked;
pub(crate) mod nonce;
pub mod page_bench;
pub mod seal;
pub mod secret_file;
pub mod slots;
pub mod wipe;

pub use cipher::{CipherBackend, CipherBackends, CipherId};
pub use kdf::KdfParams;
pub use keys::{MasterKey, Passphrase};

/// The process-memory scanner of tests/secret_memory.rs, for the unit tests that look for keys
/// left behind (`cipher::memory_tests`, `db::keys::memory_tests`).
#[cfg(all(test, target_os = "linux"))]
#[path = "../../tests/common/memscan.rs"]
pub(crate) mod memscan;
