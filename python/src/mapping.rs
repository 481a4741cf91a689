//! `map_stream`: mapping a stream of record batches of hashes from Python, through the
//! library's `MapStream` (the command's client and mapper).

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use arrow_array::ffi_stream::RecordBatchStreamReader;
use arrow_pyarrow::{FromPyArrow, ToPyArrow};
use pyo3::exceptions::{PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use euid_map::client::{Api, ClientConfig, RetryPolicy, MAX_CONCURRENCY};
use euid_map::columnar::{MapStream, MapStreamConfig, Next, StreamHandle};
use euid_map::credentials::{self, TargetRequest};
use euid_map::secret::Secret;

use super::{kind_of, EuidMapError, SIGNAL_CHECK};

/// The longest a stop waits for the stream's reader of `data` to let go of it.
const INPUT_RELEASE: Duration = Duration::from_secs(60);

/// Starts mapping `data` (anything with `__arrow_c_stream__`: a pyarrow Table or
/// RecordBatchReader, a Polars DataFrame, a DuckDB result). Keyword arguments name the
/// command's flags; credentials are found as the command finds them.
#[pyfunction]
#[pyo3(signature = (
    data, *, env=None, base_url=None, profile=None, api_key=None, client_secret=None,
    credentials_command=None, credentials_timeout=None, credentials=None, concurrency=MAX_CONCURRENCY,
    rps=None, timeout=60, max_retries=8, stall_timeout=None, dedupe_memory_mib=32,
    hash_column="identity_hash", type_column="identity_type", identity_type=None, api="v3"
))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn map_stream(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    env: Option<String>,
    base_url: Option<String>,
    profile: Option<String>,
    api_key: Option<String>,
    client_secret: Option<String>,
    credentials_command: Option<String>,
    credentials_timeout: Option<u64>,
    credentials: Option<std::path::PathBuf>,
    concurrency: usize,
    rps: Option<u32>,
    timeout: u64,
    max_retries: u32,
    stall_timeout: Option<u64>,
    dedupe_memory_mib: usize,
    hash_column: &str,
    type_column: &str,
    identity_type: Option<String>,
    api: &str,
) -> PyResult<PyMapStream> {
    if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
        return Err(PyValueError::new_err(format!(
            "concurrency must be between 1 and {MAX_CONCURRENCY} (the documented maximum of parallel batches)"
        )));
    }
    if !(1..=euid_map::mapper::MAX_DEDUPE_MIB).contains(&dedupe_memory_mib) {
        return Err(PyValueError::new_err(format!(
            "dedupe_memory_mib must be between 1 and {}",
            euid_map::mapper::MAX_DEDUPE_MIB
        )));
    }
    let api = match api {
        "v3" => Api::V3,
        "v2" => Api::V2,
        other => return Err(PyValueError::new_err(format!("api {other:?}: v3 or v2"))),
    };
    let identity_type = identity_type.as_deref().map(kind_of).transpose()?;
    let req = TargetRequest {
        env,
        base_url,
        api_key: api_key.map(Secret::new),
        client_secret: client_secret.map(Secret::new),
        credentials_command,
        credentials_timeout: credentials_timeout
            .map(|s| Duration::from_secs(s.max(1)))
            .unwrap_or(euid_map::shell::DEFAULT_TIMEOUT),
        credentials_file: credentials,
        profile,
    };
    // A credentials command may take a while: without the GIL.
    let target = py
        .detach(|| credentials::resolve(&req))
        .map_err(|e| match e {
            credentials::ResolveError::Usage(m) => PyValueError::new_err(m),
            e => EuidMapError::new_err(e.to_string()),
        })?;
    let cfg = MapStreamConfig {
        client: ClientConfig {
            base_url: target.base_url,
            api_key: target.credentials.api_key,
            secret: target.secret,
            concurrency,
            rps: rps.and_then(NonZeroU32::new),
            timeout: Duration::from_secs(timeout.max(1)),
            api,
            retry: RetryPolicy {
                max_retries,
                stall: stall_timeout
                    .map(|s| Duration::from_secs(s.max(1)))
                    .unwrap_or(euid_map::client::DEFAULT_STALL),
                ..RetryPolicy::default()
            },
        },
        embedded_operator: target.embedded,
        batch_size: euid_map::protocol::MAX_ITEMS_PER_REQUEST,
        cache_bytes: dedupe_memory_mib << 20,
        hash_column: hash_column.to_string(),
        type_column: type_column.to_string(),
        identity_type,
    };
    if !data.hasattr("__arrow_c_stream__")? {
        return Err(PyValueError::new_err(format!(
            "data must be a table or a stream of record batches (anything with __arrow_c_stream__: a pyarrow Table or RecordBatchReader, a Polars DataFrame), not {}",
            data.get_type().name()?
        )));
    }
    let reader = RecordBatchStreamReader::from_pyarrow_bound(data)
        .map_err(|e| PyValueError::new_err(format!("data: {e}")))?;
    let stream = MapStream::start(cfg, Box::new(reader))
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(PyMapStream {
        schema: stream.schema(),
        handle: stream.handle(),
        inner: Mutex::new(stream),
    })
}

/// The mapped batches, in input order: an iterator of `pyarrow.RecordBatch`.
#[pyclass(name = "MapStream", module = "euid_map._native", weakref)]
pub(crate) struct PyMapStream {
    /// Taken only by `__next__`; stopping and counting go through `handle`, so that no
    /// thread holding the GIL ever waits for this lock.
    inner: Mutex<MapStream>,
    handle: StreamHandle,
    schema: arrow_schema::SchemaRef,
}

#[pymethods]
impl PyMapStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next mapped batch. Waits without the GIL; Ctrl-C (KeyboardInterrupt) stops the
    /// mapping and raises.
    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        loop {
            let next = py.detach(|| {
                self.inner
                    .lock()
                    .expect("stream lock")
                    .next_timeout(SIGNAL_CHECK)
            });
            match next {
                Ok(Next::Batch(b)) => return Ok(b.to_pyarrow(py)?.unbind()),
                Ok(Next::Done) => return Err(PyStopIteration::new_err(())),
                Ok(Next::Pending) => {
                    if let Err(e) = py.check_signals() {
                        self.cancel(py);
                        return Err(e);
                    }
                }
                Err(e) => return Err(EuidMapError::new_err(e.to_string())),
            }
        }
    }

    /// The schema of the mapped batches (a `pyarrow.Schema`).
    #[getter]
    fn schema(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.schema.as_ref().to_pyarrow(py)?.unbind())
    }

    /// Stops the mapping: no more input is read; requests in flight are abandoned. Returns
    /// once no thread of the stream reads `data` any more (a generator behind it may be
    /// finishing its batch: the GIL is released meanwhile).
    fn cancel(&self, py: Python<'_>) {
        let handle = &self.handle;
        py.detach(|| handle.cancel_and_wait(INPUT_RELEASE));
    }

    /// Rows handed back so far per status, and the identities sent and deduplicated.
    fn summary<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.handle.summary();
        let d = PyDict::new(py);
        let counts = PyDict::new(py);
        for st in euid_map::record::RowStatus::ALL {
            let n = s.counts.get(st);
            if n > 0 {
                counts.set_item(st.as_str(), n)?;
            }
        }
        d.set_item("counts", counts)?;
        d.set_item("rows", s.counts.total())?;
        d.set_item("sent", s.sent)?;
        d.set_item("deduplicated", s.deduplicated)?;
        Ok(d)
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _t: Option<&Bound<'_, PyAny>>,
        _v: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) {
        self.cancel(py);
    }
}
