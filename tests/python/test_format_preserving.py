"""Format-preserving pseudonyms against a live `pseudonymd`: the golden vectors, an independent
FF1 (`ff1_reference`, written from NIST SP 800-38G) on values the service has never seen, per-item
errors, rotation by rewrap, and round trips and joins through Spark SQL, DuckDB and Polars."""

from __future__ import annotations

import base64
import random

import pyarrow as pa
import pytest

import ff1_reference
from pseudonym import Client, PseudonymizationError

NIST_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3cef4359d8d580aa4f7f036d6f04fc6a94")


def numerals(text: str) -> list[int]:
    return [int(c, 36) for c in text]


def test_the_reference_reproduces_the_standards_samples() -> None:
    assert ff1_reference.encrypt(NIST_KEY, 10, b"", numerals("0123456789")) == numerals("6657667009")
    tweak = bytes.fromhex("39383736353433323130")
    assert ff1_reference.encrypt(NIST_KEY, 10, tweak, numerals("0123456789")) == numerals("1001623463")
    tweak = bytes.fromhex("3737373770717273373737")
    made = ff1_reference.encrypt(NIST_KEY, 36, tweak, numerals("0123456789abcdefghi"))
    assert made == numerals("xs8a0azh2avyalyzuwd")
    assert ff1_reference.decrypt(NIST_KEY, 36, tweak, made) == numerals("0123456789abcdefghi")


def _alphabet(spec: dict) -> str:
    return spec.get("characters") or ff1_reference.ALPHABETS[spec["alphabet"]]


def _master(fp_service, version: int) -> bytes:
    secret = next(k["secret"] for k in fp_service.golden["keyring"]["keys"] if k["version"] == version)
    return base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))


def test_golden_vectors_follow_the_documented_construction(fp_service) -> None:
    golden = fp_service.golden
    for vector in golden["vectors"]:
        master = _master(fp_service, vector["key_version"])
        alphabet = _alphabet(golden["formats"][vector["domain"]])
        assert ff1_reference.pseudonym(master, vector["domain"], alphabet, vector["value"]) == vector["pseudonym"]


def test_the_service_answers_the_golden_vectors_and_opens_them(fp_service) -> None:
    client = Client(fp_service.url, fp_service.admin)
    for domain in fp_service.golden["formats"]:
        vectors = [v for v in fp_service.golden["vectors"] if v["domain"] == domain and v["key_version"] == 1]
        values = [v["value"] for v in vectors] + [None]
        made = client.pseudonymize(domain, values, "format-preserving")
        assert made == [v["pseudonym"] for v in vectors] + [None]
        assert client.reidentify(domain, made) == values
        arrow = client.pseudonymize(domain, pa.array(values), "format-preserving")
        assert arrow.to_pylist() == made


def test_values_the_service_never_saw_match_the_independent_ff1(fp_service) -> None:
    rng = random.Random(20261205)
    client = Client(fp_service.url, fp_service.admin)
    master = _master(fp_service, 1)
    for domain, spec in fp_service.golden["formats"].items():
        alphabet = _alphabet(spec)
        kept = "" if spec["outside"] == "refuse" else "-+ ./"
        values = ["".join(rng.choice(alphabet + kept) for _ in range(rng.randint(12, 30))) for _ in range(40)]
        values = [v for v in values if sum(c in alphabet for c in v) >= 12]
        made = client.pseudonymize(domain, values, "format-preserving")
        assert made == [ff1_reference.pseudonym(master, domain, alphabet, v) for v in values], domain


def test_errors_come_per_row_without_the_value(fp_service) -> None:
    client = Client(fp_service.url, fp_service.admin)
    for case in fp_service.golden["errors"]:
        values = ["123456789", case["value"], None]
        answers, errors = client.pseudonymize_with_errors(case["domain"], values, "format-preserving")
        assert errors == [(1, case["code"])]
        assert answers[0] is not None and answers[1:] == [None, None]
        with pytest.raises(PseudonymizationError) as raised:
            client.pseudonymize(case["domain"], values, "format-preserving")
        assert raised.value.errors == [(1, case["code"])]
        if len(case["value"]) > 3:
            assert case["value"] not in str(raised.value)
        nulls = client.pseudonymize(case["domain"], values, "format-preserving", on_error="null")
        assert nulls[1] is None


def test_rewrap_moves_pinned_pseudonyms_to_the_primary_version(fp_service) -> None:
    client = Client(fp_service.url, fp_service.admin)
    golden = fp_service.golden["vectors"]
    old = [v["pseudonym"] for v in golden if v["domain"] == "vin" and v["key_version"] == 1]
    new = [v["pseudonym"] for v in golden if v["domain"] == "vin" and v["key_version"] == 2]
    assert client.rewrap("vin", old) == new


def test_spark_sql_duckdb_and_polars_round_trip_and_join(fp_service, spark) -> None:
    import duckdb
    import polars as pl

    import pseudonym.duckdb
    import pseudonym.polars  # noqa: F401  (registers the namespace)
    from pseudonym.spark import register

    phones = [None if i % 9 == 4 else f"+49 30 {1000000 + (i * 7919) % 800}" for i in range(3_000)]
    orders = [f"+49 30 {1000000 + (i * 31) % 1200}" for i in range(1_000)]

    register(spark, url=fp_service.url, api_key=fp_service.admin)
    spark.createDataFrame([(p,) for p in phones], "phone string").createOrReplaceTempView("fp_people")
    spark.createDataFrame([(p,) for p in orders], "phone string").createOrReplaceTempView("fp_orders")
    rows = spark.sql(
        "SELECT phone, pseudonymize(phone, 'phone', 'format-preserving') AS p FROM fp_people"
    ).collect()
    def shape(text: str) -> str:
        return "".join("_" if c.isdigit() else c for c in text)

    assert all((r.p is None) == (r.phone is None) for r in rows)
    assert all(r.p is None or shape(r.p) == shape(r.phone) for r in rows)
    spark_pseudonyms = {r.phone: r.p for r in rows}
    back = spark.sql(
        "SELECT count(*) FROM (SELECT phone, reidentify(pseudonymize(phone, 'phone', 'format-preserving'), 'phone') AS b "
        "FROM fp_people) WHERE b IS DISTINCT FROM phone"
    ).first()[0]
    assert back == 0
    plain = spark.sql("SELECT count(*) FROM fp_people JOIN fp_orders USING (phone)").first()[0]
    joined = spark.sql(
        "WITH a AS (SELECT pseudonymize(phone, 'phone', 'format-preserving') AS p FROM fp_people), "
        "b AS (SELECT pseudonymize(phone, 'phone', 'format-preserving') AS p FROM fp_orders) "
        "SELECT count(*) FROM a JOIN b ON a.p = b.p"
    ).first()[0]
    assert plain > 0 and joined == plain

    con = duckdb.connect()
    pseudonym.duckdb.register(con, url=fp_service.url, api_key=fp_service.admin)
    con.execute("CREATE TABLE people AS SELECT * FROM (VALUES " + ", ".join(
        "(NULL)" if p is None else f"('{p}')" for p in phones[:500]) + ") v(phone)")
    wrong = con.execute(
        "SELECT count(*) FROM people WHERE reidentify(pseudonymize(phone, 'phone', 'format-preserving'), 'phone') "
        "IS DISTINCT FROM phone"
    ).fetchone()
    assert wrong == (0,)
    duck = con.execute("SELECT pseudonymize(phone, 'phone', 'format-preserving') FROM people").fetchall()
    assert [r[0] for r in duck] == [spark_pseudonyms[p] for p in phones[:500]]

    frame = pl.DataFrame({"phone": phones[:500]})
    out = frame.with_columns(p=pl.col("phone").pseudonym.pseudonymize(
        "phone", "format-preserving", url=fp_service.url, api_key=fp_service.admin))
    assert out["p"].to_list() == [spark_pseudonyms[p] for p in phones[:500]]
    back_frame = out.with_columns(b=pl.col("p").pseudonym.reidentify(
        "phone", url=fp_service.url, api_key=fp_service.admin))
    assert back_frame["b"].to_list() == phones[:500]
