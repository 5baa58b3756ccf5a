"""An independent implementation (Python `cryptography`) reads our pseudonyms.

The golden vectors were computed with this same construction; here they are checked again, and
tokens made live by `pseudonymd` are opened with nothing but the keyring and the documented spec.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.request
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from conftest import ROOT, new_api_key

GOLDEN = json.loads((ROOT / "engine/tests/data/golden-v1.json").read_text(encoding="utf-8"))
SALT = b"pseudonym/1"


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def derive(master: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=SALT, info=info).derive(master)


def masters() -> dict[int, bytes]:
    return {key["version"]: unb64(key["secret"]) for key in GOLDEN["keyring"]["keys"]}


def open_token(token: str, domain: str, keys: dict[int, bytes]) -> str:
    head, payload = token.split(".", 1)
    mode, version = head[0], int(head[1:])
    data = unb64(payload)
    master = keys[version]
    if mode == "d":
        siv = AESSIV(derive(master, b"pseudonym/1 deterministic aes-siv", 64))
        return siv.decrypt(data, [domain.encode()]).decode()
    assert mode == "r", token
    siv = AESSIV(derive(master, b"pseudonym/1 randomized aes-siv", 64))
    nonce = data[:16]
    return siv.decrypt(data[16:], [domain.encode(), nonce]).decode()


def hash_token(value: str, domain: str, version: int, master: bytes) -> str:
    key = derive(master, b"pseudonym/1 hash hmac-sha256", 32)
    label = domain.encode()
    digest = hmac.new(key, len(label).to_bytes(2, "big") + label + value.encode(), hashlib.sha256)
    return f"h{version}." + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def test_golden_vectors_follow_the_documented_construction() -> None:
    keys = masters()
    assert len(GOLDEN["vectors"]) == 60
    for vector in GOLDEN["vectors"]:
        token, domain, value = vector["pseudonym"], vector["domain"], vector["value"]
        if vector["mode"] == "hash":
            assert hash_token(value, domain, vector["key_version"], keys[vector["key_version"]]) == token
        else:
            assert open_token(token, domain, keys) == value


def _post(url: str, key: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"x-api-key": key, "content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_cryptography_opens_tokens_made_by_the_service(tmp_path: Path, start_daemon) -> None:
    ring = GOLDEN["keyring"]
    text = f"primary = {ring['primary']}\n" + "".join(
        f"[[keys]]\nversion = {k['version']}\nsecret = \"{k['secret']}\"\n" for k in ring["keys"]
    )
    keys_file = tmp_path / "api-keys.toml"
    api_key = new_api_key(keys_file, "interop", "pseudonymize", "*")
    daemon = start_daemon(["--api-keys-file", str(keys_file)], env={"PSEUDONYM_KEYRING": text})

    values = ["WVWZZZ1JZXW123456", "", "zoë@example.org", "漢字 ✓"]
    for mode in ("deterministic", "randomized"):
        answer = _post(f"{daemon.url}/v1/pseudonymize", api_key,
                       {"domain": "crm.email", "mode": mode, "values": values})
        assert answer["key_version"] == 2
        opened = [open_token(token, "crm.email", masters()) for token in answer["pseudonyms"]]
        assert opened == values
    answer = _post(f"{daemon.url}/v1/pseudonymize", api_key,
                   {"domain": "crm.email", "mode": "hash", "values": values})
    assert answer["pseudonyms"] == [hash_token(v, "crm.email", 2, masters()[2]) for v in values]
    assert not any(v and v in "".join(daemon.output) for v in values)
