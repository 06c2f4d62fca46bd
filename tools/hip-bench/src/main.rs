//! hip-bench: the project's benchmark program. Protocol and targets: docs/BENCHMARK-PROTOCOL.md; the algorithm
//! whose work is counted: docs/ALGORITHM.md.
//!
//! It drives hip-attn only through its C API (`hip_ctx_create`, the size queries, `hip_prefill`,
//! `hip_decode_step`), called from Rust exactly as an engine calls them, on device memory it allocates itself
//! through the CUDA driver API (cudarc's `result` layer) and on a non-blocking stream it creates.
//!
//! What each configuration (one table row, or two for decode: eager and graph) measures; `--only` matches the
//! configuration ids below as substrings:
//! - `ctx-create/MHA-32`: wall time of `hip_ctx_create` (CUDA, MHA-32 headline settings) with an empty kernel
//!   cache directory ("cold": NVRTC compiles), then again with that directory filled ("kernel cache"). The driver
//!   and the primary context are already initialised in both, as in an engine that creates contexts at start-up.
//! - `prefill/<shape>/<T>`: one causal sequence of T tokens (Tq = Tk = T), HiP k=512 bq=32 bk=2 sink 4 window 128:
//!   mask search plus sparse attention, the whole `hip_prefill` call.
//! - `exact-window/<shape>/32k`: exact causal attention through the same compiled kernels (identical compile
//!   options to the headline rows): window >= T, so every query's local set is [sink, p] and the search domain is
//!   empty. The other exact route, k >= T, needs Kb = 16384 key blocks, above the CUDA backend's limit
//!   (1024 for head_dim 128), so `exact-k/MHA-32/32k` takes it with bk = 64 (k = T = 32768, Kb = 512, NB <= Kb:
//!   every block selected, no search iteration): the selected-block path rather than the window path.
//!   `exact-window-bq128/MHA-32/32k`: the window route with bq = 128 (each gathered key tile serves 128 queries).
//! - `decode-cached/<shape>/<T>`: one decode step against a paged KV cache (page size 64, pages shuffled in the
//!   pool as an engine's allocator leaves them) whose mask state was filled by a searching step; refresh = 2^30,
//!   so no timed step searches. `decode-cached-b16/...`: the same with 16 sequences per step.
//! - `decode-search/<shape>/<T>`: refresh = 1, every timed step searches. `decode-k2048-search/MHA-32/128k`: the
//!   same with k = 2048 (Kb = 1024, the largest at head_dim 128), for changes at large budgets; no target.
//!   Each decode configuration is timed eagerly (`hip_decode_step` per step) and as a CUDA graph replay (the step
//!   captured once per input set, replayed): launch latency dominates a step of a few microseconds.
//! - `--scan` replaces these with SCAN selection's rows and their baselines (scan.rs); `--quality-gpu` measures
//!   the quality of the backend's own selection (quality_gpu.rs).
//!
//! Timing (the protocol's): warm-up first; then one CUDA event pair around every run; the median is reported (prefill:
//! 20 to 50 runs; decode: 300 steps eager and 300 graph replays). Inputs are fresh random bf16 (uniform in [-1, 1),
//! never zeros) from a seed printed in the header (`--seed` replays it). Prefill inputs are always several times
//! the L2 (the smallest, GQA-8 at 8k, is 160 MB). A decode step reads only its attended keys (about 10 MB for
//! MHA-32), which would sit in L2 after the first step, so decode rotates among several input sets (own query,
//! mask state and sequence length, 256 tokens apart so that even the local windows differ), enough that one round
//! touches at least 4x the L2.
//!
//! Correctness in the same run: after timing, the output is poisoned (0xFF bytes = NaN), one more call (and for
//! decode one graph replay) is made, and sampled units of the real problem are recomputed by the CPU backend (a
//! `HIP_ATTN_BACKEND_CPU` context on host memory): for prefill, query block j of a mask head is exactly a chunked
//! prefill of its bq queries over the key prefix [0, (j+1)*bq) with only that head (and its kv head); for decode,
//! one (sequence, mask head) is a single-sequence, single-kv-head decode step. The host regenerates any slice of
//! the inputs from the counter-based generator, so multi-GiB device tensors need no host copy. The row reports the
//! output relative L2 error over all sampled units (bf16 tolerance 1e-2). Masks are compared too: where the
//! selected blocks differ, the unit's output is checked against exact f64 attention over the device's own mask,
//! and the search is replayed in f64 (tools/testkit): the difference counts as a legitimate near-tie when the
//! smallest score gap at a cut is below `check::TIE_EPS`, otherwise as a mask mismatch (more than half of the
//! units fail the row).
//!
//! `--self-test` runs the same check code with the CPU backend standing in for the device (no GPU needed): every
//! unit must then match exactly. It checks the harness (slicing, head mapping, workspace and mask-state reads).
//!
//! Modules: `cli` (command line), `workloads` (shapes, settings, configurations, counted work), `inputs`
//! (generated tensors), `device` (CUDA memory, events, graphs), `api` (hip-attn's C API), `bench` (the timed
//! runs), `check` (against the CPU reference), `report` (table and JSON), and the modes `quality`,
//! `quality_gpu` and `scan`.

#![warn(unsafe_op_in_unsafe_fn)]

/// eprintln! that never panics (a closed stderr must not abort a run whose results still go to the JSON file).
macro_rules! elog {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod api;
mod bench;
mod check;
mod cli;
mod dense;
mod device;
mod inputs;
mod quality;
mod quality_gpu;
mod report;
mod scan;
mod workloads;

use bench::*;
use check::*;
use device::*;
use hip_attn::{hip_abi_version, HIP_ATTN_ABI_VERSION};
use report::*;
use std::time::Instant;
use workloads::*;

// ---------------------------------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------------------------------

fn main() {
    std::process::exit(real_main());
}

fn real_main() -> i32 {
    let args = match cli::parse(std::env::args().collect()) {
        cli::Parsed::Run(a) => *a,
        cli::Parsed::Exit(code) => return code,
    };
    if hip_abi_version() != HIP_ATTN_ABI_VERSION {
        elog!("hip-bench: library ABI {} != header ABI {HIP_ATTN_ABI_VERSION}", hip_abi_version());
        return 1;
    }
    let dense = match &args.dense {
        None => None,
        Some(_) if args.self_test || args.quality || args.quality_gpu => {
            elog!(
                "hip-bench: --dense applies to speed runs (the default set, --scan) and --plan, not to --self-test, \
                 --quality or --quality-gpu"
            );
            return cli::EXIT_USAGE;
        }
        // Read before the device is opened: a bad file costs no device time.
        Some(path) => match dense::load(path) {
            Ok(d) => Some(d),
            Err(e) => {
                elog!("hip-bench: {e}");
                return cli::EXIT_USAGE;
            }
        },
    };
    if args.plan {
        return print_plan(&args, dense.as_ref());
    }
    if args.self_test {
        return self_test(&args);
    }
    if args.quality {
        return quality::run_mode(&args);
    }
    if args.quality_gpu {
        return quality_gpu::run(&args);
    }
    let dev = match open_device(args.device) {
        Ok(d) => d,
        Err(OpenError::NoDevice(msg)) => {
            elog!("no CUDA device: {msg}");
            return 2;
        }
        Err(OpenError::Cuda(msg)) => {
            elog!("hip-bench: CUDA error while opening the device: {msg}");
            return 1;
        }
    };
    let b = Bench { dev, args, start: Instant::now() };
    let header_line = format!(
        "{} (device {}, compute capability {}.{}, {} SMs, {} MB L2, {:.1} GB)",
        b.dev.name,
        b.dev.ordinal,
        b.dev.cc.0,
        b.dev.cc.1,
        b.dev.sm_count,
        b.dev.l2_bytes >> 20,
        b.dev.total_mem as f64 / 1e9
    );
    b.progress(format_args!("{header_line}; driver {}; {}; seed {}", b.dev.driver, library_line(), b.args.seed));

    let mut rows: Vec<Row> = Vec::new();
    let shapes = shapes(&b.args);
    let guarded = |f: &dyn Fn() -> Vec<Row>| -> Vec<Row> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
            let mut r = Row::new("internal", "internal error", "-", 0, 1, None);
            r.error = Some(format!("panic: {}", panic_text(&p)));
            vec![r]
        })
    };
    if b.wanted("ctx-create/MHA-32") && !b.args.scan {
        rows.extend(guarded(&|| ctx_create_rows(&b)));
    }
    let (pjobs, djobs) = job_lists(&b.args, &shapes);
    let dense_shapes = dense::shapes_of(&pjobs, &djobs);
    for job in pjobs {
        if b.wanted(&job.id) {
            rows.extend(guarded(&|| vec![prefill_row(&b, &job)]));
        }
    }
    for job in djobs {
        rows.extend(guarded(&|| decode_rows(&b, &job)));
    }

    if rows.is_empty() {
        elog!("hip-bench: no configuration matches --only {}", b.args.only.join(","));
        return cli::EXIT_USAGE;
    }
    let elapsed = b.start.elapsed().as_secs_f64();
    b.progress(format_args!("finished {} rows in {elapsed:.1} s", rows.len()));
    let header = Header::speed_run(header_line, b.dev.driver.clone(), &b.args, elapsed);
    let (mut header, mut text) = if b.args.scan { scan::with_ratios(header, &rows) } else { (header, String::new()) };
    let compared = dense.as_ref().map(|d| dense::compare(d, &dense_shapes, &dense::medians(&rows)));
    if let (Some(d), Some(c)) = (&dense, &compared) {
        dense::add_to_header(&mut header, d, c);
        text.push_str(&dense::markdown(d, &header.device, c));
    }
    text.insert_str(0, &markdown(&header, &rows));
    let printed = emit(&text);
    let path = b.args.json.clone().unwrap_or_else(|| "hip-bench.json".into());
    let mut report = json(&header, &rows);
    if let Some(c) = &compared {
        dense::annotate(&mut report, c);
    }
    let json_ok = write_json(&path, "hip-bench.json", &json_text(&report));
    let failed = rows.iter().filter(|r| r.failed()).count();
    if failed > 0 {
        elog!("hip-bench: {failed} row(s) failed (check or error)");
    }
    if failed > 0 || !json_ok || !printed {
        1
    } else {
        0
    }
}
