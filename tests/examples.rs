//! The C example builds with `cc -std=c11 -Wall -Wextra -Werror` against the header and the library that this
//! `cargo test` built, runs on the CPU backend and reports a match with dense attention; it takes its backend
//! from HIP_ATTN_BACKEND like the other languages' examples.
mod common;
use std::path::PathBuf;
use std::process::{Command, Output};

/// Builds examples/c/example.c into a private directory that also holds the library under its SONAME.
fn build(name: &str) -> (PathBuf, PathBuf) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lib = common::built_library_dir();
    let run_dir = common::soname_dir(name);
    let exe = run_dir.join("example_c");
    let out = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-I"])
        .arg(root.join("include"))
        .arg(root.join("examples/c/example.c"))
        .arg("-L")
        .arg(&lib)
        .args(["-lhip_attn", "-lm", "-ldl", "-o"])
        .arg(&exe)
        .output()
        .expect("cc not runnable");
    assert!(out.status.success(), "compiling examples/c/example.c:\n{}", String::from_utf8_lossy(&out.stderr));
    (exe, run_dir)
}

fn run(exe: &PathBuf, run_dir: &PathBuf, backend: Option<&str>) -> (Output, String) {
    let mut cmd = Command::new(exe);
    cmd.env("LD_LIBRARY_PATH", run_dir);
    match backend {
        Some(b) => cmd.env("HIP_ATTN_BACKEND", b),
        None => cmd.env_remove("HIP_ATTN_BACKEND"),
    };
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("HIP_ATTN_BACKEND={backend:?}:\n{text}");
    (out, text)
}

#[test]
fn c_example_matches_dense() {
    let (exe, run_dir) = build("c_example");
    for backend in [None, Some("cpu")] {
        let (out, text) = run(&exe, &run_dir, backend);
        assert!(out.status.success(), "example failed:\n{text}");
        assert!(text.contains("MATCH: HiP with k covering all keys equals dense attention"), "{text}");
    }
}

/// HIP_ATTN_BACKEND=cuda runs on the GPU where there is one (and matches there too); without a CUDA driver the
/// example stops with a non-zero exit and says why. A backend name it does not know is refused by name.
#[test]
fn c_example_honours_hip_attn_backend() {
    let (exe, run_dir) = build("c_example_backend");
    let (out, text) = run(&exe, &run_dir, Some("gpu"));
    assert!(!out.status.success() && text.contains("HIP_ATTN_BACKEND must be cpu or cuda, not 'gpu'"), "{text}");

    let (out, text) = run(&exe, &run_dir, Some("cuda"));
    let gpu =
        hip_attn::cuda::ensure_driver().is_ok() && cudarc::driver::result::device::get_count().is_ok_and(|n| n > 0);
    if gpu {
        assert!(out.status.success() && text.contains("MATCH"), "the C example on the CUDA backend:\n{text}");
    } else if hip_attn::cuda::ensure_driver().is_err() {
        assert!(!out.status.success(), "without a CUDA driver the example must fail:\n{text}");
        assert!(text.contains("CUDA driver not available: "), "{text}");
        assert!(!text.contains("MATCH"), "it ran on another backend than HIP_ATTN_BACKEND named:\n{text}");
    } else {
        // A driver without a usable device: the first driver call that fails is named.
        assert!(!out.status.success() && text.contains("failed: CUDA error"), "{text}");
    }
}
