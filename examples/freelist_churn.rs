//! Durable one-record commits on a file whose free space is fragmented: what the free list
//! costs each commit. SPEC.md §7 ("What a durable commit rewrites").
//!
//! `cargo run --release --example freelist_churn [atoms] [plain]`
//!
//! Loads 100,000 records in one commit (16-byte keys and 100-byte values, or with `atoms`
//! FoldDB-shaped `atom:{uuid}` keys and 300-2,000-byte values), runs 1,000 durable one-record
//! commits, removes every other loaded record in one commit (which leaves thousands of lone free
//! pages), then runs 1,000 durable one-record commits twice more. For each round it prints the
//! time and the pages sealed per commit (`Db::metrics`): the free list is most of the
//! difference between the rounds before and after the removal.

use foldvault::fuzzing::Rng;
use foldvault::{Config, Durability, KdfParams};

fn record(rng: &mut Rng, atoms: bool) -> (Vec<u8>, Vec<u8>) {
    if atoms {
        let mut id = [0u8; 16];
        rng.fill(&mut id);
        let mut key = b"atom:".to_vec();
        for b in id {
            key.extend_from_slice(format!("{b:02x}").as_bytes());
        }
        let len = 300 + rng.below(1700) as usize;
        (key, (0..len).map(|i| b'a' + (i % 26) as u8).collect())
    } else {
        let mut key = vec![0u8; 16];
        rng.fill(&mut key);
        let mut value = vec![0u8; 100];
        rng.fill(&mut value);
        (key, value)
    }
}

fn main() -> foldvault::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let atoms = args.iter().any(|a| a == "atoms");
    let plain = args.iter().any(|a| a == "plain");
    let dir = tempfile::tempdir().map_err(foldvault::Error::Io)?;
    let cfg =
        Config::new().file(dir.path().join("db")).use_env(false).flush_every_ms(None).kdf(KdfParams::insecure_fast());
    let db = if plain { cfg.plaintext() } else { cfg.passphrase("churn") }.open()?;
    let tree = db.open_tree("t")?;
    let mut rng = Rng(7);
    let loaded: Vec<(Vec<u8>, Vec<u8>)> = (0..100_000).map(|_| record(&mut rng, atoms)).collect();
    let tx = db.begin_write()?;
    {
        let t = tx.open_tree("t")?;
        for (k, v) in &loaded {
            t.insert(k, v.as_slice())?;
        }
    }
    tx.commit()?;
    db.flush()?;
    let mut round = |label: &str| -> foldvault::Result<()> {
        let before = db.metrics();
        let start = std::time::Instant::now();
        for _ in 0..1000 {
            let (k, v) = record(&mut rng, atoms);
            let tx = db.begin_write()?;
            tx.open_tree("t")?.insert(k, v)?;
            tx.set_durability(Durability::Immediate);
            tx.commit()?;
        }
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let after = db.metrics();
        println!(
            "{label:<28} {ms:>8.1} ms per 1,000 durable commits, {:.2} pages sealed per commit",
            (after.pages_sealed - before.pages_sealed) as f64 / 1000.0
        );
        Ok(())
    };
    round("before the removal")?;
    let tx = db.begin_write()?;
    {
        let t = tx.open_tree("t")?;
        for (k, _) in loaded.iter().step_by(2) {
            t.remove(k)?;
        }
    }
    tx.commit()?;
    db.flush()?;
    round("after removing half")?;
    round("after removing half, again")?;
    drop(tree);
    Ok(())
}
