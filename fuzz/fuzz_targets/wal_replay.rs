#![no_main]
//! Thin wrapper: the target's logic is `foldvault::fuzzing::wal_replay` (src/fuzzing/wal_replay.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| foldvault::fuzzing::wal_replay::run(data));
