"""Tink domains against a live `pseudonymd`, checked with PyPI's `tink` (an implementation
independent of ours): the keyset `keygen --export-tink-keyset` writes opens the service's
tokens, the service opens what Tink encrypts, for both key versions and for empty, ASCII and
multi-byte values; export is refused without its permission; Spark SQL, DuckDB and Polars
write the same tokens."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
import tink
from tink import daead, secret_key_access
from tink.proto import tink_pb2
from google.protobuf import json_format

from conftest import PSEUDONYMD, ROOT, Daemon, golden_keyring_text, new_api_key
from pseudonym import Client

GOLDEN = json.loads((ROOT / "engine/tests/data/golden-tink.json").read_text(encoding="utf-8"))
VALUES = ["", "WVWZZZ1JZXW123456", "jane.doe@example.com", "Zoë Ärger-Straße 7, 東京 🚗",
          "a\u0000b", "x" * 1000]

daead.register()


class TinkService:
    """The golden keyring (primary 2); `crm.email` and `vin` are Tink domains, and only the
    keyset of `crm.email` may be exported."""

    def __init__(self, folder: Path) -> None:
        keyring = folder / "keyring.toml"
        keyring.write_text(golden_keyring_text(), encoding="utf-8")
        keyring.chmod(0o600)
        keys_file = folder / "api-keys.toml"
        self.admin = new_api_key(keys_file, "admin", "pseudonymize,reidentify,rewrap", "*")
        self.audit = folder / "audit.jsonl"
        self.config = folder / "pseudonymd.toml"
        self.config.write_text(
            f'keyring_file = "{keyring}"\napi_keys_file = "{keys_file}"\n'
            f'audit_log = "{self.audit}"\n\n'
            '[tink."crm.email"]\nexport = true\n\n[tink.vin]\n',
            encoding="utf-8",
        )
        self.daemon = Daemon(["--config", str(self.config)])
        self.url = self.daemon.url
        self.folder = folder

    def export(self, domain: str, to: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(PSEUDONYMD), "keygen", "--config", str(self.config),
             "--export-tink-keyset", domain, "--to", str(to)],
            capture_output=True, text=True, timeout=60,
        )


@pytest.fixture(scope="module")
def tink_service(tmp_path_factory):
    running = TinkService(tmp_path_factory.mktemp("tink"))
    yield running
    running.daemon.stop()


def with_primary(handle_json: str, primary: int) -> daead.DeterministicAead:
    """The keyset's DeterministicAead, encrypting with key `primary`."""
    keyset = json_format.Parse(handle_json, tink_pb2.Keyset())
    keyset.primary_key_id = primary
    handle = tink.proto_keyset_format.parse(keyset.SerializeToString(), secret_key_access.TOKEN)
    return handle.primitive(daead.DeterministicAead)


def test_the_service_makes_the_golden_tokens_and_opens_every_one(tink_service) -> None:
    client = Client(tink_service.url, tink_service.admin)
    for domain in ["vin", "crm.email"]:
        golden = [v for v in GOLDEN["vectors"] if v["domain"] == domain]
        newest = [v for v in golden if v["key_version"] == 2]
        made = client.pseudonymize(domain, [v["value"] for v in newest] + [None])
        assert made == [v["token"] for v in newest] + [None]
        assert client.reidentify(domain, [v["token"] for v in golden]) == [v["value"] for v in golden]


def test_an_exported_keyset_and_the_service_read_each_others_tokens(tink_service, tmp_path) -> None:
    keyset_file = tmp_path / "crm-email.json"
    done = tink_service.export("crm.email", keyset_file)
    assert done.returncode == 0, done.stderr
    assert keyset_file.stat().st_mode & 0o777 == 0o600
    text = keyset_file.read_text()
    assert json.loads(text) == GOLDEN["keysets"]["crm.email"]
    handle = tink.json_proto_keyset_format.parse(text, secret_key_access.TOKEN)
    ours = handle.primitive(daead.DeterministicAead)
    domain = b"crm.email"

    client = Client(tink_service.url, tink_service.admin)
    made = client.pseudonymize("crm.email", VALUES)
    for value, token in zip(VALUES, made):
        assert token is not None
        assert ours.decrypt_deterministically(base64.b64decode(token), domain) == value.encode()

    for version in [1, 2]:
        theirs = with_primary(text, version)
        tokens = [base64.b64encode(theirs.encrypt_deterministically(v.encode(), domain)).decode()
                  for v in VALUES]
        assert client.reidentify("crm.email", tokens) == VALUES
        if version == 1:
            assert client.rewrap("crm.email", tokens) == made
        else:
            assert tokens == made

    # Key material appears nowhere but in the keyset file.
    key_value = json.loads(text)["key"][0]["keyData"]["value"]
    audit = [json.loads(line) for line in tink_service.audit.read_text().splitlines()]
    exports = [line for line in audit if line["operation"] == "export_tink_keyset"]
    assert exports[-1]["domain"] == "crm.email" and exports[-1]["outcome"] == "ok"
    assert key_value not in tink_service.audit.read_text() + done.stderr + done.stdout


def test_export_is_refused_without_its_permission(tink_service, tmp_path) -> None:
    keyset_file = tmp_path / "vin.json"
    for domain in ["vin", "not.tink"]:
        refused = tink_service.export(domain, keyset_file)
        assert refused.returncode != 0
        assert "export = true" in refused.stderr
        assert not keyset_file.exists()
    audit = [json.loads(line) for line in tink_service.audit.read_text().splitlines()]
    assert {"vin", "not.tink"} <= {line["domain"] for line in audit
                                   if line["operation"] == "export_tink_keyset"
                                   and line["outcome"] == "refused"}
    missing_to = subprocess.run(
        [str(PSEUDONYMD), "keygen", "--config", str(tink_service.config),
         "--export-tink-keyset", "crm.email"], capture_output=True, text=True, timeout=60)
    assert missing_to.returncode != 0 and "--to" in missing_to.stderr


def test_spark_sql_duckdb_and_polars_write_tink_tokens(tink_service, spark) -> None:
    import duckdb
    import polars as pl

    import pseudonym.duckdb
    import pseudonym.polars  # noqa: F401  (registers the namespace)
    from pseudonym.spark import register

    cipher = tink.json_proto_keyset_format.parse(
        json.dumps(GOLDEN["keysets"]["vin"]), secret_key_access.TOKEN
    ).primitive(daead.DeterministicAead)

    def opened(token: str) -> str:
        return cipher.decrypt_deterministically(base64.b64decode(token), b"vin").decode()

    vins = [f"WVWZZZ1JZXW{i:06}" for i in range(200)]
    register(spark, url=tink_service.url, api_key=tink_service.admin)
    spark.createDataFrame([(v,) for v in vins], "vin string").createOrReplaceTempView("tink_vins")
    rows = spark.sql("SELECT vin, pseudonymize(vin, 'vin') AS p FROM tink_vins").collect()
    assert all(opened(r.p) == r.vin for r in rows)

    con = duckdb.connect()
    pseudonym.duckdb.register(con, url=tink_service.url, api_key=tink_service.admin)
    duck = con.execute("SELECT pseudonymize(v, 'vin') FROM (VALUES ('WVWZZZ1JZXW000001')) t(v)").fetchone()
    assert opened(duck[0]) == "WVWZZZ1JZXW000001"

    frame = pl.DataFrame({"vin": vins[:50]})
    out = frame.with_columns(p=pl.col("vin").pseudonym.pseudonymize(
        "vin", url=tink_service.url, api_key=tink_service.admin))
    assert [opened(p) for p in out["p"].to_list()] == vins[:50]
