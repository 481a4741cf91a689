//! The Prometheus text exposition format (version 0.0.4), written by hand: `# HELP`,
//! `# TYPE`, samples with escaped label values. What the Pushgateway, the node_exporter
//! textfile collector and `promtool check metrics` read. The one writer of it, for the
//! client's metrics and the emulator's `/metrics` alike, with the one histogram both count
//! with. Imports nothing from the crate, so both sides may use it.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Escapes a label value: backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

/// `{a="1",b="2"}`, or nothing without labels.
fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// A metrics page being written; `common` labels go on every sample.
#[derive(Debug, Default)]
pub struct Page {
    out: String,
    common: Vec<(String, String)>,
}

impl Page {
    /// An empty page whose samples all carry `common` labels.
    pub fn new(common: &[(String, String)]) -> Page {
        Page {
            out: String::new(),
            common: common.to_vec(),
        }
    }

    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, extra: &[(&str, &str)], value: f64) {
        let mut all: Vec<(&str, &str)> = self
            .common
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        all.extend_from_slice(extra);
        let _ = writeln!(self.out, "{name}{} {value}", labels(&all));
    }

    /// A counter family (`name` should end in `_total`).
    pub fn counter(&mut self, name: &str, help: &str, samples: &[(Vec<(&str, &str)>, f64)]) {
        self.header(name, "counter", help);
        for (l, v) in samples {
            self.sample(name, l, *v);
        }
    }

    /// A gauge family.
    pub fn gauge(&mut self, name: &str, help: &str, samples: &[(Vec<(&str, &str)>, f64)]) {
        self.header(name, "gauge", help);
        for (l, v) in samples {
            self.sample(name, l, *v);
        }
    }

    /// A histogram: cumulative counts per upper bound, then `+Inf`, `_sum` and `_count`.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        bounds: &[f64],
        cumulative: &[u64],
        count: u64,
        sum: f64,
    ) {
        self.header(name, "histogram", help);
        for (b, c) in bounds.iter().zip(cumulative) {
            let le = b.to_string();
            self.sample(&format!("{name}_bucket"), &[("le", &le)], *c as f64);
        }
        self.sample(&format!("{name}_bucket"), &[("le", "+Inf")], count as f64);
        self.sample(&format!("{name}_sum"), &[], sum);
        self.sample(&format!("{name}_count"), &[], count as f64);
    }

    /// A histogram from a [`Histogram`]'s snapshot.
    pub fn histogram_of(&mut self, name: &str, help: &str, h: &Histogram) {
        let s = h.snapshot();
        self.histogram(name, help, h.bounds, &s.cumulative, s.count, s.sum);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A histogram counted with atomics: observations per upper bound (and above the last),
/// and their sum, kept as an integer of `1/scale` units (µs for seconds with scale 1e6;
/// exact for whole numbers with scale 1).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Box<[AtomicU64]>,
    sum_units: AtomicU64,
    scale: f64,
}

/// A histogram's counts at one moment: cumulative per bound, then the count (the `+Inf`
/// bucket: always equal to it) and the sum.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Cumulative count at or below each bound.
    pub cumulative: Vec<u64>,
    /// All observations.
    pub count: u64,
    /// Sum of all observations.
    pub sum: f64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending), its sum kept in units of `1/scale`.
    pub fn new(bounds: &'static [f64], scale: f64) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_units: AtomicU64::new(0),
            scale,
        }
    }

    /// Counts one observation: in the first bucket whose bound is at or above it.
    pub fn observe(&self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_units
            .fetch_add((v * self.scale) as u64, Ordering::Relaxed);
    }

    /// The sum so far, in units of `1/scale`.
    pub fn sum_units(&self) -> u64 {
        self.sum_units.load(Ordering::Relaxed)
    }

    /// The counts now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let mut cumulative = Vec::with_capacity(self.bounds.len());
        for c in &self.counts[..self.bounds.len()] {
            total += c.load(Ordering::Relaxed);
            cumulative.push(total);
        }
        total += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            cumulative,
            count: total,
            sum: self.sum_units() as f64 / self.scale,
        }
    }
}

/// Reads one sample from Prometheus text (tests and scripts use it).
pub fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name_and_labels)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_carry_escaped_labels_and_histograms_end_with_inf() {
        let mut p = Page::new(&[("site".into(), "a\"b".into())]);
        p.counter("x_total", "X.", &[(vec![("code", "200")], 3.0)]);
        p.histogram("d_seconds", "D.", &[0.5, 1.0], &[1, 2], 3, 2.5);
        let t = p.finish();
        assert!(
            t.contains("x_total{site=\"a\\\"b\",code=\"200\"} 3\n"),
            "{t}"
        );
        assert!(
            t.contains("d_seconds_bucket{site=\"a\\\"b\",le=\"+Inf\"} 3\n"),
            "{t}"
        );
        assert!(t.contains("# TYPE d_seconds histogram\n"));
    }
}
