//! Inputs: counter-based random bf16 tensors that the host can regenerate slice by slice, the shuffled page
//! pool of a paged KV cache, and 16-byte-aligned host memory for the CPU backend.

use half::bf16;
use std::ffi::c_void;

use crate::workloads::{D, PAGE};
pub(crate) use testkit::{mix64, Rng, GOLDEN};

/// Generator tags of the inputs (see `Noise`).
pub(crate) const TAG_Q: u64 = 1;
pub(crate) const TAG_K: u64 = 2;
pub(crate) const TAG_V: u64 = 3;
pub(crate) const TAG_CACHE_K: u64 = 4;
pub(crate) const TAG_CACHE_V: u64 = 5;
pub(crate) const TAG_PAGES: u64 = 6;
pub(crate) const TAG_DECODE_Q: u64 = 1000; // + input set index
                                           // ---------------------------------------------------------------------------------------------------------------
                                           // Random inputs
                                           // ---------------------------------------------------------------------------------------------------------------

/// Counter-based random numbers: element i of input `tag` is a pure function of (seed, tag, i), so the host can
/// regenerate any slice of a multi-GiB device tensor for the CPU check without keeping a copy, and generation
/// parallelises trivially.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Noise(u64);

impl Noise {
    pub(crate) fn new(seed: u64, tag: u64) -> Noise {
        Noise(mix64(seed ^ mix64(tag.wrapping_mul(GOLDEN))))
    }
    /// Uniform in [-1, 1), rounded to bf16 (returned as bits).
    #[inline]
    pub(crate) fn bf16(&self, i: usize) -> u16 {
        let z = mix64(self.0.wrapping_add((i as u64).wrapping_add(1).wrapping_mul(GOLDEN)));
        let x = (z >> 40) as f32 * (2.0 / (1u64 << 24) as f32) - 1.0;
        bf16::from_f32(x).to_bits()
    }
    /// dst[i] = element first + i.
    pub(crate) fn fill(&self, first: usize, dst: &mut [u16]) {
        for (i, x) in dst.iter_mut().enumerate() {
            *x = self.bf16(first + i);
        }
    }
}

/// Calls f(row, dst) for every `row`-element row of `out`, spread over the host's cores.
pub(crate) fn par_rows(out: &mut [u16], row: usize, f: impl Fn(usize, &mut [u16]) + Sync) {
    let rows = out.len() / row;
    if rows == 0 {
        return;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(rows);
    let per = rows.div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        for (c, chunk) in out.chunks_mut(per * row).enumerate() {
            s.spawn(move || {
                for (r, dst) in chunk.chunks_mut(row).enumerate() {
                    f(c * per + r, dst);
                }
            });
        }
    });
}

/// Row r of a token-major [tokens, heads, D] input: `heads * D` consecutive elements.
pub(crate) fn token_rows(noise: Noise, heads: usize) -> impl Fn(usize, &mut [u16]) + Sync {
    move |r, dst| noise.fill(r * heads * D, dst)
}

/// The page table [batch, pages_per_seq] of a pool of batch * pages_per_seq pages, and each page's owner
/// (sequence, logical page). An engine's page pool hands pages out in no particular order: shuffled, so that
/// consecutive pages of a sequence are not adjacent in memory.
pub(crate) fn shuffled_pages(batch: usize, pages_per_seq: usize, seed: u64) -> (Vec<i32>, Vec<(usize, usize)>) {
    let num_pages = batch * pages_per_seq;
    let mut ids: Vec<usize> = (0..num_pages).collect();
    let mut rng = Rng::from_state(seed ^ TAG_PAGES);
    for i in (1..ids.len()).rev() {
        ids.swap(i, rng.below(i + 1));
    }
    let mut table = vec![0i32; num_pages];
    let mut owner = vec![(0usize, 0usize); num_pages];
    for (slot, &id) in ids.iter().enumerate() {
        table[slot] = id as i32;
        owner[id] = (slot / pages_per_seq, slot % pages_per_seq);
    }
    (table, owner)
}

/// Row r of a paged pool [pages * PAGE, hkv, D]: token (r % PAGE) of the page, which belongs to (sequence,
/// logical page) `owner[r / PAGE]`; the values are those of the logical [batch, cap, hkv, D] tensor.
pub(crate) fn pool_rows<'a>(
    noise: Noise,
    owner: &'a [(usize, usize)],
    cap: usize,
    hkv: usize,
) -> impl Fn(usize, &mut [u16]) + Sync + 'a {
    move |r, dst| {
        let (b, pg) = owner[r / PAGE];
        let t = pg * PAGE + r % PAGE;
        noise.fill((b * cap + t) * hkv * D, dst)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Host memory for the CPU backend
// ---------------------------------------------------------------------------------------------------------------

/// Host memory with the 16-byte alignment the C API requires of tensors and buffers.
pub(crate) struct HostBuf {
    pub(crate) v: Vec<u128>,
    pub(crate) bytes: usize,
}

impl HostBuf {
    pub(crate) fn new(bytes: usize, fill: u8) -> HostBuf {
        let word = u128::from_ne_bytes([fill; 16]);
        HostBuf { v: vec![word; bytes.div_ceil(16).max(1)], bytes }
    }
    pub(crate) fn from_i32s(xs: &[i32]) -> HostBuf {
        let mut b = HostBuf::new(xs.len() * 4, 0);
        b.i32s_mut().copy_from_slice(xs);
        b
    }
    pub(crate) fn ptr(&self) -> *const c_void {
        self.v.as_ptr() as *const c_void
    }
    pub(crate) fn mut_ptr(&mut self) -> *mut c_void {
        self.v.as_mut_ptr() as *mut c_void
    }
    pub(crate) fn u16s(&self) -> &[u16] {
        // SAFETY: the Vec holds at least `bytes` initialised bytes, u128 alignment satisfies u16's, and any bit
        // pattern is a valid u16.
        unsafe { std::slice::from_raw_parts(self.v.as_ptr() as *const u16, self.bytes / 2) }
    }
    pub(crate) fn u16s_mut(&mut self) -> &mut [u16] {
        // SAFETY: as in u16s, through the unique borrow of self.
        unsafe { std::slice::from_raw_parts_mut(self.v.as_mut_ptr() as *mut u16, self.bytes / 2) }
    }
    pub(crate) fn i32s(&self) -> &[i32] {
        // SAFETY: as in u16s, for i32.
        unsafe { std::slice::from_raw_parts(self.v.as_ptr() as *const i32, self.bytes / 4) }
    }
    pub(crate) fn i32s_mut(&mut self) -> &mut [i32] {
        // SAFETY: as in u16s_mut, for i32.
        unsafe { std::slice::from_raw_parts_mut(self.v.as_mut_ptr() as *mut i32, self.bytes / 4) }
    }
}

pub(crate) fn to_f32(bits: &[u16]) -> Vec<f32> {
    bits.iter().map(|&b| bf16::from_bits(b).to_f32()).collect()
}
