//! Generates the C header with cbindgen and the kernels' contract header from src/contract.rs, and gives the
//! shared library its SONAME.
//!
//! Both headers are always generated into OUT_DIR (the `header_is_current` and `contract_header_is_current` tests
//! compare them with the committed include/hip_attn.h and cuda/generated/hip_contract.h; the CUDA backend compiles
//! the OUT_DIR copy of the contract). Outside CI they are also written into the source tree, so a developer's
//! build keeps the committed headers current; CI (CI=true) never writes into the source tree, so drift fails the
//! tests there.

use std::path::PathBuf;

// The one definition of the Rust-CUDA contract; only its C text is used here.
#[allow(dead_code)]
#[path = "src/contract.rs"]
mod contract;

fn main() {
    let abi = 1; // keep equal to HIP_ATTN_ABI_VERSION (a test checks it)
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libhip_attn.so.{abi}");
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=src/status.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=src/contract.rs");
    println!("cargo:rerun-if-env-changed=CI");

    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let contract = contract::header_text();
    std::fs::write(out_dir.join("hip_contract.h"), &contract).expect("OUT_DIR/hip_contract.h");
    if std::env::var_os("CI").is_none() {
        let committed = crate_dir.join("cuda/generated/hip_contract.h");
        // Rewritten only when it changed, so that its timestamp does not rebuild what depends on it.
        if std::fs::read_to_string(&committed).ok().as_deref() != Some(contract.as_str()) {
            std::fs::create_dir_all(committed.parent().unwrap()).expect("cuda/generated");
            std::fs::write(&committed, &contract).expect("cuda/generated/hip_contract.h");
        }
    }

    let out = out_dir.join("hip_attn.h");
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
