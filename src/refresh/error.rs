//! What stops a refresh before it writes anything: options that do not fit the state, and
//! the guard against wiping the state with an empty or truncated export.

/// A refresh that cannot run as asked.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// INPUT files without `--key-col`.
    #[error("with INPUT files, --key-col names the column that identifies a customer (e.g. customer_id)")]
    KeyColumnNeeded,
    /// `--key-col` without INPUT files.
    #[error("--key-col joins today's export with the state: give the export's INPUT files too")]
    InputNeeded,
    /// The state did not keep the key column.
    #[error("the state has no column {key_col:?}: it must have been kept with --keep-col {key_col} (state columns kept: {kept})")]
    NoKeyColumn {
        /// The key column asked for.
        key_col: String,
        /// The state's kept columns.
        kept: String,
    },
    /// `--keep-missing` and a kept column of another type in the state.
    #[error("--keep-missing writes state rows beside today's rows, but kept column {column:?} is {export} in today's export and {state} in the state; keep columns of the same type (or refresh without --keep-missing)")]
    KeptTypeMismatch {
        /// The column.
        column: String,
        /// Its type in today's export.
        export: String,
        /// Its type in the state.
        state: String,
    },
    /// `--keep-missing` and a kept column the state lacks.
    #[error("--keep-missing writes state rows beside today's rows, but the state has no kept column {column:?} (its kept columns: {kept}); keep the same columns as the run that made the state")]
    KeptMissing {
        /// The column.
        column: String,
        /// The state's kept columns.
        kept: String,
    },
    /// Today's export over a lookup table (`map --distinct`): it has no customer keys.
    #[error("the state is a lookup table (map --distinct): it holds identities, not customers, so it refreshes without INPUT or --key-col (state-only mode)")]
    LookupWithExport,
    /// `--api v2` over a v3 state.
    #[error("--api v2 needs a state written with --api v2 (it has no bucket_id column)")]
    NotAV2State,
    /// Today's export lacks too many of the state's customers.
    #[error("refusing to drop {gone} of the state's {all} customers ({percent:.1}%): today's export lacks them, which is more than --max-drop-fraction {max} allows. An empty or truncated export looks like this; if the customers really left, rerun with a higher --max-drop-fraction (or --keep-missing to keep them)")]
    TooManyDropped {
        /// Customers absent from the export.
        gone: u64,
        /// Customers in the state.
        all: u64,
        /// `100 × gone / all`.
        percent: f64,
        /// `--max-drop-fraction`.
        max: f64,
    },
    /// Not one key of the export is a customer of the state: the keys are written another
    /// way (or the wrong key column was named), and every customer would be dropped, or
    /// written twice with `--keep-missing`.
    #[error("no key of tonight's export matches the state: none of its {all} customers is in the export by --key-col {key_col:?}. Are the keys written another way (C-1234 against 1234, zero-padded, another column)? Nothing was written: mapped as is, every customer would be dropped, or written twice with --keep-missing. If the export really holds only new customers, rerun with --max-drop-fraction 1")]
    KeysDoNotMeet {
        /// The key column.
        key_col: String,
        /// Customers in the state.
        all: u64,
    },
    /// Keys of tonight's export that are a missing customer's key written another way.
    #[error("{respelled} keys of tonight's export (--key-col {key_col:?}) are a state customer's key written another way (00042 for 42, c-42 for C42: the same letters and digits but for case, punctuation and leading zeros), and those customers are not in the export under their own keys. Nothing was written: {} Export the keys as the state has them; if these really are other customers, rerun with --max-drop-fraction 1", if *keep_missing { "with --keep-missing each would be written twice, carried and mapped again as new." } else { "each would be dropped and mapped again as new." })]
    KeysChanged {
        /// The key column.
        key_col: String,
        /// Export keys that are a missing customer's key written another way.
        respelled: u64,
        /// Whether `--keep-missing` was given.
        keep_missing: bool,
    },
    /// Customers still in the export lost too many of their mapped identities.
    #[error("refusing to drop the raw EUIDs of {lost} of the {all} mapped identities whose customers are in today's export ({percent:.1}%): the export no longer holds these identities in a valid form (invalid or empty tonight), which is more than --max-drop-fraction {max} allows. A phone column read without its --phone-region or --phone-region-col, or a column emptied upstream, looks like this; if the values really went, rerun with a higher --max-drop-fraction")]
    TooManyLost {
        /// Mapped identities of present customers that the export lost.
        lost: u64,
        /// Mapped identities of present customers.
        all: u64,
        /// `100 × lost / all`.
        percent: f64,
        /// `--max-drop-fraction`.
        max: f64,
    },
    /// A key cell of the export that is not UTF-8.
    #[error("{path}: data row {row}: the key column {column:?} holds a value that is not UTF-8 (an export in Latin-1 or another encoding?); its customer cannot be told, so nothing was written. Export the file as UTF-8")]
    KeyUnreadable {
        /// The input.
        path: String,
        /// 1-based data row.
        row: u64,
        /// The key column.
        column: String,
    },
    /// A key column whose type cannot be compared by value.
    #[error("key column {column:?} is {data_type} in {side}: a key must be a string, integer or decimal column (compared by value, so 42, \"42\" and 42.00 are one customer)")]
    KeyType {
        /// The key column.
        column: String,
        /// `the state` or the export file.
        side: String,
        /// Its Arrow type.
        data_type: String,
    },
    /// Every state row has a null key: nothing could be matched.
    #[error("every one of the state's {rows} rows has a null {key_col:?}: no customer could be matched, so today's export would replace the whole state. Check that --key-col names the key the state was written with")]
    AllKeysNull {
        /// The key column.
        key_col: String,
        /// State rows.
        rows: u64,
    },
    /// The kept columns asked for differ from the state's.
    #[error("the state keeps the columns [{state}] but this refresh would write [{asked}]: the new dataset's schema would change silently. Leave out --keep-col to keep the state's columns, or pass --allow-schema-change to change them")]
    SchemaChange {
        /// The state's kept columns (with types).
        state: String,
        /// What this run would write.
        asked: String,
    },
    /// An export input changed while the refresh was reading it.
    #[error("{path} changed while refresh was reading it ({why}): the decisions of its first read no longer fit its rows. Nothing was published; once the export is complete, run again with --restart (or --resume --restart-if-changed), which discards the parts committed from the changed export")]
    ExportChanged {
        /// The input.
        path: String,
        /// What changed.
        why: String,
    },
    /// A kept column's type differs between the state and today's export.
    #[error("kept column {column:?} is {state} in the state but {export} in today's export (a CSV export reads every column as text), so the new dataset's column type would change. Export it with the state's type, or pass --allow-schema-change to change the dataset's schema (keys are matched by value either way)")]
    KeptTypeChange {
        /// The column.
        column: String,
        /// Its type in the state.
        state: String,
        /// Its type in today's export.
        export: String,
    },
}
