//! hip-bench as a program: its help, its command-line errors, and the modes that need no GPU, whose JSON must keep
//! the keys of the files in bench-results/ so that old and new runs stay comparable.
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn hip_bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hip-bench")).args(args).output().expect("hip-bench runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object().expect("a JSON object").keys().cloned().collect()
}

fn recorded(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("bench-results").join(name)).unwrap()).unwrap()
}

/// Top-level keys in order, and the keys of every row, equal those of a recorded file.
fn same_keys(new: &Value, old: &Value, what: &str) {
    assert_eq!(keys(new), keys(old), "{what}: top-level keys");
    let (rn, ro) = (new["rows"].as_array().unwrap(), old["rows"].as_array().unwrap());
    assert!(!rn.is_empty(), "{what}: no rows");
    for r in rn {
        assert_eq!(keys(r), keys(&ro[0]), "{what}: row keys");
    }
}

/// Paths under docs/ that a text names.
fn docs_pointers(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, _) in text.match_indices("docs/") {
        if text[..i].chars().next_back().is_some_and(|c| c.is_alphanumeric() || "/._-".contains(c)) {
            continue;
        }
        let path: String = text[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || "/._-".contains(*c)).collect();
        found.push(path.trim_end_matches(['.', ',', '/']).to_string());
    }
    found
}

#[test]
fn help_names_every_flag_and_points_into_the_repository() {
    for flag in ["--help", "-h"] {
        let out = hip_bench(&[flag]);
        assert!(out.status.success(), "{flag}: {:?}", out.status);
        let help = text(&out);
        for name in [
            "--quick",
            "--only",
            "--json",
            "--with-512k",
            "--seed",
            "--device",
            "--gqa-mask-per-q-head",
            "--budget",
            "--plan",
            "--self-test",
            "--quality",
            "--scan",
            "--quality-gpu",
            "--cpu",
            "--dense",
            "64 bad command line",
        ] {
            assert!(help.contains(name), "{flag} does not mention {name}:\n{help}");
        }
        // Built from parts so that this file does not match itself: documents that live outside the repository.
        for outside in [format!("../{}/", "shared"), format!("HIP-{}", "SPEC"), format!("{}.md", "BENCH")] {
            assert!(!help.contains(&outside), "{flag} points to {outside}:\n{help}");
        }
        assert!(help.contains("docs/BENCHMARK-PROTOCOL.md"), "{flag} does not name the protocol:\n{help}");
        for target in docs_pointers(&help) {
            assert!(root().join(&target).exists(), "{flag} points to {target}, which does not exist");
        }
    }
}

#[test]
fn a_bad_command_line_exits_64_naming_the_argument() {
    for (args, named) in [
        (&["--frobnicate"][..], "--frobnicate"),
        (&["--seed"][..], "--seed"),
        (&["--seed", "x"][..], "--seed"),
        (&["--budget=soon"][..], "--budget"),
        (&["--device", "one"][..], "--device"),
    ] {
        let out = hip_bench(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(named), "{args:?}: {}", text(&out));
    }
}

#[test]
fn plan_lists_the_configurations_without_a_gpu() {
    let out = hip_bench(&["--plan", "--quick"]);
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    for id in ["prefill/MHA-32/8k", "prefill/GQA-8/8k", "decode-cached/MHA-32/32k", "decode-search/GQA-8/32k"] {
        assert!(table.contains(&format!("| {id} |")), "--plan --quick lacks {id}:\n{table}");
    }
    let scan = hip_bench(&["--plan", "--scan", "--gqa-mask-per-q-head"]);
    assert!(scan.status.success() && String::from_utf8_lossy(&scan.stdout).contains("GQA-8q"), "{}", text(&scan));
}

#[test]
fn self_test_passes() {
    let out = hip_bench(&["--self-test", "--seed", "42"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("MISMATCH"), "{}", text(&out));
}

#[test]
fn quality_modes_write_json_with_the_recorded_keys() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hip-bench-cli");
    std::fs::create_dir_all(&dir).unwrap();
    for (mode, file) in [
        (&["--quality", "--quick"][..], "2026-12-02-quality-q8k8.json"),
        (&["--quality-gpu", "--cpu"][..], "2026-12-02-0728-h200-quality-gpu.json"),
    ] {
        let path = dir.join(file);
        let _ = std::fs::remove_file(&path);
        let mut args = mode.to_vec();
        args.extend(["--seed", "3", "--json", path.to_str().unwrap()]);
        let out = Command::new(env!("CARGO_BIN_EXE_hip-bench")).args(&args).env_remove("OUT").output().unwrap();
        assert!(out.status.success(), "{mode:?}: {}", text(&out));
        let new: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("valid JSON");
        same_keys(&new, &recorded(file), &format!("{mode:?}"));
        assert_eq!(new["seed"], 3);
        if mode[0] == "--quality" {
            // The FP8-scored rows (K8, then Q8K8) came as new keys beside the old ones, which every earlier file's
            // reader still finds.
            let new_row = keys(&new["rows"][0]);
            for file in ["2026-11-30-quality.json", "2026-12-02-quality-k8.json"] {
                let old = recorded(file);
                assert_eq!(keys(&new), keys(&old), "{file}");
                for key in keys(&old["rows"][0]) {
                    assert!(new_row.contains(&key), "--quality lost the row key {key} of {file}");
                }
            }
        }
    }
}

/// `--dense FILE` is read before a device is opened: a bad file exits 64 naming it (no device time spent), and
/// `--plan --dense` shows every configuration's dense shape without a GPU.
#[test]
fn dense_files_are_checked_before_the_device_and_listed_by_plan() {
    let fixture = root().join("tools/hip-bench/tests/fixtures/dense-baseline.json");
    let fixture = fixture.to_str().unwrap();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hip-bench-cli");
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad-dense.json");
    std::fs::write(&bad, "{\"device\": \"d\", \"torch\": \"t\", \"date\": \"x\", \"rows\": [{\"backend\": \"sdpa\"}]}")
        .unwrap();
    let bad = bad.to_str().unwrap();
    for (args, says) in [
        (vec!["--dense", "/nonexistent/dense.json"], "/nonexistent/dense.json"),
        (vec!["--dense", bad], "sdpa"),
        (vec!["--dense", bad, "--plan"], "sdpa"),
        (vec!["--dense", fixture, "--quality"], "--dense applies to speed runs"),
        (vec!["--dense", fixture, "--self-test"], "--dense applies to speed runs"),
    ] {
        let out = hip_bench(&args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?} should say {says}: {}", text(&out));
    }
    let out = hip_bench(&["--plan", "--dense", fixture]);
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("### Dense attention, same card, same device call"), "{table}");
    assert!(
        table.contains(
            "| prefill/MHA-32/128k | prefill 128k, 32/32 heads, D 128, causal | - | 400.00 ms | 250.00 ms | 250.00 ms \
             (cudnn) |"
        ),
        "{table}"
    );
    assert!(
        table.contains(
            "| decode-cached-b16/GQA-8/32k/graph | decode 32k x16, 32/8 heads, D 128 | - | no row | no row |"
        ),
        "{table}"
    );
}
