//! `PageCipherBench`: seals and opens one page with a fresh random key, for the `primitives`
//! benchmark (the page sealer itself is crate-private).
//!
//! Layer: crypto. Nothing secret crosses this API: the key is generated inside, lives in locked
//! memory and is wiped with the value; callers see only sealed pages and the plaintext they
//! put in themselves.

use super::keys::SecretKey;
use super::seal::{DataKeys, KeyPurpose, PageBuf, PageSealer};
use super::{CipherBackend, CipherId};
use crate::error::Result;

/// A page sealer under a random key (or plaintext CRC32 mode), for benchmarks.
pub struct PageCipherBench {
    sealer: PageSealer,
}

impl PageCipherBench {
    /// AES-256-GCM on `backend`, under a fresh random key.
    pub fn aes_gcm(backend: CipherBackend) -> PageCipherBench {
        let keys = DataKeys::single(SecretKey::random());
        PageCipherBench { sealer: PageSealer::encrypted([7; 16], CipherId::Aes256Gcm, backend, keys, 0) }
    }

    /// Plaintext mode: a CRC32 check value instead of a tag.
    pub fn plaintext() -> PageCipherBench {
        PageCipherBench { sealer: PageSealer::plaintext([7; 16]) }
    }

    /// Seals `page`'s payload in place as page 42 (fresh random nonce), filling the trailer.
    pub fn seal(&self, page: &mut PageBuf) -> Result<()> {
        self.sealer.seal(KeyPurpose::Page, 42, 0, page).map(|_| ())
    }

    /// Opens a page sealed by `seal` in place (tag verified).
    pub fn open(&self, page: &mut PageBuf) -> Result<()> {
        self.sealer.open(KeyPurpose::Page, 42, page).map(|_| ())
    }
}
