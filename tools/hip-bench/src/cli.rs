//! The command line (clap). Flags and their meanings are those hip-bench always had, so that scripts/ and the
//! commands recorded in bench-results/ still run; `hip-bench --help` documents them.

use crate::workloads::DEFAULT_BUDGET_S;
use clap::error::ErrorKind;
use clap::Parser;
use std::path::PathBuf;

/// Exit status for a bad command line (sysexits' EX_USAGE), as scripts/ expect.
pub(crate) const EXIT_USAGE: i32 = 64;

#[derive(Parser, Debug)]
#[command(
    name = "hip-bench",
    about = "hip-attn's benchmark program: times prefill and decode through the C API on a CUDA device and checks \
             every row against the CPU backend. Protocol and targets: docs/BENCHMARK-PROTOCOL.md.",
    after_help = "Progress goes to stderr, the Markdown table to stdout. Exit status: 0 all configurations ran and \
                  matched the CPU reference (missed speed targets do not change it), 1 a configuration failed its \
                  check or hit an error, 2 no CUDA device, 64 bad command line.",
    args_override_self = true,
    term_width = 118
)]
struct Cli {
    /// Reduced set for smoke tests: context creation, prefill 8k, decode 32k.
    #[arg(long)]
    quick: bool,
    /// Run only configurations whose id contains PATTERN (case-insensitive; comma = or; repeatable), e.g.
    /// --only prefill/MHA-32, --only decode-cached, --only 128k.
    #[arg(long, value_name = "PATTERN[,PATTERN...]", action = clap::ArgAction::Append)]
    only: Vec<String>,
    /// Where to write the JSON results [hip-bench.json; --quality: hip-quality.json; --quality-gpu:
    /// hip-quality-gpu.json]; with $OUT set, also $OUT/ under the default name.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Add prefill 512k (skipped with a message if device memory does not allow it).
    #[arg(long = "with-512k")]
    with_512k: bool,
    /// Input seed (default: from the clock; printed either way).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// CUDA device.
    #[arg(long, value_name = "ORDINAL", default_value_t = 0, allow_negative_numbers = true)]
    device: i32,
    /// GQA-8 with one mask search per q head (default: one per kv head, as the GQA rows of
    /// docs/BENCHMARK-PROTOCOL.md).
    #[arg(long = "gqa-mask-per-q-head")]
    gqa_mask_per_q_head: bool,
    /// Skip configurations that would start after this much time.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_BUDGET_S)]
    budget: f64,
    /// Print the configurations with their counted FLOPs, bytes and floors; no GPU needed.
    #[arg(long)]
    plan: bool,
    /// Run the correctness harness with the CPU backend standing in for the GPU; no GPU needed.
    #[arg(long = "self-test")]
    self_test: bool,
    /// Quality beside speed (docs/BENCHMARK-PROTOCOL.md): attention-mass recall and output error against dense
    /// attention on random, drifting and rotary inputs at 8k, 32k, 128k (--quick: 8k); computed on the host from
    /// the definition's functions, no GPU needed; JSON to hip-quality.json.
    #[arg(long)]
    quality: bool,
    /// SCAN selection's rows instead of the default set (with --only, --plan as usual): decode with SCAN every
    /// step and at refresh 8 (per step over whole cycles of 1 SCAN + 7 cached steps) beside dense decode
    /// (window >= T) at 128k and 1M and batch 16 at 32k; prefill 128k with prefill_scan_tail 1024 beside the same
    /// without; MHA-32 and GQA-8; ratios after the table. Rows the backend does not support are reported as
    /// skipped (unsupported).
    #[arg(long)]
    scan: bool,
    /// Quality of the backend's own decode selection, TREE and SCAN, k = 128/512/2048 at 32k, 128k (32 heads)
    /// and k = 512 at 1M (8 heads): attention-mass recall and output error against dense f64 attention,
    /// single-salient-key recall, masks against the definition (--quick: 32k); JSON to hip-quality-gpu.json.
    #[arg(long = "quality-gpu")]
    quality_gpu: bool,
    /// With --quality-gpu: the CPU backend at 4k instead (no GPU needed).
    #[arg(long)]
    cpu: bool,
    /// Dense attention measured on the same card (scripts/dense-baseline.py --json FILE): beside every prefill and
    /// decode row, the dense flash and cuDNN times, the faster of the two, and the ratio dense ms / hip-attn ms (> 1:
    /// hip-attn is faster), in a table after the main one and as JSON fields; rows whose shape the file lacks say
    /// so. For speed runs (the default set, --scan); with --plan, the dense shape of every configuration.
    #[arg(long, value_name = "FILE")]
    dense: Option<PathBuf>,
    /// The default set's prefill rows (prefill/<shape>/<length>) with HIP_ATTN_FLAG_FP8_SEARCH_SCORES: the tree
    /// search scored on E4M3 copies of Q and K (docs/ALGORITHM.md section 9), checked against the CPU backend with
    /// the same flag. Same row ids; the report's command line says which.
    #[arg(long = "fp8-search")]
    fp8_search: bool,
}

/// The run's settings, as the modes use them.
pub(crate) struct Args {
    pub(crate) quick: bool,
    /// Lower-case patterns; empty = every configuration.
    pub(crate) only: Vec<String>,
    /// --json PATH; each mode has its own default file name.
    pub(crate) json: Option<PathBuf>,
    pub(crate) with_512k: bool,
    pub(crate) seed: u64,
    pub(crate) device: i32,
    pub(crate) gqa_per_q_head: bool,
    pub(crate) budget_s: f64,
    pub(crate) plan: bool,
    pub(crate) self_test: bool,
    pub(crate) quality: bool,
    /// --scan: the SCAN rows and their baselines instead of the default set.
    pub(crate) scan: bool,
    pub(crate) quality_gpu: bool,
    /// --cpu: --quality-gpu on the CPU backend at small sizes.
    pub(crate) cpu: bool,
    /// --dense FILE: dense baseline rows to compare with (dense.rs).
    pub(crate) dense: Option<PathBuf>,
    /// --fp8-search: the prefill rows with HIP_ATTN_FLAG_FP8_SEARCH_SCORES.
    pub(crate) fp8_search: bool,
    /// The command as typed, for the report.
    pub(crate) command_line: String,
}

/// What the command line asks for: a run, or an exit status after clap printed help or an error.
pub(crate) enum Parsed {
    Run(Box<Args>),
    Exit(i32),
}

pub(crate) fn parse(argv: Vec<String>) -> Parsed {
    let cli = match Cli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return Parsed::Exit(match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => EXIT_USAGE,
            });
        }
    };
    let seed = cli.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let only = cli.only.iter().flat_map(|s| s.split(',')).filter(|s| !s.is_empty()).map(|s| s.to_lowercase()).collect();
    Parsed::Run(Box::new(Args {
        quick: cli.quick,
        only,
        json: cli.json,
        with_512k: cli.with_512k,
        seed,
        device: cli.device,
        gqa_per_q_head: cli.gqa_mask_per_q_head,
        budget_s: cli.budget,
        plan: cli.plan,
        self_test: cli.self_test,
        quality: cli.quality,
        scan: cli.scan,
        quality_gpu: cli.quality_gpu,
        cpu: cli.cpu,
        dense: cli.dense,
        fp8_search: cli.fp8_search,
        command_line: argv.join(" "),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Args {
        match parse(line.split(' ').map(String::from).collect()) {
            Parsed::Run(a) => *a,
            Parsed::Exit(code) => panic!("{line:?} exits with {code}"),
        }
    }

    #[test]
    fn flags_keep_their_old_spellings_and_meanings() {
        let a = args(
            "hip-bench --quick --only Prefill/MHA-32,,128k --only=decode --json=x.json --seed 7 --device=1 \
                      --budget 20.5 --gqa-mask-per-q-head --with-512k --scan --dense d.json",
        );
        assert_eq!(a.dense.as_deref(), Some(std::path::Path::new("d.json")));
        assert!(a.quick && a.gqa_per_q_head && a.with_512k && a.scan && !a.plan);
        assert_eq!(a.only, ["prefill/mha-32", "128k", "decode"]);
        assert_eq!(a.json.as_deref(), Some(std::path::Path::new("x.json")));
        assert_eq!((a.seed, a.device, a.budget_s), (7, 1, 20.5));
        let b = args("hip-bench --quality-gpu --cpu --self-test --plan --quality --quick --quick");
        assert!(b.quality_gpu && b.cpu && b.self_test && b.plan && b.quality);
        assert_eq!((b.device, b.budget_s, b.json), (0, DEFAULT_BUDGET_S, None));
    }

    #[test]
    fn a_bad_command_line_exits_64() {
        for line in ["hip-bench --frobnicate", "hip-bench --seed", "hip-bench --seed x", "hip-bench --budget y"] {
            assert!(matches!(parse(line.split(' ').map(String::from).collect()), Parsed::Exit(EXIT_USAGE)), "{line}");
        }
    }
}
