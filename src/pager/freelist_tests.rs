//! Unit tests of the durable free list (`freelist.rs`).

use super::*;

use std::collections::BTreeSet;
use std::sync::Arc;

/// A chain page (sealed, so it authenticates) that records one of the chain's own pages, or
/// a page twice, is refused: either would hand a page in use to the allocator.
#[test]
fn a_chain_that_records_its_own_page_or_a_page_twice_is_refused() {
    let pager = Pager::new(Arc::new(MemoryStorage::new()), PageSealer::plaintext(*b"freelist-forged!"), 1 << 20);
    pager.set_page_limit(100);
    let chain_page = |page: PageNo, extents: &[(u64, u32)]| {
        let mut buf = Box::new([0u8; crate::format::PAGE_SIZE]);
        write_header(&mut buf[..], PageKind::FreeList, extents.len() as u16, 1);
        PageRef::NONE.encode(&mut buf[NEXT_OFFSET..]);
        for (j, &(start, len)) in extents.iter().enumerate() {
            crate::format::put_u64(&mut buf[..], EXTENTS_OFFSET + j * EXTENT_SIZE, start);
            crate::format::put_u32(&mut buf[..], EXTENTS_OFFSET + j * EXTENT_SIZE + 8, len);
        }
        let tag = pager.write(page, 0, buf).expect("write");
        PageRef { page, tag, generation: 1 }
    };
    let reason = |r: Result<(Vec<(PageNo, u32)>, Vec<PageNo>)>| match r {
        Err(Error::Corrupt { page, reason }) => (page, reason),
        other => panic!("{other:?}"),
    };
    let (free, chain) = read(&pager, chain_page(10, &[(20, 3), (5, 2)]), 100).unwrap();
    assert_eq!((free, chain), (vec![(5, 2), (20, 3)], vec![10]));
    // Adjacent extents come back joined; a huge one is read as one (no page listed).
    let (free, _) = read(&pager, chain_page(13, &[(30, 4), (20, 10)]), 100).unwrap();
    assert_eq!(free, vec![(20, 14)]);
    pager.set_page_limit(1 << 40);
    let (free, _) = read(&pager, chain_page(14, &[(100, u32::MAX)]), 1 << 40).unwrap();
    assert_eq!(free, vec![(100, u32::MAX)]);
    pager.set_page_limit(100);
    assert_eq!(reason(read(&pager, chain_page(11, &[(9, 4)]), 100)), (11, CorruptReason::FreeList));
    assert_eq!(reason(read(&pager, chain_page(12, &[(20, 5), (23, 3)]), 100)), (23, CorruptReason::DoubleReference));
}

use crate::crypto::seal::PageSealer;
use crate::format::commit::CommitRecord;
use crate::storage::MemoryStorage;

/// A pager in memory and an allocator with a fragmented start: every other page of
/// 4..3004 free (1,500 lone pages), so the list spans several pages.
fn fragmented() -> (Pager, Allocator) {
    let pager = Pager::new(Arc::new(MemoryStorage::new()), PageSealer::plaintext(*b"freelist-model!!"), 1 << 20);
    let page_count = FIRST_DATA_PAGE + 3000;
    let free: Vec<PageNo> = (FIRST_DATA_PAGE..page_count).filter(|p| p % 2 == 0).collect();
    (pager, Allocator::new(page_count, &extents(&free)))
}

/// The engine's use of the allocator and the free list, driven by `ops`: transactions that
/// allocate pages and commit or abort, commits that free live pages, readers that hold
/// freed pages back, epoch changes, durable commits, and compaction's trim of the free pages
/// that end the file before a durable commit. After every durable commit the
/// chain read back from disk, with the delta its record would carry (up to `room` pages),
/// must record exactly the allocator's unused pages, its pages must be those `FreeChain`
/// names, and live, unused and chain pages must partition the file.
fn run_model(ops: &[(u8, u16)], room: usize) {
    let (pager, mut alloc) = fragmented();
    let mut live: BTreeSet<PageNo> = (FIRST_DATA_PAGE..alloc.page_count).filter(|p| p % 2 == 1).collect();
    let mut chain = FreeChain::default();
    let (mut seq, mut durable, mut oldest, mut epoch) = (1u64, 0u64, 1u64, 0u32);
    let mut pick = 0usize;
    for &(op, arg) in ops {
        let arg = arg as usize;
        match op % 7 {
            0 | 1 => {
                // A transaction allocating pages; every fourth one aborts.
                alloc.promote(durable, oldest);
                let pages: Vec<PageNo> = (0..arg % 40 + 1).map(|_| alloc.alloc()).collect();
                if arg.is_multiple_of(4) {
                    pages.into_iter().for_each(|p| alloc.give_back(p));
                } else {
                    seq += 1;
                    live.extend(pages);
                }
            }
            2 => {
                // A commit freeing live pages.
                seq += 1;
                let mut freed = Vec::new();
                for _ in 0..arg % 50 + 1 {
                    pick = pick.wrapping_mul(31).wrapping_add(arg + 7);
                    // From 900 on: the highest live page, so that runs of frees join up.
                    let at = if arg >= 900 { live.len().saturating_sub(1) } else { pick % live.len().max(1) };
                    if let Some(&p) = live.iter().nth(at) {
                        live.remove(&p);
                        freed.push(p);
                    }
                }
                alloc.release(seq, freed);
            }
            3 => oldest = if arg.is_multiple_of(3) { oldest } else { seq },
            4 if arg.is_multiple_of(16) => epoch += 1,
            _ => {
                if op % 7 == 6 {
                    // Compaction's trim (`Db::compact`): the free pages that end the file
                    // are given up, and the list is written whole below the new end.
                    alloc.promote(durable, oldest);
                    alloc.trim_free_tail(whole_list_pages(&alloc, &chain));
                    alloc.forget_unused_since();
                    assert!(live.iter().all(|&p| p < alloc.page_count), "a live page was cut");
                }
                let (head, _) = write(&pager, &mut alloc, seq, epoch, &mut chain, room).expect("write");
                alloc.mark_durable();
                durable = seq;
                pager.raise_page_limit(alloc.page_count);
                assert!(chain.delta().len() <= room, "the delta fits its room");
                // The delta as the record carries it: encoded and decoded with the record's
                // page count (a page past it would make the record fail to decode).
                let rec = CommitRecord {
                    seq,
                    page_count: alloc.page_count,
                    free_delta: chain.delta().clone(),
                    ..CommitRecord::default()
                };
                let mut payload = vec![0u8; PAYLOAD_SIZE];
                rec.encode(&mut payload);
                let rec = CommitRecord::decode(&payload, 2, crate::format::FORMAT_VERSION).expect("record decodes");
                let (free, pages) = read(&pager, head, alloc.page_count).expect("read back");
                let free = apply_delta(free, &pages, &rec.free_delta, 2).expect("the delta applies");
                let pages_of = |e: Vec<(PageNo, u32)>| -> BTreeSet<PageNo> {
                    e.into_iter().flat_map(|(s, n)| s..s + u64::from(n)).collect()
                };
                let free = pages_of(free);
                let unused = pages_of(alloc.all_unused());
                assert_eq!(free, unused, "the list records the unused pages");
                // `Metrics::free_pages` counts them without building the list: `free` and
                // the queued pages must never overlap.
                assert_eq!(alloc.unused_count(), free.len() as u64, "the counted unused pages");
                assert_eq!(pages, chain.pages().collect::<Vec<_>>(), "the chain is the one kept");
                let chain_pages: BTreeSet<PageNo> = pages.iter().copied().collect();
                assert_eq!(chain_pages.len(), pages.len(), "no chain page twice");
                assert!(chain_pages.is_disjoint(&free) && chain_pages.is_disjoint(&live) && free.is_disjoint(&live));
                assert_eq!(live.len() + free.len() + pages.len(), (alloc.page_count - FIRST_DATA_PAGE) as usize);
            }
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    #[test]
    fn chain_records_exactly_the_unused_pages(
        ops in proptest::collection::vec((0u8..7, 0u16..1000), 1..120),
        room in proptest::prop_oneof![proptest::strategy::Just(0usize), 1usize..64, proptest::strategy::Just(crate::format::commit::MAX_DELTA_PAGES)],
    ) {
        run_model(&ops, room);
    }
}

#[test]
fn many_frees_between_durable_writes() {
    // More pages freed between two durable writes than the allocator tracks one by one
    // (`UNUSED_SINCE_MAX`): the list is written whole, and still exactly.
    let mut ops: Vec<(u8, u16)> = vec![(5, 1)];
    ops.extend([(1u8, 39u16); 150]);
    ops.extend([(5, 1), (0, 39), (5, 1)]);
    ops.extend([(2u8, 949u16); 120]);
    ops.extend([(5, 1), (1, 3), (2, 2), (5, 1), (0, 5), (5, 1)]);
    for room in [0, 40, crate::format::commit::MAX_DELTA_PAGES] {
        run_model(&ops, room);
    }
}

/// Compaction's trim keeps `whole_list_pages` free pages for the whole list it writes next,
/// and gives up the rest of the free pages that end the file. That write releases the old
/// chain and records its pages, each an extent of its own when it lies between pages in
/// use: counted too, the list fits the pages kept. Counting only the unused pages' extents,
/// a chain of more than `EXTENTS_PER_PAGE` such pages (here 337, recording 112,556 pages a
/// reader holds) took pages past the trimmed end, lengthening the file the trim shortened.
#[test]
fn the_whole_list_after_a_trim_fits_the_free_pages_the_trim_kept() {
    let dir = tempfile::tempdir().expect("temporary directory");
    // A sparse file: only the chain's pages are written.
    let storage = crate::storage::FileStorage::open(&dir.path().join("trim"), true).expect("file");
    let pager = Pager::new(Arc::new(storage), PageSealer::plaintext(*b"freelist-trim!!!"), 1 << 20);
    let per_page = EXTENTS_PER_PAGE as u64;
    // `held` lone pages a reader holds, a number that with the tail's extent fills whole
    // chain pages; `first_chain` lone free pages at the start, which the first list takes
    // for its chain; then a free tail.
    let m = per_page + 3;
    let held = per_page * m - 2;
    // (The first write takes as many pages as the whole list, its own pages included, would
    // need: the fixed point.)
    let mut first_chain = 0;
    while first_chain < (held + 1 + first_chain).div_ceil(per_page) {
        first_chain += 1;
    }
    let held_from = FIRST_DATA_PAGE + 2 * first_chain;
    let tail_from = held_from + 2 * held;
    let page_count = tail_from + 1000;
    let lone_free: Vec<(PageNo, u32)> = (0..first_chain).map(|i| (FIRST_DATA_PAGE + 2 * i, 1)).collect();
    let mut alloc = Allocator::new(page_count, &[lone_free.clone(), vec![(tail_from, 1000)]].concat());
    pager.set_page_limit(page_count);
    alloc.release(2, (0..held).map(|i| held_from + 2 * i).collect());
    alloc.promote(1, 1);
    let mut chain = FreeChain::default();
    write(&pager, &mut alloc, 2, 0, &mut chain, 0).expect("first write");
    alloc.mark_durable();
    let chain_pages: Vec<PageNo> = chain.pages().collect();
    assert_eq!(chain_pages.len() as u64, first_chain);
    assert!(chain_pages.iter().all(|p| lone_free.contains(&(*p, 1))), "the chain is on the lone pages");
    // The trim, as `Db::compact` makes it.
    alloc.promote(2, 1);
    let need = whole_list_pages(&alloc, &chain);
    assert!(alloc.free_len() >= need);
    assert!(alloc.trim_free_tail(need) > 0);
    let trimmed = alloc.page_count;
    alloc.forget_unused_since();
    write(&pager, &mut alloc, 3, 0, &mut chain, 0).expect("whole list");
    assert_eq!(alloc.page_count, trimmed, "the list took a page past the trimmed end");
    let (free, pages) = read(&pager, chain.head(), alloc.page_count).expect("read back");
    assert_eq!(free, alloc.all_unused());
    assert_eq!(pages, chain.pages().collect::<Vec<_>>());
}

#[test]
fn trim_after_freeing_the_end() {
    // The highest live pages freed and made durable, the list written whole (its last page
    // records them), a commit that changes only its head, then a trim: the list must lose
    // the extents past the new end, which the tail it would otherwise keep records.
    let ops = [(2, 949), (2, 949), (3, 1), (5, 1), (1, 3), (3, 1), (5, 1), (6, 0), (0, 5), (3, 1), (5, 1), (6, 0)];
    for room in [0, 40, crate::format::commit::MAX_DELTA_PAGES] {
        run_model(&ops, room);
    }
}

#[test]
fn steady_small_commits_rewrite_few_pages() {
    // Many one-record-like commits on a fragmented file: each durable commit rewrites a
    // page or two, not the whole list.
    let ops: Vec<(u8, u16)> =
        (0..600u16).map(|i| ([1u8, 2, 3, 5][i as usize % 4], i.wrapping_mul(7) % 5 + 1)).collect();
    for room in [0, 40, crate::format::commit::MAX_DELTA_PAGES] {
        run_model(&ops, room);
    }
    // Without a delta (format version 1) a page or two per commit; with the record's room
    // for one (version 2) a front only every few dozen commits.
    for (room, most) in [(0, 198 * 3), (crate::format::commit::MAX_DELTA_PAGES, 20)] {
        let (pager, mut alloc) = fragmented();
        let mut chain = FreeChain::default();
        let (_, first) = write(&pager, &mut alloc, 1, 0, &mut chain, room).expect("write");
        alloc.mark_durable();
        assert!(first >= 4, "1,500 lone pages take several list pages ({first})");
        let mut total = 0;
        for seq in 2..200u64 {
            alloc.promote(seq - 1, seq);
            let got: Vec<PageNo> = (0..4).map(|_| alloc.alloc()).collect();
            alloc.release(seq, got[..2].to_vec());
            let (_, written) = write(&pager, &mut alloc, seq, 0, &mut chain, room).expect("write");
            alloc.mark_durable();
            total += written;
        }
        assert!(total <= most, "{total} list pages written for 198 small commits with room {room}");
    }
}

#[test]
fn a_delta_that_does_not_match_its_chain_is_corrupt() {
    let chain_free = vec![(10, 3), (20, 1)];
    let chain_pages = [7];
    let d = |freed: Vec<PageNo>, used: Vec<PageNo>| FreeDelta { freed, used };
    assert_eq!(
        apply_delta(chain_free.clone(), &chain_pages, &d(vec![5, 30], vec![11]), 2).unwrap(),
        vec![(5, 1), (10, 1), (12, 1), (20, 1), (30, 1)]
    );
    for bad in [d(vec![], vec![13]), d(vec![12], vec![]), d(vec![7], vec![])] {
        let e = apply_delta(chain_free.clone(), &chain_pages, &bad, 3).unwrap_err();
        assert!(matches!(e, Error::Corrupt { page: 3, reason: CorruptReason::FreeList }), "{bad:?}: {e:?}");
    }
}

#[test]
fn extent_arithmetic() {
    let e = vec![(4, 3), (10, 5)];
    assert!(covers(&e, 6) && covers(&e, 14) && !covers(&e, 7) && !covers(&e, 3) && !covers(&e, 15));
    assert_eq!(without(&e, &[4, 12, 14]), vec![(5, 2), (10, 2), (13, 1)]);
    assert_eq!(without(&e, &[]), e);
    assert_eq!(union(&e, &[2, 7, 8, 15]), vec![(2, 1), (4, 5), (10, 6)]);
}

#[test]
fn extents_merge_runs() {
    assert_eq!(extents(&[4, 5, 6, 9, 11, 12]), vec![(4, 3), (9, 1), (11, 2)]);
    assert!(extents(&[]).is_empty());
}
