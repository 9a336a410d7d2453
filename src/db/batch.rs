//! `Batch`: inserts and removals `Tree::apply_batch` (and a transaction's `apply_batch`) applies
//! atomically, as sled's.
//!
//! Layer: public API. Invariants: one operation per key, the last made; every key and value the
//! batch holds is wiped when it is replaced or the batch is dropped (they are user plaintext).

use std::collections::BTreeMap;

use crate::crypto::wipe::wipe_vec;
use crate::error::{Error, Result};

/// A set of inserts and removals applied atomically by `Tree::apply_batch`. As sled's, it
/// keeps one operation per key, the last made: a batch that writes one key again and again
/// holds it once.
#[derive(Default, Clone)]
pub struct Batch {
    pub(crate) ops: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

/// Length only: the keys and values are user data.
impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Batch(ops={})", self.ops.len())
    }
}

/// The batch's copies of keys and values are wiped when it is dropped.
impl Drop for Batch {
    fn drop(&mut self) {
        for (mut k, v) in std::mem::take(&mut self.ops) {
            wipe_vec(&mut k);
            if let Some(mut v) = v {
                wipe_vec(&mut v);
            }
        }
    }
}

impl Batch {
    pub fn insert<K: AsRef<[u8]>, V: AsRef<[u8]>>(&mut self, key: K, value: V) {
        self.set(key.as_ref(), Some(value.as_ref().to_vec()));
    }
    pub fn remove<K: AsRef<[u8]>>(&mut self, key: K) {
        self.set(key.as_ref(), None);
    }
    /// Inserts `key` and `value` as they are, with no copy left behind unwiped (salvage's
    /// records, read from pages).
    pub(crate) fn insert_owned(&mut self, key: Vec<u8>, value: Vec<u8>) {
        match self.ops.get_mut(&key) {
            Some(slot) => {
                if let Some(mut old) = slot.replace(value) {
                    wipe_vec(&mut old);
                }
                let mut key = key;
                wipe_vec(&mut key);
            }
            None => {
                self.ops.insert(key, Some(value));
            }
        }
    }
    /// The operation on `key` becomes `op`; a value it replaces is wiped.
    fn set(&mut self, key: &[u8], op: Option<Vec<u8>>) {
        match self.ops.get_mut(key) {
            Some(slot) => {
                if let Some(mut old) = std::mem::replace(slot, op) {
                    wipe_vec(&mut old);
                }
            }
            None => {
                self.ops.insert(key.to_vec(), op);
            }
        }
    }
    /// The number of keys the batch writes or removes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    /// Checks every key and value size before anything is applied, so a batch fails whole.
    pub(crate) fn validate(&self) -> Result<()> {
        // (Removing a key longer than any stored one is a no-op, not an error.)
        for (k, v) in &self.ops {
            let Some(v) = v else { continue };
            if k.len() > crate::MAX_KEY_LEN {
                return Err(Error::KeyTooLarge { len: k.len(), max: crate::MAX_KEY_LEN });
            }
            if v.len() as u64 > crate::MAX_VALUE_LEN {
                return Err(Error::ValueTooLarge { len: v.len() as u64, max: crate::MAX_VALUE_LEN });
            }
        }
        Ok(())
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Applies every operation of `batch` to the tree at `r` in the transaction `p`, recording in
/// `c` what changed for subscribers (the old values are copied only for them: an event only
/// for a change).
pub(crate) fn apply_ops(
    p: &mut crate::btree::tx::TxPages,
    r: &mut crate::btree::TreeRoot,
    batch: &Batch,
    c: &mut super::watch::TreeChanges,
) -> Result<()> {
    let watched = c.on();
    for (k, v) in &batch.ops {
        let old = match v {
            Some(v) => p.insert(r, k, v, watched)?,
            None => p.remove(r, k, watched)?,
        };
        if watched {
            let old = zeroize::Zeroizing::new(old);
            c.note(k, old.as_deref(), v.as_deref(), false);
        }
    }
    Ok(())
}
