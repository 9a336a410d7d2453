//! `--interleaved`: the durable-commit rows and the read rows again, with every engine open in
//! one process and the work taken in turns, so that each engine's share of a row is measured
//! within the same second as the others'.
//!
//! Why: a durable commit costs about one `fdatasync`, and on this shared machine the latency of
//! `fdatasync` drifts by tens of per cent from minute to minute. The main table runs each engine
//! in its own child, minutes apart, so its commit rows carry that drift into their ratios (the
//! same cell has read 0.93 and 1.04 in two runs of the same code). Here each row is split into
//! `ROUNDS` blocks per engine; round `r` runs one block of every engine back to back (in an
//! order drawn for each round), and a ratio is the median over rounds of the ratio within a
//! round. A commit block ends with the engine's deferred work (`Kv::settle`), so that a log copy
//! it started does not run during the next engine's block. That makes foldvault and SQLite
//! copy their logs home once a block (a tenth of the row) where left alone they would do it
//! less often, and redb and sled defer nothing: each commit row is therefore given twice, with
//! the blocks' settles and with the commits alone (the settle timed apart and left out).
//!
//! The read rows: a read costs a few microseconds (a cache miss, one page opened), and the
//! drift between child processes minutes apart moves those rows too: the main table's
//! encrypted / plaintext ratio of random16 random reads (nearly all cache hits, no cipher work)
//! read 1.03 in the tenth session's full table and 1.34 in a run of the eleventh, on the same
//! read code.
//!
//! Order, on each engine's own fresh directory: bulk load of N (not timed), durable commits of
//! 1 record, removal of half the loaded records (not timed), durable commits of 1 again,
//! durable commits of 100 records, N random reads of live records, then every engine reopened
//! with a cache of a tenth of the live data and N random reads of live records again. The
//! records are the main table's (same seed and sets).

use std::time::Instant;

use super::engines::{Engine, Kv};
use super::{CACHE_BYTES, Dataset, Records, Rng, Sizes};

/// Blocks per row and engine.
pub const ROUNDS: usize = 10;

/// One row's measurements: for each engine (in the order given), the milliseconds of each
/// round's block.
pub struct Row {
    pub label: String,
    pub blocks: Vec<Vec<f64>>,
}

/// Runs the interleaved rows for `d` on `engines`; returns them in order.
pub fn run(engines: &[Engine], d: Dataset, sizes: Sizes, seed: u64) -> Vec<Row> {
    let rec = Records::generate(d, &sizes, seed);
    let mut rng = Rng(seed.wrapping_mul(31));
    let n = sizes.n;
    let small_rows = d == Dataset::Random16;
    let dirs: Vec<tempfile::TempDir> = engines
        .iter()
        .map(|_| tempfile::Builder::new().prefix("foldvault-peers-").tempdir().expect("tempdir"))
        .collect();
    let mut dbs: Vec<Box<dyn Kv>> =
        engines.iter().zip(&dirs).map(|(e, dir)| e.open(dir.path(), CACHE_BYTES, small_rows)).collect();
    let load = rec.pairs(&rec.loaded, 0..n, 0);
    for db in &mut dbs {
        db.write(&load, true);
        db.settle();
    }
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let removed: Vec<&[u8]> = order[..n / 2].iter().map(|&i| rec.loaded.get(i)).collect();

    let singles = rec.pairs(&rec.single, 0..rec.single.count(), 7);
    let after = rec.pairs(&rec.after_removal, 0..rec.after_removal.count(), 11);
    let mid = rec.pairs(&rec.mid, 0..rec.mid.count(), 17);
    let mut rows = Vec::new();
    rows.extend(commit_rows(format!("{} durable commits of 1", singles.len()), &mut dbs, &singles, 1));
    for db in &mut dbs {
        db.remove(&removed);
        db.settle();
    }
    rows.extend(commit_rows(format!("{} durable commits of 1, after the removal", after.len()), &mut dbs, &after, 1));
    let label = format!("{} durable commits of {}", mid.len() / sizes.mid_len.max(1), sizes.mid_len);
    rows.extend(commit_rows(label, &mut dbs, &mid, sizes.mid_len.max(1)));

    // Reads of live records: the loaded ones not removed and every one committed since.
    let live: Vec<(&[u8], &[u8])> = order[n / 2..]
        .iter()
        .map(|&i| load[i])
        .chain(singles.iter().copied())
        .chain(after.iter().copied())
        .chain(mid.iter().copied())
        .collect();
    let pick = |rng: &mut Rng| -> Vec<&[u8]> { (0..n).map(|_| live[rng.index(live.len())].0).collect() };
    let warm = pick(&mut rng);
    rows.push(Row { label: format!("{n} random reads"), blocks: reads_in_turns(&mut dbs, &warm) });
    let live_bytes: u64 = live.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
    let cold_cache = (live_bytes / 10).max(64 << 10);
    drop(dbs);
    let mut dbs: Vec<Box<dyn Kv>> =
        engines.iter().zip(&dirs).map(|(e, dir)| e.open(dir.path(), cold_cache, small_rows)).collect();
    let cold = pick(&mut rng);
    rows.push(Row {
        label: format!("{n} reads, cache = live data / 10 ({:.2} MB)", cold_cache as f64 / 1e6),
        blocks: reads_in_turns(&mut dbs, &cold),
    });
    rows
}

/// Reads `keys` on every engine: `ROUNDS` rounds, each a block of the same reads on every
/// engine in turn. Returns each engine's block times (ms).
fn reads_in_turns(dbs: &mut [Box<dyn Kv>], keys: &[&[u8]]) -> Vec<Vec<f64>> {
    in_turns(dbs, keys, |db, i, block| {
        let found = db.reads(block);
        assert_eq!(found, block.len(), "engine {i}: a live record was not found");
        0.0
    })
    .0
}

/// Commits `pairs`, `per_commit` at a time, on every engine: `ROUNDS` rounds, each a block of
/// the same commits on every engine in turn. Returns two rows labelled from `label`: each
/// engine's block times (ms) with the block's settle, and without it.
fn commit_rows(label: String, dbs: &mut [Box<dyn Kv>], pairs: &[(&[u8], &[u8])], per_commit: usize) -> [Row; 2] {
    let commits: Vec<&[(&[u8], &[u8])]> = pairs.chunks(per_commit).collect();
    let (with_settle, settles) = in_turns(dbs, &commits, |db, _, block| {
        for c in block {
            db.write(c, true);
        }
        // Within the block's time: a log copy this block started is its own, and would
        // otherwise run during the next engine's block. Also timed on its own.
        let start = Instant::now();
        db.settle();
        start.elapsed().as_secs_f64() * 1e3
    });
    let alone = with_settle
        .iter()
        .zip(&settles)
        .map(|(w, s)| w.iter().zip(s).map(|(w, s)| (w - s).max(0.0)).collect())
        .collect();
    [
        Row { label: format!("{label} (each block and its settle)"), blocks: with_settle },
        Row { label: format!("{label} (the commits alone)"), blocks: alone },
    ]
}

/// Runs `work` (engine, its index, a block of `items`; it returns milliseconds of its own
/// to report apart) in `ROUNDS` rounds: each round runs one block on every engine back to back,
/// in an order drawn afresh for each round (seeded, so runs repeat), so that no engine always
/// follows the same one. Returns each engine's block times (ms), and the times `work` returned.
fn in_turns<T>(
    dbs: &mut [Box<dyn Kv>],
    items: &[T],
    mut work: impl FnMut(&mut dyn Kv, usize, &[T]) -> f64,
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let per_block = items.len().div_ceil(ROUNDS).max(1);
    let mut times = vec![Vec::new(); dbs.len()];
    let mut apart = vec![Vec::new(); dbs.len()];
    let mut rng = Rng(0x5eed_0e0d ^ items.len() as u64);
    for block in items.chunks(per_block) {
        let mut order: Vec<usize> = (0..dbs.len()).collect();
        rng.shuffle(&mut order);
        for i in order {
            let start = Instant::now();
            let own = work(dbs[i].as_mut(), i, block);
            times[i].push(start.elapsed().as_secs_f64() * 1e3);
            apart[i].push(own);
        }
    }
    (times, apart)
}
