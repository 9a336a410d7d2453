//! Cost of wiping opened pages on eviction (`Config::zeroize_cache`): random reads through a
//! small cache, so nearly every read evicts a page. `cargo run --release --example cache_wipe_cost`
use std::sync::Arc;
use std::time::Instant;

fn main() -> foldvault::Result<()> {
    let storage = foldvault::storage::MemoryStorage::new();
    let n = 50_000u64;
    {
        let s: Arc<dyn foldvault::storage::Storage> = Arc::new(storage.clone());
        let db = foldvault::Config::new()
            .storage(s)
            .passphrase("w")
            .kdf(foldvault::KdfParams::insecure_fast())
            .use_env(false)
            .open()?;
        let tx = db.begin_write()?;
        let t = tx.open_tree("t")?;
        for i in 0..n {
            t.insert(&blake3::hash(&i.to_le_bytes()).as_bytes()[..16], [7u8; 100])?;
        }
        drop(t);
        tx.commit()?;
        db.flush()?;
    }
    for round in 0..3 {
        for wipe in [true, false] {
            let s: Arc<dyn foldvault::storage::Storage> = Arc::new(storage.clone());
            let db = foldvault::Config::new()
                .storage(s)
                .passphrase("w")
                .use_env(false)
                .cache_capacity(256 * 1024)
                .zeroize_cache(wipe)
                .open()?;
            let t = db.open_tree("t")?;
            let start = Instant::now();
            for i in 0..n {
                t.get(&blake3::hash(&i.wrapping_mul(7919).wrapping_rem(n).to_le_bytes()).as_bytes()[..16])?;
            }
            let el = start.elapsed();
            let m = db.metrics();
            println!(
                "round {round} wipe={wipe}: {:.2} us per read, {} evictions",
                el.as_secs_f64() * 1e6 / n as f64,
                m.cache_evictions
            );
        }
    }
    Ok(())
}
