use super::*;

impl Case {
    // ----- prefill -----
    pub fn prefill(&mut self) -> Result<(), String> {
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
        let mut plan = Expect::default();
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
                    cuv[batch] = (total as i32).wrapping_add(1 + rng.beyond(50) as i32);
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
                    cuv[batch] = (total as i32).wrapping_sub(rng.usize(1, 3) as i32);
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
}
