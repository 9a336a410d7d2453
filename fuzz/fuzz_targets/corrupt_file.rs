#![no_main]
//! Thin wrapper: the target's logic is `foldvault::fuzzing::corrupt_file` (src/fuzzing/corrupt_file.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| foldvault::fuzzing::corrupt_file::run(data));
