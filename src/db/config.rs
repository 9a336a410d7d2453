//! `Config`: how a database is opened (sled 0.34's builder, plus keys and encryption).
//!
//! Transparent encryption: when no key is set in code, `open` takes one from the environment —
//! `FOLDVAULT_KEY_FILE` (a file holding a 32-byte master key, raw or as 64 hex characters) or
//! `FOLDVAULT_PASSPHRASE`. New databases are then created encrypted; existing ones open per
//! their header. With neither, new databases are plaintext, and an encrypted one fails with
//! `WrongKey` naming both variables.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::crypto::slots::Credentials;
use crate::crypto::{CipherBackend, CipherBackends, CipherId, KdfParams, MasterKey, Passphrase};
use crate::error::{Error, Result};
use crate::storage::Storage;

/// The environment variable naming a master-key file.
pub const ENV_KEY_FILE: &str = "FOLDVAULT_KEY_FILE";
/// The environment variable holding a passphrase.
pub const ENV_PASSPHRASE: &str = "FOLDVAULT_PASSPHRASE";
/// The file name used inside a database directory.
pub const DB_FILE_NAME: &str = "db.foldvault";

/// The largest page cache `Config::cache_capacity` keeps (1 TiB); larger requests are this.
const MAX_CACHE_CAPACITY: usize = 1 << 40;
/// The most pages `Config::wal_checkpoint_pages` takes (1 GiB of log).
pub const MAX_WAL_CHECKPOINT_PAGES: u64 = 1 << 18;

/// When a commit is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Synced to disk before `commit` returns.
    Immediate,
    /// Visible at once; durable after the next `flush()` or background flush (sled's default).
    /// The background flusher (`Config::flush_every_ms`) runs only in a database whose default
    /// is `Eventual`: an `Eventual` transaction in an `Immediate` database is durable after the
    /// next `flush()` or the next `Immediate` commit.
    #[default]
    Eventual,
}

/// Whether a new database is encrypted, and whether a plaintext one is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encryption {
    /// Encrypted if a key is given (in code or in the environment), else plaintext.
    #[default]
    Auto,
    /// Always plaintext (CRC32-checked pages); keys given are not used, and a key given in
    /// code raises the `plaintext_with_key` audit warning, at creation as at open.
    Plaintext,
    /// Always encrypted: creating needs a key (`WrongKey` without one), and opening a
    /// plaintext file fails (`Unsupported`), key given or not.
    Required,
}

#[derive(Clone)]
pub(crate) enum Location {
    Unset,
    Dir(PathBuf),
    File(PathBuf),
    Storage(Arc<dyn Storage>),
}

/// Database configuration. `Debug` never shows keys or passphrases.
pub struct Config {
    pub(crate) location: Location,
    pub(crate) temporary: bool,
    pub(crate) create_new: bool,
    pub(crate) credentials: Credentials,
    pub(crate) use_env: bool,
    pub(crate) encryption: Encryption,
    pub(crate) cipher: CipherId,
    /// `None`: the default backends, chosen (timed, `crypto/fastest.rs`) only when an encrypted
    /// file is opened, so that a plaintext configuration never pays for the choice.
    pub(crate) backends: Option<CipherBackends>,
    pub(crate) kdf: KdfParams,
    pub(crate) cache_capacity: usize,
    pub(crate) durability: Durability,
    pub(crate) flush_every_ms: Option<u64>,
    pub(crate) seal_budget: u64,
    pub(crate) spill_after: usize,
    pub(crate) min_commit_seq: Option<u64>,
    pub(crate) expected_root_digest: Option<[u8; 32]>,
    pub(crate) checkpoint_on_close: bool,
    pub(crate) read_only: bool,
    pub(crate) zeroize_cache: bool,
    /// `Some(checkpoint pages)`: a write-ahead log beside the file (`Config::write_ahead_log`).
    pub(crate) wal: Option<u64>,
    /// `Config::wal_checkpoint_pages`, kept while the log is off (it was dropped, and a later
    /// `write_ahead_log(true)` took the default).
    pub(crate) wal_checkpoint: u64,
    /// The log's checkpoints copy pages on a thread of their own (`Config::wal_background_checkpoints`).
    pub(crate) wal_background: bool,
}

/// Seals per key epoch before the engine moves to the next epoch: 2^30, a quarter of NIST's
/// 2^32 bound for random 96-bit GCM nonces (SPEC.md §6 argues the margin).
pub const DEFAULT_SEAL_BUDGET: u64 = 1 << 30;
/// Edited nodes a write transaction keeps decoded before it writes leaves early
/// (`Config::tx_spill_after`).
pub const DEFAULT_SPILL_AFTER: usize = 16_384;

impl Default for Config {
    fn default() -> Self {
        Config {
            location: Location::Unset,
            temporary: false,
            create_new: false,
            credentials: Credentials::none(),
            use_env: true,
            encryption: Encryption::Auto,
            cipher: CipherId::Aes256Gcm,
            backends: None,
            kdf: KdfParams::default(),
            cache_capacity: 32 << 20,
            durability: Durability::Eventual,
            flush_every_ms: Some(500),
            seal_budget: DEFAULT_SEAL_BUDGET,
            spill_after: DEFAULT_SPILL_AFTER,
            min_commit_seq: None,
            expected_root_digest: None,
            checkpoint_on_close: true,
            read_only: false,
            zeroize_cache: true,
            wal: Some(crate::storage::wal::DEFAULT_CHECKPOINT_PAGES),
            wal_checkpoint: crate::storage::wal::DEFAULT_CHECKPOINT_PAGES,
            wal_background: true,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let loc = match &self.location {
            Location::Unset => "unset".to_string(),
            Location::Dir(p) => format!("dir {}", p.display()),
            Location::File(p) => format!("file {}", p.display()),
            Location::Storage(_) => "custom storage".to_string(),
        };
        f.debug_struct("Config")
            .field("location", &loc)
            .field("temporary", &self.temporary)
            .field("credentials", &self.credentials)
            .field("encryption", &self.encryption)
            .field("cipher", &self.cipher)
            .field("kdf", &self.kdf)
            .field("cache_capacity", &self.cache_capacity)
            .field("durability", &self.durability)
            .field("flush_every_ms", &self.flush_every_ms)
            .field("wal", &self.wal)
            .field("wal_background", &self.wal_background)
            .finish_non_exhaustive()
    }
}

impl Clone for Config {
    fn clone(&self) -> Self {
        Config { location: self.location.clone(), credentials: self.credentials.duplicate(), ..*self.shallow() }
    }
}

impl Config {
    fn shallow(&self) -> Box<Config> {
        Box::new(Config {
            location: Location::Unset,
            temporary: self.temporary,
            create_new: self.create_new,
            credentials: Credentials::none(),
            use_env: self.use_env,
            encryption: self.encryption,
            cipher: self.cipher,
            backends: self.backends,
            kdf: self.kdf,
            cache_capacity: self.cache_capacity,
            durability: self.durability,
            flush_every_ms: self.flush_every_ms,
            seal_budget: self.seal_budget,
            spill_after: self.spill_after,
            min_commit_seq: self.min_commit_seq,
            expected_root_digest: self.expected_root_digest,
            checkpoint_on_close: self.checkpoint_on_close,
            read_only: self.read_only,
            zeroize_cache: self.zeroize_cache,
            wal: self.wal,
            wal_checkpoint: self.wal_checkpoint,
            wal_background: self.wal_background,
        })
    }

    pub fn new() -> Config {
        Config::default()
    }
    /// A database directory, as in sled: the file `db.foldvault` inside it (created if missing).
    /// A path that names a file already (one `foldvault init FILE` made) opens that file.
    pub fn path<P: AsRef<Path>>(mut self, p: P) -> Config {
        self.location = Location::Dir(p.as_ref().to_path_buf());
        self
    }
    /// A single database file.
    pub fn file<P: AsRef<Path>>(mut self, p: P) -> Config {
        self.location = Location::File(p.as_ref().to_path_buf());
        self
    }
    /// Custom storage (in-memory, fault-injecting, ...).
    pub fn storage(mut self, s: Arc<dyn Storage>) -> Config {
        self.location = Location::Storage(s);
        self
    }
    /// Removes the database when the last handle drops (a fresh one is created at `path`, or in
    /// the system's temporary directory when no path is set). A database already at `path`
    /// (a file that holds anything, or a log beside it) is refused, `AlreadyExists`, and left
    /// as it is. Refused with custom storage (`InvalidConfig`): there is no file to remove.
    pub fn temporary(mut self, t: bool) -> Config {
        self.temporary = t;
        self
    }
    /// Fails (`AlreadyExists`) if a database already exists at the path, or custom storage
    /// holds any bytes.
    pub fn create_new(mut self, c: bool) -> Config {
        self.create_new = c;
        self
    }
    /// Bytes of opened pages to keep in memory (default 32 MiB). Above 1 TiB it is 1 TiB, as
    /// sled caps its own (the cache takes memory only as pages are read into it).
    pub fn cache_capacity(mut self, bytes: u64) -> Config {
        self.cache_capacity = bytes.min(MAX_CACHE_CAPACITY as u64) as usize;
        self
    }
    /// Background flush interval for eventual durability (`None` = only explicit `flush`).
    pub fn flush_every_ms(mut self, ms: Option<u64>) -> Config {
        self.flush_every_ms = ms;
        self
    }
    /// Accepted for sled compatibility; foldvault does not compress (SPEC.md §9 says why).
    pub fn use_compression(self, _c: bool) -> Config {
        self
    }
    pub fn durability(mut self, d: Durability) -> Config {
        self.durability = d;
        self
    }
    pub fn passphrase(mut self, p: impl Into<Passphrase>) -> Config {
        self.credentials.passphrase = Some(p.into());
        self
    }
    pub fn master_key(mut self, k: MasterKey) -> Config {
        self.credentials.master = Some(k);
        self
    }
    /// Unlocks with a recovery key (see `Db::add_recovery_key`).
    pub fn recovery_key(mut self, k: MasterKey) -> Config {
        self.credentials.recovery = Some(k);
        self
    }
    pub fn credentials(mut self, c: Credentials) -> Config {
        self.credentials = c;
        self
    }
    /// Whether to read keys from `FOLDVAULT_KEY_FILE` / `FOLDVAULT_PASSPHRASE` when none is
    /// given in code (default true).
    pub fn use_env(mut self, u: bool) -> Config {
        self.use_env = u;
        self
    }
    pub fn encryption(mut self, e: Encryption) -> Config {
        self.encryption = e;
        self
    }
    pub fn plaintext(self) -> Config {
        self.encryption(Encryption::Plaintext)
    }
    pub fn cipher(mut self, c: CipherId) -> Config {
        self.cipher = c;
        self
    }
    /// Seals and opens pages on `b` (by default, the fastest backend at each direction).
    pub fn cipher_backend(self, b: CipherBackend) -> Config {
        self.cipher_backends(CipherBackends::both(b))
    }
    /// Seals pages on `b.seal` and opens them on `b.open` (all backends make the same pages).
    pub fn cipher_backends(mut self, b: CipherBackends) -> Config {
        self.backends = Some(b);
        self
    }
    /// The backends an encrypted open uses: the ones named with `cipher_backend(s)`, else the
    /// default (the fastest built at each direction, timed once per process).
    pub(crate) fn backends(&self) -> CipherBackends {
        self.backends.unwrap_or_default()
    }
    /// The Argon2id parameters of a passphrase slot this open makes (at create). Checked when
    /// the slot is made (`InvalidConfig` if out of range), not at every open.
    pub fn kdf(mut self, k: KdfParams) -> Config {
        self.kdf = k;
        self
    }
    /// Seals per key epoch before rolling to a new epoch (tests lower it), between 16 and
    /// [`DEFAULT_SEAL_BUDGET`] (2^30): random 96-bit nonces stay far below NIST's limit of 2^32
    /// messages per key (SPEC §6.3) however it is set.
    pub fn seal_budget(mut self, n: u64) -> Config {
        self.seal_budget = n.clamp(16, DEFAULT_SEAL_BUDGET);
        self
    }
    /// Bounds the memory of a large write transaction: once it holds more than `nodes` edited
    /// tree nodes (decoded, about 4-5 KiB each), its edited leaves are sealed and written early
    /// and dropped from memory; a leaf edited again is read back from the cache. The edited
    /// branches stay (about one per hundred leaves), and the next spill comes after `nodes`
    /// more. Default 16,384
    /// (about 64 MiB of pages); lower it to trade write volume for memory. At least 16.
    pub fn tx_spill_after(mut self, nodes: usize) -> Config {
        self.spill_after = nodes.max(16);
        self
    }
    /// Refuses to open a file whose newest commit is older than `seq` (whole-file rollback).
    pub fn min_commit_seq(mut self, seq: u64) -> Config {
        self.min_commit_seq = Some(seq);
        self
    }
    /// Refuses to open a file whose newest commit's root digest differs (`RootDigestMismatch`):
    /// anchor `Db::durable_root_digest`, which a crash cannot take back.
    pub fn expected_root_digest(mut self, d: [u8; 32]) -> Config {
        self.expected_root_digest = Some(d);
        self
    }
    /// This configuration without its rollback anchors: for a new database written from another
    /// (a copy, a salvage), which the anchors do not name. With them its create is refused
    /// (`open::create`).
    pub(crate) fn without_anchors(mut self) -> Config {
        self.min_commit_seq = None;
        self.expected_root_digest = None;
        self
    }
    /// Whether a clean close writes a second record of the newest commit so that the next open
    /// has nothing to verify (default true). Off, the next open verifies the pages the newest
    /// commit wrote, as after a crash (tests that damage those pages use this).
    pub fn checkpoint_on_close(mut self, on: bool) -> Config {
        self.checkpoint_on_close = on;
        self
    }
    /// Opens an existing database for reading only, under a shared lock (several read-only
    /// handles at once; a read-write open meanwhile is `Locked`, and a read-write handle makes
    /// this open `Locked`). Nothing is written to the file or its log, ever: a log left by a
    /// crash is replayed in memory and left as it is, a damaged header copy is not repaired, the
    /// close writes nothing (a commit the open fell back from keeps its record, for `check` and
    /// `salvage`). Every write fails with `Error::ReadOnly`. A missing file is an I/O error
    /// (`NotFound`), never created.
    pub fn read_only(mut self, on: bool) -> Config {
        self.read_only = on;
        self
    }
    /// Whether opened (plaintext) pages are wiped when they leave the page cache and at close
    /// (default true; SPEC.md §14). Off saves a 4 KiB memset per eviction.
    pub fn zeroize_cache(mut self, on: bool) -> Config {
        self.zeroize_cache = on;
        self
    }
    /// Durable commits append to a write-ahead log beside the database file (`FILE.fvwal`)
    /// instead of writing their pages across the file: one contiguous write and one sync per
    /// commit; the pages reach the file in checkpoints (SPEC.md §15). Default on (not used by
    /// temporary databases). A clean close checkpoints and removes the log; a log left by a
    /// crash is replayed at the next open whatever this setting is (and, with it off, folded
    /// into the file and removed). Only for a file or directory location; ignored for custom
    /// storage.
    pub fn write_ahead_log(mut self, on: bool) -> Config {
        self.wal = on.then_some(self.wal_checkpoint);
        self
    }
    /// With `write_ahead_log` (in either order): pages the log holds before a checkpoint
    /// copies them into the file (default 4,096 = 16 MiB; at least 1, at most
    /// `MAX_WAL_CHECKPOINT_PAGES` = 262,144, 1 GiB: past that no checkpoint came and the log
    /// grew for the whole session).
    pub fn wal_checkpoint_pages(mut self, pages: u64) -> Config {
        self.wal_checkpoint = pages.clamp(1, MAX_WAL_CHECKPOINT_PAGES);
        if self.wal.is_some() {
            self.wal = Some(self.wal_checkpoint);
        }
        self
    }
    /// With `write_ahead_log`: whether a checkpoint copies the logged pages into the file on a
    /// thread of its own while commits go on (default on), or within the commit that fills the
    /// log (SPEC.md §15).
    pub fn wal_background_checkpoints(mut self, on: bool) -> Config {
        self.wal_background = on;
        self
    }
    pub fn open(&self) -> Result<crate::Db> {
        crate::db::api::open_config(self)
    }

    /// Credentials from code, else from the environment.
    pub(crate) fn effective_credentials(&self) -> Result<Credentials> {
        if !self.credentials.is_empty() || !self.use_env {
            return Ok(self.credentials.duplicate());
        }
        use crate::crypto::secret_file::{exposure, read_bounded, shared_files_allowed};
        let mut c = Credentials::none();
        // An empty variable is unset: an empty passphrase would "encrypt" under a key anyone
        // derives.
        if let Some(path) = std::env::var_os(ENV_KEY_FILE).filter(|p| !p.is_empty()) {
            // As the command line reads key files: private, bounded, read once into a buffer
            // that is wiped (the file may be a pipe, or `/dev/zero`).
            // A failure names the variable (its path is the caller's), the system's text kept:
            // a bare "No such file or directory" read as the database missing (config review).
            let named = |e: std::io::Error| {
                Error::Io(std::io::Error::new(e.kind(), format!("the key file {ENV_KEY_FILE} names: {e}")))
            };
            let f = std::fs::File::open(&path).map_err(named)?;
            if f.metadata().map_err(named)?.is_dir() {
                return Err(named(std::io::Error::from(std::io::ErrorKind::IsADirectory)));
            }
            if exposure(&f)?.is_some() && !shared_files_allowed() {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("the key file {ENV_KEY_FILE} names is readable or writable by other users; chmod 600 it"),
                )));
            }
            let bytes = read_bounded(f)
                .map_err(named)?
                .ok_or(Error::InvalidConfig("the key file FOLDVAULT_KEY_FILE names is larger than 64 KiB"))?;
            c.master = Some(MasterKey::from_key_file_bytes(&bytes)?);
        }
        if let Some(p) = std::env::var_os(ENV_PASSPHRASE).filter(|p| !p.is_empty()) {
            use std::os::unix::ffi::OsStringExt;
            c.passphrase = Some(Passphrase::new(p.into_vec()));
        }
        Ok(c)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.read_only && (self.temporary || self.create_new) {
            return Err(Error::InvalidConfig("a read-only open cannot create a database"));
        }
        // A rollback anchor names a database with commits; one that must be new cannot have
        // them: the contradiction was reported as a rollback (config review, low).
        let anchored = self.min_commit_seq.is_some_and(|m| m > 0) || self.expected_root_digest.is_some();
        if anchored && (self.temporary || self.create_new) {
            return Err(Error::InvalidConfig(
                "a rollback anchor names an existing database: not with temporary or create_new",
            ));
        }
        // The KDF parameters are checked where they are used, when a passphrase slot is made
        // (`slots::make_slot`, at create too): an open that makes none, a read of a plaintext
        // database, is not refused for them.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `wal_checkpoint_pages` holds in either order with `write_ahead_log` (it was dropped when
    /// the log was off, and turning it on took the default), and is bounded.
    #[test]
    fn the_checkpoint_length_holds_in_either_order_and_is_bounded() {
        let c = Config::new().write_ahead_log(false).wal_checkpoint_pages(64).write_ahead_log(true);
        assert_eq!(c.wal, Some(64));
        assert_eq!(Config::new().wal_checkpoint_pages(64).wal, Some(64));
        assert_eq!(Config::new().wal_checkpoint_pages(64).write_ahead_log(false).wal, None);
        assert_eq!(Config::new().wal_checkpoint_pages(u64::MAX).wal, Some(MAX_WAL_CHECKPOINT_PAGES));
        assert_eq!(Config::new().wal_checkpoint_pages(0).wal, Some(1));
    }
}
