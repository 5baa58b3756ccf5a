"""Migrating from the AWS sample against a live `pseudonymd`: its key imported, its callers'
requests as they are written, its tokens read and made again byte for byte, and rewrapped into
ours. Its token format is checked here with Python `cryptography`, independently of our code."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

from conftest import PSEUDONYMD, MigrationService, golden_keyring_text, new_api_key
from pseudonym import Client, RewrapError
from test_interop import masters, open_token


def post(url: str, key: str, body: dict) -> dict:
    """A POST as the replaced service's jobs send it: JSON body, `x-api-key`."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(),
        headers={"x-api-key": key, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def open_seed_token(token: str, secret: dict) -> tuple[str, str]:
    """The value and mode of one of the replaced service's tokens, from its documented format."""
    raw = base64.b64decode(token, validate=True)
    nonce, sealed = raw[:12], raw[12:]
    value = AESGCMSIV(base64.b64decode(secret["encodedSecretKey"])).decrypt(nonce, sealed, None)
    mac = hmac.new(base64.b64decode(secret["encodedNonceKey"]), value, hashlib.sha256).hexdigest()
    expected = mac[secret["nonceStrPos"]:secret["nonceEndPos"]].encode("ascii")
    return value.decode("utf-8"), "deterministic" if nonce == expected else "randomized"


def test_keygen_imports_the_secret_into_a_new_private_keyring(tmp_path: Path) -> None:
    seed = json.loads((Path(__file__).parents[2] / "engine/tests/data/golden-seed.json").read_text())
    secret_file = tmp_path / "secret.json"
    secret_file.write_text(json.dumps(seed["secrets"][0]))
    keyring = tmp_path / "new-keyring.toml"

    def keygen(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(PSEUDONYMD), "keygen", "--keyring-file", str(keyring), *args],
                              capture_output=True, text=True, timeout=30)

    done = keygen("--import-lambda-secret", str(secret_file))
    assert done.returncode == 0, done.stderr
    assert "new key version 1" in done.stderr
    assert keyring.stat().st_mode & 0o777 == 0o600
    text = keyring.read_text()
    assert "[seed_key]" in text and "version = 1" in text
    for field in ("encodedSecretKey", "encodedNonceKey"):
        assert seed["secrets"][0][field] not in done.stdout + done.stderr

    # The deprecated spelling of the flag, still read, with a warning.
    again = keygen("--import-seed-secret", str(secret_file))
    assert again.returncode == 0, "the same key again"
    assert "--import-seed-secret is deprecated" in again.stderr
    other = tmp_path / "other.json"
    other.write_text(json.dumps(seed["secrets"][1]))
    refused = keygen("--import-lambda-secret", str(other))
    assert refused.returncode != 0 and "retire it first" in refused.stderr
    assert seed["secrets"][1]["encodedSecretKey"] not in refused.stderr

    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({**seed["secrets"][1], "nonceEndPos": 99}))
    refused = keygen("--import-lambda-secret", str(broken))
    assert refused.returncode != 0 and "nonceEndPos" in refused.stderr

    assert keygen("--retire-lambda").returncode == 0
    assert "[seed_key]" not in keyring.read_text()


def test_the_replaced_services_jobs_run_unchanged(migration_service: MigrationService) -> None:
    url, key = migration_service.url, migration_service.admin
    golden = migration_service.vectors("deterministic")
    values = [v["value"] for v in golden]
    # The PySpark batch, streaming and Glue jobs: the URL from their YAML (stage and action),
    # `?deterministic=True` from a Python bool, distinct values, `reidentifications` back.
    endpoint = f"{url}/Dev/pseudonymization"
    assert endpoint.split("/")[4] == "pseudonymization"  # how the streaming job picks its action
    made = post(f"{endpoint}?deterministic=True", key, {"identifiers": values}).get("pseudonyms")
    assert made == [v["pseudonym"] for v in golden], "byte for byte what the old service made"
    back = post(f"{url}/Dev/reidentification?deterministic=True", key,
                {"reidentifications": made}).get("identifiers")
    assert back == values
    # The Athena UDF: EP_URL + "/Dev/..." with the SQL argument as a string.
    athena = post(f"{url}/Dev/pseudonymization?deterministic=true", key, {"identifiers": values})
    assert athena["pseudonyms"] == made
    assert post(f"{url}/Dev/reidentification", key, {"pseudonyms": made})["identifiers"] == values
    # Randomized, as the old service made it: our independent reading opens it.
    secret = migration_service.secret
    randomized = post(f"{endpoint}?deterministic=False", key, {"identifiers": values})["pseudonyms"]
    assert [open_seed_token(t, secret) for t in randomized] == [(v, "randomized") for v in values]


def test_its_tokens_reidentify_and_rewrap_to_ours(migration_service: MigrationService) -> None:
    check_reidentify_and_rewrap(migration_service)


def test_a_16_byte_key_works_the_same(tmp_path: Path) -> None:
    service = MigrationService(tmp_path, number=1)
    try:
        golden = service.vectors("deterministic")
        made = post(f"{service.url}/Dev/pseudonymization?deterministic=True", service.admin,
                    {"identifiers": [v["value"] for v in golden]})["pseudonyms"]
        assert made == [v["pseudonym"] for v in golden]
        check_reidentify_and_rewrap(service)
    finally:
        service.daemon.stop()


def check_reidentify_and_rewrap(migration_service: MigrationService) -> None:
    client = Client(migration_service.url, api_key=migration_service.admin, batch_size=5)
    golden = migration_service.vectors()
    tokens = [v["pseudonym"] for v in golden]
    secret = migration_service.secret
    assert [open_seed_token(t, secret) for t in tokens] == [(v["value"], v["mode"]) for v in golden]

    assert client.reidentify("default", tokens) == [v["value"] for v in golden]
    rewrapped = client.rewrap("default", tokens + [None])
    assert rewrapped[-1] is None
    for vector, new in zip(golden, rewrapped):
        if vector["mode"] == "deterministic":
            assert new == vector["rewrapped"]
        assert open_token(new, "default", masters()) == vector["value"], "native format 1"

    altered = tokens[2][:10] + ("B" if tokens[2][10] == "A" else "A") + tokens[2][11:]
    with pytest.raises(RewrapError) as failed:
        client.rewrap("default", [tokens[0], altered])
    assert failed.value.errors == [(1, "invalid_token")]
    assert client.rewrap("default", [altered, tokens[0]], on_error="null")[0] is None
    values, errors = client.reidentify_with_errors("vin", tokens[:1])
    assert (values, errors) == ([None], [(0, "invalid_token")]), "only in the compat domain"


def test_without_the_key_seed_tokens_are_refused_at_start(tmp_path: Path) -> None:
    keyring = tmp_path / "keyring.toml"
    keyring.write_text(golden_keyring_text())
    keyring.chmod(0o600)
    keys_file = tmp_path / "api-keys.toml"
    new_api_key(keys_file, "x", "pseudonymize", "*")
    done = subprocess.run(
        [str(PSEUDONYMD), "--listen", "127.0.0.1:0", "--keyring-file", str(keyring),
         "--api-keys-file", str(keys_file), "--compat-tokens", "lambda"],
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode != 0
    assert "--import-lambda-secret" in done.stderr
