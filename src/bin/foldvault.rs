//! The `foldvault` command line; all of it lives in `foldvault::admin`.

fn main() {
    std::process::exit(foldvault::admin::foldvault_main());
}
