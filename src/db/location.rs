//! Where a database lives: a `Config`'s location (a file, a directory, a temporary database,
//! caller-given storage) resolved to storage that is open and locked.
//!
//! Invariants:
//! - A file's lock is taken before anything at its name is changed: a temporary database's old
//!   contents and log are removed only under the lock, and a log beside a file is looked for
//!   only once the lock is held (until then a process with the log on may make one, and crash
//!   leaving commits only there).
//! - `create_new` is checked again once the lock is held: a database another process created
//!   between the first look and the lock is never overwritten.
//! - What an open adds to the file system (a directory, a file, a log) is listed in
//!   [`Located`], so a create that fails can take it away ([`Located::discard`]): a failed
//!   create leaves no empty file that the next open would take for a truncated database.
//! - A directory that holds a sled database and no foldvault file is refused, never filled with
//!   an empty database beside the sled one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::config::{Config, DB_FILE_NAME, Location};
use crate::error::{Error, Result};
use crate::storage::{FileStorage, Storage, WalStorage, wal};

/// A temporary database's file and the directory made for it: removed at close.
pub(crate) type TemporaryNames = (PathBuf, Option<PathBuf>);

/// The storage a `Config` names, open and locked, and what opening it added.
pub(crate) struct Located {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) temporary: Option<TemporaryNames>,
    /// The file was there before, empty, with no log beside it.
    pub(crate) existed_empty: bool,
    /// Names this open added (a new directory, then a new file), whose directory entries are
    /// synced once the new database is: a file's own sync does not promise its name.
    pub(crate) new_names: Vec<PathBuf>,
    /// A directory this open made.
    new_dir: Option<PathBuf>,
    /// A file this open made, and found empty once it held its lock (a file another process
    /// made between the first look and the open is never this open's to remove).
    new_file: Option<PathBuf>,
    /// The log beside a new file, made by this open.
    new_log: Option<PathBuf>,
}

impl Located {
    /// Takes away what this open added, after a create that failed: the new file, a log made
    /// beside it, a new directory (if empty); a temporary database whole. The files go while
    /// the lock is still held, so no other process opens one half made.
    pub(crate) fn discard(self) {
        let Located { storage, temporary, new_dir, new_file, new_log, .. } = self;
        let mut dir = new_dir;
        if let Some((file, d)) = temporary {
            let _ = std::fs::remove_file(&file);
            dir = dir.or(d);
        }
        for f in new_file.iter().chain(new_log.iter()) {
            let _ = std::fs::remove_file(f);
        }
        drop(storage);
        if let Some(d) = dir {
            // Only if empty: whatever else is there is not this open's.
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Opens the storage `cfg` names: caller-given storage as it is; a file (or a directory's
/// database file, or a new temporary one) created if missing, locked, with its log.
pub(crate) fn locate(cfg: &Config) -> Result<Located> {
    let mut located = Located {
        storage: match &cfg.location {
            Location::Storage(s) => s.clone(),
            _ => Arc::new(crate::storage::MemoryStorage::new()),
        },
        temporary: None,
        existed_empty: false,
        new_names: Vec::new(),
        new_dir: None,
        new_file: None,
        new_log: None,
    };
    let (file, dir) = match &cfg.location {
        Location::Storage(_) => return Ok(located),
        Location::File(f) => (f.clone(), None),
        Location::Dir(d) => (d.join(DB_FILE_NAME), Some(d.clone())),
        _ if cfg.temporary => {
            let mut name = [0u8; 8];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut name);
            let d = std::env::temp_dir().join(format!("foldvault-{}", crate::format::page::hex(&name)));
            (d.join(DB_FILE_NAME), Some(d))
        }
        _ => {
            let d = PathBuf::from("default.foldvault");
            (d.join(DB_FILE_NAME), Some(d))
        }
    };
    if cfg.read_only && !file.exists() {
        // Never created: a read-only open of a missing database is `NotFound`.
        if let Some(d) = dir.as_ref().filter(|d| d.is_dir()) {
            refuse_sled_directory(d)?;
        }
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} does not exist", file.display()),
        )));
    }
    let file_is_new = !file.exists();
    if let Some(d) = &dir {
        if file_is_new && d.is_dir() {
            refuse_sled_directory(d)?;
        }
        if !d.exists() {
            located.new_dir = Some(d.clone());
        }
        std::fs::create_dir_all(d)?;
    }
    let wal_path = wal::sidecar_path(&file);
    let logged = !cfg.temporary && wal_path.exists();
    let len = if file_is_new { 0 } else { std::fs::metadata(&file)?.len() };
    located.existed_empty = !file_is_new && len == 0 && !logged;
    if cfg.create_new && (len > 0 || logged) {
        return Err(Error::AlreadyExists(file.display().to_string()));
    }
    let opened = if cfg.read_only {
        read_only_storage(&file)
    } else if cfg.temporary {
        temporary_storage(&file, cfg.create_new)
    } else {
        file_storage(&file, cfg.wal, cfg.wal_background)
    };
    located.storage = match opened {
        Ok(s) => s,
        Err(e) => {
            // Not locked: a file there now may be another process's.
            located.discard();
            return Err(e);
        }
    };
    // From here the file is locked.
    let len = located.storage.len()?;
    if cfg.temporary {
        // Removed at close: its names need no syncs.
        located.temporary = Some((file, dir));
        located.new_dir = None;
    } else {
        if cfg.create_new && len > 0 {
            // Checked again under the lock: another process created it meanwhile.
            return Err(Error::AlreadyExists(file.display().to_string()));
        }
        located.new_names.extend(located.new_dir.clone());
        if file_is_new && len == 0 {
            located.new_names.push(file.clone());
            located.new_file = Some(file);
            if !logged && wal_path.exists() {
                located.new_log = Some(wal_path);
            }
        }
    }
    Ok(located)
}

/// A temporary database's file, locked, then emptied with any log beside it (a temporary
/// database runs without one: it would only add syncs). `create_new`: refused, untouched, if
/// it holds anything once locked.
fn temporary_storage(file: &Path, create_new: bool) -> Result<Arc<dyn Storage>> {
    let main = FileStorage::open(file, true)?;
    if create_new && main.len()? > 0 {
        return Err(Error::AlreadyExists(file.display().to_string()));
    }
    wal::remove_sidecar(file)?;
    main.set_len(0)?;
    Ok(Arc::new(main))
}

/// A directory that holds a sled database (sled 0.34 keeps `conf` and `db` files there) and no
/// foldvault file: opening it would create an empty database beside the sled one, and an
/// application switched from sled would start with no data.
fn refuse_sled_directory(dir: &Path) -> Result<()> {
    if holds_sled_database(dir) {
        return Err(Error::Unsupported(format!(
            "{} holds a sled database: import it first (foldvault import-sled, or foldvault::import::from_sled)",
            dir.display()
        )));
    }
    Ok(())
}

/// Whether `dir` holds a sled 0.34 database: its `conf` and `db` files.
pub(crate) fn holds_sled_database(dir: &Path) -> bool {
    dir.join("conf").is_file() && dir.join("db").is_file()
}

/// The storage of a database file: the file alone, or the file and its write-ahead log
/// (SPEC.md §15) when the log is on (`wal`: its checkpoint size; `background`: checkpoints copy
/// on a thread of their own) or one was left beside it (with the log off it is folded into
/// the file and removed here). The log is looked for once the file's lock is held.
fn file_storage(file: &Path, wal: Option<u64>, background: bool) -> Result<Arc<dyn Storage>> {
    let main: Arc<dyn Storage> = Arc::new(FileStorage::open(file, true)?);
    let wal_path = wal::sidecar_path(file);
    let logged = wal_path.exists();
    if wal.is_none() && !logged {
        return Ok(main);
    }
    let log: Arc<dyn Storage> = match FileStorage::open(&wal_path, true) {
        Ok(l) => Arc::new(l),
        Err(Error::Io(e)) if !logged => {
            // The directory takes no new file (read-only, permissions): the file alone.
            tracing::warn!(target: "foldvault::audit", error = %e, "write-ahead log not created; commits go to the file");
            return Ok(main);
        }
        Err(e) => return Err(e),
    };
    // A new log file's directory entry is made durable before its first header
    // (`WalStorage::reset_log`), not here: a session that only reads syncs nothing.
    let pages = wal.unwrap_or(wal::DEFAULT_CHECKPOINT_PAGES);
    let w = WalStorage::open(main, log, pages, Some(wal_path))?.background_checkpoints(background);
    if wal.is_some() {
        return Ok(Arc::new(w));
    }
    // A log left by a crash, with the log off: fold it in, then go on with the file alone (its
    // lock is released with `w` and taken again).
    w.checkpoint_now()?;
    drop(w);
    Ok(Arc::new(FileStorage::open(file, true)?))
}

/// The storage of `cfg`'s location opened read-only (`read_only_storage`), without opening a
/// database on it (salvage of a file that does not open).
pub(crate) fn read_only_location(cfg: &Config) -> Result<Arc<dyn Storage>> {
    match &cfg.location {
        Location::Storage(s) => Ok(s.clone()),
        Location::File(f) => read_only_storage(f),
        Location::Dir(d) => read_only_storage(&d.join(DB_FILE_NAME)),
        _ => Err(Error::InvalidConfig("salvage needs the source's file, directory or storage")),
    }
}

/// The storage of a read-only open: the file under a shared lock, and a log left beside it by
/// a crash replayed in memory and kept as it is at close (`WalStorage::keep_at_close`). The log
/// is looked for once the lock is held: no writer can add or remove it after that.
fn read_only_storage(file: &Path) -> Result<Arc<dyn Storage>> {
    let main: Arc<dyn Storage> = Arc::new(FileStorage::open_read_only(file)?);
    let wal_path = wal::sidecar_path(file);
    let log: Arc<dyn Storage> = match FileStorage::open_read_only(&wal_path) {
        Ok(l) => Arc::new(l),
        Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(main),
        Err(e) => return Err(e),
    };
    let pages = wal::DEFAULT_CHECKPOINT_PAGES;
    Ok(Arc::new(WalStorage::open(main, log, pages, None)?.keep_at_close()))
}
