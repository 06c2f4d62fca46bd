use super::*;

impl Case {
    // ----- decode -----
    pub fn decode(&mut self) -> Result<(), String> {
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
                        let mut v: Vec<i32> = (0..ints).map(|_| rng.data_u64() as i32 % 64).collect();
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

        let mut plan = Expect::default();
        if !state_valid {
            plan.maybe("mask_state_stale", BAD);
        }
        let mut ptrs = [Ptr::Ok; 8]; // q o k v seqlens state page_table lse
        let (mut bs, mut mkd, mut reserved_u32, mut reserved) = (batch as u32, max_k as u32, 0u32, [0u64; 3]);
        let mut shard_flags = 0u32;
        let n_faults = if rng.chance(50) { 0 } else { rng.pick(&[1, 1, 1, 1, 2, 3]) };
        let (mut ws_fault, mut struct_fault) = (false, false);
        for _ in 0..n_faults {
            match rng.below(15) {
                0 => struct_fault = true,
                1 => {
                    match rng.below(3) {
                        0 => reserved[rng.below(3) as usize] = rng.next_u64() | 1,
                        1 => reserved_u32 = rng.u32() | 1,
                        // bits of shard_flags that no HIP_ATTN_SHARD_* value defines
                        _ => shard_flags = (rng.u32() | 2) & !HIP_ATTN_SHARD_NOT_LAST,
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
            key_offset: 0,
            shard_flags,
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
}
