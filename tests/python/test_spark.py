"""pseudonym.spark in a local Spark (local[2]) against a real pseudonymd on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

pyspark = pytest.importorskip("pyspark")

from pyspark.sql import DataFrame, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from pseudonym.spark import pseudonymize, reidentify, rewrap  # noqa: E402


def seed_rows(spark: SparkSession, rows: int, cardinality: int) -> DataFrame:
    """The seed's test data shape: dept_id, vin (17 characters, ~5% null), example_ts."""
    return spark.range(rows).select(
        F.col("id"),
        (F.col("id") % 20).cast("string").alias("dept_id"),
        F.when(F.col("id") % 20 == 3, F.lit(None)).otherwise(
            F.format_string("WVWZZZ1JZ%08d", (F.col("id") * 7919) % cardinality)
        ).alias("vin"),
        F.current_timestamp().alias("example_ts"),
    )


def test_a_batch_job_over_parquet_reidentifies_to_its_input(spark, service, tmp_path: Path) -> None:
    source = tmp_path / "input.parquet"
    seed_rows(spark, 20_000, 2_000).repartition(4).write.parquet(str(source))
    df = spark.read.parquet(str(source))

    out = pseudonymize(df, "vin", domain="vin", url=service.url, api_key=service.admin)
    assert out.schema == df.schema
    out.write.parquet(str(tmp_path / "output.parquet"))
    written = spark.read.parquet(str(tmp_path / "output.parquet"))

    pairs = written.select("id", F.col("vin").alias("token")).join(df.select("id", "vin"), "id")
    assert pairs.filter(F.col("vin").isNull() != F.col("token").isNull()).count() == 0
    assert pairs.filter(~F.col("token").startswith("d1.")).count() == 0
    assert written.select("vin").distinct().count() == df.select("vin").distinct().count()

    back = reidentify(written, ["vin"], domain="vin", url=service.url, api_key=service.admin)
    assert sorted(back.collect()) == sorted(df.collect())


def test_a_lake_of_the_replaced_services_pseudonyms_is_rewrapped_and_reidentifies(
    spark, migration_service, tmp_path: Path
) -> None:
    golden = migration_service.vectors()
    rows = [(i, golden[i % len(golden)]["pseudonym"] if i % 9 != 4 else None) for i in range(3_000)]
    lake = tmp_path / "lake.parquet"
    spark.createDataFrame(rows, "id long, vin string").repartition(3).write.parquet(str(lake))
    df = spark.read.parquet(str(lake))
    url, key = migration_service.url, migration_service.admin

    out = rewrap(df, "vin", domain="default", url=url, api_key=key)
    assert out.schema == df.schema
    out.write.parquet(str(tmp_path / "rewrapped.parquet"))
    new = spark.read.parquet(str(tmp_path / "rewrapped.parquet"))
    assert new.filter(F.col("vin").isNotNull() & ~F.col("vin").rlike("^[dr]2[.]")).count() == 0
    deterministic = {v["pseudonym"]: v["rewrapped"] for v in golden if v["mode"] == "deterministic"}
    pairs = new.select("id", F.col("vin").alias("new")).join(df, "id").collect()
    assert all(deterministic.get(row.vin, row.new) == row.new for row in pairs)

    back = reidentify(new, "vin", domain="default", url=url, api_key=key)
    value_of = {v["pseudonym"]: v["value"] for v in golden}
    expected = sorted((i, value_of[t] if t else None) for i, t in rows)
    assert sorted((row.id, row.vin) for row in back.collect()) == expected


def test_a_streaming_query_gives_the_batch_result(spark, service, tmp_path: Path) -> None:
    rows = seed_rows(spark, 9_000, 500).drop("example_ts")
    source = tmp_path / "incoming"
    for part in range(3):
        rows.filter(F.col("id") % 3 == part).coalesce(1).write.mode("append").parquet(str(source))

    stream = spark.readStream.schema(rows.schema).option("maxFilesPerTrigger", 1).parquet(str(source))
    query = (
        pseudonymize(stream, "vin", domain="vin", url=service.url, api_key=service.admin)
        .writeStream.format("parquet")
        .option("path", str(tmp_path / "sink"))
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    assert query.awaitTermination(timeout=180)
    assert query.exception() is None
    micro_batches = [p for p in query.recentProgress if p["numInputRows"] > 0]
    assert len(micro_batches) == 3

    streamed = spark.read.parquet(str(tmp_path / "sink"))
    batch = pseudonymize(rows, "vin", domain="vin", url=service.url, api_key=service.admin)
    assert sorted(streamed.collect()) == sorted(batch.collect())


def test_a_stopped_service_fails_the_task_with_a_clear_error(spark, start_daemon, tmp_path: Path) -> None:
    from conftest import new_api_key, new_keyring

    keys = tmp_path / "api-keys.toml"
    key = new_api_key(keys, "job", "pseudonymize", "vin")
    daemon = start_daemon(["--keyring-file", str(new_keyring(tmp_path / "ring.toml")), "--api-keys-file", str(keys)])
    url = daemon.url
    daemon.stop()

    df = seed_rows(spark, 1_000, 100)
    out = pseudonymize(df, "vin", domain="vin", url=url, api_key=key, retries=1, timeout=2)
    with pytest.raises(Exception) as raised:
        out.write.parquet(str(tmp_path / "never.parquet"))
    message = str(raised.value)
    assert "ServiceUnavailableError" in message and "failed after 2 attempts" in message
    assert "WVWZZZ1JZ" not in message


def test_columns_are_checked_on_the_driver(spark, service) -> None:
    from pseudonym import ConfigurationError

    df = seed_rows(spark, 10, 10)
    with pytest.raises(ConfigurationError, match="'id' is bigint, not string"):
        pseudonymize(df, "id", domain="vin", url=service.url, api_key=service.admin)
    with pytest.raises(ConfigurationError, match="no column 'nope'"):
        pseudonymize(df, ["nope"], domain="vin", url=service.url, api_key=service.admin)
    # Found in review: a misspelled on_error made failures silent nulls, in every task.
    with pytest.raises(ValueError, match="on_error must be"):
        reidentify(df, "vin", domain="vin", on_error="nul", url=service.url, api_key=service.admin)  # type: ignore[arg-type]
