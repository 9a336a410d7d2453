//! The cost of a key rotation (`Db::rekey`): pages read, as a multiple of the file, and the
//! wall time, for a database of 300,000 records of 300 bytes (about 18 batches). Run on two
//! commits to compare: `cargo run --release --example rekey_cost`.
use foldvault::{Batch, Config, Credentials, KdfParams};
use std::time::Instant;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::new().path(dir.path()).passphrase("probe").kdf(KdfParams::insecure_fast()).use_env(false);
    let db = cfg.open().unwrap();
    let t = db.open_tree("t").unwrap();
    for chunk in 0..30u32 {
        let mut b = Batch::default();
        for i in 0..10_000u32 {
            let k = (chunk * 10_000 + i).wrapping_mul(2_654_435_761).to_be_bytes();
            b.insert(&k[..], vec![(i % 251) as u8; 300]);
        }
        t.apply_batch(b).unwrap();
    }
    db.flush().unwrap();
    let before = db.metrics();
    let t0 = Instant::now();
    let mut batches = 0;
    db.rekey(&[Credentials::passphrase("probe")], &mut |p| batches = p.batches).unwrap();
    let dt = t0.elapsed();
    let read = (db.metrics().bytes_read - before.bytes_read) / 4096;
    let pages = std::fs::metadata(dir.path().join("db.foldvault")).unwrap().len() / 4096;
    println!(
        "pages {pages} batches {batches} pages_read {read} ({:.1}x the file) rekey {:.2} s",
        read as f64 / pages as f64,
        dt.as_secs_f64()
    );
}
