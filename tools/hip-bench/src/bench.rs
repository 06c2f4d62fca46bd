//! The timed runs on the device: context creation, prefill and decode rows.

use cudarc::driver::{result, sys};
use hip_attn::plan::{self, PrefillWorkspace};
use hip_attn::{hip_config, hip_decode_args, hip_decode_step, hip_kv_cache, hip_prefill};
use std::ffi::{c_char, c_void, CStr, CString};
use std::time::Instant;

use crate::{
    api::{check, decode_args, drv, paged_kv, prefill_args, validated, Ctx, Fail, Res},
    check::{
        cpu_decode_unit, cpu_prefill_unit, par_map, prefill_unit_spans, record_blocks, unit_heads, CacheSource,
        CheckResult, DecodeUnit, PrefillUnit,
    },
    cli::Args,
    device::{sync, sync_device, time_each, DevBuf, Device, GraphExec, MEM_MARGIN},
    inputs::{
        mix64, pool_rows, shuffled_pages, to_f32, token_rows, Noise, Rng, TAG_CACHE_K, TAG_CACHE_V, TAG_DECODE_Q,
        TAG_K, TAG_Q, TAG_V,
    },
    report::{len_label, stats, Row},
    workloads::{
        count_decode, count_prefill, Backend, DecodeJob, DecodeMode, DecodeModeJob, Hip, PrefillJob, Shape, Target,
        Work, CACHED_REFRESH, D, DECODE_STEPS, DECODE_STEPS_QUICK, DECODE_WARMUP_ROUNDS, HEADLINE, MAX_SETS, MHA32,
        PAGE, PREFILL_MAX_RUNS, PREFILL_MIN_RUNS, PREFILL_TIMED_MS, PREFILL_WARMUP, SET_SPACING,
    },
};

// ---------------------------------------------------------------------------------------------------------------
// The benchmark
// ---------------------------------------------------------------------------------------------------------------

pub(crate) struct Bench {
    pub(crate) dev: Device,
    pub(crate) args: Args,
    pub(crate) start: Instant,
}

impl Bench {
    pub(crate) fn progress(&self, msg: impl std::fmt::Display) {
        elog!("[{:7.1} s] {msg}", self.start.elapsed().as_secs_f64());
    }
    pub(crate) fn wanted(&self, id: &str) -> bool {
        let id = id.to_lowercase();
        self.args.only.is_empty() || self.args.only.iter().any(|p| id.contains(p.as_str()))
    }
    pub(crate) fn over_budget(&self) -> Option<Fail> {
        let t = self.start.elapsed().as_secs_f64();
        (t > self.args.budget_s)
            .then(|| Fail::Skip(format!("time budget ({:.0} s) spent after {t:.0} s", self.args.budget_s)))
    }
    /// A per-configuration seed, so configurations never share inputs.
    pub(crate) fn seed_for(&self, id: &str) -> u64 {
        id.bytes().fold(mix64(self.args.seed), |h, b| mix64(h ^ b as u64))
    }
    pub(crate) fn stream(&self) -> sys::CUstream {
        self.dev.stream
    }
    /// Skips (not an error) when `need` bytes and a margin do not fit in free device memory.
    pub(crate) fn ensure_free(&self, need: usize, what: &str) -> Res<()> {
        let (free, _) = result::mem_get_info().map_err(drv("cuMemGetInfo"))?;
        if need.saturating_add(MEM_MARGIN) > free {
            return Err(Fail::Skip(format!(
                "{what}: needs {:.1} GiB (+{:.0} GiB margin), {:.1} GiB free",
                need as f64 / (1u64 << 30) as f64,
                (MEM_MARGIN >> 30) as f64,
                free as f64 / (1u64 << 30) as f64
            )));
        }
        Ok(())
    }
}

// ----- context creation -----

pub(crate) unsafe extern "C" fn collect_log(user: *mut c_void, _level: u32, msg: *const c_char) {
    if user.is_null() || msg.is_null() {
        return;
    }
    // SAFETY: user is the Vec<String> that ctx_create_rows passes as log_user_data, alive and not otherwise
    // borrowed during hip_ctx_create (the only time the library calls back); msg is a NUL-terminated string valid
    // during the call (hip_attn.h).
    let (log, text) = unsafe { (&mut *(user as *mut Vec<String>), CStr::from_ptr(msg)) };
    log.push(text.to_string_lossy().into_owned());
}

/// hip_ctx_create with a log collector; returns (seconds, log).
pub(crate) fn timed_create(cfg: &hip_config) -> Res<(f64, Vec<String>)> {
    let mut log: Vec<String> = Vec::new();
    let mut c = *cfg;
    c.log_callback = Some(collect_log);
    c.log_user_data = &mut log as *mut Vec<String> as *mut c_void;
    let t0 = Instant::now();
    let ctx = Ctx::create(&c)?;
    let secs = t0.elapsed().as_secs_f64();
    drop(ctx);
    Ok((secs, log))
}

pub(crate) fn ctx_create_rows(b: &Bench) -> Vec<Row> {
    let id = "ctx-create/MHA-32";
    let mut cold = Row::new(
        &format!("{id}/cold"),
        "context creation, cold (empty kernel cache)",
        "MHA-32",
        0,
        1,
        Some(Target::MaxMs(3000.0)),
    );
    let mut warm =
        Row::new(&format!("{id}/cached"), "context creation, kernel cache", "MHA-32", 0, 1, Some(Target::MaxMs(200.0)));
    cold.length = "-".into();
    warm.length = "-".into();
    b.progress(format_args!("start {id}"));
    let dir = std::env::temp_dir().join(format!("hip-bench-kcache-{}-{}", std::process::id(), b.args.seed));
    let run = |cold: &mut Row, warm: &mut Row| -> Res<()> {
        let _ = std::fs::remove_dir_all(&dir);
        let cdir = CString::new(dir.to_string_lossy().as_bytes()).map_err(|e| Fail::Error(e.to_string()))?;
        let mut cfg = MHA32.config(&HEADLINE, Backend::Cuda(b.dev.ordinal));
        cfg.kernel_cache_dir = cdir.as_ptr();
        let (secs, log) = timed_create(&cfg)?;
        cold.time = Some(stats(&[secs * 1e3]));
        cold.notes.push(format!("library log: {}", log.join(" | ")));
        let mut times = Vec::new();
        let mut last_log = Vec::new();
        for _ in 0..5 {
            let (secs, log) = timed_create(&cfg)?;
            times.push(secs * 1e3);
            last_log = log;
        }
        warm.time = Some(stats(&times));
        if !last_log.iter().any(|l| l.contains("kernel cache")) {
            warm.notes.push("the library log does not mention the kernel cache".into());
        }
        warm.notes.push(format!("library log: {}", last_log.join(" | ")));
        Ok(())
    };
    if let Err(f) = run(&mut cold, &mut warm) {
        cold.apply(&f);
        warm.apply(&f);
    }
    let _ = std::fs::remove_dir_all(&dir);
    b.progress(format_args!("done  {id}: cold {}; cached {}", cold.summary(), warm.summary()));
    vec![cold, warm]
}

// ----- prefill -----

pub(crate) fn prefill_row(b: &Bench, job: &PrefillJob) -> Row {
    let mut row = Row::new(&job.id, &job.work, job.shape.name, job.t, 1, job.target);
    row.counted = Some(count_prefill(&job.shape, &job.hip, job.t));
    b.progress(format_args!("start {}", job.id));
    let r = match b.over_budget() {
        Some(f) => Err(f),
        None => prefill_inner(b, job, &mut row),
    };
    if let Err(f) = r {
        row.apply(&f);
    }
    b.progress(format_args!("done  {}: {}", job.id, row.summary()));
    row
}

pub(crate) fn prefill_inner(b: &Bench, job: &PrefillJob, row: &mut Row) -> Res<()> {
    let (shape, hip, t) = (job.shape, job.hip, job.t);
    let stream = b.stream();
    let cfg = shape.config(&hip, Backend::Cuda(b.dev.ordinal));
    let ctx = Ctx::create(&cfg)?;
    let ws_bytes = ctx.prefill_ws(1, t, t, t)?;
    row.ws_bytes = Some(ws_bytes);
    let (q_bytes, kv_bytes) = (t * shape.hq * D * 2, t * shape.hkv * D * 2);
    b.ensure_free(2 * q_bytes + 2 * kv_bytes + ws_bytes, "Q, K, V, O and workspace")?;
    let q = DevBuf::alloc(q_bytes, "Q")?;
    let k = DevBuf::alloc(kv_bytes, "K")?;
    let v = DevBuf::alloc(kv_bytes, "V")?;
    let o = DevBuf::alloc(q_bytes, "O")?;
    let ws = DevBuf::alloc(ws_bytes, "workspace")?;
    let cu = DevBuf::alloc(8, "cu_seqlens")?;
    cu.upload(0, &[0i32, t as i32])?;
    let seed = b.seed_for(&job.id);
    let noise = [Noise::new(seed, TAG_Q), Noise::new(seed, TAG_K), Noise::new(seed, TAG_V)];
    q.upload_generated(t, shape.hq * D, token_rows(noise[0], shape.hq))?;
    k.upload_generated(t, shape.hkv * D, token_rows(noise[1], shape.hkv))?;
    v.upload_generated(t, shape.hkv * D, token_rows(noise[2], shape.hkv))?;
    sync_device()?;

    // Tq = Tk = t, so one cu_seqlens array serves both.
    let args = prefill_args(q.ptr(), k.ptr(), v.ptr(), o.ptr(), cu.ptr(), cu.ptr(), t, t, shape.hq, shape.hkv);
    let launch = || -> Res<()> {
        // SAFETY: every address in `args` and the workspace is a live device buffer of this function spanning the
        // extents the args describe (sized from the same t, heads and the size query); the buffers are freed only
        // after the device is idle (DevBuf::drop).
        check(unsafe { hip_prefill(ctx.raw, &args, ws.ptr(), ws_bytes, stream as *mut c_void) }, "hip_prefill")
    };
    for _ in 0..PREFILL_WARMUP {
        launch()?;
    }
    sync(stream)?;
    let probe = time_each(stream, 1, |_| launch())?[0];
    let runs = ((PREFILL_TIMED_MS / probe.max(1e-3)) as usize).clamp(PREFILL_MIN_RUNS, PREFILL_MAX_RUNS);
    row.time = Some(stats(&time_each(stream, runs, |_| launch())?));

    // Check: poison O, one more call, then sampled units against the CPU backend.
    o.fill_async(0xFF, stream)?;
    launch()?;
    sync(stream)?;
    let vc = validated(&cfg)?;
    let layout = PrefillWorkspace::new(&vc, 1, t).map_err(|e| Fail::Error(e.to_string()))?;
    let nblocks = t.div_ceil(hip.bq);
    let mut rng = Rng::from_state(seed ^ 0xC4EC);
    let mut picks: Vec<(usize, usize)> = Vec::new();
    for i in 0..job.units {
        let j = match i {
            0 => nblocks - 1,
            1 => nblocks / 2,
            2 => nblocks / 8,
            3 if hip.scan_tail > 0 => nblocks - 1 - rng.below(hip.scan_tail.div_ceil(hip.bq).min(nblocks)),
            _ => rng.below(nblocks),
        };
        let mh = match i {
            0 => 0,
            1 => shape.mask_heads() - 1,
            _ => rng.below(shape.mask_heads()),
        };
        picks.push((mh, j));
    }
    let mut units = Vec::new();
    for &(mh, j) in &picks {
        let (o_off, o_n, cnt_off, idx_off) = prefill_unit_spans(&shape, &hip, &vc, &layout, t, mh, j);
        let nq = hip.bq.min(t - j * hip.bq);
        let rows: Vec<u16> = o.download(o_off, o_n)?;
        let cnt = ws.download::<i32>(cnt_off, 1)?[0].clamp(0, vc.kb() as i32) as usize;
        let gpu_mask: Vec<i32> = ws.download(idx_off, cnt)?;
        units.push(PrefillUnit { mh, j, gpu_o: unit_heads(&shape, &rows, nq, mh), gpu_mask, force_reference: false });
    }
    let outcomes = par_map(&units, |u| cpu_prefill_unit(shape, hip, t, noise, u))?;
    let what = format!(
        "{} units of bq={} queries (blocks {:?})",
        units.len(),
        hip.bq,
        picks.iter().map(|p| p.1).collect::<Vec<_>>()
    );
    row.check = Some(CheckResult::from_units(&outcomes, 0, what));
    Ok(())
}

/// The paged KV cache shared by the modes of one decode job.
pub(crate) struct PagedCache {
    pub(crate) k: DevBuf,
    pub(crate) v: DevBuf,
    pub(crate) table: DevBuf,
    pub(crate) pages_per_seq: usize,
    pub(crate) num_pages: usize,
    pub(crate) src: CacheSource,
}

impl PagedCache {
    pub(crate) fn build(b: &Bench, shape: &Shape, batch: usize, cap: usize, seed: u64) -> Res<PagedCache> {
        let pages_per_seq = cap / PAGE;
        let num_pages = batch * pages_per_seq;
        let row = shape.hkv * D;
        let pool_bytes = num_pages * PAGE * row * 2;
        b.ensure_free(2 * pool_bytes, "the paged KV cache")?;
        let (table, owner) = shuffled_pages(batch, pages_per_seq, seed);
        let src = CacheSource { k: Noise::new(seed, TAG_CACHE_K), v: Noise::new(seed, TAG_CACHE_V), cap };
        let k = DevBuf::alloc(pool_bytes, "K cache")?;
        let v = DevBuf::alloc(pool_bytes, "V cache")?;
        let t = DevBuf::alloc(num_pages * 4, "page table")?;
        t.upload(0, &table)?;
        k.upload_generated(num_pages * PAGE, row, pool_rows(src.k, &owner, cap, shape.hkv))?;
        v.upload_generated(num_pages * PAGE, row, pool_rows(src.v, &owner, cap, shape.hkv))?;
        sync_device()?;
        Ok(PagedCache { k, v, table: t, pages_per_seq, num_pages, src })
    }
    pub(crate) fn desc(&self, hkv: usize) -> hip_kv_cache {
        paged_kv(self.k.ptr(), self.v.ptr(), self.table.ptr(), hkv, self.pages_per_seq, self.num_pages)
    }
}

/// One decode input set: its own queries, sequence lengths, mask state and output.
pub(crate) struct DecodeSet {
    pub(crate) _q: DevBuf,
    pub(crate) o: DevBuf,
    pub(crate) _lens: DevBuf,
    pub(crate) state: DevBuf,
    pub(crate) len: usize,
    pub(crate) qnoise: Noise,
    pub(crate) args: hip_decode_args,
}

pub(crate) fn decode_rows(b: &Bench, job: &DecodeJob) -> Vec<Row> {
    let modes: Vec<&DecodeModeJob> = job.modes.iter().filter(|m| b.wanted(&m.id)).collect();
    let mut rows = Vec::new();
    for m in &modes {
        let work = m.mode.work();
        for how in ["eager", "graph"] {
            // (the protocol states its decode targets for CUDA graph replays; eager rows are reported beside them)
            let target = if how == "graph" { m.target } else { None };
            rows.push(Row::new(
                &format!("{}/{how}", m.id),
                &format!("{work} ({how})"),
                job.shape.name,
                job.t,
                job.batch,
                target,
            ));
        }
    }
    if modes.is_empty() {
        return rows;
    }
    let shape = job.shape;
    // Input sets: enough that one round over them touches 4x the L2 (counted bytes of a cached step each).
    let step_bytes = count_decode(
        &shape,
        &Hip { refresh: CACHED_REFRESH, ..HEADLINE },
        job.t,
        job.batch,
        false,
        job.t,
        &b.dev.plan_traits(),
    )
    .bytes;
    let nsets = ((4.0 * b.dev.l2_bytes as f64 / step_bytes).ceil() as usize).clamp(2, MAX_SETS);
    let cap = (job.t + (nsets - 1) * SET_SPACING).div_ceil(PAGE) * PAGE;
    let cache_id = format!(
        "decode-cache/{}/{}{}",
        shape.name,
        len_label(job.t),
        if job.batch > 1 { format!("x{}", job.batch) } else { String::new() }
    );
    b.progress(format_args!("start {cache_id}: {} sequence(s) x {cap} tokens (paged, {nsets} input sets)", job.batch));
    let cache = match b
        .over_budget()
        .map_or_else(|| PagedCache::build(b, &shape, job.batch, cap, b.seed_for(&cache_id)), Err)
    {
        Ok(c) => c,
        Err(f) => {
            for r in &mut rows {
                r.apply(&f);
            }
            b.progress(format_args!("done  {cache_id}: {}", rows[0].summary()));
            return rows;
        }
    };
    b.progress(format_args!("      {cache_id}: {:.2} GB of K and V uploaded", 2.0 * cache.k.bytes as f64 / 1e9));
    for (i, m) in modes.iter().enumerate() {
        let (eager, graph) = rows[2 * i..2 * i + 2].split_at_mut(1);
        let (eager, graph) = (&mut eager[0], &mut graph[0]);
        b.progress(format_args!("start {}", m.id));
        let r = match b.over_budget() {
            Some(f) => Err(f),
            None => decode_mode(b, job, m.mode, &cache, nsets, eager, graph),
        };
        if let Err(f) = r {
            eager.apply(&f);
            if graph.error.is_none() && graph.skipped.is_none() {
                graph.apply(&f);
            }
        }
        for r in [&*eager, &*graph] {
            b.progress(format_args!("done  {}: {}", r.id, r.summary()));
        }
    }
    rows
}

pub(crate) fn decode_mode(
    b: &Bench,
    job: &DecodeJob,
    mode: DecodeMode,
    cache: &PagedCache,
    nsets: usize,
    eager: &mut Row,
    graph: &mut Row,
) -> Res<()> {
    let (shape, batch, stream) = (job.shape, job.batch, b.stream());
    let cap = cache.src.cap;
    let hip = mode.hip(cap);
    let cfg = shape.config(&hip, Backend::Cuda(b.dev.ordinal));
    let ctx = Ctx::create(&cfg)?;
    let ws_bytes = ctx.decode_ws(batch, cap)?;
    let state_bytes = ctx.state_size(batch)?;
    // Counted work averaged over the input sets (their lengths differ by SET_SPACING).
    let mut work = Work::default();
    for r in 0..nsets {
        let w = crate::scan::decode_work(&shape, mode, job.t + r * SET_SPACING, batch, cap, &b.dev.plan_traits());
        work.flops += w.flops / nsets as f64;
        work.bytes += w.bytes / nsets as f64;
    }
    for row in [&mut *eager, &mut *graph] {
        row.ws_bytes = Some(ws_bytes);
        row.state_bytes = Some(state_bytes);
        row.counted = Some(work);
        row.notes.push(format!("{nsets} input sets, lengths {}..{}", job.t, job.t + (nsets - 1) * SET_SPACING));
    }
    let qo_bytes = batch * shape.hq * D * 2;
    b.ensure_free(ws_bytes + nsets * (2 * qo_bytes + state_bytes + 4 * batch), "decode inputs")?;
    let ws = DevBuf::alloc(ws_bytes, "workspace")?;
    let seed = b.seed_for(&format!("{:?}/{}/{}/{}", mode, shape.name, job.t, batch));
    let mut sets = Vec::with_capacity(nsets);
    for r in 0..nsets {
        let len = job.t + r * SET_SPACING;
        let qnoise = Noise::new(seed, TAG_DECODE_Q + r as u64);
        let q = DevBuf::alloc(qo_bytes, "q")?;
        q.upload_generated(batch, shape.hq * D, token_rows(qnoise, shape.hq))?;
        let o = DevBuf::alloc(qo_bytes, "o")?;
        let lens = DevBuf::alloc(4 * batch, "seqlens_k")?;
        lens.upload(0, &vec![len as i32; batch])?;
        // A sequence's mask state is zeroed before its first step, which then searches (docs/ALGORITHM.md).
        let state = DevBuf::alloc(state_bytes, "mask state")?;
        state.fill_async(0, stream)?;
        let args = decode_args(q.ptr(), o.ptr(), cache.desc(shape.hkv), lens.ptr(), state.ptr(), batch, shape.hq, cap);
        sets.push(DecodeSet { _q: q, o, _lens: lens, state, len, qnoise, args });
    }
    sync_device()?;
    let step = |s: &DecodeSet| -> Res<()> {
        // SAFETY: s.args addresses live device buffers (cache, the set's buffers) spanning what it describes (sized
        // from the same batch, heads, capacity and size queries); the workspace spans ws_bytes; everything is freed
        // only after the device is idle.
        check(
            unsafe { hip_decode_step(ctx.raw, &s.args, ws.ptr(), ws_bytes, stream as *mut c_void) },
            "hip_decode_step",
        )
    };
    // Steps run on each set so far: a set's step searches when its count is a multiple of the refresh.
    let mut done = vec![0usize; nsets];
    // Warm-up; the first round fills every set's mask state (a searching step).
    for _ in 0..DECODE_WARMUP_ROUNDS {
        for (i, s) in sets.iter().enumerate() {
            step(s)?;
            done[i] += 1;
        }
    }
    let cycle = mode.cycle();
    crate::scan::align_cycles(&mut done, cycle, |i| step(&sets[i]))?;
    sync(stream)?;
    let steps = crate::scan::cycle_steps(if b.args.quick { DECODE_STEPS_QUICK } else { DECODE_STEPS }, nsets, cycle);
    let (st, note) = crate::scan::cycle_stats(&time_each(stream, steps, |i| step(&sets[i % nsets]))?, nsets, cycle);
    eager.time = Some(st);
    eager.notes.extend(note);
    for i in 0..steps {
        done[i % nsets] += 1;
    }

    // Check material, eager: poison set 0's output, one step, read outputs and mask records of the units.
    let vc = validated(&cfg)?;
    let mut rng = Rng::from_state(seed ^ 0xDEC0DE);
    let mh_n = shape.mask_heads();
    let picks: Vec<(usize, usize)> = if batch == 1 {
        vec![(0, 0), (0, mh_n - 1), (0, rng.below(mh_n))]
    } else {
        vec![(0, rng.below(mh_n)), (batch - 1, rng.below(mh_n)), (batch / 2, 0)]
    };
    let nh = shape.heads_per_mask();
    let read_o = |s: &DecodeSet, bi: usize, mh: usize| -> Res<Vec<f32>> {
        let at = (bi * shape.hq + shape.first_head(mh)) * D;
        Ok(to_f32(&s.o.download::<u16>(at * 2, nh * D)?))
    };
    let s0 = &sets[0];
    s0.o.fill_async(0xFF, stream)?;
    step(s0)?;
    done[0] += 1;
    sync(stream)?;
    let mut units = Vec::new();
    for &(bi, mh) in &picks {
        let at = plan::state_record(&vc, bi, mh);
        let rec: Vec<i32> = s0.state.download(at * 4, plan::state_ints(&vc))?;
        let gpu_e = rec[plan::STATE_E_IDX].max(0) as usize;
        units.push(DecodeUnit {
            b: bi,
            mh,
            gpu_o: vec![read_o(s0, bi, mh)?],
            gpu_e,
            gpu_blocks: record_blocks(&rec),
            force_reference: false,
        });
    }

    // Graph: capture one step per set, replay round-robin. Its failure leaves the eager row intact.
    let mut graph_run = || -> Res<()> {
        let execs: Vec<GraphExec> = sets.iter().map(|s| GraphExec::capture(stream, || step(s))).collect::<Res<_>>()?;
        for (i, g) in execs.iter().enumerate() {
            g.launch(stream)?;
            done[i] += 1;
        }
        crate::scan::align_cycles(&mut done, cycle, |i| execs[i].launch(stream))?;
        sync(stream)?;
        let times = time_each(stream, steps, |i| execs[i % nsets].launch(stream))?;
        let (st, note) = crate::scan::cycle_stats(&times, nsets, cycle);
        graph.time = Some(st);
        graph.notes.extend(note);
        s0.o.fill_async(0xFF, stream)?;
        execs[0].launch(stream)?;
        sync(stream)?;
        for u in &mut units {
            u.gpu_o.push(read_o(s0, u.b, u.mh)?);
        }
        Ok(())
    };
    if let Err(f) = graph_run() {
        graph.apply(&f);
        sync(stream)?; // a device fault shows here and fails the eager row too
    }

    let (src, qnoise, len0) = (cache.src, s0.qnoise, s0.len);
    let outcomes = par_map(&units, |u| cpu_decode_unit(shape, hip, src, qnoise, len0, u))?;
    let what = format!("{} (sequence, mask head) units of input set 0 at length {len0}", units.len());
    eager.check = Some(CheckResult::from_units(&outcomes, 0, what.clone()));
    if graph.error.is_none() && units.iter().all(|u| u.gpu_o.len() == 2) {
        graph.check = Some(CheckResult::from_units(&outcomes, 1, what));
    }
    Ok(())
}
