//! Key slots (as LUKS): the random data key, wrapped once per way of unlocking the file.
//! SPEC.md §6. Changing a passphrase rewrites one slot (and the header MAC), never the data.
//!
//! Unlocking tries every slot that the supplied credentials can serve; a slot unwraps only if
//! its AES-256-GCM tag verifies under the key-encryption key, with AAD = file id ‖ slot index ‖
//! the slot's kind, KDF and salt bytes. No slot unwrapping is `Error::WrongKey`, never
//! `Corrupt` (a damaged header is caught first by its checksum).

use rand::RngCore;
use zeroize::Zeroizing;

use super::keys::{MasterKey, Passphrase, SecretKey, context};
use crate::crypto::kdf::KdfParams;
use crate::error::{Error, Result};
use crate::format::header::{FileHeader, KeySlot, MAC_OFFSET, MAC_SIZE, MAX_SLOTS, SLOT_BOUND_END, SlotKind};

/// What the caller can unlock with. Printing it shows which parts are present, never them.
#[derive(Default)]
pub struct Credentials {
    pub(crate) master: Option<MasterKey>,
    pub(crate) passphrase: Option<Passphrase>,
    pub(crate) recovery: Option<MasterKey>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("master_key", &self.master.as_ref().map(|_| "[redacted]"))
            .field("passphrase", &self.passphrase.as_ref().map(|_| "[redacted]"))
            .field("recovery_key", &self.recovery.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl Credentials {
    pub fn none() -> Credentials {
        Credentials::default()
    }
    pub fn passphrase(p: impl Into<Passphrase>) -> Credentials {
        Credentials { passphrase: Some(p.into()), ..Default::default() }
    }
    pub fn master_key(k: MasterKey) -> Credentials {
        Credentials { master: Some(k), ..Default::default() }
    }
    pub fn recovery_key(k: MasterKey) -> Credentials {
        Credentials { recovery: Some(k), ..Default::default() }
    }
    pub fn with_passphrase(mut self, p: impl Into<Passphrase>) -> Credentials {
        self.passphrase = Some(p.into());
        self
    }
    pub fn with_master_key(mut self, k: MasterKey) -> Credentials {
        self.master = Some(k);
        self
    }
    /// Adds a recovery key (a database made with it beside a passphrase or master key gets a
    /// slot for each).
    pub fn with_recovery_key(mut self, k: MasterKey) -> Credentials {
        self.recovery = Some(k);
        self
    }
    pub fn is_empty(&self) -> bool {
        self.master.is_none() && self.passphrase.is_none() && self.recovery.is_none()
    }
    pub fn duplicate(&self) -> Credentials {
        Credentials {
            master: self.master.as_ref().map(|k| k.duplicate()),
            passphrase: self.passphrase.as_ref().map(|p| p.duplicate()),
            recovery: self.recovery.as_ref().map(|k| k.duplicate()),
        }
    }
    /// The slot kind these credentials create by default: master key + passphrase when both are
    /// given, else whichever is present.
    pub(crate) fn natural_kind(&self) -> Option<SlotKind> {
        match (&self.master, &self.passphrase, &self.recovery) {
            (Some(_), Some(_), _) => Some(SlotKind::MasterKeyAndPassphrase),
            (Some(_), None, _) => Some(SlotKind::MasterKey),
            (None, Some(_), _) => Some(SlotKind::Passphrase),
            (None, None, Some(_)) => Some(SlotKind::RecoveryKey),
            (None, None, None) => None,
        }
    }

    /// Whether these credentials hold what a slot of `kind` needs (`kek` is `Some` for it).
    pub(crate) fn serves(&self, kind: SlotKind) -> bool {
        match kind {
            SlotKind::Passphrase => self.passphrase.is_some(),
            SlotKind::MasterKey => self.master.is_some(),
            SlotKind::MasterKeyAndPassphrase => self.master.is_some() && self.passphrase.is_some(),
            SlotKind::RecoveryKey => self.recovery.is_some(),
        }
    }

    /// The key-encryption key for a slot of `kind`, or `None` if these credentials cannot serve it.
    fn kek(&self, kind: SlotKind, kdf: &KdfParams, salt: &[u8; 16]) -> Option<Result<SecretKey>> {
        match kind {
            SlotKind::Passphrase => {
                let p = self.passphrase.as_ref()?;
                Some(kdf.stretch(p, salt).map(|s| s.derive(context::KEK_PASSPHRASE, &[])))
            }
            SlotKind::MasterKey => {
                let m = self.master.as_ref()?;
                Some(Ok(m.0.derive(context::KEK_MASTER, salt)))
            }
            SlotKind::MasterKeyAndPassphrase => {
                let (m, p) = (self.master.as_ref()?, self.passphrase.as_ref()?);
                Some(
                    kdf.stretch(p, salt)
                        .map(|s| SecretKey::derive_from(context::KEK_MASTER_PASSPHRASE, &[m.0.expose(), s.expose()])),
                )
            }
            SlotKind::RecoveryKey => {
                let r = self.recovery.as_ref()?;
                Some(Ok(r.0.derive(context::KEK_RECOVERY, salt)))
            }
        }
    }
}

fn slot_aad(file_id: &[u8; 16], index: usize, bound: &[u8; SLOT_BOUND_END]) -> Vec<u8> {
    let mut a = Vec::with_capacity(16 + 1 + SLOT_BOUND_END);
    a.extend_from_slice(file_id);
    a.push(index as u8);
    a.extend_from_slice(bound);
    a
}

/// Creates a slot of `kind` at `index` wrapping `data_key`, using `creds`.
/// Refuses a new slot of `kind` under a key of zeros (a key file made by `truncate -s 32`, or
/// 64 `0`s): it is the first one anybody tries. For slots added or made with a database only: a
/// slot already there is re-wrapped by a rekey or a passphrase change as it is.
pub(crate) fn refuse_guessable_key(kind: SlotKind, creds: &Credentials) -> Result<()> {
    let key = match kind {
        SlotKind::MasterKey | SlotKind::MasterKeyAndPassphrase => creds.master.as_ref(),
        SlotKind::RecoveryKey => creds.recovery.as_ref(),
        SlotKind::Passphrase => None,
    };
    if key.is_some_and(|k| k.0.expose().iter().all(|&b| b == 0)) {
        return Err(Error::InvalidConfig("a key of all zero bytes cannot protect a key slot"));
    }
    Ok(())
}

pub(crate) fn make_slot(
    kind: SlotKind,
    kdf: KdfParams,
    creds: &Credentials,
    data_key: &SecretKey,
    file_id: &[u8; 16],
    index: usize,
) -> Result<KeySlot> {
    SlotKey::derive(kind, kdf, creds)?.wrap(data_key, file_id, index)
}

/// The key-encryption key of a slot about to be made: its kind, cost and salt, and the key the
/// credentials give under them. Derived first (a passphrase's Argon2id, which may take seconds)
/// and the data key wrapped later, so that a caller holding a lock while it wraps need not hold
/// it while it derives (key management review: adding a slot or changing a passphrase held the
/// writer lock through the derivation, and every commit waited). No `Debug`: it holds a key.
pub(crate) struct SlotKey {
    kind: SlotKind,
    kdf: KdfParams,
    salt: [u8; 16],
    kek: SecretKey,
}

impl SlotKey {
    /// Derives the key of a new slot of `kind` from `creds` under `kdf` and a fresh salt.
    pub(crate) fn derive(kind: SlotKind, kdf: KdfParams, creds: &Credentials) -> Result<SlotKey> {
        if kind.uses_passphrase() {
            kdf.validate()?;
            // A slot under the empty passphrase would open for anyone.
            if creds.passphrase.as_ref().is_some_and(|p| p.is_empty()) {
                return Err(Error::InvalidConfig("an empty passphrase cannot protect a key slot"));
            }
        }
        SlotKey::derive_unchecked(kind, kdf, creds)
    }

    /// `derive` without its refusals (for the tests of files made before them: a slot under
    /// the empty passphrase).
    pub(crate) fn derive_unchecked(kind: SlotKind, kdf: KdfParams, creds: &Credentials) -> Result<SlotKey> {
        let kdf = if kind.uses_passphrase() { kdf } else { KdfParams { memory_kib: 0, iterations: 0, parallelism: 0 } };
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let kek = creds
            .kek(kind, &kdf, &salt)
            .ok_or(Error::InvalidConfig("the credentials given do not fit the requested slot kind"))??;
        Ok(SlotKey { kind, kdf, salt, kek })
    }

    /// The slot at `index` of the file `file_id` wrapping `data_key` (a fresh nonce each time).
    pub(crate) fn wrap(&self, data_key: &SecretKey, file_id: &[u8; 16], index: usize) -> Result<KeySlot> {
        let mut slot = KeySlot {
            kind: self.kind,
            kdf: self.kdf,
            salt: self.salt,
            nonce: [0; 12],
            // The data key goes in only right before it is wrapped, so no error path drops it.
            wrapped: [0; 32],
            tag: [0; 16],
        };
        rand::rngs::OsRng.fill_bytes(&mut slot.nonce);
        let aead = super::cipher::new_aead(super::CipherId::Aes256Gcm, super::CipherBackend::RustCrypto, &self.kek)?;
        let aad = slot_aad(file_id, index, &slot.bound_bytes());
        slot.wrapped.copy_from_slice(data_key.expose());
        match aead.seal(&slot.nonce, &aad, &mut slot.wrapped) {
            Ok(tag) => slot.tag = tag,
            Err(e) => {
                zeroize::Zeroize::zeroize(&mut slot.wrapped);
                return Err(e);
            }
        }
        Ok(slot)
    }
}

/// Tries every slot the credentials can serve. Returns the data key and the slot index.
pub(crate) fn unlock(header: &FileHeader, creds: &Credentials) -> Result<(SecretKey, usize)> {
    unlock_kind(header, creds, |_| true)
}

/// [`unlock`] over the slots whose kind `accept` takes: a passphrase change must find the
/// slot its passphrase opens, not an earlier master-key-only slot the same credentials open.
pub(crate) fn unlock_kind(
    header: &FileHeader,
    creds: &Credentials,
    accept: impl Fn(SlotKind) -> bool,
) -> Result<(SecretKey, usize)> {
    if creds.is_empty() {
        return Err(Error::WrongKey {
            hint: "the database is encrypted and no key was given (set FOLDVAULT_KEY_FILE or FOLDVAULT_PASSPHRASE, or pass one in Config)",
        });
    }
    // A slot skipped for Argon2id parameters out of range, and the first slot whose working
    // memory could not be allocated: what the error says when no slot opens.
    let (mut out_of_range, mut unallocated) = (false, None);
    for (index, slot) in header.slots.iter().enumerate().take(MAX_SLOTS) {
        let Some(slot) = slot.as_ref().filter(|s| accept(s.kind)) else { continue };
        let Some(kek) = creds.kek(slot.kind, &slot.kdf, &slot.salt) else { continue };
        // A slot whose KDF parameters are out of range cannot be ours: skip it, never run a
        // hostile cost. One whose cost this host cannot allocate was not tried: the others are.
        let kek = match kek {
            Ok(kek) => kek,
            Err(Error::Io(e)) => {
                unallocated.get_or_insert(e);
                continue;
            }
            Err(_) => {
                out_of_range = true;
                continue;
            }
        };
        let aead = super::cipher::new_aead(super::CipherId::Aes256Gcm, super::CipherBackend::RustCrypto, &kek)?;
        let aad = slot_aad(&header.file_id, index, &slot.bound_bytes());
        let mut buf = Zeroizing::new(slot.wrapped);
        if aead.open(&slot.nonce, &aad, &mut buf[..], &slot.tag) {
            return Ok((SecretKey::from_bytes(*buf), index));
        }
    }
    // A slot not tried is no proof of a wrong key.
    if let Some(e) = unallocated {
        return Err(Error::Io(e));
    }
    // Not audited here: callers also probe slots (which slot a key opens); an attempt to open
    // the database with a wrong key is audited where it is made (`db::open::unlock`).
    Err(Error::WrongKey {
        hint: if out_of_range {
            "no key slot opens with the key or passphrase given (a passphrase slot with Argon2id parameters out of \
             range was skipped: the header may be damaged)"
        } else {
            "no key slot opens with the key or passphrase given"
        },
    })
}

/// The header MAC: keyed BLAKE3 under the header MAC key over bytes `0..MAC_OFFSET`.
pub(crate) fn header_mac(data_key: &SecretKey, body: &[u8]) -> [u8; MAC_SIZE] {
    let k = data_key.derive(context::HEADER_MAC_KEY, &[]);
    k.keyed_hash(&body[..MAC_OFFSET.min(body.len())])
}

/// Verifies the header MAC in constant time.
pub(crate) fn verify_header_mac(data_key: &SecretKey, header: &FileHeader) -> bool {
    let mac = if header.raw_body.0.len() == MAC_OFFSET {
        header_mac(data_key, &header.raw_body.0)
    } else {
        header_mac(data_key, &header.encode_body()[..])
    };
    bool::from(subtle::ConstantTimeEq::ct_eq(&mac[..], &header.mac[..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::CipherId;
    use crate::format::header::{FLAG_ENCRYPTED, ZeroedOption};

    fn header_with(slot: KeySlot, index: usize) -> FileHeader {
        let mut slots: [ZeroedOption<KeySlot>; MAX_SLOTS] = Default::default();
        slots[index].set(Some(slot));
        FileHeader {
            version: 1,
            cipher: CipherId::Aes256Gcm,
            file_id: [8; 16],
            generation: 1,
            flags: FLAG_ENCRYPTED,
            next_key: ZeroedOption::NONE,
            slots,
            mac: [0; 32],
            raw_body: Default::default(),
        }
    }

    #[test]
    fn every_kind_unlocks_only_with_its_credentials() {
        let dk = SecretKey::from_bytes([42; 32]);
        let fast = KdfParams::insecure_fast();
        let cases: Vec<(SlotKind, Credentials, Credentials)> = vec![
            (SlotKind::Passphrase, Credentials::passphrase("right"), Credentials::passphrase("wrong")),
            (
                SlotKind::MasterKey,
                Credentials::master_key(MasterKey::from_bytes([1; 32])),
                Credentials::master_key(MasterKey::from_bytes([2; 32])),
            ),
            (
                SlotKind::MasterKeyAndPassphrase,
                Credentials::master_key(MasterKey::from_bytes([1; 32])).with_passphrase("p"),
                Credentials::master_key(MasterKey::from_bytes([1; 32])).with_passphrase("q"),
            ),
            (
                SlotKind::RecoveryKey,
                Credentials::recovery_key(MasterKey::from_bytes([5; 32])),
                Credentials::recovery_key(MasterKey::from_bytes([6; 32])),
            ),
        ];
        for (kind, good, bad) in cases {
            let slot = make_slot(kind, fast, &good, &dk, &[8; 16], 3).unwrap();
            let h = header_with(slot, 3);
            let (k, i) = unlock(&h, &good).unwrap();
            assert_eq!((k.expose(), i), (dk.expose(), 3));
            assert!(matches!(unlock(&h, &bad), Err(Error::WrongKey { .. })), "{kind:?}");
            assert!(matches!(unlock(&h, &Credentials::none()), Err(Error::WrongKey { .. })));
        }
    }

    #[test]
    fn slot_bound_to_index_file_and_parameters() {
        let dk = SecretKey::from_bytes([42; 32]);
        let creds = Credentials::passphrase("pw");
        let slot = make_slot(SlotKind::Passphrase, KdfParams::insecure_fast(), &creds, &dk, &[8; 16], 0).unwrap();
        // moved to another index
        assert!(unlock(&header_with(slot.clone(), 1), &creds).is_err());
        // another file id
        let mut h = header_with(slot.clone(), 0);
        h.file_id = [9; 16];
        assert!(unlock(&h, &creds).is_err());
        // a changed KDF parameter
        let mut s2 = slot.clone();
        s2.kdf.iterations = 2;
        assert!(
            matches!(unlock(&header_with(s2, 0), &creds), Err(Error::WrongKey { hint }) if !hint.contains("skipped"))
        );
        // parameters out of range: skipped, never run, and said so (still `WrongKey`)
        let mut s3 = slot.clone();
        s3.kdf.iterations = 0;
        let r = unlock(&header_with(s3, 0), &creds);
        assert!(matches!(r, Err(Error::WrongKey { hint }) if hint.contains("out of range was skipped")), "{r:?}");
    }

    #[test]
    fn credentials_debug_hides_secrets() {
        let c = Credentials::master_key(MasterKey::from_bytes([0xEE; 32])).with_passphrase("swordfish");
        let s = format!("{c:?}");
        assert!(!s.contains("swordfish") && !s.contains("ee") && !s.contains("238"), "{s}");
    }
}
