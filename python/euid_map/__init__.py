"""euid-map for Python: EUID's exact hashing rules on Arrow arrays, and mapping through the
euid-map client, bound from the same Rust library as the ``euid-map`` command (which this
package also installs).

Hashing takes anything Arrow (pyarrow arrays and chunked arrays, Polars series, pandas
series, lists) and returns a struct array of ``identity_hash`` (base64 SHA-256, as
``euid-map hash`` writes it), ``status`` (``hashed``/``invalid``/``missing``) and ``reason``::

    import pyarrow as pa, euid_map
    euid_map.hash_emails(pa.array(["Jane.Doe+x@GMAIL.com", "nope"]))
    euid_map.hash_phones(pa.array(["06 12 34 56 78"]), region="FR")

Mapping sends a table or a stream of record batches of hashes to the operator (adaptive
concurrency, retries, dedupe) and yields the batches back with ``status``, ``reason``,
``raw_euid``, ``previous_raw_euid`` and ``refresh_from``; memory stays bounded however long
the stream::

    for batch in euid_map.map_stream(table, env="local"):
        ...
"""
import atexit
import os
import weakref

from ._native import EuidMapError, MapStream, versions
from ._native import hash_emails as _hash_emails
from ._native import hash_phones as _hash_phones
from ._native import hash_prehashed as _hash_prehashed
from ._native import map_stream as _map_stream

__all__ = [
    "EuidMapError",
    "MapStream",
    "find_bin",
    "hash_emails",
    "hash_phones",
    "hash_prehashed",
    "map_stream",
    "map_table",
    "versions",
]
__version__ = versions()[0]


def _arrow(values):
    """A pyarrow array or chunked array of ``values``: pyarrow as is, anything else with
    ``__arrow_c_array__``/``__arrow_c_stream__`` (Polars, DuckDB, nanoarrow) through the
    Arrow PyCapsule interface, a pandas series, a list or a NumPy array through pyarrow."""
    import pyarrow as pa

    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    if isinstance(values, (str, bytes)):
        raise TypeError("pass an array of values (a list, a series, an Arrow array), not one string")
    if hasattr(values, "__arrow_c_array__"):
        return pa.array(values)
    if hasattr(values, "__arrow_c_stream__"):
        return pa.chunked_array(values)
    return pa.array(values, type=pa.string(), from_pandas=True)


def _per_chunk(fn, values, *args, region=None):
    """Applies ``fn`` to each chunk (the native call takes one array) and returns one struct
    array. A region array is cut to the values' chunks."""
    import pyarrow as pa

    values = _arrow(values)
    if region is not None:
        region = region.combine_chunks() if isinstance(region, pa.ChunkedArray) else region
        if len(region) != len(values):
            raise ValueError(f"the region array has {len(region)} values for {len(values)} phones")
    out, at = [], 0
    for chunk in [values] if isinstance(values, pa.Array) else values.chunks:
        out.append(fn(chunk, *args) if region is None else fn(chunk, region.slice(at, len(chunk))))
        at += len(chunk)
    if len(out) == 1:
        return out[0]
    return pa.concat_arrays(out) if out else pa.array([], type=_HASHED_TYPE())


def _HASHED_TYPE():
    import pyarrow as pa

    return pa.struct(
        [
            pa.field("identity_hash", pa.string()),
            pa.field("status", pa.string(), nullable=False),
            pa.field("reason", pa.string()),
        ]
    )


def hash_emails(values):
    """Normalizes (EUID's rules, Gmail's dots and ``+tags`` included) and hashes emails.
    Returns a struct array of ``identity_hash``, ``status`` and ``reason``, one per value
    (chunked values give one array); the GIL is released while the values are hashed."""
    return _per_chunk(_hash_emails, values)


def hash_phones(values, region=None, default_region=None):
    """Hashes phones: E.164 as given; national formats read in ``region``, an ISO 3166-1
    alpha-2 code for all values or an array of codes, one per value, whose empty cells fall
    back to ``default_region`` (libphonenumber's rules). Without a region (``None`` or
    ``""``) only phones written with their country code are read."""
    if isinstance(region, str) and not region.strip():
        region = None
    if region is not None and not isinstance(region, str):
        region = _arrow(region)
        return _per_chunk(lambda v, r: _hash_phones(v, r, default_region), values, region=region)
    return _per_chunk(_hash_phones, values, region or default_region)


def hash_prehashed(values, identity_type="email"):
    """Checks pre-hashed values (base64 or hex SHA-256) and returns them as base64."""
    return _per_chunk(_hash_prehashed, values, identity_type)


def map_stream(data, **options) -> MapStream:
    """Maps a table or stream of record batches of hashes (columns ``identity_hash`` and
    ``identity_type``, or ``identity_type="email"`` for all rows). ``data`` is anything with
    ``__arrow_c_stream__`` (pyarrow Table or RecordBatchReader, Polars DataFrame, DuckDB
    result) or an iterable of ``pyarrow.RecordBatch``. Options are the command's flags:
    ``env``, ``base_url``, ``profile``, ``api_key``/``client_secret``,
    ``credentials_command``, ``credentials``, ``concurrency``, ``rps``, ``timeout``,
    ``max_retries``, ``stall_timeout``, ``dedupe_memory_mib``, ``hash_column``,
    ``type_column``, ``api``. Returns an iterator of ``pyarrow.RecordBatch`` in input order.
    """
    if not hasattr(data, "__arrow_c_stream__"):
        import itertools

        import pyarrow as pa

        if hasattr(data, "collect"):
            raise TypeError("map_stream: a lazy frame has no rows yet: .collect() it first")
        if isinstance(data, (dict, str, bytes)):
            raise TypeError(f"map_stream: data must be a table or an iterable of record batches, not {type(data).__name__}")

        def batches(items):
            for item in items:  # tables are cut into their batches
                yield from (item.to_batches() if isinstance(item, pa.Table) else [item])

        it = batches(data)
        first = next(it, None)
        if first is None:
            raise ValueError("map_stream: an empty iterable of batches has no schema; pass a table")
        data = pa.RecordBatchReader.from_batches(first.schema, itertools.chain([first], it))
    if options.get("profile") and os.environ.get("EUID_API_KEY") and os.environ.get("EUID_CLIENT_SECRET") \
            and not any(options.get(k) for k in ("api_key", "credentials_command", "credentials")):
        import warnings

        warnings.warn("EUID_API_KEY and EUID_CLIENT_SECRET are set: they take precedence over profile", stacklevel=2)
    stream = _map_stream(data, **options)
    _LIVE.add(stream)
    return stream


# Streams not finished when the interpreter exits (an uncaught exception, a break out of the
# loop) are stopped first: their reader thread may be inside a Python generator feeding them.
_LIVE = weakref.WeakSet()


@atexit.register
def _stop_live_streams():
    for stream in list(_LIVE):
        stream.cancel()


def map_table(data, **options):
    """Like :func:`map_stream`, collected into one ``pyarrow.Table``."""
    import pyarrow as pa

    stream = map_stream(data, **options)
    return pa.Table.from_batches(list(stream), schema=stream.schema)


def find_bin() -> str:
    """The path of the ``euid-map`` executable that came with this package."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", "euid-map")
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    raise FileNotFoundError(f"the euid-map executable was not found at {path}")
