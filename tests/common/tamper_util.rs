#![allow(dead_code)]
//! Helpers for the tamper tests (`tests/tamper.rs`, `tests/tamper_damage.rs`,
//! `tests/rollback.rs`): a deterministic multi-stage workload, raw file surgery, and a
//! plaintext "twin" that reveals the page structure of an encrypted file. The `trial` that
//! opens a (damaged) file, reads everything and classifies what happened is in
//! `tamper_trial.rs`.
//!
//! Why a twin: the payload of an encrypted page is opaque, so the tests cannot tell a branch
//! from a leaf from an overflow page by looking at it. Page allocation is deterministic (lowest
//! free page first, no background flusher, single-threaded workload), so the same workload
//! applied to a plaintext database lays out exactly the same pages; `Fixture::build` checks that
//! (identical `CheckReport::roles`, page counts and commit sequence numbers) before relying on
//! it. In plaintext mode payload byte 0 is the page kind (1 branch, 2 leaf, 3 overflow, 4 free
//! list) and leaves and branches can be decoded (SPEC.md §4).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use foldvault::{CheckReport, Config, Db, KdfParams, MasterKey, PageRole};

pub const PAGE: usize = 4096;
pub const PAYLOAD: usize = foldvault::format::page::PAYLOAD_SIZE;

/// tree name -> key -> value.
pub type Model = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

// ------------------------------------------------------------------------------------------
// Deterministic randomness (no dependency on `rand`'s algorithms staying the same).

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

// ------------------------------------------------------------------------------------------
// Raw file surgery.

pub fn read_file(p: &Path) -> Vec<u8> {
    std::fs::read(p).expect("read file")
}

pub fn write_file(p: &Path, b: &[u8]) {
    std::fs::write(p, b).expect("write file")
}

pub fn page_of(img: &[u8], p: u64) -> Vec<u8> {
    let off = p as usize * PAGE;
    img[off..off + PAGE].to_vec()
}

pub fn read_page(path: &Path, p: u64) -> Vec<u8> {
    let mut b = vec![0u8; PAGE];
    let f = OpenOptions::new().read(true).open(path).expect("open");
    f.read_exact_at(&mut b, p * PAGE as u64).expect("read page");
    b
}

pub fn write_at(path: &Path, off: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).expect("open for write");
    f.write_all_at(bytes, off).expect("write");
    f.sync_all().expect("sync");
}

pub fn write_page(path: &Path, p: u64, bytes: &[u8]) {
    assert_eq!(bytes.len(), PAGE);
    write_at(path, p * PAGE as u64, bytes);
}

/// XORs `mask` into the byte at absolute file offset `off`.
pub fn xor_byte(path: &Path, off: u64, mask: u8) {
    let f = OpenOptions::new().read(true).write(true).open(path).expect("open");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, off).expect("read byte");
    b[0] ^= mask;
    f.write_all_at(&b, off).expect("write byte");
    f.sync_all().expect("sync");
}

pub fn set_len(path: &Path, len: u64) {
    let f = OpenOptions::new().write(true).open(path).expect("open");
    f.set_len(len).expect("set_len");
    f.sync_all().expect("sync");
}

pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("metadata").len()
}

/// Rewrites the checksum of the header copy at page `p` (BLAKE3 of bytes 0..CHECKSUM_OFFSET),
/// as an attacker who knows the format (but not the key) would after changing a field.
pub fn fix_header_checksum(path: &Path, p: u64) {
    use foldvault::format::header::{CHECKSUM_OFFSET, CHECKSUM_SIZE};
    let mut page = read_page(path, p);
    let sum = blake3::hash(&page[..CHECKSUM_OFFSET]);
    page[CHECKSUM_OFFSET..CHECKSUM_OFFSET + CHECKSUM_SIZE].copy_from_slice(sum.as_bytes());
    write_page(path, p, &page);
}

// ------------------------------------------------------------------------------------------
// Keys and configs.

pub const MASTER: [u8; 32] = [7; 32];
pub const PASSPHRASE: &str = "tamper-matrix passphrase";

/// The fixtures keep the state a crash right after the last commit leaves: no second record
/// of the newest commit at close (`checkpoint_on_close(false)`), so the matrix also covers
/// damage that recovery at open must catch.
pub fn base() -> Config {
    Config::new().use_env(false).flush_every_ms(None).kdf(KdfParams::insecure_fast()).checkpoint_on_close(false)
}

pub fn master_cfg(path: &Path) -> Config {
    base().file(path).master_key(MasterKey::from_bytes(MASTER))
}

pub fn plain_cfg(path: &Path) -> Config {
    base().file(path).plaintext()
}

pub fn pass_cfg(path: &Path) -> Config {
    base().file(path).passphrase(PASSPHRASE)
}

// ------------------------------------------------------------------------------------------
// The workload.

pub const WIDE: &str = "wide";
pub const SMALL: &str = "small";
pub const BLOBS: &str = "blobs";
pub const MARKER: &str = "marker";
pub const DEFAULT: &[u8] = foldvault::DEFAULT_TREE;
pub const BLOB_LEN: usize = 20 * 1024;

/// 200-byte keys that differ only in their last bytes: a separator (the shortest key between
/// two leaves) is then nearly the whole key, so a branch holds few, and "wide" is a tree of
/// several levels.
pub fn wide_key(i: u32) -> Vec<u8> {
    let mut k = b"wide/".to_vec();
    k.resize(193, b'k');
    k.extend_from_slice(format!("/{i:06}").as_bytes());
    k
}

pub fn small_key(i: u32) -> Vec<u8> {
    format!("small/{i:06}").into_bytes()
}

pub fn blob_key(i: u32) -> Vec<u8> {
    format!("blob/{i:03}").into_bytes()
}

fn value(tag: &str, i: u32, stage: u32, len: usize) -> Vec<u8> {
    let mut v = format!("{tag}:{i}:stage{stage}:").into_bytes();
    let mut x = (i as u64 + 1) * 0x100_0193 + stage as u64;
    while v.len() < len {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        v.push(b'a' + (x >> 59) as u8 % 26);
    }
    v.truncate(len);
    v
}

fn blob_value(i: u32, stage: u32) -> Vec<u8> {
    let mut r = Rng::new(0xB10B ^ ((i as u64) << 8) ^ stage as u64);
    r.bytes(BLOB_LEN)
}

fn put(db: &Db, m: &mut Model, tree: &str, k: Vec<u8>, v: Vec<u8>) {
    let t = if tree.as_bytes() == DEFAULT { (**db).clone() } else { db.open_tree(tree).expect("open_tree") };
    t.insert(&k, v.clone()).expect("insert");
    m.entry(tree.as_bytes().to_vec()).or_default().insert(k, v);
}

fn batch(db: &Db, m: &mut Model, tree: &str, ops: Vec<(Vec<u8>, Option<Vec<u8>>)>) {
    let t = db.open_tree(tree).expect("open_tree");
    let mut b = foldvault::Batch::default();
    let mt = m.entry(tree.as_bytes().to_vec()).or_default();
    for (k, v) in ops {
        match v {
            Some(v) => {
                b.insert(&k, &v);
                mt.insert(k, v);
            }
            None => {
                b.remove(&k);
                mt.remove(&k);
            }
        }
    }
    t.apply_batch(b).expect("apply_batch");
}

/// Runs stage `stage` (1..=4) of the workload on `db` and the model, then flushes. Returns the
/// durable commit sequence number after the flush.
///
/// 1. "wide" (2000 × 200-byte keys, several levels), "small" (2000 records), "blobs" (12 × 20 KiB
///    overflow values + a few inline), the default tree; then removals and a dropped tree so
///    the free list is not empty.
/// 2. overwrites and removals in "small" and "wide" (copy-on-write frees stage-1 pages).
/// 3. more overwrites: reuses pages freed in stage 2, i.e. page numbers that held stage-1 pages.
/// 4. one record in "marker": the newest commit touches only that tree, the catalog and the
///    free list, so recovery at open does not descend into the other trees.
pub fn run_stage(db: &Db, m: &mut Model, stage: u32) -> u64 {
    let mut rng = Rng::new(stage as u64 * 1000 + 17);
    match stage {
        1 => {
            let mut order: Vec<u32> = (0..2000).collect();
            rng.shuffle(&mut order);
            for chunk in order.chunks(40) {
                let ops = chunk.iter().map(|&i| (wide_key(i), Some(value("w", i, 1, 40)))).collect();
                batch(db, m, WIDE, ops);
            }
            rng.shuffle(&mut order);
            for chunk in order.chunks(25) {
                let ops =
                    chunk.iter().map(|&i| (small_key(i), Some(value("s", i, 1, 20 + (i as usize % 30))))).collect();
                batch(db, m, SMALL, ops);
            }
            for i in 0..12 {
                put(db, m, BLOBS, blob_key(i), blob_value(i, 1));
            }
            for i in 100..105 {
                put(db, m, BLOBS, blob_key(i), value("b", i, 1, 100));
            }
            for i in 0..10 {
                put(db, m, std::str::from_utf8(DEFAULT).unwrap(), format!("d{i}").into_bytes(), value("d", i, 1, 30));
            }
            // Removals: free pages for the free list.
            let ops = (0..2000).step_by(7).map(|i| (small_key(i), None)).collect();
            batch(db, m, SMALL, ops);
            for i in [1, 5, 9] {
                let t = db.open_tree(BLOBS).unwrap();
                t.remove(blob_key(i)).unwrap();
                m.get_mut(BLOBS.as_bytes()).unwrap().remove(&blob_key(i));
            }
            let scratch = db.open_tree("scratch").unwrap();
            for i in 0..300u32 {
                scratch.insert(format!("x{i:05}"), value("x", i, 1, 60)).unwrap();
            }
            drop(scratch);
            assert!(db.drop_tree("scratch").unwrap());
        }
        2 => {
            let ops = (0..2000)
                .filter(|i| i % 7 != 0)
                .step_by(3)
                .map(|i| (small_key(i), Some(value("s", i, 2, 10 + (i as usize % 40)))))
                .collect();
            batch(db, m, SMALL, ops);
            let ops = (0..2000).step_by(11).map(|i| (wide_key(i), None)).collect();
            batch(db, m, WIDE, ops);
            let ops = (2000..2100).map(|i| (wide_key(i), Some(value("w", i, 2, 40)))).collect();
            batch(db, m, WIDE, ops);
        }
        3 => {
            let ops = (0..2000)
                .filter(|i| i % 7 != 0)
                .step_by(5)
                .map(|i| (small_key(i), Some(value("s", i, 3, 25))))
                .collect();
            batch(db, m, SMALL, ops);
            for i in [0, 2] {
                put(db, m, BLOBS, blob_key(i), blob_value(i, 3));
            }
            let ops = (0..2000)
                .filter(|i| i % 11 != 0)
                .step_by(13)
                .map(|i| (wide_key(i), Some(value("w", i, 3, 40))))
                .collect();
            batch(db, m, WIDE, ops);
        }
        4 => {
            put(db, m, MARKER, b"marker".to_vec(), b"stage4".to_vec());
        }
        _ => unreachable!(),
    }
    db.flush().expect("flush");
    assert_eq!(db.durable_commit_seq(), db.commit_seq());
    db.durable_commit_seq()
}

// ------------------------------------------------------------------------------------------
// The page structure, learned from a plaintext twin.

#[derive(Debug, Clone, Default)]
pub struct PageInfo {
    pub role: Option<PageRole>,
    /// Payload byte 0 in the twin: 1 branch, 2 leaf, 3 overflow, 4 free list.
    pub kind: u8,
    /// The commit sequence number that wrote the page (payload bytes 8..16).
    pub generation: u64,
    /// Leaf keys.
    pub keys: Vec<Vec<u8>>,
    /// Branch children.
    pub children: Vec<u64>,
    /// Leaf: the first overflow page of each entry stored out of line.
    pub overflow_firsts: Vec<(Vec<u8>, u64)>,
    /// Overflow: the next page of the chain (0 = last).
    pub next: u64,
}

/// A commit record as decoded from the plaintext twin (pages 2 and 3).
#[derive(Debug, Clone, Copy, Default)]
pub struct CommitInfo {
    pub slot: u64,
    pub seq: u64,
    pub prev_durable_seq: u64,
    pub page_count: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub page_count: u64,
    pub pages: Vec<PageInfo>,
    /// Tree name -> root page.
    pub roots: BTreeMap<Vec<u8>, u64>,
    /// The two commit slots, newest first.
    pub commits: Vec<CommitInfo>,
}

pub const KIND_BRANCH: u8 = 1;
pub const KIND_LEAF: u8 = 2;
pub const KIND_OVERFLOW: u8 = 3;
pub const KIND_FREELIST: u8 = 4;

fn u16_at(b: &[u8], o: usize) -> usize {
    u16::from_le_bytes([b[o], b[o + 1]]) as usize
}
fn u32_at(b: &[u8], o: usize) -> usize {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// Decodes the plaintext file image `img` page by page (SPEC.md §4), with the roles `check`
/// reported for it.
pub fn decode_plain(img: &[u8], roles: &[PageRole]) -> Layout {
    let mut l = Layout { page_count: roles.len() as u64, ..Layout::default() };
    for (p, role) in roles.iter().enumerate() {
        let mut info = PageInfo { role: Some(role.clone()), ..PageInfo::default() };
        if p >= 4 && matches!(role, PageRole::Tree(_) | PageRole::Catalog | PageRole::FreeList) {
            let b = &img[p * PAGE..p * PAGE + PAYLOAD];
            info.kind = b[0];
            info.generation = u64_at(b, 8);
            let n = u16_at(b, 2);
            match info.kind {
                KIND_LEAF => {
                    for i in 0..n {
                        let off = u16_at(b, 16 + 2 * i);
                        let klen = u16_at(b, off);
                        let vkind = b[off + 2];
                        let vlen = u32_at(b, off + 3);
                        let key = b[off + 7..off + 7 + klen].to_vec();
                        if vkind == 1 {
                            info.overflow_firsts.push((key.clone(), u64_at(b, off + 7 + klen)));
                        }
                        if *role == PageRole::Catalog {
                            assert_eq!((vkind, vlen), (0, 40), "catalog values are inline TreeRoots");
                            let root = u64_at(b, off + 7 + klen);
                            l.roots.insert(key.clone(), root);
                        }
                        info.keys.push(key);
                    }
                }
                KIND_BRANCH => {
                    for i in 0..=n {
                        info.children.push(u64_at(b, 16 + foldvault::format::page::PAGE_REF_SIZE * i));
                    }
                }
                KIND_OVERFLOW => info.next = u64_at(b, 16),
                _ => {}
            }
        }
        l.pages.push(info);
    }
    for slot in [2u64, 3] {
        let b = &img[slot as usize * PAGE..slot as usize * PAGE + PAYLOAD];
        if b[0] == 5 {
            use foldvault::format::commit::{PAGE_COUNT_OFFSET, PREV_DURABLE_OFFSET, SEQ_OFFSET};
            l.commits.push(CommitInfo {
                slot,
                seq: u64_at(b, SEQ_OFFSET),
                prev_durable_seq: u64_at(b, PREV_DURABLE_OFFSET),
                page_count: u64_at(b, PAGE_COUNT_OFFSET),
            });
        }
    }
    l.commits.sort_by_key(|c| std::cmp::Reverse(c.seq));
    l
}

impl Layout {
    pub fn tree_pages(&self, tree: &str) -> impl Iterator<Item = (u64, &PageInfo)> {
        let want = PageRole::Tree(tree.to_string());
        self.pages.iter().enumerate().filter(move |(_, i)| i.role.as_ref() == Some(&want)).map(|(p, i)| (p as u64, i))
    }
    pub fn root(&self, tree: &str) -> u64 {
        self.roots[tree.as_bytes()]
    }
    pub fn pages_with_role(&self, role: &PageRole) -> Vec<u64> {
        self.pages.iter().enumerate().filter(|(_, i)| i.role.as_ref() == Some(role)).map(|(p, _)| p as u64).collect()
    }
    /// Every page below `p` in its tree (p included), with overflow chains left out.
    pub fn subtree(&self, p: u64) -> BTreeSet<u64> {
        let mut out = BTreeSet::new();
        let mut stack = vec![p];
        while let Some(q) = stack.pop() {
            if out.insert(q) {
                stack.extend(self.pages[q as usize].children.iter().copied());
            }
        }
        out
    }
    /// The overflow chain starting at `first`.
    pub fn chain(&self, first: u64) -> Vec<u64> {
        let mut v = vec![first];
        while let Some(&last) = v.last() {
            let n = self.pages[last as usize].next;
            if n == 0 || v.len() > self.pages.len() {
                break;
            }
            v.push(n);
        }
        v
    }
    /// The (tree, key) whose overflow chain holds page `p`, if any.
    pub fn owner_of_overflow(&self, p: u64) -> Option<(String, Vec<u8>)> {
        for info in &self.pages {
            for (k, first) in &info.overflow_firsts {
                if self.chain(*first).contains(&p) {
                    let tree = match &info.role {
                        Some(PageRole::Tree(t)) => t.clone(),
                        _ => String::new(),
                    };
                    return Some((tree, k.clone()));
                }
            }
        }
        None
    }
    /// The leaf keys below page `p`.
    pub fn keys_below(&self, p: u64) -> BTreeSet<Vec<u8>> {
        self.subtree(p).into_iter().flat_map(|q| self.pages[q as usize].keys.clone()).collect()
    }
}

// ------------------------------------------------------------------------------------------
// The fixture.

pub struct Fixture {
    /// The encrypted database (master key `MASTER`), final state.
    pub image: Vec<u8>,
    /// The same database after stage 1 (an old copy, for rollback and stale pages).
    pub image_stage1: Vec<u8>,
    /// The plaintext twin, final state.
    pub plain_image: Vec<u8>,
    /// Another database under the same master key with the same workload (other file id, other
    /// data key).
    pub foreign: Vec<u8>,
    /// Durable commit sequence numbers after stages 1..=4.
    pub seqs: Vec<u64>,
    /// The database contents at each durable commit sequence number.
    pub models: BTreeMap<u64, Model>,
    /// The structure of the final state (from the plaintext twin).
    pub layout: Layout,
    /// The structure after stage 1 (from the plaintext twin).
    pub layout_stage1: Layout,
    pub check_roles: Vec<PageRole>,
}

fn roles_of(cfg: &Config) -> (Vec<PageRole>, CheckReport) {
    let db = cfg.open().expect("open for check");
    let r = db.check().expect("check");
    assert!(r.is_ok(), "fresh database has problems: {:?}", r.problems);
    let by_page = r.roles.runs().flat_map(|(pages, role)| pages.map(move |_| role.clone())).collect();
    (by_page, r)
}

/// Builds the encrypted database, its plaintext twin and a foreign database, stage by stage.
pub fn build_fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let enc = dir.path().join("enc.db");
    let plain = dir.path().join("plain.db");
    let foreign = dir.path().join("foreign.db");
    let mut models = BTreeMap::new();
    let mut seqs = Vec::new();
    let (mut me, mut mp, mut mf) = (Model::new(), Model::new(), Model::new());
    let mut image_stage1 = Vec::new();
    let mut layout_stage1 = Layout::default();
    for stage in 1..=4 {
        // Reopen for every stage: each stage starts from a freshly opened file, as an
        // application restarting would.
        let de = master_cfg(&enc).open().expect("open enc");
        let dp = plain_cfg(&plain).open().expect("open plain");
        let df = master_cfg(&foreign).open().expect("open foreign");
        let se = run_stage(&de, &mut me, stage);
        let sp = run_stage(&dp, &mut mp, stage);
        let sf = run_stage(&df, &mut mf, stage);
        assert_eq!((se, se), (sp, sf), "twins diverged in commit sequence at stage {stage}");
        drop((de, dp, df));
        seqs.push(se);
        models.insert(se, me.clone());
        let (re, _) = roles_of(&master_cfg(&enc));
        let (rp, _) = roles_of(&plain_cfg(&plain));
        assert_eq!(re, rp, "the plaintext twin's page roles differ from the encrypted file's at stage {stage}");
        if stage == 1 {
            image_stage1 = read_file(&enc);
            layout_stage1 = decode_plain(&read_file(&plain), &rp);
        }
    }
    let (check_roles, _) = roles_of(&master_cfg(&enc));
    let layout = decode_plain(&read_file(&plain), &check_roles);
    assert_eq!(file_len(&enc), file_len(&plain));
    let f = Fixture {
        image: read_file(&enc),
        image_stage1,
        plain_image: read_file(&plain),
        foreign: read_file(&foreign),
        seqs,
        models,
        layout,
        layout_stage1,
        check_roles,
    };
    f.sanity();
    f
}

impl Fixture {
    fn sanity(&self) {
        let l = &self.layout;
        let wide_root = l.root(WIDE);
        assert_eq!(l.pages[wide_root as usize].kind, KIND_BRANCH);
        let deep = l.pages[wide_root as usize].children.iter().any(|&c| l.pages[c as usize].kind == KIND_BRANCH);
        assert!(deep, "'wide' should have at least three levels");
        assert!(l.tree_pages(BLOBS).any(|(_, i)| i.kind == KIND_OVERFLOW));
        assert!(!l.pages_with_role(&PageRole::FreeList).is_empty(), "free list should be non-empty");
        assert!(!l.pages_with_role(&PageRole::Free).is_empty(), "there should be free pages");
        assert_eq!(l.commits.len(), 2);
        assert_eq!(l.commits[0].seq, self.seqs[3]);
        assert_eq!(l.commits[1].seq, self.seqs[2]);
        assert_eq!(l.commits[0].prev_durable_seq, self.seqs[2]);
        assert_eq!(self.image.len() as u64, l.commits[0].page_count * PAGE as u64);
    }

    /// A fresh copy of the final encrypted file to damage, in `dir`.
    pub fn copy(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(format!("trial-{name}.db"));
        write_file(&p, &self.image);
        p
    }

    pub fn last_seq(&self) -> u64 {
        *self.seqs.last().unwrap()
    }

    pub fn final_model(&self) -> &Model {
        &self.models[&self.last_seq()]
    }

    /// The tree a key lives in, in the final model.
    pub fn tree_of_key(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.final_model().iter().find(|(_, t)| t.contains_key(key)).map(|(n, _)| n.clone())
    }
}
