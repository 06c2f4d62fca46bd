use super::*;

// ---------------------------------------------------------------------------------------------------------------
// Configurations

#[derive(Clone, Debug)]
pub struct Cfg {
    pub dt: DType,
    pub es: usize,
    pub d: usize,
    pub hq: usize,
    pub hkv: usize,
    pub k: usize,
    pub bq: usize,
    pub bk: usize,
    pub sink: usize,
    pub window: usize,
    pub causal: bool,
    pub per_kv: bool,
    pub refresh: usize,
    pub scale: f64,
    pub kb: usize,
    pub mh: usize,
    pub state_ints: usize,
    /// What this configuration's records carry (hip_attn::plan::state_fingerprint); 0 for an invalid config.
    pub fingerprint: i32,
}

impl Cfg {
    pub fn from_raw(c: &hip_config) -> Cfg {
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
    pub fn kv_of(&self, h: usize) -> usize {
        h / (self.hq / self.hkv)
    }
}

pub static LOG_CALLS: AtomicUsize = AtomicUsize::new(0);

pub unsafe extern "C" fn log_callback(user: *mut c_void, level: u32, msg: *const c_char) {
    assert!(!msg.is_null() && (1..=4).contains(&level));
    // SAFETY: user_data is the address of LOG_CALLS, set by the harness.
    unsafe { &*(user as *const AtomicUsize) }.fetch_add(1, Ordering::Relaxed);
}

pub fn gen_config(rng: &mut Rng, plan: &mut Expect, log: &mut Vec<String>) -> hip_config {
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

impl Case {
    // ----- context creation -----
    pub fn create(&mut self) -> Result<(), String> {
        let mut plan = Expect::default();
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
    pub fn sizes(&mut self) -> Result<(), String> {
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
        let mut plan = Expect::default();
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

    /// Run calls with a NULL context or NULL argument struct.
    pub fn nulls(&mut self) -> Result<(), String> {
        let mut plan = Expect::default();
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
