//! The Prometheus text exposition format (version 0.0.4), written by hand: `# HELP`,
//! `# TYPE`, samples with escaped label values. What the Pushgateway, the node_exporter
//! textfile collector and `promtool check metrics` read.

use std::fmt::Write;

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

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
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
