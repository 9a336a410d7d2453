//! Tests of `storage::wal` (SPEC.md §15): crashes, torn and foreign logs, the direct path,
//! garbage, and writes racing syncs.

use super::checkpoint::consecutive_runs;
use super::*;
use crate::storage::MemoryStorage;
use crate::storage::{GatedMemory, WriteGate};

/// A database file holding its "header" in two copies (pages 0 and 1, whose first bytes own
/// the log) and a log. Tests write data from page 2.
fn pair() -> (MemoryStorage, MemoryStorage) {
    let m = MemoryStorage::new();
    m.write_at(0, &[0xF0; 2 * PAGE]).unwrap();
    (m, MemoryStorage::new())
}

fn open(m: &MemoryStorage, l: &MemoryStorage, ckpt: u64) -> WalStorage {
    WalStorage::open(Arc::new(m.clone()), Arc::new(l.clone()), ckpt, None).unwrap()
}

fn crash(w: WalStorage) {
    w.close_as_crash();
}

fn page(b: u8) -> Vec<u8> {
    vec![b; PAGE]
}

/// A file and a log left by a crash after `groups` (each: pages written with a fill byte,
/// then a sync).
fn logged(groups: &[&[(u64, u8)]]) -> (MemoryStorage, MemoryStorage) {
    let (m, l) = pair();
    let w = open(&m, &l, 1000);
    for g in groups {
        for &(pg, fill) in *g {
            w.write_at(pg * P, &page(fill)).unwrap();
        }
        w.sync().unwrap();
    }
    crash(w);
    (m, l)
}

/// The first byte of page `pg` if the page is that byte throughout, else `None`.
fn fill_of(w: &WalStorage, pg: u64) -> Option<u8> {
    let mut b = vec![0u8; PAGE];
    w.read_at(pg * P, &mut b).unwrap();
    b.iter().all(|x| *x == b[0]).then_some(b[0])
}

#[test]
fn synced_writes_survive_a_crash_and_unsynced_ones_do_not() {
    let (m, l) = pair();
    let w = open(&m, &l, 1000);
    w.write_at(2 * P, &page(1)).unwrap();
    w.write_at(5 * P, &page(4)).unwrap();
    w.write_at(3 * P + 100, b"partial").unwrap();
    w.sync().unwrap();
    w.write_at(7 * P, &page(6)).unwrap();
    w.write_at(2 * P, &page(9)).unwrap();
    assert_eq!(fill_of(&w, 2), Some(9), "reads see unsynced writes");
    assert_eq!(w.len().unwrap(), 8 * P);
    assert_eq!(m.len().unwrap(), 2 * P, "nothing reached the file before a checkpoint");
    crash(w);
    let w = open(&m, &l, 1000);
    assert_eq!(w.len().unwrap(), 6 * P);
    assert_eq!(fill_of(&w, 0), Some(0xF0));
    assert_eq!(fill_of(&w, 2), Some(1));
    assert_eq!(fill_of(&w, 5), Some(4));
    let mut p3 = vec![0u8; PAGE];
    w.read_at(3 * P, &mut p3).unwrap();
    assert!(p3[100..107] == *b"partial" && p3[..100].iter().chain(&p3[107..]).all(|b| *b == 0));
    assert_eq!(fill_of(&w, 4), Some(0), "a gap reads as zeros");
    assert_eq!(w.logged_pages(), 3);
    // A clean close checkpoints: the file alone then holds it all.
    drop(w);
    assert_eq!(m.len().unwrap(), 6 * P);
    let w = open(&m, &l, 1000);
    assert_eq!(w.logged_pages(), 0);
    assert_eq!(fill_of(&w, 5), Some(4));
}

#[test]
fn a_new_file_is_written_directly_until_its_first_sync() {
    let (m, l) = (MemoryStorage::new(), MemoryStorage::new());
    let w = open(&m, &l, 1000);
    w.write_at(0, &page(3)).unwrap();
    w.write_at(P, &page(3)).unwrap();
    w.sync().unwrap();
    assert_eq!(m.len().unwrap(), 2 * P);
    w.write_at(2 * P, &page(4)).unwrap();
    w.sync().unwrap();
    assert_eq!((m.len().unwrap(), w.logged_pages()), (2 * P, 1), "then it logs");
    crash(w);
    // The header written after the first sync names the file: another file is refused.
    let other = MemoryStorage::new();
    other.write_at(0, &[5; 2 * PAGE]).unwrap();
    let r = WalStorage::open(Arc::new(other), Arc::new(l.clone()), 1000, None);
    assert!(matches!(r, Err(Error::ForeignLog)), "{r:?}");
    assert_eq!(fill_of(&open(&m, &l, 1000), 2), Some(4));
}

#[test]
fn checkpoints_when_full_and_never_replays_an_old_generation() {
    for background in [false, true] {
        let (m, l) = pair();
        let w = open(&m, &l, 8).background_checkpoints(background);
        for i in 1..20u8 {
            w.write_at(u64::from(i + 1) * P, &page(i + 1)).unwrap();
            w.write_at(100 * P, &page(i)).unwrap();
            w.sync().unwrap();
        }
        // Groups of 3 log pages, each with a new page and page 100: a generation holds 3 groups
        // (4 pages), or in the background at most 5 (6 pages), the last of them at log page 13,
        // past which the log reaches twice `checkpoint_pages` and a sync waits for the copy.
        let most = if background { 6 } else { 4 };
        assert!(w.logged_pages() <= most, "{} pages logged", w.logged_pages());
        crash(w);
        let w = open(&m, &l, 8).background_checkpoints(background);
        for i in 1..20u8 {
            assert_eq!(fill_of(&w, u64::from(i + 1)), Some(i + 1));
        }
        assert_eq!(fill_of(&w, 100), Some(19));
        // The log still holds groups of earlier generations past its tail: one more group and a
        // crash must not bring any of them back.
        w.write_at(100 * P, &page(77)).unwrap();
        w.sync().unwrap();
        crash(w);
        let w = open(&m, &l, 8);
        assert_eq!(fill_of(&w, 100), Some(77));
        assert_eq!(fill_of(&w, 6), Some(6));
    }
}

/// The gate of a database file (`Gated`) whose writes wait while it is shut: holds a background
/// checkpoint's copy part-way, for as long as a test needs (at most a minute, so that a failing
/// test ends rather than hangs in `Drop`, which waits for the copy). Writes fail while
/// `failing`.
#[derive(Default)]
struct Gate {
    shut: parking_lot::Mutex<bool>,
    opened: parking_lot::Condvar,
    /// Writes that found the gate shut.
    held: AtomicU64,
    failing: std::sync::atomic::AtomicBool,
}

impl Gate {
    fn set(&self, shut: bool) {
        *self.shut.lock() = shut;
        self.opened.notify_all();
    }
}

impl WriteGate for Gate {
    fn before_write(&self) -> io::Result<()> {
        let mut shut = self.shut.lock();
        if *shut {
            self.held.fetch_add(1, Ordering::AcqRel);
        }
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while *shut && !self.opened.wait_until(&mut shut, until).timed_out() {}
        drop(shut);
        if self.failing.load(Ordering::Acquire) {
            return Err(io::Error::other("gated file: write refused"));
        }
        Ok(())
    }
}

type Gated = GatedMemory<Gate>;

/// Writes page `pg` full of `fill` and notes it in `want`.
fn put(w: &WalStorage, want: &mut std::collections::BTreeMap<u64, u8>, pg: u64, fill: u8) {
    w.write_at(pg * P, &page(fill)).unwrap();
    want.insert(pg, fill);
}

fn wait_for(what: impl Fn() -> bool) {
    while !what() {
        std::thread::yield_now();
    }
}

/// A checkpoint copies pages home on its own thread while groups go on being logged: with the
/// copy held part-way, syncs return, reads see every newest version, and a crash then replays
/// them all. Once the copy ends, the next group finishes the checkpoint (the pages logged
/// meanwhile copied home too) and starts a new generation.
#[test]
fn commits_go_on_while_a_checkpoint_copies_pages_home() {
    let (m, l) = pair();
    let gated = Arc::new(Gated::default());
    gated.inner.write_at(0, &m.snapshot()).unwrap();
    let open_gated = || WalStorage::open(gated.clone(), Arc::new(l.clone()), 8, None).unwrap();
    let copy_ended = |w: &WalStorage| w.state.read().background.as_ref().is_none_or(|b| b.thread.is_finished());
    let mut want = std::collections::BTreeMap::new();
    let w = open_gated();
    gated.gate.set(true);
    // Groups of 2 pages (3 log pages each): the third fills the log and starts the copy.
    for i in 0..3u8 {
        put(&w, &mut want, 2 + u64::from(i), 10 + i);
        put(&w, &mut want, 50, i);
        w.sync().unwrap();
    }
    // The copy is held at its first write; later groups are logged all the same, up to the
    // bound of twice `checkpoint_pages` (log pages 10-15 here).
    for i in 0..2u8 {
        put(&w, &mut want, 20 + u64::from(i), 30 + i);
        put(&w, &mut want, 50, 40 + i);
        w.sync().unwrap();
    }
    wait_for(|| gated.gate.held.load(Ordering::Acquire) > 0);
    for (&pg, &fill) in &want {
        assert_eq!(fill_of(&w, pg), Some(fill), "page {pg} while the copy is held");
    }
    assert_eq!(gated.inner.len().unwrap(), 2 * P, "nothing reached the file yet");
    gated.gate.set(false);
    // A crash now (`close_as_crash` lets the copy finish): the log still holds every group.
    crash(w);
    let w = open_gated();
    for (&pg, &fill) in &want {
        assert_eq!(fill_of(&w, pg), Some(fill), "page {pg} after a crash during the copy");
    }
    w.checkpoint_now().unwrap();
    // Again with a new generation: the copy held, one group logged past its start, the copy
    // let go; the next group finishes the checkpoint.
    gated.gate.set(true);
    // Groups of 1 page (2 log pages each): the fourth starts the copy.
    for i in 0..4u8 {
        put(&w, &mut want, 60 + u64::from(i), 70 + i);
        w.sync().unwrap();
    }
    put(&w, &mut want, 80, 74);
    w.sync().unwrap();
    wait_for(|| gated.gate.held.load(Ordering::Acquire) > 1);
    gated.gate.set(false);
    wait_for(|| copy_ended(&w));
    put(&w, &mut want, 65, 75);
    w.sync().unwrap();
    assert_eq!(w.logged_pages(), 1, "a new generation holds only the last group");
    crash(w);
    // The file alone holds everything logged before that group, page 80 (logged after the
    // copy began) included.
    let file_alone = WalStorage::open(gated.clone(), Arc::new(MemoryStorage::new()), 8, None).unwrap();
    for (&pg, &fill) in want.iter().filter(|(pg, _)| **pg != 65) {
        assert_eq!(fill_of(&file_alone, pg), Some(fill), "page {pg} in the file");
    }
    drop(file_alone);
    assert_eq!(fill_of(&open_gated(), 65), Some(75));
}

#[test]
fn a_torn_group_ends_replay_and_earlier_groups_stay() {
    let (m, l) = logged(&[&[(2, 1)], &[(2, 2), (3, 2)]]);
    // Group 0 is log pages 1-2, group 1 pages 3-5: tear the last page of group 1.
    l.write_at(5 * P + 512, &[0xEE; 512]).unwrap();
    let w = open(&m, &l, 1000);
    assert_eq!(fill_of(&w, 2), Some(1));
    assert_eq!(w.len().unwrap(), 3 * P);
    // New groups go into a new generation (the replayed one is checkpointed first).
    w.write_at(2 * P, &page(3)).unwrap();
    w.sync().unwrap();
    crash(w);
    let w = open(&m, &l, 1000);
    assert_eq!(fill_of(&w, 2), Some(3));
}

/// A group damaged in the middle of the log (not torn by a crash: groups of its generation
/// follow it) ends replay there. The session's groups start a new generation: written where
/// the damaged one was, under its salt, with the sequence number it had, one of the same size
/// was followed by the old groups after it at the next replay, which put back older writes
/// over this session's.
#[test]
fn groups_after_a_damaged_one_never_follow_a_new_one() {
    let groups: [&[(u64, u8)]; 6] = [&[(2, 1)], &[(3, 2)], &[(4, 3)], &[(5, 4)], &[(2, 5)], &[(3, 6)]];
    let (m, l) = logged(&groups);
    // Group k is log pages 1 + 2k (index) and 2 + 2k: damage group 2's page.
    l.write_at(6 * P + 100, &[0xEE; 8]).unwrap();
    let w = open(&m, &l, 1000);
    assert_eq!((fill_of(&w, 2), fill_of(&w, 3), w.len().unwrap()), (Some(1), Some(2), 4 * P));
    w.write_at(6 * P, &page(9)).unwrap();
    w.sync().unwrap();
    crash(w);
    let w = open(&m, &l, 1000);
    assert_eq!(fill_of(&w, 6), Some(9), "the acknowledged group");
    assert_eq!((fill_of(&w, 2), fill_of(&w, 3), fill_of(&w, 5)), (Some(1), Some(2), Some(0)), "no old group");
}

/// What open found in the database file may be writes of a process that died before its sync
/// (a large commit goes to the file directly): the session's first group waits for the file's
/// sync, since the group may depend on them.
#[test]
fn the_first_group_waits_for_the_file_open_found_to_be_durable() {
    let main = crate::storage::FaultyStorage::from_bytes(vec![0xF0; 2 * PAGE]);
    main.write_at(2 * P, &page(7)).unwrap();
    assert_ne!(main.durable_image(), main.live_image());
    let w = WalStorage::open(Arc::new(main.clone()), Arc::new(MemoryStorage::new()), 1000, None).unwrap();
    w.write_at(3 * P, &page(8)).unwrap();
    w.sync().unwrap();
    assert_eq!(main.durable_image()[2 * PAGE..3 * PAGE], page(7)[..], "synced before the group");
    assert_eq!(fill_of(&w, 3), Some(8));
}

#[test]
fn groups_moved_out_of_order_are_not_replayed() {
    let (m, l) = logged(&[&[(2, 1)], &[(2, 2)]]);
    // Swap the two groups (log pages 1-2 and 3-4): each still checks out on its own.
    let (mut a, mut b) = (vec![0u8; 2 * PAGE], vec![0u8; 2 * PAGE]);
    l.read_at(P, &mut a).unwrap();
    l.read_at(3 * P, &mut b).unwrap();
    l.write_at(P, &b).unwrap();
    l.write_at(3 * P, &a).unwrap();
    let w = open(&m, &l, 1000);
    assert_eq!(w.len().unwrap(), 2 * P, "replay stops at a group out of sequence");
}

/// A group whose checksum holds but whose length is below the group before it (edited, or a
/// bug) ends replay as damage: taken, it cut the file under the commit records and the
/// database would not open (pager review, low).
#[test]
fn a_group_that_shrinks_the_length_ends_replay() {
    let (m, l) = logged(&[&[(2, 1)], &[(5, 2)], &[(3, 3)]]);
    // Group 2 (log pages 5-6) claims 4 pages where group 1 made it 6; its checksum is made good.
    let mut index = vec![0u8; PAGE];
    l.read_at(5 * P, &mut index).unwrap();
    index[32..40].copy_from_slice(&(4 * P).to_le_bytes());
    index[INDEX_CRC_AT..INDEX_CRC_AT + 4].fill(0);
    let mut body = vec![0u8; PAGE];
    l.read_at(6 * P, &mut body).unwrap();
    let crc = crc_of(&[&index[..], &body[..]]);
    index[INDEX_CRC_AT..INDEX_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    l.write_at(5 * P, &index).unwrap();
    let w = open(&m, &l, 1000);
    assert!(w.replay_dropped_a_group());
    assert_eq!(w.len().unwrap(), 6 * P, "the length of the last group taken");
    assert_eq!((fill_of(&w, 2), fill_of(&w, 5), fill_of(&w, 3)), (Some(1), Some(2), Some(0)));
}

/// The next group of the generation (magic, salt and sequence number matching) with a page
/// count above `MAX_GROUP`, or a length above 2^40, ends replay as damage, said as a failed
/// checksum is (SPEC review, low: it ended replay silently, `was_recovered` false).
#[test]
fn a_group_with_an_impossible_count_or_length_is_reported_as_dropped() {
    for (at, value) in [(24usize, (MAX_GROUP as u64 + 1)), (32, (1u64 << 40) + P)] {
        let (m, l) = logged(&[&[(2, 1)], &[(5, 2)]]);
        // Group 1 (log pages 3-4), its field edited; no checksum could make it good.
        let mut index = vec![0u8; PAGE];
        l.read_at(3 * P, &mut index).unwrap();
        match at {
            24 => index[24..28].copy_from_slice(&(value as u32).to_le_bytes()),
            _ => index[32..40].copy_from_slice(&value.to_le_bytes()),
        }
        l.write_at(3 * P, &index).unwrap();
        let w = open(&m, &l, 1000);
        assert!(w.replay_dropped_a_group(), "field at {at}");
        assert_eq!(fill_of(&w, 2), Some(1), "field at {at}");
        assert_eq!(w.len().unwrap(), 3 * P, "field at {at}: the length of the last group taken");
    }
}

#[test]
fn a_log_of_another_file_is_refused() {
    let (_, l) = logged(&[&[(2, 1)]]);
    let other = MemoryStorage::new();
    other.write_at(0, &[4; 2 * PAGE]).unwrap();
    let r = WalStorage::open(Arc::new(other), Arc::new(l.clone()), 2, None);
    assert!(matches!(r, Err(Error::ForeignLog)), "{r:?}");
    // Either header copy owns it (page 0 may be the damaged one).
    let repaired = MemoryStorage::new();
    repaired.write_at(0, &page(0)).unwrap();
    repaired.write_at(P, &[0xF0; PAGE]).unwrap();
    let w = WalStorage::open(Arc::new(repaired), Arc::new(l.clone()), 1000, None).unwrap();
    assert_eq!(fill_of(&w, 2), Some(1));
}

#[test]
fn a_large_group_and_a_shrink_go_to_the_file() {
    let (m, l) = pair();
    let w = open(&m, &l, 1000);
    w.write_at(2 * P, &page(7)).unwrap();
    w.sync().unwrap();
    for i in 2..(MAX_GROUP as u64 + 10) {
        w.write_at(i * P, &page((i % 200) as u8)).unwrap();
    }
    w.sync().unwrap();
    assert_eq!(w.logged_pages(), 0);
    assert_eq!(m.len().unwrap(), (MAX_GROUP as u64 + 10) * P);
    w.set_len(3 * P).unwrap();
    assert_eq!((w.len().unwrap(), m.len().unwrap()), (3 * P, 3 * P), "the direct writes' end is forgotten");
    w.write_at(2 * P, &page(9)).unwrap();
    w.sync().unwrap();
    w.set_len(6 * P).unwrap();
    w.sync().unwrap();
    crash(w);
    let w = open(&m, &l, 1000);
    assert_eq!(w.len().unwrap(), 6 * P);
    assert_eq!(fill_of(&w, 2), Some(9));
    assert_eq!(fill_of(&w, 1), Some(0xF0));
    assert_eq!(fill_of(&w, 4), Some(0), "past a shrink, zeros");
}

#[test]
fn writes_during_syncs_never_make_a_group_too_large() {
    // The engine writes the next commit's pages while a sync runs (group commit). With
    // small groups, a write that passes the bound races the syncs many times.
    let (m, l) = pair();
    let w = Arc::new(open(&m, &l, 64).max_group(4));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let syncer = {
        let (w, done) = (w.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                w.sync().unwrap();
            }
        })
    };
    for i in 0..3000u64 {
        w.write_at((2 + i % 200) * P, &page((i % 251) as u8)).unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    syncer.join().unwrap();
    w.sync().unwrap();
    let w = Arc::into_inner(w).unwrap();
    crash(w);
    let w = open(&m, &l, 64);
    for i in 2800..3000u64 {
        assert_eq!(fill_of(&w, 2 + i % 200), Some((i % 251) as u8));
    }
}

#[test]
fn garbage_logs_are_not_replayed_and_do_not_panic() {
    let mut rng = crate::fuzzing::Rng(5);
    for round in 0..40 {
        let (m, l) = logged(&[&[(2, 2)], &[(3, 3)]]);
        let mut junk = vec![0u8; 64];
        rng.fill(&mut junk);
        let at = rng.below(5 * P - 64);
        l.write_at(at, &junk).unwrap();
        if let Ok(w) = WalStorage::open(Arc::new(m.clone()), Arc::new(l.clone()), 1000, None) {
            let n = w.len().unwrap() / P;
            assert!((2..=4).contains(&n), "round {round}");
            for pg in 2..n {
                assert_eq!(fill_of(&w, pg), Some(pg as u8), "round {round}: page {pg}");
            }
        }
    }
}

/// A log that reaches twice `checkpoint_pages` while the copy runs does not grow further: the
/// next sync waits for the copy and finishes the checkpoint.
#[test]
fn a_sync_past_twice_the_checkpoint_size_waits_for_the_copy() {
    let (m, l) = pair();
    let gated = Arc::new(Gated::default());
    gated.inner.write_at(0, &m.snapshot()).unwrap();
    let w = Arc::new(WalStorage::open(gated.clone(), Arc::new(l.clone()), 8, None).unwrap());
    let mut want = std::collections::BTreeMap::new();
    gated.gate.set(true);
    // Groups of 1 page (2 log pages): the fourth starts the copy at log page 9, the seventh
    // brings the log to 15, the eighth to 17 (past 16).
    for i in 0..8u8 {
        put(&w, &mut want, 2 + u64::from(i), i + 1);
        w.sync().unwrap();
    }
    put(&w, &mut want, 20, 20);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let syncer = {
        let (w, done) = (w.clone(), done.clone());
        std::thread::spawn(move || {
            w.sync().unwrap();
            done.store(true, Ordering::Release);
        })
    };
    // Only a wrong build can end this wait early: the sync must still be waiting.
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(!done.load(Ordering::Acquire), "a sync past the bound returned while the copy was held");
    gated.gate.set(false);
    syncer.join().unwrap();
    assert_eq!(w.logged_pages(), 1, "the checkpoint ended before the group");
    let w = Arc::into_inner(w).unwrap();
    crash(w);
    let w = WalStorage::open(gated.clone(), Arc::new(l.clone()), 8, None).unwrap();
    for (&pg, &fill) in &want {
        assert_eq!(fill_of(&w, pg), Some(fill), "page {pg}");
    }
}

/// With the gated file's writes allowed again, a reopen (replaying the log `l`) reads every
/// page of `want` as written.
fn assert_writes_survive(gated: &Arc<Gated>, l: &MemoryStorage, ckpt: u64, want: &std::collections::BTreeMap<u64, u8>) {
    gated.gate.failing.store(false, Ordering::Release);
    let w = WalStorage::open(gated.clone(), Arc::new(l.clone()), ckpt, None).unwrap();
    for (&pg, &fill) in want {
        assert_eq!(fill_of(&w, pg), Some(fill), "page {pg}");
    }
}

/// An I/O error of the background copy reaches the next sync, and everything after it fails
/// too; the log still holds every acknowledged group, which the next open replays.
#[test]
fn a_failed_background_copy_fails_the_next_sync_and_loses_nothing() {
    let (m, l) = pair();
    let gated = Arc::new(Gated::default());
    gated.inner.write_at(0, &m.snapshot()).unwrap();
    let w = WalStorage::open(gated.clone(), Arc::new(l.clone()), 8, None).unwrap();
    let mut want = std::collections::BTreeMap::new();
    gated.gate.failing.store(true, Ordering::Release);
    for i in 0..4u8 {
        put(&w, &mut want, 2 + u64::from(i), i + 1);
        w.sync().unwrap();
    }
    wait_for(|| w.state.read().background.as_ref().is_none_or(|b| b.thread.is_finished()));
    w.write_at(30 * P, &page(30)).unwrap();
    assert!(w.sync().is_err(), "the copy's error reaches the sync that would end it");
    assert!(w.sync().is_err() && w.write_at(31 * P, &page(31)).is_err(), "and stays");
    drop(w);
    assert_writes_survive(&gated, &l, 8, &want);
}

#[test]
fn consecutive_runs_split_at_gaps_and_at_the_bound() {
    let items = [1u64, 2, 3, 7, 8, 10, 11, 12, 13, 14];
    let runs: Vec<&[u64]> = consecutive_runs(&items, |x| *x, 3).collect();
    assert_eq!(runs, [&[1, 2, 3][..], &[7, 8], &[10, 11, 12], &[13, 14]]);
    assert_eq!(consecutive_runs(&[] as &[u64], |x| *x, 3).count(), 0);
    assert_eq!(consecutive_runs(&[5u64, 5], |x| *x, 3).count(), 2, "a repeat is not consecutive");
}

/// A checkpoint copies pages home in runs: consecutive home pages whose log positions are in
/// pieces (written in different groups, some rewritten), runs longer than one write, and lone
/// pages; the file alone must then hold every page's last version.
#[test]
fn a_checkpoint_copies_runs_of_pages_home() {
    let (m, l) = pair();
    let w = open(&m, &l, 100_000);
    let mut want = std::collections::BTreeMap::new();
    let groups: [Vec<u64>; 3] =
        [(1..=150).collect(), (40..=60).rev().chain([200, 202, 204]).collect(), (100..=110).chain(300..=302).collect()];
    for (gi, g) in groups.iter().enumerate() {
        for &pg in g {
            let fill = (pg as u8).wrapping_mul(3).wrapping_add(gi as u8);
            w.write_at(pg * P, &page(fill)).unwrap();
            want.insert(pg, fill);
        }
        w.sync().unwrap();
    }
    w.checkpoint_now().unwrap();
    assert_eq!(w.logged_pages(), 0);
    drop(w);
    let mut b = vec![0u8; PAGE];
    for (pg, fill) in want {
        m.read_at(pg * P, &mut b).unwrap();
        assert!(b.iter().all(|x| *x == fill), "page {pg} holds its last version");
    }
}

/// While the file's two header copies differ (one damaged, repaired by the session's first
/// group), nothing is logged: the header names no owner and the group goes to the file. Once
/// they agree, groups are logged under the bytes both hold.
#[test]
fn nothing_is_logged_while_the_header_copies_differ() {
    let (m, l) = pair();
    m.write_at(20, &[0xF1]).unwrap();
    let w = open(&m, &l, 1000);
    w.write_at(0, &[0xF0; PAGE]).unwrap();
    w.write_at(2 * P, &page(2)).unwrap();
    w.sync().unwrap();
    assert_eq!(w.logged_pages(), 0, "the repair went to the file");
    assert_eq!(
        fill_of(&WalStorage::open(Arc::new(m.clone()), Arc::new(MemoryStorage::new()), 1000, None).unwrap(), 0),
        Some(0xF0)
    );
    w.write_at(3 * P, &page(3)).unwrap();
    w.sync().unwrap();
    assert_eq!(w.logged_pages(), 1, "logging resumes once the copies agree");
    assert_eq!(w.state.read().owner, [0xF0; OWNER_LEN]);
    crash(w);
    let w = open(&m, &l, 1000);
    assert_eq!((fill_of(&w, 2), fill_of(&w, 3)), (Some(2), Some(3)));
}

/// A write to the file that fails while a large group goes direct keeps the group's pages for
/// reads: the published state is never half in memory, half nowhere.
#[test]
fn a_failed_direct_write_keeps_the_pages_readable() {
    let (m, l) = pair();
    let gated = Arc::new(Gated::default());
    gated.inner.write_at(0, &m.snapshot()).unwrap();
    let w = WalStorage::open(gated.clone(), Arc::new(l.clone()), 1000, None).unwrap().max_group(4);
    gated.gate.failing.store(true, Ordering::Release);
    // The fifth page passes the bound: that write goes direct, and fails.
    let mut written = 2;
    while w.write_at(written * P, &page(written as u8)).is_ok() {
        written += 1;
    }
    assert_eq!(written, 6);
    for pg in 2..=written {
        assert_eq!(fill_of(&w, pg), Some(pg as u8), "page {pg}");
    }
    assert!(w.sync().is_err(), "and the storage stays failed");
    crash(w);
}

/// A checkpoint run within the sync that filled the log, failing, does not turn that durable
/// group into a failed sync: the sync returns, the next one fails, and a reopen replays it all.
#[test]
fn a_failed_inline_checkpoint_fails_the_next_sync_not_the_durable_one() {
    let (m, l) = pair();
    let gated = Arc::new(Gated::default());
    gated.inner.write_at(0, &m.snapshot()).unwrap();
    let w = WalStorage::open(gated.clone(), Arc::new(l.clone()), 4, None).unwrap().background_checkpoints(false);
    gated.gate.failing.store(true, Ordering::Release);
    let mut want = std::collections::BTreeMap::new();
    for i in 0..2u8 {
        put(&w, &mut want, 2 + u64::from(i), i + 1);
        w.sync().unwrap();
    }
    assert!(w.sync().is_err(), "the checkpoint's error reaches the next sync");
    drop(w);
    assert_writes_survive(&gated, &l, 4, &want);
}

/// A part-page write past the end of a file whose length is not a whole number of pages keeps
/// the bytes before the end.
#[test]
fn a_part_page_write_past_an_unaligned_end_keeps_what_was_there() {
    let (m, l) = (MemoryStorage::new(), MemoryStorage::new());
    m.write_at(0, &[7u8; 100]).unwrap();
    let w = open(&m, &l, 1000);
    w.write_at(200, &[9u8; 10]).unwrap();
    let mut b = [0u8; 210];
    w.read_at(0, &mut b).unwrap();
    assert!(
        b[..100].iter().all(|x| *x == 7) && b[100..200].iter().all(|x| *x == 0) && b[200..].iter().all(|x| *x == 9)
    );
}

/// An abandoned log (its files about to be removed by their owner, a create that failed)
/// closes writing nothing and removing nothing by name: the name may be another process's by
/// then.
#[test]
fn an_abandoned_log_closes_without_writing_or_removing() {
    let dir = tempfile::tempdir().unwrap();
    let (file, log_path) = (dir.path().join("db"), dir.path().join("db.fvwal"));
    let main = crate::storage::FileStorage::open(&file, true).unwrap();
    main.write_at(0, &[0xF0; 2 * PAGE]).unwrap();
    let log = crate::storage::FileStorage::open(&log_path, true).unwrap();
    let w = WalStorage::open(Arc::new(main), Arc::new(log), 1000, Some(log_path.clone())).unwrap();
    w.write_at(2 * P, &page(7)).unwrap();
    w.sync().unwrap();
    let before = std::fs::read(&file).unwrap();
    w.abandon();
    drop(w);
    assert!(log_path.exists(), "the abandoned log's close removed its name");
    assert_eq!(std::fs::read(&file).unwrap(), before, "the abandoned log's close wrote to the file");
}

/// A read that fails while the log is replayed at open leaves the file and the log as they
/// were: the failed open's close must not fold in the groups read before the failure and
/// remove the log with the later ones in it.
#[test]
fn a_read_error_during_replay_leaves_the_file_and_the_log_as_they_were() {
    let (m, l) = logged(&[&[(2, 1), (3, 1)], &[(4, 2)], &[(2, 3)]]);
    let bytes = |s: &dyn Storage| {
        let mut b = vec![0u8; s.len().unwrap() as usize];
        s.read_at(0, &mut b).unwrap();
        b
    };
    let (file_before, log_before) = (bytes(&m), bytes(&l));
    let mut failures = 0;
    for fail_at in 1..40 {
        let main = MemoryStorage::new();
        main.write_at(0, &file_before).unwrap();
        let log = crate::storage::FaultyStorage::from_bytes(log_before.clone());
        log.set_plan(crate::storage::FaultPlan { fail_at: Some(fail_at), ..Default::default() });
        match WalStorage::open(Arc::new(main.clone()), Arc::new(log.clone()), 1000, None) {
            Ok(w) => crash(w),
            Err(_) => {
                failures += 1;
                assert_eq!(bytes(&main), file_before, "a failed replay wrote to the file (fail_at {fail_at})");
                assert_eq!(log.live_image(), log_before, "a failed replay changed the log (fail_at {fail_at})");
            }
        }
    }
    assert!(failures >= 4, "the header and each group's reads fail somewhere in 1..40: {failures}");
    let w = open(&m, &l, 1000);
    assert_eq!((fill_of(&w, 2), fill_of(&w, 3), fill_of(&w, 4)), (Some(3), Some(1), Some(2)));
}

/// Memory storage whose `set_len` goes through `hook`, which makes the change itself (or fails).
struct HookedSetLen<F> {
    inner: MemoryStorage,
    hook: F,
}

impl<F: Fn(&MemoryStorage, u64) -> io::Result<()> + Send + Sync + 'static> Storage for HookedSetLen<F> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset, buf)
    }
    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        (self.hook)(&self.inner, len)
    }
}

/// A sync that ends direct writes grows the file to the length `set_len` gave it; a page past
/// the file's old end, never written, reads as zeros meanwhile. The new length was published
/// before the file had it, and such a read failed (`UnexpectedEof` from the file).
#[test]
fn a_read_while_a_direct_sync_grows_the_file_reads_zeros() {
    use std::sync::mpsc;
    type Gate = Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>;
    let armed: Arc<Gate> = Arc::new(Mutex::new(None));
    let gate = armed.clone();
    let (m, l) = pair();
    let main = Arc::new(HookedSetLen {
        inner: m.clone(),
        hook: move |inner: &MemoryStorage, len| {
            if let Some((entered, go)) = gate.lock().take() {
                entered.send(()).unwrap();
                go.recv().unwrap();
            }
            inner.set_len(len)
        },
    });
    let w = Arc::new(WalStorage::open(main.clone(), Arc::new(l.clone()), 1000, None).unwrap().max_group(4));
    for pg in 2..10 {
        w.write_at(pg * P, &page(3)).unwrap();
    }
    w.set_len(20 * P).unwrap();
    assert!(m.len().unwrap() < 20 * P, "the file is already as long: the test shows nothing");
    let (entered_tx, entered_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    *armed.lock() = Some((entered_tx, go_rx));
    let syncer = {
        let w = w.clone();
        std::thread::spawn(move || w.sync())
    };
    entered_rx.recv().unwrap();
    let mut buf = vec![1u8; PAGE];
    let read = w.read_at(15 * P, &mut buf);
    go_tx.send(()).unwrap();
    syncer.join().unwrap().unwrap();
    read.unwrap();
    assert!(buf.iter().all(|&b| b == 0), "a page never written reads as zeros");
    assert_eq!(fill_of(&w, 5), Some(3));
}

/// A log whose directory cannot be synced (here: a name in no directory; a file system that
/// refuses directory syncs does the same) logs its commits all the same, the name's durability
/// in doubt said on the audit log, as a new database's names are: every first sync of a session
/// failed, and poisoned the handle.
#[test]
fn a_log_whose_directory_cannot_be_synced_still_logs() {
    let (m, l) = pair();
    let nowhere = std::path::PathBuf::from("/no-such-directory-of-foldvault/db.fvwal");
    let w = WalStorage::open(Arc::new(m.clone()), Arc::new(l.clone()), 1000, Some(nowhere)).unwrap();
    w.write_at(2 * P, &page(7)).unwrap();
    w.sync().unwrap();
    w.write_at(3 * P, &page(8)).unwrap();
    w.sync().unwrap();
    let mut back = vec![0u8; PAGE];
    w.read_at(3 * P, &mut back).unwrap();
    assert_eq!(back, page(8));
    assert!(l.len().unwrap() > 0, "nothing was logged");
}

/// A shrinking `set_len` whose cut of the database file fails leaves the storage usable (the
/// checkpoint before it put everything in the file): compaction's failed cut of the file's end
/// poisons nothing (`Pager::truncate`), yet every later write failed "an earlier I/O error left
/// it unusable". A later cut that works takes the file to its length.
#[test]
fn a_failed_cut_of_the_file_leaves_the_log_usable() {
    let refuse = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let refusing = refuse.clone();
    let (m, l) = pair();
    let main = Arc::new(HookedSetLen {
        inner: m.clone(),
        hook: move |inner: &MemoryStorage, len| {
            if len < inner.len()? && refusing.load(Ordering::Acquire) {
                return Err(io::Error::other("injected: the cut fails"));
            }
            inner.set_len(len)
        },
    });
    let w = WalStorage::open(main.clone(), Arc::new(l.clone()), 1000, None).unwrap();
    for pg in 2..10 {
        w.write_at(pg * P, &page(pg as u8)).unwrap();
    }
    w.sync().unwrap();
    assert!(w.set_len(6 * P).is_err());
    assert_eq!(fill_of(&w, 5), Some(5), "what the file holds still reads");
    w.write_at(3 * P, &page(30)).unwrap();
    w.sync().expect("a write and a sync after the failed cut");
    assert_eq!(fill_of(&w, 3), Some(30));
    refuse.store(false, Ordering::Release);
    w.set_len(6 * P).unwrap();
    assert_eq!(w.len().unwrap(), 6 * P);
    assert_eq!(m.len().unwrap(), 6 * P);
    assert_eq!((fill_of(&w, 3), fill_of(&w, 5)), (Some(30), Some(5)));
}

/// A log whose directory cannot be synced (here: it does not exist) may lose its name in a
/// crash, and every commit logged in it with it: the session logs nothing, and each sync puts
/// the pages in the file itself.
#[test]
fn a_log_whose_directory_cannot_be_synced_logs_nothing() {
    let (m, l) = pair();
    let path = std::path::PathBuf::from("/nonexistent-foldvault-dir/db.fvwal");
    let w = WalStorage::open(Arc::new(m.clone()), Arc::new(l.clone()), 1000, Some(path)).unwrap();
    for (pg, fill) in [(5u64, 7u8), (6, 8), (5, 9)] {
        w.write_at(pg * P, &page(fill)).unwrap();
        w.sync().unwrap();
        assert_eq!(w.logged_pages(), 0, "a group was logged");
        let mut b = vec![0u8; PAGE];
        m.read_at(pg * P, &mut b).unwrap();
        assert!(b.iter().all(|x| *x == fill), "page {pg} is not in the file after its sync");
    }
    assert_eq!((fill_of(&w, 5), fill_of(&w, 6)), (Some(9), Some(8)));
    crash(w);
    let w = open(&m, &l, 1000);
    assert_eq!((fill_of(&w, 5), fill_of(&w, 6)), (Some(9), Some(8)));
}

/// The log's groups name the database's length, at most 2^40 bytes (replay refuses more). A
/// database past it logs nothing (its commits would be refused at replay: lost), and one that
/// grows past it goes on, writing to the file (it failed with `InvalidInput`, poisoning the
/// handle). Sparse files on disk.
#[test]
fn a_database_past_the_logs_largest_length_writes_to_the_file() {
    use crate::storage::FileStorage;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big");
    let main = FileStorage::open(&path, true).unwrap();
    main.write_at(0, &[0xF0; 2 * PAGE]).unwrap();
    main.sync().unwrap();
    let main: Arc<dyn Storage> = Arc::new(main);
    let l = MemoryStorage::new();
    // Growing past it: the write, and the ones after, go to the file.
    let w = WalStorage::open(main.clone(), Arc::new(l.clone()), 1000, None).unwrap();
    w.write_at(2 * P, &page(3)).unwrap();
    w.write_at(MAX_LEN, &page(4)).unwrap();
    w.sync().unwrap();
    w.write_at(5 * P, &page(5)).unwrap();
    w.sync().unwrap();
    assert_eq!(w.logged_pages(), 0);
    crash(w);
    let read = |at: u64| {
        let mut b = vec![0u8; PAGE];
        main.read_at(at, &mut b).unwrap();
        b.iter().all(|x| *x == b[0]).then_some(b[0])
    };
    assert_eq!((read(2 * P), read(MAX_LEN), read(5 * P)), (Some(3), Some(4), Some(5)));
    // Open past it: nothing is logged, and a crash loses no synced write.
    let w = WalStorage::open(main.clone(), Arc::new(l.clone()), 1000, None).unwrap();
    w.write_at(6 * P, &page(6)).unwrap();
    w.sync().unwrap();
    assert_eq!(w.logged_pages(), 0);
    crash(w);
    let w = WalStorage::open(main.clone(), Arc::new(l), 1000, None).unwrap();
    assert_eq!((fill_of(&w, 6), fill_of(&w, 5)), (Some(6), Some(5)));
}
