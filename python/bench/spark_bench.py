"""Values/s through `pseudonym.spark` next to the seed's approach, same service, same run.

Three ways over the same Parquet file of VINs, each written to Spark's `noop` sink: the SQL
function (`register`, an Arrow UDF), the DataFrame function (`pseudonymize`, `mapInArrow`), and
the seed's approach.

The seed (an AWS Lambda called from PySpark on EMR) ran `rdd.mapPartitions` over Python `Row`
objects and sent one blocking request per 900-row chunk (deduplicated within the chunk only).
That approach is written afresh here (`seed`), generously: it keeps one HTTP connection per
partition instead of opening one per request. Both run in `local[2]` against the same
`pseudonymd`, which this script starts from a dist build unless `--url` is given.

    cargo build --profile dist -p pseudonym-service
    .venv/bin/python python/bench/spark_bench.py --rows 10000000 --json bench.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[2]


def seed_partition(url: str, api_key: str, chunk: int):  # type: ignore[no-untyped-def]
    """The seed's per-partition function: Python rows, one blocking request per chunk."""

    def run(rows):  # type: ignore[no-untyped-def]
        from pyspark.sql import Row

        target = urlparse(url)
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        headers = {"x-api-key": api_key, "content-type": "application/json"}

        def flush(buffer):  # type: ignore[no-untyped-def]
            unique = list({row.vin for row in buffer if row.vin is not None})
            connection.request("POST", "/pseudonymization?deterministic=true",
                               json.dumps({"identifiers": unique}), headers)
            answer = connection.getresponse()
            body = json.loads(answer.read())
            if answer.status != 200:
                raise RuntimeError(f"HTTP {answer.status}")
            mapping = dict(zip(unique, body["pseudonyms"]))
            for row in buffer:
                values = row.asDict()
                values["vin"] = mapping.get(row.vin)
                yield Row(**values)

        buffer = []
        for row in rows:
            buffer.append(row)
            if len(buffer) == chunk:
                yield from flush(buffer)
                buffer = []
        if buffer:
            yield from flush(buffer)
        connection.close()

    return run


def start_service(folder: Path) -> tuple[subprocess.Popen[str], str, str]:
    binary = Path(os.environ.get("PSEUDONYMD", ROOT / "target" / "dist" / "pseudonymd"))
    if not binary.exists():
        sys.exit(f"{binary} is missing: run `cargo build --profile dist -p pseudonym-service`")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSEUDONYM_")}
    ready = folder / "ready.json"
    process = subprocess.Popen(
        [str(binary), "--listen", "127.0.0.1:0", "--ready-file", str(ready),
         "--data-dir", str(folder), "--compat-domain", "vin"],
        stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL, text=True, env=env,
    )
    deadline = time.monotonic() + 20
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            sys.exit("pseudonymd did not start")
        time.sleep(0.05)
    url = json.loads(ready.read_text())["url"]
    return process, url, (folder / "dev-api-key").read_text()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--cardinality", type=int, default=1_000_000, help="distinct VINs")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--arrow-batch", type=int, default=10_000,
                        help="spark.sql.execution.arrow.maxRecordsPerBatch (Spark's default: 10,000)")
    parser.add_argument("--url", help="a running pseudonymd (default: start one)")
    parser.add_argument("--api-key", default=os.environ.get("PSEUDONYM_API_KEY"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from pseudonym.spark import pseudonymize, register

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    service = None
    with tempfile.TemporaryDirectory() as folder:
        if args.url:
            url, api_key = args.url, args.api_key
        else:
            service, url, api_key = start_service(Path(folder) / "service")
        existing = SparkSession.getActiveSession()
        spark = (
            SparkSession.builder.master("local[2]").appName("pseudonym-bench")
            .config("spark.ui.enabled", "false").config("spark.driver.memory", "4g")
            .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(args.arrow_batch))
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
        try:
            source = str(Path(folder) / "vins.parquet")
            spark.range(args.rows, numPartitions=args.partitions).select(
                (F.col("id") % 20).cast("string").alias("dept_id"),
                F.format_string("WVWZZZ1JZ%08d", (F.col("id") * 7919) % args.cardinality).alias("vin"),
                F.current_timestamp().alias("example_ts"),
            ).write.parquet(source)
            df = spark.read.parquet(source)
            df.write.format("noop").mode("overwrite").save()  # warm the cache and the JVM

            def timed(frame) -> float:  # type: ignore[no-untyped-def]
                started = time.perf_counter()
                frame.write.format("noop").mode("overwrite").save()
                return args.rows / (time.perf_counter() - started)

            register(spark, url=url, api_key=api_key, prefix="bench_")
            df.createOrReplaceTempView("bench_vins")
            sql = timed(spark.sql(
                "SELECT dept_id, bench_pseudonymize(vin, 'vin') AS vin, example_ts FROM bench_vins"
            ))
            ours = timed(pseudonymize(df, "vin", domain="vin", url=url, api_key=api_key))
            seed = timed(df.rdd.mapPartitions(seed_partition(url, api_key, 900)).toDF(df.schema))
        finally:
            if existing is None:  # a session of its own; one it was handed stays up
                spark.stop()
            if service is not None:
                service.terminate()
                service.wait()
    results = {"rows": args.rows, "cardinality": args.cardinality, "sql_function_values_per_s": sql,
               "pseudonym_spark_values_per_s": ours, "seed_approach_values_per_s": seed,
               "ratio": ours / seed, "sql_ratio": sql / seed}
    print(f"SQL function (Arrow UDF)     : {sql:>12,.0f} values/s  {sql / seed:>5.1f}x the seed")
    print(f"pseudonym.spark (mapInArrow) : {ours:>12,.0f} values/s  {ours / seed:>5.1f}x the seed")
    print(f"seed approach                : {seed:>12,.0f} values/s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
