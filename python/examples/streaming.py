"""Structured Streaming job: Parquet files arriving in a folder, pseudonymized, to a Parquet sink.

    PSEUDONYM_URL=http://127.0.0.1:8080 PSEUDONYM_API_KEY=$(cat .pseudonym-dev/dev-api-key) \\
        python python/examples/streaming.py incoming/ out/ checkpoint/ --available-now

Each micro-batch goes through the service as a few large deduplicated requests per partition;
the checkpoint makes the query resume where it stopped. Without --available-now the query runs
until stopped, as the seed's Kinesis job did (use a `rate` or Kafka source the same way).
"""

from __future__ import annotations

import argparse

from pyspark.sql import SparkSession

from pseudonym.spark import pseudonymize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="folder that Parquet files arrive in")
    parser.add_argument("sink", help="Parquet folder to append to")
    parser.add_argument("checkpoint", help="checkpoint folder of the query")
    parser.add_argument("--columns", nargs="+", default=["vin"])
    parser.add_argument("--domain", default="vin")
    parser.add_argument("--files-per-trigger", type=int, default=1)
    parser.add_argument("--available-now", action="store_true", help="process what is there, then stop")
    parser.add_argument("--interval", default="60 seconds", help="micro-batch interval otherwise")
    args = parser.parse_args()

    spark = SparkSession.builder.appName("pseudonym-streaming").getOrCreate()
    schema = spark.read.parquet(args.source).schema
    stream = (
        spark.readStream.schema(schema)
        .option("maxFilesPerTrigger", args.files_per_trigger)
        .parquet(args.source)
    )
    out = pseudonymize(stream, args.columns, domain=args.domain)
    writer = out.writeStream.format("parquet").option("path", args.sink).option(
        "checkpointLocation", args.checkpoint
    )
    writer = writer.trigger(availableNow=True) if args.available_now else writer.trigger(processingTime=args.interval)
    writer.start().awaitTermination()
    spark.stop()


if __name__ == "__main__":
    main()
