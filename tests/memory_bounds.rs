//! Memory bounded where sizes come from the file: this test binary installs a global allocator
//! that counts the bytes live and their peak.
//! - Compaction and a data-key rotation copy an overflow chain page by page (`overflow::copy`),
//!   so the peak while they run stays far below the value's size, which once was read whole
//!   into memory (up to `MAX_VALUE_LEN`).
//! - A free list that claims a run of hundreds of millions of pages (a sparse file: the length
//!   costs nothing on disk) opens in little memory: free space is kept as extents
//!   (`pager::free_set`), where it was kept one entry per page; and `Db::check` of it keeps
//!   page roles as runs.
//!
//! The tests take turns (`SERIAL`), so no other test allocates while one measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use std::path::Path;
use std::sync::Mutex;

use foldvault::format::commit::CommitRecord;
use foldvault::format::page::{PAGE_HEADER_SIZE, PAGE_REF_SIZE, PAYLOAD_SIZE, PageKind, PageRef, write_header};
use foldvault::{Config, CorruptReason, Credentials, KdfParams, PageRole};

#[path = "common/plain_forge.rs"]
mod plain_forge;
use plain_forge::{PAGE, identity, read_page, reseal_plain, write_page};

static SERIAL: Mutex<()> = Mutex::new(());

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Allocations made, ever.
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to `System` unchanged; the counters are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as given.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as given.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const BIG: usize = 24 << 20;

/// Runs `f` and returns the most memory that was live during it beyond what was live before.
fn peak_above_start(f: impl FnOnce()) -> usize {
    let start = LIVE.load(Ordering::Relaxed);
    PEAK.store(start, Ordering::Relaxed);
    f();
    PEAK.load(Ordering::Relaxed).saturating_sub(start)
}

/// A commit copies the names of the trees that changed, not of every tree: with 20,000 trees a
/// one-record insert copied (and freed) all 20,000 names and roots, twice (the transaction's
/// copy and the new snapshot's), so writes slowed with the number of trees.
#[test]
fn a_write_among_many_trees_copies_no_list_of_them_all() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let allocations_per_100_inserts = |trees: usize| {
        let db = Config::new().temporary(true).plaintext().use_env(false).flush_every_ms(None).open().unwrap();
        let tx = db.begin_write().unwrap();
        for i in 0..trees {
            tx.open_tree(format!("tree {i:05}")).unwrap();
        }
        tx.commit().unwrap();
        let t = db.open_tree("tree 00000").unwrap();
        t.insert("warm", "up").unwrap();
        let before = ALLOCS.load(Ordering::Relaxed);
        for i in 0..100 {
            t.insert(format!("k{i:03}"), "v").unwrap();
        }
        ALLOCS.load(Ordering::Relaxed) - before
    };
    let one = allocations_per_100_inserts(1);
    let many = allocations_per_100_inserts(20_000);
    assert!(many < 2 * one, "100 inserts made {many} allocations among 20,000 trees, {one} beside one tree");
}

#[test]
fn compaction_and_rotation_copy_a_large_value_a_page_at_a_time() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::new()
        .path(dir.path().join("db"))
        .passphrase("copy memory")
        .kdf(KdfParams::insecure_fast())
        .use_env(false)
        .flush_every_ms(None)
        .cache_capacity(1 << 20);
    let db = cfg.open().unwrap();
    let value = |b: u8| vec![b; BIG];
    // `first` below `second` in the file; removing it leaves free space that compaction moves
    // `second`'s chain down into.
    db.insert("first", value(1)).unwrap();
    db.insert("second", value(2)).unwrap();
    db.remove("first").unwrap();
    db.flush().unwrap();

    let compaction = peak_above_start(|| {
        let report = db.compact().unwrap();
        assert!(report.pages_moved > 0, "{report:?}");
    });
    let rotation = peak_above_start(|| {
        let creds = [Credentials::passphrase("copy memory")];
        db.rekey(&creds, &mut |_| {}).unwrap();
    });
    eprintln!("peak above start: compaction {compaction} bytes, rotation {rotation} bytes, value {BIG}");
    assert!(compaction < BIG / 4, "compaction's peak was {compaction} bytes above its start, value {BIG}");
    assert!(rotation < BIG / 4, "rotation's peak was {rotation} bytes above its start, value {BIG}");

    assert_eq!(db.get("second").unwrap().as_deref(), Some(&value(2)[..]));
    assert_eq!(db.get("first").unwrap(), None);
    drop(db);
    let db = cfg.open().unwrap();
    assert_eq!(db.get("second").unwrap().as_deref(), Some(&value(2)[..]));
    assert!(db.check().unwrap().is_ok());
}

/// Salvage copies a tree in batches bounded in bytes as well as in records: 40 values of 4 MiB
/// were held in one batch of up to a thousand records (160 MiB; 334 MB at peak, with the
/// batch's copy into the transaction), now in batches of up to 64 MiB (139 MB at peak).
#[test]
fn salvage_batches_large_values_by_their_bytes() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const VALUE: usize = 4 << 20;
    const VALUES: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let cfg = |name: &str| sparse_cfg(&dir.path().join(name)).cache_capacity(1 << 20);
    let db = cfg("src").open().unwrap();
    for i in 0..VALUES {
        db.insert(format!("v{i:02}"), vec![i as u8; VALUE]).unwrap();
    }
    db.flush().unwrap();
    drop(db);
    let peak = peak_above_start(|| {
        let report = foldvault::salvage(&cfg("src"), &cfg("dst")).unwrap();
        assert!(!report.lost_anything(), "{report:?}");
    });
    eprintln!("salvage of {VALUES} values of {VALUE} bytes: {peak} bytes at peak");
    assert!(peak < VALUES * VALUE, "salvage held {peak} bytes at peak");
    let copy = cfg("dst").open().unwrap();
    for i in [0, VALUES - 1] {
        assert_eq!(copy.get(format!("v{i:02}")).unwrap().unwrap().len(), VALUE);
    }
}

/// A run of 2^28 pages (1 TiB): far more than the tests can afford one entry per page for.
const RUN: u64 = 1 << 28;

/// Turns the plaintext database at `path` (one record, `k` = `v`) into a sparse file of `RUN`
/// more pages. With `free_run`, its newest commit's free list records them as one run of free
/// pages; without, nothing records them (leaked). Returns the free pages the list records.
fn make_sparse(path: &Path, cfg: &Config, free_run: bool) -> u64 {
    // The pages free in the file as made, and its free-list pages, which the new list replaces:
    // recorded free again, so that nothing is lost track of.
    let free_before: Vec<u64> = {
        let db = cfg.open().unwrap();
        db.insert("k", &b"v"[..]).unwrap();
        db.flush().unwrap();
        let roles = db.check().unwrap().roles;
        roles.pages(|r| matches!(r, PageRole::Free | PageRole::FreeList)).collect()
    };
    let (file_id, version) = identity(path);
    let records: Vec<(u64, Vec<u8>, CommitRecord)> = [2u64, 3]
        .into_iter()
        .filter_map(|slot| {
            let page = read_page(path, slot);
            CommitRecord::decode(&page[..PAYLOAD_SIZE], slot, version).ok().map(|r| (slot, page, r))
        })
        .collect();
    let old_count = records.iter().map(|(_, _, r)| r.page_count).max().unwrap();
    let seq = records.iter().map(|(_, _, r)| r.seq).max().unwrap();
    // A free-list page at the old end of the file recording those pages and (with `free_run`)
    // the run just above it (SPEC §7: next reference at 16, extents of 12 bytes from 48).
    let chain_page = old_count;
    let big = free_run.then_some((chain_page + 1, RUN as u32));
    let runs: Vec<(u64, u32)> = free_before.iter().map(|&p| (p, 1)).chain(big).collect();
    let mut list = read_page(path, 2);
    list[..PAYLOAD_SIZE].fill(0);
    write_header(&mut list[..PAYLOAD_SIZE], PageKind::FreeList, runs.len() as u16, seq);
    PageRef::NONE.encode(&mut list[PAGE_HEADER_SIZE..]);
    for (i, (start, len)) in runs.iter().enumerate() {
        let at = PAGE_HEADER_SIZE + PAGE_REF_SIZE + i * 12;
        list[at..at + 8].copy_from_slice(&start.to_le_bytes());
        list[at + 8..at + 12].copy_from_slice(&len.to_le_bytes());
    }
    let tag = reseal_plain(&mut list, chain_page, &file_id, version);
    write_page(path, chain_page, &list);
    for (slot, mut page, mut rec) in records {
        rec.freelist = PageRef { page: chain_page, tag, generation: seq };
        rec.page_count = chain_page + 1 + RUN;
        rec.free_delta = Default::default();
        rec.encode(&mut page[..PAYLOAD_SIZE]);
        reseal_plain(&mut page, slot, &file_id, version);
        write_page(path, slot, &page);
    }
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len((chain_page + 1 + RUN) * PAGE).unwrap();
    runs.iter().map(|(_, n)| u64::from(*n)).sum()
}

fn sparse_cfg(path: &Path) -> Config {
    Config::new().file(path).plaintext().use_env(false).flush_every_ms(None).write_ahead_log(false)
}

/// A plaintext file whose newest commit's free list records one run of 2^28 free pages (1 TiB,
/// sparse) opens, commits and compacts with a few MiB of heap; compaction gives the run back.
/// Kept one entry per page, the run cost some 6 GiB at open.
#[test]
fn a_free_list_claiming_a_terabyte_opens_in_little_memory() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse.fv");
    let cfg = sparse_cfg(&path);
    let free = make_sparse(&path, &cfg, true);
    let mut report = None;
    let peak = peak_above_start(|| {
        let db = cfg.open().unwrap();
        assert_eq!(db.metrics().free_pages, free);
        assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
        db.insert("k2", &b"w"[..]).unwrap();
        db.flush().unwrap();
        report = Some(db.compact().unwrap());
        assert_eq!(db.get("k2").unwrap().as_deref(), Some(&b"w"[..]));
    });
    eprintln!("peak above start with a run of {RUN} free pages: {peak} bytes; {report:?}");
    assert!(peak < 32 << 20, "opening, committing and compacting took {peak} bytes at peak");
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len < 1 << 20, "compaction gave the run back: the file is {len} bytes");
    let db = cfg.open().unwrap();
    assert!(db.check().unwrap().is_ok());
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
}

/// `Db::check` of such a file runs in little memory too: its page roles are runs, free space
/// is extents, and a leaked run of 2^28 pages is one problem. One role per page, as before,
/// would be 2^28 entries of 24 bytes, twice over (some 12 GiB; computed, not run).
#[test]
fn a_check_of_a_sparse_terabyte_runs_in_little_memory() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for free_run in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse.fv");
        let cfg = sparse_cfg(&path);
        let free = make_sparse(&path, &cfg, free_run);
        let db = cfg.open().unwrap();
        let mut report = None;
        let peak = peak_above_start(|| report = Some(db.check().unwrap()));
        let report = report.unwrap();
        eprintln!("check with a run of {RUN} pages (free: {free_run}): {peak} bytes at peak; {report:?}");
        assert!(peak < 32 << 20, "the check took {peak} bytes at peak");
        assert_eq!(report.roles.len(), report.page_count);
        assert_eq!(report.roles.count(|r| *r == PageRole::Free), free);
        assert!(report.roles.runs().count() < 100, "{:?}", report.roles);
        if free_run {
            assert!(report.is_ok(), "{:?}", report.problems);
        } else {
            let first = report.page_count - RUN;
            assert_eq!(report.roles.count(|r| *r == PageRole::Unaccounted), RUN);
            assert_eq!(report.roles.get(first + RUN / 2), Some(PageRole::Unaccounted));
            let leaks: Vec<_> = report.problems.iter().map(|p| (p.page, p.pages, p.reason)).collect();
            assert_eq!(leaks, vec![(first, RUN, CorruptReason::FreeList)]);
        }
    }
}
