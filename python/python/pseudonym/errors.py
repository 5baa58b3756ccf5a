"""Exceptions of the `pseudonym` package. Messages never contain a value or a key.

Each can also be made from its message alone, as engines do when they re-raise an error from a
user function with their own context added (Polars does); the other fields then take their
defaults (`status` 0, `code` "", `attempts` 0, `errors` empty).
"""

from __future__ import annotations


class PseudonymError(Exception):
    """Base class of every error raised by this package."""


class ConfigurationError(PseudonymError, ValueError):
    """Settings that cannot work: no URL, no API key, a zero batch size, ..."""


class UnsupportedTypeError(PseudonymError, TypeError):
    """An input that holds no strings (e.g. an integer Arrow array)."""


class ServiceRejectedError(PseudonymError):
    """The service refused a batch for a reason retrying cannot change (400, 401, 403, 413, 422)."""

    def __init__(self, message: str, *, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ServiceUnavailableError(PseudonymError):
    """A batch failed on every attempt (connection errors, timeouts, 429, 502, 503, 504), or the
    service's replicas answered one format-preserving call under different key versions (while
    a rotation rolls out; `attempts` is then 0). Worth trying again later."""

    def __init__(self, message: str, *, attempts: int = 0) -> None:
        super().__init__(message)
        self.attempts = attempts


class ProtocolError(PseudonymError):
    """The service's answer did not fit the request."""


class PseudonymizationError(PseudonymError):
    """Some values have no pseudonym (format-preserving mode only).

    `errors` lists `(row index, code)` pairs; codes are `outside_alphabet` (a character outside
    the domain's alphabet, in a domain that refuses them), `format_too_short` and
    `format_too_long`. `pseudonyms` holds the result with the failed rows as `None`.
    """

    def __init__(self, errors: list[tuple[int, str]] | str, pseudonyms: object = None) -> None:
        super().__init__(_per_item_message(errors, "pseudonymized", "value"))
        self.errors = [] if isinstance(errors, str) else errors
        self.pseudonyms = pseudonyms


class ReidentificationError(PseudonymError):
    """Some pseudonyms could not be re-identified.

    `errors` lists `(row index, code)` pairs; codes are `invalid_token`, `unknown_key_version`
    and `not_reversible`. `values` holds the result with the failed rows as `None`.
    """

    def __init__(self, errors: list[tuple[int, str]] | str, values: object = None) -> None:
        super().__init__(_per_item_message(errors, "re-identified"))
        self.errors = [] if isinstance(errors, str) else errors
        self.values = values


class RewrapError(PseudonymError):
    """Some pseudonyms could not be rewrapped.

    `errors` lists `(row index, code)` pairs, as for `ReidentificationError`; `pseudonyms` holds
    the result with the failed rows as `None`.
    """

    def __init__(self, errors: list[tuple[int, str]] | str, pseudonyms: object = None) -> None:
        super().__init__(_per_item_message(errors, "rewrapped"))
        self.errors = [] if isinstance(errors, str) else errors
        self.pseudonyms = pseudonyms


def _per_item_message(errors: list[tuple[int, str]] | str, done: str, item: str = "pseudonym") -> str:
    """How many items could not be `done`, the first row and the codes; or the message."""
    if isinstance(errors, str):
        return errors
    codes = sorted({code for _, code in errors})
    return (
        f"{len(errors)} {item}(s) could not be {done} "
        f"(first row {errors[0][0]}; codes: {', '.join(codes)})"
    )
