//! Restore: a backup into a new database file, through a temporary file that is synced and
//! then renamed into place, so the target either does not exist or is complete.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::RngCore;

use super::Progress;
use super::verify::{BackupReader, BackupSummary, backup_aead, sealer_for, unlock_backup};
use crate::crypto::seal::KeyPurpose;
use crate::crypto::slots::Credentials;
use crate::crypto::wipe::wipe;
use crate::db::config::Config;
use crate::error::{CorruptReason, Error, PageNo, Result};
use crate::format::commit::CommitRecord;
use crate::format::page::PageRef;
use crate::format::{COMMIT_PAGE_A, COMMIT_PAGE_B, FIRST_DATA_PAGE, HEADER_PAGE_A, HEADER_PAGE_B, PAGE_SIZE};
use crate::pager::Pager;
use crate::pager::alloc::Allocator;
use crate::pager::freelist;
use crate::storage::{FileStorage, Storage};

/// How to restore.
#[derive(Default)]
pub struct RestoreOptions<'a> {
    /// Replace an existing database at the target path.
    pub force: bool,
    /// Called after every chunk.
    pub progress: Option<&'a mut dyn FnMut(Progress)>,
}

/// Restores the backup read from `r` into a new database file at `dst`, unlocking it with
/// `creds` (the credentials that opened the source when the backup was taken). The restored
/// database passes `check` and names the same commit (root digest) as the backup.
pub fn restore<R: Read>(r: R, dst: &Path, creds: &Credentials, mut opts: RestoreOptions<'_>) -> Result<BackupSummary> {
    if dst.exists() && !opts.force && std::fs::metadata(dst)?.len() > 0 {
        return Err(Error::AlreadyExists(dst.display().to_string()));
    }
    let mut br = BackupReader::open(r)?;
    let dk = unlock_backup(&br.file_header, &br.header, creds)?;
    let aead = match &dk {
        Some(k) => Some(backup_aead(k)?),
        None => None,
    };
    let tmp = temp_path(dst);
    let result = (|| -> Result<BackupSummary> {
        let storage: Arc<dyn Storage> = Arc::new(FileStorage::open(&tmp, true)?);
        storage.set_len(0)?;
        let sealer = sealer_for(&br.file_header, dk.as_ref())?;
        let page_count = br.header.page_count;
        let pager = Pager::new(storage.clone(), sealer, 1 << 20);
        pager.write_raw(HEADER_PAGE_A, &br.file_header_page)?;
        pager.write_raw(HEADER_PAGE_B, &br.file_header_page)?;
        // Pages seen so far: sized by the stream, not by the (unauthenticated, for a plaintext
        // source) page count in its header.
        let mut live: std::collections::BTreeSet<PageNo> = std::collections::BTreeSet::new();
        let mut pages = 0u64;
        while let Some(chunk) = br.next_chunk(aead.as_deref())? {
            for (page, buf) in chunk {
                // Each page must open under its own seal before it is written.
                let mut probe = buf.clone();
                let opened = pager.sealer.open(KeyPurpose::Page, page, &mut probe);
                wipe(&mut probe[..]);
                opened?;
                if !live.insert(page) {
                    return Err(Error::corrupt(page, CorruptReason::DoubleReference));
                }
                pager.write_raw(page, &buf)?;
                pages += 1;
            }
            if let Some(p) = opts.progress.as_mut() {
                p(Progress { bytes: 0, pages, total_pages: br.header.live_pages });
            }
        }
        let header = br.header.clone();
        let generation = br.file_header.generation;
        let (bytes, chunks, pages) = br.finish()?;
        // Everything not restored is free; write the free list and a commit record.
        // The restored file ends after its last live page: pages above it were free.
        let page_count = live.last().map(|p| p + 1).unwrap_or(FIRST_DATA_PAGE).min(page_count);
        let free: Vec<PageNo> = (FIRST_DATA_PAGE..page_count).filter(|p| !live.contains(p)).collect();
        let mut alloc = Allocator::new(page_count, free);
        pager.set_page_limit(page_count);
        pager.sealer.set_max_epoch(header.key_epoch);
        let (fl, _) =
            freelist::write(&pager, &mut alloc, header.seq, header.key_epoch, &mut freelist::FreeChain::default(), 0)?;
        pager.ensure_pages(alloc.page_count)?;
        let rec = CommitRecord {
            seq: header.seq,
            prev_durable_seq: header.seq,
            catalog: header.catalog,
            freelist: fl,
            page_count: alloc.page_count,
            key_epoch: header.key_epoch,
            oldest_epoch: 0,
            seals_in_epoch: header.seals_in_epoch + 16,
            header_generation: generation,
            rekey_cursor: 0,
            free_delta: Default::default(),
        };
        pager.write_commit(COMMIT_PAGE_A, &rec)?;
        pager.write_raw(COMMIT_PAGE_B, &[0u8; PAGE_SIZE])?;
        pager.sync()?;
        drop(pager);
        drop(storage);
        // Open it as a database and check it fully before it takes the target's name.
        let db = Config::new().file(&tmp).credentials(creds.duplicate()).use_env(false).flush_every_ms(None).open()?;
        let report = db.check()?;
        if let Some(p) = report.problems.first() {
            return Err(Error::corrupt(p.page, p.reason));
        }
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&db.root_digest()[..], &header.root_digest[..])) {
            return Err(Error::BackupCorrupt { offset: 0, chunk: None, what: "restored root digest differs" });
        }
        let trees = report
            .trees
            .iter()
            .filter(|t| !t.name.as_bytes().starts_with(crate::db::engine::RESERVED_PREFIX))
            .map(|t| (t.name.clone(), t.records))
            .collect();
        drop(db);
        Ok(BackupSummary { trees, ..BackupSummary::of(&header, (bytes, chunks, pages), true) })
    })();
    match result {
        Ok(s) => {
            std::fs::rename(&tmp, dst)?;
            crate::storage::wal::remove_sidecar(dst)?;
            crate::storage::sync_parent_dir(dst)?;
            tracing::info!(target: "foldvault::audit", seq = s.seq, pages = s.pages, "backup restored");
            Ok(s)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn temp_path(dst: &Path) -> PathBuf {
    let mut r = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut r);
    let name = dst.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "db".into());
    dst.with_file_name(format!(".{name}.restore-{}", crate::format::page::hex(&r)))
}

#[allow(dead_code)]
fn _unused(_: PageRef) {}
