#![allow(dead_code)]
//! Helpers shared by the integration tests.

use std::sync::Arc;

use foldvault::storage::{MemoryStorage, Storage};
use foldvault::{Config, Db, KdfParams};

/// An encrypted config over the given storage, with cheap KDF parameters.
pub fn enc(storage: Arc<dyn Storage>) -> Config {
    Config::new()
        .storage(storage)
        .passphrase("correct horse battery staple")
        .kdf(KdfParams::insecure_fast())
        .use_env(false)
        .flush_every_ms(None)
}

pub fn plain(storage: Arc<dyn Storage>) -> Config {
    Config::new().storage(storage).plaintext().use_env(false).flush_every_ms(None)
}

pub fn mem_db(encrypted: bool) -> (Db, MemoryStorage) {
    let m = MemoryStorage::new();
    let s: Arc<dyn Storage> = Arc::new(m.clone());
    let cfg = if encrypted { enc(s) } else { plain(s) };
    (cfg.open().expect("open"), m)
}

pub fn reopen(m: &MemoryStorage, encrypted: bool) -> Db {
    let s: Arc<dyn Storage> = Arc::new(m.clone());
    let cfg = if encrypted { enc(s) } else { plain(s) };
    cfg.open().expect("reopen")
}

/// Opens `cfg` (a file database, `checkpoint_on_close(false)`), makes two durable commits and
/// flips a byte in a page only the second wrote, so that its newest commit record opens and
/// does not verify (an open falls back to the first). Returns the file's damaged bytes.
pub fn file_whose_newest_commit_fails(cfg: &Config, path: &std::path::Path) -> Vec<u8> {
    let db = cfg.open().expect("open");
    for i in 0..200u32 {
        db.insert(i.to_be_bytes(), vec![1u8; 50]).expect("insert");
    }
    db.flush().expect("flush");
    let saved = std::fs::read(path).expect("read");
    db.insert("newest", "commit").expect("insert");
    db.flush().expect("flush");
    drop(db);
    let mut bytes = std::fs::read(path).expect("read");
    let changed = |p: &usize| saved.get(p * 4096..(p + 1) * 4096) != bytes.get(p * 4096..(p + 1) * 4096);
    let p = (4..saved.len() / 4096).find(changed).expect("a page the newest commit wrote");
    bytes[p * 4096 + 100] ^= 1;
    std::fs::write(path, &bytes).expect("write");
    bytes
}
