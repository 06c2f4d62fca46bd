//! The C example builds with `cc -std=c11 -Wall -Wextra -Werror` against the header and the library that this
//! `cargo test` built, runs on the CPU backend and reports a match with dense attention.
mod common;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn c_example_matches_dense() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lib = common::built_library_dir();
    let run_dir = common::soname_dir("c_example");
    let exe = run_dir.join("example_c");
    let out = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-I"])
        .arg(root.join("include"))
        .arg(root.join("examples/c/example.c"))
        .arg("-L")
        .arg(&lib)
        .args(["-lhip_attn", "-lm", "-o"])
        .arg(&exe)
        .output()
        .expect("cc not runnable");
    assert!(out.status.success(), "compiling examples/c/example.c:\n{}", String::from_utf8_lossy(&out.stderr));
    let run = Command::new(&exe).env("LD_LIBRARY_PATH", &run_dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    println!("{stdout}");
    assert!(run.status.success(), "example failed:\n{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("MATCH"), "{stdout}");
}
