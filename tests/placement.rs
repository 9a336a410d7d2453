//! Where a durable commit's pages land (SPEC.md §7.2, `pager/alloc.rs`): the pages every
//! commit rewrites (the tree's root, the catalog's root, the free list's front) go into the
//! top-page zone, in the half that belongs to the slot its record goes to, so that the sync
//! ending a small commit sees few separate runs of pages. A storage wrapper records the pages
//! written between syncs.

use std::sync::{Arc, Mutex};

use foldvault::storage::{MemoryStorage, Storage};
use foldvault::{Config, Durability, KdfParams};

const PAGE: u64 = 4096;

/// Memory storage that records the page of every write since the last sync.
struct Recording {
    inner: MemoryStorage,
    since_sync: Mutex<Vec<u64>>,
    commits: Mutex<Vec<Vec<u64>>>,
}

impl Storage for Recording {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        self.since_sync.lock().map_err(|_| std::io::Error::other("poisoned"))?.push(offset / PAGE);
        self.inner.write_at(offset, buf)
    }
    fn sync(&self) -> std::io::Result<()> {
        let pages = std::mem::take(&mut *self.since_sync.lock().map_err(|_| std::io::Error::other("poisoned"))?);
        self.commits.lock().map_err(|_| std::io::Error::other("poisoned"))?.push(pages);
        self.inner.sync()
    }
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
}

/// The runs of contiguous pages in `pages`.
fn runs(pages: &[u64]) -> Vec<(u64, u64)> {
    let mut sorted = pages.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for p in sorted {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == p => *end = p,
            _ => out.push((p, p)),
        }
    }
    out
}

#[test]
fn small_durable_commits_write_their_top_pages_as_one_run_beside_the_record() {
    let storage = Arc::new(Recording {
        inner: MemoryStorage::new(),
        since_sync: Mutex::new(Vec::new()),
        commits: Mutex::new(Vec::new()),
    });
    let db = Config::new()
        .storage(storage.clone())
        .use_env(false)
        .passphrase("placement")
        .kdf(KdfParams::insecure_fast())
        .open()
        .expect("create");
    // Three levels: 20,000 records of 16-byte keys and 100-byte values.
    {
        let tx = db.begin_write().expect("begin");
        let t = tx.open_tree("t").expect("tree");
        for i in 0u64..20_000 {
            let k = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes();
            t.insert([k, k].concat(), vec![7u8; 100]).expect("insert");
        }
        drop(t);
        tx.commit().expect("commit");
    }
    db.flush().expect("flush");
    storage.commits.lock().expect("lock").clear();
    for i in 0u64..40 {
        let tx = db.begin_write().expect("begin");
        let t = tx.open_tree("t").expect("tree");
        let k = (i ^ 0x5555).wrapping_mul(0xD6E8_FEB8_6659_FD93).to_be_bytes();
        t.insert([k, k].concat(), vec![9u8; 100]).expect("insert");
        drop(t);
        tx.set_durability(Durability::Immediate);
        tx.commit().expect("commit");
    }
    let commits = std::mem::take(&mut *storage.commits.lock().expect("lock"));
    assert_eq!(commits.len(), 40, "one sync per durable commit");
    let (mut with_b, mut with_a) = (0, 0);
    for (i, pages) in commits.iter().enumerate() {
        // Leaf, branch, root, catalog, free list and record: six pages (more after a split).
        assert!(pages.len() >= 6, "commit {i}: {pages:?}");
        let top: Vec<u64> = pages.iter().copied().filter(|p| (4..20).contains(p)).collect();
        assert!(top.len() >= 3, "commit {i}: root, catalog and free list are not in the zone: {pages:?}");
        if pages.contains(&3) {
            with_b += 1;
            // Record B (page 3), then root, catalog and free list at 4..: one run.
            assert!(top.iter().all(|p| *p < 12), "commit {i}: {pages:?}");
            assert_eq!(runs(&[&top[..], &[3]].concat()).len(), 1, "commit {i}: not one run with record B: {pages:?}");
        } else {
            with_a += 1;
            assert!(pages.contains(&2), "commit {i}: no record written: {pages:?}");
            // Record A (page 2) and its top pages as one run in the second half (12..20).
            assert!(top.iter().all(|p| *p >= 12), "commit {i}: {pages:?}");
            assert_eq!(runs(&top).len(), 1, "commit {i}: the top pages are not one run: {pages:?}");
        }
        // Each page outside the zone may be a run of its own; nothing else may.
        let others = pages.iter().filter(|p| **p >= 20).count();
        assert!(runs(pages).len() <= others + 2, "commit {i}: {:?}", runs(pages));
    }
    assert_eq!((with_a, with_b), (20, 20), "records alternate between the slots");
    // Everything is still there.
    let t = db.open_tree("t").expect("tree");
    assert_eq!(t.len(), 20_040);
    drop(t);
    drop(db);
}
