//! The one test kit of this repository (issue 14): the tests, the fuzz engine and hip-bench take their random
//! numbers, their f64 dense attention and their f64 replay of the mask search from here, so that a fix to any of
//! them is made once.
//!
//! It deliberately depends on nothing, hip-attn included: an oracle that shared code with what it checks would
//! share its bugs too.

pub mod dense;
pub mod replay;
mod rng;

pub use dense::{attend, dot, Attention};
pub use replay::{branch_score, scan_margin, tree_replay};
pub use rng::{mix64, Rng, GOLDEN};
