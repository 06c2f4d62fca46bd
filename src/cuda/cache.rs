//! On-disk CUBIN cache.
//!
//! Key: SHA-256 (implemented below, FIPS 180-4) over a length-prefixed encoding of the format version, the
//! architecture, the NVRTC version, the main source name and every (name, text) source, and every option. Stable
//! across Rust versions and platforms (std's DefaultHasher is not).
//!
//! Directory: [`CacheConfig::dir`] if set, else `$XDG_CACHE_HOME/hip-attn` (only when XDG_CACHE_HOME is an
//! absolute path, as the XDG spec asks), else `$HOME/.cache/hip-attn`; no directory at all disables the cache.
//!
//! File `<dir>/<64 hex key>.cubin`: header of [`HEADER_LEN`] bytes, then the payload:
//!   0  magic b"HIPCUBIN"            8 bytes
//!   8  format version, u32 LE       4
//!   12 reserved, 0                  4
//!   16 payload length, u64 LE       8
//!   24 SHA-256 of the payload       32
//!   56 the cache key (SHA-256)      32  (guards against a file copied or renamed under another key)
//!   88 payload
//! Written to a unique temp file in the same directory, flushed, then renamed over the final name (atomic on
//! POSIX): readers see the old file, the new one, or none, never a torn one; concurrent writers are harmless.
//! A file that fails any check is ignored, recompiled and replaced. No cache problem (read-only, missing,
//! unwritable or full directory, no HOME) ever fails the call: the kernel is compiled and the problem reported
//! through the log callback and [`CacheOutcome::Error`] / [`CacheOutcome::Disabled`].

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::CudaError;

/// Bumped whenever the file layout or the key encoding changes; part of the key and of the file header.
pub const CACHE_FORMAT_VERSION: u32 = 1;
/// File magic.
pub const CACHE_MAGIC: &[u8; 8] = b"HIPCUBIN";
/// Bytes before the payload.
pub const HEADER_LEN: usize = 88;
/// Entries larger than this are treated as corrupt (a cubin of this project is well under a few MiB).
pub const MAX_PAYLOAD: u64 = 256 << 20;
/// Subdirectory name under XDG_CACHE_HOME or ~/.cache.
pub const CACHE_SUBDIR: &str = "hip-attn";

/// Log severity, numbered as the C API exposes it.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

/// Cache settings, from the context configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// false: always compile, never touch the disk.
    pub enabled: bool,
    /// Explicit directory; None: XDG_CACHE_HOME / HOME rules.
    pub dir: Option<PathBuf>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { enabled: true, dir: None }
    }
}

/// What happened in [`load_or_compile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Valid entry found; nothing compiled.
    Hit,
    /// Compiled and stored (a missing or corrupt entry).
    Miss,
    /// Cache off or no directory could be determined; compiled, nothing stored.
    Disabled,
    /// Compiled, but the cache directory could not be created or written (details went to the log).
    Error,
}

impl CacheConfig {
    /// The directory this configuration uses, from the process environment.
    pub fn resolve_dir(&self) -> Option<PathBuf> {
        self.resolve_dir_with(&|k| std::env::var_os(k))
    }

    /// [`CacheConfig::resolve_dir`] with an injected environment lookup (tests must not mutate the process
    /// environment, which is shared by concurrently running tests).
    pub fn resolve_dir_with(&self, env: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
        if !self.enabled {
            return None;
        }
        if let Some(d) = &self.dir {
            return if d.as_os_str().is_empty() { None } else { Some(d.clone()) };
        }
        if let Some(x) = env("XDG_CACHE_HOME") {
            let p = PathBuf::from(x);
            if p.is_absolute() {
                return Some(p.join(CACHE_SUBDIR));
            }
        }
        let home = PathBuf::from(env("HOME")?);
        if home.as_os_str().is_empty() {
            return None;
        }
        Some(home.join(".cache").join(CACHE_SUBDIR))
    }
}

/// The cache key: SHA-256 of everything that determines the cubin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    /// Key for compiling `main_name` among `sources` with `options` for `arch` with NVRTC `nvrtc_version`.
    /// Source order and option order matter (as they do to the compiler).
    pub fn new(
        main_name: &str,
        sources: &[(&str, &str)],
        options: &[String],
        nvrtc_version: (i32, i32),
        arch: &str,
    ) -> CacheKey {
        let mut h = Sha256::new();
        h.update(b"hip-attn cubin cache key\0");
        h.update(&CACHE_FORMAT_VERSION.to_le_bytes());
        field(&mut h, arch.as_bytes());
        h.update(&nvrtc_version.0.to_le_bytes());
        h.update(&nvrtc_version.1.to_le_bytes());
        field(&mut h, main_name.as_bytes());
        h.update(&(sources.len() as u64).to_le_bytes());
        for (name, text) in sources {
            field(&mut h, name.as_bytes());
            field(&mut h, text.as_bytes());
        }
        h.update(&(options.len() as u64).to_le_bytes());
        for o in options {
            field(&mut h, o.as_bytes());
        }
        CacheKey(h.finalize())
    }

    /// Lower-case hex, 64 characters: the file stem.
    pub fn hex(&self) -> String {
        hex(&self.0)
    }
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(D[(x >> 4) as usize] as char);
        s.push(D[(x & 15) as usize] as char);
    }
    s
}

/// Path of the entry for `key` in `dir`.
pub fn entry_path(dir: &Path, key: &CacheKey) -> PathBuf {
    dir.join(format!("{}.cubin", key.hex()))
}

/// Returns the cubin for `key`: from the cache when a valid entry exists, else from `compile()` (then stored).
/// Only `compile`'s own error is returned; every cache problem is logged and reported in the outcome.
pub fn load_or_compile(
    cache: &CacheConfig,
    key: &CacheKey,
    compile: impl FnOnce() -> Result<Vec<u8>, CudaError>,
    log: &dyn Fn(LogLevel, &str),
) -> Result<(Vec<u8>, CacheOutcome), CudaError> {
    let mut one = load_or_compile_many(cache, std::slice::from_ref(key), |_| Ok(vec![compile()?]), log)?;
    Ok(one.swap_remove(0))
}

/// [`load_or_compile`] for several cubins, each under its own key and in its own file: the valid entries are
/// read, and `compile` gets the indices (into `keys`) of all the others at once, so that it can compile them
/// concurrently; it returns their cubins in that order. Each entry stands alone (its key covers everything that
/// determines its cubin), so a directory holding only some of them, or a damaged one among good ones, costs
/// only the missing or damaged compiles. On a compile error nothing is stored.
pub fn load_or_compile_many(
    cache: &CacheConfig,
    keys: &[CacheKey],
    compile: impl FnOnce(&[usize]) -> Result<Vec<Vec<u8>>, CudaError>,
    log: &dyn Fn(LogLevel, &str),
) -> Result<Vec<(Vec<u8>, CacheOutcome)>, CudaError> {
    let dir = if cache.enabled { cache.resolve_dir() } else { None };
    if dir.is_none() {
        if cache.enabled {
            log(
                LogLevel::Info,
                "kernel cache disabled: no cache directory (none configured, HOME and XDG_CACHE_HOME unset); \
                 compiling",
            );
        } else {
            log(LogLevel::Debug, "kernel cache disabled by configuration; compiling");
        }
    }
    let mut found: Vec<Option<Vec<u8>>> = keys.iter().map(|k| dir.as_ref().and_then(|d| lookup(d, k, log))).collect();
    let missing: Vec<usize> = (0..keys.len()).filter(|&i| found[i].is_none()).collect();
    let mut outcomes = vec![CacheOutcome::Hit; keys.len()];
    if !missing.is_empty() {
        let compiled = compile(&missing)?;
        if compiled.len() != missing.len() {
            return Err(CudaError::InvalidArgument {
                what: format!("{} cubins compiled for {} missing cache entries", compiled.len(), missing.len()),
            });
        }
        for (&i, cubin) in missing.iter().zip(compiled) {
            outcomes[i] = match &dir {
                Some(d) => store(d, &keys[i], &cubin, log),
                None => CacheOutcome::Disabled,
            };
            found[i] = Some(cubin);
        }
    }
    Ok(found.into_iter().zip(outcomes).map(|(c, o)| (c.unwrap_or_default(), o)).collect())
}

/// The valid entry for `key` in `dir`, if any; a damaged one is reported and treated as missing.
fn lookup(dir: &Path, key: &CacheKey, log: &dyn Fn(LogLevel, &str)) -> Option<Vec<u8>> {
    let path = entry_path(dir, key);
    match read_entry(&path, key) {
        Ok(Some(payload)) => {
            log(LogLevel::Debug, &format!("kernel cache hit: {}", path.display()));
            return Some(payload);
        }
        Ok(None) => log(LogLevel::Debug, &format!("kernel cache miss: {}", path.display())),
        Err(why) => log(
            LogLevel::Warn,
            &format!("kernel cache entry {} ignored ({why}); recompiling and replacing it", path.display()),
        ),
    }
    None
}

/// Stores `cubin` under `key` in `dir`: Miss when written, Error (reported) when the directory refused it.
fn store(dir: &Path, key: &CacheKey, cubin: &[u8], log: &dyn Fn(LogLevel, &str)) -> CacheOutcome {
    let path = entry_path(dir, key);
    match write_entry(dir, &path, key, cubin) {
        Ok(()) => {
            log(LogLevel::Debug, &format!("kernel cache stored: {}", path.display()));
            CacheOutcome::Miss
        }
        Err(why) => {
            let dir = dir.display();
            log(LogLevel::Warn, &format!("kernel cache not written to {dir} ({why}); continuing without it"));
            CacheOutcome::Error
        }
    }
}

/// Ok(None): no entry. Err: an entry exists but is unusable (reason given).
fn read_entry(path: &Path, key: &CacheKey) -> Result<Option<Vec<u8>>, String> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("stat failed: {e}")),
    };
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_PAYLOAD + HEADER_LEN as u64 {
        return Err(format!("implausible size {}", meta.len()));
    }
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("read failed: {e}")),
    };
    parse_entry(&bytes, key).map(Some)
}

fn parse_entry(bytes: &[u8], key: &CacheKey) -> Result<Vec<u8>, String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!("truncated header ({} bytes)", bytes.len()));
    }
    if &bytes[0..8] != CACHE_MAGIC {
        return Err("bad magic".into());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    if version != CACHE_FORMAT_VERSION {
        return Err(format!("format version {version}, expected {CACHE_FORMAT_VERSION}"));
    }
    let len = u64::from_le_bytes(bytes[16..24].try_into().unwrap_or_default());
    let payload = &bytes[HEADER_LEN..];
    if len != payload.len() as u64 {
        return Err(format!("payload length {} but header says {len} (truncated?)", payload.len()));
    }
    if bytes[56..88] != key.0 {
        return Err("entry belongs to another key".into());
    }
    if sha256(payload)[..] != bytes[24..56] {
        return Err("payload checksum mismatch".into());
    }
    Ok(payload.to_vec())
}

/// Serialises an entry (header + payload).
pub fn encode_entry(key: &CacheKey, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(CACHE_MAGIC);
    out.extend_from_slice(&CACHE_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&sha256(payload));
    out.extend_from_slice(&key.0);
    out.extend_from_slice(payload);
    out
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn write_entry(dir: &Path, path: &Path, key: &CacheKey, payload: &[u8]) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create directory: {e}"))?;
    let tmp =
        dir.join(format!(".{}.{}.{}.tmp", key.hex(), std::process::id(), TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| format!("cannot create temp file: {e}"))?;
        f.write_all(&encode_entry(key, payload)).map_err(|e| format!("write failed: {e}"))?;
        f.sync_all().map_err(|e| format!("flush failed: {e}"))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| format!("rename failed: {e}"))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

// ---------------------------------------------------------------------------------------------------------------
// SHA-256 (FIPS 180-4).

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
    0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
    0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
    0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
];

/// Streaming SHA-256.
#[derive(Clone)]
pub struct Sha256 {
    state: [u32; 8],
    buf: [u8; 64],
    buf_len: usize,
    total: u64,
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256 {
    pub fn new() -> Self {
        Sha256 {
            state: [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19],
            buf: [0; 64],
            buf_len: 0,
            total: 0,
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.total = self.total.wrapping_add(data.len() as u64);
        if self.buf_len > 0 {
            let take = (64 - self.buf_len).min(data.len());
            self.buf[self.buf_len..self.buf_len + take].copy_from_slice(&data[..take]);
            self.buf_len += take;
            data = &data[take..];
            if self.buf_len < 64 {
                return;
            }
            let block = self.buf;
            self.compress(&block);
            self.buf_len = 0;
        }
        while data.len() >= 64 {
            let (block, rest) = data.split_at(64);
            let mut b = [0u8; 64];
            b.copy_from_slice(block);
            self.compress(&b);
            data = rest;
        }
        self.buf[..data.len()].copy_from_slice(data);
        self.buf_len = data.len();
    }

    pub fn finalize(mut self) -> [u8; 32] {
        let bits = self.total.wrapping_mul(8);
        let mut pad = [0u8; 72];
        pad[0] = 0x80;
        let pad_len = if self.buf_len < 56 { 56 - self.buf_len } else { 120 - self.buf_len };
        let total_before = self.total;
        self.update(&pad[..pad_len]);
        self.update(&bits.to_be_bytes());
        self.total = total_before;
        debug_assert_eq!(self.buf_len, 0);
        let mut out = [0u8; 32];
        for (i, w) in self.state.iter().enumerate() {
            out[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    fn compress(&mut self, block: &[u8; 64]) {
        let mut w = [0u32; 64];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([block[4 * i], block[4 * i + 1], block[4 * i + 2], block[4 * i + 3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = self.state;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = h.wrapping_add(s1).wrapping_add(ch).wrapping_add(K[i]).wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            h = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (s, v) in self.state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
            *s = s.wrapping_add(v);
        }
    }
}

/// One-shot SHA-256.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(data);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::os::unix::fs::PermissionsExt;

    /// A fresh, unique directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static N: AtomicU64 = AtomicU64::new(0);
            let p = std::env::temp_dir().join(format!(
                "hipattn-cache-test-{}-{}-{}",
                tag,
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::set_permissions(&self.0, fs::Permissions::from_mode(0o755));
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn key() -> CacheKey {
        CacheKey::new("a.cu", &[("a.cu", "kernel text"), ("h.h", "header")], &["-DX=1".into()], (13, 0), "sm_90a")
    }

    /// Collects log lines; counts compile calls.
    struct Harness {
        lines: RefCell<Vec<(LogLevel, String)>>,
        compiles: Cell<u32>,
    }
    impl Harness {
        fn new() -> Self {
            Harness { lines: RefCell::new(Vec::new()), compiles: Cell::new(0) }
        }
        fn run(&self, cfg: &CacheConfig, k: &CacheKey, payload: &[u8]) -> (Vec<u8>, CacheOutcome) {
            let log = |l: LogLevel, m: &str| self.lines.borrow_mut().push((l, m.to_string()));
            load_or_compile(
                cfg,
                k,
                || {
                    self.compiles.set(self.compiles.get() + 1);
                    Ok(payload.to_vec())
                },
                &log,
            )
            .unwrap()
        }
        fn warned(&self) -> bool {
            self.lines.borrow().iter().any(|(l, _)| *l == LogLevel::Warn)
        }
    }

    fn cfg(dir: &Path) -> CacheConfig {
        CacheConfig { enabled: true, dir: Some(dir.to_path_buf()) }
    }

    #[test]
    fn sha256_known_vectors() {
        assert_eq!(hex(&sha256(b"")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(hex(&sha256(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(
            hex(&sha256(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        // One million 'a', fed in odd-sized pieces to exercise the buffering.
        let mut h = Sha256::new();
        let chunk = [b'a'; 997];
        let mut left = 1_000_000usize;
        while left > 0 {
            let n = left.min(chunk.len());
            h.update(&chunk[..n]);
            left -= n;
        }
        assert_eq!(hex(&h.finalize()), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    }

    #[test]
    fn key_is_stable_and_sensitive() {
        // Fixed expected value: if this changes, every user's cache is invalidated. Only change it together
        // with CACHE_FORMAT_VERSION.
        assert_eq!(key().hex(), "062c648f8bc5881f1ef653fc886980d779d710e50ae67e3dbc244d7c7a3cd83c");
        let base = key();
        let variants = [
            CacheKey::new("a.cu", &[("a.cu", "kernel text"), ("h.h", "header")], &["-DX=2".into()], (13, 0), "sm_90a"),
            CacheKey::new("a.cu", &[("a.cu", "kernel text"), ("h.h", "header")], &["-DX=1".into()], (13, 1), "sm_90a"),
            CacheKey::new("a.cu", &[("a.cu", "kernel text"), ("h.h", "header")], &["-DX=1".into()], (13, 0), "sm_90"),
            CacheKey::new("a.cu", &[("a.cu", "kernel text"), ("h.h", "headex")], &["-DX=1".into()], (13, 0), "sm_90a"),
            CacheKey::new("a.cu", &[("a.cu", "kernel text"), ("g.h", "header")], &["-DX=1".into()], (13, 0), "sm_90a"),
            CacheKey::new("h.h", &[("a.cu", "kernel text"), ("h.h", "header")], &["-DX=1".into()], (13, 0), "sm_90a"),
            // Moving bytes between adjacent fields must change the key (length prefixes).
            CacheKey::new("a.cu", &[("a.cu", "kernel tex"), ("th.h", "header")], &["-DX=1".into()], (13, 0), "sm_90a"),
            CacheKey::new("a.cu", &[("a.cu", "kernel text"), ("h.h", "header")], &[], (13, 0), "sm_90a"),
        ];
        for v in variants {
            assert_ne!(v, base);
        }
    }

    #[test]
    fn hit_after_miss() {
        let d = TempDir::new("hit");
        let h = Harness::new();
        let (b, o) = h.run(&cfg(&d.0), &key(), b"CUBIN-1");
        assert_eq!((b.as_slice(), o), (&b"CUBIN-1"[..], CacheOutcome::Miss));
        let (b, o) = h.run(&cfg(&d.0), &key(), b"CUBIN-2");
        assert_eq!((b.as_slice(), o), (&b"CUBIN-1"[..], CacheOutcome::Hit));
        assert_eq!(h.compiles.get(), 1);
        assert!(!h.warned());
        // Exactly one entry and no temp file left behind.
        let names: Vec<_> = fs::read_dir(&d.0).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // Another key misses.
        let k2 = CacheKey::new("a.cu", &[("a.cu", "other")], &[], (13, 0), "sm_90a");
        assert_eq!(h.run(&cfg(&d.0), &k2, b"X").1, CacheOutcome::Miss);
    }

    #[test]
    fn creates_missing_directory() {
        let d = TempDir::new("mkdir");
        let sub = d.0.join("a/b/c");
        let h = Harness::new();
        assert_eq!(h.run(&cfg(&sub), &key(), b"P").1, CacheOutcome::Miss);
        assert_eq!(h.run(&cfg(&sub), &key(), b"Q"), (b"P".to_vec(), CacheOutcome::Hit));
    }

    fn corrupt_case(tag: &str, damage: impl Fn(&Path)) {
        let d = TempDir::new(tag);
        let h = Harness::new();
        h.run(&cfg(&d.0), &key(), b"GOOD-CUBIN-PAYLOAD");
        let p = entry_path(&d.0, &key());
        damage(&p);
        let (b, o) = h.run(&cfg(&d.0), &key(), b"FRESH");
        assert_eq!((b.as_slice(), o), (&b"FRESH"[..], CacheOutcome::Miss), "{tag}");
        assert!(h.warned(), "{tag}: corruption must be logged");
        // Replaced: the next call hits the fresh payload.
        assert_eq!(h.run(&cfg(&d.0), &key(), b"X"), (b"FRESH".to_vec(), CacheOutcome::Hit), "{tag}");
        assert_eq!(h.compiles.get(), 2);
    }

    #[test]
    fn corrupt_payload_recompiles_and_replaces() {
        corrupt_case("flip", |p| {
            let mut b = fs::read(p).unwrap();
            let n = b.len();
            b[n - 1] ^= 0x55;
            fs::write(p, b).unwrap();
        });
    }

    #[test]
    fn truncated_file_recompiles() {
        corrupt_case("trunc-payload", |p| {
            let b = fs::read(p).unwrap();
            fs::write(p, &b[..b.len() - 3]).unwrap();
        });
        corrupt_case("trunc-header", |p| {
            let b = fs::read(p).unwrap();
            fs::write(p, &b[..20]).unwrap();
        });
        corrupt_case("empty", |p| fs::write(p, b"").unwrap());
    }

    #[test]
    fn bad_magic_version_or_key_recompiles() {
        corrupt_case("magic", |p| {
            let mut b = fs::read(p).unwrap();
            b[0] = b'X';
            fs::write(p, b).unwrap();
        });
        corrupt_case("version", |p| {
            let mut b = fs::read(p).unwrap();
            b[8] = 99;
            fs::write(p, b).unwrap();
        });
        corrupt_case("otherkey", |p| {
            let other = CacheKey::new("z", &[], &[], (1, 0), "sm_80");
            fs::write(p, encode_entry(&other, b"GOOD-CUBIN-PAYLOAD")).unwrap();
        });
        corrupt_case("checksum", |p| {
            let mut b = fs::read(p).unwrap();
            b[30] ^= 1;
            fs::write(p, b).unwrap();
        });
    }

    #[test]
    fn entry_that_is_a_directory_is_ignored() {
        let d = TempDir::new("isdir");
        fs::create_dir_all(entry_path(&d.0, &key())).unwrap();
        let h = Harness::new();
        let (b, o) = h.run(&cfg(&d.0), &key(), b"P");
        assert_eq!(b, b"P");
        // Cannot rename a file over a directory: compiled, cache error reported.
        assert_eq!(o, CacheOutcome::Error);
        assert!(h.warned());
    }

    #[test]
    fn read_only_directory_never_fails() {
        let d = TempDir::new("ro");
        fs::set_permissions(&d.0, fs::Permissions::from_mode(0o555)).unwrap();
        let h = Harness::new();
        let (b, o) = h.run(&cfg(&d.0), &key(), b"P");
        assert_eq!(b, b"P");
        // As root the mode bits do not stop the write (Miss); as a normal user it is an Error. Never a failure.
        assert!(matches!(o, CacheOutcome::Miss | CacheOutcome::Error), "{o:?}");
        // And no temp files remain either way.
        fs::set_permissions(&d.0, fs::Permissions::from_mode(0o755)).unwrap();
        let temps =
            fs::read_dir(&d.0).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tmp"));
        assert_eq!(temps.count(), 0);
    }

    #[test]
    fn unwritable_directory_never_fails() {
        // A parent that is a regular file: creating the directory fails even for root.
        let d = TempDir::new("file-parent");
        let f = d.0.join("plainfile");
        fs::write(&f, b"x").unwrap();
        let h = Harness::new();
        let (b, o) = h.run(&cfg(&f.join("cache")), &key(), b"P");
        assert_eq!((b.as_slice(), o), (&b"P"[..], CacheOutcome::Error));
        assert!(h.warned());
        // Calling again still compiles and still does not fail.
        assert_eq!(h.run(&cfg(&f.join("cache")), &key(), b"P").1, CacheOutcome::Error);
        assert_eq!(h.compiles.get(), 2);
        // The "directory" is the regular file itself.
        assert_eq!(h.run(&cfg(&f), &key(), b"P").1, CacheOutcome::Error);
    }

    #[test]
    fn compile_error_propagates_and_is_not_cached() {
        let d = TempDir::new("cerr");
        let log = |_: LogLevel, _: &str| {};
        let err = CudaError::Compile { arch: "sm_80".into(), log: "boom".into() };
        let r = load_or_compile(&cfg(&d.0), &key(), || Err(err.clone()), &log);
        assert_eq!(r, Err(err));
        assert!(!entry_path(&d.0, &key()).exists());
    }

    #[test]
    fn disabled_cache_never_touches_disk() {
        let d = TempDir::new("off");
        let h = Harness::new();
        let c = CacheConfig { enabled: false, dir: Some(d.0.clone()) };
        assert_eq!(h.run(&c, &key(), b"P").1, CacheOutcome::Disabled);
        assert_eq!(h.run(&c, &key(), b"P").1, CacheOutcome::Disabled);
        assert_eq!(fs::read_dir(&d.0).unwrap().count(), 0);
        assert_eq!(h.compiles.get(), 2);
    }

    #[test]
    fn directory_resolution() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(*v))
        };
        let c = CacheConfig::default();
        assert_eq!(
            c.resolve_dir_with(&env(&[("XDG_CACHE_HOME", "/x/cache"), ("HOME", "/home/u")])),
            Some(PathBuf::from("/x/cache/hip-attn"))
        );
        assert_eq!(c.resolve_dir_with(&env(&[("HOME", "/home/u")])), Some(PathBuf::from("/home/u/.cache/hip-attn")));
        // Relative XDG_CACHE_HOME is ignored (XDG spec).
        assert_eq!(
            c.resolve_dir_with(&env(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/home/u")])),
            Some(PathBuf::from("/home/u/.cache/hip-attn"))
        );
        // Missing HOME and XDG: no directory.
        assert_eq!(c.resolve_dir_with(&env(&[])), None);
        assert_eq!(c.resolve_dir_with(&env(&[("HOME", "")])), None);
        // Explicit directory wins.
        let c2 = CacheConfig { enabled: true, dir: Some(PathBuf::from("/my/dir")) };
        assert_eq!(c2.resolve_dir_with(&env(&[("HOME", "/home/u")])), Some(PathBuf::from("/my/dir")));
        let off = CacheConfig { enabled: false, dir: Some(PathBuf::from("/my/dir")) };
        assert_eq!(off.resolve_dir_with(&env(&[("HOME", "/home/u")])), None);
    }

    #[test]
    fn no_directory_compiles_with_disabled_outcome() {
        // Exercise the "no HOME, no XDG" branch of load_or_compile without touching the process environment:
        // an explicitly empty directory means "none".
        let h = Harness::new();
        let c = CacheConfig { enabled: true, dir: Some(PathBuf::new()) };
        assert_eq!(h.run(&c, &key(), b"P"), (b"P".to_vec(), CacheOutcome::Disabled));
        assert!(h.lines.borrow().iter().any(|(l, _)| *l == LogLevel::Info));
    }

    fn keys3() -> [CacheKey; 3] {
        let k = |o: &str| CacheKey::new("a.cu", &[("a.cu", "kernel text")], &[o.to_string()], (13, 0), "sm_90a");
        [k("-DU=0"), k("-DU=1"), k("-DU=2")]
    }

    /// load_or_compile_many with a compile that records which indices it was asked for.
    fn run_many(
        cfg: &CacheConfig,
        keys: &[CacheKey],
        tag: &str,
        asked: &RefCell<Vec<Vec<usize>>>,
        warned: &Cell<bool>,
    ) -> Vec<(Vec<u8>, CacheOutcome)> {
        let log = |l: LogLevel, _: &str| warned.set(warned.get() || l == LogLevel::Warn);
        let compile = |missing: &[usize]| {
            asked.borrow_mut().push(missing.to_vec());
            Ok(missing.iter().map(|i| format!("{tag}-{i}").into_bytes()).collect())
        };
        load_or_compile_many(cfg, keys, compile, &log).unwrap()
    }

    #[test]
    fn many_stores_and_reloads_every_entry() {
        let d = TempDir::new("many");
        let (asked, warned) = (RefCell::new(Vec::new()), Cell::new(false));
        let keys = keys3();
        let first = run_many(&cfg(&d.0), &keys, "A", &asked, &warned);
        assert_eq!(*asked.borrow(), [vec![0, 1, 2]], "every missing entry compiled in one call");
        assert_eq!(first.iter().map(|(_, o)| *o).collect::<Vec<_>>(), [CacheOutcome::Miss; 3]);
        let again = run_many(&cfg(&d.0), &keys, "B", &asked, &warned);
        assert_eq!(asked.borrow().len(), 1, "nothing compiled when every entry is cached");
        for (i, (cubin, o)) in again.iter().enumerate() {
            assert_eq!((cubin.as_slice(), *o), (format!("A-{i}").as_bytes(), CacheOutcome::Hit));
        }
        assert!(!warned.get());
        assert_eq!(fs::read_dir(&d.0).unwrap().count(), 3, "one file per entry, no temp files");
    }

    #[test]
    fn many_recompiles_only_the_damaged_or_missing_entries() {
        let d = TempDir::new("many-damaged");
        let (asked, warned) = (RefCell::new(Vec::new()), Cell::new(false));
        let keys = keys3();
        run_many(&cfg(&d.0), &keys, "A", &asked, &warned);
        // Entry 1 truncated (as by a crash of a writer without the rename), entry 2 removed.
        let p1 = entry_path(&d.0, &keys[1]);
        let b = fs::read(&p1).unwrap();
        fs::write(&p1, &b[..b.len() / 2]).unwrap();
        fs::remove_file(entry_path(&d.0, &keys[2])).unwrap();
        let got = run_many(&cfg(&d.0), &keys, "B", &asked, &warned);
        assert_eq!(asked.borrow()[1], [1, 2]);
        assert!(warned.get(), "the damaged entry is reported");
        let want = [("A-0", CacheOutcome::Hit), ("B-1", CacheOutcome::Miss), ("B-2", CacheOutcome::Miss)];
        for ((cubin, o), (w, wo)) in got.iter().zip(want) {
            assert_eq!((cubin.as_slice(), *o), (w.as_bytes(), wo));
        }
        // Repaired: all three load.
        let again = run_many(&cfg(&d.0), &keys, "C", &asked, &warned);
        assert_eq!(asked.borrow().len(), 2);
        assert!(again.iter().all(|(_, o)| *o == CacheOutcome::Hit));
        assert_eq!(again[1].0, b"B-1");
    }

    #[test]
    fn many_compile_error_stores_nothing() {
        let d = TempDir::new("many-err");
        let keys = keys3();
        let err = CudaError::Compile { arch: "sm_90a".into(), log: "boom".into() };
        let r = load_or_compile_many(&cfg(&d.0), &keys, |_| Err(err.clone()), &|_, _| {});
        assert_eq!(r, Err(err));
        assert_eq!(fs::read_dir(&d.0).unwrap().count(), 0);
        // A compile that returns the wrong number of cubins is an error, not a panic or a short result.
        let r = load_or_compile_many(&cfg(&d.0), &keys, |_| Ok(vec![b"x".to_vec()]), &|_, _| {});
        assert!(matches!(r, Err(CudaError::InvalidArgument { .. })), "{r:?}");
    }

    #[test]
    fn many_disabled_compiles_everything() {
        let d = TempDir::new("many-off");
        let (asked, warned) = (RefCell::new(Vec::new()), Cell::new(false));
        let c = CacheConfig { enabled: false, dir: Some(d.0.clone()) };
        let got = run_many(&c, &keys3(), "A", &asked, &warned);
        assert_eq!(*asked.borrow(), [vec![0, 1, 2]]);
        assert!(got.iter().all(|(_, o)| *o == CacheOutcome::Disabled));
        assert_eq!(fs::read_dir(&d.0).unwrap().count(), 0);
    }

    #[test]
    fn log_levels_have_c_values() {
        assert_eq!(
            [LogLevel::Error as u32, LogLevel::Warn as u32, LogLevel::Info as u32, LogLevel::Debug as u32],
            [1, 2, 3, 4]
        );
    }
}
