//! Reading a backup stream: the structure and hashes (no key needed), and with a key the
//! pages themselves, their Merkle links and the trees they form.

use std::collections::{BTreeMap, HashMap};

use super::structure::{PageFacts, check_structure, page_facts};
use std::io::Read;

use super::Progress;
use super::format::{
    BACKUP_MAGIC, BackupHeader, CHUNK_ENTRY_SIZE, CHUNK_HASH_SIZE, CHUNK_HEADER_SIZE, CHUNK_TAG_SIZE, HashingReader,
    TRAILER_MAGIC, chunk_aad,
};
use crate::crypto::cipher::Aead;
use crate::crypto::keys::{SecretKey, context};
use crate::crypto::seal::PageBuf;
use crate::crypto::slots::Credentials;
use crate::crypto::wipe::wipe;
use crate::error::{CorruptReason, Error, PageNo, Result};
use crate::format::header::FileHeader;
use crate::format::{FIRST_DATA_PAGE, PAGE_SIZE, get_u32, get_u64};

/// What a verify (or restore) found. `Debug` shows the number of trees, not their names (user
/// data).
#[derive(Clone, Default)]
pub struct BackupSummary {
    pub seq: u64,
    pub root_digest: [u8; 32],
    pub created_unix: u64,
    pub encrypted: bool,
    pub bytes: u64,
    pub chunks: u64,
    pub pages: u64,
    /// True when pages were opened and the trees checked (a key was given or the source was
    /// plaintext).
    pub deep: bool,
    /// Records per tree (deep verify only).
    pub trees: BTreeMap<Vec<u8>, u64>,
}

impl std::fmt::Debug for BackupSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupSummary")
            .field("seq", &self.seq)
            .field("encrypted", &self.encrypted)
            .field("bytes", &self.bytes)
            .field("chunks", &self.chunks)
            .field("pages", &self.pages)
            .field("deep", &self.deep)
            .field("trees", &self.trees.len())
            .finish_non_exhaustive()
    }
}

impl BackupSummary {
    /// A summary of a stream with this header and (bytes, chunks, pages) as read; no tree counts.
    pub(crate) fn of(header: &BackupHeader, (bytes, chunks, pages): (u64, u64, u64), deep: bool) -> BackupSummary {
        BackupSummary {
            seq: header.seq,
            root_digest: header.root_digest,
            created_unix: header.created_unix,
            encrypted: header.encrypted,
            bytes,
            chunks,
            pages,
            deep,
            trees: BTreeMap::new(),
        }
    }
}

fn corrupt(offset: u64, chunk: Option<u64>, what: &'static str) -> Error {
    tracing::warn!(target: "foldvault::audit", offset, chunk, what, "backup check failed");
    Error::BackupCorrupt { offset, chunk, what }
}

/// A backup being read, chunk by chunk.
pub(crate) struct BackupReader<R: Read> {
    r: HashingReader<R>,
    pub(crate) header: BackupHeader,
    pub(crate) file_header: FileHeader,
    pub(crate) file_header_page: Box<PageBuf>,
    chunks_read: u64,
    pages_read: u64,
    /// The last page number read (page numbers ascend through the stream; none is below 4).
    last_page: PageNo,
}

impl<R: Read> BackupReader<R> {
    pub(crate) fn open(inner: R) -> Result<BackupReader<R>> {
        let mut r = HashingReader::new(inner);
        let mut b = Box::new([0u8; PAGE_SIZE]);
        // The magic first: a stream shorter than a header that is not a backup at all is
        // `NotADatabase`, not `Truncated`.
        match r.take(&mut b[..BACKUP_MAGIC.len()]) {
            // Shorter than the magic: a backup cut short only if what is there starts as one.
            Err(e @ Error::Truncated { found, .. }) => {
                let got = b.get(..found as usize).unwrap_or_default();
                return Err(if BACKUP_MAGIC.starts_with(got) { e } else { Error::NotADatabase });
            }
            r => r?,
        }
        if b[..BACKUP_MAGIC.len()] != BACKUP_MAGIC {
            return Err(Error::NotADatabase);
        }
        r.take(&mut b[BACKUP_MAGIC.len()..])?;
        let header = BackupHeader::decode(&b[..]).map_err(|e| match e {
            Error::Corrupt { reason: CorruptReason::HeaderChecksum, .. } => corrupt(0, None, "backup header checksum"),
            Error::Corrupt { .. } => corrupt(0, None, "backup header field out of range"),
            e => e,
        })?;
        let mut fh = Box::new([0u8; PAGE_SIZE]);
        r.take(&mut fh[..])?;
        let file_header = FileHeader::decode(&fh[..], 0).map_err(|e| match e {
            Error::Corrupt { .. } | Error::NotADatabase => corrupt(PAGE_SIZE as u64, None, "source header"),
            e => e,
        })?;
        if file_header.file_id != header.file_id || file_header.is_encrypted() != header.encrypted {
            return Err(corrupt(PAGE_SIZE as u64, None, "source header does not match the backup header"));
        }
        Ok(BackupReader { r, header, file_header, file_header_page: fh, chunks_read: 0, pages_read: 0, last_page: 0 })
    }

    fn expected_chunks(&self) -> u64 {
        self.header.live_pages.div_ceil(self.header.chunk_pages as u64)
    }

    /// The next chunk's pages (decrypted if `aead`), or `None` after the last chunk.
    pub(crate) fn next_chunk(&mut self, aead: Option<&dyn Aead>) -> Result<Option<Vec<(PageNo, Box<PageBuf>)>>> {
        if self.chunks_read >= self.expected_chunks() {
            return Ok(None);
        }
        let start = self.r.bytes;
        let index = self.chunks_read;
        let mut head = [0u8; CHUNK_HEADER_SIZE];
        self.r.take(&mut head)?;
        let got_index = get_u64(&head, 0).unwrap_or(u64::MAX);
        let n = get_u32(&head, 8).unwrap_or(0) as u64;
        let remaining = self.header.live_pages - self.pages_read;
        // Every chunk is full but the last (SPEC §13.2): the header's page count is the stream's.
        if got_index != index || n != remaining.min(self.header.chunk_pages as u64) {
            return Err(corrupt(start, Some(index), "chunk header"));
        }
        let mut body = vec![0u8; n as usize * CHUNK_ENTRY_SIZE];
        self.r.take(&mut body)?;
        let mut tag = [0u8; CHUNK_TAG_SIZE];
        self.r.take(&mut tag)?;
        let mut hash = [0u8; CHUNK_HASH_SIZE];
        let mut h = blake3::Hasher::new();
        h.update(&head);
        h.update(&body);
        h.update(&tag);
        self.r.take(&mut hash)?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&hash[..], &h.finalize().as_bytes()[..])) {
            return Err(corrupt(start, Some(index), "chunk hash mismatch"));
        }
        self.chunks_read += 1;
        self.pages_read += n;
        if let Some(a) = aead {
            let mut nonce = [0u8; 12];
            nonce.copy_from_slice(&head[12..24]);
            if !a.open(&nonce, &chunk_aad(&self.header.backup_id, index, n as u32), &mut body, &tag) {
                return Err(corrupt(start, Some(index), "chunk does not authenticate"));
            }
        } else if self.header.encrypted {
            return Ok(Some(Vec::new()));
        }
        let mut out = Vec::with_capacity(n as usize);
        for e in body.chunks_exact(CHUNK_ENTRY_SIZE) {
            let page = get_u64(e, 0).unwrap_or(0);
            if page < FIRST_DATA_PAGE || page >= self.header.page_count {
                return Err(corrupt(start, Some(index), "page number out of range"));
            }
            if page <= self.last_page {
                return Err(corrupt(start, Some(index), "page numbers not ascending"));
            }
            self.last_page = page;
            let mut buf = Box::new([0u8; PAGE_SIZE]);
            buf.copy_from_slice(&e[8..]);
            out.push((page, buf));
        }
        Ok(Some(out))
    }

    /// Checks the trailer and the stream hash; the stream must end there.
    /// Bytes of the stream read so far (for progress).
    pub(crate) fn bytes_read(&self) -> u64 {
        self.r.bytes
    }

    pub(crate) fn finish(mut self) -> Result<(u64, u64, u64)> {
        let start = self.r.bytes;
        let mut t = [0u8; 32];
        self.r.take(&mut t)?;
        let digest = self.r.hasher.finalize();
        let mut stored = [0u8; 32];
        self.r.take(&mut stored)?;
        if t[..8] != TRAILER_MAGIC
            || get_u64(&t, 8) != Some(self.chunks_read)
            || get_u64(&t, 16) != Some(self.pages_read)
            || get_u64(&t, 24) != Some(start)
        {
            return Err(corrupt(start, None, "trailer"));
        }
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&stored[..], &digest.as_bytes()[..])) {
            return Err(corrupt(start, None, "stream hash mismatch"));
        }
        if !self.r.at_end()? {
            return Err(corrupt(self.r.bytes, None, "bytes after the trailer"));
        }
        Ok((self.r.bytes, self.chunks_read, self.pages_read))
    }
}

/// Unlocks the data key of the backup's source header; `None` for a plaintext source.
/// `fh` is decoded from the stream's source header page `fh_page`, which the header MAC covers
/// from version 2.
pub(crate) fn unlock_backup(
    fh: &FileHeader,
    fh_page: &[u8],
    bh: &BackupHeader,
    creds: &Credentials,
) -> Result<Option<SecretKey>> {
    if !fh.is_encrypted() {
        return Ok(None);
    }
    // The source header's own MAC (checked once a slot unlocks) fails as the backup's damage at
    // the page it is in, not as `Corrupt { page: 0 }` of a database.
    let (dk, _) = crate::db::open::unlock(fh, 0, creds).map_err(|e| match e {
        Error::Corrupt { reason: CorruptReason::HeaderMac, .. } => corrupt(PAGE_SIZE as u64, None, "source header MAC"),
        e => e,
    })?;
    if !bh.mac_ok(&dk.derive(context::BACKUP_MAC_KEY, &[]), fh_page) {
        return Err(corrupt(0, None, "backup header MAC"));
    }
    Ok(Some(dk))
}

/// In a plaintext backup page numbers are not authenticated: restore lists every page below
/// `page` that the stream does not hold as free, so such gaps are bounded by the pages the
/// stream holds (`restored`, this one included), lest a forged stream make a file of any
/// length. (An encrypted backup's page numbers are authenticated, as is its page count: its
/// source had them.) Checked by verify and restore alike.
pub(crate) fn check_free_below(page: PageNo, restored: u64) -> Result<()> {
    let free_below = (page + 1).saturating_sub(FIRST_DATA_PAGE + restored);
    // 64 per page restored, at least 2^20 (a 4 GiB file).
    if free_below > restored.saturating_mul(64).max(1 << 20) {
        return Err(Error::Unsupported(format!(
            "backup page {page} lies beyond {free_below} free pages, more than restore lists for {restored} pages \
             restored: compact the source and back it up again"
        )));
    }
    Ok(())
}

/// The chunk AEAD of backup `bh` for a data key, for verify and restore: the fastest opener.
pub(crate) fn backup_aead(bh: &BackupHeader, dk: &SecretKey) -> Result<std::sync::Arc<dyn Aead>> {
    let k = bh.chunk_key(dk);
    crate::crypto::cipher::new_aead(
        crate::crypto::CipherId::Aes256Gcm,
        crate::crypto::CipherBackends::default().open,
        &k,
    )
}

/// Verifies a backup. Without credentials (or `None`) only the structure and hashes of an
/// encrypted backup are checked; with them every page is opened, every Merkle link checked,
/// and records are counted per tree. Wrong credentials give `WrongKey`.
pub fn verify<R: Read>(r: R, creds: Option<&Credentials>, progress: &mut dyn FnMut(Progress)) -> Result<BackupSummary> {
    let mut br = BackupReader::open(r)?;
    let dk = match creds {
        Some(c) => unlock_backup(&br.file_header, &br.file_header_page[..], &br.header, c)?,
        None => None,
    };
    let deep = dk.is_some() || !br.header.encrypted;
    let aead = match &dk {
        Some(k) => Some(backup_aead(&br.header, k)?),
        None => None,
    };
    let sealer = crate::db::open::file_sealer(&br.file_header, dk.as_ref(), None)?;
    // No page is sealed under an epoch after the source's current one (as the restored file's
    // open requires).
    sealer.set_max_epoch(br.header.key_epoch);
    let mut facts: HashMap<PageNo, PageFacts> = HashMap::new();
    let mut pages = 0u64;
    let total = br.header.live_pages;
    while let Some(chunk) = br.next_chunk(aead.as_deref())? {
        for (page, mut buf) in chunk {
            pages += 1;
            if deep {
                if !br.header.encrypted {
                    check_free_below(page, facts.len() as u64 + 1)?;
                }
                let f = page_facts(&sealer, page, &mut buf);
                // Opened in place: plaintext now.
                wipe(&mut buf[..]);
                facts.insert(page, f?);
            }
        }
        if !deep {
            pages = br.pages_read;
        }
        progress(Progress { bytes: br.r.bytes, pages, total_pages: total });
    }
    let header = br.header.clone();
    let (bytes, chunks, pages) = br.finish()?;
    let mut summary = BackupSummary::of(&header, (bytes, chunks, pages), deep);
    if deep {
        summary.trees = check_structure(&facts, header.catalog)?;
        // The commit the header names is the one the pages form (restore checks the same).
        let digest = crate::db::engine::root_digest(sealer.file_id(), header.seq, header.catalog);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&digest[..], &header.root_digest[..])) {
            return Err(Error::BackupCorrupt { offset: 0, chunk: None, what: "root digest differs" });
        }
    }
    Ok(summary)
}
