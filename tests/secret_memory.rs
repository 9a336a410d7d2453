//! Secret hygiene in memory (Linux): key pages are locked while a database is open, and after
//! the database is dropped neither the data key nor the passphrase is left in the process's
//! readable memory. The needles are kept XOR-masked so the test never holds them itself.
#![cfg(target_os = "linux")]

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use foldvault::storage::{MemoryStorage, Storage};
use foldvault::{Config, KdfParams, Passphrase};

const MASK: u8 = 0xA5;

fn vm_lck_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmLck:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Counts occurrences of the unmasked needle in every readable private mapping.
fn count_in_memory(masked: &[u8]) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mut mem = std::fs::File::open("/proc/self/mem").unwrap();
    let mut found = 0;
    let mut buf = Vec::new();
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else { continue };
        let path = parts.nth(3).unwrap_or("");
        if !perms.starts_with('r') || path.starts_with("[v") || (path.starts_with('/') && !perms.contains('w')) {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else { continue };
        let (a, b) = (u64::from_str_radix(a, 16).unwrap(), u64::from_str_radix(b, 16).unwrap());
        if b - a > (1 << 30) {
            continue;
        }
        buf.resize((b - a) as usize, 0);
        if mem.seek(SeekFrom::Start(a)).is_err() || mem.read_exact(&mut buf).is_err() {
            continue;
        }
        let first = masked[0] ^ MASK;
        for i in 0..buf.len().saturating_sub(masked.len()) {
            if buf[i] == first && buf[i..i + masked.len()].iter().zip(masked).all(|(x, m)| *x ^ MASK == *m) {
                found += 1;
            }
        }
    }
    found
}

#[test]
fn keys_are_locked_and_wiped() {
    // A passphrase built from masked bytes at run time (never a literal in the binary).
    let masked: Vec<u8> = b"correct horse battery staple 9f3a7c".iter().map(|b| b ^ MASK).collect();
    let unmask = || -> Vec<u8> { masked.iter().map(|b| b ^ MASK).collect() };
    let before = vm_lck_kib();
    let m = MemoryStorage::new();
    let s: Arc<dyn Storage> = Arc::new(m.clone());
    let db = Config::new()
        .storage(s.clone())
        .passphrase(Passphrase::new(unmask()))
        .kdf(KdfParams::insecure_fast())
        .use_env(false)
        .open()
        .unwrap();
    db.insert("k", &b"v"[..]).unwrap();
    db.flush().unwrap();
    let dk_masked: Vec<u8> = foldvault::crypto::__data_key_for_tests(&db).to_vec();
    let during = vm_lck_kib();
    assert!(
        foldvault::crypto::locked::locking_failed() || during > before,
        "VmLck did not grow: {before} -> {during} kB"
    );
    assert!(count_in_memory(&dk_masked) >= 1, "the scan does not see the live key (test broken)");
    drop(db);
    let after_pass = count_in_memory(&masked);
    let after_key = count_in_memory(&dk_masked);
    assert_eq!(after_key, 0, "data key left in memory after drop");
    assert_eq!(after_pass, 0, "passphrase left in memory after drop");
}
