//! Secret hygiene in memory (Linux): key pages are locked while a database is open; after the
//! database is dropped neither the passphrase nor any user plaintext is left in the process's
//! readable memory. The needles are kept XOR-masked so the test never holds them itself.
//! (The data key's own scan is a unit test in src/db/keys.rs: only the crate can see the key.)
#![cfg(target_os = "linux")]

#[path = "common/memscan.rs"]
mod memscan;

use std::sync::Arc;

use foldvault::storage::{MemoryStorage, Storage};
use foldvault::{Config, KdfParams, Passphrase};
use memscan::{MASK, count_in_memory, seen_in_memory, vm_lck_kib};
use zeroize::Zeroizing;

/// The tests read process-wide figures (VmLck, all memory): one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// While a database is open its key memory is locked (VmLck grows, the library counts locked
/// bytes and reports no failed lock), and once it is dropped no copy of the passphrase is left.
///
/// Where memory cannot be locked (an RLIMIT_MEMLOCK too small for a few pages, as in some
/// containers) the lock check fails, saying so, unless `FOLDVAULT_TEST_NO_MLOCK` is set (to
/// anything): then it only asks that the lock be seen (VmLck grew) or its failure reported
/// (`locking_failed`), as it did before. The wiping is checked either way.
#[test]
fn passphrase_is_locked_while_open_and_wiped_after_drop() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // A passphrase built from masked bytes at run time (never a literal in the binary).
    let masked: Vec<u8> = b"correct horse battery staple 9f3a7c".iter().map(|b| b ^ MASK).collect();
    let unmask = || -> Vec<u8> { masked.iter().map(|b| b ^ MASK).collect() };
    // The scan sees a copy planted on purpose (wiped when dropped), else its 0 below proves
    // nothing.
    let planted = Zeroizing::new(unmask());
    assert!(seen_in_memory(&masked), "the scan does not see a planted copy (test broken)");
    drop(planted);
    let before = vm_lck_kib();
    let s: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let db = Config::new()
        .storage(s)
        .passphrase(Passphrase::new(unmask()))
        .kdf(KdfParams::insecure_fast())
        .use_env(false)
        .open()
        .unwrap();
    db.insert("k", &b"v"[..]).unwrap();
    db.flush().unwrap();
    let during = vm_lck_kib();
    let failed = foldvault::crypto::locked::locking_failed();
    if std::env::var_os("FOLDVAULT_TEST_NO_MLOCK").is_some() {
        assert!(failed || during > before, "VmLck did not grow: {before} -> {during} kB");
    } else {
        let locked = foldvault::crypto::locked::locked_bytes();
        let limit = || {
            let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
            limits.lines().find(|l| l.starts_with("Max locked memory")).unwrap_or("").to_string()
        };
        assert!(
            !failed && locked > 0 && during > before,
            "key memory is not locked while the database is open: VmLck {before} -> {during} kB, {locked} bytes \
             locked, locking_failed() = {failed} ({}); set FOLDVAULT_TEST_NO_MLOCK=1 where memory cannot be locked",
            limit()
        );
    }
    drop(db);
    assert_eq!(count_in_memory(&masked), 0, "passphrase left in memory after drop");
}

/// With `zeroize_cache` on (the default), a workload of reads and writes leaves no copy of the
/// records' plaintext in memory once the database is dropped. (tests/plaintext_frees.rs
/// checks the same block by block, as each is freed.)
#[test]
fn no_record_plaintext_after_drop() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let masked: Vec<u8> = b"MARKER-5f0e-plaintext".iter().map(|b| b ^ MASK).collect();
    let record = |i: u32, len: usize| {
        let mut v = Zeroizing::new(Vec::with_capacity(len + masked.len()));
        v.extend(masked.iter().map(|b| b ^ MASK));
        v.extend_from_slice(&i.to_be_bytes());
        let n = len.max(v.len());
        v.resize(n, b'.');
        v
    };
    let s: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let db = Config::new()
        .storage(s)
        .passphrase("no record plaintext")
        .kdf(KdfParams::insecure_fast())
        .use_env(false)
        .zeroize_cache(true)
        .open()
        .unwrap();
    let t = db.open_tree("records").unwrap();
    for i in 0..500 {
        let (k, v) = (record(i, 0), record(i, if i % 40 == 0 { 6_000 } else { 120 }));
        t.insert(&k[..], &v[..]).unwrap();
    }
    db.flush().unwrap();
    for i in (0..500).step_by(3) {
        drop(t.get(&record(i, 0)[..]).unwrap());
    }
    for item in t.iter() {
        drop(item.unwrap());
    }
    for i in (0..500).step_by(2) {
        drop(t.remove(&record(i, 0)[..]).unwrap());
    }
    db.flush().unwrap();
    assert!(seen_in_memory(&masked), "the scan does not see the open cache (test broken)");
    drop(t);
    drop(db);
    assert_eq!(count_in_memory(&masked), 0, "record plaintext left in memory after drop");
}
