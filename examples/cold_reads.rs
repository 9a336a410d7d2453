//! Cold lookups through a small cache: page opens per lookup, time per lookup, and time spent
//! sealing and opening, encrypted (aws-lc when built, else the default backends) beside
//! plaintext, on the same records in one process.
//!
//! `cargo run --release --example cold_reads --features aws-lc -- [cache bytes] [rounds]`
//!
//! The records are the peers benchmark's random16 set after its removal of half: 50,000 live
//! 16-byte keys with 100-byte values (from 100,000 inserted). The default cache is a tenth of
//! the live records' bytes (580 KB). Each round opens each database afresh and times the best
//! of five passes over 100,000 lookups of live keys.
use std::path::Path;
use std::time::Instant;

const N: u64 = 100_000;
const PASSES: usize = 5;

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k.copy_from_slice(&blake3::hash(&i.to_le_bytes()).as_bytes()[..16]);
    k
}

fn config(dir: &Path, plain: bool, cache: u64) -> foldvault::Config {
    let c = foldvault::Config::new().file(dir.join("db")).use_env(false).flush_every_ms(None).cache_capacity(cache);
    if plain {
        return c.plaintext();
    }
    let c = c.passphrase("cold").kdf(foldvault::KdfParams::insecure_fast());
    #[cfg(feature = "aws-lc")]
    let c = c.cipher_backend(foldvault::CipherBackend::AwsLc);
    c
}

fn build(dir: &Path, plain: bool) -> foldvault::Result<()> {
    let db = config(dir, plain, 64 << 20).open()?;
    let tx = db.begin_write()?;
    {
        let t = tx.open_tree("t")?;
        for i in 0..N {
            t.insert(key(i), [7u8; 100])?;
        }
    }
    tx.commit()?;
    let tx = db.begin_write()?;
    {
        let t = tx.open_tree("t")?;
        for i in (0..N).step_by(2) {
            t.remove(key(i))?;
        }
    }
    tx.commit()?;
    db.flush()?;
    db.checkpoint_log()
}

fn main() -> foldvault::Result<()> {
    let mut args = std::env::args().skip(1);
    let cache: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(N / 2 * 116 / 10);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let dirs = [(false, tempfile::tempdir()?), (true, tempfile::tempdir()?)];
    for (plain, d) in &dirs {
        build(d.path(), *plain)?;
    }
    let live: Vec<[u8; 16]> = (0..N).map(|i| key((i.wrapping_mul(7919) % (N / 2)) * 2 + 1)).collect();
    println!("cache {cache} bytes; {N} lookups of live keys, best of {PASSES} passes");
    for round in 0..rounds {
        let mut us = [0f64; 2];
        for (plain, d) in &dirs {
            let db = config(d.path(), *plain, cache).open()?;
            let t = db.open_tree("t")?;
            let before = db.metrics();
            let mut best = f64::MAX;
            for _ in 0..PASSES {
                let start = Instant::now();
                for k in &live {
                    if t.get(k)?.is_none() {
                        return Err(foldvault::Error::InvalidConfig("a live key was not found"));
                    }
                }
                best = best.min(start.elapsed().as_secs_f64());
            }
            let after = db.metrics();
            let lookups = (N * PASSES as u64) as f64;
            us[usize::from(*plain)] = best * 1e6 / N as f64;
            println!(
                "round {round} {:9}: {:.3} µs a lookup, {:.3} page opens a lookup, {:.0} ns sealing and opening a lookup, {} pages cached",
                if *plain { "plaintext" } else { "encrypted" },
                best * 1e6 / N as f64,
                (after.pages_opened - before.pages_opened) as f64 / lookups,
                (after.crypto_nanos - before.crypto_nanos) as f64 / lookups,
                after.cached_pages
            );
        }
        println!("round {round} encrypted / plaintext: {:.2}", us[0] / us[1]);
    }
    Ok(())
}
