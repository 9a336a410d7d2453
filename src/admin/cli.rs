//! The `foldvault` command line: argument definitions (clap derive) and dispatch.
//!
//! Layer: admin. Each subcommand's work lives in `commands`, `status`, `maintain`, `backups`, `keyops`,
//! `convert` or `demo`; this file only says what the arguments are. Keys are never arguments: see `keys::KeyArgs`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::keys::KeyArgs;
use super::{CliError, EXIT_CODES};
use crate::{CipherId, KdfParams};

const AFTER_HELP: &str =
    "Exit codes: 0 ok, 1 not found, 2 usage, 3 wrong key, 4 corruption, 5 I/O or locked (--help for details)";

/// Operate foldvault databases: create, read, write, load, dump and inspect them.
///
/// DB is a database file (a directory is taken as a sled-style database directory holding
/// `db.foldvault`). Keys come from --passphrase-file, FOLDVAULT_PASSPHRASE, --key-file,
/// FOLDVAULT_KEY_FILE or --recovery-key-file, or are asked for without echo when standard input
/// is a terminal; never from a plain argument. Key and passphrase files must not be readable by
/// other users (chmod 600; FOLDVAULT_ALLOW_SHARED_KEY_FILES=1 lifts this). The default tree is
/// named `__sled__default`, as in sled.
#[derive(Parser)]
#[command(name = "foldvault", version, after_help = AFTER_HELP, after_long_help = EXIT_CODES)]
pub struct Cli {
    /// Engine settings from a TOML file (cipher, cache_capacity, [kdf], [backup]), under the
    /// command-line options; see src/admin/config_file.rs for the keys
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Create a new database (encrypted unless --plaintext)
    Init(InitArgs),
    /// Set KEY to VALUE in TREE (VALUE `-` reads standard input)
    Put(PutArgs),
    /// Print the value of KEY in TREE, raw, to standard output (exit 1 if absent)
    Get(KeyCmdArgs),
    /// Remove KEY from TREE (exit 0 whether or not it was present)
    Del(KeyCmdArgs),
    /// List the entries of TREE in key order (exit 1 if there is no TREE)
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
    /// Merge half-empty pages, move pages off the end of the file and shorten it (online, no data changes)
    Compact(CompactArgs),
    /// Write a backup stream of the newest commit, encrypted as the database is (OUT `-`: standard output)
    Backup(BackupArgs),
    /// Verify a backup stream (FILE `-`: standard input); with a key, also its pages and trees
    VerifyBackup(VerifyBackupArgs),
    /// Restore a database from a backup stream (FILE `-`: standard input)
    Restore(RestoreArgs),
    /// Change a passphrase (rewrites the key slots it opens in the header, never a data page)
    Passwd(PasswdArgs),
    /// List key slots, or add or remove one
    Slots(SlotsArgs),
    /// Re-seal every page under a new data key and re-wrap every key slot around it
    Rekey(RekeyArgs),
    /// Copy a database into a new encrypted one (or convert it in place with --in-place)
    Encrypt(EncryptArgs),
    /// Copy an encrypted database into a new plaintext one
    Decrypt(DecryptArgs),
    /// Import a sled 0.34 database into a new foldvault database (needs feature `sled-import`)
    ImportSled(ImportSledArgs),
    /// Tests only: open DB with its key and print whether the process is dumpable
    #[command(name = "__dumpable", hide = true)]
    Dumpable(DumpableArgs),
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

#[derive(Args)]
pub struct InitArgs {
    /// The database file to create (must not exist, or be empty); in an existing directory,
    /// `db.foldvault` inside it
    pub db: PathBuf,
    /// Create a plaintext database (CRC32-checked pages, no key)
    #[arg(long)]
    pub plaintext: bool,
    #[command(flatten)]
    pub new: NewDbArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args)]
pub struct PutArgs {
    /// The database file (or a database directory)
    pub db: PathBuf,
    /// The tree (the default tree is `__sled__default`)
    pub tree: OsString,
    /// The key
    #[arg(allow_hyphen_values = true)]
    pub key: OsString,
    /// The value; `-` reads it from standard input
    #[arg(allow_hyphen_values = true)]
    pub value: OsString,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args)]
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

#[derive(Args)]
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

#[derive(Args)]
pub struct LoadArgs {
    /// The database file (or a database directory)
    pub db: PathBuf,
    /// Put every record into this tree; without it each line must name its tree
    /// ("tree" or "tree_b64", as `dump` writes)
    pub tree: Option<OsString>,
    /// Commit every N records instead of once at the end
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: Option<u64>,
    /// Refuse a line longer than this many bytes (a value of V bytes takes about 4V/3 as
    /// base64, up to 6V as JSON escapes)
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_line_bytes: u64,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args)]
#[command(after_help = "The records only: generate_id's counter is not in a dump, so a database loaded \
from one hands out ids from 0 again (backup, encrypt, decrypt and salvage carry it).")]
pub struct DumpArgs {
    /// The database file (or a database directory)
    pub db: PathBuf,
    /// Only this tree (exit 1 if there is none)
    #[arg(long, value_name = "T")]
    pub tree: Option<OsString>,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args)]
pub struct StatusArgs {
    /// The database file (or a database directory)
    pub db: PathBuf,
    /// One JSON object instead of text
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args)]
#[command(after_help = "Copy-on-write leaves a file as long as it ever was: a large removal copies the \
remaining pages past the end and frees the old ones, removals leave pages half empty, and random \
inserts split leaves half full. compact merges neighbouring pages that fit one page, refills each leaf \
from its right neighbour to nine tenths of a page, copies the pages at the end of the file into the \
free space, in durable commits that change no data, then cuts the free end off. Pages an open reader \
still reads stay. It prints the length before and after.\nExit codes: 0 ok, 2 bad arguments, 3 wrong key, \
4 a page failed its check, 5 I/O error or locked")]
pub struct CompactArgs {
    /// The database file (or a database directory)
    pub db: PathBuf,
    /// One JSON object instead of text
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args)]
pub struct StatsArgs {
    /// The database file (or a database directory)
    pub db: PathBuf,
    /// One JSON object instead of text
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Where to create the demonstration files (default: a temporary directory, removed after)
    pub dir: Option<PathBuf>,
    /// Number of atoms to write (each also gets a ref: record); at most 100,000, whose tour
    /// holds a few hundred MB at its peak (the records, and every record of the database and
    /// of its restored copy, to compare them)
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub records: u64,
}

#[derive(Args)]
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

#[derive(Args)]
#[command(after_help = "DST is created with the same key (the key options unlock SRC and protect DST) and the \
same cipher; it is plaintext if SRC is. Lost key ranges are listed by their bounding keys (escaped), never \
values.\nExit codes: 0 nothing lost, 2 DST exists, 3 wrong key, 4 something was or may have been lost (a \
commit record does not open) or SRC cannot be read, 5 I/O error or locked")]
pub struct SalvageArgs {
    /// The damaged database file (or database directory)
    pub src: PathBuf,
    /// The new database to create (must not exist, or be empty)
    pub dst: PathBuf,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args)]
#[command(after_help = "The backup holds only the pages of one snapshot, each still sealed and every chunk \
sealed again under a key derived from the data key; it restores with the credentials that open the database \
now. A backup of a plaintext database is not encrypted. An existing OUT file is replaced only once the new \
backup is complete (and, with `[backup] verify_after`, verified), and only if it is empty or a foldvault \
backup itself, unless --force is given. The summary goes to standard error.\nExit codes: 0 ok, 2 OUT holds \
another kind of file, 3 wrong key, 4 the database is damaged (nothing is backed up), 5 I/O error or locked")]
pub struct BackupArgs {
    /// The database file (or a database directory)
    pub db: PathBuf,
    /// The backup file to write; `-` writes to standard output (not to a terminal)
    #[arg(allow_hyphen_values = true)]
    pub out: PathBuf,
    /// Replace OUT even if it is not a foldvault backup (another database, say)
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args)]
#[command(after_help = "Without a key, the structure, the chunk hashes and the stream hash are checked \
(enough to find any damage, not to tell a forgery). With a key (--passphrase-file, FOLDVAULT_PASSPHRASE, \
--key-file, FOLDVAULT_KEY_FILE; never asked for), every chunk and page is opened, every link checked and records \
are counted per tree. A plaintext backup is always checked in full.\nExit codes: 0 ok, 2 bad arguments (a \
terminal or a directory as FILE) or a backup version this build does not read, 3 wrong key, 4 damaged or \
truncated (the byte offset and chunk are named), 5 I/O error")]
pub struct VerifyBackupArgs {
    /// The backup file; `-` reads standard input
    #[arg(allow_hyphen_values = true)]
    pub file: PathBuf,
    /// Check only structure and hashes, even if a key is set in the environment
    #[arg(long, conflicts_with_all = ["passphrase_file", "key_file", "recovery_key_file"])]
    pub no_key: bool,
    /// Refuse a backup of a plaintext database (exit 2): its hashes are unkeyed, so anyone who
    /// can write the backup can put one there in place of an encrypted one
    #[arg(long)]
    pub require_encryption: bool,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args)]
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
    /// Refuse a backup of a plaintext database (exit 2) instead of restoring it as plaintext
    #[arg(long)]
    pub require_encryption: bool,
    #[command(flatten)]
    pub keys: KeyArgs,
}

/// Argon2id parameters for a new passphrase slot; unset ones keep a default.
#[derive(Args, Clone, Default)]
pub struct KdfArgs {
    /// Argon2id memory for the new passphrase slot, in MiB
    #[arg(long, value_name = "N")]
    pub kdf_memory_mib: Option<u32>,
    /// Argon2id passes for the new passphrase slot
    #[arg(long, value_name = "N")]
    pub kdf_iterations: Option<u32>,
}

impl KdfArgs {
    /// `base` with the parameters given on the command line.
    pub fn resolve(&self, base: KdfParams) -> Result<KdfParams, CliError> {
        let memory_kib = match self.kdf_memory_mib {
            Some(m) => m.checked_mul(1024).ok_or_else(|| CliError::Usage("--kdf-memory-mib is too large".into()))?,
            None => base.memory_kib,
        };
        Ok(KdfParams { memory_kib, iterations: self.kdf_iterations.unwrap_or(base.iterations), ..base })
    }
}

/// How a new encrypted database is made (init, encrypt, import-sled).
#[derive(Args, Clone)]
pub struct NewDbArgs {
    /// The page cipher (default aes-256-gcm, or the config file's)
    #[arg(long, value_enum)]
    pub cipher: Option<CipherArg>,
    #[command(flatten)]
    pub kdf: KdfArgs,
}

impl NewDbArgs {
    /// The cipher: the option's, else the config file's, else AES-256-GCM.
    pub fn cipher(&self) -> CipherId {
        self.cipher.map_or_else(|| super::config_file::installed().cipher(), CipherId::from)
    }
    /// The Argon2id parameters: the options' over the config file's over the defaults.
    pub fn kdf(&self) -> Result<KdfParams, CliError> {
        self.kdf.resolve(super::config_file::installed().kdf())
    }
}

#[derive(Args)]
#[command(after_help = "The key options give the current passphrase (asked for on a terminal when none is \
given). Every key slot it opens is rewritten (a passphrase added twice is changed in both, and the old \
one then opens neither): the header changes, no data page does. Without --kdf-memory-mib / \
--kdf-iterations the slot keeps its Argon2id parameters.\nExit codes: 0 ok, 2 bad \
arguments or no new passphrase, 3 wrong current passphrase, 4 the file is damaged, 5 I/O error or \
locked")]
pub struct PasswdArgs {
    /// The database file (or a database directory)
    pub db: PathBuf,
    /// Read the new passphrase from FILE (default: asked for twice on the terminal)
    #[arg(long, value_name = "FILE")]
    pub new_passphrase_file: Option<PathBuf>,
    #[command(flatten)]
    pub kdf: KdfArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args)]
#[command(after_help = "Listing needs no key (with one, the list is read from the authenticated header). \
Adding or removing a slot needs a key that opens DB; the key options may follow the action \
(`slots DB add-key-file NEW --passphrase-file P`). Only the header is rewritten.\nExit codes: 0 ok, 2 bad \
arguments, no such slot, or the last slot, 3 wrong key, 5 I/O error or locked")]
pub struct SlotsArgs {
    /// The database file (or a database directory)
    pub db: PathBuf,
    /// What to change (default: list the slots)
    #[command(subcommand)]
    pub action: Option<SlotAction>,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Subcommand)]
pub enum SlotAction {
    /// Add a passphrase slot (the new passphrase is asked for twice, or read from a file)
    AddPassphrase {
        /// Read the new passphrase from FILE
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// Add a master-key slot for the key in FILE
    AddKeyFile {
        /// The key file (32 raw bytes or 64 hex characters; not readable by other users)
        file: PathBuf,
    },
    /// Add a recovery-key slot; the new recovery key is printed once on standard output
    AddRecovery,
    /// Remove slot N (the last slot is never removed; the only slot the key given opens, only
    /// with --force)
    Remove {
        /// The slot number (as `slots DB` lists it)
        n: usize,
        /// Remove it even when the key given opens no other slot
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args)]
#[command(after_help = "A new random data key replaces the old one: every page is re-sealed under it in \
batches (readers and writers may go on), then every key slot is re-wrapped around it and the old key \
is destroyed. Credentials for every slot are needed: the key options open DB, the --also-* options give \
the others (a combined master-key + passphrase slot takes --also-key-and-passphrase with both files). An interrupted rekey resumes when run again.\nExit codes: 0 ok, 2 a slot has no \
credentials, 3 wrong key, 4 a page failed its check, 5 I/O error or locked")]
pub struct RekeyArgs {
    /// The database file (or a database directory)
    pub db: PathBuf,
    /// The passphrase of another slot, in FILE (repeatable)
    #[arg(long, value_name = "FILE")]
    pub also_passphrase_file: Vec<PathBuf>,
    /// The master key of another slot, in FILE (repeatable)
    #[arg(long, value_name = "FILE")]
    pub also_key_file: Vec<PathBuf>,
    /// The recovery key of a recovery slot, in FILE (repeatable)
    #[arg(long, value_name = "FILE")]
    pub also_recovery_key_file: Vec<PathBuf>,
    /// The master key and the passphrase of another combined slot (made by `init` given both),
    /// in two files (repeatable)
    #[arg(long, num_args = 2, value_names = ["KEY_FILE", "PASSPHRASE_FILE"])]
    pub also_key_and_passphrase: Vec<PathBuf>,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args)]
#[command(after_help = "The key options give the key of the new encrypted database. An encrypted SRC is \
opened with the --src-* options, or else with the same key options. Every tree of the copy is checked \
against its source (record count and a keyed BLAKE3 digest; the counts are shown at the end). The copy is written beside DST \
(or SRC with --in-place), synced and renamed into place. The copy has one key slot, for the key \
options given: an encrypted SRC's other slots are not carried over (rekey changes the data key and \
keeps every slot).\nExit codes: 0 ok, 2 DST exists or bad \
arguments, 3 wrong key for SRC, 4 SRC is damaged, 5 I/O error or locked")]
pub struct EncryptArgs {
    /// The database to encrypt (plaintext, or encrypted: it then gets a new data key)
    pub src: PathBuf,
    /// The encrypted database to create (not with --in-place)
    #[arg(required_unless_present = "in_place", conflicts_with = "in_place")]
    pub dst: Option<PathBuf>,
    /// Replace SRC itself by its encrypted copy
    #[arg(long)]
    pub in_place: bool,
    /// With --in-place on an encrypted SRC that has key slots the copy does not recreate (a
    /// recovery key, other passphrases): convert anyway, and those keys stop opening it
    #[arg(long, requires = "in_place")]
    pub drop_other_slots: bool,
    #[command(flatten)]
    pub new: NewDbArgs,
    /// The passphrase that opens an encrypted SRC, in FILE
    #[arg(long, value_name = "FILE")]
    pub src_passphrase_file: Option<PathBuf>,
    /// The master key that opens an encrypted SRC, in FILE
    #[arg(long, value_name = "FILE")]
    pub src_key_file: Option<PathBuf>,
    /// The recovery key that opens an encrypted SRC, in FILE
    #[arg(long, value_name = "FILE")]
    pub src_recovery_key_file: Option<PathBuf>,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args)]
#[command(after_help = "Every record is written in clear to DST: the command refuses to run without \
--i-understand-this-writes-plaintext. Every tree of the copy is checked against its source (record \
count and a keyed BLAKE3 digest; the counts are shown at the end).\nExit codes: 0 ok, 2 no acknowledgement, DST exists or SRC \
is not encrypted, 3 wrong key, 4 SRC is damaged, 5 I/O error or locked")]
pub struct DecryptArgs {
    /// The encrypted database
    pub src: PathBuf,
    /// The plaintext database to create
    pub dst: PathBuf,
    /// Required: decrypting writes the records in clear to disk
    #[arg(long)]
    pub i_understand_this_writes_plaintext: bool,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args)]
#[command(after_help = "Needs a build with the cargo feature `sled-import`. The new database is encrypted \
with the key options (or plaintext with --plaintext); each tree's record count and keyed BLAKE3 digest are \
checked against sled's records, the whole copy against sled's own checksum, and the counts shown at the end.\nExit codes: 0 ok, 2 DST exists, bad arguments or no sled \
support in this build, 5 I/O error")]
pub struct ImportSledArgs {
    /// The sled 0.34 database directory
    pub sled: PathBuf,
    /// The foldvault database to create
    pub dst: PathBuf,
    /// Create a plaintext database (no key)
    #[arg(long)]
    pub plaintext: bool,
    #[command(flatten)]
    pub new: NewDbArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Args)]
pub struct DumpableArgs {
    /// The database file (or a database directory)
    pub db: PathBuf,
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
    if let Some(path) = &cli.config {
        // Read bounded: `parse` refuses more than 1 MiB, so a byte past it is enough to know.
        let read = std::fs::File::open(path).and_then(|f| {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(f, (1 << 20) + 1), &mut b).map(|_| b)
        });
        let text = match read.map(String::from_utf8) {
            Ok(Ok(t)) => t,
            // Too long to be read whole (cut anywhere): `parse` refuses it for its length.
            Ok(Err(e)) if e.as_bytes().len() > 1 << 20 => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            Ok(Err(_)) => {
                note!("foldvault: config file {}: not UTF-8 text", path.display());
                return 2;
            }
            Err(e) => {
                note!("foldvault: cannot read config file ({}): {e}", path.display());
                return 5;
            }
        };
        match super::config_file::parse(&text) {
            Ok(s) => {
                let unused = s.unused_on_the_command_line();
                if !unused.is_empty() {
                    note!(
                        "foldvault: config file {}: {} not used by the command line (each command's writes are durable before it exits)",
                        path.display(),
                        unused.join(", ")
                    );
                }
                super::config_file::install(s)
            }
            Err(e) => {
                note!("foldvault: config file {}: {e}", path.display());
                return 2;
            }
        }
    }
    super::report("foldvault", dispatch(cli.command))
}

fn dispatch(cmd: Cmd) -> Result<(), CliError> {
    use super::{backups, commands as c, convert, demo, keyops, maintain, status};
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
        Cmd::Compact(a) => c::compact(a),
        Cmd::Backup(a) => backups::backup(a),
        Cmd::VerifyBackup(a) => backups::verify_backup(a),
        Cmd::Restore(a) => backups::restore(a),
        Cmd::Passwd(a) => keyops::passwd(a),
        Cmd::Slots(a) => keyops::slots(a),
        Cmd::Rekey(a) => keyops::rekey(a),
        Cmd::Encrypt(a) => convert::encrypt(a),
        Cmd::Decrypt(a) => convert::decrypt(a),
        Cmd::ImportSled(a) => convert::import_sled(a),
        Cmd::Dumpable(a) => keyops::dumpable(a),
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
    fn refusals_exit_2() {
        let run_args =
            |args: &[&str]| run(std::iter::once("foldvault").chain(args.iter().copied()).map(OsString::from));
        // decrypt insists on its acknowledgement (checked before anything is opened).
        assert_eq!(run_args(&["decrypt", "x", "y"]), super::super::EXIT_USAGE);
        // encrypt needs DST or --in-place, not both.
        assert_eq!(run_args(&["encrypt", "x"]), super::super::EXIT_USAGE);
        assert_eq!(run_args(&["encrypt", "x", "y", "--in-place"]), super::super::EXIT_USAGE);
        if !cfg!(feature = "sled-import") {
            assert_eq!(run_args(&["import-sled", "x", "y"]), super::super::EXIT_USAGE);
        }
    }

    #[test]
    fn key_options_may_follow_a_slot_action() {
        let cli = Cli::try_parse_from(["foldvault", "slots", "db", "add-key-file", "k2", "--passphrase-file", "p"])
            .expect("parses");
        let Cmd::Slots(a) = cli.command else { panic!("not slots") };
        assert_eq!(a.keys.passphrase_file, Some(PathBuf::from("p")));
        assert!(matches!(a.action, Some(SlotAction::AddKeyFile { .. })));
    }
}
