"""Pseudonymize and re-identify values through the pseudonym service.

Rust does the work (dedup, batching, concurrent requests, retries, failover); this package is
its typed face. The GIL is released while a call runs.

>>> from pseudonym import Client
>>> client = Client("http://127.0.0.1:8080", api_key="...")          # doctest: +SKIP
>>> client.pseudonymize("vin", ["WVWZZZ1JZXW000001", None])            # doctest: +SKIP
['d1.DfHT...', None]

`Client` takes lists, pyarrow arrays and pandas `Series`. The engines' functions use it:
`pseudonym.spark` (SQL, Column and DataFrame functions, batch or streaming), `pseudonym.duckdb`
(SQL functions) and `pseudonym.polars` (an expression namespace). Each is an optional extra:
`pip install pseudonym[spark]`, `[duckdb]`, `[polars]`, `[pandas]`.
"""

from __future__ import annotations

from pseudonym._internal import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, DEFAULT_RETRIES, DEFAULT_TIMEOUT
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar, Union, overload

import pyarrow as pa

from . import _internal
from .errors import (
    ConfigurationError,
    ProtocolError,
    PseudonymError,
    PseudonymizationError,
    ReidentificationError,
    RewrapError,
    ServiceRejectedError,
    ServiceUnavailableError,
    UnsupportedTypeError,
)

__all__ = [
    "Client",
    "Mode",
    "ConfigurationError",
    "ProtocolError",
    "PseudonymError",
    "PseudonymizationError",
    "ReidentificationError",
    "RewrapError",
    "ServiceRejectedError",
    "ServiceUnavailableError",
    "UnsupportedTypeError",
]
__version__: str = _internal.__version__

Mode = Literal["deterministic", "randomized", "hash", "format-preserving"]
OnError = Literal["raise", "error", "null"]
"""What a failed item does: `"raise"` (or `"error"`, the SQL functions' spelling) raises,
`"null"` gives `None`; any other value is refused with `ValueError`."""
ArrowInput = TypeVar("ArrowInput", pa.Array, pa.ChunkedArray)
Values = Union[Sequence[Union[str, None]], pa.Array, pa.ChunkedArray]
"""What the calls take: a list of optional strings, a pyarrow array, or a pandas `Series`."""
Answers = Union[list[Union[str, None]], pa.Array, pa.ChunkedArray]
"""What they answer: the input's kind (list, pyarrow, pandas), one item per row."""
ItemErrors = list[tuple[int, str]]
"""The rows that failed, as `(row index, code)` pairs."""

URL_ENV = "PSEUDONYM_URL"
API_KEY_ENV = "PSEUDONYM_API_KEY"
CA_FILE_ENV = "PSEUDONYM_CA_FILE"
CLIENT_CERT_FILE_ENV = "PSEUDONYM_CLIENT_CERT_FILE"
CLIENT_KEY_FILE_ENV = "PSEUDONYM_CLIENT_KEY_FILE"


def _read_setting_file(path: str | os.PathLike[str] | None, env: str) -> bytes | None:
    """The bytes of `path`, else of the file named by the environment variable `env`, if any."""
    chosen = path if path is not None else os.environ.get(env) or None
    if chosen is None:
        return None
    try:
        with open(chosen, "rb") as file:
            return file.read()
    except OSError as error:
        raise ConfigurationError(f"cannot read {os.fspath(chosen)}: {error.strerror}") from None


class Client:
    """A client of the pseudonym service.

    `urls` is one URL, a comma-separated list, or a sequence; with several, batches are spread
    over them and move off one that fails. Without `urls` or `api_key`, the environment
    variables `PSEUDONYM_URL` and `PSEUDONYM_API_KEY` are used.

    Every call takes a whole partition: equal values are sent once (except in `randomized` mode),
    in batches of `batch_size`, `concurrency` at a time, each attempt bounded by `timeout`
    seconds, failed attempts retried up to `retries` times with backoff. With `cache_size`, up to
    that many deterministic and hash pseudonyms are remembered across calls, so values repeated
    across batches are sent once (off by default; it keeps values in memory). Results have the
    input's length and order; `None` stays `None`. A batch that still fails raises; nothing is
    ever filled in with empty strings or silent nulls.

    For an `https` service whose certificate a private CA signed, `ca_file` names that CA's PEM;
    for one that requires client certificates (mTLS), `client_cert_file` and `client_key_file`
    name this client's. Each defaults to its environment variable (`PSEUDONYM_CA_FILE`,
    `PSEUDONYM_CLIENT_CERT_FILE`, `PSEUDONYM_CLIENT_KEY_FILE`), which is how Spark executors,
    which build their own clients, find them.
    """

    def __init__(
        self,
        urls: str | Sequence[str] | None = None,
        api_key: str | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        cache_size: int = 0,
        ca_file: str | os.PathLike[str] | None = None,
        client_cert_file: str | os.PathLike[str] | None = None,
        client_key_file: str | os.PathLike[str] | None = None,
    ) -> None:
        url_list = _url_list(urls if urls is not None else os.environ.get(URL_ENV, ""))
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
        if not url_list:
            raise ConfigurationError(f"no service URL: pass urls= or set {URL_ENV}")
        if not key:
            raise ConfigurationError(f"no API key: pass api_key= or set {API_KEY_ENV}")
        if retries < 0:
            raise ConfigurationError("retries must be 0 or more")
        ca = _read_setting_file(ca_file, CA_FILE_ENV)
        cert = _read_setting_file(client_cert_file, CLIENT_CERT_FILE_ENV)
        client_key = _read_setting_file(client_key_file, CLIENT_KEY_FILE_ENV)
        if (cert is None) != (client_key is None):
            raise ConfigurationError("client_cert_file and client_key_file go together")
        identity = client_key + b"\n" + cert if client_key and cert else None
        self._native = _internal.Client(
            url_list, key, batch_size, concurrency, float(timeout), retries + 1, cache_size,
            ca, identity,
        )

    def __repr__(self) -> str:
        return repr(self._native)

    @overload
    def pseudonymize(
        self,
        domain: str,
        values: Sequence[str | None],
        mode: Mode = ...,
        *,
        on_error: OnError = ...,
    ) -> list[str | None]: ...
    @overload
    def pseudonymize(
        self, domain: str, values: ArrowInput, mode: Mode = ..., *, on_error: OnError = ...
    ) -> ArrowInput: ...
    def pseudonymize(
        self,
        domain: str,
        values: Values,
        mode: Mode = "deterministic",
        *,
        on_error: OnError = "raise",
    ) -> Answers:
        """Pseudonyms of `values` (a list or a pyarrow string array) in `domain`.

        Arrow input gives Arrow output of the same type (dictionaries keep their keys and go
        through the service once per dictionary entry, except in `randomized` mode); a pandas
        `Series` gives a `Series` with its index and name. Arrow and pandas input may also hold
        integers, decimals or dates, pseudonymized by their canonical text: decimal digits
        (`-42`), the column's scale (`12.50`), `YYYY-MM-DD`; the output is then strings.

        Only `format-preserving` pseudonyms can fail per value (a character outside the
        domain's alphabet, too few or too many characters): with `on_error="raise"` (the
        default) that raises `PseudonymizationError` (rows and codes, no value), with
        `on_error="null"` the row is `None`.
        """
        raises = _raises(on_error)
        pseudonyms, errors = self.pseudonymize_with_errors(domain, values, mode)
        if errors and raises:
            raise PseudonymizationError(errors, pseudonyms)
        return pseudonyms

    def pseudonymize_with_errors(
        self, domain: str, values: Values, mode: Mode = "deterministic"
    ) -> tuple[Answers, ItemErrors]:
        """Pseudonyms of `values`, and the `(row, code)` pairs of the rows that have none."""
        return _per_item(
            lambda d, v: self._native.pseudonymize_list(d, mode, v),
            lambda d, v: self._native.pseudonymize_arrow(d, mode, v),
            domain,
            values,
        )

    @overload
    def reidentify(
        self, domain: str, pseudonyms: Sequence[str | None], *, on_error: OnError = ...
    ) -> list[str | None]: ...
    @overload
    def reidentify(
        self, domain: str, pseudonyms: ArrowInput, *, on_error: OnError = ...
    ) -> ArrowInput: ...
    def reidentify(self, domain: str, pseudonyms: Values, *, on_error: OnError = "raise") -> Answers:
        """Values behind `pseudonyms` (a list or a pyarrow string array) of `domain`.

        With `on_error="raise"` (the default) any pseudonym that fails raises
        `ReidentificationError` (its `errors` name the rows and codes, its `values` hold the
        rest); with `on_error="null"` failed rows are `None`.
        """
        raises = _raises(on_error)
        values, errors = self.reidentify_with_errors(domain, pseudonyms)
        if errors and raises:
            raise ReidentificationError(errors, values)
        return values

    def reidentify_with_errors(self, domain: str, pseudonyms: Values) -> tuple[Answers, ItemErrors]:
        """Values behind `pseudonyms`, and the `(row, code)` pairs of the rows that failed."""
        return _per_item(self._native.reidentify_list, self._native.reidentify_arrow, domain, pseudonyms)

    @overload
    def rewrap(
        self, domain: str, pseudonyms: Sequence[str | None], *, on_error: OnError = ...
    ) -> list[str | None]: ...
    @overload
    def rewrap(
        self, domain: str, pseudonyms: ArrowInput, *, on_error: OnError = ...
    ) -> ArrowInput: ...
    def rewrap(self, domain: str, pseudonyms: Values, *, on_error: OnError = "raise") -> Answers:
        """`pseudonyms` (a list or a pyarrow string array) of `domain` made again under the
        service's primary key version, in the same mode, without any value leaving the service.

        Rewrapping a deterministic pseudonym gives exactly what pseudonymizing its value now
        gives, so joins keep working; tokens of the replaced AWS service (in its compatible
        domain) become ours. Needs an API key allowed to `rewrap`. Failures behave as in
        `reidentify`, raising `RewrapError`.
        """
        raises = _raises(on_error)
        new, errors = self.rewrap_with_errors(domain, pseudonyms)
        if errors and raises:
            raise RewrapError(errors, new)
        return new

    def rewrap_with_errors(self, domain: str, pseudonyms: Values) -> tuple[Answers, ItemErrors]:
        """Rewrapped `pseudonyms`, and the `(row, code)` pairs of the rows that failed."""
        return _per_item(self._native.rewrap_list, self._native.rewrap_arrow, domain, pseudonyms)

    def pseudonymize_batch(
        self,
        batch: pa.RecordBatch,
        domains: Mapping[str, str],
        mode: Mode = "deterministic",
        *,
        on_error: OnError = "raise",
    ) -> pa.RecordBatch:
        """`batch` with each column named in `domains` pseudonymized in that column's domain."""
        return _replace_columns(
            batch,
            domains,
            lambda domain, column: self.pseudonymize(domain, column, mode, on_error=on_error),
        )

    def reidentify_batch(
        self,
        batch: pa.RecordBatch,
        domains: Mapping[str, str],
        *,
        on_error: OnError = "raise",
    ) -> pa.RecordBatch:
        """`batch` with each column named in `domains` re-identified in that column's domain."""
        return _replace_columns(
            batch, domains, lambda domain, column: self.reidentify(domain, column, on_error=on_error)
        )

    def rewrap_batch(
        self,
        batch: pa.RecordBatch,
        domains: Mapping[str, str],
        *,
        on_error: OnError = "raise",
    ) -> pa.RecordBatch:
        """`batch` with each column named in `domains` rewrapped in that column's domain."""
        return _replace_columns(
            batch, domains, lambda domain, column: self.rewrap(domain, column, on_error=on_error)
        )


def _raises(on_error: str) -> bool:
    """Whether failed items raise, for `on_error`; checked before anything is sent, so a
    misspelling never turns failures into silent `None`s."""
    if on_error in ("raise", "error"):
        return True
    if on_error == "null":
        return False
    raise ValueError(f"on_error must be 'raise' (or 'error') or 'null', not {on_error!r}")


def _per_item(
    on_list: Callable[[str, list[str | None]], tuple[list[str | None], ItemErrors]],
    on_arrow: Callable[[str, pa.Array], tuple[pa.Array, ItemErrors]],
    domain: str,
    pseudonyms: Values,
) -> tuple[Answers, ItemErrors]:
    """`on_list` or `on_arrow` (one answer per pseudonym, failed rows apart) of `pseudonyms`,
    chunk by chunk for a chunked array, with row numbers counted across chunks."""
    if _is_pandas_series(pseudonyms):
        answers, failed = _per_item(on_list, on_arrow, domain, pa.Array.from_pandas(pseudonyms))
        return _as_series(answers, pseudonyms), failed
    if isinstance(pseudonyms, pa.ChunkedArray):
        chunks: list[pa.Array] = []
        errors: list[tuple[int, str]] = []
        offset = 0
        for chunk in pseudonyms.chunks:
            answers, chunk_errors = on_arrow(domain, chunk)
            chunks.append(answers)
            errors.extend((offset + row, code) for row, code in chunk_errors)
            offset += len(chunk)
        # Numbers and dates come back as strings: the answers' type, not the input's.
        return pa.chunked_array(chunks, type=chunks[0].type if chunks else pseudonyms.type), errors
    if isinstance(pseudonyms, pa.Array):
        return on_arrow(domain, pseudonyms)
    return on_list(domain, _as_list(pseudonyms))


def _replace_columns(
    batch: pa.RecordBatch,
    domains: Mapping[str, str],
    transform: Callable[[str, pa.Array], pa.Array],
) -> pa.RecordBatch:
    missing = [name for name in domains if name not in batch.schema.names]
    if missing:
        raise ConfigurationError(f"no such column(s): {', '.join(missing)}")
    arrays = [
        transform(domains[field.name], column) if field.name in domains else column
        for field, column in zip(batch.schema, batch.columns)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=batch.schema)


def _is_pandas_series(values: object) -> bool:
    """Whether `values` is a pandas `Series`, without importing pandas."""
    kind = type(values)
    return kind.__name__ == "Series" and kind.__module__.startswith("pandas")


def _as_series(answers: pa.Array, like: Any) -> Any:
    """`answers` as a pandas `Series` with the index and name of `like`; missing values are
    `None` where `like` holds Python objects, else the answer type's own missing value."""
    series = answers.to_pandas()
    series.index = like.index
    series.name = like.name
    if like.dtype == object:
        series = series.astype(object).where(series.notna(), None)
    return series


def _url_list(urls: str | Sequence[str]) -> list[str]:
    if isinstance(urls, str):
        urls = urls.split(",")
    return [url.strip() for url in urls if url.strip()]


def _as_list(values: Sequence[str | None]) -> list[str | None]:
    if isinstance(values, str):
        raise UnsupportedTypeError("values must be a sequence of strings, not one string")
    return list(values)
