//! `pagedump`: a page-level view of a foldvault file; all of it lives in `foldvault::admin`.

fn main() {
    // First, before any key is read: no core dump, no ptrace attach, no /proc/PID/mem.
    foldvault::admin::harden_process("pagedump");
    std::process::exit(foldvault::admin::pagedump_main());
}
