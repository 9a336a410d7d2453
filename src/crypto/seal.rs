//! `seal_page` / `open_page`: the only code that turns a page's plaintext into the bytes on
//! disk and back. SPEC.md §3 (layout, AAD) and §6 (keys, nonces, epochs).
//!
//! Invariants: a fresh 96-bit nonce for every seal (`crypto::nonce`: ChaCha12 per thread,
//! seeded from the OS, reseeded periodically and in a forked child); the AAD binds the file id, the page number,
//! the key epoch and the format version, so a page cannot be moved to another position, another
//! file or another epoch; a page that fails to open is reported as `Corrupt { page,
//! SealMismatch }` and its bytes are never returned.

use std::sync::Arc;

use parking_lot::RwLock;
use rand::RngCore;

use super::cipher::{Aead, CipherBackend, CipherBackends, CipherId, new_aead, new_page_aead};
use super::keys::{SecretKey, context};
use crate::error::{CorruptReason, Error, PageNo, Result};
use crate::format::PAGE_SIZE;
use crate::format::page::{EPOCH_OFFSET, NONCE_OFFSET, NONCE_SIZE, PAYLOAD_SIZE, SealTag, TAG_OFFSET, TAG_SIZE, aad};

// `open` hands the AEAD the payload and the tag that follows it as one slice.
const _: () = assert!(TAG_OFFSET == PAYLOAD_SIZE);

/// A page-sized buffer.
pub type PageBuf = [u8; PAGE_SIZE];

/// What a seal is for: tree/overflow/free-list pages, or commit records. Each purpose has its
/// own subkey per epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum KeyPurpose {
    Page,
    Commit,
}

/// The data keys of a file: normally one; two while a rekey moves pages from the old to the new,
/// and for a while after it: until no live snapshot can reach a page under the old key.
/// Epochs `>= first_epoch` of an entry derive from that entry's key.
pub(crate) struct DataKeys {
    /// Sorted by `first_epoch`, ascending.
    keys: Vec<(u32, SecretKey)>,
    /// The first epoch of the key the header's slots wrap: the oldest while a rekey runs, the
    /// newest once it has re-wrapped the slots.
    slot_first: u32,
}

impl DataKeys {
    pub(crate) fn single(k: SecretKey) -> DataKeys {
        DataKeys { keys: vec![(0, k)], slot_first: 0 }
    }
    fn for_epoch(&self, epoch: u32) -> Option<&SecretKey> {
        self.keys.iter().rev().find(|(first, _)| *first <= epoch).map(|(_, k)| k)
    }
    /// The key the header's slots wrap.
    pub(crate) fn slot_key(&self) -> Option<&SecretKey> {
        self.keys.iter().find(|(first, _)| *first == self.slot_first).map(|(_, k)| k)
    }

    /// A rekey starts: `key` seals every epoch from `first` on (the slots still wrap the old).
    pub(crate) fn add_next(&mut self, first: u32, key: SecretKey) {
        self.keys.retain(|(f, _)| *f < first);
        self.keys.push((first, key));
    }

    /// A rekey has re-wrapped every slot around the newest key.
    pub(crate) fn slots_wrap_newest(&mut self) {
        if let Some((first, _)) = self.keys.last() {
            self.slot_first = *first;
        }
    }

    /// Destroys every key older than the one starting at epoch `first` (no live snapshot
    /// reaches a page under them any more): their epochs no longer open.
    fn retire_before(&mut self, first: u32) {
        self.keys.retain(|(f, _)| *f >= first);
    }

    /// How many data keys are held (2 or more while a rekey runs or its old key waits for
    /// readers).
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key the newest epochs derive from, and its first epoch.
    pub(crate) fn newest(&self) -> Option<(u32, &SecretKey)> {
        self.keys.last().map(|(e, k)| (*e, k))
    }

    /// Unwraps a rekey's next data key from the header (SPEC.md §6.4): AES-256-GCM under
    /// BLAKE3 `derive_key(REKEY_WRAP, slot key ‖ file id)`, AAD = file id ‖ first epoch.
    pub(crate) fn with_next(
        slot_key: SecretKey,
        file_id: &[u8; 16],
        next: Option<&crate::format::header::NextKey>,
    ) -> Result<DataKeys> {
        let Some(n) = next else { return Ok(DataKeys::single(slot_key)) };
        let wrap = slot_key.derive(super::keys::context::REKEY_WRAP, file_id);
        let aead = new_aead(CipherId::Aes256Gcm, CipherBackend::RustCrypto, &wrap)?;
        let mut ad = [0u8; 20];
        ad[..16].copy_from_slice(file_id);
        ad[16..].copy_from_slice(&n.first_epoch.to_le_bytes());
        let mut k = zeroize::Zeroizing::new(n.wrapped);
        if !aead.open(&n.nonce, &ad, &mut k[..], &n.tag) {
            return Err(Error::corrupt(0, CorruptReason::HeaderMac));
        }
        Ok(DataKeys { keys: vec![(0, slot_key), (n.first_epoch, SecretKey::from_bytes(*k))], slot_first: 0 })
    }

    /// Wraps `next` for the header's next-key block.
    pub(crate) fn wrap_next(
        slot_key: &SecretKey,
        file_id: &[u8; 16],
        first_epoch: u32,
        next: &SecretKey,
    ) -> Result<crate::format::header::NextKey> {
        let wrap = slot_key.derive(super::keys::context::REKEY_WRAP, file_id);
        let aead = new_aead(CipherId::Aes256Gcm, CipherBackend::RustCrypto, &wrap)?;
        let mut ad = [0u8; 20];
        ad[..16].copy_from_slice(file_id);
        ad[16..].copy_from_slice(&first_epoch.to_le_bytes());
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        // The copy is plaintext key until sealed: wiped if the seal fails.
        let mut wrapped = zeroize::Zeroizing::new(*next.expose());
        let tag = aead.seal(&nonce, &ad, &mut wrapped[..])?;
        Ok(crate::format::header::NextKey { first_epoch, nonce, wrapped: *wrapped, tag })
    }
}

enum Mode {
    Plain,
    Aead { cipher: CipherId, backends: CipherBackends, keys: RwLock<DataKeys> },
}

/// A keyed AEAD for one (purpose, epoch).
type AeadEntry = ((KeyPurpose, u32), Arc<dyn Aead>);

/// Most keyed AEADs a sealer keeps (two purposes of sixteen epochs).
const MAX_AEADS: usize = 32;

/// Seals and opens pages of one file.
pub(crate) struct PageSealer {
    file_id: [u8; 16],
    /// The file's format version, bound into every AAD.
    version: u16,
    mode: Mode,
    /// Keyed AEADs per (purpose, epoch), built on first use; at most `MAX_AEADS`, the oldest
    /// built dropped first (it is built again if asked for).
    aeads: RwLock<Vec<AeadEntry>>,
    /// Epochs above this are refused without deriving a key (a hostile epoch field would
    /// otherwise make us derive keys without bound).
    max_epoch: std::sync::atomic::AtomicU32,
}

impl PageSealer {
    pub(crate) fn plaintext(file_id: [u8; 16]) -> PageSealer {
        PageSealer {
            file_id,
            version: crate::format::FORMAT_VERSION,
            mode: Mode::Plain,
            aeads: RwLock::new(Vec::new()),
            max_epoch: u32::MAX.into(),
        }
    }

    pub(crate) fn encrypted(
        file_id: [u8; 16],
        cipher: CipherId,
        backends: impl Into<CipherBackends>,
        keys: DataKeys,
        max_epoch: u32,
    ) -> PageSealer {
        let backends = backends.into();
        PageSealer {
            file_id,
            version: crate::format::FORMAT_VERSION,
            mode: Mode::Aead { cipher, backends, keys: RwLock::new(keys) },
            aeads: RwLock::new(Vec::new()),
            max_epoch: max_epoch.into(),
        }
    }

    /// Seals and opens as format version `v` (the version in the file's header).
    pub(crate) fn with_version(mut self, v: u16) -> PageSealer {
        self.version = v;
        self
    }

    /// The format version pages are sealed and opened as (the file's).
    pub(crate) fn version(&self) -> u16 {
        self.version
    }

    pub(crate) fn is_encrypted(&self) -> bool {
        matches!(self.mode, Mode::Aead { .. })
    }

    pub(crate) fn file_id(&self) -> &[u8; 16] {
        &self.file_id
    }

    pub(crate) fn max_epoch(&self) -> u32 {
        self.max_epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn set_max_epoch(&self, e: u32) {
        self.max_epoch.store(e, std::sync::atomic::Ordering::Release);
    }

    /// Runs `f` with the data key the header's slots wrap (None in plaintext mode).
    pub(crate) fn with_data_key<T>(&self, f: impl FnOnce(Option<&SecretKey>) -> T) -> T {
        match &self.mode {
            Mode::Plain => f(None),
            Mode::Aead { keys, .. } => f(keys.read().slot_key()),
        }
    }

    /// The AES-GCM backends this sealer's AEADs seal and open on (None in plaintext mode).
    pub(crate) fn backends(&self) -> Option<CipherBackends> {
        match &self.mode {
            Mode::Plain => None,
            Mode::Aead { backends, .. } => Some(*backends),
        }
    }

    /// Runs `f` with all data keys (None in plaintext mode).
    pub(crate) fn with_keys<T>(&self, f: impl FnOnce(Option<&DataKeys>) -> T) -> T {
        match &self.mode {
            Mode::Plain => f(None),
            Mode::Aead { keys, .. } => f(Some(&keys.read())),
        }
    }

    /// Changes the data keys in place (a rekey adds the next key, then moves the slots to it).
    /// The epochs that open stay the same, so cached AEADs stay valid.
    pub(crate) fn update_data_keys(&self, f: impl FnOnce(&mut DataKeys)) {
        if let Mode::Aead { keys, .. } = &self.mode {
            f(&mut keys.write());
        }
    }

    /// Adds the key a rotation starts with, serving epochs from `first` on, and drops every
    /// cached AEAD of an epoch at or above `first` (built from the key it replaces). The key
    /// list is write-locked first, as in `retire_keys_before`, so none is listed again.
    pub(crate) fn add_next_key(&self, first: u32, key: SecretKey) {
        if let Mode::Aead { keys, .. } = &self.mode {
            let mut keys = keys.write();
            keys.add_next(first, key);
            self.aeads.write().retain(|((_, epoch), _)| *epoch < first);
        }
    }

    /// Destroys the data keys older than the one starting at epoch `first`, and every cached
    /// AEAD derived from them.
    pub(crate) fn retire_keys_before(&self, first: u32) {
        if let Mode::Aead { keys, .. } = &self.mode {
            keys.write().retire_before(first);
            self.aeads.write().retain(|((_, epoch), _)| *epoch >= first);
        }
    }

    /// Runs `f` with the keyed AEAD of (`purpose`, `epoch`), building it on first use. The
    /// list holds a handful of entries (two purposes per live epoch): a scan under a read lock
    /// costs less than hashing, and no reference count is touched per page. It is bounded
    /// (`MAX_AEADS`): epochs advance with the seal budget, a small one every few commits, and
    /// a file read without a commit record to bound its epochs (`pagedump`) may name a
    /// different one on every page.
    fn with_aead<T>(&self, purpose: KeyPurpose, epoch: u32, page: PageNo, f: impl FnOnce(&dyn Aead) -> T) -> Result<T> {
        // Before the list: an AEAD built for a newer epoch (a commit record tried at open and
        // then rejected) does not open pages once the limit is lowered below it.
        self.check_epoch(epoch, page)?;
        {
            let list = self.aeads.read();
            if let Some((_, a)) = list.iter().find(|(k, _)| *k == (purpose, epoch)) {
                return Ok(f(a.as_ref()));
            }
        }
        let Mode::Aead { cipher, backends, keys } = &self.mode else {
            return Err(Error::ReportableBug("AEAD requested in plaintext mode".into()));
        };
        // The key list stays read-locked until the AEAD is listed: `retire_keys_before` takes
        // it for writing before it drops retired AEADs, so none is listed again after that.
        let keys = keys.read();
        let dk = keys.for_epoch(epoch).ok_or_else(|| Error::corrupt(page, CorruptReason::UnknownEpoch))?;
        let ctx = match purpose {
            KeyPurpose::Page => context::PAGE_KEY,
            KeyPurpose::Commit => context::COMMIT_KEY,
        };
        let sub = dk.derive(ctx, &epoch.to_le_bytes());
        let a = new_page_aead(*cipher, *backends, &sub)?;
        {
            let mut list = self.aeads.write();
            if !list.iter().any(|(k, _)| *k == (purpose, epoch)) {
                if list.len() >= MAX_AEADS {
                    list.remove(0);
                }
                list.push(((purpose, epoch), a.clone()));
            }
        }
        drop(keys);
        Ok(f(a.as_ref()))
    }

    /// Seals `buf[..PAYLOAD_SIZE]` in place as page `page` under `epoch`, filling the trailer.
    pub(crate) fn seal(&self, purpose: KeyPurpose, page: PageNo, epoch: u32, buf: &mut PageBuf) -> Result<SealTag> {
        let nonce: [u8; NONCE_SIZE] = super::nonce::fresh()?;
        let ad = aad(&self.file_id, page, epoch, self.version);
        let tag = match &self.mode {
            Mode::Plain => crc_tag(&ad, &nonce, &buf[..PAYLOAD_SIZE]),
            Mode::Aead { .. } => {
                self.with_aead(purpose, epoch, page, |a| a.seal(&nonce, &ad, &mut buf[..PAYLOAD_SIZE]))??
            }
        };
        buf[TAG_OFFSET..TAG_OFFSET + TAG_SIZE].copy_from_slice(&tag);
        buf[NONCE_OFFSET..NONCE_OFFSET + NONCE_SIZE].copy_from_slice(&nonce);
        buf[EPOCH_OFFSET..EPOCH_OFFSET + 4].copy_from_slice(&epoch.to_le_bytes());
        Ok(SealTag(tag))
    }

    /// Refuses an epoch above the newest the chosen commit record names (SPEC §5.2 b), in
    /// either mode.
    fn check_epoch(&self, epoch: u32, page: PageNo) -> Result<()> {
        if epoch > self.max_epoch.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Error::corrupt(page, CorruptReason::UnknownEpoch));
        }
        Ok(())
    }

    /// Opens page `page` in place; on success `buf[..PAYLOAD_SIZE]` is the plaintext payload.
    /// Returns the page's tag and epoch.
    pub(crate) fn open(&self, purpose: KeyPurpose, page: PageNo, buf: &mut PageBuf) -> Result<(SealTag, u32)> {
        let (tag, nonce, epoch) = trailer(buf);
        let ad = aad(&self.file_id, page, epoch, self.version);
        let ok = match &self.mode {
            Mode::Plain => {
                self.check_epoch(epoch, page)?;
                let expect = crc_tag(&ad, &nonce, &buf[..PAYLOAD_SIZE]);
                SealTag(expect).ct_eq(&SealTag(tag))
            }
            // The tag follows the payload (TAG_OFFSET == PAYLOAD_SIZE).
            Mode::Aead { .. } => self
                .with_aead(purpose, epoch, page, |a| a.open_tagged(&nonce, &ad, &mut buf[..PAYLOAD_SIZE + TAG_SIZE]))?,
        };
        if ok {
            Ok((SealTag(tag), epoch))
        } else {
            buf[..PAYLOAD_SIZE].fill(0);
            Err(Error::corrupt(page, CorruptReason::SealMismatch))
        }
    }
}

/// Reads the trailer fields of a sealed page (public bytes).
pub(crate) fn trailer(buf: &PageBuf) -> ([u8; TAG_SIZE], [u8; NONCE_SIZE], u32) {
    let mut tag = [0u8; TAG_SIZE];
    tag.copy_from_slice(&buf[TAG_OFFSET..TAG_OFFSET + TAG_SIZE]);
    let mut nonce = [0u8; NONCE_SIZE];
    nonce.copy_from_slice(&buf[NONCE_OFFSET..NONCE_OFFSET + NONCE_SIZE]);
    let mut e = [0u8; 4];
    e.copy_from_slice(&buf[EPOCH_OFFSET..EPOCH_OFFSET + 4]);
    (tag, nonce, u32::from_le_bytes(e))
}

fn crc_tag(ad: &[u8], nonce: &[u8], payload: &[u8]) -> [u8; TAG_SIZE] {
    let mut h = crc32fast::Hasher::new();
    h.update(ad);
    h.update(nonce);
    h.update(payload);
    let mut t = [0u8; TAG_SIZE];
    t[..4].copy_from_slice(&h.finalize().to_le_bytes());
    t
}

#[cfg(test)]
#[path = "seal_tests.rs"]
mod tests;
