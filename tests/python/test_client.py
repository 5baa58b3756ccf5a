"""The Python API without Spark: lists, pyarrow arrays, record batches, errors, the GIL."""

from __future__ import annotations

import http.server
import json
import threading

import pyarrow as pa
import pytest

import pseudonym
from pseudonym import Client


@pytest.fixture(scope="module")
def client(service) -> Client:
    return Client(service.url, api_key=service.admin, batch_size=100)


def test_lists_round_trip_with_nulls_and_order(client: Client) -> None:
    values = [f"WVWZZZ1JZXW{i % 300:06}" if i % 9 else None for i in range(2_000)]
    pseudonyms = client.pseudonymize("vin", values)
    assert len(pseudonyms) == len(values)
    assert [p is None for p in pseudonyms] == [v is None for v in values]
    assert all(p.startswith("d1.") for p in pseudonyms if p)
    assert client.reidentify("vin", pseudonyms) == values


def test_modes(client: Client) -> None:
    hashed = client.pseudonymize("vin", ["a", "a"], mode="hash")
    assert hashed[0] == hashed[1] and hashed[0].startswith("h1.")
    randomized = client.pseudonymize("vin", ["a", "a"], mode="randomized")
    assert randomized[0] != randomized[1]
    assert client.reidentify("vin", randomized) == ["a", "a"]
    with pytest.raises(ValueError, match="mode must be one of"):
        client.pseudonymize("vin", ["a"], mode="rot13")  # type: ignore[arg-type]


def test_on_error_is_raise_error_or_null_and_nothing_else(client: Client) -> None:
    forged = ["d1.forged", None]
    for raising in ("raise", "error"):
        with pytest.raises(pseudonym.ReidentificationError):
            client.reidentify("vin", forged, on_error=raising)  # type: ignore[arg-type]
    assert client.reidentify("vin", forged, on_error="null") == [None, None]
    # Found in review: any other spelling gave silent nulls where the caller meant to fail.
    for misspelled in ("nul", "Raise", "fail"):
        with pytest.raises(ValueError, match="on_error must be"):
            client.reidentify("vin", forged, on_error=misspelled)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="on_error must be"):
            client.rewrap("vin", forged, on_error=misspelled)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="on_error must be"):
            client.pseudonymize("vin", ["a"], on_error=misspelled)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "arrow_type", [pa.string(), pa.large_string(), pa.string_view()], ids=str
)
def test_arrow_arrays_keep_their_type(client: Client, arrow_type: pa.DataType) -> None:
    values = pa.array(["x", None, "y", "x"], type=arrow_type)
    pseudonyms = client.pseudonymize("vin", values)
    assert pseudonyms.type == arrow_type
    assert pseudonyms.to_pylist() == client.pseudonymize("vin", values.to_pylist())
    assert client.reidentify("vin", pseudonyms).to_pylist() == values.to_pylist()


def test_dictionaries_and_chunked_arrays(client: Client) -> None:
    values = pa.array(["a", "b", None, "a"] * 50).dictionary_encode()
    pseudonyms = client.pseudonymize("vin", values)
    assert pseudonyms.type == values.type
    assert pseudonyms.indices == values.indices
    assert client.reidentify("vin", pseudonyms).to_pylist() == values.to_pylist()

    chunked = pa.chunked_array([["a", None], ["b"]])
    out = client.pseudonymize("vin", chunked)
    assert isinstance(out, pa.ChunkedArray) and out.num_chunks == 2
    assert client.reidentify("vin", out).to_pylist() == ["a", None, "b"]


def test_record_batches_change_only_the_named_columns(client: Client) -> None:
    batch = pa.record_batch({"dept_id": [1, 2, 3], "vin": ["V1", None, "V3"], "email": ["e", "f", None]})
    out = client.pseudonymize_batch(batch, {"vin": "vin", "email": "crm.email"})
    assert out.schema == batch.schema
    assert out.column("dept_id") == batch.column("dept_id")
    assert out.column("vin").to_pylist()[1] is None
    back = client.reidentify_batch(out, {"vin": "vin", "email": "crm.email"})
    assert back.to_pydict() == batch.to_pydict()
    with pytest.raises(pseudonym.ConfigurationError, match="no such column"):
        client.pseudonymize_batch(batch, {"nope": "vin"})


def test_failed_items_raise_or_stay_null_by_choice(client: Client) -> None:
    good = client.pseudonymize("vin", ["a"])[0]
    with pytest.raises(pseudonym.ReidentificationError) as raised:
        client.reidentify("vin", [good, "forged", None, "h1.AAAA"])
    assert raised.value.errors == [(1, "invalid_token"), (3, "not_reversible")]
    assert raised.value.values == ["a", None, None, None]
    assert client.reidentify("vin", [good, "forged"], on_error="null") == ["a", None]
    assert client.reidentify("crm.email", [good], on_error="null") == [None]


def test_request_level_failures_are_python_exceptions(service) -> None:
    with pytest.raises(pseudonym.ServiceRejectedError) as raised:
        Client(service.url, api_key="pk_wrong").pseudonymize("vin", ["a"])
    assert (raised.value.status, raised.value.code) == (401, "unauthorized")

    writer = Client(service.url, api_key=service.writer)
    with pytest.raises(pseudonym.ServiceRejectedError) as raised:
        writer.pseudonymize("crm.email", ["a"])
    assert raised.value.status == 403
    with pytest.raises(pseudonym.ServiceRejectedError, match="HTTP 403"):
        writer.reidentify("vin", writer.pseudonymize("vin", ["a"]))

    nobody = Client("http://127.0.0.1:9", api_key="k", retries=1, timeout=2)
    with pytest.raises(pseudonym.ServiceUnavailableError, match="failed after 2 attempts") as raised:
        nobody.pseudonymize("vin", ["SECRET-VALUE"])
    assert "SECRET-VALUE" not in str(raised.value)

    with pytest.raises(pseudonym.UnsupportedTypeError, match="Float64"):
        Client(service.url, api_key=service.admin).pseudonymize("vin", pa.array([1.5, 2.0]))
    with pytest.raises(pseudonym.ConfigurationError, match="no service URL"):
        Client([], api_key="k")
    with pytest.raises(pseudonym.ConfigurationError, match="batch_size"):
        Client(service.url, api_key="k", batch_size=0)


def test_the_gil_is_released_while_a_call_waits() -> None:
    """The service here is a Python thread. If the call held the GIL, that thread could never
    answer and the call would time out; it succeeds only if the GIL is released."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            answer = {"pseudonyms": [f"d1.{v[::-1]}" for v in body["values"]], "key_version": 1}
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = Client(f"http://127.0.0.1:{server.server_port}", api_key="k", retries=0, timeout=5)
        results: list[object] = []
        callers = [
            threading.Thread(target=lambda: results.append(client.pseudonymize("vin", ["ab", "cd"])))
            for _ in range(2)
        ]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(timeout=30)
        assert results == [["d1.ba", "d1.dc"], ["d1.ba", "d1.dc"]]
    finally:
        server.shutdown()


def test_defaults_and_exception_classes_come_from_the_native_module() -> None:
    import inspect

    from pseudonym import _internal, errors

    # The Rust client's defaults, written once there, are every Python signature's.
    signature = inspect.signature(Client)
    assert signature.parameters["batch_size"].default == _internal.DEFAULT_BATCH_SIZE == 2000
    assert signature.parameters["concurrency"].default == _internal.DEFAULT_CONCURRENCY
    assert signature.parameters["timeout"].default == _internal.DEFAULT_TIMEOUT
    assert signature.parameters["retries"].default == _internal.DEFAULT_RETRIES
    # Every class a Rust error can become exists, and is one of the package's errors.
    assert len(_internal.ERROR_CLASSES) >= 6
    for name in _internal.ERROR_CLASSES:
        assert issubclass(getattr(errors, name), errors.PseudonymError), name
