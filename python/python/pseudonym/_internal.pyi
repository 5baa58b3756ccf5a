"""Type stubs of the native module (checked against it with `mypy.stubtest`)."""

from typing import final

import pyarrow as pa

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "ERROR_CLASSES",
    "Client",
    "__version__",
]
__version__: str
DEFAULT_BATCH_SIZE: int
DEFAULT_CONCURRENCY: int
DEFAULT_TIMEOUT: float
DEFAULT_RETRIES: int
ERROR_CLASSES: list[str]

@final
class Client:
    def __new__(
        cls,
        urls: list[str],
        api_key: str,
        batch_size: int,
        concurrency: int,
        timeout: float,
        attempts: int,
        cache_size: int,
        root_certificates: bytes | None = None,
        identity: bytes | None = None,
    ) -> Client: ...
    def pseudonymize_list(
        self, domain: str, mode: str, values: list[str | None]
    ) -> tuple[list[str | None], list[tuple[int, str]]]: ...
    def reidentify_list(
        self, domain: str, pseudonyms: list[str | None]
    ) -> tuple[list[str | None], list[tuple[int, str]]]: ...
    def rewrap_list(
        self, domain: str, pseudonyms: list[str | None]
    ) -> tuple[list[str | None], list[tuple[int, str]]]: ...
    def pseudonymize_arrow(
        self, domain: str, mode: str, array: pa.Array
    ) -> tuple[pa.Array, list[tuple[int, str]]]: ...
    def reidentify_arrow(
        self, domain: str, array: pa.Array
    ) -> tuple[pa.Array, list[tuple[int, str]]]: ...
    def rewrap_arrow(
        self, domain: str, array: pa.Array
    ) -> tuple[pa.Array, list[tuple[int, str]]]: ...
