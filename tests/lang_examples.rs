//! The C++, Go and Zig examples (examples/README.md) build against the library that this `cargo test` built and
//! run on the CPU backend (or the one HIP_ATTN_BACKEND names), each checking itself against dense attention.
//!
//! They build against an installed copy: `make install-only` puts this profile's library, header and
//! hip_attn.pc into a private prefix, exactly as `make install` would, without running cargo again (this test
//! runs inside cargo). The C++ example finds it through pkg-config, shared and static; Go and Zig get the
//! prefix's directories. A test whose toolchain is missing skips with a printed reason; .ci/run installs them
//! all and sets HIP_ATTN_REQUIRE_TOOLS=1, so in CI every one runs (tests/common/tools.rs).
mod common;
use common::tools::{self, have};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Scratch space that survives between runs (Go's and Zig's caches make later runs fast).
fn scratch() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lang_examples")
}

const MAKE: (&str, &str) = ("make", "apt-get install make");
const CXX: (&str, &str) = ("c++", "apt-get install g++");
const PKG_CONFIG: (&str, &str) = ("pkg-config", "apt-get install pkg-config");
const GO: (&str, &str) = ("go", "apt-get install golang-go");
const ZIG: (&str, &str) = ("zig", "pip install ziglang==0.17.1, then put its package directory on PATH");

/// Reports `test` as skipped for the first of `needs` that is missing (a failure under HIP_ATTN_REQUIRE_TOOLS);
/// false then.
fn tools_present(test: &str, needs: &[(&str, &str)]) -> bool {
    for &(tool, install) in needs {
        let version_arg = if tool == "go" || tool == "zig" { "version" } else { "--version" };
        if !have(tool, version_arg) {
            tools::missing(test, tool, install);
            return false;
        }
    }
    true
}

fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{what}:\n{text}");
    assert!(out.status.success(), "{what} failed ({}):\n{text}", out.status);
    out
}

fn assert_match(out: &Output, what: &str) {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("MATCH: HiP with k covering all keys equals dense attention"), "{what}: no MATCH in\n{text}");
}

/// `make install-only` of this profile's build into `prefix` (after removing it), with `vars` added.
fn install(prefix: &Path, vars: &[&str]) {
    let _ = std::fs::remove_dir_all(prefix);
    run(
        Command::new("make")
            .current_dir(root())
            .arg("--no-print-directory")
            .arg("install-only")
            .arg(format!("LIBDIR={}", common::built_library_dir().display()))
            .arg(format!("PREFIX={}", prefix.display()))
            .args(vars),
        "make install-only",
    );
}

/// The default install into a private prefix, once per test binary (the caller has checked that make is there).
fn installed_prefix() -> &'static Path {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let prefix = scratch().join("prefix");
        install(&prefix, &[]);
        prefix
    })
}

/// Section names of an ELF file, or of every member of an archive, as readelf lists them.
fn sections(path: &Path) -> String {
    String::from_utf8(run(Command::new("readelf").arg("-SW").arg(path), "readelf -S").stdout).unwrap()
}

#[test]
fn install_lays_out_soname_links_and_pkg_config() {
    const NAME: &str = "install_lays_out_soname_links_and_pkg_config";
    if !tools_present(NAME, &[MAKE, ("readelf", "apt-get install binutils")]) {
        return;
    }
    let prefix = installed_prefix();
    let lib = prefix.join("lib");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(std::fs::read_link(lib.join("libhip_attn.so")).unwrap(), Path::new("libhip_attn.so.1"));
    assert_eq!(
        std::fs::read_link(lib.join("libhip_attn.so.1")).unwrap(),
        PathBuf::from(format!("libhip_attn.so.{version}"))
    );
    assert!(lib.join("libhip_attn.a").is_file());
    assert!(prefix.join("include/hip_attn.h").is_file());
    let pc = std::fs::read_to_string(lib.join("pkgconfig/hip_attn.pc")).unwrap();
    assert!(pc.contains(&format!("Version: {version}")), "{pc}");
    assert!(pc.contains(&format!("prefix={}", prefix.display())), "{pc}");

    // Installed objects are stripped of debug info; the shared library keeps its exported symbols.
    let so = lib.join(format!("libhip_attn.so.{version}"));
    for object in [&so, &lib.join("libhip_attn.a")] {
        let s = sections(object);
        assert!(s.contains(".text") && !s.contains(".debug_info"), "{} carries debug info:\n{s}", object.display());
    }
    let dynsym = run(Command::new("readelf").arg("--dyn-syms").arg(&so), "readelf --dyn-syms").stdout;
    assert!(String::from_utf8_lossy(&dynsym).contains("hip_ctx_create"), "stripping lost the exported symbols");

    // KEEP_DEBUG=1 installs the objects as built, with their debug info.
    let debug_prefix = scratch().join("prefix-debug");
    install(&debug_prefix, &["KEEP_DEBUG=1"]);
    for object in [format!("libhip_attn.so.{version}"), "libhip_attn.a".into()] {
        let s = sections(&debug_prefix.join("lib").join(&object));
        assert!(s.contains(".debug_info"), "KEEP_DEBUG=1 installed {object} without debug info:\n{s}");
    }
}

fn pkg_config(prefix: &Path, args: &[&str]) -> Vec<String> {
    let out = run(
        Command::new("pkg-config").env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig")).args(args).arg("hip_attn"),
        "pkg-config",
    );
    String::from_utf8(out.stdout).unwrap().split_whitespace().map(str::to_owned).collect()
}

#[test]
fn cpp_example_through_pkg_config_matches_dense() {
    const NAME: &str = "cpp_example_through_pkg_config_matches_dense";
    if !tools_present(NAME, &[CXX, PKG_CONFIG, MAKE]) {
        return;
    }
    let prefix = installed_prefix();
    let cflags = pkg_config(prefix, &["--cflags"]);
    let source = root().join("examples/cpp/example.cpp");
    let cxx = |out: &Path| {
        let mut cmd = Command::new("c++");
        cmd.args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-Wpedantic", "-O1"]).args(&cflags).arg(&source);
        cmd.arg("-o").arg(out);
        cmd
    };

    // Shared: the engine links -lhip_attn and loads libhip_attn.so.1 (the SONAME) at run time.
    let exe = scratch().join("example_cpp");
    run(cxx(&exe).args(pkg_config(prefix, &["--libs"])).arg("-ldl"), "c++ (shared)");
    let out = run(Command::new(&exe).env("LD_LIBRARY_PATH", prefix.join("lib")), "example_cpp");
    assert_match(&out, "example_cpp");

    // Static: libhip_attn.a plus the system libraries that pkg-config --static lists; no library at run time.
    let exe = scratch().join("example_cpp_static");
    let system_libs: Vec<String> =
        pkg_config(prefix, &["--static", "--libs-only-l"]).into_iter().filter(|l| l != "-lhip_attn").collect();
    run(cxx(&exe).arg(prefix.join("lib/libhip_attn.a")).args(&system_libs).arg("-ldl"), "c++ (static)");
    let out = run(Command::new(&exe).env_remove("LD_LIBRARY_PATH"), "example_cpp_static");
    assert_match(&out, "example_cpp_static");
}

/// examples/cpp/sharded_decode.cpp: one sequence's decode sharded over 1 to 3 ranges (no second GPU or NCCL on
/// the CPU backend, so the shards run one after another), merged with hip_merge_states, equals dense attention.
#[test]
fn cpp_sharded_decode_example_matches_dense() {
    const NAME: &str = "cpp_sharded_decode_example_matches_dense";
    if !tools_present(NAME, &[CXX, PKG_CONFIG, MAKE]) {
        return;
    }
    let prefix = installed_prefix();
    let exe = scratch().join("sharded_decode");
    run(
        Command::new("c++")
            .args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-Wpedantic", "-O1"])
            .args(pkg_config(prefix, &["--cflags"]))
            .arg(root().join("examples/cpp/sharded_decode.cpp"))
            .arg("-o")
            .arg(&exe)
            .args(pkg_config(prefix, &["--libs"]))
            .arg("-ldl"),
        "c++ (sharded_decode)",
    );
    for shards in ["1", "2", "3"] {
        let out = run(Command::new(&exe).arg(shards).env("LD_LIBRARY_PATH", prefix.join("lib")), "sharded_decode");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("MATCH: sharded HiP with k covering all keys equals dense attention"),
            "{shards} shards: no MATCH in\n{text}"
        );
    }
}

#[test]
fn go_test_passes() {
    if !tools_present("go_test_passes", &[GO, MAKE]) {
        return;
    }
    let prefix = installed_prefix();
    // CGO_* flags from the environment come before the package's #cgo lines, so the installed header and
    // library win. Go's caches live under target/ so that nothing depends on $HOME.
    let out = run(
        Command::new("go")
            .current_dir(root().join("examples/go"))
            .args(["test", "-count=1", "-v", "./..."])
            .env("CGO_CFLAGS", format!("-I{}", prefix.join("include").display()))
            .env("CGO_LDFLAGS", format!("-L{}", prefix.join("lib").display()))
            .env("LD_LIBRARY_PATH", prefix.join("lib"))
            .env("GOCACHE", scratch().join("go-cache"))
            .env("GOPATH", scratch().join("go-path"))
            .env("GOFLAGS", "-modcacherw")
            .env("GOTOOLCHAIN", "local"),
        "go test",
    );
    assert_match(&out, "go test");
}

#[test]
fn zig_build_test_and_run_pass() {
    if !tools_present("zig_build_test_and_run_pass", &[ZIG, MAKE]) {
        return;
    }
    let prefix = installed_prefix();
    // Both of Zig's caches and its output prefix live under target/: a clean clone needs nothing else. The
    // first build compiles Zig's build runner and takes a few minutes; later ones hit the cache.
    let out = run(
        Command::new("zig")
            .current_dir(root().join("examples/zig"))
            .args(["build", "test", "run", "--summary", "all"])
            .arg(format!("-Dlibdir={}", prefix.join("lib").display()))
            .arg("--cache-dir")
            .arg(scratch().join("zig-cache"))
            .arg("--prefix")
            .arg(scratch().join("zig-out"))
            .env("ZIG_GLOBAL_CACHE_DIR", scratch().join("zig-global-cache")),
        "zig build test run",
    );
    assert_match(&out, "zig build test run");
}

/// A machine with none of the toolchains: every test here passes with a SKIP line naming the first missing tool,
/// and fails under HIP_ATTN_REQUIRE_TOOLS=1.
#[test]
fn skips_without_toolchains() {
    let hide = tools::Hide { programs: &["make", "c++", "pkg-config", "go", "zig"], ..Default::default() };
    tools::assert_skips_without(
        &[
            ("install_lays_out_soname_links_and_pkg_config", "make"),
            ("cpp_example_through_pkg_config_matches_dense", "c++"),
            ("cpp_sharded_decode_example_matches_dense", "c++"),
            ("go_test_passes", "go"),
            ("zig_build_test_and_run_pass", "zig"),
        ],
        &hide,
    );
}
