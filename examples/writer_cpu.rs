//! Where a writer's time goes: a bulk load split into its phases, and the CPU of durable
//! commits of 100. BENCHMARKS.md, "Thirteenth session".
//!
//! `cargo run --release --example writer_cpu [commits] [one] [atoms] [plain] [inline] [log=PAGES]`
//!
//! Without `commits`: five times, 100,000 records inserted in one transaction into a new
//! database, committed, then `flush`ed; prints the milliseconds of each phase and their medians.
//! With `commits`: loads 100,000 records, then makes 300 durable commits of 100 new records and
//! prints the wall time and the main thread's CPU time per commit (Linux: from
//! `/proc/thread-self/schedstat`). Records are 16-byte keys and 100-byte values, or with
//! `atoms` FoldDB-shaped `atom:{uuid}` keys and 300-2,000-byte values. Encrypted with a
//! passphrase (the fast test KDF) unless `plain`; with `inline`, the log's checkpoints run within
//! the commit that fills the log (`Config::wal_background_checkpoints(false)`); `log=PAGES` sets
//! `Config::wal_checkpoint_pages`; `one` makes 3,000 one-record commits instead and prints the
//! wall time of each 1,000 (the first 1,000 include the new log's growth to its checkpoint size).
//! Compare builds (or settings) by running them in turns.

use std::time::Instant;

use foldvault::fuzzing::Rng;
use foldvault::{Config, Db, Durability, KdfParams};

fn record(rng: &mut Rng, atoms: bool) -> (Vec<u8>, Vec<u8>) {
    let mut id = [0u8; 16];
    rng.fill(&mut id);
    if atoms {
        let mut key = b"atom:".to_vec();
        for b in id {
            key.extend_from_slice(format!("{b:02x}").as_bytes());
        }
        let mut value = vec![0u8; 300 + rng.below(1700) as usize];
        rng.fill(&mut value);
        (key, value)
    } else {
        let mut value = vec![0u8; 100];
        rng.fill(&mut value);
        (id.to_vec(), value)
    }
}

/// The calling thread's CPU time in microseconds, where Linux reports it.
fn thread_cpu_us() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse::<f64>().ok().map(|ns| ns / 1e3)
}

/// The command line's words.
struct Options {
    commits: bool,
    atoms: bool,
    plain: bool,
    inline: bool,
    one: bool,
    log_pages: Option<u64>,
}

impl Options {
    fn parse() -> Options {
        let args: Vec<String> = std::env::args().collect();
        let has = |w: &str| args.iter().any(|a| a == w);
        Options {
            commits: has("commits"),
            atoms: has("atoms"),
            plain: has("plain"),
            inline: has("inline"),
            one: has("one"),
            log_pages: args.iter().find_map(|a| a.strip_prefix("log=").and_then(|n| n.parse().ok())),
        }
    }
}

fn open(dir: &std::path::Path, o: &Options) -> foldvault::Result<Db> {
    let cfg = Config::new()
        .file(dir.join("db"))
        .use_env(false)
        .flush_every_ms(None)
        .kdf(KdfParams::insecure_fast())
        .wal_background_checkpoints(!o.inline);
    let cfg = match o.log_pages {
        Some(n) => cfg.wal_checkpoint_pages(n),
        None => cfg,
    };
    if o.plain { cfg.plaintext() } else { cfg.passphrase("writer") }.open()
}

fn load(db: &Db, records: &[(Vec<u8>, Vec<u8>)]) -> foldvault::Result<()> {
    let tx = db.begin_write()?;
    {
        let t = tx.open_tree("t")?;
        for (k, v) in records {
            t.insert(k, v.as_slice())?;
        }
    }
    tx.commit()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn main() -> foldvault::Result<()> {
    let o = Options::parse();
    let (commits, atoms, plain, inline) = (o.commits, o.atoms, o.plain, o.inline);
    let per_commit = if o.one { 1 } else { 100 };
    let mode = format!(
        "{}, {}{}",
        if plain { "plaintext" } else { "encrypted" },
        if atoms { "atoms" } else { "random16" },
        if inline { ", checkpoints inline" } else { "" }
    );
    let mut rng = Rng(7);
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..100_000).map(|_| record(&mut rng, atoms)).collect();
    if !commits {
        let mut phases: [Vec<f64>; 4] = Default::default();
        for _ in 0..5 {
            let dir = tempfile::tempdir().map_err(foldvault::Error::Io)?;
            let db = open(dir.path(), &o)?;
            let t0 = Instant::now();
            let tx = db.begin_write()?;
            {
                let t = tx.open_tree("t")?;
                for (k, v) in &records {
                    t.insert(k, v.as_slice())?;
                }
            }
            let t1 = Instant::now();
            tx.commit()?;
            let t2 = Instant::now();
            db.flush()?;
            let t3 = Instant::now();
            let ms = [t1 - t0, t2 - t1, t3 - t2, t3 - t0].map(|d| d.as_secs_f64() * 1e3);
            println!("{mode}: inserts {:.0} ms, commit {:.0}, flush {:.0}, total {:.0}", ms[0], ms[1], ms[2], ms[3]);
            for (all, one) in phases.iter_mut().zip(ms) {
                all.push(one);
            }
        }
        let [i, c, f, t] = phases.map(median);
        println!("{mode}, medians of 5: inserts {i:.0} ms, commit {c:.0}, flush {f:.0}, total {t:.0}");
        return Ok(());
    }
    let dir = tempfile::tempdir().map_err(foldvault::Error::Io)?;
    let db = open(dir.path(), &o)?;
    load(&db, &records)?;
    db.flush()?;
    let commits_n: usize = if per_commit == 1 { 3000 } else { 300 };
    let (start, cpu0, m0) = (Instant::now(), thread_cpu_us(), db.metrics());
    let mut block_start = start;
    let mut blocks = Vec::new();
    for i in 0..commits_n {
        if i > 0 && i % 1000 == 0 {
            blocks.push(block_start.elapsed().as_secs_f64() * 1e3);
            block_start = Instant::now();
        }
        let batch: Vec<(Vec<u8>, Vec<u8>)> = (0..per_commit).map(|_| record(&mut rng, atoms)).collect();
        let tx = db.begin_write()?;
        {
            let t = tx.open_tree("t")?;
            for (k, v) in &batch {
                t.insert(k, v.as_slice())?;
            }
        }
        tx.set_durability(Durability::Immediate);
        tx.commit()?;
    }
    let wall = start.elapsed().as_secs_f64() * 1e6 / commits_n as f64;
    if !blocks.is_empty() {
        blocks.push(block_start.elapsed().as_secs_f64() * 1e3);
        let b: Vec<String> = blocks.iter().map(|ms| format!("{ms:.0}")).collect();
        println!("{mode}: ms per block of 1,000 commits, in order: {}", b.join(", "));
    }
    let m = db.metrics();
    let per = |a: u64, b: u64| (a - b) as f64 / commits_n as f64;
    println!(
        "{mode}: per commit {:.1} pages sealed, {:.1} KiB written by the engine (the log's copies not counted), {:.2} syncs",
        per(m.pages_sealed, m0.pages_sealed),
        per(m.bytes_written, m0.bytes_written) / 1024.0,
        per(m.syncs, m0.syncs)
    );
    match cpu0.zip(thread_cpu_us()) {
        Some((a, b)) => {
            println!(
                "{mode}: {wall:.0} us per durable commit of {per_commit}, {:.0} us of it CPU",
                (b - a) / commits_n as f64
            )
        }
        None => println!("{mode}: {wall:.0} us per durable commit of {per_commit}"),
    }
    Ok(())
}
