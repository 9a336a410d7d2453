//! What a durable commit's write pattern costs on this machine's disk, independent of the
//! engine: the time of `fdatasync` after writing the pages of one commit laid out in different
//! ways, in a 20 MB file (the size of the random16 benchmark's database).
//!
//! `cargo run --release --example fsync_patterns`
//!
//! It backs the note in BENCHMARKS.md on durable 1-record commits: foldvault writes 6 pages
//! (leaf, branch, root, catalog, free list, commit record) as 4-5 separate runs; the cost
//! falls with the number of runs, not with the number of `pwrite` calls, and the floor (leaf
//! and commit record only) is within about 30% of today's pattern; one contiguous run and the
//! record, and the record alone, bound what any placement of the pages could save. The second
//! and third lines are a placement tried in the seventh session and not kept (root, catalog and
//! free list as one run, anywhere, or in a zone beside record B for every other commit;
//! BENCHMARKS.md says why). "catalog and free list inline" (eighth session) is a commit
//! record that would carry both, not built: the write-ahead log (SPEC §15) took their place.
//! The last two
//! lines simulate a commit log (one appended run per commit, checkpoints now and then), the
//! design that would close the gap to SQLite's WAL: what it would save before any of it is
//! built.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use foldvault::fuzzing::Rng;

const PAGE: u64 = 4096;
const PAGES: u64 = 4700;
/// Pages past the database kept for the simulated commit log (200 commits of 6 pages).
const LOG_PAGES: u64 = 1200;

fn main() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(dir.path().join("probe"))?;
    let mut rng = Rng(3);
    let mut fill = vec![0u8; (64 * PAGE) as usize];
    for chunk in 0..(PAGES + LOG_PAGES).div_ceil(64) {
        rng.fill(&mut fill);
        f.write_all_at(&fill, chunk * 64 * PAGE)?;
    }
    f.sync_all()?;
    let page = vec![0x5au8; PAGE as usize];
    // Each pattern: the pages one commit writes, given a random source and the commit's parity
    // (the record alternates between slots 2 and 3).
    type Pattern = fn(&mut Rng, u64) -> Vec<u64>;
    let patterns: [(&str, Pattern); 11] = [
        ("today: leaf, branch, root, catalog+free list, record", |r, s| {
            vec![400 + r.below(4200), 10 + r.below(390), 4 + 3 * s, 4580 + 2 * s, 4581 + 2 * s, 2 + s]
        }),
        ("leaf, branch, root+catalog+free list in one run, record", |r, s| {
            let at = 4400 + r.below(150);
            vec![400 + r.below(4200), 10 + r.below(390), at, at + 1, at + 2, 2 + s]
        }),
        ("leaf, branch, root+catalog+free list at 4-6 or 7-9, record in 3 or 2", |r, s| {
            let at = if s == 1 { 4 } else { 7 };
            vec![400 + r.below(4200), 10 + r.below(390), at, at + 1, at + 2, 2 + s]
        }),
        ("no free-list page", |r, s| vec![400 + r.below(4200), 10 + r.below(390), 4 + 3 * s, 4580 + 2 * s, 2 + s]),
        ("no free list, catalog+root next to the record", |r, s| {
            vec![400 + r.below(4200), 10 + r.below(390), 4 + 2 * s, 5 + 2 * s, 2 + s]
        }),
        ("leaf, branch, root, record (catalog and free list inline)", |r, s| {
            vec![400 + r.below(4200), 10 + r.below(390), 4 + 3 * s, 2 + s]
        }),
        ("record, catalog, root in one run", |r, _| vec![400 + r.below(4200), 10 + r.below(390), 3, 4, 5]),
        ("leaf, branch, record", |r, s| vec![400 + r.below(4200), 10 + r.below(390), 2 + s]),
        ("leaf and record only", |r, s| vec![400 + r.below(4200), 2 + s]),
        ("one run of five pages anywhere, and the record", |r, s| {
            let at = 10 + r.below(4500);
            vec![at, at + 1, at + 2, at + 3, at + 4, 2 + s]
        }),
        ("the record alone", |_, s| vec![2 + s]),
    ];
    let reps = 500u64;
    for round in 0..2 {
        println!("round {}", round + 1);
        for (name, pattern) in &patterns {
            let t = Instant::now();
            for i in 0..reps {
                for p in pattern(&mut rng, i % 2) {
                    f.write_all_at(&page, p * PAGE)?;
                }
                f.sync_data()?;
            }
            println!("  {:>7.1} us per commit  {name}", t.elapsed().as_secs_f64() * 1e6 / reps as f64);
        }
        // A commit log, simulated (not built): each commit appends its 6 pages in one run to a
        // log region and syncs; every `every` commits a checkpoint writes `home` scattered pages
        // (the distinct pages the commits since touched) and a record, and syncs once more.
        for (every, home) in [(50u64, 150u64), (200, 400)] {
            let t = Instant::now();
            for i in 0..reps * 2 {
                let at = PAGES + (i % every) * 6;
                for p in at..at + 6 {
                    f.write_all_at(&page, p * PAGE)?;
                }
                f.sync_data()?;
                if i % every == every - 1 {
                    let mut pages: Vec<u64> = (0..home).map(|_| 4 + rng.below(PAGES - 4)).collect();
                    pages.sort_unstable();
                    for p in pages {
                        f.write_all_at(&page, p * PAGE)?;
                    }
                    f.write_all_at(&page, 2 * PAGE)?;
                    f.sync_data()?;
                }
            }
            println!(
                "  {:>7.1} us per commit  commit log (simulated): one run of 6 pages, checkpoint of {home} pages every {every}",
                t.elapsed().as_secs_f64() * 1e6 / (reps * 2) as f64
            );
        }
    }
    Ok(())
}
