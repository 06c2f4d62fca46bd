//! Generates the C header with cbindgen and gives the shared library its SONAME.
//!
//! The header is always generated into OUT_DIR (the `header_is_current` test compares it with the committed
//! include/hip_attn.h). Outside CI it is also written to include/hip_attn.h, so a developer's build keeps the
//! committed header current; CI (CI=true) never writes into the source tree, so drift fails the test there.

use std::path::PathBuf;

fn main() {
    let abi = 1; // keep equal to HIP_ATTN_ABI_VERSION (a test checks it)
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libhip_attn.so.{abi}");
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=src/status.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=CI");

    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("hip_attn.h");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    // Only the C shell's sources: nothing else in the crate can leak into the C API.
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/status.rs"))
        .with_src(crate_dir.join("src/ffi/types.rs"))
        .with_src(crate_dir.join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen could not generate the header");
    bindings.write_to_file(&out);
    if std::env::var_os("CI").is_none() {
        bindings.write_to_file(crate_dir.join("include/hip_attn.h"));
    }
}
