//! `Db::checksum`, as sled 0.34's: a CRC32 over every tree's name, keys and values; and
//! `Tree::checksum`, sled's for one tree: over its keys and values.
//!
//! Layer: public API, over one read snapshot. The bytes hashed are sled's, in sled's order:
//! the trees in name order (the default tree, `__sled__default`, among them), each tree's name
//! and then its keys and values in key order, with no lengths or separators. So a database
//! imported from sled has the checksum the sled database had (`migrate::from_sled` checks it),
//! and two databases with the same contents have the same checksum whatever their pages. It is
//! a check of a copy against its source, not of integrity against an attacker: that is what
//! the pages' tags are for (`Db::check`).

use super::api::{Db, Tree};
use super::txn::ReadTransaction;
use crate::error::Result;

impl ReadTransaction {
    /// The CRC32 of this snapshot's trees, as `Db::checksum` computes it.
    pub fn checksum(&self) -> Result<u32> {
        let mut hasher = crc32fast::Hasher::new();
        for (name, _) in self.tree_lens() {
            hasher.update(&name);
            for entry in self.open_tree(&name)?.iter() {
                let (k, v) = entry?;
                hasher.update(&k);
                hasher.update(&v);
            }
        }
        Ok(hasher.finalize())
    }
}

impl Db {
    /// The CRC32 of every tree's name, keys and values, in one snapshot: the value sled 0.34's
    /// `Db::checksum` gives for the same contents. It reads every record.
    pub fn checksum(&self) -> Result<u32> {
        self.begin_read()?.checksum()
    }
}

impl Tree {
    /// The CRC32 of this tree's keys and values in key order, over one snapshot (its `iter`):
    /// sled 0.34's `Tree::checksum` for the same contents. It reads every record.
    pub fn checksum(&self) -> Result<u32> {
        let mut hasher = crc32fast::Hasher::new();
        for entry in self.iter() {
            let (k, v) = entry?;
            hasher.update(&k);
            hasher.update(&v);
        }
        Ok(hasher.finalize())
    }
}
