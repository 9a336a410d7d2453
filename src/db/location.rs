//! Where a database lives: a `Config`'s location (a file, a directory, a temporary database,
//! caller-given storage) resolved to storage that is open and locked.
//!
//! Invariants:
//! - A file's lock is taken before anything at its name is changed: a temporary database's old
//!   contents and log are removed only under the lock, and a log beside a file is looked for
//!   only once the lock is held (until then a process with the log on may make one, and crash
//!   leaving commits only there).
//! - What decides between creating and opening is learned once the lock is held (whether this
//!   open made the file, whether it is empty, whether a log is beside it): a look before the
//!   lock may describe a file another process has since removed or replaced. `create_new` is
//!   checked again then, so a database created meanwhile is never overwritten.
//! - What an open adds to the file system (a directory, a file, a log) is listed in
//!   [`Located`], so a create that fails can take it away ([`Located::discard`]): a failed
//!   create leaves no empty file that the next open would take for a truncated database. A
//!   name is removed only while its file is locked, and only if it still names that file.
//! - A file is opened by its own name, a symbolic link followed (`wal::resolve_links`): the
//!   lock, the log beside it and the names a failed create removes are the file's, whichever
//!   name it is opened by, so no log is missed by an open through another name.
//! - A directory that holds a sled database and no foldvault file is refused, never filled with
//!   an empty database beside the sled one.

use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::config::{Config, DB_FILE_NAME, Location};
use crate::error::{Error, Result};
use crate::storage::{FileStorage, Storage, WalStorage, same_inode, wal};

/// A temporary database's file and the directory made for it: removed at close, while the
/// file is still locked.
pub(crate) struct TemporaryNames {
    file: PathBuf,
    dir: Option<PathBuf>,
    identity: Option<Metadata>,
}

impl TemporaryNames {
    pub(crate) fn remove(&self) {
        remove_if_same(&self.file, self.identity.as_ref());
        if let Some(d) = &self.dir {
            // Only if empty: whatever else is there is not this database's.
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Removes the name `path` if it still names the file `identity` describes (the file this
/// process holds locked): a name another file has taken meanwhile is left alone.
pub(crate) fn remove_if_same(path: &Path, identity: Option<&Metadata>) {
    if let (Some(id), Ok(now)) = (identity, std::fs::metadata(path))
        && same_inode(id, &now)
    {
        let _ = std::fs::remove_file(path);
    }
}

/// The storage a `Config` names, open and locked, and what opening it added.
pub(crate) struct Located {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) temporary: Option<TemporaryNames>,
    /// The file was there before this open, empty, with no log beside it (learned under the
    /// lock).
    pub(crate) existed_empty: bool,
    /// The directories this open made, outermost first (not a temporary database's: that goes
    /// with it): `create_dir_all` makes every missing level, and each one's entry in its
    /// parent is a name a power loss may take (only the last was synced, and the whole
    /// database could vanish with an outer one).
    new_dirs: Vec<PathBuf>,
    /// A file this open made, empty once locked.
    new_file: Option<PathBuf>,
    /// The log beside it, made by this open.
    new_log: Option<PathBuf>,
    /// The locked file's device and inode.
    identity: Option<Metadata>,
    /// A log an earlier version left beside a link, moved beside the file by this open: the
    /// name it had, and the name it has.
    log_moved: Option<(PathBuf, PathBuf)>,
}

impl Located {
    /// Caller-given storage: nothing found or made at any name.
    fn storage(storage: Arc<dyn Storage>) -> Located {
        Located {
            storage,
            temporary: None,
            existed_empty: false,
            new_dirs: Vec::new(),
            new_file: None,
            new_log: None,
            identity: None,
            log_moved: None,
        }
    }

    /// Names this open added (a new directory, then a new file), whose directory entries are
    /// synced once the new database is: a file's own sync does not promise its name.
    pub(crate) fn new_names(&self) -> impl Iterator<Item = &PathBuf> {
        self.new_dirs.iter().chain(self.new_file.iter())
    }

    /// The database file this open made, if it made one.
    pub(crate) fn new_file(&self) -> Option<&Path> {
        self.new_file.as_deref()
    }

    /// Takes away what this open added, after an open that was refused or failed: the new
    /// file, a log made beside it (or beside a file that was there), a new directory (if
    /// empty); a temporary database whole. The storage is abandoned first (its close writes
    /// and removes nothing: a log found is left as a crash left it), and the names go while
    /// the file is still locked, so no other process opens one half made.
    pub(crate) fn discard(self) {
        let Located { storage, temporary, new_dirs, new_file, new_log, identity, log_moved, .. } = self;
        storage.abandon();
        if let Some((was, is)) = &log_moved {
            move_log_back(was, is);
        }
        if let Some(t) = &temporary {
            remove_if_same(&t.file, t.identity.as_ref());
        }
        if let Some(f) = &new_file {
            remove_if_same(f, identity.as_ref());
        }
        if let Some(log) = &new_log {
            // Locked too (the log's storage holds it): no other open made it.
            let _ = std::fs::remove_file(log);
        }
        drop(storage);
        for d in new_dirs.iter().rev().chain(temporary.as_ref().and_then(|t| t.dir.as_ref())) {
            // Only if empty: whatever else is there is not this open's.
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Removes `dirs` (outermost first), innermost first, each only if empty: whatever else is
/// there is not this open's.
fn remove_empty_dirs(dirs: &[PathBuf]) {
    for d in dirs.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
}

/// A database file opened and locked, and what was found or made once the lock was held.
struct OpenedFile {
    storage: Arc<dyn Storage>,
    identity: Option<Metadata>,
    /// This open made the file.
    created: bool,
    /// A log was beside the file.
    log_found: bool,
    /// The log this open made.
    log_made: Option<PathBuf>,
    /// A log this open moved from beside a link to beside the file: from, to.
    log_moved: Option<(PathBuf, PathBuf)>,
}

impl OpenedFile {
    fn of(main: Arc<FileStorage>, log_found: bool) -> OpenedFile {
        let (identity, created) = (main.metadata().ok(), main.created());
        OpenedFile { storage: main, identity, created, log_found, log_made: None, log_moved: None }
    }
}

/// Whether `cfg`'s open will, as things look now, create a database: its file (or the
/// caller's storage) is missing or empty and nothing stops the open first (read-only, a sled
/// database in its place). Only a hint, looked at without the lock: `Db::open` makes a new
/// database's header and key slots before the file exists when it says so
/// (`open::prepare_create`), and after the lock otherwise.
pub(crate) fn likely_new(cfg: &Config) -> bool {
    if cfg.read_only {
        return false;
    }
    // Not when `locate` would refuse first (a sled database in the directory; for `create_new`,
    // a log beside the missing file), nor when it would fail at once (a file whose directory is
    // missing): its answer comes before any passphrase is stretched.
    let missing = |given: &Path, dir: Option<&Path>| {
        std::fs::metadata(wal::resolve_links(given)).is_err()
            && dir.is_none_or(|d| !holds_sled_database(d))
            && !(cfg.create_new && wal::log_of(given).exists())
    };
    match &cfg.location {
        Location::Storage(s) => !cfg.temporary && s.len().is_ok_and(|l| l == 0),
        Location::File(f) => missing(f, None) && f.parent().is_none_or(|d| d.as_os_str().is_empty() || d.is_dir()),
        Location::Dir(d) => {
            let (file, dir) = dir_location(d);
            missing(&file, dir.as_deref())
        }
        _ if cfg.temporary => true,
        _ => default_location(Path::new(".")).is_ok_and(|(file, _)| missing(&file, None)),
    }
}

/// The file and directory of a database directory (`Config::path`): the file `db.foldvault`
/// in it, or, when the path names a file (as `foldvault init FILE` makes, and the command line
/// opens by either form), that file: an application given it tried to make a directory there
/// and failed with "File exists" (user review).
fn dir_location(d: &Path) -> (PathBuf, Option<PathBuf>) {
    if std::fs::metadata(d).is_ok_and(|m| m.is_file()) {
        (d.to_path_buf(), None)
    } else {
        (d.join(DB_FILE_NAME), Some(d.to_path_buf()))
    }
}

/// Opens the storage `cfg` names: caller-given storage as it is; a file (or a directory's
/// database file, or a new temporary one) created if missing, locked, with its log.
pub(crate) fn locate(cfg: &Config) -> Result<Located> {
    let (file, dir) = match &cfg.location {
        Location::Storage(s) => {
            // `temporary` removes the file it made, and `create_new` refuses one that exists:
            // for the caller's own storage the first has nothing to remove, the second means
            // storage that holds nothing yet.
            if cfg.temporary {
                return Err(Error::InvalidConfig("temporary cannot be combined with custom storage"));
            }
            if cfg.create_new && s.len()? > 0 {
                return Err(Error::AlreadyExists("the custom storage already holds data".into()));
            }
            return Ok(Located::storage(s.clone()));
        }
        Location::File(f) => (f.clone(), None),
        Location::Dir(d) => dir_location(d),
        _ if cfg.temporary => {
            let mut name = [0u8; 8];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut name);
            let d = std::env::temp_dir().join(format!("foldvault-{}", crate::format::page::hex(&name)));
            (d.join(DB_FILE_NAME), Some(d))
        }
        _ => default_location(Path::new("."))?,
    };
    // The file itself, a symbolic link followed: its lock, its log and the names an open adds
    // or removes are the file's, whichever name it is opened by (`given` is kept only to find a
    // log an earlier version left beside the link: `wal::log_for`).
    let given = file;
    let file = wal::resolve_links(&given);
    if cfg.read_only && !file.exists() {
        // Never created: a read-only open of a missing database is `NotFound`.
        if let Some(d) = dir.as_ref().filter(|d| d.is_dir()) {
            refuse_sled_directory(d)?;
        }
        // The system's text kept (callers match on "No such file or directory"), after the path.
        let os = std::io::Error::from_raw_os_error(2); // ENOENT
        return Err(Error::Io(std::io::Error::new(std::io::ErrorKind::NotFound, format!("{}: {os}", file.display()))));
    }
    // Looks before the lock, only to refuse early; what decides is learned under the lock.
    let mut new_dirs = Vec::new();
    if let Some(d) = &dir {
        if !file.exists() && d.is_dir() {
            refuse_sled_directory(d)?;
        }
        let mut missing = Some(d.as_path());
        while let Some(m) = missing.filter(|m| !m.as_os_str().is_empty() && !m.exists()) {
            new_dirs.push(m.to_path_buf());
            missing = m.parent();
        }
        new_dirs.reverse();
        if let Err(e) = std::fs::create_dir_all(d) {
            remove_empty_dirs(&new_dirs);
            return Err(e.into());
        }
    }
    if cfg.create_new
        && (std::fs::metadata(&file).is_ok_and(|m| m.len() > 0) || (!cfg.temporary && wal::log_of(&given).exists()))
    {
        return Err(Error::AlreadyExists(file.display().to_string()));
    }
    let opened = if cfg.read_only {
        read_only_storage(&given, &file).map(|storage| OpenedFile {
            storage,
            identity: None,
            created: false,
            log_found: false,
            log_made: None,
            log_moved: None,
        })
    } else if cfg.temporary {
        temporary_storage(&file)
    } else {
        file_storage(&given, &file, cfg.wal, cfg.wal_background)
    };
    let opened = match opened {
        Ok(o) => o,
        Err(e) => {
            // Not locked: only the directories made here (and still empty) are taken away.
            remove_empty_dirs(&new_dirs);
            return Err(e);
        }
    };
    // From here the file is locked.
    let len = opened.storage.len()?;
    let mut located = Located::storage(opened.storage);
    located.existed_empty = !opened.created && !opened.log_found && len == 0;
    // A log this open made beside an existing file (empty: opening writes nothing) goes with
    // an open that is refused or fails, as the file this open made does.
    located.new_log = opened.log_made;
    located.log_moved = opened.log_moved;
    if cfg.temporary {
        // Removed at close, its directory with it: its names need no syncs.
        located.temporary = Some(TemporaryNames { file, dir, identity: opened.identity });
        return Ok(located);
    }
    if cfg.create_new && len > 0 {
        // Checked again under the lock: another process created it meanwhile. Refused writing
        // nothing: a log a crash of that process left is not folded in by this close.
        located.discard();
        return Err(Error::AlreadyExists(file.display().to_string()));
    }
    located.new_dirs = new_dirs;
    located.identity = opened.identity;
    if opened.created && len == 0 {
        located.new_file = Some(file);
    }
    Ok(located)
}

/// A temporary database's file, locked; refused, untouched, if it holds anything once locked
/// or a log is beside it: a temporary database is a new one (it runs without a log, which
/// would only add syncs), and emptying the file there erased a database at that path.
fn temporary_storage(file: &Path) -> Result<OpenedFile> {
    // A log with no file beside it is refused before the file is opened, which would create
    // it: the refusal leaves no file it made. A file that exists is locked first (`Locked`
    // while its database is open), then looked at.
    if !file.exists() && wal::sidecar_path(file).exists() {
        return Err(Error::AlreadyExists(file.display().to_string()));
    }
    let main = FileStorage::open(file, true)?;
    if main.len()? > 0 || wal::sidecar_path(file).exists() {
        return Err(Error::AlreadyExists(file.display().to_string()));
    }
    Ok(OpenedFile::of(Arc::new(main), false))
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

/// The database of a `Config` with no path and not temporary, in `base` (the working
/// directory): `default.foldvault/db.foldvault`. sled's default is `default.sled`: while no
/// foldvault database is there, a sled database there is refused as one at the path given is
/// (an application that relied on sled's default would otherwise start with no data).
fn default_location(base: &Path) -> Result<(PathBuf, Option<PathBuf>)> {
    let d = base.join("default.foldvault");
    let file = d.join(DB_FILE_NAME);
    if !file.exists() {
        refuse_sled_directory(&base.join("default.sled"))?;
    }
    Ok((file, Some(d)))
}

/// Whether `dir` holds a sled 0.34 database: its `conf` and `db` files.
pub(crate) fn holds_sled_database(dir: &Path) -> bool {
    dir.join("conf").is_file() && dir.join("db").is_file()
}

/// The storage of a database file: the file alone, or the file and its write-ahead log
/// (SPEC.md §15) when the log is on (`wal`: its checkpoint size; `background`: checkpoints copy
/// on a thread of their own) or one was left beside it (with the log off, used until the
/// session's close folds it in). The log is looked for once the file's lock is held.
fn file_storage(given: &Path, file: &Path, wal: Option<u64>, background: bool) -> Result<OpenedFile> {
    let main = Arc::new(FileStorage::open(file, true)?);
    if let Ok(m) = main.metadata()
        && std::os::unix::fs::MetadataExt::nlink(&m) > 1
    {
        // A hard link is another name with a log of its own beside it: a log a crash left
        // beside one is not found by an open through the other (SPEC §15, "Files").
        tracing::warn!(target: "foldvault::audit", event = "hard_links", path = %file.display(), links = std::os::unix::fs::MetadataExt::nlink(&m),
            "the database file has other hard links: open it by this name only, or a log a crash leaves beside one name is not found through another");
    }
    let mut log_made = None;
    match with_log(&main, given, file, wal, background, &mut log_made) {
        Ok(Some(opened)) => Ok(opened),
        Ok(None) => Ok(OpenedFile::of(main, false)),
        Err(e) => {
            // A file this open made, still empty, goes (with a log made beside it) while the
            // file is locked: the next open would take it for a database truncated to nothing.
            if main.created() && main.len().is_ok_and(|l| l == 0) {
                if let Some(l) = &log_made {
                    let _ = std::fs::remove_file(l);
                }
                remove_if_same(file, main.metadata().ok().as_ref());
            }
            Err(e)
        }
    }
}

/// `main` with its log, or `None` for the file alone (the log off, none beside the file, or
/// none the directory takes). `log_made`: set to the log's path once this open has made it.
/// `given`: the name the file was opened by (`wal::log_for`).
fn with_log(
    main: &Arc<FileStorage>,
    given: &Path,
    file: &Path,
    wal: Option<u64>,
    background: bool,
    log_made: &mut Option<PathBuf>,
) -> Result<Option<OpenedFile>> {
    let found = wal::log_for(given, file)?;
    let logged = found.exists();
    let beside_file = wal::sidecar_path(file);
    let mut log_moved = None;
    if logged && found != beside_file {
        match wal::move_log(&found, &beside_file) {
            Ok(()) => {
                tracing::info!(target: "foldvault::audit", from = %found.display(), to = %beside_file.display(),
                    "a write-ahead log an earlier version left beside a link was moved beside the file");
                log_moved = Some((found.clone(), beside_file.clone()));
            }
            Err(e) => tracing::warn!(target: "foldvault::audit", error = %e, path = %found.display(),
                "a write-ahead log beside a link could not be moved beside the file; it is used where it is"),
        }
    }
    let wal_path = if log_moved.is_some() { beside_file } else { found };
    let opened = open_log(main, &wal_path, logged, wal, background, log_made);
    if let (Err(_), Some((was, is))) = (&opened, &log_moved) {
        // Left where this open found it: the open failed.
        move_log_back(was, is);
    }
    opened.map(|o| o.map(|o| OpenedFile { log_moved, ..o }))
}

/// Moves a log this open moved beside the file (`is`) back to the name it had (`was`), for an
/// open that failed or was refused: it leaves the names as it found them.
fn move_log_back(was: &Path, is: &Path) {
    if let Err(e) = wal::move_log(is, was) {
        tracing::warn!(target: "foldvault::audit", error = %e, path = %is.display(),
            "a write-ahead log moved beside the file by a failed open could not be moved back");
    }
}

/// [`with_log`]'s log at `wal_path` (`logged`: it was there), opened and replayed.
fn open_log(
    main: &Arc<FileStorage>,
    wal_path: &Path,
    logged: bool,
    wal: Option<u64>,
    background: bool,
    log_made: &mut Option<PathBuf>,
) -> Result<Option<OpenedFile>> {
    if wal.is_none() && !logged {
        return Ok(None);
    }
    // The log is a plain file at its own name, never what a link there names: a symbolic link
    // to another database made the open take that file for an empty log and write its pages
    // over that database's header (file review, medium). Refused before the open, naming the
    // log; a link to nothing holds no log to replay, and is left as a log that cannot be made
    // is (the open would have made the file it names).
    if let Ok(m) = std::fs::symlink_metadata(wal_path)
        && !m.file_type().is_file()
    {
        if m.file_type().is_symlink() && !wal_path.exists() && !logged {
            tracing::warn!(target: "foldvault::audit", path = %wal_path.display(),
                "a symbolic link to nothing where the write-ahead log goes: commits go to the file");
            return Ok(None);
        }
        return Err(Error::Unsupported(format!(
            "{} is not a plain file (a symbolic link, a directory or a device), so it is not used as the \
database's write-ahead log: move it away",
            wal_path.display()
        )));
    }
    let log = match FileStorage::open(wal_path, true) {
        Ok(l) => l,
        Err(Error::Io(e)) if !logged => {
            // The directory takes no new file (read-only, permissions): the file alone.
            tracing::warn!(target: "foldvault::audit", error = %e, "write-ahead log not created; commits go to the file");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    *log_made = log.created().then(|| wal_path.to_path_buf());
    // The file opened is the one at the name: a link put there after the look above (a
    // directory others can write) was followed by the open (diff review). Checked before
    // anything is written to it.
    let opened_meta = log.metadata()?;
    let at_name = std::fs::symlink_metadata(wal_path)?;
    if !at_name.file_type().is_file() || !crate::storage::same_inode(&opened_meta, &at_name) {
        return Err(Error::Unsupported(format!(
            "{} changed while it was opened (a link put in its place): it is not used as the database's \
write-ahead log",
            wal_path.display()
        )));
    }
    if log.created() {
        // Shared as the database is (a group-shared file's log was 0600 and its creator's group,
        // and the next open by another member failed with a bare "Permission denied"), never
        // more: the file's group and other bits, read and write for its owner. Through the
        // handle, not the name.
        if let Err(e) = main.metadata().and_then(|m| log.share_as(&m)) {
            tracing::warn!(target: "foldvault::audit", error = %e, "the write-ahead log keeps its creator's mode and group");
        }
    } else if std::os::unix::fs::MetadataExt::nlink(&opened_meta) > 1 {
        // A second name of the log: the creation name a kill left between its link and its
        // removal, which kept every session's pages after the close removed the log's own name
        // (file review). Removed; another (a hard link someone made) is said, and refused if
        // what it holds is no log (another file linked at the log's name, whose first page the
        // first group would overwrite: diff review).
        super::leftovers::remove_stale(wal_path);
        if log.metadata().is_ok_and(|m| std::os::unix::fs::MetadataExt::nlink(&m) > 1) {
            if !wal::is_empty_or_a_log(&log)? {
                return Err(Error::Unsupported(format!(
                    "{} has another name and holds no write-ahead log: it is not used as the database's log",
                    wal_path.display()
                )));
            }
            tracing::warn!(target: "foldvault::audit", path = %wal_path.display(),
                "the write-ahead log has another name, which keeps its pages after the close removes this one");
        }
    }
    // A new log file's directory entry is made durable before its first header
    // (`WalStorage::reset_log`), not here: a session that only reads syncs nothing.
    let pages = wal.unwrap_or(wal::DEFAULT_CHECKPOINT_PAGES);
    let w = WalStorage::open(main.clone(), Arc::new(log), pages, Some(wal_path.to_path_buf()))?
        .background_checkpoints(background);
    if wal.is_none() {
        // A log left by a crash, with the setting off: the session runs on it as with the
        // setting on, until its close folds it in and removes it. Folding it here, before the
        // open has checked the key and the log (`StaleLog`), would write to the file for an
        // open that is then refused, and put a stale log's pages over later commits.
        tracing::info!(target: "foldvault::audit", path = %wal_path.display(),
            "a write-ahead log left by a crash is replayed and kept until this session closes (the setting is off)");
    }
    let mut opened = OpenedFile::of(main.clone(), logged);
    opened.storage = Arc::new(w);
    opened.log_made = log_made.take();
    Ok(Some(opened))
}

/// The storage of `cfg`'s location opened read-only (`read_only_storage`), without opening a
/// database on it (salvage of a file that does not open).
pub(crate) fn read_only_location(cfg: &Config) -> Result<Arc<dyn Storage>> {
    match &cfg.location {
        Location::Storage(s) => Ok(s.clone()),
        Location::File(f) => read_only_storage(f, &wal::resolve_links(f)),
        Location::Dir(d) => {
            let (f, _) = dir_location(d);
            read_only_storage(&f, &wal::resolve_links(&f))
        }
        _ => Err(Error::InvalidConfig("salvage needs the source's file, directory or storage")),
    }
}

/// The storage of a read-only open: the file under a shared lock, and a log left beside it by
/// a crash replayed in memory and kept as it is at close (`WalStorage::keep_at_close`). The log
/// is looked for once the lock is held: no writer can add or remove it after that.
fn read_only_storage(given: &Path, file: &Path) -> Result<Arc<dyn Storage>> {
    let main: Arc<dyn Storage> = Arc::new(FileStorage::open_read_only(file)?);
    let wal_path = wal::log_for(given, file)?;
    let log: Arc<dyn Storage> = match FileStorage::open_read_only(&wal_path) {
        Ok(l) => Arc::new(l),
        Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(main),
        Err(e) => return Err(e),
    };
    let pages = wal::DEFAULT_CHECKPOINT_PAGES;
    Ok(Arc::new(WalStorage::open(main, log, pages, None)?.keep_at_close()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database directory two levels below what exists: both directories are names the open
    /// made, synced in order once the database is (only the last one was, and a power loss
    /// could take the database away with the outer one), and both go with an open refused.
    #[test]
    fn every_directory_an_open_makes_is_one_of_its_new_names() {
        let base = tempfile::tempdir().unwrap();
        let (outer, inner) = (base.path().join("a"), base.path().join("a/b"));
        let cfg = Config::new().path(&inner).plaintext().use_env(false);
        let located = locate(&cfg).unwrap();
        let names: Vec<PathBuf> = located.new_names().cloned().collect();
        assert_eq!(names, [outer.clone(), inner.clone(), inner.join(DB_FILE_NAME)]);
        located.discard();
        assert!(!outer.exists(), "the directories an open that failed made stay");
    }

    /// With no path, a sled database at sled's default (`default.sled`) is refused while no
    /// foldvault database is at foldvault's (sled review, low: an application that relied on
    /// sled's default started with an empty database beside its data).
    #[test]
    fn sleds_default_directory_holding_a_sled_database_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let (file, dir) = default_location(base.path()).unwrap();
        assert_eq!(
            (file.clone(), dir),
            (base.path().join("default.foldvault/db.foldvault"), Some(base.path().join("default.foldvault")))
        );
        let sled = base.path().join("default.sled");
        std::fs::create_dir(&sled).unwrap();
        for name in ["conf", "db"] {
            std::fs::write(sled.join(name), b"sled").unwrap();
        }
        let r = default_location(base.path());
        assert!(matches!(&r, Err(Error::Unsupported(m)) if m.contains("sled database")), "{r:?}");
        std::fs::create_dir(base.path().join("default.foldvault")).unwrap();
        std::fs::write(&file, b"").unwrap();
        assert!(default_location(base.path()).is_ok(), "a foldvault database there is opened");
    }

    /// Opens again after `Locked`: a machine so loaded that a holder lets go only after
    /// `LOCK_GRACE` must not fail the test (the retry opens what the path names then).
    fn open_until_not_locked(cfg: Config) -> std::thread::JoinHandle<Result<crate::Db>> {
        std::thread::spawn(move || {
            loop {
                match cfg.open() {
                    Err(Error::Locked) => continue,
                    r => return r,
                }
            }
        })
    }

    /// An open that saw an empty file before the lock, whose holder then removed it (a create
    /// that failed, a temporary database closed), decides on what it finds under the lock: a
    /// file it made itself, where it creates a database. A decision on the stale look was
    /// `Truncated`, and the empty file it made then stayed, failing every later open.
    #[test]
    fn an_open_decides_on_what_it_finds_under_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let holder = FileStorage::open(&path, true).unwrap();
        let waiter = open_until_not_locked(Config::new().file(&path).plaintext().use_env(false));
        // Within LOCK_GRACE: the waiter has looked at the empty file and waits for its lock.
        std::thread::sleep(std::time::Duration::from_millis(100));
        std::fs::remove_file(&path).unwrap();
        drop(holder);
        let db = waiter.join().unwrap().expect("a database created at the freed name");
        db.insert("k", "v").unwrap();
        drop(db);
        let db = Config::new().file(&path).plaintext().use_env(false).open().unwrap();
        assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    /// Regression: `create_new` and `temporary` were ignored for custom storage: the first
    /// opened the database the storage held, the second wrote into it and removed nothing.
    #[test]
    fn custom_storage_refuses_create_new_over_data_and_temporary() {
        let s: Arc<dyn Storage> = Arc::new(crate::storage::MemoryStorage::new());
        let cfg = || Config::new().storage(s.clone()).plaintext().use_env(false);
        let db = cfg().create_new(true).open().expect("create_new on empty storage");
        db.insert("k", "v").unwrap();
        drop(db);
        let err = cfg().create_new(true).open().map(|_| ()).unwrap_err();
        assert!(matches!(err, Error::AlreadyExists(_)), "{err:?}");
        let err = cfg().temporary(true).open().map(|_| ()).unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{err:?}");
        assert_eq!(cfg().open().unwrap().get("k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    /// A `create_new` that finds a database under the lock (its creator crashed meanwhile,
    /// leaving a log) is refused writing nothing: its close folded the log into the file and
    /// removed it.
    #[test]
    fn a_create_new_refused_under_the_lock_leaves_a_crashed_log_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = |p: &Path| Config::new().file(p).plaintext().use_env(false).flush_every_ms(None);
        let made = dir.path().join("made");
        let db = cfg(&made).open().unwrap();
        db.insert("k", "v").unwrap();
        db.flush().unwrap();
        let (file, log) = (std::fs::read(&made).unwrap(), std::fs::read(wal::sidecar_path(&made)).unwrap());
        drop(db);
        let path = dir.path().join("db");
        let holder = FileStorage::open(&path, true).unwrap();
        let waiter = open_until_not_locked(cfg(&path).create_new(true));
        // Within LOCK_GRACE: the waiter has looked at the empty file and waits for its lock.
        std::thread::sleep(std::time::Duration::from_millis(100));
        std::fs::write(&path, &file).unwrap();
        std::fs::write(wal::sidecar_path(&path), &log).unwrap();
        drop(holder);
        let err = waiter.join().unwrap().map(|_| ()).unwrap_err();
        assert!(matches!(err, Error::AlreadyExists(_)), "{err:?}");
        assert_eq!(std::fs::read(&path).unwrap(), file, "the refused create changed the file");
        assert_eq!(std::fs::read(wal::sidecar_path(&path)).unwrap(), log, "the refused create changed the log");
        assert_eq!(cfg(&path).open().unwrap().get("k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    /// A refused create removes the file it made only if the name still names that file.
    #[test]
    fn a_name_given_to_another_file_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mine = FileStorage::open(&path, true).unwrap();
        let identity = mine.metadata().unwrap();
        std::fs::write(dir.path().join("other"), b"another file").unwrap();
        std::fs::rename(dir.path().join("other"), &path).unwrap();
        remove_if_same(&path, Some(&identity));
        assert_eq!(std::fs::read(&path).unwrap(), b"another file");
        let theirs = std::fs::metadata(&path).unwrap();
        remove_if_same(&path, Some(&theirs));
        assert!(!path.exists());
    }
}
