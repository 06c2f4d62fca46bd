//! Run-time compilation with NVRTC, straight to a CUBIN for one exact architecture.
//!
//! Needs only libnvrtc (no driver, no GPU): the compile-only CI test uses this module alone. NVRTC 13 has no
//! built-in CUDA toolkit headers (cuda_fp16.h ...), so kernel sources must be self-contained; the other
//! sources passed here are offered to `#include "name"` as in-memory headers.

use std::ffi::{c_char, c_int, CString};

use cudarc::nvrtc::sys;

use super::error::{nvrtc_err, CudaError};
use super::loader::ensure_nvrtc;

/// Result of a successful compilation.
#[derive(Debug, Clone)]
pub struct CompileOutput {
    /// The CUBIN (an ELF image) for the requested architecture.
    pub cubin: Vec<u8>,
    /// NVRTC's program log: usually empty, warnings otherwise.
    pub log: String,
}

/// Version of the loaded NVRTC, e.g. (13, 0).
pub fn nvrtc_version() -> Result<(i32, i32), CudaError> {
    ensure_nvrtc()?;
    let (mut major, mut minor) = (0i32, 0i32);
    // SAFETY: NVRTC is loaded (ensure_nvrtc); both pointers are valid writable c_ints.
    unsafe { sys::nvrtcVersion(&mut major, &mut minor) }.result().map_err(|e| nvrtc_err("nvrtcVersion", e))?;
    Ok((major, minor))
}

/// The real architectures the loaded NVRTC can compile for, as numbers (80, 86, 89, 90, 100, 120, ...).
pub fn nvrtc_supported_archs() -> Result<Vec<i32>, CudaError> {
    ensure_nvrtc()?;
    let mut n: c_int = 0;
    // SAFETY: NVRTC is loaded; `n` is a valid writable c_int.
    unsafe { sys::nvrtcGetNumSupportedArchs(&mut n) }
        .result()
        .map_err(|e| nvrtc_err("nvrtcGetNumSupportedArchs", e))?;
    let mut archs = vec![0 as c_int; n.max(0) as usize];
    if !archs.is_empty() {
        // SAFETY: `archs` holds exactly the number of c_ints NVRTC said it will write.
        unsafe { sys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) }
            .result()
            .map_err(|e| nvrtc_err("nvrtcGetSupportedArchs", e))?;
    }
    Ok(archs)
}

fn cstring(what: &str, s: &str) -> Result<CString, CudaError> {
    CString::new(s).map_err(|_| CudaError::InvalidArgument { what: format!("{what} contains a NUL byte") })
}

/// Destroys the NVRTC program on every exit path.
struct Program(sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: self.0 was returned by a successful nvrtcCreateProgram and is destroyed exactly once, here.
        // nvrtcDestroyProgram takes a pointer to the handle and nulls it.
        let _ = unsafe { sys::nvrtcDestroyProgram(&mut self.0) };
    }
}

impl Program {
    fn log(&self) -> String {
        let mut size: usize = 0;
        // SAFETY: self.0 is a live program; `size` is a valid writable usize.
        if unsafe { sys::nvrtcGetProgramLogSize(self.0, &mut size) }.result().is_err() || size == 0 {
            return String::new();
        }
        let mut buf = vec![0u8; size];
        // SAFETY: `buf` has the `size` bytes NVRTC asked for (its size includes the terminating NUL).
        if unsafe { sys::nvrtcGetProgramLog(self.0, buf.as_mut_ptr() as *mut c_char) }.result().is_err() {
            return String::new();
        }
        while buf.last() == Some(&0) {
            buf.pop();
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// Compiles `sources[main]` (the entry whose name is `main_name`) to a CUBIN for `arch` ("sm_90a", "sm_80",
/// ...). Every other entry of `sources` is an in-memory header available to `#include "<name>"`. `options` are
/// NVRTC options (-D..., -std=c++17, --use_fast_math, ...); `--gpu-architecture=<arch>` is added here and must
/// not be in `options`. On a compile error the program log comes back in [`CudaError::Compile`].
///
/// Kernels that the host looks up by name must be `extern "C"` (no name mangling).
pub fn compile_cubin_with_log(
    main_name: &str,
    sources: &[(&str, &str)],
    options: &[String],
    arch: &str,
) -> Result<CompileOutput, CudaError> {
    ensure_nvrtc()?;
    if !arch.starts_with("sm_") {
        return Err(CudaError::InvalidArgument {
            what: format!("architecture {arch:?} is not a real sm_XY target (a cubin needs one)"),
        });
    }
    let main = sources.iter().find(|(n, _)| *n == main_name).ok_or_else(|| CudaError::InvalidArgument {
        what: format!("main source {main_name:?} is not among the sources"),
    })?;
    let main_src = cstring("main source text", main.1)?;
    let main_cname = cstring("main source name", main.0)?;

    let mut header_names = Vec::with_capacity(sources.len());
    let mut header_texts = Vec::with_capacity(sources.len());
    for (name, text) in sources.iter().filter(|(n, _)| *n != main_name) {
        header_names.push(cstring("header name", name)?);
        header_texts.push(cstring("header text", text)?);
    }
    let name_ptrs: Vec<*const c_char> = header_names.iter().map(|c| c.as_ptr()).collect();
    let text_ptrs: Vec<*const c_char> = header_texts.iter().map(|c| c.as_ptr()).collect();

    let mut opts = Vec::with_capacity(options.len() + 1);
    opts.push(cstring("architecture", &format!("--gpu-architecture={arch}"))?);
    for o in options {
        opts.push(cstring("compile option", o)?);
    }
    let opt_ptrs: Vec<*const c_char> = opts.iter().map(|c| c.as_ptr()).collect();

    let mut raw: sys::nvrtcProgram = std::ptr::null_mut();
    // SAFETY: NVRTC is loaded; `raw` is a valid out-pointer. All strings are NUL-terminated CStrings declared
    // before `prog`, so they outlive the program (locals drop in reverse order: `prog` is destroyed first). The
    // two header arrays both have name_ptrs.len() entries (or are null when there are none).
    unsafe {
        sys::nvrtcCreateProgram(
            &mut raw,
            main_src.as_ptr(),
            main_cname.as_ptr(),
            name_ptrs.len() as c_int,
            if text_ptrs.is_empty() { std::ptr::null() } else { text_ptrs.as_ptr() },
            if name_ptrs.is_empty() { std::ptr::null() } else { name_ptrs.as_ptr() },
        )
    }
    .result()
    .map_err(|e| nvrtc_err("nvrtcCreateProgram", e))?;
    let prog = Program(raw);

    // SAFETY: prog.0 is a live program; opt_ptrs holds opt_ptrs.len() valid C strings that outlive the call.
    let compiled = unsafe { sys::nvrtcCompileProgram(prog.0, opt_ptrs.len() as c_int, opt_ptrs.as_ptr()) };
    let log = prog.log();
    if let Err(e) = compiled.result() {
        // Not a fault of the source: the host ran out of memory (more likely with several programs at once).
        if e.0 == sys::nvrtcResult::NVRTC_ERROR_OUT_OF_MEMORY {
            return Err(nvrtc_err("nvrtcCompileProgram", e));
        }
        let log = if log.is_empty() { format!("{:?}", e.0) } else { format!("{:?}\n{log}", e.0) };
        return Err(CudaError::Compile { arch: arch.to_string(), log });
    }

    let mut size: usize = 0;
    // SAFETY: prog.0 is a live, successfully compiled program; `size` is a valid writable usize.
    unsafe { sys::nvrtcGetCUBINSize(prog.0, &mut size) }.result().map_err(|e| nvrtc_err("nvrtcGetCUBINSize", e))?;
    if size == 0 {
        return Err(CudaError::Compile { arch: arch.to_string(), log: format!("NVRTC produced no CUBIN\n{log}") });
    }
    let mut cubin = vec![0u8; size];
    // SAFETY: `cubin` has exactly the `size` bytes NVRTC reported for the CUBIN.
    unsafe { sys::nvrtcGetCUBIN(prog.0, cubin.as_mut_ptr() as *mut c_char) }
        .result()
        .map_err(|e| nvrtc_err("nvrtcGetCUBIN", e))?;
    Ok(CompileOutput { cubin, log })
}

/// [`compile_cubin_with_log`] without the (warnings) log.
pub fn compile_cubin(
    main_name: &str,
    sources: &[(&str, &str)],
    options: &[String],
    arch: &str,
) -> Result<Vec<u8>, CudaError> {
    compile_cubin_with_log(main_name, sources, options, arch).map(|o| o.cubin)
}

/// Threads that compile programs at once (the calling thread included): the host's available parallelism.
pub fn compile_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |p| p.get())
}

/// Compiles one program per entry of `option_sets` (the same sources, each with its own options) at once, on up to
/// `available_parallelism` threads, the calling thread among them; results come back in the order of
/// `option_sets`. NVRTC compiles distinct programs from several threads concurrently (each program stays on the
/// thread that created it), and most of a compile is per program work of one thread, so a module split into
/// programs compiles in about the time of its slowest program where there are enough cores. Where a thread
/// cannot be spawned, the threads that exist (at least the caller) take over its share. Entries should come
/// slowest first: each thread takes the next entry when it is done with one.
pub fn compile_many(
    main_name: &str,
    sources: &[(&str, &str)],
    option_sets: &[Vec<String>],
    arch: &str,
) -> Vec<Result<CompileOutput, CudaError>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let n = option_sets.len();
    let results: Vec<Mutex<Option<Result<CompileOutput, CudaError>>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(options) = option_sets.get(i) else { break };
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            compile_cubin_with_log(main_name, sources, options, arch)
        }))
        .unwrap_or_else(|_| Err(CudaError::Panic { what: format!("the NVRTC compile of program {i}") }));
        *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(out);
    };
    let helpers = compile_threads().min(n).saturating_sub(1);
    std::thread::scope(|s| {
        for _ in 0..helpers {
            // A failed spawn only means fewer threads: the others, the caller included, take the work.
            if std::thread::Builder::new().name("hip-attn-nvrtc".into()).spawn_scoped(s, work).is_err() {
                break;
            }
        }
        work();
    });
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.into_inner().unwrap_or_else(|e| e.into_inner()).unwrap_or_else(|| {
                Err(CudaError::Panic { what: format!("a kernel compile thread (program {i} was never compiled)") })
            })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// True when libnvrtc can be loaded; otherwise prints the skip line. Tests that compile call this first.
    pub(crate) fn nvrtc_available() -> bool {
        match ensure_nvrtc() {
            Ok(()) => true,
            Err(_) => {
                eprintln!("skipped: libnvrtc not found");
                false
            }
        }
    }

    const HEADER: &str = "#pragma once\nstruct tiny_params { unsigned long long out; int n; float scale; };\n";
    const MAIN: &str = r#"
#include "tiny.h"
extern "C" __global__ void tiny_scale(tiny_params p) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float* out = reinterpret_cast<float*>(p.out);
    if (i < p.n) out[i] = out[i] * p.scale;
}
extern "C" __global__ void tiny_flag(unsigned long long flag) {
    if (threadIdx.x == 0) atomicOr(reinterpret_cast<unsigned int*>(flag), 2u);
}
"#;

    fn is_elf(b: &[u8]) -> bool {
        b.len() > 64 && &b[..4] == b"\x7fELF"
    }

    #[test]
    fn compiles_tiny_kernel_for_sm80_and_sm90a() {
        if !nvrtc_available() {
            return;
        }
        let (maj, min) = nvrtc_version().unwrap();
        eprintln!("NVRTC {maj}.{min}, archs {:?}", nvrtc_supported_archs().unwrap());
        let sources = [("tiny.cu", MAIN), ("tiny.h", HEADER)];
        let opts = vec!["-std=c++17".to_string(), "-DTINY=1".to_string()];
        for arch in ["sm_80", "sm_90a"] {
            let out = compile_cubin_with_log("tiny.cu", &sources, &opts, arch).unwrap();
            assert!(is_elf(&out.cubin), "{arch}: not an ELF cubin");
            // The kernel names appear in the ELF symbol table unmangled.
            let hay = String::from_utf8_lossy(&out.cubin);
            assert!(hay.contains("tiny_scale") && hay.contains("tiny_flag"));
        }
    }

    #[test]
    fn compile_many_returns_each_program_in_order() {
        if !nvrtc_available() {
            return;
        }
        let src = "extern \"C\" __global__ void k_V(float* p) { p[threadIdx.x] = V; }\n\
                   #if V == 3\n#error three is refused\n#endif\n";
        let sets: Vec<Vec<String>> =
            (1..=4).map(|v| vec![format!("-DV={v}"), format!("-Dk_V=k_{v}")]).collect();
        let out = compile_many("k.cu", &[("k.cu", src)], &sets, "sm_80");
        assert_eq!(out.len(), 4);
        for (i, r) in out.iter().enumerate() {
            let v = i + 1;
            match r {
                Ok(o) => {
                    assert_ne!(v, 3);
                    assert!(String::from_utf8_lossy(&o.cubin).contains(&format!("k_{v}")), "program {i}");
                }
                Err(CudaError::Compile { log, .. }) => assert!(v == 3 && log.contains("three is refused"), "{log}"),
                Err(e) => panic!("program {i}: {e:?}"),
            }
        }
        assert!(compile_many("k.cu", &[("k.cu", src)], &[], "sm_80").is_empty());
    }

    #[test]
    fn compile_error_returns_log() {
        if !nvrtc_available() {
            return;
        }
        let src = "extern \"C\" __global__ void broken(int* p) { p[0] = undefined_symbol_xyz; }";
        match compile_cubin("broken.cu", &[("broken.cu", src)], &[], "sm_80") {
            Err(CudaError::Compile { arch, log }) => {
                assert_eq!(arch, "sm_80");
                assert!(log.contains("undefined_symbol_xyz"), "log: {log}");
            }
            other => panic!("expected Compile error, got {other:?}"),
        }
    }

    #[test]
    fn missing_header_and_bad_option_are_errors_not_panics() {
        if !nvrtc_available() {
            return;
        }
        let src = "#include \"nothere.h\"\nextern \"C\" __global__ void k() {}";
        assert!(matches!(compile_cubin("k.cu", &[("k.cu", src)], &[], "sm_80"), Err(CudaError::Compile { .. })));
        let ok = "extern \"C\" __global__ void k() {}";
        let r = compile_cubin("k.cu", &[("k.cu", ok)], &["--no-such-option".into()], "sm_80");
        assert!(matches!(r, Err(CudaError::Compile { .. })), "{r:?}");
        let r = compile_cubin("k.cu", &[("k.cu", ok)], &[], "compute_80");
        assert!(matches!(r, Err(CudaError::InvalidArgument { .. })));
        let r = compile_cubin("x.cu", &[("k.cu", ok)], &[], "sm_80");
        assert!(matches!(r, Err(CudaError::InvalidArgument { .. })));
        let r = compile_cubin("k.cu", &[("k.cu", "a\0b")], &[], "sm_80");
        assert!(matches!(r, Err(CudaError::InvalidArgument { .. })));
    }
}
