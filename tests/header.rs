//! The C header: committed copy matches a fresh generation; clang's view of every struct layout and constant
//! (through bindgen) matches the Rust definitions; it compiles as C11 and C++17 with warnings as errors. bindgen
//! needs libclang and the C++17 check needs c++: without them those tests skip (tests/common/tools.rs).
mod common;
use common::tools;
use hip_attn::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn header_is_current() {
    let fresh = std::fs::read_to_string(Path::new(env!("OUT_DIR")).join("hip_attn.h")).unwrap();
    let committed = std::fs::read_to_string(root().join("include/hip_attn.h")).unwrap();
    assert!(
        fresh == committed,
        "include/hip_attn.h differs from the header cbindgen generates from src/ffi: run `cargo build` outside CI \
         (it rewrites the header) and commit include/hip_attn.h"
    );
}

/// Offsets of every field, from Rust's point of view.
macro_rules! layout {
    ($map:ident, $t:ty { $($f:ident),* $(,)? }) => {{
        let name = stringify!($t);
        $map.insert(format!("Size of {name}"), std::mem::size_of::<$t>());
        $map.insert(format!("Alignment of {name}"), std::mem::align_of::<$t>());
        $( $map.insert(format!("Offset of field: {name}::{}", stringify!($f)), std::mem::offset_of!($t, $f)); )*
    }};
}

fn rust_layouts() -> HashMap<String, usize> {
    let mut m = HashMap::new();
    layout!(
        m,
        hip_config {
            struct_size,
            dtype,
            head_dim,
            num_q_heads,
            num_kv_heads,
            k,
            bq,
            bk,
            sink,
            window,
            sq,
            sk,
            refresh,
            causal,
            mask_sharing,
            backend,
            device_ordinal,
            softmax_scale,
            flags,
            reserved_u32,
            kernel_cache_dir,
            log_callback,
            log_user_data,
            decode_selection,
            prefill_scan_tail,
            reserved
        }
    );
    layout!(m, hip_tensor { data, token_stride, head_stride });
    layout!(m, hip_tensor_mut { data, token_stride, head_stride });
    layout!(
        m,
        hip_prefill_args {
            struct_size,
            batch_size,
            total_q,
            total_k,
            max_seqlen_q,
            max_seqlen_k,
            q,
            k,
            v,
            o,
            cu_seqlens_q,
            cu_seqlens_k,
            lse,
            mask_state_out,
            reserved
        }
    );
    layout!(
        m,
        hip_kv_cache {
            layout,
            page_size,
            k,
            v,
            seq_stride,
            token_stride,
            head_stride,
            page_table,
            page_table_stride,
            num_pages
        }
    );
    layout!(
        m,
        hip_decode_args {
            struct_size,
            batch_size,
            max_seqlen_k,
            reserved_u32,
            q,
            kv,
            seqlens_k,
            mask_state,
            o,
            lse,
            key_offset,
            shard_flags,
            reserved
        }
    );
    layout!(
        m,
        hip_merge_args {
            struct_size,
            num_tokens,
            num_heads,
            reserved_u32,
            o_a,
            lse_a,
            o_b,
            lse_b,
            o_out,
            lse_out,
            reserved
        }
    );
    m
}

fn rust_constants() -> HashMap<String, i64> {
    let mut m: HashMap<String, i64> = hip_status::all().iter().map(|s| (format!("{s:?}"), *s as i64)).collect();
    m.insert("HIP_ATTN_ABI_VERSION".into(), HIP_ATTN_ABI_VERSION as i64);
    m.insert("HIP_ATTN_SHARD_NOT_LAST".into(), HIP_ATTN_SHARD_NOT_LAST as i64);
    use hip_backend::*;
    use hip_dtype::*;
    use hip_kv_layout::*;
    use hip_log_level::*;
    use hip_mask_sharing::*;
    use hip_selection::*;
    for (name, v) in [
        ("HIP_ATTN_DTYPE_BF16", HIP_ATTN_DTYPE_BF16 as i64),
        ("HIP_ATTN_DTYPE_F16", HIP_ATTN_DTYPE_F16 as i64),
        ("HIP_ATTN_DTYPE_F32", HIP_ATTN_DTYPE_F32 as i64),
        ("HIP_ATTN_BACKEND_CPU", HIP_ATTN_BACKEND_CPU as i64),
        ("HIP_ATTN_BACKEND_CUDA", HIP_ATTN_BACKEND_CUDA as i64),
        ("HIP_ATTN_MASK_PER_Q_HEAD", HIP_ATTN_MASK_PER_Q_HEAD as i64),
        ("HIP_ATTN_MASK_PER_KV_HEAD", HIP_ATTN_MASK_PER_KV_HEAD as i64),
        ("HIP_ATTN_SELECT_TREE", HIP_ATTN_SELECT_TREE as i64),
        ("HIP_ATTN_SELECT_SCAN", HIP_ATTN_SELECT_SCAN as i64),
        ("HIP_ATTN_KV_CONTIGUOUS", HIP_ATTN_KV_CONTIGUOUS as i64),
        ("HIP_ATTN_KV_PAGED", HIP_ATTN_KV_PAGED as i64),
        ("HIP_ATTN_LOG_ERROR", HIP_ATTN_LOG_ERROR as i64),
        ("HIP_ATTN_LOG_WARN", HIP_ATTN_LOG_WARN as i64),
        ("HIP_ATTN_LOG_INFO", HIP_ATTN_LOG_INFO as i64),
        ("HIP_ATTN_LOG_DEBUG", HIP_ATTN_LOG_DEBUG as i64),
    ] {
        m.insert(name.into(), v);
    }
    m
}

#[test]
fn bindgen_sees_the_rust_layout() {
    const NAME: &str = "bindgen_sees_the_rust_layout";
    let builder = bindgen::Builder::default()
        .header(root().join("include/hip_attn.h").to_string_lossy())
        .allowlist_item("hip_.*|HIP_ATTN_.*")
        .layout_tests(true)
        .prepend_enum_name(false);
    // bindgen loads libclang at run time and panics when it finds none; that one panic means a missing tool.
    let generated = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.generate())) {
        Ok(g) => g,
        Err(panic) => {
            let text = panic.downcast_ref::<String>().map(String::as_str).or(panic.downcast_ref::<&str>().copied());
            if text.is_some_and(|t| t.contains("Unable to find libclang")) {
                return tools::missing(NAME, "libclang", "apt-get install libclang-dev, or set LIBCLANG_PATH");
            }
            std::panic::resume_unwind(panic)
        }
    };
    let bindings = generated.expect("bindgen could not parse include/hip_attn.h").to_string();
    // bindgen writes clang's layout as assertions: ["Size of T"][size_of::<T>() - N]; and
    // ["Offset of field: T::f"][offset_of!(T, f) - N]. Collect them and compare with Rust.
    let mut clang: HashMap<String, usize> = HashMap::new();
    let mut rest = bindings.as_str();
    while let Some(i) = rest.find("[\"") {
        rest = &rest[i + 2..];
        let end = rest.find('"').unwrap();
        let key = rest[..end].to_string();
        let tail = &rest[end..];
        if let Some(minus) = tail.find(" - ") {
            let num: String = tail[minus + 3..].chars().take_while(|c| c.is_ascii_digit()).collect();
            if let Ok(n) = num.parse() {
                clang.insert(key, n);
            }
        }
    }
    let rust = rust_layouts();
    assert!(clang.len() >= rust.len(), "bindgen reported only {} layout facts", clang.len());
    for (key, &c) in &clang {
        let r = rust
            .get(key)
            .unwrap_or_else(|| panic!("header has {key} = {c}, which the Rust layout test does not cover"));
        assert_eq!(*r, c, "{key}: Rust {r}, C {c}");
    }
    for key in rust.keys() {
        assert!(clang.contains_key(key), "Rust has {key}, the header does not");
    }
    // Constants: `pub const NAME: type = VALUE;`.
    let mut consts: HashMap<String, i64> = HashMap::new();
    for line in bindings.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("pub const ") {
            let name = rest.split(':').next().unwrap().trim().to_string();
            if let Some(v) = rest.split('=').nth(1) {
                if let Ok(v) = v.trim().trim_end_matches(';').parse::<i64>() {
                    consts.insert(name, v);
                }
            }
        }
    }
    for (name, v) in rust_constants() {
        assert_eq!(consts.get(&name), Some(&v), "constant {name}");
    }
    assert!(consts.keys().all(|k| k.starts_with("HIP_ATTN_")), "unprefixed constant in the header: {consts:?}");
    for f in [
        "hip_version",
        "hip_abi_version",
        "hip_status_string",
        "hip_last_error_message",
        "hip_config_default",
        "hip_ctx_create",
        "hip_ctx_destroy",
        "hip_ctx_last_error",
        "hip_prefill_workspace_size",
        "hip_decode_workspace_size",
        "hip_mask_state_size",
        "hip_prefill",
        "hip_decode_step",
        "hip_merge_states",
    ] {
        assert!(bindings.contains(&format!("pub fn {f}(")), "function {f} missing from the header");
    }
}

fn compile(test: &str, compiler: &str, std: &str, ext: &str) {
    if !tools::have(compiler, "--version") {
        let package = if compiler == "cc" { "gcc" } else { "g++" };
        return tools::missing(test, compiler, &format!("apt-get install {package}"));
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let src = dir.join(format!("header_check.{ext}"));
    std::fs::write(
        &src,
        "#include \"hip_attn.h\"\nint main(void) { hip_config c = hip_config_default(); return (int)c.k - 512; }\n",
    )
    .unwrap();
    let out = Command::new(compiler)
        .args([&format!("-std={std}"), "-Wall", "-Wextra", "-Werror", "-pedantic", "-c", "-o"])
        .arg(dir.join(format!("header_check_{ext}.o")))
        .arg("-I")
        .arg(root().join("include"))
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("{compiler} not runnable: {e}"));
    assert!(out.status.success(), "{compiler} -std={std}:\n{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn header_compiles_as_c11() {
    compile("header_compiles_as_c11", "cc", "c11", "c");
}

#[test]
fn header_compiles_as_cxx17() {
    compile("header_compiles_as_cxx17", "c++", "c++17", "cpp");
}

#[test]
fn every_declaration_is_documented() {
    let h = std::fs::read_to_string(root().join("include/hip_attn.h")).unwrap();
    let lines: Vec<&str> = h.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let decl = line.starts_with("typedef struct hip_")
            || (line.contains(" hip_") && line.ends_with(',') || line.ends_with(");")) && !line.starts_with(' ');
        if decl && !line.starts_with('#') && !line.starts_with("HIP_ATTN_MUST_USE") {
            let prev: Vec<&str> = lines[..i].iter().rev().take(2).cloned().collect();
            assert!(
                prev.iter().any(|p| p.contains("*/") || p.starts_with("HIP_ATTN_MUST_USE")),
                "undocumented: {line}"
            );
        }
    }
}

/// A machine without libclang and c++ (LIBCLANG_PATH at an empty directory, c++ off PATH): the two tests that
/// need them pass with a SKIP line, and fail under HIP_ATTN_REQUIRE_TOOLS=1.
#[test]
fn header_tests_skip_without_libclang_and_cxx() {
    let empty = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-libclang");
    std::fs::create_dir_all(&empty).unwrap();
    let hide = tools::Hide {
        programs: &["c++", "llvm-config"],
        env: &[("LIBCLANG_PATH", empty.to_str().unwrap())],
        ..Default::default()
    };
    tools::assert_skips_without(
        &[("bindgen_sees_the_rust_layout", "libclang"), ("header_compiles_as_cxx17", "c++")],
        &hide,
    );
}
