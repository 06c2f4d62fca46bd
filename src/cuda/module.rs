//! A loaded cubin and its kernels.
//!
//! Since CUDA 12.2 modules load lazily: a kernel is really loaded at cuModuleGetFunction. All functions are
//! therefore looked up at creation, so that nothing loads (and allocates) later, e.g. during a graph capture.

use std::ffi::{c_void, CString};

use cudarc::driver::result;
use cudarc::driver::sys::{self, CUfunction, CUfunction_attribute, CUmodule};

use super::cache::{load_or_compile_many, CacheConfig, CacheKey, CacheOutcome, LogLevel};
use super::compile::{compile_many, nvrtc_version};
use super::device::{CtxHandle, CudaDevice};
use super::error::{drv, CudaError};

/// A module loaded into a device's primary context, with every requested function resolved.
pub struct KernelModule {
    module: CUmodule,
    functions: Vec<(String, CUfunction)>,
    max_smem_optin: i32,
    ctx: CtxHandle,
}

// SAFETY: CUmodule and CUfunction are driver handles usable from any thread (the driver is thread-safe); the
// owning context is kept alive by `ctx`. No interior mutability on the Rust side.
unsafe impl Send for KernelModule {}
// SAFETY: as above; &self methods only read the handles or call thread-safe driver functions.
unsafe impl Sync for KernelModule {}

impl KernelModule {
    /// Loads `cubin` into `dev`'s context and resolves every name in `names` (extern "C" kernel names).
    /// The image is checked to be a complete ELF64 file first: the driver trusts the sizes inside it.
    pub fn load(dev: &CudaDevice, cubin: &[u8], names: &[&str]) -> Result<KernelModule, CudaError> {
        check_elf(cubin)?;
        let cnames = names
            .iter()
            .map(|n| CString::new(*n).map_err(|_| CudaError::InvalidArgument { what: format!("kernel name {n:?}") }))
            .collect::<Result<Vec<_>, _>>()?;
        let _g = dev.bind()?;
        // SAFETY: the context is current; `cubin` is a complete ELF image (checked above) that stays alive for
        // the call (the driver copies what it needs).
        let module = unsafe { result::module::load_data(cubin.as_ptr() as *const c_void) }
            .map_err(|e| drv("cuModuleLoadData", e))?;
        // From here on, an early return drops `m`, which unloads the module.
        let mut m = KernelModule {
            module,
            functions: Vec::with_capacity(names.len()),
            max_smem_optin: dev.info().max_smem_per_block_optin,
            ctx: dev.handle().clone(),
        };
        for (name, cname) in names.iter().zip(cnames) {
            // SAFETY: `module` is loaded and not unloaded (owned by `m`); the context is current.
            let f =
                unsafe { result::module::get_function(module, cname) }.map_err(|e| drv("cuModuleGetFunction", e))?;
            m.functions.push((name.to_string(), f));
        }
        Ok(m)
    }

    /// Function `i` in the order of `names` at creation; None when out of range.
    #[inline]
    pub fn func(&self, i: usize) -> Option<CUfunction> {
        self.functions.get(i).map(|(_, f)| *f)
    }

    /// Function by name (linear search; resolve once and keep the handle for hot paths).
    pub fn function(&self, name: &str) -> Option<CUfunction> {
        self.functions.iter().find(|(n, _)| n == name).map(|(_, f)| *f)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.functions.iter().map(|(n, _)| n.as_str())
    }

    /// Allows function `i` (index in `names` at creation) to use up to `bytes` of dynamic shared memory per
    /// block. Needed above 48 KiB; call once at creation, not per launch. Errors if `bytes` exceeds the device's
    /// opt-in maximum or `i` is out of range.
    pub fn set_max_dynamic_smem(&self, i: usize, bytes: u32) -> Result<(), CudaError> {
        let func = self.func_checked(i)?;
        if bytes > self.max_smem_optin.max(0) as u32 {
            return Err(CudaError::InvalidArgument {
                what: format!("{bytes} bytes of shared memory requested, device allows {}", self.max_smem_optin),
            });
        }
        let _g = self.ctx.bind()?;
        // SAFETY: `func` was resolved from this module, which is loaded while `self` lives; context is current.
        unsafe {
            result::function::set_function_attribute(
                func,
                CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                bytes as i32,
            )
        }
        .map_err(|e| drv("cuFuncSetAttribute", e))
    }

    /// Reads an attribute of function `i` (registers, local memory, max threads per block, ...).
    pub fn attribute(&self, i: usize, attr: CUfunction_attribute) -> Result<i32, CudaError> {
        let func = self.func_checked(i)?;
        let _g = self.ctx.bind()?;
        // SAFETY: `func` was resolved from this module, which is loaded while `self` lives; context is current.
        unsafe { result::function::get_function_attribute(func, attr) }.map_err(|e| drv("cuFuncGetAttribute", e))
    }

    fn func_checked(&self, i: usize) -> Result<CUfunction, CudaError> {
        self.func(i).ok_or_else(|| CudaError::InvalidArgument {
            what: format!("function index {i} out of range ({} functions)", self.functions.len()),
        })
    }

    /// Index of `name` in the creation order.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.functions.iter().position(|(n, _)| n == name)
    }

    /// The raw module handle (owned: never unload it).
    pub fn raw(&self) -> CUmodule {
        self.module
    }
}

impl Drop for KernelModule {
    fn drop(&mut self) {
        // Bind (restoring the caller's context afterwards); the module's context is alive thanks to self.ctx,
        // which is dropped only after this function returns.
        let g = self.ctx.bind();
        // SAFETY: `module` was loaded by cuModuleLoadData and is unloaded exactly once, here. If binding failed
        // the call fails harmlessly (the driver validates the handle against the current context).
        let _ = unsafe { sys::cuModuleUnload(self.module) };
        drop(g);
    }
}

/// One NVRTC program of a module split to compile faster: its options (the shared ones plus whatever selects its
/// kernels), the extern "C" kernels loaded from it, and the kernels compiled into it but loaded from another
/// unit (partners: compiled beside the others only because that keeps their code as it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub options: Vec<String>,
    pub names: Vec<&'static str>,
    pub partners: Vec<&'static str>,
}

/// Kernels compiled as several programs (see [`Unit`]) and loaded as one module each, addressed by one index: the
/// position of the kernel's name in the `names` given to [`KernelSet::build`].
pub struct KernelSet {
    modules: Vec<KernelModule>,
    /// For each kernel: (module, function index in that module).
    place: Vec<(usize, usize)>,
}

impl KernelSet {
    /// Compiles the units that are not in the kernel cache, all at once (compile::compile_many, slowest first as
    /// given), stores them, and loads every unit as its own module. Each unit is its own cache entry, keyed by
    /// its own options. Every name in `names` must be in exactly one unit, and every unit kernel in `names`.
    pub fn build(
        dev: &CudaDevice,
        cache: &CacheConfig,
        main_name: &str,
        sources: &[(&str, &str)],
        units: &[Unit],
        names: &[&str],
        log: &dyn Fn(LogLevel, &str),
    ) -> Result<(KernelSet, Vec<CacheOutcome>), CudaError> {
        let place = place_kernels(units, names)?;
        let arch = dev.info().arch.clone();
        let version = nvrtc_version()?;
        let keys: Vec<CacheKey> =
            units.iter().map(|u| CacheKey::new(main_name, sources, &u.options, version, &arch)).collect();
        let compile = |missing: &[usize]| {
            let option_sets: Vec<Vec<String>> = missing.iter().map(|&i| units[i].options.clone()).collect();
            let mut cubins = Vec::with_capacity(missing.len());
            for (&i, out) in missing.iter().zip(compile_many(main_name, sources, &option_sets, &arch)) {
                let out = out.map_err(|e| match e {
                    CudaError::Compile { arch, log } => {
                        let names = units[i].names.join(", ");
                        CudaError::Compile { arch, log: format!("(the program of {names})\n{log}") }
                    }
                    other => other,
                })?;
                if !out.log.trim().is_empty() {
                    log(LogLevel::Warn, &format!("NVRTC ({arch}, {}) said:\n{}", units[i].names.join(", "), out.log));
                }
                cubins.push(out.cubin);
            }
            Ok(cubins)
        };
        let built = load_or_compile_many(cache, &keys, compile, log)?;
        let mut modules = Vec::with_capacity(units.len());
        let mut outcomes = Vec::with_capacity(units.len());
        for (unit, (cubin, outcome)) in units.iter().zip(built) {
            modules.push(KernelModule::load(dev, &cubin, &unit.names)?);
            outcomes.push(outcome);
        }
        Ok((KernelSet { modules, place }, outcomes))
    }

    /// Function `i` (index in `names` at creation); None when out of range.
    #[inline]
    pub fn func(&self, i: usize) -> Option<CUfunction> {
        let &(m, f) = self.place.get(i)?;
        self.modules.get(m)?.func(f)
    }

    /// [`KernelModule::set_max_dynamic_smem`] for kernel `i`.
    pub fn set_max_dynamic_smem(&self, i: usize, bytes: u32) -> Result<(), CudaError> {
        let (m, f) = self.locate(i)?;
        m.set_max_dynamic_smem(f, bytes)
    }

    /// [`KernelModule::attribute`] for kernel `i`.
    pub fn attribute(&self, i: usize, attr: CUfunction_attribute) -> Result<i32, CudaError> {
        let (m, f) = self.locate(i)?;
        m.attribute(f, attr)
    }

    fn locate(&self, i: usize) -> Result<(&KernelModule, usize), CudaError> {
        let bad = || CudaError::InvalidArgument {
            what: format!("kernel index {i} out of range ({} kernels)", self.place.len()),
        };
        let &(m, f) = self.place.get(i).ok_or_else(bad)?;
        Ok((self.modules.get(m).ok_or_else(bad)?, f))
    }
}

/// For each of `names`: (unit, position in that unit). Errors unless every name is in exactly one unit and no
/// unit holds a kernel that is not in `names` (it would be compiled for nothing).
pub fn place_kernels(units: &[Unit], names: &[&str]) -> Result<Vec<(usize, usize)>, CudaError> {
    let bad = |what: String| Err(CudaError::InvalidArgument { what });
    let mut place = Vec::with_capacity(names.len());
    for name in names {
        let mut found = units
            .iter()
            .enumerate()
            .flat_map(|(u, unit)| unit.names.iter().enumerate().filter(|(_, n)| *n == name).map(move |(f, _)| (u, f)));
        match (found.next(), found.next()) {
            (Some(p), None) => place.push(p),
            (None, _) => return bad(format!("kernel {name} is in no compile unit")),
            (Some(_), Some(_)) => return bad(format!("kernel {name} is in more than one compile unit")),
        }
    }
    if let Some(extra) = units.iter().flat_map(|u| u.names.iter()).find(|n| !names.contains(n)) {
        return bad(format!("compile unit kernel {extra} is not among the kernels to load"));
    }
    Ok(place)
}

/// Rejects anything that is not a complete little-endian ELF64 image (truncated cache files, PTX text, junk),
/// so that cuModuleLoadData never reads past the end of the buffer.
pub fn check_elf(b: &[u8]) -> Result<(), CudaError> {
    let bad = |why: &str| Err(CudaError::InvalidArgument { what: format!("cubin rejected: {why}") });
    if b.len() < 64 || &b[..4] != b"\x7fELF" {
        return bad("not an ELF image");
    }
    if b[4] != 2 || b[5] != 1 {
        return bad("not little-endian ELF64");
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as u64;
    let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let u64_at = |o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(a)
    };
    let len = b.len() as u64;
    let (phoff, shoff) = (u64_at(0x20), u64_at(0x28));
    let (phentsize, phnum, shentsize, shnum) = (u16_at(0x36), u16_at(0x38), u16_at(0x3A), u16_at(0x3C));
    let table_fits = |off: u64, ent: u64, n: u64| off.checked_add(ent * n).is_some_and(|end| end <= len);
    if !table_fits(phoff, phentsize, phnum) {
        return bad("program header table past end of image");
    }
    if !table_fits(shoff, shentsize, shnum) || (shnum > 0 && shentsize < 64) {
        return bad("section header table past end of image");
    }
    for i in 0..shnum {
        let sh = (shoff + i * shentsize) as usize;
        let sh_type = u32_at(sh + 4);
        let (off, size) = (u64_at(sh + 0x18), u64_at(sh + 0x20));
        const SHT_NOBITS: u32 = 8;
        if sh_type != SHT_NOBITS && off.checked_add(size).is_none_or(|end| end > len) {
            return bad("section past end of image (truncated?)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn place_kernels_maps_every_name_once() {
        let u = |names: &[&'static str]| Unit { options: vec![], names: names.to_vec(), partners: vec!["a"] };
        let units = [u(&["a", "c"]), u(&["b"]), u(&["d"])];
        assert_eq!(place_kernels(&units, &["a", "b", "c", "d"]).unwrap(), [(0, 0), (1, 0), (0, 1), (2, 0)]);
        let err = |units: &[Unit], names: &[&str]| match place_kernels(units, names) {
            Err(CudaError::InvalidArgument { what }) => what,
            other => panic!("{other:?}"),
        };
        assert!(err(&units, &["a", "b", "c", "d", "e"]).contains("kernel e is in no compile unit"));
        assert!(err(&[u(&["a"]), u(&["a"])], &["a"]).contains("kernel a is in more than one"));
        assert!(err(&units, &["a", "b", "c"]).contains("compile unit kernel d is not among"));
    }

    #[test]
    fn elf_check_rejects_junk_and_truncation() {
        assert!(check_elf(b"").is_err());
        assert!(check_elf(&[0u8; 100]).is_err());
        assert!(check_elf(b"//\n// Generated by NVIDIA NVVM Compiler\n.version 8.0\n.target sm_80\n....").is_err());
        if !crate::cuda::compile::tests::nvrtc_available() {
            return;
        }
        let src = "extern \"C\" __global__ void k(float* p) { p[threadIdx.x] = 1.0f; }";
        let cubin = crate::cuda::compile::compile_cubin("k.cu", &[("k.cu", src)], &[], "sm_80").unwrap();
        check_elf(&cubin).unwrap();
        for cut in [cubin.len() - 1, cubin.len() / 2, 65] {
            assert!(check_elf(&cubin[..cut]).is_err(), "truncated to {cut} accepted");
        }
    }
}
