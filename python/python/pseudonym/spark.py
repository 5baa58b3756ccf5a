"""Pseudonymize, re-identify and rewrap Spark DataFrame columns, batch or Structured Streaming.

Each function returns a DataFrame with the same schema, built on `mapInArrow`: each executor's
Python worker keeps one client (with its connection pool) for all the Arrow batches it handles,
and every batch goes to the service as a few large, deduplicated, concurrent requests.

    from pseudonym.spark import pseudonymize
    out = pseudonymize(df, ["vin"], domain="vin", url="http://pseudonym:8080")

The API key travels in the pickled function only if you pass `api_key=`; leave it out to have
executors read `PSEUDONYM_API_KEY` from their environment (e.g. `spark.executorEnv.*`) instead.
The same holds for `url=` and `PSEUDONYM_URL`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from . import Client, ConfigurationError, Mode, OnError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["pseudonymize", "reidentify", "rewrap"]


@dataclass(frozen=True)
class _Settings:
    """What an executor needs to build its client; hashable, so workers can share clients."""

    url: str | tuple[str, ...] | None
    api_key: str | None
    batch_size: int
    concurrency: int
    timeout: float
    retries: int

    def __repr__(self) -> str:  # keeps the API key out of Spark's plans and logs
        return f"_Settings(url={self.url!r}, batch_size={self.batch_size})"


_clients: dict[_Settings, Client] = {}


def _client_for(settings: _Settings) -> Client:
    """The worker process's client for these settings, made on first use."""
    client = _clients.get(settings)
    if client is None:
        client = Client(
            settings.url,
            settings.api_key,
            batch_size=settings.batch_size,
            concurrency=settings.concurrency,
            timeout=settings.timeout,
            retries=settings.retries,
        )
        _clients[settings] = client
    return client


def pseudonymize(
    df: DataFrame,
    columns: str | Sequence[str],
    *,
    domain: str | Mapping[str, str],
    mode: Mode = "deterministic",
    url: str | Sequence[str] | None = None,
    api_key: str | None = None,
    batch_size: int = 2000,
    concurrency: int = 4,
    timeout: float = 30.0,
    retries: int = 7,
) -> DataFrame:
    """`df` with `columns` (string columns) replaced by their pseudonyms.

    `domain` is one domain for all columns or a mapping column -> domain. Same schema, same row
    order within each partition, nulls kept. A batch the service cannot answer fails the Spark
    task with `ServiceUnavailableError` or `ServiceRejectedError`.
    """
    domains = _domains(df, columns, domain)
    settings = _settings(url, api_key, batch_size, concurrency, timeout, retries)
    return _map_batches(df, settings, lambda client, batch: client.pseudonymize_batch(batch, domains, mode))


def reidentify(
    df: DataFrame,
    columns: str | Sequence[str],
    *,
    domain: str | Mapping[str, str],
    on_error: OnError = "raise",
    url: str | Sequence[str] | None = None,
    api_key: str | None = None,
    batch_size: int = 2000,
    concurrency: int = 4,
    timeout: float = 30.0,
    retries: int = 7,
) -> DataFrame:
    """`df` with the pseudonyms in `columns` replaced by their values.

    A pseudonym that cannot be re-identified fails the task with `ReidentificationError`
    (naming rows and codes, never values), unless `on_error="null"`.
    """
    domains = _domains(df, columns, domain)
    settings = _settings(url, api_key, batch_size, concurrency, timeout, retries)
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
    batch_size: int = 2000,
    concurrency: int = 4,
    timeout: float = 30.0,
    retries: int = 7,
) -> DataFrame:
    """`df` with the pseudonyms in `columns` made again under the service's primary key version,
    without any value leaving the service: for key rotation, and to turn the replaced AWS
    service's pseudonyms into ours (in its compatible domain).

    A pseudonym that cannot be rewrapped fails the task with `RewrapError` (naming rows and
    codes, never values), unless `on_error="null"`.
    """
    domains = _domains(df, columns, domain)
    settings = _settings(url, api_key, batch_size, concurrency, timeout, retries)
    return _map_batches(
        df, settings, lambda client, batch: client.rewrap_batch(batch, domains, on_error=on_error)
    )


def _map_batches(
    df: DataFrame,
    settings: _Settings,
    transform: Callable[[Client, pa.RecordBatch], pa.RecordBatch],
) -> DataFrame:
    """`df` with every Arrow batch replaced by `transform(client, batch)`, on the executors, with
    the worker process's one client for these settings; same schema."""

    def run(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        client = _client_for(settings)
        yield from _pipelined(batches, lambda batch: transform(client, batch))

    return df.mapInArrow(run, df.schema)


PIPELINE_DEPTH = 2


def _pipelined(
    batches: Iterable[pa.RecordBatch],
    transform: Callable[[pa.RecordBatch], pa.RecordBatch],
) -> Iterator[pa.RecordBatch]:
    """`transform` of each batch, in order, with the next batch already read from Spark and
    sent while one waits for the service (the client releases the GIL while it waits)."""
    with ThreadPoolExecutor(max_workers=PIPELINE_DEPTH, thread_name_prefix="pseudonym") as pool:
        pending: deque[Future[pa.RecordBatch]] = deque()
        for batch in batches:
            pending.append(pool.submit(transform, batch))
            if len(pending) >= PIPELINE_DEPTH:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _settings(
    url: str | Sequence[str] | None,
    api_key: str | None,
    batch_size: int,
    concurrency: int,
    timeout: float,
    retries: int,
) -> _Settings:
    urls = url if url is None or isinstance(url, str) else tuple(url)
    return _Settings(urls, api_key, batch_size, concurrency, timeout, retries)


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
