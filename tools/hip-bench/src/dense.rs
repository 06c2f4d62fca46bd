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

/// One row of scripts/dense-baseline.py's JSON. It repeats DenseShape's fields rather than flattening a DenseShape
/// in: serde's `flatten` does not work with `deny_unknown_fields`, which is what catches a script whose rows drift.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse as parse_args, Args, Parsed};
    use crate::workloads::{job_lists, shapes};
    use std::path::PathBuf;
    use std::process::Command;

    const FIXTURE: &str = include_str!("../tests/fixtures/dense-baseline.json");

    fn args(line: &str) -> Args {
        match parse_args(line.split(' ').map(String::from).collect()) {
            Parsed::Run(a) => *a,
            Parsed::Exit(code) => panic!("{line}: exit {code}"),
        }
    }

    fn run_shapes(line: &str) -> Vec<(String, DenseShape)> {
        let a = args(line);
        let (p, d) = job_lists(&a, &shapes(&a));
        shapes_of(&p, &d)
    }

    fn ours(rows: &[(&str, Option<f64>)]) -> Vec<(String, Option<f64>)> {
        rows.iter().map(|(id, ms)| (id.to_string(), *ms)).collect()
    }

    #[test]
    fn rows_pair_with_their_dense_shape_and_say_when_there_is_none() {
        let dense = parse("fixture.json", FIXTURE).expect("the fixture parses");
        let rows = ours(&[
            ("ctx-create/MHA-32/cold", Some(100.0)),
            ("prefill/MHA-32/8k", Some(2.0)),
            ("prefill/MHA-32/32k", Some(10.0)),
            ("prefill/MHA-32/128k", Some(50.0)),
            ("prefill/GQA-8/8k", Some(1.0)),
            ("prefill/GQA-8/128k", None),
            ("exact-k/MHA-32/32k", Some(9.0)),
            ("decode-cached/MHA-32/32k/eager", Some(0.025)),
            ("decode-cached/MHA-32/32k/graph", Some(0.02)),
            ("decode-cached/GQA-8/32k/graph", Some(0.02)),
        ]);
        let cmp = compare(&dense, &run_shapes("hip-bench"), &rows);
        let ids: Vec<&str> = cmp.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, rows[1..].iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), "ctx-create has no dense shape");
        let get = |id: &str| cmp.iter().find(|c| c.id == id).unwrap();

        // The faster backend is the baseline; x dense = dense / ours.
        let c = get("prefill/MHA-32/128k");
        assert_eq!(c.best, Some((Backend::Cudnn, 250.0)));
        assert_eq!(c.ratio.as_ref().map(Ratio::value), Some(5.0));
        assert_eq!(c.dense[0], Measured::Ms(400.0));
        assert!(c.note.is_none());
        let c = get("decode-cached/MHA-32/32k/graph");
        assert_eq!(c.best, Some((Backend::Flash, 0.2)));
        assert!((c.ratio.as_ref().unwrap().value() - 10.0).abs() < 1e-12);
        assert!(!c.shape.causal && c.shape.kind == Kind::Decode && c.shape.batch == 1);
        // One backend unavailable: the other is the baseline.
        let c = get("prefill/GQA-8/8k");
        assert_eq!(c.best, Some((Backend::Flash, 1.5)));
        assert!(matches!(&c.dense[1], Measured::Unavailable(e) if e.contains("No available kernel")));
        assert_eq!((c.shape.heads, c.shape.kv_heads), (32, 8));
        // No ratio, and the reason.
        let note = |id: &str| get(id).note.clone().unwrap_or_else(|| panic!("{id} has no note"));
        assert!(get("decode-cached/GQA-8/32k/graph").ratio.is_none());
        assert!(note("decode-cached/GQA-8/32k/graph").starts_with("no dense time (flash: unavailable"));
        assert_eq!(note("prefill/MHA-32/32k"), "no dense row of this shape in fixture.json");
        assert_eq!(note("prefill/GQA-8/128k"), "no dense row of this shape in fixture.json");
        // The exact rows compare with the same dense prefill as the headline row of their length.
        assert_eq!(get("exact-k/MHA-32/32k").shape, get("prefill/MHA-32/32k").shape);

        // JSON ratios: one per row with both times, plus the protocol's cuDNN targets (8k: 0.5 < 1; 128k: 5 < 8).
        let r = ratios(&cmp);
        assert_eq!(r.len(), 5 + 2, "{:?}", r.iter().map(|r| &r.what).collect::<Vec<_>>());
        let targets: Vec<&Ratio> = r.iter().filter(|r| r.bound.is_some()).collect();
        assert_eq!(targets.len(), 2);
        assert!(targets.iter().all(|t| t.met() == Some(false)));
        assert_eq!(targets[0].value(), 0.5);
        let js = ratio_json(&r);
        assert_eq!(js[0]["denominator"], "prefill/MHA-32/8k");
        assert_eq!(js[0]["value"], 0.5);
        assert_eq!(js[1]["target_met"], false);

        let md = markdown(&dense, "NVIDIA H200 (device 0, compute capability 9.0)", &cmp);
        let line =
            "| prefill/MHA-32/128k | prefill 128k, 32/32 heads, D 128, causal | 50.00 ms | 400.00 ms | 250.00 ms \
                    | 250.00 ms (cudnn) | 5.00 | 5.00 vs >= 8 (8x dense cuDNN): MISSED |";
        assert!(md.contains(line), "{md}");
        assert!(md.contains("MISSED") && md.contains("no dense row of this shape"), "{md}");
        assert!(!md.contains("Not the same card"), "{md}");
        assert!(markdown(&dense, "NVIDIA A100", &cmp).contains("**Not the same card"));
    }

    #[test]
    fn a_target_met_reads_met() {
        let dense = parse("f", FIXTURE).unwrap();
        let cmp = compare(&dense, &run_shapes("hip-bench"), &ours(&[("prefill/MHA-32/8k", Some(0.8))]));
        let r = ratios(&cmp);
        assert_eq!(r[1].met(), Some(true), "1.0 / 0.8 >= 1");
        assert!(markdown(&dense, "NVIDIA H200", &cmp).contains("1.25 vs >= 1 (not slower than dense cuDNN): met"));
    }

    #[test]
    fn json_rows_get_the_dense_fields() {
        let dense = parse("f", FIXTURE).unwrap();
        let rows = ours(&[("prefill/MHA-32/8k", Some(2.0)), ("decode-cached/GQA-8/32k/graph", Some(0.02))]);
        let cmp = compare(&dense, &run_shapes("hip-bench"), &rows);
        let mut report = json!({"rows": [{"id": "ctx-create/MHA-32/cold"}, {"id": "prefill/MHA-32/8k"},
                                          {"id": "decode-cached/GQA-8/32k/graph"}]});
        annotate(&mut report, &cmp);
        let rows = report["rows"].as_array().unwrap();
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert!(rows.iter().all(|r| keys(r) == keys(&rows[0])), "every row has the same keys: {report}");
        assert!(rows[0]["x_dense"].is_null() && rows[0]["dense_shape"].is_null());
        assert_eq!(rows[1]["x_dense"], 0.5);
        assert_eq!(rows[1]["dense_best_backend"], "cudnn");
        assert_eq!(rows[1]["dense_flash_ms"], 2.0);
        assert!(rows[1]["dense_note"].is_null() && rows[1]["dense_cudnn_error"].is_null());
        assert!(rows[2]["x_dense"].is_null());
        assert!(rows[2]["dense_note"].as_str().unwrap().starts_with("no dense time"));
        assert!(rows[2]["dense_flash_error"].as_str().unwrap().contains("No available kernel"));
        let mut h = crate::report::Header::speed_run("NVIDIA H200 (device 0)".into(), "13.0".into(), &args("x"), 1.0);
        add_to_header(&mut h, &dense, &cmp);
        let (k, v) = &h.raw[0];
        assert_eq!((k.as_str(), &v["same_device"], &v["rows"]), ("dense_baseline", &json!(true), &json!(10)));
        assert_eq!(h.raw[1].0, "dense_ratios");
    }

    #[test]
    fn bad_files_are_refused_naming_the_row_and_field() {
        let first = concat!(
            r#"{"backend": "flash", "kind": "prefill", "tokens": 8192, "heads": 32, "kv_heads": 32, "head_dim": 128, "#,
            r#""batch": 1, "causal": true, "median_ms": 2.0, "runs": 20, "error": null}"#
        );
        let doc =
            |rows: &[String]| format!(r#"{{"device": "d", "torch": "t", "date": "x", "rows": [{}]}}"#, rows.join(","));
        let with = |from: &str, to: &str| first.replace(from, to);
        assert!(parse("f", &doc(&[first.into()])).is_ok());
        for (rows, says) in [
            (vec![with("\"flash\"", "\"xformers\"")], "xformers"),
            (vec![with("\"prefill\"", "\"train\"")], "train"),
            (vec![with("\"runs\"", "\"repeats\"")], "repeats"),
            (
                vec![with("\"heads\": 32", "\"heads\": 0")],
                "rows[0] (flash prefill 8k, 0/32 heads, D 128, causal): heads = 0",
            ),
            (vec![with("\"kv_heads\": 32", "\"kv_heads\": 6")], "heads = 32 is not a multiple of kv_heads = 6"),
            (vec![with("\"batch\": 1", "\"batch\": 0")], "batch = 0"),
            (vec![with("2.0", "-1.0")], "median_ms = -1"),
            (vec![with("\"runs\": 20", "\"runs\": 0")], "median_ms with runs = 0"),
            (vec![with("2.0", "null")], "neither median_ms nor error"),
            (
                vec![first.into(), with("2.0", "3.0")],
                "rows[1] (flash prefill 8k, 32/32 heads, D 128, causal): the same backend and shape as rows[0]",
            ),
        ] {
            let e = parse("bad.json", &doc(&rows)).err().unwrap_or_else(|| panic!("accepted {rows:?}"));
            assert!(e.starts_with("--dense bad.json: ") && e.contains(says), "{e}\nshould say: {says}");
        }
        let e = parse("bad.json", "{\"device\": ").err().unwrap();
        assert!(e.starts_with("--dense bad.json: "), "{e}");
        let e = load(Path::new("/nonexistent/dense.json")).err().unwrap();
        assert!(e.contains("/nonexistent/dense.json") && e.contains("cannot read"), "{e}");
    }

    /// scripts/dense-baseline.py --dry-run lists a flash and a cuDNN shape for every prefill and decode
    /// configuration of every hip-bench run (the default set, --quick, --scan, GQA with a mask per q head, and
    /// --with-512k with the script's --with-512k), and nothing that no configuration uses.
    #[test]
    fn the_dense_script_covers_every_configuration() {
        if Command::new("python3").arg("--version").output().is_err() {
            println!("SKIP: python3 is not installed, so scripts/dense-baseline.py --dry-run cannot run");
            return;
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/dense-baseline.py");
        let dry_run = |extra: &[&str]| {
            let path =
                std::env::temp_dir().join(format!("hip-bench-dense-dry-{}-{}.json", std::process::id(), extra.len()));
            let out = Command::new("python3")
                .arg(&script)
                .args(["--dry-run", "--json"])
                .arg(&path)
                .args(extra)
                .output()
                .expect("python3 runs");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let text = std::fs::read_to_string(&path).unwrap();
            let _ = std::fs::remove_file(&path);
            let dense = parse("dry-run", &text).unwrap_or_else(|e| panic!("{e}"));
            assert!(dense.file.dry_run);
            let listed = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.starts_with("| flash |") || l.starts_with("| cudnn |"))
                .count();
            assert_eq!(listed, dense.file.rows.len(), "one Markdown line per row");
            dense
        };
        let (plain, with_512k) = (dry_run(&[]), dry_run(&["--with-512k"]));
        let mut used = std::collections::HashSet::new();
        for (line, dense) in [
            ("hip-bench", &plain),
            ("hip-bench --quick", &plain),
            ("hip-bench --scan", &plain),
            ("hip-bench --gqa-mask-per-q-head", &plain),
            ("hip-bench --scan --gqa-mask-per-q-head", &plain),
            ("hip-bench --with-512k", &with_512k),
        ] {
            let shapes = run_shapes(line);
            assert!(shapes.len() >= 10, "{line}: {} rows", shapes.len());
            for (id, shape) in &shapes {
                for b in Backend::ALL {
                    assert!(dense.row(shape, b).is_some(), "{line}: {id} ({}) has no {} row", shape.text(), b.name());
                }
                used.insert(*shape);
            }
        }
        for r in &with_512k.file.rows {
            assert!(used.contains(&r.shape()), "the script measures {}, which no hip-bench row uses", r.shape().text());
        }
    }
}
