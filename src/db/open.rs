//! Creating and opening a database file: header, key slots, recovery. SPEC.md §2, §5.2.
//!
//! Recovery at open: the valid header copy with the highest generation is the header; in
//! encrypted mode a key slot must unwrap (else `WrongKey`) and the header MAC verify (else
//! `Corrupt { page, HeaderMac }`). Then the commit records are tried newest first; one is
//! accepted when it opens and every page written since the durable commit before it verifies
//! (`btree::verify::verify_since`) along with its free list. A rejected newer record is the
//! signature of a commit whose sync never returned; it is logged to `foldvault::audit`.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};

use parking_lot::{Mutex, RwLock};
use rand::RngCore;

use super::config::{Config, Encryption};
use super::engine::{Engine, RecoveryReport, Snapshot, WriterState};
use crate::btree::{TreeRoot, read, verify};
use crate::crypto::cipher::CipherId;
use crate::crypto::keys::SecretKey;
use crate::crypto::seal::{DataKeys, PageSealer};
use crate::crypto::slots::{self, Credentials};
use crate::error::{CorruptReason, Error, PageNo, Result};
use crate::format::commit::CommitRecord;
use crate::format::header::{FLAG_ENCRYPTED, FileHeader, SlotKind, ZeroedOption};
use crate::format::page::PageRef;
use crate::format::{
    COMMIT_PAGE_A, COMMIT_PAGE_B, FIRST_DATA_PAGE, FORMAT_VERSION, HEADER_PAGE_A, HEADER_PAGE_B, PAGE_SIZE,
};
use crate::pager::Pager;
use crate::pager::alloc::Allocator;
use crate::pager::freelist;
use crate::storage::Storage;

/// A new database's header, key slots made, and its sealer: all of a creation that takes
/// time (a passphrase's Argon2id) or may be refused, made before any file is, so that a
/// creation killed in that time leaves no empty file the next open would refuse as a database
/// truncated to nothing (`Db::open`, `api::open_config`).
pub(crate) struct NewDatabase {
    header: FileHeader,
    sealer: PageSealer,
}

/// Prepares a new database for `cfg` and `creds` ([`NewDatabase`]; written by [`create`]).
pub(crate) fn prepare_create(cfg: &Config, creds: &Credentials) -> Result<NewDatabase> {
    // A rollback anchor names a database that has commits: a missing or empty file in its
    // place (deleted, or truncated to nothing) is that database rolled back, not a new one.
    if let Some(min) = cfg.min_commit_seq.filter(|&m| m > 0) {
        return Err(Error::RolledBack { expected: min, found: 0 });
    }
    if cfg.expected_root_digest.is_some() {
        return Err(Error::RootDigestMismatch);
    }
    let encrypt = match cfg.encryption {
        Encryption::Plaintext => {
            // A key given in code is not used (one configuration for both kinds, `plaintext()`
            // toggled, is a way to use it): said as an open of a plaintext file with a key is,
            // where it was an info line at most (config review, low).
            if !cfg.credentials.is_empty() {
                tracing::warn!(
                    target: "foldvault::audit",
                    event = "plaintext_with_key",
                    "a key was given but plaintext() was asked for: the database is made unencrypted and the key is not used"
                );
            }
            false
        }
        Encryption::Required => {
            if creds.is_empty() {
                return Err(Error::WrongKey { hint: "encryption is required but no key or passphrase was given" });
            }
            true
        }
        Encryption::Auto => !creds.is_empty(),
    };
    let mut file_id = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut file_id);
    let mut header = FileHeader {
        version: FORMAT_VERSION,
        cipher: if encrypt { cfg.cipher } else { CipherId::None },
        file_id,
        generation: 1,
        flags: if encrypt { FLAG_ENCRYPTED } else { 0 },
        next_key: ZeroedOption::NONE,
        slots: Default::default(),
        mac: [0; 32],
        raw_body: Default::default(),
    };
    let sealer = if encrypt {
        if cfg.cipher == CipherId::None {
            return Err(Error::InvalidConfig("an encrypted database needs a cipher"));
        }
        let dk = SecretKey::random();
        let kind = creds.natural_kind().ok_or(Error::InvalidConfig("no credentials"))?;
        slots::refuse_guessable_key(kind, creds)?;
        header.slots[0].set(Some(slots::make_slot(kind, cfg.kdf, creds, &dk, &file_id, 0)?));
        // A recovery key given beside a passphrase or master key gets a slot of its own: it
        // was dropped, and a database made "with a recovery key" did not open with it.
        if kind != SlotKind::RecoveryKey && creds.recovery.is_some() {
            slots::refuse_guessable_key(SlotKind::RecoveryKey, creds)?;
            header.slots[1].set(Some(slots::make_slot(SlotKind::RecoveryKey, cfg.kdf, creds, &dk, &file_id, 1)?));
        }
        header.mac = slots::header_mac(&dk, &header.encode_body()[..]);
        // Fail early if the backend is missing (e.g. a cipher whose feature is off).
        let backends = cfg.backends();
        crate::crypto::cipher::new_page_aead(cfg.cipher, backends, &dk)?;
        PageSealer::encrypted(file_id, cfg.cipher, backends, DataKeys::single(dk), 0)
    } else {
        PageSealer::plaintext(file_id)
    };
    Ok(NewDatabase { header, sealer })
}

/// Writes the new database `new` ([`prepare_create`]) into empty `storage`, synced.
pub(crate) fn create(storage: Arc<dyn Storage>, cfg: &Config, new: NewDatabase) -> Result<Engine> {
    let NewDatabase { header, sealer } = new;
    let encrypt = sealer.is_encrypted();
    let pager = Arc::new(Pager::new(storage, sealer, cfg.cache_capacity));
    let bytes = header.encode();
    let rec = CommitRecord {
        seq: 0,
        prev_durable_seq: 0,
        catalog: PageRef::NONE,
        freelist: PageRef::NONE,
        page_count: FIRST_DATA_PAGE,
        key_epoch: 0,
        oldest_epoch: 0,
        seals_in_epoch: 1,
        header_generation: 1,
        rekey_cursor: 0,
        free_delta: Default::default(),
    };
    pager.write_commit(COMMIT_PAGE_A, &rec)?;
    pager.write_raw(COMMIT_PAGE_B, &[0u8; PAGE_SIZE])?;
    // The header's two copies into the file itself, never into a log (SPEC §15), with the
    // commit pages above (a log puts them in the file before them): a later key change must
    // leave no copy of these slots behind, and the file alone is the whole database. One sync
    // for all four (no order among them on the disk: a creation killed before it returns
    // leaves no database).
    pager.write_raw_through(HEADER_PAGE_A, &[&bytes[..], &bytes[..]].concat())?;
    tracing::info!(target: "foldvault::audit", encrypted = encrypt, "database created");
    Ok(assemble(
        pager,
        header,
        rec,
        COMMIT_PAGE_A,
        Vec::new(),
        Vec::new(),
        BTreeMap::new(),
        cfg,
        RecoveryReport::default(),
    ))
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    pager: Arc<Pager>,
    header: FileHeader,
    rec: CommitRecord,
    slot: PageNo,
    free_chain: Vec<PageNo>,
    free: Vec<(PageNo, u32)>,
    trees: BTreeMap<Vec<u8>, TreeRoot>,
    cfg: &Config,
    recovery: RecoveryReport,
) -> Engine {
    pager.set_page_limit(rec.page_count);
    pager.set_wipe_cache(cfg.zeroize_cache);
    // During a key rotation every seal from its start on is under its first epoch or a later
    // one (SPEC §6.4), whatever the newest record's epoch: a crash or a close right after the
    // start leaves a record under the old one, and sealing there again would put data written
    // after the rotation began under the key it is retiring.
    let (epoch, seals_in_epoch) = match header.next_key.as_ref().map(|n| n.first_epoch) {
        Some(first) if rec.key_epoch < first => (first, 0),
        _ => (rec.key_epoch, rec.seals_in_epoch),
    };
    pager.set_seals_in_epoch(seals_in_epoch);
    pager.sealer.set_max_epoch(epoch);
    let alloc = Allocator::new(rec.page_count, &free);
    pager.counters.free_pages.store(alloc.unused_count(), std::sync::atomic::Ordering::Relaxed);
    Engine {
        header: Mutex::new(header),
        current: RwLock::new(Arc::new(Snapshot::new(&pager, rec.seq, rec.catalog, trees.into(), None))),
        writer: Arc::new(Mutex::new(WriterState {
            alloc,
            durable: rec.clone(),
            durable_slot: slot,
            freelist: freelist::FreeChain::read_at_open(free_chain),
            retained: Vec::new(),
            epoch,
            retiring_keys: Vec::new(),
            allocator_out: false,
        })),
        durability: cfg.durability,
        seal_budget: cfg.seal_budget,
        spill_after: cfg.spill_after,
        undurable: AtomicBool::new(false),
        rekey_running: AtomicBool::new(false),
        sync_lock: parking_lot::Mutex::new(()),
        recovery,
        ids: Mutex::new((0, 0)),
        durable_seq: AtomicU64::new(rec.seq),
        durable_root: Mutex::new((rec.seq, rec.catalog)),
        watchers: Default::default(),
        writer_owner: Arc::new(AtomicU64::new(0)),
        #[cfg(feature = "tokio")]
        writer_task: Mutex::new(None),
        flush_in_tx: Mutex::new(Vec::new()),
        flush_asks: AtomicUsize::new(0),
        checkpoint_on_close: cfg.checkpoint_on_close && !cfg.read_only,
        pager,
    }
}

/// Reads both header copies; returns the chosen one, its page, and whether the other needs repair.
pub(crate) fn read_header(storage: &dyn Storage) -> Result<(FileHeader, PageNo, bool)> {
    let len = storage.len()?;
    if len < 2 * PAGE_SIZE as u64 {
        // Truncated only if what is there starts as a database does.
        let mut magic = [0u8; 8];
        if len < 8 || {
            storage.read_at(0, &mut magic)?;
            magic != crate::format::MAGIC
        } {
            return Err(Error::NotADatabase);
        }
        return Err(Error::Truncated { expected: 2 * PAGE_SIZE as u64, found: len });
    }
    // The copy with the higher generation (copy A of two alike), and each valid copy's
    // generation and first 32 bytes. Decoded headers stay off the heap here: a header's empty
    // slots carry whatever bytes the stack held (uninitialised, moved with it), which a list
    // of them freed would leave in the heap (`tests/plaintext_frees.rs` found user keys so).
    let mut best: Option<(FileHeader, PageNo)> = None;
    let mut seen: [Option<(u64, [u8; 32])>; 2] = [None, None];
    let mut failures = [None, None];
    for (i, page) in [HEADER_PAGE_A, HEADER_PAGE_B].into_iter().enumerate() {
        let mut buf = vec![0u8; PAGE_SIZE];
        storage.read_at(page * PAGE_SIZE as u64, &mut buf)?;
        match FileHeader::decode(&buf, page) {
            Ok(h) => {
                let mut owner = [0u8; 32];
                owner.copy_from_slice(&buf[..32]);
                seen[i] = Some((h.generation, owner));
                if best.as_ref().is_none_or(|(b, _)| h.generation > b.generation) {
                    best = Some((h, page));
                }
            }
            Err(e) => {
                tracing::warn!(target: "foldvault::audit", page, error = %e, "header copy rejected");
                failures[i] = Some(e);
            }
        }
    }
    // Two valid copies that differ in their first 32 bytes (which name the file to its log,
    // SPEC §15) are made one again too: until they agree, the log is not used.
    let repair = match seen {
        [Some(a), Some(b)] => a != b,
        _ => true,
    };
    match best {
        Some((h, p)) => Ok((h, p, repair)),
        None => Err(crate::format::header::most_telling(failures)),
    }
}

/// Unlocks an encrypted header: the data key, or `WrongKey` (audited); then checks the header
/// MAC. Every open of a database, a backup or a page dump with a key comes through here.
pub(crate) fn unlock(header: &FileHeader, page: PageNo, creds: &Credentials) -> Result<(SecretKey, usize)> {
    unlock_unaudited(header, page, creds).inspect_err(|e| {
        if matches!(e, Error::WrongKey { .. }) {
            audit_wrong_key();
        }
    })
}

/// `unlock` without the audit event, for a caller that only asks whether `creds` open the file
/// (and acts on either answer).
fn unlock_unaudited(header: &FileHeader, page: PageNo, creds: &Credentials) -> Result<(SecretKey, usize)> {
    let (dk, slot) = slots::unlock(header, creds)?;
    if !slots::verify_header_mac(&dk, header) {
        return Err(Error::corrupt(page, CorruptReason::HeaderMac));
    }
    Ok((dk, slot))
}

/// The commit records in slots A and B that open, with their slots, and the slots holding bytes
/// that do not open (a record torn by a crash, or altered: logged to `foldvault::audit`). An I/O
/// error is returned. For open's recovery and for salvage's reading of a source that does not
/// open.
pub(crate) fn commit_slots(pager: &Pager) -> Result<(Vec<(CommitRecord, PageNo)>, Vec<PageNo>)> {
    let (mut records, mut rejected) = (Vec::new(), Vec::new());
    for slot in [COMMIT_PAGE_A, COMMIT_PAGE_B] {
        match pager.read_commit(slot) {
            Ok(r) => records.push((r, slot)),
            Err(e @ Error::Io(_)) => return Err(e),
            Err(e) => {
                if pager.read_raw(slot)?.iter().any(|&b| b != 0) {
                    tracing::warn!(target: "foldvault::audit", slot, error = %e, "commit record does not open");
                    rejected.push(slot);
                }
            }
        }
    }
    Ok((records, rejected))
}

/// The audit event of an attempt with a key or passphrase that opens no slot.
pub(crate) fn audit_wrong_key() {
    tracing::warn!(target: "foldvault::audit", event = "wrong_key", "no key slot opened with the credentials given");
}

/// A replayed log whose copies of the header pages are older than the file's own (a log left
/// beside another name of the file by a crash, the header changed since through that name):
/// `StaleLog` (the numbers: header generations), before the header it would put back is
/// unlocked, where the credentials of the newer header fail as `WrongKey`. A log's copy of a
/// header page is never older than the file's: a checkpoint copies it home before a new
/// generation of the log begins (SPEC §15). The generations compared are unauthenticated:
/// they decide only which error an open that cannot succeed gives.
fn refuse_stale_logged_header(storage: &dyn Storage) -> Result<()> {
    for page in [HEADER_PAGE_A, HEADER_PAGE_B] {
        let mut own = vec![0u8; PAGE_SIZE];
        let mut last = None;
        let held = storage.logged_versions(page * PAGE_SIZE as u64, &mut own, &mut |v| {
            // Oldest first: the last is the one replay puts in place (compared if it decodes).
            last = Some(FileHeader::decode(v, page).ok().map(|h| h.generation));
        })?;
        let logged = last.flatten();
        if let (true, Some(log_gen), Ok(file)) = (held, logged, FileHeader::decode(&own, page))
            && log_gen < file.generation
        {
            tracing::error!(target: "foldvault::audit", page, log_generation = log_gen,
                file_generation = file.generation, "the write-ahead log's header pages are older than the file's; not replayed");
            return Err(Error::StaleLog { log_seq: log_gen, file_seq: file.generation });
        }
    }
    Ok(())
}

/// Opens an existing database.
pub(crate) fn open(storage: Arc<dyn Storage>, cfg: &Config, creds: &Credentials, writable: bool) -> Result<Engine> {
    refuse_stale_logged_header(&*storage)?;
    let (header, header_page, repair) = read_header(&*storage)?;
    let sealer = if header.is_encrypted() {
        let (dk, _slot) = unlock(&header, header_page, creds)?;
        // A cipher or backend this build lacks is `Unsupported` here, not a commit record that
        // fails to open (which recovery would report as corruption).
        let backends = cfg.backends();
        crate::crypto::cipher::new_page_aead(header.cipher, backends, &dk)?;
        // The data key moves into the sealer: no second copy is made (with `file_sealer`'s
        // copy, the key-memory unit test failed twice in CI's feature run, 0ac2b39).
        let keys = DataKeys::with_next(dk, &header.file_id, header.next_key.as_ref())?;
        PageSealer::encrypted(header.file_id, header.cipher, backends, keys, u32::MAX).with_version(header.version)
    } else {
        if cfg.encryption == Encryption::Required {
            return Err(Error::Unsupported("the database is plaintext but encryption is required".into()));
        }
        if !creds.is_empty() {
            // A key was given for a file that needs none: a plaintext file put in place of an
            // encrypted one reads this way (SPEC §12, known gaps). Said, not refused.
            tracing::warn!(
                target: "foldvault::audit",
                event = "plaintext_with_key",
                "a key was given but the database is plaintext; it was not used (Encryption::Required refuses such a file)"
            );
        }
        file_sealer(&header, None, cfg.backends)?
    };
    let pager = Arc::new(Pager::new(storage.clone(), sealer, cfg.cache_capacity));
    if !writable {
        pager.set_read_only();
    }
    let file_len = storage.len()?;
    let (mut candidates, rejected) = commit_slots(&pager)?;
    check_log_is_not_stale(&pager)?;
    // Newest first; of two records of one commit (a clean close writes the second), the one
    // that needs no verification; of two alike there, the one counting more seals (the later
    // written: a clean close counts the seals of a dropped transaction's early-written leaves,
    // which the next session must not seal under the same epoch again).
    candidates.sort_by_key(|(r, _)| std::cmp::Reverse((r.seq, r.prev_durable_seq, r.key_epoch, r.seals_in_epoch)));
    let mut report = RecoveryReport {
        rejected_slots: rejected,
        log_group_dropped: storage.replay_dropped_a_group(),
        ..RecoveryReport::default()
    };
    let mut chosen = None;
    let mut first_err: Option<Error> = None;
    for (rec, slot) in candidates {
        let need = rec.page_count.saturating_mul(PAGE_SIZE as u64);
        let attempt = if file_len < need {
            // A commit whose sync never returned may have reached the disk without the
            // file's new length; a truncated file looks the same. Either way: fall back.
            Err(Error::Truncated { expected: need, found: file_len })
        } else {
            pager.set_page_limit(rec.page_count);
            pager.sealer.set_max_epoch(rec.key_epoch);
            match verify_commit(&pager, &rec, slot) {
                Ok(v) => held_or_free(&*storage, rec.page_count, &v.1).map(|()| v),
                Err(e) => Err(cut_short(&*storage, rec.page_count, e)),
            }
        };
        match attempt {
            Ok((trees, free, chain, verified)) => {
                report.pages_verified = verified;
                chosen = Some((rec, slot, trees, free, chain));
                break;
            }
            Err(e @ (Error::Corrupt { .. } | Error::Truncated { .. })) => {
                tracing::warn!(target: "foldvault::audit", seq = rec.seq, error = %e,
                    "newest commit does not verify; falling back to the previous durable commit");
                pager.clear_cache();
                report.fell_back = true;
                first_err.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    let Some((rec, slot, trees, free, chain)) = chosen else {
        return Err(first_err.unwrap_or_else(|| Error::corrupt(COMMIT_PAGE_A, CorruptReason::NoValidCommit)));
    };
    report.seq = rec.seq;
    if rec.header_generation > header.generation {
        // The header is older than the commits made under it: an old header was put back.
        return Err(Error::corrupt(header_page, CorruptReason::HeaderField));
    }
    if let Some(min) = cfg.min_commit_seq
        && rec.seq < min
    {
        return Err(Error::RolledBack { expected: min, found: rec.seq });
    }
    // Both anchors are checked before this open writes anything (a header repair, a sync).
    if let Some(d) = cfg.expected_root_digest {
        let have = super::engine::root_digest(&header.file_id, rec.seq, rec.catalog);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&have[..], &d[..])) {
            return Err(Error::RootDigestMismatch);
        }
    }
    if writable {
        // A log replayed here that holds a copy of a header page (written by an earlier build,
        // which logged the header pages: this one writes them through, SPEC §15) is folded into
        // the file and erased below, so that the old copy, its key slots or a rotation's next-key
        // block, stays neither in the file's header pages until a checkpoint nor in the log's
        // bytes (diff review). Asked before a repair, whose write through the log empties its
        // index: asked after, a repair (an earlier build's update cut between its copies) hid
        // the logged copy, and the log kept it (diff review, medium-high).
        let mut scratch = vec![0u8; PAGE_SIZE];
        let mut logged_header = false;
        for page in [HEADER_PAGE_A, HEADER_PAGE_B] {
            logged_header |= storage.logged_versions(page * PAGE_SIZE as u64, &mut scratch, &mut |_| ())?;
        }
        if repair {
            let other = if header_page == HEADER_PAGE_A { HEADER_PAGE_B } else { HEADER_PAGE_A };
            pager.write_raw_through(other, &header.to_page()[..])?;
            report.header_repaired = Some(other);
        }
        // The commit chosen was read through the OS cache: a process that died before its sync
        // leaves it there, not yet on the disk. The engine takes it as durable (the pages it
        // freed are reused at once), so it is made durable first: otherwise a power loss after
        // the next commit's writes could find the previous commit's pages overwritten and this
        // one missing. (Over a write-ahead log this syncs nothing now; the log does the same
        // before its first group or direct write. Not counted in the metrics: it commits
        // nothing.)
        storage.sync()?;
        if logged_header {
            pager.checkpoint_and_erase_log()?;
        }
    }
    Ok(assemble(pager, header, rec, slot, chain, free, trees, cfg, report))
}

type Verified = (BTreeMap<Vec<u8>, TreeRoot>, Vec<(PageNo, u32)>, Vec<PageNo>, u64);

/// A page that did not open because neither the file nor its log holds it (`unbacked_runs`)
/// is the file cut short under its log: `Truncated`, not the page's damage.
fn cut_short(storage: &dyn Storage, page_count: u64, e: Error) -> Error {
    let Error::Corrupt { page, .. } = e else { return e };
    let Some((file_len, runs)) = storage.unbacked_runs(page_count) else { return e };
    match runs.iter().any(|&(start, n)| (start..start.saturating_add(n)).contains(&page)) {
        true => Error::Truncated { expected: page.saturating_add(1).saturating_mul(PAGE_SIZE as u64), found: file_len },
        false => e,
    }
}

/// Every page below `page_count` that neither the file nor its log holds (`unbacked_runs`) is
/// free in the commit: one that is not is the file cut short under its log, `Truncated` (the
/// log's length stands in for the file's, and the page would read as zeros). Free pages may
/// be missing: a page allocated and freed again before it was ever written is never logged.
fn held_or_free(storage: &dyn Storage, page_count: u64, free: &[(PageNo, u32)]) -> Result<()> {
    let Some((file_len, runs)) = storage.unbacked_runs(page_count) else { return Ok(()) };
    if runs.is_empty() {
        return Ok(());
    }
    let mut extents: Vec<(u64, u64)> = free.iter().map(|&(p, n)| (p, p.saturating_add(u64::from(n)))).collect();
    extents.sort_unstable();
    let mut next = 0; // the first extent that may still cover a run
    for (start, n) in runs {
        let end = start.saturating_add(n);
        let mut at = start;
        while at < end {
            while next < extents.len() && extents[next].1 <= at {
                next += 1;
            }
            match extents.get(next) {
                Some(&(s, e)) if s <= at => at = e.min(end),
                _ => {
                    return Err(Error::Truncated {
                        expected: (at + 1).saturating_mul(PAGE_SIZE as u64),
                        found: file_len,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Verifies a commit record's new pages; returns the catalog, the free pages (its chain's, with
/// its delta applied, as extents), the free-list chain and the number of pages verified. `slot`: the
/// record's page.
fn verify_commit(pager: &Pager, rec: &CommitRecord, slot: PageNo) -> Result<Verified> {
    let since = rec.prev_durable_seq;
    let mut verified = verify::verify_since(pager, rec.catalog, since)?;
    let trees = load_catalog(pager, rec.catalog)?;
    for root in trees.values() {
        verified += verify::verify_since(pager, root.root, since)?;
    }
    let (free, chain) = freelist::read(pager, rec.freelist, rec.page_count)?;
    let free = freelist::apply_delta(free, &chain, &rec.free_delta, slot)?;
    verified += chain.len() as u64;
    Ok((trees, free, chain, verified))
}

/// Reads the whole catalog (tree name → root).
pub(crate) fn load_catalog(pager: &Pager, catalog: PageRef) -> Result<BTreeMap<Vec<u8>, TreeRoot>> {
    let mut entries = Vec::new();
    read::collect_range(pager, None, catalog, Bound::Unbounded, Bound::Unbounded, &mut entries)?;
    let mut trees = BTreeMap::new();
    for (name, mut v) in entries {
        // An entry that is not a tree root is damage to the leaf that holds it (not to the
        // catalog's root, nor to the page an overflow reference there names).
        let bad = || Error::corrupt(catalog_leaf_of(pager, catalog, &name), CorruptReason::BadLayout);
        let bytes = v.take_inline().ok_or_else(bad)?;
        let root = TreeRoot::decode(&bytes).ok_or_else(bad)?;
        trees.insert(name, root);
    }
    Ok(trees)
}

/// The catalog leaf that holds `name`'s entry, for an error about that entry; the catalog's
/// root if the walk there fails.
pub(crate) fn catalog_leaf_of(pager: &Pager, catalog: PageRef, name: &[u8]) -> PageNo {
    match read::Cursor::seek_ge(pager, catalog, Some(name), false) {
        Ok(Some(c)) => c.leaf_page(),
        _ => catalog.page,
    }
}

/// The page sealer of a whole file, from its header: the file's format version (bound into
/// every page's seal) and, during an unfinished rotation, both data keys. For the readers that
/// open every page without opening the database (backup verify and restore, pagedump, salvage),
/// and for `open` of a plaintext file. `backends`: `None` for the default, chosen only if a key
/// is given.
pub(crate) fn file_sealer(
    fh: &FileHeader,
    dk: Option<&SecretKey>,
    backends: Option<crate::CipherBackends>,
) -> Result<PageSealer> {
    Ok(match dk {
        Some(dk) => PageSealer::encrypted(
            fh.file_id,
            fh.cipher,
            backends.unwrap_or_default(),
            DataKeys::with_next(dk.duplicate(), &fh.file_id, fh.next_key.as_ref())?,
            u32::MAX,
        )
        .with_version(fh.version),
        None => PageSealer::plaintext(fh.file_id).with_version(fh.version),
    })
}

/// The check of `check_log_is_not_stale` for a caller that folds a log in without opening the
/// database (a forced restore, over the file it replaces): `storage` is the file under its
/// replayed log, and `creds` must unlock it (`WrongKey` otherwise, not audited: the caller
/// asks only whether the log may be folded in, and sets it aside if not).
pub(crate) fn check_log_is_current(storage: Arc<dyn Storage>, creds: &Credentials) -> Result<()> {
    refuse_stale_logged_header(&*storage)?;
    let (header, page, _) = read_header(&*storage)?;
    let dk = match header.is_encrypted() {
        true => Some(unlock_unaudited(&header, page, creds)?.0),
        false => None,
    };
    let pager = Pager::new(storage, file_sealer(&header, dk.as_ref(), None)?, 64 * PAGE_SIZE);
    check_log_is_not_stale(&pager)
}

/// A log replayed at open must be newer than the file (SPEC §15, "Replay at open"). Each
/// commit record names the durable commit it was built on (`prev_durable_seq`), and the log's
/// records are built on the commit the file held, synced, when the log's generation began, or
/// on later ones: the least of them, `base`, is that commit. Since then the file's commit
/// slots have taken only checkpoint copies of logged records, and a record torn by a crash
/// before its sync into the slot the base was not in (a large commit goes to the file
/// directly), built on the base itself; the open after such a crash falls back to the base, and
/// the next session commits on it again, through the log, with sequence numbers the torn record
/// may already have passed. So the file went on without the log — committed to by a name the
/// log is not beside (a hard link), or the log was put back — and replaying it would put older
/// pages over later commits (`StaleLog`), when a record in the file that is not a logged one
/// is built on a later commit than the base, or when neither slot holds the base, a logged
/// record, or a page a crash tore. A slot of zeros was never written (a new file's second
/// slot, SPEC §5): it is not a torn record, and a file put back as it was made, with one there,
/// is refused too. (A sealed record is never a zero sector, nor is a plaintext one's first: a
/// torn copy over a record leaves some of it.) (A file that went on by one durable record without the log,
/// with no clean close after it, is built on the base too, and is not told apart from a torn
/// record.)
fn check_log_is_not_stale(pager: &Pager) -> Result<()> {
    // Each slot as the file holds it: its record if it opens, whether it is a logged one, and
    // whether it is blank (never written).
    let (mut file_slots, mut logged, mut unheld) = (Vec::new(), Vec::new(), Vec::new());
    for slot in [COMMIT_PAGE_A, COMMIT_PAGE_B] {
        match pager.slot_under_log(slot)? {
            Some(s) => {
                logged.extend(s.logged);
                file_slots.push((s.file, s.file_is_logged, s.file_is_blank));
            }
            None => unheld.push(slot),
        }
    }
    let Some(base) = logged.iter().map(|r| r.prev_durable_seq).min() else { return Ok(()) };
    for slot in unheld {
        // No log holds the slot: the pager reads the file's own record there.
        match pager.read_commit(slot) {
            Ok(r) => file_slots.push((Some(r), false, false)),
            Err(e @ Error::Io(_)) => return Err(e),
            Err(_) => {
                let blank = pager.read_raw(slot).is_ok_and(|b| b.iter().all(|&x| x == 0));
                file_slots.push((None, false, blank));
            }
        }
    }
    let unlogged = || file_slots.iter().filter(|(_, is_logged, _)| !is_logged).filter_map(|(r, _, _)| r.as_ref());
    let built_on_later = unlogged().find(|r| r.prev_durable_seq > base);
    let base_is_there = file_slots.iter().any(|(r, is_logged, blank)| {
        *is_logged
            || match r {
                Some(r) => r.seq == base,
                None => !blank,
            }
    });
    let stale = match built_on_later {
        Some(r) => Some(r),
        None if !base_is_there => unlogged().max_by_key(|r| r.seq),
        None => None,
    };
    if let Some(file) = stale {
        let log_seq = logged.iter().map(|r| r.seq).min().unwrap_or(base);
        tracing::error!(target: "foldvault::audit", log_seq, file_seq = file.seq, log_base = base,
            file_base = file.prev_durable_seq, "the write-ahead log is older than the file; not replayed");
        return Err(Error::StaleLog { log_seq, file_seq: file.seq });
    }
    Ok(())
}
