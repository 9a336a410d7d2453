//! AEAD backends behind one small trait. The default is RustCrypto's `aes-gcm` (AES-NI and
//! CLMUL detected at run time, constant-time bitsliced fallback otherwise); the `aws-lc`
//! feature adds aws-lc-rs; the `chacha` feature adds ChaCha20-Poly1305. All produce the same
//! bytes for the same key, nonce, AAD and plaintext, so the page format never depends on the
//! backend. Expanded key schedules are zeroized on drop by the backends themselves
//! (`aes`/`chacha20` with their `zeroize` features; aws-lc clears its contexts on free).

use super::keys::SecretKey;
use crate::error::{Error, Result};

/// The cipher stored in the file header (SPEC.md §2, `cipher` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CipherId {
    /// Plaintext mode: CRC32 instead of an AEAD.
    None = 0,
    Aes256Gcm = 1,
    ChaCha20Poly1305 = 2,
}

impl CipherId {
    pub fn from_byte(b: u8) -> Option<CipherId> {
        match b {
            0 => Some(CipherId::None),
            1 => Some(CipherId::Aes256Gcm),
            2 => Some(CipherId::ChaCha20Poly1305),
            _ => None,
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            CipherId::None => "none (plaintext, CRC32)",
            CipherId::Aes256Gcm => "aes-256-gcm",
            CipherId::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }
}

/// Which implementation performs AES-256-GCM. Both produce identical pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherBackend {
    /// RustCrypto `aes-gcm` (pure Rust; the default without the `aws-lc` feature).
    RustCrypto,
    /// aws-lc-rs (feature `aws-lc`, on by default: the faster one on this class of machine).
    AwsLc,
}

impl Default for CipherBackend {
    fn default() -> Self {
        if cfg!(feature = "aws-lc") { CipherBackend::AwsLc } else { CipherBackend::RustCrypto }
    }
}

impl CipherBackend {
    /// Whether the CPU's AES instructions are in use (else a constant-time software fallback).
    pub fn hardware_aes() -> bool {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        {
            std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
        }
        #[cfg(target_arch = "aarch64")]
        {
            std::arch::is_aarch64_feature_detected!("aes")
        }
        #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
        {
            false
        }
    }
}

/// An AEAD with a 96-bit nonce and a 128-bit tag, keyed once.
pub(crate) trait Aead: Send + Sync {
    /// Encrypts `buf` in place and returns the tag.
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> Result<[u8; 16]>;
    /// Decrypts `buf` in place if the tag verifies; returns false (buffer unspecified) if not.
    fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> bool;
    /// Like `open`, for a buffer of ciphertext followed by its 16-byte tag (a page's payload
    /// and tag are adjacent). The tag bytes are left as they were.
    fn open_tagged(&self, nonce: &[u8; 12], aad: &[u8], ct_and_tag: &mut [u8]) -> bool {
        let Some(split) = ct_and_tag.len().checked_sub(16) else { return false };
        let (ct, t) = ct_and_tag.split_at_mut(split);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(t);
        self.open(nonce, aad, ct, &tag)
    }
}

/// Builds a keyed AEAD for `cipher` on `backend`.
pub(crate) fn new_aead(cipher: CipherId, backend: CipherBackend, key: &SecretKey) -> Result<Box<dyn Aead>> {
    match (cipher, backend) {
        (CipherId::Aes256Gcm, CipherBackend::RustCrypto) => Ok(Box::new(RustCryptoAesGcm::new(key))),
        #[cfg(feature = "aws-lc")]
        (CipherId::Aes256Gcm, CipherBackend::AwsLc) => Ok(Box::new(aws::AwsLcAesGcm::new(key)?)),
        #[cfg(not(feature = "aws-lc"))]
        (CipherId::Aes256Gcm, CipherBackend::AwsLc) => {
            Err(Error::Unsupported("this build lacks the aws-lc feature".into()))
        }
        #[cfg(feature = "chacha")]
        (CipherId::ChaCha20Poly1305, _) => Ok(Box::new(chacha::ChaCha::new(key))),
        #[cfg(not(feature = "chacha"))]
        (CipherId::ChaCha20Poly1305, _) => {
            Err(Error::Unsupported("this build lacks the chacha feature (ChaCha20-Poly1305)".into()))
        }
        (CipherId::None, _) => Err(Error::ReportableBug("AEAD requested in plaintext mode".into())),
    }
}

struct RustCryptoAesGcm(aes_gcm::Aes256Gcm);

impl RustCryptoAesGcm {
    fn new(key: &SecretKey) -> Self {
        use aes_gcm::KeyInit;
        RustCryptoAesGcm(aes_gcm::Aes256Gcm::new(key.expose().into()))
    }
}

impl Aead for RustCryptoAesGcm {
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> Result<[u8; 16]> {
        use aes_gcm::AeadInPlace;
        let tag = self
            .0
            .encrypt_in_place_detached(nonce.into(), aad, buf)
            .map_err(|_| Error::ReportableBug("AES-GCM seal failed".into()))?;
        Ok(tag.into())
    }
    fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> bool {
        use aes_gcm::AeadInPlace;
        self.0.decrypt_in_place_detached(nonce.into(), aad, buf, tag.into()).is_ok()
    }
}

#[cfg(feature = "chacha")]
mod chacha {
    use super::*;
    pub(super) struct ChaCha(chacha20poly1305::ChaCha20Poly1305);
    impl ChaCha {
        pub(super) fn new(key: &SecretKey) -> Self {
            use chacha20poly1305::KeyInit;
            ChaCha(chacha20poly1305::ChaCha20Poly1305::new(key.expose().into()))
        }
    }
    impl Aead for ChaCha {
        fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> Result<[u8; 16]> {
            use chacha20poly1305::AeadInPlace;
            let tag = self
                .0
                .encrypt_in_place_detached(nonce.into(), aad, buf)
                .map_err(|_| Error::ReportableBug("ChaCha20-Poly1305 seal failed".into()))?;
            Ok(tag.into())
        }
        fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> bool {
            use chacha20poly1305::AeadInPlace;
            self.0.decrypt_in_place_detached(nonce.into(), aad, buf, tag.into()).is_ok()
        }
    }
}

#[cfg(feature = "aws-lc")]
mod aws {
    use super::*;
    use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    pub(super) struct AwsLcAesGcm(LessSafeKey);
    impl AwsLcAesGcm {
        pub(super) fn new(key: &SecretKey) -> Result<Self> {
            let k = UnboundKey::new(&AES_256_GCM, key.expose())
                .map_err(|_| Error::ReportableBug("aws-lc key setup failed".into()))?;
            Ok(AwsLcAesGcm(LessSafeKey::new(k)))
        }
    }
    impl Aead for AwsLcAesGcm {
        fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> Result<[u8; 16]> {
            let tag = self
                .0
                .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
                .map_err(|_| Error::ReportableBug("aws-lc seal failed".into()))?;
            let mut t = [0u8; 16];
            t.copy_from_slice(tag.as_ref());
            Ok(t)
        }
        fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> bool {
            let ct = buf.to_vec();
            self.0.open_separate_gather(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), &ct, tag, buf).is_ok()
        }
        /// In place, with no copy of the ciphertext (the page path).
        fn open_tagged(&self, nonce: &[u8; 12], aad: &[u8], ct_and_tag: &mut [u8]) -> bool {
            self.0.open_in_place(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), ct_and_tag).is_ok()
        }
    }
}
