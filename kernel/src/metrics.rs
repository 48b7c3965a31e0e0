//! Request metrics as plain numbers: latency histograms by pipeline,
//! priority and outcome. The HTTP front end renders them (with the
//! scheduler's and batchers' own statistics) in the Prometheus format.

use std::collections::BTreeMap;
use std::sync::Mutex;

use spindle_scheduler::{Answer, Histogram};

/// Labels of one latency series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LatencyKey {
    pub pipeline: String,
    pub priority: &'static str,
    pub outcome: &'static str,
}

/// One latency histogram and its labels.
#[derive(Debug, Clone)]
pub struct LatencySeries {
    pub key: LatencyKey,
    pub histogram: Histogram,
}

/// The request path's own measurements.
#[derive(Debug, Default)]
pub struct Metrics {
    latency: Mutex<BTreeMap<LatencyKey, Histogram>>,
}

impl Metrics {
    /// Counts one answered request.
    pub fn record<T>(&self, answer: &Answer<T>) {
        let key = LatencyKey {
            pipeline: answer.pipeline.clone(),
            priority: answer.priority.as_str(),
            outcome: answer.outcome.kind().as_str(),
        };
        let mut latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        latency
            .entry(key)
            .or_insert_with(latency_histogram)
            .observe(answer.latency().as_secs_f64());
    }

    /// A copy of every latency series, sorted by their labels.
    pub fn latency(&self) -> Vec<LatencySeries> {
        self.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(key, histogram)| LatencySeries {
                key: key.clone(),
                histogram: histogram.clone(),
            })
            .collect()
    }
}

/// 50 µs to about 26 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::exponential(0.000_05, 2.0, 20)
}
