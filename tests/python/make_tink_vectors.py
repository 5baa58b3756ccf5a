"""Writes engine/tests/data/golden-tink.json: Tink-format pseudonyms of the golden keyring
(engine/tests/data/golden-v1.json) and each domain's keyset, made with PyPI's `tink` from
keys derived here with `cryptography`'s HKDF, as the README documents them: nothing of ours.

The file pins behaviour forever: run this only to create it, never to "fix" it.

    .venv/bin/python tests/python/make_tink_vectors.py > engine/tests/data/golden-tink.json
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import tink
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
from tink import daead, secret_key_access
from tink.proto import aes_siv_pb2, tink_pb2

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = json.loads((ROOT / "engine/tests/data/golden-v1.json").read_text(encoding="utf-8"))
TYPE_URL = "type.googleapis.com/google.crypto.tink.AesSivKey"

DOMAINS = ["vin", "crm.email"]
VALUES = ["", "WVWZZZ1JZXW123456", "jane.doe@example.com", "Zoë Ärger-Straße 7, 東京 🚗",
          "x" * 300]


def tink_key(master: bytes, domain: str) -> bytes:
    """A key version's Tink key of `domain`: HKDF-SHA256 (salt `pseudonym/1`) to the version's
    Tink root, then HKDF-Expand of the root with the domain."""
    root = HKDF(hashes.SHA256(), 32, salt=b"pseudonym/1", info=b"pseudonym/1 tink root").derive(master)
    return HKDFExpand(hashes.SHA256(), 64, b"pseudonym/1 tink aes-siv\0" + domain.encode()).derive(root)


def keyset(keys: dict[int, bytes], primary: int) -> tink.KeysetHandle:
    """A Tink keyset of these AES-SIV keys, each key id its version."""
    proto = tink_pb2.Keyset(primary_key_id=primary)
    for version, key in sorted(keys.items()):
        entry = proto.key.add()
        entry.key_data.type_url = TYPE_URL
        entry.key_data.value = aes_siv_pb2.AesSivKey(key_value=key).SerializeToString()
        entry.key_data.key_material_type = tink_pb2.KeyData.SYMMETRIC
        entry.status = tink_pb2.ENABLED
        entry.key_id = version
        entry.output_prefix_type = tink_pb2.TINK
    return tink.proto_keyset_format.parse(proto.SerializeToString(), secret_key_access.TOKEN)


def main() -> None:
    daead.register()
    masters = {k["version"]: base64.urlsafe_b64decode(k["secret"] + "=" * (-len(k["secret"]) % 4))
               for k in GOLDEN["keyring"]["keys"]}
    primary = GOLDEN["keyring"]["primary"]
    vectors, keysets = [], {}
    for domain in DOMAINS:
        keys = {version: tink_key(master, domain) for version, master in masters.items()}
        keysets[domain] = json.loads(tink.json_proto_keyset_format.serialize(
            keyset(keys, primary), secret_key_access.TOKEN))
        for version in sorted(keys):
            # Tink encrypts with the primary key: one keyset per version, that one primary.
            cipher = keyset(keys, version).primitive(daead.DeterministicAead)
            for value in VALUES:
                token = cipher.encrypt_deterministically(value.encode(), domain.encode())
                assert cipher.decrypt_deterministically(token, domain.encode()) == value.encode()
                vectors.append({"domain": domain, "key_version": version, "value": value,
                                "token": base64.b64encode(token).decode()})
    print(json.dumps({
        "format": 1,
        "about": "Golden vectors of Tink-format deterministic pseudonyms and each domain's "
                 "exported keyset, made by tests/python/make_tink_vectors.py with PyPI's tink. "
                 "TEST KEYS ONLY: the keyring of golden-v1.json. Never edit: a change here is a "
                 "breaking change that needs a new format version.",
        "keyring": GOLDEN["keyring"],
        "vectors": vectors,
        "keysets": keysets,
    }, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
