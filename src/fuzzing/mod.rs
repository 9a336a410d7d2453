//! Fuzz targets. Each is a `run(data: &[u8])` that must return normally for every input: a
//! panic is a bug, either in the library or in an invariant the target checks. cargo-fuzz runs
//! them from `fuzz/fuzz_targets/` (thin wrappers); `tests/fuzz_corpus.rs` runs them over the
//! checked-in corpus (`fuzz/corpus/<target>/seed-*`) and over pseudo-random inputs, so a plain
//! `cargo test` catches regressions without libFuzzer.
//!
//! Doc-hidden and not part of the API: the targets reach crate-private decoders directly.
//!
//! | target | what it feeds with fuzz input |
//! |--------|-------------------------------|
//! | [`open_page`] | one page to every page decoder; a few pages to the tree, overflow and free-list readers |
//! | [`db_ops`] | operations on three trees over a `FaultyStorage`, with crashes and I/O errors, against a model |
//! | [`corrupt_file`] | mutations of valid database files, then open, scan and check |
//! | [`wal_replay`] | a write-ahead log damaged like a crash leaves it, or arbitrarily, then replayed |
//! | [`backup_stream`] | mutations of a valid backup stream, then `verify` (without and with the key) and `restore` |
//!
//! Inputs are read through [`Input`], which turns any byte string into small numbers, so every
//! input means something and libFuzzer's mutations stay local. Shared here too: plaintext
//! re-sealing (so targets can forge pages the way an attacker can in plaintext mode), and
//! `TreeOp`, an operation on one tree with its `BTreeMap` model, run alone or in a transaction.

pub mod backup_stream;
pub mod corrupt_file;
pub mod db_ops;
pub mod open_page;
pub mod wal_replay;

use std::collections::BTreeMap;

use crate::crypto::seal::PageBuf;
use crate::format::page::{EPOCH_OFFSET, NONCE_OFFSET, NONCE_SIZE, PAYLOAD_SIZE, SealTag, TAG_OFFSET, TAG_SIZE, aad};
use crate::format::{FORMAT_VERSION, PAGE_SIZE};
use crate::{Batch, Db, Error, IVec, MAX_KEY_LEN, Result, WriteTransaction};

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// Every target, by the name of its directory under `fuzz/corpus/`.
pub const TARGETS: [(&str, Target); 5] = [
    ("open_page", open_page::run),
    ("db_ops", db_ops::run),
    ("corrupt_file", corrupt_file::run),
    ("backup_stream", backup_stream::run),
    ("wal_replay", wal_replay::run),
];

/// A cursor over fuzz input. Reads past the end give zeros, so decoding never fails.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data, pos: 0 }
    }
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos = self.pos.saturating_add(1);
        b
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    pub fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }
    /// A number in `0..n` (`n > 0`), from one byte when `n <= 256`, else two.
    pub fn below(&mut self, n: usize) -> usize {
        let x = if n <= 256 { usize::from(self.u8()) } else { usize::from(self.u16()) };
        x % n.max(1)
    }
    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = self.pos.saturating_add(n);
        &self.data[start..end]
    }
    /// A byte string whose length (one byte, `0..=max`) comes first.
    pub fn short_bytes(&mut self, max: usize) -> &'a [u8] {
        let n = self.below(max + 1);
        self.bytes(n)
    }
    /// A key: mostly from a tiny alphabet (so operations collide), sometimes any short string,
    /// sometimes one over `MAX_KEY_LEN`.
    pub fn key(&mut self) -> Vec<u8> {
        match self.u8() % 16 {
            0..=9 => (0..self.below(4)).map(|_| self.u8() % 4).collect(),
            10..=14 => self.short_bytes(24).to_vec(),
            s => filler(u64::from(s), 1000 + self.below(60)), // past 1024 = MAX_KEY_LEN, mostly
        }
    }
    /// A value: mostly small, sometimes near the inline limit, sometimes a multi-page overflow.
    pub fn value(&mut self) -> Vec<u8> {
        let c = self.u8();
        match c % 8 {
            0..=4 => filler(u64::from(c), self.below(120)),
            5 | 6 => filler(u64::from(c), 1000 + self.below(1500)),
            _ => filler(u64::from(c), 4000 + self.below(6000)),
        }
    }
    /// A value, or `None` (a removal) one time in four.
    pub fn maybe_value(&mut self) -> Option<Vec<u8>> {
        if self.u8().is_multiple_of(4) { None } else { Some(self.value()) }
    }
    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        self.pos = self.data.len();
        &self.data[start..]
    }
}

/// SplitMix64: deterministic filler for values and for the pseudo-random test inputs; also the
/// generator of the tests' and benchmarks' workloads (one copy for all of them).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }
    /// An index in `0..n` (`n > 0`).
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }
    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.index(i + 1));
        }
    }
    pub fn fill(&mut self, out: &mut [u8]) {
        for c in out.chunks_mut(8) {
            let x = self.next_u64().to_le_bytes();
            c.copy_from_slice(&x[..c.len()]);
        }
    }
}

/// `len` bytes determined by `seed` (values in the targets are named by a seed, not spelled out).
pub(crate) fn filler(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng(seed).fill(&mut v);
    v
}

/// A page buffer holding `bytes` (cut to a page, zero-padded).
pub(crate) fn page_of(bytes: &[u8]) -> Box<PageBuf> {
    let mut b = Box::new([0u8; PAGE_SIZE]);
    let n = bytes.len().min(PAGE_SIZE);
    b[..n].copy_from_slice(&bytes[..n]);
    b
}

/// The plaintext-mode tag of a sealed page as it stands (SPEC.md §3.1: CRC32 of AAD ‖ nonce ‖
/// payload, in the first four tag bytes). Mirrors `crypto::seal`, keeping the page's nonce and
/// epoch, so the harness can re-seal an edited plaintext page deterministically.
pub(crate) fn plain_tag(file_id: &[u8; 16], page: u64, buf: &PageBuf) -> SealTag {
    let mut e = [0u8; 4];
    e.copy_from_slice(&buf[EPOCH_OFFSET..EPOCH_OFFSET + 4]);
    let ad = aad(file_id, page, u32::from_le_bytes(e), FORMAT_VERSION);
    let mut h = crc32fast::Hasher::new();
    h.update(&ad);
    h.update(&buf[NONCE_OFFSET..NONCE_OFFSET + NONCE_SIZE]);
    h.update(&buf[..PAYLOAD_SIZE]);
    let mut t = [0u8; TAG_SIZE];
    t[..4].copy_from_slice(&h.finalize().to_le_bytes());
    SealTag(t)
}

/// Re-seals a plaintext page in place (its nonce and epoch kept); returns the new tag.
pub(crate) fn plain_reseal(file_id: &[u8; 16], page: u64, buf: &mut PageBuf) -> SealTag {
    let t = plain_tag(file_id, page, buf);
    buf[TAG_OFFSET..TAG_OFFSET + TAG_SIZE].copy_from_slice(&t.0);
    t
}

/// Replaces every occurrence of `from` in `hay` by `to` (same length); true if any was found.
pub(crate) fn replace_all(hay: &mut [u8], from: &[u8], to: &[u8]) -> bool {
    let n = from.len();
    let mut found = false;
    let mut i = 0;
    while n > 0 && i + n <= hay.len() {
        if &hay[i..i + n] == from {
            hay[i..i + n].copy_from_slice(to);
            found = true;
            i += n;
        } else {
            i += 1;
        }
    }
    found
}

// ---- Operations on one tree, with their model (db_ops; backup_stream will populate with them) ----

/// A tree's contents in the model.
pub(crate) type Map = BTreeMap<Vec<u8>, Vec<u8>>;
/// A batch: inserts (`Some`) and removals (`None`).
pub(crate) type Puts = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// An operation on one tree, alone or inside a write transaction. `Put` inserts (`Some`) or
/// removes (`None`); `Cas` with `current` takes `old` from the model when it runs (so it swaps);
/// `Update` is `update_and_fetch` (`fetch_new`) or `fetch_and_update` with `updated` as the
/// closure.
#[derive(Debug, Clone)]
pub(crate) enum TreeOp {
    Put { key: Vec<u8>, value: Option<Vec<u8>> },
    Read { lo: Vec<u8>, hi: Vec<u8>, mode: u8 },
    Batch(Puts),
    Clear { drop: bool },
    Pop { max: bool },
    Cas { key: Vec<u8>, old: Option<Vec<u8>>, current: bool, new: Option<Vec<u8>> },
    Update { key: Vec<u8>, fetch_new: bool },
}

/// The closure of `TreeOp::Update`: a byte appended (its length), an absent value made `u`,
/// and a value whose length is a multiple of 3 removed.
fn updated(old: Option<&[u8]>) -> Option<Vec<u8>> {
    match old {
        None => Some(b"u".to_vec()),
        Some(v) if v.len() % 3 == 0 => None,
        Some(v) => Some([v, &[v.len() as u8]].concat()),
    }
}

/// One result, as the model predicts it and as the database returns it.
#[derive(Debug, PartialEq)]
pub(crate) enum Out {
    Value(Option<Vec<u8>>),
    Pairs(Vec<(Vec<u8>, Vec<u8>)>),
    TooLarge,
    Done,
    Id(u64),
}

impl Input<'_> {
    pub(crate) fn tree_op(&mut self) -> TreeOp {
        match self.u8() % 16 {
            0..=5 => TreeOp::Put { key: self.key(), value: Some(self.value()) },
            6 | 7 => TreeOp::Put { key: self.key(), value: None },
            8 | 9 => TreeOp::Read { lo: self.key(), hi: self.key(), mode: self.u8() },
            10 | 11 => TreeOp::Batch((0..self.below(9)).map(|_| (self.key(), self.maybe_value())).collect()),
            12 => TreeOp::Clear { drop: self.bool() },
            13 => TreeOp::Pop { max: self.bool() },
            14 => TreeOp::Update { key: self.key(), fetch_new: self.bool() },
            _ => {
                TreeOp::Cas { key: self.key(), old: self.maybe_value(), current: self.bool(), new: self.maybe_value() }
            }
        }
    }
}

/// Inserts (`Some`) or removes (`None`); returns the old value.
fn put(m: &mut Map, k: &[u8], v: &Option<Vec<u8>>) -> Option<Vec<u8>> {
    match v {
        Some(v) => m.insert(k.to_vec(), v.clone()),
        None => m.remove(k),
    }
}

/// Whether a batch fails: an insert with an oversized key (removing one is a no-op).
/// A batch keeps each key's last operation (as sled's): an insert of a key too long is refused
/// unless a later removal of that key replaced it in the batch.
fn too_large(puts: &Puts) -> bool {
    let last: std::collections::BTreeMap<&[u8], bool> = puts.iter().map(|(k, v)| (&k[..], v.is_some())).collect();
    last.iter().any(|(k, insert)| *insert && k.len() > MAX_KEY_LEN)
}

fn pairs_of<'a>(it: impl Iterator<Item = (&'a Vec<u8>, &'a Vec<u8>)>) -> Out {
    Out::Pairs(it.map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn pairs(it: impl Iterator<Item = Result<(IVec, IVec)>>) -> Result<Out> {
    Ok(Out::Pairs(it.map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec()))).collect::<Result<_>>()?))
}

/// `KeyTooLarge` is a result the model predicts; any other error ends the operation.
fn out(r: Result<Out>) -> Result<Out> {
    match r {
        Err(Error::KeyTooLarge { .. }) => Ok(Out::TooLarge),
        r => r,
    }
}

fn value_out(r: Result<Option<IVec>>) -> Result<Out> {
    out(r.map(|v| Out::Value(v.map(|v| v.to_vec()))))
}

fn batch_of(puts: &Puts) -> Batch {
    let mut b = Batch::default();
    for (k, v) in puts {
        match v {
            Some(v) => b.insert(k, v),
            None => b.remove(k),
        }
    }
    b
}

impl TreeOp {
    /// What the operation does to the tree `m`, and what it returns (`tx`: in a transaction).
    pub(crate) fn model(&self, m: &mut Map, tx: bool) -> Out {
        match self {
            TreeOp::Put { key, value: Some(_) } if key.len() > MAX_KEY_LEN => Out::TooLarge,
            TreeOp::Put { key, value } => Out::Value(put(m, key, value)),
            TreeOp::Read { lo, hi, mode } => match (mode % 6, tx) {
                (3, _) => pairs_of(m.iter().filter(|(k, _)| k.starts_with(lo))),
                (4, false) => pairs_of(m.range(..lo.clone()).next_back().into_iter()),
                (5, _) => Out::Value(m.get(lo).cloned()),
                _ => pairs_of(m.iter().filter(|(k, _)| *k >= lo && *k < hi)),
            },
            TreeOp::Batch(puts) if too_large(puts) => Out::TooLarge,
            TreeOp::Batch(puts) => {
                puts.iter().for_each(|(k, v)| _ = put(m, k, v));
                Out::Done
            }
            TreeOp::Clear { .. } => {
                m.clear();
                Out::Done
            }
            TreeOp::Pop { .. } | TreeOp::Cas { .. } | TreeOp::Update { .. } if tx => Out::Done, // not in the transaction API
            TreeOp::Pop { max } => Out::Pairs((if *max { m.pop_last() } else { m.pop_first() }).into_iter().collect()),
            // No such key is stored, so the closure makes one to insert, which is refused.
            TreeOp::Update { key, .. } if key.len() > MAX_KEY_LEN => Out::TooLarge,
            TreeOp::Update { key, fetch_new } => {
                let old = m.get(key).cloned();
                let new = updated(old.as_deref());
                put(m, key, &new);
                Out::Value(if *fetch_new { new } else { old })
            }
            // A key that cannot be stored is refused before the current value is compared.
            TreeOp::Cas { key, new: Some(_), .. } if key.len() > MAX_KEY_LEN => Out::TooLarge,
            TreeOp::Cas { key, old, new, .. } => match m.get(key) {
                cur if cur != old.as_ref() => Out::Value(cur.cloned()),
                _ => {
                    put(m, key, new);
                    Out::Done
                }
            },
        }
    }

    /// Runs the operation on tree `name` of `db`, as its own transaction(s).
    pub(crate) fn run(&self, db: &Db, name: &str) -> Result<Out> {
        let t = db.open_tree(name)?;
        match self {
            TreeOp::Put { key, value: Some(v) } => value_out(t.insert(key, v.clone())),
            TreeOp::Put { key, value: None } => value_out(t.remove(key)),
            TreeOp::Read { lo, hi, mode } => match mode % 6 {
                0 => pairs(t.range(lo.clone()..hi.clone())),
                1 => pairs(t.range(lo.clone()..hi.clone()).rev().collect::<Vec<_>>().into_iter().rev()),
                2 => {
                    // Both ends at once: front and back must meet without overlap.
                    let mut it = t.range(lo.clone()..hi.clone());
                    let (mut front, mut back) = (Vec::new(), Vec::new());
                    while let Some(r) = if front.len() == back.len() { it.next() } else { it.next_back() } {
                        let side = if front.len() == back.len() { &mut front } else { &mut back };
                        side.push(r?);
                    }
                    pairs(front.into_iter().chain(back.into_iter().rev()).map(Ok))
                }
                3 => pairs(t.scan_prefix(lo)),
                4 => pairs(t.get_lt(lo)?.into_iter().map(Ok)),
                _ => value_out(t.get(lo)),
            },
            TreeOp::Batch(puts) => out(t.apply_batch(batch_of(puts)).map(|()| Out::Done)),
            TreeOp::Clear { drop: false } => t.clear().map(|()| Out::Done),
            TreeOp::Clear { drop: true } => {
                db.drop_tree(name)?;
                db.open_tree(name).map(|_| Out::Done)
            }
            TreeOp::Pop { max } => pairs((if *max { t.pop_max()? } else { t.pop_min()? }).into_iter().map(Ok)),
            TreeOp::Cas { key, old, new, .. } => {
                out(t.compare_and_swap(key, old.as_deref(), new.clone()).map(|r| match r {
                    Ok(()) => Out::Done,
                    Err(e) => Out::Value(e.current.map(|v| v.to_vec())),
                }))
            }
            TreeOp::Update { key, fetch_new: true } => value_out(t.update_and_fetch(key, updated)),
            TreeOp::Update { key, fetch_new: false } => value_out(t.fetch_and_update(key, updated)),
        }
    }

    /// Runs the operation on tree `name` inside `tx`.
    pub(crate) fn run_in(&self, tx: &WriteTransaction, name: &str) -> Result<Out> {
        if let TreeOp::Clear { drop: true } = self {
            return tx.drop_tree(name).map(|_| Out::Done);
        }
        let t = tx.open_tree(name)?;
        let vec = |v: Vec<(IVec, IVec)>| Out::Pairs(v.into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect());
        match self {
            TreeOp::Put { key, value: Some(v) } => value_out(t.insert(key, v)),
            TreeOp::Put { key, value: None } => value_out(t.remove(key)),
            TreeOp::Read { lo, mode, .. } if mode % 6 == 3 => t.scan_prefix(lo).map(vec),
            TreeOp::Read { lo, mode, .. } if mode % 6 == 5 => value_out(t.get(lo)),
            TreeOp::Read { lo, hi, .. } => t.range(lo.clone()..hi.clone()).map(vec),
            TreeOp::Batch(puts) => out(t.apply_batch(&batch_of(puts)).map(|()| Out::Done)),
            TreeOp::Clear { .. } => t.clear().map(|()| Out::Done),
            TreeOp::Pop { .. } | TreeOp::Cas { .. } | TreeOp::Update { .. } => Ok(Out::Done),
        }
    }
}
