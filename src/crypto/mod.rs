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
pub mod kdf;
pub mod keys;
pub mod locked;
pub mod seal;
pub mod slots;

pub use cipher::{CipherBackend, CipherId};
pub use kdf::KdfParams;
pub use keys::{MasterKey, Passphrase};

/// The data key of an open database, XOR-masked with 0xA5 — for the memory-scan test only
/// (it must never hold the key in the clear itself).
#[doc(hidden)]
pub fn __data_key_for_tests(db: &crate::Db) -> [u8; 32] {
    db.handle.engine.pager.sealer.with_data_key(|k| {
        let mut out = [0u8; 32];
        if let Some(k) = k {
            for (o, b) in out.iter_mut().zip(k.expose()) {
                *o = b ^ 0xA5;
            }
        }
        out
    })
}
