//! One adapter per engine, all behind `Kv`: the same five operations, each engine used the way
//! its documentation recommends for that operation.
//!
//! Settings (BENCHMARKS.md repeats them):
//! - every cache that can be sized is given the same bytes (32 MiB, foldvault's default), except
//!   `sqlcipher`, which keeps SQLCipher's default (2,000 KiB);
//! - every write is durable before `write` or `remove` returns: foldvault commits a write of one
//!   record with `Durability::Immediate`, and one of more (the bulk load, the batches, the
//!   commits of 100) then calls `flush()` (one sync either way); redb commits with
//!   `Durability::Immediate`, sled flushes, SQLite runs WAL with `synchronous=FULL`;
//! - reads: foldvault and sled through their sled-style `Tree`, redb in one read transaction,
//!   SQLite in one `BEGIN`..`COMMIT` with a cached prepared statement;
//! - keys: foldvault encrypted and SQLCipher take a passphrase through their default KDFs
//!   (Argon2id 32 MiB x 3 passes; PBKDF2-SHA512 x 256,000), so `open` includes key derivation.

use std::path::Path;

/// The five operations every workload is made of.
pub trait Kv {
    /// Inserts `pairs` in one transaction, durable before returning.
    fn write(&mut self, pairs: &[(&[u8], &[u8])], durable: bool);
    /// Removes `keys` in one durable transaction.
    fn remove(&mut self, keys: &[&[u8]]);
    /// Looks every key up and reads each value found (`read_value`); returns how many were found.
    fn reads(&mut self, keys: &[&[u8]]) -> usize;
    /// For each start, reads up to `len` entries (their values through `read_value`) from it on;
    /// returns the entries read.
    fn scans(&mut self, starts: &[&[u8]], len: usize) -> usize;
    /// The engine's own counters, where it keeps any (foldvault's `Db::metrics`).
    fn counters(&self) -> Option<Counters> {
        None
    }
    /// Gives free space back to the file system the engine's own way, if it has one: returns
    /// false if it has none (sled 0.34).
    fn compact(&mut self) -> bool {
        false
    }
    /// Does now, and waits for, the work the engine defers past its durable commits (foldvault's
    /// and SQLite's write-ahead log copied into the database file), so that a timed row that
    /// ends with it pays for its own writes in full rather than leaving them to whatever runs
    /// next. Nothing for an engine that defers nothing.
    fn settle(&mut self) {}
}

/// What every engine does with a value it read: reads every byte of it (as an application
/// using the record would), wherever the engine hands it over (a copy, a guard into a page, a
/// row buffer). Returns 1, so that a read counts one found record.
fn read_value(v: &[u8]) -> usize {
    std::hint::black_box(v.iter().fold(0u8, |a, b| a ^ b));
    1
}

/// foldvault's counters that explain a workload's cost.
#[derive(Clone, Copy, Default)]
pub struct Counters {
    pub sealed: u64,
    pub opened: u64,
    pub written: u64,
    pub syncs: u64,
    /// `fdatasync`s that returned on the file and its log, checkpoints included.
    pub device_syncs: u64,
    pub crypto_nanos: u64,
    pub misses: u64,
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    fn sub(self, o: Counters) -> Counters {
        Counters {
            sealed: self.sealed - o.sealed,
            opened: self.opened - o.opened,
            written: self.written - o.written,
            syncs: self.syncs - o.syncs,
            device_syncs: self.device_syncs - o.device_syncs,
            crypto_nanos: self.crypto_nanos - o.crypto_nanos,
            misses: self.misses - o.misses,
        }
    }
}

/// The engines compared (columns of the table).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Engine {
    FvEnc,
    /// The crate's default backends (as the parent process chose them): with ring and aws-lc
    /// both built, the fastest at sealing and the fastest at opening, which may differ.
    #[cfg(all(feature = "ring", feature = "aws-lc"))]
    FvDefault,
    /// ring (the default build's backend; with aws-lc also built, the faster of the two is).
    #[cfg(feature = "ring")]
    FvRing,
    #[cfg(feature = "aws-lc")]
    FvAwsLc,
    FvPlain,
    /// The default backends (as the parent process chose them) without the write-ahead log
    /// (`Config::write_ahead_log(false)`).
    FvNoWal,
    /// The default backends (as the parent process chose them) with the log's checkpoints made
    /// within the commit that fills the log (`Config::wal_background_checkpoints(false)`). Only
    /// when named (`--engines`).
    FvInlineCheckpoint,
    Redb,
    Sled,
    Sqlite,
    #[cfg(feature = "peers-sqlcipher")]
    SqlCipher,
    #[cfg(feature = "peers-sqlcipher")]
    SqlCipher32,
}

/// The passphrase given to every encrypting engine.
const PASSPHRASE: &str = "correct horse battery staple";

impl Engine {
    /// Every engine this build includes, in column order.
    pub fn all() -> Vec<Engine> {
        let mut v = vec![Engine::FvEnc];
        #[cfg(all(feature = "ring", feature = "aws-lc"))]
        v.push(Engine::FvDefault);
        #[cfg(feature = "ring")]
        v.push(Engine::FvRing);
        #[cfg(feature = "aws-lc")]
        v.push(Engine::FvAwsLc);
        v.extend([Engine::FvPlain, Engine::FvNoWal, Engine::Redb, Engine::Sled, Engine::Sqlite]);
        #[cfg(feature = "peers-sqlcipher")]
        v.extend([Engine::SqlCipher, Engine::SqlCipher32]);
        v
    }

    pub fn name(self) -> &'static str {
        match self {
            Engine::FvEnc => "fv-aesgcm",
            #[cfg(all(feature = "ring", feature = "aws-lc"))]
            Engine::FvDefault => "fv-default",
            #[cfg(feature = "ring")]
            Engine::FvRing => "fv-ring",
            #[cfg(feature = "aws-lc")]
            Engine::FvAwsLc => "fv-awslc",
            Engine::FvPlain => "fv-plain",
            Engine::FvNoWal => "fv-nowal",
            Engine::FvInlineCheckpoint => "fv-inlineckpt",
            Engine::Redb => "redb",
            Engine::Sled => "sled",
            Engine::Sqlite => "sqlite",
            #[cfg(feature = "peers-sqlcipher")]
            Engine::SqlCipher => "sqlcipher",
            #[cfg(feature = "peers-sqlcipher")]
            Engine::SqlCipher32 => "sqlcipher-32M",
        }
    }

    pub fn parse(s: &str) -> Option<Engine> {
        Engine::all().into_iter().chain([Engine::FvInlineCheckpoint]).find(|e| e.name() == s)
    }

    /// Opens (creating if missing) this engine's database in `dir`, with `cache` bytes of cache
    /// where the engine lets it be set. `small_rows`: every record is under a twentieth of a
    /// page, where SQLite recommends a `WITHOUT ROWID` table.
    pub fn open(self, dir: &Path, cache: u64, small_rows: bool) -> Box<dyn Kv> {
        match self {
            Engine::FvEnc => Box::new(Foldvault::open(dir, cache, FvMode::AesGcm)),
            #[cfg(all(feature = "ring", feature = "aws-lc"))]
            Engine::FvDefault => Box::new(Foldvault::open(dir, cache, FvMode::Default)),
            #[cfg(feature = "ring")]
            Engine::FvRing => Box::new(Foldvault::open(dir, cache, FvMode::Ring)),
            #[cfg(feature = "aws-lc")]
            Engine::FvAwsLc => Box::new(Foldvault::open(dir, cache, FvMode::AwsLc)),
            Engine::FvPlain => Box::new(Foldvault::open(dir, cache, FvMode::Plain)),
            Engine::FvNoWal => Box::new(Foldvault::open(dir, cache, FvMode::NoWal)),
            Engine::FvInlineCheckpoint => Box::new(Foldvault::open(dir, cache, FvMode::InlineCheckpoint)),
            Engine::Redb => Box::new(Redb::open(dir, cache)),
            Engine::Sled => Box::new(Sled::open(dir, cache)),
            Engine::Sqlite => Box::new(Sqlite::open(dir, Some(cache), None, small_rows)),
            #[cfg(feature = "peers-sqlcipher")]
            Engine::SqlCipher => Box::new(Sqlite::open(
                dir,
                (cache != super::CACHE_BYTES).then_some(cache),
                Some(PASSPHRASE),
                small_rows,
            )),
            #[cfg(feature = "peers-sqlcipher")]
            Engine::SqlCipher32 => Box::new(Sqlite::open(dir, Some(cache), Some(PASSPHRASE), small_rows)),
        }
    }
}

#[derive(Clone, Copy)]
enum FvMode {
    AesGcm,
    #[cfg(all(feature = "ring", feature = "aws-lc"))]
    Default,
    #[cfg(feature = "ring")]
    Ring,
    #[cfg(feature = "aws-lc")]
    AwsLc,
    Plain,
    NoWal,
    InlineCheckpoint,
}

/// The environment variable through which the parent process hands its default backends to
/// its children (`default_backends_text`): each process times its own
/// (`CipherBackends::default()`), and two processes can choose differently where ring and
/// aws-lc time within 5% of each other.
pub const DEFAULT_BACKEND_VAR: &str = "PEERS_DEFAULT_BACKEND";

/// The default backends as the parent process chose them, else this process's.
pub fn default_backends() -> foldvault::CipherBackends {
    let named = std::env::var(DEFAULT_BACKEND_VAR).ok();
    let find = |name: Option<&str>| {
        foldvault::CipherBackend::available().into_iter().find(|b| name == Some(format!("{b:?}").as_str()))
    };
    let (seal, open) = named.as_deref().and_then(|n| n.split_once('/')).unzip();
    match (find(seal), find(open)) {
        (Some(seal), Some(open)) => foldvault::CipherBackends { seal, open },
        _ => foldvault::CipherBackends::default(),
    }
}

/// `default_backends()` as `DEFAULT_BACKEND_VAR` carries it: `Seal/Open`, e.g. `AwsLc/Ring`.
pub fn default_backends_text() -> String {
    let b = default_backends();
    format!("{:?}/{:?}", b.seal, b.open)
}

struct Foldvault {
    db: foldvault::Db,
    tree: foldvault::Tree,
}

impl Foldvault {
    fn open(dir: &Path, cache: u64, mode: FvMode) -> Foldvault {
        let cfg = foldvault::Config::new()
            .file(dir.join("db.foldvault"))
            .use_env(false)
            .flush_every_ms(None)
            .cache_capacity(cache);
        let cfg = match mode {
            // Each backend named explicitly: with ring and aws-lc both built the default is timed.
            FvMode::AesGcm => cfg.passphrase(PASSPHRASE).cipher_backend(foldvault::CipherBackend::RustCrypto),
            #[cfg(feature = "ring")]
            FvMode::Ring => cfg.passphrase(PASSPHRASE).cipher_backend(foldvault::CipherBackend::Ring),
            #[cfg(feature = "aws-lc")]
            FvMode::AwsLc => cfg.passphrase(PASSPHRASE).cipher_backend(foldvault::CipherBackend::AwsLc),
            #[cfg(all(feature = "ring", feature = "aws-lc"))]
            FvMode::Default => cfg.passphrase(PASSPHRASE).cipher_backends(default_backends()),
            FvMode::Plain => cfg.plaintext(),
            // The crate's default backends (as the parent process chose them), the engine as it was
            // before the log.
            FvMode::NoWal => cfg.passphrase(PASSPHRASE).cipher_backends(default_backends()).write_ahead_log(false),
            FvMode::InlineCheckpoint => {
                cfg.passphrase(PASSPHRASE).cipher_backends(default_backends()).wal_background_checkpoints(false)
            }
        };
        let db = cfg.open().expect("foldvault open");
        let tree = db.open_tree("t").expect("foldvault open_tree");
        Foldvault { db, tree }
    }
}

impl Kv for Foldvault {
    fn compact(&mut self) -> bool {
        self.db.compact().expect("compact");
        true
    }
    fn settle(&mut self) {
        self.db.checkpoint_log().expect("checkpoint_log");
    }
    fn write(&mut self, pairs: &[(&[u8], &[u8])], durable: bool) {
        let tx = self.db.begin_write().expect("begin_write");
        {
            let t = tx.open_tree("t").expect("open_tree");
            for (k, v) in pairs {
                t.insert(k, v).expect("insert");
            }
        }
        if durable && pairs.len() > 1 {
            // A bulk load: commit, then flush (the sled-style way to make it durable).
            tx.commit().expect("commit");
            self.db.flush().expect("flush");
        } else {
            tx.set_durability(foldvault::Durability::Immediate);
            tx.commit().expect("commit");
        }
    }
    fn remove(&mut self, keys: &[&[u8]]) {
        let tx = self.db.begin_write().expect("begin_write");
        {
            let t = tx.open_tree("t").expect("open_tree");
            for k in keys {
                t.remove(k).expect("remove");
            }
        }
        tx.set_durability(foldvault::Durability::Immediate);
        tx.commit().expect("commit");
    }
    fn reads(&mut self, keys: &[&[u8]]) -> usize {
        keys.iter().map(|k| self.tree.get(k).expect("get").map_or(0, |v| read_value(&v))).sum()
    }
    fn scans(&mut self, starts: &[&[u8]], len: usize) -> usize {
        starts
            .iter()
            .map(|s| self.tree.range(*s..).take(len).map(|r| read_value(&r.expect("range").1)).sum::<usize>())
            .sum()
    }
    fn counters(&self) -> Option<Counters> {
        let m = self.db.metrics();
        Some(Counters {
            sealed: m.pages_sealed,
            opened: m.pages_opened,
            written: m.bytes_written,
            syncs: m.syncs,
            device_syncs: m.device_syncs,
            crypto_nanos: m.crypto_nanos,
            misses: m.cache_misses,
        })
    }
}

const REDB_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("t");

struct Redb {
    db: redb::Database,
}

impl Redb {
    fn open(dir: &Path, cache: u64) -> Redb {
        let db = redb::Builder::new().set_cache_size(cache as usize).create(dir.join("db.redb")).expect("redb open");
        Redb { db }
    }
}

impl Kv for Redb {
    fn compact(&mut self) -> bool {
        // `compact` returns whether it did anything; it compacts in full in one call.
        self.db.compact().expect("redb compact");
        true
    }
    fn write(&mut self, pairs: &[(&[u8], &[u8])], _durable: bool) {
        // redb's default durability is Immediate: one fsync'd commit.
        let tx = self.db.begin_write().expect("begin_write");
        {
            let mut t = tx.open_table(REDB_TABLE).expect("open_table");
            for (k, v) in pairs {
                t.insert(*k, *v).expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    fn remove(&mut self, keys: &[&[u8]]) {
        let tx = self.db.begin_write().expect("begin_write");
        {
            let mut t = tx.open_table(REDB_TABLE).expect("open_table");
            for k in keys {
                t.remove(*k).expect("remove");
            }
        }
        tx.commit().expect("commit");
    }
    fn reads(&mut self, keys: &[&[u8]]) -> usize {
        use redb::ReadableDatabase;
        let tx = self.db.begin_read().expect("begin_read");
        let t = tx.open_table(REDB_TABLE).expect("open_table");
        keys.iter().map(|k| t.get(*k).expect("get").map_or(0, |v| read_value(v.value()))).sum()
    }
    fn scans(&mut self, starts: &[&[u8]], len: usize) -> usize {
        use redb::ReadableDatabase;
        let tx = self.db.begin_read().expect("begin_read");
        let t = tx.open_table(REDB_TABLE).expect("open_table");
        starts
            .iter()
            .map(|s| {
                t.range::<&[u8]>(*s..)
                    .expect("range")
                    .take(len)
                    .map(|r| read_value(r.expect("entry").1.value()))
                    .sum::<usize>()
            })
            .sum()
    }
}

struct Sled {
    db: sled::Db,
    tree: sled::Tree,
    /// sled's log file, synced after each `flush`.
    data: std::fs::File,
}

impl Sled {
    fn open(dir: &Path, cache: u64) -> Sled {
        let db = sled::Config::new()
            .path(dir.join("sled"))
            .cache_capacity(cache)
            .flush_every_ms(None)
            .open()
            .expect("sled open");
        let tree = db.open_tree("t").expect("sled open_tree");
        let data = std::fs::File::open(dir.join("sled").join("db")).expect("sled's data file");
        Sled { db, tree, data }
    }

    /// sled 0.34's `flush` ends with `sync_file_range`, which neither flushes the device's
    /// write cache nor the file's metadata (its `sync_all` runs only in the background flusher,
    /// off here): an `fdatasync` after it makes a commit durable as the other engines' are.
    fn durable_flush(&self) {
        self.db.flush().expect("flush");
        self.data.sync_data().expect("sled fdatasync");
    }
}

impl Kv for Sled {
    fn write(&mut self, pairs: &[(&[u8], &[u8])], _durable: bool) {
        if let [(k, v)] = pairs {
            self.tree.insert(k, *v).expect("insert");
        } else {
            let mut b = sled::Batch::default();
            for (k, v) in pairs {
                b.insert(*k, *v);
            }
            self.tree.apply_batch(b).expect("apply_batch");
        }
        self.durable_flush();
    }
    fn remove(&mut self, keys: &[&[u8]]) {
        let mut b = sled::Batch::default();
        for k in keys {
            b.remove(*k);
        }
        self.tree.apply_batch(b).expect("apply_batch");
        self.durable_flush();
    }
    fn reads(&mut self, keys: &[&[u8]]) -> usize {
        keys.iter().map(|k| self.tree.get(k).expect("get").map_or(0, |v| read_value(&v))).sum()
    }
    fn scans(&mut self, starts: &[&[u8]], len: usize) -> usize {
        starts
            .iter()
            .map(|s| self.tree.range(*s..).take(len).map(|r| read_value(&r.expect("range").1)).sum::<usize>())
            .sum()
    }
}

struct Sqlite {
    conn: rusqlite::Connection,
}

impl Sqlite {
    /// `cache`: bytes of page cache (`None`: SQLite's default); `key`: a SQLCipher passphrase.
    fn open(dir: &Path, cache: Option<u64>, key: Option<&str>, small_rows: bool) -> Sqlite {
        let conn = rusqlite::Connection::open(dir.join("db.sqlite")).expect("sqlite open");
        if let Some(k) = key {
            conn.pragma_update(None, "key", k).expect("pragma key");
        }
        if let Some(c) = cache {
            conn.pragma_update(None, "cache_size", -((c / 1024) as i64)).expect("cache_size");
        }
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).expect("journal_mode");
        assert_eq!(mode, "wal");
        conn.pragma_update(None, "synchronous", "FULL").expect("synchronous");
        // SQLite's advice (sqlite.org/withoutrowid.html): WITHOUT ROWID when rows are under a
        // twentieth of a page; larger rows (the atoms) spill to overflow pages in such a table,
        // so they get a rowid table with a unique index on the key (redb's benchmark's schema).
        let create = if small_rows {
            "CREATE TABLE IF NOT EXISTS t (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID"
        } else {
            "CREATE TABLE IF NOT EXISTS t (k BLOB PRIMARY KEY, v BLOB NOT NULL)"
        };
        conn.execute_batch(create).expect("create table");
        Sqlite { conn }
    }
}

impl Kv for Sqlite {
    fn settle(&mut self) {
        // FULL: waits for readers, copies every frame home and syncs the database file.
        self.conn.execute_batch("PRAGMA wal_checkpoint(FULL);").expect("wal_checkpoint");
    }
    fn compact(&mut self) -> bool {
        // VACUUM rewrites the database through the WAL; the checkpoint moves it home and
        // truncates the WAL, as a user reclaiming space would.
        self.conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);").expect("vacuum");
        true
    }
    fn write(&mut self, pairs: &[(&[u8], &[u8])], _durable: bool) {
        let tx = self.conn.transaction().expect("begin");
        {
            let mut st = tx.prepare_cached("INSERT OR REPLACE INTO t (k, v) VALUES (?1, ?2)").expect("prepare");
            for (k, v) in pairs {
                st.execute((k, v)).expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    fn remove(&mut self, keys: &[&[u8]]) {
        let tx = self.conn.transaction().expect("begin");
        {
            let mut st = tx.prepare_cached("DELETE FROM t WHERE k = ?1").expect("prepare");
            for k in keys {
                st.execute([k]).expect("delete");
            }
        }
        tx.commit().expect("commit");
    }
    fn reads(&mut self, keys: &[&[u8]]) -> usize {
        let tx = self.conn.transaction().expect("begin");
        let mut found = 0;
        {
            let mut st = tx.prepare_cached("SELECT v FROM t WHERE k = ?1").expect("prepare");
            for k in keys {
                let mut rows = st.query([k]).expect("query");
                if let Some(r) = rows.next().expect("row") {
                    found += read_value(r.get_ref(0).expect("v").as_blob().expect("blob"));
                }
            }
        }
        tx.commit().expect("commit");
        found
    }
    fn scans(&mut self, starts: &[&[u8]], len: usize) -> usize {
        let tx = self.conn.transaction().expect("begin");
        let mut n = 0;
        {
            let mut st = tx.prepare_cached("SELECT k, v FROM t WHERE k >= ?1 ORDER BY k LIMIT ?2").expect("prepare");
            for s in starts {
                let mut rows = st.query((s, len as i64)).expect("query");
                while let Some(r) = rows.next().expect("row") {
                    n += read_value(r.get_ref(1).expect("v").as_blob().expect("blob"));
                }
            }
        }
        tx.commit().expect("commit");
        n
    }
}
