use super::*;

// ---------------------------------------------------------------------------------------------------------------
// Guarded memory

/// Guard-zone bytes on each side of every buffer (0 = exact heap blocks, for valgrind).
pub static GUARD: AtomicUsize = AtomicUsize::new(4096);

pub fn canary(i: usize) -> u8 {
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
        let bytes: Vec<u8> = (0..self.len).map(|_| rng.data_u64() as u8).collect();
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
// Buffers of one call and the checks after it

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// Must never be written.
    Input,
    /// Untouched on failure; on success, bytes outside `view` (if any) untouched.
    Output,
    /// Workspace: only the guard zones are checked.
    Scratch,
}

pub struct Tracked {
    name: String,
    region: Region,
    role: Role,
    view: Option<Vec<bool>>,
    before: Vec<u8>,
}

#[derive(Default)]
pub struct Bufs {
    list: Vec<Tracked>,
}

impl Bufs {
    pub fn add(&mut self, name: impl Into<String>, region: Region, role: Role) -> usize {
        self.list.push(Tracked { name: name.into(), region, role, view: None, before: Vec::new() });
        self.list.len() - 1
    }
    pub fn r(&self, i: usize) -> &Region {
        &self.list[i].region
    }
    pub fn addr(&self, i: usize) -> usize {
        self.list[i].region.ptr() as usize
    }
    pub fn set_view(&mut self, i: usize, mask: Vec<bool>) {
        self.list[i].view = Some(mask);
    }
    pub fn snapshot(&mut self) {
        for t in &mut self.list {
            t.before = t.region.read();
        }
    }
    pub fn check(&self, ok: bool) -> Result<(), String> {
        for t in &self.list {
            t.region.canaries().map_err(|e| format!("{}: {e}", t.name))?;
            let now = t.region.read();
            let first_diff = |mask: Option<&Vec<bool>>| {
                now.iter()
                    .zip(&t.before)
                    .enumerate()
                    .find(|(i, (a, b))| a != b && mask.is_none_or(|m| !m[*i]))
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
pub fn struct_region<T: Copy>(val: &T, tail: Option<(usize, u8)>, misaligned: bool) -> (Region, usize) {
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

pub fn tensor_region(rows: usize, heads: usize, d: usize, es: usize, lay: Lay) -> Region {
    let bytes = extent(rows, heads, d, es, lay).unwrap_or(d * es);
    assert!(bytes <= 64 << 20, "harness bug: {bytes}-byte tensor");
    Region::new(bytes + 16)
}

/// Fills a view's elements with finite values of the dtype (the rest of the region NaN), or everything with
/// random bytes.
pub fn fill_input(r: &Region, rows: usize, heads: usize, d: usize, dt: DType, lay: Lay, finite: bool, rng: &mut Rng) {
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
pub fn view_mask(len: usize, rows: usize, heads: usize, d: usize, es: usize, lay: Lay) -> Vec<bool> {
    let mut m = vec![false; len];
    for t in 0..rows {
        for h in 0..heads {
            let off = (t * lay.ts as usize + h * lay.hs as usize) * es;
            m[off..off + d * es].iter_mut().for_each(|x| *x = true);
        }
    }
    m
}

pub fn read_elem(r: &Region, dt: DType, idx: usize) -> f32 {
    // SAFETY: the harness only reads elements of views it allocated.
    unsafe { dt.read(r.ptr(), idx) }
}

pub fn i32_bytes(xs: &[i32]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}
