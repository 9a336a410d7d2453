//! The command-line tests' shared rig: a temporary directory with a passphrase file and a key
//! file, the binaries run as an operator would, and a check of every run's output for a key or
//! passphrase. Included by `tests/cli*.rs` (`#[path]`), each of which uses part of it.
#![allow(dead_code)]
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};

pub const PASS: &str = "pass-Zq8-correct-horse-battery-7d1f";
/// The passphrase `passwd` and `slots add-passphrase` set in these tests.
pub const NEW_PASS: &str = "new-pass-Vk3-staple-orbit-51c9";
pub const FAST_KDF: [&str; 4] = ["--kdf-memory-mib", "1", "--kdf-iterations", "1"];

pub struct Out {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Out {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    #[track_caller]
    pub fn ok(self) -> Out {
        assert_eq!(self.code, 0, "stdout: {}\nstderr: {}", self.text(), self.err());
        self
    }
    #[track_caller]
    pub fn code(self, want: i32) -> Out {
        assert_eq!(self.code, want, "stdout: {}\nstderr: {}", self.text(), self.err());
        self
    }
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Writes a secret file readable by its owner only (the binaries refuse shared ones).
pub fn secret(path: &str, data: impl AsRef<[u8]>) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A temporary directory with a passphrase file and a key file.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub key_raw: [u8; 32],
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        secret(dir.path().join("pass").to_str().unwrap(), format!("{PASS}\n"));
        let mut key_raw = [0u8; 32];
        for (i, b) in key_raw.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(0x5A);
        }
        let hex: String = key_raw.iter().map(|b| format!("{b:02x}")).collect();
        secret(dir.path().join("key").to_str().unwrap(), hex);
        Env { dir, key_raw }
    }
    pub fn p(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
    pub fn pass(&self) -> String {
        self.p("pass")
    }
    pub fn key_hex(&self) -> String {
        self.key_raw.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Runs a binary with `args`, `stdin` piped in and extra environment; checks that no
    /// secret appears in its output.
    pub fn run(&self, bin: &str, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Out {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env_remove("FOLDVAULT_PASSPHRASE")
            .env_remove("FOLDVAULT_KEY_FILE")
            .env_remove("FOLDVAULT_ALLOW_SHARED_KEY_FILES")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        let o = Out { code: out.status.code().unwrap_or(-1), stdout: out.stdout, stderr: out.stderr };
        let hex = self.key_hex();
        for s in [&o.stdout, &o.stderr] {
            assert!(!contains(s, PASS.as_bytes()), "passphrase printed by {args:?}");
            assert!(!contains(s, NEW_PASS.as_bytes()), "new passphrase printed by {args:?}");
            assert!(!contains(s, hex.as_bytes()), "key printed by {args:?}");
            assert!(!contains(s, hex.to_uppercase().as_bytes()), "key printed by {args:?}");
            assert!(!contains(s, &self.key_raw), "raw key printed by {args:?}");
        }
        o
    }
    pub fn fv(&self, args: &[&str]) -> Out {
        self.run(env!("CARGO_BIN_EXE_foldvault"), args, b"", &[])
    }
    /// `fv`, retried while the answer is "locked": a lock this process just released can live on
    /// for a moment in a child another test is spawning (its copy of the descriptor lasts until
    /// it execs).
    pub fn fv_after_unlock(&self, args: &[&str]) -> Out {
        let mut o = self.fv(args);
        for _ in 0..50 {
            if o.code != 5 || !o.err().contains("locked") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            o = self.fv(args);
        }
        o
    }
    /// The exit code of `bin` with `args` writing into a pipe whose reader is gone (`| head`
    /// that has quit): every write to standard output fails.
    pub fn exit_into_closed_pipe(&self, bin: &str, args: &[&str]) -> i32 {
        Self::exit_with_a_closed_pipe(bin, args, false)
    }
    /// The same with standard *error* the closed pipe (standard output discarded).
    pub fn exit_with_stderr_closed(&self, bin: &str, args: &[&str]) -> i32 {
        Self::exit_with_a_closed_pipe(bin, args, true)
    }
    fn exit_with_a_closed_pipe(bin: &str, args: &[&str], on_stderr: bool) -> i32 {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let (out, err) = match on_stderr {
            true => (Stdio::null(), Stdio::from(writer)),
            false => (Stdio::from(writer), Stdio::null()),
        };
        let status = Command::new(bin)
            .args(args)
            .env_remove("FOLDVAULT_PASSPHRASE")
            .env_remove("FOLDVAULT_KEY_FILE")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .unwrap();
        status.code().unwrap_or(-1)
    }
    pub fn fv_in(&self, args: &[&str], stdin: &[u8]) -> Out {
        self.run(env!("CARGO_BIN_EXE_foldvault"), args, stdin, &[])
    }
    pub fn pd(&self, args: &[&str]) -> Out {
        self.run(env!("CARGO_BIN_EXE_pagedump"), args, b"", &[])
    }
    /// `init` of an encrypted database with the passphrase file and cheap KDF parameters.
    pub fn init_encrypted(&self, name: &str) -> String {
        let db = self.p(name);
        let pass = self.pass();
        let mut args = vec!["init", &db, "--passphrase-file", &pass];
        args.extend(FAST_KDF);
        self.fv(&args).ok();
        db
    }
}

pub fn flip_byte(path: &str, offset: u64) {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x01;
    f.write_all_at(&b, offset).unwrap();
}

/// True when some line of `t` is the words of `words`, however spaced.
pub fn has_line(t: &str, words: &str) -> bool {
    let want: Vec<&str> = words.split_whitespace().collect();
    t.lines().any(|l| l.split_whitespace().take(want.len() + 1).eq(want.iter().copied()))
}

/// An encrypted database with a two-level tree `t` (2000 records over many leaves) and a
/// one-record tree `other`; returns its path and the page number of a leaf of `t`.
pub fn multi_leaf_db(e: &Env, name: &str) -> (String, u64) {
    let db = e.init_encrypted(name);
    let pass = e.pass();
    let lines: String = (0..2000)
        .map(|i| format!("{{\"key\": \"k{i:05}\", \"value\": \"value number {i} with some padding to fill pages\"}}\n"))
        .collect();
    e.fv_in(&["load", &db, "t", "--passphrase-file", &pass], lines.as_bytes()).ok();
    e.fv(&["put", &db, "other", "a", "b", "--passphrase-file", &pass]).ok();
    let tree = e.pd(&[&db, "--tree", "t", "--passphrase-file", &pass]).ok().text();
    let leaves: Vec<u64> = tree
        .lines()
        .filter(|l| l.contains(" leaf, "))
        .filter_map(|l| l.trim().strip_prefix("page ")?.split(' ').next()?.parse().ok())
        .collect();
    assert!(leaves.len() > 10, "{tree}");
    (db, leaves[5])
}

/// The newest commit record's seq and catalog page, as `pagedump` shows them.
pub fn newest_catalog(e: &Env, db: &str) -> (u64, u64) {
    let pass = e.pass();
    let mut best: Option<(u64, u64)> = None;
    for page in ["2", "3"] {
        let t = e.pd(&[db, "--page", page, "--passphrase-file", &pass]).text();
        let seq = t.lines().find_map(|l| l.split_once("commit record ")?.1.split_once(", seq ")?.1.parse().ok());
        let cat = t.lines().find_map(|l| l.trim().strip_prefix("catalog page ")?.split(' ').next()?.parse().ok());
        if let (Some(seq), Some(cat)) = (seq, cat)
            && best.is_none_or(|(s, _)| seq > s)
        {
            best = Some((seq, cat));
        }
    }
    best.unwrap_or_else(|| panic!("no commit record in {db}"))
}

impl Env {
    /// A file holding `NEW_PASS`, readable by its owner only.
    pub fn new_pass(&self) -> String {
        let p = self.p("new-pass");
        secret(&p, format!("{NEW_PASS}\n"));
        p
    }
}

/// The numbers of the `slot N:` lines of `slots DB`.
pub fn slot_numbers(t: &str) -> Vec<u64> {
    t.lines().filter_map(|l| l.strip_prefix("slot ")?.split(':').next()?.parse().ok()).collect()
}

/// The value of the `key epoch:` line of `status`.
pub fn key_epoch(t: &str) -> u64 {
    t.lines()
        .find_map(|l| l.strip_prefix("key epoch:")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no key epoch line: {t}"))
}

/// JSON lines as `load` reads them (several trees, escapes, a binary value).
pub const RECORDS: &str = r#"{"tree": "schemas", "key": "b", "value": "{\"quoted\": \"json\\n\"}"}
{"tree": "metadata", "key": "node_id", "value": "é ✓ \u0001"}

{"tree_b64": "AP8=", "key": "k", "value": "binary tree name"}
{"tree": "metadata", "key_b64": "gIGC", "value_b64": "/w=="}
{"tree": "schemas", "key": "a", "value": ""}
{"tree": "__sled__default", "key": "atom:1", "value": "v1"}
"#;

impl Env {
    /// An encrypted database (passphrase `PASS`, its write-ahead log on) made through the
    /// library: `setup` runs on it, then its file and log are copied while it is open, as a
    /// crash leaves them, to `crashed`. Returns the copy's path and its log's.
    pub fn crashed_with_log(&self, setup: impl FnOnce(&foldvault::Db)) -> (String, std::path::PathBuf) {
        let (live, crashed) = (self.p("live"), self.p("crashed"));
        let db = foldvault::Config::new()
            .file(&live)
            .passphrase(PASS)
            .kdf(foldvault::KdfParams::insecure_fast())
            .use_env(false)
            .flush_every_ms(None)
            .write_ahead_log(true)
            .open()
            .unwrap();
        setup(&db);
        std::fs::copy(&live, &crashed).unwrap();
        let log = foldvault::storage::wal::sidecar_path(std::path::Path::new(&crashed));
        std::fs::copy(foldvault::storage::wal::sidecar_path(std::path::Path::new(&live)), &log).unwrap();
        drop(db);
        (crashed, log)
    }
}
