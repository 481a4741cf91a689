//! How a row's `reason` carries an opt-out found by refresh's sweep, written and read back
//! in one place.

/// The `reason` of a row whose raw EUID the opt-out sweep found opted out.
pub(crate) fn swept_reason(since_ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(since_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| since_ms.to_string());
    format!("opted out {t}")
}

/// When the person opted out, read back from a swept row's `reason`.
pub fn swept_since(reason: &str) -> Option<i64> {
    let t = reason.strip_prefix("opted out ")?;
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_swept_reason_reads_back() {
        let r = super::swept_reason(1_764_511_331_000);
        assert_eq!(r, "opted out 2025-11-30T14:02:11Z");
        assert_eq!(super::swept_since(&r), Some(1_764_511_331_000));
        assert_eq!(super::swept_since("invalid email"), None);
    }
}
