//! Results: timing statistics, the Markdown table and the JSON file (serde_json; keys as in bench-results/).

use hip_attn::{hip_abi_version, hip_version};
use std::ffi::CStr;
use std::fmt::Write as _;

use crate::{api::*, check::*, workloads::*};

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
    if t >= 1 << 20 && t % (1 << 20) == 0 {
        format!("{}M", t >> 20)
    } else if t >= 1024 && t % 1024 == 0 {
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
    /// Fields written to the JSON as they are (already JSON values).
    pub(crate) raw: Vec<(String, String)>,
}

pub(crate) fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = secs.div_euclid(86400) + 719_468;
    let rem = secs.rem_euclid(86400);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
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

pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(crate) fn json_num(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => "null".into(),
    }
}

pub(crate) fn json(h: &Header, rows: &[Row]) -> String {
    let mut s = String::from("{\n");
    let _ = writeln!(s, "  \"tool\": \"hip-bench\",");
    let _ = writeln!(s, "  \"library\": {},", json_str(&h.library));
    let _ = writeln!(s, "  \"device\": {},", json_str(&h.device));
    let _ = writeln!(s, "  \"driver_version\": {},", json_str(&h.driver));
    let _ = writeln!(s, "  \"date\": {},", json_str(&h.date));
    let _ = writeln!(s, "  \"command\": {},", json_str(&h.command));
    let _ = writeln!(s, "  \"seed\": {},", h.seed);
    let _ = writeln!(s, "  \"elapsed_s\": {},", json_num(Some(h.elapsed_s)));
    for (k, v) in &h.extra {
        let _ = writeln!(s, "  {}: {},", json_str(&k.replace(' ', "_")), json_str(v));
    }
    for (k, v) in &h.raw {
        let _ = writeln!(s, "  {}: {v},", json_str(k));
    }
    let _ = writeln!(
        s,
        "  \"ceilings\": {{\"tflops\": {}, \"tb_per_s\": {}}},",
        PEAK_FLOPS / 1e12,
        PEAK_BYTES_PER_S / 1e12
    );
    let _ = writeln!(s, "  \"rows\": [");
    for (i, r) in rows.iter().enumerate() {
        let t = r.time;
        let c = r.check.as_ref();
        let fields = [
            ("id", json_str(&r.id)),
            ("work", json_str(&r.work)),
            ("shape", json_str(&r.shape)),
            ("length", json_str(&r.length)),
            ("tokens", r.tokens.to_string()),
            ("batch", r.batch.to_string()),
            ("median_ms", json_num(t.map(|t| t.median))),
            ("p10_ms", json_num(t.map(|t| t.p10))),
            ("p90_ms", json_num(t.map(|t| t.p90))),
            ("min_ms", json_num(t.map(|t| t.min))),
            ("mean_ms", json_num(t.map(|t| t.mean))),
            ("runs", t.map_or("null".into(), |t| t.n.to_string())),
            ("counted_flops", json_num(r.counted.map(|w| w.flops))),
            ("counted_bytes", json_num(r.counted.map(|w| w.bytes))),
            ("tflops", json_num(r.tflops())),
            ("gb_per_s", json_num(r.gbps())),
            ("floor_ms", json_num(r.counted.map(|w| w.floor_ms()))),
            ("workspace_bytes", r.ws_bytes.map_or("null".into(), |w| w.to_string())),
            (
                "workspace_bytes_per_token",
                json_num(r.ws_bytes.filter(|_| r.tokens > 0).map(|w| w as f64 / (r.tokens * r.batch) as f64)),
            ),
            ("mask_state_bytes", r.state_bytes.map_or("null".into(), |w| w.to_string())),
            ("rel_l2", json_num(c.map(|c| c.rel_l2))),
            ("check_pass", c.map_or("null".into(), |c| c.pass().to_string())),
            ("check_units", c.map_or("null".into(), |c| c.units.to_string())),
            ("check_ties", c.map_or("null".into(), |c| c.ties.to_string())),
            ("check_mask_mismatches", c.map_or("null".into(), |c| c.mask_mismatches.to_string())),
            ("check_what", c.map_or("null".into(), |c| json_str(&c.what))),
            ("target", r.target.map_or("null".into(), |t| json_str(&t.text()))),
            ("target_met", r.target_met().map_or("null".into(), |m| m.to_string())),
            ("skipped", r.skipped.as_deref().map_or("null".into(), json_str)),
            ("error", r.error.as_deref().map_or("null".into(), json_str)),
            ("notes", format!("[{}]", r.notes.iter().map(|n| json_str(n)).collect::<Vec<_>>().join(", "))),
        ];
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
        let _ = writeln!(s, "    {{{}}}{}", body.join(", "), if i + 1 < rows.len() { "," } else { "" });
    }
    s.push_str("  ]\n}\n");
    s
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
