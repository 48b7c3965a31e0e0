//! Histograms for measurements the metrics endpoint exports (batch size,
//! padding ratio, queue wait). Prometheus-shaped: fixed upper bounds,
//! cumulative counts, a sum and a count. No exporter here: the HTTP front
//! end renders them.

/// A fixed-bucket histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Upper bounds, ascending; an implicit `+Inf` bucket follows.
    bounds: Vec<f64>,
    /// Per-bucket (not cumulative) counts; one more than `bounds`.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// Buckets with the given ascending upper bounds.
    pub fn with_bounds(bounds: Vec<f64>) -> Self {
        let counts = vec![0; bounds.len() + 1];
        Histogram {
            bounds,
            counts,
            sum: 0.0,
            count: 0,
        }
    }

    /// `n` bounds: `start`, `start * factor`, ...
    pub fn exponential(start: f64, factor: f64, n: usize) -> Self {
        let bounds = (0..n).scan(start, |bound, _| {
            let current = *bound;
            *bound *= factor;
            Some(current)
        });
        Histogram::with_bounds(bounds.collect())
    }

    /// `n` bounds: `start`, `start + width`, ...
    pub fn linear(start: f64, width: f64, n: usize) -> Self {
        Histogram::with_bounds((0..n).map(|step| start + width * step as f64).collect())
    }

    pub fn observe(&mut self, value: f64) {
        let bucket = self.bounds.partition_point(|bound| *bound < value);
        self.counts[bucket] += 1;
        self.sum += value;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// The mean of all observations; 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// `(upper bound, cumulative count)` per bucket, ending with `+Inf`.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        self.bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(&self.counts)
            .map(|(bound, count)| {
                total += count;
                (bound, total)
            })
            .collect()
    }

    /// The upper bound of the bucket holding quantile `q` (0..=1): an
    /// upper estimate, as bucketed data allows.
    pub fn quantile_upper_bound(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = (q.clamp(0.0, 1.0) * self.count as f64).ceil().max(1.0) as u64;
        self.cumulative()
            .into_iter()
            .find(|(_, cumulative)| *cumulative >= rank)
            .map_or(f64::INFINITY, |(bound, _)| bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_buckets() {
        let mut histogram = Histogram::with_bounds(vec![1.0, 2.0, 4.0]);
        for value in [0.5, 1.0, 1.5, 3.0, 9.0] {
            histogram.observe(value);
        }
        assert_eq!(
            histogram.cumulative(),
            vec![(1.0, 2), (2.0, 3), (4.0, 4), (f64::INFINITY, 5)]
        );
        assert_eq!(histogram.count(), 5);
        assert!((histogram.sum() - 15.0).abs() < 1e-9);
        assert_eq!(histogram.quantile_upper_bound(0.5), 2.0);
        assert_eq!(histogram.quantile_upper_bound(1.0), f64::INFINITY);
    }

    #[test]
    fn exponential_and_linear_bounds() {
        assert_eq!(Histogram::exponential(1.0, 2.0, 4).cumulative().len(), 5);
        let linear = Histogram::linear(0.25, 0.25, 4);
        assert_eq!(linear.cumulative()[3].0, 1.0);
    }
}
