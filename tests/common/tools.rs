//! Optional tools (libclang, NVRTC, c++, make, pkg-config, Go, Zig, valgrind, a GPU). Without one, the tests
//! that need it pass with one printed `SKIP <test>: <tool> not found (<how to install>)` line, so `cargo test`
//! passes on a machine with only Rust and cc. `HIP_ATTN_REQUIRE_TOOLS=1` (set by .ci/run) turns each such skip
//! into a failure, so that CI cannot silently stop running a test; a missing GPU stays a skip even then.
//!
//! `rerun_without` re-executes the current test binary with tools hidden: each test file that skips checks that
//! its skips work, which is how a bare machine is simulated inside `cargo test`.
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const REQUIRE_TOOLS: &str = "HIP_ATTN_REQUIRE_TOOLS";

/// Whether a missing tool must fail the test (any value but empty or 0).
pub fn required() -> bool {
    std::env::var(REQUIRE_TOOLS).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// On the real stderr: libtest captures `eprintln!` of passing tests, and a skip must show in the log.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// `test` cannot run because `tool` is missing: a SKIP line, or a panic under HIP_ATTN_REQUIRE_TOOLS. The
/// caller returns right after.
pub fn missing(test: &str, tool: &str, install: &str) {
    let line = format!("SKIP {test}: {tool} not found ({install})");
    if required() {
        panic!("{line}; {REQUIRE_TOOLS} is set, so a missing tool is a failure");
    }
    say(&line);
}

/// `test` needs a GPU that this machine lacks: always a skip (CI has no GPU), whatever HIP_ATTN_REQUIRE_TOOLS says.
pub fn no_gpu(test: &str, why: impl std::fmt::Display) {
    say(&format!("SKIP {test}: {why}"));
}

/// `tool version_arg` runs and succeeds.
pub fn have(tool: &str, version_arg: &str) -> bool {
    Command::new(tool).arg(version_arg).output().is_ok_and(|o| o.status.success())
}

/// What to hide from a re-executed test binary.
#[derive(Default)]
pub struct Hide<'a> {
    /// Program names that must not be found on PATH.
    pub programs: &'a [&'a str],
    /// Drop LD_LIBRARY_PATH directories holding a file whose name starts with one of these (e.g. "libnvrtc").
    pub libraries: &'a [&'a str],
    /// Extra environment (e.g. LIBCLANG_PATH pointing at an empty directory).
    pub env: &'a [(&'a str, &'a str)],
}

/// A directory of links to every program on PATH except `hidden` (the first of each name wins, as PATH
/// lookup would), to stand in for PATH.
fn path_without(name: &str, hidden: &[&str]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hidden-tools").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = std::env::var_os("PATH").unwrap_or_default();
    for entry in std::env::split_paths(&path).filter_map(|d| std::fs::read_dir(d).ok()).flatten().flatten() {
        let file = entry.file_name();
        let Some(s) = file.to_str() else { continue };
        if hidden.contains(&s) || dir.join(&file).symlink_metadata().is_ok() {
            continue;
        }
        let target = entry.path();
        if std::fs::metadata(&target).is_ok_and(|m| m.is_file()) {
            let _ = std::os::unix::fs::symlink(&target, dir.join(&file));
        }
    }
    dir
}

/// The dynamic loader finds a library named `name`* without LD_LIBRARY_PATH (its cache or default directories),
/// so `Hide::libraries` cannot hide it.
pub fn system_library(name: &str) -> bool {
    let cached = ["ldconfig", "/sbin/ldconfig"].iter().find_map(|l| Command::new(l).arg("-p").output().ok());
    let listed = cached.is_some_and(|o| String::from_utf8_lossy(&o.stdout).contains(name));
    listed || ["/lib", "/lib64", "/usr/lib", "/usr/lib64"].iter().any(|d| holds_library(Path::new(d), &[name]))
}

fn holds_library(dir: &Path, prefixes: &[&str]) -> bool {
    std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
        let name = e.file_name();
        prefixes.iter().any(|p| name.to_string_lossy().starts_with(p))
    })
}

/// Runs `tests` (exact names) of this test binary again with `hide` applied and HIP_ATTN_REQUIRE_TOOLS set to
/// `require`. Returns the output, stdout and stderr together.
pub fn rerun_without(tests: &[&str], hide: &Hide, require: bool) -> (Output, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(tests).args(["--exact", "--test-threads=1"]);
    cmd.env("PATH", path_without(tests[0], hide.programs));
    if let Some(lp) = std::env::var_os("LD_LIBRARY_PATH") {
        let kept: Vec<PathBuf> = std::env::split_paths(&lp).filter(|d| !holds_library(d, hide.libraries)).collect();
        cmd.env("LD_LIBRARY_PATH", std::env::join_paths(kept).unwrap_or_else(|_| OsString::new()));
    }
    cmd.envs(hide.env.iter().copied());
    if require {
        cmd.env(REQUIRE_TOOLS, "1");
    } else {
        cmd.env_remove(REQUIRE_TOOLS);
    }
    let out = cmd.output().expect("cannot re-run the test binary");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out, text)
}

/// With `hide` applied, each (test, tool) of `cases` passes with its SKIP line naming that tool; with
/// HIP_ATTN_REQUIRE_TOOLS=1 the same run fails instead.
pub fn assert_skips_without(cases: &[(&str, &str)], hide: &Hide) {
    let tests: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let (out, text) = rerun_without(&tests, hide, false);
    assert!(out.status.success(), "with tools hidden, {tests:?} must pass (skipping):\n{text}");
    for (test, tool) in cases {
        let want = format!("SKIP {test}: {tool} not found (");
        assert!(text.contains(&want), "with tools hidden, no `{want}...` line:\n{text}");
    }
    let (out, text) = rerun_without(&tests, hide, true);
    assert!(!out.status.success(), "with tools hidden and {REQUIRE_TOOLS}=1, {tests:?} must fail:\n{text}");
    assert!(text.contains(REQUIRE_TOOLS), "the failure must name {REQUIRE_TOOLS}:\n{text}");
}
