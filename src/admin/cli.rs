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
    /// Verify every page and structure of a database (exit 4 if any problem)
    Check(CheckArgs),
    /// Copy every readable record of a damaged database into a new one (exit 4 if any was lost)
    Salvage(SalvageArgs),
    /// Write a backup stream of the newest commit, encrypted as the database is (OUT `-`: standard output)
    Backup(BackupArgs),
    /// Verify a backup stream (FILE `-`: standard input); with a key, also its pages and trees
    VerifyBackup(VerifyBackupArgs),
    /// Restore a database from a backup stream (FILE `-`: standard input)
    Restore(RestoreArgs),
    /// Change a passphrase (not yet available)
    Passwd(PasswdArgs),
    /// List, add or remove key slots (not yet available)
    Slots(SlotsArgs),
    /// Re-seal every page under a new data key (not yet available)
    Rekey(RekeyArgs),
    /// Encrypt a plaintext database into a new encrypted one (not yet available)
    Encrypt(EncryptArgs),
    /// Decrypt a database into a new plaintext one (not yet available)
    Decrypt(DecryptArgs),
    /// Import a sled 0.34 database into a new foldvault database (not yet available)
    ImportSled(ImportSledArgs),
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

#[derive(Args, Debug)]
#[command(after_help = "Exit codes: 0 no problem found, 3 wrong key, 4 a problem was found \
(each is listed with its page and tree), 5 I/O error or locked")]
pub struct CheckArgs {
    /// The database file (or a database directory)
    pub db: PathBuf,
    /// One JSON object instead of text
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args, Debug)]
#[command(after_help = "DST is created with the same key (the key options unlock SRC and protect DST) and the \
same cipher; it is plaintext if SRC is. Lost key ranges are listed by their bounding keys (escaped), never \
values.\nExit codes: 0 nothing lost, 2 DST exists, 3 wrong key, 4 something was lost (or SRC cannot be \
read), 5 I/O error or locked")]
pub struct SalvageArgs {
    /// The damaged database file (or database directory)
    pub src: PathBuf,
    /// The new database to create (must not exist, or be empty)
    pub dst: PathBuf,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args, Debug)]
#[command(after_help = "The backup holds only the pages of one snapshot, each still sealed and every chunk \
sealed again under a key derived from the data key; it restores with the credentials that open the database \
now. A backup of a plaintext database is not encrypted. An existing OUT file is replaced only once the new \
backup is complete. The summary goes to standard error.\nExit codes: 0 ok, 3 wrong key, 4 the database is \
damaged (nothing is backed up), 5 I/O error or locked")]
pub struct BackupArgs {
    /// The database file (or a database directory)
    pub db: PathBuf,
    /// The backup file to write; `-` writes to standard output (not to a terminal)
    #[arg(allow_hyphen_values = true)]
    pub out: PathBuf,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args, Debug)]
#[command(after_help = "Without a key, the structure, the chunk hashes and the stream hash are checked \
(enough to find any damage, not to tell a forgery). With a key (--passphrase-file, FOLDVAULT_PASSPHRASE, \
--key-file, FOLDVAULT_KEY_FILE; never asked for), every chunk and page is opened, every link checked and records \
are counted per tree. A plaintext backup is always checked in full.\nExit codes: 0 ok, 3 wrong key, 4 damaged \
or truncated (the byte offset and chunk are named), 5 I/O error")]
pub struct VerifyBackupArgs {
    /// The backup file; `-` reads standard input
    #[arg(allow_hyphen_values = true)]
    pub file: PathBuf,
    /// Check only structure and hashes, even if a key is set in the environment
    #[arg(long, conflicts_with_all = ["passphrase_file", "key_file"])]
    pub no_key: bool,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args, Debug)]
#[command(after_help = "The key options give the credentials that opened the database when the backup was \
taken. The database is written to a temporary file beside DB, checked in full, then renamed into place: DB \
either keeps its old contents or holds the whole backup.\nExit codes: 0 ok, 2 DB exists (without --force), \
3 wrong key, 4 the backup is damaged or truncated, 5 I/O error or DB locked")]
pub struct RestoreArgs {
    /// The backup file; `-` reads standard input
    #[arg(allow_hyphen_values = true)]
    pub file: PathBuf,
    /// The database file to create (or a database directory)
    pub db: PathBuf,
    /// Replace an existing database (refused while another process has it open)
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args, Debug)]
pub struct PasswdArgs {
    /// The database file (or a database directory)
    pub db: PathBuf,
    /// Read the new passphrase from FILE (default: asked for twice on the terminal)
    #[arg(long, value_name = "FILE")]
    pub new_passphrase_file: Option<PathBuf>,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args, Debug)]
pub struct SlotsArgs {
    /// The database file (or a database directory)
    pub db: PathBuf,
    /// What to change (default: list the slots)
    #[command(subcommand)]
    pub action: Option<SlotAction>,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Subcommand, Debug)]
pub enum SlotAction {
    /// Add a passphrase slot (the new passphrase is asked for twice)
    AddPassphrase,
    /// Add a master-key slot for the key in FILE
    AddKeyFile {
        /// The key file (32 raw bytes or 64 hex characters)
        file: PathBuf,
    },
    /// Add a recovery-key slot (the recovery key is printed once)
    AddRecovery,
    /// Remove slot N
    Remove {
        /// The slot number (as `slots DB` lists it)
        n: u32,
    },
}

#[derive(Args, Debug)]
pub struct RekeyArgs {
    /// The database file (or a database directory)
    pub db: PathBuf,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args, Debug)]
pub struct EncryptArgs {
    /// The plaintext database
    pub src: PathBuf,
    /// The encrypted database to create
    pub dst: PathBuf,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args, Debug)]
pub struct DecryptArgs {
    /// The encrypted database
    pub src: PathBuf,
    /// The plaintext database to create
    pub dst: PathBuf,
    /// Required: decrypting writes the records in clear to disk
    #[arg(long, required = true)]
    pub i_understand_this_writes_plaintext: bool,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args, Debug)]
pub struct ImportSledArgs {
    /// The sled 0.34 database directory
    pub sled: PathBuf,
    /// The foldvault database to create
    pub dst: PathBuf,
    #[command(flatten)]
    pub keys: KeyArgs,
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
    use super::{commands as c, demo, maintain, status};
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
        Cmd::Check(a) => maintain::check(a),
        Cmd::Salvage(a) => maintain::salvage(a),
        Cmd::Backup(a) => maintain::backup(a),
        Cmd::VerifyBackup(a) => maintain::verify_backup(a),
        Cmd::Restore(a) => maintain::restore(a),
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
        for args in [
            &["passwd", "x"][..],
            &["slots", "x"],
            &["slots", "x", "remove", "1"],
            &["rekey", "x"],
            &["encrypt", "x", "y"],
            &["decrypt", "x", "y", "--i-understand-this-writes-plaintext"],
            &["import-sled", "x", "y"],
        ] {
            let code = run(std::iter::once("foldvault").chain(args.iter().copied()).map(OsString::from));
            assert_eq!(code, super::super::EXIT_USAGE, "{args:?}");
        }
        // decrypt insists on its acknowledgement.
        let code = run(["foldvault", "decrypt", "x", "y"].map(OsString::from));
        assert_eq!(code, super::super::EXIT_USAGE);
    }
}
