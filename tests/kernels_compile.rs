//! Every kernel variant compiles with NVRTC for sm_80 and sm_90a, without a GPU (CI installs NVRTC from the
//! `nvidia-cuda-nvrtc` wheel): a kernel that does not compile never lands. Skips, saying why, without libnvrtc
//! (a failure under HIP_ATTN_REQUIRE_TOOLS=1, as in CI).
//!
//! With `HIP_ATTN_DUMP_CUBINS=<dir>` every variant's cubin is also written to `<dir>/<arch>-<options>.cubin`, so
//! that `scripts/cubin-diff.sh OLD NEW` can show that a change of the sources left the compiled kernels alone.
mod common;
use common::{config, tools};
use hip_attn::config::validate;
use hip_attn::cuda::backend::{check_supported, compile_options, sources, KERNELS};
use hip_attn::cuda::compile_cubin;
use hip_attn::tensor::DType;

#[test]
fn every_kernel_variant_compiles() {
    if let Err(e) = hip_attn::cuda::ensure_nvrtc() {
        let install =
            format!("{e}; pip install nvidia-cuda-nvrtc==13.0.88 and put its nvidia/cu13/lib on LD_LIBRARY_PATH");
        return tools::missing("every_kernel_variant_compiles", "NVRTC", &install);
    }
    // (dtype, head_dim, q heads, kv heads, sharing, causal, k, bq, bk, sq, sk) for each arch.
    let mut variants = Vec::new();
    for arch in ["sm_80", "sm_90a"] {
        for dt in [DType::Bf16, DType::F16] {
            for d in [64, 128, 256] {
                variants.push((arch, dt, d, 32, 8, 1, 1, 512, 32, 2, 1, 1));
            }
        }
    }
    for (d, share, causal, k, bq, bk, sq, sk) in [
        (128, 2, 1, 512, 32, 2, 1, 1),
        (128, 1, 0, 512, 32, 2, 1, 1),
        (128, 1, 1, 0, 32, 2, 1, 1),
        (128, 1, 1, 2048, 128, 2, 2, 2),
        (64, 2, 1, 64, 1, 1, 1, 1),
        (256, 2, 0, 1024, 64, 16, 3, 4),
        (64, 1, 1, 8192, 20, 128, 1, 7),
    ] {
        variants.push(("sm_90a", DType::Bf16, d, 32, 8, share, causal, k, bq, bk, sq, sk));
    }
    let dump = std::env::var_os("HIP_ATTN_DUMP_CUBINS").map(std::path::PathBuf::from);
    if let Some(dir) = &dump {
        std::fs::create_dir_all(dir).unwrap();
    }
    let failures = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..std::thread::available_parallelism().map_or(2, |n| n.get()).min(8) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(arch, dt, d, hq, hkv, share, causal, k, bq, bk, sq, sk)) = variants.get(i) else { break };
                let mut cfg = config(dt, d, hq, hkv);
                (cfg.mask_sharing, cfg.causal, cfg.k, cfg.bq, cfg.bk, cfg.sq, cfg.sk) =
                    (share, causal, k, bq, bk, sq, sk);
                // SAFETY: no cache-dir pointer.
                let (c, _) = unsafe { validate(&cfg) }.unwrap();
                check_supported(&c).unwrap_or_else(|e| panic!("variant {i} is outside the CUDA limits: {e}"));
                let opts = compile_options(&c, arch);
                let t = std::time::Instant::now();
                match compile_cubin(sources()[0].0, sources(), &opts, arch) {
                    Ok(cubin) => {
                        eprintln!("{arch} {opts:?}: {} bytes in {:.2} s", cubin.len(), t.elapsed().as_secs_f64());
                        if let Some(dir) = &dump {
                            std::fs::write(dir.join(cubin_name(arch, &opts)), &cubin).unwrap();
                        }
                        // Every entry point the backend resolves (the SCAN kernels included) is in the cubin.
                        let text = String::from_utf8_lossy(&cubin);
                        for name in KERNELS.iter().filter(|n| !text.contains(**n)) {
                            failures.lock().unwrap().push(format!("{arch} {opts:?}: no kernel {name}"));
                        }
                    }
                    Err(e) => failures.lock().unwrap().push(format!("{arch} {opts:?}:\n{e}")),
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{} variants failed to compile:\n{}", failures.len(), failures.join("\n\n"));
}

/// A file name that says which variant a dumped cubin is: the architecture, then every -D option's value by name.
fn cubin_name(arch: &str, opts: &[String]) -> String {
    let defs: Vec<String> = opts
        .iter()
        .filter_map(|o| o.strip_prefix("-DHIP_"))
        .map(|o| o.replace('=', "").to_ascii_lowercase().replace('_', ""))
        .collect();
    format!("{arch}-{}.cubin", defs.join("-"))
}

/// NVRTC off LD_LIBRARY_PATH: the compile test passes with a SKIP line, and fails under HIP_ATTN_REQUIRE_TOOLS=1.
/// An NVRTC in the system's library directories cannot be hidden that way; then this says so and checks nothing.
#[test]
fn skips_without_nvrtc() {
    let system_wide = tools::system_library("libnvrtc.so");
    if system_wide {
        return tools::say("skips_without_nvrtc: libnvrtc is installed system-wide, so it cannot be hidden here");
    }
    let hide = tools::Hide { libraries: &["libnvrtc"], ..Default::default() };
    tools::assert_skips_without(&[("every_kernel_variant_compiles", "NVRTC")], &hide);
}
