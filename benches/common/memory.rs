//! This process's resident memory, read from Linux's `/proc/self` (the peers benchmark, and
//! `examples/phase_memory.rs`, which includes this file).

/// Sets this process's peak resident set (`VmHWM`) to its current one (Linux 4.0 and later:
/// `5` written to `/proc/self/clear_refs`), so that the peak read later is the engine's own,
/// not what the harness reached while it made the records. Returns whether it could.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Peak and current resident set of this process, in bytes (`VmHWM`, `VmRSS`).
pub fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}
