//! The dataset writer: record batches into `part-NNNNN.parquet`, each part published under
//! its final name only when complete ([`PartSink`]: temp name and rename locally, a completed
//! multipart upload on an object store). Chunks must arrive in input order; the pipeline
//! guarantees it.

use std::sync::Arc;

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;

use super::codec::{properties, Codec};
use super::parts::{part_name, PartInfo, PART_INFO_KEY};
use super::schema::Schema;
use super::OutputError;
use crate::input::Position;
use crate::record::IdentityChunk;
use crate::record::{Identity, PhoneTally, RefreshMark, RefreshTally, RowStatus, StatusCounts};
use crate::storage::{Location, PartSink, PendingCommit};

/// The rows of one write: where they come from and how they count.
struct Rows<'a> {
    file: usize,
    first_row: u64,
    /// Input rows.
    len: usize,
    /// Output rows per input row.
    per_input_row: usize,
    statuses: &'a [RowStatus],
    marks: Option<&'a [RefreshMark]>,
    /// The identities, for the phone tally (none for rows built elsewhere).
    ids: &'a [Identity],
    /// For rows with an explicit origin: which start another input row.
    starts: Option<&'a [bool]>,
}

struct OpenPart {
    writer: ArrowWriter<PartSink>,
    info: PartInfo,
}

/// Writes a dataset directory part by part.
pub struct DatasetWriter {
    dir: Location,
    schema: Schema,
    sources: Vec<String>,
    part_rows: u64,
    next_part: u32,
    open: Option<OpenPart>,
    /// The previous part, still being published (object stores): it must be visible before
    /// the next one is, so that `--resume` never sees a gap.
    publishing: Option<PendingCommit>,
    /// Totals over every part, including those committed by an earlier run (resume).
    pub totals: StatusCounts,
    /// Input rows covered by every part.
    pub input_rows: u64,
    /// `refresh`: decisions over every part, including those of an earlier run (resume).
    pub refresh_totals: RefreshTally,
    /// Raw phones by how they were read, over every part.
    pub phone_totals: PhoneTally,
    /// Kept cells written as null because they were not UTF-8, over every part.
    pub unreadable_kept: u64,
    /// The `(source, row)` of the last row written from an explicit origin: rows carried
    /// from a previous run count as one input row per distinct origin.
    last_origin: Option<(String, u64)>,
    /// The directory's lock, held as long as the writer lives.
    _lock: super::DirLock,
    /// Where the totals are reported as they grow (Prometheus metrics).
    live: Option<std::sync::Arc<crate::record::LiveCounts>>,
    /// The parts' codec.
    codec: Codec,
    /// Unreadable kept cells of the chunk being written, counted in the next part written.
    pending_unreadable: u64,
}

impl Drop for DatasetWriter {
    /// A part still open when the writer goes away (a write error, a full disk, an
    /// interrupted or failed run) is removed or its upload aborted: only committed parts
    /// stay.
    fn drop(&mut self) {
        drop(self.open.take());
        drop(self.publishing.take());
    }
}

impl DatasetWriter {
    /// Starts writing into `dir`, after the parts in `existing` (empty for a fresh run).
    /// `sources` are the input paths as given, by file index. A part is committed after about
    /// `part_rows` output rows. `lock` is the directory's lock, held until the writer drops.
    pub fn new(
        dir: &Location,
        schema: Schema,
        sources: Vec<String>,
        part_rows: u64,
        existing: &[PartInfo],
        lock: super::DirLock,
    ) -> DatasetWriter {
        let mut totals = StatusCounts::default();
        let mut refresh_totals = RefreshTally::default();
        let mut phone_totals = PhoneTally::default();
        let (mut input_rows, mut unreadable_kept) = (0, 0);
        for p in existing {
            unreadable_kept += p.unreadable_kept;
            totals.merge(&p.counts);
            refresh_totals.merge(&p.refresh);
            phone_totals.merge(&p.phones);
            input_rows += p.input_rows;
        }
        DatasetWriter {
            dir: dir.clone(),
            schema,
            sources,
            part_rows: part_rows.max(1),
            next_part: existing.last().map_or(0, |p| p.part + 1),
            open: None,
            publishing: None,
            totals,
            input_rows,
            refresh_totals,
            phone_totals,
            unreadable_kept,
            last_origin: None,
            _lock: lock,
            live: None,
            codec: Codec::default(),
            pending_unreadable: 0,
        }
    }

    /// Compresses the parts written from now on with `codec`.
    pub fn set_codec(&mut self, codec: Codec) {
        self.codec = codec;
    }

    /// The `source` value of input `file`.
    pub fn source(&self, file: usize) -> &str {
        self.sources.get(file).map_or("", String::as_str)
    }

    /// The kept columns' names, in the output's order.
    pub fn kept_columns(&self) -> Vec<String> {
        self.schema
            .kept_columns()
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    /// For each output row of a chunk with an explicit origin, whether it starts another
    /// input row than the one before it (identities of one input row are adjacent).
    fn origin_starts(&mut self, o: &crate::record::Origin) -> Vec<bool> {
        use arrow_array::cast::AsArray;
        use arrow_array::Array;
        let n = o.row.len();
        let text = |i: usize| crate::text::at(o.source.as_ref(), i).unwrap_or_default();
        let num = |i: usize| -> u64 {
            use arrow_array::types::{Int64Type, UInt64Type};
            if o.row.is_null(i) {
                return u64::MAX;
            }
            match o.row.data_type() {
                arrow_schema::DataType::UInt64 => o.row.as_primitive::<UInt64Type>().value(i),
                arrow_schema::DataType::Int64 => o.row.as_primitive::<Int64Type>().value(i) as u64,
                _ => u64::MAX,
            }
        };
        let mut starts = Vec::with_capacity(n);
        for i in 0..n {
            let (src, row) = (text(i), num(i));
            // A row carried without its origin (`--keep-missing`) counts on its own.
            let same = row != u64::MAX
                && self
                    .last_origin
                    .as_ref()
                    .is_some_and(|(s, r)| *r == row && s == src);
            starts.push(!same);
            if !same {
                self.last_origin = Some((src.to_string(), row));
            }
        }
        starts
    }

    /// Reports the totals to `live` (the run's metrics) after every write.
    pub fn report_to(&mut self, live: std::sync::Arc<crate::record::LiveCounts>) {
        live.set(&self.totals);
        self.live = Some(live);
    }

    /// Appends the output rows of one chunk. A chunk may be split across parts so that each
    /// part holds about `part_rows` rows; parts always end on an input row boundary.
    ///
    /// # Errors
    /// Writing or committing a part failed.
    pub fn write(&mut self, mut r: IdentityChunk) -> Result<(), OutputError> {
        self.pending_unreadable += r.bad_kept.len() as u64;
        let source = self.sources.get(r.file).map_or("", String::as_str);
        let (batch, statuses) = super::rows::encode(&self.schema, source, &mut r).map_err(|e| {
            OutputError::Parquet {
                path: self.dir.url(),
                message: e.to_string(),
            }
        })?;
        let starts = r.origin.as_ref().map(|o| self.origin_starts(o));
        let n = r.per_row.max(1);
        let rows = Rows {
            file: r.file,
            first_row: r.first_row,
            len: r.len,
            per_input_row: n,
            statuses: &statuses,
            marks: r.marks.as_deref(),
            ids: &r.ids,
            starts: starts.as_deref(),
        };
        self.write_rows(&batch, &rows)
    }

    /// Appends a batch built elsewhere (the `optout` command's rows): one output row per
    /// input row, from data row `first_row` of input `file`, with their statuses.
    ///
    /// # Errors
    /// Writing or committing a part failed.
    pub fn write_batch(
        &mut self,
        file: usize,
        first_row: u64,
        batch: &RecordBatch,
        statuses: &[RowStatus],
    ) -> Result<(), OutputError> {
        let rows = Rows {
            file,
            first_row,
            len: batch.num_rows(),
            per_input_row: 1,
            statuses,
            marks: None,
            ids: &[],
            starts: None,
        };
        self.write_rows(batch, &rows)
    }

    /// Writes `batch` into parts of about `part_rows` rows, each ending on an input row.
    fn write_rows(&mut self, batch: &RecordBatch, r: &Rows<'_>) -> Result<(), OutputError> {
        let (n, statuses, starts) = (r.per_input_row, r.statuses, &r.starts);
        let c = r;
        let mut done = 0usize; // input rows of this chunk already written
        while done < c.len {
            let start = Position {
                file: c.file,
                row: c.first_row + done as u64,
            };
            if self.open.is_none() {
                self.open = Some(self.open_part(start)?);
            }
            let part = self.open.as_mut().expect("opened above");
            let room = self
                .part_rows
                .saturating_sub(part.info.rows)
                .div_ceil(n as u64)
                .max(1) as usize;
            let take = room.min(c.len - done);
            let slice = batch.slice(done * n, take * n);
            part.writer
                .write(&slice)
                .map_err(|e| OutputError::Parquet {
                    path: part.writer.inner().dest().to_string(),
                    message: e.to_string(),
                })?;
            let mut counts = StatusCounts::default();
            statuses[done * n..(done + take) * n]
                .iter()
                .for_each(|s| counts.add(*s));
            let mut tally = RefreshTally::default();
            if let Some(marks) = r.marks {
                marks[done * n..(done + take) * n]
                    .iter()
                    .for_each(|m| tally.add(*m));
            }
            let mut phones = PhoneTally::default();
            if let Some(ids) = r.ids.get(done * n..(done + take) * n) {
                ids.iter().for_each(|id| phones.add(id));
            }
            let input_rows = match starts {
                Some(s) => s[done * n..(done + take) * n]
                    .iter()
                    .filter(|b| **b)
                    .count() as u64,
                None => take as u64,
            };
            done += take;
            part.info.end = Position {
                file: c.file,
                row: c.first_row + done as u64,
            };
            part.info.rows += slice.num_rows() as u64;
            part.info.input_rows += input_rows;
            part.info.counts.merge(&counts);
            part.info.refresh.merge(&tally);
            part.info.phones.merge(&phones);
            let unreadable = std::mem::take(&mut self.pending_unreadable);
            part.info.unreadable_kept += unreadable;
            self.unreadable_kept += unreadable;
            self.totals.merge(&counts);
            self.refresh_totals.merge(&tally);
            self.phone_totals.merge(&phones);
            self.input_rows += input_rows;
            if part.info.rows >= self.part_rows {
                self.commit()?;
            }
        }
        if let Some(m) = &self.live {
            m.set(&self.totals);
        }
        Ok(())
    }

    fn open_part(&mut self, start: Position) -> Result<OpenPart, OutputError> {
        let n = self.next_part;
        self.next_part += 1;
        let sink = PartSink::create(&self.dir.join(&part_name(n)))?;
        let props = properties(self.codec);
        let dest = sink.dest().to_string();
        let writer = ArrowWriter::try_new(sink, Arc::clone(&self.schema.arrow), Some(props))
            .map_err(|e| OutputError::Parquet {
                path: dest,
                message: e.to_string(),
            })?;
        Ok(OpenPart {
            writer,
            info: PartInfo {
                part: n,
                start,
                end: start,
                ..Default::default()
            },
        })
    }

    /// Commits the open part; a dataset that got no row at all still gets one empty part, so
    /// that readers see its schema (a glob over zero files is an error in most engines).
    ///
    /// # Errors
    /// Writing, closing, syncing or renaming failed.
    pub fn finish(&mut self) -> Result<(), OutputError> {
        if self.open.is_none() && self.next_part == 0 {
            self.open = Some(self.open_part(Position::default())?);
        }
        self.commit()?;
        match self.publishing.take() {
            Some(p) => Ok(p.wait()?),
            None => Ok(()),
        }
    }

    /// Closes the open part, if any, and publishes it under its final name: at once for a
    /// local part; for an object, in the background, finished before the next part is
    /// published and before [`DatasetWriter::finish`] returns.
    ///
    /// # Errors
    /// Closing, syncing, renaming or uploading failed.
    pub fn commit(&mut self) -> Result<Option<PartInfo>, OutputError> {
        let Some(mut part) = self.open.take() else {
            return Ok(None);
        };
        let dest = part.writer.inner().dest().to_string();
        let perr = |e: parquet::errors::ParquetError| OutputError::Parquet {
            path: dest.clone(),
            message: e.to_string(),
        };
        part.writer.append_key_value_metadata(KeyValue::new(
            PART_INFO_KEY.to_string(),
            part.info.to_json(),
        ));
        let sink = part.writer.into_inner().map_err(perr)?;
        // Parts become visible in order: the previous one first, then this one starts.
        if let Some(previous) = self.publishing.take() {
            previous.wait()?;
        }
        self.publishing = Some(sink.commit_in_background()?);
        Ok(Some(part.info))
    }

    /// Checks that this run still holds the output's lock (an object-store lease can be
    /// taken over); called before `_SUCCESS`.
    ///
    /// # Errors
    /// [`OutputError::LockLost`].
    pub fn check_lock(&self) -> Result<(), OutputError> {
        self._lock.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{committed_parts, OutputKind};
    use crate::record::{Hashed, Identity, IdentityKind};

    /// Issue #9.7: a part left open by a failed or interrupted run does not stay on disk.
    #[test]
    fn an_open_part_is_removed_when_the_writer_goes_away() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = Location::Local(tmp.path().to_path_buf());
        let lock = super::super::DirLock::acquire(&dir, "hash").expect("lock");
        let schema = Schema::new(OutputKind::Hash, &[]);
        let mut w = DatasetWriter::new(&dir, schema, vec!["in.csv".into()], 1000, &[], lock);
        let chunk = IdentityChunk {
            file: 0,
            first_row: 0,
            len: 1,
            per_row: 1,
            kept: Vec::new(),
            ids: vec![Identity {
                kind: IdentityKind::Email,
                hashed: Hashed::Ok(crate::normalize::sha256(b"a")),
                phone_form: Default::default(),
            }],
            outcomes: None,
            origin: None,
            marks: None,
            slot_names: std::sync::Arc::from([]),
            bad_kept: Vec::new(),
        };
        w.write(chunk).expect("written to the open part");
        let tmp_part = tmp.path().join(".part-00000.parquet.tmp");
        assert!(tmp_part.exists());
        drop(w);
        assert!(!tmp_part.exists(), "the half part is removed");
        assert!(committed_parts(&dir).expect("readable").is_empty());
    }
}
