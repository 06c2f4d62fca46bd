//! Proptest's side of the engine: one strategy per entry point, each a list of draws for that entry point's
//! generator (see draw.rs), and a case as a script of them, with a text form that replays it
//! (`HIP_ATTN_FUZZ_CASE=...`). A script shrinks by dropping calls, turning calls into earlier kinds (prefill
//! first) and shrinking each call's draws toward 0 independently of the other calls'.
use super::{Rng, DRAW_MAX};
use proptest::collection::vec;
use proptest::prelude::{any, prop_oneof, Strategy};

/// The decisions one call's generator may take: enough that a generated call almost never runs out (a call
/// that does sees zeros, a valid but less varied tail); `Stats::exhausted` counts how often it happens.
pub const CREATE_DRAWS: usize = 32;
pub const PREFILL_DRAWS: usize = 80;
pub const DECODE_DRAWS: usize = 64;
pub const MERGE_DRAWS: usize = 44;
pub const SIZES_DRAWS: usize = 16;
pub const NULLS_DRAWS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Prefill,
    Decode,
    Merge,
    Sizes,
    Nulls,
}

const OP_NAMES: [(Op, &str); 5] = [
    (Op::Prefill, "prefill"),
    (Op::Decode, "decode"),
    (Op::Merge, "merge"),
    (Op::Sizes, "sizes"),
    (Op::Nulls, "nulls"),
];

impl Op {
    pub fn name(self) -> &'static str {
        OP_NAMES.iter().find(|x| x.0 == self).unwrap().1
    }
}

/// One call's draws: the decisions, and the seed of its bulk data (tensor values, garbage bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draws {
    pub data: u64,
    pub vals: Vec<u64>,
}

impl Draws {
    pub fn rng(&self) -> Rng {
        Rng::from_draws(&self.vals, self.data)
    }
}

/// A case: context creation, then calls in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    pub create: Draws,
    pub ops: Vec<(Op, Draws)>,
}

fn draws(n: usize) -> impl Strategy<Value = Draws> {
    (any::<u64>(), vec(0..=DRAW_MAX, n)).prop_map(|(data, vals)| Draws { data, vals })
}

/// hip_ctx_create: the configuration, its struct faults and the output pointer.
pub fn create() -> impl Strategy<Value = Draws> {
    draws(CREATE_DRAWS)
}

/// hip_prefill.
pub fn prefill() -> impl Strategy<Value = (Op, Draws)> {
    draws(PREFILL_DRAWS).prop_map(|d| (Op::Prefill, d))
}

/// hip_decode_step (a step of the case's decode session or a new session).
pub fn decode() -> impl Strategy<Value = (Op, Draws)> {
    draws(DECODE_DRAWS).prop_map(|d| (Op::Decode, d))
}

/// hip_merge_states.
pub fn merge() -> impl Strategy<Value = (Op, Draws)> {
    draws(MERGE_DRAWS).prop_map(|d| (Op::Merge, d))
}

/// The size queries (hip_prefill_workspace_size, hip_decode_workspace_size, hip_mask_state_size).
pub fn sizes() -> impl Strategy<Value = (Op, Draws)> {
    draws(SIZES_DRAWS).prop_map(|d| (Op::Sizes, d))
}

/// A run entry point with a NULL context or NULL arguments.
pub fn nulls() -> impl Strategy<Value = (Op, Draws)> {
    draws(NULLS_DRAWS).prop_map(|d| (Op::Nulls, d))
}

/// One call, in the proportions of the seeded generator (run_case).
pub fn op() -> impl Strategy<Value = (Op, Draws)> {
    prop_oneof![35 => prefill(), 40 => decode(), 13 => merge(), 9 => sizes(), 3 => nulls()]
}

pub fn script() -> impl Strategy<Value = Script> {
    (create(), vec(op(), 1..=6)).prop_map(|(create, ops)| Script { create, ops })
}

// ---------------------------------------------------------------------------------------------------------------
// The replay form: `create=DATA:V,V,...;prefill=DATA:V,...;...`, numbers in hex, trailing zero draws left out
// (a list that runs out answers 0, so the case is the same).

fn draws_text(d: &Draws) -> String {
    let keep = d.vals.iter().rposition(|&v| v != 0).map_or(0, |i| i + 1);
    let vals: Vec<String> = d.vals[..keep].iter().map(|v| format!("{v:x}")).collect();
    format!("{:x}:{}", d.data, vals.join(","))
}

impl std::fmt::Display for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "create={}", draws_text(&self.create))?;
        for (op, d) in &self.ops {
            write!(f, ";{}={}", op.name(), draws_text(d))?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Script {
    type Err = String;
    fn from_str(s: &str) -> Result<Script, String> {
        let hex = |x: &str| u64::from_str_radix(x.trim(), 16).map_err(|e| format!("{x:?}: {e}"));
        let mut create = None;
        let mut ops = Vec::new();
        for part in s.trim().split(';').filter(|p| !p.trim().is_empty()) {
            let (name, rest) = part.split_once('=').ok_or_else(|| format!("{part:?}: no '='"))?;
            let (data, vals) = rest.split_once(':').ok_or_else(|| format!("{part:?}: no ':'"))?;
            let vals = vals.split(',').filter(|v| !v.trim().is_empty()).map(hex).collect::<Result<Vec<_>, _>>()?;
            let d = Draws { data: hex(data)?, vals };
            match name.trim() {
                "create" if create.is_none() && ops.is_empty() => create = Some(d),
                n => {
                    let op = OP_NAMES.iter().find(|x| x.1 == n).ok_or_else(|| format!("unknown call {n:?}"))?.0;
                    ops.push((op, d));
                }
            }
        }
        Ok(Script { create: create.ok_or("no create=")?, ops })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    #[test]
    fn replay_form_round_trips() {
        let mut runner = TestRunner::deterministic();
        for _ in 0..50 {
            let mut s = script().new_tree(&mut runner).unwrap().current();
            let parsed: Script = s.to_string().parse().unwrap();
            // Trailing zero draws are not printed: the same case.
            for d in std::iter::once(&mut s.create).chain(s.ops.iter_mut().map(|o| &mut o.1)) {
                while d.vals.last() == Some(&0) {
                    d.vals.pop();
                }
            }
            assert_eq!(parsed, s);
        }
    }
}
