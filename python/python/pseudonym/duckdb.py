"""The SQL functions `pseudonymize`, `reidentify` and `rewrap` in DuckDB.

    import duckdb
    import pseudonym.duckdb

    con = duckdb.connect()
    pseudonym.duckdb.register(con, url="http://pseudonym:8080", api_key="...")
    con.sql("SELECT pseudonymize(email, 'crm.email') AS email FROM 'people.parquet'")

They are Arrow functions: DuckDB hands each a vector of rows (2,048) as Arrow arrays, which go
to the service deduplicated, through one client for the connection. Arguments and results are
those of `pseudonym.spark.register`: `pseudonymize(col, domain [, mode [, on_error]])`,
`reidentify(col, domain [, on_error])`, `rewrap(col, domain [, on_error])`, literals after the
column; columns of strings, integers, decimals and dates; a `VARCHAR` result, nulls kept.
"""

from __future__ import annotations

from pseudonym._internal import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, DEFAULT_RETRIES, DEFAULT_TIMEOUT
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from ._functions import NAMES, Settings, call

if TYPE_CHECKING:
    import duckdb

__all__ = ["register"]


def register(
    con: duckdb.DuckDBPyConnection,
    url: str | Sequence[str] | None = None,
    api_key: str | None = None,
    *,
    prefix: str = "",
    batch_size: int = DEFAULT_BATCH_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    cache_size: int = 0,
) -> None:
    """Adds the functions (each name after `prefix`) to `con`, calling the service at `url`
    (else `PSEUDONYM_URL`) with `api_key` (else `PSEUDONYM_API_KEY`). `cache_size` keeps that
    many deterministic and hash answers across vectors, so repeated values are sent once."""
    settings = Settings(
        Settings.urls(url), api_key, batch_size, concurrency, timeout, retries, cache_size
    )
    settings.client()  # built now: missing settings fail here, not in the first query
    for name in NAMES:
        # Spelled as strings, which every DuckDB version takes (its enums moved between versions).
        con.create_function(  # type: ignore[call-overload]
            prefix + name,
            _bound(name, settings),
            None,  # any arguments: `call` checks them
            "VARCHAR",
            type="arrow",
            null_handling="special",  # nulls reach the operation, which keeps them null
            side_effects=True,  # never folded or shared: randomized answers differ per row
        )


def _bound(name: str, settings: Settings) -> Callable[..., pa.Array]:
    def function(*arrays: pa.Array) -> pa.Array:
        return call(name, settings.client(), arrays)

    function.__name__ = name
    return function
