//! Data-key rotation (rekey), online and resumable. SPEC.md §6.4.
//!
//! 1. A new random data key is wrapped under a key derived from the current one and written to
//!    the header's next-key block, with the first epoch it serves; from then on every seal uses
//!    the new key (epochs at or above that first epoch derive from it).
//! 2. Batches of copy-on-write transactions re-seal every page still under an older epoch;
//!    readers and writers go on between batches. A crash loses nothing: at open the next-key
//!    block restores both keys, and calling `rekey` again resumes (pages already re-sealed
//!    carry the new epoch and are skipped).
//! 3. When no live page needs the old key, every key slot is re-wrapped around the new key
//!    (with the credentials given, fresh salts) and the next-key block is cleared. The old key
//!    stays in memory, for opening only, while a snapshot taken before this point lives (such a
//!    snapshot still reaches old page versions); it is destroyed (zeroized,
//!    `Engine::retire_old_keys`) at the first write transaction's start once none lives, so
//!    with no writes it stays until the handle closes. A backup of such a snapshot is refused:
//!    the header it would copy no longer unlocks those pages.

use std::collections::BTreeSet;

use super::api::Db;
use super::config::Durability;
use crate::btree::copy::CopyRule;
use crate::crypto::keys::SecretKey;
use crate::crypto::seal::DataKeys;
use crate::crypto::slots::{self, Credentials};
use crate::error::{Error, Result};
use crate::format::header::{KeySlot, ZeroedOption};

/// Progress of a rekey.
#[derive(Debug, Clone, Copy, Default)]
pub struct RekeyProgress {
    /// Pages re-sealed so far.
    pub pages: u64,
    /// Batches committed.
    pub batches: u64,
}

/// Pages copied per batch (one durable commit each).
const BATCH_PAGES: usize = 2048;

/// Marks the rotation ended when dropped: also when it fails, or a progress callback panics.
struct Running<'a>(&'a super::engine::Engine);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.rekey_running.store(false, std::sync::atomic::Ordering::Release);
    }
}

impl Db {
    /// Rotates the data key. `creds` must open every key slot (each slot is re-wrapped with the
    /// credentials that open it); nothing changes if one cannot be opened.
    /// One rotation runs at a time on a database (another call gets `Unsupported`); key slots
    /// cannot be added or changed while a rotation is unfinished, and one removed during it
    /// stays removed.
    pub fn rekey(&self, creds: &[Credentials], progress: &mut dyn FnMut(RekeyProgress)) -> Result<()> {
        let e = &self.handle.engine;
        {
            // Under the writer, as the rotation's first step looks at the header.
            let _ws = e.lock_writer()?;
            if e.rekey_running.swap(true, std::sync::atomic::Ordering::AcqRel) {
                return Err(Error::Unsupported("a data-key rotation is already running on this database".into()));
            }
        }
        let _running = Running(e);
        self.rotate(creds, progress)
    }

    fn rotate(&self, creds: &[Credentials], progress: &mut dyn FnMut(RekeyProgress)) -> Result<()> {
        self.rotate_in_batches(creds, progress, BATCH_PAGES)
    }

    fn rotate_in_batches(
        &self,
        creds: &[Credentials],
        progress: &mut dyn FnMut(RekeyProgress),
        batch_pages: usize,
    ) -> Result<()> {
        let e = self.handle.engine.clone();
        let header = e.header.lock().clone();
        if !header.is_encrypted() {
            return Err(Error::Unsupported("a plaintext database has no data key".into()));
        }
        // Which credentials open which slot (checked before anything is written).
        let mut per_slot: Vec<(usize, &Credentials)> = Vec::new();
        for (i, s) in header.slots.iter().enumerate() {
            let Some(s) = s.as_ref() else { continue };
            let mut one = header.clone();
            one.slots = Default::default();
            one.slots[i].set(Some(s.clone()));
            // A slot whose key derivation could not get its memory was not tried: that error is
            // said, not taken for credentials that do not open it.
            let mut not_tried = None;
            let found = creds.iter().find(|c| match slots::unlock(&one, c) {
                Ok(_) => true,
                Err(e @ Error::Io(_)) => {
                    not_tried.get_or_insert(e);
                    false
                }
                Err(_) => false,
            });
            let c = match (found, not_tried) {
                (Some(c), _) => c,
                (None, Some(e)) => return Err(e),
                (None, None) => return Err(Error::InvalidConfig("rekey needs credentials that open every key slot")),
            };
            per_slot.push((i, c));
        }
        // The new slots' keys, derived before anything is written: one the finish cannot make
        // (a slot under the empty passphrase, made before such slots were refused) failed only
        // after the whole file was re-sealed, at every run, and the unfinished rotation then
        // refused every slot change for good (key review).
        let mut slot_keys: Vec<(usize, slots::SlotKey)> = Vec::new();
        for (i, c) in &per_slot {
            let old = header.slots[*i].as_ref().ok_or_else(|| Error::ReportableBug("slot vanished".into()))?;
            slot_keys.push((*i, slots::SlotKey::derive(old.kind, old.kdf, c)?));
        }
        // 1. Start (unless resuming), under one hold of the writer lock: no commit moves to a
        // new epoch between the choice of the first epoch and the new key's use.
        let first_epoch = {
            let mut ws = e.writer.lock();
            let (resuming, slots_now) = {
                let h = e.header.lock();
                (h.next_key.as_ref().map(|n| n.first_epoch), h.slots.clone())
            };
            // A slot added or changed while the credentials were checked (the KDFs take a
            // while) would make the finish refuse after the whole file is re-sealed: refused now.
            // One removed meanwhile stays removed, as at the finish.
            if slots_changed(slots_now.iter(), header.slots.iter()) {
                return Err(Error::Unsupported("key slots changed meanwhile: run rekey again".into()));
            }
            match resuming {
                Some(first) => first,
                None => {
                    let next = SecretKey::random();
                    let first = ws.epoch.checked_add(1).ok_or(Error::NonceBudgetExhausted)?;
                    let wrapped = e.pager.sealer.with_data_key(|dk| {
                        let dk = dk.ok_or_else(|| Error::ReportableBug("no data key".into()))?;
                        DataKeys::wrap_next(dk, &header.file_id, first, &next)
                    })?;
                    let _unwinding =
                        crate::error::OnPanic::new(|| e.pager.poison_now("a rotation's start panicked part way"));
                    self.update_header_locked(&mut ws, None, |h, _| {
                        h.next_key.set(Some(wrapped));
                        Ok(())
                    })?;
                    e.pager.sealer.add_next_key(first, next);
                    ws.epoch = first;
                    e.pager.sealer.set_max_epoch(first);
                    e.pager.set_seals_in_epoch(0);
                    tracing::info!(target: "foldvault::audit", first_epoch = first, "data-key rotation started");
                    first
                }
            }
        };
        {
            let mut ws = e.writer.lock();
            if ws.epoch < first_epoch {
                ws.epoch = first_epoch;
                e.pager.sealer.set_max_epoch(first_epoch);
            }
        }
        // 2. Re-seal in batches until a pass finds nothing under an older epoch. Each batch
        // walks the trees from their roots; `resealed` names the committed subtrees found
        // re-sealed whole, so a batch does not read again what the ones before it finished
        // (without it a rotation reads the file once per batch). The memo is an optimisation a
        // mistake in which would leave pages under a key about to be destroyed: the pass that
        // ends the batches walks every page without it.
        let mut p = RekeyProgress::default();
        let mut quiet_commits = 0;
        let mut resealed = crate::btree::copy::InlineLeaves::default();
        let (mut use_memo, mut verified) = (true, false);
        loop {
            let (mut ws, mut tx, base) = e.begin()?;
            let mut trees = base.trees.clone();
            let mut changed = BTreeSet::new();
            let mut budget = if verified { 0 } else { batch_pages };
            let mut result = Ok(());
            for (name, mut r) in trees.owned() {
                let memo = use_memo.then_some(&mut resealed);
                match tx.copy_where(&mut r.root, CopyRule::EpochBelow(first_epoch), &mut budget, memo) {
                    Ok(true) => {
                        trees.insert(name.clone(), r);
                        changed.insert(name);
                    }
                    Ok(false) => {}
                    Err(err) => {
                        result = Err(err);
                        break;
                    }
                }
                if budget == 0 {
                    break;
                }
            }
            if result.is_ok() && budget > 0 {
                let mut cat = base.catalog;
                let memo = use_memo.then_some(&mut resealed);
                match tx.copy_where(&mut cat, CopyRule::EpochBelow(first_epoch), &mut budget, memo) {
                    Ok(true) => tx.catalog_root = Some(cat),
                    Ok(false) => {}
                    Err(err) => result = Err(err),
                }
            }
            if let Err(err) = result {
                e.abort(&mut ws, tx);
                return Err(err);
            }
            let copied = if verified { 0 } else { (batch_pages - budget) as u64 };
            // With nothing left in the trees, two more durable commits seal the free list and
            // both commit records under the new key.
            if changed.is_empty() && tx.catalog_root.is_none() {
                e.abort(&mut ws, tx);
                if use_memo {
                    // Once more over every page, trusting no memo.
                    use_memo = false;
                    continue;
                }
                // A walk of every page found nothing to re-seal, and new pages are sealed under
                // the new key: the walks of the quiet commits below would find nothing.
                verified = true;
                if quiet_commits >= 2 {
                    break;
                }
                // A no-op durable commit: mark undurable so the free list and record are rewritten.
                e.undurable.store(true, std::sync::atomic::Ordering::Release);
                e.durable_commit(&mut ws)?;
                quiet_commits += 1;
                continue;
            }
            e.commit(&mut ws, tx, &base, trees, &changed, &BTreeSet::new(), Durability::Immediate)?;
            drop(ws);
            p.pages += copied;
            p.batches += 1;
            progress(p);
        }
        // 3. Finish: re-wrap every slot around the new key, clear the next-key block, drop the old key.
        let (new_first, new_key) = e.pager.sealer.with_keys(|k| {
            k.and_then(|k| k.newest())
                .map(|(first, k)| (first, k.duplicate()))
                .ok_or_else(|| Error::ReportableBug("no key".into()))
        })?;
        let mut rewrapped: Vec<(usize, KeySlot)> = Vec::new();
        for (i, k) in &slot_keys {
            rewrapped.push((*i, k.wrap(&new_key, &header.file_id, *i)?));
        }
        // Under one hold of the writer lock, so that no slot change and no backup sees the new
        // header without the rest: the slots wrap the new key from here on; the old key still
        // opens pages that snapshots taken before this point may reach, and is destroyed once
        // the last of them is released.
        let mut ws = e.writer.lock();
        // The new header and the keys that go with it change together: a panic between them
        // (in a log line's subscriber, say) left the new header beside the old slot key.
        let _unwinding = crate::error::OnPanic::new(|| e.pager.poison_now("a rotation's finish panicked part way"));
        self.update_header_locked(&mut ws, Some(&new_key), |h, _| {
            // The slots must be the ones the credentials were checked against: one removed
            // since stays removed; one added or changed since would go on wrapping the old key.
            if slots_changed(h.slots.iter(), header.slots.iter()) {
                return Err(Error::Unsupported(
                    "key slots changed during the data-key rotation: run rekey again to finish it".into(),
                ));
            }
            for (i, s) in rewrapped {
                if h.slots[i].is_some() {
                    h.slots[i].set(Some(s));
                }
            }
            h.next_key.set(None);
            Ok(())
        })?;
        e.pager.sealer.update_data_keys(DataKeys::slots_wrap_newest);
        tracing::info!(target: "foldvault::audit", pages = p.pages, "data-key rotation finished; slots re-wrapped");
        let seq = e.snapshot().seq;
        ws.retiring_keys.push((seq, new_first));
        e.retire_old_keys(&mut ws, seq);
        Ok(())
    }
}

/// Whether the key slots `now` differ from the slots `then` a rotation checked its credentials
/// against, other than by a slot removed since (which stays removed): a slot added or changed
/// would go on wrapping the old key.
fn slots_changed<'a>(
    now: impl Iterator<Item = &'a ZeroedOption<KeySlot>>,
    then: impl Iterator<Item = &'a ZeroedOption<KeySlot>>,
) -> bool {
    now.zip(then).any(|(now, then)| now.is_some() && now != then)
}

#[cfg(test)]
#[path = "rekey_tests.rs"]
mod tests;
