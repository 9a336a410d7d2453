//! Byte layout of the backup stream (SPEC.md §13).

use std::io::{self, Read, Write};

use crate::crypto::keys::{SecretKey, context};
use crate::error::{CorruptReason, Error, Result};
use crate::format::page::{PAGE_REF_SIZE, PageRef};
use crate::format::{PAGE_SIZE, get_array, get_u16, get_u32, get_u64, put_u16, put_u32, put_u64};

pub const BACKUP_MAGIC: [u8; 8] = *b"FVBACKUP";
pub const TRAILER_MAGIC: [u8; 8] = *b"FVBKEND\x01";
/// The version this build writes. Version 2 (from 2026-12-04) derives each backup's chunk key
/// with its backup id and binds the source header page into the header MAC; version 1 is read.
pub const BACKUP_VERSION: u16 = 2;
/// The oldest version this build reads.
pub const MIN_BACKUP_VERSION: u16 = 1;

pub const B_MAGIC_OFFSET: usize = 0;
pub const B_VERSION_OFFSET: usize = B_MAGIC_OFFSET + 8;
pub const B_FLAGS_OFFSET: usize = B_VERSION_OFFSET + 2;
pub const B_PAGE_SIZE_OFFSET: usize = B_FLAGS_OFFSET + 2;
pub const B_FILE_ID_OFFSET: usize = B_PAGE_SIZE_OFFSET + 4;
pub const B_BACKUP_ID_OFFSET: usize = B_FILE_ID_OFFSET + 16;
pub const B_SEQ_OFFSET: usize = B_BACKUP_ID_OFFSET + 16;
pub const B_ROOT_DIGEST_OFFSET: usize = B_SEQ_OFFSET + 8;
pub const B_CREATED_OFFSET: usize = B_ROOT_DIGEST_OFFSET + 32;
pub const B_PAGE_COUNT_OFFSET: usize = B_CREATED_OFFSET + 8;
pub const B_CHUNK_PAGES_OFFSET: usize = B_PAGE_COUNT_OFFSET + 8;
pub const B_KEY_EPOCH_OFFSET: usize = B_CHUNK_PAGES_OFFSET + 4;
pub const B_CATALOG_OFFSET: usize = B_KEY_EPOCH_OFFSET + 4;
pub const B_SEALS_OFFSET: usize = B_CATALOG_OFFSET + PAGE_REF_SIZE;
pub const B_LIVE_PAGES_OFFSET: usize = B_SEALS_OFFSET + 8;
/// Keyed BLAKE3 (backup header MAC key) of bytes `0..B_MAC_OFFSET` (version 2: then the BLAKE3
/// of the source header page); zeros for a plaintext source. It stops a forged header (a raised
/// sequence number, say) from restoring, and in version 2 another copy of the source's header
/// (an older one, with slots since removed) from being spliced in.
pub const B_MAC_OFFSET: usize = B_LIVE_PAGES_OFFSET + 8;
pub const B_FIELDS_END: usize = B_MAC_OFFSET + 32;
pub const B_CHECKSUM_OFFSET: usize = PAGE_SIZE - 32;
const _: () = assert!(B_FIELDS_END <= B_CHECKSUM_OFFSET);

/// Chunk header: index u64, page count u32, nonce 12 (zeros for a plaintext source).
pub const CHUNK_HEADER_SIZE: usize = 8 + 4 + 12;
pub const CHUNK_ENTRY_SIZE: usize = 8 + PAGE_SIZE;
pub const CHUNK_TAG_SIZE: usize = 16;
pub const CHUNK_HASH_SIZE: usize = 32;
/// Pages per chunk (at most; the last may hold fewer).
pub const CHUNK_PAGES: u32 = 64;
pub const TRAILER_SIZE: usize = 8 + 8 + 8 + 8 + 32;

pub const FLAG_ENCRYPTED: u16 = 1;

/// The largest page count a backup header may state (16 TiB of 4 KiB pages): a bound on what a
/// damaged or forged header can make restore iterate over.
pub const MAX_PAGE_COUNT: u64 = 1 << 32;

/// The backup header.
#[derive(Debug, Clone)]
pub struct BackupHeader {
    pub version: u16,
    pub encrypted: bool,
    pub file_id: [u8; 16],
    pub backup_id: [u8; 16],
    pub seq: u64,
    pub root_digest: [u8; 32],
    pub created_unix: u64,
    pub page_count: u64,
    pub chunk_pages: u32,
    pub key_epoch: u32,
    pub catalog: PageRef,
    pub seals_in_epoch: u64,
    pub live_pages: u64,
    /// Keyed MAC of the fields (zeros for a plaintext source).
    pub mac: [u8; 32],
}

impl BackupHeader {
    /// The MAC of the header's fields under `key` (the backup header MAC key); from version 2
    /// also of `source_header`, the source header page that follows the header in the stream.
    pub(crate) fn compute_mac(&self, key: &SecretKey, source_header: &[u8]) -> [u8; 32] {
        let b = BackupHeader { mac: [0; 32], ..self.clone() }.encode();
        if self.version < 2 {
            return key.keyed_hash(&b[..B_MAC_OFFSET]);
        }
        let mut input = [0u8; B_MAC_OFFSET + 32];
        input[..B_MAC_OFFSET].copy_from_slice(&b[..B_MAC_OFFSET]);
        input[B_MAC_OFFSET..].copy_from_slice(blake3::hash(source_header).as_bytes());
        key.keyed_hash(&input)
    }

    /// The stream's length in bytes as this header describes it (SPEC §13.2): the header and
    /// source header pages, `live_pages` pages in chunks of `chunk_pages`, the trailer. What a
    /// reader stops at where the medium has no end of its own (a block device). `None` when it
    /// overflows (a header no stream has).
    pub fn stream_len(&self) -> Option<u64> {
        if self.chunk_pages == 0 {
            return None;
        }
        let chunks = self.live_pages.div_ceil(u64::from(self.chunk_pages));
        let per_chunk = (CHUNK_HEADER_SIZE + CHUNK_TAG_SIZE + CHUNK_HASH_SIZE) as u64;
        chunks
            .checked_mul(per_chunk)?
            .checked_add(self.live_pages.checked_mul(CHUNK_ENTRY_SIZE as u64)?)?
            .checked_add((2 * PAGE_SIZE + TRAILER_SIZE) as u64)
    }

    /// Checks the MAC in constant time.
    pub(crate) fn mac_ok(&self, key: &SecretKey, source_header: &[u8]) -> bool {
        bool::from(subtle::ConstantTimeEq::ct_eq(&self.compute_mac(key, source_header)[..], &self.mac[..]))
    }

    /// The key this backup's chunks are sealed under, from the source's data key: one per
    /// backup from version 2 (each backup's chunks are its own random nonces' only users), one
    /// per data key in version 1.
    pub(crate) fn chunk_key(&self, data_key: &SecretKey) -> SecretKey {
        chunk_key(self.version, &self.backup_id, data_key)
    }

    pub fn encode(&self) -> Box<[u8; PAGE_SIZE]> {
        let mut b = Box::new([0u8; PAGE_SIZE]);
        b[..8].copy_from_slice(&BACKUP_MAGIC);
        put_u16(&mut b[..], B_VERSION_OFFSET, self.version);
        put_u16(&mut b[..], B_FLAGS_OFFSET, if self.encrypted { FLAG_ENCRYPTED } else { 0 });
        put_u32(&mut b[..], B_PAGE_SIZE_OFFSET, PAGE_SIZE as u32);
        b[B_FILE_ID_OFFSET..B_FILE_ID_OFFSET + 16].copy_from_slice(&self.file_id);
        b[B_BACKUP_ID_OFFSET..B_BACKUP_ID_OFFSET + 16].copy_from_slice(&self.backup_id);
        put_u64(&mut b[..], B_SEQ_OFFSET, self.seq);
        b[B_ROOT_DIGEST_OFFSET..B_ROOT_DIGEST_OFFSET + 32].copy_from_slice(&self.root_digest);
        put_u64(&mut b[..], B_CREATED_OFFSET, self.created_unix);
        put_u64(&mut b[..], B_PAGE_COUNT_OFFSET, self.page_count);
        put_u32(&mut b[..], B_CHUNK_PAGES_OFFSET, self.chunk_pages);
        put_u32(&mut b[..], B_KEY_EPOCH_OFFSET, self.key_epoch);
        self.catalog.encode(&mut b[B_CATALOG_OFFSET..]);
        put_u64(&mut b[..], B_SEALS_OFFSET, self.seals_in_epoch);
        put_u64(&mut b[..], B_LIVE_PAGES_OFFSET, self.live_pages);
        b[B_MAC_OFFSET..B_MAC_OFFSET + 32].copy_from_slice(&self.mac);
        let sum = blake3::hash(&b[..B_CHECKSUM_OFFSET]);
        b[B_CHECKSUM_OFFSET..].copy_from_slice(sum.as_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<BackupHeader> {
        let bad = || Error::Corrupt { page: 0, reason: CorruptReason::BackupFormat };
        if b.len() < PAGE_SIZE || b[..8] != BACKUP_MAGIC {
            return Err(Error::NotADatabase);
        }
        let sum = blake3::hash(&b[..B_CHECKSUM_OFFSET]);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&b[B_CHECKSUM_OFFSET..PAGE_SIZE], &sum.as_bytes()[..])) {
            return Err(Error::Corrupt { page: 0, reason: CorruptReason::HeaderChecksum });
        }
        let version = get_u16(b, B_VERSION_OFFSET).ok_or_else(bad)?;
        if !(MIN_BACKUP_VERSION..=BACKUP_VERSION).contains(&version) {
            return Err(Error::UnsupportedVersion { found: version, supported: BACKUP_VERSION });
        }
        let flags = get_u16(b, B_FLAGS_OFFSET).ok_or_else(bad)?;
        // The MAC covers the fields as decoded: a flag bit this version does not know would
        // pass unauthenticated, so it is refused.
        if flags & !FLAG_ENCRYPTED != 0 {
            return Err(bad());
        }
        let h = BackupHeader {
            version,
            encrypted: flags & FLAG_ENCRYPTED != 0,
            file_id: get_array(b, B_FILE_ID_OFFSET).ok_or_else(bad)?,
            backup_id: get_array(b, B_BACKUP_ID_OFFSET).ok_or_else(bad)?,
            seq: get_u64(b, B_SEQ_OFFSET).ok_or_else(bad)?,
            root_digest: get_array(b, B_ROOT_DIGEST_OFFSET).ok_or_else(bad)?,
            created_unix: get_u64(b, B_CREATED_OFFSET).ok_or_else(bad)?,
            page_count: get_u64(b, B_PAGE_COUNT_OFFSET).ok_or_else(bad)?,
            chunk_pages: get_u32(b, B_CHUNK_PAGES_OFFSET).ok_or_else(bad)?,
            key_epoch: get_u32(b, B_KEY_EPOCH_OFFSET).ok_or_else(bad)?,
            catalog: PageRef::decode(b, B_CATALOG_OFFSET).ok_or_else(bad)?,
            seals_in_epoch: get_u64(b, B_SEALS_OFFSET).ok_or_else(bad)?,
            live_pages: get_u64(b, B_LIVE_PAGES_OFFSET).ok_or_else(bad)?,
            mac: get_array(b, B_MAC_OFFSET).ok_or_else(bad)?,
        };
        if get_u32(b, B_PAGE_SIZE_OFFSET) != Some(PAGE_SIZE as u32)
            || h.chunk_pages == 0
            || h.chunk_pages > CHUNK_PAGES
            || h.live_pages > h.page_count
            || h.page_count < crate::format::FIRST_DATA_PAGE
            || h.page_count > MAX_PAGE_COUNT
            || h.seq == u64::MAX
            || b[B_FIELDS_END..B_CHECKSUM_OFFSET].iter().any(|&x| x != 0)
        {
            return Err(bad());
        }
        Ok(h)
    }
}

/// The chunk key of a backup of `version` with `backup_id` (`BackupHeader::chunk_key`).
pub(crate) fn chunk_key(version: u16, backup_id: &[u8; 16], data_key: &SecretKey) -> SecretKey {
    if version < 2 {
        data_key.derive(context::BACKUP_KEY, &[])
    } else {
        data_key.derive(context::BACKUP_CHUNK_KEY, backup_id)
    }
}

/// AAD of a chunk: backup id ‖ chunk index ‖ page count.
pub fn chunk_aad(backup_id: &[u8; 16], index: u64, pages: u32) -> [u8; 28] {
    let mut a = [0u8; 28];
    a[..16].copy_from_slice(backup_id);
    a[16..24].copy_from_slice(&index.to_le_bytes());
    a[24..28].copy_from_slice(&pages.to_le_bytes());
    a
}

/// A writer that counts and hashes what passes through.
pub struct HashingWriter<W: Write> {
    pub inner: W,
    pub hasher: blake3::Hasher,
    pub bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: blake3::Hasher::new(), bytes: 0 }
    }
    pub fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.inner.write_all(b)?;
        self.hasher.update(b);
        self.bytes += b.len() as u64;
        Ok(())
    }
}

/// A reader that counts and hashes what it reads, reporting a short stream as `Truncated`.
pub struct HashingReader<R: Read> {
    pub inner: R,
    pub hasher: blake3::Hasher,
    pub bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader { inner, hasher: blake3::Hasher::new(), bytes: 0 }
    }
    /// Fills `buf` exactly; a stream that ends early is `Truncated`.
    pub fn take(&mut self, buf: &mut [u8]) -> Result<()> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                // A reader may say the stream ended early with an error (a decompressor's
                // `UnexpectedEof`) rather than with a read of nothing: truncated either way.
                Ok(0) => {
                    return Err(Error::Truncated {
                        expected: self.bytes + buf.len() as u64,
                        found: self.bytes + filled as u64,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(Error::Truncated {
                        expected: self.bytes + buf.len() as u64,
                        found: self.bytes + filled as u64,
                    });
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
        self.hasher.update(buf);
        self.bytes += buf.len() as u64;
        Ok(())
    }
    /// True if the stream has no more bytes.
    pub fn at_end(&mut self) -> Result<bool> {
        let mut one = [0u8; 1];
        loop {
            match self.inner.read(&mut one) {
                Ok(0) => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(true),
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Version 2 seals each backup's chunks under a key of its own (the backup id is in its
    /// derivation); version 1 under the data key's one backup key.
    #[test]
    fn chunk_keys_are_per_backup_from_version_2() {
        let dk = SecretKey::from_bytes([9; 32]);
        let (a, b) = ([1u8; 16], [2u8; 16]);
        assert_ne!(chunk_key(2, &a, &dk).expose(), chunk_key(2, &b, &dk).expose());
        assert_eq!(chunk_key(2, &a, &dk).expose(), chunk_key(2, &a, &dk).expose());
        assert_eq!(chunk_key(1, &a, &dk).expose(), chunk_key(1, &b, &dk).expose());
        assert_eq!(chunk_key(1, &a, &dk).expose(), dk.derive(context::BACKUP_KEY, &[]).expose());
        assert_ne!(chunk_key(1, &a, &dk).expose(), chunk_key(2, &a, &dk).expose());
    }

    /// A stream that ends early is `Truncated` whether its reader says so with a read of
    /// nothing or with an `UnexpectedEof` error (as decompressors do), not an I/O error.
    #[test]
    fn a_reader_that_ends_with_unexpected_eof_is_truncated() {
        struct EndsWithError<'a>(&'a [u8]);
        impl Read for EndsWithError<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                let n = self.0.len().min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        for stream in [&b"abc"[..], &b""[..]] {
            let mut r = HashingReader::new(EndsWithError(stream));
            let mut buf = [0u8; 8];
            let err = r.take(&mut buf).unwrap_err();
            assert!(matches!(err, Error::Truncated { expected: 8, found } if found == stream.len() as u64), "{err:?}");
        }
        let mut r = HashingReader::new(EndsWithError(b"ab"));
        let mut buf = [0u8; 2];
        r.take(&mut buf).unwrap();
        assert!(r.at_end().unwrap());
    }

    /// A header whose commit number is `u64::MAX` is refused: restore records it as the copy's
    /// commit, which no open accepts (SPEC §5).
    #[test]
    fn a_header_at_the_last_commit_number_is_refused() {
        let h = BackupHeader {
            version: 1,
            encrypted: false,
            file_id: [1; 16],
            backup_id: [2; 16],
            seq: 7,
            root_digest: [0; 32],
            created_unix: 0,
            page_count: 10,
            chunk_pages: 4,
            key_epoch: 0,
            catalog: PageRef::NONE,
            seals_in_epoch: 0,
            live_pages: 1,
            mac: [0; 32],
        };
        assert_eq!(BackupHeader::decode(&h.encode()[..]).unwrap().seq, 7);
        let last = BackupHeader { seq: u64::MAX, ..h };
        assert!(BackupHeader::decode(&last.encode()[..]).is_err());
    }
}
