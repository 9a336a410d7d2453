//! Target `wal_replay`: a write-ahead log (SPEC.md §15) damaged by the input, then replayed.
//!
//! The log is built at first use (`OnceLock`) by the same writes each time: a database file
//! whose pages 0 and 1 (its two header copies) own the log, then groups of three page writes, each followed by a sync, with
//! checkpoints on the way (so the log holds groups of two generations, the older ones past the
//! tail, starting at the same log pages as the newer ones). Its bytes differ between processes only in the salts.
//!
//! Input: `mode u8`, then up to `MAX_MUTATIONS` mutations of the log bytes. Mode bit 0 clear:
//! *crash-like* damage only — the log cut at a 512-byte boundary, sectors of its last group
//! zeroed or reverted to the bytes an earlier generation left there, or the whole last group
//! reverted (what a power loss during the last sync can leave). Mode bit 0 set: *any* damage — bit flips, byte writes, a page of
//! the log copied over another, truncation, appended bytes.
//!
//! Checked: no panic and no unbounded allocation, whatever the bytes; the length and every
//! page read come out as a typed result. After crash-like damage, the storage must read
//! exactly as it did after some prefix of the groups (every acknowledged group but possibly the
//! last, never a mix). After any damage, every page must still hold a version that was written
//! to it at some point, or zeros (the log's checksums would have to be forged to do otherwise:
//! the fuzzer would be finding a CRC32 collision, which ends the run as a finding).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, OnceLock};

use super::Input;
use crate::storage::wal::WalStorage;
use crate::storage::{MemoryStorage, Storage};

const PAGE: usize = 4096;
const P: u64 = PAGE as u64;
const MAX_MUTATIONS: usize = 16;
/// Database pages the builder writes (2..PAGES; pages 0 and 1 own the log).
const PAGES: u64 = 24;
const GROUPS: usize = 40;
/// A checkpoint after this many pages: the log restarts at least once.
const CHECKPOINT_PAGES: u64 = 96;

struct Built {
    main: Vec<u8>,
    log: Vec<u8>,
    /// The log as the first generation left it, before the checkpoint.
    old_log: Vec<u8>,
    /// Log page where each group of the current generation starts, and the states: page ->
    /// first byte after 0, 1, 2, ... of those groups.
    group_starts: Vec<u64>,
    states: Vec<BTreeMap<u64, u8>>,
    /// Every (page, fill byte) ever written.
    written: HashSet<(u64, u8)>,
}

fn built() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        let (m, l) = (MemoryStorage::new(), MemoryStorage::new());
        m.write_at(0, &[0xF0; 2 * PAGE]).expect("build: owner pages");
        // Checkpoints within the sync that fills the log, so that the builder sees where each
        // generation starts (background checkpoints: `storage::wal` tests, `tests/crash.rs`).
        let w = WalStorage::open(Arc::new(m.clone()), Arc::new(l.clone()), CHECKPOINT_PAGES, None)
            .expect("build")
            .background_checkpoints(false);
        let mut rng = super::Rng(0x3a1);
        let mut state: BTreeMap<u64, u8> = BTreeMap::new();
        let mut written = HashSet::new();
        let (mut states, mut group_starts) = (vec![state.clone()], Vec::new());
        let (mut old_log, mut tail, mut restarts) = (Vec::new(), 1u64, 0);
        let mut g = 0usize;
        while g < GROUPS || group_starts.len() < 2 {
            // Three distinct pages per group: groups of every generation start at the same log
            // pages, so an old generation's group lies exactly where replay looks next.
            let mut pages: Vec<u64> = Vec::new();
            while pages.len() < 3 {
                let p = 2 + rng.below(PAGES - 2);
                if !pages.contains(&p) {
                    pages.push(p);
                }
            }
            pages.sort_unstable();
            group_starts.push(tail);
            for p in &pages {
                let fill = (g as u8).wrapping_mul(7).wrapping_add(*p as u8) | 1;
                w.write_at(p * P, &[fill; PAGE]).expect("build: write");
                state.insert(*p, fill);
                written.insert((*p, fill));
            }
            w.sync().expect("build: sync");
            tail += 1 + pages.len() as u64;
            states.push(state.clone());
            if w.logged_pages() == 0 {
                // That sync ended with a checkpoint: a new generation starts at log page 1,
                // over the bytes of the old one.
                (old_log, tail, restarts) = (l.snapshot(), 1, restarts + 1);
                (states, group_starts) = (vec![state.clone()], Vec::new());
            }
            g += 1;
        }
        assert!(restarts > 0, "build: the log restarted");
        w.close_as_crash();
        Built { main: m.snapshot(), log: l.snapshot(), old_log, group_starts, states, written }
    })
}

fn crash_like(b: &Built, log: &mut Vec<u8>, inp: &mut Input) {
    let last = *b.group_starts.last().expect("groups") as usize * PAGE;
    for _ in 0..inp.below(MAX_MUTATIONS) {
        match inp.below(4) {
            0 => {
                let cut = inp.below(log.len() / 512 + 1) * 512;
                log.truncate(cut.max(last));
            }
            3 => {
                // The last group never written: the old generation's bytes stay there.
                let end = log.len().min(b.old_log.len());
                if last < end {
                    log[last..end].copy_from_slice(&b.old_log[last..end]);
                }
            }
            k => {
                let sectors = (log.len().saturating_sub(last)) / 512;
                if sectors == 0 {
                    continue;
                }
                let at = last + inp.below(sectors) * 512;
                for i in at..(at + 512).min(log.len()) {
                    log[i] = if k == 1 { 0 } else { b.old_log.get(i).copied().unwrap_or(0) };
                }
            }
        }
    }
}

fn any_damage(b: &Built, log: &mut Vec<u8>, inp: &mut Input) {
    for _ in 0..inp.below(MAX_MUTATIONS) {
        let len = log.len().max(1);
        match inp.below(5) {
            0 => {
                let at = inp.u32() as usize % len;
                if let Some(x) = log.get_mut(at) {
                    *x ^= 1 << inp.below(8);
                }
            }
            1 => {
                let at = inp.u32() as usize % len;
                for (i, v) in inp.bytes(8).iter().enumerate() {
                    if let Some(x) = log.get_mut(at + i) {
                        *x = *v;
                    }
                }
            }
            2 => {
                let pages = log.len() / PAGE;
                if pages > 1 {
                    let (from, to) = (inp.below(pages) * PAGE, inp.below(pages) * PAGE);
                    let page = log[from..from + PAGE].to_vec();
                    log[to..to + PAGE].copy_from_slice(&page);
                }
            }
            3 => log.truncate(inp.u32() as usize % len),
            _ => log.extend_from_slice(&b.old_log[..b.old_log.len().min(inp.below(4) * PAGE)]),
        }
    }
}

pub fn run(data: &[u8]) {
    let b = built();
    let mut inp = Input::new(data);
    let any = inp.bool();
    let mut log = b.log.clone();
    if any {
        any_damage(b, &mut log, &mut inp)
    } else {
        crash_like(b, &mut log, &mut inp)
    }
    let (m, l) = (MemoryStorage::from_bytes(b.main.clone()), MemoryStorage::from_bytes(log));
    let w = match WalStorage::open(Arc::new(m), Arc::new(l), CHECKPOINT_PAGES, None) {
        Ok(w) => w,
        Err(crate::Error::Io(_) | crate::Error::ForeignLog | crate::Error::UnsupportedLogVersion { .. }) if any => {
            return;
        }
        Err(e) => panic!("crash-like damage must open: {e}"),
    };
    let len = w.len().expect("len");
    assert!(len <= 1 << 40, "length {len} past the bound");
    let mut seen = BTreeMap::new();
    let mut buf = vec![0u8; PAGE];
    for p in 2..PAGES.min(len / P) {
        w.read_at(p * P, &mut buf).expect("read inside the length");
        let fill = buf[0];
        assert!(buf.iter().all(|x| *x == fill), "page {p} is not one write");
        assert!(fill == 0 || b.written.contains(&(p, fill)), "page {p} holds {fill}, never written there");
        if fill != 0 {
            seen.insert(p, fill);
        }
    }
    if !any {
        assert!(
            b.states.iter().rev().take(2).any(|s| *s == seen),
            "after crash-like damage the log reads as neither of its last two states"
        );
    }
    // Whatever the damage, replay stops at the first group that does not check out: what
    // reads is the state after some prefix of the generation's groups, never a mix (a group
    // applied without one before it, a page of one group beside another's).
    assert!(b.states.contains(&seen), "the log reads as no state its groups made in order");
    w.close_as_crash();
}
