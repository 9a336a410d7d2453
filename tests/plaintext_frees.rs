//! Where plaintext goes when memory is freed: this test binary installs a global allocator that
//! looks into every block as it is freed. A block that still holds a marker written into keys
//! and values is a copy of user plaintext left in the heap for the next allocation to find. With
//! `Config::zeroize_cache(true)` (the default) a whole workload (inserts small and large,
//! reads, scans, batches, transactions, removals, flushes, a reopen) must free none.
//!
//! The test's own buffers are `Zeroizing`, so any block found is the engine's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use foldvault::storage::{MemoryStorage, Storage};
use foldvault::{Config, Credentials, KdfParams, Passphrase};
use zeroize::Zeroizing;

const MASK: u8 = 0x5C;
/// The marker, masked (never in the binary or in test memory in the clear except inside
/// `Zeroizing` buffers).
const MARKER_MASKED: [u8; 12] = [
    b'P' ^ MASK,
    b'L' ^ MASK,
    b'A' ^ MASK,
    b'I' ^ MASK,
    b'N' ^ MASK,
    b'-' ^ MASK,
    b'q' ^ MASK,
    b'7' ^ MASK,
    b'z' ^ MASK,
    b'W' ^ MASK,
    b'x' ^ MASK,
    b'!' ^ MASK,
];

struct Watching;

static ON: AtomicBool = AtomicBool::new(false);
/// Whether the 8-byte prefix form is looked for too (see `async_calls` for where it is not).
static PREFIX_FORM: AtomicBool = AtomicBool::new(true);
static FOUND: AtomicUsize = AtomicUsize::new(0);
static TRACES: Mutex<Vec<String>> = Mutex::new(Vec::new());

thread_local! {
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// The marker as it is written, or in the form a decoded node keeps its keys' prefixes in
/// (`Leaf`/`Branch::prefixes`): the first 8 bytes of each key as a native-endian `u64`, side by
/// side. Every key of the workload starts with the marker, so such a buffer holds that word at
/// least twice in a row. A single copy is not counted: a comparison computes the word and may
/// leave it on the stack, from where a value moved into the heap can carry it in its padding
/// (the stack is not controlled, SPEC §14); a debug build shows a handful of those.
fn holds_marker(block: &[u8]) -> bool {
    let plain: Vec<u8> = MARKER_MASKED.iter().map(|b| b ^ MASK).collect();
    let mut head = [0u8; 8];
    head.copy_from_slice(&plain[..8]);
    let word = u64::from_be_bytes(head).to_ne_bytes();
    let mut twice = [0u8; 16];
    twice[..8].copy_from_slice(&word);
    twice[8..].copy_from_slice(&word);
    let found = contains(block, &plain) || (PREFIX_FORM.load(Ordering::Relaxed) && contains(block, &twice));
    // This copy of the marker must not be what the next free finds.
    let mut plain = plain;
    plain.fill(0);
    std::hint::black_box(&mut plain);
    found
}

fn contains(block: &[u8], pattern: &[u8]) -> bool {
    block.len() >= pattern.len() && block.windows(pattern.len()).any(|w| w == pattern)
}

// SAFETY: forwards every call to `System`; the only addition reads the block being freed, which
// is valid for `layout.size()` bytes until `System.dealloc` returns.
unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ON.load(Ordering::Relaxed) && !INSIDE.with(|c| c.replace(true)) {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes (the caller's contract).
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            if holds_marker(block) {
                FOUND.fetch_add(1, Ordering::Relaxed);
                if std::env::var_os("FOLDVAULT_TRACE_FREES").is_some() {
                    let bt = std::backtrace::Backtrace::force_capture().to_string();
                    if let Ok(mut t) = TRACES.lock() {
                        t.push(bt);
                    }
                }
            }
            INSIDE.with(|c| c.set(false));
        }
        // SAFETY: the caller's contract for `dealloc` is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Watching = Watching;

fn marker() -> Zeroizing<Vec<u8>> {
    Zeroizing::new(MARKER_MASKED.iter().map(|b| b ^ MASK).collect())
}

fn record(i: usize, len: usize) -> (Zeroizing<Vec<u8>>, Zeroizing<Vec<u8>>) {
    let m = marker();
    let mut k = Zeroizing::new(Vec::with_capacity(m.len() + 8));
    k.extend_from_slice(&m);
    k.extend_from_slice(&(i as u64).to_be_bytes());
    let mut v = Zeroizing::new(Vec::with_capacity(len.max(m.len())));
    while v.len() + m.len() <= len.max(m.len()) {
        v.extend_from_slice(&m);
    }
    (k, v)
}

/// Fills 64 KiB of the stack below this frame with the marker, as a caller's records left
/// there would: a value the next call moves from its stack into the heap carries these bytes
/// wherever it has bytes it never wrote (an `Option`'s `None`, padding). The open that follows
/// decodes the file's header copies there (`FileHeader`'s empty key slots once were such bytes).
/// The stack is the test's own memory; only heap blocks are checked.
#[inline(never)]
fn paint_stack() {
    let m = marker();
    let mut area = [0u8; 64 * 1024];
    for (i, b) in area.iter_mut().enumerate() {
        *b = m[i % m.len()];
    }
    std::hint::black_box(&mut area);
}

/// The workload's database on `s`: encrypted, with a small cache (evictions wipe).
fn open_db(s: Arc<dyn Storage>) -> foldvault::Db {
    Config::new()
        .storage(s)
        .passphrase(Passphrase::new(b"plaintext-frees".to_vec()))
        .kdf(KdfParams::insecure_fast())
        .use_env(false)
        .cache_capacity(64 * 4096)
        .open()
        .unwrap()
}

fn workload(s: Arc<dyn Storage>) {
    let open = || open_db(s.clone());
    let db = open();
    let t = db.open_tree("t").unwrap();
    for i in 0..600 {
        let (k, v) = record(i, if i % 50 == 0 { 9_000 } else { 40 + i % 300 });
        t.insert(&k[..], &v[..]).unwrap();
    }
    // Values of exactly 40 bytes: the size of a catalog entry (a tree root), which the
    // backup verify's page reader once took user leaves of for catalog leaves, keeping their keys.
    let forty = db.open_tree("forty").unwrap();
    for i in 0..200 {
        let (k, v36) = record(i, 36);
        let mut v = Zeroizing::new([0u8; 40]);
        v[..36].copy_from_slice(&v36);
        forty.insert(&k[..], &v[..]).unwrap();
    }
    db.flush().unwrap();
    for i in (0..600).step_by(7) {
        let (k, _) = record(i, 0);
        drop(t.get(&k[..]).unwrap());
    }
    for item in t.iter().take(200) {
        drop(item.unwrap());
    }
    let mut b = foldvault::Batch::default();
    for i in 600..700 {
        let (k, v) = record(i, 100);
        b.insert(&k[..], &v[..]);
    }
    t.apply_batch(b).unwrap();
    {
        let tx = db.begin_write().unwrap();
        let tt = tx.open_tree("t").unwrap();
        for i in 700..800 {
            let (k, v) = record(i, 200);
            tt.insert(&k[..], &v[..]).unwrap();
        }
        let (lo, _) = record(720, 0);
        let (hi, _) = record(760, 0);
        drop(tt.range(&lo[..]..&hi[..]).unwrap());
        drop(tt.scan_prefix(&marker()[..]).unwrap());
        tx.commit().unwrap();
    }
    for i in (0..800).step_by(3) {
        let (k, _) = record(i, 0);
        drop(t.remove(&k[..]).unwrap());
    }
    {
        let (k, v) = record(5000, 64);
        let (_, v2) = record(5001, 80);
        t.compare_and_swap(&k[..], None::<&[u8]>, Some(&v[..])).unwrap().unwrap();
        t.compare_and_swap(&k[..], Some(&v[..]), Some(&v2[..])).unwrap().unwrap();
        drop(t.update_and_fetch(&k[..], |old| old.map(|o| o.to_vec())).unwrap());
        drop(t.fetch_and_update(&k[..], |_| None::<Vec<u8>>).unwrap());
    }
    {
        // sled-style closure transaction: swap two values.
        let (k1, _) = record(10, 0);
        let (k2, _) = record(11, 0);
        let r: foldvault::transaction::TransactionResult<()> = t.transaction(|tx| {
            let v1 = tx.remove(&k1[..])?.unwrap_or_default();
            let v2 = tx.remove(&k2[..])?.unwrap_or_default();
            tx.insert(&k1[..], v2)?;
            tx.insert(&k2[..], v1)?;
            drop(tx.get(&k1[..])?);
            Ok(())
        });
        r.unwrap();
    }
    let m = marker();
    for item in t.scan_prefix(&m[..]).rev().take(30) {
        drop(item.unwrap());
    }
    let (lo, _) = record(100, 0);
    let (hi, _) = record(400, 0);
    for item in t.range(&lo[..]..=&hi[..]).take(30) {
        drop(item.unwrap());
    }
    drop((t.first().unwrap(), t.last().unwrap(), t.get_gt(&lo[..]).unwrap(), t.get_lt(&hi[..]).unwrap()));
    drop((t.pop_min().unwrap(), t.pop_max().unwrap()));
    {
        let rt = db.begin_read().unwrap();
        let tt = rt.open_tree("t").unwrap();
        drop(tt.get(&lo[..]).unwrap());
    }
    {
        // Merges: the operator's result, and the old and merged values it is given.
        t.set_merge_operator(|_: &[u8], old: Option<&[u8]>, m: &[u8]| Some([old.unwrap_or_default(), m].concat()));
        let (k, v) = record(6000, 90);
        // Subscribers: the events of a merge, a batch, a transaction and a clear of a tree.
        let mut sub = t.watch_prefix(&marker()[..]);
        drop(t.merge(&k[..], &v[..]).unwrap());
        drop(t.merge(&k[..], &v[..]).unwrap());
        db.checksum().unwrap();
        let scratch = db.open_tree("watched").unwrap();
        let mut scratch_sub = scratch.watch_prefix("");
        let mut b = foldvault::Batch::default();
        for i in 6100..6110 {
            let (k, v) = record(i, 70);
            b.insert(&k[..], &v[..]);
        }
        scratch.apply_batch(b).unwrap();
        {
            let tx = db.begin_write().unwrap();
            let (k, v) = record(6200, 50);
            tx.open_tree("watched").unwrap().insert(&k[..], &v[..]).unwrap();
            tx.commit().unwrap();
        }
        scratch.clear().unwrap();
        while let Ok(e) = sub.next_timeout(std::time::Duration::ZERO) {
            drop(e);
        }
        while let Ok(e) = scratch_sub.next_timeout(std::time::Duration::ZERO) {
            drop(e);
        }
    }
    {
        // A transaction's insert of a value the caller owns (as the command line's `put`).
        let (k, v) = record(6001, 120);
        let tx = db.begin_write().unwrap();
        tx.open_tree("t").unwrap().insert(&k[..], &v[..]).unwrap();
        tx.commit().unwrap();
    }
    db.flush().unwrap();
    drop(t);
    drop(db);
    paint_stack();
    let db = open();
    let t = db.open_tree("t").unwrap();
    for item in t.iter() {
        drop(item.unwrap());
    }
    assert!(db.check().unwrap().is_ok());
    let mut backup = Vec::new();
    db.backup_to(&mut backup, &mut |_| {}).unwrap();
    drop(t);
    drop(db);
    let creds = || Credentials::passphrase(Passphrase::new(b"plaintext-frees".to_vec()));
    foldvault::backup::verify(&backup[..], Some(&creds()), &mut |_| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("restored.foldvault");
    foldvault::backup::restore(&backup[..], &dst, &creds(), Default::default()).unwrap();
    // Salvage reads every record of the source and writes it in batches.
    let salvaged = MemoryStorage::new();
    let cfg = |st: Arc<dyn Storage>| {
        Config::new()
            .storage(st)
            .passphrase(Passphrase::new(b"plaintext-frees".to_vec()))
            .kdf(KdfParams::insecure_fast())
            .use_env(false)
    };
    let report = foldvault::salvage(&cfg(s.clone()), &cfg(Arc::new(salvaged))).unwrap();
    assert!(!report.lost_anything());
    // Last: what it leaves on the heap is not checked for the prefix form afterwards either.
    #[cfg(feature = "tokio")]
    async_calls(&open());
}

/// The async API copies keys to move them to the blocking pool; those copies are wiped too.
///
/// Checked for the whole marker only, and run last: a future moved into a tokio task's heap
/// cell carries the uninitialised bytes of its stack slot, where a key comparison may have
/// left the 8-byte prefix it computed (the stack is not controlled, SPEC §14), and blocks
/// reused later can still hold them. That was so before leaf and branch buffers kept prefixes
/// (the same two blocks show at the commit before them).
#[cfg(feature = "tokio")]
fn async_calls(db: &foldvault::Db) {
    PREFIX_FORM.store(false, Ordering::SeqCst);
    async_calls_inner(db);
}

#[cfg(feature = "tokio")]
fn async_calls_inner(db: &foldvault::Db) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let adb = foldvault::AsyncDb::new(db.clone());
    rt.block_on(async {
        let t = adb.open_tree("t").await.unwrap();
        let (k, v) = record(9000, 300);
        drop(t.insert(&k[..], &v[..]).await.unwrap());
        drop(t.get(&k[..]).await.unwrap());
        assert!(t.contains_key(&k[..]).await.unwrap());
        drop(t.scan_prefix(&marker()[..]).await.unwrap());
        let (lo, _) = record(100, 0);
        drop(t.range(&lo[..]..).await.unwrap());
        drop(t.remove(&k[..]).await.unwrap());
    });
}

/// Reads that fail part way, at a page of an overflow value that does not open, wipe the
/// records they had copied: a range in a write transaction (the keys after the failing entry
/// were freed unwiped) and `pop_min` (its key). Each page of the tree is damaged in turn.
fn damaged_reads() {
    let m = MemoryStorage::new();
    let open = open_db;
    {
        let db = open(Arc::new(m.clone()));
        let t = db.open_tree("damaged").unwrap();
        for i in 0..3 {
            let (k, v) = record(7000 + i, if i == 0 { 10_000 } else { 40 });
            t.insert(&k[..], &v[..]).unwrap();
        }
        db.flush().unwrap();
    }
    let image = m.snapshot();
    let pages: Vec<u64> = {
        let db = open(Arc::new(MemoryStorage::from_bytes(image.clone())));
        db.check().unwrap().roles.pages(|r| *r == foldvault::PageRole::Tree("damaged".into())).collect()
    };
    assert!(pages.len() >= 3, "a leaf and an overflow chain: {pages:?}");
    let (mut failed, mut lost) = (0, 0);
    for p in pages {
        let db = open(Arc::new(MemoryStorage::from_bytes(img_again(&image, p))));
        {
            let tx = db.begin_write().unwrap();
            failed += usize::from(tx.open_tree("damaged").unwrap().range::<&[u8], _>(..).is_err());
        }
        failed += usize::from(db.open_tree("damaged").unwrap().pop_min().is_err());
        drop(db);
        // Salvage of the damaged image: its report names lost ranges by their keys.
        let dir = tempfile::tempdir().unwrap();
        let cfg = |c: Config| {
            c.passphrase(Passphrase::new(b"plaintext-frees".to_vec())).kdf(KdfParams::insecure_fast()).use_env(false)
        };
        let src = cfg(Config::new().storage(Arc::new(MemoryStorage::from_bytes(img_again(&image, p)))));
        let report = foldvault::salvage(&src, &cfg(Config::new().file(dir.path().join("copy")))).unwrap();
        lost += report.lost.len();
    }
    assert!(failed >= 2, "the damage failed {failed} reads");
    assert!(lost >= 2, "salvage lost {lost} ranges");
}

/// `image` with page `p` damaged as `damaged_reads` damages it.
fn img_again(image: &[u8], p: u64) -> Vec<u8> {
    let mut img = image.to_vec();
    img[p as usize * 4096 + 100] ^= 1;
    img
}

/// The last two clones of an `IVec` dropped at once on two threads (a subscriber's event and
/// the committer's copy, say): the bytes are wiped all the same. Each clone's drop wiped only
/// when it saw no other clone, and two dropped together each saw the other (secrets audit).
/// The two threads meet by spinning, so that their drops overlap as often as they can. (The
/// clone is handed over in a `Mutex` slot, not a channel: a channel's state is a padded
/// struct moved into the heap from this painted stack, and carries the marker in its padding.)
fn last_clones_dropped_together() {
    const ROUNDS: usize = 100_000;
    let slot: Arc<Mutex<Option<foldvault::IVec>>> = Arc::new(Mutex::new(None));
    let (ready, taken) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let other = {
        let (slot, ready, taken) = (slot.clone(), ready.clone(), taken.clone());
        std::thread::spawn(move || {
            for round in 1..=ROUNDS {
                while ready.load(Ordering::SeqCst) != round {
                    std::hint::spin_loop();
                }
                let clone = slot.lock().unwrap().take();
                taken.store(round, Ordering::SeqCst);
                drop(clone);
            }
        })
    };
    let (k, _) = record(0, 0);
    for round in 1..=ROUNDS {
        let bytes = foldvault::IVec::from(&k[..]);
        *slot.lock().unwrap() = Some(bytes.clone());
        ready.store(round, Ordering::SeqCst);
        while taken.load(Ordering::SeqCst) != round {
            std::hint::spin_loop();
        }
        drop(bytes);
    }
    other.join().unwrap();
}

#[test]
fn no_block_is_freed_holding_plaintext() {
    let s: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    ON.store(true, Ordering::SeqCst);
    // The detector sees an unwiped copy (else the test proves nothing).
    let mut copy = Vec::with_capacity(64);
    copy.extend_from_slice(&marker());
    drop(std::hint::black_box(copy));
    assert_eq!(FOUND.swap(0, Ordering::SeqCst), 1, "the detector missed a freed copy (test broken)");
    workload(s);
    damaged_reads();
    last_clones_dropped_together();
    ON.store(false, Ordering::SeqCst);
    let found = FOUND.load(Ordering::SeqCst);
    if let Ok(t) = TRACES.lock() {
        // Group the traces by their first frames in foldvault's own code.
        let mut sites: std::collections::BTreeMap<String, usize> = Default::default();
        for bt in t.iter() {
            let frames: Vec<&str> = bt
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("at ./src") || l.contains("foldvault::"))
                .take(6)
                .collect();
            *sites.entry(frames.join("\n  ")).or_default() += 1;
        }
        for (site, n) in &sites {
            eprintln!("--- {n} block(s) freed holding plaintext at:\n  {site}");
        }
    }
    assert_eq!(
        found, 0,
        "{found} heap blocks were freed still holding plaintext (FOLDVAULT_TRACE_FREES=1 shows where)"
    );
}
