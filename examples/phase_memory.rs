//! The process's peak and current resident memory after each phase of a workload shaped like the
//! peers benchmark's random16 one, to find the phase that sets the engine's peak RSS.
//!
//! `cargo run --release --example phase_memory [-- --encrypted]` (Linux: reads `/proc/self/status`)
//!
//! Phases: bulk load of 100,000 records (16-byte keys, 100-byte values) in one commit; 1,000
//! durable one-record commits; 100 durable commits of 1,000; 100,000 reads; 10,000 scans of
//! 10; removal of half in one commit; 1,000 more one-record commits; a reopen with a 600 KB
//! cache and 50,000 reads; a reopen with the default cache and a compaction; 1,000 durable
//! commits of 100.
use std::ops::Range;

const N: u64 = 100_000;

// Shared with the peers benchmark; this example does not reset the peak.
#[allow(dead_code)]
#[path = "../benches/common/memory.rs"]
mod memory;

/// Peak and current resident set, in MB.
fn resident() -> String {
    let (peak, now) = memory::rss();
    format!("peak {:.1} MB, now {:.1} MB", peak as f64 / 1e6, now as f64 / 1e6)
}

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k.copy_from_slice(&blake3::hash(&i.to_le_bytes()).as_bytes()[..16]);
    k
}

fn write(db: &foldvault::Db, keys: Range<u64>, durable: bool) -> foldvault::Result<()> {
    let tx = db.begin_write()?;
    {
        let t = tx.open_tree("t")?;
        for i in keys {
            t.insert(key(i), [i as u8; 100])?;
        }
    }
    if durable {
        tx.set_durability(foldvault::Durability::Immediate);
    }
    tx.commit()
}

fn main() -> foldvault::Result<()> {
    let encrypted = std::env::args().any(|a| a == "--encrypted");
    let dir = tempfile::tempdir()?;
    let config = |cache: u64| {
        let c = foldvault::Config::new()
            .file(dir.path().join("db"))
            .use_env(false)
            .flush_every_ms(None)
            .cache_capacity(cache);
        if encrypted { c.passphrase("memory").kdf(foldvault::KdfParams::insecure_fast()) } else { c.plaintext() }
    };
    println!("{} file; start: {}", if encrypted { "encrypted" } else { "plaintext" }, resident());
    let db = config(32 << 20).open()?;
    write(&db, 0..N, false)?;
    db.flush()?;
    println!("bulk load: {}", resident());
    for i in 0..1_000 {
        write(&db, N + i..N + i + 1, true)?;
    }
    println!("one-record commits: {}", resident());
    for b in 0..100 {
        write(&db, 2 * N + b * 1_000..2 * N + (b + 1) * 1_000, true)?;
    }
    db.checkpoint_log()?;
    println!("commits of 1,000: {}", resident());
    let t = db.open_tree("t")?;
    for i in 0..N {
        t.get(key(i))?;
    }
    println!("reads: {}", resident());
    for i in 0..N / 10 {
        let _ = t.range(key(i)..).take(10).count();
    }
    println!("scans: {}", resident());
    let tx = db.begin_write()?;
    {
        let t = tx.open_tree("t")?;
        for i in 0..N / 2 {
            t.remove(key(i))?;
        }
    }
    tx.set_durability(foldvault::Durability::Immediate);
    tx.commit()?;
    println!("removal of half: {}", resident());
    for i in 0..1_000 {
        write(&db, 3 * N + i..3 * N + i + 1, true)?;
    }
    println!("one-record commits after it: {}", resident());
    drop((t, db));
    let db = config(600_000).open()?;
    let t = db.open_tree("t")?;
    for i in N / 2..N {
        t.get(key(i))?;
    }
    println!("reads through a 600 KB cache: {}", resident());
    drop((t, db));
    let db = config(32 << 20).open()?;
    db.compact()?;
    println!("compaction: {}", resident());
    for b in 0..1_000 {
        write(&db, 4 * N + b * 100..4 * N + (b + 1) * 100, true)?;
    }
    println!("commits of 100: {}", resident());
    Ok(())
}
