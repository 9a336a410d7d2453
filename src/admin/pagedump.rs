//! `pagedump`: a page-level view of a foldvault file, for debugging.
//!
//! Without a key (encrypted file) it shows the header fields, the key slots' kinds, and for each
//! page only its public trailer (tag, nonce, epoch): nothing else is readable. With a key, or
//! for a plaintext file, it opens each page on its own (`Pager::read_unanchored`, no parent tag
//! to compare with) and decodes it: branch keys and children with their tags, leaf entries,
//! overflow and free-list links, commit records. A page that fails to open is reported and the
//! dump goes on; the exit code is then 4, unless no commit record that opens uses the page (a
//! page freed before a key rotation, sealed under the destroyed key; a write of a commit that
//! never completed): that one is shown as a free page, not counted.
//!
//! Layer: admin, the one place in it that uses crate-private internals (`pager`, `crypto::seal`,
//! `btree::node`, `db::open`), read-only: the file is opened with a shared lock and nothing is
//! ever written.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;

use super::commands::Target;
use super::jsonl::{Obj, array};
use super::keys::{KeyArgs, Prompt};
use super::pageview::{Desc, commit_desc, describe_payload};
use super::{At, CliError, EXIT_CODES, HeaderInfo};
use crate::Error;
use crate::error::PageNo;
use crate::format::header::FileHeader;
use crate::format::page::{EPOCH_OFFSET, NONCE_OFFSET, NONCE_SIZE, TAG_OFFSET, TAG_SIZE, hex};
use crate::format::{COMMIT_PAGE_A, COMMIT_PAGE_B, FIRST_DATA_PAGE, PAGE_SIZE, get_u32};
use crate::pager::{Pager, freelist};
use crate::storage::{FileStorage, Storage};

/// Bytes of opened pages the dump's pager may cache.
const CACHE_BYTES: usize = 4 << 20;

/// Show the pages of a foldvault file (header, commit records, tree pages).
///
/// Without a key, an encrypted file shows only its header and each page's public trailer
/// (tag, nonce, epoch). With a key named on the command line (--passphrase-file, --key-file;
/// the FOLDVAULT_* variables are not read, since the output shows decrypted keys and value
/// prefixes), or for a plaintext file, pages are opened and decoded. pagedump never writes and
/// never prompts. Exit code 4 when a page in use fails to open (a free page that does not, such as
/// one freed before a key rotation, is shown and not counted), 2 for a page past the end.
#[derive(Parser, Debug)]
#[command(name = "pagedump", version, after_long_help = EXIT_CODES)]
pub struct PagedumpCli {
    /// The database file (or a database directory)
    pub db: PathBuf,
    /// Only page N
    #[arg(long, value_name = "N", conflicts_with_all = ["all", "tree"])]
    pub page: Option<u64>,
    /// Every page of the file (default: the header and commit pages 0-3)
    #[arg(long, conflicts_with = "tree")]
    pub all: bool,
    /// Draw the B-tree of the named tree level by level (needs the key for an encrypted file)
    #[arg(long, value_name = "NAME")]
    pub tree: Option<OsString>,
    /// One JSON object per page (or per level) instead of text
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub keys: KeyArgs,
}

/// What the dump works with.
pub(crate) struct Dumper {
    /// The database file (for messages).
    pub(crate) file: PathBuf,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) info: HeaderInfo,
    /// `None` when the file is encrypted and no key was given.
    pub(crate) pager: Option<Pager>,
    pub(crate) json: bool,
    /// Pages that failed to open (pages no commit uses not counted).
    pub(crate) failures: u64,
    /// Pages that could not be read at all (an I/O error): exit 5, not damage (exit 4).
    pub(crate) unreadable: Option<std::io::Error>,
    /// What each commit record that opens leaves unused (see [`unused_by_commits`]).
    unused: Vec<Unused>,
}

/// The pages one commit record leaves unused: free (its free list, with its delta applied) or
/// at and past its page count.
struct Unused {
    free: Vec<(PageNo, u32)>,
    page_count: u64,
}

/// What each commit record that opens leaves unused. A record whose free list does not read
/// leaves only the pages past its count. A page every record leaves unused holds nothing an
/// open could reach: a page freed before a rotation (sealed under the destroyed key), a write
/// of a commit that never completed. Such a page that does not open is shown, not counted as
/// damage.
fn unused_by_commits(pager: &Pager) -> Vec<Unused> {
    let limit = pager.page_limit();
    let file_pages = pager.file_len().map_or(0, |l| l / crate::format::PAGE_SIZE as u64);
    let mut out = Vec::new();
    for slot in [COMMIT_PAGE_A, COMMIT_PAGE_B] {
        let Ok(rec) = pager.read_commit(slot) else { continue };
        // Not past the file's end: a forged count near 2^64 would let a free-list reference's
        // byte offset overflow.
        let readable = rec.page_count.min(file_pages);
        pager.set_page_limit(readable);
        let free = freelist::read(pager, rec.freelist, readable)
            .and_then(|(free, chain)| freelist::apply_delta(free, &chain, &rec.free_delta, slot))
            .unwrap_or_default();
        out.push(Unused { free, page_count: rec.page_count });
    }
    pager.set_page_limit(limit);
    pager.clear_cache();
    out
}

impl Dumper {
    pub(crate) fn open(cli: &PagedumpCli) -> Result<Dumper, CliError> {
        let t = Target::resolve(&cli.db);
        t.must_exist()?;
        let storage: Arc<dyn Storage> = Arc::new(FileStorage::open_read_only(&t.file).at(&t.file)?);
        let info = super::read_header(&t.file).at(&t.file)?;
        if info.log_size.is_some_and(|n| n > 0) {
            // Shown raw, the file lacks what the log holds (SPEC §15): say so, on stderr.
            note!(
                "note: {} exists (left by a crash): pages written since its last checkpoint are in it, not \
                 shown here; opening the database replays it into the file",
                crate::storage::wal::log_of(&t.file).display()
            );
        }
        let h = &info.header;
        // The sealer every reader of a whole file uses: the file's format version (bound into
        // every page's seal), and both keys of an unfinished rotation.
        let pager = if !h.is_encrypted() {
            Some(Pager::new(storage.clone(), crate::db::open::file_sealer(h, None, None).at(&t.file)?, CACHE_BYTES))
        } else if !cli.keys.any_given() {
            None
        } else {
            let creds = cli.keys.credentials(Prompt::Never)?;
            let (dk, _slot) = crate::db::open::unlock(h, info.header_page, &creds).at(&t.file)?;
            let pager =
                Pager::new(storage.clone(), crate::db::open::file_sealer(h, Some(&dk), None).at(&t.file)?, CACHE_BYTES);
            // No page is sealed under an epoch above the newest commit record's: pages naming
            // one (damaged, or forged) are refused before a key is derived for them, so a
            // hostile file cannot make pagedump derive a key per page.
            if let Some(newest) = pager.newest_commit() {
                pager.sealer.set_max_epoch(newest.key_epoch);
            }
            Some(pager)
        };
        let unused = pager.as_ref().map(unused_by_commits).unwrap_or_default();
        Ok(Dumper { file: t.file, storage, info, pager, json: cli.json, failures: 0, unreadable: None, unused })
    }

    fn header_desc(&self) -> Desc {
        let h: &FileHeader = &self.info.header;
        let copy = if self.info.header_page == 0 { "A" } else { "B" };
        let mut d = Desc {
            lines: vec![format!("file header: copy {copy} (the newest valid copy)")],
            obj: Obj::new().str("kind", "file"),
        };
        let cipher = if h.is_encrypted() { h.cipher.name() } else { "none" };
        d.line(format!(
            "format version {}, cipher {cipher}, generation {}, file id {}",
            h.version,
            h.generation,
            hex(&h.file_id)
        ));
        d.line(format!(
            "file size {} bytes = {} pages; {}",
            self.info.file_size,
            self.info.page_count,
            // (A plaintext file's pages are read without a key: "key given: true" was printed
            // for every one. CLI review.)
            match (h.is_encrypted(), self.pager.is_some()) {
                (false, _) => "plaintext: pages read without a key",
                (true, true) => "key given: pages opened",
                (true, false) => "no key given: pages not opened",
            }
        ));
        let mut slots = Vec::new();
        for (i, s) in h.slots.iter().enumerate() {
            if let Some(s) = s.as_ref() {
                d.line(format!("slot {i}: {}", s.kind.name()));
                slots.push(Obj::new().num("slot", i as u64).str("kind", s.kind.name()).finish());
            }
        }
        if h.next_key.is_some() {
            d.line("rekey in progress (next key present)".into());
        }
        d.obj = d
            .obj
            .num("header_page", self.info.header_page)
            .num("format_version", h.version)
            .str("cipher", cipher)
            .num("generation", h.generation)
            .str("file_id", &hex(&h.file_id))
            .num("file_size", self.info.file_size)
            .num("page_count", self.info.page_count)
            .raw("slots", &array(slots));
        d
    }

    /// Describes page `p`.
    pub(crate) fn describe(&mut self, p: PageNo) -> Desc {
        let mut raw = vec![0u8; PAGE_SIZE];
        if let Err(e) = self.storage.read_at(p * PAGE_SIZE as u64, &mut raw) {
            return self.unreadable_page(p, e);
        }
        if p < COMMIT_PAGE_A {
            let mut d = Desc::new(p, format!("header copy {}", if p == 0 { "A" } else { "B" }));
            let (state, ok) = match FileHeader::decode(&raw, p) {
                Ok(h) => (format!("valid, generation {}", h.generation), true),
                Err(e) => (format!("INVALID: {e}"), false),
            };
            d.line(state.clone());
            d.obj = d.obj.str("kind", "header").bool("valid", ok).str("state", &state);
            // A copy that fails is damage, as `check` counts it (exit 4).
            self.failures += u64::from(!ok);
            return d;
        }
        if raw.iter().all(|b| *b == 0) {
            // All zeros where a commit uses the page (a commit slot, when no record opens) is
            // damage, as `check` counts it: it was shown as unwritten, and the run exited 0 on a
            // database that did not open (CLI review). Which pages are in use is known only with
            // a key, or of a plaintext file.
            let in_use =
                self.pager.is_some() && if p < FIRST_DATA_PAGE { self.unused.is_empty() } else { !self.unused(p) };
            self.failures += u64::from(in_use);
            let what = if in_use { "IN USE, but all zeros (damaged)" } else { "unwritten (all zeros)" };
            let mut d = Desc::new(p, what.into());
            d.obj = d.obj.str("kind", "unwritten").bool("in_use", in_use);
            return d;
        }
        let tag = hex(&raw[TAG_OFFSET..TAG_OFFSET + TAG_SIZE]);
        let nonce = hex(&raw[NONCE_OFFSET..NONCE_OFFSET + NONCE_SIZE]);
        let epoch = get_u32(&raw, EPOCH_OFFSET).unwrap_or(0);
        let trailer = format!("trailer: tag {tag}, nonce {nonce}, epoch {epoch}");
        let with_trailer = |mut d: Desc| {
            d.lines.insert(1, format!("  {trailer}"));
            d.obj = d.obj.str("tag", &tag).str("nonce", &nonce).num("epoch", epoch);
            d
        };
        let Some(pager) = &self.pager else {
            let what = if p < FIRST_DATA_PAGE { "commit record" } else { "data page" };
            let mut d = Desc::new(p, format!("{what}, sealed (no key: nothing but the trailer is readable)"));
            d.obj = d.obj.str("kind", "sealed");
            return with_trailer(d);
        };
        let result = if p < FIRST_DATA_PAGE {
            pager.read_commit(p).map(|r| commit_desc(p, &r))
        } else {
            pager.read_unanchored(p).and_then(|cp| describe_payload(p, cp.payload()))
        };
        let d = match result {
            Ok(d) => d,
            Err(e) => self.failed(p, e),
        };
        with_trailer(d)
    }

    /// Whether no commit record that opens uses page `p` (none opening: every page is used).
    fn unused(&self, p: PageNo) -> bool {
        p >= FIRST_DATA_PAGE
            && !self.unused.is_empty()
            && self.unused.iter().all(|u| p >= u.page_count || freelist::covers(&u.free, p))
    }

    /// A page that could not be read: kept as the run's I/O error (exit 5), not damage.
    fn unreadable_page(&mut self, p: PageNo, e: std::io::Error) -> Desc {
        let mut d = Desc::new(p, format!("cannot read: {e}"));
        d.obj = d.obj.str("kind", "unreadable").str("error", &e.to_string());
        self.unreadable.get_or_insert(e);
        d
    }

    fn failed(&mut self, p: PageNo, e: Error) -> Desc {
        if let Error::Io(io) = e {
            return self.unreadable_page(p, io);
        }
        if self.unused(p) {
            let mut d = Desc::new(p, format!("free page (not in use), does not open: {e}"));
            d.line(
                "no commit uses it: a page freed before a key rotation, or written by a commit that never completed"
                    .into(),
            );
            d.obj = d.obj.str("kind", "unused").str("error", &e.to_string());
            return d;
        }
        self.failures += 1;
        let mut d = Desc::new(p, format!("FAILS TO OPEN: {e}"));
        d.obj = d.obj.str("kind", "error").str("error", &e.to_string());
        d
    }

    pub(crate) fn emit(&self, o: &mut dyn Write, d: Desc) -> std::io::Result<()> {
        if self.json {
            writeln!(o, "{}", d.obj.finish())
        } else {
            for l in d.lines {
                writeln!(o, "{l}")?;
            }
            Ok(())
        }
    }
}

fn dump(cli: PagedumpCli) -> Result<(), CliError> {
    let mut dumper = Dumper::open(&cli)?;
    // After a pipe closed early (`| head`) the pages asked for are still opened, unshown, so
    // the exit code speaks for all of them.
    let mut o = super::verdict_stdout();
    if let Some(name) = &cli.tree {
        use std::os::unix::ffi::OsStrExt;
        super::pagetree::draw(&mut dumper, name.as_bytes(), &mut o)?;
    } else {
        let count = dumper.info.page_count;
        let pages: std::ops::Range<PageNo> = match (cli.page, cli.all) {
            (Some(n), _) if n >= count => {
                return Err(CliError::Usage(format!("page {n} is past the end of the file ({count} pages)")));
            }
            (Some(n), _) => n..n + 1,
            (None, true) => 0..count,
            (None, false) => 0..FIRST_DATA_PAGE.min(count),
        };
        let header = dumper.header_desc();
        dumper.emit(&mut o, header).map_err(CliError::stdout)?;
        for p in pages {
            let d = dumper.describe(p);
            dumper.emit(&mut o, d).map_err(CliError::stdout)?;
        }
        if cli.page.is_none() && !cli.all && !cli.json {
            writeln!(o, "(pages 0-3 only: --all for every page, --page N for one, --tree NAME for a tree)")
                .map_err(CliError::stdout)?;
        }
    }
    o.flush().map_err(CliError::stdout)?;
    // A page that could not be read says nothing of the file's state: the I/O error's exit
    // code (5), not damage's (4) (error review, low).
    if let Some(err) = dumper.unreadable.take() {
        return Err(CliError::Io { err, file: dumper.file.clone() });
    }
    // (The file itself, not the argument: a database directory named the directory. CLI review.)
    if dumper.failures > 0 {
        return Err(CliError::Verify(format!("{} pages failed to open ({})", dumper.failures, dumper.file.display())));
    }
    Ok(())
}

/// Parses `args` (program name first), runs the dump and returns the exit code.
pub fn run<I: IntoIterator<Item = OsString>>(args: I) -> i32 {
    let cli = match PagedumpCli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    super::report("pagedump", dump(cli))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page that cannot be read (an I/O error) is not counted as one that fails to open:
    /// the dump ends with the I/O error's exit code (5), not damage's (4).
    #[test]
    fn an_unreadable_page_is_an_io_error_not_damage() {
        use crate::storage::{FaultPlan, FaultyStorage};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        drop(crate::Config::new().file(&path).plaintext().use_env(false).open().unwrap());
        let cli = PagedumpCli::try_parse_from(["pagedump", path.to_str().unwrap()]).unwrap();
        let mut d = Dumper::open(&cli).unwrap();
        let failing = FaultyStorage::from_bytes(std::fs::read(&path).unwrap());
        failing.set_plan(FaultPlan { fail_at: Some(1), persistent: true, ..FaultPlan::default() });
        d.storage = Arc::new(failing);
        let desc = d.describe(2);
        assert!(desc.lines.iter().any(|l| l.contains("cannot read")), "{:?}", desc.lines);
        let desc = d.failed(FIRST_DATA_PAGE, Error::Io(std::io::Error::other("EIO")));
        assert!(desc.lines.iter().any(|l| l.contains("cannot read")), "{:?}", desc.lines);
        assert_eq!(d.failures, 0, "unreadable pages counted as damage");
        let e = CliError::Io { err: d.unreadable.take().expect("the I/O error kept"), file: path };
        assert_eq!(e.exit_code(), 5);
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        PagedumpCli::command().debug_assert();
    }
}
