//! The property-test ("fuzz") engine behind tests/fuzz.rs (a time-bounded run) and tests/memcheck.rs (a short
//! run of the same engine under valgrind memcheck). No external crate: a seeded generator builds arbitrary but
//! *in-buffer* inputs for every C entry point of the CPU backend, calls it, and checks:
//!
//! - a known `hip_status` comes back, never `HIP_ATTN_STATUS_INTERNAL` (a caught panic is a bug) and no panic
//!   or signal escapes (a fatal signal prints the case's seed from a signal handler);
//! - the verdict matches the case: a call the harness built valid must succeed, a call with an injected fault
//!   that the library can see must fail, with one of the statuses those faults map to;
//! - nothing is written out of bounds: every buffer sits between two 4 KiB guard zones of a canary pattern,
//!   checked after every call (under valgrind the guards are dropped and each buffer is its own exact heap
//!   block, so valgrind's red zones catch out-of-bounds reads *and* writes);
//! - inputs (tensors, index arrays, the argument structs themselves) are never written;
//! - on failure, every output (o, lse, mask state, `*bytes`, ...) is byte-identical to before the call; on
//!   success, bytes of an output buffer outside the view (stride padding) are untouched, every row the call
//!   covers is written, and with k >= every length the output equals dense attention.
//!
//! THE BOUNDARY (what the harness must never do). The C API cannot check that a pointer really spans the
//! extent its declared shape implies. So whenever the library could legitimately accept a call, every buffer
//! is allocated exactly as large as the API contract says for the *declared* host-side values (rows, heads,
//! head_dim, strides, batch, page-table stride, mask-state size, workspace size): faults are injected only
//! where the library can see them — a declared value that is out of range or inconsistent (zero, above
//! i32::MAX, negative or misaligned strides, extents that overflow, struct sizes), a NULL or misaligned pointer,
//! or index *data* inside the buffers (cu_seqlens, seqlens_k, page tables, mask state). A huge but in-range
//! declared value whose extent the harness did not allocate (say total_k = 2^30 with a 4 KiB buffer) is never
//! generated: no library could detect that lie. Two deliberate, documented exceptions, both values the library
//! rejects or bounds itself: counts above i32::MAX (rejected before any buffer is touched), and a workspace
//! claim of `usize::MAX` bytes over an exactly sized allocation (the workspace a call may use is what the size
//! query returns; the guard zones check that the CPU backend stays inside it). The CUDA backend value is never
//! generated: on a machine with a GPU it would create a device context that reads host pointers as device ones
//! (the lead fuzzes the CUDA backend with device buffers).
// Style lints: `!(x <= tol)` is deliberate (NaN must fail), and the generator reads better unrolled.
#![allow(
    dead_code,
    clippy::too_many_arguments,
    clippy::neg_cmp_op_on_partial_ord,
    clippy::manual_range_contains,
    clippy::collapsible_match,
    clippy::unnecessary_unwrap,
    clippy::manual_contains
)]

use hip_attn::hip_status::*;
use hip_attn::tensor::DType;
use hip_attn::*;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{c_char, c_void, CStr};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------------------------
// Random numbers

#[derive(Clone)]
pub struct Rng(u64);

/// The splitmix64 finalizer: a bijection that spreads seeds.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(mix(seed ^ 0x6869_702d_6675_7a7a))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    /// Uniform in [lo, hi].
    pub fn usize(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo) as u64 + 1) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
    /// Uniform in [-1, 1).
    pub fn sym(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    /// How far past a limit to go: the boundary itself half the time (off-by-one bugs live there).
    pub fn beyond(&mut self, max: usize) -> usize {
        if self.chance(50) {
            0
        } else {
            self.usize(0, max)
        }
    }
    pub fn u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    pub fn i32(&mut self) -> i32 {
        self.next_u64() as i32
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Guarded memory

/// Guard-zone bytes on each side of every buffer (0 = exact heap blocks, for valgrind).
static GUARD: AtomicUsize = AtomicUsize::new(4096);

fn canary(i: usize) -> u8 {
    (0xA5 ^ (i.wrapping_mul(0x9E37) >> 5)) as u8 | 1
}

/// `len` bytes, zeroed, 64-byte aligned, between two guard zones of a position-dependent canary pattern.
pub struct Region {
    base: *mut u8,
    layout: Layout,
    guard: usize,
    len: usize,
}

impl Region {
    pub fn new(len: usize) -> Region {
        assert!(len <= 256 << 20, "harness bug: a {len}-byte buffer");
        let guard = GUARD.load(Ordering::Relaxed);
        let layout = Layout::from_size_align((len + 2 * guard).max(1), 64).unwrap();
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { alloc_zeroed(layout) };
        assert!(!base.is_null(), "out of memory");
        for i in 0..guard {
            // SAFETY: both guard zones lie inside the allocation.
            unsafe {
                base.add(i).write(canary(i));
                base.add(guard + len + i).write(canary(guard + len + i));
            }
        }
        Region { base, layout, guard, len }
    }
    pub fn from_bytes(bytes: &[u8]) -> Region {
        let r = Region::new(bytes.len());
        r.write(0, bytes);
        r
    }
    pub fn ptr(&self) -> *mut u8 {
        // SAFETY: guard <= the allocation size.
        unsafe { self.base.add(self.guard) }
    }
    pub fn at(&self, off: usize) -> *mut u8 {
        (self.ptr() as usize + off) as *mut u8
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn read(&self) -> Vec<u8> {
        // SAFETY: len bytes after the front guard are allocated and initialized.
        unsafe { std::slice::from_raw_parts(self.ptr(), self.len) }.to_vec()
    }
    pub fn write(&self, off: usize, bytes: &[u8]) {
        assert!(off + bytes.len() <= self.len, "harness bug: write past a region");
        // SAFETY: inside the region; no reference to it is live.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr().add(off), bytes.len()) };
    }
    pub fn fill(&self, byte: u8) {
        // SAFETY: as in write.
        unsafe { std::ptr::write_bytes(self.ptr(), byte, self.len) };
    }
    pub fn fill_random(&self, rng: &mut Rng) {
        let bytes: Vec<u8> = (0..self.len).map(|_| rng.next_u64() as u8).collect();
        self.write(0, &bytes);
    }
    pub fn i32s(&self) -> Vec<i32> {
        self.read().chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect()
    }
    pub fn canaries(&self) -> Result<(), String> {
        for i in 0..self.guard {
            // SAFETY: guard zones are inside the allocation.
            let (front, back) = unsafe { (self.base.add(i).read(), self.base.add(self.guard + self.len + i).read()) };
            if front != canary(i) {
                return Err(format!("guard zone before the buffer overwritten at byte -{}", self.guard - i));
            }
            if back != canary(self.guard + self.len + i) {
                return Err(format!("guard zone after the buffer overwritten at byte +{i} past its end"));
            }
        }
        Ok(())
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated in new with this layout.
        unsafe { dealloc(self.base, self.layout) }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Expectations

const OK: &[hip_status] = &[HIP_ATTN_STATUS_SUCCESS];
const NULLP: &[hip_status] = &[HIP_ATTN_STATUS_NULL_POINTER];
const CONFIG: &[hip_status] = &[HIP_ATTN_STATUS_INVALID_CONFIG];
const ARG: &[hip_status] = &[HIP_ATTN_STATUS_INVALID_ARGUMENT];
const UNSUP: &[hip_status] = &[HIP_ATTN_STATUS_UNSUPPORTED];
const MIS: &[hip_status] = &[HIP_ATTN_STATUS_MISALIGNED_POINTER];
const WS: &[hip_status] = &[HIP_ATTN_STATUS_WORKSPACE_TOO_SMALL];
const SIZE: &[hip_status] = &[HIP_ATTN_STATUS_STRUCT_SIZE_MISMATCH];
const OVER: &[hip_status] = &[HIP_ATTN_STATUS_SIZE_OVERFLOW];
const BAD: &[hip_status] = &[HIP_ATTN_STATUS_BAD_INDEX];
const NEG_STRIDE: &[hip_status] = &[HIP_ATTN_STATUS_INVALID_ARGUMENT];
/// Two huge strides of one output view also overlap (row 1 of one dimension lands inside row 1 of the other).
const OVER_OUT: &[hip_status] = &[HIP_ATTN_STATUS_SIZE_OVERFLOW, HIP_ATTN_STATUS_INVALID_ARGUMENT];

/// Faults injected into one call: each must make it fail with one of its statuses. `maybe` faults (garbage
/// that may or may not be valid) allow success or one of their statuses.
#[derive(Default)]
struct Plan {
    faults: Vec<(&'static str, &'static [hip_status])>,
    maybe: Vec<(&'static str, &'static [hip_status])>,
}

impl Plan {
    fn fault(&mut self, label: &'static str, st: &'static [hip_status]) {
        self.faults.push((label, st));
    }
    fn maybe(&mut self, label: &'static str, st: &'static [hip_status]) {
        self.maybe.push((label, st));
    }
    fn valid(&self) -> bool {
        self.faults.is_empty() && self.maybe.is_empty()
    }
    fn judge(&self, st: hip_status) -> Result<(), String> {
        let code = st as i32;
        if !hip_status::all().iter().any(|s| *s as i32 == code) {
            return Err(format!("unknown status value {code}"));
        }
        if st == HIP_ATTN_STATUS_INTERNAL {
            return Err("HIP_ATTN_STATUS_INTERNAL (a caught panic or broken invariant)".into());
        }
        if !self.faults.is_empty() {
            if st == HIP_ATTN_STATUS_SUCCESS {
                return Err(format!("succeeded despite faults {:?}", self.labels()));
            }
            let allowed: Vec<hip_status> =
                self.faults.iter().chain(&self.maybe).flat_map(|f| f.1.iter().copied()).collect();
            if !allowed.contains(&st) {
                return Err(format!("{st:?} is not among {allowed:?} expected for faults {:?}", self.labels()));
            }
        } else if st != HIP_ATTN_STATUS_SUCCESS {
            let allowed: Vec<hip_status> = self.maybe.iter().flat_map(|f| f.1.iter().copied()).collect();
            if !allowed.contains(&st) {
                return Err(format!("{st:?} for a call built valid (maybe-faults {:?})", self.labels()));
            }
        }
        Ok(())
    }
    fn labels(&self) -> Vec<&'static str> {
        self.faults.iter().chain(&self.maybe).map(|f| f.0).collect()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Buffers of one call and the checks after it

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// Must never be written.
    Input,
    /// Untouched on failure; on success, bytes outside `view` (if any) untouched.
    Output,
    /// Workspace: only the guard zones are checked.
    Scratch,
}

struct Tracked {
    name: String,
    region: Region,
    role: Role,
    view: Option<Vec<bool>>,
    before: Vec<u8>,
}

#[derive(Default)]
struct Bufs {
    list: Vec<Tracked>,
}

impl Bufs {
    fn add(&mut self, name: impl Into<String>, region: Region, role: Role) -> usize {
        self.list.push(Tracked { name: name.into(), region, role, view: None, before: Vec::new() });
        self.list.len() - 1
    }
    fn r(&self, i: usize) -> &Region {
        &self.list[i].region
    }
    fn addr(&self, i: usize) -> usize {
        self.list[i].region.ptr() as usize
    }
    fn set_view(&mut self, i: usize, mask: Vec<bool>) {
        self.list[i].view = Some(mask);
    }
    fn snapshot(&mut self) {
        for t in &mut self.list {
            t.before = t.region.read();
        }
    }
    fn check(&self, ok: bool) -> Result<(), String> {
        for t in &self.list {
            t.region.canaries().map_err(|e| format!("{}: {e}", t.name))?;
            let now = t.region.read();
            let first_diff = |mask: Option<&Vec<bool>>| {
                now.iter()
                    .zip(&t.before)
                    .enumerate()
                    .find(|(i, (a, b))| a != b && mask.map_or(true, |m| !m[*i]))
                    .map(|x| x.0)
            };
            match t.role {
                Role::Input => {
                    if let Some(i) = first_diff(None) {
                        return Err(format!("input {} written at byte {i}", t.name));
                    }
                }
                Role::Output if !ok => {
                    if let Some(i) = first_diff(None) {
                        return Err(format!("output {} written at byte {i} by a failing call", t.name));
                    }
                }
                Role::Output => {
                    if let Some(i) = first_diff(t.view.as_ref()) {
                        return Err(format!("output {} written outside its view at byte {i}", t.name));
                    }
                }
                Role::Scratch => {}
            }
        }
        Ok(())
    }
}

/// A struct argument placed in its own region, `struct_size` bytes readable (zero tail unless `tail` sets a
/// byte), optionally 4 bytes off its alignment.
fn struct_region<T: Copy>(val: &T, tail: Option<(usize, u8)>, misaligned: bool) -> (Region, usize) {
    let ours = std::mem::size_of::<T>();
    // SAFETY: every versioned struct starts with a u32 struct_size.
    let declared = unsafe { (val as *const T as *const u32).read() } as usize;
    let span = ours.max(if declared <= 1 << 17 { declared } else { 0 });
    let r = Region::new(span + 8);
    let off = if misaligned { 4 } else { 0 };
    // SAFETY: T is plain old data; the bytes are read for a copy.
    let bytes = unsafe { std::slice::from_raw_parts(val as *const T as *const u8, ours) };
    r.write(off, bytes);
    if let Some((i, b)) = tail {
        r.write(off + ours + i, &[b]);
    }
    let addr = r.ptr() as usize + off;
    (r, addr)
}

/// Tail-byte faults of a versioned struct: (struct_size, tail byte, misaligned pointer, NULL pointer).
#[derive(Clone, Copy, Debug)]
struct StructShape {
    size: u32,
    tail: Option<(usize, u8)>,
    misaligned: bool,
    null: bool,
}

fn struct_shape<T>(rng: &mut Rng, plan: &mut Plan, faulty: bool) -> StructShape {
    let ours = std::mem::size_of::<T>() as u32;
    let mut s = StructShape { size: ours, tail: None, misaligned: false, null: false };
    if rng.chance(8) {
        // A newer header's bigger struct with a zero tail: valid.
        s.size = ours + rng.usize(1, 256) as u32;
    }
    if faulty {
        match rng.below(6) {
            0 => {
                s.size = rng.pick(&[0, 1, 4, ours / 2, ours - 8, ours - 1]);
                plan.fault("struct_size_small", SIZE);
            }
            1 => {
                let extra = rng.usize(1, 512);
                s.size = ours + extra as u32;
                s.tail = Some((rng.usize(0, extra - 1), rng.usize(1, 255) as u8));
                plan.fault("struct_size_big_tail_set", SIZE);
            }
            2 => {
                s.size = rng.usize(65537, 1 << 17) as u32;
                plan.fault("struct_size_huge", SIZE);
            }
            3 => {
                s.misaligned = true;
                plan.fault("args_misaligned", MIS);
            }
            _ => {
                s.null = true;
                plan.fault("args_null", NULLP);
            }
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------------------------
// Tensor layouts

#[derive(Clone, Copy, Debug)]
struct Lay {
    ts: i64,
    hs: i64,
}

const HUGE_STRIDE: i64 = 1 << 62;

/// Elements a [rows, heads, d] view spans (the API's formula), or None when negative or overflowing.
fn extent(rows: usize, heads: usize, d: usize, es: usize, lay: Lay) -> Option<usize> {
    if lay.ts < 0 || lay.hs < 0 {
        return None;
    }
    if rows == 0 || heads == 0 {
        return Some(0);
    }
    let e = (rows - 1)
        .checked_mul(lay.ts as usize)?
        .checked_add((heads - 1).checked_mul(lay.hs as usize)?)?
        .checked_add(d)?;
    let bytes = e.checked_mul(es)?;
    (bytes <= isize::MAX as usize).then_some(bytes)
}

/// A random valid layout. Inputs may overlap (broadcast strides 0); outputs never do.
fn gen_layout(rng: &mut Rng, rows: usize, heads: usize, d: usize, es: usize, input: bool) -> Lay {
    let per = (16 / es) as i64;
    let d = d as i64;
    let pad = |rng: &mut Rng| if rng.chance(50) { 0 } else { per * rng.usize(1, 3) as i64 };
    let kinds = if input { 7 } else { 4 };
    let mut lay = match rng.below(kinds) {
        0 | 1 => Lay { ts: heads as i64 * d, hs: d },
        2 => {
            let hs = d + pad(rng);
            Lay { ts: heads as i64 * hs + pad(rng), hs }
        }
        3 => {
            let ts = d + pad(rng);
            Lay { ts, hs: rows as i64 * ts + pad(rng) }
        }
        4 => Lay { ts: d + pad(rng), hs: 0 },
        5 => Lay { ts: 0, hs: d + pad(rng) },
        _ => Lay { ts: 0, hs: 0 },
    };
    // A single row or head never steps its stride: any value, even a huge one, is valid.
    if rows == 1 && rng.chance(10) {
        lay.ts = rng.pick(&[0, HUGE_STRIDE, per * 3]);
    }
    if heads == 1 && rng.chance(10) {
        lay.hs = rng.pick(&[0, HUGE_STRIDE, per * 5]);
    }
    if !input && heads == 1 && lay.hs == 0 && rows > 1 && lay.ts < d {
        lay.ts = d;
    }
    lay
}

/// Per-pointer fault state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ptr {
    Ok,
    Null,
    Mis(usize),
}

fn ptr_of(bufs: &Bufs, i: usize, p: Ptr) -> usize {
    match p {
        Ptr::Ok => bufs.addr(i),
        Ptr::Null => 0,
        Ptr::Mis(off) => bufs.addr(i) + off,
    }
}

/// Which stride fault to inject into a view (None = keep the valid layout).
fn stride_fault(
    rng: &mut Rng,
    plan: &mut Plan,
    lay: &mut Lay,
    rows: usize,
    heads: usize,
    d: usize,
    es: usize,
    output: bool,
) {
    let per = (16 / es) as i64;
    let token = rng.chance(50);
    match rng.below(if output { 4 } else { 3 }) {
        0 => {
            let v = -(per * rng.usize(1, 64) as i64);
            if token {
                lay.ts = v
            } else {
                lay.hs = v
            }
            plan.fault("stride_negative", NEG_STRIDE);
        }
        1 => {
            let v = per * rng.usize(0, 64) as i64 + rng.usize(1, per as usize - 1) as i64;
            if per == 1 {
                return; // every stride is aligned for 16-byte elements (none exist today)
            }
            if token {
                lay.ts = v
            } else {
                lay.hs = v
            }
            plan.fault("stride_misaligned", MIS);
        }
        2 => {
            // Only a stride that is stepped (> 1 row or head) makes the extent overflow.
            let st = if output { OVER_OUT } else { OVER };
            if token && rows > 1 {
                lay.ts = HUGE_STRIDE + per * rng.usize(0, 8) as i64;
                plan.fault("stride_extent_overflow", st);
            } else if !token && heads > 1 {
                lay.hs = HUGE_STRIDE + per * rng.usize(0, 8) as i64;
                plan.fault("stride_extent_overflow", st);
            }
        }
        _ => {
            // Overlapping output rows.
            let d = d as i64;
            if heads > 1 {
                lay.hs = per * rng.usize(0, (d / per - 1) as usize) as i64;
                lay.ts = heads as i64 * d;
                plan.fault("output_overlap", ARG);
            } else if rows > 1 {
                lay.ts = per * rng.usize(0, (d / per - 1) as usize) as i64;
                plan.fault("output_overlap", ARG);
            }
        }
    }
}

/// Makes one pointer NULL or misaligned; false when it already carries a fault (one fault per pointer, or a
/// second one would hide the first from the expectation).
fn ptr_fault(
    rng: &mut Rng,
    plan: &mut Plan,
    p: &mut Ptr,
    align: usize,
    null_label: &'static str,
    mis_label: &'static str,
) -> bool {
    if *p != Ptr::Ok {
        return false;
    }
    if rng.chance(50) {
        *p = Ptr::Null;
        plan.fault(null_label, NULLP);
    } else {
        *p = Ptr::Mis(rng.usize(1, align - 1));
        plan.fault(mis_label, MIS);
    }
    true
}

/// Allocates a tensor region for a view (a small dummy when the extent is invalid), with 16 bytes of slack
/// so a misaligned pointer stays inside the allocation.
fn tensor_region(rows: usize, heads: usize, d: usize, es: usize, lay: Lay) -> Region {
    let bytes = extent(rows, heads, d, es, lay).unwrap_or(d * es);
    assert!(bytes <= 64 << 20, "harness bug: {bytes}-byte tensor");
    Region::new(bytes + 16)
}

/// Fills a view's elements with finite values of the dtype (the rest of the region NaN), or everything with
/// random bytes.
fn fill_input(r: &Region, rows: usize, heads: usize, d: usize, dt: DType, lay: Lay, finite: bool, rng: &mut Rng) {
    if !finite {
        r.fill_random(rng);
        return;
    }
    r.fill(0xFF);
    let es = dt.size();
    let mut elem = vec![0u8; es];
    for t in 0..rows {
        for h in 0..heads {
            let off = (t * lay.ts as usize + h * lay.hs as usize) * es;
            for i in 0..d {
                // SAFETY: elem holds one element.
                unsafe { dt.write(elem.as_mut_ptr(), 0, dt.round(rng.sym())) };
                r.write(off + i * es, &elem);
            }
        }
    }
}

/// Byte mask of the elements a view covers inside its region.
fn view_mask(len: usize, rows: usize, heads: usize, d: usize, es: usize, lay: Lay) -> Vec<bool> {
    let mut m = vec![false; len];
    for t in 0..rows {
        for h in 0..heads {
            let off = (t * lay.ts as usize + h * lay.hs as usize) * es;
            m[off..off + d * es].iter_mut().for_each(|x| *x = true);
        }
    }
    m
}

fn read_elem(r: &Region, dt: DType, idx: usize) -> f32 {
    // SAFETY: the harness only reads elements of views it allocated.
    unsafe { dt.read(r.ptr(), idx) }
}

fn i32_bytes(xs: &[i32]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Configurations

#[derive(Clone, Debug)]
struct Cfg {
    dt: DType,
    es: usize,
    d: usize,
    hq: usize,
    hkv: usize,
    k: usize,
    bq: usize,
    bk: usize,
    sink: usize,
    window: usize,
    causal: bool,
    per_kv: bool,
    refresh: usize,
    scale: f64,
    kb: usize,
    mh: usize,
    state_ints: usize,
    /// What this configuration's records carry (hip_attn::plan::state_fingerprint); 0 for an invalid config.
    fingerprint: i32,
}

impl Cfg {
    fn from_raw(c: &hip_config) -> Cfg {
        let dt = DType::from_raw(c.dtype).unwrap();
        let (hq, hkv) = (c.num_q_heads as usize, c.num_kv_heads as usize);
        let per_kv = c.mask_sharing == hip_mask_sharing::HIP_ATTN_MASK_PER_KV_HEAD as u32;
        let kb = (c.k as usize).div_ceil(c.bk as usize);
        Cfg {
            dt,
            es: dt.size(),
            d: c.head_dim as usize,
            hq,
            hkv,
            k: c.k as usize,
            bq: c.bq as usize,
            bk: c.bk as usize,
            sink: c.sink as usize,
            window: c.window as usize,
            causal: c.causal == 1,
            per_kv,
            refresh: c.refresh as usize,
            scale: if c.softmax_scale == 0.0 { 1.0 / (c.head_dim as f64).sqrt() } else { c.softmax_scale as f64 },
            kb,
            mh: if per_kv { hkv } else { hq },
            state_ints: hip_attn::plan::state_ints_for(kb),
            // SAFETY: the harness's configs hold NULL or a live NUL-terminated kernel_cache_dir.
            fingerprint: unsafe { hip_attn::config::validate(c) }
                .map_or(0, |v| hip_attn::plan::state_fingerprint(&v.0)),
        }
    }
    /// Mask head of q head h.
    fn kv_of(&self, h: usize) -> usize {
        h / (self.hq / self.hkv)
    }
}

static LOG_CALLS: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn log_callback(user: *mut c_void, level: u32, msg: *const c_char) {
    assert!(!msg.is_null() && (1..=4).contains(&level));
    // SAFETY: user_data is the address of LOG_CALLS, set by the harness.
    unsafe { &*(user as *const AtomicUsize) }.fetch_add(1, Ordering::Relaxed);
}

fn gen_config(rng: &mut Rng, plan: &mut Plan, log: &mut Vec<String>) -> hip_config {
    let mut c = hip_config_default();
    c.dtype = rng.pick(&[1, 1, 2, 3]);
    c.head_dim = rng.pick(&[64, 64, 64, 128, 256]);
    c.num_kv_heads = rng.pick(&[1, 1, 2, 3, 4]);
    c.num_q_heads = c.num_kv_heads * rng.pick(&[1, 1, 2, 3, 4]);
    c.k = match rng.below(6) {
        0 => 0,
        1 => 1000,
        2 => rng.usize(1, 4) as u32,
        _ => rng.usize(1, 64) as u32,
    };
    c.bq = rng.pick(&[1, 2, 3, 4, 5, 8, 16, 32, 64]);
    c.bk = rng.pick(&[1, 1, 2, 2, 3, 4, 5, 8, 16]);
    c.sink = rng.pick(&[0, 0, 1, 2, 4, 7]);
    c.window = rng.pick(&[0, 0, 1, 3, 8, 16, 40]);
    c.sq = rng.pick(&[1, 1, 1, 2, 3]);
    c.sk = rng.pick(&[1, 1, 1, 2, 3]);
    c.refresh = rng.pick(&[1, 1, 2, 3, 5, 8, u32::MAX]);
    c.causal = rng.pick(&[1, 1, 1, 0]);
    c.mask_sharing = rng.pick(&[1, 2]);
    // -0.0 asks for the default as 0.0 does; 65536 is the largest scale accepted.
    c.softmax_scale = rng.pick(&[0.0, 0.0, 0.0, 0.125, 1.0, -0.0, 65536.0]);
    if c.k == 0 && c.sink == 0 && (c.window == 0 || c.causal == 0) {
        c.sink = 1;
    }
    // The batch-invariance flag, set from draws already made (a new draw would change what every corpus seed
    // generates).
    if c.bq % 2 == 1 {
        c.flags = HIP_ATTN_FLAG_BATCH_INVARIANT;
    }
    if rng.chance(10) {
        c.kernel_cache_dir = c"/nonexistent/hip-attn-fuzz".as_ptr(); // ignored by the CPU backend
    }
    if rng.chance(10) {
        c.log_callback = Some(log_callback);
        c.log_user_data = &LOG_CALLS as *const AtomicUsize as *mut c_void;
    }
    if rng.chance(12) {
        let which = rng.below(22);
        match which {
            0 => {
                c.dtype = rng.pick(&[0, 4, 5, 255, u32::MAX]);
                plan.fault("config_dtype", CONFIG);
            }
            1 => {
                c.head_dim = rng.pick(&[0, 1, 32, 96, 100, 192, 512, u32::MAX]);
                plan.fault("config_head_dim", UNSUP);
            }
            2 => {
                c.num_q_heads = rng.pick(&[0, 4097, u32::MAX]);
                plan.fault("config_num_q_heads", CONFIG);
            }
            3 => {
                c.num_kv_heads = rng.pick(&[0, 4097, u32::MAX]);
                plan.fault("config_num_kv_heads", CONFIG);
            }
            4 => {
                c.num_kv_heads = 3;
                c.num_q_heads = rng.pick(&[1, 2, 4, 5, 7, 8]);
                plan.fault("config_heads_not_divisible", CONFIG);
            }
            5 => {
                c.k = rng.pick(&[(1 << 20) + 1, u32::MAX]);
                plan.fault("config_k", CONFIG);
            }
            6..=9 => {
                let v = rng.pick(&[0, 4097, u32::MAX]);
                match which {
                    6 => c.bq = v,
                    7 => c.bk = v,
                    8 => c.sq = v,
                    _ => c.sk = v,
                }
                plan.fault("config_block_sizes", CONFIG);
            }
            10 => {
                let v = rng.pick(&[(1 << 30) + 1, u32::MAX]);
                if rng.chance(50) {
                    c.sink = v
                } else {
                    c.window = v
                }
                plan.fault("config_sink_window", CONFIG);
            }
            11 => {
                c.refresh = 0;
                plan.fault("config_refresh", CONFIG);
            }
            12 => {
                c.causal = rng.pick(&[2, 3, u32::MAX]);
                plan.fault("config_causal", CONFIG);
            }
            13 => {
                c.mask_sharing = rng.pick(&[0, 3, u32::MAX]);
                plan.fault("config_mask_sharing", CONFIG);
            }
            14 => {
                // Never 2 (CUDA): see the module comment.
                c.backend = rng.pick(&[0, 3, 4, u32::MAX]);
                plan.fault("config_backend", CONFIG);
            }
            15 => {
                c.softmax_scale = rng.pick(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.5, 65537.0, 1e30]);
                plan.fault("config_scale", CONFIG);
            }
            16 => {
                if rng.chance(50) {
                    (c.k, c.sink, c.window) = (0, 0, 0);
                } else {
                    (c.k, c.sink, c.causal) = (0, 0, 0);
                }
                plan.fault("config_attends_nothing", CONFIG);
            }
            17 => {
                match rng.below(3) {
                    0 => c.flags = 2 << rng.below(31), // every bit but the known one
                    1 => c.reserved_u32 = rng.u32() | 1,
                    _ => c.reserved[rng.below(7) as usize] = rng.next_u64() | 1,
                }
                plan.fault("config_reserved", CONFIG);
            }
            18 => {
                c.kernel_cache_dir = c"".as_ptr();
                plan.fault("config_empty_cache_dir", CONFIG);
            }
            _ => {} // struct faults, applied by the caller
        }
    }
    log.push(format!(
        "config dtype {} d {} hq {} hkv {} k {} bq {} bk {} sink {} window {} sq {} sk {} refresh {} causal {} sharing {} \
         scale {} backend {}",
        c.dtype, c.head_dim, c.num_q_heads, c.num_kv_heads, c.k, c.bq, c.bk, c.sink, c.window, c.sq, c.sk, c.refresh,
        c.causal, c.mask_sharing, c.softmax_scale, c.backend
    ));
    c
}

// ---------------------------------------------------------------------------------------------------------------
// One case

/// A mask-state blob kept between calls of a case, with what is known about its validity.
#[derive(Clone)]
struct StateBlob {
    bytes: Vec<u8>,
    /// Structurally valid for a decode whose length of sequence b is at least min_len[b].
    min_len: Vec<usize>,
    /// Every record came from a search or a reuse of a searched mask (never from garbage).
    pristine: bool,
}

struct Case {
    seed: u64,
    rng: Rng,
    ctx: *mut hip_ctx,
    cfg: Option<Cfg>,
    log: Vec<String>,
    stats: Stats,
    states: HashMap<usize, StateBlob>,
    session: Option<Session>,
}

/// A decode "session": a KV cache that grows one token per step, with its persistent mask state.
#[derive(Clone)]
struct Session {
    seed: u64,
    batch: usize,
    max_k: usize,
    lens: Vec<usize>,
    paged: Option<(usize, usize, usize)>, // page_size, pt_stride, num_pages
    state: StateBlob,
}

#[derive(Default, Clone)]
pub struct Stats {
    pub calls: usize,
    pub by_label: BTreeMap<String, usize>,
    pub by_status: BTreeMap<String, usize>,
    pub dense_checks: usize,
}

impl Stats {
    fn merge(&mut self, o: &Stats) {
        self.calls += o.calls;
        self.dense_checks += o.dense_checks;
        for (k, v) in &o.by_label {
            *self.by_label.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.by_status {
            *self.by_status.entry(k.clone()).or_default() += v;
        }
    }
}

/// Multiply-adds one call may cost (keeps a case cheap under valgrind).
const COST_BUDGET: usize = 3_000_000;

fn thread_message() -> String {
    // SAFETY: a valid NUL-terminated thread-local string.
    unsafe { CStr::from_ptr(hip_last_error_message()) }.to_string_lossy().into_owned()
}

impl Case {
    fn record(&mut self, op: &str, plan: &Plan, st: hip_status) {
        self.stats.calls += 1;
        *self.stats.by_status.entry(format!("{st:?}")).or_default() += 1;
        let labels = plan.labels();
        if labels.is_empty() {
            *self.stats.by_label.entry(format!("{op}:valid")).or_default() += 1;
        }
        for l in labels {
            *self.stats.by_label.entry(format!("{op}:{l}")).or_default() += 1;
        }
        self.log.push(format!("{op} faults {:?} -> {st:?}", plan.labels()));
    }

    /// After a failing call with a context: the per-thread and per-context messages agree and are not empty;
    /// hip_ctx_last_error truncates inside the buffer it is given.
    fn check_messages(&mut self, st: hip_status, ctx: *const hip_ctx) -> Result<(), String> {
        if st == HIP_ATTN_STATUS_SUCCESS {
            return Ok(());
        }
        let msg = thread_message();
        if msg.is_empty() {
            return Err(format!("{st:?} without a thread message"));
        }
        if ctx.is_null() {
            return Ok(());
        }
        // SAFETY: live context; a NULL buffer with length 0 asks for the length.
        let need = unsafe { hip_ctx_last_error(ctx, std::ptr::null_mut(), 0) };
        if need != msg.len() + 1 {
            return Err(format!("hip_ctx_last_error wants {need} bytes for {msg:?}"));
        }
        let cap = self.rng.pick(&[1, 2, 7, need - 1, need, need + 9]).max(1);
        let buf = Region::new(cap);
        buf.fill(0x5A);
        // SAFETY: buf spans cap writable bytes.
        let n = unsafe { hip_ctx_last_error(ctx, buf.ptr() as *mut c_char, cap) };
        buf.canaries().map_err(|e| format!("hip_ctx_last_error buffer: {e}"))?;
        let got = buf.read();
        let copied = (need - 1).min(cap - 1);
        if n != need || got[copied] != 0 || got[..copied] != msg.as_bytes()[..copied] {
            return Err(format!("hip_ctx_last_error({cap}) gave {:?} for {msg:?}", String::from_utf8_lossy(&got)));
        }
        Ok(())
    }

    // ----- context creation -----
    fn create(&mut self) -> Result<(), String> {
        let mut plan = Plan::default();
        let raw = gen_config(&mut self.rng, &mut plan, &mut self.log);
        let faulty = plan.faults.is_empty() && self.rng.chance(4);
        let shape = struct_shape::<hip_config>(&mut self.rng, &mut plan, faulty);
        let mut raw2 = raw;
        raw2.struct_size = shape.size;
        let mut bufs = Bufs::default();
        let (sr, saddr) = struct_region(&raw2, shape.tail, shape.misaligned);
        bufs.add("hip_config", sr, Role::Input);
        let out = Region::new(8);
        out.write(0, &1usize.to_le_bytes());
        let out_i = bufs.add("out", out, Role::Scratch);
        let null_out = plan.faults.is_empty() && self.rng.chance(2);
        if null_out {
            plan.fault("out_null", NULLP);
        }
        bufs.snapshot();
        let cfg_ptr = if shape.null { std::ptr::null() } else { saddr as *const hip_config };
        let out_ptr = if null_out { std::ptr::null_mut() } else { bufs.addr(out_i) as *mut *mut hip_ctx };
        // SAFETY: the config region spans max(struct_size, sizeof) bytes; out is 8 writable bytes.
        let st = unsafe { hip_ctx_create(cfg_ptr, out_ptr) };
        self.record("create", &plan, st);
        plan.judge(st)?;
        bufs.check(true)?;
        self.check_messages(st, std::ptr::null())?;
        let handle = usize::from_le_bytes(bufs.r(out_i).read().try_into().unwrap());
        if st == HIP_ATTN_STATUS_SUCCESS {
            if handle == 0 || handle == 1 {
                return Err("hip_ctx_create succeeded without a context".into());
            }
            self.ctx = handle as *mut hip_ctx;
            self.cfg = Some(Cfg::from_raw(&raw));
        } else if !null_out && handle != 0 {
            return Err("a failed hip_ctx_create left *out non-NULL".into());
        }
        Ok(())
    }

    // ----- size queries -----
    fn sizes(&mut self) -> Result<(), String> {
        let rng = &mut self.rng;
        let arg = |rng: &mut Rng| -> (u32, bool) {
            match rng.below(8) {
                0 => (0, false),
                1 => (rng.pick(&[(i32::MAX as u32) + 1, u32::MAX]), false),
                2 => (i32::MAX as u32, true),
                3 => (rng.u32() >> 1 | 1, true),
                _ => (rng.usize(1, 200) as u32, true),
            }
        };
        let which = rng.below(3);
        let args: Vec<(u32, bool)> = (0..[4, 2, 1][which as usize]).map(|_| arg(rng)).collect();
        let null_bytes = rng.chance(5);
        let null_ctx = rng.chance(3);
        let mut plan = Plan::default();
        if args.iter().any(|a| !a.1) {
            plan.fault("size_arg_out_of_range", ARG);
        }
        if null_bytes {
            plan.fault("size_bytes_null", NULLP);
        }
        if null_ctx {
            plan.fault("size_ctx_null", NULLP);
        }
        if args.iter().any(|a| a.0 > 100_000) {
            plan.maybe("size_overflow", OVER);
        }
        let ctx = if null_ctx { std::ptr::null() } else { self.ctx as *const hip_ctx };
        let mut bufs = Bufs::default();
        let out = Region::new(8);
        out.write(0, &0xDEAD_BEEF_u64.to_le_bytes());
        let oi = bufs.add("bytes", out, Role::Output);
        bufs.set_view(oi, vec![true; 8]);
        bufs.snapshot();
        let p = if null_bytes { std::ptr::null_mut() } else { bufs.addr(oi) as *mut usize };
        let a: Vec<u32> = args.iter().map(|a| a.0).collect();
        // SAFETY: ctx is live or NULL; p is NULL or 8 writable bytes.
        let st = unsafe {
            match which {
                0 => hip_prefill_workspace_size(ctx, a[0], a[1], a[2], a[3], p),
                1 => hip_decode_workspace_size(ctx, a[0], a[1], p),
                _ => hip_mask_state_size(ctx, a[0], p),
            }
        };
        let op = ["prefill_workspace_size", "decode_workspace_size", "mask_state_size"][which as usize];
        self.log.push(format!("{op}{a:?}"));
        self.record(op, &plan, st);
        plan.judge(st)?;
        bufs.check(st == HIP_ATTN_STATUS_SUCCESS)?;
        self.check_messages(st, ctx)?;
        if st == HIP_ATTN_STATUS_SUCCESS {
            let n = usize::from_le_bytes(bufs.r(oi).read().try_into().unwrap());
            let c = self.cfg.as_ref().unwrap();
            if which == 2 && n != a[0] as usize * c.mh * c.state_ints * 4 {
                return Err(format!(
                    "mask_state_size({}) = {n}, expected batch * mask heads * {} ints",
                    a[0], c.state_ints
                ));
            }
            // Monotone: one more of any argument never needs fewer bytes.
            if a.iter().all(|&x| x < 1 << 20) {
                for i in 0..a.len() {
                    let mut b = a.clone();
                    b[i] += 1;
                    let mut m = 0usize;
                    // SAFETY: as above.
                    let st2 = unsafe {
                        match which {
                            0 => hip_prefill_workspace_size(ctx, b[0], b[1], b[2], b[3], &mut m),
                            1 => hip_decode_workspace_size(ctx, b[0], b[1], &mut m),
                            _ => hip_mask_state_size(ctx, b[0], &mut m),
                        }
                    };
                    if st2 == HIP_ATTN_STATUS_SUCCESS && m < n {
                        return Err(format!("{op} not monotone: {a:?} -> {n}, {b:?} -> {m}"));
                    }
                }
            }
        }
        Ok(())
    }

    fn ws_size(
        &self,
        prefill: bool,
        batch: usize,
        total_q: usize,
        max_q: usize,
        max_k: usize,
    ) -> Result<usize, String> {
        let mut n = 0usize;
        // SAFETY: live context, writable out.
        let st = unsafe {
            if prefill {
                hip_prefill_workspace_size(self.ctx, batch as u32, total_q as u32, max_q as u32, max_k as u32, &mut n)
            } else {
                hip_decode_workspace_size(self.ctx, batch as u32, max_k as u32, &mut n)
            }
        };
        if st != HIP_ATTN_STATUS_SUCCESS {
            return Err(format!("workspace size query failed for valid sizes: {st:?} {}", thread_message()));
        }
        Ok(n)
    }

    /// Workspace faults and the region: returns (region index, pointer, bytes claimed).
    fn workspace(&mut self, bufs: &mut Bufs, plan: &mut Plan, needed: usize, faulty: bool) -> (usize, usize, usize) {
        let rng = &mut self.rng;
        let mut alloc = needed;
        let mut claim = needed;
        let mut ptr = Ptr::Ok;
        match rng.below(if faulty { 9 } else { 4 }) {
            0 => {
                let extra = rng.usize(1, 4096);
                alloc += extra;
                claim += extra;
            }
            1 => claim = usize::MAX, // the documented exception: see the module comment
            4 | 5 => {
                if needed > 0 {
                    claim = if rng.chance(50) { needed - 1 } else { rng.usize(0, needed - 1) };
                    plan.fault("workspace_too_small", WS);
                }
            }
            6 => {
                if needed > 0 {
                    ptr = Ptr::Null;
                    plan.fault("workspace_null", NULLP);
                }
            }
            7 | 8 => {
                if needed > 0 {
                    ptr = Ptr::Mis(rng.pick(&[1, 2, 4, 8, 12]));
                    plan.fault("workspace_misaligned", MIS);
                }
            }
            _ => {}
        }
        let r = Region::new(alloc + 16);
        r.fill(0xEE);
        let i = bufs.add("workspace", r, Role::Scratch);
        (i, ptr_of(bufs, i, ptr), claim)
    }

    // ----- prefill -----
    fn prefill(&mut self) -> Result<(), String> {
        let c = self.cfg.clone().unwrap();
        let (dt, es, d, hq, hkv) = (c.dt, c.es, c.d, c.hq, c.hkv);
        let rng = &mut self.rng;
        let batch = rng.pick(&[1, 1, 1, 2, 2, 3, 4, 6]);
        let mut tk: Vec<usize> = (0..batch)
            .map(|_| if rng.chance(50) { rng.pick(&[0, 1, 2, 3, 5, 8, 13, 17, 31, 40, 64]) } else { rng.usize(0, 48) })
            .collect();
        let mut tq: Vec<usize> = tk.iter().map(|&t| if rng.chance(30) { t } else { rng.usize(0, t) }).collect();
        if tq.iter().sum::<usize>() == 0 {
            tk[0] = tk[0].max(1);
            tq[0] = 1;
        }
        while tq.iter().zip(&tk).map(|(a, b)| a * b).sum::<usize>() * hq * d > COST_BUDGET {
            let i = (0..batch).max_by_key(|&i| tk[i]).unwrap();
            tk[i] /= 2;
            tq[i] = tq[i].min(tk[i]);
            if tq.iter().sum::<usize>() == 0 {
                tk[0] = tk[0].max(1);
                tq[0] = 1;
            }
        }
        let (sq, sk) = (tq.iter().sum::<usize>(), tk.iter().sum::<usize>());
        // The totals must be where cu_seqlens end (a larger one is the index fault "cu_seqlens_short_of_total").
        let (total_q, total_k) = (sq, sk);
        let (mq, mk) = (*tq.iter().max().unwrap(), (*tk.iter().max().unwrap()).max(1));
        let max_q = (mq + if rng.chance(20) { rng.usize(1, 5) } else { 0 }).min(total_q);
        let max_k = (mk + if rng.chance(20) { rng.usize(1, 5) } else { 0 }).min(total_k);
        let cu = |l: &[usize]| -> Vec<i32> {
            std::iter::once(0)
                .chain(l.iter().scan(0, |s, &x| {
                    *s += x;
                    Some(*s as i32)
                }))
                .collect()
        };
        let (mut cu_q, mut cu_k) = (cu(&tq), cu(&tk));
        let mut lq = gen_layout(rng, total_q, hq, d, es, true);
        let mut lk = gen_layout(rng, total_k, hkv, d, es, true);
        let mut lv = gen_layout(rng, total_k, hkv, d, es, true);
        let mut lo = gen_layout(rng, total_q, hq, d, es, false);
        let want_lse = rng.chance(60);
        let want_state = rng.chance(50);
        let state_init = rng.below(3); // 0 zero, 1 0xFF, 2 random
        let finite = rng.chance(92);
        let mut reserved = [0u64; 4];
        let (mut bs, mut tqd, mut tkd) = (batch as u32, total_q as u32, total_k as u32);
        let (mut mqd, mut mkd) = (max_q as u32, max_k as u32);
        let needed = self.ws_size(true, batch, total_q, max_q, max_k)?;
        let rng = &mut self.rng;

        // Host-visible faults.
        let mut plan = Plan::default();
        let mut ptrs = [Ptr::Ok; 8]; // q k v o cu_q cu_k lse state
        let n_faults = if rng.chance(50) { 0 } else { rng.pick(&[1, 1, 1, 1, 2, 3]) };
        let mut ws_fault = false;
        let mut struct_fault = false;
        for _ in 0..n_faults {
            match rng.below(14) {
                0 => struct_fault = true,
                1 => {
                    reserved[rng.below(4) as usize] = rng.next_u64() | 1;
                    plan.fault("reserved", ARG);
                }
                2 => {
                    let v = if rng.chance(50) { 0 } else { rng.pick(&[(i32::MAX as u32) + 1, u32::MAX]) };
                    match rng.below(5) {
                        0 => bs = v,
                        1 => tqd = v,
                        2 => tkd = v,
                        3 => mqd = v,
                        _ => mkd = v,
                    }
                    plan.fault("count_out_of_range", ARG);
                }
                3 => {
                    if rng.chance(50) {
                        mqd = tqd.saturating_add(rng.usize(1, 4) as u32);
                    } else {
                        mkd = tkd.saturating_add(rng.usize(1, 4) as u32);
                    }
                    plan.fault("max_seqlen_above_total", ARG);
                }
                4 => {
                    // total_q > total_k: the q and o views grow with the declared total_q.
                    tqd = tkd.saturating_add(rng.usize(1, 4) as u32);
                    plan.fault("total_q_above_total_k", ARG);
                }
                5..=7 => {
                    let which = rng.below(4) as usize;
                    let (lay, rows, heads) = match which {
                        0 => (&mut lq, total_q, hq),
                        1 => (&mut lk, total_k, hkv),
                        2 => (&mut lv, total_k, hkv),
                        _ => (&mut lo, total_q, hq),
                    };
                    stride_fault(rng, &mut plan, lay, rows, heads, d, es, which == 3);
                }
                8..=10 => {
                    let which = rng.below(8) as usize;
                    if which == 6 && !want_lse || which == 7 && !want_state {
                        continue;
                    }
                    let align = [16, 16, 16, 16, 4, 4, 4, 16][which];
                    let (nl, ml) = [
                        ("null_q", "misaligned_q"),
                        ("null_k", "misaligned_k"),
                        ("null_v", "misaligned_v"),
                        ("null_o", "misaligned_o"),
                        ("null_cu_seqlens_q", "misaligned_cu_seqlens_q"),
                        ("null_cu_seqlens_k", "misaligned_cu_seqlens_k"),
                        ("null_lse", "misaligned_lse"),
                        ("null_mask_state_out", "misaligned_mask_state_out"),
                    ][which];
                    let applied = ptr_fault(rng, &mut plan, &mut ptrs[which], align, nl, ml);
                    if applied && which >= 6 && ptrs[which] == Ptr::Null {
                        // NULL lse / mask_state_out just means "not wanted".
                        plan.faults.pop();
                    }
                }
                _ => ws_fault = true,
            }
        }
        // Index-data faults (at most one; the library must catch it before writing anything).
        if rng.chance(25) {
            let q = rng.chance(50);
            let (cuv, total, which) = if q { (&mut cu_q, tqd as usize, "q") } else { (&mut cu_k, tkd as usize, "k") };
            let _ = which;
            match rng.below(8) {
                0 => {
                    cuv[0] = if rng.chance(50) { rng.usize(1, 100) as i32 } else { -(rng.usize(1, 100) as i32) };
                    plan.fault("cu_seqlens_first_not_zero", BAD);
                }
                1 => {
                    let b = rng.usize(1, batch);
                    cuv[b] = cuv[b - 1] - 1 - rng.beyond(50) as i32;
                    plan.fault("cu_seqlens_decreasing", BAD);
                }
                2 => {
                    cuv[batch] = total as i32 + 1 + rng.beyond(50) as i32;
                    plan.fault("cu_seqlens_past_total", BAD);
                }
                3 => {
                    let b = rng.usize(0, batch);
                    cuv[b] = rng.pick(&[i32::MIN, i32::MAX, i32::MIN + 1]);
                    plan.fault("cu_seqlens_extreme", BAD);
                }
                4 => {
                    // One sequence longer than its max_seqlen.
                    if q && mq >= 2 {
                        mqd = (mq - 1) as u32;
                        plan.fault("seqlen_above_max_q", BAD);
                    } else if !q && mk >= 2 && tk.iter().any(|&t| t == mk) {
                        mkd = (mk - 1) as u32;
                        plan.fault("seqlen_above_max_k", BAD);
                    }
                }
                5 => {
                    // Tq > Tk for one sequence (moving the boundary may also break the next one: still BAD).
                    let b = rng.usize(0, batch - 1);
                    let (tqb, tkb) = (cu_q[b + 1] - cu_q[b], cu_k[b + 1] - cu_k[b]);
                    cu_q[b + 1] += tkb - tqb + 1;
                    plan.fault("tq_above_tk", BAD);
                }
                6 => {
                    // cu_seqlens ending short of the declared total (layouts and workspace stay those of the
                    // total); if that makes the last entry decrease, it is still bad index data.
                    cuv[batch] = total as i32 - rng.usize(1, 3) as i32;
                    plan.fault("cu_seqlens_short_of_total", BAD);
                }
                _ => {
                    let b = rng.usize(0, batch);
                    cuv[b] = if rng.chance(50) { rng.i32() } else { cuv[b] + rng.usize(0, 6) as i32 - 3 };
                    plan.maybe("cu_seqlens_random", BAD);
                }
            }
        }
        let shape = struct_shape::<hip_prefill_args>(rng, &mut plan, struct_fault);

        // Buffers, sized for the declared values (valid counts where a declared count is out of range).
        let fit = |decl: u32, valid: usize| if decl >= 1 && decl <= 4096 { decl as usize } else { valid };
        let (rq, rk) = (fit(tqd, total_q), fit(tkd, total_k));
        let nb = fit(bs, batch);
        let mut bufs = Bufs::default();
        let rng = &mut self.rng;
        let qi = bufs.add("q", tensor_region(rq, hq, d, es, lq), Role::Input);
        let ki = bufs.add("k", tensor_region(rk, hkv, d, es, lk), Role::Input);
        let vi = bufs.add("v", tensor_region(rk, hkv, d, es, lv), Role::Input);
        let oi = bufs.add("o", tensor_region(rq, hq, d, es, lo), Role::Output);
        for (i, rows, heads, lay) in [(qi, rq, hq, lq), (ki, rk, hkv, lk), (vi, rk, hkv, lv)] {
            if extent(rows, heads, d, es, lay).is_some() {
                fill_input(bufs.r(i), rows, heads, d, dt, lay, finite, rng);
            } else {
                bufs.r(i).fill_random(rng);
            }
        }
        bufs.r(oi).fill(0xFF);
        let valid_o = extent(rq, hq, d, es, lo).is_some() && lo.ts >= 0 && lo.hs >= 0;
        if valid_o {
            let len = bufs.r(oi).len();
            bufs.set_view(oi, view_mask(len, rq, hq, d, es, lo));
        }
        let pad_cu = |v: &Vec<i32>| {
            let mut v = v.clone();
            v.resize(nb + 1, 0);
            v
        };
        let cqi = bufs.add("cu_seqlens_q", Region::from_bytes(&i32_bytes(&pad_cu(&cu_q))), Role::Input);
        let cki = bufs.add("cu_seqlens_k", Region::from_bytes(&i32_bytes(&pad_cu(&cu_k))), Role::Input);
        let lse_i = want_lse.then(|| {
            let r = Region::new(rq * hq * 4 + 16);
            r.fill(0xFF);
            bufs.add("lse", r, Role::Output)
        });
        let state_bytes = nb * c.mh * c.state_ints * 4;
        let st_i = want_state.then(|| {
            let r = Region::new(state_bytes + 16);
            match state_init {
                0 => {}
                1 => r.fill(0xFF),
                _ => r.fill_random(rng),
            }
            let i = bufs.add("mask_state_out", r, Role::Output);
            let mut m = vec![true; state_bytes + 16];
            m[state_bytes..].iter_mut().for_each(|x| *x = false);
            bufs.set_view(i, m);
            i
        });
        if let Some(i) = lse_i {
            let mut m = vec![true; rq * hq * 4 + 16];
            m[rq * hq * 4..].iter_mut().for_each(|x| *x = false);
            bufs.set_view(i, m);
        }
        let (wi, ws_ptr, ws_claim) = self.workspace(&mut bufs, &mut plan, needed, ws_fault);
        let _ = wi;
        let args = hip_prefill_args {
            struct_size: shape.size,
            batch_size: bs,
            total_q: tqd,
            total_k: tkd,
            max_seqlen_q: mqd,
            max_seqlen_k: mkd,
            q: hip_tensor {
                data: ptr_of(&bufs, qi, ptrs[0]) as *const c_void,
                token_stride: lq.ts,
                head_stride: lq.hs,
            },
            k: hip_tensor {
                data: ptr_of(&bufs, ki, ptrs[1]) as *const c_void,
                token_stride: lk.ts,
                head_stride: lk.hs,
            },
            v: hip_tensor {
                data: ptr_of(&bufs, vi, ptrs[2]) as *const c_void,
                token_stride: lv.ts,
                head_stride: lv.hs,
            },
            o: hip_tensor_mut {
                data: ptr_of(&bufs, oi, ptrs[3]) as *mut c_void,
                token_stride: lo.ts,
                head_stride: lo.hs,
            },
            cu_seqlens_q: ptr_of(&bufs, cqi, ptrs[4]) as *const i32,
            cu_seqlens_k: ptr_of(&bufs, cki, ptrs[5]) as *const i32,
            lse: lse_i.map_or(0, |i| ptr_of(&bufs, i, ptrs[6])) as *mut f32,
            mask_state_out: st_i.map_or(0, |i| ptr_of(&bufs, i, ptrs[7])) as *mut c_void,
            reserved,
        };
        let (sr, saddr) = struct_region(&args, shape.tail, shape.misaligned);
        bufs.add("hip_prefill_args", sr, Role::Input);
        let null_ctx = plan.faults.is_empty() && self.rng.chance(2);
        if null_ctx {
            plan.fault("ctx_null", NULLP);
        }
        self.log.push(format!(
            "prefill batch {bs} total_q {tqd} total_k {tkd} max_q {mqd} max_k {mkd} tq {tq:?} tk {tk:?} cu_q {cu_q:?} \
             cu_k {cu_k:?} q {lq:?} k {lk:?} v {lv:?} o {lo:?} lse {want_lse} state {want_state} finite {finite} \
             ws {needed}/{ws_claim} ptrs {ptrs:?}"
        ));
        bufs.snapshot();
        let ctx = if null_ctx { std::ptr::null() } else { self.ctx as *const hip_ctx };
        let aptr = if shape.null { std::ptr::null() } else { saddr as *const hip_prefill_args };
        // SAFETY: every pointer spans the extent its declared shape implies (see the module comment).
        let st = unsafe { hip_prefill(ctx, aptr, ws_ptr as *mut c_void, ws_claim, std::ptr::null_mut()) };
        self.record("prefill", &plan, st);
        plan.judge(st)?;
        let ok = st == HIP_ATTN_STATUS_SUCCESS;
        bufs.check(ok)?;
        self.check_messages(st, ctx)?;
        if !ok {
            return Ok(());
        }
        // Success: the index data was valid; take the sequences from it (a maybe-fault may have changed them).
        let tq: Vec<usize> = (0..batch).map(|b| (cu_q[b + 1] - cu_q[b]) as usize).collect();
        let tk: Vec<usize> = (0..batch).map(|b| (cu_k[b + 1] - cu_k[b]) as usize).collect();
        let mk = tk.iter().copied().max().unwrap_or(0);
        let lse_i = lse_i.filter(|_| ptrs[6] != Ptr::Null);
        let st_i = st_i.filter(|_| ptrs[7] != Ptr::Null);
        // Every covered row written; dense attention when k covers every sequence.
        let covered = cu_q[batch] as usize;
        let o = bufs.r(oi);
        for t in 0..covered {
            for h in 0..hq {
                let off = t * lo.ts as usize + h * lo.hs as usize;
                let bytes = &o.read()[off * es..(off + d) * es];
                if finite && bytes.iter().all(|&b| b == 0xFF) {
                    return Err(format!("o row {t} head {h} not written"));
                }
            }
        }
        if let Some(i) = st_i {
            let init_ok = state_init != 2;
            // Records of sequences without queries keep what was there before the call.
            let min_len: Vec<usize> = (0..batch)
                .map(|b| {
                    if tq[b] > 0 {
                        tk[b]
                    } else if init_ok {
                        0
                    } else {
                        usize::MAX
                    }
                })
                .collect();
            let bytes = bufs.r(i).read()[..state_bytes].to_vec();
            self.states.insert(batch, StateBlob { bytes, min_len, pristine: init_ok });
        }
        if finite && c.k >= mk {
            self.stats.dense_checks += 1;
            let (q, k, v) = (bufs.r(qi), bufs.r(ki), bufs.r(vi));
            let lse = lse_i.map(|i| bufs.r(i).read());
            for b in 0..batch {
                let (q0, k0) = (cu_q[b] as usize, cu_k[b] as usize);
                for i in 0..tq[b] {
                    let p = tk[b] - tq[b] + i;
                    let nkeys = if c.causal { p + 1 } else { tk[b] };
                    for h in 0..hq {
                        let g = c.kv_of(h);
                        let qoff = (q0 + i) * lq.ts as usize + h * lq.hs as usize;
                        let keys: Vec<(usize, usize)> = (0..nkeys)
                            .map(|j| {
                                (
                                    (k0 + j) * lk.ts as usize + g * lk.hs as usize,
                                    (k0 + j) * lv.ts as usize + g * lv.hs as usize,
                                )
                            })
                            .collect();
                        let (want, want_lse) = dense_row(dt, d, c.scale, q, qoff, k, v, &keys);
                        let ooff = (q0 + i) * lo.ts as usize + h * lo.hs as usize;
                        compare_row(dt, o, ooff, &want, &format!("prefill seq {b} query {i} head {h}"))?;
                        if let Some(l) = &lse {
                            let at = ((q0 + i) * hq + h) * 4;
                            let got = f32::from_le_bytes(l[at..at + 4].try_into().unwrap()) as f64;
                            if (got - want_lse).abs() > 2e-3 * (1.0 + want_lse.abs()) {
                                return Err(format!(
                                    "prefill seq {b} query {i} head {h}: lse {got} vs dense {want_lse}"
                                ));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    // ----- decode -----
    fn decode(&mut self) -> Result<(), String> {
        let c = self.cfg.clone().unwrap();
        let (dt, es, d, hq, hkv) = (c.dt, c.es, c.d, c.hq, c.hkv);
        // Continue the session (same or one more token) or start a new one.
        let mut sess = match self.session.take() {
            Some(mut s) if self.rng.chance(70) => {
                for l in s.lens.iter_mut() {
                    if self.rng.chance(70) && *l < s.max_k {
                        *l += 1;
                    }
                }
                if self.rng.chance(5) {
                    // A cache truncated without zeroing its records: the state may now be invalid.
                    let b = self.rng.usize(0, s.batch - 1);
                    s.lens[b] = self.rng.usize(1, s.lens[b]);
                    s.state.min_len[b] = usize::MAX;
                }
                s
            }
            _ => {
                let rng = &mut self.rng;
                let batch = rng.pick(&[1, 1, 2, 2, 3, 4]);
                let mut state = StateBlob {
                    bytes: vec![0; batch * c.mh * c.state_ints * 4],
                    min_len: vec![0; batch],
                    pristine: true,
                };
                match rng.below(10) {
                    0..=4 => {}
                    5 | 6 => {
                        if let Some(s) = self.states.get(&batch) {
                            state = s.clone();
                        }
                    }
                    7 => {
                        let mut r = Rng::new(rng.next_u64());
                        state.bytes.iter_mut().for_each(|b| *b = r.next_u64() as u8);
                        state.min_len = vec![usize::MAX; batch];
                        state.pristine = false;
                    }
                    _ => {
                        // Garbage records that carry the magic number.
                        let ints = state.bytes.len() / 4;
                        let mut v: Vec<i32> = (0..ints).map(|_| rng.i32() % 64).collect();
                        for rec in 0..batch * c.mh {
                            v[rec * c.state_ints] = hip_attn::plan::STATE_MAGIC;
                        }
                        state.bytes = i32_bytes(&v);
                        state.min_len = vec![usize::MAX; batch];
                        state.pristine = false;
                    }
                }
                let mut max_k = if rng.chance(50) { rng.pick(&[1, 2, 5, 8, 16, 33, 64]) } else { rng.usize(1, 80) };
                // A state from an earlier prefill is valid for lengths at least its sequences' Tk.
                let need = state.min_len.iter().copied().filter(|&l| l != usize::MAX).max().unwrap_or(0);
                if need * batch * hq * d <= COST_BUDGET / 2 {
                    max_k = max_k.max(need);
                }
                while batch * hq * max_k * d > COST_BUDGET / 2 {
                    max_k = (max_k / 2).max(1);
                }
                let paged = rng.chance(55).then(|| {
                    let ps = rng.pick(&[1, 2, 3, 4, 8, 16, 64]);
                    let need = max_k.div_ceil(ps);
                    let pt_stride = need + if rng.chance(30) { rng.usize(1, 3) } else { 0 };
                    let num_pages = rng.usize(1, batch * pt_stride + 3);
                    (ps, pt_stride, num_pages)
                });
                let lens = (0..batch)
                    .map(|b| {
                        let lo = state.min_len[b].min(max_k).max(1);
                        if state.min_len[b] > max_k && state.min_len[b] != usize::MAX {
                            state.min_len[b] = usize::MAX;
                        }
                        rng.usize(lo, max_k)
                    })
                    .collect();
                Session { seed: rng.next_u64(), batch, max_k, lens, paged, state }
            }
        };
        let batch = sess.batch;
        let max_k = sess.max_k;
        let lens = sess.lens.clone();
        let state_valid = lens.iter().zip(&sess.state.min_len).all(|(&l, &m)| l >= m);
        let mut rng = Rng::new(sess.seed);
        // The cache: geometry fixed per session, contents regenerated from the session seed.
        let (outer, tokens) = match sess.paged {
            Some((ps, _, np)) => (np, ps),
            None => (batch, max_k),
        };
        let kv_lay = |rng: &mut Rng| -> (i64, i64, i64) {
            let per = (16 / es) as i64;
            let dd = d as i64;
            match rng.below(4) {
                0 => (tokens as i64 * hkv as i64 * dd, hkv as i64 * dd, dd),
                1 => {
                    let hs = dd + per * rng.usize(0, 2) as i64;
                    let ts = hkv as i64 * hs + per * rng.usize(0, 2) as i64;
                    (tokens as i64 * ts + per * rng.usize(0, 3) as i64, ts, hs)
                }
                2 => {
                    let ts = dd;
                    let hs = tokens as i64 * dd + per;
                    (hkv as i64 * hs, ts, hs)
                }
                _ => (0, hkv as i64 * dd, dd), // every sequence / page aliases the first one: valid input
            }
        };
        let (mut ss, mut kts, mut khs) = kv_lay(&mut rng);
        let mut layout = if sess.paged.is_some() {
            hip_kv_layout::HIP_ATTN_KV_PAGED as u32
        } else {
            hip_kv_layout::HIP_ATTN_KV_CONTIGUOUS as u32
        };
        let (mut ps, mut pt_stride, mut num_pages) =
            sess.paged.map_or((0, 0, 0), |p| (p.0 as u32, p.1 as u32, p.2 as u32));
        let mut table: Vec<i32> = Vec::new();
        if let Some((psz, pts, np)) = sess.paged {
            table = vec![0; batch * pts];
            for b in 0..batch {
                for i in 0..pts {
                    table[b * pts + i] = if i < lens[b].div_ceil(psz) || rng.chance(50) {
                        rng.usize(0, np - 1) as i32
                    } else {
                        rng.i32() // unused entries may hold anything
                    };
                }
            }
        }
        let same_kv = rng.chance(10);
        let finite = rng.chance(92);
        let mut lq = gen_layout(&mut rng, batch, hq, d, es, true);
        let mut lo = gen_layout(&mut rng, batch, hq, d, es, false);
        let want_lse = rng.chance(60);
        let mut seqlens: Vec<i32> = lens.iter().map(|&l| l as i32).collect();
        let mut state = sess.state.bytes.clone();
        let needed = self.ws_size(false, batch, 0, 0, max_k)?;
        let rng = &mut self.rng;

        let mut plan = Plan::default();
        if !state_valid {
            plan.maybe("mask_state_stale", BAD);
        }
        let mut ptrs = [Ptr::Ok; 8]; // q o k v seqlens state page_table lse
        let (mut bs, mut mkd, mut reserved_u32, mut reserved) = (batch as u32, max_k as u32, 0u32, [0u64; 4]);
        let n_faults = if rng.chance(50) { 0 } else { rng.pick(&[1, 1, 1, 1, 2, 3]) };
        let (mut ws_fault, mut struct_fault) = (false, false);
        for _ in 0..n_faults {
            match rng.below(15) {
                0 => struct_fault = true,
                1 => {
                    if rng.chance(50) {
                        reserved[rng.below(4) as usize] = rng.next_u64() | 1;
                    } else {
                        reserved_u32 = rng.u32() | 1;
                    }
                    plan.fault("reserved", ARG);
                }
                2 => {
                    let v = if rng.chance(50) { 0 } else { rng.pick(&[(i32::MAX as u32) + 1, u32::MAX]) };
                    if rng.chance(50) {
                        bs = v
                    } else {
                        mkd = v
                    }
                    plan.fault("count_out_of_range", ARG);
                }
                3 => {
                    layout = rng.pick(&[0, 3, 4, u32::MAX]);
                    plan.fault("kv_layout_unknown", ARG);
                }
                4 => {
                    if sess.paged.is_some() {
                        match rng.below(4) {
                            0 => ps = rng.pick(&[0, (i32::MAX as u32) + 1, u32::MAX]),
                            1 => pt_stride = rng.pick(&[0, (i32::MAX as u32) + 1]),
                            2 => num_pages = rng.pick(&[0, (i32::MAX as u32) + 1, u32::MAX]),
                            _ => {
                                // Too narrow for max_seqlen_k (in pages of the session's page size).
                                let need = max_k.div_ceil(sess.paged.unwrap().0);
                                pt_stride = if need > 1 { rng.usize(1, need - 1) as u32 } else { 0 };
                            }
                        }
                        plan.fault("paging_out_of_range", ARG);
                    }
                }
                5..=7 => {
                    let per = (16 / es) as i64;
                    match rng.below(3) {
                        0 => {
                            if rng.chance(50) {
                                stride_fault(rng, &mut plan, &mut lq, batch, hq, d, es, false);
                            } else {
                                stride_fault(rng, &mut plan, &mut lo, batch, hq, d, es, true);
                            }
                        }
                        1 => {
                            let which = rng.below(3);
                            let s = match which {
                                0 => &mut ss,
                                1 => &mut kts,
                                _ => &mut khs,
                            };
                            match rng.below(3) {
                                0 => {
                                    *s = -(per * rng.usize(1, 64) as i64);
                                    plan.fault("stride_negative", NEG_STRIDE);
                                }
                                1 => {
                                    *s += rng.usize(1, per as usize - 1) as i64;
                                    plan.fault("stride_misaligned", MIS);
                                }
                                _ => {
                                    let n = [outer, tokens, hkv][which as usize];
                                    if n > 1 {
                                        *s = HUGE_STRIDE;
                                        plan.fault("stride_extent_overflow", OVER);
                                    }
                                }
                            }
                        }
                        _ => {
                            let lay = &mut lo;
                            stride_fault(rng, &mut plan, lay, batch, hq, d, es, true);
                        }
                    }
                }
                8..=11 => {
                    let which = rng.below(8) as usize;
                    if which == 6 && sess.paged.is_none() || which == 7 && !want_lse {
                        continue;
                    }
                    let align = [16, 16, 16, 16, 4, 16, 4, 4][which];
                    let (nl, ml) = [
                        ("null_q", "misaligned_q"),
                        ("null_o", "misaligned_o"),
                        ("null_kv_k", "misaligned_kv_k"),
                        ("null_kv_v", "misaligned_kv_v"),
                        ("null_seqlens_k", "misaligned_seqlens_k"),
                        ("null_mask_state", "misaligned_mask_state"),
                        ("null_page_table", "misaligned_page_table"),
                        ("null_lse", "misaligned_lse"),
                    ][which];
                    let applied = ptr_fault(rng, &mut plan, &mut ptrs[which], align, nl, ml);
                    if applied && which == 7 && ptrs[7] == Ptr::Null {
                        plan.faults.pop();
                    }
                }
                _ => ws_fault = true,
            }
        }
        // A page-table fault matters only while the layout is still paged.
        let paged_now = layout == hip_kv_layout::HIP_ATTN_KV_PAGED as u32;
        if !paged_now {
            // Faults of paging fields or the page-table pointer are ignored by a contiguous or unknown layout:
            // drop them from the expectation (unknown layouts fail anyway).
            let contiguous = layout == hip_kv_layout::HIP_ATTN_KV_CONTIGUOUS as u32;
            if contiguous {
                plan.faults.retain(|f| f.0 != "paging_out_of_range" && !f.0.ends_with("page_table"));
            }
        }
        // Index-data faults: one at most.
        if rng.chance(30) {
            match rng.below(if paged_now { 4 } else { 3 }) {
                0 => {
                    let b = rng.usize(0, batch - 1);
                    seqlens[b] = match rng.below(4) {
                        0 => 0,
                        1 => -1 - rng.beyond(1000) as i32,
                        2 => rng.pick(&[i32::MIN, i32::MAX]),
                        _ => max_k as i32 + 1 + rng.beyond(10) as i32,
                    };
                    plan.fault("seqlens_k_out_of_range", BAD);
                }
                1 | 2 => {
                    // A record that breaks one rule of the mask state.
                    let b = rng.usize(0, batch - 1);
                    let mh = rng.usize(0, c.mh - 1);
                    let p = lens[b] - 1;
                    let e_hi = c.sink.max(p + 1);
                    let e_valid =
                        if c.causal { (p + 1).saturating_sub(c.window).max(c.sink) } else { (p + 1).max(c.sink) };
                    let nbk = |e: usize| if e > c.sink { (e - c.sink).div_ceil(c.bk) } else { 0 };
                    let lim = c.kb.min(nbk(e_valid));
                    let mut rec =
                        vec![hip_attn::plan::STATE_MAGIC, rng.usize(0, 20) as i32, e_valid as i32, 0, c.fingerprint];
                    let h = hip_attn::plan::STATE_HEADER;
                    let kind = rng.below(6);
                    match kind {
                        0 => rec[2] = (e_hi + 1 + rng.beyond(100)) as i32,
                        1 => {
                            rec[2] = if c.sink > 0 {
                                c.sink as i32 - 1 - rng.beyond(5) as i32
                            } else {
                                -1 - rng.beyond(5) as i32
                            }
                        }
                        2 => rec[3] = -(rng.usize(1, 100) as i32),
                        3 => rec[3] = (lim + 1 + rng.beyond(5)) as i32,
                        4 if lim >= 1 => {
                            let cnt = rng.usize(1, lim);
                            rec[3] = cnt as i32;
                            rec.extend((0..cnt).map(|x| x as i32));
                            rec[h + rng.usize(0, cnt - 1)] = nbk(e_valid) as i32 + rng.beyond(10) as i32;
                        }
                        5 if lim >= 2 => {
                            rec[3] = 2;
                            let x = rng.usize(0, nbk(e_valid) - 1) as i32;
                            rec.extend([x, x]);
                        }
                        _ => rec[2] = (e_hi + 1) as i32,
                    }
                    rec.truncate(c.state_ints);
                    let at = (b * c.mh + mh) * c.state_ints * 4;
                    state[at..at + rec.len() * 4].copy_from_slice(&i32_bytes(&rec));
                    plan.fault("mask_state_corrupt", BAD);
                }
                _ => {
                    let (psz, pts, np) = sess.paged.unwrap();
                    let b = rng.usize(0, batch - 1);
                    let i = rng.usize(0, lens[b].div_ceil(psz) - 1);
                    table[b * pts + i] = match rng.below(3) {
                        0 => np as i32 + rng.beyond(100) as i32,
                        1 => -1 - rng.beyond(100) as i32,
                        _ => rng.pick(&[i32::MIN, i32::MAX]),
                    };
                    plan.fault("page_index_out_of_range", BAD);
                }
            }
        }
        let shape = struct_shape::<hip_decode_args>(rng, &mut plan, struct_fault);

        let fit = |decl: u32, valid: usize| if decl >= 1 && decl <= 4096 { decl as usize } else { valid };
        let nb = fit(bs, batch);
        let mut bufs = Bufs::default();
        let mut rng = Rng::new(sess.seed ^ 0x5eed);
        let qi = bufs.add("q", tensor_region(nb, hq, d, es, lq), Role::Input);
        let oi = bufs.add("o", tensor_region(nb, hq, d, es, lo), Role::Output);
        if extent(nb, hq, d, es, lq).is_some() {
            fill_input(bufs.r(qi), nb, hq, d, dt, lq, finite, &mut rng);
        }
        bufs.r(oi).fill(0xFF);
        if extent(nb, hq, d, es, lo).is_some() {
            let len = bufs.r(oi).len();
            bufs.set_view(oi, view_mask(len, nb, hq, d, es, lo));
        }
        // The KV cache: extent of `outer` blocks of [tokens, hkv, d].
        let kv_ext = |ss: i64, ts: i64, hs: i64| -> Option<usize> {
            if ss < 0 || ts < 0 || hs < 0 {
                return None;
            }
            let e = (outer - 1)
                .checked_mul(ss as usize)?
                .checked_add((tokens - 1).checked_mul(ts as usize)?)?
                .checked_add((hkv - 1).checked_mul(hs as usize)?)?
                .checked_add(d)?
                .checked_mul(es)?;
            (e <= isize::MAX as usize).then_some(e)
        };
        let kvb = kv_ext(ss, kts, khs);
        let kv_bytes = kvb.unwrap_or(d * es) + 16;
        assert!(kv_bytes <= 64 << 20);
        let fill_kv = |r: &Region, rng: &mut Rng| {
            if kvb.is_none() || !finite {
                r.fill_random(rng);
                return;
            }
            r.fill(0xFF);
            let mut elem = vec![0u8; es];
            for o in 0..outer {
                for t in 0..tokens {
                    for g in 0..hkv {
                        let off = (o * ss as usize + t * kts as usize + g * khs as usize) * es;
                        for i in 0..d {
                            // SAFETY: elem holds one element.
                            unsafe { dt.write(elem.as_mut_ptr(), 0, dt.round(rng.sym())) };
                            r.write(off + i * es, &elem);
                        }
                    }
                }
            }
        };
        let ki = bufs.add("kv.k", Region::new(kv_bytes), Role::Input);
        fill_kv(bufs.r(ki), &mut rng);
        let vi = if same_kv {
            ki
        } else {
            let i = bufs.add("kv.v", Region::new(kv_bytes), Role::Input);
            fill_kv(bufs.r(i), &mut rng);
            i
        };
        let mut sl = seqlens.clone();
        sl.resize(nb, 1);
        let sli = bufs.add("seqlens_k", Region::from_bytes(&i32_bytes(&sl)), Role::Input);
        let state_bytes = nb * c.mh * c.state_ints * 4;
        let mut st = state.clone();
        st.resize(state_bytes, 0);
        let sti = bufs.add("mask_state", Region::new(state_bytes + 16), Role::Output);
        bufs.r(sti).write(0, &st);
        let mut m = vec![true; state_bytes + 16];
        m[state_bytes..].iter_mut().for_each(|x| *x = false);
        bufs.set_view(sti, m);
        let pti = sess.paged.map(|(_, pts, _)| {
            let mut t = table.clone();
            t.resize(nb * pts, -1);
            bufs.add("page_table", Region::from_bytes(&i32_bytes(&t)), Role::Input)
        });
        let lse_i = want_lse.then(|| {
            let r = Region::new(nb * hq * 4 + 16);
            r.fill(0xFF);
            let i = bufs.add("lse", r, Role::Output);
            let mut m = vec![true; nb * hq * 4 + 16];
            m[nb * hq * 4..].iter_mut().for_each(|x| *x = false);
            bufs.set_view(i, m);
            i
        });
        let (_wi, ws_ptr, ws_claim) = self.workspace(&mut bufs, &mut plan, needed, ws_fault);
        let args = hip_decode_args {
            struct_size: shape.size,
            batch_size: bs,
            max_seqlen_k: mkd,
            reserved_u32,
            q: hip_tensor {
                data: ptr_of(&bufs, qi, ptrs[0]) as *const c_void,
                token_stride: lq.ts,
                head_stride: lq.hs,
            },
            kv: hip_kv_cache {
                layout,
                page_size: ps,
                k: ptr_of(&bufs, ki, ptrs[2]) as *const c_void,
                v: ptr_of(&bufs, vi, ptrs[3]) as *const c_void,
                seq_stride: ss,
                token_stride: kts,
                head_stride: khs,
                page_table: pti.map_or(0, |i| ptr_of(&bufs, i, ptrs[6])) as *const i32,
                page_table_stride: pt_stride,
                num_pages,
            },
            seqlens_k: ptr_of(&bufs, sli, ptrs[4]) as *const i32,
            mask_state: ptr_of(&bufs, sti, ptrs[5]) as *mut c_void,
            o: hip_tensor_mut {
                data: ptr_of(&bufs, oi, ptrs[1]) as *mut c_void,
                token_stride: lo.ts,
                head_stride: lo.hs,
            },
            lse: lse_i.map_or(0, |i| ptr_of(&bufs, i, ptrs[7])) as *mut f32,
            reserved,
        };
        let (sr, saddr) = struct_region(&args, shape.tail, shape.misaligned);
        bufs.add("hip_decode_args", sr, Role::Input);
        let null_ctx = plan.faults.is_empty() && self.rng.chance(2);
        if null_ctx {
            plan.fault("ctx_null", NULLP);
        }
        self.log.push(format!(
            "decode batch {bs} max_k {mkd} lens {seqlens:?} layout {layout} paging ({ps}, {pt_stride}, {num_pages}) \
             strides ({ss}, {kts}, {khs}) same_kv {same_kv} q {lq:?} o {lo:?} lse {want_lse} finite {finite} \
             state_valid {state_valid} pristine {} ws {needed}/{ws_claim} ptrs {ptrs:?} table {table:?}",
            sess.state.pristine
        ));
        bufs.snapshot();
        let ctx = if null_ctx { std::ptr::null() } else { self.ctx as *const hip_ctx };
        let aptr = if shape.null { std::ptr::null() } else { saddr as *const hip_decode_args };
        // SAFETY: every pointer spans the extent its declared shape implies (see the module comment).
        let st = unsafe { hip_decode_step(ctx, aptr, ws_ptr as *mut c_void, ws_claim, std::ptr::null_mut()) };
        self.record("decode", &plan, st);
        plan.judge(st)?;
        let ok = st == HIP_ATTN_STATUS_SUCCESS;
        bufs.check(ok)?;
        self.check_messages(st, ctx)?;
        if !ok {
            if plan.faults.is_empty() {
                // A stale or garbage state refused: the engine would zero it. Keep the session going.
                sess.state.bytes.iter_mut().for_each(|b| *b = 0);
                sess.state.min_len = vec![0; batch];
                sess.state.pristine = true;
            }
            self.session = Some(sess);
            return Ok(());
        }
        // Success: every row written; dense attention when k covers every length and the state is pristine.
        let lse_i = lse_i.filter(|_| ptrs[7] != Ptr::Null);
        let o = bufs.r(oi);
        let obytes = o.read();
        for b in 0..batch {
            for h in 0..hq {
                let off = b * lo.ts as usize + h * lo.hs as usize;
                if finite && obytes[off * es..(off + d) * es].iter().all(|&x| x == 0xFF) {
                    return Err(format!("decode o row {b} head {h} not written"));
                }
            }
        }
        let new_state = bufs.r(sti).read()[..batch * c.mh * c.state_ints * 4].to_vec();
        // Every record now holds the magic number.
        for rec in 0..batch * c.mh {
            let at = rec * c.state_ints * 4;
            if i32::from_le_bytes(new_state[at..at + 4].try_into().unwrap()) != hip_attn::plan::STATE_MAGIC {
                return Err(format!("decode success left mask-state record {rec} without the magic number"));
            }
        }
        if finite && c.k >= max_k && sess.state.pristine && state_valid {
            self.stats.dense_checks += 1;
            let (kr, vr) = (bufs.r(ki), bufs.r(vi));
            let q = bufs.r(qi);
            let lse = lse_i.map(|i| bufs.r(i).read());
            for b in 0..batch {
                for h in 0..hq {
                    let g = c.kv_of(h);
                    let keys: Vec<(usize, usize)> = (0..lens[b])
                        .map(|t| {
                            let base = match sess.paged {
                                Some((psz, pts, _)) => {
                                    table[b * pts + t / psz] as usize * ss as usize + (t % psz) * kts as usize
                                }
                                None => b * ss as usize + t * kts as usize,
                            } + g * khs as usize;
                            (base, base)
                        })
                        .collect();
                    let qoff = b * lq.ts as usize + h * lq.hs as usize;
                    let (want, want_lse) = dense_row(dt, d, c.scale, q, qoff, kr, vr, &keys);
                    compare_row(
                        dt,
                        o,
                        b * lo.ts as usize + h * lo.hs as usize,
                        &want,
                        &format!("decode seq {b} head {h}"),
                    )?;
                    if let Some(l) = &lse {
                        let at = (b * hq + h) * 4;
                        let got = f32::from_le_bytes(l[at..at + 4].try_into().unwrap()) as f64;
                        if (got - want_lse).abs() > 2e-3 * (1.0 + want_lse.abs()) {
                            return Err(format!("decode seq {b} head {h}: lse {got} vs dense {want_lse}"));
                        }
                    }
                }
            }
        }
        if plan.valid() || plan.faults.is_empty() {
            sess.state.bytes = new_state;
            sess.state.min_len = lens.clone();
            if !state_valid {
                sess.state.pristine = false;
            }
        }
        self.states.insert(batch, sess.state.clone());
        self.session = Some(sess);
        Ok(())
    }

    // ----- merge -----
    fn merge(&mut self) -> Result<(), String> {
        let c = self.cfg.clone().unwrap();
        let (dt, es, d) = (c.dt, c.es, c.d);
        let rng = &mut self.rng;
        let n = rng.usize(1, 24);
        let h = rng.pick(&[1, 1, 2, 3, 4, 8]);
        let (mut la, mut lb, mut lo) = (
            gen_layout(rng, n, h, d, es, true),
            gen_layout(rng, n, h, d, es, true),
            gen_layout(rng, n, h, d, es, false),
        );
        let alias = rng.pick(&[0, 0, 1, 2]); // 0 none, 1 out = a, 2 out = b
        if alias == 1 {
            la = lo;
        } else if alias == 2 {
            lb = lo;
        }
        let want_lse_out = rng.chance(70);
        let lse_alias = want_lse_out && rng.chance(20);
        let finite = rng.chance(90);
        let mut plan = Plan::default();
        let mut ptrs = [Ptr::Ok; 6]; // o_a lse_a o_b lse_b o_out lse_out
        let (mut nt, mut nh, mut reserved_u32, mut reserved) = (n as u32, h as u32, 0u32, [0u64; 2]);
        let n_faults = if rng.chance(50) { 0 } else { rng.pick(&[1, 1, 1, 2]) };
        let mut struct_fault = false;
        for _ in 0..n_faults {
            match rng.below(8) {
                0 => struct_fault = true,
                1 => {
                    if rng.chance(50) {
                        reserved[rng.below(2) as usize] = rng.next_u64() | 1;
                    } else {
                        reserved_u32 = rng.u32() | 1;
                    }
                    plan.fault("reserved", ARG);
                }
                2 => {
                    let v = if rng.chance(50) { 0 } else { rng.pick(&[(i32::MAX as u32) + 1, u32::MAX]) };
                    if rng.chance(50) {
                        nt = v
                    } else {
                        nh = v
                    }
                    plan.fault("count_out_of_range", ARG);
                }
                3 | 4 => {
                    if alias != 0 {
                        continue; // an aliased pair must keep one layout
                    }
                    let which = rng.below(3);
                    let lay = match which {
                        0 => &mut la,
                        1 => &mut lb,
                        _ => &mut lo,
                    };
                    stride_fault(rng, &mut plan, lay, n, h, d, es, which == 2);
                }
                _ => {
                    let which = rng.below(6) as usize;
                    if which == 5 && !want_lse_out || alias != 0 && (which == 0 || which == 2 || which == 4) {
                        continue;
                    }
                    if lse_alias && (which == 1 || which == 5) {
                        continue;
                    }
                    let align = [16, 4, 16, 4, 16, 4][which];
                    let (nl, ml) = [
                        ("null_o_a", "misaligned_o_a"),
                        ("null_lse_a", "misaligned_lse_a"),
                        ("null_o_b", "misaligned_o_b"),
                        ("null_lse_b", "misaligned_lse_b"),
                        ("null_o_out", "misaligned_o_out"),
                        ("null_lse_out", "misaligned_lse_out"),
                    ][which];
                    let applied = ptr_fault(rng, &mut plan, &mut ptrs[which], align, nl, ml);
                    if applied && which == 5 && ptrs[5] == Ptr::Null {
                        plan.faults.pop();
                    }
                }
            }
        }
        let shape = struct_shape::<hip_merge_args>(rng, &mut plan, struct_fault);
        let fit = |decl: u32, valid: usize| if decl >= 1 && decl <= 4096 { decl as usize } else { valid };
        let (rn, rh) = (fit(nt, n), fit(nh, h));
        let mut bufs = Bufs::default();
        let ai = bufs.add("o_a", tensor_region(rn, rh, d, es, la), if alias == 1 { Role::Output } else { Role::Input });
        let bi = bufs.add("o_b", tensor_region(rn, rh, d, es, lb), if alias == 2 { Role::Output } else { Role::Input });
        let oi = if alias == 0 {
            bufs.add("o_out", tensor_region(rn, rh, d, es, lo), Role::Output)
        } else if alias == 1 {
            ai
        } else {
            bi
        };
        for (i, lay) in [(ai, la), (bi, lb)] {
            if extent(rn, rh, d, es, lay).is_some() {
                fill_input(bufs.r(i), rn, rh, d, dt, lay, finite, rng);
            } else {
                bufs.r(i).fill_random(rng);
            }
        }
        if alias == 0 {
            bufs.r(oi).fill(0xFF);
        }
        if extent(rn, rh, d, es, lo).is_some() {
            let len = bufs.r(oi).len();
            bufs.set_view(oi, view_mask(len, rn, rh, d, es, lo));
        }
        let lse_vals = |rng: &mut Rng| -> Vec<u8> {
            (0..rn * rh)
                .flat_map(|_| {
                    let x: f32 = if !finite && rng.chance(30) {
                        f32::from_bits(rng.u32())
                    } else {
                        match rng.below(10) {
                            0 => f32::NEG_INFINITY,
                            _ => rng.sym() * 20.0,
                        }
                    };
                    x.to_le_bytes()
                })
                .chain([0u8; 16])
                .collect()
        };
        let lai =
            bufs.add("lse_a", Region::from_bytes(&lse_vals(rng)), if lse_alias { Role::Output } else { Role::Input });
        let lbi = bufs.add("lse_b", Region::from_bytes(&lse_vals(rng)), Role::Input);
        let loi = want_lse_out.then(|| {
            let i = if lse_alias {
                lai
            } else {
                let r = Region::new(rn * rh * 4 + 16);
                r.fill(0xFF);
                bufs.add("lse_out", r, Role::Output)
            };
            let mut m = vec![true; rn * rh * 4 + 16];
            m[rn * rh * 4..].iter_mut().for_each(|x| *x = false);
            bufs.set_view(i, m);
            i
        });
        let args = hip_merge_args {
            struct_size: shape.size,
            num_tokens: nt,
            num_heads: nh,
            reserved_u32,
            o_a: hip_tensor {
                data: ptr_of(&bufs, ai, ptrs[0]) as *const c_void,
                token_stride: la.ts,
                head_stride: la.hs,
            },
            lse_a: ptr_of(&bufs, lai, ptrs[1]) as *const f32,
            o_b: hip_tensor {
                data: ptr_of(&bufs, bi, ptrs[2]) as *const c_void,
                token_stride: lb.ts,
                head_stride: lb.hs,
            },
            lse_b: ptr_of(&bufs, lbi, ptrs[3]) as *const f32,
            o_out: hip_tensor_mut {
                data: ptr_of(&bufs, oi, ptrs[4]) as *mut c_void,
                token_stride: lo.ts,
                head_stride: lo.hs,
            },
            lse_out: loi.map_or(0, |i| ptr_of(&bufs, i, ptrs[5])) as *mut f32,
            reserved,
        };
        let (sr, saddr) = struct_region(&args, shape.tail, shape.misaligned);
        bufs.add("hip_merge_args", sr, Role::Input);
        let null_ctx = plan.faults.is_empty() && self.rng.chance(3);
        if null_ctx {
            plan.fault("ctx_null", NULLP);
        }
        self.log.push(format!(
            "merge n {nt} h {nh} a {la:?} b {lb:?} out {lo:?} alias {alias} lse_out {want_lse_out} lse_alias {lse_alias} \
             finite {finite} ptrs {ptrs:?}"
        ));
        let (a_before, b_before) = (bufs.r(ai).read(), bufs.r(bi).read());
        let (lsea_before, lseb_before) = (bufs.r(lai).read(), bufs.r(lbi).read());
        bufs.snapshot();
        let ctx = if null_ctx { std::ptr::null() } else { self.ctx as *const hip_ctx };
        let aptr = if shape.null { std::ptr::null() } else { saddr as *const hip_merge_args };
        // SAFETY: every pointer spans the extent its declared shape implies.
        let st = unsafe { hip_merge_states(ctx, aptr, std::ptr::null_mut()) };
        self.record("merge", &plan, st);
        plan.judge(st)?;
        let ok = st == HIP_ATTN_STATUS_SUCCESS;
        bufs.check(ok)?;
        self.check_messages(st, ctx)?;
        if !ok || !finite {
            return Ok(());
        }
        // The merge formula, from the inputs as they were before the call.
        let tmp_a = Region::from_bytes(&a_before);
        let tmp_b = Region::from_bytes(&b_before);
        let lse_of = |bytes: &[u8], i: usize| f32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().unwrap()) as f64;
        let o = bufs.r(oi);
        let lse_out = loi.filter(|_| ptrs[5] != Ptr::Null).map(|i| bufs.r(i).read());
        for t in 0..n {
            for hh in 0..h {
                let at = t * h + hh;
                let (xa, xb) = (lse_of(&lsea_before, at), lse_of(&lseb_before, at));
                let mx = xa.max(xb);
                let (want, wl): (Vec<f64>, f64) = if mx == f64::NEG_INFINITY {
                    (vec![0.0; d], f64::NEG_INFINITY)
                } else {
                    let (wa, wb) = ((xa - mx).exp(), (xb - mx).exp());
                    let oa = t * la.ts as usize + hh * la.hs as usize;
                    let ob = t * lb.ts as usize + hh * lb.hs as usize;
                    (
                        (0..d)
                            .map(|i| {
                                (wa * read_elem(&tmp_a, dt, oa + i) as f64 + wb * read_elem(&tmp_b, dt, ob + i) as f64)
                                    / (wa + wb)
                            })
                            .collect(),
                        mx + (wa + wb).ln(),
                    )
                };
                compare_row(
                    dt,
                    o,
                    t * lo.ts as usize + hh * lo.hs as usize,
                    &want,
                    &format!("merge row {t} head {hh}"),
                )?;
                if let Some(l) = &lse_out {
                    let got = lse_of(l, at);
                    if !(got == wl || (got - wl).abs() <= 1e-5 * (1.0 + wl.abs())) {
                        return Err(format!("merge row {t} head {hh}: lse {got} vs {wl}"));
                    }
                }
            }
        }
        Ok(())
    }

    /// Run calls with a NULL context or NULL argument struct.
    fn nulls(&mut self) -> Result<(), String> {
        let mut plan = Plan::default();
        plan.fault("ctx_or_args_null", NULLP);
        let ctx = if self.rng.chance(50) { std::ptr::null() } else { self.ctx as *const hip_ctx };
        let which = self.rng.below(3);
        // SAFETY: NULL pointers are what is tested; nothing else is dereferenced.
        let st = unsafe {
            match which {
                0 => hip_prefill(ctx, std::ptr::null(), std::ptr::null_mut(), 0, std::ptr::null_mut()),
                1 => hip_decode_step(ctx, std::ptr::null(), std::ptr::null_mut(), 0, std::ptr::null_mut()),
                _ => hip_merge_states(ctx, std::ptr::null(), std::ptr::null_mut()),
            }
        };
        self.record("nulls", &plan, st);
        plan.judge(st)?;
        self.check_messages(st, ctx)
    }
}

/// Dense attention of one query over `keys` (element offsets of each key's and value's row), in f64 from the
/// stored (dtype-rounded) values.
fn dense_row(
    dt: DType,
    d: usize,
    scale: f64,
    q: &Region,
    qoff: usize,
    k: &Region,
    v: &Region,
    keys: &[(usize, usize)],
) -> (Vec<f64>, f64) {
    let qv: Vec<f64> = (0..d).map(|i| read_elem(q, dt, qoff + i) as f64).collect();
    let logits: Vec<f64> = keys
        .iter()
        .map(|&(ko, _)| scale * (0..d).map(|i| qv[i] * read_elem(k, dt, ko + i) as f64).sum::<f64>())
        .collect();
    let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = logits.iter().map(|&s| (s - m).exp()).sum();
    let mut out = vec![0f64; d];
    for (&(_, vo), &s) in keys.iter().zip(&logits) {
        let w = (s - m).exp() / sum;
        for (i, o) in out.iter_mut().enumerate() {
            *o += w * read_elem(v, dt, vo + i) as f64;
        }
    }
    (out, m + sum.ln())
}

fn compare_row(dt: DType, o: &Region, off: usize, want: &[f64], what: &str) -> Result<(), String> {
    let tol = match dt {
        DType::Bf16 => 1.6e-2,
        DType::F16 => 2.5e-3,
        DType::F32 => 2e-4,
    };
    for (i, &w) in want.iter().enumerate() {
        let g = read_elem(o, dt, off + i) as f64;
        if !((g - w).abs() <= tol * (1.0 + w.abs())) {
            return Err(format!("{what} element {i}: {g} vs dense {w}"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Running cases

static CURRENT_SEED: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_fatal_signal(sig: libc::c_int) {
    let mut msg = *b"\nhip-attn fuzz: fatal signal in the case HIP_ATTN_FUZZ_SEED=0x0000000000000000\n";
    let seed = CURRENT_SEED.load(Ordering::Relaxed);
    let start = msg.len() - 17;
    for i in 0..16 {
        msg[start + i] = b"0123456789abcdef"[((seed >> (60 - 4 * i)) & 0xF) as usize];
    }
    // SAFETY: write, signal and raise are async-signal-safe.
    unsafe {
        libc::write(2, msg.as_ptr() as *const c_void, msg.len());
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

fn install_signal_handlers() {
    for sig in [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE, libc::SIGABRT] {
        // SAFETY: installs an async-signal-safe handler.
        unsafe { libc::signal(sig, on_fatal_signal as *const () as libc::sighandler_t) };
    }
}

/// Runs one case; Err carries the failure and the case's log.
pub fn run_case(seed: u64) -> Result<Stats, String> {
    CURRENT_SEED.store(seed, Ordering::Relaxed);
    let mut case = Case {
        seed,
        rng: Rng::new(seed),
        ctx: std::ptr::null_mut(),
        cfg: None,
        log: Vec::new(),
        stats: Stats::default(),
        states: HashMap::new(),
        session: None,
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<(), String> {
        case.create()?;
        let ops = case.rng.usize(1, 6);
        for _ in 0..ops {
            if case.ctx.is_null() {
                case.nulls()?;
                continue;
            }
            match case.rng.below(100) {
                0..=34 => case.prefill()?,
                35..=74 => case.decode()?,
                75..=87 => case.merge()?,
                88..=96 => case.sizes()?,
                _ => case.nulls()?,
            }
        }
        Ok(())
    }));
    if !case.ctx.is_null() {
        // SAFETY: created by hip_ctx_create in this case, destroyed once.
        unsafe { hip_ctx_destroy(case.ctx) };
    }
    let failure = match result {
        Ok(Ok(())) => return Ok(case.stats),
        Ok(Err(e)) => e,
        Err(p) => format!(
            "harness panic: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        ),
    };
    Err(format!("HIP_ATTN_FUZZ_SEED=0x{seed:016x}: {failure}\n  case log:\n    {}", case.log.join("\n    ")))
}

/// Seeds of tests/fuzz-corpus/seeds.txt: one per line, `0x...` or decimal, `#` starts a comment.
pub fn corpus() -> Vec<(u64, String)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus/seeds.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter_map(|line| {
            let (val, comment) = line.split_once('#').unwrap_or((line, ""));
            let val = val.trim();
            if val.is_empty() {
                return None;
            }
            let seed = parse_seed(val).unwrap_or_else(|| panic!("bad corpus line {line:?}"));
            Some((seed, comment.trim().to_string()))
        })
        .collect()
}

pub fn parse_seed(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn say(line: &str) {
    // libtest captures print!/eprint!; a direct write to stderr shows in CI logs.
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The whole run: the seed given by HIP_ATTN_FUZZ_SEED alone, or the corpus and then random cases from a
/// fixed master seed (HIP_ATTN_FUZZ_MASTER overrides; "time" picks one from the clock) until
/// HIP_ATTN_FUZZ_SECONDS (default `default_secs`) have passed. Panics listing the failing seeds.
pub fn main_entry(default_secs: f64) {
    if std::env::var("HIP_ATTN_FUZZ_GUARD").is_ok_and(|v| v == "0") {
        GUARD.store(0, Ordering::Relaxed);
    }
    install_signal_handlers();
    if let Some(seed) = std::env::var("HIP_ATTN_FUZZ_SEED").ok().and_then(|s| parse_seed(&s)) {
        match run_case(seed) {
            Ok(s) => {
                say(&format!("fuzz: HIP_ATTN_FUZZ_SEED=0x{seed:016x} passed ({} calls: {:?})", s.calls, s.by_label))
            }
            Err(e) => panic!("{e}"),
        }
        return;
    }
    let secs: f64 = std::env::var("HIP_ATTN_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default_secs);
    let master = match std::env::var("HIP_ATTN_FUZZ_MASTER").ok() {
        Some(s) if s == "time" => {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        }
        Some(s) => parse_seed(&s).expect("HIP_ATTN_FUZZ_MASTER"),
        None => 0x4869_5031,
    };
    let cover = std::env::var("HIP_ATTN_FUZZ_COVER").is_ok();
    let start = Instant::now();
    let budget = Duration::from_secs_f64(secs);
    let mut total = Stats::default();
    let mut failures = Vec::new();
    let mut first_seen: BTreeMap<String, u64> = BTreeMap::new();
    let corpus = corpus();
    let mut cases = 0usize;
    let seeds = corpus.iter().map(|c| c.0).chain((0u64..).map(|i| mix(master.wrapping_add(i))));
    // Under valgrind, name each case before it runs so that an error report follows its seed.
    let trace = std::env::var_os("HIP_ATTN_FUZZ_TRACE").is_some();
    for (n, seed) in seeds.enumerate() {
        if n >= corpus.len() && (start.elapsed() >= budget || failures.len() >= 5) {
            break;
        }
        cases += 1;
        if trace {
            say(&format!("fuzz case HIP_ATTN_FUZZ_SEED=0x{seed:016x}"));
        }
        match run_case(seed) {
            Ok(s) => {
                if cover {
                    for k in s.by_label.keys() {
                        first_seen.entry(k.clone()).or_insert(seed);
                    }
                }
                total.merge(&s);
            }
            Err(e) => {
                say(&format!("fuzz FAILURE {e}"));
                failures.push(e.lines().next().unwrap().to_string());
            }
        }
    }
    say(&format!(
        "fuzz: {cases} cases ({} from the corpus), {} calls, {} dense checks in {:.1}s (master seed 0x{master:x}); statuses {:?}",
        corpus.len(),
        total.calls,
        total.dense_checks,
        start.elapsed().as_secs_f64(),
        total.by_status
    ));
    if cover {
        for (k, s) in &first_seen {
            say(&format!("0x{s:016x}  # {k} ({} calls)", total.by_label[k]));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing fuzz case(s); replay one with the seed shown:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
