#![no_main]
//! Thin wrapper: the target's logic is `foldvault::fuzzing::db_ops` (src/fuzzing/db_ops.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| foldvault::fuzzing::db_ops::run(data));
