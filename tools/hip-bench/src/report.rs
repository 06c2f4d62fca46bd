//! Results: timing statistics, the Markdown table and the JSON file (serde_json; keys as in bench-results/).

use hip_attn::{hip_abi_version, hip_version};
use serde_json::{json, Map, Value};
use std::ffi::CStr;
use std::fmt::Write as _;

use crate::cli::Args;
use crate::{
    api::Fail,
    check::{CheckResult, TIE_EPS, TOLERANCE},
    workloads::{Target, Work, PEAK_BYTES_PER_S, PEAK_FLOPS},
};

#[derive(Clone, Copy, Debug)]
pub(crate) struct Stats {
    pub(crate) median: f64,
    pub(crate) p10: f64,
    pub(crate) p90: f64,
    pub(crate) min: f64,
    pub(crate) mean: f64,
    pub(crate) n: usize,
}

pub(crate) fn stats(ms: &[f64]) -> Stats {
    let mut v = ms.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
    Stats {
        median: at(0.5),
        p10: at(0.1),
        p90: at(0.9),
        min: v[0],
        mean: v.iter().sum::<f64>() / v.len() as f64,
        n: v.len(),
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Row {
    pub(crate) id: String,
    pub(crate) work: String,
    pub(crate) shape: String,
    pub(crate) length: String,
    pub(crate) tokens: usize,
    pub(crate) batch: usize,
    pub(crate) time: Option<Stats>,
    pub(crate) counted: Option<Work>,
    pub(crate) ws_bytes: Option<usize>,
    pub(crate) state_bytes: Option<usize>,
    pub(crate) check: Option<CheckResult>,
    pub(crate) target: Option<Target>,
    pub(crate) skipped: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) notes: Vec<String>,
}

impl Row {
    pub(crate) fn new(id: &str, work: &str, shape: &str, tokens: usize, batch: usize, target: Option<Target>) -> Row {
        let length = if batch > 1 { format!("{} x{batch}", len_label(tokens)) } else { len_label(tokens) };
        Row { id: id.into(), work: work.into(), shape: shape.into(), length, tokens, batch, target, ..Row::default() }
    }
    pub(crate) fn tflops(&self) -> Option<f64> {
        Some(self.counted?.flops / (self.time?.median * 1e-3) / 1e12)
    }
    pub(crate) fn gbps(&self) -> Option<f64> {
        Some(self.counted?.bytes / (self.time?.median * 1e-3) / 1e9)
    }
    pub(crate) fn target_met(&self) -> Option<bool> {
        let t = self.time?;
        Some(match self.target? {
            Target::MaxMs(ms) => t.median <= ms,
            Target::MinTflops(tf) => self.tflops()? >= tf,
        })
    }
    pub(crate) fn failed(&self) -> bool {
        self.error.is_some() || self.check.as_ref().is_some_and(|c| !c.pass())
    }
    pub(crate) fn apply(&mut self, f: &Fail) {
        match f {
            Fail::Skip(m) => self.skipped = Some(m.clone()),
            Fail::Error(m) => self.error = Some(m.clone()),
        }
    }
    pub(crate) fn summary(&self) -> String {
        if let Some(e) = &self.error {
            return format!("ERROR: {e}");
        }
        if let Some(s) = &self.skipped {
            return format!("skipped: {s}");
        }
        let mut s = String::new();
        if let Some(t) = self.time {
            let _ =
                write!(s, "median {} (p10 {}, p90 {}, {} runs)", fmt_ms(t.median), fmt_ms(t.p10), fmt_ms(t.p90), t.n);
        }
        if let Some(f) = self.tflops() {
            let _ = write!(s, ", {f:.1} TFLOP/s, {:.0} GB/s", self.gbps().unwrap_or(0.0));
        }
        if let Some(c) = &self.check {
            let _ = write!(s, ", check {}", c.cell());
        }
        if let Some(m) = self.target_met() {
            let _ = write!(s, ", target {}", if m { "met" } else { "MISSED" });
        }
        s
    }
}

pub(crate) fn len_label(t: usize) -> String {
    if t >= 1 << 20 && t.is_multiple_of(1 << 20) {
        format!("{}M", t >> 20)
    } else if t >= 1024 && t.is_multiple_of(1024) {
        format!("{}k", t >> 10)
    } else {
        t.to_string()
    }
}

pub(crate) fn fmt_ms(ms: f64) -> String {
    if !ms.is_finite() {
        "-".into()
    } else if ms >= 1000.0 {
        format!("{:.2} s", ms / 1e3)
    } else if ms >= 1.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{:.1} us", ms * 1e3)
    }
}

pub(crate) fn fmt_bytes(b: f64) -> String {
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------------------------

pub(crate) struct Header {
    pub(crate) device: String,
    pub(crate) driver: String,
    pub(crate) date: String,
    pub(crate) command: String,
    pub(crate) seed: u64,
    pub(crate) elapsed_s: f64,
    pub(crate) library: String,
    pub(crate) extra: Vec<(String, String)>,
    /// Further JSON fields (the `--scan` ratios).
    pub(crate) raw: Vec<(String, Value)>,
}

impl Header {
    /// The header of a speed run (the default set or `--scan`'s), finished `elapsed_s` after it started.
    pub(crate) fn speed_run(device: String, driver: String, args: &Args, elapsed_s: f64) -> Header {
        let extra = [
            (
                "shapes",
                "MHA-32: 32 q / 32 kv heads; GQA-8: 32 q / 8 kv heads, one mask search per kv head (GQA-8q: one per q \
                 head); D=128, bf16, causal, batch 1 unless xN",
            ),
            (
                "hip",
                "k=512 bq=32 bk=2 sink 4 window 128 sq 1 sk 1 (decode refresh: 2^30 cached, 1 search every step; \
                 decode-k2048-search: k=2048); decode KV cache paged, 64 tokens per page",
            ),
        ];
        Header {
            device,
            driver,
            date: utc_now(),
            command: args.command_line.clone(),
            seed: args.seed,
            elapsed_s,
            library: library_line(),
            extra: extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            raw: Vec::new(),
        }
    }
}

/// The current time for the report's header, e.g. "2026-12-02 07:04:51 UTC".
pub(crate) fn utc_now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub(crate) fn markdown(h: &Header, rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## hip-bench results\n");
    let _ = writeln!(s, "- device: {}", h.device);
    let _ = writeln!(s, "- driver: {}; library: {}", h.driver, h.library);
    let _ = writeln!(s, "- date: {}; elapsed {:.1} s", h.date, h.elapsed_s);
    let _ = writeln!(s, "- command: `{}`", h.command);
    let _ = writeln!(s, "- seed: {}", h.seed);
    for (k, v) in &h.extra {
        let _ = writeln!(s, "- {k}: {v}");
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| work | shape | length | median | TFLOP/s | GB/s | floor | x floor | workspace (per token) | check (rel L2) \
         | target | status |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let opt = |x: Option<f64>, f: &dyn Fn(f64) -> String| x.map_or("-".to_string(), f);
        let median = r.time.map(|t| t.median);
        let floor = r.counted.map(|w| w.floor_ms());
        let ratio = median.zip(floor).map(|(m, f)| m / f);
        let ws = r.ws_bytes.map_or("-".to_string(), |w| {
            let per = if r.tokens > 0 {
                format!(" ({:.0} B)", w as f64 / (r.tokens * r.batch) as f64)
            } else {
                String::new()
            };
            let state = r.state_bytes.map_or(String::new(), |s| format!(" + state {}", fmt_bytes(s as f64)));
            format!("{}{per}{state}", fmt_bytes(w as f64))
        });
        let status = if r.error.is_some() {
            "ERROR".to_string()
        } else if r.skipped.is_some() {
            "skipped".to_string()
        } else {
            match r.target_met() {
                Some(true) => "met".into(),
                Some(false) => "MISSED".into(),
                None => "-".into(),
            }
        };
        let check = match (&r.error, &r.skipped, &r.check) {
            (Some(e), _, _) => format!("error: {}", cell_text(e)),
            (_, Some(m), _) => format!("skipped: {}", cell_text(m)),
            (_, _, Some(c)) => c.cell(),
            _ => "-".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.work,
            r.shape,
            r.length,
            opt(median, &fmt_ms),
            opt(r.tflops(), &|x| format!("{x:.1}")),
            opt(r.gbps(), &|x| format!("{x:.0}")),
            opt(floor, &fmt_ms),
            opt(ratio, &|x| format!("{x:.1}")),
            ws,
            check,
            r.target.map_or("-".into(), |t| t.text()),
            status
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Floor = max(counted FLOPs / {:.0} TFLOP/s, counted bytes / {:.1} TB/s). Prefill FLOPs: 4*D per (query, \
         attended key, head) with attended = min(sink, p+1) + min(Kb*bk, search domain) + local part, plus the \
         search's 2*D per (scored query, representative key) over ceil(log2(ceil(NB/Kb))) iterations of 2*Kb \
         representatives; prefill bytes: Q, K, V read once + O written + masks. Decode bytes: q + o + the gathered \
         K/V rows of the attended keys (+ representative keys when searching) + mask state + split-K partials. \
         Check: sampled units of the same run (prefill: query blocks of one mask head; decode: (sequence, mask \
         head) of input set 0, eager step and graph replay) recomputed by the CPU backend; where the device's mask \
         differs from the CPU's, the reference is exact f64 attention over the device's own mask, and the \
         difference is counted as a near-tie when the f64 replay of the search has a gap below {TIE_EPS:.0e} at \
         some cut. PASS: rel L2 < {TOLERANCE:.0e} and at most half of the units with masks differing beyond a \
         near-tie.",
        PEAK_FLOPS / 1e12,
        PEAK_BYTES_PER_S / 1e12
    );
    let notes: Vec<String> =
        rows.iter().flat_map(|r| r.notes.iter().map(move |n| format!("- {}: {n}", r.id))).collect();
    if !notes.is_empty() {
        let _ = writeln!(s, "\nNotes:\n{}", notes.join("\n"));
    }
    s
}

/// A message fit for one table cell: one line, no column separators, at most 200 characters (the JSON and the
/// progress lines carry the whole message).
pub(crate) fn cell_text(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ").replace('|', "/");
    if one.chars().count() > 200 {
        format!("{}...", one.chars().take(200).collect::<String>())
    } else {
        one
    }
}

/// The JSON text of a report: one field per line, and each element of an array of objects (the rows) on one line,
/// so that files in bench-results/ diff line by line.
pub(crate) fn json_text(v: &Value) -> String {
    let Value::Object(fields) = v else { return format!("{v}\n") };
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| match v {
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
                let rows: Vec<String> = items.iter().map(|i| format!("    {i}")).collect();
                format!("  {}: [\n{}\n  ]", Value::from(k.as_str()), rows.join(",\n"))
            }
            v => format!("  {}: {v}", Value::from(k.as_str())),
        })
        .collect();
    format!("{{\n{}\n}}\n", body.join(",\n"))
}

/// The JSON report of a speed run. Keys are those of every earlier hip-bench.json (bench-results/), which
/// tests/json_keys.rs holds the program to; a number that is not finite is written as null.
pub(crate) fn json(h: &Header, rows: &[Row]) -> Value {
    let mut top = Map::new();
    top.insert("tool".into(), json!("hip-bench"));
    top.insert("library".into(), json!(h.library));
    top.insert("device".into(), json!(h.device));
    top.insert("driver_version".into(), json!(h.driver));
    top.insert("date".into(), json!(h.date));
    top.insert("command".into(), json!(h.command));
    top.insert("seed".into(), json!(h.seed));
    top.insert("elapsed_s".into(), json!(h.elapsed_s));
    for (k, v) in &h.extra {
        top.insert(k.replace(' ', "_"), json!(v));
    }
    for (k, v) in &h.raw {
        top.insert(k.clone(), v.clone());
    }
    top.insert("ceilings".into(), json!({"tflops": PEAK_FLOPS / 1e12, "tb_per_s": PEAK_BYTES_PER_S / 1e12}));
    top.insert("rows".into(), Value::Array(rows.iter().map(row_json).collect()));
    Value::Object(top)
}

fn row_json(r: &Row) -> Value {
    let t = r.time;
    let c = r.check.as_ref();
    json!({
        "id": r.id,
        "work": r.work,
        "shape": r.shape,
        "length": r.length,
        "tokens": r.tokens,
        "batch": r.batch,
        "median_ms": t.map(|t| t.median),
        "p10_ms": t.map(|t| t.p10),
        "p90_ms": t.map(|t| t.p90),
        "min_ms": t.map(|t| t.min),
        "mean_ms": t.map(|t| t.mean),
        "runs": t.map(|t| t.n),
        "counted_flops": r.counted.map(|w| w.flops),
        "counted_bytes": r.counted.map(|w| w.bytes),
        "tflops": r.tflops(),
        "gb_per_s": r.gbps(),
        "floor_ms": r.counted.map(|w| w.floor_ms()),
        "workspace_bytes": r.ws_bytes,
        "workspace_bytes_per_token":
            r.ws_bytes.filter(|_| r.tokens > 0).map(|w| w as f64 / (r.tokens * r.batch) as f64),
        "mask_state_bytes": r.state_bytes,
        "rel_l2": c.map(|c| c.rel_l2),
        "check_pass": c.map(|c| c.pass()),
        "check_units": c.map(|c| c.units),
        "check_ties": c.map(|c| c.ties),
        "check_mask_mismatches": c.map(|c| c.mask_mismatches),
        "check_what": c.map(|c| c.what.clone()),
        "target": r.target.map(|t| t.text()),
        "target_met": r.target_met(),
        "skipped": r.skipped,
        "error": r.error,
        "notes": r.notes,
    })
}

/// One ratio between two medians of the same run: two rows' (`--scan`), or a dense baseline's and a row's
/// (`--dense`).
#[derive(Clone, Debug)]
pub(crate) struct Ratio {
    pub(crate) what: String,
    pub(crate) num: String,
    pub(crate) den: String,
    pub(crate) num_ms: f64,
    pub(crate) den_ms: f64,
    /// docs/BENCHMARK-PROTOCOL.md's bound on num / den, with its wording.
    pub(crate) bound: Option<(Bound, &'static str)>,
}

/// Which side of a ratio a target allows: a time ratio (row / baseline) has an upper bound, a speed-up (baseline /
/// row) a lower one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Bound {
    AtMost(f64),
    AtLeast(f64),
}

impl Ratio {
    pub(crate) fn value(&self) -> f64 {
        self.num_ms / self.den_ms
    }
    pub(crate) fn met(&self) -> Option<bool> {
        self.bound.map(|(b, _)| match b {
            Bound::AtMost(m) => self.value() <= m,
            Bound::AtLeast(m) => self.value() >= m,
        })
    }
}

/// The JSON of ratios (the same keys for every kind of ratio).
pub(crate) fn ratio_json(ratios: &[Ratio]) -> serde_json::Value {
    ratios
        .iter()
        .map(|r| {
            serde_json::json!({
                "what": r.what, "numerator": r.num, "denominator": r.den, "numerator_ms": r.num_ms,
                "denominator_ms": r.den_ms, "value": r.value(), "target": r.bound.map(|b| b.1),
                "target_met": r.met(),
            })
        })
        .collect()
}

/// Writes `text` to `path` and, when $OUT is set, to $OUT/`name` as well.
pub(crate) fn write_json(path: &std::path::Path, name: &str, text: &str) -> bool {
    let mut paths = vec![path.to_path_buf()];
    if let Some(out) = std::env::var_os("OUT").filter(|o| !o.is_empty()) {
        let p = std::path::Path::new(&out).join(name);
        if p != path {
            paths.push(p);
        }
    }
    let mut ok = true;
    for p in paths {
        match std::fs::write(&p, text) {
            Ok(()) => elog!("wrote {}", p.display()),
            Err(e) => {
                elog!("error: cannot write {}: {e}", p.display());
                ok = false;
            }
        }
    }
    ok
}

pub(crate) fn library_line() -> String {
    // SAFETY: hip_version returns a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(hip_version()) }.to_string_lossy().into_owned();
    format!("hip-attn {v} (ABI {})", hip_abi_version())
}

/// Writes to stdout without panicking on a closed pipe; returns whether it worked.
pub(crate) fn emit(text: &str) -> bool {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse, Parsed};

    /// A file of bench-results/, parsed.
    fn recorded(name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench-results").join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn keys(v: &Value) -> Vec<String> {
        v.as_object().expect("an object").keys().cloned().collect()
    }

    fn args(line: &str) -> Args {
        match parse(line.split(' ').map(String::from).collect()) {
            Parsed::Run(a) => *a,
            Parsed::Exit(code) => panic!("{line}: exit {code}"),
        }
    }

    /// A row with every optional part filled in, and one with none.
    fn rows() -> Vec<Row> {
        let mut full = Row::new("prefill/MHA-32/8k", "prefill", "MHA-32", 8192, 1, Some(Target::MaxMs(1.0)));
        full.time = Some(stats(&[1.0, 2.0, f64::NAN]));
        full.counted = Some(Work { flops: 1e12, bytes: 1e9 });
        full.ws_bytes = Some(4096);
        full.state_bytes = Some(64);
        full.check = Some(CheckResult::from_units(&[], 0, "units".into()));
        full.notes.push("a \"quoted\" note\nover two lines".into());
        let mut failed = Row::new("decode-cached/GQA-8/1M", "decode", "GQA-8", 1 << 20, 16, None);
        failed.error = Some("cuMemAlloc: out of memory".into());
        vec![full, failed]
    }

    #[test]
    fn speed_json_keeps_the_keys_of_bench_results() {
        for (file, line) in [
            ("2026-11-30-1404-h200.json", "hip-bench --json x"),
            ("2026-12-02-0704-h200-scan.json", "hip-bench --scan"),
        ] {
            let old = recorded(file);
            let a = args(line);
            let header = Header::speed_run("H200".into(), "13.0".into(), &a, 1.5);
            let (header, _) = if a.scan { crate::scan::with_ratios(header, &rows()) } else { (header, String::new()) };
            let new: Value = serde_json::from_str(&json_text(&json(&header, &rows()))).expect("valid JSON");
            assert_eq!(keys(&new), keys(&old), "{file}: top-level keys");
            for (r, o) in new["rows"].as_array().unwrap().iter().zip(old["rows"].as_array().unwrap()) {
                assert_eq!(keys(r), keys(o), "{file}: row keys");
            }
            assert_eq!(new["rows"][1]["error"], "cuMemAlloc: out of memory");
            assert_eq!(new["rows"][0]["notes"][0], "a \"quoted\" note\nover two lines");
            assert!(new["rows"][0]["rel_l2"].is_null(), "a non-finite number becomes null");
        }
    }

    #[test]
    fn scan_ratios_keep_their_keys() {
        let old = recorded("2026-12-02-0704-h200-scan.json");
        let mk = |id: &str, ms: f64| {
            let mut r = Row::new(id, "w", "MHA-32", 131072, 1, None);
            r.time = Some(stats(&[ms]));
            r
        };
        let rows = [mk("decode-scan-every/MHA-32/128k/graph", 2.0), mk("decode-dense/MHA-32/128k/graph", 1.0)];
        let ratios = ratio_json(&crate::scan::ratios(&rows));
        let (new, old) = (&ratios[0], &old["ratios"][0]);
        assert!(new.is_object(), "no ratio from {ratios}");
        assert_eq!(keys(new), keys(old));
    }

    #[test]
    fn dates_are_utc_to_the_second() {
        let d = utc_now();
        assert_eq!(d.len(), "2026-12-02 07:04:51 UTC".len(), "{d}");
        assert!(d.ends_with(" UTC") && d.as_bytes()[4] == b'-' && d.as_bytes()[13] == b':', "{d}");
    }
}
