"""Batch job: Parquet in, pseudonymized Parquet out (the seed's EMR batch job, at Arrow speed).

    PSEUDONYM_URL=http://127.0.0.1:8080 PSEUDONYM_API_KEY=$(cat .pseudonym-dev/dev-api-key) \\
        python python/examples/batch.py input.parquet output.parquet --columns vin

Executors read PSEUDONYM_URL and PSEUDONYM_API_KEY from their environment, so the key never
travels inside the job's pickled code.
"""

from __future__ import annotations

import argparse

from pyspark.sql import SparkSession

from pseudonym.spark import pseudonymize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", help="Parquet file or folder to read")
    parser.add_argument("output", help="Parquet folder to write (overwritten)")
    parser.add_argument("--columns", nargs="+", default=["vin"], help="string columns to pseudonymize")
    parser.add_argument("--domain", default="vin", help="domain of the columns")
    parser.add_argument("--mode", default="deterministic", choices=["deterministic", "randomized", "hash"])
    parser.add_argument("--partitions", type=int, default=0, help="repartition first (0: keep)")
    args = parser.parse_args()

    spark = SparkSession.builder.appName("pseudonym-batch").getOrCreate()
    df = spark.read.parquet(args.input)
    if args.partitions:
        df = df.repartition(args.partitions)
    out = pseudonymize(df, args.columns, domain=args.domain, mode=args.mode)
    out.write.mode("overwrite").parquet(args.output)
    spark.stop()


if __name__ == "__main__":
    main()
