//! Key input for the command line: `--passphrase-file`, `FOLDVAULT_PASSPHRASE`, `--key-file`
//! (or `FOLDVAULT_KEY_FILE`), else a prompt without echo when standard input is a terminal.
//!
//! Layer: admin. Invariants: a key or passphrase is never taken from a plain argument, never
//! printed, and never put into an error message (errors name the *file*, not its contents);
//! file contents are read into buffers that zeroize on drop and moved, not copied, into the
//! library's key types.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use zeroize::Zeroizing;

use super::CliError;
use crate::{Credentials, ENV_KEY_FILE, ENV_PASSPHRASE, MasterKey, Passphrase};

/// Key files and passphrase files larger than this are refused (a key file is 32 or 64 bytes).
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// The key options shared by every command that may need a key.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KeyArgs {
    /// Read the passphrase from FILE (one trailing newline is dropped). Without this option
    /// and --key-file, the environment variable FOLDVAULT_PASSPHRASE is used, if set.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Read the 32-byte master key from FILE: 32 raw bytes or 64 hex characters. Without this
    /// option and --passphrase-file, the file named by FOLDVAULT_KEY_FILE is used, if set.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
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
        self.passphrase_file.is_some() || self.key_file.is_some()
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
            Some(path) => Some(Passphrase::from_file_bytes(read_secret_file(path)?)),
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
            None if !explicit => std::env::var_os(ENV_KEY_FILE).map(PathBuf::from),
            None => None,
        };
        if let Some(path) = key_path {
            let bytes = Zeroizing::new(read_secret_file(&path)?);
            let key = MasterKey::from_key_file_bytes(&bytes).map_err(|e| CliError::db(e, &path))?;
            creds = creds.with_master_key(key);
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
    std::env::var_os(ENV_PASSPHRASE).map(|v| Passphrase::new(v.into_vec()))
}

/// Reads a whole (small) secret file.
fn read_secret_file(path: &Path) -> Result<Vec<u8>, CliError> {
    let f = File::open(path).map_err(|e| CliError::io(e, path))?;
    // Sized up front so that reading never reallocates (which would leave unwiped copies).
    let mut buf = Vec::with_capacity(MAX_SECRET_FILE as usize + 1);
    f.take(MAX_SECRET_FILE + 1).read_to_end(&mut buf).map_err(|e| CliError::io(e, path))?;
    if buf.len() as u64 > MAX_SECRET_FILE {
        let _ = Zeroizing::new(buf);
        return Err(CliError::Usage(format!(
            "key or passphrase file larger than {MAX_SECRET_FILE} bytes ({})",
            path.display()
        )));
    }
    Ok(buf)
}

/// Turns terminal echo off for its lifetime (`stty -echo` on /dev/tty), back on when dropped.
struct EchoOff {
    tty: File,
}

impl EchoOff {
    fn new(tty: &File) -> Result<EchoOff, CliError> {
        let tty = tty.try_clone().map_err(|e| CliError::io(e, Path::new("/dev/tty")))?;
        let ok = stty(&tty, "-echo");
        if !ok {
            return Err(CliError::Usage("cannot turn off terminal echo (stty failed); use --passphrase-file".into()));
        }
        Ok(EchoOff { tty })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        let _ = stty(&self.tty, "echo");
    }
}

fn stty(tty: &File, arg: &str) -> bool {
    let Ok(input) = tty.try_clone() else {
        return false;
    };
    Command::new("stty")
        .arg(arg)
        .stdin(Stdio::from(input))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Reads one line from the terminal with echo off.
fn read_hidden(tty: &mut File, label: &str) -> Result<Passphrase, CliError> {
    let tty_path = Path::new("/dev/tty");
    tty.write_all(label.as_bytes()).map_err(|e| CliError::io(e, tty_path))?;
    tty.flush().map_err(|e| CliError::io(e, tty_path))?;
    let echo = EchoOff::new(tty)?;
    let mut line: Vec<u8> = Vec::with_capacity(1024);
    let mut byte = [0u8; 1];
    loop {
        match tty.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
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
