use super::*;

impl Case {
    // ----- merge -----
    pub fn merge(&mut self) -> Result<(), String> {
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
        let mut plan = Expect::default();
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
                    let x: f32 = if !finite && rng.data_below(100) < 30 {
                        f32::from_bits(rng.data_u64() as u32)
                    } else {
                        match rng.data_below(10) {
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
}
