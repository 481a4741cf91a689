//! Parquet from any [`Location`]: local files through the synchronous reader, objects through
//! the parquet crate's async reader over `object_store` (ranged GETs: the footer first, then
//! only the projected column chunks of each row group), its I/O on the storage runtime.
//! Either way the caller gets the schema, the footer and an iterator of record batches.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::async_reader::{
    AsyncFileReader, ParquetRecordBatchStreamBuilder, SpawnedReader,
};
use parquet::arrow::ProjectionMask;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::schema::types::SchemaDescriptor;

use super::{bridge, scrub, Location, ObjectLocation};

/// Bytes fetched from the end of an object to read its footer in one request.
const FOOTER_PREFETCH: usize = 64 * 1024;

/// An object read by ranges, with its size known.
#[derive(Clone)]
pub struct ObjectFile {
    o: ObjectLocation,
    size: u64,
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectFile {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        let (store, path) = (Arc::clone(&self.o.store), self.o.path.clone());
        async move { store.get_range(&path, range).await.map_err(external) }.boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        let (store, path) = (Arc::clone(&self.o.store), self.o.path.clone());
        async move { store.get_ranges(&path, &ranges).await.map_err(external) }.boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let m = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .with_prefetch_hint(Some(FOOTER_PREFETCH))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(m))
        }
        .boxed()
    }
}

type Stream = parquet::arrow::async_reader::ParquetRecordBatchStream<SpawnedReader<ObjectFile>>;

/// An opened Parquet file or object: its footer is read, no row yet.
pub enum ParquetFile {
    /// A local file.
    Local(ParquetRecordBatchReaderBuilder<std::fs::File>),
    /// An object.
    Object(ParquetRecordBatchStreamBuilder<SpawnedReader<ObjectFile>>),
}

/// The file's Arrow schema with its top-level INT96 columns as microsecond timestamps, if it
/// has any.
fn int96_as_micros(schema: &SchemaRef, parquet: &SchemaDescriptor) -> Option<SchemaRef> {
    use arrow_schema::{DataType, Field, TimeUnit};
    let int96: Vec<String> = parquet
        .columns()
        .iter()
        .filter(|c| c.physical_type() == parquet::basic::Type::INT96 && c.path().parts().len() == 1)
        .map(|c| c.path().parts()[0].clone())
        .collect();
    if int96.is_empty() {
        return None;
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if int96.contains(f.name()) {
                if let DataType::Timestamp(TimeUnit::Nanosecond, tz) = f.data_type() {
                    return f
                        .as_ref()
                        .clone()
                        .with_data_type(DataType::Timestamp(TimeUnit::Microsecond, tz.clone()));
                }
            }
            f.as_ref().clone()
        })
        .collect();
    Some(Arc::new(arrow_schema::Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )))
}

/// What a Parquet read failed on, scrubbed of credentials.
pub type ParquetMessage = String;

/// Record batches, in file order.
pub type Batches = Box<dyn Iterator<Item = Result<RecordBatch, ParquetMessage>> + Send>;

impl ParquetFile {
    /// Reads the footer.
    ///
    /// # Errors
    /// The file cannot be opened or is not Parquet (the message says which).
    pub fn open(loc: &Location) -> Result<ParquetFile, ParquetMessage> {
        let opened = Self::open_with(loc, ArrowReaderOptions::new())?;
        // Spark's INT96 timestamps read as nanoseconds overflow after 2262 (9999-12-31, the
        // usual "valid until", became 1816): read them as microseconds, which hold any date.
        match int96_as_micros(opened.schema(), opened.parquet_schema()) {
            Some(schema) => Self::open_with(loc, ArrowReaderOptions::new().with_schema(schema)),
            None => Ok(opened),
        }
    }

    fn open_with(
        loc: &Location,
        options: ArrowReaderOptions,
    ) -> Result<ParquetFile, ParquetMessage> {
        match loc {
            Location::Local(p) => {
                let f = std::fs::File::open(p).map_err(|e| e.to_string())?;
                ParquetRecordBatchReaderBuilder::try_new_with_options(f, options)
                    .map(ParquetFile::Local)
                    .map_err(|e| e.to_string())
            }
            Location::Object(o) => {
                let size = loc.meta().map_err(|e| e.to_string())?.size;
                let file = ObjectFile { o: o.clone(), size };
                let reader = SpawnedReader::new(file, bridge::handle());
                bridge::wait(ParquetRecordBatchStreamBuilder::new_with_options(
                    reader, options,
                ))
                .map(ParquetFile::Object)
                .map_err(|e| scrub(&e.to_string()))
            }
        }
    }

    /// The Arrow schema.
    pub fn schema(&self) -> &SchemaRef {
        match self {
            ParquetFile::Local(b) => b.schema(),
            ParquetFile::Object(b) => b.schema(),
        }
    }

    /// The Parquet schema (for projections).
    pub fn parquet_schema(&self) -> &SchemaDescriptor {
        match self {
            ParquetFile::Local(b) => b.parquet_schema(),
            ParquetFile::Object(b) => b.parquet_schema(),
        }
    }

    /// The footer.
    pub fn metadata(&self) -> &Arc<ParquetMetaData> {
        match self {
            ParquetFile::Local(b) => b.metadata(),
            ParquetFile::Object(b) => b.metadata(),
        }
    }

    /// Streams the rows from `offset` on, `batch_size` at a time, only the `projection`'s
    /// columns (all when `None`).
    ///
    /// # Errors
    /// The reader cannot be built.
    pub fn batches(
        self,
        projection: Option<ProjectionMask>,
        batch_size: usize,
        offset: usize,
    ) -> Result<Batches, ParquetMessage> {
        match self {
            ParquetFile::Local(b) => {
                let b = b.with_batch_size(batch_size).with_offset(offset);
                let b = match projection {
                    Some(p) => b.with_projection(p),
                    None => b,
                };
                let r = b.build().map_err(|e| e.to_string())?;
                Ok(Box::new(r.map(|r| r.map_err(|e| e.to_string()))))
            }
            ParquetFile::Object(b) => {
                let b = b.with_batch_size(batch_size).with_offset(offset);
                let b = match projection {
                    Some(p) => b.with_projection(p),
                    None => b,
                };
                let mut s: Stream = b.build().map_err(|e| scrub(&e.to_string()))?;
                Ok(Box::new(std::iter::from_fn(move || {
                    bridge::wait(s.next()).map(|r| r.map_err(|e| scrub(&e.to_string())))
                })))
            }
        }
    }
}
