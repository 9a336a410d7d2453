//! Key lifecycle on an open database: key slots (list, add, remove, change a passphrase, a
//! recovery key) and the encryption status. SPEC.md §6.
//!
//! Every change rewrites the header only — never a data page — with the two-copy protocol of
//! SPEC.md §2: copy B is written with generation + 1 and synced, then copy A, synced. A power
//! loss at any point leaves a valid header with either the old or the new slots, never neither.
//! The writer lock is held throughout, so no commit interleaves.

use super::api::Db;
use super::engine::WriterState;
use crate::crypto::keys::{MasterKey, SecretKey};
use crate::crypto::slots::{self, Credentials};
use crate::crypto::{CipherBackend, CipherBackends, CipherId, KdfParams, Passphrase};
use crate::error::{Error, Result};
use crate::format::header::{FileHeader, MAX_SLOTS, SlotKind};
use crate::format::{HEADER_PAGE_A, HEADER_PAGE_B};

/// One key slot, as `Db::slots` lists it (no secret in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    pub index: usize,
    pub kind: SlotKind,
    /// Argon2id parameters (passphrase kinds only).
    pub kdf: Option<KdfParams>,
}

/// What `Db::encryption_status` reports.
#[derive(Debug, Clone)]
pub struct EncryptionStatus {
    pub encrypted: bool,
    pub cipher: CipherId,
    pub format_version: u16,
    pub slots: Vec<SlotInfo>,
    pub header_generation: u64,
    /// The epoch new pages are sealed under.
    pub key_epoch: u32,
    /// Seals made under the current epoch, and the budget before the next epoch.
    pub seals_in_epoch: u64,
    pub seal_budget: u64,
    pub commit_seq: u64,
    /// Whether the CPU's AES instructions are in use (else a constant-time software AES).
    pub hardware_aes: bool,
    /// The backends this handle's AEADs seal and open on (`Config::cipher_backend(s)`, else
    /// the fastest built at each, timed once per process); for a plaintext file, the ones an
    /// encrypted open would use.
    pub backends: CipherBackends,
    /// True while a data-key rotation is in progress.
    pub rekey_in_progress: bool,
    /// Data keys held in memory: 1 normally; 2 while a rotation runs, and after it until the
    /// last snapshot taken before it finished is released (the old key is then destroyed).
    pub data_keys_held: usize,
}

pub(crate) fn slot_infos(h: &FileHeader) -> Vec<SlotInfo> {
    h.slots
        .iter()
        .enumerate()
        .filter_map(|(index, s)| {
            s.as_ref().map(|s| SlotInfo { index, kind: s.kind, kdf: s.kind.uses_passphrase().then_some(s.kdf) })
        })
        .collect()
}

impl Db {
    /// The key slots (kinds and KDF parameters only).
    pub fn slots(&self) -> Vec<SlotInfo> {
        slot_infos(&self.handle.engine.header.lock())
    }

    /// The header this handle holds (authenticated at open, updated by its own key commands,
    /// which write it through to the file's own header pages, past the write-ahead log).
    pub(crate) fn live_header(&self) -> FileHeader {
        self.handle.engine.header.lock().clone()
    }

    /// Encryption state, cipher, slots, format version, key epoch, nonce budget used.
    pub fn encryption_status(&self) -> EncryptionStatus {
        let e = &self.handle.engine;
        // The epoch waits for the writer: read it before taking the header, which a writer
        // takes while it holds the writer lock (lock order: writer, then header).
        let key_epoch = e.current_epoch();
        let commit_seq = e.snapshot().seq;
        let h = e.header.lock();
        EncryptionStatus {
            encrypted: h.is_encrypted(),
            cipher: h.cipher,
            format_version: h.version,
            slots: slot_infos(&h),
            header_generation: h.generation,
            key_epoch,
            seals_in_epoch: e.pager.seals_in_epoch(),
            seal_budget: e.seal_budget,
            commit_seq,
            hardware_aes: CipherBackend::hardware_aes(),
            backends: e.pager.sealer.backends().unwrap_or_default(),
            rekey_in_progress: h.next_key.is_some(),
            data_keys_held: e.pager.sealer.with_keys(|k| k.map_or(0, |k| k.len())),
        }
    }

    /// Rewrites the header after `f` edits a copy of it (with the data key at hand).
    pub(crate) fn update_header(&self, f: impl FnOnce(&mut FileHeader, &SecretKey) -> Result<()>) -> Result<()> {
        self.update_header_with(None, f)
    }

    /// As `update_header`; the MAC is made with `mac_key` when given (the new data key at the
    /// end of a rekey), else with the key the slots wrap now.
    pub(crate) fn update_header_with(
        &self,
        mac_key: Option<&SecretKey>,
        f: impl FnOnce(&mut FileHeader, &SecretKey) -> Result<()>,
    ) -> Result<()> {
        let mut ws = self.handle.engine.lock_writer()?;
        self.update_header_locked(&mut ws, mac_key, f)
    }

    /// As `update_header_with`, for a caller that holds the writer lock (and does more under it).
    pub(crate) fn update_header_locked(
        &self,
        _ws: &mut WriterState,
        mac_key: Option<&SecretKey>,
        f: impl FnOnce(&mut FileHeader, &SecretKey) -> Result<()>,
    ) -> Result<()> {
        let e = &self.handle.engine;
        if e.pager.is_poisoned() {
            return Err(Error::Poisoned);
        }
        let mut h = e.header.lock().clone();
        if !h.is_encrypted() {
            return Err(Error::Unsupported("a plaintext database has no key slots".into()));
        }
        e.pager.sealer.with_data_key(|dk| -> Result<()> {
            let dk = dk.ok_or_else(|| Error::ReportableBug("no data key".into()))?;
            f(&mut h, dk)?;
            // (The file keeps its own format version: a header update is not an upgrade.)
            // A generation at its largest (authentic: a key holder's, or a restored header's)
            // has no next: refused before anything is written, where it overflowed, and in a
            // release build wrapped to 0 below the records' and left the file unopenable.
            h.generation = h
                .generation
                .checked_add(1)
                .ok_or_else(|| Error::corrupt(HEADER_PAGE_A, crate::error::CorruptReason::HeaderField))?;
            h.raw_body = Default::default();
            h.mac = slots::header_mac(mac_key.unwrap_or(dk), &h.encode_body()[..]);
            Ok(())
        })?;
        if h.slots.iter().all(|s| s.is_none()) {
            return Err(Error::Unsupported("refusing to remove the last key slot".into()));
        }
        let page = h.encode();
        // From the first copy written until the header in memory is the new one, a panic (a
        // caller's `Storage`) leaves the disk and the handle apart: poisoned, as an error there
        // does (key review).
        let _unwinding = crate::error::OnPanic::new(|| e.pager.poison_now("a header update panicked part way"));
        // Each copy into the file itself and synced, past the write-ahead log (SPEC §6.2, §15):
        // a copy logged stayed in the log's bytes after a checkpoint, until later groups reached
        // it (the old slots; a rotation's next-key block, which the old data key unwraps: key
        // review), and an erase of the log after the update left them there when a power loss
        // cut it short. Written through, the file's own header pages hold the new slots when
        // this returns, and the log never holds a header page. Before the header in memory
        // changes: a failed write poisons the handle with its header and keys still alike.
        e.pager.write_raw_through(HEADER_PAGE_B, &page[..])?;
        e.pager.write_raw_through(HEADER_PAGE_A, &page[..])?;
        let decoded = FileHeader::decode(&page[..], HEADER_PAGE_A)?;
        *e.header.lock() = decoded;
        tracing::info!(target: "foldvault::audit", generation = h.generation, "header rewritten (key slots changed)");
        Ok(())
    }

    /// Adds a key slot opened by `creds` (master key + passphrase if both are given). Returns
    /// its index.
    pub fn add_slot(&self, creds: &Credentials, kdf: KdfParams) -> Result<usize> {
        let kind = creds.natural_kind().ok_or(Error::InvalidConfig("no credentials given for the new slot"))?;
        // One slot is added: a recovery key given beside another key would be left out.
        if kind != SlotKind::RecoveryKey && creds.recovery.is_some() {
            return Err(Error::InvalidConfig(
                "a recovery key goes in a slot of its own: add it without a passphrase or master key",
            ));
        }
        self.add_slot_of_kind(kind, creds, kdf)
    }

    fn add_slot_of_kind(&self, kind: SlotKind, creds: &Credentials, kdf: KdfParams) -> Result<usize> {
        slots::refuse_guessable_key(kind, creds)?;
        // The key derivation before the writer lock: commits go on meanwhile.
        let key = slots::SlotKey::derive(kind, kdf, creds)?;
        let mut index = None;
        self.update_header(|h, dk| {
            refuse_during_rotation(h)?;
            let i = (0..MAX_SLOTS)
                .find(|i| h.slots[*i].is_none())
                .ok_or(Error::Unsupported(format!("all {MAX_SLOTS} key slots are in use")))?;
            h.slots[i].set(Some(key.wrap(dk, &h.file_id, i)?));
            index = Some(i);
            Ok(())
        })?;
        index.ok_or_else(|| Error::ReportableBug("slot not added".into()))
    }

    /// Adds a recovery-key slot and returns the new random key (print it once, keep it safe).
    pub fn add_recovery_key(&self) -> Result<(usize, MasterKey)> {
        let key = MasterKey::generate();
        let i = self.add_slot_of_kind(
            SlotKind::RecoveryKey,
            &Credentials::recovery_key(key.duplicate()),
            KdfParams::default(),
        )?;
        Ok((i, key))
    }

    /// Removes slot `index`. Removing the last slot is refused.
    pub fn remove_slot(&self, index: usize) -> Result<()> {
        self.update_header(|h, _| {
            match h.slots.get_mut(index) {
                Some(s) if s.is_some() => s.set(None),
                _ => return Err(Error::InvalidConfig("no such key slot")),
            }
            if h.slots.iter().all(|s| s.is_none()) {
                return Err(Error::Unsupported("refusing to remove the last key slot".into()));
            }
            Ok(())
        })
    }

    /// Changes a passphrase: every slot with a passphrase that `old` opens is rewritten in
    /// place for `new` (same kind; a master-key + passphrase slot keeps `old`'s master key), so
    /// that `old` opens none of them afterwards: a passphrase added twice, by mistake, would
    /// otherwise go on opening the database after the change meant to revoke it. (A slot that
    /// combines the passphrase with a master key is one `old` opens only if it holds that key
    /// too.) Only the header changes.
    pub fn change_passphrase(&self, old: &Credentials, new: Passphrase, kdf: KdfParams) -> Result<()> {
        // The KDF runs outside the writer lock; the slots it opened must still be there,
        // unchanged, under the lock.
        let opened = {
            let h = self.handle.engine.header.lock().clone();
            let first = match slots::unlock_kind(&h, old, |k| k.uses_passphrase()) {
                Ok((_, i)) => i,
                // Right credentials that open no passphrase slot: not a wrong key. Credentials
                // that a passphrase slot was tried with and did not open are (a master key with
                // a wrong passphrase opens a master-key slot, but names a passphrase that is not
                // the file's).
                Err(e) => {
                    // (Only then are the other slots tried: each may cost a key derivation.)
                    let tried = h.slots.iter().flatten().any(|s| s.kind.uses_passphrase() && old.serves(s.kind));
                    if !tried && slots::unlock(&h, old).is_ok() {
                        return Err(Error::InvalidConfig("the slot these credentials open has no passphrase"));
                    }
                    if matches!(e, Error::WrongKey { .. }) {
                        super::open::audit_wrong_key();
                    }
                    return Err(e);
                }
            };
            // The others `old` opens: each found is taken out of a copy of the header, and the
            // rest tried again (a slot's seal binds its own index and bytes only).
            let mut opened = vec![(first, h.slots[first].clone())];
            let mut rest = h.clone();
            rest.slots[first].set(None);
            loop {
                match slots::unlock_kind(&rest, old, |k| k.uses_passphrase()) {
                    Ok((_, i)) => {
                        opened.push((i, h.slots[i].clone()));
                        rest.slots[i].set(None);
                    }
                    Err(Error::WrongKey { .. }) => break,
                    // A slot that could not be tried (its key derivation's memory): it may be one
                    // `old` opens, which the change would leave opening the database. Refused
                    // whole rather than done in part (review of the forty-first session).
                    Err(e) => return Err(e),
                }
            }
            opened
        };
        // The new slots' keys, derived before the writer lock as the old ones were tried: a
        // passphrase's derivation may take seconds, which commits would have waited for.
        let mut c = Credentials::none().with_passphrase(new.duplicate());
        if let Some(m) = &old.master {
            c = c.with_master_key(m.duplicate());
        }
        let mut keys = Vec::with_capacity(opened.len());
        for (_, slot) in &opened {
            let kind = slot.as_ref().map(|s| s.kind).ok_or(Error::InvalidConfig("slot vanished"))?;
            if !kind.uses_passphrase() {
                return Err(Error::InvalidConfig("the slot these credentials open has no passphrase"));
            }
            keys.push(slots::SlotKey::derive(kind, kdf, &c)?);
        }
        self.update_header(|h, dk| {
            refuse_during_rotation(h)?;
            for ((index, slot), key) in opened.iter().zip(&keys) {
                if h.slots[*index] != *slot {
                    return Err(Error::Unsupported("the key slot changed meanwhile: try again".into()));
                }
                h.slots[*index].set(Some(key.wrap(dk, &h.file_id, *index)?));
            }
            Ok(())
        })
    }
}

/// Slots cannot be added or changed while a data-key rotation is unfinished: the slot would
/// wrap the key being retired (SPEC §6.4). Removing one is allowed.
fn refuse_during_rotation(h: &FileHeader) -> Result<()> {
    match h.next_key.as_ref() {
        Some(_) => Err(Error::Unsupported(
            "a data-key rotation is unfinished: run rekey to finish it before adding or changing key slots".into(),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::crypto::slots::Credentials;
    use crate::error::{CorruptReason, Error};
    use crate::storage::{MemoryStorage, Storage};
    use crate::{Config, KdfParams};

    /// A header generation at its largest has no next: a slot change is refused with nothing
    /// written (it overflowed; in a release build it wrapped to 0, below the commit records'
    /// generation, and the file no longer opened).
    #[test]
    fn a_header_generation_at_its_largest_refuses_a_slot_change() {
        let s: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let cfg = |s: &Arc<dyn Storage>| {
            Config::new().storage(s.clone()).passphrase("a").kdf(KdfParams::insecure_fast()).use_env(false)
        };
        let db = cfg(&s).open().unwrap();
        db.insert("k", "v").unwrap();
        let headers = |s: &Arc<dyn Storage>| {
            let mut b = vec![0u8; 2 * crate::format::PAGE_SIZE];
            s.read_at(0, &mut b).unwrap();
            b
        };
        let before = headers(&s);
        let generation = std::mem::replace(&mut db.handle.engine.header.lock().generation, u64::MAX);
        let r = db.change_passphrase(&Credentials::passphrase("a"), "b".into(), KdfParams::insecure_fast());
        assert!(matches!(r, Err(Error::Corrupt { page: 0, reason: CorruptReason::HeaderField })), "{r:?}");
        assert!(headers(&s) == before, "a header copy was written");
        // (The close's record names the header's generation: the one on the disk.)
        db.handle.engine.header.lock().generation = generation;
        drop(db);
        let db = cfg(&s).open().unwrap();
        assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    }
}

#[cfg(all(test, target_os = "linux"))]
mod memory_tests {
    use std::sync::Arc;

    use crate::crypto::memscan;

    use crate::storage::{MemoryStorage, Storage};
    use crate::{Config, KdfParams};

    /// The data key is in memory (locked) while the database is open, and nowhere after drop.
    #[test]
    fn data_key_is_wiped_after_drop() {
        let s: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let db = Config::new().storage(s).passphrase("dk scan").kdf(KdfParams::insecure_fast()).use_env(false).open();
        let db = db.expect("open");
        db.insert("k", &b"v"[..]).expect("insert");
        db.flush().expect("flush");
        let masked: Vec<u8> =
            db.handle.engine.pager.sealer.with_data_key(|k| {
                k.map(|k| k.expose().iter().map(|b| b ^ memscan::MASK).collect()).unwrap_or_default()
            });
        assert_eq!(masked.len(), 32);
        assert!(memscan::seen_in_memory(&masked), "the scan does not see the live key (test broken)");
        drop(db);
        assert_eq!(memscan::count_in_memory(&masked), 0, "data key left in memory after drop");
    }
}
