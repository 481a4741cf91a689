"""Type stubs of the native module (the Rust binding); use it through ``euid_map``."""
from os import PathLike
from typing import Any, Iterator, Optional, Tuple, Union

import pyarrow as pa

class EuidMapError(Exception):
    """A run-level failure, with the command's message (credentials refused, operator
    unreachable, unreadable input)."""

def hash_emails(values: Any) -> pa.StructArray:
    """Struct of ``identity_hash``, ``status``, ``reason`` per email of one array."""

def hash_phones(
    values: Any, region: Union[None, str, Any] = None, default_region: Optional[str] = None
) -> pa.StructArray:
    """Struct of ``identity_hash``, ``status``, ``reason`` per phone."""

def hash_prehashed(values: Any, identity_type: str = "email") -> pa.StructArray:
    """Struct of ``identity_hash`` (base64), ``status``, ``reason`` per pre-hashed value."""

def versions() -> Tuple[str, str]:
    """(euid-map's version, the phone metadata's version)."""

class MapStream(Iterator[pa.RecordBatch]):
    """The mapped batches, in input order."""

    @property
    def schema(self) -> pa.Schema: ...
    def __iter__(self) -> "MapStream": ...
    def __next__(self) -> pa.RecordBatch: ...
    def cancel(self) -> None: ...
    def summary(self) -> dict: ...
    def __enter__(self) -> "MapStream": ...
    def __exit__(self, *exc: Any) -> None: ...

def map_stream(
    data: Any,
    *,
    env: Optional[str] = None,
    base_url: Optional[str] = None,
    profile: Optional[str] = None,
    api_key: Optional[str] = None,
    client_secret: Optional[str] = None,
    credentials_command: Optional[str] = None,
    credentials_timeout: Optional[int] = None,
    credentials: Optional[Union[str, PathLike]] = None,
    concurrency: int = 20,
    rps: Optional[int] = None,
    timeout: int = 60,
    max_retries: int = 8,
    stall_timeout: Optional[int] = None,
    dedupe_memory_mib: int = 32,
    hash_column: str = "identity_hash",
    type_column: str = "identity_type",
    identity_type: Optional[str] = None,
    api: str = "v3",
) -> MapStream: ...
