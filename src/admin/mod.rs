//! The operator's tools as library code: the `foldvault` command line (`cli`, `commands`,
//! `maintain`, `backups`, `status`, `demo`) and the `pagedump` debugging tool (`pagedump`). The binaries in `src/bin/`
//! only call [`foldvault_main`] and [`pagedump_main`].
//!
//! Layer: admin, on top of everything: it uses the public API (`Config`, `Db`, transactions)
//! for all commands, with two crate-private helpers of `db` (the reserved tree prefix, and
//! slot listing from a raw header), and the crate-private pager only in `pagedump`, to open
//! single pages.
//!
//! Invariants:
//! - exit codes are stable (see [`EXIT_CODES`]): 0 success, 1 key or tree not found, 2 usage error,
//!   3 wrong key or passphrase, 4 corruption or failed verification, 5 I/O error or locked file;
//! - an error is one line on standard error, `foldvault: <what> (<file>)`, never a backtrace,
//!   never a key or passphrase;
//! - writing commands open with `Durability::Immediate`: exit 0 means every write is durable;
//! - progress bars only when standard error is a terminal;
//! - both programs call [`harden_process`] first: on Linux the process is not dumpable (no core
//!   dump, no ptrace attach by the same user, `/proc/PID/mem` closed) before any key is read;
//! - messages go to standard error through `note!`, never `eprintln!`, which panics (exit 101)
//!   when standard error is a pipe whose reader has gone: the message is lost, the exit code
//!   kept.

/// `eprintln!` that cannot panic: a closed standard error loses the message, not the exit code.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod backups;
pub mod cli;
pub mod commands;
pub mod config_file;
pub mod convert;
pub mod demo;
pub mod jsonl;
pub mod keyops;
pub mod keys;
pub mod maintain;
pub mod pagedump;
mod pagetree;
mod pageview;
pub mod status;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

pub use status::{HeaderInfo, read_header};

use crate::Error;

/// Success.
pub const EXIT_OK: i32 = 0;
/// `get`: the tree or key does not exist.
pub const EXIT_NOT_FOUND: i32 = 1;
/// Bad arguments, bad input, or a request this build or file cannot serve.
pub const EXIT_USAGE: i32 = 2;
/// No key slot opens with the key or passphrase given (or none was given).
pub const EXIT_WRONG_KEY: i32 = 3;
/// The file is damaged or tampered with, or a check or verification failed.
pub const EXIT_CORRUPT: i32 = 4;
/// An I/O error, or the file is locked by another process.
pub const EXIT_IO: i32 = 5;

/// The exit-code table printed by `foldvault --help`.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  not found: the key (get), the tree (get, scan, dump --tree, pagedump --tree)
  2  usage error: bad arguments or input, a file or option this build cannot serve,
     a key that has sealed its most pages (rotate it)
  3  wrong key or passphrase (or none given for an encrypted database)
  4  corruption: a page, header or commit record failed its check, a log beside the
     file belongs to another file, or a check or verification failed
  5  I/O error, or the database file is locked by another process (also: an internal
     error the message asks to report as a bug)";

/// A failed command: what to print and which exit code to return.
#[derive(Debug)]
pub enum CliError {
    /// Bad arguments or input (exit 2).
    Usage(String),
    /// No such key (`get`) or tree (`get`, `scan`, `dump --tree`, `pagedump --tree`) (exit 1).
    NotFound { what: &'static str, file: PathBuf },
    /// A library error about `file` (exit code by kind).
    Db { err: Error, file: PathBuf },
    /// An I/O error outside the library about `file` (exit 5).
    Io { err: std::io::Error, file: PathBuf },
    /// A verification the tool itself made failed (exit 4).
    Verify(String),
    /// Standard output was closed by its reader (`| head`): stop quietly with exit 0.
    BrokenPipe,
}

/// Standard output for a command whose exit code carries a verdict (`check`, `salvage`,
/// `pagedump`): once its reader has gone (`| head`), writes are dropped instead of failing, so
/// the command runs to its end and a damage found is never exit 0. Other commands stop at a
/// closed pipe (`CliError::BrokenPipe`, a quiet exit 0).
pub(crate) struct VerdictOut<W: std::io::Write> {
    inner: W,
    closed: bool,
}

/// [`VerdictOut`] over a buffered standard output.
pub(crate) fn verdict_stdout() -> VerdictOut<std::io::BufWriter<std::io::StdoutLock<'static>>> {
    VerdictOut { inner: std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock()), closed: false }
}

impl<W: std::io::Write> VerdictOut<W> {
    fn quiet_after_broken_pipe<T>(&mut self, r: std::io::Result<T>, none: T) -> std::io::Result<T> {
        match r {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(none)
            }
            r => r,
        }
    }
}

impl<W: std::io::Write> std::io::Write for VerdictOut<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        let r = self.inner.write(buf);
        self.quiet_after_broken_pipe(r, buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let r = self.inner.flush();
        self.quiet_after_broken_pipe(r, ())
    }
}

impl CliError {
    pub fn db(err: Error, file: &Path) -> CliError {
        CliError::Db { err, file: file.to_path_buf() }
    }
    pub fn io(err: std::io::Error, file: &Path) -> CliError {
        CliError::Io { err, file: file.to_path_buf() }
    }
    /// An error writing to standard output.
    pub fn stdout(err: std::io::Error) -> CliError {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            CliError::BrokenPipe
        } else {
            CliError::Io { err, file: PathBuf::from("<stdout>") }
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::NotFound { .. } => EXIT_NOT_FOUND,
            CliError::Db { err, .. } => exit_code_of(err),
            CliError::Io { .. } => EXIT_IO,
            CliError::Verify(_) => EXIT_CORRUPT,
            CliError::BrokenPipe => EXIT_OK,
        }
    }

    /// The one-line message (without the program name); `None` for a quiet stop.
    pub fn message(&self) -> Option<String> {
        Some(match self {
            CliError::Usage(m) | CliError::Verify(m) => m.clone(),
            CliError::NotFound { what, file } => format!("{what} ({})", file.display()),
            CliError::Db { err, file } => {
                format!("{} ({})", one_line(&err.to_string()), file.display())
            }
            CliError::Io { err, file } => {
                format!("{} ({})", one_line(&err.to_string()), file.display())
            }
            CliError::BrokenPipe => return None,
        })
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// The exit code for a library error (the table in [`EXIT_CODES`]).
pub fn exit_code_of(e: &Error) -> i32 {
    // Exhaustive: a new error variant gets its code here on purpose.
    match e {
        Error::WrongKey { .. } => EXIT_WRONG_KEY,
        Error::Corrupt { .. }
        | Error::Truncated { .. }
        | Error::NotADatabase
        | Error::BackupCorrupt { .. }
        | Error::RolledBack { .. }
        | Error::RootDigestMismatch
        | Error::ForeignLog
        | Error::StaleLog { .. } => EXIT_CORRUPT,
        Error::Io(_) | Error::Locked | Error::Poisoned | Error::ReportableBug(_) => EXIT_IO,
        Error::KeyTooLarge { .. }
        | Error::ValueTooLarge { .. }
        | Error::Unsupported(_)
        | Error::InvalidConfig(_)
        | Error::AlreadyExists(_)
        | Error::CollectionNotFound
        | Error::UnsupportedVersion { .. }
        | Error::UnsupportedLogVersion { .. }
        | Error::NonceBudgetExhausted
        | Error::ReadOnly => EXIT_USAGE,
    }
}

/// Attaches the file a library or I/O error is about.
pub trait At<T> {
    fn at(self, file: &Path) -> Result<T, CliError>;
}

impl<T> At<T> for crate::Result<T> {
    fn at(self, file: &Path) -> Result<T, CliError> {
        self.map_err(|e| CliError::db(e, file))
    }
}

impl<T> At<T> for std::io::Result<T> {
    fn at(self, file: &Path) -> Result<T, CliError> {
        self.map_err(|e| CliError::io(e, file))
    }
}

/// `pages` database pages in MiB, for messages.
pub fn pages_mib(pages: u64) -> f64 {
    pages as f64 * crate::format::PAGE_SIZE as f64 / (1 << 20) as f64
}

/// A progress bar on standard error when it is a terminal, else a hidden one.
pub fn progress(len: Option<u64>, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let template =
        if len.is_some() { "{msg} {bar:40} {pos}/{len} ({per_sec})" } else { "{spinner} {msg} {pos} ({per_sec})" };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar
}

/// Prints the error (if any) as `<program>: <message>` and returns the exit code.
pub fn report(program: &str, result: Result<(), CliError>) -> i32 {
    match result {
        Ok(()) => EXIT_OK,
        Err(e) => {
            if let Some(m) = e.message() {
                note!("{program}: {m}");
            }
            e.exit_code()
        }
    }
}

/// Process hygiene for a program that will hold keys, called at the start of `main` before any
/// key is read: on Linux, `prctl(PR_SET_DUMPABLE, 0)` so that the process leaves no core dump and
/// other processes of the same user cannot attach to it or read its memory. A failure is
/// reported once on standard error and is not fatal.
pub fn harden_process(program: &str) {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable) {
        note!("{program}: warning: cannot mark the process non-dumpable ({e}); a core dump could hold key material");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = program;
}

/// Whether the process is dumpable now: `Some(false)` after [`harden_process`] on Linux,
/// `None` where it cannot be told.
pub fn is_dumpable() -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        rustix::process::dumpable_behavior().ok().map(|b| !matches!(b, rustix::process::DumpableBehavior::NotDumpable))
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The `foldvault` program: parses the process arguments, runs the command, returns the exit
/// code.
pub fn foldvault_main() -> i32 {
    cli::run(std::env::args_os())
}

/// The `pagedump` program.
pub fn pagedump_main() -> i32 {
    pagedump::run(std::env::args_os())
}
