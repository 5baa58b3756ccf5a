"""Writes engine/tests/data/golden-seed.json: tokens of the replaced AWS sample service.

An implementation independent of ours (Python `cryptography` and `hmac`), written from that
service's documented format only:

    token = standard base64 (padded) of nonce(12) || AES-GCM-SIV(key, nonce, value, aad="")
    deterministic nonce = ASCII of lowercase hex HMAC-SHA256(nonce_key, value)[start:end]
    randomized nonce = 12 random bytes (fixed here, so the file is reproducible)

For deterministic vectors it also gives `rewrapped`: the native token (format 1, AES-SIV under
golden-v1.json's primary key version, in the compatible domain) that rewrapping must produce.

The file pins behaviour forever: run this only to create it, never to "fix" it.

    .venv/bin/python tests/python/make_seed_vectors.py > engine/tests/data/golden-seed.json
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV, AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ROOT = Path(__file__).resolve().parents[2]
COMPAT_DOMAIN = "default"

# TEST KEYS ONLY: bytes counting up from fixed starting points.
SECRETS = [
    {
        "encodedSecretKey": base64.b64encode(bytes(range(64, 96))).decode(),
        "encodedNonceKey": base64.b64encode(bytes(range(96, 104))).decode(),
        "nonceStrPos": 5,
        "nonceEndPos": 17,
    },
    {
        "encodedSecretKey": base64.b64encode(bytes(range(128, 144))).decode(),
        "encodedNonceKey": base64.b64encode(bytes(range(144, 160))).decode(),
        "nonceStrPos": 20,
        "nonceEndPos": 32,
    },
]
VALUES = ["", "WVWZZZ1JZXW000001", "sample1", "1234567", "zoë@example.org", "漢字 ✓", "🚗 ünïcødé"]


def seed_token(secret: dict, value: str, nonce: bytes | None) -> str:
    key = base64.b64decode(secret["encodedSecretKey"])
    data = value.encode("utf-8")
    if nonce is None:
        mac = hmac.new(base64.b64decode(secret["encodedNonceKey"]), data, hashlib.sha256)
        nonce = mac.hexdigest()[secret["nonceStrPos"] : secret["nonceEndPos"]].encode("ascii")
    return base64.b64encode(nonce + AESGCMSIV(key).encrypt(nonce, data, None)).decode()


def native_deterministic(value: str) -> str:
    golden = json.loads((ROOT / "engine/tests/data/golden-v1.json").read_text(encoding="utf-8"))
    ring = golden["keyring"]
    (secret,) = [k["secret"] for k in ring["keys"] if k["version"] == ring["primary"]]
    master = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
    key = HKDF(
        algorithm=hashes.SHA256(), length=64, salt=b"pseudonym/1", info=b"pseudonym/1 deterministic aes-siv"
    ).derive(master)
    sealed = AESSIV(key).encrypt(value.encode("utf-8"), [COMPAT_DOMAIN.encode()])
    return f"d{ring['primary']}." + base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()


def main() -> None:
    vectors = []
    for number, secret in enumerate(SECRETS):
        for index, value in enumerate(VALUES):
            vectors.append(
                {
                    "secret": number,
                    "mode": "deterministic",
                    "value": value,
                    "pseudonym": seed_token(secret, value, None),
                    "rewrapped": native_deterministic(value),
                }
            )
            fixed_nonce = bytes((number * 16 + index + k) % 256 for k in range(12))
            vectors.append(
                {
                    "secret": number,
                    "mode": "randomized",
                    "value": value,
                    "pseudonym": seed_token(secret, value, fixed_nonce),
                }
            )
    print(
        json.dumps(
            {
                "about": "Tokens of the replaced AWS sample service (AES-GCM-SIV, RFC 8452), made by "
                "tests/python/make_seed_vectors.py with Python cryptography. TEST KEYS ONLY. "
                "Deterministic ones must be reproduced exactly; randomized ones (fixed nonce) must "
                "re-identify; `rewrapped` is the native token (golden-v1.json keyring, domain "
                "`default`) rewrap must give. Never edit.",
                "compat_domain": COMPAT_DOMAIN,
                "secrets": SECRETS,
                "vectors": vectors,
            },
            indent=1,
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main()
