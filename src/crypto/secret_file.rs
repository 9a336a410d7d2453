//! Reading a secret file (a key file, a passphrase file): the rule on who may read it, and a
//! bounded read into a buffer that is allocated once and wiped on drop.
//!
//! Layer: crypto. Used by the library (`FOLDVAULT_KEY_FILE`) and by the command line
//! (`--key-file`, `--passphrase-file`), which words its own messages. Invariants: the checks
//! run on the open descriptor, so the file checked is the file read; a read never reallocates
//! (a reallocation would leave an unwiped copy of the secret behind); nothing read is ever put
//! in an error.

use std::fs::File;
use std::io::{self, Read};

use zeroize::Zeroizing;

/// Secret files larger than this are refused (a key file is 32 or 64 bytes).
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

/// Set to `1` to accept key and passphrase files that other users can read.
pub const ENV_ALLOW_SHARED_KEY_FILES: &str = "FOLDVAULT_ALLOW_SHARED_KEY_FILES";

/// Whether the environment allows secret files that other users can read.
pub fn shared_files_allowed() -> bool {
    std::env::var_os(ENV_ALLOW_SHARED_KEY_FILES).is_some_and(|v| v == "1")
}

/// How users other than its owner can reach the open file `f` ("readable", "writable" or
/// "accessible", with its mode bits), if they can. `None` for a private file, and for other
/// kinds than regular files and named pipes (a terminal, an anonymous pipe such as
/// `/dev/stdin` from `<(...)`: not files at rest).
pub fn exposure(f: &File) -> io::Result<Option<(&'static str, u32)>> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = f.metadata()?;
    let ft = meta.file_type();
    let mode = meta.permissions().mode();
    if !(ft.is_file() || ft.is_fifo()) || mode & 0o077 == 0 {
        return Ok(None);
    }
    let how = if mode & 0o044 != 0 {
        "readable"
    } else if mode & 0o022 != 0 {
        "writable"
    } else {
        "accessible"
    };
    Ok(Some((how, mode & 0o7777)))
}

/// Reads all of `f`, at most `MAX_SECRET_FILE` bytes (`None` if it holds more), into a buffer
/// sized once and wiped on drop.
pub fn read_bounded(f: File) -> io::Result<Option<Zeroizing<Vec<u8>>>> {
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_SECRET_FILE as usize + 1));
    f.take(MAX_SECRET_FILE + 1).read_to_end(&mut buf)?;
    Ok((buf.len() as u64 <= MAX_SECRET_FILE).then_some(buf))
}
