//! The `foldvault` and `pagedump` binaries, run as an operator would: round trips, every exit
//! code, output without a terminal, and that no command ever prints a key or passphrase (every
//! run's stdout and stderr are searched for them).

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use foldvault::storage::wal::sidecar_path;

const PASS: &str = "pass-Zq8-correct-horse-battery-7d1f";
/// The passphrase `passwd` and `slots add-passphrase` set in these tests.
const NEW_PASS: &str = "new-pass-Vk3-staple-orbit-51c9";
const FAST_KDF: [&str; 4] = ["--kdf-memory-mib", "1", "--kdf-iterations", "1"];

struct Out {
    code: i32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Out {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    #[track_caller]
    fn ok(self) -> Out {
        assert_eq!(self.code, 0, "stdout: {}\nstderr: {}", self.text(), self.err());
        self
    }
    #[track_caller]
    fn code(self, want: i32) -> Out {
        assert_eq!(self.code, want, "stdout: {}\nstderr: {}", self.text(), self.err());
        self
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Writes a secret file readable by its owner only (the binaries refuse shared ones).
fn secret(path: &str, data: impl AsRef<[u8]>) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A temporary directory with a passphrase file and a key file.
struct Env {
    dir: tempfile::TempDir,
    key_raw: [u8; 32],
}

impl Env {
    fn new() -> Env {
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
    fn p(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
    fn pass(&self) -> String {
        self.p("pass")
    }
    fn key_hex(&self) -> String {
        self.key_raw.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Runs a binary with `args`, `stdin` piped in and extra environment; checks that no
    /// secret appears in its output.
    fn run(&self, bin: &str, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Out {
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
    fn fv(&self, args: &[&str]) -> Out {
        self.run(env!("CARGO_BIN_EXE_foldvault"), args, b"", &[])
    }
    /// `fv`, retried while the answer is "locked": a lock this process just released can live on
    /// for a moment in a child another test is spawning (its copy of the descriptor lasts until
    /// it execs).
    fn fv_after_unlock(&self, args: &[&str]) -> Out {
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
    fn exit_into_closed_pipe(&self, bin: &str, args: &[&str]) -> i32 {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let status = Command::new(bin)
            .args(args)
            .env_remove("FOLDVAULT_PASSPHRASE")
            .env_remove("FOLDVAULT_KEY_FILE")
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        status.code().unwrap_or(-1)
    }
    fn fv_in(&self, args: &[&str], stdin: &[u8]) -> Out {
        self.run(env!("CARGO_BIN_EXE_foldvault"), args, stdin, &[])
    }
    fn pd(&self, args: &[&str]) -> Out {
        self.run(env!("CARGO_BIN_EXE_pagedump"), args, b"", &[])
    }
    /// `init` of an encrypted database with the passphrase file and cheap KDF parameters.
    fn init_encrypted(&self, name: &str) -> String {
        let db = self.p(name);
        let pass = self.pass();
        let mut args = vec!["init", &db, "--passphrase-file", &pass];
        args.extend(FAST_KDF);
        self.fv(&args).ok();
        db
    }
}

fn flip_byte(path: &str, offset: u64) {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x01;
    f.write_all_at(&b, offset).unwrap();
}

#[test]
fn init_encrypted_and_plaintext() {
    let e = Env::new();
    let enc = e.init_encrypted("enc.db");
    let s = e.fv(&["status", &enc]).ok().text();
    assert!(s.contains("encryption:      encrypted") && s.contains("aes-256-gcm"), "{s}");
    assert!(s.contains("passphrase (argon2id: 1024 KiB, 1 passes"), "{s}");
    // Initialising again refuses to overwrite.
    let pass = e.pass();
    e.fv(&["init", &enc, "--passphrase-file", &pass]).code(2);

    // ChaCha20-Poly1305 works when built in, else it is refused without leaving a file.
    let cc = e.p("chacha.db");
    let mut args = vec!["init", &cc, "--cipher", "chacha20-poly1305", "--passphrase-file", &pass];
    args.extend(FAST_KDF);
    let o = e.fv(&args);
    if o.code == 0 {
        assert!(e.fv(&["status", &cc]).ok().text().contains("chacha20-poly1305"));
    } else {
        assert_eq!(o.code, 2, "{}", o.err());
        assert!(!Path::new(&cc).exists());
    }

    let plain = e.p("plain.db");
    e.fv(&["init", &plain, "--plaintext"]).ok();
    let s = e.fv(&["status", &plain]).ok().text();
    assert!(s.contains("plaintext") && s.contains("__sled__default"), "{s}");

    // A directory is a sled-style database directory.
    let dir = e.p("dirdb");
    std::fs::create_dir(&dir).unwrap();
    e.fv(&["init", &dir, "--plaintext"]).ok();
    assert!(Path::new(&dir).join("db.foldvault").exists());
    e.fv(&["put", &dir, "t", "k", "v"]).ok();
    assert_eq!(e.fv(&["get", &dir, "t", "k"]).ok().stdout, b"v");
}

#[test]
fn put_get_del_scan_round_trip() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    let k = ["--passphrase-file", pass.as_str()];
    let with = |args: &[&str]| -> Vec<String> { args.iter().chain(k.iter()).map(|s| s.to_string()).collect() };
    let run = |args: &[&str]| {
        let v = with(args);
        e.fv(&v.iter().map(String::as_str).collect::<Vec<_>>())
    };
    run(&["put", &db, "metadata", "node_id", "abc"]).ok();
    run(&["put", &db, "metadata", "name", "x\ty"]).ok();
    let binary: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let v = with(&["put", &db, "metadata", "blob", "-"]);
    e.fv_in(&v.iter().map(String::as_str).collect::<Vec<_>>(), &binary).ok();

    assert_eq!(run(&["get", &db, "metadata", "node_id"]).ok().stdout, b"abc");
    assert_eq!(run(&["get", &db, "metadata", "blob"]).ok().stdout, binary);
    run(&["get", &db, "metadata", "missing"]).code(1);
    run(&["get", &db, "no-such-tree", "node_id"]).code(1);

    let scan = run(&["scan", &db, "metadata"]).ok().text();
    let lines: Vec<&str> = scan.lines().collect();
    assert_eq!(lines.len(), 3, "{scan}");
    assert!(lines[0].starts_with("blob\t") && lines[1] == "name\tx\\ty" && lines[2] == "node_id\tabc", "{scan}");
    let prefixed = run(&["scan", &db, "metadata", "--prefix", "n"]).ok().text();
    assert_eq!(prefixed.lines().count(), 2);
    let json = run(&["scan", &db, "metadata", "--prefix", "node", "--json"]).ok().text();
    assert_eq!(json, "{\"key\": \"node_id\", \"value\": \"abc\"}\n");
    assert_eq!(run(&["scan", &db, "no-such-tree"]).ok().stdout, b"");

    run(&["del", &db, "metadata", "node_id"]).ok();
    run(&["del", &db, "metadata", "node_id"]).ok();
    run(&["get", &db, "metadata", "node_id"]).code(1);
    assert_eq!(run(&["get", &db, "metadata", "name"]).ok().stdout, b"x\ty");
}

const RECORDS: &str = r#"{"tree": "schemas", "key": "b", "value": "{\"quoted\": \"json\\n\"}"}
{"tree": "metadata", "key": "node_id", "value": "é ✓ \u0001"}

{"tree_b64": "AP8=", "key": "k", "value": "binary tree name"}
{"tree": "metadata", "key_b64": "gIGC", "value_b64": "/w=="}
{"tree": "schemas", "key": "a", "value": ""}
{"tree": "__sled__default", "key": "atom:1", "value": "v1"}
"#;

#[test]
fn load_and_dump_round_trip_is_byte_identical() {
    let e = Env::new();
    let db = e.init_encrypted("a.db");
    let pass = e.pass();
    e.fv_in(&["load", &db, "--passphrase-file", &pass], RECORDS.as_bytes()).ok();
    let dump1 = e.fv(&["dump", &db, "--passphrase-file", &pass]).ok().stdout;
    let text = String::from_utf8(dump1.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    // Trees in name order (bytes), keys in key order; non-UTF-8 as _b64.
    assert!(lines[0].starts_with(r#"{"tree_b64": "AP8=""#), "{text}");
    assert!(lines[1].starts_with(r#"{"tree": "__sled__default""#), "{text}");
    assert_eq!(lines[2], r#"{"tree": "metadata", "key": "node_id", "value": "é ✓ \u0001"}"#);
    assert_eq!(lines[3], r#"{"tree": "metadata", "key_b64": "gIGC", "value_b64": "/w=="}"#);
    assert_eq!(lines[4], r#"{"tree": "schemas", "key": "a", "value": ""}"#);
    assert_eq!(lines[5], r#"{"tree": "schemas", "key": "b", "value": "{\"quoted\": \"json\\n\"}"}"#);
    assert_eq!(
        e.fv(&["get", &db, "schemas", "b", "--passphrase-file", &pass]).ok().stdout,
        b"{\"quoted\": \"json\\n\"}"
    );

    // Into a plaintext database, committing every two lines, and back out: identical bytes.
    let b = e.p("b.db");
    e.fv(&["init", &b, "--plaintext"]).ok();
    e.fv_in(&["load", &b, "--batch", "2"], &dump1).ok();
    assert_eq!(e.fv(&["dump", &b]).ok().stdout, dump1);

    // Into a database unlocked by a key file.
    let c = e.p("c.db");
    let key = e.p("key");
    e.fv(&["init", &c, "--key-file", &key]).ok();
    e.fv_in(&["load", &c, "--key-file", &key], &dump1).ok();
    assert_eq!(e.fv(&["dump", &c, "--key-file", &key]).ok().stdout, dump1);

    // One tree only, and loading it into a named tree.
    let only = e.fv(&["dump", &b, "--tree", "schemas"]).ok().text();
    assert_eq!(only.lines().count(), 2);
    e.fv_in(&["load", &b, "copy"], only.as_bytes()).ok();
    assert_eq!(e.fv(&["get", &b, "copy", "a"]).ok().stdout, b"");
    e.fv(&["get", &b, "copy", "b"]).ok();
}

#[test]
fn load_is_one_transaction_and_rejects_bad_lines() {
    let e = Env::new();
    let db = e.p("db");
    e.fv(&["init", &db, "--plaintext"]).ok();
    let input =
        "{\"key\": \"k1\", \"value\": \"v\"}\n{\"key\": \"k2\", \"value\": \"v\"}\n{\"key\": \"k3\", \"value\": 5}\n";
    let o = e.fv_in(&["load", &db, "t"], input.as_bytes()).code(2);
    assert!(o.err().contains("line 3"), "{}", o.err());
    e.fv(&["get", &db, "t", "k1"]).code(1);
    // The engine's reserved tree names are refused.
    e.fv_in(&["load", &db], b"{\"tree\": \"\\u0000foldvault.ids\", \"key\": \"k\", \"value\": \"v\"}\n").code(2);
    // No tree named anywhere.
    e.fv_in(&["load", &db], b"{\"key\": \"k\", \"value\": \"v\"}\n").code(2);
    // Hostile bytes: errors, never a crash.
    for bad in [
        &b"\xff\xfe{"[..],
        b"{\"key\": \"\\ud800\", \"value\": \"\"}",
        b"[[[[[[",
        b"{\"key_b64\": \"!!\", \"value\": \"\"}",
    ] {
        e.fv_in(&["load", &db, "t"], bad).code(2);
    }
    // With --batch, the batches before a bad line stay committed.
    let o = e.fv_in(&["load", &db, "t", "--batch", "1"], input.as_bytes()).code(2);
    assert!(o.err().contains("2 records before it were committed"), "{}", o.err());
    e.fv(&["get", &db, "t", "k2"]).ok();
    // A line longer than the limit is refused once the limit is read (input without a line
    // end never fills memory); a record the database refuses names its line too.
    let long = format!("{{\"key\": \"k4\", \"value\": \"{}\"}}\n", "x".repeat(200));
    let o = e.fv_in(&["load", &db, "t", "--max-line-bytes", "100"], long.as_bytes()).code(2);
    assert!(o.err().contains("line 1, longer than 100 bytes"), "{}", o.err());
    e.fv_in(&["load", &db, "t", "--max-line-bytes", "300"], long.as_bytes()).ok();
    e.fv_in(&["load", &db, "t", "--max-line-bytes", "100"], &vec![0u8; 1 << 20]).code(2);
    let big_key =
        format!("{{\"key\": \"k5\", \"value\": \"v\"}}\n{{\"key\": \"{}\", \"value\": \"v\"}}\n", "k".repeat(2000));
    let o = e.fv_in(&["load", &db, "t", "--batch", "1"], big_key.as_bytes()).code(2);
    assert!(o.err().contains("line 2") && o.err().contains("1 records before it were committed"), "{}", o.err());
}

#[test]
fn every_exit_code() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    // 0 and 1
    e.fv(&["put", &db, "t", "k", "v", "--passphrase-file", &pass]).ok();
    e.fv(&["get", &db, "t", "nope", "--passphrase-file", &pass]).code(1);
    // 2: usage errors, refusals, encrypted init without a key
    e.fv(&[]).code(2);
    e.fv(&["get", &db]).code(2);
    e.fv(&["frobnicate"]).code(2);
    e.fv(&["put", &db, "t", "k", "v", "--passphrase", PASS]).code(2);
    let other = e.p("other");
    e.fv(&["slots", &db, "remove", "0", "--passphrase-file", &pass]).code(2);
    e.fv(&["passwd", &db, "--passphrase-file", &pass]).code(2);
    e.fv(&["encrypt", &db]).code(2);
    e.fv(&["decrypt", &db, &other]).code(2);
    assert!(!Path::new(&other).exists());
    e.fv(&["init", &e.p("nokey.db")]).code(2);
    // 3: wrong passphrase, or none
    let wrong = e.p("wrong");
    secret(&wrong, "not the passphrase");
    let o = e.fv(&["get", &db, "t", "k", "--passphrase-file", &wrong]).code(3);
    assert!(o.err().starts_with("foldvault: wrong key or passphrase"), "{}", o.err());
    assert_eq!(o.err().lines().count(), 1);
    e.fv(&["get", &db, "t", "k"]).code(3);
    let key = e.p("key");
    e.fv(&["get", &db, "t", "k", "--key-file", &key]).code(3);
    // 5: a path in a directory that does not exist, and a locked file
    let o = e.fv(&["init", "/nonexistent-dir-foldvault/x.db", "--plaintext"]).code(5);
    assert!(o.err().contains("No such file or directory"), "{}", o.err());
    e.fv(&["get", "/nonexistent-dir-foldvault/x.db", "t", "k"]).code(5);
    {
        let _held =
            foldvault::Config::new().file(&db).passphrase(PASS).use_env(false).flush_every_ms(None).open().unwrap();
        let o = e.fv(&["get", &db, "t", "k", "--passphrase-file", &pass]).code(5);
        assert!(o.err().contains("locked"), "{}", o.err());
    }
    e.fv_after_unlock(&["get", &db, "t", "k", "--passphrase-file", &pass]).ok();
}

#[test]
fn corruption_exits_4() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    let lines: String = (0..10).map(|i| format!("{{\"key\": \"k{i}\", \"value\": \"value {i}\"}}\n")).collect();
    e.fv_in(&["load", &db, "t", "--passphrase-file", &pass], lines.as_bytes()).ok();
    e.fv(&["put", &db, "other", "a", "b", "--passphrase-file", &pass]).ok();
    flip_byte(&db, 4 * 4096 + 100);
    let o = e.fv(&["get", &db, "t", "k1", "--passphrase-file", &pass]).code(4);
    assert!(o.err().contains("corrupt page 4"), "{}", o.err());
    e.fv(&["scan", &db, "t", "--passphrase-file", &pass]).code(4);
    e.fv(&["dump", &db, "--passphrase-file", &pass]).code(4);
    // pagedump reports the page and goes on.
    let o = e.pd(&[&db, "--all", "--passphrase-file", &pass]).code(4);
    assert!(o.text().contains("page 4: FAILS TO OPEN") && o.text().contains("page 5:"), "{}", o.text());

    // A larger tree: the damaged leaf is found when it is read, not at open.
    let big = e.p("big");
    e.fv(&["init", &big, "--plaintext"]).ok();
    let lines: String =
        (0..500).map(|i| format!("{{\"key\": \"k{i:04}\", \"value\": \"value number {i} with padding\"}}\n")).collect();
    e.fv_in(&["load", &big, "t"], lines.as_bytes()).ok();
    e.fv(&["put", &big, "other", "a", "b"]).ok();
    flip_byte(&big, 4 * 4096 + 100);
    e.fv(&["get", &big, "other", "a"]).ok();
    e.fv(&["scan", &big, "t"]).code(4);

    // A log beside a file that belongs to another database file.
    let (clean, other) = (e.p("clean"), e.p("other"));
    e.fv(&["init", &clean, "--plaintext"]).ok();
    let odb = foldvault::Config::new().file(&other).plaintext().use_env(false).open().unwrap();
    let tx = odb.begin_write().unwrap();
    tx.open_tree("t").unwrap().insert("k", "v").unwrap();
    tx.set_durability(foldvault::Durability::Immediate);
    tx.commit().unwrap();
    std::fs::copy(sidecar_path(Path::new(&other)), sidecar_path(Path::new(&clean))).unwrap();
    drop(odb);
    let o = e.fv(&["get", &clean, "t", "k"]).code(4);
    assert!(o.err().contains("another database file"), "{}", o.err());

    // Not a database at all.
    let junk = e.p("junk");
    std::fs::write(&junk, vec![7u8; 9000]).unwrap();
    e.fv(&["status", &junk]).code(4);
    e.fv(&["get", &junk, "t", "k"]).code(4);
}

#[test]
fn no_progress_output_without_a_terminal() {
    let e = Env::new();
    let db = e.p("db");
    e.fv(&["init", &db, "--plaintext"]).ok();
    let lines: String = (0..3000).map(|i| format!("{{\"key\": \"k{i}\", \"value\": \"v{i}\"}}\n")).collect();
    let o = e.fv_in(&["load", &db, "t"], lines.as_bytes()).ok();
    assert!(o.stderr.is_empty(), "{}", o.err());
    assert!(!contains(&o.stdout, b"\r") && !contains(&o.stdout, b"\x1b["));
    let o = e.fv(&["demo", &e.p("demo"), "--records", "20"]).ok();
    assert!(o.stderr.is_empty(), "{}", o.err());
    assert!(!contains(&o.stdout, b"\r") && !contains(&o.stdout, b"\x1b["));
}

#[test]
fn status_without_key_reads_only_the_header() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    e.fv(&["put", &db, "secret-tree", "k", "secret-value", "--passphrase-file", &pass]).ok();
    let o = e.fv(&["status", &db]).ok();
    let t = o.text();
    assert!(t.contains("encrypted") && t.contains("slot 0: passphrase") && t.contains("pages)"), "{t}");
    assert!(!t.contains("secret-tree") && !t.contains("secret-value"), "{t}");
    let j = e.fv(&["status", &db, "--json"]).ok().text();
    assert!(j.starts_with('{') && j.trim_end().ends_with('}') && j.lines().count() == 1, "{j}");
    assert!(
        j.contains("\"encrypted\": true") && j.contains("\"opened\": false") && j.contains("\"memory_kib\": 1024"),
        "{j}"
    );
    assert!(!j.contains("secret-tree"));
    assert!(t.contains("write-ahead log: none") && j.contains("\"write_ahead_log\": false"), "{t}\n{j}");
    // A log beside the file, as a crash leaves one (this one holds nothing): named, with its size.
    std::fs::write(format!("{db}.fvwal"), vec![0u8; 8192]).unwrap();
    let t = e.fv(&["status", &db]).ok().text();
    assert!(t.contains("write-ahead log: 8192 bytes beside the file"), "{t}");
    let j = e.fv(&["status", &db, "--json"]).ok().text();
    assert!(j.contains("\"write_ahead_log\": true") && j.contains("\"write_ahead_log_size\": 8192"), "{j}");
    // With the key: trees, counts, commit sequence, epoch.
    let t = e.fv(&["status", &db, "--passphrase-file", &pass]).ok().text();
    assert!(t.contains("secret-tree  1 records") && t.contains("commit sequence:") && t.contains("key epoch:"), "{t}");
    let j = e.fv(&["status", &db, "--json", "--passphrase-file", &pass]).ok().text();
    assert!(j.contains("{\"name\": \"secret-tree\", \"records\": 1}") && j.contains("\"commit_seq\": "), "{j}");
    // That open was read-only: the log is left as it was, for the next read-write open.
    assert_eq!(std::fs::read(format!("{db}.fvwal")).unwrap(), vec![0u8; 8192]);
    // With a wrong key: the header, then exit 3.
    let wrong = e.p("wrong");
    secret(&wrong, "nope");
    let o = e.fv(&["status", &db, "--passphrase-file", &wrong]).code(3);
    assert!(o.text().contains("encrypted"));
    // stats after opening.
    let s = e.fv(&["stats", &db, "--json", "--passphrase-file", &pass]).ok().text();
    assert!(s.contains("\"pages_opened\": ") && s.contains("\"key_epoch\": 0"), "{s}");
}

#[test]
fn pagedump_with_and_without_key() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    e.fv(&["put", &db, "metadata", "visible-key", "visible-value", "--passphrase-file", &pass]).ok();
    let o = e.pd(&[&db, "--all"]).ok();
    let t = o.text();
    assert!(t.contains("page 4: data page, sealed") && t.contains("trailer: tag "), "{t}");
    assert!(!t.contains("visible-key") && !t.contains("visible-value") && !t.contains("metadata"), "{t}");
    assert!(!o.err().contains("left by a crash"), "{}", o.err());
    // A log beside the file (as a crash leaves one): the raw dump says the file lacks it.
    let log = format!("{db}.fvwal");
    std::fs::write(&log, vec![0u8; 8192]).unwrap();
    let o = e.pd(&[&db]).ok();
    assert!(o.err().contains(".fvwal exists (left by a crash)"), "{}", o.err());
    std::fs::remove_file(&log).unwrap();
    let o = e.pd(&[&db, "--all", "--passphrase-file", &pass]).ok();
    let t = o.text();
    assert!(t.contains("\"visible-key\" = \"visible-value\"") && t.contains("commit record A"), "{t}");
    let j = e.pd(&[&db, "--page", "4", "--json", "--passphrase-file", &pass]).ok().text();
    assert!(j.lines().all(|l| l.starts_with('{') && l.ends_with('}')), "{j}");
    assert!(j.contains("\"key\": \"visible-key\""), "{j}");
    let tree = e.pd(&[&db, "--tree", "metadata", "--passphrase-file", &pass]).ok().text();
    assert!(tree.contains("level 0: 1 pages") && tree.contains("leaf, 1 entries"), "{tree}");
    e.pd(&[&db, "--tree", "metadata"]).code(3);
    e.pd(&[&db, "--tree", "missing", "--passphrase-file", &pass]).code(1);
    // A plaintext file decodes without a key.
    let plain = e.p("plain");
    e.fv(&["init", &plain, "--plaintext"]).ok();
    e.fv(&["put", &plain, "t", "hello", "world"]).ok();
    assert!(e.pd(&[&plain, "--all"]).ok().text().contains("\"hello\" = \"world\""));
    // A page past the end, or one whose offset would overflow, is a usage error, not damage.
    e.pd(&[&plain, "--page", "99"]).code(2);
    e.pd(&[&plain, "--page", "18446744073709551615"]).code(2);
    // The environment's key is not read: its output would show decrypted records.
    let o = e.run(env!("CARGO_BIN_EXE_pagedump"), &[&db, "--all"], b"", &[("FOLDVAULT_PASSPHRASE", PASS)]).ok().text();
    assert!(!o.contains("visible-value"), "{o}");
    // A version-1 file (tests/data, made by tests/format_versions.rs) opens page by page: the
    // version is bound into every page's seal.
    let v1 = e.p("v1.foldvault");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/v1.foldvault"), &v1).unwrap();
    let v1_pass = e.p("v1-pass");
    secret(&v1_pass, "foldvault v1 fixture");
    assert!(!e.pd(&[&v1, "--all", "--passphrase-file", &v1_pass]).ok().text().contains("FAILS TO OPEN"));
}

#[test]
fn key_file_and_environment() {
    let e = Env::new();
    let db = e.p("db");
    let key = e.p("key");
    e.fv(&["init", &db, "--key-file", &key]).ok();
    e.fv(&["put", &db, "t", "k", "v", "--key-file", &key]).ok();
    let bin = env!("CARGO_BIN_EXE_foldvault");
    assert_eq!(e.run(bin, &["get", &db, "t", "k"], b"", &[("FOLDVAULT_KEY_FILE", &key)]).ok().stdout, b"v");
    let raw = e.p("raw-key");
    secret(&raw, e.key_raw);
    assert_eq!(e.fv(&["get", &db, "t", "k", "--key-file", &raw]).ok().stdout, b"v");
    // A malformed key file is a usage error that does not echo the file.
    let bad = e.p("bad-key");
    secret(&bad, "zz");
    e.fv(&["get", &db, "t", "k", "--key-file", &bad]).code(2);

    let db2 = e.p("db2");
    let mut args = vec!["init", &db2];
    args.extend(FAST_KDF);
    e.run(bin, &args, b"", &[("FOLDVAULT_PASSPHRASE", PASS)]).ok();
    e.run(bin, &["put", &db2, "t", "k", "v"], b"", &[("FOLDVAULT_PASSPHRASE", PASS)]).ok();
    e.fv(&["get", &db2, "t", "k"]).code(3);
    // An explicit option wins over the environment: a key-file init makes a master-key slot.
    let db3 = e.p("db3");
    e.run(bin, &["init", &db3, "--key-file", &key], b"", &[("FOLDVAULT_PASSPHRASE", PASS)]).ok();
    let s = e.fv(&["status", &db3]).ok().text();
    assert!(s.contains("slot 0: master-key\n"), "{s}");
    assert_eq!(e.fv(&["get", &db2, "t", "k", "--passphrase-file", &e.pass()]).ok().stdout, b"v");
    // Regression: an empty variable counted as a key ("the passphrase is empty", or a key
    // file named ""), as `VAR=${UNSET}` in a compose file makes; it counts as unset.
    let empty = [("FOLDVAULT_PASSPHRASE", ""), ("FOLDVAULT_KEY_FILE", "")];
    assert_eq!(e.run(bin, &["get", &db, "t", "k", "--key-file", &key], b"", &empty[..1]).ok().stdout, b"v");
    assert_eq!(e.run(bin, &["get", &db, "t", "k"], b"", &[empty[0], ("FOLDVAULT_KEY_FILE", &key)]).ok().stdout, b"v");
    e.run(bin, &["get", &db, "t", "k"], b"", &empty).code(3);
}

#[test]
fn demo_shows_no_record_in_the_file() {
    let e = Env::new();
    let dir = e.p("demo");
    let t = e.fv(&["demo", &dir, "--records", "50"]).ok().text();
    assert!(t.contains("marker: found 0 times"), "{t}");
    assert!(t.contains("ratio encrypted / plaintext:"), "{t}");
    assert!(t.contains("verify without key: ") && t.contains("verify with key: "), "{t}");
    assert!(t.contains("records of the restored database equal the original") && t.contains("MB/s"), "{t}");
    assert!(PathBuf::from(&dir).join("demo.backup").exists());
    assert!(t.contains("metadata") && t.contains("schema_states"), "{t}");
    assert!(PathBuf::from(&dir).join("demo.foldvault").exists());
    // Running again into the same directory refuses to overwrite.
    e.fv(&["demo", &dir, "--records", "5"]).code(2);
}

#[test]
fn help_documents_exit_codes() {
    let e = Env::new();
    let t = e.fv(&["--help"]).ok().text();
    for line in ["0  success", "1  key not found", "2  usage error", "3  wrong key", "4  corruption", "5  I/O error"] {
        assert!(t.contains(line), "{t}");
    }
    for cmd in ["init", "put", "get", "del", "scan", "load", "dump", "status", "stats", "demo", "check", "decrypt"] {
        e.fv(&[cmd, "--help"]).ok();
    }
    for cmd in ["check", "salvage", "compact", "backup", "verify-backup", "restore"] {
        let t = e.fv(&[cmd, "--help"]).ok().text();
        assert!(t.contains("Exit codes: 0"), "{cmd}: {t}");
    }
    for cmd in ["passwd", "slots", "rekey", "encrypt", "import-sled"] {
        e.fv(&[cmd, "--help"]).ok();
    }
    assert!(e.pd(&["--help"]).ok().text().contains("Exit codes"));
}

/// True when some line of `t` is the words of `words`, however spaced.
fn has_line(t: &str, words: &str) -> bool {
    let want: Vec<&str> = words.split_whitespace().collect();
    t.lines().any(|l| l.split_whitespace().take(want.len() + 1).eq(want.iter().copied()))
}

/// An encrypted database with a two-level tree `t` (2000 records over many leaves) and a
/// one-record tree `other`; returns its path and the page number of a leaf of `t`.
fn multi_leaf_db(e: &Env, name: &str) -> (String, u64) {
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

/// `compact` after a load that rewrote every record in one transaction (copy-on-write put the
/// new leaves past the end of the file and freed the old ones): the file shrinks, the records
/// read back, `check` passes, a second run has nothing to move, a wrong key exits 3.
#[test]
fn compact_shrinks_the_file_and_keeps_the_records() {
    let e = Env::new();
    let (db, _) = multi_leaf_db(&e, "db");
    let pass = e.pass();
    let lines: String =
        (0..2000).map(|i| format!("{{\"key\": \"k{i:05}\", \"value\": \"rewritten {i}\"}}\n")).collect();
    e.fv_in(&["load", &db, "t", "--passphrase-file", &pass], lines.as_bytes()).ok();
    let before = std::fs::metadata(&db).unwrap().len();
    let status = e.fv(&["status", &db, "--passphrase-file", &pass]).ok().text();
    assert!(status.lines().any(|l| l.starts_with("free space:") && !l.contains(" 0 pages")), "{status}");
    let t = e.fv(&["compact", &db, "--passphrase-file", &pass]).ok().text();
    assert!(t.starts_with("compacted ") && t.contains("pages moved in"), "{t}");
    let after = std::fs::metadata(&db).unwrap().len();
    assert!(after < before, "{before} -> {after}: {t}");
    let j = e.fv(&["compact", &db, "--json", "--passphrase-file", &pass]).ok().text();
    assert!(j.contains("\"pages_moved\": 0") && j.contains(&format!("\"pages_after\": {},", after / 4096)), "{j}");
    e.fv(&["check", &db, "--passphrase-file", &pass]).ok();
    assert_eq!(e.fv(&["get", &db, "t", "k01234", "--passphrase-file", &pass]).ok().text(), "rewritten 1234");
    let wrong = e.p("wrong");
    secret(&wrong, "not the passphrase");
    e.fv(&["compact", &db, "--passphrase-file", &wrong]).code(3);
}

#[test]
fn check_reports_every_problem_with_its_page() {
    let e = Env::new();
    let (db, leaf) = multi_leaf_db(&e, "db");
    let pass = e.pass();
    let o = e.fv(&["check", &db, "--passphrase-file", &pass]).ok();
    let t = o.text();
    assert!(
        t.contains("problems:        none")
            && t.lines().any(|l| l.starts_with("  t ") && l.contains(" 2000 records, ")),
        "{t}"
    );
    assert!(t.contains("trailing bytes:  0") && t.lines().last().unwrap().starts_with("check: ok"), "{t}");
    assert!(o.stderr.is_empty(), "{}", o.err());
    let j = e.fv(&["check", &db, "--json", "--passphrase-file", &pass]).ok().text();
    assert!(j.lines().count() == 1 && j.contains("\"ok\": true") && j.contains("\"problems\": []"), "{j}");
    assert!(j.contains("{\"name\": \"t\", \"records\": 2000, \"pages\": "), "{j}");
    // Without the key: exit 3.
    e.fv(&["check", &db]).code(3);

    flip_byte(&db, leaf * 4096 + 100);
    let o = e.fv(&["check", &db, "--passphrase-file", &pass]).code(4);
    let t = o.text();
    assert!(t.contains(&format!("  page {leaf} (t): seal does not verify")), "{t}");
    assert!(t.lines().last().unwrap().starts_with("check: FAILED"), "{t}");
    // Regression: damage met while copying was reported against the new file (which no
    // longer exists), not the source.
    let copy = e.p("copy");
    let args = ["decrypt", &db, &copy, "--passphrase-file", &pass, "--i-understand-this-writes-plaintext"];
    let d = e.fv(&args).code(4);
    assert!(d.err().trim_end().ends_with(&format!("({db})")), "{}", d.err());
    assert!(!Path::new(&copy).exists());
    // Regression: a report cut short by a closed pipe exited 0, damage found or not.
    let fv = env!("CARGO_BIN_EXE_foldvault");
    assert_eq!(e.exit_into_closed_pipe(fv, &["check", &db, "--passphrase-file", &pass]), 4);
    let pd = env!("CARGO_BIN_EXE_pagedump");
    assert_eq!(e.exit_into_closed_pipe(pd, &[&db, "--all", "--passphrase-file", &pass]), 4);
    assert_eq!(e.exit_into_closed_pipe(pd, &[&db, "--tree", "t", "--passphrase-file", &pass]), 4);
    assert_eq!(e.exit_into_closed_pipe(pd, &[&db, "--passphrase-file", &pass]), 0, "pages 0-3 are whole");
    let lost = e.p("salvaged");
    assert_eq!(e.exit_into_closed_pipe(fv, &["salvage", &db, &lost, "--passphrase-file", &pass]), 4);
    assert!(o.err().starts_with("foldvault: check found ") && o.err().lines().count() == 1, "{}", o.err());
    let j = e.fv(&["check", &db, "--json", "--passphrase-file", &pass]).code(4).text();
    assert!(j.contains("\"ok\": false") && j.contains(&format!("{{\"page\": {leaf}, \"tree\": \"t\"")), "{j}");
}

#[test]
fn salvage_copies_what_authenticates() {
    let e = Env::new();
    let (db, leaf) = multi_leaf_db(&e, "db");
    let pass = e.pass();
    // An undamaged database: everything copied, exit 0.
    let whole = e.p("whole");
    let t = e.fv(&["salvage", &db, &whole, "--passphrase-file", &pass]).ok().text();
    assert!(t.contains("t: 2000 records copied") && t.contains("nothing lost"), "{t}");
    assert_eq!(
        e.fv(&["dump", &whole, "--passphrase-file", &pass]).ok().stdout,
        e.fv(&["dump", &db, "--passphrase-file", &pass]).ok().stdout
    );
    // The copy keeps the source's cipher and KDF cost.
    assert!(e.fv(&["status", &whole]).ok().text().contains("passphrase (argon2id: 1024 KiB, 1 passes"));
    // DST must be new.
    let o = e.fv(&["salvage", &db, &whole, "--passphrase-file", &pass]).code(2);
    assert!(o.err().contains("already exists"), "{}", o.err());

    flip_byte(&db, leaf * 4096 + 100);
    let out = e.p("salvaged");
    let o = e.fv(&["salvage", &db, &out, "--passphrase-file", &pass]).code(4);
    let t = o.text();
    let copied: u64 = t
        .lines()
        .find_map(|l| l.trim().strip_prefix("t: ")?.strip_suffix(" records copied")?.parse().ok())
        .unwrap_or_else(|| panic!("{t}"));
    assert!(copied > 1000 && copied < 2000, "{t}");
    assert!(t.contains("other: 1 record copied"), "{t}");
    let lost = t.lines().find(|l| l.trim().starts_with("lost: keys from \"k0")).unwrap_or_else(|| panic!("{t}"));
    assert!(lost.contains(&format!("page {leaf}")) && !lost.contains("value number"), "{t}");
    assert!(o.err().contains("salvage lost 1 key range"), "{}", o.err());
    // The salvaged database opens, checks clean and holds what was reported.
    e.fv(&["check", &out, "--passphrase-file", &pass]).ok();
    assert_eq!(e.fv(&["get", &out, "other", "a", "--passphrase-file", &pass]).ok().stdout, b"b");
    let dump = e.fv(&["dump", &out, "--passphrase-file", &pass]).ok().text();
    assert_eq!(dump.lines().count() as u64, copied + 1);
    // Wrong or no key: exit 3, and no DST is left behind.
    let wrong = e.p("wrong");
    secret(&wrong, "nope");
    let none = e.p("none");
    e.fv(&["salvage", &db, &none, "--passphrase-file", &wrong]).code(3);
    e.fv(&["salvage", &db, &none]).code(3);
    assert!(!Path::new(&none).exists());

    // A plaintext source gives a plaintext copy.
    let plain = e.p("plain");
    e.fv(&["init", &plain, "--plaintext"]).ok();
    e.fv(&["put", &plain, "t", "k", "v"]).ok();
    let plain2 = e.p("plain2");
    e.fv(&["salvage", &plain, &plain2]).ok();
    assert!(e.fv(&["status", &plain2]).ok().text().contains("plaintext"));
}

#[test]
fn backup_verify_restore_round_trip() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    e.fv_in(&["load", &db, "--passphrase-file", &pass], RECORDS.as_bytes()).ok();
    let dump = e.fv(&["dump", &db, "--passphrase-file", &pass]).ok().stdout;
    let bk = e.p("db.backup");
    let o = e.fv(&["backup", &db, &bk, "--passphrase-file", &pass]).ok();
    assert!(o.stdout.is_empty(), "{}", o.text());
    let err = o.err();
    assert!(err.lines().count() == 1 && err.starts_with("backup: commit "), "{err}");
    assert!(
        err.contains(" bytes, ") && err.contains(" pages, ") && err.contains("chunk") && err.contains("MB/s"),
        "{err}"
    );
    let bytes = std::fs::read(&bk).unwrap();
    assert!(bytes.starts_with(b"FVBACKUP"));
    assert!(!contains(&bytes, b"node_id") && !contains(&bytes, b"schemas"));

    // Without a key: structure and hashes only.
    let t = e.fv(&["verify-backup", &bk]).ok().text();
    assert!(t.contains("encryption:      encrypted") && t.contains("no key: pages not opened"), "{t}");
    assert!(!t.contains("trees:") && t.lines().last().unwrap().starts_with("verify-backup: ok (without key)"), "{t}");
    // With the key: every page, and the records per tree.
    let t = e.fv(&["verify-backup", &bk, "--passphrase-file", &pass]).ok().text();
    assert!(t.contains("every page opened") && t.contains("verify-backup: ok (full)"), "{t}");
    assert!(has_line(&t, "metadata 2 records") && has_line(&t, "schemas 2 records"), "{t}");
    assert!(has_line(&t, "__sled__default 1 record"), "{t}");
    // --no-key wins over a passphrase in the environment.
    let bin = env!("CARGO_BIN_EXE_foldvault");
    let t = e.run(bin, &["verify-backup", &bk, "--no-key"], b"", &[("FOLDVAULT_PASSPHRASE", PASS)]).ok().text();
    assert!(t.contains("no key: pages not opened"), "{t}");
    let t = e.run(bin, &["verify-backup", &bk], b"", &[("FOLDVAULT_PASSPHRASE", PASS)]).ok().text();
    assert!(t.contains("every page opened"), "{t}");
    e.fv(&["verify-backup", &bk, "--no-key", "--passphrase-file", &pass]).code(2);

    // Restore, then the dump is byte for byte the original's.
    let restored = e.p("restored");
    let t = e.fv(&["restore", &bk, &restored, "--passphrase-file", &pass]).ok().text();
    assert!(t.lines().last().unwrap().starts_with("restore: commit "), "{t}");
    assert_eq!(e.fv(&["dump", &restored, "--passphrase-file", &pass]).ok().stdout, dump);
    e.fv(&["check", &restored, "--passphrase-file", &pass]).ok();

    // Into a database directory, and a plaintext database's backup.
    let dir = e.p("dir");
    std::fs::create_dir(&dir).unwrap();
    e.fv(&["restore", &bk, &dir, "--passphrase-file", &pass]).ok();
    assert_eq!(e.fv(&["dump", &dir, "--passphrase-file", &pass]).ok().stdout, dump);
    let plain = e.p("plain");
    e.fv(&["init", &plain, "--plaintext"]).ok();
    e.fv_in(&["load", &plain], &dump).ok();
    let pbk = e.p("plain.backup");
    e.fv(&["backup", &plain, &pbk]).ok();
    let t = e.fv(&["verify-backup", &pbk]).ok().text();
    assert!(t.contains("plaintext") && t.contains("every page opened"), "{t}");
    let plain2 = e.p("plain2");
    e.fv(&["restore", &pbk, &plain2]).ok();
    assert_eq!(e.fv(&["dump", &plain2]).ok().stdout, dump);

    // A second backup replaces the first only when it is complete.
    e.fv(&["put", &db, "metadata", "more", "x", "--passphrase-file", &pass]).ok();
    e.fv(&["backup", &db, &bk, "--passphrase-file", &pass]).ok();
    let leftovers: Vec<_> = std::fs::read_dir(e.dir.path())
        .unwrap()
        .filter_map(|d| d.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let restored2 = e.p("restored2");
    e.fv(&["restore", &bk, &restored2, "--passphrase-file", &pass]).ok();
    assert_eq!(e.fv(&["get", &restored2, "metadata", "more", "--passphrase-file", &pass]).ok().stdout, b"x");
}

#[test]
fn backup_through_a_pipe() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    e.fv_in(&["load", &db, "--passphrase-file", &pass], RECORDS.as_bytes()).ok();
    let dump = e.fv(&["dump", &db, "--passphrase-file", &pass]).ok().stdout;
    let o = e.fv(&["backup", &db, "-", "--passphrase-file", &pass]).ok();
    // Standard output holds the backup and nothing else.
    assert!(o.stdout.starts_with(b"FVBACKUP"), "{}", o.err());
    assert!(o.err().contains("to standard output") && o.err().lines().count() == 1, "{}", o.err());
    let file = e.p("file.backup");
    e.fv(&["backup", &db, &file, "--passphrase-file", &pass]).ok();
    assert_eq!(o.stdout.len() as u64, std::fs::metadata(&file).unwrap().len());

    let t = e.fv_in(&["verify-backup", "-"], &o.stdout).ok().text();
    assert!(t.contains("backup:          <stdin>") && t.contains("verify-backup: ok (without key)"), "{t}");
    let t = e.fv_in(&["verify-backup", "-", "--passphrase-file", &pass], &o.stdout).ok().text();
    assert!(t.contains("verify-backup: ok (full)"), "{t}");
    let restored = e.p("restored");
    e.fv_in(&["restore", "-", &restored, "--passphrase-file", &pass], &o.stdout).ok();
    assert_eq!(e.fv(&["dump", &restored, "--passphrase-file", &pass]).ok().stdout, dump);

    // A real pipe between two processes.
    let bin = env!("CARGO_BIN_EXE_foldvault");
    let mut producer = Command::new(bin)
        .args(["backup", &db, "-", "--passphrase-file", &pass])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let consumer = Command::new(bin)
        .args(["verify-backup", "-", "--passphrase-file", &pass])
        .stdin(producer.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(producer.wait().unwrap().success());
    assert!(consumer.status.success(), "{}", String::from_utf8_lossy(&consumer.stderr));
    assert!(String::from_utf8_lossy(&consumer.stdout).contains("verify-backup: ok (full)"));
}

#[test]
fn damaged_backups_exit_4_and_name_the_place() {
    let e = Env::new();
    let (db, _) = multi_leaf_db(&e, "db");
    let pass = e.pass();
    let bk = e.p("db.backup");
    e.fv(&["backup", &db, &bk, "--passphrase-file", &pass]).ok();
    let good = std::fs::read(&bk).unwrap();
    assert!(good.len() > 3 * 8192, "{}", good.len());

    // A flipped byte inside the chunks: found without the key, named by chunk and offset.
    let bad = e.p("bad.backup");
    let mut b = good.clone();
    b[good.len() / 2] ^= 0x01;
    std::fs::write(&bad, &b).unwrap();
    for args in [&["verify-backup", &bad][..], &["verify-backup", &bad, "--passphrase-file", &pass]] {
        let o = e.fv(args).code(4);
        let err = o.err();
        assert!(err.contains("chunk ") && err.contains("byte ") && err.lines().count() == 1, "{err}");
    }
    let target = e.p("target");
    let o = e.fv(&["restore", &bad, &target, "--passphrase-file", &pass]).code(4);
    assert!(o.err().contains("chunk "), "{}", o.err());
    assert!(!Path::new(&target).exists());
    // In the header, and in the trailer.
    for off in [100, good.len() - 10] {
        let mut b = good.clone();
        b[off] ^= 0x01;
        std::fs::write(&bad, &b).unwrap();
        let o = e.fv(&["verify-backup", &bad]).code(4);
        assert!(o.err().contains("byte "), "{}", o.err());
    }
    // Truncated, through a pipe too.
    let short = &good[..good.len() - 100];
    let o = e.fv_in(&["verify-backup", "-"], short).code(4);
    assert!(o.err().contains("truncated"), "{}", o.err());
    e.fv_in(&["restore", "-", &target, "--passphrase-file", &pass], short).code(4);
    assert!(!Path::new(&target).exists());
    // Not a backup at all.
    let o = e.fv(&["verify-backup", &db]).code(4);
    assert!(o.err().contains("not a foldvault backup"), "{}", o.err());
    // A damaged database is not backed up.
    let (db2, leaf) = multi_leaf_db(&e, "db2");
    flip_byte(&db2, leaf * 4096 + 100);
    let out = e.p("db2.backup");
    let o = e.fv(&["backup", &db2, &out, "--passphrase-file", &pass]).code(4);
    assert!(o.err().contains(&format!("corrupt page {leaf}")), "{}", o.err());
    assert!(!Path::new(&out).exists());
}

#[test]
fn backup_keys_and_existing_targets() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    e.fv(&["put", &db, "t", "k", "v1", "--passphrase-file", &pass]).ok();
    let bk = e.p("db.backup");
    e.fv(&["backup", &db, &bk, "--passphrase-file", &pass]).ok();
    let wrong = e.p("wrong");
    secret(&wrong, "not the passphrase");
    let key = e.p("key");
    let target = e.p("target");
    // Wrong key: 3 for verify-backup and restore, and nothing restored.
    let o = e.fv(&["verify-backup", &bk, "--passphrase-file", &wrong]).code(3);
    assert!(o.err().starts_with("foldvault: wrong key or passphrase") && o.err().lines().count() == 1);
    e.fv(&["verify-backup", &bk, "--key-file", &key]).code(3);
    e.fv(&["restore", &bk, &target, "--passphrase-file", &wrong]).code(3);
    e.fv(&["restore", &bk, &target]).code(3);
    assert!(!Path::new(&target).exists());
    e.fv(&["backup", &db, &target, "--passphrase-file", &wrong]).code(3);
    assert!(!Path::new(&target).exists());

    // An existing database is not replaced without --force.
    let other = e.init_encrypted("other");
    e.fv(&["put", &other, "t", "k", "other", "--passphrase-file", &pass]).ok();
    let o = e.fv(&["restore", &bk, &other, "--passphrase-file", &pass]).code(2);
    assert!(o.err().contains("already exists") && o.err().contains("--force"), "{}", o.err());
    assert_eq!(e.fv(&["get", &other, "t", "k", "--passphrase-file", &pass]).ok().stdout, b"other");
    // Nor while it is open elsewhere, even with --force.
    {
        let _held =
            foldvault::Config::new().file(&other).passphrase(PASS).use_env(false).flush_every_ms(None).open().unwrap();
        let o = e.fv(&["restore", &bk, &other, "--force", "--passphrase-file", &pass]).code(5);
        assert!(o.err().contains("locked"), "{}", o.err());
    }
    e.fv_after_unlock(&["restore", &bk, &other, "--force", "--passphrase-file", &pass]).ok();
    assert_eq!(e.fv(&["get", &other, "t", "k", "--passphrase-file", &pass]).ok().stdout, b"v1");
    // A backup of a plaintext database: refused with --require-encryption, restored as
    // plaintext (with a warning) when a key is given without it.
    let plain = e.p("plain");
    e.fv(&["init", &plain, "--plaintext"]).ok();
    e.fv(&["put", &plain, "t", "k", "clear"]).ok();
    let pbk = e.p("plain.backup");
    e.fv(&["backup", &plain, &pbk]).ok();
    let ptarget = e.p("ptarget");
    let o = e.fv(&["restore", &pbk, &ptarget, "--require-encryption", "--passphrase-file", &pass]).code(2);
    assert!(o.err().contains("plaintext database"), "{}", o.err());
    assert!(!Path::new(&ptarget).exists());
    let o = e.fv(&["restore", &pbk, &ptarget, "--passphrase-file", &pass]).ok();
    assert!(o.err().contains("restored as plaintext"), "{}", o.err());
    assert_eq!(e.fv(&["get", &ptarget, "t", "k"]).ok().stdout, b"clear");
    // Missing files.
    e.fv(&["verify-backup", &e.p("missing")]).code(5);
    e.fv(&["backup", &e.p("missing"), &e.p("out"), "--passphrase-file", &pass]).code(5);
}

#[test]
fn maintenance_commands_show_no_progress_without_a_terminal() {
    let e = Env::new();
    let (db, _) = multi_leaf_db(&e, "db");
    let pass = e.pass();
    let bk = e.p("bk");
    let clean = |o: &Out| {
        for s in [&o.stdout, &o.stderr] {
            assert!(!contains(s, b"\r") && !contains(s, b"\x1b["), "{}", o.err());
        }
    };
    let o = e.fv(&["check", &db, "--passphrase-file", &pass]).ok();
    assert!(o.stderr.is_empty(), "{}", o.err());
    clean(&o);
    let o = e.fv(&["salvage", &db, &e.p("s"), "--passphrase-file", &pass]).ok();
    assert!(o.stderr.is_empty(), "{}", o.err());
    clean(&o);
    let o = e.fv(&["backup", &db, &bk, "--passphrase-file", &pass]).ok();
    assert_eq!(o.err().lines().count(), 1, "{}", o.err());
    clean(&o);
    let o = e.fv(&["verify-backup", &bk, "--passphrase-file", &pass]).ok();
    assert!(o.stderr.is_empty(), "{}", o.err());
    clean(&o);
    let o = e.fv(&["restore", &bk, &e.p("r"), "--passphrase-file", &pass]).ok();
    assert!(o.stderr.is_empty(), "{}", o.err());
    clean(&o);
}

/// The newest commit record's seq and catalog page, as `pagedump` shows them.
fn newest_catalog(e: &Env, db: &str) -> (u64, u64) {
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

#[test]
fn check_and_salvage_report_what_recovery_dropped() {
    let e = Env::new();
    let (db, _) = multi_leaf_db(&e, "db");
    let pass = e.pass();
    let (seq, catalog) = newest_catalog(&e, &db);
    assert!(seq >= 2, "{seq}");

    // The older commit record damaged: the data is whole, but check says so.
    let older = e.p("older");
    std::fs::copy(&db, &older).unwrap();
    // (After a clean close both slots name the newest commit: the second record lets the next
    // open skip verification. Then either slot is "the other one".)
    let other_slot = ["2", "3"]
        .into_iter()
        .find(|p| !e.pd(&[&db, "--page", p, "--passphrase-file", &pass]).text().contains(&format!(", seq {seq}\n")))
        .unwrap_or("2");
    flip_byte(&older, other_slot.parse::<u64>().unwrap() * 4096 + 100);
    let t = e.fv(&["check", &older, "--passphrase-file", &pass]).code(4).text();
    assert!(t.contains(&format!("  page {other_slot} (commit record): commit record does not open")), "{t}");

    // The newest commit's catalog damaged after a clean close: the catalog is read at open, so
    // check fails (exit 4) naming the catalog page, and so does salvage.
    flip_byte(&db, catalog * 4096 + 100);
    let o = e.fv(&["check", &db, "--passphrase-file", &pass]).code(4);
    assert!(format!("{}{}", o.text(), o.err()).contains(&format!("page {catalog}")), "{}{}", o.text(), o.err());
    // Salvage goes on from the newest commit record that opens, and reports the catalog lost.
    let o = e.fv(&["salvage", &db, &e.p("salvaged"), "--passphrase-file", &pass]).code(4);
    assert!(o.err().contains("does not open") && o.text().contains("catalog"), "{}{}", o.text(), o.err());
}

// ---------------------------------------------------------------------------------------------
// Key management, conversion and process hygiene.

impl Env {
    /// A file holding `NEW_PASS`, readable by its owner only.
    fn new_pass(&self) -> String {
        let p = self.p("new-pass");
        secret(&p, format!("{NEW_PASS}\n"));
        p
    }
}

/// The numbers of the `slot N:` lines of `slots DB`.
fn slot_numbers(t: &str) -> Vec<u64> {
    t.lines().filter_map(|l| l.strip_prefix("slot ")?.split(':').next()?.parse().ok()).collect()
}

/// The value of the `key epoch:` line of `status`.
fn key_epoch(t: &str) -> u64 {
    t.lines()
        .find_map(|l| l.strip_prefix("key epoch:")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no key epoch line: {t}"))
}

#[test]
fn passwd_changes_only_the_header() {
    let e = Env::new();
    let (db, _) = multi_leaf_db(&e, "db");
    let pass = e.pass();
    let new = e.new_pass();
    let before = std::fs::read(&db).unwrap();
    let mut args = vec!["passwd", db.as_str(), "--passphrase-file", &pass, "--new-passphrase-file", &new];
    args.extend(FAST_KDF);
    let t = e.fv(&args).ok().text();
    assert_eq!(t, "passphrase changed (slot 0); no data page was rewritten\n");
    let after = std::fs::read(&db).unwrap();
    assert_eq!(before.len(), after.len());
    assert!(before[..2 * 4096] != after[..2 * 4096], "the header did not change");
    assert!(before[2 * 4096..] == after[2 * 4096..], "a page after page 1 changed");
    // The old passphrase no longer opens it; the new one does.
    e.fv(&["get", &db, "other", "a", "--passphrase-file", &pass]).code(3);
    assert_eq!(e.fv(&["get", &db, "other", "a", "--passphrase-file", &new]).ok().stdout, b"b");
    // Without --kdf-*, the slot keeps its cost.
    e.fv(&["passwd", &db, "--passphrase-file", &new, "--new-passphrase-file", &pass]).ok();
    assert!(e.fv(&["slots", &db]).ok().text().contains("slot 0: passphrase (argon2id: 1024 KiB, 1 passes"));
    // A wrong current passphrase: exit 3, nothing changes.
    let header = std::fs::read(&db).unwrap();
    e.fv(&["passwd", &db, "--passphrase-file", &new, "--new-passphrase-file", &new]).code(3);
    assert!(std::fs::read(&db).unwrap() == header);
    // No new passphrase and no terminal to ask on: exit 2.
    let o = e.fv(&["passwd", &db, "--passphrase-file", &pass]).code(2);
    assert!(o.err().contains("--new-passphrase-file"), "{}", o.err());
    // A key file opens no passphrase slot: nothing to change.
    let plain = e.p("plain");
    e.fv(&["init", &plain, "--plaintext"]).ok();
    e.fv(&["passwd", &plain, "--new-passphrase-file", &new]).code(2);
}

#[test]
fn slots_list_add_remove() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    let key = e.p("key");
    e.fv(&["put", &db, "t", "k", "v", "--passphrase-file", &pass]).ok();
    // Listing needs no key.
    let t = e.fv(&["slots", &db]).ok().text();
    assert_eq!(t, "slot 0: passphrase (argon2id: 1024 KiB, 1 passes, 1 lanes)\n");
    // Adding needs the key; the key options may follow the action.
    e.fv(&["slots", &db, "add-key-file", &key]).code(3);
    let t = e.fv(&["slots", &db, "add-key-file", &key, "--passphrase-file", &pass]).ok().text();
    assert_eq!(t, "added slot 1: master-key\n");
    assert_eq!(e.fv(&["get", &db, "t", "k", "--key-file", &key]).ok().stdout, b"v");
    let new = e.new_pass();
    let mut args = vec!["slots", db.as_str(), "--key-file", &key, "add-passphrase", "--new-passphrase-file", &new];
    args.extend(FAST_KDF);
    assert!(e.fv(&args).ok().text().starts_with("added slot 2: passphrase (argon2id: 1024 KiB"));
    let t = e.fv(&["slots", &db, "--passphrase-file", &new]).ok().text();
    assert_eq!(slot_numbers(&t), [0, 1, 2], "{t}");
    assert!(t.contains("slot 1: master-key\n"), "{t}");

    // Remove: no such slot, then slots 0 and 2; the last one is refused.
    let o = e.fv(&["slots", &db, "remove", "7", "--key-file", &key]).code(2);
    assert!(o.err().contains("no key slot 7"), "{}", o.err());
    // The only slot the key given opens goes only with --force (slot 2's passphrase also opens
    // the database, but it was not given).
    let o = e.fv(&["slots", &db, "remove", "1", "--key-file", &key]).code(2);
    assert!(o.err().contains("only slot") && o.err().contains("--force"), "{}", o.err());
    let t = e.fv(&["slots", &db, "remove", "0", "--key-file", &key]).ok().text();
    assert!(t.starts_with("removed slot 0: passphrase") && t.contains("2 slots left"), "{t}");
    e.fv(&["get", &db, "t", "k", "--passphrase-file", &pass]).code(3);
    e.fv(&["slots", &db, "remove", "2", "--key-file", &key]).ok();
    let o = e.fv(&["slots", &db, "remove", "1", "--key-file", &key]).code(2);
    assert!(o.err().contains("slot 1 is the last key slot"), "{}", o.err());
    assert_eq!(e.fv(&["slots", &db]).ok().text(), "slot 1: master-key\n");
    assert_eq!(e.fv(&["get", &db, "t", "k", "--key-file", &key]).ok().stdout, b"v");

    // A plaintext database has no slots.
    let plain = e.p("plain");
    e.fv(&["init", &plain, "--plaintext"]).ok();
    let o = e.fv(&["slots", &plain]).code(2);
    assert!(o.err().contains("plaintext"), "{}", o.err());
}

/// A recovery key that cannot be delivered (standard output fails: a full device here, a
/// closed pipe alike) is an error, and its slot is taken away again.
#[test]
fn an_undelivered_recovery_key_leaves_no_slot() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_foldvault"))
        .args(["slots", &db, "add-recovery", "--passphrase-file", &pass])
        .env_remove("FOLDVAULT_PASSPHRASE")
        .env_remove("FOLDVAULT_KEY_FILE")
        .stdin(Stdio::null())
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("recovery key not delivered") && err.contains("removed again"), "{err}");
    assert!(!e.fv(&["slots", &db, "--passphrase-file", &pass]).ok().text().contains("recovery-key"));
}

#[test]
fn recovery_key_is_printed_once_and_opens_the_database() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    e.fv(&["put", &db, "t", "k", "v", "--passphrase-file", &pass]).ok();
    let o = e.fv(&["slots", &db, "add-recovery", "--passphrase-file", &pass]).ok();
    let recovery = o.text();
    assert_eq!(recovery.len(), 65, "{recovery}");
    assert!(recovery.trim_end().bytes().all(|b| b.is_ascii_hexdigit()) && recovery.ends_with('\n'));
    let hex = recovery.trim_end();
    assert!(o.err().contains("shown this once") && o.err().contains("offline"), "{}", o.err());
    assert!(!o.err().contains(hex), "the recovery key is on standard error");
    assert!(e.fv(&["slots", &db]).ok().text().contains("slot 1: recovery-key\n"));
    // The recovery key opens it, as a recovery key (not as a master key).
    let rk = e.p("recovery.key");
    secret(&rk, &recovery);
    assert_eq!(e.fv(&["get", &db, "t", "k", "--recovery-key-file", &rk]).ok().stdout, b"v");
    e.fv(&["get", &db, "t", "k", "--key-file", &rk]).code(3);
    // It is never shown again.
    for args in [&["status", &db, "--recovery-key-file", &rk][..], &["slots", &db, "--recovery-key-file", &rk]] {
        let o = e.fv(args).ok();
        assert!(!o.text().contains(hex) && !o.err().contains(hex), "{args:?}");
    }
}

#[test]
fn rekey_reseals_every_page_and_needs_every_slot() {
    let e = Env::new();
    let (db, _) = multi_leaf_db(&e, "db");
    let pass = e.pass();
    let key = e.p("key");
    e.fv(&["slots", &db, "add-key-file", &key, "--passphrase-file", &pass]).ok();
    let dump = e.fv(&["dump", &db, "--passphrase-file", &pass]).ok().stdout;
    let epoch0 = key_epoch(&e.fv(&["status", &db, "--passphrase-file", &pass]).ok().text());
    // Credentials for slot 0 only: refused before anything changes.
    let file0 = std::fs::read(&db).unwrap();
    let o = e.fv(&["rekey", &db, "--passphrase-file", &pass]).code(2);
    assert!(o.err().contains("every key slot") && o.err().contains("--also-key-file"), "{}", o.err());
    assert!(std::fs::read(&db).unwrap() == file0);

    let o = e.fv(&["rekey", &db, "--passphrase-file", &pass, "--also-key-file", &key]).ok();
    let t = o.text();
    assert!(t.starts_with("rekeyed ") && t.contains(" pages re-sealed in ") && t.contains("2 key slots"), "{t}");
    assert!(o.stderr.is_empty(), "{}", o.err());
    let pages: u64 = t.split(": ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).unwrap();
    assert!(pages > 10, "{t}");
    // The data reads as before, through either slot; the key epoch went up.
    assert_eq!(e.fv(&["dump", &db, "--passphrase-file", &pass]).ok().stdout, dump);
    assert_eq!(e.fv(&["dump", &db, "--key-file", &key]).ok().stdout, dump);
    let s = e.fv(&["status", &db, "--passphrase-file", &pass]).ok().text();
    assert!(key_epoch(&s) > epoch0, "{s}");
    assert!(!s.contains("rekey:"), "{s}");
    e.fv(&["check", &db, "--key-file", &key]).ok();
}

#[test]
fn encrypt_and_decrypt_copies() {
    const MARKER: &str = "MARKER-Qx7-plaintext-record";
    let e = Env::new();
    let pass = e.pass();
    let plain = e.p("plain");
    e.fv(&["init", &plain, "--plaintext"]).ok();
    let lines: String = (0..300).map(|i| format!("{{\"key\": \"k{i:04}\", \"value\": \"{MARKER} {i}\"}}\n")).collect();
    e.fv_in(&["load", &plain, "t"], lines.as_bytes()).ok();
    e.fv(&["put", &plain, "other", "a", "b"]).ok();
    assert!(contains(&std::fs::read(&plain).unwrap(), MARKER.as_bytes()));
    let dump = e.fv(&["dump", &plain]).ok().stdout;

    // encrypt: no marker in the copy's bytes; per-tree counts and 8-byte digests at the end.
    let enc = e.p("enc");
    let mut args = vec!["encrypt", plain.as_str(), &enc, "--passphrase-file", &pass];
    args.extend(FAST_KDF);
    let t = e.fv(&args).ok().text();
    let t_line = t.lines().find(|l| l.trim_start().starts_with("t ")).unwrap_or_else(|| panic!("{t}"));
    let digest = t_line.split_whitespace().last().unwrap();
    assert!(t_line.contains(" 300 records ") && digest.len() == 16, "{t}");
    assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()), "{t}");
    assert!(t.lines().last().unwrap().starts_with("encrypted ") && t.contains("2 trees, 301 records"), "{t}");
    assert!(!contains(&std::fs::read(&enc).unwrap(), MARKER.as_bytes()));
    assert!(e.fv(&["status", &enc]).ok().text().contains("encryption:      encrypted"));
    assert_eq!(e.fv(&["dump", &enc, "--passphrase-file", &pass]).ok().stdout, dump);
    // An existing DST is not replaced.
    e.fv(&args).code(2);

    // decrypt: refused without the acknowledgement, and nothing written.
    let dec = e.p("dec");
    let o = e.fv(&["decrypt", &enc, &dec, "--passphrase-file", &pass]).code(2);
    assert!(o.err().contains("--i-understand-this-writes-plaintext"), "{}", o.err());
    assert!(!Path::new(&dec).exists());
    e.fv(&["decrypt", &enc, &dec, "--i-understand-this-writes-plaintext"]).code(3);
    assert!(!Path::new(&dec).exists());
    let t =
        e.fv(&["decrypt", &enc, &dec, "--passphrase-file", &pass, "--i-understand-this-writes-plaintext"]).ok().text();
    assert!(t.contains(digest) && t.contains("PLAINTEXT"), "{t}");
    assert!(contains(&std::fs::read(&dec).unwrap(), MARKER.as_bytes()));
    assert_eq!(e.fv(&["dump", &dec]).ok().stdout, dump);

    // encrypt --in-place converts the file itself.
    // Through a symbolic link, the file it names is converted; a descriptor kept open on the
    // old file shows that its bytes were overwritten, not only unlinked. (A second name, a
    // hard link, would keep them: that name's file is not overwritten.)
    let inplace = e.p("inplace");
    std::fs::copy(&plain, &inplace).unwrap();
    let link = e.p("inplace-link");
    std::os::unix::fs::symlink(&inplace, &link).unwrap();
    let old_file = std::fs::File::open(&inplace).unwrap();
    let old_bytes = |f: &std::fs::File| {
        let mut b = vec![0u8; f.metadata().unwrap().len() as usize];
        f.read_exact_at(&mut b, 0).unwrap();
        b
    };
    assert!(contains(&old_bytes(&old_file), MARKER.as_bytes()));
    let key = e.p("key");
    let t = e.fv(&["encrypt", &link, "--in-place", "--key-file", &key]).ok().text();
    assert!(t.contains(digest) && t.contains("in place"), "{t}");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(!contains(&std::fs::read(&inplace).unwrap(), MARKER.as_bytes()));
    assert!(old_bytes(&old_file).iter().all(|&b| b == 0), "the old file's bytes survive");
    assert_eq!(e.fv(&["dump", &inplace, "--key-file", &key]).ok().stdout, dump);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&inplace).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&dec).unwrap().permissions().mode() & 0o777, 0o600);
    // No key for the new database: refused.
    e.fv(&["encrypt", &plain, &e.p("nokey")]).code(2);
    assert!(!Path::new(&e.p("nokey")).exists());
}

#[test]
fn import_sled_needs_its_feature() {
    let e = Env::new();
    let o = e.fv(&["import-sled", &e.p("sled-dir"), &e.p("dst"), "--passphrase-file", &e.pass()]);
    if cfg!(feature = "sled-import") {
        assert_ne!(o.code, 0);
    } else {
        o.code(2);
        let o = e.fv(&["import-sled", &e.p("sled-dir"), &e.p("dst")]).code(2);
        assert!(o.err().contains("sled-import"), "{}", o.err());
    }
    assert!(!Path::new(&e.p("dst")).exists());
}

#[cfg(feature = "sled-import")]
#[test]
fn import_sled_copies_every_tree() {
    let e = Env::new();
    let dir = e.p("sled-dir");
    {
        let s = sled::open(&dir).unwrap();
        for i in 0..50u32 {
            s.insert(format!("k{i:03}"), format!("value {i}").as_bytes()).unwrap();
        }
        s.open_tree("metadata").unwrap().insert("node_id", "abc").unwrap();
        for _ in 0..3 {
            s.generate_id().unwrap();
        }
        s.flush().unwrap();
    }
    let sled_id = sled::open(&dir).unwrap().generate_id().unwrap();
    let dst = e.p("dst");
    let pass = e.pass();
    let mut args = vec!["import-sled", dir.as_str(), &dst, "--passphrase-file", &pass];
    args.extend(FAST_KDF);
    let t = e.fv(&args).ok().text();
    assert!(t.lines().any(|l| l.trim_start().starts_with("__sled__default") && l.contains(" 50 records ")), "{t}");
    assert!(t.lines().any(|l| l.trim_start().starts_with("metadata") && l.contains(" 1 records ")), "{t}");
    assert!(t.lines().last().unwrap().starts_with("imported sled database "), "{t}");
    assert_eq!(e.fv(&["get", &dst, "metadata", "node_id", "--passphrase-file", &pass]).ok().stdout, b"abc");
    // The target must be new.
    e.fv(&args).code(2);
    // Nothing left beside the target (no temporary file, no log).
    let names: Vec<String> = std::fs::read_dir(e.dir.path())
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains(".copy-") || n.ends_with(".fvwal")), "{names:?}");
    // sled's id counter carries over: ids go on above every id sled handed out.
    let db = foldvault::Config::new().file(&dst).passphrase(PASS).use_env(false).open().unwrap();
    assert!(db.generate_id().unwrap() > sled_id);
    drop(db);
    // A directory with no sled database is refused, and sled writes nothing into it.
    let empty = e.p("not-sled");
    std::fs::create_dir(&empty).unwrap();
    let dst2 = e.p("dst2");
    let mut args = vec!["import-sled", empty.as_str(), &dst2, "--passphrase-file", &pass];
    args.extend(FAST_KDF);
    let o = e.fv(&args);
    assert_ne!(o.code, 0);
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

#[cfg(target_os = "linux")]
#[test]
fn the_process_is_not_dumpable_while_it_holds_a_key() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let o = e.fv(&["__dumpable", &db, "--passphrase-file", &e.pass()]).ok();
    assert_eq!(o.text(), "dumpable=0\n");
    assert!(o.stderr.is_empty(), "{}", o.err());
    // Hidden from the help.
    assert!(!e.fv(&["--help"]).ok().text().contains("__dumpable"));
}

#[test]
fn shared_key_files_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let e = Env::new();
    let db = e.init_encrypted("db");
    let shared = e.p("shared-pass");
    std::fs::write(&shared, format!("{PASS}\n")).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = e.fv(&["get", &db, "t", "k", "--passphrase-file", &shared]).code(2);
    let want = format!("passphrase file {shared} is readable by other users; chmod 600 it");
    assert!(o.err().contains(&want), "{}", o.err());
    // Group-readable is refused too, and so is a key file, named by option or environment.
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o640)).unwrap();
    e.fv(&["get", &db, "t", "k", "--passphrase-file", &shared]).code(2);
    let key = e.p("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o604)).unwrap();
    let o = e.fv(&["init", &e.p("db2"), "--key-file", &key]).code(2);
    assert!(o.err().contains("key file") && o.err().contains("chmod 600"), "{}", o.err());
    assert!(!Path::new(&e.p("db2")).exists());
    let bin = env!("CARGO_BIN_EXE_foldvault");
    e.run(bin, &["status", &db], b"", &[("FOLDVAULT_KEY_FILE", &key)]).code(2);
    // FOLDVAULT_ALLOW_SHARED_KEY_FILES=1 lets them through.
    let allow = [("FOLDVAULT_ALLOW_SHARED_KEY_FILES", "1")];
    e.run(bin, &["get", &db, "t", "k", "--passphrase-file", &shared], b"", &allow).code(1);
}

#[test]
fn status_shows_key_memory_aes_and_nonce_budget() {
    let e = Env::new();
    let db = e.init_encrypted("db");
    let pass = e.pass();
    e.fv(&["put", &db, "t", "k", "v", "--passphrase-file", &pass]).ok();
    let t = e.fv(&["status", &db, "--passphrase-file", &pass]).ok().text();
    let line = |name: &str| t.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name}: {t}"));
    let mem = line("key memory:");
    assert!(mem.contains(" locked (") || mem.contains("NOT locked (RLIMIT_MEMLOCK)"), "{t}");
    let aes = line("AES:");
    assert!(aes.contains("hardware (") || aes.contains("software (constant-time)"), "{t}");
    assert!(line("nonce budget:").contains(" seals used in this epoch"), "{t}");
    // Without a key: the AES line (a property of this machine), no key memory to report.
    let t = e.fv(&["status", &db]).ok().text();
    assert!(t.contains("\nAES:") && !t.contains("key memory:"), "{t}");
    let j = e.fv(&["status", &db, "--json", "--passphrase-file", &pass]).ok().text();
    assert!(j.contains("\"seal_budget\": ") && j.contains("\"key_memory_locked\": "), "{j}");
}

#[test]
fn config_file_sets_kdf_and_refuses_bad_files() {
    let e = Env::new();
    let cfg = e.p("fv.toml");
    std::fs::write(
        &cfg,
        "cache_capacity = \"4MiB\"\ndurability = \"immediate\"\n[kdf]\nmemory_mib = 2\niterations = 1\n",
    )
    .unwrap();
    let db = e.p("cfg.db");
    let pass = e.pass();
    e.fv(&["init", &db, "--config", &cfg, "--passphrase-file", &pass]).ok();
    let t = e.fv(&["status", &db]).ok().text();
    assert!(t.contains("2048"), "slot KDF memory from the config file: {t}");
    // Regression: the cipher, and the KDF of encrypt and slots add-passphrase, ignored the
    // file; `durability` is read and said to be unused.
    let o = e
        .fv(&[
            "slots",
            &db,
            "add-passphrase",
            "--new-passphrase-file",
            &pass,
            "--config",
            &cfg,
            "--passphrase-file",
            &pass,
        ])
        .ok();
    assert!(o.text().contains("2048 KiB") && o.err().contains("durability not used"), "{}{}", o.text(), o.err());
    let plain = e.p("plain.db");
    e.fv(&["init", &plain, "--plaintext"]).ok();
    let enc = e.p("enc.db");
    e.fv(&["encrypt", &plain, &enc, "--config", &cfg, "--passphrase-file", &pass]).ok();
    assert!(e.fv(&["status", &enc]).ok().text().contains("2048 KiB"));
    std::fs::write(&cfg, "cipher = \"chacha20-poly1305\"\n[kdf]\nmemory_mib = 2\niterations = 1\n").unwrap();
    let aes = e.p("aes.db");
    e.fv(&["init", &aes, "--cipher", "aes-256-gcm", "--config", &cfg, "--passphrase-file", &pass]).ok();
    assert!(
        e.fv(&["status", &aes]).ok().text().contains("cipher:          aes-256-gcm"),
        "the option goes over the file"
    );
    let chacha = e.p("chacha.db");
    let o = e.fv(&["init", &chacha, "--config", &cfg, "--passphrase-file", &pass]);
    if cfg!(feature = "chacha") {
        assert!(e.fv(&["status", &chacha]).ok().text().contains("cipher:          chacha20-poly1305"), "{}", o.err());
    } else {
        o.code(2); // built without ChaCha20-Poly1305: the file's cipher is refused
    }
    let bad = e.p("bad.toml");
    std::fs::write(&bad, "cipher = 7\n").unwrap();
    let o = e.fv(&["status", &db, "--config", &bad]).code(2);
    assert!(o.err().contains("line 1"), "{}", o.err());
    // A config file that cannot be read is an I/O error; one past 1 MiB is refused unread.
    e.fv(&["status", &db, "--config", &e.p("missing.toml")]).code(5);
    let big = e.p("big.toml");
    std::fs::write(&big, vec![b'#'; (1 << 20) + 10]).unwrap();
    e.fv(&["status", &db, "--config", &big]).code(2);
    // Bytes that are not text are a usage error too, not an I/O error.
    let binary = e.p("binary.toml");
    std::fs::write(&binary, b"cipher = \"\xff\"\n").unwrap();
    assert!(e.fv(&["status", &db, "--config", &binary]).code(2).err().contains("not UTF-8"));
    // `[backup] verify_after`: the backup file is read back and verified.
    std::fs::write(&cfg, "[backup]\nverify_after = true\n").unwrap();
    let o = e.fv(&["backup", &db, &e.p("cfg.fvbk"), "--config", &cfg, "--passphrase-file", &pass]).ok();
    assert!(o.err().contains("read back and verified"), "{}", o.err());
    // The backup is not written over the database itself.
    e.fv(&["backup", &db, &db, "--passphrase-file", &pass]).code(2);
    e.fv(&["get", &db, "t", "k", "--passphrase-file", &pass]).code(1);
}
