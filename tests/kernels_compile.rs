//! Every kernel variant compiles with NVRTC for sm_80 and sm_90a, without a GPU (CI installs NVRTC from the
//! `nvidia-cuda-nvrtc` wheel): a kernel that does not compile never lands. Each variant is compiled as the
//! backend compiles it, one program per compile unit (`compile_units`), and each unit's cubin must hold exactly
//! its kernels. Skips, saying why, without libnvrtc (a failure under HIP_ATTN_REQUIRE_TOOLS=1, as in CI).
//!
//! With `HIP_ATTN_DUMP_CUBINS=<dir>` every unit's cubin is also written to `<dir>/<arch>-<options>-u<unit>.cubin`,
//! so that `scripts/cubin-diff.sh OLD NEW` can show that a change of the sources left the compiled kernels alone.
//! The headline variant (and with `HIP_ATTN_CHECK_SPLIT=1` every variant) is also compiled as one program of every
//! kernel, as a host with one compiling thread builds it: it must hold every kernel, and every kernel's code (its
//! .text section, the SASS) must be byte-identical in its unit: the grouping of backend.rs UNITS keeps NVVM from
//! compiling a kernel differently than the single program did.
mod common;
use common::{config, tools};
use hip_attn::config::validate;
use hip_attn::cuda::backend::{check_supported, compile_options, compile_units, kernel_names, sources};
use hip_attn::cuda::compile_cubin;
use hip_attn::tensor::DType;
use std::collections::BTreeMap;

#[test]
fn every_kernel_variant_compiles() {
    if let Err(e) = hip_attn::cuda::ensure_nvrtc() {
        let install =
            format!("{e}; pip install nvidia-cuda-nvrtc==13.0.88 and put its nvidia/cu13/lib on LD_LIBRARY_PATH");
        return tools::missing("every_kernel_variant_compiles", "NVRTC", &install);
    }
    // (arch, dtype, head_dim, q heads, kv heads, sharing, causal, k, bq, bk, sq, sk, flags).
    let mut variants = Vec::new();
    for arch in ["sm_80", "sm_90a"] {
        for dt in [DType::Bf16, DType::F16] {
            for d in [64, 128, 256] {
                variants.push((arch, dt, d, 32, 8, 1, 1, 512, 32, 2, 1, 1, 0));
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
        variants.push(("sm_90a", DType::Bf16, d, 32, 8, share, causal, k, bq, bk, sq, sk, 0));
    }
    // The FP8-scored search (HIP_ATTN_FLAG_FP8_SEARCH_SCORES, sm_90a and head_dim 128 only): bf16 and f16, masks
    // per kv head at its most rows (128), sampled keys, the largest Kb.
    let fp8 = hip_attn::HIP_ATTN_FLAG_FP8_SEARCH_SCORES;
    for (dt, hkv, share, k, bq, bk, sq, sk) in [
        (DType::Bf16, 32, 1, 512, 32, 2, 1, 1),
        (DType::F16, 8, 2, 512, 32, 2, 1, 1),
        (DType::Bf16, 8, 2, 2048, 64, 2, 2, 2),
        (DType::Bf16, 32, 1, 64, 20, 3, 1, 2),
    ] {
        variants.push(("sm_90a", dt, 128, 32, hkv, share, 1, k, bq, bk, sq, sk, fp8));
    }
    // The benchmark's MHA-32 headline configuration (hip-bench ctx-create/MHA-32).
    variants.push(("sm_90a", DType::Bf16, 128, 32, 32, 1, 1, 512, 32, 2, 1, 1, 0));
    let check_split = std::env::var_os("HIP_ATTN_CHECK_SPLIT").is_some_and(|v| v == "1");
    let dump = std::env::var_os("HIP_ATTN_DUMP_CUBINS").map(std::path::PathBuf::from);
    if let Some(dir) = &dump {
        std::fs::create_dir_all(dir).unwrap();
    }
    // One job per (variant, unit); unit None is the single program of every kernel (HIP_ATTN_CHECK_SPLIT).
    let mut jobs = Vec::new();
    let mut configs = Vec::new();
    for (i, &(arch, dt, d, hq, hkv, share, causal, k, bq, bk, sq, sk, flags)) in variants.iter().enumerate() {
        let mut cfg = config(dt, d, hq, hkv);
        (cfg.mask_sharing, cfg.causal, cfg.k, cfg.bq, cfg.bk, cfg.sq, cfg.sk, cfg.flags) =
            (share, causal, k, bq, bk, sq, sk, flags);
        // SAFETY: no cache-dir pointer.
        let (c, _) = unsafe { validate(&cfg) }.unwrap();
        check_supported(&c).unwrap_or_else(|e| panic!("variant {i} is outside the CUDA limits: {e}"));
        let units = compile_units(&c, arch, 16);
        // The single program is what a host with one compiling thread builds (compile_units(.., 1)): always
        // compiled for the headline variant, for every variant with HIP_ATTN_CHECK_SPLIT.
        if check_split || i == variants.len() - 1 {
            let single = compile_units(&c, arch, 1);
            assert_eq!(single.len(), 1);
            assert_eq!(single[0].options, compile_options(&c, arch));
            jobs.push((i, None, single[0].options.clone()));
        }
        jobs.extend(units.iter().enumerate().map(|(u, unit)| (i, Some(u), unit.options.clone())));
        configs.push((arch, kernel_names(&c, arch), units, compile_options(&c, arch)));
    }
    let failures = std::sync::Mutex::new(Vec::new());
    let cubins = std::sync::Mutex::new(BTreeMap::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..std::thread::available_parallelism().map_or(2, |n| n.get()).min(8) {
            s.spawn(|| loop {
                let j = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((i, unit, opts)) = jobs.get(j) else { break };
                let arch = configs[*i].0;
                let t = std::time::Instant::now();
                match compile_cubin(sources()[0].0, sources(), opts, arch) {
                    Ok(cubin) => {
                        eprintln!("{arch} {opts:?}: {} bytes in {:.2} s", cubin.len(), t.elapsed().as_secs_f64());
                        if let (Some(dir), Some(u)) = (&dump, unit) {
                            std::fs::write(dir.join(cubin_name(arch, &configs[*i].2[*u].options, *u)), &cubin).unwrap();
                        }
                        cubins.lock().unwrap().insert((*i, *unit), cubin);
                    }
                    Err(e) => failures.lock().unwrap().push(format!("{arch} {opts:?}:\n{e}")),
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    let cubins = cubins.into_inner().unwrap();
    for (i, (arch, names, units, opts)) in configs.iter().enumerate() {
        let what = format!("{arch} {opts:?}");
        let whole = cubins.get(&(i, None)).map(|c| kernel_code(c));
        // Every kernel the backend resolves is in the cubin of its unit, and in no other.
        for (u, unit) in units.iter().enumerate() {
            let Some(cubin) = cubins.get(&(i, Some(u))) else { continue };
            let code = kernel_code(cubin);
            let held: Vec<&str> = code.keys().map(String::as_str).collect();
            let mut expect: Vec<&str> = unit.names.iter().chain(&unit.partners).copied().collect();
            expect.sort();
            if held != expect {
                failures.push(format!("{what}: unit {u} holds {held:?}, expected {:?}", unit.names));
            }
            if let Some(whole) = &whole {
                for (name, text) in &code {
                    if whole.get(name) != Some(text) {
                        failures.push(format!("{what}: {name} compiles differently in unit {u} than in one program"));
                    }
                }
            }
        }
        let mut all: Vec<&str> = units.iter().flat_map(|u| u.names.iter().copied()).collect();
        all.sort();
        let mut want = names.clone();
        want.sort();
        if all != want {
            failures.push(format!("{what}: the units hold {all:?}, the backend loads {want:?}"));
        }
        if let Some(whole) = &whole {
            let mut in_whole: Vec<&str> = whole.keys().map(String::as_str).collect();
            in_whole.sort();
            if in_whole != want {
                failures.push(format!("{what}: one program holds {in_whole:?}, the backend loads {want:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n\n"));
}

/// A file name that says which variant and unit a dumped cubin is: the architecture, then every -D option's value
/// by name (the unit's kernel selection left out), then the unit's index in UNITS order.
fn cubin_name(arch: &str, opts: &[String], unit: usize) -> String {
    let defs: Vec<String> = opts
        .iter()
        .filter_map(|o| o.strip_prefix("-DHIP_"))
        .filter(|o| !o.starts_with("ONLY") && !o.starts_with("WANT_"))
        .map(|o| o.replace('=', "").to_ascii_lowercase().replace('_', ""))
        .collect();
    format!("{arch}-{}-u{unit}.cubin", defs.join("-"))
}

/// The code of every kernel in a cubin: the bytes of each `.text.<kernel>` section, by kernel name. Equal bytes
/// are equal SASS (calls and constants are relocations kept apart from the section).
fn kernel_code(cubin: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let u16_at = |o: usize| u16::from_le_bytes([cubin[o], cubin[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(cubin[o..o + 4].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(cubin[o..o + 8].try_into().unwrap()) as usize;
    assert_eq!(&cubin[..4], b"\x7fELF", "not an ELF cubin");
    let (shoff, shentsize, shnum, shstrndx) = (u64_at(0x28), u16_at(0x3A), u16_at(0x3C), u16_at(0x3E));
    let section = |i: usize| {
        let h = shoff + i * shentsize;
        (u32_at(h), u64_at(h + 0x18), u64_at(h + 0x20))
    };
    let names_at = section(shstrndx).1;
    let name = |off: usize| {
        let s = &cubin[names_at + off..];
        String::from_utf8_lossy(&s[..s.iter().position(|&b| b == 0).unwrap()]).into_owned()
    };
    (0..shnum)
        .map(section)
        .filter_map(|(n, off, size)| {
            let kernel = name(n).strip_prefix(".text.")?.to_string();
            Some((kernel, cubin[off..off + size].to_vec()))
        })
        .collect()
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
