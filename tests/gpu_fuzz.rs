//! Hostile device-side index data (issue 12): a generator of small prefill and decode batches (contiguous and
//! paged, three configurations) in which one sequence's index data living in backend memory is garbage:
//! cu_seqlens (negative, past the total, decreasing, Tq > Tk), seqlens_k (0, negative, above max_seqlen_k),
//! page-table entries (negative, >= num_pages), mask-state records (random words, the magic with garbage e / count
//! / blocks, another configuration's fingerprint), plus harmless garbage the library must not read (page-table
//! entries past a sequence's pages, records without the magic) and clean batches.
//!
//! With a GPU, each case runs on the CUDA backend: the call returns (a watchdog fails the test when a case takes
//! longer than HIP_ATTN_GPU_FUZZ_CASE_S seconds, default 20); the next run call on the context reports
//! BAD_INDEX exactly when the case was bad; the valid sequences match the CPU reference; the rows of a skipped
//! sequence are zeros with LSE -inf (or untouched), and a record that is stale or foreign is searched anew.
//! `scripts/gpu-run.sh fuzz` runs it under compute-sanitizer memcheck. On every machine the same cases also run on
//! the CPU backend, which must answer every bad case with BAD_INDEX at once and write nothing.
//!
//! Seed and size: HIP_ATTN_GPU_FUZZ_SEED (default 12; printed), HIP_ATTN_GPU_FUZZ_CASES (default 200).
mod common;
use common::*;
use hip_attn::config::validate;
use hip_attn::hip_status::*;
use hip_attn::plan;
use hip_attn::tensor::DType;
use hip_attn::*;
use std::ffi::c_void;
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn gpu() -> Result<gpu_mem::Gpu, String> {
    gpu_mem::open(Box::new(()))
}

// ---------- configurations ----------
/// (dtype, head_dim, hq, hkv, mask sharing, k, bq, bk, sink, window, refresh)
type Shape = (DType, u32, u32, u32, u32, u32, u32, u32, u32, u32, u32);
const CONFIGS: [Shape; 3] = [
    (DType::Bf16, 64, 4, 2, 1, 32, 16, 2, 4, 16, 2),
    (DType::F16, 128, 4, 1, 2, 24, 32, 4, 4, 24, 1),
    (DType::Bf16, 64, 2, 2, 1, 16, 8, 1, 0, 8, 3),
];

fn hip_cfg(s: &Shape, backend: u32) -> hip_config {
    let mut c = config(s.0, s.1, s.2, s.3);
    (c.mask_sharing, c.k, c.bq, c.bk, c.sink, c.window, c.refresh) = (s.4, s.5, s.6, s.7, s.8, s.9, s.10);
    c.backend = backend;
    c
}

// ---------- cases ----------
#[derive(Clone, Debug)]
#[allow(dead_code)] // (`why` and `what` are read through Debug, in each case's description)
enum Fault {
    None,
    /// cu_seqlens_q (q = true) or cu_seqlens_k entry i set to v.
    Cu {
        q: bool,
        i: usize,
        v: i32,
        why: &'static str,
    },
    SeqlensK {
        b: usize,
        v: i32,
    },
    /// Page-table entry `entry` of sequence b set to v; `used`: the sequence reads that page.
    Page {
        b: usize,
        entry: usize,
        v: i32,
        used: bool,
    },
    /// Record (b, mh) replaced by `words`; `bad`: the magic and this configuration's fingerprint with a header that
    /// does not fit, or another configuration's fingerprint; otherwise no magic (no mask yet).
    Record {
        b: usize,
        mh: usize,
        words: Vec<i32>,
        bad: bool,
        what: &'static str,
    },
}

impl Fault {
    fn bad(&self) -> bool {
        match self {
            Fault::None => false,
            Fault::Cu { .. } | Fault::SeqlensK { .. } => true,
            Fault::Page { used, .. } => *used,
            Fault::Record { bad, .. } => *bad,
        }
    }
}

struct Case {
    cfg: usize,
    /// Prefill: (tq, tk) per sequence; decode: seqlens_k per sequence.
    tq: Vec<usize>,
    tk: Vec<usize>,
    prefill: bool,
    page: Option<usize>,
    /// decode: every record written by a clean step first (so that records are reused), else zero
    warm: bool,
    fault: Fault,
}

fn gen_case(rng: &mut Rng, cfgs: &[hip_attn::config::Config]) -> Case {
    let cfg = rng.below(CONFIGS.len());
    let c = &cfgs[cfg];
    let batch = 2 + rng.below(3);
    let prefill = rng.below(5) < 2;
    let page = if prefill || rng.below(2) == 0 { None } else { Some([1, 3, 8, 16][rng.below(4)]) };
    let tk: Vec<usize> = (0..batch)
        .map(|_| {
            let most = if rng.below(3) == 0 { 24 } else { 180 };
            1 + rng.below(most)
        })
        .collect();
    let tq: Vec<usize> = tk
        .iter()
        .map(|&t| {
            if !prefill {
                1
            } else if rng.below(2) == 0 {
                t
            } else {
                1 + rng.below(t)
            }
        })
        .collect();
    let b = rng.below(batch);
    let kind = rng.below(10);
    let fault = if kind == 0 {
        Fault::None
    } else if prefill {
        let q = rng.below(2) == 0;
        let lens = if q { &tq } else { &tk };
        let cu = Problem::cu(lens);
        let total = *cu.last().unwrap();
        let i = rng.below(batch + 1);
        let (v, why) = match rng.below(5) {
            0 => (-1 - rng.below(1000) as i32, "negative"),
            1 => (total + 1 + rng.below(1000) as i32, "past the total"),
            2 if i > 0 => (cu[i - 1] - 1 - rng.below(cu[i - 1] as usize + 1) as i32, "decreasing"),
            3 if q && i > 0 && i < batch => {
                // The boundary moves up inside [cu[i], cu[i+1]]: sequence i-1 gets more queries than keys.
                let room = (cu[i + 1] - cu[i]) as usize;
                let extra = tk[i - 1].saturating_sub(tq[i - 1]) + 1;
                if extra <= room {
                    (cu[i] + extra as i32, "Tq > Tk")
                } else {
                    (i32::MIN + rng.below(1000) as i32, "random")
                }
            }
            _ => (rng.next_u64() as i32, "random"),
        };
        Fault::Cu { q, i, v, why }
    } else if kind <= 3 {
        let max_k = tk.iter().max().unwrap();
        let v = match rng.below(4) {
            0 => 0,
            1 => -1 - rng.below(1 << 20) as i32,
            2 => *max_k as i32 + 1 + rng.below(100) as i32,
            _ => (rng.next_u64() as i32).min(-1),
        };
        Fault::SeqlensK { b, v }
    } else if kind <= 5 && page.is_some() {
        let ps = page.unwrap();
        let used = tk[b].div_ceil(ps);
        let per_seq = tk.iter().max().unwrap().div_ceil(ps);
        let past = used < per_seq && rng.below(4) == 0;
        // The last used page holds the new token, which every step attends: always read.
        let entry = if past { used + rng.below(per_seq - used) } else { used - 1 };
        let v = match rng.below(3) {
            0 => -1 - rng.below(1000) as i32,
            1 => (batch * per_seq + 3 + rng.below(1000)) as i32, // num_pages = batch * per_seq + 3
            _ => rng.next_u64() as i32 | i32::MIN,
        };
        Fault::Page { b, entry, v, used: !past }
    } else {
        let mh = rng.below(c.mask_heads());
        let n = plan::state_ints(c);
        let mut words: Vec<i32> = (0..n).map(|_| rng.next_u64() as i32).collect();
        let ours = plan::state_fingerprint(c);
        let (bad, what) = match rng.below(4) {
            0 => {
                if words[0] == plan::STATE_MAGIC {
                    words[0] ^= 1;
                }
                (false, "random words")
            }
            1 => {
                words[plan::STATE_MAGIC_IDX] = plan::STATE_MAGIC;
                words[plan::STATE_FPRINT_IDX] = ours ^ (1 + rng.below(1000) as i32);
                (true, "another configuration's fingerprint")
            }
            _ => {
                // Garbage that the stale-record check must catch: e past the sequence, or count outside [0, Kb].
                words[plan::STATE_MAGIC_IDX] = plan::STATE_MAGIC;
                words[plan::STATE_FPRINT_IDX] = ours;
                words[plan::STATE_STEP_IDX] = 1;
                match rng.below(3) {
                    0 => words[plan::STATE_E_IDX] = (tk[b] + c.sink + 1 + rng.below(1000)) as i32,
                    1 => {
                        words[plan::STATE_E_IDX] = c.sink as i32;
                        words[plan::STATE_COUNT_IDX] = (c.kb() + 1 + rng.below(1000)) as i32;
                    }
                    _ => {
                        words[plan::STATE_E_IDX] = c.sink as i32;
                        words[plan::STATE_COUNT_IDX] = -1 - rng.below(1000) as i32;
                    }
                }
                (true, "stale header")
            }
        };
        Fault::Record { b, mh, words, bad, what }
    };
    let warm = !prefill && rng.below(2) == 0;
    Case { cfg, tq, tk, prefill, page, warm, fault }
}

/// The rule of cuda/common.cuh prefill_seq: which sequences the kernels compute under (possibly bad) bounds.
fn prefill_ok(cq: &[i32], ck: &[i32], total_q: i32, total_k: i32, maxq: i32, maxk: i32) -> Vec<bool> {
    let n = cq.len() - 1;
    let ordered = (0..n).all(|i| cq[i] <= cq[i + 1] && ck[i] <= ck[i + 1]);
    (0..n)
        .map(|b| {
            let (qa, qb, ka, kb) = (cq[b], cq[b + 1], ck[b], ck[b + 1]);
            let (tq, tk) = (qb as i64 - qa as i64, kb as i64 - ka as i64);
            ordered
                && qa >= 0
                && qb >= qa
                && qb <= total_q
                && cq[0] == 0
                && ck[0] == 0
                && ka >= 0
                && kb >= ka
                && kb <= total_k
                && cq[n] <= total_q
                && ck[n] <= total_k
                && tq <= maxq as i64
                && tk <= maxk as i64
                && tq <= tk
        })
        .collect()
}

// ---------- one call, raw ----------
struct Raw {
    st: hip_status,
    msg: String,
    o: Vec<u8>,
    lse: Vec<u8>,
    state: Vec<u8>,
}

/// Everything one case needs in host form, and runs of it on a backend.
struct Data {
    dt: DType,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    cq: Vec<i32>,
    ck: Vec<i32>,
    maxq: usize,
    maxk: usize,
    /// decode: per-sequence caches
    kc: Vec<Tensor>,
    vc: Vec<Tensor>,
}

fn run_prefill_raw(mem: &dyn Mem, ctx: &Ctx, d: &Data, cq: &[i32], ck: &[i32]) -> Raw {
    let batch = cq.len() - 1;
    let (qb, kb, vb) = (mem.upload(&d.q.bytes(d.dt)), mem.upload(&d.k.bytes(d.dt)), mem.upload(&d.v.bytes(d.dt)));
    let ob = mem.poisoned(d.q.rows * d.q.row_stride() * d.dt.size());
    let lseb = mem.poisoned(d.q.rows * d.q.heads * 4);
    let (cqb, ckb) = (mem.upload(&i32_bytes(cq)), mem.upload(&i32_bytes(ck)));
    let ws_bytes = ctx.prefill_ws(batch as u32, d.q.rows as u32, d.maxq as u32, d.maxk as u32);
    let ws = mem.poisoned(ws_bytes.max(16));
    let state = mem.poisoned(ctx.state_size(batch as u32));
    let args = hip_prefill_args {
        struct_size: std::mem::size_of::<hip_prefill_args>() as u32,
        batch_size: batch as u32,
        total_q: d.q.rows as u32,
        total_k: d.k.rows as u32,
        max_seqlen_q: d.maxq as u32,
        max_seqlen_k: d.maxk as u32,
        q: d.q.view(&qb),
        k: d.k.view(&kb),
        v: d.v.view(&vb),
        o: hip_tensor_mut {
            data: ob.addr as *mut c_void,
            token_stride: d.q.row_stride() as i64,
            head_stride: d.q.d as i64,
        },
        cu_seqlens_q: cqb.addr as *const i32,
        cu_seqlens_k: ckb.addr as *const i32,
        lse: lseb.addr as *mut f32,
        mask_state_out: state.addr as *mut c_void,
        reserved: [0; 4],
    };
    // SAFETY: every buffer spans what the args describe and lives until after the sync below.
    let st = unsafe { hip_prefill(ctx.0, &args, ws.addr as *mut c_void, ws_bytes, mem.stream()) };
    let msg = if st == HIP_ATTN_STATUS_SUCCESS { String::new() } else { last_error() };
    mem.sync();
    Raw { st, msg, o: mem.download(&ob), lse: mem.download(&lseb), state: mem.download(&state) }
}

/// A decode step over the case's caches with `lens` as seqlens_k (the caches are laid out for the true lengths)
/// and the page table edited by `edit`, from the mask state `state0`.
#[allow(clippy::too_many_arguments)]
fn run_decode_raw(
    mem: &dyn Mem,
    ctx: &Ctx,
    d: &Data,
    page: Option<usize>,
    lens: &[i32],
    edit: Option<(usize, usize, i32)>,
    state0: &[u8],
    seed: u64,
) -> Raw {
    let cache = Cache { k: d.kc.clone(), v: d.vc.clone(), page_size: page, capacity: d.maxk };
    let mut bufs = cache.upload(mem, d.dt, &mut Rng::new(seed)); // the same page shuffle on every backend
    let _keep = bufs.page_table.as_ref().zip(edit).map(|(pt, (b, entry, v))| {
        let mut table = i32s(&mem.download(pt));
        table[b * bufs.desc.page_table_stride as usize + entry] = v;
        let nb = mem.upload(&i32_bytes(&table));
        bufs.desc.page_table = nb.addr as *const i32;
        nb
    });
    let qb = mem.upload(&d.q.bytes(d.dt));
    let ob = mem.poisoned(d.q.rows * d.q.row_stride() * d.dt.size());
    let lseb = mem.poisoned(d.q.rows * d.q.heads * 4);
    let lensb = mem.upload(&i32_bytes(lens));
    let state = mem.upload(state0);
    let args = decode_args(&d.q, &qb, &bufs, &lensb, d.maxk, &state, &ob, &lseb);
    let ws_bytes = ctx.decode_ws(lens.len() as u32, d.maxk as u32);
    let ws = mem.poisoned(ws_bytes.max(16));
    // SAFETY: every buffer spans what the args describe and lives until after the sync below.
    let st = unsafe { hip_decode_step(ctx.0, &args, ws.addr as *mut c_void, ws_bytes, mem.stream()) };
    let msg = if st == HIP_ATTN_STATUS_SUCCESS { String::new() } else { last_error() };
    mem.sync();
    Raw { st, msg, o: mem.download(&ob), lse: mem.download(&lseb), state: mem.download(&state) }
}

/// A clean one-sequence decode on `ctx`: reports what earlier calls left in the device error flag.
fn probe(mem: &dyn Mem, ctx: &Ctx, s: &Shape) -> (hip_status, String) {
    let mut rng = Rng::new(7);
    let (dt, hd, hq, hkv) = (s.0, s.1 as usize, s.2 as usize, s.3 as usize);
    let kc = vec![Tensor::random(&mut rng, dt, 8, hkv, hd, 0, 1.0)];
    let d = Data {
        dt,
        q: Tensor::random(&mut rng, dt, 1, hq, hd, 0, 1.0),
        k: kc[0].clone(),
        v: kc[0].clone(),
        cq: vec![],
        ck: vec![],
        maxq: 1,
        maxk: 8,
        kc: kc.clone(),
        vc: kc,
    };
    let r = run_decode_raw(mem, ctx, &d, None, &[8], None, &vec![0u8; ctx.state_size(1)], 1);
    (r.st, r.msg)
}

fn poison_or_skipped(o: &[f32], lse: f32) -> bool {
    (o.iter().all(|x| x.is_nan()) && lse.is_nan()) || (o.iter().all(|&x| x == 0.0) && lse == f32::NEG_INFINITY)
}

// ---------- the test ----------
#[test]
fn hostile_device_index_data() {
    let seed: u64 = std::env::var("HIP_ATTN_GPU_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    let cases: usize = std::env::var("HIP_ATTN_GPU_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    let limit = Duration::from_secs_f64(
        std::env::var("HIP_ATTN_GPU_FUZZ_CASE_S").ok().and_then(|s| s.parse().ok()).unwrap_or(20.0),
    );
    eprintln!("gpu_fuzz: HIP_ATTN_GPU_FUZZ_SEED={seed} HIP_ATTN_GPU_FUZZ_CASES={cases}");
    let dev = match gpu() {
        Ok(g) => Some(g),
        Err(why) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "gpu_fuzz: no GPU part ({why}); the CPU backend runs every case");
            None
        }
    };
    let cfgs: Vec<_> = CONFIGS
        .iter()
        // SAFETY: no cache-dir pointer in these configs.
        .map(|s| unsafe { validate(&hip_cfg(s, hip_backend::HIP_ATTN_BACKEND_CPU as u32)) }.unwrap().0)
        .collect();
    let cpu: Vec<Ctx> =
        CONFIGS.iter().map(|s| Ctx::new(&hip_cfg(s, hip_backend::HIP_ATTN_BACKEND_CPU as u32)).unwrap()).collect();
    let cuda: Vec<Ctx> = match &dev {
        Some(_) => CONFIGS
            .iter()
            .map(|s| {
                Ctx::new(&hip_cfg(s, hip_backend::HIP_ATTN_BACKEND_CUDA as u32)).unwrap_or_else(|e| panic!("{e:?}"))
            })
            .collect(),
        None => vec![],
    };

    // The watchdog: a case that has not finished within `limit` fails the whole test (a hung kernel would
    // otherwise hang it).
    let (tick, ticks) = mpsc::channel::<Option<usize>>();
    let watchdog = std::thread::spawn(move || {
        let mut current = None;
        loop {
            match ticks.recv_timeout(limit) {
                Ok(Some(i)) => current = Some(i),
                Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    eprintln!("gpu_fuzz: case {current:?} did not finish within {limit:?}: failing");
                    std::process::exit(101);
                }
            }
        }
    });

    let mut rng = Rng::new(seed);
    let (mut bad_cases, mut cpu_reports, mut gpu_reports, mut ties, mut slowest) = (0, 0, 0, 0, Duration::ZERO);
    for n in 0..cases {
        tick.send(Some(n)).unwrap();
        let t0 = Instant::now();
        let case = gen_case(&mut rng, &cfgs);
        let what = format!(
            "case {n} (cfg {}, {}, page {:?}, tq {:?}, tk {:?}, warm {}): {:?}",
            case.cfg,
            if case.prefill { "prefill" } else { "decode" },
            case.page,
            case.tq,
            case.tk,
            case.warm,
            case.fault
        );
        let c = &cfgs[case.cfg];
        let data_seed = rng.next_u64();
        let mut drng = Rng::new(data_seed);
        let dt = c.dtype;
        let (hq, hkv, hd) = (c.num_q_heads, c.num_kv_heads, c.head_dim);
        let batch = case.tk.len();
        let data = if case.prefill {
            let (nq, nk) = (case.tq.iter().sum(), case.tk.iter().sum());
            Data {
                dt,
                q: Tensor::random(&mut drng, dt, nq, hq, hd, 0, 1.0),
                k: Tensor::random(&mut drng, dt, nk, hkv, hd, 0, 1.0),
                v: Tensor::random(&mut drng, dt, nk, hkv, hd, 0, 1.0),
                cq: Problem::cu(&case.tq),
                ck: Problem::cu(&case.tk),
                maxq: *case.tq.iter().max().unwrap(),
                maxk: *case.tk.iter().max().unwrap(),
                kc: vec![],
                vc: vec![],
            }
        } else {
            let cap = *case.tk.iter().max().unwrap();
            let kc: Vec<Tensor> = (0..batch).map(|_| Tensor::random(&mut drng, dt, cap, hkv, hd, 0, 1.0)).collect();
            let vc: Vec<Tensor> = (0..batch).map(|_| Tensor::random(&mut drng, dt, cap, hkv, hd, 0, 1.0)).collect();
            let q = Tensor::random(&mut drng, dt, batch, hq, hd, 0, 1.0);
            Data { dt, k: q.clone(), v: q.clone(), q, cq: vec![], ck: vec![], maxq: 1, maxk: cap, kc, vc }
        };
        let bad = case.fault.bad();
        bad_cases += bad as usize;
        let rec_bytes = plan::state_ints(c) * 4;
        let lens: Vec<i32> = case.tk.iter().map(|&t| t as i32).collect();

        // Inputs: clean and hostile.
        let (mut cq, mut ck) = (data.cq.clone(), data.ck.clone());
        let (mut blens, mut edit) = (lens.clone(), None);
        let mut state0 = vec![0u8; if case.prefill { 0 } else { cpu[case.cfg].state_size(batch as u32) }];
        if case.warm {
            // A clean step first (a shorter cache, so this step's records are reused or refreshed honestly).
            let prev: Vec<i32> = lens.iter().map(|&l| (l - 1).max(1)).collect();
            let r = run_decode_raw(&Host, &cpu[case.cfg], &data, case.page, &prev, None, &state0, data_seed);
            assert_eq!(r.st, HIP_ATTN_STATUS_SUCCESS, "{what}: warm-up: {}", r.msg);
            state0 = r.state;
        }
        let mut bstate = state0.clone();
        match &case.fault {
            Fault::None => {}
            Fault::Cu { q, i, v, .. } => {
                if *q {
                    cq[*i] = *v
                } else {
                    ck[*i] = *v
                }
            }
            Fault::SeqlensK { b, v } => blens[*b] = *v,
            Fault::Page { b, entry, v, .. } => edit = Some((*b, *entry, *v)),
            Fault::Record { b, mh, words, .. } => {
                let at = (b * c.mask_heads() + mh) * rec_bytes;
                bstate[at..at + rec_bytes].copy_from_slice(&i32_bytes(words));
            }
        }
        // The reference: the clean inputs, except that a hostile record becomes "no mask yet" (what the device
        // does with it: search anew).
        let mut rstate = state0.clone();
        if let Fault::Record { b, mh, .. } = &case.fault {
            let at = (b * c.mask_heads() + mh) * rec_bytes;
            rstate[at..at + rec_bytes].fill(0);
        }
        let run = |mem: &dyn Mem, ctx: &Ctx, cq: &[i32], ck: &[i32], lens: &[i32], edit, st: &[u8]| {
            if case.prefill {
                run_prefill_raw(mem, ctx, &data, cq, ck)
            } else {
                run_decode_raw(mem, ctx, &data, case.page, lens, edit, st, data_seed)
            }
        };
        let reference = run(&Host, &cpu[case.cfg], &data.cq, &data.ck, &lens, None, &rstate);
        assert_eq!(reference.st, HIP_ATTN_STATUS_SUCCESS, "{what}: reference: {}", reference.msg);

        // The CPU backend sees all the data: a bad case is BAD_INDEX at once, with nothing written.
        let got = run(&Host, &cpu[case.cfg], &cq, &ck, &blens, edit, &bstate);
        if bad {
            assert_eq!(got.st, HIP_ATTN_STATUS_BAD_INDEX, "{what}: CPU backend: {}", got.msg);
            assert!(got.o.iter().all(|&x| x == 0xFF) && got.lse.iter().all(|&x| x == 0xFF), "{what}: CPU wrote output");
            if case.prefill {
                assert!(got.state.iter().all(|&x| x == 0xFF), "{what}: CPU wrote the mask state");
            } else {
                assert_eq!(got.state, bstate, "{what}: CPU wrote the mask state");
            }
            cpu_reports += 1;
        } else {
            assert_eq!(got.st, HIP_ATTN_STATUS_SUCCESS, "{what}: CPU backend: {}", got.msg);
            assert_eq!((&got.o, &got.lse), (&reference.o, &reference.lse), "{what}: CPU result");
        }

        if let Some(g) = &dev {
            let ctx = &cuda[case.cfg];
            let got = run(g, ctx, &cq, &ck, &blens, edit, &bstate);
            assert_eq!(got.st, HIP_ATTN_STATUS_SUCCESS, "{what}: CUDA call: {}", got.msg);
            let (st, msg) = probe(g, ctx, &CONFIGS[case.cfg]);
            if bad {
                assert_eq!(st, HIP_ATTN_STATUS_BAD_INDEX, "{what}: the next call must report it ({msg})");
                gpu_reports += 1;
                let (st, msg) = probe(g, ctx, &CONFIGS[case.cfg]);
                assert_eq!(st, HIP_ATTN_STATUS_SUCCESS, "{what}: reported once: {msg}");
            } else {
                assert_eq!(st, HIP_ATTN_STATUS_SUCCESS, "{what}: a clean case reported: {msg}");
            }
            ties += compare(&case, &data, c, &cq, &ck, &blens, &reference, &got, &what);
        }
        slowest = slowest.max(t0.elapsed());
    }
    tick.send(None).unwrap();
    watchdog.join().unwrap();
    eprintln!(
        "gpu_fuzz: {cases} cases, {bad_cases} bad; BAD_INDEX reports: CPU backend {cpu_reports}, CUDA backend {}; \
         {ties} heads skipped for near-tie masks; slowest case {:.2} s",
        if dev.is_some() { gpu_reports.to_string() } else { "- (no GPU)".into() },
        slowest.as_secs_f64()
    );
    assert_eq!(cpu_reports, bad_cases);
    if dev.is_some() {
        assert_eq!(gpu_reports, bad_cases);
    }
}

/// The CUDA result against the CPU reference: valid sequences (heads) match within the dtype's tolerance; the
/// rows of skipped sequences are zeros with LSE -inf or untouched. Returns how many heads were skipped because
/// the two backends chose different masks (near-ties; decode only, where the records show it).
#[allow(clippy::too_many_arguments)]
fn compare(
    case: &Case,
    d: &Data,
    c: &hip_attn::config::Config,
    cq: &[i32],
    ck: &[i32],
    lens: &[i32],
    want: &Raw,
    got: &Raw,
    what: &str,
) -> usize {
    let (hq, hd, dt) = (c.num_q_heads, c.head_dim, d.dt);
    let (wo, go) = (d.q.unpack(dt, &want.o), d.q.unpack(dt, &got.o));
    let (wl, gl) = (f32s(&want.lse), f32s(&got.lse));
    let rows = d.q.rows;
    // Which rows must match the reference (and which, below, are a valid sequence of other bounds: a boundary
    // moved up inside its neighbours leaves the next sequence valid with fewer queries, blocked differently).
    let mut valid = vec![false; rows];
    let mut moved = vec![false; rows];
    if case.prefill {
        let ok = prefill_ok(cq, ck, rows as i32, d.k.rows as i32, d.maxq as i32, d.maxk as i32);
        for (b, &ok) in ok.iter().enumerate() {
            if ok {
                let same = (cq[b], cq[b + 1], ck[b], ck[b + 1]) == (d.cq[b], d.cq[b + 1], d.ck[b], d.ck[b + 1]);
                let r = cq[b] as usize..cq[b + 1] as usize;
                if same {
                    valid[r].fill(true)
                } else {
                    moved[r].fill(true)
                }
            }
        }
    } else {
        for (b, v) in valid.iter_mut().enumerate() {
            let skipped = match &case.fault {
                Fault::SeqlensK { b: x, .. } => *x == b,
                Fault::Page { b: x, used: true, .. } => *x == b,
                _ => false,
            };
            *v = !skipped && lens[b] >= 1;
        }
    }
    let mut ties = 0;
    let (mut g, mut w) = (Vec::new(), Vec::new());
    for r in 0..rows {
        for h in 0..hq {
            let (o, l) = (&go[(r * hq + h) * hd..][..hd], gl[r * hq + h]);
            if moved[r] {
                assert!(o.iter().all(|x| x.is_finite()), "{what}: row {r} head {h} of a valid sequence");
                continue;
            }
            if !valid[r] {
                assert!(poison_or_skipped(o, l), "{what}: row {r} head {h} of a skipped sequence: lse {l}");
                continue;
            }
            if !case.prefill {
                let idx = r * c.mask_heads() + c.mask_head_of(h);
                if record(&want.state, plan::state_ints(c), idx) != record(&got.state, plan::state_ints(c), idx) {
                    ties += 1;
                    continue;
                }
            }
            let (l1, l2) = (wl[r * hq + h], l);
            assert!((l1 - l2).abs() <= 1e-3 * l1.abs().max(1.0), "{what}: row {r} head {h}: lse {l2} vs {l1}");
            g.extend_from_slice(o);
            w.extend(wo[(r * hq + h) * hd..][..hd].iter().map(|&x| x as f64));
        }
    }
    let err = rel_l2(&g, &w);
    assert!(err < tolerance(dt), "{what}: valid rows rel L2 {err}");
    if !case.prefill {
        // A hostile record of a valid sequence was searched anew: it now carries this configuration's fingerprint.
        if let Fault::Record { b, mh, .. } = &case.fault {
            let at = (b * c.mask_heads() + mh) * plan::state_ints(c) + plan::STATE_FPRINT_IDX;
            let ws = i32s(&got.state);
            let magic = ws[at - plan::STATE_FPRINT_IDX];
            assert!(magic != plan::STATE_MAGIC || ws[at] == plan::state_fingerprint(c), "{what}: record rewritten");
            assert_eq!(magic, plan::STATE_MAGIC, "{what}: the record was searched anew");
        }
    }
    ties
}
