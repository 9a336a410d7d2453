#![no_main]
//! Thin wrapper: the target's logic is `foldvault::fuzzing::open_page` (src/fuzzing/open_page.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| foldvault::fuzzing::open_page::run(data));
