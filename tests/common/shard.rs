//! Sharded decode (docs/ALGORITHM.md §8) through the C API: each shard's step on its own stream, the partials
//! merged with hip_merge_states, and the direct reference (`hip_attn::cpu::shard`) for the same boundaries.
//! Shared by tests/shard.rs (CPU) and tests/gpu.rs.

use super::*;
use hip_attn::config::Config;
use hip_attn::cpu::shard::{sharded_decode, Sequence};

/// A batch of sequences split at the same shard starts: every shard but the last has the same length in every
/// sequence (one key_offset per call), the last ends at each sequence's own length.
pub struct Sharded {
    pub dt: DType,
    pub hq: usize,
    pub hkv: usize,
    pub d: usize,
    /// Shard starts c_0 = 0 < c_1 < ...
    pub starts: Vec<usize>,
    /// Whole-sequence keys and values, [T_b, hkv, d] each.
    pub k: Vec<Tensor>,
    pub v: Vec<Tensor>,
    /// The step's queries [batch, hq, d].
    pub q: Tensor,
    /// Paged caches with this page size (None: contiguous).
    pub page_size: Option<usize>,
}

/// One shard's cache, lengths and outputs in backend memory; `state` persists across steps.
pub struct ShardBufs {
    pub cache: CacheBufs,
    pub lens: Buf,
    pub capacity: usize,
    pub state: Buf,
    pub q: Buf,
    pub o: Buf,
    pub lse: Buf,
    pub ws: Buf,
    pub ws_bytes: usize,
}

impl Sharded {
    pub fn batch(&self) -> usize {
        self.k.len()
    }

    /// Shard `i`'s range of sequence `b`: [start, end).
    pub fn range(&self, i: usize, b: usize) -> (usize, usize) {
        let end = self.starts.get(i + 1).copied().unwrap_or(self.k[b].rows);
        (self.starts[i], end)
    }

    /// Uploads shard `i`'s caches (its keys only, in its own positions) with a zeroed mask state.
    pub fn upload(&self, mem: &dyn Mem, ctx: &Ctx, rng: &mut Rng, i: usize) -> ShardBufs {
        let cut = |t: &Tensor, b: usize| {
            let (a, z) = self.range(i, b);
            let row = t.heads * t.d;
            Tensor { rows: z - a, heads: t.heads, d: t.d, pad: 0, data: t.data[a * row..z * row].to_vec() }
        };
        let k: Vec<Tensor> = (0..self.batch()).map(|b| cut(&self.k[b], b)).collect();
        let v: Vec<Tensor> = (0..self.batch()).map(|b| cut(&self.v[b], b)).collect();
        let lens: Vec<i32> = k.iter().map(|t| t.rows as i32).collect();
        let capacity = k.iter().map(|t| t.rows).max().unwrap();
        let cache = Cache { k, v, page_size: self.page_size, capacity }.upload(mem, self.dt, rng);
        let batch = self.batch();
        let ws_bytes = ctx.decode_ws(batch as u32, capacity as u32);
        ShardBufs {
            cache,
            lens: mem.upload(&i32_bytes(&lens)),
            capacity,
            state: mem.zeroed(ctx.state_size(batch as u32)),
            q: mem.upload(&self.q.bytes(self.dt)),
            o: mem.poisoned(self.q.rows * self.q.row_stride() * self.dt.size()),
            lse: mem.poisoned(batch * self.hq * 4),
            ws: mem.poisoned(ws_bytes.max(16)),
            ws_bytes,
        }
    }

    /// The hip_decode_args of shard `i`.
    pub fn args(&self, i: usize, s: &ShardBufs) -> hip_decode_args {
        let mut a = decode_args(&self.q, &s.q, &s.cache, &s.lens, s.capacity, &s.state, &s.o, &s.lse);
        a.key_offset = self.starts[i] as u32;
        a.shard_flags = if i + 1 < self.starts.len() { HIP_ATTN_SHARD_NOT_LAST } else { 0 };
        a
    }

    /// Queues shard `i`'s decode step on `stream` (nothing is synchronized).
    pub fn step(&self, ctx: &Ctx, i: usize, s: &ShardBufs, stream: *mut c_void) -> Result<(), (hip_status, String)> {
        let args = self.args(i, s);
        // SAFETY: every buffer spans what the args describe and lives in `s` until after the caller syncs.
        let st = unsafe { hip_decode_step(ctx.0, &args, s.ws.addr as *mut c_void, s.ws_bytes, stream) };
        if st != hip_status::HIP_ATTN_STATUS_SUCCESS {
            return Err((st, last_error()));
        }
        Ok(())
    }

    /// Merges the shards' partials (already computed) into shard 0's buffers, in shard order, with
    /// hip_merge_states on `mem`'s stream; returns the merged (o, lse) as [batch, hq, d] and [batch, hq].
    pub fn merge(&self, mem: &dyn Mem, ctx: &Ctx, shards: &[ShardBufs]) -> DecodeOut {
        let q = &self.q;
        let view = |b: &Buf| hip_tensor {
            data: b.addr as *const c_void,
            token_stride: q.row_stride() as i64,
            head_stride: q.d as i64,
        };
        let (acc, acc_lse) = (&shards[0].o, &shards[0].lse);
        for s in &shards[1..] {
            let args = hip_merge_args {
                struct_size: std::mem::size_of::<hip_merge_args>() as u32,
                num_tokens: self.batch() as u32,
                num_heads: self.hq as u32,
                reserved_u32: 0,
                o_a: view(acc),
                lse_a: acc_lse.addr as *const f32,
                o_b: view(&s.o),
                lse_b: s.lse.addr as *const f32,
                o_out: hip_tensor_mut {
                    data: acc.addr as *mut c_void,
                    token_stride: q.row_stride() as i64,
                    head_stride: q.d as i64,
                },
                lse_out: acc_lse.addr as *mut f32,
                reserved: [0; 2],
            };
            // SAFETY: the buffers span [batch, hq, d] (and [batch, hq] f32); o_out and lse_out are o_a and lse_a
            // themselves, which the merge allows.
            let st = unsafe { hip_merge_states(ctx.0, &args, mem.stream()) };
            assert_eq!(st, hip_status::HIP_ATTN_STATUS_SUCCESS, "{}", last_error());
        }
        mem.sync();
        DecodeOut { o: q.unpack(self.dt, &mem.download(acc)), lse: f32s(&mem.download(acc_lse)) }
    }

    /// The reference of §8 for every sequence: (o [batch, hq, d], lse [batch, hq]).
    pub fn reference(&self, cfg: &Config) -> (Vec<f32>, Vec<f32>) {
        let (mut o, mut lse) = (Vec::new(), Vec::new());
        for b in 0..self.batch() {
            let q: Vec<f32> = (0..self.hq).flat_map(|h| self.q.at(b, h).to_vec()).collect();
            let seq = Sequence { q: &q, k: &self.k[b].data, v: &self.v[b].data };
            let (ob, lb) = sharded_decode(cfg, &seq, &self.starts).unwrap();
            o.extend(ob);
            lse.extend(lb);
        }
        (o, lse)
    }
}
