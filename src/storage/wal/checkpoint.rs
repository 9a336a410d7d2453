//! Checkpoints of the write-ahead log (SPEC.md §15): the logged pages copied home into the
//! database file, the file synced, then a new log generation.
//!
//! Layer: storage, part of `WalStorage`. Contains no `unsafe`.
//!
//! A checkpoint starts once a group brings the log to `checkpoint_pages`. Its first part, the
//! copy, runs on a thread of its own (`BackgroundCopy`) so that commits go on being logged
//! meanwhile: the newest version of every page logged below the tail of that moment goes to
//! its place in the database file, which is then extended to the logged length of that moment
//! and synced. Its last part runs in the first `sync` after the copy ended (one with nothing to
//! log too; once the log reaches twice `checkpoint_pages`, that sync waits for the copy), or in
//! whatever else checkpoints first (`checkpoint_now`, a direct write, a shrinking `set_len`, a
//! clean close): the pages logged since the copy began go home too (the file synced again if
//! there were any), and a header with a new salt ends every group in the log, which the next
//! group starts again from page 1.
//!
//! Invariants:
//! - the log is reset only after every page it holds is durable in the database file, and
//!   never while a copy runs: a checkpoint joins the copy first and copies what was logged
//!   after it began; the other resets (a session's first header, a header after direct writes)
//!   come when no copy can run (before the session's first group; in direct mode, entered by
//!   a checkpoint);
//! - the log's pages below the copy's start are not overwritten while it runs (groups append
//!   past the tail; only the reset starts again from page 1);
//! - nothing else writes to the database file while a copy runs: direct writes and shrinking
//!   `set_len`s go through `go_direct`, which checkpoints (joining the copy) first, and `Drop`
//!   joins it even after an error;
//! - reads never meet a page the copy is writing: every such page is in `index` until the
//!   reset, so reads take it from the log;
//! - `WalState::background` is set and taken only under `sync_lock`, so one copy runs at a
//!   time; nothing holds the state's lock while waiting for the copy.

use std::io;
use std::sync::Arc;

use super::{HEADER_CRC_AT, HEADER_MAGIC, OWNER_LEN, P, PAGE, WalState, WalStorage, blank, crc_of, failed, owner_of};
use crate::error::{Error, Result};
use crate::storage::Storage;

/// Most pages a checkpoint copies home with one write (256 KiB).
const COPY_RUN: usize = 64;
/// Pages of zeros written at a time when the log is erased.
const ERASE_PAGES: u64 = 64;

/// Splits `items` into runs of at most `max` whose `key`s follow one another (n, n + 1, ...).
pub(super) fn consecutive_runs<T>(items: &[T], key: impl Fn(&T) -> u64, max: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        let first = key(rest.first()?);
        let n = rest.iter().enumerate().take(max).take_while(|(i, t)| key(t) == first + *i as u64).count();
        let (run, tail) = rest.split_at(n.max(1));
        rest = tail;
        Some(run)
    })
}

/// A checkpoint's first part on its own thread: the newest version of every page logged below
/// log page `upto`, copied into the database file, which is extended to `len` and synced.
/// The log's positions below `upto` are not overwritten meanwhile: only a checkpoint's last
/// part resets the log, and it joins this thread first.
pub(super) struct BackgroundCopy {
    pub(super) thread: std::thread::JoinHandle<io::Result<()>>,
    upto: u64,
    len: u64,
}

/// Copies `pages` ((database page, log page), sorted by database page) from the log into the
/// database file, extends the file to `len` if that is past `main_len` (its length), and syncs
/// it: pages with consecutive numbers in one write, read from the log in as few reads as their
/// log positions allow (a group logs its pages in page order).
fn copy_and_sync(
    main: &dyn Storage,
    log: &dyn Storage,
    pages: &[(u64, u64)],
    len: u64,
    main_len: u64,
) -> io::Result<()> {
    let mut buf = vec![0u8; PAGE * COPY_RUN];
    for run in consecutive_runs(pages, |(d, _)| *d, COPY_RUN) {
        let mut at = 0;
        for part in consecutive_runs(run, |(_, l)| *l, COPY_RUN) {
            let n = part.len() * PAGE;
            log.read_at(part[0].1 * P, &mut buf[at..at + n])?;
            at += n;
        }
        main.write_at(run[0].0 * P, &buf[..at])?;
    }
    if len > main_len {
        main.set_len(len)?;
    }
    main.sync()
}

impl WalState {
    /// (database page, log page) of every page logged at log page `from` or later, sorted by
    /// database page: what a copy takes home.
    fn logged_since(&self, from: u64) -> Vec<(u64, u64)> {
        let mut pages: Vec<(u64, u64)> =
            self.index.iter().filter(|(_, l)| **l >= from).map(|(&d, &l)| (d, l)).collect();
        pages.sort_unstable();
        pages
    }
}

impl WalStorage {
    /// Writes a header with a new random salt (ending every group in the log) and syncs it
    /// (and, the first time in a session, the log's directory). The caller holds `sync_lock`
    /// and has made every logged page durable in the database file.
    pub(super) fn reset_log(&self) -> Result<()> {
        debug_assert!(self.state.read().background.is_none(), "the log reset while a checkpoint copies from it");
        // A panic in the log's storage (a caller's) may leave the new salt on the disk and the
        // old one in memory: the log is failed, as an error leaves it, or the next group went
        // under the old salt, past the point replay stops (diff review).
        let _unwinding = crate::error::OnPanic::new(|| self.state.write().failed = true);
        let salt = rand::RngCore::next_u64(&mut rand::rngs::OsRng);
        let (main_len, dir_synced) = {
            let st = self.state_mut();
            (st.main_len, st.dir_synced)
        };
        // A directory that cannot be synced leaves the log's name in doubt: the session logs
        // nothing (`unlogged`), and its commits go to the file. Failing them (as once) failed
        // every commit on such a file system; logging them anyway (as later) acknowledged
        // commits a crash could take away with the log's name (storage review, medium). A sync
        // that failed (EIO, ENOSPC, EDQUOT: `sync_or_say`) is the disk's: the log fails.
        if !dir_synced && let Some(path) = &self.log_path {
            match crate::storage::sync_new_name(path) {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(target: "foldvault::audit", path = %path.display(),
                        "the write-ahead log's directory does not sync: this session writes to the file alone");
                    self.state.write().unlogged = true;
                }
                Err(e) => {
                    self.state.write().failed = true;
                    return Err(e.into());
                }
            }
            self.state.write().dir_synced = true;
        }
        // The owner bytes both header copies of the file hold. Copies that differ (one damaged,
        // or being rewritten) give a zero owner: a header that ends every group and holds none,
        // and the session logs nothing until they agree (`sync` writes to the file meanwhile).
        // Taking page 0's alone, a damaged copy the open repairs, would log the repair under a
        // header that no copy matches after a crash.
        let (o0, o1) = (owner_of(&*self.main, main_len, 0)?, owner_of(&*self.main, main_len, 1)?);
        let owner = if o0 == o1 && !self.state.read().unlogged { o0 } else { [0; OWNER_LEN] };
        let mut h = blank();
        h[..8].copy_from_slice(HEADER_MAGIC);
        h[8..16].copy_from_slice(&salt.to_le_bytes());
        h[16..16 + OWNER_LEN].copy_from_slice(&owner);
        let crc = crc_of(&[&h[..HEADER_CRC_AT]]);
        h[HEADER_CRC_AT..HEADER_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        let r = self.log.write_at(0, &h[..]).and_then(|()| self.log.sync());
        let mut st = self.state_mut();
        if let Err(e) = r {
            st.failed = true;
            return Err(e.into());
        }
        st.log_pages = st.log_pages.max(1);
        st.header_written = owner.iter().any(|b| *b != 0);
        st.settle_first = false;
        st.salt = salt;
        st.owner = owner;
        st.next_seq = 0;
        st.tail = 1;
        st.index.clear();
        st.replayed = Vec::new();
        Ok(())
    }

    /// Before the session's first group (`settle_first`): what the log held copied home, the
    /// database file synced (by the copy, or here if nothing was copied), a new generation
    /// begun. The caller holds `sync_lock`.
    pub(super) fn settle(&self) -> Result<()> {
        if !self.copy_home(None)?
            && let Err(e) = self.main.sync()
        {
            self.state.write().failed = true;
            return Err(e.into());
        }
        self.reset_log()
    }

    /// Copies every logged page to the database file, syncs it, then starts a new log
    /// generation; a copy running in the background is waited for and only what was logged
    /// since it began is copied here. The caller holds `sync_lock`.
    pub(super) fn checkpoint(&self) -> Result<()> {
        let from = self.join_background()?;
        self.end_checkpoint(from)
    }

    /// A checkpoint once no copy runs: the pages logged from log page `from` on (all if
    /// `None`) copied home and synced, then a new generation. The caller holds `sync_lock`.
    pub(super) fn end_checkpoint(&self, from: Option<u64>) -> Result<()> {
        if self.copy_home(from)? { self.reset_log() } else { Ok(()) }
    }

    /// Steps 1 and 2 of a checkpoint: every page logged at log page `from` or later (all of them
    /// if `None`) copied into the database file, the file extended to the logged length and
    /// synced. False when nothing was logged since the last checkpoint (nothing done). The log
    /// is left as it is: replaying it again rewrites the same bytes. The caller holds
    /// `sync_lock`, and no background copy runs.
    pub(super) fn copy_home(&self, from: Option<u64>) -> Result<bool> {
        let (pages, len, main_len) = {
            let st = self.state_mut();
            if st.failed {
                return Err(Error::Io(failed()));
            }
            let pages = st.logged_since(from.unwrap_or(0));
            if pages.is_empty() && st.logged_len <= st.main_len && (st.next_seq == 0 || from.is_some()) {
                // Nothing logged; or everything logged already copied and synced in the
                // background, which then still ends the generation.
                return Ok(from.is_some());
            }
            (pages, st.logged_len, st.main_len)
        };
        let r = copy_and_sync(&*self.main, &*self.log, &pages, len, main_len);
        let mut st = self.state_mut();
        if let Err(e) = r {
            st.failed = true;
            return Err(e.into());
        }
        st.main_len = len.max(main_len);
        Ok(true)
    }

    /// Starts a checkpoint's copy on its own thread (the log has reached `checkpoint_pages`),
    /// unless one runs; checkpoints within this call if background checkpoints are off or no
    /// thread can be started. The caller holds `sync_lock`.
    pub(super) fn start_checkpoint(&self) -> Result<()> {
        if !self.in_background {
            return self.checkpoint();
        }
        let mut st = self.state_mut();
        if st.background.is_some() {
            return Ok(());
        }
        let pages = st.logged_since(0);
        let (upto, len, main_len) = (st.tail, st.logged_len, st.main_len);
        let (main, log) = (Arc::clone(&self.main), Arc::clone(&self.log));
        let spawned = std::thread::Builder::new()
            .name("foldvault-checkpoint".into())
            .spawn(move || copy_and_sync(&*main, &*log, &pages, len, main_len));
        match spawned {
            Ok(thread) => {
                st.background = Some(BackgroundCopy { thread, upto, len });
                Ok(())
            }
            Err(e) => {
                drop(st);
                tracing::warn!(target: "foldvault::audit", error = %e, "no checkpoint thread; checkpointing in the commit");
                self.checkpoint()
            }
        }
    }

    /// Waits for the background copy, if one runs, and returns the log page from which pages
    /// still need copying home (`None`: none ran, all of them do). The caller holds
    /// `sync_lock`.
    pub(super) fn join_background(&self) -> Result<Option<u64>> {
        let Some(b) = self.state_mut().background.take() else {
            return Ok(None);
        };
        let r = b
            .thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("write-ahead log: the checkpoint thread panicked")));
        let mut st = self.state_mut();
        if let Err(e) = r {
            st.failed = true;
            return Err(e.into());
        }
        st.main_len = st.main_len.max(b.len);
        Ok(Some(b.upto))
    }

    /// Ends logging for the group being built: checkpoints, then writes its pending pages to
    /// the database file; its later writes go there too until the next `sync`. The caller
    /// holds `sync_lock`.
    pub(super) fn go_direct(&self) -> Result<()> {
        if self.state.read().direct {
            return Ok(());
        }
        // Direct writes may overwrite pages the state open found freed: that state is made
        // durable first, as before a session's first group.
        if self.state.read().settle_first {
            self.settle()?
        } else {
            self.checkpoint()?
        }
        let mut st = self.state_mut();
        // The pages leave `pending` only once all are written: after a failed write, reads
        // still find every page of the published state.
        for (pg, page) in &st.pending {
            if let Err(e) = self.main.write_at(pg * P, &page[..]) {
                st.failed = true;
                return Err(e.into());
            }
        }
        st.pending.clear();
        let len = st.len;
        if len > st.main_len
            && let Err(e) = self.main.set_len(len)
        {
            st.failed = true;
            return Err(e.into());
        }
        st.main_len = st.main_len.max(len);
        st.logged_len = st.main_len;
        st.direct = true;
        Ok(())
    }

    /// Copies every logged page to the database file now (as when the log fills).
    pub fn checkpoint_now(&self) -> Result<()> {
        let _s = self.sync_lock.lock();
        self.checkpoint()
    }

    /// `checkpoint_now`, then every page of the log past its header overwritten with zeros
    /// and synced (`Storage::checkpoint_and_erase_log`). A reset only ends the old groups: their
    /// bytes stay until later groups reach them. Used for a log an earlier build wrote that
    /// holds a header page (that build logged its header updates' two copies: the old key
    /// slots; a rotation's next-key block, wrapped under the old data key, which gave the new
    /// key to whoever holds the old one: key review, medium). This build writes header pages
    /// through to the file (`Storage::write_through`).
    pub fn checkpoint_and_erase_now(&self) -> Result<()> {
        let _s = self.sync_lock.lock();
        self.checkpoint()?;
        let from = self.state.read().tail.max(1);
        let r = (|| -> io::Result<()> {
            let end = self.log.len()?.div_ceil(P);
            let zeros = vec![0u8; ERASE_PAGES as usize * PAGE];
            let mut at = from;
            while at < end {
                let n = (end - at).min(ERASE_PAGES);
                self.log.write_at(at * P, &zeros[..n as usize * PAGE])?;
                at += n;
            }
            self.log.sync()
        })();
        if let Err(e) = r {
            self.state.write().failed = true;
            return Err(e.into());
        }
        Ok(())
    }
}
