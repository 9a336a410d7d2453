//! The fuzz targets as regression tests (issue: fuzzing with cargo-fuzz, and the fuzz corpus as
//! regression tests). Every file in `fuzz/corpus/<target>/` (the checked-in `seed-*` files, and
//! whatever a local fuzzing run added) goes through `foldvault::fuzzing::<target>::run`, then a
//! few thousand deterministic pseudo-random inputs per target: fresh bytes, and corpus files
//! with a few bytes changed, inserted or removed. No libFuzzer needed.
//!
//! A failing input is printed in hex: save it as `fuzz/corpus/<target>/seed-crash-<n>` and
//! replay it with `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <file>` (from `fuzz/`).
//! `FOLDVAULT_FUZZ_INPUTS=<n>` changes the number of pseudo-random inputs per target.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use foldvault::fuzzing::{Rng, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fuzz_dir().join("corpus").join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() }; // checked by every_target_is_replayed
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                std::fs::read(&p).expect("read corpus file"),
            )
        })
        .collect();
    files.sort();
    files
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn run_one(target: &str, f: fn(&[u8]), name: &str, data: &[u8]) {
    if catch_unwind(AssertUnwindSafe(|| f(data))).is_err() {
        panic!("fuzz target {target} failed on {name} ({} bytes): {}", data.len(), hex(data));
    }
}

/// A corpus file with a few random edits (the kinds libFuzzer makes most).
fn mutate(rng: &mut Rng, base: &[u8], max_len: usize) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() as u64 + 1) as usize;
        match rng.below(4) {
            0 if at < v.len() => v[at] ^= 1 << rng.below(8),
            1 if at < v.len() => v[at] = rng.next_u64() as u8,
            2 if v.len() < max_len => v.insert(at, rng.next_u64() as u8),
            _ if at < v.len() => {
                v.remove(at);
            }
            _ => v.push(rng.next_u64() as u8),
        }
    }
    v
}

fn replay(target: &str, max_len: usize, default_inputs: u64) {
    let f = TARGETS.iter().find(|(n, _)| *n == target).map(|(_, f)| *f).expect("target listed in TARGETS");
    let files = corpus(target);
    for (name, data) in &files {
        run_one(target, f, name, data);
    }
    let inputs = std::env::var("FOLDVAULT_FUZZ_INPUTS").ok().and_then(|s| s.parse().ok()).unwrap_or(default_inputs);
    let mut rng = Rng(target.bytes().fold(0x5eed, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))));
    for i in 0..inputs {
        let data = if files.is_empty() || i % 2 == 0 {
            let mut d = vec![0u8; rng.below(max_len as u64 + 1) as usize];
            rng.fill(&mut d);
            d
        } else {
            let base = &files[rng.below(files.len() as u64) as usize].1;
            mutate(&mut rng, base, max_len)
        };
        run_one(target, f, &format!("pseudo-random input {i}"), &data);
    }
    println!("{target}: {} corpus files, {inputs} pseudo-random inputs", files.len());
}

#[test]
fn open_page() {
    replay("open_page", 700, 4000);
}

#[test]
fn db_ops() {
    replay("db_ops", 160, 2000);
}

#[test]
fn corrupt_file() {
    replay("corrupt_file", 120, 2000);
}

#[test]
fn wal_replay() {
    replay("wal_replay", 80, 2000);
}

#[test]
fn backup_stream() {
    replay("backup_stream", 64, 100);
}

/// Every cargo-fuzz target is in `TARGETS` and has a corpus directory with at least one seed.
#[test]
fn every_target_is_replayed() {
    let mut wrappers: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .expect("fuzz/fuzz_targets")
        .map(|e| e.expect("entry").path())
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    wrappers.sort();
    let mut listed: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(wrappers, listed, "fuzz/fuzz_targets/*.rs and foldvault::fuzzing::TARGETS differ");
    for t in &listed {
        assert!(
            corpus(t).iter().any(|(n, _)| n.starts_with("seed-")),
            "no seed in fuzz/corpus/{t}/ (are the seed-* files committed? .gitignore must ignore \
             fuzz/corpus/*/* rather than fuzz/corpus/*/, or !fuzz/corpus/*/seed-* cannot re-include them)"
        );
    }
}
