//! Target `corrupt_file`: valid database files, damaged by the input, then opened, scanned,
//! checked (and optionally salvaged and written to).
//!
//! Two files are built at first use (`OnceLock`) by the same operations each time: one
//! encrypted, one plaintext, each with four trees and the default tree, inline and overflow
//! values, three durable commits after creation (so both commit slots hold records), and a
//! non-empty free list. Their bytes differ from process to process (random file ids, keys and
//! nonces); their page layout and plaintext do not, so an input means the same everywhere.
//!
//! Input: `flags u8` (bit 0 plaintext file, bit 1 write after the scan, bit 2 salvage, bit 3
//! scan backwards), then up to `MAX_MUTATIONS` mutations: bit flip, byte writes, page copy,
//! page swap, truncation, appended bytes, zeroed range, an old version of a page put back, a
//! page of the other file, and *edit*: bytes written into a page, then in a header page the
//! checksum recomputed (any attacker can), and in the plaintext file the page re-sealed and
//! every reference to it updated up to the commit record (possible without a key in plaintext
//! mode, SPEC.md §12), so forged structures reach every decoder.
//!
//! Checked: no panic, no hang, errors are typed (never `ReportableBug`, nor a raw I/O error
//! from an in-memory file); records come out in strictly ascending key order; and unless the
//! plaintext file was edited, every record returned was written by the builder, and every
//! tree scanned to the end equals that tree in one durable state of the builder (rollback to
//! an older durable state is possible by putting back old pages, SPEC.md §11).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, OnceLock};

use super::{Input, Map, filler, plain_reseal, replace_all};
use crate::crypto::seal::PageBuf;
use crate::format::header::{CHECKSUM_OFFSET, CHECKSUM_SIZE, FILE_ID_OFFSET, FileHeader};
use crate::format::page::{PAGE_REF_TAG_OFFSET, PAYLOAD_SIZE, TAG_OFFSET, TAG_SIZE};
use crate::format::{PAGE_SIZE, get_array};
use crate::storage::MemoryStorage;
use crate::{Config, Db, Error, KdfParams};

const MAX_MUTATIONS: usize = 24;
/// Pages that may be appended beyond the built file.
const MAX_EXTRA_PAGES: usize = 16;
/// Records read per tree of a forged file before the scan stops.
const MAX_FORGED_RECORDS: usize = 100_000;
/// Tree name → contents, for every tree in the catalog.
type State = BTreeMap<Vec<u8>, Map>;

struct Built {
    image: Vec<u8>,
    /// The same file after its first durable commit (old versions of pages).
    old: Vec<u8>,
    file_id: [u8; 16],
    plaintext: bool,
    /// Every durable state the file went through, creation included.
    states: Vec<State>,
    /// Every (tree, key, value) ever inserted.
    written: HashSet<(Vec<u8>, Vec<u8>, Vec<u8>)>,
}

fn config(storage: MemoryStorage) -> Config {
    Config::new()
        .storage(Arc::new(storage))
        .passphrase("fuzz")
        .kdf(KdfParams::insecure_fast())
        .use_env(false)
        .flush_every_ms(None)
        .cache_capacity(256 << 10)
}

fn snapshot(db: &Db) -> State {
    let mut s = State::new();
    for name in db.tree_names() {
        let t = db.open_tree(&name).expect("open tree");
        let m: Map = t.iter().map(|r| r.expect("scan")).map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        s.insert(name.to_vec(), m);
    }
    s
}

fn build(plaintext: bool) -> Built {
    let mem = MemoryStorage::new();
    let db =
        if plaintext { config(mem.clone()).plaintext() } else { config(mem.clone()) }.open().expect("build: create");
    let mut written = HashSet::new();
    let mut states = vec![snapshot(&db)];
    let mut put = |tree: &str, key: &[u8], value: Vec<u8>| {
        let t = if tree.is_empty() { (*db).clone() } else { db.open_tree(tree).expect("build: open tree") };
        t.insert(key, value.clone()).expect("build: insert");
        let name = if tree.is_empty() { crate::DEFAULT_TREE.to_vec() } else { tree.as_bytes().to_vec() };
        written.insert((name, key.to_vec(), value));
    };
    for i in 0..70u64 {
        put("alpha", format!("alpha{i:03}").as_bytes(), filler(i, 40 + (i as usize * 7) % 90));
    }
    put("beta", b"big1", filler(1001, 5000));
    put("beta", b"big2", filler(1002, 9000));
    put("beta", b"small", b"x".to_vec());
    for i in 0..10u64 {
        put("gamma", &[b'g', i as u8], filler(2000 + i, 10));
    }
    put("", b"hello", b"world".to_vec());
    db.flush().expect("build: flush");
    states.push(snapshot(&db));
    let old = mem.snapshot();
    for i in 40..50u64 {
        put("alpha", format!("alpha{i:03}").as_bytes(), filler(100 + i, 60));
    }
    put("beta", b"big1", filler(1003, 6000));
    for i in 0..5u64 {
        put("delta", &[b'd', i as u8], filler(3000 + i, if i == 2 { 4500 } else { 30 }));
    }
    let alpha = db.open_tree("alpha").expect("build: open tree");
    for i in (0..30).step_by(3) {
        alpha.remove(format!("alpha{i:03}")).expect("build: remove");
    }
    db.open_tree("beta").expect("build: open tree").remove("small").expect("build: remove");
    db.flush().expect("build: flush");
    states.push(snapshot(&db));
    let gamma = db.open_tree("gamma").expect("build: open tree");
    for i in 2..10u8 {
        gamma.remove([b'g', i]).expect("build: remove");
    }
    db.open_tree("beta").expect("build: open tree").remove("big2").expect("build: remove");
    db.flush().expect("build: flush");
    states.push(snapshot(&db));
    let report = db.check().expect("build: check");
    assert!(report.is_ok() && report.free_pages > 0, "build: {report:?}");
    let image = mem.snapshot();
    let file_id = get_array(&image, FILE_ID_OFFSET).expect("build: file id");
    Built { image, old, file_id, plaintext, states, written }
}

fn built() -> &'static [Built; 2] {
    static BUILT: OnceLock<[Built; 2]> = OnceLock::new();
    BUILT.get_or_init(|| [build(false), build(true)])
}

fn page_range(img: &[u8], page: usize) -> std::ops::Range<usize> {
    let start = (page * PAGE_SIZE).min(img.len());
    start..((page + 1) * PAGE_SIZE).min(img.len())
}

/// Copies page `src` of `from` over page `dst` of `img` (as much of both as exists).
fn copy_page(img: &mut [u8], dst: usize, from: &[u8], src: usize) {
    let (d, s) = (page_range(img, dst), page_range(from, src));
    let n = d.len().min(s.len());
    img[d.start..d.start + n].copy_from_slice(&from[s.start..s.start + n]);
}

// A `PageRef` starts `page u64 ‖ tag`: `reseal_upwards` finds references by those 24 bytes.
const _: () = assert!(PAGE_REF_TAG_OFFSET == 8 && TAG_SIZE == 16);

/// After an edit of plaintext page `page`: re-seal it, then every page holding a reference to
/// its old tag, and so on up to the commit record (bounded).
fn reseal_upwards(img: &mut [u8], file_id: &[u8; 16], page: usize) {
    let pages = img.len() / PAGE_SIZE;
    let mut work = vec![page];
    let mut budget = 64;
    while let Some(p) = work.pop() {
        if p < 2 || p >= pages || budget == 0 {
            continue;
        }
        budget -= 1;
        let buf: &mut PageBuf = (&mut img[p * PAGE_SIZE..(p + 1) * PAGE_SIZE]).try_into().expect("one page");
        let mut from = [0u8; 24];
        from[..8].copy_from_slice(&(p as u64).to_le_bytes());
        from[8..].copy_from_slice(&buf[TAG_OFFSET..TAG_OFFSET + TAG_SIZE]);
        let mut to = from;
        to[8..].copy_from_slice(&plain_reseal(file_id, p as u64, buf).0);
        if from == to {
            continue;
        }
        for q in 2..pages {
            if replace_all(&mut img[q * PAGE_SIZE..q * PAGE_SIZE + PAYLOAD_SIZE], &from, &to) {
                work.push(q);
            }
        }
    }
}

/// Applies one mutation; returns true if it forged plaintext structure (an edit).
fn mutate(img: &mut Vec<u8>, b: &Built, other: &Built, inp: &mut Input) -> bool {
    let pages = img.len().div_ceil(PAGE_SIZE).max(1);
    let max_len = b.image.len() + MAX_EXTRA_PAGES * PAGE_SIZE;
    let page = inp.below(pages);
    let at = (page * PAGE_SIZE + usize::from(inp.u16()) % PAGE_SIZE).min(img.len());
    match inp.u8() % 10 {
        0 => {
            let bit = inp.u8() % 8;
            if let Some(x) = img.get_mut(at) {
                *x ^= 1 << bit;
            }
        }
        1 => {
            for (i, &v) in inp.short_bytes(8).iter().enumerate() {
                if let Some(x) = img.get_mut(at + i) {
                    *x = v;
                }
            }
        }
        2 => {
            let src = inp.below(pages);
            let copy = img.clone();
            copy_page(img, page, &copy, src);
        }
        3 => {
            let other_page = inp.below(pages);
            let copy = img.clone();
            copy_page(img, page, &copy, other_page);
            copy_page(img, other_page, &copy, page);
        }
        4 => img.truncate(if inp.bool() { page * PAGE_SIZE } else { at }),
        5 => {
            let n = match inp.u8() % 3 {
                0 => PAGE_SIZE * (1 + inp.below(2)),
                1 => inp.below(PAGE_SIZE),
                _ => 0,
            };
            let junk = inp.short_bytes(64);
            let mut tail: Vec<u8> = (0..n).map(|i| junk.get(i % junk.len().max(1)).copied().unwrap_or(0)).collect();
            if n == 0 {
                tail = img[page_range(img, page)].to_vec();
            }
            tail.truncate(max_len.saturating_sub(img.len()));
            img.extend(tail);
        }
        6 => {
            let end = at.saturating_add(usize::from(inp.u16()) % (2 * PAGE_SIZE)).min(img.len());
            img[at..end].fill(0);
        }
        7 => copy_page(img, page, &b.old, page),
        8 => copy_page(img, page, &other.image, inp.below(other.image.len() / PAGE_SIZE)),
        _ => {
            let off =
                if page < 2 { usize::from(inp.u16()) % CHECKSUM_OFFSET } else { usize::from(inp.u16()) % PAYLOAD_SIZE };
            let bytes = inp.short_bytes(16);
            let r = page_range(img, page);
            if r.len() < PAGE_SIZE {
                return false;
            }
            let n = bytes.len().min(r.len() - off);
            img[r.start + off..r.start + off + n].copy_from_slice(&bytes[..n]);
            if page < 2 {
                let sum = blake3::hash(&img[r.start..r.start + CHECKSUM_OFFSET]);
                img[r.start + CHECKSUM_OFFSET..r.start + CHECKSUM_OFFSET + CHECKSUM_SIZE]
                    .copy_from_slice(sum.as_bytes());
            } else if b.plaintext {
                reseal_upwards(img, &b.file_id, page);
            }
            return b.plaintext;
        }
    }
    false
}

/// An error a damaged file may give. A raw I/O error cannot come from an in-memory file, and
/// `ReportableBug` is an internal invariant failing.
fn assert_typed(e: &Error, what: &str) {
    assert!(!matches!(e, Error::ReportableBug(_) | Error::Io(_) | Error::Poisoned), "{what}: untyped error {e:?}");
}

/// Headers whose key slots ask Argon2id for more than a little work: a documented denial of
/// service (SPEC.md §11: hostile KDF parameters up to the accepted bounds), so not opened.
fn hostile_kdf(img: &[u8]) -> bool {
    (0..2).any(|p| match img.get(p * PAGE_SIZE..(p + 1) * PAGE_SIZE).map(|b| FileHeader::decode(b, p as u64)) {
        Some(Ok(h)) => h.slots.iter().flatten().any(|s| {
            s.kind.uses_passphrase() && (s.kdf.memory_kib > 1024 || s.kdf.iterations > 4 || s.kdf.parallelism > 4)
        }),
        _ => false,
    })
}

pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let [enc, plain] = built();
    let (b, other) = if flags & 1 != 0 { (plain, enc) } else { (enc, plain) };
    let mut img = b.image.clone();
    let mut forged = false;
    for _ in 0..MAX_MUTATIONS {
        if inp.is_empty() {
            break;
        }
        forged |= mutate(&mut img, b, other, &mut inp);
    }
    if hostile_kdf(&img) {
        return;
    }
    // An empty custom storage is initialised as a new database (only an existing empty *file*
    // at a path is refused), so truncation to nothing may open as an empty database.
    let strict = !forged && !img.is_empty();
    // The builder's file as it made it: everything is required of it (it opened at its newest
    // commit, checks clean, takes a write), not only what a damaged file owes (test review: an
    // open that picked the older record passed on an untouched file).
    let untouched = img == b.image;
    let storage = MemoryStorage::from_bytes(img);
    let db = match config(storage.clone()).open() {
        Ok(db) => db,
        Err(e) => {
            assert!(!untouched, "the untouched file does not open: {e:?}");
            return assert_typed(&e, "open");
        }
    };
    let mut complete = State::new();
    let names: Vec<Vec<u8>> = db.tree_names().iter().map(|n| n.to_vec()).collect();
    for name in &names {
        // A forged plaintext catalog may list a name longer than a key: the file opens (the
        // integrity check calls the name damage, tests/forged_plaintext.rs), and `open_tree`
        // refuses that one name. Any other refusal of a listed tree is still a failure.
        let t = match db.open_tree(name) {
            Ok(t) => t,
            Err(Error::KeyTooLarge { .. }) if forged && name.len() > crate::MAX_KEY_LEN => continue,
            Err(e) => panic!("open_tree of a listed tree: {e:?}"),
        };
        let mut records: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let (mut ok, mut forged_records) = (true, 0);
        let mut it = t.iter();
        let backwards = flags & 8 != 0;
        while let Some(r) = if backwards { it.next_back() } else { it.next() } {
            let (k, v) = match r {
                Ok(kv) => kv,
                Err(e) => {
                    assert_typed(&e, "scan");
                    ok = false;
                    break;
                }
            };
            // A forged plaintext file can hold any structure the writer would never make
            // (unsorted keys, shared subtrees): there the scan only has to end without a panic.
            if !strict {
                forged_records += 1;
                if forged_records >= MAX_FORGED_RECORDS {
                    break;
                }
                continue;
            }
            if let Some((last, _)) = records.last() {
                let ordered = if backwards { k.as_ref() < last.as_slice() } else { k.as_ref() > last.as_slice() };
                assert!(ordered, "keys out of order in a scan");
            }
            let rec = (name.clone(), k.to_vec(), v.to_vec());
            assert!(b.written.contains(&rec), "a record that was never written: {:?}", &rec.1);
            records.push((rec.1, rec.2));
        }
        if ok {
            complete.insert(name.clone(), records.into_iter().collect());
        }
    }
    if strict {
        let names: HashSet<&Vec<u8>> = names.iter().collect();
        let matches = |s: &State| {
            let listed: HashSet<&Vec<u8>> = s.keys().collect();
            listed == names && complete.iter().all(|(n, m)| s.get(n) == Some(m))
        };
        assert!(b.states.iter().any(matches), "scanned trees match no durable state of the builder");
        assert!(!untouched || b.states.last().is_some_and(matches), "the untouched file reads as an older state");
    }
    let clean = match db.check() {
        Ok(report) => report.is_ok(),
        Err(e) => {
            assert_typed(&e, "check");
            false
        }
    };
    assert!(clean || !untouched, "the untouched file does not check clean");
    if flags & 4 != 0 {
        let dst = MemoryStorage::new();
        let src = MemoryStorage::from_bytes(storage.snapshot()); // salvage may repair its source
        match crate::salvage(&config(src), &config(dst.clone()).plaintext()) {
            Ok(_) if strict => {
                let out = config(dst).open().expect("open the salvaged copy");
                for (name, m) in snapshot(&out) {
                    for (k, v) in m {
                        assert!(b.written.contains(&(name.clone(), k, v)), "salvage produced a record never written");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => assert_typed(&e, "salvage"),
        }
    }
    if flags & 2 != 0 {
        let t = db.open_tree("written-after");
        let r = t.and_then(|t| t.insert(b"k", vec![7u8; 3000]).and_then(|_| t.flush()));
        if let Err(e) = &r {
            assert!(!untouched, "a write on the untouched file failed: {e:?}");
            assert_typed(e, "write after open");
        }
        drop(db);
        // A write on a file that read whole and checked clean leaves it so, its records as
        // they were and the new one beside them (test review: the outcome was ignored).
        let sound = strict && clean && r.is_ok();
        match config(storage).open().and_then(|db| db.check().map(|report| (report.is_ok(), db))) {
            Ok((checks, db)) if sound => {
                assert!(checks, "a write on a clean file left damage the check finds");
                let mut want = complete;
                want.insert(b"written-after".to_vec(), [(b"k".to_vec(), vec![7u8; 3000])].into());
                assert!(snapshot(&db) == want, "a write on a clean file changed other records");
            }
            Ok(_) => {}
            Err(e) if sound => panic!("a write on a clean file left it unable to open and check: {e:?}"),
            Err(e) => assert_typed(&e, "reopen after write"),
        }
    }
}
