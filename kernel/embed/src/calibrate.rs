//! What a batch costs on this machine: the engine times a small grid of
//! batch shapes (texts × padded length) at start-up, so that a batcher can
//! size batches by measurement instead of by a guess ("throughput peaks
//! near batch 8" holds on one machine, not on every one).
//!
//! The grid: padded lengths 16, 32, 64, 128 (up to the model's maximum)
//! and batches of 1, 2, 4, 8, 16, 32 texts, at most 1,024 padded tokens a
//! shape; each shape runs twice after one warm-up and keeps the faster run.
//! That is about 21,000 padded tokens, a few seconds of work, so the result
//! is kept in the cache (`<cache>/calibration/`, one file per
//! model, provider, thread count and CPU) and measured again only when it
//! is missing. [`BatchCosts::seconds`] interpolates between measured shapes.
//!
//! The measurement delays the engine's readiness, so it has a time budget
//! ([`MEASURE_BUDGET`]): shapes are measured from the cheapest up, and when
//! the budget is spent the rest are left out ([`BatchCosts::seconds`]
//! extrapolates past the largest measured ones). On a slow or emulated CPU
//! (a first run under qemu took minutes for the whole grid) the engine is
//! ready after about the budget; such a partial measurement is not cached,
//! so a later start on a quieter machine measures again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Padded lengths the grid measures.
pub const GRID_SEQ: [usize; 4] = [16, 32, 64, 128];
/// Batch sizes the grid measures.
pub const GRID_BATCH: [usize; 6] = [1, 2, 4, 8, 16, 32];
/// The largest shape measured, in padded tokens.
pub const GRID_MAX_TOKENS: usize = 1024;
/// How long the measurement may take at start-up; the shape under way when
/// it runs out is finished.
pub const MEASURE_BUDGET: Duration = Duration::from_millis(1500);

/// Whether and how an engine measures its batch costs at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Calibration {
    /// No measurement; [`crate::Engine::batch_costs`] is `None`.
    #[default]
    Off,
    /// Use the cached measurement of this machine, measuring once when
    /// there is none.
    Cached,
    /// Measure now (and refresh the cache).
    Fresh,
}

/// One measured shape.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ShapeCost {
    pub batch: usize,
    pub seq: usize,
    /// The faster of two runs, tokenizing excluded.
    pub seconds: f64,
}

/// Measured cost per batch shape, with interpolation between shapes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchCosts {
    /// What was measured: model, provider, threads, CPU.
    pub key: String,
    pub shapes: Vec<ShapeCost>,
    /// Whether every shape of the grid was measured (false when the time
    /// budget ran out first; such a measurement is not cached).
    #[serde(default = "complete_by_default")]
    pub complete: bool,
}

/// Measurements cached before `complete` existed were of the whole grid.
fn complete_by_default() -> bool {
    true
}

impl BatchCosts {
    /// Estimated seconds for a batch of `batch` texts padded to `seq`
    /// tokens: linear between measured batch sizes (and proportional past
    /// the largest measured one), linear between measured lengths
    /// (proportional past the longest).
    pub fn seconds(&self, batch: usize, seq: usize) -> f64 {
        let batch = batch.max(1);
        let seq = seq.max(1);
        let lengths: Vec<usize> = {
            let mut lengths: Vec<usize> = self.shapes.iter().map(|shape| shape.seq).collect();
            lengths.sort_unstable();
            lengths.dedup();
            lengths
        };
        let (Some(&shortest), Some(&longest)) = (lengths.first(), lengths.last()) else {
            return 0.0;
        };
        if seq <= shortest {
            return self.row(shortest, batch);
        }
        if seq >= longest {
            return self.row(longest, batch) * seq as f64 / longest as f64;
        }
        let upper = lengths
            .iter()
            .position(|&length| length >= seq)
            .unwrap_or(0);
        let (low, high) = (lengths[upper.saturating_sub(1)], lengths[upper]);
        if low == high {
            return self.row(low, batch);
        }
        let weight = (seq - low) as f64 / (high - low) as f64;
        self.row(low, batch) * (1.0 - weight) + self.row(high, batch) * weight
    }

    /// Cost of `batch` texts at a measured length `seq`.
    fn row(&self, seq: usize, batch: usize) -> f64 {
        let mut points: Vec<(usize, f64)> = self
            .shapes
            .iter()
            .filter(|shape| shape.seq == seq)
            .map(|shape| (shape.batch, shape.seconds))
            .collect();
        points.sort_by_key(|point| point.0);
        let Some(&(first_batch, first_seconds)) = points.first() else {
            return 0.0;
        };
        if batch <= first_batch {
            return first_seconds * batch as f64 / first_batch as f64;
        }
        for pair in points.windows(2) {
            let ((b0, s0), (b1, s1)) = (pair[0], pair[1]);
            if batch <= b1 {
                let weight = (batch - b0) as f64 / (b1 - b0) as f64;
                return s0 * (1.0 - weight) + s1 * weight;
            }
        }
        let &(last_batch, last_seconds) = points.last().expect("not empty");
        last_seconds * batch as f64 / last_batch as f64
    }

    /// The file under `cache` that holds the measurement for `key`.
    pub fn path(cache: &Path, key: &str) -> PathBuf {
        let file: String = key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        cache.join("calibration").join(format!("{file}.json"))
    }

    /// The cached measurement for `key`, if any.
    pub fn load(cache: &Path, key: &str) -> Option<BatchCosts> {
        let bytes = std::fs::read(BatchCosts::path(cache, key)).ok()?;
        let costs: BatchCosts = serde_json::from_slice(&bytes).ok()?;
        (costs.key == key && !costs.shapes.is_empty()).then_some(costs)
    }

    /// Writes the measurement atomically (another process may be reading).
    pub fn store(&self, cache: &Path) -> std::io::Result<()> {
        let path = BatchCosts::path(cache, &self.key);
        if let Some(directory) = path.parent() {
            std::fs::create_dir_all(directory)?;
        }
        let partial = path.with_extension(format!("json.{}.part", std::process::id()));
        std::fs::write(
            &partial,
            serde_json::to_vec_pretty(self).unwrap_or_default(),
        )?;
        std::fs::rename(&partial, &path)
    }
}

/// The shapes of the grid for a model whose maximum length is `max_seq`,
/// cheapest (fewest padded tokens) first.
pub fn grid(max_seq: usize) -> Vec<(usize, usize)> {
    let mut shapes = Vec::new();
    for &seq in GRID_SEQ
        .iter()
        .filter(|&&seq| seq <= max_seq.max(GRID_SEQ[0]))
    {
        for &batch in &GRID_BATCH {
            if batch * seq <= GRID_MAX_TOKENS {
                shapes.push((batch, seq));
            }
        }
    }
    shapes.sort_by_key(|&(batch, seq)| (batch * seq, seq));
    shapes
}

/// Times `run(batch, seq)` over the grid, cheapest shape first: one warm-up
/// per shape, then the faster of two runs, until `budget` is spent (the
/// first shape is always measured). `run` returns whether the shape ran.
pub fn measure(
    key: String,
    max_seq: usize,
    budget: Duration,
    mut run: impl FnMut(usize, usize) -> bool,
) -> BatchCosts {
    let started = Instant::now();
    let mut shapes = Vec::new();
    let grid = grid(max_seq);
    let mut complete = true;
    for (index, &(batch, seq)) in grid.iter().enumerate() {
        if index > 0 && started.elapsed() >= budget {
            complete = false;
            tracing::info!(
                measured = shapes.len(),
                left_out = grid.len() - index,
                "the batch-cost measurement ran out of its {:.1} s budget; larger shapes are extrapolated",
                budget.as_secs_f64()
            );
            break;
        }
        if !run(batch, seq) {
            continue;
        }
        let mut best = Duration::MAX;
        for _ in 0..2 {
            let timer = Instant::now();
            run(batch, seq);
            best = best.min(timer.elapsed());
        }
        shapes.push(ShapeCost {
            batch,
            seq,
            seconds: best.as_secs_f64(),
        });
    }
    tracing::info!(
        shapes = shapes.len(),
        "measured batch costs in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    BatchCosts {
        key,
        shapes,
        complete,
    }
}

/// A name for this CPU, for the calibration key (from /proc/cpuinfo).
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown-cpu".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn costs() -> BatchCosts {
        // 1 ms fixed + 0.1 ms per padded token, except batch 4 at length 16
        // which is cheaper per token.
        let mut shapes = Vec::new();
        for (batch, seq) in grid(32) {
            let mut seconds = 1e-3 + 1e-4 * (batch * seq) as f64;
            if (batch, seq) == (4, 16) {
                seconds *= 0.5;
            }
            shapes.push(ShapeCost {
                batch,
                seq,
                seconds,
            });
        }
        BatchCosts {
            key: "test".to_string(),
            shapes,
            complete: true,
        }
    }

    #[test]
    fn measured_shapes_are_returned_as_measured() {
        let costs = costs();
        assert!((costs.seconds(8, 32) - (1e-3 + 1e-4 * 256.0)).abs() < 1e-12);
        assert!((costs.seconds(4, 16) - 0.5 * (1e-3 + 1e-4 * 64.0)).abs() < 1e-12);
    }

    #[test]
    fn between_and_beyond_measured_shapes() {
        let costs = costs();
        // Between lengths 16 and 32 at batch 1: halfway.
        let middle = costs.seconds(1, 24);
        let expected = 0.5 * (costs.seconds(1, 16) + costs.seconds(1, 32));
        assert!((middle - expected).abs() < 1e-12);
        // Past the longest length: proportional.
        assert!((costs.seconds(1, 64) - 2.0 * costs.seconds(1, 32)).abs() < 1e-12);
        // Past the largest batch: proportional.
        assert!((costs.seconds(64, 32) - 2.0 * costs.seconds(32, 32)).abs() < 1e-12);
        // Shorter than the shortest: the shortest row.
        assert_eq!(costs.seconds(2, 3), costs.seconds(2, 16));
    }

    #[test]
    fn grid_stays_within_the_token_cap_and_the_model() {
        let shapes = grid(64);
        assert!(
            shapes
                .iter()
                .all(|&(b, s)| b * s <= GRID_MAX_TOKENS && s <= 64)
        );
        assert!(shapes.contains(&(32, 32)) && shapes.contains(&(16, 64)));
        assert!(!shapes.iter().any(|&(_, s)| s == 128));
    }

    #[test]
    fn stored_costs_load_back_by_key() {
        let directory = tempfile::tempdir().unwrap();
        let costs = costs();
        costs.store(directory.path()).unwrap();
        let loaded = BatchCosts::load(directory.path(), "test").expect("stored");
        assert_eq!(loaded.shapes.len(), costs.shapes.len());
        for (a, b) in loaded.shapes.iter().zip(&costs.shapes) {
            assert_eq!((a.batch, a.seq), (b.batch, b.seq));
            assert!((a.seconds - b.seconds).abs() < 1e-12);
        }
        assert_eq!(BatchCosts::load(directory.path(), "other"), None);
    }

    #[test]
    fn the_grid_runs_from_the_cheapest_shape_up() {
        let shapes = grid(128);
        let tokens: Vec<usize> = shapes.iter().map(|(batch, seq)| batch * seq).collect();
        assert!(
            tokens.windows(2).all(|pair| pair[0] <= pair[1]),
            "{shapes:?}"
        );
        assert_eq!(shapes.first(), Some(&(1, 16)));
    }

    #[test]
    fn a_spent_budget_stops_after_the_first_shape_and_marks_it_partial() {
        let mut ran = Vec::new();
        let costs = measure("partial".into(), 128, Duration::ZERO, |batch, seq| {
            ran.push((batch, seq));
            true
        });
        assert!(!costs.complete);
        assert_eq!(costs.shapes.len(), 1);
        // One warm-up and two timed runs of the cheapest shape, nothing else.
        assert_eq!(ran, vec![(1, 16); 3]);
        // Larger shapes are extrapolated from it.
        let one = costs.seconds(1, 16);
        assert!((costs.seconds(4, 32) - 8.0 * one).abs() <= 1e-12 * one.max(1.0));
    }

    #[test]
    fn within_its_budget_the_whole_grid_is_measured() {
        let costs = measure("whole".into(), 128, Duration::from_secs(3600), |_, _| true);
        assert!(costs.complete);
        assert_eq!(costs.shapes.len(), grid(128).len());
    }

    #[test]
    fn a_measurement_cached_before_the_budget_existed_reads_as_complete() {
        let old = r#"{"key":"k","shapes":[{"batch":1,"seq":16,"seconds":0.001}]}"#;
        let costs: BatchCosts = serde_json::from_str(old).unwrap();
        assert!(costs.complete);
    }
}
