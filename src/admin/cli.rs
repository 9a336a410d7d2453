//! The `foldvault` command line: argument definitions (clap derive) and dispatch.
//!
//! Layer: admin. Each subcommand's work lives in `commands`, `status` or `demo`; this file only
//! says what the arguments are. Keys are never arguments: see `keys::KeyArgs`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::keys::KeyArgs;
use super::{CliError, EXIT_CODES};
use crate::CipherId;

const AFTER_HELP: &str =
    "Exit codes: 0 ok, 1 not found, 2 usage, 3 wrong key, 4 corruption, 5 I/O or locked (--help for details)";

/// Operate foldvault databases: create, read, write, load, dump and inspect them.
///
/// DB is a database file (a directory is taken as a sled-style database directory holding
/// `db.foldvault`). Keys come from --passphrase-file, FOLDVAULT_PASSPHRASE, --key-file or
/// FOLDVAULT_KEY_FILE, or are asked for without echo when standard input is a terminal;
/// never from a plain argument. The default tree is named `__sled__default`, as in sled.
#[derive(Parser, Debug)]
#[command(name = "foldvault", version, after_help = AFTER_HELP, after_long_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a new database (encrypted unless --plaintext)
    Init(InitArgs),
    /// Set KEY to VALUE in TREE (VALUE `-` reads standard input)
    Put(PutArgs),
    /// Print the value of KEY in TREE, raw, to standard output (exit 1 if absent)
    Get(KeyCmdArgs),
    /// Remove KEY from TREE (exit 0 whether or not it was present)
    Del(KeyCmdArgs),
    /// List the entries of TREE in key order
    Scan(ScanArgs),
    /// Load JSON-lines records from standard input in one transaction
    Load(LoadArgs),
    /// Write every record as JSON lines, trees in name order and keys in key order
    Dump(DumpArgs),
    /// Show the file header (works without a key); with a key also trees and counters
    Status(StatusArgs),
    /// Show the engine's counters after opening
    Stats(StatsArgs),
    /// Create a demonstration database and show what encryption does and costs
    Demo(DemoArgs),
    /// Verify every page and structure of a database (not yet available)
    Check(StubArgs),
    /// Copy every readable record out of a damaged database (not yet available)
    Salvage(StubArgs),
    /// Write an encrypted backup stream (not yet available)
    Backup(StubArgs),
    /// Verify a backup stream (not yet available)
    VerifyBackup(StubArgs),
    /// Restore a database from a backup stream (not yet available)
    Restore(StubArgs),
    /// Change a passphrase (not yet available)
    Passwd(StubArgs),
    /// List, add or remove key slots (not yet available)
    Slots(StubArgs),
    /// Re-seal every page under a new data key (not yet available)
    Rekey(StubArgs),
    /// Encrypt a plaintext database (not yet available)
    Encrypt(StubArgs),
    /// Decrypt a database into a plaintext one (not yet available)
    Decrypt(DecryptArgs),
    /// Import a sled 0.34 database (not yet available)
    ImportSled(StubArgs),
}

/// Page cipher names on the command line.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherArg {
    #[value(name = "aes-256-gcm")]
    Aes256Gcm,
    #[value(name = "chacha20-poly1305")]
    Chacha20Poly1305,
}

impl From<CipherArg> for CipherId {
    fn from(c: CipherArg) -> CipherId {
        match c {
            CipherArg::Aes256Gcm => CipherId::Aes256Gcm,
            CipherArg::Chacha20Poly1305 => CipherId::ChaCha20Poly1305,
        }
    }
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The database file to create (must not exist, or be empty); in an existing directory,
    /// `db.foldvault` inside it
    pub db: PathBuf,
    /// Create a plaintext database (CRC32-checked pages, no key)
    #[arg(long)]
    pub plaintext: bool,
    /// The page cipher
    #[arg(long, value_enum, default_value = "aes-256-gcm")]
    pub cipher: CipherArg,
    /// Argon2id memory for the passphrase slot, in MiB
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub kdf_memory_mib: u32,
    /// Argon2id passes for the passphrase slot
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub kdf_iterations: u32,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args, Debug)]
pub struct PutArgs {
    /// The database file (or a database directory)
    pub db: PathBuf,
    /// The tree (the default tree is `__sled__default`)
    pub tree: OsString,
    /// The key
    pub key: OsString,
    /// The value; `-` reads it from standard input
    #[arg(allow_hyphen_values = true)]
    pub value: OsString,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args, Debug)]
pub struct KeyCmdArgs {
    /// The database file (or a database directory)
    pub db: PathBuf,
    /// The tree (the default tree is `__sled__default`)
    pub tree: OsString,
    /// The key
    #[arg(allow_hyphen_values = true)]
    pub key: OsString,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// The database file (or a database directory)
    pub db: PathBuf,
    /// The tree (the default tree is `__sled__default`)
    pub tree: OsString,
    /// Only keys starting with P
    #[arg(long, value_name = "P", allow_hyphen_values = true)]
    pub prefix: Option<OsString>,
    /// JSON lines ({"key": ..., "value": ...}, loadable by `load`) instead of `key<TAB>value`
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// The database file (or a database directory)
    pub db: PathBuf,
    /// Put every record into this tree; without it each line must name its tree
    /// ("tree" or "tree_b64", as `dump` writes)
    pub tree: Option<OsString>,
    /// Commit every N lines instead of once at the end
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: Option<u64>,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// The database file (or a database directory)
    pub db: PathBuf,
    /// Only this tree
    #[arg(long, value_name = "T")]
    pub tree: Option<OsString>,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The database file (or a database directory)
    pub db: PathBuf,
    /// One JSON object instead of text
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// The database file (or a database directory)
    pub db: PathBuf,
    /// One JSON object instead of text
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where to create the demonstration files (default: a temporary directory, removed after)
    pub dir: Option<PathBuf>,
    /// Number of atoms to write (each also gets a ref: record)
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub records: u64,
}

/// Arguments of a command that is not available yet: accepted as given, then refused.
#[derive(Args, Debug)]
pub struct StubArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    pub args: Vec<OsString>,
}

#[derive(Args, Debug)]
pub struct DecryptArgs {
    /// Required: decrypting writes the records in clear to disk
    #[arg(long)]
    pub i_understand_this_writes_plaintext: bool,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    pub args: Vec<OsString>,
}

/// Parses `args` (program name first), runs the command and returns the exit code.
pub fn run<I: IntoIterator<Item = OsString>>(args: I) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            // clap prints help and version to stdout (exit 0) and errors to stderr (exit 2).
            let _ = e.print();
            return e.exit_code();
        }
    };
    super::report("foldvault", dispatch(cli.command))
}

fn dispatch(cmd: Cmd) -> Result<(), CliError> {
    use super::{commands as c, demo, status};
    match cmd {
        Cmd::Init(a) => c::init(a),
        Cmd::Put(a) => c::put(a),
        Cmd::Get(a) => c::get(a),
        Cmd::Del(a) => c::del(a),
        Cmd::Scan(a) => c::scan(a),
        Cmd::Load(a) => c::load(a),
        Cmd::Dump(a) => c::dump(a),
        Cmd::Status(a) => status::status(a),
        Cmd::Stats(a) => c::stats(a),
        Cmd::Demo(a) => demo::demo(a),
        Cmd::Check(_) => Err(CliError::NotYetAvailable("check")),
        Cmd::Salvage(_) => Err(CliError::NotYetAvailable("salvage")),
        Cmd::Backup(_) => Err(CliError::NotYetAvailable("backup")),
        Cmd::VerifyBackup(_) => Err(CliError::NotYetAvailable("verify-backup")),
        Cmd::Restore(_) => Err(CliError::NotYetAvailable("restore")),
        Cmd::Passwd(_) => Err(CliError::NotYetAvailable("passwd")),
        Cmd::Slots(_) => Err(CliError::NotYetAvailable("slots")),
        Cmd::Rekey(_) => Err(CliError::NotYetAvailable("rekey")),
        Cmd::Encrypt(_) => Err(CliError::NotYetAvailable("encrypt")),
        Cmd::Decrypt(_) => Err(CliError::NotYetAvailable("decrypt")),
        Cmd::ImportSled(_) => Err(CliError::NotYetAvailable("import-sled")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn stubs_exit_2() {
        for cmd in [
            "check",
            "salvage",
            "backup",
            "verify-backup",
            "restore",
            "passwd",
            "slots",
            "rekey",
            "encrypt",
            "decrypt",
            "import-sled",
        ] {
            let code = run(["foldvault", cmd, "x"].map(OsString::from));
            assert_eq!(code, super::super::EXIT_USAGE, "{cmd}");
        }
    }
}
