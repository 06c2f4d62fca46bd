//! The Hopper dense prefill kernel (`hip_prefill_attn_hopper`, cuda/hopper/dense.cuh) is in the module exactly
//! where the plan may choose it: sm_90a, bf16, head_dim 128 (causal and not); never for sm_80, f16 or other head
//! dims. Compile-only, without a GPU; skips, saying why, without libnvrtc.
mod common;
use common::{config, tools};
use hip_attn::config::validate;
use hip_attn::cuda::backend::{compile_options, compile_units, sources, HOPPER_DENSE_KERNEL};
use hip_attn::cuda::compile_cubin;
use hip_attn::tensor::DType;

#[test]
fn hopper_dense_kernel_is_compiled_where_the_plan_can_choose_it() {
    if let Err(e) = hip_attn::cuda::ensure_nvrtc() {
        let install =
            format!("{e}; pip install nvidia-cuda-nvrtc==13.0.88 and put its nvidia/cu13/lib on LD_LIBRARY_PATH");
        return tools::missing("hopper_dense_kernel_is_compiled_where_the_plan_can_choose_it", "NVRTC", &install);
    }
    let filter = std::env::var("HIP_ATTN_HOPPER_ONLY").ok();
    for (arch, dt, d, causal, expect) in [
        ("sm_90a", DType::Bf16, 128, 1, true),
        ("sm_90a", DType::Bf16, 128, 0, true),
        ("sm_90a", DType::F16, 128, 1, false),
        ("sm_90a", DType::Bf16, 64, 1, false),
        ("sm_80", DType::Bf16, 128, 1, false),
    ] {
        if filter.as_deref().is_some_and(|f| f != "expect" || !expect) {
            continue;
        }
        let mut cfg = config(dt, d, 32, 8);
        cfg.causal = causal;
        // SAFETY: no cache-dir pointer.
        let (c, _) = unsafe { validate(&cfg) }.unwrap();
        // Context creation compiles the kernel in a unit of its own exactly there.
        let unit = compile_units(&c, arch, 16).into_iter().any(|u| u.names.contains(&HOPPER_DENSE_KERNEL));
        assert_eq!(unit, expect, "{arch} {dt:?} d {d} causal {causal}: a Hopper compile unit {unit}");
        let opts = compile_options(&c, arch);
        let t = std::time::Instant::now();
        let cubin = compile_cubin(sources()[0].0, sources(), &opts, arch).unwrap_or_else(|e| panic!("{arch}: {e}"));
        eprintln!("{arch} {opts:?}: {} bytes in {:.2} s", cubin.len(), t.elapsed().as_secs_f64());
        let has = String::from_utf8_lossy(&cubin).contains(HOPPER_DENSE_KERNEL);
        assert_eq!(has, expect, "{arch} {dt:?} d {d} causal {causal}: kernel present {has}, expected {expect}");
    }
}
