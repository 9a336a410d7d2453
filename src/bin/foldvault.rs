//! The `foldvault` command line; all of it lives in `foldvault::admin`.

fn main() {
    // First, before any key is read: no core dump, no ptrace attach, no /proc/PID/mem.
    foldvault::admin::harden_process("foldvault");
    std::process::exit(foldvault::admin::foldvault_main());
}
