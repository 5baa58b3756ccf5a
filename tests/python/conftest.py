"""Shared fixtures: a real `pseudonymd` on a loopback port, started from the built binary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PSEUDONYMD = Path(os.environ.get("PSEUDONYMD", ROOT / "target" / "debug" / "pseudonymd"))


class Daemon:
    """A `pseudonymd` process; `url` is where it listens, `output` what it printed."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        if not PSEUDONYMD.exists():
            pytest.fail(f"{PSEUDONYMD} is missing: run `cargo build -p pseudonym-service` first")
        self.output: list[str] = []
        self._folder = tempfile.TemporaryDirectory()
        ready = Path(self._folder.name) / "ready.json"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PSEUDONYM_")}
        full_env.update(env or {})
        self.process = subprocess.Popen(
            [str(PSEUDONYMD), "--listen", "127.0.0.1:0", "--ready-file", str(ready), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
        )
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 20
        while not ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("pseudonymd did not start:\n" + "".join(self.output))
            time.sleep(0.02)
        self.url: str = json.loads(ready.read_text())["url"]

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.output.append(line)

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it is still running after 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def new_api_key(keys_file: Path, name: str, operations: str, domains: str) -> str:
    """Creates an API key with `pseudonymd api-key` and returns it."""
    done = subprocess.run(
        [str(PSEUDONYMD), "api-key", "--api-keys-file", str(keys_file), "--name", name,
         "--operations", operations, "--domains", domains],
        check=True, capture_output=True, text=True, timeout=30,
    )
    return done.stdout.strip()


def new_keyring(path: Path) -> Path:
    """Creates a keyring file with `pseudonymd keygen`."""
    subprocess.run([str(PSEUDONYMD), "keygen", "--keyring-file", str(path)],
                   check=True, capture_output=True, timeout=30)
    return path


class Service:
    """A running service with an all-powerful key (`admin`) and a pseudonymize-only key for `vin`."""

    def __init__(self, folder: Path) -> None:
        keys_file = folder / "api-keys.toml"
        self.admin = new_api_key(keys_file, "admin", "pseudonymize,reidentify,rewrap", "*")
        self.writer = new_api_key(keys_file, "writer", "pseudonymize", "vin")
        self.keyring = new_keyring(folder / "keyring.toml")
        self.daemon = Daemon(["--keyring-file", str(self.keyring), "--api-keys-file", str(keys_file)])
        self.url = self.daemon.url


@pytest.fixture(scope="session")
def service(tmp_path_factory):
    """One service for the whole session."""
    running = Service(tmp_path_factory.mktemp("service"))
    yield running
    running.daemon.stop()


@pytest.fixture
def start_daemon():
    """Starts daemons for a test and stops them after it."""
    started: list[Daemon] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> Daemon:
        daemon = Daemon(args, env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


GOLDEN = ROOT / "engine" / "tests" / "data"


def golden_keyring_text() -> str:
    """The golden vectors' native keyring (test keys), as a keyring file."""
    ring = json.loads((GOLDEN / "golden-v1.json").read_text(encoding="utf-8"))["keyring"]
    return f"primary = {ring['primary']}\n" + "".join(
        f"[[keys]]\nversion = {k['version']}\nsecret = \"{k['secret']}\"\n" for k in ring["keys"]
    )


class FormatPreservingService:
    """A service with the golden native keyring (primary 2) whose domains of
    `engine/tests/data/golden-format-preserving.json` are format-preserving, pinned to key
    version 1, as a configuration file declares them."""

    def __init__(self, folder: Path) -> None:
        self.golden = json.loads(
            (ROOT / "engine/tests/data/golden-format-preserving.json").read_text(encoding="utf-8")
        )
        keyring = folder / "keyring.toml"
        keyring.write_text(golden_keyring_text(), encoding="utf-8")
        keyring.chmod(0o600)
        keys_file = folder / "api-keys.toml"
        self.admin = new_api_key(keys_file, "admin", "pseudonymize,reidentify,rewrap", "*")
        tables = []
        for domain, spec in self.golden["formats"].items():
            lines = [f"[format_preserving.{json.dumps(domain)}]", "key_version = 1"]
            lines += [f"{name} = {json.dumps(value, ensure_ascii=False)}" for name, value in spec.items()]
            tables.append("\n".join(lines))
        config = folder / "pseudonymd.toml"
        config.write_text(
            f'keyring_file = "{keyring}"\napi_keys_file = "{keys_file}"\n\n' + "\n\n".join(tables) + "\n",
            encoding="utf-8",
        )
        self.daemon = Daemon(["--config", str(config)])
        self.url = self.daemon.url


@pytest.fixture(scope="session")
def fp_service(tmp_path_factory):
    """One format-preserving service for the whole session."""
    running = FormatPreservingService(tmp_path_factory.mktemp("format-preserving"))
    yield running
    running.daemon.stop()


class MigrationService:
    """A service in the middle of a migration from the AWS sample: the golden native keyring plus
    the replaced service's golden secret `number` (0: a 32-byte key, 1: a 16-byte one), imported
    with `keygen --import-lambda-secret`, serving that service's own tokens on its routes
    (`--compat-tokens lambda`)."""

    def __init__(self, folder: Path, number: int = 0) -> None:
        self.number = number
        self.seed = json.loads((GOLDEN / "golden-seed.json").read_text(encoding="utf-8"))
        self.secret = self.seed["secrets"][number]
        secret = folder / "aws-secret.json"
        secret.write_text(json.dumps(self.secret), encoding="utf-8")
        self.keyring = folder / "keyring.toml"
        self.keyring.write_text(golden_keyring_text(), encoding="utf-8")
        self.keyring.chmod(0o600)
        self.keygen_output = subprocess.run(
            [str(PSEUDONYMD), "keygen", "--keyring-file", str(self.keyring),
             "--import-lambda-secret", str(secret)],
            check=True, capture_output=True, text=True, timeout=30,
        )
        keys_file = folder / "api-keys.toml"
        self.admin = new_api_key(keys_file, "migration", "pseudonymize,reidentify,rewrap", "*")
        self.daemon = Daemon([
            "--keyring-file", str(self.keyring), "--api-keys-file", str(keys_file),
            "--compat-tokens", "lambda",
        ])
        self.url = self.daemon.url

    def vectors(self, mode: str | None = None) -> list[dict]:
        """The golden tokens of the imported secret, of `mode` if given."""
        return [v for v in self.seed["vectors"]
                if v["secret"] == self.number and (mode is None or v["mode"] == mode)]


@pytest.fixture(scope="session")
def migration_service(tmp_path_factory):
    """One migration service for the whole session."""
    running = MigrationService(tmp_path_factory.mktemp("migration"))
    yield running
    running.daemon.stop()


@pytest.fixture(scope="session")
def spark():
    """One local Spark (`local[2]`, loopback only) for every test that needs one."""
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    # Spark's Python workers must run this venv's interpreter, where `pseudonym` is installed.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = (
        SparkSession.builder.master("local[2]")
        .appName("pseudonym-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "4000")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
