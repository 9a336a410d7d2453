#![allow(dead_code)]
//! Helpers of the sled-surface tests (`tests/sled_compat.rs`, `tests/sled_transactions.rs`):
//! plaintext databases that ignore `FOLDVAULT_*` variables, and entries as plain vectors.

use std::path::Path;

use foldvault::{Config, Db, IVec};

pub fn config(dir: &Path) -> Config {
    Config::new().path(dir).use_env(false)
}

pub fn open(dir: &Path) -> Db {
    config(dir).open().expect("open")
}

pub fn temp_db() -> Db {
    Config::new().temporary(true).use_env(false).open().expect("open temporary")
}

pub fn kv(pair: (IVec, IVec)) -> (Vec<u8>, Vec<u8>) {
    (pair.0.to_vec(), pair.1.to_vec())
}

pub fn entries(it: impl Iterator<Item = foldvault::Result<(IVec, IVec)>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    it.map(|r| kv(r.expect("entry"))).collect()
}
