"""The `pseudonym` namespace of Polars expressions, registered by importing this module.

    import polars as pl
    import pseudonym.polars  # noqa: F401  (registers the namespace)

    cars.with_columns(pl.col("vin").pseudonym.pseudonymize("vin", url=..., api_key=...))
    lazy.select(pl.col("vin").pseudonym.reidentify("vin", on_error="null"))

Each batch of a column goes to the service as Arrow (no copy of its strings), deduplicated,
through one client per settings; eager and lazy queries alike. The result is a `String` column
of the same rows, nulls kept; integer, decimal and date columns are taken by their canonical
text, as in every engine. `url` and `api_key` left out are read from `PSEUDONYM_URL` and
`PSEUDONYM_API_KEY`.
"""

from __future__ import annotations

from pseudonym._internal import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, DEFAULT_RETRIES, DEFAULT_TIMEOUT
from collections.abc import Sequence

import polars as pl
import pyarrow as pa

from . import Mode
from ._functions import Settings, call

__all__ = ["PseudonymExpr"]


@pl.api.register_expr_namespace("pseudonym")
class PseudonymExpr:
    """`expr.pseudonym.pseudonymize(...)`, `.reidentify(...)`, `.rewrap(...)`."""

    def __init__(self, expr: pl.Expr) -> None:
        self._expr = expr

    def pseudonymize(
        self,
        domain: str,
        mode: Mode = "deterministic",
        on_error: str = "error",
        *,
        url: str | Sequence[str] | None = None,
        api_key: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        cache_size: int = 0,
    ) -> pl.Expr:
        """The pseudonyms of the expression's values in `domain`; a value without one
        (`format-preserving` mode only) raises `PseudonymizationError`, or is null with
        `on_error="null"`."""
        settings = Settings(
            Settings.urls(url), api_key, batch_size, concurrency, timeout, retries, cache_size
        )
        return self._map("pseudonymize", settings, domain, mode, on_error)

    def reidentify(
        self,
        domain: str,
        on_error: str = "error",
        *,
        url: str | Sequence[str] | None = None,
        api_key: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
    ) -> pl.Expr:
        """The values behind the pseudonyms; a row that fails raises `ReidentificationError`
        (rows and codes, no value), or is null with `on_error="null"`."""
        settings = Settings(Settings.urls(url), api_key, batch_size, concurrency, timeout, retries)
        return self._map("reidentify", settings, domain, on_error)

    def rewrap(
        self,
        domain: str,
        on_error: str = "error",
        *,
        url: str | Sequence[str] | None = None,
        api_key: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
    ) -> pl.Expr:
        """The pseudonyms made again under the service's primary key version; failures as in
        `reidentify`, with `RewrapError`."""
        settings = Settings(Settings.urls(url), api_key, batch_size, concurrency, timeout, retries)
        return self._map("rewrap", settings, domain, on_error)

    def _map(self, name: str, settings: Settings, *literals: str) -> pl.Expr:
        settings.client()  # built now: missing settings fail here, not inside the query

        def batch(series: pl.Series) -> pl.Series:
            column = series.to_arrow()
            arguments = [column, *(pa.repeat(pa.scalar(v, pa.string()), len(column)) for v in literals)]
            answer = call(name, settings.client(), arguments)
            return pl.Series(series.name, answer, dtype=pl.String)

        return self._expr.map_batches(batch, return_dtype=pl.String, is_elementwise=True)
