//! Key input for the command line: `--passphrase-file`, `FOLDVAULT_PASSPHRASE`, `--key-file`
//! (or `FOLDVAULT_KEY_FILE`), `--recovery-key-file`, else a prompt without echo when standard
//! input is a terminal.
//!
//! Layer: admin. Invariants: a key or passphrase is never taken from a plain argument, never
//! printed, and never put into an error message (errors name the *file*, not its contents);
//! file contents are read into buffers that zeroize on drop and moved, not copied, into the
//! library's key types; a key or passphrase file that other users can read or write is refused
//! (unless `FOLDVAULT_ALLOW_SHARED_KEY_FILES=1`).

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use zeroize::Zeroizing;

use super::CliError;
use crate::{Credentials, ENV_KEY_FILE, ENV_PASSPHRASE, MasterKey, Passphrase};

pub use crate::crypto::secret_file::ENV_ALLOW_SHARED_KEY_FILES;
use crate::crypto::secret_file::{MAX_SECRET_FILE, exposure, read_bounded, shared_files_allowed};

/// The key options shared by every command that may need a key. They are global: after a
/// subcommand's own subcommand (`slots DB add-key-file F --passphrase-file P`) they still
/// give the key that opens DB. A file that other users can read (mode & 077) is refused
/// unless FOLDVAULT_ALLOW_SHARED_KEY_FILES=1.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KeyArgs {
    /// Read the passphrase from FILE (one trailing newline is dropped; the file must not be
    /// readable by other users). Without a key option, FOLDVAULT_PASSPHRASE is used, if set.
    #[arg(long, value_name = "FILE", global = true)]
    pub passphrase_file: Option<PathBuf>,
    /// Read the 32-byte master key from FILE: 32 raw bytes or 64 hex characters. Without a key
    /// option, the file named by FOLDVAULT_KEY_FILE is used, if set.
    #[arg(long, value_name = "FILE", global = true)]
    pub key_file: Option<PathBuf>,
    /// Read a recovery key (as `slots DB add-recovery` printed it) from FILE.
    #[arg(long, value_name = "FILE", global = true)]
    pub recovery_key_file: Option<PathBuf>,
}

/// Whether to ask on the terminal when no key was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// Never ask (commands that work without a key, and non-interactive use).
    Never,
    /// Ask once to unlock an existing database.
    Unlock,
    /// Ask twice (with confirmation) for a new database.
    Create,
}

impl KeyArgs {
    /// True when a key source was named explicitly on the command line.
    pub fn any_given(&self) -> bool {
        self.passphrase_file.is_some() || self.key_file.is_some() || self.recovery_key_file.is_some()
    }

    /// The credentials: the files named by the options; when no option is given, those named
    /// by the environment (`FOLDVAULT_PASSPHRASE`, `FOLDVAULT_KEY_FILE`), so that a variable
    /// left set in a shell never silently joins an explicit key (a master key and a passphrase
    /// together create, and then require, a combined slot). With none of these, if `prompt`
    /// allows it and standard input is a terminal: a passphrase typed without echo.
    pub fn credentials(&self, prompt: Prompt) -> Result<Credentials, CliError> {
        let mut creds = Credentials::none();
        let explicit = self.any_given();
        let passphrase = match &self.passphrase_file {
            Some(path) => Some(read_passphrase_file(path)?),
            None if !explicit => env_passphrase(),
            None => None,
        };
        if let Some(p) = passphrase {
            if p.0.is_empty() {
                return Err(CliError::Usage("the passphrase is empty".into()));
            }
            creds = creds.with_passphrase(p);
        }
        let key_path = match &self.key_file {
            Some(path) => Some(path.clone()),
            // An empty variable counts as unset (as in the library, `Config::use_env`).
            None if !explicit => std::env::var_os(ENV_KEY_FILE).filter(|v| !v.is_empty()).map(PathBuf::from),
            None => None,
        };
        if let Some(path) = key_path {
            creds = creds.with_master_key(read_key_file(&path, "key file")?);
        }
        if let Some(path) = &self.recovery_key_file {
            // `Credentials` has no public builder for a recovery key beside other parts.
            creds.recovery = Some(read_key_file(path, "recovery key file")?);
        }
        if creds.is_empty() && prompt != Prompt::Never && std::io::stdin().is_terminal() {
            let p = ask_passphrase(prompt == Prompt::Create)?;
            creds = creds.with_passphrase(p);
        }
        Ok(creds)
    }
}

fn env_passphrase() -> Option<Passphrase> {
    use std::os::unix::ffi::OsStringExt;
    std::env::var_os(ENV_PASSPHRASE).filter(|v| !v.is_empty()).map(|v| Passphrase::new(v.into_vec()))
}

/// Reads a passphrase file (one trailing newline dropped); the buffer read is wiped.
pub fn read_passphrase_file(path: &Path) -> Result<Passphrase, CliError> {
    let mut bytes = read_secret_file(path, "passphrase file")?;
    // Moved, not copied: `from_file_bytes` wipes the vector; the emptied one left behind is
    // wiped (nothing) on drop.
    Ok(Passphrase::from_file_bytes(std::mem::take(&mut *bytes)))
}

/// Reads a key file (32 raw bytes or 64 hex characters); `what` names it in messages.
pub fn read_key_file(path: &Path, what: &str) -> Result<MasterKey, CliError> {
    let bytes = read_secret_file(path, what)?;
    MasterKey::from_key_file_bytes(&bytes).map_err(|e| CliError::db(e, path))
}

/// A new passphrase: from `file`, else typed twice without echo on the terminal.
pub fn new_passphrase(file: Option<&Path>) -> Result<Passphrase, CliError> {
    let p = match file {
        Some(path) => read_passphrase_file(path)?,
        None if std::io::stdin().is_terminal() => ask_passphrase(true)?,
        None => {
            return Err(CliError::Usage(
                "no new passphrase: use --new-passphrase-file (it is asked for only when standard input is a terminal)"
                    .into(),
            ));
        }
    };
    if p.is_empty() {
        return Err(CliError::Usage("the new passphrase is empty".into()));
    }
    Ok(p)
}

/// Refuses a regular file or named pipe that users other than its owner may read or write
/// (`mode & 0o077`), unless the environment allows it (`crypto::secret_file::exposure`).
fn check_private(f: &File, path: &Path, what: &str) -> Result<(), CliError> {
    let exposed = exposure(f).map_err(|e| CliError::io(e, path))?;
    match exposed {
        Some((how, mode)) if !shared_files_allowed() => Err(CliError::Usage(format!(
            "{what} {} is {how} by other users; chmod 600 it (its mode is {mode:04o})",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// Reads a whole (small) secret file into a buffer that is wiped when dropped.
fn read_secret_file(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let f = File::open(path).map_err(|e| CliError::io(e, path))?;
    check_private(&f, path, what)?;
    read_bounded(f)
        .map_err(|e| CliError::io(e, path))?
        .ok_or_else(|| CliError::Usage(format!("{what} larger than {MAX_SECRET_FILE} bytes ({})", path.display())))
}

/// Turns terminal echo off for its lifetime (`stty -echo -isig -icanon` on /dev/tty) and, when
/// dropped, puts back the modes the terminal had (saved with `stty -g`; if that failed, echo,
/// signals and line mode are turned on). The terminal's signal keys are off too: a Ctrl-C
/// would end the process without running this drop and leave the shell with echo off (CLI
/// review), so ^C, ^\ and ^Z arrive as bytes instead, and `read_hidden` takes them for a
/// cancel. So that they arrive when pressed, not with the next Enter, the line is read a byte
/// at a time (`-icanon`), and `read_hidden` does the line editing the terminal did (erase,
/// kill, end of input).
struct EchoOff {
    tty: File,
    /// The terminal's modes before, as `stty -g` printed them, if it did.
    saved: Option<String>,
}

impl EchoOff {
    fn new(tty: &File) -> Result<EchoOff, CliError> {
        let tty = tty.try_clone().map_err(|e| CliError::io(e, Path::new("/dev/tty")))?;
        let saved = stty_saved_modes(&tty);
        let off = EchoOff { tty, saved };
        if !stty(&off.tty, &["-echo", "-isig", "-icanon", "min", "1", "time", "0"]) {
            // `off` drops here and puts the modes back.
            return Err(CliError::Usage("cannot turn off terminal echo (stty failed); use --passphrase-file".into()));
        }
        Ok(off)
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        let restored = match &self.saved {
            Some(saved) => stty(&self.tty, &[saved.as_str()]),
            None => false,
        };
        if !restored {
            let _ = stty(&self.tty, &["echo", "isig", "icanon"]);
        }
    }
}

/// The terminal's modes in `stty -g`'s form, which `stty` takes back as one argument; `None`
/// if stty failed or printed something that is not of that form (letters, digits, colons and
/// equals signs: GNU stty prints hex digits and colons, BSD stty `name=value` pairs; a few
/// hundred bytes).
fn stty_saved_modes(tty: &File) -> Option<String> {
    let input = tty.try_clone().ok()?;
    let out = stty_command(&["-g"]).stdin(Stdio::from(input)).stdout(Stdio::piped()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = std::str::from_utf8(&out.stdout).ok()?.trim();
    saved_modes_form(text).then(|| text.to_owned())
}

/// Whether `text` has the form of `stty -g`'s output, so that passing it back as an argument
/// cannot be taken for another option.
fn saved_modes_form(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 4096
        && !text.starts_with('-')
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'=')
}

/// The bytes the terminal's signal keys send (^C, ^\, ^Z), read as a cancel at a prompt.
const CANCEL_KEYS: [u8; 3] = [0x03, 0x1c, 0x1a];
/// Erase (DEL, ^H), kill (^U) and end of input (^D), done by `read_hidden`.
const ERASE_KEYS: [u8; 2] = [0x7f, 0x08];
const KILL_KEY: u8 = 0x15;
const EOF_KEY: u8 = 0x04;

fn stty(tty: &File, args: &[&str]) -> bool {
    let Ok(input) = tty.try_clone() else {
        return false;
    };
    stty_command(args).stdin(Stdio::from(input)).stdout(Stdio::null()).status().map(|s| s.success()).unwrap_or(false)
}

/// `stty args`, run without our environment: a passphrase there would sit in the child's,
/// which other processes of the user can read (the child is dumpable again after exec).
fn stty_command(args: &[&str]) -> Command {
    let mut command = Command::new("stty");
    command.args(args).env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).stderr(Stdio::null());
    command
}

/// Reads one line from the terminal with echo off.
fn read_hidden(tty: &mut File, label: &str) -> Result<Passphrase, CliError> {
    let tty_path = Path::new("/dev/tty");
    // Echo off before the prompt shows: keys typed as soon as it does are neither echoed nor
    // taken by the terminal as signals.
    let echo = EchoOff::new(tty)?;
    tty.write_all(label.as_bytes()).map_err(|e| CliError::io(e, tty_path))?;
    tty.flush().map_err(|e| CliError::io(e, tty_path))?;
    let mut line: Vec<u8> = Vec::with_capacity(1024);
    let mut byte = [0u8; 1];
    loop {
        match tty.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' || byte[0] == b'\r' || byte[0] == EOF_KEY => break,
            Ok(_) if ERASE_KEYS.contains(&byte[0]) => {
                // One character: its UTF-8 continuation bytes, then its first.
                while line.last().is_some_and(|b| b & 0xC0 == 0x80) {
                    line.pop();
                }
                line.pop();
            }
            Ok(_) if byte[0] == KILL_KEY => line.clear(),
            Ok(_) if CANCEL_KEYS.contains(&byte[0]) => {
                drop(echo);
                let _ = Zeroizing::new(line);
                let _ = tty.write_all(b"\n");
                return Err(CliError::Usage("cancelled at the passphrase prompt".into()));
            }
            Ok(_) if line.len() as u64 >= MAX_SECRET_FILE => {
                drop(echo);
                let _ = Zeroizing::new(line);
                return Err(CliError::Usage(format!("the passphrase is longer than {MAX_SECRET_FILE} bytes")));
            }
            Ok(_) => {
                if line.len() == line.capacity() {
                    // Grow by hand so the old buffer is wiped, not just freed.
                    let mut bigger = Vec::with_capacity(line.capacity() * 2);
                    bigger.extend_from_slice(&line);
                    let _ = Zeroizing::new(std::mem::replace(&mut line, bigger));
                }
                line.push(byte[0]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = Zeroizing::new(line);
                return Err(CliError::io(e, tty_path));
            }
        }
    }
    drop(echo);
    let _ = tty.write_all(b"\n");
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Passphrase::new(line))
}

fn ask_passphrase(confirm: bool) -> Result<Passphrase, CliError> {
    let mut tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| CliError::io(e, Path::new("/dev/tty")))?;
    let first = read_hidden(&mut tty, if confirm { "New passphrase: " } else { "Passphrase: " })?;
    if first.0.is_empty() {
        return Err(CliError::Usage("the passphrase is empty".into()));
    }
    if confirm {
        let again = read_hidden(&mut tty, "Repeat passphrase: ")?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&first.0[..], &again.0[..])) {
            return Err(CliError::Usage("the passphrases differ".into()));
        }
    }
    Ok(first)
}
