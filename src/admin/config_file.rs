//! `--config FILE`: engine settings for the command line from a small TOML file.
//!
//! ```toml
//! cipher = "aes-256-gcm"          # or "chacha20-poly1305" (init, encrypt, import-sled)
//! cache_capacity = "64MiB"        # bytes, or with KiB / MiB / GiB
//!
//! [kdf]                           # Argon2id for new passphrase slots (init, encrypt,
//!                                 # import-sled, slots add-passphrase)
//! memory_mib = 32
//! iterations = 3
//! parallelism = 1
//!
//! [backup]
//! verify_after = true             # `backup` re-reads and verifies what it wrote
//! ```
//! `durability` and `flush_every_ms` are read (for a file shared with a program) and not used:
//! every command makes its writes durable before it exits, and says so once at start-up.
//! Command-line options go over the file's settings.
//!
//! The parser takes exactly this subset of TOML (tables, `key = value` with integers, strings,
//! booleans, comments); anything else is a usage error naming the line. The file is untrusted
//! input: sizes are bounded and nothing panics.

use crate::{CipherId, Config, Durability, KdfParams};

/// Settings read from a config file (absent keys keep the defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileSettings {
    pub cipher: Option<CipherId>,
    pub cache_capacity: Option<u64>,
    pub durability: Option<Durability>,
    pub flush_every_ms: Option<u64>,
    pub kdf_memory_mib: Option<u32>,
    pub kdf_iterations: Option<u32>,
    pub kdf_parallelism: Option<u32>,
    pub backup_verify_after: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Int(u64),
    Str(String),
    Bool(bool),
}

fn parse_value(v: &str) -> Option<Value> {
    let v = v.trim();
    if let Some(s) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        if s.contains('"') || s.contains('\\') {
            return None;
        }
        return Some(Value::Str(s.to_string()));
    }
    match v {
        "true" => return Some(Value::Bool(true)),
        "false" => return Some(Value::Bool(false)),
        _ => {}
    }
    parse_int(v).map(Value::Int)
}

/// A TOML decimal integer: digits, an underscore only between two digits, no sign, no leading
/// zero (`1_000`, not `1_`, `_8`, `1__0`, `+8` or `010`); `None` past `u64::MAX`.
fn parse_int(v: &str) -> Option<u64> {
    let b = v.as_bytes();
    let digits_ok = b.iter().all(|c| c.is_ascii_digit() || *c == b'_')
        && b.first().is_some_and(u8::is_ascii_digit)
        && b.last().is_some_and(u8::is_ascii_digit)
        && !v.contains("__")
        && !(b.len() > 1 && b[0] == b'0');
    if !digits_ok {
        return None;
    }
    v.replace('_', "").parse::<u64>().ok()
}

fn parse_size(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => Some(*n),
        Value::Str(s) => {
            let s = s.trim();
            let (num, mul) = if let Some(n) = s.strip_suffix("GiB") {
                (n, 1u64 << 30)
            } else if let Some(n) = s.strip_suffix("MiB") {
                (n, 1 << 20)
            } else if let Some(n) = s.strip_suffix("KiB") {
                (n, 1 << 10)
            } else {
                (s, 1)
            };
            parse_int(num.trim())?.checked_mul(mul)
        }
        Value::Bool(_) => None,
    }
}

/// The keys each section takes ("" is the top level).
const KEYS: [(&str, &[&str]); 3] = [
    ("", &["cipher", "cache_capacity", "durability", "flush_every_ms"]),
    ("kdf", &["memory_mib", "iterations", "parallelism"]),
    ("backup", &["verify_after"]),
];

/// Parses the config file's text. Errors name the line, and repeat only names this parser
/// knows: a file given by mistake (a passphrase file, say) is not echoed to the terminal.
/// A section or key given twice is an error, not the last one winning.
pub fn parse(text: &str) -> Result<FileSettings, String> {
    if text.len() > 1 << 20 {
        return Err("config file larger than 1 MiB".into());
    }
    let mut out = FileSettings::default();
    let mut section: &str = "";
    // Where each section, and each (section, key), was first given.
    let mut sections_seen: Vec<(&str, usize)> = Vec::new();
    let mut keys_seen: Vec<(&str, &str, usize)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = match raw.find('#') {
            Some(i) if !raw[..i].contains('"') || raw[..i].matches('"').count() % 2 == 0 => &raw[..i],
            _ => raw,
        }
        .trim();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            let Some(&(known, _)) = KEYS.iter().find(|(s, _)| !s.is_empty() && *s == name.trim()) else {
                return Err(format!("line {line_no}: unknown section (this file takes [kdf] and [backup])"));
            };
            if let Some((_, l)) = sections_seen.iter().find(|(s, _)| *s == known) {
                return Err(format!("line {line_no}: section [{known}] given twice (first on line {l})"));
            }
            sections_seen.push((known, line_no));
            section = known;
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!("line {line_no}: expected `key = value`"));
        };
        let keys = KEYS.iter().find(|(s, _)| *s == section).map(|(_, k)| *k).unwrap_or_default();
        let Some(&key) = keys.iter().find(|known| **known == k.trim()) else {
            let shown = if section.is_empty() { "the top level".to_string() } else { format!("[{section}]") };
            return Err(format!("line {line_no}: unknown key (keys of {shown}: {})", keys.join(", ")));
        };
        if let Some((_, _, l)) = keys_seen.iter().find(|(s, k, _)| *s == section && *k == key) {
            return Err(format!("line {line_no}: `{key}` given twice (first on line {l})"));
        }
        keys_seen.push((section, key, line_no));
        let value = parse_value(v).ok_or_else(|| format!("line {line_no}: cannot read the value of `{key}`"))?;
        let bad = || format!("line {line_no}: bad value for `{key}`");
        let int32 = |v: &Value| match v {
            Value::Int(n) if *n <= u32::MAX as u64 => Some(*n as u32),
            _ => None,
        };
        match (section, key) {
            ("", "cipher") => {
                out.cipher = Some(match &value {
                    Value::Str(s) if s == "aes-256-gcm" => CipherId::Aes256Gcm,
                    Value::Str(s) if s == "chacha20-poly1305" => CipherId::ChaCha20Poly1305,
                    _ => return Err(bad()),
                })
            }
            ("", "cache_capacity") => out.cache_capacity = Some(parse_size(&value).ok_or_else(bad)?),
            ("", "durability") => {
                out.durability = Some(match &value {
                    Value::Str(s) if s == "immediate" => Durability::Immediate,
                    Value::Str(s) if s == "eventual" => Durability::Eventual,
                    _ => return Err(bad()),
                })
            }
            ("", "flush_every_ms") => match value {
                Value::Int(n) => out.flush_every_ms = Some(n),
                _ => return Err(bad()),
            },
            ("kdf", "memory_mib") => out.kdf_memory_mib = Some(int32(&value).ok_or_else(bad)?),
            ("kdf", "iterations") => out.kdf_iterations = Some(int32(&value).ok_or_else(bad)?),
            ("kdf", "parallelism") => out.kdf_parallelism = Some(int32(&value).ok_or_else(bad)?),
            ("backup", "verify_after") => match value {
                Value::Bool(b) => out.backup_verify_after = Some(b),
                _ => return Err(bad()),
            },
            _ => return Err(format!("line {line_no}: `{key}` is not read here")),
        }
    }
    Ok(out)
}

static INSTALLED: std::sync::OnceLock<FileSettings> = std::sync::OnceLock::new();

/// Makes `s` the settings every command's configuration starts from (`--config`).
pub fn install(s: FileSettings) {
    let _ = INSTALLED.set(s);
}

/// The installed settings (defaults when no `--config` was given).
pub fn installed() -> FileSettings {
    INSTALLED.get().cloned().unwrap_or_default()
}

impl FileSettings {
    /// The Argon2id parameters for a new passphrase slot: the defaults, with the file's
    /// `[kdf]` keys over them (command-line options go over these).
    pub fn kdf(&self) -> KdfParams {
        let d = KdfParams::default();
        KdfParams {
            memory_kib: self.kdf_memory_mib.map(|m| m.saturating_mul(1024)).unwrap_or(d.memory_kib),
            iterations: self.kdf_iterations.unwrap_or(d.iterations),
            parallelism: self.kdf_parallelism.unwrap_or(d.parallelism),
        }
    }

    /// The cipher of a new database: the file's, else AES-256-GCM.
    pub fn cipher(&self) -> CipherId {
        self.cipher.unwrap_or(CipherId::Aes256Gcm)
    }

    /// Keys the file sets that the command line does not use, for a note at start-up.
    pub fn unused_on_the_command_line(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.durability.is_some() {
            v.push("durability");
        }
        if self.flush_every_ms.is_some() {
            v.push("flush_every_ms");
        }
        v
    }

    /// Applies the settings to a `Config`.
    pub fn apply(&self, mut c: Config) -> Config {
        if let Some(x) = self.cipher {
            c = c.cipher(x);
        }
        if let Some(x) = self.cache_capacity {
            c = c.cache_capacity(x);
        }
        if let Some(x) = self.durability {
            c = c.durability(x);
        }
        if let Some(x) = self.flush_every_ms {
            c = c.flush_every_ms(Some(x));
        }
        if self.kdf_memory_mib.is_some() || self.kdf_iterations.is_some() || self.kdf_parallelism.is_some() {
            c = c.kdf(self.kdf());
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let s = parse(
            "cipher = \"aes-256-gcm\"\ncache_capacity = \"64MiB\" # comment\ndurability = \"immediate\"\n\
             flush_every_ms = 500\n\n[kdf]\nmemory_mib = 8\niterations = 2\n[backup]\nverify_after = true\n",
        )
        .unwrap();
        assert_eq!(s.cache_capacity, Some(64 << 20));
        assert_eq!(s.durability, Some(Durability::Immediate));
        assert_eq!(s.kdf_memory_mib, Some(8));
        assert_eq!(s.backup_verify_after, Some(true));
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        for t in [
            "x",
            "[nope]",
            "cipher = 3",
            "cache_capacity = \"99999999999999GiB\"",
            "a = \"b",
            "= 1",
            "[kdf]\nmemory_mib = 99999999999",
            // TOML refuses these integers; so does this parser.
            "flush_every_ms = 1_",
            "flush_every_ms = _8",
            "flush_every_ms = 1__0",
            "flush_every_ms = +8",
            "flush_every_ms = 010",
            "cache_capacity = \"08MiB\"",
            // Given twice: an error naming the first line, not the last value winning.
            "[kdf]\nmemory_mib = 64\n[kdf]\nmemory_mib = 1",
            "[kdf]\nmemory_mib = 64\nmemory_mib = 1",
        ] {
            assert!(parse(t).is_err(), "{t}");
        }
        assert_eq!(parse("flush_every_ms = 1_000\n").unwrap().flush_every_ms, Some(1000));
        assert_eq!(parse("flush_every_ms = 0\n").unwrap().flush_every_ms, Some(0));
        let twice = parse("[kdf]\nmemory_mib = 64\n\n[kdf]\nmemory_mib = 1\n").unwrap_err();
        assert!(twice.contains("line 4") && twice.contains("line 1"), "{twice}");
    }

    /// A file given by mistake (a passphrase file, say) is not repeated in the error.
    #[test]
    fn errors_do_not_echo_unknown_names() {
        for t in ["hunter2=x", "[hunter2]", "[kdf]\nhunter2 = 1", "hunter2 = \"x"] {
            let e = parse(t).unwrap_err();
            assert!(!e.contains("hunter2"), "{t}: {e}");
        }
    }
}
