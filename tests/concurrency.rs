//! Concurrency on the CPU backend: contexts are immutable after creation, so (a) many threads each with their
//! own context and (b) one context shared by many threads with separate workspaces and outputs must give
//! results bit-identical to a serial run; (c) error messages are per thread (hip_last_error_message) and per
//! context (hip_ctx_last_error, visible from any thread). tests/memcheck.rs runs the C twin of (b) under
//! valgrind's helgrind (the "ThreadSanitizer or equivalent": TSan on Rust needs a nightly toolchain).
mod common;
use common::*;
use hip_attn::hip_status::*;
use hip_attn::tensor::DType;
use hip_attn::*;
use std::ffi::CStr;
use std::mem::ManuallyDrop;
use std::sync::{Arc, Barrier};

const THREADS: usize = 8;

/// A context handle that may cross threads (the C API documents contexts as shareable).
#[derive(Clone, Copy)]
struct Shared(*mut hip_ctx);
// SAFETY: a hip_ctx is immutable after creation apart from its mutex-protected last-error message.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}
impl Shared {
    /// The raw handle (a method, so that closures capture the whole Send wrapper, not its pointer field).
    fn ptr(self) -> *mut hip_ctx {
        self.0
    }
}

fn cfg() -> hip_config {
    let mut c = config(DType::Bf16, 64, 4, 2);
    (c.k, c.bq, c.bk, c.sink, c.window, c.refresh) = (8, 4, 2, 2, 6, 2);
    c
}

/// Everything one job writes, as bits: a prefill (o, lse, workspace masks, mask state) and three decode steps on
/// a paged cache (o, lse, mask state after each).
fn job(ctx: Shared, seed: u64) -> Vec<u32> {
    let ctx = ManuallyDrop::new(Ctx(ctx.0)); // borrowed: the owner destroys it
    let mut rng = Rng::new(seed);
    let dt = DType::Bf16;
    let tq = [5 + rng.below(20), 1 + rng.below(8)];
    let tk = [tq[0] + rng.below(30), tq[1] + rng.below(40)];
    let p = Problem::new(&mut rng, dt, 64, 4, 2, &tq, &tk, 8);
    let pre = run_prefill(&Host, &ctx, &p, true).expect("prefill");
    let mut bits: Vec<u32> = pre.o.iter().chain(&pre.lse).map(|x| x.to_bits()).collect();
    bits.extend(pre.workspace.iter().map(|&b| b as u32));
    bits.extend(pre.state.iter().map(|&b| b as u32));
    let cap = 64;
    let kv: Vec<Tensor> = (0..2).map(|_| Tensor::random(&mut rng, dt, cap, 2, 64, 0, 1.0)).collect();
    let cache = Cache { k: kv.clone(), v: kv, page_size: Some(8), capacity: cap }.upload(&Host, dt, &mut rng);
    let state = Host.zeroed(ctx.state_size(2));
    for step in 0..3 {
        let q = Tensor::random(&mut rng, dt, 2, 4, 64, 0, 1.0);
        let lens = [40 + step, 50 + step];
        let out = run_decode(&Host, &ctx, dt, &q, &cache, &lens, cap, &state).expect("decode");
        bits.extend(out.o.iter().chain(&out.lse).map(|x| x.to_bits()));
        bits.extend(Host.download(&state).iter().map(|&b| b as u32));
    }
    bits
}

fn serial() -> Vec<Vec<u32>> {
    (0..THREADS as u64)
        .map(|i| {
            let c = Ctx::new(&cfg()).unwrap();
            job(Shared(c.0), 1000 + i)
        })
        .collect()
}

#[test]
fn threads_with_their_own_contexts_match_a_serial_run() {
    let want = serial();
    let barrier = Arc::new(Barrier::new(THREADS));
    let got: Vec<Vec<u32>> = (0..THREADS as u64)
        .map(|i| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                let c = Ctx::new(&cfg()).unwrap();
                b.wait();
                job(Shared(c.0), 1000 + i)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    for i in 0..THREADS {
        assert!(got[i] == want[i], "thread {i} (own context) differs from the serial run");
    }
}

#[test]
fn one_context_shared_by_threads_matches_a_serial_run() {
    let want = serial();
    let owner = Ctx::new(&cfg()).unwrap();
    let ctx = Shared(owner.0);
    for round in 0..2 {
        // Round 0: different inputs per thread; round 1: the same input on every thread.
        let barrier = Arc::new(Barrier::new(THREADS));
        let got: Vec<Vec<u32>> = (0..THREADS as u64)
            .map(|i| {
                let b = barrier.clone();
                let seed = if round == 0 { 1000 + i } else { 1000 };
                std::thread::spawn(move || {
                    b.wait();
                    job(ctx, seed)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        for i in 0..THREADS {
            let w = if round == 0 { &want[i] } else { &want[0] };
            assert!(got[i] == *w, "round {round}: thread {i} (shared context) differs from the serial run");
        }
    }
}

fn ctx_message(ctx: Shared) -> String {
    let mut buf = vec![0 as std::ffi::c_char; 512];
    // SAFETY: live context, writable buffer.
    unsafe { hip_ctx_last_error(ctx.0, buf.as_mut_ptr(), buf.len()) };
    unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}

#[test]
fn error_messages_are_per_thread_and_per_context() {
    let owner = Ctx::new(&cfg()).unwrap();
    let ctx = Shared(owner.0);
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let handles: Vec<_> = (0..THREADS as u32)
        .map(|i| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                // Thread 0 never fails: its message stays empty whatever the others do.
                if i > 0 {
                    let mut n = 0usize;
                    let batch = (i32::MAX as u32) + i;
                    // SAFETY: live context, writable out.
                    let st = unsafe { hip_mask_state_size(ctx.ptr(), batch, &mut n) };
                    assert_eq!(st, HIP_ATTN_STATUS_INVALID_ARGUMENT);
                }
                b.wait(); // every failure has happened
                let mine = last_error();
                if i == 0 {
                    assert_eq!(mine, "", "thread 0 sees another thread's message");
                } else {
                    assert!(mine.contains(&format!("batch_size ({})", (i32::MAX as u32) + i)), "thread {i}: {mine:?}");
                }
                b.wait();
            })
        })
        .collect();
    barrier.wait();
    // The context's message is the latest failure on it, whichever thread made it.
    let seen = ctx_message(ctx);
    assert!((1..THREADS as u32).any(|i| seen.contains(&format!("batch_size ({})", (i32::MAX as u32) + i))), "{seen:?}");
    barrier.wait();
    for h in handles {
        h.join().unwrap();
    }
    // A failure on another thread is visible here through the context, not through this thread's message.
    assert_eq!(last_error(), "");
    std::thread::spawn(move || {
        let mut n = 0usize;
        // SAFETY: live context, writable out.
        let st = unsafe { hip_prefill_workspace_size(ctx.ptr(), 1, 0, 1, 1, &mut n) };
        assert_eq!(st, HIP_ATTN_STATUS_INVALID_ARGUMENT);
    })
    .join()
    .unwrap();
    assert!(ctx_message(ctx).contains("total_q (0)"), "{}", ctx_message(ctx));
    assert_eq!(last_error(), "");
    // A second context keeps its own message.
    let other = Ctx::new(&cfg()).unwrap();
    assert_eq!(ctx_message(Shared(other.0)), "");
}
