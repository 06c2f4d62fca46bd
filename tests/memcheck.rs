//! Memory and thread hygiene under valgrind (skipped, with a printed reason, where valgrind is not installed;
//! .ci/run installs it and makes a missing one a failure with HIP_ATTN_REQUIRE_TOOLS=1):
//! - the C example under memcheck: no invalid access, no definite or indirect leak;
//! - tests/c/threads.c (one context shared by pthreads, separate workspaces) under helgrind, with
//!   tests/helgrind.supp (one documented false positive: std's futex-based Mutex);
//! - a short run of the fuzz engine (tests/fuzz_engine) under memcheck, with exact-size heap blocks instead
//!   of guard zones so that valgrind also catches out-of-bounds *reads*. The run is this test binary itself,
//!   re-executed under valgrind with only the `memcheck_fuzz_child` test selected.
mod common;
mod fuzz_engine;

use common::tools::{self, say};
use std::path::{Path, PathBuf};
use std::process::Command;

const CHILD_ENV: &str = "HIP_ATTN_MEMCHECK_CHILD";

fn have_valgrind(test: &str) -> bool {
    let present = tools::have("valgrind", "--version");
    if !present {
        tools::missing(test, "valgrind", "apt-get install valgrind");
    }
    present
}

fn compile(src: &Path, exe: &Path, extra: &[&str]) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-g", "-I"])
        .arg(root.join("include"))
        .arg(src)
        .arg("-L")
        .arg(common::built_library_dir())
        .args(["-lhip_attn", "-lm", "-ldl"])
        .args(extra)
        .arg("-o")
        .arg(exe)
        .output()
        .expect("cc not runnable");
    assert!(out.status.success(), "compiling {}:\n{}", src.display(), String::from_utf8_lossy(&out.stderr));
}

fn run_valgrind(
    args: &[&str],
    exe: &Path,
    dir: &Path,
    envs: &[(&str, &str)],
    exe_args: &[&str],
) -> (bool, String, String) {
    let start = std::time::Instant::now();
    let out = Command::new("valgrind")
        .args(args)
        .arg(exe)
        .args(exe_args)
        .env("LD_LIBRARY_PATH", dir)
        .envs(envs.iter().copied())
        .output()
        .expect("valgrind not runnable");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    say(&format!(
        "{} under valgrind {}: {:?} in {:.1}s",
        exe.display(),
        args[0],
        out.status,
        start.elapsed().as_secs_f64()
    ));
    (out.status.success(), stdout, stderr)
}

const MEMCHECK: &[&str] =
    &["--tool=memcheck", "--error-exitcode=99", "--leak-check=full", "--errors-for-leak-kinds=definite,indirect"];

#[test]
fn c_example_under_memcheck() {
    if !have_valgrind("c_example_under_memcheck") {
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = common::soname_dir("memcheck_example");
    let exe = dir.join("example_c");
    compile(&root.join("examples/c/example.c"), &exe, &[]);
    let (ok, stdout, stderr) = run_valgrind(MEMCHECK, &exe, &dir, &[], &[]);
    assert!(ok && stdout.contains("MATCH"), "valgrind memcheck on the C example:\n{stdout}\n{stderr}");
    assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "{stderr}");
    assert!(!stderr.contains("definitely lost: ") || stderr.contains("definitely lost: 0 bytes"), "{stderr}");
}

#[test]
fn shared_context_threads_under_helgrind() {
    if !have_valgrind("shared_context_threads_under_helgrind") {
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = common::soname_dir("helgrind_threads");
    let exe = dir.join("threads_c");
    compile(&root.join("tests/c/threads.c"), &exe, &["-pthread"]);
    let supp = format!("--suppressions={}", root.join("tests/helgrind.supp").display());
    let (ok, stdout, stderr) = run_valgrind(&["--tool=helgrind", "--error-exitcode=99", &supp], &exe, &dir, &[], &[]);
    assert!(ok && stdout.contains("MATCH"), "valgrind helgrind on tests/c/threads.c:\n{stdout}\n{stderr}");
    assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "{stderr}");
}

#[test]
fn fuzz_under_memcheck() {
    if std::env::var_os(CHILD_ENV).is_some() || !have_valgrind("fuzz_under_memcheck") {
        return;
    }
    let secs = std::env::var("HIP_ATTN_MEMCHECK_FUZZ_SECONDS").unwrap_or_else(|_| "10".into());
    let exe = std::env::current_exe().unwrap();
    let dir = common::built_library_dir();
    let (ok, stdout, stderr) = run_valgrind(
        &[
            "--tool=memcheck",
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--redzone-size=256",
        ],
        &exe,
        &dir,
        &[
            (CHILD_ENV, "1"),
            ("HIP_ATTN_FUZZ_SECONDS", &secs),
            ("HIP_ATTN_FUZZ_GUARD", "0"),
            ("HIP_ATTN_FUZZ_TRACE", "1"),
            ("RUST_BACKTRACE", "0"),
        ],
        &["memcheck_fuzz_child", "--exact", "--nocapture", "--test-threads=1"],
    );
    // A valgrind report follows the "fuzz case HIP_ATTN_FUZZ_SEED=..." or "...CASE='...'" line of its case.
    let summary = stderr.lines().filter(|l| l.starts_with("fuzz:")).collect::<Vec<_>>().join("\n");
    say(&summary);
    assert!(ok && stdout.contains("1 passed"), "fuzz engine under valgrind memcheck:\n{stdout}\n{stderr}");
    assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "{stderr}");
}

/// The fuzz engine for `fuzz_under_memcheck`: does nothing unless that test started this binary for it.
#[test]
fn memcheck_fuzz_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    fuzz_engine::main_entry(10.0);
}

/// valgrind off PATH: the three valgrind tests pass with a SKIP line, and fail under HIP_ATTN_REQUIRE_TOOLS=1.
#[test]
fn skips_without_valgrind() {
    let hide = tools::Hide { programs: &["valgrind"], ..Default::default() };
    tools::assert_skips_without(
        &[
            ("c_example_under_memcheck", "valgrind"),
            ("shared_context_threads_under_helgrind", "valgrind"),
            ("fuzz_under_memcheck", "valgrind"),
        ],
        &hide,
    );
}
