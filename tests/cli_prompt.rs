//! The passphrase prompt, run on a real terminal: `script` (util-linux) gives the command a
//! pseudo-terminal, and the test types into it as an operator would. What is checked: the typed
//! passphrase is taken with the terminal's erase key applied, is never echoed, a cancel key ends
//! the command, and afterwards the terminal has exactly the modes it had before, whatever they
//! were. Skipped (with a line on standard error) where `script` is not installed.

#[path = "common/cli_env.rs"]
mod cli_env;

use cli_env::*;
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

/// A shell command run on a pseudo-terminal, with what it prints read as it comes.
struct Terminal {
    child: Child,
    input: Option<ChildStdin>,
    output: Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl Terminal {
    /// `sh -c script` on a new pseudo-terminal in `dir`; `None` if `script` is not installed.
    fn start(dir: &std::path::Path, script: &str) -> Option<Terminal> {
        let installed = Command::new("script").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
        if !installed.is_ok_and(|s| s.success()) {
            eprintln!("skipped: `script` (util-linux) is not installed");
            return None;
        }
        let mut child = Command::new("script")
            .args(["-qec", script, "/dev/null"])
            .current_dir(dir)
            .env_remove("FOLDVAULT_PASSPHRASE")
            .env_remove("FOLDVAULT_KEY_FILE")
            .env("SHELL", "/bin/sh")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (send, output) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || send.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let input = child.stdin.take();
        Some(Terminal { child, input, output, seen: Vec::new() })
    }

    /// Waits until the output holds `text` (a minute at most: then the command is killed and
    /// the test fails with what it printed).
    fn wait_for(&mut self, text: &str) {
        while !contains(&self.seen, text.as_bytes()) {
            match self.output.recv_timeout(Duration::from_secs(60)) {
                Ok(chunk) => self.seen.extend_from_slice(&chunk),
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("no {text:?} on the terminal; it shows:\n{}", String::from_utf8_lossy(&self.seen));
                }
            }
        }
    }

    fn type_keys(&mut self, keys: &[u8]) {
        let input = self.input.as_mut().unwrap();
        input.write_all(keys).unwrap();
        input.flush().unwrap();
    }

    /// Waits for the end of the script and returns all it printed. Standard input stays open
    /// until then: `script` would pass its end on as an end-of-input key.
    fn finish(mut self) -> String {
        self.wait_for("END");
        let _ = self.child.wait();
        drop(self.input.take());
        String::from_utf8_lossy(&self.seen).into_owned()
    }
}

/// The shell script: the terminal's modes are set to something unusual (echo already off,
/// flow control off), printed, the command run, its exit code and the modes printed again.
fn around(command: &str) -> String {
    format!("stty -echo -ixon; echo \"BEFORE $(stty -g)\"; {command}; echo \"RC=$?\"; echo \"AFTER $(stty -g) END\"")
}

/// The terminal's modes after the command are the ones it had before.
fn same_modes(shown: &str) {
    assert_eq!(line_after(shown, "BEFORE "), line_after(shown, "AFTER "), "the terminal's modes changed:\n{shown}");
}

fn line_after<'a>(text: &'a str, label: &str) -> &'a str {
    let start = text.find(label).unwrap_or_else(|| panic!("no {label} in:\n{text}")) + label.len();
    text[start..].split(['\r', '\n', ' ']).next().unwrap()
}

/// `foldvault init DB` run on a terminal (see `around`), once it shows its first prompt; `None`
/// where `script` is not installed.
fn init_at_the_prompt(e: &Env, db: &str) -> Option<Terminal> {
    let command = format!("{} init {db} {}", env!("CARGO_BIN_EXE_foldvault"), FAST_KDF.join(" "));
    let mut t = Terminal::start(e.dir.path(), &around(&command))?;
    t.wait_for("New passphrase: ");
    Some(t)
}

#[test]
fn a_typed_passphrase_is_hidden_edited_and_leaves_the_terminal_as_it_was() {
    let e = Env::new();
    let db = e.p("db");
    let Some(mut t) = init_at_the_prompt(&e, &db) else {
        return;
    };
    // A wrong last character, erased with DEL, and a word killed with ^U, then the rest.
    t.type_keys(b"junk\x15");
    t.type_keys(PASS.as_bytes());
    t.type_keys(b"X\x7f\r");
    t.wait_for("Repeat passphrase: ");
    t.type_keys(PASS.as_bytes());
    t.type_keys(b"\r");
    let shown = t.finish();
    assert_eq!(line_after(&shown, "RC="), "0", "{shown}");
    same_modes(&shown);
    assert!(!shown.contains(PASS) && !shown.contains("junk"), "the passphrase was echoed:\n{shown}");
    // What was typed, as edited, is the passphrase.
    assert_eq!(e.fv(&["get", &db, "t", "k", "--passphrase-file", &e.pass()]).code, 1);
}

#[test]
fn a_cancel_key_at_the_prompt_ends_the_command_and_leaves_the_terminal_as_it_was() {
    let e = Env::new();
    let db = e.p("db");
    let Some(mut t) = init_at_the_prompt(&e, &db) else {
        return;
    };
    t.type_keys(b"half-typed\x03");
    let shown = t.finish();
    assert_eq!(line_after(&shown, "RC="), "2", "{shown}");
    assert!(shown.contains("cancelled at the passphrase prompt"), "{shown}");
    same_modes(&shown);
    assert!(!std::path::Path::new(&db).exists(), "a database was made");
}
