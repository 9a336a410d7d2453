//! Lint: tags, MACs, digests and key material are never compared with `==` in the library.
//! The types that hold them (`SealTag`, `SecretKey`, `MasterKey`, `Passphrase`) have no
//! `PartialEq`; byte arrays of MACs and hashes are compared with `subtle::ConstantTimeEq`.
//! This test scans the source for `==`/`!=` on names that hold such bytes.

fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_plain_equality_on_secrets_or_tags() {
    let mut files = Vec::new();
    rust_files(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")), &mut files);
    let words = ["tag", "mac", "digest", "checksum", "expose()", "hash", "key"];
    let mut offences = Vec::new();
    for f in files {
        let name = f.display().to_string();
        if name.contains("tests.rs") || name.contains("/fuzzing/") || name.contains("/admin/") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let mut in_tests = false;
        for (n, line) in text.lines().enumerate() {
            let l = line.trim();
            if l.starts_with("#[cfg(test)]") {
                in_tests = true;
            }
            if in_tests || l.starts_with("//") {
                continue;
            }
            for op in ["==", "!="] {
                for (i, _) in l.match_indices(op) {
                    let lhs = &l[..i];
                    let rhs = &l[i + 2..];
                    let near = |s: &str| {
                        let s = s.to_lowercase();
                        words.iter().any(|w| s.contains(w))
                    };
                    let lhs_tail: String = lhs.chars().rev().take(24).collect::<String>().chars().rev().collect();
                    let rhs_head: String = rhs.chars().take(24).collect();
                    // Lengths, counts, kinds and keys of records are fine; bytes of secrets are not.
                    let benign = [
                        "len",
                        "kind",
                        "count",
                        "key_epoch",
                        "first_epoch",
                        "flags",
                        "slot",
                        "keys",
                        "key(",
                        "key.len",
                        "key_len",
                        "tree",
                        "_keys",
                        "hash_model",
                    ];
                    if near(&lhs_tail)
                        && near(&rhs_head)
                        && !benign.iter().any(|b| lhs_tail.contains(b) || rhs_head.contains(b))
                    {
                        offences.push(format!("{name}:{}: {l}", n + 1));
                    }
                }
            }
        }
    }
    assert!(offences.is_empty(), "plain comparisons of secret or tag bytes:\n{}", offences.join("\n"));
}
