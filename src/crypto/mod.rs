//! Crypto: key types, key derivation, key slots, and the sealing of pages.
//!
//! Layer: crypto (beside `format`, above `storage`). May call `format` for trailer offsets and
//! the AAD; never does I/O. Invariants:
//! - every secret lives in a type that zeroizes on drop and prints as `[redacted]`;
//! - secrets are moved, never cloned by a derived `Clone`;
//! - a nonce is drawn from a CSPRNG for every seal; a key is never used for more seals than the
//!   budget in SPEC.md §6 (the pager counts and rolls epochs over);
//! - the page format does not depend on which backend sealed a page (tests check that both
//!   backends open each other's pages).

pub mod cipher;
mod fastest;
pub mod kdf;
pub mod keys;
pub mod locked;
pub mod page_bench;
pub mod seal;
pub mod secret_file;
pub mod slots;
pub mod wipe;

pub use cipher::{CipherBackend, CipherId};
pub use kdf::KdfParams;
pub use keys::{MasterKey, Passphrase};

/// The process-memory scanner of tests/secret_memory.rs, for the unit tests that look for keys
/// left behind (`cipher::memory_tests`, `db::keys::memory_tests`).
#[cfg(all(test, target_os = "linux"))]
#[path = "../../tests/common/memscan.rs"]
pub(crate) mod memscan;
