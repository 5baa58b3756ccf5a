"""The Spark benchmark script keeps working (a few thousand rows; the real run is documented)."""

from __future__ import annotations

import importlib.util

import pytest

from conftest import ROOT

pytest.importorskip("pyspark")


def test_the_spark_benchmark_runs_every_approach(spark, service, tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("spark_bench", ROOT / "python/bench/spark_bench.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.main([
        "--rows", "5000", "--cardinality", "500", "--partitions", "2",
        "--url", service.url, "--api-key", service.admin, "--json", str(tmp_path / "bench.json"),
    ])
    assert results["pseudonym_spark_values_per_s"] > 0 and results["seed_approach_values_per_s"] > 0
    assert results["sql_function_values_per_s"] > 0
    assert (tmp_path / "bench.json").exists()
