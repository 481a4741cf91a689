//! Parquet reader: reads record batch by record batch with a projection of the needed
//! columns only, so memory does not depend on the file size. Kept columns keep their Arrow
//! (and so Parquet) type. Objects are read with ranged requests (footer, then the projected
//! column chunks of each row group) through [`ParquetFile`].

use std::sync::Arc;

use parquet::arrow::ProjectionMask;

use super::{
    Chunk, Header, InputError, InputFile, ReadProgress, ResolvedColumns, Sink, TextColumn,
    CHUNK_ROWS,
};
use crate::storage::ParquetFile;

fn open(f: &InputFile) -> Result<ParquetFile, InputError> {
    ParquetFile::open(&f.location).map_err(|message| InputError::Parquet {
        path: f.given.clone(),
        message,
    })
}

/// Reads the schema from the footer.
pub(super) fn header(f: &InputFile) -> Result<Header, InputError> {
    let b = open(f)?;
    Ok(Header {
        columns: b
            .schema()
            .fields()
            .iter()
            .map(|fl| (fl.name().clone(), fl.data_type().clone()))
            .collect(),
    })
}

/// Streams the file's rows from `skip` on into chunks.
pub(super) fn read(
    file_idx: usize,
    f: &InputFile,
    cols: &ResolvedColumns,
    skip: u64,
    progress: &ReadProgress,
    sink: &mut Sink<'_>,
) -> Result<bool, InputError> {
    let b = open(f)?;
    let total_rows = b.metadata().file_metadata().num_rows().max(1) as u64;
    let file_size = f.size();
    let mut wanted: Vec<usize> = cols.used().collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mask = ProjectionMask::roots(b.parquet_schema(), wanted.iter().copied());
    let skip_usize = usize::try_from(skip).unwrap_or(usize::MAX);
    let reader = b
        .batches(Some(mask), CHUNK_ROWS, skip_usize)
        .map_err(|message| InputError::Parquet {
            path: f.given.clone(),
            message,
        })?;
    let position_in = |file_index: usize| {
        wanted
            .iter()
            .position(|&w| w == file_index)
            .expect("projected column")
    };
    let mut row = skip;
    for batch in reader {
        let batch = batch.map_err(|message| InputError::Read {
            path: f.given.clone(),
            row: row + 1,
            message,
        })?;
        let len = batch.num_rows();
        let chunk = Chunk {
            file: file_idx,
            first_row: row,
            len,
            identities: cols
                .identities
                .iter()
                .map(|c| TextColumn::new(Arc::clone(batch.column(position_in(c.index)))))
                .collect(),
            broken: Vec::new(),
            bad_cells: Vec::new(),
            bad_kept: Vec::new(),
            kept: cols
                .keep
                .iter()
                .map(|&i| crate::text::to_utf8(batch.column(position_in(i))))
                .collect(),
            phone_regions: cols
                .phone_region_cols
                .iter()
                .map(|r| TextColumn::new(Arc::clone(batch.column(position_in(r.index)))))
                .collect(),
        };
        row += len as u64;
        progress.add(
            file_size.saturating_mul(len as u64) / total_rows,
            len as u64,
        );
        if !sink(chunk) {
            return Ok(false);
        }
    }
    Ok(true)
}
