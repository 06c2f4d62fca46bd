//! Property-based fuzzing of the whole C API on the CPU backend: see tests/fuzz_engine/mod.rs for what is
//! generated and checked. Seeded and time-bounded: the corpus (tests/fuzz-corpus/seeds.txt) first, then cases
//! that proptest generates from a fixed master seed for HIP_ATTN_FUZZ_SECONDS (default 20); a failing case is
//! shrunk to a minimal one and printed with the setting that replays it, `HIP_ATTN_FUZZ_CASE='...'` (or
//! `HIP_ATTN_FUZZ_SEED=0x...` for a corpus seed): `HIP_ATTN_FUZZ_CASE='...' cargo test --test fuzz -- --nocapture`.
//! Explore with HIP_ATTN_FUZZ_MASTER=time.
mod fuzz_engine;

use fuzz_engine::script::{self, Op, Script};
use fuzz_engine::{run, search, Input, Stored};
use std::time::Duration;

#[test]
fn fuzz_cpu_backend() {
    fuzz_engine::main_entry(20.0);
}

fn nonzero_draws(s: &Script) -> usize {
    std::iter::once(&s.create).chain(s.ops.iter().map(|o| &o.1)).flat_map(|d| &d.vals).filter(|&&v| v != 0).count()
}

/// Shrinking works on the real engine: a property planted to fail whenever a case makes a prefill call with a
/// misaligned stride is found false, and proptest shrinks the case it found to one prefill call whose only
/// fault is that stride, on the simplest configuration.
#[test]
fn a_planted_failure_shrinks_to_a_minimal_case() {
    let planted = |s: &Script| -> Result<(), String> {
        let stats = run(Input::Script(s))?;
        match stats.by_label.contains_key("prefill:stride_misaligned") {
            true => Err("planted: a prefill call with a misaligned stride".into()),
            false => Ok(()),
        }
    };
    let (found, minimal, why) = search(&script::script(), [14; 32], 10_000, Duration::from_secs(300), planted)
        .expect_err("the planted property holds for 10000 cases");
    eprintln!("found ({} calls, {} non-zero draws): {found}", found.ops.len(), nonzero_draws(&found));
    eprintln!("shrunk ({} calls, {} non-zero draws): {minimal}", minimal.ops.len(), nonzero_draws(&minimal));
    assert!(why.starts_with("planted"), "{why}");
    assert_eq!(minimal.ops.len(), 1, "{minimal}");
    assert_eq!(minimal.ops[0].0, Op::Prefill, "{minimal}");
    let stats = run(Input::Script(&minimal)).unwrap();
    let labels: Vec<&String> = stats.by_label.keys().filter(|l| !l.starts_with("create:")).collect();
    assert_eq!(labels, ["prefill:stride_misaligned"], "{minimal}");
    assert!(nonzero_draws(&minimal) < nonzero_draws(&found).max(2), "{minimal}");
    // The printed form replays the same case.
    let again: Script = minimal.to_string().parse().unwrap();
    assert!(planted(&again).is_err());
}

/// Every corpus line's comment names the paths (`call:label`, as the coverage run prints them) that its case is
/// kept for, and the case still exercises each of them: a generator change that moves a case off its paths fails
/// here instead of silently (regenerate the coverage seeds as tests/fuzz-corpus/seeds.txt says).
#[test]
fn corpus_cases_exercise_the_paths_their_comments_name() {
    let is_label = |w: &&str| {
        w.contains(':') && !w.ends_with(':') && w.chars().all(|c| c.is_ascii_lowercase() || "_:0123456789".contains(c))
    };
    let mut named = 0;
    let mut stale = Vec::new();
    for (case, comment) in fuzz_engine::corpus() {
        let input = match &case {
            Stored::Seed(s) => Input::Seed(*s),
            Stored::Script(s) => Input::Script(s),
        };
        let stats = run(input).unwrap_or_else(|e| panic!("{e}"));
        let labels: Vec<&str> = comment.split([',', ' ']).filter(is_label).collect();
        if labels.is_empty() {
            stale.push(format!("{}: the comment {comment:?} names no path", input.replay()));
        }
        named += labels.len();
        let missed: Vec<&str> = labels.into_iter().filter(|l| !stats.by_label.contains_key(*l)).collect();
        if !missed.is_empty() {
            stale.push(format!(
                "{}: the comment names {missed:?}, but the case exercised {:?}",
                input.replay(),
                stats.by_label.keys().collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "{} corpus line(s) name no path or no longer reach what they name:\n{}",
        stale.len(),
        stale.join("\n")
    );
    assert!(named > 100, "only {named} paths named in the corpus comments");
}
