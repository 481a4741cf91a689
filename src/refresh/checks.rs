//! The checks of a refresh with today's export: its columns against the state's (before
//! anything is locked or sent), the export unchanged between its reads, and the guards
//! against dropping (or, with `--keep-missing`, duplicating) customers.

use super::{join, key, RefreshError};
use crate::error::Error;
use crate::input;
use crate::output::JobDescription;

/// With `--keep-missing`, state rows are written beside export rows, so every kept column
/// of the output must exist in the state with the same type: they are matched by name.
fn check_kept_match(
    out_kept: &[(String, arrow_schema::DataType)],
    state_kept: &[(String, arrow_schema::DataType)],
) -> Result<(), Error> {
    let names = || {
        state_kept
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (name, ty) in out_kept {
        match state_kept.iter().find(|(n, _)| n == name) {
            Some((_, t)) if t == ty => {}
            Some((_, t)) => {
                return Err(RefreshError::KeptTypeMismatch {
                    column: name.clone(),
                    export: ty.to_string(),
                    state: t.to_string(),
                }
                .into())
            }
            None => {
                return Err(RefreshError::KeptMissing {
                    column: name.clone(),
                    kept: names(),
                }
                .into())
            }
        }
    }
    Ok(())
}

/// Refuses kept columns whose types differ from the state's (the schema would change
/// silently), unless the user allowed it.
fn check_kept_types(
    out_kept: &[(String, arrow_schema::DataType)],
    state_kept: &[(String, arrow_schema::DataType)],
) -> Result<(), Error> {
    for (n, t) in out_kept {
        if let Some((_, st)) = state_kept.iter().find(|(sn, _)| sn == n) {
            if st != t {
                return Err(RefreshError::KeptTypeChange {
                    column: n.clone(),
                    state: st.to_string(),
                    export: t.to_string(),
                }
                .into());
            }
        }
    }
    Ok(())
}

/// Refuses to go on when an export input is not the version the run started with.
pub(super) fn check_unchanged(
    inputs: &[input::InputFile],
    description: &JobDescription,
) -> Result<(), Error> {
    for (f, old) in inputs.iter().zip(&description.fingerprints) {
        let now = input::Fingerprint::of(f)?;
        if let Some(why) = old.differs(&now) {
            return Err(RefreshError::ExportChanged {
                path: f.given.clone(),
                why,
            }
            .into());
        }
    }
    Ok(())
}

/// The error for an identity of the second read that is not the one the first read
/// decided for.
pub(super) fn changed_between_reads(path: &str, row: u64) -> Error {
    RefreshError::ExportChanged {
        path: path.to_string(),
        why: format!("row {row} holds another identity than in the first read"),
    }
    .into()
}

/// Refuses a join that would drop more than the allowed fraction of the state's customers.
pub(super) fn check_drop(
    joined: &join::Joined,
    key_col: &str,
    max_fraction: f64,
    keep_missing: bool,
) -> Result<(), Error> {
    // Keys that never meet are the likelier cause than churn, and `--keep-missing` would
    // write every customer twice: refused whatever the fraction, unless it is 1.
    let all = joined.state_customers;
    if all > 0 && joined.missing_customers == all && joined.export_keys > 0 && max_fraction < 1.0 {
        return Err(RefreshError::KeysDoNotMeet {
            key_col: key_col.to_string(),
            all,
        }
        .into());
    }
    // The percentage `part` is of `all`, when it is over the allowed fraction.
    let over = |part: u64, all: u64| {
        (all > 0 && part as f64 > max_fraction * all as f64)
            .then(|| 100.0 * part as f64 / all as f64)
    };
    let (gone, all) = (joined.missing_customers, joined.state_customers);
    // A customer whose key is written another way tonight (00042 for 42) would be mapped as
    // new and, with --keep-missing, carried too: written twice.
    if joined.respelled > 0 && max_fraction < 1.0 {
        return Err(RefreshError::KeysChanged {
            key_col: key_col.to_string(),
            respelled: joined.respelled,
            keep_missing,
        }
        .into());
    }
    if let Some(percent) = over(gone, all).filter(|_| !keep_missing) {
        let max = max_fraction;
        return Err(RefreshError::TooManyDropped {
            gone,
            all,
            percent,
            max,
        }
        .into());
    }
    // `--keep-missing` keeps absent customers, not the identities present ones lost.
    let (lost, all) = (joined.lost_ids, joined.present_mapped_ids);
    if let Some(percent) = over(lost, all) {
        let max = max_fraction;
        return Err(RefreshError::TooManyLost {
            lost,
            all,
            percent,
            max,
        }
        .into());
    }
    Ok(())
}

/// Tonight's export's columns, checked against the state before anything is locked or sent.
pub(super) struct ExportColumns {
    /// Each input's columns.
    pub(super) columns: Vec<input::ResolvedColumns>,
    /// The output's kept columns.
    pub(super) out_kept: Vec<(String, arrow_schema::DataType)>,
    /// Where the key column is among the kept ones.
    pub(super) key_idx: usize,
}

/// Resolves the export's columns and checks them against the state: the key column's type,
/// and the kept columns (by name and type).
///
/// # Errors
/// A column is missing or of the wrong type, or kept columns that do not match.
pub(super) fn check(
    cfg: &super::RefreshConfig,
    job: &crate::config::JobConfig,
    state_kept: &[(String, arrow_schema::DataType)],
) -> Result<ExportColumns, Error> {
    let key_col = cfg.key_col.clone().expect("checked by the caller");
    let key_idx = job
        .columns
        .keep
        .iter()
        .position(|k| *k == key_col)
        .expect("settle_kept keeps the key column");
    let columns = input::resolve_all(&job.inputs, &job.columns)?;
    if !job.quiet {
        input::announce_detected(&job.inputs, &job.columns, &columns);
    }
    let out_kept = columns
        .first()
        .map(|c| c.keep_types.clone())
        .unwrap_or_default();
    for (f, c) in job.inputs.iter().zip(&columns) {
        key::check(&key_col, &f.given, &c.keep_types[key_idx].1)?;
    }
    if cfg.keep_missing {
        check_kept_match(&out_kept, state_kept)?;
    } else if !cfg.allow_schema_change {
        check_kept_types(&out_kept, state_kept)?;
    }
    Ok(ExportColumns {
        columns,
        out_kept,
        key_idx,
    })
}

#[cfg(test)]
mod tests {
    use arrow_schema::DataType;

    use super::*;

    /// Issue #9.5: kept columns are matched by name and type, never by position.
    #[test]
    fn kept_columns_match_by_name_and_type() {
        let s = |n: &str, t: DataType| (n.to_string(), t);
        let state = [s("customer_id", DataType::Utf8), s("name", DataType::Utf8)];
        let swapped = [s("name", DataType::Utf8), s("customer_id", DataType::Utf8)];
        assert!(check_kept_match(&swapped, &state).is_ok());
        assert!(check_kept_match(&[s("customer_id", DataType::Int64)], &state).is_err());
        assert!(check_kept_match(&[s("segment", DataType::Utf8)], &state).is_err());
    }
}
