//! FoldDB's storage layer on foldvault, written exactly as FoldDB's `DbOperations` uses sled
//! 0.34: the crate is imported under the name `sled`, trees are opened once and cached, values
//! are JSON, atoms and refs live in the default tree under `atom:{uuid}` and `ref:{uuid}`, and
//! every write is followed by `flush()`.
//!
//! Encryption is transparent: with `FOLDVAULT_PASSPHRASE` (or `FOLDVAULT_KEY_FILE`) set, a plain
//! `sled::open(path)` creates and opens an encrypted database; without it, this example passes a
//! demo passphrase in code. Run it with
//!
//! ```sh
//! cargo run --example folddb                 # a throw-away database, removed at the end
//! cargo run --example folddb -- ./folddb-data # a database that stays (run it twice)
//! FOLDVAULT_PASSPHRASE='my passphrase' cargo run --example folddb
//! ```

use foldvault as sled;

use std::path::{Path, PathBuf};
use std::time::Instant;

/// Used only when the environment supplies no key. Never use a fixed passphrase for real data.
const DEMO_PASSPHRASE: &str = "folddb demo passphrase - not for real data";

/// FoldDB's error type, abridged, with the conversion `?` uses.
#[derive(Debug)]
enum FoldDbError {
    Database(String),
    NotFound(String),
}

impl std::fmt::Display for FoldDbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FoldDbError::Database(m) => write!(f, "database error: {m}"),
            FoldDbError::NotFound(m) => write!(f, "not found: {m}"),
        }
    }
}

impl std::error::Error for FoldDbError {}

impl From<sled::Error> for FoldDbError {
    fn from(e: sled::Error) -> Self {
        FoldDbError::Database(e.to_string())
    }
}

/// FoldDB's `DbOperations`: the database and its cached trees.
struct DbOperations {
    db: sled::Db,
    metadata_tree: sled::Tree,
    schemas_tree: sled::Tree,
    schema_states_tree: sled::Tree,
    public_keys_tree: sled::Tree,
    transforms_tree: sled::Tree,
}

impl DbOperations {
    fn new(db: sled::Db) -> Result<Self, sled::Error> {
        let metadata_tree = db.open_tree("metadata")?;
        let schemas_tree = db.open_tree("schemas")?;
        let schema_states_tree = db.open_tree("schema_states")?;
        let public_keys_tree = db.open_tree("public_keys")?;
        let transforms_tree = db.open_tree("transforms")?;
        Ok(Self { db, metadata_tree, schemas_tree, schema_states_tree, public_keys_tree, transforms_tree })
    }

    /// A JSON value in the default tree, durable before returning.
    fn store_item(&self, key: &str, json: &str) -> Result<(), FoldDbError> {
        self.db.insert(key.as_bytes(), json.as_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    fn get_item(&self, key: &str) -> Result<Option<String>, FoldDbError> {
        Ok(self.db.get(key.as_bytes())?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn store_in_tree(&self, tree: &sled::Tree, key: &str, json: &str) -> Result<(), FoldDbError> {
        tree.insert(key.as_bytes(), json.as_bytes())?;
        tree.flush()?;
        Ok(())
    }

    fn list_items_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>, FoldDbError> {
        self.db
            .scan_prefix(prefix.as_bytes())
            .map(|r| {
                let (k, v) = r?;
                Ok((String::from_utf8_lossy(&k).into_owned(), String::from_utf8_lossy(&v).into_owned()))
            })
            .collect()
    }

    fn get_node_id(&self) -> Result<String, FoldDbError> {
        match self.metadata_tree.get("node_id")? {
            Some(v) => Ok(String::from_utf8_lossy(&v).into_owned()),
            None => Err(FoldDbError::NotFound("node_id".into())),
        }
    }

    fn list_schemas(&self) -> Vec<String> {
        self.schemas_tree.iter().flatten().map(|(k, _)| String::from_utf8_lossy(&k).into_owned()).collect()
    }
}

/// A random (version 4) uuid, as FoldDB's `Uuid::new_v4()` gives.
fn new_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0F) | 0x40;
    b[8] = (b[8] & 0x3F) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn open(path: &Path) -> Result<sled::Db, sled::Error> {
    let from_env = std::env::var_os(sled::ENV_PASSPHRASE).is_some() || std::env::var_os(sled::ENV_KEY_FILE).is_some();
    if from_env {
        // Exactly FoldDB's call: the key comes from the environment.
        sled::open(path)
    } else {
        sled::Config::new().path(path).passphrase(DEMO_PASSPHRASE).open()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (path, throw_away): (PathBuf, bool) = match std::env::args_os().nth(1) {
        Some(p) => (PathBuf::from(p), false),
        None => (std::env::temp_dir().join(format!("foldvault-folddb-example-{}", std::process::id())), true),
    };
    let key_source = if std::env::var_os(sled::ENV_PASSPHRASE).is_some() {
        "FOLDVAULT_PASSPHRASE"
    } else if std::env::var_os(sled::ENV_KEY_FILE).is_some() {
        "FOLDVAULT_KEY_FILE"
    } else {
        "the demo passphrase"
    };

    let started = Instant::now();
    let db = match open(&path) {
        Ok(db) => db,
        Err(e @ sled::Error::WrongKey { .. }) => {
            eprintln!("{} was created with another key: set FOLDVAULT_PASSPHRASE to its passphrase", path.display());
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "opened {} ({}, key from {key_source}) in {:.0?}",
        path.display(),
        if db.is_encrypted() { "encrypted" } else { "plaintext" },
        started.elapsed()
    );
    let ops = DbOperations::new(db)?;

    // Node metadata, written once.
    let node_id = match ops.get_node_id() {
        Ok(id) => {
            println!("existing node {id}");
            id
        }
        Err(FoldDbError::NotFound(_)) => {
            let id = new_uuid();
            ops.store_in_tree(&ops.metadata_tree, "node_id", &id)?;
            println!("new node {id}");
            id
        }
        Err(e) => return Err(e.into()),
    };

    // A schema, its state, a public key and a transform.
    ops.store_in_tree(
        &ops.schemas_tree,
        "user_profile",
        r#"{"name":"user_profile","fields":{"username":{"field_type":"Single"},"bio":{"field_type":"Single"}}}"#,
    )?;
    ops.store_in_tree(&ops.schema_states_tree, "user_profile", r#""Approved""#)?;
    ops.store_in_tree(&ops.public_keys_tree, &node_id, r#"{"algorithm":"Ed25519","key":"MCowBQYDK2VwAyEA..."}"#)?;
    ops.store_in_tree(&ops.transforms_tree, "user_profile.summary", r#"{"logic":"concat(username, bio)"}"#)?;

    // Atoms and the refs that point at them, in the default tree.
    let started = Instant::now();
    for (username, bio) in
        [("alice", "writes storage engines"), ("bob", "reviews cryptography"), ("carol", "runs nodes")]
    {
        let atom_uuid = new_uuid();
        let atom = format!(
            r#"{{"uuid":"{atom_uuid}","source_schema_name":"user_profile","source_pub_key":"{node_id}","content":{{"username":"{username}","bio":"{bio}"}},"status":"Active"}}"#
        );
        ops.store_item(&format!("atom:{atom_uuid}"), &atom)?;
        let ref_uuid = new_uuid();
        ops.store_item(&format!("ref:{ref_uuid}"), &format!(r#"{{"uuid":"{ref_uuid}","atom_uuid":"{atom_uuid}"}}"#))?;
    }
    println!("stored 3 atoms and 3 refs, each flushed, in {:.0?}", started.elapsed());

    let atoms = ops.list_items_with_prefix("atom:")?;
    let refs = ops.list_items_with_prefix("ref:")?;
    println!("{} atoms and {} refs in the default tree; schemas: {:?}", atoms.len(), refs.len(), ops.list_schemas());
    if let Some((key, json)) = atoms.first() {
        println!("first atom: {key} = {json}");
        assert_eq!(ops.get_item(key)?.as_deref(), Some(json.as_str()));
    }
    for tree in ["metadata", "schemas", "schema_states", "public_keys", "transforms"] {
        let t = ops.db.open_tree(tree)?;
        println!("  tree {tree:<14} {} entries", t.len());
    }

    // What someone who copies the file sees.
    let file = path.join("db.foldvault");
    ops.db.flush()?;
    let raw = std::fs::read(&file)?;
    let visible = raw.windows(b"source_schema_name".len()).any(|w| w == b"source_schema_name")
        || raw.windows(node_id.len()).any(|w| w == node_id.as_bytes());
    println!(
        "{} bytes on disk; records readable in the raw file: {}",
        raw.len(),
        if visible { "yes (plaintext)" } else { "no" }
    );

    drop(ops);
    if throw_away {
        std::fs::remove_dir_all(&path)?;
        println!("removed {}", path.display());
    }
    Ok(())
}
