//! Unit tests of the fault-injecting storage (`fault.rs`): the faults each plan injects and
//! the crash images each model makes.

use super::*;

/// The write a `crash_at` power loss interrupted may survive whole, in part or not at all;
/// an unsynced length change may be lost while a later write survives.
#[test]
fn the_interrupted_write_and_a_lone_length_change_may_survive_or_not() {
    let s = FaultyStorage::new();
    s.write_at(0, &[1; 4096]).unwrap();
    s.sync().unwrap();
    s.set_len(3 * 4096).unwrap();
    s.write_at(4096, &[2; 512]).unwrap();
    s.set_plan(FaultPlan { crash_at: Some(1), ..FaultPlan::default() });
    assert!(s.write_at(8192, &[3; 4096]).is_err());
    assert_eq!(s.live_image().len(), 3 * 4096, "the interrupted write is not in the live image");
    let images: Vec<Vec<u8>> = (0..512).map(|seed| s.crash_image(&CrashModel::TearUnsynced { seed })).collect();
    let third = |i: &Vec<u8>| i.get(8192..12288).map(|b| b.iter().filter(|&&x| x == 3).count()).unwrap_or(0);
    assert!(images.iter().any(|i| third(i) == 4096), "whole");
    assert!(images.iter().any(|i| (1..4096).contains(&third(i))), "in part");
    assert!(images.iter().any(|i| third(i) == 0), "not at all");
    assert!(images.iter().any(|i| i.len() == 4096 + 512), "the extension lost, the later write kept");
    assert!(images.iter().any(|i| i.len() == 3 * 4096), "the extension kept");
}

/// A device with `base` durable, then `writes` (offset, length, byte) not yet synced.
fn device(base: Vec<u8>, writes: &[(usize, usize, u8)]) -> FaultyStorage {
    let s = FaultyStorage::from_bytes(base);
    for &(off, len, byte) in writes {
        s.write_at(off as u64, &vec![byte; len]).unwrap();
    }
    s
}

/// Length of the run of `byte` starting at `off` in `img`.
fn run(img: &[u8], off: usize, byte: u8) -> usize {
    img[off.min(img.len())..].iter().take_while(|&&b| b == byte).count()
}

fn kind(r: io::Result<()>) -> io::ErrorKind {
    r.unwrap_err().kind()
}

fn plan(fail_at: Option<u64>, persistent: bool, spare_reads: bool) -> FaultPlan {
    FaultPlan { fail_at, persistent, spare_reads, ..FaultPlan::default() }
}

/// A write failed with `torn_failed_writes` leaves a 512-byte-aligned prefix of itself, over
/// seeds none, a part and all of it, in the live image and unsynced (lost at a power loss);
/// without the flag it leaves nothing.
#[test]
fn a_failed_write_may_leave_a_prefix() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..64 {
        let s = FaultyStorage::from_bytes(vec![0; 4096]);
        s.set_plan(FaultPlan { fail_at: Some(1), seed, torn_failed_writes: true, ..FaultPlan::default() });
        assert!(s.write_at(0, &[9; 2048]).is_err());
        let live = s.live_image();
        let kept = run(&live, 0, 9);
        assert_eq!(kept % SECTOR, 0);
        assert!(kept <= 2048 && live[kept..].iter().all(|&b| b == 0));
        assert_eq!(run(&s.crash_image(&CrashModel::LoseUnsynced), 0, 0), 4096, "the prefix is unsynced");
        seen.insert(kept);
    }
    assert!(seen.contains(&0) && seen.contains(&2048) && seen.len() > 2, "{seen:?}");
    let s = FaultyStorage::from_bytes(vec![0; 4096]);
    s.set_plan(plan(Some(1), false, false));
    assert!(s.write_at(0, &[9; 2048]).is_err());
    assert_eq!(run(&s.live_image(), 0, 0), 4096);
}

/// Regression: a failed sync left its writes pending, and the next sync that succeeded
/// made them durable. Linux marks a failed writeback's pages clean: what did not reach
/// the disk then never does, though reads still see it. Over seeds, some write of the
/// failed sync is missing from the durable image after a later successful sync, and some
/// other reaches it; the live image has them all.
#[test]
fn a_failed_sync_is_not_rescued_by_the_next() {
    let (mut lost, mut kept) = (0, 0);
    for seed in 0..64 {
        let s = FaultyStorage::new();
        s.write_at(0, &[1; 1024]).unwrap();
        s.sync().unwrap();
        s.set_plan(FaultPlan { fail_at: Some(2), seed, ..FaultPlan::default() });
        s.write_at(0, &[2; 1024]).unwrap();
        assert!(s.sync().is_err());
        s.write_at(2048, &[3; 512]).unwrap();
        s.sync().unwrap();
        let d = s.durable_image();
        assert_eq!(s.live_image()[..1024], [2; 1024]);
        assert_eq!(d[2048..], [3; 512], "the write after the failure is synced");
        if d[1023] == 1 { lost += 1 } else { kept += 1 }
    }
    assert!(lost > 0 && kept > 0, "lost {lost}, kept {kept}");
}

/// A failed sync may leave a hole: a later sector of a write on the disk and an earlier one
/// not (a writeback that failed wrote some dirty pages, in any order). Each write reached the
/// disk whole, as a prefix or not at all.
#[test]
fn a_failed_sync_may_keep_a_later_sector_and_lose_an_earlier_one() {
    let mut hole = false;
    for seed in 0..64 {
        let s = FaultyStorage::new();
        s.write_at(0, &[1; 2048]).unwrap();
        s.sync().unwrap();
        s.set_plan(FaultPlan { fail_at: Some(2), seed, ..FaultPlan::default() });
        s.write_at(0, &[2; 2048]).unwrap();
        assert!(s.sync().is_err());
        let d = s.durable_image();
        for sector in d[..2048].chunks(SECTOR) {
            assert!(sector.iter().all(|&b| b == sector[0]), "a sector is whole or absent");
        }
        hole |= d[0] == 1 && d[1536] == 2;
    }
    assert!(hole, "no failed sync kept sector 3 without sector 0");
}

/// Tears fall on the device's sector boundaries, not at multiples of 512 from a write's start:
/// a write at 400 of 200 bytes may keep 400..512 and lose 512..600.
#[test]
fn a_tear_falls_on_the_devices_sector_boundaries() {
    let s = device(vec![0; 1024], &[(400, 200, 9)]);
    let mut split = false;
    for seed in 0..64 {
        for model in [CrashModel::TearUnsynced { seed }, CrashModel::ScatterUnsynced { seed }] {
            let img = s.crash_image(&model);
            let kept = run(&img, 400, 9);
            assert!([0, 112, 200].contains(&kept), "{kept} bytes kept under {model:?}");
            split |= kept == 112;
        }
    }
    assert!(split, "no crash kept 400..512 alone");
}

/// A process stop fails every operation from it on and keeps the unsynced writes, which
/// the next process's sync makes durable.
#[test]
fn a_process_stop_keeps_the_unsynced_writes_for_the_next_sync() {
    let s = FaultyStorage::new();
    s.write_at(0, &[1; 512]).unwrap();
    s.set_plan(FaultPlan { stop_at: Some(1), ..FaultPlan::default() });
    assert!(s.sync().is_err() && s.write_at(0, &[2; 512]).is_err());
    assert!(s.durable_image().is_empty());
    s.set_plan(FaultPlan::default());
    s.sync().unwrap();
    assert_eq!(s.durable_image(), vec![1; 512]);
}

const TEAR7: CrashModel = CrashModel::TearUnsynced { seed: 7 };

#[test]
fn round_trip_sync_and_clones() {
    let s = FaultyStorage::new();
    let other = s.clone();
    s.write_at(3, b"abc").unwrap();
    let mut buf = [9u8; 6];
    other.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"\0\0\0abc");
    assert_eq!(kind(s.read_at(4, &mut buf)), io::ErrorKind::UnexpectedEof);
    assert_eq!((s.live_image().len(), s.durable_image().len()), (6, 0));
    s.sync().unwrap();
    assert_eq!(s.durable_image(), b"\0\0\0abc");
    s.set_len(2).unwrap();
    assert_eq!(s.len().unwrap(), 2);
    assert_eq!(s.durable_image().len(), 6);
    assert_eq!((other.sync_count(), other.op_count()), (1, 6));
    assert_eq!(kind(s.write_at(1 << 40, b"x")), io::ErrorKind::InvalidInput);
    assert_eq!(kind(s.set_len(u64::MAX)), io::ErrorKind::InvalidInput);
    assert_eq!(s.crash_image(&TEAR7).len(), 2);
}

#[test]
fn lose_unsynced_returns_durable_image() {
    let s = device(vec![1; 4096], &[(0, 1024, 2), (8192, 512, 3)]);
    s.set_len(100).unwrap();
    assert_eq!(s.crash_image(&CrashModel::LoseUnsynced), vec![1; 4096]);
    let r = s.reboot(&CrashModel::LoseUnsynced);
    assert_eq!(r.live_image(), vec![1; 4096]);
    assert_eq!(r.durable_image(), vec![1; 4096]);
    assert_eq!((r.op_count(), r.crashed()), (0, false));
}

#[test]
fn tear_cuts_each_write_at_sector_boundaries() {
    let writes = [(100, 2000, 0xAA), (3000, 1536, 0xBB), (8192, 1024, 0xCC)];
    let s = device(vec![0; 8192], &writes);
    let (mut saw_none, mut saw_all) = (false, false);
    for seed in 0..200 {
        let img = s.crash_image(&CrashModel::TearUnsynced { seed });
        assert_eq!(img, s.crash_image(&CrashModel::TearUnsynced { seed }));
        for &(off, len, byte) in &writes {
            let cut = run(&img, off, byte);
            assert!((off + cut).is_multiple_of(SECTOR) || cut == 0 || cut == len, "{cut} at {off}");
            let rest = img.iter().skip(off + cut).take(len - cut);
            assert!(rest.into_iter().all(|&b| b == 0));
            saw_none |= cut == 0;
            saw_all |= cut == len;
        }
        assert_eq!(img.len(), 8192 + run(&img, 8192, 0xCC));
    }
    assert!(saw_none && saw_all);
    // Length changes are replayed in order.
    s.set_len(1024).unwrap();
    assert_eq!(s.crash_image(&TEAR7).len(), 1024);
}

/// A scattered write can keep a later sector and lose an earlier one (a torn prefix never
/// does), and keeps only bytes it wrote.
#[test]
fn scatter_can_keep_a_later_sector_and_lose_an_earlier_one() {
    let s = device(vec![0; 8192], &[(0, 2048, 7)]);
    let mut later_only = false;
    for seed in 0..64 {
        let img = s.crash_image(&CrashModel::ScatterUnsynced { seed });
        assert_eq!(img, s.crash_image(&CrashModel::ScatterUnsynced { seed }));
        assert!(img.iter().all(|&b| b == 0 || b == 7));
        for sector in img[..2048].chunks(SECTOR) {
            assert!(sector.iter().all(|&b| b == sector[0]), "a sector is whole or absent");
        }
        later_only |= img[0] == 0 && img[1536] == 7;
    }
    assert!(later_only);
}

#[test]
fn reorder_applies_some_none_or_all_in_any_order() {
    let writes = [(0, 1024, 1), (2048, 1024, 2), (4096, 1024, 3)];
    let s = device(vec![0; 8192], &writes);
    let (mut none, mut some, mut all) = (0, 0, 0);
    for seed in 0..300 {
        let img = s.crash_image(&CrashModel::ReorderUnsynced { seed });
        assert_eq!(img.len(), 8192);
        let cuts: Vec<usize> = writes.iter().map(|w| run(&img, w.0, w.2)).collect();
        assert!(cuts.iter().all(|c| c.is_multiple_of(SECTOR)));
        assert!(cuts.iter().filter(|&&c| c != 0 && c != 1024).count() <= 1);
        match cuts.iter().filter(|&&c| c > 0).count() {
            0 => none += 1,
            3 => all += 1,
            _ => some += 1,
        }
    }
    assert!(none > 0 && some > 0 && all > 0, "{none} {some} {all}");

    // Overlapping writes: either one may end up on top.
    let s = device(vec![0; 512], &[(0, 512, 0xA), (0, 512, 0xB)]);
    let imgs: Vec<u8> = (0..100).map(|seed| s.crash_image(&CrashModel::ReorderUnsynced { seed })[0]).collect();
    assert!(imgs.contains(&0xA) && imgs.contains(&0xB) && imgs.contains(&0));

    // A write later truncated away never comes back; the truncation always applies.
    let s = device(vec![1; 4096], &[(2048, 2048, 2)]);
    s.set_len(1024).unwrap();
    s.write_at(0, &[3; 512]).unwrap();
    for seed in 0..50 {
        let img = s.crash_image(&CrashModel::ReorderUnsynced { seed });
        assert_eq!(img.len(), 1024);
        assert!(img.iter().all(|&b| b == 1 || b == 3));
    }
}

fn is_fault(r: io::Result<()>, msg: &str) -> bool {
    r.is_err_and(|e| e.kind() == io::ErrorKind::Other && e.to_string() == msg)
}

#[test]
fn fail_at_once_and_persistent() {
    let s = FaultyStorage::new();
    s.set_plan(plan(Some(2), false, false));
    s.write_at(0, b"a").unwrap();
    assert!(is_fault(s.write_at(0, b"b"), FAULT_MSG));
    s.sync().unwrap();
    assert_eq!((s.live_image(), s.durable_image()), (b"a".to_vec(), b"a".to_vec()));

    s.set_plan(plan(Some(2), true, false));
    s.write_at(0, b"c").unwrap();
    assert!(is_fault(s.sync(), FAULT_MSG));
    assert!(is_fault(s.set_len(0), FAULT_MSG));
    assert!(is_fault(s.read_at(0, &mut [0]), FAULT_MSG));
    assert!(s.len().is_err());
    assert_eq!((s.op_count(), s.sync_count()), (5, 1));
    // The failed sync wrote "c" or not (the plan's seed decides), and forgot it.
    assert!(s.durable_image() == b"a" || s.durable_image() == b"c");

    s.set_plan(plan(Some(1), true, true));
    s.read_at(0, &mut [0]).unwrap();
    assert_eq!(s.len().unwrap(), 1);
    assert!(is_fault(s.write_at(0, b"d"), FAULT_MSG));
    assert!(!s.crashed());
}

#[test]
fn crash_at_loses_power() {
    let s = FaultyStorage::new();
    s.set_plan(FaultPlan { crash_at: Some(4), ..plan(None, false, false) });
    s.write_at(0, &[1; 512]).unwrap();
    s.sync().unwrap();
    s.write_at(512, &[2; 512]).unwrap();
    assert!(!s.crashed());
    assert!(is_fault(s.write_at(1024, &[3; 512]), POWER_LOSS_MSG));
    assert!(s.crashed());
    assert!(is_fault(s.read_at(0, &mut [0]), POWER_LOSS_MSG));
    s.set_plan(FaultPlan::default());
    assert!(s.crashed() && s.sync().is_err());
    assert_eq!(s.live_image().len(), 1024);
    let r = s.reboot(&CrashModel::LoseUnsynced);
    assert_eq!(r.live_image(), vec![1; 512]);
    r.write_at(512, b"ok").unwrap();
    assert_eq!((r.crashed(), s.live_image().len()), (false, 1024));
}

/// A plan goes to the device named (none, if there is no such device) and clears the
/// others'; the log shares the file's cut lock, so an observer of either holds both.
#[test]
fn devices_plan_on_one_and_cut_together() {
    let crash = FaultPlan { crash_at: Some(1), ..FaultPlan::default() };
    let alone = FaultyDevices::new(false);
    alone.plan_on(0, &crash);
    alone.plan_on(1, &crash);
    alone.main.write_at(0, b"x").unwrap();
    assert!(!alone.main.crashed(), "no log: a plan for the log arms nothing and clears the file's");
    let both = FaultyDevices::from_images((vec![1; 512], Some(vec![2; 512])));
    both.plan_on(0, &crash);
    both.plan_on(1, &crash);
    both.main.write_at(0, b"x").unwrap();
    assert!(both.log.as_ref().is_some_and(|l| l.write_at(0, b"y").is_err()), "the log takes the plan");
    assert_eq!(both.durable_images(), (vec![1; 512], Some(vec![2; 512])));
    assert!(both.log.as_ref().is_some_and(|l| Arc::ptr_eq(&l.cut, &both.main.cut)));
    let rebooted = both.reboot(&CrashModel::LoseUnsynced);
    assert_eq!(rebooted.live_images(), both.durable_images());
    assert!(rebooted.iter().all(|d| !d.crashed()));
}
