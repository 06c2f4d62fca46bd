//! `--dense FILE`: dense attention measured on the same card in the same device call (scripts/dense-baseline.py
//! --json FILE, PyTorch SDPA with the flash and the cuDNN backend) beside every prefill and decode row, and the
//! ratio dense ms / hip-attn ms (> 1: hip-attn is faster) against the faster backend, so that each claim is side by
//! side with its baseline (docs/BENCHMARK-PROTOCOL.md).
//!
//! A row's dense shape is the attention it computes without the sparsity: prefill is one causal sequence of T
//! tokens, decode one query per sequence over T keys (SDPA with is_causal off, which is what a causal mask gives
//! the newest query), with the row's q and kv heads, head_dim and batch. Rows whose shape the file lacks, or whose
//! dense rows hold no time, say so instead of a ratio.

use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::report::{cell_text, fmt_ms, len_label, ratio_json, Bound, Header, Ratio, Row};
use crate::workloads::{DecodeJob, PrefillJob, D, MAX_SETS, SET_SPACING};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Prefill,
    Decode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Backend {
    Flash,
    Cudnn,
}

impl Backend {
    const ALL: [Backend; 2] = [Backend::Flash, Backend::Cudnn];
    fn name(self) -> &'static str {
        match self {
            Backend::Flash => "flash",
            Backend::Cudnn => "cudnn",
        }
    }
}

/// The attention a dense row measured, and the one a hip-bench row is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct DenseShape {
    pub(crate) kind: Kind,
    pub(crate) tokens: usize,
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) batch: usize,
    pub(crate) causal: bool,
}

impl DenseShape {
    pub(crate) fn text(&self) -> String {
        let kind = match self.kind {
            Kind::Prefill => "prefill",
            Kind::Decode => "decode",
        };
        let batch = if self.batch > 1 { format!(" x{}", self.batch) } else { String::new() };
        let causal = if self.causal { ", causal" } else { "" };
        format!(
            "{kind} {}{batch}, {}/{} heads, D {}{causal}",
            len_label(self.tokens),
            self.heads,
            self.kv_heads,
            self.head_dim
        )
    }
}

/// One row of scripts/dense-baseline.py's JSON.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DenseRow {
    pub(crate) backend: Backend,
    pub(crate) kind: Kind,
    pub(crate) tokens: usize,
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) batch: usize,
    pub(crate) causal: bool,
    pub(crate) median_ms: Option<f64>,
    pub(crate) runs: usize,
    pub(crate) error: Option<String>,
}

impl DenseRow {
    fn shape(&self) -> DenseShape {
        DenseShape {
            kind: self.kind,
            tokens: self.tokens,
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            batch: self.batch,
            causal: self.causal,
        }
    }
}

/// scripts/dense-baseline.py's JSON file.
#[derive(Debug, Deserialize)]
pub(crate) struct DenseFile {
    pub(crate) device: String,
    pub(crate) torch: String,
    pub(crate) date: String,
    #[serde(default)]
    pub(crate) dry_run: bool,
    pub(crate) rows: Vec<DenseRow>,
}

/// A loaded, checked dense file.
pub(crate) struct Dense {
    pub(crate) path: String,
    pub(crate) file: DenseFile,
    by_shape: HashMap<(DenseShape, Backend), usize>,
}

/// Reads and checks `path`; the error names the file and the offending row and field.
pub(crate) fn load(path: &Path) -> Result<Dense, String> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("--dense {shown}: cannot read: {e}"))?;
    parse(&shown, &text)
}

pub(crate) fn parse(path: &str, text: &str) -> Result<Dense, String> {
    let file: DenseFile = serde_json::from_str(text).map_err(|e| format!("--dense {path}: {e}"))?;
    let mut by_shape = HashMap::new();
    for (i, r) in file.rows.iter().enumerate() {
        let bad =
            |what: String| format!("--dense {path}: rows[{i}] ({} {}): {what}", r.backend.name(), r.shape().text());
        for (name, v) in [("tokens", r.tokens), ("heads", r.heads), ("kv_heads", r.kv_heads), ("head_dim", r.head_dim)]
        {
            if v == 0 {
                return Err(bad(format!("{name} = 0")));
            }
        }
        if r.batch == 0 {
            return Err(bad("batch = 0".into()));
        }
        if r.heads % r.kv_heads != 0 {
            return Err(bad(format!("heads = {} is not a multiple of kv_heads = {}", r.heads, r.kv_heads)));
        }
        match (r.median_ms, &r.error) {
            (Some(ms), _) if !(ms.is_finite() && ms > 0.0) => return Err(bad(format!("median_ms = {ms}"))),
            (Some(_), _) if r.runs == 0 => return Err(bad("median_ms with runs = 0".into())),
            (None, None) => return Err(bad("neither median_ms nor error".into())),
            _ => {}
        }
        if let Some(j) = by_shape.insert((r.shape(), r.backend), i) {
            return Err(bad(format!("the same backend and shape as rows[{j}]")));
        }
    }
    Ok(Dense { path: path.into(), file, by_shape })
}

impl Dense {
    fn row(&self, shape: &DenseShape, backend: Backend) -> Option<&DenseRow> {
        self.by_shape.get(&(*shape, backend)).map(|&i| &self.file.rows[i])
    }
}

/// The dense shape of every prefill and decode row the jobs produce, by row id.
pub(crate) fn shapes_of(pjobs: &[PrefillJob], djobs: &[DecodeJob]) -> Vec<(String, DenseShape)> {
    let mut out = Vec::new();
    for j in pjobs {
        let shape = DenseShape {
            kind: Kind::Prefill,
            tokens: j.t,
            heads: j.shape.hq,
            kv_heads: j.shape.hkv,
            head_dim: D,
            batch: 1,
            causal: true,
        };
        out.push((j.id.clone(), shape));
    }
    for j in djobs {
        let shape = DenseShape {
            kind: Kind::Decode,
            tokens: j.t,
            heads: j.shape.hq,
            kv_heads: j.shape.hkv,
            head_dim: D,
            batch: j.batch,
            causal: false,
        };
        for m in &j.modes {
            for how in ["eager", "graph"] {
                out.push((format!("{}/{how}", m.id), shape));
            }
        }
    }
    out
}

/// What the file says about one backend for one shape.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Measured {
    Ms(f64),
    /// The backend's row holds an error (e.g. the installed torch refused the shape).
    Unavailable(String),
    /// The file has no row for this backend and shape.
    Missing,
}

impl Measured {
    fn ms(&self) -> Option<f64> {
        match self {
            Measured::Ms(ms) => Some(*ms),
            _ => None,
        }
    }
    fn cell(&self) -> String {
        match self {
            Measured::Ms(ms) => fmt_ms(*ms),
            Measured::Unavailable(e) => cell_text(e),
            Measured::Missing => "no row".into(),
        }
    }
}

/// One hip-bench row beside its dense baseline.
pub(crate) struct Comparison {
    pub(crate) id: String,
    pub(crate) shape: DenseShape,
    pub(crate) ours_ms: Option<f64>,
    /// In `Backend::ALL` order.
    pub(crate) dense: [Measured; 2],
    pub(crate) best: Option<(Backend, f64)>,
    /// dense best ms / ours ms.
    pub(crate) ratio: Option<Ratio>,
    /// Why there is no ratio, when there is none.
    pub(crate) note: Option<String>,
}

/// docs/BENCHMARK-PROTOCOL.md's prefill targets against dense cuDNN (MHA-32): at least this many times faster.
fn cudnn_target(id: &str) -> Option<(Bound, &'static str)> {
    match id {
        "prefill/MHA-32/128k" => Some((Bound::AtLeast(8.0), ">= 8 (8x dense cuDNN)")),
        "prefill/MHA-32/32k" => Some((Bound::AtLeast(2.4), ">= 2.4 (2.4x dense cuDNN)")),
        "prefill/MHA-32/8k" => Some((Bound::AtLeast(1.0), ">= 1 (not slower than dense cuDNN)")),
        _ => None,
    }
}

/// Every (row id, median) given, in order, that has a dense shape: with the dense rows of its shape and the ratio.
pub(crate) fn compare(
    dense: &Dense,
    shapes: &[(String, DenseShape)],
    rows: &[(String, Option<f64>)],
) -> Vec<Comparison> {
    let by_id: HashMap<&str, &DenseShape> = shapes.iter().map(|(id, s)| (id.as_str(), s)).collect();
    let mut out = Vec::new();
    for (id, ours_ms) in rows {
        let Some(&&shape) = by_id.get(id.as_str()) else { continue };
        let measured = Backend::ALL.map(|b| match dense.row(&shape, b) {
            None => Measured::Missing,
            Some(r) => match (r.median_ms, &r.error) {
                (Some(ms), _) => Measured::Ms(ms),
                (None, e) => Measured::Unavailable(e.clone().unwrap_or_default()),
            },
        });
        let best = Backend::ALL
            .iter()
            .zip(&measured)
            .filter_map(|(b, m)| m.ms().map(|ms| (*b, ms)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let note = if measured.iter().all(|m| *m == Measured::Missing) {
            Some(format!("no dense row of this shape in {}", dense.path))
        } else if best.is_none() {
            Some(format!("no dense time ({})", measured_text(&measured)))
        } else if ours_ms.is_none() {
            Some("no hip-attn time (row skipped, failed or not run)".into())
        } else {
            None
        };
        let ratio = best.zip(*ours_ms).map(|((b, d), o)| Ratio {
            what: format!("dense {} / hip-attn, {id}", b.name()),
            num: format!("dense {} {}", b.name(), shape.text()),
            den: id.clone(),
            num_ms: d,
            den_ms: o,
            bound: None,
        });
        out.push(Comparison { id: id.clone(), shape, ours_ms: *ours_ms, dense: measured, best, ratio, note });
    }
    out
}

fn measured_text(m: &[Measured; 2]) -> String {
    Backend::ALL.iter().zip(m).map(|(b, m)| format!("{}: {}", b.name(), m.cell())).collect::<Vec<_>>().join("; ")
}

/// The ratios for the JSON: against the faster backend for every row with both times, and against cuDNN where the
/// protocol sets a target on that.
pub(crate) fn ratios(cmp: &[Comparison]) -> Vec<Ratio> {
    let mut out = Vec::new();
    for c in cmp {
        out.extend(c.ratio.clone());
        out.extend(cudnn_ratio(c));
    }
    out
}

/// dense cuDNN ms / ours ms with the protocol's target, for the rows that have one.
fn cudnn_ratio(c: &Comparison) -> Option<Ratio> {
    Some(Ratio {
        what: format!("dense cudnn / hip-attn, {} (target)", c.id),
        num: format!("dense cudnn {}", c.shape.text()),
        den: c.id.clone(),
        num_ms: c.dense[1].ms()?,
        den_ms: c.ours_ms?,
        bound: Some(cudnn_target(&c.id)?),
    })
}

/// Whether the file's device is the one this run measured on (torch's name is the driver's, without the ordinal).
fn same_device(dense: &Dense, run_device: &str) -> bool {
    !dense.file.device.is_empty() && run_device.starts_with(&dense.file.device)
}

/// The section after the main table.
pub(crate) fn markdown(dense: &Dense, run_device: &str, cmp: &[Comparison]) -> String {
    let f = &dense.file;
    let mut s = String::from("\n### Dense attention, same card, same device call\n\n");
    let _ = writeln!(
        s,
        "Dense: PyTorch {} scaled_dot_product_attention on {}, {} ({}). x dense = dense ms / hip-attn ms against the \
         faster backend (> 1: hip-attn is faster).",
        f.torch, f.device, f.date, dense.path
    );
    if f.dry_run {
        let _ = writeln!(s, "\n**The file is a dry run: it lists the shapes and holds no times.**");
    } else if !same_device(dense, run_device) {
        let _ = writeln!(s, "\n**Not the same card: dense ran on {}, this run on {run_device}.**", f.device);
    }
    let _ = writeln!(
        s,
        "\n| row | dense shape | hip-attn | dense flash | dense cuDNN | dense best | x dense | x cuDNN target |\n\
         |---|---|---|---|---|---|---|---|"
    );
    for c in cmp {
        let best = c.best.map_or("-".into(), |(b, ms)| format!("{} ({})", fmt_ms(ms), b.name()));
        let x = match (&c.ratio, &c.note) {
            (Some(r), _) => format!("{:.2}", r.value()),
            (None, Some(n)) => cell_text(n),
            (None, None) => "-".into(),
        };
        let target = match (cudnn_ratio(c), cudnn_target(&c.id)) {
            (Some(r), Some((_, w))) => {
                format!("{:.2} vs {w}: {}", r.value(), if r.met() == Some(true) { "met" } else { "MISSED" })
            }
            (None, Some((_, w))) => format!("{w}: no time"),
            _ => "-".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {best} | {x} | {target} |",
            c.id,
            c.shape.text(),
            c.ours_ms.map_or("-".into(), fmt_ms),
            c.dense[0].cell(),
            c.dense[1].cell(),
        );
    }
    if cmp.is_empty() {
        s.push_str("| (no prefill or decode row in this run) | - | - | - | - | - | - | - |\n");
    }
    let decode_lengths = cmp.iter().any(|c| c.shape.kind == Kind::Decode);
    if decode_lengths {
        let _ = writeln!(
            s,
            "\nDecode rows rotate over input sets whose lengths run from T up to T + {} tokens (256 apart); dense \
             decode is timed at T, which favours dense by at most that length difference.",
            (MAX_SETS - 1) * SET_SPACING
        );
    }
    s
}

/// The report's header fields: the file's provenance and the ratios.
pub(crate) fn add_to_header(header: &mut Header, dense: &Dense, cmp: &[Comparison]) {
    let f = &dense.file;
    let same = same_device(dense, &header.device);
    header.raw.push((
        "dense_baseline".into(),
        json!({"file": dense.path, "device": f.device, "torch": f.torch, "date": f.date, "dry_run": f.dry_run,
               "same_device": same, "rows": f.rows.len()}),
    ));
    header.raw.push(("dense_ratios".into(), ratio_json(&ratios(cmp))));
}

/// Adds the dense fields to every row of a speed report's JSON (null where a row has no dense shape or time).
pub(crate) fn annotate(report: &mut Value, cmp: &[Comparison]) {
    let by_id: HashMap<&str, &Comparison> = cmp.iter().map(|c| (c.id.as_str(), c)).collect();
    let Some(rows) = report.get_mut("rows").and_then(Value::as_array_mut) else { return };
    for row in rows {
        let Some(obj) = row.as_object_mut() else { continue };
        let c = obj.get("id").and_then(Value::as_str).and_then(|id| by_id.get(id)).copied();
        let err = |i: usize| {
            c.and_then(|c| match &c.dense[i] {
                Measured::Unavailable(e) => Some(e.clone()),
                Measured::Missing => Some("no row".to_string()),
                Measured::Ms(_) => None,
            })
        };
        obj.insert("dense_shape".into(), json!(c.map(|c| c.shape.text())));
        obj.insert("dense_flash_ms".into(), json!(c.and_then(|c| c.dense[0].ms())));
        obj.insert("dense_flash_error".into(), json!(err(0)));
        obj.insert("dense_cudnn_ms".into(), json!(c.and_then(|c| c.dense[1].ms())));
        obj.insert("dense_cudnn_error".into(), json!(err(1)));
        obj.insert("dense_best_ms".into(), json!(c.and_then(|c| c.best.map(|b| b.1))));
        obj.insert("dense_best_backend".into(), json!(c.and_then(|c| c.best.map(|b| b.0.name()))));
        obj.insert("x_dense".into(), json!(c.and_then(|c| c.ratio.as_ref().map(Ratio::value))));
        obj.insert("dense_note".into(), json!(c.and_then(|c| c.note.clone())));
    }
}

/// The rows of a run as (id, median) pairs.
pub(crate) fn medians(rows: &[Row]) -> Vec<(String, Option<f64>)> {
    rows.iter().map(|r| (r.id.clone(), r.time.map(|t| t.median))).collect()
}
