"""pandas `Series` through `Client`: in and out with their index and name, against a real service."""

from __future__ import annotations

import pytest

pd = pytest.importorskip("pandas")

from pseudonym import Client, ReidentificationError  # noqa: E402

EMAILS = [None if i % 7 == 3 else f"user{i % 500}@example.com" for i in range(3_000)]


@pytest.fixture(scope="module")
def client(service) -> Client:
    return Client(service.url, api_key=service.admin)


def test_a_series_round_trips_with_its_index_name_and_nulls(client: Client) -> None:
    emails = pd.Series(EMAILS, index=range(100, 100 + len(EMAILS)), name="email", dtype=object)
    tokens = client.pseudonymize("crm.email", emails)
    assert isinstance(tokens, pd.Series)
    assert tokens.name == "email" and list(tokens.index) == list(emails.index)
    assert tokens.tolist() == client.pseudonymize("crm.email", EMAILS)
    back = client.reidentify("crm.email", tokens)
    assert back.tolist() == EMAILS and back.dtype == object
    assert client.rewrap("crm.email", tokens).tolist() == tokens.tolist()


def test_a_join_on_pseudonyms_matches_the_join_on_values(client: Client) -> None:
    people = pd.DataFrame({"email": EMAILS})
    orders = pd.DataFrame({"email": [f"user{i % 800}@example.com" for i in range(1_000)]})
    plain = len(people.merge(orders, on="email"))
    pseudo = len(pd.DataFrame({"e": client.pseudonymize("crm.email", people.email)}).merge(
        pd.DataFrame({"e": client.pseudonymize("crm.email", orders.email)}), on="e"))
    assert plain > 0 and pseudo == plain


def test_numbers_go_by_their_canonical_text(client: Client) -> None:
    ids = pd.Series([42, None, -7], dtype="Int64")
    tokens = client.pseudonymize("ids", ids)
    assert tokens.tolist()[1] is None or pd.isna(tokens.tolist()[1])
    assert [tokens[0], tokens[2]] == client.pseudonymize("ids", ["42", "-7"])


def test_a_failed_row_names_the_count_and_code_but_no_value(client: Client) -> None:
    tokens = pd.Series(["d1.forged-user1@example.com", None, "nope"], dtype=object)
    with pytest.raises(ReidentificationError) as raised:
        client.reidentify("crm.email", tokens)
    assert raised.value.errors == [(0, "invalid_token"), (2, "invalid_token")]
    assert "2 pseudonym(s)" in str(raised.value) and "user1" not in str(raised.value)
    assert client.reidentify("crm.email", tokens, on_error="null").tolist() == [None, None, None]
