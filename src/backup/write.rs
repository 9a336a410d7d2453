//! `Db::backup_to`: an online backup of one read snapshot while writers go on.

use std::io::Write;

use rand::RngCore;

use super::Progress;
use super::format::{
    BACKUP_VERSION, BackupHeader, CHUNK_HEADER_SIZE, CHUNK_PAGES, HashingWriter, MAX_PAGE_COUNT, TRAILER_MAGIC,
    chunk_aad, chunk_key,
};
use super::verify::check_free_below;
use crate::btree::verify::check_tree;
use crate::crypto::keys::context;
use crate::db::api::Db;
use crate::error::{CorruptReason, Error, PageNo, Result};

/// What a backup wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct BackupStats {
    pub bytes: u64,
    pub pages: u64,
    pub chunks: u64,
    pub seq: u64,
}

impl Db {
    /// Writes a backup of the newest commit to `out` (encrypted if the database is), made
    /// durable first, while other threads keep reading and writing. The snapshot's pages are
    /// pinned until the backup ends. `progress` is called after every chunk.
    pub fn backup_to<W: Write>(&self, out: W, progress: &mut dyn FnMut(Progress)) -> Result<BackupStats> {
        let engine = self.handle.engine.clone();
        engine.refuse_inside_transaction()?;
        // The snapshot first, then its durability: a flush first and the snapshot after could
        // take a commit another thread made in between, not yet durable, whose sequence number
        // a crash of the source would then give to other contents.
        let snap = engine.snapshot();
        engine.make_snapshot_durable(snap.seq)?;
        backup_snapshot(&engine, snap, out, progress)
    }
}

impl crate::db::txn::ReadTransaction {
    /// Writes a backup of exactly this snapshot (see `Db::backup_to`), made durable first if
    /// it was not (a commit made with `Durability::Eventual`): a backup never names a commit
    /// that a crash of the source could lose. From inside a write transaction of this thread
    /// it is `Unsupported`, durable or not, before any page is read: the header and keys are
    /// copied under the writer lock that transaction holds (as is the sync a snapshot not yet
    /// durable needs).
    pub fn backup_to<W: Write>(&self, out: W, progress: &mut dyn FnMut(Progress)) -> Result<BackupStats> {
        self.handle.engine.refuse_inside_transaction()?;
        self.handle.engine.make_snapshot_durable(self.snap.seq)?;
        backup_snapshot(&self.handle.engine, self.snap.clone(), out, progress)
    }
}

fn backup_snapshot<W: Write>(
    engine: &crate::db::engine::Engine,
    snap: std::sync::Arc<crate::db::engine::Snapshot>,
    out: W,
    progress: &mut dyn FnMut(Progress),
) -> Result<BackupStats> {
    {
        let pager = &engine.pager;
        // Every live page of the snapshot, each verified on the way (seal and parent tag). A
        // page reached twice is damage (`DoubleReference`) and is not walked again: taken
        // again each time, pages shared by a forged plaintext file's branches were walked
        // once per path, exponentially many.
        let mut seen = crate::pager::pagemap::PageBitmap::default();
        let mut problems = Vec::new();
        // And every stored count against the records found, as `Db::check`, verify and
        // restore do: a backup they would refuse is not written.
        let n = check_tree(pager, "catalog", snap.catalog, &mut |p| seen.insert(p), &mut problems)?;
        if problems.is_empty() && n != snap.trees.len() as u64 {
            return Err(Error::corrupt(snap.catalog.page, CorruptReason::CountMismatch));
        }
        for (name, root) in &snap.trees {
            let label = crate::db::check::tree_label(name);
            let records = check_tree(pager, &label, root.root, &mut |p| seen.insert(p), &mut problems)?;
            if problems.is_empty() && records != root.count {
                return Err(Error::corrupt(root.root.page, CorruptReason::CountMismatch));
            }
        }
        if let Some(p) = problems.first() {
            return Err(Error::corrupt(p.page, p.reason));
        }
        // Walked in place, in page order, not made a list: a bit per page, where a list took
        // eight bytes (memory review, low).
        let live = seen;
        let live_pages = live.len();
        // A plaintext backup's page numbers are not authenticated: verify and restore bound the
        // free pages below each page (`check_free_below`), lest a forged stream make a file of
        // any length. A backup they would refuse is not written (a small tree left high in a
        // file whose lower 4 GiB were freed: compaction moves it down).
        if !pager.sealer.is_encrypted() {
            for (i, p) in live.iter().enumerate() {
                check_free_below(p, i as u64 + 1)?;
            }
        }
        // The header copy the engine trusts, byte for byte as read (its MAC covers those bytes),
        // taken under the writer lock with the rotation check below (a rekey finishes under it).
        // The backup keys and the seal count are taken under the same hold: a rekey that
        // finished between the header copy and the keys would leave a backup whose header
        // unlocks a key other than the one its chunks and MAC are under.
        let mut backup_id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut backup_id);
        let (page_count, key_epoch, header_bytes, backup_key, mac_key, seals_in_epoch) = {
            let ws = engine.lock_writer()?;
            // A snapshot older than a finished key rotation reaches pages under the old key,
            // which the header copied below no longer unlocks: its backup could not be restored.
            if let Some(&(rotated_at, _)) = ws.retiring_keys.last()
                && snap.seq < rotated_at
            {
                return Err(Error::Unsupported(
                    "this snapshot predates a finished key rotation: back up a newer one (begin_read again)".into(),
                ));
            }
            let keys = pager.sealer.with_data_key(|k| {
                k.map(|k| (chunk_key(BACKUP_VERSION, &backup_id, k), k.derive(context::BACKUP_MAC_KEY, &[])))
            });
            let (backup_key, mac_key) = keys.unzip();
            let bytes = engine.header.lock().to_page();
            (ws.alloc.page_count.max(pager.page_limit()), ws.epoch, bytes, backup_key, mac_key, pager.seals_in_epoch())
        };
        if page_count > MAX_PAGE_COUNT {
            return Err(Error::Unsupported(format!(
                "a database of {page_count} pages: a backup holds at most {MAX_PAGE_COUNT}"
            )));
        }
        let encrypted = pager.sealer.is_encrypted();
        let aead = match &backup_key {
            Some(k) => Some(crate::crypto::cipher::new_aead(
                crate::crypto::CipherId::Aes256Gcm,
                // Chunks are sealed on the backend this handle seals its pages on (the one
                // `Config` named, else the fastest sealer).
                pager.sealer.backends().unwrap_or_default().seal,
                k,
            )?),
            None => None,
        };
        let mut header = BackupHeader {
            version: BACKUP_VERSION,
            encrypted,
            file_id: *pager.sealer.file_id(),
            backup_id,
            seq: snap.seq,
            root_digest: engine.root_digest(&snap),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            page_count,
            chunk_pages: CHUNK_PAGES,
            key_epoch,
            catalog: snap.catalog,
            seals_in_epoch,
            live_pages,
            mac: [0; 32],
        };
        if let Some(mk) = &mac_key {
            header.mac = header.compute_mac(mk, &header_bytes[..]);
        }
        let mut w = HashingWriter::new(out);
        w.put(&header.encode()[..])?;
        w.put(&header_bytes[..])?;
        let mut stats = BackupStats { seq: snap.seq, ..BackupStats::default() };
        let mut pages = live.iter();
        for index in 0u64.. {
            let chunk: Vec<PageNo> = pages.by_ref().take(CHUNK_PAGES as usize).collect();
            if chunk.is_empty() {
                break;
            }
            let mut body = Vec::with_capacity(chunk.len() * super::format::CHUNK_ENTRY_SIZE);
            for &p in &chunk {
                body.extend_from_slice(&p.to_le_bytes());
                body.extend_from_slice(&pager.read_raw(p)?[..]);
            }
            let mut nonce = [0u8; 12];
            let mut tag = [0u8; 16];
            if let Some(a) = &aead {
                nonce = crate::crypto::nonce::fresh()?;
                tag = a.seal(&nonce, &chunk_aad(&backup_id, index, chunk.len() as u32), &mut body)?;
            }
            let mut head = [0u8; CHUNK_HEADER_SIZE];
            head[..8].copy_from_slice(&index.to_le_bytes());
            head[8..12].copy_from_slice(&(chunk.len() as u32).to_le_bytes());
            head[12..24].copy_from_slice(&nonce);
            let mut h = blake3::Hasher::new();
            h.update(&head);
            h.update(&body);
            h.update(&tag);
            w.put(&head)?;
            w.put(&body)?;
            w.put(&tag)?;
            w.put(h.finalize().as_bytes())?;
            stats.pages += chunk.len() as u64;
            stats.chunks += 1;
            progress(Progress { bytes: w.bytes, pages: stats.pages, total_pages: live_pages });
        }
        let mut trailer = Vec::with_capacity(super::format::TRAILER_SIZE);
        trailer.extend_from_slice(&TRAILER_MAGIC);
        trailer.extend_from_slice(&stats.chunks.to_le_bytes());
        trailer.extend_from_slice(&stats.pages.to_le_bytes());
        // The offset at which the trailer starts.
        trailer.extend_from_slice(&w.bytes.to_le_bytes());
        let before = w.bytes;
        w.put(&trailer)?;
        // The stream hash covers every byte before it (header through the trailer's fields).
        let digest = w.hasher.finalize();
        w.put(digest.as_bytes())?;
        w.inner.flush()?;
        stats.bytes = w.bytes;
        tracing::info!(target: "foldvault::audit", seq = snap.seq, pages = stats.pages, bytes = before, "backup written");
        drop(snap);
        Ok(stats)
    }
}
