//! `foldvault demo`: a guided tour for operators. It writes FoldDB-shaped records (trees
//! `metadata`, `schemas`, `schema_states`; `atom:{uuid}` and `ref:{uuid}` keys in the default
//! tree, atoms holding JSON of 300–2000 bytes) into an encrypted database, reads them back and
//! compares, searches the raw file for a marker that every atom carries, prints the status,
//! measures the cost of encryption against plaintext mode on the same records, and backs the
//! database up, verifies the backup (without and with the key), restores it and compares.
//!
//! Layer: admin; public API only. The key is a random master key held in memory, never shown.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::Rng;

use super::cli::DemoArgs;
use super::maintain::{mb_per_s, plural};
use super::status::{DbInfo, read_header, write_status};
use super::{At, CliError};
use crate::backup::RestoreOptions;
use crate::{Config, Credentials, DEFAULT_TREE, Db, Encryption, Error, MasterKey};

/// Records per write transaction.
const RECORDS_PER_COMMIT: usize = 100;
/// Runs of each mode, in turns, for the overhead step: at most this many, and fewer (at least
/// `MIN_TIMING_ROUNDS`) once they have taken `TIMING_BUDGET` (a demo of many records).
const TIMING_ROUNDS: usize = 7;
const MIN_TIMING_ROUNDS: usize = 3;
const TIMING_BUDGET: Duration = Duration::from_secs(5);
/// Schemas in the demo data.
const SCHEMAS: usize = 8;

struct Rec {
    tree: &'static [u8],
    key: Vec<u8>,
    value: Vec<u8>,
}

fn uuid_v4(rng: &mut impl Rng) -> String {
    let mut b: [u8; 16] = rng.r#gen();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = crate::format::page::hex(&b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

const WORDS: &[&str] =
    &["ledger", "schema", "atom", "mutation", "field", "range", "molecule", "transform", "query", "node"];

/// FoldDB-shaped records; every atom's JSON carries `marker`.
fn make_records(atoms: usize, marker: &str) -> Vec<Rec> {
    let mut rng = rand::thread_rng();
    let mut recs = Vec::with_capacity(2 * atoms + 2 * SCHEMAS + 3);
    recs.push(Rec { tree: b"metadata", key: b"node_id".to_vec(), value: uuid_v4(&mut rng).into_bytes() });
    recs.push(Rec { tree: b"metadata", key: b"created_at".to_vec(), value: b"2026-01-01T00:00:00Z".to_vec() });
    recs.push(Rec { tree: b"metadata", key: b"format".to_vec(), value: b"folddb-demo-1".to_vec() });
    for i in 0..SCHEMAS {
        let name = format!("schema_{i}");
        let def = format!(
            r#"{{"name":"{name}","fields":{{"title":"Single","body":"Single","tags":"Collection"}},"payment":"none"}}"#
        );
        recs.push(Rec { tree: b"schemas", key: name.clone().into_bytes(), value: def.into_bytes() });
        recs.push(Rec { tree: b"schema_states", key: name.into_bytes(), value: b"\"Approved\"".to_vec() });
    }
    for _ in 0..atoms {
        let id = uuid_v4(&mut rng);
        let target = rng.gen_range(300..=2000usize);
        let mut v = format!(
            r#"{{"uuid":"{id}","schema_name":"schema_{}","source_pub_key":"{}","created_at":"2026-01-01T00:00:00Z","marker":"{marker}","content":""#,
            rng.gen_range(0..SCHEMAS),
            crate::format::page::hex(&rng.r#gen::<[u8; 32]>()),
        );
        while v.len() + 3 < target {
            v.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
            v.push(' ');
        }
        v.truncate(target - 3);
        v.push_str("\"}}");
        recs.push(Rec { tree: DEFAULT_TREE, key: format!("atom:{id}").into_bytes(), value: v.into_bytes() });
        let r = format!(r#"{{"atom_uuid":"{id}"}}"#);
        recs.push(Rec {
            tree: DEFAULT_TREE,
            key: format!("ref:{}", uuid_v4(&mut rng)).into_bytes(),
            value: r.into_bytes(),
        });
    }
    recs
}

struct Timing {
    write: Duration,
    read: Duration,
}

/// Writes every record (a transaction per `RECORDS_PER_COMMIT`, then one flush), reopens,
/// reads each back and compares. A mismatch is a `Verify` error.
fn round_trip(cfg: &Config, file: &Path, recs: &[Rec], label: &str) -> Result<Timing, CliError> {
    let bar = super::progress(Some(2 * recs.len() as u64), label);
    let t0 = Instant::now();
    let db = cfg.open().at(file)?;
    for chunk in recs.chunks(RECORDS_PER_COMMIT) {
        let tx = db.begin_write().at(file)?;
        for r in chunk {
            tx.open_tree(r.tree).at(file)?.insert(&r.key, &r.value).at(file)?;
        }
        tx.commit().at(file)?;
        bar.inc(chunk.len() as u64);
    }
    db.flush().at(file)?;
    drop(db);
    let write = t0.elapsed();
    let t1 = Instant::now();
    let db = cfg.open().at(file)?;
    let rt = db.begin_read().at(file)?;
    let mut mismatches = 0usize;
    for r in recs {
        let got = rt.open_tree(r.tree).at(file)?.get(&r.key).at(file)?;
        if got.as_deref() != Some(r.value.as_slice()) {
            mismatches += 1;
        }
        bar.inc(1);
    }
    let read = t1.elapsed();
    bar.finish_and_clear();
    if mismatches > 0 {
        return Err(CliError::Verify(format!(
            "{mismatches} records read back differ from what was written ({})",
            file.display()
        )));
    }
    Ok(Timing { write, read })
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() {
        return 0;
    }
    haystack.windows(needle.len()).filter(|w| *w == needle).count()
}

/// Removes the timing runs' scratch file, if there: a run must start from no file (one that
/// cannot be removed would have the next run write into an old database), and its log has
/// gone with the clean close.
fn remove_scratch(scratch: &Path) -> Result<(), CliError> {
    match std::fs::remove_file(scratch) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at(scratch),
        _ => Ok(()),
    }
}

/// The fastest write and the fastest read of `runs` (each taken on its own).
fn fastest(runs: &[Timing]) -> Timing {
    Timing {
        write: runs.iter().map(|t| t.write).min().unwrap_or_default(),
        read: runs.iter().map(|t| t.read).min().unwrap_or_default(),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The files of the backup step.
pub struct BackupFiles<'a> {
    pub backup: &'a Path,
    pub restored: &'a Path,
}

/// A record with its tree: (tree, key, value).
type TreeRecord = (Vec<u8>, Vec<u8>, Vec<u8>);

/// Every record of every tree of `db`, trees in name order and keys in key order.
fn all_records(db: &Db, file: &Path) -> Result<Vec<TreeRecord>, CliError> {
    let rt = db.begin_read().at(file)?;
    let mut names: Vec<Vec<u8>> = rt.tree_names().iter().map(|n| n.to_vec()).collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let tree = rt.open_tree(&name).at(file)?;
        for item in tree.iter() {
            let (k, v) = item.at(file)?;
            out.push((name.clone(), k.to_vec(), v.to_vec()));
        }
    }
    Ok(out)
}

/// The backup step of the tour: backs the demo database up to a file, verifies the backup
/// without the key and with it, restores it to a new file, and compares every record of the
/// restored database with the original.
pub fn demo_backup_step(
    o: &mut dyn Write,
    db_cfg: &Config,
    db_file: &Path,
    key: &MasterKey,
    files: BackupFiles<'_>,
) -> Result<(), CliError> {
    let w = |e| CliError::stdout(e);
    let (backup_file, restored_file) = (files.backup, files.restored);
    let db_size = std::fs::metadata(db_file).at(db_file)?.len();

    let db = db_cfg.open().at(db_file)?;
    let original = all_records(&db, db_file)?;
    let t0 = Instant::now();
    // A new file only: a name that appeared since the check (or a dangling link there) is
    // neither followed nor truncated (CLI review).
    let f = std::fs::OpenOptions::new().write(true).create_new(true).open(backup_file).at(backup_file)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, f);
    let stats = db.backup_to(&mut out, &mut |_| {}).at(db_file)?;
    let f = out.into_inner().map_err(|e| CliError::io(e.into_error(), backup_file))?;
    f.sync_all().at(backup_file)?;
    let backup_time = t0.elapsed();
    drop(db);
    writeln!(
        o,
        "   backup: commit {} of the {db_size}-byte database: {} bytes ({}, {}) in {:.1} ms, {} ({})",
        stats.seq,
        stats.bytes,
        plural(stats.pages, "page"),
        plural(stats.chunks, "chunk"),
        ms(backup_time),
        mb_per_s(stats.bytes, backup_time),
        backup_file.display()
    )
    .map_err(w)?;

    let read = || -> Result<std::io::BufReader<std::fs::File>, CliError> {
        Ok(std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(backup_file).at(backup_file)?))
    };
    let t1 = Instant::now();
    let shallow = crate::backup::verify(read()?, None, &mut |_| {}).at(backup_file)?;
    writeln!(
        o,
        "   verify without key: structure, chunk hashes and stream hash ok ({}) in {:.1} ms",
        plural(shallow.chunks, "chunk"),
        ms(t1.elapsed())
    )
    .map_err(w)?;
    let creds = Credentials::master_key(key.duplicate());
    let t2 = Instant::now();
    let deep = crate::backup::verify(read()?, Some(&creds), &mut |_| {}).at(backup_file)?;
    let in_trees: u64 = deep.trees.values().sum();
    writeln!(
        o,
        "   verify with key: {} pages opened, every link checked, {in_trees} records in {} trees, in {:.1} ms",
        deep.pages,
        deep.trees.len(),
        ms(t2.elapsed())
    )
    .map_err(w)?;

    let t3 = Instant::now();
    let restored = crate::backup::restore(read()?, restored_file, &creds, RestoreOptions::default()).at(backup_file)?;
    let restore_time = t3.elapsed();
    let restored_size = std::fs::metadata(restored_file).at(restored_file)?.len();
    writeln!(
        o,
        "   restore: commit {} into a {restored_size}-byte database in {:.1} ms, {} ({})",
        restored.seq,
        ms(restore_time),
        mb_per_s(stats.bytes, restore_time),
        restored_file.display()
    )
    .map_err(w)?;

    let rcfg = Config::new().file(restored_file).flush_every_ms(None).use_env(false).master_key(key.duplicate());
    let rdb = rcfg.open().at(restored_file)?;
    let copy = all_records(&rdb, restored_file)?;
    drop(rdb);
    if copy != original {
        let differ = original.iter().zip(&copy).filter(|(a, b)| a != b).count() + original.len().abs_diff(copy.len());
        return Err(CliError::Verify(format!(
            "{differ} records of the restored database differ from the original ({})",
            restored_file.display()
        )));
    }
    writeln!(o, "   all {} records of the restored database equal the original", original.len()).map_err(w)?;
    Ok(())
}

fn tour(o: &mut dyn Write, files: &DemoFiles, atoms: usize) -> Result<(), CliError> {
    let (enc_file, plain_file) = (files.enc.as_path(), files.plain.as_path());
    let w = |e| CliError::stdout(e);
    let marker = format!("FOLDVAULT-DEMO-{}", crate::format::page::hex(&rand::thread_rng().r#gen::<[u8; 6]>()));
    let recs = make_records(atoms, &marker);
    let total: usize = recs.iter().map(|r| r.key.len() + r.value.len()).sum();
    writeln!(
        o,
        "foldvault demo: {} records ({atoms} atoms, {atoms} refs, metadata, {SCHEMAS} schemas), {total} bytes",
        recs.len()
    )
    .map_err(w)?;

    writeln!(o, "\n1. write and read back, encrypted ({})", enc_file.display()).map_err(w)?;
    let key = MasterKey::generate();
    writeln!(o, "   key: a random 256-bit master key, held in memory only").map_err(w)?;
    let base = |f: &Path| Config::new().file(f).flush_every_ms(None).use_env(false);
    let enc_cfg = base(enc_file).encryption(Encryption::Required).master_key(key.duplicate());
    let enc = round_trip(&enc_cfg, enc_file, &recs, "encrypted")?;
    writeln!(
        o,
        "   all {} records read back equal (write {:.1} ms, read {:.1} ms)",
        recs.len(),
        ms(enc.write),
        ms(enc.read)
    )
    .map_err(w)?;

    writeln!(o, "\n2. the raw file bytes").map_err(w)?;
    let raw = std::fs::read(enc_file).at(enc_file)?;
    let first_atom = recs.iter().find(|r| r.key.starts_with(b"atom:")).map(|r| r.key.clone()).unwrap_or_default();
    let probes: [(&str, &[u8]); 4] = [
        ("marker", marker.as_bytes()),
        ("\"atom:\"", b"atom:"),
        ("first atom key", &first_atom),
        ("\"schema_name\"", b"schema_name"),
    ];
    let mut leaked = 0;
    for (name, needle) in probes {
        let n = count(&raw, needle);
        leaked += n;
        writeln!(o, "   {name}: found {n} times in {} bytes", raw.len()).map_err(w)?;
    }
    drop(raw);
    if leaked > 0 {
        return Err(CliError::Verify(format!("record bytes found in the encrypted file ({})", enc_file.display())));
    }
    writeln!(o, "   none of the records is visible in the file").map_err(w)?;

    writeln!(o, "\n3. status").map_err(w)?;
    let info = read_header(enc_file).at(enc_file)?;
    let db = enc_cfg.open().at(enc_file)?;
    let dbi = DbInfo::of(&db, enc_file)?;
    drop(db);
    let mut status = Vec::new();
    write_status(&mut status, enc_file, &info, Some(&dbi), false).map_err(w)?;
    for line in String::from_utf8_lossy(&status).lines() {
        writeln!(o, "   {line}").map_err(w)?;
    }

    writeln!(o, "\n4. overhead against plaintext mode ({})", plain_file.display()).map_err(w)?;
    let plain_cfg = base(plain_file).plaintext();
    round_trip(&plain_cfg, plain_file, &recs, "plaintext")?;
    let plain_raw = std::fs::read(plain_file).at(plain_file)?;
    let plain_markers = count(&plain_raw, marker.as_bytes());
    drop(plain_raw);
    writeln!(o, "   (for contrast, the plaintext file shows the marker {plain_markers} times)").map_err(w)?;
    // One run of each says little (the first pays for a cold start, and the few `fdatasync`s
    // of a write take what the disk gives them): the two modes take turns on a scratch file,
    // and the fastest write and the fastest read of each are compared.
    let scratch = files.scratch.as_path();
    let (mut enc_runs, mut plain_runs) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for round in 0..TIMING_ROUNDS {
        if round >= MIN_TIMING_ROUNDS && started.elapsed() > TIMING_BUDGET {
            break;
        }
        for encrypted in [round % 2 == 0, round % 2 == 1] {
            remove_scratch(scratch)?;
            let (cfg, runs) = if encrypted { (&enc_cfg, &mut enc_runs) } else { (&plain_cfg, &mut plain_runs) };
            runs.push(round_trip(&cfg.clone().file(scratch), scratch, &recs, "timing")?);
        }
    }
    remove_scratch(scratch)?;
    let (enc, plain) = (fastest(&enc_runs), fastest(&plain_runs));
    let (e, p) = (enc.write + enc.read, plain.write + plain.read);
    writeln!(o, "   fastest of {} runs of each, in turns:", enc_runs.len()).map_err(w)?;
    writeln!(o, "   encrypted: write {:.1} ms + read {:.1} ms = {:.1} ms", ms(enc.write), ms(enc.read), ms(e))
        .map_err(w)?;
    writeln!(o, "   plaintext: write {:.1} ms + read {:.1} ms = {:.1} ms", ms(plain.write), ms(plain.read), ms(p))
        .map_err(w)?;
    let ratio = |num: Duration, den: Duration| {
        if den.is_zero() { f64::NAN } else { num.as_secs_f64() / den.as_secs_f64() }
    };
    writeln!(
        o,
        "   ratio encrypted / plaintext: {:.2}x (write {:.2}x, read {:.2}x: the read opens every page once)",
        ratio(e, p),
        ratio(enc.write, plain.write),
        ratio(enc.read, plain.read)
    )
    .map_err(w)?;
    writeln!(o, "   (the demo's records only; BENCHMARKS.md measures the engine at scale, against its peers)")
        .map_err(w)?;

    writeln!(o, "\n5. backup, verify, restore").map_err(w)?;
    let bf = BackupFiles { backup: &files.backup, restored: &files.restored };
    demo_backup_step(o, &enc_cfg, enc_file, &key, bf)?;
    Ok(())
}

/// The files the tour writes.
struct DemoFiles {
    enc: PathBuf,
    plain: PathBuf,
    backup: PathBuf,
    restored: PathBuf,
    /// Written and removed again by each timing run of the overhead step.
    scratch: PathBuf,
}

impl DemoFiles {
    fn all(&self) -> [&Path; 5] {
        [&self.enc, &self.plain, &self.backup, &self.restored, &self.scratch]
    }
}

pub fn demo(a: DemoArgs) -> Result<(), CliError> {
    let (dir, temporary): (PathBuf, bool) = match a.dir {
        Some(d) => (d, false),
        None => {
            let tag = crate::format::page::hex(&rand::thread_rng().r#gen::<[u8; 8]>());
            (std::env::temp_dir().join(format!("foldvault-demo-{tag}")), true)
        }
    };
    std::fs::create_dir_all(&dir).at(&dir)?;
    let files = DemoFiles {
        enc: dir.join("demo.foldvault"),
        plain: dir.join("demo-plaintext.foldvault"),
        backup: dir.join("demo.backup"),
        restored: dir.join("demo-restored.foldvault"),
        scratch: dir.join("demo-timing.foldvault"),
    };
    for f in files.all() {
        // `symlink_metadata`: a dangling link is there too.
        if std::fs::symlink_metadata(f).is_ok() {
            return Err(CliError::db(Error::AlreadyExists(f.display().to_string()), f));
        }
    }
    let mut o = std::io::stdout().lock();
    let result = tour(&mut o, &files, a.records as usize);
    if temporary {
        for f in files.all() {
            let _ = std::fs::remove_file(f);
        }
        let _ = std::fs::remove_dir(&dir);
    } else if result.is_ok() {
        let _ = writeln!(o, "\nfiles kept in {}", dir.display());
    }
    result
}
