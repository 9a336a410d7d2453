#![allow(dead_code)]
//! Scans this process's own readable, writable memory (Linux: /proc/self/maps and
//! /proc/self/mem) for a byte string. The needle is passed XOR-masked with `MASK`, so the
//! scanner itself never holds it in the clear and cannot find its own copy.
//!
//! The scanner reads through one fixed window that it allocates once and wipes at the end: a
//! growing buffer would free copies of the memory it read (plaintext included) for the next
//! scan to find.
//!
//! A scan that cannot look (no /proc/self/mem, no mapping listed or read, an empty needle, or
//! ranges that miss the scanning thread's own stack) panics: it never reports 0, which every
//! check that a secret is gone would take for a pass.
//!
//! Shared by tests/secret_memory.rs and the unit tests that look for keys left behind
//! (`src/crypto/mod.rs` declares it, by `#[path]`).

use std::io::{Read, Seek, SeekFrom};

pub const MASK: u8 = 0xA5;

const WINDOW: usize = 1 << 20;

static SCAN: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn vm_lck_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmLck:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Whether the unmasked needle is found, for a scan's check that it sees a secret that is live:
/// up to `SCANS` scans, stopping at the first that finds it. A live data key was missed by a
/// scan twice, while other test threads mapped and unmapped key buffers around it: in CI with
/// one read of /proc/self/maps, and in a feature test run of the twenty-fifth session with
/// `regions`' three (once in 32 runs of the library's tests). A scan for a secret that must be
/// gone stays one scan.
pub fn seen_in_memory(masked: &[u8]) -> bool {
    const SCANS: usize = 5;
    (0..SCANS).any(|_| count_in_memory(masked) >= 1)
}

/// Occurrences of the unmasked needle in every readable private mapping (heap, stacks,
/// anonymous maps, writable data of loaded objects). Panics where it cannot scan (see the top of
/// this file): a 0 from a scan that read nothing made every "nothing left behind" check pass.
pub fn count_in_memory(masked: &[u8]) -> usize {
    // One scan at a time: a scan's window holds copies of what it read (another test's live
    // key among them) until it is wiped, and a concurrent scan would find them there.
    let _one = SCAN.lock().unwrap_or_else(|e| e.into_inner());
    let n = masked.len();
    assert!(n > 0 && n <= WINDOW, "memscan: a needle of {n} bytes (1 to {WINDOW} are scanned) proves nothing");
    let mut mem = std::fs::File::open("/proc/self/mem")
        .unwrap_or_else(|e| panic!("memscan: cannot open /proc/self/mem ({e}): no memory could be scanned"));
    let ranges = regions();
    assert!(!ranges.is_empty(), "memscan: /proc/self/maps lists no readable private mapping: nothing to scan");
    // The scan must cover this thread's own stack (a local's address): ranges that miss it
    // would miss what a key setup left there.
    let here = std::ptr::addr_of!(n) as u64;
    assert!(
        ranges.iter().any(|&(a, b)| a <= here && here < b),
        "memscan: the ranges from /proc/self/maps miss this thread's stack ({here:#x}): the scan is blind"
    );
    let mapped = ranges.len();
    let mut window = vec![0u8; WINDOW + n];
    let mut found = 0;
    let mut read = 0u64;
    for (a, b) in ranges {
        // Windows overlap by n - 1 bytes so a needle across a boundary is seen once.
        let mut at = a;
        while at < b {
            let len = ((b - at) as usize).min(WINDOW + n - 1);
            let w = &mut window[..len];
            if mem.seek(SeekFrom::Start(at)).is_ok() && mem.read_exact(w).is_ok() {
                found += count_in(w, masked);
                read += len as u64;
            } else {
                // Part of the window went away while the scan ran (another test's thread
                // unmapped it): read it page by page, so a hole does not hide the rest of the
                // region (a live key there was missed once, failing a positive scan).
                let (f, r) = count_pagewise(&mut mem, at, len, masked);
                found += f;
                read += r;
            }
            if len < WINDOW + n - 1 {
                break;
            }
            at += WINDOW as u64;
        }
    }
    window.fill(0);
    std::hint::black_box(&window);
    assert!(read > 0, "memscan: no byte of the {mapped} mapping(s) listed could be read from /proc/self/mem");
    found
}

/// The address ranges to scan: every readable private mapping (heap, stacks, anonymous maps,
/// writable data of loaded objects), from `MAPS_READS` reads of /proc/self/maps merged into
/// disjoint ranges. One read is not a snapshot: the kernel reads the list a piece at a time, so
/// a mapping that other test threads' mappings and unmappings move about (each key buffer is a
/// mapping of its own) can be missing from it; a live data key was missed so, once, in CI.
fn regions() -> Vec<(u64, u64)> {
    const MAPS_READS: usize = 3;
    let mut ranges = Vec::new();
    for _ in 0..MAPS_READS {
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { continue };
        for line in maps.lines() {
            let mut parts = line.split_whitespace();
            let (Some(range), Some(perms)) = (parts.next(), parts.next()) else { continue };
            let path = parts.nth(3).unwrap_or("");
            if !perms.starts_with('r') || path.starts_with("[v") || (path.starts_with('/') && !perms.contains('w')) {
                continue;
            }
            let Some((a, b)) = range.split_once('-') else { continue };
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                ranges.push((a, b));
            }
        }
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// `count_in` over `len` bytes from `at`, a page (and the needle's length less one) at a time,
/// skipping pages that do not read; and how many bytes were read.
fn count_pagewise(mem: &mut std::fs::File, at: u64, len: usize, masked: &[u8]) -> (usize, u64) {
    const PAGE: usize = 4096;
    let mut buf = vec![0u8; PAGE + masked.len()];
    let mut found = 0;
    let mut read = 0u64;
    let mut off = 0;
    while off < len {
        let take = (len - off).min(PAGE + masked.len() - 1);
        let w = &mut buf[..take];
        if mem.seek(SeekFrom::Start(at + off as u64)).is_ok() && mem.read_exact(w).is_ok() {
            found += count_in(w, masked);
            read += take as u64;
        }
        off += PAGE;
    }
    buf.fill(0);
    std::hint::black_box(&buf);
    (found, read)
}

fn count_in(w: &[u8], masked: &[u8]) -> usize {
    let first = masked[0] ^ MASK;
    let n = masked.len();
    if w.len() < n {
        return 0;
    }
    (0..=w.len() - n).filter(|&i| w[i] == first && w[i..i + n].iter().zip(masked).all(|(x, m)| *x ^ MASK == *m)).count()
}
