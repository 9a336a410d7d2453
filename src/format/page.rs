//! The sealed page: 4096 bytes = payload ‖ trailer. SPEC.md §3.
//!
//! ```text
//! 0            4064       4080          4092       4096
//! | payload    | tag (16) | nonce (12)  | epoch u32 |
//! ```
//! Encrypted mode: payload is AES-256-GCM (or ChaCha20-Poly1305) ciphertext, tag its AEAD tag,
//! AAD = file id (16) ‖ page number u64 LE ‖ epoch u32 LE ‖ format version u16 LE (30 bytes).
//! Plaintext mode: payload in clear, nonce random, tag = CRC32 (LE) of AAD ‖ nonce ‖ payload in
//! its first four bytes and zeros after.
//!
//! Every payload starts with the common page header:
//! ```text
//! 0 kind u8 | 1 reserved u8 | 2 count u16 | 4 reserved u32 | 8 generation u64 | 16 ...
//! ```
//! where `generation` is the commit sequence number of the transaction that wrote the page.

use super::{PAGE_SIZE, get_u16, get_u64};
use crate::error::{CorruptReason, Error, PageNo, Result};

pub const PAYLOAD_SIZE: usize = 4064;
/// The tag follows the ciphertext directly (so backends that want `ciphertext ‖ tag` in one
/// buffer, like aws-lc's `open_in_place`, need no copy).
pub const TAG_OFFSET: usize = PAYLOAD_SIZE;
pub const TAG_SIZE: usize = 16;
pub const NONCE_OFFSET: usize = TAG_OFFSET + TAG_SIZE;
pub const NONCE_SIZE: usize = 12;
pub const EPOCH_OFFSET: usize = NONCE_OFFSET + NONCE_SIZE;
pub const EPOCH_SIZE: usize = 4;
pub const TRAILER_END: usize = EPOCH_OFFSET + EPOCH_SIZE;
const _: () = assert!(TRAILER_END == PAGE_SIZE);

/// Size of the associated data bound to every seal.
pub const AAD_SIZE: usize = 16 + 8 + 4 + 2;

/// Common page header fields (offsets within the payload).
pub const KIND_OFFSET: usize = 0;
pub const COUNT_OFFSET: usize = 2;
pub const GENERATION_OFFSET: usize = 8;
pub const PAGE_HEADER_SIZE: usize = 16;

/// The kind byte of a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PageKind {
    Branch = 1,
    Leaf = 2,
    Overflow = 3,
    FreeList = 4,
    Commit = 5,
}

impl PageKind {
    pub fn from_byte(b: u8) -> Option<PageKind> {
        Some(match b {
            1 => PageKind::Branch,
            2 => PageKind::Leaf,
            3 => PageKind::Overflow,
            4 => PageKind::FreeList,
            5 => PageKind::Commit,
            _ => return None,
        })
    }
}

/// A seal tag: the AEAD tag of a page (or its CRC32 in plaintext mode). Tags are public (they
/// sit in the file in clear), but are compared in constant time all the same, and have no
/// `PartialEq` so that nobody compares them with `==` by accident.
#[derive(Clone, Copy, Default)]
pub struct SealTag(pub [u8; TAG_SIZE]);

impl SealTag {
    pub const ZERO: SealTag = SealTag([0; TAG_SIZE]);
    /// Constant-time equality: the two halves are XOR-folded into one word, which `subtle`
    /// compares with zero (every cache hit compares a tag, so this is two loads and a
    /// compare rather than sixteen byte steps).
    pub fn ct_eq(&self, other: &SealTag) -> bool {
        use subtle::ConstantTimeEq;
        let word = |t: &[u8; TAG_SIZE], i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&t[8 * i..8 * i + 8]);
            u64::from_ne_bytes(w)
        };
        let diff = (word(&self.0, 0) ^ word(&other.0, 0)) | (word(&self.0, 1) ^ word(&other.0, 1));
        bool::from(diff.ct_eq(&0))
    }
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl std::fmt::Debug for SealTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealTag({})", self.to_hex())
    }
}

/// Lower-case hex of public bytes (tags, nonces, file ids). Never used on secrets.
pub fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(DIGITS[(x >> 4) as usize] as char);
        s.push(DIGITS[(x & 15) as usize] as char);
    }
    s
}

/// A reference from a parent to a child page: the child's number, the tag it was sealed with,
/// and the generation (commit sequence) that wrote it. Reading the child checks all three
/// (SPEC.md §4, the Merkle argument); recovery uses the generation to verify only what the
/// newest commits wrote, without reading older pages.
#[derive(Clone, Copy, Debug, Default)]
pub struct PageRef {
    pub page: PageNo,
    pub tag: SealTag,
    pub generation: u64,
}

pub const PAGE_REF_PAGE_OFFSET: usize = 0;
pub const PAGE_REF_TAG_OFFSET: usize = PAGE_REF_PAGE_OFFSET + 8;
pub const PAGE_REF_GENERATION_OFFSET: usize = PAGE_REF_TAG_OFFSET + TAG_SIZE;
pub const PAGE_REF_SIZE: usize = PAGE_REF_GENERATION_OFFSET + 8;

impl PageRef {
    pub const NONE: PageRef = PageRef { page: 0, tag: SealTag::ZERO, generation: 0 };
    /// A reference to a node edited in the current transaction (tag and generation are filled
    /// in when it is sealed).
    pub fn dirty(page: PageNo) -> PageRef {
        PageRef { page, tag: SealTag::ZERO, generation: 0 }
    }
    pub fn is_none(&self) -> bool {
        self.page == 0
    }
    /// Whether this is a reference to a node edited in the current transaction (`dirty`): no
    /// committed reference has generation 0 (every commit's sequence number is at least 1).
    pub fn is_dirty(&self) -> bool {
        self.page != 0 && self.generation == 0 && self.tag.ct_eq(&SealTag::ZERO)
    }
    pub fn encode(&self, out: &mut [u8]) {
        out[PAGE_REF_PAGE_OFFSET..PAGE_REF_PAGE_OFFSET + 8].copy_from_slice(&self.page.to_le_bytes());
        out[PAGE_REF_TAG_OFFSET..PAGE_REF_TAG_OFFSET + TAG_SIZE].copy_from_slice(&self.tag.0);
        out[PAGE_REF_GENERATION_OFFSET..PAGE_REF_SIZE].copy_from_slice(&self.generation.to_le_bytes());
    }
    /// A reference as a committed page or record stores it: `None` for one that reads as made
    /// in a transaction (`is_dirty`), which no commit writes. A transaction takes such a
    /// reference for its own edited node: a forged one naming the page it gave another tree's
    /// copy joined the two trees at one page (input review, medium).
    pub fn decode_committed(b: &[u8], off: usize) -> Option<PageRef> {
        PageRef::decode(b, off).filter(|r| !r.is_dirty())
    }
    pub fn decode(b: &[u8], off: usize) -> Option<PageRef> {
        Some(PageRef {
            page: get_u64(b, off + PAGE_REF_PAGE_OFFSET)?,
            tag: SealTag(super::get_array(b, off + PAGE_REF_TAG_OFFSET)?),
            generation: get_u64(b, off + PAGE_REF_GENERATION_OFFSET)?,
        })
    }
}

/// The associated data of a page seal; `version` is the file's format version (from its header).
pub fn aad(file_id: &[u8; 16], page: PageNo, epoch: u32, version: u16) -> [u8; AAD_SIZE] {
    let mut a = [0u8; AAD_SIZE];
    a[..16].copy_from_slice(file_id);
    a[16..24].copy_from_slice(&page.to_le_bytes());
    a[24..28].copy_from_slice(&epoch.to_le_bytes());
    a[28..30].copy_from_slice(&version.to_le_bytes());
    a
}

/// Reads the kind and generation of an opened payload, checking the kind.
pub fn check_kind(payload: &[u8], page: PageNo, want: PageKind) -> Result<()> {
    match payload.get(KIND_OFFSET).copied().and_then(PageKind::from_byte) {
        Some(k) if k == want => Ok(()),
        _ => Err(Error::corrupt(page, CorruptReason::WrongPageKind)),
    }
}

pub fn generation(payload: &[u8]) -> u64 {
    get_u64(payload, GENERATION_OFFSET).unwrap_or(0)
}

pub fn count(payload: &[u8]) -> u16 {
    get_u16(payload, COUNT_OFFSET).unwrap_or(0)
}

/// Writes the common header.
pub fn write_header(payload: &mut [u8], kind: PageKind, count: u16, generation: u64) {
    payload[KIND_OFFSET] = kind as u8;
    payload[1] = 0;
    super::put_u16(payload, COUNT_OFFSET, count);
    super::put_u32(payload, 4, 0);
    super::put_u64(payload, GENERATION_OFFSET, generation);
}
