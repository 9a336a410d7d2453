//! Measures backup and restore of a large encrypted database against `cp` of the same file.
//! `cargo run --release --example backup_rate -- [GiB] [dir]`
use std::time::Instant;

fn main() -> foldvault::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let gib: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let dir = std::path::PathBuf::from(args.get(2).cloned().unwrap_or_else(|| "/tmp/big".into()));
    std::fs::create_dir_all(&dir)?;
    let db_path = dir.join("big.foldvault");
    let _ = std::fs::remove_file(&db_path);
    let cfg = foldvault::Config::new().file(&db_path).passphrase("rate").use_env(false).flush_every_ms(None);
    let db = cfg.open()?;
    let value = vec![0x5Au8; 4000];
    let n = (gib * (1u64 << 30) as f64 / 4100.0) as u64;
    let t = Instant::now();
    for chunk in 0..n.div_ceil(10_000) {
        let tx = db.begin_write()?;
        let tree = tx.open_tree("bulk")?;
        for i in chunk * 10_000..((chunk + 1) * 10_000).min(n) {
            tree.insert(i.to_be_bytes(), &value)?;
        }
        tx.commit()?;
    }
    db.flush()?;
    let size = std::fs::metadata(&db_path)?.len();
    println!("loaded {n} records, file {:.2} GiB in {:.1?}", size as f64 / (1u64 << 30) as f64, t.elapsed());
    let bk = dir.join("big.fvbk");
    let t = Instant::now();
    let out = std::io::BufWriter::new(std::fs::File::create(&bk)?);
    let stats = db.backup_to(out, &mut |_| {})?;
    let b = t.elapsed();
    drop(db);
    let t = Instant::now();
    let mut cp_out = std::fs::File::create(dir.join("copy.bin"))?;
    std::io::copy(&mut std::fs::File::open(&db_path)?, &mut cp_out)?;
    cp_out.sync_all()?;
    let cp = t.elapsed();
    let dst = dir.join("restored.foldvault");
    let _ = std::fs::remove_file(&dst);
    let t = Instant::now();
    let creds = foldvault::Credentials::passphrase("rate");
    foldvault::backup::restore(std::io::BufReader::new(std::fs::File::open(&bk)?), &dst, &creds, Default::default())?;
    let r = t.elapsed();
    let mb = size as f64 / 1e6;
    println!(
        "backup {:.0} MB/s ({} bytes), restore (incl. full check) {:.0} MB/s, cp+fsync {:.0} MB/s; backup/cp time ratio {:.2}, restore/cp {:.2}",
        mb / b.as_secs_f64(),
        stats.bytes,
        mb / r.as_secs_f64(),
        mb / cp.as_secs_f64(),
        b.as_secs_f64() / cp.as_secs_f64(),
        r.as_secs_f64() / cp.as_secs_f64()
    );
    for f in ["big.foldvault", "big.fvbk", "copy.bin", "restored.foldvault"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    Ok(())
}
