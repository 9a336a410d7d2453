use std::time::Instant;
fn main() {
    let n = 100_000u64;
    let dir = tempfile::tempdir().unwrap();
    for enc in [false, true] {
        let p = dir.path().join(format!("p{enc}.fv"));
        let mut c = foldvault::Config::new()
            .file(&p)
            .use_env(false)
            .flush_every_ms(None)
            .kdf(foldvault::KdfParams::insecure_fast());
        c = if enc { c.passphrase("x") } else { c.plaintext() };
        let db = c.open().unwrap();
        let mut keys: Vec<[u8; 16]> = (0..n)
            .map(|i| {
                let h = blake3::hash(&i.to_le_bytes());
                h.as_bytes()[..16].try_into().unwrap()
            })
            .collect();
        let t = Instant::now();
        let tx = db.begin_write().unwrap();
        {
            let tt = tx.open_tree("t").unwrap();
            for k in &keys {
                tt.insert(k, [7u8; 100]).unwrap();
            }
        }
        tx.commit().unwrap();
        db.flush().unwrap();
        let bulk = t.elapsed();
        keys.reverse();
        let tree = db.open_tree("t").unwrap();
        let t = Instant::now();
        for k in &keys {
            tree.get(k).unwrap().unwrap();
        }
        let reads = t.elapsed();
        println!("{:?}", db.metrics());
        let t = Instant::now();
        for i in 0..1000u64 {
            let tx = db.begin_write().unwrap();
            tx.set_durability(foldvault::Durability::Immediate);
            tx.open_tree("t").unwrap().insert(i.to_le_bytes(), [1u8; 100]).unwrap();
            tx.commit().unwrap();
        }
        let commits = t.elapsed();
        let t = Instant::now();
        for i in 0..20000u64 {
            tree.insert((i + 5_000_000).to_le_bytes(), [1u8; 100]).unwrap();
        }
        db.flush().unwrap();
        let eventual = t.elapsed();
        println!(
            "enc={enc} bulk={:?} reads={:?} 1000commits={:?} 20k-eventual-inserts={:?} size={}",
            bulk,
            reads,
            commits,
            eventual,
            std::fs::metadata(&p).unwrap().len()
        );
    }
}
