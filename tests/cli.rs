//! The `foldvault` and `pagedump` binaries, run as an operator would: round trips, every exit
//! code, output without a terminal, and that no command ever prints a key or passphrase (every
//! run's stdout and stderr are searched for them).

#[path = "common/cli_env.rs"]
mod cli_env;

use cli_env::*;
use std::path::{Path, PathBuf};

use foldvault::storage::wal::sidecar_path;

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
    // The file `init` made opens through `Config::path` (`foldvault::open`) too, as the
    // command line opens either form: it tried to make a directory there.
    e.fv(&["put", &plain, "t", "k", "v"]).ok();
    let db = foldvault::Config::new().path(&plain).use_env(false).open().unwrap();
    assert_eq!(db.open_tree("t").unwrap().get("k").unwrap().as_deref(), Some(&b"v"[..]));
    drop(db);

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
    // Over two of the chunks `put -` reads standard input in.
    let binary: Vec<u8> = (0..=255u8).cycle().take(150_000).collect();
    let v = with(&["put", &db, "metadata", "blob", "-"]);
    e.fv_in(&v.iter().map(String::as_str).collect::<Vec<_>>(), &binary).ok();

    assert_eq!(run(&["get", &db, "metadata", "node_id"]).ok().stdout, b"abc");
    assert_eq!(run(&["get", &db, "metadata", "blob"]).ok().stdout, binary);
    run(&["get", &db, "metadata", "missing"]).code(1);
    // A key that starts with a hyphen, as `get` and `del` take one.
    run(&["put", &db, "metadata", "-k", "-v"]).ok();
    assert_eq!(run(&["get", &db, "metadata", "-k"]).ok().stdout, b"-v");
    run(&["del", &db, "metadata", "-k"]).ok();
    run(&["get", &db, "no-such-tree", "node_id"]).code(1);

    let scan = run(&["scan", &db, "metadata"]).ok().text();
    let lines: Vec<&str> = scan.lines().collect();
    assert_eq!(lines.len(), 3, "{scan}");
    assert!(lines[0].starts_with("blob\t") && lines[1] == "name\tx\\ty" && lines[2] == "node_id\tabc", "{scan}");
    let prefixed = run(&["scan", &db, "metadata", "--prefix", "n"]).ok().text();
    assert_eq!(prefixed.lines().count(), 2);
    let json = run(&["scan", &db, "metadata", "--prefix", "node", "--json"]).ok().text();
    assert_eq!(json, "{\"key\": \"node_id\", \"value\": \"abc\"}\n");
    // a misspelt tree is reported (exit 1, as `get`), not listed as empty
    let o = run(&["scan", &db, "no-such-tree"]).code(1);
    assert!(o.stdout.is_empty() && o.err().contains("tree not found"), "{}", o.err());

    run(&["del", &db, "metadata", "node_id"]).ok();
    run(&["del", &db, "metadata", "node_id"]).ok();
    run(&["get", &db, "metadata", "node_id"]).code(1);
    assert_eq!(run(&["get", &db, "metadata", "name"]).ok().stdout, b"x\ty");
}

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
fn a_tree_without_records_survives_dump_and_load() {
    let e = Env::new();
    let (a, b) = (e.p("a.db"), e.p("b.db"));
    for db in [&a, &b] {
        e.fv(&["init", db, "--plaintext"]).ok();
    }
    let input = "{\"tree\": \"empty\"}\n{\"tree\": \"a\", \"key\": \"k\", \"value\": \"v\"}\n";
    e.fv_in(&["load", &a], input.as_bytes()).ok();
    let dump = e.fv(&["dump", &a]).ok().text();
    // Trees in name order; the empty default tree (in every database) gets no line.
    assert_eq!(dump, "{\"tree\": \"a\", \"key\": \"k\", \"value\": \"v\"}\n{\"tree\": \"empty\"}\n");
    e.fv_in(&["load", &b], dump.as_bytes()).ok();
    assert_eq!(e.fv(&["dump", &b]).ok().text(), dump);
    assert!(e.fv(&["status", &b]).ok().text().contains("empty"), "the tree exists in the copy");
    // A tree line under a forced tree name creates that tree; a key without a value is refused.
    e.fv_in(&["load", &b, "forced"], b"{\"tree\": \"ignored\"}\n").ok();
    let names = e.fv(&["status", &b]).ok().text();
    assert!(names.contains("forced") && !names.contains("ignored"), "{names}");
    let o = e.fv_in(&["load", &b], b"{\"tree\": \"t\", \"key\": \"k\"}\n").code(2);
    assert!(o.err().contains("line 1") && o.err().contains("missing field: value"), "{}", o.err());
    // A tree name too long, on a tree line: the line's fault, named.
    let long = format!("{{\"tree\": \"x\"}}\n{{\"tree\": \"{}\"}}\n", "n".repeat(1025));
    let o = e.fv_in(&["load", &b], long.as_bytes()).code(2);
    assert!(o.err().contains("line 2"), "{}", o.err());
}

/// A key given for a plaintext file is not used, and the command says so on stderr (a
/// plaintext file put in place of an encrypted one would otherwise read silently).
#[test]
fn a_key_given_for_a_plaintext_file_is_warned_about() {
    let e = Env::new();
    let db = e.p("plain.db");
    e.fv(&["init", &db, "--plaintext"]).ok();
    e.fv(&["put", &db, "t", "k", "v"]).ok();
    let quiet = e.fv(&["get", &db, "t", "k"]).ok();
    assert!(!quiet.err().contains("warning"), "{}", quiet.err());
    let pass = e.pass();
    let warned = e.fv(&["get", &db, "t", "k", "--passphrase-file", &pass]).ok();
    assert_eq!(warned.stdout, b"v");
    assert!(warned.err().contains("is plaintext") && warned.err().contains("not used"), "{}", warned.err());
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
    // a tree that does not exist is reported, not listed as empty
    e.fv(&["get", &db, "absent", "k", "--passphrase-file", &pass]).code(1);
    let o = e.fv(&["scan", &db, "absent", "--passphrase-file", &pass]).code(1);
    assert!(o.err().contains("tree not found"), "{}", o.err());
    e.fv(&["dump", &db, "--tree", "absent", "--passphrase-file", &pass]).code(1);
    e.fv(&["dump", &db, "--tree", "t", "--passphrase-file", &pass]).ok();
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
    // 4: a file emptied is a database truncated to nothing, as the library says (it was "not a
    // foldvault file")
    let empty = e.p("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let o = e.fv(&["get", &empty, "t", "k"]).code(4);
    assert!(o.err().contains("file truncated"), "{}", o.err());
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
    // The default tree is there before anything is written to it, as `scan` takes it.
    let tree = e.pd(&[&db, "--tree", "__sled__default", "--passphrase-file", &pass]).ok().text();
    assert!(tree.contains("tree __sled__default: 0 records"), "{tree}");
    // A plaintext file decodes without a key.
    let plain = e.p("plain");
    e.fv(&["init", &plain, "--plaintext"]).ok();
    e.fv(&["put", &plain, "t", "hello", "world"]).ok();
    assert!(e.pd(&[&plain, "--all"]).ok().text().contains("\"hello\" = \"world\""));
    // A page past every commit's end (a commit that never completed, torn) is no damage.
    let mut f = std::fs::OpenOptions::new().append(true).open(&plain).unwrap();
    std::io::Write::write_all(&mut f, &[0xab; 4096]).unwrap();
    drop(f);
    assert!(e.pd(&[&plain, "--all"]).ok().text().contains("free page (not in use), does not open"));
    // A page past the end, or one whose offset would overflow, is a usage error, not damage.
    e.pd(&[&plain, "--page", "99"]).code(2);
    e.pd(&[&plain, "--page", "18446744073709551615"]).code(2);
    // The environment's key is not read: its output would show decrypted records.
    let o = e.run(env!("CARGO_BIN_EXE_pagedump"), &[&db, "--all"], b"", &[("FOLDVAULT_PASSPHRASE", PASS)]).ok().text();
    assert!(!o.contains("visible-value"), "{o}");
    // A version-1 file (tests/data, made by the version-1 build's backup::make_fixtures) opens page by page: the
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
    // Seven rounds, or as few as three once the timing budget is spent (a slow disk).
    let rounds = t.split("fastest of ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse::<u32>().ok());
    assert!(t.contains("ratio encrypted / plaintext:") && t.contains("runs of each, in turns"), "{t}");
    assert!(matches!(rounds, Some(3..=7)), "{t}");
    assert!(!PathBuf::from(&dir).join("demo-timing.foldvault").exists(), "the timing runs' scratch file is removed");
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
    for line in ["0  success", "1  not found", "2  usage error", "3  wrong key", "4  corruption", "5  I/O error"] {
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

/// `pagedump` counts as damage (exit 4, as `check` does) a page in use that is all zeros, both
/// commit slots zeroed (the database does not open), and a header copy that fails: each was
/// shown ("unwritten (all zeros)", "INVALID") and the run exited 0.
#[test]
fn pagedump_counts_zeroed_pages_in_use_and_a_bad_header_copy_as_damage() {
    use std::os::unix::fs::FileExt;
    let e = Env::new();
    let pass = e.pass();
    let zero = |db: &str, page: u64, pages: usize| {
        let f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
        f.write_all_at(&vec![0u8; 4096 * pages], page * 4096).unwrap();
    };
    let (db, leaf) = multi_leaf_db(&e, "db");
    zero(&db, leaf, 1);
    e.fv(&["check", &db, "--passphrase-file", &pass]).code(4);
    let o = e.pd(&[&db, "--page", &leaf.to_string(), "--passphrase-file", &pass]).code(4);
    assert!(o.text().contains("IN USE, but all zeros"), "{}", o.text());
    e.pd(&[&db, "--all", "--passphrase-file", &pass]).code(4);
    let (db2, _) = multi_leaf_db(&e, "db2");
    zero(&db2, 2, 2);
    e.fv(&["get", &db2, "other", "a", "--passphrase-file", &pass]).code(4);
    e.pd(&[&db2, "--passphrase-file", &pass]).code(4);
    // A free page of zeros, and the second commit slot of a new database (zeros), are not.
    let fresh = e.init_encrypted("fresh");
    e.pd(&[&fresh, "--passphrase-file", &pass]).ok();
    // A header copy that fails its checksum.
    let h = e.init_encrypted("h");
    flip_byte(&h, 100);
    e.fv(&["check", &h, "--passphrase-file", &pass]).code(4);
    e.pd(&[&h, "--passphrase-file", &pass]).code(4);
}

/// `demo DIR` writes only new files: a dangling link at one of its names is refused, not
/// followed (its backup was made where the link pointed).
#[test]
fn demo_refuses_a_dangling_link_at_one_of_its_names() {
    let e = Env::new();
    let dir = e.p("demo");
    std::fs::create_dir(&dir).unwrap();
    let elsewhere = e.p("elsewhere");
    std::os::unix::fs::symlink(&elsewhere, Path::new(&dir).join("demo.backup")).unwrap();
    e.fv(&["demo", &dir, "--records", "5"]).code(2);
    assert!(!Path::new(&elsewhere).exists(), "the link was followed");
}
