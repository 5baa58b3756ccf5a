"""`pseudonym.duckdb.register`: the SQL functions in DuckDB against a real pseudonymd on loopback."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

duckdb = pytest.importorskip("duckdb")

import pseudonym.duckdb  # noqa: E402
from conftest import new_api_key, new_keyring  # noqa: E402
from pseudonym import Client, ConfigurationError  # noqa: E402

EMAILS = [None if i % 7 == 3 else f"user{i % 500}@example.com" for i in range(6_000)]


@pytest.fixture
def con(service, tmp_path: Path):
    """A connection with the functions and `people.parquet` (id, email) beside it."""
    connection = duckdb.connect()
    pseudonym.duckdb.register(connection, url=service.url, api_key=service.admin)
    connection.from_arrow(pa.table({"id": range(len(EMAILS)), "email": EMAILS})).create("people")
    connection.execute(f"COPY people TO '{tmp_path / 'people.parquet'}' (FORMAT parquet)")
    yield connection
    connection.close()


def test_round_trip_keeps_nulls_and_order_over_parquet(con, service, tmp_path: Path) -> None:
    rows = con.execute(
        "SELECT id, email, pseudonymize(email, 'crm.email') AS token, "
        "reidentify(pseudonymize(email, 'crm.email'), 'crm.email') AS back, "
        "reidentify(rewrap(pseudonymize(email, 'crm.email', 'randomized'), 'crm.email'), 'crm.email') AS again "
        f"FROM '{tmp_path / 'people.parquet'}' ORDER BY id"
    ).fetchall()
    assert [(id_, email) for id_, email, *_ in rows] == list(enumerate(EMAILS))
    assert all(back == email and again == email for _, email, _, back, again in rows)
    tokens = [token for _, _, token, _, _ in rows]
    assert tokens == Client(service.url, service.admin).pseudonymize("crm.email", EMAILS)


def test_a_join_on_pseudonyms_matches_the_join_on_values(con) -> None:
    con.execute("CREATE TABLE orders AS SELECT 'user' || (i % 800) || '@example.com' AS email FROM range(2000) t(i)")
    plain = con.execute("SELECT count(*) FROM people JOIN orders USING (email)").fetchone()
    joined = con.execute(
        "WITH a AS (SELECT pseudonymize(email, 'crm.email') AS e FROM people), "
        "b AS (SELECT pseudonymize(email, 'crm.email') AS e FROM orders) "
        "SELECT count(*) FROM a JOIN b ON a.e = b.e"
    ).fetchone()
    assert plain is not None and plain[0] > 0 and joined == plain


def test_numbers_and_dates_are_pseudonymized_by_their_canonical_text(con) -> None:
    row = con.execute(
        "SELECT pseudonymize(42::BIGINT, 'ids') = pseudonymize('42', 'ids'), "
        "reidentify(pseudonymize(12.5::DECIMAL(10, 2), 'ids'), 'ids'), "
        "reidentify(pseudonymize(DATE '2024-01-31', 'ids'), 'ids'), "
        "pseudonymize(NULL::INTEGER, 'ids')"
    ).fetchone()
    assert row == (True, "12.50", "2024-01-31", None)


def test_a_failed_row_names_the_count_and_code_but_no_value(con) -> None:
    query = "SELECT reidentify(t, 'crm.email') FROM (VALUES ('d1.forged-user1@example.com'), (NULL), ('nope')) v(t)"
    with pytest.raises(duckdb.Error) as raised:
        con.execute(query).fetchall()
    message = str(raised.value)
    assert "2 pseudonym(s) could not be re-identified" in message and "invalid_token" in message
    assert "user1@example.com" not in message
    kept = con.execute("SELECT reidentify(t, 'crm.email', 'null') FROM (VALUES ('nope'), (NULL)) v(t)").fetchall()
    assert kept == [(None,), (None,)]
    with pytest.raises(duckdb.Error, match="pseudonymize takes 2 to 4 arguments"):
        con.execute("SELECT pseudonymize(email) FROM people").fetchall()
    # A column where a literal belongs: refused without quoting what it held.
    with pytest.raises(duckdb.Error, match="on_error must be 'error' or 'null'") as raised:
        con.execute("SELECT reidentify(t, 'crm.email', e) FROM (VALUES ('x', 'user1@example.com')) v(t, e)").fetchall()
    assert "user1@example.com" not in str(raised.value)


def test_a_stopped_service_fails_the_query_with_our_error(start_daemon, tmp_path: Path) -> None:
    keys = tmp_path / "api-keys.toml"
    key = new_api_key(keys, "job", "pseudonymize", "vin")
    daemon = start_daemon(["--keyring-file", str(new_keyring(tmp_path / "ring.toml")), "--api-keys-file", str(keys)])
    url = daemon.url
    daemon.stop()
    con = duckdb.connect()
    pseudonym.duckdb.register(con, url=url, api_key=key, retries=1, timeout=2)
    with pytest.raises(duckdb.Error) as raised:
        con.execute("SELECT pseudonymize('WVWZZZ1JZXW000001', 'vin')").fetchall()
    message = str(raised.value)
    assert "ServiceUnavailableError" in message and "failed after 2 attempts" in message
    assert "WVWZZZ1JZXW000001" not in message


def test_missing_settings_fail_at_registration(monkeypatch) -> None:
    monkeypatch.delenv("PSEUDONYM_URL", raising=False)
    with pytest.raises(ConfigurationError, match="PSEUDONYM_URL"):
        pseudonym.duckdb.register(duckdb.connect(), api_key="k")


def test_the_duckdb_benchmark_runs(service, tmp_path: Path, monkeypatch) -> None:
    import importlib

    from conftest import ROOT

    monkeypatch.syspath_prepend(str(ROOT / "python" / "bench"))
    bench = importlib.import_module("duckdb_bench")
    results = bench.main(["--rows", "5000", "--cardinality", "500", "--url", service.url,
                          "--api-key", service.admin, "--json", str(tmp_path / "bench.json")])
    assert results["pseudonymize_rows_per_s"] > 0 and results["sha256_rows_per_s"] > 0
