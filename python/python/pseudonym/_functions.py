"""The work behind the SQL and expression functions of every engine: Arrow arrays in, an Arrow
string array out.

Spark, DuckDB and Polars hand a function a batch of rows as one Arrow array per argument. The
first is the column; the others (domain, mode, on_error) are literals, which the engines pass as
arrays of one value repeated: each must hold that one non-null value on every row. A batch goes
to the service through one client per worker process and settings (deduplicated, batched,
concurrent, retried), and the answer is a plain `string` array of the batch's length and order,
nulls kept.

Numbers and dates are pseudonymized by their canonical text, the same in every engine (the
client does it, see `Client.pseudonymize`): integers in decimal digits (`-42`), decimals with
their column's scale (`12.50`), dates as `YYYY-MM-DD`.
"""

from __future__ import annotations

from pseudonym._internal import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, DEFAULT_RETRIES, DEFAULT_TIMEOUT
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast, get_args

import pyarrow as pa
import pyarrow.compute as pc

from . import Client, ConfigurationError, Mode, OnError

__all__ = ["NAMES", "Settings", "call"]


@dataclass(frozen=True)
class Settings:
    """What a worker process needs to build its client; hashable, so calls share clients.

    `url` and `api_key` left as `None` are read from `PSEUDONYM_URL` and `PSEUDONYM_API_KEY`
    where the client is built (on Spark, in each executor's environment).
    """

    url: str | tuple[str, ...] | None = None
    api_key: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    concurrency: int = DEFAULT_CONCURRENCY
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    cache_size: int = 0

    def __repr__(self) -> str:  # keeps the API key out of Spark's plans and logs
        return f"Settings(url={self.url!r}, batch_size={self.batch_size})"

    @staticmethod
    def urls(url: str | Sequence[str] | None) -> str | tuple[str, ...] | None:
        """`url` as the field takes it: one string (maybe comma-separated) or a tuple."""
        return url if url is None or isinstance(url, str) else tuple(url)

    def client(self) -> Client:
        """This process's client for these settings, made on first use."""
        client = _clients.get(self)
        if client is None:
            client = Client(
                self.url,
                self.api_key,
                batch_size=self.batch_size,
                concurrency=self.concurrency,
                timeout=self.timeout,
                retries=self.retries,
                cache_size=self.cache_size,
            )
            _clients[self] = client
        return client


# The native client builds its runtime and connections anew in a forked child (Spark's workers).
_clients: dict[Settings, Client] = {}


def pseudonymize(
    client: Client,
    column: pa.Array,
    domain: pa.Array,
    mode: pa.Array | None = None,
    on_error: pa.Array | None = None,
) -> pa.Array:
    """Pseudonyms of `column` (strings, integers, decimals or dates) in the literal `domain`,
    in the literal `mode` (default `deterministic`). A value without a pseudonym (only in
    `format-preserving` mode) raises `PseudonymizationError` unless `on_error` is `'null'`."""
    if len(column) == 0 or column.type == pa.null():
        return pa.nulls(len(column), pa.string())
    chosen = _literal(mode, "pseudonymize", "mode") if mode is not None else "deterministic"
    if chosen not in get_args(Mode):  # never quoted: it could be a value passed by mistake
        raise ConfigurationError(f"pseudonymize: mode must be one of {', '.join(get_args(Mode))}")
    answer = client.pseudonymize(
        _literal(domain, "pseudonymize", "domain"),
        column,
        cast(Mode, chosen),
        on_error=_on_error(on_error, "pseudonymize"),
    )
    return _plain_strings(answer)


def reidentify(
    client: Client, column: pa.Array, domain: pa.Array, on_error: pa.Array | None = None
) -> pa.Array:
    """Values behind the pseudonyms in `column`; a failed row raises `ReidentificationError`
    (rows and codes, no value) unless the literal `on_error` is `'null'`."""
    return _per_item("reidentify", client.reidentify, column, domain, on_error)


def rewrap(
    client: Client, column: pa.Array, domain: pa.Array, on_error: pa.Array | None = None
) -> pa.Array:
    """The pseudonyms in `column` made again under the primary key version; a failed row
    raises `RewrapError` unless the literal `on_error` is `'null'`."""
    return _per_item("rewrap", client.rewrap, column, domain, on_error)


def _per_item(
    function: str,
    operation: Callable[..., pa.Array],
    column: pa.Array,
    domain: pa.Array,
    on_error: pa.Array | None,
) -> pa.Array:
    """`operation` (the client's `reidentify` or `rewrap`) of the pseudonyms in `column`."""
    if len(column) == 0 or column.type == pa.null():
        return pa.nulls(len(column), pa.string())
    domain_name = _literal(domain, function, "domain")
    return _plain_strings(operation(domain_name, column, on_error=_on_error(on_error, function)))


_OPERATIONS: dict[str, tuple[Callable[..., pa.Array], tuple[str, ...]]] = {
    "pseudonymize": (pseudonymize, ("mode", "on_error")),
    "reidentify": (reidentify, ("on_error",)),
    "rewrap": (rewrap, ("on_error",)),
}

NAMES = tuple(_OPERATIONS)
"""The functions every engine registers, by their SQL name."""


def call(name: str, client: Client, arguments: Sequence[pa.Array]) -> pa.Array:
    """The answer of the function `name` for one batch of its `arguments`."""
    operation, options = _OPERATIONS[name]
    if not 2 <= len(arguments) <= 2 + len(options):
        spelled = "".join(f" [, {option}" for option in options) + "]" * len(options)
        raise ConfigurationError(
            f"{name} takes 2 to {2 + len(options)} arguments: (column, domain{spelled}), "
            f"not {len(arguments)}"
        )
    return operation(client, *arguments)


def _literal(array: pa.Array, function: str, what: str) -> str:
    """The one string every row of `array` holds.

    An engine hands a literal over as a column of one repeated value and cannot say whether it
    was one, so a column passed by mistake (`reidentify(token, 'vin', email)`) can get here: no
    message ever quotes what the argument held."""
    distinct = pc.unique(array)
    value = distinct[0].as_py() if len(distinct) == 1 else None
    if not isinstance(value, str):
        raise ConfigurationError(
            f"{function}: the {what} must be a string literal, the same on every row"
        )
    return value


def _on_error(array: pa.Array | None, function: str) -> OnError:
    """The SQL spelling of what to do with a failed row (`'error'` or `'null'`), as
    `Client`'s `on_error`."""
    chosen = _literal(array, function, "on_error") if array is not None else "error"
    if chosen not in ("error", "null"):
        raise ConfigurationError(f"{function}: on_error must be 'error' or 'null'")
    return "raise" if chosen == "error" else "null"


def _plain_strings(array: pa.Array) -> pa.Array:
    """`array` as a plain `string` array: what every engine takes for a string result."""
    if isinstance(array, pa.DictionaryArray):
        array = array.dictionary_decode()
    return array if array.type == pa.string() else array.cast(pa.string())
