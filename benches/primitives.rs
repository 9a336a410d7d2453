//! Micro-benchmarks of foldvault's primitives, encrypted (AES-256-GCM) beside plaintext.
//!
//! The page cipher is crate-private, so the cost of sealing and opening one page is measured
//! through the public API, in sets that differ only in the page cipher: `aes-gcm` (RustCrypto),
//! `ring` (with the `ring` feature, the default build's backend), `aws-lc` (with the `aws-lc`
//! feature; with both built, the faster on the CPU at hand is the default) and `plaintext` (CRC32):
//! - `get/cached`: a lookup whose pages are all in the cache (no cipher work at all);
//! - `get/uncached`: a lookup through a 64-page cache, so most lookups open (decrypt and verify)
//!   a leaf page: the difference to plaintext is about one page open;
//! - `tx_insert`: an insert inside an open write transaction (no cipher work until commit);
//! - `range_100`: a scan of 100 entries;
//! - `commit_mem`: a one-record commit in memory (eventual durability): the pages of the path
//!   and of the catalog are sealed, nothing is synced: the difference is about a few page seals;
//! - `commit_durable`: a one-record commit with `Durability::Immediate` on a real file;
//! - `open`: opening a file of 20,000 records (cheap KDF; and the default backend with the
//!   default Argon2id KDF).
//!
//! - `page_seal` / `page_open`: sealing and opening one 4 KiB page alone, per backend
//!   (`foldvault::crypto::page_bench::PageCipherBench`, a random key), beside the CRC32 of
//!   plaintext mode.
//!
//! Run: `cargo bench --bench primitives` (a few minutes). Results: BENCHMARKS.md.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use foldvault::fuzzing::Rng;
use foldvault::storage::MemoryStorage;
use foldvault::{CipherBackend, Config, Db, Durability, KdfParams};

/// Records preloaded into every database.
const RECORDS: usize = 20_000;
/// Value length of the preloaded records (as in redb's benchmark).
const VALUE_LEN: usize = 100;
/// The tree every benchmark uses.
const TREE: &str = "t";

/// Random 16-byte keys from SplitMix64 (`foldvault::fuzzing::Rng`), so runs are comparable.
fn random_key(rng: &mut Rng) -> [u8; 16] {
    let mut k = [0u8; 16];
    rng.fill(&mut k);
    k
}

#[derive(Clone, Copy)]
enum Mode {
    /// AES-256-GCM on RustCrypto `aes-gcm`.
    RustCrypto,
    /// AES-256-GCM on ring (the default build's backend).
    #[cfg(feature = "ring")]
    Ring,
    /// AES-256-GCM on aws-lc-rs.
    #[cfg(feature = "aws-lc")]
    AwsLc,
    Plaintext,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::RustCrypto => "aes-gcm",
            #[cfg(feature = "ring")]
            Mode::Ring => "ring",
            #[cfg(feature = "aws-lc")]
            Mode::AwsLc => "aws-lc",
            Mode::Plaintext => "plaintext",
        }
    }
    /// The AES-GCM backend (none for plaintext).
    fn backend(self) -> Option<CipherBackend> {
        match self {
            Mode::RustCrypto => Some(CipherBackend::RustCrypto),
            #[cfg(feature = "ring")]
            Mode::Ring => Some(CipherBackend::Ring),
            #[cfg(feature = "aws-lc")]
            Mode::AwsLc => Some(CipherBackend::AwsLc),
            Mode::Plaintext => None,
        }
    }
    fn config(self) -> Config {
        let c = Config::new().use_env(false).flush_every_ms(None);
        match self.backend() {
            Some(b) => c.passphrase("p").kdf(KdfParams::insecure_fast()).cipher_backend(b),
            None => c.plaintext(),
        }
    }
}

/// Every page cipher this build has, and plaintext.
fn modes() -> Vec<Mode> {
    #[allow(unused_mut)]
    let mut v = vec![Mode::RustCrypto];
    #[cfg(feature = "ring")]
    v.push(Mode::Ring);
    #[cfg(feature = "aws-lc")]
    v.push(Mode::AwsLc);
    v.push(Mode::Plaintext);
    v
}

fn keys(n: usize, seed: u64) -> Vec<[u8; 16]> {
    let mut rng = Rng(seed);
    (0..n).map(|_| random_key(&mut rng)).collect()
}

/// Loads `keys` into tree `t` in one transaction.
fn load(db: &Db, keys: &[[u8; 16]]) {
    let value = [0x5Au8; VALUE_LEN];
    let tx = db.begin_write().expect("begin_write");
    {
        let t = tx.open_tree(TREE).expect("open_tree");
        for k in keys {
            t.insert(k, value).expect("insert");
        }
    }
    tx.commit().expect("commit");
    db.flush().expect("flush");
}

/// An in-memory database holding `keys`, with the given cache capacity.
fn mem_db(mode: Mode, keys: &[[u8; 16]], cache_bytes: u64) -> Db {
    let db = mode.config().storage(Arc::new(MemoryStorage::new())).cache_capacity(cache_bytes).open().expect("open");
    load(&db, keys);
    db
}

fn small(c: &mut Criterion) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group("primitives");
    g.sample_size(20).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    g
}

fn bench_get(c: &mut Criterion) {
    let keys = keys(RECORDS, 1);
    let mut g = small(c);
    for mode in modes() {
        for (label, cache) in [("get/cached", 32u64 << 20), ("get/uncached", 64 * 4096)] {
            let db = mem_db(mode, &keys, cache);
            let t = db.open_tree(TREE).expect("open_tree");
            let mut i = 0usize;
            g.bench_function(BenchmarkId::new(label, mode.name()), |b| {
                b.iter(|| {
                    i = (i + 7919) % keys.len();
                    black_box(t.get(keys[i]).expect("get").expect("present"))
                })
            });
        }
    }
    g.finish();
}

fn bench_tx_insert(c: &mut Criterion) {
    let loaded = keys(RECORDS, 2);
    let fresh = keys(1 << 20, 3);
    let value = [0xA5u8; VALUE_LEN];
    let mut g = small(c);
    for mode in modes() {
        let db = mem_db(mode, &loaded, 32 << 20);
        g.bench_function(BenchmarkId::new("tx_insert", mode.name()), |b| {
            b.iter_custom(|iters| {
                // One transaction per sample, aborted afterwards (outside the timing).
                let tx = db.begin_write().expect("begin_write");
                let t = tx.open_tree(TREE).expect("open_tree");
                let start = Instant::now();
                for i in 0..iters as usize {
                    black_box(t.insert(fresh[i % fresh.len()], value).expect("insert"));
                }
                let spent = start.elapsed();
                drop(t);
                tx.abort();
                spent
            })
        });
    }
    g.finish();
}

fn bench_range(c: &mut Criterion) {
    let keys = keys(RECORDS, 4);
    let mut g = small(c);
    for mode in modes() {
        let db = mem_db(mode, &keys, 32 << 20);
        let t = db.open_tree(TREE).expect("open_tree");
        let mut i = 0usize;
        g.bench_function(BenchmarkId::new("range_100", mode.name()), |b| {
            b.iter(|| {
                i = (i + 7919) % keys.len();
                let n = t.range(keys[i]..).take(100).map(|r| r.expect("range").1.len()).sum::<usize>();
                black_box(n)
            })
        });
    }
    g.finish();
}

fn commit_one(db: &Db, key: [u8; 16], durability: Durability) {
    let tx = db.begin_write().expect("begin_write");
    tx.open_tree(TREE).expect("open_tree").insert(key, [0x33u8; VALUE_LEN]).expect("insert");
    tx.set_durability(durability);
    tx.commit().expect("commit");
}

fn bench_commit(c: &mut Criterion) {
    let keys = keys(RECORDS, 5);
    let mut rng = Rng(6);
    let mut g = small(c);
    for mode in modes() {
        let db = mem_db(mode, &keys, 32 << 20);
        g.bench_function(BenchmarkId::new("commit_mem", mode.name()), |b| {
            b.iter(|| commit_one(&db, random_key(&mut rng), Durability::Eventual))
        });
    }
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for mode in modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = mode.config().file(dir.path().join("db")).open().expect("open");
        load(&db, &keys);
        g.bench_function(BenchmarkId::new("commit_durable", mode.name()), |b| {
            b.iter(|| commit_one(&db, random_key(&mut rng), Durability::Immediate))
        });
    }
    g.finish();
}

/// Builds the configuration of one open case.
type MakeConfig = fn() -> Config;

fn bench_open(c: &mut Criterion) {
    let keys = keys(RECORDS, 7);
    let mut g = small(c);
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    let default_kdf = || Config::new().use_env(false).flush_every_ms(None).passphrase("p");
    let cases: [(&str, MakeConfig); 3] = [
        ("aes-gcm", || Mode::RustCrypto.config()),
        ("default-backend-default-kdf", default_kdf),
        ("plaintext", || Mode::Plaintext.config()),
    ];
    for (name, config) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        load(&config().file(&path).open().expect("create"), &keys);
        g.bench_function(BenchmarkId::new("open_20k", name), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let db = config().file(&path).open().expect("open");
                    spent += start.elapsed();
                    drop(db);
                }
                spent
            })
        });
    }
    g.finish();
}

fn bench_page_cipher(c: &mut Criterion) {
    use foldvault::crypto::page_bench::PageCipherBench;
    let mut g = small(c);
    let ciphers: Vec<(&str, PageCipherBench)> = modes()
        .into_iter()
        .map(|m| match m.backend() {
            Some(b) => (m.name(), PageCipherBench::aes_gcm(b)),
            None => (m.name(), PageCipherBench::plaintext()),
        })
        .collect();
    for (name, cipher) in &ciphers {
        let mut page = Box::new([0x5Au8; foldvault::format::PAGE_SIZE]);
        g.bench_function(BenchmarkId::new("page_seal", name), |b| {
            b.iter(|| cipher.seal(black_box(&mut page)).expect("seal"))
        });
        let mut sealed = Box::new([0x5Au8; foldvault::format::PAGE_SIZE]);
        cipher.seal(&mut sealed).expect("seal");
        g.bench_function(BenchmarkId::new("page_open", name), |b| {
            b.iter_batched_ref(
                || sealed.clone(),
                |p| cipher.open(black_box(p)).expect("open"),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench_page_cipher, bench_get, bench_tx_insert, bench_range, bench_commit, bench_open);
criterion_main!(benches);
