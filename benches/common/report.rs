//! What every benchmark reports, in one shape: a progress line per phase
//! (with the elapsed time and the load average, since the machine is
//! shared), one table of its figures beside its anchor's at the end, and
//! `<bench dir>/<bench>.json`, which `benches/summary.py` (`make bench`)
//! gathers into `summary.json`:
//!
//! ```json
//! {"bench": "supervisor", "anchor": "supervisord 4.3.0", "anchor_error": null,
//!  "load": {"before": [1.2, 1.0, 0.9], "after": [1.4, 1.1, 0.9]},
//!  "rows": [{"what": "ready, 200 services", "unit": "ms", "spindle": 80.1,
//!            "anchor": 310.5, "ratio": 0.258, "better": "lower",
//!            "target": "ratio <= 1", "met": true, "load": 1.3}],
//!  "details": {}}
//! ```
//!
//! `ratio` is always spindle / anchor; `better` says which way is good.
//! A row without an anchor (`anchor` and `ratio` null) holds a figure
//! checked against an absolute target. `anchor_error` says why the anchor
//! could not run ([`Report::anchor_failed`]): the file then has no rows,
//! no table is printed, and the benchmark exits 1.
//! `details` holds whatever else the benchmark measured.
//!
//! Shared by path (`#[path = ".../benches/common/report.rs"] mod report;`);
//! it needs `serde_json` only.

#![allow(dead_code, reason = "each benchmark uses part of this module")]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Which way a figure is good.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Better {
    Lower,
    Higher,
}

/// What a row is held against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// spindle / anchor at most this.
    RatioAtMost(f64),
    /// spindle / anchor at least this.
    RatioAtLeast(f64),
    /// Spindle's figure at most this, in the row's unit.
    AtMost(f64),
    /// Spindle's figure at least this, in the row's unit.
    AtLeast(f64),
}

/// One figure of Spindle's, beside its anchor's when there is one.
#[derive(Debug, Clone)]
pub struct Row {
    pub what: String,
    pub unit: String,
    pub spindle: Option<f64>,
    pub anchor: Option<f64>,
    pub better: Better,
    pub target: Option<Target>,
    /// The one-minute load average when it was measured.
    pub load: f64,
}

impl Row {
    /// spindle / anchor, when both exist and the anchor is not zero.
    pub fn ratio(&self) -> Option<f64> {
        match (self.spindle, self.anchor) {
            (Some(ours), Some(theirs)) if theirs != 0.0 => Some(ours / theirs),
            _ => None,
        }
    }

    /// Whether the target is met; `None` without a target or a figure.
    pub fn met(&self) -> Option<bool> {
        match self.target? {
            Target::RatioAtMost(limit) => self.ratio().map(|ratio| ratio <= limit),
            Target::RatioAtLeast(limit) => self.ratio().map(|ratio| ratio >= limit),
            Target::AtMost(limit) => self.spindle.map(|figure| figure <= limit),
            Target::AtLeast(limit) => self.spindle.map(|figure| figure >= limit),
        }
    }

    fn target_text(&self) -> Option<String> {
        self.target.map(|target| match target {
            Target::RatioAtMost(limit) => format!("ratio <= {limit}"),
            Target::RatioAtLeast(limit) => format!("ratio >= {limit}"),
            Target::AtMost(limit) => format!("<= {limit} {}", self.unit),
            Target::AtLeast(limit) => format!(">= {limit} {}", self.unit),
        })
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "what": self.what,
            "unit": self.unit,
            "spindle": self.spindle,
            "anchor": self.anchor,
            "ratio": self.ratio(),
            "better": match self.better { Better::Lower => "lower", Better::Higher => "higher" },
            "target": self.target_text(),
            "met": self.met(),
            "load": self.load,
        })
    }
}

/// A benchmark's report, filled as it runs.
#[derive(Debug)]
pub struct Report {
    bench: String,
    anchor: String,
    anchor_error: Option<String>,
    rows: Vec<Row>,
    load_before: [f64; 3],
    started: Instant,
    details: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    /// Starts a report and prints its first line (machine, load).
    pub fn start(bench: &str, anchor: &str) -> Report {
        let report = Report {
            bench: bench.to_owned(),
            anchor: anchor.to_owned(),
            anchor_error: None,
            rows: Vec::new(),
            load_before: load_average(),
            started: Instant::now(),
            details: serde_json::Map::new(),
        };
        let [one, five, fifteen] = report.load_before;
        report.phase(&format!(
            "{} CPUs, unpinned; load average {one:.2} {five:.2} {fifteen:.2}; anchor: {anchor}",
            std::thread::available_parallelism().map_or(0, |cpus| cpus.get()),
        ));
        report
    }

    /// One progress line: `[bench +12.3s load 1.20] what`, flushed at once.
    pub fn phase(&self, what: &str) {
        println!(
            "[{} +{:.1}s load {:.2}] {what}",
            self.bench,
            self.started.elapsed().as_secs_f64(),
            load_average()[0]
        );
        let _ = std::io::stdout().flush();
    }

    /// A figure with its anchor's (`anchor: None` when it has none).
    pub fn row(
        &mut self,
        what: &str,
        unit: &str,
        spindle: Option<f64>,
        anchor: Option<f64>,
        better: Better,
        target: Option<Target>,
    ) {
        self.rows.push(Row {
            what: what.to_owned(),
            unit: unit.to_owned(),
            spindle,
            anchor,
            better,
            target,
            load: load_average()[0],
        });
    }

    /// The anchor could not run: prints why, writes the JSON with
    /// `anchor_error` and no rows, and exits 1. No table is printed, so no
    /// figure of spindle's appears without its comparison.
    pub fn anchor_failed(mut self, why: &str) -> ! {
        self.phase(&format!("ANCHOR FAILED: {why}"));
        self.anchor_error = Some(why.to_owned());
        self.rows.clear();
        self.write_json(load_average());
        eprintln!(
            "{}: the anchor ({}) could not run: {why}; no figures are reported",
            self.bench, self.anchor
        );
        std::process::exit(1)
    }

    /// Whatever else the benchmark wants in its JSON.
    pub fn detail(&mut self, key: &str, value: serde_json::Value) {
        self.details.insert(key.to_owned(), value);
    }

    /// Prints the table and writes `<bench dir>/<bench>.json`.
    pub fn finish(self) {
        let load_after = load_average();
        println!(
            "\n{}: spindle beside {} (load average {:.2} before, {:.2} after)",
            self.bench, self.anchor, self.load_before[0], load_after[0]
        );
        println!(
            "{:<46} {:>9} {:>12} {:>12} {:>8}  {:<16} {:<6} {:>5}",
            "what", "unit", "spindle", "anchor", "ratio", "target", "met", "load"
        );
        for row in &self.rows {
            println!(
                "{:<46} {:>9} {:>12} {:>12} {:>8}  {:<16} {:<6} {:>5.2}",
                row.what,
                row.unit,
                figure(row.spindle),
                figure(row.anchor),
                row.ratio()
                    .map_or("-".to_owned(), |ratio| format!("{ratio:.3}")),
                row.target_text().unwrap_or_else(|| "-".to_owned()),
                match row.met() {
                    Some(true) => "met",
                    Some(false) => "MISSED",
                    None => "-",
                },
                row.load,
            );
        }
        println!("ratio = spindle / anchor");
        self.write_json(load_after);
    }

    /// Writes `<bench dir>/<bench>.json`; exits 1 when it cannot.
    fn write_json(&self, load_after: [f64; 3]) {
        let json = serde_json::json!({
            "bench": self.bench,
            "anchor": self.anchor,
            "anchor_error": self.anchor_error,
            "load": { "before": self.load_before, "after": load_after },
            "rows": self.rows.iter().map(Row::json).collect::<Vec<_>>(),
            "details": self.details,
        });
        let dir = bench_dir();
        let path = dir.join(format!("{}.json", self.bench));
        let written = std::fs::create_dir_all(&dir).and_then(|()| {
            std::fs::write(
                &path,
                serde_json::to_string_pretty(&json).unwrap_or_default(),
            )
        });
        match written {
            Ok(()) => println!("wrote {}", path.display()),
            Err(error) => {
                eprintln!("{}: cannot write {}: {error}", self.bench, path.display());
                std::process::exit(1);
            }
        }
    }
}

fn figure(value: Option<f64>) -> String {
    match value {
        None => "-".to_owned(),
        Some(value) if value.abs() >= 1000.0 => format!("{value:.0}"),
        Some(value) if value.abs() >= 10.0 => format!("{value:.1}"),
        Some(value) => format!("{value:.3}"),
    }
}

/// Where benchmarks write their JSON: `$SPINDLE_BENCH_DIR`, else
/// `$CARGO_TARGET_DIR/bench`, else `target/bench` of the repository.
pub fn bench_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SPINDLE_BENCH_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("bench");
    }
    repository_root().join("target/bench")
}

/// The workspace root: the first ancestor of the bench's package that
/// holds `Cargo.lock`.
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .unwrap_or(Path::new(env!("CARGO_MANIFEST_DIR")))
        .to_path_buf()
}

/// The 1, 5 and 15 minute load averages (zeros where unreadable).
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut fields = text
        .split_whitespace()
        .map(|field| field.parse().unwrap_or(0.0));
    [
        fields.next().unwrap_or(0.0),
        fields.next().unwrap_or(0.0),
        fields.next().unwrap_or(0.0),
    ]
}

/// The median of `values` (NaN when empty).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        len if len % 2 == 1 => sorted[len / 2],
        len => (sorted[len / 2 - 1] + sorted[len / 2]) / 2.0,
    }
}
