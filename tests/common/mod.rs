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
