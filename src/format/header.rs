//! The file header: pages 0 and 1 hold two copies (A and B), readable without a key.
//! SPEC.md §2 has the table; the offsets below are checked against it by a test.
//!
//! Invariants: a copy is valid when its BLAKE3 checksum verifies; the valid copy with the
//! highest generation is the header; an update writes copy B with generation + 1, syncs,
//! then copy A, syncs (a writable open first repairs a copy that fails, so both are valid
//! before an update: a power loss leaves one valid copy, old or new, and no stale slot
//! survives a completed update in either copy). In encrypted mode a keyed MAC under
//! the header MAC key (derived from the data key) also covers every field before it.

use super::{MAGIC, PAGE_SIZE, get_array, get_u16, get_u32, get_u64, put_u16, put_u32, put_u64};
use crate::crypto::cipher::CipherId;
use crate::crypto::kdf::KdfParams;
use crate::error::{CorruptReason, Error, PageNo, Result};

pub const MAGIC_OFFSET: usize = 0;
pub const VERSION_OFFSET: usize = MAGIC_OFFSET + 8;
pub const CIPHER_OFFSET: usize = VERSION_OFFSET + 2;
pub const SLOT_COUNT_OFFSET: usize = CIPHER_OFFSET + 1;
pub const PAGE_SIZE_OFFSET: usize = SLOT_COUNT_OFFSET + 1;
pub const FILE_ID_OFFSET: usize = PAGE_SIZE_OFFSET + 4;
pub const GENERATION_OFFSET: usize = FILE_ID_OFFSET + 16;
pub const FLAGS_OFFSET: usize = GENERATION_OFFSET + 8;
pub const RESERVED_OFFSET: usize = FLAGS_OFFSET + 4;
pub const NEXT_KEY_OFFSET: usize = RESERVED_OFFSET + 4;
pub const NEXT_KEY_SIZE: usize = 80;
pub const SLOTS_OFFSET: usize = NEXT_KEY_OFFSET + NEXT_KEY_SIZE;
pub const MAX_SLOTS: usize = 8;
pub const SLOT_SIZE: usize = 128;
pub const SLOTS_END: usize = SLOTS_OFFSET + MAX_SLOTS * SLOT_SIZE;
pub const MAC_OFFSET: usize = 3968;
pub const MAC_SIZE: usize = 32;
pub const CHECKSUM_OFFSET: usize = MAC_OFFSET + MAC_SIZE;
pub const CHECKSUM_SIZE: usize = 32;
pub const HEADER_END: usize = CHECKSUM_OFFSET + CHECKSUM_SIZE;
const _: () = assert!(SLOTS_END <= MAC_OFFSET);
const _: () = assert!(HEADER_END <= PAGE_SIZE);

/// Slot fields (offsets within a slot).
pub const SLOT_KIND_OFFSET: usize = 0;
pub const SLOT_KDF_OFFSET: usize = 1;
pub const SLOT_MEMORY_OFFSET: usize = 4;
pub const SLOT_ITERATIONS_OFFSET: usize = SLOT_MEMORY_OFFSET + 4;
pub const SLOT_PARALLELISM_OFFSET: usize = SLOT_ITERATIONS_OFFSET + 4;
pub const SLOT_SALT_OFFSET: usize = SLOT_PARALLELISM_OFFSET + 4;
/// Bytes `0..SLOT_BOUND_END` of a slot are bound into its wrap's AAD.
pub const SLOT_BOUND_END: usize = SLOT_SALT_OFFSET + 16;
pub const SLOT_NONCE_OFFSET: usize = SLOT_BOUND_END;
pub const SLOT_WRAPPED_OFFSET: usize = SLOT_NONCE_OFFSET + 12;
pub const SLOT_TAG_OFFSET: usize = SLOT_WRAPPED_OFFSET + 32;
pub const SLOT_END: usize = SLOT_TAG_OFFSET + 16;
const _: () = assert!(SLOT_END <= SLOT_SIZE);

/// Next-key block (a rekey in progress): flags u32 (bit 0 = present), first epoch u32, nonce,
/// the new data key wrapped under a key derived from the current data key, tag.
pub const NEXT_FLAGS_OFFSET: usize = 0;
pub const NEXT_FIRST_EPOCH_OFFSET: usize = 4;
pub const NEXT_NONCE_OFFSET: usize = 8;
pub const NEXT_WRAPPED_OFFSET: usize = NEXT_NONCE_OFFSET + 12;
pub const NEXT_TAG_OFFSET: usize = NEXT_WRAPPED_OFFSET + 32;
pub const NEXT_END: usize = NEXT_TAG_OFFSET + 16;
const _: () = assert!(NEXT_END <= NEXT_KEY_SIZE);

/// Header flag: the file is encrypted.
pub const FLAG_ENCRYPTED: u32 = 1;

/// How a key slot is unlocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SlotKind {
    Passphrase = 1,
    MasterKey = 2,
    MasterKeyAndPassphrase = 3,
    RecoveryKey = 4,
}

impl SlotKind {
    pub fn from_byte(b: u8) -> Option<SlotKind> {
        Some(match b {
            1 => SlotKind::Passphrase,
            2 => SlotKind::MasterKey,
            3 => SlotKind::MasterKeyAndPassphrase,
            4 => SlotKind::RecoveryKey,
            _ => return None,
        })
    }
    pub fn name(&self) -> &'static str {
        match self {
            SlotKind::Passphrase => "passphrase",
            SlotKind::MasterKey => "master-key",
            SlotKind::MasterKeyAndPassphrase => "master-key+passphrase",
            SlotKind::RecoveryKey => "recovery-key",
        }
    }
    pub fn uses_passphrase(&self) -> bool {
        matches!(self, SlotKind::Passphrase | SlotKind::MasterKeyAndPassphrase)
    }
}

/// One key slot as stored: how to derive its key-encryption key, and the wrapped data key.
/// Nothing here is secret (the data key is AEAD-encrypted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySlot {
    pub kind: SlotKind,
    /// Argon2id parameters (meaningful for passphrase kinds; zeros otherwise).
    pub kdf: KdfParams,
    pub salt: [u8; 16],
    pub nonce: [u8; 12],
    pub wrapped: [u8; 32],
    pub tag: [u8; 16],
}

impl KeySlot {
    /// The bytes bound into the wrap's AAD (kind, KDF id and parameters, salt).
    pub fn bound_bytes(&self) -> [u8; SLOT_BOUND_END] {
        let mut b = [0u8; SLOT_SIZE];
        self.encode(&mut b);
        let mut out = [0u8; SLOT_BOUND_END];
        out.copy_from_slice(&b[..SLOT_BOUND_END]);
        out
    }
    fn encode(&self, b: &mut [u8]) {
        b[SLOT_KIND_OFFSET] = self.kind as u8;
        b[SLOT_KDF_OFFSET] = if self.kind.uses_passphrase() { 1 } else { 0 };
        put_u32(b, SLOT_MEMORY_OFFSET, self.kdf.memory_kib);
        put_u32(b, SLOT_ITERATIONS_OFFSET, self.kdf.iterations);
        put_u32(b, SLOT_PARALLELISM_OFFSET, self.kdf.parallelism);
        b[SLOT_SALT_OFFSET..SLOT_SALT_OFFSET + 16].copy_from_slice(&self.salt);
        b[SLOT_NONCE_OFFSET..SLOT_NONCE_OFFSET + 12].copy_from_slice(&self.nonce);
        b[SLOT_WRAPPED_OFFSET..SLOT_WRAPPED_OFFSET + 32].copy_from_slice(&self.wrapped);
        b[SLOT_TAG_OFFSET..SLOT_TAG_OFFSET + 16].copy_from_slice(&self.tag);
    }
    fn decode(b: &[u8], page: PageNo) -> Result<Option<KeySlot>> {
        let bad = || Error::corrupt(page, CorruptReason::HeaderField);
        let kind_byte = *b.get(SLOT_KIND_OFFSET).ok_or_else(bad)?;
        if kind_byte == 0 {
            return Ok(None);
        }
        let kind = SlotKind::from_byte(kind_byte).ok_or_else(bad)?;
        let kdf = KdfParams {
            memory_kib: get_u32(b, SLOT_MEMORY_OFFSET).ok_or_else(bad)?,
            iterations: get_u32(b, SLOT_ITERATIONS_OFFSET).ok_or_else(bad)?,
            parallelism: get_u32(b, SLOT_PARALLELISM_OFFSET).ok_or_else(bad)?,
        };
        let want_kdf = if kind.uses_passphrase() { 1 } else { 0 };
        if b.get(SLOT_KDF_OFFSET).copied() != Some(want_kdf) {
            return Err(bad());
        }
        Ok(Some(KeySlot {
            kind,
            kdf,
            salt: get_array(b, SLOT_SALT_OFFSET).ok_or_else(bad)?,
            nonce: get_array(b, SLOT_NONCE_OFFSET).ok_or_else(bad)?,
            wrapped: get_array(b, SLOT_WRAPPED_OFFSET).ok_or_else(bad)?,
            tag: get_array(b, SLOT_TAG_OFFSET).ok_or_else(bad)?,
        }))
    }
}

/// A header field that may be absent, held without uninitialised bytes: an absent value is a
/// zeroed `T`, not `None`. An `Option<T>`'s `None` leaves its payload's bytes as they were, and
/// a header moved from the stack into the heap (the engine's copy, a `Vec` of the two copies)
/// carried whatever the stack held there, which could be a caller's record just compared
/// (`tests/plaintext_frees.rs` failed on exactly that in CI). Reads and writes go through
/// `Option`s.
#[derive(Clone)]
pub struct ZeroedOption<T: Zeroed> {
    present: bool,
    value: T,
}

/// A type with a zeroed value for `ZeroedOption` to hold when absent.
pub trait Zeroed: Clone {
    const ZEROED: Self;
}

/// The value an empty slot holds (never read: `ZeroedOption` hides it).
impl Zeroed for KeySlot {
    const ZEROED: KeySlot = KeySlot {
        kind: SlotKind::Passphrase,
        kdf: KdfParams { memory_kib: 0, iterations: 0, parallelism: 0 },
        salt: [0; 16],
        nonce: [0; 12],
        wrapped: [0; 32],
        tag: [0; 16],
    };
}

impl Zeroed for NextKey {
    const ZEROED: NextKey = NextKey { first_epoch: 0, nonce: [0; 12], wrapped: [0; 32], tag: [0; 16] };
}

impl<T: Zeroed> ZeroedOption<T> {
    pub const NONE: ZeroedOption<T> = ZeroedOption { present: false, value: T::ZEROED };

    pub fn new(v: Option<T>) -> ZeroedOption<T> {
        match v {
            Some(value) => ZeroedOption { present: true, value },
            None => ZeroedOption::NONE,
        }
    }
    pub fn as_ref(&self) -> Option<&T> {
        self.present.then_some(&self.value)
    }
    pub fn is_some(&self) -> bool {
        self.present
    }
    pub fn is_none(&self) -> bool {
        !self.present
    }
    pub fn set(&mut self, v: Option<T>) {
        *self = ZeroedOption::new(v);
    }
}

impl<T: Zeroed> Default for ZeroedOption<T> {
    fn default() -> Self {
        ZeroedOption::NONE
    }
}

impl<T: Zeroed + PartialEq> PartialEq for ZeroedOption<T> {
    fn eq(&self, other: &Self) -> bool {
        self.as_ref() == other.as_ref()
    }
}

impl<T: Zeroed + Eq> Eq for ZeroedOption<T> {}

impl<T: Zeroed + std::fmt::Debug> std::fmt::Debug for ZeroedOption<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_ref().fmt(f)
    }
}

impl<'a, T: Zeroed> IntoIterator for &'a ZeroedOption<T> {
    type Item = &'a T;
    type IntoIter = std::option::IntoIter<&'a T>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_ref().into_iter()
    }
}

/// A rekey's new data key, wrapped under a key derived from the current data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextKey {
    pub first_epoch: u32,
    pub nonce: [u8; 12],
    pub wrapped: [u8; 32],
    pub tag: [u8; 16],
}

/// The decoded file header.
#[derive(Debug, Clone)]
pub struct FileHeader {
    pub version: u16,
    pub cipher: CipherId,
    pub file_id: [u8; 16],
    pub generation: u64,
    pub flags: u32,
    pub next_key: ZeroedOption<NextKey>,
    pub slots: [ZeroedOption<KeySlot>; MAX_SLOTS],
    /// Keyed BLAKE3 MAC (zeros in plaintext mode).
    pub mac: [u8; MAC_SIZE],
    /// The bytes `0..MAC_OFFSET` exactly as read (empty for a header built in memory): the MAC
    /// is checked over these, so reserved bytes are authenticated too.
    pub raw_body: RawBody,
}

/// Header bytes as read from disk (public data; `Debug` shows only the length).
#[derive(Clone, Default)]
pub struct RawBody(pub Vec<u8>);

impl std::fmt::Debug for RawBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawBody(len={})", self.0.len())
    }
}

impl FileHeader {
    pub fn is_encrypted(&self) -> bool {
        self.flags & FLAG_ENCRYPTED != 0
    }

    /// Encodes every field except the MAC and checksum (bytes `0..MAC_OFFSET`).
    pub fn encode_body(&self) -> Box<[u8; PAGE_SIZE]> {
        let mut b = Box::new([0u8; PAGE_SIZE]);
        b[MAGIC_OFFSET..MAGIC_OFFSET + 8].copy_from_slice(&MAGIC);
        put_u16(&mut b[..], VERSION_OFFSET, self.version);
        b[CIPHER_OFFSET] = self.cipher as u8;
        b[SLOT_COUNT_OFFSET] = MAX_SLOTS as u8;
        put_u32(&mut b[..], PAGE_SIZE_OFFSET, PAGE_SIZE as u32);
        b[FILE_ID_OFFSET..FILE_ID_OFFSET + 16].copy_from_slice(&self.file_id);
        put_u64(&mut b[..], GENERATION_OFFSET, self.generation);
        put_u32(&mut b[..], FLAGS_OFFSET, self.flags);
        if let Some(n) = self.next_key.as_ref() {
            let nb = &mut b[NEXT_KEY_OFFSET..NEXT_KEY_OFFSET + NEXT_KEY_SIZE];
            put_u32(nb, NEXT_FLAGS_OFFSET, 1);
            put_u32(nb, NEXT_FIRST_EPOCH_OFFSET, n.first_epoch);
            nb[NEXT_NONCE_OFFSET..NEXT_NONCE_OFFSET + 12].copy_from_slice(&n.nonce);
            nb[NEXT_WRAPPED_OFFSET..NEXT_WRAPPED_OFFSET + 32].copy_from_slice(&n.wrapped);
            nb[NEXT_TAG_OFFSET..NEXT_TAG_OFFSET + 16].copy_from_slice(&n.tag);
        }
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(s) = s.as_ref() {
                let off = SLOTS_OFFSET + i * SLOT_SIZE;
                s.encode(&mut b[off..off + SLOT_SIZE]);
            }
        }
        b
    }

    /// Encodes the whole page: body, the given MAC, and the checksum.
    pub fn encode(&self) -> Box<[u8; PAGE_SIZE]> {
        let mut b = self.encode_body();
        b[MAC_OFFSET..MAC_OFFSET + MAC_SIZE].copy_from_slice(&self.mac);
        let sum = blake3::hash(&b[..CHECKSUM_OFFSET]);
        b[CHECKSUM_OFFSET..CHECKSUM_OFFSET + CHECKSUM_SIZE].copy_from_slice(sum.as_bytes());
        b
    }

    /// The page as read (raw body, MAC, checksum) when it came from disk, else freshly encoded.
    pub fn to_page(&self) -> Box<[u8; PAGE_SIZE]> {
        if self.raw_body.0.len() != MAC_OFFSET {
            return self.encode();
        }
        let mut b = Box::new([0u8; PAGE_SIZE]);
        b[..MAC_OFFSET].copy_from_slice(&self.raw_body.0);
        b[MAC_OFFSET..MAC_OFFSET + MAC_SIZE].copy_from_slice(&self.mac);
        let sum = blake3::hash(&b[..CHECKSUM_OFFSET]);
        b[CHECKSUM_OFFSET..CHECKSUM_OFFSET + CHECKSUM_SIZE].copy_from_slice(sum.as_bytes());
        b
    }

    /// Decodes one header copy read from page `page`.
    pub fn decode(b: &[u8], page: PageNo) -> Result<FileHeader> {
        if b.len() < PAGE_SIZE {
            return Err(Error::Truncated { expected: PAGE_SIZE as u64, found: b.len() as u64 });
        }
        if b[MAGIC_OFFSET..MAGIC_OFFSET + 8] != MAGIC {
            return Err(Error::NotADatabase);
        }
        let stored: [u8; 32] = get_array(b, CHECKSUM_OFFSET).ok_or(Error::NotADatabase)?;
        let sum = blake3::hash(&b[..CHECKSUM_OFFSET]);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&stored[..], &sum.as_bytes()[..])) {
            return Err(Error::corrupt(page, CorruptReason::HeaderChecksum));
        }
        let bad = || Error::corrupt(page, CorruptReason::HeaderField);
        let version = get_u16(b, VERSION_OFFSET).ok_or_else(bad)?;
        if version == 0 || version > super::FORMAT_VERSION {
            return Err(Error::UnsupportedVersion { found: version, supported: super::FORMAT_VERSION });
        }
        if get_u32(b, PAGE_SIZE_OFFSET) != Some(PAGE_SIZE as u32) || b[SLOT_COUNT_OFFSET] as usize != MAX_SLOTS {
            return Err(bad());
        }
        let cipher = CipherId::from_byte(b[CIPHER_OFFSET]).ok_or_else(bad)?;
        let flags = get_u32(b, FLAGS_OFFSET).ok_or_else(bad)?;
        if (flags & FLAG_ENCRYPTED != 0) != (cipher != CipherId::None) || flags & !FLAG_ENCRYPTED != 0 {
            return Err(bad());
        }
        let nb = &b[NEXT_KEY_OFFSET..NEXT_KEY_OFFSET + NEXT_KEY_SIZE];
        let next_key = ZeroedOption::new(match get_u32(nb, NEXT_FLAGS_OFFSET) {
            Some(0) => None,
            Some(1) => Some(NextKey {
                first_epoch: get_u32(nb, NEXT_FIRST_EPOCH_OFFSET).ok_or_else(bad)?,
                nonce: get_array(nb, NEXT_NONCE_OFFSET).ok_or_else(bad)?,
                wrapped: get_array(nb, NEXT_WRAPPED_OFFSET).ok_or_else(bad)?,
                tag: get_array(nb, NEXT_TAG_OFFSET).ok_or_else(bad)?,
            }),
            _ => return Err(bad()),
        });
        let mut slots: [ZeroedOption<KeySlot>; MAX_SLOTS] = Default::default();
        for (i, s) in slots.iter_mut().enumerate() {
            let off = SLOTS_OFFSET + i * SLOT_SIZE;
            s.set(KeySlot::decode(&b[off..off + SLOT_SIZE], page)?);
        }
        Ok(FileHeader {
            version,
            cipher,
            file_id: get_array(b, FILE_ID_OFFSET).ok_or_else(bad)?,
            generation: get_u64(b, GENERATION_OFFSET).ok_or_else(bad)?,
            flags,
            next_key,
            slots,
            mac: get_array(b, MAC_OFFSET).ok_or_else(bad)?,
            raw_body: RawBody(b[..MAC_OFFSET].to_vec()),
        })
    }
}

/// Of the two header copies' decode failures (`None`: the copy decoded), the one that says
/// most about the file: a copy that checks out but names a newer format version, then damage
/// to a copy, then a copy without the magic (zeroed). The first copy's error was taken
/// whatever the second said: a file whose copy B a newer build wrote was called damaged when
/// copy A was torn, and one with copy A zeroed and B damaged not a database (error review).
pub(crate) fn most_telling(failures: [Option<Error>; 2]) -> Error {
    let rank = |e: &Error| match e {
        Error::UnsupportedVersion { .. } => 3,
        Error::NotADatabase => 1,
        _ => 2,
    };
    let [a, b] = failures;
    match (a, b) {
        (Some(a), Some(b)) if rank(&b) > rank(&a) => b,
        (Some(a), _) => a,
        (None, Some(b)) => b,
        (None, None) => Error::NotADatabase,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FileHeader {
        let mut slots: [ZeroedOption<KeySlot>; MAX_SLOTS] = Default::default();
        slots[0] = ZeroedOption::new(Some(KeySlot {
            kind: SlotKind::Passphrase,
            kdf: KdfParams::insecure_fast(),
            salt: [1; 16],
            nonce: [2; 12],
            wrapped: [3; 32],
            tag: [4; 16],
        }));
        FileHeader {
            version: 1,
            cipher: CipherId::Aes256Gcm,
            file_id: [5; 16],
            generation: 7,
            flags: FLAG_ENCRYPTED,
            next_key: ZeroedOption::NONE,
            slots,
            mac: [6; 32],
            raw_body: RawBody::default(),
        }
    }

    #[test]
    fn round_trip() {
        let h = sample();
        let b = h.encode();
        let d = FileHeader::decode(&b[..], 0).unwrap();
        assert_eq!(d.generation, 7);
        assert_eq!(d.file_id, [5; 16]);
        assert_eq!(d.slots[0].as_ref().unwrap().kdf, KdfParams::insecure_fast());
        assert!(d.slots[1].is_none());
        assert_eq!(d.encode()[..], b[..]);
    }

    #[test]
    fn any_changed_byte_before_the_checksum_is_detected() {
        let b = sample().encode();
        for i in (0..CHECKSUM_OFFSET).step_by(7) {
            let mut c = b.clone();
            c[i] ^= 0x10;
            assert!(FileHeader::decode(&c[..], 0).is_err(), "byte {i}");
        }
    }

    #[test]
    fn future_version_is_typed() {
        let mut h = sample();
        h.version = 9;
        let b = h.encode();
        assert!(matches!(FileHeader::decode(&b[..], 0), Err(Error::UnsupportedVersion { found: 9, .. })));
    }
}
