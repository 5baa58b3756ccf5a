"""`pseudonym.spark.register` (Spark SQL) and `pseudonym.spark.functions` (Column functions) in a
local Spark against a real pseudonymd on loopback, batch and Structured Streaming."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

pytest.importorskip("pyspark")

from pyspark.sql import functions as F  # noqa: E402

from conftest import new_api_key, new_keyring  # noqa: E402
from pseudonym import Client  # noqa: E402
from pseudonym.spark import functions as ps  # noqa: E402
from pseudonym.spark import register  # noqa: E402


@pytest.fixture(scope="module")
def people(spark):
    """`people` (id, email with every 7th null) and `orders` (id, customer email), as views."""
    rows = [(i, None if i % 7 == 3 else f"user{i % 500}@example.com") for i in range(6_000)]
    spark.createDataFrame(rows, "id long, email string").repartition(3).createOrReplaceTempView("people")
    orders = [(i, f"user{i % 800}@example.com") for i in range(2_000)]
    spark.createDataFrame(orders, "order_id long, email string").createOrReplaceTempView("orders")
    return rows


def test_sql_functions_round_trip_keep_nulls_and_order(spark, service, people) -> None:
    register(spark, url=service.url, api_key=service.admin)
    out = spark.sql(
        "SELECT id, email, pseudonymize(email, 'crm.email') AS token, "
        "reidentify(pseudonymize(email, 'crm.email'), 'crm.email') AS back, "
        "reidentify(rewrap(pseudonymize(email, 'crm.email', 'randomized'), 'crm.email'), 'crm.email') AS again "
        "FROM people ORDER BY id"
    ).collect()
    assert [(row.id, row.email) for row in out] == people
    assert all(row.back == row.email and row.again == row.email for row in out)
    assert all((row.token is None) == (row.email is None) for row in out)
    assert all(row.token is None or row.token.startswith("d1.") for row in out)
    # The same pseudonyms as the Python client gives.
    emails = [row.email for row in out[:50]]
    assert [row.token for row in out[:50]] == Client(service.url, service.admin).pseudonymize("crm.email", emails)


def test_a_join_on_pseudonyms_matches_the_join_on_values(spark, service, people) -> None:
    register(spark, url=service.url, api_key=service.admin, prefix="p_")
    plain = spark.sql("SELECT count(*) FROM people JOIN orders USING (email)").first()[0]
    joined = spark.sql(
        "WITH a AS (SELECT p_pseudonymize(email, 'crm.email') AS e FROM people), "
        "b AS (SELECT p_pseudonymize(email, 'crm.email') AS e FROM orders) "
        "SELECT count(*) FROM a JOIN b ON a.e = b.e"
    ).first()[0]
    assert plain > 0 and joined == plain


def test_numbers_and_dates_are_pseudonymized_by_their_canonical_text(spark, service, people) -> None:
    register(spark, url=service.url, api_key=service.admin)
    row = spark.sql(
        "SELECT pseudonymize(CAST(42 AS BIGINT), 'ids') AS n, pseudonymize('42', 'ids') AS t, "
        "reidentify(pseudonymize(CAST(12.5 AS DECIMAL(10, 2)), 'ids'), 'ids') AS d, "
        "reidentify(pseudonymize(DATE '2024-01-31', 'ids'), 'ids') AS day, "
        "pseudonymize(CAST(NULL AS INT), 'ids') AS null_id"
    ).first()
    assert row.n == row.t
    assert (row.d, row.day, row.null_id) == ("12.50", "2024-01-31", None)


def test_column_functions_in_select_and_with_column(spark, service, people) -> None:
    df = spark.table("people")
    out = df.withColumn("token", ps.pseudonymize("email", "crm.email", url=service.url, api_key=service.admin))
    back = out.select("id", "email", ps.reidentify(out.token, "crm.email", url=service.url, api_key=service.admin).alias("back"))
    assert back.filter(~F.col("back").eqNullSafe(F.col("email"))).count() == 0
    hashed = df.select(ps.pseudonymize(F.col("id"), "ids", "hash", url=service.url, api_key=service.admin).alias("h"))
    assert hashed.filter(~F.col("h").startswith("h1.")).count() == 0


def test_a_failed_row_names_the_count_and_code_but_no_value(spark, service, people) -> None:
    register(spark, url=service.url, api_key=service.admin)
    forged = "d1.forged-user1@example.com"
    query = spark.sql(
        f"SELECT reidentify(t, 'crm.email') FROM VALUES ('{forged}'), (NULL), ('nope') AS v(t)"
    )
    with pytest.raises(Exception) as raised:
        query.collect()
    message = str(raised.value)
    # Spark may split the three rows over two tasks: the first task to fail names its own rows.
    assert re.search(r"ReidentificationError: [12] pseudonym\(s\) could not be re-identified "
                     r"\(first row \d; codes: invalid_token\)", message), message
    assert "user1@example.com" not in message
    kept = spark.sql(
        f"SELECT reidentify(t, 'crm.email', 'null') AS v FROM VALUES ('{forged}'), (NULL) AS v(t)"
    ).collect()
    assert [row.v for row in kept] == [None, None]
    with pytest.raises(Exception, match="the domain must be a string literal"):
        spark.sql("SELECT pseudonymize(email, NULL) FROM people").collect()


def test_a_stopped_service_fails_the_query_with_our_error(spark, start_daemon, tmp_path: Path) -> None:
    keys = tmp_path / "api-keys.toml"
    key = new_api_key(keys, "job", "pseudonymize", "vin")
    daemon = start_daemon(["--keyring-file", str(new_keyring(tmp_path / "ring.toml")), "--api-keys-file", str(keys)])
    url = daemon.url
    daemon.stop()
    register(spark, url=url, api_key=key, prefix="stopped_", retries=1, timeout=2)
    with pytest.raises(Exception) as raised:
        spark.sql("SELECT stopped_pseudonymize(email, 'vin') FROM people").collect()
    message = str(raised.value)
    assert "ServiceUnavailableError" in message and "failed after 2 attempts" in message
    assert "@example.com" not in message


def test_a_streaming_query_uses_the_registered_functions(spark, service, tmp_path: Path) -> None:
    register(spark, url=service.url, api_key=service.admin)
    stream = (
        spark.readStream.format("rate").option("rowsPerSecond", 200).option("numPartitions", 2).load()
        .selectExpr("value", "pseudonymize(value, 'ids') AS token",
                    "reidentify(pseudonymize(value, 'ids', 'randomized'), 'ids') AS back")
    )
    query = (
        stream.writeStream.format("memory").queryName("pseudonymized_rate")
        .option("checkpointLocation", str(tmp_path / "checkpoint")).trigger(processingTime="500 milliseconds")
        .start()
    )
    try:
        deadline = time.monotonic() + 60
        while spark.table("pseudonymized_rate").count() < 200 and time.monotonic() < deadline:
            assert query.exception() is None
            time.sleep(0.5)
    finally:
        query.stop()
    assert query.exception() is None
    rows = spark.table("pseudonymized_rate").collect()
    assert len(rows) >= 200
    assert all(row.back == str(row.value) for row in rows)
    expected = Client(service.url, service.admin).pseudonymize("ids", [str(row.value) for row in rows])
    assert [row.token for row in rows] == expected
