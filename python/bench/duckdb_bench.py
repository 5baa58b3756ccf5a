"""Rows/s of `pseudonymize(vin, 'vin')` in DuckDB next to DuckDB's built-in `sha256(vin)`.

Both run `SELECT max(f(vin)) FROM 'vins.parquet'` over the same file, built-in first (it also
warms the page cache), against a `pseudonymd` this script starts from a dist build unless
`--url` is given, all on the same machine.

    cargo build --profile dist -p pseudonym-service
    .venv/bin/python python/bench/duckdb_bench.py --rows 10000000 --cardinality 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from spark_bench import start_service


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--cardinality", type=int, default=1_000_000, help="distinct VINs")
    parser.add_argument("--cache-size", type=int, default=0, help="client cache (pseudonyms)")
    parser.add_argument("--url", help="a running pseudonymd (default: start one)")
    parser.add_argument("--api-key", default=os.environ.get("PSEUDONYM_API_KEY"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    import duckdb

    import pseudonym.duckdb

    service = None
    with tempfile.TemporaryDirectory() as folder:
        if args.url:
            url, api_key = args.url, args.api_key
        else:
            service, url, api_key = start_service(Path(folder) / "service")
        try:
            con = duckdb.connect()
            pseudonym.duckdb.register(con, url=url, api_key=api_key, cache_size=args.cache_size)
            source = Path(folder) / "vins.parquet"
            con.execute(
                f"COPY (SELECT printf('WVWZZZ1JZ%08d', (i * 7919) % {args.cardinality}) AS vin "
                f"FROM range({args.rows}) t(i)) TO '{source}' (FORMAT parquet)"
            )

            def rows_per_s(function: str) -> float:
                started = time.perf_counter()
                con.execute(f"SELECT max({function}) FROM '{source}'").fetchall()
                return args.rows / (time.perf_counter() - started)

            builtin = rows_per_s("sha256(vin)")
            ours = rows_per_s("pseudonymize(vin, 'vin')")
        finally:
            if service is not None:
                service.terminate()
                service.wait()
    results = {"rows": args.rows, "cardinality": args.cardinality, "cache_size": args.cache_size,
               "sha256_rows_per_s": builtin, "pseudonymize_rows_per_s": ours,
               "time_ratio": builtin / ours}
    print(f"sha256(vin)              : {builtin:>12,.0f} rows/s")
    print(f"pseudonymize(vin, 'vin') : {ours:>12,.0f} rows/s  ({builtin / ours:.1f}x the built-in's time)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
