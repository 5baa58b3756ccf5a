"""The SQL functions of `pseudonym.spark.register` as Column functions (Spark 4.1+), for
`select`, `withColumn` and `where`, batch or Structured Streaming:

    from pseudonym.spark import functions as ps
    df.withColumn("vin", ps.pseudonymize("vin", "vin"))
    df.select(ps.reidentify(df.vin, "vin", on_error="null").alias("vin"))

`url` and `api_key` left out are read from `PSEUDONYM_URL` and `PSEUDONYM_API_KEY` on the
executors (a key passed here travels in the pickled function). The result is a string column of
the same rows, nulls kept; columns of integers, decimals and dates are taken by their canonical
text (see `pseudonym.spark`).
"""

from __future__ import annotations

from pseudonym._internal import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, DEFAULT_RETRIES, DEFAULT_TIMEOUT
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from .. import Mode
from .._functions import Settings
from . import arrow_function

if TYPE_CHECKING:
    from pyspark.sql import Column

    ColumnOrName = Column | str

__all__ = ["pseudonymize", "reidentify", "rewrap"]

SqlOnError = Literal["error", "null"]


def pseudonymize(
    col: ColumnOrName,
    domain: str,
    mode: Mode = "deterministic",
    on_error: SqlOnError = "error",
    *,
    url: str | Sequence[str] | None = None,
    api_key: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    cache_size: int = 0,
) -> Column:
    """The pseudonyms of `col` in `domain`; a value without one (`format-preserving` mode only)
    fails the query with `PseudonymizationError`, or is null with `on_error="null"`."""
    settings = Settings(
        Settings.urls(url), api_key, batch_size, concurrency, timeout, retries, cache_size
    )
    return _call("pseudonymize", settings, col, domain, mode, on_error)


def reidentify(
    col: ColumnOrName,
    domain: str,
    on_error: SqlOnError = "error",
    *,
    url: str | Sequence[str] | None = None,
    api_key: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
) -> Column:
    """The values behind the pseudonyms in `col`; a row that fails fails the query with
    `ReidentificationError` (rows and codes, no value), or is null with `on_error="null"`."""
    settings = Settings(Settings.urls(url), api_key, batch_size, concurrency, timeout, retries)
    return _call("reidentify", settings, col, domain, on_error)


def rewrap(
    col: ColumnOrName,
    domain: str,
    on_error: SqlOnError = "error",
    *,
    url: str | Sequence[str] | None = None,
    api_key: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
) -> Column:
    """The pseudonyms in `col` made again under the service's primary key version; failures
    as in `reidentify`, with `RewrapError`."""
    settings = Settings(Settings.urls(url), api_key, batch_size, concurrency, timeout, retries)
    return _call("rewrap", settings, col, domain, on_error)


def _call(name: str, settings: Settings, col: ColumnOrName, *literals: str) -> Column:
    from pyspark.sql import functions as F

    column = F.col(col) if isinstance(col, str) else col
    result: Column = arrow_function(name, settings)(column, *(F.lit(v) for v in literals))
    return result
