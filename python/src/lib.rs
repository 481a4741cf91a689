//! `euid_map._native`: the Python binding of the euid-map library. It holds no rule of its
//! own: hashing is `euid_map::columnar::hash_array` (the command's normalization, one
//! implementation), mapping is `euid_map::columnar::MapStream` (the command's client and
//! mapper), credentials are `euid_map::credentials::resolve` (the command's precedence).
//! This crate converts Arrow data through the C data interface, releases the GIL while the
//! library works, and turns errors into Python exceptions carrying the command's messages.

use std::time::Duration;

use arrow_array::{Array, ArrayRef};

use arrow_pyarrow::{FromPyArrow, ToPyArrow};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use euid_map::columnar::{self, ColumnarError, Regions};
use euid_map::record::{IdentityForm, IdentityKind};

pyo3::create_exception!(
    _native,
    EuidMapError,
    pyo3::exceptions::PyException,
    "A run-level failure of euid-map (the command's message: credentials refused, operator unreachable, unreadable input)."
);

/// How long a waiting call sleeps, without the GIL, between checks for Ctrl-C.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

fn columnar_err(e: ColumnarError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// Reads an array argument: anything with `__arrow_c_array__` (pyarrow, nanoarrow, arro3).
/// The Python wrapper passes a chunked array's chunks one by one.
fn array_of(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<ArrayRef> {
    if !obj.hasattr("__arrow_c_array__")? {
        return Err(PyValueError::new_err(format!(
            "{what} must be an Arrow array (anything with __arrow_c_array__), not {}",
            obj.get_type().name()?
        )));
    }
    let data = arrow_data::ArrayData::from_pyarrow_bound(obj)
        .map_err(|e| PyValueError::new_err(format!("{what}: {e}")))?;
    Ok(arrow_array::make_array(data))
}

fn kind_of(name: &str) -> PyResult<IdentityKind> {
    match name {
        "email" => Ok(IdentityKind::Email),
        "phone" => Ok(IdentityKind::Phone),
        other => Err(PyValueError::new_err(format!(
            "identity_type {other:?}: email or phone"
        ))),
    }
}

/// Hashes one array, without the GIL, into a struct array.
fn hash_any(
    py: Python<'_>,
    values: &Bound<'_, PyAny>,
    kind: IdentityKind,
    form: IdentityForm,
    region: Option<&Bound<'_, PyAny>>,
    default_region: Option<&str>,
) -> PyResult<Py<PyAny>> {
    let values = array_of(values, "values")?;
    let default = match default_region {
        None => None,
        Some(code) => match Regions::scalar(code).map_err(columnar_err)? {
            Regions::Scalar(r) => Some(r),
            _ => None,
        },
    };
    let column = match region {
        Some(r) if !r.is_none() && r.extract::<String>().is_err() => Some(array_of(r, "region")?),
        _ => None,
    };
    let regions = match (region, &column) {
        (_, Some(c)) => Regions::Column {
            regions: c.as_ref(),
            default,
        },
        (Some(r), None) if !r.is_none() => {
            Regions::scalar(&r.extract::<String>()?).map_err(columnar_err)?
        }
        _ => Regions::None,
    };
    let hashed = py
        .detach(|| columnar::hash_array(kind, form, values.as_ref(), regions))
        .map_err(columnar_err)?;
    Ok(hashed.into_struct().to_data().to_pyarrow(py)?.unbind())
}

/// Hashes raw emails with EUID's normalization (the operator's rules, Gmail's included).
#[pyfunction]
fn hash_emails(py: Python<'_>, values: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    hash_any(
        py,
        values,
        IdentityKind::Email,
        IdentityForm::Raw,
        None,
        None,
    )
}

/// Hashes raw phones: E.164 as given, national formats read in `region` (a code, or an
/// array of codes per value whose empty cells fall back to `default_region`).
#[pyfunction]
#[pyo3(signature = (values, region=None, default_region=None))]
fn hash_phones(
    py: Python<'_>,
    values: &Bound<'_, PyAny>,
    region: Option<&Bound<'_, PyAny>>,
    default_region: Option<&str>,
) -> PyResult<Py<PyAny>> {
    hash_any(
        py,
        values,
        IdentityKind::Phone,
        IdentityForm::Raw,
        region,
        default_region,
    )
}

/// Checks pre-hashed values (base64 or hex SHA-256) and returns them as base64.
#[pyfunction]
#[pyo3(signature = (values, identity_type="email"))]
fn hash_prehashed(
    py: Python<'_>,
    values: &Bound<'_, PyAny>,
    identity_type: &str,
) -> PyResult<Py<PyAny>> {
    hash_any(
        py,
        values,
        kind_of(identity_type)?,
        IdentityForm::Hashed,
        None,
        None,
    )
}

/// The version of the library and of the phone metadata compiled in.
#[pyfunction]
fn versions() -> (String, String) {
    (
        env!("CARGO_PKG_VERSION").to_string(),
        euid_map::normalize::METADATA_VERSION.to_string(),
    )
}

mod mapping;

/// The module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("EuidMapError", m.py().get_type::<EuidMapError>())?;
    m.add_function(wrap_pyfunction!(hash_emails, m)?)?;
    m.add_function(wrap_pyfunction!(hash_phones, m)?)?;
    m.add_function(wrap_pyfunction!(hash_prehashed, m)?)?;
    m.add_function(wrap_pyfunction!(versions, m)?)?;
    m.add_function(wrap_pyfunction!(mapping::map_stream, m)?)?;
    m.add_class::<mapping::PyMapStream>()?;
    Ok(())
}
