//! The repository is self-contained: docs/ALGORITHM.md (the definition) and docs/BENCHMARK-PROTOCOL.md (how
//! performance is measured) are the project's own, and no text points outside the repository or to a docs/
//! file that does not exist. (The definition and the protocol used to live outside the repository, so a fresh
//! clone had dangling pointers in README.md, BENCHMARKS.md, `hip-bench --help` and many comments; hip-bench's own
//! tests, tools/hip-bench/tests/cli.rs, check its help.)
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Names of documents that are not in the repository: a pointer to one of them dangles in a clone. Built from
/// parts so that this file does not match itself.
fn outside_names() -> [String; 3] {
    [format!("../{}/", "shared"), format!("HIP-{}", "SPEC"), format!("{}.md", "BENCH")]
}

/// Every text file of the source tree (what a clone holds), leaving out build outputs and git's own files.
fn text_files() -> Vec<(PathBuf, String)> {
    let skip = ["target", "dist", ".git", ".device", "zig-out", ".zig-cache"];
    let mut out = Vec::new();
    let mut dirs = vec![root()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() && !skip.contains(&name.as_str()) {
                dirs.push(path);
            } else if kind.is_file() {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    out.push((path, text));
                }
            }
        }
    }
    assert!(out.len() > 50, "found only {} text files under {}", out.len(), root().display());
    out
}

/// The `docs/...` paths a text names (a path made of the characters file names here use, without the trailing
/// punctuation of a sentence), except inside URLs and longer paths.
fn docs_pointers(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, _) in text.match_indices("docs/") {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || "/._-".contains(c)) {
            continue;
        }
        let path: String = text[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || "/._-".contains(*c)).collect();
        found.push(path.trim_end_matches(['.', ',', '/']).to_string());
    }
    found
}

fn line_of(text: &str, at: usize) -> usize {
    text[..at].lines().count().max(1)
}

#[test]
fn no_pointer_leaves_the_repository_or_dangles() {
    let this = Path::new(file!()).file_name().unwrap().to_owned();
    let mut bad = Vec::new();
    for (path, text) in text_files() {
        let rel = path.strip_prefix(root()).unwrap().display().to_string();
        if path.file_name() == Some(&this) {
            continue;
        }
        for name in outside_names() {
            for (at, _) in text.match_indices(&name) {
                bad.push(format!("{rel}:{}: points to {name}, which is not in the repository", line_of(&text, at)));
            }
        }
        for target in docs_pointers(&text) {
            if !root().join(&target).exists() {
                bad.push(format!("{rel}: points to {target}, which does not exist"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} dangling pointers (the definition is docs/ALGORITHM.md, the benchmark protocol \
         docs/BENCHMARK-PROTOCOL.md):\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn pointer_scan_finds_what_it_must() {
    assert_eq!(docs_pointers("see docs/ALGORITHM.md. And (docs/X.md, §4)"), ["docs/ALGORITHM.md", "docs/X.md"]);
    assert!(docs_pointers("https://docs.rs/x and https://example.org/docs/y and my_docs/z").is_empty());
}

/// The definition covers every field of hip_config that changes what is computed, the three selection-related
/// constants, and the sections a reader (or a reviewer of a new mode) looks for.
#[test]
fn algorithm_defines_every_parameter() {
    let text = std::fs::read_to_string(root().join("docs/ALGORITHM.md")).unwrap();
    for field in [
        "`k`",
        "`bq`",
        "`bk`",
        "`sink`",
        "`window`",
        "`sq`",
        "`sk`",
        "`refresh`",
        "`mask_sharing`",
        "`decode_selection`",
        "`prefill_scan_tail`",
        "softmax_scale",
        "causal",
        "HIP_ATTN_SELECT_TREE",
        "HIP_ATTN_SELECT_SCAN",
        "mask_state_out",
        "FP8 E4M3",
        "not implemented yet",
    ] {
        assert!(text.contains(field), "docs/ALGORITHM.md does not mention {field}");
    }
    let protocol = std::fs::read_to_string(root().join("docs/BENCHMARK-PROTOCOL.md")).unwrap();
    for part in ["## Method", "## Shapes", "## Reference figures", "## Targets", "## Quality figures", "H200"] {
        assert!(protocol.contains(part), "docs/BENCHMARK-PROTOCOL.md lacks {part}");
    }
}
