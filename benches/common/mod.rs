//! What `benches/peers.rs` shares between its parent and its child processes: the record sets,
//! a deterministic generator, and one child's run of every workload against one engine.
//!
//! A child runs the workloads in this order on one fresh directory, each timed alone:
//! bulk load, file size, individual durable commits, durable batches, random reads, range
//! scans, removal of half the loaded records, individual durable commits again, file size,
//! reopen (timed), a one-record commit and reopen (timed), reopen with a cache a tenth of the
//! live data and random reads (timed), peak RSS, then the engine's compaction (timed; SQLite's
//! `VACUUM`; none for sled) and file size. Results go to stdout as `RESULT <workload> <value>`
//! lines; the parent parses them.

pub mod engines;
pub mod interleaved;
pub mod memory;

use std::time::Instant;

use engines::{Engine, Kv};
use memory::{reset_peak_rss, rss};

/// SplitMix64 (`foldvault::fuzzing::Rng`): deterministic, so every engine sees the same records.
pub use foldvault::fuzzing::Rng;

/// The two shapes of record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dataset {
    /// 16-byte random keys, 100-byte random values (redb's benchmark).
    Random16,
    /// FoldDB atoms: `atom:{uuid}` keys, JSON values of 300 to 2,000 bytes.
    Atoms,
}

impl Dataset {
    pub const ALL: [Dataset; 2] = [Dataset::Random16, Dataset::Atoms];

    pub fn name(self) -> &'static str {
        match self {
            Dataset::Random16 => "random16",
            Dataset::Atoms => "atoms",
        }
    }
    pub fn parse(s: &str) -> Option<Dataset> {
        Dataset::ALL.into_iter().find(|d| d.name() == s)
    }
    pub fn describe(self) -> &'static str {
        match self {
            Dataset::Random16 => "16-byte random keys, 100-byte random values",
            Dataset::Atoms => "`atom:{uuid}` keys (41 bytes), JSON values of 300-2,000 bytes",
        }
    }
    fn key_len(self) -> usize {
        match self {
            Dataset::Random16 => 16,
            Dataset::Atoms => 41,
        }
    }
}

/// Distinct values in a dataset's pool; record `i` takes value `i % VALUE_POOL`.
const VALUE_POOL: usize = 4096;

/// Fixed-length keys in one flat buffer (no per-key allocation to inflate the harness's RSS).
pub struct Keys {
    len: usize,
    bytes: Vec<u8>,
}

impl Keys {
    fn generate(d: Dataset, n: usize, rng: &mut Rng) -> Keys {
        let len = d.key_len();
        let mut bytes = vec![0u8; n * len];
        for k in bytes.chunks_mut(len) {
            match d {
                Dataset::Random16 => rng.fill(k),
                Dataset::Atoms => k.copy_from_slice(format!("atom:{}", uuid(rng)).as_bytes()),
            }
        }
        Keys { len, bytes }
    }
    pub fn get(&self, i: usize) -> &[u8] {
        &self.bytes[i * self.len..(i + 1) * self.len]
    }
    pub fn count(&self) -> usize {
        self.bytes.len() / self.len
    }
}

fn uuid(rng: &mut Rng) -> String {
    let (a, b) = (rng.next_u64(), rng.next_u64());
    let h = format!("{a:016x}{b:016x}");
    format!("{}-{}-4{}-a{}-{}", &h[..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

/// A JSON value shaped like a FoldDB atom, padded to `target` bytes.
fn atom_json(rng: &mut Rng, target: usize) -> Vec<u8> {
    let mut s = format!(
        "{{\"uuid\":\"{}\",\"source_schema_name\":\"UserProfile\",\"source_pub_key\":\"{:016x}{:016x}\",\
         \"created_at\":\"2025-06-{:02}T12:{:02}:00Z\",\"prev_atom_uuid\":\"{}\",\"status\":\"Active\",\
         \"content\":{{\"name\":\"user{}\",\"bio\":\"",
        uuid(rng),
        rng.next_u64(),
        rng.next_u64(),
        1 + rng.index(28),
        rng.index(60),
        uuid(rng),
        rng.next_u64() % 1_000_000,
    );
    const WORDS: [&str; 8] = ["lorem", "ipsum", "dolor", "sit", "amet", "fold", "atom", "schema"];
    while s.len() + 3 < target {
        s.push_str(WORDS[rng.index(WORDS.len())]);
        s.push(' ');
    }
    s.truncate(target.saturating_sub(3).max(s.find("\"bio\":\"").unwrap_or(0) + 7));
    s.push_str("\"}}");
    s.into_bytes()
}

/// Every record a child writes, generated before any timing.
pub struct Records {
    /// Loaded in bulk.
    pub loaded: Keys,
    /// One per individual commit.
    pub single: Keys,
    /// `batches * batch_len` keys, committed in batches.
    pub batched: Keys,
    /// One per individual commit after the removal of half the loaded records.
    pub after_removal: Keys,
    /// `mid_commits * mid_len` keys, committed 100 at a time at the end (the reference
    /// workload of issue #8 and `../shared/ANCHORS.md`: 1,000 durable commits of 100 records).
    pub mid: Keys,
    pub batches: usize,
    pool: Vec<Vec<u8>>,
}

impl Records {
    pub fn generate(d: Dataset, sizes: &Sizes, seed: u64) -> Records {
        let mut rng = Rng(seed ^ d.key_len() as u64);
        let pool = (0..VALUE_POOL)
            .map(|_| match d {
                Dataset::Random16 => {
                    let mut v = vec![0u8; 100];
                    rng.fill(&mut v);
                    v
                }
                Dataset::Atoms => {
                    let len = 300 + rng.index(1701);
                    atom_json(&mut rng, len)
                }
            })
            .collect();
        Records {
            loaded: Keys::generate(d, sizes.n, &mut rng),
            single: Keys::generate(d, sizes.single_commits, &mut rng),
            batched: Keys::generate(d, sizes.batches * sizes.batch_len, &mut rng),
            after_removal: Keys::generate(d, sizes.single_commits, &mut rng),
            // Generated last, so the key sets above are what they were before it existed.
            mid: Keys::generate(d, sizes.mid_commits * sizes.mid_len, &mut rng),
            batches: sizes.batches,
            pool,
        }
    }
    pub fn value(&self, i: usize) -> &[u8] {
        &self.pool[i % self.pool.len()]
    }
    /// The pairs of `keys[range]`; record `i` of a key set takes value `i + offset`.
    fn pairs<'a>(&'a self, keys: &'a Keys, range: std::ops::Range<usize>, offset: usize) -> Vec<(&'a [u8], &'a [u8])> {
        range.map(|i| (keys.get(i), self.value(i + offset))).collect()
    }
}

/// How much work a run does.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub n: usize,
    pub single_commits: usize,
    pub batches: usize,
    pub batch_len: usize,
    pub mid_commits: usize,
    pub mid_len: usize,
}

impl Sizes {
    pub fn new(n: usize, quick: bool) -> Sizes {
        if quick {
            Sizes { n, single_commits: 100, batches: 10, batch_len: 1000, mid_commits: 100, mid_len: 100 }
        } else {
            Sizes { n, single_commits: 1000, batches: 100, batch_len: 1000, mid_commits: 1000, mid_len: 100 }
        }
    }
}

/// Total bytes of the files under `dir`.
pub fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn report(name: &str, value: f64) {
    println!("RESULT {name} {value:.3}");
}

fn timed<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    report(name, start.elapsed().as_secs_f64() * 1e3);
    out
}

/// Times `f` on `db` and, for an engine with counters, prints what the workload cost in pages
/// (`NOTE <workload> <text>`; `ops` is the number of commits or lookups, to show per-op costs).
fn timed_db<T>(name: &str, ops: usize, db: &mut Box<dyn Kv>, f: impl FnOnce(&mut Box<dyn Kv>) -> T) -> T {
    let before = db.counters();
    let out = timed(name, || f(db));
    if let (Some(b), Some(a)) = (before, db.counters()) {
        let d = a - b;
        let per = |x: u64| x as f64 / ops.max(1) as f64;
        println!(
            "NOTE {name} per op: {:.1} pages sealed, {:.1} opened, {:.1} cache misses, {:.1} KiB written, {:.2} syncs ({:.3} fdatasyncs, checkpoints included), {:.1} us in crypto",
            per(d.sealed),
            per(d.opened),
            per(d.misses),
            per(d.written) / 1024.0,
            per(d.syncs),
            per(d.device_syncs),
            per(d.crypto_nanos) / 1e3,
        );
    }
    out
}

/// Default cache for every engine whose cache is configurable: foldvault's default, 32 MiB.
pub const CACHE_BYTES: u64 = 32 << 20;

/// One durable commit per record.
fn write_one_by_one(db: &mut Box<dyn Kv>, pairs: &[(&[u8], &[u8])]) {
    for p in pairs {
        db.write(std::slice::from_ref(p), true);
    }
}

/// Runs every workload on `engine` in a fresh directory and prints the results.
pub fn run_child(engine: Engine, d: Dataset, sizes: Sizes, seed: u64) {
    let rec = Records::generate(d, &sizes, seed);
    let mut rng = Rng(seed.wrapping_mul(31));
    let dir = tempfile::Builder::new().prefix("foldvault-peers-").tempdir().expect("tempdir");
    let n = sizes.n;
    let mut loaded_order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut loaded_order);
    let read_keys: Vec<&[u8]> = loaded_order.iter().map(|&i| rec.loaded.get(i)).collect();
    let scan_starts: Vec<&[u8]> = (0..n / 10).map(|_| rec.loaded.get(rng.index(n))).collect();
    let load = rec.pairs(&rec.loaded, 0..n, 0);
    let singles = rec.pairs(&rec.single, 0..rec.single.count(), 7);
    let batched = rec.pairs(&rec.batched, 0..rec.batched.count(), 13);
    let removed: Vec<&[u8]> = loaded_order[..n / 2].iter().map(|&i| rec.loaded.get(i)).collect();
    // The live records after the removal, for the cold reads.
    let live: Vec<(&[u8], &[u8])> = loaded_order[n / 2..]
        .iter()
        .map(|&i| load[i])
        .chain(singles.iter().copied())
        .chain(batched.iter().copied())
        .collect();
    let live_bytes: u64 = live.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
    let mut cold_keys: Vec<&[u8]> = (0..n).map(|_| live[rng.index(live.len())].0).collect();
    rng.shuffle(&mut cold_keys);
    // What the scans must return: up to 10 entries from each start, among the keys present
    // then (the load, the single and the batched records).
    let mut present: Vec<&[u8]> = load.iter().chain(&singles).chain(&batched).map(|(k, _)| *k).collect();
    present.sort_unstable();
    present.dedup();
    let scan_want: usize =
        scan_starts.iter().map(|s| (present.len() - present.partition_point(|k| k < s)).min(10)).sum();
    drop(present);
    let peak_reset = reset_peak_rss();
    let harness = rss().1;
    report("harness_rss", harness as f64 / 1e6);

    let small_rows = d == Dataset::Random16;
    let mut db: Box<dyn Kv> = engine.open(dir.path(), CACHE_BYTES, small_rows);
    // Every write row ends with `settle`: the engine's deferred work (a log copied home) is
    // paid inside the row that caused it.
    timed_db("load", 1, &mut db, |db| {
        db.write(&load, true);
        db.settle();
    });
    report("size_load", dir_size(dir.path()) as f64 / 1e6);
    timed_db("single", singles.len(), &mut db, |db| {
        write_one_by_one(db, &singles);
        db.settle();
    });
    let batch_len = batched.len() / rec.batches.max(1);
    timed_db("batches", rec.batches, &mut db, |db| {
        for chunk in batched.chunks(batch_len.max(1)) {
            db.write(chunk, true);
        }
        db.settle();
    });
    let found = timed_db("reads", n, &mut db, |db| db.reads(&read_keys));
    assert_eq!(found, n, "{}: random reads found {found} of {n}", engine.name());
    let scanned = timed_db("scans", scan_starts.len(), &mut db, |db| db.scans(&scan_starts, 10));
    assert_eq!(scanned, scan_want, "{}: scans returned {scanned} entries", engine.name());
    timed_db("remove", 1, &mut db, |db| {
        db.remove(&removed);
        db.settle();
    });
    // Small durable commits again, now that the removal left the free space in pieces.
    let after_removal = rec.pairs(&rec.after_removal, 0..rec.after_removal.count(), 11);
    timed_db("single_after", after_removal.len(), &mut db, |db| {
        write_one_by_one(db, &after_removal);
        db.settle();
    });
    report("size_end", dir_size(dir.path()) as f64 / 1e6);
    drop(db);

    let probe = loaded_order[n / 2..].first().map(|&i| rec.loaded.get(i)).expect("a live key");
    // Reopened right after the removal (a commit of thousands of pages), then again after a
    // one-record commit: foldvault verifies the newest commit's pages at open.
    for (name, small_commit) in [("open", false), ("open_small", true)] {
        if small_commit {
            let mut db = engine.open(dir.path(), CACHE_BYTES, small_rows);
            db.write(std::slice::from_ref(&singles[0]), true);
        }
        let db = timed(name, || {
            let mut db = engine.open(dir.path(), CACHE_BYTES, small_rows);
            assert_eq!(db.reads(&[probe]), 1, "{}: probe after reopen", engine.name());
            db
        });
        if let Some(c) = db.counters() {
            println!(
                "NOTE {name} {} pages opened, {} cache misses, {:.1} ms in crypto",
                c.opened,
                c.misses,
                c.crypto_nanos as f64 / 1e6
            );
        }
    }

    let cold_cache = (live_bytes / 10).max(64 << 10);
    let mut db = engine.open(dir.path(), cold_cache, small_rows);
    let found = timed_db("cold_reads", n, &mut db, |db| db.reads(&cold_keys));
    assert_eq!(found, n, "{}: cold reads found {found} of {n}", engine.name());
    report("cold_cache_mb", cold_cache as f64 / 1e6);
    drop(db);
    let peak = rss().0;
    report("rss_peak", peak as f64 / 1e6);
    if peak_reset {
        report("rss_engine", peak.saturating_sub(harness) as f64 / 1e6);
    }

    // Last, so that no row above runs on a compacted file: the engine's own way of giving the
    // removal's free space back (foldvault `compact`, redb `compact`, SQLite `VACUUM`).
    let mut db = engine.open(dir.path(), CACHE_BYTES, small_rows);
    let start = Instant::now();
    if db.compact() {
        report("compact", start.elapsed().as_secs_f64() * 1e3);
        drop(db);
        report("size_compact", dir_size(dir.path()) as f64 / 1e6);
        println!("NOTE compact peak RSS (VmHWM) {:.1} MB after it", rss().0 as f64 / 1e6);
    } else {
        println!("NOTE compact none: {} has no way to give free space back", engine.name());
        drop(db);
    }

    // Commits of 100 new records, the size of a FoldDB mutation with its metadata and the
    // reference workload of issue #8: after everything above, so that no row above changes.
    let mid = rec.pairs(&rec.mid, 0..rec.mid.count(), 17);
    let mut db = engine.open(dir.path(), CACHE_BYTES, small_rows);
    timed_db("mid", sizes.mid_commits, &mut db, |db| {
        for chunk in mid.chunks(sizes.mid_len.max(1)) {
            db.write(chunk, true);
        }
        db.settle();
    });
}
