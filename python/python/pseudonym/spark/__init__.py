"""Pseudonymize, re-identify and rewrap Spark columns, batch or Structured Streaming.

Two ways in, with the same client underneath:

- **SQL and Column functions** (Spark 4.1+): `register(spark)` adds `pseudonymize(col, domain
  [, mode [, on_error]])`, `reidentify(col, domain [, on_error])` and `rewrap(col, domain [, on_error])` to
  Spark SQL; `pseudonym.spark.functions` offers them as Column functions for `select` and
  `withColumn`. They are Arrow UDFs of the iterator form: each Python worker keeps one client
  for all the batches of a task. Columns of strings, integers, decimals and dates are taken
  (numbers and dates by their canonical text); the result is a string column, nulls kept.

      from pseudonym.spark import register
      register(spark, url="http://pseudonym:8080")
      spark.sql("SELECT pseudonymize(vin, 'vin') AS vin FROM cars")

- **DataFrame functions** (Spark 3.5+): `pseudonymize(df, columns, domain=...)` and its peers
  replace whole string columns and keep the schema.

Each DataFrame function returns a DataFrame with the same schema, built on `mapInArrow`: each executor's
Python worker keeps one client (with its connection pool) for all the Arrow batches it handles,
and every batch goes to the service as a few large, deduplicated, concurrent requests.

    from pseudonym.spark import pseudonymize
    out = pseudonymize(df, ["vin"], domain="vin", url="http://pseudonym:8080")

The API key travels in the pickled function only if you pass `api_key=`; leave it out to have
executors read `PSEUDONYM_API_KEY` from their environment (e.g. `spark.executorEnv.*`) instead.
The same holds for `url=` and `PSEUDONYM_URL`.
"""

from __future__ import annotations

from pseudonym._internal import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, DEFAULT_RETRIES, DEFAULT_TIMEOUT
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa

from .. import Client, ConfigurationError, Mode, OnError, _raises
from .._functions import NAMES, Settings, call

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

In = TypeVar("In")
Out = TypeVar("Out")

__all__ = ["pseudonymize", "register", "reidentify", "rewrap"]


def register(
    spark: SparkSession,
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
    """Registers `pseudonymize`, `reidentify` and `rewrap` (each name after `prefix`) as SQL
    functions of `spark`, calling the service at `url` with `api_key`.

    `pseudonymize(col, domain [, mode [, on_error]])`; `reidentify(col, domain [, on_error])` and
    `rewrap(col, domain [, on_error])`, where `on_error` is `'error'` (the default: a pseudonym
    that fails fails the query, naming rows and codes but no value) or `'null'`. Domain, mode
    and on_error are literals. `cache_size` keeps that many answers per worker process across
    batches (deterministic and hash only; off by default).
    """
    settings = Settings(
        Settings.urls(url), api_key, batch_size, concurrency, timeout, retries, cache_size
    )
    for name in NAMES:
        spark.udf.register(prefix + name, arrow_function(name, settings))


def arrow_function(name: str, settings: Settings) -> Any:
    """The Arrow UDF (iterator form) of the operation `name`, with `settings`' client."""
    try:
        from pyspark.sql.pandas.functions import ArrowUDFType, arrow_udf
    except ImportError:
        raise ConfigurationError(
            "the SQL and Column functions need Spark 4.1 or later (Arrow UDFs); on older Spark "
            "use pseudonym.spark.pseudonymize(df, ...) and its peers"
        ) from None

    def run(batches: Iterable[pa.Array | tuple[pa.Array, ...]]) -> Iterator[pa.Array]:
        client = settings.client()
        arguments = (batch if isinstance(batch, tuple) else (batch,) for batch in batches)
        yield from _pipelined(arguments, lambda args: call(name, client, args))

    run.__name__ = name  # what Spark shows in plans
    with warnings.catch_warnings():  # it prefers type hints; ours take any number of columns
        warnings.simplefilter("ignore", UserWarning)
        return arrow_udf(run, "string", ArrowUDFType.SCALAR_ITER)


def pseudonymize(
    df: DataFrame,
    columns: str | Sequence[str],
    *,
    domain: str | Mapping[str, str],
    mode: Mode = "deterministic",
    on_error: OnError = "raise",
    url: str | Sequence[str] | None = None,
    api_key: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
) -> DataFrame:
    """`df` with `columns` (string columns) replaced by their pseudonyms.

    `domain` is one domain for all columns or a mapping column -> domain. Same schema, same row
    order within each partition, nulls kept. A batch the service cannot answer fails the Spark
    task with `ServiceUnavailableError` or `ServiceRejectedError`; a value without a pseudonym
    (`format-preserving` mode only) with `PseudonymizationError`, unless `on_error="null"`.
    """
    _raises(on_error)  # a misspelling is refused here, on the driver, not in every task
    domains = _domains(df, columns, domain)
    settings = Settings(Settings.urls(url), api_key, batch_size, concurrency, timeout, retries)
    return _map_batches(
        df,
        settings,
        lambda client, batch: client.pseudonymize_batch(batch, domains, mode, on_error=on_error),
    )


def reidentify(
    df: DataFrame,
    columns: str | Sequence[str],
    *,
    domain: str | Mapping[str, str],
    on_error: OnError = "raise",
    url: str | Sequence[str] | None = None,
    api_key: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
) -> DataFrame:
    """`df` with the pseudonyms in `columns` replaced by their values.

    A pseudonym that cannot be re-identified fails the task with `ReidentificationError`
    (naming rows and codes, never values), unless `on_error="null"`.
    """
    _raises(on_error)  # a misspelling is refused here, on the driver, not in every task
    domains = _domains(df, columns, domain)
    settings = Settings(Settings.urls(url), api_key, batch_size, concurrency, timeout, retries)
    return _map_batches(
        df, settings, lambda client, batch: client.reidentify_batch(batch, domains, on_error=on_error)
    )


def rewrap(
    df: DataFrame,
    columns: str | Sequence[str],
    *,
    domain: str | Mapping[str, str],
    on_error: OnError = "raise",
    url: str | Sequence[str] | None = None,
    api_key: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
) -> DataFrame:
    """`df` with the pseudonyms in `columns` made again under the service's primary key version,
    without any value leaving the service: for key rotation, and to turn the replaced AWS
    service's pseudonyms into ours (in its compatible domain).

    A pseudonym that cannot be rewrapped fails the task with `RewrapError` (naming rows and
    codes, never values), unless `on_error="null"`.
    """
    _raises(on_error)  # a misspelling is refused here, on the driver, not in every task
    domains = _domains(df, columns, domain)
    settings = Settings(Settings.urls(url), api_key, batch_size, concurrency, timeout, retries)
    return _map_batches(
        df, settings, lambda client, batch: client.rewrap_batch(batch, domains, on_error=on_error)
    )


def _map_batches(
    df: DataFrame,
    settings: Settings,
    transform: Callable[[Client, pa.RecordBatch], pa.RecordBatch],
) -> DataFrame:
    """`df` with every Arrow batch replaced by `transform(client, batch)`, on the executors, with
    the worker process's one client for these settings; same schema."""

    def run(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        client = settings.client()
        yield from _pipelined(batches, lambda batch: transform(client, batch))

    return df.mapInArrow(run, df.schema)


PIPELINE_DEPTH = 2


def _pipelined(batches: Iterable[In], transform: Callable[[In], Out]) -> Iterator[Out]:
    """`transform` of each batch, in order, with the next batch already read from Spark and
    sent while one waits for the service (the client releases the GIL while it waits)."""
    with ThreadPoolExecutor(max_workers=PIPELINE_DEPTH, thread_name_prefix="pseudonym") as pool:
        pending: deque[Future[Out]] = deque()
        for batch in batches:
            pending.append(pool.submit(transform, batch))
            if len(pending) >= PIPELINE_DEPTH:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _domains(
    df: DataFrame, columns: str | Sequence[str], domain: str | Mapping[str, str]
) -> dict[str, str]:
    from pyspark.sql.types import StringType

    names = [columns] if isinstance(columns, str) else list(columns)
    if not names:
        raise ConfigurationError("no columns given")
    fields = {field.name: field for field in df.schema.fields}
    for name in names:
        if name not in fields:
            raise ConfigurationError(f"no column {name!r} in the DataFrame")
        if not isinstance(fields[name].dataType, StringType):
            raise ConfigurationError(
                f"column {name!r} is {fields[name].dataType.simpleString()}, not string"
            )
    if isinstance(domain, str):
        return {name: domain for name in names}
    missing = [name for name in names if name not in domain]
    if missing:
        raise ConfigurationError(f"no domain given for column(s): {', '.join(missing)}")
    return {name: domain[name] for name in names}
