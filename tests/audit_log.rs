//! The audit log: every `tracing` event the library emits, at every level, over a full
//! workload (create, write, read, flush, reopen with a wrong passphrase, corrupt a page and
//! read it, check). Asserts that security events are logged under `foldvault::audit` (the
//! wrong-key attempt; the corruption, with its page number) and that nothing captured — event
//! fields, span fields, error messages, `Debug` of configs and handles — contains user data,
//! the passphrase or the master key, raw, in hex (lower or upper case) or in base64.
//!
//! The subscriber is written by hand (no `tracing-subscriber` dependency) and installed as the
//! global default so that events from every thread (sealing threads, the flusher) are captured.

#[path = "common/tamper_util.rs"]
mod tamper_util;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use foldvault::{Config, CorruptReason, Credentials, Error, KdfParams, MasterKey, PageRole};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Metadata, Subscriber, span};

// ------------------------------------------------------------------------------------------
// A capturing subscriber.

#[derive(Debug, Clone)]
struct Captured {
    level: tracing::Level,
    target: String,
    /// Field name -> value as formatted (`Display` for strings, `Debug` otherwise).
    fields: Vec<(String, String)>,
    /// The whole event on one line, as a log formatter would write it.
    line: String,
}

#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_string(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_string(), value.to_string()));
    }
    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        // Both renderings a formatter might choose.
        self.0.push((field.name().to_string(), format!("{value:?}")));
        self.0.push((format!("{}.lossy", field.name()), String::from_utf8_lossy(value).into_owned()));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut s = format!("{value} / {value:?}");
        let mut src = value.source();
        while let Some(e) = src {
            let _ = write!(s, " / caused by {e} / {e:?}");
            src = e.source();
        }
        self.0.push((field.name().to_string(), s));
    }
}

struct Capture {
    events: Arc<Mutex<Vec<Captured>>>,
    next_span: AtomicU64,
}

impl Capture {
    fn push(&self, meta: &Metadata<'_>, kind: &str, fields: Fields) {
        let mut line = format!("{} {} {kind} {}:", meta.level(), meta.target(), meta.name());
        for (k, v) in &fields.0 {
            let _ = write!(line, " {k}={v}");
        }
        let c = Captured { level: *meta.level(), target: meta.target().to_string(), fields: fields.0, line };
        self.events.lock().unwrap().push(c);
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }
    fn new_span(&self, attrs: &span::Attributes<'_>) -> span::Id {
        let mut f = Fields::default();
        attrs.record(&mut f);
        self.push(attrs.metadata(), "span", f);
        span::Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &span::Id, values: &span::Record<'_>) {
        let mut f = Fields::default();
        values.record(&mut f);
        let mut line = String::from("span record:");
        for (k, v) in &f.0 {
            let _ = write!(line, " {k}={v}");
        }
        let c = Captured { level: tracing::Level::TRACE, target: "span-record".into(), fields: f.0, line };
        self.events.lock().unwrap().push(c);
    }
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut f = Fields::default();
        event.record(&mut f);
        self.push(event.metadata(), "event", f);
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

/// The tests that look at which events a step raised take turns (the capture is global).
static SERIAL: Mutex<()> = Mutex::new(());

fn captured() -> Arc<Mutex<Vec<Captured>>> {
    static EVENTS: OnceLock<Arc<Mutex<Vec<Captured>>>> = OnceLock::new();
    EVENTS
        .get_or_init(|| {
            let events = Arc::new(Mutex::new(Vec::new()));
            let sub = Capture { events: events.clone(), next_span: AtomicU64::new(0) };
            tracing::subscriber::set_global_default(sub).expect("no other global subscriber in this test binary");
            events
        })
        .clone()
}

// ------------------------------------------------------------------------------------------
// Encodings the secrets must not appear in.

fn hex(b: &[u8], upper: bool) -> String {
    b.iter().map(|x| if upper { format!("{x:02X}") } else { format!("{x:02x}") }).collect()
}

/// Standard base64 with padding, written by hand (RFC 4648 §4); `url` switches to the URL-safe
/// alphabet (§5).
fn base64(data: &[u8], url: bool) -> String {
    let alphabet: &[u8; 64] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The base64 text that must appear wherever `secret` is base64-encoded inside a longer
/// buffer, at each of the three byte alignments: encode with 0, 1 or 2 bytes in front and keep
/// only the characters that depend on the secret alone.
fn base64_cores(secret: &[u8], url: bool) -> Vec<String> {
    let mut v = Vec::new();
    for lead in 0..3usize {
        let mut buf = vec![0u8; lead];
        buf.extend_from_slice(secret);
        let enc = base64(&buf, url);
        // Groups of 3 input bytes -> 4 chars. Skip the group holding the leading bytes and the
        // last group (it may mix with whatever follows the secret).
        let first_group = lead.div_ceil(3);
        let full_groups = (lead + secret.len()) / 3;
        if full_groups > first_group + 1 {
            v.push(enc[first_group * 4..full_groups * 4].to_string());
        }
        if lead == 0 {
            v.push(enc.clone()); // padded, whole
            v.push(enc.trim_end_matches('=').to_string());
        }
    }
    v
}

/// Every form of `secret` (and of each of its 12-byte windows) to search for.
fn forms(name: &str, secret: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let w = secret.len().min(12);
    for start in 0..=secret.len() - w {
        let s = &secret[start..start + w];
        out.push((format!("{name}[{start}..] raw"), s.to_vec()));
        out.push((format!("{name}[{start}..] hex"), hex(s, false).into_bytes()));
        out.push((format!("{name}[{start}..] HEX"), hex(s, true).into_bytes()));
        for url in [false, true] {
            for c in base64_cores(s, url) {
                out.push((format!("{name}[{start}..] base64{}", if url { "url" } else { "" }), c.into_bytes()));
            }
        }
        // `Debug` of a byte slice: "[12, 34, ...]"
        let dec: Vec<String> = s.iter().map(|b| b.to_string()).collect();
        out.push((format!("{name}[{start}..] decimal"), dec.join(", ").into_bytes()));
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn base64_encoder_matches_rfc4648_vectors() {
    for (i, o) in
        [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE=")]
    {
        assert_eq!(base64(i.as_bytes(), false), o);
    }
    assert_eq!(base64(b"foobar", false), "Zm9vYmFy");
    assert_eq!(base64(&[0xfb, 0xff], false), "+/8=");
    assert_eq!(base64(&[0xfb, 0xff], true), "-_8=");
    // A core is found in the encoding of the secret inside a longer buffer, at any offset.
    let secret = b"some secret bytes!";
    for lead in 0..6 {
        let mut buf = vec![b'x'; lead];
        buf.extend_from_slice(secret);
        buf.extend_from_slice(b"trailing");
        let enc = base64(&buf, false);
        assert!(base64_cores(secret, false).iter().any(|c| enc.contains(c.as_str())), "lead {lead}");
    }
}

// ------------------------------------------------------------------------------------------

const MARKER: &str = "ZQXMARKERZQX";
const PASSPHRASE: &str = "Tr0ub4dor&3-audit-passphrase";

fn master_bytes() -> [u8; 32] {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(29).wrapping_add(0x9D);
    }
    k
}

fn cfg(path: &std::path::Path, master: [u8; 32], pass: &str) -> Config {
    Config::new()
        .file(path)
        .use_env(false)
        .flush_every_ms(Some(5)) // the background flusher runs too: its events are captured
        .kdf(KdfParams::insecure_fast())
        .master_key(MasterKey::from_bytes(master))
        .passphrase(pass)
}

#[test]
fn audit_log_records_attacks_and_leaks_no_secrets() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let events = captured();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audited.db");
    let key = master_bytes();
    let tree_name = format!("{MARKER}-tree");
    let mut extra_text: Vec<String> = Vec::new();

    // Create, write, read, flush.
    let c = cfg(&path, key, PASSPHRASE);
    extra_text.push(format!("{c:?}"));
    let db = c.open().expect("create");
    extra_text.push(format!("{db:?}"));
    let t = db.open_tree(&tree_name).unwrap();
    extra_text.push(format!("{t:?}"));
    for i in 0..1500u32 {
        let k = format!("{MARKER}/key/{i:05}");
        let v = format!("{MARKER} value {i} {}", "v".repeat(i as usize % 50));
        t.insert(k, v.into_bytes()).unwrap();
    }
    let big = format!("{MARKER}-overflow-").repeat(400);
    t.insert(format!("{MARKER}/big"), big.clone().into_bytes()).unwrap();
    db.insert(MARKER, MARKER.as_bytes().to_vec()).unwrap();
    for item in t.iter() {
        let (k, v) = item.unwrap();
        extra_text.push(format!("{k:?} {v:?}")); // IVec's Debug must not show the bytes
    }
    assert_eq!(&t.get(format!("{MARKER}/big")).unwrap().unwrap()[..], big.as_bytes());
    db.flush().unwrap();
    // A second durable commit, so the first one's pages are checked when read, not at open.
    db.open_tree("other").unwrap().insert("x", b"y".to_vec()).unwrap();
    db.flush().unwrap();
    let roles = db.check().unwrap().roles;
    drop((t, db));

    // Reopen with the wrong passphrase (right master key), then with the wrong master key.
    let before = events.lock().unwrap().len();
    let e = cfg(&path, key, "wrong passphrase").open().unwrap_err();
    assert!(matches!(e, Error::WrongKey { .. }), "{e:?}");
    extra_text.push(format!("{e} / {e:?}"));
    let mut wrong_key_events: Vec<Captured> = events.lock().unwrap()[before..].to_vec();
    let before = events.lock().unwrap().len();
    let e = cfg(&path, [0x11; 32], PASSPHRASE).open().unwrap_err();
    assert!(matches!(e, Error::WrongKey { .. }), "{e:?}");
    wrong_key_events.extend(events.lock().unwrap()[before..].iter().cloned());

    // Corrupt a page of the tree and read it. Try the tree's pages in order until one is found
    // whose damage is detected on read (not at open: a tree root is read at open).
    let pristine = tamper_util::read_file(&path);
    let tree_pages: Vec<u64> = roles.pages(|r| *r == PageRole::Tree(tree_name.clone())).collect();
    assert!(tree_pages.len() > 3);
    let mut damaged = None;
    for &p in &tree_pages {
        tamper_util::write_file(&path, &pristine);
        tamper_util::xor_byte(&path, p * tamper_util::PAGE as u64 + 500, 0x40);
        let before = events.lock().unwrap().len();
        let db = match cfg(&path, key, PASSPHRASE).open() {
            Ok(db) => db,
            Err(e) => {
                assert!(matches!(e, Error::Corrupt { page, .. } if page == p), "{e:?}");
                extra_text.push(format!("{e} / {e:?}"));
                continue;
            }
        };
        let t = db.open_tree(&tree_name).unwrap();
        let mut errs = Vec::new();
        for item in t.iter() {
            if let Err(e) = item {
                errs.push(e);
            }
        }
        for i in 0..1500u32 {
            if let Err(e) = t.get(format!("{MARKER}/key/{i:05}")) {
                errs.push(e);
            }
        }
        if errs.is_empty() {
            continue; // the page was not reached (e.g. an overflow page of the big value)
        }
        for e in &errs {
            assert!(matches!(e, Error::Corrupt { page, reason: CorruptReason::SealMismatch } if *page == p), "{e:?}");
            extra_text.push(format!("{e} / {e:?}"));
        }
        let read_events: Vec<Captured> = events.lock().unwrap()[before..].to_vec();
        let report = db.check().unwrap();
        assert!(report.problems.iter().any(|pr| pr.page == p));
        // (`Debug` of the report is not searched here: it shows tree names, see
        // `check_report_debug_hides_tree_names`.)
        for pr in &report.problems {
            extra_text.push(format!("page {} {:?}", pr.page, pr.reason));
        }
        drop((t, db));
        damaged = Some((p, read_events));
        break;
    }
    let (page, read_events) = damaged.expect("some page of the tree is checked on read");
    // Back up the undamaged database, verify it with and without the key, restore it, and damage
    // a copy of the backup: every step is logged too (and must log no secret).
    tamper_util::write_file(&path, &pristine);
    let before_backup = events.lock().unwrap().len();
    {
        let db = cfg(&path, key, PASSPHRASE).open().unwrap();
        let mut bytes = Vec::new();
        db.backup_to(&mut bytes, &mut |_| {}).unwrap();
        drop(db);
        let creds = foldvault::Credentials::master_key(MasterKey::from_bytes(key)).with_passphrase(PASSPHRASE);
        foldvault::backup::verify(std::io::Cursor::new(&bytes), None, &mut |_| {}).unwrap();
        foldvault::backup::verify(std::io::Cursor::new(&bytes), Some(&creds), &mut |_| {}).unwrap();
        let dst = path.with_extension("restored");
        foldvault::backup::restore(std::io::Cursor::new(&bytes), &dst, &creds, Default::default()).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 1;
        assert!(foldvault::backup::verify(std::io::Cursor::new(&bytes), None, &mut |_| {}).is_err());
    }
    let backup_events: Vec<Captured> = events.lock().unwrap()[before_backup..].to_vec();
    assert!(
        backup_events.iter().any(|e| e.target == "foldvault::audit"
            && e.fields.iter().any(|(k, v)| k == "message" && v.contains("backup check failed"))),
        "a damaged backup is not in the audit log"
    );

    // Let the flusher threads of every handle stop before reading the log.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let all: Vec<Captured> = events.lock().unwrap().clone();

    // --- security events are in the audit log ---
    let audit = |e: &Captured| e.target == "foldvault::audit";
    assert!(
        wrong_key_events.iter().any(|e| audit(e) && e.level <= tracing::Level::WARN),
        "no foldvault::audit warning for the wrong-key attempts; events: {:#?}",
        wrong_key_events.iter().map(|e| &e.line).collect::<Vec<_>>()
    );
    assert!(wrong_key_events.iter().any(is_wrong_key), "wrong-key event not marked event=wrong_key");
    let page_s = page.to_string();
    assert!(
        read_events.iter().any(|e| audit(e) && e.fields.iter().any(|(k, v)| k == "page" && *v == page_s)),
        "no foldvault::audit event naming corrupt page {page}; events: {:#?}",
        read_events.iter().map(|e| &e.line).collect::<Vec<_>>()
    );
    assert!(
        all.iter().any(|e| audit(e)
            && e.fields.iter().any(|(k, v)| k == "message" && v.contains("check"))
            && e.fields.iter().any(|(k, v)| k == "page" && *v == page_s)),
        "check's problem is not in the audit log"
    );

    // --- nothing secret anywhere ---
    let mut patterns = forms("marker", MARKER.as_bytes());
    patterns.extend(forms("passphrase", PASSPHRASE.as_bytes()));
    patterns.extend(forms("master key", &key));
    let mut texts: Vec<String> = all.iter().map(|e| e.line.clone()).collect();
    texts.extend(extra_text.iter().cloned());
    let mut leaks = BTreeSet::new();
    for t in &texts {
        for (what, pat) in &patterns {
            if contains(t.as_bytes(), pat) {
                leaks.insert(format!("{what} in: {}", &t[..t.len().min(200)]));
            }
        }
    }
    println!(
        "\nAUDIT LOG: {} events captured ({} under foldvault::audit); {} patterns searched in {} texts",
        all.len(),
        all.iter().filter(|e| audit(e)).count(),
        patterns.len(),
        texts.len()
    );
    for e in all.iter().filter(|e| audit(e)) {
        println!("  {}", e.line);
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.into_iter().collect::<Vec<_>>().join("\n"));
}

/// Tree names are confidential (SPEC.md §11 lists them with keys and values as assets, and §9.4
/// says they live only inside sealed pages); the crate keeps them out of `Debug` elsewhere
/// (`Tree`'s `Debug` prints only `name_len`, `IVec`'s prints only the length: "logs end up in
/// places the database file does not"). But `CheckReport`, `TreeReport`, `Problem` and
/// `PageRole` derive `Debug` (src/db/check.rs, src/btree/verify.rs), so `{:?}` of a check
/// report — the natural thing to log after `Db::check` — prints every tree name.
#[test]
fn check_report_debug_hides_tree_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("names.db");
    let db = cfg(&path, master_bytes(), PASSPHRASE).flush_every_ms(None).open().unwrap();
    let name = format!("{MARKER}-tree");
    db.open_tree(&name).unwrap().insert("k", b"v".to_vec()).unwrap();
    let report = db.check().unwrap();
    let text = format!("{report:?}");
    assert!(!text.contains(MARKER), "tree name in Debug of CheckReport: {}", &text[..text.len().min(300)]);
}

/// An audit event named `name` (its `event` field), at any level.
fn is_audit_event(e: &Captured, name: &str) -> bool {
    e.target == "foldvault::audit" && e.fields.iter().any(|(k, v)| k == "event" && v == name)
}

fn is_wrong_key(e: &Captured) -> bool {
    is_audit_event(e, "wrong_key")
}

/// A key rotation with two passphrases tries each on every slot, and a passphrase change probes
/// which slot a key opens: neither is a wrong-key attempt, and neither raises the event. An open
/// with a wrong passphrase does (the control).
#[test]
fn slot_probes_raise_no_wrong_key_event() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let events = captured();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probed.db");
    let open = |pass: &str| {
        Config::new()
            .file(&path)
            .use_env(false)
            .flush_every_ms(None)
            .kdf(KdfParams::insecure_fast())
            .passphrase(pass)
            .open()
    };
    let db = open("first").unwrap();
    db.insert("k", &b"v"[..]).unwrap();
    let fast = KdfParams::insecure_fast();
    db.add_slot(&Credentials::passphrase("second"), fast).unwrap();
    let before = events.lock().unwrap().len();
    db.rekey(&[Credentials::passphrase("first"), Credentials::passphrase("second")], &mut |_| {}).unwrap();
    db.change_passphrase(&Credentials::passphrase("second"), "third".into(), fast).unwrap();
    let raised: Vec<String> =
        events.lock().unwrap()[before..].iter().filter(|e| is_wrong_key(e)).map(|e| e.line.clone()).collect();
    assert!(raised.is_empty(), "slot probes raised wrong-key events: {raised:#?}");
    drop(db);
    let before = events.lock().unwrap().len();
    assert!(matches!(open("second"), Err(Error::WrongKey { .. })), "the changed passphrase still opens");
    assert!(events.lock().unwrap()[before..].iter().any(is_wrong_key), "a wrong passphrase at open raised no event");
    assert_eq!(open("third").unwrap().get("k").unwrap().as_deref(), Some(&b"v"[..]));
}

/// Opening a plaintext file with a key raises an audit warning (`plaintext_with_key`): such a
/// file may have been put in place of an encrypted one. Without a key, none.
#[test]
fn a_key_given_for_a_plaintext_file_is_an_audit_warning() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let events = captured();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.db");
    let base = || Config::new().file(&path).use_env(false).flush_every_ms(None);
    drop(base().plaintext().open().unwrap());
    let is_plain_with_key = |e: &Captured| is_audit_event(e, "plaintext_with_key") && e.level <= tracing::Level::WARN;
    let before = events.lock().unwrap().len();
    drop(base().open().unwrap());
    assert!(!events.lock().unwrap()[before..].iter().any(is_plain_with_key), "warned with no key given");
    let before = events.lock().unwrap().len();
    let db = base().passphrase("a key for an encrypted file").kdf(KdfParams::insecure_fast()).open().unwrap();
    assert!(!db.is_encrypted());
    assert!(events.lock().unwrap()[before..].iter().any(is_plain_with_key), "no warning with a key given");
    drop(db);
    // Creating one with a key and plaintext() asked for: the same warning (there was none).
    let before = events.lock().unwrap().len();
    let new = dir.path().join("new.db");
    let db = Config::new().file(&new).use_env(false).flush_every_ms(None).passphrase("unused").plaintext().open();
    assert!(!db.unwrap().is_encrypted());
    assert!(events.lock().unwrap()[before..].iter().any(is_plain_with_key), "no warning at creation with a key");
}

/// Opening a database file that has another hard link raises an audit warning (`hard_links`):
/// a log a crash leaves beside one name is not found by an open through the other. With one
/// name, none.
#[test]
fn a_database_file_with_other_hard_links_is_an_audit_warning() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let events = captured();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("linked.db");
    let open = || Config::new().file(&path).use_env(false).flush_every_ms(None).plaintext().open().unwrap();
    let is_linked = |e: &Captured| is_audit_event(e, "hard_links") && e.level <= tracing::Level::WARN;
    let before = events.lock().unwrap().len();
    drop(open());
    assert!(!events.lock().unwrap()[before..].iter().any(is_linked), "warned with one name");
    std::fs::hard_link(&path, dir.path().join("alias.db")).unwrap();
    let before = events.lock().unwrap().len();
    drop(open());
    assert!(events.lock().unwrap()[before..].iter().any(is_linked), "no warning with two names");
}
