//! Property-based fuzzing of the whole C API on the CPU backend: see tests/fuzz_engine/mod.rs for what is
//! generated and checked. Seeded and time-bounded: the corpus (tests/fuzz-corpus/seeds.txt) first, then random
//! cases from a fixed master seed for HIP_ATTN_FUZZ_SECONDS (default 20). Replay one case with
//! `HIP_ATTN_FUZZ_SEED=0x... cargo test --test fuzz -- --nocapture`; explore with HIP_ATTN_FUZZ_MASTER=time.
mod fuzz_engine;

#[test]
fn fuzz_cpu_backend() {
    fuzz_engine::main_entry(20.0);
}
