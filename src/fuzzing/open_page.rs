//! Target `open_page`: untrusted bytes through every decoder of one page, then a few pages
//! through the readers that follow references (trees, overflow chains, the free list).
//!
//! Input: `flags u8 | page u8 | max_epoch u32 | probe (len u8, bytes) | chunks`, where each
//! chunk is `len u16 | bytes` (the last may be short). Chunk 0, at its own length and padded to
//! a page, goes to: `PageSealer::{encrypted, plaintext}(..).open`, `FileHeader::decode`,
//! `CommitRecord::decode`, `RawNode` (every accessor) and `Node::decode`. Flags make the
//! checksum or CRC right first, so decoding goes past them. Chunks 0..5 then become plaintext
//! pages 4.. of a small file, sealed last page first so each reference to a later page can be
//! given that page's real tag (once per page: the pages form a tree, never a shared DAG).
//!
//! Checked: no panic; a failed open zeroes the payload (SPEC.md §3.1); decode → encode →
//! decode is the identity for headers, commit records and nodes that fit; a node one entry past
//! a page splits, in the middle or at either edge, into two halves that fit (SPEC.md §4.2);
//! binary searches agree with a linear model on sorted pages; and on a tree `check_tree`
//! passes, every reader (cursors both ways, point lookups, range collection, salvage) returns
//! the same records.

use std::collections::HashSet;
use std::ops::Bound;
use std::sync::Arc;

use super::{Input, page_of, plain_reseal};
use crate::btree::node::{Branch, Leaf, MAX_ENTRY_SIZE, MAX_KEY_LEN, Node, Value};
use crate::btree::overflow::{self, OVERFLOW_CHUNK};
use crate::btree::raw::{RawNode, RawValue};
use crate::btree::read::{self, Cursor};
use crate::btree::{salvage, verify};
use crate::crypto::cipher::{CipherBackend, CipherId};
use crate::crypto::keys::SecretKey;
use crate::crypto::seal::{DataKeys, KeyPurpose, PageSealer};
use crate::crypto::slots::{self, Credentials};
use crate::format::commit::CommitRecord;
use crate::format::header::{CHECKSUM_OFFSET, CHECKSUM_SIZE, FileHeader};
use crate::format::page::{
    PAGE_HEADER_SIZE, PAGE_REF_GENERATION_OFFSET, PAGE_REF_SIZE, PAGE_REF_TAG_OFFSET, PAYLOAD_SIZE, PageKind, PageRef,
    SealTag, TAG_SIZE, generation,
};
use crate::format::{FIRST_DATA_PAGE, PAGE_SIZE, get_u16};
use crate::pager::{Pager, freelist};
use crate::storage::MemoryStorage;
use crate::{CorruptReason, Error, MasterKey};

const FIX_CHECKSUM: u8 = 1;
const FIX_CRC: u8 = 2;
const SEAL_FIRST: u8 = 4;
const COMMIT_PURPOSE: u8 = 8;
const TRY_UNLOCK: u8 = 16;
const FILE_ID: [u8; 16] = *b"fuzz-open-page-!";
/// Pages of the small file built from the chunks.
const MAX_PAGES: usize = 5;
/// Bound on cursor steps (a tree of five pages holds far fewer entries).
const MAX_STEPS: usize = 20_000;

pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let page = u64::from(inp.u8());
    let max_epoch = inp.u32();
    let probe = inp.short_bytes(40).to_vec();
    let mut chunks = Vec::new();
    while !inp.is_empty() && chunks.len() < MAX_PAGES {
        let n = usize::from(inp.u16());
        chunks.push(inp.bytes(n));
    }
    let first = chunks.first().copied().unwrap_or(&[]);
    decoders(first, page, &probe);
    let padded = page_of(first);
    decoders(&padded[..PAYLOAD_SIZE], page, &probe);
    header(first, page, flags);
    sealed(first, page, max_epoch, flags);
    if !chunks.is_empty() {
        tree_readers(&chunks, &probe, flags, max_epoch);
    }
}

/// The header decoder, with the checksum made right when asked; a decoded header re-encodes
/// to the same fields.
fn header(bytes: &[u8], page: u64, flags: u8) {
    let _ = FileHeader::decode(bytes, page);
    let mut b = page_of(bytes);
    if flags & FIX_CHECKSUM != 0 {
        let sum = blake3::hash(&b[..CHECKSUM_OFFSET]);
        b[CHECKSUM_OFFSET..CHECKSUM_OFFSET + CHECKSUM_SIZE].copy_from_slice(sum.as_bytes());
    }
    let Ok(h) = FileHeader::decode(&b[..], page) else { return };
    let again = FileHeader::decode(&h.encode()[..], page).expect("a decoded header re-encodes to a valid one");
    assert_eq!(format!("{h:?}"), format!("{again:?}"), "header round trip");
    // Unwrapping slots runs Argon2id with the header's parameters; hostile ones are a documented
    // denial of service (SPEC.md §11), so only small ones are tried.
    let cheap = h.slots.iter().flatten().all(|s| {
        !s.kind.uses_passphrase() || (s.kdf.memory_kib <= 256 && s.kdf.iterations <= 2 && s.kdf.parallelism <= 2)
    });
    if flags & TRY_UNLOCK != 0 && cheap {
        let creds = Credentials::passphrase("fuzz").with_master_key(MasterKey::from_bytes([3; 32]));
        if let Ok((dk, _)) = slots::unlock(&h, &creds) {
            let _ = slots::verify_header_mac(&dk, &h);
        }
    }
}

/// Opening a sealed page: a failure never leaves plaintext behind; a page sealed here opens.
fn sealed(bytes: &[u8], page: u64, max_epoch: u32, flags: u8) {
    let purpose = if flags & COMMIT_PURPOSE != 0 { KeyPurpose::Commit } else { KeyPurpose::Page };
    let keys = DataKeys::single(SecretKey::from_bytes([7; 32]));
    let enc = PageSealer::encrypted(FILE_ID, CipherId::Aes256Gcm, CipherBackend::RustCrypto, keys, max_epoch);
    let original = page_of(bytes);
    let mut buf = original.clone();
    if flags & SEAL_FIRST != 0 {
        let epoch = max_epoch.saturating_sub(u32::from(flags >> 6));
        if enc.seal(purpose, page, epoch, &mut buf).is_ok() {
            enc.open(purpose, page, &mut buf).expect("a page sealed under a known epoch opens");
            assert_eq!(buf[..PAYLOAD_SIZE], original[..PAYLOAD_SIZE], "seal/open round trip");
        }
    } else {
        match enc.open(purpose, page, &mut buf) {
            Err(Error::Corrupt { reason: CorruptReason::SealMismatch, .. }) => {
                assert!(buf[..PAYLOAD_SIZE].iter().all(|&b| b == 0), "a page that fails to open is zeroed");
            }
            // Refused before decryption: the buffer still holds the ciphertext as read.
            Err(Error::Corrupt { reason: CorruptReason::UnknownEpoch, .. }) => assert_eq!(buf[..], original[..]),
            Err(e) => panic!("opening a page gave {e:?}"),
            Ok(_) => {}
        }
    }
    let plain = PageSealer::plaintext(FILE_ID);
    let mut buf = original.clone();
    if flags & FIX_CRC != 0 {
        plain_reseal(&FILE_ID, page, &mut buf);
        plain.open(purpose, page, &mut buf).expect("a plaintext page with a right CRC opens");
        assert_eq!(buf[..PAYLOAD_SIZE], original[..PAYLOAD_SIZE]);
        let _ = CommitRecord::decode(&buf[..PAYLOAD_SIZE], page, crate::format::FORMAT_VERSION);
    } else if plain.open(purpose, page, &mut buf).is_err() {
        assert!(buf[..PAYLOAD_SIZE].iter().all(|&b| b == 0), "a plaintext page that fails to open is zeroed");
    }
}

/// The single-page decoders on `p` (any length).
fn decoders(p: &[u8], page: u64, probe: &[u8]) {
    let _ = crate::format::page::check_kind(p, page, PageKind::Leaf);
    let _ = (generation(p), crate::format::page::count(p));
    let _ = crate::btree::TreeRoot::decode(p);
    if let Ok(r) = CommitRecord::decode(p, page, crate::format::FORMAT_VERSION) {
        let mut b = vec![0u8; PAYLOAD_SIZE];
        r.encode(&mut b);
        let again = CommitRecord::decode(&b, page, crate::format::FORMAT_VERSION)
            .expect("a decoded commit record re-encodes to a valid one");
        assert_eq!(format!("{r:?}"), format!("{again:?}"), "commit record round trip");
    }
    if let Ok(raw) = RawNode::new(p, page) {
        raw_node(raw, probe);
    }
    if let Ok(node) = Node::decode(p, page) {
        assert!(RawNode::new(p, page).is_ok());
        node_round_trip(&node, page);
        match node {
            Node::Leaf(l) => leaf_split(&l),
            Node::Branch(b) => branch_split(&b),
        }
    }
}

/// Every accessor, in and out of range; on sorted keys, the binary searches agree with a model.
fn raw_node(raw: RawNode<'_>, probe: &[u8]) {
    let n = raw.len();
    for i in 0..n + 2 {
        // `leaf_key` decodes only the key (the search path), so it may succeed where the
        // value is malformed; where the whole entry decodes, the two agree.
        if let Ok((k, _)) = raw.leaf_entry(i) {
            assert_eq!(Some(k), raw.leaf_key(i).ok());
        }
        let _ = raw.branch_key(i);
    }
    for i in 0..n + 3 {
        let _ = raw.child(i);
    }
    let _ = (raw.leaf_search(probe), raw.child_index(probe));
    let keys: Option<Vec<&[u8]>> = if raw.is_leaf() {
        (0..n).map(|i| raw.leaf_key(i).ok()).collect()
    } else {
        (0..n).map(|i| raw.branch_key(i).ok()).collect()
    };
    let Some(keys) = keys else { return };
    if !keys.windows(2).all(|w| w[0] < w[1]) {
        return;
    }
    if raw.is_leaf() {
        assert_eq!(raw.leaf_search(probe).ok(), Some(keys.binary_search(&probe)), "leaf search");
        for (i, k) in keys.iter().enumerate().take(64) {
            assert_eq!(raw.leaf_search(k).ok(), Some(Ok(i)));
        }
    } else {
        assert_eq!(raw.child_index(probe).ok(), Some(keys.partition_point(|k| *k <= probe)), "child index");
    }
}

fn value_eq(a: RawValue<'_>, b: RawValue<'_>) -> bool {
    match (a, b) {
        (RawValue::Inline(x), RawValue::Inline(y)) => x == y,
        (RawValue::Overflow { first: f, len: l }, RawValue::Overflow { first: g, len: m }) => {
            f.page == g.page && f.tag.0 == g.tag.0 && f.generation == g.generation && l == m
        }
        _ => false,
    }
}

fn leaves_eq(a: &Leaf, b: &Leaf) -> bool {
    a.len() == b.len() && (0..a.len()).all(|i| a.key(i) == b.key(i) && value_eq(a.value(i), b.value(i)))
}

fn refs_eq(a: &[PageRef], b: &[PageRef]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| x.page == y.page && x.tag.0 == y.tag.0 && x.generation == y.generation)
}

/// A decoded node that fits encodes and decodes back to itself; one that does not fit is an
/// error, not a panic.
fn node_round_trip(node: &Node, page: u64) {
    let mut out = vec![0u8; PAYLOAD_SIZE];
    let r = node.encode(9, &mut out);
    if node.size() > PAYLOAD_SIZE {
        assert!(r.is_err(), "an oversized node must not encode");
        return;
    }
    r.expect("a node that fits encodes");
    let again = Node::decode(&out, page).expect("an encoded node decodes");
    let same = match (node, &again) {
        (Node::Leaf(a), Node::Leaf(b)) => leaves_eq(a, b),
        (Node::Branch(a), Node::Branch(b)) => a.keys().eq(b.keys()) && refs_eq(&a.children, &b.children),
        _ => false,
    };
    assert!(same, "node round trip");
    assert_eq!(again.size(), node.size());
}

/// SPEC.md §4.2: a leaf that overflowed by one entry splits into two halves that fit, in the
/// middle and at either edge. The decoded leaf fits a page (`Node::decode` refuses one that
/// does not), so the overflow is made as an insert makes it: a copy of its first entry added
/// at the end (an append: `split_last`) or at the start (`split_first`).
fn leaf_split(l: &Leaf) {
    let sane = (0..l.len()).all(|i| l.entry_size(i) <= MAX_ENTRY_SIZE && l.key(i).len() <= MAX_KEY_LEN);
    if l.is_empty() || !sane {
        return;
    }
    for at_end in [true, false] {
        let mut over = l.clone();
        over.insert(if at_end { l.len() } else { 0 }, l.key(0), l.value(0));
        for edge in [false, true] {
            let mut left = over.clone();
            let mut right = match (edge, at_end) {
                (false, _) => left.split(),
                (true, true) => left.split_last(),
                (true, false) => left.split_first(),
            };
            assert!(!left.is_empty() && !right.is_empty(), "leaf split leaves an empty half");
            assert!(left.size() <= PAYLOAD_SIZE && right.size() <= PAYLOAD_SIZE, "leaf split halves must fit");
            left.append(&mut right);
            assert!(leaves_eq(&left, &over));
        }
    }
}

/// SPEC.md §4.2: the same for a branch one key past a page (a copy of its first key and child
/// added at the end or the start), whose middle key moves up, or the key next to the edge.
fn branch_split(b: &Branch) {
    let sane = b.keys().all(|k| k.len() <= MAX_KEY_LEN) && b.children.len() == b.key_count() + 1;
    let (Some(key), Some(&child)) = (b.key(0), b.children.first()) else { return };
    if b.key_count() < 2 || !sane {
        return;
    }
    for at_end in [true, false] {
        let mut over = b.clone();
        if at_end {
            over.insert_key(over.key_count(), key.to_vec());
            over.children.push(child);
        } else {
            over.insert_key(0, key.to_vec());
            over.children.insert(0, child);
        }
        for edge in [false, true] {
            let mut left = over.clone();
            let (sep, right) = match (edge, at_end) {
                (false, _) => left.split(),
                (true, true) => left.split_last(),
                (true, false) => left.split_first(),
            };
            branch_halves(&over, &left, sep, &right);
        }
    }
}

/// A branch split's halves: children in step with keys, both fit, every key of a sorted half
/// routes just past itself, and keys and children all kept in order.
fn branch_halves(b: &Branch, left: &Branch, sep: Vec<u8>, right: &Branch) {
    assert_eq!(left.children.len(), left.key_count() + 1);
    assert_eq!(right.children.len(), right.key_count() + 1);
    assert!(left.size() <= PAYLOAD_SIZE && right.size() <= PAYLOAD_SIZE, "branch split halves must fit");
    // The search prefixes moved with their keys. Only a sorted branch routes meaningfully
    // (a decoded page's keys are untrusted); a key routes just past a separator equal to it.
    let sorted = |h: &Branch| h.keys().zip(h.keys().skip(1)).all(|(a, b)| a <= b);
    for half in [left, right].into_iter().filter(|h| sorted(h)) {
        for k in half.keys() {
            let i = half.child_index(k);
            assert!(i >= 1 && half.key(i - 1) == Some(k), "a split branch routes a key of its own wrongly");
        }
    }
    let mut keys: Vec<Vec<u8>> = left.keys().map(<[u8]>::to_vec).collect();
    keys.push(sep);
    keys.extend(right.keys().map(<[u8]>::to_vec));
    assert!(keys.iter().map(Vec::as_slice).eq(b.keys()), "a branch split loses or reorders keys");
    let mut children = left.children.clone();
    children.extend(right.children.iter().copied());
    assert!(refs_eq(&children, &b.children));
}

/// Offsets of the references a payload holds to other pages, by its kind.
fn ref_offsets(p: &[u8]) -> Vec<usize> {
    let n = usize::from(get_u16(p, 2).unwrap_or(0));
    match p.first().copied().and_then(PageKind::from_byte) {
        Some(PageKind::Branch) => (0..=n).map(|i| PAGE_HEADER_SIZE + i * PAGE_REF_SIZE).collect(),
        Some(PageKind::Leaf) => (0..n)
            .filter_map(|i| {
                let off = usize::from(get_u16(p, PAGE_HEADER_SIZE + 2 * i)?);
                let klen = usize::from(get_u16(p, off)?);
                (p.get(off + 2) == Some(&1)).then_some(off + 7 + klen)
            })
            .collect(),
        Some(PageKind::Overflow | PageKind::FreeList) => vec![PAGE_HEADER_SIZE],
        _ => Vec::new(),
    }
}

/// Builds plaintext pages `4..4+k` from the chunks and runs the reference-following readers.
fn tree_readers(chunks: &[&[u8]], probe: &[u8], flags: u8, max_epoch: u32) {
    let k = chunks.len() as u64;
    let limit = FIRST_DATA_PAGE + k + u64::from(flags >> 6);
    let mut image = vec![0u8; (FIRST_DATA_PAGE + k) as usize * PAGE_SIZE];
    let mut refs: Vec<Option<(SealTag, u64)>> = vec![None; k as usize];
    let mut referenced = HashSet::new();
    for i in (0..chunks.len()).rev() {
        let page = FIRST_DATA_PAGE + i as u64;
        let mut buf = page_of(&chunks[i][..chunks[i].len().min(PAYLOAD_SIZE)]);
        for off in ref_offsets(&buf[..PAYLOAD_SIZE]) {
            let Some(r) = PageRef::decode(&buf[..PAYLOAD_SIZE], off) else { continue };
            let idx = r.page.wrapping_sub(FIRST_DATA_PAGE);
            if r.page > page && idx < k && referenced.insert(r.page) {
                let (tag, generation) = refs[idx as usize].unwrap_or_default();
                buf[off + PAGE_REF_TAG_OFFSET..off + PAGE_REF_TAG_OFFSET + TAG_SIZE].copy_from_slice(&tag.0);
                buf[off + PAGE_REF_GENERATION_OFFSET..off + PAGE_REF_SIZE].copy_from_slice(&generation.to_le_bytes());
            }
        }
        refs[i] = Some((plain_reseal(&FILE_ID, page, &mut buf), generation(&buf[..PAYLOAD_SIZE])));
        image[page as usize * PAGE_SIZE..(page as usize + 1) * PAGE_SIZE].copy_from_slice(&buf[..]);
    }
    let pager = Pager::new(Arc::new(MemoryStorage::from_bytes(image)), PageSealer::plaintext(FILE_ID), 1 << 20);
    pager.set_page_limit(limit);
    let (tag, generation) = refs[0].unwrap_or_default();
    let root = PageRef { page: FIRST_DATA_PAGE, tag, generation };

    if let Ok((free, chain)) = freelist::read(&pager, root, limit) {
        let end_ok = |&(s, n): &(u64, u32)| s >= FIRST_DATA_PAGE && s + u64::from(n) <= limit && n > 0;
        assert!(free.iter().all(end_ok), "free page out of range");
        assert!(free.windows(2).all(|w| w[0].0 + u64::from(w[0].1) <= w[1].0), "extents sorted, disjoint");
        let total: u64 = free.iter().map(|&(_, n)| u64::from(n)).sum();
        assert!(total <= limit && chain.len() as u64 <= limit);
    }
    let len = u64::from(max_epoch >> 12);
    if let Ok(v) = overflow::read(&pager, root, len) {
        assert_eq!(v.len() as u64, len, "overflow value of the stated length");
        assert_eq!(
            overflow::pages(&pager, root, len).map(|p| p.len()).ok(),
            Some(v.len().div_ceil(OVERFLOW_CHUNK).max(1))
        );
    }
    let _ = verify::verify_since(&pager, root, u64::from(max_epoch & 0xFF));

    let mut seen = HashSet::new();
    let mut problems = Vec::new();
    let _ = verify::check_tree(&pager, "fuzz", root, &mut |p| seen.insert(p), &mut problems);
    let mut all = Vec::new();
    let collected = read::collect_range(&pager, None, root, Bound::Unbounded, Bound::Unbounded, &mut all);
    let forward = walk(&pager, root, true);
    let backward = walk(&pager, root, false);
    let got = read::get(&pager, None, root, probe);
    let mut salvaged = Vec::new();
    let mut lost = 0;
    let mut keep = |k: &[u8], v: Vec<u8>| {
        salvaged.push((k.to_vec(), v));
        Ok(())
    };
    let _ = salvage::walk(&pager, root, &mut keep, &mut |_| lost += 1);
    let from = &probe[..probe.len() / 2];
    let mut part = Vec::new();
    let part_ok = read::collect_range(&pager, None, root, Bound::Excluded(from), Bound::Unbounded, &mut part);
    let _ = read::collect_range(&pager, None, root, Bound::Included(probe), Bound::Excluded(from), &mut Vec::new());
    if !problems.is_empty() {
        return;
    }
    // A tree the full check accepts: every reader must return the same records.
    collected.expect("collect_range on a checked tree");
    part_ok.expect("collect_range on a checked tree");
    let records: Vec<(Vec<u8>, Vec<u8>)> =
        all.iter().map(|(k, v)| (k.clone(), value(&pager, v).expect("value of a checked tree"))).collect();
    assert!(records.windows(2).all(|w| w[0].0 < w[1].0), "keys ascending");
    assert_eq!(forward.expect("forward cursor on a checked tree"), records, "forward cursor");
    let mut back = backward.expect("backward cursor on a checked tree");
    back.reverse();
    assert_eq!(back, records, "backward cursor");
    assert_eq!(lost, 0);
    assert_eq!(salvaged, records, "salvage walk");
    let want = records.iter().find(|(k, _)| k.as_slice() == probe).map(|(_, v)| v.clone());
    let got = got.expect("get on a checked tree").map(|v| value(&pager, &v).expect("value"));
    assert_eq!(got, want, "point lookup");
    let want: Vec<&Vec<u8>> = records.iter().map(|(k, _)| k).filter(|k| k.as_slice() > from).collect();
    assert_eq!(part.iter().map(|(k, _)| k).collect::<Vec<_>>(), want, "collect_range with bounds");
    for excl in [false, true] {
        let c = Cursor::seek_ge(&pager, root, Some(probe), excl).expect("seek_ge");
        let want = records.iter().find(|(k, _)| if excl { k.as_slice() > probe } else { k.as_slice() >= probe });
        assert_eq!(c.map(|c| c.current().expect("current").0), want.map(|(k, _)| k.clone()), "seek_ge");
        let c = Cursor::seek_le(&pager, root, Some(probe), excl).expect("seek_le");
        let want = records.iter().rev().find(|(k, _)| if excl { k.as_slice() < probe } else { k.as_slice() <= probe });
        assert_eq!(c.map(|c| c.current().expect("current").0), want.map(|(k, _)| k.clone()), "seek_le");
    }
}

fn value(pager: &Pager, v: &Value) -> crate::Result<Vec<u8>> {
    match v {
        Value::Inline(b) => Ok(b.clone()),
        Value::Overflow { first, len } => overflow::read(pager, *first, *len),
    }
}

/// Every record by cursor, first to last or last to first (bounded).
fn walk(pager: &Pager, root: PageRef, forward: bool) -> crate::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut c =
        if forward { Cursor::seek_ge(pager, root, None, false)? } else { Cursor::seek_le(pager, root, None, false)? };
    while let Some(cur) = c {
        if out.len() >= MAX_STEPS {
            break;
        }
        let (k, v) = cur.with_current(|k, v| {
            let v = match v {
                RawValue::Inline(b) => Ok(b.to_vec()),
                RawValue::Overflow { first, len } => overflow::read(pager, first, len),
            };
            (k.to_vec(), v)
        })?;
        out.push((k, v?));
        c = if forward { cur.next(pager)? } else { cur.prev(pager)? };
    }
    Ok(out)
}
