"""The `pseudonym` namespace of Polars expressions against a real pseudonymd on loopback."""

from __future__ import annotations

import datetime
from decimal import Decimal
from pathlib import Path

import pytest

pl = pytest.importorskip("polars")

import pseudonym.polars  # noqa: E402, F401  (registers the namespace)
from conftest import new_api_key, new_keyring  # noqa: E402
from pseudonym import Client, ServiceUnavailableError  # noqa: E402

EMAILS = [None if i % 7 == 3 else f"user{i % 500}@example.com" for i in range(6_000)]


def test_round_trip_keeps_nulls_and_order_eager_and_lazy(service, tmp_path: Path) -> None:
    opts = {"url": service.url, "api_key": service.admin}
    people = pl.DataFrame({"id": range(len(EMAILS)), "email": EMAILS})
    people.write_parquet(tmp_path / "people.parquet")
    out = (
        pl.scan_parquet(tmp_path / "people.parquet")
        .with_columns(token=pl.col("email").pseudonym.pseudonymize("crm.email", **opts))
        .with_columns(back=pl.col("token").pseudonym.reidentify("crm.email", **opts))
        .collect()
    )
    assert out["id"].to_list() == list(range(len(EMAILS)))
    assert out["back"].to_list() == EMAILS
    assert out["token"].to_list() == Client(service.url, service.admin).pseudonymize("crm.email", EMAILS)
    again = people.select(
        pl.col("email").pseudonym.pseudonymize("crm.email", "randomized", **opts)
        .pseudonym.rewrap("crm.email", **opts)
        .pseudonym.reidentify("crm.email", **opts)
    )
    assert again["email"].to_list() == EMAILS


def test_a_join_on_pseudonyms_matches_the_join_on_values(service) -> None:
    opts = {"url": service.url, "api_key": service.admin}
    people = pl.DataFrame({"email": EMAILS}).lazy()
    orders = pl.DataFrame({"email": [f"user{i % 800}@example.com" for i in range(2_000)]}).lazy()
    plain = people.join(orders, on="email").collect().height
    token = pl.col("email").pseudonym.pseudonymize("crm.email", **opts)
    joined = people.select(token).join(orders.select(token), on="email").collect().height
    assert plain > 0 and joined == plain


def test_numbers_and_dates_are_pseudonymized_by_their_canonical_text(service) -> None:
    opts = {"url": service.url, "api_key": service.admin}
    frame = pl.DataFrame({
        "id": [42, None],
        "amount": pl.Series([Decimal("12.50"), None], dtype=pl.Decimal(10, 2)),
        "day": [datetime.date(2024, 1, 31), None],
    })
    out = frame.select(
        pl.col(name).pseudonym.pseudonymize("ids", **opts).pseudonym.reidentify("ids", **opts)
        for name in frame.columns
    )
    assert out.rows() == [("42", "12.50", "2024-01-31"), (None, None, None)]


def test_a_failed_row_names_the_count_and_code_but_no_value(service) -> None:
    opts = {"url": service.url, "api_key": service.admin}
    frame = pl.DataFrame({"t": ["d1.forged-user1@example.com", None, "nope"]})
    with pytest.raises(Exception) as raised:
        frame.select(pl.col("t").pseudonym.reidentify("crm.email", **opts))
    message = str(raised.value)
    assert "2 pseudonym(s) could not be re-identified" in message and "invalid_token" in message
    assert "user1@example.com" not in message
    kept = frame.select(pl.col("t").pseudonym.reidentify("crm.email", on_error="null", **opts))
    assert kept["t"].to_list() == [None, None, None]


def test_a_stopped_service_fails_the_query_with_our_error(start_daemon, tmp_path: Path) -> None:
    keys = tmp_path / "api-keys.toml"
    key = new_api_key(keys, "job", "pseudonymize", "vin")
    daemon = start_daemon(["--keyring-file", str(new_keyring(tmp_path / "ring.toml")), "--api-keys-file", str(keys)])
    url = daemon.url
    daemon.stop()
    frame = pl.DataFrame({"vin": ["WVWZZZ1JZXW000001"]})
    with pytest.raises(Exception) as raised:
        frame.select(pl.col("vin").pseudonym.pseudonymize("vin", url=url, api_key=key, retries=1, timeout=2))
    # Polars raises our own class again, with its context added to the message.
    assert isinstance(raised.value, ServiceUnavailableError)
    message = str(raised.value)
    assert "failed after 2 attempts" in message and "WVWZZZ1JZXW000001" not in message
