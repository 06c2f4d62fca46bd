//! The property-test ("fuzz") engine behind tests/fuzz.rs and tests/memcheck.rs (a short run of the same engine
//! under valgrind memcheck). A case is a context creation followed by one to six calls of the C API on the CPU
//! backend, each built by the generator of its entry point (ctx.rs: creation, size queries, NULL calls;
//! prefill.rs; decode.rs; merge.rs) from a source of draws (draw.rs): a corpus seed, or draws that proptest
//! generates and, on a failure, shrinks to a minimal case (script.rs). Each call's arbitrary but *in-buffer*
//! inputs live in guarded memory (alloc.rs), and the engine checks:
//!
//! - a known `hip_status` comes back, never `HIP_ATTN_STATUS_INTERNAL` (a caught panic is a bug) and no panic
//!   or signal escapes (a fatal signal prints the case from a signal handler);
//! - the verdict matches the case: a call the harness built valid must succeed, a call with an injected fault
//!   that the library can see must fail, with one of the statuses those faults map to (faults.rs); a failing
//!   call leaves a non-empty message, the same in the thread's and the context's error;
//! - nothing is written out of bounds: every buffer sits between two 4 KiB guard zones of a canary pattern,
//!   checked after every call (under valgrind the guards are dropped and each buffer is its own exact heap
//!   block, so valgrind's red zones catch out-of-bounds reads *and* writes);
//! - inputs (tensors, index arrays, the argument structs themselves) are never written;
//! - on failure, every output (o, lse, mask state, `*bytes`, ...) is byte-identical to before the call; on
//!   success, bytes of an output buffer outside the view (stride padding) are untouched, every row the call
//!   covers is written, and with k >= every length the output equals dense attention (oracle.rs).
//!
//! THE BOUNDARY (what the harness must never do). The C API cannot check that a pointer really spans the
//! extent its declared shape implies. So whenever the library could legitimately accept a call, every buffer
//! is allocated exactly as large as the API contract says for the *declared* host-side values (rows, heads,
//! head_dim, strides, batch, page-table stride, mask-state size, workspace size): faults are injected only
//! where the library can see them — a declared value that is out of range or inconsistent (zero, above
//! i32::MAX, negative or misaligned strides, extents that overflow, struct sizes), a NULL or misaligned pointer,
//! or index *data* inside the buffers (cu_seqlens, seqlens_k, page tables, mask state). A huge but in-range
//! declared value whose extent the harness did not allocate (say total_k = 2^30 with a 4 KiB buffer) is never
//! generated: no library could detect that lie. Two deliberate, documented exceptions, both values the library
//! rejects or bounds itself: counts above i32::MAX (rejected before any buffer is touched), and a workspace
//! claim of `usize::MAX` bytes over an exactly sized allocation (the workspace a call may use is what the size
//! query returns; the guard zones check that the CPU backend stays inside it). The CUDA backend value is never
//! generated: on a machine with a GPU it would create a device context that reads host pointers as device ones
//! (tests/gpu_fuzz.rs fuzzes the CUDA backend with device buffers).
// Style lints: `!(x <= tol)` is deliberate (NaN must fail), and the generator reads better unrolled.
#![allow(
    dead_code,
    clippy::too_many_arguments,
    clippy::neg_cmp_op_on_partial_ord,
    clippy::manual_range_contains,
    clippy::collapsible_match,
    clippy::unnecessary_unwrap,
    clippy::manual_contains
)]

mod alloc;
mod ctx;
mod decode;
mod draw;
mod faults;
mod merge;
mod oracle;
mod prefill;
pub mod script;

pub use alloc::*;
pub use ctx::*;
pub use draw::*;
pub use faults::*;
pub use oracle::*;

use hip_attn::hip_status::*;
use hip_attn::tensor::DType;
use hip_attn::*;
use script::{Op, Script};
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{c_char, c_void, CStr};
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------------------------
// One case

/// A mask-state blob kept between calls of a case, with what is known about its validity.
#[derive(Clone)]
struct StateBlob {
    bytes: Vec<u8>,
    /// Structurally valid for a decode whose length of sequence b is at least min_len[b].
    min_len: Vec<usize>,
    /// Every record came from a search or a reuse of a searched mask (never from garbage).
    pristine: bool,
}

struct Case {
    /// The draws of the call being generated.
    rng: Rng,
    ctx: *mut hip_ctx,
    cfg: Option<Cfg>,
    log: Vec<String>,
    stats: Stats,
    states: HashMap<usize, StateBlob>,
    session: Option<Session>,
}

/// A decode "session": a KV cache that grows one token per step, with its persistent mask state.
#[derive(Clone)]
struct Session {
    seed: u64,
    batch: usize,
    max_k: usize,
    lens: Vec<usize>,
    paged: Option<(usize, usize, usize)>, // page_size, pt_stride, num_pages
    state: StateBlob,
}

#[derive(Default, Clone)]
pub struct Stats {
    pub calls: usize,
    pub by_label: BTreeMap<String, usize>,
    pub by_status: BTreeMap<String, usize>,
    pub dense_checks: usize,
    /// Decisions asked of a proptest draw list past its end.
    pub exhausted: usize,
    /// The most draws one call of each kind took (script::*_DRAWS should stay above these).
    pub draws_used: BTreeMap<&'static str, usize>,
}

impl Stats {
    fn merge(&mut self, o: &Stats) {
        self.calls += o.calls;
        self.dense_checks += o.dense_checks;
        self.exhausted += o.exhausted;
        for (k, v) in &o.draws_used {
            let m = self.draws_used.entry(k).or_default();
            *m = (*m).max(*v);
        }
        for (k, v) in &o.by_label {
            *self.by_label.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.by_status {
            *self.by_status.entry(k.clone()).or_default() += v;
        }
    }
}

/// Multiply-adds one call may cost (keeps a case cheap under valgrind).
const COST_BUDGET: usize = 3_000_000;

fn thread_message() -> String {
    // SAFETY: a valid NUL-terminated thread-local string.
    unsafe { CStr::from_ptr(hip_last_error_message()) }.to_string_lossy().into_owned()
}

impl Case {
    fn record(&mut self, op: &str, plan: &Expect, st: hip_status) {
        self.stats.calls += 1;
        *self.stats.by_status.entry(format!("{st:?}")).or_default() += 1;
        let labels = plan.labels();
        if labels.is_empty() {
            *self.stats.by_label.entry(format!("{op}:valid")).or_default() += 1;
        }
        for l in labels {
            *self.stats.by_label.entry(format!("{op}:{l}")).or_default() += 1;
        }
        self.log.push(format!("{op} faults {:?} -> {st:?}", plan.labels()));
    }

    /// After a failing call with a context: the per-thread and per-context messages agree and are not empty;
    /// hip_ctx_last_error truncates inside the buffer it is given.
    fn check_messages(&mut self, st: hip_status, ctx: *const hip_ctx) -> Result<(), String> {
        if st == HIP_ATTN_STATUS_SUCCESS {
            return Ok(());
        }
        let msg = thread_message();
        if msg.is_empty() {
            return Err(format!("{st:?} without a thread message"));
        }
        if ctx.is_null() {
            return Ok(());
        }
        // SAFETY: live context; a NULL buffer with length 0 asks for the length.
        let need = unsafe { hip_ctx_last_error(ctx, std::ptr::null_mut(), 0) };
        if need != msg.len() + 1 {
            return Err(format!("hip_ctx_last_error wants {need} bytes for {msg:?}"));
        }
        let cap = self.rng.pick(&[1, 2, 7, need - 1, need, need + 9]).max(1);
        let buf = Region::new(cap);
        buf.fill(0x5A);
        // SAFETY: buf spans cap writable bytes.
        let n = unsafe { hip_ctx_last_error(ctx, buf.ptr() as *mut c_char, cap) };
        buf.canaries().map_err(|e| format!("hip_ctx_last_error buffer: {e}"))?;
        let got = buf.read();
        let copied = (need - 1).min(cap - 1);
        if n != need || got[copied] != 0 || got[..copied] != msg.as_bytes()[..copied] {
            return Err(format!("hip_ctx_last_error({cap}) gave {:?} for {msg:?}", String::from_utf8_lossy(&got)));
        }
        Ok(())
    }

    fn ws_size(
        &self,
        prefill: bool,
        batch: usize,
        total_q: usize,
        max_q: usize,
        max_k: usize,
    ) -> Result<usize, String> {
        let mut n = 0usize;
        // SAFETY: live context, writable out.
        let st = unsafe {
            if prefill {
                hip_prefill_workspace_size(self.ctx, batch as u32, total_q as u32, max_q as u32, max_k as u32, &mut n)
            } else {
                hip_decode_workspace_size(self.ctx, batch as u32, max_k as u32, &mut n)
            }
        };
        if st != HIP_ATTN_STATUS_SUCCESS {
            return Err(format!("workspace size query failed for valid sizes: {st:?} {}", thread_message()));
        }
        Ok(n)
    }

    /// Workspace faults and the region: returns (region index, pointer, bytes claimed).
    fn workspace(&mut self, bufs: &mut Bufs, plan: &mut Expect, needed: usize, faulty: bool) -> (usize, usize, usize) {
        let rng = &mut self.rng;
        let mut alloc = needed;
        let mut claim = needed;
        let mut ptr = Ptr::Ok;
        match rng.below(if faulty { 9 } else { 4 }) {
            0 => {
                let extra = rng.usize(1, 4096);
                alloc += extra;
                claim += extra;
            }
            1 => claim = usize::MAX, // the documented exception: see the module comment
            4 | 5 => {
                if needed > 0 {
                    claim = if rng.chance(50) { needed - 1 } else { rng.usize(0, needed - 1) };
                    plan.fault("workspace_too_small", WS);
                }
            }
            6 => {
                if needed > 0 {
                    ptr = Ptr::Null;
                    plan.fault("workspace_null", NULLP);
                }
            }
            7 | 8 => {
                if needed > 0 {
                    ptr = Ptr::Mis(rng.pick(&[1, 2, 4, 8, 12]));
                    plan.fault("workspace_misaligned", MIS);
                }
            }
            _ => {}
        }
        let r = Region::new(alloc + 16);
        r.fill(0xEE);
        let i = bufs.add("workspace", r, Role::Scratch);
        (i, ptr_of(bufs, i, ptr), claim)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Running cases

/// What a case is generated from.
#[derive(Clone, Copy)]
pub enum Input<'a> {
    /// Every decision from one seeded stream: the corpus, HIP_ATTN_FUZZ_SEED and the coverage run.
    Seed(u64),
    /// Proptest's draws, one list per call.
    Script(&'a Script),
}

impl Input<'_> {
    /// The environment setting that replays this case.
    pub fn replay(&self) -> String {
        match self {
            Input::Seed(s) => format!("HIP_ATTN_FUZZ_SEED=0x{s:016x}"),
            Input::Script(s) => format!("HIP_ATTN_FUZZ_CASE='{s}'"),
        }
    }
}

/// The replay setting of the running case, for the signal handler (which may not allocate or lock).
const NOTE_CAP: usize = 1 << 15;
static NOTE: [AtomicU8; NOTE_CAP] = [const { AtomicU8::new(0) }; NOTE_CAP];
static NOTE_LEN: AtomicUsize = AtomicUsize::new(0);

fn set_note(s: &str) {
    let n = s.len().min(NOTE_CAP);
    NOTE_LEN.store(0, Ordering::Release);
    for (slot, &b) in NOTE.iter().zip(&s.as_bytes()[..n]) {
        slot.store(b, Ordering::Relaxed);
    }
    NOTE_LEN.store(n, Ordering::Release);
}

extern "C" fn on_fatal_signal(sig: libc::c_int) {
    let head = b"\nhip-attn fuzz: fatal signal in the case ";
    let mut chunk = [0u8; 256];
    let n = NOTE_LEN.load(Ordering::Acquire);
    // SAFETY: write, signal and raise are async-signal-safe; the buffers are live locals and statics.
    unsafe {
        libc::write(2, head.as_ptr() as *const c_void, head.len());
        for start in (0..n).step_by(chunk.len()) {
            let len = chunk.len().min(n - start);
            for (i, c) in chunk[..len].iter_mut().enumerate() {
                *c = NOTE[start + i].load(Ordering::Relaxed);
            }
            libc::write(2, chunk.as_ptr() as *const c_void, len);
        }
        libc::write(2, b"\n".as_ptr() as *const c_void, 1);
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

fn install_signal_handlers() {
    for sig in [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE, libc::SIGABRT] {
        // SAFETY: installs an async-signal-safe handler.
        unsafe { libc::signal(sig, on_fatal_signal as *const () as libc::sighandler_t) };
    }
}

/// The seeded generator's mix of calls (a script draws its calls from script::op, in the same proportions).
fn seeded_op(rng: &mut Rng) -> Op {
    match rng.below(100) {
        0..=34 => Op::Prefill,
        35..=74 => Op::Decode,
        75..=87 => Op::Merge,
        88..=96 => Op::Sizes,
        _ => Op::Nulls,
    }
}

impl Case {
    fn note_draws(&mut self, op: &'static str) {
        self.stats.exhausted += self.rng.exhausted;
        let m = self.stats.draws_used.entry(op).or_default();
        *m = (*m).max(self.rng.taken());
    }
}

thread_local! {
    /// The message and place of the last panic, kept by the quiet hook of `quiet_panics`.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    /// The log of the last case run on this thread, printed when one case is replayed alone.
    static LAST_LOG: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Keeps panics of the harness (caught per case and reported with it) from printing a backtrace each while
/// proptest shrinks; the previous hook comes back when the guard drops.
type PanicHook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;
struct QuietPanics(Option<PanicHook>);

fn quiet_panics() -> QuietPanics {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| LAST_PANIC.with(|l| *l.borrow_mut() = Some(info.to_string()))));
    QuietPanics(Some(prev))
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        if let Some(prev) = self.0.take() {
            std::panic::set_hook(prev);
        }
    }
}

/// Runs one case; Err carries the failure, the replay setting and the case's log.
pub fn run(input: Input) -> Result<Stats, String> {
    let replay = input.replay();
    set_note(&replay);
    let mut case = Case {
        rng: match input {
            Input::Seed(s) => Rng::new(s),
            Input::Script(s) => s.create.rng(),
        },
        ctx: std::ptr::null_mut(),
        cfg: None,
        log: Vec::new(),
        stats: Stats::default(),
        states: HashMap::new(),
        session: None,
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<(), String> {
        case.create()?;
        let calls = match input {
            Input::Seed(_) => case.rng.usize(1, 6),
            Input::Script(s) => s.ops.len(),
        };
        for i in 0..calls {
            let op = match input {
                Input::Seed(_) if case.ctx.is_null() => Op::Nulls,
                Input::Seed(_) => seeded_op(&mut case.rng),
                Input::Script(s) => {
                    case.note_draws(if i == 0 { "create" } else { s.ops[i - 1].0.name() });
                    case.rng = s.ops[i].1.rng();
                    if case.ctx.is_null() {
                        Op::Nulls
                    } else {
                        s.ops[i].0
                    }
                }
            };
            match op {
                Op::Prefill => case.prefill()?,
                Op::Decode => case.decode()?,
                Op::Merge => case.merge()?,
                Op::Sizes => case.sizes()?,
                Op::Nulls => case.nulls()?,
            }
        }
        if let Input::Script(s) = input {
            case.note_draws(s.ops.last().map_or("create", |o| o.0.name()));
        }
        Ok(())
    }));
    if !case.ctx.is_null() {
        // SAFETY: created by hip_ctx_create in this case, destroyed once.
        unsafe { hip_ctx_destroy(case.ctx) };
    }
    LAST_LOG.with(|l| *l.borrow_mut() = case.log.clone());
    let failure = match result {
        Ok(Ok(())) => return Ok(case.stats),
        Ok(Err(e)) => e,
        Err(p) => format!(
            "harness panic: {}",
            LAST_PANIC.with(|l| l.borrow_mut().take()).unwrap_or_else(|| p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default())
        ),
    };
    Err(format!("{failure}\n  replay: {replay}\n  case log:\n    {}", case.log.join("\n    ")))
}

pub fn run_case(seed: u64) -> Result<Stats, String> {
    run(Input::Seed(seed))
}

/// A case of the corpus.
pub enum Stored {
    Seed(u64),
    Script(Script),
}

/// The cases of tests/fuzz-corpus/seeds.txt: one per line, a seed (`0x...` or decimal) or `case ` and a script in
/// its replay form; `#` starts a comment.
pub fn corpus() -> Vec<(Stored, String)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus/seeds.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter_map(|line| {
            let (val, comment) = line.split_once('#').unwrap_or((line, ""));
            let val = val.trim();
            if val.is_empty() {
                return None;
            }
            let case = match val.strip_prefix("case ") {
                Some(s) => Stored::Script(s.parse().unwrap_or_else(|e| panic!("bad corpus line {line:?}: {e}"))),
                None => Stored::Seed(parse_seed(val).unwrap_or_else(|| panic!("bad corpus line {line:?}"))),
            };
            Some((case, comment.trim().to_string()))
        })
        .collect()
}

/// A greedy set cover of every path in `paths_of` (seed -> the paths its case exercised): repeatedly the seed
/// that adds the most paths not yet covered (the smaller seed on a tie), with the paths it added; sorted by the
/// first of them.
fn greedy_cover(paths_of: &BTreeMap<u64, Vec<String>>) -> Vec<(u64, Vec<String>)> {
    let mut covered = std::collections::BTreeSet::new();
    let mut cover = Vec::new();
    loop {
        let best = paths_of
            .iter()
            .map(|(s, p)| (s, p.iter().filter(|l| !covered.contains(*l)).cloned().collect::<Vec<_>>()))
            .max_by(|a, b| a.1.len().cmp(&b.1.len()).then(b.0.cmp(a.0)));
        match best {
            Some((s, new)) if !new.is_empty() => {
                covered.extend(new.iter().cloned());
                cover.push((*s, new));
            }
            _ => break,
        }
    }
    cover.sort_by(|a, b| a.1[0].cmp(&b.1[0]));
    cover
}

pub fn parse_seed(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

pub fn say(line: &str) {
    // libtest captures print!/eprint!; a direct write to stderr shows in CI logs.
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Cases per proptest runner: the time budget is checked between runners.
const ROUND: u32 = 64;

/// The 32-byte proptest seed of exploration round `round` under `master`.
fn round_seed(master: u64, round: u64) -> [u8; 32] {
    let mut seed = [0u8; 32];
    for (i, c) in seed.chunks_mut(8).enumerate() {
        c.copy_from_slice(&mix(master ^ mix(round.wrapping_mul(4).wrapping_add(i as u64))).to_le_bytes());
    }
    seed
}

/// Proptest over `strategy` from the seed of one exploration round, shrinking a failure for at most `shrink`.
/// Returns the first failing input as found and the minimal one, with the minimal one's failure.
pub fn search<S: proptest::strategy::Strategy>(
    strategy: &S,
    seed: [u8; 32],
    cases: u32,
    shrink: Duration,
    property: impl Fn(&S::Value) -> Result<(), String>,
) -> Result<(), (S::Value, S::Value, String)>
where
    S::Value: Clone,
{
    use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_time: shrink.as_millis() as u32,
        // (u32::MAX would mean "four times the cases")
        max_shrink_iters: u32::MAX - 1,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let first = RefCell::new(None);
    let outcome = runner.run(strategy, |v| {
        property(&v).map_err(|e| {
            first.borrow_mut().get_or_insert_with(|| v.clone());
            TestCaseError::fail(e)
        })
    });
    match outcome {
        Ok(()) => Ok(()),
        Err(TestError::Fail(why, minimal)) => {
            let found = first.into_inner().unwrap_or_else(|| minimal.clone());
            Err((found, minimal, why.message().to_string()))
        }
        Err(TestError::Abort(why)) => panic!("proptest aborted: {why}"),
    }
}

/// The whole run: the case given by HIP_ATTN_FUZZ_SEED or HIP_ATTN_FUZZ_CASE alone, or the corpus and then
/// cases that proptest generates from a fixed master seed (HIP_ATTN_FUZZ_MASTER overrides; "time" picks one
/// from the clock) until HIP_ATTN_FUZZ_SECONDS (default `default_secs`) have passed; the first failing one is
/// shrunk to a minimal case. With HIP_ATTN_FUZZ_COVER set, the random cases are seeds instead; the first seed
/// that exercised each path is printed, then a greedy cover of every path by those seeds in the corpus's form
/// (to regenerate the corpus's coverage seeds). Panics listing the failing cases.
pub fn main_entry(default_secs: f64) {
    if std::env::var("HIP_ATTN_FUZZ_GUARD").is_ok_and(|v| v == "0") {
        GUARD.store(0, Ordering::Relaxed);
    }
    install_signal_handlers();
    let single = match (std::env::var("HIP_ATTN_FUZZ_SEED").ok(), std::env::var("HIP_ATTN_FUZZ_CASE").ok()) {
        (Some(s), _) => Some((Some(parse_seed(&s).expect("HIP_ATTN_FUZZ_SEED")), None)),
        (None, Some(c)) => {
            Some((None, Some(c.parse::<Script>().unwrap_or_else(|e| panic!("HIP_ATTN_FUZZ_CASE: {e}")))))
        }
        (None, None) => None,
    };
    if let Some((seed, script)) = single {
        let input = match (&seed, &script) {
            (Some(s), _) => Input::Seed(*s),
            (None, s) => Input::Script(s.as_ref().unwrap()),
        };
        match run(input) {
            Ok(s) => {
                LAST_LOG.with(|l| l.borrow().iter().for_each(|line| say(&format!("  {line}"))));
                say(&format!("fuzz: {} passed ({} calls: {:?})", input.replay(), s.calls, s.by_label))
            }
            Err(e) => panic!("{e}"),
        }
        return;
    }
    let secs: f64 = std::env::var("HIP_ATTN_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default_secs);
    let master = match std::env::var("HIP_ATTN_FUZZ_MASTER").ok() {
        Some(s) if s == "time" => {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        }
        Some(s) => parse_seed(&s).expect("HIP_ATTN_FUZZ_MASTER"),
        None => 0x4869_5031,
    };
    let cover = std::env::var("HIP_ATTN_FUZZ_COVER").is_ok();
    // Under valgrind, name each case before it runs so that an error report follows it.
    let trace = std::env::var_os("HIP_ATTN_FUZZ_TRACE").is_some();
    let start = Instant::now();
    let budget = Duration::from_secs_f64(secs);
    let total = RefCell::new(Stats::default());
    let cases = RefCell::new(0usize);
    let mut failures = Vec::new();
    let mut first_seen: BTreeMap<String, u64> = BTreeMap::new();
    // (coverage run) The paths of each seed that was the first to exercise one, and the case that found the last.
    let mut paths_of: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut last_new = 0;
    let corpus = corpus();
    let one = |input: Input| -> Result<Stats, String> {
        *cases.borrow_mut() += 1;
        if trace {
            say(&format!("fuzz case {}", input.replay()));
        }
        let r = run(input);
        if let Ok(s) = &r {
            total.borrow_mut().merge(s);
        }
        r
    };
    // The corpus, then (coverage run only) seeds from the master seed.
    for n in 0.. {
        let input = match corpus.get(n) {
            Some((Stored::Seed(s), _)) => Input::Seed(*s),
            Some((Stored::Script(s), _)) => Input::Script(s),
            None if !cover || start.elapsed() >= budget || failures.len() >= 5 => break,
            None => Input::Seed(mix(master.wrapping_add((n - corpus.len()) as u64))),
        };
        match one(input) {
            Ok(s) => {
                if let Input::Seed(seed) = input {
                    for k in s.by_label.keys() {
                        if !first_seen.contains_key(k) {
                            first_seen.insert(k.clone(), seed);
                            paths_of.insert(seed, s.by_label.keys().cloned().collect());
                            last_new = n + 1;
                        }
                    }
                }
            }
            Err(e) => {
                say(&format!("fuzz FAILURE {e}"));
                failures.push(e);
            }
        }
    }
    if !cover {
        let strategy = script::script();
        let quiet = quiet_panics();
        let mut round = 0u64;
        while failures.is_empty() && start.elapsed() < budget {
            let outcome = search(&strategy, round_seed(master, round), ROUND, Duration::from_secs(300), |s| {
                one(Input::Script(s)).map(|_| ())
            });
            if let Err((found, minimal, _)) = outcome {
                // The minimal case's own report, with its log.
                let e =
                    run(Input::Script(&minimal)).err().unwrap_or_else(|| "the minimal case passed on a rerun".into());
                say(&format!("fuzz FAILURE (shrunk from {} calls) {e}", found.ops.len()));
                failures.push(e);
            }
            round += 1;
        }
        drop(quiet);
    }
    let total = total.into_inner();
    say(&format!(
        "fuzz: {} cases ({} from the corpus), {} calls, {} dense checks in {:.1}s (master seed 0x{master:x}); statuses \
         {:?}; {} decisions past the end of a draw list, most draws per call {:?}",
        cases.into_inner(),
        corpus.len(),
        total.calls,
        total.dense_checks,
        start.elapsed().as_secs_f64(),
        total.by_status,
        total.exhausted,
        total.draws_used,
    ));
    if cover {
        for (k, s) in &first_seen {
            say(&format!("0x{s:016x}  # {k} ({} calls)", total.by_label[k]));
        }
        let kept = greedy_cover(&paths_of);
        say(&format!(
            "fuzz: {} paths, the last first exercised by case {last_new}; {} seeds cover them all (the coverage \
             seeds of tests/fuzz-corpus/seeds.txt, each named with the paths it is kept for):",
            first_seen.len(),
            kept.len()
        ));
        for (s, paths) in &kept {
            say(&format!("0x{s:016x}  # {}", paths.join(", ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing fuzz case(s); replay one with the setting shown:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|e| e.lines().next().unwrap_or_default().to_string()
                + "\n"
                + e.lines().find(|l| l.trim_start().starts_with("replay:")).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
