//! `pagedump`: a page-level view of a foldvault file; all of it lives in `foldvault::admin`.

fn main() {
    std::process::exit(foldvault::admin::pagedump_main());
}
