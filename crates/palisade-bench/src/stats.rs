//! Percentiles and the output format.

use std::time::Duration;

use serde_json::{Value, json};

/// Sorted durations in milliseconds.
pub struct Samples(Vec<f64>);

impl Samples {
    /// Samples from durations.
    pub fn new(durations: &[Duration]) -> Self {
        let mut ms: Vec<f64> = durations.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        Self(ms)
    }

    /// The `p`-th percentile (0–100), in milliseconds.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * (self.0.len() - 1) as f64).round() as usize;
        self.0[rank.min(self.0.len() - 1)]
    }
}

/// Prints one result: a readable line, then one JSON line.
pub fn report(server: &str, scenario: &str, fields: Value) {
    let readable: Vec<String> = fields
        .as_object()
        .map(|o| o.iter().map(|(k, v)| format!("{k}={v}")).collect())
        .unwrap_or_default();
    println!("{server:<10} {scenario:<28} {}", readable.join("  "));
    let mut line = json!({ "server": server, "scenario": scenario });
    if let (Some(line), Some(fields)) = (line.as_object_mut(), fields.as_object()) {
        line.extend(fields.clone());
    }
    println!("JSON {line}");
}

/// Rounds to two decimals for the output.
pub fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}
