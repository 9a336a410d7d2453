//! Durable single-record commits from several threads at once: how many commits one sync
//! covers (group commit) and the rate, for 1, 2, 4 and 8 threads.
//!
//! `cargo run --release --example group_commit`
//!
//! Each thread inserts its own keys, one `Durability::Immediate` transaction per record, into
//! one encrypted file database; `commit` returns only once its record is on disk. The sync
//! runs with the writer released, so the commits other threads make meanwhile are covered by
//! the next one (`Engine::make_durable`, SPEC §5.3).

use std::sync::Arc;
use std::time::Instant;

use foldvault::{Config, Durability, KdfParams};

const PER_THREAD: usize = 250;

fn main() -> foldvault::Result<()> {
    println!("threads  commits  syncs  commits/sync  commits/s");
    for threads in [1usize, 2, 4, 8] {
        let dir = tempfile::tempdir()?;
        let db = Arc::new(
            Config::new()
                .file(dir.path().join("db"))
                .passphrase("group commit")
                .kdf(KdfParams::insecure_fast())
                .use_env(false)
                .flush_every_ms(None)
                .open()?,
        );
        db.open_tree("t")?;
        let before = db.metrics();
        let t0 = Instant::now();
        let workers: Vec<_> = (0..threads)
            .map(|w| {
                let db = db.clone();
                std::thread::spawn(move || -> foldvault::Result<()> {
                    for i in 0..PER_THREAD {
                        let tx = db.begin_write()?;
                        tx.open_tree("t")?.insert(format!("w{w}-{i:06}"), vec![7u8; 100])?;
                        tx.set_durability(Durability::Immediate);
                        tx.commit()?;
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| foldvault::Error::ReportableBug("worker panicked".into()))??;
        }
        let secs = t0.elapsed().as_secs_f64();
        let after = db.metrics();
        let commits = after.commits - before.commits;
        let syncs = after.syncs - before.syncs;
        println!(
            "{threads:>7}  {commits:>7}  {syncs:>5}  {:>12.2}  {:>9.0}",
            commits as f64 / syncs.max(1) as f64,
            commits as f64 / secs
        );
        assert_eq!(db.open_tree("t")?.len(), threads * PER_THREAD);
    }
    Ok(())
}
