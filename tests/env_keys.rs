//! The library's keys from the environment (`FOLDVAULT_KEY_FILE`, `FOLDVAULT_PASSPHRASE`):
//! the same rules as the command line's key files (private, bounded), and an empty variable
//! counts as unset.
//!
//! Rust 2024 makes `set_var` unsafe and the crate has no `unsafe` outside its mapping module,
//! so each case runs this test binary again as a child with the variables set: the child runs
//! `child_opens_with_the_environment`, which opens the database and prints one `outcome=` line.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use foldvault::{Config, Credentials, Error, KdfParams, MasterKey};

const CHILD: &str = "FOLDVAULT_TEST_ENV_CHILD";

/// Runs in the child only: opens the directory named by `CHILD` with the environment's keys.
#[test]
fn child_opens_with_the_environment() {
    let Some(dir) = std::env::var_os(CHILD) else { return };
    let outcome = match Config::new().path(&dir).kdf(KdfParams::insecure_fast()).open() {
        Ok(db) => {
            db.insert("k", &b"v"[..]).unwrap();
            db.flush().unwrap();
            format!("ok encrypted={}", db.encryption_status().encrypted)
        }
        // Whether the message names the variable the key file came from.
        Err(Error::Io(e)) => {
            format!("io {:?}{}", e.kind(), if e.to_string().contains("FOLDVAULT_KEY_FILE") { " named" } else { "" })
        }
        Err(Error::InvalidConfig(m)) => format!("invalid-config {m}"),
        Err(Error::WrongKey { .. }) => "wrong-key".to_string(),
        Err(e) => format!("other {e}"),
    };
    println!("\noutcome={outcome}");
}

/// Opens a fresh database directory under `tmp` in a child with `vars` set (and every other
/// foldvault variable removed); returns the child's outcome line.
fn open_in_child(dir: &Path, vars: &[(&str, &std::ffi::OsStr)]) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["child_opens_with_the_environment", "--exact", "--nocapture", "--test-threads=1"]);
    for v in ["FOLDVAULT_KEY_FILE", "FOLDVAULT_PASSPHRASE", "FOLDVAULT_ALLOW_SHARED_KEY_FILES"] {
        cmd.env_remove(v);
    }
    cmd.env(CHILD, dir);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout.lines().find_map(|l| l.strip_prefix("outcome=")).unwrap_or("none").to_string()
}

fn key_file(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

#[test]
fn the_environment_key_file_is_read_as_the_command_line_reads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let private = key_file(tmp.path(), "private.key", &[5u8; 32], 0o600);
    let shared = key_file(tmp.path(), "shared.key", &[5u8; 32], 0o644);
    let huge = key_file(tmp.path(), "huge.key", &vec![b'a'; 64 * 1024 + 1], 0o600);

    // A key file others can read is refused, unless the environment allows it.
    let db = tmp.path().join("shared");
    assert_eq!(open_in_child(&db, &[("FOLDVAULT_KEY_FILE", shared.as_os_str())]), "io PermissionDenied named");
    assert!(!db.join("db.foldvault").exists(), "nothing was created with a refused key");
    let allow = std::ffi::OsStr::new("1");
    let vars = [("FOLDVAULT_KEY_FILE", shared.as_os_str()), ("FOLDVAULT_ALLOW_SHARED_KEY_FILES", allow)];
    assert_eq!(open_in_child(&db, &vars), "ok encrypted=true");

    // A key file that is missing, or a directory, fails naming the variable (a bare "No such
    // file or directory" read as the database missing).
    let db = tmp.path().join("missing");
    let missing = tmp.path().join("missing.key");
    assert_eq!(open_in_child(&db, &[("FOLDVAULT_KEY_FILE", missing.as_os_str())]), "io NotFound named");
    assert_eq!(open_in_child(&db, &[("FOLDVAULT_KEY_FILE", tmp.path().as_os_str())]), "io IsADirectory named");
    assert!(!db.join("db.foldvault").exists(), "nothing was created with a key file that does not read");

    // More than 64 KiB is refused before it is parsed.
    let db = tmp.path().join("huge");
    let outcome = open_in_child(&db, &[("FOLDVAULT_KEY_FILE", huge.as_os_str())]);
    assert!(outcome.starts_with("invalid-config"), "{outcome}");

    // A private key file creates an encrypted database that the same key opens from code,
    // and nothing else opens.
    let db = tmp.path().join("private");
    assert_eq!(open_in_child(&db, &[("FOLDVAULT_KEY_FILE", private.as_os_str())]), "ok encrypted=true");
    let fast = KdfParams::insecure_fast();
    let cfg = Config::new().path(&db).kdf(fast).use_env(false);
    assert!(matches!(cfg.clone().open(), Err(Error::WrongKey { .. })));
    let opened = cfg.credentials(Credentials::master_key(MasterKey::from_bytes([5u8; 32]))).open().unwrap();
    assert_eq!(opened.get("k").unwrap().unwrap(), &b"v"[..]);
}

#[test]
fn an_empty_environment_variable_is_unset() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = std::ffi::OsStr::new("");
    let db = tmp.path().join("empty");
    let vars = [("FOLDVAULT_PASSPHRASE", empty), ("FOLDVAULT_KEY_FILE", empty)];
    assert_eq!(open_in_child(&db, &vars), "ok encrypted=false", "no key: plaintext, not a key anyone derives");
    let db = tmp.path().join("passphrase");
    let pw = std::ffi::OsStr::new("from the environment");
    assert_eq!(open_in_child(&db, &[("FOLDVAULT_PASSPHRASE", pw)]), "ok encrypted=true");
    let cfg = Config::new().path(&db).kdf(KdfParams::insecure_fast()).use_env(false);
    assert!(cfg.passphrase("from the environment").open().is_ok());
}
