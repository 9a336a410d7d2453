#![no_main]
//! Thin wrapper: the target's logic is `foldvault::fuzzing::backup_stream` (src/fuzzing/backup_stream.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| foldvault::fuzzing::backup_stream::run(data));
