//! Opening a write-ahead log storage: the log's header checked against the database file's
//! owner bytes, then its complete groups replayed into the index (SPEC.md §15).
//!
//! Layer: storage. The invariants are `wal/mod.rs`'s; this file holds only the path that runs
//! once, at open.

use std::path::PathBuf;
use std::sync::Arc;

use super::*;

/// Whether `log` is empty or starts as a write-ahead log of any version does (its magic, less
/// the version byte): what may be opened as a log. A file of another kind at the log's name
/// would be taken for an empty log and its first page overwritten by the first header.
pub(crate) fn is_empty_or_a_log(log: &dyn Storage) -> io::Result<bool> {
    if log.len()? == 0 {
        return Ok(true);
    }
    let mut magic = [0u8; 7];
    Ok(log.read_at(0, &mut magic).is_ok() && magic[..] == HEADER_MAGIC[..7])
}

impl WalStorage {
    /// Opens `main` with its log `log` (empty for a new log), replaying every complete group.
    /// `checkpoint_pages` (at least 1): the log length that triggers a checkpoint.
    /// `log_path`: the log's path (its directory is synced before the first header this
    /// session writes; the log is removed after the final checkpoint at drop). Opening writes
    /// nothing: a log that holds nothing gets its header with the first group.
    pub fn open(
        main: Arc<dyn Storage>,
        log: Arc<dyn Storage>,
        checkpoint_pages: u64,
        log_path: Option<PathBuf>,
    ) -> Result<WalStorage> {
        let main_len = main.len()?;
        let log_len = log.len()?;
        let mut st = WalState {
            len: main_len,
            logged_len: main_len,
            main_len,
            log_pages: log_len / P,
            tail: 1,
            // A file already past the largest length a group can name: nothing is logged (a
            // group naming it would be refused at replay, and its commits lost).
            unlogged: main_len > MAX_LEN,
            ..WalState::default()
        };
        let mut header = blank();
        let valid = log_len >= P && {
            log.read_at(0, &mut header[..])?;
            header[..7] == HEADER_MAGIC[..7]
                && get_u32(&header[..], HEADER_CRC_AT) == crc_of(&[&header[..HEADER_CRC_AT]])
        };
        // A whole header of another log version may hold commits this build cannot replay:
        // refused, never taken for an empty log (which the next sync would overwrite).
        if valid && header[7] != LOG_VERSION {
            return Err(Error::UnsupportedLogVersion { found: header[7], supported: LOG_VERSION });
        }
        let owner = &header[16..16 + OWNER_LEN];
        // A header written while the file was empty has a zero owner: no group was logged
        // under it (below), so such a log holds nothing.
        let replay = valid && owner.iter().any(|b| *b != 0);
        // A file too short to hold its two header copies beside a log that names an owner is
        // cut short (emptied, SPEC §11): an owner is named only once the file held both. So
        // whether or not its first bytes still match the owner (they do when it was cut past
        // them, and its header then read as damaged: WAL review, low), not another database's.
        if replay && main_len < 2 * P {
            return Err(Error::Truncated { expected: 2 * P, found: main_len });
        }
        if replay && owner != owner_of(&*main, main_len, 0)? && owner != owner_of(&*main, main_len, 1)? {
            return Err(Error::ForeignLog);
        }
        if replay {
            st.salt = get_u64(&header[..], 8);
            st.owner.copy_from_slice(owner);
        }
        // A new (empty) file is written directly until its first sync, which then writes the
        // header naming the file's owner bytes, before any group is logged.
        st.direct = main_len == 0;
        // Opening writes nothing: before the session's first group or direct write, `settle`
        // makes what open found durable and writes a header of the session's own.
        st.settle_first = true;
        let wal = WalStorage::new(main, log, st, checkpoint_pages, log_path);
        if replay && let Err(e) = wal.replay() {
            // Left as a crash would leave it: the clean close would fold the groups read so far
            // into the file and remove the log, with the groups after the failed read in it.
            wal.close_as_crash();
            return Err(e);
        }
        Ok(wal)
    }

    fn new(
        main: Arc<dyn Storage>,
        log: Arc<dyn Storage>,
        st: WalState,
        checkpoint_pages: u64,
        log_path: Option<PathBuf>,
    ) -> WalStorage {
        WalStorage {
            main,
            log,
            state: RwLock::new(st),
            sync_lock: Mutex::new(()),
            checkpoint_pages: checkpoint_pages.max(1),
            max_group: MAX_GROUP,
            log_path,
            direct_end: AtomicU64::new(0),
            in_background: true,
            keep_at_close: AtomicBool::new(false),
        }
    }

    /// Applies the log's complete groups, in order, to the index (at open).
    fn replay(&self) -> Result<()> {
        let mut st = self.state_mut();
        let mut index_page = blank();
        // Within one generation the logical length never shrinks (a shrinking `set_len` goes
        // direct, after a checkpoint that starts a new generation), so a group claiming less
        // than the one before it is damage, stopped at like a group that fails its checksum.
        let mut prev_len = 0;
        loop {
            let at = st.tail;
            if at + 1 > st.log_pages {
                break;
            }
            self.log.read_at(at * P, &mut index_page[..])?;
            let b = &index_page[..];
            let n = get_u32(b, 24) as usize;
            let len = get_u64(b, 32);
            if &b[..8] != GROUP_MAGIC || get_u64(b, 8) != st.salt || get_u64(b, 16) != st.next_seq {
                // The end of the generation's groups: nothing was logged here since its reset.
                break;
            }
            // The next group by its magic, salt and sequence number (written in one sector with
            // them), with a count, a length or an end that cannot be: damaged, or (its pages past
            // the log's end) torn by a crash that lost the log's growth. Said as a failed
            // checksum is.
            if n > MAX_GROUP || at + 1 + n as u64 > st.log_pages || len > MAX_LEN {
                tracing::warn!(target: "foldvault::audit", group = st.next_seq, log_page = at,
                    "write-ahead log replay stopped at a group whose page count, length or end cannot be (damaged, or torn by a crash)");
                st.replay_dropped = true;
                break;
            }
            let mut pages = vec![0u8; n * PAGE];
            self.log.read_at((at + 1) * P, &mut pages)?;
            let mut zeroed = index_page.clone();
            zeroed[INDEX_CRC_AT..INDEX_CRC_AT + 4].fill(0);
            if crc_of(&[&zeroed[..], &pages]) != get_u32(b, INDEX_CRC_AT) {
                // A crash tears only the last group; one torn in the middle is damage, and the
                // groups after it are lost with it. Either way it is said on the audit log.
                tracing::warn!(
                    target: "foldvault::audit",
                    group = st.next_seq,
                    log_page = at,
                    "write-ahead log replay stopped at a group whose checksum fails (torn by a crash, or damaged)"
                );
                st.replay_dropped = true;
                break;
            }
            let targets: Vec<u64> = (0..n).map(|i| get_u64(b, INDEX_ENTRIES_AT + 8 * i)).collect();
            if targets.iter().any(|t| t.saturating_mul(P) >= len) {
                tracing::warn!(target: "foldvault::audit", group = st.next_seq, log_page = at,
                    "write-ahead log replay stopped at a group naming a page past its length (damaged)");
                st.replay_dropped = true;
                break;
            }
            if len < prev_len {
                tracing::warn!(target: "foldvault::audit", group = st.next_seq, log_page = at,
                    "write-ahead log replay stopped at a group shorter than the one before it (damaged)");
                st.replay_dropped = true;
                break;
            }
            prev_len = len;
            for (i, t) in targets.into_iter().enumerate() {
                st.index.insert(t, at + 1 + i as u64);
                st.replayed.push((t, at + 1 + i as u64));
            }
            st.len = len;
            st.logged_len = len;
            st.tail = at + 1 + n as u64;
            st.next_seq += 1;
        }
        Ok(())
    }
}
