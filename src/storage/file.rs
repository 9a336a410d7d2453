//! File storage: one real file, positioned I/O, guarded by an advisory lock.
//!
//! Layer: storage (bottom). May call only `std`, `parking_lot`, `rand` and `crate::error`; nothing in
//! the crate sits below it. Contains no `unsafe`.
//!
//! Invariants:
//! - a read-write handle holds an exclusive advisory lock (`flock`) on the file, a read-only
//!   handle a shared one, for the handle's whole life; a conflicting open waits at most
//!   [`LOCK_GRACE`] for it, then fails with [`Error::Locked`];
//! - an open returns a handle on the file its path names once the lock is held (one removed or
//!   renamed over while the lock was awaited is let go, and the path opened again);
//! - the lock lives on the one `File` this struct owns (std opens it close-on-exec and never
//!   duplicates it), so dropping the `FileStorage` closes the descriptor and releases the lock;
//! - all I/O is positioned (`pread`/`pwrite`), so concurrent readers never race on a cursor;
//! - a read-only handle refuses `write_at` and `set_len` with `PermissionDenied`;
//! - `sync` is `fdatasync`: it makes every earlier write and length change durable;
//! - a file whose `sync` failed is not opened for writing again in this process (below).

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Storage;
use crate::error::Error;

/// Files (device, inode) whose `fdatasync` failed in this process. Linux marks the pages of a
/// failed writeback clean, keeps them cached and reports the error once: a handle opened later
/// reads them as if they were on the disk, and its syncs succeed, so recovery would trust
/// writes the disk never got. Such a file is refused a read-write open for the rest of the
/// process (SPEC §8); a read-only open, which writes nothing, is allowed.
static SYNC_FAILED: std::sync::Mutex<Vec<FileIdentity>> = std::sync::Mutex::new(Vec::new());

/// Device, inode and, where the file system keeps it, creation time (so that a new file given
/// a deleted one's inode number is not taken for it).
type FileIdentity = (u64, u64, Option<std::time::SystemTime>);

/// Whether two `stat`s describe one file (same device and inode).
pub(crate) fn same_inode(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

fn identity(f: &File) -> Option<FileIdentity> {
    use std::os::unix::fs::MetadataExt;
    f.metadata().ok().map(|m| (m.dev(), m.ino(), m.created().ok()))
}

fn note_sync_failure(f: &File) {
    if let Some(id) = identity(f) {
        let mut failed = SYNC_FAILED.lock().unwrap_or_else(|e| e.into_inner());
        if !failed.contains(&id) {
            failed.push(id);
        }
    }
}

fn refuse_after_sync_failure(f: &File) -> crate::Result<()> {
    let failed = SYNC_FAILED.lock().unwrap_or_else(|e| e.into_inner());
    match identity(f) {
        Some(id) if failed.contains(&id) => Err(Error::Io(io::Error::other(
            "a sync of this file failed earlier in this process: the system may cache writes the disk does not \
hold, so it is not opened for writing again here (restart the machine, then check it)",
        ))),
        _ => Ok(()),
    }
}

/// A database file on disk.
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    path: PathBuf,
    read_only: bool,
    /// This open made the file (it was not at the path when the open that locked it ran).
    created: bool,
    /// `fdatasync`s of the file that returned (`Storage::device_syncs`).
    syncs: std::sync::atomic::AtomicU64,
}

impl FileStorage {
    /// Opens `path` for reading and writing (creating it if `create`) and takes an exclusive
    /// lock on it. Fails with [`Error::Locked`] if another handle, in this process or another,
    /// holds any lock on the file for longer than [`LOCK_GRACE`].
    /// A file it creates is readable and writable by its owner only (mode 0600): a
    /// plaintext database holds every record in clear.
    pub fn open(path: &Path, create: bool) -> crate::Result<FileStorage> {
        use std::os::unix::fs::OpenOptionsExt;
        let (file, created) = locked_at(path, false, || {
            let mut options = OpenOptions::new();
            options.read(true).write(true).mode(0o600);
            // A new file is made under a name of its own beside `path`, locked, and only then
            // linked to `path` (which fails if a file is there: `created` says whether this open
            // made it). Made at `path` itself, it was there unlocked for a moment, and another
            // open that locked it first found an empty file: a database truncated to nothing.
            // A file removed between that and the open of the one found there is made again.
            let mut removed_between = 0;
            let (file, created) = loop {
                let made = if create { create_locked_at(path, &options)? } else { None };
                if let Some(file) = made {
                    break (file, true);
                }
                match options.open(path) {
                    Err(e) if create && e.kind() == io::ErrorKind::NotFound && removed_between < RELOCK_ATTEMPTS => {
                        removed_between += 1;
                    }
                    r => break (r?, false),
                }
            };
            refuse_after_sync_failure(&file)?;
            Ok((file, created))
        })?;
        Ok(FileStorage { file, path: path.to_path_buf(), read_only: false, created, syncs: Default::default() })
    }

    /// Opens an existing `path` read-only and takes a shared lock on it, for inspection tools.
    /// Fails with [`Error::Locked`] if a read-write handle holds the file. Writes through the
    /// returned handle fail with `PermissionDenied`.
    ///
    /// The file is synced first (`fdatasync` works on a descriptor opened for reading): a
    /// writer killed between its writes and its sync leaves them in the system's cache, where
    /// this handle reads them, and it would report a commit (its sequence number, its root
    /// digest) that a power loss then takes back. A sync that failed (EIO, ENOSPC, EDQUOT: see
    /// `sync_or_say`) fails the open; a file system that cannot sync (read-only media) is said
    /// on the audit log.
    pub fn open_read_only(path: &Path) -> crate::Result<FileStorage> {
        let (file, ()) = locked_at(path, true, || Ok((OpenOptions::new().read(true).open(path)?, ())))?;
        let synced = sync_or_say(file.sync_data(), path, "a read-only open could not sync the file")
            .inspect_err(|_| note_sync_failure(&file))?;
        let syncs = std::sync::atomic::AtomicU64::new(u64::from(synced));
        Ok(FileStorage { file, path: path.to_path_buf(), read_only: true, created: false, syncs })
    }

    /// Whether this open made the file: it was not at the path when the open that took the
    /// lock ran. Facts about the file worth trusting are those learned once the lock is held.
    pub fn created(&self) -> bool {
        self.created
    }

    /// The file's device and inode, to check that a path still names it before removing the
    /// name (`same_inode`).
    pub(crate) fn metadata(&self) -> io::Result<std::fs::Metadata> {
        self.file.metadata()
    }

    /// Gives the file `main`'s group and its group and other permission bits, read and write
    /// for its owner (a database's write-ahead log, shared as the database file is), through
    /// the handle: a name could have been replaced by a link.
    pub(crate) fn share_as(&self, main: &std::fs::Metadata) -> io::Result<()> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mine = self.file.metadata()?;
        if mine.gid() != main.gid() {
            std::os::unix::fs::fchown(&self.file, None, Some(main.gid()))?;
        }
        self.file.set_permissions(std::fs::Permissions::from_mode(main.mode() & 0o066 | 0o600))
    }

    /// The path this storage was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when this handle was opened with [`FileStorage::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.read_only {
            Err(io::Error::new(io::ErrorKind::PermissionDenied, "storage was opened read-only"))
        } else {
            Ok(())
        }
    }
}

/// A sync's outcome where only a sync that cannot be made is forgiven: `Ok(true)` synced; a
/// failure that says the sync cannot be made here (a read-only file system, one that does not
/// sync or refuses the call, a directory this user cannot open or that is gone) is said on the
/// audit log as `what` and is `Ok(false)`, for the caller to do without the sync (the one policy
/// of a read-only open, a new name, and the write-ahead log's directory); every other failure
/// is the error: EIO, and as well ENOSPC and EDQUOT, with which a file system that could not
/// write back dirty pages (thin or quota-limited volumes, btrfs) reports them lost. Those were
/// forgiven too, and a read-only open went on to report commits the disk never got (file
/// review, medium-low).
pub(crate) fn sync_or_say(r: io::Result<()>, path: &Path, what: &str) -> io::Result<bool> {
    use io::ErrorKind::{InvalidInput, NotFound, PermissionDenied, ReadOnlyFilesystem, Unsupported};
    /// `ENOTSUP`, which std names no kind on macOS (where it is not `EOPNOTSUPP`): what
    /// `F_FULLFSYNC` answers on volumes that cannot do it (SMB and others).
    #[cfg(target_vendor = "apple")]
    const ENOTSUP: i32 = 45;
    #[cfg(not(target_vendor = "apple"))]
    const ENOTSUP: i32 = 95;
    match r {
        Ok(()) => Ok(true),
        // EACCES and EPERM, EROFS, EINVAL, ENOSYS and EOPNOTSUPP (and ENOTSUP), ENOENT.
        Err(e)
            if matches!(e.kind(), PermissionDenied | ReadOnlyFilesystem | InvalidInput | Unsupported | NotFound)
                || e.raw_os_error() == Some(ENOTSUP) =>
        {
            tracing::warn!(target: "foldvault::audit", error = %e, path = %path.display(), "{what}");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Syncs the directory holding `path` (its current directory if it has none), so that a file
/// created or renamed there stays after a crash: `fdatasync` of a file does not promise its
/// directory entry.
pub fn sync_parent_dir(path: &Path) -> io::Result<()> {
    #[cfg(test)]
    if REFUSE_DIR_SYNC.with(std::cell::Cell::get) {
        return Err(io::Error::from(io::ErrorKind::PermissionDenied));
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

#[cfg(test)]
thread_local! {
    /// Unit tests: this thread's directory syncs fail as on a directory this user cannot open
    /// (tests run as root, which opens any).
    pub(crate) static REFUSE_DIR_SYNC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `sync_parent_dir` for a new name whose durability is all that is in doubt if the directory
/// cannot be synced (a file system that refuses, a directory this user cannot open): that is
/// said on the audit log, and only a sync that failed (EIO, ENOSPC, EDQUOT: `sync_or_say`),
/// after which commits acknowledged later could vanish with the name, is an error. A new database's names, and a finished copy,
/// conversion or backup renamed into place. (A log whose directory cannot be synced logs
/// nothing: `storage::wal`'s `unlogged`.) Whether the directory was synced.
pub(crate) fn sync_new_name(path: &Path) -> io::Result<bool> {
    sync_or_say(sync_parent_dir(path), path, "the new name's directory could not be synced")
}

/// How long an open waits for a conflicting lock before it reports [`Error::Locked`]. A lock
/// lives on the open file description, and a process that spawns a child (from any thread)
/// duplicates every descriptor into it until the child's `exec` closes them: for that moment a
/// file its owner has just closed is still locked. An open that follows a close, in a process
/// that also spawns processes, would otherwise fail now and then. A real holder is reported
/// after this wait.
pub const LOCK_GRACE: Duration = Duration::from_millis(500);

/// Makes a new file at `path`, locked before any other open can find it there: made under a
/// name of its own in the same directory, locked, then hard-linked to `path` and the other name
/// removed. `None` if a file is at `path` already (the caller opens that one).
fn create_locked_at(path: &Path, options: &OpenOptions) -> crate::Result<Option<File>> {
    if path.exists() {
        return Ok(None);
    }
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    // `.NAME.new-HEX`, twelve random hex digits (`db::leftovers` removes one a crash left): a
    // name from the process id and a count was the same for every process given the same id
    // (the first in a container), and one left behind failed every create of NAME there.
    let mut made = None;
    for _ in 0..RELOCK_ATTEMPTS {
        let mut r = [0u8; 6];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut r);
        let mut own = std::ffi::OsString::from(".");
        own.push(name);
        own.push(".new-");
        own.push(r.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let own = path.with_file_name(own);
        match options.clone().create_new(true).open(&own) {
            Ok(file) => {
                made = Some((file, own));
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::Io(e)),
        }
    }
    let Some((file, own)) = made else {
        return Err(Error::Io(io::Error::new(io::ErrorKind::AlreadyExists, "no free name to create the file under")));
    };
    // A lock that cannot be taken fails the create, leaving nothing: taken for a file system
    // without hard links below, it made the file at `path`, unlocked, and left it there empty,
    // which every later open refused as a database truncated to nothing.
    if let Err(e) = take_lock(&file, false) {
        let _ = std::fs::remove_file(&own);
        return Err(e);
    }
    let linked = std::fs::hard_link(&own, path);
    let _ = std::fs::remove_file(&own);
    match linked {
        Ok(()) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
        // A file system without hard links: made at `path` itself, as before (the moment
        // unlocked comes back there).
        Err(_) => match options.clone().create_new(true).open(path) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(Error::Io(e)),
        },
    }
}

/// How many times an open tries again when the file it locked is no longer the one at its path.
const RELOCK_ATTEMPTS: usize = 8;

/// Opens `path` (`open`) and takes its lock (`take_lock`), then checks that the path still
/// names the file locked: while the lock was awaited its holder may have removed the file (a
/// temporary database at close, a create that failed) or renamed another over it (a restore,
/// an in-place conversion). A handle on the file no longer at the path would read a database
/// that is gone and write commits nobody will see; the open starts again on what the path names
/// now.
fn locked_at<T>(path: &Path, shared: bool, open: impl Fn() -> crate::Result<(File, T)>) -> crate::Result<(File, T)> {
    for _ in 0..RELOCK_ATTEMPTS {
        let (file, with) = open()?;
        take_lock(&file, shared)?;
        let still_there = match std::fs::metadata(path) {
            Ok(at_path) => same_inode(&file.metadata()?, &at_path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(Error::Io(e)),
        };
        if still_there {
            return Ok((file, with));
        }
    }
    // Replaced again and again while this open waited: another process holds the name.
    Err(Error::Locked)
}

/// Takes `file`'s lock (exclusive, or `shared`), polling with growing pauses while another
/// description holds a conflicting one, for at most [`LOCK_GRACE`].
fn take_lock(file: &File, shared: bool) -> crate::Result<()> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        let r = if shared { file.try_lock_shared() } else { file.try_lock() };
        match r {
            Ok(()) => return Ok(()),
            Err(TryLockError::Error(e)) => return Err(Error::Io(e)),
            Err(TryLockError::WouldBlock) if start.elapsed() >= LOCK_GRACE => return Err(Error::Locked),
            Err(TryLockError::WouldBlock) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
    }
}

impl Storage for FileStorage {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.check_writable()?;
        self.file.write_all_at(buf, offset)
    }

    fn sync(&self) -> io::Result<()> {
        if self.read_only {
            // Nothing written through this handle; nothing to make durable.
            return Ok(());
        }
        let synced = self.file.sync_data();
        match &synced {
            Ok(()) => {
                self.syncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(_) => note_sync_failure(&self.file),
        }
        synced
    }

    fn device_syncs(&self) -> u64 {
        self.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check_writable()?;
        self.file.set_len(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sync that cannot be made here is forgiven (said on the audit log); a sync that failed
    /// to write is the error: EIO, ENOSPC and EDQUOT (which write-back reports on thin and
    /// quota-limited volumes) were forgiven as well (file review, medium-low).
    #[test]
    fn only_a_sync_that_cannot_be_made_is_forgiven() {
        use io::ErrorKind::*;
        let path = Path::new("x");
        let kinds = [
            (Other, false),
            (StorageFull, false),
            (QuotaExceeded, false),
            (ReadOnlyFilesystem, true),
            (InvalidInput, true),
            (PermissionDenied, true),
            (Unsupported, true),
            (NotFound, true),
        ];
        for (kind, forgiven) in kinds {
            let r = sync_or_say(Err(io::Error::from(kind)), path, "test");
            assert_eq!(r.is_ok(), forgiven, "{kind:?}: {r:?}");
            assert!(r.is_err() || matches!(r, Ok(false)), "{kind:?}");
        }
        // The errno values themselves, as Linux gives them: EIO, ENOSPC, EDQUOT fail; EROFS,
        // EINVAL, EACCES, EPERM, ENOSYS, EOPNOTSUPP are forgiven.
        #[cfg(target_os = "linux")]
        for (errno, forgiven) in [
            (5, false),
            (28, false),
            (122, false),
            (30, true),
            (22, true),
            (13, true),
            (1, true),
            (38, true),
            (95, true),
        ] {
            let r = sync_or_say(Err(io::Error::from_raw_os_error(errno)), path, "test");
            assert_eq!(r.is_ok(), forgiven, "errno {errno}: {r:?}");
        }
        assert!(matches!(sync_or_say(Ok(()), path, "test"), Ok(true)));
    }

    /// After a failed sync the file is not opened for writing again in this process (the
    /// kernel's cache may hold writes that never reached the disk); reading is still allowed.
    #[test]
    fn a_file_whose_sync_failed_is_not_reopened_for_writing() {
        // Kept after the test: its inode is not given to another test's file in this process.
        let dir = tempfile::tempdir().unwrap().keep();
        let path = dir.join("f");
        let s = FileStorage::open(&path, true).unwrap();
        s.write_at(0, &[1; 4096]).unwrap();
        // As `sync` does when `fdatasync` fails (no device here fails on demand).
        note_sync_failure(&s.file);
        drop(s);
        assert!(matches!(FileStorage::open(&path, false), Err(Error::Io(_))));
        assert!(FileStorage::open_read_only(&path).is_ok());
        // Another file is unaffected.
        assert!(FileStorage::open(&dir.join("g"), true).is_ok());
    }

    /// `open` again after `Locked`: a machine so loaded that the holder let go only after
    /// `LOCK_GRACE` must not fail the test (the retry opens what the path names then).
    fn open_until_not_locked(
        open: impl Fn() -> crate::Result<FileStorage> + Send + 'static,
    ) -> std::thread::JoinHandle<crate::Result<FileStorage>> {
        std::thread::spawn(move || {
            loop {
                match open() {
                    Err(Error::Locked) => continue,
                    r => return r,
                }
            }
        })
    }

    /// An open that waits for the lock while its holder renames another file over the path
    /// (as a restore does) gets the file now at the path, not the one it first opened.
    #[test]
    fn an_open_waiting_for_the_lock_follows_a_rename_over_the_path() {
        let (dir, path) = temp_path();
        let holder = FileStorage::open(&path, true).unwrap();
        holder.write_at(0, b"old").unwrap();
        let waiter = {
            let path = path.clone();
            open_until_not_locked(move || FileStorage::open(&path, false))
        };
        // Within LOCK_GRACE: the waiter has opened the old file and waits for its lock (had it
        // not opened it yet, it opens the new one and the test still holds).
        std::thread::sleep(Duration::from_millis(100));
        let new = dir.path().join("new");
        std::fs::write(&new, b"new").unwrap();
        std::fs::rename(&new, &path).unwrap();
        drop(holder);
        let got = waiter.join().unwrap().unwrap();
        let mut b = [0u8; 3];
        got.read_at(0, &mut b).unwrap();
        assert_eq!(&b, b"new", "the waiter kept the file that was replaced");
        drop(got);
        // A path removed while its lock was awaited: the open of an existing file fails.
        let holder = FileStorage::open(&path, false).unwrap();
        let waiter = {
            let path = path.clone();
            open_until_not_locked(move || FileStorage::open_read_only(&path))
        };
        std::thread::sleep(Duration::from_millis(100));
        std::fs::remove_file(&path).unwrap();
        drop(holder);
        match waiter.join().unwrap() {
            Err(Error::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }

    fn temp_path() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.fv");
        (dir, path)
    }

    #[test]
    fn round_trip() {
        let (_dir, path) = temp_path();
        let s = FileStorage::open(&path, true).unwrap();
        assert_eq!(s.path(), path.as_path());
        assert!(!s.is_read_only());
        assert_eq!(s.len().unwrap(), 0);
        s.write_at(4096, b"page one").unwrap();
        s.write_at(0, b"header").unwrap();
        assert_eq!(s.len().unwrap(), 4096 + 8);
        let mut buf = [0u8; 8];
        s.read_at(4096, &mut buf).unwrap();
        assert_eq!(&buf, b"page one");
        let mut buf = [0xffu8; 8];
        s.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"header\0\0");
        s.sync().unwrap();
        s.set_len(6).unwrap();
        assert_eq!(s.len().unwrap(), 6);
        drop(s);

        let s = FileStorage::open(&path, false).unwrap();
        let mut buf = [0u8; 6];
        s.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"header");
    }

    #[test]
    fn open_without_create_fails_on_missing_file() {
        let (_dir, path) = temp_path();
        let err = FileStorage::open(&path, false).unwrap_err();
        match err {
            Error::Io(e) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn read_past_end_is_unexpected_eof() {
        let (_dir, path) = temp_path();
        let s = FileStorage::open(&path, true).unwrap();
        s.write_at(0, &[7u8; 100]).unwrap();
        let mut buf = [0u8; 10];
        let err = s.read_at(95, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let err = s.read_at(1000, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn second_open_is_locked_until_first_dropped() {
        let (_dir, path) = temp_path();
        let first = FileStorage::open(&path, true).unwrap();
        assert!(matches!(FileStorage::open(&path, true), Err(Error::Locked)));
        assert!(matches!(FileStorage::open(&path, false), Err(Error::Locked)));
        assert!(matches!(FileStorage::open_read_only(&path), Err(Error::Locked)));
        drop(first);
        let second = FileStorage::open(&path, false).unwrap();
        second.write_at(0, b"x").unwrap();
    }

    /// A lock released while an open waits (as a spawned child's inherited descriptor is closed
    /// by its `exec`) is taken, not reported as `Locked`.
    #[test]
    fn an_open_waits_briefly_for_a_lock_being_released() {
        let (_dir, path) = temp_path();
        for read_only in [false, true] {
            let first = FileStorage::open(&path, true).unwrap();
            let release = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                drop(first);
            });
            let second = if read_only { FileStorage::open_read_only(&path) } else { FileStorage::open(&path, false) };
            assert!(second.is_ok(), "{:?}", second.err());
            release.join().unwrap();
        }
    }

    #[test]
    fn read_only_handles_share_and_refuse_writes() {
        let (_dir, path) = temp_path();
        {
            let s = FileStorage::open(&path, true).unwrap();
            s.write_at(0, b"data").unwrap();
            s.sync().unwrap();
        }
        let r1 = FileStorage::open_read_only(&path).unwrap();
        let r2 = FileStorage::open_read_only(&path).unwrap();
        assert!(r1.is_read_only());
        assert!(matches!(FileStorage::open(&path, false), Err(Error::Locked)));
        let mut buf = [0u8; 4];
        r2.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"data");
        let err = r1.write_at(0, b"no").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        let err = r1.set_len(0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        r1.sync().unwrap();
        drop(r1);
        drop(r2);
        FileStorage::open(&path, false).unwrap();
    }

    /// A writer killed before its sync leaves its writes in the system's cache: a read-only
    /// open syncs the file before it reads them (and would report them durable).
    #[test]
    fn a_read_only_open_syncs_what_a_killed_writer_left_in_the_cache() {
        let (_dir, path) = temp_path();
        let w = FileStorage::open(&path, true).unwrap();
        w.write_at(0, b"unsynced").unwrap();
        drop(w); // no sync: a writer killed here
        let r = FileStorage::open_read_only(&path).unwrap();
        assert_eq!(r.device_syncs(), 1, "the open synced the file");
    }
}
