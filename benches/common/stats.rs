//! Nearest-rank summaries of a bench's timed samples, and the ratios the
//! reports print. Shared by the benches through `#[path]`.

#![allow(dead_code, reason = "each bench uses a different subset")]

use std::time::Duration;

pub struct Stats {
    pub median: Duration,
    pub min: Duration,
    pub p90: Duration,
    pub max: Duration,
}

impl Stats {
    /// Nearest rank; an empty sample (a variant that never ran) shows as zero.
    pub fn of(samples: &[Duration]) -> Stats {
        let mut sorted = samples.to_vec();
        sorted.sort();
        let at = |q: f64| {
            sorted
                .get(((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or_default()
        };
        Stats {
            median: at(0.5),
            min: sorted.first().copied().unwrap_or_default(),
            p90: at(0.9),
            max: sorted.last().copied().unwrap_or_default(),
        }
    }

    pub fn median_ratio(&self, base: &Stats) -> f64 {
        self.median.as_secs_f64() / base.median.as_secs_f64()
    }

    /// `median (min)`, for a wall-clock table.
    pub fn table_cell(&self) -> String {
        format!("{} ({})", fmt(self.median), fmt(self.min))
    }

    /// `median ratio× (min ratio×)` against `base`.
    pub fn ratios(&self, base: &Stats) -> String {
        format!(
            "{:.2}× ({:.2}×)",
            self.median_ratio(base),
            self.min.as_secs_f64() / base.min.as_secs_f64()
        )
    }
}

/// A duration for a table: milliseconds (one decimal below 100 ms) or
/// seconds.
pub fn fmt(d: Duration) -> String {
    if d < Duration::from_millis(100) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else if d < Duration::from_secs(1) {
        format!("{:.0} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}
