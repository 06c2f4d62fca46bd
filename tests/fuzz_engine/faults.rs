use super::*;

// ---------------------------------------------------------------------------------------------------------------
// Expectations

pub const OK: &[hip_status] = &[HIP_ATTN_STATUS_SUCCESS];
pub const NULLP: &[hip_status] = &[HIP_ATTN_STATUS_NULL_POINTER];
pub const CONFIG: &[hip_status] = &[HIP_ATTN_STATUS_INVALID_CONFIG];
pub const ARG: &[hip_status] = &[HIP_ATTN_STATUS_INVALID_ARGUMENT];
pub const UNSUP: &[hip_status] = &[HIP_ATTN_STATUS_UNSUPPORTED];
pub const MIS: &[hip_status] = &[HIP_ATTN_STATUS_MISALIGNED_POINTER];
pub const WS: &[hip_status] = &[HIP_ATTN_STATUS_WORKSPACE_TOO_SMALL];
pub const SIZE: &[hip_status] = &[HIP_ATTN_STATUS_STRUCT_SIZE_MISMATCH];
pub const OVER: &[hip_status] = &[HIP_ATTN_STATUS_SIZE_OVERFLOW];
pub const BAD: &[hip_status] = &[HIP_ATTN_STATUS_BAD_INDEX];
pub const NEG_STRIDE: &[hip_status] = &[HIP_ATTN_STATUS_INVALID_ARGUMENT];
/// Two huge strides of one output view also overlap (row 1 of one dimension lands inside row 1 of the other).
pub const OVER_OUT: &[hip_status] = &[HIP_ATTN_STATUS_SIZE_OVERFLOW, HIP_ATTN_STATUS_INVALID_ARGUMENT];

/// Faults injected into one call: each must make it fail with one of its statuses. `maybe` faults (garbage
/// that may or may not be valid) allow success or one of their statuses.
#[derive(Default)]
pub struct Expect {
    pub faults: Vec<(&'static str, &'static [hip_status])>,
    pub maybe: Vec<(&'static str, &'static [hip_status])>,
}

impl Expect {
    pub fn fault(&mut self, label: &'static str, st: &'static [hip_status]) {
        self.faults.push((label, st));
    }
    pub fn maybe(&mut self, label: &'static str, st: &'static [hip_status]) {
        self.maybe.push((label, st));
    }
    pub fn valid(&self) -> bool {
        self.faults.is_empty() && self.maybe.is_empty()
    }
    pub fn judge(&self, st: hip_status) -> Result<(), String> {
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
    pub fn labels(&self) -> Vec<&'static str> {
        self.faults.iter().chain(&self.maybe).map(|f| f.0).collect()
    }
}

#[derive(Clone, Copy, Debug)]
pub struct StructShape {
    pub size: u32,
    pub tail: Option<(usize, u8)>,
    pub misaligned: bool,
    pub null: bool,
}

pub fn struct_shape<T>(rng: &mut Rng, plan: &mut Expect, faulty: bool) -> StructShape {
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
pub struct Lay {
    pub ts: i64,
    pub hs: i64,
}

pub const HUGE_STRIDE: i64 = 1 << 62;

/// Elements a [rows, heads, d] view spans (the API's formula), or None when negative or overflowing.
pub fn extent(rows: usize, heads: usize, d: usize, es: usize, lay: Lay) -> Option<usize> {
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
pub fn gen_layout(rng: &mut Rng, rows: usize, heads: usize, d: usize, es: usize, input: bool) -> Lay {
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
pub enum Ptr {
    Ok,
    Null,
    Mis(usize),
}

pub fn ptr_of(bufs: &Bufs, i: usize, p: Ptr) -> usize {
    match p {
        Ptr::Ok => bufs.addr(i),
        Ptr::Null => 0,
        Ptr::Mis(off) => bufs.addr(i) + off,
    }
}

/// Which stride fault to inject into a view (None = keep the valid layout).
pub fn stride_fault(
    rng: &mut Rng,
    plan: &mut Expect,
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
pub fn ptr_fault(
    rng: &mut Rng,
    plan: &mut Expect,
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
