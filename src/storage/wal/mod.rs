//! Write-ahead log storage: a database file and a sidecar log, seen by the engine as one file.
//!
//! Layer: storage (bottom). May call only `std`, `parking_lot`, `crc32fast`, `rand`, `tracing`
//! and `crate::error`; nothing in the crate sits below it. Contains no `unsafe`.
//!
//! Why (SPEC.md §15, BENCHMARKS.md "Eighth session"): a durable commit of the copy-on-write tree
//! writes its pages wherever the allocator put them, five to seven separate runs across the file,
//! and syncs; the sync's cost grows with their number and spread. Here `sync` appends every write
//! made since the previous sync as one contiguous *group* to the log and syncs the log only. The
//! pages reach the database file in a *checkpoint*, sorted, once the log holds
//! `checkpoint_pages` pages (copied on a thread of their own while commits go on: the
//! `checkpoint` module), and when the storage is dropped.
//!
//! Contract: exactly the `Storage` contract, so the engine's one-sync commit (SPEC §5.3) holds
//! unchanged on top: every write before a `sync` that returned is durable (in the log or in the
//! database file); a write after the last returned `sync` may be lost. This module adds no
//! confidentiality or integrity of its own: it carries whole pages as the engine sealed them,
//! each bound to its page number (SPEC §3.1), so a log that is lost, truncated, replayed
//! against the wrong file or edited can roll the database back (as restoring an old copy of the
//! file can) or yield pages that fail to open, never plaintext or forged data.
//!
//! Layout of the log (little-endian, pages of 4096 bytes):
//!
//! ```text
//!   page 0   header: magic "FVWAL\0\0\x01" | salt u64 | owner [32] | crc32 of bytes 0..48 (u32)
//!   page 1.. groups, back to back: an index page, then the group's n pages in index order
//!   index:   magic "FVWALGRP" | salt u64 | seq u64 | n u32 | crc32 u32 | len u64 | 0 u64
//!            | n page numbers u64 (n <= MAX_GROUP)
//!            crc32 covers the index page (its crc field zero) and then the n pages
//! ```
//!
//! Invariants:
//! - a group is written only after the previous one's sync returned, and holds `seq` one above
//!   it; replay at open applies groups from page 1 while the salt matches the header's, the
//!   `seq` runs 0, 1, 2, ... and the checksum holds, so it stops at the first group a crash cut
//!   short, and never applies a group of an earlier log generation;
//! - the database file holds every write up to the last checkpoint, synced; a checkpoint copies
//!   the logged pages home (most in the background, the rest in the sync that ends it), syncs
//!   the database file, and only then writes a header with a new random salt (ending every
//!   group) and syncs the log; a crash in between replays the same bytes again;
//! - reads see, newest first: writes not yet synced (`pending`), the group being synced
//!   (`inflight`), logged pages (`index`), the database file, zeros up to the length;
//! - a group is logged only under a header written this session: a log that holds nothing at
//!   open (none, empty, torn, zero owner) keeps its bytes until the session's first group,
//!   before which a header with a new salt is written and synced (after the log's directory),
//!   so a session that only reads writes nothing; before that header the state found at open
//!   is made durable (`settle_first`): a replayed log is checkpointed (groups of its generation
//!   may lie past the group replay stopped at, if that one was damaged, and must never follow
//!   one of this session's) and the database file synced (what open read from it may have
//!   been written by a process that died before its sync);
//! - a log position named by `index` is not overwritten while a reader can look it up: groups
//!   append past `tail`, and a checkpoint empties `index` before the next group is written;
//! - `owner` is bytes 0..32 of the database file's pages 0 and 1 when the header was written
//!   (magic, version and file id), which both copies of the file header hold; while the two
//!   differ (one damaged, being repaired) the header's owner is zero and no group is logged
//!   (writes go to the file); a log whose owner matches neither copy of the header belongs to
//!   another file and is refused at open (`Error::ForeignLog`), never replayed;
//! - in direct mode a write goes to the database file under the shared lock, so the sealing
//!   threads of a large commit write in parallel; leaving direct mode (`sync`, `set_len`) takes
//!   the lock exclusively, so it follows every such write, and folds their furthest end
//!   (`direct_end`) into the lengths before it uses them;
//! - `write_through` (the database header pages, SPEC §2) is direct mode for one write and the
//!   sync that ends it: the log folded into the file, the page written there, the file synced;
//!   so no group this build writes holds a header page;
//! - more than `max_group` (at most `MAX_GROUP`) pages written before a sync, or a shrinking
//!   `set_len`, make the rest of that group *direct*: the log is checkpointed, then those writes
//!   go to the database file, and the next `sync` syncs that file; a sync that finds more pages
//!   waiting (a writer past the bound, racing it for the lock) goes direct itself, so no group
//!   is ever larger than `max_group`.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock, RwLockWriteGuard};

use crate::error::{Error, Result};
use crate::storage::Storage;
use checkpoint::BackgroundCopy;
pub(crate) use names::{log_for, move_log};
pub use names::{log_of, remove_sidecar, resolve_links, sidecar_path};
pub(crate) use open::is_empty_or_a_log;

const PAGE: usize = 4096;
const P: u64 = PAGE as u64;
/// The log's format version: the last byte of `HEADER_MAGIC`.
pub const LOG_VERSION: u8 = 1;
const HEADER_MAGIC: &[u8; 8] = b"FVWAL\0\0\x01";
const GROUP_MAGIC: &[u8; 8] = b"FVWALGRP";
/// Bytes 0..32 of page 0 of the database file: magic, version, cipher, page size, file id.
const OWNER_LEN: usize = 32;
const HEADER_CRC_AT: usize = 48;
const INDEX_CRC_AT: usize = 28;
const INDEX_ENTRIES_AT: usize = 48;
/// Most pages in one group: as many page numbers as fit in the index page.
pub const MAX_GROUP: usize = (PAGE - INDEX_ENTRIES_AT) / 8;
/// The log grows by at least this many pages at a time, written as zeros, so that most groups
/// overwrite allocated blocks and their sync changes no file metadata.
const GROW_PAGES: u64 = 256;
/// Largest logical length a group may claim (as `MemoryStorage`).
const MAX_LEN: u64 = 1 << 40;
/// Default `checkpoint_pages` (16 MiB of log).
pub const DEFAULT_CHECKPOINT_PAGES: u64 = 4096;

type Page = Box<[u8; PAGE]>;

fn blank() -> Page {
    Box::new([0u8; PAGE])
}

fn get_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

#[derive(Default)]
struct WalState {
    salt: u64,
    /// The owner bytes the header holds.
    owner: [u8; OWNER_LEN],
    /// `seq` of the next group.
    next_seq: u64,
    /// Next free log page (groups start at page 1).
    tail: u64,
    /// Log file length in pages.
    log_pages: u64,
    /// Database page -> log page, for every page logged since the last checkpoint.
    index: HashMap<u64, u64>,
    /// Every (database page, log page) replay applied at open, in log order: each version of
    /// a page, not only the newest (`Storage::logged_versions`). Emptied with `index`.
    replayed: Vec<(u64, u64)>,
    /// Replay at open stopped at a group that fails its checksum or its checks
    /// (`Storage::replay_dropped_a_group`).
    replay_dropped: bool,
    inflight: BTreeMap<u64, Page>,
    pending: BTreeMap<u64, Page>,
    /// The logical length (pending writes included), the length as of the last group (what a
    /// checkpoint gives the database file), and the database file's own.
    len: u64,
    logged_len: u64,
    main_len: u64,
    direct: bool,
    /// The log holds a header this session may append groups under: one written this session
    /// (one replayed at open is replaced first: `settle_first`). A session that never logs a
    /// group writes none (a database opened to read costs no log write and no sync).
    header_written: bool,
    /// The session has logged no group yet: its first waits for the state open found to be
    /// durable, and for a generation of its own (`settle`; `reset_log` clears this). Open read
    /// the file and the log through the OS cache, which may hold writes of a process that died
    /// before its sync; the engine builds on that state (reusing pages it freed), so it must
    /// reach the disk before anything that depends on it. And the session appends no group to
    /// a replayed generation: replay stops at the first group that fails a check, and when that
    /// group was damaged rather than torn by a crash, groups of its generation still follow it,
    /// which a later replay would apply after a group this session wrote in its place.
    settle_first: bool,
    /// What open read (the file, the log's groups) was synced by a sync with nothing to log
    /// (`sync` before `settle`): open's own, so that the commit it found is durable before the
    /// engine names it durable (`Db::durable_root_digest`), writing nothing.
    found_synced: bool,
    /// The log's directory was synced this session (before its first header: the log file may
    /// be new, and `fdatasync` of a file does not promise its directory entry).
    dir_synced: bool,
    /// The log's directory could not be synced (a file system that refuses, a directory this
    /// user cannot open): the log's name may not survive a crash, and the commits logged in it
    /// would go with it, so the session logs nothing. Its headers name no owner (they still
    /// end the groups a log found at open held) and every write goes to the file (`direct`
    /// stays set).
    unlogged: bool,
    /// An I/O error left memory and disk apart: nothing more is written, not even at drop.
    failed: bool,
    /// The first part of a checkpoint, running on its own thread; set and taken only under
    /// `sync_lock`, so one copy runs at a time.
    background: Option<BackgroundCopy>,
}

impl WalState {
    /// Whether a background copy has ended (or the log has grown to twice `checkpoint_pages`
    /// while it runs, so the next group waits for it): the checkpoint's last part is due.
    fn checkpoint_due(&self, checkpoint_pages: u64) -> bool {
        self.background
            .as_ref()
            .is_some_and(|b| b.thread.is_finished() || self.tail >= checkpoint_pages.saturating_mul(2))
    }

    /// Page `pg` as reads see it, if the log layer holds it.
    fn held(&self, pg: u64) -> Option<&Page> {
        self.pending.get(&pg).or_else(|| self.inflight.get(&pg))
    }
}

/// A database file and its write-ahead log as one [`Storage`].
pub struct WalStorage {
    main: Arc<dyn Storage>,
    log: Arc<dyn Storage>,
    state: RwLock<WalState>,
    /// Held by `sync`, checkpoints and `set_len`: one group or checkpoint at a time. Taken
    /// before `state`, never while holding it.
    sync_lock: Mutex<()>,
    checkpoint_pages: u64,
    /// Most pages in one group (`MAX_GROUP` unless lowered for tests).
    max_group: usize,
    /// The log file's path, if it is a file: its directory is synced before the session's first
    /// header, and it is removed after the checkpoint at drop (a clean close leaves one file).
    log_path: Option<PathBuf>,
    /// The furthest end of the writes made to the database file in direct mode under the shared
    /// lock (so that the sealing threads of a large commit write in parallel). Sections that hold
    /// the state exclusively fold it into `len` and `main_len` first (`state_mut`); sections
    /// under the shared lock take the larger of the two (`direct_len`).
    direct_end: AtomicU64,
    /// Checkpoints copy pages home on a thread of their own (`background_checkpoints`).
    in_background: bool,
    /// Drop writes nothing (a read-only open: the log stays for the next read-write open; an
    /// abandoned storage, whose files its owner removes).
    keep_at_close: AtomicBool,
}

impl std::fmt::Debug for WalStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.read();
        f.debug_struct("WalStorage")
            .field("logged_pages", &st.index.len())
            .field("tail", &st.tail)
            .field("len", &self.direct_len(st.len))
            .finish_non_exhaustive()
    }
}

fn crc_of(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

fn owner_of(main: &dyn Storage, main_len: u64, page: u64) -> io::Result<[u8; OWNER_LEN]> {
    let mut o = [0u8; OWNER_LEN];
    if main_len >= page * P + OWNER_LEN as u64 {
        main.read_at(page * P, &mut o)?;
    }
    Ok(o)
}

impl WalStorage {
    /// The state, held exclusively, with the ends of the direct writes made under the shared
    /// lock folded into `len` and `main_len`.
    fn state_mut(&self) -> RwLockWriteGuard<'_, WalState> {
        let mut st = self.state.write();
        let end = self.direct_end.load(Ordering::Acquire);
        st.len = st.len.max(end);
        st.main_len = st.main_len.max(end);
        st
    }

    /// `len` or `main_len` read under the shared lock, with the direct writes' ends.
    fn direct_len(&self, len: u64) -> u64 {
        len.max(self.direct_end.load(Ordering::Acquire))
    }

    /// Lowers the most pages one group may hold (clamped to `1..=MAX_GROUP`), so that tests
    /// reach the direct path with small transactions.
    pub fn max_group(mut self, pages: usize) -> WalStorage {
        self.max_group = pages.clamp(1, MAX_GROUP);
        self
    }

    /// Whether checkpoints copy the logged pages home on a thread of their own (the default), so
    /// that commits go on meanwhile, or within the `sync` that fills the log.
    pub fn background_checkpoints(mut self, on: bool) -> WalStorage {
        self.in_background = on;
        self
    }

    /// A storage whose drop leaves the file and the log as they are (for a read-only open,
    /// whose writes the layers above refuse before they get here).
    pub fn keep_at_close(self) -> WalStorage {
        self.abandon();
        self
    }

    /// Drops the storage as a crash would: no checkpoint, the log left as it is (tests and
    /// fuzzing; a real close lets `Drop` checkpoint). A copy already running in the background
    /// is waited for (it writes and syncs the file), as a process that ends would not.
    pub fn close_as_crash(self) {
        self.state.write().failed = true;
    }

    /// Pages the current log generation holds (while a checkpoint copies in the background,
    /// some of them may already be in the database file).
    pub fn logged_pages(&self) -> usize {
        self.state.read().index.len()
    }

    /// A database growing past `MAX_LEN` (a group's length field, which replay refuses past
    /// it): the session logs nothing more (`unlogged`, as when the log's directory cannot be
    /// synced), what the log holds goes home, and this write and every later one go to the
    /// file. It failed with `InvalidInput`, poisoning the handle (limits review, medium).
    fn stop_logging_past_max_len(&self) -> io::Result<()> {
        let _s = self.sync_lock.lock();
        if self.state.read().unlogged {
            return Ok(());
        }
        tracing::warn!(target: "foldvault::audit", max_bytes = MAX_LEN,
            "the database grows past the write-ahead log's largest length: this session writes to the file alone");
        self.state_mut().unlogged = true;
        self.go_direct().map_err(to_io)
    }

    /// Reads one page (or part of it) as the engine last wrote it; `st` is held.
    fn read_page(&self, st: &WalState, pg: u64, within: usize, out: &mut [u8]) -> io::Result<()> {
        if let Some(p) = st.held(pg) {
            out.copy_from_slice(&p[within..within + out.len()]);
        } else if let Some(&l) = st.index.get(&pg) {
            self.log.read_at(l * P + within as u64, out)?;
        } else {
            let off = pg * P + within as u64;
            let end = off + out.len() as u64;
            let main_len = self.direct_len(st.main_len);
            if end <= main_len {
                self.main.read_at(off, out)?;
            } else if off < main_len {
                let k = (main_len - off) as usize;
                self.main.read_at(off, &mut out[..k])?;
                out[k..].fill(0);
            } else {
                out.fill(0);
            }
        }
        Ok(())
    }
}

fn failed() -> io::Error {
    io::Error::other("write-ahead log: an earlier I/O error left it unusable")
}

fn to_io(e: Error) -> io::Error {
    match e {
        Error::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

impl WalStorage {
    /// `Storage::sync`, with `sync_lock` held.
    fn sync_holding_lock(&self) -> io::Result<()> {
        // Finishing a checkpoint and writing the session's first header let go of the state,
        // and writers may add pages meanwhile: every check runs again after either.
        let mut st = loop {
            let mut st = self.state_mut();
            if st.failed {
                return Err(failed());
            }
            if !st.direct && st.pending.len() > self.max_group {
                // A writer passed the bound after its check and waits for this lock to go
                // direct (writes run while a sync does): go direct for it, so that no group
                // exceeds it.
                drop(st);
                self.go_direct().map_err(to_io)?;
                st = self.state_mut();
            }
            if st.direct {
                // Writes from here on are logged (unless the session logs nothing); those
                // before went to the file this syncs.
                st.direct = st.unlogged;
                let unlogged = st.unlogged;
                let (len, main_len) = (st.len, st.main_len);
                st.logged_len = len;
                drop(st);
                let r = if len > main_len { self.main.set_len(len) } else { Ok(()) };
                // The file's new length is published once the file has it (as a checkpoint's
                // copy does): a reader in between read past the file's end (`UnexpectedEof`),
                // where the pages never written must read as zeros.
                if r.is_ok() {
                    let mut st = self.state_mut();
                    st.main_len = st.main_len.max(len);
                }
                r.and_then(|()| self.main.sync()).inspect_err(|_| self.state.write().failed = true)?;
                // The log is empty since `go_direct`; if this group rewrote the owner bytes, the
                // header must name the new ones before a group is logged against them.
                let owner = self.state.read().owner;
                if !unlogged && owner_of(&*self.main, len.max(main_len), 0)? != owner {
                    self.reset_log().map_err(to_io)?;
                }
                return Ok(());
            }
            if st.checkpoint_due(self.checkpoint_pages) {
                // The copy that ran in the background ends here: what was logged since it
                // began goes home too, the file is synced, and this group (if any) starts the
                // next generation.
                drop(st);
                self.checkpoint().map_err(to_io)?;
                continue;
            }
            if st.pending.is_empty() && st.len == st.logged_len {
                if st.settle_first && !st.found_synced {
                    // Open's sync: the file and the log as open read them, through the OS
                    // cache, made durable (a process that died before its sync may have left
                    // its last group there only). Nothing is written.
                    drop(st);
                    let r = self.main.sync().and_then(|()| self.log.sync());
                    let mut st = self.state_mut();
                    if r.is_err() {
                        st.failed = true;
                    }
                    r?;
                    st.found_synced = true;
                }
                return Ok(());
            }
            if st.settle_first {
                drop(st);
                self.settle().map_err(to_io)?;
                continue;
            }
            if !st.header_written {
                // The session's first group: the header (naming the file's owner bytes as they
                // are now, all durable in the file) goes in first. If the file's two header
                // copies differ, none is written (`reset_log`), and this group goes to the file
                // itself: the open that found one copy damaged repairs it in this group.
                drop(st);
                self.reset_log().map_err(to_io)?;
                if !self.state.read().header_written {
                    self.go_direct().map_err(to_io)?;
                }
                continue;
            }
            break st;
        };
        let group = std::mem::take(&mut st.pending);
        let n = group.len();
        debug_assert!(n <= self.max_group, "a group of {n} pages");
        let (at, seq, salt, len) = (st.tail, st.next_seq, st.salt, st.len);
        let mut buf = vec![0u8; (n + 1) * PAGE];
        buf[..8].copy_from_slice(GROUP_MAGIC);
        buf[8..16].copy_from_slice(&salt.to_le_bytes());
        buf[16..24].copy_from_slice(&seq.to_le_bytes());
        buf[24..28].copy_from_slice(&(n as u32).to_le_bytes());
        buf[32..40].copy_from_slice(&len.to_le_bytes());
        for (i, (pg, page)) in group.iter().enumerate() {
            buf[INDEX_ENTRIES_AT + 8 * i..INDEX_ENTRIES_AT + 8 * i + 8].copy_from_slice(&pg.to_le_bytes());
            buf[(i + 1) * PAGE..(i + 2) * PAGE].copy_from_slice(&page[..]);
        }
        let crc = crc_of(&[&buf]);
        buf[INDEX_CRC_AT..INDEX_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        let end = at + 1 + n as u64;
        let grow_from = st.log_pages;
        let grow_to = if end > grow_from { end.max(grow_from + GROW_PAGES) } else { grow_from };
        st.inflight = group;
        drop(st);
        // A panic in the log's storage leaves the group in flight: the log is failed, as an
        // error leaves it, or the next group took its place in `inflight` and reads lost
        // these pages (concurrency review).
        let unwinding = crate::error::OnPanic::new(|| self.state.write().failed = true);
        let r = (|| -> io::Result<()> {
            if grow_to > grow_from.max(end) {
                let from = grow_from.max(end);
                self.log.write_at(from * P, &vec![0u8; ((grow_to - from) * P) as usize])?;
            }
            self.log.write_at(at * P, &buf)?;
            self.log.sync()
        })();
        drop(unwinding);
        let mut st = self.state_mut();
        if let Err(e) = r {
            st.failed = true;
            return Err(e);
        }
        let group = std::mem::take(&mut st.inflight);
        for (i, pg) in group.keys().enumerate() {
            st.index.insert(*pg, at + 1 + i as u64);
        }
        st.log_pages = grow_to;
        st.tail = end;
        st.next_seq = seq + 1;
        st.logged_len = len;
        let full = st.tail >= self.checkpoint_pages;
        drop(st);
        if full && let Err(e) = self.start_checkpoint() {
            // The group is durable, so this sync succeeded; the log is marked failed and the
            // next operation reports it (the next open replays the log).
            self.state.write().failed = true;
            tracing::error!(target: "foldvault::audit", error = %e, "write-ahead log checkpoint failed; the next open replays the log");
        }
        Ok(())
    }
}

impl Storage for WalStorage {
    fn checkpoint_log(&self) -> io::Result<()> {
        self.checkpoint_now().map_err(to_io)
    }

    fn checkpoint_and_erase_log(&self) -> io::Result<()> {
        self.checkpoint_and_erase_now().map_err(to_io)
    }

    /// Direct mode for one write: the log folded into the file (`go_direct`), the page written
    /// to the file, and the sync that ends direct mode (syncing the file, and starting a new log
    /// generation if the page changed the owner bytes).
    fn write_through(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let _s = self.sync_lock.lock();
        if self.state.read().failed {
            return Err(failed());
        }
        // Any failure or panic on the way fails the log, whatever step it came from (a header
        // page half in place: diff review).
        let unwinding = crate::error::OnPanic::new(|| self.state.write().failed = true);
        let r = (|| -> io::Result<()> {
            self.go_direct().map_err(to_io)?;
            {
                // As `write_at` in direct mode (which a write past `MAX_LEN` would leave for a
                // path that takes `sync_lock`, held here).
                let _st = self.state.read();
                self.main.write_at(offset, buf)?;
                self.direct_end.fetch_max(end, Ordering::AcqRel);
            }
            self.sync_holding_lock()
        })();
        drop(unwinding);
        r.inspect_err(|_| self.state.write().failed = true)
    }

    fn abandon(&self) {
        self.keep_at_close.store(true, Ordering::Release);
    }

    fn replay_dropped_a_group(&self) -> bool {
        self.state.read().replay_dropped
    }

    fn unbacked_runs(&self, below: u64) -> Option<(u64, Vec<(u64, u64)>)> {
        let st = self.state.read();
        let file_len = self.direct_len(st.main_len);
        // A page the file holds in part is not held.
        let first = file_len / P;
        let mut held: Vec<u64> = st
            .index
            .keys()
            .chain(st.pending.keys())
            .chain(st.inflight.keys())
            .copied()
            .filter(|p| (first..below).contains(p))
            .collect();
        held.sort_unstable();
        held.dedup();
        let mut runs = Vec::new();
        let mut at = first;
        for p in held {
            if p > at {
                runs.push((at, p - at));
            }
            at = p + 1;
        }
        if at < below {
            runs.push((at, below - at));
        }
        Some((file_len, runs))
    }

    fn device_syncs(&self) -> u64 {
        self.main.device_syncs() + self.log.device_syncs()
    }

    fn logged_versions(&self, offset: u64, file: &mut [u8], version: &mut dyn FnMut(&[u8])) -> io::Result<bool> {
        let st = self.state.read();
        if !offset.is_multiple_of(P) || file.len() != PAGE || !st.index.contains_key(&(offset / P)) {
            return Ok(false);
        }
        let pg = offset / P;
        if offset + P <= self.direct_len(st.main_len) {
            self.main.read_at(offset, file)?;
        } else {
            file.fill(0);
        }
        let mut page = blank();
        for &(_, at) in st.replayed.iter().filter(|(d, _)| *d == pg) {
            self.log.read_at(at * P, &mut page[..])?;
            version(&page[..]);
        }
        Ok(true)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let st = self.state.read();
        let end = offset.checked_add(buf.len() as u64).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        if end > self.direct_len(st.len) {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        let mut done = 0usize;
        while done < buf.len() {
            let o = offset + done as u64;
            let within = (o % P) as usize;
            let n = (PAGE - within).min(buf.len() - done);
            self.read_page(&st, o / P, within, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        if end > MAX_LEN {
            self.stop_logging_past_max_len()?;
        }
        if buf.is_empty() {
            return Ok(());
        }
        let overflow = loop {
            {
                // Direct mode: straight to the database file under the shared lock. Leaving
                // direct mode (`sync`, `set_len`) takes the lock exclusively, so it waits for
                // these writes.
                let st = self.state.read();
                if st.failed {
                    return Err(failed());
                }
                if st.direct {
                    let r = self.main.write_at(offset, buf);
                    if r.is_ok() {
                        self.direct_end.fetch_max(end, Ordering::AcqRel);
                    }
                    drop(st);
                    return r.inspect_err(|_| self.state.write().failed = true);
                }
            }
            let mut st = self.state_mut();
            if st.failed {
                return Err(failed());
            }
            if st.direct {
                // Direct since the check above (another thread's write went past the bound).
                continue;
            }
            let mut done = 0usize;
            while done < buf.len() {
                let o = offset + done as u64;
                let (pg, within) = (o / P, (o % P) as usize);
                let n = (PAGE - within).min(buf.len() - done);
                let mut page = blank();
                if n < PAGE && pg * P < st.len {
                    let avail = ((st.len - pg * P) as usize).min(PAGE);
                    self.read_page(&st, pg, 0, &mut page[..avail])?;
                }
                page[within..within + n].copy_from_slice(&buf[done..done + n]);
                st.pending.insert(pg, page);
                done += n;
            }
            st.len = st.len.max(end);
            break st.pending.len() > self.max_group;
        };
        if overflow {
            let _s = self.sync_lock.lock();
            if self.state.read().pending.len() > self.max_group {
                self.go_direct().map_err(to_io)?;
            }
        }
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let _s = self.sync_lock.lock();
        self.sync_holding_lock()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.direct_len(self.state.read().len))
    }

    /// The database file's length and the log's: both are on the disk while the file is open.
    fn bytes_on_disk(&self) -> io::Result<u64> {
        Ok(self.main.bytes_on_disk()?.saturating_add(self.log.bytes_on_disk()?))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if len > MAX_LEN {
            self.stop_logging_past_max_len()?;
        }
        let _s = self.sync_lock.lock();
        {
            let mut st = self.state_mut();
            if st.failed {
                return Err(failed());
            }
            if len >= st.len {
                st.len = len;
                return Ok(());
            }
        }
        self.go_direct().map_err(to_io)?;
        let mut st = self.state_mut();
        if let Err(e) = self.main.set_len(len) {
            // A failed cut: the checkpoint above put everything in the database file, and the
            // file keeps a length the OS still knows (a shorter one, if it was half done), all
            // past what the engine reads (a cut goes below its page count only: `Pager::truncate`),
            // so the storage stays usable. Latched, it failed every later write (SPEC §5.2).
            match self.main.len() {
                Ok(now) => {
                    st.main_len = now;
                    st.logged_len = now.min(st.logged_len);
                }
                Err(_) => st.failed = true,
            }
            return Err(e);
        }
        st.main_len = len;
        st.logged_len = len;
        st.len = len;
        // Folded above; a shorter file starts counting direct writes afresh.
        self.direct_end.store(0, Ordering::Release);
        Ok(())
    }
}

impl Drop for WalStorage {
    /// A clean close: the log is checkpointed into the database file and removed. Writes
    /// since the last `sync` are dropped (they were never durable). After an I/O error nothing
    /// is written; the next open replays the log.
    fn drop(&mut self) {
        if self.keep_at_close.load(Ordering::Acquire) {
            // A copy still running is waited for: nothing writes once this storage is gone.
            if let Err(e) = self.join_background() {
                tracing::warn!(target: "foldvault::audit", error = %e, "write-ahead log checkpoint failed at close");
            }
            return;
        }
        let _s = self.sync_lock.lock();
        // A copy still running is waited for even after an error: nothing may write to the
        // database file once this storage is gone.
        let from = match self.join_background() {
            Ok(from) => from,
            Err(e) => {
                tracing::error!(target: "foldvault::audit", error = %e, "write-ahead log checkpoint failed; the next open replays the log");
                return;
            }
        };
        let failed = {
            let mut st = self.state.write();
            st.pending.clear();
            st.failed
        };
        if failed {
            return;
        }
        // The log's groups are ended by a new salt before it is removed, and the removal is
        // made durable. Either alone is not enough: the directory sync can fail (only logged
        // here), and a log that came back after a crash would be replayed over what a later
        // session wrote to the file without a log. A log with nothing logged since its last
        // new salt holds no group already.
        let closed = match &self.log_path {
            Some(p) => {
                self.copy_home(from).and_then(|copied| if copied { self.reset_log().map(|()| copied) } else { Ok(copied) }).and_then(|copied| {
                    // A log this session wrote to is emptied first: another name of it (a hard
                    // link) kept every page of the session once this one was gone (file
                    // review). Its groups are ended already, so a failure here only leaves
                    // them. A log it wrote nothing to is left as it is: a close writes nothing
                    // it need not (an in-place conversion's source, whose emptied log then
                    // names the new file).
                    if copied && let Err(e) = self.log.set_len(0) {
                        tracing::warn!(target: "foldvault::audit", error = %e, "the write-ahead log could not be emptied at close");
                    }
                    match std::fs::remove_file(p) {
                        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                        Err(e) => Err(e.into()),
                        // A session that logged nothing because this directory does not sync
                        // (`unlogged`): the log's groups are ended already, and a failure
                        // here is expected, said as a new name's is (`sync_new_name`).
                        Ok(()) if self.state.read().unlogged => Ok(crate::storage::sync_new_name(p).map(drop)?),
                        Ok(()) => Ok(crate::storage::sync_parent_dir(p)?),
                    }
                })
            }
            None => self.end_checkpoint(from),
        };
        match closed {
            Ok(()) => {}
            Err(e) => {
                tracing::error!(target: "foldvault::audit", error = %e, "write-ahead log checkpoint at close failed")
            }
        }
    }
}

mod checkpoint;
mod names;
mod open;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod unwind_tests;
