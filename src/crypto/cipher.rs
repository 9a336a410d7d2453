//! AEAD backends behind one small trait. RustCrypto's `aes-gcm` is always built (AES-NI and
//! CLMUL detected at run time, constant-time bitsliced fallback otherwise); the `ring` feature
//! (on by default) adds ring's AES-GCM, the `aws-lc` feature aws-lc-rs's (with both built, the
//! faster of the two on the CPU at hand is the default backend: `fastest.rs`), the `chacha`
//! feature ChaCha20-Poly1305. All produce the same bytes for the same key, nonce, AAD and
//! plaintext, so the page format never depends on the backend, and pages may be sealed on one
//! and opened on another (`CipherBackends`, `new_page_aead`).
//!
//! Expanded key schedules are wiped when a cipher drops: RustCrypto's by the `aes`, `ghash`,
//! `polyval` and `chacha20` crates (their `zeroize` features); aws-lc's when it frees its
//! context. ring wipes nothing, so its key lives alone in a heap block that
//! `WipedOnDrop` zeroes before freeing. Every cipher is built in the `Arc` it lives in, and the
//! stack its key setup used is overwritten (`burn_stack`) before `new_aead` returns.

use std::sync::Arc;

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

/// Which implementation performs AES-256-GCM. All produce identical pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CipherBackend {
    /// RustCrypto `aes-gcm` (pure Rust; the default when neither `ring` nor `aws-lc` is built).
    RustCrypto,
    /// aws-lc-rs (feature `aws-lc`; AWS-LC, whose FIPS-validated build is
    /// aws-lc-rs's `fips` feature, not used here): its AVX-512 AES-GCM is the fastest on a CPU
    /// that has it (BENCHMARKS.md); it has no VAES-AVX2 code, so without AVX-512 it runs AES-NI
    /// with CLMUL.
    AwsLc,
    /// ring (feature `ring`, on by default): its VAES-AVX2 AES-GCM opens a page in about half
    /// aws-lc's time on a CPU with VAES and without AVX-512 (BENCHMARKS.md).
    Ring,
}

impl Default for CipherBackend {
    /// The fastest AES-GCM backend this build includes on this CPU, timed once per process
    /// (`fastest.rs`): all produce the same pages, and which is fastest depends on the CPU.
    fn default() -> Self {
        super::fastest::fastest_backend()
    }
}

impl CipherBackend {
    /// The AES-GCM backends this build includes.
    pub fn available() -> Vec<CipherBackend> {
        [
            Some(CipherBackend::RustCrypto),
            cfg!(feature = "ring").then_some(CipherBackend::Ring),
            cfg!(feature = "aws-lc").then_some(CipherBackend::AwsLc),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

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

/// The AES-GCM backends pages are sealed and opened with. Every backend makes the same bytes
/// (SPEC §3), so the two directions may run on different ones: on some CPUs one library seals
/// a page faster and the other opens one faster (BENCHMARKS.md, twenty-fifth session).
/// `Default` is the fastest at each direction among those built, timed once per process
/// (`fastest.rs`); `Config::cipher_backend` names one backend for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CipherBackends {
    /// The backend that seals pages (commits, checkpoints, backups).
    pub seal: CipherBackend,
    /// The backend that opens pages (every read that misses the cache, recovery, verify).
    pub open: CipherBackend,
}

impl CipherBackends {
    /// One backend for both directions.
    pub fn both(b: CipherBackend) -> CipherBackends {
        CipherBackends { seal: b, open: b }
    }
}

impl From<CipherBackend> for CipherBackends {
    fn from(b: CipherBackend) -> CipherBackends {
        CipherBackends::both(b)
    }
}

impl Default for CipherBackends {
    /// The fastest sealer and the fastest opener this build includes on this CPU, timed once
    /// per process (`fastest.rs`).
    fn default() -> Self {
        super::fastest::fastest_backends()
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

/// Builds a keyed AEAD for `cipher` on `backend`, in the one heap block it will live in (an
/// `Arc` made from a `Box` would copy the key schedule and free the box unwiped). The key
/// setup runs in `build_aead`'s frame and below; those stack bytes (copies of the key schedule
/// on their way to the heap) are overwritten before this returns.
pub(crate) fn new_aead(cipher: CipherId, backend: CipherBackend, key: &SecretKey) -> Result<Arc<dyn Aead>> {
    let aead = build_aead(cipher, backend, key);
    burn_stack();
    aead
}

/// The page AEAD for `cipher` under `key`: on `backends.seal` for sealing and on
/// `backends.open` for opening. With one backend for both (or a cipher other than AES-GCM,
/// which has one implementation) it is `new_aead`'s; otherwise two keyed ciphers, each built
/// and wiped as `new_aead` builds and wipes one.
pub(crate) fn new_page_aead(cipher: CipherId, backends: CipherBackends, key: &SecretKey) -> Result<Arc<dyn Aead>> {
    if backends.seal == backends.open || cipher != CipherId::Aes256Gcm {
        return new_aead(cipher, backends.seal, key);
    }
    Ok(Arc::new(SplitAead { seal: new_aead(cipher, backends.seal, key)?, open: new_aead(cipher, backends.open, key)? }))
}

/// Seals on one backend and opens on another, under the same key.
struct SplitAead {
    seal: Arc<dyn Aead>,
    open: Arc<dyn Aead>,
}

impl Aead for SplitAead {
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> Result<[u8; 16]> {
        self.seal.seal(nonce, aad, buf)
    }
    fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> bool {
        self.open.open(nonce, aad, buf, tag)
    }
    fn open_tagged(&self, nonce: &[u8; 12], aad: &[u8], ct_and_tag: &mut [u8]) -> bool {
        self.open.open_tagged(nonce, aad, ct_and_tag)
    }
}

#[inline(never)]
fn build_aead(cipher: CipherId, backend: CipherBackend, key: &SecretKey) -> Result<Arc<dyn Aead>> {
    match (cipher, backend) {
        (CipherId::Aes256Gcm, CipherBackend::RustCrypto) => Ok(Arc::new(RustCryptoAesGcm::new(key))),
        #[cfg(feature = "aws-lc")]
        (CipherId::Aes256Gcm, CipherBackend::AwsLc) => Ok(Arc::new(aws::AwsLcAesGcm::new(key)?)),
        #[cfg(not(feature = "aws-lc"))]
        (CipherId::Aes256Gcm, CipherBackend::AwsLc) => {
            Err(Error::Unsupported("this build lacks the aws-lc feature".into()))
        }
        #[cfg(feature = "ring")]
        (CipherId::Aes256Gcm, CipherBackend::Ring) => Ok(Arc::new(ring_gcm::RingAesGcm::new(key)?)),
        #[cfg(not(feature = "ring"))]
        (CipherId::Aes256Gcm, CipherBackend::Ring) => {
            Err(Error::Unsupported("this build lacks the ring feature".into()))
        }
        #[cfg(feature = "chacha")]
        (CipherId::ChaCha20Poly1305, _) => Ok(Arc::new(chacha::ChaCha::new(key))),
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
        use aes_gcm::aead::AeadInOut;
        let tag = self
            .0
            .encrypt_inout_detached(nonce.into(), aad, buf.into())
            .map_err(|_| Error::ReportableBug("AES-GCM seal failed".into()))?;
        Ok(tag.into())
    }
    fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> bool {
        use aes_gcm::aead::AeadInOut;
        self.0.decrypt_inout_detached(nonce.into(), aad, buf.into(), tag.into()).is_ok()
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
            tag_array(tag.as_ref())
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

/// A 16-byte tag as the array the trait returns (aws-lc and ring hand it as a slice).
#[cfg(any(feature = "aws-lc", feature = "ring"))]
fn tag_array(tag: &[u8]) -> Result<[u8; 16]> {
    tag.try_into().map_err(|_| Error::ReportableBug("an AEAD tag not of 16 bytes".into()))
}

#[cfg(feature = "ring")]
/// A value alone in a heap block that is zeroed before it is freed, for a type that does not
/// wipe itself (ring's keys). The block is a `Vec` of capacity one: dropping the value leaves
/// its bytes in the vector's spare capacity, which `zeroize` overwrites; no `unsafe`.
struct WipedOnDrop<T>(Vec<T>);

#[cfg(feature = "ring")]
impl<T> WipedOnDrop<T> {
    fn new(value: T) -> Self {
        // `vec![x]` allocates exactly one element's room.
        WipedOnDrop(vec![value])
    }

    /// The value (always present until drop).
    fn get(&self) -> Option<&T> {
        self.0.first()
    }
}

#[cfg(feature = "ring")]
impl<T> Drop for WipedOnDrop<T> {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.0.clear();
        // Key material: `zeroize`'s volatile stores, as for every key (not `crypto::wipe`'s
        // memset, which is for plaintext buffers).
        self.0.spare_capacity_mut().zeroize();
    }
}

/// Overwrites the 16 KiB of stack below the caller's frame, where a callee that just returned
/// (a key setup) left copies of what it computed. Key setups use a few KiB at most.
#[inline(never)]
fn burn_stack() {
    let mut scratch = [0u8; 16 * 1024];
    std::hint::black_box(&mut scratch);
}

#[cfg(feature = "ring")]
mod ring_gcm {
    use super::*;
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

    /// ring's key schedule in a block of its own, zeroed when it is freed (`new_aead` burns the
    /// stack the setup used).
    pub(super) struct RingAesGcm(WipedOnDrop<LessSafeKey>);

    impl RingAesGcm {
        pub(super) fn new(key: &SecretKey) -> Result<Self> {
            let k = UnboundKey::new(&AES_256_GCM, key.expose())
                .map_err(|_| Error::ReportableBug("ring key setup failed".into()))?;
            Ok(RingAesGcm(WipedOnDrop::new(LessSafeKey::new(k))))
        }

        fn key(&self) -> Result<&LessSafeKey> {
            self.0.get().ok_or_else(|| Error::ReportableBug("ring key missing".into()))
        }
    }

    impl Aead for RingAesGcm {
        fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> Result<[u8; 16]> {
            let tag = self
                .key()?
                .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
                .map_err(|_| Error::ReportableBug("ring seal failed".into()))?;
            tag_array(tag.as_ref())
        }
        fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> bool {
            let Ok(k) = self.key() else { return false };
            k.open_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), (*tag).into(), buf, 0..)
                .is_ok()
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod memory_tests {
    use super::*;
    use crate::crypto::memscan;

    /// Each backend's expanded key is in memory while its cipher lives and nowhere (heap or
    /// stack) once it drops. The needle is the key's second half: AES-256's second round key,
    /// which every AES-NI key schedule stores verbatim (the first can be overwritten by the
    /// allocator's free-list links when the block is freed). The cipher is built as the page
    /// path builds it (`new_aead`, an `Arc`).
    ///
    /// Two positive controls. On every CPU, the same scan must find the needle planted in a heap
    /// block once the check has run (so a 0 comes from a scan that sees heap blocks). With AES
    /// instructions, it must also find the live schedule before the drop. That one cannot run
    /// without them: the software schedules keep no round key verbatim (RustCrypto's fixsliced
    /// `aes::soft`, ring's and aws-lc's vpaes and bitsliced code hold them transformed), so no
    /// scan can find one. There the check after the drop shows only that no verbatim copy of the
    /// key's second half (the key as the setup copied it) was left behind.
    #[test]
    fn a_dropped_cipher_leaves_no_key_schedule() {
        for backend in CipherBackend::available() {
            let (aead, masked) = cipher_under_fresh_key(backend);
            let mut buf = [7u8; 64];
            let tag = aead.seal(&[1; 12], b"ad", &mut buf).expect("seal");
            assert!(aead.open(&[1; 12], b"ad", &mut buf, &tag));
            // What a seal or open leaves on the stack (an unoptimised build copies round keys
            // into locals) is the stack of a call, which SPEC §14 leaves uncontrolled.
            burn_stack();
            if CipherBackend::hardware_aes() {
                assert!(
                    memscan::seen_in_memory(&masked),
                    "{backend:?}: the scan does not see the live key schedule (test broken)"
                );
            }
            drop(aead);
            assert_eq!(memscan::count_in_memory(&masked), 0, "{backend:?}: key schedule left in memory after drop");
            assert!(
                seen_planted_on_the_heap(&masked),
                "{backend:?}: the scan does not see a planted heap copy (test broken)"
            );
        }
    }

    /// The stack a key setup used is overwritten before `new_aead` returns (nothing else runs
    /// between the setup and the scan here). The positive control comes after the check: the
    /// same scan must find the same needle planted in a buffer on this thread's stack, below
    /// this frame where the setup ran. Before the check it could not show that: the key itself
    /// (in its own locked mapping) holds the needle until the cipher is built, and a control run
    /// between the setup and the scan would overwrite the stack the check looks at.
    #[test]
    fn a_key_setup_leaves_nothing_on_the_stack() {
        for backend in CipherBackend::available() {
            let (aead, masked) = cipher_under_fresh_key(backend);
            drop(aead);
            assert_eq!(memscan::count_in_memory(&masked), 0, "{backend:?}: key setup left its schedule behind");
            assert!(
                seen_planted_on_the_stack(&masked),
                "{backend:?}: the scan does not see a copy planted on the stack (test broken)"
            );
        }
    }

    /// Whether the scan sees the unmasked needle planted in a buffer on this thread's stack (in
    /// this function's frame, below its caller's, where a key setup called from there runs).
    /// The buffer is wiped before this returns.
    #[inline(never)]
    fn seen_planted_on_the_stack(masked: &[u8]) -> bool {
        use zeroize::Zeroize;
        let mut planted = [0u8; 64];
        assert!(masked.len() <= planted.len(), "a needle longer than the planted buffer");
        for (p, m) in planted.iter_mut().zip(masked) {
            *p = m ^ memscan::MASK;
        }
        std::hint::black_box(&mut planted);
        let seen = memscan::seen_in_memory(masked);
        planted.zeroize();
        std::hint::black_box(&planted);
        seen
    }

    /// Whether the scan sees the unmasked needle planted in a heap block of its own (wiped when
    /// it is freed, before this returns).
    #[inline(never)]
    fn seen_planted_on_the_heap(masked: &[u8]) -> bool {
        let planted = zeroize::Zeroizing::new(masked.iter().map(|m| m ^ memscan::MASK).collect::<Vec<u8>>());
        std::hint::black_box(&planted);
        memscan::seen_in_memory(masked)
    }

    /// A cipher on `backend` under a random key (the key itself dropped), and the key's
    /// second half masked for the scanner. Only `new_aead` cleans the stack after the setup.
    fn cipher_under_fresh_key(backend: CipherBackend) -> (Arc<dyn Aead>, Vec<u8>) {
        let (key, masked) = fresh_key();
        // The stack the key was made on, not the one the cipher's setup will use.
        burn_stack();
        let aead = new_aead(CipherId::Aes256Gcm, backend, &key).expect("aead");
        (aead, masked)
    }

    /// A random key, and its second half masked for the scanner.
    #[inline(never)]
    fn fresh_key() -> (SecretKey, Vec<u8>) {
        let key = SecretKey::random();
        let masked = key.expose()[16..].iter().map(|b| b ^ memscan::MASK).collect();
        (key, masked)
    }
}
