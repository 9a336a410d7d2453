//! Reading a backup stream: the structure and hashes (no key needed), and with a key the
//! pages themselves, their Merkle links and the trees they form.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use super::Progress;
use super::format::{
    BACKUP_MAGIC, BackupHeader, CHUNK_ENTRY_SIZE, CHUNK_HASH_SIZE, CHUNK_HEADER_SIZE, CHUNK_TAG_SIZE, HashingReader,
    TRAILER_MAGIC, chunk_aad,
};
use crate::btree::raw::{RawNode, RawValue};
use crate::btree::{TREE_ROOT_SIZE, TreeRoot};
use crate::crypto::cipher::Aead;
use crate::crypto::keys::{SecretKey, context};
use crate::crypto::seal::{KeyPurpose, PageBuf, PageSealer};
use crate::crypto::slots::Credentials;
use crate::crypto::wipe::wipe;
use crate::error::{CorruptReason, Error, PageNo, Result};
use crate::format::header::FileHeader;
use crate::format::page::{PageKind, PageRef, SealTag};
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
    let (dk, _) = crate::db::open::unlock(fh, 0, creds)?;
    if !bh.mac_ok(&dk.derive(context::BACKUP_MAC_KEY, &[]), fh_page) {
        return Err(corrupt(0, None, "backup header MAC"));
    }
    Ok(Some(dk))
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

/// What one opened page says about the tree structure.
#[derive(Default)]
struct PageFacts {
    tag: Option<SealTag>,
    kind: Option<PageKind>,
    /// Pages this one references, with the tags it expects.
    children: Vec<PageRef>,
    records: u64,
    /// A leaf whose every value decodes as a tree root (a catalog leaf, or a user leaf that
    /// looks like one): per entry the value's bytes then the key's, wiped when dropped, since a
    /// user leaf's keys and values are user data. Decoded only once the catalog walk reaches it.
    trees: Vec<zeroize::Zeroizing<Vec<u8>>>,
    /// A leaf value that is not a tree root (in a catalog leaf: an entry that does not decode).
    not_tree_roots: bool,
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
    let mut facts: HashMap<PageNo, PageFacts> = HashMap::new();
    let mut pages = 0u64;
    let total = br.header.live_pages;
    while let Some(chunk) = br.next_chunk(aead.as_deref())? {
        for (page, mut buf) in chunk {
            pages += 1;
            if deep {
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

/// What page `page` of the stream holds, once it opens under its page key: every page in a
/// backup must open and parse (a backup holds only live pages), as restore requires.
fn page_facts(sealer: &PageSealer, page: PageNo, buf: &mut PageBuf) -> Result<PageFacts> {
    let (tag, _) = sealer.open(KeyPurpose::Page, page, buf)?;
    let mut f = PageFacts { tag: Some(tag), ..PageFacts::default() };
    let payload = &buf[..crate::format::page::PAYLOAD_SIZE];
    f.kind = payload.first().copied().and_then(PageKind::from_byte);
    match f.kind {
        Some(PageKind::Branch) | Some(PageKind::Leaf) => {
            let raw = RawNode::new(payload, page)?;
            if raw.is_leaf() {
                for i in 0..raw.len() {
                    match raw.leaf_entry(i)?.1 {
                        RawValue::Overflow { first, .. } => {
                            f.children.push(first);
                            f.not_tree_roots = true;
                        }
                        RawValue::Inline(b) => f.not_tree_roots |= TreeRoot::decode(b).is_none(),
                    }
                }
                f.records = raw.len() as u64;
                // A catalog leaf's entries are its own bytes, so together they fit the page. Slots
                // of a forged leaf may name one entry many times over: copied once per slot,
                // such a page took some 2 MB, each, until the walk.
                if !f.not_tree_roots {
                    let copied: usize = (0..raw.len())
                        .map(|i| raw.leaf_entry(i).map(|(k, _)| TREE_ROOT_SIZE + k.len()))
                        .sum::<Result<usize>>()?;
                    if copied > crate::format::page::PAYLOAD_SIZE {
                        return Err(Error::corrupt(page, crate::error::CorruptReason::BadLayout));
                    }
                    f.trees.reserve_exact(raw.len());
                    for i in 0..raw.len() {
                        let (k, v) = raw.leaf_entry(i)?;
                        let mut e = zeroize::Zeroizing::new(Vec::with_capacity(TREE_ROOT_SIZE + k.len()));
                        e.extend_from_slice(v.inline_bytes());
                        e.extend_from_slice(k);
                        f.trees.push(e);
                    }
                }
            } else {
                for i in 0..=raw.len() {
                    f.children.push(raw.child(i)?);
                }
            }
        }
        Some(PageKind::Overflow) => {
            if let Some(next) = PageRef::decode(payload, crate::btree::overflow::NEXT_OFFSET)
                && !next.is_none()
            {
                f.children.push(next);
            }
        }
        _ => return Err(Error::corrupt(page, crate::error::CorruptReason::WrongPageKind)),
    }
    Ok(f)
}

/// Walks the page graph from the catalog: every link must name a page in the backup with the
/// tag the parent holds and of the kind the link expects (a branch's child a branch or leaf, a
/// value's chain overflow pages), no page is reached twice (within a tree or across trees: each
/// walk would otherwise cover a shared subtree again), and every page of the backup is reached
/// (restore makes each one live). Depth counts branch levels only: an overflow chain is as
/// long as its value, and is bounded by the pages in the backup. Returns records per tree.
fn check_structure(facts: &HashMap<PageNo, PageFacts>, catalog: PageRef) -> Result<BTreeMap<Vec<u8>, u64>> {
    let link = |r: PageRef| -> Result<&PageFacts> {
        let f = facts.get(&r.page).ok_or(Error::BackupCorrupt {
            offset: 0,
            chunk: None,
            what: "a referenced page is missing",
        })?;
        match f.tag {
            Some(t) if t.ct_eq(&r.tag) => Ok(f),
            Some(_) => Err(Error::corrupt(r.page, crate::error::CorruptReason::TagMismatch)),
            None => Err(Error::corrupt(r.page, crate::error::CorruptReason::SealMismatch)),
        }
    };
    let mut visited = crate::pager::pagemap::PageSet::default();
    let mut walk = |root: PageRef, catalog: bool| -> Result<(u64, Vec<(Vec<u8>, TreeRoot)>)> {
        let mut records = 0;
        let mut trees = Vec::new();
        let mut stack = vec![(root, 0usize, false)];
        while let Some((r, depth, in_chain)) = stack.pop() {
            if r.is_none() {
                continue;
            }
            if depth > crate::btree::MAX_DEPTH {
                return Err(Error::corrupt(r.page, crate::error::CorruptReason::TooDeep));
            }
            crate::pager::pagemap::reach_once(&mut visited, r.page)?;
            let f = link(r)?;
            if in_chain != (f.kind == Some(PageKind::Overflow)) {
                return Err(Error::corrupt(r.page, crate::error::CorruptReason::WrongPageKind));
            }
            if f.kind == Some(PageKind::Leaf) {
                records += f.records;
                if catalog {
                    if f.not_tree_roots || f.children.iter().any(|c| !c.is_none()) {
                        return Err(Error::corrupt(r.page, crate::error::CorruptReason::BadLayout));
                    }
                    for e in &f.trees {
                        let bad = || Error::corrupt(r.page, crate::error::CorruptReason::BadLayout);
                        let (root, name) = e.split_at_checked(TREE_ROOT_SIZE).ok_or_else(bad)?;
                        trees.push((name.to_vec(), TreeRoot::decode(root).ok_or_else(bad)?));
                    }
                }
            }
            // A branch's children are a level down; a leaf's values and a chain's links are not.
            let (depth, in_chain) = if f.kind == Some(PageKind::Branch) { (depth + 1, false) } else { (depth, true) };
            stack.extend(f.children.iter().map(|c| (*c, depth, in_chain)));
        }
        Ok((records, trees))
    };
    let (_, trees) = walk(catalog, true)?;
    let mut out = BTreeMap::new();
    for (name, root) in trees {
        let (n, _) = walk(root.root, false)?;
        if n != root.count {
            return Err(Error::corrupt(root.root.page, crate::error::CorruptReason::CountMismatch));
        }
        if !name.starts_with(crate::db::engine::RESERVED_PREFIX) {
            out.insert(name, n);
        }
    }
    if visited.len() != facts.len() {
        return Err(Error::BackupCorrupt { offset: 0, chunk: None, what: "a page no tree reaches" });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btree::node::{Leaf, Node, SLOT};
    use crate::format::page::{PAGE_HEADER_SIZE, PAYLOAD_SIZE};

    fn corrupt_reason<T>(r: Result<T>) -> Option<CorruptReason> {
        match r {
            Err(Error::Corrupt { reason, .. }) => Some(reason),
            _ => None,
        }
    }

    /// Two catalog entries rooted at one page: walked once per tree, a subtree shared by a
    /// thousand entries of a forged catalog was walked a thousand times. It is damage.
    #[test]
    fn a_subtree_shared_by_two_trees_is_damage() {
        let tag = SealTag([9; 16]);
        let shared = PageRef { page: 20, tag, generation: 1 };
        let entry = |name: &[u8]| {
            let mut e = TreeRoot { root: shared, count: 1 }.encode();
            e.extend_from_slice(name);
            zeroize::Zeroizing::new(e)
        };
        let catalog_tag = SealTag([3; 16]);
        let mut facts = HashMap::new();
        let catalog = PageFacts {
            tag: Some(catalog_tag),
            kind: Some(PageKind::Leaf),
            records: 2,
            trees: vec![entry(b"a"), entry(b"b")],
            ..PageFacts::default()
        };
        facts.insert(10, catalog);
        facts.insert(20, PageFacts { tag: Some(tag), kind: Some(PageKind::Leaf), records: 1, ..PageFacts::default() });
        let r = check_structure(&facts, PageRef { page: 10, tag: catalog_tag, generation: 1 });
        assert_eq!(corrupt_reason(r), Some(CorruptReason::DoubleReference));
        // One tree at that root is sound.
        facts.get_mut(&10).unwrap().trees.pop();
        let trees = check_structure(&facts, PageRef { page: 10, tag: catalog_tag, generation: 1 }).unwrap();
        assert_eq!(trees.into_iter().collect::<Vec<_>>(), [(b"a".to_vec(), 1)]);
    }

    /// One tree, a leaf at page 20 holding one value in an overflow chain of `chain` pages
    /// (21, 22, ...), and its catalog at page 10.
    fn tree_with_chain(chain: u64) -> (HashMap<PageNo, PageFacts>, PageRef) {
        let tag = |p: u64| SealTag([p as u8; 16]);
        let link = |p: u64| PageRef { page: p, tag: tag(p), generation: 1 };
        let mut e = TreeRoot { root: link(20), count: 1 }.encode();
        e.extend_from_slice(b"t");
        let mut facts = HashMap::new();
        let catalog = PageFacts {
            tag: Some(tag(10)),
            kind: Some(PageKind::Leaf),
            records: 1,
            trees: vec![zeroize::Zeroizing::new(e)],
            ..PageFacts::default()
        };
        facts.insert(10, catalog);
        let leaf = PageFacts {
            tag: Some(tag(20)),
            kind: Some(PageKind::Leaf),
            records: 1,
            children: vec![link(21)],
            not_tree_roots: true,
            ..PageFacts::default()
        };
        facts.insert(20, leaf);
        for p in 21..21 + chain {
            let next = if p + 1 < 21 + chain { vec![link(p + 1)] } else { Vec::new() };
            facts.insert(
                p,
                PageFacts { tag: Some(tag(p)), kind: Some(PageKind::Overflow), children: next, ..PageFacts::default() },
            );
        }
        (facts, link(10))
    }

    /// An overflow chain is as long as its value, not a tree level per page: a value of some
    /// hundred pages (400 KB) verifies. Its pages must be overflow pages, and every page of the
    /// backup must be reached.
    #[test]
    fn chains_are_not_tree_depth_and_every_page_is_reached() {
        let (mut facts, catalog) = tree_with_chain(100);
        let trees = check_structure(&facts, catalog).unwrap();
        assert_eq!(trees.into_iter().collect::<Vec<_>>(), [(b"t".to_vec(), 1)]);
        // A page that nothing references: restore would make it live and unreachable.
        facts
            .insert(500, PageFacts { tag: Some(SealTag([7; 16])), kind: Some(PageKind::Leaf), ..PageFacts::default() });
        let r = check_structure(&facts, catalog);
        assert!(matches!(r, Err(Error::BackupCorrupt { what: "a page no tree reaches", .. })), "{r:?}");
        facts.remove(&500);
        // A chain that goes on into a leaf, and a leaf whose value is a leaf.
        facts.get_mut(&50).unwrap().kind = Some(PageKind::Leaf);
        assert_eq!(corrupt_reason(check_structure(&facts, catalog)), Some(CorruptReason::WrongPageKind));
        let (mut facts, catalog) = tree_with_chain(1);
        facts.get_mut(&21).unwrap().kind = Some(PageKind::Branch);
        assert_eq!(corrupt_reason(check_structure(&facts, catalog)), Some(CorruptReason::WrongPageKind));
    }

    /// A leaf whose slots all name one entry that decodes as a tree root: its entries would be
    /// copied once per slot, far more than the page holds. Refused as `BadLayout`; the same
    /// leaf with its own slots reads.
    #[test]
    fn catalog_entries_beyond_their_page_are_refused() {
        let sealer = PageSealer::plaintext(*b"backup-verify-ut");
        let root = TreeRoot { root: PageRef { page: 30, tag: SealTag([1; 16]), generation: 1 }, count: 0 }.encode();
        // Eight entries, the first with a long key; then (for `shared`) every slot names it.
        let mut l = Leaf::default();
        l.insert(0, &[b'a'; 900], RawValue::Inline(&root));
        for i in 1..8u8 {
            l.insert(i as usize, &[b'a' + i], RawValue::Inline(&root));
        }
        let page = |shared: bool| {
            let mut buf = Box::new([0u8; PAGE_SIZE]);
            Node::Leaf(l.clone()).encode(1, &mut buf[..PAYLOAD_SIZE]).unwrap();
            let first = [buf[PAGE_HEADER_SIZE], buf[PAGE_HEADER_SIZE + 1]];
            for i in (1..8).filter(|_| shared) {
                let at = PAGE_HEADER_SIZE + SLOT * i;
                buf[at..at + 2].copy_from_slice(&first);
            }
            sealer.seal(KeyPurpose::Page, 12, 0, &mut buf).unwrap();
            buf
        };
        let f = page_facts(&sealer, 12, &mut page(false)).unwrap();
        assert_eq!(f.trees.len(), 8);
        assert_eq!(corrupt_reason(page_facts(&sealer, 12, &mut page(true))), Some(CorruptReason::BadLayout));
    }
}
