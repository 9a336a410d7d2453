//! FoldDB's storage code, written the way FoldDB writes it against sled 0.34, compiled against
//! foldvault through `use foldvault as sled;` and nothing but sled-style paths: a `DbOperations`
//! struct holding the `Db` and its cached trees, JSON values under `atom:{uuid}` and
//! `ref:{uuid}` in the default tree, `flush()` after every write, `.iter().flatten()`,
//! `scan_prefix("atom:")`, `sled::Error` converted with `?` into `Box<dyn Error>` and into the
//! application's error enum, trees outliving their `Db`, and temporary databases.
//!
//! The suite body runs twice, each time in a child process (environment variables are
//! process-global, so the parent never sets any): once with `FOLDVAULT_PASSPHRASE` set
//! (transparent encryption: the file must hold none of the records) and once without it (a
//! plaintext file, as the header says). Each child also gets its own `TMPDIR`, so its temporary
//! databases can be seen to disappear.

use foldvault as sled;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

// ---------------------------------------------------------------------------------------------
// The application side, as FoldDB has it.

/// FoldDB's error enum (abridged), with its conversion from the storage error.
#[derive(Debug)]
enum SchemaError {
    InvalidData(String),
    NotFound(String),
    Storage(sled::Error),
}

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SchemaError::InvalidData(m) => write!(f, "invalid data: {m}"),
            SchemaError::NotFound(m) => write!(f, "not found: {m}"),
            SchemaError::Storage(e) => write!(f, "storage error: {e}"),
        }
    }
}

impl std::error::Error for SchemaError {}

impl From<sled::Error> for SchemaError {
    fn from(e: sled::Error) -> Self {
        SchemaError::Storage(e)
    }
}

/// FoldDB's `DbOperations`: the database and every tree it uses, opened once and cached.
#[derive(Clone)]
struct DbOperations {
    db: sled::Db,
    metadata_tree: sled::Tree,
    permissions_tree: sled::Tree,
    transforms_tree: sled::Tree,
    orchestrator_tree: sled::Tree,
    schema_states_tree: sled::Tree,
    schemas_tree: sled::Tree,
    public_keys_tree: sled::Tree,
    transform_queue_tree: sled::Tree,
}

const TREES: [&str; 8] = [
    "metadata",
    "node_id_schema_permissions",
    "transforms",
    "orchestrator_state",
    "schema_states",
    "schemas",
    "public_keys",
    "transform_queue_tree",
];

impl DbOperations {
    fn new(db: sled::Db) -> Result<Self, sled::Error> {
        Ok(Self {
            metadata_tree: db.open_tree("metadata")?,
            permissions_tree: db.open_tree("node_id_schema_permissions")?,
            transforms_tree: db.open_tree("transforms")?,
            orchestrator_tree: db.open_tree("orchestrator_state")?,
            schema_states_tree: db.open_tree("schema_states")?,
            schemas_tree: db.open_tree("schemas")?,
            public_keys_tree: db.open_tree("public_keys")?,
            transform_queue_tree: db.open_tree("transform_queue_tree")?,
            db,
        })
    }

    fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Stores a JSON value in the default tree and flushes.
    fn store_item(&self, key: &str, json: &str) -> Result<(), SchemaError> {
        if !json.starts_with('{') {
            return Err(SchemaError::InvalidData(format!("not a JSON object for {key}")));
        }
        self.db
            .insert(key.as_bytes(), json.as_bytes())
            .map_err(|e| SchemaError::InvalidData(format!("Failed to store item: {e}")))?;
        self.db.flush().map_err(|e| SchemaError::InvalidData(format!("Failed to flush: {e}")))?;
        Ok(())
    }

    fn get_item(&self, key: &str) -> Result<Option<String>, SchemaError> {
        match self.db.get(key.as_bytes())? {
            Some(bytes) => {
                Ok(Some(String::from_utf8(bytes.to_vec()).map_err(|e| SchemaError::InvalidData(e.to_string()))?))
            }
            None => Ok(None),
        }
    }

    fn delete_item(&self, key: &str) -> Result<bool, SchemaError> {
        let existed = self.db.remove(key.as_bytes())?.is_some();
        self.db.flush()?;
        Ok(existed)
    }

    fn list_items_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>, SchemaError> {
        let mut out = Vec::new();
        for result in self.db.scan_prefix(prefix.as_bytes()) {
            let (k, v) = result?;
            out.push((String::from_utf8_lossy(&k).into_owned(), String::from_utf8_lossy(&v).into_owned()));
        }
        Ok(out)
    }

    fn store_in_tree(&self, tree: &sled::Tree, key: &str, json: &str) -> Result<(), SchemaError> {
        tree.insert(key.as_bytes(), json.as_bytes())?;
        tree.flush()?;
        Ok(())
    }

    fn get_from_tree(&self, tree: &sled::Tree, key: &str) -> Result<Option<String>, SchemaError> {
        Ok(tree.get(key.as_bytes())?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn list_keys_in_tree(&self, tree: &sled::Tree) -> Vec<String> {
        tree.iter().flatten().map(|(k, _)| String::from_utf8_lossy(&k).into_owned()).collect()
    }

    fn exists_in_tree(&self, tree: &sled::Tree, key: &str) -> Result<bool, SchemaError> {
        Ok(tree.contains_key(key.as_bytes())?)
    }

    fn get_node_id(&self) -> Result<String, SchemaError> {
        match self.metadata_tree.get("node_id")? {
            Some(v) => Ok(String::from_utf8_lossy(&v).into_owned()),
            None => Err(SchemaError::NotFound("node_id".into())),
        }
    }

    fn set_node_id(&self, id: &str) -> Result<(), SchemaError> {
        self.store_in_tree(&self.metadata_tree, "node_id", id)
    }

    /// A queue: push to the end, pop from the front (FoldDB's transform queue).
    fn enqueue_transform(&self, id: &str) -> Result<(), SchemaError> {
        let n = self.transform_queue_tree.len() as u64;
        let key = format!("queue:{n:016}");
        self.store_in_tree(&self.transform_queue_tree, &key, &format!("{{\"transform_id\":\"{id}\"}}"))
    }

    fn dequeue_transform(&self) -> Result<Option<String>, SchemaError> {
        let popped = self.transform_queue_tree.pop_min()?;
        self.transform_queue_tree.flush()?;
        Ok(popped.map(|(_, v)| String::from_utf8_lossy(&v).into_owned()))
    }
}

/// A refused tree name, as FoldDB reports unsupported operations.
fn validate_schema_name(name: &str) -> Result<(), sled::Error> {
    if name.is_empty() || name.contains('\0') {
        return Err(sled::Error::Unsupported(format!("invalid schema name {name:?}")));
    }
    Ok(())
}

fn register_schema_boxed(ops: &DbOperations, name: &str, json: &str) -> Result<(), Box<dyn std::error::Error>> {
    validate_schema_name(name)?;
    ops.schemas_tree.insert(name, json)?;
    ops.schemas_tree.flush()?;
    Ok(())
}

fn register_schema(ops: &DbOperations, name: &str, json: &str) -> Result<(), SchemaError> {
    validate_schema_name(name)?;
    ops.store_in_tree(&ops.schemas_tree, name, json)?;
    ops.store_in_tree(&ops.schema_states_tree, name, "{\"state\":\"Available\"}")
}

/// uuid-v4-shaped strings without a uuid dependency.
struct Uuids(u64);
impl Uuids {
    fn next(&mut self) -> String {
        let mut part = || {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        };
        let (a, b) = (part(), part());
        format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xFFFF,
            a & 0xFFF,
            b >> 52,
            b & 0xFFFF_FFFF_FFFF
        )
    }
}

/// A string every record holds, so the parent can look for it in the raw file.
const RECORD_MARKER: &str = "FOLDDB-RECORD-7c1e";

// ---------------------------------------------------------------------------------------------
// The suite body (runs in the child).

fn suite(dir: &Path, expect_encrypted: bool) -> Result<(), Box<dyn std::error::Error>> {
    let mut uuids = Uuids(0x2545_F491_4F6C_DD1D);
    let mut atoms = BTreeMap::new();
    {
        let db = sled::open(dir)?;
        assert_eq!(db.is_encrypted(), expect_encrypted);
        let ops = DbOperations::new(db)?;

        ops.set_node_id("node-7f0c")?;
        assert_eq!(ops.get_node_id()?, "node-7f0c");

        // Atoms and refs in the default tree, flushed after each write.
        for i in 0..60 {
            let id = uuids.next();
            let atom = format!(
                "{{\"uuid\":\"{id}\",\"source_schema_name\":\"user_profile\",\"content\":{{\"name\":\"{RECORD_MARKER} {i}\",\"age\":{}}},\"prev_atom_uuid\":null,\"status\":\"Active\"}}",
                20 + i
            );
            ops.store_item(&format!("atom:{id}"), &atom)?;
            let aref = format!("{{\"uuid\":\"{}\",\"atom_uuid\":\"{id}\",\"note\":\"{RECORD_MARKER}\"}}", uuids.next());
            ops.store_item(&format!("ref:{id}"), &aref)?;
            atoms.insert(format!("atom:{id}"), atom);
        }
        // A reference history that only grows (a few KiB).
        let mut history = String::from("{\"history\":[");
        for i in 0..120 {
            if i > 0 {
                history.push(',');
            }
            history.push_str(&format!("\"{}\"", uuids.next()));
            ops.store_item("ref:history", &format!("{history}],\"m\":\"{RECORD_MARKER}\"}}"))?;
        }

        assert_eq!(ops.list_items_with_prefix("atom:")?.len(), 60);
        assert_eq!(ops.list_items_with_prefix("ref:")?.len(), 61);
        for (k, v) in ops.list_items_with_prefix("atom:")? {
            assert_eq!(atoms.get(&k), Some(&v));
        }
        let all: Vec<(sled::IVec, sled::IVec)> = ops.db().iter().flatten().collect();
        assert_eq!(all.len(), 121);
        assert_eq!(ops.db().scan_prefix("atom:").flatten().count(), 60);
        assert_eq!(ops.db().len(), 121);

        // The other trees.
        register_schema(&ops, "user_profile", &format!("{{\"name\":\"user_profile\",\"doc\":\"{RECORD_MARKER}\"}}"))?;
        register_schema_boxed(&ops, "blog_post", "{\"name\":\"blog_post\"}")?;
        ops.store_in_tree(&ops.permissions_tree, "node-7f0c:user_profile", "{\"read\":true,\"write\":false}")?;
        ops.store_in_tree(&ops.transforms_tree, "t1", &format!("{{\"logic\":\"{RECORD_MARKER}\"}}"))?;
        ops.store_in_tree(&ops.orchestrator_tree, "last_run", "{\"t1\":12}")?;
        ops.store_in_tree(&ops.public_keys_tree, "admin", "{\"key\":\"ed25519:Zm9sZA==\"}")?;
        for t in ["t1", "t2", "t3"] {
            ops.enqueue_transform(t)?;
        }
        assert_eq!(ops.dequeue_transform()?.as_deref(), Some("{\"transform_id\":\"t1\"}"));
        assert_eq!(ops.list_keys_in_tree(&ops.schemas_tree), vec!["blog_post", "user_profile"]);
        assert!(ops.exists_in_tree(&ops.schema_states_tree, "user_profile")?);
        assert!(!ops.exists_in_tree(&ops.schema_states_tree, "blog_post")?);
        assert_eq!(
            ops.get_from_tree(&ops.permissions_tree, "node-7f0c:user_profile")?.as_deref(),
            Some("{\"read\":true,\"write\":false}")
        );

        // Errors: sled::Error::Unsupported through `?` into Box<dyn Error> and into SchemaError.
        let boxed = register_schema_boxed(&ops, "", "{}").unwrap_err();
        assert!(boxed.to_string().contains("invalid schema name"), "{boxed}");
        match register_schema(&ops, "bad\0name", "{}") {
            Err(SchemaError::Storage(sled::Error::Unsupported(m))) => assert!(m.contains("invalid schema name")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(ops.store_item("atom:x", "not json"), Err(SchemaError::InvalidData(_))));
        let e: SchemaError = sled::Error::Unsupported("x".into()).into();
        assert!(e.to_string().contains("unsupported"));

        // Deleting, clearing, counting.
        let first = atoms.keys().next().unwrap().clone();
        assert!(ops.delete_item(&first)?);
        assert!(!ops.delete_item(&first)?);
        assert_eq!(ops.get_item(&first)?, None);
        atoms.remove(&first);
        ops.orchestrator_tree.clear()?;
        ops.orchestrator_tree.flush()?;
        assert!(ops.orchestrator_tree.is_empty());

        let names: Vec<String> =
            ops.db().tree_names().iter().map(|n| String::from_utf8_lossy(n).into_owned()).collect();
        for t in TREES {
            assert!(names.iter().any(|n| n == t), "{t} missing from {names:?}");
        }

        // A tree kept after its Db (and every other handle) is dropped keeps working.
        let kept = ops.schemas_tree.clone();
        drop(ops);
        kept.insert("late_schema", "{\"name\":\"late_schema\"}")?;
        kept.flush()?;
        assert_eq!(kept.len(), 3);
    }

    // Reopen: everything persisted.
    {
        let ops = DbOperations::new(sled::open(dir)?)?;
        assert_eq!(ops.get_node_id()?, "node-7f0c");
        for (k, v) in &atoms {
            assert_eq!(ops.get_item(k)?.as_ref(), Some(v));
        }
        assert_eq!(ops.list_items_with_prefix("atom:")?.len(), 59);
        assert!(ops.get_item("ref:history")?.unwrap().len() > 4000);
        assert_eq!(ops.schemas_tree.get("late_schema")?.as_deref(), Some(&b"{\"name\":\"late_schema\"}"[..]));
        assert_eq!(ops.transform_queue_tree.len(), 2);
        assert_eq!(ops.public_keys_tree.iter().flatten().count(), 1);
    }

    // Temporary databases (FoldDB's tests use them) disappear when dropped.
    let tmp = std::env::temp_dir();
    let count_temporary = || {
        std::fs::read_dir(&tmp)
            .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("foldvault-")).count())
            .unwrap_or(0)
    };
    assert_eq!(count_temporary(), 0);
    {
        let config = sled::Config::new().temporary(true);
        let db = config.open()?;
        assert_eq!(db.is_encrypted(), expect_encrypted);
        let ops = DbOperations::new(db)?;
        ops.store_item("atom:tmp", "{\"temporary\":true}")?;
        let other = sled::Config::new().temporary(true).open()?;
        other.insert("k", "v")?;
        assert_eq!(count_temporary(), 2);
        let tree = other.open_tree("metadata")?;
        drop(other);
        tree.insert("still", "usable")?;
        drop(tree);
        assert_eq!(count_temporary(), 1);
    }
    assert_eq!(count_temporary(), 0, "temporary databases left behind in {}", tmp.display());
    println!("FOLDDB-STYLE-SUITE-RAN encrypted={expect_encrypted}");
    Ok(())
}

/// The child entry point: runs the suite when the parent asked for it, passes otherwise.
#[test]
fn child_suite() {
    let (Some(dir), Some(mode)) = (std::env::var_os("FOLDDB_STYLE_DIR"), std::env::var_os("FOLDDB_STYLE_MODE")) else {
        return;
    };
    suite(Path::new(&dir), mode == "encrypted").expect("suite");
}

// ---------------------------------------------------------------------------------------------
// The parent: run the child in each mode and inspect the file it left.

fn run_child(encrypted: bool) -> (tempfile::TempDir, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("folddb");
    let tmp = work.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["child_suite", "--exact", "--nocapture", "--test-threads=1"])
        .env("FOLDDB_STYLE_DIR", &dir)
        .env("FOLDDB_STYLE_MODE", if encrypted { "encrypted" } else { "plaintext" })
        .env("TMPDIR", &tmp)
        .env_remove(sled::ENV_KEY_FILE);
    if encrypted {
        cmd.env(sled::ENV_PASSPHRASE, "folddb node passphrase");
    } else {
        cmd.env_remove(sled::ENV_PASSPHRASE);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("FOLDDB-STYLE-SUITE-RAN encrypted={encrypted}")),
        "the suite did not run:\n{stdout}"
    );
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "temporary databases left behind");
    let file = dir.join("db.foldvault");
    (work, file)
}

fn occurrences(hay: &[u8], needle: &str) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle.as_bytes()).count()
}

/// What the records put in the file: the marker, the key prefixes, the tree names, a JSON field.
const REVEALING: [&str; 7] = [
    RECORD_MARKER,
    "atom:",
    "ref:",
    "node_id_schema_permissions",
    "transform_queue_tree",
    "source_schema_name",
    "node-7f0c",
];

#[test]
fn suite_with_passphrase_in_environment_is_encrypted_at_rest() {
    let (_work, file) = run_child(true);
    let info = sled::admin::read_header(&file).unwrap();
    assert_ne!(info.header.flags & sled::format::header::FLAG_ENCRYPTED, 0, "header says plaintext");
    let bytes = std::fs::read(&file).unwrap();
    // Strings of 8 bytes or more: a shorter one ("ref:") turns up in a few hundred KB of
    // ciphertext by chance about once in 10,000 runs.
    for s in REVEALING.iter().filter(|s| s.len() >= 8) {
        assert_eq!(occurrences(&bytes, s), 0, "{s:?} found in the encrypted file");
    }
    // Without the passphrase the file does not open.
    let err = sled::Config::new().file(&file).use_env(false).open().unwrap_err();
    assert!(matches!(err, sled::Error::WrongKey { .. }), "{err:?}");
}

#[test]
fn suite_without_passphrase_is_plaintext() {
    let (_work, file) = run_child(false);
    let info = sled::admin::read_header(&file).unwrap();
    assert_eq!(info.header.flags & sled::format::header::FLAG_ENCRYPTED, 0, "header says encrypted");
    let bytes = std::fs::read(&file).unwrap();
    for s in REVEALING {
        assert!(occurrences(&bytes, s) > 0, "{s:?} not found in the plaintext file");
    }
    let db = sled::Config::new().file(&file).use_env(false).open().unwrap();
    assert!(!db.is_encrypted());
    assert_eq!(db.scan_prefix("atom:").count(), 59);
}
