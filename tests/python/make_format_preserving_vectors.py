"""Writes engine/tests/data/golden-format-preserving.json: format-preserving pseudonyms of the
golden keyring (engine/tests/data/golden-v1.json), computed with `ff1_reference`, an
implementation independent of ours.

The file pins behaviour forever: run this only to create it, never to "fix" it.

    .venv/bin/python tests/python/make_format_preserving_vectors.py \
        > engine/tests/data/golden-format-preserving.json
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import ff1_reference

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = json.loads((ROOT / "engine/tests/data/golden-v1.json").read_text(encoding="utf-8"))

# Each domain's format as the service's config writes it, and values of it.
FORMATS = {
    "vin": ({"alphabet": "vin", "outside": "refuse"},
            ["WVWZZZ1JZXW123456", "1HGCM82633A004352", "JH4KA7561PC008269", "000000"]),
    "phone": ({"alphabet": "digits", "outside": "keep"},
              ["+49 30 1234567", "555-123-4567", "(030) 12-34-56", "123456", "1-2-3-4-5-6"]),
    "crm.id": ({"alphabet": "alnum", "outside": "keep"},
               ["Cust-000123abcXYZ", "AB12cd34", "zzzz"]),
    "plate": ({"alphabet": "alnum-upper", "outside": "keep"}, ["B-AB 1234", "M-XY 99E"]),
    "user": ({"alphabet": "alnum-lower", "outside": "keep"}, ["user_4711abc", "ß-straße-12"]),
    "de.code": ({"characters": "0123456789ÄÖÜß", "outside": "keep"}, ["ß12Ä-4567ÖÜ", "ÄÖÜß00"]),
}

# Values that have no pseudonym, with the code each fails with.
ERRORS = [
    ("vin", "WVWZZZ1JZXW12345I", "outside_alphabet"),
    ("vin", "wvwzzz1jzxw123456", "outside_alphabet"),
    ("vin", "123", "format_too_short"),
    ("phone", "12-34-5", "format_too_short"),
    ("phone", "", "format_too_short"),
    ("phone", "1" * 57, "format_too_long"),
    ("crm.id", "a" * 33, "format_too_long"),
]


def alphabet(spec: dict) -> str:
    return spec.get("characters") or ff1_reference.ALPHABETS[spec["alphabet"]]


def main() -> None:
    keys = {k["version"]: base64.urlsafe_b64decode(k["secret"] + "=" * (-len(k["secret"]) % 4))
            for k in GOLDEN["keyring"]["keys"]}
    vectors = []
    for domain, (spec, values) in FORMATS.items():
        for version, master in sorted(keys.items()):
            for value in values:
                made = ff1_reference.pseudonym(master, domain, alphabet(spec), value)
                assert ff1_reference.pseudonym(master, domain, alphabet(spec), made, True) == value
                vectors.append({"domain": domain, "key_version": version, "value": value,
                                "pseudonym": made})
    print(json.dumps({
        "format": 1,
        "about": "Golden vectors of the format-preserving mode (FF1, AES-256), made by "
                 "tests/python/ff1_reference.py. TEST KEYS ONLY: the keyring of golden-v1.json. "
                 "Never edit: a change here is a breaking change that needs a new format version.",
        "keyring": GOLDEN["keyring"],
        "formats": {domain: spec for domain, (spec, _) in FORMATS.items()},
        "vectors": vectors,
        "errors": [{"domain": d, "value": v, "code": c} for d, v, c in ERRORS],
    }, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
