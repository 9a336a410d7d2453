//! SPEC.md's offset tables against the code's constants.
//!
//! Every Markdown table in SPEC.md whose header has the columns `offset`, `size` and `constant`
//! is a layout table. In each of its rows, every identifier in backticks in the `constant`
//! column names a constant of `foldvault::format` or `foldvault::backup::format` (SPEC.md §2
//! resolves unqualified names in `format::header`, §3 in `format::page`, §5 in `format::commit`,
//! §13 in `backup::format`, falling back to `format`; `page::X`-style names are explicit, and
//! §4 uses only those). The test checks:
//! - a name ending in `_OFFSET` or `_END` equals the row's offset;
//! - a name ending in `_SIZE` equals the row's size, or, in an end row (size `—`), its offset;
//! - rows are contiguous: each row's offset + size is the next row's offset;
//! - every layout constant of the header, key slot, next-key block, page trailer, page header,
//!   page reference, commit record and backup stream appears in some row (so a new or renamed
//!   field cannot go unnoticed);
//! - a backticked name that resolves to nothing fails the test (a typo or a renamed constant).
//!
//! Further tests check the facts SPEC.md states in prose (fixed pages, magics, backup chunk
//! sizes) and that the key-derivation context strings of SPEC.md §6.1 are exactly those of
//! `src/crypto/keys.rs` (and the root digest's, in `src/db/engine.rs`).

use foldvault::backup::format as backup;
use foldvault::format::{self, commit, header, page};

const SPEC: &str = include_str!("../SPEC.md");

/// The value of a constant, by module and name.
fn lookup(module: &str, name: &str) -> Option<usize> {
    let v = match (module, name) {
        ("header", "MAGIC_OFFSET") => header::MAGIC_OFFSET,
        ("header", "VERSION_OFFSET") => header::VERSION_OFFSET,
        ("header", "CIPHER_OFFSET") => header::CIPHER_OFFSET,
        ("header", "SLOT_COUNT_OFFSET") => header::SLOT_COUNT_OFFSET,
        ("header", "PAGE_SIZE_OFFSET") => header::PAGE_SIZE_OFFSET,
        ("header", "FILE_ID_OFFSET") => header::FILE_ID_OFFSET,
        ("header", "GENERATION_OFFSET") => header::GENERATION_OFFSET,
        ("header", "FLAGS_OFFSET") => header::FLAGS_OFFSET,
        ("header", "RESERVED_OFFSET") => header::RESERVED_OFFSET,
        ("header", "NEXT_KEY_OFFSET") => header::NEXT_KEY_OFFSET,
        ("header", "NEXT_KEY_SIZE") => header::NEXT_KEY_SIZE,
        ("header", "SLOTS_OFFSET") => header::SLOTS_OFFSET,
        ("header", "SLOT_SIZE") => header::SLOT_SIZE,
        ("header", "SLOTS_END") => header::SLOTS_END,
        ("header", "MAC_OFFSET") => header::MAC_OFFSET,
        ("header", "MAC_SIZE") => header::MAC_SIZE,
        ("header", "CHECKSUM_OFFSET") => header::CHECKSUM_OFFSET,
        ("header", "CHECKSUM_SIZE") => header::CHECKSUM_SIZE,
        ("header", "HEADER_END") => header::HEADER_END,
        ("header", "SLOT_KIND_OFFSET") => header::SLOT_KIND_OFFSET,
        ("header", "SLOT_KDF_OFFSET") => header::SLOT_KDF_OFFSET,
        ("header", "SLOT_MEMORY_OFFSET") => header::SLOT_MEMORY_OFFSET,
        ("header", "SLOT_ITERATIONS_OFFSET") => header::SLOT_ITERATIONS_OFFSET,
        ("header", "SLOT_PARALLELISM_OFFSET") => header::SLOT_PARALLELISM_OFFSET,
        ("header", "SLOT_SALT_OFFSET") => header::SLOT_SALT_OFFSET,
        ("header", "SLOT_BOUND_END") => header::SLOT_BOUND_END,
        ("header", "SLOT_NONCE_OFFSET") => header::SLOT_NONCE_OFFSET,
        ("header", "SLOT_WRAPPED_OFFSET") => header::SLOT_WRAPPED_OFFSET,
        ("header", "SLOT_TAG_OFFSET") => header::SLOT_TAG_OFFSET,
        ("header", "SLOT_END") => header::SLOT_END,
        ("header", "NEXT_FLAGS_OFFSET") => header::NEXT_FLAGS_OFFSET,
        ("header", "NEXT_FIRST_EPOCH_OFFSET") => header::NEXT_FIRST_EPOCH_OFFSET,
        ("header", "NEXT_NONCE_OFFSET") => header::NEXT_NONCE_OFFSET,
        ("header", "NEXT_WRAPPED_OFFSET") => header::NEXT_WRAPPED_OFFSET,
        ("header", "NEXT_TAG_OFFSET") => header::NEXT_TAG_OFFSET,
        ("header", "NEXT_END") => header::NEXT_END,
        ("page", "PAYLOAD_SIZE") => page::PAYLOAD_SIZE,
        ("page", "TAG_OFFSET") => page::TAG_OFFSET,
        ("page", "TAG_SIZE") => page::TAG_SIZE,
        ("page", "NONCE_OFFSET") => page::NONCE_OFFSET,
        ("page", "NONCE_SIZE") => page::NONCE_SIZE,
        ("page", "EPOCH_OFFSET") => page::EPOCH_OFFSET,
        ("page", "EPOCH_SIZE") => page::EPOCH_SIZE,
        ("page", "TRAILER_END") => page::TRAILER_END,
        ("page", "AAD_SIZE") => page::AAD_SIZE,
        ("page", "KIND_OFFSET") => page::KIND_OFFSET,
        ("page", "COUNT_OFFSET") => page::COUNT_OFFSET,
        ("page", "GENERATION_OFFSET") => page::GENERATION_OFFSET,
        ("page", "PAGE_HEADER_SIZE") => page::PAGE_HEADER_SIZE,
        ("page", "PAGE_REF_PAGE_OFFSET") => page::PAGE_REF_PAGE_OFFSET,
        ("page", "PAGE_REF_TAG_OFFSET") => page::PAGE_REF_TAG_OFFSET,
        ("page", "PAGE_REF_GENERATION_OFFSET") => page::PAGE_REF_GENERATION_OFFSET,
        ("page", "PAGE_REF_SIZE") => page::PAGE_REF_SIZE,
        ("commit", "SEQ_OFFSET") => commit::SEQ_OFFSET,
        ("commit", "PREV_DURABLE_OFFSET") => commit::PREV_DURABLE_OFFSET,
        ("commit", "CATALOG_REF_OFFSET") => commit::CATALOG_REF_OFFSET,
        ("commit", "FREELIST_REF_OFFSET") => commit::FREELIST_REF_OFFSET,
        ("commit", "PAGE_COUNT_OFFSET") => commit::PAGE_COUNT_OFFSET,
        ("commit", "KEY_EPOCH_OFFSET") => commit::KEY_EPOCH_OFFSET,
        ("commit", "OLDEST_EPOCH_OFFSET") => commit::OLDEST_EPOCH_OFFSET,
        ("commit", "SEALS_IN_EPOCH_OFFSET") => commit::SEALS_IN_EPOCH_OFFSET,
        ("commit", "HEADER_GENERATION_OFFSET") => commit::HEADER_GENERATION_OFFSET,
        ("commit", "REKEY_CURSOR_OFFSET") => commit::REKEY_CURSOR_OFFSET,
        ("commit", "COMMIT_END") => commit::COMMIT_END,
        ("commit", "FREE_DELTA_OFFSET") => commit::FREE_DELTA_OFFSET,
        ("commit", "FREED_COUNT_OFFSET") => commit::FREED_COUNT_OFFSET,
        ("commit", "USED_COUNT_OFFSET") => commit::USED_COUNT_OFFSET,
        ("commit", "DELTA_PAGES_OFFSET") => commit::DELTA_PAGES_OFFSET,
        ("backup", "B_MAGIC_OFFSET") => backup::B_MAGIC_OFFSET,
        ("backup", "B_VERSION_OFFSET") => backup::B_VERSION_OFFSET,
        ("backup", "B_FLAGS_OFFSET") => backup::B_FLAGS_OFFSET,
        ("backup", "B_PAGE_SIZE_OFFSET") => backup::B_PAGE_SIZE_OFFSET,
        ("backup", "B_FILE_ID_OFFSET") => backup::B_FILE_ID_OFFSET,
        ("backup", "B_BACKUP_ID_OFFSET") => backup::B_BACKUP_ID_OFFSET,
        ("backup", "B_SEQ_OFFSET") => backup::B_SEQ_OFFSET,
        ("backup", "B_ROOT_DIGEST_OFFSET") => backup::B_ROOT_DIGEST_OFFSET,
        ("backup", "B_CREATED_OFFSET") => backup::B_CREATED_OFFSET,
        ("backup", "B_PAGE_COUNT_OFFSET") => backup::B_PAGE_COUNT_OFFSET,
        ("backup", "B_CHUNK_PAGES_OFFSET") => backup::B_CHUNK_PAGES_OFFSET,
        ("backup", "B_KEY_EPOCH_OFFSET") => backup::B_KEY_EPOCH_OFFSET,
        ("backup", "B_CATALOG_OFFSET") => backup::B_CATALOG_OFFSET,
        ("backup", "B_SEALS_OFFSET") => backup::B_SEALS_OFFSET,
        ("backup", "B_LIVE_PAGES_OFFSET") => backup::B_LIVE_PAGES_OFFSET,
        ("backup", "B_MAC_OFFSET") => backup::B_MAC_OFFSET,
        ("backup", "B_FIELDS_END") => backup::B_FIELDS_END,
        ("backup", "B_CHECKSUM_OFFSET") => backup::B_CHECKSUM_OFFSET,
        ("backup", "CHUNK_HEADER_SIZE") => backup::CHUNK_HEADER_SIZE,
        ("backup", "CHUNK_ENTRY_SIZE") => backup::CHUNK_ENTRY_SIZE,
        ("backup", "TRAILER_SIZE") => backup::TRAILER_SIZE,
        ("format", "PAGE_SIZE") => format::PAGE_SIZE,
        _ => return None,
    };
    Some(v)
}

/// Constants that must each appear in some layout table of SPEC.md.
const REQUIRED: &[(&str, &str)] = &[
    ("header", "MAGIC_OFFSET"),
    ("header", "VERSION_OFFSET"),
    ("header", "CIPHER_OFFSET"),
    ("header", "SLOT_COUNT_OFFSET"),
    ("header", "PAGE_SIZE_OFFSET"),
    ("header", "FILE_ID_OFFSET"),
    ("header", "GENERATION_OFFSET"),
    ("header", "FLAGS_OFFSET"),
    ("header", "RESERVED_OFFSET"),
    ("header", "NEXT_KEY_OFFSET"),
    ("header", "NEXT_KEY_SIZE"),
    ("header", "SLOTS_OFFSET"),
    ("header", "SLOTS_END"),
    ("header", "MAC_OFFSET"),
    ("header", "MAC_SIZE"),
    ("header", "CHECKSUM_OFFSET"),
    ("header", "CHECKSUM_SIZE"),
    ("header", "HEADER_END"),
    ("header", "SLOT_KIND_OFFSET"),
    ("header", "SLOT_KDF_OFFSET"),
    ("header", "SLOT_MEMORY_OFFSET"),
    ("header", "SLOT_ITERATIONS_OFFSET"),
    ("header", "SLOT_PARALLELISM_OFFSET"),
    ("header", "SLOT_SALT_OFFSET"),
    ("header", "SLOT_BOUND_END"),
    ("header", "SLOT_NONCE_OFFSET"),
    ("header", "SLOT_WRAPPED_OFFSET"),
    ("header", "SLOT_TAG_OFFSET"),
    ("header", "SLOT_END"),
    ("header", "SLOT_SIZE"),
    ("header", "NEXT_FLAGS_OFFSET"),
    ("header", "NEXT_FIRST_EPOCH_OFFSET"),
    ("header", "NEXT_NONCE_OFFSET"),
    ("header", "NEXT_WRAPPED_OFFSET"),
    ("header", "NEXT_TAG_OFFSET"),
    ("header", "NEXT_END"),
    ("page", "PAYLOAD_SIZE"),
    ("page", "TAG_OFFSET"),
    ("page", "TAG_SIZE"),
    ("page", "NONCE_OFFSET"),
    ("page", "NONCE_SIZE"),
    ("page", "EPOCH_OFFSET"),
    ("page", "EPOCH_SIZE"),
    ("page", "TRAILER_END"),
    ("page", "AAD_SIZE"),
    ("page", "KIND_OFFSET"),
    ("page", "COUNT_OFFSET"),
    ("page", "GENERATION_OFFSET"),
    ("page", "PAGE_HEADER_SIZE"),
    ("page", "PAGE_REF_PAGE_OFFSET"),
    ("page", "PAGE_REF_TAG_OFFSET"),
    ("page", "PAGE_REF_GENERATION_OFFSET"),
    ("page", "PAGE_REF_SIZE"),
    ("commit", "SEQ_OFFSET"),
    ("commit", "PREV_DURABLE_OFFSET"),
    ("commit", "CATALOG_REF_OFFSET"),
    ("commit", "FREELIST_REF_OFFSET"),
    ("commit", "PAGE_COUNT_OFFSET"),
    ("commit", "KEY_EPOCH_OFFSET"),
    ("commit", "OLDEST_EPOCH_OFFSET"),
    ("commit", "SEALS_IN_EPOCH_OFFSET"),
    ("commit", "HEADER_GENERATION_OFFSET"),
    ("commit", "REKEY_CURSOR_OFFSET"),
    ("commit", "COMMIT_END"),
    ("commit", "FREE_DELTA_OFFSET"),
    ("commit", "FREED_COUNT_OFFSET"),
    ("commit", "USED_COUNT_OFFSET"),
    ("commit", "DELTA_PAGES_OFFSET"),
    ("backup", "B_MAGIC_OFFSET"),
    ("backup", "B_VERSION_OFFSET"),
    ("backup", "B_FLAGS_OFFSET"),
    ("backup", "B_PAGE_SIZE_OFFSET"),
    ("backup", "B_FILE_ID_OFFSET"),
    ("backup", "B_BACKUP_ID_OFFSET"),
    ("backup", "B_SEQ_OFFSET"),
    ("backup", "B_ROOT_DIGEST_OFFSET"),
    ("backup", "B_CREATED_OFFSET"),
    ("backup", "B_PAGE_COUNT_OFFSET"),
    ("backup", "B_CHUNK_PAGES_OFFSET"),
    ("backup", "B_KEY_EPOCH_OFFSET"),
    ("backup", "B_CATALOG_OFFSET"),
    ("backup", "B_SEALS_OFFSET"),
    ("backup", "B_LIVE_PAGES_OFFSET"),
    ("backup", "B_MAC_OFFSET"),
    ("backup", "B_FIELDS_END"),
    ("backup", "B_CHECKSUM_OFFSET"),
    ("backup", "CHUNK_HEADER_SIZE"),
    ("backup", "CHUNK_ENTRY_SIZE"),
    ("backup", "TRAILER_SIZE"),
];

/// The module unqualified names resolve in, by top-level SPEC.md section.
fn section_module(section: u32) -> Option<&'static str> {
    match section {
        2 => Some("header"),
        3 => Some("page"),
        5 => Some("commit"),
        13 => Some("backup"),
        _ => None,
    }
}

/// A heading such as `## 5. Commit records` or `### 5.1 The commit record`: its top-level number.
fn heading_section(line: &str) -> Option<u32> {
    let rest = line.strip_prefix('#')?.trim_start_matches('#');
    let rest = rest.trim_start();
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

fn cells(line: &str) -> Vec<String> {
    let t = line.trim();
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = t.strip_suffix('|').unwrap_or(t);
    t.split('|').map(|c| c.trim().to_string()).collect()
}

fn backticked(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

fn number(cell: &str) -> Option<usize> {
    cell.trim().parse().ok()
}

struct Row {
    line_no: usize,
    offset: usize,
    size: Option<usize>,
    /// (module, name) of each constant named in the row.
    names: Vec<(String, String)>,
}

struct Table {
    rows: Vec<Row>,
}

/// Every layout table of SPEC.md, with the section each one sits in.
fn layout_tables() -> Vec<Table> {
    let lines: Vec<&str> = SPEC.lines().collect();
    let mut tables = Vec::new();
    let mut section = 0u32;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(s) = heading_section(line) {
            section = s;
        }
        if !line.trim_start().starts_with('|') {
            i += 1;
            continue;
        }
        // A table: header row, separator row, data rows.
        let head: Vec<String> = cells(line).iter().map(|c| c.to_lowercase()).collect();
        let col = |name: &str| head.iter().position(|h| h == name);
        let start = i;
        i += 1;
        while i < lines.len() && lines[i].trim_start().starts_with('|') {
            i += 1;
        }
        let (Some(off_col), Some(size_col), Some(const_col)) = (col("offset"), col("size"), col("constant")) else {
            continue;
        };
        let module = section_module(section);
        let mut rows = Vec::new();
        for (k, row_line) in lines.iter().enumerate().take(i).skip(start + 2) {
            let c = cells(row_line);
            let line_no = k + 1;
            let offset = number(&c[off_col])
                .unwrap_or_else(|| panic!("SPEC.md line {line_no}: offset {:?} is not a number", c[off_col]));
            let size = number(&c[size_col]);
            if size.is_none() {
                assert!(
                    c[size_col] == "—" || c[size_col] == "-",
                    "SPEC.md line {line_no}: size {:?} is neither a number nor `—`",
                    c[size_col]
                );
            }
            let names = backticked(&c[const_col])
                .into_iter()
                .map(|n| match n.split_once("::") {
                    Some((m, name)) => (m.to_string(), name.to_string()),
                    None => {
                        let m = module.unwrap_or_else(|| {
                            panic!("SPEC.md line {line_no}: unqualified constant `{n}` outside §2, §3, §5 or §13")
                        });
                        // Fall back to the crate-level `format` constants (`PAGE_SIZE`).
                        if lookup(m, &n).is_none() && lookup("format", &n).is_some() {
                            ("format".to_string(), n)
                        } else {
                            (m.to_string(), n)
                        }
                    }
                })
                .collect();
            rows.push(Row { line_no, offset, size, names });
        }
        tables.push(Table { rows });
    }
    tables
}

#[test]
fn spec_tables_match_the_code() {
    let tables = layout_tables();
    assert!(
        tables.len() >= 12,
        "expected the header, slot, next-key, trailer, AAD, page-header, page-reference, commit, \
         backup-header, chunk-header, chunk-entry and backup-trailer tables; found {}",
        tables.len()
    );
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for t in &tables {
        for (k, row) in t.rows.iter().enumerate() {
            for (m, name) in &row.names {
                seen.push((m.clone(), name.clone()));
                let Some(v) = lookup(m, name) else {
                    failures.push(format!("line {}: `{m}::{name}` is not a known constant", row.line_no));
                    continue;
                };
                let want = if name.ends_with("_SIZE") { row.size.unwrap_or(row.offset) } else { row.offset };
                let what = if name.ends_with("_SIZE") && row.size.is_some() { "size" } else { "offset" };
                if !(name.ends_with("_OFFSET") || name.ends_with("_END") || name.ends_with("_SIZE")) {
                    failures
                        .push(format!("line {}: `{name}` is neither an _OFFSET, _END nor _SIZE constant", row.line_no));
                } else if v != want {
                    failures.push(format!(
                        "line {}: `{m}::{name}` = {v} in the code, {what} {want} in SPEC.md",
                        row.line_no
                    ));
                }
            }
            if let (Some(size), Some(next)) = (row.size, t.rows.get(k + 1))
                && row.offset + size != next.offset
            {
                failures.push(format!(
                    "line {}: offset {} + size {} = {}, but the next row starts at {}",
                    row.line_no,
                    row.offset,
                    size,
                    row.offset + size,
                    next.offset
                ));
            }
        }
    }
    for (m, name) in REQUIRED {
        if !seen.iter().any(|(sm, sn)| sm == m && sn == name) {
            failures.push(format!("`{m}::{name}` appears in no layout table of SPEC.md"));
        }
    }
    assert!(failures.is_empty(), "SPEC.md and src/format disagree:\n{}", failures.join("\n"));
}

#[test]
fn every_layout_table_ends_where_its_structure_ends() {
    // The last row of each layout table is an end row (size `—`), so the contiguity check above
    // covers the whole structure, and the end row's constant pins the total length.
    for t in layout_tables() {
        let last = t.rows.last().expect("a layout table has rows");
        assert!(
            last.size.is_none(),
            "SPEC.md line {}: a layout table must end with an end row (size `—`)",
            last.line_no
        );
        assert!(
            !last.names.is_empty(),
            "SPEC.md line {}: the end row must name the structure's size or end constant",
            last.line_no
        );
    }
}

#[test]
fn fixed_pages_and_sizes_match() {
    // Facts SPEC.md §1 states in prose.
    assert_eq!(format::PAGE_SIZE, 4096);
    assert_eq!((format::HEADER_PAGE_A, format::HEADER_PAGE_B), (0, 1));
    assert_eq!((format::COMMIT_PAGE_A, format::COMMIT_PAGE_B), (2, 3));
    assert_eq!(format::FIRST_DATA_PAGE, 4);
    assert_eq!(format::FORMAT_VERSION, 2);
    // SPEC.md §5.1 states the delta's room in prose.
    assert_eq!(commit::MAX_DELTA_PAGES, 490);
    assert_eq!(commit::FREE_DELTA_VERSION, 2);
    assert_eq!(&format::MAGIC, b"FOLDVLT\x01");
    assert_eq!(header::MAX_SLOTS * header::SLOT_SIZE, header::SLOTS_END - header::SLOTS_OFFSET);
    assert!(SPEC.contains("`FOLDVLT\\x01` = `46 4F 4C 44 56 4C 54 01`"));
    assert_eq!(foldvault::MAX_KEY_LEN, 1024);
    assert_eq!(foldvault::MAX_VALUE_LEN, u32::MAX as u64);
}

#[test]
fn page_references_and_backup_facts_match() {
    // SPEC.md §4: a page reference is page u64 ‖ seal tag ‖ generation u64.
    assert_eq!(page::PAGE_REF_SIZE, 8 + page::TAG_SIZE + 8);
    // SPEC.md §13: magics, version, chunk sizes stated in prose.
    assert_eq!(&backup::BACKUP_MAGIC, b"FVBACKUP");
    assert_eq!(&backup::TRAILER_MAGIC, b"FVBKEND\x01");
    assert_eq!(backup::BACKUP_VERSION, 2);
    assert_eq!(backup::CHUNK_PAGES, 64);
    assert_eq!(backup::CHUNK_TAG_SIZE, 16);
    assert_eq!(backup::CHUNK_HASH_SIZE, 32);
    assert_eq!(backup::CHUNK_ENTRY_SIZE, 8 + format::PAGE_SIZE);
    assert_eq!(backup::FLAG_ENCRYPTED, 1);
    assert_eq!(backup::B_CHECKSUM_OFFSET + 32, format::PAGE_SIZE);
    for fact in [
        "`FVBACKUP` (`BACKUP_MAGIC`)",
        "`FVBKEND\\x01` (`TRAILER_MAGIC`)",
        "`u16` 2 (`BACKUP_VERSION`); 1 is read too",
        "`CHUNK_PAGES` = 64",
        "16-byte tag (`CHUNK_TAG_SIZE`)",
        "32-byte BLAKE3 of chunk header",
        "(`CHUNK_HASH_SIZE`)",
    ] {
        assert!(SPEC.contains(fact), "SPEC.md §13 no longer says {fact:?}");
    }
}

/// The `context` constants of `src/crypto/keys.rs`: every `pub const NAME: &str = "...";` line.
fn context_strings_in(source: &str) -> Vec<String> {
    source
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("pub const ")?;
            let (_, value) = rest.split_once(": &str = \"")?;
            Some(value.strip_suffix("\";")?.to_string())
        })
        .collect()
}

#[test]
fn key_derivation_contexts_match_the_code() {
    // SPEC.md §6.1 quotes every context string exactly; a changed string is a format change.
    let keys_rs = include_str!("../src/crypto/keys.rs");
    let engine_rs = include_str!("../src/db/engine.rs");
    let in_code = context_strings_in(keys_rs);
    assert!(in_code.len() >= 9, "expected the nine `context` strings of src/crypto/keys.rs, found {in_code:?}");
    let mut missing = Vec::new();
    for c in &in_code {
        if !SPEC.contains(&format!("`{c}`")) {
            missing.push(format!("src/crypto/keys.rs context {c:?} is not quoted in SPEC.md §6.1"));
        }
    }
    // And the other way: every versioned context string SPEC.md quotes exists in the code.
    for quoted in SPEC.split('`').skip(1).step_by(2) {
        if quoted.starts_with("foldvault 2026-11-28 v1 ")
            && !in_code.iter().any(|c| c == quoted)
            && !engine_rs.contains(&format!("\"{quoted}\""))
        {
            missing.push(format!("SPEC.md quotes context {quoted:?}, which the code does not use"));
        }
    }
    assert!(engine_rs.contains("\"foldvault 2026-11-28 v1 root digest\""), "the root digest's context moved");
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
